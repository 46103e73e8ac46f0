//! The end-of-step report of `run` / `assert`: text on stderr, JSON, JUnit
//! XML, and GitHub Actions annotations + step summary when running there.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

use super::escape;
use crate::diagnose::gate::Outcome;

fn opt(v: Option<u64>) -> String {
    v.map(|n| n.to_string()).unwrap_or_else(|| "-".into())
}

/// The short human report.
pub fn text(o: &Outcome) -> String {
    let mut s = String::new();
    let status = if o.failures.is_empty() {
        "PASS"
    } else {
        "FAIL"
    };
    let census = match o.backend {
        Some(crate::sample::Backend::Bpf) => ", BPF census",
        Some(crate::sample::Backend::Proc) => ", /proc census",
        _ => "",
    };
    let _ = writeln!(
        s,
        "fdwatch {status} — {} ({:.1}s, {} samples{census})",
        escape::terminal(&o.name),
        o.duration_s,
        o.samples
    );
    if let Some(code) = o.command_exit {
        let _ = writeln!(s, "  command exit code: {code}");
    }
    let _ = writeln!(
        s,
        "  fds: start {}, peak {}, end {}, growth after warm-up {}",
        opt(o.fds_start),
        opt(o.fds_peak),
        opt(o.fds_end),
        o.growth
            .map(|g| format!("{g:+}"))
            .unwrap_or_else(|| "-".into())
    );
    if !o.growth_by_kind.is_empty() {
        let kinds: Vec<String> = o
            .growth_by_kind
            .iter()
            .map(|(k, d)| format!("{} {d:+}", k.name()))
            .collect();
        let _ = writeln!(s, "  growth by kind: {}", kinds.join(", "));
    }
    if let Some(v) = &o.verdict {
        let _ = writeln!(s, "  verdict: {}", v.level.name());
        for r in &v.reasons {
            let _ = writeln!(s, "    {}", escape::terminal(r));
        }
    }
    for f in &o.failures {
        let _ = writeln!(s, "  FAIL: {}", escape::terminal(&f.to_string()));
    }
    s
}

/// One test case, as GitLab reads JUnit (testsuites > testsuite > testcase > failure).
pub fn junit(o: &Outcome) -> String {
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let failures = usize::from(!o.failures.is_empty());
    let _ = writeln!(x, "<testsuites tests=\"1\" failures=\"{failures}\">");
    let _ = writeln!(
        x,
        "  <testsuite name=\"fdwatch\" tests=\"1\" failures=\"{failures}\" time=\"{:.3}\">",
        o.duration_s
    );
    let _ = write!(
        x,
        "    <testcase classname=\"fdwatch\" name=\"fd leak check: {}\" time=\"{:.3}\"",
        escape::xml_attr(&o.name),
        o.duration_s
    );
    if o.failures.is_empty() {
        x.push_str("/>\n");
    } else {
        let _ = writeln!(
            x,
            ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
            escape::xml_attr(&o.failures.join("; ")),
            escape::xml_text(&text(o))
        );
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

/// GitHub workflow-command escaping of a message.
pub fn gh_escape(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

pub fn emit(o: &Outcome, report: Option<&Path>, junit_path: Option<&Path>) -> anyhow::Result<()> {
    eprint!("{}", text(o));
    if let Some(p) = report {
        let json = serde_json::to_string_pretty(o)?;
        crate::safe_fs::write_atomic(p, (json + "\n").as_bytes())
            .with_context(|| format!("writing the report {}", p.display()))?;
    }
    if let Some(p) = junit_path {
        crate::safe_fs::write_atomic(p, junit(o).as_bytes())
            .with_context(|| format!("writing the JUnit report {}", p.display()))?;
    }
    if std::env::var("GITHUB_ACTIONS").as_deref() == Ok("true") {
        for f in &o.failures {
            println!(
                "::error title=fdwatch: fd leak::{}",
                gh_escape(&escape::terminal(&format!("{}: {f}", o.name)))
            );
        }
        if let Ok(summary) = std::env::var("GITHUB_STEP_SUMMARY") {
            let md = format!(
                "### fdwatch {}\n\n```\n{}```\n",
                if o.failures.is_empty() {
                    "passed"
                } else {
                    "failed"
                },
                text(o)
            );
            use std::io::Write;
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(summary)
            {
                let _ = f.write_all(md.as_bytes());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(gh_escape("50% a\nb\r"), "50%25 a%0Ab%0D");
        assert_eq!(
            escape::xml_attr("<a & 'b'>"),
            "&lt;a &amp; &apos;b&apos;&gt;"
        );
    }
}

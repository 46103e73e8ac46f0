//! The words of `run` / `assert`: the end-of-step report (text on stderr,
//! JSON, JUnit XML, GitHub Actions annotations + step summary when running
//! there) and `assert`'s progress while it watches.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use super::escape;
use crate::diagnose::gate::{Failure, Outcome, Status};
use crate::diagnose::Level;
use crate::stacks::Snapshot;

/// Where and when the step ran, for the JUnit `testsuite` (`hostname`,
/// `timestamp`), read by the driver.
#[derive(Debug, Clone)]
pub struct Step {
    pub hostname: String,
    /// Unix time the step started.
    pub started: f64,
}

fn opt(v: Option<u64>) -> String {
    v.map(|n| n.to_string()).unwrap_or_else(|| "-".into())
}

/// The short human report. A step that never watched anything (the
/// command could not start) is one line, as fdwatch's other errors are.
pub fn text(o: &Outcome) -> String {
    let mut s = String::new();
    if let Some(f @ Failure::NotStarted { .. }) = o.failures.first() {
        return format!("fdwatch: {f}\n");
    }
    let status = o.status.name();
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
        let tag = if f.is_unknown() { "UNKNOWN" } else { "FAIL" };
        let _ = writeln!(s, "  {tag}: {}", escape::terminal(&f.to_string()));
    }
    s
}

/// The step's report with `--stacks`: the text, then the top leak and
/// churn sites, indented like the rest.
pub fn text_with_stacks(o: &Outcome, stacks: Option<&Snapshot>) -> String {
    let mut s = text(o);
    if let Some(st) = stacks {
        for l in super::stacks::site_lines(st, super::stacks::SITES_SHOWN) {
            let _ = writeln!(s, "  {}", escape::terminal(&l));
        }
    }
    s
}

/// The JSON report: the outcome, and with `--stacks` its `stacks` (the
/// sites as in watch's JSON, docs/json-schema.md).
pub fn json(o: &Outcome, stacks: Option<&Snapshot>) -> anyhow::Result<String> {
    let mut v = serde_json::to_value(o)?;
    if let (Some(st), Some(map)) = (stacks, v.as_object_mut()) {
        map.insert(
            "stacks".into(),
            serde_json::to_value(super::stacks::brief(st))?,
        );
    }
    Ok(serde_json::to_string_pretty(&v)?)
}

/// `2024-05-01T10:42:05`: the JUnit timestamp as Ant writes it (no zone;
/// fdwatch's is UTC).
fn junit_timestamp(unix: f64) -> String {
    let s = super::timeline::clock(unix, true);
    s.trim_end_matches('Z').to_string()
}

/// One test case in the Ant/Jenkins JUnit form (`junit-10.xsd`; GitLab reads
/// the same): testsuites > testsuite > testcase, with a `<failure>` when a
/// gate or the verdict failed the step and an `<error>` when the check could
/// not be made (UNKNOWN). The counts agree with the elements.
/// With `--stacks`, the sites are in the failure's (or error's) text, and
/// in a `<system-out>` of a passing test case.
pub fn junit(o: &Outcome, step: &Step, stacks: Option<&Snapshot>) -> String {
    let (failures, errors) = match o.status {
        Status::Pass => (0, 0),
        Status::Fail => (1, 0),
        Status::Unknown => (0, 1),
    };
    let time = if o.duration_s.is_finite() {
        o.duration_s.max(0.0)
    } else {
        0.0
    };
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"fdwatch\" tests=\"1\" failures=\"{failures}\" errors=\"{errors}\" time=\"{time:.3}\">"
    );
    let _ = writeln!(
        x,
        "  <testsuite name=\"fdwatch\" tests=\"1\" failures=\"{failures}\" errors=\"{errors}\" \
         skipped=\"0\" time=\"{time:.3}\" timestamp=\"{}\" hostname=\"{}\">",
        junit_timestamp(step.started),
        escape::xml_attr(&step.hostname)
    );
    let _ = write!(
        x,
        "    <testcase classname=\"fdwatch\" name=\"fd leak check: {}\" time=\"{time:.3}\"",
        escape::xml_attr(&o.name),
    );
    let element = match o.status {
        Status::Pass => None,
        Status::Fail => Some(("failure", "fd leak")),
        Status::Unknown => Some(("error", "unknown")),
    };
    match element {
        None => match stacks {
            None => x.push_str("/>\n"),
            Some(_) => {
                let _ = writeln!(
                    x,
                    ">\n      <system-out>{}</system-out>\n    </testcase>",
                    escape::xml_text(&text_with_stacks(o, stacks))
                );
            }
        },
        Some((tag, kind)) => {
            let message: Vec<String> = o.failures.iter().map(Failure::to_string).collect();
            let _ = writeln!(
                x,
                ">\n      <{tag} type=\"{kind}\" message=\"{}\">{}</{tag}>\n    </testcase>",
                escape::xml_attr(&message.join("; ")),
                escape::xml_text(&text_with_stacks(o, stacks))
            );
        }
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

/// `assert`'s status line on a terminal, rewritten in place each sample:
/// `fdwatch assert: 12s/60s, 42 fds (+3), verdict OK`.
pub fn progress(elapsed: Duration, total: Duration, fds: u64, growth: i64, level: Level) -> String {
    format!(
        "fdwatch assert: {}/{}, {fds} fds ({growth:+}), verdict {}",
        secs(elapsed),
        secs(total),
        level.name()
    )
}

/// `assert`'s heartbeat off a terminal: one whole line now and then, so a CI
/// log is not silent until the end.
pub fn heartbeat(
    elapsed: Duration,
    total: Duration,
    samples: u64,
    fds: u64,
    peak: u64,
    growth: i64,
    level: Level,
) -> String {
    format!(
        "fdwatch assert: {} of {}: {fds} fds (peak {peak}, {growth:+} since the start), \
         verdict {}, {samples} samples",
        secs(elapsed),
        secs(total),
        level.name()
    )
}

/// `4s`, `1.5s`: tenths below ten seconds, where a short step needs them.
fn secs(d: Duration) -> String {
    if d.subsec_millis() == 0 || d >= Duration::from_secs(10) {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// GitHub workflow-command escaping of a message.
pub fn gh_escape(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

pub fn emit(
    o: &Outcome,
    step: &Step,
    report: Option<&Path>,
    junit_path: Option<&Path>,
    stacks: Option<&Snapshot>,
) -> anyhow::Result<()> {
    eprint!("{}", text_with_stacks(o, stacks));
    if let Some(p) = report {
        let json = json(o, stacks)?;
        crate::safe_fs::write_atomic(p, (json + "\n").as_bytes())
            .with_context(|| format!("writing the report {}", p.display()))?;
    }
    if let Some(p) = junit_path {
        crate::safe_fs::write_atomic(p, junit(o, step, stacks).as_bytes())
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
                match o.status {
                    Status::Pass => "passed",
                    Status::Fail => "failed",
                    Status::Unknown => "could not check",
                },
                text_with_stacks(o, stacks)
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

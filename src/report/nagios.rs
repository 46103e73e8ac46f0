//! Monitoring-plugin output: one status line, performance data after `|`,
//! long output on the following lines (Nagios, Icinga, Sensu, Zabbix).

use super::escape;
use crate::diagnose::format::{approx_duration, rate};
use crate::diagnose::{Level, Thresholds, Verdict};
use crate::sample::Sample;

/// One checked process: its last sample and verdict, or why it could not be checked.
pub struct Checked {
    pub pid: i32,
    pub comm: String,
    pub outcome: Result<(Sample, Verdict), String>,
    /// Activity (and exact syscall) rates over the burst.
    pub rates: Option<crate::report::Rates>,
    /// Its perfdata label prefix when a check covers several processes:
    /// the selector's name and a slot that outlives restarts (`rpc-msg_0`).
    pub label: Option<String>,
    /// `--stacks`: the top leak and churn sites of the burst.
    pub stacks: Option<crate::stacks::Snapshot>,
}

impl Checked {
    pub fn level(&self) -> Level {
        self.outcome
            .as_ref()
            .map(|(_, v)| v.level)
            .unwrap_or(Level::Unknown)
    }
}

pub use crate::diagnose::worst;

/// `pid 4242 (rpc-msg) 812/1024 fds (79%), +3.1/min, EMFILE in ~1h05m: netlink ROUTE sockets growing`
pub fn summary(c: &Checked) -> String {
    let (s, v) = match &c.outcome {
        Ok(ok) => ok,
        // Most sample errors name the process already ("pid 2 (kthreadd)
        // is a kernel thread"): say it once.
        Err(why) if names_pid(why, c.pid) => return why.clone(),
        Err(why) => return format!("pid {} ({}): {why}", c.pid, c.comm),
    };
    let mut out = match s.limits.soft {
        Some(soft) => format!(
            "pid {} ({}) {}/{} fds ({:.0}%)",
            s.pid,
            s.comm,
            s.fds,
            soft,
            s.usage_ratio().unwrap_or(0.0) * 100.0
        ),
        None => format!("pid {} ({}) {} fds (no soft limit)", s.pid, s.comm, s.fds),
    };
    match &v.total {
        Some(t) if t.growing => out.push_str(&format!(
            ", {}{}",
            if t.slope >= 0.0 { "+" } else { "" },
            rate(t.slope)
        )),
        Some(_) => out.push_str(", not growing"),
        None => out.push_str(&format!(", collecting ({} samples)", v.samples)),
    }
    if let Some(f) = &v.forecast {
        let what = if f.limit_name.starts_with("soft") {
            "EMFILE"
        } else {
            "ENFILE"
        };
        let held = match &f.held_back {
            None => String::new(),
            Some(crate::diagnose::HeldBack::Unconfirmed) => " (unconfirmed)".into(),
            Some(crate::diagnose::HeldBack::Refilling { peak }) => {
                format!(" (held back: refilling below its peak of {peak})")
            }
        };
        out.push_str(&format!(", {what} in {}{held}", approx_duration(f.eta)));
    }
    // Above OK, the reason that set the level (diagnose puts it first);
    // at OK, what the patterns see.
    let first = v.reasons.first().filter(|_| v.level > Level::Ok);
    if let Some(r) = first {
        out.push_str(&format!(": {r}"));
    } else if let Some(p) = v.patterns.first() {
        out.push_str(&format!(": {}", p.summary));
    }
    out
}

/// Whether `text` names `pid` on its own ("pid 42", not "pid 421").
pub fn names_pid(text: &str, pid: i32) -> bool {
    let needle = format!("pid {pid}");
    text.match_indices(&needle).any(|(i, _)| {
        !text[i + needle.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    })
}

/// A perfdata number in the C locale, no exponent.
fn num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        let s = format!("{x:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn label(prefix: &str, name: &str) -> String {
    // No '=' or quotes in labels; quote when anything but [A-Za-z0-9_] appears.
    let l: String = escape::plugin_line(&format!("{prefix}{name}"))
        .chars()
        .filter(|c| *c != '=' && *c != '\'')
        .collect();
    if l.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        l
    } else {
        format!("'{l}'")
    }
}

pub fn perfdata(c: &Checked, prefix: &str, th: &Thresholds) -> Vec<String> {
    let Ok((s, v)) = &c.outcome else {
        return vec![format!("{}=U", label(prefix, "fds"))];
    };
    let mut items = Vec::new();
    // Thresholds in range syntax: the fd count's own (`-w/-c N`) or, for
    // `fds`, the usage ranges in fds.
    let (warn_u, crit_u) = (
        th.usage_range(Level::Warning),
        th.usage_range(Level::Critical),
    );
    let fds_range = |own: Option<crate::diagnose::Range>, usage: crate::diagnose::Range| match (
        own,
        s.limits.soft,
    ) {
        (Some(r), _) => r.to_string(),
        (None, Some(soft)) => usage.scaled(soft as f64 / 100.0, f64::floor).to_string(),
        (None, None) => String::new(),
    };
    let fds_th = format!(
        "{};{}",
        fds_range(th.warn_fds, warn_u),
        fds_range(th.crit_fds, crit_u)
    );
    match s.limits.soft {
        Some(soft) => {
            let sf = soft as f64;
            items.push(format!(
                "{}={};{fds_th};0;{}",
                label(prefix, "fds"),
                s.fds,
                soft
            ));
            items.push(format!(
                "{}={}%;{warn_u};{crit_u};0;100",
                label(prefix, "usage"),
                num((s.fds as f64 * 100.0 / sf * 10.0).round() / 10.0),
            ));
        }
        None => items.push(format!("{}={};{fds_th};0;", label(prefix, "fds"), s.fds)),
    }
    items.push(match &v.total {
        Some(t) => format!(
            "{}={}",
            label(prefix, "fds_per_min"),
            num((t.slope * 60.0 * 1000.0).round() / 1000.0)
        ),
        None => format!("{}=U", label(prefix, "fds_per_min")),
    });
    let eta = v
        .forecast
        .as_ref()
        .map(|f| format!("{}s", num(f.eta.round())))
        .unwrap_or_else(|| "U".into());
    // A held-back forecast is drawn without thresholds: its level is not
    // the ETA's (docs/trend.md), and a breach drawn under OK misleads.
    if v.forecast.as_ref().is_some_and(|f| f.held_back.is_some()) {
        items.push(format!("{}={eta};;;0;", label(prefix, "eta")));
    } else {
        items.push(format!(
            "{}={eta};{}:;{}:;0;",
            label(prefix, "eta"),
            num(th.warn_eta),
            num(th.crit_eta)
        ));
    }
    for (kind, n) in &s.kinds {
        items.push(format!("{}={n};;;0;", label(prefix, kind.name())));
    }
    if let Some(r) = &c.rates {
        let rate = |name: &str, v: Option<f64>| {
            format!(
                "{}={}",
                label(prefix, name),
                v.map(|x| num((x * 10.0).round() / 10.0))
                    .unwrap_or_else(|| "U".into())
            )
        };
        items.push(rate("syscr_per_s", r.syscr_per_s));
        items.push(rate("syscw_per_s", r.syscw_per_s));
        let ctx = r
            .voluntary_ctxt_switches_per_s
            .zip(r.nonvoluntary_ctxt_switches_per_s)
            .map(|(a, b)| a + b);
        items.push(rate("ctxsw_per_s", ctx));
        if let Some(sc) = &r.syscalls {
            items.push(rate("syscalls_per_s", Some(sc.total)));
            items.push(rate("netlink_socket_per_s", Some(sc.socket_netlink)));
            items.push(rate("close_per_s", Some(sc.close)));
        }
    }
    items
}

/// The whole plugin output: status line with perfdata, then long output.
pub fn render(checked: &[Checked], th: &Thresholds, notes: &[String]) -> String {
    let level = worst(checked.iter().map(Checked::level));
    let worst_one = checked.iter().find(|c| c.level() == level);
    let head = match (checked.len(), worst_one) {
        (1, Some(c)) => summary(c),
        (n, Some(c)) => format!("{n} processes, worst: {}", summary(c)),
        (_, None) => "no process checked".to_string(),
    };
    let perf: Vec<String> = if checked.len() == 1 {
        perfdata(&checked[0], "", th)
    } else {
        checked
            .iter()
            .flat_map(|c| {
                let prefix = match &c.label {
                    Some(l) => format!("{l}_"),
                    None => format!("pid{}_", c.pid),
                };
                perfdata(c, &prefix, th)
            })
            .collect()
    };
    // Names come from the processes: one line, no `|` (escape::plugin_line).
    let mut out = format!("FDWATCH {} - {}", level.name(), escape::plugin_line(&head));
    if !perf.is_empty() {
        out.push_str(" | ");
        out.push_str(&perf.join(" "));
    }
    out.push('\n');
    for c in checked {
        if checked.len() > 1 {
            out.push_str(&format!(
                "{}: {}\n",
                c.level().name(),
                escape::plugin_line(&summary(c))
            ));
        }
        if let Ok((_, v)) = &c.outcome {
            for r in &v.reasons {
                out.push_str(&format!("  {}\n", escape::plugin_line(r)));
            }
        }
        // Long output: never the status line, never the perfdata.
        if let Some(st) = &c.stacks {
            for l in super::stacks::site_lines(st, super::stacks::SITES_SHOWN) {
                out.push_str(&format!("  {}\n", escape::plugin_line(&l)));
            }
        }
    }
    for n in notes {
        out.push_str(&format!("note: {}\n", escape::plugin_line(n)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_c_locale() {
        assert_eq!(num(812.0), "812");
        assert_eq!(num(1.234567), "1.2346");
        assert_eq!(num(0.5), "0.5");
        assert_eq!(num(1e-7), "0");
        assert_eq!(label("", "fds"), "fds");
        assert_eq!(label("pid1_", "a b"), "'pid1_a b'");
    }

    #[test]
    fn a_pid_named_once() {
        assert!(names_pid("pid 2 (kthreadd) is a kernel thread", 2));
        assert!(names_pid("no such process: pid 42", 42));
        assert!(!names_pid("pid 421 exited", 42));
        assert!(!names_pid("permission denied", 42));
    }

    #[test]
    fn worst_of() {
        assert_eq!(
            worst([Level::Ok, Level::Unknown].into_iter()),
            Level::Unknown
        );
        assert_eq!(
            worst([Level::Unknown, Level::Warning].into_iter()),
            Level::Warning
        );
        assert_eq!(
            worst([Level::Critical, Level::Unknown].into_iter()),
            Level::Critical
        );
    }
}

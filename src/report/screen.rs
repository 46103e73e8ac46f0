//! The live screen (a terminal) and the plain line (logs), from a [`View`].

use std::fmt::Write;

use tabled::settings::{object::Columns, Alignment, Style};
use tabled::{builder::Builder, Table};

use super::View;
use crate::diagnose::format::{approx_duration, bytes, slope_with_ci};
use crate::diagnose::Level;
use crate::sample::Sample;

const BAR_WIDTH: usize = 30;

fn limit_text(v: Option<u64>) -> String {
    v.map(|n| n.to_string())
        .unwrap_or_else(|| "unlimited".into())
}

fn signed(n: i64) -> String {
    if n == 0 {
        "0".into()
    } else {
        format!("{n:+}")
    }
}

pub fn bar(ratio: f64, width: usize) -> String {
    let filled = ((ratio.clamp(0.0, 1.0) * width as f64).round() as usize).min(width);
    format!("[{}{}]", "█".repeat(filled), "░".repeat(width - filled))
}

/// A one-line sparkline of recent counts.
pub fn sparkline(values: &[u64]) -> String {
    const TICKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let (Some(min), Some(max)) = (values.iter().min(), values.iter().max()) else {
        return String::new();
    };
    let span = (max - min).max(1) as f64;
    values
        .iter()
        .map(|v| TICKS[(((v - min) as f64 / span) * 7.0).round() as usize])
        .collect()
}

fn wall(s: &Sample) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(s.unix_time.max(0.0));
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The whole screen, redrawn in place by the caller.
pub fn screen(view: &View) -> String {
    let s = view.sample;
    let v = view.verdict;
    let ch = view.total_change();
    let mut out = String::new();
    let elapsed = s.mono_time - view.first.mono_time;
    let _ = writeln!(
        out,
        "fdwatch — pid {} ({})   {}   sample {} over {}   census: {}",
        s.pid,
        s.comm,
        wall(s),
        view.index,
        approx_duration(elapsed).trim_start_matches('~'),
        serde_json::to_value(s.backend)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default()
    );
    let usage = s.usage_ratio();
    let _ = writeln!(
        out,
        "fds {} / soft {} / hard {}   {}  {}   {} since last, {} since start   {}",
        s.fds,
        limit_text(s.limits.soft),
        limit_text(s.limits.hard),
        usage
            .map(|u| format!("{:.1}%", u * 100.0))
            .unwrap_or_else(|| "-".into()),
        bar(usage.unwrap_or(0.0), BAR_WIDTH),
        signed(ch.since_last),
        signed(ch.since_start),
        sparkline(view.recent)
    );
    let _ = writeln!(
        out,
        "{}: {}",
        v.level.name(),
        v.reasons.first().map(String::as_str).unwrap_or("")
    );
    if let Some(f) = &v.forecast {
        let _ = writeln!(
            out,
            "forecast: {} reached in {} (earliest {}, latest {})",
            f.limit_name,
            approx_duration(f.eta),
            approx_duration(f.eta_earliest),
            f.eta_latest
                .map(approx_duration)
                .unwrap_or_else(|| "never".into())
        );
    }
    let sys = &s.system;
    let _ = writeln!(
        out,
        "system: {} / {} file handles ({:.2}%), nr_open {}",
        sys.allocated,
        sys.max,
        if sys.max > 0 {
            sys.allocated as f64 * 100.0 / sys.max as f64
        } else {
            0.0
        },
        sys.nr_open
    );
    let rates = view.rates();
    if rates.syscr_per_s.is_some() || rates.voluntary_ctxt_switches_per_s.is_some() {
        let f = |r: Option<f64>| r.map(|x| format!("{x:.0}/s")).unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "activity: read syscalls {}, write syscalls {}, ctx switches {} voluntary, {} involuntary",
            f(rates.syscr_per_s),
            f(rates.syscw_per_s),
            f(rates.voluntary_ctxt_switches_per_s),
            f(rates.nonvoluntary_ctxt_switches_per_s)
        );
    }
    if let Some(r) = &rates.syscalls {
        let _ = writeln!(
            out,
            "syscalls (exact): {:.0}/s in all; opens: socket() {:.0}/s (netlink {:.0}, inet {:.0}, inet6 {:.0}, unix {:.0}), openat {:.0}/s, accept {:.0}/s; close {:.0}/s",
            r.total, r.socket, r.socket_netlink, r.socket_inet, r.socket_inet6, r.socket_unix, r.openat, r.accept, r.close
        );
    }
    out.push('\n');
    if !s.kinds.is_empty() {
        out.push_str(&kinds_table(view));
        out.push('\n');
    }
    let join = |m: &std::collections::BTreeMap<String, u64>| {
        let mut items: Vec<(&String, &u64)> = m.iter().collect();
        items.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        items
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !s.tcp_states.is_empty() {
        let _ = writeln!(out, "TCP states: {}", join(&s.tcp_states));
    }
    if !s.netlink_protocols.is_empty() {
        let _ = writeln!(out, "netlink protocols: {}", join(&s.netlink_protocols));
    }
    if !s.repeated_paths.is_empty() {
        let paths: Vec<String> = s
            .repeated_paths
            .iter()
            .take(5)
            .map(|c| format!("{}× {}", c.count, printable(&c.name)))
            .collect();
        let _ = writeln!(out, "repeated paths: {}", paths.join("; "));
    }
    if !s.remote_endpoints.is_empty() {
        let eps: Vec<String> = s
            .remote_endpoints
            .iter()
            .take(5)
            .map(|c| format!("{}× {}", c.count, c.name))
            .collect();
        let _ = writeln!(out, "remote endpoints: {}", eps.join("; "));
    }
    if s.deleted_bytes > 0 {
        let _ = writeln!(
            out,
            "deleted-but-open files hold {}",
            bytes(s.deleted_bytes)
        );
    }
    for r in v.reasons.iter().skip(1) {
        let _ = writeln!(out, "  • {r}");
    }
    out
}

fn kinds_table(view: &View) -> String {
    let s = view.sample;
    let changes = view.kind_changes();
    let mut b = Builder::default();
    b.push_record(["KIND", "COUNT", "SHARE", "Δ LAST", "Δ START", "TREND"]);
    let mut kinds: Vec<_> = changes
        .iter()
        .filter(|(k, c)| s.kind(**k) > 0 || c.since_start != 0)
        .collect();
    kinds.sort_by(|a, b| s.kind(*b.0).cmp(&s.kind(*a.0)).then(a.0.cmp(b.0)));
    for (kind, ch) in kinds {
        let n = s.kind(*kind);
        let trend = view
            .verdict
            .series
            .iter()
            .find(|t| t.series == kind.name())
            .map(|t| {
                if t.slope == 0.0 && t.slope_lo == 0.0 && t.slope_hi == 0.0 {
                    return "flat".to_string();
                }
                let mark = if t.growing { " ▲" } else { "" };
                format!("{}{mark}", slope_with_ci(t.slope, t.slope_lo, t.slope_hi))
            })
            .unwrap_or_default();
        b.push_record([
            kind.label().to_string(),
            n.to_string(),
            format!(
                "{:.1}%",
                if s.fds > 0 {
                    n as f64 * 100.0 / s.fds as f64
                } else {
                    0.0
                }
            ),
            signed(ch.since_last),
            signed(ch.since_start),
            trend,
        ]);
    }
    let mut t: Table = b.build();
    t.with(Style::blank())
        .modify(Columns::new(1..5), Alignment::right());
    t.to_string()
}

/// Paths may hold newlines and control characters: show them escaped.
pub fn printable(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// One line per sample, for logs and pipes.
pub fn plain_line(view: &View) -> String {
    let s = view.sample;
    let v = view.verdict;
    let ch = view.total_change();
    let mut kinds: Vec<_> = s.kinds.iter().collect();
    kinds.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let kinds: Vec<String> = kinds
        .iter()
        .take(6)
        .map(|(k, n)| format!("{k}:{n}"))
        .collect();
    let eta = v
        .forecast
        .as_ref()
        .map(|f| format!("{:.0}", f.eta))
        .unwrap_or_else(|| "-".into());
    let mut line =
        format!(
        "{} pid={} comm={} fds={} soft={} hard={} usage={} d_last={} d_start={} level={} eta_s={}",
        wall(s),
        s.pid,
        s.comm.replace(' ', "_"),
        s.fds,
        limit_text(s.limits.soft),
        limit_text(s.limits.hard),
        s.usage_ratio().map(|u| format!("{:.1}%", u * 100.0)).unwrap_or_else(|| "-".into()),
        signed(ch.since_last),
        signed(ch.since_start),
        v.level.name(),
        eta
    );
    if !kinds.is_empty() {
        line.push_str(" kinds=");
        line.push_str(&kinds.join(","));
    }
    // Logs say what the screen says: the pattern (churn too) and the exact
    // syscall rates, as logfmt keys.
    if !v.patterns.is_empty() {
        let ids: Vec<&str> = v.patterns.iter().map(|p| p.id.as_str()).collect();
        line.push_str(" pattern=");
        line.push_str(&ids.join(","));
    }
    if v.forecast.as_ref().is_some_and(|f| f.held_back.is_some()) {
        line.push_str(" eta_confirmed=false");
    }
    if let Some(r) = &v.syscalls {
        line.push_str(&format!(
            " socket_per_s={:.1} netlink_socket_per_s={:.1} openat_per_s={:.1} accept_per_s={:.1} close_per_s={:.1}",
            r.socket, r.socket_netlink, r.openat, r.accept, r.close
        ));
    }
    if v.level > Level::Ok || !v.patterns.is_empty() {
        if let Some(r) = v.reasons.first() {
            line.push_str(" reason=\"");
            line.push_str(&r.replace('"', "'"));
            line.push('"');
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_and_sparklines() {
        assert_eq!(bar(0.5, 4), "[██░░]");
        assert_eq!(bar(2.0, 2), "[██]");
        assert_eq!(sparkline(&[1, 1, 1]), "▁▁▁");
        assert_eq!(sparkline(&[0, 7]), "▁█");
        assert_eq!(sparkline(&[]), "");
        assert_eq!(printable("a\nb"), "a\\nb");
    }
}

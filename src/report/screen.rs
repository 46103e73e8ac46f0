//! The live screen (a terminal) and the plain line (logs), from a [`View`]:
//! fitted to the terminal's width and coloured through [`style`], every
//! untrusted name escaped through [`escape`].

use super::escape;
use super::style::{self, Column, Frame, Table};
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

/// The whole screen, redrawn in place by the caller: every line fits
/// `frame.width` (names and lists cut with an ellipsis, the bar and the
/// sparkline narrowed, then dropped), untrusted names escaped, the level in
/// colour when `frame.color`.
pub fn screen(view: &View, frame: &Frame) -> String {
    let s = view.sample;
    let v = view.verdict;
    let mut lines: Vec<String> = Vec::new();
    let elapsed = s.mono_time - view.first.mono_time;
    let census = serde_json::to_value(s.backend)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    lines.push(header_line(
        frame.width,
        &format!("fdwatch — pid {} ({})", s.pid, escape::terminal(&s.comm)),
        &[
            wall(s),
            format!(
                "sample {} over {}",
                view.index,
                approx_duration(elapsed).trim_start_matches('~')
            ),
            format!("census: {census}"),
        ],
    ));
    lines.push(fds_line(view, frame.width));
    let level_line = lines.len();
    lines.push(format!(
        "{}: {}",
        v.level.name(),
        v.reasons.first().map(String::as_str).unwrap_or("")
    ));
    if let Some(f) = &v.forecast {
        lines.push(format!(
            "forecast: {} reached in {} (earliest {}, latest {})",
            f.limit_name,
            approx_duration(f.eta),
            approx_duration(f.eta_earliest),
            f.eta_latest
                .map(approx_duration)
                .unwrap_or_else(|| "never".into())
        ));
    }
    let sys = &s.system;
    lines.push(format!(
        "system: {} / {} file handles ({:.2}%), nr_open {}",
        sys.allocated,
        sys.max,
        if sys.max > 0 {
            sys.allocated as f64 * 100.0 / sys.max as f64
        } else {
            0.0
        },
        sys.nr_open
    ));
    let rates = view.rates();
    if rates.syscr_per_s.is_some() || rates.voluntary_ctxt_switches_per_s.is_some() {
        let f = |r: Option<f64>| r.map(|x| format!("{x:.0}/s")).unwrap_or_else(|| "-".into());
        lines.push(format!(
            "activity: read syscalls {}, write syscalls {}, ctx switches {} voluntary, {} involuntary",
            f(rates.syscr_per_s),
            f(rates.syscw_per_s),
            f(rates.voluntary_ctxt_switches_per_s),
            f(rates.nonvoluntary_ctxt_switches_per_s)
        ));
    }
    if let Some(r) = &rates.syscalls {
        lines.push(format!(
            "syscalls (exact): {:.0}/s in all; opens: socket() {:.0}/s (netlink {:.0}, inet {:.0}, inet6 {:.0}, unix {:.0}), openat {:.0}/s, accept {:.0}/s; close {:.0}/s",
            r.total, r.socket, r.socket_netlink, r.socket_inet, r.socket_inet6, r.socket_unix, r.openat, r.accept, r.close
        ));
    }
    lines.push(String::new());
    if !s.kinds.is_empty() {
        lines.extend(kinds_table(view, frame.width));
        lines.push(String::new());
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
        lines.push(format!("TCP states: {}", join(&s.tcp_states)));
    }
    if !s.netlink_protocols.is_empty() {
        lines.push(format!("netlink protocols: {}", join(&s.netlink_protocols)));
    }
    // A long path or socket name is cut in the middle (its file name is
    // what tells it apart), so that several still share the line.
    let name = |n: &str| {
        let n = escape::terminal(n);
        match frame.width {
            Some(w) => style::elide_middle(&n, (w / 2).max(16)),
            None => n,
        }
    };
    if !s.repeated_paths.is_empty() {
        let paths: Vec<String> = s
            .repeated_paths
            .iter()
            .take(5)
            .map(|c| format!("{}× {}", c.count, name(&c.name)))
            .collect();
        lines.push(format!("repeated paths: {}", paths.join("; ")));
    }
    if !s.remote_endpoints.is_empty() {
        let eps: Vec<String> = s
            .remote_endpoints
            .iter()
            .take(5)
            .map(|c| format!("{}× {}", c.count, name(&c.name)))
            .collect();
        lines.push(format!("remote endpoints: {}", eps.join("; ")));
    }
    if s.deleted_bytes > 0 {
        lines.push(format!(
            "deleted-but-open files hold {}",
            bytes(s.deleted_bytes)
        ));
    }
    for r in v.reasons.iter().skip(1) {
        lines.push(format!("  • {r}"));
    }
    if let Some(st) = view.stacks {
        lines.push(String::new());
        lines.extend(super::stacks::site_lines(st, super::stacks::SITES_SHOWN));
    }
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        // Each line is escaped whole as well: a name that reached a reason
        // or a list by another path still cannot drive the terminal.
        let mut line = frame.fit(&escape::terminal(line));
        if i == level_line {
            if let Some(rest) = line.strip_prefix(v.level.name()) {
                line = format!("{}{rest}", frame.level(v.level, v.level.name()));
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The first line: the title always, then as many of the other parts as
/// fit, in order, three blanks apart.
fn header_line(width: Option<usize>, title: &str, parts: &[String]) -> String {
    const SEP: &str = "   ";
    let mut line = title.to_string();
    for p in parts {
        if width.is_some_and(|w| style::width(&line) + SEP.len() + style::width(p) > w) {
            break;
        }
        line.push_str(SEP);
        line.push_str(p);
    }
    line
}

/// `fds 812 / soft 1024 / hard 4096   79.3%  [bar]   +3 since last, +100 since start   ▁▂▃`:
/// within `width` the sparkline keeps its newest points and the bar
/// narrows to 10 cells; past that the sparkline, the bar, then the changes
/// go.
fn fds_line(view: &View, width: Option<usize>) -> String {
    let s = view.sample;
    let ch = view.total_change();
    let usage = s.usage_ratio();
    let core = format!(
        "fds {} / soft {} / hard {}   {}",
        s.fds,
        limit_text(s.limits.soft),
        limit_text(s.limits.hard),
        usage
            .map(|u| format!("{:.1}%", u * 100.0))
            .unwrap_or_else(|| "-".into()),
    );
    let changes = format!(
        "{} since last, {} since start",
        signed(ch.since_last),
        signed(ch.since_start)
    );
    let ratio = usage.unwrap_or(0.0);
    let Some(w) = width else {
        return format!(
            "{core}  {}   {changes}   {}",
            bar(ratio, BAR_WIDTH),
            sparkline(view.recent)
        );
    };
    let core_w = style::width(&core);
    let changes_w = style::width(&changes);
    // Room for the bar (brackets + cells) and the sparkline once the fixed
    // parts are placed: core, "  ", bar, "   ", changes, "   ", sparkline.
    let room = w.saturating_sub(core_w + 2 + 3 + changes_w);
    if room >= 2 + 10 {
        // Bar and sparkline share the room: the sparkline up to half of it
        // (its newest points), the bar the rest (10 to 30 cells).
        let recent = view.recent;
        let room = room - 2 - 3; // brackets, and the blanks before the sparkline
        let mut points = recent.len().min(room / 2);
        if points < 8.min(recent.len()).max(2) {
            points = 0;
        }
        let cells = room.saturating_sub(points).clamp(10, BAR_WIDTH);
        let points = points.min(room.saturating_sub(cells));
        let mut line = format!("{core}  {}   {changes}", bar(ratio, cells));
        if points > 0 {
            line.push_str("   ");
            line.push_str(&sparkline(&recent[recent.len() - points..]));
        }
        return line;
    }
    if core_w + 3 + changes_w <= w {
        return format!("{core}   {changes}");
    }
    core
}

fn kinds_table(view: &View, width: Option<usize>) -> Vec<String> {
    let s = view.sample;
    let changes = view.kind_changes();
    let cols = [
        Column::new("KIND").shrink_to(12, 1),
        Column::new("COUNT").right(),
        Column::new("SHARE").right().drop_rank(1),
        Column::new("Δ LAST").right().drop_rank(0),
        Column::new("Δ START").right(),
        Column::new("TREND").shrink_to(8, 0),
    ];
    let mut kinds: Vec<_> = changes
        .iter()
        .filter(|(k, c)| s.kind(**k) > 0 || c.since_start != 0)
        .collect();
    kinds.sort_by(|a, b| s.kind(*b.0).cmp(&s.kind(*a.0)).then(a.0.cmp(b.0)));
    let mut rows = Vec::new();
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
        rows.push(vec![
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
    // Indented by one column, as the table has always been.
    let width = width.map(|w| w.saturating_sub(1));
    style::layout(&cols, &rows, width)
        .lines
        .iter()
        .map(|cells| format!(" {}", Table::join(cells)))
        .collect()
}

/// One line per sample, for logs and pipes: logfmt, names quoted and
/// escaped where needed; the level in colour when `frame.color`.
pub fn plain_line(view: &View, frame: &Frame) -> String {
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
        escape::logfmt(&s.comm),
        s.fds,
        limit_text(s.limits.soft),
        limit_text(s.limits.hard),
        s.usage_ratio().map(|u| format!("{:.1}%", u * 100.0)).unwrap_or_else(|| "-".into()),
        signed(ch.since_last),
        signed(ch.since_start),
        frame.level(v.level, v.level.name()),
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
    if let Some(st) = view.stacks {
        line.push_str(&super::stacks::logfmt_keys(st));
    }
    if v.level > Level::Ok || !v.patterns.is_empty() {
        if let Some(r) = v.reasons.first() {
            line.push_str(" reason=");
            line.push_str(&escape::logfmt(r));
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
    }
}

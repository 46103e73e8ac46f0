//! `fdwatch top`: the ranked table, the system line, the screen and the JSON
//! document of one refresh, from a [`Snapshot`]. Formatting only.

use std::fmt::Write;

use serde::Serialize;
use tabled::builder::Builder;
use tabled::settings::{object::Columns, Alignment, Style};

use super::screen::printable;
use crate::diagnose::format::approx_duration;
use crate::host::{Row, Snapshot};

/// The columns, in order (also the names `--sort` and the `s` key cycle through).
pub const COLUMNS: [&str; 10] = [
    "PID",
    "USER",
    "COMMAND",
    "FDS",
    "SOFT",
    "USE%",
    "SLOPE/min",
    "ETA",
    "KIND",
    "VERDICT",
];

fn cells(r: &Row) -> [String; 10] {
    [
        r.pid.to_string(),
        truncate(&r.user, 10),
        truncate(&printable(&r.comm), 16),
        r.fds.to_string(),
        r.soft_limit
            .map(|n| n.to_string())
            .unwrap_or_else(|| "unlim".into()),
        r.usage
            .map(|u| format!("{:.1}", u * 100.0))
            .unwrap_or_else(|| "-".into()),
        r.slope_per_s
            .map(|s| format!("{:+.1}", s * 60.0))
            .unwrap_or_else(|| "-".into()),
        r.eta_seconds
            .map(approx_duration)
            .unwrap_or_else(|| "-".into()),
        r.kind.clone().unwrap_or_else(|| "-".into()),
        r.level.name().to_string(),
    ]
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

/// The first lines: system file table and what could not be read.
pub fn header(snap: &Snapshot) -> String {
    let mut out = String::new();
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(snap.unix_time.max(0.0));
    let _ = write!(
        out,
        "fdwatch top — {}   {} processes",
        humantime::format_rfc3339_seconds(when),
        snap.processes
    );
    if snap.unreadable > 0 {
        let _ = write!(
            out,
            ", {} not readable (need CAP_SYS_PTRACE or the same uid)",
            snap.unreadable
        );
    }
    let _ = write!(out, "   refresh {:.0} ms", snap.refresh_seconds * 1000.0);
    out.push('\n');
    if let Some(s) = &snap.system {
        let _ = write!(
            out,
            "system: {} / {} file handles (fs.file-nr / fs.file-max)",
            s.allocated, s.max
        );
        match (s.slope_per_s, s.eta_seconds) {
            (_, Some(eta)) => {
                let _ = write!(out, ", growing, ENFILE in {}", approx_duration(eta));
            }
            (Some(sl), None) => {
                let _ = write!(out, ", trend {:+.1}/min", sl * 60.0);
            }
            _ => out.push_str(", trend: collecting"),
        }
        out.push('\n');
    }
    if let Some(e) = &snap.last_error {
        let _ = writeln!(out, "last error: {e} ({} so far)", snap.errors_total);
    }
    out
}

/// The ranked table; `selected` marks one row (the interactive cursor).
pub fn table(rows: &[Row], selected: Option<usize>) -> String {
    let mut b = Builder::default();
    let mut head: Vec<String> = COLUMNS.iter().map(|c| c.to_string()).collect();
    head.insert(0, String::new());
    b.push_record(head);
    for (i, r) in rows.iter().enumerate() {
        let mut line: Vec<String> = cells(r).into();
        line.insert(0, if selected == Some(i) { ">" } else { "" }.into());
        b.push_record(line);
    }
    let mut t = b.build();
    t.with(Style::blank())
        .modify(Columns::new(4..9), Alignment::right())
        .modify(Columns::single(1), Alignment::right());
    // No trailing blanks (logs, diffs).
    t.to_string()
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Plain output (not a terminal): the header and the table, then a blank line.
pub fn plain(snap: &Snapshot, limit: usize) -> String {
    let rows = &snap.rows[..snap.rows.len().min(limit)];
    format!("{}{}\n", header(snap), table(rows, None))
}

/// The interactive screen: header, table, key help.
pub fn screen(snap: &Snapshot, limit: usize, sort: &str, selected: usize) -> String {
    let rows = &snap.rows[..snap.rows.len().min(limit)];
    let mut out = header(snap);
    out.push_str(&table(rows, Some(selected)));
    let _ = write!(
        out,
        "\n\nsorted by {sort}   ↑/↓ or j/k select   s/S sort column   Enter watch   q quit"
    );
    out
}

#[derive(Serialize)]
struct Doc<'a> {
    #[serde(flatten)]
    snap: &'a Snapshot,
    rows: &'a [Row],
}

/// One JSON document per refresh (rows cut to `limit`).
pub fn json(snap: &Snapshot, limit: usize) -> serde_json::Result<String> {
    let rows = &snap.rows[..snap.rows.len().min(limit)];
    serde_json::to_string(&Doc { snap, rows })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::{Level, Tracker};
    use crate::host::Snapshot;

    fn row(pid: i32, fds: u64, soft: u64, eta: Option<f64>) -> Row {
        let mut t = Tracker::new();
        let sample: crate::sample::Sample = serde_json::from_value(serde_json::json!({
            "schema": 1, "backend": "count", "pid": pid, "comm": "svc", "start_time": 7,
            "unix_time": 0.0, "mono_time": 0.0, "fds": fds,
            "limits": {"soft": soft, "hard": soft},
            "system": {"allocated": 0, "unused": 0, "max": 0, "nr_open": 0}
        }))
        .unwrap();
        t.observe(&sample);
        Row {
            pid,
            start_time: 7,
            uid: 0,
            user: "root".into(),
            comm: "svc".into(),
            fds,
            soft_limit: Some(soft),
            hard_limit: Some(soft),
            usage: Some(fds as f64 / soft as f64),
            slope_per_s: eta.map(|_| 0.5),
            eta_seconds: eta,
            kind: eta.map(|_| "netlink".into()),
            level: if eta.is_some() {
                Level::Warning
            } else {
                Level::Ok
            },
            reason: String::new(),
            selected: true,
            workload: Default::default(),
            verdict: t.verdict(&Default::default()),
            sample,
        }
    }

    fn snap(rows: Vec<Row>) -> Snapshot {
        Snapshot {
            unix_time: 0.0,
            refresh_seconds: 0.004,
            processes: 3,
            unreadable: 2,
            kernel_threads: 1,
            system: None,
            errors_total: 0,
            last_error: None,
            rows,
        }
    }

    #[test]
    fn table_and_ranking() {
        let mut rows = vec![
            row(10, 100, 1024, None),
            row(11, 900, 1024, None),
            row(12, 50, 1024, Some(1200.0)),
        ];
        crate::host::sort_rows(&mut rows, crate::host::SortKey::Eta);
        let order: Vec<i32> = rows.iter().map(|r| r.pid).collect();
        assert_eq!(order, [12, 11, 10], "forecast first, then usage");
        let s = snap(rows);
        let text = plain(&s, 2);
        assert!(
            text.contains("3 processes, 2 not readable (need CAP_SYS_PTRACE"),
            "{text}"
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1].split_whitespace().collect::<Vec<_>>(), COLUMNS);
        let first: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            first,
            ["12", "root", "svc", "50", "1024", "4.9", "+30.0", "~20m00s", "netlink", "WARNING"]
        );
        assert_eq!(lines.len(), 4, "--limit 2: {text}");
        let doc: serde_json::Value = serde_json::from_str(&json(&s, 1).unwrap()).unwrap();
        assert_eq!(doc["rows"].as_array().unwrap().len(), 1);
        assert_eq!(doc["rows"][0]["eta_seconds"], 1200.0);
        assert_eq!(doc["unreadable"], 2);
        let sc = screen(&s, 10, "ETA", 1);
        let marked: Vec<&str> = sc
            .lines()
            .filter(|l| l.trim_start().starts_with('>'))
            .collect();
        assert_eq!(marked.len(), 1, "{sc}");
        assert_eq!(marked[0].split_whitespace().nth(1), Some("11"), "{sc}");
    }
}

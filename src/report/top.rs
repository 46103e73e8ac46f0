//! `fdwatch top`: the ranked table, the system line, the screen and the JSON
//! document of one refresh, from a [`Snapshot`]. Formatting only: the table
//! fits the frame's width (names cut with an ellipsis, then columns
//! dropped), names are escaped, the verdict is coloured.

use std::fmt::Write;

use serde::Serialize;

use super::escape;
use super::style::{self, Column, Frame, Table};
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

/// How each column gives way on a narrow terminal: COMMAND is cut first
/// (to 8), then USER and KIND; then SOFT, SLOPE/min, KIND and USER are
/// dropped, in that order. PID, FDS, USE%, ETA and VERDICT always stay.
fn columns() -> Vec<Column> {
    let mut cols = vec![Column::new("")]; // the cursor
    cols.extend([
        Column::new(COLUMNS[0]).right(),
        Column::new(COLUMNS[1]).shrink_to(5, 1).drop_rank(3),
        Column::new(COLUMNS[2]).shrink_to(8, 0),
        Column::new(COLUMNS[3]).right(),
        Column::new(COLUMNS[4]).right().drop_rank(0),
        Column::new(COLUMNS[5]).right(),
        Column::new(COLUMNS[6]).right().drop_rank(1),
        Column::new(COLUMNS[7]).right(),
        Column::new(COLUMNS[8]).shrink_to(5, 1).drop_rank(2),
        Column::new(COLUMNS[9]),
    ]);
    cols
}

fn cells(r: &Row) -> [String; 10] {
    [
        r.pid.to_string(),
        style::elide(&escape::terminal(&r.user), 10),
        style::elide(&escape::terminal(&r.comm), 16),
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

/// The first lines: system file table and what could not be read.
pub fn header(snap: &Snapshot, frame: &Frame) -> String {
    let mut lines = Vec::new();
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(snap.unix_time.max(0.0));
    let mut first = format!(
        "fdwatch top — {}   {} processes",
        humantime::format_rfc3339_seconds(when),
        snap.processes
    );
    if snap.unreadable > 0 {
        let _ = write!(
            first,
            ", {} not readable (need CAP_SYS_PTRACE or the same uid)",
            snap.unreadable
        );
    }
    let _ = write!(first, "   refresh {:.0} ms", snap.refresh_seconds * 1000.0);
    lines.push(first);
    if let Some(s) = &snap.system {
        let mut line = format!(
            "system: {} / {} file handles (fs.file-nr / fs.file-max)",
            s.allocated, s.max
        );
        match (s.slope_per_s, s.eta_seconds) {
            (_, Some(eta)) => {
                let _ = write!(line, ", growing, ENFILE in {}", approx_duration(eta));
            }
            (Some(sl), None) => {
                let _ = write!(line, ", trend {:+.1}/min", sl * 60.0);
            }
            _ => line.push_str(", trend: collecting"),
        }
        lines.push(line);
    }
    if let Some(e) = &snap.last_error {
        lines.push(format!(
            "last error: {} ({} so far)",
            escape::terminal(e),
            snap.errors_total
        ));
    }
    let mut out = String::new();
    for l in lines {
        out.push_str(&frame.fit(&l));
        out.push('\n');
    }
    out
}

/// The ranked table; `selected` marks one row (the interactive cursor).
pub fn table(rows: &[Row], selected: Option<usize>, frame: &Frame) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut line: Vec<String> = cells(r).into();
            line.insert(0, if selected == Some(i) { ">" } else { "" }.into());
            line
        })
        .collect();
    let laid = style::layout(&columns(), &cells, frame.width);
    let verdict = laid.shown.iter().position(|c| *c == COLUMNS.len());
    let mut out: Vec<String> = Vec::with_capacity(laid.lines.len());
    for (i, mut line) in laid.lines.into_iter().enumerate() {
        if let (Some(v), Some(r)) = (verdict, i.checked_sub(1).and_then(|i| rows.get(i))) {
            line[v] = frame.level(r.level, &line[v]);
        }
        out.push(Table::join(&line));
    }
    out.join("\n")
}

/// Plain output (not a terminal): the header and the table, then a blank line.
pub fn plain(snap: &Snapshot, limit: usize, frame: &Frame) -> String {
    let rows = &snap.rows[..snap.rows.len().min(limit)];
    format!("{}{}\n", header(snap, frame), table(rows, None, frame))
}

/// The interactive screen: header, table, key help.
pub fn screen(snap: &Snapshot, limit: usize, sort: &str, selected: usize, frame: &Frame) -> String {
    let rows = &snap.rows[..snap.rows.len().min(limit)];
    let mut out = header(snap, frame);
    out.push_str(&table(rows, Some(selected), frame));
    let help =
        format!("sorted by {sort}   ↑/↓ or j/k select   s/S sort column   Enter watch   q quit");
    let _ = write!(out, "\n\n{}", frame.fit(&help));
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
            stacks: None,
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
        let text = plain(&s, 2, &Frame::default());
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
        let sc = screen(&s, 10, "ETA", 1, &Frame::default());
        let marked: Vec<&str> = sc
            .lines()
            .filter(|l| l.trim_start().starts_with('>'))
            .collect();
        assert_eq!(marked.len(), 1, "{sc}");
        assert_eq!(marked[0].split_whitespace().nth(1), Some("11"), "{sc}");
    }
}

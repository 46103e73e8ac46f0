//! The Prometheus text exposition format: for the node_exporter textfile
//! collector (`check --format prometheus`) and for `serve`.

use std::fmt::Write;

use crate::diagnose::Verdict;
use crate::sample::{Sample, SystemFiles};

/// Escape a label value: `\` `"` and newline; other control characters
/// shown escaped (see `report::escape::prometheus_label`).
pub fn escape(v: &str) -> String {
    super::escape::prometheus_label(v)
}

fn family(out: &mut String, name: &str, help: &str, kind: &str, rows: &[(String, f64)]) {
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, v) in rows {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {}", fmt_value(*v));
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {}", fmt_value(*v));
        }
    }
}

fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Render the metrics of the given processes. Metric names follow the
/// Prometheus naming rules: one prefix, base units, `_ratio` for 0..1.
pub fn render(entries: &[(&Sample, &Verdict)]) -> String {
    let system = entries.first().map(|(s, _)| SystemMetrics {
        files: s.system,
        growth_per_second: None,
        exhaustion_seconds: None,
    });
    render_with(
        entries,
        &Options {
            start_time_label: false,
            system,
            exporter: None,
        },
    )
}

/// The system file table as `serve` exports it (with its own trend).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemMetrics {
    pub files: SystemFiles,
    pub growth_per_second: Option<f64>,
    pub exhaustion_seconds: Option<f64>,
}

/// What `serve` says about itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExporterMetrics {
    pub processes: usize,
    pub unreadable: usize,
    pub refresh_seconds: f64,
    pub last_refresh_unix: f64,
    pub errors_total: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Add `start_time` (clock ticks after boot) to the process labels: a
    /// reused pid then makes a new series instead of continuing the old one.
    pub start_time_label: bool,
    pub system: Option<SystemMetrics>,
    pub exporter: Option<ExporterMetrics>,
}

/// [`render`] with `serve`'s extras: the `start_time` label, the system
/// trend, the exporter's own health.
pub fn render_with(entries: &[(&Sample, &Verdict)], opts: &Options) -> String {
    let ids = |s: &Sample| {
        if opts.start_time_label {
            format!(
                "pid=\"{}\",comm=\"{}\",start_time=\"{}\"",
                s.pid,
                escape(&s.comm),
                s.start_time
            )
        } else {
            format!("pid=\"{}\",comm=\"{}\"", s.pid, escape(&s.comm))
        }
    };
    let mut out = String::new();
    let rows = |f: &dyn Fn(&Sample, &Verdict) -> Option<f64>| -> Vec<(String, f64)> {
        entries
            .iter()
            .filter_map(|(s, v)| f(s, v).map(|x| (ids(s), x)))
            .collect()
    };
    family(
        &mut out,
        "fdwatch_open_fds",
        "Open file descriptors of the process.",
        "gauge",
        &rows(&|s, _| Some(s.fds as f64)),
    );
    let by_kind: Vec<(String, f64)> = entries
        .iter()
        .flat_map(|(s, _)| {
            s.kinds
                .iter()
                .map(move |(k, n)| (format!("{},kind=\"{}\"", ids(s), k.name()), *n as f64))
        })
        .collect();
    family(
        &mut out,
        "fdwatch_open_fds_by_kind",
        "Open file descriptors by kind (fdwatch's classified census).",
        "gauge",
        &by_kind,
    );
    family(
        &mut out,
        "fdwatch_fd_soft_limit",
        "Soft RLIMIT_NOFILE of the process.",
        "gauge",
        &rows(&|s, _| s.limits.soft.map(|n| n as f64)),
    );
    family(
        &mut out,
        "fdwatch_fd_hard_limit",
        "Hard RLIMIT_NOFILE of the process.",
        "gauge",
        &rows(&|s, _| s.limits.hard.map(|n| n as f64)),
    );
    family(
        &mut out,
        "fdwatch_fd_usage_ratio",
        "Open fds over the soft limit (0..1).",
        "gauge",
        &rows(&|s, _| s.usage_ratio()),
    );
    family(
        &mut out,
        "fdwatch_fd_growth_per_second",
        "Robust (Theil-Sen) slope of the open fd count, fds per second.",
        "gauge",
        &rows(&|_, v| v.total.as_ref().map(|t| t.slope)),
    );
    family(
        &mut out,
        "fdwatch_fd_exhaustion_seconds",
        "Forecast seconds until the soft limit (or fs.file-max) is reached; absent when not growing.",
        "gauge",
        &rows(&|_, v| v.forecast.as_ref().map(|f| f.eta)),
    );
    family(
        &mut out,
        "fdwatch_fd_exhaustion_confirmed",
        "1 when the exhaustion forecast may page, 0 while it is held back (unconfirmed, or a pool refilling below its peak); absent when not growing.",
        "gauge",
        &rows(&|_, v| v.forecast.as_ref().map(|f| f64::from(u8::from(f.confirmed)))),
    );
    family(
        &mut out,
        "fdwatch_verdict",
        "fdwatch verdict: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
        "gauge",
        &rows(&|_, v| Some(v.level as u8 as f64)),
    );
    if let Some(sys) = &opts.system {
        let one = |v: f64| [(String::new(), v)];
        family(
            &mut out,
            "fdwatch_system_files_allocated",
            "Allocated file handles system-wide (fs.file-nr).",
            "gauge",
            &one(sys.files.allocated as f64),
        );
        family(
            &mut out,
            "fdwatch_system_files_max",
            "System-wide file handle limit (fs.file-max).",
            "gauge",
            &one(sys.files.max as f64),
        );
        if let Some(g) = sys.growth_per_second {
            family(
                &mut out,
                "fdwatch_system_files_growth_per_second",
                "Robust slope of the allocated file handles system-wide, per second.",
                "gauge",
                &one(g),
            );
        }
        if let Some(e) = sys.exhaustion_seconds {
            family(
                &mut out,
                "fdwatch_system_files_exhaustion_seconds",
                "Forecast seconds until fs.file-max is reached (ENFILE); absent when not growing.",
                "gauge",
                &one(e),
            );
        }
    }
    if let Some(x) = &opts.exporter {
        let one = |v: f64| [(String::new(), v)];
        family(
            &mut out,
            "fdwatch_processes",
            "Processes fdwatch looked at in its last refresh (kernel threads excluded).",
            "gauge",
            &one(x.processes as f64),
        );
        family(
            &mut out,
            "fdwatch_processes_unreadable",
            "Processes whose fds fdwatch may not read (needs CAP_SYS_PTRACE or the same uid).",
            "gauge",
            &one(x.unreadable as f64),
        );
        family(
            &mut out,
            "fdwatch_refresh_duration_seconds",
            "Time the last refresh over /proc took.",
            "gauge",
            &one(x.refresh_seconds),
        );
        family(
            &mut out,
            "fdwatch_last_refresh_timestamp_seconds",
            "Unix time of the last successful refresh.",
            "gauge",
            &one(x.last_refresh_unix),
        );
        family(
            &mut out,
            "fdwatch_refresh_errors_total",
            "Refreshes that failed to read /proc (the last good snapshot is served meanwhile).",
            "counter",
            &one(x.errors_total as f64),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_values() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(fmt_value(3.0), "3");
        assert_eq!(fmt_value(0.25), "0.25");
        assert_eq!(fmt_value(f64::INFINITY), "+Inf");
    }
}

//! The Prometheus text exposition format: for the node_exporter textfile
//! collector (`check --format prometheus`) and for `serve`.

use std::fmt::Write;

use crate::diagnose::Verdict;
use crate::sample::cgroup::Workload;
use crate::sample::own::OwnProcess;
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
    let series: Vec<Series> = entries
        .iter()
        .map(|(sample, verdict)| Series {
            sample,
            verdict,
            workload: None,
            stacks: None,
        })
        .collect();
    render_with(
        &series,
        &Options {
            system,
            ..Default::default()
        },
    )
}

/// One process to export, and the container and pod it runs in.
#[derive(Debug, Clone, Copy)]
pub struct Series<'a> {
    pub sample: &'a Sample,
    pub verdict: &'a Verdict,
    pub workload: Option<&'a Workload>,
    /// `serve --stacks`: the process's top leak and churn sites.
    pub stacks: Option<&'a crate::stacks::Snapshot>,
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

/// `fdwatch_build_info`: which build answers.
#[derive(Debug, Clone, Default)]
pub struct BuildInfo {
    pub version: String,
    /// The source revision, when the build was told it (`FDWATCH_REVISION`).
    pub revision: Option<String>,
    /// `rustc -V` of the compiler that built it.
    pub rustc: Option<String>,
}

/// The exporter's HTTP side, as counted by `serve`.
#[derive(Debug, Clone, Default)]
pub struct HttpMetrics {
    /// Responses by status code; 503 includes the connections turned away
    /// by admission control before their request was read.
    pub requests: Vec<(u16, u64)>,
    /// Connections answered 503 by admission control, by reason.
    pub rejected: Vec<(&'static str, u64)>,
    /// Connections held at the time of the render.
    pub open_connections: u64,
    /// Time from accepting a `GET /metrics` to its last byte written:
    /// cumulative counts per upper bound (seconds), then sum and count.
    pub duration_buckets: Vec<(f64, u64)>,
    pub duration_sum: f64,
    pub duration_count: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Add `start_time` (clock ticks after boot) to the process labels: a
    /// reused pid then makes a new series instead of continuing the old one.
    pub start_time_label: bool,
    /// Add `container_id` and `pod_uid` to the process labels (empty for a
    /// process of the host), so that series join a cluster's pods.
    pub workload_labels: bool,
    pub system: Option<SystemMetrics>,
    pub exporter: Option<ExporterMetrics>,
    pub build: Option<BuildInfo>,
    pub http: Option<HttpMetrics>,
    /// The exporter's own process (`process_*`, as client libraries name them).
    pub own: Option<OwnProcess>,
}

/// [`render`] with `serve`'s extras: the `start_time`, `container_id` and
/// `pod_uid` labels, the system trend, the exporter's own health.
pub fn render_with(entries: &[Series], opts: &Options) -> String {
    let ids = |e: &Series| {
        let s = e.sample;
        let mut l = format!("pid=\"{}\",comm=\"{}\"", s.pid, escape(&s.comm));
        if opts.start_time_label {
            let _ = write!(l, ",start_time=\"{}\"", s.start_time);
        }
        if opts.workload_labels {
            let w = e.workload;
            let _ = write!(
                l,
                ",container_id=\"{}\",pod_uid=\"{}\"",
                escape(w.and_then(|w| w.container_id.as_deref()).unwrap_or("")),
                escape(w.and_then(|w| w.pod_uid.as_deref()).unwrap_or(""))
            );
        }
        l
    };
    let mut out = String::new();
    let rows = |f: &dyn Fn(&Sample, &Verdict) -> Option<f64>| -> Vec<(String, f64)> {
        entries
            .iter()
            .filter_map(|e| f(e.sample, e.verdict).map(|x| (ids(e), x)))
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
        .flat_map(|e| {
            e.sample
                .kinds
                .iter()
                .map(move |(k, n)| (format!("{},kind=\"{}\"", ids(e), k.name()), *n as f64))
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
    // `serve --stacks`: one series per top site (at most STACK_SITES per
    // list and traced process), named by its application function.
    let sites = |list: fn(&crate::stacks::Snapshot) -> Vec<(String, f64)>| -> Vec<(String, f64)> {
        entries
            .iter()
            .flat_map(|e| {
                e.stacks
                    .map(list)
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |(site, v)| (format!("{},site=\"{}\"", ids(e), escape(&site)), v))
            })
            .collect()
    };
    family(
        &mut out,
        "fdwatch_leak_site_open_fds",
        "Open fds by the code that opened them (fdwatch serve --stacks: fds opened since the tracer attached and still open; top sites only).",
        "gauge",
        &sites(|s| super::stacks::series(s).0),
    );
    family(
        &mut out,
        "fdwatch_churn_site_opens_per_second",
        "fds opened per second by the code that opened them, since the tracer attached (fdwatch serve --stacks; top sites only).",
        "gauge",
        &sites(|s| super::stacks::series(s).1),
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
    if let Some(b) = &opts.build {
        let mut labels = format!("version=\"{}\"", escape(&b.version));
        for (name, v) in [("revision", &b.revision), ("rustc", &b.rustc)] {
            if let Some(v) = v {
                let _ = write!(labels, ",{name}=\"{}\"", escape(v));
            }
        }
        family(
            &mut out,
            "fdwatch_build_info",
            "The fdwatch build that answers: always 1, the build in the labels.",
            "gauge",
            &[(labels, 1.0)],
        );
    }
    if let Some(h) = &opts.http {
        http_families(&mut out, h);
    }
    if let Some(p) = &opts.own {
        own_families(&mut out, p);
    }
    out
}

fn http_families(out: &mut String, h: &HttpMetrics) {
    let by = |label: &str, rows: Vec<(String, u64)>| -> Vec<(String, f64)> {
        rows.into_iter()
            .map(|(k, v)| (format!("{label}=\"{k}\""), v as f64))
            .collect()
    };
    family(
        out,
        "fdwatch_http_requests_total",
        "HTTP responses by status code (503: turned away by admission control, maybe before the request was read).",
        "counter",
        &by(
            "code",
            h.requests.iter().map(|(c, n)| (c.to_string(), *n)).collect(),
        ),
    );
    family(
        out,
        "fdwatch_http_rejected_total",
        "Connections answered 503 by admission control: capacity (all connection slots held), per_source (the client address holds its share), displaced (a waiting connection gave its slot to a complete request).",
        "counter",
        &by(
            "reason",
            h.rejected.iter().map(|(r, n)| (r.to_string(), *n)).collect(),
        ),
    );
    family(
        out,
        "fdwatch_http_open_connections",
        "HTTP connections held when these metrics were rendered.",
        "gauge",
        &[(String::new(), h.open_connections as f64)],
    );
    if h.duration_buckets.is_empty() {
        return;
    }
    let name = "fdwatch_http_request_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time from accepting a GET /metrics to its last byte written."
    );
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (le, n) in &h.duration_buckets {
        let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {n}", fmt_value(*le));
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.duration_count);
    let _ = writeln!(out, "{name}_sum {}", fmt_value(h.duration_sum));
    let _ = writeln!(out, "{name}_count {}", h.duration_count);
}

fn own_families(out: &mut String, p: &OwnProcess) {
    let one = |v: f64| [(String::new(), v)];
    family(
        out,
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds.",
        "counter",
        &one(p.cpu_seconds),
    );
    family(
        out,
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        "gauge",
        &one(p.resident_bytes as f64),
    );
    let opt = |v: Option<f64>| v.map(|v| one(v).to_vec()).unwrap_or_default();
    family(
        out,
        "process_open_fds",
        "Number of open file descriptors.",
        "gauge",
        &opt(p.open_fds.map(|n| n as f64)),
    );
    family(
        out,
        "process_max_fds",
        "Maximum number of open file descriptors.",
        "gauge",
        &opt(p.max_fds.map(|n| n as f64)),
    );
    family(
        out,
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        "gauge",
        &opt(p.start_time_seconds),
    );
}

/// `check`'s verdict on its whole target, whatever happened (0 OK .. 3
/// UNKNOWN): a check whose target died or matched nothing still writes a
/// series, so a textfile collector exports 3 rather than nothing.
pub fn check_verdict(target: &str, level: crate::diagnose::Level) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "fdwatch_check_verdict",
        "fdwatch check verdict on its target: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
        "gauge",
        &[(format!("target=\"{}\"", escape(target)), level as u8 as f64)],
    );
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

    #[test]
    fn serve_labels_and_extras() {
        let sample: Sample = serde_json::from_value(serde_json::json!({
            "schema": 1, "backend": "count", "pid": 42, "comm": "svc", "start_time": 7,
            "unix_time": 0.0, "mono_time": 0.0, "fds": 5,
            "limits": {"soft": 1024, "hard": 4096},
            "system": {"allocated": 0, "unused": 0, "max": 0, "nr_open": 0}
        }))
        .unwrap();
        let verdict = crate::diagnose::Tracker::new().verdict(&Default::default());
        let pod = Workload {
            container_id: Some("abc123abc123".into()),
            pod_uid: Some("9a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9".into()),
        };
        let series = [
            Series {
                sample: &sample,
                verdict: &verdict,
                workload: Some(&pod),
                stacks: None,
            },
            Series {
                sample: &sample,
                verdict: &verdict,
                workload: None,
                stacks: None,
            },
        ];
        let text = render_with(
            &series,
            &Options {
                start_time_label: true,
                workload_labels: true,
                build: Some(BuildInfo {
                    version: "1.2.3".into(),
                    revision: None,
                    rustc: Some("rustc 1.87.0".into()),
                }),
                http: Some(HttpMetrics {
                    requests: vec![(200, 3), (503, 1)],
                    rejected: vec![("capacity", 1)],
                    open_connections: 2,
                    duration_buckets: vec![(0.001, 2), (0.1, 3)],
                    duration_sum: 0.05,
                    duration_count: 3,
                }),
                own: Some(OwnProcess {
                    cpu_seconds: 1.5,
                    resident_bytes: 4096,
                    start_time_seconds: Some(1e9),
                    open_fds: Some(9),
                    max_fds: None,
                }),
                ..Default::default()
            },
        );
        assert!(text.contains("fdwatch_open_fds{pid=\"42\",comm=\"svc\",start_time=\"7\",container_id=\"abc123abc123\",pod_uid=\"9a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9\"} 5\n"), "{text}");
        assert!(text.contains("fdwatch_open_fds{pid=\"42\",comm=\"svc\",start_time=\"7\",container_id=\"\",pod_uid=\"\"} 5\n"), "{text}");
        assert!(
            text.contains("fdwatch_build_info{version=\"1.2.3\",rustc=\"rustc 1.87.0\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("fdwatch_http_requests_total{code=\"503\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("fdwatch_http_request_duration_seconds_bucket{le=\"0.001\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("fdwatch_http_request_duration_seconds_bucket{le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("process_cpu_seconds_total 1.5\n"), "{text}");
        assert!(text.contains("process_open_fds 9\n"), "{text}");
        assert!(!text.contains("process_max_fds"), "{text}");
        // The textfile output (check) keeps its labels.
        let plain = render(&[(&sample, &verdict)]);
        assert!(
            plain.contains("fdwatch_open_fds{pid=\"42\",comm=\"svc\"} 5\n"),
            "{plain}"
        );
    }
}

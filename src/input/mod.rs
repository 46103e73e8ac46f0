//! Readers for `fdwatch analyze`: each input format becomes series of
//! [`Sample`]s, one series per process (or per labelled Prometheus series).
//!
//! This module owns parsing and cleaning: format detection, truncated lines,
//! out-of-order and duplicate timestamps, gaps and PID restarts, each turned
//! into a note for the operator. It must never judge the data (no trends, no
//! verdicts): the samples it returns go through the same `diagnose::Tracker`
//! as the live view.

mod csv;
mod jsonl;
mod prometheus;
mod state;

use std::collections::BTreeMap;
use std::path::Path;

use crate::sample::{Backend, FdLimits, Sample};

/// The input formats `analyze` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// fdwatch JSON Lines: `--json` output or a `--record` file.
    Jsonl,
    /// An `fdwatch check --state` file.
    State,
    /// `unix_time,fds[,soft_limit]`, header optional.
    Csv,
    /// The JSON of a Prometheus `/api/v1/query_range` answer.
    Prometheus,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::State => "state",
            Format::Csv => "csv",
            Format::Prometheus => "prometheus",
        }
    }

    /// What a file of this format looks like, for "expected ..." messages.
    pub fn expected(self) -> &'static str {
        match self {
            Format::Jsonl => "fdwatch JSON Lines (one sample object a line, as written by --json or --record)",
            Format::State => "an fdwatch state file ({\"format\":\"fdwatch-state\",...}, as kept by check --state)",
            Format::Csv => "CSV lines unix_time,fds[,soft_limit] (header optional)",
            Format::Prometheus => "a Prometheus query_range response ({\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",...}})",
        }
    }
}

/// Why a file could not be read at all. Each is UNKNOWN (exit 3) at the edge.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not {expected}{detail}")]
    WrongKind {
        path: String,
        expected: String,
        detail: String,
    },
    #[error("{path}: line {line}: {detail}")]
    Malformed {
        path: String,
        line: usize,
        detail: String,
    },
    #[error("{path}: empty, no samples")]
    Empty { path: String },
}

/// One series of samples of one process (or one labelled metric), in time order.
#[derive(Debug, Clone)]
pub struct Series {
    /// What a person reads: `pid 4242 (rpc-msg)`, `{instance="a:9100",job="api"}`.
    pub name: String,
    /// The Prometheus labels (minus `__name__`), empty for other inputs.
    pub labels: BTreeMap<String, String>,
    pub samples: Vec<Sample>,
    /// What cleaning did and what the data shows about itself (gaps, restarts).
    pub notes: Vec<String>,
    /// Exact duplicates dropped, samples that were out of order.
    pub duplicates_dropped: usize,
    pub reordered: usize,
    /// Longest interval between two samples: (seconds, unix time it began).
    pub longest_gap: Option<(f64, f64)>,
}

/// Everything read from one file.
#[derive(Debug, Clone)]
pub struct Input {
    pub path: String,
    pub format: Format,
    pub series: Vec<Series>,
    /// Problems that did not stop the reading (a truncated last line).
    pub warnings: Vec<String>,
}

/// Read and clean one file; `format` forces the format, otherwise it is detected.
pub fn read(path: &Path, format: Option<Format>) -> Result<Input, InputError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| InputError::Io {
        path: shown.clone(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    parse(&shown, &text, format)
}

/// Parse text already read; `name` is used in messages and series names.
pub fn parse(name: &str, text: &str, format: Option<Format>) -> Result<Input, InputError> {
    if text.trim().is_empty() {
        return Err(InputError::Empty { path: name.into() });
    }
    let format = match format {
        Some(f) => f,
        None => detect(text).ok_or_else(|| InputError::WrongKind {
            path: name.into(),
            expected: "a recording analyze reads: fdwatch JSON Lines, an fdwatch state file, CSV (unix_time,fds[,soft_limit]) or a Prometheus query_range response".into(),
            detail: String::new(),
        })?,
    };
    let mut warnings = Vec::new();
    let raw = match format {
        Format::Jsonl => jsonl::parse(name, text, &mut warnings)?,
        Format::State => state::parse(name, text)?,
        Format::Csv => csv::parse(name, text)?,
        Format::Prometheus => prometheus::parse(name, text)?,
    };
    let series: Vec<Series> = raw.into_iter().filter_map(clean).collect();
    if series.is_empty() {
        return Err(InputError::Empty { path: name.into() });
    }
    Ok(Input {
        path: name.into(),
        format,
        series,
        warnings,
    })
}

/// Guess the format from the content.
pub fn detect(text: &str) -> Option<Format> {
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with('{') {
        let first_line = trimmed.lines().next().unwrap_or("");
        if let Ok(serde_json::Value::Object(o)) = serde_json::from_str(first_line) {
            if o.contains_key("fds") && o.contains_key("pid") {
                return Some(Format::Jsonl);
            }
            if o.get("format").and_then(|f| f.as_str()) == Some(crate::state::FORMAT) {
                return Some(Format::State);
            }
            if o.contains_key("status") && o.contains_key("data") {
                return Some(Format::Prometheus);
            }
        }
        // A pretty-printed (multi-line) JSON document: look at its top-level keys.
        if let Ok(serde_json::Value::Object(o)) = serde_json::from_str(trimmed) {
            if o.get("format").and_then(|f| f.as_str()) == Some(crate::state::FORMAT) {
                return Some(Format::State);
            }
            if o.contains_key("status") && o.contains_key("data") {
                return Some(Format::Prometheus);
            }
        }
        // A recording whose only line is cut short is still a recording.
        if first_line.contains("\"fds\"") || first_line.starts_with("{\"schema\"") {
            return Some(Format::Jsonl);
        }
        return None;
    }
    csv::looks_like(trimmed).then_some(Format::Csv)
}

/// A series as a reader produced it, before cleaning.
pub(crate) struct RawSeries {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub samples: Vec<Sample>,
    pub notes: Vec<String>,
}

/// A minimal sample (fds and limits only) for inputs from other tools, which
/// have no monotonic clock: unix time stands in for it.
pub fn minimal_sample(pid: i32, comm: &str, unix_time: f64, fds: u64, soft: Option<u64>) -> Sample {
    let mut s = Sample::new(pid, comm, 0, unix_time, unix_time);
    s.backend = Backend::Count;
    s.fds = fds;
    s.limits = FdLimits { soft, hard: None };
    s
}

/// Sort stably by the trend clock, drop exact duplicates, find the longest gap.
fn clean(raw: RawSeries) -> Option<Series> {
    let RawSeries {
        name,
        labels,
        mut samples,
        mut notes,
    } = raw;
    if samples.is_empty() {
        return None;
    }
    let reordered = samples
        .windows(2)
        .filter(|w| w[1].mono_time < w[0].mono_time)
        .count();
    if reordered > 0 {
        samples.sort_by(|a, b| a.mono_time.total_cmp(&b.mono_time));
        notes.push(format!(
            "{reordered} sample(s) out of time order; sorted by time"
        ));
    }
    let before = samples.len();
    samples.dedup_by(|b, a| a == b);
    let duplicates_dropped = before - samples.len();
    if duplicates_dropped > 0 {
        notes.push(format!(
            "{duplicates_dropped} exact duplicate sample(s) dropped"
        ));
    }
    // Same time, different values: keep the first, the trend cannot use both.
    let before = samples.len();
    samples.dedup_by(|b, a| a.mono_time == b.mono_time);
    let conflicting = before - samples.len();
    if conflicting > 0 {
        notes.push(format!(
            "{conflicting} sample(s) with an already-seen timestamp but other values dropped (the first kept)"
        ));
    }
    let gaps: Vec<(f64, f64)> = samples
        .windows(2)
        .map(|w| (w[1].mono_time - w[0].mono_time, w[0].unix_time))
        .collect();
    let longest_gap = gaps.iter().copied().max_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((gap, at)) = longest_gap {
        let mut steps: Vec<f64> = gaps.iter().map(|g| g.0).collect();
        steps.sort_by(f64::total_cmp);
        let median = steps[steps.len() / 2];
        if gap > 3.0 * median && gap > 1.0 {
            notes.push(format!(
                "longest gap {} after {} (samples are usually {} apart)",
                crate::diagnose::format::approx_duration(gap).trim_start_matches('~'),
                crate::report::timeline::clock(at, true),
                crate::diagnose::format::approx_duration(median).trim_start_matches('~'),
            ));
        }
    }
    Some(Series {
        name,
        labels,
        samples,
        notes,
        duplicates_dropped: duplicates_dropped + conflicting,
        reordered,
        longest_gap,
    })
}

/// Split samples of possibly many processes into one series per process,
/// (pid, start time) in order of first appearance, noting PID restarts.
pub(crate) fn split_by_process(samples: Vec<Sample>) -> Vec<RawSeries> {
    let mut order: Vec<(i32, u64)> = Vec::new();
    let mut by: BTreeMap<(i32, u64), Vec<Sample>> = BTreeMap::new();
    for s in samples {
        let key = (s.pid, s.start_time);
        if !by.contains_key(&key) {
            order.push(key);
        }
        by.entry(key).or_default().push(s);
    }
    let mut out = Vec::new();
    for (i, key) in order.iter().enumerate() {
        let samples = by.remove(key).unwrap_or_default();
        let Some(first) = samples.first() else {
            continue;
        };
        let mut notes = Vec::new();
        if let Some(prev) = order[..i].iter().rev().find(|k| k.0 == key.0) {
            notes.push(format!(
                "pid {} restarted at {} (start time {} → {}): analysed as a new series",
                key.0,
                crate::report::timeline::clock(first.unix_time, true),
                prev.1,
                key.1
            ));
        }
        out.push(RawSeries {
            name: format!("pid {} ({})", first.pid, first.comm),
            labels: BTreeMap::new(),
            samples,
            notes,
        });
    }
    out
}

#[cfg(test)]
mod tests;

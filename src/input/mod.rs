//! Readers for `fdwatch analyze`: each input format becomes a stream of
//! [`Sample`]s, each tagged with the series (process, or labelled Prometheus
//! series) it belongs to.
//!
//! This module owns reading, validating and cleaning: format detection,
//! bounded reads (a line cap for JSON Lines and CSV, a size cap for the
//! formats that are one JSON document), range checks on every time and count
//! where it enters, truncated lines, out-of-order and duplicate timestamps,
//! gaps and PID restarts, each turned into a note or an error naming the file
//! and the line. It streams: memory is bounded by [`MAX_LINE`],
//! [`MAX_DOCUMENT`], [`MAX_SERIES`] and [`REORDER_WINDOW`], never by the size
//! of the input. It must never judge the data (no trends, no verdicts: the
//! samples go through the same `diagnose::Tracker` as the live view) and
//! never depends on `report` (formatting belongs there).

mod csv;
mod jsonl;
mod prometheus;
mod state;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use crate::sample::{Backend, FdLimits, Sample, SCHEMA_VERSION};

/// Longest JSON Lines or CSV line read, in bytes: a full-census sample line
/// is a few kilobytes; anything longer is not a recording (`/dev/zero`).
pub const MAX_LINE: usize = 1 << 20;
/// Largest Prometheus answer or state file, in bytes. These are one JSON
/// document each and must be parsed whole; fdwatch's own state file stays
/// under 10 MiB, and a Prometheus range query of this size holds over a
/// million points (Prometheus itself answers at most 11,000 per series).
pub const MAX_DOCUMENT: u64 = 32 << 20;
/// Most series one input may hold (distinct processes, or Prometheus label sets).
pub const MAX_SERIES: usize = 1000;
/// Samples out of time order are put back in order when they are at most
/// this many samples late (two writers interleaved); later ones are dropped.
pub const REORDER_WINDOW: usize = 8;
/// Times accepted, in Unix seconds: 1970-01-01 to 2200-01-01 UTC.
pub const MAX_UNIX_TIME: f64 = 7_258_118_400.0;
/// The largest fd count accepted: above the kernel's own ceiling
/// (`fs.nr_open` is at most 2^30).
pub const MAX_FDS: u64 = 1 << 31;
/// How many intervals the "usual interval" (the median) is taken from.
const INTERVALS_KEPT: usize = 1001;
/// How much of a file format detection looks at.
const SNIFF: u64 = 64 << 10;

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

/// Why a file could not be read. Each is UNKNOWN (exit 3) at the edge.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    // The io error is in the message and deliberately not a `source`: with
    // `{:#}` anyhow would print it twice ("Is a directory: Is a directory").
    #[error("reading {path}: {err}")]
    Io { path: String, err: std::io::Error },
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
    #[error("{path}: {detail}")]
    Invalid { path: String, detail: String },
    #[error("{path}: empty, no samples")]
    Empty { path: String },
}

/// What is known about one series once its input has been read to the end.
#[derive(Debug, Clone, Default)]
pub struct SeriesInfo {
    /// What a person reads: `pid 4242 (rpc-msg)`, `{instance="a:9100",job="api"}`.
    pub name: String,
    /// The Prometheus labels (minus `__name__`), empty for other inputs.
    pub labels: BTreeMap<String, String>,
    /// What cleaning did and what the data shows about itself (gaps, restarts).
    pub notes: Vec<String>,
    /// Samples passed on (after cleaning).
    pub samples: usize,
    /// Exact duplicates and samples at an already-seen time, dropped.
    pub duplicates_dropped: usize,
    /// Of those, the ones with other values than the sample kept.
    pub conflicting: usize,
    /// Samples that arrived out of time order (put back in order, or dropped
    /// when more than [`REORDER_WINDOW`] samples late).
    pub reordered: usize,
    /// Of those, the ones dropped.
    pub late_dropped: usize,
    /// Longest interval between two samples: (seconds, unix time it began).
    pub longest_gap: Option<(f64, f64)>,
    /// The first intervals, for the usual interval (their median).
    intervals: Vec<f64>,
    /// The last sample passed on: (mono time, unix time, what a duplicate
    /// of it repeats: fds and limits).
    last: Option<(f64, f64, (u64, FdLimits))>,
    /// Samples held back to put late ones in order, in time order (boxed:
    /// a sample is large, and each is moved several times on its way).
    window: VecDeque<Box<Sample>>,
}

/// One clean sample and the index of its series in [`Reader::series`].
#[derive(Debug, Clone)]
pub struct Item {
    pub series: usize,
    pub sample: Box<Sample>,
}

/// A streaming reader over one input: iterate for the samples; an `Err` ends
/// the input (nothing more comes). After the end, [`Reader::series`] holds
/// each series' notes and counts, [`Reader::take_warnings`] what did not stop
/// the reading.
pub struct Reader {
    path: String,
    format: Format,
    source: Source,
    clean: Cleaner,
    warnings: Vec<String>,
    done: bool,
}

enum Source {
    Jsonl(jsonl::Reader),
    Csv(csv::Reader),
    Prometheus(prometheus::Reader),
    State(state::Reader),
}

/// Open `path` for streaming; `format` forces the format, otherwise it is
/// detected from the first bytes.
pub fn open(path: &Path, format: Option<Format>) -> Result<Reader, InputError> {
    let shown = path.display().to_string();
    let io = |err| InputError::Io {
        path: shown.clone(),
        err,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    from_reader(&shown, file, format)
}

/// Stream from any reader; `name` is used in messages and series names.
pub fn from_reader(
    name: &str,
    mut input: impl Read + 'static,
    format: Option<Format>,
) -> Result<Reader, InputError> {
    let io = |err| InputError::Io {
        path: name.into(),
        err,
    };
    let mut head = Vec::new();
    (&mut input)
        .take(SNIFF)
        .read_to_end(&mut head)
        .map_err(io)?;
    if head.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(InputError::Empty { path: name.into() });
    }
    let format = match format {
        Some(f) => f,
        None => detect(&String::from_utf8_lossy(&head)).ok_or_else(|| InputError::WrongKind {
            path: name.into(),
            expected: "a recording analyze reads: fdwatch JSON Lines, an fdwatch state file, CSV (unix_time,fds[,soft_limit]) or a Prometheus query_range response".into(),
            detail: String::new(),
        })?,
    };
    let stream = BufReader::with_capacity(64 << 10, std::io::Cursor::new(head).chain(input));
    let source = match format {
        Format::Jsonl => Source::Jsonl(jsonl::Reader::new(Lines::new(Box::new(stream)))),
        Format::Csv => Source::Csv(csv::Reader::new(name, Lines::new(Box::new(stream)))),
        Format::Prometheus => Source::Prometheus(prometheus::Reader::new(
            name,
            &read_document(name, stream)?,
        )?),
        Format::State => Source::State(state::Reader::new(name, &read_document(name, stream)?)?),
    };
    Ok(Reader {
        path: name.into(),
        format,
        source,
        clean: Cleaner::default(),
        warnings: Vec::new(),
        done: false,
    })
}

/// A whole JSON document, refused when over [`MAX_DOCUMENT`].
fn read_document(name: &str, stream: impl Read) -> Result<Vec<u8>, InputError> {
    let mut bytes = Vec::new();
    stream
        .take(MAX_DOCUMENT + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| InputError::Io {
            path: name.into(),
            err,
        })?;
    if bytes.len() as u64 > MAX_DOCUMENT {
        return Err(InputError::Invalid {
            path: name.into(),
            detail: format!(
                "larger than {} MiB: a JSON document is read whole, and one this size is not a recording analyze reads (query a shorter range or a coarser step)",
                MAX_DOCUMENT >> 20
            ),
        });
    }
    Ok(bytes)
}

/// A raw sample from a format reader: its series key and source line.
pub(crate) struct Raw {
    pub key: Key,
    pub sample: Box<Sample>,
    /// The line it was read from; with `point`, the point's number in its
    /// series (one-document formats have no useful line numbers).
    pub line: usize,
    pub point: bool,
}

/// Which series a raw sample belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    /// (pid, start time): JSON Lines and state files.
    Process(i32, u64),
    /// A series the reader numbered itself (CSV: 0; Prometheus: each label set).
    Numbered(usize),
}

/// What a format reader hands back for each step.
pub(crate) enum Step {
    Sample(Raw),
    /// A new numbered series' name and labels, before its first sample.
    Series(usize, String, BTreeMap<String, String>, Vec<String>),
    Warning(String),
    Done,
}

impl Reader {
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Every series seen so far; complete (notes included) once the iterator ended.
    pub fn series(&self) -> &[SeriesInfo] {
        &self.clean.series
    }

    /// Problems that did not stop the reading (a truncated last line).
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    fn step(&mut self) -> Result<Step, InputError> {
        match &mut self.source {
            Source::Jsonl(r) => r.next(&self.path),
            Source::Csv(r) => r.next(&self.path),
            Source::Prometheus(r) => Ok(r.next()),
            Source::State(r) => Ok(r.next()),
        }
    }
}

impl Iterator for Reader {
    type Item = Result<Item, InputError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.clean.ready.pop_front() {
                return Some(Ok(item));
            }
            if self.done {
                return None;
            }
            let step = match self.step() {
                Ok(s) => s,
                Err(e) => {
                    self.done = true;
                    self.clean.ready.clear();
                    return Some(Err(e));
                }
            };
            match step {
                Step::Sample(raw) => {
                    if let Err(e) = self.clean.push(&self.path, raw) {
                        self.done = true;
                        self.clean.ready.clear();
                        return Some(Err(e));
                    }
                }
                Step::Series(n, name, labels, notes) => {
                    if let Err(e) = self.clean.named(&self.path, n, name, labels, notes) {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
                Step::Warning(w) => self.warnings.push(w),
                Step::Done => {
                    self.done = true;
                    self.clean.finish();
                    if self.clean.series.iter().all(|s| s.samples == 0) {
                        return Some(Err(InputError::Empty {
                            path: self.path.clone(),
                        }));
                    }
                }
            }
        }
    }
}

/// Per-series cleaning: order, duplicates, gaps, restarts.
#[derive(Default)]
struct Cleaner {
    series: Vec<SeriesInfo>,
    index: HashMap<Key, usize>,
    /// Start time last seen for each pid: a new one is a restart.
    starts: HashMap<i32, u64>,
    ready: VecDeque<Item>,
}

impl Cleaner {
    fn add(&mut self, path: &str, key: Key, info: SeriesInfo) -> Result<usize, InputError> {
        if self.series.len() >= MAX_SERIES {
            return Err(InputError::Invalid {
                path: path.into(),
                detail: format!(
                    "more than {MAX_SERIES} series (processes or label sets) in one input"
                ),
            });
        }
        self.series.push(info);
        self.index.insert(key, self.series.len() - 1);
        Ok(self.series.len() - 1)
    }

    fn named(
        &mut self,
        path: &str,
        n: usize,
        name: String,
        labels: BTreeMap<String, String>,
        notes: Vec<String>,
    ) -> Result<(), InputError> {
        let info = SeriesInfo {
            name,
            labels,
            notes,
            ..Default::default()
        };
        self.add(path, Key::Numbered(n), info).map(|_| ())
    }

    fn push(&mut self, path: &str, raw: Raw) -> Result<(), InputError> {
        let Raw {
            key,
            sample,
            line,
            point,
        } = raw;
        if let Err(detail) = validate(&sample) {
            return Err(if point {
                let name = self.index.get(&key).map(|i| self.series[*i].name.as_str());
                InputError::Invalid {
                    path: path.into(),
                    detail: format!("series {}, point {line}: {detail}", name.unwrap_or("?")),
                }
            } else {
                InputError::Malformed {
                    path: path.into(),
                    line,
                    detail,
                }
            });
        }
        let idx = match self.index.get(&key) {
            Some(i) => *i,
            None => {
                let mut notes = Vec::new();
                if let Key::Process(pid, start) = key {
                    if let Some(prev) = self.starts.insert(pid, start) {
                        notes.push(format!(
                            "pid {pid} restarted at {} (start time {prev} → {start}): analysed as a new series",
                            utc(sample.unix_time)
                        ));
                    }
                }
                let info = SeriesInfo {
                    name: format!("pid {} ({})", sample.pid, sample.comm),
                    notes,
                    ..Default::default()
                };
                self.add(path, key, info)?
            }
        };
        let s = &mut self.series[idx];
        let t = sample.mono_time;
        // Already passed on: a duplicate, or too late to put back in order.
        if let Some((last, _, values)) = s.last {
            if t <= last {
                if t == last {
                    s.duplicates_dropped += 1;
                    if values != (sample.fds, sample.limits) {
                        s.conflicting += 1;
                    }
                } else {
                    s.reordered += 1;
                    s.late_dropped += 1;
                }
                return Ok(());
            }
        }
        let at = s.window.partition_point(|w| w.mono_time <= t);
        if at > 0 && s.window[at - 1].mono_time == t {
            // Same time as a held sample: the first one read is kept.
            s.duplicates_dropped += 1;
            if *s.window[at - 1] != *sample {
                s.conflicting += 1;
            }
            return Ok(());
        }
        if at < s.window.len() {
            s.reordered += 1;
        }
        s.window.insert(at, sample);
        if s.window.len() > REORDER_WINDOW {
            if let Some(oldest) = s.window.pop_front() {
                emit(s, idx, oldest, &mut self.ready);
            }
        }
        Ok(())
    }

    /// End of input: pass on what the windows hold and write the notes.
    fn finish(&mut self) {
        for (idx, s) in self.series.iter_mut().enumerate() {
            while let Some(sample) = s.window.pop_front() {
                emit(s, idx, sample, &mut self.ready);
            }
            if s.reordered > s.late_dropped {
                s.notes.push(format!(
                    "{} sample(s) out of time order; sorted by time",
                    s.reordered - s.late_dropped
                ));
            }
            if s.late_dropped > 0 {
                s.notes.push(format!(
                    "{} sample(s) more than {REORDER_WINDOW} samples late (older than a sample already analysed) dropped",
                    s.late_dropped
                ));
            }
            let exact = s.duplicates_dropped - s.conflicting;
            if exact > 0 {
                s.notes
                    .push(format!("{exact} exact duplicate sample(s) dropped"));
            }
            if s.conflicting > 0 {
                s.notes.push(format!(
                    "{} sample(s) with an already-seen timestamp but other values dropped (the first kept)",
                    s.conflicting
                ));
            }
            if let Some((gap, at)) = s.longest_gap {
                let mut steps = std::mem::take(&mut s.intervals);
                steps.sort_by(f64::total_cmp);
                if let Some(&median) = steps.get(steps.len() / 2) {
                    if gap > 3.0 * median && gap > 1.0 {
                        s.notes.push(format!(
                            "longest gap {} after {} (samples are usually {} apart)",
                            crate::diagnose::format::approx_duration(gap).trim_start_matches('~'),
                            utc(at),
                            crate::diagnose::format::approx_duration(median)
                                .trim_start_matches('~'),
                        ));
                    }
                }
            }
        }
    }
}

fn emit(s: &mut SeriesInfo, idx: usize, sample: Box<Sample>, ready: &mut VecDeque<Item>) {
    if let Some((last, last_unix, _)) = s.last {
        let gap = sample.mono_time - last;
        if s.longest_gap.is_none_or(|g| gap > g.0) {
            s.longest_gap = Some((gap, last_unix));
        }
        if s.intervals.len() < INTERVALS_KEPT {
            s.intervals.push(gap);
        }
    }
    s.last = Some((
        sample.mono_time,
        sample.unix_time,
        (sample.fds, sample.limits),
    ));
    s.samples += 1;
    ready.push_back(Item {
        series: idx,
        sample,
    });
}

/// The range checks every sample passes where it enters, whatever its format:
/// a time or count no real process has would otherwise steer the verdict
/// (one `mono_time: -1e300` turns any trend into a cliff).
pub fn validate(s: &Sample) -> Result<(), String> {
    if s.schema != SCHEMA_VERSION {
        return Err(format!(
            "sample schema {}: this fdwatch reads schema {SCHEMA_VERSION} (docs/json-schema.md)",
            s.schema
        ));
    }
    check_unix_time("unix_time", s.unix_time)?;
    // The trend clock: CLOCK_MONOTONIC seconds, or unix time for other tools' data.
    if !(s.mono_time.is_finite() && (0.0..MAX_UNIX_TIME).contains(&s.mono_time)) {
        return Err(format!(
            "mono_time {} is not a clock reading (finite seconds, 0 to {MAX_UNIX_TIME})",
            s.mono_time
        ));
    }
    check_count("fds", s.fds)?;
    for (k, v) in &s.kinds {
        check_count(&format!("kinds.{}", k.name()), *v)?;
    }
    for (k, v) in s.new_inodes.iter() {
        check_count(&format!("new_inodes.{}", k.name()), *v)?;
    }
    Ok(())
}

/// Unix seconds, finite, 1970..2200; a millisecond timestamp is named as one.
pub fn check_unix_time(what: &str, t: f64) -> Result<(), String> {
    if t.is_finite() && (0.0..MAX_UNIX_TIME).contains(&t) {
        return Ok(());
    }
    let hint = if t.is_finite() && (0.0..MAX_UNIX_TIME * 1000.0).contains(&t) {
        " (milliseconds? give seconds)"
    } else {
        ""
    };
    Err(format!(
        "{what} {t} is outside 1970..2200 (Unix seconds){hint}"
    ))
}

fn check_count(what: &str, v: u64) -> Result<(), String> {
    if v > MAX_FDS {
        return Err(format!(
            "{what} {v} is more fds than a process can hold (at most {MAX_FDS})"
        ));
    }
    Ok(())
}

/// `2026-11-26T10:42:05Z` for a validated time (the range checks keep it
/// within what `humantime` formats).
fn utc(unix: f64) -> String {
    if !(unix.is_finite() && (0.0..MAX_UNIX_TIME).contains(&unix)) {
        return format!("{unix}");
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(unix);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Guess the format from the first bytes of a file.
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
            // An error answer has no "data", only "error" and "errorType".
            if o.contains_key("status") && (o.contains_key("data") || o.contains_key("errorType")) {
                return Some(Format::Prometheus);
            }
            return None;
        }
        // A recording whose only line is cut short is still a recording.
        if first_line.contains("\"fds\"") || first_line.starts_with("{\"schema\"") {
            return Some(Format::Jsonl);
        }
        // A multi-line (pretty-printed) document, perhaps longer than what was
        // read: its top-level keys are near the start.
        let compact: String = trimmed.chars().filter(|c| !c.is_whitespace()).collect();
        if compact.contains(&format!("\"format\":\"{}\"", crate::state::FORMAT)) {
            return Some(Format::State);
        }
        if compact.starts_with("{\"status\":")
            && (compact.contains("\"data\":") || compact.contains("\"errorType\":"))
        {
            return Some(Format::Prometheus);
        }
        return None;
    }
    csv::looks_like(trimmed).then_some(Format::Csv)
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

/// Bounded line reading: a line longer than [`MAX_LINE`] is an error at once
/// (the rest is not read: `/dev/zero` has no end of line).
pub(crate) struct Lines {
    input: Box<dyn BufRead>,
    pub buf: Vec<u8>,
    /// 1-based number of the line in `buf`.
    pub number: usize,
}

pub(crate) enum LineRead {
    /// A line is in `buf` (without its newline); false when it was the end of
    /// the file without a newline.
    Line {
        newline: bool,
    },
    TooLong,
    Eof,
}

impl Lines {
    pub fn new(input: Box<dyn BufRead>) -> Lines {
        Lines {
            input,
            buf: Vec::new(),
            number: 0,
        }
    }

    pub fn read(&mut self) -> std::io::Result<LineRead> {
        self.buf.clear();
        self.number += 1;
        loop {
            let avail = match self.input.fill_buf() {
                Ok(a) => a,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if avail.is_empty() {
                return Ok(if self.buf.is_empty() {
                    LineRead::Eof
                } else {
                    LineRead::Line { newline: false }
                });
            }
            let (take, found) = match avail.iter().position(|&b| b == b'\n') {
                Some(i) => (i, true),
                None => (avail.len(), false),
            };
            if self.buf.len() + take > MAX_LINE {
                return Ok(LineRead::TooLong);
            }
            self.buf.extend_from_slice(&avail[..take]);
            self.input.consume(take + usize::from(found));
            if found {
                if self.buf.last() == Some(&b'\r') {
                    self.buf.pop();
                }
                return Ok(LineRead::Line { newline: true });
            }
        }
    }

    pub fn too_long(&self, path: &str) -> InputError {
        InputError::Malformed {
            path: path.into(),
            line: self.number,
            detail: format!(
                "longer than {} MiB without an end of line: not a recording",
                MAX_LINE >> 20
            ),
        }
    }

    pub fn io(&self, path: &str, err: std::io::Error) -> InputError {
        InputError::Io {
            path: path.into(),
            err,
        }
    }
}

/// Everything read from one input, collected: for tests and the fuzz
/// harness (`analyze` itself streams).
#[derive(Debug, Clone)]
pub struct Input {
    pub path: String,
    pub format: Format,
    pub series: Vec<Series>,
    pub warnings: Vec<String>,
}

/// One series with all its samples.
#[derive(Debug, Clone)]
pub struct Series {
    pub info: SeriesInfo,
    pub samples: Vec<Sample>,
}

/// Read `bytes` whole through the streaming reader (tests, fuzzing).
pub fn parse_bytes(name: &str, bytes: &[u8], format: Option<Format>) -> Result<Input, InputError> {
    let mut r = from_reader(name, std::io::Cursor::new(bytes.to_vec()), format)?;
    let mut samples: Vec<Vec<Sample>> = Vec::new();
    for item in r.by_ref() {
        let item = item?;
        if samples.len() <= item.series {
            samples.resize_with(item.series + 1, Vec::new);
        }
        samples[item.series].push(*item.sample);
    }
    samples.resize_with(r.series().len(), Vec::new);
    let series = r
        .series()
        .iter()
        .cloned()
        .zip(samples)
        .filter(|(_, s)| !s.is_empty())
        .map(|(info, samples)| Series { info, samples })
        .collect();
    Ok(Input {
        path: name.into(),
        format: r.format(),
        series,
        warnings: r.take_warnings(),
    })
}

/// [`parse_bytes`] over text.
pub fn parse(name: &str, text: &str, format: Option<Format>) -> Result<Input, InputError> {
    parse_bytes(name, text.as_bytes(), format)
}

#[cfg(test)]
mod tests;

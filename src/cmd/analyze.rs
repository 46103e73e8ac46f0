//! `fdwatch analyze FILE...`: replay recordings through the same
//! `diagnose::Tracker` the live view uses, and say what it would have said
//! at each point in time, the trend, the forecast and the patterns.

use std::path::PathBuf;

use serde::Serialize;

use super::print_line;
use crate::diagnose::{Level, Thresholds, Verdict};
use crate::input::{self, Format, SeriesInfo};
use crate::monitor::Replay;
use crate::report::escape;
use crate::report::plot::{self, Thinned};
use crate::report::timeline;

pub struct AnalyzeOptions {
    pub files: Vec<PathBuf>,
    /// None: detect each file's format from its content.
    pub format: Option<Format>,
    pub json: bool,
    pub plot: Option<PathBuf>,
    pub thresholds: Thresholds,
}

/// One analysed series.
struct Analysis {
    source: String,
    format: Format,
    info: SeriesInfo,
    replay: Replay,
}

impl Analysis {
    fn level(&self) -> Level {
        self.replay.timeline.level()
    }
}

/// Read one input to its end, replaying each sample as it comes.
fn analyze_one(
    path: &std::path::Path,
    opts: &AnalyzeOptions,
) -> Result<(Vec<Analysis>, Vec<String>, Format), input::InputError> {
    let mut reader = input::open(path, opts.format)?;
    let mut replays: Vec<Replay> = Vec::new();
    for item in reader.by_ref() {
        let item = item?;
        if replays.len() <= item.series {
            replays.resize_with(item.series + 1, || Replay::new(opts.plot.is_some()));
        }
        replays[item.series].push(item.sample, &opts.thresholds);
    }
    for r in &mut replays {
        r.finish(&opts.thresholds);
    }
    let format = reader.format();
    let source = reader.path().to_string();
    let warnings = reader.take_warnings();
    let analyses = reader
        .series()
        .iter()
        .cloned()
        .zip(replays)
        .filter(|(info, _)| info.samples > 0)
        .map(|(info, replay)| Analysis {
            source: source.clone(),
            format,
            info,
            replay,
        })
        .collect();
    Ok((analyses, warnings, format))
}

/// The `--json` document (docs/analyze.md).
#[derive(Serialize)]
struct JsonReport<'a> {
    format: &'static str,
    version: u32,
    level: Level,
    inputs: Vec<JsonInput>,
    series: Vec<JsonSeries<'a>>,
}

#[derive(Serialize)]
struct JsonInput {
    path: String,
    format: Option<&'static str>,
    series: usize,
    warnings: Vec<String>,
    error: Option<String>,
}

#[derive(Serialize)]
struct JsonGap {
    seconds: f64,
    after: f64,
}

#[derive(Serialize)]
struct JsonSeries<'a> {
    source: &'a str,
    name: &'a str,
    pid: i32,
    comm: &'a str,
    start_time: u64,
    labels: &'a std::collections::BTreeMap<String, String>,
    samples: usize,
    first_unix_time: f64,
    last_unix_time: f64,
    duplicates_dropped: usize,
    reordered: usize,
    late_dropped: usize,
    longest_gap: Option<JsonGap>,
    notes: &'a [String],
    level: Level,
    timeline: &'a [timeline::Span],
    first_warning: Option<f64>,
    first_critical: Option<f64>,
    limit_hit: Option<f64>,
    verdict: Option<&'a Verdict>,
    steps_stride: usize,
    steps: &'a [timeline::Step],
}

/// Exit code: the final level of the worst series (0/1/2), 3 when an input was unreadable.
pub fn run(opts: AnalyzeOptions) -> anyhow::Result<u8> {
    let mut inputs = Vec::new();
    let mut analyses: Vec<Analysis> = Vec::new();
    let mut unreadable = false;
    for path in &opts.files {
        match analyze_one(path, &opts) {
            Ok((found, warnings, format)) => {
                for w in &warnings {
                    eprintln!("fdwatch: {}", escape::terminal(&w.to_string()));
                }
                inputs.push(JsonInput {
                    path: path.display().to_string(),
                    format: Some(format.name()),
                    series: found.len(),
                    warnings,
                    error: None,
                });
                analyses.extend(found);
            }
            Err(e) => {
                // One line naming the file (and the line); the other inputs
                // are still analysed and reported.
                eprintln!("fdwatch: {}", escape::terminal(&e.to_string()));
                unreadable = true;
                inputs.push(JsonInput {
                    path: path.display().to_string(),
                    format: None,
                    series: 0,
                    warnings: Vec::new(),
                    error: Some(e.to_string()),
                });
            }
        }
    }
    let worst = analyses
        .iter()
        .map(Analysis::level)
        .max()
        .unwrap_or(Level::Unknown);

    if let Some(path) = &opts.plot {
        // The first series at the worst level: the one worth a picture.
        match analyses.iter().find(|a| a.level() == worst) {
            Some(a) => {
                let samples = a
                    .replay
                    .plot
                    .as_ref()
                    .map(Thinned::samples)
                    .unwrap_or_default();
                plot::plot_samples(&samples, &a.replay.timeline, path)?;
                if analyses.len() > 1 {
                    eprintln!(
                        "fdwatch: plotted {} from {} (the worst of {} series) to {}",
                        escape::terminal(&a.info.name),
                        escape::terminal(&a.source),
                        analyses.len(),
                        path.display()
                    );
                }
            }
            None => eprintln!("fdwatch: nothing to plot"),
        }
    }

    if opts.json {
        let report = JsonReport {
            format: "fdwatch-analysis",
            version: 1,
            level: worst,
            inputs,
            series: analyses.iter().map(json_series).collect(),
        };
        print_line(&serde_json::to_string(&report)?)?;
    } else {
        let mut first = true;
        for a in &analyses {
            let mut notes = a.info.notes.clone();
            if a.format == Format::Csv || a.format == Format::Prometheus {
                notes.push(
                    "fd counts only: no breakdown by kind, so no patterns; unix time is the time axis"
                        .into(),
                );
            }
            let mut text = String::new();
            if !first {
                text.push('\n');
            }
            first = false;
            text.push_str(&format!("{} ({}): ", a.source, a.format.name()));
            text.push_str(&timeline::text(&a.info.name, &a.replay.timeline, &notes));
            // Names and sources come from the files: escaped line by line.
            let text: Vec<String> = text.trim_end().lines().map(escape::terminal).collect();
            if !print_line(&text.join("\n"))? {
                break;
            }
        }
    }
    if unreadable {
        return Ok(Level::Unknown.exit_code());
    }
    Ok(worst.exit_code())
}

fn json_series(a: &Analysis) -> JsonSeries<'_> {
    let s = &a.info;
    let tl = &a.replay.timeline;
    let (pid, comm, start_time) = a
        .replay
        .who
        .as_ref()
        .map(|(p, c, st)| (*p, c.as_str(), *st))
        .unwrap_or((0, "", 0));
    JsonSeries {
        source: &a.source,
        name: &s.name,
        pid,
        comm,
        start_time,
        labels: &s.labels,
        samples: s.samples,
        first_unix_time: tl.first_time.unwrap_or(0.0),
        last_unix_time: tl.last_time.unwrap_or(0.0),
        duplicates_dropped: s.duplicates_dropped,
        reordered: s.reordered,
        late_dropped: s.late_dropped,
        longest_gap: s
            .longest_gap
            .map(|(seconds, after)| JsonGap { seconds, after }),
        notes: &s.notes,
        level: tl.level(),
        timeline: &tl.spans,
        first_warning: tl.first_warning,
        first_critical: tl.first_critical,
        limit_hit: tl.limit_hit,
        verdict: tl.last.as_ref(),
        steps_stride: tl.steps_stride.max(1),
        steps: &tl.steps,
    }
}

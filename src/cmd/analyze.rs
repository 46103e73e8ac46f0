//! `fdwatch analyze FILE...`: replay recordings through the same
//! `diagnose::Tracker` the live view uses, and say what it would have said
//! at each point in time, the trend, the forecast and the patterns.

use std::path::PathBuf;

use serde::Serialize;

use super::print_line;
use crate::diagnose::{Level, Thresholds, Verdict};
use crate::input::{self, Format, Series};
use crate::monitor::replay;
use crate::report::{plot, timeline};

pub struct AnalyzeOptions {
    pub files: Vec<PathBuf>,
    /// None: detect each file's format from its content.
    pub format: Option<Format>,
    pub json: bool,
    pub plot: Option<PathBuf>,
    pub thresholds: Thresholds,
}

/// One analysed series.
pub struct Analysis {
    pub source: String,
    pub format: Format,
    pub series: Series,
    pub timeline: timeline::Timeline,
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
    longest_gap: Option<JsonGap>,
    notes: &'a [String],
    level: Level,
    timeline: &'a [timeline::Span],
    first_warning: Option<f64>,
    first_critical: Option<f64>,
    limit_hit: Option<f64>,
    verdict: Option<&'a Verdict>,
    steps: &'a [timeline::Step],
}

/// Exit code: the final level of the worst series (0/1/2), 3 when an input was unreadable.
pub fn run(opts: AnalyzeOptions) -> anyhow::Result<u8> {
    let mut inputs = Vec::new();
    let mut analyses: Vec<Analysis> = Vec::new();
    let mut unreadable = false;
    for path in &opts.files {
        match input::read(path, opts.format) {
            Ok(inp) => {
                for w in &inp.warnings {
                    eprintln!("fdwatch: {w}");
                }
                inputs.push(JsonInput {
                    path: inp.path.clone(),
                    format: Some(inp.format.name()),
                    series: inp.series.len(),
                    warnings: inp.warnings.clone(),
                    error: None,
                });
                for series in inp.series {
                    let tl = replay(&series.samples, &opts.thresholds);
                    analyses.push(Analysis {
                        source: inp.path.clone(),
                        format: inp.format,
                        series,
                        timeline: tl,
                    });
                }
            }
            Err(e) => {
                eprintln!("fdwatch: {e}");
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
        .map(|a| a.timeline.level())
        .max()
        .unwrap_or(Level::Unknown);

    if let Some(path) = &opts.plot {
        // The first series at the worst level: the one worth a picture.
        match analyses.iter().find(|a| a.timeline.level() == worst) {
            Some(a) => {
                plot::plot_samples(&a.series.samples, &a.timeline, path)?;
                if analyses.len() > 1 {
                    eprintln!(
                        "fdwatch: plotted {} from {} (the worst of {} series) to {}",
                        a.series.name,
                        a.source,
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
            let mut notes = a.series.notes.clone();
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
            text.push_str(&timeline::text(
                &a.series.name,
                &a.series.samples,
                &a.timeline,
                &notes,
            ));
            if !print_line(text.trim_end())? {
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
    let s = &a.series;
    let first = s.samples.first();
    let last = s.samples.last();
    JsonSeries {
        source: &a.source,
        name: &s.name,
        pid: first.map(|f| f.pid).unwrap_or(0),
        comm: first.map(|f| f.comm.as_str()).unwrap_or(""),
        start_time: first.map(|f| f.start_time).unwrap_or(0),
        labels: &s.labels,
        samples: s.samples.len(),
        first_unix_time: first.map(|f| f.unix_time).unwrap_or(0.0),
        last_unix_time: last.map(|f| f.unix_time).unwrap_or(0.0),
        duplicates_dropped: s.duplicates_dropped,
        reordered: s.reordered,
        longest_gap: s
            .longest_gap
            .map(|(seconds, after)| JsonGap { seconds, after }),
        notes: &s.notes,
        level: a.timeline.level(),
        timeline: &a.timeline.spans,
        first_warning: a.timeline.first_warning,
        first_critical: a.timeline.first_critical,
        limit_hit: a.timeline.limit_hit,
        verdict: a.timeline.last.as_ref(),
        steps: &a.timeline.steps,
    }
}

//! An SVG chart of one series: fd count over time (total and the kinds that
//! matter), the soft and hard limits, the fitted trend with its interval and
//! the forecast extended to the limit, and markers where WARNING and CRITICAL
//! first fired and where the limit was hit. For `run`/`assert` also the
//! step's outcome in the title and its gates as ceilings.
//!
//! The y axis is scaled to the data: a limit (or a gate) far above the
//! counts is drawn as a band along the top edge with its value, not as a
//! line that squeezes the data into a flat smear at the bottom.
//!
//! Formatting only: everything drawn comes from the samples and the replayed
//! [`Timeline`]. plotters' SVG backend writes `<text>` elements and lets the
//! viewer pick the font, so no font library or system font is needed.

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::timeline::{clock, Timeline};
use crate::diagnose::format::{approx_duration, rate};
use crate::diagnose::gate::{Ceiling, GateKind, Outcome, Status};
use crate::diagnose::{Level, Verdict};
use crate::sample::{FdKind, Sample};

const WIDTH: u32 = 1200;
/// The legend's panel, right of the chart.
const LEGEND_WIDTH: u32 = 290;
const HEIGHT: u32 = 640;

const TOTAL: RGBColor = RGBColor(31, 90, 180);
const KIND_COLORS: [RGBColor; 3] = [
    RGBColor(0, 150, 136),
    RGBColor(142, 68, 173),
    RGBColor(120, 120, 120),
];
const SOFT: RGBColor = RGBColor(200, 30, 30);
const HARD: RGBColor = RGBColor(110, 0, 0);
const TREND: RGBColor = RGBColor(20, 20, 20);
const WARN: RGBColor = RGBColor(230, 140, 0);
const CRIT: RGBColor = RGBColor(210, 0, 0);
/// A gate that held, and one that failed the step.
const GATE_HELD: RGBColor = RGBColor(0, 120, 60);
const GATE_BROKEN: RGBColor = RGBColor(200, 0, 120);

/// A limit more than this many times the chart's data top is off scale: a
/// band on the top edge says where it is.
const ON_SCALE: f64 = 1.6;
/// The same for a gate: the margin a step keeps under its gate is worth
/// seeing, so a gate is drawn up to three times the data's top.
const GATE_ON_SCALE: f64 = 3.0;

/// Draw `samples` (one process, time order) and their replayed verdicts to `path` as SVG.
pub fn plot_samples(samples: &[Sample], timeline: &Timeline, path: &Path) -> anyhow::Result<()> {
    let svg = render_svg(samples, timeline)?;
    crate::safe_fs::write_atomic(path, svg.as_bytes())
        .with_context(|| format!("writing the plot {}", path.display()))
}

/// Draw a `run`/`assert` step: as [`plot_samples`], titled with the step's
/// outcome (PASS, FAIL, UNKNOWN) and with its gates drawn.
pub fn plot_step(
    samples: &[Sample],
    timeline: &Timeline,
    step: &Outcome,
    path: &Path,
) -> anyhow::Result<()> {
    let svg = render(samples, timeline, Some(step))?;
    crate::safe_fs::write_atomic(path, svg.as_bytes())
        .with_context(|| format!("writing the plot {}", path.display()))
}

/// Buckets a [`Thinned`] series keeps: a chart is about a thousand pixels wide.
pub const PLOT_BUCKETS: usize = 1024;

/// A long series thinned for drawing in bounded memory: consecutive samples
/// are grouped in buckets (1, 2, 4, ... samples a bucket, doubling when
/// [`PLOT_BUCKETS`] are full), and each bucket keeps its lowest and its
/// highest sample, so spikes and dips survive the thinning.
#[derive(Debug, Default)]
pub struct Thinned {
    per_bucket: usize,
    full: Vec<Bucket>,
    current: Option<Bucket>,
    last: Option<Sample>,
}

#[derive(Debug)]
struct Bucket {
    lo: Sample,
    hi: Sample,
    n: usize,
}

impl Bucket {
    fn merge(self, other: Bucket) -> Bucket {
        Bucket {
            lo: if other.lo.fds < self.lo.fds {
                other.lo
            } else {
                self.lo
            },
            hi: if other.hi.fds > self.hi.fds {
                other.hi
            } else {
                self.hi
            },
            n: self.n + other.n,
        }
    }
}

impl Thinned {
    pub fn new() -> Thinned {
        Thinned {
            per_bucket: 1,
            ..Default::default()
        }
    }

    /// Add the next sample (time order).
    pub fn push(&mut self, s: Sample) {
        self.per_bucket = self.per_bucket.max(1);
        match &mut self.current {
            None => {
                self.current = Some(Bucket {
                    lo: s.clone(),
                    hi: s.clone(),
                    n: 1,
                })
            }
            Some(b) => {
                if s.fds < b.lo.fds {
                    b.lo = s.clone();
                }
                if s.fds > b.hi.fds {
                    b.hi = s.clone();
                }
                b.n += 1;
            }
        }
        self.last = Some(s);
        if self
            .current
            .as_ref()
            .is_some_and(|b| b.n >= self.per_bucket)
        {
            self.full.extend(self.current.take());
        }
        if self.full.len() >= PLOT_BUCKETS {
            let mut merged = Vec::with_capacity(PLOT_BUCKETS / 2 + 1);
            let mut it = std::mem::take(&mut self.full).into_iter();
            while let Some(a) = it.next() {
                merged.push(match it.next() {
                    Some(b) => a.merge(b),
                    None => a,
                });
            }
            self.full = merged;
            self.per_bucket *= 2;
        }
    }

    /// The kept samples in time order: each bucket's low and high, and the last sample.
    pub fn samples(&self) -> Vec<Sample> {
        let mut out: Vec<Sample> = Vec::with_capacity(2 * self.full.len() + 3);
        for b in self.full.iter().chain(self.current.as_ref()) {
            let (a, c) = if b.lo.mono_time <= b.hi.mono_time {
                (&b.lo, &b.hi)
            } else {
                (&b.hi, &b.lo)
            };
            for s in [a, c] {
                if out.last().is_none_or(|l| l.mono_time < s.mono_time) {
                    out.push(s.clone());
                }
            }
        }
        if let Some(l) = &self.last {
            if out.last().is_none_or(|o| o.mono_time < l.mono_time) {
                out.push(l.clone());
            }
        }
        out
    }
}

/// Who the series is: `pid 4242 (rpc-msg)`, or the name alone for other tools' data.
fn who(s: &Sample) -> String {
    // SVG text: one line, no character XML forbids (plotters writes the entities).
    let comm = super::escape::svg_text(&s.comm);
    if s.pid > 0 {
        format!("pid {} ({comm})", s.pid)
    } else {
        comm
    }
}

/// The kinds worth a line: growing ones first (fastest first), then the
/// largest, three at most.
/// Kinds a gate names come first: their ceiling is drawn against them.
fn kinds_to_draw(samples: &[Sample], verdict: Option<&Verdict>, gated: &[FdKind]) -> Vec<FdKind> {
    let Some(last) = samples.last() else {
        return Vec::new();
    };
    let mut out: Vec<FdKind> = Vec::new();
    for k in gated {
        if !out.contains(k) {
            out.push(*k);
        }
    }
    if let Some(v) = verdict {
        for st in v
            .series
            .iter()
            .filter(|s| s.growing && !s.series.contains(':'))
        {
            if let Some(k) = last.kinds.keys().find(|k| k.name() == st.series) {
                if !out.contains(k) {
                    out.push(*k);
                }
            }
        }
    }
    let mut by_size: Vec<(FdKind, u64)> = last.kinds.iter().map(|(k, n)| (*k, *n)).collect();
    by_size.sort_by_key(|k| std::cmp::Reverse(k.1));
    for (k, n) in by_size {
        if out.len() >= 3 {
            break;
        }
        if n > 0 && !out.contains(&k) {
            out.push(k);
        }
    }
    out.truncate(3);
    out
}

/// How a legend entry is drawn: a line (colour, width, dashed) or a band.
enum Swatch {
    Line(RGBColor, u32, bool),
    Band(RGBAColor),
}

/// The legend in its own panel, so it never hides data.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    entries: &[(String, Swatch)],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let font = ("sans-serif", 13).into_font().color(&BLACK);
    for (i, (label, swatch)) in entries.iter().enumerate() {
        let y = 14 + 22 * i as i32;
        match swatch {
            Swatch::Line(c, w, dashed) => {
                if *dashed {
                    for x in [12, 24] {
                        area.draw(&PathElement::new([(x, y), (x + 7, y)], c.stroke_width(*w)))?;
                    }
                } else {
                    area.draw(&PathElement::new([(12, y), (36, y)], c.stroke_width(*w)))?;
                }
            }
            Swatch::Band(c) => {
                area.draw(&Rectangle::new([(12, y - 6), (36, y + 6)], c.filled()))?;
            }
        }
        area.draw(&Text::new(
            label.clone(),
            (44, y),
            font.pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
    }
    let bands = entries.len() as i32;
    for (i, (c, what)) in [
        (WARN, "WARNING (live verdict)"),
        (CRIT, "CRITICAL (live verdict)"),
    ]
    .iter()
    .enumerate()
    {
        let y = 14 + 22 * (bands + i as i32) + 8;
        area.draw(&Rectangle::new(
            [(12, y - 6), (36, y + 6)],
            c.mix(0.15).filled(),
        ))?;
        area.draw(&Text::new(
            *what,
            (44, y),
            font.pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
    }
    Ok(())
}

/// The chart as an SVG document.
pub fn render_svg(samples: &[Sample], timeline: &Timeline) -> anyhow::Result<String> {
    render(samples, timeline, None)
}

/// `fdwatch run`, `fdwatch assert`: the mode, from the step's name.
fn mode_of(step: &Outcome) -> &str {
    step.name
        .split_once(':')
        .map(|(m, _)| m)
        .filter(|m| !m.is_empty() && !m.contains(' '))
        .unwrap_or("run")
}

/// `--max-fds 400`, `--max-growth netlink:0`: the option as the user wrote it.
fn gate_arg(c: &Ceiling) -> String {
    match (c.gate, c.kind) {
        (GateKind::MaxFds, _) => format!("--max-fds {}", c.max),
        (GateKind::MaxGrowth, None) => format!("--max-growth {}", c.max),
        (GateKind::MaxGrowth, Some(k)) => format!("--max-growth {}:{}", k.name(), c.max),
    }
}

fn render(
    samples: &[Sample],
    timeline: &Timeline,
    step: Option<&Outcome>,
) -> anyhow::Result<String> {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        anyhow::bail!("nothing to plot: no samples");
    };
    let verdict = timeline.last.as_ref();
    let t0 = first.unix_time;
    let t_last = last.unix_time;
    let duration = (t_last - t0).max(1.0);
    let forecast = verdict.and_then(|v| v.forecast.as_ref());
    let trend = verdict.and_then(|v| v.total.as_ref());
    let soft = last.limits.soft;
    let hard = last.limits.hard;

    // Show the forecast up to the limit when it is near (within ten times
    // the data's length); when far, a stretch of it, so the data stays readable.
    let mut x_end = t_last;
    if let Some(f) = forecast {
        x_end = t_last
            + if f.eta <= 10.0 * duration {
                f.eta
            } else {
                2.0 * duration
            };
    }
    let x_end = x_end + 0.03 * (x_end - t0).max(1.0);
    // The y axis: the data, the gates near it, the limit where the forecast
    // reaches it on this chart or where it is near the data; whatever is
    // farther is off scale (a band on the top edge).
    let max_fds = samples.iter().map(|s| s.fds).max().unwrap_or(0) as f64;
    let ceilings: &[Ceiling] = step.map(|o| o.ceilings.as_slice()).unwrap_or(&[]);
    let mut top = max_fds.max(10.0);
    if let Some(f) = forecast.filter(|f| f.eta <= 10.0 * duration) {
        top = top.max(f.limit as f64);
    }
    let data_top = top;
    let on_scale = |v: u64| (v as f64) <= data_top * ON_SCALE;
    for c in ceilings
        .iter()
        .filter(|c| (c.at_most as f64) <= data_top * GATE_ON_SCALE)
    {
        top = top.max(c.at_most as f64);
    }
    let soft_on_scale = soft.is_some_and(on_scale);
    if let Some(s) = soft.filter(|_| soft_on_scale) {
        top = top.max(s as f64);
    }
    let mut y_max = top * 1.1;
    let hard_on_scale = hard.is_some_and(|h| (h as f64) <= y_max * ON_SCALE);
    if let Some(h) = hard.filter(|_| hard_on_scale) {
        y_max = y_max.max(h as f64 * 1.05);
    }
    let y_max = y_max.max(10.0);
    let off_scale: Vec<String> = soft
        .filter(|_| !soft_on_scale)
        .map(|s| format!("soft limit {s} (EMFILE)"))
        .into_iter()
        .chain(
            ceilings
                .iter()
                .filter(|c| (c.at_most as f64) > y_max)
                .map(|c| format!("gate {} at {}", gate_arg(c), c.at_most)),
        )
        .collect();
    let long = (t0 / 86_400.0).floor() != (x_end / 86_400.0).floor();

    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let level = timeline.level();
        let title = match step {
            Some(o) => format!(
                "fdwatch {} — {} — {}",
                mode_of(o),
                who(last),
                o.status.name()
            ),
            None => format!("fdwatch analyze — {} — {}", who(last), level.name()),
        };
        let failed: Vec<String> = step
            .filter(|o| o.status != Status::Pass)
            .map(|o| o.failures.iter().map(|f| f.to_string()).collect())
            .unwrap_or_default();
        let sub = match (forecast, timeline.limit_hit) {
            _ if !failed.is_empty() => failed.join("; "),
            (_, Some(hit)) => format!(
                "limit hit at {} UTC; first WARNING {}, first CRITICAL {}",
                clock(hit, long),
                timeline
                    .first_warning
                    .map(|t| clock(t, long))
                    .unwrap_or("never".into()),
                timeline
                    .first_critical
                    .map(|t| clock(t, long))
                    .unwrap_or("never".into()),
            ),
            (Some(f), None) => format!(
                "{} {} forecast in {} after {} UTC",
                f.limit_name,
                f.limit,
                approx_duration(f.eta),
                clock(t_last, long)
            ),
            (None, None) => verdict
                .and_then(|v| v.reasons.first().map(|r| super::escape::svg_text(r)))
                .unwrap_or_default(),
        };
        root.draw(&Text::new(
            title,
            (20, 12),
            ("sans-serif", 22).into_font().color(&BLACK),
        ))?;
        root.draw(&Text::new(
            sub,
            (20, 40),
            ("sans-serif", 14).into_font().color(&RGBColor(80, 80, 80)),
        ))?;
        let (body, side) = root
            .margin(62, 10, 10, 20)
            .split_horizontally(WIDTH - LEGEND_WIDTH - 30);
        let mut legend: Vec<(String, Swatch)> = Vec::new();
        let date = clock(t0, true);
        let x_fmt = |t: &f64| clock(*t, long);
        let mut chart = ChartBuilder::on(&body)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(t0..x_end, 0f64..y_max)?;
        chart
            .configure_mesh()
            .x_labels(8)
            .y_labels(8)
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&|v: &f64| format!("{v:.0}"))
            .x_desc(format!("time (UTC, {})", date.get(..10).unwrap_or(&date)))
            .y_desc("open file descriptors (fds)")
            .light_line_style(RGBColor(246, 246, 246))
            .label_style(("sans-serif", 13))
            .draw()?;

        // Level bands: where the live view would have said WARNING / CRITICAL.
        for sp in &timeline.spans {
            let color = match sp.level {
                Level::Warning => WARN,
                Level::Critical => CRIT,
                _ => continue,
            };
            let until = sp.until.unwrap_or(t_last);
            chart.draw_series(std::iter::once(Rectangle::new(
                [(sp.from, 0.0), (until.max(sp.from), y_max)],
                color.mix(0.08).filled(),
            )))?;
        }

        // Limits.
        if let Some(s) = soft {
            if soft_on_scale {
                chart.draw_series(LineSeries::new(
                    [(t0, s as f64), (x_end, s as f64)],
                    SOFT.stroke_width(2),
                ))?;
                legend.push((
                    format!("soft limit {s} (EMFILE)"),
                    Swatch::Line(SOFT, 2, false),
                ));
            } else {
                legend.push((
                    format!("soft limit {s} (off scale, above)"),
                    Swatch::Band(SOFT.mix(0.2)),
                ));
            }
        }
        // What is off scale: a band along the top edge, saying what and where.
        if !off_scale.is_empty() {
            let band = y_max * 0.955;
            chart.draw_series(std::iter::once(Rectangle::new(
                [(t0, band), (x_end, y_max)],
                SOFT.mix(0.2).filled(),
            )))?;
            let style = ("sans-serif", 12)
                .into_font()
                .color(&HARD)
                .pos(Pos::new(HPos::Left, VPos::Center));
            chart.draw_series(std::iter::once(Text::new(
                format!("↑ off scale: {}", off_scale.join(", ")),
                (t0 + 0.01 * (x_end - t0), (band + y_max) / 2.0),
                style,
            )))?;
        }

        // The gates: the level each lets the count reach, from when it applies.
        for c in ceilings {
            let color = if c.broken { GATE_BROKEN } else { GATE_HELD };
            let state = if c.broken { "broken" } else { "held" };
            let what = match c.gate {
                GateKind::MaxFds => format!("gate {} ({state})", gate_arg(c)),
                GateKind::MaxGrowth => format!(
                    "gate {}: at most {} after {} ({state})",
                    gate_arg(c),
                    c.at_most,
                    clock(c.from, long)
                ),
            };
            let y = c.at_most as f64;
            if y <= y_max {
                chart.draw_series(DashedLineSeries::new(
                    [(c.from.max(t0), y), (t_last, y)],
                    12,
                    4,
                    color.stroke_width(2),
                ))?;
                legend.push((what, Swatch::Line(color, 2, true)));
            } else {
                legend.push((format!("{what}, off scale"), Swatch::Line(color, 1, true)));
            }
        }
        if let Some(h) = hard {
            if hard_on_scale {
                chart.draw_series(DashedLineSeries::new(
                    [(t0, h as f64), (x_end, h as f64)],
                    8,
                    5,
                    HARD.stroke_width(2),
                ))?;
                legend.push((format!("hard limit {h}"), Swatch::Line(HARD, 2, true)));
            } else {
                legend.push((
                    format!("hard limit {h} (off scale)"),
                    Swatch::Line(HARD, 1, true),
                ));
            }
        }

        // The fitted line: the verdict's slope through the median of the
        // points it covers (Theil–Sen's intercept), with its interval as a
        // cone about the middle of the fit; the forecast starts from the last
        // count, as the verdict's does, with the interval as a cone ahead.
        if let Some(tr) = trend {
            let from = (t_last - tr.span).max(t0);
            let clip = |v: f64| v.clamp(0.0, y_max);
            let mut offsets: Vec<f64> = samples
                .iter()
                .filter(|s| s.unix_time >= from)
                .map(|s| s.fds as f64 - tr.slope * (s.unix_time - t_last))
                .collect();
            offsets.sort_by(f64::total_cmp);
            let level = offsets.get(offsets.len() / 2).copied().unwrap_or(tr.now);
            let fitted = |t: f64| level + tr.slope * (t - t_last);
            let cone = |pivot_t: f64, pivot_v: f64, a: f64, b: f64| {
                let n = 32;
                let at = |i: usize| a + (b - a) * i as f64 / n as f64;
                let band = |t: f64| {
                    let dt = t - pivot_t;
                    let (lo, hi) = (pivot_v + tr.slope_lo * dt, pivot_v + tr.slope_hi * dt);
                    (clip(lo.min(hi)), clip(lo.max(hi)))
                };
                let mut poly: Vec<(f64, f64)> = (0..=n).map(|i| (at(i), band(at(i)).1)).collect();
                poly.extend((0..=n).rev().map(|i| (at(i), band(at(i)).0)));
                Polygon::new(poly, TREND.mix(0.12).filled())
            };
            let mid = (from + t_last) / 2.0;
            chart.draw_series(std::iter::once(cone(mid, fitted(mid), from, t_last)))?;
            if forecast.is_some() {
                chart.draw_series(std::iter::once(cone(t_last, tr.now, t_last, x_end)))?;
            }
            chart.draw_series(LineSeries::new(
                [(from, clip(fitted(from))), (t_last, clip(fitted(t_last)))],
                TREND.stroke_width(2),
            ))?;
            let fit_line = |t: f64| (t, clip(tr.now + tr.slope * (t - t_last)));
            let signed = |v: f64| format!("{}{}", if v >= 0.0 { "+" } else { "" }, rate(v));
            legend.push((
                format!(
                    "fitted trend {} ({})",
                    signed(tr.slope),
                    tr.model.replace('_', " ")
                ),
                Swatch::Line(TREND, 2, false),
            ));
            legend.push((
                format!(
                    "its interval {} to {}",
                    signed(tr.slope_lo),
                    signed(tr.slope_hi)
                ),
                Swatch::Band(TREND.mix(0.15)),
            ));
            if let Some(f) = forecast {
                let hit_t = t_last + f.eta;
                let end_t = hit_t.min(x_end);
                chart.draw_series(DashedLineSeries::new(
                    [fit_line(t_last), fit_line(end_t)],
                    7,
                    5,
                    TREND.stroke_width(2),
                ))?;
                legend.push((
                    if f.eta < 1.0 {
                        "forecast: limit reached".to_string()
                    } else {
                        format!("forecast: limit in {}", approx_duration(f.eta))
                    },
                    Swatch::Line(TREND, 2, true),
                ));
                if hit_t <= x_end {
                    chart.draw_series(std::iter::once(Cross::new(
                        (hit_t, f.limit as f64),
                        7,
                        TREND.stroke_width(2),
                    )))?;
                }
            }
        }

        // The kinds that matter, then the total on top.
        let gated: Vec<FdKind> = ceilings.iter().filter_map(|c| c.kind).collect();
        for (i, k) in kinds_to_draw(samples, verdict, &gated)
            .into_iter()
            .enumerate()
        {
            let c = KIND_COLORS[i % KIND_COLORS.len()];
            chart.draw_series(LineSeries::new(
                samples.iter().map(|s| (s.unix_time, s.kind(k) as f64)),
                c.stroke_width(2),
            ))?;
            legend.push((
                format!("{} ({})", k.label(), k.name()),
                Swatch::Line(c, 2, false),
            ));
        }
        chart.draw_series(LineSeries::new(
            samples.iter().map(|s| (s.unix_time, s.fds as f64)),
            TOTAL.stroke_width(3),
        ))?;
        legend.insert(
            0,
            ("open fds (total)".into(), Swatch::Line(TOTAL, 3, false)),
        );

        // Markers: first WARNING, first CRITICAL, limit hit.
        // WARNING and CRITICAL at once (a jump): one marker says both.
        let first_warning = timeline
            .first_warning
            .filter(|w| Some(*w) != timeline.first_critical);
        let markers = [
            (first_warning, WARN, "WARNING"),
            (timeline.first_critical, CRIT, "CRITICAL"),
            (timeline.limit_hit, BLACK, "limit hit"),
        ];
        for (row, (t, color, name)) in markers.iter().enumerate() {
            let Some(t) = *t else { continue };
            chart.draw_series(DashedLineSeries::new(
                [(t, 0.0), (t, y_max)],
                5,
                4,
                color.stroke_width(1),
            ))?;
            let y = y_max * (0.99 - 0.045 * row as f64);
            // Near the right edge the label goes left of its line.
            let right = t > t0 + 0.75 * (x_end - t0);
            let style = ("sans-serif", 13).into_font().color(color).pos(Pos::new(
                if right { HPos::Right } else { HPos::Left },
                VPos::Top,
            ));
            let label = if right {
                format!("{name} {} ", clock(t, long))
            } else {
                format!(" {name} {}", clock(t, long))
            };
            chart.draw_series(std::iter::once(Text::new(label, (t, y), style)))?;
            let at = samples.iter().find(|s| s.unix_time >= t).unwrap_or(last);
            chart.draw_series(std::iter::once(Circle::new(
                (at.unix_time, at.fds as f64),
                5,
                color.filled(),
            )))?;
        }

        draw_legend(&side, &legend)?;
        root.present()?;
    }
    Ok(buf)
}

//! The verdict over time: the level the live view would have shown after
//! each sample, compressed into spans ("OK until 10:42:05; WARNING from
//! 10:42:05 — ..."), and its text rendering.
//!
//! The verdicts come from `diagnose::Tracker` (the caller replays samples
//! through it); this module only remembers and formats them. It never decides
//! a level itself.

use serde::{Deserialize, Serialize};

use crate::diagnose::format::{approx_duration, bytes};
use crate::diagnose::{format_slope, Level, Verdict};
use crate::sample::Sample;

/// The level after one sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub unix_time: f64,
    pub fds: u64,
    pub level: Level,
}

/// A run of samples at one level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    pub level: Level,
    /// Unix time of the first sample at this level.
    pub from: f64,
    /// Unix time of the first sample at the next level; None for the last span.
    pub until: Option<f64>,
    /// The verdict's first reason when the span began.
    pub reason: String,
    /// Seconds to the limit forecast when the span began.
    pub eta: Option<f64>,
}

/// How many steps (verdicts) a timeline keeps: every sample's up to this
/// many samples, then every second, fourth, ... sample's (memory and the
/// number of verdicts stay bounded whatever the input's length).
pub const STEPS_KEPT: usize = 512;

/// The whole replay of one series: bounded memory, whatever its length.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timeline {
    /// The level after each sample, or after every `steps_stride`-th one
    /// (the first always) once a series is longer than [`STEPS_KEPT`].
    pub steps: Vec<Step>,
    pub steps_stride: usize,
    /// Samples pushed.
    pub samples: usize,
    /// Unix times of the first and the last sample.
    pub first_time: Option<f64>,
    pub last_time: Option<f64>,
    /// The fd count when the limit was hit.
    pub limit_hit_fds: Option<u64>,
    /// Bytes held by deleted-but-open files at the last sample.
    pub deleted_bytes: u64,
    #[serde(skip)]
    last_fds: u64,
    #[serde(skip)]
    recorded_last: bool,
    #[serde(skip)]
    due: bool,
    pub spans: Vec<Span>,
    /// Unix times of the first WARNING (or worse), first CRITICAL, and the
    /// first sample at or over the soft limit.
    pub first_warning: Option<f64>,
    pub first_critical: Option<f64>,
    pub limit_hit: Option<f64>,
    /// The verdict after the last sample.
    pub last: Option<Verdict>,
}

impl Timeline {
    pub fn new() -> Timeline {
        Timeline::default()
    }

    /// Remember the verdict given after `s`.
    pub fn push(&mut self, s: &Sample, v: &Verdict) {
        self.observe(s);
        self.record(v);
    }

    /// Take in the next sample: its time, count and the limit hit are kept
    /// for every sample. True when a verdict is due after it ([`record`]):
    /// after every sample of the first [`STEPS_KEPT`], then after every
    /// `steps_stride`-th (a verdict costs far more than reading a sample, and
    /// a long series needs its level at a bounded number of points).
    ///
    /// [`record`]: Timeline::record
    pub fn observe(&mut self, s: &Sample) -> bool {
        let t = s.unix_time;
        self.steps_stride = self.steps_stride.max(1);
        let due = self.samples.is_multiple_of(self.steps_stride);
        self.due = due;
        self.samples += 1;
        self.first_time.get_or_insert(t);
        self.last_time = Some(t);
        self.last_fds = s.fds;
        self.recorded_last = false;
        self.deleted_bytes = s.deleted_bytes;
        if self.limit_hit.is_none() && s.limits.soft.is_some_and(|l| s.fds >= l) {
            self.limit_hit = Some(t);
            self.limit_hit_fds = Some(s.fds);
        }
        due
    }

    /// Whether the last sample observed has its verdict recorded: when not,
    /// record the verdict at the end so the final level is the last sample's.
    pub fn recorded_last(&self) -> bool {
        self.recorded_last || self.samples == 0
    }

    /// Remember the verdict given after the last sample observed (a step
    /// when one was due; the spans and first WARNING/CRITICAL always).
    pub fn record(&mut self, v: &Verdict) {
        let Some(t) = self.last_time else {
            return;
        };
        self.recorded_last = true;
        if self.due {
            self.steps.push(Step {
                unix_time: t,
                fds: self.last_fds,
                level: v.level,
            });
        }
        if self.steps.len() > STEPS_KEPT {
            // Keep samples 0, 2k, 4k, ...: the stride doubles.
            let mut i = 0;
            self.steps.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            self.steps_stride *= 2;
        }
        if self.spans.last().is_none_or(|sp| sp.level != v.level) {
            if let Some(sp) = self.spans.last_mut() {
                sp.until = Some(t);
            }
            self.spans.push(Span {
                level: v.level,
                from: t,
                until: None,
                reason: v.reasons.first().cloned().unwrap_or_default(),
                eta: v.forecast.as_ref().map(|f| f.eta),
            });
        }
        if v.level >= Level::Warning && self.first_warning.is_none() {
            self.first_warning = Some(t);
        }
        if v.level >= Level::Critical && self.first_critical.is_none() {
            self.first_critical = Some(t);
        }
        self.last = Some(v.clone());
    }

    /// The final level (UNKNOWN before any sample).
    pub fn level(&self) -> Level {
        self.last
            .as_ref()
            .map(|v| v.level)
            .unwrap_or(Level::Unknown)
    }

    /// Whether the series crosses a UTC day, so clock times need their date.
    fn long(&self) -> bool {
        match (self.first_time, self.last_time) {
            (Some(a), Some(b)) => (a / 86_400.0).floor() != (b / 86_400.0).floor(),
            _ => false,
        }
    }

    /// "OK until 10:42:05; WARNING from 10:42:05 — ...; limit hit at 10:43:41"
    pub fn summary_lines(&self) -> Vec<String> {
        let long = self.long();
        let mut out = Vec::new();
        for (i, sp) in self.spans.iter().enumerate() {
            let only = self.spans.len() == 1;
            let line = if i == 0 && sp.level == Level::Ok {
                match sp.until {
                    Some(u) => format!("OK until {}", clock(u, long)),
                    None => "OK throughout".to_string(),
                }
            } else if only {
                format!("{} throughout — {}", sp.level.name(), sp.reason)
            } else {
                let mut l = format!("{} from {}", sp.level.name(), clock(sp.from, long));
                if !sp.reason.is_empty() {
                    l.push_str(" — ");
                    l.push_str(&sp.reason);
                }
                l
            };
            out.push(line);
        }
        if let Some(t) = self.limit_hit {
            let at = self
                .limit_hit_fds
                .map(|fds| format!(" ({fds} fds)"))
                .unwrap_or_default();
            out.push(format!("limit hit at {}{at}", clock(t, long)));
        }
        if let (Some(w), Some(h)) = (self.first_warning, self.limit_hit) {
            if w <= h {
                out.push(format!(
                    "warning lead time: {} before the limit",
                    approx_duration(h - w).trim_start_matches('~')
                ));
            }
        }
        out
    }
}

/// The last second `humantime` formats (9999-12-31T23:59:59Z).
const LAST_CLOCK: f64 = 253_402_300_799.0;

/// Wall-clock time in UTC: `10:42:05`, or `2026-11-26T10:42:05Z` when `long`.
/// Inputs validate their times (`input::validate`); a time outside what a
/// clock shows (not finite, before 1970, after 9999) is written as its number
/// rather than a panic.
pub fn clock(unix: f64, long: bool) -> String {
    if !(unix.is_finite() && (0.0..=LAST_CLOCK).contains(&unix)) {
        return format!("@{unix}");
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(unix);
    let s = humantime::format_rfc3339_seconds(t).to_string();
    if long {
        s
    } else {
        s.get(11..19).unwrap_or(&s).to_string()
    }
}

/// The text report of one series: header, timeline, trend, forecast, patterns, notes.
pub fn text(name: &str, tl: &Timeline, notes: &[String]) -> String {
    let mut out = String::new();
    let (Some(first), Some(last)) = (tl.first_time, tl.last_time) else {
        return format!("{name}: no samples\n");
    };
    out.push_str(&format!(
        "{name}: {} — {} samples, {} to {} UTC ({})\n",
        tl.level().name(),
        tl.samples,
        clock(first, true),
        clock(last, tl.long()),
        approx_duration(last - first).trim_start_matches('~'),
    ));
    out.push_str("  timeline:\n");
    for l in tl.summary_lines() {
        out.push_str(&format!("    {l}\n"));
    }
    if let Some(v) = &tl.last {
        match &v.total {
            Some(t) => out.push_str(&format!(
                "  trend: {} {} ({}, over the last {}){}\n",
                t.label,
                format_slope(t),
                t.model.replace('_', " "),
                approx_duration(t.span).trim_start_matches('~'),
                t.ols_slope
                    .map(|o| format!(
                        "; least squares {}{}",
                        if o >= 0.0 { "+" } else { "" },
                        crate::diagnose::format::rate(o)
                    ))
                    .unwrap_or_default()
            )),
            None => out.push_str("  trend: too few samples for a trend\n"),
        }
        for s in v.series.iter().filter(|s| s.growing).take(5) {
            out.push_str(&format!("    {} {}\n", s.label, format_slope(s)));
        }
        match &v.forecast {
            Some(f) if f.eta < 1.0 => out.push_str(&format!(
                "  forecast: at the {} ({}) at the last sample\n",
                f.limit_name, f.limit
            )),
            Some(f) => {
                let earliest = approx_duration(f.eta_earliest);
                let latest = f
                    .eta_latest
                    .map(approx_duration)
                    .unwrap_or_else(|| "never".into());
                let range = if earliest == latest {
                    String::new()
                } else {
                    format!(
                        " (between {} and {})",
                        earliest.trim_start_matches('~'),
                        latest.trim_start_matches('~')
                    )
                };
                out.push_str(&format!(
                    "  forecast: {} {} in {}{range} after the last sample\n",
                    f.limit_name,
                    f.limit,
                    approx_duration(f.eta),
                ))
            }
            None => out.push_str("  forecast: none (not growing toward a limit)\n"),
        }
        if !v.patterns.is_empty() {
            out.push_str("  patterns:\n");
            for p in &v.patterns {
                out.push_str(&format!(
                    "    {}: {}\n      evidence: {}\n      cause: {}\n",
                    p.id, p.summary, p.evidence, p.cause
                ));
            }
        }
        if tl.deleted_bytes > 0 {
            out.push_str(&format!(
                "  deleted-but-open files hold {}\n",
                bytes(tl.deleted_bytes)
            ));
        }
        out.push_str(&format!("  final verdict: {}\n", v.level.name()));
        for r in &v.reasons {
            out.push_str(&format!("    - {r}\n"));
        }
    }
    for n in notes {
        out.push_str(&format!("  note: {n}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::Verdict;

    fn verdict(level: Level, reason: &str) -> Verdict {
        Verdict {
            level,
            reasons: vec![reason.into()],
            fds: 0,
            soft_limit: None,
            usage: None,
            forecast: None,
            total: None,
            series: vec![],
            patterns: vec![],
            syscalls: None,
            samples: 0,
        }
    }

    #[test]
    fn levels_compress_into_spans_with_markers() {
        // 2026-11-26T10:42:00Z onwards, one sample every 10 s.
        let t0 = 1_795_689_720.0;
        let levels = [
            Level::Ok,
            Level::Ok,
            Level::Warning,
            Level::Warning,
            Level::Critical,
            Level::Critical,
        ];
        let mut tl = Timeline::new();
        for (i, lvl) in levels.iter().enumerate() {
            let mut s = crate::input::minimal_sample(
                1,
                "x",
                t0 + 10.0 * i as f64,
                95 + i as u64,
                Some(100),
            );
            s.mono_time = i as f64;
            tl.push(&s, &verdict(*lvl, &format!("reason {i}")));
        }
        assert_eq!(tl.steps.len(), 6);
        assert_eq!(tl.spans.len(), 3);
        assert_eq!(tl.spans[1].reason, "reason 2");
        assert_eq!(tl.spans[1].until, Some(t0 + 40.0));
        assert_eq!(tl.first_warning, Some(t0 + 20.0));
        assert_eq!(tl.first_critical, Some(t0 + 40.0));
        assert_eq!(tl.limit_hit, Some(t0 + 50.0), "100 fds of 100");
        assert_eq!(tl.level(), Level::Critical);
        assert_eq!(
            tl.summary_lines(),
            [
                "OK until 10:42:20",
                "WARNING from 10:42:20 — reason 2",
                "CRITICAL from 10:42:40 — reason 4",
                "limit hit at 10:42:50 (100 fds)",
                "warning lead time: 30s before the limit",
            ]
        );
    }

    #[test]
    fn clock_never_panics_outside_what_a_clock_shows() {
        // 300000000000 is year 11476: humantime's formatter panicked on it.
        for t in [3e11, 1e19, 1e20, f64::MAX, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(clock(t, true), format!("@{t}"));
            assert_eq!(clock(t, false), format!("@{t}"));
        }
        assert_eq!(clock(253_402_300_799.0, true), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn steps_stay_bounded_keeping_every_kth_sample() {
        let mut tl = Timeline::new();
        let n = STEPS_KEPT * 5 + 3;
        for i in 0..n {
            let s = crate::input::minimal_sample(1, "x", 1e9 + i as f64, 1, None);
            tl.push(&s, &verdict(Level::Ok, ""));
        }
        assert!(tl.steps.len() <= STEPS_KEPT, "{}", tl.steps.len());
        assert!(tl.steps.len() > STEPS_KEPT / 2);
        assert_eq!(tl.samples, n);
        assert_eq!(tl.steps_stride, 8, "{n} samples, {STEPS_KEPT} kept");
        for (i, st) in tl.steps.iter().enumerate() {
            assert_eq!(st.unix_time, 1e9 + (i * tl.steps_stride) as f64);
        }
        // Fed as analyze feeds it: a verdict only when one is due, and the
        // last sample's at the end.
        let mut lazy = Timeline::new();
        let mut verdicts = 0;
        for i in 0..n {
            let s = crate::input::minimal_sample(1, "x", 1e9 + i as f64, 1, None);
            if lazy.observe(&s) {
                lazy.record(&verdict(Level::Ok, ""));
                verdicts += 1;
            }
        }
        assert!(!lazy.recorded_last());
        lazy.record(&verdict(Level::Warning, "end"));
        assert_eq!(lazy.level(), Level::Warning);
        assert_eq!(
            lazy.spans.last().map(|s| s.from),
            Some(1e9 + (n - 1) as f64)
        );
        assert!(verdicts < n / 2, "{verdicts} verdicts for {n} samples");
        assert_eq!(tl.last_time, Some(1e9 + (n - 1) as f64));
    }

    #[test]
    fn clock_is_utc() {
        assert_eq!(clock(1_795_689_725.4, false), "10:42:05");
        assert_eq!(clock(1_795_689_725.4, true), "2026-11-26T10:42:05Z");
    }
}

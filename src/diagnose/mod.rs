//! Verdicts and leak patterns: pure functions of samples and trends.
//!
//! A [`Tracker`] is fed [`Sample`]s (live, from a state file or a recording:
//! it never knows which) and keeps one bounded [`History`] per series. A
//! [`Verdict`] says OK / WARNING / CRITICAL, when EMFILE comes, and which
//! pattern explains it, in words a person acts on. Nothing here touches the OS.

pub mod format;
pub mod gate;
pub mod range;

pub use range::Range;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::sample::{FdKind, Sample};
use crate::syscalls::{SyscallCounts, SyscallRates};
use crate::trend::{self, Eta, History, SlopeFit};
use format::{approx_duration, rate};

/// Fewer points than this: no trend yet ("collecting").
pub const MIN_POINTS: usize = 5;
/// A sub-series must have grown by at least this many fds over its fit to count as growing.
const MIN_RISE: f64 = 3.0;
/// Seconds a system-wide (fs.file-nr) trend must span before it forecasts.
const SYSTEM_MIN_SPAN: f64 = 60.0;
/// At most this many paths / endpoints are tracked over time.
const MAX_NAMED_SERIES: usize = 32;
/// A fall of the total below its peak by this many fds, and by
/// [`DROP_SHARE`] of the peak, is a drop: a pool let go, not noise.
const MIN_DROP: f64 = 10.0;
const DROP_SHARE: f64 = 0.25;
/// The growth a process has averaged over its whole life confirms a trend
/// when the current slope lies within this factor of it (either way).
const LIFETIME_FACTOR: f64 = 2.0;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Usage ratios (0..1): the level rises above them. What `top` and
    /// `serve` compare with; the verdict uses the usage ranges below when set.
    pub warn_usage: f64,
    pub crit_usage: f64,
    /// Time-left thresholds, seconds.
    pub warn_eta: f64,
    pub crit_eta: f64,
    /// Ranges on the fd count, in the Monitoring Plugins syntax (`check -w/-c N`).
    #[serde(default)]
    pub warn_fds: Option<Range>,
    #[serde(default)]
    pub crit_fds: Option<Range>,
    /// Ranges on the usage, in percent (`-w 80%`, `--warn-usage 10:80`).
    #[serde(default)]
    pub warn_usage_range: Option<Range>,
    #[serde(default)]
    pub crit_usage_range: Option<Range>,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            warn_usage: 0.80,
            crit_usage: 0.95,
            warn_eta: 3600.0,
            crit_eta: 600.0,
            warn_fds: None,
            crit_fds: None,
            warn_usage_range: None,
            crit_usage_range: None,
        }
    }
}

impl Thresholds {
    /// The usage range (percent) of a level: the one given, else "above
    /// the ratio" (`80` alerts above 80%, 80% itself included in OK).
    pub fn usage_range(&self, level: Level) -> Range {
        let (range, ratio) = if level >= Level::Critical {
            (self.crit_usage_range, self.crit_usage)
        } else {
            (self.warn_usage_range, self.warn_usage)
        };
        range.unwrap_or_else(|| Range::upto(ratio * 100.0).percent())
    }
}

/// The monitoring-plugin levels; the number is the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    Ok = 0,
    Warning = 1,
    Critical = 2,
    Unknown = 3,
}

/// Worst-of in the order CRITICAL > WARNING > UNKNOWN > OK (the plugins'
/// `max_state_alt`): a readable CRITICAL outranks an unreadable process.
pub fn worst(levels: impl Iterator<Item = Level>) -> Level {
    let rank = |l: &Level| match l {
        Level::Ok => 0,
        Level::Unknown => 1,
        Level::Warning => 2,
        Level::Critical => 3,
    };
    levels.max_by_key(rank).unwrap_or(Level::Unknown)
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Ok => "OK",
            Level::Warning => "WARNING",
            Level::Critical => "CRITICAL",
            Level::Unknown => "UNKNOWN",
        }
    }
    pub fn exit_code(self) -> u8 {
        self as u8
    }
}

/// The trend of one series, as reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesTrend {
    /// Machine name: `total`, a kind (`netlink`), `netlink:ROUTE`, `tcp:CLOSE_WAIT`,
    /// `path:/var/log/x`, `remote:10.0.0.1:5432`.
    pub series: String,
    /// What a person reads: "netlink ROUTE sockets".
    pub label: String,
    pub now: f64,
    /// Slope per second and its confidence interval. An unbounded end of the
    /// interval is infinite, written `null` in JSON (JSON has no infinity).
    pub slope: f64,
    #[serde(deserialize_with = "null_as_neg_inf")]
    pub slope_lo: f64,
    #[serde(deserialize_with = "null_as_pos_inf")]
    pub slope_hi: f64,
    pub growing: bool,
    /// `linear` or `lower_envelope` (sawtooth).
    pub model: String,
    /// Seconds the fit covers (since the last regime change).
    pub span: f64,
    /// The OLS (predict_linear) slope on the same series, for comparison.
    pub ols_slope: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    /// `soft RLIMIT_NOFILE` or `fs.file-max`.
    pub limit_name: String,
    pub limit: u64,
    /// Seconds until the limit: estimate and interval (`latest` null when unbounded).
    pub eta: f64,
    pub eta_earliest: f64,
    pub eta_latest: Option<f64>,
    /// False while the forecast is held back (`held_back` says why): it is
    /// shown, and raises at most a WARNING (docs/trend.md).
    #[serde(default = "yes")]
    pub confirmed: bool,
    /// Why the forecast is held back, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_back: Option<HeldBack>,
}

/// Why a forecast raises no CRITICAL yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeldBack {
    /// Too little history to tell a leak from a pool's first ramp
    /// (trend::forecast_confirmed), and no lifetime evidence either.
    Unconfirmed,
    /// The count dropped well below an earlier peak and has not passed it
    /// since (nor have its troughs risen): a pool filling up again.
    Refilling { peak: u64 },
}

fn yes() -> bool {
    true
}

/// serde_json writes a non-finite f64 as `null`; read it back as the bound it was.
fn null_as_neg_inf<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NEG_INFINITY))
}

fn null_as_pos_inf<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::INFINITY))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pattern {
    /// Stable id: `netlink_accumulation`, `netlink_churn`, `close_wait`,
    /// `deleted_files`, `repeated_path`, `event_plumbing`, `remote_endpoint`, `growing_kind`.
    pub id: String,
    /// One line: what grows and how fast.
    pub summary: String,
    /// The numbers behind it.
    pub evidence: String,
    /// The likely cause, and what to do.
    pub cause: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub level: Level,
    /// Why, most important first, each a sentence a person acts on.
    pub reasons: Vec<String>,
    pub fds: u64,
    pub soft_limit: Option<u64>,
    pub usage: Option<f64>,
    /// None while collecting or when not growing.
    pub forecast: Option<Forecast>,
    /// Trend of the total fd count (None while collecting).
    pub total: Option<SeriesTrend>,
    /// Trends per kind and sub-series that have any, growing first.
    pub series: Vec<SeriesTrend>,
    pub patterns: Vec<Pattern>,
    /// Exact syscall rates over the recent window (when counted).
    #[serde(default)]
    pub syscalls: Option<SyscallRates>,
    /// Samples seen since the history (re)started.
    pub samples: usize,
}

/// Series kept for one process. Bounded whatever the watch length.
#[derive(Debug, Default)]
pub struct Tracker {
    total: History,
    system: History,
    kinds: BTreeMap<FdKind, History>,
    /// `netlink:ROUTE`, `tcp:CLOSE_WAIT`, `path:..`, `remote:..` → history.
    named: BTreeMap<String, History>,
    /// (seconds, new netlink inodes) per interval: churn evidence.
    netlink_churn: std::collections::VecDeque<(f64, u64, u64)>,
    /// (mono time, cumulative counts) of the recent samples that had them.
    syscalls: std::collections::VecDeque<(f64, SyscallCounts)>,
    first: Option<Sample>,
    last: Option<Sample>,
    samples: usize,
    deleted_bytes: u64,
    /// The highest total seen, and the peak the total last dropped well
    /// below (cleared once the total passes it again).
    peak: f64,
    dropped_from: Option<f64>,
    /// A forecast was confirmed since the last drop: it stays confirmed
    /// (no flapping back to "unconfirmed" when a fit window shortens).
    confirmed: std::cell::Cell<bool>,
}

impl Tracker {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn last(&self) -> Option<&Sample> {
        self.last.as_ref()
    }

    pub fn first(&self) -> Option<&Sample> {
        self.first.as_ref()
    }

    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Feed one sample. A sample of a different process (new start time)
    /// restarts the history: a restarted process is a new story.
    pub fn observe(&mut self, s: &Sample) {
        if let Some(last) = &self.last {
            if last.pid != s.pid || last.start_time != s.start_time {
                *self = Tracker::new();
            }
        }
        let t = s.mono_time;
        self.total.push(t, s.fds as f64);
        self.track_peak(s.fds as f64);
        self.system.push(t, s.system.allocated as f64);
        if !s.kinds.is_empty() {
            for kind in s.kinds.keys() {
                self.kinds.entry(*kind).or_default();
            }
            for (kind, h) in self.kinds.iter_mut() {
                h.push(t, s.kind(*kind) as f64);
            }
            let mut named: BTreeMap<String, f64> = BTreeMap::new();
            for (proto, n) in &s.netlink_protocols {
                named.insert(format!("netlink:{proto}"), *n as f64);
            }
            for (state, n) in &s.tcp_states {
                named.insert(format!("tcp:{state}"), *n as f64);
            }
            for c in &s.repeated_paths {
                named.insert(format!("path:{}", c.name), c.count as f64);
            }
            for c in &s.remote_endpoints {
                named.insert(format!("remote:{}", c.name), c.count as f64);
            }
            for key in named.keys() {
                if !self.named.contains_key(key) && self.named.len() >= MAX_NAMED_SERIES {
                    self.evict_named();
                }
                if !self.named.contains_key(key) && self.named.len() < MAX_NAMED_SERIES {
                    self.named.insert(key.clone(), History::default());
                }
            }
            for (key, h) in self.named.iter_mut() {
                h.push(t, named.get(key).copied().unwrap_or(0.0));
            }
        }
        if let Some(prev) = &self.last {
            let dt = s.mono_time - prev.mono_time;
            if dt > 0.0 && !s.kinds.is_empty() {
                self.netlink_churn.push_back((
                    dt,
                    s.new_inodes.get(&FdKind::Netlink).copied().unwrap_or(0),
                    s.kind(FdKind::Netlink),
                ));
                if self.netlink_churn.len() > 60 {
                    self.netlink_churn.pop_front();
                }
            }
        }
        if let Some(c) = &s.syscalls {
            self.syscalls.push_back((t, c.clone()));
            if self.syscalls.len() > 31 {
                self.syscalls.pop_front();
            }
        }
        self.deleted_bytes = s.deleted_bytes;
        if self.first.is_none() {
            self.first = Some(s.clone());
        }
        self.last = Some(s.clone());
        self.samples += 1;
    }

    /// A drop well below the peak holds forecasts back until the total
    /// passes that peak again.
    fn track_peak(&mut self, v: f64) {
        // Passing the old peak by its noise is not passing it.
        if self
            .dropped_from
            .is_some_and(|p| v > p + MIN_RISE + 0.02 * p)
        {
            self.dropped_from = None;
        }
        if v > self.peak {
            self.peak = v;
        } else if self.dropped_from.is_none()
            && self.peak - v >= MIN_DROP.max(DROP_SHARE * self.peak)
        {
            self.dropped_from = Some(self.peak);
            self.confirmed.set(false);
        }
    }

    /// The growth the process averaged since it started (fds at the first
    /// sample over its age then) matches the current slope: it has been
    /// growing like this all its life, which no pool's ramp does. Needs a
    /// process that was up for the warm-up time before the first sample.
    fn lifetime_evidence(&self, total: &SeriesTrend) -> bool {
        let Some(first) = &self.first else {
            return false;
        };
        let Some(age) = first.age.filter(|a| *a >= trend::WARMUP_S) else {
            return false;
        };
        let lifetime = first.fds as f64 / age;
        total.slope > 0.0
            && total.slope <= LIFETIME_FACTOR * lifetime
            && total.slope >= lifetime / LIFETIME_FACTOR
    }

    /// Drop the named series whose latest value is smallest (least relevant).
    fn evict_named(&mut self) {
        let victim = self
            .named
            .iter()
            .min_by(|a, b| {
                let va = a.1.last().map(|p| p.v).unwrap_or(0.0);
                let vb = b.1.last().map(|p| p.v).unwrap_or(0.0);
                va.total_cmp(&vb)
            })
            .map(|(k, _)| k.clone());
        if let Some(k) = victim {
            self.named.remove(&k);
        }
    }

    pub fn verdict(&self, th: &Thresholds) -> Verdict {
        let Some(last) = &self.last else {
            return Verdict {
                level: Level::Unknown,
                reasons: vec!["no sample yet".into()],
                fds: 0,
                soft_limit: None,
                usage: None,
                forecast: None,
                total: None,
                series: vec![],
                patterns: vec![],
                syscalls: None,
                samples: 0,
            };
        };
        let usage = last.usage_ratio();
        let total = series_trend("total", "open fds", &self.total);
        let mut series: Vec<SeriesTrend> = Vec::new();
        for (kind, h) in &self.kinds {
            if let Some(st) = series_trend(kind.name(), kind.label(), h) {
                series.push(st);
            }
        }
        for (key, h) in &self.named {
            if let Some(st) = series_trend(key, &named_label(key), h) {
                series.push(st);
            }
        }
        series.sort_by(|a, b| {
            b.growing
                .cmp(&a.growing)
                .then(b.slope.total_cmp(&a.slope))
                .then(a.series.cmp(&b.series))
        });

        let system = self.system_trend();
        let forecast = self.forecast(last, total.as_ref(), system.as_ref());
        let syscalls = self.syscall_rates();
        let patterns = self.patterns(last, &series, syscalls.as_ref());

        // Each reason carries the level it supports; the strongest come first.
        let mut reasons: Vec<(Level, String)> = Vec::new();
        if let Some(soft) = last.limits.soft {
            if last.fds >= soft {
                reasons.push((
                    Level::Critical,
                    format!(
                        "at the soft limit: {}/{} fds, opens fail with EMFILE now",
                        last.fds, soft
                    ),
                ));
            }
        }
        // Thresholds on the count and usage: after the forecast among reasons
        // of the same level, which says what grows and when it runs out.
        let mut thresholds: Vec<(Level, String)> = Vec::new();
        // The fd count against `-w/-c N` (Monitoring Plugins ranges).
        for (lvl, range) in [
            (Level::Critical, th.crit_fds),
            (Level::Warning, th.warn_fds),
        ] {
            if let Some(r) = range.filter(|r| r.alerts(last.fds as f64)) {
                thresholds.push((
                    lvl,
                    format!("{} open fds: {}", last.fds, range_words(&r, lvl, "")),
                ));
                break;
            }
        }
        if let Some(u) = usage {
            let pct = u * 100.0;
            let hit = [Level::Critical, Level::Warning]
                .into_iter()
                .map(|l| (l, th.usage_range(l)))
                .find(|(_, r)| r.alerts(pct));
            let at_limit = last.limits.soft.is_some_and(|soft| last.fds >= soft);
            if let (Some((lvl, r)), false) = (hit, at_limit) {
                let why = if r.start == 0.0 && !r.inside {
                    format!("threshold {}%", r)
                } else {
                    range_words(&r, lvl, "%")
                };
                thresholds.push((lvl, format!("{pct:.0}% of the soft limit in use ({why})")));
            }
        }
        let forecast = forecast.map(|f| self.hold_back(f, total.as_ref()));
        if let Some(f) = &forecast {
            // A held-back forecast inside --crit-eta is a WARNING: too near
            // to stay silent about, too unsure to page for (docs/trend.md).
            let lvl = match (&f.held_back, f.eta) {
                (Some(HeldBack::Refilling { .. }), _) => Level::Ok,
                (Some(HeldBack::Unconfirmed), eta) if eta <= th.crit_eta => Level::Warning,
                (Some(HeldBack::Unconfirmed), _) => Level::Ok,
                (None, eta) if eta <= th.crit_eta => Level::Critical,
                (None, eta) if eta <= th.warn_eta => Level::Warning,
                (None, _) => Level::Ok,
            };
            let driver = series
                .iter()
                .find(|s| s.growing && s.series.contains(':'))
                .or_else(|| series.iter().find(|s| s.growing));
            let system = system.clone().filter(|_| f.limit_name == "fs.file-max");
            let what = match (system, driver, &total) {
                (Some(sys), _, _) => describe_growth(&sys),
                (None, Some(d), _) => describe_growth(d),
                (None, None, Some(t)) => describe_growth(t),
                (None, None, None) => "open fds growing".into(),
            };
            let limit_word = if f.limit_name.starts_with("soft") {
                "EMFILE"
            } else {
                "ENFILE (system file table full)"
            };
            let watched = match &f.held_back {
                None => String::new(),
                Some(HeldBack::Unconfirmed) => format!(
                    "; unconfirmed: watched {} of the {} it takes to tell a leak from a pool filling up",
                    approx_duration(self.history_span()).trim_start_matches('~'),
                    approx_duration(trend::WARMUP_S).trim_start_matches('~')
                ),
                Some(HeldBack::Refilling { peak }) => format!(
                    "; held back: refilling after a drop from {peak} fds, a pool until it passes {peak} or its troughs rise"
                ),
            };
            reasons.push((
                lvl,
                if f.eta < 1.0 {
                    format!(
                        "{what} — {limit_word} now ({} {} reached){watched}",
                        f.limit_name, f.limit
                    )
                } else {
                    format!(
                        "{what} — {limit_word} in {}{} ({} {}){watched}",
                        approx_duration(f.eta),
                        eta_range(f),
                        f.limit_name,
                        f.limit
                    )
                },
            ));
        } else if self.total.len() < MIN_POINTS {
            reasons.push((
                Level::Ok,
                format!(
                    "collecting: {}/{} samples before a trend",
                    self.total.len(),
                    MIN_POINTS
                ),
            ));
        } else if let Some(t) = &total {
            let text = if t.slope_lo <= 0.0 && t.slope_hi >= 0.0 {
                format!("not growing: {} includes 0", format_slope(t))
            } else if t.slope < 0.0 {
                format!("shrinking: {}", format_slope(t))
            } else {
                format!("growing slowly: {}", format_slope(t))
            };
            reasons.push((Level::Ok, text));
        }
        reasons.append(&mut thresholds);
        for p in &patterns {
            reasons.push((Level::Ok, format!("{}: {}", p.summary, p.cause)));
        }
        // Stable: among reasons of one level, the order above stands.
        reasons.sort_by_key(|r| std::cmp::Reverse(r.0));
        let level = reasons.iter().map(|r| r.0).max().unwrap_or(Level::Ok);
        let reasons: Vec<String> = reasons.into_iter().map(|r| r.1).collect();
        Verdict {
            level,
            reasons,
            fds: last.fds,
            soft_limit: last.limits.soft,
            usage,
            forecast,
            total,
            series,
            patterns,
            syscalls,
            samples: self.samples,
        }
    }

    /// Decide whether a forecast may page: a drop below an earlier peak
    /// holds it back until the total passes that peak (or its troughs rise:
    /// the lower-envelope fit grows); then the history, the lifetime
    /// evidence, or an earlier confirmation confirm it.
    fn hold_back(&self, mut f: Forecast, total: Option<&SeriesTrend>) -> Forecast {
        let troughs_rise = total.is_some_and(|t| t.growing && t.model == "lower_envelope");
        let refilling = self.dropped_from.filter(|_| !troughs_rise);
        let system = f.limit_name == "fs.file-max";
        f.held_back = if let (Some(peak), false) = (refilling, system) {
            Some(HeldBack::Refilling { peak: peak as u64 })
        } else if f.confirmed
            || self.confirmed.get()
            || total.is_some_and(|t| self.lifetime_evidence(t))
        {
            None
        } else {
            Some(HeldBack::Unconfirmed)
        };
        f.confirmed = f.held_back.is_none();
        if f.confirmed {
            self.confirmed.set(true);
        }
        f
    }

    /// Exact rates over the recent window of counted samples.
    fn syscall_rates(&self) -> Option<SyscallRates> {
        let (t0, first) = self.syscalls.front()?;
        let (t1, last) = self.syscalls.back()?;
        (t1 > t0).then(|| last.per_second(first, t1 - t0))
    }

    /// Time to the soft limit, or to fs.file-max when that is nearer.
    fn forecast(
        &self,
        last: &Sample,
        total: Option<&SeriesTrend>,
        system: Option<&SeriesTrend>,
    ) -> Option<Forecast> {
        let mut best: Option<Forecast> = None;
        if let (Some(soft), Some(t)) = (last.limits.soft, total) {
            if let Some(e) = eta_of(t, last.fds as f64, soft as f64) {
                best = Some(make_forecast(
                    "soft RLIMIT_NOFILE",
                    soft,
                    e,
                    self.history_span(),
                    t.span,
                ));
            }
        }
        if let Some(sys) = system {
            if last.system.max > 0 && last.system.max < i64::MAX as u64 {
                if let Some(e) = eta_of(sys, last.system.allocated as f64, last.system.max as f64) {
                    if best.as_ref().is_none_or(|b| e.seconds < b.eta) {
                        best = Some(make_forecast(
                            "fs.file-max",
                            last.system.max,
                            e,
                            self.history_span(),
                            sys.span,
                        ));
                    }
                }
            }
        }
        best
    }

    /// Seconds of history held for this process.
    fn history_span(&self) -> f64 {
        match (self.first.as_ref(), self.last.as_ref()) {
            (Some(a), Some(b)) => (b.mono_time - a.mono_time).max(0.0),
            _ => 0.0,
        }
    }

    /// The system-wide file table moves with every process on the host: only a
    /// trend held over a minute or more says anything about it.
    fn system_trend(&self) -> Option<SeriesTrend> {
        series_trend("system", "system file handles", &self.system)
            .filter(|t| t.span >= SYSTEM_MIN_SPAN)
    }

    fn patterns(
        &self,
        last: &Sample,
        series: &[SeriesTrend],
        exact: Option<&SyscallRates>,
    ) -> Vec<Pattern> {
        let mut out = Vec::new();
        let room = last.limits.soft.map(|s| s.saturating_sub(last.fds));
        let eta_note = |st: &SeriesTrend| match room {
            Some(r) if st.slope > 0.0 && r > 0 => format!(
                "; alone it exhausts the {r} fds left in {}",
                approx_duration(r as f64 / st.slope)
            ),
            _ => String::new(),
        };
        let growing = |key: &str| series.iter().find(|s| s.series == key && s.growing);
        let mut explained: Vec<&str> = Vec::new();

        // 1. Netlink accumulation, per protocol.
        for st in series
            .iter()
            .filter(|s| s.growing && s.series.starts_with("netlink:"))
        {
            let proto = &st.series["netlink:".len()..];
            let cause = match proto {
                "ROUTE" => "repeated interface-address lookups that never close their netlink socket (Go net.InterfaceAddrs/net.Interfaces, glibc getifaddrs, libnl caches); cache the result or close the socket",
                "unknown" => "netlink sockets that were never bound, so /proc cannot name their protocol; with root, the BPF census or --syscalls names it",
                _ => "netlink sockets opened and never closed",
            };
            out.push(growth_pattern(
                "netlink_accumulation",
                st,
                format!(
                    "{:.0} held now, fit over {}{}",
                    st.now,
                    approx_duration(st.span),
                    eta_note(st)
                ),
                cause,
            ));
            explained.push("netlink");
        }
        if out.is_empty() {
            if let Some(st) = growing("netlink") {
                out.push(Pattern {
                    id: "netlink_accumulation".into(),
                    summary: format!("netlink sockets {}", format_slope(st)),
                    evidence: format!("{:.0} held now{}", st.now, eta_note(st)),
                    cause: "netlink sockets opened and never closed (interface or route lookups that leak their socket)".into(),
                });
                explained.push("netlink");
            }
        }
        // 2. Netlink churn: flat count, sockets opened and closed all the time.
        // Only once the netlink count has a trend: before that, socket()
        // counts cannot tell a socket closed again from one kept (a leak's
        // first samples were named churn).
        let netlink_known = series.iter().any(|s| s.series == "netlink");
        if netlink_known && growing("netlink").is_none() {
            let exact_churn = exact.filter(|r| r.socket_netlink >= 1.0).map(|r| {
                let held = last.kind(FdKind::Netlink);
                Pattern {
                    id: "netlink_churn".into(),
                    summary: format!("netlink sockets opened {}/s, close() {}/s (exact)", format::thousands(r.socket_netlink), format::thousands(r.close)),
                    evidence: format!(
                        "socket(AF_NETLINK) counted exactly (--syscalls) over the last {}; {held} netlink sockets held and not growing; close() counts every fd type",
                        approx_duration(self.syscall_window()).trim_start_matches('~')
                    ),
                    cause: "interface address lookups in a hot path (e.g. Go net.InterfaceAddrs opens two NETLINK_ROUTE sockets per call); cache the result".into(),
                }
            });
            if let Some(p) = exact_churn.or_else(|| {
                if exact.is_none() {
                    self.netlink_churn_pattern()
                } else {
                    None
                }
            }) {
                out.push(p);
            }
        }
        // 3. CLOSE_WAIT.
        if let Some(st) = growing("tcp:CLOSE_WAIT") {
            out.push(Pattern {
                id: "close_wait".into(),
                summary: format!("TCP sockets in CLOSE_WAIT {}", format_slope(st)),
                evidence: format!("{:.0} in CLOSE_WAIT now{}", st.now, eta_note(st)),
                cause: "the peer closed these connections and the process never called close(); look for a missing Close() on an error path or a response body never closed".into(),
            });
            explained.extend(["tcp", "tcp6"]);
        }
        // 4. Deleted-but-open files.
        if let Some(st) = growing("deleted") {
            out.push(Pattern {
                id: "deleted_files".into(),
                summary: format!("deleted-but-open files {}", format_slope(st)),
                evidence: format!("{:.0} held, {} of disk still in use{}", st.now, format::bytes(self.deleted_bytes), eta_note(st)),
                cause: "files removed (log rotation, temp files) while still open: disk space is not freed until they are closed; reopen logs on rotation (SIGHUP / copytruncate)".into(),
            });
            explained.push("deleted");
        }
        // 5. The same path held many times.
        for st in series
            .iter()
            .filter(|s| s.growing && s.series.starts_with("path:"))
        {
            out.push(growth_pattern("repeated_path", st, format!("{:.0} fds on the same file{}", st.now, eta_note(st)), "the same file is opened again and again without close(): an open() in a loop or per request"));
            explained.push("regular");
        }
        // 6. Event-loop and child plumbing.
        for key in [
            "pipe",
            "eventfd",
            "eventpoll",
            "timerfd",
            "signalfd",
            "pidfd",
        ] {
            if let Some(st) = growing(key) {
                let cause = if key == "pipe" || key == "pidfd" {
                    "leaked child-process plumbing: pipes (or pidfds) of spawned children never closed, or a child's stdio kept after wait()"
                } else {
                    "event-loop objects created per task and never closed (an epoll/eventfd/timerfd per connection or per runtime)"
                };
                out.push(growth_pattern(
                    "event_plumbing",
                    st,
                    format!("{:.0} held now{}", st.now, eta_note(st)),
                    cause,
                ));
                explained.push(key);
            }
        }
        // 7. One remote endpoint.
        for st in series
            .iter()
            .filter(|s| s.growing && s.series.starts_with("remote:"))
        {
            out.push(growth_pattern("remote_endpoint", st, format!("{:.0} connections to it now{}", st.now, eta_note(st)), "a connection leak to one backend: a client or pool that opens connections without reusing or closing them"));
            explained.extend(["tcp", "tcp6"]);
        }
        // Exact counts confirm a leak: more opened than closed.
        if let (Some(r), Some(first)) = (exact, out.first_mut()) {
            if first.id != "netlink_churn" {
                let opens = r.socket + r.openat + r.accept;
                first.evidence.push_str(&format!(
                    "; exact: socket() {}/s (netlink {}/s), openat {}/s, accept {}/s vs close() {}/s: net {:+.1}/s",
                    format::thousands(r.socket),
                    format::thousands(r.socket_netlink),
                    format::thousands(r.openat),
                    format::thousands(r.accept),
                    format::thousands(r.close),
                    opens - r.close
                ));
            }
        }
        // Anything else that grows, named plainly.
        for st in series.iter().filter(|s| {
            s.growing && !s.series.contains(':') && !explained.contains(&s.series.as_str())
        }) {
            if st.series == "regular" && out.iter().any(|p| p.id == "repeated_path") {
                continue;
            }
            out.push(growth_pattern(
                "growing_kind",
                st,
                format!("{:.0} held now{}", st.now, eta_note(st)),
                &format!("{} opened faster than they are closed", st.label),
            ));
        }
        out
    }

    fn syscall_window(&self) -> f64 {
        match (self.syscalls.front(), self.syscalls.back()) {
            (Some(a), Some(b)) => b.0 - a.0,
            _ => 0.0,
        }
    }

    fn netlink_churn_pattern(&self) -> Option<Pattern> {
        let recent: Vec<&(f64, u64, u64)> = self.netlink_churn.iter().collect();
        if recent.len() < MIN_POINTS - 1 {
            return None;
        }
        let secs: f64 = recent.iter().map(|r| r.0).sum();
        let new: u64 = recent.iter().map(|r| r.1).sum();
        let with_new = recent.iter().filter(|r| r.1 > 0).count();
        // Most intervals show fresh sockets: a steady hot path, not one reconnect.
        if new < 3 || (with_new as f64) < 0.5 * recent.len() as f64 {
            return None;
        }
        let held = recent.last().map(|r| r.2).unwrap_or(0);
        Some(Pattern {
            id: "netlink_churn".into(),
            summary: format!("netlink sockets churning: at least {} opened and closed", rate(new as f64 / secs)),
            evidence: format!(
                "{new} new netlink socket inodes in {} intervals ({:.0}s), {held} held now and not growing; sampling sees only sockets alive at a sample, so the true rate is higher",
                recent.len(),
                secs
            ),
            cause: "a hot path opens and closes netlink sockets (e.g. interface address lookups per request or per log line: Go net.InterfaceAddrs); cache the result; count the exact rate with --syscalls (root)".into(),
        })
    }
}

/// A pattern whose summary is "<what> <slope (CI)>".
fn growth_pattern(id: &str, st: &SeriesTrend, evidence: String, cause: &str) -> Pattern {
    Pattern {
        id: id.into(),
        summary: format!("{} {}", st.label, format_slope(st)),
        evidence,
        cause: cause.to_string(),
    }
}

fn make_forecast(name: &str, limit: u64, e: Eta, history_span: f64, fit_span: f64) -> Forecast {
    Forecast {
        limit_name: name.into(),
        limit,
        eta: e.seconds,
        eta_earliest: e.earliest,
        eta_latest: e.latest.is_finite().then_some(e.latest),
        confirmed: trend::forecast_confirmed(history_span, fit_span, e.seconds),
        held_back: None,
    }
}

fn eta_of(st: &SeriesTrend, current: f64, limit: f64) -> Option<Eta> {
    let fit = SlopeFit {
        slope: st.slope,
        lo: st.slope_lo,
        hi: st.slope_hi,
        level_now: st.now,
        t_last: 0.0,
        from_t: -st.span,
        n: MIN_POINTS,
    };
    trend::eta(&fit, current, limit)
}

/// "outside the warning range 10:20" / "inside the critical range @5:8".
fn range_words(r: &Range, lvl: Level, unit: &str) -> String {
    let shown = if unit.is_empty() {
        r.to_string()
    } else {
        // `10%:20%`, `@80%`, `~:90%`.
        let plain = r.to_string();
        let (at, body) = match plain.strip_prefix('@') {
            Some(b) => ("@", b.to_string()),
            None => ("", plain),
        };
        let parts: Vec<String> = body
            .split(':')
            .map(|p| {
                if p.is_empty() || p == "~" {
                    p.to_string()
                } else {
                    format!("{p}{unit}")
                }
            })
            .collect();
        format!("{at}{}", parts.join(":"))
    };
    format!(
        "{} the {} range {shown}",
        if r.inside { "inside" } else { "outside" },
        lvl.name().to_lowercase()
    )
}

fn eta_range(f: &Forecast) -> String {
    match f.eta_latest {
        Some(latest) if (latest - f.eta_earliest) > 0.2 * f.eta => {
            format!(
                " (between {} and {})",
                approx_duration(f.eta_earliest).trim_start_matches('~'),
                approx_duration(latest).trim_start_matches('~')
            )
        }
        _ => String::new(),
    }
}

/// The trend of one history, or None while there are too few points.
pub fn series_trend(key: &str, label: &str, h: &History) -> Option<SeriesTrend> {
    if h.len() < MIN_POINTS {
        return None;
    }
    let points = h.points();
    // Most series of a healthy process never move: no fit needed for a flat line.
    if points.windows(2).all(|w| w[0].v == w[1].v) {
        let (first, last) = (points[0], points[points.len() - 1]);
        return Some(SeriesTrend {
            series: key.to_string(),
            label: label.to_string(),
            now: last.v,
            slope: 0.0,
            slope_lo: 0.0,
            slope_hi: 0.0,
            growing: false,
            model: "linear".into(),
            span: (last.t - first.t).max(0.0),
            ols_slope: Some(0.0),
        });
    }
    let tr = trend::analyze(&points)?;
    let fit = &tr.fit;
    let now = points.last().map(|p| p.v).unwrap_or(0.0);
    let span = (fit.t_last - fit.from_t).max(0.0);
    // Growth that has not yet added a few fds is noise, whatever the fit says.
    let risen = fit.slope * span >= MIN_RISE;
    Some(SeriesTrend {
        series: key.to_string(),
        label: label.to_string(),
        now,
        slope: fit.slope,
        slope_lo: fit.lo,
        slope_hi: fit.hi,
        growing: trend::is_growing(fit) && risen,
        model: match tr.model {
            trend::Model::Linear => "linear".into(),
            trend::Model::LowerEnvelope => "lower_envelope".into(),
        },
        span,
        ols_slope: tr.ols.as_ref().map(|o| o.slope),
    })
}

fn named_label(key: &str) -> String {
    match key.split_once(':') {
        Some(("netlink", proto)) => format!("netlink {proto} sockets"),
        Some(("tcp", state)) => format!("TCP sockets in {state}"),
        Some(("path", path)) => format!("open fds on {path}"),
        Some(("remote", ep)) => format!("connections to {ep}"),
        _ => key.to_string(),
    }
}

/// "+12.0/s (CI 11.6–12.4)"
pub fn format_slope(st: &SeriesTrend) -> String {
    format::slope_with_ci(st.slope, st.slope_lo, st.slope_hi)
}

fn describe_growth(st: &SeriesTrend) -> String {
    format!("{} {}", st.label, format_slope(st))
}

#[cfg(test)]
mod tests;

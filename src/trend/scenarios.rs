//! Synthetic series with known ground truth: the evidence that [`analyze`]
//! warns on leaks, early and accurately, and stays quiet otherwise, compared
//! with the Prometheus `predict_linear` baseline.
//!
//! Everything is deterministic (a seeded splitmix64). Values are integer fd
//! counts clamped to `[0, limit]` (the kernel refuses opens past the limit),
//! and `true_exhaustion_t` is the first sample at the limit.
//!
//! [`analyze`]: super::analyze

use std::cell::RefCell;
use std::fmt::Write as _;

use super::{analyze, eta, forecast_confirmed, ols_line, History, Point};

/// One synthetic series.
pub struct Scenario {
    pub name: &'static str,
    pub points: Vec<Point>,
    pub limit: f64,
    pub leak: bool,
    pub true_exhaustion_t: Option<f64>,
    pub leak_start_t: Option<f64>,
}

/// splitmix64: tiny, seeded, good enough for synthetic noise.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box–Muller).
    fn gauss(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// Build a scenario from a generator `f(t, rng) -> true count`.
fn build(
    name: &'static str,
    seed: u64,
    dt: f64,
    duration: f64,
    limit: f64,
    leak_start_t: Option<f64>,
    mut f: impl FnMut(f64, &mut Rng) -> f64,
) -> Scenario {
    let mut rng = Rng(seed);
    let n = (duration / dt).round() as usize;
    let points: Vec<Point> = (0..=n)
        .map(|i| {
            let t = i as f64 * dt;
            let v = f(t, &mut rng).round().clamp(0.0, limit);
            Point { t, v }
        })
        .collect();
    let true_exhaustion_t = points.iter().find(|p| p.v >= limit).map(|p| p.t);
    Scenario {
        name,
        points,
        limit,
        leak: leak_start_t.is_some(),
        true_exhaustion_t,
        leak_start_t,
    }
}

/// Pool sawtooth: grows from `base` by `amp` over 75 s, drains back over 15 s.
fn sawtooth(t: f64, base: f64, amp: f64) -> f64 {
    let phase = (t + 20.0) % 90.0;
    if phase < 75.0 {
        base + amp * phase / 75.0
    } else {
        base + amp * (90.0 - phase) / 15.0
    }
}

/// The ten scenarios. Leaks start after a quiet stretch, so the onset and the
/// pre-leak false alarms are tested too.
pub fn all() -> Vec<Scenario> {
    let lim = 1024.0;
    vec![
        build("steady", 1, 1.0, 3600.0, lim, None, |_, r| {
            300.0 + 1.5 * r.gauss()
        }),
        build("leak_fast", 2, 1.0, 1300.0, lim, Some(600.0), |t, r| {
            120.0 + 2.0 * r.gauss() + 1.5 * (t - 600.0).max(0.0)
        }),
        build("leak_slow", 3, 10.0, 19_000.0, lim, Some(600.0), |t, r| {
            150.0 + 1.5 * r.gauss() + 0.05 * (t - 600.0).max(0.0)
        }),
        build(
            "leak_slow_noisy",
            4,
            10.0,
            11_000.0,
            lim,
            Some(1200.0),
            |t, r| 100.0 + 25.0 * r.gauss() + 0.1 * (t - 1200.0).max(0.0),
        ),
        build("sawtooth_pool", 5, 1.0, 3600.0, lim, None, |t, r| {
            sawtooth(t, 200.0, 220.0) + 2.0 * r.gauss()
        }),
        build("sawtooth_leak", 6, 1.0, 6000.0, lim, Some(600.0), |t, r| {
            sawtooth(t, 200.0, 220.0) + 2.0 * r.gauss() + 0.12 * (t - 600.0).max(0.0)
        }),
        build("burst_release", 7, 1.0, 3000.0, lim, None, |t, r| {
            let burst = if t < 1000.0 {
                0.0
            } else if t < 1010.0 {
                550.0 * (t - 1000.0) / 10.0
            } else if t < 1310.0 {
                550.0
            } else if t < 1315.0 {
                550.0 * (1315.0 - t) / 5.0
            } else {
                0.0
            };
            150.0 + 1.5 * r.gauss() + burst
        }),
        build("step_then_flat", 8, 1.0, 3600.0, lim, None, |t, r| {
            (if t < 1200.0 { 250.0 } else { 650.0 }) + 2.0 * r.gauss()
        }),
        build("netlink_churn", 9, 1.0, 3600.0, lim, None, |_, r| {
            80.0 + (r.uniform() * 4.0).floor()
        }),
        build("netlink_leak", 10, 1.0, 4300.0, lim, Some(300.0), |t, r| {
            80.0 + (r.uniform() * 4.0).floor() + ((t - 300.0).max(0.0) / 4.0).floor()
        }),
    ]
}

/// What counts as a WARNING.
pub struct Thresholds {
    /// Usage fraction of the limit (0.80).
    pub warn_usage: f64,
    /// ETA in seconds (3600).
    pub warn_eta_s: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            warn_usage: 0.80,
            warn_eta_s: 3600.0,
        }
    }
}

/// Given the history so far and the limit: ETA in seconds, `None` = not growing.
pub type Detector = dyn Fn(&[Point], f64) -> Option<f64>;

/// fdwatch as the live watch runs it: the points go one by one through a
/// default [`History`], then [`analyze`] and [`eta`] with the last value as
/// `current`. No growth verdict before [`WARMUP_S`] of history.
///
/// When called again on a longer prefix of the same slice (as [`score`]
/// does), only the new points are pushed into a cached History: the result is
/// identical to pushing the whole prefix into a fresh one, and much cheaper.
pub fn fdwatch_detector(points: &[Point], limit: f64) -> Option<f64> {
    thread_local! {
        static CACHE: RefCell<Option<(usize, usize, History)>> = const { RefCell::new(None) };
    }
    let (first, last) = (points.first()?, points.last()?);
    let key = points.as_ptr() as usize;
    let pts = CACHE.with(|c| {
        let mut c = c.borrow_mut();
        let reuse = matches!(&*c, Some((k, pushed, _)) if *k == key && *pushed <= points.len());
        if !reuse {
            *c = Some((key, 0, History::default()));
        }
        let (_, pushed, h) = c.as_mut().expect("cache set above");
        for p in &points[*pushed..] {
            h.push(p.t, p.v);
        }
        *pushed = points.len();
        h.points()
    });
    if (last.t - first.t).is_nan() {
        return None;
    }
    let trend = analyze(&pts)?;
    let e = eta(&trend.fit, last.v, limit)?;
    forecast_confirmed(
        last.t - first.t,
        trend.fit.t_last - trend.fit.from_t,
        e.seconds,
    )
    .then_some(e.seconds)
}

/// The Prometheus baseline: OLS over the last `window_s` seconds, ETA =
/// (limit − predicted_now) / slope when slope > 0 (0 when already over) —
/// exactly when `predict_linear(v[window], eta_threshold) > limit` fires.
pub fn predict_linear_detector(window_s: f64) -> impl Fn(&[Point], f64) -> Option<f64> {
    move |points: &[Point], limit: f64| {
        let last = points.last()?;
        let from = last.t - window_s;
        let start = points.partition_point(|p| p.t < from);
        let (slope, level) = ols_line(&points[start..])?;
        (slope > 0.0).then(|| ((limit - level) / slope).max(0.0))
    }
}

/// How one detector did on one scenario.
#[derive(Debug, Clone)]
pub struct Score {
    pub scenario: &'static str,
    pub detector: String,
    /// Time of the first WARNING at or after the leak start.
    pub detected_at: Option<f64>,
    /// `detected_at − leak_start_t`.
    pub detection_latency_s: Option<f64>,
    /// (ETA − true remaining) / true remaining at detection.
    pub eta_rel_error_at_detection: Option<f64>,
    /// Same, at the first evaluation once a quarter of the headroom is used.
    pub eta_rel_error_at_quarter_headroom: Option<f64>,
    /// WARNING episodes on no-leak scenarios, or starting before the leak.
    pub false_alarms: usize,
}

/// Evaluate at most this many prefixes per scenario (every k-th point).
pub const MAX_EVALS: usize = 120;

/// Walk the series and call the detector on every k-th prefix
/// (k = ⌈n / [`MAX_EVALS`]⌉; leak scenarios stop at exhaustion).
///
/// WARNING = usage ≥ `warn_usage` or ETA ≤ `warn_eta_s`. A quarter of the
/// headroom (limit − level at leak start) is used a quarter of the way from
/// the leak start to the true exhaustion (all leaks here are linear).
/// `Score::detector` is left empty: use [`score_named`] to fill it.
pub fn score(s: &Scenario, detector: &Detector, th: &Thresholds) -> Score {
    score_named(s, "", detector, th)
}

/// [`score`] with the detector's name filled in.
pub fn score_named(s: &Scenario, name: &str, detector: &Detector, th: &Thresholds) -> Score {
    score_every(s, name, detector, th, s.points.len().div_ceil(MAX_EVALS))
}

/// [`score_named`] evaluating every `step`-th prefix (1 = every point).
pub fn score_every(
    s: &Scenario,
    name: &str,
    detector: &Detector,
    th: &Thresholds,
    step: usize,
) -> Score {
    let n = s.points.len();
    let step = step.max(1);
    let leak_start = if s.leak { s.leak_start_t } else { None };
    let t_quarter = match (leak_start, s.true_exhaustion_t) {
        (Some(a), Some(x)) => Some(a + 0.25 * (x - a)),
        _ => None,
    };
    let rel = |eta: Option<f64>, t: f64| -> Option<f64> {
        let x = s.true_exhaustion_t?;
        let remaining = x - t;
        (remaining > 0.0).then_some(())?;
        eta.map(|e| (e - remaining) / remaining)
    };
    let mut out = Score {
        scenario: s.name,
        detector: name.to_string(),
        detected_at: None,
        detection_latency_s: None,
        eta_rel_error_at_detection: None,
        eta_rel_error_at_quarter_headroom: None,
        false_alarms: 0,
    };
    let mut quarter_done = false;
    let mut warning_before = false;
    let mut i = step - 1;
    while i < n {
        let p = s.points[i];
        if leak_start.is_some() && s.true_exhaustion_t.is_some_and(|x| p.t > x) {
            break;
        }
        let e = detector(&s.points[..=i], s.limit);
        let warning = p.v >= th.warn_usage * s.limit || e.is_some_and(|e| e <= th.warn_eta_s);
        let before_leak = leak_start.is_none_or(|a| p.t < a);
        if warning && !warning_before && before_leak {
            out.false_alarms += 1;
        }
        if let Some(a) = leak_start {
            if warning && !before_leak && out.detected_at.is_none() {
                out.detected_at = Some(p.t);
                out.detection_latency_s = Some(p.t - a);
                out.eta_rel_error_at_detection = rel(e, p.t);
            }
        }
        if let Some(q) = t_quarter {
            if !quarter_done && p.t >= q {
                quarter_done = true;
                out.eta_rel_error_at_quarter_headroom = rel(e, p.t);
            }
        }
        warning_before = warning;
        i += step;
    }
    out
}

fn fmt_opt(x: Option<f64>, pct: bool) -> String {
    match x {
        None => "—".to_string(),
        Some(v) if pct => format!("{:+.1}%", v * 100.0),
        Some(v) => format!("{v:.0}"),
    }
}

/// The scores as a Markdown table.
pub fn markdown_table(scores: &[Score]) -> String {
    let mut s = String::from(
        "| scenario | detector | detected at (s) | latency (s) | ETA error at detection | ETA error at ¼ headroom | false alarms |\n\
         |---|---|---:|---:|---:|---:|---:|\n",
    );
    for sc in scores {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            sc.scenario,
            sc.detector,
            fmt_opt(sc.detected_at, false),
            fmt_opt(sc.detection_latency_s, false),
            fmt_opt(sc.eta_rel_error_at_detection, true),
            fmt_opt(sc.eta_rel_error_at_quarter_headroom, true),
            sc.false_alarms
        );
    }
    s
}

/// Name of the primary baseline (the classic `[1h]` alert).
pub const BASELINE: &str = "predict_linear[1h]";

/// Every scenario scored by fdwatch and by `predict_linear` over 1 h and 10 min.
pub fn run_all(th: &Thresholds) -> Vec<Score> {
    run_all_every(th, None)
}

/// [`run_all`] evaluating every `step`-th prefix (`None`: at most
/// [`MAX_EVALS`] per scenario).
pub fn run_all_every(th: &Thresholds, step: Option<usize>) -> Vec<Score> {
    let baseline_1h = predict_linear_detector(3600.0);
    let baseline_10m = predict_linear_detector(600.0);
    let mut out = Vec::new();
    for s in all() {
        let step = step.unwrap_or(s.points.len().div_ceil(MAX_EVALS));
        out.push(score_every(&s, "fdwatch", &fdwatch_detector, th, step));
        out.push(score_every(&s, BASELINE, &baseline_1h, th, step));
        out.push(score_every(
            &s,
            "predict_linear[10m]",
            &baseline_10m,
            th,
            step,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    /// Every target at once, on any resolution: the failures as text.
    fn check_targets(scenarios: &[Scenario], scores: &[Score]) -> Vec<String> {
        let mut bad = Vec::new();
        for s in scenarios {
            let ours = find(scores, s.name, "fdwatch");
            if !s.leak {
                if ours.false_alarms > 0 {
                    bad.push(format!("{}: {} false alarms", s.name, ours.false_alarms));
                }
                continue;
            }
            let err = ours.eta_rel_error_at_quarter_headroom;
            if ours.detected_at.is_none() || !err.is_some_and(|e| e.abs() <= 0.20) {
                bad.push(format!(
                    "{}: detected {:?}, ETA error {err:?}",
                    s.name, ours.detected_at
                ));
            }
            let base = find(scores, s.name, BASELINE).detected_at;
            if let (Some(o), Some(b)) = (ours.detected_at, base) {
                if o > b {
                    bad.push(format!("{}: fdwatch at {o}, baseline at {b}", s.name));
                }
            }
        }
        let total = |d: &str| -> usize {
            scores
                .iter()
                .filter(|s| s.detector == d)
                .map(|s| s.false_alarms)
                .sum()
        };
        if total("fdwatch") >= total(BASELINE) {
            bad.push(format!(
                "false alarms {} vs {}",
                total("fdwatch"),
                total(BASELINE)
            ));
        }
        bad
    }

    /// Every prefix, in release: `cargo test --release -- --ignored full_resolution`.
    #[test]
    #[ignore = "slow in debug: evaluates every prefix"]
    fn full_resolution() {
        let scenarios = all();
        let scores = run_all_every(&Thresholds::default(), Some(1));
        println!("{}", markdown_table(&scores));
        let bad = check_targets(&scenarios, &scores);
        assert!(bad.is_empty(), "{bad:#?}");
    }

    fn results() -> &'static (Vec<Scenario>, Vec<Score>) {
        static R: OnceLock<(Vec<Scenario>, Vec<Score>)> = OnceLock::new();
        R.get_or_init(|| (all(), run_all(&Thresholds::default())))
    }

    fn find<'a>(scores: &'a [Score], scenario: &str, detector: &str) -> &'a Score {
        scores
            .iter()
            .find(|s| s.scenario == scenario && s.detector == detector)
            .expect("score present")
    }

    #[test]
    fn scenarios_are_well_formed() {
        for s in all() {
            assert!(s.points.len() > 100, "{}", s.name);
            assert!(s.points.windows(2).all(|w| w[0].t < w[1].t), "{}", s.name);
            assert_eq!(s.leak, s.true_exhaustion_t.is_some(), "{}", s.name);
            assert_eq!(s.leak, s.leak_start_t.is_some(), "{}", s.name);
            if !s.leak {
                let max = s.points.iter().map(|p| p.v).fold(0.0, f64::max);
                assert!(max < 0.8 * s.limit, "{} reaches usage warning", s.name);
            }
        }
    }

    #[test]
    fn print_table() {
        let (_, scores) = results();
        println!("{}", markdown_table(scores));
    }

    #[test]
    fn fdwatch_no_false_warning_without_leak() {
        let (scenarios, scores) = results();
        for s in scenarios.iter().filter(|s| !s.leak) {
            let sc = find(scores, s.name, "fdwatch");
            assert_eq!(sc.false_alarms, 0, "{}", s.name);
        }
    }

    #[test]
    fn fdwatch_detects_every_leak_accurately() {
        let (scenarios, scores) = results();
        for s in scenarios.iter().filter(|s| s.leak) {
            let sc = find(scores, s.name, "fdwatch");
            assert!(sc.detected_at.is_some(), "{} not detected", s.name);
            let err = sc.eta_rel_error_at_quarter_headroom;
            assert!(
                err.is_some_and(|e| e.abs() <= 0.20),
                "{}: ETA error at quarter headroom {err:?}",
                s.name
            );
            assert_eq!(sc.false_alarms, 0, "{}: warned before the leak", s.name);
        }
    }

    #[test]
    fn fdwatch_at_least_as_early_as_baseline() {
        let (scenarios, scores) = results();
        for s in scenarios.iter().filter(|s| s.leak) {
            let ours = find(scores, s.name, "fdwatch").detected_at;
            let base = find(scores, s.name, BASELINE).detected_at;
            let (Some(o), b) = (ours, base) else {
                panic!("{}: fdwatch did not detect", s.name);
            };
            assert!(b.is_none_or(|b| o <= b), "{}: {o} vs {b:?}", s.name);
        }
    }

    #[test]
    fn fdwatch_fewer_false_alarms_than_baseline() {
        let (_, scores) = results();
        let total = |d: &str| -> usize {
            scores
                .iter()
                .filter(|s| s.detector == d)
                .map(|s| s.false_alarms)
                .sum()
        };
        assert!(
            total("fdwatch") < total(BASELINE),
            "{} vs {}",
            total("fdwatch"),
            total(BASELINE)
        );
    }

    #[test]
    fn baseline_matches_predict_linear() {
        // A clean line v = 100 + 2t: ETA to 1024 from t = 99 is (1024 − 298)/2.
        let pts: Vec<Point> = (0..100)
            .map(|i| Point {
                t: f64::from(i),
                v: 100.0 + 2.0 * f64::from(i),
            })
            .collect();
        let d = predict_linear_detector(3600.0);
        let e = d(&pts, 1024.0).expect("growing");
        assert!((e - 363.0).abs() < 1e-6, "{e}");
        let flat: Vec<Point> = (0..100)
            .map(|i| Point {
                t: f64::from(i),
                v: 5.0,
            })
            .collect();
        assert_eq!(d(&flat, 1024.0), None);
    }
}

#[cfg(test)]
mod debug {
    use super::*;

    #[test]
    #[ignore = "diagnostic"]
    fn trace() {
        let want = std::env::var("SCEN").unwrap_or_default();
        for s in all().into_iter().filter(|s| s.name == want) {
            let env = |k: &str, d: usize| {
                std::env::var(k)
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(d)
            };
            let step = env("STEP", (s.points.len() / 40).max(1));
            let from = env("FROM", step);
            let to = env("TO", s.points.len()).min(s.points.len());
            for i in (from..to).step_by(step) {
                let mut h = History::default();
                for p in &s.points[..=i] {
                    h.push(p.t, p.v);
                }
                let tr = analyze(&h.points());
                let e = fdwatch_detector(&s.points[..=i], s.limit);
                if let Some(tr) = tr {
                    println!(
                        "t={:6} v={:5} {:?} slope={:.4} [{:.4},{:.4}] lvl={:.0} from={:.0} n={} eta={:?} ols={:.4}",
                        s.points[i].t, s.points[i].v, tr.model, tr.fit.slope, tr.fit.lo, tr.fit.hi,
                        tr.fit.level_now, tr.fit.from_t, tr.fit.n, e.map(|x| x.round()), tr.ols.map_or(0.0, |o| o.slope)
                    );
                }
            }
        }
    }
}

//! Pure math on (time, value) series: no OS access, no I/O, no printing.
//!
//! The verdict-facing entry point is [`analyze`]: a robust (Theil–Sen) slope
//! with a confidence interval, fitted only since the last regime change, on
//! either the raw series or its lower envelope (for sawtooth series). [`eta`]
//! turns a fit into a time to exhaustion. [`History`] keeps bounded memory for
//! a watch of any length. [`ols`] is the Prometheus `predict_linear` baseline.
//! The method and its limits are described in `docs/trend.md`.

mod history;
pub mod scenarios;
mod stats;

pub use history::History;

use serde::Serialize;
use stats::{mad_mut, median_mut, norm_quantile, quantile_mut, t_quantile};

/// One sample: `t` in seconds (monotonic clock), `v` the fd count.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    pub t: f64,
    pub v: f64,
}

/// A straight-line fit with a confidence interval on its slope.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlopeFit {
    /// Units per second (point estimate).
    pub slope: f64,
    /// Lower bound of the slope's confidence interval (95% by default).
    pub lo: f64,
    /// Upper bound of the slope's confidence interval.
    pub hi: f64,
    /// Fitted value at `t_last`. For [`Model::LowerEnvelope`] trends from
    /// [`analyze`] this is the envelope line *plus the sawtooth's reach* (see
    /// [`analyze`]): the level the peaks get to, which is what hits the limit.
    pub level_now: f64,
    pub t_last: f64,
    /// First time used by the fit (after regime detection).
    pub from_t: f64,
    /// Points used.
    pub n: usize,
}

/// Which series the trend was fitted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Model {
    /// The raw series.
    Linear,
    /// The lower envelope (per-window minima) of a sawtooth series.
    LowerEnvelope,
}

/// The trend used by verdicts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trend {
    pub fit: SlopeFit,
    pub model: Model,
    /// Time of the first point of the current regime, when a change was found.
    pub regime_start: Option<f64>,
    /// OLS on the same points, as a baseline.
    pub ols: Option<SlopeFit>,
}

/// Time to exhaustion, in seconds from the last sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Eta {
    /// From the slope's point estimate.
    pub seconds: f64,
    /// From the upper end of the slope's interval.
    pub earliest: f64,
    /// From the lower end (`f64::INFINITY` when `lo <= 0`).
    pub latest: f64,
}

/// Theil–Sen uses at most this many points (evenly spaced by index), so at
/// most `MAX_TS_POINTS * (MAX_TS_POINTS - 1) / 2` pairwise slopes.
pub const MAX_TS_POINTS: usize = 120;

/// Default confidence level of [`analyze`]'s interval.
pub const CONFIDENCE: f64 = 0.95;

/// A regime change is accepted only once the new regime has this many points.
pub const MIN_REGIME_POINTS: usize = 30;

/// Points on the "before" side of a candidate regime change: a sawtooth
/// whose period is shorter than this is never mistaken for a level change.
pub const BEFORE_WINDOW: usize = 120;

/// Verdict layers should not issue growth verdicts on less history than this
/// (seconds): a sawtooth's first ramp is indistinguishable from a leak until
/// its first drop. The scenario detector applies it; `analyze` does not.
pub const WARMUP_S: f64 = 300.0;

/// Order-preserving map of a finite f64 to i64 (IEEE total order).
fn order_key(x: f64) -> i64 {
    let b = x.to_bits() as i64;
    b ^ ((((b >> 63) as u64) >> 1) as i64)
}

fn from_key(k: i64) -> f64 {
    f64::from_bits((k ^ ((((k >> 63) as u64) >> 1) as i64)) as u64)
}

/// `x > 0` (false for NaN).
fn is_pos(x: f64) -> bool {
    x > 0.0
}

/// Finite points sorted by time (stable).
fn clean(points: &[Point]) -> Vec<Point> {
    let mut out: Vec<Point> = points
        .iter()
        .copied()
        .filter(|p| p.t.is_finite() && p.v.is_finite())
        .collect();
    if out.windows(2).any(|w| w[0].t > w[1].t) {
        out.sort_by(|a, b| a.t.total_cmp(&b.t));
    }
    out
}

fn span(points: &[Point]) -> f64 {
    match (points.first(), points.last()) {
        (Some(a), Some(b)) => b.t - a.t,
        _ => 0.0,
    }
}

/// Evenly spaced (by index) subsample of at most `max` points, keeping the
/// first and the last.
fn subsample(points: &[Point], max: usize) -> Vec<Point> {
    let n = points.len();
    if n <= max || max < 2 {
        return points.to_vec();
    }
    (0..max).map(|i| points[i * (n - 1) / (max - 1)]).collect()
}

/// Theil–Sen slope (median of pairwise slopes) with Sen's distribution-free
/// confidence interval (ranks from the Kendall S variance, with the tie
/// correction). Pairs with equal times are skipped; non-finite points are
/// ignored; more than [`MAX_TS_POINTS`] points are subsampled evenly by index.
/// The intercept is the median of `v - slope * t` over all finite points.
/// `None` for fewer than 3 points or a zero time span.
pub fn theil_sen(points: &[Point], confidence: f64) -> Option<SlopeFit> {
    let pts = clean(points);
    theil_sen_sorted(&pts, confidence)
}

fn theil_sen_sorted(pts: &[Point], confidence: f64) -> Option<SlopeFit> {
    let n = pts.len();
    if n < 3 || !is_pos(span(pts)) {
        return None;
    }
    let conf = if confidence.is_finite() && confidence > 0.0 && confidence < 1.0 {
        confidence
    } else {
        CONFIDENCE
    };
    let t0 = pts[0].t;
    let sub = subsample(pts, MAX_TS_POINTS);
    let m = sub.len();
    // Slopes as order-preserving integer keys: selecting on i64 is several
    // times cheaper than on f64 with a comparison closure.
    let mut slopes: Vec<i64> = Vec::with_capacity(m * (m - 1) / 2);
    for i in 0..m {
        let (ti, vi) = (sub[i].t, sub[i].v);
        for pj in &sub[i + 1..] {
            let dt = pj.t - ti;
            if dt > 0.0 {
                let s = (pj.v - vi) / dt;
                if s.is_finite() {
                    slopes.push(order_key(s));
                }
            }
        }
    }
    let big_n = slopes.len();
    if big_n == 0 {
        return None;
    }
    // Kendall S variance with ties in v.
    let mf = m as f64;
    let mut var_s = mf * (mf - 1.0) * (2.0 * mf + 5.0);
    let mut vs: Vec<f64> = sub.iter().map(|p| p.v).collect();
    vs.sort_by(f64::total_cmp);
    let mut i = 0;
    while i < vs.len() {
        let mut j = i + 1;
        while j < vs.len() && vs[j] == vs[i] {
            j += 1;
        }
        let g = (j - i) as f64;
        if g > 1.0 {
            var_s -= g * (g - 1.0) * (2.0 * g + 5.0);
        }
        i = j;
    }
    var_s = (var_s / 18.0).max(0.0);
    let z = norm_quantile(0.5 + conf / 2.0);
    let c = z * var_s.sqrt();
    let nf = big_n as f64;
    let m1 = (nf - c) / 2.0;
    let m2 = (nf + c) / 2.0;
    let lo_idx = ((m1.floor() as i64) - 1).clamp(0, big_n as i64 - 1) as usize;
    let hi_idx = (m2.ceil() as i64).clamp(0, big_n as i64 - 1) as usize;

    let mid = big_n / 2;
    let slope = {
        let (left, m_val, _) = slopes.select_nth_unstable(mid);
        let m_val = from_key(*m_val);
        if big_n.is_multiple_of(2) {
            let below = left.iter().copied().max().map_or(m_val, from_key);
            (below + m_val) / 2.0
        } else {
            m_val
        }
    };
    // After the median selection, everything left of `mid` is <= and right is >=.
    let lo = if lo_idx < mid {
        from_key(*slopes[..mid].select_nth_unstable(lo_idx).1)
    } else {
        from_key(slopes[mid])
    };
    let hi = if hi_idx > mid {
        from_key(*slopes[mid + 1..].select_nth_unstable(hi_idx - mid - 1).1)
    } else {
        from_key(slopes[mid])
    };
    let mut offs: Vec<f64> = pts.iter().map(|p| p.v - slope * (p.t - t0)).collect();
    let intercept = median_mut(&mut offs)?;
    let t_last = pts[n - 1].t;
    let level_now = intercept + slope * (t_last - t0);
    if !slope.is_finite() || !level_now.is_finite() {
        return None;
    }
    Some(SlopeFit {
        slope,
        lo: lo.min(slope),
        hi: hi.max(slope),
        level_now,
        t_last,
        from_t: t0,
        n,
    })
}

/// Ordinary least squares, the baseline (what Prometheus `predict_linear`
/// fits). The interval is slope ± t(0.975, n−2)·SE. `level_now` is the line
/// at the last time, i.e. `predict_linear(v[w], 0)`. `None` for fewer than 3
/// points or a zero time span.
pub fn ols(points: &[Point]) -> Option<SlopeFit> {
    let pts = clean(points);
    let n = pts.len();
    if n < 3 || !is_pos(span(&pts)) {
        return None;
    }
    let (slope, level_now) = ols_line(&pts)?;
    let t_last = pts[n - 1].t;
    let nf = n as f64;
    let tbar = pts.iter().map(|p| p.t - t_last).sum::<f64>() / nf;
    let sxx: f64 = pts.iter().map(|p| (p.t - t_last - tbar).powi(2)).sum();
    let sse: f64 = pts
        .iter()
        .map(|p| (p.v - (level_now + slope * (p.t - t_last))).powi(2))
        .sum();
    let se = (sse / (nf - 2.0) / sxx).sqrt();
    let tq = t_quantile(0.975, nf - 2.0);
    let (lo, hi) = if se.is_finite() {
        (slope - tq * se, slope + tq * se)
    } else {
        (f64::NEG_INFINITY, f64::INFINITY)
    };
    Some(SlopeFit {
        slope,
        lo,
        hi,
        level_now,
        t_last,
        from_t: pts[0].t,
        n,
    })
}

/// OLS slope and the fitted value at the last time, on finite sorted points.
/// Needs 2 points and a non-zero span.
pub(crate) fn ols_line(pts: &[Point]) -> Option<(f64, f64)> {
    let n = pts.len();
    if n < 2 {
        return None;
    }
    let t_last = pts[n - 1].t;
    let nf = n as f64;
    let tbar = pts.iter().map(|p| p.t - t_last).sum::<f64>() / nf;
    let vbar = pts.iter().map(|p| p.v).sum::<f64>() / nf;
    let mut sxx = 0.0;
    let mut sxy = 0.0;
    for p in pts {
        let dt = p.t - t_last - tbar;
        sxx += dt * dt;
        sxy += dt * (p.v - vbar);
    }
    if !is_pos(sxx) {
        return None;
    }
    let slope = sxy / sxx;
    let level = vbar + slope * (0.0 - tbar);
    (slope.is_finite() && level.is_finite()).then_some((slope, level))
}

/// Growing: the slope's interval excludes zero on the positive side.
/// Whether a forecast may raise an alarm yet. A pool's first ramp looks
/// exactly like a leak until it drops, so before [`WARMUP_S`] of history a
/// forecast counts only when the limit is nearer than twice the time the
/// growth has already been watched: a ramp that reaches the limit before it
/// could plausibly turn over is dangerous whatever it is.
pub fn forecast_confirmed(history_span: f64, fit_span: f64, eta_s: f64) -> bool {
    history_span >= WARMUP_S || eta_s <= 2.0 * fit_span
}

pub fn is_growing(fit: &SlopeFit) -> bool {
    fit.lo > 0.0 && fit.slope > 0.0
}

/// Time until `limit` is reached, from the last sample.
///
/// The starting level is `max(current, fit.level_now)`: the fitted level is
/// robust to a momentary dip, and the current value is taken when it is
/// higher because the process can hit EMFILE at any sample above the line
/// (a burst on top of a leak makes exhaustion earlier, never later). A
/// non-finite `current` is ignored. `None` when the fit is not growing or the
/// inputs are not finite; zero when already at or over the limit.
pub fn eta(fit: &SlopeFit, current: f64, limit: f64) -> Option<Eta> {
    if !is_growing(fit) || !limit.is_finite() || !fit.level_now.is_finite() {
        return None;
    }
    let level = if current.is_finite() {
        current.max(fit.level_now)
    } else {
        fit.level_now
    };
    let room = limit - level;
    if room <= 0.0 {
        return Some(Eta {
            seconds: 0.0,
            earliest: 0.0,
            latest: 0.0,
        });
    }
    let seconds = room / fit.slope;
    let earliest = if fit.hi.is_finite() && fit.hi > 0.0 {
        room / fit.hi
    } else {
        0.0
    };
    let latest = if fit.lo > 0.0 {
        room / fit.lo
    } else {
        f64::INFINITY
    };
    Some(Eta {
        seconds,
        earliest: earliest.min(seconds),
        latest: latest.max(seconds),
    })
}

/// A fitted line `a + b (t - tref)` and the residual scale of its window.
#[derive(Debug, Clone, Copy)]
struct Line {
    a: f64,
    b: f64,
    tref: f64,
}

impl Line {
    fn at(&self, t: f64) -> f64 {
        self.a + self.b * (t - self.tref)
    }
}

/// Tukey's resistant line (medians of the outer thirds): O(n), robust, good
/// enough to compare the levels on both sides of a candidate change.
fn resistant_line(pts: &[Point], tref: f64, buf: &mut Vec<f64>) -> Line {
    let n = pts.len();
    let third = (n / 3).max(1);
    let med = |xs: &mut Vec<f64>, it: &mut dyn Iterator<Item = f64>| {
        xs.clear();
        xs.extend(it);
        median_mut(xs).unwrap_or(0.0)
    };
    let tl = med(buf, &mut pts[..third].iter().map(|p| p.t));
    let vl = med(buf, &mut pts[..third].iter().map(|p| p.v));
    let tr = med(buf, &mut pts[n - third..].iter().map(|p| p.t));
    let vr = med(buf, &mut pts[n - third..].iter().map(|p| p.v));
    let b = if tr > tl { (vr - vl) / (tr - tl) } else { 0.0 };
    let b = if b.is_finite() { b } else { 0.0 };
    let a = med(buf, &mut pts.iter().map(|p| p.v - b * (p.t - tref)));
    Line { a, b, tref }
}

fn residuals(pts: &[Point], line: &Line, out: &mut Vec<f64>) {
    out.clear();
    out.extend(pts.iter().map(|p| p.v - line.at(p.t)));
}

/// Index of the first point of the current regime, or `None` when the series
/// shows no level change. `points` must be finite and sorted by time (as
/// [`analyze`] prepares them).
///
/// About 32 candidates `k` are scanned from the newest (at least
/// [`MIN_REGIME_POINTS`] before the end) to the oldest. The "before" reference
/// is the older two thirds of the [`BEFORE_WINDOW`] points before `k` (so a
/// change between two candidates cannot bend it); the "after" window is up to
/// 60 points from `k`. `k` is a change when both hold:
/// * new territory: the after window's median is outside the 5–95% range of
///   the before values;
/// * a jump: the median of the after points' deviations from the before
///   line is beyond that line's residual IQR band by more than 3σ (σ from the
///   before IQR or the after window's MAD around its own resistant line,
///   whichever is larger) and by at least 2 fds.
///
/// The newest change wins; its position is refined to the split minimising
/// the total absolute deviation from the two lines, then moved past points
/// not yet on the after line (so a ramped step starts its regime after the
/// ramp). A sawtooth with a period shorter than the before window never
/// triggers it: its troughs and peaks are inside the range its swings make.
pub fn detect_regime_start(points: &[Point]) -> Option<usize> {
    let n = points.len();
    if n < 2 * MIN_REGIME_POINTS {
        return None;
    }
    let w = (n / 5).clamp(MIN_REGIME_POINTS, 60);
    let wb = (n / 2).min(BEFORE_WINDOW);
    let first = wb;
    let last = n - MIN_REGIME_POINTS;
    let stride = ((last - first) / 32).max(1);
    let mut buf = Vec::with_capacity(w);
    let mut rb = Vec::with_capacity(w);
    let mut ra = Vec::with_capacity(w);
    let mut k = last;
    loop {
        // The before side's line, band and range come from its older two
        // thirds: a change between candidates leaves up to a third of the
        // window past the change, which must not bend the reference.
        let before_all = &points[k.saturating_sub(wb)..k];
        let before = &before_all[..(before_all.len() * 2 / 3).max(1)];
        let after = &points[k..(k + w).min(n)];
        // New territory first (cheap): the after side's median lies outside
        // the before side's 5–95% range of values (a sawtooth's troughs never
        // do; the quantiles tolerate a few points past the change).
        buf.clear();
        buf.extend(after.iter().map(|p| p.v));
        let after_med = median_mut(&mut buf).unwrap_or(0.0);
        buf.clear();
        buf.extend(before.iter().map(|p| p.v));
        let bmin = quantile_mut(&mut buf, 0.05).unwrap_or(f64::NEG_INFINITY);
        let bmax = quantile_mut(&mut buf, 0.95).unwrap_or(f64::INFINITY);
        let up = after_med > bmax;
        let down = after_med < bmin;
        let mut significant = false;
        let (mut lb, mut la, mut level) = (None, None, (after_med, 0.0));
        if up || down {
            let tref = points[k].t;
            let l_b = resistant_line(before, tref, &mut buf);
            let l_a = resistant_line(after, tref, &mut buf);
            residuals(before, &l_b, &mut rb);
            residuals(after, &l_a, &mut ra);
            // The before side's band is its interquartile range, and its
            // noise the IQR / 1.349 (σ for Gaussian noise): unlike the MAD it
            // sees a sawtooth's drops even when the line fits the ramps.
            let q25 = quantile_mut(&mut rb, 0.25).unwrap_or(0.0);
            let q75 = quantile_mut(&mut rb, 0.75).unwrap_or(0.0);
            let sigma_b = (q75 - q25) / 1.349;
            let sigma_a = 1.4826 * mad_mut(&mut ra).unwrap_or(0.0);
            let sigma = sigma_b.max(sigma_a);
            // The jump: where the after points sit relative to the before
            // line's extrapolation (median), not the after line's intercept,
            // which is fragile where raw and downsampled points mix.
            buf.clear();
            buf.extend(after.iter().map(|p| p.v - l_b.at(p.t)));
            let jump = median_mut(&mut buf).unwrap_or(0.0);
            significant = jump.abs() >= 2.0
                && ((up && jump > q75 + 3.0 * sigma) || (down && jump < q25 - 3.0 * sigma));
            // The new level: median of the newest half of the after window
            // (the older half may still hold the transition).
            buf.clear();
            buf.extend(after[after.len() / 2..].iter().map(|p| p.v));
            level = (median_mut(&mut buf).unwrap_or(after_med), jump);
            lb = Some(l_b);
            la = Some(l_a);
        }
        if let (true, Some(lb), Some(la)) = (significant, lb, la) {
            let j = refine_split(points, k, wb, w, &lb, &la, level);
            // Not established yet: too few points on the new level.
            return (n - j >= MIN_REGIME_POINTS / 2).then_some(j);
        }
        if k < first + stride {
            return None;
        }
        k -= stride;
    }
}

/// The split in `[k - wb, k + w/2]` minimising Σ|v − before_line| before it
/// plus Σ|v − after_line| from it on (within `[k - wb, k + w)`), then moved
/// past the transition: points not yet within a quarter of the jump of the
/// new level (`level` = (after median, jump)), e.g. the ramp of a ramped step.
fn refine_split(
    points: &[Point],
    k: usize,
    wb: usize,
    w: usize,
    lb: &Line,
    la: &Line,
    level: (f64, f64),
) -> usize {
    let n = points.len();
    let s = k.saturating_sub(wb);
    let e = (k + w).min(n);
    let seg = &points[s..e];
    // cost(j) = prefix_b[j] + suffix_a[j]
    let mut cost_a: f64 = seg.iter().map(|p| (p.v - la.at(p.t)).abs()).sum();
    let mut cost_b = 0.0;
    let hi = (k + w / 2).min(e.saturating_sub(3)).max(s);
    let mut best = (f64::INFINITY, k);
    for (off, p) in seg.iter().enumerate() {
        let j = s + off;
        if j > hi {
            break;
        }
        let c = cost_b + cost_a;
        if c < best.0 {
            best = (c, j);
        }
        cost_b += (p.v - lb.at(p.t)).abs();
        cost_a -= (p.v - la.at(p.t)).abs();
    }
    let (new_level, jump) = level;
    let mut j = best.1;
    while j < hi && (points[j].v - new_level).abs() > jump.abs() / 4.0 {
        j += 1;
    }
    j
}

/// The lower envelope: the minimum point (its own time and value) of each
/// window of `window` seconds, windows aligned on the first point. The last
/// window is dropped when it covers less than 3/4 of `window` (a partial
/// window's minimum is biased up). Non-finite points are ignored.
pub fn lower_envelope(points: &[Point], window: f64) -> Vec<Point> {
    let pts = clean(points);
    lower_envelope_sorted(&pts, window)
}

fn lower_envelope_sorted(pts: &[Point], window: f64) -> Vec<Point> {
    let mut out: Vec<Point> = Vec::new();
    let Some(first) = pts.first() else {
        return out;
    };
    if !is_pos(window) || !window.is_finite() {
        return pts.to_vec();
    }
    let t0 = first.t;
    let mut cur_bucket = f64::NAN;
    for p in pts {
        let b = ((p.t - t0) / window).floor();
        if b != cur_bucket {
            cur_bucket = b;
            out.push(*p);
        } else if let Some(last) = out.last_mut() {
            if p.v < last.v {
                *last = *p;
            }
        }
    }
    if let Some(lp) = pts.last() {
        let start = t0 + cur_bucket * window;
        if lp.t - start < 0.75 * window && out.len() > 1 {
            out.pop();
        }
    }
    out
}

/// Sawtooth test on the residuals of a raw fit. Returns the mean period
/// (seconds) of the swings when the series is a sawtooth: the detrended
/// series crosses from above +h to below −h (h = MAD/2) at least 3 times, the
/// mean swing lasts at least 8 sampling intervals, and the swings' spread (1.4826·MAD) is at
/// least 3× the sample-to-sample noise (1.4826·MAD of first differences / √2,
/// on the newest half of the points: the raw part of a [`History`]), and the
/// series itself falls (by more than h) at least 3 times.
pub fn sawtooth_period(points: &[Point], fit: &SlopeFit) -> Option<f64> {
    let n = points.len();
    if n < 8 {
        return None;
    }
    let t0 = fit.from_t;
    let base = fit.level_now - fit.slope * (fit.t_last - t0);
    let mut r: Vec<f64> = points
        .iter()
        .map(|p| p.v - (base + fit.slope * (p.t - t0)))
        .collect();
    let mut tmp = r.clone();
    let mad_r = mad_mut(&mut tmp)?;
    if !is_pos(mad_r) {
        return None;
    }
    // Sample-to-sample noise from the newest half only: that is the raw part
    // of a History (its downsampled part alternates bucket minima and means).
    let mut d: Vec<f64> = points[n / 2..]
        .windows(2)
        .map(|w| w[1].v - w[0].v)
        .collect();
    let mad_d = mad_mut(&mut d).unwrap_or(0.0);
    let noise = 1.4826 * mad_d / std::f64::consts::SQRT_2;
    if 1.4826 * mad_r < 3.0 * noise {
        return None;
    }
    let h = mad_r / 2.0;
    let mut above = false;
    let mut downs = 0usize;
    for x in r.drain(..) {
        if x > h {
            above = true;
        } else if x < -h && above {
            above = false;
            downs += 1;
        }
    }
    if downs < 3 {
        return None;
    }
    // A sawtooth falls: each swing ends in a drop of the series itself. A
    // steady leak sampled in uneven steps (+8, +8, +6, ...) swings about its
    // line just as slowly, but never goes down; its lower envelope would
    // hide the leak.
    if falls(points, h) < 3 {
        return None;
    }
    // At least 8 sampling intervals per swing, the interval measured on the
    // newest half (a History's downsampled part adds crossings and gaps).
    let mut dts: Vec<f64> = points[n / 2..]
        .windows(2)
        .map(|w| w[1].t - w[0].t)
        .collect();
    let dt = median_mut(&mut dts).unwrap_or(0.0);
    let period = span(points) / downs as f64;
    (period >= 8.0 * dt).then_some(period)
}

/// Runs of falling values that fall by more than `min_drop` in all.
fn falls(points: &[Point], min_drop: f64) -> usize {
    let mut count = 0;
    let mut run = 0.0;
    for w in points.windows(2) {
        let d = w[1].v - w[0].v;
        if d < 0.0 {
            run -= d;
        } else {
            if run > min_drop {
                count += 1;
            }
            run = 0.0;
        }
    }
    count + usize::from(run > min_drop)
}

/// Slope-change check for the raw fit (a leak that starts, or stops, too
/// gradually to be a level change). Fits the most recent quarter of the
/// regime (at least 2 × [`MIN_REGIME_POINTS`] points), then keeps the longest
/// of {whole regime, recent half, recent quarter} whose slope lies inside the
/// recent quarter's interval: the longest stretch consistent with what the
/// series does now.
fn recent_consistent(seg: &[Point], full: SlopeFit) -> SlopeFit {
    let n = seg.len();
    if n / 4 < 2 * MIN_REGIME_POINTS {
        return full;
    }
    let Some(recent) = theil_sen_sorted(&seg[n - n / 4..], CONFIDENCE) else {
        return full;
    };
    let inside = |f: &SlopeFit| f.slope >= recent.lo && f.slope <= recent.hi;
    if inside(&full) {
        return full;
    }
    match theil_sen_sorted(&seg[n / 2..], CONFIDENCE) {
        Some(half) if inside(&half) => half,
        _ => recent,
    }
}

/// The robust, sawtooth-aware, regime-aware trend used by verdicts.
///
/// 1. Non-finite points are dropped and the rest sorted by time.
/// 2. [`detect_regime_start`]: after a level change, only the points since it
///    are used.
/// 3. Theil–Sen with its 95% interval on the raw points of the regime.
/// 4. The lower-envelope rule: when the raw fit's residuals are a sawtooth
///    ([`sawtooth_period`] finds slow swings much larger than the sample
///    noise), the series is explained by "a floor plus excursions above it",
///    so the trend is Theil–Sen on the [`lower_envelope`] with windows of 1.5
///    swing periods (each window holds a trough), widened to 3 sample gaps
///    where the history is downsampled (each window holds a bucket minimum).
///    Its `level_now` is the envelope line at the last time plus the 98th
///    percentile of the raw excess above the envelope line: the level the
///    peaks reach. With fewer than 3 envelope windows the envelope fit is
///    uninformative (interval −∞..∞, never growing).
///    Otherwise the raw fit is the trend, narrowed to the longest recent
///    stretch consistent with the current slope (see `recent_consistent`:
///    a leak that starts gradually after a flat stretch).
/// 5. OLS on the same regime is attached as the baseline.
///
/// `None` for fewer than 3 finite points or a zero time span.
pub fn analyze(points: &[Point]) -> Option<Trend> {
    let pts = clean(points);
    if pts.len() < 3 || !is_pos(span(&pts)) {
        return None;
    }
    let mut start = detect_regime_start(&pts).unwrap_or(0);
    let mut raw = theil_sen_sorted(&pts[start..], CONFIDENCE);
    if raw.is_none() {
        start = 0;
        raw = theil_sen_sorted(&pts, CONFIDENCE);
    }
    let raw = raw?;
    let seg = &pts[start..];
    let regime_start = (start > 0).then(|| seg[0].t);
    let ols = ols(seg);
    let Some(period) = sawtooth_period(seg, &raw) else {
        return Some(Trend {
            fit: recent_consistent(seg, raw),
            model: Model::Linear,
            regime_start,
            ols,
        });
    };
    // Windows of 1.5 swing periods, and at least 3 sample gaps so that each
    // window over the downsampled history holds a whole bucket (its minimum).
    let max_gap = seg.windows(2).map(|w| w[1].t - w[0].t).fold(0.0, f64::max);
    let env = lower_envelope_sorted(seg, (1.5 * period).max(3.0 * max_gap));
    let t_last = raw.t_last;
    let fit = match theil_sen_sorted(&env, CONFIDENCE) {
        Some(e) => {
            let base = e.level_now - e.slope * (e.t_last - e.from_t);
            let mut excess: Vec<f64> = seg
                .iter()
                .map(|p| p.v - (base + e.slope * (p.t - e.from_t)))
                .collect();
            let reach = quantile_mut(&mut excess, 0.98).unwrap_or(0.0).max(0.0);
            SlopeFit {
                level_now: base + e.slope * (t_last - e.from_t) + reach,
                t_last,
                from_t: seg[0].t,
                ..e
            }
        }
        None => SlopeFit {
            slope: 0.0,
            lo: f64::NEG_INFINITY,
            hi: f64::INFINITY,
            level_now: raw.level_now,
            t_last,
            from_t: seg[0].t,
            n: env.len(),
        },
    };
    Some(Trend {
        fit,
        model: Model::LowerEnvelope,
        regime_start,
        ols,
    })
}

#[cfg(test)]
mod tests;

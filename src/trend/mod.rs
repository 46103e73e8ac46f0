//! TEMPORARY stand-in with the agreed API; replaced by the robust module.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub t: f64,
    pub v: f64,
}
#[derive(Debug, Clone, PartialEq)]
pub struct SlopeFit {
    pub slope: f64,
    pub lo: f64,
    pub hi: f64,
    pub level_now: f64,
    pub t_last: f64,
    pub from_t: f64,
    pub n: usize,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    Linear,
    LowerEnvelope,
}
#[derive(Debug, Clone, PartialEq)]
pub struct Trend {
    pub fit: SlopeFit,
    pub model: Model,
    pub regime_start: Option<f64>,
    pub ols: Option<SlopeFit>,
}
pub fn ols(points: &[Point]) -> Option<SlopeFit> {
    let n = points.len();
    if n < 3 {
        return None;
    }
    let mt = points.iter().map(|p| p.t).sum::<f64>() / n as f64;
    let mv = points.iter().map(|p| p.v).sum::<f64>() / n as f64;
    let sxx: f64 = points.iter().map(|p| (p.t - mt).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let sxy: f64 = points.iter().map(|p| (p.t - mt) * (p.v - mv)).sum();
    let slope = sxy / sxx;
    let resid: f64 = points
        .iter()
        .map(|p| (p.v - mv - slope * (p.t - mt)).powi(2))
        .sum();
    let se = (resid / (n as f64 - 2.0).max(1.0) / sxx).sqrt();
    let last = points[n - 1].t;
    Some(SlopeFit {
        slope,
        lo: slope - 2.0 * se,
        hi: slope + 2.0 * se,
        level_now: mv + slope * (last - mt),
        t_last: last,
        from_t: points[0].t,
        n,
    })
}
pub fn theil_sen(points: &[Point], _confidence: f64) -> Option<SlopeFit> {
    ols(points)
}
pub fn analyze(points: &[Point]) -> Option<Trend> {
    let fit = ols(points)?;
    Some(Trend {
        fit: fit.clone(),
        model: Model::Linear,
        regime_start: None,
        ols: Some(fit),
    })
}
pub fn is_growing(fit: &SlopeFit) -> bool {
    fit.lo > 0.0 && fit.slope > 0.0
}
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Eta {
    pub seconds: f64,
    pub earliest: f64,
    pub latest: f64,
}
pub fn eta(fit: &SlopeFit, current: f64, limit: f64) -> Option<Eta> {
    if !is_growing(fit) {
        return None;
    }
    let room = (limit - current.max(fit.level_now)).max(0.0);
    Some(Eta {
        seconds: room / fit.slope,
        earliest: room / fit.hi,
        latest: room / fit.lo,
    })
}
#[derive(Debug, Clone, Default)]
pub struct History {
    points: Vec<Point>,
}
impl History {
    pub fn new(_recent: usize, _down: usize) -> Self {
        History { points: Vec::new() }
    }
    pub fn push(&mut self, t: f64, v: f64) {
        self.points.push(Point { t, v });
        if self.points.len() > 600 {
            self.points.remove(0);
        }
    }
    pub fn points(&self) -> Vec<Point> {
        self.points.clone()
    }
    pub fn len(&self) -> usize {
        self.points.len()
    }
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
    pub fn last(&self) -> Option<Point> {
        self.points.last().copied()
    }
    pub fn clear(&mut self) {
        self.points.clear()
    }
}

//! Bounded memory for a watch of any length.

use std::collections::VecDeque;

use super::Point;

/// One downsampled bucket: its minimum point (what the lower envelope needs)
/// and running sums for its mean point (the representative).
#[derive(Debug, Clone, Copy)]
struct Bucket {
    min: Point,
    sum_t: f64,
    sum_v: f64,
    count: usize,
}

impl Bucket {
    fn new(p: Point) -> Self {
        Bucket {
            min: p,
            sum_t: p.t,
            sum_v: p.v,
            count: 1,
        }
    }

    fn add(&mut self, p: Point) {
        if p.v < self.min.v {
            self.min = p;
        }
        self.sum_t += p.t;
        self.sum_v += p.v;
        self.count += 1;
    }

    fn merge(&mut self, other: &Bucket) {
        if other.min.v < self.min.v {
            self.min = other.min;
        }
        self.sum_t += other.sum_t;
        self.sum_v += other.sum_v;
        self.count += other.count;
    }

    /// The bucket's points in time order: the minimum, and the mean point
    /// (mean time, mean value) unless the bucket holds a single sample.
    fn emit(&self, out: &mut Vec<Point>) {
        if self.count <= 1 {
            out.push(self.min);
            return;
        }
        let n = self.count as f64;
        let mean = Point {
            t: self.sum_t / n,
            v: self.sum_v / n,
        };
        if mean.t < self.min.t {
            out.push(mean);
            out.push(self.min);
        } else {
            out.push(self.min);
            out.push(mean);
        }
    }

    fn emitted(&self) -> usize {
        if self.count <= 1 {
            1
        } else {
            2
        }
    }
}

/// Bounded memory for a watch of any length: a ring of the most recent raw
/// points plus a downsampled older history.
///
/// Points evicted from the ring are folded into buckets of `bucket_len` raw
/// samples. Each bucket keeps its **minimum point** (exact time and value, so
/// the lower envelope of old data is preserved exactly: the minimum of any
/// span of buckets is the minimum of the raw samples in it) and its **mean
/// point** (mean time, mean value) as the representative for the raw fit.
/// When the downsampled part would exceed its capacity, adjacent buckets are
/// merged pairwise (minimum of minima, summed means) and `bucket_len` doubles,
/// so memory stays bounded for any length of watch while the oldest data keeps
/// an ever coarser but minimum-exact summary.
///
/// Non-finite `t` or `v` are ignored by [`History::push`].
#[derive(Debug, Clone)]
pub struct History {
    recent: VecDeque<Point>,
    recent_capacity: usize,
    buckets: Vec<Bucket>,
    max_buckets: usize,
    current: Option<Bucket>,
    bucket_len: usize,
}

impl History {
    /// `recent_capacity` raw points plus at most `downsampled_capacity` points
    /// (two per bucket) of older history.
    pub fn new(recent_capacity: usize, downsampled_capacity: usize) -> Self {
        History {
            recent: VecDeque::with_capacity(recent_capacity.min(1 << 16)),
            recent_capacity,
            buckets: Vec::new(),
            // The partial bucket also emits up to two points.
            max_buckets: (downsampled_capacity / 2).saturating_sub(1),
            current: None,
            bucket_len: 2,
        }
    }

    /// Add one sample. Non-finite samples are dropped.
    pub fn push(&mut self, t: f64, v: f64) {
        if !t.is_finite() || !v.is_finite() {
            return;
        }
        let p = Point { t, v };
        if self.recent_capacity == 0 {
            self.downsample(p);
            return;
        }
        if self.recent.len() >= self.recent_capacity {
            if let Some(old) = self.recent.pop_front() {
                self.downsample(old);
            }
        }
        self.recent.push_back(p);
    }

    fn downsample(&mut self, p: Point) {
        if self.max_buckets == 0 {
            return; // no room for older history at all
        }
        match self.current.as_mut() {
            Some(b) => b.add(p),
            None => self.current = Some(Bucket::new(p)),
        }
        let full = self.current.is_some_and(|b| b.count >= self.bucket_len);
        if full {
            if let Some(b) = self.current.take() {
                self.buckets.push(b);
            }
            if self.buckets.len() > self.max_buckets {
                self.merge_pairs();
            }
        }
    }

    fn merge_pairs(&mut self) {
        let mut merged = Vec::with_capacity(self.buckets.len() / 2 + 1);
        for pair in self.buckets.chunks(2) {
            let mut b = pair[0];
            if let Some(second) = pair.get(1) {
                b.merge(second);
            }
            merged.push(b);
        }
        self.buckets = merged;
        self.bucket_len = self.bucket_len.saturating_mul(2);
    }

    /// Oldest first: the downsampled part (minimum and mean point of each
    /// bucket, in time order), then the recent raw points.
    pub fn points(&self) -> Vec<Point> {
        let mut out = Vec::with_capacity(self.len());
        for b in &self.buckets {
            b.emit(&mut out);
        }
        if let Some(b) = &self.current {
            b.emit(&mut out);
        }
        out.extend(self.recent.iter().copied());
        out
    }

    /// Number of points [`History::points`] returns.
    pub fn len(&self) -> usize {
        self.buckets.iter().map(Bucket::emitted).sum::<usize>()
            + self.current.as_ref().map_or(0, Bucket::emitted)
            + self.recent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most recent raw point.
    pub fn last(&self) -> Option<Point> {
        self.recent
            .back()
            .copied()
            .or_else(|| self.current.map(|b| b.min))
    }

    pub fn clear(&mut self) {
        self.recent.clear();
        self.buckets.clear();
        self.current = None;
        self.bucket_len = 2;
    }
}

impl Default for History {
    /// 600 recent raw points (10 minutes at 1 s) plus 600 downsampled points.
    fn default() -> Self {
        History::new(600, 600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_histories() {
        // (recent, downsampled, pushes, expected len)
        let cases = [
            (600, 600, 0, 0),
            (600, 600, 10, 10),
            (600, 600, 600, 600),
            (5, 0, 100, 5),
            (0, 10, 100, 10),
            (3, 10, 4, 4),
        ];
        for (r, d, n, want) in cases {
            let mut h = History::new(r, d);
            for i in 0..n {
                h.push(i as f64, i as f64);
            }
            assert!(h.len() <= want.max(r + d), "({r},{d},{n})");
            if n <= r {
                assert_eq!(h.len(), want, "({r},{d},{n})");
            }
            assert_eq!(h.points().len(), h.len());
            assert_eq!(h.is_empty(), h.points().is_empty());
        }
    }

    #[test]
    fn bounded_memory_and_order() {
        let mut h = History::default();
        for i in 0..1_000_000u32 {
            h.push(f64::from(i), f64::from(i % 97));
        }
        assert!(h.len() <= 1200, "len {}", h.len());
        let pts = h.points();
        assert_eq!(pts.len(), h.len());
        assert!(pts.windows(2).all(|w| w[0].t <= w[1].t), "time order");
        assert_eq!(
            h.last(),
            Some(Point {
                t: 999_999.0,
                v: f64::from(999_999u32 % 97)
            })
        );
        assert_eq!(pts[0].t, 0.0, "oldest sample's bucket starts at t = 0");
        h.clear();
        assert!(h.is_empty());
        assert_eq!(h.last(), None);
    }

    #[test]
    fn downsampled_minima_preserved() {
        // A sawtooth whose minima (period 50) rise by 1 each period: every
        // period's trough must survive downsampling as an exact point.
        let mut h = History::new(100, 200);
        let n = 20_000;
        for i in 0..n {
            let period = i / 50;
            let v = if i % 50 == 0 {
                period as f64
            } else {
                1000.0 + (i % 50) as f64
            };
            h.push(i as f64, v);
        }
        let pts = h.points();
        // Minimum of the stored points in any time range equals the raw one
        // as long as the range covers whole buckets; check the global minimum
        // and that the stored lower envelope keeps rising.
        assert_eq!(pts.iter().map(|p| p.v).fold(f64::INFINITY, f64::min), 0.0);
        let mins: Vec<f64> = pts.iter().filter(|p| p.v < 450.0).map(|p| p.v).collect();
        assert!(mins.len() >= 50, "troughs kept: {}", mins.len());
        assert!(mins.windows(2).all(|w| w[0] <= w[1]));
        assert!(pts.iter().all(|p| p.v < 1000.0 || p.v <= 1049.0));
    }

    #[test]
    fn ignores_non_finite() {
        let mut h = History::new(4, 4);
        h.push(f64::NAN, 1.0);
        h.push(1.0, f64::INFINITY);
        h.push(2.0, 3.0);
        assert_eq!(h.len(), 1);
        assert_eq!(h.last(), Some(Point { t: 2.0, v: 3.0 }));
    }
}

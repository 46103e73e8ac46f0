//! Small numeric helpers shared by the trend fits. Private to `trend`.

/// Median of `xs` (reorders `xs`). `None` when empty.
pub(crate) fn median_mut(xs: &mut [f64]) -> Option<f64> {
    let n = xs.len();
    if n == 0 {
        return None;
    }
    let mid = n / 2;
    let (lo_part, m, _) = xs.select_nth_unstable_by(mid, f64::total_cmp);
    let m = *m;
    if n % 2 == 1 {
        Some(m)
    } else {
        let below = lo_part.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some((below + m) / 2.0)
    }
}

/// The `q`-quantile (0..=1, nearest rank) of `xs` (reorders `xs`).
pub(crate) fn quantile_mut(xs: &mut [f64], q: f64) -> Option<f64> {
    let n = xs.len();
    if n == 0 {
        return None;
    }
    let q = if q.is_finite() {
        q.clamp(0.0, 1.0)
    } else {
        0.5
    };
    let idx = ((n - 1) as f64 * q).round() as usize;
    let (_, v, _) = xs.select_nth_unstable_by(idx.min(n - 1), f64::total_cmp);
    Some(*v)
}

/// Median absolute deviation from the median (not scaled). Reorders `xs`.
pub(crate) fn mad_mut(xs: &mut [f64]) -> Option<f64> {
    let m = median_mut(xs)?;
    for x in xs.iter_mut() {
        *x = (*x - m).abs();
    }
    median_mut(xs)
}

/// Standard normal quantile (Acklam's rational approximation, |error| < 1.2e-9).
pub(crate) fn norm_quantile(p: f64) -> f64 {
    if p.is_nan() {
        return f64::NAN;
    }
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const P_LOW: f64 = 0.02425;
    if p < P_LOW {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - P_LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    }
}

/// Student-t quantile for `df` degrees of freedom (Cornish–Fisher expansion
/// around the normal quantile; within ~1% for df >= 3, exact enough for a CI).
pub(crate) fn t_quantile(p: f64, df: f64) -> f64 {
    let z = norm_quantile(p);
    if !df.is_finite() || df <= 0.0 {
        return z;
    }
    let z3 = z * z * z;
    let z5 = z3 * z * z;
    let z7 = z5 * z * z;
    z + (z3 + z) / (4.0 * df)
        + (5.0 * z5 + 16.0 * z3 + 3.0 * z) / (96.0 * df * df)
        + (3.0 * z7 + 19.0 * z5 + 17.0 * z3 - 15.0 * z) / (384.0 * df * df * df)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_quantiles() {
        let cases: &[(&[f64], f64)] = &[
            (&[1.0], 1.0),
            (&[3.0, 1.0], 2.0),
            (&[5.0, 1.0, 3.0], 3.0),
            (&[4.0, 1.0, 3.0, 2.0], 2.5),
        ];
        for (xs, want) in cases {
            let mut v = xs.to_vec();
            assert_eq!(median_mut(&mut v), Some(*want), "{xs:?}");
        }
        assert_eq!(median_mut(&mut []), None);
        let mut v: Vec<f64> = (0..=100).map(f64::from).collect();
        assert_eq!(quantile_mut(&mut v, 0.9), Some(90.0));
        let mut v = vec![1.0, 2.0, 3.0, 4.0, 100.0];
        assert_eq!(mad_mut(&mut v), Some(1.0));
    }

    #[test]
    fn quantile_functions() {
        let cases = [(0.975, 1.959_964), (0.5, 0.0), (0.005, -2.575_829)];
        for (p, want) in cases {
            assert!((norm_quantile(p) - want).abs() < 1e-5, "{p}");
        }
        // t(0.975) for df = 5, 10, 30.
        let cases = [(5.0, 2.5706), (10.0, 2.2281), (30.0, 2.0423)];
        for (df, want) in cases {
            let got = t_quantile(0.975, df);
            assert!((got - want).abs() / want < 0.01, "df {df}: {got}");
        }
    }
}

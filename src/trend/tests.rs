use super::*;

fn line(n: usize, dt: f64, a: f64, b: f64) -> Vec<Point> {
    (0..n)
        .map(|i| {
            let t = i as f64 * dt;
            Point { t, v: a + b * t }
        })
        .collect()
}

fn p(t: f64, v: f64) -> Point {
    Point { t, v }
}

#[test]
fn theil_sen_table() {
    // (name, points, expected slope, expected level_now)
    let mut outlier = line(50, 1.0, 10.0, 0.5);
    outlier[25].v = 10_000.0;
    outlier[30].v = -500.0;
    let mut unsorted = line(20, 2.0, 0.0, 3.0);
    unsorted.reverse();
    let cases: Vec<(&str, Vec<Point>, f64, f64)> = vec![
        ("line", line(10, 1.0, 5.0, 2.0), 2.0, 23.0),
        ("flat", line(10, 1.0, 7.0, 0.0), 0.0, 7.0),
        ("falling", line(10, 1.0, 100.0, -1.0), -1.0, 91.0),
        ("outliers", outlier, 0.5, 34.5),
        ("unsorted", unsorted, 3.0, 114.0),
        ("big", line(5000, 1.0, 1.0, 0.25), 0.25, 1250.75),
    ];
    for (name, pts, slope, level) in cases {
        let f = theil_sen(&pts, 0.95).unwrap_or_else(|| panic!("{name}"));
        assert!((f.slope - slope).abs() < 1e-9, "{name}: {f:?}");
        assert!((f.level_now - level).abs() < 1e-6, "{name}: {f:?}");
        assert!(f.lo <= f.slope && f.slope <= f.hi, "{name}: {f:?}");
        assert_eq!(f.n, pts.len(), "{name}");
    }
}

#[test]
fn theil_sen_none_and_degenerate() {
    let nan = f64::NAN;
    let cases: Vec<(&str, Vec<Point>)> = vec![
        ("empty", vec![]),
        ("one", vec![p(0.0, 1.0)]),
        ("two", vec![p(0.0, 1.0), p(1.0, 2.0)]),
        ("same time", vec![p(1.0, 1.0), p(1.0, 2.0), p(1.0, 3.0)]),
        ("nan", vec![p(nan, 1.0), p(1.0, nan), p(2.0, 1.0)]),
        (
            "inf",
            vec![
                p(f64::INFINITY, 1.0),
                p(0.0, f64::NEG_INFINITY),
                p(2.0, 1.0),
            ],
        ),
    ];
    for (name, pts) in cases {
        assert_eq!(theil_sen(&pts, 0.95), None, "{name}");
        assert_eq!(ols(&pts), None, "{name}");
        assert_eq!(analyze(&pts), None, "{name}");
    }
    // Duplicate timestamps among others are fine.
    let pts = vec![p(0.0, 1.0), p(0.0, 2.0), p(1.0, 3.0), p(2.0, 5.0)];
    assert!(theil_sen(&pts, 0.95).is_some());
    // Silly confidence falls back to the default.
    let pts = line(20, 1.0, 0.0, 1.0);
    assert_eq!(theil_sen(&pts, f64::NAN), theil_sen(&pts, 0.95));
    // Huge values do not overflow into NaN results.
    let pts = vec![p(0.0, 1e308), p(1.0, -1e308), p(2.0, 1e308), p(3.0, 0.0)];
    if let Some(f) = theil_sen(&pts, 0.95) {
        assert!(f.slope.is_finite());
    }
    let _ = ols(&pts);
    let _ = analyze(&pts);
}

#[test]
fn theil_sen_interval_reacts_to_noise() {
    // Deterministic pseudo-noise (LCG).
    let mut s: u64 = 42;
    let mut noise = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 2.0
    };
    let noisy_flat: Vec<Point> = (0..200)
        .map(|i| p(i as f64, 100.0 + 10.0 * noise()))
        .collect();
    let f = theil_sen(&noisy_flat, 0.95).unwrap();
    assert!(f.lo < 0.0 && f.hi > 0.0, "flat noise: {f:?}");
    assert!(!is_growing(&f));
    let noisy_leak: Vec<Point> = (0..200)
        .map(|i| p(i as f64, 100.0 + 0.5 * i as f64 + 10.0 * noise()))
        .collect();
    let f = theil_sen(&noisy_leak, 0.95).unwrap();
    assert!(is_growing(&f), "{f:?}");
    assert!((f.slope - 0.5).abs() < 0.05, "{f:?}");
    // Integer-valued constant series (all ties) is not growing.
    let f = theil_sen(&line(100, 1.0, 42.0, 0.0), 0.95).unwrap();
    assert!(!is_growing(&f), "{f:?}");
}

#[test]
fn ols_table() {
    let cases = [
        ("line", line(10, 1.0, 5.0, 2.0), 2.0, 23.0),
        ("flat", line(10, 1.0, 7.0, 0.0), 0.0, 7.0),
        ("falling", line(5, 10.0, 0.0, -0.1), -0.1, -4.0),
    ];
    for (name, pts, slope, level) in cases {
        let f = ols(&pts).unwrap();
        assert!((f.slope - slope).abs() < 1e-9, "{name}: {f:?}");
        assert!((f.level_now - level).abs() < 1e-9, "{name}: {f:?}");
        assert!(
            (f.lo - slope).abs() < 1e-6 && (f.hi - slope).abs() < 1e-6,
            "{name}"
        );
    }
    // CI width for y = x + (-1, 1, -1, ...): known SE.
    let pts: Vec<Point> = (0..10)
        .map(|i| p(i as f64, i as f64 + if i % 2 == 0 { -1.0 } else { 1.0 }))
        .collect();
    let f = ols(&pts).unwrap();
    assert!(f.lo < f.slope && f.slope < f.hi);
    assert!(f.hi - f.lo < 1.0);
}

#[test]
fn eta_table() {
    let fit = |slope: f64, lo: f64, hi: f64, level: f64| SlopeFit {
        slope,
        lo,
        hi,
        level_now: level,
        t_last: 0.0,
        from_t: 0.0,
        n: 10,
    };
    // (name, fit, current, limit, expected (seconds, earliest, latest))
    type Case = (&'static str, SlopeFit, f64, f64, Option<(f64, f64, f64)>);
    let cases: Vec<Case> = vec![
        (
            "basic",
            fit(2.0, 1.0, 4.0, 100.0),
            100.0,
            1100.0,
            Some((500.0, 250.0, 1000.0)),
        ),
        (
            "current above fit",
            fit(2.0, 1.0, 4.0, 100.0),
            300.0,
            1100.0,
            Some((400.0, 200.0, 800.0)),
        ),
        (
            "current below fit",
            fit(2.0, 1.0, 4.0, 100.0),
            50.0,
            1100.0,
            Some((500.0, 250.0, 1000.0)),
        ),
        (
            "nan current",
            fit(2.0, 1.0, 4.0, 100.0),
            f64::NAN,
            1100.0,
            Some((500.0, 250.0, 1000.0)),
        ),
        (
            "at limit",
            fit(2.0, 1.0, 4.0, 1100.0),
            0.0,
            1100.0,
            Some((0.0, 0.0, 0.0)),
        ),
        (
            "over limit",
            fit(2.0, 1.0, 4.0, 10.0),
            2000.0,
            1100.0,
            Some((0.0, 0.0, 0.0)),
        ),
        (
            "not growing",
            fit(2.0, -1.0, 4.0, 100.0),
            100.0,
            1100.0,
            None,
        ),
        ("falling", fit(-2.0, -3.0, -1.0, 100.0), 100.0, 1100.0, None),
        (
            "infinite hi",
            fit(2.0, 1.0, f64::INFINITY, 100.0),
            100.0,
            1100.0,
            Some((500.0, 0.0, 1000.0)),
        ),
        (
            "nan limit",
            fit(2.0, 1.0, 4.0, 100.0),
            100.0,
            f64::NAN,
            None,
        ),
        (
            "nan slope",
            fit(f64::NAN, 1.0, 4.0, 100.0),
            100.0,
            1100.0,
            None,
        ),
    ];
    for (name, f, cur, lim, want) in cases {
        let got = eta(&f, cur, lim).map(|e| (e.seconds, e.earliest, e.latest));
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn is_growing_table() {
    let f = |slope: f64, lo: f64| SlopeFit {
        slope,
        lo,
        hi: slope.abs() * 2.0,
        level_now: 0.0,
        t_last: 0.0,
        from_t: 0.0,
        n: 3,
    };
    let cases = [
        (1.0, 0.5, true),
        (1.0, 0.0, false),
        (1.0, -0.5, false),
        (0.0, 0.0, false),
        (f64::NAN, 1.0, false),
        (1.0, f64::NAN, false),
    ];
    for (slope, lo, want) in cases {
        assert_eq!(is_growing(&f(slope, lo)), want, "{slope} {lo}");
    }
}

fn lcg_noise(seed: u64) -> impl FnMut() -> f64 {
    let mut s = seed;
    move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 2.0
    }
}

#[test]
fn analyze_table() {
    let mut nz = lcg_noise(7);
    // (name, series, model, growing, slope range, regime change expected)
    type Case = (&'static str, Vec<Point>, Model, bool, (f64, f64), bool);
    let leak: Vec<Point> = (0..600)
        .map(|i| p(i as f64, 100.0 + 0.5 * i as f64 + 2.0 * nz()))
        .collect();
    let saw: Vec<Point> = (0..900)
        .map(|i| p(i as f64, 200.0 + 3.0 * (i % 60) as f64 + nz()))
        .collect();
    let saw_leak: Vec<Point> = (0..900)
        .map(|i| {
            p(
                i as f64,
                200.0 + 3.0 * (i % 60) as f64 + 0.2 * i as f64 + nz(),
            )
        })
        .collect();
    let step: Vec<Point> = (0..900)
        .map(|i| p(i as f64, if i < 600 { 100.0 } else { 400.0 } + nz()))
        .collect();
    let restart: Vec<Point> = (0..900)
        .map(|i| {
            let v = if i < 500 {
                100.0 + 0.5 * i as f64
            } else {
                50.0 + 0.5 * (i - 500) as f64
            };
            p(i as f64, v + nz())
        })
        .collect();
    let cases: Vec<Case> = vec![
        (
            "steady",
            line(300, 1.0, 50.0, 0.0),
            Model::Linear,
            false,
            (-0.01, 0.01),
            false,
        ),
        ("leak", leak, Model::Linear, true, (0.45, 0.55), false),
        (
            "sawtooth",
            saw,
            Model::LowerEnvelope,
            false,
            (-0.05, 0.05),
            false,
        ),
        (
            "sawtooth leak",
            saw_leak,
            Model::LowerEnvelope,
            true,
            (0.15, 0.25),
            false,
        ),
        ("step", step, Model::Linear, false, (-0.05, 0.05), true),
        ("restart", restart, Model::Linear, true, (0.4, 0.6), true),
    ];
    for (name, pts, model, growing, (lo, hi), regime) in cases {
        let tr = analyze(&pts).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(tr.model, model, "{name}: {tr:?}");
        assert_eq!(is_growing(&tr.fit), growing, "{name}: {tr:?}");
        assert!(tr.fit.slope >= lo && tr.fit.slope <= hi, "{name}: {tr:?}");
        assert_eq!(tr.regime_start.is_some(), regime, "{name}: {tr:?}");
        assert!(tr.ols.is_some(), "{name}");
    }
}

#[test]
fn analyze_never_panics_on_odd_input() {
    let nan = f64::NAN;
    let inf = f64::INFINITY;
    let mut nz = lcg_noise(3);
    let mut shuffled: Vec<Point> = (0..500)
        .map(|i| p(((i * 7919) % 500) as f64, nz()))
        .collect();
    shuffled.extend((0..50).map(|i| p(i as f64, nan)));
    let cases: Vec<Vec<Point>> = vec![
        vec![],
        vec![p(nan, nan); 100],
        vec![p(1.0, 5.0); 100],
        (0..100)
            .map(|i| p(i as f64, if i % 3 == 0 { inf } else { 1.0 }))
            .collect(),
        (0..100).map(|i| p((i / 10) as f64, i as f64)).collect(),
        (0..100).map(|i| p(-(i as f64), i as f64)).collect(),
        shuffled,
        (0..2000)
            .map(|i| p(i as f64 * 1e-9, 1e300 * nz()))
            .collect(),
        (0..2000).map(|i| p(1e15 + i as f64, i as f64)).collect(),
    ];
    for pts in cases {
        if let Some(tr) = analyze(&pts) {
            let _ = eta(&tr.fit, 0.0, 1024.0);
            assert!(tr.fit.lo <= tr.fit.hi || tr.fit.lo.is_nan() || tr.fit.hi.is_nan());
        }
        let _ = lower_envelope(&pts, 10.0);
        let _ = detect_regime_start(&clean(&pts));
    }
}

#[test]
fn lower_envelope_table() {
    let pts: Vec<Point> = (0..40)
        .map(|i| p(i as f64, (i % 10) as f64 + i as f64 / 10.0))
        .collect();
    let env = lower_envelope(&pts, 10.0);
    assert_eq!(env.len(), 4);
    for (k, e) in env.iter().enumerate() {
        assert_eq!(e.t, 10.0 * k as f64);
    }
    // Partial last window is dropped.
    assert_eq!(lower_envelope(&pts[..35], 10.0).len(), 3);
    assert!(lower_envelope(&[], 10.0).is_empty());
    assert_eq!(lower_envelope(&pts, f64::NAN).len(), 40);
}

/// CPU time of the calling thread (test-only; `libc` is already a dependency).
fn thread_cpu_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Cost of one `analyze` on a full default History (1,200 points).
/// `cargo test --release -- --ignored --nocapture analyze_cost`
#[test]
#[ignore = "timing: run explicitly in release"]
fn analyze_cost() {
    let mut nz = lcg_noise(11);
    type Shape = (&'static str, Box<dyn Fn(f64, f64) -> f64>);
    let shapes: Vec<Shape> = vec![
        ("linear leak", Box::new(|t, n| 100.0 + 0.05 * t + 3.0 * n)),
        (
            "sawtooth leak",
            Box::new(|t, n| 200.0 + 3.0 * (t % 60.0) + 0.01 * t + n),
        ),
        ("flat", Box::new(|_, n| 300.0 + 2.0 * n)),
    ];
    for (name, f) in shapes {
        let mut h = History::default();
        // Long enough to have merged buckets, then until the History is
        // (nearly) at its 1,200-point capacity.
        let mut i = 0u32;
        while i < 20_000 || h.len() < 1_195 {
            let t = f64::from(i);
            h.push(t, f(t, nz()).round());
            i += 1;
        }
        let pts = h.points();
        let iters = 2000;
        let start = std::time::Instant::now();
        let cpu0 = thread_cpu_s();
        let mut sink = 0.0;
        for _ in 0..iters {
            sink += analyze(std::hint::black_box(&pts)).map_or(0.0, |t| t.fit.slope);
        }
        let per = start.elapsed().as_secs_f64() / iters as f64 * 1e6;
        let cpu = (thread_cpu_s() - cpu0) / iters as f64 * 1e6;
        println!(
            "analyze on {} points ({name}): {per:.0} µs wall, {cpu:.0} µs thread CPU (sink {sink:.3})",
            pts.len()
        );
    }
}

/// A long watch: the History is downsampled; the lower envelope of a leaking
/// sawtooth must still be found and fitted without bias.
#[test]
fn analyze_long_downsampled_sawtooth_leak() {
    let mut nz = lcg_noise(12);
    let mut h = History::default();
    let mut i = 0u32;
    while i < 20_000 || h.len() < 1_195 {
        let t = f64::from(i);
        h.push(t, (200.0 + 3.0 * (t % 60.0) + 0.01 * t + nz()).round());
        i += 1;
    }
    let tr = analyze(&h.points()).expect("trend");
    assert_eq!(tr.model, Model::LowerEnvelope, "{tr:?}");
    assert!((tr.fit.slope - 0.01).abs() < 0.001, "{tr:?}");
    assert!(is_growing(&tr.fit));
}

/// Issue 15: a steady leak sampled every 0.2 s whose steps are quantised
/// (mostly +8, a +6 every eighth sample as the leaker's sleeps drift) has
/// residuals that swing slowly by ~2 fds. It never falls, so it is no
/// sawtooth: the raw fit must stay (the lower envelope said "not growing").
#[test]
fn quantised_steps_of_a_steady_leak_are_not_a_sawtooth() {
    let counts = [
        5u32, 7, 9, 17, 25, 33, 41, 49, 57, 65, 71, 79, 87, 95, 103, 111, 119, 127, 135, 143, 151,
        159, 165, 173, 181, 189, 197, 205, 213, 221, 229, 237, 245, 253, 261, 269, 275, 283, 291,
        299,
    ];
    let pts: Vec<Point> = counts
        .iter()
        .enumerate()
        .map(|(i, &v)| p(i as f64 * 0.2, v as f64))
        .collect();
    let tr = analyze(&pts).expect("a trend");
    assert_eq!(tr.model, Model::Linear, "{tr:?}");
    assert!(is_growing(&tr.fit), "{tr:?}");
    assert!((tr.fit.slope - 40.0).abs() < 2.0, "{tr:?}");
}

//! Numbers in words: durations, rates, sizes. Shared by verdicts and reports.

/// `~1m20s`, `~1h05m`, `~3d4h`, `~45s`, `now`.
pub fn approx_duration(secs: f64) -> String {
    if !secs.is_finite() {
        return "never".into();
    }
    if secs < 1.0 {
        return "now".into();
    }
    let s = secs.round() as u64;
    let (d, h, m, sec) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60, s % 60);
    if d > 0 {
        format!("~{d}d{h}h")
    } else if h > 0 {
        format!("~{h}h{m:02}m")
    } else if m > 0 {
        format!("~{m}m{sec:02}s")
    } else {
        format!("~{sec}s")
    }
}

/// A per-second rate in the unit that reads best: `12.0/s`, `3.1/min`, `0.8/h`.
pub fn rate(per_s: f64) -> String {
    let (v, unit) = rate_unit(per_s);
    format!("{v:.1}/{unit}")
}

fn rate_unit(per_s: f64) -> (f64, &'static str) {
    let a = per_s.abs();
    if a >= 1.0 {
        (per_s, "s")
    } else if a * 60.0 >= 1.0 {
        (per_s * 60.0, "min")
    } else {
        (per_s * 3600.0, "h")
    }
}

/// `+12.0/s (CI 11.6–12.4)`, all in the unit of the estimate.
pub fn slope_with_ci(slope: f64, lo: f64, hi: f64) -> String {
    let (_, unit) = rate_unit(slope);
    let k = match unit {
        "s" => 1.0,
        "min" => 60.0,
        _ => 3600.0,
    };
    if !(lo.is_finite() && hi.is_finite()) {
        return format!("{:+.1}/{unit} (CI unbounded)", slope * k);
    }
    format!("{:+.1}/{unit} (CI {:.1}–{:.1})", slope * k, lo * k, hi * k)
}

/// `4,180` (rounded, thousands separated): for rates a person reads.
pub fn thousands(x: f64) -> String {
    let n = x.round().max(0.0) as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `12.0 KiB`, `3.4 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for (secs, want) in [
            (0.2, "now"),
            (45.0, "~45s"),
            (80.0, "~1m20s"),
            (3900.0, "~1h05m"),
            (3.0 * 86400.0 + 4.0 * 3600.0, "~3d4h"),
        ] {
            assert_eq!(approx_duration(secs), want);
        }
        assert_eq!(approx_duration(f64::INFINITY), "never");
    }

    #[test]
    fn rates_and_slopes() {
        assert_eq!(rate(12.0), "12.0/s");
        assert_eq!(rate(3.1 / 60.0), "3.1/min");
        assert_eq!(rate(0.8 / 3600.0), "0.8/h");
        assert_eq!(slope_with_ci(12.0, 11.6, 12.4), "+12.0/s (CI 11.6–12.4)");
        assert_eq!(slope_with_ci(0.05, 0.04, 0.06), "+3.0/min (CI 2.4–3.6)");
    }

    #[test]
    fn thousands_separated() {
        assert_eq!(thousands(4180.4), "4,180");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1234567.0), "1,234,567");
    }

    #[test]
    fn sizes() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(12 * 1024), "12.0 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 + 400 * 1024), "3.4 MiB");
    }
}

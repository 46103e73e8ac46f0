//! The synthetic trend scenarios (src/trend/scenarios.rs) written as CSV and
//! run through `fdwatch analyze`: the full verdict code, from files, reaches
//! the ground truth: every leak warned before the limit, no warning without one.

mod common;

use fdwatch::trend::scenarios;

#[test]
fn synthetic_scenarios_through_analyze() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_790_000_000.0;
    let mut report = Vec::new();
    for sc in scenarios::all() {
        let path = dir.path().join(format!("{}.csv", sc.name));
        let mut csv = String::from("unix_time,fds,soft_limit\n");
        for p in &sc.points {
            csv.push_str(&format!(
                "{:.3},{},{}\n",
                t0 + p.t,
                p.v.round().max(0.0),
                sc.limit
            ));
        }
        std::fs::write(&path, csv).unwrap();
        let out = common::fdwatch(&[
            "analyze",
            "--json",
            "--warn-usage",
            "80%",
            "--warn-eta",
            "1h",
            path.to_str().unwrap(),
        ]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("{}: {e}: {}", sc.name, String::from_utf8_lossy(&out.stderr))
        });
        let series = &v["series"][0];
        let first_warning = series["first_warning"].as_f64().map(|t| t - t0);
        // A held-back forecast inside --crit-eta warns, saying it is
        // unconfirmed (docs/trend.md): the first WARNING that is not held
        // back is the one a leak must earn.
        let spans = series["timeline"].as_array().cloned().unwrap_or_default();
        let unconfirmed =
            |sp: &serde_json::Value| sp["reason"].as_str().unwrap_or("").contains("unconfirmed");
        let first_confirmed = spans
            .iter()
            .find(|sp| sp["level"] != "OK" && !unconfirmed(sp))
            .and_then(|sp| sp["from"].as_f64())
            .map(|t| t - t0);
        report.push(format!(
            "{}: first warning {:?}, first confirmed {:?}, truth: leak={} exhaustion={:?}",
            sc.name, first_warning, first_confirmed, sc.leak, sc.true_exhaustion_t
        ));
        if sc.leak {
            let w = first_warning.unwrap_or_else(|| panic!("{}: leak never warned", sc.name));
            let end = sc
                .true_exhaustion_t
                .expect("a leak scenario reaches the limit");
            assert!(
                w < end,
                "{}: warned at {w:.0}s, limit at {end:.0}s",
                sc.name
            );
            if let Some(start) = sc.leak_start_t {
                let c = first_confirmed.unwrap_or(f64::INFINITY);
                assert!(
                    c >= start,
                    "{}: a confirmed alarm at {c:.0}s before the leak began at {start:.0}s",
                    sc.name
                );
            }
        } else {
            // No page without a leak. A held-back forecast inside --crit-eta
            // warns (docs/trend.md), so a pool's first ramp may warn, saying
            // it is unconfirmed; a confirmed forecast must never fire.
            assert!(
                series["first_critical"].is_null(),
                "{}: false CRITICAL at {:?}",
                sc.name,
                series["first_critical"]
            );
            for sp in spans.iter().filter(|sp| sp["level"] == "WARNING") {
                let reason = sp["reason"].as_str().unwrap_or("");
                assert!(
                    unconfirmed(sp),
                    "{}: false WARNING at {:?}: {reason}",
                    sc.name,
                    sp["from"].as_f64().map(|t| t - t0)
                );
            }
            assert_eq!(
                series["level"], "OK",
                "{}: ends {}",
                sc.name, series["level"]
            );
        }
    }
    eprintln!("{}", report.join("\n"));
}

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
        report.push(format!(
            "{}: first warning {:?}, truth: leak={} exhaustion={:?}",
            sc.name, first_warning, sc.leak, sc.true_exhaustion_t
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
                assert!(
                    w >= start,
                    "{}: warned at {w:.0}s before the leak began at {start:.0}s",
                    sc.name
                );
            }
        } else {
            assert!(
                first_warning.is_none(),
                "{}: false warning at {first_warning:?}",
                sc.name
            );
        }
    }
    eprintln!("{}", report.join("\n"));
}

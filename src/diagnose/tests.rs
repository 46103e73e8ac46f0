//! Verdicts on synthetic sample sequences (no OS).

use super::*;
use crate::sample::{Backend, Counted, FdLimits, SystemFiles, SCHEMA_VERSION};

fn sample(t: f64, kinds: &[(FdKind, u64)], soft: u64) -> Sample {
    let kinds: BTreeMap<FdKind, u64> = kinds.iter().copied().collect();
    Sample {
        schema: SCHEMA_VERSION,
        backend: Backend::Proc,
        pid: 42,
        comm: "x".into(),
        start_time: 7,
        unix_time: 1_700_000_000.0 + t,
        mono_time: t,
        fds: kinds.values().sum(),
        limits: FdLimits {
            soft: Some(soft),
            hard: Some(soft * 4),
        },
        system: SystemFiles {
            allocated: 1000,
            unused: 0,
            max: 1 << 40,
            nr_open: 1 << 20,
        },
        kinds,
        tcp_states: BTreeMap::new(),
        netlink_protocols: BTreeMap::new(),
        unix_types: BTreeMap::new(),
        repeated_paths: vec![],
        remote_endpoints: vec![],
        deleted_bytes: 0,
        new_inodes: BTreeMap::new(),
        activity: Default::default(),
        vanished: 0,
        inodes: vec![],
    }
}

fn run(samples: impl IntoIterator<Item = Sample>) -> Verdict {
    let mut tr = Tracker::new();
    for s in samples {
        tr.observe(&s);
    }
    tr.verdict(&Thresholds::default())
}

#[test]
fn steady_is_ok_and_not_growing() {
    let v = run((0..30).map(|i| {
        sample(
            i as f64,
            &[(FdKind::Regular, 50), (FdKind::Pipe, 4 + (i % 2))],
            1024,
        )
    }));
    assert_eq!(v.level, Level::Ok);
    assert!(v.forecast.is_none());
    assert!(v.patterns.is_empty(), "{:?}", v.patterns);
    assert!(v.reasons[0].starts_with("not growing"), "{:?}", v.reasons);
}

#[test]
fn collecting_first() {
    let v = run((0..2).map(|i| sample(i as f64, &[(FdKind::Regular, 5)], 1024)));
    assert_eq!(v.level, Level::Ok);
    assert!(v.reasons[0].starts_with("collecting"));
}

#[test]
fn netlink_route_leak_names_cause_and_eta() {
    let v = run((0..40).map(|i| {
        let n = 10 + 12 * i;
        let mut s = sample(
            i as f64,
            &[(FdKind::Netlink, n), (FdKind::Regular, 20)],
            1024,
        );
        s.netlink_protocols.insert("ROUTE".into(), n);
        s
    }));
    assert_eq!(v.level, Level::Critical, "{:?}", v.reasons);
    let f = v.forecast.as_ref().expect("forecast");
    // 10+12*39+20 = 498 now, 526 left at 12/s → ~44s.
    assert!((f.eta - 526.0 / 12.0).abs() < 2.0, "eta {}", f.eta);
    assert!(
        v.reasons[0].contains("netlink ROUTE sockets +12.0/s"),
        "{}",
        v.reasons[0]
    );
    assert!(v.reasons[0].contains("EMFILE in ~4"), "{}", v.reasons[0]);
    let p = &v.patterns[0];
    assert_eq!(p.id, "netlink_accumulation");
    assert!(p.cause.contains("InterfaceAddrs"));
}

#[test]
fn netlink_churn_without_growth() {
    let v = run((0..20).map(|i| {
        let mut s = sample(
            i as f64,
            &[(FdKind::Netlink, 2), (FdKind::Regular, 20)],
            1024,
        );
        s.new_inodes
            .insert(FdKind::Netlink, if i > 0 { 2 } else { 0 });
        s
    }));
    assert_eq!(v.level, Level::Ok);
    let p = v
        .patterns
        .iter()
        .find(|p| p.id == "netlink_churn")
        .expect("churn pattern");
    assert!(p.summary.contains("at least 2.0/s"), "{}", p.summary);
}

#[test]
fn close_wait_remote_and_repeated_path() {
    let v = run((0..30).map(|i| {
        let cw = 5 + i;
        let mut s = sample(
            i as f64 * 10.0,
            &[(FdKind::Tcp, cw + 1), (FdKind::Regular, 3 + i)],
            4096,
        );
        s.tcp_states.insert("CLOSE_WAIT".into(), cw);
        s.tcp_states.insert("LISTEN".into(), 1);
        s.remote_endpoints = vec![Counted {
            name: "10.0.0.1:5432".into(),
            count: cw,
        }];
        s.repeated_paths = vec![Counted {
            name: "/var/log/app.log".into(),
            count: 3 + i,
        }];
        s
    }));
    let ids: Vec<&str> = v.patterns.iter().map(|p| p.id.as_str()).collect();
    assert!(ids.contains(&"close_wait"), "{ids:?}");
    assert!(ids.contains(&"remote_endpoint"), "{ids:?}");
    assert!(ids.contains(&"repeated_path"), "{ids:?}");
    assert!(
        !ids.contains(&"growing_kind"),
        "tcp and regular are explained: {ids:?}"
    );
}

#[test]
fn usage_thresholds_and_limit_hit() {
    let flat = |n| run((0..10).map(|i| sample(i as f64, &[(FdKind::Regular, n)], 1000)));
    assert_eq!(flat(500).level, Level::Ok);
    assert_eq!(flat(850).level, Level::Warning);
    assert_eq!(flat(960).level, Level::Critical);
    let hit = flat(1000);
    assert_eq!(hit.level, Level::Critical);
    assert!(hit.reasons[0].contains("EMFILE now"));
}

#[test]
fn restart_resets_history() {
    let mut tr = Tracker::new();
    for i in 0..20 {
        tr.observe(&sample(i as f64, &[(FdKind::Pipe, 10 + 5 * i)], 4096));
    }
    let mut s = sample(21.0, &[(FdKind::Pipe, 10)], 4096);
    s.start_time = 99;
    tr.observe(&s);
    assert_eq!(tr.samples(), 1);
    assert!(tr.verdict(&Thresholds::default()).reasons[0].starts_with("collecting"));
}

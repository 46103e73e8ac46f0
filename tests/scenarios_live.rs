//! A subset of the trend scenarios as real workloads against the live sampler
//! (the synthetic suite lives in src/trend/scenarios.rs).

mod common;

use common::*;

/// Watch live (JSON on stdout, and a recording), then replay the recording
/// through `fdwatch analyze`: the replay must give the live level at every sample.
fn watch(w: &Workload, count: u32, interval: &str) -> Vec<serde_json::Value> {
    watch_on(w.pid, count, interval, "auto")
}

/// [`watch`] with a census backend (`proc`, `bpf`, `auto`).
fn watch_on(pid: i32, count: u32, interval: &str, backend: &str) -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec.jsonl");
    let live = json_lines(&[
        "--pid",
        &pid.to_string(),
        "--count",
        &count.to_string(),
        "--interval",
        interval,
        "--json",
        "--backend",
        backend,
        "--record",
        rec.to_str().unwrap(),
    ]);
    let replay = fdwatch(&["analyze", "--json", rec.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&replay.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&replay.stderr)));
    let steps = v["series"][0]["steps"].as_array().expect("steps");
    let replayed: Vec<&str> = steps.iter().map(|s| s["level"].as_str().unwrap()).collect();
    let live_levels: Vec<&str> = live
        .iter()
        .map(|l| l["verdict"]["level"].as_str().unwrap())
        .collect();
    assert_eq!(
        replayed, live_levels,
        "analyze of the recording gives the live verdicts"
    );
    live
}

fn levels(lines: &[serde_json::Value]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l["verdict"]["level"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn steady_mix_never_warns() {
    let w = Workload::start(&[
        "--hold",
        "file:30",
        "--hold",
        "pipe:5",
        "--hold",
        "netlink:3",
        "--hold",
        "tcp:2",
    ]);
    let lines = watch(&w, 20, "100ms");
    assert!(
        levels(&lines).iter().all(|l| l == "OK"),
        "{:?}",
        levels(&lines)
    );
    // The process itself is not growing (a forecast, if any, is the system-wide
    // file table, which the other tests running in parallel move).
    let f = &lines.last().unwrap()["verdict"]["forecast"];
    assert!(f.is_null() || f["limit_name"] == "fs.file-max", "{f}");
}

#[test]
fn linear_leak_detected_with_eta_within_20_percent() {
    // 40/s towards a soft limit of 200: EMFILE ~4.8 s after the start.
    let rate = 40.0;
    let soft = 200.0;
    let w = Workload::start(&["--soft-limit", "200", "--leak", "netlink:40"]);
    let lines = watch(&w, 20, "200ms");
    let first_warn = levels(&lines)
        .iter()
        .position(|l| l != "OK")
        .expect("leak detected");
    // Alarms wait until the limit is nearer than twice the growth watched so far
    // (a pool's first ramp looks like a leak): here from ~1.6 s on.
    assert!(
        first_warn <= 12,
        "detected at sample {first_warn}: {:?}",
        levels(&lines)
    );
    let start_fds = lines[0]["fds"].as_f64().unwrap();
    let quarter = start_fds + (soft - start_fds) / 4.0;
    let mut checked = 0;
    for l in lines
        .iter()
        .filter(|l| l["fds"].as_f64().unwrap() >= quarter.min(start_fds + 40.0))
    {
        let eta = l["verdict"]["forecast"]["eta"].as_f64().expect("forecast");
        let truth = (soft - l["fds"].as_f64().unwrap()) / rate;
        assert!(
            (eta - truth).abs() <= 0.2 * truth,
            "eta {eta:.1}s vs truth {truth:.1}s"
        );
        checked += 1;
    }
    assert!(checked >= 3, "checked {checked} samples");
}

#[test]
fn sawtooth_pool_without_leak_never_warns() {
    // Pipes fill to 30 pairs over 1.5 s, then are all closed: a pool, no leak.
    let w = Workload::start(&["--sawtooth", "pipe:30:1500ms"]);
    let lines = watch(&w, 40, "150ms");
    let lv = levels(&lines);
    let fds: Vec<i64> = lines.iter().map(|l| l["fds"].as_i64().unwrap()).collect();
    // The first ramp looks like a leak: a held-back forecast inside
    // --crit-eta may warn, saying it is unconfirmed (docs/trend.md). No page
    // ever, and nothing but OK once the pool has dropped.
    assert!(
        lv.iter().all(|l| l != "CRITICAL"),
        "false page on a sawtooth: {lv:?}"
    );
    for l in lines.iter().filter(|l| l["verdict"]["level"] == "WARNING") {
        let reason = l["verdict"]["reasons"][0].as_str().unwrap_or("");
        assert!(reason.contains("unconfirmed"), "false alarm: {reason}");
    }
    let first_drop = fds
        .windows(2)
        .position(|w| w[1] <= w[0] - 10)
        .expect("the pool drops");
    assert!(
        lv[first_drop + 1..].iter().all(|l| l == "OK"),
        "alarm after the first drop (sample {}): {lv:?}",
        first_drop + 1
    );
    assert!(
        fds.iter().max().unwrap() - fds.iter().min().unwrap() >= 30,
        "the sawtooth is real: {fds:?}"
    );
}

#[test]
fn sawtooth_with_slow_leak_is_detected() {
    let w = Workload::start(&[
        "--soft-limit",
        "500",
        "--sawtooth",
        "pipe:20:1s",
        "--leak",
        "file:8",
    ]);
    let lines = watch(&w, 40, "150ms");
    let last = lines.last().unwrap();
    // The leak is found and forecast; the alarm itself waits for the warm-up
    // (EMFILE is ~50 s away and a pool could still explain 6 s of growth).
    assert!(
        last["verdict"]["forecast"]["eta"].as_f64().is_some(),
        "{}",
        last["verdict"]
    );
    let growing: Vec<&str> = last["verdict"]["series"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["growing"] == true)
        .map(|s| s["series"].as_str().unwrap())
        .collect();
    assert!(growing.contains(&"regular"), "{growing:?}");
}

#[test]
fn netlink_churn_without_leak_is_named_not_alarmed() {
    let w = Workload::start(&["--hold", "netlink:2", "--churn", "netlink:400"]);
    let lines = watch(&w, 12, "150ms");
    assert!(
        levels(&lines).iter().all(|l| l == "OK"),
        "{:?}",
        levels(&lines)
    );
    let ids: Vec<&str> = lines.last().unwrap()["verdict"]["patterns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    // Sampling sees a socket only when a sample lands while it is open: at
    // 400/s with sub-millisecond lifetimes some samples see none, so the
    // pattern must come from the inodes that were caught.
    let caught: i64 = lines
        .iter()
        .map(|l| l["new_inodes"]["netlink"].as_i64().unwrap_or(0))
        .sum();
    if caught >= 3 {
        assert!(ids.contains(&"netlink_churn"), "{ids:?} (caught {caught})");
    } else {
        eprintln!("NOTE: sampling caught only {caught} churning sockets; churn is exact only with --syscalls");
    }
}

// ---- The scenario suite of issue 15, on both census backends ----
//
// A leak that starts with the process is tests/crossmode.rs `leak_*` (an
// alarm with at least half of the time to EMFILE left, every mode). A
// process that was up long before fdwatch first looked cannot be made live
// without waiting: `lifelong_leak_*` below runs the real check twice on a
// real leak and gives its first run's samples the age the process would
// have had (the state file is the only place a first run leaves evidence).
// The 50 s sawtooth pool of the issue runs through analyze
// (tests/analyze_scenarios.rs): two of its periods take longer than a test
// may.

fn backend_ok(backend: &str, what: &str) -> bool {
    backend == "proc" || require_bpf(what)
}

/// A python3 child that prints `ready PID` once set up (see
/// [`Workload::start_with`]) and ends when its stdin closes.
fn python(script: &str) -> Workload {
    Workload::start_with(std::process::Command::new("python3").arg("-c").arg(script))
}

const PY_PRELUDE: &str = r#"
import os, sys, time, socket, threading, resource
def ready():
    print("ready", os.getpid(), flush=True)
def wait_stdin():
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
"#;

fn levels_of(lines: &[serde_json::Value]) -> Vec<&str> {
    lines
        .iter()
        .map(|l| l["verdict"]["level"].as_str().unwrap_or("?"))
        .collect()
}

/// No page, and every WARNING says its forecast is held back: what a
/// workload without a leak may show.
fn assert_no_false_alarm(what: &str, lines: &[serde_json::Value]) {
    let lv = levels_of(lines);
    assert!(
        lv.iter().all(|l| *l != "CRITICAL"),
        "{what}: a false page: {lv:?}"
    );
    for l in lines.iter().filter(|l| l["verdict"]["level"] == "WARNING") {
        let reason = l["verdict"]["reasons"][0].as_str().unwrap_or("");
        assert!(
            reason.contains("unconfirmed") || reason.contains("held back"),
            "{what}: a false alarm: {reason}"
        );
    }
}

fn pool_at_start(backend: &str) {
    let what = format!("pool filling at process start ({backend})");
    if !backend_ok(backend, &what) {
        return;
    }
    // 30 files/s for 2 s from the start, then a steady pool of ~60.
    let w = Workload::start(&[
        "--soft-limit",
        "1024",
        "--leak",
        "file:30",
        "--churn-for",
        "2s",
    ]);
    let lines = watch_on(w.pid, 40, "200ms", backend);
    assert_no_false_alarm(&what, &lines);
    let fds: Vec<i64> = lines.iter().map(|l| l["fds"].as_i64().unwrap()).collect();
    assert!(
        fds[fds.len() - 1] - fds[0] >= 40,
        "{what}: the pool filled: {fds:?}"
    );
    let lv = levels_of(&lines);
    assert!(
        lv[lv.len() - 10..].iter().all(|l| *l == "OK"),
        "{what}: still alarmed seconds after the pool was full: {lv:?}"
    );
}

#[test]
fn pool_at_start_proc() {
    pool_at_start("proc");
}

#[test]
fn pool_at_start_bpf() {
    pool_at_start("bpf");
}

fn burst_and_release(backend: &str) {
    let what = format!("burst and release ({backend})");
    if !backend_ok(backend, &what) {
        return;
    }
    // 400 fds within ~0.4 s at t = 1 s, held 3 s, all closed.
    let w = python(&format!(
        "{PY_PRELUDE}
resource.setrlimit(resource.RLIMIT_NOFILE, (4096, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
wait_stdin(); ready()
time.sleep(1)
held = []
for i in range(200):
    held.extend(os.pipe())
    if i % 20 == 0: time.sleep(0.04)
time.sleep(3)
for fd in held: os.close(fd)
time.sleep(60)
"
    ));
    let lines = watch_on(w.pid, 40, "200ms", backend);
    assert_no_false_alarm(&what, &lines);
    let fds: Vec<i64> = lines.iter().map(|l| l["fds"].as_i64().unwrap()).collect();
    let peak = *fds.iter().max().unwrap();
    assert!(peak - fds[0] >= 390, "{what}: the burst happened: {fds:?}");
    let released = fds.iter().rposition(|n| *n >= peak - 10).unwrap() + 1;
    assert!(
        released < fds.len() - 5,
        "{what}: released in time: {fds:?}"
    );
    let lv = levels_of(&lines);
    assert!(
        lv[released..].iter().all(|l| *l == "OK"),
        "{what}: an alarm after the release: {lv:?}"
    );
}

#[test]
fn burst_and_release_proc() {
    burst_and_release("proc");
}

#[test]
fn burst_and_release_bpf() {
    burst_and_release("bpf");
}

fn step_change(backend: &str) {
    let what = format!("step change ({backend})");
    if !backend_ok(backend, &what) {
        return;
    }
    // 10 -> ~410 fds at once at t = 1.5 s, then steady (a bigger pool).
    let w = python(&format!(
        "{PY_PRELUDE}
resource.setrlimit(resource.RLIMIT_NOFILE, (4096, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
wait_stdin(); ready()
time.sleep(1.5)
held = [os.pipe() for i in range(200)]
time.sleep(60)
"
    ));
    let lines = watch_on(w.pid, 40, "200ms", backend);
    assert_no_false_alarm(&what, &lines);
    let fds: Vec<i64> = lines.iter().map(|l| l["fds"].as_i64().unwrap()).collect();
    assert!(
        fds[fds.len() - 1] - fds[0] >= 390,
        "{what}: the step happened: {fds:?}"
    );
}

#[test]
fn step_change_proc() {
    step_change("proc");
}

#[test]
fn step_change_bpf() {
    step_change("bpf");
}

fn close_wait(backend: &str) {
    let what = format!("CLOSE_WAIT accumulation ({backend})");
    if !backend_ok(backend, &what) {
        return;
    }
    // A real TCP server that never closes the sockets it accepts; its
    // clients (a thread of the same process) connect and close 20 times a
    // second, so each accepted socket sits in CLOSE_WAIT. Soft limit 300:
    // EMFILE ~14 s after the start.
    let w = python(&format!(
        "{PY_PRELUDE}
resource.setrlimit(resource.RLIMIT_NOFILE, (300, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen(512)
port = srv.getsockname()[1]
accepted = []
def serve():
    while True:
        try: accepted.append(srv.accept()[0])
        except OSError: time.sleep(0.05)
threading.Thread(target=serve, daemon=True).start()
def clients():
    while True:
        try:
            c = socket.create_connection(('127.0.0.1', port)); c.close()
        except OSError: pass
        time.sleep(0.05)
wait_stdin(); ready()
threading.Thread(target=clients, daemon=True).start()
time.sleep(60)
"
    ));
    let lines = watch_on(w.pid, 40, "200ms", backend);
    let last = lines.last().unwrap();
    let ids: Vec<&str> = last["verdict"]["patterns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(ids.first(), Some(&"close_wait"), "{what}: {ids:?}");
    let cw = last["tcp_states"]["CLOSE_WAIT"].as_i64().unwrap_or(0);
    assert!(cw >= 100, "{what}: {cw} in CLOSE_WAIT");
    let lv = levels_of(&lines);
    assert_eq!(lv.last(), Some(&"CRITICAL"), "{what}: {lv:?}");
    let first = lv.iter().position(|l| *l == "CRITICAL").unwrap();
    assert!(
        lv[first..].iter().all(|l| *l == "CRITICAL"),
        "{what}: flapping {lv:?}"
    );
}

#[test]
fn close_wait_proc() {
    close_wait("proc");
}

#[test]
fn close_wait_bpf() {
    close_wait("bpf");
}

/// A process up for a long time before fdwatch first looked, leaking
/// 5 fds/s all its life: a cron check with a state file warns on its second
/// run (ETA ~13 min: inside --warn-eta 1h, outside --crit-eta 10m), because
/// the process's age and its fd count at the first sample say it has grown
/// like this all its life. Both runs are the real check on a real leak; the
/// first run's samples in the state file are given the age the process
/// would have had (400 s) at the count it had (~2,000 fds at 5/s), since a
/// live test can make a process old only by waiting. Without that age, the
/// same second run holds the forecast back as unconfirmed (OK).
fn lifelong_leak(backend: &str) {
    let what = format!("lifelong leak, cron check ({backend})");
    if !backend_ok(backend, &what) {
        return;
    }
    let run = |w: &Workload, state: &std::path::Path| {
        let out = fdwatch(&[
            "check",
            "--pid",
            &w.pid_str(),
            "--state",
            state.to_str().unwrap(),
            "--samples",
            "3",
            "--interval",
            "500ms",
            "--format",
            "json",
            "--backend",
            backend,
        ]);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code(), doc)
    };
    let second_run = |age: Option<f64>| {
        let w = Workload::start(&[
            "--soft-limit",
            "6000",
            "--hold",
            "netlink:2000",
            "--leak",
            "file:5",
        ]);
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.json");
        let (code, _) = run(&w, &state);
        assert_eq!(code, Some(0), "{what}: first run");
        if let Some(age) = age {
            let mut doc: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
            let samples = doc["processes"][0]["samples"].as_array_mut().unwrap();
            let real = samples[0]["age"].as_f64().unwrap();
            for s in samples.iter_mut() {
                let a = s["age"].as_f64().unwrap();
                s["age"] = serde_json::json!(a - real + age);
            }
            std::fs::write(&state, serde_json::to_vec(&doc).unwrap()).unwrap();
        }
        // The next cron run, a few seconds later.
        std::thread::sleep(std::time::Duration::from_secs(3));
        run(&w, &state)
    };
    let (code, doc) = second_run(Some(400.0));
    let v = &doc["processes"][0]["verdict"];
    assert_eq!(code, Some(1), "{what}: second run: {}", v["reasons"]);
    assert_eq!(
        v["forecast"]["confirmed"], true,
        "{what}: {}",
        v["forecast"]
    );
    let eta = v["forecast"]["eta"].as_f64().unwrap();
    assert!(
        (600.0..3600.0).contains(&eta),
        "{what}: ETA {eta:.0}s, expected ~13 min"
    );
    // Control: the same runs on a process that really is young.
    let (code, doc) = second_run(None);
    let v = &doc["processes"][0]["verdict"];
    assert_eq!(code, Some(0), "{what}: young process: {}", v["reasons"]);
    assert_eq!(v["forecast"]["held_back"], "unconfirmed", "{what}: {v}");
}

#[test]
fn lifelong_leak_proc() {
    lifelong_leak("proc");
}

#[test]
fn lifelong_leak_bpf() {
    lifelong_leak("bpf");
}

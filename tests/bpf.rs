//! The BPF census backend against the /proc one, on real children with known
//! fds; its fallback and error for unprivileged users; and that it leaves
//! nothing in the kernel after fdwatch is killed.
//!
//! These need root (CI runs as root). Where they cannot run they print
//! `SKIPPED: <reason>`, and fail when `CI` is set. CI runs them on an object
//! rebuilt from source (`FDWATCH_BPF_OBJECT`, inherited by the fdwatch runs).

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{
    bin, count, fdwatch, fdwatch_as_nobody, kernel_does_core, sample_by as sample, Workload,
    BACKENDS_AGREE_ON, FULL_HOLD,
};
use serde_json::Value;

/// One BPF watch at a time in this binary, so the kill -9 test can tell
/// which programs are whose.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn skip(what: &str, why: &str) -> bool {
    let msg = format!("SKIPPED: {what}: {why}");
    if std::env::var_os("CI").is_some() {
        panic!("{msg} (CI is set: this test must run)");
    }
    eprintln!("{msg}");
    false
}

/// Root and kernel BTF: what the BPF census needs here.
fn require_bpf(what: &str) -> bool {
    if !common::is_root() {
        return skip(what, "needs root (or CAP_BPF + CAP_PERFMON)");
    }
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        return skip(what, "needs kernel BTF at /sys/kernel/btf/vmlinux");
    }
    true
}

#[test]
fn bpf_and_proc_report_the_same_census() {
    if !require_bpf("BPF vs /proc census") {
        return;
    }
    let _one = serial();
    let w = Workload::start(FULL_HOLD);
    let b = sample(w.pid, "bpf");
    let p = sample(w.pid, "proc");
    assert_eq!(b["backend"], "bpf");
    assert_eq!(p["backend"], "proc");
    for field in BACKENDS_AGREE_ON {
        assert_eq!(b[field], p[field], "{field} differs");
    }
    assert_eq!(
        b["kinds"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_i64().unwrap())
            .sum::<i64>(),
        b["fds"].as_i64().unwrap()
    );
    // Known counts, so that "the same" is not "the same and both wrong".
    assert_eq!(count(&b, "tcp_states", "LISTEN"), 3);
    assert_eq!(count(&b, "tcp_states", "ESTABLISHED"), 6);
    assert_eq!(count(&b, "tcp_states", "CLOSE_WAIT"), 4);
    assert_eq!(b["repeated_paths"][0]["count"], 50);
    assert!(b["repeated_paths"][0]["name"]
        .as_str()
        .unwrap()
        .ends_with("/same"));
    assert_eq!(count(&b, "kinds", "deleted"), 3);
    assert_eq!(count(&b, "kinds", "eventfd"), 3);
    assert_eq!(count(&b, "kinds", "eventpoll"), 2);
    assert_eq!(count(&b, "kinds", "timerfd"), 1);
    assert_eq!(count(&b, "kinds", "inotify"), 1);
    assert_eq!(count(&b, "kinds", "udp"), 5);

    // Netlink: /proc cannot name the protocol of the two unbound sockets; BPF can.
    assert_eq!(count(&p, "netlink_protocols", "ROUTE"), 6);
    assert_eq!(count(&p, "netlink_protocols", "unknown"), 2);
    assert_eq!(count(&b, "netlink_protocols", "ROUTE"), 8);
    assert_eq!(count(&b, "netlink_protocols", "unknown"), 0);
    // Unix sockets by type: the three socketpairs (BPF only).
    assert!(count(&b, "unix_types", "STREAM") >= 6);
}

/// The path of kernels before 6.1 (the link walks every task, the program
/// filters by tgid) gives the same census as the pid-bound walk.
#[test]
fn unbound_walk_filters_to_the_target() {
    if !require_bpf("BPF census, unbound walk") {
        return;
    }
    let _one = serial();
    let w = Workload::start(&["--hold", "file:9", "--hold", "netlink-unbound:4"]);
    let bound = sample(w.pid, "bpf");
    let out = Command::new(bin())
        .args([
            "--pid",
            &w.pid_str(),
            "--count",
            "1",
            "--json",
            "--backend",
            "bpf",
        ])
        .env("FDWATCH_BPF_UNBOUND", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let unbound: Value = serde_json::from_slice(&out.stdout).unwrap();
    for field in ["fds", "kinds", "netlink_protocols", "repeated_paths"] {
        assert_eq!(bound[field], unbound[field], "{field} differs");
    }
    assert_eq!(count(&unbound, "netlink_protocols", "ROUTE"), 4);
}

/// A `--count 1 --json --backend bpf` sample with extra environment.
fn sample_env(pid: i32, env: &[(&str, &str)]) -> Value {
    let out = Command::new(bin())
        .args(["--pid", &pid.to_string(), "--count", "1", "--json"])
        .args(["--backend", "bpf"])
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{env:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The two loaders (the kernel applying the CO-RE relocations, aya applying
/// them in user space) give the same program: the same census.
#[test]
fn both_loaders_give_the_same_census() {
    if !require_bpf("kernel CO-RE vs aya loader") {
        return;
    }
    if !kernel_does_core() {
        skip(
            "kernel CO-RE vs aya loader",
            "needs Linux 5.17+ for CO-RE in BPF_PROG_LOAD",
        );
        return;
    }
    let _one = serial();
    let w = Workload::start(FULL_HOLD);
    let kernel = sample_env(w.pid, &[("FDWATCH_BPF_LOADER", "kernel")]);
    let aya = sample_env(w.pid, &[("FDWATCH_BPF_LOADER", "aya")]);
    for field in [
        "fds",
        "kinds",
        "tcp_states",
        "netlink_protocols",
        "unix_types",
        "repeated_paths",
        "remote_endpoints",
        "deleted_bytes",
    ] {
        assert_eq!(kernel[field], aya[field], "{field} differs");
    }
    assert_eq!(kernel["repeated_paths"][0]["count"], 50);
}

#[test]
fn bpf_census_under_churn_has_no_error() {
    if !require_bpf("BPF census under churn") {
        return;
    }
    let _one = serial();
    let w = Workload::start(&[
        "--hold",
        "file:20",
        "--churn",
        "file:3000",
        "--churn",
        "netlink:3000",
        "--threads",
        "2",
    ]);
    let base = sample(w.pid, "proc")["fds"].as_i64().unwrap();
    let out = fdwatch(&[
        "--pid",
        &w.pid_str(),
        "--backend",
        "bpf",
        "--json",
        "--interval",
        "50ms",
        "--count",
        "40",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = out
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 40);
    for s in &lines {
        assert_eq!(s["backend"], "bpf");
        let fds = s["fds"].as_i64().unwrap();
        let sum: i64 = s["kinds"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_i64().unwrap())
            .sum();
        assert_eq!(sum, fds, "kinds add up");
        // Each churn thread holds at most one or two fds at a time.
        assert!(
            fds >= base - 4 && fds <= base + 8,
            "fds {fds} outside {base}-4..{base}+8"
        );
        assert!(count(s, "kinds", "regular") >= 20);
    }
}

#[test]
fn unprivileged_auto_falls_back_to_proc_and_says_why() {
    if !common::is_root() {
        skip("unprivileged fallback", "needs root to become uid 65534");
        return;
    }
    let w = Workload::start_with(
        Command::new(bin())
            .args(["workload", "--hold", "pipe:2"])
            .uid(65534)
            .gid(65534),
    );
    let out = fdwatch_as_nobody(&["--pid", &w.pid_str(), "--count", "1", "--json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["backend"], "proc");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("/proc census"), "{err}");
    assert!(err.contains("CAP_BPF"), "names what is missing: {err}");

    let out = fdwatch_as_nobody(&["--pid", &w.pid_str(), "--count", "1", "--backend", "bpf"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("--backend bpf") && err.contains("CAP_BPF"),
        "{err}"
    );
    assert!(out.stdout.is_empty());

    // A count-only watch needs no census backend: no message.
    let out = fdwatch_as_nobody(&["--pid", &w.pid_str(), "--count", "1", "--census", "count"]);
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// BPF program ids held through fds by `pid` (from /proc/<pid>/fdinfo).
fn prog_ids_of(pid: u32) -> Vec<u32> {
    let mut ids = Vec::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return ids;
    };
    for e in dir.flatten() {
        if let Ok(text) = std::fs::read_to_string(e.path()) {
            for line in text.lines() {
                if let Some(id) = line.strip_prefix("prog_id:") {
                    if let Ok(id) = id.trim().parse() {
                        ids.push(id);
                    }
                }
            }
        }
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

fn prog_exists(id: u32) -> bool {
    Command::new("bpftool")
        .args(["prog", "show", "id", &id.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn nothing_is_left_behind_after_kill_9() {
    if !require_bpf("nothing left after kill -9") {
        return;
    }
    if Command::new("bpftool").arg("version").output().is_err() {
        skip("nothing left after kill -9", "needs bpftool");
        return;
    }
    let _one = serial();
    let w = Workload::start(&["--hold", "file:5"]);
    let mut watch = Command::new(bin())
        .args(["--pid", &w.pid_str(), "--backend", "bpf", "--json"])
        .args(["--interval", "100ms"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(watch.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("\"backend\":\"bpf\""), "{first}");
    let ids = prog_ids_of(watch.id());
    assert!(!ids.is_empty(), "the watch holds its program");
    let shown = Command::new("bpftool")
        .args(["prog", "show"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&shown.stdout).contains("census_task_fil"));
    assert!(ids.iter().all(|id| prog_exists(*id)));

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(watch.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    watch.wait().unwrap();
    // The kernel frees a program after its last reference goes (RCU): give it a moment.
    let end = Instant::now() + Duration::from_secs(5);
    while ids.iter().any(|id| prog_exists(*id)) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left: Vec<u32> = ids.into_iter().filter(|id| prog_exists(*id)).collect();
    assert!(left.is_empty(), "programs left after kill -9: {left:?}");
    // (Not "no census program listed at all": another fdwatch on the same
    // host, a `serve` say, may hold its own. The ids above are this watch's.)
    // No pins: nothing of fdwatch in bpffs.
    if let Ok(dir) = std::fs::read_dir("/sys/fs/bpf") {
        for e in dir.flatten() {
            assert!(!e.file_name().to_string_lossy().contains("fdw"));
        }
    }
}

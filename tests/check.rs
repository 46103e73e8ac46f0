//! `fdwatch check` against real processes at each level, and its state file.

mod common;

use std::process::Command;

use common::*;

fn check(args: &[&str]) -> (i32, String, String) {
    let out = fdwatch(&[&["check"], args].concat());
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn ok_with_perfdata() {
    let w = Workload::start(&["--hold", "pipe:2"]);
    let (code, out, _) = check(&[
        "--pid",
        &w.pid_str(),
        "--samples",
        "2",
        "--interval",
        "100ms",
    ]);
    assert_eq!(code, 0, "{out}");
    let first = out.lines().next().unwrap();
    assert!(
        first.starts_with(&format!("FDWATCH OK - pid {} (leaky-workload) ", w.pid)),
        "{first}"
    );
    let (_, perf) = first.split_once(" | ").expect("perfdata");
    assert!(
        perf.split(' ')
            .any(|i| i.starts_with("fds=") && i.ends_with(";0;20000") || i.starts_with("fds=")),
        "{perf}"
    );
    assert!(perf.contains("pipe="), "{perf}");
    assert!(perf.contains("eta=U;3600:;600:;0;"), "{perf}");
}

#[test]
fn warning_on_usage() {
    let w = Workload::start(&["--soft-limit", "100", "--hold", "file:80"]);
    let (code, out, _) = check(&["--pid", &w.pid_str(), "--samples", "1"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("FDWATCH WARNING - "), "{out}");
    assert!(out.contains("fds=8"), "{out}");
    assert!(
        out.contains(";80;95;0;100"),
        "usage thresholds in perfdata: {out}"
    );
}

#[test]
fn critical_on_fast_leak_names_netlink() {
    // 40/s towards 150: past the warm-up rule within ~1.2 s.
    let w = Workload::start(&["--soft-limit", "150", "--leak", "netlink:40"]);
    let (code, out, _) = check(&[
        "--pid",
        &w.pid_str(),
        "--samples",
        "12",
        "--interval",
        "150ms",
    ]);
    assert_eq!(code, 2, "{out}");
    let first = out.lines().next().unwrap();
    assert!(first.starts_with("FDWATCH CRITICAL - "), "{first}");
    assert!(first.contains("EMFILE in ~"), "{first}");
    assert!(first.contains("netlink ROUTE sockets"), "{first}");
}

#[test]
fn unknown_for_missing_targets_and_bad_options() {
    let mut c = Command::new("true").spawn().unwrap();
    let dead = c.id().to_string();
    c.wait().unwrap();
    let (code, out, err) = check(&["--pid", &dead, "--samples", "1"]);
    assert_eq!(code, 3);
    assert!(out.starts_with("FDWATCH UNKNOWN - "), "{out}");
    assert!(
        out.contains(&format!("no such process: pid {dead}")),
        "{out}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    let (code, out, _) = check(&["--name", "no-such-process-anywhere"]);
    assert_eq!(code, 3);
    assert!(
        out.starts_with("FDWATCH UNKNOWN - no process matches --name"),
        "{out}"
    );
    let (code, _, err) = check(&["--samples", "1"]);
    assert_eq!(code, 3, "a target is required");
    assert_eq!(err.lines().count(), 1, "{err}");
    let (code, _, _) = check(&["--pid", "1", "--samples", "0"]);
    assert_eq!(code, 3);
}

#[test]
fn name_and_pidfile_targets() {
    let w = Workload::start(&[]);
    let (code, out, _) = check(&["--name", "leaky-work*", "--samples", "1"]);
    assert!(code <= 2, "{out}");
    assert!(
        out.contains(&format!("pid {}", w.pid)) || out.contains(&format!("pid{}_fds", w.pid)),
        "{out}"
    );
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("w.pid");
    std::fs::write(&pidfile, format!("{}\n", w.pid)).unwrap();
    let (code, out, _) = check(&["--pidfile", pidfile.to_str().unwrap(), "--samples", "1"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("pid {} (leaky-workload)", w.pid)));
}

fn state_samples(path: &std::path::Path, pid: i32) -> usize {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["pid"] == pid)
        .map(|p| p["samples"].as_array().unwrap().len())
        .sum()
}

#[test]
fn state_builds_a_trend_across_runs() {
    let w = Workload::start(&["--soft-limit", "5000", "--leak", "pipe:10"]);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let s = state.to_str().unwrap();
    let (_, first, _) = check(&[
        "--pid",
        &w.pid_str(),
        "--samples",
        "3",
        "--interval",
        "200ms",
        "--state",
        s,
    ]);
    assert!(first.contains("collecting"), "{first}");
    check(&[
        "--pid",
        &w.pid_str(),
        "--samples",
        "3",
        "--interval",
        "200ms",
        "--state",
        s,
    ]);
    let (code, third, _) = check(&[
        "--pid",
        &w.pid_str(),
        "--samples",
        "3",
        "--interval",
        "200ms",
        "--state",
        s,
    ]);
    assert_eq!(state_samples(&state, w.pid), 9);
    assert!(
        third.contains("EMFILE in ~"),
        "trend from 9 samples over three runs: {third}"
    );
    // Only 2 s watched: the forecast is held back as unconfirmed, and says
    // so; EMFILE ~4 min away is inside --crit-eta (10 min), so a held-back
    // forecast warns rather than pages (docs/trend.md).
    assert!(third.contains("unconfirmed"), "{third}");
    assert_eq!(code, 1, "{third}");
}

#[test]
fn concurrent_runs_lose_nothing() {
    let w = Workload::start(&["--hold", "file:3"]);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let handles: Vec<_> = (0..4)
        .map(|_| {
            Command::new(bin())
                .args([
                    "check",
                    "--pid",
                    &w.pid_str(),
                    "--samples",
                    "3",
                    "--interval",
                    "50ms",
                    "--state",
                    state.to_str().unwrap(),
                ])
                .spawn()
                .unwrap()
        })
        .collect();
    for mut h in handles {
        assert_eq!(h.wait().unwrap().code(), Some(0));
    }
    assert_eq!(
        state_samples(&state, w.pid),
        12,
        "4 runs x 3 samples, none lost"
    );
}

#[test]
fn restart_starts_new_history_and_corrupt_file_is_kept() {
    let w = Workload::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let s = state.to_str().unwrap();
    check(&[
        "--pid",
        &w.pid_str(),
        "--samples",
        "2",
        "--interval",
        "50ms",
        "--state",
        s,
    ]);
    assert_eq!(state_samples(&state, w.pid), 2);
    // Same PID, another start time: as if the process restarted.
    let text = std::fs::read_to_string(&state).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    for p in v["processes"].as_array_mut().unwrap() {
        p["start_time"] = serde_json::json!(1);
    }
    std::fs::write(&state, v.to_string()).unwrap();
    check(&["--pid", &w.pid_str(), "--samples", "1", "--state", s]);
    assert_eq!(
        state_samples(&state, w.pid),
        1,
        "a restarted process starts a new history"
    );

    std::fs::write(&state, b"{\"format\": \"fdwatch-state\", trunc").unwrap();
    let (code, out, err) = check(&["--pid", &w.pid_str(), "--samples", "1", "--state", s]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("note: state file") && out.contains("corrupt"),
        "{out}"
    );
    assert!(err.contains("corrupt"), "{err}");
    let kept: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".corrupt."))
        .collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(
        std::fs::read(dir.path().join(&kept[0])).unwrap(),
        b"{\"format\": \"fdwatch-state\", trunc"
    );
    assert_eq!(state_samples(&state, w.pid), 1, "a new history started");
}

#[test]
fn read_only_state_directory_is_unknown() {
    if !require_root("read-only state directory test (runs the check as uid 65534)") {
        return;
    }
    use std::os::unix::process::CommandExt;
    let w = Workload::start_with(Command::new(bin()).arg("workload").uid(65534).gid(65534));
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    let state = ro.join("state.json");
    let out = Command::new(bin())
        .args([
            "check",
            "--pid",
            &w.pid_str(),
            "--samples",
            "1",
            "--state",
            state.to_str().unwrap(),
        ])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.starts_with("FDWATCH UNKNOWN - cannot lock state file")
            || stdout.starts_with("FDWATCH UNKNOWN - cannot write state file"),
        "{stdout}"
    );
    assert!(stdout.contains("Permission denied"), "{stdout}");
}

#[test]
fn prometheus_textfile_and_json() {
    let w = Workload::start(&["--hold", "netlink:2"]);
    let dir = tempfile::tempdir().unwrap();
    let prom = dir.path().join("fdwatch.prom");
    let (code, out, _) = check(&[
        "--pid",
        &w.pid_str(),
        "--samples",
        "1",
        "--format",
        "prometheus",
        "--output",
        prom.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    assert!(out.is_empty());
    let text = std::fs::read_to_string(&prom).unwrap();
    assert!(text.contains("# TYPE fdwatch_open_fds gauge\n"), "{text}");
    assert!(
        text.contains(&format!(
            "fdwatch_open_fds_by_kind{{pid=\"{}\",comm=\"leaky-workload\",kind=\"netlink\"}} 2\n",
            w.pid
        )),
        "{text}"
    );
    assert!(text.contains("fdwatch_verdict{"), "{text}");
    assert!(
        !text.contains("fdwatch_fd_exhaustion_seconds{"),
        "absent when not growing: {text}"
    );
    assert!(text.ends_with('\n'));
    let (_, json, _) = check(&["--pid", &w.pid_str(), "--samples", "1", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["level"], "OK");
    assert_eq!(v["processes"][0]["sample"]["kinds"]["netlink"], 2);
}

/// As root, `check --backend bpf` takes its samples with the BPF census and
/// counts what `--backend proc` counts; the status line and long output carry
/// no note about the census.
#[test]
fn backend_bpf_counts_what_proc_counts() {
    if !require_bpf("check --backend bpf against --backend proc") {
        return;
    }
    let w = Workload::start(FULL_HOLD);
    let json = |backend: &str| -> serde_json::Value {
        let (code, out, err) = check(&[
            "--pid",
            &w.pid_str(),
            "--samples",
            "1",
            "--format",
            "json",
            "--backend",
            backend,
        ]);
        assert_eq!(code, 0, "{backend}: {out} {err}");
        serde_json::from_str(&out).unwrap()
    };
    let (b, p) = (json("bpf"), json("proc"));
    let (bs, ps) = (&b["processes"][0]["sample"], &p["processes"][0]["sample"]);
    assert_eq!(bs["backend"], "bpf");
    assert_eq!(ps["backend"], "proc");
    for field in BACKENDS_AGREE_ON {
        assert_eq!(bs[field], ps[field], "{field} differs");
    }
    assert_eq!(bs["repeated_paths"][0]["count"], 50);
    assert_eq!(b["notes"], serde_json::json!([]));

    let (code, out, err) = check(&[
        "--pid",
        &w.pid_str(),
        "--samples",
        "1",
        "--backend",
        "bpf",
        "--syscalls",
        "off",
    ]);
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.starts_with("FDWATCH OK - "), "{out}");
    assert!(!out.contains("note:"), "{out}");
    assert!(err.is_empty(), "{err}");
}

/// As a user without CAP_BPF: `--backend bpf` is UNKNOWN (exit 3) with the
/// reason on the status line and one line on stderr; `auto` checks through
/// /proc and says why in the long output (a `note:`), on stderr only with
/// `-v` (a cron job mails stderr), never in the status line.
#[test]
fn backend_bpf_unprivileged_is_unknown_and_auto_says_why_in_long_output() {
    if !require_root("check --backend as uid 65534 (needs root to become it)") {
        return;
    }
    let w = nobody_workload(&["--hold", "pipe:2"]);
    let pid = w.pid_str();
    let out = fdwatch_as_nobody(&["check", "--pid", &pid, "--samples", "1", "--backend", "bpf"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(3), "{stdout} {stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.starts_with("FDWATCH UNKNOWN - --backend bpf: ") && stdout.contains("CAP_BPF"),
        "{stdout}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("fdwatch: --backend bpf: "), "{stderr}");

    let out = fdwatch_as_nobody(&[
        "check",
        "--pid",
        &pid,
        "--samples",
        "1",
        "--syscalls",
        "off",
    ]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout} {stderr}");
    let first = stdout.lines().next().unwrap();
    assert!(first.starts_with("FDWATCH OK - "), "{first}");
    assert!(!first.contains("census"), "status line untouched: {first}");
    let note = stdout
        .lines()
        .find(|l| l.starts_with("note: using the /proc census: "))
        .unwrap_or_else(|| panic!("a note in the long output: {stdout}"));
    assert!(note.contains("CAP_BPF"), "{note}");
    assert!(stderr.is_empty(), "{stderr}");
    let out = fdwatch_as_nobody(&[
        "check",
        "--pid",
        &pid,
        "--samples",
        "1",
        "--syscalls",
        "off",
        "-v",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("fdwatch: using the /proc census: "),
        "{stderr}"
    );

    let out = fdwatch_as_nobody(&[
        "check",
        "--pid",
        &pid,
        "--samples",
        "1",
        "--syscalls",
        "off",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["processes"][0]["sample"]["backend"], "proc");
    assert!(v["notes"][0]
        .as_str()
        .unwrap()
        .starts_with("using the /proc census: "));

    // Asked for /proc: nothing to say.
    let out = fdwatch_as_nobody(&[
        "check",
        "--pid",
        &pid,
        "--samples",
        "1",
        "--syscalls",
        "off",
        "--backend",
        "proc",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("note:"));
    assert!(out.stderr.is_empty());
}

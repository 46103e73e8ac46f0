//! `fdwatch run -- CMD` and `fdwatch assert` on real commands.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(bin())
        .arg("run")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn workload_cmd(extra: &[&str]) -> Vec<String> {
    let mut v = vec![
        "--".to_string(),
        bin().to_string(),
        "workload".into(),
        "--ignore-stdin".into(),
        "--exit-after".into(),
        "1500ms".into(),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn run_workload(opts: &[&str], extra: &[&str]) -> (i32, String) {
    let cmd = workload_cmd(extra);
    let mut args: Vec<&str> = opts.to_vec();
    args.extend(cmd.iter().map(String::as_str));
    run(&args)
}

#[test]
fn well_behaved_command_passes() {
    let (code, err) = run_workload(
        &[
            "--interval",
            "100ms",
            "--warmup",
            "400ms",
            "--max-growth",
            "3",
            "--fail-on",
            "warning",
        ],
        &["--hold", "file:20", "--churn", "file:200"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("fdwatch PASS"), "{err}");
}

#[test]
fn file_leak_fails_with_reason() {
    let (code, err) = run_workload(
        &["--interval", "100ms", "--max-growth", "10"],
        &["--leak", "file:40"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("FAIL: open fds grew by"), "{err}");
    assert!(err.contains("regular +"), "{err}");
}

#[test]
fn netlink_leak_fails_on_kind_and_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let junit = dir.path().join("j.xml");
    let (code, err) = run_workload(
        &[
            "--interval",
            "100ms",
            "--max-growth",
            "netlink:0",
            "--fail-on",
            "warning",
            "--report",
            report.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
        ],
        &["--soft-limit", "400", "--leak", "netlink:40"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("FAIL: netlink sockets grew by"), "{err}");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["exit_code"], 2);
    assert_eq!(
        r["verdict"]["patterns"][0]["id"], "netlink_accumulation",
        "{r}"
    );
    assert!(r["growth_by_kind"]["netlink"].as_i64().unwrap() >= 20);
    let x = std::fs::read_to_string(&junit).unwrap();
    assert!(
        x.starts_with("<?xml")
            && x.contains("<testsuite name=\"fdwatch\" tests=\"1\" failures=\"1\"")
            && x.contains("<failure message=\""),
        "{x}"
    );
}

#[test]
fn close_wait_leak_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let (code, err) = run_workload(
        &[
            "--interval",
            "100ms",
            "--fail-on",
            "warning",
            "--report",
            report.to_str().unwrap(),
        ],
        &["--soft-limit", "100", "--leak", "close-wait:30"],
    );
    assert_ne!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let ids: Vec<&str> = r["verdict"]["patterns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"close_wait"), "{ids:?} {err}");
    assert!(err.contains("CLOSE_WAIT"), "{err}");
}

#[test]
fn command_failure_code_wins() {
    let (code, err) = run(&["--", "sh", "-c", "exit 7"]);
    assert_eq!(code, 7, "{err}");
    assert!(err.contains("command exit code: 7"), "{err}");
    let (code, err) = run(&["--", "/nonexistent/cmd"]);
    assert_eq!(code, 3, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn signals_reach_the_command() {
    let child = Command::new(bin())
        .args([
            "run",
            "--",
            "sh",
            "-c",
            "trap 'exit 42' TERM; sleep 30 >/dev/null 2>&1 & wait",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(42),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn children_are_counted() {
    // sh starts a workload child that leaks; with --children its fds count.
    // The child outlives sh by a little, so the last sample holds its leak.
    let script = format!(
        "{} workload --ignore-stdin --exit-after 3s --leak pipe:20 >/dev/null 2>&1 & sleep 1.5",
        bin()
    );
    let (code, err) = run(&[
        "--children",
        "--interval",
        "100ms",
        "--max-growth",
        "pipe:5",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("pipes grew by"), "{err}");
}

#[test]
fn assert_on_a_running_service() {
    let w = Workload::start(&["--leak", "pipe:10"]);
    let out = fdwatch(&[
        "assert",
        "--pid",
        &w.pid_str(),
        "--for",
        "1500ms",
        "--interval",
        "100ms",
        "--max-growth",
        "5",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("FAIL: open fds grew by"), "{err}");
    let quiet = Workload::start(&["--hold", "pipe:3"]);
    let out = fdwatch(&[
        "assert",
        "--pid",
        &quiet.pid_str(),
        "--for",
        "600ms",
        "--interval",
        "100ms",
        "--max-growth",
        "0",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn run_draws_its_plot() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("run.svg");
    let (code, err) = run_workload(
        &["--interval", "100ms", "--plot", svg.to_str().unwrap()],
        &["--leak", "pipe:10"],
    );
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        text.starts_with("<svg") && text.contains("open fds (total)"),
        "{}",
        &text[..200.min(text.len())]
    );
}

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
            && x.contains("<failure type=\"fd leak\" message=\""),
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

/// A command that ends at once is still sampled: it starts stopped at its
/// exec and its first sample is taken before it runs. 64 runs of `true`,
/// eight at a time (a loaded machine is where the race was lost), all PASS
/// with one sample or more.
#[test]
fn fast_command_never_flakes() {
    let dir = tempfile::tempdir().unwrap();
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for t in 0..8 {
            let (dir, results) = (dir.path(), &results);
            scope.spawn(move || {
                for i in 0..8 {
                    let report = dir.join(format!("r{t}-{i}.json"));
                    let (code, err) = run(&["--report", report.to_str().unwrap(), "--", "true"]);
                    let samples = std::fs::read(&report)
                        .ok()
                        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                        .and_then(|r| r["samples"].as_u64());
                    results.lock().unwrap().push((code, samples, err));
                }
            });
        }
    });
    let results = results.into_inner().unwrap();
    assert_eq!(results.len(), 64);
    let bad: Vec<_> = results
        .iter()
        .filter(|(code, samples, err)| {
            *code != 0 || samples.unwrap_or(0) < 1 || !err.starts_with("fdwatch PASS")
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{} of 64 runs of `run -- true` did not PASS: {:#?}",
        bad.len(),
        bad.first()
    );
}

/// A command that cannot start: one line naming it, exit 3, and the JUnit
/// and JSON reports still written (GitLab shows the job's report).
#[test]
fn missing_command_is_one_line_with_reports() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("j.xml");
    let report = dir.path().join("r.json");
    let (code, err) = run(&[
        "--junit",
        junit.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
        "--",
        "fdwatch-no-such-command",
    ]);
    assert_eq!(code, 3, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("fdwatch: cannot start fdwatch-no-such-command: ")
            && err.contains("No such file"),
        "{err}"
    );
    let x = std::fs::read_to_string(&junit).expect("a JUnit file");
    let doc = roxmltree::Document::parse(&x).expect("well-formed");
    let error = doc
        .descendants()
        .find(|n| n.has_tag_name("error"))
        .unwrap_or_else(|| panic!("an <error>: {x}"));
    assert!(
        error
            .attribute("message")
            .unwrap_or("")
            .contains("cannot start"),
        "{x}"
    );
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["exit_code"], 3, "{r}");
    assert_eq!(r["status"], "unknown", "{r}");
}

/// Starting the command traced must not change what it does: a set-user-ID
/// program run by an unprivileged fdwatch keeps its privilege (the kernel
/// drops it when an unprivileged tracer watches the exec).
#[test]
fn setuid_command_keeps_its_privilege() {
    if !require_root("run of a set-user-ID program as uid 65534 (needs root to make one)") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let id = dir.path().join("id");
    std::fs::copy("/usr/bin/id", &id).unwrap();
    std::fs::set_permissions(&id, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let out = fdwatch_as_nobody(&["run", "--", id.to_str().unwrap(), "-u"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0", "{err}");
    // nobody may not read a root process's fds: UNKNOWN, said as such.
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.starts_with("fdwatch UNKNOWN"), "{err}");
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

/// The `--report` of a `run` as JSON.
fn run_report(opts: &[&str], cmd: &[&str]) -> (i32, String, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let mut args = opts.to_vec();
    args.extend(["--report", report.to_str().unwrap(), "--"]);
    args.extend(cmd);
    let (code, err) = run(&args);
    let r = std::fs::read(&report)
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap_or_else(|e| panic!("no report ({e}): {err}"));
    (code, err, r)
}

/// As root, `run --backend bpf` samples with the BPF census, says so in its
/// report, and counts what `--backend proc` counts; with `--children` one
/// loaded program walks the command and each descendant.
#[test]
fn run_backend_bpf_counts_what_proc_counts() {
    if !require_bpf("run --backend bpf against --backend proc") {
        return;
    }
    let holds = format!(
        "{} workload --ignore-stdin --exit-after 1500ms --hold file:20 --hold pipe:5 \
         --hold socketpair:3 --hold udp-unbound:4 --hold netlink-unbound:2",
        bin()
    );
    let cmd: Vec<&str> = holds.split(' ').collect();
    let mut seen = Vec::new();
    for backend in ["bpf", "proc"] {
        let (code, err, r) = run_report(&["--interval", "100ms", "--backend", backend], &cmd);
        assert_eq!(code, 0, "{backend}: {err}");
        assert_eq!(r["backend"], backend, "{r}");
        assert!(r["samples"].as_u64().unwrap() >= 5, "{r}");
        let census = if backend == "bpf" {
            "BPF census"
        } else {
            "/proc census"
        };
        assert!(err.contains(census), "{err}");
        seen.push((r["fds_peak"].clone(), r["fds_end"].clone()));
    }
    assert_eq!(seen[0], seen[1], "bpf and proc: (peak, end)");
    // Peak: stdio + 20 files + 10 pipe ends + 6 socketpair ends + 6 sockets.
    assert!(seen[0].0.as_u64().unwrap() >= 42, "{seen:?}");

    // Two workload children of sh, summed.
    let script = format!("{holds} & {holds} & wait");
    let mut peaks = Vec::new();
    for backend in ["bpf", "proc"] {
        let (code, err, r) = run_report(
            &["--interval", "100ms", "--children", "--backend", backend],
            &["sh", "-c", &script],
        );
        assert_eq!(code, 0, "{backend}: {err}");
        assert_eq!(r["backend"], backend, "{r}");
        peaks.push(r["fds_peak"].as_u64().unwrap());
    }
    assert_eq!(peaks[0], peaks[1], "bpf and proc with --children");
    assert!(peaks[0] >= 2 * 42, "{peaks:?}");
}

/// As root, `assert --backend bpf` samples with the BPF census.
#[test]
fn assert_backend_bpf_reports_it() {
    if !require_bpf("assert --backend bpf") {
        return;
    }
    let w = Workload::start(&["--hold", "pipe:3"]);
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let mut fds = Vec::new();
    for backend in ["bpf", "proc"] {
        let out = fdwatch(&[
            "assert",
            "--pid",
            &w.pid_str(),
            "--for",
            "300ms",
            "--interval",
            "100ms",
            "--backend",
            backend,
            "--report",
            report.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{backend}: {err}");
        let r: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        assert_eq!(r["backend"], backend, "{r}");
        fds.push(r["fds_end"].clone());
    }
    assert_eq!(fds[0], fds[1]);
}

/// As a user without CAP_BPF: `run --backend bpf` and `assert --backend bpf`
/// exit 3 with one line naming what is missing, and `run` never starts the
/// command; `auto` runs it through /proc and says why in one line.
#[test]
fn backend_bpf_unprivileged_exits_3_before_the_command() {
    if !require_root("run/assert --backend bpf as uid 65534 (needs root to become it)") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let marker = dir.path().join("ran");
    let touch = format!("touch {}", marker.display());
    let out = fdwatch_as_nobody(&["run", "--backend", "bpf", "--", "sh", "-c", &touch]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("fdwatch: --backend bpf: ") && err.contains("CAP_BPF"),
        "{err}"
    );
    assert!(!marker.exists(), "the command must not have run");

    let w = nobody_workload(&["--hold", "pipe:2"]);
    let out = fdwatch_as_nobody(&[
        "assert",
        "--pid",
        &w.pid_str(),
        "--for",
        "200ms",
        "--backend",
        "bpf",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("fdwatch: --backend bpf: ") && err.contains("CAP_BPF"),
        "{err}"
    );

    // auto: the command runs, sampled through /proc, and the reason is said once.
    let out = fdwatch_as_nobody(&[
        "run",
        "--interval",
        "100ms",
        "--",
        bin(),
        "workload",
        "--ignore-stdin",
        "--exit-after",
        "500ms",
        "--hold",
        "pipe:2",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let said: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("using the /proc census"))
        .collect();
    assert_eq!(said.len(), 1, "{err}");
    assert!(said[0].starts_with("fdwatch: ") && said[0].contains("CAP_BPF"));
    assert!(
        err.contains("/proc census)"),
        "the report says which: {err}"
    );
}

//! `--stacks` on watch, check, run and serve: the C program of
//! tests/fixtures/stacks/leaky.c (built with frame pointers), leaking from
//! `leak_here` and churning from `churn_here` round after round
//! (`LEAKY_ROUNDS`), and each mode's output naming those functions: the
//! plain line's keys, check's long text, run's report and JUnit, serve's
//! site series (promtool). Teardown of watch and run checked with bpftool;
//! without privileges, one line and nothing else changed.
//!
//! Needs root (BPF), cc, bpftool, xmllint and promtool: each test says
//! loudly when it cannot run, and fails when `CI` is set.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::stacks::{build_c, need_tool, tracer_objects, wait_gone};
use common::{bin, require_bpf};
use nix::sys::signal::Signal;

/// One test at a time: the teardown checks count every stack tracer on
/// the machine.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn ready(what: &str, tools: &[(&str, &[&str])]) -> bool {
    require_bpf(what)
        && need_tool(what, "cc", &["--version"])
        && tools.iter().all(|(t, args)| need_tool(what, t, args))
}

/// The leaky program, working round after round for `rounds` × 100 ms:
/// 2 threads, each round 4 sockets + 4 files kept (`leak_here`) and 10 + 10
/// opened and closed (`churn_here`).
fn leaky(rounds: u32) -> Command {
    let mut c = Command::new(build_c(true));
    c.args(["2", "4", "10"])
        .env("LEAKY_ROUNDS", rounds.to_string())
        .env("LEAKY_GAP_MS", "100");
    c
}

/// A running leaky program (killed on drop).
struct Leaky(Child);

impl Leaky {
    fn start(rounds: u32) -> Leaky {
        let mut child = leaky(rounds)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start leaky");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("ready");
        assert_eq!(line.trim(), "ready");
        Leaky(child)
    }

    fn pid(&self) -> String {
        self.0.id().to_string()
    }
}

impl Drop for Leaky {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// fdwatch in the background, its stdout lines on a channel.
struct Fdwatch {
    child: Child,
    lines: Receiver<String>,
    err: std::thread::JoinHandle<String>,
}

impl Fdwatch {
    fn start(args: &[&str]) -> Fdwatch {
        let mut child = Command::new(bin())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start fdwatch");
        let out = child.stdout.take().expect("stdout");
        let mut err = child.stderr.take().expect("stderr");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let err = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        Fdwatch { child, lines, err }
    }

    fn line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(60))
            .expect("a line from fdwatch")
    }

    fn signal(&self, sig: Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig)
            .expect("signal fdwatch");
    }

    /// Its remaining stdout lines, stderr and exit code.
    fn wait(mut self) -> (Vec<String>, String, i32) {
        let code = self.child.wait().expect("wait").code().unwrap_or(-1);
        let rest: Vec<String> = self.lines.iter().collect();
        (rest, self.err.join().unwrap_or_default(), code)
    }
}

#[test]
fn watch_plain_lines_carry_the_leak_and_churn_sites() {
    if !ready("watch --stacks", &[]) {
        return;
    }
    let _one = serial();
    let prog = Leaky::start(300);
    let pid = prog.pid();
    let w = Fdwatch::start(&[
        "watch",
        "--pid",
        &pid,
        "--stacks",
        "--plain",
        "--count",
        "5",
        "--interval",
        "1s",
    ]);
    let first = w.line();
    let (rest, err, code) = w.wait();
    assert_eq!(code, 0, "{err}");
    assert!(err.is_empty(), "no note when tracing works: {err}");
    // The first snapshot is taken at the first sample (nothing seen yet);
    // the next one, 2 s later, has the sites.
    assert!(!first.contains("leak_site="), "{first}");
    let last = rest.last().expect("five lines");
    assert!(
        last.contains(" leak_site=leak_here leak_site_fds="),
        "{last}"
    );
    assert!(
        last.contains(" churn_site=churn_here churn_site_per_s="),
        "{last}"
    );
    let fds: u64 = last
        .split(" leak_site_fds=")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("a count");
    // 16 fds a round, 10 rounds a second: seconds of leaking were seen.
    assert!(fds >= 16, "{last}");
}

#[test]
fn check_long_text_names_the_leak_site_and_the_status_line_stays() {
    if !ready("check --stacks", &[]) {
        return;
    }
    let _one = serial();
    let prog = Leaky::start(300);
    let pid = prog.pid();
    let o = Command::new(bin())
        .args(["check", "--pid", &pid, "--stacks"])
        .output()
        .expect("check");
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    let mut lines = out.lines();
    let head = lines.next().unwrap_or("");
    assert!(head.starts_with("FDWATCH "), "{out}");
    assert!(!head.contains("leak_here"), "the status line stays: {head}");
    let perf = head.split_once(" | ").map(|x| x.1).unwrap_or("");
    assert!(perf.starts_with("fds="), "{head}");
    assert!(!perf.contains("site"), "perfdata unchanged: {perf}");
    let long: Vec<&str> = lines.collect();
    assert!(
        long.iter()
            .any(|l| l.trim_start().starts_with("leak: leak_here (via ")),
        "{out}"
    );
    assert!(
        long.iter()
            .any(|l| l.trim_start().starts_with("churn: churn_here (via ")),
        "{out}"
    );
    assert!(err.is_empty(), "{err}");
}

#[test]
fn run_report_json_and_junit_name_leak_here() {
    if !ready(
        "run --stacks",
        &[("xmllint", &["--version"]), ("bpftool", &["version"])],
    ) {
        return;
    }
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let (junit, report) = (dir.path().join("j.xml"), dir.path().join("r.json"));
    let leaky = build_c(true);
    // 3.5 s of work: snapshots at the start and 2 s in see the leaks alive.
    let o = Command::new(bin())
        .args(["run", "--stacks", "--fail-on", "never", "--junit"])
        .arg(&junit)
        .arg("--report")
        .arg(&report)
        .arg("--")
        .arg(&leaky)
        .args(["2", "4", "10"])
        .env("LEAKY_ROUNDS", "35")
        .env("LEAKY_GAP_MS", "100")
        .stdin(Stdio::null())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.lines()
            .any(|l| l.trim_start().starts_with("leak: leak_here (via ")),
        "{err}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("<system-out>"), "{xml}");
    assert!(xml.contains("leak: leak_here (via "), "{xml}");
    valid_junit(&junit);
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let leak = &r["stacks"]["leaks"][0];
    assert_eq!(leak["function"], "leak_here", "{r:#}");
    assert!(leak["open"].as_u64().unwrap_or(0) >= 16, "{leak:#}");
    assert_eq!(r["stacks"]["exited"], true, "{r:#}");
    assert_eq!(r["stacks"]["churn"][0]["function"], "churn_here", "{r:#}");
    assert_eq!(wait_gone(), (0, 0), "the tracer outlived run");
}

/// A failing step: the sites are in the `<failure>` body, and the file
/// stays valid JUnit.
#[test]
fn run_failure_body_names_leak_here() {
    if !ready("run --stacks failing", &[("xmllint", &["--version"])]) {
        return;
    }
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("j.xml");
    let o = Command::new(bin())
        .args(["run", "--stacks", "--max-growth", "0", "--junit"])
        .arg(&junit)
        .arg("--")
        .arg(build_c(true))
        .args(["2", "4", "10"])
        .env("LEAKY_ROUNDS", "30")
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    let failure = &xml[xml.find("<failure").expect("a failure")..];
    let failure = &failure[..failure.find("</failure>").unwrap()];
    assert!(failure.contains("leak: leak_here (via "), "{xml}");
    valid_junit(&junit);
}

fn valid_junit(path: &Path) {
    let xsd = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/junit-10.xsd");
    let o = Command::new("xmllint")
        .args(["--noout", "--schema"])
        .arg(xsd)
        .arg(path)
        .output()
        .expect("xmllint");
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stderr),
        std::fs::read_to_string(path).unwrap_or_default()
    );
}

/// GET with HTTP/1.0; the body.
fn http_get(addr: &str, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    Ok(text
        .split_once("\r\n\r\n")
        .map_or(text.clone(), |x| x.1.to_string()))
}

#[test]
fn serve_exports_the_site_series_and_promtool_accepts_them() {
    if !ready("serve --stacks", &[("promtool", &["--version"])]) {
        return;
    }
    let _one = serial();
    let prog = Leaky::start(300);
    let pid = prog.pid();
    let s = Fdwatch::start(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--pid",
        &pid,
        "--stacks",
        "--interval",
        "1s",
        "--top",
        "3",
    ]);
    let listening = s.line();
    let addr = listening
        .strip_prefix("listening on http://")
        .and_then(|r| r.strip_suffix("/metrics"))
        .expect("the address")
        .to_string();
    let want = format!("fdwatch_leak_site_open_fds{{pid=\"{pid}\",comm=\"leaky-fp\"");
    let end = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let body = http_get(&addr, "/metrics").unwrap_or_default();
        if body
            .lines()
            .any(|l| l.starts_with(&want) && l.contains("site=\"leak_here\""))
            || Instant::now() > end
        {
            break body;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    s.signal(Signal::SIGTERM);
    let (_, err, code) = s.wait();
    assert_eq!(code, 0, "{err}");
    assert!(
        body.lines()
            .any(|l| l.starts_with(&want) && l.contains(",site=\"leak_here\"} ")),
        "{body}"
    );
    assert!(
        body.lines()
            .any(|l| l.starts_with("fdwatch_churn_site_opens_per_second{")
                && l.contains(",site=\"churn_here\"} ")),
        "{body}"
    );
    // Top sites only: never more than 5 a list for the one process.
    let leak_series = body
        .lines()
        .filter(|l| l.starts_with("fdwatch_leak_site_open_fds{"))
        .count();
    assert!((1..=5).contains(&leak_series), "{body}");
    common::promtool_check_metrics(&body);
}

#[test]
fn watch_and_run_leave_nothing_behind_after_exit_sigint_or_sigterm() {
    if !ready("--stacks teardown", &[("bpftool", &["version"])]) {
        return;
    }
    let _one = serial();
    assert_eq!(
        wait_gone(),
        (0, 0),
        "a stack tracer of another run is loaded"
    );
    let prog = Leaky::start(600);
    let pid = prog.pid();
    for how in ["exit", "SIGINT", "SIGTERM"] {
        let count = if how == "exit" { "2" } else { "1000" };
        let w = Fdwatch::start(&[
            "watch",
            "--pid",
            &pid,
            "--stacks",
            "--plain",
            "--count",
            count,
            "--interval",
            "1s",
        ]);
        // The first line comes after the tracer attached.
        w.line();
        assert_eq!(tracer_objects().0, 1, "watch {how}: traced");
        match how {
            "SIGINT" => w.signal(Signal::SIGINT),
            "SIGTERM" => w.signal(Signal::SIGTERM),
            _ => {}
        }
        let (_, err, code) = w.wait();
        assert_eq!(code, 0, "watch {how}: {err}");
        assert_eq!(
            wait_gone(),
            (0, 0),
            "watch {how}: programs/maps left behind"
        );
    }
    drop(prog);
    for how in ["exit", "SIGINT", "SIGTERM"] {
        // The command runs 30 s unless signalled: run forwards the signal
        // to it and ends when it does.
        let rounds = if how == "exit" { "10" } else { "300" };
        let mut child = Command::new(bin())
            .args(["run", "--stacks", "--"])
            .arg(build_c(true))
            .args(["1", "1", "1"])
            .env("LEAKY_ROUNDS", rounds)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).expect("ready");
        assert_eq!(line.trim(), "ready", "run {how}");
        // The tracer is attached before the command runs.
        assert_eq!(tracer_objects().0, 1, "run {how}: traced");
        let sig = match how {
            "SIGINT" => Some(Signal::SIGINT),
            "SIGTERM" => Some(Signal::SIGTERM),
            _ => None,
        };
        if let Some(sig) = sig {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig)
                .expect("signal run");
        }
        let _ = std::io::copy(&mut out, &mut std::io::sink());
        let status = child.wait().expect("wait run");
        assert!(status.code().is_some(), "run {how}: {status:?}");
        assert_eq!(wait_gone(), (0, 0), "run {how}: programs/maps left behind");
    }
}

#[test]
fn without_privileges_one_line_and_everything_else_unchanged() {
    if !common::require_root("--stacks without privileges") {
        return;
    }
    let _one = serial();
    let w = common::nobody_workload(&["--hold", "pipe:2"]);
    let pid = w.pid.to_string();
    let need = "--stacks: fdwatch stacks needs root or CAP_BPF + CAP_PERFMON; fdwatch (uid 65534) lacks CAP_BPF and CAP_PERFMON; carrying on without stack sites";
    // watch: one line on stderr, the plain lines as always, no site keys.
    let o = common::fdwatch_as_nobody(&[
        "watch",
        "--pid",
        &pid,
        "--stacks",
        "--plain",
        "--count",
        "2",
        "--interval",
        "200ms",
        "--syscalls",
        "off",
        "--backend",
        "proc",
    ]);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_eq!(err.trim_end(), format!("fdwatch: {need}"), "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(!out.contains("site"), "{out}");
    // check: quiet in cron (nothing on stderr), the note in the long text.
    let o = common::fdwatch_as_nobody(&[
        "check",
        "--pid",
        &pid,
        "--stacks",
        "--samples",
        "1",
        "--syscalls",
        "off",
    ]);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(err.is_empty(), "{err}");
    assert!(out.starts_with("FDWATCH OK - "), "{out}");
    assert!(
        out.lines().skip(1).any(|l| l == format!("note: {need}")),
        "{out}"
    );
    // -v says it on stderr too.
    let o = common::fdwatch_as_nobody(&[
        "check",
        "--pid",
        &pid,
        "--stacks",
        "--samples",
        "1",
        "--syscalls",
        "off",
        "-v",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(need), "{err}");
}

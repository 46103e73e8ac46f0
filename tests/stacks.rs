//! `fdwatch stacks` on real programs built here (tests/fixtures/stacks/):
//! a C program built with and without frame pointers, a Rust program and a
//! Go program, each opening fds from known functions at known counts on
//! several threads; and teardown checked with bpftool.
//!
//! Needs root (BPF), cc, rustc, go and bpftool: each test says loudly when
//! it cannot run, and fails when `CI` is set.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::stacks::{build, build_c, build_dir, fixture, need_tool, tracer_objects, wait_gone};
use common::{bin, require_bpf};
use serde_json::Value;

/// One test at a time: the teardown checks count every fdwatch stack
/// tracer on the machine.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// A traced program: started, waiting for "go" on its stdin.
struct Prog {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Prog {
    fn start(path: &Path, args: &[&str]) -> Prog {
        let mut child = Command::new(path)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the program");
        let stdin = child.stdin.take();
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let p = Prog {
            child,
            stdin,
            lines: rx,
        };
        p.line("ready");
        p
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn line(&self, prefix: &str) -> String {
        let l = self
            .lines
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("no '{prefix}' line from the program"));
        assert!(l.starts_with(prefix), "expected '{prefix}', got '{l}'");
        l
    }

    fn go(&mut self) -> Vec<u64> {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "go")
            .and_then(|_| stdin.flush())
            .expect("go");
        self.line("done")
            .split_whitespace()
            .skip(1)
            .map(|n| n.parse().expect("a count"))
            .collect()
    }
}

impl Drop for Prog {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `fdwatch stacks` attached to a program (returns once it has attached).
struct Stacks {
    child: Child,
}

impl Stacks {
    fn attach(pid: &str, extra: &[&str]) -> Stacks {
        let mut child = Command::new(bin())
            .args(["stacks", "--pid", pid, "--top", "20"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start fdwatch stacks");
        let mut err = BufReader::new(child.stderr.take().expect("stderr"));
        let mut first = String::new();
        err.read_line(&mut first).expect("stderr line");
        assert!(
            first.starts_with("fdwatch: tracing"),
            "fdwatch stacks did not attach: {first}"
        );
        // Keep draining stderr so fdwatch never blocks on it.
        std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = err.read_to_string(&mut rest);
            if !rest.is_empty() {
                let _ = writeln!(std::io::stderr(), "fdwatch stacks stderr: {rest}");
            }
        });
        Stacks { child }
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig)
            .expect("signal fdwatch");
    }

    /// Stop it with SIGINT and return its stdout and exit code.
    fn finish(mut self, sig: nix::sys::signal::Signal) -> (String, i32) {
        self.signal(sig);
        self.wait()
    }

    fn wait(&mut self) -> (String, i32) {
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut out)
            .expect("read stdout");
        let status = self.child.wait().expect("wait");
        (out, status.code().unwrap_or(-1))
    }
}

/// Trace `prog` while it does its work; the JSON report and its counts.
fn trace(prog: &mut Prog) -> (Value, Vec<u64>) {
    let stacks = Stacks::attach(&prog.pid(), &["--for", "300s", "--json"]);
    let counts = prog.go();
    let (out, code) = stacks.finish(nix::sys::signal::Signal::SIGINT);
    assert_eq!(code, 0, "{out}");
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    (report, counts)
}

fn function(site: &Value) -> &str {
    site["function"].as_str().unwrap_or("")
}

fn within_2_percent(got: u64, want: u64) -> bool {
    want > 0 && (got as f64 - want as f64).abs() <= 0.02 * want as f64
}

fn sites<'a>(report: &'a Value, list: &str) -> &'a Vec<Value> {
    report[list].as_array().expect("a list of sites")
}

#[test]
fn c_with_frame_pointers_names_leak_here_and_churn_here() {
    if !require_bpf("stacks of a C program")
        || !need_tool("stacks of a C program", "cc", &["--version"])
    {
        return;
    }
    let _one = serial();
    let mut prog = Prog::start(&build_c(true), &["4", "250", "1000"]);
    let (report, counts) = trace(&mut prog);
    let (leaked, churned) = (counts[0], counts[1]);
    assert_eq!((leaked, churned), (2000, 8000), "the program's own counts");
    let leak = &sites(&report, "leaks")[0];
    assert_eq!(function(leak), "leak_here", "{leak:#}");
    let open = leak["open"].as_u64().unwrap();
    assert!(
        within_2_percent(open, leaked),
        "leak_here holds {open}, the program {leaked}"
    );
    assert_eq!(leak["kinds"]["udp"].as_u64(), Some(1000), "{leak:#}");
    assert_eq!(leak["kinds"]["file"].as_u64(), Some(1000), "{leak:#}");
    let churn = &sites(&report, "churn")[0];
    assert_eq!(function(churn), "churn_here", "{churn:#}");
    let opens = churn["opens"].as_u64().unwrap();
    assert!(
        within_2_percent(opens, churned),
        "churn_here opened {opens}, the program {churned}"
    );
    assert!(churn["closed_share"].as_f64().unwrap() >= 0.98, "{churn:#}");
    // A complete stack down to the thread's entry: worker called leak_here.
    let names: Vec<&str> = leak["frames"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert!(names.contains(&"worker"), "{names:?}");
    assert_eq!(leak["end"]["kind"], "complete", "{leak:#}");
}

#[test]
fn without_frame_pointers_stacks_end_early_and_name_no_wrong_caller() {
    if !require_bpf("stacks without frame pointers")
        || !need_tool("stacks without frame pointers", "cc", &["--version"])
    {
        return;
    }
    let _one = serial();
    // fopen_here's files are opened by libc's own code, whose frames have
    // no frame pointers: nothing above libc can be believed there.
    let mut prog = Prog::start(&build_c(false), &["2", "20", "20", "300"]);
    let (report, counts) = trace(&mut prog);
    assert_eq!(counts[0], 2 * (2 * 20 + 300));
    let leaks = sites(&report, "leaks");
    let top = &leaks[0];
    assert_eq!(top["open"].as_u64(), Some(600), "{top:#}");
    assert!(top["function"].is_null(), "no caller may be named: {top:#}");
    assert_eq!(
        top["note"].as_str(),
        Some("stack ends in libc: built without frame pointers"),
        "{top:#}"
    );
    assert!(top["title"]
        .as_str()
        .unwrap()
        .contains("code fdwatch cannot name"));
    // Every named site is a function that really opened fds, with exactly
    // its own fds: the fopen'd files are attributed to nobody else.
    for list in ["leaks", "churn"] {
        for site in sites(&report, list) {
            let f = function(site);
            assert!(
                f.is_empty() || f == "leak_here" || f == "churn_here",
                "a wrong caller is named: {site:#}"
            );
            if f == "leak_here" {
                assert_eq!(site["opens"].as_u64(), Some(80), "{site:#}");
            }
            if !f.is_empty() {
                assert!(
                    site["note"].as_str().unwrap_or("").contains("ends early"),
                    "{site:#}"
                );
                // Its callers (worker) cannot be seen without frame pointers.
                let frames = site["frames"].as_array().unwrap();
                assert!(frames.iter().all(|fr| fr["name"] != "worker"), "{site:#}");
            }
        }
    }
}

#[test]
fn rust_program_names_leak_here_and_churn_here() {
    if !require_bpf("stacks of a Rust program")
        || !need_tool("stacks of a Rust program", "rustc", &["--version"])
    {
        return;
    }
    let _one = serial();
    let path = build(
        "leaky-rs",
        Command::new("rustc")
            .args(["-O", "-g", "-C", "force-frame-pointers=yes", "-o"])
            .arg(build_dir().join("leaky-rs"))
            .arg(fixture("leaky.rs")),
    );
    let mut prog = Prog::start(&path, &["4", "200", "500"]);
    let (report, counts) = trace(&mut prog);
    let (leaked, churned, files) = (counts[0], counts[1], counts[2]);
    assert_eq!((leaked, churned, files), (1600, 4000, 800));
    let leak = &sites(&report, "leaks")[0];
    assert_eq!(function(leak), "leaky::leak_here", "{leak:#}");
    let open = leak["open"].as_u64().unwrap();
    assert!(
        within_2_percent(open, leaked),
        "leak_here holds {open}, the program {leaked}"
    );
    assert_eq!(leak["via"], "std::net::udp::UdpSocket::bind", "{leak:#}");
    let churn = &sites(&report, "churn")[0];
    assert_eq!(function(churn), "leaky::churn_here", "{churn:#}");
    let opens = churn["opens"].as_u64().unwrap();
    assert!(
        within_2_percent(opens, churned),
        "churn_here opened {opens}, the program {churned}"
    );
    // The files go through std's File::open and glibc's open64, whose stack
    // ends early: attributed to no function, not to a wrong one.
    for site in sites(&report, "leaks") {
        if site["kinds"]["file"].as_u64().unwrap_or(0) > 0 {
            assert!(site["function"].is_null(), "{site:#}");
            assert!(
                site["note"].as_str().unwrap_or("").contains("ends early"),
                "{site:#}"
            );
        }
    }
}

#[test]
fn go_interface_addrs_loop_names_net_interface_addrs_and_its_caller() {
    if !require_bpf("stacks of a Go program")
        || !need_tool("stacks of a Go program", "go", &["version"])
    {
        return;
    }
    let _one = serial();
    let dir = build_dir().join("go");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(fixture("leaky.go"), dir.join("main.go")).unwrap();
    let path = build(
        "leaky-go",
        Command::new("go")
            .args(["build", "-o"])
            .arg(build_dir().join("leaky-go"))
            .arg("main.go")
            .current_dir(&dir)
            .env("GOCACHE", build_dir().join("gocache"))
            .env("GOFLAGS", "-mod=mod")
            .env("GO111MODULE", "off"),
    );
    let mut prog = Prog::start(&path, &["1000"]);
    let (report, counts) = trace(&mut prog);
    let sockets = counts[0];
    assert_eq!(sockets, 2000);
    let churn = &sites(&report, "churn")[0];
    assert_eq!(function(churn), "main.logLine", "{churn:#}");
    assert_eq!(churn["via"], "net.InterfaceAddrs", "{churn:#}");
    let opens = churn["opens"].as_u64().unwrap();
    assert!(
        within_2_percent(opens, sockets),
        "logLine opened {opens}, the program {sockets}"
    );
    assert_eq!(churn["kinds"]["netlink"].as_u64(), Some(opens), "{churn:#}");
    assert!(churn["closed_share"].as_f64().unwrap() >= 0.98);
    let names: Vec<&str> = churn["frames"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert!(
        names.contains(&"net.InterfaceAddrs") && names.contains(&"main.main"),
        "{names:?}"
    );
    assert!(sites(&report, "leaks")
        .iter()
        .all(|s| s["open"] == 0 || function(s) != "main.logLine"));
}

#[test]
fn nothing_is_left_behind_after_exit_sigint_sigterm_or_sigkill() {
    if !require_bpf("stack tracer teardown")
        || !need_tool("stack tracer teardown", "bpftool", &["version"])
    {
        return;
    }
    if !need_tool("stack tracer teardown", "cc", &["--version"]) {
        return;
    }
    let _one = serial();
    let before = wait_gone();
    assert_eq!(before, (0, 0), "a stack tracer of another run is loaded");
    let prog = Prog::start(&build_c(true), &["1", "1", "1"]);
    use nix::sys::signal::Signal;
    for how in ["exit", "SIGINT", "SIGTERM", "SIGKILL"] {
        let for_ = if how == "exit" { "2s" } else { "300s" };
        let mut stacks = Stacks::attach(&prog.pid(), &["--for", for_]);
        assert_eq!(tracer_objects(), (1, 5), "{how}: loaded while tracing");
        let (out, code) = match how {
            "exit" => stacks.wait(),
            "SIGINT" => stacks.finish(Signal::SIGINT),
            "SIGTERM" => stacks.finish(Signal::SIGTERM),
            _ => stacks.finish(Signal::SIGKILL),
        };
        if how != "SIGKILL" {
            assert_eq!(code, 0, "{how}: {out}");
            assert!(out.contains("Leak sites"), "{how}: {out}");
        }
        assert_eq!(wait_gone(), (0, 0), "{how}: programs/maps left behind");
    }
}

#[test]
fn without_bpf_privileges_one_line_and_exit_3() {
    if !common::require_root("stacks without privileges") {
        return;
    }
    let _one = serial();
    let o = common::fdwatch_as_nobody(&["stacks", "--pid", "1", "--for", "1s"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("fdwatch: stacks: fdwatch stacks needs root or CAP_BPF + CAP_PERFMON; fdwatch (uid 65534) lacks CAP_BPF and CAP_PERFMON"),
        "{err}"
    );
    assert!(o.stdout.is_empty());
}

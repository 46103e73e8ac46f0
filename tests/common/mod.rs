//! Shared by the integration tests: the real binary, the bundled workload.
#![allow(dead_code)]

pub mod stacks;

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// A workload holding every kind the generator makes, in known numbers:
/// 7 files, the same file 50 times, 3 deleted, 2 dirs, 4 pipes (8 fds), 3 unix
/// socketpairs (6), 2 TCP listeners, 3 TCP pairs (6), 4 CLOSE_WAIT clients,
/// 2 bound + 3 unbound UDP, 6 bound + 2 unbound netlink ROUTE, 3 eventfds,
/// 2 epolls, 1 timerfd, 1 inotify.
pub const FULL_HOLD: &[&str] = &[
    "--hold",
    "file:7",
    "--hold",
    "same-file:50",
    "--hold",
    "deleted:3",
    "--hold",
    "dir:2",
    "--hold",
    "pipe:4",
    "--hold",
    "socketpair:3",
    "--hold",
    "tcp-listen:2",
    "--hold",
    "tcp:3",
    "--hold",
    "close-wait:4",
    "--hold",
    "udp:2",
    "--hold",
    "udp-unbound:3",
    "--hold",
    "netlink:6",
    "--hold",
    "netlink-unbound:2",
    "--hold",
    "eventfd:3",
    "--hold",
    "epoll:2",
    "--hold",
    "timerfd:1",
    "--hold",
    "inotify:1",
];

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_fdwatch")
}

pub fn fdwatch(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run fdwatch")
}

/// A running `fdwatch workload`. Dropping it closes its stdin (which ends
/// it), and kills it if it has not ended within a second.
pub struct Workload {
    child: Child,
    stdin: Option<ChildStdin>,
    pub pid: i32,
    lines: Receiver<String>,
}

impl Workload {
    pub fn start(args: &[&str]) -> Workload {
        Self::start_with(Command::new(bin()).arg("workload").args(args))
    }

    pub fn start_with(cmd: &mut Command) -> Workload {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn workload");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let ready = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("workload never said ready");
        let pid = ready
            .strip_prefix("ready ")
            .expect("ready line")
            .trim()
            .parse()
            .expect("pid");
        Workload {
            child,
            stdin,
            pid,
            lines: rx,
        }
    }

    /// Write one line to the workload's stdin (a script waiting for its cue).
    pub fn send_line(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").expect("write to the workload");
        stdin.flush().expect("flush");
    }

    /// Close the workload's stdin: it ends, as when its parent goes away.
    pub fn close_stdin(&mut self) {
        drop(self.stdin.take());
    }

    /// SIGKILL the workload and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Wait for the workload to exit.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().expect("wait for the workload")
    }

    /// The rest of the first line starting with `prefix`; panics after `timeout`.
    pub fn expect_line(&self, prefix: &str, timeout: Duration) -> String {
        let line = self
            .wait_line(prefix, timeout)
            .unwrap_or_else(|| panic!("no '{prefix}' line within {timeout:?}"));
        line[prefix.len()..].to_string()
    }

    /// Wait for a line starting with `prefix`.
    pub fn wait_line(&self, prefix: &str, timeout: Duration) -> Option<String> {
        let end = Instant::now() + timeout;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return Some(l),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
        None
    }

    pub fn pid_str(&self) -> String {
        self.pid.to_string()
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.close_stdin();
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run fdwatch, require success, and parse its stdout as JSON Lines.
pub fn json_lines(args: &[&str]) -> Vec<serde_json::Value> {
    let out = fdwatch(args);
    assert!(
        out.status.success(),
        "fdwatch {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// One full sample of `pid` as JSON, by the /proc census (the BPF one has
/// its own tests in tests/bpf.rs).
pub fn sample_json(pid: i32) -> serde_json::Value {
    sample_by(pid, "proc")
}

/// One full sample of `pid` as JSON, by the given `--backend`.
pub fn sample_by(pid: i32, backend: &str) -> serde_json::Value {
    let mut lines = json_lines(&[
        "--pid",
        &pid.to_string(),
        "--count",
        "1",
        "--json",
        "--backend",
        backend,
    ]);
    assert_eq!(lines.len(), 1, "one JSON object");
    lines.remove(0)
}

/// Copy a fixture tree (files and directories) to `to`.
pub fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

pub fn count(v: &serde_json::Value, map: &str, key: &str) -> i64 {
    v[map][key].as_i64().unwrap_or(0)
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Tests that need root say so loudly when they cannot run, and fail in CI
/// (which runs as root, so there they must run).
pub fn require_root(what: &str) -> bool {
    if is_root() {
        return true;
    }
    let msg = format!("SKIPPED: {what}: needs root");
    if std::env::var_os("CI").is_some() {
        panic!("{msg} (CI is set: this test must run)");
    }
    say_skipped(&msg);
    false
}

/// Print a skip on the real stderr: the test harness captures `eprintln!`
/// of passing tests, and a skip must never pass silently.
pub fn say_skipped(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{msg}");
}

/// Tests of the BPF census backend need root (or CAP_BPF + CAP_PERFMON) and
/// kernel BTF; like [`require_root`], they say so loudly when they cannot run.
pub fn require_bpf(what: &str) -> bool {
    if !require_root(what) {
        return false;
    }
    if std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        return true;
    }
    let msg = format!("SKIPPED: {what}: needs kernel BTF at /sys/kernel/btf/vmlinux");
    if std::env::var_os("CI").is_some() {
        panic!("{msg} (CI is set: this test must run)");
    }
    say_skipped(&msg);
    false
}

/// The sample fields the BPF and /proc census backends must report alike.
pub const BACKENDS_AGREE_ON: [&str; 6] = [
    "fds",
    "kinds",
    "tcp_states",
    "repeated_paths",
    "remote_endpoints",
    "deleted_bytes",
];

/// `fdwatch ARGS` as uid/gid 65534 (nobody), stdin closed.
pub fn fdwatch_as_nobody(args: &[&str]) -> Output {
    use std::os::unix::process::CommandExt;
    Command::new(bin())
        .args(args)
        .uid(65534)
        .gid(65534)
        .stdin(Stdio::null())
        .output()
        .expect("run fdwatch as nobody")
}

/// A workload owned by nobody (uid 65534), so that fdwatch as nobody may read it.
pub fn nobody_workload(args: &[&str]) -> Workload {
    use std::os::unix::process::CommandExt;
    Workload::start_with(
        Command::new(bin())
            .arg("workload")
            .args(args)
            .uid(65534)
            .gid(65534),
    )
}

/// Linux 5.17+ (CO-RE in BPF_PROG_LOAD), from `uname -r`.
pub fn kernel_does_core() -> bool {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor) >= (5, 17)
}

/// `promtool check metrics` accepts `body` (the exposition format as
/// Prometheus itself lints it); the test fails with promtool's words.
pub fn promtool_check_metrics(body: &str) {
    use std::io::Write;
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    check
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

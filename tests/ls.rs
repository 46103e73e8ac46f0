//! `fdwatch ls` on a real process holding every kind of fd: it agrees fd by
//! fd with /proc/PID/fd on both backends; `--kind`, `--json`, the table; a
//! target that opens and closes fds while it is listed.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{bin, require_bpf};
use serde_json::Value;

/// Opens one fd of every kind, prints `ready <pid> <json {fd: kind}>`,
/// then waits for stdin to close.
const HOLDER: &str = r#"
import ctypes, json, os, select, signal, socket, sys, tempfile
libc = ctypes.CDLL(None, use_errno=True)
kinds = {}
def note(fd, kind):
    kinds[fd if isinstance(fd, int) else fd.fileno()] = kind
d = tempfile.mkdtemp()
f = open(os.path.join(d, "kept"), "w+"); f.write("hello"); f.flush(); note(f, "regular")
g = open(os.path.join(d, "gone"), "w"); os.unlink(os.path.join(d, "gone")); note(g, "deleted")
dirfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY); note(dirfd, "directory")
r, w = os.pipe(); note(r, "pipe"); note(w, "pipe")
a, b = socket.socketpair(); note(a, "unix"); note(b, "unix")
lst = socket.socket(); lst.bind(("127.0.0.1", 0)); lst.listen(); note(lst, "tcp")
cli = socket.create_connection(lst.getsockname()); note(cli, "tcp")
srv, _ = lst.accept(); note(srv, "tcp")
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind(("127.0.0.1", 0)); note(udp, "udp")
nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0); nl.bind((0, 0)); note(nl, "netlink")
ev = os.eventfd(0); note(ev, "eventfd")
ep = select.epoll(); note(ep, "eventpoll")
tfd = libc.timerfd_create(1, 0); note(tfd, "timerfd")
mask = (ctypes.c_uint64 * 16)(1 << (signal.SIGUSR1 - 1))
sfd = libc.signalfd(-1, ctypes.byref(mask), 0); note(sfd, "signalfd")
ino = libc.inotify_init1(0); note(ino, "inotify")
mfd = os.memfd_create("ls-test"); note(mfd, "memfd")
for fd in (tfd, sfd, ino):
    assert fd >= 0, ctypes.get_errno()
print("ready", os.getpid(), json.dumps(kinds), flush=True)
sys.stdin.read()
"#;

struct Holder {
    child: Child,
    pid: i32,
    kinds: BTreeMap<i32, String>,
}

impl Holder {
    fn start() -> Holder {
        let mut child = Command::new("python3")
            .args(["-c", HOLDER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let mut parts = line.trim().splitn(3, ' ');
        assert_eq!(parts.next(), Some("ready"), "holder said {line:?}");
        let pid = parts.next().unwrap().parse().unwrap();
        let kinds: BTreeMap<String, String> = serde_json::from_str(parts.next().unwrap()).unwrap();
        let kinds = kinds
            .into_iter()
            .map(|(k, v)| (k.parse().unwrap(), v))
            .collect();
        Holder { child, pid, kinds }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ls_json(pid: i32, extra: &[&str]) -> Value {
    let out = Command::new(bin())
        .args(["ls", "--pid", &pid.to_string(), "--json"])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fdwatch ls {extra:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON document")
}

/// /proc/PID/fd as the test reads it itself: fd -> link target.
fn proc_fds(pid: i32) -> BTreeMap<i32, String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let fd = e.file_name().to_str().unwrap().parse().unwrap();
            let target = std::fs::read_link(e.path()).unwrap();
            (fd, target.to_string_lossy().into_owned())
        })
        .collect()
}

/// Every fd listed once, each with the target readlink gives and the kind
/// the holder made it as; sockets with their state and protocol.
fn agrees_with_proc(h: &Holder, doc: &Value, backend: &str) {
    assert_eq!(doc["backend"], backend);
    assert_eq!(doc["pid"], h.pid);
    let listed: Vec<&Value> = doc["fds"].as_array().unwrap().iter().collect();
    let fds: Vec<i64> = listed.iter().map(|e| e["fd"].as_i64().unwrap()).collect();
    let want = proc_fds(h.pid);
    assert_eq!(
        fds,
        want.keys().map(|k| *k as i64).collect::<Vec<_>>(),
        "{backend}: every fd once, in order"
    );
    assert_eq!(doc["total"], want.len());
    let by_fd: BTreeMap<i64, &Value> = listed
        .iter()
        .map(|e| (e["fd"].as_i64().unwrap(), *e))
        .collect();
    for (fd, target) in &want {
        let e = by_fd[&(*fd as i64)];
        let deleted = e["deleted"].as_bool().unwrap();
        let shown = if deleted {
            format!("{} (deleted)", e["target"].as_str().unwrap())
        } else {
            e["target"].as_str().unwrap().to_string()
        };
        assert_eq!(&shown, target, "{backend}: target of fd {fd}");
        if let Some(kind) = h.kinds.get(fd) {
            assert_eq!(
                e["kind"],
                kind.as_str(),
                "{backend}: kind of fd {fd} ({target})"
            );
        }
        assert!(
            e["flags"].is_array() && e["pos"].is_u64() && e["mnt_id"].is_u64(),
            "{e}"
        );
    }
    let of_kind =
        |k: &str| -> Vec<&Value> { listed.iter().copied().filter(|e| e["kind"] == k).collect() };
    // The file the holder wrote 5 bytes to: its position, its flags.
    let regular = h.kinds.iter().find(|(_, k)| *k == "regular").unwrap().0;
    let f = by_fd[&(*regular as i64)];
    assert_eq!(f["pos"], 5, "{backend}: {f}");
    assert_eq!(f["flags"][0], "rdwr", "{backend}: {f}");
    assert!(of_kind("deleted").iter().all(|e| e["deleted"] == true));
    assert!(of_kind("memfd").iter().all(|e| e["deleted"] == true));
    // Python makes its sockets close-on-exec.
    for s in of_kind("tcp") {
        assert!(
            s["flags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f == "cloexec"),
            "{s}"
        );
    }
    let mut states: Vec<&str> = of_kind("tcp")
        .iter()
        .map(|e| e["socket"]["state"].as_str().unwrap())
        .collect();
    states.sort();
    assert_eq!(
        states,
        ["ESTABLISHED", "ESTABLISHED", "LISTEN"],
        "{backend}"
    );
    for e in of_kind("tcp")
        .iter()
        .filter(|e| e["socket"]["state"] == "ESTABLISHED")
    {
        assert!(
            e["socket"]["remote"]
                .as_str()
                .unwrap()
                .starts_with("127.0.0.1:"),
            "{e}"
        );
    }
    let nl = of_kind("netlink");
    assert_eq!(nl.len(), 1);
    assert_eq!(nl[0]["socket"]["netlink_protocol"], "ROUTE", "{backend}");
    let unix = of_kind("unix");
    assert_eq!(unix.len(), 2);
    for u in &unix {
        assert_eq!(u["socket"]["protocol"], "UNIX-STREAM");
        assert_eq!(u["socket"]["state"], "CONNECTED");
        assert_eq!(u["socket"]["netns"], doc["netns"]);
    }
    if backend == "bpf" {
        // Each end of the pair names the other as its peer.
        assert_eq!(unix[0]["socket"]["peer_inode"], unix[1]["inode"]);
        assert_eq!(unix[1]["socket"]["peer_inode"], unix[0]["inode"]);
    }
    assert!(of_kind("udp")[0]["socket"]["local"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
}

#[test]
fn agrees_fd_by_fd_with_proc_on_the_proc_backend() {
    let h = Holder::start();
    agrees_with_proc(&h, &ls_json(h.pid, &["--backend", "proc"]), "proc");
}

#[test]
fn agrees_fd_by_fd_with_proc_on_the_bpf_backend() {
    if !require_bpf("fdwatch ls --backend bpf") {
        return;
    }
    let h = Holder::start();
    agrees_with_proc(&h, &ls_json(h.pid, &["--backend", "bpf"]), "bpf");
    // auto picks BPF where it can.
    assert_eq!(ls_json(h.pid, &[])["backend"], "bpf");
    // Both loaders (the kernel's CO-RE, aya's) load the listing and agree.
    let by = |loader: &str| -> Value {
        let out = Command::new(bin())
            .args([
                "ls",
                "--pid",
                &h.pid.to_string(),
                "--json",
                "--backend",
                "bpf",
            ])
            .env("FDWATCH_BPF_LOADER", loader)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{loader}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert_eq!(by("kernel"), by("aya"));
}

#[test]
fn kind_filters_and_the_table() {
    let h = Holder::start();
    let doc = ls_json(h.pid, &["--backend", "proc", "--kind", "tcp,unix"]);
    let kinds: Vec<&str> = doc["fds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.iter().filter(|k| **k == "tcp").count(), 3);
    assert_eq!(kinds.iter().filter(|k| **k == "unix").count(), 2);
    assert_eq!(kinds.len(), 5, "{kinds:?}");
    let sockets = ls_json(h.pid, &["--backend", "proc", "--kind", "socket"]);
    assert_eq!(sockets["fds"].as_array().unwrap().len(), 3 + 2 + 1 + 1);

    let out = Command::new(bin())
        .args([
            "ls",
            "--pid",
            &h.pid.to_string(),
            "--backend",
            "proc",
            "--kind",
            "eventfd",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with(&format!("pid {} (python3): ", h.pid)),
        "{text}"
    );
    assert!(
        lines[1]
            .split_whitespace()
            .collect::<Vec<_>>()
            .starts_with(&["FD", "TYPE", "FLAGS"]),
        "{text}"
    );
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[2].contains("eventfd") && lines[2].ends_with("anon_inode:[eventfd]"),
        "{text}"
    );

    let bad = Command::new(bin())
        .args(["ls", "--pid", &h.pid.to_string(), "--kind", "tpc"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(3));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("--kind tpc") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn no_such_process_is_unknown() {
    let out = Command::new(bin())
        .args(["ls", "--pid", "999999999", "--backend", "proc"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such process"));
}

/// A target that opens and closes fds as fast as it can: fds vanish between
/// the readdir and their reads, and that is never an error.
#[test]
fn a_target_closing_fds_while_listed() {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import os,sys\nprint('ready',flush=True)\nwhile True:\n    fs=[os.open('/dev/null',os.O_RDONLY) for _ in range(200)]\n    for f in fs: os.close(f)",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let pid = child.id().to_string();
    let mut backends = vec!["proc"];
    if common::is_root() {
        backends.push("bpf");
    }
    let start = Instant::now();
    let mut runs = 0;
    while runs < 30 && start.elapsed() < Duration::from_secs(20) {
        for b in &backends {
            let out = Command::new(bin())
                .args(["ls", "--pid", &pid, "--json", "--backend", b])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{b}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert!(doc["fds"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["target"].is_string()));
        }
        runs += 1;
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::io::stdout().flush();
}

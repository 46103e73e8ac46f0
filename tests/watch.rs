//! The sampler and the live view against real processes with known fds.

mod common;

use std::time::Duration;

use common::*;

/// The breakdown of a workload minus that of an empty one started the same way.
#[test]
fn full_breakdown_of_real_fds() {
    let base = Workload::start(&[]);
    let w = Workload::start(FULL_HOLD);
    let b = sample_json(base.pid);
    let s = sample_json(w.pid);
    let kind = |k: &str| count(&s, "kinds", k) - count(&b, "kinds", k);
    assert_eq!(kind("regular"), 7 + 50, "files + the same file 50 times");
    assert_eq!(kind("deleted"), 3);
    assert_eq!(kind("directory"), 2);
    assert_eq!(kind("pipe"), 8);
    assert_eq!(kind("unix"), 6);
    // 2 listeners + the workload's own listener + 3 pairs (2 each) + 4 CLOSE_WAIT clients.
    assert_eq!(kind("tcp"), 2 + 1 + 6 + 4);
    assert_eq!(
        kind("udp"),
        2 + 3,
        "unbound UDP named through sockprotoname"
    );
    assert_eq!(kind("netlink"), 8);
    assert_eq!(kind("eventfd"), 3);
    assert_eq!(kind("eventpoll"), 2);
    assert_eq!(kind("timerfd"), 1);
    assert_eq!(kind("inotify"), 1);
    assert_eq!(kind("socket_unresolved"), 0);
    let total: i64 = s["kinds"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_i64().unwrap())
        .sum();
    assert_eq!(
        total,
        s["fds"].as_i64().unwrap(),
        "kinds add up to the total"
    );
    assert_eq!(
        s["fds"].as_i64().unwrap() - b["fds"].as_i64().unwrap(),
        57 + 3 + 2 + 8 + 6 + 13 + 5 + 8 + 7
    );

    assert_eq!(count(&s, "tcp_states", "LISTEN"), 3);
    assert_eq!(count(&s, "tcp_states", "ESTABLISHED"), 6);
    assert_eq!(count(&s, "tcp_states", "CLOSE_WAIT"), 4);
    assert_eq!(count(&s, "netlink_protocols", "ROUTE"), 6);
    assert_eq!(
        count(&s, "netlink_protocols", "unknown"),
        2,
        "unbound: in no table"
    );
    let repeated = s["repeated_paths"].as_array().unwrap();
    assert_eq!(repeated[0]["count"], 50);
    assert!(repeated[0]["name"].as_str().unwrap().ends_with("/same"));
    let remote = &s["remote_endpoints"][0];
    assert_eq!(remote["count"], 3 + 4, "clients of the workload's listener");
    assert!(s["deleted_bytes"].as_u64().unwrap() >= 3 * 4096);
    assert_eq!(
        s["limits"]["soft"].as_u64(),
        Some(
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
                .unwrap()
                .0
        )
    );
    assert!(s["system"]["max"].as_u64().unwrap() > 0);
    assert_eq!(s["pid"].as_i64(), Some(w.pid as i64));
    assert_eq!(s["comm"], "leaky-workload");
    assert_eq!(s["backend"], "proc");
}

/// The screen shows the same numbers as the JSON.
#[test]
fn screen_table_shows_the_breakdown() {
    let w = Workload::start(&[
        "--soft-limit",
        "500",
        "--hold",
        "netlink:9",
        "--hold",
        "close-wait:2",
        "--hold",
        "eventfd:4",
    ]);
    let out = fdwatch(&["--pid", &w.pid_str(), "--count", "1", "--screen"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let row = |label: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no row {label} in\n{text}"))
            .to_string()
    };
    assert!(
        row("netlink sockets").split_whitespace().nth(2) == Some("9"),
        "{text}"
    );
    assert!(
        row("eventfds").split_whitespace().nth(1) == Some("4"),
        "{text}"
    );
    assert!(text.contains("/ soft 500 / hard"), "{text}");
    assert!(text.contains("CLOSE_WAIT 2"), "{text}");
    assert!(text.contains("netlink protocols: ROUTE 9"), "{text}");
    assert!(
        text.contains(&format!("pid {} (leaky-workload)", w.pid)),
        "{text}"
    );
}

#[test]
fn plain_lines_record_and_count_only() {
    let w = Workload::start(&["--hold", "pipe:3"]);
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec.jsonl");
    let out = fdwatch(&[
        "--pid",
        &w.pid_str(),
        "--count",
        "3",
        "--interval",
        "100ms",
        "--record",
        rec.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 3, "one plain line per sample: {text}");
    assert!(text
        .lines()
        .all(|l| l.contains(&format!("pid={}", w.pid)) && l.contains("level=")));
    let recorded = std::fs::read_to_string(&rec).unwrap();
    assert_eq!(recorded.lines().count(), 3);
    for l in recorded.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["schema"], 1);
        assert!(v["verdict"]["level"].is_string());
    }
    let full = sample_json(w.pid);
    let count_only = fdwatch(&[
        "--pid",
        &w.pid_str(),
        "--count",
        "1",
        "--json",
        "--census",
        "count",
    ]);
    let c: serde_json::Value = serde_json::from_slice(&count_only.stdout).unwrap();
    assert_eq!(c["fds"], full["fds"]);
    assert_eq!(c["backend"], "count");
}

#[test]
fn leak_is_seen_growing() {
    let w = Workload::start(&["--soft-limit", "100", "--leak", "netlink:40"]);
    let lines = json_lines(&[
        "--pid",
        &w.pid_str(),
        "--count",
        "8",
        "--interval",
        "250ms",
        "--json",
    ]);
    let last = lines.last().unwrap();
    assert!(
        last["change"]["since_start"].as_i64().unwrap() >= 20,
        "{last}"
    );
    assert!(
        last["kind_changes"]["netlink"]["since_start"]
            .as_i64()
            .unwrap()
            >= 20
    );
    let v = &last["verdict"];
    assert_ne!(v["level"], "OK", "{v}");
    assert_eq!(v["patterns"][0]["id"], "netlink_accumulation", "{v}");
    assert!(
        v["reasons"][0]
            .as_str()
            .unwrap()
            .contains("netlink ROUTE sockets"),
        "{v}"
    );
    let eta = v["forecast"]["eta"].as_f64().unwrap();
    // ~ (100 - held) / 40 per second.
    let held = last["fds"].as_f64().unwrap();
    let truth = (100.0 - held) / 40.0;
    assert!(
        (eta - truth).abs() <= 0.25 * truth + 1.0,
        "eta {eta} vs {truth}"
    );
}

#[test]
fn churn_race_never_errors() {
    let w = Workload::start(&[
        "--churn",
        "file:3000",
        "--churn",
        "pipe:3000",
        "--churn",
        "netlink:3000",
        "--churn",
        "tcp:500",
        "--threads",
        "2",
    ]);
    let lines = json_lines(&[
        "--pid",
        &w.pid_str(),
        "--count",
        "30",
        "--interval",
        "50ms",
        "--json",
    ]);
    assert_eq!(lines.len(), 30);
    for v in &lines {
        let fds = v["fds"].as_i64().unwrap();
        let sum: i64 = v["kinds"]
            .as_object()
            .unwrap()
            .values()
            .map(|x| x.as_i64().unwrap())
            .sum();
        assert_eq!(sum, fds);
        // Baseline ~6 fds, plus at most a few in flight per churn thread.
        assert!((3..60).contains(&fds), "fds {fds}");
    }
}

#[test]
fn target_exit_mid_watch_ends_cleanly() {
    let w = Workload::start(&["--exit-after", "1s"]);
    let out = fdwatch(&[
        "--pid",
        &w.pid_str(),
        "--interval",
        "200ms",
        "--count",
        "50",
    ]);
    assert!(out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("exited"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(String::from_utf8(out.stdout).unwrap().lines().count() >= 2);
}

fn assert_unknown(out: &std::process::Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("fdwatch: "), "{err}");
    assert!(err.contains(needle), "want '{needle}' in: {err}");
    assert!(!err.contains("panicked") && !err.contains("backtrace"));
    assert!(out.stdout.is_empty());
}

#[test]
fn errors_are_one_line_exit_3() {
    // A PID that is surely free: a child that has been reaped.
    let mut c = std::process::Command::new("true").spawn().unwrap();
    let dead = c.id().to_string();
    c.wait().unwrap();
    assert_unknown(
        &fdwatch(&["--pid", &dead, "--count", "1"]),
        "no such process",
    );
    assert_unknown(
        &fdwatch(&["--pid", "1", "--interval", "0"]),
        "greater than zero",
    );
    assert_unknown(
        &fdwatch(&["--pid", "1", "--interval", "abc"]),
        "not a duration",
    );
    assert_unknown(&fdwatch(&["--pid", "abc"]), "invalid value");
    assert_unknown(&fdwatch(&["--pid", "1", "--bogus"]), "--bogus");
    assert_unknown(
        &fdwatch(&["--pid", "1", "--warn-usage", "90%", "--crit-usage", "80%"]),
        "must not exceed",
    );
    assert_unknown(&fdwatch(&["--pid", "2", "--count", "1"]), "kernel thread");
    assert_unknown(&fdwatch(&[]), "nothing to do");
    assert!(fdwatch(&["--help"]).status.success());
}

#[test]
fn zombie_is_reported() {
    // A child that exits and is not reaped until we say so.
    let child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id().to_string();
    std::thread::sleep(Duration::from_millis(200));
    assert_unknown(&fdwatch(&["--pid", &pid, "--count", "1"]), "zombie");
    drop(child);
}

#[test]
fn another_users_process_is_permission_denied() {
    if !require_root("permission-denied test (a child that drops privileges)") {
        return;
    }
    use std::os::unix::process::CommandExt;
    let w = Workload::start(&[]);
    let out = std::process::Command::new(bin())
        .args(["--pid", &w.pid_str(), "--count", "1"])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert_unknown(&out, "CAP_SYS_PTRACE");
    assert!(String::from_utf8_lossy(&out.stderr).contains("permission denied"));
}

#[test]
fn path_with_newline_is_read_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let name = dir.path().join("a log\nwith newline");
    std::fs::write(&name, b"x").unwrap();
    let _f1 = std::fs::File::open(&name).unwrap();
    let _f2 = std::fs::File::open(&name).unwrap();
    let _f3 = std::fs::File::open(&name).unwrap();
    let s = sample_json(std::process::id() as i32);
    let paths: Vec<&str> = s["repeated_paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&name.to_str().unwrap()), "{paths:?}");
}

/// With exact counting, the live view names netlink churn with exact rates.
#[test]
fn exact_syscall_rates_name_netlink_churn() {
    if !require_root("exact syscall counting through perf tracepoints") {
        return;
    }
    let w = Workload::start(&[
        "--hold",
        "netlink:2",
        "--churn",
        "netlink:1000",
        "--threads",
        "2",
    ]);
    let lines = json_lines(&[
        "--pid",
        &w.pid_str(),
        "--count",
        "7",
        "--interval",
        "300ms",
        "--json",
        "--syscalls",
        "on",
    ]);
    let last = lines.last().unwrap();
    let rate = last["rates"]["syscalls"]["socket_netlink"]
        .as_f64()
        .expect("exact rates");
    assert!(
        (rate - 1000.0).abs() < 150.0,
        "netlink socket() {rate}/s vs 1000/s"
    );
    let v = &last["verdict"];
    assert_eq!(v["level"], "OK", "churn is not a leak: {v}");
    let p = v["patterns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "netlink_churn")
        .expect("netlink_churn pattern");
    assert!(p["summary"].as_str().unwrap().contains("(exact)"), "{p}");
    assert!(
        p["cause"].as_str().unwrap().contains("InterfaceAddrs"),
        "{p}"
    );
}

#[test]
fn record_and_plot_at_the_end() {
    let w = Workload::start(&["--soft-limit", "300", "--leak", "pipe:10"]);
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec.jsonl");
    let svg = dir.path().join("run.svg");
    let out = fdwatch(&[
        "--pid",
        &w.pid_str(),
        "--count",
        "6",
        "--interval",
        "100ms",
        "--record",
        rec.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        text.starts_with("<svg") && text.contains(&format!("pid {}", w.pid)),
        "{}",
        &text[..200.min(text.len())]
    );
    // --plot without --record is a usage error.
    let out = fdwatch(&[
        "--pid",
        &w.pid_str(),
        "--count",
        "1",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn ctrl_c_ends_a_watch_cleanly() {
    let w = Workload::start(&["--hold", "pipe:2"]);
    let child = std::process::Command::new(bin())
        .args(["--pid", &w.pid_str(), "--interval", "100ms"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // As root, loading the BPF census and the syscall counters takes a few
    // hundred milliseconds before the second sample.
    std::thread::sleep(Duration::from_millis(1500));
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = String::from_utf8(out.stdout).unwrap().lines().count();
    assert!(lines >= 3, "samples before Ctrl-C: {lines}");
}

/// The /proc census probes fds `0..count` and lists the directory only past
/// holes: a sparse table (holes low, fds up high) must still be counted fd by
/// fd, and the kinds only a link can tell (memfd, pidfd, nsfs, anon inodes,
/// unlinked files) must come out as a readlink-per-fd oracle says.
#[test]
fn sparse_table_and_pseudo_files_match_a_readlink_oracle() {
    let dir = tempfile::tempdir().unwrap();
    let script = r#"
import os, sys
d = sys.argv[1]
f = os.open('/etc/hostname', os.O_RDONLY)
for hi in (900, 5000, 19000):
    try:
        os.dup2(f, hi)
    except OSError:
        pass
low = [os.open('/etc/hostname', os.O_RDONLY) for _ in range(6)]
for fd in low[::2]:
    os.close(fd)
os.memfd_create('fdw-test')
os.pidfd_open(os.getpid())
os.open('/proc/self/ns/net', os.O_RDONLY)
os.mkfifo(d + '/fifo')
os.open(d + '/fifo', os.O_RDWR)
os.pipe()
os.eventfd(0)
g = os.open(d + '/gone', os.O_CREAT | os.O_RDWR)
os.unlink(d + '/gone')
os.open(d, os.O_RDONLY)
print('ready', os.getpid(), flush=True)
sys.stdin.read()
"#;
    let w = Workload::start_with(
        std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(dir.path()),
    );
    let s = sample_json(w.pid);

    // The oracle: every entry of /proc/PID/fd, classified by its link.
    let fd_dir = format!("/proc/{}/fd", w.pid);
    let mut want: std::collections::BTreeMap<&str, i64> = Default::default();
    let mut max_fd = 0;
    for e in std::fs::read_dir(&fd_dir).unwrap() {
        let e = e.unwrap();
        max_fd = max_fd.max(e.file_name().to_str().unwrap().parse::<i32>().unwrap());
        let link = std::fs::read_link(e.path()).unwrap();
        let link = link.to_str().unwrap();
        let kind = if link.starts_with("pipe:") {
            "pipe"
        } else if link.starts_with("anon_inode:[pidfd]") {
            "pidfd"
        } else if link.starts_with("anon_inode:[eventfd]") {
            "eventfd"
        } else if link.starts_with("/memfd:") {
            "memfd"
        } else if link.starts_with("net:[") {
            "other"
        } else if link.ends_with(" (deleted)") {
            "deleted"
        } else {
            use std::os::unix::fs::FileTypeExt;
            let t = std::fs::metadata(e.path()).unwrap().file_type();
            if t.is_dir() {
                "directory"
            } else if t.is_char_device() {
                "char_device"
            } else if t.is_fifo() {
                "fifo"
            } else if t.is_file() {
                "regular"
            } else {
                "unclassified by the oracle"
            }
        };
        *want.entry(kind).or_default() += 1;
    }
    assert!(max_fd >= 900, "the table is sparse (max fd {max_fd})");
    let total: i64 = want.values().sum();
    assert_eq!(s["fds"].as_i64(), Some(total), "every fd counted: {s}");
    for (kind, n) in &want {
        assert_eq!(count(&s, "kinds", kind), *n, "kind {kind}: {s}");
    }
    for kind in ["pidfd", "memfd", "other", "deleted", "fifo", "eventfd"] {
        assert!(want.contains_key(kind), "the child holds a {kind}");
    }
}

/// A watch remembers what cannot change about a socket (its protocol) and
/// nothing that can: a netlink socket bound between two samples gets its
/// protocol, a TCP socket that connects and is then closed by its peer shows
/// CLOSE_WAIT, a socket closed and a new one opened are told apart.
#[test]
fn a_watch_remembers_protocols_not_states() {
    use fdwatch::sample::{
        bpf::{Choice, Sampler},
        Census, ProcRoot,
    };
    let script = r#"
import os, socket, sys
nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
srv = socket.socket()
srv.bind(('127.0.0.1', 0))
srv.listen()
cli = socket.socket()
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
print('ready', os.getpid(), flush=True)
sys.stdin.readline()
nl.bind((0, 0))
cli.connect(srv.getsockname())
conn, _ = srv.accept()
conn.close()
udp.close()
u6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
print('step', flush=True)
sys.stdin.readline()
"#;
    let mut w = Workload::start_with(std::process::Command::new("python3").arg("-c").arg(script));
    let root = ProcRoot::default();
    let (mut sampler, _) = Sampler::open(Choice::Proc).unwrap();
    let first = sampler.take(&root, w.pid, Census::Full, None).unwrap();
    assert_eq!(
        first.netlink_protocols.get("unknown"),
        Some(&1),
        "{first:?}"
    );
    assert_eq!(first.tcp_states.get("LISTEN"), Some(&1));
    assert_eq!(
        first.kind(fdwatch::sample::FdKind::Tcp),
        2,
        "listener + unbound"
    );
    assert_eq!(first.kind(fdwatch::sample::FdKind::Udp), 1);

    w.send_line("go");
    w.expect_line("step", Duration::from_secs(10));
    // The peer's FIN arrives asynchronously: give the kernel a moment.
    let mut second = sampler.take(&root, w.pid, Census::Full, None).unwrap();
    for _ in 0..50 {
        if second.tcp_states.get("CLOSE_WAIT") == Some(&1) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        second = sampler.take(&root, w.pid, Census::Full, None).unwrap();
    }
    assert_eq!(
        second.netlink_protocols.get("ROUTE"),
        Some(&1),
        "{second:?}"
    );
    assert_eq!(second.netlink_protocols.get("unknown"), None);
    assert_eq!(second.tcp_states.get("CLOSE_WAIT"), Some(&1), "{second:?}");
    assert_eq!(second.tcp_states.get("LISTEN"), Some(&1));
    assert_eq!(second.kind(fdwatch::sample::FdKind::Udp), 0);
    assert_eq!(second.kind(fdwatch::sample::FdKind::Udp6), 1);
    // The same answers as a census from scratch.
    let fresh = fdwatch::sample::take(&root, w.pid, Census::Full, None).unwrap();
    assert_eq!(fresh.kinds, second.kinds);
    assert_eq!(fresh.tcp_states, second.tcp_states);
    assert_eq!(fresh.netlink_protocols, second.netlink_protocols);
}

/// A one-shot census names runs of sockets that only getxattr can name
/// without their stat; a mix of runs, broken runs, holes, bound and unbound
/// netlink sockets and TCP in between must come out exactly as the watch's
/// stat-first census (and as the child says it made them).
#[test]
fn a_one_shot_names_socket_runs_like_a_watch() {
    use fdwatch::sample::{
        bpf::{Choice, Sampler},
        Census, FdKind, ProcRoot,
    };
    let script = r#"
import os, socket, sys
keep = []
def udp(n): keep.extend(socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n))
def nl(n, bound):
    for _ in range(n):
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0 if bound else 16)
        if bound: s.bind((0, 0))
        keep.append(s)
udp(6)
keep.append(open('/proc/self/status'))
udp(5)
gap = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp(2)
gap.close()  # a hole inside a run
for _ in range(4): keep.extend(socket.socketpair())
srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen(); keep.append(srv)
for _ in range(2):
    c = socket.socket(); c.connect(srv.getsockname()); a, _ = srv.accept(); keep.extend([c, a])
nl(3, False)
nl(4, True)
nl(2, False)
nl(3, True)
keep.extend(socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) for _ in range(3))
keep.extend(os.pipe())
udp(3)
print('ready', os.getpid(), flush=True)
sys.stdin.readline()
"#;
    let w = Workload::start_with(std::process::Command::new("python3").arg("-c").arg(script));
    let root = ProcRoot::default();
    let one_shot = fdwatch::sample::take(&root, w.pid, Census::Full, None).unwrap();
    let (mut sampler, _) = Sampler::open(Choice::Proc).unwrap();
    sampler.take(&root, w.pid, Census::Full, None).unwrap();
    let watch = sampler.take(&root, w.pid, Census::Full, None).unwrap();

    assert_eq!(one_shot.kinds, watch.kinds);
    assert_eq!(one_shot.tcp_states, watch.tcp_states);
    assert_eq!(one_shot.netlink_protocols, watch.netlink_protocols);
    assert_eq!(one_shot.fds, watch.fds);
    assert_eq!(watch.named_without_stat, 0, "a watch stats every fd");
    // What the child made (python's own fds are files, pipes, dirs: no sockets).
    assert_eq!(one_shot.kind(FdKind::Udp), 16, "{one_shot:?}");
    assert_eq!(one_shot.kind(FdKind::Udp6), 3);
    assert_eq!(one_shot.kind(FdKind::Unix), 8);
    assert_eq!(one_shot.kind(FdKind::Tcp), 5);
    assert_eq!(one_shot.kind(FdKind::Netlink), 12);
    assert_eq!(one_shot.netlink("ROUTE"), 7, "{one_shot:?}");
    assert_eq!(one_shot.netlink("unknown"), 5);
    assert_eq!(one_shot.tcp_states.get("LISTEN"), Some(&1));
    assert_eq!(one_shot.tcp_states.get("ESTABLISHED"), Some(&4));
    // The shortcut itself ran. It is taken only where every mount is of a
    // local filesystem (a FUSE or Ceph file's getxattr asks its daemon).
    let mounts = std::fs::read_to_string(format!("/proc/{}/mountinfo", w.pid)).unwrap();
    let local = [
        "proc",
        "sysfs",
        "devtmpfs",
        "devpts",
        "tmpfs",
        "ext4",
        "xfs",
        "btrfs",
        "overlay",
        "cgroup",
        "cgroup2",
        "tracefs",
        "debugfs",
        "securityfs",
        "mqueue",
        "bpf",
        "hugetlbfs",
        "pstore",
        "configfs",
        "fusectl",
        "autofs",
        "binfmt_misc",
        "nsfs",
        "efivarfs",
    ];
    let other: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_once(" - ")?.1.split(' ').next())
        .filter(|t| !local.contains(t))
        .collect();
    if other.is_empty() {
        assert!(
            one_shot.named_without_stat >= 10,
            "named without stat: {}",
            one_shot.named_without_stat
        );
    } else {
        say_skipped(&format!(
            "SKIPPED (part): mounts of {other:?} here: a one-shot census may stat every fd"
        ));
    }
}

/// In a network namespace where no netlink socket of user space is bound
/// (a container, a host without udevd or networkd), every netlink socket a
/// process holds is unbound: a one-shot census names them by getxattr alone.
/// Once one is bound, its protocol shows again (stat + table). Both must
/// equal the watch's stat-first census and what the child made.
#[test]
fn a_one_shot_names_netlink_alone_where_none_is_bound() {
    use fdwatch::sample::{
        bpf::{Choice, Sampler},
        Census, FdKind, ProcRoot,
    };
    if !require_root("a fresh network namespace (unshare -n)") {
        return;
    }
    let netns = std::process::Command::new("unshare")
        .args(["-n", "true"])
        .status();
    if !netns.as_ref().is_ok_and(|s| s.success()) {
        // Root without CAP_SYS_ADMIN, or a container that forbids new namespaces.
        say_skipped(&format!(
            "SKIPPED: a one-shot census in a netns with no bound netlink socket: `unshare -n` fails here ({netns:?})"
        ));
        return;
    }
    let script = r#"
import os, socket, sys
keep = []
for proto in (0, 0, 0, 0, 16, 16, 16):
    keep.append(socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, proto))
keep.extend(socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(4))
keep.append(open('/proc/self/status'))
for _ in range(3):
    keep.append(socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0))
print('ready', os.getpid(), flush=True)
sys.stdin.readline()
keep[2].bind((0, 0))  # inside the run, not its stat-seen start
print('bound', flush=True)
sys.stdin.readline()
"#;
    let mut w = Workload::start_with(
        std::process::Command::new("unshare")
            .args(["-n", "python3", "-c"])
            .arg(script),
    );
    let root = ProcRoot::default();
    let pid = w.pid;
    let censuses = |label: &str| {
        let one_shot = fdwatch::sample::take(&root, pid, Census::Full, None).unwrap();
        let (mut sampler, _) = Sampler::open(Choice::Proc).unwrap();
        sampler.take(&root, pid, Census::Full, None).unwrap();
        let watch = sampler.take(&root, pid, Census::Full, None).unwrap();
        assert_eq!(one_shot.kinds, watch.kinds, "{label}");
        assert_eq!(
            one_shot.netlink_protocols, watch.netlink_protocols,
            "{label}"
        );
        assert_eq!(one_shot.kind(FdKind::Netlink), 10, "{label}: {one_shot:?}");
        assert_eq!(one_shot.kind(FdKind::Udp), 4, "{label}");
        one_shot
    };
    let unbound = censuses("none bound");
    assert_eq!(unbound.netlink("unknown"), 10, "{unbound:?}");

    w.send_line("bind");
    w.expect_line("bound", Duration::from_secs(10));
    let one_bound = censuses("one bound");
    assert_eq!(one_bound.netlink("ROUTE"), 1, "{one_bound:?}");
    assert_eq!(one_bound.netlink("unknown"), 9);
    // Named alone while none was bound: the netlink sockets of a run after
    // its first two (stat-seen before the run is trusted) took no stat;
    // with one bound, every netlink socket takes its stat again.
    assert!(
        unbound.named_without_stat >= one_bound.named_without_stat + 5,
        "named without stat: {} with none bound, {} with one bound",
        unbound.named_without_stat,
        one_bound.named_without_stat
    );
}

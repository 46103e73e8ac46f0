//! Exact syscall counts against the bundled workload's own counts.
//!
//! These need root (or CAP_PERFMON + readable tracefs). Without it each test
//! prints `SKIPPED: <reason>` on stderr, and fails when `CI` is set (CI runs as
//! root, so there the tests must run).

mod common;

use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::Workload;

use fdwatch::syscalls::{SyscallCounter, SyscallCounts, SyscallError};

/// The tests count perf fds in this process and count this process's own
/// syscalls: run them one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Loud skip; a failure under CI.
fn skip(reason: &str) {
    eprintln!("SKIPPED: {reason}");
    if std::env::var_os("CI").is_some() {
        panic!("CI is set, so this test must not be skipped: {reason}");
    }
}

/// Attach, or skip (return None) when the environment does not allow it.
fn attach_or_skip(pid: i32) -> Option<(SyscallCounter, Vec<String>)> {
    match SyscallCounter::attach(pid) {
        Ok(c) => Some(c),
        Err(SyscallError::Unavailable { reason }) => {
            skip(&reason);
            None
        }
        Err(e) => panic!("attach({pid}): {e}"),
    }
}

fn within(counted: u64, truth: u64, pct: f64) -> bool {
    (counted as f64 - truth as f64).abs() <= truth as f64 * pct / 100.0
}

fn perf_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|l| l.to_string_lossy() == "anon_inode:[perf_event]")
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn counts_netlink_churn_exactly_including_late_threads() {
    let _g = serial();
    let w = Workload::start(&[
        "--churn",
        "netlink:2000",
        "--threads",
        "2",
        "--late-threads",
        "2",
        "--late-after",
        "1s",
        "--start-after",
        "1s",
        "--churn-for",
        "3s",
    ]);
    let attached = Instant::now();
    let Some((mut counter, notes)) = attach_or_skip(w.pid) else {
        return;
    };
    eprintln!("notes: {notes:?}");
    // Mid-run, after the late threads started: every churn thread is a live
    // inherited child here (the directly attached main thread makes no
    // netlink calls), so a non-zero count proves read() includes them.
    std::thread::sleep(Duration::from_millis(3000).saturating_sub(attached.elapsed()));
    let mid = counter.read().expect("mid read");
    eprintln!("mid-run: {mid:?}");
    assert!(mid.socket_netlink > 0, "live inherited threads not counted");
    assert!(
        mid.threads >= 5,
        "main + stdin + 4 churn threads, got {}",
        mid.threads
    );

    let done = w.expect_line("done ", Duration::from_secs(20));
    let done: serde_json::Value = serde_json::from_str(&done).expect("done json");
    let c: SyscallCounts = counter.read().expect("final read");
    let child_netlink = done["netlink_socket_calls"].as_u64().unwrap();
    let child_close = done["close_calls"].as_u64().unwrap();
    let child_socket = done["socket_calls"].as_u64().unwrap();
    eprintln!(
        "counted netlink {} / child {child_netlink}; close {} / child {child_close}; socket {} / child {child_socket}; bind {}; total {}; threads now {}",
        c.socket_netlink, c.close, c.socket, c.bind, c.total, c.threads
    );
    assert!(child_netlink > 5000, "workload too slow: {done}");
    assert!(
        within(c.socket_netlink, child_netlink, 2.0),
        "netlink {} vs {child_netlink}",
        c.socket_netlink
    );
    // Every churned fd is closed by the child; it may close other fds too, so
    // the count can only be higher, and not by much.
    assert!(c.close >= child_close, "close {} < {child_close}", c.close);
    assert!(
        within(c.close, child_close, 2.0),
        "close {} vs {child_close}",
        c.close
    );
    assert!(within(c.socket, child_socket, 2.0));
    assert_eq!(c.socket_other(), 0);
    assert_eq!(c.socket_inet + c.socket_inet6 + c.socket_unix, 0);
    assert!(c.bind >= c.socket_netlink);
    assert!(c.total > c.socket + c.close + c.bind);
    assert!(mid.socket_netlink <= c.socket_netlink);
}

#[test]
fn counts_threads_whose_attached_creator_exited() {
    let _g = serial();
    // Thread A exists at attach time (attached directly), creates B after
    // attach and exits; B's calls still reach A's (now exited) counter.
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let a = std::thread::spawn(move || {
        go_rx.recv().unwrap();
        std::thread::spawn(|| {
            std::thread::sleep(Duration::from_millis(100)); // A is gone by now
            for _ in 0..500 {
                let fd = unsafe {
                    libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0)
                };
                assert!(fd >= 0);
                unsafe { libc::close(fd) };
            }
        })
    });
    let Some((mut counter, _)) = attach_or_skip(std::process::id() as i32) else {
        go_tx.send(()).unwrap();
        a.join().unwrap().join().unwrap();
        return;
    };
    go_tx.send(()).unwrap();
    let b = a.join().unwrap();
    let before_b = counter.read().unwrap();
    b.join().unwrap();
    let c = counter.read().unwrap();
    eprintln!(
        "netlink before B finished {}, after {}",
        before_b.socket_netlink, c.socket_netlink
    );
    assert_eq!(c.socket_netlink, 500);
    assert!(c.close >= 500);
}

#[test]
fn drop_closes_every_perf_fd() {
    let _g = serial();
    let w = Workload::start(&["--threads", "3", "--churn", "netlink:100"]);
    let before = perf_fds();
    let Some((mut counter, _)) = attach_or_skip(w.pid) else {
        return;
    };
    let during = perf_fds();
    assert_eq!(during - before, counter.fds());
    assert!(during > before);
    counter.read().unwrap();
    drop(counter);
    assert_eq!(perf_fds(), before, "perf fds left after drop");
    drop(w);
}

#[test]
fn dead_or_zombie_pid_is_exited() {
    let _g = serial();
    let mut child = Command::new("true").spawn().expect("spawn true");
    let pid = child.id() as i32;
    // A zombie (not yet reaped) is as good as dead.
    std::thread::sleep(Duration::from_millis(200));
    match SyscallCounter::attach(pid) {
        Err(SyscallError::Exited { pid: p }) => assert_eq!(p, pid),
        Err(e) => panic!("zombie: expected Exited, got {e}"),
        Ok(_) => panic!("zombie: attach succeeded"),
    }
    child.wait().unwrap();
    match SyscallCounter::attach(pid) {
        Err(e @ SyscallError::Exited { .. }) => {
            assert_eq!(e.to_string(), format!("pid {pid} exited"))
        }
        Err(e) => panic!("dead: expected Exited, got {e}"),
        Ok(_) => panic!("dead: attach succeeded"),
    }
    assert!(matches!(
        SyscallCounter::attach(-5),
        Err(SyscallError::Unavailable { .. })
    ));
}

#[test]
fn read_after_exit_is_exited() {
    let _g = serial();
    let mut w = Workload::start(&["--threads", "1"]);
    let Some((mut counter, _)) = attach_or_skip(w.pid) else {
        return;
    };
    counter.read().unwrap();
    w.close_stdin();
    w.wait();
    assert!(matches!(counter.read(), Err(SyscallError::Exited { .. })));
}

/// In a private mount namespace without tracefs, attach mounts it (as root)
/// and says so in a note. Runs in its own thread: unshare(CLONE_NEWNS) only
/// moves the calling thread.
#[test]
fn mounts_tracefs_when_missing_and_notes_it() {
    let _g = serial();
    let pid = std::process::id() as i32;
    let r = std::thread::spawn(move || -> Result<Vec<String>, String> {
        unsafe {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(format!(
                    "unshare(CLONE_NEWNS): {}",
                    std::io::Error::last_os_error()
                ));
            }
            let root = c"/";
            if libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return Err(format!(
                    "make / private: {}",
                    std::io::Error::last_os_error()
                ));
            }
            for dir in [
                c"/sys/kernel/tracing",
                c"/sys/kernel/debug/tracing",
                c"/sys/kernel/debug",
            ] {
                // Unmount every stacked copy.
                while libc::umount2(dir.as_ptr(), libc::MNT_DETACH) == 0 {}
            }
        }
        match SyscallCounter::attach(pid) {
            Ok((_, notes)) => Ok(notes),
            Err(e) => Err(e.to_string()),
        }
    })
    .join()
    .unwrap();
    match r {
        Ok(notes) => assert_eq!(
            notes,
            vec!["mounted tracefs at /sys/kernel/tracing".to_string()]
        ),
        Err(reason) => skip(&reason),
    }
}

//! Exact syscall counts against the bundled workload's own counts, for both
//! backends (BPF and perf).
//!
//! These need root (or the backend's capabilities). Without them each test
//! prints `SKIPPED: <reason>` on stderr, and fails when `CI` is set (CI runs
//! as root, so there the tests must run).

mod common;

use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{bin, kernel_does_core, require_root, Workload};

use fdwatch::sample::bpf::{Loader, LOADER_ENV};
use fdwatch::syscalls::{BackendChoice, SyscallCounter, SyscallCounts, SyscallError};

/// Every test body runs once per backend.
const BACKENDS: [BackendChoice; 2] = [BackendChoice::Bpf, BackendChoice::Perf];

/// The tests count kernel fds in this process and count this process's own
/// syscalls: run them one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Loud skip; a failure under CI.
fn skip(reason: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("CI is set, so this test must not be skipped: {reason}");
    }
    common::say_skipped(&format!("SKIPPED: {reason}"));
}

/// Attach with `backend`, or skip (return None) when the environment does
/// not allow it.
fn attach_or_skip(pid: i32, backend: BackendChoice) -> Option<(SyscallCounter, Vec<String>)> {
    match SyscallCounter::attach_with(pid, backend) {
        Ok(c) => {
            let want = match backend {
                BackendChoice::Bpf => "bpf",
                BackendChoice::Perf => "perf",
                BackendChoice::Auto => c.0.backend(),
            };
            assert_eq!(c.0.backend(), want);
            Some(c)
        }
        Err(SyscallError::Unavailable { reason }) => {
            skip(&format!("{backend:?}: {reason}"));
            None
        }
        Err(e) => panic!("attach({pid}, {backend:?}): {e}"),
    }
}

fn within(counted: u64, truth: u64, pct: f64) -> bool {
    (counted as f64 - truth as f64).abs() <= truth as f64 * pct / 100.0
}

/// fds of this process that hold kernel counting objects (perf events, BPF
/// programs, maps, links, BTF).
fn counter_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|l| {
                    let l = l.to_string_lossy();
                    l == "anon_inode:[perf_event]"
                        || l.starts_with("anon_inode:bpf")
                        || l == "anon_inode:btf"
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn counts_netlink_churn_exactly_including_late_threads() {
    let _g = serial();
    for backend in BACKENDS {
        counts_netlink_churn(backend);
    }
}

/// The BPF counter through each loader (the kernel applying the CO-RE
/// relocations, aya applying them in user space; `FDWATCH_BPF_LOADER`, as
/// for the census): the same counts, within 2 % of the workload's own.
#[test]
fn both_bpf_loaders_count_exactly() {
    let _g = serial();
    for (env, loader) in [("kernel", Loader::KernelCoRe), ("aya", Loader::Aya)] {
        if loader == Loader::KernelCoRe && !kernel_does_core() {
            skip("the kernel CO-RE loader needs Linux 5.17+ (CO-RE in BPF_PROG_LOAD)");
            continue;
        }
        /// Unsets the loader choice however the body ends.
        struct Unset;
        impl Drop for Unset {
            fn drop(&mut self) {
                std::env::remove_var(LOADER_ENV);
            }
        }
        // Under the serial lock: no other test reads the environment now.
        std::env::set_var(LOADER_ENV, env);
        let _unset = Unset;
        counts_netlink_churn_by(BackendChoice::Bpf, Some(loader));
    }
}

fn counts_netlink_churn(backend: BackendChoice) {
    counts_netlink_churn_by(backend, None)
}

/// With `loader`, the BPF counter must have been loaded that way.
fn counts_netlink_churn_by(backend: BackendChoice, loader: Option<Loader>) {
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
    let Some((mut counter, notes)) = attach_or_skip(w.pid, backend) else {
        return;
    };
    eprintln!("{backend:?} notes: {notes:?}");
    if let Some(loader) = loader {
        assert_eq!(counter.bpf_loader(), Some(loader));
    }
    // Mid-run, after the late threads started: every churn thread was
    // created after attach (the main thread makes no netlink calls), so a
    // non-zero count proves read() includes them while they live.
    std::thread::sleep(Duration::from_millis(3000).saturating_sub(attached.elapsed()));
    let mid = counter.read().expect("mid read");
    eprintln!("{backend:?} mid-run: {mid:?}");
    assert!(mid.socket_netlink > 0, "live late threads not counted");
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
        "{backend:?}: counted netlink {} / child {child_netlink}; close {} / child {child_close}; socket {} / child {child_socket}; bind {}; total {}; threads now {}",
        c.socket_netlink, c.close, c.socket, c.bind, c.total, c.threads
    );
    assert_eq!(c.backend.map(|b| b.as_str()), Some(counter.backend()));
    // Nominal: 2000/s shared by 4 threads, two for 3 s and two for 2 s =
    // 5000 calls; pacing lands on it or a little over, a loaded machine a
    // little under. Well under means the counts below prove little.
    assert!(child_netlink >= 4000, "workload too slow: {done}");
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

/// Other socket families land in their own counts: this process makes a
/// known number of each.
#[test]
fn counts_socket_families_apart() {
    let _g = serial();
    for backend in BACKENDS {
        let Some((mut counter, _)) = attach_or_skip(std::process::id() as i32, backend) else {
            continue;
        };
        let before = counter.read().unwrap();
        let families = [
            (libc::AF_INET, libc::SOCK_DGRAM, 3),
            (libc::AF_INET6, libc::SOCK_DGRAM, 4),
            (libc::AF_UNIX, libc::SOCK_DGRAM, 5),
            (libc::AF_NETLINK, libc::SOCK_RAW, 6),
            (libc::AF_PACKET, libc::SOCK_DGRAM, 2),
        ];
        for (family, ty, n) in families {
            for _ in 0..n {
                let fd = unsafe { libc::socket(family, ty | libc::SOCK_CLOEXEC, 0) };
                if fd >= 0 {
                    unsafe { libc::close(fd) };
                }
            }
        }
        let c = counter.read().unwrap();
        let d = |now: u64, then: u64| now - then;
        eprintln!("{backend:?}: {c:?}");
        assert_eq!(d(c.socket_inet, before.socket_inet), 3);
        assert_eq!(d(c.socket_inet6, before.socket_inet6), 4);
        assert_eq!(d(c.socket_unix, before.socket_unix), 5);
        assert_eq!(d(c.socket_netlink, before.socket_netlink), 6);
        // AF_PACKET is "other" (counted even when refused: entries count).
        assert_eq!(d(c.socket, before.socket), 20);
        assert_eq!(c.socket_other() - before.socket_other(), 2);
    }
}

#[test]
fn counts_threads_whose_attached_creator_exited() {
    let _g = serial();
    for backend in BACKENDS {
        threads_whose_creator_exited(backend);
    }
}

fn threads_whose_creator_exited(backend: BackendChoice) {
    // Thread A exists at attach time, creates B after attach and exits; B's
    // calls still count (perf: they reach A's exited counter; BPF: same tgid).
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
    let Some((mut counter, _)) = attach_or_skip(std::process::id() as i32, backend) else {
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
        "{backend:?}: netlink before B finished {}, after {}",
        before_b.socket_netlink, c.socket_netlink
    );
    assert_eq!(c.socket_netlink, 500);
    assert!(c.close >= 500);
}

/// The tgid filter: a busy second process is not counted, only the target.
#[test]
fn does_not_count_another_process() {
    let _g = serial();
    for backend in BACKENDS {
        let idle = Workload::start(&["--threads", "1"]);
        let busy = Workload::start(&[
            "--churn",
            "netlink:3000",
            "--threads",
            "2",
            "--start-after",
            "300ms",
            "--churn-for",
            "1500ms",
        ]);
        let Some((mut counter, _)) = attach_or_skip(idle.pid, backend) else {
            continue;
        };
        let attached = Instant::now();
        let done = busy.expect_line("done ", Duration::from_secs(20));
        let done: serde_json::Value = serde_json::from_str(&done).unwrap();
        let c = counter.read().unwrap();
        eprintln!("{backend:?}: idle target {c:?}; the busy one made {done}");
        assert!(done["netlink_socket_calls"].as_u64().unwrap() > 1000);
        assert_eq!(c.socket, 0, "{backend:?} counted another process");
        assert_eq!(c.close + c.bind, 0, "{backend:?} counted another process");
        // The idle workload waits on its stdin, and its main thread wakes
        // every 20 ms (one nanosleep each).
        let most = 100 + (attached.elapsed().as_secs_f64() * 60.0) as u64;
        assert!(
            c.total < most,
            "{backend:?}: {} syscalls of an idle target (at most {most})",
            c.total
        );
    }
}

#[test]
fn drop_closes_every_counter_fd() {
    let _g = serial();
    for backend in BACKENDS {
        let w = Workload::start(&["--threads", "3", "--churn", "netlink:100"]);
        let before = counter_fds();
        let Some((mut counter, _)) = attach_or_skip(w.pid, backend) else {
            continue;
        };
        let during = counter_fds();
        assert_eq!(during - before, counter.fds(), "{backend:?}");
        assert!(during > before);
        counter.read().unwrap();
        drop(counter);
        assert_eq!(counter_fds(), before, "{backend:?}: fds left after drop");
    }
}

/// The BPF counters of one process share one program (each program on
/// sys_enter costs every syscall on the host): each counts only its own
/// target, two on the same pid both count it all, and the program goes with
/// the last counter.
#[test]
fn bpf_counters_share_one_program() {
    let _g = serial();
    let before = counter_fds();
    let churn = |n: &str| {
        Workload::start(&[
            "--churn",
            n,
            "--threads",
            "1",
            "--start-after",
            "500ms",
            "--churn-for",
            "1s",
        ])
    };
    let (a, b) = (churn("netlink:1000"), churn("netlink:2000"));
    let Some((mut ca, _)) = attach_or_skip(a.pid, BackendChoice::Bpf) else {
        return;
    };
    let (mut cb, _) = SyscallCounter::attach_with(b.pid, BackendChoice::Bpf).unwrap();
    let (mut cb2, _) = SyscallCounter::attach_with(b.pid, BackendChoice::Bpf).unwrap();
    assert_eq!(
        counter_fds() - before,
        ca.fds(),
        "one program for three counters"
    );
    let truth = |w: &Workload| {
        let done = w.expect_line("done ", Duration::from_secs(20));
        let v: serde_json::Value = serde_json::from_str(&done).unwrap();
        v["netlink_socket_calls"].as_u64().unwrap()
    };
    let (ta, tb) = (truth(&a), truth(&b));
    let (na, nb, nb2) = (
        ca.read().unwrap().socket_netlink,
        cb.read().unwrap().socket_netlink,
        cb2.read().unwrap().socket_netlink,
    );
    eprintln!("a {na}/{ta}, b {nb}/{tb}, b again {nb2}/{tb}");
    assert_eq!((na, nb, nb2), (ta, tb, tb));
    // The first counter of b goes; the second still counts, from its start.
    drop(cb);
    assert_eq!(cb2.read().unwrap().socket_netlink, tb);
    drop(ca);
    drop(cb2);
    assert_eq!(counter_fds(), before, "the program outlived its counters");
    // A fresh program afterwards starts from zero.
    let Some((mut c, _)) = attach_or_skip(a.pid, BackendChoice::Bpf) else {
        return;
    };
    assert_eq!(c.read().unwrap().socket_netlink, 0);
}

/// One fdwatch counts at most MAX_TARGETS processes with BPF; `auto` then
/// counts the next ones with perf and says why.
#[test]
fn beyond_max_targets_auto_uses_perf() {
    let _g = serial();
    let n = fdwatch::syscalls::BPF_MAX_TARGETS as usize;
    let mut sleepers: Vec<std::process::Child> = (0..=n)
        .map(|_| Command::new("sleep").arg("60").spawn().expect("sleep"))
        .collect();
    let pids: Vec<i32> = sleepers.iter().map(|c| c.id() as i32).collect();
    let mut counters = Vec::new();
    for &pid in &pids[..n] {
        let Some((c, _)) = attach_or_skip(pid, BackendChoice::Bpf) else {
            for s in &mut sleepers {
                let _ = s.kill();
                let _ = s.wait();
            }
            return;
        };
        counters.push(c);
    }
    match SyscallCounter::attach_with(pids[n], BackendChoice::Bpf) {
        Err(SyscallError::Unavailable { reason }) => assert_eq!(
            reason,
            format!("the BPF syscall counter counts at most {n} processes per fdwatch")
        ),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("counted more than {n} processes with BPF"),
    }
    match SyscallCounter::attach_with(pids[n], BackendChoice::Auto) {
        Ok((c, notes)) => {
            assert_eq!(c.backend(), "perf");
            let why = format!(
                "BPF not possible: the BPF syscall counter counts at most {n} processes per fdwatch"
            );
            assert!(notes[0].ends_with(&why), "{notes:?}");
        }
        Err(SyscallError::Unavailable { reason }) => skip(&reason),
        Err(e) => panic!("{e}"),
    }
    // A slot freed is reused.
    counters.remove(3);
    let (c, _) = SyscallCounter::attach_with(pids[n], BackendChoice::Bpf).unwrap();
    assert_eq!(c.backend(), "bpf");
    drop(c);
    drop(counters);
    for s in &mut sleepers {
        let _ = s.kill();
        let _ = s.wait();
    }
}

/// The BPF program of an fdwatch that is SIGKILLed is gone from the kernel:
/// nothing is pinned, so its fds were its only references.
#[test]
fn killed_fdwatch_leaves_no_bpf_program() {
    let _g = serial();
    if !require_root("BPF syscall counter teardown") {
        return;
    }
    let w = Workload::start(&["--threads", "1"]);
    let mut fdw = Command::new(bin())
        .args(["--pid", &w.pid_str(), "--json", "--interval", "200ms"])
        .args(["--syscalls", "on", "--backend", "proc"])
        .env("FDWATCH_SYSCALLS_BACKEND", "bpf")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fdwatch");
    let mut out = std::io::BufReader::new(fdw.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut out, &mut first).unwrap();
    let v: serde_json::Value = match serde_json::from_str(&first) {
        Ok(v) => v,
        Err(_) => {
            let _ = fdw.kill();
            let out = fdw.wait_with_output().unwrap();
            return skip(&format!(
                "fdwatch gave no sample: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    };
    assert_eq!(v["syscalls"]["backend"], "bpf", "{v}");
    let ids = kernel_ids(fdw.id() as i32);
    assert!(
        ids.iter().any(|(k, _)| k == "prog_id"),
        "fdwatch holds no BPF program: {ids:?}"
    );
    fdw.kill().unwrap();
    fdw.wait().unwrap();
    // Programs are freed after an RCU grace period: allow a little time.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let live: Vec<u32> = aya::programs::loaded_programs()
            .filter_map(|p| Some(p.ok()?.id()))
            .collect();
        let left: Vec<&(String, u32)> = ids
            .iter()
            .filter(|(k, id)| k == "prog_id" && live.contains(id))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "programs still loaded after SIGKILL: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `prog_id` / `link_id` / `map_id` of every BPF fd `pid` holds.
fn kernel_ids(pid: i32) -> Vec<(String, u32)> {
    let mut ids = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).unwrap() {
        let Ok(text) = std::fs::read_to_string(e.unwrap().path()) else {
            continue;
        };
        for line in text.lines() {
            if let Some((k, v)) = line.split_once(':') {
                if matches!(k, "prog_id" | "link_id" | "map_id") {
                    if let Ok(id) = v.trim().parse() {
                        ids.push((k.to_string(), id));
                    }
                }
            }
        }
    }
    ids
}

#[test]
fn dead_or_zombie_pid_is_exited() {
    let _g = serial();
    for backend in BACKENDS {
        let mut child = Command::new("true").spawn().expect("spawn true");
        let pid = child.id() as i32;
        // A zombie (not yet reaped) is as good as dead.
        std::thread::sleep(Duration::from_millis(200));
        match SyscallCounter::attach_with(pid, backend) {
            Err(SyscallError::Exited { pid: p }) => assert_eq!(p, pid),
            Err(e) => panic!("{backend:?} zombie: expected Exited, got {e}"),
            Ok(_) => panic!("{backend:?} zombie: attach succeeded"),
        }
        child.wait().unwrap();
        match SyscallCounter::attach_with(pid, backend) {
            Err(e @ SyscallError::Exited { .. }) => {
                assert_eq!(e.to_string(), format!("pid {pid} exited"))
            }
            Err(e) => panic!("{backend:?} dead: expected Exited, got {e}"),
            Ok(_) => panic!("{backend:?} dead: attach succeeded"),
        }
        assert!(matches!(
            SyscallCounter::attach_with(-5, backend),
            Err(SyscallError::Unavailable { .. })
        ));
    }
}

#[test]
fn read_after_exit_is_exited() {
    let _g = serial();
    for backend in BACKENDS {
        let mut w = Workload::start(&["--threads", "1"]);
        let Some((mut counter, _)) = attach_or_skip(w.pid, backend) else {
            continue;
        };
        counter.read().unwrap();
        w.close_stdin();
        w.wait();
        assert!(matches!(counter.read(), Err(SyscallError::Exited { .. })));
    }
}

/// A target killed in the middle of a burst of syscalls: reads say Exited,
/// every time, and nothing panics.
#[test]
fn target_killed_mid_count_is_exited() {
    let _g = serial();
    for backend in BACKENDS {
        // Churn threads start after attach: perf misses threads created
        // while it attaches (docs/syscalls.md, "Known gap").
        let mut w = Workload::start(&[
            "--churn",
            "netlink:1000000",
            "--threads",
            "2",
            "--start-after",
            "300ms",
        ]);
        let Some((mut counter, _)) = attach_or_skip(w.pid, backend) else {
            continue;
        };
        let pid = w.pid;
        // Wait until it is churning.
        let deadline = Instant::now() + Duration::from_secs(10);
        while counter.read().unwrap().socket_netlink == 0 {
            assert!(
                Instant::now() < deadline,
                "{backend:?}: no churn counted: {:?}, tasks {:?}",
                counter.read(),
                std::fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.count())
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        w.kill();
        for _ in 0..3 {
            match counter.read() {
                Err(SyscallError::Exited { pid: p }) => assert_eq!(p, pid),
                other => panic!("{backend:?}: read after SIGKILL gave {other:?}"),
            }
        }
        drop(counter);
    }
}

/// In a private mount namespace without tracefs, the perf backend mounts it
/// (as root) and says so in a note; the BPF backend does not need it. Runs
/// in its own thread: unshare(CLONE_NEWNS) only moves the calling thread.
#[test]
fn mounts_tracefs_when_missing_and_notes_it() {
    let _g = serial();
    let pid = std::process::id() as i32;
    let r = std::thread::spawn(move || -> Result<(String, Vec<String>), String> {
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
        // BPF first, while tracefs is still missing here.
        let bpf = match SyscallCounter::attach_with(pid, BackendChoice::Bpf) {
            Ok((_, notes)) => format!("{notes:?}"),
            Err(e) => format!("BPF unavailable: {e}"),
        };
        match SyscallCounter::attach_with(pid, BackendChoice::Perf) {
            Ok((_, notes)) => Ok((bpf, notes)),
            Err(e) => Err(e.to_string()),
        }
    })
    .join()
    .unwrap();
    match r {
        Ok((bpf, notes)) => {
            eprintln!("BPF without tracefs: {bpf}");
            assert!(!bpf.contains("tracefs"), "{bpf}");
            assert_eq!(
                notes,
                vec![
                    "syscalls counted by perf tracepoint counters (16 per thread), as asked"
                        .to_string(),
                    "mounted tracefs at /sys/kernel/tracing".to_string()
                ]
            )
        }
        Err(reason) => skip(&reason),
    }
}

/// One `fdwatch --json --syscalls on` run of 3 samples on a churning
/// workload: (exit ok, last sample, stderr).
fn watch_syscalls(
    pid: &str,
    wrap: &[&str],
    env: &[(&str, &str)],
) -> (bool, Option<serde_json::Value>, String) {
    let mut cmd = Command::new(wrap.first().copied().unwrap_or(bin()));
    if !wrap.is_empty() {
        cmd.args(&wrap[1..]).arg(bin());
    }
    cmd.args([
        "--pid",
        pid,
        "--count",
        "3",
        "--interval",
        "300ms",
        "--json",
    ])
    .args(["--syscalls", "on", "--backend", "proc"])
    .env_remove("FDWATCH_SYSCALLS_BACKEND")
    .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run fdwatch");
    let last = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok());
    (
        out.status.success(),
        last,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// FDWATCH_SYSCALLS_BACKEND picks the backend; the JSON sample names it.
#[test]
fn env_picks_the_backend_and_json_names_it() {
    let _g = serial();
    if !require_root("exact syscall counting") {
        return;
    }
    let w = Workload::start(&["--churn", "netlink:500", "--threads", "1"]);
    // Counting with BPF (the default) is silent; with perf fdwatch says so.
    for (env, want, note) in [
        ("bpf", "bpf", None),
        ("perf", "perf", Some("fdwatch: syscalls counted by perf")),
        ("auto", "bpf", None),
    ] {
        let (ok, last, err) =
            watch_syscalls(&w.pid_str(), &[], &[("FDWATCH_SYSCALLS_BACKEND", env)]);
        assert!(ok, "{env}: {err}");
        let last = last.expect("a JSON sample");
        assert_eq!(last["syscalls"]["backend"], want, "{env}: {last}");
        assert!(last["syscalls"]["socket_netlink"].as_u64().unwrap() > 0);
        match note {
            Some(note) => assert!(err.contains(note), "{env}: {err}"),
            None => assert!(err.is_empty(), "{env}: {err}"),
        }
    }
    let (ok, _, err) = watch_syscalls(&w.pid_str(), &[], &[("FDWATCH_SYSCALLS_BACKEND", "ebpf")]);
    assert!(!ok);
    assert!(
        err.contains("FDWATCH_SYSCALLS_BACKEND=ebpf: expected auto, bpf or perf"),
        "{err}"
    );
}

/// Without CAP_BPF (CAP_PERFMON kept), `auto` falls back to perf and says
/// why in one line; `bpf` fails with that reason.
#[test]
fn without_cap_bpf_auto_falls_back_to_perf() {
    let _g = serial();
    if !require_root("dropping capabilities") {
        return;
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        return skip("setpriv (util-linux) is not installed");
    }
    let w = Workload::start(&["--churn", "netlink:500", "--threads", "1"]);
    let drop = [
        "setpriv",
        "--bounding-set",
        "-bpf,-sys_admin",
        "--inh-caps",
        "-bpf,-sys_admin",
    ];
    let (ok, last, err) = watch_syscalls(&w.pid_str(), &drop, &[]);
    assert!(ok, "{err}");
    assert_eq!(last.expect("a sample")["syscalls"]["backend"], "perf");
    let why = "fdwatch: syscalls counted by perf tracepoint counters (16 per thread): BPF not possible: the BPF syscall counter needs root or CAP_BPF + CAP_PERFMON; fdwatch (uid 0) lacks CAP_BPF";
    assert!(err.lines().any(|l| l == why), "{err}");
    let (ok, _, err) = watch_syscalls(&w.pid_str(), &drop, &[("FDWATCH_SYSCALLS_BACKEND", "bpf")]);
    assert!(!ok);
    assert!(
        err.contains("the BPF syscall counter needs root or CAP_BPF + CAP_PERFMON"),
        "{err}"
    );
}

/// fdwatch in a child pid namespace: the BPF filter would compare the wrong
/// pids, so `auto` counts with perf (which takes pids of fdwatch's own
/// namespace) and says why.
#[test]
fn in_a_child_pid_namespace_auto_uses_perf() {
    let _g = serial();
    if !require_root("unshare --pid") {
        return;
    }
    let script = format!(
        "{bin} workload --churn netlink:500 --threads 1 --ignore-stdin --exit-after 10s </dev/null >/dev/null & \
         sleep 0.3; {bin} --pid $! --count 3 --interval 300ms --json --syscalls on --backend proc",
        bin = bin()
    );
    let out = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "sh", "-c", &script])
        .env_remove("FDWATCH_SYSCALLS_BACKEND")
        .stdin(Stdio::null())
        .output()
        .expect("unshare");
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && err.contains("unshare failed") {
        return skip(&format!("unshare --pid: {err}"));
    }
    assert!(out.status.success(), "{err}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["syscalls"]["backend"], "perf", "{last}");
    assert!(last["syscalls"]["socket_netlink"].as_u64().unwrap() > 0);
    assert!(
        err.contains("BPF not possible: fdwatch runs in a child pid namespace"),
        "{err}"
    );
}

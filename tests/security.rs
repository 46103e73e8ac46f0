//! fdwatch as root on a shared host (docs/security.md): another user's
//! symlinks never make it write where it should not, every blocking point
//! ends on SIGTERM within a second, the state lock and `check -t` give up
//! with UNKNOWN, and no read of a pidfile or state file is unbounded.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// How a spawned fdwatch ended.
struct Ended {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    /// Peak resident set, KiB (from wait4's rusage).
    max_rss_kib: i64,
    /// From the SIGTERM (or the start, without one) to the exit.
    took: Duration,
}

/// Spawn `fdwatch args`; after `term_after` (if given) send SIGTERM; wait at
/// most `limit` from then for the exit. Kills it (and fails) when it is
/// still running, or when its resident set passes `rss_cap_kib`.
fn run(
    args: &[&str],
    term_after: Option<Duration>,
    limit: Duration,
    rss_cap_kib: i64,
) -> Result<Ended, String> {
    let child = Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    wait_for(child, term_after, limit, rss_cap_kib)
}

fn wait_for(
    mut child: std::process::Child,
    term_after: Option<Duration>,
    limit: Duration,
    rss_cap_kib: i64,
) -> Result<Ended, String> {
    use std::io::Read;
    let pid = child.id() as i32;
    let started = Instant::now();
    let mut from = started;
    let mut termed = term_after.is_none();
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid out-parameter.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: our own child; WNOHANG never blocks.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            break;
        }
        let rss = rss_kib(pid);
        let why = if rss > rss_cap_kib {
            Some(format!("resident set grew to {} MiB", rss >> 10))
        } else if termed && from.elapsed() > limit {
            Some(format!(
                "still running {:?} after {}",
                from.elapsed(),
                if term_after.is_some() {
                    "SIGTERM"
                } else {
                    "the start"
                }
            ))
        } else {
            None
        };
        if let Some(why) = why {
            let _ = child.kill();
            let _ = child.wait();
            return Err(why);
        }
        if !termed && started.elapsed() >= term_after.unwrap_or_default() {
            // SAFETY: a signal to our own child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            from = Instant::now();
            termed = true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = from.elapsed();
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut stdout);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    Ok(Ended {
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        stdout,
        stderr,
        max_rss_kib: usage.ru_maxrss,
        took,
    })
}

fn rss_kib(pid: i32) -> i64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// `cmd` as uid/gid 65534 (nobody), like `fdwatch_as_nobody`.
fn as_nobody(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run as nobody");
    assert!(
        out.status.success(),
        "{program} {args:?} as nobody: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn plant_symlink(target: &Path, link: &Path) {
    as_nobody(
        "ln",
        &["-s", target.to_str().unwrap(), link.to_str().unwrap()],
    );
}

/// A root-only place for victims, and a directory `mode` that nobody can
/// write into, both under one temporary directory nobody may traverse.
struct Arena {
    _base: tempfile::TempDir,
    victims: std::path::PathBuf,
    shared: std::path::PathBuf,
}

impl Arena {
    fn new(mode: u32) -> Arena {
        let base = tempfile::tempdir().unwrap();
        std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        let victims = base.path().join("victims");
        std::fs::create_dir(&victims).unwrap();
        std::fs::set_permissions(&victims, std::fs::Permissions::from_mode(0o700)).unwrap();
        let shared = base.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(mode)).unwrap();
        Arena {
            _base: base,
            victims,
            shared,
        }
    }

    fn victim(&self, name: &str) -> std::path::PathBuf {
        let p = self.victims.join(name);
        std::fs::write(&p, b"precious\n").unwrap();
        p
    }
}

/// `check` on one pid, /proc backend, no syscall counting, then `extra`.
fn check<'a>(pid: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "check",
        "--pid",
        pid,
        "--backend",
        "proc",
        "--syscalls",
        "off",
    ];
    args.extend_from_slice(extra);
    args
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn one_line(text: &str) -> &str {
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "one line, got {text:?}");
    lines[0]
}

/// The attack of issue 16 in a mode-0777 directory: nobody plants symlinks
/// at the names root's check will write (the state temp file with the
/// check's pid, the lock, the `--output` temp file) while its burst runs.
#[test]
fn symlinks_in_a_world_writable_directory_clobber_nothing() {
    if !require_root("symlink attack test (plants the links as uid 65534)") {
        return;
    }
    let a = Arena::new(0o777);
    let state_victim = a.victim("state");
    let prom_victim = a.victim("prom");
    let lock_victim = a.victims.join("created-by-the-lock");
    let w = Workload::start(&["--hold", "file:2"]);
    let state = a.shared.join("s.json");
    let out = a.shared.join("out.prom");
    plant_symlink(&lock_victim, &a.shared.join("s.json.lock"));
    let child = Command::new(bin())
        .args([
            "check",
            "--pid",
            &w.pid_str(),
            "--samples",
            "2",
            "--interval",
            "1s",
            "--backend",
            "proc",
            "--syscalls",
            "off",
            "--state",
            s(&state),
            "--format",
            "prometheus",
            "--output",
            s(&out),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // The names the check used to write through, predictable from its pid.
    plant_symlink(&state_victim, &a.shared.join(format!(".s.json.tmp.{pid}")));
    plant_symlink(&prom_victim, &a.shared.join(format!(".out.prom.{pid}.tmp")));
    let end = wait_for(child, None, Duration::from_secs(20), 1 << 20).unwrap();
    assert_eq!(
        std::fs::read(&state_victim).unwrap(),
        b"precious\n",
        "state victim overwritten"
    );
    assert_eq!(
        std::fs::read(&prom_victim).unwrap(),
        b"precious\n",
        "output victim overwritten"
    );
    assert!(
        !lock_victim.exists(),
        "the lock symlink made root create {}",
        lock_victim.display()
    );
    assert_eq!(end.code, Some(3), "{} {}", end.stdout, end.stderr);
    let line = one_line(&end.stdout);
    assert!(
        line.starts_with(&format!(
            "FDWATCH UNKNOWN - state file: refusing to write in {}",
            a.shared.display()
        )) && line.contains("writable by group and others (mode 0777) and not sticky"),
        "{line}"
    );
    assert!(one_line(&end.stderr).starts_with("fdwatch: state file: refusing to write in"));

    // `watch --record` into the same directory, through nobody's symlink.
    let record_victim = a.victim("record");
    let rec = a.shared.join("rec.jsonl");
    plant_symlink(&record_victim, &rec);
    let end = run(
        &[
            "--pid",
            &w.pid_str(),
            "--count",
            "1",
            "--plain",
            "--backend",
            "proc",
            "--record",
            s(&rec),
        ],
        None,
        Duration::from_secs(10),
        1 << 20,
    )
    .unwrap();
    assert_eq!(
        std::fs::read(&record_victim).unwrap(),
        b"precious\n",
        "record victim appended to"
    );
    assert_eq!(end.code, Some(3), "{}", end.stderr);
    let line = one_line(&end.stderr);
    assert!(
        line.contains("refusing to write in") && line.contains("mode 0777"),
        "{line}"
    );
}

/// In a sticky root-owned directory (what /tmp is) fdwatch may write, but a
/// name another user planted as a symlink is refused or replaced, never
/// followed (whatever `fs.protected_symlinks` says).
#[test]
fn symlinks_in_a_sticky_directory_are_refused_or_replaced() {
    if !require_root("symlink attack test (plants the links as uid 65534)") {
        return;
    }
    let a = Arena::new(0o1777);
    let w = Workload::start(&["--hold", "file:2"]);

    // The state file and its lock planted as symlinks: refused by name.
    let state_victim = a.victim("state");
    let lock_victim = a.victims.join("created-by-the-lock");
    let state = a.shared.join("s.json");
    plant_symlink(&state_victim, &state);
    plant_symlink(&lock_victim, &a.shared.join("s.json.lock"));
    let pid = w.pid_str();
    let check = |extra: &[&str]| {
        let mut args = vec![
            "check",
            "--pid",
            &pid,
            "--samples",
            "1",
            "--backend",
            "proc",
            "--syscalls",
            "off",
        ];
        args.extend_from_slice(extra);
        run(&args, None, Duration::from_secs(10), 1 << 20).unwrap()
    };
    let end = check(&["--state", s(&state)]);
    assert!(
        !lock_victim.exists(),
        "root created {}",
        lock_victim.display()
    );
    assert_eq!(std::fs::read(&state_victim).unwrap(), b"precious\n");
    assert_eq!(end.code, Some(3), "{}", end.stdout);
    let line = one_line(&end.stdout);
    assert!(
        line.contains(
            "s.json.lock: it is a symbolic link, and fdwatch never follows one when writing"
        ),
        "{line}"
    );

    // With the lock gone, the state file itself is refused.
    std::fs::remove_file(a.shared.join("s.json.lock")).unwrap();
    let end = check(&["--state", s(&state)]);
    assert_eq!(std::fs::read(&state_victim).unwrap(), b"precious\n");
    assert!(
        one_line(&end.stdout).contains("s.json: it is a symbolic link"),
        "{}",
        end.stdout
    );

    // A lock file nobody planted as a regular file of theirs: refused, not trusted.
    std::fs::remove_file(a.shared.join("s.json.lock")).unwrap();
    as_nobody("touch", &[s(&a.shared.join("s.json.lock"))]);
    std::fs::remove_file(&state).unwrap();
    let end = check(&["--state", s(&state)]);
    assert_eq!(end.code, Some(3), "{}", end.stdout);
    assert!(
        one_line(&end.stdout)
            .contains("s.json.lock: it belongs to uid 65534, not to root or the caller"),
        "{}",
        end.stdout
    );
    assert!(!state.exists(), "nothing written");

    // A directory on the way that is nobody's symlink (to a directory root
    // may write): not followed.
    let link = a.shared.join("dir");
    plant_symlink(&a.victims, &link);
    let end = check(&["--state", s(&link.join("s.json"))]);
    assert_eq!(end.code, Some(3), "{}", end.stdout);
    assert!(
        one_line(&end.stdout).contains("the symbolic link dir on the way belongs to uid 65534"),
        "{}",
        end.stdout
    );
    assert!(!a.victims.join("s.json.lock").exists() && !a.victims.join("s.json").exists());

    // An --output planted as a symlink is replaced by a file of our own.
    let prom_victim = a.victim("prom");
    let out = a.shared.join("out.prom");
    plant_symlink(&prom_victim, &out);
    let end = check(&["--format", "prometheus", "--output", s(&out)]);
    assert_eq!(end.code, Some(0), "{} {}", end.stdout, end.stderr);
    assert_eq!(std::fs::read(&prom_victim).unwrap(), b"precious\n");
    let meta = std::fs::symlink_metadata(&out).unwrap();
    assert!(
        meta.file_type().is_file(),
        "the link was replaced by a file"
    );
    assert!(
        std::fs::read_to_string(&out).unwrap().contains("fdwatch_"),
        "metrics written"
    );
}

/// `--record` to a FIFO used to block in open() for ever, deaf to SIGTERM.
#[test]
fn record_to_a_fifo_ends_within_a_second_of_sigterm() {
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let w = Workload::start(&["--hold", "file:2"]);
    let end = run(
        &[
            "--pid",
            &w.pid_str(),
            "--count",
            "100",
            "--plain",
            "--backend",
            "proc",
            "--record",
            s(&fifo),
        ],
        Some(Duration::from_millis(500)),
        Duration::from_secs(1),
        1 << 20,
    )
    .unwrap();
    assert!(end.took <= Duration::from_secs(1), "{:?}", end.took);
    assert_eq!(end.code, Some(3), "{}", end.stderr);
    let line = one_line(&end.stderr);
    assert!(
        line.starts_with("fdwatch: opening the recording") && line.contains("a FIFO"),
        "{line}"
    );
}

/// `check --pidfile FIFO` used to block reading it, deaf to SIGTERM.
#[test]
fn pidfile_fifo_ends_within_a_second_of_sigterm() {
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("pid");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let end = run(
        &["check", "--pidfile", s(&fifo), "--backend", "proc"],
        Some(Duration::from_millis(500)),
        Duration::from_secs(1),
        1 << 20,
    )
    .unwrap();
    assert_eq!(end.code, Some(3), "{}", end.stdout);
    let line = one_line(&end.stdout);
    assert!(
        line.starts_with("FDWATCH UNKNOWN - reading pidfile")
            && line.contains("a FIFO, not a regular file"),
        "{line}"
    );
}

/// `check --pidfile /dev/zero` used to read until the OOM killer came.
#[test]
fn pidfile_dev_zero_ends_at_once_and_stays_small() {
    let end = run(
        &["check", "--pidfile", "/dev/zero", "--backend", "proc"],
        None,
        Duration::from_secs(2),
        50 << 10,
    )
    .unwrap();
    assert!(
        end.max_rss_kib < 50 << 10,
        "peak RSS {} KiB",
        end.max_rss_kib
    );
    assert_eq!(end.code, Some(3));
    let line = one_line(&end.stdout);
    assert!(
        line.contains("/dev/zero: it is a character device, not a regular file"),
        "{line}"
    );
    eprintln!(
        "check --pidfile /dev/zero: {:?}, peak RSS {} KiB",
        end.took, end.max_rss_kib
    );
}

/// Hold `FILE.lock` the way another check run does.
fn hold_lock(state: &Path) -> std::fs::File {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(format!("{}.lock", state.display()))
        .unwrap();
    // SAFETY: flock on a file we hold.
    assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
    f
}

#[test]
fn sigterm_while_waiting_for_the_state_lock_ends_within_a_second() {
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("s.json");
    let _held = hold_lock(&state);
    let w = Workload::start(&["--hold", "file:2"]);
    let end = run(
        &check(
            &w.pid_str(),
            &["--samples", "1", "--state", s(&state), "-t", "30"],
        ),
        Some(Duration::from_millis(1500)),
        Duration::from_secs(1),
        1 << 20,
    )
    .unwrap();
    assert_eq!(end.code, Some(3), "{}", end.stdout);
    let line = one_line(&end.stdout);
    let want = format!(
        "FDWATCH UNKNOWN - stopped by SIGTERM waiting for the state file lock {}.lock, held by pid {} (",
        state.display(),
        std::process::id()
    );
    assert!(line.starts_with(&want), "{line}\nwanted {want}");
}

#[test]
fn a_held_state_lock_times_out_with_unknown_naming_the_holder() {
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("s.json");
    let _held = hold_lock(&state);
    let w = Workload::start(&["--hold", "file:2"]);
    let end = run(
        &check(
            &w.pid_str(),
            &["--samples", "1", "--state", s(&state), "-t", "2"],
        ),
        None,
        Duration::from_secs(4),
        1 << 20,
    )
    .unwrap();
    assert!(end.took >= Duration::from_secs(2), "{:?}", end.took);
    assert_eq!(end.code, Some(3), "{}", end.stdout);
    let line = one_line(&end.stdout);
    let want = format!(
        "FDWATCH UNKNOWN - timed out after 2s waiting for the state file lock {}.lock, held by pid {} (",
        state.display(),
        std::process::id()
    );
    assert!(line.starts_with(&want), "{line}\nwanted {want}");
}

#[test]
fn check_timeout_expiring_in_the_burst_is_unknown() {
    let w = Workload::start(&["--hold", "file:2"]);
    let end = run(
        &check(
            &w.pid_str(),
            &["--samples", "10", "--interval", "1s", "-t", "2"],
        ),
        None,
        Duration::from_secs(4),
        1 << 20,
    )
    .unwrap();
    assert!(end.took < Duration::from_millis(3500), "{:?}", end.took);
    assert_eq!(end.code, Some(3), "{}", end.stdout);
    assert_eq!(
        one_line(&end.stdout),
        "FDWATCH UNKNOWN - timed out after 2s during the burst of 10 samples"
    );
}

#[test]
fn an_oversized_state_file_is_refused_and_kept() {
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("s.json");
    let size = (16u64 << 20) + 1;
    std::fs::File::create(&state)
        .unwrap()
        .set_len(size)
        .unwrap();
    let w = Workload::start(&["--hold", "file:2"]);
    let end = run(
        &check(&w.pid_str(), &["--samples", "1", "--state", s(&state)]),
        None,
        Duration::from_secs(10),
        1 << 20,
    )
    .unwrap();
    assert_eq!(end.code, Some(3), "{}", end.stdout);
    let line = one_line(&end.stdout);
    assert!(
        line.contains("over the 16777216-byte cap (16 MiB): left as it is"),
        "{line}"
    );
    assert_eq!(
        std::fs::metadata(&state).unwrap().len(),
        size,
        "left as it is"
    );
    let names: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(!names.iter().any(|n| n.contains("corrupt")), "{names:?}");
}

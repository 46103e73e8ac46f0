//! `fdwatch top` on real processes: ranking, the kind that grows, selectors,
//! processes that exit, processes it may not read, PID reuse.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{bin, require_root, Workload};
use fdwatch::host::{Host, HostOptions, Selector};
use fdwatch::sample::ProcRoot;

fn top(args: &[&str]) -> (String, String, bool) {
    let out = Command::new(bin())
        .arg("top")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run fdwatch top");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

fn docs(args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (out, err, ok) = top(&all);
    assert!(ok, "top failed: {err}");
    out.lines()
        .map(|l| serde_json::from_str(l).expect("one JSON document per line"))
        .collect()
}

fn rows(doc: &serde_json::Value) -> &Vec<serde_json::Value> {
    doc["rows"].as_array().expect("rows")
}

#[test]
fn ranks_the_leak_first_and_names_its_kind() {
    let leak = Workload::start(&["--soft-limit", "4096", "--leak", "netlink:20"]);
    let steady = Workload::start(&["--hold", "pipe:40"]);
    let d = docs(&[
        "--pid",
        &leak.pid_str(),
        "--pid",
        &steady.pid_str(),
        "--interval",
        "250ms",
        "--count",
        "14",
    ]);
    assert_eq!(d.len(), 14);
    let last = d.last().unwrap();
    let r = rows(last);
    assert_eq!(r.len(), 2, "{last}");
    // Ranked by time to EMFILE: the leak first, with a finite forecast.
    assert_eq!(r[0]["pid"], leak.pid, "{last}");
    let eta = r[0]["eta_seconds"].as_f64().expect("a forecast");
    assert!(eta > 0.0 && eta < 4096.0 / 5.0, "eta {eta}");
    assert!(r[0]["slope_per_s"].as_f64().unwrap() > 5.0);
    assert_eq!(r[0]["kind"], "netlink", "{last}");
    assert_eq!(r[0]["soft_limit"], 4096);
    assert_eq!(r[0]["comm"], "leaky-workload");
    let me = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_default();
    assert_eq!(r[0]["user"], me.as_str());
    // The steady one: no forecast, no kind (never classified), never zero fds.
    assert_eq!(r[1]["pid"], steady.pid);
    assert!(r[1]["eta_seconds"].is_null());
    assert!(r[1]["fds"].as_u64().unwrap() >= 40);
    assert!(last["system"]["allocated"].as_u64().unwrap() > 0);
}

#[test]
fn plain_table_when_not_a_terminal() {
    let w = Workload::start(&["--hold", "pipe:3"]);
    let (out, err, ok) = top(&["--pid", &w.pid_str(), "--count", "1"]);
    assert!(ok, "{err}");
    let mut lines = out.lines();
    assert!(lines.next().unwrap().starts_with("fdwatch top — "), "{out}");
    assert!(lines.next().unwrap().starts_with("system: "), "{out}");
    let head: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        head,
        [
            "PID",
            "USER",
            "COMMAND",
            "FDS",
            "SOFT",
            "USE%",
            "SLOPE/min",
            "ETA",
            "KIND",
            "VERDICT"
        ]
    );
    let row = lines.next().unwrap();
    assert!(
        row.contains(&w.pid_str()) && row.contains("leaky-workload"),
        "{out}"
    );
    assert!(row.trim_end().ends_with("OK"), "{out}");
    assert!(!out.contains('\x1b'), "no escape codes when piped");
}

#[test]
fn selectors() {
    let w = Workload::start(&["--hold", "pipe:3"]);
    let me = nix::unistd::getuid().as_raw().to_string();
    let has = |args: &[&str]| -> bool {
        let mut a = vec!["--count", "1", "--limit", "0"];
        a.extend_from_slice(args);
        docs(&a)[0]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["pid"] == w.pid)
    };
    assert!(has(&["--user", &me]));
    assert!(!has(&[
        "--user",
        &(nix::unistd::getuid().as_raw() + 4242).to_string()
    ]));
    assert!(has(&["--cgroup", "/"]));
    assert!(!has(&["--cgroup", "/no/such/cgroup"]));
    assert!(!has(&["--container", "0123456789ab"]));
    assert!(has(&["--exe", bin()]));
    assert!(has(&["--name", "leaky-*"]));
    assert!(!has(&["--name", "nginx"]));
    let (_, err, ok) = top(&["--user", "no-such-user-here", "--count", "1"]);
    assert!(!ok && err.starts_with("fdwatch: "), "{err}");
}

#[test]
fn processes_that_exit_are_dropped() {
    let w = Workload::start(&["--hold", "pipe:3", "--exit-after", "1s"]);
    let d = docs(&["--pid", &w.pid_str(), "--interval", "300ms", "--count", "8"]);
    assert!(rows(&d[0]).iter().any(|r| r["pid"] == w.pid));
    assert!(rows(d.last().unwrap()).is_empty(), "{}", d.last().unwrap());
}

fn fixture(dir: &Path) -> std::path::PathBuf {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                copy(&e.path(), &to.join(e.file_name()));
            } else {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }
    let proc = dir.join("proc");
    copy(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/proc"),
        &proc,
    );
    let fd = proc.join("4242/fd");
    std::fs::create_dir_all(&fd).unwrap();
    for n in 0..5 {
        std::fs::write(fd.join(n.to_string()), "").unwrap();
    }
    proc
}

#[test]
fn unreadable_processes_are_counted_never_shown_as_zero() {
    if !require_root("running top as another user") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let proc = fixture(tmp.path());
    std::fs::set_permissions(proc.join("4242/fd"), std::fs::Permissions::from_mode(0o500)).unwrap();
    let out = Command::new(bin())
        .args(["top", "--json", "--count", "1", "--proc-root"])
        .arg(&proc)
        .uid(65534)
        .gid(65534)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["unreadable"], 1, "{doc}");
    assert!(rows(&doc).is_empty(), "{doc}");
    // The plain header says so in words.
    let out = Command::new(bin())
        .args(["top", "--count", "1", "--proc-root"])
        .arg(&proc)
        .uid(65534)
        .gid(65534)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("1 not readable (need CAP_SYS_PTRACE"),
        "{text}"
    );
}

#[test]
fn a_reused_pid_starts_a_new_story() {
    let tmp = tempfile::tempdir().unwrap();
    let proc = fixture(tmp.path());
    let mut host = Host::new(
        ProcRoot::new(&proc),
        Selector::default(),
        HostOptions {
            thresholds: Default::default(),
            classify: 0,
            top_by_usage: None,
            stacks: false,
        },
    );
    for _ in 0..3 {
        host.refresh().unwrap();
    }
    let snap = host.refresh().unwrap();
    assert_eq!(snap.rows.len(), 1);
    assert_eq!(snap.rows[0].verdict.samples, 4);
    assert_eq!(snap.rows[0].fds, 5);
    // Same pid, another start time: another process.
    let stat = proc.join("4242/stat");
    let text = std::fs::read_to_string(&stat).unwrap();
    std::fs::write(&stat, text.replace(" 76957 ", " 99999 ")).unwrap();
    let snap = host.refresh().unwrap();
    assert_eq!(snap.rows[0].start_time, 99999);
    assert_eq!(snap.rows[0].verdict.samples, 1);
    // Gone: its state is dropped.
    std::fs::remove_dir_all(proc.join("4242")).unwrap();
    let snap = host.refresh().unwrap();
    assert!(snap.rows.is_empty());
    assert_eq!(host.tracked(), 0);
}

/// Issue 15 (top/serve): a process that exits loses its whole fd table
/// before it becomes a zombie; a scan in that window read 0 fds and showed
/// an exit as a drop to 0. Scanned back to back through its exit, a process
/// holding 5,000 sockets never shows fewer: it is there, then gone.
#[test]
fn an_exit_is_a_process_gone_not_a_drop_to_zero() {
    let w = Workload::start(&[
        "--soft-limit",
        "6000",
        "--hold",
        "netlink:5000",
        "--exit-after",
        "1500ms",
        "--ignore-stdin",
    ]);
    let mut host = Host::new(
        ProcRoot::default(),
        Selector {
            pids: vec![w.pid],
            ..Selector::default()
        },
        HostOptions {
            thresholds: Default::default(),
            classify: 0,
            top_by_usage: None,
            stacks: false,
        },
    );
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let (mut seen, mut low) = (Vec::new(), Vec::new());
    while std::time::Instant::now() < end {
        let snap = host.refresh().expect("refresh");
        match snap.rows.iter().find(|r| r.pid == w.pid) {
            Some(r) if r.fds >= 5000 => seen.push(r.fds),
            Some(r) => low.push(r.fds),
            None if !seen.is_empty() => break,
            None => {}
        }
    }
    assert!(seen.len() >= 5, "only {} scans saw the process", seen.len());
    assert!(
        low.is_empty(),
        "{} of {} scans read the exit as a drop: {low:?}",
        low.len(),
        seen.len() + low.len()
    );
}

/// `--pidfile` on top/serve follows the file: a restarted daemon writes a
/// new pid, and the next refresh shows the new process, not the old one.
#[test]
fn pidfile_is_read_again_at_every_refresh() {
    let d = tempfile::tempdir().unwrap();
    let pidfile = d.path().join("daemon.pid");
    let a = Workload::start(&["--hold", "file:3"]);
    let b = Workload::start(&["--hold", "file:5"]);
    std::fs::write(&pidfile, format!("{}\n", a.pid)).unwrap();
    let mut host = Host::new(
        ProcRoot::default(),
        Selector {
            pidfile: Some(pidfile.clone()),
            ..Selector::default()
        },
        HostOptions {
            thresholds: Default::default(),
            classify: 0,
            top_by_usage: None,
            stacks: false,
        },
    );
    let pids = |host: &mut Host| -> Vec<i32> {
        let snap = host.refresh().expect("refresh");
        snap.rows.iter().map(|r| r.pid).collect()
    };
    assert_eq!(pids(&mut host), vec![a.pid]);
    std::fs::write(&pidfile, format!("{}\n", b.pid)).unwrap();
    assert_eq!(pids(&mut host), vec![b.pid]);
    // Unreadable: nothing is selected (never everything), and it is counted.
    std::fs::write(&pidfile, "not a pid\n").unwrap();
    let errors = host.errors_total();
    assert_eq!(pids(&mut host), Vec::<i32>::new());
    assert_eq!(host.errors_total(), errors + 1);

    // The binary takes it too.
    std::fs::write(&pidfile, format!("{}\n", b.pid)).unwrap();
    let docs = docs(&["--count", "1", "--pidfile", pidfile.to_str().unwrap()]);
    let shown: Vec<i64> = rows(&docs[0])
        .iter()
        .filter_map(|r| r["pid"].as_i64())
        .collect();
    assert_eq!(shown, vec![b.pid as i64]);
}

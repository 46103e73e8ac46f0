//! The sampler on a fixture /proc tree (tests/fixtures/proc) through the
//! proc-root seam. The fd symlinks are made here, pointing into the temp tree,
//! so that path-named fds stat as real files.

use std::os::unix::fs::symlink;
use std::path::Path;

use super::*;

pub(crate) fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

fn fixture() -> (tempfile::TempDir, ProcRoot) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("proc");
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/proc"),
        &root,
    );
    let files = tmp.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let spaced = files.join("a log\nwith newline and spaces");
    std::fs::write(&spaced, b"x").unwrap();
    std::fs::write(files.join("gone"), vec![0u8; 5000]).unwrap();
    let fd = root.join("4242/fd");
    std::fs::create_dir_all(&fd).unwrap();
    let links: Vec<(u32, String)> = vec![
        (0, "/dev/null".into()),
        (1, "pipe:[77]".into()),
        (2, "pipe:[77]".into()),
        (3, spaced.display().to_string()),
        (4, spaced.display().to_string()),
        (5, spaced.display().to_string()),
        // The file behind it still exists but the name says deleted and nlink > 0:
        // trust the stat, it is a regular file. The next one has no file at all.
        (
            6,
            format!("{} (deleted)", files.join("nothing-here").display()),
        ),
        (7, "socket:[1001]".into()),
        (8, "socket:[1002]".into()),
        (9, "socket:[1003]".into()),
        (10, "socket:[1004]".into()),
        (11, "socket:[1005]".into()),
        (12, "socket:[9999]".into()),
        (13, "anon_inode:[eventpoll]".into()),
        (14, "anon_inode:[eventfd]".into()),
        (15, "anon_inode:inotify".into()),
        (16, "/memfd:shm (deleted)".into()),
        (17, files.display().to_string()),
        (18, "net:[4026531840]".into()),
    ];
    for (n, target) in links {
        symlink(target, fd.join(n.to_string())).unwrap();
    }
    (tmp, ProcRoot::new(root))
}

#[test]
fn fixture_census() {
    let (_tmp, root) = fixture();
    let s = take(&root, 4242, Census::Full, None).expect("sample");
    assert_eq!(s.comm, "rpc msg");
    assert_eq!(s.start_time, 76957);
    assert_eq!(
        s.limits,
        FdLimits {
            soft: Some(1024),
            hard: Some(4096)
        }
    );
    assert_eq!(s.system.allocated, 2048);
    assert_eq!(s.system.nr_open, 1048576);
    assert_eq!(s.activity.syscr, Some(300));
    assert_eq!(s.activity.nonvoluntary_ctxt_switches, Some(545));
    assert_eq!(s.fds, 19);
    let k = |kind| s.kind(kind);
    assert_eq!(k(FdKind::CharDevice), 1);
    assert_eq!(k(FdKind::Pipe), 2);
    assert_eq!(k(FdKind::Regular), 3);
    assert_eq!(k(FdKind::Deleted), 1, "named deleted, nothing to stat");
    assert_eq!(k(FdKind::Tcp), 2);
    assert_eq!(k(FdKind::Netlink), 2);
    assert_eq!(k(FdKind::Unix), 1);
    assert_eq!(
        k(FdKind::SocketUnresolved),
        1,
        "inode 9999 is in no table: reported, not dropped"
    );
    assert_eq!(k(FdKind::Eventpoll), 1);
    assert_eq!(k(FdKind::Eventfd), 1);
    assert_eq!(k(FdKind::Inotify), 1);
    assert_eq!(k(FdKind::Memfd), 1);
    assert_eq!(k(FdKind::Directory), 1);
    assert_eq!(k(FdKind::Other), 1);
    assert_eq!(s.kinds.values().sum::<u64>(), s.fds);
    assert_eq!(s.tcp_states.get("LISTEN"), Some(&1));
    assert_eq!(s.tcp_states.get("CLOSE_WAIT"), Some(&1));
    assert_eq!(s.netlink_protocols.get("ROUTE"), Some(&1));
    assert_eq!(s.netlink_protocols.get("GENERIC"), Some(&1));
    assert_eq!(
        s.remote_endpoints,
        vec![Counted {
            name: "127.0.0.1:54000".into(),
            count: 1
        }]
    );
    assert_eq!(s.repeated_paths.len(), 1);
    assert_eq!(s.repeated_paths[0].count, 3);
    assert!(s.repeated_paths[0]
        .name
        .ends_with("a log\nwith newline and spaces"));
}

#[test]
fn fixture_count_only_and_errors() {
    let (tmp, root) = fixture();
    let s = take(&root, 4242, Census::CountOnly, None).unwrap();
    assert_eq!(s.backend, Backend::Count);
    assert_eq!(s.fds, 19, "falls back to readdir where st_size is 0");
    assert!(matches!(
        take(&root, 4243, Census::Full, None),
        Err(SampleError::NoSuchProcess { pid: 4243 })
    ));
    // Same pid, another start time: reused.
    let other = Identity {
        pid: 4242,
        comm: "old".into(),
        start_time: 1,
    };
    assert!(matches!(
        take(&root, 4242, Census::Full, Some(&other)),
        Err(SampleError::PidReused { .. })
    ));
    // A zombie.
    let stat = tmp.path().join("proc/4242/stat");
    let text = std::fs::read_to_string(&stat)
        .unwrap()
        .replace(") S ", ") Z ");
    std::fs::write(&stat, text).unwrap();
    assert!(matches!(
        take(&root, 4242, Census::Full, None),
        Err(SampleError::Zombie { .. })
    ));
    // A short (truncated) stat: the process went away mid-read.
    std::fs::write(&stat, "4242 (rpc").unwrap();
    let err = take(&root, 4242, Census::Full, None).unwrap_err();
    assert!(
        err.target_gone() || matches!(err, SampleError::Malformed { .. }),
        "{err}"
    );
}

#[test]
fn new_inodes_against_the_previous_sample() {
    let mut a = Sample::new(1, "x", 1, 0.0, 0.0);
    a.inodes = vec![
        (FdKind::Netlink, 30),
        (FdKind::Pipe, 10),
        (FdKind::Netlink, 20),
    ];
    let mut b = Sample::new(1, "x", 1, 1.0, 1.0);
    b.inodes = vec![
        (FdKind::Netlink, 40),
        (FdKind::Netlink, 20),
        (FdKind::Pipe, 11),
        (FdKind::Netlink, 5),
    ];
    b.mark_new_inodes(&a);
    assert_eq!(
        b.new_inodes.get(&FdKind::Netlink),
        Some(&2),
        "40 and 5 are new, 20 is not"
    );
    assert_eq!(b.new_inodes.get(&FdKind::Pipe), Some(&1));
    let mut c = Sample::new(1, "x", 1, 2.0, 2.0);
    c.inodes = b.inodes.clone();
    c.mark_new_inodes(&b);
    assert!(c.new_inodes.is_empty());
}

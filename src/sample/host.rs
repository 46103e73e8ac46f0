//! Cheap reads for a whole-host scan (`top`, `serve`): who a process is, in one
//! read of `/proc/<pid>/stat`, and its cgroup paths.
//!
//! [`ProcRoot::identity`] opens the process directory through procfs and
//! stats it; a scan of thousands of processes every two seconds cannot pay
//! that, so this module reads `stat` once into a reused buffer and parses the
//! few fields a scan needs. It only reads: ranking, trends and verdicts belong
//! to `crate::host` and `diagnose`.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::{ProcRoot, SampleError};

/// An open handle (`O_PATH`) on one process's `/proc/<pid>/fd` directory.
///
/// It pins that process, not the number: `fstat` on it reports the open fd
/// count (Linux 6.2+), and fails with `ENOENT` once the process is gone, even
/// if the pid has been reused meanwhile. So a scan that holds one per process
/// pays one `fstat` a refresh, without a path walk from `/proc` and without
/// re-reading `stat` to know it still counts the same process.
#[derive(Debug)]
pub struct FdDir(OwnedFd);

impl FdDir {
    /// None when the process is gone or no fd is left to hold it (then the
    /// caller reads by path).
    pub fn open(root: &ProcRoot, pid: i32) -> Option<FdDir> {
        let fd = nix::fcntl::open(
            &root.pid_dir(pid).join("fd"),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        // SAFETY: `open` returned a new descriptor that nothing else owns.
        Some(FdDir(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// `st_size` of the directory: the open fd count on Linux 6.2+ (0 on
    /// older kernels and for a zombie: the caller then looks closer).
    pub fn size(&self) -> Result<u64, Errno> {
        let st = nix::sys::stat::fstat(self.0.as_raw_fd())?;
        Ok(st.st_size.max(0) as u64)
    }
}

/// Raise the soft RLIMIT_NOFILE to the hard one: a scan holds one
/// [`FdDir`] per process. Returns the new soft limit.
pub fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Ok((soft, _)) => soft,
        Err(_) => 1024,
    }
}

pub use super::stat::{parse_stat, StatLine};

/// Read `/proc/<pid>/stat` into `buf` (reused across a scan) and parse it.
pub fn read_stat(root: &ProcRoot, pid: i32, buf: &mut Vec<u8>) -> Result<StatLine, SampleError> {
    let path = root.pid_dir(pid).join("stat");
    // procfs hands out the whole line in one read when it fits: one read()
    // instead of read_to_end's two.
    buf.clear();
    buf.resize(1024, 0);
    let io = |e| super::procroot::io_error(&path, e, pid, 0);
    let mut f = std::fs::File::open(&path).map_err(io)?;
    let n = f.read(buf).map_err(io)?;
    buf.truncate(n);
    if n == 1024 {
        f.read_to_end(buf).map_err(io)?;
    }
    // comm is any 15 bytes the process chose: not UTF-8 must not hide it
    // from the scan (the replacement character stands in, as for identity).
    let text = String::from_utf8_lossy(buf);
    // An empty or short read: the process went away mid-read.
    parse_stat(&text).ok_or(SampleError::NoSuchProcess { pid })
}

/// The cgroup paths of a process (one per hierarchy; a single `0::/path` on
/// a pure cgroup v2 host). Empty when unreadable or gone.
pub fn cgroups(root: &ProcRoot, pid: i32) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(root.pid_dir(pid).join("cgroup")) else {
        return Vec::new();
    };
    let mut paths: Vec<String> = text
        .lines()
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .map(str::to_string)
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

/// True when `path` lies under `prefix` (whole path components).
pub fn cgroup_under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return true;
    }
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// True when a component of the cgroup `path` names the container `id` (or
/// starts with it, as `docker ps` prints 12 characters): `docker-<id>.scope`,
/// `cri-containerd-<id>.scope`, `crio-<id>.scope`, `libpod-<id>.scope`,
/// `/docker/<id>`, `/kubepods/.../<id>`.
pub fn cgroup_names_container(path: &str, id: &str) -> bool {
    if id.is_empty() {
        return false;
    }
    path.split('/').any(|comp| {
        let comp = comp.strip_suffix(".scope").unwrap_or(comp);
        let bare = [
            "cri-containerd-",
            "docker-",
            "crio-",
            "libpod-",
            "containerd-",
        ]
        .iter()
        .find_map(|p| comp.strip_prefix(p))
        .unwrap_or(comp);
        bare.starts_with(id)
    })
}

/// Bytes of a pidfile read: a pid and a newline, with room for spaces.
pub const PIDFILE_CAP: u64 = 64;

/// The pid a pidfile holds. A pidfile is a few bytes: read at most
/// [`PIDFILE_CAP`], from a regular file only (a FIFO would block, /dev/zero
/// never ends).
pub fn read_pidfile(file: &std::path::Path) -> anyhow::Result<i32> {
    use anyhow::Context;
    let bytes = crate::safe_fs::read_small(file, PIDFILE_CAP)
        .with_context(|| format!("reading pidfile {}", file.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    text.split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .filter(|p: &i32| *p > 0)
        .with_context(|| format!("pidfile {} holds no pid", file.display()))
}

/// The criteria by which a process is picked, shared by the whole-host scan
/// (`top`/`serve`) and target selection (`check`, `watch`, ...): every given
/// one must hold. `comm` is what the caller already read of the process.
/// A process without argv[0] (a kernel thread) matches by `comm` alone.
pub fn process_matches(
    root: &ProcRoot,
    pid: i32,
    comm: &str,
    name: Option<&str>,
    exe: Option<&std::path::Path>,
    cgroup: Option<&str>,
    container: Option<&str>,
) -> bool {
    if let Some(pattern) = name {
        let argv0 = root.argv0(pid).unwrap_or_default();
        let base = argv0.rsplit('/').next().unwrap_or("");
        if !(glob(pattern, comm) || (!base.is_empty() && glob(pattern, base))) {
            return false;
        }
    }
    if let Some(exe) = exe {
        if root.exe(pid).as_deref() != Some(exe) {
            return false;
        }
    }
    if cgroup.is_some() || container.is_some() {
        let paths = cgroups(root, pid);
        if cgroup.is_some_and(|c| !paths.iter().any(|p| cgroup_under(p, c))) {
            return false;
        }
        if container.is_some_and(|c| !paths.iter().any(|p| cgroup_names_container(p, c))) {
            return false;
        }
    }
    true
}

/// Shell-style `*` and `?` matching of a whole process name: how `--name`
/// selects, for one target (`check`) and for a whole-host scan alike.
/// The classic backtrack-to-the-last-star walk: O(pattern × text) at worst,
/// because the text (argv[0]) is chosen by whoever started the process.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("nginx", "nginx"));
        assert!(!glob("nginx", "nginx2"));
        assert!(glob("rpc-*", "rpc-msg"));
        assert!(glob("?pc*", "rpc-msg"));
        assert!(!glob("*x", "rpc"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("a*b*c", "aXXbYY"));
        // A name chosen to make a backtracking matcher explode ends at once.
        let long = "a".repeat(5000);
        assert!(!glob("*a*a*a*a*a*a*a*b", &long));
    }

    #[test]
    fn stat_lines() {
        let s = parse_stat("4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 6 0 0 20 0 1 0 98765 1000 10 18446744073709551615").unwrap();
        assert_eq!(s.comm, "a (b) c");
        assert_eq!(s.state, 'S');
        assert_eq!(s.flags, 4194560);
        assert_eq!(s.start_time, 98765);
        assert!(!s.is_kernel_thread());
        let k =
            parse_stat("2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 3 0 0").unwrap();
        assert!(k.is_kernel_thread());
        assert_eq!(parse_stat("12 (x) S 1"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn cgroup_matching() {
        assert!(cgroup_under("/system.slice/nginx.service", "/system.slice"));
        assert!(cgroup_under("/system.slice", "/system.slice/"));
        assert!(!cgroup_under("/system.slicex/a", "/system.slice"));
        assert!(cgroup_under("/anything", "/"));
        let p = "/kubepods.slice/kubepods-pod1.slice/cri-containerd-0123456789abcdef.scope";
        assert!(cgroup_names_container(p, "0123456789ab"));
        assert!(cgroup_names_container(
            "/system.slice/docker-abcdef01.scope",
            "abcdef01"
        ));
        assert!(cgroup_names_container("/docker/abcdef0123", "abcdef"));
        assert!(!cgroup_names_container(p, "ffff"));
        assert!(!cgroup_names_container(p, ""));
    }
}

//! The seam between fdwatch and the kernel: a proc root path (default `/proc`).
//!
//! Tests point a [`ProcRoot`] at a fixture tree; nothing else in the crate
//! builds a `/proc` path by hand. Errors are mapped here, once, from the raw
//! `io::Error` to [`SampleError`] with the path and the reason.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{Activity, FdLimits, Identity, SampleError, SystemFiles};

use super::stat::PF_KTHREAD;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcRoot {
    root: PathBuf,
    /// Only a real procfs reports the fd count as the size of `fd/`; a
    /// fixture directory's size is its block size.
    is_procfs: bool,
}

impl Default for ProcRoot {
    fn default() -> Self {
        ProcRoot::new("/proc")
    }
}

/// What [`ProcRoot::identity`] reads: who the process is and who owns it.
#[derive(Debug, Clone)]
pub struct IdentityRead {
    pub identity: Identity,
    /// Owner of `/proc/<pid>`: named in permission errors.
    pub uid: u32,
}

impl ProcRoot {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let is_procfs = nix::sys::statfs::statfs(&root)
            .map(|s| s.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC)
            .unwrap_or(false);
        ProcRoot { root, is_procfs }
    }

    /// Whether the root is a real procfs (not a fixture tree).
    pub fn is_procfs(&self) -> bool {
        self.is_procfs
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn pid_dir(&self, pid: i32) -> PathBuf {
        self.root.join(pid.to_string())
    }

    /// Who `pid` is now. Rejects kernel threads and zombies: neither has fds to watch.
    ///
    /// One open of `stat` (its owner is the process's, like its directory's),
    /// parsed for the four fields used: every sample reads it twice.
    pub fn identity(&self, pid: i32) -> Result<IdentityRead, SampleError> {
        let path = self.pid_dir(pid).join("stat");
        let (text, uid) = read_small(&path, true).map_err(|e| io_error(&path, e, pid, 0))?;
        let malformed = |detail: &str| SampleError::Malformed {
            path: path.display().to_string(),
            detail: detail.to_string(),
        };
        if text.is_empty() {
            // Read as the process was reaped.
            return Err(SampleError::NoSuchProcess { pid });
        }
        let text = String::from_utf8_lossy(&text);
        let st = super::stat::parse_stat(&text).ok_or_else(|| malformed("short or malformed"))?;
        let (comm, state, flags, start_time) = (st.comm, st.state, st.flags, st.start_time);
        let identity = Identity {
            pid,
            comm,
            start_time,
        };
        if flags & PF_KTHREAD != 0 {
            return Err(SampleError::KernelThread {
                pid,
                comm: identity.comm,
            });
        }
        if state == 'Z' || state == 'X' {
            return Err(SampleError::Zombie {
                pid,
                comm: identity.comm,
            });
        }
        Ok(IdentityRead { identity, uid })
    }

    /// `RLIMIT_NOFILE` of `pid`: the "Max open files" line of `limits`.
    pub fn fd_limits(&self, pid: i32, who: &Identity) -> Result<FdLimits, SampleError> {
        let path = self.pid_dir(pid).join("limits");
        let (text, _) = read_small(&path, false).map_err(|e| match io_error(&path, e, pid, 0) {
            SampleError::NoSuchProcess { .. } => SampleError::Exited {
                pid,
                comm: who.comm.clone(),
            },
            other => other,
        })?;
        let text = String::from_utf8_lossy(&text);
        let value = |v: Option<&str>| match v {
            Some("unlimited") => Ok(None),
            Some(n) => n.parse().map(Some).map_err(|_| ()),
            None => Err(()),
        };
        text.lines()
            .find_map(|l| l.strip_prefix("Max open files"))
            .and_then(|l| {
                let mut f = l.split_whitespace();
                Some(FdLimits {
                    soft: value(f.next()).ok()?,
                    hard: value(f.next()).ok()?,
                })
            })
            .ok_or_else(|| SampleError::Malformed {
                path: path.display().to_string(),
                detail: "no readable \"Max open files\" line".into(),
            })
    }

    /// Counters that need ptrace-read rights (io) are `None` when unreadable:
    /// they are optional context, never a reason to fail a sample.
    pub fn activity(&self, pid: i32) -> Activity {
        let dir = self.pid_dir(pid);
        let read = |name: &str, keys: [&str; 2]| -> [Option<u64>; 2] {
            let Ok((text, _)) = read_small(&dir.join(name), false) else {
                return [None, None];
            };
            let text = String::from_utf8_lossy(&text);
            keys.map(|k| {
                text.lines()
                    .find_map(|l| l.strip_prefix(k)?.strip_prefix(':'))
                    .and_then(|v| v.trim().parse().ok())
            })
        };
        let [syscr, syscw] = read("io", ["syscr", "syscw"]);
        let [voluntary, nonvoluntary] = read(
            "status",
            ["voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"],
        );
        Activity {
            syscr,
            syscw,
            voluntary_ctxt_switches: voluntary,
            nonvoluntary_ctxt_switches: nonvoluntary,
        }
    }

    /// The fd count in one `stat()` where the kernel reports it (6.2+), else by readdir.
    pub fn fd_count(&self, pid: i32, owner: u32) -> Result<u64, SampleError> {
        let dir = self.pid_dir(pid).join("fd");
        match std::fs::metadata(&dir) {
            Ok(m) if self.is_procfs && m.size() > 0 => return Ok(m.size()),
            Ok(_) => {}
            Err(e) => return Err(io_error(&dir, e, pid, owner)),
        }
        let entries = std::fs::read_dir(&dir).map_err(|e| io_error(&dir, e, pid, owner))?;
        let mut n = 0;
        for entry in entries {
            entry.map_err(|e| io_error(&dir, e, pid, owner))?;
            n += 1;
        }
        Ok(n)
    }

    /// Every numeric entry of the proc root: the processes visible to us.
    pub fn pids(&self) -> Result<Vec<i32>, SampleError> {
        let entries = std::fs::read_dir(&self.root).map_err(|source| SampleError::Io {
            path: self.root.display().to_string(),
            err: source,
        })?;
        let mut pids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| SampleError::Io {
                path: self.root.display().to_string(),
                err: source,
            })?;
            if let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            {
                pids.push(pid);
            }
        }
        pids.sort_unstable();
        Ok(pids)
    }

    /// Parent pid (field 4 of stat); None when the process is gone.
    pub fn ppid(&self, pid: i32) -> Option<i32> {
        let text = std::fs::read_to_string(self.pid_dir(pid).join("stat")).ok()?;
        super::stat::parse_stat(&text).map(|st| st.ppid)
    }

    /// argv[0] of a process (empty for kernel threads or when unreadable).
    pub fn argv0(&self, pid: i32) -> Option<String> {
        let raw = std::fs::read(self.pid_dir(pid).join("cmdline")).ok()?;
        let first = raw.split(|b| *b == 0).next()?;
        (!first.is_empty()).then(|| String::from_utf8_lossy(first).into_owned())
    }

    /// The executable's path (`exe` link), when readable.
    pub fn exe(&self, pid: i32) -> Option<PathBuf> {
        std::fs::read_link(self.pid_dir(pid).join("exe")).ok()
    }

    /// The command name (`comm`), when readable.
    pub fn comm(&self, pid: i32) -> Option<String> {
        Some(
            std::fs::read_to_string(self.pid_dir(pid).join("comm"))
                .ok()?
                .trim_end_matches('\n')
                .to_string(),
        )
    }

    /// All descendants of `pid` (children, grandchildren, ...), by parent links.
    pub fn descendants(&self, pid: i32) -> Vec<i32> {
        let Ok(pids) = self.pids() else {
            return Vec::new();
        };
        let parents: Vec<(i32, i32)> = pids
            .iter()
            .filter_map(|p| self.ppid(*p).map(|pp| (*p, pp)))
            .collect();
        let mut out = Vec::new();
        let mut frontier = vec![pid];
        while let Some(parent) = frontier.pop() {
            for (child, _) in parents.iter().filter(|(_, pp)| *pp == parent) {
                if !out.contains(child) {
                    out.push(*child);
                    frontier.push(*child);
                }
            }
        }
        out
    }

    pub fn system_files(&self) -> Result<SystemFiles, SampleError> {
        let fs = self.root.join("sys/fs");
        let file_nr = read_small(&fs.join("file-nr"), false)
            .map(|(b, _)| String::from_utf8_lossy(&b).into_owned())
            .map_err(|source| SampleError::Io {
                path: fs.join("file-nr").display().to_string(),
                err: source,
            })?;
        let mut fields = file_nr.split_whitespace().map(str::parse::<u64>);
        let mut field = |what: &str| match fields.next() {
            Some(Ok(v)) => Ok(v),
            _ => Err(SampleError::Malformed {
                path: fs.join("file-nr").display().to_string(),
                detail: format!("no {what} field"),
            }),
        };
        let allocated = field("allocated")?;
        let unused = field("unused")?;
        // The third field is fs.file-max itself (the kernel prints
        // files_stat.max_files in both): no second file to read.
        let max = field("max")?;
        let nr_open = read_u64(&fs.join("nr_open")).unwrap_or(0);
        Ok(SystemFiles {
            allocated,
            unused,
            max,
            nr_open,
        })
    }
}

/// A small file (a /proc or sysctl file) in one open and as few reads as it
/// takes, with its owner when `owner`: no `statx` for a size hint as
/// `fs::read` makes, which /proc files do not have anyway. Every sample
/// reads several of these.
fn read_small(path: &Path, owner: bool) -> io::Result<(Vec<u8>, u32)> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let uid = if owner { f.metadata()?.uid() } else { 0 };
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match f.read(&mut chunk) {
            Ok(0) => return Ok((buf, uid)),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn read_u64(path: &Path) -> Option<u64> {
    let (b, _) = read_small(path, false).ok()?;
    String::from_utf8_lossy(&b).trim().parse().ok()
}

/// Map an I/O error on a path under `/proc/<pid>` to what it means for the watch.
pub fn io_error(path: &Path, e: io::Error, pid: i32, owner: u32) -> SampleError {
    match e.kind() {
        // ESRCH shows up when the task is being torn down under us.
        io::ErrorKind::NotFound => SampleError::NoSuchProcess { pid },
        io::ErrorKind::PermissionDenied => super::permission_denied(
            path.display().to_string(),
            pid,
            owner,
            proc_root_of(path, pid),
        ),
        _ if e.raw_os_error() == Some(libc::ESRCH) => SampleError::NoSuchProcess { pid },
        _ => SampleError::Io {
            path: path.display().to_string(),
            err: e,
        },
    }
}

/// The proc root a path under `<root>/<pid>/...` belongs to (for messages).
fn proc_root_of(path: &Path, pid: i32) -> &Path {
    let pid = pid.to_string();
    path.ancestors()
        .find(|a| a.file_name().is_some_and(|n| n == pid.as_str()))
        .and_then(Path::parent)
        .unwrap_or(Path::new("/proc"))
}

pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Seconds since `start_time` (clock ticks after boot, /proc/PID/stat field
/// 22). None when the clock or the tick rate cannot be read, or the start
/// lies in the future (a fixture tree's made-up start time).
pub fn process_age(start_time: u64) -> Option<f64> {
    let boot = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).ok()?;
    let now = boot.tv_sec() as f64 + boot.tv_nsec() as f64 * 1e-9;
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz <= 0 {
        return None;
    }
    let age = now - start_time as f64 / hz as f64;
    (age.is_finite() && age >= 0.0).then_some(age)
}

pub fn mono_now() -> f64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as f64 + t.tv_nsec() as f64 * 1e-9)
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake proc root with one process 77 whose `stat` and `limits` are given.
    fn root_with(stat: &str, limits: &str) -> (tempfile::TempDir, ProcRoot) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("77");
        std::fs::create_dir(&p).unwrap();
        std::fs::write(p.join("stat"), stat).unwrap();
        std::fs::write(p.join("limits"), limits).unwrap();
        let root = ProcRoot::new(dir.path());
        (dir, root)
    }

    fn stat(comm: &str, state: char, flags: u32, start: u64) -> String {
        format!("77 ({comm}) {state} 1 77 77 0 -1 {flags} 98 0 0 0 0 0 0 0 20 0 1 0 {start} 3133440 356\n")
    }

    const LIMITS: &str =
        "Limit                     Soft Limit           Hard Limit           Units     \n\
        Max processes             96364                96364                processes \n\
        Max open files            1024                 unlimited            files     \n";

    #[test]
    fn identity_from_stat_alone() {
        let (_d, root) = root_with(&stat("a) (b c", 'S', 0, 4242), LIMITS);
        let id = root.identity(77).unwrap().identity;
        assert_eq!(id.comm, "a) (b c");
        assert_eq!(id.start_time, 4242);
        let limits = root.fd_limits(77, &id).unwrap();
        assert_eq!(limits.soft, Some(1024));
        assert_eq!(limits.hard, None, "unlimited");

        let (_d, root) = root_with(&stat("z", 'Z', 0, 1), LIMITS);
        assert!(matches!(root.identity(77), Err(SampleError::Zombie { .. })));
        let (_d, root) = root_with(&stat("kworker/0:1", 'I', PF_KTHREAD, 1), LIMITS);
        assert!(matches!(
            root.identity(77),
            Err(SampleError::KernelThread { .. })
        ));
        assert!(matches!(
            root.identity(78),
            Err(SampleError::NoSuchProcess { pid: 78 })
        ));
        let (_d, root) = root_with("77 (x", "no limits here\n");
        assert!(matches!(
            root.identity(77),
            Err(SampleError::Malformed { .. })
        ));
        let who = Identity {
            pid: 77,
            comm: "x".into(),
            start_time: 1,
        };
        assert!(matches!(
            root.fd_limits(77, &who),
            Err(SampleError::Malformed { .. })
        ));
        assert!(matches!(
            root.fd_limits(78, &who),
            Err(SampleError::Exited { pid: 78, .. })
        ));
        // Unreadable optional counters are None, never an error.
        assert_eq!(root.activity(77), Activity::default());
    }
}

//! The history `fdwatch check --state FILE` keeps between runs, so a cron job
//! every minute sees a trend over hours.
//!
//! Keyed by PID and start time (a restarted process starts a new history),
//! bounded (samples per process, processes per file, bytes per file), locked
//! (a sidecar `FILE.lock` held with `flock` for the whole read-modify-write,
//! so two runs at once lose nothing; the wait ends when the caller says stop)
//! and written atomically (temporary file + rename). Every file operation
//! goes through [`crate::safe_fs`] (no symlinks, safe directories only).
//! A corrupt file is never overwritten: it is kept aside and reported.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::safe_fs::{SafeDir, SafeFsError};
use crate::sample::Sample;

pub const FORMAT: &str = "fdwatch-state";
pub const VERSION: u32 = 1;
/// 12 hours at one run a minute, with the burst's samples thinned (see `append`).
pub const MAX_SAMPLES_PER_PROCESS: usize = 720;
pub const MAX_PROCESSES: usize = 64;

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct StateFile {
    pub format: String,
    pub version: u32,
    pub processes: Vec<ProcessHistory>,
    /// Whose a selector's name is (`--name rpc-msg` → uid 0 running
    /// /usr/sbin/rpc-msg): remembered past any one process's life, so that
    /// look-alikes of other owners never get a history here (cmd::targets).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<SelectorOwner>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessHistory {
    pub pid: i32,
    pub start_time: u64,
    pub comm: String,
    /// Owner and executable when the history started (absent in files of
    /// older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    /// Perfdata slot: a restarted process takes the slot its predecessor
    /// left, so graphs keep their series (docs/check.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<u32>,
    pub samples: Vec<Sample>,
}

/// A process owner: uid and executable path (`None`: unreadable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub uid: u32,
    pub exe: Option<String>,
}

/// An owner remembered for a selector (`--name rpc-msg`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelectorOwner {
    pub selector: String,
    #[serde(flatten)]
    pub owner: Owner,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot lock state file {path}: {err}")]
    Lock { path: String, err: std::io::Error },
    /// Another run holds the lock and this one was told to stop (signal or
    /// `check -t`) first.
    #[error("{stop} waiting for the state file lock {path}, {holder}")]
    Busy {
        stop: String,
        path: String,
        holder: String,
    },
    #[error("state file {path} is {size} bytes, over the {cap}-byte cap ({mib} MiB): left as it is, its history is not read and nothing is saved (move it aside to start a new history)", mib = cap >> 20)]
    TooLarge { path: String, size: u64, cap: u64 },
    #[error("cannot write state file {path}: {err}")]
    Write { path: String, err: std::io::Error },
    /// Refused by the safe-writing policy (docs/security.md): symlink,
    /// unsafe directory, not a regular file, another user's file.
    #[error("state file: {0}")]
    Unsafe(SafeFsError),
}

// By hand, not `#[from]`: that would make the error a `source` too, and
// `{:#}` would print it twice.
impl From<SafeFsError> for StateError {
    fn from(e: SafeFsError) -> StateError {
        StateError::Unsafe(e)
    }
}

/// The largest state file read (and written: [`LockedState::save`] thins
/// the histories to stay under it). A full sample is ~1.5 KB in JSON, so
/// this holds ~11,000 samples, 15 processes' whole 12-hour history.
pub const MAX_STATE_BYTES: u64 = 16 << 20;

/// A locked state file. The lock is released on drop.
pub struct LockedState {
    path: PathBuf,
    dir: SafeDir,
    name: OsString,
    _lock: File,
    pub state: StateFile,
    /// Things to tell the operator (a corrupt file kept aside).
    pub notes: Vec<String>,
}

fn lock_name(name: &OsStr) -> OsString {
    let mut p = name.to_owned();
    p.push(".lock");
    p
}

impl LockedState {
    /// Lock and read `path` (a missing file is an empty history).
    ///
    /// Waits for another run's lock while `stop` says nothing; once it
    /// returns a reason (a signal, the check's `-t`), gives up with
    /// [`StateError::Busy`], naming the holder.
    pub fn open(path: &Path, stop: &dyn Fn() -> Option<String>) -> Result<LockedState, StateError> {
        let lp = lock_path(path);
        // Failing to reach or open the lock (permissions, a missing
        // directory) is "cannot lock"; a refusal by the policy says its own why.
        let cannot_lock = |e: SafeFsError| match e {
            SafeFsError::Io { err, .. } => StateError::Lock {
                path: lp.display().to_string(),
                err,
            },
            other => other.into(),
        };
        let (dir, name) = SafeDir::for_file(path).map_err(cannot_lock)?;
        let lname = lock_name(&name);
        let mut lock = dir.open_lock(&lname).map_err(cannot_lock)?;
        wait_for_lock(&lock, &lp, stop)?;
        // Who holds it, for the next run that has to wait (`cat FILE.lock`).
        let _ = lock
            .set_len(0)
            .and_then(|_| lock.write_all(format!("{}\n", std::process::id()).as_bytes()));
        let mut notes = Vec::new();
        let bytes = match dir.read_capped(&name, MAX_STATE_BYTES) {
            Ok(b) => b,
            Err(SafeFsError::TooLarge { size, cap, .. }) => {
                return Err(StateError::TooLarge {
                    path: path.display().to_string(),
                    size,
                    cap,
                })
            }
            Err(e) => return Err(e.into()),
        };
        let state = match bytes {
            Some(bytes) => match parse(&bytes) {
                Ok(s) => s,
                Err(why) => {
                    let aside = keep_aside(&dir, &name)?;
                    notes.push(format!(
                        "state file {} is corrupt ({why}); kept it as {} and started a new history",
                        path.display(),
                        Path::new(&dir.display()).join(aside).display()
                    ));
                    StateFile::new()
                }
            },
            None => StateFile::new(),
        };
        Ok(LockedState {
            path: path.to_path_buf(),
            dir,
            name,
            _lock: lock,
            state,
            notes,
        })
    }

    /// Write atomically: a temporary file with an unpredictable name in the
    /// same directory, fsync, rename. Histories are thinned first if the
    /// file would outgrow [`MAX_STATE_BYTES`] (said in `notes`).
    pub fn save(&mut self) -> Result<(), StateError> {
        self.save_within(MAX_STATE_BYTES)
    }

    fn save_within(&mut self, cap: u64) -> Result<(), StateError> {
        let err = |err| StateError::Write {
            path: self.path.display().to_string(),
            err,
        };
        let mut json =
            serde_json::to_vec(&self.state).map_err(|e| err(std::io::Error::other(e)))?;
        let mut thinned = false;
        while json.len() as u64 > cap {
            let before: usize = self.state.processes.iter().map(|p| p.samples.len()).sum();
            for p in &mut self.state.processes {
                let keep = p.samples.len() * 3 / 4;
                thin(&mut p.samples, keep.max(1));
            }
            let after: usize = self.state.processes.iter().map(|p| p.samples.len()).sum();
            if after == before {
                // One sample per process and still too big: drop the stalest.
                if self.state.processes.is_empty() {
                    break;
                }
                self.state.processes.remove(0);
            }
            thinned = true;
            json = serde_json::to_vec(&self.state).map_err(|e| err(std::io::Error::other(e)))?;
        }
        if thinned {
            self.notes.push(format!(
                "state file {} would exceed {} bytes: older samples thinned to fit",
                self.path.display(),
                cap
            ));
        }
        self.dir
            .write_atomic(&self.name, &json)
            .map_err(|e| match e {
                SafeFsError::Io { err: e, .. } => err(e),
                other => StateError::Unsafe(other),
            })
    }
}

fn lock_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// Poll a non-blocking `flock` until it is ours or `stop` speaks. Polling
/// (every 50 ms) rather than a blocking `flock` keeps the wait bounded by
/// the caller's deadline and signals without relying on EINTR.
fn wait_for_lock(
    lock: &File,
    lp: &Path,
    stop: &dyn Fn() -> Option<String>,
) -> Result<(), StateError> {
    loop {
        // SAFETY: flock on a file we hold open.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) | Some(libc::EINTR) => {}
            _ => {
                return Err(StateError::Lock {
                    path: lp.display().to_string(),
                    err: e,
                })
            }
        }
        if let Some(why) = stop() {
            return Err(StateError::Busy {
                stop: why,
                path: lp.display().to_string(),
                holder: lock_holder(lock),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// "held by pid 123 (fdwatch)": the kernel's `/proc/locks` names the
/// process that took the flock on this inode; the pid the holder wrote into
/// the file is the fallback.
fn lock_holder(lock: &File) -> String {
    use std::os::unix::fs::MetadataExt;
    let from_kernel = lock.metadata().ok().and_then(|m| {
        let dev = m.dev();
        let id = format!(
            "{:02x}:{:02x}:{}",
            libc::major(dev),
            libc::minor(dev),
            m.ino()
        );
        let text = std::fs::read_to_string("/proc/locks").ok()?;
        holder_in_proc_locks(&text, &id)
    });
    let pid = from_kernel.or_else(|| {
        let mut buf = [0u8; 32];
        let n = (&*lock).read(&mut buf).ok()?;
        std::str::from_utf8(&buf[..n]).ok()?.trim().parse().ok()
    });
    match pid {
        Some(pid) => {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|c| c.trim().to_string())
                .unwrap_or_else(|_| "?".into());
            format!("held by pid {pid} ({comm})")
        }
        None => "holder unknown".into(),
    }
}

/// The pid holding a FLOCK on `id` (`MAJ:MIN:INODE`) in `/proc/locks` text.
fn holder_in_proc_locks(text: &str, id: &str) -> Option<i32> {
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; waiters have "->" after the number.
        if f.len() >= 6 && f[1] == "FLOCK" && f[5] == id {
            f[4].parse().ok()
        } else {
            None
        }
    })
}

fn parse(bytes: &[u8]) -> Result<StateFile, String> {
    let s: StateFile = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if s.format != FORMAT {
        return Err(format!("not an fdwatch state file (format '{}')", s.format));
    }
    if s.version != VERSION {
        return Err(format!(
            "state version {} (this fdwatch reads {VERSION})",
            s.version
        ));
    }
    Ok(s)
}

fn keep_aside(dir: &SafeDir, name: &OsStr) -> Result<OsString, StateError> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut aside = name.to_owned();
    aside.push(format!(".corrupt.{stamp}"));
    dir.rename_entry(name, &aside)?;
    Ok(aside)
}

impl StateFile {
    pub fn new() -> StateFile {
        StateFile {
            format: FORMAT.into(),
            version: VERSION,
            processes: Vec::new(),
            owners: Vec::new(),
        }
    }

    /// The owners remembered for `selector`.
    pub fn owners_of(&self, selector: &str) -> Vec<Owner> {
        self.owners
            .iter()
            .filter(|o| o.selector == selector)
            .map(|o| o.owner.clone())
            .collect()
    }

    /// Remember `owners` for `selector` (bounded like the histories).
    pub fn establish(&mut self, selector: &str, owners: &[Owner]) {
        for o in owners {
            let entry = SelectorOwner {
                selector: selector.to_string(),
                owner: o.clone(),
            };
            if !self.owners.contains(&entry) {
                self.owners.push(entry);
            }
        }
        while self.owners.len() > MAX_PROCESSES {
            self.owners.remove(0);
        }
    }

    /// Record the owner of a process's history (kept from its first run).
    pub fn set_owner(&mut self, pid: i32, start_time: u64, owner: &Owner) {
        if let Some(h) = self
            .processes
            .iter_mut()
            .find(|p| p.pid == pid && p.start_time == start_time)
        {
            if h.uid.is_none() {
                h.uid = Some(owner.uid);
                h.exe = owner.exe.clone();
            }
        }
    }

    /// The perfdata slot of each of `procs` (pid, start time): the one its
    /// history holds, else the lowest free one, recorded in its history.
    pub fn slots(&mut self, procs: &[(i32, u64)]) -> Vec<u32> {
        let mut taken: Vec<u32> = self.processes.iter().filter_map(|p| p.slot).collect();
        let mut out = Vec::with_capacity(procs.len());
        for (pid, start) in procs {
            let h = self
                .processes
                .iter_mut()
                .find(|p| p.pid == *pid && p.start_time == *start);
            let slot = match h.as_ref().and_then(|h| h.slot) {
                Some(s) => s,
                None => {
                    let free = (0..).find(|s| !taken.contains(s)).unwrap_or(0);
                    taken.push(free);
                    if let Some(h) = h {
                        h.slot = Some(free);
                    }
                    free
                }
            };
            out.push(slot);
        }
        out
    }

    /// The history of this exact process (PID and start time), if any.
    pub fn history(&self, pid: i32, start_time: u64) -> Option<&ProcessHistory> {
        self.processes
            .iter()
            .find(|p| p.pid == pid && p.start_time == start_time)
    }

    /// Append samples to the process's history. A process with the same PID
    /// but another start time was restarted (or the PID reused): its old
    /// history is dropped, and a new one starts.
    pub fn append(&mut self, samples: &[Sample]) {
        let Some(first) = samples.first() else { return };
        self.processes
            .retain(|p| p.pid != first.pid || p.start_time == first.start_time);
        let idx = match self.processes.iter().position(|p| p.pid == first.pid) {
            Some(i) => i,
            None => {
                self.processes.push(ProcessHistory {
                    pid: first.pid,
                    start_time: first.start_time,
                    comm: first.comm.clone(),
                    uid: None,
                    exe: None,
                    slot: None,
                    samples: Vec::new(),
                });
                self.processes.len() - 1
            }
        };
        let h = &mut self.processes[idx];
        h.samples.extend(samples.iter().cloned());
        // Runs that overlapped append out of order: keep the history in time order.
        h.samples
            .sort_by(|a, b| a.mono_time.total_cmp(&b.mono_time));
        if h.samples.len() > MAX_SAMPLES_PER_PROCESS {
            thin(&mut h.samples, MAX_SAMPLES_PER_PROCESS);
        }
        // Most recently updated last; the stalest go first when over the cap.
        let updated = self.processes.remove(idx);
        self.processes.push(updated);
        while self.processes.len() > MAX_PROCESSES {
            self.processes.remove(0);
        }
    }

    /// Drop the histories of processes that no longer exist.
    pub fn forget_dead(&mut self, alive: impl Fn(i32, u64) -> bool) {
        self.processes.retain(|p| alive(p.pid, p.start_time));
    }
}

/// Bring `samples` down to `cap`: the newest half stays whole, the older half
/// keeps every other sample, so the history stays long but bounded.
fn thin(samples: &mut Vec<Sample>, cap: usize) {
    while samples.len() > cap {
        let keep_recent = cap / 2;
        let old_len = samples.len() - keep_recent;
        let mut i = 0;
        samples.retain(|_| {
            let keep = i >= old_len || i % 2 == 0;
            i += 1;
            keep
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(pid: i32, start: u64, t: f64) -> Sample {
        let mut s: Sample = serde_json::from_value(serde_json::json!({
            "schema": 1, "backend": "count", "pid": pid, "comm": "x", "start_time": start,
            "unix_time": t, "mono_time": t, "fds": 10, "limits": {"soft": 1024, "hard": 4096},
            "system": {"allocated": 1, "unused": 0, "max": 100, "nr_open": 100}
        }))
        .unwrap();
        s.fds = t as u64;
        s
    }

    #[test]
    fn restart_starts_a_new_history_and_bounds_hold() {
        let mut st = StateFile::new();
        st.append(&[sample(1, 10, 0.0), sample(1, 10, 1.0)]);
        assert_eq!(st.history(1, 10).unwrap().samples.len(), 2);
        st.append(&[sample(1, 11, 2.0)]);
        assert!(
            st.history(1, 10).is_none(),
            "restarted: old history dropped"
        );
        assert_eq!(st.history(1, 11).unwrap().samples.len(), 1);
        for i in 0..5000 {
            st.append(&[sample(2, 5, i as f64)]);
        }
        let h = st.history(2, 5).unwrap();
        assert!(h.samples.len() <= MAX_SAMPLES_PER_PROCESS);
        assert_eq!(h.samples.last().unwrap().fds, 4999, "newest kept");
        assert!(
            h.samples.first().unwrap().fds < 3000,
            "old history thinned, not dropped: {}",
            h.samples[0].fds
        );
        for pid in 100..200 {
            st.append(&[sample(pid, 1, 0.0)]);
        }
        assert_eq!(st.processes.len(), MAX_PROCESSES);
    }

    #[test]
    fn slots_outlive_a_restart_and_owners_are_remembered() {
        let mut st = StateFile::new();
        st.append(&[sample(1, 10, 0.0)]);
        st.append(&[sample(2, 20, 0.0)]);
        assert_eq!(st.slots(&[(1, 10), (2, 20)]), vec![0, 1]);
        // pid 1 restarted as pid 3: it takes slot 0, pid 2 keeps 1.
        st.forget_dead(|pid, _| pid != 1);
        st.append(&[sample(3, 30, 1.0)]);
        assert_eq!(st.slots(&[(2, 20), (3, 30)]), vec![1, 0]);
        let owner = Owner {
            uid: 0,
            exe: Some("/usr/sbin/x".into()),
        };
        st.establish("--name x", std::slice::from_ref(&owner));
        st.establish("--name x", std::slice::from_ref(&owner));
        st.set_owner(3, 30, &owner);
        let back: StateFile = parse(&serde_json::to_vec(&st).unwrap()).unwrap();
        assert_eq!(back.owners_of("--name x"), vec![owner.clone()]);
        assert!(back.owners_of("--name y").is_empty());
        let h = back.history(3, 30).unwrap();
        assert_eq!(
            (h.uid, h.exe.as_deref(), h.slot),
            (Some(0), Some("/usr/sbin/x"), Some(0))
        );
        // A file from before owners and slots still reads.
        let old = br#"{"format":"fdwatch-state","version":1,"processes":[{"pid":1,"start_time":2,"comm":"x","samples":[]}]}"#;
        let st = parse(old).unwrap();
        assert!(st.owners.is_empty() && st.processes[0].uid.is_none());
    }

    #[test]
    fn corrupt_file_is_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, b"{ this is not json").unwrap();
        let locked = LockedState::open(&path, &|| None).unwrap();
        assert_eq!(locked.notes.len(), 1);
        assert!(locked.notes[0].contains("corrupt"), "{}", locked.notes[0]);
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains(".corrupt."))
            .collect();
        assert_eq!(aside.len(), 1);
        assert_eq!(
            std::fs::read(dir.path().join(&aside[0])).unwrap(),
            b"{ this is not json"
        );
        assert!(locked.state.processes.is_empty());
    }

    #[test]
    fn save_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        {
            let mut l = LockedState::open(&path, &|| None).unwrap();
            l.state.append(&[sample(3, 1, 1.0)]);
            l.save().unwrap();
        }
        let l = LockedState::open(&path, &|| None).unwrap();
        assert!(l.notes.is_empty());
        assert_eq!(l.state.history(3, 1).unwrap().samples.len(), 1);
    }

    #[test]
    fn a_held_lock_is_given_up_when_told_to_stop_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let _held = LockedState::open(&path, &|| None).unwrap();
        let t = std::time::Instant::now();
        let e = LockedState::open(&path, &|| {
            (t.elapsed() > std::time::Duration::from_millis(200))
                .then(|| "timed out after 0.2s".into())
        })
        .err()
        .expect("the lock is held");
        let msg = e.to_string();
        assert!(
            msg.starts_with("timed out after 0.2s waiting for the state file lock")
                && msg.contains(&format!("held by pid {} (", std::process::id())),
            "{msg}"
        );
    }

    #[test]
    fn proc_locks_lines() {
        let text = "1: POSIX  ADVISORY  WRITE 77 08:01:42 0 EOF\n\
                    2: FLOCK  ADVISORY  WRITE 1234 00:2a:5678 0 EOF\n\
                    2: -> FLOCK  ADVISORY  WRITE 999 00:2a:5678 0 EOF\n";
        assert_eq!(holder_in_proc_locks(text, "00:2a:5678"), Some(1234));
        assert_eq!(
            holder_in_proc_locks(text, "08:01:42"),
            None,
            "POSIX locks are not ours"
        );
        assert_eq!(holder_in_proc_locks(text, "00:2a:1"), None);
    }

    #[test]
    fn an_oversized_state_file_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        File::create(&path)
            .unwrap()
            .set_len(MAX_STATE_BYTES + 1)
            .unwrap();
        let e = LockedState::open(&path, &|| None).err().expect("refused");
        assert!(matches!(e, StateError::TooLarge { .. }), "{e}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), MAX_STATE_BYTES + 1);
    }

    #[test]
    fn a_save_over_the_cap_thins_the_histories_to_fit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let mut l = LockedState::open(&path, &|| None).unwrap();
        for i in 0..600 {
            l.state.append(&[sample(1, 1, i as f64)]);
            l.state.append(&[sample(2, 1, i as f64)]);
        }
        let cap = 200_000;
        l.save_within(cap).unwrap();
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size <= cap, "{size} bytes");
        assert!(
            l.notes.iter().any(|n| n.contains("thinned to fit")),
            "{:?}",
            l.notes
        );
        drop(l);
        let l = LockedState::open(&path, &|| None).unwrap();
        for pid in [1, 2] {
            let h = l.state.history(pid, 1).expect("both histories kept");
            assert_eq!(h.samples.last().unwrap().fds, 599, "newest kept");
            assert!(
                h.samples.first().unwrap().fds < 100,
                "oldest part thinned, not cut"
            );
        }
    }
}

//! The history `fdwatch check --state FILE` keeps between runs, so a cron job
//! every minute sees a trend over hours.
//!
//! Keyed by PID and start time (a restarted process starts a new history),
//! bounded (samples per process, processes per file), locked (a sidecar
//! `FILE.lock` held with `flock` for the whole read-modify-write, so two runs
//! at once lose nothing) and written atomically (temporary file + rename).
//! A corrupt file is never overwritten: it is kept aside and reported.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessHistory {
    pub pid: i32,
    pub start_time: u64,
    pub comm: String,
    pub samples: Vec<Sample>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot lock state file {path}: {source}")]
    Lock {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot read state file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write state file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// A locked state file. The lock is released on drop.
pub struct LockedState {
    path: PathBuf,
    _lock: File,
    pub state: StateFile,
    /// Things to tell the operator (a corrupt file kept aside).
    pub notes: Vec<String>,
}

fn lock_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

impl LockedState {
    /// Lock and read `path` (a missing file is an empty history).
    pub fn open(path: &Path) -> Result<LockedState, StateError> {
        let lp = lock_path(path);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lp)
            .map_err(|source| StateError::Lock {
                path: lp.display().to_string(),
                source,
            })?;
        // SAFETY: flock on a file we own; blocks until the other run is done.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(StateError::Lock {
                path: lp.display().to_string(),
                source: std::io::Error::last_os_error(),
            });
        }
        let mut notes = Vec::new();
        let state = match std::fs::read(path) {
            Ok(bytes) => match parse(&bytes) {
                Ok(s) => s,
                Err(why) => {
                    let aside = keep_aside(path).map_err(|source| StateError::Write {
                        path: path.display().to_string(),
                        source,
                    })?;
                    notes.push(format!(
                        "state file {} is corrupt ({why}); kept it as {} and started a new history",
                        path.display(),
                        aside.display()
                    ));
                    StateFile::new()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StateFile::new(),
            Err(source) => {
                return Err(StateError::Read {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        Ok(LockedState {
            path: path.to_path_buf(),
            _lock: lock,
            state,
            notes,
        })
    }

    /// Write atomically: a temporary file in the same directory, fsync, rename.
    pub fn save(&self) -> Result<(), StateError> {
        let err = |source| StateError::Write {
            path: self.path.display().to_string(),
            source,
        };
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "state".into());
        let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
        let json = serde_json::to_vec(&self.state).map_err(|e| err(std::io::Error::other(e)))?;
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            err(e)
        })
    }
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

fn keep_aside(path: &Path) -> std::io::Result<PathBuf> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".corrupt.{stamp}"));
    let aside = PathBuf::from(aside);
    std::fs::rename(path, &aside)?;
    Ok(aside)
}

impl StateFile {
    pub fn new() -> StateFile {
        StateFile {
            format: FORMAT.into(),
            version: VERSION,
            processes: Vec::new(),
        }
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
    fn corrupt_file_is_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, b"{ this is not json").unwrap();
        let locked = LockedState::open(&path).unwrap();
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
            let mut l = LockedState::open(&path).unwrap();
            l.state.append(&[sample(3, 1, 1.0)]);
            l.save().unwrap();
        }
        let l = LockedState::open(&path).unwrap();
        assert!(l.notes.is_empty());
        assert_eq!(l.state.history(3, 1).unwrap().samples.len(), 1);
    }
}

//! Which processes a health check looks at: `--pid`, `--pidfile`, `--name`, `--exe`.

use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::sample::host::glob;
use crate::sample::ProcRoot;

/// Bytes of a pidfile read: a pid and a newline, with room for spaces.
pub const PIDFILE_CAP: u64 = 64;

#[derive(Debug, Clone, Default)]
pub struct Targets {
    pub pid: Option<i32>,
    pub pidfile: Option<PathBuf>,
    /// Matches the command name (comm) or argv[0]'s base name; `*` and `?` glob.
    pub name: Option<String>,
    /// Matches the executable path exactly.
    pub exe: Option<PathBuf>,
}

impl Targets {
    pub fn describe(&self) -> String {
        if let Some(p) = self.pid {
            format!("--pid {p}")
        } else if let Some(f) = &self.pidfile {
            format!("--pidfile {}", f.display())
        } else if let Some(n) = &self.name {
            format!("--name {n}")
        } else if let Some(e) = &self.exe {
            format!("--exe {}", e.display())
        } else {
            "no target".into()
        }
    }

    /// The PIDs to check. A selector that matches nothing is an error (UNKNOWN).
    pub fn resolve(&self, root: &ProcRoot) -> anyhow::Result<Vec<i32>> {
        if let Some(pid) = self.pid {
            if pid <= 0 {
                bail!("--pid must be a positive process id, got {pid}");
            }
            return Ok(vec![pid]);
        }
        if let Some(file) = &self.pidfile {
            // A pidfile is a few bytes: read at most PIDFILE_CAP, from a
            // regular file only (a FIFO would block, /dev/zero never ends).
            let bytes = crate::safe_fs::read_small(file, PIDFILE_CAP)
                .with_context(|| format!("reading pidfile {}", file.display()))?;
            let text = String::from_utf8_lossy(&bytes);
            let pid: i32 = text
                .split_whitespace()
                .next()
                .and_then(|w| w.parse().ok())
                .filter(|p| *p > 0)
                .with_context(|| format!("pidfile {} holds no pid", file.display()))?;
            return Ok(vec![pid]);
        }
        let me = std::process::id() as i32;
        let mut found = Vec::new();
        for pid in root.pids()? {
            if pid == me {
                continue;
            }
            let hit = if let Some(pattern) = &self.name {
                let comm = root.comm(pid).unwrap_or_default();
                let argv0 = root.argv0(pid).unwrap_or_default();
                let base = argv0.rsplit('/').next().unwrap_or("").to_string();
                !argv0.is_empty() && (glob(pattern, &comm) || glob(pattern, &base))
            } else if let Some(exe) = &self.exe {
                root.exe(pid).is_some_and(|e| &e == exe)
            } else {
                bail!("give a target: --pid N, --pidfile FILE, --name PATTERN or --exe PATH");
            };
            if hit {
                found.push(pid);
            }
        }
        if found.is_empty() {
            bail!("no process matches {}", self.describe());
        }
        Ok(found)
    }
}

//! Which processes watch, check and assert look at: `--pid`, `--pidfile`,
//! `--name`, `--exe`, `--cgroup`, `--container` (one clap `TargetArgs`),
//! the candidates a selector matches (pid, owner, executable), and which of
//! several same-named candidates a check's history belongs to.
//!
//! `--name` matches `argv[0]`, which anyone can set: 80 processes of another
//! user started as `exec -a rpc-msg sleep 600` answer to `--name rpc-msg`
//! too. A check that keeps history therefore remembers whose the name is
//! (owner uid and executable, in the state file) and checks only those;
//! with no history yet it prefers the candidate whose executable carries
//! the name and whose owner is a system account (or fdwatch's own user), and
//! answers UNKNOWN naming the candidates when that still leaves a choice.

use std::path::PathBuf;

use anyhow::bail;

use crate::cli::TargetArgs;
use crate::sample::host::{self as scan, glob};
use crate::sample::ProcRoot;
use crate::state::Owner;

/// Candidates named in a one-line "which one?" answer.
const NAMED_CANDIDATES: usize = 8;
/// Accounts below this uid are system accounts (Debian's and Fedora's
/// `SYS_UID_MAX` is 999): services run as them, people do not.
const FIRST_USER_UID: u32 = 1000;

#[derive(Debug, Clone, Default)]
pub struct Targets {
    pub pid: Option<i32>,
    pub pidfile: Option<PathBuf>,
    /// Matches the command name (comm) or argv[0]'s base name; `*` and `?` glob.
    pub name: Option<String>,
    /// Matches the executable path exactly.
    pub exe: Option<PathBuf>,
    /// Under this cgroup path (whole components).
    pub cgroup: Option<String>,
    /// A container id (or its prefix) in the cgroup path.
    pub container: Option<String>,
}

impl From<TargetArgs> for Targets {
    fn from(a: TargetArgs) -> Targets {
        Targets {
            pid: a.pid,
            pidfile: a.pidfile,
            name: a.name,
            exe: a.exe,
            cgroup: a.cgroup,
            container: a.container,
        }
    }
}

/// One process a selector matched.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub pid: i32,
    /// Owner (of its /proc entry); `None` when it could not be read.
    pub uid: Option<u32>,
    /// `/proc/PID/exe`; `None` when not readable (another user's process).
    pub exe: Option<String>,
    pub start_time: u64,
}

impl Candidate {
    /// `pid 12 (uid 0, /usr/sbin/rpc-msg)`.
    pub fn describe(&self) -> String {
        let uid = self.uid.map_or("?".to_string(), |u| u.to_string());
        format!(
            "pid {} (uid {uid}, {})",
            self.pid,
            self.exe.as_deref().unwrap_or("exe unreadable")
        )
    }

    fn owner(&self) -> Option<Owner> {
        Some(Owner {
            uid: self.uid?,
            exe: self.exe.clone(),
        })
    }
}

/// Up to [`NAMED_CANDIDATES`], then how many more.
pub fn describe_all(c: &[Candidate]) -> String {
    let mut parts: Vec<String> = c
        .iter()
        .take(NAMED_CANDIDATES)
        .map(Candidate::describe)
        .collect();
    if c.len() > NAMED_CANDIDATES {
        parts.push(format!("and {} more", c.len() - NAMED_CANDIDATES));
    }
    parts.join(", ")
}

impl Targets {
    pub fn given(&self) -> bool {
        self.pid.is_some()
            || self.pidfile.is_some()
            || self.name.is_some()
            || self.exe.is_some()
            || self.cgroup.is_some()
            || self.container.is_some()
    }

    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(p) = self.pid {
            parts.push(format!("--pid {p}"));
        }
        if let Some(f) = &self.pidfile {
            parts.push(format!("--pidfile {}", f.display()));
        }
        if let Some(n) = &self.name {
            parts.push(format!("--name {n}"));
        }
        if let Some(e) = &self.exe {
            parts.push(format!("--exe {}", e.display()));
        }
        if let Some(c) = &self.cgroup {
            parts.push(format!("--cgroup {c}"));
        }
        if let Some(c) = &self.container {
            parts.push(format!("--container {c}"));
        }
        if parts.is_empty() {
            "no target".into()
        } else {
            parts.join(" ")
        }
    }

    /// Whether the selector is one anybody can answer to (a name, an
    /// executable anyone may run): several owners then need telling apart.
    pub fn spoofable(&self) -> bool {
        self.name.is_some() || self.exe.is_some()
    }

    /// The selector's own name, for perfdata labels of several processes:
    /// the pattern, the executable's base name or the cgroup's last part,
    /// in `[A-Za-z0-9_.-]`, at most 12 characters (labels stay short).
    pub fn label(&self) -> String {
        let raw = if let Some(n) = &self.name {
            n.clone()
        } else if let Some(e) = &self.exe {
            e.file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else if let Some(c) = self.container.as_ref().or(self.cgroup.as_ref()) {
            c.rsplit('/')
                .find(|p| !p.is_empty())
                .unwrap_or("")
                .to_string()
        } else {
            String::new()
        };
        let clean: String = raw
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .take(12)
            .collect();
        if clean.is_empty() {
            "proc".into()
        } else {
            clean
        }
    }

    /// The PIDs selected. A selector that matches nothing is an error (UNKNOWN).
    pub fn resolve(&self, root: &ProcRoot) -> anyhow::Result<Vec<i32>> {
        Ok(self.candidates(root)?.iter().map(|c| c.pid).collect())
    }

    /// Exactly one process (watch, assert): several matches are refused,
    /// naming them.
    pub fn resolve_one(&self, root: &ProcRoot) -> anyhow::Result<i32> {
        let found = self.candidates(root)?;
        match found.as_slice() {
            [one] => Ok(one.pid),
            many => bail!(
                "{} matches {} processes, give one with --pid: {}",
                self.describe(),
                many.len(),
                describe_all(many)
            ),
        }
    }

    /// Every process the selector matches, with its owner and executable.
    pub fn candidates(&self, root: &ProcRoot) -> anyhow::Result<Vec<Candidate>> {
        if !self.given() {
            bail!("give a target: --pid N, --pidfile FILE, --name PATTERN, --exe PATH, --cgroup PATH or --container ID");
        }
        if let Some(pid) = self
            .pid
            .map(Ok)
            .or_else(|| self.pidfile.as_deref().map(scan::read_pidfile))
        {
            let pid = pid?;
            if pid <= 0 {
                bail!("--pid must be a positive process id, got {pid}");
            }
            return Ok(vec![candidate(root, pid)]);
        }
        let me = std::process::id() as i32;
        let mut found = Vec::new();
        for pid in root.pids()? {
            if pid != me && self.matches(root, pid) {
                found.push(candidate(root, pid));
            }
        }
        if found.is_empty() {
            bail!("no process matches {}", self.describe());
        }
        Ok(found)
    }

    fn matches(&self, root: &ProcRoot, pid: i32) -> bool {
        // No argv: a kernel thread, which has no fds to watch.
        if self.name.is_some() && root.argv0(pid).unwrap_or_default().is_empty() {
            return false;
        }
        let comm = root.comm(pid).unwrap_or_default();
        scan::process_matches(
            root,
            pid,
            &comm,
            self.name.as_deref(),
            self.exe.as_deref(),
            self.cgroup.as_deref(),
            self.container.as_deref(),
        )
    }
}

fn candidate(root: &ProcRoot, pid: i32) -> Candidate {
    let id = root.identity(pid).ok();
    Candidate {
        pid,
        uid: id.as_ref().map(|i| i.uid),
        // An executable replaced by an upgrade reads "PATH (deleted)" until
        // the restart: the same owner either way.
        exe: root.exe(pid).map(|e| {
            let e = e.display().to_string();
            e.strip_suffix(" (deleted)")
                .map(str::to_string)
                .unwrap_or(e)
        }),
        start_time: id.map(|i| i.identity.start_time).unwrap_or(0),
    }
}

/// Which of a selector's candidates a check with history looks at.
#[derive(Debug, Clone, PartialEq)]
pub enum Pick {
    /// Check these; `establish` are owners to remember from now on (none
    /// when the state already named them); `ignored` are look-alikes.
    Chosen {
        pids: Vec<i32>,
        establish: Vec<Owner>,
        ignored: Vec<Candidate>,
    },
    /// No history yet and no way to tell which is meant.
    Ambiguous(Vec<Candidate>),
    /// The owners the history names run nothing; others answer to the name.
    Stranger {
        established: Vec<Owner>,
        others: Vec<Candidate>,
    },
}

/// Decide whose history a name is.
///
/// - One owner (uid + executable) among the candidates: them.
/// - Owners already in the history: only their processes; the others are
///   ignored and cannot evict the history (none of theirs: [`Pick::Stranger`]).
/// - Otherwise prefer, in order, an executable whose base name the pattern
///   matches (argv[0] costs nothing to fake, an executable's path does),
///   then a system account or fdwatch's own user as owner. What is left
///   must be one executable and, among ordinary users, one owner; else
///   [`Pick::Ambiguous`].
pub fn pick(
    pattern: Option<&str>,
    candidates: &[Candidate],
    established: &[Owner],
    my_uid: u32,
) -> Pick {
    let owner_of = |c: &Candidate| c.owner();
    let all = |cs: &[Candidate]| cs.iter().map(|c| c.pid).collect::<Vec<_>>();
    if !established.is_empty() {
        let (mine, others): (Vec<Candidate>, Vec<Candidate>) = candidates
            .iter()
            .cloned()
            .partition(|c| owner_of(c).is_some_and(|o| established.contains(&o)));
        if mine.is_empty() {
            return Pick::Stranger {
                established: established.to_vec(),
                others,
            };
        }
        return Pick::Chosen {
            pids: all(&mine),
            establish: Vec::new(),
            ignored: others,
        };
    }
    let distinct: Vec<Option<Owner>> =
        candidates
            .iter()
            .map(owner_of)
            .fold(Vec::new(), |mut v, o| {
                if !v.contains(&o) {
                    v.push(o);
                }
                v
            });
    let owners_of = |cs: &[Candidate]| -> Vec<Owner> {
        let mut v: Vec<Owner> = Vec::new();
        for o in cs.iter().filter_map(owner_of) {
            if !v.contains(&o) {
                v.push(o);
            }
        }
        v
    };
    if distinct.len() <= 1 {
        return Pick::Chosen {
            pids: all(candidates),
            establish: owners_of(candidates),
            ignored: Vec::new(),
        };
    }
    let exe_named = |c: &Candidate| {
        let base = c
            .exe
            .as_deref()
            .and_then(|e| e.rsplit('/').next())
            .unwrap_or("");
        pattern.is_some_and(|p| !base.is_empty() && glob(p, base))
    };
    let trusted = |c: &Candidate| c.uid.is_some_and(|u| u < FIRST_USER_UID || u == my_uid);
    let score = |c: &Candidate| (exe_named(c), trusted(c));
    let Some(best) = candidates.iter().map(score).max() else {
        return Pick::Ambiguous(Vec::new());
    };
    let (chosen, ignored): (Vec<Candidate>, Vec<Candidate>) =
        candidates.iter().cloned().partition(|c| score(c) == best);
    let mut exes: Vec<Option<&str>> = chosen.iter().map(|c| c.exe.as_deref()).collect();
    exes.sort();
    exes.dedup();
    let mut uids: Vec<Option<u32>> = chosen.iter().map(|c| c.uid).collect();
    uids.sort();
    uids.dedup();
    // A service may run as root and its own account (nginx); two
    // ordinary users answering to one name are two different things.
    if exes.len() > 1 || (!best.1 && uids.len() > 1) {
        return Pick::Ambiguous(candidates.to_vec());
    }
    Pick::Chosen {
        pids: all(&chosen),
        establish: owners_of(&chosen),
        ignored,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(pid: i32, uid: u32, exe: &str) -> Candidate {
        Candidate {
            pid,
            uid: Some(uid),
            exe: Some(exe.into()),
            start_time: pid as u64,
        }
    }

    fn owner(uid: u32, exe: &str) -> Owner {
        Owner {
            uid,
            exe: Some(exe.into()),
        }
    }

    fn chosen(p: &Pick) -> Vec<i32> {
        match p {
            Pick::Chosen { pids, .. } => pids.clone(),
            other => panic!("not chosen: {other:?}"),
        }
    }

    #[test]
    fn look_alikes_lose_to_the_real_one() {
        let mut cands = vec![c(10, 0, "/usr/sbin/rpc-msg")];
        cands.extend((100..180).map(|p| c(p, 65534, "/usr/bin/sleep")));
        let p = pick(Some("rpc-msg"), &cands, &[], 0);
        assert_eq!(chosen(&p), vec![10]);
        let Pick::Chosen {
            establish, ignored, ..
        } = p
        else {
            unreachable!()
        };
        assert_eq!(establish, vec![owner(0, "/usr/sbin/rpc-msg")]);
        assert_eq!(ignored.len(), 80);
        // A copy of the binary named rpc-msg, run by an ordinary user: the
        // system account still wins.
        let cands = vec![c(10, 0, "/usr/sbin/rpc-msg"), c(11, 1001, "/tmp/rpc-msg")];
        assert_eq!(chosen(&pick(Some("rpc-msg"), &cands, &[], 0)), vec![10]);
    }

    #[test]
    fn established_owners_keep_the_name() {
        let est = [owner(0, "/usr/sbin/rpc-msg")];
        // Even a "better" newcomer cannot take over.
        let cands = vec![c(10, 0, "/usr/sbin/rpc-msg"), c(11, 0, "/opt/rpc-msg")];
        let p = pick(Some("rpc-msg"), &cands, &est, 0);
        assert_eq!(chosen(&p), vec![10]);
        // The real one gone, only strangers left: said, not adopted.
        let cands = vec![c(11, 65534, "/usr/bin/sleep")];
        assert!(matches!(
            pick(Some("rpc-msg"), &cands, &est, 0),
            Pick::Stranger { .. }
        ));
    }

    #[test]
    fn one_service_under_two_accounts_is_one_owner_group() {
        // nginx: master as root, workers as www-data.
        let cands = vec![
            c(10, 0, "/usr/sbin/nginx"),
            c(11, 33, "/usr/sbin/nginx"),
            c(12, 33, "/usr/sbin/nginx"),
        ];
        let p = pick(Some("nginx"), &cands, &[], 0);
        assert_eq!(chosen(&p), vec![10, 11, 12]);
        let Pick::Chosen { establish, .. } = p else {
            unreachable!()
        };
        assert_eq!(establish.len(), 2);
    }

    #[test]
    fn ambiguous_when_nothing_tells_them_apart() {
        // Two ordinary users, one program not named after the pattern.
        let cands = vec![c(10, 65534, "/usr/bin/app"), c(11, 65533, "/usr/bin/app")];
        assert!(matches!(
            pick(Some("svc"), &cands, &[], 0),
            Pick::Ambiguous(_)
        ));
        // Two system programs both named after the pattern.
        let cands = vec![c(10, 0, "/usr/sbin/svc"), c(11, 0, "/opt/svc")];
        assert!(matches!(
            pick(Some("svc"), &cands, &[], 0),
            Pick::Ambiguous(_)
        ));
        // fdwatch's own user is trusted: checking one's own service.
        let cands = vec![c(10, 1000, "/home/u/svc"), c(11, 65534, "/usr/bin/sleep")];
        assert_eq!(chosen(&pick(Some("svc"), &cands, &[], 1000)), vec![10]);
    }

    #[test]
    fn labels_are_short_and_plain() {
        let t = Targets {
            name: Some("rpc msg*".into()),
            ..Targets::default()
        };
        assert_eq!(t.label(), "rpc_msg_");
        let t = Targets {
            exe: Some("/usr/sbin/a-very-long-daemon-name".into()),
            ..Targets::default()
        };
        assert_eq!(t.label(), "a-very-long-");
    }
}

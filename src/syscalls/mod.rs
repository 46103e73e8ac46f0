//! Exact syscall counts of one process, from one of two kernel backends:
//!
//! * `bpf` ([`bpf`]): one BPF program on the `sys_enter` raw tracepoint,
//!   filtered on the target's tgid, counting into a per-CPU array. Cheapest
//!   for the target; needs root (or CAP_BPF + CAP_PERFMON) and kernel BTF.
//! * `perf` ([`tracepoints`]): 16 perf tracepoint counters per thread,
//!   inherited by new threads. Needs only CAP_PERFMON and tracefs.
//!
//! [`SyscallCounter::attach`] tries BPF first, then perf, and says in its
//! notes which one counts and, when BPF could not, why (docs/syscalls.md).
//! `FDWATCH_SYSCALLS_BACKEND=auto|bpf|perf` picks one (tests, operators).

pub mod access;
mod bpf;
mod perf;
mod tracepoints;

pub use bpf::{MAX_TARGETS as BPF_MAX_TARGETS, OBJECT_ENV as BPF_OBJECT_ENV};

/// Picks the backend: `auto` (default), `bpf` or `perf`.
pub const BACKEND_ENV: &str = "FDWATCH_SYSCALLS_BACKEND";

/// Which kernel mechanism counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A BPF program on the `sys_enter` raw tracepoint.
    Bpf,
    /// perf tracepoint counters per thread.
    Perf,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Bpf => "bpf",
            Backend::Perf => "perf",
        }
    }
}

/// Which backend to attach with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// BPF where possible, perf otherwise.
    #[default]
    Auto,
    /// BPF or `Unavailable`.
    Bpf,
    /// perf or `Unavailable`.
    Perf,
}

impl BackendChoice {
    /// A value of [`BACKEND_ENV`]; empty means `auto`.
    pub fn parse(s: &str) -> Result<BackendChoice, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(BackendChoice::Auto),
            "bpf" => Ok(BackendChoice::Bpf),
            "perf" => Ok(BackendChoice::Perf),
            other => Err(format!("{BACKEND_ENV}={other}: expected auto, bpf or perf")),
        }
    }

    /// From [`BACKEND_ENV`]; unset means `auto`.
    pub fn from_env() -> Result<BackendChoice, SyscallError> {
        match std::env::var_os(BACKEND_ENV) {
            None => Ok(BackendChoice::Auto),
            Some(v) => BackendChoice::parse(&v.to_string_lossy()).map_err(unavailable),
        }
    }
}

/// Counts one process's syscalls until dropped; nothing outlives it.
pub struct SyscallCounter {
    pid: i32,
    /// Field 22 of /proc/PID/stat at attach: tells a reused pid apart.
    start_time: Option<u64>,
    inner: Inner,
}

enum Inner {
    Bpf(bpf::BpfCounter),
    Perf(tracepoints::PerfCounter),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SyscallCounts {
    /// Which backend counted (absent from records written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<Backend>,
    pub total: u64,
    /// All socket() calls.
    pub socket: u64,
    pub socket_netlink: u64,
    pub socket_inet: u64,
    pub socket_inet6: u64,
    pub socket_unix: u64,
    pub close: u64,
    pub openat: u64,
    /// accept + accept4.
    pub accept: u64,
    pub connect: u64,
    pub bind: u64,
    pub sendto: u64,
    pub recvfrom: u64,
    pub sendmsg: u64,
    pub recvmsg: u64,
    /// Threads currently counted.
    pub threads: u64,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SyscallRates {
    pub total: f64,
    pub socket: f64,
    pub socket_netlink: f64,
    pub socket_inet: f64,
    pub socket_inet6: f64,
    pub socket_unix: f64,
    pub close: f64,
    pub openat: f64,
    pub accept: f64,
    pub connect: f64,
    pub bind: f64,
    pub sendto: f64,
    pub recvfrom: f64,
    pub sendmsg: f64,
    pub recvmsg: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum SyscallError {
    #[error("exact syscall counts unavailable: {reason}")]
    Unavailable { reason: String },
    #[error("pid {pid} exited")]
    Exited { pid: i32 },
}

impl SyscallCounts {
    /// Other socket() calls: all minus netlink, inet, inet6 and unix.
    pub fn socket_other(&self) -> u64 {
        self.socket.saturating_sub(
            self.socket_netlink + self.socket_inet + self.socket_inet6 + self.socket_unix,
        )
    }

    /// Per-second rates between `earlier` and `self` over `seconds`.
    pub fn per_second(&self, earlier: &SyscallCounts, seconds: f64) -> SyscallRates {
        let r = |now: u64, then: u64| {
            if seconds > 0.0 {
                now.saturating_sub(then) as f64 / seconds
            } else {
                0.0
            }
        };
        SyscallRates {
            total: r(self.total, earlier.total),
            socket: r(self.socket, earlier.socket),
            socket_netlink: r(self.socket_netlink, earlier.socket_netlink),
            socket_inet: r(self.socket_inet, earlier.socket_inet),
            socket_inet6: r(self.socket_inet6, earlier.socket_inet6),
            socket_unix: r(self.socket_unix, earlier.socket_unix),
            close: r(self.close, earlier.close),
            openat: r(self.openat, earlier.openat),
            accept: r(self.accept, earlier.accept),
            connect: r(self.connect, earlier.connect),
            bind: r(self.bind, earlier.bind),
            sendto: r(self.sendto, earlier.sendto),
            recvfrom: r(self.recvfrom, earlier.recvfrom),
            sendmsg: r(self.sendmsg, earlier.sendmsg),
            recvmsg: r(self.recvmsg, earlier.recvmsg),
        }
    }
}

fn unavailable(reason: impl Into<String>) -> SyscallError {
    SyscallError::Unavailable {
        reason: reason.into(),
    }
}

/// State letter and start time of a /proc/PID/stat text.
fn parse_stat(stat: &str) -> Option<(char, u64)> {
    crate::sample::stat::parse_stat(stat).map(|st| (st.state, st.start_time))
}

/// Whether `pid` is a live (not zombie) process, and the same one that
/// started at `start_time` when given.
fn alive(pid: i32, start_time: Option<u64>) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    match parse_stat(&stat) {
        Some((state, start)) => {
            !matches!(state, 'Z' | 'X') && start_time.is_none_or(|s| s == start)
        }
        None => false,
    }
}

fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat).map(|(_, start)| start)
}

/// Thread ids of `pid`, from /proc/PID/task.
fn list_tids(pid: i32) -> Result<Vec<i32>, SyscallError> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/task")).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            SyscallError::Exited { pid }
        } else {
            unavailable(format!("cannot list /proc/{pid}/task: {e}"))
        }
    })?;
    let mut tids: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    // The main thread first: it is the likeliest creator of new threads.
    tids.sort_by_key(|&t| (t != pid, t));
    Ok(tids)
}

impl SyscallCounter {
    /// Count `pid`'s syscalls with the backend [`BACKEND_ENV`] names (BPF,
    /// else perf, by default). The notes say which backend counts, why BPF
    /// could not when it could not, and what was done on the way (e.g.
    /// mounting tracefs); the library never prints.
    pub fn attach(pid: i32) -> Result<(SyscallCounter, Vec<String>), SyscallError> {
        SyscallCounter::attach_with(pid, BackendChoice::from_env()?)
    }

    /// Count `pid`'s syscalls with the given backend choice.
    pub fn attach_with(
        pid: i32,
        choice: BackendChoice,
    ) -> Result<(SyscallCounter, Vec<String>), SyscallError> {
        if pid <= 0 {
            return Err(unavailable(format!("{pid} is not a process id")));
        }
        let start_time = start_time(pid);
        if !alive(pid, start_time) {
            return Err(SyscallError::Exited { pid });
        }
        let bpf_note = format!(
            "syscalls counted by BPF (a sys_enter raw tracepoint program filtered on tgid {pid})"
        );
        let perf_note = "syscalls counted by perf tracepoint counters (16 per thread)";
        let (inner, notes) = match choice {
            BackendChoice::Bpf => (Inner::Bpf(bpf::BpfCounter::attach(pid)?), vec![bpf_note]),
            BackendChoice::Perf => {
                let (p, mut notes) = tracepoints::PerfCounter::attach(pid)?;
                notes.insert(0, format!("{perf_note}, as asked"));
                (Inner::Perf(p), notes)
            }
            BackendChoice::Auto => match bpf::BpfCounter::attach(pid) {
                Ok(b) => (Inner::Bpf(b), vec![bpf_note]),
                Err(SyscallError::Unavailable {
                    reason: why_not_bpf,
                }) => match tracepoints::PerfCounter::attach(pid) {
                    Ok((p, mut notes)) => {
                        notes.insert(0, format!("{perf_note}: BPF not possible: {why_not_bpf}"));
                        (Inner::Perf(p), notes)
                    }
                    Err(SyscallError::Unavailable { reason }) => {
                        return Err(unavailable(format!("{reason} (and BPF: {why_not_bpf})")))
                    }
                    Err(e) => return Err(e),
                },
                Err(e) => return Err(e),
            },
        };
        let counter = SyscallCounter {
            pid,
            start_time,
            inner,
        };
        // A target that died while we attached would otherwise read as idle.
        if !alive(pid, start_time) {
            return Err(SyscallError::Exited { pid });
        }
        Ok((counter, notes))
    }

    /// Cumulative counts since attach, summed over every thread (including
    /// those created since, and those that exited).
    pub fn read(&mut self) -> Result<SyscallCounts, SyscallError> {
        if !alive(self.pid, self.start_time) {
            return Err(SyscallError::Exited { pid: self.pid });
        }
        let mut c = SyscallCounts {
            backend: Some(self.backend_kind()),
            ..Default::default()
        };
        match &mut self.inner {
            Inner::Bpf(b) => b.read(&mut c)?,
            Inner::Perf(p) => p.read(&mut c)?,
        }
        // Every live thread is counted (by tgid, or through inheritance).
        c.threads = list_tids(self.pid)?.len() as u64;
        Ok(c)
    }

    /// The process being counted.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// `"bpf"` or `"perf"`: which backend counts.
    pub fn backend(&self) -> &'static str {
        self.backend_kind().as_str()
    }

    pub fn backend_kind(&self) -> Backend {
        match self.inner {
            Inner::Bpf(_) => Backend::Bpf,
            Inner::Perf(_) => Backend::Perf,
        }
    }

    /// How the BPF program was loaded (the kernel's CO-RE or aya's); `None`
    /// for perf.
    pub fn bpf_loader(&self) -> Option<crate::sample::bpf::Loader> {
        match &self.inner {
            Inner::Bpf(b) => Some(b.loader()),
            Inner::Perf(_) => None,
        }
    }

    /// fds this counter holds: perf events (threads at attach × 16), or the
    /// BPF program, its link and maps.
    pub fn fds(&self) -> usize {
        match &self.inner {
            Inner::Bpf(b) => b.fds(),
            Inner::Perf(p) => p.fds(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_per_second() {
        let a = SyscallCounts {
            total: 100,
            socket_netlink: 10,
            threads: 3,
            ..Default::default()
        };
        let b = SyscallCounts {
            total: 300,
            socket_netlink: 30,
            threads: 5,
            ..Default::default()
        };
        let r = b.per_second(&a, 2.0);
        assert_eq!(r.total, 100.0);
        assert_eq!(r.socket_netlink, 10.0);
        assert_eq!(r.close, 0.0);
        assert_eq!(b.per_second(&a, 0.0), SyscallRates::default());
        // A counter going backwards (never expected) gives 0, not a panic.
        assert_eq!(a.per_second(&b, 1.0).total, 0.0);
    }

    #[test]
    fn socket_other_is_the_rest() {
        let c = SyscallCounts {
            socket: 10,
            socket_netlink: 3,
            socket_inet: 2,
            socket_inet6: 1,
            socket_unix: 1,
            ..Default::default()
        };
        assert_eq!(c.socket_other(), 3);
    }

    #[test]
    fn backend_choice_parses() {
        assert_eq!(BackendChoice::parse(""), Ok(BackendChoice::Auto));
        assert_eq!(BackendChoice::parse("auto"), Ok(BackendChoice::Auto));
        assert_eq!(BackendChoice::parse("bpf"), Ok(BackendChoice::Bpf));
        assert_eq!(BackendChoice::parse(" PERF\n"), Ok(BackendChoice::Perf));
        assert_eq!(
            BackendChoice::parse("ebpf"),
            Err("FDWATCH_SYSCALLS_BACKEND=ebpf: expected auto, bpf or perf".to_string())
        );
    }

    #[test]
    fn backend_is_in_the_json_only_when_known() {
        let mut c = SyscallCounts::default();
        let v = serde_json::to_value(&c).unwrap();
        assert!(v.get("backend").is_none());
        c.backend = Some(Backend::Bpf);
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["backend"], "bpf");
        // Records written before the field existed still read.
        let old: SyscallCounts = serde_json::from_str(r#"{"total": 3, "socket": 0, "socket_netlink": 0, "socket_inet": 0, "socket_inet6": 0, "socket_unix": 0, "close": 0, "openat": 0, "accept": 0, "connect": 0, "bind": 0, "sendto": 0, "recvfrom": 0, "sendmsg": 0, "recvmsg": 0, "threads": 1}"#).unwrap();
        assert_eq!(old.backend, None);
        assert_eq!(old.total, 3);
    }

    #[test]
    fn stat_fields_survive_odd_comms() {
        let stat = "42 (a) b (c) Z) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 3 0 777 1000 10";
        assert_eq!(parse_stat(stat), Some(('S', 777)));
        assert_eq!(parse_stat("42 (x) Z 1"), None);
        assert_eq!(parse_stat("garbage"), None);
    }
}

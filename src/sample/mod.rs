//! Everything that reads the kernel, and the plain data it produces.
//!
//! This module owns the [`Sample`]: one census of one process's file
//! descriptors, its limits and the system-wide file table. It must never
//! interpret the data (no trends, no verdicts): that is `trend` and `diagnose`.
//! All kernel access goes through [`ProcRoot`], so tests point it at fixtures.

pub mod bpf;
pub mod cgroup;
pub mod fds;
pub mod host;
pub mod kind;
pub mod listing;
pub mod net;
pub mod own;
pub mod procroot;
pub mod stat;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use kind::FdKind;
pub use procroot::ProcRoot;

/// Version of the JSON sample schema (docs/json-schema.md). Bump on any
/// incompatible change; additions keep the number.
pub const SCHEMA_VERSION: u32 = 1;

/// How many repeated paths / remote endpoints a sample keeps (the top ones).
pub const TOP_N: usize = 10;

/// Which census produced a sample. The rest of the pipeline never branches on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// Full census through `/proc/<pid>/fd` and the netns tables.
    Proc,
    /// Count only: `stat("/proc/<pid>/fd").st_size`, no classification.
    Count,
    /// Full census by a BPF `task_file` iterator (`sample::bpf`).
    Bpf,
}

/// Who the target is. `start_time` (clock ticks after boot, field 22 of
/// `/proc/<pid>/stat`) tells a reused PID apart from the original process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub pid: i32,
    pub comm: String,
    pub start_time: u64,
}

/// `RLIMIT_NOFILE` of the target. `None` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FdLimits {
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

/// The system-wide file table: `/proc/sys/fs/file-nr`, `file-max`, `nr_open`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SystemFiles {
    /// Allocated file handles (first field of file-nr).
    pub allocated: u64,
    /// Allocated but unused (second field of file-nr; 0 on modern kernels).
    pub unused: u64,
    /// fs.file-max: the system-wide ceiling.
    pub max: u64,
    /// fs.nr_open: the ceiling for any process's hard RLIMIT_NOFILE.
    pub nr_open: u64,
}

/// Cumulative activity counters of the target (`/proc/<pid>/io`, `status`).
/// Rates are differences of two samples; the counters themselves are raw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Activity {
    /// read-like syscalls (syscr of /proc/<pid>/io); None when unreadable.
    pub syscr: Option<u64>,
    /// write-like syscalls (syscw).
    pub syscw: Option<u64>,
    pub voluntary_ctxt_switches: Option<u64>,
    pub nonvoluntary_ctxt_switches: Option<u64>,
}

/// A path (or remote endpoint) and how many fds refer to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counted {
    pub name: String,
    pub count: u64,
}

/// One census of one process. Plain data: serialisable, comparable, no handles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub schema: u32,
    pub backend: Backend,
    pub pid: i32,
    pub comm: String,
    pub start_time: u64,
    /// Wall clock, seconds since the Unix epoch.
    pub unix_time: f64,
    /// CLOCK_MONOTONIC seconds: the time axis for trends (never jumps).
    pub mono_time: f64,
    /// Seconds the process had been running at this sample (CLOCK_BOOTTIME
    /// minus its start time): with `fds`, a bound on how fast it has grown
    /// over its whole life. None for inputs that do not carry it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age: Option<f64>,
    /// Open fds. Equals the sum of `kinds` for a full census.
    pub fds: u64,
    pub limits: FdLimits,
    pub system: SystemFiles,
    /// fds by kind (empty for a count-only sample).
    #[serde(default)]
    pub kinds: BTreeMap<FdKind, u64>,
    /// TCP (v4 and v6) sockets by state name (`ESTABLISHED`, `CLOSE_WAIT`, ...).
    #[serde(default)]
    pub tcp_states: BTreeMap<String, u64>,
    /// Netlink sockets by protocol name (`ROUTE`, `SOCK_DIAG`, ...); `unknown`
    /// for sockets in no table (never bound: /proc cannot tell the protocol).
    #[serde(default)]
    pub netlink_protocols: BTreeMap<String, u64>,
    /// Unix sockets by type (`STREAM`, `DGRAM`, `SEQPACKET`): BPF census only
    /// (absent from the JSON when empty).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unix_types: BTreeMap<String, u64>,
    /// Paths held open more than once, most held first (top [`TOP_N`]).
    #[serde(default)]
    pub repeated_paths: Vec<Counted>,
    /// Remote endpoints of connected TCP sockets, most used first (top [`TOP_N`]).
    #[serde(default)]
    pub remote_endpoints: Vec<Counted>,
    /// Bytes still held on disk by deleted-but-open files.
    #[serde(default)]
    pub deleted_bytes: u64,
    /// Socket and pipe inodes that were not in the previous sample, by kind:
    /// a lower bound of what was opened in between (filled by the watcher).
    #[serde(default)]
    pub new_inodes: BTreeMap<FdKind, u64>,
    #[serde(default)]
    pub activity: Activity,
    /// Exact cumulative syscall counts since fdwatch attached (BPF or perf
    /// tracepoints, `backend` says which; docs/syscalls.md). None when not
    /// counted.
    #[serde(default)]
    pub syscalls: Option<crate::syscalls::SyscallCounts>,
    /// fds listed by readdir that were closed before they could be read (a race, not an error).
    #[serde(default)]
    pub vanished: u64,
    /// Inodes of sockets and pipes, to find churn between samples. Not serialised:
    /// `new_inodes` carries what it tells.
    #[serde(skip)]
    pub inodes: Vec<(FdKind, u64)>,
    /// Sockets a one-shot /proc census named by getxattr alone, without a
    /// stat (see `fds`). Not serialised: how, not what.
    #[serde(skip)]
    pub named_without_stat: u64,
}

impl Sample {
    /// An empty census of one process at one time (no fds counted yet).
    pub fn new(pid: i32, comm: &str, start_time: u64, unix_time: f64, mono_time: f64) -> Sample {
        Sample {
            schema: SCHEMA_VERSION,
            backend: Backend::Proc,
            pid,
            comm: comm.to_string(),
            start_time,
            unix_time,
            mono_time,
            age: None,
            fds: 0,
            limits: FdLimits::default(),
            system: SystemFiles::default(),
            kinds: BTreeMap::new(),
            tcp_states: BTreeMap::new(),
            netlink_protocols: BTreeMap::new(),
            unix_types: BTreeMap::new(),
            repeated_paths: Vec::new(),
            remote_endpoints: Vec::new(),
            deleted_bytes: 0,
            new_inodes: BTreeMap::new(),
            activity: Activity::default(),
            syscalls: None,
            vanished: 0,
            named_without_stat: 0,
            inodes: Vec::new(),
        }
    }

    /// Add another process's census into this one (a command and its
    /// descendants, seen as one). Limits and identity stay this sample's.
    pub fn merge(&mut self, other: &Sample) {
        fn add<K: Ord + Clone>(into: &mut BTreeMap<K, u64>, from: &BTreeMap<K, u64>) {
            for (k, v) in from {
                *into.entry(k.clone()).or_default() += v;
            }
        }
        fn add_counted(into: &mut Vec<Counted>, from: &[Counted]) {
            let mut all: BTreeMap<String, u64> =
                into.drain(..).map(|c| (c.name, c.count)).collect();
            for c in from {
                *all.entry(c.name.clone()).or_default() += c.count;
            }
            *into = fds::top_counted(all.into_iter(), TOP_N, 1);
        }
        self.fds += other.fds;
        add(&mut self.kinds, &other.kinds);
        add(&mut self.tcp_states, &other.tcp_states);
        add(&mut self.netlink_protocols, &other.netlink_protocols);
        add(&mut self.unix_types, &other.unix_types);
        add(&mut self.new_inodes, &other.new_inodes);
        add_counted(&mut self.repeated_paths, &other.repeated_paths);
        add_counted(&mut self.remote_endpoints, &other.remote_endpoints);
        self.deleted_bytes += other.deleted_bytes;
        self.vanished += other.vanished;
        self.inodes.extend_from_slice(&other.inodes);
    }

    pub fn identity(&self) -> Identity {
        Identity {
            pid: self.pid,
            comm: self.comm.clone(),
            start_time: self.start_time,
        }
    }

    /// Share of the soft limit in use, 0..1 (None when unlimited).
    pub fn usage_ratio(&self) -> Option<f64> {
        self.limits
            .soft
            .filter(|s| *s > 0)
            .map(|s| self.fds as f64 / s as f64)
    }

    pub fn kind(&self, kind: FdKind) -> u64 {
        self.kinds.get(&kind).copied().unwrap_or(0)
    }

    /// Netlink sockets of one protocol.
    pub fn netlink(&self, proto: &str) -> u64 {
        self.netlink_protocols.get(proto).copied().unwrap_or(0)
    }

    /// Fill `new_inodes` against the previous sample of the same process.
    pub fn mark_new_inodes(&mut self, previous: &Sample) {
        // Sorted once here, the inodes are walked in step with the previous
        // sample's (sorted when it was marked): no hash set per sample, which
        // at 19k fds was most of a BPF sample's user-space time.
        self.inodes.sort_unstable_by_key(|(_, ino)| *ino);
        let copy;
        let before: &[(FdKind, u64)] = if previous.inodes.is_sorted_by_key(|(_, ino)| *ino) {
            &previous.inodes
        } else {
            let mut v = previous.inodes.clone();
            v.sort_unstable_by_key(|(_, ino)| *ino);
            copy = v;
            &copy
        };
        self.new_inodes.clear();
        let mut j = 0;
        for (kind, ino) in &self.inodes {
            while j < before.len() && before[j].1 < *ino {
                j += 1;
            }
            if j >= before.len() || before[j].1 != *ino {
                *self.new_inodes.entry(*kind).or_default() += 1;
            }
        }
    }
}

/// Why a sample could not be taken. Each maps to exit code 3 (UNKNOWN) at the edge.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error("no such process: pid {pid}")]
    NoSuchProcess { pid: i32 },
    #[error("permission denied reading {path}: {hint}")]
    PermissionDenied {
        path: String,
        owner: u32,
        hint: String,
    },
    #[error("pid {pid} ({comm}) exited")]
    Exited { pid: i32, comm: String },
    /// The kernel-side census walked no file of a process that /proc says has
    /// some (seen for a process fdwatch may not ptrace): never report 0.
    #[error("the BPF census saw no file of pid {pid}, while /proc counts {proc_count}")]
    BpfBlind { pid: i32, proc_count: u64 },
    #[error("pid {pid} was reused: now {now_comm} started at tick {now_start}, was {was_comm} started at tick {was_start}")]
    PidReused {
        pid: i32,
        was_comm: String,
        was_start: u64,
        now_comm: String,
        now_start: u64,
    },
    #[error("pid {pid} ({comm}) is a kernel thread: it has no file descriptors to watch")]
    KernelThread { pid: i32, comm: String },
    #[error("pid {pid} ({comm}) is a zombie: it has exited and its parent has not reaped it")]
    Zombie { pid: i32, comm: String },
    /// The cause is part of the message, not a `source`: shown as a chain
    /// (`{:#}`) it would otherwise be said twice.
    #[error("reading {path}: {err}")]
    Io { path: String, err: std::io::Error },
    #[error("malformed {path}: {detail}")]
    Malformed { path: String, detail: String },
}

/// Capability names by bit (include/uapi/linux/capability.h).
const CAP_NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// A capability set (`CapEff:`, `CapPrm:`, ...) of a /proc/PID/status text:
/// the one reader of capabilities, for the permission hints here, the
/// syscall counter's access checks and the BPF prechecks.
pub fn cap_mask(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        l.strip_prefix(field)
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    })
}

/// What to do about a permission error reading `pid`'s fds, from where fdwatch
/// stands: the kernel lets a process read another's fds when it has
/// CAP_SYS_PTRACE (or the same uid) *and* every capability the target holds.
pub fn permission_denied(
    path: String,
    pid: i32,
    owner: u32,
    proc_root: &std::path::Path,
) -> SampleError {
    let mine = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| cap_mask(&s, "CapEff:"));
    let theirs = std::fs::read_to_string(proc_root.join(pid.to_string()).join("status"))
        .ok()
        .and_then(|s| cap_mask(&s, "CapPrm:"));
    const CAP_SYS_PTRACE: u64 = 1 << 19;
    let hint = match (mine, theirs) {
        (Some(m), Some(t)) if m & CAP_SYS_PTRACE != 0 && t & !m != 0 => {
            let missing: Vec<&str> = (0..CAP_NAMES.len()).filter(|b| t & !m & (1 << b) != 0).map(|b| CAP_NAMES[b]).collect();
            format!("the target holds capabilities fdwatch lacks ({}); run fdwatch with them too", missing.join(", "))
        }
        (Some(m), _) if m & CAP_SYS_PTRACE != 0 => {
            "refused even with CAP_SYS_PTRACE: the target is probably in another user namespace or protected by a security module (Yama ptrace_scope, SELinux, AppArmor)".to_string()
        }
        _ => format!("needs CAP_SYS_PTRACE (e.g. run as root) or the same uid as the target (uid {owner})"),
    };
    SampleError::PermissionDenied { path, owner, hint }
}

impl SampleError {
    /// True when the target is gone (exited, zombie, reused): a watch ends
    /// cleanly on these instead of failing.
    pub fn target_gone(&self) -> bool {
        matches!(
            self,
            Self::Exited { .. }
                | Self::Zombie { .. }
                | Self::PidReused { .. }
                | Self::NoSuchProcess { .. }
        )
    }
}

/// What to read for one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Census {
    /// Classify every fd (a stat per fd + socket tables; see `fds`).
    Full,
    /// Count only (`stat` fast path).
    CountOnly,
}

/// Take one sample of `pid` under `root`, the only one of its census (no
/// later sample is compared with it; a watch uses [`bpf::Sampler`]). `expect` is the identity seen at the
/// start of a watch: if the PID now belongs to another process, that is an error.
pub fn take(
    root: &ProcRoot,
    pid: i32,
    census: Census,
    expect: Option<&Identity>,
) -> Result<Sample, SampleError> {
    take_with(
        root,
        pid,
        census,
        expect,
        None,
        &mut fds::ProcCache::for_one_sample(),
    )
}

/// [`take`], with the full fd census done by `bpf` when given (identity,
/// limits, system files and activity still come from `root`).
pub fn take_with(
    root: &ProcRoot,
    pid: i32,
    census: Census,
    expect: Option<&Identity>,
    bpf: Option<&mut bpf::BpfCensus>,
    proc_cache: &mut fds::ProcCache,
) -> Result<Sample, SampleError> {
    let ident = root.identity(pid)?;
    if let Some(was) = expect {
        if was.start_time != ident.identity.start_time {
            return Err(SampleError::PidReused {
                pid,
                was_comm: was.comm.clone(),
                was_start: was.start_time,
                now_comm: ident.identity.comm,
                now_start: ident.identity.start_time,
            });
        }
    }
    let unix_time = procroot::unix_now();
    let mono_time = procroot::mono_now();
    let mut sample = Sample::new(
        pid,
        &ident.identity.comm,
        ident.identity.start_time,
        unix_time,
        mono_time,
    );
    sample.age = procroot::process_age(ident.identity.start_time);
    match census {
        Census::CountOnly => {
            sample.backend = Backend::Count;
            sample.fds = root.fd_count(pid, ident.uid)?;
        }
        Census::Full => match bpf {
            Some(bpf) => {
                sample.backend = Backend::Bpf;
                bpf.census(&root.pid_dir(pid).join("fd"), pid, &mut sample)?;
            }
            None => fds::census(root, pid, ident.uid, &mut sample, proc_cache)?,
        },
    }
    // After the census, not before: the fd walk is the long part, and these
    // reads before it slowed it by several times their own cost (they evict
    // what the walk keeps warm). Same snapshot either way: microseconds apart.
    let limits = root.fd_limits(pid, &ident.identity);
    let system = root.system_files();
    let activity = root.activity(pid);
    // The process may have exited while we read its fds: an empty fd dir of an
    // exited process must not pass for "0 fds". Checked before the reads
    // above are judged: a process that became a zombie meanwhile shows an
    // empty `limits`, and that is an exit, not a malformed file.
    if root
        .identity(pid)
        .map(|i| i.identity.start_time != sample.start_time)
        .unwrap_or(true)
    {
        return Err(SampleError::Exited {
            pid,
            comm: sample.comm,
        });
    }
    sample.limits = limits?;
    sample.system = system?;
    sample.activity = activity;
    Ok(sample)
}

#[cfg(test)]
pub(crate) mod fixture_tests;

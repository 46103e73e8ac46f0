//! The kernel side of the stack tracer: loads `bpf/stacks.bpf.c` for one
//! process (its tgid and the syscall table are frozen into `.rodata`),
//! attaches it to the `sys_exit` raw tracepoint, and reads its maps.
//!
//! Nothing is pinned: the program, its link and its maps are fds of this
//! process, so the kernel frees them however fdwatch ends (exit, Ctrl-C,
//! SIGTERM, SIGKILL, a panic). Loading uses the kernel's CO-RE
//! (`bpf::load`, Linux 5.17+; the program also needs `bpf_loop`,
//! 5.17+), so no aya fallback is offered: an older kernel gets one line.
//!
//! This module reads raw records only; [`super`] aggregates and
//! [`super::symbols`] names the addresses.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use crate::bpf::load;

use super::StacksError;

/// The object built by `scripts/build-bpf.sh` from `bpf/stacks.bpf.c`.
static OBJECT: &[u8] = aya::include_bytes_aligned!("bpf/stacks.bpf.o");

/// Use this object file instead of the embedded one (CI runs the tests on an
/// object rebuilt from source).
pub const OBJECT_ENV: &str = "FDWATCH_STACKS_BPF_OBJECT";

const PROGRAM: &str = "fdw_sys_exit";
const FDS_MAP: &str = "fdw_fds";
const STACKS_MAP: &str = "fdw_stacks";
const SITES_MAP: &str = "fdw_sites";
const STATS_MAP: &str = "fdw_stats";
const TEXT_MAP: &str = "fdw_text";
/// Executable mappings the program checks return addresses against
/// (MAX_TEXT in C).
pub const MAX_TEXT: usize = 32;
/// Frames kept per stack (MAX_FRAMES in C; the kernel's default
/// `kernel.perf_event_max_stack` is 127 too).
pub const MAX_FRAMES: usize = 127;
/// fds remembered at once (MAX_FDS in C).
pub const MAX_FDS: u32 = 262_144;
/// Distinct stacks stored (MAX_STACKS in C).
pub const MAX_STACKS: u32 = 16_384;
const NR_ACTIONS: usize = 512;
const NR_STATS: usize = 6;

/// `enum action` of stacks.bpf.c.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Action {
    RetFd = 1,
    Socket,
    Accept,
    Pair,
    Pipe,
    Dup,
    Dup2,
    Fcntl,
    Bpf,
    Signalfd,
    Close,
    CloseRange,
}

/// What each syscall does to the fd table, and the name fdwatch gives the
/// fds it creates.
const SYSCALLS: &[(libc::c_long, Action, &str)] = &[
    (libc::SYS_socket, Action::Socket, "socket"),
    (libc::SYS_socketpair, Action::Pair, "socketpair"),
    (libc::SYS_accept4, Action::Accept, "accept4"),
    (libc::SYS_accept, Action::Accept, "accept"),
    (libc::SYS_openat, Action::RetFd, "openat"),
    (libc::SYS_openat2, Action::RetFd, "openat2"),
    (
        libc::SYS_open_by_handle_at,
        Action::RetFd,
        "open_by_handle_at",
    ),
    (libc::SYS_pipe2, Action::Pipe, "pipe2"),
    (libc::SYS_eventfd2, Action::RetFd, "eventfd2"),
    (libc::SYS_epoll_create1, Action::RetFd, "epoll_create1"),
    (libc::SYS_timerfd_create, Action::RetFd, "timerfd_create"),
    (libc::SYS_signalfd4, Action::Signalfd, "signalfd4"),
    (libc::SYS_inotify_init1, Action::RetFd, "inotify_init1"),
    (libc::SYS_fanotify_init, Action::RetFd, "fanotify_init"),
    (libc::SYS_memfd_create, Action::RetFd, "memfd_create"),
    (libc::SYS_pidfd_open, Action::RetFd, "pidfd_open"),
    (libc::SYS_pidfd_getfd, Action::RetFd, "pidfd_getfd"),
    (libc::SYS_userfaultfd, Action::RetFd, "userfaultfd"),
    (libc::SYS_io_uring_setup, Action::RetFd, "io_uring_setup"),
    (libc::SYS_perf_event_open, Action::RetFd, "perf_event_open"),
    (libc::SYS_bpf, Action::Bpf, "bpf"),
    (libc::SYS_dup, Action::Dup, "dup"),
    (libc::SYS_dup3, Action::Dup2, "dup3"),
    (libc::SYS_fcntl, Action::Fcntl, "fcntl"),
    (libc::SYS_close, Action::Close, "close"),
    (libc::SYS_close_range, Action::CloseRange, "close_range"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_open, Action::RetFd, "open"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_creat, Action::RetFd, "creat"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_pipe, Action::Pipe, "pipe"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_dup2, Action::Dup2, "dup2"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_eventfd, Action::RetFd, "eventfd"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_epoll_create, Action::RetFd, "epoll_create"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_inotify_init, Action::RetFd, "inotify_init"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_signalfd, Action::Signalfd, "signalfd"),
];

/// bpf() commands that return a new fd (include/uapi/linux/bpf.h): MAP_CREATE,
/// PROG_LOAD, OBJ_GET, PROG/MAP_GET_FD_BY_ID, RAW_TRACEPOINT_OPEN, BTF_LOAD,
/// BTF_GET_FD_BY_ID, LINK_CREATE, LINK_GET_FD_BY_ID, ENABLE_STATS,
/// ITER_CREATE, TOKEN_CREATE.
const BPF_FD_CMDS: [u32; 13] = [0, 5, 7, 13, 14, 17, 18, 19, 28, 30, 32, 33, 36];

/// The name of the syscall `nr` (of this architecture), as the tracer knows it.
pub fn syscall_name(nr: u32) -> Option<&'static str> {
    SYSCALLS
        .iter()
        // c_long is i64 here; u32 -> c_long is lossless on 64-bit targets.
        .find(|(n, _, _)| *n == nr as libc::c_long)
        .map(|(_, _, name)| *name)
}

/// One open fd the program remembers (`struct fd_rec`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdRecord {
    pub fd: u32,
    /// The stack's hash (0: not recorded).
    pub stack: u64,
    /// CLOCK_MONOTONIC ns at the open.
    pub time_ns: u64,
    /// The syscall that created it (for a dup of a remembered fd: the
    /// original's).
    pub nr: u32,
    /// Sockets: the family and `type & 0xf`.
    pub family: u16,
    pub sock_type: u8,
    /// Made by dup, dup2, dup3 or fcntl(F_DUPFD).
    pub dup: bool,
}

/// Opens and closes counted for one stack (`struct site`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SiteCount {
    pub opens: u64,
    pub closes: u64,
    /// The kind of the first fd the stack opened (as in [`FdRecord`]).
    pub nr: u32,
    pub family: u16,
    pub sock_type: u8,
}

/// The program's counters (`enum fdw_stat`), summed over CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Stats {
    /// fds the target created since attach.
    pub opens: u64,
    /// Of those, closed again (close, close_range, dup2/dup3 over them).
    pub closes: u64,
    /// fds not remembered because the fd table (MAX_FDS) was full.
    pub fds_dropped: u64,
    /// Stacks not stored because the stack table (MAX_STACKS) was full.
    pub stacks_dropped: u64,
    /// Opens not counted by stack because the site table was full.
    pub sites_dropped: u64,
    /// Opens whose user stack the kernel could not take.
    pub stack_errors: u64,
}

/// Everything read in one pass over the maps.
#[derive(Debug, Clone, Default)]
pub struct Raw {
    pub fds: Vec<FdRecord>,
    pub sites: HashMap<u64, SiteCount>,
    pub stats: Stats,
    /// CLOCK_MONOTONIC ns when read.
    pub now_ns: u64,
}

/// The loaded program for one process. Dropping it detaches and frees it.
pub struct Program {
    _prog: OwnedFd,
    _rest: Vec<OwnedFd>,
    fds: OwnedFd,
    stacks: OwnedFd,
    sites: OwnedFd,
    stats: OwnedFd,
    text: OwnedFd,
    cpus: usize,
}

/// One stored stack: the frame-pointer walk (innermost first) and the code
/// addresses found on top of the user stack, one of which may be the
/// return address the walk skips when the syscall was made from a
/// frameless function.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawStack {
    pub ips: Vec<u64>,
    pub candidates: Vec<u64>,
}

/// Candidates kept per stack (MAX_CANDIDATES in C).
pub const MAX_CANDIDATES: usize = 4;
/// Bytes of `struct stack`.
const STACK_BYTES: usize = 8 + 8 * MAX_CANDIDATES + 8 * MAX_FRAMES;

/// Why the tracer cannot run here, in one line, before anything is loaded:
/// privileges (what is missing), the pid namespace, BTF.
pub fn precheck() -> Result<(), String> {
    crate::bpf::precheck("fdwatch stacks", "the stack tracer", true)
}

/// The `.rodata` values: the action of each syscall number, the bpf()
/// commands that return fds.
fn action_table() -> [u8; NR_ACTIONS] {
    let mut t = [0u8; NR_ACTIONS];
    for &(nr, action, _) in SYSCALLS {
        if let Ok(i) = usize::try_from(nr) {
            if i < NR_ACTIONS {
                t[i] = action as u8;
            }
        }
    }
    t
}

fn bpf_cmd_mask() -> u64 {
    BPF_FD_CMDS.iter().fold(0u64, |m, c| m | (1u64 << c))
}

impl Program {
    /// Load and attach the program for `tgid`.
    pub fn load(tgid: u32) -> Result<Program, StacksError> {
        let bytes = load::object_bytes(OBJECT_ENV, OBJECT).map_err(StacksError::Unavailable)?;
        let actions = action_table();
        let tgid_bytes = tgid.to_ne_bytes();
        let mask = bpf_cmd_mask().to_ne_bytes();
        let globals: [(&str, &[u8]); 3] = [
            ("target_tgid", &tgid_bytes),
            ("fdw_action", &actions),
            ("bpf_fd_cmds", &mask),
        ];
        let spec = load::Spec {
            program: PROGRAM,
            attach: load::Attach::RawTracepoint("sys_exit"),
            globals: &globals,
        };
        let mut l = load::load(&bytes, &spec).map_err(|e| {
            StacksError::Unavailable(format!("the kernel could not load the stack tracer: {e}"))
        })?;
        let fds = l.take_map(FDS_MAP).map_err(StacksError::Unavailable)?;
        let stacks = l.take_map(STACKS_MAP).map_err(StacksError::Unavailable)?;
        let sites = l.take_map(SITES_MAP).map_err(StacksError::Unavailable)?;
        let stats = l.take_map(STATS_MAP).map_err(StacksError::Unavailable)?;
        let text = l.take_map(TEXT_MAP).map_err(StacksError::Unavailable)?;
        let (prog, rest) = l.into_parts();
        let cpus = aya::util::nr_cpus()
            .map_err(|(path, e)| StacksError::Unavailable(format!("reading {path}: {e}")))?;
        let p = Program {
            _prog: prog,
            _rest: rest,
            fds,
            stacks,
            sites,
            stats,
            text,
            cpus,
        };
        p.check_maps()?;
        Ok(p)
    }

    /// The maps are what this code reads (the object may come from
    /// [`OBJECT_ENV`]): lookups write what the kernel says.
    fn check_maps(&self) -> Result<(), StacksError> {
        const HASH: u32 = 1;
        const ARRAY: u32 = 2;
        const PERCPU_ARRAY: u32 = 6;
        let want = [
            (FDS_MAP, &self.fds, HASH, 4, 24, MAX_FDS),
            (
                STACKS_MAP,
                &self.stacks,
                HASH,
                8,
                STACK_BYTES as u32,
                MAX_STACKS,
            ),
            (SITES_MAP, &self.sites, HASH, 8, 24, MAX_STACKS),
            (STATS_MAP, &self.stats, PERCPU_ARRAY, 4, 8, NR_STATS as u32),
            (TEXT_MAP, &self.text, ARRAY, 4, 8 + 16 * MAX_TEXT as u32, 1),
        ];
        for (name, fd, ty, key, value, entries) in want {
            let got = load::map_info(fd.as_fd())
                .map_err(|e| StacksError::Unavailable(format!("the BPF map {name}: {e}")))?;
            if got != (ty, key, value, entries) {
                return Err(StacksError::Unavailable(format!(
                    "the BPF map {name} is {got:?}, not {:?}: the object and fdwatch disagree",
                    (ty, key, value, entries)
                )));
            }
        }
        Ok(())
    }

    /// Read the open fds, the per-stack counts and the counters.
    pub fn read(&self) -> Result<Raw, StacksError> {
        let mut raw = Raw {
            now_ns: monotonic_ns(),
            ..Raw::default()
        };
        let mut value = [0u8; 24];
        for key in keys::<4>(self.fds.as_fd())? {
            // A key deleted since we listed it (closed): skip it.
            if !lookup(self.fds.as_fd(), &key, &mut value)? {
                continue;
            }
            raw.fds.push(parse_fd(u32::from_ne_bytes(key), &value));
        }
        let mut value = [0u8; 24];
        for key in keys::<8>(self.sites.as_fd())? {
            if lookup(self.sites.as_fd(), &key, &mut value)? {
                raw.sites.insert(
                    u64::from_ne_bytes(key),
                    SiteCount {
                        opens: u64_at(&value, 0),
                        closes: u64_at(&value, 8),
                        nr: u32::from_ne_bytes([value[16], value[17], value[18], value[19]]),
                        family: u16::from_ne_bytes([value[20], value[21]]),
                        sock_type: value[22],
                    },
                );
            }
        }
        let mut per_cpu = vec![0u8; 8 * self.cpus];
        let mut sums = [0u64; NR_STATS];
        for (i, sum) in sums.iter_mut().enumerate() {
            let key = (i as u32).to_ne_bytes();
            if lookup(self.stats.as_fd(), &key, &mut per_cpu)? {
                *sum = per_cpu.chunks_exact(8).map(|c| u64_at(c, 0)).sum();
            }
        }
        raw.stats = Stats {
            opens: sums[0],
            closes: sums[1],
            fds_dropped: sums[2],
            stacks_dropped: sums[3],
            sites_dropped: sums[4],
            stack_errors: sums[5],
        };
        Ok(raw)
    }

    /// The frames of the stack `hash`, if stored.
    pub fn stack(&self, hash: u64) -> Result<Option<RawStack>, StacksError> {
        let mut value = vec![0u8; STACK_BYTES];
        if !lookup(self.stacks.as_fd(), &hash.to_ne_bytes(), &mut value)? {
            return Ok(None);
        }
        let word = u64_at(&value, 0);
        let len = (word & 0xffff_ffff) as usize;
        let ncand = (word >> 32) as usize;
        let frames_at = 8 + 8 * MAX_CANDIDATES;
        Ok(Some(RawStack {
            candidates: (0..ncand.min(MAX_CANDIDATES))
                .map(|i| u64_at(&value, 8 + 8 * i))
                .collect(),
            ips: (0..len.min(MAX_FRAMES))
                .map(|i| u64_at(&value, frames_at + 8 * i))
                .collect(),
        }))
    }

    /// Tell the program where the target's code is (`[lo, hi)` ranges; at
    /// most [`MAX_TEXT`], the rest ignored).
    pub fn set_text(&self, ranges: &[(u64, u64)]) -> Result<(), StacksError> {
        let n = ranges.len().min(MAX_TEXT);
        let mut value = vec![0u8; 8 + 16 * MAX_TEXT];
        value[..4].copy_from_slice(&(n as u32).to_ne_bytes());
        for (i, (lo, hi)) in ranges.iter().take(n).enumerate() {
            value[8 + 8 * i..16 + 8 * i].copy_from_slice(&lo.to_ne_bytes());
            let at = 8 + 8 * MAX_TEXT + 8 * i;
            value[at..at + 8].copy_from_slice(&hi.to_ne_bytes());
        }
        let key = 0u32.to_ne_bytes();
        let mut attr = MapElem {
            map_fd: self.text.as_raw_fd() as u32,
            key: key.as_ptr() as u64,
            value: value.as_ptr() as u64,
            ..Default::default()
        };
        load::sys::bpf(BPF_MAP_UPDATE_ELEM, &mut attr)
            .map(|_| ())
            .map_err(StacksError::Read)
    }
}

fn parse_fd(fd: u32, v: &[u8; 24]) -> FdRecord {
    let nr = u32::from_ne_bytes([v[16], v[17], v[18], v[19]]);
    FdRecord {
        fd,
        stack: u64_at(v, 0),
        time_ns: u64_at(v, 8),
        nr,
        family: u16::from_ne_bytes([v[20], v[21]]),
        sock_type: v[22],
        dup: v[23] & 1 != 0,
    }
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_ne_bytes)
        .unwrap_or(0)
}

/// CLOCK_MONOTONIC in ns: the clock of `bpf_ktime_get_ns()`.
pub fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;

#[repr(C)]
#[derive(Default)]
struct MapElem {
    map_fd: u32,
    pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// `map[key]` into `out` (which must hold the map's whole value: checked at
/// load). `Ok(false)` when the key is not there.
fn lookup(map: BorrowedFd<'_>, key: &[u8], out: &mut [u8]) -> Result<bool, StacksError> {
    let mut attr = MapElem {
        map_fd: map.as_raw_fd() as u32,
        key: key.as_ptr() as u64,
        value: out.as_mut_ptr() as u64,
        ..Default::default()
    };
    match load::sys::bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(StacksError::Read(e)),
    }
}

/// Every key of a hash map, at most its capacity (a map that keeps
/// changing under us cannot make this loop forever).
fn keys<const N: usize>(map: BorrowedFd<'_>) -> Result<Vec<[u8; N]>, StacksError> {
    let mut out = Vec::new();
    let mut prev: Option<[u8; N]> = None;
    let limit = MAX_FDS as usize + MAX_STACKS as usize;
    while out.len() < limit {
        let mut next = [0u8; N];
        let mut attr = MapElem {
            map_fd: map.as_raw_fd() as u32,
            // A null key asks for the first.
            key: prev.as_ref().map_or(0, |k| k.as_ptr() as u64),
            value: next.as_mut_ptr() as u64,
            ..Default::default()
        };
        match load::sys::bpf(BPF_MAP_GET_NEXT_KEY, &mut attr) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => break,
            Err(e) => return Err(StacksError::Read(e)),
        }
        out.push(next);
        prev = Some(next);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_c_source_agrees_with_this_file() {
        let src = include_str!("bpf/stacks.bpf.c");
        assert!(src.contains(&format!("#define MAX_FRAMES {MAX_FRAMES}\n")));
        assert!(src.contains(&format!("#define MAX_FDS {MAX_FDS}\n")));
        assert!(src.contains(&format!("#define MAX_STACKS {MAX_STACKS}\n")));
        assert!(src.contains(&format!("#define NR_ACTIONS {NR_ACTIONS}\n")));
        assert!(src.contains(&format!("#define MAX_TEXT {MAX_TEXT}\n")));
        assert!(src.contains(&format!("#define MAX_CANDIDATES {MAX_CANDIDATES}\n")));
        let body = &src[src.find("enum action {").unwrap()..];
        let body = &body[..body.find("};").unwrap()];
        let names: Vec<&str> = body
            .lines()
            .filter_map(|l| l.trim().split([',', ' ']).next())
            .filter(|n| n.starts_with("A_"))
            .collect();
        assert_eq!(
            names,
            [
                "A_NONE",
                "A_RET_FD",
                "A_SOCKET",
                "A_ACCEPT",
                "A_PAIR",
                "A_PIPE",
                "A_DUP",
                "A_DUP2",
                "A_FCNTL",
                "A_BPF",
                "A_SIGNALFD",
                "A_CLOSE",
                "A_CLOSE_RANGE"
            ]
        );
        assert_eq!(Action::CloseRange as u8, 12);
        let stats = &src[src.find("enum fdw_stat {").unwrap()..];
        assert!(stats.find("FDW_NR_STATS").unwrap() > stats.find("ST_STACK_ERR").unwrap());
    }

    #[test]
    fn every_syscall_fits_the_table() {
        let t = action_table();
        assert_eq!(t[libc::SYS_socket as usize], Action::Socket as u8);
        assert_eq!(t[libc::SYS_close as usize], Action::Close as u8);
        for (nr, _, name) in SYSCALLS {
            assert!((*nr as usize) < NR_ACTIONS, "{name}");
            assert_eq!(syscall_name(*nr as u32), Some(*name));
        }
        assert_eq!(bpf_cmd_mask() & 1, 1);
    }
}

//! The kernel-side census: every fd of the target classified by a BPF
//! `iter/task_file` program, in one read of its iterator.
//!
//! This module owns loading the program (once per watch), binding an iterator
//! to the target per sample, and turning the program's compact output
//! ([`wire`]) into the fd part of a [`Sample`]. Identity, limits, system files
//! and activity still come from `/proc` (see `sample::take_with`).
//!
//! It must never change the target: no ptrace, no fd duplicated into fdwatch;
//! and it must leave nothing behind: no pins, so the kernel frees the program,
//! its maps and links when fdwatch's fds close, however fdwatch ends.
//!
//! Loader: [`load`] hands the CO-RE relocations to the kernel (Linux 5.17+);
//! before that, aya (pure Rust) relocates in user space. aya's `Iter::attach`
//! cannot pass the target pid in `bpf_iter_link_info`, so the link and
//! iterator are created here with two raw `bpf()` calls; on kernels that
//! refuse a pid (before 6.1) the link walks every task and the program
//! filters by tgid.

pub mod list;
use crate::bpf::load;
pub(crate) use crate::bpf::{error_chain, kernel_then_aya, one_line, Keep};
pub use crate::bpf::{Loader, LOADER_ENV};
pub mod wire;

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use aya::maps::Map;
use aya::programs::Iter;
use aya::{Btf, Ebpf};

use super::{fds::top_counted, net, Counted, Sample, SampleError, TOP_N};

/// The object built by `scripts/build-bpf.sh` from `bpf/census.bpf.c`.
pub(crate) static OBJECT: &[u8] = aya::include_bytes_aligned!("bpf/census.bpf.o");

/// Use this object file instead of the embedded one (CI runs the tests on an
/// object rebuilt from source: docs/bpf.md).
pub const OBJECT_ENV: &str = "FDWATCH_BPF_OBJECT";

/// Walk every task and filter by tgid even where the kernel can bind the
/// iterator to one process (for testing the path older kernels take).
pub const UNBOUND_ENV: &str = "FDWATCH_BPF_UNBOUND";

pub(crate) const PROGRAM: &str = "census_task_file";
const CONFIG_MAP: &str = "fdw_config";

/// Why the BPF census cannot run here: one line, naming what is missing.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}")]
pub struct Unavailable {
    pub reason: String,
}

pub(crate) fn unavailable(reason: impl Into<String>) -> Unavailable {
    Unavailable {
        reason: reason.into(),
    }
}

/// The cheap checks, in the order a person would fix them: privileges, BTF.
/// (Whether the kernel has the task_file iterator shows when
/// [`BpfCensus::load`] asks BTF for `bpf_iter_task_file`.)
pub fn precheck() -> Result<(), Unavailable> {
    crate::bpf::precheck("the BPF census", "the BPF census", false).map_err(unavailable)
}

/// The loaded census program, kept across the samples of a watch.
pub struct BpfCensus {
    prog: OwnedFd,
    /// The one-entry map holding the tgid filter.
    config: OwnedFd,
    _keep: Keep,
    loader: Loader,
    /// The tgid the program's filter is set to (0: none yet).
    filter: u32,
    /// `Some(false)` once the kernel refused a pid-bound link (before 6.1).
    pid_bound: Option<bool>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for BpfCensus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BpfCensus")
            .field("loader", &self.loader)
            .field("filter", &self.filter)
            .field("pid_bound", &self.pid_bound)
            .finish()
    }
}

impl BpfCensus {
    /// Check, load and verify the program. Every failure says what is missing.
    pub fn load() -> Result<BpfCensus, Unavailable> {
        precheck()?;
        let object = load::object_bytes(OBJECT_ENV, OBJECT).map_err(unavailable)?;
        let bytes: &[u8] = &object;
        let spec = load::Spec {
            program: PROGRAM,
            attach: load::Attach::Iter("task_file"),
            globals: &[],
        };
        kernel_then_aya(
            "the BPF census",
            || {
                let mut l = load::load(bytes, &spec)?;
                let config = l.take_map(CONFIG_MAP)?;
                let (prog, rest) = l.into_parts();
                Ok(BpfCensus::new(
                    prog,
                    config,
                    Keep::Fds(rest),
                    Loader::KernelCoRe,
                ))
            },
            || {
                let (ebpf, prog, config) = load_iter_with_aya(bytes, PROGRAM, "census")?;
                Ok(BpfCensus::new(
                    prog,
                    config,
                    Keep::Aya(Box::new(ebpf)),
                    Loader::Aya,
                ))
            },
            unavailable,
        )
    }

    fn new(prog: OwnedFd, config: OwnedFd, keep: Keep, loader: Loader) -> BpfCensus {
        BpfCensus {
            prog,
            config,
            _keep: keep,
            loader,
            filter: 0,
            // FDWATCH_BPF_UNBOUND=1 takes the pre-6.1 path (walk every task,
            // filter by tgid) on any kernel, so tests cover it.
            pid_bound: std::env::var_os(UNBOUND_ENV).map(|_| false),
            buf: Vec::with_capacity(64 * 1024),
        }
    }

    /// How the program was loaded.
    pub fn loader(&self) -> Loader {
        self.loader
    }

    /// One walk of `pid`'s fd table, returned decoded.
    pub fn walk(&mut self, pid: i32) -> Result<wire::Census, SampleError> {
        let prog_fd = self.prog.as_fd();
        // The tgid filter matters only to a link that walks every task.
        let (config, filter) = (self.config.as_fd(), &mut self.filter);
        let mut unbound = || {
            set_filter(config, filter, pid)?;
            Ok::<_, SampleError>(sys::link_create(prog_fd, None))
        };
        let link = match self.pid_bound {
            Some(false) => unbound()?,
            _ => match sys::link_create(prog_fd, Some(pid)) {
                Ok(l) => {
                    self.pid_bound = Some(true);
                    Ok(l)
                }
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                    return Err(SampleError::NoSuchProcess { pid })
                }
                Err(e)
                    if self.pid_bound.is_none()
                        && matches!(e.raw_os_error(), Some(libc::EINVAL | libc::E2BIG)) =>
                {
                    // An older kernel: walk every task, the program filters by tgid.
                    self.pid_bound = Some(false);
                    unbound()?
                }
                Err(e) => Err(e),
            },
        }
        .map_err(|e| io("creating the BPF iterator link", e))?;
        let iter =
            sys::iter_create(link.as_fd()).map_err(|e| io("creating the BPF iterator", e))?;
        let mut file = std::fs::File::from(iter);
        self.buf.clear();
        // One read normally holds the whole census; a large fd table takes a few.
        file.read_to_end(&mut self.buf)
            .map_err(|e| io("reading the BPF iterator", e))?;
        wire::parse(&self.buf).map_err(|e| bpf_error(e.to_string()))
    }

    /// Fill the fd part of `sample` (like `fds::census` does from /proc).
    pub fn census(
        &mut self,
        proc_fd_dir: &Path,
        pid: i32,
        sample: &mut Sample,
    ) -> Result<(), SampleError> {
        let c = self.walk(pid)?;
        if c.files == 0 {
            // /proc's O(1) count is readable even where its fds are not.
            let proc_count = std::fs::metadata(proc_fd_dir).map(|m| m.len()).unwrap_or(0);
            if proc_count > 0 {
                return Err(SampleError::BpfBlind { pid, proc_count });
            }
        }
        fill(c, proc_fd_dir, sample);
        Ok(())
    }
}

/// Point the program's tgid filter at `pid` (one map write when it changes).
fn set_filter(config: BorrowedFd<'_>, filter: &mut u32, pid: i32) -> Result<(), SampleError> {
    if *filter == pid as u32 {
        return Ok(());
    }
    load::update(config, 0, &(pid as u32))
        .map_err(|e| bpf_error(format!("setting the target: {e}")))?;
    *filter = pid as u32;
    Ok(())
}

/// Load one `iter/task_file` program of the object through aya (user-space
/// CO-RE against the parsed kernel BTF): the loaded object, the program's fd
/// and the fd of the filter map. `what` names it in errors (`census`,
/// `listing`): both programs of the object load this way.
pub(crate) fn load_iter_with_aya(
    bytes: &[u8],
    program: &str,
    what: &str,
) -> Result<(Ebpf, OwnedFd, OwnedFd), Unavailable> {
    let btf = Btf::from_sys_fs()
        .map_err(|e| unavailable(format!("the BPF {what} cannot read kernel BTF: {e}")))?;
    let mut ebpf = aya::EbpfLoader::new()
        .btf(Some(&btf))
        .load(bytes)
        .map_err(|e| {
            unavailable(format!(
                "loading the BPF {what} object failed: {}",
                error_chain(&e)
            ))
        })?;
    let prog: &mut Iter = ebpf
        .program_mut(program)
        .ok_or_else(|| unavailable(format!("the BPF object has no program {program}")))?
        .try_into()
        .map_err(|e| unavailable(format!("the BPF {what} program: {e}")))?;
    prog.load("task_file", &btf).map_err(|e| match e {
        // Iter::load asks the kernel's BTF for `bpf_iter_task_file` first.
        aya::programs::ProgramError::Btf(e) => unavailable(format!(
            "the kernel has no task_file BPF iterator (Linux 5.11+): {e}"
        )),
        e => unavailable(format!(
            "the kernel refused the BPF {what} program: {}",
            one_line(&error_chain(&e))
        )),
    })?;
    let dup = |fd: BorrowedFd<'_>| {
        fd.try_clone_to_owned()
            .map_err(|e| unavailable(format!("duplicating a BPF fd: {e}")))
    };
    let prog_fd = dup(prog
        .fd()
        .map_err(|e| unavailable(format!("the BPF {what} program: {e}")))?
        .as_fd())?;
    let config = match ebpf.map(CONFIG_MAP) {
        Some(Map::Array(data)) => dup(data.fd().as_fd())?,
        _ => {
            return Err(unavailable(format!(
                "the BPF object has no array {CONFIG_MAP}"
            )))
        }
    };
    Ok((ebpf, prog_fd, config))
}

/// Turn a decoded walk into the sample's fields, naming the most repeated
/// files by one readlink each.
fn fill(c: wire::Census, proc_fd_dir: &Path, sample: &mut Sample) {
    sample.fds = c.files;
    sample.kinds = c.kinds.iter().copied().collect();
    sample.tcp_states = c
        .tcp_states
        .iter()
        .map(|(s, n)| (net::tcp_state_name(*s).to_string(), *n))
        .collect();
    sample.netlink_protocols = c
        .netlink
        .iter()
        .map(|(p, n)| (net::netlink_protocol_name(*p), *n))
        .collect();
    sample.deleted_bytes = c.deleted_bytes;
    sample.inodes = c.inodes;
    // `Sample::mark_new_inodes` wants them sorted by inode; it sorts them
    // itself, but a comparison sort of ~15k inodes took longer than decoding
    // them. Sorted here (radix), it finds them sorted in one pass.
    sort_by_inode(&mut sample.inodes);
    let mut remotes: BTreeMap<String, u64> = BTreeMap::new();
    for r in &c.remotes {
        *remotes.entry(r.clone()).or_default() += 1;
    }
    sample.remote_endpoints = top_counted(remotes.into_iter(), TOP_N, 1);
    let mut repeats: Vec<wire::Repeat> = c.repeats.values().copied().collect();
    repeats.sort_by(|a, b| b.count.cmp(&a.count).then(a.fd.cmp(&b.fd)));
    repeats.truncate(TOP_N);
    sample.repeated_paths = repeats
        .into_iter()
        .filter_map(|r| {
            // Closed since the walk: it still counted, but has no name now.
            let path = std::fs::read_link(proc_fd_dir.join(r.fd.to_string())).ok()?;
            Some(Counted {
                name: path.to_string_lossy().into_owned(),
                count: r.count,
            })
        })
        .collect();
    sample.unix_types = c
        .unix_types
        .iter()
        .map(|(t, n)| (wire::unix_type_name(*t), *n))
        .collect();
    debug_assert!(sample.kinds.values().sum::<u64>() == sample.fds);
}

/// Sort by inode number. The walk goes in fd order, which is mostly the
/// order the inodes were made in: a few ascending runs, which the standard
/// (merging) sort finishes in one or two passes. A target whose fds were
/// reused many times gives many short runs: then an LSD radix sort, 11 bits
/// a pass over the bits in which the inodes differ (socket and pipe inodes
/// come from one 32-bit counter: at most 3 passes), costs a third of a
/// comparison sort (measured on 15k inodes: 0.16 ms against 0.54 ms).
fn sort_by_inode(v: &mut Vec<(super::FdKind, u64)>) {
    let descents = v.windows(2).filter(|w| w[1].1 < w[0].1).count();
    if v.len() < 1024 || descents * 64 < v.len() {
        v.sort_by_key(|(_, ino)| *ino);
        return;
    }
    const BITS: u32 = 11;
    let (mut all_and, mut all_or) = (u64::MAX, 0u64);
    for (_, ino) in v.iter() {
        all_and &= ino;
        all_or |= ino;
    }
    let varying = all_and ^ all_or;
    let top = u64::BITS - varying.leading_zeros();
    let mut shift = varying.trailing_zeros().min(top);
    let mut other = vec![(super::FdKind::Other, 0); v.len()];
    let mut start = [0usize; 1 << BITS];
    while shift < top {
        let digit = |ino: u64| ((ino >> shift) & ((1 << BITS) - 1)) as usize;
        start.fill(0);
        for (_, ino) in v.iter() {
            start[digit(*ino)] += 1;
        }
        let mut sum = 0;
        for s in start.iter_mut() {
            let n = *s;
            *s = sum;
            sum += n;
        }
        for e in v.iter() {
            let d = digit(e.1);
            other[start[d]] = *e;
            start[d] += 1;
        }
        std::mem::swap(v, &mut other);
        shift += BITS;
    }
}

fn bpf_error(detail: impl Into<String>) -> SampleError {
    SampleError::Malformed {
        path: "BPF census".into(),
        detail: detail.into(),
    }
}

fn io(what: &str, source: std::io::Error) -> SampleError {
    SampleError::Io {
        path: what.into(),
        err: source,
    }
}

/// The two `bpf()` commands aya does not offer with a task pid.
pub(crate) mod sys {
    use super::*;

    const BPF_LINK_CREATE: libc::c_long = 28;
    const BPF_ITER_CREATE: libc::c_long = 33;
    const BPF_TRACE_ITER: u32 = 28;

    /// `union bpf_attr` for BPF_LINK_CREATE, up to `iter_info_len`.
    #[repr(C)]
    #[derive(Default)]
    struct LinkCreate {
        prog_fd: u32,
        target_fd: u32,
        attach_type: u32,
        flags: u32,
        iter_info: u64,
        iter_info_len: u32,
        pad: u32,
    }

    /// `union bpf_iter_link_info`, task member: { tid, pid, pid_fd }.
    #[repr(C)]
    #[derive(Default)]
    struct TaskInfo {
        tid: u32,
        pid: u32,
        pid_fd: u32,
        pad: u32,
    }

    #[repr(C)]
    struct IterCreate {
        link_fd: u32,
        flags: u32,
    }

    fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<OwnedFd> {
        let rc = super::load::sys::bpf(cmd, attr)?;
        // SAFETY: the kernel returned a new fd that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(rc as i32) })
    }

    /// An iterator link; with `pid`, bound to that process (kernel 6.1+).
    pub fn link_create(prog: BorrowedFd<'_>, pid: Option<i32>) -> std::io::Result<OwnedFd> {
        let mut info = TaskInfo {
            pid: pid.unwrap_or(0) as u32,
            ..Default::default()
        };
        let mut attr = LinkCreate {
            prog_fd: prog.as_raw_fd() as u32,
            attach_type: BPF_TRACE_ITER,
            ..Default::default()
        };
        if pid.is_some() {
            attr.iter_info = &mut info as *mut TaskInfo as u64;
            attr.iter_info_len = std::mem::size_of::<TaskInfo>() as u32;
        }
        bpf(BPF_LINK_CREATE, &mut attr)
    }

    /// A readable iterator of `link`: each open walks anew.
    pub fn iter_create(link: BorrowedFd<'_>) -> std::io::Result<OwnedFd> {
        let mut attr = IterCreate {
            link_fd: link.as_raw_fd() as u32,
            flags: 0,
        };
        bpf(BPF_ITER_CREATE, &mut attr)
    }
}

/// Which census backend a watch asked for (`--backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// BPF where allowed, /proc otherwise (saying why).
    Auto,
    Bpf,
    Proc,
}

/// The census source of a watch: holds the loaded program between samples.
#[derive(Debug, Default)]
pub struct Sampler {
    bpf: Option<BpfCensus>,
    /// What the /proc census learned in earlier samples (also used when a
    /// BPF sample falls back to /proc).
    proc_cache: super::fds::ProcCache,
}

impl Sampler {
    /// Open the chosen backend. `Ok((sampler, Some(reason)))` for an `auto`
    /// that fell back to /proc; `Err` when `bpf` was asked for and cannot run.
    pub fn open(choice: Choice) -> Result<(Sampler, Option<Unavailable>), Unavailable> {
        match choice {
            Choice::Proc => Ok((Sampler::default(), None)),
            Choice::Bpf => Ok((
                Sampler {
                    bpf: Some(BpfCensus::load()?),
                    ..Sampler::default()
                },
                None,
            )),
            Choice::Auto => match BpfCensus::load() {
                Ok(b) => Ok((
                    Sampler {
                        bpf: Some(b),
                        ..Sampler::default()
                    },
                    None,
                )),
                Err(why) => Ok((Sampler::default(), Some(why))),
            },
        }
    }

    /// Only one sample per process will be taken (`--count 1`, a one-sample
    /// `check`): the /proc census may skip what only later samples compare.
    pub fn expect_one_sample(&mut self) {
        self.proc_cache.set_one_shot(true);
    }

    pub fn is_bpf(&self) -> bool {
        self.bpf.is_some()
    }

    /// One sample, like [`super::take`], with the fd census from BPF when loaded.
    pub fn take(
        &mut self,
        root: &super::ProcRoot,
        pid: i32,
        census: super::Census,
        expect: Option<&super::Identity>,
    ) -> Result<Sample, SampleError> {
        let cache = &mut self.proc_cache;
        match super::take_with(root, pid, census, expect, self.bpf.as_mut(), cache) {
            // The kernel walk saw nothing where /proc sees fds: take this
            // sample through /proc, which says what it can (or why it cannot).
            Err(SampleError::BpfBlind { .. }) => {
                super::take_with(root, pid, census, expect, None, cache)
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{one_line, sort_by_inode};
    use crate::sample::FdKind;

    #[test]
    fn radix_sorts_like_a_comparison_sort() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for (n, mask) in [
            (10, u64::MAX),
            (5000, 0xffff_ffff),
            (20000, 0x00ff_00ff),
            (3000, 0),
            (4000, u64::MAX),
        ] {
            let mut v: Vec<(FdKind, u64)> = (0..n)
                .map(|i| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (FdKind::ALL[i % FdKind::ALL.len()], x & mask)
                })
                .collect();
            let mut want = v.clone();
            want.sort_by_key(|(_, ino)| *ino);
            sort_by_inode(&mut v);
            let inos = |v: &[(FdKind, u64)]| v.iter().map(|e| e.1).collect::<Vec<_>>();
            assert_eq!(inos(&v), inos(&want));
            // The same multiset of (kind, inode) pairs.
            let (mut a, mut b) = (v.clone(), want.clone());
            a.sort();
            b.sort();
            assert_eq!(a, b);
        }
    }

    #[test]
    fn verifier_logs_fit_on_one_line() {
        let log = "the BPF_PROG_LOAD syscall returned Permission denied (os error 13). Verifier output: 0: R1=ctx() R10=fp0\n1: (bf) r9 = r1\ninvalid access to map value, value_size=808 off=524704 size=8\nverification time 12145 usec\nstack depth 112\nprocessed 1439 insns\n: Permission denied (os error 13)";
        let line = one_line(log);
        assert!(!line.contains('\n'));
        assert!(line.starts_with("the BPF_PROG_LOAD syscall returned Permission denied"));
        assert!(line.ends_with("invalid access to map value, value_size=808 off=524704 size=8"));
        assert_eq!(one_line("plain"), "plain");
    }
}

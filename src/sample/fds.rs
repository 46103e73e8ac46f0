//! Enumerate and classify every fd of a process through `/proc/<pid>/fd`.
//!
//! The cost floor of a census is `getdents64` plus one `readlinkat` per fd
//! (scripts/floor.c). This one pays one `statx` per fd and, on procfs, no
//! `getdents64` at all:
//!
//! - Which fds: `stat("/proc/PID/fd")` gives the number of open fds (Linux
//!   6.2+), and fds are allocated lowest-first, so `0..count` is probed
//!   directly. Every miss in that range is a hole, and each hole means one fd
//!   at or above `count`: only then is the directory listed, from `count` on
//!   (the fd directory's offset is the fd number + 2).
//! - What kind: the followed `statx` of `/proc/PID/fd/N` gives the type, the
//!   inode (a socket's or pipe's inode is the one its link and the netns
//!   tables name), the device, the link count and the size. A `readlinkat`
//!   is left only for what the mode cannot tell: anonymous inodes (eventfd,
//!   epoll, ...), unlinked files (deleted vs memfd), one fd per device the
//!   first time that device is seen (path-named filesystem, pipefs, or a
//!   pseudo filesystem such as nsfs), and the first fd of the few most
//!   repeated files (their path).
//! - Sockets: netns tables read once per sample and only until every socket
//!   is resolved; `getxattr("system.sockprotoname")` for the ones in no table,
//!   remembered by inode for the rest of a watch ([`ProcCache`]).
//! - A one-shot census (no later sample compares with it) names runs of
//!   sockets that only getxattr can name by getxattr alone, without their
//!   stat ([`look_predicting`]; docs/performance.md), where every mount is
//!   local ([`xattr_never_blocks`]).
//!
//! `AT_STATX_DONT_SYNC` keeps a stat of a file on NFS or FUSE from asking the
//! server (a dead server must not hang the census).

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::net::{self, SocketInfo, Table};
use super::{procroot::io_error, Counted, FdKind, ProcRoot, Sample, SampleError, TOP_N};

/// One classified fd: 24 bytes. With the fd list, the per-thread results and
/// the socket maps, a census measures ~60-120 bytes per fd (docs/performance.md).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FdRecord {
    pub fd: i32,
    pub kind: FdKind,
    /// Socket/pipe inode, or the file's inode for path-named fds.
    pub ino: u64,
    /// Device of a path-named file (0 otherwise); size of a deleted file.
    pub dev_or_size: u64,
}

/// What a followed `statx` of `/proc/PID/fd/N` says about the open file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FdStat {
    pub mode: u32,
    pub ino: u64,
    pub dev: u64,
    pub nlink: u32,
    pub size: u64,
}

/// What kind of filesystem a device is, learned by one readlink of an fd on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Device {
    /// Links are paths: a regular file here is a regular file, a FIFO a FIFO.
    Paths,
    /// pipefs: a FIFO here is an anonymous pipe.
    Pipes,
    /// A pseudo filesystem (nsfs, ...): every fd on it needs its link read.
    Pseudo,
}

/// What one /proc census remembers for the next census of the same watch.
/// Only facts that cannot change under it: a socket's protocol (its inode
/// number is unique while it lives) and what a device is.
#[derive(Debug, Default)]
pub struct ProcCache {
    /// Kind and netlink protocol by socket inode (no state, no peer).
    sockets: InoMap<SocketInfo>,
    devices: InoMap<Device>,
    /// No later census compares with this one (`--count 1`, one `check`
    /// sample, a `top` row): a socket only getxattr can name may be named
    /// without its stat, because no one needs its inode.
    one_shot: bool,
}

impl ProcCache {
    /// For a census that no later census of the same process follows.
    pub fn for_one_sample() -> ProcCache {
        ProcCache {
            one_shot: true,
            ..ProcCache::default()
        }
    }

    /// Whether later censuses follow this one (they compare socket inodes).
    pub fn set_one_shot(&mut self, one_shot: bool) {
        self.one_shot = one_shot;
    }
}

/// Above this many fds the stats are spread over threads.
const PARALLEL_MIN_FDS: usize = 4096;

/// Classify every fd of `pid` into `sample` (kinds, sockets, repeated paths).
pub fn census(
    root: &ProcRoot,
    pid: i32,
    owner: u32,
    sample: &mut Sample,
    cache: &mut ProcCache,
) -> Result<(), SampleError> {
    let fd_path = root.pid_dir(pid).join("fd");
    let dir: OwnedFd = nix::fcntl::open(
        &fd_path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map(|fd| {
        // SAFETY: open just returned this fd and nothing else owns it.
        unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) }
    })
    .map_err(|e| io_error(&fd_path, std::io::Error::from(e), pid, owner))?;
    let dirfd = dir.as_raw_fd();
    let denied = |fd: i32| {
        super::permission_denied(
            fd_path.join(fd.to_string()).display().to_string(),
            pid,
            owner,
            root.path(),
        )
    };
    let io = |fd: i32, e: Errno| SampleError::Io {
        path: fd_path.join(fd.to_string()).display().to_string(),
        err: e.into(),
    };

    // Which fds, each with its stat.
    let count = if root.is_procfs() {
        nix::sys::stat::fstat(dirfd).map_or(0, |st| st.st_size.max(0) as u64)
    } else {
        0
    };
    let mut looked: Vec<(i32, Result<FdStat, Errno>)> = Vec::new();
    let mut kept: Vec<FdRecord> = Vec::new();
    let mut tables = Tables::new(root.pid_dir(pid).join("net"));
    let list_from = if count > 0 && count <= i32::MAX as u64 {
        let probe: Vec<i32> = (0..count as i32).collect();
        let names_first = cache.sockets.is_empty()
            && cache.one_shot
            && xattr_never_blocks(&root.pid_dir(pid).join("mounts"), &mut tables.buf);
        let stats = if names_first {
            // Bound netlink sockets are few: with the table at hand, a
            // netlink socket named by getxattr is known bound or not at once.
            let bound = tables.whole_netlink();
            par_chunks(&probe, |part| look_predicting(dirfd, part, bound))
        } else {
            par_map(&probe, |fd| Look::Stat(stat_fd(dirfd, *fd)))
        };
        let mut holes = 0;
        looked.reserve(stats.len());
        kept.reserve(stats.len());
        let named_stat = stats
            .iter()
            .filter(|l| matches!(l, Look::NamedStat(..)))
            .count();
        cache.sockets.reserve(named_stat);
        for (fd, st) in probe.into_iter().zip(stats) {
            match st {
                // A hole in 0..count, not a vanished fd.
                Look::Stat(Err(Errno::ENOENT)) => holes += 1,
                Look::Stat(st) => looked.push((fd, st)),
                Look::Named(kind) => {
                    sample.named_without_stat += 1;
                    // Named alone only when no netlink socket of user space
                    // is bound in its netns: known unbound.
                    if kind == FdKind::Netlink {
                        *sample
                            .netlink_protocols
                            .entry(net::netlink_label(None))
                            .or_default() += 1;
                    }
                    kept.push(FdRecord {
                        fd,
                        kind,
                        ino: 0,
                        dev_or_size: 0,
                    });
                }
                Look::NamedStat(info, st) => {
                    cache.sockets.insert(st.ino, info);
                    looked.push((fd, Ok(st)));
                }
            }
        }
        (holes > 0).then_some(count as i32)
    } else {
        Some(0)
    };
    if let Some(from) = list_from {
        let listed = list_fds(dirfd, from).map_err(|e| {
            if matches!(e, Errno::EACCES | Errno::EPERM) {
                denied(from)
            } else {
                io(from, e)
            }
        })?;
        let stats = par_map(&listed, |fd| stat_fd(dirfd, *fd));
        looked.extend(listed.into_iter().zip(stats));
    }

    // What kind each one is; a readlink only where the stat cannot tell.
    kept.reserve(looked.len());
    let mut by_link: Vec<(i32, Option<FdStat>)> = Vec::new();
    for (fd, st) in looked {
        let st = match st {
            Ok(st) => st,
            // Closed since listed, or a link the stat cannot follow (a
            // fixture tree): the link text decides.
            Err(Errno::ENOENT) => {
                by_link.push((fd, None));
                continue;
            }
            Err(Errno::EACCES) | Err(Errno::EPERM) => return Err(denied(fd)),
            Err(e) => return Err(io(fd, e)),
        };
        let device = match st.mode & libc::S_IFMT {
            libc::S_IFIFO | libc::S_IFREG => match cache.devices.get(&st.dev) {
                Some(d) => Some(*d),
                None => {
                    let d = learn_device(dirfd, fd);
                    if let Some(d) = d {
                        cache.devices.insert(st.dev, d);
                    }
                    d
                }
            },
            _ => None,
        };
        match classify_stat(&st, device) {
            Some((kind, ino, dev_or_size)) => kept.push(FdRecord {
                fd,
                kind,
                ino,
                dev_or_size,
            }),
            None => by_link.push((fd, Some(st))),
        }
    }
    let linked = par_map(&by_link, |(fd, st)| {
        let mut buf = [0u8; 4200];
        let len = read_link(dirfd, *fd, &mut buf)?;
        Ok(classify_target(&buf[..len], *fd, || *st))
    });
    for ((fd, _), rec) in by_link.iter().zip(linked) {
        match rec {
            Ok(r) => kept.push(r),
            // Closed between the listing and now: gone, not an error.
            Err(Errno::ENOENT) => sample.vanished += 1,
            Err(Errno::EACCES) | Err(Errno::EPERM) => return Err(denied(*fd)),
            Err(e) => return Err(io(*fd, e)),
        }
    }
    // A few sorted runs (named, stat-classified, link-classified): a stable
    // sort merges them in linear time.
    kept.sort_by_key(|r| r.fd);

    resolve_sockets(dirfd, &mut kept, sample, cache, tables);
    aggregate(dirfd, &kept, sample);
    Ok(())
}

/// The fds of the directory at or above `from`, by `getdents64` from offset
/// `from + 2` (procfs numbers its fd entries fd + 2, after `.` and `..`).
pub(crate) fn list_fds(dirfd: RawFd, from: i32) -> Result<Vec<i32>, Errno> {
    #[repr(C, align(8))]
    struct Buf([u8; 32 * 1024]);
    let mut buf = Buf([0; 32 * 1024]);
    // SAFETY: lseek on a directory fd we own.
    if unsafe { libc::lseek(dirfd, from as libc::off_t + 2, libc::SEEK_SET) } < 0 && from > 0 {
        return Err(Errno::last());
    }
    let mut fds = Vec::new();
    loop {
        // SAFETY: buf is writable for its length; the kernel fills whole records.
        let n =
            unsafe { libc::syscall(libc::SYS_getdents64, dirfd, buf.0.as_mut_ptr(), buf.0.len()) };
        if n < 0 {
            return Err(Errno::last());
        }
        if n == 0 {
            break;
        }
        let mut off = 0usize;
        while off < n as usize {
            // struct linux_dirent64 { u64 ino; i64 off; u16 reclen; u8 type; char name[]; }
            let rec = &buf.0[off..n as usize];
            let reclen = u16::from_ne_bytes([rec[16], rec[17]]) as usize;
            if reclen == 0 || reclen > rec.len() {
                return Err(Errno::EIO);
            }
            let name = &rec[19..reclen];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            if let Some(fd) = parse_fd_name(name) {
                if fd >= from {
                    fds.push(fd);
                }
            }
            off += reclen;
        }
    }
    Ok(fds)
}

/// Threads for the stats of a large fd table: `FDWATCH_CENSUS_THREADS`
/// (1 forces the single-threaded path, for benchmarks), else one per core.
/// Decided once per process: `available_parallelism` reads the cgroup's CPU
/// quota files, which no sample should pay for again.
fn census_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| {
        std::env::var("FDWATCH_CENSUS_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| *n > 0)
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            })
    })
}

pub(crate) fn parse_fd_name(bytes: &[u8]) -> Option<i32> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// `readlinkat` into `buf`, returning the target's bytes.
pub(crate) fn read_link(dirfd: RawFd, fd: i32, buf: &mut [u8]) -> Result<usize, Errno> {
    let mut name = [0u8; 16];
    let n = fd_name(fd, &mut name);
    let len = unsafe {
        libc::readlinkat(
            dirfd,
            name[..=n].as_ptr().cast(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if len < 0 {
        Err(Errno::last())
    } else {
        Ok(len as usize)
    }
}

/// Write the decimal fd number NUL-terminated into `out`; returns the index of the NUL.
pub(crate) fn fd_name(fd: i32, out: &mut [u8; 16]) -> usize {
    let mut n = fd.unsigned_abs();
    let mut len = 1;
    while len < 10 && n >= 10u32.pow(len as u32) {
        len += 1;
    }
    // Written in place from the last digit: one pass, no copy (this runs
    // once or twice per fd).
    for i in (0..len).rev() {
        out[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out[len] = 0;
    len
}

/// The followed `statx` of `/proc/PID/fd/<fd>`, from cached attributes.
pub(crate) fn stat_fd(dirfd: RawFd, fd: i32) -> Result<FdStat, Errno> {
    let mut name = [0u8; 16];
    let n = fd_name(fd, &mut name);
    // Not zeroed first: on success the kernel writes all 256 bytes (it
    // copies out a whole, zero-initialised `struct statx`), and this runs
    // once per fd.
    let mut stx = std::mem::MaybeUninit::<libc::statx>::uninit();
    let want = libc::STATX_TYPE | libc::STATX_INO | libc::STATX_NLINK | libc::STATX_SIZE;
    // SAFETY: name is NUL-terminated; stx is writable for its size.
    let rc = unsafe {
        libc::statx(
            dirfd,
            name[..=n].as_ptr().cast(),
            libc::AT_STATX_DONT_SYNC,
            want,
            stx.as_mut_ptr(),
        )
    };
    if rc < 0 {
        return Err(Errno::last());
    }
    // SAFETY: statx succeeded, so the kernel wrote the whole struct.
    let stx = unsafe { stx.assume_init() };
    Ok(FdStat {
        mode: u32::from(stx.stx_mode),
        ino: stx.stx_ino,
        dev: libc::makedev(stx.stx_dev_major, stx.stx_dev_minor),
        nlink: stx.stx_nlink,
        size: stx.stx_size,
    })
}

/// Read the link of `fd` to learn what its device is.
fn learn_device(dirfd: RawFd, fd: i32) -> Option<Device> {
    let mut buf = [0u8; 4200];
    let len = read_link(dirfd, fd, &mut buf).ok()?;
    Some(device_of_link(&buf[..len]))
}

fn device_of_link(target: &[u8]) -> Device {
    if target.starts_with(b"/") && !target.starts_with(b"/memfd:") {
        Device::Paths
    } else if target.starts_with(b"pipe:[") {
        Device::Pipes
    } else {
        Device::Pseudo
    }
}

/// Classify from the stat alone: `(kind, ino, dev_or_size)`, or None when
/// only the link can tell (anonymous inodes, unlinked files, pseudo files).
fn classify_stat(st: &FdStat, device: Option<Device>) -> Option<(FdKind, u64, u64)> {
    match st.mode & libc::S_IFMT {
        libc::S_IFSOCK => Some((FdKind::SocketUnresolved, st.ino, 0)),
        libc::S_IFDIR => Some((FdKind::Directory, st.ino, st.dev)),
        libc::S_IFCHR => Some((FdKind::CharDevice, st.ino, st.dev)),
        libc::S_IFBLK => Some((FdKind::BlockDevice, st.ino, st.dev)),
        libc::S_IFIFO => match device? {
            Device::Pipes => Some((FdKind::Pipe, st.ino, 0)),
            Device::Paths => Some((FdKind::Fifo, st.ino, st.dev)),
            Device::Pseudo => None,
        },
        libc::S_IFREG if st.nlink > 0 && device? == Device::Paths => {
            Some((FdKind::Regular, st.ino, st.dev))
        }
        _ => None,
    }
}

/// Classify one link target. `stat` is only called for path-named targets.
pub(crate) fn classify_target(
    target: &[u8],
    fd: i32,
    stat: impl FnOnce() -> Option<FdStat>,
) -> FdRecord {
    let rec = |kind, ino, dev_or_size| FdRecord {
        fd,
        kind,
        ino,
        dev_or_size,
    };
    if let Some(ino) = bracketed_inode(target, b"socket:[") {
        return rec(FdKind::SocketUnresolved, ino, 0);
    }
    if let Some(ino) = bracketed_inode(target, b"pipe:[") {
        return rec(FdKind::Pipe, ino, 0);
    }
    if let Some(name) = target.strip_prefix(b"anon_inode:") {
        return rec(FdKind::from_anon_inode(name), 0, 0);
    }
    if target.starts_with(b"pidfd:") {
        return rec(FdKind::Pidfd, 0, 0);
    }
    if target.starts_with(b"/memfd:") {
        return rec(FdKind::Memfd, 0, 0);
    }
    if !target.starts_with(b"/") {
        // net:[...], mnt:[...], and whatever a future kernel invents.
        return rec(FdKind::Other, 0, 0);
    }
    let deleted = target.ends_with(b" (deleted)");
    let Some(st) = stat() else {
        // Closed between readlink and stat: still count it where it was seen.
        return rec(
            if deleted {
                FdKind::Deleted
            } else {
                FdKind::Regular
            },
            0,
            0,
        );
    };
    let kind = match st.mode & libc::S_IFMT {
        libc::S_IFDIR => FdKind::Directory,
        libc::S_IFCHR => FdKind::CharDevice,
        libc::S_IFBLK => FdKind::BlockDevice,
        libc::S_IFIFO => FdKind::Fifo,
        libc::S_IFSOCK => FdKind::SocketUnresolved,
        _ if deleted && st.nlink == 0 => FdKind::Deleted,
        _ => FdKind::Regular,
    };
    let dev_or_size = if kind == FdKind::Deleted {
        st.size
    } else {
        st.dev
    };
    rec(kind, st.ino, dev_or_size)
}

fn bracketed_inode(target: &[u8], prefix: &[u8]) -> Option<u64> {
    let rest = target.strip_prefix(prefix)?.strip_suffix(b"]")?;
    std::str::from_utf8(rest).ok()?.parse().ok()
}

/// A hasher for inode numbers: one multiply. Inodes are not attacker-chosen
/// keys here, and SipHash over 10k+ sockets per sample showed in profiles.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct InoHasher(u64);

impl std::hash::Hasher for InoHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        // Sequential inodes land in distinct buckets (odd multiplier: a
        // bijection on the low bits) and the top bits are well mixed.
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type InoMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<InoHasher>>;

/// Resolve the sockets among `records`: their kind, and the details that
/// only the netns tables know (TCP state and peer, netlink protocol).
///
/// What each costs decides the order. Naming one socket by
/// `getxattr("system.sockprotoname")` costs about one readlink; a table costs
/// a line per socket of its kind *in the whole netns* (and the UDP table a
/// walk of its whole hash). So:
/// 1. sockets the previous sample of this watch already named keep their kind
///    (and netlink protocol): a socket's protocol never changes;
/// 2. the unix table is read only when the netns holds fewer unix sockets than
///    ~5x the sockets still to name (`/proc/PID/net/protocols` says how many),
///    the netlink table (bound sockets only: short) always;
/// 3. the rest are named one by one; where that is not possible (no xattr
///    support, a fixture tree) every table is read instead;
/// 4. the TCP tables are read while TCP sockets are held (state and peer
///    change), the netlink table again for netlink sockets not yet bound.
fn resolve_sockets(
    dirfd: RawFd,
    records: &mut [FdRecord],
    sample: &mut Sample,
    cache: &mut ProcCache,
    mut tables: Tables,
) {
    let previous = std::mem::take(&mut cache.sockets);
    let sockets = records
        .iter()
        .filter(|r| r.kind == FdKind::SocketUnresolved)
        .count();
    let mut info: InoMap<SocketInfo> =
        InoMap::with_capacity_and_hasher(sockets, Default::default());
    let mut unknown: Vec<FdRecord> = Vec::new();
    for r in records
        .iter()
        .filter(|r| r.kind == FdKind::SocketUnresolved)
    {
        match previous.get(&r.ino) {
            Some(known) => {
                info.insert(r.ino, known.clone());
            }
            None => unknown.push(*r),
        }
    }
    if info.is_empty() && unknown.is_empty() {
        return;
    }
    drop(previous);

    // Netlink sockets not bound when last seen: the netlink table may list
    // them now (unless this census read it already).
    let unbound: InoMap<()> = if tables.read.contains(&Table::Netlink) {
        InoMap::default()
    } else {
        info.iter()
            .filter(|(_, i)| i.kind == FdKind::Netlink && i.netlink_protocol.is_none())
            .map(|(ino, _)| (*ino, ()))
            .collect()
    };
    if !unknown.is_empty() {
        let wanted: InoMap<()> = unknown.iter().map(|r| (r.ino, ())).collect();
        // Reading even a short table costs ~15 lookups: for a few sockets
        // (what a one-shot census leaves), naming them one by one is cheaper.
        if unknown.len() >= FEW_SOCKETS && tables.unix_table_pays(unknown.len()) {
            tables.read(Table::Unix, &|ino| wanted.contains_key(&ino), &mut info);
        }
        let netlink_wanted = |ino| wanted.contains_key(&ino) || unbound.contains_key(&ino);
        tables.read(Table::Netlink, &netlink_wanted, &mut info);
        unknown.retain(|r| !info.contains_key(&r.ino));
        let names = par_map(&unknown, |r| sockprotoname(dirfd, r.fd));
        let mut nameless = false;
        for (r, name) in unknown.iter().zip(names) {
            match name {
                Some(kind) => {
                    info.insert(r.ino, SocketInfo::of(kind));
                }
                None => nameless = true,
            }
        }
        if nameless {
            // Nothing can name them one by one: the tables must.
            for table in Table::ALL {
                if !tables.read.contains(&table) {
                    let missing = |ino| wanted.contains_key(&ino) && !info.contains_key(&ino);
                    let mut found = InoMap::default();
                    tables.read(table, &missing, &mut found);
                    info.extend(found);
                }
            }
        }
    }

    // Details that change while the socket lives: read every sample.
    for (table, kind) in [(Table::Tcp, FdKind::Tcp), (Table::Tcp6, FdKind::Tcp6)] {
        if !tables.read.contains(&table) && info.values().any(|i| i.kind == kind) {
            let of_kind: InoMap<()> = info
                .iter()
                .filter(|(_, i)| i.kind == kind)
                .map(|(ino, _)| (*ino, ()))
                .collect();
            tables.read(table, &|ino| of_kind.contains_key(&ino), &mut info);
        }
    }
    if !unbound.is_empty() && !tables.read.contains(&Table::Netlink) {
        tables.read(Table::Netlink, &|ino| unbound.contains_key(&ino), &mut info);
    }

    // Counted by number, named once per distinct value (not per socket).
    let mut remotes: HashMap<&str, u64> = HashMap::new();
    let mut tcp_states = [0u64; 256];
    let mut netlink: HashMap<Option<u16>, u64> = HashMap::new();
    for r in records
        .iter_mut()
        .filter(|r| r.kind == FdKind::SocketUnresolved)
    {
        let Some(i) = info.get(&r.ino) else {
            continue;
        };
        r.kind = i.kind;
        if let Some(state) = i.tcp_state {
            tcp_states[state as usize] += 1;
        }
        if r.kind == FdKind::Netlink {
            *netlink.entry(i.netlink_protocol).or_default() += 1;
        }
        if let Some(remote) = &i.remote {
            *remotes.entry(remote.as_str()).or_default() += 1;
        }
    }
    for (state, n) in tcp_states.iter().enumerate().filter(|(_, n)| **n > 0) {
        *sample
            .tcp_states
            .entry(net::tcp_state_name(state as u8).to_string())
            .or_default() += n;
    }
    for (protocol, n) in netlink {
        *sample
            .netlink_protocols
            .entry(net::netlink_label(protocol))
            .or_default() += n;
    }
    sample.remote_endpoints = top_counted(
        remotes.into_iter().map(|(r, n)| (r.to_string(), n)),
        TOP_N,
        1,
    );
    if cache.one_shot {
        return; // no next sample to remember anything for
    }
    // What stays true for the next sample: the kind, and a netlink protocol.
    cache.sockets = info
        .into_iter()
        .map(|(ino, i)| {
            (
                ino,
                SocketInfo {
                    tcp_state: None,
                    remote: None,
                    ..i
                },
            )
        })
        .collect();
}

/// The netns tables of one sample: each read at most once, whole.
struct Tables {
    net_dir: std::path::PathBuf,
    buf: Vec<u8>,
    read: Vec<Table>,
    /// Every row of the netlink table, when it was read before the census.
    netlink: Option<InoMap<SocketInfo>>,
}

impl Tables {
    fn new(net_dir: std::path::PathBuf) -> Tables {
        Tables {
            net_dir,
            buf: Vec::new(),
            read: Vec::new(),
            netlink: None,
        }
    }

    /// The whole netlink table (bound sockets only: short), read now.
    fn whole_netlink(&mut self) -> &InoMap<SocketInfo> {
        let mut rows = InoMap::default();
        self.read(Table::Netlink, &|_| true, &mut rows);
        self.netlink.insert(rows)
    }

    /// Whether reading the unix table beats naming `unknown` sockets one by
    /// one: a table line costs ~1/5 of a lookup, and the table lists every
    /// unix socket of the netns (`protocols` says how many). Unknown counts
    /// (a fixture tree): read it.
    fn unix_table_pays(&mut self, unknown: usize) -> bool {
        if read_table(&self.net_dir.join("protocols"), &mut self.buf).is_err() {
            return true;
        }
        let unix: u64 = self
            .buf
            .split(|&b| b == b'\n')
            .filter(|l| l.starts_with(b"UNIX"))
            .filter_map(|l| {
                let sockets = l
                    .split(u8::is_ascii_whitespace)
                    .filter(|f| !f.is_empty())
                    .nth(2)?;
                std::str::from_utf8(sockets).ok()?.parse::<u64>().ok()
            })
            .sum();
        unix <= 5 * unknown as u64
    }

    fn read(&mut self, table: Table, want: &dyn Fn(u64) -> bool, info: &mut InoMap<SocketInfo>) {
        if let (Table::Netlink, Some(rows)) = (table, &self.netlink) {
            info.extend(
                rows.iter()
                    .filter(|(ino, _)| want(**ino))
                    .map(|(i, r)| (*i, r.clone())),
            );
            return;
        }
        self.read.push(table);
        // A missing table (no IPv6, no packet support) resolves nothing: not an error.
        if read_table(&self.net_dir.join(table.file_name()), &mut self.buf).is_ok() {
            if let Ok(text) = std::str::from_utf8(&self.buf) {
                net::parse_table(table, text, want, info);
            }
        }
    }
}

/// Below this many sockets to name, no table is read for them alone.
const FEW_SOCKETS: usize = 16;

/// Read a whole /proc table in as few `read()`s as possible: each read of a
/// seq_file restarts the kernel's walk of its hash, so small reads cost dearly.
pub(crate) fn read_table(path: &std::path::Path, buf: &mut Vec<u8>) -> std::io::Result<()> {
    buf.clear();
    if buf.capacity() < 256 * 1024 {
        buf.reserve(256 * 1024);
    }
    let f = std::fs::File::open(path)?;
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(buf.capacity());
        }
        // Straight into the spare capacity: no zeroing of a buffer the kernel overwrites.
        let spare = buf.spare_capacity_mut();
        // SAFETY: spare is writable for its length; read() initialises the first n bytes.
        let n = unsafe { libc::read(f.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Ok(());
        }
        // SAFETY: the kernel wrote n bytes into the spare capacity.
        unsafe { buf.set_len(buf.len() + n as usize) };
    }
}

/// `getxattr("/proc/<pid>/fd/<n>", "system.sockprotoname")`: names the
/// protocol of a socket that no table lists, with readlink's permission.
fn sockprotoname(dirfd: RawFd, fd: i32) -> Option<FdKind> {
    sockprotoname_of(dirfd, fd).ok()
}

/// [`sockprotoname`] with the reason it failed: `ENODATA`/`EOPNOTSUPP` for
/// a file that is no socket, `ENOENT` for no such fd.
fn sockprotoname_of(dirfd: RawFd, fd: i32) -> Result<FdKind, Errno> {
    let mut buf = [0u8; 64];
    let name = sockprotoname_raw(dirfd, fd, &mut buf)?;
    Ok(FdKind::from_sockprotoname(name))
}

/// The `system.sockprotoname` text itself (`UNIX-STREAM`, `UDPv6`,
/// `NETLINK`, ...), without its NUL.
pub(crate) fn sockprotoname_raw(dirfd: RawFd, fd: i32, buf: &mut [u8; 64]) -> Result<&[u8], Errno> {
    let len = match getxattrat(dirfd, fd, buf) {
        Some(len) => len,
        None => getxattr_by_path(dirfd, fd, buf),
    };
    if len < 0 {
        return Err(Errno::last());
    }
    if len == 0 {
        return Err(Errno::ENODATA);
    }
    let name = &buf[..len as usize];
    Ok(name.strip_suffix(b"\0").unwrap_or(name))
}

/// What the first look at one fd found.
enum Look {
    /// The stat (the usual way).
    Stat(Result<FdStat, Errno>),
    /// A socket named by getxattr alone, of a kind no table tells more about.
    Named(FdKind),
    /// A socket named by getxattr and stat (for the inode a table is keyed
    /// by: TCP state, netlink protocol), with what is known of it so far.
    NamedStat(SocketInfo, FdStat),
}

/// Sockets whose kind is all a table could add: no stat needed for them.
fn named_is_enough(kind: FdKind) -> bool {
    !matches!(kind, FdKind::Tcp | FdKind::Tcp6 | FdKind::Netlink) && kind.is_socket()
}

/// Look at a run of fds for a one-shot census, naming sockets first where
/// the run says the next fd is one more socket that getxattr must name
/// (unbound UDP, unbound netlink, unix, ...): one syscall for it instead of
/// a stat now and a getxattr later (netlink still needs the stat when the
/// netlink table, `bound`, lists any socket of user space: its inode says
/// whether the table has its protocol). fds of one
/// kind come in runs (opened in bursts, lowest free number first); a wrong
/// guess costs one failed getxattr, so a guess is made only after a socket
/// named so, and a stat-seen run of sockets is probed with backing off (TCP
/// and bound netlink runs are named by their tables).
fn look_predicting(dirfd: RawFd, fds: &[i32], bound: &InoMap<SocketInfo>) -> Vec<Look> {
    const FIRST_PROBE_GAP: u32 = 1;
    const MAX_PROBE_GAP: u32 = 256;
    // With no netlink socket of user space bound in the netns (a container,
    // a host without udevd or networkd), every netlink socket is unbound:
    // its stat could only confirm that, so the getxattr names it alone.
    let netlink_unbound = bound.is_empty();
    let named_alone =
        |kind: FdKind| named_is_enough(kind) || (netlink_unbound && kind == FdKind::Netlink);
    // What the stat of a socket named `kind` adds, and whether a run of such
    // sockets should go on being named first.
    let with_stat = |kind: FdKind, st: FdStat| -> (Look, bool) {
        match bound.get(&st.ino) {
            Some(row) if kind == FdKind::Netlink => (Look::NamedStat(row.clone(), st), false),
            _ => (
                Look::NamedStat(SocketInfo::of(kind), st),
                kind == FdKind::Netlink,
            ),
        }
    };
    let mut out = Vec::with_capacity(fds.len());
    let mut in_named_run = false;
    let mut previous_was_socket = false;
    let mut probe_gap = FIRST_PROBE_GAP;
    let mut since_probe = FIRST_PROBE_GAP;
    for &fd in fds {
        if in_named_run {
            match sockprotoname_of(dirfd, fd) {
                Ok(kind) if named_alone(kind) => {
                    out.push(Look::Named(kind));
                    continue;
                }
                Ok(kind) => {
                    match stat_fd(dirfd, fd) {
                        Ok(st) if st.mode & libc::S_IFMT == libc::S_IFSOCK => {
                            let (look, go_on) = with_stat(kind, st);
                            out.push(look);
                            in_named_run = go_on;
                        }
                        st => {
                            out.push(Look::Stat(st));
                            in_named_run = false;
                        }
                    }
                    continue;
                }
                // A hole: the run goes on after it.
                Err(Errno::ENOENT) => {
                    out.push(Look::Stat(Err(Errno::ENOENT)));
                    continue;
                }
                // Not a socket (or not nameable): the stat decides.
                Err(_) => {
                    in_named_run = false;
                    previous_was_socket = false;
                }
            }
        }
        let st = stat_fd(dirfd, fd);
        let is_socket = matches!(&st, Ok(s) if s.mode & libc::S_IFMT == libc::S_IFSOCK);
        if is_socket && previous_was_socket {
            since_probe += 1;
            if since_probe >= probe_gap {
                since_probe = 0;
                if let (Ok(kind), Ok(s)) = (sockprotoname_of(dirfd, fd), &st) {
                    let (look, go_on) = if named_alone(kind) {
                        (Look::NamedStat(SocketInfo::of(kind), *s), true)
                    } else {
                        with_stat(kind, *s)
                    };
                    in_named_run = go_on;
                    probe_gap = if go_on {
                        FIRST_PROBE_GAP
                    } else {
                        (probe_gap * 2).min(MAX_PROBE_GAP)
                    };
                    out.push(look);
                    previous_was_socket = true;
                    continue;
                }
            }
        }
        previous_was_socket = is_socket;
        out.push(Look::Stat(st));
    }
    out
}

/// Whether a getxattr of any file the process can hold answers without
/// asking a server: every filesystem mounted in its mount namespace is local
/// (a FUSE or Ceph file sends every xattr request to its daemon, which may
/// hang; a stat with `AT_STATX_DONT_SYNC` does not). Anything unknown: no.
///
/// `/proc/PID/mounts`, not `mountinfo`: the same mounts with fewer fields
/// for the kernel to format (~25 % cheaper per census).
fn xattr_never_blocks(mounts: &std::path::Path, buf: &mut Vec<u8>) -> bool {
    const LOCAL: &[&str] = &[
        "autofs",
        "binfmt_misc",
        "bpf",
        "btrfs",
        "cgroup",
        "cgroup2",
        "configfs",
        "debugfs",
        "devpts",
        "devtmpfs",
        "efivarfs",
        "erofs",
        "exfat",
        "ext2",
        "ext3",
        "ext4",
        "f2fs",
        "fusectl",
        "hugetlbfs",
        "iso9660",
        "mqueue",
        "nsfs",
        "overlay",
        "proc",
        "pstore",
        "ramfs",
        "securityfs",
        "selinuxfs",
        "squashfs",
        "sysfs",
        "tmpfs",
        "tracefs",
        "vfat",
        "xfs",
    ];
    if read_table(mounts, buf).is_err() {
        return false;
    }
    buf.split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .all(|line| {
            // "source mountpoint fstype options 0 0" (spaces in names are
            // escaped as \040): the type is the third field.
            let Some(fstype) = line.split(|&b| b == b' ').nth(2) else {
                return false;
            };
            LOCAL.iter().any(|l| l.as_bytes() == fstype)
        })
}

/// Linux 6.13+ `getxattrat(2)`: the lookup is relative to the fd directory,
/// one component, as cheap as the readlinkat. None when the kernel lacks it.
fn getxattrat(dirfd: RawFd, fd: i32, buf: &mut [u8]) -> Option<isize> {
    #[cfg(target_arch = "x86_64")]
    const SYS_GETXATTRAT: libc::c_long = 464;
    #[cfg(not(target_arch = "x86_64"))]
    return None;
    #[repr(C)]
    struct XattrArgs {
        value: u64,
        size: u32,
        flags: u32,
    }
    static MISSING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if MISSING.load(std::sync::atomic::Ordering::Relaxed) {
        return None;
    }
    let mut name = [0u8; 16];
    let n = fd_name(fd, &mut name);
    let mut args = XattrArgs {
        value: buf.as_mut_ptr() as u64,
        size: buf.len() as u32,
        flags: 0,
    };
    // SAFETY: name is NUL-terminated; args points at buf, valid for its length.
    let len = unsafe {
        libc::syscall(
            SYS_GETXATTRAT,
            dirfd,
            name[..=n].as_ptr(),
            0u32,
            c"system.sockprotoname".as_ptr(),
            &mut args as *mut XattrArgs,
            std::mem::size_of::<XattrArgs>(),
        )
    };
    if len < 0 && Errno::last() == Errno::ENOSYS {
        MISSING.store(true, std::sync::atomic::Ordering::Relaxed);
        return None;
    }
    Some(len as isize)
}

/// `getxattr` through `/proc/self/fd/<dirfd>/<fd>` (older kernels): the
/// same file, two magic-link walks. Built on the stack: once per unbound socket.
fn getxattr_by_path(dirfd: RawFd, fd: i32, buf: &mut [u8]) -> isize {
    let mut path = [0u8; 48];
    let prefix = b"/proc/self/fd/";
    path[..prefix.len()].copy_from_slice(prefix);
    let mut at = prefix.len();
    let mut num = [0u8; 16];
    let n = fd_name(dirfd, &mut num);
    path[at..at + n].copy_from_slice(&num[..n]);
    at += n;
    path[at] = b'/';
    at += 1;
    let n = fd_name(fd, &mut num);
    path[at..at + n].copy_from_slice(&num[..n]);
    path[at + n] = 0;
    // SAFETY: path is NUL-terminated, buf is writable for its length.
    unsafe {
        libc::getxattr(
            path.as_ptr().cast(),
            c"system.sockprotoname".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    }
}

/// Map `f` over `items`, spread over the census threads when there are many.
pub(crate) fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    par_chunks(items, |part| part.iter().map(&f).collect())
}

/// `f` over consecutive parts of `items` (one per census thread when there
/// are many), its results in order.
fn par_chunks<T: Sync, R: Send>(items: &[T], f: impl Fn(&[T]) -> Vec<R> + Sync) -> Vec<R> {
    if items.len() < PARALLEL_MIN_FDS {
        return f(items);
    }
    let threads = census_threads();
    if threads < 2 {
        return f(items);
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| s.spawn(move || f(part)))
            .collect();
        handles
            .into_iter()
            // A part lost to a panic would shift every later result onto
            // the wrong fd: pass the panic on instead.
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

fn aggregate(dirfd: RawFd, records: &[FdRecord], sample: &mut Sample) {
    let regular = records.iter().filter(|r| r.kind == FdKind::Regular).count();
    let mut files: HashMap<(u64, u64), (u64, i32), std::hash::BuildHasherDefault<InoHasher>> =
        HashMap::with_capacity_and_hasher(regular, Default::default());
    sample.inodes.clear();
    // fds of one kind come in runs: the map is touched once per run.
    let mut run: Option<(FdKind, u64)> = None;
    for r in records {
        match &mut run {
            Some((kind, n)) if *kind == r.kind => *n += 1,
            _ => {
                if let Some((kind, n)) = run.replace((r.kind, 1)) {
                    *sample.kinds.entry(kind).or_default() += n;
                }
            }
        }
        match r.kind {
            FdKind::Regular => {
                files.entry((r.dev_or_size, r.ino)).or_insert((0, r.fd)).0 += 1;
            }
            FdKind::Deleted => sample.deleted_bytes += r.dev_or_size,
            // A socket named without its stat (one-shot) has no inode to compare.
            k if (k.is_socket() || k == FdKind::Pipe) && r.ino != 0 => {
                sample.inodes.push((k, r.ino))
            }
            _ => {}
        }
    }
    if let Some((kind, n)) = run {
        *sample.kinds.entry(kind).or_default() += n;
    }
    sample.fds = records.len() as u64;

    // Only the few most repeated files get their path read again.
    let mut repeated: Vec<(u64, i32)> = files.into_values().filter(|(n, _)| *n >= 2).collect();
    repeated.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    repeated.truncate(TOP_N);
    let mut buf = [0u8; 4200];
    sample.repeated_paths = repeated
        .into_iter()
        .filter_map(|(count, fd)| {
            let len = read_link(dirfd, fd, &mut buf).ok()?;
            Some(Counted {
                name: String::from_utf8_lossy(&buf[..len]).into_owned(),
                count,
            })
        })
        .collect();
}

/// The `n` largest counts of at least `min`, largest first, ties by name.
pub fn top_counted(items: impl Iterator<Item = (String, u64)>, n: usize, min: u64) -> Vec<Counted> {
    let mut v: Vec<Counted> = items
        .filter(|(_, c)| *c >= min)
        .map(|(name, count)| Counted { name, count })
        .collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    v.truncate(n);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind_of(target: &[u8]) -> FdKind {
        classify_target(target, 3, || None).kind
    }

    #[test]
    fn link_targets() {
        assert_eq!(kind_of(b"socket:[12345]"), FdKind::SocketUnresolved);
        assert_eq!(classify_target(b"socket:[12345]", 3, || None).ino, 12345);
        assert_eq!(kind_of(b"pipe:[777]"), FdKind::Pipe);
        assert_eq!(kind_of(b"anon_inode:[eventpoll]"), FdKind::Eventpoll);
        assert_eq!(kind_of(b"anon_inode:inotify"), FdKind::Inotify);
        assert_eq!(kind_of(b"anon_inode:bpf-prog"), FdKind::Bpf);
        assert_eq!(kind_of(b"/memfd:wayland-shm (deleted)"), FdKind::Memfd);
        assert_eq!(kind_of(b"net:[4026531840]"), FdKind::Other);
        // Without a stat (closed meanwhile) a path still counts as a file.
        assert_eq!(kind_of(b"/var/log/app.log (deleted)"), FdKind::Deleted);
        assert_eq!(kind_of(b"/tmp/a file\nwith newline"), FdKind::Regular);
    }

    #[test]
    fn stat_decides_path_kinds() {
        let mut st = FdStat {
            mode: libc::S_IFDIR,
            ..Default::default()
        };
        assert_eq!(
            classify_target(b"/etc", 3, || Some(st)).kind,
            FdKind::Directory
        );
        st.mode = libc::S_IFCHR;
        assert_eq!(
            classify_target(b"/dev/null", 3, || Some(st)).kind,
            FdKind::CharDevice
        );
        st.mode = libc::S_IFIFO;
        assert_eq!(
            classify_target(b"/tmp/fifo", 3, || Some(st)).kind,
            FdKind::Fifo
        );
        st.mode = libc::S_IFREG;
        st.nlink = 0;
        st.size = 4096;
        let r = classify_target(b"/tmp/gone (deleted)", 3, || Some(st));
        assert_eq!((r.kind, r.dev_or_size), (FdKind::Deleted, 4096));
        // A live file whose name merely ends in " (deleted)".
        st.nlink = 1;
        assert_eq!(
            classify_target(b"/tmp/x (deleted)", 3, || Some(st)).kind,
            FdKind::Regular
        );
    }

    #[test]
    fn getxattr_is_trusted_on_local_mounts_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mounts");
        let local = "proc /proc proc rw,relatime 0 0\n\
                     /dev/sda1 / ext4 rw,relatime 0 0\n\
                     cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n\
                     overlay /opt/my\\040dir overlay rw,lowerdir=/a 0 0\n";
        std::fs::write(&path, local).unwrap();
        assert!(xattr_never_blocks(&path, &mut Vec::new()));
        for remote in [
            "host:/ /mnt/s fuse.sshfs rw 0 0\n",
            "10.0.0.1:/ /mnt/c ceph rw 0 0\n",
            "share /mnt/v virtiofs rw 0 0\n",
            "dev /mnt/odd somefs rw 0 0\n",
            "truncated-line\n",
        ] {
            std::fs::write(&path, format!("{local}{remote}")).unwrap();
            assert!(!xattr_never_blocks(&path, &mut Vec::new()), "{remote}");
        }
        assert!(!xattr_never_blocks(
            &dir.path().join("missing"),
            &mut Vec::new()
        ));
    }

    #[test]
    fn fd_names() {
        let mut out = [0u8; 16];
        for fd in [0, 7, 10, 19999, i32::MAX] {
            let n = fd_name(fd, &mut out);
            assert_eq!(&out[..n], fd.to_string().as_bytes());
            assert_eq!(out[n], 0);
        }
        assert_eq!(parse_fd_name(b"12"), Some(12));
        assert_eq!(parse_fd_name(b"."), None);
        assert_eq!(parse_fd_name(b".."), None);
    }

    #[test]
    fn top_counted_orders_and_cuts() {
        let items = vec![
            ("b".to_string(), 3),
            ("a".to_string(), 3),
            ("c".to_string(), 1),
            ("d".to_string(), 9),
        ];
        let top = top_counted(items.into_iter(), 2, 2);
        assert_eq!(
            top.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            vec!["d", "a"]
        );
    }
}

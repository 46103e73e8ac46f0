//! The per-fd listing behind `fdwatch ls`: every open fd of one process,
//! one [`FdEntry`] each, with what `lsof -p` and `lsfd -p` show (target,
//! socket protocol, state and endpoints, netns, open flags, position,
//! mount id, inode).
//!
//! Two sources, the same entries: [`list_proc`] reads `/proc/PID/fd`,
//! `/proc/PID/fdinfo` and the socket tables of the target's netns through
//! the proc-root seam, classifying each fd with the census's own rules
//! (`fds::classify_target`, `net`); `bpf::list` walks the fd table in the
//! kernel. Plain data only: nothing here formats or decides.
//!
//! /proc moves under the reader: an fd listed by readdir may be closed
//! before its readlink or its fdinfo read. Such an fd is left out and counted
//! in [`Listing::vanished`]; it is never an error.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};

use super::fds::{self, FdStat};
use super::net::{self, SocketRow, Table};
use super::procroot::io_error;
use super::{Backend, FdKind, ProcRoot, SampleError};

/// Every fd of one process at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Listing {
    pub pid: i32,
    pub comm: String,
    pub backend: Backend,
    /// Inode of the process's network namespace (`/proc/PID/ns/net`).
    pub netns: Option<u64>,
    /// Sorted by fd number.
    pub fds: Vec<FdEntry>,
    /// fds listed but closed before they could be read (a race, not an error).
    pub vanished: u64,
}

/// One open fd.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FdEntry {
    pub fd: i32,
    pub kind: FdKind,
    /// What the fd refers to, as `readlink /proc/PID/fd/N` says it (a path,
    /// `pipe:[ino]`, `socket:[ino]`, `anon_inode:[eventfd]`, ...), with a
    /// deleted file's ` (deleted)` suffix removed (see `deleted`). Bytes
    /// that are not UTF-8 are replaced (U+FFFD).
    pub target: String,
    /// The file was unlinked while open (a deleted file or a memfd).
    pub deleted: bool,
    pub inode: Option<u64>,
    /// `major:minor` of the device holding the file.
    pub dev: Option<String>,
    pub mnt_id: Option<u64>,
    /// The open flags, as `/proc/PID/fdinfo/N` shows them (O_CLOEXEC included).
    pub flags: Option<u32>,
    pub pos: Option<u64>,
    /// Size in bytes of a regular (or deleted) file.
    pub size: Option<u64>,
    pub socket: Option<SocketEntry>,
}

/// What is known of a socket.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SocketEntry {
    /// The kernel's protocol name, as `system.sockprotoname` and lsfd's
    /// PROTONAME say it: `TCP`, `UDPv6`, `UNIX-STREAM`, `NETLINK`, ...
    pub protocol: String,
    /// TCP: the state (`ESTABLISHED`, `LISTEN`, `CLOSE_WAIT`, ...); unix:
    /// `LISTEN`, `CONNECTED` or `UNCONNECTED`.
    pub state: Option<String>,
    pub local: Option<String>,
    pub remote: Option<String>,
    /// Netlink: the protocol's name (`ROUTE`, `KOBJECT_UEVENT`, ...).
    pub netlink_protocol: Option<String>,
    /// Unix: the bound path (`@name` for an abstract one).
    pub unix_path: Option<String>,
    /// Unix: the inode of the connected peer socket (BPF backend).
    pub peer_inode: Option<u64>,
    /// Inode of the socket's network namespace.
    pub netns: Option<u64>,
}

/// List every fd of `pid` through `/proc` under `root`.
pub fn list_proc(root: &ProcRoot, pid: i32) -> Result<Listing, SampleError> {
    let ident = root.identity(pid)?;
    let dir = open_dir(root, pid, "fd", ident.uid)?;
    let numbers = if root.is_procfs() {
        fds::list_fds(dir.as_raw_fd(), 0)
            .map_err(|e| io_error(&root.pid_dir(pid).join("fd"), e.into(), pid, ident.uid))?
    } else {
        list_by_readdir(root, pid, ident.uid)?
    };
    let mut listing = list_these(root, pid, &numbers)?;
    // The process may have exited (or its pid been reused) while we read.
    if root
        .identity(pid)
        .map(|i| i.identity.start_time != ident.identity.start_time)
        .unwrap_or(true)
    {
        return Err(SampleError::Exited {
            pid,
            comm: ident.identity.comm,
        });
    }
    listing.comm = ident.identity.comm;
    Ok(listing)
}

/// The fds of a fixture tree, by readdir (procfs offsets do not apply).
fn list_by_readdir(root: &ProcRoot, pid: i32, owner: u32) -> Result<Vec<i32>, SampleError> {
    let path = root.pid_dir(pid).join("fd");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&path).map_err(|e| io_error(&path, e, pid, owner))? {
        let e = e.map_err(|e| io_error(&path, e, pid, owner))?;
        if let Some(fd) = fds::parse_fd_name(e.file_name().as_encoded_bytes()) {
            out.push(fd);
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn open_dir(root: &ProcRoot, pid: i32, name: &str, owner: u32) -> Result<OwnedFd, SampleError> {
    let path = root.pid_dir(pid).join(name);
    nix::fcntl::open(
        &path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    // SAFETY: open just returned this fd and nothing else owns it.
    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
    .map_err(|e| io_error(&path, e.into(), pid, owner))
}

/// What one fd's reads gave, before its socket (if any) is resolved.
struct Read {
    rec: fds::FdRecord,
    target: Vec<u8>,
    stat: Option<FdStat>,
    info: FdInfo,
}

/// List the fds `numbers` of `pid` (listed by readdir a moment ago: any of
/// them may be closed by now, which leaves it out).
pub(crate) fn list_these(
    root: &ProcRoot,
    pid: i32,
    numbers: &[i32],
) -> Result<Listing, SampleError> {
    let ident = root.identity(pid)?;
    let owner = ident.uid;
    let fd_path = root.pid_dir(pid).join("fd");
    let dir = open_dir(root, pid, "fd", owner)?;
    let info_dir = open_dir(root, pid, "fdinfo", owner)?;
    let (dirfd, infofd) = (dir.as_raw_fd(), info_dir.as_raw_fd());

    let reads = fds::par_map(numbers, |fd| read_one(dirfd, infofd, *fd));
    let mut kept: Vec<Read> = Vec::with_capacity(reads.len());
    let mut vanished = 0;
    for (fd, r) in numbers.iter().zip(reads) {
        match r {
            Ok(r) => kept.push(r),
            // Closed between the listing and now: gone, not an error.
            Err(Errno::ENOENT) => vanished += 1,
            Err(Errno::EACCES) | Err(Errno::EPERM) => {
                return Err(super::permission_denied(
                    fd_path.join(fd.to_string()).display().to_string(),
                    pid,
                    owner,
                    root.path(),
                ))
            }
            Err(e) => {
                return Err(SampleError::Io {
                    path: fd_path.join(fd.to_string()).display().to_string(),
                    err: e.into(),
                })
            }
        }
    }

    let netns = process_netns(root, pid);
    let sockets = resolve_sockets(root, pid, dirfd, &kept, netns);
    let fds = kept
        .into_iter()
        .map(|r| {
            let socket = sockets.get(&r.rec.fd).cloned();
            entry(r, socket)
        })
        .collect();
    Ok(Listing {
        pid,
        comm: ident.identity.comm,
        backend: Backend::Proc,
        netns,
        fds,
        vanished,
    })
}

/// readlink, statx and fdinfo of one fd. `ENOENT` from any of them: closed.
fn read_one(dirfd: RawFd, infofd: RawFd, fd: i32) -> Result<Read, Errno> {
    let mut buf = [0u8; 4200];
    let len = fds::read_link(dirfd, fd, &mut buf)?;
    let target = buf[..len].to_vec();
    let stat = match fds::stat_fd(dirfd, fd) {
        Ok(st) => Some(st),
        // A link the stat cannot follow (a fixture tree), or closed just now
        // (the fdinfo read below says which).
        Err(Errno::ENOENT) => None,
        Err(e) => return Err(e),
    };
    let info = read_fdinfo(infofd, fd)?;
    let rec = fds::classify_target(&target, fd, || stat);
    Ok(Read {
        rec,
        target,
        stat,
        info,
    })
}

/// The first lines of `/proc/PID/fdinfo/N`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FdInfo {
    pub pos: Option<u64>,
    pub flags: Option<u32>,
    pub mnt_id: Option<u64>,
}

/// `pos`, `flags` (octal) and `mnt_id` come first in every fdinfo file
/// (epoll and inotify add lines after them, one per watch): one bounded read.
fn read_fdinfo(infofd: RawFd, fd: i32) -> Result<FdInfo, Errno> {
    let mut name = [0u8; 16];
    let n = fds::fd_name(fd, &mut name);
    // SAFETY: name is NUL-terminated.
    let f = unsafe {
        libc::openat(
            infofd,
            name[..=n].as_ptr().cast(),
            libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
        )
    };
    if f < 0 {
        return Err(Errno::last());
    }
    // SAFETY: openat just returned this fd.
    let f = unsafe { OwnedFd::from_raw_fd(f) };
    let mut buf = [0u8; 256];
    let len = loop {
        // SAFETY: buf is writable for its length.
        let len = unsafe { libc::read(f.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if len >= 0 {
            break len as usize;
        }
        match Errno::last() {
            Errno::EINTR => continue,
            e => return Err(e),
        }
    };
    Ok(parse_fdinfo(&buf[..len]))
}

/// Parse the head of an fdinfo file. Unknown or malformed lines are skipped.
pub fn parse_fdinfo(text: &[u8]) -> FdInfo {
    let mut info = FdInfo::default();
    for line in text.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let Ok(value) = std::str::from_utf8(&line[colon + 1..]) else {
            continue;
        };
        let value = value.trim();
        match &line[..colon] {
            b"pos" => info.pos = value.parse().ok(),
            b"flags" => info.flags = u32::from_str_radix(value, 8).ok(),
            b"mnt_id" => info.mnt_id = value.parse().ok(),
            _ => {}
        }
    }
    info
}

/// The inode in `net:[4026531840]`.
fn process_netns(root: &ProcRoot, pid: i32) -> Option<u64> {
    let link = std::fs::read_link(root.pid_dir(pid).join("ns/net")).ok()?;
    let text = link.to_str()?;
    text.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// Protocol, state and endpoints of every socket among `reads`, by fd: the
/// tables of the target's netns first, then `system.sockprotoname` for the
/// sockets no table lists (never bound).
fn resolve_sockets(
    root: &ProcRoot,
    pid: i32,
    dirfd: RawFd,
    reads: &[Read],
    netns: Option<u64>,
) -> HashMap<i32, SocketEntry> {
    let sockets: HashMap<u64, i32> = reads
        .iter()
        .filter(|r| r.rec.kind == FdKind::SocketUnresolved)
        .map(|r| (r.rec.ino, r.rec.fd))
        .collect();
    let mut out = HashMap::new();
    if sockets.is_empty() {
        return out;
    }
    let net_dir = root.pid_dir(pid).join("net");
    let mut buf = Vec::new();
    let mut found: HashMap<u64, (Table, SocketRow)> = HashMap::new();
    for table in Table::ALL {
        if found.len() == sockets.len() {
            break;
        }
        // A missing table (no IPv6, no packet support) resolves nothing.
        if fds::read_table(&net_dir.join(table.file_name()), &mut buf).is_err() {
            continue;
        }
        let Ok(text) = std::str::from_utf8(&buf) else {
            continue;
        };
        let mut rows = HashMap::new();
        net::parse_rows(
            table,
            text,
            &|ino| sockets.contains_key(&ino) && !found.contains_key(&ino),
            &mut rows,
        );
        found.extend(rows.into_iter().map(|(ino, row)| (ino, (table, row))));
    }
    for (ino, fd) in &sockets {
        let entry = match found.remove(ino) {
            Some((table, row)) => socket_from_row(table, row, netns),
            None => {
                let mut name = [0u8; 64];
                match fds::sockprotoname_raw(dirfd, *fd, &mut name) {
                    Ok(n) => SocketEntry {
                        protocol: String::from_utf8_lossy(n).into_owned(),
                        netns,
                        ..SocketEntry::default()
                    },
                    // Not nameable (a fixture tree, closed meanwhile).
                    Err(_) => continue,
                }
            }
        };
        out.insert(*fd, entry);
    }
    out
}

fn socket_from_row(table: Table, row: SocketRow, netns: Option<u64>) -> SocketEntry {
    let protocol = match table {
        Table::Unix => unix_protocol(row.unix_type.unwrap_or(0)),
        Table::Tcp => "TCP".into(),
        Table::Tcp6 => "TCPv6".into(),
        Table::Udp => "UDP".into(),
        Table::Udp6 => "UDPv6".into(),
        Table::Raw => "RAW".into(),
        Table::Raw6 => "RAWv6".into(),
        Table::Netlink => "NETLINK".into(),
        Table::Packet => "PACKET".into(),
    };
    let state = match table {
        Table::Tcp | Table::Tcp6 => row.state.map(|s| net::tcp_state_name(s).to_string()),
        Table::Unix => Some(unix_state(row.unix_listening, row.state == Some(3)).to_string()),
        _ => None,
    };
    let (local, remote) = match table {
        Table::Tcp | Table::Tcp6 | Table::Udp | Table::Udp6 | Table::Raw | Table::Raw6 => {
            (row.local, row.remote.filter(|r| !is_unspecified(r)))
        }
        _ => (None, None),
    };
    SocketEntry {
        protocol,
        state,
        local,
        remote,
        netlink_protocol: row.netlink_protocol.map(net::netlink_protocol_name),
        unix_path: row.unix_path,
        peer_inode: None,
        netns,
    }
}

/// `UNIX-STREAM`, as `system.sockprotoname` names a unix socket by its type.
pub(crate) fn unix_protocol(sock_type: u16) -> String {
    match sock_type {
        1 => "UNIX-STREAM".into(),
        2 => "UNIX-DGRAM".into(),
        5 => "UNIX-SEQPACKET".into(),
        _ => "UNIX".into(),
    }
}

pub(crate) fn unix_state(listening: bool, connected: bool) -> &'static str {
    if listening {
        "LISTEN"
    } else if connected {
        "CONNECTED"
    } else {
        "UNCONNECTED"
    }
}

/// A peer of `0.0.0.0:0` or `[::]:0`: none.
pub(crate) fn is_unspecified(endpoint: &str) -> bool {
    endpoint == "0.0.0.0:0" || endpoint == "[::]:0"
}

fn entry(r: Read, socket: Option<SocketEntry>) -> FdEntry {
    let Read {
        rec,
        target,
        stat,
        info,
    } = r;
    let mut kind = rec.kind;
    if kind == FdKind::SocketUnresolved {
        if let Some(s) = &socket {
            kind = FdKind::from_sockprotoname(s.protocol.as_bytes());
        }
    }
    let deleted = matches!(kind, FdKind::Deleted | FdKind::Memfd);
    let mut text = target.as_slice();
    if deleted {
        text = text.strip_suffix(b" (deleted)").unwrap_or(text);
    }
    let path_named = target.starts_with(b"/");
    FdEntry {
        fd: rec.fd,
        kind,
        target: String::from_utf8_lossy(text).into_owned(),
        deleted,
        inode: stat.map(|s| s.ino).or((rec.ino != 0).then_some(rec.ino)),
        dev: stat.map(|s| dev_name(s.dev)),
        mnt_id: info.mnt_id,
        flags: info.flags,
        pos: info.pos,
        size: stat
            .filter(|s| path_named && s.mode & libc::S_IFMT == libc::S_IFREG)
            .map(|s| s.size),
        socket,
    }
}

/// `major:minor` of a device number.
pub(crate) fn dev_name(dev: u64) -> String {
    format!("{}:{}", libc::major(dev), libc::minor(dev))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo_heads() {
        let i = parse_fdinfo(b"pos:\t4096\nflags:\t02100002\nmnt_id:\t27\nino:\t12\n");
        assert_eq!(i.pos, Some(4096));
        assert_eq!(i.flags, Some(0o2100002));
        assert_eq!(i.mnt_id, Some(27));
        // Cut short by the bounded read, or garbage: what parses, parses.
        let i = parse_fdinfo(b"pos:\t7\nflags:\tzz\nmnt_");
        assert_eq!(
            i,
            FdInfo {
                pos: Some(7),
                ..FdInfo::default()
            }
        );
        assert_eq!(parse_fdinfo(b""), FdInfo::default());
    }

    /// A fixture /proc tree of process 4242 (the shared fixture's stat and
    /// socket tables) with the fd links and fdinfo files given.
    fn fixture(links: &[(i32, &str)], infos: &[i32]) -> (tempfile::TempDir, ProcRoot) {
        let tmp = tempfile::tempdir().unwrap();
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/proc/4242");
        let pid = tmp.path().join("4242");
        for d in ["fd", "fdinfo", "net"] {
            std::fs::create_dir_all(pid.join(d)).unwrap();
        }
        std::fs::copy(src.join("stat"), pid.join("stat")).unwrap();
        for e in std::fs::read_dir(src.join("net")).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), pid.join("net").join(e.file_name())).unwrap();
        }
        for (fd, target) in links {
            std::os::unix::fs::symlink(target, pid.join("fd").join(fd.to_string())).unwrap();
        }
        for fd in infos {
            std::fs::write(
                pid.join("fdinfo").join(fd.to_string()),
                "pos:\t12\nflags:\t02000002\nmnt_id:\t9\nino:\t1\n",
            )
            .unwrap();
        }
        let root = ProcRoot::new(tmp.path());
        (tmp, root)
    }

    #[test]
    fn fds_closed_while_listed_are_skipped_not_errors() {
        let (_tmp, root) = fixture(
            &[
                (0, "/dev/null"),
                (3, "pipe:[77]"),
                (4, "socket:[1005]"),
                (6, "pipe:[78]"),
            ],
            &[0, 3, 4],
        );
        // readdir saw 5 (closed before its readlink: no link now) and 6
        // (closed between its readlink and its fdinfo read).
        let l = list_these(&root, 4242, &[0, 3, 4, 5, 6]).expect("a listing, not an error");
        assert_eq!(l.vanished, 2);
        assert_eq!(l.fds.iter().map(|e| e.fd).collect::<Vec<_>>(), [0, 3, 4]);
        assert_eq!(l.fds[1].kind, FdKind::Pipe);
        assert_eq!(
            (l.fds[1].pos, l.fds[1].flags, l.fds[1].mnt_id),
            (Some(12), Some(0o2000002), Some(9))
        );
        let s = l.fds[2].socket.as_ref().expect("found in the unix table");
        assert_eq!(
            (l.fds[2].kind, s.protocol.as_str()),
            (FdKind::Unix, "UNIX-STREAM")
        );
        assert_eq!(s.unix_path.as_deref(), Some("/run/with space"));
        assert_eq!(s.state.as_deref(), Some("LISTEN"));
        // The whole walk, by readdir, on the same tree: 6 has no fdinfo.
        let l = list_proc(&root, 4242).unwrap();
        assert_eq!((l.fds.len(), l.vanished), (3, 1));
    }

    #[test]
    fn unix_names() {
        assert_eq!(unix_protocol(1), "UNIX-STREAM");
        assert_eq!(unix_protocol(5), "UNIX-SEQPACKET");
        assert_eq!(unix_state(true, false), "LISTEN");
        assert_eq!(unix_state(false, true), "CONNECTED");
        assert!(is_unspecified("[::]:0"));
        assert_eq!(dev_name(libc::makedev(254, 1)), "254:1");
    }
}

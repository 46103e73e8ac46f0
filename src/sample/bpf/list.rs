//! The kernel-side listing of `fdwatch ls`: the `list_task_file` program of
//! census.bpf.c walks one process's fd table and writes one record per fd
//! (kind, flags with close-on-exec, position, mount id, device, inode, the
//! path by `bpf_d_path`, and for sockets their protocol, state, endpoints,
//! netns and unix peer), decoded here into the same [`Listing`] the /proc
//! reader makes.
//!
//! Like the census, it never changes the target and leaves nothing behind:
//! the program, its maps and links close with fdwatch's fds.

use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::{kernel_then_aya, load, sys, unavailable, wire, Keep, Unavailable};
use crate::sample::listing::{self, FdEntry, Listing, SocketEntry};
use crate::sample::{net, Backend, FdKind, ProcRoot, SampleError};

const PROGRAM: &str = "list_task_file";
const CONFIG_MAP: &str = "fdw_config";

/// `struct list_rec` of census.bpf.c.
pub(crate) const REC_LEN: usize = 104;
const AF_UNIX: u8 = 1;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const AF_NETLINK: u8 = 16;
const TCP_ESTABLISHED: u8 = 1;
const TCP_LISTEN: u8 = 10;

/// The loaded listing program.
pub struct BpfLister {
    prog: OwnedFd,
    config: OwnedFd,
    _keep: Keep,
    buf: Vec<u8>,
}

impl std::fmt::Debug for BpfLister {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BpfLister").finish_non_exhaustive()
    }
}

impl BpfLister {
    /// Check, load and verify the program. Every failure says what is missing.
    pub fn load() -> Result<BpfLister, Unavailable> {
        super::precheck()?;
        let object = load::object_bytes(super::OBJECT_ENV, super::OBJECT).map_err(unavailable)?;
        let bytes: &[u8] = &object;
        let spec = load::Spec {
            program: PROGRAM,
            attach: load::Attach::Iter("task_file"),
            globals: &[],
        };
        kernel_then_aya(
            "the BPF listing",
            || {
                let mut l = load::load(bytes, &spec)?;
                let config = l.take_map(CONFIG_MAP)?;
                let (prog, rest) = l.into_parts();
                Ok(BpfLister::new(prog, config, Keep::Fds(rest)))
            },
            || load_with_aya(bytes),
            unavailable,
        )
    }

    fn new(prog: OwnedFd, config: OwnedFd, keep: Keep) -> BpfLister {
        BpfLister {
            prog,
            config,
            _keep: keep,
            buf: Vec::with_capacity(256 * 1024),
        }
    }

    /// Every fd of `pid`. Identity and the process's netns come from `root`.
    pub fn list(&mut self, root: &ProcRoot, pid: i32) -> Result<Listing, SampleError> {
        let ident = root.identity(pid)?;
        self.walk(pid)?;
        let mut fds = decode(&self.buf).map_err(|detail| SampleError::Malformed {
            path: "BPF listing".into(),
            detail,
        })?;
        fds.sort_by_key(|e| e.fd);
        if fds.is_empty() {
            // /proc's O(1) count is readable even where the fds are not.
            let proc_count = std::fs::metadata(root.pid_dir(pid).join("fd"))
                .map(|m| m.len())
                .unwrap_or(0);
            if proc_count > 0 && root.is_procfs() {
                return Err(SampleError::BpfBlind { pid, proc_count });
            }
        }
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
        let netns = std::fs::read_link(root.pid_dir(pid).join("ns/net"))
            .ok()
            .and_then(|l| {
                l.to_str()?
                    .strip_prefix("net:[")?
                    .strip_suffix(']')?
                    .parse()
                    .ok()
            });
        Ok(Listing {
            pid,
            comm: ident.identity.comm,
            backend: Backend::Bpf,
            netns,
            fds,
            vanished: 0,
        })
    }

    /// One walk of `pid`'s fd table into `self.buf`. The link is bound to
    /// the process where the kernel allows it (6.1+), else it walks every
    /// task and the program filters by tgid.
    fn walk(&mut self, pid: i32) -> Result<(), SampleError> {
        let io = |what: &str, source| SampleError::Io {
            path: what.into(),
            err: source,
        };
        let bound_env = std::env::var_os(super::UNBOUND_ENV).is_none();
        let link = match bound_env.then(|| sys::link_create(self.prog.as_fd(), Some(pid))) {
            Some(Ok(l)) => l,
            Some(Err(e)) if e.raw_os_error() == Some(libc::ESRCH) => {
                return Err(SampleError::NoSuchProcess { pid })
            }
            Some(Err(e)) if !matches!(e.raw_os_error(), Some(libc::EINVAL | libc::E2BIG)) => {
                return Err(io("creating the BPF iterator link", e))
            }
            _ => {
                set_filter(self.config.as_fd(), pid)?;
                sys::link_create(self.prog.as_fd(), None)
                    .map_err(|e| io("creating the BPF iterator link", e))?
            }
        };
        let iter =
            sys::iter_create(link.as_fd()).map_err(|e| io("creating the BPF iterator", e))?;
        let mut file = std::fs::File::from(iter);
        self.buf.clear();
        file.read_to_end(&mut self.buf)
            .map_err(|e| io("reading the BPF iterator", e))?;
        Ok(())
    }
}

fn set_filter(config: BorrowedFd<'_>, pid: i32) -> Result<(), SampleError> {
    load::update(config, 0, &(pid as u32)).map_err(|e| SampleError::Malformed {
        path: "BPF listing".into(),
        detail: format!("setting the target: {e}"),
    })
}

fn load_with_aya(bytes: &[u8]) -> Result<BpfLister, Unavailable> {
    let (ebpf, prog_fd, config) = super::load_iter_with_aya(bytes, PROGRAM, "listing")?;
    Ok(BpfLister::new(prog_fd, config, Keep::Aya(Box::new(ebpf))))
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from(u32_at(b, at)) | u64::from(u32_at(b, at + 4)) << 32
}

/// Decode the program's output: records of [`REC_LEN`] bytes, each followed
/// by its path and unix address bytes. A truncated record is an error (the
/// kernel writes a record whole or not at all).
pub(crate) fn decode(mut b: &[u8]) -> Result<Vec<FdEntry>, String> {
    let mut out = Vec::new();
    while !b.is_empty() {
        if b.len() < REC_LEN {
            return Err(format!("{} bytes left, a record is {REC_LEN}", b.len()));
        }
        let path_len = u16_at(b, 10) as usize;
        let uaddr_len = u16_at(b, 16) as usize;
        let total = REC_LEN + path_len + uaddr_len;
        if b.len() < total {
            return Err(format!("a record of {total} bytes cut at {}", b.len()));
        }
        let path = &b[REC_LEN..REC_LEN + path_len];
        let uaddr = &b[REC_LEN + path_len..total];
        out.push(entry(&b[..REC_LEN], path, uaddr));
        b = &b[total..];
    }
    Ok(out)
}

fn entry(r: &[u8], path: &[u8], uaddr: &[u8]) -> FdEntry {
    let fd = u32_at(r, 0) as i32;
    let kind = wire::kind_of(r[4]);
    let (family, sock_type, state) = (r[5], r[6], r[7]);
    let protocol = u16_at(r, 8);
    let (lport, rport) = (u16_at(r, 12), u16_at(r, 14));
    let flags = u32_at(r, 20);
    let mnt_id = u32_at(r, 24);
    let dev = u32_at(r, 28);
    let netns = u32_at(r, 36);
    let pos = u64_at(r, 40);
    let ino = u64_at(r, 48);
    let size = u64_at(r, 56);
    let peer = u64_at(r, 64);
    let (laddr, raddr) = (&r[72..88], &r[88..104]);

    let deleted = matches!(kind, FdKind::Deleted | FdKind::Memfd);
    let path = if deleted {
        path.strip_suffix(b" (deleted)").unwrap_or(path)
    } else {
        path
    };
    let socket = kind.is_socket().then(|| {
        let inet = family == AF_INET || family == AF_INET6;
        let tcp = matches!(kind, FdKind::Tcp | FdKind::Tcp6);
        let remote = (inet && rport != 0)
            .then(|| wire::endpoint(family, raddr, rport))
            .filter(|r| !listing::is_unspecified(r));
        SocketEntry {
            protocol: protocol_name(kind, family, sock_type),
            state: if tcp {
                Some(net::tcp_state_name(state).to_string())
            } else if family == AF_UNIX {
                Some(listing::unix_state(state == TCP_LISTEN, state == TCP_ESTABLISHED).into())
            } else {
                None
            },
            local: inet.then(|| wire::endpoint(family, laddr, lport)),
            remote,
            netlink_protocol: (family == AF_NETLINK).then(|| net::netlink_protocol_name(protocol)),
            unix_path: (family == AF_UNIX && !uaddr.is_empty()).then(|| unix_path(uaddr)),
            peer_inode: (family == AF_UNIX && peer != 0).then_some(peer),
            netns: (netns != 0).then_some(u64::from(netns)),
        }
    });
    FdEntry {
        fd,
        kind,
        target: String::from_utf8_lossy(path).into_owned(),
        deleted,
        inode: Some(ino),
        // The kernel's dev_t: major in the top 12 bits, minor in the low 20.
        dev: Some(format!("{}:{}", dev >> 20, dev & 0xf_ffff)),
        mnt_id: Some(u64::from(mnt_id)),
        flags: Some(flags),
        pos: Some(pos),
        size: matches!(kind, FdKind::Regular | FdKind::Deleted | FdKind::Memfd).then_some(size),
        socket,
    }
}

/// A unix address as /proc/net/unix prints it: the path, or `@name` for an
/// abstract one (leading NUL); trailing NULs dropped.
fn unix_path(raw: &[u8]) -> String {
    let (at, rest) = match raw.split_first() {
        Some((0, rest)) => ("@", rest),
        _ => ("", raw),
    };
    let rest = if at.is_empty() {
        &rest[..rest.iter().position(|b| *b == 0).unwrap_or(rest.len())]
    } else {
        rest
    };
    format!("{at}{}", String::from_utf8_lossy(rest))
}

/// The kernel's protocol name for a socket, as `system.sockprotoname` gives it.
fn protocol_name(kind: FdKind, family: u8, sock_type: u8) -> String {
    match kind {
        FdKind::Tcp => "TCP".into(),
        FdKind::Tcp6 => "TCPv6".into(),
        FdKind::Udp => "UDP".into(),
        FdKind::Udp6 => "UDPv6".into(),
        FdKind::Raw => "RAW".into(),
        FdKind::Raw6 => "RAWv6".into(),
        FdKind::Unix => listing::unix_protocol(u16::from(sock_type)),
        FdKind::Netlink => "NETLINK".into(),
        FdKind::Packet => "PACKET".into(),
        _ => format!("AF_{family}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(fd: i32, kind: u8, path: &[u8], uaddr: &[u8]) -> Vec<u8> {
        let mut r = vec![0u8; REC_LEN];
        r[0..4].copy_from_slice(&fd.to_le_bytes());
        r[4] = kind;
        r[10..12].copy_from_slice(&(path.len() as u16).to_le_bytes());
        r[16..18].copy_from_slice(&(uaddr.len() as u16).to_le_bytes());
        r.extend_from_slice(path);
        r.extend_from_slice(uaddr);
        r
    }

    #[test]
    fn decodes_records_and_refuses_cut_ones() {
        let kind = |k: FdKind| FdKind::ALL.iter().position(|x| *x == k).unwrap() as u8;
        let mut b = rec(3, kind(FdKind::Deleted), b"/tmp/x (deleted)", b"");
        let mut u = rec(4, kind(FdKind::Unix), b"socket:[9]", b"\0abstract");
        u[5] = AF_UNIX;
        u[6] = 1;
        u[7] = TCP_LISTEN;
        b.extend_from_slice(&u);
        let e = decode(&b).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(
            (e[0].fd, e[0].target.as_str(), e[0].deleted),
            (3, "/tmp/x", true)
        );
        let s = e[1].socket.as_ref().unwrap();
        assert_eq!(s.protocol, "UNIX-STREAM");
        assert_eq!(s.state.as_deref(), Some("LISTEN"));
        assert_eq!(s.unix_path.as_deref(), Some("@abstract"));
        assert!(decode(&b[..b.len() - 1]).is_err());
        assert!(decode(&b[..50]).is_err());
        assert_eq!(unix_path(b"/run/x.sock\0\0"), "/run/x.sock");
    }
}

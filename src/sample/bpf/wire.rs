//! The byte stream the BPF census program writes into its iterator, decoded.
//!
//! Pure: bytes in, [`Census`] out. The layouts mirror `census.bpf.c` (the
//! record structs there; keep both in step). Everything is little-endian
//! native layout, as the program runs on the same machine.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::sample::FdKind;

const REC_INODE: u8 = 1;
const REC_TCP: u8 = 2;
const REC_REPEAT: u8 = 3;
const REC_SUMMARY: u8 = 4;
const REC_INODES: u8 = 5;

const HDR_LEN: usize = 8;
const INODE_LEN: usize = 16;
const TCP_LEN: usize = 40;
const REPEAT_LEN: usize = 24;
/// `INODE_BATCH` of the C program: most entries a REC_INODES record holds.
const INODE_BATCH: usize = 32;
/// A REC_INODES entry is `kind << INO_BITS | inode`.
const INO_BITS: u32 = 56;

pub const N_KINDS: usize = 32;
pub const N_TCP_STATES: usize = 16;
pub const N_NETLINK: usize = 32;
pub const N_SOCK_TYPES: usize = 16;
/// `struct census`: header, 4 scalars, then the four count arrays.
pub const SUMMARY_LEN: usize = 8 + 4 * 8 + (N_KINDS + N_TCP_STATES + N_NETLINK + N_SOCK_TYPES) * 8;

const AF_INET: u8 = 2;

/// `enum kind` of the C program, by number: the C enum follows the order of
/// [`FdKind::ALL`] (a test checks the names line up).
pub const KINDS: [FdKind; 31] = FdKind::ALL;

pub fn kind_of(n: u8) -> FdKind {
    KINDS.get(n as usize).copied().unwrap_or(FdKind::Other)
}

/// A file held by more than one fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repeat {
    pub count: u64,
    /// The lowest fd that repeats it (the walk goes up from fd 0, so the
    /// second fd on the file): its path is read through `/proc/<pid>/fd/<fd>`.
    pub fd: i32,
}

/// What one walk of the iterator reported.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Census {
    pub files: u64,
    pub deleted_bytes: u64,
    pub repeat_untracked: u64,
    pub kinds: Vec<(FdKind, u64)>,
    /// (kernel TCP state number, count)
    pub tcp_states: Vec<(u8, u64)>,
    /// (netlink protocol number, count)
    pub netlink: Vec<(u16, u64)>,
    /// (unix socket type: 1 STREAM, 2 DGRAM, 5 SEQPACKET, count)
    pub unix_types: Vec<(u16, u64)>,
    /// Socket and pipe inodes, in the order the walk met them.
    pub inodes: Vec<(FdKind, u64)>,
    /// Peers of connected TCP sockets, `addr:port` as /proc's parser prints them.
    pub remotes: Vec<String>,
    /// By (dev, ino).
    pub repeats: HashMap<(u64, u64), Repeat>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("BPF census output truncated at byte {0}")]
    Truncated(usize),
    #[error("BPF census output has an unknown record type {kind} at byte {at}")]
    UnknownRecord { kind: u8, at: usize },
    #[error("BPF census output has no summary (the walk did not finish)")]
    NoSummary,
    #[error("BPF census output has a batch of {entries} inodes at byte {at}")]
    BadBatch { entries: usize, at: usize },
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_ne_bytes(w)
}

fn counts<K: TryFrom<usize>>(b: &[u8], at: usize, n: usize) -> Vec<(K, u64)> {
    (0..n)
        .filter_map(|i| {
            let v = u64_at(b, at + i * 8);
            let k = K::try_from(i).ok()?;
            (v > 0).then_some((k, v))
        })
        .collect()
}

/// Decode one full read of the iterator.
pub fn parse(bytes: &[u8]) -> Result<Census, WireError> {
    let mut c = Census {
        // Mostly batched inodes, 8 bytes each.
        inodes: Vec::with_capacity(bytes.len() / 8),
        ..Census::default()
    };
    let mut summary = false;
    let mut at = 0;
    while at < bytes.len() {
        let kind = bytes[at];
        let len = match kind {
            REC_INODE => INODE_LEN,
            REC_TCP => TCP_LEN,
            REC_REPEAT => REPEAT_LEN,
            REC_SUMMARY => SUMMARY_LEN,
            REC_INODES => {
                let n = match bytes.get(at + 2..at + 4) {
                    Some(n) => u16::from_ne_bytes([n[0], n[1]]) as usize,
                    None => return Err(WireError::Truncated(at)),
                };
                if n == 0 || n > INODE_BATCH {
                    return Err(WireError::BadBatch { entries: n, at });
                }
                HDR_LEN + 8 * n
            }
            _ => return Err(WireError::UnknownRecord { kind, at }),
        };
        let Some(r) = bytes.get(at..at + len) else {
            return Err(WireError::Truncated(at));
        };
        let fd_kind = kind_of(r[1]);
        let fd = i32::from_ne_bytes([r[4], r[5], r[6], r[7]]);
        match kind {
            REC_INODES => c.inodes.extend(r[HDR_LEN..].chunks_exact(8).map(|e| {
                let e = u64::from_ne_bytes(e.try_into().unwrap_or_default());
                (kind_of((e >> INO_BITS) as u8), e & ((1 << INO_BITS) - 1))
            })),
            REC_INODE => c.inodes.push((fd_kind, u64_at(r, 8))),
            REC_TCP => {
                c.inodes.push((fd_kind, u64_at(r, 8)));
                let port = u16::from_ne_bytes([r[2], r[3]]);
                let family = r[17];
                let addr = &r[24..40];
                c.remotes.push(endpoint(family, addr, port));
            }
            REC_REPEAT => {
                // One record per fd after the file's first.
                let key = (u64_at(r, 16), u64_at(r, 8));
                let e = c.repeats.entry(key).or_insert(Repeat { count: 1, fd });
                e.count += 1;
                e.fd = e.fd.min(fd);
            }
            _ => {
                summary = true;
                c.files = u64_at(r, 16);
                c.deleted_bytes = u64_at(r, 24);
                c.repeat_untracked = u64_at(r, 32);
                let kinds_at = 40;
                let tcp_at = kinds_at + N_KINDS * 8;
                let nl_at = tcp_at + N_TCP_STATES * 8;
                let unix_at = nl_at + N_NETLINK * 8;
                c.kinds = counts::<usize>(r, kinds_at, N_KINDS)
                    .into_iter()
                    .map(|(k, v)| (kind_of(k as u8), v))
                    .collect();
                c.tcp_states = counts(r, tcp_at, N_TCP_STATES);
                c.netlink = counts(r, nl_at, N_NETLINK);
                c.unix_types = counts(r, unix_at, N_SOCK_TYPES);
            }
        }
        at += len;
    }
    if !summary {
        return Err(WireError::NoSummary);
    }
    Ok(c)
}

/// `addr:port`, `[v6]:port`, v4-mapped v6 as v4: the /proc parser's spelling.
pub(crate) fn endpoint(family: u8, addr: &[u8], port: u16) -> String {
    if family == AF_INET {
        let ip = Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]);
        return format!("{ip}:{port}");
    }
    let mut b = [0u8; 16];
    b.copy_from_slice(&addr[..16]);
    let ip = Ipv6Addr::from(b);
    match ip.to_ipv4_mapped() {
        Some(v4) => format!("{v4}:{port}"),
        None => format!("[{ip}]:{port}"),
    }
}

/// Unix socket type names, as `ss` prints them.
pub fn unix_type_name(t: u16) -> String {
    match t {
        1 => "STREAM".into(),
        2 => "DGRAM".into(),
        5 => "SEQPACKET".into(),
        n => format!("TYPE{n}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn c_enum_kind_follows_fdkind_all() {
        let src = include_str!("census.bpf.c");
        let body = &src[src.find("enum kind {").expect("enum kind")..];
        let body = &body[..body.find("};").expect("end of enum")];
        let names: Vec<String> = body
            .lines()
            .filter_map(|l| l.trim().strip_prefix("K_"))
            .map(|l| l.split([',', ' ']).next().unwrap_or("").to_lowercase())
            .filter(|n| n != "max")
            .collect();
        let ours: Vec<&str> = super::KINDS.iter().map(|k| k.name()).collect();
        assert_eq!(names, ours);
    }

    use super::*;

    fn hdr(t: u8, kind: u8, port: u16, fd: i32) -> Vec<u8> {
        let mut v = vec![t, kind];
        v.extend_from_slice(&port.to_ne_bytes());
        v.extend_from_slice(&fd.to_ne_bytes());
        v
    }

    fn summary(files: u64, kinds: &[(usize, u64)], netlink: &[(usize, u64)]) -> Vec<u8> {
        let mut v = hdr(REC_SUMMARY, 0, 0, 0);
        v.resize(SUMMARY_LEN, 0);
        v[16..24].copy_from_slice(&files.to_ne_bytes());
        v[24..32].copy_from_slice(&4096u64.to_ne_bytes());
        for (k, n) in kinds {
            v[40 + k * 8..48 + k * 8].copy_from_slice(&n.to_ne_bytes());
        }
        let nl = 40 + (N_KINDS + N_TCP_STATES) * 8;
        for (p, n) in netlink {
            v[nl + p * 8..nl + p * 8 + 8].copy_from_slice(&n.to_ne_bytes());
        }
        v
    }

    #[test]
    fn kinds_match_the_c_enum() {
        // A few anchors of `enum kind` in census.bpf.c.
        assert_eq!(kind_of(0), FdKind::Regular);
        assert_eq!(kind_of(6), FdKind::Pipe);
        assert_eq!(kind_of(15), FdKind::Netlink);
        assert_eq!(kind_of(19), FdKind::Eventpoll);
        assert_eq!(kind_of(30), FdKind::Other);
        assert_eq!(kind_of(200), FdKind::Other);
        assert_eq!(SUMMARY_LEN, 808);
    }

    #[test]
    fn decodes_every_record() {
        let mut b = Vec::new();
        b.extend(hdr(REC_INODES, 0, 2, 0));
        b.extend((14u64 << INO_BITS | 55).to_ne_bytes());
        b.extend((6u64 << INO_BITS | 56).to_ne_bytes());
        b.extend(hdr(REC_INODE, 6, 0, 4));
        b.extend(77u64.to_ne_bytes());
        let mut tcp = hdr(REC_TCP, 8, 8080, 5);
        tcp.extend(99u64.to_ne_bytes());
        tcp.extend([1, AF_INET, 0, 0, 0, 0, 0, 0]);
        tcp.extend([127, 0, 0, 1]);
        tcp.extend([0u8; 12]);
        b.extend(&tcp);
        for fd in [9, 12] {
            b.extend(hdr(REC_REPEAT, 0, 0, fd));
            b.extend(1234u64.to_ne_bytes());
            b.extend(8u64.to_ne_bytes());
        }
        b.extend(summary(6, &[(0, 3), (6, 1), (8, 1), (15, 1)], &[(0, 1)]));
        let c = parse(&b).unwrap();
        assert_eq!(c.files, 6);
        assert_eq!(c.deleted_bytes, 4096);
        assert_eq!(
            c.kinds,
            vec![
                (FdKind::Regular, 3),
                (FdKind::Pipe, 1),
                (FdKind::Tcp, 1),
                (FdKind::Netlink, 1)
            ]
        );
        assert_eq!(c.netlink, vec![(0, 1)]);
        assert_eq!(
            c.inodes,
            vec![
                (FdKind::Unix, 55),
                (FdKind::Pipe, 56),
                (FdKind::Pipe, 77),
                (FdKind::Tcp, 99)
            ]
        );
        assert_eq!(c.remotes, vec!["127.0.0.1:8080".to_string()]);
        assert_eq!(c.repeats[&(8, 1234)], Repeat { count: 3, fd: 9 });
    }

    #[test]
    fn rejects_broken_streams() {
        assert_eq!(parse(&[]), Err(WireError::NoSummary));
        assert_eq!(
            parse(&[9, 0, 0, 0]),
            Err(WireError::UnknownRecord { kind: 9, at: 0 })
        );
        assert_eq!(parse(&[REC_INODE, 0, 0]), Err(WireError::Truncated(0)));
        assert_eq!(parse(&[REC_INODES, 0]), Err(WireError::Truncated(0)));
        assert_eq!(
            parse(&[REC_INODES, 0, 0, 0, 0, 0, 0, 0]),
            Err(WireError::BadBatch { entries: 0, at: 0 })
        );
        let mut b = hdr(REC_INODES, 0, 2, 0);
        b.extend(1u64.to_ne_bytes());
        assert_eq!(parse(&b), Err(WireError::Truncated(0)));
    }

    #[test]
    fn v6_endpoints_read_like_proc() {
        let mut a = [0u8; 16];
        a[10] = 0xff;
        a[11] = 0xff;
        a[12..].copy_from_slice(&[10, 0, 0, 2]);
        assert_eq!(endpoint(10, &a, 443), "10.0.0.2:443");
        let lo = Ipv6Addr::LOCALHOST.octets();
        assert_eq!(endpoint(10, &lo, 22), "[::1]:22");
    }
}

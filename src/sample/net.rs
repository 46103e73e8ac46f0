//! Socket tables of the target's own network namespace (`/proc/<pid>/net/*`),
//! parsed into `inode -> SocketInfo`.
//!
//! Reading `/proc/net/*` (the root netns) would leave a container's sockets
//! unmatched, so every path here is under `/proc/<pid>/net`. The parsers are
//! pure `&str -> rows` functions tested on real kernel text; they only decode
//! the fields fdwatch reports (inode, state, protocol, remote endpoint).

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::FdKind;

/// One table under `/proc/<pid>/net/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Unix,
    Tcp,
    Tcp6,
    Udp,
    Udp6,
    Netlink,
    Raw,
    Raw6,
    Packet,
}

impl Table {
    /// In the order they are read: the commonest first, so the reading can
    /// stop as soon as every socket of the target is resolved.
    pub const ALL: [Table; 9] = [
        Table::Unix,
        Table::Tcp,
        Table::Tcp6,
        Table::Udp,
        Table::Udp6,
        Table::Netlink,
        Table::Raw,
        Table::Raw6,
        Table::Packet,
    ];

    pub fn file_name(self) -> &'static str {
        match self {
            Table::Unix => "unix",
            Table::Tcp => "tcp",
            Table::Tcp6 => "tcp6",
            Table::Udp => "udp",
            Table::Udp6 => "udp6",
            Table::Netlink => "netlink",
            Table::Raw => "raw",
            Table::Raw6 => "raw6",
            Table::Packet => "packet",
        }
    }

    pub fn kind(self) -> FdKind {
        match self {
            Table::Unix => FdKind::Unix,
            Table::Tcp => FdKind::Tcp,
            Table::Tcp6 => FdKind::Tcp6,
            Table::Udp => FdKind::Udp,
            Table::Udp6 => FdKind::Udp6,
            Table::Netlink => FdKind::Netlink,
            Table::Raw => FdKind::Raw,
            Table::Raw6 => FdKind::Raw6,
            Table::Packet => FdKind::Packet,
        }
    }
}

/// What a table row says about one socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketInfo {
    pub kind: FdKind,
    /// Kernel TCP state number (1 ESTABLISHED .. 12 NEW_SYN_RECV), TCP only.
    pub tcp_state: Option<u8>,
    /// Netlink protocol number (the `Eth` column), netlink only.
    pub netlink_protocol: Option<u16>,
    /// `addr:port` of the peer, for connected TCP sockets only.
    pub remote: Option<String>,
}

impl SocketInfo {
    /// A socket of `kind` with no details yet.
    pub fn of(kind: FdKind) -> SocketInfo {
        SocketInfo {
            kind,
            tcp_state: None,
            netlink_protocol: None,
            remote: None,
        }
    }
}

/// Parse one table, keeping the rows whose inode `want` accepts (the target's
/// sockets), into `out`. Malformed rows are skipped: a table is read while the
/// kernel changes it, and one odd row must not cost the whole census.
pub fn parse_table<S: std::hash::BuildHasher>(
    table: Table,
    text: &str,
    want: &dyn Fn(u64) -> bool,
    out: &mut HashMap<u64, SocketInfo, S>,
) {
    let kind = table.kind();
    for line in text.lines().skip(1) {
        let mut fields = line.split_ascii_whitespace();
        let parsed = match table {
            Table::Tcp | Table::Tcp6 | Table::Udp | Table::Udp6 | Table::Raw | Table::Raw6 => {
                parse_inet_row(&mut fields, kind, want)
            }
            // Only the inode matters: column 6 of unix, 8 of packet.
            Table::Unix | Table::Packet => fields
                .nth(if table == Table::Unix { 6 } else { 8 })
                .and_then(|ino| ino.parse().ok())
                .filter(|ino| want(*ino))
                .map(|ino| (ino, SocketInfo::of(kind))),
            // `sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode`. A row
            // with port id 0 is a kernel-side socket (the kernel's end of
            // NETLINK_ROUTE, uevents, ...): no fd of any process is one, so
            // it is left out (user sockets always bind to a non-zero port).
            Table::Netlink => {
                let proto = fields.nth(1).and_then(|p| p.parse::<u16>().ok());
                let user = fields.next().is_some_and(|portid| portid != "0");
                let ino = fields.nth(6).and_then(|i| i.parse::<u64>().ok());
                match (proto, ino) {
                    (Some(p), Some(ino)) if user && want(ino) => Some((
                        ino,
                        SocketInfo {
                            netlink_protocol: Some(p),
                            ..SocketInfo::of(kind)
                        },
                    )),
                    _ => None,
                }
            }
        };
        if let Some((ino, info)) = parsed {
            out.insert(ino, info);
        }
    }
}

/// Everything a table row says about one socket, for the per-fd listing
/// (`fdwatch ls`); the census keeps only [`SocketInfo`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SocketRow {
    /// Kernel socket state (`st`): TCP states for TCP, 7 (CLOSE) for an
    /// unconnected UDP socket; the unix `St` column (1 unconnected, 3 connected).
    pub state: Option<u8>,
    /// `addr:port` (inet), as [`decode_endpoint`] spells it.
    pub local: Option<String>,
    pub remote: Option<String>,
    /// Netlink: the protocol number and port id.
    pub netlink_protocol: Option<u16>,
    pub netlink_port: Option<i64>,
    /// Unix: SOCK_* type, whether it listens, its bound path (`@` for abstract).
    pub unix_type: Option<u16>,
    pub unix_listening: bool,
    pub unix_path: Option<String>,
}

/// Parse one table into `inode -> SocketRow` for the rows `want` accepts.
/// Malformed rows are skipped, as in [`parse_table`].
pub fn parse_rows<S: std::hash::BuildHasher>(
    table: Table,
    text: &str,
    want: &dyn Fn(u64) -> bool,
    out: &mut HashMap<u64, SocketRow, S>,
) {
    for line in text.lines().skip(1) {
        let mut fields = line.split_ascii_whitespace();
        let parsed = match table {
            Table::Tcp | Table::Tcp6 | Table::Udp | Table::Udp6 | Table::Raw | Table::Raw6 => {
                (|| {
                    let _sl = fields.next()?;
                    let local = fields.next()?;
                    let remote = fields.next()?;
                    let state = u8::from_str_radix(fields.next()?, 16).ok()?;
                    let ino: u64 = fields.nth(5)?.parse().ok()?;
                    Some((
                        ino,
                        SocketRow {
                            state: Some(state),
                            local: decode_endpoint(local),
                            remote: decode_endpoint(remote),
                            ..SocketRow::default()
                        },
                    ))
                })()
            }
            // `Num RefCount Protocol Flags Type St Inode Path`; the path is
            // the rest of the line (it may hold spaces).
            Table::Unix => (|| {
                let _num = fields.next()?;
                let _refs = fields.next()?;
                let _proto = fields.next()?;
                let flags = u32::from_str_radix(fields.next()?, 16).ok()?;
                let ty = u16::from_str_radix(fields.next()?, 16).ok()?;
                let st = u8::from_str_radix(fields.next()?, 16).ok()?;
                let ino_text = fields.next()?;
                let ino: u64 = ino_text.parse().ok()?;
                let rest = line
                    .find(&format!(" {ino_text}"))
                    .map(|at| line[at + 1 + ino_text.len()..].trim_start())
                    .filter(|p| !p.is_empty());
                Some((
                    ino,
                    SocketRow {
                        state: Some(st),
                        unix_type: Some(ty),
                        // __SO_ACCEPTCON: the socket listens.
                        unix_listening: flags & 0x0001_0000 != 0,
                        unix_path: rest.map(str::to_string),
                        ..SocketRow::default()
                    },
                ))
            })(),
            Table::Netlink => (|| {
                let _sk = fields.next()?;
                let proto = fields.next()?.parse::<u16>().ok()?;
                let port = fields.next()?.parse::<i64>().ok()?;
                let ino = fields.nth(6)?.parse::<u64>().ok()?;
                // Port id 0: the kernel's own socket (see parse_table).
                (port != 0).then_some((
                    ino,
                    SocketRow {
                        netlink_protocol: Some(proto),
                        netlink_port: Some(port),
                        ..SocketRow::default()
                    },
                ))
            })(),
            Table::Packet => fields
                .nth(8)
                .and_then(|ino| ino.parse().ok())
                .map(|ino| (ino, SocketRow::default())),
        };
        if let Some((ino, row)) = parsed {
            if want(ino) {
                out.insert(ino, row);
            }
        }
    }
}

/// `sl local rem st tx:rx tr:tm retrnsmt uid timeout inode ...`
fn parse_inet_row<'a>(
    fields: &mut impl Iterator<Item = &'a str>,
    kind: FdKind,
    want: &dyn Fn(u64) -> bool,
) -> Option<(u64, SocketInfo)> {
    let _sl = fields.next()?;
    let _local = fields.next()?;
    let remote = fields.next()?;
    let state = u8::from_str_radix(fields.next()?, 16).ok()?;
    let ino: u64 = fields.nth(5)?.parse().ok()?;
    if !want(ino) {
        return None;
    }
    let is_tcp = matches!(kind, FdKind::Tcp | FdKind::Tcp6);
    // A listener or closed socket has no peer worth naming.
    let connected = is_tcp && !matches!(state, 0x07 | 0x0A);
    Some((
        ino,
        SocketInfo {
            kind,
            tcp_state: is_tcp.then_some(state),
            netlink_protocol: None,
            remote: if connected {
                decode_endpoint(remote)
            } else {
                None
            },
        },
    ))
}

/// Decode `0100007F:1F90` (IPv4, host byte order) or a 32-hex-digit IPv6
/// address, as the kernel prints them in `/proc/net/tcp{,6}`.
pub fn decode_endpoint(field: &str) -> Option<String> {
    let (addr, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    match addr.len() {
        8 => {
            let raw = u32::from_str_radix(addr, 16).ok()?;
            // The kernel prints the __be32 as a host-order integer: its
            // in-memory bytes are the address in network order.
            let ip = Ipv4Addr::from(raw.to_ne_bytes());
            Some(format!("{ip}:{port}"))
        }
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                // `get`: a malformed line may hold non-ASCII bytes, where a
                // byte range would split a character.
                let word = u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok()?;
                chunk.copy_from_slice(&word.to_ne_bytes());
            }
            let ip = Ipv6Addr::from(bytes);
            match ip.to_ipv4_mapped() {
                Some(v4) => Some(format!("{v4}:{port}")),
                None => Some(format!("[{ip}]:{port}")),
            }
        }
        _ => None,
    }
}

/// Kernel TCP state names (include/net/tcp_states.h), as `ss` and lsof print them.
pub fn tcp_state_name(state: u8) -> &'static str {
    match state {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        12 => "NEW_SYN_RECV",
        _ => "UNKNOWN",
    }
}

/// Netlink protocol names (include/uapi/linux/netlink.h), as lsfd prints them.
/// The label a netlink socket is counted under: its protocol's name, or
/// `unknown` for a socket in no table (never bound: /proc cannot tell its
/// protocol).
pub fn netlink_label(protocol: Option<u16>) -> String {
    match protocol {
        Some(p) => netlink_protocol_name(p),
        None => "unknown".to_string(),
    }
}

pub fn netlink_protocol_name(proto: u16) -> String {
    let name = match proto {
        0 => "ROUTE",
        1 => "UNUSED",
        2 => "USERSOCK",
        3 => "FIREWALL",
        4 => "SOCK_DIAG",
        5 => "NFLOG",
        6 => "XFRM",
        7 => "SELINUX",
        8 => "ISCSI",
        9 => "AUDIT",
        10 => "FIB_LOOKUP",
        11 => "CONNECTOR",
        12 => "NETFILTER",
        13 => "IP6_FW",
        14 => "DNRTMSG",
        15 => "KOBJECT_UEVENT",
        16 => "GENERIC",
        18 => "SCSITRANSPORT",
        19 => "ECRYPTFS",
        20 => "RDMA",
        21 => "CRYPTO",
        22 => "SMC",
        n => return format!("PROTO_{n}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(table: Table, text: &str) -> HashMap<u64, SocketInfo> {
        let mut out = HashMap::new();
        parse_table(table, text, &|_| true, &mut out);
        out
    }

    // Real kernel text (6.x), trimmed.
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:D2F0 08 00000000:00000001 00:00000000 00000000     0        0 31338 1 0000000000000000 20 4 30 10 -1
   2: 0A00020F:A1B2 08080808:01BB 01 00000000:00000000 02:000A7E3F 00000000  1000        0 31339 2 0000000000000000 22 4 28 10 -1
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4001 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:0016 00000000000000000000000001000000:C350 01 00000000:00000000 00:00000000 00000000     0        0 4002 1 0000000000000000 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:0050 0000000000000000FFFF00000100007F:E000 08 00000000:00000000 00:00000000 00000000     0        0 4003 1 0000000000000000 100 0 0 10 0
";
    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  123: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 5001 2 0000000000000000 0
";
    const UNIX: &str = "Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 6001 /run/systemd/notify
0000000000000000: 00000003 00000000 00000000 0001 03 6002
0000000000000000: 00000002 00000000 00010000 0001 01 6003 @/tmp/.X11-unix/X0 with spaces
";
    const NETLINK: &str =
        "sk               Eth Pid        Groups   Rmem     Wmem     Dump  Locks    Drops    Inode
0000000000000000 0   4242       00000000 0        0        0     2        0        7001
0000000000000000 4   4244       00000000 0        0        0     2        0        7002
0000000000000000 0   0          00000000 0        0        0     2        0        7005
0000000000000000 15  4243       00000001 0        0        0     2        0        7003
0000000000000000 16  -4100      00000000 0        0        0     2        0        7004
";
    const PACKET: &str = "sk               RefCnt Type Proto  Iface R Rmem   User   Inode
0000000000000000 3      3    0003   0     1 0      0      8001
";

    #[test]
    fn tcp_states_and_peers() {
        let t = all(Table::Tcp, TCP);
        assert_eq!(t.len(), 3);
        assert_eq!(t[&31337].tcp_state, Some(10));
        assert_eq!(t[&31337].remote, None, "a listener has no peer");
        assert_eq!(t[&31338].tcp_state, Some(8));
        assert_eq!(t[&31338].remote.as_deref(), Some("127.0.0.1:54000"));
        assert_eq!(t[&31339].remote.as_deref(), Some("8.8.8.8:443"));
        assert_eq!(tcp_state_name(8), "CLOSE_WAIT");
        assert_eq!(tcp_state_name(10), "LISTEN");
    }

    #[test]
    fn tcp6_including_v4_mapped() {
        let t = all(Table::Tcp6, TCP6);
        assert_eq!(t[&4001].kind, FdKind::Tcp6);
        assert_eq!(t[&4002].remote.as_deref(), Some("[::1]:50000"));
        assert_eq!(t[&4003].remote.as_deref(), Some("127.0.0.1:57344"));
    }

    #[test]
    fn udp_unix_packet() {
        assert_eq!(all(Table::Udp, UDP)[&5001].kind, FdKind::Udp);
        let u = all(Table::Unix, UNIX);
        assert_eq!(u.len(), 3, "path with spaces and no path both parse");
        assert_eq!(all(Table::Packet, PACKET)[&8001].kind, FdKind::Packet);
    }

    #[test]
    fn netlink_protocols_by_name() {
        let n = all(Table::Netlink, NETLINK);
        let name = |ino| netlink_protocol_name(n[&ino].netlink_protocol.unwrap());
        assert_eq!(name(7001), "ROUTE");
        assert_eq!(name(7002), "SOCK_DIAG");
        assert_eq!(name(7003), "KOBJECT_UEVENT");
        assert_eq!(name(7004), "GENERIC");
        assert_eq!(netlink_protocol_name(99), "PROTO_99");
        // Port id 0: the kernel's own socket, never a process's fd.
        assert!(!n.contains_key(&7005));
    }

    #[test]
    fn rows_for_the_listing() {
        let rows = |table, text| {
            let mut out = HashMap::new();
            parse_rows(table, text, &|_| true, &mut out);
            out
        };
        let t = rows(Table::Tcp, TCP);
        assert_eq!(t[&31337].local.as_deref(), Some("127.0.0.1:8080"));
        assert_eq!(t[&31337].state, Some(10));
        assert_eq!(t[&31338].remote.as_deref(), Some("127.0.0.1:54000"));
        let u = rows(Table::Unix, UNIX);
        assert_eq!(u[&6001].unix_path.as_deref(), Some("/run/systemd/notify"));
        assert!(u[&6001].unix_listening);
        assert_eq!(u[&6002].unix_path, None);
        assert_eq!(u[&6002].state, Some(3));
        assert_eq!(
            u[&6003].unix_path.as_deref(),
            Some("@/tmp/.X11-unix/X0 with spaces")
        );
        let n = rows(Table::Netlink, NETLINK);
        assert_eq!(n[&7002].netlink_protocol, Some(4));
        assert_eq!(n[&7002].netlink_port, Some(4244));
        assert!(!n.contains_key(&7005));
        assert!(rows(Table::Tcp, "header\nnot a row\n   0: zz\n").is_empty());
        assert!(rows(Table::Unix, "header\n0: 1 2\n").is_empty());
    }

    #[test]
    fn filter_and_malformed_rows() {
        let mut out = HashMap::new();
        parse_table(Table::Tcp, TCP, &|ino| ino == 31338, &mut out);
        assert_eq!(out.len(), 1);
        let garbage = "header\nnot a row\n   0: zz\n\n";
        assert!(all(Table::Tcp, garbage).is_empty());
        assert!(all(Table::Netlink, garbage).is_empty());
        assert!(all(Table::Unix, "").is_empty());
    }
}

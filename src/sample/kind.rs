//! The vocabulary of fd kinds, close to lsfd's TYPE column and ss's names.

use serde::{Deserialize, Serialize};

/// What one fd refers to. The serialised name (snake_case) is part of the
/// stable JSON schema; the label is what a person reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FdKind {
    Regular,
    /// A regular file that was unlinked while open: its disk space is still held.
    Deleted,
    Directory,
    CharDevice,
    BlockDevice,
    /// A named pipe (mkfifo).
    Fifo,
    /// An anonymous pipe (`pipe:[ino]`).
    Pipe,
    Memfd,
    Tcp,
    Tcp6,
    Udp,
    Udp6,
    Raw,
    Raw6,
    Unix,
    Netlink,
    Packet,
    /// A socket of another family (named by `system.sockprotoname`).
    SocketOther,
    /// A socket found in no table and not nameable.
    SocketUnresolved,
    Eventpoll,
    Eventfd,
    Timerfd,
    Signalfd,
    Inotify,
    Fanotify,
    Pidfd,
    IoUring,
    Bpf,
    PerfEvent,
    /// Any other `anon_inode:` kind (userfaultfd, dmabuf, kvm, ...).
    AnonOther,
    /// Namespaces (`net:[...]`) and anything else.
    Other,
}

impl FdKind {
    pub const ALL: [FdKind; 31] = [
        FdKind::Regular,
        FdKind::Deleted,
        FdKind::Directory,
        FdKind::CharDevice,
        FdKind::BlockDevice,
        FdKind::Fifo,
        FdKind::Pipe,
        FdKind::Memfd,
        FdKind::Tcp,
        FdKind::Tcp6,
        FdKind::Udp,
        FdKind::Udp6,
        FdKind::Raw,
        FdKind::Raw6,
        FdKind::Unix,
        FdKind::Netlink,
        FdKind::Packet,
        FdKind::SocketOther,
        FdKind::SocketUnresolved,
        FdKind::Eventpoll,
        FdKind::Eventfd,
        FdKind::Timerfd,
        FdKind::Signalfd,
        FdKind::Inotify,
        FdKind::Fanotify,
        FdKind::Pidfd,
        FdKind::IoUring,
        FdKind::Bpf,
        FdKind::PerfEvent,
        FdKind::AnonOther,
        FdKind::Other,
    ];

    /// The stable machine name (same as the JSON key).
    pub fn name(self) -> &'static str {
        match self {
            FdKind::Regular => "regular",
            FdKind::Deleted => "deleted",
            FdKind::Directory => "directory",
            FdKind::CharDevice => "char_device",
            FdKind::BlockDevice => "block_device",
            FdKind::Fifo => "fifo",
            FdKind::Pipe => "pipe",
            FdKind::Memfd => "memfd",
            FdKind::Tcp => "tcp",
            FdKind::Tcp6 => "tcp6",
            FdKind::Udp => "udp",
            FdKind::Udp6 => "udp6",
            FdKind::Raw => "raw",
            FdKind::Raw6 => "raw6",
            FdKind::Unix => "unix",
            FdKind::Netlink => "netlink",
            FdKind::Packet => "packet",
            FdKind::SocketOther => "socket_other",
            FdKind::SocketUnresolved => "socket_unresolved",
            FdKind::Eventpoll => "eventpoll",
            FdKind::Eventfd => "eventfd",
            FdKind::Timerfd => "timerfd",
            FdKind::Signalfd => "signalfd",
            FdKind::Inotify => "inotify",
            FdKind::Fanotify => "fanotify",
            FdKind::Pidfd => "pidfd",
            FdKind::IoUring => "io_uring",
            FdKind::Bpf => "bpf",
            FdKind::PerfEvent => "perf_event",
            FdKind::AnonOther => "anon_other",
            FdKind::Other => "other",
        }
    }

    /// What a person reads in the table and in verdicts.
    pub fn label(self) -> &'static str {
        match self {
            FdKind::Regular => "regular files",
            FdKind::Deleted => "deleted-but-open files",
            FdKind::Directory => "directories",
            FdKind::CharDevice => "char devices",
            FdKind::BlockDevice => "block devices",
            FdKind::Fifo => "FIFOs",
            FdKind::Pipe => "pipes",
            FdKind::Memfd => "memfds",
            FdKind::Tcp => "TCP sockets",
            FdKind::Tcp6 => "TCPv6 sockets",
            FdKind::Udp => "UDP sockets",
            FdKind::Udp6 => "UDPv6 sockets",
            FdKind::Raw => "raw sockets",
            FdKind::Raw6 => "raw v6 sockets",
            FdKind::Unix => "unix sockets",
            FdKind::Netlink => "netlink sockets",
            FdKind::Packet => "packet sockets",
            FdKind::SocketOther => "other sockets",
            FdKind::SocketUnresolved => "sockets (unresolved)",
            FdKind::Eventpoll => "epoll fds",
            FdKind::Eventfd => "eventfds",
            FdKind::Timerfd => "timerfds",
            FdKind::Signalfd => "signalfds",
            FdKind::Inotify => "inotify fds",
            FdKind::Fanotify => "fanotify fds",
            FdKind::Pidfd => "pidfds",
            FdKind::IoUring => "io_uring fds",
            FdKind::Bpf => "bpf objects",
            FdKind::PerfEvent => "perf events",
            FdKind::AnonOther => "other anon inodes",
            FdKind::Other => "other",
        }
    }

    pub fn from_name(name: &str) -> Option<FdKind> {
        FdKind::ALL.into_iter().find(|k| k.name() == name)
    }

    pub fn is_socket(self) -> bool {
        matches!(
            self,
            FdKind::Tcp
                | FdKind::Tcp6
                | FdKind::Udp
                | FdKind::Udp6
                | FdKind::Raw
                | FdKind::Raw6
                | FdKind::Unix
                | FdKind::Netlink
                | FdKind::Packet
                | FdKind::SocketOther
                | FdKind::SocketUnresolved
        )
    }

    /// Classify an `anon_inode:` link target (without the prefix), e.g.
    /// `[eventpoll]`, `inotify`, `bpf-map`.
    pub fn from_anon_inode(name: &[u8]) -> FdKind {
        let name = name.strip_prefix(b"[").unwrap_or(name);
        let name = name.strip_suffix(b"]").unwrap_or(name);
        match name {
            b"eventpoll" => FdKind::Eventpoll,
            b"eventfd" => FdKind::Eventfd,
            b"timerfd" => FdKind::Timerfd,
            b"signalfd" => FdKind::Signalfd,
            b"inotify" => FdKind::Inotify,
            b"fanotify" => FdKind::Fanotify,
            b"pidfd" => FdKind::Pidfd,
            b"io_uring" => FdKind::IoUring,
            b"perf_event" => FdKind::PerfEvent,
            n if n.starts_with(b"bpf") => FdKind::Bpf,
            _ => FdKind::AnonOther,
        }
    }

    /// Classify from `system.sockprotoname` (for sockets found in no table).
    pub fn from_sockprotoname(name: &[u8]) -> FdKind {
        match name {
            b"TCP" => FdKind::Tcp,
            b"TCPv6" => FdKind::Tcp6,
            b"UDP" | b"UDP-Lite" => FdKind::Udp,
            b"UDPv6" | b"UDPLITEv6" => FdKind::Udp6,
            b"RAW" | b"PING" => FdKind::Raw,
            b"RAWv6" | b"PINGv6" => FdKind::Raw6,
            b"NETLINK" => FdKind::Netlink,
            b"PACKET" => FdKind::Packet,
            n if n.starts_with(b"UNIX") => FdKind::Unix,
            _ => FdKind::SocketOther,
        }
    }
}

impl std::fmt::Display for FdKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for k in FdKind::ALL {
            assert_eq!(FdKind::from_name(k.name()), Some(k));
            assert!(seen.insert(k.name()));
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.name()));
        }
    }

    #[test]
    fn anon_inode_names() {
        let cases: &[(&[u8], FdKind)] = &[
            (b"[eventpoll]", FdKind::Eventpoll),
            (b"[eventfd]", FdKind::Eventfd),
            (b"[timerfd]", FdKind::Timerfd),
            (b"[signalfd]", FdKind::Signalfd),
            (b"inotify", FdKind::Inotify),
            (b"[fanotify]", FdKind::Fanotify),
            (b"[pidfd]", FdKind::Pidfd),
            (b"[io_uring]", FdKind::IoUring),
            (b"bpf-map", FdKind::Bpf),
            (b"bpf_link", FdKind::Bpf),
            (b"[userfaultfd]", FdKind::AnonOther),
        ];
        for (name, kind) in cases {
            assert_eq!(
                FdKind::from_anon_inode(name),
                *kind,
                "{}",
                String::from_utf8_lossy(name)
            );
        }
    }

    #[test]
    fn sockprotoname_names() {
        assert_eq!(FdKind::from_sockprotoname(b"UDP"), FdKind::Udp);
        assert_eq!(FdKind::from_sockprotoname(b"UDPv6"), FdKind::Udp6);
        assert_eq!(FdKind::from_sockprotoname(b"NETLINK"), FdKind::Netlink);
        assert_eq!(FdKind::from_sockprotoname(b"UNIX-STREAM"), FdKind::Unix);
        assert_eq!(FdKind::from_sockprotoname(b"TCPv6"), FdKind::Tcp6);
        assert_eq!(FdKind::from_sockprotoname(b"AF_VSOCK"), FdKind::SocketOther);
    }
}

//! The words and formats of `fdwatch ls`: a table of one row per fd, in
//! lsfd's and lsof's vocabulary (FD, TYPE, FLAGS as lsfd spells them, POS,
//! MNTID, INODE, NAME), fitted to a terminal's width, and the JSON document
//! of docs/ls.md. Formatting only, from a [`Listing`].
//!
//! Paths and socket names come from the target (anyone can name a file
//! with an escape sequence in it): every text from the listing goes through
//! [`escape`] before it reaches a terminal.

use serde::Serialize;

use crate::sample::listing::{FdEntry, Listing, SocketEntry};
use crate::sample::{Backend, FdKind};

/// Version of the `ls --json` document (docs/ls.md).
pub const LS_SCHEMA_VERSION: u32 = 1;

/// Control characters as visible escapes (`\n`, `\t`, `\x1b`, `\u{85}`) and
/// a backslash doubled, so that no name can move the cursor, change colours
/// or fake a row, and an escape in the output always means one.
pub fn escape(s: &str) -> String {
    super::escape::terminal(&s.replace('\\', "\\\\"))
}

/// The kernel's O_LARGEFILE bit, which it sets on every 64-bit open: the
/// libc crate spells it 0 for 64-bit glibc targets (user space never needs
/// to pass it), so it is written out per architecture here.
#[cfg(any(
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "powerpc64"
))]
const O_LARGEFILE: i32 = 0o400000;
#[cfg(not(any(
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "powerpc64"
)))]
const O_LARGEFILE: i32 = 0o100000;

/// Open flags by name, in lsfd's spelling (`rdwr,nonblock,cloexec`): the
/// access mode first, then the others in bit order.
pub fn flag_names(flags: u32) -> Vec<&'static str> {
    let flags = flags as i32;
    let mut out = vec![match flags & libc::O_ACCMODE {
        libc::O_RDONLY => "rdonly",
        libc::O_WRONLY => "wronly",
        _ => "rdwr",
    }];
    // O_SYNC includes O_DSYNC's bit: named once, as sync.
    let sync = flags & libc::O_SYNC == libc::O_SYNC;
    let named: [(i32, &str); 14] = [
        (libc::O_CREAT, "creat"),
        (libc::O_EXCL, "excl"),
        (libc::O_NOCTTY, "noctty"),
        (libc::O_TRUNC, "trunc"),
        (libc::O_APPEND, "append"),
        (libc::O_NONBLOCK, "nonblock"),
        (libc::O_DSYNC, "dsync"),
        (libc::O_ASYNC, "async"),
        (libc::O_DIRECT, "direct"),
        (O_LARGEFILE, "largefile"),
        (libc::O_DIRECTORY, "directory"),
        (libc::O_NOFOLLOW, "nofollow"),
        (libc::O_NOATIME, "noatime"),
        (libc::O_CLOEXEC, "cloexec"),
    ];
    for (bit, name) in named {
        if bit == libc::O_DSYNC && sync {
            continue;
        }
        if flags & bit != 0 {
            out.push(name);
        }
    }
    if sync {
        out.push("sync");
    }
    if flags & libc::O_PATH != 0 {
        out.push("path");
    }
    out
}

/// What the NAME column says of an fd: its path, or for a socket its
/// protocol, state and endpoints (lsof's `local->remote (STATE)` order).
pub fn name(e: &FdEntry) -> String {
    let raw = match &e.socket {
        Some(s) => socket_name(e, s),
        None if e.deleted && e.kind == FdKind::Deleted => format!("{} (deleted)", e.target),
        None => e.target.clone(),
    };
    escape(&raw)
}

fn socket_name(e: &FdEntry, s: &SocketEntry) -> String {
    let mut parts: Vec<String> = vec![s.protocol.clone()];
    if let Some(p) = &s.netlink_protocol {
        parts.push(p.clone());
    }
    if let Some(st) = &s.state {
        parts.push(st.clone());
    }
    match (&s.local, &s.remote) {
        (Some(l), Some(r)) => parts.push(format!("{l}->{r}")),
        (Some(l), None) => parts.push(l.clone()),
        _ => {}
    }
    if let Some(p) = &s.unix_path {
        parts.push(p.clone());
    }
    if let Some(peer) = s.peer_inode {
        parts.push(format!("peer={peer}"));
    }
    if parts.len() == 1 {
        // Nothing but the protocol: say which socket.
        parts.push(e.target.clone());
    }
    parts.join(" ")
}

/// The columns before NAME, in the order they give way on a narrow terminal
/// (last dropped first): FD and TYPE always stay.
const COLUMNS: [&str; 7] = ["FD", "TYPE", "FLAGS", "POS", "INODE", "MNTID", "NETNS"];

fn cell(e: &FdEntry, col: &str, proc_netns: Option<u64>) -> String {
    let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    match col {
        "FD" => e.fd.to_string(),
        "TYPE" => e.kind.name().to_string(),
        "FLAGS" => e.flags.map(|f| flag_names(f).join(",")).unwrap_or_default(),
        "POS" => opt(e.pos),
        "INODE" => opt(e.inode),
        "MNTID" => opt(e.mnt_id),
        // Sockets only: the namespace a socket lives in can differ from the
        // process's (a socket made before a setns).
        "NETNS" => opt(e
            .socket
            .as_ref()
            .and_then(|s| s.netns)
            .or(proc_netns.filter(|_| e.socket.is_some()))),
        _ => String::new(),
    }
}

/// The table: a header and one row per fd. `width` is the terminal's
/// (None off a terminal: nothing is cut). Columns give way from the right
/// (NETNS, MNTID, INODE, POS, FLAGS) until NAME has room for 24 characters;
/// a NAME still too long is cut with `…` at its end.
pub fn table(listing: &Listing, width: Option<usize>) -> Vec<String> {
    let rows: Vec<Vec<String>> = listing
        .fds
        .iter()
        .map(|e| COLUMNS.iter().map(|c| cell(e, c, listing.netns)).collect())
        .collect();
    let names: Vec<String> = listing.fds.iter().map(name).collect();
    let mut widths: Vec<usize> = COLUMNS
        .iter()
        .enumerate()
        .map(|(i, c)| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut shown = COLUMNS.len();
    let fixed =
        |shown: usize, widths: &[usize]| widths[..shown].iter().map(|w| w + 2).sum::<usize>();
    if let Some(w) = width {
        while shown > 2 && fixed(shown, &widths) + 24 > w {
            shown -= 1;
        }
    }
    widths.truncate(shown);
    let name_room = width.map(|w| w.saturating_sub(fixed(shown, &widths)).max(8));
    let line = |cells: &[String], name: &str| {
        let mut s = String::new();
        for (i, c) in cells.iter().take(shown).enumerate() {
            // Numbers right-aligned (FD, POS, INODE, MNTID, NETNS), words left.
            if matches!(COLUMNS[i], "TYPE" | "FLAGS") {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            } else {
                s.push_str(&format!("{c:>w$}  ", w = widths[i]));
            }
        }
        s.push_str(&cut(name, name_room));
        s.trim_end().to_string()
    };
    let header: Vec<String> = COLUMNS.iter().map(|c| c.to_string()).collect();
    let mut out = vec![line(&header, "NAME")];
    for (r, n) in rows.iter().zip(&names) {
        out.push(line(r, n));
    }
    out
}

fn cut(s: &str, room: Option<usize>) -> String {
    match room {
        Some(room) if s.chars().count() > room => {
            let mut t: String = s.chars().take(room.saturating_sub(1)).collect();
            t.push('…');
            t
        }
        _ => s.to_string(),
    }
}

/// The line above a table: whose fds, how many, from which backend.
pub fn title(listing: &Listing, shown: usize) -> String {
    let backend = match listing.backend {
        Backend::Bpf => "bpf",
        _ => "proc",
    };
    let mut s = format!(
        "pid {} ({}): {} fds",
        listing.pid,
        escape(&listing.comm),
        listing.fds.len()
    );
    if shown != listing.fds.len() {
        s.push_str(&format!(", {shown} shown"));
    }
    if let Some(ns) = listing.netns {
        s.push_str(&format!(", netns {ns}"));
    }
    if listing.vanished > 0 {
        s.push_str(&format!(", {} closed while listed", listing.vanished));
    }
    s.push_str(&format!(" [{backend}]"));
    s
}

/// One fd in the JSON document (docs/ls.md).
#[derive(Debug, Serialize)]
pub struct JsonFd<'a> {
    pub fd: i32,
    pub kind: FdKind,
    pub target: &'a str,
    pub deleted: bool,
    pub inode: Option<u64>,
    pub dev: Option<&'a str>,
    pub mnt_id: Option<u64>,
    /// lsfd's names (`["rdwr", "cloexec"]`).
    pub flags: Option<Vec<&'static str>>,
    /// The raw value, octal as in fdinfo (`"02000002"`).
    pub flags_octal: Option<String>,
    pub pos: Option<u64>,
    pub size: Option<u64>,
    pub socket: Option<&'a SocketEntry>,
}

/// The `ls --json` document of one process.
#[derive(Debug, Serialize)]
pub struct JsonListing<'a> {
    pub schema: u32,
    pub pid: i32,
    pub comm: &'a str,
    pub backend: Backend,
    pub netns: Option<u64>,
    /// fds of the process (before `--kind`).
    pub total: usize,
    pub vanished: u64,
    pub fds: Vec<JsonFd<'a>>,
}

/// The JSON document for `listing`, keeping the fds `keep` accepts.
pub fn json(listing: &Listing, keep: &dyn Fn(&FdEntry) -> bool) -> String {
    let doc = JsonListing {
        schema: LS_SCHEMA_VERSION,
        pid: listing.pid,
        comm: &listing.comm,
        backend: listing.backend,
        netns: listing.netns,
        total: listing.fds.len(),
        vanished: listing.vanished,
        fds: listing
            .fds
            .iter()
            .filter(|e| keep(e))
            .map(|e| JsonFd {
                fd: e.fd,
                kind: e.kind,
                target: &e.target,
                deleted: e.deleted,
                inode: e.inode,
                dev: e.dev.as_deref(),
                mnt_id: e.mnt_id,
                flags: e.flags.map(flag_names),
                flags_octal: e.flags.map(|f| format!("0{f:o}")),
                pos: e.pos,
                size: e.size,
                socket: e.socket.as_ref(),
            })
            .collect(),
    };
    serde_json::to_string(&doc).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd(n: i32, kind: FdKind, target: &str) -> FdEntry {
        FdEntry {
            fd: n,
            kind,
            target: target.into(),
            deleted: kind == FdKind::Deleted,
            inode: Some(1234),
            dev: Some("254:1".into()),
            mnt_id: Some(27),
            flags: Some(0o2100002),
            pos: Some(0),
            size: None,
            socket: None,
        }
    }

    fn listing(fds: Vec<FdEntry>) -> Listing {
        Listing {
            pid: 42,
            comm: "app\x1b[2J".into(),
            backend: Backend::Proc,
            netns: Some(4026531840),
            fds,
            vanished: 0,
        }
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        assert_eq!(escape("plain/path"), "plain/path");
        assert_eq!(escape("a\nb\tc\x1b[31m\\"), "a\\nb\\tc\\x1b[31m\\\\");
        assert_eq!(escape("x\u{85}y\u{7f}"), "x\\u{85}y\\x7f");
        let l = listing(vec![fd(
            3,
            FdKind::Deleted,
            "/tmp/evil\x1b]0;owned\x07\nfake row",
        )]);
        for line in table(&l, None).iter().chain([&title(&l, 1)]) {
            assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
        }
        assert!(table(&l, None)[1].ends_with("/tmp/evil\\x1b]0;owned\\x07\\nfake row (deleted)"));
    }

    #[test]
    fn flags_in_lsfd_spelling() {
        assert_eq!(flag_names(0o2000002), ["rdwr", "cloexec"]);
        assert_eq!(flag_names(0), ["rdonly"]);
        assert_eq!(flag_names(0o4101), ["wronly", "creat", "nonblock"]);
        assert_eq!(flag_names(0o104001), ["wronly", "nonblock", "largefile"]);
        assert_eq!(flag_names(0o4010001), ["wronly", "sync"]);
    }

    #[test]
    fn fits_the_width_by_dropping_columns_from_the_right() {
        let l = listing(vec![
            fd(0, FdKind::CharDevice, "/dev/null"),
            fd(
                7,
                FdKind::Regular,
                "/var/lib/a/very/long/path/that/goes/on/and/on/data.db",
            ),
        ]);
        let wide = table(&l, None);
        assert!(
            wide[0].starts_with("FD") && wide[0].contains("NETNS") && wide[0].ends_with("NAME")
        );
        assert!(wide[2].ends_with("data.db"));
        for w in [40, 60, 80, 100] {
            let t = table(&l, Some(w));
            for line in &t {
                assert!(line.chars().count() <= w, "{w}: {line:?}");
            }
            assert!(t[0].starts_with("FD") && t[0].contains("TYPE"));
        }
        assert!(table(&l, Some(60))[2].ends_with('…'));
    }

    #[test]
    fn sockets_read_like_lsof() {
        let mut e = fd(5, FdKind::Tcp, "socket:[99]");
        e.socket = Some(SocketEntry {
            protocol: "TCP".into(),
            state: Some("ESTABLISHED".into()),
            local: Some("127.0.0.1:5000".into()),
            remote: Some("127.0.0.1:8080".into()),
            ..SocketEntry::default()
        });
        assert_eq!(name(&e), "TCP ESTABLISHED 127.0.0.1:5000->127.0.0.1:8080");
        e.socket = Some(SocketEntry {
            protocol: "NETLINK".into(),
            ..SocketEntry::default()
        });
        assert_eq!(name(&e), "NETLINK socket:[99]");
        let json: serde_json::Value =
            serde_json::from_str(&json(&listing(vec![e]), &|_| true)).unwrap();
        assert_eq!(
            json["fds"][0]["flags"],
            serde_json::json!(["rdwr", "largefile", "cloexec"])
        );
        assert_eq!(json["fds"][0]["flags_octal"], "02100002");
        assert_eq!(json["fds"][0]["socket"]["protocol"], "NETLINK");
    }
}

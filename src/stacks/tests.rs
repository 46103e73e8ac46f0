//! Tables for the pure parts: which frames are the application's, fd kind
//! names, and grouping stacks into sites.

use super::*;

fn frame(name: &str, module: &str) -> Frame {
    Frame {
        addr: 0x1000,
        name: Some(name.into()),
        module: Some(module.into()),
        ..Frame::default()
    }
}

#[test]
fn application_frames() {
    let libc = "/usr/lib/x86_64-linux-gnu/libc.so.6";
    let c = [
        frame("socket", libc),
        frame("leak_here", "/tmp/t/leaky"),
        frame("worker", "/tmp/t/leaky"),
        frame("start_thread", libc),
    ];
    assert_eq!(app_frame(&c), Some(1));
    let rust = [
        frame("socket", libc),
        frame("std::sys::net::Socket::new", "/tmp/t/r"),
        frame("<std::net::UdpSocket>::bind", "/tmp/t/r"),
        frame("r::leak_here", "/tmp/t/r"),
    ];
    assert_eq!(app_frame(&rust), Some(3));
    let go = [
        frame("syscall.RawSyscall6", "/tmp/t/g"),
        frame("syscall.NetlinkRIB", "/tmp/t/g"),
        frame("net.interfaceAddrTable", "/tmp/t/g"),
        frame("net.InterfaceAddrs", "/tmp/t/g"),
        frame("main.churnHere", "/tmp/t/g"),
        frame("main.main", "/tmp/t/g"),
        frame("runtime.main", "/tmp/t/g"),
    ];
    assert_eq!(app_frame(&go), Some(4));
    let third_party = [
        frame("syscall.Socket", "/g"),
        frame("github.com/x/y.Dial", "/g"),
        frame("runtime.goexit", "/g"),
    ];
    assert_eq!(app_frame(&third_party), Some(1));
    // Only libc: no application frame (and none is made up).
    assert_eq!(
        app_frame(&[frame("socket", libc), frame("__libc_start_call_main", libc)]),
        None
    );
    // An unnamed frame is never the application's.
    let unnamed = Frame {
        addr: 1,
        module: Some("/tmp/t/x".into()),
        ..Frame::default()
    };
    assert_eq!(app_frame(&[frame("socket", libc), unnamed]), None);
}

#[test]
fn c_names_with_dots_are_not_go_packages() {
    assert!(!is_runtime_function("leak_here.part.0", false));
    assert!(is_runtime_function("net.InterfaceAddrs", true));
    assert!(!is_runtime_function("main.leak", true));
    assert!(is_runtime_function("internal/poll.(*FD).Init", true));
    assert!(!is_runtime_function("github.com/a/b.(*T).Open", true));
    assert!(is_system_module("/lib/x86_64-linux-gnu/libc.so.6"));
    assert!(is_system_module("[vdso]"));
    assert!(!is_system_module("/usr/bin/app"));
}

#[test]
fn kind_names() {
    let nr = |name: &str| {
        (0..512u32)
            .find(|n| bpf::syscall_name(*n) == Some(name))
            .unwrap()
    };
    assert_eq!(kind_name(nr("socket"), 16, 3, false), "netlink");
    assert_eq!(kind_name(nr("socket"), 2, 2, false), "udp");
    assert_eq!(kind_name(nr("socket"), 10, 1, true), "tcp6 (dup)");
    assert_eq!(kind_name(nr("openat"), 0, 0, false), "file");
    assert_eq!(kind_name(nr("pipe2"), 0, 0, false), "pipe");
    assert_eq!(kind_name(99_999, 0, 0, false), "?");
}

fn stack(frames: Vec<Frame>) -> Stack {
    Stack {
        frames,
        end: StackEnd::Complete,
    }
}

#[test]
fn sites_group_by_the_innermost_application_frame() {
    let libc = "/lib/libc.so.6";
    let app = "/tmp/app";
    let socket = (0..512u32)
        .find(|n| bpf::syscall_name(*n) == Some("socket"))
        .unwrap();
    let mut stacks = HashMap::new();
    // Two callers of leak_here: one site.
    stacks.insert(
        1,
        stack(vec![
            frame("socket", libc),
            frame("leak_here", app),
            frame("a", app),
        ]),
    );
    stacks.insert(
        2,
        stack(vec![
            frame("socket", libc),
            frame("leak_here", app),
            frame("b", app),
        ]),
    );
    stacks.insert(
        3,
        stack(vec![frame("socket", libc), frame("churn_here", app)]),
    );
    let rec = |fd, stack, time_ns| bpf::FdRecord {
        fd,
        stack,
        time_ns,
        nr: socket,
        family: 2,
        sock_type: 2,
        dup: false,
    };
    let mut raw = bpf::Raw {
        fds: vec![
            rec(3, 1, 1_000_000_000),
            rec(4, 2, 2_000_000_000),
            rec(5, 2, 3_000_000_000),
            rec(6, 0, 0),
        ],
        now_ns: 4_000_000_000,
        ..bpf::Raw::default()
    };
    let count = |opens, closes| bpf::SiteCount {
        opens,
        closes,
        nr: socket,
        family: 2,
        sock_type: 2,
    };
    raw.sites.insert(1, count(1, 0));
    raw.sites.insert(2, count(2, 0));
    raw.sites.insert(3, count(100, 100));
    let snap = aggregate(7, 10.0, false, &raw, &stacks, 0);
    assert_eq!(snap.leaks.len(), 1);
    let leak = &snap.leaks[0];
    assert_eq!(leak.function.as_deref(), Some("leak_here"));
    assert_eq!(leak.via.as_deref(), Some("socket"));
    assert_eq!((leak.open, leak.opens, leak.closes), (3, 3, 0));
    assert_eq!(leak.kinds.get("udp"), Some(&3));
    // The most common stack of the group is shown.
    assert_eq!(leak.frames[2].name.as_deref(), Some("b"));
    assert_eq!((leak.oldest_s, leak.newest_s), (3.0, 1.0));
    assert_eq!(snap.unrecorded, 1);
    assert_eq!(snap.churn[0].function.as_deref(), Some("churn_here"));
    assert_eq!(snap.churn[0].opens, 100);
    assert_eq!(snap.churn[0].closed_share(), 1.0);
    assert_eq!(snap.churn[0].opens_per_s, 10.0);
    assert_eq!(snap.churn[1].function.as_deref(), Some("leak_here"));
    assert_eq!(snap.churn[1].opens, 3);
}

//! The bundled workload generator: a process that holds, leaks and churns
//! known numbers of fds of known kinds. `fdwatch demo` watches it, and the
//! integration tests assert what fdwatch reports about it.
//!
//! It reports on stdout, one line each: `ready <pid>` once its initial fds are
//! open, `emfile <fds>` the first time an open fails with EMFILE, and
//! `done <json>` with its exact counts when `churn_for` has elapsed. It then
//! stays alive (holding its fds) until killed or its stdin closes.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Kinds the generator can open. Each `open` makes `fds_per_op` fds that stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum OpenKind {
    File,
    SameFile,
    Deleted,
    Dir,
    Pipe,
    Socketpair,
    TcpListen,
    Tcp,
    CloseWait,
    Udp,
    UdpUnbound,
    Netlink,
    NetlinkUnbound,
    Eventfd,
    Epoll,
    Timerfd,
    Inotify,
}

impl OpenKind {
    pub fn name(self) -> &'static str {
        match self {
            OpenKind::File => "file",
            OpenKind::SameFile => "same-file",
            OpenKind::Deleted => "deleted",
            OpenKind::Dir => "dir",
            OpenKind::Pipe => "pipe",
            OpenKind::Socketpair => "socketpair",
            OpenKind::TcpListen => "tcp-listen",
            OpenKind::Tcp => "tcp",
            OpenKind::CloseWait => "close-wait",
            OpenKind::Udp => "udp",
            OpenKind::UdpUnbound => "udp-unbound",
            OpenKind::Netlink => "netlink",
            OpenKind::NetlinkUnbound => "netlink-unbound",
            OpenKind::Eventfd => "eventfd",
            OpenKind::Epoll => "epoll",
            OpenKind::Timerfd => "timerfd",
            OpenKind::Inotify => "inotify",
        }
    }
}

/// `KIND:N` (hold N) or `KIND:RATE` (per second), as given on the command line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KindCount {
    pub kind: OpenKind,
    pub n: f64,
}

impl std::str::FromStr for KindCount {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        use clap::ValueEnum;
        let (k, n) = s
            .split_once(':')
            .ok_or_else(|| format!("expected KIND:N, got '{s}'"))?;
        let kind = OpenKind::from_str(k, true).map_err(|_| format!("unknown kind '{k}'"))?;
        let n: f64 = n.parse().map_err(|_| format!("'{n}' is not a number"))?;
        if !(n.is_finite() && n >= 0.0) {
            return Err(format!("'{n}' must be a non-negative number"));
        }
        Ok(KindCount { kind, n })
    }
}

#[derive(Debug, Clone, Default)]
pub struct WorkloadSpec {
    /// Lower the soft RLIMIT_NOFILE to this first.
    pub soft_limit: Option<u64>,
    /// Open and hold these at start (N operations each).
    pub hold: Vec<KindCount>,
    /// Open and keep this many per second.
    pub leak: Vec<KindCount>,
    /// Open and close this many per second, spread over `threads`.
    pub churn: Vec<KindCount>,
    /// Pools: open up to a peak over a period, then close them all, again and again.
    pub sawtooth: Vec<Sawtooth>,
    pub threads: usize,
    /// Churn threads started after `late_after`, to test late-thread tracking.
    pub late_threads: usize,
    pub late_after: Duration,
    /// Wait this long after `ready` before leaking/churning.
    pub start_after: Duration,
    /// Stop leaking/churning after this long and print `done`.
    pub churn_for: Option<Duration>,
    /// Exit after this long (default: until killed or stdin closes).
    pub exit_after: Option<Duration>,
    /// Do not stop when stdin closes.
    pub ignore_stdin: bool,
}

/// `KIND:PEAK:PERIOD`: a pool that fills to PEAK fds over PERIOD, then is released.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sawtooth {
    pub kind: OpenKind,
    pub peak: u64,
    pub period: Duration,
}

impl std::str::FromStr for Sawtooth {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.splitn(3, ':');
        let (Some(k), Some(peak), Some(period)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("expected KIND:PEAK:PERIOD, got '{s}'"));
        };
        let kc: KindCount = format!("{k}:{peak}").parse()?;
        let period = humantime::parse_duration(period).map_err(|e| format!("'{period}': {e}"))?;
        if kc.n < 1.0 || period.is_zero() {
            return Err("a sawtooth needs PEAK >= 1 and a PERIOD > 0".into());
        }
        Ok(Sawtooth {
            kind: kc.kind,
            peak: kc.n as u64,
            period,
        })
    }
}

/// Counts of what the generator did, exact (atomics bumped per syscall).
#[derive(Default)]
struct Counters {
    opened: Mutex<BTreeMap<&'static str, u64>>,
    socket_calls: AtomicU64,
    netlink_socket_calls: AtomicU64,
    close_calls: AtomicU64,
}

fn out(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

/// Run the workload until killed, stdin closes or `exit_after`.
pub fn run(spec: &WorkloadSpec) -> anyhow::Result<()> {
    // A name of its own, so the screen reads "pid N (leaky-workload)".
    let _ = nix::sys::prctl::set_name(c"leaky-workload");
    if let Some(soft) = spec.soft_limit {
        let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)?;
        nix::sys::resource::setrlimit(
            nix::sys::resource::Resource::RLIMIT_NOFILE,
            soft.min(hard),
            hard,
        )?;
    }
    let state = Arc::new(Opener::new()?);
    let counters = Arc::new(Counters::default());
    let emfile = Arc::new(AtomicBool::new(false));
    for hc in &spec.hold {
        for _ in 0..hc.n as u64 {
            if let Err(e) = state.open(hc.kind, &counters) {
                anyhow::bail!("opening {}: {e}", hc.kind.name());
            }
        }
    }
    out(&format!("ready {}", std::process::id()));

    let stop = Arc::new(AtomicBool::new(false));
    // stdin closing (the parent went away) ends the workload.
    if !spec.ignore_stdin {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            loop {
                match nix::unistd::read(0, &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            stop.store(true, Ordering::SeqCst);
        });
    }
    std::thread::sleep(spec.start_after);
    let started = Instant::now();
    let churning = Arc::new(AtomicBool::new(true));
    let mut handles = Vec::new();
    let threads = spec.threads.max(1);
    let spawn_churn = |delay: Duration, share: f64| {
        let (state, counters, churning, churn) = (
            state.clone(),
            counters.clone(),
            churning.clone(),
            spec.churn.clone(),
        );
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            paced(&churning, &churn, share, |kind| {
                if let Ok(fds) = state.open_fds(kind, &counters) {
                    for fd in fds {
                        close_counted(fd, &counters);
                    }
                }
            });
        })
    };
    if !spec.churn.is_empty() {
        let total_threads = threads + spec.late_threads;
        for _ in 0..threads {
            handles.push(spawn_churn(Duration::ZERO, 1.0 / total_threads as f64));
        }
        for _ in 0..spec.late_threads {
            handles.push(spawn_churn(spec.late_after, 1.0 / total_threads as f64));
        }
    }
    for saw in spec.sawtooth.clone() {
        let (state, counters, churning) = (state.clone(), counters.clone(), churning.clone());
        handles.push(std::thread::spawn(move || {
            let step = saw.period / saw.peak as u32;
            let mut pool: Vec<RawFd> = Vec::new();
            while churning.load(Ordering::SeqCst) {
                if pool.len() as u64 >= saw.peak {
                    for fd in pool.drain(..) {
                        close_counted(fd, &counters);
                    }
                } else if let Ok(fds) = state.open_fds(saw.kind, &counters) {
                    pool.extend(fds);
                }
                std::thread::sleep(step);
            }
        }));
    }
    if !spec.leak.is_empty() {
        let (state, counters, churning, leak, emfile) = (
            state.clone(),
            counters.clone(),
            churning.clone(),
            spec.leak.clone(),
            emfile.clone(),
        );
        handles.push(std::thread::spawn(move || {
            paced(&churning, &leak, 1.0, |kind| {
                if let Err(e) = state.open(kind, &counters) {
                    if e.raw_os_error() == Some(libc::EMFILE)
                        && !emfile.swap(true, Ordering::SeqCst)
                    {
                        // stat, not readdir: no fd is free to open the directory.
                        let n = std::fs::metadata("/proc/self/fd")
                            .map(|m| m.len())
                            .unwrap_or(0);
                        out(&format!("emfile {n}"));
                        eprintln!(
                            "workload: open {}: too many open files (EMFILE) at {n} fds",
                            kind.name()
                        );
                    }
                }
            });
        }));
    }
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let elapsed = started.elapsed();
        if churning.load(Ordering::SeqCst) && spec.churn_for.is_some_and(|d| elapsed >= d) {
            churning.store(false, Ordering::SeqCst);
            for h in handles.drain(..) {
                let _ = h.join();
            }
            let opened = counters
                .opened
                .lock()
                .map(|m| m.clone())
                .unwrap_or_default();
            let report = serde_json::json!({
                "opened": opened,
                "socket_calls": counters.socket_calls.load(Ordering::SeqCst),
                "netlink_socket_calls": counters.netlink_socket_calls.load(Ordering::SeqCst),
                "close_calls": counters.close_calls.load(Ordering::SeqCst),
                "seconds": elapsed.as_secs_f64(),
            });
            out(&format!("done {report}"));
        }
        if stop.load(Ordering::SeqCst) || spec.exit_after.is_some_and(|d| elapsed >= d) {
            return Ok(());
        }
    }
}

/// Call `op(kind)` at the given rates (times `share`), until `running` clears.
fn paced(running: &AtomicBool, rates: &[KindCount], share: f64, mut op: impl FnMut(OpenKind)) {
    let start = Instant::now();
    let mut done = vec![0u64; rates.len()];
    while running.load(Ordering::SeqCst) {
        let secs = start.elapsed().as_secs_f64();
        let mut behind = false;
        for (i, rc) in rates.iter().enumerate() {
            let due = (rc.n * share * secs) as u64;
            while done[i] < due && running.load(Ordering::SeqCst) {
                op(rc.kind);
                done[i] += 1;
                behind = true;
            }
        }
        if !behind {
            std::thread::sleep(Duration::from_micros(500));
        }
    }
}

fn close_counted(fd: RawFd, counters: &Counters) {
    unsafe { libc::close(fd) };
    counters.close_calls.fetch_add(1, Ordering::Relaxed);
}

/// Shared state for opening: a temp dir, the same-file target, a TCP listener.
struct Opener {
    dir: std::path::PathBuf,
    seq: AtomicU64,
    listener: std::sync::OnceLock<(RawFd, u16)>,
}

impl Drop for Opener {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn check(rc: libc::c_int) -> std::io::Result<libc::c_int> {
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

impl Opener {
    fn new() -> std::io::Result<Self> {
        // A directory of its own: one left behind by a killed workload whose
        // pid this one reuses (perhaps another user's) must not be shared.
        let base = std::env::temp_dir();
        let mut attempt = 0u32;
        let dir = loop {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let dir = base.join(format!(
                "fdwatch-workload-{}-{nanos:x}{attempt}",
                std::process::id()
            ));
            match std::fs::create_dir(&dir) {
                Ok(()) => break dir,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 100 => {
                    attempt += 1
                }
                Err(e) => return Err(e),
            }
        };
        std::fs::write(dir.join("same"), b"same file\n")?;
        Ok(Opener {
            dir,
            seq: AtomicU64::new(0),
            listener: std::sync::OnceLock::new(),
        })
    }

    /// Open one operation's worth of `kind` and keep it.
    fn open(&self, kind: OpenKind, counters: &Counters) -> std::io::Result<()> {
        self.open_fds(kind, counters).map(drop)
    }

    /// The loopback listener that `tcp` and `close-wait` connect to, made on
    /// first use so that other workloads hold no TCP socket.
    fn listener(&self) -> std::io::Result<(RawFd, u16)> {
        if let Some(l) = self.listener.get() {
            return Ok(*l);
        }
        let l = tcp_listener()?;
        match self.listener.set(l) {
            Ok(()) => Ok(l),
            Err(_) => {
                unsafe { libc::close(l.0) };
                self.listener
                    .get()
                    .copied()
                    .ok_or_else(|| std::io::Error::other("listener"))
            }
        }
    }

    /// Returns the fds that stay open for this operation.
    fn open_fds(&self, kind: OpenKind, counters: &Counters) -> std::io::Result<Vec<RawFd>> {
        let cloexec = libc::O_CLOEXEC;
        let fds = match kind {
            OpenKind::File | OpenKind::Deleted => {
                let n = self.seq.fetch_add(1, Ordering::Relaxed);
                let path = self.dir.join(format!("file {n}"));
                let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
                    .map_err(std::io::Error::other)?;
                let fd = check(unsafe {
                    libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CREAT | cloexec, 0o600)
                })?;
                if kind == OpenKind::Deleted {
                    check(unsafe {
                        libc::write(fd, [7u8; 4096].as_ptr().cast(), 4096) as libc::c_int
                    })?;
                    check(unsafe { libc::unlink(c.as_ptr()) })?;
                }
                vec![fd]
            }
            OpenKind::SameFile => vec![open_path(&self.dir.join("same"), libc::O_RDONLY)?],
            OpenKind::Dir => vec![open_path(&self.dir, libc::O_RDONLY | libc::O_DIRECTORY)?],
            OpenKind::Pipe => {
                let mut p = [0; 2];
                check(unsafe { libc::pipe2(p.as_mut_ptr(), cloexec) })?;
                p.to_vec()
            }
            OpenKind::Socketpair => {
                let mut p = [0; 2];
                check(unsafe {
                    libc::socketpair(
                        libc::AF_UNIX,
                        libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                        0,
                        p.as_mut_ptr(),
                    )
                })?;
                counters.socket_calls.fetch_add(1, Ordering::Relaxed);
                p.to_vec()
            }
            OpenKind::TcpListen => vec![tcp_listener()?.0],
            OpenKind::Tcp | OpenKind::CloseWait => {
                let (listener, port) = self.listener()?;
                let client = socket(libc::AF_INET, libc::SOCK_STREAM, 0, counters)?;
                let addr = sockaddr_in_loopback(port);
                let rc = unsafe {
                    libc::connect(
                        client,
                        (&addr as *const libc::sockaddr_in).cast(),
                        std::mem::size_of::<libc::sockaddr_in>() as u32,
                    )
                };
                if rc < 0 {
                    let e = std::io::Error::last_os_error();
                    unsafe { libc::close(client) };
                    return Err(e);
                }
                let server = check(unsafe {
                    libc::accept4(
                        listener,
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                        libc::SOCK_CLOEXEC,
                    )
                })?;
                if kind == OpenKind::CloseWait {
                    // The peer closes: the client side sits in CLOSE_WAIT until we close it.
                    close_counted(server, counters);
                    vec![client]
                } else {
                    vec![client, server]
                }
            }
            OpenKind::Udp | OpenKind::UdpUnbound => {
                let fd = socket(libc::AF_INET, libc::SOCK_DGRAM, 0, counters)?;
                if kind == OpenKind::Udp {
                    let addr = sockaddr_in_loopback(0);
                    check(unsafe {
                        libc::bind(
                            fd,
                            (&addr as *const libc::sockaddr_in).cast(),
                            std::mem::size_of::<libc::sockaddr_in>() as u32,
                        )
                    })?;
                }
                vec![fd]
            }
            OpenKind::Netlink | OpenKind::NetlinkUnbound => {
                // What Go's net.InterfaceAddrs does per dump: socket + bind (autobind).
                let fd = socket(
                    libc::AF_NETLINK,
                    libc::SOCK_RAW,
                    libc::NETLINK_ROUTE,
                    counters,
                )?;
                counters
                    .netlink_socket_calls
                    .fetch_add(1, Ordering::Relaxed);
                if kind == OpenKind::Netlink {
                    let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
                    sa.nl_family = libc::AF_NETLINK as u16;
                    check(unsafe {
                        libc::bind(
                            fd,
                            (&sa as *const libc::sockaddr_nl).cast(),
                            std::mem::size_of::<libc::sockaddr_nl>() as u32,
                        )
                    })?;
                }
                vec![fd]
            }
            OpenKind::Eventfd => vec![check(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) })?],
            OpenKind::Epoll => vec![check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?],
            OpenKind::Timerfd => vec![check(unsafe {
                libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_CLOEXEC)
            })?],
            OpenKind::Inotify => vec![check(unsafe { libc::inotify_init1(libc::IN_CLOEXEC) })?],
        };
        if let Ok(mut m) = counters.opened.lock() {
            *m.entry(kind.name()).or_default() += 1;
        }
        Ok(fds)
    }
}

fn socket(domain: i32, ty: i32, proto: i32, counters: &Counters) -> std::io::Result<RawFd> {
    let fd = check(unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) })?;
    counters.socket_calls.fetch_add(1, Ordering::Relaxed);
    Ok(fd)
}

fn open_path(path: &std::path::Path, flags: i32) -> std::io::Result<RawFd> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(std::io::Error::other)?;
    check(unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) })
}

fn sockaddr_in_loopback(port: u16) -> libc::sockaddr_in {
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sa.sin_family = libc::AF_INET as u16;
    sa.sin_port = port.to_be();
    sa.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
    sa
}

fn tcp_listener() -> std::io::Result<(RawFd, u16)> {
    let fd =
        check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    let addr = sockaddr_in_loopback(0);
    let len = std::mem::size_of::<libc::sockaddr_in>() as u32;
    check(unsafe { libc::bind(fd, (&addr as *const libc::sockaddr_in).cast(), len) })?;
    check(unsafe { libc::listen(fd, 4096) })?;
    let mut bound: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut blen = len;
    check(unsafe {
        libc::getsockname(fd, (&mut bound as *mut libc::sockaddr_in).cast(), &mut blen)
    })?;
    Ok((fd, u16::from_be(bound.sin_port)))
}

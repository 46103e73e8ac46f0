//! `fdwatch serve`: a Prometheus exporter that never harms its host and
//! keeps answering its scraper while other clients flood it.
//!
//! Two threads. The sampler refreshes a [`Host`] every `--interval`, renders
//! the `/metrics` response once (with the exporter's own process and HTTP
//! metrics as of that moment) and publishes it; a failed refresh keeps the
//! last good snapshot and counts the failure. The server thread hands the
//! published bytes to each scrape: a scrape never reads /proc nor renders, so
//! a flood of scrapes costs copies into sockets, not work per process.
//!
//! The server is one `poll(2)` loop over non-blocking sockets rather than an
//! HTTP crate: it serves two GET paths and closes every connection after its
//! answer, and what matters is the bound on what clients can make it hold
//! and who gets served when there are too many. docs/top-serve.md describes
//! the behaviour; in short:
//!
//! - The listener has a large backlog ([`BACKLOG`]) and `TCP_DEFER_ACCEPT`:
//!   the kernel hands over a connection once its request has arrived, so
//!   clients that connect and say nothing do not reach the loop at all for
//!   a while, and a scrape usually arrives with its request readable.
//! - A connection whose request is complete at accept and whose answer fits
//!   the socket is served at once and holds no slot. The others hold one of
//!   [`MAX_CONNECTIONS`] slots, at most [`MAX_PER_SOURCE`] per client
//!   address, with [`REQUEST_TIMEOUT`] to send the request head (at most
//!   [`MAX_REQUEST`] bytes) and [`WRITE_TIMEOUT`] to take the answer.
//! - When no slot is free, a complete request takes the slot of the oldest
//!   connection still waiting for its request (from the busiest address), and
//!   a waiting connection from an address with fewer slots than the busiest
//!   takes one of the busiest's; whoever cannot be admitted is answered `503
//!   Service Unavailable` with `Retry-After` right away, never dropped.
//! - Every answer ends with a lingering close (shutdown for writing, then
//!   reading until the client closes, at most [`LINGER`]): closing a socket
//!   with unread input sends a reset, and a reset can destroy the answer
//!   before the client reads it. `SO_LINGER` is not used because it makes
//!   `close` block the only thread.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::signals;
use crate::host::{Host, HostOptions, Selector, Snapshot};
use crate::report::prometheus::{
    self, BuildInfo, ExporterMetrics, HttpMetrics, Options, Series, SystemMetrics,
};
use crate::sample::ProcRoot;

/// Connections held at once (being read or answered).
pub const MAX_CONNECTIONS: usize = 512;
/// ... of which one client address may hold this many.
pub const MAX_PER_SOURCE: usize = 64;
/// Answered connections kept open until the client closes (lingering).
pub const MAX_LINGERING: usize = 1024;
/// Time a connection gets to send its request head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a connection gets to take its answer.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest lingering close.
pub const LINGER: Duration = Duration::from_secs(2);
/// Largest request head accepted.
pub const MAX_REQUEST: usize = 8 * 1024;
/// Listen backlog asked for (the kernel caps it at `net.core.somaxconn`).
pub const BACKLOG: i32 = 4096;
/// Seconds a `503` asks the client to wait.
pub const RETRY_AFTER_SECONDS: u64 = 1;
/// Connections accepted per round of the loop, so that a flood of new
/// connections cannot starve the ones being answered.
const ACCEPT_BATCH: usize = 256;
/// `TCP_DEFER_ACCEPT`: seconds a silent connection waits in the kernel.
const DEFER_ACCEPT_SECONDS: libc::c_int = 1;

pub struct ServeOptions {
    pub listen: String,
    pub selector: Selector,
    pub top: usize,
    pub interval: Duration,
    pub classify: usize,
    pub thresholds: crate::diagnose::Thresholds,
    /// `--stacks`: site series for the processes selected by pid.
    pub stacks: bool,
}

/// Where `--listen` asks to listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// `:PORT`: every address, IPv6 and IPv4 (the exporter convention).
    Any(u16),
    /// `HOST:PORT` or `[IPv6]:PORT`: the addresses it resolves to, first that binds.
    Addrs(Vec<SocketAddr>),
}

/// Parse `--listen`: `:PORT`, `HOST:PORT`, `IPv4:PORT` or `[IPv6]:PORT`.
pub fn parse_listen(s: &str) -> Result<Listen, String> {
    let bad = || format!("invalid --listen {s:?}: expected :PORT, HOST:PORT or [IPv6]:PORT");
    if let Some(port) = s.strip_prefix(':') {
        return port.parse().map(Listen::Any).map_err(|_| bad());
    }
    let addrs: Vec<SocketAddr> = s.to_socket_addrs().map_err(|_| bad())?.collect();
    if addrs.is_empty() {
        return Err(bad());
    }
    Ok(Listen::Addrs(addrs))
}

/// HTTP status codes counted (everything the server answers).
const CODES: [u16; 7] = [200, 400, 404, 405, 408, 431, 503];
/// Why a connection was turned away with 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reject {
    Capacity,
    PerSource,
    Displaced,
}
const REJECT_NAMES: [&str; 3] = ["capacity", "per_source", "displaced"];
/// Upper bounds of the `GET /metrics` duration histogram, seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// What the server counts, read by the sampler when it renders.
#[derive(Default)]
struct HttpStats {
    requests: [AtomicU64; CODES.len()],
    rejected: [AtomicU64; REJECT_NAMES.len()],
    open: AtomicU64,
    /// Non-cumulative counts per bucket (the last: above every bound).
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl HttpStats {
    fn answered(&self, code: u16) {
        if let Some(i) = CODES.iter().position(|c| *c == code) {
            self.requests[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn rejected(&self, why: Reject) {
        self.rejected[why as usize].fetch_add(1, Ordering::Relaxed);
        self.answered(503);
    }

    fn scrape_took(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn snapshot(&self) -> HttpMetrics {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut cumulative = 0;
        let duration_buckets = BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(le, n)| {
                cumulative += load(n);
                (*le, cumulative)
            })
            .collect();
        let duration_count = self.buckets.iter().map(load).sum();
        HttpMetrics {
            requests: CODES
                .iter()
                .zip(&self.requests)
                .map(|(c, n)| (*c, load(n)))
                .collect(),
            rejected: REJECT_NAMES
                .iter()
                .zip(&self.rejected)
                .map(|(r, n)| (*r, load(n)))
                .collect(),
            open_connections: load(&self.open),
            duration_buckets,
            duration_sum: load(&self.sum_nanos) as f64 * 1e-9,
            duration_count,
        }
    }
}

/// The `GET /metrics` response, rendered once per refresh.
struct Page {
    bytes: Vec<u8>,
    /// Length of the status line and headers (a HEAD's answer).
    head_len: usize,
}

/// What the sampler publishes for the server.
struct Shared {
    page: Mutex<Arc<Page>>,
    http: HttpStats,
}

impl Shared {
    fn page(&self) -> Arc<Page> {
        match self.page.lock() {
            Ok(p) => Arc::clone(&p),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }
}

pub fn run(root: ProcRoot, opts: ServeOptions) -> anyhow::Result<()> {
    signals::install();
    let listen = parse_listen(&opts.listen).map_err(anyhow::Error::msg)?;
    let listener = bind(&listen).with_context(|| format!("listening on {}", opts.listen))?;
    let addr = listener.local_addr()?;
    let host_opts = HostOptions {
        thresholds: opts.thresholds,
        classify: opts.classify,
        top_by_usage: Some(opts.top),
        stacks: opts.stacks,
    };
    let shared = Arc::new(Shared {
        page: Mutex::new(Arc::new(Page {
            bytes: Vec::new(),
            head_len: 0,
        })),
        http: HttpStats::default(),
    });
    // A page before the first refresh: the exporter's own metrics.
    publish(&shared, &root, None, 0);
    let sampler_shared = Arc::clone(&shared);
    let selector = opts.selector.clone();
    let interval = opts.interval;
    std::thread::Builder::new()
        .name("sampler".into())
        // The host is made on its thread: a session's stack symbolizer
        // (blazesym) is not Send, and only this thread uses it.
        .spawn(move || {
            let mut host = Host::new(root.clone(), selector, host_opts);
            sampler(&mut host, &root, &sampler_shared, interval)
        })
        .context("starting the sampler thread")?;
    // Tests and scripts read the bound address (useful with port 0).
    println!("listening on http://{addr}/metrics");
    let _ = std::io::stdout().flush();
    Server::new(&shared).run(&listener)
}

/// A listening socket with the backlog and options above (std's `bind`
/// gives a backlog of 128 and no way to set options first).
fn bind(listen: &Listen) -> anyhow::Result<TcpListener> {
    match listen {
        Listen::Any(port) => {
            let v6 = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, *port));
            match listen_on(v6, true) {
                Ok(l) => Ok(l),
                // No IPv6 on this host: IPv4 alone.
                Err(nix::errno::Errno::EAFNOSUPPORT | nix::errno::Errno::EADDRNOTAVAIL) => {
                    let v4 = SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, *port));
                    Ok(listen_on(v4, false)?)
                }
                Err(e) => Err(e.into()),
            }
        }
        Listen::Addrs(addrs) => {
            let mut last = None;
            for a in addrs {
                match listen_on(*a, false) {
                    Ok(l) => return Ok(l),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.map_or_else(|| anyhow::anyhow!("no address"), Into::into))
        }
    }
}

fn listen_on(addr: SocketAddr, dual_stack: bool) -> Result<TcpListener, nix::errno::Errno> {
    use nix::sys::socket::{setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType};
    let family = if addr.is_ipv6() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let fd = socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    if dual_stack {
        setsockopt(&fd, sockopt::Ipv6V6Only, &false)?;
    }
    nix::sys::socket::bind(
        fd.as_raw_fd(),
        &nix::sys::socket::SockaddrStorage::from(addr),
    )?;
    // SAFETY: plain integer option on a socket we own; a failure only
    // loses the optimisation (silent clients are then accepted at once).
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&DEFER_ACCEPT_SECONDS as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    // SAFETY: listen on a socket we own.
    nix::errno::Errno::result(unsafe { libc::listen(fd.as_raw_fd(), BACKLOG) })?;
    Ok(TcpListener::from(fd))
}

fn sampler(host: &mut Host, root: &ProcRoot, shared: &Shared, interval: Duration) {
    // Say it once per distinct failure, not once per refresh.
    let mut said: Option<String> = None;
    let mut last: Option<Snapshot> = None;
    loop {
        let started = Instant::now();
        match host.refresh() {
            Ok(snap) => {
                said = None;
                last = Some(snap);
            }
            Err(e) => {
                let msg = e.to_string();
                if said.as_deref() != Some(msg.as_str()) {
                    eprintln!("fdwatch: refresh failed (serving the last good one): {msg}");
                    said = Some(msg);
                }
            }
        }
        for note in host.take_notes() {
            eprintln!("fdwatch: {}", crate::report::escape::terminal(&note));
        }
        publish(shared, root, last.as_ref(), host.errors_total());
        if !signals::sleep(interval.saturating_sub(started.elapsed())) {
            return;
        }
    }
}

/// Render the `/metrics` response once and publish it.
fn publish(shared: &Shared, root: &ProcRoot, snap: Option<&Snapshot>, errors_total: u64) {
    let body = metrics(shared, root, snap, errors_total);
    let mut bytes = head(
        200,
        "text/plain; version=0.0.4; charset=utf-8",
        body.len(),
        &[],
    );
    let head_len = bytes.len();
    bytes.extend_from_slice(body.as_bytes());
    let page = Arc::new(Page { bytes, head_len });
    match shared.page.lock() {
        Ok(mut p) => *p = page,
        Err(poisoned) => *poisoned.into_inner() = page,
    }
}

/// The exposition text of a snapshot.
fn metrics(shared: &Shared, root: &ProcRoot, snap: Option<&Snapshot>, errors_total: u64) -> String {
    let build = BuildInfo {
        version: env!("CARGO_PKG_VERSION").into(),
        revision: option_env!("FDWATCH_REVISION").map(str::to_string),
        rustc: option_env!("FDWATCH_RUSTC").map(str::to_string),
    };
    let mut opts = Options {
        start_time_label: true,
        workload_labels: true,
        build: Some(build),
        http: Some(shared.http.snapshot()),
        own: crate::sample::own::read(root).ok(),
        exporter: Some(ExporterMetrics {
            errors_total,
            ..Default::default()
        }),
        ..Default::default()
    };
    let Some(snap) = snap else {
        return prometheus::render_with(&[], &opts);
    };
    opts.system = snap.system.as_ref().map(|s| SystemMetrics {
        files: crate::sample::SystemFiles {
            allocated: s.allocated,
            unused: 0,
            max: s.max,
            nr_open: s.nr_open,
        },
        growth_per_second: s.slope_per_s,
        exhaustion_seconds: s.eta_seconds,
    });
    opts.exporter = Some(ExporterMetrics {
        processes: snap.processes,
        unreadable: snap.unreadable,
        refresh_seconds: snap.refresh_seconds,
        last_refresh_unix: snap.unix_time,
        errors_total,
    });
    let series: Vec<Series> = snap
        .rows
        .iter()
        .map(|r| Series {
            sample: &r.sample,
            verdict: &r.verdict,
            workload: Some(&r.workload),
            stacks: r.stacks.as_ref(),
        })
        .collect();
    prometheus::render_with(&series, &opts)
}

/// Bytes to send: an answer of its own, or (a share of) the published page.
enum Out {
    Owned(Vec<u8>),
    Page(Arc<Page>, usize),
}

impl Out {
    fn bytes(&self) -> &[u8] {
        match self {
            Out::Owned(v) => v,
            Out::Page(p, n) => &p.bytes[..(*n).min(p.bytes.len())],
        }
    }
}

/// An answer about to be written.
struct Answer {
    code: u16,
    out: Out,
    /// A GET /metrics (timed for the duration histogram).
    scrape: bool,
}

enum Phase {
    /// Reading the request head.
    Request(Vec<u8>),
    /// Writing the answer; `written` bytes are out.
    Respond { answer: Answer, written: usize },
}

/// A connection holding a slot.
struct Conn {
    stream: TcpStream,
    source: IpAddr,
    accepted: Instant,
    deadline: Instant,
    phase: Phase,
}

/// An answered connection, shut down for writing, read until the client
/// closes (so that the answer is not destroyed by a reset).
struct Lingering {
    stream: TcpStream,
    deadline: Instant,
}

/// What reading the request found.
enum Got {
    /// The head is complete: the answer.
    Done(Answer),
    /// More to come.
    Partial,
    /// The client closed or the socket failed.
    Gone,
}

/// What writing found.
enum Wrote {
    All,
    Partial,
    Failed,
}

struct Server<'a> {
    shared: &'a Shared,
    conns: Vec<Conn>,
    lingering: Vec<Lingering>,
    /// Slots held per client address.
    per_source: HashMap<IpAddr, usize>,
    /// Accepting is paused until then (out of fds: the listener stays
    /// readable, and accepting again at once would spin).
    accept_paused: Option<Instant>,
}

impl<'a> Server<'a> {
    fn new(shared: &'a Shared) -> Self {
        Server {
            shared,
            conns: Vec::new(),
            lingering: Vec::new(),
            per_source: HashMap::new(),
            accept_paused: None,
        }
    }

    fn run(&mut self, listener: &TcpListener) -> anyhow::Result<()> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        while !signals::stop_requested() {
            let now = Instant::now();
            if self.accept_paused.is_some_and(|t| t <= now) {
                self.accept_paused = None;
            }
            let nearest = self
                .conns
                .iter()
                .map(|c| c.deadline)
                .chain(self.lingering.iter().map(|l| l.deadline))
                .chain(self.accept_paused)
                .min();
            // Half a second at most: a stop signal landing on the sampler
            // thread does not interrupt this poll.
            let wait = nearest
                .map_or(Duration::from_millis(500), |d| {
                    d.saturating_duration_since(now)
                })
                .min(Duration::from_millis(500));
            let (listen_ready, conn_ready, linger_ready) = {
                let mut fds = Vec::with_capacity(1 + self.conns.len() + self.lingering.len());
                let listen_events = if self.accept_paused.is_some() {
                    PollFlags::empty()
                } else {
                    PollFlags::POLLIN
                };
                fds.push(PollFd::new(listener.as_fd(), listen_events));
                for c in &self.conns {
                    let want = match c.phase {
                        Phase::Request(_) => PollFlags::POLLIN,
                        Phase::Respond { .. } => PollFlags::POLLOUT,
                    };
                    fds.push(PollFd::new(c.stream.as_fd(), want));
                }
                for l in &self.lingering {
                    fds.push(PollFd::new(l.stream.as_fd(), PollFlags::POLLIN));
                }
                // Milliseconds, rounded up so that a deadline is past on waking.
                let ms = i32::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(500);
                match poll(
                    &mut fds,
                    PollTimeout::try_from(ms).unwrap_or(PollTimeout::ZERO),
                ) {
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(e).context("poll"),
                }
                let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
                let n = self.conns.len();
                (
                    ready(&fds[0]),
                    fds[1..1 + n].iter().map(ready).collect::<Vec<_>>(),
                    fds[1 + n..].iter().map(ready).collect::<Vec<_>>(),
                )
            };
            self.progress(&conn_ready);
            self.drain_lingering(&linger_ready);
            self.expire();
            if listen_ready {
                self.accept(listener);
            }
            self.shared
                .http
                .open
                .store(self.conns.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Read or write what each ready connection allows.
    fn progress(&mut self, ready: &[bool]) {
        let conns = std::mem::take(&mut self.conns);
        for (mut c, ready) in conns.into_iter().zip(ready.iter().copied()) {
            if !ready {
                self.conns.push(c);
                continue;
            }
            if let Phase::Request(buf) = &mut c.phase {
                match read_request(&mut c.stream, buf, self.shared) {
                    Got::Partial => {
                        self.conns.push(c);
                        continue;
                    }
                    Got::Gone => {
                        self.release(c.source);
                        continue;
                    }
                    Got::Done(answer) => {
                        c.phase = Phase::Respond { answer, written: 0 };
                        c.deadline = Instant::now() + WRITE_TIMEOUT;
                    }
                }
            }
            let Phase::Respond { answer, written } = &mut c.phase else {
                continue;
            };
            match write_out(&mut c.stream, answer.out.bytes(), written) {
                Wrote::Partial => self.conns.push(c),
                Wrote::Failed => self.release(c.source),
                Wrote::All => {
                    self.answered(answer.code, answer.scrape, c.accepted);
                    self.release(c.source);
                    self.linger(c.stream);
                }
            }
        }
    }

    fn drain_lingering(&mut self, ready: &[bool]) {
        let lingering = std::mem::take(&mut self.lingering);
        for (mut l, ready) in lingering.into_iter().zip(ready.iter().copied()) {
            if !ready || drain(&mut l.stream) {
                self.lingering.push(l);
            }
        }
    }

    /// Connections past their deadline: a request never completed is
    /// answered 408; an answer never taken is abandoned.
    fn expire(&mut self) {
        let now = Instant::now();
        self.lingering.retain(|l| l.deadline > now);
        let conns = std::mem::take(&mut self.conns);
        for mut c in conns {
            if c.deadline > now {
                self.conns.push(c);
                continue;
            }
            self.release(c.source);
            if matches!(c.phase, Phase::Request(_)) {
                let mut written = 0;
                let bytes = plain(408, b"request not received in time\n", &[]);
                if matches!(write_out(&mut c.stream, &bytes, &mut written), Wrote::All) {
                    self.shared.http.answered(408);
                    self.linger(c.stream);
                }
            }
        }
    }

    fn accept(&mut self, listener: &TcpListener) {
        for _ in 0..ACCEPT_BATCH {
            match listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // The client gave up while queued: nothing to do.
                Err(e) if e.kind() == ErrorKind::ConnectionAborted => continue,
                // EMFILE and the like: pause accepting, keep serving.
                Err(_) => {
                    self.accept_paused = Some(Instant::now() + Duration::from_millis(100));
                    return;
                }
            }
        }
    }

    /// A new connection: served at once when it can be, else given a slot,
    /// else answered 503.
    fn admit(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let _ = stream.set_nodelay(true);
        let source = peer.ip().to_canonical();
        let accepted = Instant::now();
        let mut buf = Vec::new();
        let answer = match read_request(&mut stream, &mut buf, self.shared) {
            Got::Gone => return,
            Got::Done(a) => Some(a),
            Got::Partial => None,
        };
        let Some(answer) = answer else {
            // Waiting for its request: needs a slot.
            match self.slot_for_waiting(source) {
                Ok(()) => self.hold(Conn {
                    stream,
                    source,
                    accepted,
                    deadline: accepted + REQUEST_TIMEOUT,
                    phase: Phase::Request(buf),
                }),
                Err(why) => self.reject(stream, why),
            }
            return;
        };
        // A complete request: answered at once, if a slot can be had should
        // the answer not fit the socket; else turned away before a byte of
        // the answer is written.
        if let Err(why) = self.slot_for_complete(source, false) {
            self.reject(stream, why);
            return;
        }
        let mut written = 0;
        match write_out(&mut stream, answer.out.bytes(), &mut written) {
            Wrote::All => {
                self.answered(answer.code, answer.scrape, accepted);
                self.linger(stream);
            }
            Wrote::Failed => {}
            Wrote::Partial => {
                // Possible: checked above, and nothing changed since.
                if self.slot_for_complete(source, true).is_ok() {
                    self.hold(Conn {
                        stream,
                        source,
                        accepted,
                        deadline: Instant::now() + WRITE_TIMEOUT,
                        phase: Phase::Respond { answer, written },
                    });
                }
            }
        }
    }

    /// Whether a slot can be had for a connection whose request is
    /// complete, displacing a connection still waiting for its request if
    /// need be; `take`: make the room (else only look).
    fn slot_for_complete(&mut self, source: IpAddr, take: bool) -> Result<(), Reject> {
        let held = self.per_source.get(&source).copied().unwrap_or(0);
        // Its own address's share is full: its oldest waiting one yields.
        // The total is full: the busiest address's oldest waiting one.
        let yields = if held >= MAX_PER_SOURCE {
            Some((source, Reject::PerSource))
        } else if self.conns.len() >= MAX_CONNECTIONS {
            Some((self.busiest().unwrap_or(source), Reject::Capacity))
        } else {
            None
        };
        let Some((from, why)) = yields else {
            return Ok(());
        };
        let oldest_waiting = |c: &Conn, from: Option<IpAddr>| {
            matches!(c.phase, Phase::Request(_)) && from.is_none_or(|f| c.source == f)
        };
        // At full capacity any waiting connection will do if the busiest
        // address has none; within an address's share, only its own.
        let pick = self
            .conns
            .iter()
            .position(|c| oldest_waiting(c, Some(from)))
            .or_else(|| {
                (why == Reject::Capacity)
                    .then(|| self.conns.iter().position(|c| oldest_waiting(c, None)))
                    .flatten()
            });
        match pick {
            None => Err(why),
            Some(_) if !take => Ok(()),
            Some(i) => {
                self.displace_at(i);
                Ok(())
            }
        }
    }

    /// A slot for a connection that has not sent its request yet: free, or
    /// taken from an address holding more than its share.
    fn slot_for_waiting(&mut self, source: IpAddr) -> Result<(), Reject> {
        let held = self.per_source.get(&source).copied().unwrap_or(0);
        if held >= MAX_PER_SOURCE {
            return Err(Reject::PerSource);
        }
        if self.conns.len() < MAX_CONNECTIONS {
            return Ok(());
        }
        match self.busiest() {
            Some(b) if self.per_source.get(&b).copied().unwrap_or(0) > held + 1 => {
                self.displace(b).ok_or(Reject::Capacity)
            }
            _ => Err(Reject::Capacity),
        }
    }

    /// The address holding the most slots.
    fn busiest(&self) -> Option<IpAddr> {
        self.per_source
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(ip, _)| *ip)
    }

    /// Answer 503 to the oldest connection of `source` still waiting for its
    /// request, freeing its slot. None when it has none.
    fn displace(&mut self, source: IpAddr) -> Option<()> {
        let i = self
            .conns
            .iter()
            .position(|c| c.source == source && matches!(c.phase, Phase::Request(_)))?;
        self.displace_at(i);
        Some(())
    }

    fn displace_at(&mut self, i: usize) {
        let c = self.conns.remove(i);
        self.release(c.source);
        self.reject(c.stream, Reject::Displaced);
    }

    fn hold(&mut self, c: Conn) {
        *self.per_source.entry(c.source).or_insert(0) += 1;
        self.conns.push(c);
    }

    fn release(&mut self, source: IpAddr) {
        if let Some(n) = self.per_source.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&source);
            }
        }
    }

    /// `503 Service Unavailable` with `Retry-After`, then a lingering close.
    fn reject(&mut self, mut stream: TcpStream, why: Reject) {
        // What the client already sent is read first, so that closing does
        // not reset the connection under the answer.
        drain(&mut stream);
        let retry = RETRY_AFTER_SECONDS.to_string();
        let bytes = plain(
            503,
            b"busy: too many connections, retry shortly\n",
            &[("Retry-After", &retry)],
        );
        let mut written = 0;
        // A few hundred bytes on a new socket: it fits the send buffer.
        if matches!(write_out(&mut stream, &bytes, &mut written), Wrote::All) {
            self.shared.http.rejected(why);
            self.linger(stream);
        }
    }

    fn answered(&self, code: u16, scrape: bool, accepted: Instant) {
        self.shared.http.answered(code);
        if scrape {
            self.shared.http.scrape_took(accepted.elapsed());
        }
    }

    /// Shut down for writing (the answer is followed by FIN) and keep the
    /// socket until the client closes; closed at once when too many linger.
    fn linger(&mut self, stream: TcpStream) {
        let _ = stream.shutdown(std::net::Shutdown::Write);
        if self.lingering.len() < MAX_LINGERING {
            self.lingering.push(Lingering {
                stream,
                deadline: Instant::now() + LINGER,
            });
        }
    }
}

/// Read what the socket has; answer once the head is complete.
fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>, shared: &Shared) -> Got {
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return Got::Gone,
            Ok(n) => {
                let from = buf.len().saturating_sub(3);
                buf.extend_from_slice(&chunk[..n]);
                if let Some(end) = find(&buf[from..], b"\r\n\r\n") {
                    return Got::Done(answer(&buf[..from + end], shared));
                }
                if buf.len() > MAX_REQUEST {
                    return Got::Done(Answer {
                        code: 431,
                        out: Out::Owned(plain(431, b"request too large\n", &[])),
                        scrape: false,
                    });
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Got::Partial,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return Got::Gone,
        }
    }
}

/// Write from `written` on; what is left is for the next round.
fn write_out(stream: &mut TcpStream, bytes: &[u8], written: &mut usize) -> Wrote {
    while *written < bytes.len() {
        match stream.write(&bytes[*written..]) {
            Ok(0) => return Wrote::Failed,
            Ok(n) => *written += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Wrote::Partial,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return Wrote::Failed,
        }
    }
    Wrote::All
}

/// Read and discard what a lingering socket has. False: the client closed
/// (or failed), done with it.
fn drain(stream: &mut TcpStream) -> bool {
    let mut sink = [0u8; 4096];
    // Bounded: a client that keeps sending is cut at its deadline anyway.
    for _ in 0..16 {
        match stream.read(&mut sink) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

const INDEX: &[u8] = b"<!doctype html>\n<html><head><title>fdwatch</title></head><body>\n<h1>fdwatch</h1>\n<p>Open file descriptors, limits and time to EMFILE, for Prometheus: <a href=\"/metrics\">/metrics</a>.</p>\n</body></html>\n";

/// The answer to one request head.
fn answer(head: &[u8], shared: &Shared) -> Answer {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let parts: Vec<&str> = line.split_whitespace().collect();
    let own = |code, body: &[u8], head_only| Answer {
        code,
        out: Out::Owned(response(code, "text/plain", body, head_only)),
        scrape: false,
    };
    let [method, target, version] = parts[..] else {
        return own(400, b"bad request line\n", false);
    };
    if !version.starts_with("HTTP/1.") {
        return own(400, b"bad request line\n", false);
    }
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return own(405, b"only GET and HEAD\n", false);
    }
    match target.split('?').next().unwrap_or("") {
        "/metrics" => {
            let page = shared.page();
            let n = if head_only {
                page.head_len
            } else {
                page.bytes.len()
            };
            Answer {
                code: 200,
                out: Out::Page(page, n),
                scrape: !head_only,
            }
        }
        "/" => Answer {
            code: 200,
            out: Out::Owned(response(200, "text/html; charset=utf-8", INDEX, head_only)),
            scrape: false,
        },
        _ => own(404, b"not found: try /metrics\n", head_only),
    }
}

fn plain(code: u16, body: &[u8], extra: &[(&str, &str)]) -> Vec<u8> {
    let mut out = head(code, "text/plain", body.len(), extra);
    out.extend_from_slice(body);
    out
}

fn response(code: u16, content_type: &str, body: &[u8], head_only: bool) -> Vec<u8> {
    let mut out = head(code, content_type, body.len(), &[]);
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

fn head(code: u16, content_type: &str, len: usize, extra: &[(&str, &str)]) -> Vec<u8> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\nConnection: close\r\n"
    );
    for (k, v) in extra {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Shared {
        let s = Shared {
            page: Mutex::new(Arc::new(Page {
                bytes: Vec::new(),
                head_len: 0,
            })),
            http: HttpStats::default(),
        };
        publish(&s, &ProcRoot::default(), None, 0);
        s
    }

    fn text(a: &Answer) -> String {
        String::from_utf8_lossy(a.out.bytes()).into_owned()
    }

    #[test]
    fn answers() {
        let shared = shared();
        let a = answer(b"GET /metrics HTTP/1.1\r\nHost: x", &shared);
        let r = text(&a);
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("fdwatch_refresh_errors_total 0"), "{r}");
        assert!(r.contains("fdwatch_build_info{version=\""), "{r}");
        assert!(r.contains("\nprocess_open_fds "), "{r}");
        assert!(a.scrape);
        let h = text(&answer(b"HEAD /metrics HTTP/1.1", &shared));
        assert!(
            h.starts_with("HTTP/1.1 200 OK\r\n") && h.ends_with("\r\n\r\n"),
            "{h}"
        );
        assert!(text(&answer(b"GET /nope HTTP/1.1", &shared)).starts_with("HTTP/1.1 404"));
        assert!(text(&answer(b"POST /metrics HTTP/1.1", &shared)).starts_with("HTTP/1.1 405"));
        assert!(text(&answer(b"garbage", &shared)).starts_with("HTTP/1.1 400"));
        assert!(text(&answer(b"GET / SMTP/1.0", &shared)).starts_with("HTTP/1.1 400"));
        assert!(text(&answer(b"HEAD / HTTP/1.1", &shared)).ends_with("\r\n\r\n"));
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen(":9779"), Ok(Listen::Any(9779)));
        assert_eq!(
            parse_listen("[::]:9779"),
            Ok(Listen::Addrs(vec!["[::]:9779".parse().unwrap()]))
        );
        assert_eq!(
            parse_listen("127.0.0.1:0"),
            Ok(Listen::Addrs(vec!["127.0.0.1:0".parse().unwrap()]))
        );
        assert!(matches!(parse_listen("localhost:9779"), Ok(Listen::Addrs(a)) if !a.is_empty()));
        for bad in [
            "9779",
            ":",
            ":http",
            ":99999",
            "[::]",
            "host",
            "1.2.3.4:x",
            "",
        ] {
            let e = parse_listen(bad).unwrap_err();
            assert!(e.starts_with("invalid --listen"), "{bad}: {e}");
        }
    }

    #[test]
    fn histogram_is_cumulative() {
        let h = HttpStats::default();
        h.scrape_took(Duration::from_micros(100));
        h.scrape_took(Duration::from_millis(3));
        h.scrape_took(Duration::from_secs(9));
        h.rejected(Reject::PerSource);
        let m = h.snapshot();
        assert_eq!(m.duration_count, 3);
        assert_eq!(m.duration_buckets.first(), Some(&(0.0005, 1)));
        assert_eq!(m.duration_buckets.last(), Some(&(5.0, 2)));
        assert!((m.duration_sum - 9.0031).abs() < 1e-6);
        assert!(m.requests.contains(&(503, 1)));
        assert!(m.rejected.contains(&("per_source", 1)));
    }
}

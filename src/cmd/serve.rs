//! `fdwatch serve`: a Prometheus exporter that never harms its host.
//!
//! Two threads. The sampler refreshes a [`Host`] every `--interval` and
//! publishes the [`Snapshot`]; a failed refresh keeps the last good one and
//! counts the failure. The server thread renders the latest snapshot on each
//! scrape: a scrape never reads /proc, so scrapes cost the same whatever the
//! host, and cannot pile up samplers.
//!
//! The server is std's `TcpListener` driven by one `poll(2)` loop over
//! non-blocking sockets, rather than an HTTP crate: it serves two GET paths
//! and closes every connection after its response (`Connection: close` is
//! plain HTTP/1.1), and what matters is the bound on what clients can make it
//! hold. A thread-per-connection server (tiny_http's model) is held by idle
//! clients; here an idle client costs one slot of [`MAX_CONNECTIONS`], each
//! connection has [`IO_TIMEOUT`] to send its request and read its answer, a
//! request head is at most [`MAX_REQUEST`] bytes, and when the slots are full
//! the oldest connection is dropped so that a fresh scrape is always served.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::signals;
use crate::host::{Host, HostOptions, Selector, Snapshot};
use crate::report::prometheus::{self, ExporterMetrics, Options, SystemMetrics};
use crate::sample::ProcRoot;

/// Connections held at once; beyond it the oldest is closed.
pub const MAX_CONNECTIONS: usize = 64;
/// Time a connection gets to send its request and take its response.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head accepted.
pub const MAX_REQUEST: usize = 8 * 1024;

pub struct ServeOptions {
    pub listen: String,
    pub selector: Selector,
    pub top: usize,
    pub interval: Duration,
    pub classify: usize,
    pub thresholds: crate::diagnose::Thresholds,
}

/// What the sampler publishes for the server.
#[derive(Default)]
struct Shared {
    snapshot: Mutex<Option<Arc<Snapshot>>>,
    errors_total: AtomicU64,
}

pub fn run(root: ProcRoot, opts: ServeOptions) -> anyhow::Result<()> {
    signals::install();
    let listener =
        TcpListener::bind(&opts.listen).with_context(|| format!("listening on {}", opts.listen))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared::default());
    let mut host = Host::new(
        root,
        opts.selector.clone(),
        HostOptions {
            thresholds: opts.thresholds,
            classify: opts.classify,
            top_by_usage: Some(opts.top),
        },
    );
    let sampler_shared = Arc::clone(&shared);
    let interval = opts.interval;
    std::thread::Builder::new()
        .name("sampler".into())
        .spawn(move || sampler(&mut host, &sampler_shared, interval))
        .context("starting the sampler thread")?;
    // Tests and scripts read the bound address (useful with port 0).
    println!("listening on http://{addr}/metrics");
    let _ = std::io::stdout().flush();
    serve(&listener, &shared)
}

fn sampler(host: &mut Host, shared: &Shared, interval: Duration) {
    // Say it once per distinct failure, not once per refresh.
    let mut said: Option<String> = None;
    loop {
        let started = Instant::now();
        let result = host.refresh();
        shared
            .errors_total
            .store(host.errors_total(), Ordering::Relaxed);
        match result {
            Ok(snap) => {
                said = None;
                if let Ok(mut slot) = shared.snapshot.lock() {
                    *slot = Some(Arc::new(snap));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                if said.as_deref() != Some(msg.as_str()) {
                    eprintln!("fdwatch: refresh failed (serving the last good one): {msg}");
                    said = Some(msg);
                }
            }
        }
        if !signals::sleep(interval.saturating_sub(started.elapsed())) {
            return;
        }
    }
}

/// The exposition text of the latest snapshot.
fn metrics(shared: &Shared) -> String {
    let snap = shared.snapshot.lock().ok().and_then(|s| s.clone());
    let errors_total = shared.errors_total.load(Ordering::Relaxed);
    let Some(snap) = snap else {
        return prometheus::render_with(
            &[],
            &Options {
                start_time_label: true,
                system: None,
                exporter: Some(ExporterMetrics {
                    errors_total,
                    ..Default::default()
                }),
            },
        );
    };
    let entries: Vec<_> = snap.rows.iter().map(|r| (&r.sample, &r.verdict)).collect();
    prometheus::render_with(
        &entries,
        &Options {
            start_time_label: true,
            system: snap.system.as_ref().map(|s| SystemMetrics {
                files: crate::sample::SystemFiles {
                    allocated: s.allocated,
                    unused: 0,
                    max: s.max,
                    nr_open: s.nr_open,
                },
                growth_per_second: s.slope_per_s,
                exhaustion_seconds: s.eta_seconds,
            }),
            exporter: Some(ExporterMetrics {
                processes: snap.processes,
                unreadable: snap.unreadable,
                refresh_seconds: snap.refresh_seconds,
                last_refresh_unix: snap.unix_time,
                errors_total,
            }),
        },
    )
}

struct Conn {
    stream: TcpStream,
    request: Vec<u8>,
    /// The response and how much of it is written.
    response: Option<(Vec<u8>, usize)>,
    deadline: Instant,
}

fn serve(listener: &TcpListener, shared: &Shared) -> anyhow::Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut conns: Vec<Conn> = Vec::new();
    while !signals::stop_requested() {
        let now = Instant::now();
        let wait = conns
            .iter()
            .map(|c| c.deadline.saturating_duration_since(now))
            .min()
            .unwrap_or(Duration::from_millis(500))
            .min(Duration::from_millis(500));
        let revents: Vec<PollFlags> = {
            let mut fds = Vec::with_capacity(conns.len() + 1);
            fds.push(PollFd::new(listener.as_fd(), PollFlags::POLLIN));
            for c in &conns {
                let want = if c.response.is_some() {
                    PollFlags::POLLOUT
                } else {
                    PollFlags::POLLIN
                };
                fds.push(PollFd::new(c.stream.as_fd(), want));
            }
            let ms = PollTimeout::try_from(wait.as_millis() as i32).unwrap_or(PollTimeout::ZERO);
            match poll(&mut fds, ms) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).context("poll"),
            }
            fds.iter()
                .map(|f| f.revents().unwrap_or(PollFlags::empty()))
                .collect()
        };
        // Existing connections first (their indices match revents), then accept.
        let mut closed = vec![false; conns.len()];
        for (i, c) in conns.iter_mut().enumerate() {
            let ev = revents[i + 1];
            if ev.is_empty() {
                continue;
            }
            closed[i] = !progress(c, shared);
        }
        let now = Instant::now();
        let mut i = 0;
        conns.retain(|c| {
            let keep = !closed[i] && c.deadline > now;
            i += 1;
            keep
        });
        if !revents[0].is_empty() {
            loop {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if stream.set_nonblocking(true).is_err() {
                            continue;
                        }
                        if conns.len() >= MAX_CONNECTIONS {
                            // The oldest is the likeliest to be stuck.
                            conns.remove(0);
                        }
                        conns.push(Conn {
                            stream,
                            request: Vec::new(),
                            response: None,
                            deadline: Instant::now() + IO_TIMEOUT,
                        });
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    // EMFILE and the like: the listener stays readable, so
                    // pause instead of spinning; keep serving.
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(50));
                        break;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Read or write what the socket allows. False: done with this connection.
fn progress(c: &mut Conn, shared: &Shared) -> bool {
    if c.response.is_none() {
        let mut buf = [0u8; 2048];
        loop {
            match c.stream.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => {
                    c.request.extend_from_slice(&buf[..n]);
                    if c.request.len() > MAX_REQUEST {
                        c.response = Some((
                            response(431, "text/plain", b"request too large\n", false),
                            0,
                        ));
                        break;
                    }
                    if let Some(end) = find(&c.request, b"\r\n\r\n") {
                        c.response = Some((answer(&c.request[..end], shared), 0));
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
    }
    let Some((bytes, written)) = c.response.as_mut() else {
        return true;
    };
    while *written < bytes.len() {
        match c.stream.write(&bytes[*written..]) {
            Ok(0) => return false,
            Ok(n) => *written += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    let _ = c.stream.shutdown(std::net::Shutdown::Write);
    false
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

const INDEX: &[u8] = b"<!doctype html>\n<html><head><title>fdwatch</title></head><body>\n<h1>fdwatch</h1>\n<p>Open file descriptors, limits and time to EMFILE, for Prometheus: <a href=\"/metrics\">/metrics</a>.</p>\n</body></html>\n";

/// The response to one request head.
fn answer(head: &[u8], shared: &Shared) -> Vec<u8> {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return response(405, "text/plain", b"only GET and HEAD\n", false);
    }
    match path {
        "/metrics" => response(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics(shared).as_bytes(),
            head_only,
        ),
        "/" => response(200, "text/html; charset=utf-8", INDEX, head_only),
        _ => response(404, "text/plain", b"not found: try /metrics\n", head_only),
    }
}

fn response(code: u16, content_type: &str, body: &[u8], head_only: bool) -> Vec<u8> {
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    };
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        let shared = Shared::default();
        let r = String::from_utf8(answer(b"GET /metrics HTTP/1.1\r\nHost: x", &shared)).unwrap();
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("fdwatch_refresh_errors_total 0"), "{r}");
        let r = String::from_utf8(answer(b"GET /nope HTTP/1.1", &shared)).unwrap();
        assert!(r.starts_with("HTTP/1.1 404"));
        let r = String::from_utf8(answer(b"POST /metrics HTTP/1.1", &shared)).unwrap();
        assert!(r.starts_with("HTTP/1.1 405"));
        let r = String::from_utf8(answer(b"HEAD / HTTP/1.1", &shared)).unwrap();
        assert!(r.ends_with("\r\n\r\n"));
    }
}

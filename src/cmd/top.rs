//! `fdwatch top`: every visible process, refreshed, ranked by time to EMFILE.
//!
//! The driver only paces refreshes and handles the terminal: plain text or
//! JSON when stdout is not a terminal, else an interactive screen in raw mode
//! (restored on every way out) where Enter opens `fdwatch watch --pid N`.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::{print_line, signals};
use crate::diagnose::Thresholds;
use crate::host::{self, Host, HostOptions, Selector, Snapshot, SortKey};
use crate::report::top as render;
use crate::sample::ProcRoot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Screen,
    Plain,
    Json,
}

pub struct TopOptions {
    pub selector: Selector,
    pub interval: Duration,
    pub count: Option<u64>,
    pub sort: SortKey,
    /// Rows shown; None: the terminal's height (screen) or 25; Some(0): all.
    pub limit: Option<usize>,
    pub output: Output,
    pub classify: usize,
    pub thresholds: Thresholds,
}

/// The sort keys in column order, for the `s`/`S` keys.
const SORT_CYCLE: [(SortKey, &str); 9] = [
    (SortKey::Eta, "ETA"),
    (SortKey::Usage, "USE%"),
    (SortKey::Fds, "FDS"),
    (SortKey::Slope, "SLOPE/min"),
    (SortKey::Soft, "SOFT"),
    (SortKey::Verdict, "VERDICT"),
    (SortKey::Pid, "PID"),
    (SortKey::User, "USER"),
    (SortKey::Command, "COMMAND"),
];

pub fn run(root: ProcRoot, opts: TopOptions) -> anyhow::Result<()> {
    signals::install();
    let mut host = Host::new(
        root,
        opts.selector.clone(),
        HostOptions {
            thresholds: opts.thresholds,
            classify: opts.classify,
            top_by_usage: None,
        },
    );
    match opts.output {
        Output::Screen => interactive(&mut host, &opts),
        Output::Plain | Output::Json => lines(&mut host, &opts),
    }
}

fn limit_of(opts: &TopOptions, fallback: usize) -> usize {
    match opts.limit {
        Some(0) => usize::MAX,
        Some(n) => n,
        None => fallback,
    }
}

fn lines(host: &mut Host, opts: &TopOptions) -> anyhow::Result<()> {
    let limit = limit_of(opts, 25);
    let mut n = 0u64;
    loop {
        let started = Instant::now();
        let mut snap = host.refresh().context("listing processes")?;
        host::sort_rows(&mut snap.rows, opts.sort);
        n += 1;
        let text = match opts.output {
            Output::Json => render::json(&snap, limit)?,
            _ => render::plain(&snap, limit),
        };
        if !print_line(text.trim_end_matches('\n'))? {
            return Ok(());
        }
        if opts.count.is_some_and(|c| n >= c) {
            return Ok(());
        }
        if !signals::sleep(opts.interval.saturating_sub(started.elapsed())) {
            return Ok(());
        }
    }
}

/// Raw mode on stdin, the alternate screen on stdout; undone on drop
/// (normal exit, error, or a panic unwinding through the loop).
struct Terminal {
    saved: Option<nix::sys::termios::Termios>,
}

impl Terminal {
    fn enter() -> anyhow::Result<Terminal> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let saved = tcgetattr(stdin.as_fd()).context("reading the terminal mode")?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        // Keep output post-processing so "\n" still returns the carriage.
        raw.output_flags |=
            nix::sys::termios::OutputFlags::OPOST | nix::sys::termios::OutputFlags::ONLCR;
        tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).context("setting raw mode")?;
        let mut out = std::io::stdout();
        let _ = out.write_all(b"\x1b[?1049h\x1b[?25l");
        let _ = out.flush();
        Ok(Terminal { saved: Some(saved) })
    }

    fn leave(&mut self) {
        if let Some(saved) = self.saved.take() {
            let mut out = std::io::stdout();
            let _ = out.write_all(b"\x1b[?25h\x1b[?1049l");
            let _ = out.flush();
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin().as_fd(),
                nix::sys::termios::SetArg::TCSANOW,
                &saved,
            );
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        self.leave();
    }
}

fn terminal_rows() -> usize {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ fills a winsize we own.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_row > 0 {
        ws.ws_row as usize
    } else {
        24
    }
}

enum Key {
    Quit,
    Up,
    Down,
    NextSort,
    PrevSort,
    Enter,
    Other,
}

/// Wait up to `d` for a key on stdin.
fn read_key(d: Duration) -> Option<Key> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let stdin = std::io::stdin();
    let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
    let ms = d.as_millis().min(i32::MAX as u128) as i32;
    match poll(
        &mut fds,
        PollTimeout::try_from(ms).unwrap_or(PollTimeout::NONE),
    ) {
        Ok(n) if n > 0 => {}
        _ => return None,
    }
    let mut buf = [0u8; 8];
    let n = stdin.lock().read(&mut buf).ok()?;
    Some(match &buf[..n] {
        [] => Key::Quit, // EOF: the terminal went away
        [b'q'] | [b'Q'] | [3] | [4] => Key::Quit,
        [b'k'] | [0x1b, b'[', b'A'] => Key::Up,
        [b'j'] | [0x1b, b'[', b'B'] => Key::Down,
        [b's'] | [b'>'] => Key::NextSort,
        [b'S'] | [b'<'] => Key::PrevSort,
        [b'\r'] | [b'\n'] => Key::Enter,
        _ => Key::Other,
    })
}

fn interactive(host: &mut Host, opts: &TopOptions) -> anyhow::Result<()> {
    let mut term = Terminal::enter()?;
    let mut sort = SORT_CYCLE
        .iter()
        .position(|(k, _)| *k == opts.sort)
        .unwrap_or(0);
    let mut selected = 0usize;
    let mut n = 0u64;
    let mut snap: Option<Snapshot> = None;
    let mut next = Instant::now();
    loop {
        if signals::stop_requested() {
            return Ok(());
        }
        if Instant::now() >= next {
            if opts.count.is_some_and(|c| n >= c) {
                return Ok(());
            }
            next = Instant::now() + opts.interval;
            match host.refresh() {
                Ok(s) => snap = Some(s),
                Err(e) if snap.is_none() => return Err(e).context("listing processes"),
                Err(_) => {} // keep showing the last good refresh; the header counts errors
            }
            n += 1;
        }
        let limit = limit_of(opts, terminal_rows().saturating_sub(7).max(1));
        if let Some(s) = snap.as_mut() {
            host::sort_rows(&mut s.rows, SORT_CYCLE[sort].0);
            let shown = s.rows.len().min(limit);
            selected = selected.min(shown.saturating_sub(1));
            let text = render::screen(s, limit, SORT_CYCLE[sort].1, selected);
            let mut out = std::io::stdout().lock();
            out.write_all(b"\x1b[H\x1b[2J")?;
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
        let wait = next.saturating_duration_since(Instant::now());
        match read_key(wait) {
            None | Some(Key::Other) => {}
            Some(Key::Quit) => return Ok(()),
            Some(Key::Up) => selected = selected.saturating_sub(1),
            Some(Key::Down) => selected += 1,
            Some(Key::NextSort) => sort = (sort + 1) % SORT_CYCLE.len(),
            Some(Key::PrevSort) => sort = (sort + SORT_CYCLE.len() - 1) % SORT_CYCLE.len(),
            Some(Key::Enter) => {
                let pid = snap
                    .as_ref()
                    .and_then(|s| s.rows.get(selected))
                    .map(|r| r.pid);
                if let Some(pid) = pid {
                    term.leave();
                    watch_one(pid);
                    term = Terminal::enter()?;
                    next = Instant::now();
                }
            }
        }
    }
}

/// Run `fdwatch watch --pid N` in the foreground; back to top when it ends
/// (q there is Ctrl-C: the child takes SIGINT, we ignore it meanwhile).
fn watch_one(pid: i32) {
    let Ok(me) = std::env::current_exe() else {
        return;
    };
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: ignoring SIGINT while the child owns the terminal; restored after.
    let old = unsafe { signal(Signal::SIGINT, SigHandler::SigIgn) };
    let _ = std::process::Command::new(me)
        .args(["watch", "--pid", &pid.to_string()])
        .status();
    if let Ok(old) = old {
        // SAFETY: restoring the previous handler.
        let _ = unsafe { signal(Signal::SIGINT, old) };
    }
}

/// The selector from the command line (`--user` accepts a name or a uid).
pub fn selector(
    user: Option<&str>,
    name: Option<String>,
    exe: Option<std::path::PathBuf>,
    cgroup: Option<String>,
    container: Option<String>,
    pids: Vec<i32>,
) -> anyhow::Result<Selector> {
    let uid = match user {
        None => None,
        Some(u) => Some(match u.parse::<u32>() {
            Ok(n) => n,
            Err(_) => nix::unistd::User::from_name(u)
                .with_context(|| format!("looking up user {u}"))?
                .with_context(|| format!("no such user: {u}"))?
                .uid
                .as_raw(),
        }),
    };
    if let Some(p) = pids.iter().find(|p| **p <= 0) {
        anyhow::bail!("--pid must be a positive process id, got {p}");
    }
    Ok(Selector {
        pids,
        uid,
        name,
        exe,
        cgroup,
        container,
    })
}

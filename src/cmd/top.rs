//! `fdwatch top`: every visible process, refreshed, ranked by time to EMFILE.
//!
//! The driver only paces refreshes and handles the terminal: plain text or
//! JSON when stdout is not a terminal, else an interactive screen (the
//! terminal handling shared with `watch` lives in `term`, restored on every
//! way out) where Enter opens `fdwatch watch --pid N`.

use std::time::{Duration, Instant};

use anyhow::Context;

use super::term::{self, Event, Key};
use super::{print_line, signals};
use crate::diagnose::Thresholds;
use crate::host::{self, Host, HostOptions, Selector, Snapshot, SortKey};
use crate::report::style::Frame;
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
    /// Colour the verdicts (decided once from `--color`, the environment and stdout).
    pub color: bool,
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
            stacks: false,
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
            _ => render::plain(
                &snap,
                limit,
                &Frame {
                    width: None,
                    color: opts.color,
                },
            ),
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

fn interactive(host: &mut Host, opts: &TopOptions) -> anyhow::Result<()> {
    let mut screen = term::Screen::enter(true);
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
        // Asked each time: the window may have changed size since.
        let size = term::size();
        let rows = size.map_or(24, |(_, rows)| rows);
        let limit = limit_of(opts, rows.saturating_sub(7).max(1));
        if let Some(s) = snap.as_mut() {
            host::sort_rows(&mut s.rows, SORT_CYCLE[sort].0);
            let shown = s.rows.len().min(limit);
            selected = selected.min(shown.saturating_sub(1));
            let frame = Frame {
                width: size.map(|(cols, _)| cols),
                color: opts.color,
            };
            let text = render::screen(s, limit, SORT_CYCLE[sort].1, selected, &frame);
            screen.draw(&text, size.map(|(_, rows)| rows))?;
        }
        match screen.wait(next.saturating_duration_since(Instant::now())) {
            Event::Timeout | Event::Resize | Event::Key(Key::Other) => {}
            Event::Stop | Event::Key(Key::Quit) => return Ok(()),
            Event::Key(Key::Up) => selected = selected.saturating_sub(1),
            Event::Key(Key::Down) => selected += 1,
            Event::Key(Key::NextSort) => sort = (sort + 1) % SORT_CYCLE.len(),
            Event::Key(Key::PrevSort) => sort = (sort + SORT_CYCLE.len() - 1) % SORT_CYCLE.len(),
            Event::Key(Key::Enter) => {
                let pid = snap
                    .as_ref()
                    .and_then(|s| s.rows.get(selected))
                    .map(|r| r.pid);
                if let Some(pid) = pid {
                    screen.leave();
                    watch_one(pid, opts.color);
                    screen = term::Screen::enter(true);
                    next = Instant::now();
                }
            }
        }
    }
}

/// Run `fdwatch watch --pid N` in the foreground, in top's colours; back
/// to top when it ends (`q`, or Ctrl-C: the child takes SIGINT, we ignore
/// it meanwhile).
fn watch_one(pid: i32, color: bool) {
    let Ok(me) = std::env::current_exe() else {
        return;
    };
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: ignoring SIGINT while the child owns the terminal; restored after.
    let old = unsafe { signal(Signal::SIGINT, SigHandler::SigIgn) };
    let _ = std::process::Command::new(me)
        .args(["watch", "--pid", &pid.to_string()])
        .args(["--color", if color { "always" } else { "never" }])
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
    pidfile: Option<std::path::PathBuf>,
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
    // A pidfile that cannot be read at the start is a mistake to say now
    // (later refreshes count it as an error and select nothing).
    if let Some(file) = &pidfile {
        crate::sample::host::read_pidfile(file)?;
    }
    Ok(Selector {
        pids,
        uid,
        name,
        exe,
        cgroup,
        container,
        pidfile,
    })
}

//! `fdwatch watch --pid N`: sample, track, show; until count/duration/Ctrl-C
//! or the target goes away.

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::term::{self, Event, Key};
use super::{print_line, signals};
use crate::diagnose::{Level, Thresholds};
pub use crate::monitor::SyscallMode;
use crate::monitor::{self, Session};
use crate::report::style::Frame;
use crate::report::{json, screen, View};
use crate::sample::{bpf, Census, ProcRoot, Sample, SampleError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Redraw in place (a terminal).
    Screen,
    /// One line per sample.
    Plain,
    /// JSON Lines.
    Json,
}

pub struct WatchOptions {
    pub pid: i32,
    pub interval: Duration,
    pub count: Option<u64>,
    pub duration: Option<Duration>,
    pub output: Output,
    pub record: Option<PathBuf>,
    /// With `record`: draw the run as an SVG at the end.
    pub plot: Option<PathBuf>,
    pub census: Census,
    /// Who does a full census (`--backend`).
    pub backend: bpf::Choice,
    pub thresholds: Thresholds,
    pub syscalls: SyscallMode,
    /// `--stacks`: trace the stacks that open fds, show the top sites.
    pub stacks: bool,
    /// Colour the levels (decided once from `--color`, the environment and stdout).
    pub color: bool,
    /// Extra stop condition, polled after each sample (the demo's "EMFILE hit + linger").
    pub until: Option<Box<dyn Fn() -> bool>>,
}

/// How a watch ended.
#[derive(Debug, Default)]
pub struct WatchEnd {
    pub samples: u64,
    pub last_level: Option<Level>,
    /// Seconds from the first sample to the first WARNING / CRITICAL.
    pub first_warning: Option<f64>,
    pub first_critical: Option<f64>,
    /// Why the target went away, when it did.
    pub target_gone: Option<String>,
    pub last: Option<Sample>,
}

pub fn run(root: &ProcRoot, opts: WatchOptions) -> anyhow::Result<WatchEnd> {
    signals::install();
    let mut census = monitor::Census::open(opts.backend, opts.census)?;
    if opts.count == Some(1) {
        census.expect_one_sample();
    }
    let mut session = Session::new(opts.pid, opts.thresholds);
    let mut first = session.take(&mut census, root)?;
    // Said once the /proc census has worked: an error stays the only line.
    if let Some(note) = census.take_fallback_note() {
        eprintln!("fdwatch: {note}");
    }
    // After the first sample: a target we may not read fails with that reason alone.
    // One sample has no rates, and a counter costs time (BPF: ~2 ms to load
    // with the kernel's CO-RE, ~60 ms through aya; perf: ~0.4 s of RCU grace
    // periods to tear down): a one-shot census skips it.
    let mode = if opts.count == Some(1) {
        SyscallMode::Off
    } else {
        opts.syscalls
    };
    for note in session.attach_syscalls(mode)? {
        eprintln!("fdwatch: {note}");
    }
    // Before the first sample is judged, so its lines already come from a
    // traced process (what opens fds after the first line is attributed).
    if opts.stacks {
        for note in session.attach_stacks() {
            eprintln!("fdwatch: {}", crate::report::escape::terminal(&note));
        }
    }
    first.syscalls = session.counts();
    let first = session.observe(first, true);
    let identity = first.sample.identity();
    let mut record = match &opts.record {
        Some(path) => Some(std::io::BufWriter::new(
            crate::safe_fs::open_append(path)
                .with_context(|| format!("opening the recording {}", path.display()))?,
        )),
        None => None,
    };
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
    // On a terminal the screen redraws in place, fitted to the window, and
    // `q` quits; captured, screens follow each other at full width.
    let mut alt = (opts.output == Output::Screen && tty).then(|| term::Screen::enter(true));
    let fitted = alt.is_some();
    let frame = || Frame {
        width: term::size().filter(|_| fitted).map(|(cols, _)| cols),
        color: opts.color,
    };
    let started = Instant::now();
    let mut end = WatchEnd::default();
    let mut recent: VecDeque<u64> = VecDeque::with_capacity(60);
    let mut previous: Option<Sample> = None;
    let mut current = Some(first);
    let mut last_screen = String::new();
    let first_sample_mono = current.as_ref().map(|t| t.sample.mono_time).unwrap_or(0.0);
    while let Some(tick) = current.take() {
        let monitor::Tick { sample: s, verdict } = tick;
        end.samples += 1;
        end.last_level = Some(verdict.level);
        let at = s.mono_time - first_sample_mono;
        if verdict.level >= Level::Warning && end.first_warning.is_none() {
            end.first_warning = Some(at);
        }
        if verdict.level >= Level::Critical && end.first_critical.is_none() {
            end.first_critical = Some(at);
        }
        if recent.len() == 60 {
            recent.pop_front();
        }
        recent.push_back(s.fds);
        let recent_vec: Vec<u64> = recent.iter().copied().collect();
        let first_ref = session.tracker().first().unwrap_or(&s);
        let view = View {
            sample: &s,
            previous: previous.as_ref(),
            first: first_ref,
            verdict: &verdict,
            index: end.samples,
            recent: &recent_vec,
            stacks: session.stack_sites(),
        };
        if let Some(w) = record.as_mut() {
            writeln!(w, "{}", json::line(&view))
                .and_then(|_| w.flush())
                .context("writing the recording")?;
        }
        let open = match opts.output {
            Output::Json => print_line(&json::line(&view))?,
            Output::Plain => print_line(&screen::plain_line(&view, &frame()))?,
            Output::Screen => {
                last_screen = screen::screen(&view, &frame());
                match alt.as_mut() {
                    Some(a) => a
                        .draw(&last_screen, term::size().map(|(_, rows)| rows))
                        .is_ok(),
                    None => print_line(&last_screen)?,
                }
            }
        };
        let done = !open
            || opts.count.is_some_and(|c| end.samples >= c)
            || opts.duration.is_some_and(|d| started.elapsed() >= d)
            || opts.until.as_ref().is_some_and(|f| f());
        // Pace on the schedule, not after the work, so the interval stays true.
        let next = started + opts.interval.mul_f64(end.samples as f64);
        let go_on = !done
            && match alt.as_mut() {
                None => signals::sleep(next.saturating_duration_since(Instant::now())),
                Some(a) => loop {
                    match a.wait(next.saturating_duration_since(Instant::now())) {
                        Event::Timeout => break true,
                        Event::Stop | Event::Key(Key::Quit) => break false,
                        Event::Key(_) => {}
                        Event::Resize => {
                            last_screen = screen::screen(&view, &frame());
                            let _ = a.draw(&last_screen, term::size().map(|(_, rows)| rows));
                        }
                    }
                },
            };
        previous = Some(s);
        if !go_on {
            break;
        }
        match session.tick(&mut census, root) {
            Ok(tick) => current = Some(tick),
            Err(e) if e.target_gone() => {
                end.target_gone = Some(gone_message(&e, &identity.comm, opts.pid, end.samples));
                break;
            }
            Err(e) => {
                drop(alt);
                return Err(e.into());
            }
        }
    }
    drop(alt);
    if opts.output == Output::Screen && tty && !last_screen.is_empty() {
        // Leave the last screen on the normal terminal.
        let _ = print_line(last_screen.trim_end());
    }
    if let Some(msg) = &end.target_gone {
        eprintln!("fdwatch: {msg}");
    }
    if let (Some(svg), Some(rec)) = (&opts.plot, &opts.record) {
        drop(record);
        monitor::plot_recording(rec, opts.pid, identity.start_time, &opts.thresholds, svg)
            .with_context(|| format!("drawing {}", svg.display()))?;
    }
    end.last = previous;
    Ok(end)
}

fn gone_message(e: &SampleError, comm: &str, pid: i32, samples: u64) -> String {
    match e {
        SampleError::PidReused { .. } => {
            crate::report::escape::terminal(&format!("{e}; stopped after {samples} samples"))
        }
        _ => format!(
            "pid {pid} ({}) exited; stopped after {samples} samples, the last one shown",
            crate::report::escape::terminal(comm)
        ),
    }
}

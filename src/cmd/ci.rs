//! `fdwatch run -- CMD` and `fdwatch assert --pid N --for D`: watch a command
//! (or a running service) in a CI step, judge it, and fail the step if it leaks.
//!
//! Exit code precedence (docs/ci.md): the command's own failure first (its exit
//! code, or 128+signal); then 3 when fdwatch could not sample at all; then 2
//! for a broken `--max-fds` / `--max-growth` gate; then the verdict's level
//! (1 or 2) when it reaches `--fail-on`; else 0.

use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::signals;
use crate::diagnose::{gate, Level, Thresholds};
use crate::monitor::{self, Session};
use crate::report::ci as ci_report;
use crate::sample::{bpf, Census, FdKind, ProcRoot, Sample};

#[derive(Debug, Clone)]
pub struct Gate {
    pub max_fds: Option<u64>,
    /// (kind or total, max growth)
    pub max_growth: Vec<(Option<FdKind>, u64)>,
    pub warmup: Duration,
    /// None: never fail on the verdict.
    pub fail_on: Option<Level>,
    pub report: Option<PathBuf>,
    pub junit: Option<PathBuf>,
    /// Draw the run as an SVG at the end.
    pub plot: Option<PathBuf>,
    pub thresholds: Thresholds,
}

/// `N` or `KIND:N`.
pub fn parse_growth(s: &str) -> anyhow::Result<(Option<FdKind>, u64)> {
    let (kind, n) = match s.split_once(':') {
        Some((k, n)) => {
            let kind = FdKind::from_name(k).with_context(|| {
                format!("--max-growth: unknown kind '{k}' (kinds: docs/json-schema.md)")
            })?;
            (Some(kind), n)
        }
        None => (None, s),
    };
    let n: u64 = n
        .parse()
        .with_context(|| format!("--max-growth: '{n}' is not a count"))?;
    Ok((kind, n))
}

pub use crate::diagnose::gate::Outcome;

/// What a watch of one target collects.
struct Observation {
    session: Session,
    first: Option<Sample>,
    warm: Option<Sample>,
    last: Option<Sample>,
    peak: u64,
    samples: u64,
    error: Option<String>,
    /// Every sample, kept only when a plot is asked for.
    kept: Option<Vec<Sample>>,
}

impl Observation {
    fn new(pid: i32, gate: &Gate) -> Observation {
        Observation {
            session: Session::new(pid, gate.thresholds),
            first: None,
            warm: None,
            last: None,
            peak: 0,
            samples: 0,
            error: None,
            kept: gate.plot.as_ref().map(|_| Vec::new()),
        }
    }

    fn observe(&mut self, tick: monitor::Tick, since_start: Duration, warmup: Duration) {
        let s = tick.sample;
        self.peak = self.peak.max(s.fds);
        self.samples += 1;
        if self.first.is_none() {
            self.first = Some(s.clone());
        }
        if self.warm.is_none() && since_start >= warmup {
            self.warm = Some(s.clone());
        }
        if let Some(kept) = self.kept.as_mut() {
            kept.push(s.clone());
        }
        self.last = Some(s);
    }

    fn outcome(
        &self,
        name: String,
        duration: Duration,
        gate: &Gate,
        command_exit: Option<i32>,
        gone: Option<String>,
    ) -> Outcome {
        let seen = gate::Observed {
            first: self.first.as_ref(),
            warm: self.warm.as_ref(),
            last: self.last.as_ref(),
            peak: self.peak,
            samples: self.samples,
            error: self.error.clone(),
            verdict: self.last.as_ref().map(|_| self.session.verdict()),
            gone,
        };
        let limits = gate::Limits {
            max_fds: gate.max_fds,
            max_growth: gate.max_growth.clone(),
            fail_on: gate.fail_on,
        };
        gate::judge(name, duration.as_secs_f64(), seen, &limits, command_exit)
    }
}

fn exit_code_of(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

pub fn run(
    root: &ProcRoot,
    command: &[String],
    interval: Duration,
    children: bool,
    backend: bpf::Choice,
    gate: &Gate,
) -> anyhow::Result<i32> {
    let Some((program, args)) = command.split_first() else {
        bail!("run needs a command after --")
    };
    // Before the command starts: `--backend bpf` where it cannot run is an
    // error (exit 3) and the command never runs.
    let mut census = monitor::Census::open(backend, Census::Full)?.with_children(children);
    signals::install_forwarding();
    let start = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    let pid = child.id() as i32;
    let mut obs = Observation::new(pid, gate);
    let status = loop {
        for sig in signals::take_forwarded() {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(pid, sig) };
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        match obs.session.tick(&mut census, root) {
            Ok(tick) => {
                // Said once the /proc census has worked.
                if let Some(note) = census.take_fallback_note() {
                    eprintln!("fdwatch: {note}");
                }
                obs.observe(tick, start.elapsed(), gate.warmup);
            }
            Err(e) if e.target_gone() => {}
            Err(e) => obs.error = Some(e.to_string()),
        }
        let next = start + interval.mul_f64(obs.samples.max(1) as f64);
        while Instant::now() < next {
            if child.try_wait()?.is_some() || signals::take_forwarded_pending() {
                break;
            }
            std::thread::sleep(
                Duration::from_millis(10).min(next.saturating_duration_since(Instant::now())),
            );
        }
    };
    let name = format!("run: {}", command.join(" "));
    let outcome = obs.outcome(
        name,
        start.elapsed(),
        gate,
        Some(exit_code_of(status)),
        None,
    );
    ci_report::emit(&outcome, gate.report.as_deref(), gate.junit.as_deref())?;
    plot(&obs, gate)?;
    Ok(outcome.exit_code)
}

pub fn assert(
    root: &ProcRoot,
    pid: i32,
    watch_for: Duration,
    interval: Duration,
    backend: bpf::Choice,
    gate: &Gate,
) -> anyhow::Result<i32> {
    signals::install();
    let mut census = monitor::Census::open(backend, Census::Full)?;
    let mut obs = Observation::new(pid, gate);
    let first = obs.session.tick(&mut census, root)?;
    // Said once the /proc census has worked: an error stays the only line.
    if let Some(note) = census.take_fallback_note() {
        eprintln!("fdwatch: {note}");
    }
    let identity = first.sample.identity();
    let start = Instant::now();
    obs.observe(first, Duration::ZERO, gate.warmup);
    let mut gone = None;
    while start.elapsed() < watch_for {
        let next = start + interval.mul_f64(obs.samples as f64);
        if !signals::sleep(
            next.saturating_duration_since(Instant::now())
                .min(watch_for.saturating_sub(start.elapsed())),
        ) {
            break;
        }
        match obs.session.tick(&mut census, root) {
            Ok(tick) => obs.observe(tick, start.elapsed(), gate.warmup),
            Err(e) if e.target_gone() => {
                gone = Some(e.to_string());
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    // The service dying during the assertion is a failure of the step.
    let outcome = obs.outcome(
        format!("assert: pid {pid} ({})", identity.comm),
        start.elapsed(),
        gate,
        None,
        gone,
    );
    ci_report::emit(&outcome, gate.report.as_deref(), gate.junit.as_deref())?;
    plot(&obs, gate)?;
    Ok(outcome.exit_code)
}

fn plot(obs: &Observation, gate: &Gate) -> anyhow::Result<()> {
    if let (Some(svg), Some(samples)) = (&gate.plot, &obs.kept) {
        if !samples.is_empty() {
            let timeline = monitor::replay(samples, &gate.thresholds);
            crate::report::plot::plot_samples(samples, &timeline, svg)
                .with_context(|| format!("drawing {}", svg.display()))?;
        }
    }
    Ok(())
}

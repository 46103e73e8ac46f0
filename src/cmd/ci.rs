//! `fdwatch run -- CMD` and `fdwatch assert --pid N --for D`: watch a command
//! (or a running service) in a CI step, judge it, and fail the step if it leaks.
//!
//! Exit code precedence (docs/ci.md): the command's own failure first (its exit
//! code, or 128+signal); then 3 when fdwatch could not sample at all; then 2
//! for a broken `--max-fds` / `--max-growth` gate; then the verdict's level
//! (1 or 2) when it reaches `--fail-on`; else 0.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

use super::signals;
use crate::diagnose::{Level, Thresholds, Tracker, Verdict};
use crate::report::ci as ci_report;
use crate::sample::{self, bpf, Backend, Census, FdKind, Identity, ProcRoot, Sample};

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

/// The report of one CI check (also the JSON of `--report`).
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// `run: CMD ARGS` or `assert: pid N (comm)`.
    pub name: String,
    pub duration_s: f64,
    pub samples: u64,
    pub fds_start: Option<u64>,
    pub fds_peak: Option<u64>,
    pub fds_end: Option<u64>,
    /// Growth from the warm-up point to the end.
    pub growth: Option<i64>,
    pub growth_by_kind: BTreeMap<FdKind, i64>,
    pub verdict: Option<Verdict>,
    /// Why the step fails (empty: it passes).
    pub failures: Vec<String>,
    /// The command's exit code (run only); 128+N when killed by signal N.
    pub command_exit: Option<i32>,
    pub exit_code: i32,
    /// A sampling problem that is not a verdict (e.g. permission denied).
    pub sampling_error: Option<String>,
    /// Who classified the fds (`bpf` or `proc`), as of the last sample.
    pub backend: Option<Backend>,
}

/// What a watch of one target collects.
#[derive(Default)]
struct Observation {
    tracker: Tracker,
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
    fn observe(&mut self, mut s: Sample, since_start: Duration, warmup: Duration) {
        if let Some(prev) = &self.last {
            s.mark_new_inodes(prev);
        }
        self.tracker.observe(&s);
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
    ) -> Outcome {
        let mut failures = Vec::new();
        let verdict = self
            .last
            .as_ref()
            .map(|_| self.tracker.verdict(&gate.thresholds));
        // Without a warm-up sample (a command shorter than --warmup) growth is measured from the first.
        let base = self.warm.as_ref().or(self.first.as_ref());
        let (growth, growth_by_kind) = match (base, &self.last) {
            (Some(b), Some(l)) => {
                let mut kinds: BTreeMap<FdKind, i64> = BTreeMap::new();
                for k in b.kinds.keys().chain(l.kinds.keys()) {
                    let d = l.kind(*k) as i64 - b.kind(*k) as i64;
                    if d != 0 {
                        kinds.insert(*k, d);
                    }
                }
                (Some(l.fds as i64 - b.fds as i64), kinds)
            }
            _ => (None, BTreeMap::new()),
        };
        if let Some(max) = gate.max_fds {
            if self.peak > max {
                failures.push(format!("fds peaked at {} (--max-fds {max})", self.peak));
            }
        }
        for (kind, max) in &gate.max_growth {
            let (what, grew) = match kind {
                Some(k) => (
                    k.label().to_string(),
                    growth_by_kind.get(k).copied().unwrap_or(0),
                ),
                None => ("open fds".to_string(), growth.unwrap_or(0)),
            };
            if grew > *max as i64 {
                let arg = kind
                    .map(|k| format!("{}:{max}", k.name()))
                    .unwrap_or_else(|| max.to_string());
                failures.push(format!(
                    "{what} grew by {grew} after warm-up (--max-growth {arg})"
                ));
            }
        }
        if let (Some(v), Some(fail_on)) = (&verdict, gate.fail_on) {
            if v.level >= fail_on && v.level != Level::Unknown {
                failures.push(format!(
                    "verdict {}: {}",
                    v.level.name(),
                    v.reasons.first().cloned().unwrap_or_default()
                ));
            }
        }
        let gate_broken = failures.iter().any(|f| !f.starts_with("verdict"));
        let exit_code = match command_exit {
            Some(code) if code != 0 => code,
            _ if self.samples == 0 => 3,
            _ if gate_broken => 2,
            _ if !failures.is_empty() => verdict.as_ref().map(|v| v.level as i32).unwrap_or(2),
            _ => 0,
        };
        if self.samples == 0 {
            failures.push(format!(
                "no sample taken: {}",
                self.error
                    .clone()
                    .unwrap_or_else(|| "the process ended before the first sample".into())
            ));
        }
        Outcome {
            name,
            duration_s: duration.as_secs_f64(),
            samples: self.samples,
            fds_start: self.first.as_ref().map(|s| s.fds),
            fds_peak: (self.samples > 0).then_some(self.peak),
            fds_end: self.last.as_ref().map(|s| s.fds),
            growth,
            growth_by_kind,
            verdict,
            failures,
            command_exit,
            exit_code,
            sampling_error: self.error.clone(),
            backend: self.last.as_ref().map(|s| s.backend),
        }
    }
}

/// Sample `pid` (and with `children`, its descendants, summed into one; the
/// one loaded BPF program walks each of them in turn).
///
/// Descendants are read first and the command last: a parent that exits
/// hands its children to init and becomes a zombie in one step, so if the
/// scan missed children because the command was exiting, the command's own
/// sample (which rejects zombies) fails too, and no half-empty sample is kept.
fn take(
    root: &ProcRoot,
    sampler: &mut bpf::Sampler,
    pid: i32,
    expect: Option<&Identity>,
    children: bool,
) -> Result<Sample, sample::SampleError> {
    let mut kids = Vec::new();
    if children {
        for child in root.descendants(pid) {
            // A child may exit between listing and reading: skip it.
            if let Ok(c) = sampler.take(root, child, Census::Full, None) {
                kids.push(c);
            }
        }
    }
    let mut s = sampler.take(root, pid, Census::Full, expect)?;
    for c in &kids {
        s.merge(c);
    }
    Ok(s)
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
    let (mut sampler, mut fallback) = super::open_sampler(backend, Census::Full)?;
    signals::install_forwarding();
    let start = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    let pid = child.id() as i32;
    let mut obs = Observation {
        kept: gate.plot.as_ref().map(|_| Vec::new()),
        ..Default::default()
    };
    let mut identity: Option<Identity> = None;
    let status = loop {
        for sig in signals::take_forwarded() {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(pid, sig) };
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        match take(root, &mut sampler, pid, identity.as_ref(), children) {
            Ok(s) => {
                // Said once the /proc census has worked.
                if let Some(why) = fallback.take() {
                    eprintln!("fdwatch: {}", super::fallback_note(&why));
                }
                identity.get_or_insert_with(|| s.identity());
                obs.observe(s, start.elapsed(), gate.warmup);
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
    let outcome = obs.outcome(name, start.elapsed(), gate, Some(exit_code_of(status)));
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
    let (mut sampler, fallback) = super::open_sampler(backend, Census::Full)?;
    let first = sampler.take(root, pid, Census::Full, None)?;
    // Said once the /proc census has worked: an error stays the only line.
    if let Some(why) = fallback {
        eprintln!("fdwatch: {}", super::fallback_note(&why));
    }
    let identity = first.identity();
    let start = Instant::now();
    let mut obs = Observation {
        kept: gate.plot.as_ref().map(|_| Vec::new()),
        ..Default::default()
    };
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
        match sampler.take(root, pid, Census::Full, Some(&identity)) {
            Ok(s) => obs.observe(s, start.elapsed(), gate.warmup),
            Err(e) if e.target_gone() => {
                gone = Some(e.to_string());
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let mut outcome = obs.outcome(
        format!("assert: pid {pid} ({})", identity.comm),
        start.elapsed(),
        gate,
        None,
    );
    if let Some(g) = gone {
        // The service died during the assertion: that is a failure of the step.
        outcome
            .failures
            .push(format!("the process went away during the check: {g}"));
        outcome.exit_code = outcome.exit_code.max(2);
    }
    ci_report::emit(&outcome, gate.report.as_deref(), gate.junit.as_deref())?;
    plot(&obs, gate)?;
    Ok(outcome.exit_code)
}

fn plot(obs: &Observation, gate: &Gate) -> anyhow::Result<()> {
    if let (Some(svg), Some(samples)) = (&gate.plot, &obs.kept) {
        if !samples.is_empty() {
            let timeline = super::analyze::replay(samples, &gate.thresholds);
            crate::report::plot::plot_samples(samples, &timeline, svg)
                .with_context(|| format!("drawing {}", svg.display()))?;
        }
    }
    Ok(())
}

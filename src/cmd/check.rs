//! `fdwatch check`: a short burst of samples (plus the history kept in a
//! state file), one verdict per process, monitoring-plugin output.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::signals;
use super::targets::Targets;
use crate::diagnose::{Level, Thresholds};
use crate::monitor::{self, Session, SyscallMode};
use crate::report::nagios::{self, Checked};
use crate::report::prometheus;
use crate::sample::{bpf, Census, ProcRoot, Sample, SampleError};
use crate::state::LockedState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Nagios,
    Json,
    Prometheus,
}

pub struct CheckOptions {
    pub targets: Targets,
    pub samples: u64,
    pub interval: Duration,
    pub state: Option<PathBuf>,
    pub format: Format,
    /// For `--format prometheus`: the .prom file to write atomically.
    pub output: Option<PathBuf>,
    /// `-t`: the whole run's budget; UNKNOWN when it is spent.
    pub timeout: Duration,
    pub thresholds: Thresholds,
    pub census: Census,
    pub syscalls: SyscallMode,
    /// Who does a full census (`--backend`).
    pub backend: bpf::Choice,
}

/// Run the check; returns the exit code (the worst level).
pub fn run(root: &ProcRoot, opts: &CheckOptions) -> anyhow::Result<u8> {
    signals::install();
    let last_words = match opts.format {
        Format::Json => serde_json::json!({"level": "UNKNOWN", "error": signals::Stop::Timeout(opts.timeout).to_string()}).to_string(),
        _ => format!("FDWATCH UNKNOWN - {}", signals::Stop::Timeout(opts.timeout)),
    };
    signals::set_deadline(opts.timeout, Duration::from_secs(1), last_words, 3);
    let pids = opts.targets.resolve(root)?;
    // One program for every target; `--backend bpf` where it cannot run is
    // UNKNOWN with the reason, like any other error of a check.
    let mut census = monitor::Census::open(opts.backend, opts.census)?;
    if opts.samples == 1 {
        census.expect_one_sample();
    }
    let mut notes = Vec::new();
    // The state file's history first: each session starts from what earlier
    // runs saw of the same process (pid and start time).
    let mut locked = match &opts.state {
        Some(path) => {
            let l = LockedState::open(path, &|| signals::stop_reason().map(|s| s.to_string()))?;
            notes.extend(l.notes.iter().cloned());
            Some(l)
        }
        None => None,
    };
    let mut sessions: HashMap<i32, Session> = HashMap::new();
    let mut counting = false;
    for (i, pid) in pids.iter().enumerate() {
        let mut session = Session::new(*pid, opts.thresholds);
        // Say why counting is unavailable once, not once per process.
        let mode = if i > 0 && !counting {
            SyscallMode::Off
        } else {
            opts.syscalls
        };
        notes.extend(session.attach_syscalls(mode)?);
        counting |= session.counting_syscalls();
        sessions.insert(*pid, session);
    }
    // Burst: every target once per round.
    let mut bursts: HashMap<i32, Result<Vec<monitor::Tick>, SampleError>> = HashMap::new();
    let start = Instant::now();
    for round in 0..opts.samples {
        if round > 0
            && !signals::sleep(
                (start + opts.interval.mul_f64(round as f64))
                    .saturating_duration_since(Instant::now()),
            )
        {
            break;
        }
        for pid in &pids {
            let entry = bursts.entry(*pid).or_insert_with(|| Ok(Vec::new()));
            let Ok(list) = entry else { continue };
            let Some(session) = sessions.get_mut(pid) else {
                continue;
            };
            if round == 0 {
                // Restored once the first live sample names the process:
                // a reused pid must not inherit another process's history.
                match census.take(root, *pid, None) {
                    Ok(s) => {
                        if let Some(h) = locked
                            .as_ref()
                            .and_then(|l| l.state.history(*pid, s.start_time))
                        {
                            session.restore(&h.samples);
                        }
                        list.push(session.observe(s, true));
                    }
                    Err(e) => *entry = Err(e),
                }
                continue;
            }
            match session.tick(&mut census, root) {
                Ok(tick) => list.push(tick),
                // Gone after some samples: judge on what was seen.
                Err(e) if e.target_gone() && !list.is_empty() => {}
                Err(e) => *entry = Err(e),
            }
        }
    }

    if let Some(stop) = signals::stop_reason() {
        anyhow::bail!("{stop} during the burst of {} samples", opts.samples);
    }
    // Why `auto` used /proc: long output (and stderr), never the status line.
    // Said once a sample worked, so that an error stays the whole story.
    if bursts
        .values()
        .any(|b| b.as_ref().is_ok_and(|l| !l.is_empty()))
    {
        notes.extend(census.take_fallback_note());
    }
    let mut checked = Vec::new();
    for pid in &pids {
        let comm = root.comm(*pid).unwrap_or_else(|| "?".into());
        let mut rates = None;
        let outcome = match bursts.remove(pid) {
            Some(Ok(burst)) if !burst.is_empty() => {
                if let Some(l) = locked.as_mut() {
                    let samples: Vec<Sample> = burst.iter().map(|t| t.sample.clone()).collect();
                    l.state.append(&samples);
                }
                let (first, last) = (&burst[0], &burst[burst.len() - 1]);
                rates = (burst.len() > 1)
                    .then(|| crate::report::rates_between(&first.sample, &last.sample));
                Ok((last.sample.clone(), last.verdict.clone()))
            }
            Some(Err(e)) => Err(e.to_string()),
            _ => Err("no sample taken".to_string()),
        };
        checked.push(Checked {
            pid: *pid,
            comm,
            outcome,
            rates,
        });
    }
    if let Some(l) = locked.as_mut() {
        // Histories of processes that are gone are not worth keeping.
        l.state.forget_dead(|pid, start| {
            root.identity(pid)
                .map(|i| i.identity.start_time == start)
                .unwrap_or(false)
        });
        let before = l.notes.len();
        l.save()?;
        notes.extend(l.notes[before..].iter().cloned());
    }

    let level = nagios::worst(checked.iter().map(Checked::level));
    match opts.format {
        Format::Nagios => {
            super::print_line(nagios::render(&checked, &opts.thresholds, &notes).trim_end())?;
        }
        Format::Json => {
            let procs: Vec<serde_json::Value> = checked
                .iter()
                .map(|c| match &c.outcome {
                    Ok((s, v)) => serde_json::json!({"pid": c.pid, "comm": c.comm, "level": v.level, "summary": nagios::summary(c), "verdict": v, "sample": s}),
                    Err(e) => serde_json::json!({"pid": c.pid, "comm": c.comm, "level": Level::Unknown, "error": e}),
                })
                .collect();
            let doc = serde_json::json!({"level": level, "processes": procs, "notes": notes});
            super::print_line(&doc.to_string())?;
        }
        Format::Prometheus => {
            let entries: Vec<(&Sample, &crate::diagnose::Verdict)> = checked
                .iter()
                .filter_map(|c| c.outcome.as_ref().ok())
                .map(|(s, v)| (s, v))
                .collect();
            let text = prometheus::render(&entries);
            match &opts.output {
                Some(path) => crate::safe_fs::write_atomic(path, text.as_bytes())?,
                None => {
                    super::print_line(text.trim_end())?;
                }
            }
        }
    }
    for c in &checked {
        if let Err(e) = &c.outcome {
            eprintln!("fdwatch: pid {}: {e}", c.pid);
        }
    }
    for n in &notes {
        eprintln!("fdwatch: {n}");
    }
    Ok(level.exit_code())
}

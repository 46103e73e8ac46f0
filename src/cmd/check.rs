//! `fdwatch check`: a short burst of samples (plus the history kept in a
//! state file), one verdict per process, monitoring-plugin output — to
//! stdout or `--output FILE` in every format, an UNKNOWN answer included.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::signals;
use super::targets::{self, Candidate, Pick, Targets};
use crate::diagnose::{Level, Thresholds};
use crate::monitor::{self, Session, SyscallMode};
use crate::report::escape;
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
    /// Write the answer (any format) to this file atomically instead of stdout.
    pub output: Option<PathBuf>,
    /// `-t`: the whole run's budget; UNKNOWN when it is spent.
    pub timeout: Duration,
    pub thresholds: Thresholds,
    pub census: Census,
    pub syscalls: SyscallMode,
    /// `--stacks`: the top sites of the fds opened during the burst.
    pub stacks: bool,
    /// Who does a full census (`--backend`).
    pub backend: bpf::Choice,
    /// `-v`: notes on stderr too (they are always in the long output).
    pub verbose: u8,
}

/// What a check found, before it is delivered.
struct Answer {
    text: String,
    level: Level,
    /// One stderr line each: processes that could not be checked.
    errors: Vec<String>,
    /// Said on stderr always (a corrupt state file kept aside).
    loud: Vec<String>,
    /// Said on stderr with `-v` only: what fdwatch may not do here
    /// (privileges), look-alikes ignored. A cron job mails every stderr line.
    quiet: Vec<String>,
}

/// Run the check and answer; returns the exit code (the worst level, or
/// 3 UNKNOWN with the reason, in the asked format and place).
pub fn run(root: &ProcRoot, opts: &CheckOptions) -> u8 {
    match check(root, opts) {
        Ok(answer) => deliver(opts, answer),
        Err(e) => unknown(
            &e,
            opts.format,
            opts.output.as_deref(),
            &opts.targets.describe(),
        ),
    }
}

fn deliver(opts: &CheckOptions, a: Answer) -> u8 {
    if let Err(e) = put(opts.output.as_deref(), &a.text) {
        return unknown(&e, opts.format, None, &opts.targets.describe());
    }
    for e in &a.errors {
        eprintln!("fdwatch: {e}");
    }
    for n in a
        .loud
        .iter()
        .chain(a.quiet.iter().filter(|_| opts.verbose > 0))
    {
        eprintln!("fdwatch: {n}");
    }
    a.level.exit_code()
}

/// `text` to `output` (atomically, through safe_fs) or stdout.
fn put(output: Option<&Path>, text: &str) -> anyhow::Result<()> {
    match output {
        Some(path) => {
            let mut bytes = text.trim_end().as_bytes().to_vec();
            bytes.push(b'\n');
            crate::safe_fs::write_atomic(path, &bytes)?;
        }
        None => {
            super::print_line(text.trim_end())?;
        }
    }
    Ok(())
}

/// The UNKNOWN answer (exit 3) in `format`, to `output` or stdout, and the
/// reason once on stderr. A textfile collector then exports 3, not nothing.
pub fn unknown(e: &anyhow::Error, format: Format, output: Option<&Path>, target: &str) -> u8 {
    let msg = super::error_line(e);
    if let Err(werr) = put(output, &unknown_text(&msg, format, target)) {
        // The file cannot take it: the plugin line on stdout, both reasons.
        let both = format!("{msg}; {}", super::error_line(&werr));
        let _ = put(None, &unknown_text(&both, Format::Nagios, target));
        eprintln!("fdwatch: {}", escape::terminal(&both));
        return Level::Unknown.exit_code();
    }
    eprintln!("fdwatch: {}", escape::terminal(&msg));
    Level::Unknown.exit_code()
}

fn unknown_text(msg: &str, format: Format, target: &str) -> String {
    match format {
        Format::Json => serde_json::json!({"level": "UNKNOWN", "error": msg}).to_string(),
        Format::Prometheus => prometheus::check_verdict(target, Level::Unknown),
        Format::Nagios => format!("FDWATCH UNKNOWN - {}", escape::plugin_line(msg)),
    }
}

fn check(root: &ProcRoot, opts: &CheckOptions) -> anyhow::Result<Answer> {
    signals::install();
    let stop_text = signals::Stop::Timeout(opts.timeout).to_string();
    let last_words = unknown_text(&stop_text, opts.format, &opts.targets.describe());
    signals::set_deadline(
        opts.timeout,
        Duration::from_secs(1),
        last_words,
        opts.output.clone(),
        3,
    );
    if opts.syscalls == SyscallMode::On && opts.samples < 2 {
        anyhow::bail!(
            "--syscalls on needs --samples 2 or more: counts are rates over the burst, one sample has none"
        );
    }
    let found = opts.targets.candidates(root)?;
    // The state file's history first: each session starts from what earlier
    // runs saw of the same process (pid and start time).
    let mut loud = Vec::new();
    let mut quiet = Vec::new();
    let mut locked = match &opts.state {
        Some(path) => {
            let l = LockedState::open(path, &|| signals::stop_reason().map(|s| s.to_string()))?;
            loud.extend(l.notes.iter().cloned());
            Some(l)
        }
        None => None,
    };
    let targets = match locked.as_mut() {
        Some(l) if opts.targets.spoofable() => whose(opts, l, found, &mut quiet)?,
        _ => found,
    };
    let pids: Vec<i32> = targets.iter().map(|c| c.pid).collect();
    // One program for every target; `--backend bpf` where it cannot run is
    // UNKNOWN with the reason, like any other error of a check.
    let mut census = monitor::Census::open(opts.backend, opts.census)?;
    if opts.samples == 1 {
        census.expect_one_sample();
    }
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
        quiet.extend(session.attach_syscalls(mode)?);
        counting |= session.counting_syscalls();
        if opts.stacks {
            // Long output only (cron mails stderr): said once for all.
            for note in session.attach_stacks() {
                if !quiet.contains(&note) {
                    quiet.push(note);
                }
            }
        }
        sessions.insert(*pid, session);
    }
    let mut bursts = burst(
        root,
        opts,
        &pids,
        &mut sessions,
        &mut census,
        locked.as_ref(),
    );
    if let Some(stop) = signals::stop_reason() {
        anyhow::bail!("{stop} during the burst of {} samples", opts.samples);
    }
    // Why `auto` used /proc: long output (and stderr with -v), never the
    // status line. Said once a sample worked, so that an error stays the
    // whole story.
    if bursts
        .values()
        .any(|b| b.as_ref().is_ok_and(|l| !l.is_empty()))
    {
        quiet.extend(census.take_fallback_note());
    }
    let mut checked = Vec::new();
    let mut errors = Vec::new();
    for c in &targets {
        let pid = c.pid;
        // The burst's end: what the tracer saw of it, named.
        let stacks = sessions
            .get_mut(&pid)
            .and_then(|s| s.finish_stacks().cloned());
        let comm = root.comm(pid).unwrap_or_else(|| "?".into());
        let mut rates = None;
        let outcome = match bursts.remove(&pid) {
            Some(Ok(burst)) if !burst.is_empty() => {
                if let Some(l) = locked.as_mut() {
                    let samples: Vec<Sample> = burst.iter().map(|t| t.sample.clone()).collect();
                    l.state.append(&samples);
                    if let Some(uid) = c.uid {
                        let owner = crate::state::Owner {
                            uid,
                            exe: c.exe.clone(),
                        };
                        l.state.set_owner(pid, burst[0].sample.start_time, &owner);
                    }
                }
                let (first, last) = (&burst[0], &burst[burst.len() - 1]);
                rates = (burst.len() > 1)
                    .then(|| crate::report::rates_between(&first.sample, &last.sample));
                Ok((last.sample.clone(), last.verdict.clone()))
            }
            Some(Err(e)) => Err(e.to_string()),
            _ => Err("no sample taken".to_string()),
        };
        if let Err(e) = &outcome {
            errors.push(if nagios::names_pid(e, pid) {
                e.clone()
            } else {
                format!("pid {pid}: {e}")
            });
        }
        checked.push(Checked {
            pid,
            comm,
            outcome,
            rates,
            label: None,
            stacks,
        });
    }
    if let Some(l) = locked.as_mut() {
        // Histories of processes that are gone are not worth keeping.
        l.state.forget_dead(|pid, start| {
            root.identity(pid)
                .map(|i| i.identity.start_time == start)
                .unwrap_or(false)
        });
    }
    if checked.len() > 1 {
        let procs: Vec<(i32, u64)> = targets.iter().map(|c| (c.pid, c.start_time)).collect();
        let slots = match locked.as_mut() {
            Some(l) => l.state.slots(&procs),
            None => slots_by_age(&procs),
        };
        let name = opts.targets.label();
        for (c, slot) in checked.iter_mut().zip(slots) {
            c.label = Some(format!("{name}_{slot}"));
        }
    }
    if let Some(l) = locked.as_mut() {
        let before = l.notes.len();
        l.save()?;
        loud.extend(l.notes[before..].iter().cloned());
    }

    let level = crate::diagnose::worst(checked.iter().map(Checked::level));
    let notes: Vec<String> = loud.iter().chain(quiet.iter()).cloned().collect();
    let text = match opts.format {
        Format::Nagios => nagios::render(&checked, &opts.thresholds, &notes),
        Format::Json => {
            let procs: Vec<serde_json::Value> = checked
                .iter()
                .map(|c| match &c.outcome {
                    Ok((s, v)) => {
                        let mut p = serde_json::json!({"pid": c.pid, "comm": c.comm, "level": v.level, "summary": nagios::summary(c), "verdict": v, "sample": s});
                        if let Some(st) = &c.stacks {
                            p["stacks"] = serde_json::to_value(crate::report::stacks::brief(st))
                                .unwrap_or_default();
                        }
                        p
                    }
                    Err(e) => serde_json::json!({"pid": c.pid, "comm": c.comm, "level": Level::Unknown, "error": e}),
                })
                .collect();
            serde_json::json!({"level": level, "processes": procs, "notes": notes}).to_string()
        }
        Format::Prometheus => {
            let entries: Vec<(&Sample, &crate::diagnose::Verdict)> = checked
                .iter()
                .filter_map(|c| c.outcome.as_ref().ok())
                .map(|(s, v)| (s, v))
                .collect();
            let mut text = prometheus::render(&entries);
            text.push_str(&prometheus::check_verdict(&opts.targets.describe(), level));
            text
        }
    };
    Ok(Answer {
        text,
        level,
        errors,
        loud,
        quiet,
    })
}

/// Of a spoofable selector's candidates, the ones whose history this is
/// (cmd::targets::pick); look-alikes are noted, never sampled or saved.
fn whose(
    opts: &CheckOptions,
    l: &mut LockedState,
    found: Vec<Candidate>,
    quiet: &mut Vec<String>,
) -> anyhow::Result<Vec<Candidate>> {
    let selector = opts.targets.describe();
    let established = l.state.owners_of(&selector);
    let me = nix::unistd::geteuid().as_raw();
    match targets::pick(opts.targets.name.as_deref(), &found, &established, me) {
        Pick::Chosen {
            pids,
            establish,
            ignored,
        } => {
            l.state.establish(&selector, &establish);
            if !ignored.is_empty() {
                let owners: Vec<String> = l
                    .state
                    .owners_of(&selector)
                    .iter()
                    .map(|o| {
                        format!("uid {} {}", o.uid, o.exe.as_deref().unwrap_or("exe unreadable"))
                    })
                    .collect();
                quiet.push(format!(
                    "ignored {} other process{} answering to {selector}, not of its owner ({}): {}",
                    ignored.len(),
                    if ignored.len() == 1 { "" } else { "es" },
                    owners.join(", "),
                    targets::describe_all(&ignored)
                ));
            }
            Ok(found.into_iter().filter(|c| pids.contains(&c.pid)).collect())
        }
        Pick::Ambiguous(all) => anyhow::bail!(
            "{selector} matches processes of several owners and the state file names none: {} (narrow it with --exe or --pid)",
            targets::describe_all(&all)
        ),
        Pick::Stranger {
            established,
            others,
        } => {
            let owners: Vec<String> = established
                .iter()
                .map(|o| format!("uid {} {}", o.uid, o.exe.as_deref().unwrap_or("exe unreadable")))
                .collect();
            anyhow::bail!(
                "no process of {selector}'s owner ({}) runs; other owners' do: {} (remove the state file to accept them)",
                owners.join(", "),
                targets::describe_all(&others)
            )
        }
    }
}

/// Without a state file, slots by age: the oldest process is 0.
fn slots_by_age(procs: &[(i32, u64)]) -> Vec<u32> {
    let mut order: Vec<usize> = (0..procs.len()).collect();
    order.sort_by_key(|&i| (procs[i].1, procs[i].0));
    let mut slots = vec![0; procs.len()];
    for (rank, i) in order.into_iter().enumerate() {
        slots[i] = rank as u32;
    }
    slots
}

type Bursts = HashMap<i32, Result<Vec<monitor::Tick>, SampleError>>;

/// Every target once per round, `opts.samples` rounds.
fn burst(
    root: &ProcRoot,
    opts: &CheckOptions,
    pids: &[i32],
    sessions: &mut HashMap<i32, Session>,
    census: &mut monitor::Census,
    locked: Option<&LockedState>,
) -> Bursts {
    let mut bursts: Bursts = HashMap::new();
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
        for pid in pids {
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
                        if let Some(h) = locked.and_then(|l| l.state.history(*pid, s.start_time)) {
                            session.restore(&h.samples);
                        }
                        list.push(session.observe(s, true));
                    }
                    Err(e) => *entry = Err(e),
                }
                continue;
            }
            match session.tick(census, root) {
                Ok(tick) => list.push(tick),
                // Gone after some samples: judge on what was seen.
                Err(e) if e.target_gone() && !list.is_empty() => {}
                Err(e) => *entry = Err(e),
            }
        }
    }
    bursts
}

#[cfg(test)]
mod tests {
    #[test]
    fn slots_by_age_rank_the_oldest_first() {
        assert_eq!(
            super::slots_by_age(&[(30, 500), (10, 900), (20, 100)]),
            vec![1, 2, 0]
        );
    }
}

//! CI gates (`run`, `assert`): what a step's observation breaks, as typed
//! failures, the step's status (PASS, FAIL, UNKNOWN) and exit code derived
//! from them and the verdict, and the gates as ceilings a chart can draw.
//!
//! Precedence (docs/ci.md): the command's own failure first (its exit code,
//! or 128+signal); then 3 when nothing could be sampled; then 2 for a broken
//! `--max-fds` / `--max-growth` gate or a target that went away; then the
//! verdict's level when it reaches `--fail-on`; else 0. Plain data in, plain
//! data out: the drivers observe, `report::ci` words it.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};

use super::{Level, Verdict};
use crate::sample::{Backend, FdKind, Sample};

/// The limits a step is held to.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    pub max_fds: Option<u64>,
    /// (kind or total, max growth after warm-up)
    pub max_growth: Vec<(Option<FdKind>, u64)>,
    /// None: never fail on the verdict.
    pub fail_on: Option<Level>,
}

/// Why a step fails.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    FdsPeak {
        peak: u64,
        max: u64,
    },
    Growth {
        kind: Option<FdKind>,
        grew: i64,
        max: u64,
    },
    Verdict {
        level: Level,
        reason: String,
    },
    NoSample {
        why: String,
    },
    /// The step never got to watch anything: the command could not start,
    /// the census could not open. `why` is the whole sentence.
    NotStarted {
        why: String,
    },
    WentAway {
        why: String,
    },
}

impl Failure {
    /// A broken gate (exit 2), as opposed to a verdict that reached
    /// `--fail-on` or a check that could not be made.
    pub fn breaks_gate(&self) -> bool {
        !matches!(
            self,
            Failure::Verdict { .. } | Failure::NoSample { .. } | Failure::NotStarted { .. }
        )
    }

    /// The check could not be made (UNKNOWN), as opposed to a check that failed.
    pub fn is_unknown(&self) -> bool {
        matches!(self, Failure::NoSample { .. } | Failure::NotStarted { .. })
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::FdsPeak { peak, max } => write!(f, "fds peaked at {peak} (--max-fds {max})"),
            Failure::Growth { kind, grew, max } => {
                let (what, arg) = match kind {
                    Some(k) => (k.label().to_string(), format!("{}:{max}", k.name())),
                    None => ("open fds".to_string(), max.to_string()),
                };
                write!(
                    f,
                    "{what} grew by {grew} after warm-up (--max-growth {arg})"
                )
            }
            Failure::Verdict { level, reason } => write!(f, "verdict {}: {reason}", level.name()),
            Failure::NoSample { why } => write!(f, "no sample taken: {why}"),
            Failure::NotStarted { why } => f.write_str(why),
            Failure::WentAway { why } => write!(f, "the process went away during the check: {why}"),
        }
    }
}

/// What a step saw of its target.
pub struct Observed<'a> {
    pub first: Option<&'a Sample>,
    /// The first sample after `--warmup` (growth is measured from it).
    pub warm: Option<&'a Sample>,
    pub last: Option<&'a Sample>,
    pub peak: u64,
    pub samples: u64,
    /// Why nothing could be sampled, when that is known.
    pub error: Option<String>,
    pub verdict: Option<Verdict>,
    /// The target went away before the end (`assert`).
    pub gone: Option<String>,
    /// Why the step never started watching (the command could not start).
    pub not_started: Option<String>,
}

/// The step's result as CI shows it: the fd check passed, failed, or could
/// not be made (UNKNOWN: JUnit's `<error>`, exit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Unknown,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Unknown => "UNKNOWN",
        }
    }
}

/// Which option a [`Ceiling`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateKind {
    MaxFds,
    MaxGrowth,
}

/// A gate as a level the count must stay at or under: `--max-fds N` over the
/// whole step; `--max-growth [KIND:]N` as the warm-up point's count plus N,
/// from the warm-up point on (growth is judged at the end against it).
#[derive(Debug, Clone, PartialEq)]
pub struct Ceiling {
    pub gate: GateKind,
    /// None: the total; else one kind's count.
    pub kind: Option<FdKind>,
    /// The option's own value (N).
    pub max: u64,
    /// Unix time from which the ceiling applies.
    pub from: f64,
    /// The count the series may reach (for growth: base + N).
    pub at_most: u64,
    /// This gate failed the step.
    pub broken: bool,
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
    /// PASS, FAIL or UNKNOWN (nothing could be sampled).
    pub status: Status,
    /// Why the step fails (empty: it passes); JSON: one sentence each.
    #[serde(serialize_with = "sentences")]
    pub failures: Vec<Failure>,
    /// The command's exit code (run only); 128+N when killed by signal N.
    pub command_exit: Option<i32>,
    pub exit_code: i32,
    /// A sampling problem that is not a verdict (e.g. permission denied).
    pub sampling_error: Option<String>,
    /// Who classified the fds (`bpf` or `proc`), as of the last sample.
    pub backend: Option<Backend>,
    /// The gates as levels to draw (not in the JSON: the options are the user's own).
    #[serde(skip)]
    pub ceilings: Vec<Ceiling>,
}

fn sentences<S: Serializer>(failures: &[Failure], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(failures.iter().map(Failure::to_string))
}

/// Judge a step: its failures and exit code.
pub fn judge(
    name: String,
    duration_s: f64,
    seen: Observed,
    limits: &Limits,
    command_exit: Option<i32>,
) -> Outcome {
    let mut failures = Vec::new();
    // Without a warm-up sample (a command shorter than --warmup) growth is measured from the first.
    let base = seen.warm.or(seen.first);
    let (growth, growth_by_kind) = match (base, seen.last) {
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
    let mut ceilings = Vec::new();
    if let Some(max) = limits.max_fds {
        let broken = seen.peak > max;
        if broken {
            failures.push(Failure::FdsPeak {
                peak: seen.peak,
                max,
            });
        }
        if let Some(first) = seen.first {
            ceilings.push(Ceiling {
                gate: GateKind::MaxFds,
                kind: None,
                max,
                from: first.unix_time,
                at_most: max,
                broken,
            });
        }
    }
    for (kind, max) in &limits.max_growth {
        let grew = match kind {
            Some(k) => growth_by_kind.get(k).copied().unwrap_or(0),
            None => growth.unwrap_or(0),
        };
        let broken = grew > *max as i64;
        if broken {
            failures.push(Failure::Growth {
                kind: *kind,
                grew,
                max: *max,
            });
        }
        if let Some(b) = base {
            let from = match kind {
                Some(k) => b.kind(*k),
                None => b.fds,
            };
            ceilings.push(Ceiling {
                gate: GateKind::MaxGrowth,
                kind: *kind,
                max: *max,
                from: b.unix_time,
                at_most: from.saturating_add(*max),
                broken,
            });
        }
    }
    if let (Some(v), Some(fail_on)) = (&seen.verdict, limits.fail_on) {
        if v.level >= fail_on && v.level != Level::Unknown {
            failures.push(Failure::Verdict {
                level: v.level,
                reason: v.reasons.first().cloned().unwrap_or_default(),
            });
        }
    }
    if let Some(why) = &seen.gone {
        failures.push(Failure::WentAway { why: why.clone() });
    }
    let exit_code = match command_exit {
        Some(code) if code != 0 => code,
        _ if seen.samples == 0 => 3,
        _ if failures.iter().any(Failure::breaks_gate) => 2,
        _ if !failures.is_empty() => seen.verdict.as_ref().map(|v| v.level as i32).unwrap_or(2),
        _ => 0,
    };
    if let Some(why) = &seen.not_started {
        failures.push(Failure::NotStarted { why: why.clone() });
    } else if seen.samples == 0 {
        failures.push(Failure::NoSample {
            why: seen
                .error
                .clone()
                .unwrap_or_else(|| "the process ended before the first sample".into()),
        });
    }
    let status = if failures.iter().any(Failure::is_unknown) {
        Status::Unknown
    } else if failures.is_empty() {
        Status::Pass
    } else {
        Status::Fail
    };
    Outcome {
        name,
        duration_s,
        samples: seen.samples,
        fds_start: seen.first.map(|s| s.fds),
        fds_peak: (seen.samples > 0).then_some(seen.peak),
        fds_end: seen.last.map(|s| s.fds),
        growth,
        growth_by_kind,
        status,
        failures,
        command_exit,
        exit_code,
        sampling_error: seen.error,
        backend: seen.last.map(|s| s.backend),
        verdict: seen.verdict,
        ceilings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: f64, fds: u64, pipes: u64) -> Sample {
        let mut s = Sample::new(42, "svc", 1, t, t);
        s.fds = fds;
        s.kinds.insert(FdKind::Pipe, pipes);
        s
    }

    fn judged(samples: &[Sample], limits: &Limits, not_started: Option<&str>) -> Outcome {
        let peak = samples.iter().map(|s| s.fds).max().unwrap_or(0);
        let seen = Observed {
            first: samples.first(),
            warm: samples.get(1),
            last: samples.last(),
            peak,
            samples: samples.len() as u64,
            error: None,
            verdict: None,
            gone: None,
            not_started: not_started.map(str::to_string),
        };
        judge("run: x".into(), 1.0, seen, limits, Some(0))
    }

    /// Status, exit code and the ceilings a chart draws, by case.
    #[test]
    fn status_exit_and_ceilings() {
        let run = [sample(10.0, 5, 0), sample(11.0, 8, 2), sample(12.0, 30, 20)];
        let limits = Limits {
            max_fds: Some(25),
            max_growth: vec![(None, 50), (Some(FdKind::Pipe), 4)],
            fail_on: None,
        };
        let o = judged(&run, &limits, None);
        assert_eq!((o.status, o.exit_code), (Status::Fail, 2));
        assert_eq!(o.failures.len(), 2, "{:?}", o.failures);
        let c: Vec<(GateKind, Option<FdKind>, f64, u64, bool)> = o
            .ceilings
            .iter()
            .map(|c| (c.gate, c.kind, c.from, c.at_most, c.broken))
            .collect();
        assert_eq!(
            c,
            [
                // --max-fds over the whole step; growth from the warm-up sample.
                (GateKind::MaxFds, None, 10.0, 25, true),
                (GateKind::MaxGrowth, None, 11.0, 58, false),
                (GateKind::MaxGrowth, Some(FdKind::Pipe), 11.0, 6, true),
            ]
        );

        let loose = Limits {
            max_fds: Some(100),
            ..Limits::default()
        };
        let o = judged(&run, &loose, None);
        assert_eq!((o.status, o.exit_code), (Status::Pass, 0));

        // Nothing sampled: UNKNOWN; a command that never started says why.
        let o = judged(&[], &loose, Some("cannot start x: not found"));
        assert_eq!((o.status, o.exit_code), (Status::Unknown, 3));
        assert_eq!(
            o.failures,
            [Failure::NotStarted {
                why: "cannot start x: not found".into()
            }]
        );
        assert!(o.ceilings.is_empty());
        let o = judged(&[], &loose, None);
        assert_eq!(o.status, Status::Unknown);
        assert!(matches!(o.failures[..], [Failure::NoSample { .. }]));
    }
}

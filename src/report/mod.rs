//! Formatting only: the live screen, plain log lines and JSON Lines, from
//! plain data. Nothing here reads the kernel or decides a verdict.

pub mod ci;
pub mod escape;
pub mod json;
pub mod ls;
pub mod nagios;
pub mod plot;
pub mod prometheus;
pub mod screen;
pub mod stacks;
pub mod style;
pub mod timeline;
pub mod top;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::diagnose::Verdict;
use crate::sample::{FdKind, Sample};

/// Everything one refresh shows: the sample, what changed, the verdict.
pub struct View<'a> {
    pub sample: &'a Sample,
    pub previous: Option<&'a Sample>,
    pub first: &'a Sample,
    pub verdict: &'a Verdict,
    /// Number of this sample in the watch (1-based).
    pub index: u64,
    /// Recent total fd counts, oldest first (for the sparkline).
    pub recent: &'a [u64],
    /// `--stacks`: the top leak and churn sites (monitor::Session::stack_sites).
    pub stacks: Option<&'a crate::stacks::Snapshot>,
}

/// Change of one count since the previous sample and since the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Change {
    pub since_last: i64,
    pub since_start: i64,
}

/// Per-second rates from the activity counters of two samples.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Rates {
    pub syscr_per_s: Option<f64>,
    pub syscw_per_s: Option<f64>,
    pub voluntary_ctxt_switches_per_s: Option<f64>,
    pub nonvoluntary_ctxt_switches_per_s: Option<f64>,
    /// Exact syscall rates since the previous sample (when counted).
    #[serde(default)]
    pub syscalls: Option<crate::syscalls::SyscallRates>,
}

impl View<'_> {
    pub fn total_change(&self) -> Change {
        let now = self.sample.fds as i64;
        Change {
            since_last: self.previous.map(|p| now - p.fds as i64).unwrap_or(0),
            since_start: now - self.first.fds as i64,
        }
    }

    pub fn kind_changes(&self) -> BTreeMap<FdKind, Change> {
        let mut kinds: Vec<FdKind> = self.sample.kinds.keys().copied().collect();
        kinds.extend(self.first.kinds.keys().copied());
        if let Some(p) = self.previous {
            kinds.extend(p.kinds.keys().copied());
        }
        kinds
            .into_iter()
            .map(|k| {
                let now = self.sample.kind(k) as i64;
                let change = Change {
                    since_last: self.previous.map(|p| now - p.kind(k) as i64).unwrap_or(0),
                    since_start: now - self.first.kind(k) as i64,
                };
                (k, change)
            })
            .collect()
    }

    pub fn rates(&self) -> Rates {
        match self.previous {
            Some(prev) => rates_between(prev, self.sample),
            None => Rates::default(),
        }
    }
}

/// Per-second rates of the activity and syscall counters between two samples.
pub fn rates_between(prev: &Sample, cur: &Sample) -> Rates {
    let dt = cur.mono_time - prev.mono_time;
    let per_s = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(now), Some(was)) if dt > 0.0 && now >= was => Some((now - was) as f64 / dt),
        _ => None,
    };
    let (a, b) = (&cur.activity, &prev.activity);
    Rates {
        syscr_per_s: per_s(a.syscr, b.syscr),
        syscw_per_s: per_s(a.syscw, b.syscw),
        voluntary_ctxt_switches_per_s: per_s(a.voluntary_ctxt_switches, b.voluntary_ctxt_switches),
        nonvoluntary_ctxt_switches_per_s: per_s(
            a.nonvoluntary_ctxt_switches,
            b.nonvoluntary_ctxt_switches,
        ),
        syscalls: match (&cur.syscalls, &prev.syscalls) {
            (Some(now), Some(was)) if dt > 0.0 => Some(now.per_second(was, dt)),
            _ => None,
        },
    }
}

//! `fdwatch stacks --pid N`: attach the stack tracer, take a snapshot once a
//! second (addresses are named while the process lives) until `--for` ends,
//! Ctrl-C/SIGTERM, or the process exits, then print the report.

use std::time::{Duration, Instant};

use anyhow::Context;

use crate::cli::StacksArgs;
use crate::cmd::signals;
use crate::report::stacks as report;
use crate::stacks::{StacksError, Tracer};

/// Exit code when the tracer cannot run (UNKNOWN).
const EXIT_UNKNOWN: u8 = 3;

pub fn run(args: &StacksArgs) -> anyhow::Result<u8> {
    signals::install();
    let mut tracer = match Tracer::attach(args.pid) {
        Ok(t) => t,
        Err(e @ (StacksError::Unavailable(_) | StacksError::NoSuchProcess { .. })) => {
            eprintln!("fdwatch: stacks: {e}");
            return Ok(EXIT_UNKNOWN);
        }
        Err(e) => return Err(e).context("fdwatch stacks"),
    };
    eprintln!("{}", report::attached_line(args.pid, args.trace_for));
    let end = Instant::now() + args.trace_for;
    let mut snap = tracer.snapshot()?;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() || snap.exited {
            break;
        }
        if !signals::sleep(left.min(Duration::from_secs(1))) {
            snap = tracer.snapshot()?;
            break;
        }
        snap = tracer.snapshot()?;
    }
    // An exited process closed its fds: report what it had open before, as
    // the last live snapshot saw it, with the exit noted.
    let shown = snap.shown(tracer.last_live());
    let top = args.top as usize;
    let text = if args.json {
        report::json(&shown, top)
    } else if args.folded {
        report::folded(&shown)
    } else {
        report::text(&shown, top)
    };
    if !crate::cmd::print_line(text.trim_end_matches('\n'))? {
        return Ok(0);
    }
    Ok(0)
}

//! One small driver loop per mode. Drivers wire `sample` → `diagnose` →
//! `report`; they hold no logic of their own beyond pacing and I/O.

pub mod analyze;
pub mod check;
pub mod ci;
pub mod completions;
pub mod demo;
pub mod serve;
pub mod signals;
pub mod targets;
pub mod top;
pub mod watch;

use std::io::Write;

use crate::sample::{bpf, Census};

/// Write a line to stdout. A closed pipe (`fdwatch ... | head`) is reported
/// as `Ok(false)`: the caller stops quietly, with success.
pub fn print_line(line: &str) -> std::io::Result<bool> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{line}").and_then(|_| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e),
    }
}

/// The census backend a command asked for (`--backend`), loaded once for all
/// its samples (every process it samples shares the one BPF program), and
/// why `auto` fell back to /proc. A count-only census needs no backend.
/// `--backend bpf` where BPF cannot run is an error naming what is missing.
pub fn open_sampler(
    choice: bpf::Choice,
    census: Census,
) -> anyhow::Result<(bpf::Sampler, Option<bpf::Unavailable>)> {
    if census == Census::CountOnly {
        return Ok((bpf::Sampler::default(), None));
    }
    bpf::Sampler::open(choice).map_err(|e| anyhow::anyhow!("--backend bpf: {e}"))
}

/// What `auto` says, once, when it uses /proc (after `fdwatch: ` on stderr,
/// or as a `note:` of a check).
pub fn fallback_note(why: &bpf::Unavailable) -> String {
    format!("using the /proc census: {why}")
}

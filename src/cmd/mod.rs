//! One small driver loop per mode. Drivers wire `sample` → `diagnose` →
//! `report`; they hold no logic of their own beyond pacing and I/O.

pub mod analyze;
pub mod check;
pub mod ci;
pub mod completions;
pub mod demo;
pub mod serve;
pub mod signals;
pub mod stacks;
pub mod targets;
pub mod top;
pub mod watch;

use std::io::Write;

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

//! One small driver loop per mode. Drivers wire `sample` → `diagnose` →
//! `report`; they hold no logic of their own beyond pacing and I/O.

pub mod analyze;
pub mod check;
pub mod ci;
pub mod completions;
pub mod demo;
pub mod ls;
pub mod serve;
pub mod signals;
pub mod stacks;
pub mod targets;
pub mod term;
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

/// An error and its causes on one line, each said once: a cause whose text
/// the line already holds (an error that writes its source into its own
/// message) is not repeated (`Is a directory (os error 21)` once, not twice).
pub fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cause_already_said_is_not_repeated() {
        let io = std::io::Error::from_raw_os_error(21);
        let shown = io.to_string();
        #[derive(Debug, thiserror::Error)]
        #[error("reading /x: {source}")]
        struct Wraps {
            source: std::io::Error,
        }
        let e = anyhow::Error::new(Wraps { source: io }).context("listing processes");
        assert_eq!(
            super::error_line(&e),
            format!("listing processes: reading /x: {shown}")
        );
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(super::error_line(&e), "outer: inner");
    }
}

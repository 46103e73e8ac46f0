//! `fdwatch demo`: start the bundled workload (a netlink ROUTE leak under a
//! lowered soft limit) and watch it until it hits EMFILE.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::watch::{self, Output, WatchOptions};
use crate::diagnose::Thresholds;
use crate::sample::{bpf::Choice, Census, ProcRoot};

pub struct DemoOptions {
    pub rate: f64,
    pub soft_limit: u64,
    pub interval: Duration,
    pub output: Output,
    pub linger: Duration,
    /// Colour the levels (see `watch`).
    pub color: bool,
}

/// Kills the workload however the demo ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn run(opts: DemoOptions) -> anyhow::Result<watch::WatchEnd> {
    let exe = std::env::current_exe().context("finding fdwatch's own executable")?;
    let mut child = Child(
        Command::new(exe)
            .args(["workload", "--soft-limit", &opts.soft_limit.to_string()])
            .args([
                "--hold",
                "file:6",
                "--hold",
                "pipe:2",
                "--hold",
                "netlink:2",
                "--hold",
                "eventfd:1",
            ])
            .args(["--leak", &format!("netlink:{}", opts.rate)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the demo workload")?,
    );
    let stdout = child.0.stdout.take().context("workload stdout")?;
    let mut lines = std::io::BufReader::new(stdout).lines();
    let pid: i32 = match lines.next() {
        Some(Ok(line)) if line.starts_with("ready ") => {
            line[6..].trim().parse().context("workload pid")?
        }
        other => bail!("the demo workload did not start: {other:?}"),
    };
    // When the workload reports EMFILE, keep watching for `linger`, then stop.
    let emfile_at_ms = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    {
        let emfile_at_ms = emfile_at_ms.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if line.starts_with("emfile") {
                    emfile_at_ms.store(
                        started.elapsed().as_millis().max(1) as u64,
                        Ordering::SeqCst,
                    );
                }
            }
        });
    }
    if opts.output != Output::Json {
        eprintln!(
            "fdwatch demo: workload pid {pid} leaks {} netlink ROUTE sockets/s under a soft limit of {}; watching it with --warn-eta 45s --crit-eta 20s (Ctrl-C to stop)",
            opts.rate, opts.soft_limit
        );
    }
    let linger = opts.linger;
    let hit = emfile_at_ms.clone();
    let until = move || {
        let at = hit.load(Ordering::SeqCst);
        at > 0 && started.elapsed() >= Duration::from_millis(at) + linger
    };
    let end = watch::run(
        &ProcRoot::default(),
        WatchOptions {
            pid,
            interval: opts.interval,
            count: None,
            duration: Some(Duration::from_secs(600)),
            output: opts.output,
            record: None,
            plot: None,
            census: Census::Full,
            backend: Choice::Proc,
            color: opts.color,
            // The leak takes about a minute: thresholds scaled to it, so the
            // screen goes OK → WARNING → CRITICAL → EMFILE in one sitting.
            thresholds: Thresholds {
                warn_eta: 45.0,
                crit_eta: 20.0,
                ..Thresholds::default()
            },
            syscalls: super::watch::SyscallMode::Auto,
            stacks: false,
            until: Some(Box::new(until)),
        },
    )?;
    let hit_ms = emfile_at_ms.load(Ordering::SeqCst);
    if opts.output != Output::Json {
        let warned = end
            .first_warning
            .map(|w| format!("{w:.0}s"))
            .unwrap_or_else(|| "never".into());
        if hit_ms > 0 {
            let hit_s = hit_ms as f64 / 1000.0;
            let lead = end
                .first_warning
                .map(|w| format!(" — {:.0}s of warning", hit_s - w))
                .unwrap_or_default();
            eprintln!("fdwatch demo: first WARNING after {warned}; the workload hit EMFILE after {hit_s:.0}s{lead}");
        } else {
            eprintln!("fdwatch demo: first WARNING after {warned}; stopped before the workload hit EMFILE");
        }
    }
    drop(child);
    Ok(end)
}

//! Hold a `SyscallCounter` on a process, as `fdwatch` would, and print what it
//! counted: `cargo run --release --example count_syscalls -- PID SECONDS`.
//!
//! Reads once a second (fdwatch's default interval) and prints the final
//! cumulative counts as one JSON line on stdout; stops early if PID exits.
//! The backend is `FDWATCH_SYSCALLS_BACKEND` (auto, bpf or perf). On stderr:
//! the notes, and how long attaching and dropping the counter took.
//!
//! `PID,PID,...` counts several processes at once, as `fdwatch check` does
//! (one counter each; the BPF ones share one program): the benchmark uses it
//! to measure what counting N processes costs the others. The counts
//! printed are the first PID's.

use std::time::{Duration, Instant};

use fdwatch::syscalls::{SyscallCounter, SyscallError};

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let pids: Option<Vec<i32>> = args
        .first()
        .map(|a| a.split(',').map(|p| p.parse::<i32>().ok()).collect())
        .unwrap_or(None);
    let (Some(pids), Some(secs)) = (pids, args.get(1).and_then(|a| a.parse::<f64>().ok())) else {
        eprintln!("usage: count_syscalls PID[,PID...] SECONDS");
        return 3.into();
    };
    let t = Instant::now();
    let mut counters = Vec::new();
    for &pid in &pids {
        match SyscallCounter::attach(pid) {
            Ok((counter, notes)) => {
                for n in notes {
                    eprintln!("count_syscalls: {n}");
                }
                counters.push(counter);
            }
            Err(e) => {
                eprintln!("count_syscalls: {e}");
                return 3.into();
            }
        }
    }
    let attach = t.elapsed();
    let backend = counters[0].backend();
    let start = Instant::now();
    let mut last = counters[0].read().unwrap_or_default();
    while start.elapsed().as_secs_f64() < secs {
        std::thread::sleep(Duration::from_secs(1).min(Duration::from_secs_f64(
            (secs - start.elapsed().as_secs_f64()).max(0.0),
        )));
        match counters[0].read() {
            Ok(c) => last = c,
            Err(SyscallError::Exited { .. }) => break,
            Err(e) => {
                eprintln!("count_syscalls: {e}");
                return 3.into();
            }
        }
    }
    let t = Instant::now();
    drop(counters);
    let teardown = t.elapsed();
    println!(
        "{}",
        serde_json::to_string(&last).unwrap_or_else(|e| e.to_string())
    );
    eprintln!(
        "count_syscalls: backend {backend}, attach {:.1} ms, teardown {:.1} ms",
        attach.as_secs_f64() * 1e3,
        teardown.as_secs_f64() * 1e3
    );
    0.into()
}

//! Time one census of a process in-process, without fdwatch's start-up:
//! the BPF walk alone (iterator read + decode), a whole BPF sample, the churn
//! detection a watch runs on it, and a whole /proc sample. Used by
//! scripts/bench-bpf.sh.
//!
//!     cargo run --release --example census_time -- PID [ROUNDS]
//!
//! Prints one line per measurement: `name median_ms min_ms mean_ms fds`
//! (`bpf_load`: wall and CPU time of loading the program, once).

use std::time::Instant;

use fdwatch::sample::{self, bpf::BpfCensus, Census, ProcRoot};

fn stats(name: &str, mut ms: Vec<f64>, fds: u64) {
    ms.sort_by(|a, b| a.total_cmp(b));
    let median = ms[ms.len() / 2];
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    println!("{name} {median:.3} {:.3} {mean:.3} {fds}", ms[0]);
}

/// CPU time of this process, ms.
fn cpu_ms() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 * 1e3 + t.tv_nsec as f64 / 1e6
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let pid: i32 = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: census_time PID [ROUNDS]"))?
        .parse()?;
    let rounds: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(50);
    let root = ProcRoot::default();

    let (started, cpu) = (Instant::now(), cpu_ms());
    let mut bpf = BpfCensus::load()?;
    println!(
        "bpf_load {:.3} {:.3}",
        started.elapsed().as_secs_f64() * 1e3,
        cpu_ms() - cpu
    );

    let mut walk = Vec::new();
    let mut fds = 0;
    for _ in 0..rounds {
        let t = Instant::now();
        let c = bpf.walk(pid)?;
        walk.push(t.elapsed().as_secs_f64() * 1e3);
        fds = c.files;
    }
    stats("bpf_walk", walk, fds);

    let mut whole = Vec::new();
    let mut mark = Vec::new();
    let mut previous = None;
    for _ in 0..rounds {
        let t = Instant::now();
        let mut s = sample::take_with(
            &root,
            pid,
            Census::Full,
            None,
            Some(&mut bpf),
            &mut Default::default(),
        )?;
        whole.push(t.elapsed().as_secs_f64() * 1e3);
        fds = s.fds;
        if let Some(p) = &previous {
            let t = Instant::now();
            s.mark_new_inodes(p);
            mark.push(t.elapsed().as_secs_f64() * 1e3);
        }
        previous = Some(s);
    }
    stats("bpf_sample", whole, fds);
    stats("mark_new_inodes", mark, fds);

    let mut proc = Vec::new();
    for _ in 0..rounds.min(20) {
        let t = Instant::now();
        let s = sample::take(&root, pid, Census::Full, None)?;
        proc.push(t.elapsed().as_secs_f64() * 1e3);
        fds = s.fds;
    }
    stats("proc_sample", proc, fds);
    Ok(())
}

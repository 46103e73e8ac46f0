//! Time fdwatch's /proc census in-process (no exec, no start-up), two ways:
//!
//! - `proc_oneshot`: every sample from scratch, as `fdwatch --count 1` does;
//! - `proc_oneshot_census`: the census of such a sample alone (the fd walk
//!   with everything it needs: the count, the mount check, the socket
//!   tables, the classification): what the floor is compared with, since the
//!   floor reads no limits, io or status either;
//! - `proc_watch`: the later samples of a watch, where the census remembers
//!   what cannot change (the protocol of a socket in no table, by inode; what
//!   each device is) and skips the getxattr/readlink it would need.
//!
//!     cargo run --release --example proc_census_time -- PID [ROUNDS]
//!
//! Threads as fdwatch: `FDWATCH_CENSUS_THREADS` (1 = single-threaded).
//! Prints `name median_ms min_ms mean_ms fds` per line. Used by
//! scripts/bench-sample.sh.

use std::time::Instant;

use fdwatch::sample::{
    self,
    bpf::{Choice, Sampler},
    fds::ProcCache,
    Census, ProcRoot,
};

fn stats(name: &str, mut ms: Vec<f64>, fds: u64) {
    ms.sort_by(|a, b| a.total_cmp(b));
    let median = ms[ms.len() / 2];
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    println!("{name} {median:.3} {:.3} {mean:.3} {fds}", ms[0]);
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let pid: i32 = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: proc_census_time PID [ROUNDS]"))?
        .parse()?;
    let rounds: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(30);
    let root = ProcRoot::default();

    let mut fds = 0;
    let mut oneshot = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let s = sample::take(&root, pid, Census::Full, None)?;
        oneshot.push(t.elapsed().as_secs_f64() * 1e3);
        fds = s.fds;
    }
    stats("proc_oneshot", oneshot, fds);

    let uid = nix::sys::stat::stat(&root.pid_dir(pid))?.st_uid;
    let mut census = Vec::new();
    for _ in 0..rounds {
        let mut s = sample::Sample::new(pid, "", 0, 0.0, 0.0);
        let t = Instant::now();
        sample::fds::census(&root, pid, uid, &mut s, &mut ProcCache::for_one_sample())?;
        census.push(t.elapsed().as_secs_f64() * 1e3);
    }
    stats("proc_oneshot_census", census, fds);

    // What a sample costs besides its census (identity, limits, file-nr,
    // activity): a count-only sample, whose fd count is one stat.
    let mut rest = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        sample::take(&root, pid, Census::CountOnly, None)?;
        rest.push(t.elapsed().as_secs_f64() * 1e3);
    }
    stats("proc_count_only", rest, fds);

    let (mut sampler, _) = Sampler::open(Choice::Proc)?;
    sampler.take(&root, pid, Census::Full, None)?; // the first sample of the watch
    let mut watch = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let s = sampler.take(&root, pid, Census::Full, None)?;
        watch.push(t.elapsed().as_secs_f64() * 1e3);
        fds = s.fds;
    }
    stats("proc_watch", watch, fds);
    Ok(())
}

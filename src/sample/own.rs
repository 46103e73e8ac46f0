//! The exporter's own process, as the Prometheus client libraries describe
//! theirs (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_open_fds`, `process_max_fds`, `process_start_time_seconds`):
//! read from `<proc-root>/self` like any other process, so that an operator
//! sees what watching costs with the dashboards they already have.
//!
//! `self` is resolved to a pid first: under a proc root mounted from another
//! pid namespace (a DaemonSet's `/host/proc`), the link names this process as
//! that namespace numbers it. Only reads; names and units are `report`'s.

use std::path::Path;

use super::stat::parse_usage;
use super::{Identity, ProcRoot, SampleError};

/// What this process costs now.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct OwnProcess {
    /// User plus system CPU time, seconds.
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    /// Unix time the process started, seconds.
    pub start_time_seconds: Option<f64>,
    pub open_fds: Option<u64>,
    /// Soft RLIMIT_NOFILE; None when unlimited or unreadable.
    pub max_fds: Option<u64>,
}

/// Read this process through `root`. Fails when `self` or its `stat` cannot
/// be read (a fixture tree has neither); the fd count and limit are left
/// out when they alone cannot be read.
pub fn read(root: &ProcRoot) -> Result<OwnProcess, SampleError> {
    let link = root.path().join("self");
    let pid: i32 = std::fs::read_link(&link)
        .ok()
        .and_then(|t| t.to_str()?.parse().ok())
        .ok_or_else(|| SampleError::Malformed {
            path: link.display().to_string(),
            detail: "not a link to a pid".into(),
        })?;
    let stat_path = root.pid_dir(pid).join("stat");
    let text =
        read_text(&stat_path).map_err(|e| super::procroot::io_error(&stat_path, e, pid, 0))?;
    let usage = parse_usage(&text).ok_or_else(|| SampleError::Malformed {
        path: stat_path.display().to_string(),
        detail: "short or malformed".into(),
    })?;
    let ticks = sysconf(libc::_SC_CLK_TCK);
    let page = sysconf(libc::_SC_PAGESIZE);
    let boot = read_text(&root.path().join("stat"))
        .ok()
        .and_then(|t| parse_btime(&t));
    let who = Identity {
        pid,
        comm: "fdwatch".into(),
        start_time: usage.start_time,
    };
    let uid = nix::unistd::geteuid().as_raw();
    Ok(OwnProcess {
        cpu_seconds: ticks.map_or(0.0, |t| (usage.utime + usage.stime) as f64 / t as f64),
        resident_bytes: usage.rss_pages.saturating_mul(page.unwrap_or(4096)),
        start_time_seconds: boot
            .zip(ticks)
            .map(|(b, t)| b as f64 + usage.start_time as f64 / t as f64),
        open_fds: root.fd_count(pid, uid).ok(),
        max_fds: root.fd_limits(pid, &who).ok().and_then(|l| l.soft),
    })
}

/// The `btime` line of `/proc/stat`: the boot time, Unix seconds.
pub fn parse_btime(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// Small procfs texts (stat lines): a bounded read.
fn read_text(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(64 * 1024)
        .read_to_string(&mut text)?;
    Ok(text)
}

fn sysconf(name: libc::c_int) -> Option<u64> {
    // SAFETY: sysconf has no memory effects.
    let v = unsafe { libc::sysconf(name) };
    (v > 0).then_some(v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_time_line() {
        let text = "cpu  1 2 3 4\nintr 5\nctxt 6\nbtime 1764998400\nprocesses 7\n";
        assert_eq!(parse_btime(text), Some(1_764_998_400));
        assert_eq!(parse_btime("cpu 1\n"), None);
        assert_eq!(parse_btime("btime x\n"), None);
    }

    #[test]
    fn reads_itself_from_proc() {
        let own = read(&ProcRoot::default()).expect("/proc/self");
        // This test process holds stdin/out/err at least, and has run.
        assert!(own.open_fds.is_some_and(|n| n >= 3), "{own:?}");
        assert!(own.resident_bytes > 1024 * 1024, "{own:?}");
        assert!(own.cpu_seconds >= 0.0);
        let now = crate::sample::procroot::unix_now();
        let started = own.start_time_seconds.expect("start time");
        assert!(started <= now + 2.0 && started > now - 3600.0, "{started}");
        let (soft, _) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .expect("getrlimit");
        assert_eq!(own.max_fds, (soft != libc::RLIM_INFINITY).then_some(soft));
    }

    #[test]
    fn a_fixture_tree_has_no_self() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(&ProcRoot::new(dir.path())).is_err());
    }
}

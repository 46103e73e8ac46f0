//! The whole-host sampler shared by `top` and `serve`: every visible process
//! counted each refresh, one [`Tracker`] per process, ranked by time to EMFILE.
//!
//! It owns the per-process state across refreshes and keeps it bounded: a
//! process is keyed by (pid, start_time), so a reused pid starts a new story;
//! the state of a process that is gone is dropped at the refresh that misses
//! it; each tracker's series are bounded by `trend::History`. It never
//! formats: `report` renders a [`Snapshot`].
//!
//! Cost per process and refresh (docs/top-serve.md has the measurements):
//! one `fstat` on a held `O_PATH` handle of `/proc/<pid>/fd` — the count
//! (O(1) on Linux 6.2+) and, since the handle pins the process, proof that it
//! is still the same one. `/proc/<pid>/stat` is read when a process is first
//! seen, every [`STAT_EVERY`] refreshes (staggered by pid) and when its count
//! drops to 0 (a zombie?). `/proc/<pid>/limits` is read when a process is
//! first seen, then every [`LIMITS_EVERY`]..2×[`LIMITS_EVERY`] refreshes or
//! when the count moved by more than [`LIMITS_RECHECK_MOVE`] of the cached
//! soft limit: the limit changes only through setrlimit/prlimit (rare, mostly
//! at start-up or when a process prepares for more fds), while formatting the
//! `limits` text costs the kernel more than the count itself. Verdicts (trend
//! fits) are computed only for processes whose count ever changed: a flat
//! series has no trend to fit. The classified census (`Census::Full`, a
//! stat per fd) runs only for the first `classify` growing rows of a
//! refresh.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::diagnose::{Level, Thresholds, Tracker, Verdict};
use crate::monitor::Session;
use crate::sample::cgroup::{self, Workload};
use crate::sample::host::{self as scan, StatLine};
use crate::sample::procroot::{mono_now, unix_now};
use crate::sample::{self, Backend, Census, FdLimits, ProcRoot, Sample, SampleError, SystemFiles};

/// Re-read `/proc/<pid>/limits` at least every this many refreshes.
pub const LIMITS_EVERY: u64 = 30;
/// ... or when the count moved by more than this share of the cached soft limit.
pub const LIMITS_RECHECK_MOVE: f64 = 0.10;
/// Re-read `stat` of a held process (its comm, after an exec) every this
/// many refreshes; an exit shows sooner (the handle fails, or the count
/// drops to 0 and `stat` says zombie).
pub const STAT_EVERY: u64 = 30;

/// `serve --stacks`: stack tracers at most, one per process selected by
/// pid (each is a BPF program with maps of up to ~60 MiB of kernel memory
/// at their fullest, and a symbolizer in this process).
pub const MAX_STACK_PIDS: usize = 8;

/// Which processes a scan keeps. Every given criterion must match.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    pub pids: Vec<i32>,
    pub uid: Option<u32>,
    /// Glob on comm or argv[0]'s base name.
    pub name: Option<String>,
    pub exe: Option<PathBuf>,
    /// Prefix (whole components) of a path in /proc/PID/cgroup.
    pub cgroup: Option<String>,
    /// Container id (or its prefix) inside the cgroup path.
    pub container: Option<String>,
    /// The process whose pid this file holds, read again at every refresh
    /// (a daemon that restarts writes a new pid).
    pub pidfile: Option<PathBuf>,
}

impl Selector {
    pub fn is_empty(&self) -> bool {
        self.pidfile.is_none()
            && self.pids.is_empty()
            && self.uid.is_none()
            && self.name.is_none()
            && self.exe.is_none()
            && self.cgroup.is_none()
            && self.container.is_none()
    }

    /// Match a new process. Called once per (pid, start_time): the name,
    /// executable and cgroup are read then and not again.
    fn matches(
        &self,
        root: &ProcRoot,
        pid: i32,
        comm: &str,
        uid: u32,
        pidfile_pid: Option<i32>,
    ) -> bool {
        if !self.pids.is_empty() && !self.pids.contains(&pid) {
            return false;
        }
        if self.pidfile.is_some() && pidfile_pid != Some(pid) {
            return false;
        }
        if self.uid.is_some_and(|u| u != uid) {
            return false;
        }
        scan::process_matches(
            root,
            pid,
            comm,
            self.name.as_deref(),
            self.exe.as_deref(),
            self.cgroup.as_deref(),
            self.container.as_deref(),
        )
    }
}

#[derive(Debug, Clone)]
pub struct HostOptions {
    pub thresholds: Thresholds,
    /// Classified censuses per refresh (the first growing rows).
    pub classify: usize,
    /// `serve`: besides the selected processes, keep every process and
    /// export the top N by usage. `top`: None (the selector filters).
    pub top_by_usage: Option<usize>,
    /// `serve --stacks`: trace the stacks of the processes selected by pid
    /// (at most [`MAX_STACK_PIDS`]), their top sites in their rows.
    pub stacks: bool,
}

/// State kept for one process between refreshes.
struct Proc {
    start_time: u64,
    comm: String,
    uid: u32,
    selected: bool,
    limits: FdLimits,
    limits_at_fds: u64,
    limits_refresh: u64,
    /// The count ever changed: only then is a trend worth fitting.
    moved: bool,
    session: Session,
    seen: u64,
    /// Dominant growing kind from the last classified census.
    kind: Option<String>,
    /// Counted and shown (`top`: selected; `serve`: all but ourselves).
    counting: bool,
    /// Held handle on /proc/<pid>/fd (see `sample::host::FdDir`).
    dir: Option<scan::FdDir>,
    /// Refresh that last saw it alive.
    generation: u64,
    /// Its container and pod, read from its cgroup path when it first gets
    /// a row (a container's processes do not change cgroup).
    workload: Option<Workload>,
}

#[derive(Default)]
struct Tally {
    processes: usize,
    unreadable: usize,
    kernel_threads: usize,
}

enum Fast {
    /// Handled; true when counted.
    Done(bool),
    /// The held process is gone (the pid may be someone else's now).
    Gone,
    /// Not known, or no handle: take the slow path.
    Unknown,
}

/// One process in a snapshot: its latest sample and verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub pid: i32,
    pub start_time: u64,
    pub uid: u32,
    pub user: String,
    pub comm: String,
    pub fds: u64,
    pub soft_limit: Option<u64>,
    pub hard_limit: Option<u64>,
    pub usage: Option<f64>,
    /// fds per second (robust slope of the total); None while collecting.
    pub slope_per_s: Option<f64>,
    /// Seconds to EMFILE; None when not growing.
    pub eta_seconds: Option<f64>,
    /// The growing kind that drives the trend (classified rows only).
    pub kind: Option<String>,
    pub level: Level,
    pub reason: String,
    /// Matched the selector (always exported by `serve`).
    pub selected: bool,
    /// `container_id` and `pod_uid` (null for a process of the host).
    #[serde(flatten)]
    pub workload: Workload,
    #[serde(skip)]
    pub sample: Sample,
    #[serde(skip)]
    pub verdict: Verdict,
    /// `serve --stacks`: the top leak and churn sites (traced pids only).
    #[serde(skip)]
    pub stacks: Option<crate::stacks::Snapshot>,
}

/// The system file table and its own trend.
#[derive(Debug, Clone, Serialize)]
pub struct SystemRow {
    pub allocated: u64,
    pub max: u64,
    pub nr_open: u64,
    pub slope_per_s: Option<f64>,
    /// Seconds until fs.file-max (ENFILE); None when not growing.
    pub eta_seconds: Option<f64>,
}

/// What one refresh found, ranked. Plain data for the renderers.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub unix_time: f64,
    /// Seconds the refresh took.
    pub refresh_seconds: f64,
    /// Processes looked at (kernel threads excluded).
    pub processes: usize,
    /// Processes whose fds we may not read (never shown as zero fds).
    pub unreadable: usize,
    pub kernel_threads: usize,
    pub system: Option<SystemRow>,
    /// Refreshes whose reads failed (e.g. /proc unreadable), since start.
    pub errors_total: u64,
    pub last_error: Option<String>,
    /// Ranked; serialised by the renderers (cut to the rows shown).
    #[serde(skip)]
    pub rows: Vec<Row>,
}

/// Sort keys for the rows (also `top --sort`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SortKey {
    Eta,
    #[value(name = "use")]
    Usage,
    Fds,
    Slope,
    Pid,
    User,
    Command,
    Soft,
    Verdict,
}

pub struct Host {
    root: ProcRoot,
    selector: Selector,
    opts: HostOptions,
    procs: HashMap<i32, Proc>,
    users: HashMap<u32, String>,
    system: Tracker,
    refreshes: u64,
    errors_total: u64,
    last_error: Option<String>,
    buf: Vec<u8>,
    me: i32,
    is_procfs: bool,
    /// False once opening a handle failed (out of fds): read by path.
    handles_ok: bool,
    /// What the caller should say once (why a stack tracer is missing).
    notes: Vec<String>,
    /// The pid `--pidfile` held at this refresh (None: unreadable).
    pidfile_pid: Option<i32>,
}

impl Host {
    pub fn new(root: ProcRoot, selector: Selector, opts: HostOptions) -> Host {
        let is_procfs = nix::sys::statfs::statfs(root.path())
            .map(|s| s.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC)
            .unwrap_or(false);
        if is_procfs {
            scan::raise_fd_limit();
        }
        Host {
            is_procfs,
            handles_ok: true,
            root,
            selector,
            opts,
            procs: HashMap::new(),
            users: HashMap::new(),
            system: Tracker::new(),
            refreshes: 0,
            errors_total: 0,
            last_error: None,
            buf: Vec::with_capacity(512),
            me: std::process::id() as i32,
            notes: Vec::new(),
            pidfile_pid: None,
        }
    }

    /// Read `--pidfile` again. A new pid ends the old process's story here
    /// (it is no longer the one selected) and starts the new one's; an
    /// unreadable file selects nothing this refresh and is counted as an
    /// error.
    fn reread_pidfile(&mut self) {
        let Some(file) = &self.selector.pidfile else {
            return;
        };
        let now = match crate::sample::host::read_pidfile(file) {
            Ok(pid) => Some(pid),
            Err(e) => {
                self.errors_total += 1;
                self.last_error = Some(e.to_string());
                None
            }
        };
        if now != self.pidfile_pid {
            // Selection is decided once per process: both the old and the new
            // pid are judged afresh.
            for pid in [self.pidfile_pid, now].into_iter().flatten() {
                self.procs.remove(&pid);
            }
            self.pidfile_pid = now;
        }
    }

    /// Notes gathered since the last call (each said once by the caller).
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    /// `--stacks`: a new session of a process selected by its pid gets a
    /// stack tracer while fewer than [`MAX_STACK_PIDS`] are attached.
    fn maybe_trace(&mut self, pid: i32, session: &mut Session) {
        if !self.opts.stacks || !self.selector.pids.contains(&pid) {
            return;
        }
        let traced = self
            .procs
            .values()
            .filter(|p| p.session.tracing_stacks())
            .count();
        if traced >= MAX_STACK_PIDS {
            self.notes.push(format!(
                "--stacks: pid {pid} not traced: {MAX_STACK_PIDS} processes are traced already"
            ));
            return;
        }
        self.notes.extend(session.attach_stacks());
    }

    /// Reads that failed (listing /proc, the system file table), since start.
    pub fn errors_total(&self) -> u64 {
        self.errors_total
    }

    /// Number of processes with state (bounded by the processes alive).
    pub fn tracked(&self) -> usize {
        self.procs.len()
    }

    /// One refresh. A failure to list /proc is counted and returned; the
    /// caller keeps its last good snapshot.
    pub fn refresh(&mut self) -> Result<Snapshot, SampleError> {
        let started = std::time::Instant::now();
        self.refreshes += 1;
        let gen = self.refreshes;
        self.reread_pidfile();
        let pids = match self.root.pids() {
            Ok(p) => p,
            Err(e) => {
                self.errors_total += 1;
                self.last_error = Some(e.to_string());
                return Err(e);
            }
        };
        let system = match self.root.system_files() {
            Ok(s) => Some(s),
            Err(e) => {
                self.errors_total += 1;
                self.last_error = Some(e.to_string());
                None
            }
        };
        let mono = mono_now();
        let unix = unix_now();
        let mut live: Vec<i32> = Vec::with_capacity(pids.len());
        let mut tally = Tally::default();
        for pid in pids {
            match self.fast(pid, gen, mono, unix, &mut tally) {
                Fast::Done(counted) => {
                    if counted {
                        live.push(pid);
                    }
                    continue;
                }
                Fast::Gone => {
                    self.procs.remove(&pid); // maybe a reused pid: start again
                }
                Fast::Unknown => {}
            }
            let stat = match scan::read_stat(&self.root, pid, &mut self.buf) {
                Ok(s) => s,
                Err(_) => continue, // gone between readdir and read
            };
            if stat.is_kernel_thread() {
                tally.kernel_threads += 1;
                continue;
            }
            if stat.is_exiting() {
                continue;
            }
            if let Some(p) = self.procs.get(&pid) {
                if p.start_time != stat.start_time {
                    self.procs.remove(&pid);
                }
            }
            tally.processes += 1;
            match self.observe(pid, &stat, gen, mono, unix) {
                Ok(true) => live.push(pid),
                Ok(false) => {}
                Err(SampleError::PermissionDenied { .. }) => tally.unreadable += 1,
                Err(_) => {} // exited mid-read
            }
        }
        // Bounded memory: drop the state of every process not seen now.
        self.procs.retain(|_, p| p.generation == gen);

        let system_row = system.map(|s| self.observe_system(s, mono, unix));
        let mut rows = self.rows(&live);
        self.classify(&mut rows);
        Ok(Snapshot {
            unix_time: unix,
            refresh_seconds: started.elapsed().as_secs_f64(),
            processes: tally.processes,
            unreadable: tally.unreadable,
            kernel_threads: tally.kernel_threads,
            system: system_row,
            errors_total: self.errors_total,
            last_error: self.last_error.clone(),
            rows,
        })
    }

    /// A known process through its held `/proc/<pid>/fd` handle: one
    /// `fstat` (and, every [`STAT_EVERY`] refreshes, a read of `stat`).
    fn fast(&mut self, pid: i32, gen: u64, mono: f64, unix: f64, tally: &mut Tally) -> Fast {
        let Some(p) = self.procs.get_mut(&pid) else {
            return Fast::Unknown;
        };
        let Some(dir) = &p.dir else {
            return Fast::Unknown;
        };
        let Ok(size) = dir.size() else {
            return Fast::Gone;
        };
        // Staggered by pid so that the re-reads spread over the refreshes.
        let due = (gen + pid as u64).is_multiple_of(STAT_EVERY);
        if size == 0 || due {
            // An exiting process's fd table is empty (it is dropped before the
            // process becomes a zombie): check the state before showing 0, so
            // an exit is a process gone, not a drop to 0 fds.
            match scan::read_stat(&self.root, pid, &mut self.buf) {
                Ok(st) if st.is_exiting() || st.start_time != p.start_time => return Fast::Gone,
                Ok(st) => p.comm = st.comm,
                Err(_) => return Fast::Gone,
            }
        }
        p.generation = gen;
        tally.processes += 1;
        if !p.counting {
            return Fast::Done(false);
        }
        let fds = if size > 0 {
            size
        } else {
            match self.root.fd_count(pid, p.uid) {
                Ok(n) => n,
                Err(SampleError::PermissionDenied { .. }) => {
                    tally.unreadable += 1;
                    return Fast::Done(false);
                }
                Err(_) => return Fast::Gone,
            }
        };
        let refreshes = self.refreshes;
        let comm = p.comm.clone();
        match Self::count(&self.root, p, pid, comm, fds, refreshes, mono, unix) {
            Ok(()) => Fast::Done(true),
            Err(_) => Fast::Gone,
        }
    }

    /// Record one count: limits (cached), tracker.
    #[allow(clippy::too_many_arguments)]
    fn count(
        root: &ProcRoot,
        p: &mut Proc,
        pid: i32,
        comm: String,
        fds: u64,
        refreshes: u64,
        mono: f64,
        unix: f64,
    ) -> Result<(), SampleError> {
        let ident = sample::Identity {
            pid,
            comm,
            start_time: p.start_time,
        };
        let stale = p.seen == 0
            || refreshes.saturating_sub(p.limits_refresh)
                >= LIMITS_EVERY + (pid as u64 % LIMITS_EVERY)
            || p.limits.soft.is_some_and(|soft| {
                (fds as f64 - p.limits_at_fds as f64).abs() > LIMITS_RECHECK_MOVE * soft as f64
            });
        if stale {
            p.limits = root.fd_limits(pid, &ident)?;
            p.limits_at_fds = fds;
            p.limits_refresh = refreshes;
        }
        if p.session
            .tracker()
            .last()
            .is_some_and(|last| last.fds != fds)
        {
            p.moved = true;
        }
        let s = count_sample(ident, fds, p.limits, mono, unix);
        p.session.record(s, true);
        p.seen += 1;
        Ok(())
    }

    /// A process seen for the first time (or without a handle). Ok(false):
    /// known, not counted (not selected, or ourselves).
    fn observe(
        &mut self,
        pid: i32,
        stat: &StatLine,
        gen: u64,
        mono: f64,
        unix: f64,
    ) -> Result<bool, SampleError> {
        if !self.procs.contains_key(&pid) {
            let dir_path = self.root.pid_dir(pid);
            let uid = match std::fs::metadata(&dir_path) {
                Ok(m) => std::os::unix::fs::MetadataExt::uid(&m),
                Err(e) => return Err(crate::sample::procroot::io_error(&dir_path, e, pid, 0)),
            };
            let selected = if self.selector.is_empty() {
                self.opts.top_by_usage.is_none()
            } else {
                self.selector
                    .matches(&self.root, pid, &stat.comm, uid, self.pidfile_pid)
            };
            let counting = selected || (self.opts.top_by_usage.is_some() && pid != self.me);
            let mut session = Session::new(pid, self.opts.thresholds);
            if selected {
                self.maybe_trace(pid, &mut session);
            }
            // Hold a handle only where the kernel counts for us (procfs).
            let dir = if self.is_procfs && self.handles_ok {
                let d = scan::FdDir::open(&self.root, pid);
                if d.is_none() {
                    // Out of fds (or gone): read by path from now on.
                    self.handles_ok = false;
                }
                d
            } else {
                None
            };
            self.procs.insert(
                pid,
                Proc {
                    start_time: stat.start_time,
                    comm: stat.comm.clone(),
                    uid,
                    selected,
                    counting,
                    dir,
                    generation: gen,
                    limits: FdLimits::default(),
                    limits_at_fds: 0,
                    limits_refresh: 0,
                    moved: false,
                    session,
                    seen: 0,
                    kind: None,
                    workload: None,
                },
            );
        }
        let refreshes = self.refreshes;
        let Some(p) = self.procs.get_mut(&pid) else {
            return Ok(false);
        };
        p.generation = gen;
        p.comm.clone_from(&stat.comm);
        if !p.counting {
            return Ok(false);
        }
        let fds = self.root.fd_count(pid, p.uid)?;
        Self::count(
            &self.root,
            p,
            pid,
            stat.comm.clone(),
            fds,
            refreshes,
            mono,
            unix,
        )?;
        Ok(true)
    }

    fn observe_system(&mut self, s: SystemFiles, mono: f64, unix: f64) -> SystemRow {
        // The system table as a pseudo-process: its "soft limit" is file-max.
        let ident = sample::Identity {
            pid: 0,
            comm: "system".into(),
            start_time: 0,
        };
        let limits = FdLimits {
            soft: (s.max > 0 && s.max < i64::MAX as u64).then_some(s.max),
            hard: None,
        };
        let sample = count_sample(ident, s.allocated, limits, mono, unix);
        self.system.observe(&sample);
        let v = self.system.verdict(&self.opts.thresholds);
        SystemRow {
            allocated: s.allocated,
            max: s.max,
            nr_open: s.nr_open,
            slope_per_s: v.total.as_ref().map(|t| t.slope),
            eta_seconds: v.forecast.as_ref().map(|f| f.eta),
        }
    }

    fn user(&mut self, uid: u32) -> String {
        self.users
            .entry(uid)
            .or_insert_with(|| {
                nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                    .ok()
                    .flatten()
                    .map(|u| u.name)
                    .unwrap_or_else(|| uid.to_string())
            })
            .clone()
    }

    /// Rows for the live processes, ranked. Verdicts are fitted only where
    /// the count moved, or for rows that will be shown/exported.
    fn rows(&mut self, live: &[i32]) -> Vec<Row> {
        let th = self.opts.thresholds;
        // serve: only the selected ones plus the top N by usage get a row
        // (and a verdict), whatever the number of processes.
        let keep: Option<std::collections::HashSet<i32>> = self.opts.top_by_usage.map(|n| {
            let mut by_usage: Vec<(f64, u64, i32)> = live
                .iter()
                .filter_map(|pid| {
                    let last = self.procs.get(pid)?.session.tracker().last()?;
                    Some((last.usage_ratio().unwrap_or(0.0), last.fds, *pid))
                })
                .collect();
            by_usage.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)));
            by_usage.iter().take(n).map(|x| x.2).collect()
        });
        let mut rows: Vec<Row> = Vec::new();
        for pid in live {
            let Some(p) = self.procs.get_mut(pid) else {
                continue;
            };
            if keep
                .as_ref()
                .is_some_and(|k| !p.selected && !k.contains(pid))
            {
                continue;
            }
            let Some(last) = p.session.tracker().last() else {
                continue;
            };
            let verdict = if p.moved {
                p.session.verdict()
            } else {
                flat_verdict(last, p.session.tracker().samples(), &th)
            };
            let mut row = row_of(p, last, verdict);
            // Read once, for the processes that get a row (not every process).
            row.workload = p
                .workload
                .get_or_insert_with(|| cgroup::read(&self.root, *pid))
                .clone();
            rows.push(row);
        }
        for r in rows.iter_mut() {
            r.user = self.user(r.uid);
        }
        sort_rows(&mut rows, SortKey::Eta);
        rows
    }

    /// Classified census for the first `classify` growing rows: names the
    /// kind that grows. Bounded: at most `classify` readlink passes a refresh.
    fn classify(&mut self, rows: &mut [Row]) {
        let mut done = 0;
        for r in rows.iter_mut() {
            if done >= self.opts.classify {
                break;
            }
            let growing = r.verdict.total.as_ref().is_some_and(|t| t.growing);
            if !growing {
                continue;
            }
            done += 1;
            let Some(p) = self.procs.get_mut(&r.pid) else {
                continue;
            };
            let expect = sample::Identity {
                pid: r.pid,
                comm: p.comm.clone(),
                start_time: p.start_time,
            };
            let Ok(mut s) = sample::take(&self.root, r.pid, Census::Full, Some(&expect)) else {
                continue;
            };
            s.system = SystemFiles::default();
            let v = p.session.observe(s.clone(), true).verdict;
            p.kind = v
                .series
                .iter()
                .find(|st| st.growing && !st.series.contains(':'))
                .map(|st| st.series.clone())
                .or(p.kind.take());
            r.kind.clone_from(&p.kind);
            r.fds = s.fds;
            r.sample = s;
            r.verdict = v;
        }
        for r in rows.iter_mut() {
            if r.kind.is_none() {
                r.kind = self.procs.get(&r.pid).and_then(|p| p.kind.clone());
            }
        }
    }
}

fn count_sample(
    ident: sample::Identity,
    fds: u64,
    limits: FdLimits,
    mono: f64,
    unix: f64,
) -> Sample {
    let mut s = Sample::new(ident.pid, &ident.comm, ident.start_time, unix, mono);
    s.backend = Backend::Count;
    s.age = crate::sample::procroot::process_age(ident.start_time);
    s.fds = fds;
    s.limits = limits;
    // Per process, only the soft limit is forecast; the system table has its
    // own tracker (else every process would inherit its ETA).
    s.system = SystemFiles::default();
    s
}

/// The verdict of a process whose count never moved: no trend to fit, so
/// only the usage thresholds speak. Computed from a one-sample tracker so
/// the words stay `diagnose`'s.
fn flat_verdict(last: &Sample, samples: usize, th: &Thresholds) -> Verdict {
    let usage = last.usage_ratio();
    if usage.is_none_or(|u| u < th.warn_usage) {
        // Nothing to say but "steady": skip the tracker (most processes).
        return Verdict {
            level: Level::Ok,
            reasons: vec![format!("steady at {} fds", last.fds)],
            fds: last.fds,
            soft_limit: last.limits.soft,
            usage,
            forecast: None,
            total: None,
            series: Vec::new(),
            patterns: Vec::new(),
            syscalls: None,
            samples,
        };
    }
    let mut t = Tracker::new();
    t.observe(last);
    let mut v = t.verdict(th);
    v.samples = samples;
    if v.level == Level::Ok {
        v.reasons = vec![format!("steady at {} fds", last.fds)];
    }
    v
}

fn row_of(p: &Proc, last: &Sample, verdict: Verdict) -> Row {
    Row {
        pid: last.pid,
        start_time: p.start_time,
        uid: p.uid,
        user: String::new(),
        comm: p.comm.clone(),
        fds: last.fds,
        soft_limit: last.limits.soft,
        hard_limit: last.limits.hard,
        usage: last.usage_ratio(),
        slope_per_s: verdict.total.as_ref().map(|t| t.slope),
        eta_seconds: verdict.forecast.as_ref().map(|f| f.eta),
        kind: None,
        level: verdict.level,
        reason: verdict.reasons.first().cloned().unwrap_or_default(),
        selected: p.selected,
        workload: Workload::default(),
        sample: last.clone(),
        verdict,
        stacks: p.session.stack_sites().cloned(),
    }
}

/// Rank rows: by time to EMFILE (soonest first, none last), then usage,
/// then fds; or by the chosen column (largest first for numbers).
pub fn sort_rows(rows: &mut [Row], key: SortKey) {
    use std::cmp::Ordering;
    fn opt_desc(a: Option<f64>, b: Option<f64>) -> Ordering {
        match (a, b) {
            (Some(x), Some(y)) => y.total_cmp(&x),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        }
    }
    let default = |a: &Row, b: &Row| {
        let eta = match (a.eta_seconds, b.eta_seconds) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        eta.then(opt_desc(a.usage, b.usage))
            .then(b.fds.cmp(&a.fds))
            .then(a.pid.cmp(&b.pid))
    };
    rows.sort_by(|a, b| {
        let first = match key {
            SortKey::Eta => Ordering::Equal,
            SortKey::Usage => opt_desc(a.usage, b.usage),
            SortKey::Fds => b.fds.cmp(&a.fds),
            SortKey::Slope => opt_desc(a.slope_per_s, b.slope_per_s),
            SortKey::Pid => a.pid.cmp(&b.pid),
            SortKey::User => a.user.cmp(&b.user),
            SortKey::Command => a.comm.cmp(&b.comm),
            SortKey::Soft => opt_desc(
                a.soft_limit.map(|n| n as f64),
                b.soft_limit.map(|n| n as f64),
            ),
            SortKey::Verdict => b.level.cmp(&a.level),
        };
        first.then_with(|| default(a, b))
    });
}

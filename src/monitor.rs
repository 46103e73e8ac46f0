//! The one pipeline owner: census backend, syscall counter, history and
//! the previous sample, turned into one `(Sample, Verdict)` per tick.
//!
//! Every mode goes through here, so a rule lives in one place: `watch` and
//! `demo` tick a [`Session`] live, `check` restores one from its state file
//! and ticks it for its burst, `run`/`assert` tick one per command, `top` and
//! `serve` feed one per process with their cheap counts, and `analyze`
//! replays a recording through [`Session::observe`]. The session marks new
//! socket/pipe inodes against the previous *live* sample (churn evidence),
//! reads the syscall counter with each sample, and asks `diagnose` for the
//! verdict. It never prints and never paces: the drivers in `cmd` do.

use crate::diagnose::{Thresholds, Tracker, Verdict};
use crate::report::plot::Thinned;
use crate::report::timeline::Timeline;
use crate::sample::{self, bpf, Identity, ProcRoot, Sample, SampleError};
use crate::stacks::{self, StacksError, Tracer};
use crate::syscalls::{Backend as SyscallBackend, SyscallCounter, SyscallError};

/// Sites kept per list by a session that traces stacks (`--stacks`): what
/// every output shows at most.
pub const STACK_SITES: usize = 5;

/// The shortest time between two stack snapshots of a session. A snapshot
/// reads the tracer's maps and names the stacks it has not seen before
/// (each stack is named once and cached), so it is not free: every few
/// seconds, and once more at the end ([`Session::finish_stacks`]).
pub const STACKS_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// The stack tracer of one session and what it last said.
struct StackWatch {
    tracer: Tracer,
    taken: Option<std::time::Instant>,
    /// The last snapshot, top [`STACK_SITES`] of each list, as reported
    /// (after an exit: the last live leak sites).
    latest: Option<stacks::Snapshot>,
}

impl StackWatch {
    fn snapshot(&mut self) {
        // A read error keeps the last snapshot: the sites are extra, the
        // sample is what the mode is about.
        if let Ok(snap) = self.tracer.snapshot() {
            self.latest = Some(snap.shown(self.tracer.last_live()).top(STACK_SITES));
        }
        self.taken = Some(std::time::Instant::now());
    }
}

/// Whether to count syscalls exactly (BPF, else perf tracepoints).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyscallMode {
    /// Where allowed; otherwise say why once and carry on.
    Auto,
    /// Required: fail when not allowed.
    On,
    Off,
}

/// The census backend a command asked for (`--backend`), loaded once for
/// every sample of every process it looks at (the one BPF program walks
/// each in turn), and why `auto` fell back to /proc, said once.
pub struct Census {
    sampler: bpf::Sampler,
    kind: sample::Census,
    fallback: Option<bpf::Unavailable>,
    /// `run --children`: a command and its descendants, seen as one.
    children: bool,
    /// Reused for the exit check after each census (no allocation a sample).
    stat_buf: Vec<u8>,
}

impl Census {
    /// `--backend bpf` where BPF cannot run is an error naming what is
    /// missing. A count-only census needs no backend.
    pub fn open(choice: bpf::Choice, kind: sample::Census) -> anyhow::Result<Census> {
        let (sampler, fallback) = if kind == sample::Census::CountOnly {
            (bpf::Sampler::default(), None)
        } else {
            bpf::Sampler::open(choice).map_err(|e| anyhow::anyhow!("--backend bpf: {e}"))?
        };
        Ok(Census {
            sampler,
            kind,
            fallback,
            children: false,
            stat_buf: Vec::with_capacity(1024),
        })
    }

    /// Sum each target's descendants into its samples (`run --children`).
    pub fn with_children(mut self, children: bool) -> Census {
        self.children = children;
        self
    }

    /// A census that no later sample compares with may take shortcuts
    /// (sample::bpf::Sampler::expect_one_sample).
    pub fn expect_one_sample(&mut self) {
        self.sampler.expect_one_sample();
    }

    /// Why `auto` uses /proc, once: the caller says it after a sample
    /// worked, so that an error stays the whole story.
    pub fn take_fallback_note(&mut self) -> Option<String> {
        self.fallback
            .take()
            .map(|why| format!("using the /proc census: {why}"))
    }

    /// One sample of `pid`, checked against `expect` (a reused pid is an
    /// error). With children, descendants are read first and the command
    /// last: a parent that exits hands its children to init and becomes a
    /// zombie in one step, so if the scan missed children because the
    /// command was exiting, the command's own sample (which rejects
    /// zombies) fails too, and no half-empty sample is kept.
    pub fn take(
        &mut self,
        root: &ProcRoot,
        pid: i32,
        expect: Option<&Identity>,
    ) -> Result<Sample, SampleError> {
        let mut kids = Vec::new();
        if self.children {
            for child in root.descendants(pid) {
                // A child may exit between listing and reading: skip it.
                if let Ok(c) = self.sampler.take(root, child, self.kind, None) {
                    kids.push(c);
                }
            }
        }
        let mut s = self.sampler.take(root, pid, self.kind, expect)?;
        // An exiting process (PF_EXITING, set at the start of do_exit) loses
        // its fd table before it becomes a zombie: a census in that window
        // reads a few fds or none, which the trend would take for a drop (a
        // leak's last sample at 0 fds turned `run`'s verdict into "not
        // growing"). Checked after the census, so the window is covered.
        if exiting(root, pid, &mut self.stat_buf) {
            return Err(SampleError::Exited { pid, comm: s.comm });
        }
        for c in &kids {
            s.merge(c);
        }
        Ok(s)
    }
}

/// The process has begun to exit (or is gone): its fds are no longer its own.
fn exiting(root: &ProcRoot, pid: i32, buf: &mut Vec<u8>) -> bool {
    match sample::host::read_stat(root, pid, buf) {
        Ok(st) => st.is_exiting(),
        Err(_) => true,
    }
}

/// One tick of a session: the sample as judged, and the verdict after it.
pub struct Tick {
    pub sample: Sample,
    pub verdict: Verdict,
}

/// One process's pipeline: history, previous sample, syscall counter.
pub struct Session {
    pid: i32,
    thresholds: Thresholds,
    tracker: Tracker,
    counter: Option<SyscallCounter>,
    identity: Option<Identity>,
    /// The tracker's last sample was taken live by this session (restored
    /// history has no inodes to compare with).
    live_previous: bool,
    /// `--stacks`: the leak and churn sites of the process.
    stacks: Option<StackWatch>,
}

impl Session {
    pub fn new(pid: i32, thresholds: Thresholds) -> Session {
        Session {
            pid,
            thresholds,
            tracker: Tracker::new(),
            counter: None,
            identity: None,
            live_previous: false,
            stacks: None,
        }
    }

    /// Attach the stack tracer (`--stacks`, docs/stacks.md): from now on
    /// the session keeps the top leak and churn sites, refreshed with the
    /// live samples at most every [`STACKS_EVERY`]. Returns what to tell
    /// the user: nothing when tracing, else one line saying what is missing
    /// (the rest of the mode carries on unchanged).
    pub fn attach_stacks(&mut self) -> Vec<String> {
        match Tracer::attach(self.pid) {
            Ok(tracer) => {
                self.stacks = Some(StackWatch {
                    tracer,
                    taken: None,
                    latest: None,
                });
                Vec::new()
            }
            // The census reports a missing process with its own error.
            Err(StacksError::NoSuchProcess { .. }) => Vec::new(),
            Err(e) => vec![format!("--stacks: {e}; carrying on without stack sites")],
        }
    }

    pub fn tracing_stacks(&self) -> bool {
        self.stacks.is_some()
    }

    /// The top leak and churn sites as of the last stack snapshot (None
    /// without `--stacks`, or before the first snapshot).
    pub fn stack_sites(&self) -> Option<&stacks::Snapshot> {
        self.stacks.as_ref().and_then(|w| w.latest.as_ref())
    }

    /// A stack snapshot now, whatever the cadence: the end of a mode (the
    /// last sample of a burst, a command that exited).
    pub fn finish_stacks(&mut self) -> Option<&stacks::Snapshot> {
        let w = self.stacks.as_mut()?;
        w.snapshot();
        w.latest.as_ref()
    }

    /// A stack snapshot if the last one is [`STACKS_EVERY`] old.
    fn poll_stacks(&mut self) {
        if let Some(w) = self.stacks.as_mut() {
            if w.taken.is_none_or(|t| t.elapsed() >= STACKS_EVERY) {
                w.snapshot();
            }
        }
    }

    /// Attach the syscall counter per `mode`. Returns what to tell the
    /// user: nothing when counting with BPF (the default); the notes when
    /// counting with perf (why not BPF, e.g. tracefs mounted); in `Auto`,
    /// why counting is unavailable. `On` fails when it cannot count.
    pub fn attach_syscalls(&mut self, mode: SyscallMode) -> anyhow::Result<Vec<String>> {
        if mode == SyscallMode::Off {
            return Ok(Vec::new());
        }
        match SyscallCounter::attach(self.pid) {
            Ok((counter, notes)) => {
                let notes = if counter.backend_kind() == SyscallBackend::Bpf {
                    Vec::new()
                } else {
                    notes
                };
                self.counter = Some(counter);
                Ok(notes)
            }
            // The census reports a missing process with its own error.
            Err(SyscallError::Exited { .. }) => Ok(Vec::new()),
            Err(e) if mode == SyscallMode::On => Err(e.into()),
            Err(e) => Ok(vec![format!("{e}; carrying on with the sampled view")]),
        }
    }

    pub fn counting_syscalls(&self) -> bool {
        self.counter.is_some()
    }

    /// Feed history kept elsewhere (a state file) before the live samples.
    pub fn restore<'a>(&mut self, history: impl IntoIterator<Item = &'a Sample>) {
        let mut any = false;
        for s in history {
            self.tracker.observe(s);
            any = true;
        }
        self.live_previous = false;
        // A forecast confirmed by the restored history stays confirmed (the
        // tracker remembers it only when a verdict is made): judge it once,
        // so a check resumed from its state file says what a watch that never
        // stopped would say, even when this run's fit window is shorter.
        if any {
            let _ = self.verdict();
        }
    }

    /// Take one sample live and judge it.
    pub fn tick(&mut self, census: &mut Census, root: &ProcRoot) -> Result<Tick, SampleError> {
        let s = self.take(census, root)?;
        Ok(self.judge(s, true))
    }

    /// Take one sample live (with the counter's counts) without judging it
    /// yet: a driver that attaches the counter only once the target proved
    /// readable adds the counts with [`Session::counts`], then observes.
    pub fn take(&mut self, census: &mut Census, root: &ProcRoot) -> Result<Sample, SampleError> {
        let mut s = census.take(root, self.pid, self.identity.as_ref())?;
        s.syscalls = self.counts();
        Ok(s)
    }

    /// The syscall counter's cumulative counts now, when counting.
    pub fn counts(&mut self) -> Option<crate::syscalls::SyscallCounts> {
        self.counter.as_mut().and_then(|c| c.read().ok())
    }

    /// Judge a sample taken elsewhere (a replayed recording, a host-wide
    /// count). Live samples mark their new inodes against the previous one.
    pub fn observe(&mut self, s: Sample, live: bool) -> Tick {
        self.judge(s, live)
    }

    fn judge(&mut self, s: Sample, live: bool) -> Tick {
        let s = self.record(s, live);
        let verdict = self.tracker.verdict(&self.thresholds);
        Tick { sample: s, verdict }
    }

    /// Feed a sample without asking for a verdict (`top` and `serve` count
    /// every process each refresh, and fit trends only where a row needs one).
    pub fn record(&mut self, mut s: Sample, live: bool) -> Sample {
        if live {
            self.identity.get_or_insert_with(|| s.identity());
        }
        if live && self.live_previous {
            if let Some(prev) = self.tracker.last() {
                // A count has no inodes: every socket would look new.
                if prev.pid == s.pid
                    && prev.start_time == s.start_time
                    && prev.backend != sample::Backend::Count
                {
                    s.mark_new_inodes(prev);
                }
            }
        }
        self.tracker.observe(&s);
        self.live_previous = live;
        if live {
            self.poll_stacks();
        }
        s
    }

    /// The verdict on what was seen so far, without a new sample.
    pub fn verdict(&self) -> Verdict {
        self.tracker.verdict(&self.thresholds)
    }

    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }
}

/// Replay samples (what a run kept) through a session, as the live view
/// judged them, and remember the verdicts.
pub fn replay(samples: &[Sample], th: &Thresholds) -> Timeline {
    let mut r = Replay::new(false);
    for s in samples {
        r.push(Box::new(s.clone()), th);
    }
    r.finish(th);
    r.timeline
}

/// The replay of one series (a recording) through a [`Session`], sample by
/// sample, in bounded memory: the session's bounded history, the timeline's
/// spans and thinned steps, and (for `--plot`) a thinned copy of the series.
/// Recorded samples carry the new-inode counts their live session marked.
pub struct Replay {
    session: Option<Session>,
    pub timeline: Timeline,
    /// pid, comm and start time of the first sample.
    pub who: Option<(i32, String, u64)>,
    pub plot: Option<Thinned>,
}

impl Replay {
    pub fn new(plot: bool) -> Replay {
        Replay {
            session: None,
            timeline: Timeline::new(),
            who: None,
            plot: plot.then(Thinned::new),
        }
    }

    pub fn push(&mut self, s: Box<Sample>, th: &Thresholds) {
        let session = self.session.get_or_insert_with(|| Session::new(s.pid, *th));
        let s = Box::new(session.record(*s, false));
        if self.timeline.observe(&s) {
            self.timeline.record(&session.verdict());
        }
        if self.who.is_none() {
            self.who = Some((s.pid, s.comm.clone(), s.start_time));
        }
        if let Some(p) = &mut self.plot {
            p.push(*s);
        }
    }

    /// The end of the series: the final verdict is the last sample's.
    pub fn finish(&mut self, th: &Thresholds) {
        if !self.timeline.recorded_last() {
            let session = self.session.get_or_insert_with(|| Session::new(0, *th));
            self.timeline.record(&session.verdict());
        }
    }
}

/// Plot the samples of one process (pid and start time) found in a recording:
/// `watch --record FILE --plot SVG` draws its own run this way at the end.
pub fn plot_recording(
    record: &std::path::Path,
    pid: i32,
    start_time: u64,
    th: &Thresholds,
    svg: &std::path::Path,
) -> anyhow::Result<()> {
    let mut reader = crate::input::open(record, Some(crate::input::Format::Jsonl))?;
    let mut replay = Replay::new(true);
    for item in reader.by_ref() {
        let item = item?;
        if item.sample.pid == pid && item.sample.start_time == start_time {
            replay.push(item.sample, th);
        }
    }
    replay.finish(th);
    let samples = replay.plot.map(|p| p.samples()).unwrap_or_default();
    if samples.is_empty() {
        anyhow::bail!("{}: no samples of pid {pid} to plot", record.display());
    }
    crate::report::plot::plot_samples(&samples, &replay.timeline, svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixture /proc with pid 4242 holding one fd, its stat flags given.
    fn fixture(flags: u32) -> (tempfile::TempDir, ProcRoot) {
        let tmp = tempfile::tempdir().unwrap();
        let from = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/proc");
        let root = tmp.path().join("proc");
        crate::sample::fixture_tests::copy_tree(&from, &root);
        let stat = root.join("4242/stat");
        let text = std::fs::read_to_string(&stat).unwrap();
        // Field 9 (flags) is the 7th after the `)`.
        let close = text.rfind(')').unwrap();
        let mut fields: Vec<String> = text[close + 2..].split(' ').map(str::to_string).collect();
        fields[6] = flags.to_string();
        std::fs::write(&stat, format!("{} {}", &text[..=close], fields.join(" "))).unwrap();
        let fd = root.join("4242/fd");
        std::fs::create_dir_all(&fd).unwrap();
        std::os::unix::fs::symlink("/dev/null", fd.join("0")).unwrap();
        (tmp, ProcRoot::new(root))
    }

    /// Issue 15 (BPF `run` leak read "not growing"): a census taken while
    /// the process exits sees its fd table emptied, a drop that never
    /// happened. The census refuses an exiting process, as it refuses a zombie.
    #[test]
    fn an_exiting_process_is_gone_not_a_drop() {
        let mut census = Census::open(bpf::Choice::Proc, sample::Census::Full).unwrap();
        let (_t, root) = fixture(0x0040_0000);
        let s = census
            .take(&root, 4242, None)
            .expect("a live process samples");
        assert_eq!(s.fds, 1);
        let (_t, root) = fixture(0x0040_0000 | crate::sample::stat::PF_EXITING);
        let err = census.take(&root, 4242, None).expect_err("exiting");
        assert!(
            matches!(err, SampleError::Exited { pid: 4242, .. }) && err.target_gone(),
            "{err}"
        );
    }
}

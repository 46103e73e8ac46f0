//! `fdwatch run -- CMD` and `fdwatch assert --pid N --for D`: watch a command
//! (or a running service) in a CI step, judge it, and fail the step if it leaks.
//!
//! Exit code precedence (docs/ci.md): the command's own failure first (its exit
//! code, or 128+signal); then 3 when fdwatch could not sample at all; then 2
//! for a broken `--max-fds` / `--max-growth` gate; then the verdict's level
//! (1 or 2) when it reaches `--fail-on`; else 0. The gates are judged in
//! `diagnose::gate`, worded in `report::ci`; this driver starts the command,
//! paces the samples and prints.

use std::io::{IsTerminal, Write as _};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};

use super::signals;
use crate::diagnose::{gate, Level, Thresholds};
use crate::monitor::{self, Session};
use crate::report::ci as ci_report;
use crate::sample::{bpf, Census, FdKind, ProcRoot, Sample};

#[derive(Debug, Clone)]
pub struct Gate {
    pub max_fds: Option<u64>,
    /// (kind or total, max growth)
    pub max_growth: Vec<(Option<FdKind>, u64)>,
    pub warmup: Duration,
    /// None: never fail on the verdict.
    pub fail_on: Option<Level>,
    pub report: Option<PathBuf>,
    pub junit: Option<PathBuf>,
    /// Draw the run as an SVG at the end.
    pub plot: Option<PathBuf>,
    /// `--stacks`: trace the stacks that open fds, report the top sites.
    pub stacks: bool,
    pub thresholds: Thresholds,
}

/// `N` or `KIND:N`.
pub fn parse_growth(s: &str) -> anyhow::Result<(Option<FdKind>, u64)> {
    let (kind, n) = match s.split_once(':') {
        Some((k, n)) => {
            let kind = FdKind::from_name(k).with_context(|| {
                format!("--max-growth: unknown kind '{k}' (kinds: docs/json-schema.md)")
            })?;
            (Some(kind), n)
        }
        None => (None, s),
    };
    let n: u64 = n
        .parse()
        .with_context(|| format!("--max-growth: '{n}' is not a count"))?;
    Ok((kind, n))
}

pub use crate::diagnose::gate::Outcome;

/// What a watch of one target collects.
struct Observation {
    session: Session,
    first: Option<Sample>,
    warm: Option<Sample>,
    last: Option<Sample>,
    peak: u64,
    samples: u64,
    error: Option<String>,
    /// The samples replayed for the plot (thinned: bounded memory however
    /// long the step), kept only when a plot is asked for.
    kept: Option<monitor::Replay>,
}

impl Observation {
    fn new(pid: i32, gate: &Gate) -> Observation {
        Observation {
            session: Session::new(pid, gate.thresholds),
            first: None,
            warm: None,
            last: None,
            peak: 0,
            samples: 0,
            error: None,
            kept: gate.plot.as_ref().map(|_| monitor::Replay::new(true)),
        }
    }

    fn observe(&mut self, tick: monitor::Tick, since_start: Duration, warmup: Duration) {
        let s = tick.sample;
        self.peak = self.peak.max(s.fds);
        self.samples += 1;
        if self.first.is_none() {
            self.first = Some(s.clone());
        }
        if self.warm.is_none() && since_start >= warmup {
            self.warm = Some(s.clone());
        }
        if let Some(kept) = self.kept.as_mut() {
            kept.push(Box::new(s.clone()), self.session.thresholds());
        }
        self.last = Some(s);
    }

    fn outcome(&self, name: String, duration: Duration, gate: &Gate, end: End) -> Outcome {
        let seen = gate::Observed {
            first: self.first.as_ref(),
            warm: self.warm.as_ref(),
            last: self.last.as_ref(),
            peak: self.peak,
            samples: self.samples,
            error: self.error.clone(),
            verdict: self.last.as_ref().map(|_| self.session.verdict()),
            gone: end.gone,
            not_started: end.not_started,
        };
        let limits = gate::Limits {
            max_fds: gate.max_fds,
            max_growth: gate.max_growth.clone(),
            fail_on: gate.fail_on,
        };
        gate::judge(
            name,
            duration.as_secs_f64(),
            seen,
            &limits,
            end.command_exit,
        )
    }
}

/// How a step ended, besides what was sampled.
#[derive(Default)]
struct End {
    command_exit: Option<i32>,
    gone: Option<String>,
    not_started: Option<String>,
}

fn exit_code_of(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// The JUnit suite's host and start time.
fn step(started: SystemTime) -> ci_report::Step {
    let hostname = nix::sys::utsname::uname()
        .map(|u| u.nodename().to_string_lossy().into_owned())
        .unwrap_or_default();
    let started = started
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    ci_report::Step {
        hostname: if hostname.is_empty() {
            "localhost".into()
        } else {
            hostname
        },
        started,
    }
}

/// Print and write the step's reports, then its exit code.
fn finish(
    obs: &mut Observation,
    outcome: &Outcome,
    started: SystemTime,
    gate: &Gate,
) -> anyhow::Result<i32> {
    // The last stack snapshot: after a command's exit, its leak sites as
    // last seen alive (monitor::Session::finish_stacks).
    let stacks = obs.session.finish_stacks().cloned();
    ci_report::emit(
        outcome,
        &step(started),
        gate.report.as_deref(),
        gate.junit.as_deref(),
        stacks.as_ref(),
    )?;
    plot(obs, outcome, gate)?;
    Ok(outcome.exit_code)
}

/// The raw ptrace(2) system call: the same argument types with glibc and
/// musl, and async-signal-safe (it runs between fork and exec).
fn ptrace(request: libc::c_long, pid: libc::pid_t, addr: usize, data: usize) -> libc::c_long {
    // SAFETY: every request used here takes plain integers or a pointer to
    // a live value of ours.
    unsafe { libc::syscall(libc::SYS_ptrace, request, pid as libc::c_long, addr, data) }
}

/// Every signal but SIGTRAP (SIGKILL and SIGSTOP cannot be blocked anyway).
fn all_but_sigtrap() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; the calls fill it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::sigdelset(&mut set, libc::SIGTRAP);
        set
    }
}

/// Whether starting `program` traced keeps its meaning. The kernel runs a
/// set-user-ID, set-group-ID or file-capability program *without* those
/// privileges when an unprivileged process traces its exec, so an
/// unprivileged fdwatch starts such a program untraced (it could not read a
/// privileged process's fds anyway). Root's tracing leaves them intact.
fn may_trace(program: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    let Some(path) = find_program(program) else {
        // Not found: spawn reports it.
        return true;
    };
    use std::os::unix::fs::PermissionsExt;
    let setid = std::fs::metadata(&path)
        .map(|m| m.permissions().mode() & 0o6000 != 0)
        .unwrap_or(false);
    let caps = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).is_ok_and(|p| {
        // SAFETY: a NUL-terminated path and name; a size query (no buffer).
        unsafe {
            libc::getxattr(
                p.as_ptr(),
                c"security.capability".as_ptr(),
                std::ptr::null_mut(),
                0,
            ) >= 0
        }
    });
    !setid && !caps
}

/// The file `execvp` would run for `program`: itself when it names a path,
/// else the first executable file of that name in `$PATH`.
fn find_program(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The command, started so that it cannot end before its first sample.
enum Launch {
    /// Stopped by the kernel right after its exec, before the program's
    /// first instruction: sample it, then [`resume`] it.
    Stopped(Child),
    /// Not traced (refused by seccomp or Yama, or see [`may_trace`]): it
    /// runs already, and a command that ends at once may end before its
    /// first sample.
    Running(Child),
    /// It ended before its exec stop (killed by SIGKILL meanwhile); reaped.
    Ended(ExitStatus),
}

/// Start the command under `PTRACE_TRACEME`: the kernel stops a traced
/// process with SIGTRAP when its `execve` succeeds, before the new program
/// runs, so the first sample is the program's own (its inherited fds, its
/// limits, its name), however short the program. `fdwatch run -- true`
/// otherwise raced `true`'s exit and lost (exit 3, "no sample taken").
///
/// Between fork and exec every signal but SIGTRAP is blocked: a traced
/// process stops on any signal it receives, and a stop there would hang
/// `spawn`, which waits for the exec. The tracer restores the mask (empty,
/// as `Command` sets it) at the exec stop with `PTRACE_SETSIGMASK`, so a
/// signal that came meanwhile is delivered to the program as it starts.
fn launch(program: &str, args: &[String]) -> std::io::Result<Launch> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    use std::os::unix::process::ExitStatusExt;

    // The child says whether tracing took: a byte on a close-on-exec pipe,
    // written before its exec (so it is there when spawn returns).
    let (mut said, tell) = std::io::pipe()?;
    let tell_fd = tell.as_raw_fd();
    let mut cmd = Command::new(program);
    cmd.args(args);
    let blocked = all_but_sigtrap();
    let trace = may_trace(program);
    // SAFETY: the closure makes only async-signal-safe system calls
    // (sigprocmask, ptrace, write) on values copied into it.
    unsafe {
        cmd.pre_exec(move || {
            if !trace {
                libc::write(tell_fd, b"N".as_ptr().cast(), 1);
                return Ok(());
            }
            libc::sigprocmask(libc::SIG_SETMASK, &blocked, std::ptr::null_mut());
            let traced = ptrace(libc::PTRACE_TRACEME as libc::c_long, 0, 0, 0) == 0;
            if !traced {
                let empty: libc::sigset_t = std::mem::zeroed();
                libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            }
            let byte = if traced { b'T' } else { b'N' };
            libc::write(tell_fd, (&byte as *const u8).cast(), 1);
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    drop(tell);
    let mut byte = [0u8; 1];
    let traced = matches!(std::io::Read::read(&mut said, &mut byte), Ok(1)) && byte[0] == b'T';
    if !traced {
        return Ok(Launch::Running(child));
    }
    let pid = child.id() as libc::pid_t;
    // The exec stop comes at once (the exec is done when spawn returns);
    // SIGSTOP, which cannot be blocked, may come first: let it through.
    loop {
        let mut status = 0;
        // SAFETY: waitpid on our own child, status into a local.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if libc::WIFSTOPPED(status) {
            let sig = libc::WSTOPSIG(status);
            if sig == libc::SIGTRAP {
                return Ok(Launch::Stopped(child));
            }
            ptrace(libc::PTRACE_CONT as libc::c_long, pid, 0, sig as usize);
            continue;
        }
        return Ok(Launch::Ended(ExitStatus::from_raw(status)));
    }
}

/// Let a command stopped at its exec run: its signal mask back to empty,
/// the exec's SIGTRAP dropped, no longer traced.
fn resume(child: &Child) {
    let pid = child.id() as libc::pid_t;
    // SAFETY: an empty sigset_t, read by the kernel during the call.
    let empty: libc::sigset_t = unsafe { std::mem::zeroed() };
    // The kernel's sigset is 8 bytes on every Linux architecture we build for.
    ptrace(
        libc::PTRACE_SETSIGMASK as libc::c_long,
        pid,
        8,
        &empty as *const libc::sigset_t as usize,
    );
    ptrace(libc::PTRACE_DETACH as libc::c_long, pid, 0, 0);
}

pub fn run(
    root: &ProcRoot,
    command: &[String],
    interval: Duration,
    children: bool,
    backend: bpf::Choice,
    gate: &Gate,
) -> anyhow::Result<i32> {
    let Some((program, args)) = command.split_first() else {
        bail!("run needs a command after --")
    };
    let started = SystemTime::now();
    let start = Instant::now();
    let name = format!("run: {}", command.join(" "));
    let mut obs = Observation::new(0, gate);
    let not_started = |obs: &mut Observation, why: String| {
        let outcome = obs.outcome(
            name.clone(),
            start.elapsed(),
            gate,
            End {
                not_started: Some(why),
                ..End::default()
            },
        );
        finish(obs, &outcome, started, gate)
    };
    // Before the command starts: `--backend bpf` where it cannot run is an
    // error (exit 3) and the command never runs.
    let mut census = match monitor::Census::open(backend, Census::Full) {
        Ok(c) => c.with_children(children),
        Err(e) => return not_started(&mut obs, format!("{e:#}")),
    };
    signals::install_forwarding();
    let launched = match launch(program, args) {
        Ok(l) => l,
        Err(e) => return not_started(&mut obs, format!("cannot start {program}: {e}")),
    };
    let (mut child, stopped) = match launched {
        Launch::Stopped(c) => (c, true),
        Launch::Running(c) => (c, false),
        Launch::Ended(status) => {
            let outcome = obs.outcome(
                name,
                start.elapsed(),
                gate,
                End {
                    command_exit: Some(exit_code_of(status)),
                    ..End::default()
                },
            );
            return finish(&mut obs, &outcome, started, gate);
        }
    };
    let pid = child.id() as i32;
    obs.session = Session::new(pid, gate.thresholds);
    if gate.stacks {
        // Attached while the program waits at its exec stop (when traced):
        // every fd it opens is seen.
        for note in obs.session.attach_stacks() {
            eprintln!("fdwatch: {}", crate::report::escape::terminal(&note));
        }
    }
    let tick = |obs: &mut Observation, census: &mut monitor::Census| {
        match obs.session.tick(census, root) {
            Ok(tick) => {
                // Said once the /proc census has worked.
                if let Some(note) = census.take_fallback_note() {
                    eprintln!("fdwatch: {note}");
                }
                obs.observe(tick, start.elapsed(), gate.warmup);
            }
            Err(e) if e.target_gone() => {}
            Err(e) => obs.error = Some(e.to_string()),
        }
    };
    // The first sample, of the program before it runs.
    let mut ticks = 0u32;
    if stopped {
        tick(&mut obs, &mut census);
        ticks += 1;
        resume(&child);
    }
    let status = loop {
        for sig in signals::take_forwarded() {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(pid, sig) };
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let next = start + interval * ticks;
        while Instant::now() < next {
            if child.try_wait()?.is_some() || signals::take_forwarded_pending() {
                break;
            }
            std::thread::sleep(
                Duration::from_millis(10).min(next.saturating_duration_since(Instant::now())),
            );
        }
        if Instant::now() < next {
            // Ended or signalled: the top of the loop sees which.
            continue;
        }
        tick(&mut obs, &mut census);
        ticks += 1;
    };
    let outcome = obs.outcome(
        name,
        start.elapsed(),
        gate,
        End {
            command_exit: Some(exit_code_of(status)),
            ..End::default()
        },
    );
    finish(&mut obs, &outcome, started, gate)
}

/// How often `assert` says where it is when stderr is not a terminal: ten
/// lines over the step, one every 1 to 10 seconds.
fn heartbeat_every(watch_for: Duration) -> Duration {
    (watch_for / 10).clamp(Duration::from_secs(1), Duration::from_secs(10))
}

pub fn assert(
    root: &ProcRoot,
    pid: i32,
    watch_for: Duration,
    interval: Duration,
    backend: bpf::Choice,
    gate: &Gate,
) -> anyhow::Result<i32> {
    signals::install();
    let started = SystemTime::now();
    let mut obs = Observation::new(pid, gate);
    let unknown = |obs: &mut Observation, end: End| {
        let outcome = obs.outcome(format!("assert: pid {pid}"), Duration::ZERO, gate, end);
        finish(obs, &outcome, started, gate)
    };
    let mut census = match monitor::Census::open(backend, Census::Full) {
        Ok(c) => c,
        Err(e) => {
            let end = End {
                not_started: Some(format!("{e:#}")),
                ..End::default()
            };
            return unknown(&mut obs, end);
        }
    };
    let first = match obs.session.tick(&mut census, root) {
        Ok(t) => t,
        Err(e) => {
            let end = End {
                not_started: Some(e.to_string()),
                ..End::default()
            };
            return unknown(&mut obs, end);
        }
    };
    // Said once the /proc census has worked: an error stays the only line.
    if let Some(note) = census.take_fallback_note() {
        eprintln!("fdwatch: {note}");
    }
    let identity = first.sample.identity();
    if gate.stacks {
        for note in obs.session.attach_stacks() {
            eprintln!("fdwatch: {}", crate::report::escape::terminal(&note));
        }
    }
    let start = Instant::now();
    obs.observe(first, Duration::ZERO, gate.warmup);
    let live = std::io::stderr().is_terminal();
    let every = heartbeat_every(watch_for);
    let mut next_beat = every;
    let mut gone = None;
    let mut level = obs.session.verdict().level;
    loop {
        let elapsed = start.elapsed();
        let (fds, base) = (
            obs.last.as_ref().map_or(0, |s| s.fds),
            obs.first.as_ref().map_or(0, |s| s.fds),
        );
        let growth = fds as i64 - base as i64;
        if live {
            let line = ci_report::progress(elapsed.min(watch_for), watch_for, fds, growth, level);
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K{line}");
            let _ = err.flush();
        } else if elapsed >= next_beat && elapsed < watch_for {
            eprintln!(
                "{}",
                ci_report::heartbeat(
                    elapsed,
                    watch_for,
                    obs.samples,
                    fds,
                    obs.peak,
                    growth,
                    level
                )
            );
            while next_beat <= elapsed {
                next_beat += every;
            }
        }
        if elapsed >= watch_for {
            break;
        }
        let next = start + interval * (obs.samples as u32);
        if !signals::sleep(
            next.saturating_duration_since(Instant::now())
                .min(watch_for.saturating_sub(start.elapsed())),
        ) {
            break;
        }
        match obs.session.tick(&mut census, root) {
            Ok(tick) => {
                level = tick.verdict.level;
                obs.observe(tick, start.elapsed(), gate.warmup);
            }
            Err(e) if e.target_gone() => {
                gone = Some(e.to_string());
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    if live {
        // The status line makes way for the report.
        eprint!("\r\x1b[2K");
    }
    // The service dying during the assertion is a failure of the step.
    let outcome = obs.outcome(
        format!("assert: pid {pid} ({})", identity.comm),
        start.elapsed(),
        gate,
        End {
            gone,
            ..End::default()
        },
    );
    finish(&mut obs, &outcome, started, gate)
}

fn plot(obs: &Observation, outcome: &Outcome, gate: &Gate) -> anyhow::Result<()> {
    if let (Some(svg), Some(replay)) = (&gate.plot, &obs.kept) {
        let Some(samples) = replay.plot.as_ref().map(|p| p.samples()) else {
            return Ok(());
        };
        if !samples.is_empty() {
            let mut timeline = replay.timeline.clone();
            if !timeline.recorded_last() {
                timeline.record(&obs.session.verdict());
            }
            crate::report::plot::plot_step(&samples, &timeline, outcome, svg)
                .with_context(|| format!("drawing {}", svg.display()))?;
        }
    }
    Ok(())
}

//! Ctrl-C, SIGTERM and a deadline (`check -t`) end fdwatch cleanly: a flag
//! the loops poll, and the reason to print.
//!
//! The handler is installed without `SA_RESTART`, so a blocking system call
//! returns EINTR instead of resuming; every wait in fdwatch is a bounded
//! sleep or poll that looks at [`stop_requested`] at least twice a second.
//! A deadline also arms a watchdog thread that prints the caller's last line
//! and exits if the main thread is still busy a second after it.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The signal that asked us to stop (0: none yet).
static STOP: AtomicI32 = AtomicI32::new(0);
/// `check -t`: when the run must give up, and the budget it was given.
static DEADLINE: OnceLock<(Instant, Duration)> = OnceLock::new();

extern "C" fn on_signal(sig: libc::c_int) {
    STOP.store(sig, Ordering::SeqCst);
}

/// Install the handlers (idempotent).
pub fn install() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    // No SA_RESTART: a read or open blocked in the kernel returns EINTR.
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic.
        let _ = unsafe { sigaction(sig, &action) };
    }
}

/// Why a run stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Signal(i32),
    Timeout(Duration),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Signal(s) => {
                let name = nix::sys::signal::Signal::try_from(*s)
                    .map(|s| s.as_str())
                    .unwrap_or("a signal");
                write!(f, "stopped by {name}")
            }
            Stop::Timeout(d) => write!(f, "timed out after {}", seconds(*d)),
        }
    }
}

/// `10s`, `2.5s`: how a plugin's timeout is usually written back.
fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{}s", s as u64)
    } else {
        format!("{s:.1}s")
    }
}

/// Give the run `budget` from now: [`stop_requested`] turns true when it is
/// spent. If the main thread has not ended `grace` after that (stuck in a
/// call that cannot be interrupted), the watchdog writes `last_words` to
/// `output` (a check's `--output` file, so a textfile collector exports the
/// UNKNOWN rather than a stale answer) or else to stdout, and exits with
/// `code`. Only the first call counts.
pub fn set_deadline(
    budget: Duration,
    grace: Duration,
    last_words: String,
    output: Option<std::path::PathBuf>,
    code: i32,
) {
    let end = Instant::now() + budget;
    if DEADLINE.set((end, budget)).is_err() {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("fdwatch-deadline".into())
        .spawn(move || {
            std::thread::sleep((end + grace).saturating_duration_since(Instant::now()));
            let line = format!("{}\n", last_words.trim_end());
            let written = output
                .as_deref()
                .is_some_and(|path| crate::safe_fs::write_atomic(path, line.as_bytes()).is_ok());
            // Raw writes: stdout's lock may be held by the stuck thread.
            // SAFETY: writes of a buffer we own, then an exit without unwinding.
            unsafe {
                if !written {
                    libc::write(1, line.as_ptr().cast(), line.len());
                }
                let err = format!("fdwatch: {}\n", Stop::Timeout(budget));
                libc::write(2, err.as_ptr().cast(), err.len());
                libc::_exit(code);
            }
        });
}

/// The reason to stop, if any: a signal first, then a spent deadline.
pub fn stop_reason() -> Option<Stop> {
    match STOP.load(Ordering::SeqCst) {
        0 => DEADLINE
            .get()
            .filter(|(end, _)| Instant::now() >= *end)
            .map(|(_, budget)| Stop::Timeout(*budget)),
        sig => Some(Stop::Signal(sig)),
    }
}

pub fn stop_requested() -> bool {
    stop_reason().is_some()
}

/// Sleep up to `d`, waking early when a stop is requested or the deadline
/// comes. Returns false if stopped.
///
/// One `nanosleep` per half second at most: a stop signal interrupts it
/// (EINTR), so the flag is seen at once. The cap only bounds the wait for a
/// signal that lands between the check and the call. (`std::thread::sleep`
/// resumes after EINTR, so it had to wake every 50 ms to look: 20 wake-ups a
/// second of a 1 s watch.)
pub fn sleep(d: Duration) -> bool {
    let end = Instant::now() + d;
    loop {
        if stop_requested() {
            return false;
        }
        let now = Instant::now();
        if now >= end {
            return true;
        }
        let mut left = (end - now).min(Duration::from_millis(500));
        if let Some((deadline, _)) = DEADLINE.get() {
            // Wake at the deadline itself (plus a hair, so it has passed).
            left = left.min(deadline.saturating_duration_since(now) + Duration::from_millis(1));
        }
        // nix builds the timespec for the target's time_t (musl's changed).
        let ts = nix::sys::time::TimeSpec::from_duration(left);
        // SAFETY: a valid timespec; no remainder wanted (the loop recomputes it).
        unsafe { libc::nanosleep(ts.as_ref(), std::ptr::null_mut()) };
    }
}

/// Signals sent to fdwatch by another process (kill, systemd, a CI runner),
/// to be passed on to the command under `fdwatch run`.
static FORWARD: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

extern "C" fn on_forward(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SI_USER (kill), SI_QUEUE and SI_TKILL are <= 0. A signal from the
    // terminal (Ctrl-C) is SI_KERNEL and reached the command's process group
    // already: forwarding it would deliver it twice.
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let code = if info.is_null() {
        0
    } else {
        unsafe { (*info).si_code }
    };
    if code <= 0 && (0..64).contains(&sig) {
        FORWARD.fetch_or(1u64 << sig, Ordering::SeqCst);
    }
}

pub const FORWARDED: [libc::c_int; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// Catch the signals `run` passes through to its command.
pub fn install_forwarding() {
    for sig in FORWARDED {
        // SAFETY: a plain sigaction with an async-signal-safe handler.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_forward as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Signals received since the last call, to forward.
pub fn take_forwarded() -> Vec<libc::c_int> {
    let bits = FORWARD.swap(0, Ordering::SeqCst);
    (0..64).filter(|s| bits & (1u64 << s) != 0).collect()
}

/// True when a signal to forward is waiting (without taking it).
pub fn take_forwarded_pending() -> bool {
    FORWARD.load(Ordering::SeqCst) != 0
}

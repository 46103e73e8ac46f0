//! Ctrl-C and SIGTERM end a watch cleanly: a flag the loops poll.

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Install the handlers (idempotent).
pub fn install() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic.
        let _ = unsafe { sigaction(sig, &action) };
    }
}

pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Sleep up to `d`, waking early when a stop is requested. Returns false if stopped.
///
/// One `nanosleep` per half second at most: a stop signal interrupts it
/// (EINTR, whatever SA_RESTART says), so the flag is seen at once. The cap
/// only bounds the wait for a signal that lands between the check and the
/// call. (`std::thread::sleep` resumes after EINTR, so it had to wake every
/// 50 ms to look: 20 wake-ups a second of a 1 s watch.)
pub fn sleep(d: std::time::Duration) -> bool {
    let end = std::time::Instant::now() + d;
    loop {
        if stop_requested() {
            return false;
        }
        let now = std::time::Instant::now();
        if now >= end {
            return true;
        }
        let left = (end - now).min(std::time::Duration::from_millis(500));
        let ts = libc::timespec {
            tv_sec: left.as_secs() as libc::time_t,
            tv_nsec: left.subsec_nanos() as libc::c_long,
        };
        // SAFETY: a valid timespec; no remainder wanted (the loop recomputes it).
        unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
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

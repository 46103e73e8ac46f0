//! The interactive terminal that `watch` and `top` share: the alternate
//! screen, keys read without echo, the window size and its changes, and
//! the promise that the terminal is given back however fdwatch ends.
//!
//! The screen is entered through [`Screen::enter`] and left when the value
//! drops: on `q`, on an error returned through `?`, and on a panic that
//! unwinds. Ctrl-C, SIGTERM and SIGHUP do not kill fdwatch at once: their
//! handler (`signals`) sets a flag that [`Screen::wait`] returns as
//! [`Event::Stop`], so the loop ends and the drop runs. Stdin is put in
//! "cbreak" mode (no line buffering, no echo) but keeps ISIG, so Ctrl-C is
//! a real SIGINT (which `top` relies on while `watch` runs under it).
//! SIGWINCH sets its own flag and interrupts the wait, so a resize redraws
//! at once. Ctrl-Z (SIGTSTP) gives the terminal back before fdwatch stops,
//! as a shell expects of a full-screen program, and takes it again when the
//! shell continues it.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::signals;

static RESIZED: AtomicBool = AtomicBool::new(false);
static SUSPEND: AtomicBool = AtomicBool::new(false);

extern "C" fn on_winch(_: libc::c_int) {
    RESIZED.store(true, Ordering::SeqCst);
}

extern "C" fn on_tstp(_: libc::c_int) {
    SUSPEND.store(true, Ordering::SeqCst);
}

/// Catch Ctrl-Z (SIGTSTP) so the terminal is given back before stopping.
fn catch_tstp() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_tstp),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic.
    let _ = unsafe { sigaction(Signal::SIGTSTP, &action) };
}

/// Columns and rows of the terminal on stdout, if it is one.
pub fn size() -> Option<(usize, usize)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into memory we own.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    (ok && ws.ws_col > 0 && ws.ws_row > 0).then_some((ws.ws_col as usize, ws.ws_row as usize))
}

/// Stdin's mode while a screen reads keys: no line buffering, no echo, but
/// ISIG kept (Ctrl-C and Ctrl-Z stay signals).
fn cbreak(saved: &nix::sys::termios::Termios) -> nix::sys::termios::Termios {
    use nix::sys::termios::{LocalFlags, SpecialCharacterIndices};
    let mut cbreak = saved.clone();
    cbreak.local_flags &= !(LocalFlags::ICANON | LocalFlags::ECHO);
    cbreak.control_chars[SpecialCharacterIndices::VMIN as usize] = 1;
    cbreak.control_chars[SpecialCharacterIndices::VTIME as usize] = 0;
    cbreak
}

/// Alternate screen, cursor hidden.
fn show_alternate_screen() {
    let mut out = std::io::stdout();
    let _ = out.write_all(b"\x1b[?1049h\x1b[?25l");
    let _ = out.flush();
}

/// Colours reset, cursor shown, normal screen.
fn leave_alternate_screen() {
    let mut out = std::io::stdout();
    let _ = out.write_all(b"\x1b[0m\x1b[?25h\x1b[?1049l");
    let _ = out.flush();
}

/// A key, as the screens understand it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Quit,
    Up,
    Down,
    NextSort,
    PrevSort,
    Enter,
    Other,
}

/// What bytes read from the terminal mean (one read: a key or an escape
/// sequence). An empty read is the terminal going away: quit.
pub fn parse_key(bytes: &[u8]) -> Key {
    match bytes {
        [] => Key::Quit,
        [b'q'] | [b'Q'] | [3] | [4] => Key::Quit,
        [b'k'] | [0x1b, b'[', b'A'] | [0x1b, b'O', b'A'] => Key::Up,
        [b'j'] | [0x1b, b'[', b'B'] | [0x1b, b'O', b'B'] => Key::Down,
        [b's'] | [b'>'] => Key::NextSort,
        [b'S'] | [b'<'] => Key::PrevSort,
        [b'\r'] | [b'\n'] => Key::Enter,
        _ => Key::Other,
    }
}

/// Why [`Screen::wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The time asked for has passed.
    Timeout,
    Key(Key),
    /// The window changed size: draw again.
    Resize,
    /// Ctrl-C, SIGTERM, SIGHUP (or `check -t`'s deadline).
    Stop,
}

/// The alternate screen on stdout, and cbreak mode on stdin when keys are
/// wanted and stdin is a terminal; both undone on drop.
pub struct Screen {
    saved: Option<nix::sys::termios::Termios>,
    active: bool,
}

impl Screen {
    /// Take the terminal. `keys`: read keys from stdin (when it is a
    /// terminal; otherwise the screen only draws and waits).
    pub fn enter(keys: bool) -> Screen {
        use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
        use nix::sys::termios::{tcgetattr, tcsetattr, SetArg};
        signals::install();
        // No SA_RESTART: the wait's poll returns at once on a resize.
        let action = SigAction::new(
            SigHandler::Handler(on_winch),
            SaFlags::empty(),
            SigSet::empty(),
        );
        // SAFETY: the handler only stores to an atomic.
        let _ = unsafe { sigaction(Signal::SIGWINCH, &action) };
        let stdin = std::io::stdin();
        let saved = if keys && std::io::IsTerminal::is_terminal(&stdin) {
            tcgetattr(stdin.as_fd()).ok().and_then(|saved| {
                tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &cbreak(&saved))
                    .ok()
                    .map(|_| saved)
            })
        } else {
            None
        };
        if saved.is_some() {
            SUSPEND.store(false, Ordering::SeqCst);
            catch_tstp();
        }
        show_alternate_screen();
        Screen {
            saved,
            active: true,
        }
    }

    /// Ctrl-Z: give the terminal back, stop as the shell expects (the
    /// default action of SIGTSTP, which the kernel skips for a process
    /// group no shell controls), and take the terminal again on SIGCONT.
    fn suspend(&self) {
        use nix::sys::signal::{raise, signal, SigHandler, Signal};
        use nix::sys::termios::{tcsetattr, SetArg};
        let Some(saved) = &self.saved else {
            return;
        };
        let stdin = std::io::stdin();
        leave_alternate_screen();
        let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, saved);
        // SAFETY: restoring the default action of a signal.
        let _ = unsafe { signal(Signal::SIGTSTP, SigHandler::SigDfl) };
        let _ = raise(Signal::SIGTSTP);
        // Continued (or never stopped).
        catch_tstp();
        let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &cbreak(saved));
        show_alternate_screen();
    }

    /// Give the terminal back (also done on drop).
    pub fn leave(&mut self) {
        if !std::mem::take(&mut self.active) {
            return;
        }
        leave_alternate_screen();
        if let Some(saved) = self.saved.take() {
            // Ctrl-Z from here on stops at once: no screen to give back.
            // SAFETY: restoring the default action of a signal.
            let _ = unsafe {
                nix::sys::signal::signal(
                    nix::sys::signal::Signal::SIGTSTP,
                    nix::sys::signal::SigHandler::SigDfl,
                )
            };
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin().as_fd(),
                nix::sys::termios::SetArg::TCSANOW,
                &saved,
            );
        }
    }

    /// Whether keys are read (stdin is a terminal in cbreak mode).
    pub fn has_keys(&self) -> bool {
        self.saved.is_some()
    }

    /// Draw `text` from the top left, each line cleared to its end, the
    /// rest of the screen cleared, at most `rows` lines (so nothing scrolls).
    pub fn draw(&mut self, text: &str, rows: Option<usize>) -> std::io::Result<()> {
        let mut frame = String::from("\x1b[H");
        let limit = rows.unwrap_or(usize::MAX);
        for (i, line) in text.lines().take(limit).enumerate() {
            if i > 0 {
                frame.push_str("\r\n");
            }
            frame.push_str(line);
            frame.push_str("\x1b[K");
        }
        frame.push_str("\x1b[J");
        let mut out = std::io::stdout().lock();
        out.write_all(frame.as_bytes())?;
        out.flush()
    }

    /// Wait up to `d` for a key, a resize or a stop. Wakes at least twice a
    /// second to look at the stop flag (a signal landing just before the
    /// poll would otherwise wait the whole time).
    pub fn wait(&self, d: Duration) -> Event {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let end = Instant::now() + d;
        loop {
            if signals::stop_requested() {
                return Event::Stop;
            }
            if SUSPEND.swap(false, Ordering::SeqCst) {
                self.suspend();
                return Event::Resize;
            }
            if RESIZED.swap(false, Ordering::SeqCst) {
                return Event::Resize;
            }
            let now = Instant::now();
            if now >= end {
                return Event::Timeout;
            }
            let left = (end - now).min(Duration::from_millis(500));
            let ms =
                PollTimeout::try_from(left.as_millis().max(1) as i32).unwrap_or(PollTimeout::NONE);
            let stdin = std::io::stdin();
            let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
            let watched = if self.has_keys() {
                &mut fds[..]
            } else {
                &mut []
            };
            match poll(watched, ms) {
                Ok(n) if n > 0 && self.has_keys() => {
                    let mut buf = [0u8; 8];
                    return match stdin.lock().read(&mut buf) {
                        Ok(n) => Event::Key(parse_key(&buf[..n])),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(_) => Event::Key(Key::Quit),
                    };
                }
                _ => {} // timeout or EINTR: look at the flags again
            }
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        self.leave();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(parse_key(b"q"), Key::Quit);
        assert_eq!(parse_key(b""), Key::Quit);
        assert_eq!(parse_key(&[3]), Key::Quit);
        assert_eq!(parse_key(b"\x1b[A"), Key::Up);
        assert_eq!(parse_key(b"\x1bOB"), Key::Down);
        assert_eq!(parse_key(b"S"), Key::PrevSort);
        assert_eq!(parse_key(b"\r"), Key::Enter);
        assert_eq!(parse_key(b"x"), Key::Other);
    }
}

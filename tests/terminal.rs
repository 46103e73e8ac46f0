//! Terminal manners, on a real pseudo-terminal: the live screen and `top`
//! fit the window (at 100 and 80 columns, and after a resize), levels are
//! coloured on a terminal unless `--color never` or `NO_COLOR`, never off
//! one unless asked, and `q`, Ctrl-C and SIGTERM end `watch` with the
//! terminal given back (cooked mode, normal screen, cursor shown).

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{bin, Workload, FULL_HOLD};
use nix::pty::{openpty, Winsize};
use nix::sys::termios::{tcgetattr, LocalFlags};
use unicode_width::UnicodeWidthStr;

/// fdwatch on the slave side of a pty of a given size, as the session
/// leader with the pty as its controlling terminal (so it gets SIGWINCH
/// and Ctrl-C like in a real terminal); everything it writes collected.
struct Pty {
    child: Child,
    master: std::fs::File,
    /// Kept open to look at the terminal's mode after fdwatch ends.
    slave: OwnedFd,
    out: Arc<Mutex<Vec<u8>>>,
}

fn winsize(cols: u16, rows: u16) -> Winsize {
    Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

impl Pty {
    fn spawn(args: &[&str], cols: u16, rows: u16, env: &[(&str, &str)]) -> Pty {
        use std::os::unix::process::CommandExt;
        let pty = openpty(Some(&winsize(cols, rows)), None).expect("openpty");
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .env_remove("NO_COLOR")
            .env_remove("CLICOLOR_FORCE")
            .env_remove("CLICOLOR")
            .env("TERM", "xterm-256color")
            .stdin(Stdio::from(pty.slave.try_clone().unwrap()))
            .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
            .stderr(Stdio::from(pty.slave.try_clone().unwrap()));
        for (k, v) in env {
            cmd.env(k, v);
        }
        // SAFETY: async-signal-safe calls only, between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn fdwatch on a pty");
        let master = std::fs::File::from(pty.master);
        let out = Arc::new(Mutex::new(Vec::new()));
        let (mut reader, sink) = (master.try_clone().unwrap(), out.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends with EIO once no one holds the slave side... or with the test.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Pty {
            child,
            master,
            slave: pty.slave,
            out,
        }
    }

    fn output(&self) -> Vec<u8> {
        self.out.lock().unwrap().clone()
    }

    fn len(&self) -> usize {
        self.out.lock().unwrap().len()
    }

    /// Wait until the output after byte `from` holds `needle` `times` times.
    fn wait_for(&self, from: usize, needle: &str, times: usize, timeout: Duration) {
        let end = Instant::now() + timeout;
        loop {
            let out = self.output();
            let text = String::from_utf8_lossy(&out[from.min(out.len())..]).into_owned();
            if text.matches(needle).count() >= times {
                return;
            }
            if Instant::now() > end {
                panic!("no {times}× {needle:?} within {timeout:?}; output:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).unwrap();
        self.master.flush().unwrap();
    }

    fn resize(&self, cols: u16, rows: u16) {
        let ws = winsize(cols, rows);
        // SAFETY: TIOCSWINSZ reads one winsize we own; the kernel then
        // sends SIGWINCH to the terminal's foreground process group.
        let rc = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        assert_eq!(rc, 0, "TIOCSWINSZ");
    }

    /// The exit status, if fdwatch ends within `timeout`; killed otherwise.
    fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    /// After fdwatch ended: the pty is back in cooked mode with echo, and
    /// the last thing written left the alternate screen with the cursor shown.
    fn assert_restored(&self) {
        std::thread::sleep(Duration::from_millis(100)); // the reader catches up
        let mode = tcgetattr(self.slave.as_fd()).unwrap();
        assert!(
            mode.local_flags
                .contains(LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ISIG),
            "the terminal is left in cooked mode with echo: {:?}",
            mode.local_flags
        );
        let out = String::from_utf8_lossy(&self.output()).into_owned();
        let left = out.rfind("\x1b[?1049l").expect("left the alternate screen");
        let entered = out.rfind("\x1b[?1049h").expect("used the alternate screen");
        assert!(left > entered, "the alternate screen was left last");
        assert!(out[left..].contains("\x1b[?25h") || out[..left].ends_with("\x1b[?25h"));
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The text of the screens: escape sequences removed, a cursor move (`H`)
/// or a clear (`J`) starting a new line, lines split on CR/LF.
fn screen_lines(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut plain = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            plain.push(c);
            continue;
        }
        match chars.next() {
            Some('[') => {
                // CSI: parameters, then one final byte in @..~.
                for f in chars.by_ref() {
                    if ('@'..='~').contains(&f) {
                        if f == 'H' || f == 'J' {
                            plain.push('\n');
                        }
                        break;
                    }
                }
            }
            Some(']') => {
                // OSC, up to BEL or ST.
                while let Some(f) = chars.next() {
                    if f == '\x07' || (f == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    plain
        .split(['\n', '\r'])
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

fn assert_fits(what: &str, bytes: &[u8], cols: usize) {
    let lines = screen_lines(bytes);
    assert!(lines.len() > 5, "{what}: a screen was drawn: {lines:?}");
    let wide: Vec<(usize, &String)> = lines
        .iter()
        .map(|l| (UnicodeWidthStr::width(l.as_str()), l))
        .filter(|(w, _)| *w > cols)
        .collect();
    assert!(
        wide.is_empty(),
        "{what}: {} lines wider than {cols} columns, the widest {} wide:\n{}",
        wide.len(),
        wide.iter().map(|(w, _)| *w).max().unwrap_or(0),
        wide.iter()
            .map(|(w, l)| format!("{w:4} {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The colours fdwatch gives levels (green, yellow, bold red, magenta).
fn has_level_colour(bytes: &[u8]) -> bool {
    let t = String::from_utf8_lossy(bytes);
    ["\x1b[32m", "\x1b[33m", "\x1b[1;31m", "\x1b[35m"]
        .iter()
        .any(|c| t.contains(c))
}

/// A process holding every kind of fd (the widest screen fdwatch draws).
fn busy() -> Workload {
    Workload::start(FULL_HOLD)
}

#[test]
fn watch_fits_the_width_and_follows_a_resize() {
    let w = busy();
    let pid = w.pid_str();
    let mut pty = Pty::spawn(
        &["watch", "--pid", &pid, "--interval", "300ms"],
        100,
        50,
        &[],
    );
    pty.wait_for(0, "KIND", 2, Duration::from_secs(20));
    assert_fits("watch at 100 columns", &pty.output(), 100);

    let mark = pty.len();
    pty.resize(80, 50);
    // The redraw comes at once on SIGWINCH, and the next samples too.
    pty.wait_for(mark, "KIND", 2, Duration::from_secs(20));
    assert_fits("watch at 80 columns", &pty.output()[mark..], 80);

    let mark = pty.len();
    pty.resize(60, 50);
    pty.wait_for(mark, "KIND", 1, Duration::from_secs(20));
    assert_fits("watch at 60 columns", &pty.output()[mark..], 60);
    pty.send(b"q");
    assert_eq!(
        pty.wait_exit(Duration::from_secs(5)).and_then(|s| s.code()),
        Some(0)
    );
    pty.assert_restored();
}

#[test]
fn q_quits_watch_within_a_second() {
    let w = busy();
    let pid = w.pid_str();
    let mut pty = Pty::spawn(
        &["watch", "--pid", &pid, "--interval", "300ms"],
        100,
        50,
        &[],
    );
    pty.wait_for(0, "KIND", 2, Duration::from_secs(20));
    let asked = Instant::now();
    pty.send(b"q");
    let status = pty.wait_exit(Duration::from_secs(5));
    let took = asked.elapsed();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "q ends watch with success"
    );
    eprintln!("q ended watch in {took:?}");
    assert!(took < Duration::from_secs(1), "q took {took:?}");
    pty.assert_restored();
}

#[test]
fn ctrl_c_and_sigterm_end_watch_and_restore_the_terminal() {
    let w = busy();
    let pid = w.pid_str();
    for how in ["ctrl-c", "sigterm"] {
        let mut pty = Pty::spawn(
            &["watch", "--pid", &pid, "--interval", "300ms"],
            100,
            40,
            &[],
        );
        pty.wait_for(0, "KIND", 1, Duration::from_secs(20));
        match how {
            "ctrl-c" => pty.send(&[3]),
            _ => {
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pty.child.id() as i32),
                    nix::sys::signal::Signal::SIGTERM,
                )
                .unwrap();
            }
        }
        let status = pty.wait_exit(Duration::from_secs(5));
        assert!(status.is_some(), "{how} ends watch");
        pty.assert_restored();
    }
}

/// Ctrl-Z gives the terminal back before stopping (cooked mode, the normal
/// screen) and takes it again when continued. The test's pty session has no
/// job-control shell, so the kernel does not stop fdwatch (a process group
/// no shell controls ignores the default SIGTSTP): what shows is the screen
/// left and entered again, and `watch` still drawing and answering `q`.
#[test]
fn ctrl_z_gives_the_terminal_back_and_takes_it_again() {
    let w = busy();
    let pid = w.pid_str();
    let mut pty = Pty::spawn(
        &["watch", "--pid", &pid, "--interval", "300ms"],
        100,
        40,
        &[],
    );
    pty.wait_for(0, "KIND", 1, Duration::from_secs(20));
    let mark = pty.len();
    pty.send(&[0x1a]);
    pty.wait_for(mark, "\x1b[?1049l", 1, Duration::from_secs(5));
    let after = String::from_utf8_lossy(&pty.output()[mark..]).into_owned();
    let left = after.find("\x1b[?1049l").unwrap();
    pty.wait_for(mark + left, "\x1b[?1049h", 1, Duration::from_secs(5));
    let mark = pty.len();
    pty.wait_for(mark, "KIND", 1, Duration::from_secs(20));
    pty.send(b"q");
    assert_eq!(
        pty.wait_exit(Duration::from_secs(5)).and_then(|s| s.code()),
        Some(0)
    );
    pty.assert_restored();
}

#[test]
fn top_fits_the_width_and_follows_a_resize() {
    let _w = busy();
    let mut pty = Pty::spawn(&["top", "--interval", "300ms"], 100, 30, &[]);
    pty.wait_for(0, "VERDICT", 2, Duration::from_secs(20));
    assert_fits("top at 100 columns", &pty.output(), 100);
    let mark = pty.len();
    pty.resize(80, 30);
    pty.wait_for(mark, "VERDICT", 2, Duration::from_secs(20));
    assert_fits("top at 80 columns", &pty.output()[mark..], 80);
    let mark = pty.len();
    pty.resize(50, 30);
    pty.wait_for(mark, "VERDICT", 1, Duration::from_secs(20));
    assert_fits("top at 50 columns", &pty.output()[mark..], 50);
    pty.send(b"q");
    assert_eq!(
        pty.wait_exit(Duration::from_secs(5)).and_then(|s| s.code()),
        Some(0)
    );
    pty.assert_restored();
}

#[test]
fn colour_on_a_terminal_unless_told_otherwise() {
    let w = busy();
    let pid = w.pid_str();
    let watch = [
        "watch",
        "--pid",
        &pid,
        "--count",
        "2",
        "--interval",
        "100ms",
    ];
    let on_pty = |extra: &[&str], env: &[(&str, &str)]| {
        let args: Vec<&str> = watch.iter().chain(extra).copied().collect();
        let mut pty = Pty::spawn(&args, 100, 40, env);
        let status = pty.wait_exit(Duration::from_secs(20));
        assert_eq!(status.and_then(|s| s.code()), Some(0), "{extra:?} {env:?}");
        std::thread::sleep(Duration::from_millis(100));
        pty.output()
    };
    assert!(has_level_colour(&on_pty(&[], &[])), "auto on a terminal");
    assert!(
        has_level_colour(&on_pty(&["--color", "always"], &[("NO_COLOR", "1")])),
        "--color always wins over NO_COLOR"
    );
    let plain = on_pty(&[], &[("NO_COLOR", "1")]);
    assert!(!has_level_colour(&plain), "NO_COLOR=1");
    assert!(
        String::from_utf8_lossy(&plain).contains("OK"),
        "the level is still written"
    );
    assert!(!has_level_colour(&on_pty(&["--color", "never"], &[])));
    assert!(!has_level_colour(&on_pty(&["--color=never"], &[])));

    // Off a terminal: none unless asked.
    let piped = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .env_remove("NO_COLOR")
            .env_remove("CLICOLOR_FORCE")
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{args:?}");
        out.stdout
    };
    let once = ["--pid", &pid, "--count", "1", "--plain"];
    assert!(!has_level_colour(&piped(&once, &[])), "auto in a pipe");
    assert!(has_level_colour(&piped(&once, &[("CLICOLOR_FORCE", "1")])));
    let always: Vec<&str> = ["--color", "always"].iter().chain(&once).copied().collect();
    assert!(has_level_colour(&piped(&always, &[])));
    let top_always = ["--color", "always", "top", "--count", "1", "--plain"];
    assert!(has_level_colour(&piped(&top_always, &[])));
    assert!(!has_level_colour(&piped(
        &["top", "--count", "1", "--plain"],
        &[]
    )));
}

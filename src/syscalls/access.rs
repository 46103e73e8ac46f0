//! What perf tracepoint counting needs, and the one-line reason when it is
//! missing: capabilities, `kernel.perf_event_paranoid`, tracefs.

use std::path::{Path, PathBuf};

pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_PERFMON: u32 = 38;
pub const TRACEFS: &str = "/sys/kernel/tracing";
pub const DEBUGFS_TRACING: &str = "/sys/kernel/debug/tracing";
pub const PARANOID_PATH: &str = "/proc/sys/kernel/perf_event_paranoid";
pub const MOUNT_CMD: &str = "mount -t tracefs tracefs /sys/kernel/tracing";

/// Where the tracepoint ids are, or why they are not readable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tracefs {
    /// `events/` under this directory is readable.
    Found(PathBuf),
    /// Neither /sys/kernel/tracing nor /sys/kernel/debug/tracing has `events/`.
    NotMounted,
    /// Mounted (or maybe mounted) but we may not read it.
    Unreadable(PathBuf),
    /// We are allowed to mount it but mounting failed.
    MountFailed(String),
}

/// The inputs of the verdict, gathered by [`Access::probe`] or given by tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub cap_perfmon: bool,
    pub cap_sys_admin: bool,
    /// `kernel.perf_event_paranoid`, if readable.
    pub paranoid: Option<i32>,
    pub tracefs: Tracefs,
}

impl Access {
    /// Effective caps of this process, the sysctl, and tracefs as found now.
    pub fn probe() -> Access {
        let capeff = read_capeff().unwrap_or(0);
        Access {
            cap_perfmon: capeff & (1 << CAP_PERFMON) != 0,
            cap_sys_admin: capeff & (1 << CAP_SYS_ADMIN) != 0,
            paranoid: read_paranoid(),
            tracefs: find_tracefs(),
        }
    }

    pub fn privileged(&self) -> bool {
        self.cap_perfmon || self.cap_sys_admin
    }

    /// `CapEff lacks CAP_PERFMON and CAP_SYS_ADMIN, kernel.perf_event_paranoid=2`
    pub fn describe(&self) -> String {
        let caps = match (self.cap_perfmon, self.cap_sys_admin) {
            (true, true) => "CapEff has CAP_PERFMON and CAP_SYS_ADMIN",
            (true, false) => "CapEff has CAP_PERFMON",
            (false, true) => "CapEff has CAP_SYS_ADMIN",
            (false, false) => "CapEff lacks CAP_PERFMON and CAP_SYS_ADMIN",
        };
        format!("{caps}, {}", paranoid_text(self.paranoid))
    }
}

fn paranoid_text(p: Option<i32>) -> String {
    match p {
        Some(p) => format!("kernel.perf_event_paranoid={p}"),
        None => format!("kernel.perf_event_paranoid unknown ({PARANOID_PATH} unreadable)"),
    }
}

/// Why counting cannot work with these inputs, or `None` when it should.
///
/// Counting tracepoints (kernel events) is allowed with CAP_PERFMON or
/// CAP_SYS_ADMIN whatever the paranoid level; without them only when
/// `kernel.perf_event_paranoid <= 1`. The tracepoint ids come from tracefs,
/// which is root-only by default.
pub fn blocked_reason(a: &Access) -> Option<String> {
    if !a.privileged() {
        let fix = "run fdwatch as root or grant it CAP_PERFMON (setcap cap_perfmon+ep <fdwatch>)";
        match a.paranoid {
            Some(p) if p >= 2 => {
                return Some(format!(
                    "this process lacks CAP_PERFMON and CAP_SYS_ADMIN and kernel.perf_event_paranoid={p} (needs <= 1 without them) forbids counting kernel tracepoints; {fix}, or set sysctl kernel.perf_event_paranoid=1"
                ));
            }
            None => {
                return Some(format!(
                    "this process lacks CAP_PERFMON and CAP_SYS_ADMIN and {PARANOID_PATH} is unreadable (perf_event_open is probably unsupported); {fix}"
                ));
            }
            Some(_) => {}
        }
    }
    match &a.tracefs {
        Tracefs::Found(_) => None,
        Tracefs::NotMounted if a.cap_sys_admin => Some(format!(
            "tracefs is not mounted (needed for tracepoint ids); run `{MOUNT_CMD}`"
        )),
        Tracefs::NotMounted => Some(format!(
            "tracefs is not mounted (needed for tracepoint ids) and this process lacks CAP_SYS_ADMIN to mount it; as root run `{MOUNT_CMD}`"
        )),
        Tracefs::Unreadable(p) if a.privileged() => Some(format!(
            "cannot read tracepoint ids under {} (permission denied despite {}); check the tracefs mount options",
            p.display(),
            a.describe()
        )),
        Tracefs::Unreadable(p) => Some(format!(
            "cannot read tracepoint ids under {} (tracefs is root-only and this process lacks CAP_PERFMON and CAP_SYS_ADMIN); run fdwatch as root",
            p.display()
        )),
        Tracefs::MountFailed(e) => Some(format!(
            "tracefs is not mounted and mounting it failed ({e}); run `{MOUNT_CMD}`"
        )),
    }
}

/// The reason line for a `perf_event_open` failure.
pub fn open_failed_reason(what: &str, tid: i32, errno: nix::errno::Errno, a: &Access) -> String {
    let hint = match errno {
        nix::errno::Errno::EACCES | nix::errno::Errno::EPERM => {
            format!("; {} (a process of another user also needs CAP_PERFMON or CAP_SYS_ADMIN, or a LSM may deny perf_event)", a.describe())
        }
        nix::errno::Errno::EMFILE | nix::errno::Errno::ENFILE => {
            "; fdwatch ran out of its own fds (one per thread and event): raise `ulimit -n`".into()
        }
        nix::errno::Errno::ENOENT | nix::errno::Errno::EINVAL | nix::errno::Errno::EOPNOTSUPP => {
            "; the kernel lacks this tracepoint or perf support (CONFIG_FTRACE_SYSCALLS, CONFIG_PERF_EVENTS)".into()
        }
        _ => String::new(),
    };
    format!(
        "perf_event_open({what}) on thread {tid} failed: {errno:?} ({}){hint}",
        errno.desc()
    )
}

fn read_capeff() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_capeff(&status)
}

/// The `CapEff:` hex word of a /proc/PID/status text.
pub fn parse_capeff(status: &str) -> Option<u64> {
    crate::sample::cap_mask(status, "CapEff:")
}

fn read_paranoid() -> Option<i32> {
    std::fs::read_to_string(PARANOID_PATH)
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn has_events(dir: &Path) -> std::io::Result<bool> {
    match std::fs::read_to_string(dir.join("events/raw_syscalls/sys_enter/id")) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // The file may be missing because the kernel lacks the event, but
            // an `events` dir tells us tracefs itself is there.
            match std::fs::metadata(dir.join("events")) {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Look for tracefs at /sys/kernel/tracing, then /sys/kernel/debug/tracing.
pub fn find_tracefs() -> Tracefs {
    let mut unreadable = None;
    for dir in [TRACEFS, DEBUGFS_TRACING] {
        let dir = Path::new(dir);
        match has_events(dir) {
            Ok(true) => return Tracefs::Found(dir.to_path_buf()),
            Ok(false) => {}
            Err(_) => {
                unreadable.get_or_insert_with(|| dir.to_path_buf());
            }
        }
    }
    match unreadable {
        Some(dir) => Tracefs::Unreadable(dir),
        None => Tracefs::NotMounted,
    }
}

/// Mount tracefs at /sys/kernel/tracing (needs CAP_SYS_ADMIN).
pub fn mount_tracefs() -> Result<(), String> {
    let c = |s: &str| std::ffi::CString::new(s).expect("no NUL");
    let (src, target, fstype) = (c("tracefs"), c(TRACEFS), c("tracefs"));
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        )
    };
    if rc < 0 {
        let e = nix::errno::Errno::last();
        return Err(format!("mount({TRACEFS}): {e:?} ({})", e.desc()));
    }
    Ok(())
}

/// The numeric id of `events/<group>/<name>`.
pub fn tracepoint_id(tracefs: &Path, group: &str, name: &str) -> Result<u64, String> {
    let path = tracefs.join("events").join(group).join(name).join("id");
    let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "tracepoint {group}:{name} does not exist ({} missing; the kernel needs CONFIG_FTRACE_SYSCALLS)",
            path.display()
        ),
        _ => format!("cannot read {}: {e}", path.display()),
    })?;
    text.trim()
        .parse()
        .map_err(|_| format!("{} holds '{}', not an id", path.display(), text.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(perfmon: bool, admin: bool, paranoid: Option<i32>, tracefs: Tracefs) -> Access {
        Access {
            cap_perfmon: perfmon,
            cap_sys_admin: admin,
            paranoid,
            tracefs,
        }
    }

    fn found() -> Tracefs {
        Tracefs::Found(PathBuf::from(TRACEFS))
    }

    #[test]
    fn reason_table() {
        let unreadable = Tracefs::Unreadable(PathBuf::from(TRACEFS));
        let cases: Vec<(Access, Option<&str>)> = vec![
            // root / CAP_PERFMON with tracefs: allowed whatever the paranoid level.
            (access(true, true, Some(2), found()), None),
            (access(true, false, Some(4), found()), None),
            (access(false, true, Some(3), found()), None),
            // unprivileged, paranoid too high.
            (
                access(false, false, Some(2), unreadable.clone()),
                Some("this process lacks CAP_PERFMON and CAP_SYS_ADMIN and kernel.perf_event_paranoid=2 (needs <= 1 without them) forbids counting kernel tracepoints; run fdwatch as root or grant it CAP_PERFMON (setcap cap_perfmon+ep <fdwatch>), or set sysctl kernel.perf_event_paranoid=1"),
            ),
            (
                access(false, false, Some(3), found()),
                Some("this process lacks CAP_PERFMON and CAP_SYS_ADMIN and kernel.perf_event_paranoid=3 (needs <= 1 without them) forbids counting kernel tracepoints; run fdwatch as root or grant it CAP_PERFMON (setcap cap_perfmon+ep <fdwatch>), or set sysctl kernel.perf_event_paranoid=1"),
            ),
            (
                access(false, false, None, found()),
                Some("this process lacks CAP_PERFMON and CAP_SYS_ADMIN and /proc/sys/kernel/perf_event_paranoid is unreadable (perf_event_open is probably unsupported); run fdwatch as root or grant it CAP_PERFMON (setcap cap_perfmon+ep <fdwatch>)"),
            ),
            // unprivileged, paranoid permits, but tracefs is root-only.
            (
                access(false, false, Some(1), unreadable.clone()),
                Some("cannot read tracepoint ids under /sys/kernel/tracing (tracefs is root-only and this process lacks CAP_PERFMON and CAP_SYS_ADMIN); run fdwatch as root"),
            ),
            (access(false, false, Some(-1), found()), None),
            // tracefs missing.
            (
                access(false, false, Some(1), Tracefs::NotMounted),
                Some("tracefs is not mounted (needed for tracepoint ids) and this process lacks CAP_SYS_ADMIN to mount it; as root run `mount -t tracefs tracefs /sys/kernel/tracing`"),
            ),
            (
                access(true, false, Some(2), Tracefs::NotMounted),
                Some("tracefs is not mounted (needed for tracepoint ids) and this process lacks CAP_SYS_ADMIN to mount it; as root run `mount -t tracefs tracefs /sys/kernel/tracing`"),
            ),
            (
                access(true, true, Some(2), Tracefs::NotMounted),
                Some("tracefs is not mounted (needed for tracepoint ids); run `mount -t tracefs tracefs /sys/kernel/tracing`"),
            ),
            (
                access(true, true, Some(2), Tracefs::MountFailed("mount(/sys/kernel/tracing): EPERM (Operation not permitted)".into())),
                Some("tracefs is not mounted and mounting it failed (mount(/sys/kernel/tracing): EPERM (Operation not permitted)); run `mount -t tracefs tracefs /sys/kernel/tracing`"),
            ),
            (
                access(true, false, Some(2), unreadable),
                Some("cannot read tracepoint ids under /sys/kernel/tracing (permission denied despite CapEff has CAP_PERFMON, kernel.perf_event_paranoid=2); check the tracefs mount options"),
            ),
        ];
        for (a, want) in cases {
            assert_eq!(blocked_reason(&a).as_deref(), want, "{a:?}");
        }
    }

    #[test]
    fn capeff_bits() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001fffeffffff\n";
        let eff = parse_capeff(status).unwrap();
        assert!(eff & (1 << CAP_PERFMON) != 0);
        assert!(eff & (1 << CAP_SYS_ADMIN) != 0);
        let eff = parse_capeff("CapEff:\t0000004000000000\n").unwrap();
        assert!(eff & (1 << CAP_PERFMON) != 0 && eff & (1 << CAP_SYS_ADMIN) == 0);
        assert_eq!(parse_capeff("CapEff:\t0000000000000000\n"), Some(0));
        assert_eq!(parse_capeff("Name:\tx\n"), None);
    }

    #[test]
    fn open_failure_reason_names_errno_and_context() {
        let a = access(false, false, Some(2), found());
        let r = open_failed_reason("raw_syscalls:sys_enter", 42, nix::errno::Errno::EACCES, &a);
        assert_eq!(
            r,
            "perf_event_open(raw_syscalls:sys_enter) on thread 42 failed: EACCES (Permission denied); CapEff lacks CAP_PERFMON and CAP_SYS_ADMIN, kernel.perf_event_paranoid=2 (a process of another user also needs CAP_PERFMON or CAP_SYS_ADMIN, or a LSM may deny perf_event)"
        );
    }
}

//! Which code opens the fds: leak sites and churn sites from the target's
//! own user stacks (`fdwatch stacks`, docs/stacks.md).
//!
//! This module owns the tracer ([`Tracer::attach`], [`Tracer::snapshot`]):
//! a BPF program on the syscall exits ([`bpf`]) remembers the user stack
//! that created each fd of one process, and counts opens and closes per
//! stack; [`symbols`] names the addresses and decides how far each stack can
//! be believed; the functions here group stacks into sites by their
//! innermost application frame. It decides nothing about levels and prints
//! nothing: `report::stacks` words it.
//!
//! A leak site: fds opened since attach that are still open, by site, with
//! their count, kinds and ages. A churn site: opens per second by site, with
//! the share that was closed again.

pub mod bpf;
pub mod symbols;

use std::collections::{BTreeMap, HashMap, HashSet};

pub use bpf::Stats;
pub use symbols::Frame;

#[derive(Debug, thiserror::Error)]
pub enum StacksError {
    /// The tracer cannot run here: one line saying what is missing.
    #[error("{0}")]
    Unavailable(String),
    #[error("no process {pid}")]
    NoSuchProcess { pid: i32 },
    #[error("reading the stack tracer's maps: {0}")]
    Read(std::io::Error),
}

/// How a stack ends.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum StackEnd {
    /// At the program's or thread's entry (`_start`, `start_thread`,
    /// `runtime.goexit`, ...): every frame is there.
    Complete,
    /// Cut at the tracer's depth (the innermost frames are kept).
    Deep { frames: usize },
    /// The walk stopped early (or was cut at a frame that fails the
    /// checks): code without frame pointers. `module`: where the last
    /// believed frame is.
    Early { module: Option<String> },
}

/// A group of stacks with the same innermost application frame.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Site {
    /// The innermost application function, if the stack reaches one.
    pub function: Option<String>,
    /// The library function the application called (the outermost
    /// non-application frame below it), e.g. `socket`, `net.InterfaceAddrs`.
    pub via: Option<String>,
    /// The most common stack of the group, innermost first.
    pub frames: Vec<Frame>,
    /// Index of the application frame in `frames`.
    pub app_frame: Option<usize>,
    pub end: StackEnd,
    /// fds of the site still open (opened since attach), by kind.
    pub open: u64,
    pub kinds: BTreeMap<String, u64>,
    /// Age of the oldest and newest still-open fd, seconds.
    pub oldest_s: f64,
    pub newest_s: f64,
    /// fds the site opened since attach, and how many of them were closed.
    pub opens: u64,
    pub closes: u64,
    pub opens_per_s: f64,
}

impl Site {
    /// Share of the site's opens that were closed again (0..1).
    pub fn closed_share(&self) -> f64 {
        if self.opens == 0 {
            0.0
        } else {
            self.closes as f64 / self.opens as f64
        }
    }
}

/// What the tracer saw from attach to now.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Snapshot {
    pub pid: i32,
    /// Seconds since attach.
    pub seconds: f64,
    /// The process exited: every fd it had was closed.
    pub exited: bool,
    /// By open fds, most first.
    pub leaks: Vec<Site>,
    /// By opens, most first.
    pub churn: Vec<Site>,
    pub stats: Stats,
    /// Remembered fds that `/proc` no longer lists: closed by a path the
    /// tracer does not see (exec's close-on-exec, io_uring), dropped.
    pub stale: u64,
    /// Still-open fds whose stack could not be recorded.
    pub unrecorded: u64,
}

impl Snapshot {
    /// The first `k` sites of each list (the stats and notes stay whole):
    /// what a mode keeps per tick, so that its memory is bounded by `k`
    /// and not by the stacks the program has.
    pub fn top(mut self, k: usize) -> Snapshot {
        self.leaks.truncate(k);
        self.churn.truncate(k);
        self
    }

    /// The snapshot to report: after the process exited (which closed
    /// every fd), the leak sites as the last live snapshot saw them, with
    /// this snapshot's time and counters and the exit noted.
    pub fn shown(self, last_live: Option<&Snapshot>) -> Snapshot {
        match (self.exited, last_live) {
            (true, Some(live)) => Snapshot {
                exited: true,
                seconds: self.seconds,
                stats: self.stats,
                ..live.clone()
            },
            _ => self,
        }
    }
}

/// The resolved, checked form of one stored stack.
#[derive(Debug, Clone, PartialEq)]
pub struct Stack {
    pub frames: Vec<Frame>,
    pub end: StackEnd,
}

/// Traces one process from [`Tracer::attach`] on.
pub struct Tracer {
    pid: i32,
    start_time: u64,
    program: bpf::Program,
    attached_ns: u64,
    stacks: HashMap<u64, Stack>,
    symbols: symbols::Symbols,
    exited: bool,
    /// What the last live snapshot saw (kept once the process is gone).
    last: Option<Snapshot>,
}

/// Function names where a complete stack ends (program and thread entries).
const ROOTS: &[&str] = &[
    "_start",
    "__libc_start_main",
    "__libc_start_call_main",
    "start_thread",
    "clone",
    "clone3",
    "__clone",
    "__clone3",
    "runtime.goexit",
    "runtime.goexit.abi0",
    "runtime.main",
    "runtime.mstart",
    "runtime.mstart.abi0",
    "runtime.rt0_go",
    "runtime.rt0_go.abi0",
];

fn start_time(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    crate::sample::stat::parse_stat(&text).map(|s| s.start_time)
}

impl Tracer {
    /// Start tracing `pid`'s fd-creating syscalls (every thread).
    pub fn attach(pid: i32) -> Result<Tracer, StacksError> {
        bpf::precheck().map_err(StacksError::Unavailable)?;
        let Some(start) = (pid > 0).then(|| start_time(pid)).flatten() else {
            return Err(StacksError::NoSuchProcess { pid });
        };
        let program = bpf::Program::load(pid as u32)?;
        let t = Tracer {
            pid,
            start_time: start,
            program,
            attached_ns: bpf::monotonic_ns(),
            stacks: HashMap::new(),
            symbols: symbols::Symbols::new(pid),
            exited: false,
            last: None,
        };
        t.refresh_text();
        Ok(t)
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Tell the program where the process's code is now (libraries loaded
    /// since are then seen too).
    fn refresh_text(&self) {
        if let Ok(ranges) = symbols::exec_ranges(self.pid) {
            let r: Vec<(u64, u64)> = ranges.iter().map(|(lo, hi, _)| (*lo, *hi)).collect();
            // Best effort: without it a frameless wrapper's caller is not
            // found, which the stacks then say (they end early).
            let _ = self.program.set_text(&r);
        }
    }

    fn alive(&self) -> bool {
        start_time(self.pid) == Some(self.start_time)
    }

    /// What the tracer has seen since attach. Call it regularly (once a
    /// second): addresses can only be named while the process lives.
    pub fn snapshot(&mut self) -> Result<Snapshot, StacksError> {
        if !self.exited && !self.alive() {
            self.exited = true;
        }
        let mut raw = self.program.read()?;
        let seconds = raw.now_ns.saturating_sub(self.attached_ns) as f64 / 1e9;
        let mut stale = 0;
        if self.exited {
            // Exit closed every fd: nothing is leaking any more.
            raw.fds.clear();
        } else {
            self.refresh_text();
            if let Some(listed) = open_fds(self.pid) {
                let before = raw.fds.len();
                raw.fds.retain(|r| listed.contains(&r.fd));
                stale = (before - raw.fds.len()) as u64;
            }
            self.resolve_new(&raw)?;
        }
        let snap = aggregate(self.pid, seconds, self.exited, &raw, &self.stacks, stale);
        if !self.exited {
            self.last = Some(snap.clone());
        }
        Ok(snap)
    }

    /// The last snapshot taken while the process lived.
    pub fn last_live(&self) -> Option<&Snapshot> {
        self.last.as_ref()
    }

    /// Read and name the stacks not seen before.
    fn resolve_new(&mut self, raw: &bpf::Raw) -> Result<(), StacksError> {
        let wanted: HashSet<u64> = raw
            .sites
            .keys()
            .copied()
            .chain(raw.fds.iter().map(|r| r.stack))
            .filter(|h| *h != 0 && !self.stacks.contains_key(h))
            .collect();
        let mut fresh = Vec::new();
        for h in wanted {
            if let Some(s) = self.program.stack(h)? {
                fresh.push((h, s));
            }
        }
        let firsts: Vec<u64> = fresh
            .iter()
            .filter_map(|(_, s)| s.ips.first().copied())
            .collect();
        let rets: Vec<u64> = fresh
            .iter()
            .flat_map(|(_, s)| s.ips.iter().skip(1).chain(s.candidates.iter()).copied())
            .collect();
        self.symbols.resolve(&firsts, &rets);
        for (h, s) in fresh {
            let stack = check_stack(&s, &self.symbols);
            self.stacks.insert(h, stack);
        }
        Ok(())
    }
}

/// The fds `/proc/PID/fd` lists now (None if unreadable).
fn open_fds(pid: i32) -> Option<HashSet<u32>> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
    )
}

/// The believable frames of a raw stack, named, and how it ends.
fn check_stack(raw: &bpf::RawStack, sym: &symbols::Symbols) -> Stack {
    let mut addrs = Vec::new();
    let Some(&first) = raw.ips.first() else {
        return Stack {
            frames: Vec::new(),
            end: StackEnd::Early { module: None },
        };
    };
    addrs.push(first);
    // The frame a frame-pointer walk skips below a frameless function
    // (libc's syscall wrappers): believed only if its call instruction
    // targets the function the syscall was made from, and it is not
    // already the walk's next frame.
    let mut cut = false;
    if let Some(caller) = sym.leaf_caller(first, &raw.candidates) {
        if raw.ips.get(1) != Some(&caller) {
            addrs.push(caller);
        }
    }
    for &ip in raw.ips.iter().skip(1) {
        if !sym.believable_return(ip) {
            cut = true;
            break;
        }
        addrs.push(ip);
    }
    let frames: Vec<Frame> = addrs.iter().flat_map(|a| sym.frames(*a)).collect();
    let last = frames.last();
    let rooted = last
        .and_then(|f| f.name.as_deref())
        .is_some_and(|n| ROOTS.contains(&n));
    // Past an entry point only fabricated frames follow (Go puts
    // `goexit+1` there, after no call): a rooted stack is complete.
    let end = if rooted {
        StackEnd::Complete
    } else if !cut && raw.ips.len() >= bpf::MAX_FRAMES {
        StackEnd::Deep {
            frames: raw.ips.len(),
        }
    } else {
        StackEnd::Early {
            module: last.and_then(|f| f.module.clone()),
        }
    };
    Stack { frames, end }
}

/// Whether `module` is a system library (libc and friends, the dynamic
/// loader, the vDSO): code the application calls, not application code.
pub fn is_system_module(module: &str) -> bool {
    let base = module.rsplit('/').next().unwrap_or(module);
    const LIBS: &[&str] = &[
        "libc.so",
        "libc-",
        "libpthread",
        "ld-linux",
        "ld-musl",
        "libstdc++",
        "libgcc_s",
        "libm.so",
        "libdl",
        "librt",
        "libresolv",
        "libnss_",
    ];
    base.starts_with('[') || LIBS.iter().any(|l| base.starts_with(l))
}

/// Whether a function name belongs to a language runtime or standard
/// library linked into the executable (Rust std, Go's standard packages).
/// `go`: the stack is a Go program's (it has `runtime.` frames).
pub fn is_runtime_function(name: &str, go: bool) -> bool {
    const RUST: &[&str] = &[
        "std::", "core::", "alloc::", "<std::", "<core::", "<alloc::", "__rust", "_start",
    ];
    if RUST.iter().any(|p| name.starts_with(p)) || ROOTS.contains(&name) {
        return true;
    }
    if go {
        // A Go standard package's path has no dot in its first element
        // (`net`, `internal/poll`); `main` and `github.com/...` are the
        // application's.
        let first = name.split(['/', '.']).next().unwrap_or("");
        let pkg_has_dot = name.split('/').next().is_some_and(|e| {
            // `github.com/x/y.F`: the first path element has a dot.
            name.contains('/') && e.contains('.')
        });
        return first != "main" && !pkg_has_dot && name.contains('.');
    }
    false
}

/// The index of the innermost application frame, if any.
pub fn app_frame(frames: &[Frame]) -> Option<usize> {
    let go = frames
        .iter()
        .any(|f| f.name.as_deref().is_some_and(|n| n.starts_with("runtime.")));
    frames.iter().position(|f| {
        let system = f.module.as_deref().is_none_or(is_system_module);
        let runtime = f.name.as_deref().is_none_or(|n| is_runtime_function(n, go));
        !system && !runtime
    })
}

/// A name for an fd kind from what the program recorded.
pub fn kind_name(nr: u32, family: u16, sock_type: u8, dup: bool) -> String {
    let syscall = bpf::syscall_name(nr).unwrap_or("?");
    let base = match syscall {
        "socket" | "socketpair" => socket_kind(family, sock_type),
        "accept" | "accept4" => "socket (accepted)".to_string(),
        "open" | "openat" | "openat2" | "creat" | "open_by_handle_at" => "file".into(),
        "pipe" | "pipe2" => "pipe".into(),
        "eventfd" | "eventfd2" => "eventfd".into(),
        "epoll_create" | "epoll_create1" => "epoll".into(),
        "timerfd_create" => "timerfd".into(),
        "signalfd" | "signalfd4" => "signalfd".into(),
        "inotify_init" | "inotify_init1" => "inotify".into(),
        "fanotify_init" => "fanotify".into(),
        "memfd_create" => "memfd".into(),
        "pidfd_open" => "pidfd".into(),
        "pidfd_getfd" => "pidfd_getfd".into(),
        "userfaultfd" => "userfaultfd".into(),
        "io_uring_setup" => "io_uring".into(),
        "perf_event_open" => "perf_event".into(),
        "bpf" => "bpf".into(),
        other => other.to_string(),
    };
    if dup {
        format!("{base} (dup)")
    } else {
        base
    }
}

fn socket_kind(family: u16, ty: u8) -> String {
    const STREAM: u8 = 1;
    const DGRAM: u8 = 2;
    const RAW: u8 = 3;
    match (family, ty) {
        (2, STREAM) => "tcp".into(),
        (2, DGRAM) => "udp".into(),
        (2, RAW) => "raw".into(),
        (10, STREAM) => "tcp6".into(),
        (10, DGRAM) => "udp6".into(),
        (10, RAW) => "raw6".into(),
        (1, _) => "unix".into(),
        (16, _) => "netlink".into(),
        (17, _) => "packet".into(),
        (f, _) => format!("socket (family {f})"),
    }
}

/// The grouping key of a stack: its innermost application function, or
/// (none reached) its innermost named frame.
fn site_key(stack: &Stack) -> (Option<usize>, String) {
    let app = app_frame(&stack.frames);
    let key = match app {
        Some(i) => format!("app:{}", stack.frames[i].name.as_deref().unwrap_or("?")),
        None => format!(
            "lib:{}",
            stack
                .frames
                .first()
                .and_then(|f| f.name.clone())
                .unwrap_or_default()
        ),
    };
    (app, key)
}

#[derive(Default)]
struct Group {
    open: u64,
    kinds: BTreeMap<String, u64>,
    oldest_ns: u64,
    newest_ns: u64,
    opens: u64,
    closes: u64,
    /// Weight of each stack hash in the group (to pick the most common).
    weight: HashMap<u64, u64>,
}

/// Sites from the raw records and the named stacks.
pub fn aggregate(
    pid: i32,
    seconds: f64,
    exited: bool,
    raw: &bpf::Raw,
    stacks: &HashMap<u64, Stack>,
    stale: u64,
) -> Snapshot {
    let unknown = Stack {
        frames: Vec::new(),
        end: StackEnd::Early { module: None },
    };
    let key_of = |h: u64| -> String {
        stacks
            .get(&h)
            .map_or_else(|| format!("unrecorded:{h:x}"), |s| site_key(s).1)
    };
    let mut leaks: HashMap<String, Group> = HashMap::new();
    let mut unrecorded = 0;
    for r in &raw.fds {
        if r.stack == 0 {
            unrecorded += 1;
            continue;
        }
        let g = leaks.entry(key_of(r.stack)).or_default();
        g.open += 1;
        *g.kinds
            .entry(kind_name(r.nr, r.family, r.sock_type, r.dup))
            .or_default() += 1;
        let age = raw.now_ns.saturating_sub(r.time_ns);
        g.oldest_ns = g.oldest_ns.max(age);
        g.newest_ns = if g.open == 1 {
            age
        } else {
            g.newest_ns.min(age)
        };
        *g.weight.entry(r.stack).or_default() += 1;
    }
    let mut churn: HashMap<String, Group> = HashMap::new();
    for (h, c) in &raw.sites {
        if *h == 0 {
            continue;
        }
        let key = key_of(*h);
        if let Some(g) = leaks.get_mut(&key) {
            g.opens += c.opens;
            g.closes += c.closes;
        }
        let g = churn.entry(key).or_default();
        g.opens += c.opens;
        g.closes += c.closes;
        *g.kinds
            .entry(kind_name(c.nr, c.family, c.sock_type, false))
            .or_default() += c.opens;
        *g.weight.entry(*h).or_default() += c.opens;
    }
    let site = |g: Group| -> Site {
        // The most common stack; on a tie the most complete one, so the
        // choice never depends on hash values (addresses move with ASLR).
        let rank = |h: u64| match stacks.get(&h).map(|s| &s.end) {
            Some(StackEnd::Complete) => 2,
            Some(StackEnd::Deep { .. }) => 1,
            _ => 0,
        };
        let best = g
            .weight
            .iter()
            .max_by_key(|(h, w)| {
                let depth = stacks.get(h).map_or(0, |s| s.frames.len());
                (**w, rank(**h), depth, std::cmp::Reverse(**h))
            })
            .map(|(h, _)| *h)
            .unwrap_or(0);
        let stack = stacks.get(&best).unwrap_or(&unknown);
        let app = app_frame(&stack.frames);
        // The library function the application called, as its source
        // says (an inlined API function counts): the frame just inside.
        let via = app
            .and_then(|i| i.checked_sub(1))
            .and_then(|i| stack.frames[i].name.clone());
        Site {
            function: app.and_then(|i| stack.frames[i].name.clone()),
            via,
            frames: stack.frames.clone(),
            app_frame: app,
            end: stack.end.clone(),
            open: g.open,
            kinds: g.kinds,
            oldest_s: g.oldest_ns as f64 / 1e9,
            newest_s: g.newest_ns as f64 / 1e9,
            opens: g.opens,
            closes: g.closes,
            opens_per_s: if seconds > 0.0 {
                g.opens as f64 / seconds
            } else {
                0.0
            },
        }
    };
    let mut leaks: Vec<Site> = leaks.into_values().map(site).collect();
    leaks.sort_by(|a, b| b.open.cmp(&a.open).then(b.opens.cmp(&a.opens)));
    let mut churn: Vec<Site> = churn
        .into_values()
        .filter(|g| g.opens > 0)
        .map(site)
        .collect();
    churn.sort_by(|a, b| b.opens.cmp(&a.opens).then(b.open.cmp(&a.open)));
    Snapshot {
        pid,
        seconds,
        exited,
        leaks,
        churn,
        stats: raw.stats,
        stale,
        unrecorded,
    }
}

#[cfg(test)]
mod tests;

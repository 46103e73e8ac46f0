//! The BPF loader shared by every BPF program fdwatch loads: the census's
//! task_file iterators (`sample::bpf`), the syscall counter
//! (`syscalls::bpf`) and the stack tracer (`stacks::bpf`). It loads and
//! attaches with the kernel doing the CO-RE relocations where it can
//! ([`load`]), and says why it could not in one line; it knows nothing of
//! what a program counts.

use std::os::fd::OwnedFd;

use aya::Ebpf;

pub mod load;

use crate::syscalls::access::{parse_capeff, CAP_PERFMON, CAP_SYS_ADMIN};

/// `CAP_BPF` (include/uapi/linux/capability.h).
pub const CAP_BPF: u32 = 39;
/// The inode number of the initial pid namespace (`PROC_PID_INIT_INO`).
const INIT_PID_NS_INO: u64 = 0xEFFF_FFFC;

/// Why `program` cannot be loaded here, in one line, before anything is
/// loaded, in the order a person would fix it: privileges (what is
/// missing; `needs` names what asked), then, for a program that filters on
/// the host's tgids (`host_tgids`), fdwatch's pid namespace, then kernel BTF.
pub fn precheck(needs: &str, program: &str, host_tgids: bool) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let caps = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| parse_capeff(&s))
        .unwrap_or(0);
    let has = |c: u32| caps & (1u64 << c) != 0;
    // CAP_SYS_ADMIN implies both (Linux 5.8+).
    if !(has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))) {
        let missing: Vec<&str> = [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
            .into_iter()
            .filter(|(c, _)| !has(*c))
            .map(|(_, n)| n)
            .collect();
        return Err(format!(
            "{needs} needs root or CAP_BPF + CAP_PERFMON; fdwatch (uid {}) lacks {}",
            nix::unistd::geteuid(),
            missing.join(" and ")
        ));
    }
    // The program compares the kernel's (initial namespace) tgid; a pid
    // given in a child namespace would name another process there.
    if host_tgids {
        match std::fs::metadata("/proc/self/ns/pid") {
            Ok(m) if m.ino() == INIT_PID_NS_INO => {}
            Ok(_) => {
                return Err(format!("fdwatch runs in a child pid namespace and {program} filters on the host's tgids (run with the host's pid namespace, e.g. hostPID)"))
            }
            Err(e) => {
                return Err(format!(
                    "cannot tell fdwatch's pid namespace (/proc/self/ns/pid: {e})"
                ))
            }
        }
    }
    if !std::path::Path::new(load::VMLINUX_BTF).exists() {
        return Err(format!(
            "{program} needs kernel BTF ({} is missing: a kernel built without CONFIG_DEBUG_INFO_BTF)",
            load::VMLINUX_BTF
        ));
    }
    Ok(())
}

/// `kernel` or `aya`: load only that way (for testing both; by default the
/// kernel's CO-RE where it can, else aya's).
pub const LOADER_ENV: &str = "FDWATCH_BPF_LOADER";

/// How a BPF program (the census, the syscall counter) was loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loader {
    /// By [`load::load`]: the kernel applied the CO-RE relocations (Linux 5.17+).
    KernelCoRe,
    /// By aya, which relocates in user space against the parsed kernel BTF.
    Aya,
}

/// Load `what` with the kernel applying its CO-RE relocations (`kernel`),
/// else with aya (`aya`), as [`LOADER_ENV`] allows: `kernel` or `aya` only
/// one of them; unset, aya takes over from any kernel failure (an older
/// kernel, a BTF feature it lacks) and, if it fails too, says why.
pub fn kernel_then_aya<T, E>(
    what: &str,
    kernel: impl FnOnce() -> Result<T, String>,
    aya: impl FnOnce() -> Result<T, E>,
    unavailable: impl FnOnce(String) -> E,
) -> Result<T, E> {
    let only = std::env::var(LOADER_ENV).ok();
    if only.as_deref() != Some("aya") {
        match kernel() {
            Ok(loaded) => return Ok(loaded),
            Err(e) if only.as_deref() == Some("kernel") => {
                return Err(unavailable(format!(
                    "the kernel could not load {what} with its CO-RE ({LOADER_ENV}=kernel): {e}"
                )))
            }
            Err(_) => {}
        }
    }
    aya()
}

/// What keeps a program's maps (and, for aya, the program) alive.
pub enum Keep {
    Fds(#[allow(dead_code)] Vec<OwnedFd>),
    Aya(#[allow(dead_code)] Box<Ebpf>),
}

/// The whole source chain of an error (aya puts the kernel's reason in a source).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

/// A verifier log on one line: its first line and the verifier's verdict
/// (the last line before its statistics).
pub fn one_line(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let verdict = lines
        .iter()
        .rev()
        .find(|l| {
            !["verification time", "stack depth", "processed ", ": "]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .copied();
    match (lines.first(), verdict) {
        (Some(first), Some(v)) if lines.len() > 1 && *first != v => format!("{first} ... {v}"),
        (Some(first), _) => (*first).to_string(),
        _ => String::new(),
    }
}

//! The BPF backend: one program on the `sys_enter` raw tracepoint counts the
//! syscalls of one tgid into a per-CPU array (`bpf/count.bpf.c`).
//!
//! The filter is the tgid, so every thread of the target is counted, whenever
//! it was created, with nothing to attach per thread; exited threads' counts
//! stay in the per-CPU array. `read()` sums the CPUs.
//!
//! Nothing is pinned: the program, its maps and the raw tracepoint link are
//! fds of fdwatch, so the kernel frees them when fdwatch exits or is killed.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use aya::maps::{MapData, PerCpuArray};
use aya::programs::RawTracePoint;
use aya::{Btf, Ebpf};

use super::{access, unavailable, SyscallCounts, SyscallError};

/// The object built by `scripts/build-bpf.sh` from `bpf/count.bpf.c`.
static OBJECT: &[u8] = aya::include_bytes_aligned!("bpf/count.bpf.o");

/// Use this object file instead of the embedded one (CI runs the tests on an
/// object rebuilt from source).
pub const OBJECT_ENV: &str = "FDWATCH_SYSCALLS_BPF_OBJECT";

const PROGRAM: &str = "fdw_sys_enter";
const MAP: &str = "fdw_syscalls";
const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";
const CAP_BPF: u32 = 39;
/// The inode number of the initial pid namespace (`PROC_PID_INIT_INO`).
const INIT_PID_NS_INO: u64 = 0xEFFF_FFFC;

/// `enum slot` of count.bpf.c, in order: which field each slot adds to.
const SLOTS: [fn(&mut SyscallCounts, u64); NR_SLOTS] = [
    |c, v| c.total += v,
    |c, v| c.socket += v,
    |c, v| c.socket_netlink += v,
    |c, v| c.socket_inet += v,
    |c, v| c.socket_inet6 += v,
    |c, v| c.socket_unix += v,
    |c, v| c.close += v,
    |c, v| c.openat += v,
    |c, v| c.accept += v,
    |c, v| c.connect += v,
    |c, v| c.bind += v,
    |c, v| c.sendto += v,
    |c, v| c.recvfrom += v,
    |c, v| c.sendmsg += v,
    |c, v| c.recvmsg += v,
];
const NR_SLOTS: usize = 15;

/// The syscall numbers the program compares against, by global name. They
/// are this architecture's (libc's), so the object itself is arch-neutral.
const SYSCALL_NUMBERS: [(&str, libc::c_long); 11] = [
    ("nr_socket", libc::SYS_socket),
    ("nr_close", libc::SYS_close),
    ("nr_openat", libc::SYS_openat),
    ("nr_accept", libc::SYS_accept),
    ("nr_accept4", libc::SYS_accept4),
    ("nr_connect", libc::SYS_connect),
    ("nr_bind", libc::SYS_bind),
    ("nr_sendto", libc::SYS_sendto),
    ("nr_recvfrom", libc::SYS_recvfrom),
    ("nr_sendmsg", libc::SYS_sendmsg),
    ("nr_recvmsg", libc::SYS_recvmsg),
];

pub(super) struct BpfCounter {
    /// Holds the program and its raw tracepoint link (detached on drop).
    _ebpf: Ebpf,
    counts: PerCpuArray<MapData, [u64; NR_SLOTS]>,
}

/// The cheap checks, in the order a person would fix them: privileges, pid
/// namespace, BTF, the target's ABI. `Err` is the one-line reason.
fn precheck(pid: i32) -> Result<(), String> {
    let caps = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| access::parse_capeff(&s))
        .unwrap_or(0);
    let has = |c: u32| caps & (1u64 << c) != 0;
    // CAP_SYS_ADMIN implies both (Linux 5.8+).
    if !has(access::CAP_SYS_ADMIN) && !(has(CAP_BPF) && has(access::CAP_PERFMON)) {
        let missing: Vec<&str> = [(CAP_BPF, "CAP_BPF"), (access::CAP_PERFMON, "CAP_PERFMON")]
            .into_iter()
            .filter(|(c, _)| !has(*c))
            .map(|(_, n)| n)
            .collect();
        return Err(format!(
            "the BPF syscall counter needs root or CAP_BPF + CAP_PERFMON; fdwatch (uid {}) lacks {}",
            nix::unistd::geteuid(),
            missing.join(" and ")
        ));
    }
    // The program compares the kernel's (initial namespace) tgid; a pid
    // given in a child namespace would name another process there.
    match std::fs::metadata("/proc/self/ns/pid") {
        Ok(m) if m.ino() == INIT_PID_NS_INO => {}
        Ok(_) => {
            return Err(
                "fdwatch runs in a child pid namespace and the BPF syscall counter filters on the host's tgids (run with the host's pid namespace, e.g. hostPID)".into(),
            )
        }
        Err(e) => return Err(format!("cannot tell fdwatch's pid namespace (/proc/self/ns/pid: {e})")),
    }
    if !Path::new(BTF_PATH).exists() {
        return Err(format!(
            "the BPF syscall counter needs kernel BTF ({BTF_PATH} is missing: a kernel built without CONFIG_DEBUG_INFO_BTF)"
        ));
    }
    if let Some(bits) = elf_class(pid) {
        if bits != usize::BITS {
            return Err(format!(
                "pid {pid} is a {bits}-bit program: its syscall numbers are not fdwatch's"
            ));
        }
    }
    Ok(())
}

/// 32 or 64 from the ELF header of the target's executable; `None` when
/// unreadable (then we assume the target is native, as nearly all are).
fn elf_class(pid: i32) -> Option<u32> {
    use std::io::Read;
    let mut head = [0u8; 5];
    std::fs::File::open(format!("/proc/{pid}/exe"))
        .ok()?
        .read_exact(&mut head)
        .ok()?;
    match head {
        [0x7f, b'E', b'L', b'F', 1] => Some(32),
        [0x7f, b'E', b'L', b'F', 2] => Some(64),
        _ => None,
    }
}

impl BpfCounter {
    /// Load the program with the target's tgid and this architecture's
    /// syscall numbers, and attach it. `Err` is why BPF cannot count here.
    pub(super) fn attach(pid: i32) -> Result<BpfCounter, SyscallError> {
        precheck(pid).map_err(unavailable)?;
        let btf = Btf::from_sys_fs().map_err(|e| {
            unavailable(format!(
                "the BPF syscall counter cannot read kernel BTF: {e}"
            ))
        })?;
        let owned;
        let bytes: &[u8] = match std::env::var_os(OBJECT_ENV) {
            Some(path) => {
                owned = std::fs::read(&path).map_err(|e| {
                    unavailable(format!(
                        "reading {OBJECT_ENV}={}: {e}",
                        Path::new(&path).display()
                    ))
                })?;
                &owned
            }
            None => OBJECT,
        };
        let tgid = pid as u32;
        let numbers: Vec<(&str, i64)> = SYSCALL_NUMBERS
            .iter()
            .map(|&(name, nr)| (name, nr as i64))
            .collect();
        let mut loader = aya::EbpfLoader::new();
        loader
            .btf(Some(&btf))
            .override_global("target_tgid", &tgid, true);
        for (name, nr) in &numbers {
            loader.override_global(name, nr, true);
        }
        let mut ebpf = loader.load(bytes).map_err(|e| {
            unavailable(format!(
                "loading the BPF syscall counter object failed: {}",
                one_line(&error_chain(&e))
            ))
        })?;
        let prog: &mut RawTracePoint = ebpf
            .program_mut(PROGRAM)
            .ok_or_else(|| unavailable(format!("the BPF object has no program {PROGRAM}")))?
            .try_into()
            .map_err(|e| unavailable(format!("the BPF syscall counter program: {e}")))?;
        prog.load().map_err(|e| {
            unavailable(format!(
                "the kernel refused the BPF syscall counter program: {}",
                one_line(&error_chain(&e))
            ))
        })?;
        prog.attach("sys_enter").map_err(|e| {
            unavailable(format!(
                "attaching the BPF syscall counter to the sys_enter raw tracepoint failed: {}",
                one_line(&error_chain(&e))
            ))
        })?;
        let map = ebpf
            .take_map(MAP)
            .ok_or_else(|| unavailable(format!("the BPF object has no map {MAP}")))?;
        let counts = PerCpuArray::try_from(map)
            .map_err(|e| unavailable(format!("the BPF map {MAP}: {e}")))?;
        Ok(BpfCounter {
            _ebpf: ebpf,
            counts,
        })
    }

    /// Add the counts since attach, summed over the CPUs, into `c`.
    pub(super) fn read(&mut self, c: &mut SyscallCounts) -> Result<(), SyscallError> {
        let per_cpu = self.counts.get(&0, 0).map_err(|e| {
            unavailable(format!(
                "reading the BPF syscall counts failed: {}",
                error_chain(&e)
            ))
        })?;
        for cpu in per_cpu.iter() {
            for (add, &v) in SLOTS.iter().zip(cpu) {
                add(c, v);
            }
        }
        Ok(())
    }

    /// fds held: the program, its link, its two maps (counts, .rodata) and
    /// the object's BTF, which aya loads into the kernel.
    pub(super) fn fds(&self) -> usize {
        5
    }
}

/// A verifier log on one line: its first line and the verifier's verdict
/// (the last line before its statistics).
fn one_line(text: &str) -> String {
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

/// The whole source chain of an error (aya puts the kernel's reason in a source).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_fill_every_count_once() {
        let mut c = SyscallCounts::default();
        for (i, add) in SLOTS.iter().enumerate() {
            add(&mut c, 1 << i);
        }
        // Every slot lands in a different field.
        let fields = [
            c.total,
            c.socket,
            c.socket_netlink,
            c.socket_inet,
            c.socket_inet6,
            c.socket_unix,
            c.close,
            c.openat,
            c.accept,
            c.connect,
            c.bind,
            c.sendto,
            c.recvfrom,
            c.sendmsg,
            c.recvmsg,
        ];
        for (i, f) in fields.iter().enumerate() {
            assert_eq!(*f, 1 << i, "slot {i}");
        }
    }

    /// The C enum and the Rust table agree (the source is the truth).
    #[test]
    fn slot_enum_matches_the_c_source() {
        let src = include_str!("bpf/count.bpf.c");
        let start = src.find("enum slot {").expect("enum slot");
        let body = &src[start..start + src[start..].find("};").expect("end of enum")];
        let names: Vec<&str> = body
            .lines()
            .skip(1)
            .map(|l| {
                l.trim()
                    .trim_end_matches(',')
                    .split(' ')
                    .next()
                    .unwrap_or("")
            })
            .filter(|n| n.starts_with("S_"))
            .collect();
        // The order of `SLOTS` (checked above against the fields).
        let want = [
            "S_TOTAL",
            "S_SOCKET",
            "S_SOCKET_NETLINK",
            "S_SOCKET_INET",
            "S_SOCKET_INET6",
            "S_SOCKET_UNIX",
            "S_CLOSE",
            "S_OPENAT",
            "S_ACCEPT",
            "S_CONNECT",
            "S_BIND",
            "S_SENDTO",
            "S_RECVFROM",
            "S_SENDMSG",
            "S_RECVMSG",
        ];
        assert_eq!(names, want);
        assert!(body.contains("NR_SLOTS"));
        for (name, _) in SYSCALL_NUMBERS {
            assert!(
                src.contains(&format!("const volatile __s64 {name} = -1;")),
                "{name} is not a global of count.bpf.c"
            );
        }
    }

    #[test]
    fn elf_class_of_self() {
        let me = std::process::id() as i32;
        assert_eq!(elf_class(me), Some(usize::BITS));
        assert_eq!(elf_class(-1), None);
    }
}

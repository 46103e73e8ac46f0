//! The BPF backend: one program on the `sys_enter` raw tracepoint counts the
//! syscalls of the watched tgids into a per-CPU array (`bpf/count.bpf.c`).
//!
//! The filter is the tgid, so every thread of a target is counted, whenever
//! it was created, with nothing to attach per thread; exited threads' counts
//! stay in the per-CPU array. `read()` sums the CPUs.
//!
//! Every program on sys_enter costs every syscall on the host the kernel's
//! dispatch, whatever the program does, so all the counters of one fdwatch
//! share ONE program ([`Shared`]): each counter registers its tgid in a slot
//! of the program's target list and reads that slot's counts (minus what
//! they were at attach, so slots can be reused and shared).
//!
//! Nothing is pinned: the program, its maps and the raw tracepoint link are
//! fds of fdwatch, dropped with the last counter, and the kernel frees them
//! whenever fdwatch exits or is killed.
//!
//! Loader: as the BPF census, the kernel applies the CO-RE relocations
//! where it can (Linux 5.17+, `bpf::load`, which also attaches the
//! raw tracepoint); else aya, which parses the kernel BTF in user space
//! (~60 ms of CPU). `FDWATCH_BPF_LOADER=kernel|aya` picks one for both.
//! Either way the maps are read and written with raw `bpf()` calls.

use crate::bpf::{error_chain, kernel_then_aya, load, one_line, Keep, Loader};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Mutex, MutexGuard};

use aya::maps::{Map, MapData};
use aya::programs::RawTracePoint;
use aya::{Btf, Ebpf};

use super::{unavailable, SyscallCounts, SyscallError};

/// The object built by `scripts/build-bpf.sh` from `bpf/count.bpf.c`.
static OBJECT: &[u8] = aya::include_bytes_aligned!("bpf/count.bpf.o");

/// Use this object file instead of the embedded one (CI runs the tests on an
/// object rebuilt from source).
pub const OBJECT_ENV: &str = "FDWATCH_SYSCALLS_BPF_OBJECT";

const PROGRAM: &str = "fdw_sys_enter";
const COUNTS_MAP: &str = "fdw_syscalls";
const TARGETS_MAP: &str = "fdw_targets";
/// Processes one fdwatch can count with BPF at once (MAX_TARGETS in C).
pub const MAX_TARGETS: u32 = 64;

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

/// One counter: a slot of the shared program, and that slot's counts when
/// this counter attached.
pub(super) struct BpfCounter {
    slot: u32,
    baseline: [u64; NR_SLOTS],
    loader: Loader,
}

/// A map of the program: its own fd (kernel CO-RE loader) or aya's.
enum MapFd {
    Own(OwnedFd),
    Aya(MapData),
}

impl MapFd {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            MapFd::Own(fd) => fd.as_fd(),
            MapFd::Aya(data) => data.fd().as_fd(),
        }
    }
}

/// The program of this process and its target list, loaded by the first
/// counter and dropped (detached) with the last.
struct Shared {
    /// Holds the program and its raw tracepoint link.
    _keep: Keep,
    loader: Loader,
    /// `fdw_targets`: one [`Targets`] (checked at load).
    targets: MapFd,
    /// `fdw_syscalls`: per CPU, `[u64; NR_SLOTS]` per slot (checked at load).
    counts: MapFd,
    /// Possible CPUs: the rows of a `counts` lookup.
    cpus: usize,
    /// What the program's `struct targets` holds now: `[0]` the slots in
    /// use (a high-water mark), `[1 + slot]` the slot's tgid (0: free).
    published: Targets,
    /// How many counters use each slot.
    users: [usize; MAX_TARGETS as usize],
}

/// `struct targets` of count.bpf.c: `used`, then `tgid[MAX_TARGETS]`.
type Targets = [u32; MAX_TARGETS as usize + 1];

static SHARED: Mutex<Option<Shared>> = Mutex::new(None);

fn shared() -> MutexGuard<'static, Option<Shared>> {
    // A panic elsewhere while holding it leaves consistent data: no
    // update spans two statements that a panic could split.
    SHARED.lock().unwrap_or_else(|p| p.into_inner())
}

/// The cheap checks, in the order a person would fix them: privileges, pid
/// namespace, BTF, the target's ABI. `Err` is the one-line reason.
fn precheck(pid: i32) -> Result<(), String> {
    crate::bpf::precheck("the BPF syscall counter", "the BPF syscall counter", true)?;
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
    /// Count `pid` with this process's program, loading and attaching it
    /// first if no counter has. `Err` is why BPF cannot count here.
    pub(super) fn attach(pid: i32) -> Result<BpfCounter, SyscallError> {
        precheck(pid).map_err(unavailable)?;
        let mut guard = shared();
        let shared = match guard.take() {
            Some(s) => guard.insert(s),
            None => guard.insert(Shared::load()?),
        };
        let counter = shared
            .register(pid as u32)
            .and_then(|slot| match shared.sum(slot) {
                Ok(baseline) => Ok(BpfCounter {
                    slot,
                    baseline,
                    loader: shared.loader,
                }),
                Err(e) => {
                    shared.unregister(slot);
                    Err(e)
                }
            });
        if counter.is_err() && shared.is_idle() {
            *guard = None;
        }
        counter.map_err(unavailable)
    }

    /// Add the counts since attach, summed over the CPUs, into `c`.
    pub(super) fn read(&mut self, c: &mut SyscallCounts) -> Result<(), SyscallError> {
        let guard = shared();
        let Some(shared) = guard.as_ref() else {
            return Err(unavailable("the BPF syscall counter was unloaded"));
        };
        let now = shared.sum(self.slot).map_err(unavailable)?;
        for ((add, now), then) in SLOTS.iter().zip(now).zip(self.baseline) {
            add(c, now.saturating_sub(then));
        }
        Ok(())
    }

    /// fds of this process's program, shared by all its BPF counters: the
    /// program, its link, its three maps (targets, counts, .rodata) and the
    /// object's BTF, loaded into the kernel by either loader.
    pub(super) fn fds(&self) -> usize {
        6
    }

    /// How this process's program was loaded.
    pub(super) fn loader(&self) -> Loader {
        self.loader
    }
}

impl Drop for BpfCounter {
    fn drop(&mut self) {
        let mut guard = shared();
        if let Some(shared) = guard.as_mut() {
            shared.unregister(self.slot);
            if shared.is_idle() {
                // The last counter: detach and unload.
                *guard = None;
            }
        }
    }
}

impl Shared {
    /// Load the program with this architecture's syscall numbers and attach
    /// it, counting nothing until a target is registered: with the kernel's
    /// CO-RE where it can, else (or as [`LOADER_ENV`] says) with aya.
    fn load() -> Result<Shared, SyscallError> {
        let object = load::object_bytes(OBJECT_ENV, OBJECT).map_err(unavailable)?;
        let bytes: &[u8] = &object;
        // The C globals are __s64; c_long is i32 on 32-bit targets.
        #[allow(clippy::useless_conversion)]
        let numbers: Vec<(&str, [u8; 8])> = SYSCALL_NUMBERS
            .iter()
            .map(|&(name, nr)| (name, i64::from(nr).to_ne_bytes()))
            .collect();
        let globals: Vec<(&str, &[u8])> = numbers.iter().map(|(n, v)| (*n, v.as_slice())).collect();
        let spec = load::Spec {
            program: PROGRAM,
            attach: load::Attach::RawTracepoint("sys_enter"),
            globals: &globals,
        };
        kernel_then_aya(
            "the BPF syscall counter",
            || {
                let mut l = load::load(bytes, &spec)?;
                let targets = l.take_map(TARGETS_MAP)?;
                let counts = l.take_map(COUNTS_MAP)?;
                let (prog, mut rest) = l.into_parts();
                rest.push(prog);
                // A map that is not what this code reads is an error, not a
                // reason to try aya (which would load the same object).
                Ok(Shared::new(
                    Keep::Fds(rest),
                    Loader::KernelCoRe,
                    MapFd::Own(targets),
                    MapFd::Own(counts),
                ))
            },
            || {
                let (ebpf, targets, counts) = load_with_aya(bytes, &numbers)?;
                Ok(Shared::new(
                    Keep::Aya(Box::new(ebpf)),
                    Loader::Aya,
                    MapFd::Aya(targets),
                    MapFd::Aya(counts),
                ))
            },
            unavailable,
        )?
    }

    /// Check the maps are what this code reads and writes (the object may
    /// come from [`OBJECT_ENV`]): lookups write what the kernel says.
    fn new(
        keep: Keep,
        loader: Loader,
        targets: MapFd,
        counts: MapFd,
    ) -> Result<Shared, SyscallError> {
        const BPF_MAP_TYPE_ARRAY: u32 = 2;
        const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
        let info = |name: &str, map: &MapFd| {
            load::map_info(map.fd()).map_err(|e| unavailable(format!("the BPF map {name}: {e}")))
        };
        let (ty, key, value, entries) = info(TARGETS_MAP, &targets)?;
        if (ty, key, value as usize) != (BPF_MAP_TYPE_ARRAY, 4, std::mem::size_of::<Targets>())
            || entries < 1
        {
            return Err(unavailable(format!(
                "the BPF map {TARGETS_MAP} is not an array of one {}-byte value: the object and fdwatch disagree",
                std::mem::size_of::<Targets>()
            )));
        }
        let (ty, key, value, entries) = info(COUNTS_MAP, &counts)?;
        if (ty, key, value as usize) != (BPF_MAP_TYPE_PERCPU_ARRAY, 4, NR_SLOTS * 8) {
            return Err(unavailable(format!(
                "the BPF map {COUNTS_MAP} is not a per-CPU array of {NR_SLOTS} counts: the object and fdwatch disagree"
            )));
        }
        if entries != MAX_TARGETS {
            return Err(unavailable(format!(
                "the BPF map {COUNTS_MAP} has {entries} entries, not {MAX_TARGETS}: the object and fdwatch disagree"
            )));
        }
        let cpus = aya::util::nr_cpus().map_err(|(path, e)| {
            unavailable(format!("the BPF syscall counter cannot read {path}: {e}"))
        })?;
        Ok(Shared {
            _keep: keep,
            loader,
            targets,
            counts,
            cpus,
            published: [0; MAX_TARGETS as usize + 1],
            users: [0; MAX_TARGETS as usize],
        })
    }

    /// The slot counting `tgid`: its own if another counter has one, else
    /// the first free one, published to the program.
    fn register(&mut self, tgid: u32) -> Result<u32, String> {
        let tgid_of = |slot: usize| self.published[1 + slot];
        if let Some(slot) = (0..self.users.len()).find(|&s| self.users[s] > 0 && tgid_of(s) == tgid)
        {
            self.users[slot] += 1;
            return Ok(slot as u32);
        }
        let Some(slot) = self.users.iter().position(|&u| u == 0) else {
            return Err(format!(
                "the BPF syscall counter counts at most {MAX_TARGETS} processes per fdwatch"
            ));
        };
        // One field per update, the tgid before the mark: the program never
        // reads a slot it was not told about.
        self.publish(1 + slot, tgid)?;
        if slot as u32 >= self.published[0] {
            self.publish(0, slot as u32 + 1)?;
        }
        self.users[slot] = 1;
        Ok(slot as u32)
    }

    fn unregister(&mut self, slot: u32) {
        let slot = slot as usize;
        let Some(users) = self.users.get_mut(slot) else {
            return;
        };
        *users = users.saturating_sub(1);
        if *users > 0 {
            return;
        }
        // Best effort: a failure leaves a stale tgid counted into a slot no
        // one reads, until the program is unloaded.
        let _ = self.publish(1 + slot, 0);
        let used = self.users.iter().rposition(|&u| u > 0).map_or(0, |s| s + 1);
        if used as u32 != self.published[0] {
            let _ = self.publish(0, used as u32);
        }
    }

    fn is_idle(&self) -> bool {
        self.users.iter().all(|&u| u == 0)
    }

    /// Set one field of the program's target list.
    fn publish(&mut self, field: usize, value: u32) -> Result<(), String> {
        let mut next = self.published;
        next[field] = value;
        load::update(self.targets.fd(), 0, &next)
            .map_err(|e| format!("updating the BPF syscall counter's targets failed: {e}"))?;
        self.published = next;
        Ok(())
    }

    /// A slot's counts summed over the CPUs.
    fn sum(&self, slot: u32) -> Result<[u64; NR_SLOTS], String> {
        // Each CPU's value is NR_SLOTS u64s (a multiple of 8 bytes: no padding).
        let mut per_cpu = vec![0u8; self.cpus * NR_SLOTS * 8];
        // SAFETY: `new` checked the map is a per-CPU array of NR_SLOTS * 8
        // byte values, and the kernel writes one per possible CPU.
        unsafe { load::lookup_into(self.counts.fd(), slot, &mut per_cpu) }
            .map_err(|e| format!("reading the BPF syscall counts failed: {e}"))?;
        let mut sum = [0u64; NR_SLOTS];
        for cpu in per_cpu.chunks_exact(NR_SLOTS * 8) {
            for (s, v) in sum.iter_mut().zip(cpu.chunks_exact(8)) {
                *s = s.wrapping_add(u64::from_ne_bytes(v.try_into().unwrap_or_default()));
            }
        }
        Ok(sum)
    }
}

/// Load and attach through aya (user-space CO-RE against the parsed kernel
/// BTF): the Ebpf holding the program and link, and the two maps.
fn load_with_aya(
    bytes: &[u8],
    numbers: &[(&str, [u8; 8])],
) -> Result<(Ebpf, MapData, MapData), SyscallError> {
    let btf = Btf::from_sys_fs().map_err(|e| {
        unavailable(format!(
            "the BPF syscall counter cannot read kernel BTF: {e}"
        ))
    })?;
    let values: Vec<(&str, i64)> = numbers
        .iter()
        .map(|(n, v)| (*n, i64::from_ne_bytes(*v)))
        .collect();
    let mut loader = aya::EbpfLoader::new();
    loader.btf(Some(&btf));
    for (name, nr) in &values {
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
    let mut map = |name: &str| match ebpf.take_map(name) {
        Some(Map::Array(data) | Map::PerCpuArray(data)) => Ok(data),
        Some(_) => Err(unavailable(format!(
            "the BPF map {name} is not an array: the object and fdwatch disagree"
        ))),
        None => Err(unavailable(format!("the BPF object has no map {name}"))),
    };
    let targets = map(TARGETS_MAP)?;
    let counts = map(COUNTS_MAP)?;
    Ok((ebpf, targets, counts))
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
        assert!(src.contains(&format!("#define MAX_TARGETS {MAX_TARGETS}\n")));
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

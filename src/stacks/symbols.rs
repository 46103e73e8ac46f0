//! Names for the addresses of a traced process's stacks, and the checks
//! that decide how far a stack can be believed.
//!
//! Symbolization is blazesym's (ELF symbol tables, DWARF line info, Go
//! binaries' symbol tables, demangled Rust and C++ names), through the
//! process's own `/proc/PID/maps` and `map_files`, so it needs the process
//! alive: addresses are resolved as soon as a snapshot sees them and kept.
//!
//! A frame-pointer walk through code built without frame pointers reads
//! whatever the frame register holds: it can produce return addresses that
//! are not. A frame is believed only if it points into executable code of
//! the process and the bytes before it are a call instruction (read from
//! `/proc/PID/mem`); the stack is cut at the first frame that is not.
//! Nothing here names a caller it could not check.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::FileExt;

use blazesym::symbolize::source::{Process, Source};
use blazesym::symbolize::{Input, Symbolized, Symbolizer};

/// One frame's name, as resolved.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Frame {
    pub addr: u64,
    /// The function (demangled), if known.
    pub name: Option<String>,
    /// The file the code is in (the executable or a shared library).
    pub module: Option<String>,
    /// Source file and line, where debug info has them.
    pub file: Option<String>,
    pub line: Option<u32>,
    /// A function inlined at this address (its caller follows).
    pub inlined: bool,
}

/// What is known of one address.
#[derive(Debug, Clone, Default)]
struct Resolved {
    /// Innermost first: inlined functions, then the containing function.
    frames: Vec<Frame>,
    /// The address is in executable code of the process.
    in_code: bool,
    /// The bytes before it are a call instruction (for return addresses).
    after_call: bool,
    /// Offset of the address in its function (0: a function's start,
    /// which no return address can be).
    offset: usize,
    /// Where its function starts in the process, if named.
    start: Option<u64>,
}

/// The symbolizer of one process, with what it has resolved so far.
pub struct Symbols {
    pid: i32,
    symbolizer: Symbolizer,
    cache: HashMap<u64, Resolved>,
    mem: Option<std::fs::File>,
}

/// The executable mappings of `pid`: `[lo, hi)` and their file.
pub fn exec_ranges(pid: i32) -> std::io::Result<Vec<(u64, u64, String)>> {
    let mut text = String::new();
    // Bounded: a process with more mappings than this has its first ones
    // read (code is mapped early).
    std::fs::File::open(format!("/proc/{pid}/maps"))?
        .take(8 << 20)
        .read_to_string(&mut text)?;
    Ok(parse_exec_ranges(&text))
}

/// `lo-hi perms offset dev inode path` lines with `x` in perms.
pub fn parse_exec_ranges(maps: &str) -> Vec<(u64, u64, String)> {
    maps.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let range = f.next()?;
            let perms = f.next()?;
            if perms.as_bytes().get(2) != Some(&b'x') {
                return None;
            }
            let (lo, hi) = range.split_once('-')?;
            let lo = u64::from_str_radix(lo, 16).ok()?;
            let hi = u64::from_str_radix(hi, 16).ok()?;
            let path = f.nth(3).unwrap_or("").to_string();
            (lo < hi).then_some((lo, hi, path))
        })
        .collect()
}

impl Symbols {
    pub fn new(pid: i32) -> Symbols {
        Symbols {
            pid,
            symbolizer: Symbolizer::new(),
            cache: HashMap::new(),
            // Root (or ptrace rights) reads the target's code; without it
            // no frame after the first can be checked, so none is believed.
            mem: std::fs::File::open(format!("/proc/{pid}/mem")).ok(),
        }
    }

    /// Resolve the addresses not seen before (while the process lives).
    /// `return_addrs` are return addresses (looked up at `addr - 1`, so a
    /// call that ends its function names that function).
    pub fn resolve(&mut self, addrs: &[u64], return_addrs: &[u64]) {
        let ranges = exec_ranges(self.pid).unwrap_or_default();
        let in_code = |a: u64| ranges.iter().any(|(lo, hi, _)| a >= *lo && a < *hi);
        let mut want: Vec<(u64, bool)> = addrs
            .iter()
            .map(|a| (*a, false))
            .chain(return_addrs.iter().map(|a| (*a, true)))
            .filter(|(a, _)| !self.cache.contains_key(a))
            .collect();
        want.sort_unstable();
        want.dedup_by_key(|(a, _)| *a);
        if want.is_empty() {
            return;
        }
        let Some(pid) = std::num::NonZeroU32::new(self.pid as u32) else {
            return;
        };
        let lookups: Vec<u64> = want
            .iter()
            .map(|(a, ret)| if *ret { a.saturating_sub(1) } else { *a })
            .collect();
        let src = Source::Process(Process::new(blazesym::Pid::Pid(pid)));
        let syms = self
            .symbolizer
            .symbolize(&src, Input::AbsAddr(&lookups))
            .unwrap_or_default();
        for (i, (addr, ret)) in want.iter().enumerate() {
            let mut r = Resolved {
                in_code: in_code(*addr),
                ..Resolved::default()
            };
            if let Some(Symbolized::Sym(sym)) = syms.get(i) {
                r.offset = sym.offset + usize::from(*ret);
                r.start = lookups[i].checked_sub(sym.offset as u64);
                let module = sym
                    .module
                    .as_ref()
                    .map(|m| m.to_string_lossy().into_owned());
                for inl in sym.inlined.iter().rev() {
                    r.frames.push(Frame {
                        addr: *addr,
                        name: Some(inl.name.to_string()),
                        module: module.clone(),
                        file: inl
                            .code_info
                            .as_ref()
                            .map(|c| c.file.to_string_lossy().into_owned()),
                        line: inl.code_info.as_ref().and_then(|c| c.line),
                        inlined: true,
                    });
                }
                r.frames.push(Frame {
                    addr: *addr,
                    name: Some(sym.name.to_string()),
                    module,
                    file: sym
                        .code_info
                        .as_ref()
                        .map(|c| c.file.to_string_lossy().into_owned()),
                    line: sym.code_info.as_ref().and_then(|c| c.line),
                    inlined: false,
                });
            } else {
                let module = ranges
                    .iter()
                    .find(|(lo, hi, _)| *addr >= *lo && *addr < *hi)
                    .map(|(_, _, p)| p.clone())
                    .filter(|p| !p.is_empty());
                r.frames.push(Frame {
                    addr: *addr,
                    module,
                    ..Frame::default()
                });
            }
            if *ret && r.in_code {
                r.after_call = self.after_call(*addr);
            }
            self.cache.insert(*addr, r);
        }
    }

    /// Whether the instruction before `addr` is a call (x86-64: `call
    /// rel32`, or `call r/m` in its register, memory and rip-relative forms;
    /// aarch64: `bl` or `blr`).
    fn after_call(&self, addr: u64) -> bool {
        let Some(mem) = &self.mem else {
            return false;
        };
        let mut b = [0u8; 8];
        let Some(at) = addr.checked_sub(8) else {
            return false;
        };
        if mem.read_exact_at(&mut b, at).is_err() {
            return false;
        }
        is_call_before(&b)
    }

    fn read_u64(&self, at: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        self.mem.as_ref()?.read_exact_at(&mut b, at).ok()?;
        Some(u64::from_le_bytes(b))
    }

    /// Where the call instruction before the return address `ret` goes,
    /// when it says so itself: `call rel32`, or `call *disp32(%rip)`
    /// through a GOT slot; a PLT stub (`[endbr64] [bnd] jmp *disp32(%rip)`)
    /// is followed to the function its GOT slot holds.
    #[cfg(target_arch = "x86_64")]
    fn call_target(&self, ret: u64) -> Option<u64> {
        let mem = self.mem.as_ref()?;
        let mut b = [0u8; 8];
        mem.read_exact_at(&mut b, ret.checked_sub(8)?).ok()?;
        let rel =
            |at: usize| i64::from(i32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]));
        let target = if b[3] == 0xE8 {
            ret.wrapping_add_signed(rel(4))
        } else if b[2] == 0xFF && b[3] == 0x15 {
            self.read_u64(ret.wrapping_add_signed(rel(4)))?
        } else {
            return None;
        };
        // A PLT stub: one indirect jump through the GOT.
        let mut p = [0u8; 16];
        if mem.read_exact_at(&mut p, target).is_err() {
            return Some(target);
        }
        let mut at = 0;
        if p[..4] == [0xF3, 0x0F, 0x1E, 0xFA] {
            at = 4;
        }
        if p[at] == 0xF2 {
            at += 1;
        }
        if p[at] == 0xFF && p[at + 1] == 0x25 {
            let disp = i64::from(i32::from_le_bytes([
                p[at + 2],
                p[at + 3],
                p[at + 4],
                p[at + 5],
            ]));
            let next = target + at as u64 + 6;
            return self.read_u64(next.wrapping_add_signed(disp));
        }
        Some(target)
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn call_target(&self, _ret: u64) -> Option<u64> {
        None
    }

    /// Of the code addresses found on top of the user stack, the return
    /// address into the function that called `leaf`'s function: the first
    /// that is believable and whose call instruction targets the start of
    /// the function `leaf` is in. None if none checks out (then no caller
    /// is named).
    pub fn leaf_caller(&self, leaf: u64, candidates: &[u64]) -> Option<u64> {
        let start = self.cache.get(&leaf)?.start?;
        candidates
            .iter()
            .copied()
            .find(|c| self.believable_return(*c) && self.call_target(*c) == Some(start))
    }

    /// The frames of one address (inlined functions first); an address
    /// never resolved is one unnamed frame.
    pub fn frames(&self, addr: u64) -> Vec<Frame> {
        self.cache.get(&addr).map_or_else(
            || {
                vec![Frame {
                    addr,
                    ..Frame::default()
                }]
            },
            |r| r.frames.clone(),
        )
    }

    /// Whether `addr`, found as a return address, is believable: in code,
    /// not at a function's start, after a call instruction.
    pub fn believable_return(&self, addr: u64) -> bool {
        self.cache.get(&addr).is_some_and(|r| {
            r.in_code && r.after_call && (r.offset > 0 || r.frames[0].name.is_none())
        })
    }
}

/// The 8 bytes before a return address end with a call instruction.
#[cfg(target_arch = "x86_64")]
pub fn is_call_before(b: &[u8; 8]) -> bool {
    // ModRM with reg = 2 (`FF /2` is call r/m64).
    let call_modrm = |m: u8| (m >> 3) & 7 == 2;
    // call rel32
    b[3] == 0xE8
        // call *%reg (FF D0+r): 2 bytes
        || (b[6] == 0xFF && call_modrm(b[7]) && b[7] >> 6 == 3)
        // call *(%reg) / *disp8(%reg) / with SIB: 2-4 bytes
        || (b[6] == 0xFF && call_modrm(b[7]) && b[7] >> 6 == 0 && b[7] & 7 != 4 && b[7] & 7 != 5)
        || (b[5] == 0xFF && call_modrm(b[6]) && b[6] >> 6 == 1 && b[6] & 7 != 4)
        || (b[5] == 0xFF && call_modrm(b[6]) && b[6] >> 6 == 0 && b[6] & 7 == 4)
        || (b[4] == 0xFF && call_modrm(b[5]) && b[5] >> 6 == 1 && b[5] & 7 == 4)
        // call *disp32(%rip) / *disp32(%reg): 6 bytes; with SIB: 7
        || (b[2] == 0xFF && call_modrm(b[3]) && (b[3] >> 6 == 2 || b[3] & 0xC7 == 5) && b[3] & 7 != 4)
        || (b[1] == 0xFF && call_modrm(b[2]) && b[2] >> 6 == 2 && b[2] & 7 == 4)
        // with a REX prefix (41 FF D0+r: call *%r8..r15)
        || (b[5] == 0x41 && b[6] == 0xFF && call_modrm(b[7]))
}

/// The 4 bytes before a return address are `bl` or `blr`.
#[cfg(target_arch = "aarch64")]
pub fn is_call_before(b: &[u8; 8]) -> bool {
    let insn = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    insn & 0xFC00_0000 == 0x9400_0000 || insn & 0xFFFF_FC1F == 0xD63F_0000
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub fn is_call_before(_: &[u8; 8]) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_ranges_of_maps_text() {
        let maps = "\
55d0c0a00000-55d0c0a01000 r--p 00000000 fd:01 123 /usr/bin/x
55d0c0a01000-55d0c0a05000 r-xp 00001000 fd:01 123 /usr/bin/x
7f0000000000-7f0000001000 rw-p 00000000 00:00 0
7ffd1000-7ffd3000 r-xp 00000000 00:00 0                          [vdso]
garbage line
";
        assert_eq!(
            parse_exec_ranges(maps),
            vec![
                (0x55d0c0a01000, 0x55d0c0a05000, "/usr/bin/x".to_string()),
                (0x7ffd1000, 0x7ffd3000, "[vdso]".to_string()),
            ]
        );
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn call_instructions_before_a_return_address() {
        let with = |tail: &[u8]| {
            let mut b = [0x90u8; 8];
            b[8 - tail.len()..].copy_from_slice(tail);
            is_call_before(&b)
        };
        assert!(with(&[0xE8, 1, 2, 3, 4])); // call rel32
        assert!(with(&[0xFF, 0xD0])); // call *%rax
        assert!(with(&[0x41, 0xFF, 0xD3])); // call *%r11
        assert!(with(&[0xFF, 0x15, 1, 2, 3, 4])); // call *disp32(%rip)
        assert!(with(&[0xFF, 0x50, 0x08])); // call *8(%rax)
        assert!(!with(&[0xC3])); // ret
        assert!(!with(&[0x48, 0x89, 0xE5])); // mov %rsp,%rbp
        assert!(!with(&[0xFF, 0xE0])); // jmp *%rax
    }
}

//! Loading a BPF program with the kernel doing its CO-RE relocations: the
//! census's `iter/task_file` program and the syscall counter's
//! `raw_tracepoint/sys_enter` program (src/syscalls/bpf.rs) both load here.
//!
//! aya relocates a CO-RE object in user space: it parses the whole kernel BTF
//! (5.5 MB here) into its own types, then scans all of them once per struct
//! the program reads. That was ~80 ms of CPU per fdwatch process here, most
//! of what a one-shot BPF census costs and an eighth of a minute-long watch
//! (and ~62 ms of the syscall counter's attach).
//! Since Linux 5.17 `BPF_PROG_LOAD` takes the object's CO-RE records itself
//! (`core_relos`, what libbpf's light skeletons use) and resolves them against
//! the BTF the kernel already holds. This module does that, with aya-obj for
//! the parts aya would do anyway (ELF, map definitions, global data, map
//! relocations, the object BTF's fixups) and raw `bpf()` calls for the rest.
//! The one thing it reads of the kernel's BTF is the id of an iterator's
//! attach function, found by a scan of the raw type headers.
//!
//! [`load`] returns `Err` for anything it cannot do here (an older kernel
//! refuses `core_relos` with E2BIG, a BTF feature it lacks, ...): the caller
//! then loads through aya, whose error (if it fails too) is the one reported.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use aya_obj::btf::BtfFeatures;
use aya_obj::{EbpfSectionKind, Object};
use object::{Object as _, ObjectSection as _};

/// A BPF object's bytes: the file `env` names (a rebuilt object, for tests
/// and CI), else the one built into fdwatch.
pub fn object_bytes(
    env: &str,
    builtin: &'static [u8],
) -> Result<std::borrow::Cow<'static, [u8]>, String> {
    match std::env::var_os(env) {
        Some(path) => std::fs::read(&path)
            .map(std::borrow::Cow::Owned)
            .map_err(|e| {
                format!(
                    "reading {env}={}: {e}",
                    std::path::Path::new(&path).display()
                )
            }),
        None => Ok(std::borrow::Cow::Borrowed(builtin)),
    }
}

/// The kernel's BTF: types of the running kernel.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// What kind of program to load, and how it attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach<'a> {
    /// An `iter/<target>` program (`BPF_PROG_TYPE_TRACING`,
    /// `BPF_TRACE_ITER`, against the kernel's `bpf_iter_<target>`); the
    /// caller creates its links and iterators.
    Iter(&'a str),
    /// A `raw_tracepoint/<name>` program, attached here
    /// (`BPF_RAW_TRACEPOINT_OPEN`): [`Loaded::link`].
    RawTracepoint(&'a str),
}

/// What to load: the program (by function name), how it attaches, and the
/// values of global constants (`.rodata`, by symbol name, in the target's
/// byte order) to set before load. `.rodata` is frozen once written, so the
/// verifier treats its values as constants.
#[derive(Debug, Clone, Copy)]
pub struct Spec<'a> {
    pub program: &'a str,
    pub attach: Attach<'a>,
    pub globals: &'a [(&'a str, &'a [u8])],
}

/// A map of a loaded object.
#[derive(Debug)]
pub struct LoadedMap {
    pub name: String,
    pub fd: OwnedFd,
}

/// What a loaded program holds: the program, its raw tracepoint link (if it
/// has one), its maps and the object's BTF. Dropping it unloads everything.
#[derive(Debug)]
pub struct Loaded {
    pub prog: OwnedFd,
    pub link: Option<OwnedFd>,
    pub maps: Vec<LoadedMap>,
    pub btf: OwnedFd,
}

impl Loaded {
    /// Take the map `name` out (the caller keeps its fd).
    pub fn take_map(&mut self, name: &str) -> Result<OwnedFd, String> {
        let at = self
            .maps
            .iter()
            .position(|m| m.name == name)
            .ok_or_else(|| format!("the object has no map {name}"))?;
        Ok(self.maps.remove(at).fd)
    }

    /// Everything but the program, to keep open for the program's life.
    pub fn into_parts(self) -> (OwnedFd, Vec<OwnedFd>) {
        let rest = self
            .link
            .into_iter()
            .chain(self.maps.into_iter().map(|m| m.fd))
            .chain([self.btf])
            .collect();
        (self.prog, rest)
    }
}

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_RAW_TRACEPOINT_OPEN: libc::c_long = 17;
const BPF_BTF_LOAD: libc::c_long = 18;
const BPF_MAP_FREEZE: libc::c_long = 22;
const BPF_PROG_TYPE_RAW_TRACEPOINT: u32 = 17;
const BPF_PROG_TYPE_TRACING: u32 = 26;
const BPF_TRACE_ITER: u32 = 28;
const BTF_KIND_FUNC: u32 = 12;
const BTF_MAGIC: u16 = 0xeb9f;
const OBJ_NAME_LEN: usize = 16;

/// Load `spec.program` of the object `bytes` with the kernel relocating it,
/// and attach it if it is a raw tracepoint program.
pub fn load(bytes: &[u8], spec: &Spec<'_>) -> Result<Loaded, String> {
    let program = spec.program;
    let mut obj = Object::parse(bytes).map_err(|e| format!("parsing the object: {e}"))?;
    if !spec.globals.is_empty() {
        obj.patch_map_data(spec.globals.iter().map(|&(n, v)| (n, (v, true))).collect())
            .map_err(|e| format!("setting the object's globals: {e}"))?;
    }
    let (prog_type, expected_attach_type, attach_btf_id) = match spec.attach {
        Attach::Iter(target) => {
            let func = format!("bpf_iter_{target}");
            let raw =
                std::fs::read(VMLINUX_BTF).map_err(|e| format!("reading {VMLINUX_BTF}: {e}"))?;
            let id = btf_func_id(&raw, &func)
                .ok_or_else(|| format!("the kernel BTF has no {func} (the {target} iterator)"))?;
            (BPF_PROG_TYPE_TRACING, BPF_TRACE_ITER, id)
        }
        Attach::RawTracepoint(_) => (BPF_PROG_TYPE_RAW_TRACEPOINT, 0, 0),
    };

    // The object's own BTF, as the kernel needs it (DATASEC sizes and the
    // like filled in). Every feature is assumed: a kernel without one
    // refuses the BTF, and aya's loader, which probes, takes over.
    let all = BtfFeatures::new(true, true, true, true, true, true, true, true);
    let btf = obj
        .fixup_and_sanitize_btf(&all)
        .map_err(|e| format!("fixing up the object BTF: {e}"))?
        .ok_or("the object has no BTF")?
        .to_bytes();
    let btf_fd = sys::btf_load(&btf).map_err(|e| format!("loading the object BTF: {e}"))?;

    let defs = std::mem::take(&mut obj.maps);
    let mut maps = Vec::new();
    for (name, map) in &defs {
        let kind = map.section_kind();
        if !matches!(
            kind,
            EbpfSectionKind::BtfMaps
                | EbpfSectionKind::Maps
                | EbpfSectionKind::Rodata
                | EbpfSectionKind::Data
                | EbpfSectionKind::Bss
        ) {
            return Err(format!(
                "map {name}: a {kind:?} section is not handled here"
            ));
        }
        let fd = sys::map_create(
            name,
            map.map_type(),
            map.key_size(),
            map.value_size(),
            map.max_entries(),
            map.map_flags(),
        )
        .map_err(|e| format!("creating map {name}: {e}"))?;
        // Global data: its initial (or set) value, as aya's loader does; a
        // frozen .rodata is what lets the verifier read it as constants.
        let data = map.data();
        if !data.is_empty() {
            if data.len() != map.value_size() as usize {
                return Err(format!(
                    "map {name}: {} bytes of data for a {}-byte value",
                    data.len(),
                    map.value_size()
                ));
            }
            sys::map_update_raw(fd.as_fd(), &0u32 as *const u32 as u64, data.as_ptr() as u64)
                .map_err(|e| format!("writing map {name}: {e}"))?;
        }
        if kind == EbpfSectionKind::Rodata {
            sys::map_freeze(fd.as_fd()).map_err(|e| format!("freezing map {name}: {e}"))?;
        }
        maps.push((name.as_str(), fd, map));
    }
    let text_sections = obj.functions.keys().map(|(s, _)| *s).collect();
    obj.relocate_maps(
        maps.iter().map(|(n, fd, m)| (*n, fd.as_raw_fd(), *m)),
        &text_sections,
    )
    .map_err(|e| format!("relocating maps: {e}"))?;
    obj.relocate_calls(&text_sections)
        .map_err(|e| format!("relocating calls: {e}"))?;

    let prog = obj
        .programs
        .get(program)
        .ok_or_else(|| format!("the object has no program {program}"))?;
    let relos = core_relos(bytes, prog.section_index)?;
    let func = obj
        .functions
        .get(&prog.function_key())
        .ok_or_else(|| format!("the object has no code for {program}"))?;
    // CO-RE records are by byte offset in the section; the kernel wants them
    // by byte offset in the program. A section may hold several programs
    // (the census and the listing share `iter/task_file`): records outside
    // this one's instructions are another program's.
    let insn_bytes = func.instructions.len() * std::mem::size_of::<aya_obj::generated::bpf_insn>();
    let relos: Vec<CoreRelo> = relos
        .into_iter()
        .filter_map(|mut r| {
            let off = (r.insn_off as usize)
                .checked_sub(func.section_offset)
                .filter(|o| *o < insn_bytes)?;
            r.insn_off = off as u32;
            Some(r)
        })
        .collect();
    let func_info = func.func_info.func_info_bytes();
    let line_info = func.line_info.line_info_bytes();
    let license = CString::new(obj.license.as_bytes()).map_err(|e| e.to_string())?;
    let attr = sys::ProgLoad {
        prog_type,
        insn_cnt: func.instructions.len() as u32,
        insns: func.instructions.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: obj_name(program),
        expected_attach_type,
        prog_btf_fd: btf_fd.as_raw_fd() as u32,
        func_info_rec_size: func.func_info_rec_size as u32,
        func_info: func_info.as_ptr() as u64,
        func_info_cnt: func.func_info.len() as u32,
        line_info_rec_size: func.line_info_rec_size as u32,
        line_info: line_info.as_ptr() as u64,
        line_info_cnt: func.line_info.len() as u32,
        attach_btf_id,
        core_relo_cnt: relos.len() as u32,
        core_relos: relos.as_ptr() as u64,
        core_relo_rec_size: std::mem::size_of::<CoreRelo>() as u32,
        ..Default::default()
    };
    let prog = sys::prog_load(attr).map_err(|e| format!("loading {program}: {e}"))?;
    let link = match spec.attach {
        Attach::Iter(_) => None,
        Attach::RawTracepoint(name) => Some(
            sys::raw_tracepoint_open(prog.as_fd(), name)
                .map_err(|e| format!("attaching {program} to the {name} raw tracepoint: {e}"))?,
        ),
    };
    Ok(Loaded {
        prog,
        link,
        maps: maps
            .into_iter()
            .map(|(name, fd, _)| LoadedMap {
                name: name.to_string(),
                fd,
            })
            .collect(),
        btf: btf_fd,
    })
}

/// Set `map[key] = *value`.
///
/// The kernel reads the map's value size from `value`: check it first
/// ([`map_info`]) against `size_of::<V>()`.
pub fn update<V: Copy>(map: BorrowedFd<'_>, key: u32, value: &V) -> std::io::Result<()> {
    sys::map_update(map, &key, value)
}

/// Read `map[key]` into `out` (for a per-CPU map, every possible CPU's value,
/// each rounded up to 8 bytes).
///
/// # Safety
///
/// `out` must be at least as long as what the kernel writes: the map's
/// value size, or for a per-CPU map that rounded up to 8 bytes times the
/// number of possible CPUs ([`map_info`] tells the value size).
pub unsafe fn lookup_into(map: BorrowedFd<'_>, key: u32, out: &mut [u8]) -> std::io::Result<()> {
    sys::map_lookup_raw(map, &key, out.as_mut_ptr() as u64)
}

/// What the kernel says of a map: (type, key size, value size, max entries).
pub fn map_info(map: BorrowedFd<'_>) -> std::io::Result<(u32, u32, u32, u32)> {
    sys::map_info(map)
}

fn obj_name(name: &str) -> [u8; OBJ_NAME_LEN] {
    let mut out = [0u8; OBJ_NAME_LEN];
    let n = name.len().min(OBJ_NAME_LEN - 1);
    out[..n].copy_from_slice(&name.as_bytes()[..n]);
    out
}

/// `struct bpf_core_relo`: the same record in `.BTF.ext` and `BPF_PROG_LOAD`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CoreRelo {
    insn_off: u32,
    type_id: u32,
    access_str_off: u32,
    kind: u32,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// The CO-RE records of the program section (ELF section `section_index`),
/// as in `.BTF.ext` (by byte offset in the section).
fn core_relos(elf: &[u8], section_index: usize) -> Result<Vec<CoreRelo>, String> {
    let file = object::File::parse(elf).map_err(|e| format!("reading the object: {e}"))?;
    let prog_section = file
        .section_by_index(object::SectionIndex(section_index))
        .and_then(|s| s.name())
        .map_err(|e| format!("the program's section: {e}"))?;
    let section = |name: &str| -> Result<&[u8], String> {
        file.section_by_name(name)
            .and_then(|s| s.data().ok())
            .ok_or_else(|| format!("the object has no {name} section"))
    };
    let btf = section(".BTF")?;
    let ext = section(".BTF.ext")?;
    let bad = |what: &str| format!("malformed {what}");
    // .BTF header: magic, version, flags, hdr_len, type_off, type_len, str_off, str_len.
    if u16_at(btf, 0) != Some(BTF_MAGIC) || u16_at(ext, 0) != Some(BTF_MAGIC) {
        return Err(bad("BTF (not little-endian BTF)"));
    }
    let strings = {
        let hdr = u32_at(btf, 4).ok_or_else(|| bad(".BTF"))? as usize;
        let off = u32_at(btf, 16).ok_or_else(|| bad(".BTF"))? as usize;
        let len = u32_at(btf, 20).ok_or_else(|| bad(".BTF"))? as usize;
        btf.get(hdr + off..hdr + off + len)
            .ok_or_else(|| bad(".BTF strings"))?
    };
    let string_at = |off: u32| -> Option<&[u8]> {
        let s = strings.get(off as usize..)?;
        Some(&s[..s.iter().position(|b| *b == 0)?])
    };
    // .BTF.ext header: magic, version, flags, hdr_len, then (off, len) of
    // func_info, line_info and (when hdr_len >= 32) core_relo.
    let hdr = u32_at(ext, 4).ok_or_else(|| bad(".BTF.ext"))? as usize;
    if hdr < 32 {
        return Ok(Vec::new());
    }
    let off = u32_at(ext, 24).ok_or_else(|| bad(".BTF.ext"))? as usize;
    let len = u32_at(ext, 28).ok_or_else(|| bad(".BTF.ext"))? as usize;
    let data = ext
        .get(hdr + off..hdr + off + len)
        .ok_or_else(|| bad(".BTF.ext CO-RE records"))?;
    let mut out = Vec::new();
    if data.is_empty() {
        return Ok(out);
    }
    let rec_size = u32_at(data, 0).ok_or_else(|| bad("CO-RE records"))? as usize;
    if rec_size < std::mem::size_of::<CoreRelo>() {
        return Err(bad("CO-RE record size"));
    }
    let mut at = 4;
    while at < data.len() {
        let sec = u32_at(data, at).ok_or_else(|| bad("CO-RE records"))?;
        let n = u32_at(data, at + 4).ok_or_else(|| bad("CO-RE records"))? as usize;
        at += 8;
        let ours = string_at(sec) == Some(prog_section.as_bytes());
        for _ in 0..n {
            let r = data
                .get(at..at + rec_size)
                .ok_or_else(|| bad("CO-RE records"))?;
            if ours {
                out.push(CoreRelo {
                    insn_off: u32_at(r, 0).unwrap_or_default(),
                    type_id: u32_at(r, 4).unwrap_or_default(),
                    access_str_off: u32_at(r, 8).unwrap_or_default(),
                    kind: u32_at(r, 12).unwrap_or_default(),
                });
            }
            at += rec_size;
        }
    }
    Ok(out)
}

/// The id of the function `name` in raw BTF, by a scan of the type headers
/// (no parse of the types themselves). None for anything unexpected.
pub fn btf_func_id(raw: &[u8], name: &str) -> Option<u32> {
    if u16_at(raw, 0)? != BTF_MAGIC {
        return None;
    }
    let hdr = u32_at(raw, 4)? as usize;
    let (type_off, type_len) = (u32_at(raw, 8)? as usize, u32_at(raw, 12)? as usize);
    let (str_off, str_len) = (u32_at(raw, 16)? as usize, u32_at(raw, 20)? as usize);
    let types = raw.get(hdr + type_off..hdr + type_off + type_len)?;
    let strings = raw.get(hdr + str_off..hdr + str_off + str_len)?;
    let want = name.as_bytes();
    let mut at = 0;
    let mut id = 1;
    while at < types.len() {
        let name_off = u32_at(types, at)? as usize;
        let info = u32_at(types, at + 4)?;
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        if kind == BTF_KIND_FUNC {
            let s = strings.get(name_off..)?;
            if s.len() > want.len() && s.starts_with(want) && s[want.len()] == 0 {
                return Some(id);
            }
        }
        // What follows each kind's 12-byte header (include/uapi/linux/btf.h).
        let extra = match kind {
            0 | 2 | 7..=12 | 16 | 18 => 0,
            1 | 14 | 17 => 4,
            3 => 12,
            4 | 5 | 15 | 19 => 12 * vlen,
            6 | 13 => 8 * vlen,
            _ => return None,
        };
        at += 12 + extra;
        id += 1;
    }
    None
}

/// The `bpf()` commands this loader needs (and the raw call the census's
/// iterator commands use too).
pub(crate) mod sys {
    use super::*;

    #[repr(C)]
    #[derive(Default)]
    pub struct ProgLoad {
        pub prog_type: u32,
        pub insn_cnt: u32,
        pub insns: u64,
        pub license: u64,
        pub log_level: u32,
        pub log_size: u32,
        pub log_buf: u64,
        pub kern_version: u32,
        pub prog_flags: u32,
        pub prog_name: [u8; OBJ_NAME_LEN],
        pub prog_ifindex: u32,
        pub expected_attach_type: u32,
        pub prog_btf_fd: u32,
        pub func_info_rec_size: u32,
        pub func_info: u64,
        pub func_info_cnt: u32,
        pub line_info_rec_size: u32,
        pub line_info: u64,
        pub line_info_cnt: u32,
        pub attach_btf_id: u32,
        pub attach_prog_fd: u32,
        pub core_relo_cnt: u32,
        pub fd_array: u64,
        pub core_relos: u64,
        /// The last field this loader sets: a kernel that does not know it
        /// (before 5.17) finds nonzero bytes past its own `bpf_attr` and
        /// fails with E2BIG.
        pub core_relo_rec_size: u32,
    }

    #[repr(C)]
    #[derive(Default)]
    struct BtfLoad {
        btf: u64,
        log_buf: u64,
        btf_size: u32,
        log_size: u32,
        log_level: u32,
    }

    #[repr(C)]
    #[derive(Default)]
    struct MapCreate {
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        map_flags: u32,
        inner_map_fd: u32,
        numa_node: u32,
        map_name: [u8; OBJ_NAME_LEN],
    }

    #[repr(C)]
    #[derive(Default)]
    struct MapElem {
        map_fd: u32,
        pad: u32,
        key: u64,
        value: u64,
        flags: u64,
    }

    /// `bpf(cmd, attr, size_of(attr))`; `Ok(rc)`.
    pub(crate) fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<libc::c_long> {
        // SAFETY: attr is a valid, initialised bpf_attr prefix of the size
        // given; every pointer in it outlives the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                attr as *mut T,
                std::mem::size_of::<T>() as libc::c_uint,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(rc)
    }

    fn fd_of(rc: libc::c_long) -> OwnedFd {
        // SAFETY: the kernel returned a new fd that nothing else owns.
        unsafe { OwnedFd::from_raw_fd(rc as i32) }
    }

    pub fn btf_load(btf: &[u8]) -> std::io::Result<OwnedFd> {
        let mut attr = BtfLoad {
            btf: btf.as_ptr() as u64,
            btf_size: btf.len() as u32,
            ..Default::default()
        };
        bpf(BPF_BTF_LOAD, &mut attr).map(fd_of)
    }

    pub fn map_create(
        name: &str,
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        map_flags: u32,
    ) -> std::io::Result<OwnedFd> {
        let mut attr = MapCreate {
            map_type,
            key_size,
            value_size,
            max_entries,
            map_flags,
            map_name: obj_name(name),
            ..Default::default()
        };
        bpf(BPF_MAP_CREATE, &mut attr).map(fd_of)
    }

    pub fn map_update<V>(map: BorrowedFd<'_>, key: &u32, value: &V) -> std::io::Result<()> {
        map_update_raw(map, key as *const u32 as u64, value as *const V as u64)
    }

    /// `BPF_MAP_UPDATE_ELEM` of pointers: the kernel reads the map's key
    /// and value sizes from them.
    pub fn map_update_raw(map: BorrowedFd<'_>, key: u64, value: u64) -> std::io::Result<()> {
        let mut attr = MapElem {
            map_fd: map.as_raw_fd() as u32,
            key,
            value,
            ..Default::default()
        };
        bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(|_| ())
    }

    /// `BPF_MAP_LOOKUP_ELEM`: the kernel writes the value (of every CPU,
    /// for a per-CPU map) at `value`.
    pub fn map_lookup_raw(map: BorrowedFd<'_>, key: &u32, value: u64) -> std::io::Result<()> {
        let mut attr = MapElem {
            map_fd: map.as_raw_fd() as u32,
            key: key as *const u32 as u64,
            value,
            ..Default::default()
        };
        bpf(BPF_MAP_LOOKUP_ELEM, &mut attr).map(|_| ())
    }

    /// `BPF_MAP_FREEZE`: no more writes from user space.
    pub fn map_freeze(map: BorrowedFd<'_>) -> std::io::Result<()> {
        let mut attr = [map.as_raw_fd() as u32, 0];
        bpf(BPF_MAP_FREEZE, &mut attr).map(|_| ())
    }

    /// The start of `struct bpf_map_info`.
    #[repr(C)]
    #[derive(Default)]
    struct MapInfo {
        map_type: u32,
        id: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        map_flags: u32,
    }

    #[repr(C)]
    #[derive(Default)]
    struct InfoByFd {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }

    pub fn map_info(map: BorrowedFd<'_>) -> std::io::Result<(u32, u32, u32, u32)> {
        let mut info = MapInfo::default();
        let mut attr = InfoByFd {
            bpf_fd: map.as_raw_fd() as u32,
            info_len: std::mem::size_of::<MapInfo>() as u32,
            info: &mut info as *mut MapInfo as u64,
        };
        bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
        Ok((
            info.map_type,
            info.key_size,
            info.value_size,
            info.max_entries,
        ))
    }

    #[repr(C)]
    #[derive(Default)]
    struct RawTracepointOpen {
        name: u64,
        prog_fd: u32,
        pad: u32,
    }

    /// Attach `prog` to the raw tracepoint `name`: the link's fd.
    pub fn raw_tracepoint_open(prog: BorrowedFd<'_>, name: &str) -> std::io::Result<OwnedFd> {
        let name = CString::new(name)?;
        let mut attr = RawTracepointOpen {
            name: name.as_ptr() as u64,
            prog_fd: prog.as_raw_fd() as u32,
            pad: 0,
        };
        bpf(BPF_RAW_TRACEPOINT_OPEN, &mut attr).map(fd_of)
    }

    /// Load; on failure load again with the verifier's log, and say why in
    /// one line (its first line and its verdict).
    pub fn prog_load(mut attr: ProgLoad) -> Result<OwnedFd, String> {
        match bpf(BPF_PROG_LOAD, &mut attr) {
            Ok(rc) => return Ok(fd_of(rc)),
            Err(e) if e.raw_os_error() == Some(libc::E2BIG) => {
                return Err(format!(
                    "{e} (a kernel before 5.17: no CO-RE in BPF_PROG_LOAD)"
                ))
            }
            Err(_) => {}
        }
        let mut log = vec![0u8; 4 << 20];
        attr.log_level = 1;
        attr.log_buf = log.as_mut_ptr() as u64;
        attr.log_size = log.len() as u32;
        match bpf(BPF_PROG_LOAD, &mut attr) {
            Ok(rc) => Ok(fd_of(rc)),
            Err(e) => {
                let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
                let text = String::from_utf8_lossy(&log[..end]);
                Err(format!("{e}: {}", crate::bpf::one_line(&text)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A raw BTF blob: header, then the given types, then the strings.
    fn blob(types: &[u8], strings: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(BTF_MAGIC.to_le_bytes());
        b.extend([1u8, 0]);
        for v in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            b.extend(v.to_le_bytes());
        }
        b.extend(types);
        b.extend(strings);
        b
    }

    fn ty(name_off: u32, kind: u32, vlen: u32, extra: usize) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend(name_off.to_le_bytes());
        t.extend((kind << 24 | vlen).to_le_bytes());
        t.extend(0u32.to_le_bytes());
        t.extend(vec![0u8; extra]);
        t
    }

    #[test]
    fn finds_a_function_by_name_past_every_kind() {
        let strings = b"\0int\0bpf_iter_task\0bpf_iter_task_file\0";
        let mut types = Vec::new();
        types.extend(ty(1, 1, 0, 4)); // 1 INT
        types.extend(ty(0, 4, 2, 24)); // 2 STRUCT, 2 members
        types.extend(ty(0, 6, 3, 24)); // 3 ENUM, 3 values
        types.extend(ty(0, 13, 1, 8)); // 4 FUNC_PROTO, 1 param
        types.extend(ty(5, 12, 0, 0)); // 5 FUNC bpf_iter_task (a prefix)
        types.extend(ty(0, 19, 1, 12)); // 6 ENUM64
        types.extend(ty(0, 17, 0, 4)); // 7 DECL_TAG
        types.extend(ty(19, 12, 0, 0)); // 8 FUNC bpf_iter_task_file
        let raw = blob(&types, strings);
        assert_eq!(btf_func_id(&raw, "bpf_iter_task_file"), Some(8));
        assert_eq!(btf_func_id(&raw, "bpf_iter_task"), Some(5));
        assert_eq!(btf_func_id(&raw, "int"), None, "an INT is not a function");
        assert_eq!(btf_func_id(&raw, "missing"), None);
        assert_eq!(btf_func_id(&raw[..30], "bpf_iter_task_file"), None);
        let unknown = blob(&ty(0, 31, 0, 0), strings);
        assert_eq!(btf_func_id(&unknown, "bpf_iter_task_file"), None);
    }

    #[test]
    fn reads_the_core_records_of_the_embedded_object() {
        let obj = Object::parse(crate::sample::bpf::OBJECT).unwrap();
        let prog = &obj.programs[crate::sample::bpf::PROGRAM];
        let relos = core_relos(crate::sample::bpf::OBJECT, prog.section_index).unwrap();
        assert!(!relos.is_empty());
        assert!(relos.iter().all(|r| r.insn_off % 8 == 0 && r.type_id > 0));
    }

    #[test]
    fn finds_bpf_iter_task_file_in_this_kernel() {
        let Ok(raw) = std::fs::read(VMLINUX_BTF) else {
            eprintln!("SKIPPED: no {VMLINUX_BTF}");
            return;
        };
        assert!(btf_func_id(&raw, "bpf_iter_task_file").is_some());
    }
}

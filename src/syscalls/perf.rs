//! The thin layer over `perf_event_open(2)`: a hand-written `perf_event_attr`,
//! the four ioctls we use, and an owned fd that closes on drop.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `struct perf_event_attr` as of `PERF_ATTR_SIZE_VER8` (136 bytes, Linux 6.3+).
/// Older kernels accept it too as long as the fields they do not know are zero.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct PerfEventAttr {
    pub type_: u32,
    pub size: u32,
    pub config: u64,
    pub sample_period: u64,
    pub sample_type: u64,
    pub read_format: u64,
    /// The bitfield word: `disabled`, `inherit`, ..., `inherit_thread`, ...
    pub flags: u64,
    pub wakeup_events: u32,
    pub bp_type: u32,
    pub config1: u64,
    pub config2: u64,
    pub branch_sample_type: u64,
    pub sample_regs_user: u64,
    pub sample_stack_user: u32,
    pub clockid: i32,
    pub sample_regs_intr: u64,
    pub aux_watermark: u32,
    pub sample_max_stack: u16,
    pub reserved_2: u16,
    pub aux_sample_size: u32,
    pub reserved_3: u32,
    pub sig_data: u64,
    pub config3: u64,
}

const _: () = assert!(std::mem::size_of::<PerfEventAttr>() == 136);

pub const PERF_TYPE_TRACEPOINT: u32 = 2;
pub const PERF_FORMAT_GROUP: u64 = 1 << 3;
pub const FLAG_DISABLED: u64 = 1 << 0;
pub const FLAG_INHERIT: u64 = 1 << 1;
/// Inherit only into new threads (`CLONE_THREAD`), not forked children (5.13+).
pub const FLAG_INHERIT_THREAD: u64 = 1 << 35;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;

// ioctls, `_IO('$', n)` / `_IOW('$', 6, char *)`.
const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
const PERF_EVENT_IOC_DISABLE: libc::c_ulong = 0x2401;
const PERF_EVENT_IOC_SET_FILTER: libc::c_ulong = 0x4008_2406;
const PERF_IOC_FLAG_GROUP: libc::c_ulong = 1;

/// Open a counting-only tracepoint event on one thread (any CPU).
pub fn open_tracepoint(
    id: u64,
    tid: i32,
    group: Option<&OwnedFd>,
    flags: u64,
    read_format: u64,
) -> Result<OwnedFd, nix::errno::Errno> {
    let attr = PerfEventAttr {
        type_: PERF_TYPE_TRACEPOINT,
        size: std::mem::size_of::<PerfEventAttr>() as u32,
        config: id,
        read_format,
        flags,
        ..Default::default()
    };
    let group_fd = group.map_or(-1, |g| g.as_raw_fd());
    // SAFETY: attr is a valid, fully initialised perf_event_attr of the size we
    // claim; the kernel only reads it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfEventAttr,
            tid as libc::pid_t,
            -1 as libc::c_int,
            group_fd as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if rc < 0 {
        return Err(nix::errno::Errno::last());
    }
    // SAFETY: the kernel just gave us this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as i32) })
}

fn ioctl(fd: &OwnedFd, req: libc::c_ulong, arg: libc::c_ulong) -> Result<(), nix::errno::Errno> {
    // SAFETY: perf ioctls on a perf fd; `arg` is an integer or a valid pointer.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), req as _, arg) };
    if rc < 0 {
        Err(nix::errno::Errno::last())
    } else {
        Ok(())
    }
}

/// Attach an ftrace filter expression such as `family == 16`.
pub fn set_filter(fd: &OwnedFd, filter: &str) -> Result<(), nix::errno::Errno> {
    let c = std::ffi::CString::new(filter).map_err(|_| nix::errno::Errno::EINVAL)?;
    ioctl(fd, PERF_EVENT_IOC_SET_FILTER, c.as_ptr() as libc::c_ulong)
}

/// Enable the leader and every sibling of its group.
pub fn enable_group(leader: &OwnedFd) -> Result<(), nix::errno::Errno> {
    ioctl(leader, PERF_EVENT_IOC_ENABLE, PERF_IOC_FLAG_GROUP)
}

/// Disable the leader and every sibling of its group.
pub fn disable_group(leader: &OwnedFd) -> Result<(), nix::errno::Errno> {
    ioctl(leader, PERF_EVENT_IOC_DISABLE, PERF_IOC_FLAG_GROUP)
}

/// Read a `PERF_FORMAT_GROUP` leader: `{ nr, values[nr] }`, inherited children
/// (live and exited) included by the kernel.
pub fn read_group(leader: &OwnedFd, n: usize) -> Result<Vec<u64>, nix::errno::Errno> {
    let mut buf = vec![0u64; n + 1];
    let want = buf.len() * 8;
    let got = nix::unistd::read(leader.as_raw_fd(), bytes_of(&mut buf))?;
    if got != want || buf[0] as usize != n {
        return Err(nix::errno::Errno::EIO);
    }
    Ok(buf.split_off(1))
}

fn bytes_of(v: &mut [u64]) -> &mut [u8] {
    // SAFETY: u64 has no invalid bit patterns and u8 has alignment 1.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast(), std::mem::size_of_val(v)) }
}

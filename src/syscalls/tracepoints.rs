//! The perf backend: exact syscall counts through perf tracepoint counters.
//!
//! `perf_event_open(2)` in counting mode only: no sampling, no ring buffer, no
//! ptrace. Each thread of the target gets one event group (16 tracepoint
//! counters: `raw_syscalls:sys_enter` as the leader, `syscalls:sys_enter_*` as
//! siblings, five of them on `sys_enter_socket` with a `family == N` filter).
//! The events are opened with `inherit=1, inherit_thread=1`, so every thread a
//! counted thread creates later gets its own copy, and a `read()` of the
//! group leader returns the sum over the thread and all its descendants, live
//! or exited. Threads that exist at attach time are attached directly;
//! threads created later are covered by inheritance, so nothing needs to
//! race to attach them (see docs/syscalls.md for why we do not rescan
//! /proc/PID/task to attach new tids: that would count them twice).
//!
//! Closing the fds (on drop) frees the inherited copies too: nothing is left
//! in the target or in the kernel. This is the fallback of the BPF backend
//! (`super::bpf`): it needs only CAP_PERFMON (or a permissive
//! `kernel.perf_event_paranoid`) and tracefs, but costs a syscall-bound
//! target more (docs/syscalls.md, "Overhead").

use std::os::fd::OwnedFd;

use super::access::{self, Access, Tracefs};
use super::{alive, list_tids, perf, unavailable, SyscallCounts, SyscallError};

/// Counters per thread, per event; all fds close on drop.
pub(super) struct PerfCounter {
    threads: Vec<ThreadGroup>,
}

/// One directly attached thread: the group leader and its siblings.
struct ThreadGroup {
    tid: i32,
    leader: OwnedFd,
    /// Kept only to hold the sibling fds open; read through the leader.
    _siblings: Vec<OwnedFd>,
}

/// One counter of the per-thread group, in group order (leader first).
struct EventSpec {
    group: &'static str,
    name: &'static str,
    filter: Option<&'static str>,
    add: fn(&mut SyscallCounts, u64),
}

const EVENTS: &[EventSpec] = &[
    EventSpec {
        group: "raw_syscalls",
        name: "sys_enter",
        filter: None,
        add: |c, v| c.total += v,
    },
    EventSpec {
        group: "syscalls",
        name: "sys_enter_socket",
        filter: None,
        add: |c, v| c.socket += v,
    },
    EventSpec {
        group: "syscalls",
        name: "sys_enter_socket",
        filter: Some("family == 16"),
        add: |c, v| c.socket_netlink += v,
    },
    EventSpec {
        group: "syscalls",
        name: "sys_enter_socket",
        filter: Some("family == 2"),
        add: |c, v| c.socket_inet += v,
    },
    EventSpec {
        group: "syscalls",
        name: "sys_enter_socket",
        filter: Some("family == 10"),
        add: |c, v| c.socket_inet6 += v,
    },
    EventSpec {
        group: "syscalls",
        name: "sys_enter_socket",
        filter: Some("family == 1"),
        add: |c, v| c.socket_unix += v,
    },
    EventSpec {
        group: "syscalls",
        name: "sys_enter_close",
        filter: None,
        add: |c, v| c.close += v,
    },
    EventSpec {
        group: "syscalls",
        name: "sys_enter_openat",
        filter: None,
        add: |c, v| c.openat += v,
    },
    EventSpec {
        group: "syscalls",
        name: "sys_enter_accept4",
        filter: None,
        add: |c, v| c.accept += v,
    },
    EventSpec {
        group: "syscalls",
        name: "sys_enter_accept",
        filter: None,
        add: |c, v| c.accept += v,
    },
    EventSpec {
        group: "syscalls",
        name: "sys_enter_connect",
        filter: None,
        add: |c, v| c.connect += v,
    },
    EventSpec {
        group: "syscalls",
        name: "sys_enter_bind",
        filter: None,
        add: |c, v| c.bind += v,
    },
    EventSpec {
        group: "syscalls",
        name: "sys_enter_sendto",
        filter: None,
        add: |c, v| c.sendto += v,
    },
    EventSpec {
        group: "syscalls",
        name: "sys_enter_recvfrom",
        filter: None,
        add: |c, v| c.recvfrom += v,
    },
    EventSpec {
        group: "syscalls",
        name: "sys_enter_sendmsg",
        filter: None,
        add: |c, v| c.sendmsg += v,
    },
    EventSpec {
        group: "syscalls",
        name: "sys_enter_recvmsg",
        filter: None,
        add: |c, v| c.recvmsg += v,
    },
];

impl PerfCounter {
    /// Attach counters to every thread of `pid`. Threads it creates later are
    /// counted through inheritance. The notes say what was done on the way
    /// (e.g. mounting tracefs).
    pub(super) fn attach(pid: i32) -> Result<(PerfCounter, Vec<String>), SyscallError> {
        let mut notes = Vec::new();
        let mut access = Access::probe();
        if access.tracefs == Tracefs::NotMounted && access.cap_sys_admin {
            match access::mount_tracefs() {
                Ok(()) => {
                    notes.push(format!("mounted tracefs at {}", access::TRACEFS));
                    access.tracefs = access::find_tracefs();
                }
                Err(e) => access.tracefs = Tracefs::MountFailed(e),
            }
        }
        if let Some(reason) = access::blocked_reason(&access) {
            return Err(unavailable(reason));
        }
        let Tracefs::Found(dir) = &access.tracefs else {
            return Err(unavailable("tracefs not found"));
        };
        let ids = EVENTS
            .iter()
            .map(|e| access::tracepoint_id(dir, e.group, e.name))
            .collect::<Result<Vec<u64>, String>>()
            .map_err(unavailable)?;

        let mut inherit = perf::FLAG_INHERIT | perf::FLAG_INHERIT_THREAD;
        let mut counter = PerfCounter {
            threads: Vec::new(),
        };
        let tids = list_tids(pid)?;
        for tid in tids {
            let group = match open_group(tid, &ids, inherit) {
                Err((_, nix::errno::Errno::EINVAL))
                    if inherit & perf::FLAG_INHERIT_THREAD != 0 && counter.threads.is_empty() =>
                {
                    // Kernels before 5.13 lack inherit_thread: plain inherit
                    // also follows fork()ed children.
                    inherit = perf::FLAG_INHERIT;
                    let g = open_group(tid, &ids, inherit);
                    if g.is_ok() {
                        notes.push(
                            "kernel lacks perf inherit_thread (Linux 5.13+): processes the target forks are counted too".into(),
                        );
                    }
                    g
                }
                g => g,
            };
            match group {
                Ok(g) => counter.threads.push(g),
                // The thread exited between listing and attaching.
                Err((_, nix::errno::Errno::ESRCH)) if tid != pid => {}
                Err((_, nix::errno::Errno::ESRCH)) => return Err(SyscallError::Exited { pid }),
                Err((what, errno)) => {
                    if !alive(pid, None) {
                        return Err(SyscallError::Exited { pid });
                    }
                    return Err(unavailable(access::open_failed_reason(
                        what, tid, errno, &access,
                    )));
                }
            }
        }
        if counter.threads.is_empty() {
            return Err(SyscallError::Exited { pid });
        }
        for g in &counter.threads {
            perf::enable_group(&g.leader).map_err(|e| {
                unavailable(format!(
                    "enabling the perf counters of thread {} failed: {e:?} ({})",
                    g.tid,
                    e.desc()
                ))
            })?;
        }
        Ok((counter, notes))
    }

    /// Add the cumulative counts since attach, summed over every thread
    /// (including those created since, and those that exited), into `c`.
    pub(super) fn read(&mut self, c: &mut SyscallCounts) -> Result<(), SyscallError> {
        for g in &self.threads {
            let values = perf::read_group(&g.leader, EVENTS.len()).map_err(|e| {
                unavailable(format!(
                    "reading the perf counters of thread {} failed: {e:?} ({})",
                    g.tid,
                    e.desc()
                ))
            })?;
            for (spec, v) in EVENTS.iter().zip(values) {
                (spec.add)(c, v);
            }
        }
        // New threads need no attaching: they inherited the counters of the
        // thread that created them.
        Ok(())
    }

    /// Perf fds held (threads attached at start × events).
    pub(super) fn fds(&self) -> usize {
        self.threads.len() * EVENTS.len()
    }
}

impl Drop for PerfCounter {
    fn drop(&mut self) {
        for g in &self.threads {
            let _ = perf::disable_group(&g.leader);
        }
        // The OwnedFds close here; closing a parent event frees its inherited
        // copies in the target's threads.
    }
}

/// Open the event group on one thread, disabled, filters set.
fn open_group(
    tid: i32,
    ids: &[u64],
    inherit: u64,
) -> Result<ThreadGroup, (&'static str, nix::errno::Errno)> {
    let mut leader: Option<OwnedFd> = None;
    let mut siblings = Vec::with_capacity(EVENTS.len() - 1);
    for (spec, &id) in EVENTS.iter().zip(ids) {
        let what = spec_name(spec);
        let fd = match &leader {
            None => perf::open_tracepoint(
                id,
                tid,
                None,
                perf::FLAG_DISABLED | inherit,
                perf::PERF_FORMAT_GROUP,
            ),
            Some(l) => perf::open_tracepoint(id, tid, Some(l), inherit, perf::PERF_FORMAT_GROUP),
        }
        .map_err(|e| (what, e))?;
        if let Some(f) = spec.filter {
            perf::set_filter(&fd, f).map_err(|e| (what, e))?;
        }
        if leader.is_none() {
            leader = Some(fd);
        } else {
            siblings.push(fd);
        }
    }
    Ok(ThreadGroup {
        tid,
        leader: leader.ok_or(("no events", nix::errno::Errno::EINVAL))?,
        _siblings: siblings,
    })
}

fn spec_name(spec: &EventSpec) -> &'static str {
    match (spec.name, spec.filter) {
        ("sys_enter", _) => "raw_syscalls:sys_enter",
        ("sys_enter_socket", Some("family == 16")) => "syscalls:sys_enter_socket if family == 16",
        ("sys_enter_socket", Some("family == 2")) => "syscalls:sys_enter_socket if family == 2",
        ("sys_enter_socket", Some("family == 10")) => "syscalls:sys_enter_socket if family == 10",
        ("sys_enter_socket", Some("family == 1")) => "syscalls:sys_enter_socket if family == 1",
        ("sys_enter_socket", _) => "syscalls:sys_enter_socket",
        ("sys_enter_close", _) => "syscalls:sys_enter_close",
        ("sys_enter_openat", _) => "syscalls:sys_enter_openat",
        ("sys_enter_accept4", _) => "syscalls:sys_enter_accept4",
        ("sys_enter_accept", _) => "syscalls:sys_enter_accept",
        ("sys_enter_connect", _) => "syscalls:sys_enter_connect",
        ("sys_enter_bind", _) => "syscalls:sys_enter_bind",
        ("sys_enter_sendto", _) => "syscalls:sys_enter_sendto",
        ("sys_enter_recvfrom", _) => "syscalls:sys_enter_recvfrom",
        ("sys_enter_sendmsg", _) => "syscalls:sys_enter_sendmsg",
        ("sys_enter_recvmsg", _) => "syscalls:sys_enter_recvmsg",
        _ => "tracepoint",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_fit_the_counts() {
        let mut c = SyscallCounts::default();
        for e in EVENTS {
            (e.add)(&mut c, 1);
            assert_ne!(spec_name(e), "tracepoint");
        }
        assert_eq!(c.total, 1);
        assert_eq!(c.accept, 2);
        assert_eq!(c.socket_other(), 0);
    }
}

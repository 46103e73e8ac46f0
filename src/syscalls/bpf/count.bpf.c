// SPDX-License-Identifier: MIT OR GPL-2.0
//
// fdwatch's exact syscall counter: one program on the `sys_enter` raw
// tracepoint that counts the syscalls of the processes fdwatch watches (every
// thread of each tgid, whenever it was created) into a per-CPU array.
//
// Every syscall of every task on the host runs this program while it is
// attached, so the path for other processes is one helper call and a compare
// per watched process (usually one). Each program attached to sys_enter costs
// every syscall on the host the kernel's dispatch (~55 ns on the machine of
// docs/syscalls.md), whatever it does, so one fdwatch loads ONE program for
// all the processes it counts: fdw_targets lists their tgids. The target's
// syscalls add the counts map lookup (inlined for array maps), the
// increments and, for socket(), one read of its first argument.
//
// fdw_targets holds one value: the number of slots in use (a high-water
// mark) and the tgid of each slot (0: free). Userspace changes one field per
// map update, the slot's tgid before the mark, so the program never sees a
// slot it has not been told about.
//
// Syscall numbers differ between architectures: userspace sets them (from
// libc::SYS_*) before loading. They live in .rodata, which the kernel
// freezes, so the verifier sees them as constants.
//
// Built by scripts/build-bpf.sh (CO-RE: one object for every kernel with
// BTF). Keep `enum slot` and MAX_TARGETS in step with src/syscalls/bpf.rs.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

enum slot {
	S_TOTAL = 0,
	S_SOCKET,
	S_SOCKET_NETLINK,
	S_SOCKET_INET,
	S_SOCKET_INET6,
	S_SOCKET_UNIX,
	S_CLOSE,
	S_OPENAT,
	S_ACCEPT,
	S_CONNECT,
	S_BIND,
	S_SENDTO,
	S_RECVFROM,
	S_SENDMSG,
	S_RECVMSG,
	NR_SLOTS,
};

struct counts {
	__u64 slot[NR_SLOTS];
};

#define MAX_TARGETS 64

struct targets {
	__u32 used;
	__u32 tgid[MAX_TARGETS];
};

// The watched tgids (see the top of this file).
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct targets);
} fdw_targets SEC(".maps");

// The counts of each slot, per CPU (index = slot). Per-CPU, so the target's
// threads never share a cache line, and plain increments are safe (syscall
// tracepoints run BPF with preemption disabled, and a program never nests on
// one CPU).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_TARGETS);
	__type(key, __u32);
	__type(value, struct counts);
} fdw_syscalls SEC(".maps");

// Set by the loader; a program left at these values counts only totals.
const volatile __s64 nr_socket = -1;
const volatile __s64 nr_close = -1;
const volatile __s64 nr_openat = -1;
const volatile __s64 nr_accept = -1;
const volatile __s64 nr_accept4 = -1;
const volatile __s64 nr_connect = -1;
const volatile __s64 nr_bind = -1;
const volatile __s64 nr_sendto = -1;
const volatile __s64 nr_recvfrom = -1;
const volatile __s64 nr_sendmsg = -1;
const volatile __s64 nr_recvmsg = -1;

// <linux/socket.h>: the same on every architecture.
#define AF_UNIX 1
#define AF_INET 2
#define AF_INET6 10
#define AF_NETLINK 16

static __always_inline int socket_slot(int family)
{
	switch (family) {
	case AF_NETLINK:
		return S_SOCKET_NETLINK;
	case AF_INET:
		return S_SOCKET_INET;
	case AF_INET6:
		return S_SOCKET_INET6;
	case AF_UNIX:
		return S_SOCKET_UNIX;
	}
	return -1;
}

static __always_inline int count(__u32 target, struct pt_regs *regs, long id)
{
	struct counts *c = bpf_map_lookup_elem(&fdw_syscalls, &target);
	if (!c)
		return 0;
	int s = -1;

	c->slot[S_TOTAL]++;
	if (id == nr_socket) {
		// The syscall's own first argument (orig_x0 on arm64, di on x86).
		int family = (int)PT_REGS_PARM1_CORE_SYSCALL(regs);

		c->slot[S_SOCKET]++;
		s = socket_slot(family);
	} else if (id == nr_close) {
		s = S_CLOSE;
	} else if (id == nr_openat) {
		s = S_OPENAT;
	} else if (id == nr_accept || id == nr_accept4) {
		s = S_ACCEPT;
	} else if (id == nr_connect) {
		s = S_CONNECT;
	} else if (id == nr_bind) {
		s = S_BIND;
	} else if (id == nr_sendto) {
		s = S_SENDTO;
	} else if (id == nr_recvfrom) {
		s = S_RECVFROM;
	} else if (id == nr_sendmsg) {
		s = S_SENDMSG;
	} else if (id == nr_recvmsg) {
		s = S_RECVMSG;
	}
	if (s >= 0 && s < NR_SLOTS)
		c->slot[s]++;
	return 0;
}

// The context is the tracepoint's arguments as u64s (struct
// bpf_raw_tracepoint_args): args[0] the syscall's struct pt_regs *, args[1]
// the syscall number. Read as a plain array: vmlinux.h's type would make
// clang emit a CO-RE relocation on its flexible array, which is fixed ABI
// anyway and which not every loader (aya) relocates.
SEC("raw_tracepoint/sys_enter")
int fdw_sys_enter(void *ctx)
{
	const __u64 *args = ctx;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u32 zero = 0;
	struct targets *t = bpf_map_lookup_elem(&fdw_targets, &zero);
	if (!t)
		return 0;
	__u32 n = t->used;

	for (__u32 i = 0; i < MAX_TARGETS; i++) {
		if (i >= n)
			return 0;
		if (t->tgid[i] == tgid)
			return count(i, (struct pt_regs *)args[0], (long)args[1]);
	}
	return 0;
}

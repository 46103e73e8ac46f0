// SPDX-License-Identifier: MIT OR GPL-2.0
//
// fdwatch's exact syscall counter: one program on the `sys_enter` raw
// tracepoint that counts the syscalls of one process (every thread of one
// tgid, whenever it was created) into a per-CPU array.
//
// Every syscall of every task on the host runs this program while it is
// attached, so the path for other processes is one helper call and one
// compare. The target's syscalls add one map lookup (inlined by the
// verifier for array maps), the increments and, for socket(), one read of
// its first argument.
//
// Syscall numbers differ between architectures: userspace sets them (from
// libc::SYS_*) with the tgid before loading. They live in .rodata, which the
// kernel freezes, so the verifier sees them as constants.
//
// Built by scripts/build-bpf.sh (CO-RE: one object for every kernel with
// BTF). Keep `enum slot` in step with SLOTS in src/syscalls/bpf.rs.

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

// One entry: the counts of this CPU. Per-CPU, so the target's threads never
// share a cache line, and plain increments are safe (the program runs with
// preemption disabled and never nests on one CPU).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct counts);
} fdw_syscalls SEC(".maps");

// Set by the loader; a program left at these values counts nothing.
const volatile __u32 target_tgid = 0;
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

// The context is the tracepoint's arguments as u64s (struct
// bpf_raw_tracepoint_args): args[0] the syscall's struct pt_regs *, args[1]
// the syscall number. Read as a plain array: vmlinux.h's type would make
// clang emit a CO-RE relocation on its flexible array, which is fixed ABI
// anyway and which not every loader (aya) relocates.
SEC("raw_tracepoint/sys_enter")
int fdw_sys_enter(void *ctx)
{
	const __u64 *args = ctx;

	if ((__u32)(bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;

	__u32 zero = 0;
	struct counts *c = bpf_map_lookup_elem(&fdw_syscalls, &zero);
	if (!c)
		return 0;
	long id = (long)args[1];
	int s = -1;

	c->slot[S_TOTAL]++;
	if (id == nr_socket) {
		struct pt_regs *regs = (struct pt_regs *)args[0];
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

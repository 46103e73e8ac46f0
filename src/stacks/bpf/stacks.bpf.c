// SPDX-License-Identifier: MIT OR GPL-2.0
//
// fdwatch's stack tracer (`fdwatch stacks`): one program on the `sys_exit`
// raw tracepoint that, for the one process it was loaded for (every thread
// of its tgid, whenever created), remembers which user stack created each
// fd that is open now, and counts per stack how many fds it opened and how
// many of those were closed again.
//
// Every syscall exit of every task on the host runs this program while it
// is attached, so the path for other tasks is one helper call and a compare
// with a constant. The target's syscalls then cost a lookup in `fdw_action`
// (a frozen .rodata table: syscall number -> what to do), and only the
// fd-creating and fd-closing calls do more.
//
// Maps (all bounded; what happens when full is counted in fdw_stats and
// reported, never silent):
//   fdw_fds     fd -> struct fd_rec (which stack opened it, when, what kind).
//               Full: the fd is not remembered (ST_FD_FULL); its stack's
//               open is still counted.
//   fdw_stacks  stack hash -> struct stack (up to MAX_FRAMES return
//               addresses). Full: the fd is remembered under hash 0, "stack
//               not recorded" (ST_STACK_FULL).
//   fdw_sites   stack hash -> struct site {opens, closes}. Full: ST_SITE_FULL.
//   fdw_text    the target's executable mappings (see caller_of_leaf).
//   fdw_scratch per-CPU scratch for one stack (too big for the BPF stack).
//   fdw_stats   per-CPU counters (enum stat).
//
// Stacks are identified by a 64-bit hash of their frames computed here, so
// memory grows with distinct stacks (no preallocated stack-trace buckets
// that collide and drop).
//
// The syscall number and arguments are read from the saved user registers
// (args[0] of the raw tracepoint), which sys_exit sees unchanged except the
// return value. Syscall numbers are set by userspace (libc::SYS_*), so the
// object is arch-neutral.
//
// Built by scripts/build-bpf.sh (CO-RE). Keep `enum action`, `enum fdw_stat`,
// the structs and MAX_FRAMES in step with src/stacks/bpf.rs.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define MAX_FRAMES 127
#define NR_ACTIONS 512
#define MAX_FDS 262144
#define MAX_STACKS 16384

enum action {
	A_NONE = 0,
	A_RET_FD,	// the return value is a new fd
	A_SOCKET,	// socket(family, type, protocol)
	A_ACCEPT,	// accept/accept4: the kind of the listening fd
	A_PAIR,		// socketpair(family, type, protocol, sv[2])
	A_PIPE,		// pipe/pipe2(fds[2])
	A_DUP,		// dup(old): the kind of old
	A_DUP2,		// dup2/dup3(old, new): new may have been open
	A_FCNTL,	// fcntl(fd, F_DUPFD / F_DUPFD_CLOEXEC)
	A_BPF,		// bpf(cmd): the commands that return an fd
	A_SIGNALFD,	// signalfd/signalfd4(fd): fd != -1 changes fd, opens none
	A_CLOSE,	// close(fd)
	A_CLOSE_RANGE,	// close_range(first, last, flags)
};

enum fdw_stat {
	ST_OPENS = 0,	// fds created by the target
	ST_CLOSES,	// fds of those closed (close, close_range, dup2 over)
	ST_FD_FULL,	// fds not remembered: fdw_fds full
	ST_STACK_FULL,	// stacks not stored: fdw_stacks full
	ST_SITE_FULL,	// opens not counted by stack: fdw_sites full
	ST_STACK_ERR,	// bpf_get_stack failed (no user stack)
	FDW_NR_STATS,
};

struct fd_rec {
	__u64 stack;	// hash of the stack in fdw_stacks; 0: not recorded
	__u64 time_ns;	// bpf_ktime_get_ns() at open
	__u32 nr;	// the syscall that created it (of the original for dups)
	__u16 family;	// sockets: family; else 0
	__u8 type;	// sockets: type & 0xf
	__u8 flags;	// FD_DUP, FD_REPLACED
};

#define FD_DUP 1
// The number was reused while the previous fd's close may still be
// returning (see closed()).
#define FD_REPLACED 2

#define MAX_CANDIDATES 4

struct stack {
	__u32 len;	// frames in ip[]
	__u32 ncand;	// words in cand[]
	// Words near the top of the user stack that point into code (see
	// leaf_candidates): one may be the return address a frame-pointer
	// walk skips when the syscall was made from a function without a
	// frame (libc's syscall wrappers); userspace checks which.
	__u64 cand[MAX_CANDIDATES];
	__u64 ip[MAX_FRAMES];
};

#define MAX_TEXT 32
#define SCAN_WORDS 32

// The target's executable mappings, [lo, hi), written by userspace at
// attach and refreshed while tracing.
struct text {
	__u32 n;
	__u32 pad;
	__u64 lo[MAX_TEXT];
	__u64 hi[MAX_TEXT];
};

struct site {
	__u64 opens;
	__u64 closes;
	// The kind of the first fd the stack opened (as in struct fd_rec).
	__u32 nr;
	__u16 family;
	__u8 type;
	__u8 pad;
};

// The target's tgid and the action of each syscall number: set by
// userspace before load, frozen, so the verifier sees constants.
const volatile __u32 target_tgid = 0;
const volatile __u8 fdw_action[NR_ACTIONS] = {};
// bpf() commands that return a new fd, as a bit mask of cmd numbers < 64.
const volatile __u64 bpf_fd_cmds = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_FDS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct fd_rec);
} fdw_fds SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_STACKS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct stack);
} fdw_stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_STACKS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct site);
} fdw_sites SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stack);
} fdw_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct text);
} fdw_text SEC(".maps");

struct scan {
	__u64 words[SCAN_WORDS];
};

// Per-CPU scratch for the top of the user stack.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scan);
} fdw_scan SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FDW_NR_STATS);
	__type(key, __u32);
	__type(value, __u64);
} fdw_stats SEC(".maps");

static __always_inline void bump(__u32 which)
{
	__u64 *v = bpf_map_lookup_elem(&fdw_stats, &which);
	if (v)
		(*v)++;
}

static __always_inline int in_text(struct text *t, __u64 a)
{
	for (__u32 i = 0; i < MAX_TEXT; i++) {
		if (i >= t->n)
			return 0;
		if (a >= t->lo[i] && a < t->hi[i])
			return 1;
	}
	return 0;
}

// The first MAX_CANDIDATES of the top SCAN_WORDS words of the user stack
// that point into executable code. The return address of the function that
// called a frameless syscall wrapper is among them (the frame-pointer walk
// skips it: it sits at the stack pointer, not behind a frame); so may be
// stale return addresses of earlier calls. Userspace keeps the first whose
// call instruction targets the function the syscall was made from.
struct scan_ctx {
	__u32 n;
};

// One word of the scan: a callback of bpf_loop, so the verifier checks the
// range loop once rather than once per word.
static long scan_word(__u32 i, void *data)
{
	struct scan_ctx *c = data;
	__u32 zero = 0;
	struct scan *w = bpf_map_lookup_elem(&fdw_scan, &zero);
	struct text *t = bpf_map_lookup_elem(&fdw_text, &zero);
	struct stack *s = bpf_map_lookup_elem(&fdw_scratch, &zero);
	if (!w || !t || !s || c->n >= MAX_CANDIDATES)
		return 1;
	__u64 a = w->words[i & (SCAN_WORDS - 1)];
	if (in_text(t, a)) {
		s->cand[c->n & (MAX_CANDIDATES - 1)] = a;
		c->n++;
	}
	return 0;
}

static __always_inline void leaf_candidates(struct pt_regs *regs, struct stack *s)
{
	__u32 zero = 0;
	s->ncand = 0;
	struct scan *w = bpf_map_lookup_elem(&fdw_scan, &zero);
	if (!w)
		return;
	__u64 sp = PT_REGS_SP_CORE(regs);
	if (bpf_probe_read_user(w->words, sizeof(w->words), (void *)sp))
		return;
	struct scan_ctx c = {};
	bpf_loop(SCAN_WORDS, scan_word, &c, 0);
	s->ncand = c.n;
}

// The stack of this syscall, stored once per distinct stack: its hash, or
// 0 when it could not be stored.
static __always_inline __u64 record_stack(void *ctx, struct pt_regs *regs)
{
	__u32 zero = 0;
	struct stack *s = bpf_map_lookup_elem(&fdw_scratch, &zero);
	if (!s)
		return 0;
	long n = bpf_get_stack(ctx, s->ip, sizeof(s->ip), BPF_F_USER_STACK);
	if (n <= 0) {
		bump(ST_STACK_ERR);
		return 0;
	}
	__u32 len = (__u32)n / 8;
	s->len = len;
	leaf_candidates(regs, s);
	// FNV-1a over the candidates and the frames, 64 bits at a time, then
	// a final mix.
	__u64 h = 0xcbf29ce484222325ULL ^ len;
	for (__u32 i = 0; i < MAX_CANDIDATES; i++) {
		h ^= i < s->ncand ? s->cand[i] : 0;
		h *= 0x100000001b3ULL;
	}
	for (__u32 i = 0; i < MAX_FRAMES; i++) {
		if (i >= len)
			break;
		h ^= s->ip[i];
		h *= 0x100000001b3ULL;
	}
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	if (h == 0)
		h = 1;
	if (!bpf_map_lookup_elem(&fdw_stacks, &h)) {
		long err = bpf_map_update_elem(&fdw_stacks, &h, s, BPF_NOEXIST);
		if (err && err != -17 /* EEXIST: another CPU stored it */) {
			bump(ST_STACK_FULL);
			return 0;
		}
	}
	return h;
}

static __always_inline void count_site(__u64 stack, int closed, struct fd_rec *kind)
{
	struct site *c = bpf_map_lookup_elem(&fdw_sites, &stack);
	if (!c) {
		struct site first = {};
		if (kind) {
			first.nr = kind->nr;
			first.family = kind->family;
			first.type = kind->type;
		}
		bpf_map_update_elem(&fdw_sites, &stack, &first, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&fdw_sites, &stack);
		if (!c) {
			bump(ST_SITE_FULL);
			return;
		}
	}
	if (closed)
		__sync_fetch_and_add(&c->closes, 1);
	else
		__sync_fetch_and_add(&c->opens, 1);
}

// fd was closed (or replaced): forget it, and count the close on its stack.
static __always_inline void forget(__u32 fd)
{
	struct fd_rec *r = bpf_map_lookup_elem(&fdw_fds, &fd);
	if (!r)
		return;
	__u64 stack = r->stack;
	if (bpf_map_delete_elem(&fdw_fds, &fd) == 0) {
		bump(ST_CLOSES);
		count_site(stack, 1, 0);
	}
}

// close(fd) or close_range returned: forget fd, unless the record is of an
// fd opened under the same number while this close was still returning
// (another thread's open can reuse the number before our exit runs; its
// remember() already counted the close): then only clear that mark.
static __always_inline void closed(__u32 fd)
{
	struct fd_rec *r = bpf_map_lookup_elem(&fdw_fds, &fd);
	if (!r)
		return;
	if (r->flags & FD_REPLACED) {
		// A plain store: only the close of that number races with it.
		r->flags &= ~FD_REPLACED;
		return;
	}
	forget(fd);
}

// A new fd: its stack (computed once per syscall, shared by the two fds of
// a pipe), counted and remembered. `like` gives the kind.
static __always_inline void remember(__u32 fd, __u64 stack, struct fd_rec *like, int replaces)
{
	// An fd already remembered under this number: closed by dup2/dup3
	// (replaces), by a close still returning on another thread, or by a
	// path we do not see (exec's close-on-exec, io_uring).
	struct fd_rec r = *like;
	if (bpf_map_lookup_elem(&fdw_fds, &fd)) {
		forget(fd);
		if (!replaces)
			r.flags |= FD_REPLACED;
	}
	bump(ST_OPENS);
	count_site(stack, 0, like);
	r.stack = stack;
	r.time_ns = bpf_ktime_get_ns();
	if (bpf_map_update_elem(&fdw_fds, &fd, &r, BPF_ANY))
		bump(ST_FD_FULL);
}

// The kind of fd `src`, if remembered, else "a dup of an fd from before".
static __always_inline void kind_of(__u32 src, struct fd_rec *out, __u32 nr)
{
	struct fd_rec *r = bpf_map_lookup_elem(&fdw_fds, &src);
	if (r) {
		out->nr = r->nr;
		out->family = r->family;
		out->type = r->type;
	} else {
		out->nr = nr;
	}
}

#define CLOSE_RANGE_MAX (1 << 20)

struct fdw_range {
	__u64 first;
	__u64 last;
};

static long close_one(__u32 i, void *data)
{
	struct fdw_range *r = data;
	__u64 fd = r->first + i;
	if (fd > r->last || fd > 0xffffffffULL)
		return 1;
	closed((__u32)fd);
	return 0;
}

// The context is the tracepoint's arguments as u64s: args[0] the syscall's
// struct pt_regs *, args[1] its return value.
SEC("raw_tracepoint/sys_exit")
int fdw_sys_exit(void *ctx)
{
	const __u64 *args = ctx;
	if ((__u32)(bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;
	struct pt_regs *regs = (struct pt_regs *)args[0];
	long ret = (long)args[1];
	if (ret < 0)
		return 0;
#if defined(__TARGET_ARCH_x86)
	long nr = BPF_CORE_READ(regs, orig_ax);
#elif defined(__TARGET_ARCH_arm64)
	long nr = BPF_CORE_READ(regs, syscallno);
#else
	long nr = -1;
#endif
	if (nr < 0 || nr >= NR_ACTIONS)
		return 0;
	__u8 action = fdw_action[nr];
	if (action == A_NONE)
		return 0;

	struct fd_rec like = {.nr = (__u32)nr};
	__u64 a1 = PT_REGS_PARM1_CORE_SYSCALL(regs);

	switch (action) {
	case A_CLOSE:
		closed((__u32)a1);
		return 0;
	case A_CLOSE_RANGE: {
		// CLOSE_RANGE_CLOEXEC (1 << 2) only marks; else close [first, last].
		__u64 flags = PT_REGS_PARM3_CORE_SYSCALL(regs);
		if (flags & (1 << 2))
			return 0;
		__u64 last = PT_REGS_PARM2_CORE_SYSCALL(regs);
		// bpf_loop: one verified callback however long the range; at
		// most CLOSE_RANGE_MAX fds from first (fds beyond are left for
		// userspace, which drops records of fds /proc no longer lists).
		struct fdw_range r = {.first = a1, .last = last};
		__u64 n = last - a1 + 1;
		if (last < a1)
			return 0;
		if (n > CLOSE_RANGE_MAX || n == 0)
			n = CLOSE_RANGE_MAX;
		bpf_loop((__u32)n, close_one, &r, 0);
		return 0;
	}
	case A_SOCKET:
		like.family = (__u16)a1;
		like.type = (__u8)(PT_REGS_PARM2_CORE_SYSCALL(regs) & 0xf);
		break;
	case A_ACCEPT:
	case A_DUP:
	case A_DUP2:
	case A_FCNTL:
		if (action == A_FCNTL) {
			__u64 cmd = PT_REGS_PARM2_CORE_SYSCALL(regs);
			if (cmd != 0 /* F_DUPFD */ && cmd != 1030 /* F_DUPFD_CLOEXEC */)
				return 0;
		}
		if (action == A_DUP2 && (__u64)ret == a1)
			return 0; // dup2(fd, fd): nothing changes
		kind_of((__u32)a1, &like, (__u32)nr);
		if (action == A_ACCEPT)
			like.nr = (__u32)nr;
		else
			like.flags = FD_DUP;
		break;
	case A_BPF:
		if (a1 >= 64 || !(bpf_fd_cmds & (1ULL << a1)))
			return 0;
		break;
	case A_SIGNALFD:
		if ((int)a1 != -1)
			return 0;
		break;
	case A_PAIR:
	case A_PIPE: {
		int fds[2] = {};
		void *p = action == A_PIPE ? (void *)a1 : (void *)PT_REGS_PARM4_CORE_SYSCALL(regs);
		if (bpf_probe_read_user(fds, sizeof(fds), p))
			return 0;
		if (action == A_PAIR) {
			like.family = (__u16)a1;
			like.type = (__u8)(PT_REGS_PARM2_CORE_SYSCALL(regs) & 0xf);
		}
		__u64 stack = record_stack(ctx, regs);
		if (fds[0] >= 0)
			remember((__u32)fds[0], stack, &like, 0);
		if (fds[1] >= 0)
			remember((__u32)fds[1], stack, &like, 0);
		return 0;
	}
	default:
		break;
	}
	if (ret > 0x7fffffff)
		return 0;
	remember((__u32)ret, record_stack(ctx, regs), &like, action == A_DUP2);
	return 0;
}

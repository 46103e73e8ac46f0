// SPDX-License-Identifier: MIT OR GPL-2.0
//
// fdwatch's kernel-side census: an `iter/task_file` program that sees every
// open file of one process and classifies it where the kernel's own structures
// are, so userspace gets a compact result from one read of the iterator.
//
// Output (the seq_file of the iterator), little-endian records, each starting
// with `struct rec_hdr`:
//   REC_INODES  up to INODE_BATCH socket/pipe inodes (fdwatch's churn
//               detection), 8 bytes each: kind << 56 | inode      8 + 8 n bytes
//   REC_INODE   one socket/pipe inode that does not fit in 56 bits  16 bytes
//   REC_TCP     a connected TCP socket: inode + peer address        40 bytes
//   REC_REPEAT  an fd on a (dev, inode) that an earlier fd holds     24 bytes
//   REC_SUMMARY the aggregated counts, once, when the walk ends     sizeof(struct census)
//
// Why records are written before anything is counted: when a record does not
// fit in the seq buffer, the kernel discards it and shows the same file again
// on the next read(). A file is therefore counted only after its record was
// accepted, so every file is counted exactly once. Files that produce no
// record (most regular files, anon inodes) can never overflow. Inodes are
// batched (one bpf_seq_write per INODE_BATCH sockets and pipes instead of one
// each): a file whose inode fills the batch is counted once the batch is
// written; if that write fails, its inode is taken back out of the batch and
// the file is shown again.
//
// Built by scripts/build-bpf.sh (CO-RE: one object for every kernel with BTF).
// Keep the numbers below in step with src/sample/bpf/wire.rs.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

enum kind {
	K_REGULAR = 0,
	K_DELETED,
	K_DIRECTORY,
	K_CHAR_DEVICE,
	K_BLOCK_DEVICE,
	K_FIFO,
	K_PIPE,
	K_MEMFD,
	K_TCP,
	K_TCP6,
	K_UDP,
	K_UDP6,
	K_RAW,
	K_RAW6,
	K_UNIX,
	K_NETLINK,
	K_PACKET,
	K_SOCKET_OTHER,
	K_SOCKET_UNRESOLVED,
	K_EVENTPOLL,
	K_EVENTFD,
	K_TIMERFD,
	K_SIGNALFD,
	K_INOTIFY,
	K_FANOTIFY,
	K_PIDFD,
	K_IO_URING,
	K_BPF,
	K_PERF_EVENT,
	K_ANON_OTHER,
	K_OTHER,
	K_MAX = 32,
};

enum rec_type {
	REC_INODE = 1,
	REC_TCP = 2,
	REC_REPEAT = 3,
	REC_SUMMARY = 4,
	REC_INODES = 5,
};

#define N_TCP_STATES 16
#define N_NETLINK 32
#define N_SOCK_TYPES 16

struct rec_hdr {
	__u8 type;
	__u8 kind;
	__u16 port; /* REC_TCP: peer port, host order; REC_INODES: entries */
	__s32 fd;
};

struct rec_inode {
	struct rec_hdr hdr;
	__u64 ino;
};

struct rec_tcp {
	struct rec_hdr hdr;
	__u64 ino;
	__u8 state;
	__u8 family;
	__u8 pad[6];
	__u8 addr[16]; /* AF_INET: first 4 bytes */
};

/* fdwatch counts a file's fds as 1 + its REC_REPEAT records. */
struct rec_repeat {
	struct rec_hdr hdr; /* fd: this fd (not the file's first) */
	__u64 ino;
	__u64 dev;
};

#define INODE_BATCH 32
#define INO_BITS 56

/* Inodes not yet written: [i] = kind << INO_BITS | inode. */
struct rec_inodes {
	struct rec_hdr hdr; /* port: how many of ent[] are filled */
	__u64 ent[INODE_BATCH];
};

struct census {
	struct rec_hdr hdr;
	__u64 generation;
	__u64 files;
	__u64 deleted_bytes;
	/* regular files not tracked for repeats: the tracking map was full */
	__u64 repeat_untracked;
	__u64 kinds[K_MAX];
	__u64 tcp_states[N_TCP_STATES];
	__u64 netlink[N_NETLINK];
	/* unix sockets by sk_type (1 STREAM, 2 DGRAM, 5 SEQPACKET) */
	__u64 unix_types[N_SOCK_TYPES];
};

/* One slot of the repeat table: a regular file seen in the walk `generation`
 * (16 bytes: the REPEAT_PROBES slots tried for a file share a cache line). */
struct file_slot {
	__u64 ino;
	__u32 dev;
	__u32 generation;
};

/* The walk's state: the counts, and the inodes not yet written. */
struct scratch {
	struct census c;
	struct rec_inodes batch;
};

/* Userspace sets [0] = target tgid (the filter used when the iterator link
 * could not be bound to the process: kernels before 6.1). 0 = no filter. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} fdw_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} fdw_scratch SEC(".maps");

/* Regular files by (dev, ino), to find the same file held many times: an
 * open-addressing hash table in an array (REPEAT_PROBES slots tried per file).
 * A slot of an older walk (another generation) is free, so nothing is ever
 * cleared between samples; and an array lookup is inlined by the verifier, no
 * locks, no eviction: several times cheaper per file than an LRU hash.
 * The slot is chosen by the address of the file's inode (one in-memory inode
 * per (dev, ino) while it is open; the key compared is still (dev, ino)): the
 * address is on the file's own hot cache line, so the CPU fetches the slot
 * while the inode itself is still on its way from memory, instead of after. */
#define REPEAT_SLOTS 65536
#define REPEAT_PROBES 4
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, REPEAT_SLOTS);
	__type(key, __u32);
	__type(value, struct file_slot);
} fdw_files SEC(".maps");

#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define S_IFREG 0100000
#define S_IFBLK 0060000
#define S_IFDIR 0040000
#define S_IFCHR 0020000
#define S_IFIFO 0010000

#define ANON_INODE_FS_MAGIC 0x09041934
#define PIPEFS_MAGIC 0x50495045
#define NSFS_MAGIC 0x6e736673
#define PID_FS_MAGIC 0x50494446

#define AF_UNIX 1
#define AF_INET 2
#define AF_INET6 10
#define AF_NETLINK 16
#define AF_PACKET 17

#define IPPROTO_ICMP 1
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_ICMPV6 58
#define IPPROTO_UDPLITE 136

#define SOCK_RAW 3

#define TCP_CLOSE_ 7
#define TCP_LISTEN_ 10

#define NAME_LEN 16

/* `name` starts with the literal `lit` (its NUL included when `whole`). */
static __always_inline int name_is(const char *name, const char *lit, int len, int whole)
{
	int n = whole ? len + 1 : len;
#pragma unroll
	for (int i = 0; i < NAME_LEN; i++) {
		if (i >= n)
			break;
		if (name[i] != lit[i])
			return 0;
	}
	return 1;
}

#define IS(name, lit) name_is(name, lit, sizeof(lit) - 1, 1)
#define STARTS(name, lit) name_is(name, lit, sizeof(lit) - 1, 0)

static __always_inline __u8 anon_kind(const char *n)
{
	if (IS(n, "[eventpoll]"))
		return K_EVENTPOLL;
	if (IS(n, "[eventfd]"))
		return K_EVENTFD;
	if (IS(n, "[timerfd]"))
		return K_TIMERFD;
	if (IS(n, "[signalfd]"))
		return K_SIGNALFD;
	if (IS(n, "inotify"))
		return K_INOTIFY;
	if (IS(n, "[fanotify]"))
		return K_FANOTIFY;
	if (IS(n, "[pidfd]"))
		return K_PIDFD;
	if (IS(n, "[io_uring]"))
		return K_IO_URING;
	if (IS(n, "[perf_event]"))
		return K_PERF_EVENT;
	if (STARTS(n, "bpf"))
		return K_BPF;
	return K_ANON_OTHER;
}

/* `n` is a power of two and every index is below it by the kernel's own
 * limits (TCP states < 16, netlink protocols < MAX_LINKS = 32, socket types
 * < 16, kinds < 32). The mask is the bound the verifier sees: a compare alone
 * may be applied by clang to a copy of the register the verifier does not
 * link to the one used as the index. */
static __always_inline void bump(__u64 *arr, __u32 idx, __u32 n)
{
	arr[idx & (n - 1)] += 1;
}

/* The walk's state is reset at the start of every walk. */
static __always_inline void reset(struct scratch *s)
{
	__u64 gen = s->c.generation + 1;

	__builtin_memset(&s->c, 0, sizeof(s->c));
	s->c.generation = gen;
	s->c.hdr.type = REC_SUMMARY;
	s->batch.hdr.type = REC_INODES;
	s->batch.hdr.port = 0;
}

/* The low 32 bits of a kernel address, as a number: a 32-bit move turns the
 * pointer into a scalar (allowed with CAP_PERFMON, which the census needs
 * anyway); clang would otherwise keep it a pointer, on which the verifier
 * refuses arithmetic. Only used to pick a hash slot, never stored. */
static __always_inline __u32 addr_bits(const void *p)
{
	/* 64-bit operands: with alu32 (-mcpu=v3) a 32-bit one would be a w register. */
	__u64 v;

	asm volatile("r0 = %1\n\tw0 = w0\n\t%0 = r0" : "=r"(v) : "r"(p) : "r0");
	return (__u32)v;
}

/* A socket's kind from its family, type and protocol (shared by the census
 * and the listing, so both name a socket alike). */
static __always_inline __u8 sock_kind(__u16 family, __u16 type, __u16 protocol)
{
	if (family == AF_INET || family == AF_INET6) {
		int v6 = family == AF_INET6;

		if (protocol == IPPROTO_TCP && type != SOCK_RAW)
			return v6 ? K_TCP6 : K_TCP;
		if ((protocol == IPPROTO_UDP || protocol == IPPROTO_UDPLITE) && type != SOCK_RAW)
			return v6 ? K_UDP6 : K_UDP;
		if (type == SOCK_RAW || protocol == IPPROTO_ICMP || protocol == IPPROTO_ICMPV6)
			return v6 ? K_RAW6 : K_RAW;
		return K_SOCKET_OTHER;
	}
	if (family == AF_UNIX)
		return K_UNIX;
	if (family == AF_NETLINK)
		return K_NETLINK;
	if (family == AF_PACKET)
		return K_PACKET;
	return K_SOCKET_OTHER;
}

/* Queue a socket/pipe inode for output; 0 when the file may be counted
 * (its inode is queued, or written), nonzero when it must be shown again. */
static __always_inline int push_inode(struct seq_file *seq, struct rec_inodes *b, __u8 kind,
				      __u64 ino, int fd)
{
	if (ino >> INO_BITS) {
		/* Not from get_next_ino() (32 bits): its own record. */
		struct rec_inode r = {};
		r.hdr.type = REC_INODE;
		r.hdr.kind = kind;
		r.hdr.fd = fd;
		r.ino = ino;
		return bpf_seq_write(seq, &r, sizeof(r));
	}
	__u32 n = b->hdr.port;

	b->ent[n & (INODE_BATCH - 1)] = (__u64)kind << INO_BITS | ino;
	if (n + 1 < INODE_BATCH) {
		b->hdr.port = n + 1;
		return 0;
	}
	b->hdr.port = INODE_BATCH;
	if (bpf_seq_write(seq, b, sizeof(*b))) {
		/* Take this file's inode back out: it is shown again. */
		b->hdr.port = INODE_BATCH - 1;
		return 1;
	}
	b->hdr.port = 0;
	return 0;
}

SEC("iter/task_file")
int census_task_file(struct bpf_iter__task_file *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&fdw_scratch, &zero);

	if (!s)
		return 0;
	struct census *c = &s->c;
	struct rec_inodes *batch = &s->batch;

	if (ctx->meta->seq_num == 0)
		reset(s);
	if (!task || !file) {
		/* The walk ended: hand over the last inodes and the counts. If
		 * either does not fit, the kernel discards both and calls again
		 * on the next read, so nothing changes until both are written. */
		__u32 n = batch->hdr.port & (INODE_BATCH - 1);

		if (n && bpf_seq_write(seq, batch, sizeof(batch->hdr) + n * sizeof(__u64)))
			return 0;
		if (bpf_seq_write(seq, c, sizeof(*c)))
			return 0;
		batch->hdr.port = 0;
		return 0;
	}
	__u32 *tgid = bpf_map_lookup_elem(&fdw_config, &zero);
	if (tgid && *tgid && (__u32)task->tgid != *tgid)
		return 0;

	int fd = ctx->fd;
	/* Direct loads through the iterator's BTF pointers (CO-RE relocated,
	 * fault-safe): several times cheaper per file than a probe-read helper
	 * call each. What remains is memory latency: each cache line of an inode
	 * or sock the walk touches is a likely miss at tens of thousands of fds,
	 * so sockets (known from file->f_op, on the file's own hot line) take
	 * family and type from the socket and its static proto_ops, and read the
	 * sock only for what only it knows (protocol, TCP state, peer). */
	struct inode *inode = file->f_inode;
	struct socket *sock = bpf_sock_from_file(file);
	__u16 mode = sock ? S_IFSOCK : inode->i_mode;
	unsigned long magic = sock ? 0 : inode->i_sb->s_magic;
	__u64 ino = inode->i_ino;
	__u8 kind;

	switch (mode & S_IFMT) {
	case S_IFSOCK: {
		struct sock *sk = sock ? sock->sk : NULL;
		const struct proto_ops *ops = sock ? sock->ops : NULL;

		if (!sk || !ops) {
			/* A socket file on disk opened with O_PATH, or one being torn down. */
			kind = K_SOCKET_OTHER;
			break;
		}
		__u16 family = ops->family;
		__u16 type = sock->type;
		__u16 protocol = 0;
		__u8 state = 0;

		if (family == AF_INET || family == AF_INET6 || family == AF_NETLINK)
			protocol = sk->sk_protocol;
		if ((family == AF_INET || family == AF_INET6) && protocol == IPPROTO_TCP)
			state = sk->__sk_common.skc_state;

		kind = sock_kind(family, type, protocol);

		if ((kind == K_TCP || kind == K_TCP6) && state != TCP_LISTEN_ &&
		    state != TCP_CLOSE_) {
			struct rec_tcp r = {};
			r.hdr.type = REC_TCP;
			r.hdr.kind = kind;
			r.hdr.fd = fd;
			r.hdr.port = bpf_ntohs(sk->__sk_common.skc_dport);
			r.ino = ino;
			r.state = state;
			r.family = family;
			if (family == AF_INET) {
				__u32 a = sk->__sk_common.skc_daddr;
				__builtin_memcpy(r.addr, &a, 4);
			} else {
				BPF_CORE_READ_INTO(&r.addr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
			}
			if (bpf_seq_write(seq, &r, sizeof(r)))
				return 0; /* shown again on the next read */
		} else if (push_inode(seq, batch, kind, ino, fd)) {
			return 0;
		}
		if (kind == K_TCP || kind == K_TCP6)
			bump(c->tcp_states, state, N_TCP_STATES);
		else if (kind == K_NETLINK)
			bump(c->netlink, protocol, N_NETLINK);
		else if (kind == K_UNIX)
			bump(c->unix_types, type, N_SOCK_TYPES);
		break;
	}
	case S_IFIFO:
		if (magic == PIPEFS_MAGIC) {
			if (push_inode(seq, batch, K_PIPE, ino, fd))
				return 0;
			kind = K_PIPE;
		} else {
			kind = K_FIFO;
		}
		break;
	case S_IFDIR:
		kind = K_DIRECTORY;
		break;
	case S_IFCHR:
		kind = K_CHAR_DEVICE;
		break;
	case S_IFBLK:
		kind = K_BLOCK_DEVICE;
		break;
	default: {
		/* The dentry name tells anon inode kinds and memfds apart; only
		 * those (and unlinked files) need it read. */
		char name[NAME_LEN] = {};

		if (magic == ANON_INODE_FS_MAGIC) {
			bpf_probe_read_kernel_str(name, sizeof(name), file->f_path.dentry->d_name.name);
			kind = anon_kind(name);
			break;
		}
		if (magic == PID_FS_MAGIC) {
			kind = K_PIDFD;
			break;
		}
		if (magic == NSFS_MAGIC || (mode & S_IFMT) != S_IFREG) {
			kind = K_OTHER;
			break;
		}
		__u32 nlink = inode->__i_nlink;
		if (nlink == 0) {
			bpf_probe_read_kernel_str(name, sizeof(name), file->f_path.dentry->d_name.name);
			if (STARTS(name, "memfd:")) {
				kind = K_MEMFD;
			} else {
				kind = K_DELETED;
				c->deleted_bytes += inode->i_size;
			}
			break;
		}
		kind = K_REGULAR;
		__u32 dev = inode->i_sb->s_dev;
		__u32 gen = (__u32)c->generation;
		/* The probes stay within one cache line (4 slots of 16 bytes). */
		__u32 slot = (addr_bits(inode) * 0x9E3779B1u) >> 16;
		int tracked = 0;
#pragma unroll
		for (int i = 0; i < REPEAT_PROBES; i++) {
			__u32 idx = ((slot & ~3u) | ((slot + i) & 3u)) & (REPEAT_SLOTS - 1);
			struct file_slot *f = bpf_map_lookup_elem(&fdw_files, &idx);

			if (!f)
				break;
			if (f->generation != gen) {
				/* Free: the first fd on this file. */
				f->generation = gen;
				f->dev = dev;
				f->ino = ino;
				tracked = 1;
				break;
			}
			if (f->ino == ino && f->dev == dev) {
				struct rec_repeat r = {};
				r.hdr.type = REC_REPEAT;
				r.hdr.kind = K_REGULAR;
				r.hdr.fd = fd;
				r.ino = ino;
				r.dev = dev;
				if (bpf_seq_write(seq, &r, sizeof(r)))
					return 0;
				tracked = 1;
				break;
			}
		}
		if (!tracked)
			c->repeat_untracked += 1;
		break;
	}
	}
	c->files += 1;
	bump(c->kinds, kind, K_MAX);
	return 0;
}

/* ---------------------------------------------------------------------
 * The listing (`fdwatch ls`): one record per fd, everything lsof/lsfd show,
 * read where the kernel keeps it. A separate program, so the census's walk
 * stays as cheap as it is; it shares the tgid filter (fdw_config).
 *
 * Each fd gives a `struct list_rec`, then `path_len` bytes of the file's
 * path (bpf_d_path: what readlink of /proc/PID/fd/N says, " (deleted)"
 * included), then `uaddr_len` bytes of a unix socket's bound address
 * (sun_path; a leading NUL for an abstract name). The three writes of one
 * fd are one seq_file object: if they do not fit, the kernel discards all
 * of them and shows the same file again on the next read.
 * Keep in step with src/sample/bpf/list.rs. */

#define LIST_PATH_MAX 4096
#define LIST_UADDR_MAX 128
#define O_CLOEXEC_ 02000000

struct list_rec {
	__s32 fd;
	__u8 kind;
	__u8 family;    /* sockets: AF_* */
	__u8 sock_type; /* sockets: SOCK_* */
	__u8 state;     /* sockets: sk_state (TCP states; unix: 1 connected, 10 listening) */
	__u16 protocol; /* sockets: sk_protocol (netlink: its protocol) */
	__u16 path_len;
	__u16 lport; /* inet: host order */
	__u16 rport;
	__u16 uaddr_len;
	__u16 pad0;
	__u32 flags; /* f_flags, | O_CLOEXEC as /proc/PID/fdinfo shows it */
	__u32 mnt_id;
	__u32 dev; /* s_dev, kernel encoding (major << 20 | minor) */
	__u32 nlink;
	__u32 netns; /* sockets: inode of the socket's network namespace */
	__u64 pos;
	__u64 ino;
	__u64 size;
	__u64 peer_ino; /* unix: the peer socket's inode */
	__u8 laddr[16];
	__u8 raddr[16];
};

_Static_assert(sizeof(struct list_rec) == 104, "list_rec is 104 bytes on the wire");

struct list_scratch {
	struct list_rec r;
	char path[LIST_PATH_MAX];
	char uaddr[LIST_UADDR_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct list_scratch);
} fdw_list_scratch SEC(".maps");

/* A kernel pointer's value as a number, read through memory so the verifier
 * sees a scalar (for container_of arithmetic before a probe read). */
static __always_inline __u64 ptr_value(void *const *where)
{
	__u64 v = 0;

	bpf_probe_read_kernel(&v, sizeof(v), where);
	return v;
}

SEC("iter/task_file")
int list_task_file(struct bpf_iter__task_file *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	__u32 zero = 0;

	if (!task || !file)
		return 0;
	__u32 *tgid = bpf_map_lookup_elem(&fdw_config, &zero);
	if (tgid && *tgid && (__u32)task->tgid != *tgid)
		return 0;
	struct list_scratch *s = bpf_map_lookup_elem(&fdw_list_scratch, &zero);
	if (!s)
		return 0;
	struct list_rec *r = &s->r;
	int fd = ctx->fd;

	__builtin_memset(r, 0, sizeof(*r));
	r->fd = fd;
	struct inode *inode = file->f_inode;
	struct socket *sock = bpf_sock_from_file(file);
	__u16 mode = inode->i_mode;
	unsigned long magic = inode->i_sb->s_magic;

	r->ino = inode->i_ino;
	r->dev = inode->i_sb->s_dev;
	r->nlink = inode->__i_nlink;
	r->size = inode->i_size;
	r->pos = file->f_pos;
	r->flags = file->f_flags;

	/* close-on-exec lives in the fd table, not the file. */
	unsigned long *cloexec = BPF_CORE_READ(task, files, fdt, close_on_exec);
	if (cloexec) {
		unsigned long word = 0;

		bpf_probe_read_kernel(&word, sizeof(word), cloexec + (fd >> 6));
		if (word & (1UL << (fd & 63)))
			r->flags |= O_CLOEXEC_;
	}
	/* mnt_id is the struct mount's, around the file's vfsmount. */
	__u64 vfsmount = ptr_value((void *const *)&file->f_path.mnt);
	if (vfsmount) {
		struct mount *m = (struct mount *)(vfsmount - bpf_core_field_offset(struct mount, mnt));
		int id = 0;

		bpf_core_read(&id, sizeof(id), &m->mnt_id);
		r->mnt_id = id;
	}

	if (sock) {
		struct sock *sk = sock->sk;
		const struct proto_ops *ops = sock->ops;

		if (!sk || !ops) {
			r->kind = K_SOCKET_OTHER;
		} else {
			__u16 family = ops->family;

			r->family = family;
			r->sock_type = sock->type;
			r->protocol = sk->sk_protocol;
			r->state = sk->__sk_common.skc_state;
			r->kind = sock_kind(family, sock->type, r->protocol);
			r->netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
			if (family == AF_INET || family == AF_INET6) {
				r->lport = sk->__sk_common.skc_num;
				r->rport = bpf_ntohs(sk->__sk_common.skc_dport);
				if (family == AF_INET) {
					__u32 l = sk->__sk_common.skc_rcv_saddr;
					__u32 d = sk->__sk_common.skc_daddr;

					__builtin_memcpy(r->laddr, &l, 4);
					__builtin_memcpy(r->raddr, &d, 4);
				} else {
					BPF_CORE_READ_INTO(&r->laddr, sk,
							   __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
					BPF_CORE_READ_INTO(&r->raddr, sk,
							   __sk_common.skc_v6_daddr.in6_u.u6_addr8);
				}
			} else if (family == AF_UNIX) {
				struct unix_sock *u = (struct unix_sock *)sk;
				struct unix_address *addr = BPF_CORE_READ(u, addr);
				struct sock *peer = BPF_CORE_READ(u, peer);

				if (addr) {
					int len = BPF_CORE_READ(addr, len);
					/* sun_path follows the 2-byte sun_family. */
					int n = len - 2;

					if (n > 0) {
						n &= LIST_UADDR_MAX - 1;
						if (n > 108)
							n = 108;
						/* name[] is a flexible array of sockaddr_un:
						 * its offset, then sun_path after the 2-byte
						 * family (aya's CO-RE refuses an index into
						 * a flexible array). */
						char *path = (char *)addr +
							     bpf_core_field_offset(struct unix_address, name) + 2;

						bpf_probe_read_kernel(s->uaddr, n, path);
						r->uaddr_len = n;
					}
				}
				if (peer) {
					struct socket *ps = BPF_CORE_READ(peer, sk_socket);

					if (ps)
						r->peer_ino = BPF_CORE_READ((struct socket_alloc *)ps,
									    vfs_inode.i_ino);
				}
			}
		}
	} else {
		switch (mode & S_IFMT) {
		case S_IFIFO:
			r->kind = magic == PIPEFS_MAGIC ? K_PIPE : K_FIFO;
			break;
		case S_IFDIR:
			r->kind = K_DIRECTORY;
			break;
		case S_IFCHR:
			r->kind = K_CHAR_DEVICE;
			break;
		case S_IFBLK:
			r->kind = K_BLOCK_DEVICE;
			break;
		case S_IFSOCK:
			/* A socket file opened with O_PATH. */
			r->kind = K_SOCKET_OTHER;
			break;
		default: {
			char name[NAME_LEN] = {};

			if (magic == ANON_INODE_FS_MAGIC) {
				bpf_probe_read_kernel_str(name, sizeof(name),
							  file->f_path.dentry->d_name.name);
				r->kind = anon_kind(name);
			} else if (magic == PID_FS_MAGIC) {
				r->kind = K_PIDFD;
			} else if (magic == NSFS_MAGIC || (mode & S_IFMT) != S_IFREG) {
				r->kind = K_OTHER;
			} else if (r->nlink == 0) {
				bpf_probe_read_kernel_str(name, sizeof(name),
							  file->f_path.dentry->d_name.name);
				r->kind = STARTS(name, "memfd:") ? K_MEMFD : K_DELETED;
			} else {
				r->kind = K_REGULAR;
			}
			break;
		}
		}
	}

	long n = bpf_d_path((struct path *)&file->f_path, s->path, LIST_PATH_MAX);
	if (n > 1)
		r->path_len = (n - 1) & (LIST_PATH_MAX - 1);

	if (bpf_seq_write(seq, r, sizeof(*r)))
		return 0;
	__u32 plen = r->path_len & (LIST_PATH_MAX - 1);
	if (plen && bpf_seq_write(seq, s->path, plen))
		return 0;
	__u32 ulen = r->uaddr_len & (LIST_UADDR_MAX - 1);
	if (ulen && bpf_seq_write(seq, s->uaddr, ulen))
		return 0;
	return 0;
}

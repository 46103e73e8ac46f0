/*
 * bound: the fewest syscalls a /proc census can make to report what
 * fdwatch reports, replayed with the answer known in advance.
 *
 * The floor (floor.c) reads every fd's link and classifies nothing: a file's
 * type, a socket's family and a netlink socket's protocol are not in the
 * link. To report them through /proc a census must, per fd, at least:
 *
 *   - a file, directory, device, FIFO or pipe: one statx (type and inode;
 *     cheaper than the readlink for pipes);
 *   - an anon inode (eventfd, epoll, ...): one readlinkat (only the link
 *     names its kind);
 *   - a socket in a table that says more than its kind (TCP state, a bound
 *     netlink socket's protocol): one statx (its inode) plus the table, read
 *     once;
 *   - any other socket (unix, an unbound UDP, raw or packet socket): one
 *     getxattr("system.sockprotoname");
 *   - an unbound netlink socket: a statx (its inode is in no netlink table:
 *     only then is it known unbound) and a getxattr (its family): two; one
 *     getxattr when the table lists no socket of user space at all (port
 *     id 0 rows are the kernel's own sockets), since then none is bound.
 *
 * Which fds there are: one fstat of /proc/PID/fd when the table is dense
 * (its size is the fd count on Linux 6.2+, as fdwatch uses it), else
 * getdents64 as the floor does.
 *
 * A setup pass learns each fd's kind (readlink + getxattr, not timed); each
 * timed loop then makes exactly the calls above and nothing else: no
 * parsing, no allocation, no guessing which call an fd needs. A census that
 * must find out each kind as it goes cannot be cheaper than this, so
 * fdwatch's one-shot census is judged against it as well as the floor.
 *
 *   cc -O2 -o bound scripts/bound.c
 *   bound PID LOOPS
 *
 * Prints "bound: N fds, LOOPS loops, X us/census (S statx, G getxattr, R
 * readlink, T tables)" on stderr.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <linux/stat.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_getxattrat
#define SYS_getxattrat 464 /* x86_64, Linux 6.13+ */
#endif

enum op { STAT, XATTR, STAT_XATTR, READLINK };

struct xattr_args {
	uint64_t value;
	uint32_t size;
	uint32_t flags;
};

static int dfd;
static char buf[1 << 16];

/* The same call fdwatch makes: relative to the fd directory, 64-byte value. */
static long sockprotoname(const char *name, char *out)
{
	struct xattr_args a = { (uint64_t)(uintptr_t)out, 64, 0 };
	return syscall(SYS_getxattrat, dfd, name, 0, "system.sockprotoname", &a, sizeof a);
}

static void stat_fd(const char *name)
{
	struct statx s;
	syscall(SYS_statx, dfd, name, AT_STATX_DONT_SYNC,
		STATX_TYPE | STATX_INO | STATX_NLINK | STATX_SIZE, &s);
}

static void read_all(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	while (read(fd, buf, sizeof buf) > 0)
		;
	close(fd);
}

/* Which fds: a dense table (fds 0..n-1, the usual case) is known from one
 * fstat of the directory, whose size is the fd count on Linux 6.2+; a table
 * with holes must be listed. */
static int dense;
static void list_fds(void)
{
	static char dents[1 << 16];
	if (dense) {
		struct stat st;
		fstat(dfd, &st);
		return;
	}
	lseek(dfd, 0, SEEK_SET);
	while (syscall(SYS_getdents64, dfd, dents, sizeof dents) > 0)
		;
}

/* Inodes of the sockets a table lists (its "inode" column, by header). */
static long table_inodes(const char *path, unsigned long *out, long max)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	char line[512];
	int col = -1;
	long n = 0;
	if (fgets(line, sizeof line, f)) {
		int i = 0;
		for (char *t = strtok(line, " \t\n"); t; t = strtok(NULL, " \t\n"), i++)
			if (!strcasecmp(t, "inode"))
				col = i;
	}
	int netlink = strstr(path, "netlink") != NULL;
	while (col >= 0 && n < max && fgets(line, sizeof line, f)) {
		int i = 0;
		for (char *t = strtok(line, " \t\n"); t; t = strtok(NULL, " \t\n"), i++)
			if (netlink && i == 2 && !strcmp(t, "0"))
				break; /* port id 0: a kernel-side socket, no process's fd */
			else if (i == col - (strstr(path, "tcp") ? 2 : 0)) {
				/* tcp tables: "tx_queue rx_queue" and "tr tm->when" are two
				 * header words each but one column */
				out[n++] = strtoul(t, NULL, 10);
				break;
			}
	}
	fclose(f);
	return n;
}

static int listed(unsigned long ino, const unsigned long *set, long n)
{
	for (long i = 0; i < n; i++)
		if (set[i] == ino)
			return 1;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s PID LOOPS\n", argv[0]);
		return 2;
	}
	long loops = strtol(argv[2], NULL, 10);
	if (loops < 1)
		loops = 1;
	char dir[64], netlink[64], tcp[64], tcp6[64];
	snprintf(dir, sizeof dir, "/proc/%s/fd", argv[1]);
	snprintf(netlink, sizeof netlink, "/proc/%s/net/netlink", argv[1]);
	snprintf(tcp, sizeof tcp, "/proc/%s/net/tcp", argv[1]);
	snprintf(tcp6, sizeof tcp6, "/proc/%s/net/tcp6", argv[1]);
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		perror(dir);
		return 2;
	}

	static unsigned long nl[1 << 16], tc[1 << 16];
	long n_nl = table_inodes(netlink, nl, 1 << 16);
	long n_tc = table_inodes(tcp, tc, 1 << 15);
	n_tc += table_inodes(tcp6, tc + n_tc, 1 << 15);

	/* Setup, not timed: each fd's kind and so the calls it needs. */
	static char names[1 << 16][12];
	static unsigned char ops[1 << 16];
	long n = 0, counts[4] = { 0 };
	int need_netlink = 0, need_tcp = 0;
	DIR *listing = fdopendir(dup(dfd)); /* setup only: readdir is fine */
	for (struct dirent *d; listing && (d = readdir(listing)) && n < (1 << 16);) {
		if (d->d_name[0] == '.')
			continue;
		char target[4200], proto[64];
		ssize_t len = readlinkat(dfd, d->d_name, target, sizeof target - 1);
		if (len < 0)
			continue;
		target[len] = 0;
		enum op op = STAT;
		unsigned long ino;
		if (!strncmp(target, "anon_inode:", 11)) {
			op = READLINK;
		} else if (sscanf(target, "socket:[%lu]", &ino) == 1) {
			long p = sockprotoname(d->d_name, proto);
			proto[p > 0 ? p : 0] = 0;
			if (listed(ino, nl, n_nl)) {
				op = STAT, need_netlink = 1;
			} else if (!strcmp(proto, "NETLINK")) {
				/* No user socket bound in the netns: it is unbound, and
				 * the name says all; else only its inode can tell. */
				op = n_nl ? STAT_XATTR : XATTR, need_netlink = 1;
			} else if (!strncmp(proto, "TCP", 3) && listed(ino, tc, n_tc)) {
				op = STAT, need_tcp = 1;
			} else {
				op = XATTR;
			}
		}
		strcpy(names[n], d->d_name);
		ops[n++] = op;
		counts[op]++;
	}
	if (listing)
		closedir(listing);

	struct stat st;
	dense = fstat(dfd, &st) == 0 && st.st_size == n;
	for (long i = 0; dense && i < n; i++)
		dense = strtol(names[i], NULL, 10) < n;

	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long l = 0; l < loops; l++) {
		list_fds();
		if (need_netlink)
			read_all(netlink);
		if (need_tcp)
			read_all(tcp), read_all(tcp6);
		for (long i = 0; i < n; i++) {
			char proto[64];
			switch (ops[i]) {
			case STAT:
				stat_fd(names[i]);
				break;
			case XATTR:
				sockprotoname(names[i], proto);
				break;
			case STAT_XATTR:
				stat_fd(names[i]);
				sockprotoname(names[i], proto);
				break;
			case READLINK:
				readlinkat(dfd, names[i], buf, 4200);
				break;
			}
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double us = ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / 1e3 / loops;
	fprintf(stderr, "bound: %ld fds, %ld loops, %.1f us/census (%s, %ld statx, %ld getxattr, %ld readlink, %d tables)\n",
		n, loops, us, dense ? "1 fstat" : "getdents64", counts[STAT] + counts[STAT_XATTR],
		counts[XATTR] + counts[STAT_XATTR], counts[READLINK], need_netlink + 2 * need_tcp);
	printf("%ld\n", n);
	return 0;
}

/*
 * floor: the cost floor of a classified fd census through /proc.
 *
 * getdents64 on /proc/PID/fd plus one readlinkat per fd, nothing else (no
 * stat, no socket tables, no getxattr, no allocation per fd). Any tool that
 * classifies every fd through /proc has to do at least this much work.
 *
 *   cc -O2 -o floor scripts/floor.c
 *   floor PID [LOOPS]
 *
 * Prints the fd count (of the last loop) on stdout. With LOOPS > 1 the census
 * is repeated in-process and the mean time per census (no exec, no process
 * start-up) goes to stderr as "floor: N fds, LOOPS loops, X us/census".
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct linux_dirent64 {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

static long census(const char *dir, long *failed)
{
	static char dents[1 << 16];
	char target[4200];
	long count = 0;
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		perror(dir);
		exit(2);
	}
	for (;;) {
		long n = syscall(SYS_getdents64, dfd, dents, sizeof dents);
		if (n < 0) {
			perror("getdents64");
			exit(2);
		}
		if (n == 0)
			break;
		for (long off = 0; off < n;) {
			struct linux_dirent64 *d = (struct linux_dirent64 *)(dents + off);
			off += d->d_reclen;
			if (d->d_name[0] == '.')
				continue;
			ssize_t len = readlinkat(dfd, d->d_name, target, sizeof target);
			if (len < 0)
				(*failed)++; /* closed since getdents: not counted */
			else
				count++;
		}
	}
	close(dfd);
	return count;
}

int main(int argc, char **argv)
{
	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: %s PID [LOOPS]\n", argv[0]);
		return 2;
	}
	char dir[64];
	snprintf(dir, sizeof dir, "/proc/%s/fd", argv[1]);
	long loops = argc == 3 ? strtol(argv[2], NULL, 10) : 1;
	if (loops < 1)
		loops = 1;

	struct timespec t0, t1;
	long count = 0, failed = 0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long i = 0; i < loops; i++)
		count = census(dir, &failed);
	clock_gettime(CLOCK_MONOTONIC, &t1);

	printf("%ld\n", count);
	if (loops > 1) {
		double us = ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / 1e3 / loops;
		fprintf(stderr, "floor: %ld fds, %ld loops, %.1f us/census\n", count, loops, us);
	}
	if (failed)
		fprintf(stderr, "floor: %ld readlinkat failures (fds closed meanwhile)\n", failed);
	return 0;
}

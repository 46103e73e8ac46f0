// The cost of one syscall, or of one socket(AF_NETLINK)+bind+close, in a
// tight loop: what a syscall counter adds per call (scripts/bench-syscalls.sh).
//
//   syscall-loop N MODE     MODE: getppid | netlink
//
// Prints ns per iteration (wall clock and this process's CPU time), the
// minimum over REPS repetitions of N (env REPS, default 5): the minimum is
// the run least disturbed by the rest of the machine. DELAY=seconds waits
// first, so that a counter can be attached to this pid before the loop.
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <linux/netlink.h>

static double now(clockid_t c) { struct timespec t; clock_gettime(c, &t); return t.tv_sec * 1e9 + t.tv_nsec; }

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    const char *mode = argc > 2 ? argv[2] : "getppid";
    int reps = getenv("REPS") ? atoi(getenv("REPS")) : 5;
    int netlink = !strcmp(mode, "netlink");
    if (getenv("DELAY")) usleep(atof(getenv("DELAY")) * 1e6);
    double best_w = 1e18, best_c = 1e18;
    for (int r = 0; r < reps; r++) {
        double w0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
        for (long i = 0; i < n; i++) {
            if (netlink) {
                int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
                struct sockaddr_nl a = { .nl_family = AF_NETLINK };
                bind(fd, (struct sockaddr *)&a, sizeof a);
                close(fd);
            } else {
                syscall(SYS_getppid);
            }
        }
        double w = (now(CLOCK_MONOTONIC) - w0) / n, c = (now(CLOCK_PROCESS_CPUTIME_ID) - c0) / n;
        if (w < best_w) best_w = w;
        if (c < best_c) best_c = c;
    }
    printf("%s %.1f ns/iter wall, %.1f ns/iter cpu (min of %d x %ld)\n", mode, best_w, best_c, reps, n);
    return 0;
}

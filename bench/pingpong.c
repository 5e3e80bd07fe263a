/* Pipe ping-pong between two processes: the cost of one omprog-style round trip (a line to the
 * child, a reply back, each side blocked in read(2) in between), without rsyslog.
 *
 *   pingpong PAIRS SECONDS [same]
 *
 * Runs PAIRS independent parent/child pairs for SECONDS and prints the total round trips per
 * second. With "same" every process is pinned to CPU 0, so a wake-up never has to reach another
 * (possibly halted) CPU.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    int pairs = argc > 1 ? atoi(argv[1]) : 1;
    double secs = argc > 2 ? atof(argv[2]) : 1.0;
    int same = argc > 3 && strcmp(argv[3], "same") == 0;
    if (same) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(0, &set);
        sched_setaffinity(0, sizeof set, &set);
    }
    int report[2];
    if (pipe(report) < 0) return 1;
    for (int p = 0; p < pairs; p++) {
        if (fork() == 0) {
            int down[2], up[2];
            if (pipe(down) < 0 || pipe(up) < 0) _exit(1);
            pid_t child = fork();
            if (child == 0) {
                close(down[1]);
                close(up[0]);
                char c;
                while (read(down[0], &c, 1) == 1)
                    if (write(up[1], "K", 1) != 1) break;
                _exit(0);
            }
            close(down[0]);
            close(up[1]);
            long n = 0;
            char c;
            double end = now() + secs;
            while (now() < end) {
                for (int i = 0; i < 100; i++) {
                    if (write(down[1], "x", 1) != 1 || read(up[0], &c, 1) != 1) _exit(1);
                }
                n += 100;
            }
            close(down[1]);
            waitpid(child, NULL, 0);
            if (write(report[1], &n, sizeof n) != sizeof n) _exit(1);
            _exit(0);
        }
    }
    long total = 0;
    for (int p = 0; p < pairs; p++) {
        long n;
        if (read(report[0], &n, sizeof n) != sizeof n) return 1;
        total += n;
    }
    while (wait(NULL) > 0) {}
    printf("%.0f\n", total / secs);
    return 0;
}

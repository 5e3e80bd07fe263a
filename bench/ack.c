/* The omprog ceiling: a trivial program that only acknowledges.
 *
 *   ack OUTFILE [noreply|lazy]
 *
 * Speaks rsyslog's omprog protocol with confirmMessages="on" (useTransactions on or off):
 * writes the "OK" handshake, answers "OK" to BEGIN TRANSACTION and COMMIT TRANSACTION and
 * "DEFER_COMMIT" to each message inside a transaction ("OK" outside one), and appends every
 * message line to OUTFILE. File data is buffered and written at COMMIT (and, outside
 * transactions, before each reply), so what rsyslog saw acknowledged is in the file.
 *
 * With "noreply" (for confirmMessages="off") it never writes to stdout and flushes the file
 * whenever its input is drained. "lazy" is "noreply" written the naive way: the file is written
 * only at COMMIT, when its 1 MiB buffer is full, and at exit (what stdio buffering does), so
 * without transactions the last lines reach the file only when rsyslog stops the program. Each reply is one write(2), as omprog requires (one line per
 * read on its side). No parsing, no allocation per line: this is as cheap as a program behind
 * omprog can be, so it measures rsyslog's own cost.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char obuf[1 << 20];
static size_t olen;
static int ofd;

static void die(const char *what) { perror(what); exit(1); }

static void flush_out(void) {
    size_t off = 0;
    while (off < olen) {
        ssize_t w = write(ofd, obuf + off, olen - off);
        if (w < 0) { if (errno == EINTR) continue; die("write outfile"); }
        off += (size_t)w;
    }
    olen = 0;
}

static void append(const char *p, size_t n) {
    if (olen + n > sizeof obuf) flush_out();
    if (n > sizeof obuf) { /* huge line: write through */
        size_t off = 0;
        while (off < n) { ssize_t w = write(ofd, p + off, n - off); if (w < 0) { if (errno == EINTR) continue; die("write"); } off += (size_t)w; }
        return;
    }
    memcpy(obuf + olen, p, n);
    olen += n;
}

static int noreply, lazy;

static void reply(const char *s) {
    if (noreply) return;
    size_t n = strlen(s), off = 0;
    while (off < n) {
        ssize_t w = write(1, s + off, n - off);
        if (w < 0) { if (errno == EINTR) continue; exit(0); /* rsyslog went away */ }
        off += (size_t)w;
    }
}

static int input_pending(void) {
    struct pollfd p = { .fd = 0, .events = POLLIN };
    return poll(&p, 1, 0) > 0;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: ack OUTFILE [noreply]\n"); return 2; }
    lazy = argc > 2 && strcmp(argv[2], "lazy") == 0;
    noreply = lazy || (argc > 2 && strcmp(argv[2], "noreply") == 0);
    ofd = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (ofd < 0) die("open outfile");
    reply("OK\n");
    static char buf[1 << 20];
    size_t have = 0;
    int in_tx = 0;
    for (;;) {
        if (have == sizeof buf) { fprintf(stderr, "ack: line too long\n"); return 1; }
        if (noreply && !lazy && olen > 0 && !input_pending()) flush_out();
        ssize_t r = read(0, buf + have, sizeof buf - have);
        if (r < 0) { if (errno == EINTR) continue; die("read stdin"); }
        if (r == 0) break;
        have += (size_t)r;
        size_t start = 0;
        for (;;) {
            char *nl = memchr(buf + start, '\n', have - start);
            if (!nl) break;
            size_t len = (size_t)(nl - (buf + start));
            const char *line = buf + start;
            if (len == 17 && memcmp(line, "BEGIN TRANSACTION", 17) == 0) {
                in_tx = 1;
                reply("OK\n");
            } else if (len == 18 && memcmp(line, "COMMIT TRANSACTION", 18) == 0) {
                in_tx = 0;
                flush_out();
                reply("OK\n");
            } else {
                append(line, len + 1);
                if (in_tx) {
                    reply("DEFER_COMMIT\n");
                } else {
                    if (!noreply) flush_out();
                    reply("OK\n");
                }
            }
            start = (size_t)(nl - buf) + 1;
        }
        memmove(buf, buf + start, have - start);
        have -= start;
    }
    flush_out();
    return 0;
}

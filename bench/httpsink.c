/* A minimal, fast HTTP/1.1 sink for the benchmarks.
 *
 *   httpsink PORT
 *
 * Listens on 127.0.0.1:PORT, one thread per connection, keep-alive. Every request with a body
 * (POST/PUT, Content-Length or chunked) is answered "200 OK" with an empty body and the number
 * of newline-terminated records in its body is added to a counter. "GET /count" answers
 * "<records> <requests> <monotonic ns of the last POST>" so the harness can poll progress.
 * Nothing is stored: this measures the sender, not a database.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static atomic_ullong records, requests, last_ns;

static unsigned long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

static int send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) { if (errno == EINTR) continue; return -1; }
        p += w; n -= (size_t)w;
    }
    return 0;
}

struct conn { int fd; char *buf; size_t cap, len; };

/* Ensures at least `need` bytes are buffered; 0 on success, -1 on EOF/error. */
static int fill(struct conn *c, size_t need) {
    while (c->len < need) {
        if (c->len == c->cap) {
            c->cap *= 2;
            c->buf = realloc(c->buf, c->cap);
            if (!c->buf) return -1;
        }
        ssize_t r = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (r < 0) { if (errno == EINTR) continue; return -1; }
        if (r == 0) return -1;
        c->len += (size_t)r;
    }
    return 0;
}

static void consume(struct conn *c, size_t n) {
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

static unsigned long long count_nl(const char *p, size_t n) {
    unsigned long long k = 0;
    const char *end = p + n;
    while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) { k++; p++; }
    return k;
}

static void *serve(void *arg) {
    struct conn c = { .fd = (int)(long)arg, .cap = 1 << 16 };
    c.buf = malloc(c.cap);
    int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    for (;;) {
        /* headers */
        char *hend;
        size_t scanned = 0;
        for (;;) {
            hend = c.len >= 4 ? memmem(c.buf + (scanned > 3 ? scanned - 3 : 0), c.len - (scanned > 3 ? scanned - 3 : 0), "\r\n\r\n", 4) : NULL;
            if (hend) break;
            scanned = c.len;
            if (fill(&c, c.len + 1) < 0) goto out;
        }
        size_t hlen = (size_t)(hend - c.buf) + 4;
        long long clen = -1;
        int chunked = 0, is_get = strncmp(c.buf, "GET ", 4) == 0, close_after = 0;
        for (char *l = memchr(c.buf, '\n', hlen); l && l < c.buf + hlen; l = memchr(l + 1, '\n', (size_t)(c.buf + hlen - l - 1))) {
            char *h = l + 1;
            if (strncasecmp(h, "content-length:", 15) == 0) clen = atoll(h + 15);
            else if (strncasecmp(h, "transfer-encoding:", 18) == 0 && strcasestr(h, "chunked") && strcasestr(h, "chunked") < strchr(h, '\n')) chunked = 1;
            else if (strncasecmp(h, "connection:", 11) == 0 && strcasestr(h, "close") && strcasestr(h, "close") < strchr(h, '\n')) close_after = 1;
            else if (strncasecmp(h, "expect:", 7) == 0) send_all(c.fd, "HTTP/1.1 100 Continue\r\n\r\n", 25);
        }
        int get_count = is_get && strncmp(c.buf + 4, "/count", 6) == 0;
        consume(&c, hlen);
        unsigned long long n = 0;
        int had_body = 0;
        if (chunked) {
            had_body = 1;
            for (;;) {
                char *eol;
                while (!(eol = memmem(c.buf, c.len, "\r\n", 2))) if (fill(&c, c.len + 1) < 0) goto out;
                size_t sz = strtoull(c.buf, NULL, 16);
                consume(&c, (size_t)(eol - c.buf) + 2);
                if (fill(&c, sz + 2) < 0) goto out;
                n += count_nl(c.buf, sz);
                consume(&c, sz + 2);
                if (sz == 0) break; /* no trailers expected */
            }
        } else if (clen > 0) {
            had_body = 1;
            size_t left = (size_t)clen;
            while (left) {
                if (c.len == 0 && fill(&c, 1) < 0) goto out;
                size_t take = c.len < left ? c.len : left;
                n += count_nl(c.buf, take);
                consume(&c, take);
                left -= take;
            }
        }
        if (had_body) {
            atomic_fetch_add(&records, n);
            atomic_fetch_add(&requests, 1);
            atomic_store(&last_ns, now_ns());
        }
        if (get_count) {
            char body[96], resp[192];
            int bl = snprintf(body, sizeof body, "%llu %llu %llu\n", (unsigned long long)atomic_load(&records),
                              (unsigned long long)atomic_load(&requests), (unsigned long long)atomic_load(&last_ns));
            int rl = snprintf(resp, sizeof resp, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", bl, body);
            if (send_all(c.fd, resp, (size_t)rl) < 0) goto out;
        } else {
            static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n";
            if (send_all(c.fd, ok, sizeof ok - 1) < 0) goto out;
        }
        if (close_after) goto out;
    }
out:
    close(c.fd);
    free(c.buf);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: httpsink PORT\n"); return 2; }
    signal(SIGPIPE, SIG_IGN);
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[1])) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 128) < 0) { perror("httpsink: bind/listen"); return 1; }
    for (;;) {
        int fd = accept(s, NULL, NULL);
        if (fd < 0) { if (errno == EINTR) continue; perror("accept"); continue; }
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&at, 256 * 1024);
        if (pthread_create(&t, &at, serve, (void *)(long)fd) != 0) close(fd);
        pthread_attr_destroy(&at);
    }
}

/* wsecho: the benchmark's backend. One epoll loop, one thread, one process.
 * - An HTTP GET with "Upgrade: websocket" gets a 101 and then every data frame is
 *   echoed back unmasked with the same opcode and FIN bit; Ping gets Pong; Close gets
 *   the Close echoed, and the TCP connection is closed by this side (RFC 6455 7.1.1).
 * - Any other request gets a small "200 ok", keeping the connection alive unless the
 *   request said "Connection: close" or was HTTP/1.0 (the wrk workload).
 * Usage: wsecho PORT   (binds 127.0.0.1 only; prints "LISTENING PORT" when ready) */
#include "wsutil.h"

#include <ctype.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#define MAX_HEAD 16384
#define MAX_FRAME (64u << 20)
#define PAUSE_OUT (4u << 20)

typedef struct {
    int fd, ws, close_after_flush, paused, want_out;
    uint64_t skip;  /* request body bytes still to discard */
    buf_t in, out;
} conn_t;

static conn_t **conns;
static long nconns_max;
static int ep;

static void conn_close(conn_t *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    conns[c->fd] = NULL;
    buf_free(&c->in);
    buf_free(&c->out);
    free(c);
}

static void set_events(conn_t *c) {
    struct epoll_event ev = {0};
    ev.events = (c->paused ? 0 : EPOLLIN) | (c->want_out ? EPOLLOUT : 0);
    ev.data.fd = c->fd;
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Write what is pending; 0 ok, -1 connection is gone. */
static int flush_out(conn_t *c) {
    while (buf_avail(&c->out)) {
        ssize_t n = write(c->fd, c->out.d + c->out.off, buf_avail(&c->out));
        if (n > 0) { c->out.off += n; continue; }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) break;
        return -1;
    }
    int pending = buf_avail(&c->out) > 0;
    if (!pending) {
        buf_shrink_if_empty(&c->out);
        if (c->close_after_flush) return -1;
    }
    int paused = pending && buf_avail(&c->out) > PAUSE_OUT;
    if (pending != c->want_out || paused != c->paused) {
        c->want_out = pending; c->paused = paused;
        set_events(c);
    }
    return 0;
}

static int header_has(const char *lower_head, const char *needle) {
    return strstr(lower_head, needle) != NULL;
}

/* Value of header `name` ("\r\nname:") in head (case-insensitive name), copied out. */
static int header_value(const char *head, const char *lower_head, const char *name,
                        char *out, size_t outsz) {
    const char *p = strstr(lower_head, name);
    if (!p) return -1;
    p = head + (p - lower_head) + strlen(name);
    while (*p == ' ' || *p == '\t') p++;
    size_t n = 0;
    while (p[n] && p[n] != '\r' && p[n] != ' ' && n + 1 < outsz) { out[n] = p[n]; n++; }
    out[n] = 0;
    return (int)n;
}

/* Handle one request head; returns bytes consumed, 0 need more, -1 close. */
static long handle_http(conn_t *c) {
    unsigned char *p = c->in.d + c->in.off;
    size_t n = buf_avail(&c->in);
    unsigned char *end = memmem(p, n, "\r\n\r\n", 4);
    if (!end) return n > MAX_HEAD ? -1 : 0;
    size_t hl = (size_t)(end - p) + 4;
    if (hl > MAX_HEAD) return -1;
    char head[MAX_HEAD + 1], lower[MAX_HEAD + 1];
    memcpy(head, p, hl); head[hl] = 0;
    for (size_t i = 0; i <= hl; i++) lower[i] = (char)tolower((unsigned char)head[i]);
    char key[80], cl[32];
    if (header_has(lower, "\r\nupgrade: websocket") || header_has(lower, "\r\nupgrade:websocket")) {
        if (header_value(head, lower, "\r\nsec-websocket-key:", key, sizeof key) <= 0) return -1;
        char acc[29], resp[256];
        ws_accept(key, strlen(key), acc);
        int rl = snprintf(resp, sizeof resp,
                          "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", acc);
        buf_append(&c->out, resp, rl);
        c->ws = 1;
        return (long)hl;
    }
    static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n";
    static const char okc[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
                              "Connection: close\r\n\r\nok\n";
    int http10 = strncmp(strchr(lower, '\r') - 8, "http/1.0", 8) == 0;
    int close = header_has(lower, "\r\nconnection: close") ||
                (http10 && !header_has(lower, "\r\nconnection: keep-alive"));
    if (close) { buf_append(&c->out, okc, sizeof okc - 1); c->close_after_flush = 1; }
    else buf_append(&c->out, ok, sizeof ok - 1);
    if (header_value(head, lower, "\r\ncontent-length:", cl, sizeof cl) > 0)
        c->skip = strtoull(cl, NULL, 10);
    return (long)hl;
}

/* Handle one frame; returns bytes consumed, 0 need more, -1 close. */
static long handle_frame(conn_t *c) {
    unsigned char *p = c->in.d + c->in.off;
    size_t n = buf_avail(&c->in);
    frame_t f;
    int r = ws_parse_header(p, n, &f);
    if (r <= 0) return r;
    if (!f.masked || f.len > MAX_FRAME) return -1;
    if (n < f.hdr + f.len) {
        if (buf_reserve(&c->in, f.hdr + f.len - n)) return -1;
        return 0;
    }
    unsigned char *pl = p + f.hdr;
    ws_mask(pl, f.len, f.key);
    int op = f.opcode;
    if (op == 10) return (long)(f.hdr + f.len);   /* unsolicited Pong: ignore */
    if (op == 9) op = 10;
    unsigned char h[14];
    size_t hl = ws_write_header(h, op, f.len, NULL);
    if (!f.fin) h[0] &= 0x7f;
    buf_append(&c->out, h, hl);
    buf_append(&c->out, pl, f.len);
    if (op == 8) { c->close_after_flush = 1; }
    return (long)(f.hdr + f.len);
}

static int process_input(conn_t *c) {
    while (buf_avail(&c->in) && !c->close_after_flush) {
        if (c->skip) {
            size_t k = buf_avail(&c->in) < c->skip ? buf_avail(&c->in) : c->skip;
            c->in.off += k; c->skip -= k;
            continue;
        }
        long used = c->ws ? handle_frame(c) : handle_http(c);
        if (used < 0) return -1;
        if (used == 0) break;
        c->in.off += used;
    }
    if (c->close_after_flush) c->in.off = c->in.len;
    buf_shrink_if_empty(&c->in);
    return 0;
}

static void on_readable(conn_t *c) {
    if (buf_reserve(&c->in, 65536 + 16)) { conn_close(c); return; }
    ssize_t n = read(c->fd, c->in.d + c->in.len, c->in.cap - c->in.len);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) { conn_close(c); return; }
    c->in.len += n;
    if (process_input(c) < 0 || flush_out(c) < 0) conn_close(c);
}

static void on_accept(int lfd) {
    for (int i = 0; i < 256; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        if (fd >= nconns_max) { close(fd); continue; }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn_t *c = calloc(1, sizeof *c);
        c->fd = fd;
        conns[fd] = c;
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: wsecho PORT\n"); return 2; }
    signal(SIGPIPE, SIG_IGN);
    nconns_max = raise_nofile() + 16;
    conns = calloc(nconns_max, sizeof *conns);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1])),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) || listen(lfd, 4096)) {
        perror("wsecho: bind/listen");
        return 1;
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    printf("LISTENING %s\n", argv[1]);
    fflush(stdout);
    struct epoll_event evs[512];
    for (;;) {
        int n = epoll_wait(ep, evs, 512, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) { on_accept(lfd); continue; }
            conn_t *c = conns[fd];
            if (!c) continue;
            if (evs[i].events & EPOLLOUT) {
                if (flush_out(c) < 0) { conn_close(c); continue; }
            }
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
        }
    }
}

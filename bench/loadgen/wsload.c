/* wsload: the benchmark's WebSocket load generator. One epoll loop, one thread.
 * Modes (all over real client handshakes with masked frames, RFC 6455 5.3):
 *   echo  --conns N --size S --warmup W --duration D
 *         closed loop, one message in flight per connection; every echo compared.
 *   bulk  --bytes B --frame F [--window W]
 *         one connection streams B bytes in F-byte frames; every echoed frame compared.
 *   churn --conns N --warmup W --duration D
 *         N loops of connect + upgrade + one echo + Close handshake + wait for EOF.
 *   idle  --conns N [--concurrency P]
 *         opens N connections, prints READY, holds them until a line arrives on
 *         stdin, then sends one echo on each to prove they still work.
 * --tls [--sni NAME] [--ca FILE] [--ciphersuites LIST]: every connection is wss://,
 *         TLS 1.3 through OpenSSL's libssl, a full handshake each time (no session is
 *         ever resumed); with --ca the server's certificate is verified against FILE
 *         for NAME. The TLS code runs only on connections that have an SSL object:
 *         one pointer test per read/write call, nothing per byte in the plain modes.
 * Protocol on stdout: "START", "STOP" (measurement window), "READY held=H failed=F",
 * and finally one JSON object with the results, the error counts, the client's own
 * CPU time in the window (getrusage) and, with --tls, what the first handshake
 * negotiated.
 * Usage: wsload MODE --port P [options]   (connects to 127.0.0.1 only) */
#include "wsutil.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>

enum { M_ECHO, M_BULK, M_CHURN, M_IDLE };
enum { S_FREE, S_CONNECTING, S_TLS, S_HANDSHAKE, S_OPEN, S_CLOSING, S_CLOSED };
enum { P_OPENING, P_WARMUP, P_MEASURE, P_HOLD, P_VERIFY, P_DONE };

typedef struct {
    int fd, state, idx, want_out, awaiting;
    int read_wants_write, write_wants_read;  /* TLS: the other direction must move first */
    int again;                               /* TLS: listed in tls_again */
    SSL *ssl;                                /* NULL on plain connections */
    uint64_t t_cycle, t_sent, t_op;
    uint64_t seq, frames_sent, frames_recv, bytes_sent, bytes_recv;
    char key[32];
    buf_t in, out;
} conn_t;

/* options */
static int mode, port = 0, nconns = 1, concurrency = 256;
static size_t msg_size = 64, frame_size = 65536;
static uint64_t total_bytes = 1ull << 30, window = 8u << 20;
static double hold_s = 120.0, warmup_s = 0.5, duration_s = 3.0, op_timeout_s = 10.0, deadline_s = 300.0;
static const char *path = "/";
static int use_tls;
static const char *sni = "localhost", *ca_file, *ciphersuites = "TLS_AES_128_GCM_SHA256";
static SSL_CTX *tls_ctx;
static char tls_info[160];  /* protocol, cipher and group of the first handshake */
static double cpu0, cpu1;    /* the client's own CPU seconds at START and STOP */

/* state */
static int ep, phase = P_OPENING;
static conn_t *conns;
static conn_t **by_fd;
static long max_fd;
static int opened, failed, opening, started, verified, held_at_ready;
static uint64_t t_phase, t_measure0, t_measure1, t_begin;
static uint64_t messages, bytes_done;
static uint32_t *lat;
static size_t nlat, caplat;
static unsigned char *pattern;
static size_t pattern_len;
static uint64_t errors;
#define MAX_KINDS 12
static struct { const char *kind; uint64_t n; } kinds[MAX_KINDS];

static void start_conn(conn_t *c);
static void stop_measure(uint64_t now);

static void note_error(const char *kind) {
    errors++;
    for (int i = 0; i < MAX_KINDS; i++) {
        if (!kinds[i].kind) { kinds[i].kind = kind; kinds[i].n = 1; return; }
        if (strcmp(kinds[i].kind, kind) == 0) { kinds[i].n++; return; }
    }
}

static void record_latency(uint64_t ns) {
    if (nlat == caplat) {
        caplat = caplat ? caplat * 2 : 65536;
        lat = realloc(lat, caplat * sizeof *lat);
    }
    lat[nlat++] = ns > 0xFFFFFFFFull ? 0xFFFFFFFFu : (uint32_t)ns;
}

static void say(const char *line) { printf("%s\n", line); fflush(stdout); }

static void conn_drop(conn_t *c) {
    if (c->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        by_fd[c->fd] = NULL;
    }
    if (c->state == S_OPEN || c->state == S_CLOSING) opened--;
    if (c->ssl) { SSL_free(c->ssl); c->ssl = NULL; }
    c->fd = -1;
    c->state = S_CLOSED;
    c->awaiting = 0;
    buf_free(&c->in);
    buf_free(&c->out);
}

/* A failure: counted once, the connection closed; churn loops start over. */
static void conn_fail(conn_t *c, const char *kind) {
    int was_opening = c->state == S_CONNECTING || c->state == S_TLS || c->state == S_HANDSHAKE;
    if (phase != P_DONE) note_error(kind);
    conn_drop(c);
    if (was_opening) { opening--; failed++; }
    if (mode == M_CHURN && (phase == P_WARMUP || phase == P_MEASURE)) start_conn(c);
}

static void set_events(conn_t *c, int in, int out) {
    struct epoll_event ev = {.events = (in ? EPOLLIN : 0) | (out ? EPOLLOUT : 0), .data.fd = c->fd};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* SSL_write over the out buffer: >0 written, 0 = try again later, -1 = failed.
 * Partial writes and a moving buffer are allowed (SSL_CTX_set_mode in tls_setup), so a
 * retry with a longer or moved buffer after WANT_WRITE is what OpenSSL expects. */
static ssize_t tls_write(conn_t *c, const void *p, size_t n) {
    ERR_clear_error();
    errno = 0;
    int r = SSL_write(c->ssl, p, n > 0x40000000 ? 0x40000000 : (int)n);
    if (r > 0) return r;
    switch (SSL_get_error(c->ssl, r)) {
    case SSL_ERROR_WANT_WRITE: return 0;
    case SSL_ERROR_WANT_READ: c->write_wants_read = 1; return 0;
    default: return -1;
    }
}

static int flush_out(conn_t *c) {
    while (buf_avail(&c->out)) {
        if (c->ssl) {
            ssize_t n = tls_write(c, c->out.d + c->out.off, buf_avail(&c->out));
            if (n < 0) return -1;
            if (n == 0) break;
            c->out.off += n;
            continue;
        }
        ssize_t n = write(c->fd, c->out.d + c->out.off, buf_avail(&c->out));
        if (n > 0) { c->out.off += n; continue; }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) break;
        return -1;
    }
    int pending = buf_avail(&c->out) > 0;
    if (!pending) buf_shrink_if_empty(&c->out);
    if (pending != c->want_out) { c->want_out = pending; set_events(c, 1, pending); }
    return 0;
}

static void start_conn(conn_t *c) {
    memset(&c->in, 0, sizeof c->in);
    memset(&c->out, 0, sizeof c->out);
    c->want_out = 0; c->awaiting = 0; c->seq = 0;
    c->frames_sent = c->frames_recv = c->bytes_sent = c->bytes_recv = 0;
    c->t_cycle = c->t_op = now_ns();
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0 || c->fd >= max_fd) {
        if (c->fd >= 0) close(c->fd);
        c->fd = -1; c->state = S_CLOSED; failed++;
        note_error("socket() failed");
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    by_fd[c->fd] = c;
    c->state = S_CONNECTING;
    opening++; started++;
    if (connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) {
        conn_fail(c, "connect failed");
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.fd = c->fd};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static void send_handshake(conn_t *c) {
    unsigned char raw[16];
    for (int i = 0; i < 16; i += 8) { uint64_t r = rng(); memcpy(raw + i, &r, 8); }
    base64(raw, 16, c->key);
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n", path, port, c->key);
    buf_append(&c->out, req, n);
    c->state = S_HANDSHAKE;
    c->want_out = -1;  /* force the events update in flush_out */
    if (flush_out(c) < 0) conn_fail(c, "write failed during handshake");
}

/* "TLSv1.3 TLS_AES_128_GCM_SHA256 X25519": what this connection negotiated. */
static void note_tls_info(SSL *ssl) {
    if (tls_info[0]) return;
    int nid = SSL_get_negotiated_group(ssl);
    const char *group = nid ? OBJ_nid2sn(nid & ~TLSEXT_nid_unknown) : "?";
    snprintf(tls_info, sizeof tls_info, "%s %s %s", SSL_get_version(ssl),
             SSL_get_cipher_name(ssl), group ? group : "?");
}

/* Drive SSL_connect; once done, send the HTTP upgrade over TLS. */
static void tls_step(conn_t *c) {
    ERR_clear_error();
    errno = 0;
    int r = SSL_connect(c->ssl);
    if (r == 1) { note_tls_info(c->ssl); send_handshake(c); return; }
    switch (SSL_get_error(c->ssl, r)) {
    case SSL_ERROR_WANT_READ: if (c->want_out) { c->want_out = 0; set_events(c, 1, 0); } return;
    case SSL_ERROR_WANT_WRITE: if (!c->want_out) { c->want_out = 1; set_events(c, 1, 1); } return;
    case SSL_ERROR_ZERO_RETURN: conn_fail(c, "eof during TLS handshake"); return;
    case SSL_ERROR_SYSCALL:
        conn_fail(c, ERR_peek_error() || errno ? "TLS handshake I/O error" : "eof during TLS handshake");
        return;
    default:
        conn_fail(c, SSL_get_verify_result(c->ssl) != X509_V_OK ? "TLS certificate not verified"
                                                                  : "TLS handshake failed");
    }
}

static void tls_begin(conn_t *c) {
    c->ssl = SSL_new(tls_ctx);
    if (!c->ssl || !SSL_set_fd(c->ssl, c->fd)) { conn_fail(c, "SSL_new failed"); return; }
    SSL_set_tlsext_host_name(c->ssl, sni);
    if (ca_file) SSL_set1_host(c->ssl, sni);
    c->state = S_TLS;
    c->want_out = 1;  /* connect() asked for EPOLLOUT: tls_step's first WANT_READ resets it */
    tls_step(c);
}

/* Append one masked frame whose payload is `p` (masked in the out buffer). */
static void queue_frame(conn_t *c, int opcode, const unsigned char *p, size_t n) {
    unsigned char h[14], key[4];
    uint32_t r = (uint32_t)rng();
    memcpy(key, &r, 4);
    size_t hl = ws_write_header(h, opcode, n, key);
    buf_append(&c->out, h, hl);
    buf_reserve(&c->out, n);
    unsigned char *dst = c->out.d + c->out.len;
    memcpy(dst, p, n);
    ws_mask(dst, n, key);
    c->out.len += n;
}

/* Echo payloads: sequence number and connection index, then pattern bytes. */
static void make_message(const conn_t *c, uint64_t seq, unsigned char *out) {
    memcpy(out, pattern + (seq * 7 + c->idx) % 4096, msg_size);
    if (msg_size >= 16) { memcpy(out, &seq, 8); uint64_t i = c->idx; memcpy(out + 8, &i, 8); }
}

static const unsigned char *bulk_frame(uint64_t k) { return pattern + (k * 61) % 4096; }

static void send_message(conn_t *c) {
    unsigned char m[65536 + 16];
    make_message(c, c->seq, m);
    queue_frame(c, 2, m, msg_size);
    c->awaiting = 1;
    c->t_sent = c->t_op = now_ns();
    if (flush_out(c) < 0) conn_fail(c, "write failed");
}

static void bulk_pump(conn_t *c) {
    uint64_t total_frames = (total_bytes + frame_size - 1) / frame_size;
    while (c->frames_sent < total_frames && c->bytes_sent - c->bytes_recv < window &&
           buf_avail(&c->out) < (1u << 20)) {
        uint64_t left = total_bytes - c->bytes_sent;
        size_t n = left < frame_size ? (size_t)left : frame_size;
        queue_frame(c, 2, bulk_frame(c->frames_sent), n);
        c->frames_sent++;
        c->bytes_sent += n;
    }
    if (flush_out(c) < 0) conn_fail(c, "write failed");
}

static void on_open(conn_t *c) {
    c->state = S_OPEN;
    opening--; opened++;
    c->t_op = now_ns();
    if (mode == M_CHURN) { send_message(c); return; }
}

static int check_handshake(conn_t *c) {
    unsigned char *p = c->in.d + c->in.off;
    size_t n = buf_avail(&c->in);
    unsigned char *end = memmem(p, n, "\r\n\r\n", 4);
    if (!end) { if (n > 16384) conn_fail(c, "handshake response too long"); return 0; }
    size_t hl = (size_t)(end - p) + 4;
    char head[16385];
    memcpy(head, p, hl < 16384 ? hl : 16384); head[hl < 16384 ? hl : 16384] = 0;
    if (strncmp(head, "HTTP/1.1 101", 12) != 0) {
        static char kinds_status[8][40];
        static int ns = 0;
        char k[40];
        snprintf(k, sizeof k, "handshake status %.3s", head + 9);
        for (int i = 0; i < ns; i++) if (!strcmp(kinds_status[i], k)) { conn_fail(c, kinds_status[i]); return -1; }
        if (ns < 8) { strcpy(kinds_status[ns], k); conn_fail(c, kinds_status[ns++]); }
        else conn_fail(c, "handshake status other");
        return -1;
    }
    char want[29];
    ws_accept(c->key, strlen(c->key), want);
    int ok = 0;
    for (char *q = head; (q = strchr(q, '\n')) != NULL; q++) {
        if (strncasecmp(q + 1, "sec-websocket-accept:", 21) == 0) {
            char *v = q + 22;
            while (*v == ' ') v++;
            ok = strncmp(v, want, 28) == 0;
        }
    }
    if (!ok) { conn_fail(c, "bad Sec-WebSocket-Accept"); return -1; }
    c->in.off += hl;
    on_open(c);
    return 1;
}

static void all_opened_check(void);

/* One complete server frame: verify it and move the workload on. */
static int on_frame(conn_t *c, const frame_t *f, const unsigned char *pl) {
    uint64_t now = now_ns();
    if (f->opcode == 8) {
        if (mode == M_CHURN && c->state == S_CLOSING) return 0;
        conn_fail(c, "unexpected close frame");
        return -1;
    }
    if (f->opcode == 9 || f->opcode == 10) return 0;
    if (mode == M_BULK) {
        if (f->len != (c->frames_recv + 1 == (total_bytes + frame_size - 1) / frame_size
                       ? total_bytes - c->frames_recv * frame_size : frame_size) ||
            memcmp(pl, bulk_frame(c->frames_recv), f->len) != 0) {
            conn_fail(c, "bulk payload mismatch");
            return -1;
        }
        c->frames_recv++;
        c->bytes_recv += f->len;
        c->t_op = now;
        if (c->bytes_recv == total_bytes) {
            bytes_done = total_bytes; messages = c->frames_recv;
            stop_measure(now);
            return -1;
        }
        bulk_pump(c);
        return 0;
    }
    unsigned char m[65536 + 16];
    make_message(c, c->seq, m);
    if (!c->awaiting || f->len != msg_size || memcmp(pl, m, msg_size) != 0) {
        conn_fail(c, "echo payload mismatch");
        return -1;
    }
    c->awaiting = 0;
    c->seq++;
    c->t_op = now;
    if (mode == M_ECHO) {
        if (phase == P_MEASURE) { messages++; record_latency(now - c->t_sent); }
        if (phase == P_WARMUP || phase == P_MEASURE) send_message(c);
    } else if (mode == M_CHURN) {
        static const unsigned char code[2] = {0x03, 0xE8};  /* 1000 */
        queue_frame(c, 8, code, 2);
        c->state = S_CLOSING;
        if (flush_out(c) < 0) { conn_fail(c, "write failed"); return -1; }
    } else if (mode == M_IDLE) {
        verified++;
    }
    return 0;
}

static void on_eof(conn_t *c) {
    if (mode == M_CHURN && c->state == S_CLOSING) {
        uint64_t now = now_ns();
        if (phase == P_MEASURE) { messages++; record_latency(now - c->t_cycle); }
        conn_drop(c);
        if (phase == P_WARMUP || phase == P_MEASURE) start_conn(c);
        return;
    }
    conn_fail(c, c->state == S_HANDSHAKE ? "eof during handshake" : "unexpected eof");
}

/* SSL_read into the in buffer's free space: >0 bytes, 0 = EOF (close_notify or the
 * peer's FIN), -1 = failed, -2 = nothing yet. */
static ssize_t tls_read(conn_t *c) {
    ERR_clear_error();
    size_t room = c->in.cap - c->in.len;
    errno = 0;
    int r = SSL_read(c->ssl, c->in.d + c->in.len, room > 0x40000000 ? 0x40000000 : (int)room);
    if (r > 0) return r;
    switch (SSL_get_error(c->ssl, r)) {
    case SSL_ERROR_WANT_READ: return -2;
    case SSL_ERROR_WANT_WRITE:
        c->read_wants_write = 1;
        if (!c->want_out) { c->want_out = 1; set_events(c, 1, 1); }
        return -2;
    case SSL_ERROR_ZERO_RETURN: return 0;
    case SSL_ERROR_SYSCALL: return ERR_peek_error() || errno ? -1 : 0;
    default: return -1;
    }
}

static void parse_frames(conn_t *c);

/* Connections whose bytes wait in OpenSSL's read-ahead buffer, which epoll cannot
 * see: the main loop reads them again before it sleeps. */
static conn_t **tls_again;
static int ntls_again;

/* TLS: read every record the socket holds (each SSL_read returns one record at
 * most), parsing as the buffer fills; bounded so one connection cannot starve the
 * others (what the socket still holds wakes epoll again; what OpenSSL has already
 * read ahead is remembered in tls_again). */
static void on_readable_tls(conn_t *c) {
    if (c->state == S_TLS) { tls_step(c); return; }
    int k = 0;
    for (; k < 64 && c->fd >= 0; k++) {
        if (buf_reserve(&c->in, 65536 + 16)) { conn_fail(c, "out of memory"); return; }
        ssize_t n = tls_read(c);
        if (n == -2) break;
        if (n < 0) { conn_fail(c, "TLS read error"); return; }
        if (n == 0) { on_eof(c); return; }
        c->in.len += n;
        if (c->state == S_HANDSHAKE) {
            int h = check_handshake(c);
            if (h < 0) return;
            if (h == 0) continue;  /* the 101's head spans records: read on */
        }
        parse_frames(c);
    }
    if (k == 64 && c->fd >= 0 && !c->again && SSL_has_pending(c->ssl)) {
        c->again = 1;
        tls_again[ntls_again++] = c;
    }
    if (c->fd >= 0 && c->write_wants_read && buf_avail(&c->out)) {
        c->write_wants_read = 0;
        if (flush_out(c) < 0) conn_fail(c, "write failed");
    }
}

static void on_readable(conn_t *c) {
    if (c->ssl) { on_readable_tls(c); return; }
    if (buf_reserve(&c->in, 65536 + 16)) { conn_fail(c, "out of memory"); return; }
    ssize_t n = read(c->fd, c->in.d + c->in.len, c->in.cap - c->in.len);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n < 0) { conn_fail(c, "read error"); return; }
    if (n == 0) { on_eof(c); return; }
    c->in.len += n;
    if (c->state == S_HANDSHAKE && check_handshake(c) <= 0) return;
    parse_frames(c);
}

/* Every complete server frame in the in buffer, in order. */
static void parse_frames(conn_t *c) {
    while (c->fd >= 0 && buf_avail(&c->in)) {
        frame_t f;
        unsigned char *p = c->in.d + c->in.off;
        int r = ws_parse_header(p, buf_avail(&c->in), &f);
        if (r < 0 || (r > 0 && f.masked)) { conn_fail(c, "bad frame from server"); return; }
        if (r == 0) break;
        if (buf_avail(&c->in) < f.hdr + f.len) {
            if (f.len > (64u << 20)) { conn_fail(c, "frame too large"); return; }
            buf_reserve(&c->in, f.hdr + f.len - buf_avail(&c->in));
            break;
        }
        c->in.off += f.hdr + f.len;
        if (on_frame(c, &f, p + f.hdr) < 0) return;
    }
    if (c->fd >= 0) buf_shrink_if_empty(&c->in);
}

static void on_writable(conn_t *c) {
    if (c->state == S_CONNECTING) {
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) { conn_fail(c, "connect refused or failed"); return; }
        if (use_tls) tls_begin(c);
        else send_handshake(c);
        return;
    }
    if (c->ssl) {
        if (c->state == S_TLS) { tls_step(c); return; }
        if (c->read_wants_write) { c->read_wants_write = 0; on_readable_tls(c); if (c->fd < 0) return; }
    }
    if (flush_out(c) < 0) { conn_fail(c, "write failed"); return; }
    if (mode == M_BULK && c->state == S_OPEN) bulk_pump(c);
}

static double self_cpu(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void stop_measure(uint64_t now) {
    t_measure1 = now;
    cpu1 = self_cpu();
    say("STOP");
    phase = P_DONE;
}

static void begin_measure(uint64_t now) {
    cpu0 = self_cpu();
    phase = P_MEASURE;
    t_measure0 = now;
    messages = 0; nlat = 0;
    say("START");
}

/* Called as connections finish opening: moves OPENING to the next phase. */
static void all_opened_check(void) {
    if (phase != P_OPENING || opening > 0 || started < nconns) return;
    uint64_t now = now_ns();
    if (mode == M_IDLE) {
        char line[96];
        held_at_ready = opened;
        snprintf(line, sizeof line, "READY held=%d failed=%d", opened, failed);
        say(line);
        phase = P_HOLD;
        t_phase = now;
        /* Only now listen to stdin: a line sent early must not be consumed unseen. */
        struct epoll_event sev = {.events = EPOLLIN, .data.fd = 0};
        epoll_ctl(ep, EPOLL_CTL_ADD, 0, &sev);
        return;
    }
    if (mode == M_BULK) {
        begin_measure(now);
        for (int i = 0; i < nconns; i++) if (conns[i].state == S_OPEN) bulk_pump(&conns[i]);
        if (opened == 0) phase = P_DONE;
        return;
    }
    phase = P_WARMUP;
    t_phase = now;
    if (mode == M_ECHO)
        for (int i = 0; i < nconns; i++) if (conns[i].state == S_OPEN) send_message(&conns[i]);
}

static void check_timeouts(uint64_t now) {
    uint64_t limit = (uint64_t)(op_timeout_s * 1e9);
    for (int i = 0; i < nconns; i++) {
        conn_t *c = &conns[i];
        if (c->fd < 0) continue;
        int busy = c->state != S_OPEN || c->awaiting || mode == M_BULK;
        if (phase == P_HOLD) busy = 0;
        if (busy && (int64_t)(now - c->t_op) > (int64_t)limit) conn_fail(c, "operation timed out");
    }
}

static void start_verify(void) {
    phase = P_VERIFY;
    verified = 0;
    for (int i = 0; i < nconns; i++)
        if (conns[i].state == S_OPEN) { conns[i].seq = 0; send_message(&conns[i]); }
}

static void on_stdin(void) {
    char buf[256];
    ssize_t n = read(0, buf, sizeof buf);
    (void)n;
    epoll_ctl(ep, EPOLL_CTL_DEL, 0, NULL);  /* one line is all it takes; EOF counts */
    if (phase == P_HOLD) start_verify();
}

static void advance(uint64_t now) {
    if (phase == P_HOLD && now - t_phase >= (uint64_t)(hold_s * 1e9)) {
        epoll_ctl(ep, EPOLL_CTL_DEL, 0, NULL);
        start_verify();
    }
    all_opened_check();
    if (phase == P_WARMUP && now - t_phase >= (uint64_t)(warmup_s * 1e9)) begin_measure(now);
    if (phase == P_MEASURE && (mode == M_ECHO || mode == M_CHURN) &&
        now - t_measure0 >= (uint64_t)(duration_s * 1e9)) {
        stop_measure(now);
    }
    if (phase == P_VERIFY && verified >= opened) phase = P_DONE;
    if (phase == P_MEASURE && mode == M_BULK && opened == 0) phase = P_DONE;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(double q) {
    if (!nlat) return 0;
    size_t i = (size_t)(q * (double)(nlat - 1) + 0.5);
    return lat[i] / 1000.0;
}

static void report(int timed_out) {
    static const char *names[] = {"echo", "bulk", "churn", "idle"};
    if (timed_out) note_error("run deadline exceeded");
    qsort(lat, nlat, sizeof *lat, cmp_u32);
    double el = t_measure1 > t_measure0 ? (t_measure1 - t_measure0) / 1e9 : 0;
    int held = mode == M_IDLE ? held_at_ready : 0;
    if (mode == M_IDLE && verified < opened)
        for (int i = verified; i < opened; i++) note_error("no echo after idle hold");
    printf("{\"mode\": \"%s\", \"conns\": %d, \"held\": %d, \"verified\": %d, "
           "\"messages\": %llu, \"bytes\": %llu, \"elapsed_s\": %.6f, "
           "\"p50_us\": %.2f, \"p99_us\": %.2f, \"max_us\": %.2f, \"client_cpu_s\": %.6f, "
           "\"tls\": \"%s\", \"errors\": %llu, \"error_kinds\": {",
           names[mode], nconns, held, verified, (unsigned long long)messages,
           (unsigned long long)bytes_done, el, pct(0.5), pct(0.99), pct(1.0),
           cpu1 > cpu0 ? cpu1 - cpu0 : 0.0, tls_info, (unsigned long long)errors);
    for (int i = 0; i < MAX_KINDS && kinds[i].kind; i++)
        printf("%s\"%s\": %llu", i ? ", " : "", kinds[i].kind, (unsigned long long)kinds[i].n);
    printf("}}\n");
    fflush(stdout);
}

static void usage(void) {
    fprintf(stderr, "usage: wsload echo|bulk|churn|idle --port P [--conns N] [--size S] "
                    "[--warmup S] [--duration S] [--bytes B] [--frame F] [--window W] "
                    "[--concurrency P] [--hold S] [--timeout S] [--deadline S] [--path P] "
                    "[--tls [--sni NAME] [--ca FILE] [--ciphersuites LIST]]\n");
    exit(2);
}

static void parse_args(int argc, char **argv) {
    if (argc < 2) usage();
    if (!strcmp(argv[1], "echo")) mode = M_ECHO;
    else if (!strcmp(argv[1], "bulk")) mode = M_BULK;
    else if (!strcmp(argv[1], "churn")) mode = M_CHURN;
    else if (!strcmp(argv[1], "idle")) mode = M_IDLE;
    else usage();
    for (int i = 2; i < argc; i++) {
        const char *k = argv[i];
        if (!strcmp(k, "--tls")) { use_tls = 1; continue; }
        if (i + 1 >= argc) usage();
        const char *v = argv[++i];
        if (!strcmp(k, "--port")) port = atoi(v);
        else if (!strcmp(k, "--conns")) nconns = atoi(v);
        else if (!strcmp(k, "--size")) msg_size = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--warmup")) warmup_s = atof(v);
        else if (!strcmp(k, "--duration")) duration_s = atof(v);
        else if (!strcmp(k, "--bytes")) total_bytes = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--frame")) frame_size = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--window")) window = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--concurrency")) concurrency = atoi(v);
        else if (!strcmp(k, "--timeout")) op_timeout_s = atof(v);
        else if (!strcmp(k, "--deadline")) deadline_s = atof(v);
        else if (!strcmp(k, "--path")) path = v;
        else if (!strcmp(k, "--hold")) hold_s = atof(v);
        else if (!strcmp(k, "--sni")) sni = v;
        else if (!strcmp(k, "--ca")) ca_file = v;
        else if (!strcmp(k, "--ciphersuites")) ciphersuites = v;
        else usage();
    }
    if (!port || nconns < 1 || msg_size < 1 || msg_size > 65536 || frame_size < 1 ||
        frame_size > (16u << 20) || total_bytes < 1) usage();
    if (mode == M_BULK) nconns = 1;
}

/* The client side of every wss:// connection: TLS 1.3 only, the given suites, no
 * session cache and no tickets asked for, so every handshake is a full one. */
static void tls_setup(void) {
    tls_ctx = SSL_CTX_new(TLS_client_method());
    if (!tls_ctx || !SSL_CTX_set_min_proto_version(tls_ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_ciphersuites(tls_ctx, ciphersuites)) {
        fprintf(stderr, "wsload: cannot set up TLS (ciphersuites %s)\n", ciphersuites);
        exit(2);
    }
    SSL_CTX_set_session_cache_mode(tls_ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(tls_ctx, SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* Read ahead: one read() per record (or more), not two (header, then body);
     * about 12% less client CPU in wss bulk. A larger buffer measured no better. */
    SSL_CTX_set_read_ahead(tls_ctx, 1);
    SSL_CTX_set_mode(tls_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (ca_file) {
        if (!SSL_CTX_load_verify_locations(tls_ctx, ca_file, NULL)) {
            fprintf(stderr, "wsload: cannot load CA file %s\n", ca_file);
            exit(2);
        }
        SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_PEER, NULL);
    }
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    if (use_tls) tls_setup();
    signal(SIGPIPE, SIG_IGN);
    max_fd = raise_nofile() + 16;
    rng_state ^= now_ns() ^ ((uint64_t)getpid() << 32);
    pattern_len = (frame_size > msg_size ? frame_size : msg_size) + 4096 + 16;
    pattern = malloc(pattern_len);
    for (size_t i = 0; i < pattern_len; i++) pattern[i] = (unsigned char)(rng() >> 24);
    conns = calloc(nconns, sizeof *conns);
    tls_again = calloc(nconns, sizeof *tls_again);
    by_fd = calloc(max_fd, sizeof *by_fd);
    ep = epoll_create1(EPOLL_CLOEXEC);
    for (int i = 0; i < nconns; i++) { conns[i].idx = i; conns[i].fd = -1; }
    t_begin = now_ns();
    if (mode == M_CHURN) { phase = P_WARMUP; t_phase = t_begin; }
    int first = mode == M_IDLE && concurrency < nconns ? concurrency : nconns;
    for (int i = 0; i < first; i++) start_conn(&conns[i]);
    struct epoll_event evs[512];
    uint64_t last_check = t_begin;
    int timed_out = 0;
    while (phase != P_DONE) {
        int n = epoll_wait(ep, evs, 512, ntls_again ? 0 : 20);
        /* In place: a connection listed again lands at an index already read. */
        int m = ntls_again;
        ntls_again = 0;
        for (int i = 0; i < m; i++) {
            conn_t *c = tls_again[i];
            c->again = 0;
            if (c->fd >= 0 && c->ssl) on_readable_tls(c);
        }
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == 0) { on_stdin(); continue; }
            conn_t *c = by_fd[fd];
            if (!c) continue;
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                if (c->state == S_CONNECTING) on_writable(c);
                else on_readable(c);
            }
            if (by_fd[fd] == c && (evs[i].events & EPOLLOUT)) on_writable(c);
        }
        if (mode == M_IDLE && phase == P_OPENING)
            while (started < nconns && opening < concurrency) start_conn(&conns[started]);
        uint64_t now = now_ns();
        if (now - last_check > 100000000ull) { check_timeouts(now); last_check = now; }
        advance(now);
        if (now - t_begin > (uint64_t)(deadline_s * 1e9)) { timed_out = 1; break; }
    }
    if (mode == M_ECHO || mode == M_CHURN || mode == M_BULK) {
        if (t_measure1 == 0) { t_measure1 = now_ns(); if (t_measure0 == 0) t_measure0 = t_measure1; }
    }
    report(timed_out);
    return 0;
}

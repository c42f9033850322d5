/* Shared helpers for the benchmark's C programs (wsload, wsecho): time, SHA-1 and
 * base64 for Sec-WebSocket-Accept (RFC 6455 section 4.2.2), masking, growable
 * buffers, WebSocket frame-header parsing, and the open-file soft limit.
 * Header-only on purpose: two small programs, compiled with one gcc command each. */
#ifndef WSUTIL_H
#define WSUTIL_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Raise the soft open-file limit to the hard one; the hard one is never touched. */
static inline long raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    return (long)rl.rlim_cur;
}

static inline int set_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL, 0);
    return fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* ---- SHA-1 (FIPS 180-1), enough for 60-byte handshake inputs ---------------- */
static inline uint32_t rol32(uint32_t v, int n) { return (v << n) | (v >> (32 - n)); }

static void sha1_block(uint32_t h[5], const unsigned char *p) {
    uint32_t w[80], a, b, c, d, e, f, k, t;
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 80; i++) w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    a = h[0]; b = h[1]; c = h[2]; d = h[3]; e = h[4];
    for (int i = 0; i < 80; i++) {
        if (i < 20) { f = (b & c) | (~b & d); k = 0x5A827999; }
        else if (i < 40) { f = b ^ c ^ d; k = 0x6ED9EBA1; }
        else if (i < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8F1BBCDC; }
        else { f = b ^ c ^ d; k = 0xCA62C1D6; }
        t = rol32(a, 5) + f + e + k + w[i];
        e = d; d = c; c = rol32(b, 30); b = a; a = t;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
}

static void sha1(const unsigned char *data, size_t len, unsigned char out[20]) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    unsigned char block[64];
    size_t i = 0;
    for (; i + 64 <= len; i += 64) sha1_block(h, data + i);
    size_t rem = len - i;
    memset(block, 0, 64);
    memcpy(block, data + i, rem);
    block[rem] = 0x80;
    if (rem >= 56) { sha1_block(h, block); memset(block, 0, 64); }
    uint64_t bits = (uint64_t)len * 8;
    for (int j = 0; j < 8; j++) block[63 - j] = (unsigned char)(bits >> (8 * j));
    sha1_block(h, block);
    for (int j = 0; j < 5; j++) {
        out[4 * j] = h[j] >> 24; out[4 * j + 1] = h[j] >> 16;
        out[4 * j + 2] = h[j] >> 8; out[4 * j + 3] = h[j];
    }
}

static size_t base64(const unsigned char *in, size_t len, char *out) {
    static const char tb[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len) v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len) v |= in[i + 2];
        out[o++] = tb[(v >> 18) & 63];
        out[o++] = tb[(v >> 12) & 63];
        out[o++] = i + 1 < len ? tb[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? tb[v & 63] : '=';
    }
    out[o] = 0;
    return o;
}

/* Sec-WebSocket-Accept for a key: base64(SHA-1(key + GUID)), 28 chars + NUL. */
static void ws_accept(const char *key, size_t keylen, char out[29]) {
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char buf[128], dig[20];
    if (keylen > 64) keylen = 64;
    memcpy(buf, key, keylen);
    memcpy(buf + keylen, guid, 36);
    sha1(buf, keylen + 36, dig);
    base64(dig, 20, out);
}

/* XOR with a 4-byte key, 8 bytes at a time (the client-to-server direction). */
static inline void ws_mask(unsigned char *p, size_t n, const unsigned char key[4]) {
    uint32_t k32;
    memcpy(&k32, key, 4);
    uint64_t k64 = ((uint64_t)k32 << 32) | k32;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        v ^= k64;
        memcpy(p + i, &v, 8);
    }
    for (; i < n; i++) p[i] ^= key[i & 3];
}

/* xorshift PRNG: mask keys and payload patterns, not security. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static inline uint64_t rng(void) {
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return rng_state;
}

/* ---- frame headers ------------------------------------------------------------ */
typedef struct {
    int fin, opcode, masked;
    unsigned char key[4];
    uint64_t len;
    size_t hdr;  /* header bytes, mask included */
} frame_t;

/* 1 = complete header parsed, 0 = need more bytes, -1 = protocol error. */
static inline int ws_parse_header(const unsigned char *p, size_t n, frame_t *f) {
    if (n < 2) return 0;
    f->fin = p[0] >> 7;
    f->opcode = p[0] & 15;
    if (p[0] & 0x70) return -1;
    f->masked = p[1] >> 7;
    uint64_t len = p[1] & 127;
    size_t h = 2;
    if (len == 126) {
        if (n < 4) return 0;
        len = (uint64_t)p[2] << 8 | p[3];
        h = 4;
    } else if (len == 127) {
        if (n < 10) return 0;
        len = 0;
        for (int i = 0; i < 8; i++) len = len << 8 | p[2 + i];
        h = 10;
    }
    if (f->masked) {
        if (n < h + 4) return 0;
        memcpy(f->key, p + h, 4);
        h += 4;
    }
    f->len = len;
    f->hdr = h;
    return 1;
}

/* Write a frame header; returns its length. mask_key NULL = unmasked. */
static inline size_t ws_write_header(unsigned char *p, int opcode, uint64_t len,
                                     const unsigned char *mask_key) {
    size_t h = 2;
    p[0] = 0x80 | (opcode & 15);
    unsigned char m = mask_key ? 0x80 : 0;
    if (len < 126) { p[1] = m | (unsigned char)len; }
    else if (len < 65536) { p[1] = m | 126; p[2] = len >> 8; p[3] = len & 255; h = 4; }
    else {
        p[1] = m | 127;
        for (int i = 0; i < 8; i++) p[2 + i] = (unsigned char)(len >> (8 * (7 - i)));
        h = 10;
    }
    if (mask_key) { memcpy(p + h, mask_key, 4); h += 4; }
    return h;
}

/* ---- growable byte buffer ----------------------------------------------------- */
typedef struct { unsigned char *d; size_t len, off, cap; } buf_t;

static inline int buf_reserve(buf_t *b, size_t extra) {
    if (b->off && b->off == b->len) { b->off = b->len = 0; }
    if (b->len + extra <= b->cap) return 0;
    if (b->off) {  /* compact before growing */
        memmove(b->d, b->d + b->off, b->len - b->off);
        b->len -= b->off; b->off = 0;
        if (b->len + extra <= b->cap) return 0;
    }
    size_t nc = b->cap ? b->cap : 1024;
    while (nc < b->len + extra) nc *= 2;
    unsigned char *nd = realloc(b->d, nc);
    if (!nd) return -1;
    b->d = nd; b->cap = nc;
    return 0;
}

static inline int buf_append(buf_t *b, const void *p, size_t n) {
    if (buf_reserve(b, n)) return -1;
    memcpy(b->d + b->len, p, n);
    b->len += n;
    return 0;
}

static inline size_t buf_avail(const buf_t *b) { return b->len - b->off; }

static inline void buf_free(buf_t *b) { free(b->d); b->d = NULL; b->len = b->off = b->cap = 0; }

/* Release memory of an emptied buffer, so idle connections cost only their struct. */
static inline void buf_shrink_if_empty(buf_t *b) {
    if (buf_avail(b) == 0) buf_free(b);
}

#endif

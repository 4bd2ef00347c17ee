#include "core/hash.h"

#include <string.h>

static inline uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

// For a fixed word this is a bijection of h, and for a fixed h one of the word: a single changed
// word always changes the state, and every later step keeps states apart.
static inline uint64_t mix(uint64_t h, uint64_t w) {
    h ^= w * 0x9e3779b97f4a7c15ULL;
    return rotl(h, 31) * 0xbf58476d1ce4e5b9ULL;
}

// splitmix64's finalizer: every input bit reaches every output bit
static uint64_t finish(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t hash_bytes(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, b + i, 8);
        h = mix(h, w);
    }
    if (i < n) {
        uint64_t w = 0;
        memcpy(&w, b + i, n - i);
        h = mix(h, w);
    }
    return finish(h ^ (uint64_t)n); // the length: "a" and "a\0" differ
}

uint64_t hash_u64(uint64_t h, uint64_t v) {
    return hash_bytes(h, &v, 8);
}

uint64_t hash_str(uint64_t h, const char *s) {
    return hash_bytes(h, s, strlen(s));
}

uint64_t hash_sampled(uint64_t h, const uint8_t *p, size_t n) {
    h = hash_u64(h, (uint64_t)n);
    if (n <= HASH_SAMPLE_MAX) return hash_bytes(h, p, n);
    const size_t blk = (size_t)1 << 20, nb = HASH_SAMPLE_MAX / blk;
    for (size_t i = 0; i < nb; i++) h = hash_bytes(h, p + (uint64_t)(n - blk) * i / (nb - 1), blk);
    return h;
}

void hash_begin(hash_state *s, uint64_t h) {
    s->h = h, s->n = 0;
}

void hash_feed(hash_state *s, const void *p, size_t n) {
    const uint8_t *b = p;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, b + i, 8);
        s->h = mix(s->h, w);
    }
    if (i < n) { // the tail: only in the last piece
        uint64_t w = 0;
        memcpy(&w, b + i, n - i);
        s->h = mix(s->h, w);
    }
    s->n += n;
}

uint64_t hash_end(const hash_state *s) {
    return finish(s->h ^ s->n);
}

// 64-bit content hashes for fingerprints: they tell a different file from the same one, they
// are not cryptographic (a crafted collision is easy; an accidental one is not).
#ifndef CTERP_CORE_HASH_H
#define CTERP_CORE_HASH_H

#include <stddef.h>
#include <stdint.h>

// Continues hash h over n bytes. A change in any one 8-byte word always changes the result.
uint64_t hash_bytes(uint64_t h, const void *p, size_t n);
uint64_t hash_u64(uint64_t h, uint64_t v);
uint64_t hash_str(uint64_t h, const char *s); // its length too: "ab","c" differs from "a","bc"

// hash_bytes over bytes that come in pieces (a file read in chunks): begin, feed every piece (each
// but the last a multiple of 8 bytes long), end; the result is hash_bytes of their concatenation.
typedef struct {
    uint64_t h, n;
} hash_state;
void hash_begin(hash_state *s, uint64_t h);
void hash_feed(hash_state *s, const void *p, size_t n);
uint64_t hash_end(const hash_state *s);

// Continues h over n and a large buffer: all of it up to HASH_SAMPLE_MAX bytes, else
// HASH_SAMPLE_MAX / 1 MiB blocks of 1 MiB spread evenly from the first byte to the last, so a
// huge file costs a bounded read (an edit that keeps the size and misses every block goes unseen).
#define HASH_SAMPLE_MAX ((size_t)64 << 20)
uint64_t hash_sampled(uint64_t h, const uint8_t *p, size_t n);

#endif

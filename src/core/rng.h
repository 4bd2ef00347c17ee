// Seeded pseudo-random numbers: xoshiro256** (fast, 256-bit state that checkpoints save),
// seeded through splitmix64. Same seed -> same stream on every machine.
#ifndef CTERP_CORE_RNG_H
#define CTERP_CORE_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
} rng_t;

void rng_seed(rng_t *r, uint64_t seed);
uint64_t rng_u64(rng_t *r);
// uniform in [0, 1) with 24 random bits (float) / 53 random bits (double)
float rng_uniform(rng_t *r);
double rng_uniform_d(rng_t *r);
// standard normal (Box-Muller, no cached second value so the state alone defines the stream)
float rng_normal(rng_t *r);
// uniform integer in [0, n), n > 0, without modulo bias
uint64_t rng_below(rng_t *r, uint64_t n);
// independent stream number `i` derived from `r` (does not advance r)
rng_t rng_split(const rng_t *r, uint64_t i);

#endif

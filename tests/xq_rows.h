// Rows for the integer-dot tests (test_quant, test_isa): random bytes in every field, so every
// weight value (Q8_0's -128, Q6_K's scale -128, all 6-bit scales and mins) occurs, with finite
// f16 scales in [2^-9, 2^-5) of either sign; and the n each type's kernels split differently.
#ifndef CTERP_TESTS_XQ_ROWS_H
#define CTERP_TESTS_XQ_ROWS_H

#include <math.h>
#include <stddef.h>
#include <string.h>

#include "core/half.h"
#include "core/rng.h"
#include "model/quant.h"

// the types with integer kernels
static const uint32_t XQ_TYPES[] = {
    GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1,   GGML_TYPE_Q3_K,
    GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K, GGML_TYPE_IQ4_NL, GGML_TYPE_IQ4_XS};

static inline void xq_put_f16(uint8_t *p, rng_t *r) {
    float v = ldexpf(1.0f + rng_uniform(r), -9 + (int)(4 * rng_uniform(r)));
    uint16_t h = f32_to_f16(rng_uniform(r) < 0.5f ? -v : v);
    memcpy(p, &h, 2);
}

// dst (quant_row_bytes(type, n)) <- random blocks of one of XQ_TYPES
static inline void xq_random_row(uint32_t type, uint8_t *dst, int64_t n, uint64_t seed) {
    rng_t r;
    rng_seed(&r, seed);
    size_t bytes = quant_row_bytes(type, n), bs = gguf_type_size(type);
    for (size_t i = 0; i < bytes; i++) dst[i] = (uint8_t)(rng_u64(&r) >> 56);
    for (size_t o = 0; o < bytes; o += bs) {
        if (type == GGML_TYPE_Q6_K)
            xq_put_f16(dst + o + offsetof(block_q6_K, d), &r);
        else if (type == GGML_TYPE_Q3_K)
            xq_put_f16(dst + o + offsetof(block_q3_K, d), &r);
        else
            xq_put_f16(dst + o, &r); // d first: Q8_0, Q4_0, Q4_K, Q5_K (dmin next), IQ4_*
        if (type == GGML_TYPE_Q4_K || type == GGML_TYPE_Q5_K || type == GGML_TYPE_Q5_1)
            xq_put_f16(dst + o + 2, &r); // dmin, m
    }
}

// block counts: 1..9 blocks of 32 and a few larger (the 2- and 4-block steps and their tails);
// 1..5, 8 and 12 super-blocks of 256 (3 and 8: the 768-wide model's rows of 768 and 2048; the
// matvecs take rows under 1 KB several at a time, of 1-2 KB one at a time)
static inline int xq_lengths(uint32_t type, int64_t *ns) {
    int c = 0;
    if (gguf_type_block(type) == 32) {
        for (int b = 1; b <= 9; b++) ns[c++] = 32 * b;
        ns[c++] = 32 * 31, ns[c++] = 32 * 96;
    } else {
        for (int b = 1; b <= 5; b++) ns[c++] = 256 * b;
        ns[c++] = 256 * 8, ns[c++] = 256 * 12;
    }
    return c;
}

#endif

#include "sae/bf16.h"
#include "sae/kernels.h"

#include <stdlib.h>
#include <string.h>

#include "kern/kern.h"

uint16_t bf16_from_f32(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); // quiet NaN
    if ((u & 0x7f800000u) == 0) return (uint16_t)((u >> 16) & 0x8000); // subnormal: +-0, as vcvtne2ps2bf16 (and vdpbf16ps reads them as 0)
    u += 0x7fffu + ((u >> 16) & 1); // round to nearest, ties to even
    return (uint16_t)(u >> 16);
}

float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

int64_t bf16_packed_x_words(int64_t B, int64_t D) { return B * ((D + 1) / 2); }
int64_t bf16_packed_w_words(int64_t N, int64_t D) {
    return (N + BF16_NR - 1) / BF16_NR * BF16_NR * ((D + 1) / 2);
}

static inline uint32_t pair(const float *row, int64_t D, int64_t q) {
    uint32_t lo = bf16_from_f32(row[2 * q]), hi = 2 * q + 1 < D ? bf16_from_f32(row[2 * q + 1]) : 0;
    return lo | hi << 16;
}

// Packing: the variant's (in vectors) where it has the bf16 GEMM, else value by value (the same bits).
void bf16_pack_x(uint32_t *xp, const float *x, int64_t B, int64_t D) {
    if (kern->bf16) {
        kern->bf16->pack_x(xp, x, B, D);
        return;
    }
    const int64_t P = (D + 1) / 2;
    for (int64_t t = 0; t < B; t++)
        for (int64_t q = 0; q < P; q++) xp[t * P + q] = pair(x + t * D, D, q);
}

void bf16_pack_w(uint32_t *wp, const float *W, int64_t N, int64_t D) {
    if (kern->bf16) {
        kern->bf16->pack_w(wp, W, N, D);
        return;
    }
    const int64_t P = (D + 1) / 2, npanel = (N + BF16_NR - 1) / BF16_NR;
    for (int64_t j = 0; j < npanel; j++)
        for (int64_t q = 0; q < P; q++)
            for (int64_t r = 0; r < BF16_NR; r++) {
                const int64_t n = j * BF16_NR + r;
                wp[(j * P + q) * BF16_NR + r] = n < N ? pair(W + n * D, D, q) : 0;
            }
}

int bf16_available(void) { return kern->bf16 != NULL; }

const char *bf16_why_unavailable(void) {
    if (kern->bf16) return "it is available";
    int n;
    const kern_variant *v = kern_variants(&n);
    for (int i = 0; i < n; i++)
        if (v[i].bf16 && v[i].runs_here()) return "the kernel variant in use (CTERP_ISA) has no bf16 GEMM";
    return "this CPU has no AVX-512 BF16";
}

// The kernels themselves: src/kern/bf16_avx512bf16.c.
void bf16_gemm(float *z, const uint32_t *xp, const uint32_t *wp, const float *bias, int64_t B,
               int64_t N, int64_t D) {
    kern->bf16->gemm(z, xp, wp, bias, B, N, D);
}

int bf16_gemm_topk(int32_t *idx, float *val, int *cnt, const uint32_t *xp, const uint32_t *wp,
                   const float *bias, const float *scale, int64_t B, int64_t N, int64_t D, int K) {
    return kern->bf16 ? kern->bf16->gemm_topk(idx, val, cnt, xp, wp, bias, scale, B, N, D, K) : -1;
}

void bf16_gemm_naive(float *z, const float *x, const float *W, const float *bias, int64_t B,
                     int64_t N, int64_t D) {
    for (int64_t t = 0; t < B; t++)
        for (int64_t n = 0; n < N; n++) {
            double s = 0;
            for (int64_t d = 0; d < D; d++)
                s += (double)bf16_to_f32(bf16_from_f32(x[t * D + d])) * bf16_to_f32(bf16_from_f32(W[n * D + d]));
            z[t * N + n] = (float)(s + bias[n]);
        }
}

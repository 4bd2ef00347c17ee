// SAE compute kernels: plain functions, outputs first, shapes as arguments. Each fast kernel
// keeps a naive twin (suffix _naive) that tests use as the oracle.
// Shapes: B tokens, D d_in, N d_sae, K active latents per token.
#ifndef CTERP_SAE_KERNELS_H
#define CTERP_SAE_KERNELS_H

#include <stddef.h>
#include <stdint.h>

// The (up to) K largest strictly positive entries of z (N), ties broken by the lowest index.
// Writes their indices and values in descending order of value; returns how many (<= K).
int topk_row(int32_t *idx, float *val, const float *z, int N, int K);
// The same over entries > floor (-INFINITY: all entries; NaN never qualifies).
int topk_select(int32_t *idx, float *val, const float *z, int N, int K, float floor);
int topk_row_naive(int32_t *idx, float *val, const float *z, int N, int K);
// The same set as topk_select(.., -INFINITY) (ties by the lowest index), in index order rather
// than value order: a quickselect of the K-th value, then one pass. scratch: N floats.
// For large K where the order does not matter (AuxK). NaN entries are never selected.
int topk_select_unsorted(int32_t *idx, float *val, const float *z, int N, int K, float *scratch);

// Dot product with 32 independent partial sums (vectorises without -ffast-math into four
// independent FMA chains, so it is not bound by FMA latency; the order is fixed, so results are
// deterministic).
static inline float dot_f32(const float *a, const float *b, int64_t n) {
    float acc[32] = {0};
    int64_t d = 0;
    for (; d + 32 <= n; d += 32)
        for (int j = 0; j < 32; j++) acc[j] += a[d + j] * b[d + j];
    for (; d + 8 <= n; d += 8)
        for (int j = 0; j < 8; j++) acc[j] += a[d + j] * b[d + j];
    for (int j = 0; j < 8; j++) acc[j] = (acc[j] + acc[j + 8]) + (acc[j + 16] + acc[j + 24]);
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; d < n; d++) s += a[d] * b[d];
    return s;
}

#endif

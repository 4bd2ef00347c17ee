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
// than value order: the K-th value by a binary search over its bits, then one pass. scratch: N floats.
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

// Sums of squares in double, in a fixed order: sixteen running sums (element i goes to sum
// i mod 16), added pairwise at the end. One running sum is a chain of dependent adds (latency
// bound: ~10 ms a step over the gradient rows at 768/24576); sixteen vectorize into two
// independent chains of 8-wide FMAs. Same bits for any thread count.
static inline double sum16_f64(double *s) {
    for (int w = 8; w > 0; w /= 2)
        for (int j = 0; j < w; j++) s[j] += s[j + w];
    return s[0];
}
// sum of x_i^2
static inline double sumsq_f64(const float *x, int64_t n) {
    double s[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) s[j] += (double)x[i + j] * x[i + j];
    for (int j = 0; i < n; i++, j++) s[j] += (double)x[i] * x[i];
    return sum16_f64(s);
}
// sum of (a_i - b_i)^2, the difference taken in double
static inline double sqdist_f64(const float *a, const float *b, int64_t n) {
    double s[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) {
            double r = (double)a[i + j] - b[i + j];
            s[j] += r * r;
        }
    for (int j = 0; i < n; i++, j++) {
        double r = (double)a[i] - b[i];
        s[j] += r * r;
    }
    return sum16_f64(s);
}

#endif

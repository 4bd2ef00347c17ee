// SAE compute kernels: plain functions, outputs first, shapes as arguments. Each fast kernel
// keeps a naive twin (suffix _naive) that tests use as the oracle.
// Shapes: B tokens, D d_in, N d_sae, K active latents per token.
#ifndef CTERP_SAE_KERNELS_H
#define CTERP_SAE_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "kern/kern.h"

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

// The vector primitives of the variant in use (src/kern/vec.inc: fixed summation orders, so
// every variant gives the same bits).
// sum a_i b_i, 32 partial sums
static inline float dot_f32(const float *a, const float *b, int64_t n) { return kern->vec->dot(a, b, n); }
// y += a x
static inline void axpy_f32(float *y, float a, const float *x, int64_t n) { kern->vec->axpy(y, a, x, n); }
// sum of x_i^2 in f64, sixteen partial sums
static inline double sumsq_f64(const float *x, int64_t n) { return kern->vec->sumsq(x, n); }
// sum of (a_i - b_i)^2, the difference taken in f64
static inline double sqdist_f64(const float *a, const float *b, int64_t n) { return kern->vec->sqdist(a, b, n); }

#endif

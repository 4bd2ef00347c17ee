// The row test_quant's round trip quantizes, and its error measure, shared with
// scripts/oracle/quant_ref.c, which measures ggml's own quantizers on the same row (the bounds in
// test_quant.c are those measurements plus a margin).
#ifndef CTERP_TEST_QUANT_TESTDATA_H
#define CTERP_TEST_QUANT_TESTDATA_H

#include <math.h>

#include "core/rng.h"

enum { QUANT_RT_N = 1024, QUANT_RT_SEG = 256 };

// x (QUANT_RT_N): standard normal, the first 256 scaled by 0.01, one outlier (6.0) inside a block;
// v (QUANT_RT_N): standard normal, the vector of the dot products.
static inline void quant_rt_data(float *x, float *v) {
    rng_t r;
    rng_seed(&r, 1);
    for (int i = 0; i < QUANT_RT_N; i++)
        x[i] = rng_normal(&r) * (i < 256 ? 0.01f : 1.0f), v[i] = rng_normal(&r);
    x[700] = 6.0f;
}

// The worst over 256-element segments of the rms error relative to the segment's rms (the
// segments' scales differ 100x).
static inline double quant_rt_error(const float *x, const float *y) {
    double worst = 0;
    for (int s = 0; s < QUANT_RT_N / QUANT_RT_SEG; s++) {
        double e = 0, ref = 0;
        for (int i = QUANT_RT_SEG * s; i < QUANT_RT_SEG * (s + 1); i++)
            e += (double)(y[i] - x[i]) * (y[i] - x[i]), ref += (double)x[i] * x[i];
        double rel = sqrt(e / ref);
        if (rel > worst) worst = rel;
    }
    return worst;
}

#endif

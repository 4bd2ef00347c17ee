// Optimiser and schedules: Adam with bias correction, learning-rate warm-up + decay, and the
// sparsity-coefficient warm-up.
#ifndef CTERP_TRAIN_OPTIM_H
#define CTERP_TRAIN_OPTIM_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "cterp/train.h"
#include "kern/kern.h"

// One Adam step (t = 1-based step count) on the gradient g * gscale (the clipping factor,
// applied here so that the gradient is read once). adam_coefs + adam_apply do it for one slice
// (serial); adam_update over n parameters in parallel. Both give the same bits per element.
// adam_coef is in kern/kern.h (the step itself is a kernel: src/kern/vec.inc).
adam_coef adam_coefs(float lr, float b1, float b2, float eps, int64_t t, float gscale);
static inline void adam_apply(float *p, const float *g, float *m, float *v, size_t n, const adam_coef *c) {
    kern->vec->adam(p, g, m, v, n, c);
}
void adam_update(float *p, const float *g, float gscale, float *m, float *v, size_t n, float lr,
                 float b1, float b2, float eps, int64_t t);

// Learning rate at 0-based `step` of `total`: linear warm-up lr*(step+1)/W over W steps, then
// cosine | linear | constant from lr to lr_end over lr_decay_steps (-1: the remaining steps),
// then lr_end (constant stays at lr).
double sched_lr(const cterp_train_config *c, int64_t step, int64_t total);

// Sparsity coefficient factor in [0, 1]: step / W over W = sparsity_warm_up_steps (-1: total).
double sched_sparsity(const cterp_train_config *c, int64_t step, int64_t total);

// Sum of squares of n floats in a fixed order (deterministic across runs), in f64.
double sumsq_det(const float *x, size_t n);

#endif

// Kernels by instruction set. The hot loops are written once, in portable C, as templates
// (src/kern/*.inc) and compiled once per ISA level, each in its own translation unit with its
// own flags (src/kern/<family>_<isa>.c; the flags are in CMakeLists.txt), plus hand-written
// kernels where intrinsics pay (bf16_avx512bf16.c; quant_avx2.c, quant_avx512.inc and
// quant_neon.c's integer dots). At start-up one variant is chosen from the
// CPU's features, or from CTERP_ISA, and every caller reaches the kernels through its tables.
// Adding an ISA: its <family>_<isa>.c files, one row in kern.c's table, one flags line in CMake.
//
// Every template loop has a fixed order of operations and no contraction into FMA
// (-ffp-contract=off), so the variants give the same bits; only their speed differs. The
// hand-written integer dots keep their portable twin's f32 order (quant.inc, "integer dots").
#ifndef CTERP_KERN_KERN_H
#define CTERP_KERN_KERN_H

#include <stddef.h>
#include <stdint.h>

// Adam's per-step constants (train/optim.h).
typedef struct {
    float b1, b2, eps, step, ic2, gscale;
} adam_coef;

// Vector primitives (f32 unless said).
typedef struct {
    // sum a_i b_i with 32 partial sums in a fixed order
    float (*dot)(const float *a, const float *b, int64_t n);
    // y += a x
    void (*axpy)(float *y, float a, const float *x, int64_t n);
    // sum x_i^2 and sum (a_i - b_i)^2 in f64, sixteen partial sums in a fixed order
    double (*sumsq)(const float *x, int64_t n);
    double (*sqdist)(const float *a, const float *b, int64_t n);
    // one Adam step on n parameters (serial; the caller splits the work)
    void (*adam)(float *p, const float *g, float *m, float *v, size_t n, const adam_coef *c);
    // the f32 multiply-add rate of this variant's vectors on all threads, GFLOP/s (cterp bench)
    double (*fma_peak)(void);
    // MLP activations in place, with a polynomial exp every variant vectorises to the same bits:
    // h = silu(h) * g, and h = gelu_tanh(h) * g (g NULL: times 1). Within 4 ulp-ish of libm.
    void (*silu_mul)(float *h, const float *g, int64_t n);
    void (*gelu_mul)(float *h, const float *g, int64_t n);
} kern_vec;

// Top-k selection (sae/kernels.h documents both).
typedef struct {
    int (*select)(int32_t *idx, float *val, const float *z, int N, int K, float floor);
    int (*select_unsorted)(int32_t *idx, float *val, const float *z, int N, int K, float *scratch);
} kern_topk;

// Rows of GGUF weights (model/quant.h documents them).
struct quant_xq_s;
typedef struct {
    void (*dequant_row)(uint32_t type, const void *row, float *y, int64_t n);
    float (*dot_row)(uint32_t type, const void *row, const float *x, int64_t n);
    void (*prepare_x)(const struct quant_xq_s *q); // fills q's arrays from q->x
    float (*dot_xq)(uint32_t type, const void *row, const struct quant_xq_s *q);
    // y[r] = dot_xq(type, W + r·row_bytes, q) for r < rows, the same bits (several rows a pass;
    // group: model/quant.h's QUANT_MV_*)
    void (*matvec_xq)(float *y, uint32_t type, const uint8_t *W, size_t row_bytes, int64_t rows,
                      const struct quant_xq_s *q, int group);
} kern_quant;

// The bf16 encoder GEMM (sae/bf16.h documents them); only variants with a bf16 dot product.
typedef struct {
    void (*pack_x)(uint32_t *xp, const float *x, int64_t B, int64_t D);
    void (*pack_w)(uint32_t *wp, const float *W, int64_t N, int64_t D);
    void (*gemm)(float *z, const uint32_t *xp, const uint32_t *wp, const float *bias, int64_t B,
                 int64_t N, int64_t D);
    int (*gemm_topk)(int32_t *idx, float *val, int *cnt, const uint32_t *xp, const uint32_t *wp,
                     const float *bias, const float *scale, int64_t B, int64_t N, int64_t D, int K);
} kern_bf16;

typedef struct {
    const char *name;         // as CTERP_ISA names it
    const char *what;         // the instruction sets, in words
    int (*runs_here)(void);   // this CPU (and OS) can run it
    const kern_vec *vec;
    const kern_topk *topk;
    const kern_quant *quant;
    const kern_bf16 *bf16;    // NULL: no bf16 GEMM on this variant
} kern_variant;

// The variant in use: never NULL (the generic one until start-up has chosen).
extern const kern_variant *kern;

// The variants this build has, best first (the last is "generic").
const kern_variant *kern_variants(int *n);

// Tests only: CPU features (core/platform.h) cleared here count as absent.
extern uint32_t kern_feature_mask;

#endif

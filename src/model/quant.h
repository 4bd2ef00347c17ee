// Tensor element types of GGUF weights: dequantization of rows to f32, a fused row·vector dot
// for single-token matvecs, and reference quantizers (used by tests and tools to write
// synthetic quantized GGUFs). Supported: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K.
// Blocks run along ne[0] (the input dimension), so a row of n elements is n/block blocks.
#ifndef CTERP_MODEL_QUANT_H
#define CTERP_MODEL_QUANT_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#include "cterp/error.h"
#include "io/gguf.h"

#define QK8_0 32
#define QK4_0 32
#define QK_K 256

// 8-bit: y[j] = qs[j]·d
typedef struct {
    uint16_t d; // f16
    int8_t qs[QK8_0];
} block_q8_0;
static_assert(sizeof(block_q8_0) == 34, "block_q8_0 layout");

// 4-bit: y[j] = ((qs[j]&15)-8)·d, y[j+16] = ((qs[j]>>4)-8)·d
typedef struct {
    uint16_t d; // f16
    uint8_t qs[QK4_0 / 2];
} block_q4_0;
static_assert(sizeof(block_q4_0) == 18, "block_q4_0 layout");

// 4-bit k-quant: 8 sub-blocks of 32 with 6-bit scales and mins packed in 12 bytes;
// y = d·sc·q - dmin·m. 4.5 bits per weight.
typedef struct {
    uint16_t d, dmin; // f16
    uint8_t scales[12];
    uint8_t qs[QK_K / 2];
} block_q4_K;
static_assert(sizeof(block_q4_K) == 144, "block_q4_K layout");

// 6-bit k-quant: 16 sub-blocks of 16 with int8 scales; y = d·sc·(q-32). d is LAST.
// 6.5625 bits per weight.
typedef struct {
    uint8_t ql[QK_K / 2]; // low 4 bits
    uint8_t qh[QK_K / 4]; // high 2 bits
    int8_t scales[QK_K / 16];
    uint16_t d; // f16
} block_q6_K;
static_assert(sizeof(block_q6_K) == 210, "block_q6_K layout");

// 1 if rows of `type` can be dequantized here.
int quant_supported(uint32_t type);

// Bytes of one row of n elements (n a multiple of the block size).
size_t quant_row_bytes(uint32_t type, int64_t n);

// y (n) <- row of `type` (n elements, n % block == 0). Caller checks quant_supported.
void quant_dequant_row(uint32_t type, const void *row, float *y, int64_t n);

// Σ_j row[j]·x[j] over n elements, accumulated in f32 per block then f64 across blocks.
float quant_dot_row(uint32_t type, const void *row, const float *x, int64_t n);

// dst (row bytes) <- x (n): reference quantizers (round to nearest, no search). Supported for
// every type quant_supported accepts.
void quant_quantize_row(uint32_t type, const float *x, void *dst, int64_t n);

#endif

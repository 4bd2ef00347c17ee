// Tensor element types of GGUF weights: dequantization of rows to f32, a fused row·vector dot
// for single-token matvecs, and reference quantizers (used by tests and tools to write
// synthetic quantized GGUFs). Supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K,
// Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS (quant_type_names). Block layouts and dequantization are
// ggml's (ggml/src/ggml-common.h, ggml-quants.c), bit for bit (tests/test_quant.c checks ggml's own
// output). Blocks run along ne[0] (the input dimension), so a row of n elements is n/block blocks.
#ifndef CTERP_MODEL_QUANT_H
#define CTERP_MODEL_QUANT_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#include "cterp/error.h"
#include "io/gguf.h"

#define QK8_0 32
#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK4_NL 32
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

// 4-bit with a min: y[j] = (qs[j]&15)·d + m, y[j+16] = (qs[j]>>4)·d + m. 5 bits per weight.
typedef struct {
    uint16_t d, m; // f16
    uint8_t qs[QK4_1 / 2];
} block_q4_1;
static_assert(sizeof(block_q4_1) == 20, "block_q4_1 layout");

// 5-bit: as Q4_0 with a fifth bit per weight in qh (bit j of the little-endian u32 for y[j]);
// y = (q-16)·d. 5.5 bits per weight.
typedef struct {
    uint16_t d; // f16
    uint8_t qh[4];
    uint8_t qs[QK5_0 / 2];
} block_q5_0;
static_assert(sizeof(block_q5_0) == 22, "block_q5_0 layout");

// 5-bit with a min: qh as Q5_0, y = q·d + m. 6 bits per weight.
typedef struct {
    uint16_t d, m; // f16
    uint8_t qh[4];
    uint8_t qs[QK5_1 / 2];
} block_q5_1;
static_assert(sizeof(block_q5_1) == 24, "block_q5_1 layout");

// 2-bit k-quant: 16 sub-blocks of 16, each with a 4-bit scale (low nibble) and 4-bit min (high);
// y = d·sc·q - dmin·m. d, dmin are LAST. 2.625 bits per weight.
typedef struct {
    uint8_t scales[QK_K / 16];
    uint8_t qs[QK_K / 4]; // 2 bits: 128-weight halves, 4 shifts of 32 bytes
    uint16_t d, dmin;     // f16
} block_q2_K;
static_assert(sizeof(block_q2_K) == 84, "block_q2_K layout");

// 3-bit k-quant: 16 sub-blocks of 16 with 6-bit signed scales (offset 32) packed in 12 bytes;
// q = low 2 bits - 4 unless the hmask bit is set; y = d·(sc-32)·q. 3.4375 bits per weight.
typedef struct {
    uint8_t hmask[QK_K / 8]; // high bit: weight j in byte j%32, bit j/32
    uint8_t qs[QK_K / 4];    // low 2 bits, laid out as Q2_K's
    uint8_t scales[12];
    uint16_t d; // f16
} block_q3_K;
static_assert(sizeof(block_q3_K) == 110, "block_q3_K layout");

// 4-bit k-quant: 8 sub-blocks of 32 with 6-bit scales and mins packed in 12 bytes;
// y = d·sc·q - dmin·m. 4.5 bits per weight.
typedef struct {
    uint16_t d, dmin; // f16
    uint8_t scales[12];
    uint8_t qs[QK_K / 2];
} block_q4_K;
static_assert(sizeof(block_q4_K) == 144, "block_q4_K layout");

// 5-bit k-quant: Q4_K's scales and mins, a fifth bit per weight in qh (weight 32c+l: bit c of
// qh[l]); y = d·sc·q - dmin·m. 5.5 bits per weight.
typedef struct {
    uint16_t d, dmin; // f16
    uint8_t scales[12];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
} block_q5_K;
static_assert(sizeof(block_q5_K) == 176, "block_q5_K layout");

// 6-bit k-quant: 16 sub-blocks of 16 with int8 scales; y = d·sc·(q-32). d is LAST.
// 6.5625 bits per weight.
typedef struct {
    uint8_t ql[QK_K / 2]; // low 4 bits
    uint8_t qh[QK_K / 4]; // high 2 bits
    int8_t scales[QK_K / 16];
    uint16_t d; // f16
} block_q6_K;
static_assert(sizeof(block_q6_K) == 210, "block_q6_K layout");

// Non-linear 4-bit: y[j] = d·kvalues_iq4nl[qs[j]&15], y[j+16] = d·kvalues_iq4nl[qs[j]>>4].
// 4.5 bits per weight.
typedef struct {
    uint16_t d; // f16
    uint8_t qs[QK4_NL / 2];
} block_iq4_nl;
static_assert(sizeof(block_iq4_nl) == 18, "block_iq4_nl layout");

// IQ4_NL's values in super-blocks: 8 sub-blocks of 32 with 6-bit scales (low 4 bits in scales_l,
// high 2 in scales_h), y = d·(ls-32)·kvalues_iq4nl[q]. 4.25 bits per weight.
typedef struct {
    uint16_t d; // f16
    uint16_t scales_h;
    uint8_t scales_l[QK_K / 64];
    uint8_t qs[QK_K / 2];
} block_iq4_xs;
static_assert(sizeof(block_iq4_xs) == 136, "block_iq4_xs layout");

// The 16 levels of IQ4_NL and IQ4_XS (ggml's kvalues_iq4nl).
extern const int8_t quant_iq4nl_values[16];

// 1 if rows of `type` can be dequantized here.
int quant_supported(uint32_t type);

// Bytes of one row of n elements (n a multiple of the block size).
size_t quant_row_bytes(uint32_t type, int64_t n);

// The supported types' names, "F32, F16, ..." (a static string, for error messages).
const char *quant_type_names(void);

// y (n) <- row of `type` (n elements, n % block == 0). Caller checks quant_supported.
void quant_dequant_row(uint32_t type, const void *row, float *y, int64_t n);

// Σ_j row[j]·x[j] over n elements, accumulated in f32 per block (per 256 elements for types with
// 32-element blocks and no kernel of their own) then f64 across blocks.
float quant_dot_row(uint32_t type, const void *row, const float *x, int64_t n);

// ---- integer dots: x prepared once, then dotted with many rows (the single-token matvec) ----
//
// quant_xq_prepare rounds x to 16 bits per block of 32: x_j ≈ x~_j = sx·X_j, X_j = 256·xh_j + xl_j
// with xh = round(127·x/amax) and xl = round(256·(127·x/amax − xh)) clamped to ±127 (amax the
// block's largest |x|, sx = amax/32512). |x~_j − x_j| <= amax/65024 (amax/32512 at the rare clamp;
// coarser where sx is subnormal), where llama.cpp's 8-bit x is off by up to amax/254.
// quant_dot_xq then dots a row with X in exact integer arithmetic (two 8-bit dot products:
// pmaddubsw, VNNI or sdot) and scales per block in f32, in one fixed order every kernel variant
// keeps (src/kern/quant.inc, "integer dots"). Q8_0, Q4_0, Q5_0, Q5_1, Q3_K, Q4_K, Q5_K, Q6_K,
// IQ4_NL and IQ4_XS have integer kernels (not Q4_1, Q2_K, BF16);
// the other types dot the f32 x with quant_dot_row. A block of x holding inf or NaN gives NaN.
typedef struct quant_xq_s {
    const float *x;   // (n) the f32 vector (the types without an integer kernel use it)
    int8_t *xh, *xl;  // (n) NULL when n % 32 != 0 (no quantized type has such rows)
    int32_t *xs4;     // (n/4) Σ X over each 4 consecutive values (offset corrections)
    float *sx, *xsum; // (n/32) the block's scale, and sx·Σ X over the block (the K-quants' mins)
    int64_t n;
} quant_xq;

// Bytes of scratch quant_xq_prepare needs for n values (at most 3.25 n + 384; 0 if n % 32 != 0).
size_t quant_xq_bytes(int64_t n);

// q <- x (n) prepared in buf (quant_xq_bytes(n), any alignment). x and buf must outlive q.
// buf NULL: x alone (q->xh NULL), for the types without an integer kernel (quant_has_xq).
void quant_xq_prepare(quant_xq *q, void *buf, const float *x, int64_t n);

// 1 if `type` has an integer kernel (above): only those read the prepared x.
int quant_has_xq(uint32_t type);

// Σ_j row[j]·x~[j] over q->n elements (x~ as above; x itself, by quant_dot_row, for the types
// without an integer kernel). So it differs from quant_dot_row by at most Σ_j |row_j|·amax_j/32512
// plus f32 rounding (test_quant: 1.6e-5 of Σ|row·x| on normal x with an outlier).
float quant_dot_xq(uint32_t type, const void *row, const quant_xq *q);

// y[r] = quant_dot_xq(type, W + r·row_bytes, q) for r < rows, bit for bit: the single-token
// matvec over a run of rows (W: rows rows of q->n elements, row_bytes apart). The kernels take
// several rows per pass over x, so each block of x is loaded once for all of them.
void quant_matvec_xq(float *y, uint32_t type, const void *W, size_t row_bytes, int64_t rows,
                     const quant_xq *q, int group);

// quant_matvec_xq's `group`: how the rows are read (the bits are the same): by their length, as
// measured on the development machines (AUTO), one at a time (ONE), or several side by side,
// sharing each block of x (SIDE: 4 under AVX-512, 2 under AVX2 and NEON; the portable variant
// reads them one at a time). The types quant_side_rows names only; the others ignore it.
enum { QUANT_MV_AUTO = 0, QUANT_MV_ONE = 1, QUANT_MV_SIDE = 2 };

// 1 if quant_matvec_xq may read rows of `type` side by side (Q8_0, Q4_K, Q5_K, Q6_K).
int quant_side_rows(uint32_t type);

// dst (row bytes) <- x (n): reference quantizers, round to nearest after ggml's quantize_row_*_ref
// (the k-quants' scale fits; IQ4_NL/IQ4_XS as ggml's quantize_iq4_* without an importance matrix;
// Q6_K without ggml's scale search, 0.3% more error). Every type quant_supported accepts.
void quant_quantize_row(uint32_t type, const float *x, void *dst, int64_t n);

#endif

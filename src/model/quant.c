#include "model/quant.h"

#include <math.h>
#include <string.h>
#if defined(__F16C__) && defined(__AVX__)
#include <immintrin.h>
#endif

#include "core/half.h"

int quant_supported(uint32_t type) {
    switch (type) {
    case GGML_TYPE_F32:
    case GGML_TYPE_F16:
    case GGML_TYPE_BF16:
    case GGML_TYPE_Q8_0:
    case GGML_TYPE_Q4_0:
    case GGML_TYPE_Q4_K:
    case GGML_TYPE_Q6_K:
        return 1;
    }
    return 0;
}

size_t quant_row_bytes(uint32_t type, int64_t n) {
    return (size_t)(n / gguf_type_block(type)) * (size_t)gguf_type_size(type);
}

// ---- dequantization (ggml's dequantize_row_* semantics) -----------------------------------

static void deq_q4_0(const block_q4_0 *b, float *y) {
    float d = f16_to_f32(b->d);
    for (int j = 0; j < QK4_0 / 2; j++) {
        y[j] = (float)((b->qs[j] & 15) - 8) * d;
        y[j + 16] = (float)((b->qs[j] >> 4) - 8) * d;
    }
}

static void scale_min_k4(int j, const uint8_t *s, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (uint8_t)((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4));
        *m = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

static void deq_q4_K(const block_q4_K *b, float *y) {
    float d = f16_to_f32(b->d), dmin = f16_to_f32(b->dmin);
    const uint8_t *q = b->qs;
    for (int c = 0; c < 4; c++, q += 32, y += 64) {
        uint8_t sc, m;
        scale_min_k4(2 * c, b->scales, &sc, &m);
        float d1 = d * sc, m1 = dmin * m;
        scale_min_k4(2 * c + 1, b->scales, &sc, &m);
        float d2 = d * sc, m2 = dmin * m;
        for (int l = 0; l < 32; l++) y[l] = d1 * (float)(q[l] & 0xF) - m1;
        for (int l = 0; l < 32; l++) y[32 + l] = d2 * (float)(q[l] >> 4) - m2;
    }
}

static void deq_q6_K(const block_q6_K *b, float *y) {
    float d = f16_to_f32(b->d);
    const uint8_t *ql = b->ql, *qh = b->qh;
    const int8_t *sc = b->scales;
    for (int h = 0; h < 2; h++, ql += 64, qh += 32, sc += 8, y += 128) {
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = (int)((ql[l] & 15) | (((qh[l] >> 0) & 3) << 4)) - 32;
            int q2 = (int)((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int q3 = (int)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            int q4 = (int)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * (float)sc[is] * (float)q1;
            y[l + 32] = d * (float)sc[is + 2] * (float)q2;
            y[l + 64] = d * (float)sc[is + 4] * (float)q3;
            y[l + 96] = d * (float)sc[is + 6] * (float)q4;
        }
    }
}

void quant_dequant_row(uint32_t type, const void *row, float *y, int64_t n) {
    const uint8_t *p = row;
    switch (type) {
    case GGML_TYPE_F32:
        memcpy(y, row, (size_t)n * 4);
        break;
    case GGML_TYPE_F16: {
        int64_t i = 0;
#if defined(__F16C__) && defined(__AVX__)
        // hardware conversion (exact, like f16_to_f32): 10x faster than the bit twiddling
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 2 * i))));
#endif
        for (; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            y[i] = f16_to_f32(h);
        }
        break;
    }
    case GGML_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            y[i] = bf16_to_f32(h);
        }
        break;
    // Blocks are read by value: rows inside a GGUF are only 1-byte aligned for odd block sizes.
    case GGML_TYPE_Q8_0: // int8 needs no alignment: read in place (the prefill's hot loop)
        for (int64_t i = 0; i < n / QK8_0; i++) {
            const uint8_t *b = p + i * sizeof(block_q8_0);
            uint16_t dh;
            memcpy(&dh, b, 2);
            float d = f16_to_f32(dh);
            const int8_t *restrict q = (const int8_t *)(b + 2);
            float *restrict yo = y + i * QK8_0; // int8 may alias float: promise it does not
            for (int j = 0; j < QK8_0; j++) yo[j] = (float)q[j] * d;
        }
        break;
    case GGML_TYPE_Q4_0:
        for (int64_t i = 0; i < n / QK4_0; i++) {
            block_q4_0 b;
            memcpy(&b, p + i * sizeof b, sizeof b);
            deq_q4_0(&b, y + i * QK4_0);
        }
        break;
    case GGML_TYPE_Q4_K:
        for (int64_t i = 0; i < n / QK_K; i++) {
            block_q4_K b;
            memcpy(&b, p + i * sizeof b, sizeof b);
            deq_q4_K(&b, y + i * QK_K);
        }
        break;
    case GGML_TYPE_Q6_K:
        for (int64_t i = 0; i < n / QK_K; i++) {
            block_q6_K b;
            memcpy(&b, p + i * sizeof b, sizeof b);
            deq_q6_K(&b, y + i * QK_K);
        }
        break;
    default:
        memset(y, 0, (size_t)n * 4);
        break; // callers check quant_supported first
    }
}

// 8 independent accumulators so the compiler can vectorize without -ffast-math.
static float dot_f32(const float *a, const float *b, int64_t n) {
    float acc[8] = {0};
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; k++) acc[k] += a[j + k] * b[j + k];
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; j < n; j++) s += a[j] * b[j];
    return s;
}

// Q8_0 and Q4_0 dots without a dequantized copy: this is the single-token decode's hot loop.
static float dot_q8_0(const uint8_t *row, const float *x, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n / QK8_0; i++, row += sizeof(block_q8_0), x += QK8_0) {
        uint16_t dh;
        memcpy(&dh, row, 2);
        const int8_t *q = (const int8_t *)(row + 2);
        float acc[8] = {0};
        for (int j = 0; j < QK8_0; j += 8)
            for (int k = 0; k < 8; k++) acc[k] += (float)q[j + k] * x[j + k];
        float b = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
        s += (double)(f16_to_f32(dh) * b);
    }
    return (float)s;
}

static float dot_q4_0(const uint8_t *row, const float *x, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n / QK4_0; i++, row += sizeof(block_q4_0), x += QK4_0) {
        uint16_t dh;
        memcpy(&dh, row, 2);
        const uint8_t *q = row + 2;
        float acc[8] = {0};
        for (int j = 0; j < 16; j += 8)
            for (int k = 0; k < 8; k++)
                acc[k] += (float)((q[j + k] & 15) - 8) * x[j + k] +
                          (float)((q[j + k] >> 4) - 8) * x[j + k + 16];
        float b = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
        s += (double)(f16_to_f32(dh) * b);
    }
    return (float)s;
}

float quant_dot_row(uint32_t type, const void *row, const float *x, int64_t n) {
    if (type == GGML_TYPE_F32 && ((uintptr_t)row & 3) == 0) return dot_f32(row, x, n);
    if (type == GGML_TYPE_Q8_0) return dot_q8_0(row, x, n);
    if (type == GGML_TYPE_Q4_0) return dot_q4_0(row, x, n);
    int64_t blk = gguf_type_block(type);
    int64_t chunk = blk > 1 ? blk : 256; // dequantize a block (or 256 elements) at a time
    size_t chunk_bytes = quant_row_bytes(type, chunk);
    float tmp[QK_K];
    double s = 0;
    const uint8_t *p = row;
    for (int64_t i = 0; i < n; i += chunk) {
        int64_t m = n - i < chunk ? n - i : chunk;
        quant_dequant_row(type, p + (size_t)(i / chunk) * chunk_bytes, tmp, m);
        s += dot_f32(tmp, x + i, m);
    }
    return (float)s;
}

// ---- reference quantizers -----------------------------------------------------------------

static int nearest(float x) {
    return (int)lrintf(x);
}

static void quant_q8_0(const float *x, block_q8_0 *b) {
    float amax = 0;
    for (int j = 0; j < QK8_0; j++) amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
    b->d = f32_to_f16(d);
    for (int j = 0; j < QK8_0; j++) b->qs[j] = (int8_t)nearest(x[j] * id);
}

// As ggml: the value of largest magnitude maps to -8, so d = max / -8 and q spans 0..15.
static void quant_q4_0(const float *x, block_q4_0 *b) {
    float amax = 0, max = 0;
    for (int j = 0; j < QK4_0; j++)
        if (fabsf(x[j]) > amax) amax = fabsf(x[j]), max = x[j];
    float d = max / -8.0f, id = d ? 1.0f / d : 0.0f;
    b->d = f32_to_f16(d);
    for (int j = 0; j < QK4_0 / 2; j++) {
        int q0 = (int)fminf(15.0f, x[j] * id + 8.5f);
        int q1 = (int)fminf(15.0f, x[j + 16] * id + 8.5f);
        if (q0 < 0) q0 = 0;
        if (q1 < 0) q1 = 0;
        b->qs[j] = (uint8_t)(q0 | (q1 << 4));
    }
}

static void quant_q4_K(const float *x, block_q4_K *b) {
    float scale[8], minv[8], max_scale = 0, max_min = 0;
    for (int s = 0; s < 8; s++) {
        float lo = x[32 * s], hi = x[32 * s];
        for (int l = 1; l < 32; l++) lo = fminf(lo, x[32 * s + l]), hi = fmaxf(hi, x[32 * s + l]);
        if (lo > 0) lo = 0; // y = d·sc·q - dmin·m needs m >= 0
        scale[s] = (hi - lo) / 15.0f;
        minv[s] = -lo;
        max_scale = fmaxf(max_scale, scale[s]);
        max_min = fmaxf(max_min, minv[s]);
    }
    float d = max_scale / 63.0f, dmin = max_min / 63.0f;
    b->d = f32_to_f16(d);
    b->dmin = f32_to_f16(dmin);
    // use the rounded f16 values so the 6-bit scales are relative to what is stored
    d = f16_to_f32(b->d);
    dmin = f16_to_f32(b->dmin);
    uint8_t ls[8], lm[8];
    memset(b->scales, 0, sizeof b->scales);
    for (int s = 0; s < 8; s++) {
        int a = d ? nearest(scale[s] / d) : 0, m = dmin ? nearest(minv[s] / dmin) : 0;
        ls[s] = (uint8_t)(a < 0 ? 0 : a > 63 ? 63 : a);
        lm[s] = (uint8_t)(m < 0 ? 0 : m > 63 ? 63 : m);
        if (s < 4) {
            b->scales[s] |= ls[s];
            b->scales[s + 4] |= lm[s];
        } else {
            b->scales[s + 4] = (uint8_t)((ls[s] & 0xF) | ((lm[s] & 0xF) << 4));
            b->scales[s - 4] |= (uint8_t)((ls[s] >> 4) << 6);
            b->scales[s] |= (uint8_t)((lm[s] >> 4) << 6);
        }
    }
    uint8_t L[QK_K];
    for (int s = 0; s < 8; s++) {
        float ds = d * ls[s], ms = dmin * lm[s];
        for (int l = 0; l < 32; l++) {
            int q = ds ? nearest((x[32 * s + l] + ms) / ds) : 0;
            L[32 * s + l] = (uint8_t)(q < 0 ? 0 : q > 15 ? 15 : q);
        }
    }
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++)
            b->qs[32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
}

static void quant_q6_K(const float *x, block_q6_K *b) {
    float scale[16], amax_scale = 0;
    for (int s = 0; s < 16; s++) {
        float amax = 0, max = 0;
        for (int l = 0; l < 16; l++)
            if (fabsf(x[16 * s + l]) > amax) amax = fabsf(x[16 * s + l]), max = x[16 * s + l];
        scale[s] = max / -32.0f; // largest magnitude -> -32, like ggml's make_qx_quants start
        if (fabsf(scale[s]) > fabsf(amax_scale)) amax_scale = scale[s];
    }
    float d = amax_scale / -128.0f;
    b->d = f32_to_f16(d);
    d = f16_to_f32(b->d);
    uint8_t L[QK_K];
    for (int s = 0; s < 16; s++) {
        int sc = d ? nearest(scale[s] / d) : 0;
        sc = sc < -128 ? -128 : sc > 127 ? 127 : sc;
        b->scales[s] = (int8_t)sc;
        float ds = d * (float)sc;
        for (int l = 0; l < 16; l++) {
            int q = ds ? nearest(x[16 * s + l] / ds) : 0;
            q = q < -32 ? -32 : q > 31 ? 31 : q;
            L[16 * s + l] = (uint8_t)(q + 32);
        }
    }
    uint8_t *ql = b->ql, *qh = b->qh;
    for (int j = 0; j < QK_K; j += 128, ql += 64, qh += 32)
        for (int l = 0; l < 32; l++) {
            uint8_t q1 = L[j + l], q2 = L[j + l + 32], q3 = L[j + l + 64], q4 = L[j + l + 96];
            ql[l] = (uint8_t)((q1 & 0xF) | ((q3 & 0xF) << 4));
            ql[l + 32] = (uint8_t)((q2 & 0xF) | ((q4 & 0xF) << 4));
            qh[l] = (uint8_t)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
        }
}

void quant_quantize_row(uint32_t type, const float *x, void *dst, int64_t n) {
    uint8_t *p = dst;
    switch (type) {
    case GGML_TYPE_F32:
        memcpy(dst, x, (size_t)n * 4);
        break;
    case GGML_TYPE_F16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = f32_to_f16(x[i]);
            memcpy(p + 2 * i, &h, 2);
        }
        break;
    case GGML_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = f32_to_bf16(x[i]);
            memcpy(p + 2 * i, &h, 2);
        }
        break;
    case GGML_TYPE_Q8_0:
        for (int64_t i = 0; i < n / QK8_0; i++) {
            block_q8_0 b;
            quant_q8_0(x + i * QK8_0, &b);
            memcpy(p + i * sizeof b, &b, sizeof b);
        }
        break;
    case GGML_TYPE_Q4_0:
        for (int64_t i = 0; i < n / QK4_0; i++) {
            block_q4_0 b;
            quant_q4_0(x + i * QK4_0, &b);
            memcpy(p + i * sizeof b, &b, sizeof b);
        }
        break;
    case GGML_TYPE_Q4_K:
        for (int64_t i = 0; i < n / QK_K; i++) {
            block_q4_K b;
            quant_q4_K(x + i * QK_K, &b);
            memcpy(p + i * sizeof b, &b, sizeof b);
        }
        break;
    case GGML_TYPE_Q6_K:
        for (int64_t i = 0; i < n / QK_K; i++) {
            block_q6_K b;
            quant_q6_K(x + i * QK_K, &b);
            memcpy(p + i * sizeof b, &b, sizeof b);
        }
        break;
    }
}

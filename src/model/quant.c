#include "model/quant.h"

#include <math.h>
#include <string.h>

#include "core/half.h"
#include "kern/kern.h"

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

// ---- dequantization and dots: kernels (src/kern/quant.inc, one compile per ISA) ----------

void quant_dequant_row(uint32_t type, const void *row, float *y, int64_t n) {
    kern->quant->dequant_row(type, row, y, n);
}

float quant_dot_row(uint32_t type, const void *row, const float *x, int64_t n) {
    return kern->quant->dot_row(type, row, x, n);
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

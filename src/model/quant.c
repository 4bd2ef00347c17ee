#include "model/quant.h"

#include <math.h>
#include <string.h>

#include "core/half.h"
#include "kern/kern.h"

// The supported types, in the order quant_type_names lists them.
static const uint32_t SUPPORTED[] = {
    GGML_TYPE_F32,  GGML_TYPE_F16,  GGML_TYPE_BF16, GGML_TYPE_Q8_0,   GGML_TYPE_Q4_0,
    GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q2_K,   GGML_TYPE_Q3_K,
    GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K, GGML_TYPE_IQ4_NL, GGML_TYPE_IQ4_XS};
enum { N_SUPPORTED = sizeof SUPPORTED / sizeof SUPPORTED[0] };

const int8_t quant_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                       1,    13,   25,  38,  53,  69,  89,  113};

int quant_supported(uint32_t type) {
    for (int i = 0; i < N_SUPPORTED; i++)
        if (SUPPORTED[i] == type) return 1;
    return 0;
}

const char *quant_type_names(void) {
    // test_quant checks it against SUPPORTED and gguf_type_name
    return "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, "
           "IQ4_XS";
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

// The prepared vector's arrays, each on a 64-byte boundary.
static size_t xq_layout(quant_xq *q, uint8_t *buf, int64_t n) {
    const size_t sizes[5] = {(size_t)n, (size_t)n, (size_t)n, (size_t)n / 8, (size_t)n / 8};
    void *at[5];
    uint8_t *base = buf ? (uint8_t *)(((uintptr_t)buf + 63) & ~(uintptr_t)63) : NULL;
    size_t off = 0;
    for (int i = 0; i < 5; i++) {
        at[i] = base ? base + off : NULL;
        off += (sizes[i] + 63) & ~(size_t)63;
    }
    if (q) {
        q->xh = at[0], q->xl = at[1], q->xs4 = at[2], q->sx = at[3], q->xsum = at[4];
    }
    return off + 63;
}

size_t quant_xq_bytes(int64_t n) {
    return n > 0 && n % 32 == 0 ? xq_layout(NULL, NULL, n) : 0;
}

void quant_xq_prepare(quant_xq *q, void *buf, const float *x, int64_t n) {
    memset(q, 0, sizeof *q);
    q->x = x, q->n = n;
    if (!buf || n <= 0 || n % 32) return;
    xq_layout(q, buf, n);
    kern->quant->prepare_x(q);
}

float quant_dot_xq(uint32_t type, const void *row, const quant_xq *q) {
    return kern->quant->dot_xq(type, row, q);
}

int quant_has_xq(uint32_t type) {
    return type == GGML_TYPE_Q8_0 || type == GGML_TYPE_Q4_0 || type == GGML_TYPE_Q5_0 ||
           type == GGML_TYPE_Q5_1 || type == GGML_TYPE_Q3_K ||
           type == GGML_TYPE_Q4_K ||
           type == GGML_TYPE_Q5_K || type == GGML_TYPE_Q6_K || type == GGML_TYPE_IQ4_NL ||
           type == GGML_TYPE_IQ4_XS;
}

int quant_side_rows(uint32_t type) {
    return type == GGML_TYPE_Q8_0 || type == GGML_TYPE_Q4_K || type == GGML_TYPE_Q5_K ||
           type == GGML_TYPE_Q6_K;
}

void quant_matvec_xq(float *y, uint32_t type, const void *W, size_t row_bytes, int64_t rows,
                     const quant_xq *q, int group) {
    kern->quant->matvec_xq(y, type, W, row_bytes, rows, q, group);
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

static int clampi(int v, int lo, int hi) {
    return v < lo ? lo : v > hi ? hi : v;
}

// Q4_0 / Q5_0, as ggml: the value of largest magnitude maps to -h (h = 8 or 16), so d = max / -h
// and L[j] = q + h spans 0..2h-1.
static uint16_t quant_absmax(const float *x, int n, int h, uint8_t *L) {
    float amax = 0, max = 0;
    for (int j = 0; j < n; j++)
        if (fabsf(x[j]) > amax) amax = fabsf(x[j]), max = x[j];
    float d = max / (float)-h, id = d ? 1.0f / d : 0.0f;
    for (int j = 0; j < n; j++)
        L[j] = (uint8_t)clampi((int)fminf((float)(2 * h - 1), x[j] * id + (float)h + 0.5f), 0,
                               2 * h - 1);
    return f32_to_f16(d);
}

// Q4_1 / Q5_1, as ggml: d = (max - min) / nmax, m = min, L[j] = round((x - min) / d).
static void quant_minmax(const float *x, int n, int nmax, uint16_t *d16, uint16_t *m16,
                         uint8_t *L) {
    float lo = x[0], hi = x[0];
    for (int j = 1; j < n; j++) lo = fminf(lo, x[j]), hi = fmaxf(hi, x[j]);
    float d = (hi - lo) / (float)nmax, id = d ? 1.0f / d : 0.0f;
    *d16 = f32_to_f16(d);
    *m16 = f32_to_f16(lo);
    for (int j = 0; j < n; j++) L[j] = (uint8_t)clampi((int)((x[j] - lo) * id + 0.5f), 0, nmax);
}

static void quant_q4_0(const float *x, block_q4_0 *b) {
    uint8_t L[QK4_0];
    b->d = quant_absmax(x, QK4_0, 8, L);
    for (int j = 0; j < QK4_0 / 2; j++) b->qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
}

static void quant_q4_1(const float *x, block_q4_1 *b) {
    uint8_t L[QK4_1];
    quant_minmax(x, QK4_1, 15, &b->d, &b->m, L);
    for (int j = 0; j < QK4_1 / 2; j++) b->qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
}

// Q5_0 / Q5_1's packing: low nibbles as Q4_0, the fifth bit of L[j] in bit j of qh
static void pack_q5(const uint8_t *L, uint8_t *qs, uint8_t qh[4]) {
    uint32_t h = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((L[j] & 15) | ((L[j + 16] & 15) << 4));
        h |= (uint32_t)(L[j] >> 4) << j | (uint32_t)(L[j + 16] >> 4) << (j + 16);
    }
    memcpy(qh, &h, 4);
}

static void quant_q5_0(const float *x, block_q5_0 *b) {
    uint8_t L[QK5_0];
    b->d = quant_absmax(x, QK5_0, 16, L);
    pack_q5(L, b->qs, b->qh);
}

static void quant_q5_1(const float *x, block_q5_1 *b) {
    uint8_t L[QK5_1];
    quant_minmax(x, QK5_1, 31, &b->d, &b->m, L);
    pack_q5(L, b->qs, b->qh);
}

// Q4_K / Q5_K: 8 six-bit scales ls and mins lm into 12 bytes (the inverse of scale_min_k4)
static void pack_scales_k4(uint8_t *scales, const uint8_t *ls, const uint8_t *lm) {
    memset(scales, 0, 12);
    for (int s = 0; s < 8; s++) {
        if (s < 4) {
            scales[s] |= ls[s];
            scales[s + 4] |= lm[s];
        } else {
            scales[s + 4] = (uint8_t)((ls[s] & 0xF) | ((lm[s] & 0xF) << 4));
            scales[s - 4] |= (uint8_t)((ls[s] >> 4) << 6);
            scales[s] |= (uint8_t)((lm[s] >> 4) << 6);
        }
    }
}

// ggml's make_qkx2_quants: y = scale·L - min with L in 0..nmax, min >= 0, chosen by weighted
// least squares over nstep+1 trial inverse scales (nmax + rmin + rdelta·i) / (max - min).
// Returns the scale; *min_out gets the min. Weighted squared error, or absolute with use_mad.
static float quant_scale_min(const float *x, const float *w, int n, int nmax, uint8_t *L,
                             float *min_out, float rmin, float rdelta, int nstep, int use_mad) {
    float lo = x[0], hi = x[0], sum_w = w[0], sum_x = w[0] * x[0];
    for (int i = 1; i < n; i++) {
        lo = fminf(lo, x[i]), hi = fmaxf(hi, x[i]);
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (lo > 0) lo = 0;
    if (hi == lo) {
        memset(L, 0, (size_t)n);
        *min_out = -lo;
        return 0.0f;
    }
    float iscale = (float)nmax / (hi - lo), scale = 1.0f / iscale, best = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)clampi(nearest(iscale * (x[i] - lo)), 0, nmax);
        float diff = scale * L[i] + lo - x[i];
        best += w[i] * (use_mad ? fabsf(diff) : diff * diff);
    }
    uint8_t Laux[32];
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (hi - lo);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = clampi(nearest(iscale * (x[i] - lo)), 0, nmax);
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * (float)l;
            sum_l2 += w[i] * (float)(l * l);
            sum_xl += w[i] * (float)l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D <= 0) continue;
        float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
        float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
        if (this_min > 0) this_min = 0, this_scale = sum_xl / sum_l2;
        float err = 0;
        for (int i = 0; i < n; i++) {
            float diff = this_scale * Laux[i] + this_min - x[i];
            err += w[i] * (use_mad ? fabsf(diff) : diff * diff);
        }
        if (err < best) {
            memcpy(L, Laux, (size_t)n);
            best = err, scale = this_scale, lo = this_min;
        }
    }
    *min_out = -lo;
    return scale;
}

// ggml's make_q3_quants with its rmse refinement: L in -nmax..nmax-1 (returned offset by nmax),
// the scale that minimises Σ x²·(x - scale·l)² after up to 5 passes of single-weight changes.
static float quant_scale_q3(const float *x, int n, int nmax, int8_t *L) {
    float amax = 0, max = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) amax = fabsf(x[i]), max = x[i];
    if (amax < 1e-15f) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = -(float)nmax / max, sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = clampi(nearest(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)l;
        float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)(l * l);
    }
    for (int pass = 0; pass < 5; pass++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            float w = x[i] * x[i], slx = sumlx - w * x[i] * (float)L[i];
            if (slx <= 0) continue;
            float sl2 = suml2 - w * (float)(L[i] * L[i]);
            int nl = clampi(nearest(x[i] * sl2 / slx), -nmax, nmax - 1);
            if (nl == L[i]) continue;
            slx += w * x[i] * (float)nl;
            sl2 += w * (float)(nl * nl);
            if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                L[i] = (int8_t)nl, sumlx = slx, suml2 = sl2;
                changed++;
            }
        }
        if (!changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0 ? sumlx / suml2 : 0.0f;
}

// Q2_K / Q3_K's 2-bit packing: L (0..3) of weights 128h + 32s + l in bits 2s of qs[32h + l]
static void pack_2bit(const uint8_t *L, uint8_t *qs) {
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++) {
            const uint8_t *q = L + 128 * h + l;
            qs[32 * h + l] = (uint8_t)(q[0] | (q[32] << 2) | (q[64] << 4) | (q[96] << 6));
        }
}

// As ggml's quantize_row_q2_K_ref: per sub-block of 16 a scale and min fitted for absolute error
// weighted by |x|, both quantized to 4 bits against the largest.
static void quant_q2_K(const float *x, block_q2_K *b) {
    float scale[16], minv[16], w[16], max_scale = 0, max_min = 0;
    uint8_t L[QK_K];
    for (int s = 0; s < 16; s++) {
        for (int l = 0; l < 16; l++) w[l] = fabsf(x[16 * s + l]);
        scale[s] = quant_scale_min(x + 16 * s, w, 16, 3, L + 16 * s, &minv[s], -0.5f, 0.1f, 15, 1);
        max_scale = fmaxf(max_scale, scale[s]);
        max_min = fmaxf(max_min, minv[s]);
    }
    for (int s = 0; s < 16; s++) {
        int sc = max_scale > 0 ? nearest(15.0f / max_scale * scale[s]) : 0;
        int m = max_min > 0 ? nearest(15.0f / max_min * minv[s]) : 0;
        b->scales[s] = (uint8_t)(clampi(sc, 0, 15) | (clampi(m, 0, 15) << 4));
    }
    b->d = f32_to_f16(max_scale > 0 ? max_scale / 15.0f : 0.0f);
    b->dmin = f32_to_f16(max_min > 0 ? max_min / 15.0f : 0.0f);
    float d = f16_to_f32(b->d), dmin = f16_to_f32(b->dmin);
    for (int s = 0; s < 16; s++) {
        float ds = d * (float)(b->scales[s] & 15), ms = dmin * (float)(b->scales[s] >> 4);
        if (!ds) continue; // keep the fit's L
        for (int l = 0; l < 16; l++)
            L[16 * s + l] = (uint8_t)clampi(nearest((x[16 * s + l] + ms) / ds), 0, 3);
    }
    pack_2bit(L, b->qs);
}

// As ggml's quantize_row_q3_K_ref: per sub-block of 16 a signed scale (make_q3_quants), the 16
// quantized to 6 bits against the largest in magnitude, which maps to -32.
static void quant_q3_K(const float *x, block_q3_K *b) {
    float scale[16], amax = 0, max_scale = 0;
    int8_t Ls[QK_K];
    for (int s = 0; s < 16; s++) {
        scale[s] = quant_scale_q3(x + 16 * s, 16, 4, Ls + 16 * s);
        if (fabsf(scale[s]) > amax) amax = fabsf(scale[s]), max_scale = scale[s];
    }
    memset(b->scales, 0, sizeof b->scales);
    float iscale = max_scale ? -32.0f / max_scale : 0.0f;
    for (int s = 0; s < 16 && max_scale; s++) {
        int l = clampi(nearest(iscale * scale[s]), -32, 31) + 32;
        if (s < 8)
            b->scales[s] = (uint8_t)(l & 15);
        else
            b->scales[s - 8] |= (uint8_t)((l & 15) << 4);
        b->scales[8 + s % 4] |= (uint8_t)((l >> 4) << (2 * (s / 4)));
    }
    b->d = f32_to_f16(max_scale ? 1.0f / iscale : 0.0f);
    float d = f16_to_f32(b->d);
    uint8_t L[QK_K];
    for (int s = 0; s < 16; s++) {
        int lo = s < 8 ? b->scales[s] & 15 : b->scales[s - 8] >> 4;
        int sc = (lo | (((b->scales[8 + s % 4] >> (2 * (s / 4))) & 3) << 4)) - 32;
        float ds = d * (float)sc;
        for (int l = 0; l < 16; l++)
            L[16 * s + l] = ds ? (uint8_t)(clampi(nearest(x[16 * s + l] / ds), -4, 3) + 4)
                               : (uint8_t)Ls[16 * s + l];
    }
    // the high bit (L > 3) of weight j in hmask[j % 32], bit j / 32
    memset(b->hmask, 0, sizeof b->hmask);
    for (int j = 0; j < QK_K; j++)
        if (L[j] > 3) b->hmask[j % 32] |= (uint8_t)(1u << (j / 32)), L[j] -= 4;
    pack_2bit(L, b->qs);
}

// Q4_K / Q5_K, as ggml's quantize_row_q4_K_ref / q5_K_ref: per sub-block of 32 a scale and min
// fitted by weighted least squares (weights rms(x) + |x|), both quantized to 6 bits against the
// largest; then L (0..nmax) against the stored values.
static void quant_k_32(const float *x, int nmax, float rmin, int nstep, uint16_t *d16,
                       uint16_t *dmin16, uint8_t *scales, uint8_t *L) {
    float scale[8], minv[8], w[32], max_scale = 0, max_min = 0;
    uint8_t ls[8], lm[8];
    for (int s = 0; s < 8; s++) {
        const float *xs = x + 32 * s;
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += xs[l] * xs[l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) w[l] = av_x + fabsf(xs[l]);
        scale[s] = quant_scale_min(xs, w, 32, nmax, L + 32 * s, &minv[s], rmin, 0.1f, nstep, 0);
        max_scale = fmaxf(max_scale, scale[s]);
        max_min = fmaxf(max_min, minv[s]);
    }
    float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    for (int s = 0; s < 8; s++) {
        ls[s] = (uint8_t)clampi(nearest(inv_scale * scale[s]), 0, 63);
        lm[s] = (uint8_t)clampi(nearest(inv_min * minv[s]), 0, 63);
    }
    pack_scales_k4(scales, ls, lm);
    *d16 = f32_to_f16(max_scale / 63.0f);
    *dmin16 = f32_to_f16(max_min / 63.0f);
    float d = f16_to_f32(*d16), dmin = f16_to_f32(*dmin16);
    for (int s = 0; s < 8; s++) {
        float ds = d * ls[s], ms = dmin * lm[s];
        if (!ds) continue; // keep the fit's L
        for (int l = 0; l < 32; l++)
            L[32 * s + l] = (uint8_t)clampi(nearest((x[32 * s + l] + ms) / ds), 0, nmax);
    }
}

static void quant_q4_K(const float *x, block_q4_K *b) {
    uint8_t L[QK_K];
    quant_k_32(x, 15, -1.0f, 20, &b->d, &b->dmin, b->scales, L);
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++)
            b->qs[32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
}

static void quant_q5_K(const float *x, block_q5_K *b) {
    uint8_t L[QK_K];
    quant_k_32(x, 31, -0.5f, 15, &b->d, &b->dmin, b->scales, L);
    // weights 64c + l and 64c + 32 + l: low nibbles in qs[32c + l], fifth bits in qh[l] bits 2c,
    // 2c+1
    memset(b->qh, 0, sizeof b->qh);
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            uint8_t a = L[64 * c + l], e = L[64 * c + 32 + l];
            b->qs[32 * c + l] = (uint8_t)((a & 15) | ((e & 15) << 4));
            b->qh[l] |= (uint8_t)(((a >> 4) << (2 * c)) | ((e >> 4) << (2 * c + 1)));
        }
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

// The nearest of IQ4_NL's 16 levels to x (ties to the lower), as ggml's best_index_int8.
static int iq4_index(float x) {
    const int8_t *v = quant_iq4nl_values;
    if (x <= v[0]) return 0;
    if (x >= v[15]) return 15;
    int lo = 0, hi = 15;
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (x < v[mid])
            hi = mid;
        else
            lo = mid;
    }
    return x - v[hi - 1] < v[hi] - x ? hi - 1 : hi;
}

// As ggml's quantize_iq4_nl / quantize_iq4_xs without an importance matrix: per sub-block of 32
// the scale d minimising Σ x²·(x - d·v[L])², tried from 15 starting inverse scales around
// v[0] / max; IQ4_XS then quantizes the 8 scales to 6 bits against the largest (-> -32) and
// chooses L again. n = 32 (IQ4_NL: *d16 is the block's scale) or 256 (IQ4_XS).
static void quant_iq4(const float *x, int n, uint16_t *d16, uint16_t *scales_h, uint8_t *scales_l,
                      uint8_t *qs) {
    const int8_t *v = quant_iq4nl_values;
    float scale[QK_K / 32], max_scale = 0, amax_scale = 0;
    uint8_t L[QK_K];
    for (int s = 0; s < n / 32; s++) {
        const float *xs = x + 32 * s;
        uint8_t *Ls = L + 32 * s;
        float amax = 0, max = 0;
        for (int j = 0; j < 32; j++)
            if (fabsf(xs[j]) > amax) amax = fabsf(xs[j]), max = xs[j];
        if (amax < 1e-15f) {
            scale[s] = 0;
            memset(Ls, 0, 32);
            continue;
        }
        float d = -max / v[0], id = 1.0f / d, sumqx = 0, sumq2 = 0;
        for (int j = 0; j < 32; j++) {
            Ls[j] = (uint8_t)iq4_index(id * xs[j]);
            float q = v[Ls[j]], w = xs[j] * xs[j];
            sumqx += w * q * xs[j];
            sumq2 += w * q * q;
        }
        d = sumq2 > 0 ? sumqx / sumq2 : 0.0f;
        float best = d * sumqx;
        for (int t = -7; t <= 7; t++) {
            id = ((float)t + v[0]) / max;
            sumqx = sumq2 = 0;
            for (int j = 0; j < 32; j++) {
                float q = v[iq4_index(id * xs[j])], w = xs[j] * xs[j];
                sumqx += w * q * xs[j];
                sumq2 += w * q * q;
            }
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2) d = sumqx / sumq2, best = d * sumqx;
        }
        scale[s] = d;
        if (fabsf(d) > amax_scale) amax_scale = fabsf(d), max_scale = d;
    }
    if (n == 32) {
        *d16 = f32_to_f16(scale[0]);
        float id = scale[0] ? 1.0f / scale[0] : 0.0f;
        for (int j = 0; j < 32; j++) L[j] = (uint8_t)iq4_index(id * x[j]);
    } else {
        float d = -max_scale / 32, id = d ? 1.0f / d : 0.0f;
        *d16 = f32_to_f16(d);
        *scales_h = 0;
        for (int s = 0; s < n / 32; s++) {
            int l = clampi(nearest(id * scale[s]), -32, 31);
            float dl = d * (float)l, idl = dl ? 1.0f / dl : 0.0f;
            for (int j = 0; j < 32; j++) L[32 * s + j] = (uint8_t)iq4_index(idl * x[32 * s + j]);
            l += 32;
            if (s % 2 == 0)
                scales_l[s / 2] = (uint8_t)(l & 15);
            else
                scales_l[s / 2] |= (uint8_t)((l & 15) << 4);
            *scales_h |= (uint16_t)((l >> 4) << (2 * s));
        }
    }
    for (int s = 0; s < n / 32; s++)
        for (int j = 0; j < 16; j++)
            qs[16 * s + j] = (uint8_t)(L[32 * s + j] | (L[32 * s + 16 + j] << 4));
}

static void quant_iq4_nl(const float *x, block_iq4_nl *b) {
    quant_iq4(x, QK4_NL, &b->d, NULL, NULL, b->qs);
}

static void quant_iq4_xs(const float *x, block_iq4_xs *b) {
    quant_iq4(x, QK_K, &b->d, &b->scales_h, b->scales_l, b->qs);
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
#define QUANT_BLOCKS(blk, QK, fn)                                                                  \
    for (int64_t i = 0; i < n / (QK); i++) {                                                       \
        blk b;                                                                                     \
        fn(x + i * (QK), &b);                                                                      \
        memcpy(p + i * sizeof b, &b, sizeof b);                                                    \
    }                                                                                              \
    break
    case GGML_TYPE_Q8_0:
        QUANT_BLOCKS(block_q8_0, QK8_0, quant_q8_0);
    case GGML_TYPE_Q4_0:
        QUANT_BLOCKS(block_q4_0, QK4_0, quant_q4_0);
    case GGML_TYPE_Q4_1:
        QUANT_BLOCKS(block_q4_1, QK4_1, quant_q4_1);
    case GGML_TYPE_Q5_0:
        QUANT_BLOCKS(block_q5_0, QK5_0, quant_q5_0);
    case GGML_TYPE_Q5_1:
        QUANT_BLOCKS(block_q5_1, QK5_1, quant_q5_1);
    case GGML_TYPE_Q2_K:
        QUANT_BLOCKS(block_q2_K, QK_K, quant_q2_K);
    case GGML_TYPE_Q3_K:
        QUANT_BLOCKS(block_q3_K, QK_K, quant_q3_K);
    case GGML_TYPE_Q4_K:
        QUANT_BLOCKS(block_q4_K, QK_K, quant_q4_K);
    case GGML_TYPE_Q5_K:
        QUANT_BLOCKS(block_q5_K, QK_K, quant_q5_K);
    case GGML_TYPE_Q6_K:
        QUANT_BLOCKS(block_q6_K, QK_K, quant_q6_K);
    case GGML_TYPE_IQ4_NL:
        QUANT_BLOCKS(block_iq4_nl, QK4_NL, quant_iq4_nl);
    case GGML_TYPE_IQ4_XS:
        QUANT_BLOCKS(block_iq4_xs, QK_K, quant_iq4_xs);
#undef QUANT_BLOCKS
    }
}

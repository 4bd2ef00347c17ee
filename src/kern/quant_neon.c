// Dequantization and dot products of GGUF rows for Armv8.2-A NEON + dot product + fp16: quant.inc
// compiled with that variant's flags (CMakeLists.txt, CTERP_ISA_FLAGS_neon), and its integer dots
// (quant.inc, "integer dots") on sdot: a block of 32 is two registers of 16 weights, four lanes
// each, and acc is 8 registers (acc[0..31]).
#define KERN_ISA neon
#define QUANT_XQ_ISA
#define QUANT_MV_F32
#include "kern/quant.inc"

#include <arm_neon.h>

// 256·Σ w·xh + Σ w·xl over each 4 bytes (sdot: s8 x s8, exact)
static inline int32x4_t xq_dot(int8x16_t w, int8x16_t xh, int8x16_t xl) {
    int32x4_t h = vdotq_s32(vdupq_n_s32(0), w, xh);
    return vdotq_s32(vshlq_n_s32(h, 8), w, xl);
}

// acc[2r], acc[2r+1] += (float)P·S for block b (weights w0 = 0..15, w1 = 16..31)
static inline void xq_block(float32x4_t *a, int8x16_t w0, int8x16_t w1, const quant_xq *q,
                            int64_t b, float S0, float S1) {
    const int8_t *xh = q->xh + 32 * b, *xl = q->xl + 32 * b;
    int32x4_t P0 = xq_dot(w0, vld1q_s8(xh), vld1q_s8(xl));
    int32x4_t P1 = xq_dot(w1, vld1q_s8(xh + 16), vld1q_s8(xl + 16));
    a[0] = vaddq_f32(a[0], vmulq_f32(vcvtq_f32_s32(P0), vdupq_n_f32(S0)));
    a[1] = vaddq_f32(a[1], vmulq_f32(vcvtq_f32_s32(P1), vdupq_n_f32(S1)));
}

// acc[0..31] summed by halves, as xq_sum32
static inline float xq_hsum(float32x4_t *a) {
    for (int k = 0; k < 4; k++) a[k] = vaddq_f32(a[k], a[k + 4]);
    float32x4_t v = vaddq_f32(vaddq_f32(a[0], a[2]), vaddq_f32(a[1], a[3]));
    float32x4_t t = vaddq_f32(v, vextq_f32(v, v, 2)); // a0+a2, a1+a3
    return vgetq_lane_f32(t, 0) + vgetq_lane_f32(t, 1);
}

#define XQ_ZERO8                                                                                   \
    {                                                                                              \
        vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0),            \
            vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0)                                         \
    }

static float xq_q8_0(const uint8_t *p, const quant_xq *q) {
    float32x4_t a[8] = XQ_ZERO8;
    for (int64_t b = 0; b < q->n / QK8_0; b++, p += sizeof(block_q8_0)) {
        xq_prefetch(p, sizeof(block_q8_0));
        const int8_t *w = (const int8_t *)(p + 2);
        float S = f16_at(p) * q->sx[b];
        xq_block(a + 2 * (b & 3), vld1q_s8(w), vld1q_s8(w + 16), q, b, S, S);
    }
    return xq_hsum(a);
}

static float xq_q4_0(const uint8_t *p, const quant_xq *q) {
    float32x4_t a[8] = XQ_ZERO8;
    const uint8x16_t m4 = vdupq_n_u8(15);
    const int8x16_t k8 = vdupq_n_s8(8);
    for (int64_t b = 0; b < q->n / QK4_0; b++, p += sizeof(block_q4_0)) {
        xq_prefetch(p, sizeof(block_q4_0));
        uint8x16_t qs = vld1q_u8(p + 2);
        int8x16_t w0 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(qs, m4)), k8);
        int8x16_t w1 = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(qs, 4)), k8);
        float S = f16_at(p) * q->sx[b];
        xq_block(a + 2 * (b & 3), w0, w1, q, b, S, S);
    }
    return xq_hsum(a);
}

static float xq_q4_K(const uint8_t *p, const quant_xq *q) {
    float32x4_t a[8] = XQ_ZERO8;
    float accm[8] = {0}, S[8];
    uint8_t sc[8], m[8];
    const uint8x16_t m4 = vdupq_n_u8(15);
    for (int64_t i = 0; i < q->n / QK_K; i++, p += sizeof(block_q4_K)) {
        xq_prefetch(p, sizeof(block_q4_K));
        float d = f16_at(AT(p, block_q4_K, d)), dmin = f16_at(AT(p, block_q4_K, dmin));
        xq_scales_k4(AT(p, block_q4_K, scales), sc, m);
        for (int s = 0; s < 8; s++) {
            S[s] = (d * (float)sc[s]) * q->sx[8 * i + s];
            accm[s] += (dmin * (float)m[s]) * q->xsum[8 * i + s];
        }
        const uint8_t *qs = AT(p, block_q4_K, qs);
        for (int c = 0; c < 4; c++) { // sub-blocks 2c (low nibbles), 2c+1 (high)
            uint8x16_t u0 = vld1q_u8(qs + 32 * c), u1 = vld1q_u8(qs + 32 * c + 16);
            const int64_t b = 8 * i + 2 * c;
            float32x4_t *ac = a + 4 * (c & 1);
            xq_block(ac, vreinterpretq_s8_u8(vandq_u8(u0, m4)),
                     vreinterpretq_s8_u8(vandq_u8(u1, m4)), q, b, S[2 * c], S[2 * c]);
            xq_block(ac + 2, vreinterpretq_s8_u8(vshrq_n_u8(u0, 4)),
                     vreinterpretq_s8_u8(vshrq_n_u8(u1, 4)), q, b + 1, S[2 * c + 1], S[2 * c + 1]);
        }
    }
    return xq_hsum(a) - xq_sum8(accm);
}

// Q5_0 / Q5_1 (quant.inc): u = nibble | fifth bit·16 (qh's bits tested byte by byte); Q5_0's
// weights u - 16
static inline void xq_q5_w(int8x16_t w[2], const uint8_t *qs, const uint8_t *qhp, int five_0) {
    uint32_t qh;
    memcpy(&qh, qhp, 4);
    const uint8x16_t bit = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t k16 = vdupq_n_u8(16), u = vld1q_u8(qs);
    const uint8x16_t h0 = vcombine_u8(vdup_n_u8((uint8_t)qh), vdup_n_u8((uint8_t)(qh >> 8)));
    const uint8x16_t h1 =
        vcombine_u8(vdup_n_u8((uint8_t)(qh >> 16)), vdup_n_u8((uint8_t)(qh >> 24)));
    uint8x16_t lo = vorrq_u8(vandq_u8(u, vdupq_n_u8(15)), vandq_u8(vtstq_u8(h0, bit), k16));
    uint8x16_t hi = vorrq_u8(vshrq_n_u8(u, 4), vandq_u8(vtstq_u8(h1, bit), k16));
    if (five_0) lo = vsubq_u8(lo, k16), hi = vsubq_u8(hi, k16); // wraps to the signed u - 16
    w[0] = vreinterpretq_s8_u8(lo), w[1] = vreinterpretq_s8_u8(hi);
}

static float xq_q5_0(const uint8_t *p, const quant_xq *q) {
    float32x4_t a[8] = XQ_ZERO8;
    for (int64_t b = 0; b < q->n / QK5_0; b++, p += sizeof(block_q5_0)) {
        xq_prefetch(p, sizeof(block_q5_0));
        int8x16_t w[2];
        xq_q5_w(w, AT(p, block_q5_0, qs), AT(p, block_q5_0, qh), 1);
        float S = f16_at(p) * q->sx[b];
        xq_block(a + 2 * (b & 3), w[0], w[1], q, b, S, S);
    }
    return xq_hsum(a);
}

static float xq_q5_1(const uint8_t *p, const quant_xq *q) {
    float32x4_t a[8] = XQ_ZERO8;
    float accm[8] = {0};
    for (int64_t b = 0; b < q->n / QK5_1; b++, p += sizeof(block_q5_1)) {
        xq_prefetch(p, sizeof(block_q5_1));
        int8x16_t w[2];
        xq_q5_w(w, AT(p, block_q5_1, qs), AT(p, block_q5_1, qh), 0);
        float S = f16_at(AT(p, block_q5_1, d)) * q->sx[b];
        xq_block(a + 2 * (b & 3), w[0], w[1], q, b, S, S);
        accm[b & 7] += f16_at(AT(p, block_q5_1, m)) * q->xsum[b];
    }
    return xq_hsum(a) + xq_sum8(accm);
}

// Q3_K (quant.inc, xq_q3_K_scales): per group the signed weights u - 4
static float xq_q3_K(const uint8_t *p, const quant_xq *q) {
    float32x4_t a[8] = XQ_ZERO8;
    float S[16];
    const uint8x16_t m3 = vdupq_n_u8(3), one = vdupq_n_u8(1);
    const int8x16_t k4 = vdupq_n_s8(4);
    for (int64_t i = 0; i < q->n / QK_K; i++, p += sizeof(block_q3_K)) {
        xq_prefetch(p, sizeof(block_q3_K));
        xq_q3_K_scales(S, p, q->sx + 8 * i);
        const uint8_t *hm = AT(p, block_q3_K, hmask);
        for (int g = 0; g < 8; g++) {
            const int h = g / 4, s = g % 4;
            const uint8_t *qs = AT(p, block_q3_K, qs) + 32 * h;
            int8x16_t w[2];
            for (int t = 0; t < 2; t++) {
                uint8x16_t f =
                    vandq_u8(vshlq_u8(vld1q_u8(qs + 16 * t), vdupq_n_s8((int8_t)(-2 * s))), m3);
                uint8x16_t hb = vandq_u8(
                    vshlq_u8(vld1q_u8(hm + 16 * t), vdupq_n_s8((int8_t)(-4 * h - s))), one);
                w[t] = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(f, vshlq_n_u8(hb, 2))), k4);
            }
            xq_block(a + 2 * (g & 3), w[0], w[1], q, 8 * i + g, S[2 * g], S[2 * g + 1]);
        }
    }
    return xq_hsum(a);
}

// IQ4_NL / IQ4_XS: 16 bytes of nibbles -> the levels of the low (w0: weights 0-15) and the high
// (w1: 16-31) by table lookups
static inline void xq_iq4_w(int8x16_t w[2], const uint8_t *qs) {
    const int8x16_t lv = vld1q_s8(quant_iq4nl_values);
    const uint8x16_t u = vld1q_u8(qs);
    w[0] = vqtbl1q_s8(lv, vandq_u8(u, vdupq_n_u8(15)));
    w[1] = vqtbl1q_s8(lv, vshrq_n_u8(u, 4));
}

static float xq_iq4_nl(const uint8_t *p, const quant_xq *q) {
    float32x4_t a[8] = XQ_ZERO8;
    for (int64_t b = 0; b < q->n / QK4_NL; b++, p += sizeof(block_iq4_nl)) {
        xq_prefetch(p, sizeof(block_iq4_nl));
        int8x16_t w[2];
        xq_iq4_w(w, AT(p, block_iq4_nl, qs));
        float S = f16_at(p) * q->sx[b];
        xq_block(a + 2 * (b & 3), w[0], w[1], q, b, S, S);
    }
    return xq_hsum(a);
}

static float xq_iq4_xs(const uint8_t *p, const quant_xq *q) {
    float32x4_t a[8] = XQ_ZERO8;
    float S[8];
    for (int64_t i = 0; i < q->n / QK_K; i++, p += sizeof(block_iq4_xs)) {
        xq_prefetch(p, sizeof(block_iq4_xs));
        xq_iq4_xs_scales(S, p, q->sx + 8 * i);
        for (int s = 0; s < 8; s++) {
            int8x16_t w[2];
            xq_iq4_w(w, AT(p, block_iq4_xs, qs) + 16 * s);
            xq_block(a + 2 * (s & 3), w[0], w[1], q, 8 * i + s, S[s], S[s]);
        }
    }
    return xq_hsum(a);
}

// The 32 weights 32g.. of a Q6_K block p (g = 4h + r, as deq_q6_K) as signed bytes, two vectors.
static inline void q6k_weights(int8x16_t w[2], const uint8_t *p, int h, int r) {
    const uint8x16_t m4 = vdupq_n_u8(15), m3 = vdupq_n_u8(3);
    const int8x16_t k32 = vdupq_n_s8(32);
    const uint8_t *ql = AT(p, block_q6_K, ql) + 64 * h + 32 * (r & 1);
    const uint8_t *qh = AT(p, block_q6_K, qh) + 32 * h;
    for (int t = 0; t < 2; t++) {
        uint8x16_t l = vld1q_u8(ql + 16 * t), hb = vld1q_u8(qh + 16 * t);
        l = r >= 2 ? vshrq_n_u8(l, 4) : vandq_u8(l, m4);
        hb = vandq_u8(vshlq_u8(hb, vdupq_n_s8((int8_t)(-2 * r))), m3);
        w[t] = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(l, vshlq_n_u8(hb, 4))), k32);
    }
}

static float xq_q6_K(const uint8_t *p, const quant_xq *q) {
    float32x4_t a[8] = XQ_ZERO8;
    float S[16];
    for (int64_t i = 0; i < q->n / QK_K; i++, p += sizeof(block_q6_K)) {
        xq_prefetch(p, sizeof(block_q6_K));
        const float d = f16_at(AT(p, block_q6_K, d));
        const int8_t *sc = (const int8_t *)AT(p, block_q6_K, scales);
        for (int s = 0; s < 16; s++) S[s] = (d * (float)sc[s]) * q->sx[8 * i + s / 2];
        for (int g = 0; g < 8; g++) { // 32 weights 32g..: half h, group r, as deq_q6_K
            const int h = g / 4, r = g % 4;
            int8x16_t w[2];
            q6k_weights(w, p, h, r);
            xq_block(a + 2 * r, w[0], w[1], q, 8 * i + g, S[2 * g], S[2 * g + 1]);
        }
    }
    return xq_hsum(a);
}

// ---- several rows at a time (quant.inc, xq_mv_*): each row keeps its one-row kernel's order ----

// xq_block with block b of x already in registers: x[0], x[1] its xh, x[2], x[3] its xl
static inline void xq_block_x(float32x4_t *a, int8x16_t w0, int8x16_t w1, const int8x16_t x[4],
                              float S0, float S1) {
    int32x4_t P0 = xq_dot(w0, x[0], x[2]);
    int32x4_t P1 = xq_dot(w1, x[1], x[3]);
    a[0] = vaddq_f32(a[0], vmulq_f32(vcvtq_f32_s32(P0), vdupq_n_f32(S0)));
    a[1] = vaddq_f32(a[1], vmulq_f32(vcvtq_f32_s32(P1), vdupq_n_f32(S1)));
}

static inline void xq_load_x(int8x16_t x[4], const quant_xq *q, int64_t b) {
    x[0] = vld1q_s8(q->xh + 32 * b), x[1] = vld1q_s8(q->xh + 32 * b + 16);
    x[2] = vld1q_s8(q->xl + 32 * b), x[3] = vld1q_s8(q->xl + 32 * b + 16);
}

// Q4_K and Q5_K (`five`: bit s of qh[j] the fifth bit of sub-block s's weight j; the scales at
// the same offsets), R rows (2: each row's acc is 8 of the 32 registers): each block of x loaded
// once for the R rows; each row's scales, mins and blocks as xq_q4_K's
static inline __attribute__((always_inline)) void xq_mv_k45_rows(float *y, const uint8_t *W,
                                                                 size_t rb, const quant_xq *q,
                                                                 const int R, const int five) {
    const size_t bs = five ? sizeof(block_q5_K) : sizeof(block_q4_K);
    const size_t qs_at = five ? offsetof(block_q5_K, qs) : offsetof(block_q4_K, qs);
    float32x4_t a[2][8];
    float accm[2][8], S[2][8];
    uint8_t sc[8], m[8];
    const uint8x16_t m4 = vdupq_n_u8(15), one = vdupq_n_u8(1);
    for (int k = 0; k < R; k++)
        for (int j = 0; j < 8; j++) a[k][j] = vdupq_n_f32(0), accm[k][j] = 0;
    for (int64_t i = 0; i < q->n / QK_K; i++) {
        for (int k = 0; k < R; k++) {
            const uint8_t *p = W + (size_t)k * rb + (size_t)i * bs;
            xq_prefetch_next(W, rb, R, k, (size_t)i * bs, (int)bs);
            float d = f16_at(AT(p, block_q4_K, d)), dmin = f16_at(AT(p, block_q4_K, dmin));
            xq_scales_k4(AT(p, block_q4_K, scales), sc, m);
            for (int s = 0; s < 8; s++) {
                S[k][s] = (d * (float)sc[s]) * q->sx[8 * i + s];
                accm[k][s] += (dmin * (float)m[s]) * q->xsum[8 * i + s];
            }
        }
        for (int c = 0; c < 4; c++) { // sub-blocks 2c (low nibbles), 2c+1 (high)
            const int64_t b = 8 * i + 2 * c;
            int8x16_t x0[4], x1[4];
            xq_load_x(x0, q, b), xq_load_x(x1, q, b + 1);
            for (int k = 0; k < R; k++) {
                const uint8_t *p = W + (size_t)k * rb + (size_t)i * bs;
                const uint8_t *qs = p + qs_at + 32 * c;
                uint8x16_t u0 = vld1q_u8(qs), u1 = vld1q_u8(qs + 16);
                uint8x16_t w0 = vandq_u8(u0, m4), w1 = vandq_u8(u1, m4);
                uint8x16_t w2 = vshrq_n_u8(u0, 4), w3 = vshrq_n_u8(u1, 4);
                if (five) { // bits 2c, 2c+1 of qh to bit 4
                    const uint8_t *qh = AT(p, block_q5_K, qh);
                    const int8x16_t s0 = vdupq_n_s8((int8_t)(-2 * c)),
                                    s1 = vdupq_n_s8((int8_t)(-2 * c - 1));
                    const uint8x16_t h0 = vld1q_u8(qh), h1 = vld1q_u8(qh + 16);
                    w0 = vorrq_u8(w0, vshlq_n_u8(vandq_u8(vshlq_u8(h0, s0), one), 4));
                    w1 = vorrq_u8(w1, vshlq_n_u8(vandq_u8(vshlq_u8(h1, s0), one), 4));
                    w2 = vorrq_u8(w2, vshlq_n_u8(vandq_u8(vshlq_u8(h0, s1), one), 4));
                    w3 = vorrq_u8(w3, vshlq_n_u8(vandq_u8(vshlq_u8(h1, s1), one), 4));
                }
                float32x4_t *ac = a[k] + 4 * (c & 1);
                xq_block_x(ac, vreinterpretq_s8_u8(w0), vreinterpretq_s8_u8(w1), x0, S[k][2 * c],
                           S[k][2 * c]);
                xq_block_x(ac + 2, vreinterpretq_s8_u8(w2), vreinterpretq_s8_u8(w3), x1,
                           S[k][2 * c + 1], S[k][2 * c + 1]);
            }
        }
    }
    for (int k = 0; k < R; k++) y[k] = xq_hsum(a[k]) - xq_sum8(accm[k]);
}

XQ_K45_KERNELS

// Q6_K, R rows (2): each block of x loaded once for the R rows; each row's weights and scales as
// xq_q6_K's
static inline __attribute__((always_inline)) void
xq_mv_q6_K_rows(float *y, const uint8_t *W, size_t rb, const quant_xq *q, const int R) {
    float32x4_t a[2][8];
    float S[2][16];
    for (int k = 0; k < R; k++)
        for (int j = 0; j < 8; j++) a[k][j] = vdupq_n_f32(0);
    for (int64_t i = 0; i < q->n / QK_K; i++) {
        for (int k = 0; k < R; k++) {
            const uint8_t *p = W + (size_t)k * rb + (size_t)i * sizeof(block_q6_K);
            xq_prefetch_next(W, rb, R, k, (size_t)i * sizeof(block_q6_K), sizeof(block_q6_K));
            const float d = f16_at(AT(p, block_q6_K, d));
            const int8_t *sc = (const int8_t *)AT(p, block_q6_K, scales);
            for (int s = 0; s < 16; s++) S[k][s] = (d * (float)sc[s]) * q->sx[8 * i + s / 2];
        }
        for (int g = 0; g < 8; g++) { // 32 weights 32g..: half h, group r, as deq_q6_K
            const int h = g / 4, r = g % 4;
            int8x16_t x[4];
            xq_load_x(x, q, 8 * i + g);
            for (int k = 0; k < R; k++) {
                const uint8_t *p = W + (size_t)k * rb + (size_t)i * sizeof(block_q6_K);
                int8x16_t w[2];
                q6k_weights(w, p, h, r);
                xq_block_x(a[k] + 2 * r, w[0], w[1], x, S[k][2 * g], S[k][2 * g + 1]);
            }
        }
    }
    for (int k = 0; k < R; k++) y[k] = xq_hsum(a[k]);
}

// Q8_0, R rows (2): each block of x loaded once for the R rows; each row's weights and d·sx as
// xq_q8_0's, into its a[2·(b%4)], a[2·(b%4)+1]
static inline __attribute__((always_inline)) void
xq_mv_q8_0_rows(float *y, const uint8_t *W, size_t rb, const quant_xq *q, const int R) {
    float32x4_t a[2][8];
    for (int k = 0; k < R; k++)
        for (int j = 0; j < 8; j++) a[k][j] = vdupq_n_f32(0);
    for (int64_t b = 0; b < q->n / QK8_0; b++) {
        int8x16_t x[4];
        xq_load_x(x, q, b);
        for (int k = 0; k < R; k++) {
            const uint8_t *p = W + (size_t)k * rb + (size_t)b * sizeof(block_q8_0);
            xq_prefetch_next(W, rb, R, k, (size_t)b * sizeof(block_q8_0), sizeof(block_q8_0));
            const int8_t *w = (const int8_t *)(p + 2);
            const float S = f16_at(p) * q->sx[b];
            xq_block_x(a[k] + 2 * (b & 3), vld1q_s8(w), vld1q_s8(w + 16), x, S, S);
        }
    }
    for (int k = 0; k < R; k++) y[k] = xq_hsum(a[k]);
}

XQ_MV_ROWWISE(xq_mv_q4_0, xq_q4_0)

XQ_MV_SIDE_KERNELS(2)

// F16, F32 or BF16 rows (quant.inc, mv_f16, mv_f32, mv_bf16) R at a time (2): per row acc[0..31]
// in eight registers, each x loaded once for the R rows; then dot_f32's fold, its 8-wide tail and
// its scalar tail (so each row is dot_f32 of its f32 values, to the bit, as one at a time).
static inline float32x4_t f16x4_at(const uint8_t *p) {
    return vcvt_f32_f16(vreinterpret_f16_u8(vld1_u8(p)));
}

static inline __attribute__((always_inline)) float32x4_t mv_w4(const uint8_t *p, const int kind) {
    if (kind == MV_F32) return vld1q_f32((const float *)(const void *)p);
    if (kind == MV_BF16)
        return vreinterpretq_f32_u32(vshll_n_u16(vreinterpret_u16_u8(vld1_u8(p)), 16));
    return f16x4_at(p);
}

static inline __attribute__((always_inline)) void mv_rows(float *y, const uint8_t *W, size_t rb,
                                                          const float *x, int64_t n, const int R,
                                                          const int kind) {
    const int f32 = kind == MV_F32, es = f32 ? 4 : 2; // bytes a weight
    float32x4_t a[2][8];
    for (int r = 0; r < R; r++)
        for (int k = 0; k < 8; k++) a[r][k] = vdupq_n_f32(0);
    int64_t j = 0;
    for (; j + 32 <= n; j += 32) {
        float32x4_t xv[8];
        for (int k = 0; k < 8; k++) xv[k] = vld1q_f32(x + j + 4 * k);
        for (int r = 0; r < R; r++) {
            const uint8_t *p = W + (size_t)r * rb + es * j;
            xq_prefetch_next(W, rb, R, r, (size_t)(es * j), 32 * es);
            for (int k = 0; k < 8; k++)
                a[r][k] = vaddq_f32(a[r][k], vmulq_f32(mv_w4(p + 4 * es * k, kind), xv[k]));
        }
    }
    for (int r = 0; r < R; r++) {
        const uint8_t *p = W + (size_t)r * rb;
        const float32x4_t *ar = a[r];
        // acc[k] = (acc[k] + acc[k+16]) + (acc[k+8] + acc[k+24]), k < 8: registers 0, 1
        float32x4_t b0 = vaddq_f32(vaddq_f32(ar[0], ar[4]), vaddq_f32(ar[2], ar[6]));
        float32x4_t b1 = vaddq_f32(vaddq_f32(ar[1], ar[5]), vaddq_f32(ar[3], ar[7]));
        int64_t jj = j;
        for (; jj + 8 <= n; jj += 8) {
            b0 = vaddq_f32(b0, vmulq_f32(mv_w4(p + es * jj, kind), vld1q_f32(x + jj)));
            b1 = vaddq_f32(b1, vmulq_f32(mv_w4(p + es * jj + 4 * es, kind), vld1q_f32(x + jj + 4)));
        }
        float32x4_t u = vaddq_f32(b0, b1); // a_k + a_{k+4}
        float32x4_t v = vpaddq_f32(u, u);  // u0+u1, u2+u3
        float s = vgetq_lane_f32(v, 0) + vgetq_lane_f32(v, 1);
        for (; jj < n; jj++) {
            float w;
            if (f32)
                memcpy(&w, p + 4 * jj, 4);
            else
                w = kind == MV_BF16 ? bf16_to_f32((uint16_t)(p[2 * jj] | p[2 * jj + 1] << 8))
                                    : f16_at(p + 2 * jj);
            s += w * x[jj];
        }
        y[r] = s;
    }
}

XQ_MV_FLOAT_KERNELS(2)

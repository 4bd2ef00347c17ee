// Dequantization and dot products of GGUF rows for AVX2 + FMA + F16C (x86-64-v3): quant.inc
// compiled with that variant's flags (CMakeLists.txt, CTERP_ISA_FLAGS_avx2), and its integer dots
// (quant.inc, "integer dots") on pmaddubsw + pmaddwd, one block of 32 per ymm: acc is 4 ymm, one
// for each b % 4.
#define KERN_ISA avx2
#define QUANT_XQ_ISA
#define QUANT_MV_F32
#include "kern/quant.inc"

#include <immintrin.h>

// 256·Σ q·xh + Σ q·xl over each 4 bytes, q unsigned <= 128 with |x| <= 127: pmaddubsw's pairs stay
// below 2·128·127 = 32512, no saturation
static inline __m256i xq_dot_u(__m256i q, __m256i xh, __m256i xl) {
    __m256i h = _mm256_madd_epi16(_mm256_maddubs_epi16(q, xh), _mm256_set1_epi16(256));
    return _mm256_add_epi32(h,
                            _mm256_madd_epi16(_mm256_maddubs_epi16(q, xl), _mm256_set1_epi16(1)));
}

// signed w: |w| against x with w's sign
static inline __m256i xq_dot_s(__m256i w, __m256i xh, __m256i xl) {
    return xq_dot_u(_mm256_abs_epi8(w), _mm256_sign_epi8(xh, w), _mm256_sign_epi8(xl, w));
}

static inline __m256i xq_ld(const void *p) {
    return _mm256_loadu_si256(p);
}

static inline float xq_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h); // exact, as f16_to_f32
}

static inline __m256 xq_fma_free(__m256 acc, __m256i P, __m256 S) {
    return _mm256_add_ps(acc, _mm256_mul_ps(_mm256_cvtepi32_ps(P), S));
}

// acc (4 ymm: acc[0..31]) and accm (acc[0..7]) summed by halves, as xq_sum32 / xq_sum8
static inline float xq_hsum256(__m256 y) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(y), _mm256_extractf128_ps(y, 1));
    __m128 t = _mm_add_ps(x, _mm_movehl_ps(x, x)); // a0+a2, a1+a3
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

static inline float xq_hsum4(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
    return xq_hsum256(_mm256_add_ps(_mm256_add_ps(a0, a2), _mm256_add_ps(a1, a3)));
}

// Q8_0 / Q4_0 block b: (float)P·S, added to acc
static inline __m256 xq_q8_0_1(__m256 acc, const uint8_t *p, const quant_xq *q, int64_t b) {
    __m256i P = xq_dot_s(xq_ld(p + 2), xq_ld(q->xh + 32 * b), xq_ld(q->xl + 32 * b));
    return xq_fma_free(acc, P, _mm256_set1_ps(xq_f16(p) * q->sx[b]));
}

static inline __m256 xq_q4_0_1(__m256 acc, const uint8_t *p, const quant_xq *q, int64_t b) {
    __m128i x = _mm_loadu_si128((const void *)(p + 2));
    __m256i qq = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(x, 4), x), _mm256_set1_epi8(15));
    __m256i P = _mm256_sub_epi32(xq_dot_u(qq, xq_ld(q->xh + 32 * b), xq_ld(q->xl + 32 * b)),
                                 _mm256_slli_epi32(xq_ld(q->xs4 + 8 * b), 3));
    return xq_fma_free(acc, P, _mm256_set1_ps(xq_f16(p) * q->sx[b]));
}

#define XQ_BLOCKS_32(one, blk)                                                                     \
    const int64_t nb = q->n / 32, bs = sizeof(blk);                                                \
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                                    \
    int64_t b = 0;                                                                                 \
    for (; b + 4 <= nb; b += 4, p += 4 * bs) {                                                     \
        xq_prefetch(p, 4 * sizeof(blk));                                                           \
        a0 = one(a0, p, q, b), a1 = one(a1, p + bs, q, b + 1);                                     \
        a2 = one(a2, p + 2 * bs, q, b + 2), a3 = one(a3, p + 3 * bs, q, b + 3);                    \
    }                                                                                              \
    if (b < nb) a0 = one(a0, p, q, b);                                                             \
    if (b + 1 < nb) a1 = one(a1, p + bs, q, b + 1);                                                \
    if (b + 2 < nb) a2 = one(a2, p + 2 * bs, q, b + 2);                                            \
    return xq_hsum4(a0, a1, a2, a3)

static float xq_q8_0(const uint8_t *p, const quant_xq *q) {
    XQ_BLOCKS_32(xq_q8_0_1, block_q8_0);
}

static float xq_q4_0(const uint8_t *p, const quant_xq *q) {
    XQ_BLOCKS_32(xq_q4_0_1, block_q4_0);
}

// Q5_0 / Q5_1 (quant.inc): u = nibble | fifth bit·16, the bits of qh spread over the 32 bytes by
// a byte shuffle and compared against each byte's bit
static inline __m256i xq_q5_u(const uint8_t *qs, const uint8_t *qhp) {
    uint32_t qh;
    memcpy(&qh, qhp, 4);
    const __m256i by =
        _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh),
                            _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2,
                                             2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    const __m128i x = _mm_loadu_si128((const void *)qs);
    return _mm256_or_si256(
        _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(x, 4), x), _mm256_set1_epi8(15)),
        _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(by, bit), bit), _mm256_set1_epi8(16)));
}

static inline __m256 xq_q5_0_1(__m256 acc, const uint8_t *p, const quant_xq *q, int64_t b) {
    __m256i P = _mm256_sub_epi32(xq_dot_u(xq_q5_u(AT(p, block_q5_0, qs), AT(p, block_q5_0, qh)),
                                          xq_ld(q->xh + 32 * b), xq_ld(q->xl + 32 * b)),
                                 _mm256_slli_epi32(xq_ld(q->xs4 + 8 * b), 4));
    return xq_fma_free(acc, P, _mm256_set1_ps(xq_f16(p) * q->sx[b]));
}

static float xq_q5_0(const uint8_t *p, const quant_xq *q) {
    XQ_BLOCKS_32(xq_q5_0_1, block_q5_0);
}

static float xq_q5_1(const uint8_t *p, const quant_xq *q) {
    __m256 a[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
    float accm[8] = {0};
    for (int64_t b = 0; b < q->n / QK5_1; b++, p += sizeof(block_q5_1)) {
        xq_prefetch(p, sizeof(block_q5_1));
        __m256i P = xq_dot_u(xq_q5_u(AT(p, block_q5_1, qs), AT(p, block_q5_1, qh)),
                             xq_ld(q->xh + 32 * b), xq_ld(q->xl + 32 * b));
        a[b & 3] =
            xq_fma_free(a[b & 3], P, _mm256_set1_ps(xq_f16(AT(p, block_q5_1, d)) * q->sx[b]));
        accm[b & 7] += xq_f16(AT(p, block_q5_1, m)) * q->xsum[b];
    }
    return xq_hsum4(a[0], a[1], a[2], a[3]) + xq_sum8(accm);
}

// Q3_K (quant.inc, xq_q3_K_scales): per group u - 4 as unsigned u against x, less 4·Σ X
static float xq_q3_K(const uint8_t *p, const quant_xq *q) {
    __m256 a[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
    const __m256i m3 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(4);
    float S[16];
    for (int64_t i = 0; i < q->n / QK_K; i++, p += sizeof(block_q3_K)) {
        xq_prefetch(p, sizeof(block_q3_K));
        xq_q3_K_scales(S, p, q->sx + 8 * i);
        const __m256i hm = xq_ld(AT(p, block_q3_K, hmask));
        for (int h = 0; h < 2; h++) {
            const __m256i qv = xq_ld(AT(p, block_q3_K, qs) + 32 * h);
            for (int s = 0; s < 4; s++) {
                const int g = 4 * h + s;
                const int64_t b = 8 * i + g;
                // the field at bits 0-1, hmask's bit 4h + s at bit 2
                const __m256i u = _mm256_or_si256(
                    _mm256_and_si256(_mm256_srl_epi16(qv, _mm_cvtsi32_si128(2 * s)), m3),
                    _mm256_and_si256(4 * h + s >= 2
                                         ? _mm256_srl_epi16(hm, _mm_cvtsi32_si128(4 * h + s - 2))
                                         : _mm256_sll_epi16(hm, _mm_cvtsi32_si128(2 - 4 * h - s)),
                                     m4));
                __m256i P =
                    _mm256_sub_epi32(xq_dot_u(u, xq_ld(q->xh + 32 * b), xq_ld(q->xl + 32 * b)),
                                     _mm256_slli_epi32(xq_ld(q->xs4 + 8 * b), 2));
                __m256 Sv =
                    _mm256_set_m128(_mm_broadcast_ss(S + 2 * g + 1), _mm_broadcast_ss(S + 2 * g));
                a[s] = xq_fma_free(a[s], P, Sv);
            }
        }
    }
    return xq_hsum4(a[0], a[1], a[2], a[3]);
}

// IQ4_NL / IQ4_XS: 16 bytes of nibbles -> [low, high] -> their levels by one byte shuffle
static inline __m256i xq_iq4_w(const uint8_t *qs) {
    const __m256i lv =
        _mm256_broadcastsi128_si256(_mm_loadu_si128((const void *)quant_iq4nl_values));
    __m128i x = _mm_loadu_si128((const void *)qs);
    return _mm256_shuffle_epi8(
        lv, _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(x, 4), x), _mm256_set1_epi8(15)));
}

static inline __m256 xq_iq4_nl_1(__m256 acc, const uint8_t *p, const quant_xq *q, int64_t b) {
    __m256i P = xq_dot_s(xq_iq4_w(p + 2), xq_ld(q->xh + 32 * b), xq_ld(q->xl + 32 * b));
    return xq_fma_free(acc, P, _mm256_set1_ps(xq_f16(p) * q->sx[b]));
}

static float xq_iq4_nl(const uint8_t *p, const quant_xq *q) {
    XQ_BLOCKS_32(xq_iq4_nl_1, block_iq4_nl);
}

static float xq_iq4_xs(const uint8_t *p, const quant_xq *q) {
    __m256 a[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
    float S[8];
    for (int64_t i = 0; i < q->n / QK_K; i++, p += sizeof(block_iq4_xs)) {
        xq_prefetch(p, sizeof(block_iq4_xs));
        xq_iq4_xs_scales(S, p, q->sx + 8 * i);
        for (int s = 0; s < 8; s++) {
            const int64_t b = 8 * i + s;
            __m256i P = xq_dot_s(xq_iq4_w(AT(p, block_iq4_xs, qs) + 16 * s), xq_ld(q->xh + 32 * b),
                                 xq_ld(q->xl + 32 * b));
            a[s & 3] = xq_fma_free(a[s & 3], P, _mm256_set1_ps(S[s]));
        }
    }
    return xq_hsum4(a[0], a[1], a[2], a[3]);
}

// Q4_K's scales of one super-block: S = (d·sc)·sx to memory (broadcast from there), accm +=
// (dmin·m)·xsum, the products xq_q4_K's makes; the 6-bit scales and mins unpacked as
// quant_avx512.inc's xq_q4_K_dm does (two byte shuffles, in vector registers)
static inline __m256 xq_q4_K_scales(float S[8], __m256 accm, const uint8_t *p, const quant_xq *q,
                                    int64_t i) {
    const __m128i raw = _mm_loadu_si128((const void *)p); // d, dmin, s[0..11] at bytes 4..15
    const __m128i v = _mm_shuffle_epi8(
        raw, _mm_setr_epi8(4, 5, 6, 7, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15));
    const __m128i lo = _mm_or_si128(
        _mm_and_si128(v, _mm_setr_epi8(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 0, 0, 0, 0)),
        _mm_and_si128(_mm_srli_epi16(v, 4),
                      _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 15, 15, 15)));
    const __m128i hv = _mm_shuffle_epi8(
        raw, _mm_setr_epi8(-1, -1, -1, -1, 4, 5, 6, 7, -1, -1, -1, -1, 8, 9, 10, 11));
    const __m128i hi =
        _mm_and_si128(_mm_srli_epi16(hv, 2), _mm_setr_epi8(0, 0, 0, 0, 0x30, 0x30, 0x30, 0x30, 0, 0,
                                                           0, 0, 0x30, 0x30, 0x30, 0x30));
    const __m128i scm = _mm_or_si128(lo, hi); // sc_0..7, m_0..7
    const __m256 scf = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(scm));
    const __m256 mf = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(scm, 8)));
    const __m256 dd = _mm256_castps128_ps256(_mm_cvtph_ps(raw)); // d, dmin
    const __m256 d = _mm256_permutevar8x32_ps(dd, _mm256_setzero_si256());
    const __m256 dmin = _mm256_permutevar8x32_ps(dd, _mm256_set1_epi32(1));
    _mm256_storeu_ps(S, _mm256_mul_ps(_mm256_mul_ps(d, scf), _mm256_loadu_ps(q->sx + 8 * i)));
    return _mm256_add_ps(accm,
                         _mm256_mul_ps(_mm256_mul_ps(dmin, mf), _mm256_loadu_ps(q->xsum + 8 * i)));
}

static float xq_q4_K(const uint8_t *p, const quant_xq *q) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, accm = a0;
    const __m256i m4 = _mm256_set1_epi8(15);
    float S[8];
    for (int64_t i = 0; i < q->n / QK_K; i++, p += sizeof(block_q4_K)) {
        xq_prefetch(p, sizeof(block_q4_K));
        accm = xq_q4_K_scales(S, accm, p, q, i);
        const uint8_t *qs = AT(p, block_q4_K, qs);
        const int8_t *xh = q->xh + QK_K * i, *xl = q->xl + QK_K * i;
        for (int c = 0; c < 4; c += 2) { // sub-blocks 2c, 2c+1 (a0, a1), 2c+2, 2c+3 (a2, a3)
            __m256i u = xq_ld(qs + 32 * c), v = xq_ld(qs + 32 * c + 32);
            __m256i P0 = xq_dot_u(_mm256_and_si256(u, m4), xq_ld(xh + 64 * c), xq_ld(xl + 64 * c));
            __m256i P1 = xq_dot_u(_mm256_and_si256(_mm256_srli_epi16(u, 4), m4),
                                  xq_ld(xh + 64 * c + 32), xq_ld(xl + 64 * c + 32));
            __m256i P2 =
                xq_dot_u(_mm256_and_si256(v, m4), xq_ld(xh + 64 * c + 64), xq_ld(xl + 64 * c + 64));
            __m256i P3 = xq_dot_u(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4),
                                  xq_ld(xh + 64 * c + 96), xq_ld(xl + 64 * c + 96));
            a0 = xq_fma_free(a0, P0, _mm256_broadcast_ss(S + 2 * c));
            a1 = xq_fma_free(a1, P1, _mm256_broadcast_ss(S + 2 * c + 1));
            a2 = xq_fma_free(a2, P2, _mm256_broadcast_ss(S + 2 * c + 2));
            a3 = xq_fma_free(a3, P3, _mm256_broadcast_ss(S + 2 * c + 3));
        }
    }
    return xq_hsum4(a0, a1, a2, a3) - xq_hsum256(accm);
}

static float xq_q6_K(const uint8_t *p, const quant_xq *q) {
    __m256 a[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
    const __m256i m4 = _mm256_set1_epi8(15), m30 = _mm256_set1_epi8(0x30);
    float S[16];
    for (int64_t i = 0; i < q->n / QK_K; i++, p += sizeof(block_q6_K)) {
        xq_prefetch(p, sizeof(block_q6_K));
        const __m256 d = _mm256_set1_ps(xq_f16(AT(p, block_q6_K, d)));
        __m128i sc = _mm_loadu_si128((const void *)AT(p, block_q6_K, scales));
        __m256 sx = _mm256_loadu_ps(q->sx + 8 * i);
        __m256 sx0 = _mm256_permutevar8x32_ps(sx, _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3));
        __m256 sx1 = _mm256_permutevar8x32_ps(sx, _mm256_setr_epi32(4, 4, 5, 5, 6, 6, 7, 7));
        __m256 sc0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc));
        __m256 sc1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(sc, 8)));
        _mm256_storeu_ps(S, _mm256_mul_ps(_mm256_mul_ps(d, sc0), sx0)); // per sub-block: (d·sc)·sx
        _mm256_storeu_ps(S + 8, _mm256_mul_ps(_mm256_mul_ps(d, sc1), sx1));
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = AT(p, block_q6_K, ql) + 64 * h;
            __m256i qa = xq_ld(ql), qb = xq_ld(ql + 32), qh = xq_ld(AT(p, block_q6_K, qh) + 32 * h);
            // group r: nibble r/2 of ql[32·(r%2) + l], bits 2r of qh[l] (into bits 4-5)
            __m256i w[4] = {_mm256_or_si256(_mm256_and_si256(qa, m4),
                                            _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30)),
                            _mm256_or_si256(_mm256_and_si256(qb, m4),
                                            _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30)),
                            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qa, 4), m4),
                                            _mm256_and_si256(qh, m30)),
                            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qb, 4), m4),
                                            _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30))};
            for (int r = 0; r < 4; r++) {
                const int64_t b = 8 * i + 4 * h + r;
                const int g = 4 * h + r;
                __m256i P =
                    _mm256_sub_epi32(xq_dot_u(w[r], xq_ld(q->xh + 32 * b), xq_ld(q->xl + 32 * b)),
                                     _mm256_slli_epi32(xq_ld(q->xs4 + 8 * b), 5));
                __m256 Sv =
                    _mm256_set_m128(_mm_broadcast_ss(S + 2 * g + 1), _mm_broadcast_ss(S + 2 * g));
                a[r] = xq_fma_free(a[r], P, Sv);
            }
        }
    }
    return xq_hsum4(a[0], a[1], a[2], a[3]);
}

// Q8_0, R rows (quant.inc, xq_mv_*): per 4 blocks x loaded once for the R rows, and each row's
// four scales d·sx_b from one f16 -> f32 conversion of its four d (the same products as
// xq_q8_0_1's), broadcast from memory
static inline __attribute__((always_inline)) void
xq_mv_q8_0_rows(float *y, const uint8_t *W, size_t rb, const quant_xq *q, const int R) {
    const int64_t nb = q->n / QK8_0, bs = sizeof(block_q8_0);
    __m256 a[2][4];
    float S[2][4];
    for (int r = 0; r < R; r++)
        for (int k = 0; k < 4; k++) a[r][k] = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        const __m128 sx4 = _mm_loadu_ps(q->sx + b);
        for (int r = 0; r < R; r++) {
            const uint8_t *p = W + (size_t)r * rb + b * bs;
            xq_prefetch_next(W, rb, R, r, (size_t)(b * bs), 4 * sizeof(block_q8_0));
            uint64_t d4 = 0; // the four d in a register (four 2-byte stores read as one stall)
            for (int k = 0; k < 4; k++) {
                uint16_t h;
                memcpy(&h, p + k * bs, 2);
                d4 |= (uint64_t)h << (16 * k);
            }
            _mm_storeu_ps(S[r], _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi64_si128((long long)d4)), sx4));
        }
        for (int k = 0; k < 4; k++) {
            const __m256i xh = xq_ld(q->xh + 32 * (b + k)), xl = xq_ld(q->xl + 32 * (b + k));
            for (int r = 0; r < R; r++) {
                const uint8_t *p = W + (size_t)r * rb + (b + k) * bs;
                a[r][k] = xq_fma_free(a[r][k], xq_dot_s(xq_ld(p + 2), xh, xl),
                                      _mm256_broadcast_ss(&S[r][k]));
            }
        }
    }
    for (int r = 0; r < R; r++) { // the tail as XQ_BLOCKS_32's
        const uint8_t *p = W + (size_t)r * rb + b * bs;
        if (b < nb) a[r][0] = xq_q8_0_1(a[r][0], p, q, b);
        if (b + 1 < nb) a[r][1] = xq_q8_0_1(a[r][1], p + bs, q, b + 1);
        if (b + 2 < nb) a[r][2] = xq_q8_0_1(a[r][2], p + 2 * bs, q, b + 2);
        y[r] = xq_hsum4(a[r][0], a[r][1], a[r][2], a[r][3]);
    }
}

XQ_MV_ROWWISE(xq_mv_q4_0, xq_q4_0)
// Q4_K and Q5_K (`five`: bit s of qh[j] the fifth bit of sub-block s's weight j; the scales at
// the same offsets), R rows (quant.inc, xq_mv_*): each block of x loaded once for the R rows; each
// row's sub-block s into its a[s % 4], as xq_q4_K's
static inline __attribute__((always_inline)) void xq_mv_k45_rows(float *y, const uint8_t *W,
                                                                 size_t rb, const quant_xq *q,
                                                                 const int R, const int five) {
    const size_t bs = five ? sizeof(block_q5_K) : sizeof(block_q4_K);
    const size_t qs_at = five ? offsetof(block_q5_K, qs) : offsetof(block_q4_K, qs);
    __m256 a[2][4], accm[2];
    __m256i H[2]; // Q5_K: each row's qh
    float S[2][8];
    const __m256i m4 = _mm256_set1_epi8(15), one = _mm256_set1_epi8(1);
    for (int r = 0; r < R; r++) {
        accm[r] = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) a[r][k] = _mm256_setzero_ps();
    }
    for (int64_t i = 0; i < q->n / QK_K; i++) {
        for (int r = 0; r < R; r++) {
            const uint8_t *p = W + (size_t)r * rb + (size_t)i * bs;
            xq_prefetch_next(W, rb, R, r, (size_t)i * bs, (int)bs);
            accm[r] = xq_q4_K_scales(S[r], accm[r], p, q, i);
            if (five) H[r] = xq_ld(AT(p, block_q5_K, qh));
        }
        const int8_t *xh = q->xh + QK_K * i, *xl = q->xl + QK_K * i;
        for (int c = 0; c < 4; c++) { // sub-blocks 2c (low nibbles), 2c+1 (high) of qs[32c ...]
            const __m256i h0 = xq_ld(xh + 64 * c), l0 = xq_ld(xl + 64 * c);
            const __m256i h1 = xq_ld(xh + 64 * c + 32), l1 = xq_ld(xl + 64 * c + 32);
            const int k = (2 * c) & 3;
            for (int r = 0; r < R; r++) {
                const __m256i u = xq_ld(W + (size_t)r * rb + (size_t)i * bs + qs_at + 32 * c);
                __m256i w0 = _mm256_and_si256(u, m4),
                        w1 = _mm256_and_si256(_mm256_srli_epi16(u, 4), m4);
                if (five) { // bits 2c, 2c+1 of qh to bit 4
                    const __m256i hb = _mm256_srl_epi16(H[r], _mm_cvtsi32_si128(2 * c));
                    w0 = _mm256_or_si256(w0, _mm256_slli_epi16(_mm256_and_si256(hb, one), 4));
                    w1 = _mm256_or_si256(
                        w1, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 1), one), 4));
                }
                a[r][k] =
                    xq_fma_free(a[r][k], xq_dot_u(w0, h0, l0), _mm256_broadcast_ss(&S[r][2 * c]));
                a[r][k + 1] = xq_fma_free(a[r][k + 1], xq_dot_u(w1, h1, l1),
                                          _mm256_broadcast_ss(&S[r][2 * c + 1]));
            }
        }
    }
    for (int r = 0; r < R; r++)
        y[r] = xq_hsum4(a[r][0], a[r][1], a[r][2], a[r][3]) - xq_hsum256(accm[r]);
}

XQ_K45_KERNELS

// Q6_K, R rows: each block of x and its offset correction 32·Σ X loaded once for the R rows;
// each row's weights and (d·sc)·sx as xq_q6_K's
static inline __attribute__((always_inline)) void
xq_mv_q6_K_rows(float *y, const uint8_t *W, size_t rb, const quant_xq *q, const int R) {
    __m256 a[2][4];
    float S[2][16];
    const __m256i m4 = _mm256_set1_epi8(15), m30 = _mm256_set1_epi8(0x30);
    for (int r = 0; r < R; r++)
        for (int k = 0; k < 4; k++) a[r][k] = _mm256_setzero_ps();
    for (int64_t i = 0; i < q->n / QK_K; i++) {
        __m256 sx = _mm256_loadu_ps(q->sx + 8 * i);
        __m256 sx0 = _mm256_permutevar8x32_ps(sx, _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3));
        __m256 sx1 = _mm256_permutevar8x32_ps(sx, _mm256_setr_epi32(4, 4, 5, 5, 6, 6, 7, 7));
        for (int r = 0; r < R; r++) {
            const uint8_t *p = W + (size_t)r * rb + (size_t)i * sizeof(block_q6_K);
            xq_prefetch_next(W, rb, R, r, (size_t)i * sizeof(block_q6_K), sizeof(block_q6_K));
            const __m256 d = _mm256_set1_ps(xq_f16(AT(p, block_q6_K, d)));
            __m128i sc = _mm_loadu_si128((const void *)AT(p, block_q6_K, scales));
            __m256 sc0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc));
            __m256 sc1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(sc, 8)));
            _mm256_storeu_ps(S[r], _mm256_mul_ps(_mm256_mul_ps(d, sc0), sx0));
            _mm256_storeu_ps(S[r] + 8, _mm256_mul_ps(_mm256_mul_ps(d, sc1), sx1));
        }
        for (int h = 0; h < 2; h++) {
            for (int g = 0; g < 4; g++) { // group g: nibble g/2 of ql[32·(g%2) + l], qh bits 2g
                const int64_t b = 8 * i + 4 * h + g;
                const __m256i xh = xq_ld(q->xh + 32 * b), xl = xq_ld(q->xl + 32 * b);
                const __m256i c = _mm256_slli_epi32(xq_ld(q->xs4 + 8 * b), 5);
                for (int r = 0; r < R; r++) {
                    const uint8_t *p = W + (size_t)r * rb + (size_t)i * sizeof(block_q6_K);
                    const __m256i ql = xq_ld(AT(p, block_q6_K, ql) + 64 * h + 32 * (g & 1));
                    const __m256i qh = xq_ld(AT(p, block_q6_K, qh) + 32 * h);
                    const __m256i lo = _mm256_and_si256(g >= 2 ? _mm256_srli_epi16(ql, 4) : ql, m4);
                    const __m256i hi = _mm256_and_si256(g == 0   ? _mm256_slli_epi16(qh, 4)
                                                        : g == 1 ? _mm256_slli_epi16(qh, 2)
                                                        : g == 2 ? qh
                                                                 : _mm256_srli_epi16(qh, 2),
                                                        m30);
                    const __m256i P =
                        _mm256_sub_epi32(xq_dot_u(_mm256_or_si256(lo, hi), xh, xl), c);
                    const int s = 2 * (4 * h + g);
                    const __m256 Sv =
                        _mm256_set_m128(_mm_broadcast_ss(&S[r][s + 1]), _mm_broadcast_ss(&S[r][s]));
                    a[r][g] = xq_fma_free(a[r][g], P, Sv);
                }
            }
        }
    }
    for (int r = 0; r < R; r++) y[r] = xq_hsum4(a[r][0], a[r][1], a[r][2], a[r][3]);
}

XQ_MV_SIDE_KERNELS(2)

// F16, F32 or BF16 rows (quant.inc, mv_f16, mv_f32, mv_bf16) R at a time: per row acc[0..31] in
// four ymm, each x loaded once for the R rows; then dot_f32's fold, its 8-wide tail and its scalar
// tail.
static inline __attribute__((always_inline)) __m256 mv_w8(const uint8_t *p, const int kind) {
    if (kind == MV_F32) return _mm256_loadu_ps((const float *)(const void *)p);
    const __m128i h = _mm_loadu_si128((const void *)p);
    return kind == MV_BF16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
                           : _mm256_cvtph_ps(h);
}

static inline __attribute__((always_inline)) void mv_rows(float *y, const uint8_t *W, size_t rb,
                                                          const float *x, int64_t n, const int R,
                                                          const int kind) {
    const int f32 = kind == MV_F32, es = f32 ? 4 : 2; // bytes a weight
    __m256 a[2][4];
    for (int r = 0; r < R; r++)
        for (int k = 0; k < 4; k++) a[r][k] = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 32 <= n; j += 32) {
        __m256 xv[4];
        for (int k = 0; k < 4; k++) xv[k] = _mm256_loadu_ps(x + j + 8 * k);
        for (int r = 0; r < R; r++) {
            const uint8_t *p = W + (size_t)r * rb + es * j;
            xq_prefetch_next(W, rb, R, r, (size_t)(es * j), 32 * es);
            for (int k = 0; k < 4; k++)
                a[r][k] = _mm256_add_ps(a[r][k], _mm256_mul_ps(mv_w8(p + 8 * es * k, kind), xv[k]));
        }
    }
    for (int r = 0; r < R; r++) {
        const uint8_t *p = W + (size_t)r * rb;
        __m256 a8 = _mm256_add_ps(_mm256_add_ps(a[r][0], a[r][2]), _mm256_add_ps(a[r][1], a[r][3]));
        int64_t jj = j;
        for (; jj + 8 <= n; jj += 8)
            a8 =
                _mm256_add_ps(a8, _mm256_mul_ps(mv_w8(p + es * jj, kind), _mm256_loadu_ps(x + jj)));
        __m128 u = _mm_add_ps(_mm256_castps256_ps128(a8), _mm256_extractf128_ps(a8, 1));
        __m128 v = _mm_add_ps(u, _mm_shuffle_ps(u, u, _MM_SHUFFLE(2, 3, 0, 1))); // u0+u1, u2+u3
        float s = _mm_cvtss_f32(_mm_add_ss(v, _mm_movehl_ps(v, v)));
        for (; jj < n; jj++) {
            float w;
            if (f32)
                memcpy(&w, p + 4 * jj, 4);
            else
                w = kind == MV_BF16 ? bf16_to_f32((uint16_t)(p[2 * jj] | p[2 * jj + 1] << 8))
                                    : xq_f16(p + 2 * jj);
            s += w * x[jj];
        }
        y[r] = s;
    }
}

XQ_MV_FLOAT_KERNELS(2)

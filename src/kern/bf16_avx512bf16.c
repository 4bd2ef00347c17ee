// The bf16 encoder GEMM on AVX-512 BF16 (vdpbf16ps), hand-written: packing in vectors, the
// 8 x 48 tile kernel, the GEMM into z and the GEMM fused with the top-k (sae/bf16.h has the
// layouts and contracts; bf16_gemm_naive there is its oracle). Compiled with AVX-512 F/BW/VL/DQ +
// BF16 flags, reached only through kern_bf16_avx512bf16 on a CPU that has them.
#include <immintrin.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kern/kern.h"
#include "sae/bf16.h"
#include "sae/kernels.h"

static inline uint32_t pair(const float *row, int64_t D, int64_t q) {
    uint32_t lo = bf16_from_f32(row[2 * q]), hi = 2 * q + 1 < D ? bf16_from_f32(row[2 * q + 1]) : 0;
    return lo | hi << 16;
}

static void pack_x(uint32_t *xp, const float *x, int64_t B, int64_t D) {
    const int64_t P = (D + 1) / 2;
    #pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < B; t++) {
        const float *row = x + t * D;
        uint32_t *dst = xp + t * P;
        int64_t q = 0;
        for (; 2 * q + 32 <= D; q += 16) { // the same rounding as bf16_from_f32
            __m512 lo = _mm512_loadu_ps(row + 2 * q), hi = _mm512_loadu_ps(row + 2 * q + 16);
            _mm512_storeu_si512(dst + q, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
        }
        for (; q < P; q++) dst[q] = pair(row, D, q);
    }
}

// Panels in groups of 16 latents: 16 rows x 16 pairs converted in vectors, then transposed
// through a 1 KB block (the scalar rounding of every value took 11 ms a step at 768/24576).
static void pack_w(uint32_t *wp, const float *W, int64_t N, int64_t D) {
    const int64_t P = (D + 1) / 2, npanel = (N + BF16_NR - 1) / BF16_NR;
    #pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < npanel; j++) {
        uint32_t *dst = wp + j * BF16_NR * P;
        for (int64_t i0 = 0; i0 < BF16_NR; i0 += 16) {
            const int64_t n0 = j * BF16_NR + i0;
            int64_t q = 0;
            if (n0 + 16 <= N)
                for (; 2 * q + 32 <= D; q += 16) {
                    uint32_t blk[16][16];
                    for (int r = 0; r < 16; r++) {
                        const float *row = W + (n0 + r) * D + 2 * q;
                        const __m512 lo = _mm512_loadu_ps(row), hi = _mm512_loadu_ps(row + 16);
                        _mm512_storeu_si512(blk[r], (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
                    }
                    for (int c = 0; c < 16; c++)
                        for (int r = 0; r < 16; r++) dst[(q + c) * BF16_NR + i0 + r] = blk[r][c];
                }
            for (; q < P; q++)
                for (int64_t r = 0; r < 16; r++)
                    dst[q * BF16_NR + i0 + r] = n0 + r < N ? pair(W + (n0 + r) * D, D, q) : 0;
        }
    }
}

enum { MR = 8, NV = BF16_NR / 16, MC = 128 };

// Stores rows r0.. of the tile: bias added, `cols` of the panel's 48 columns.
static inline void store_tile(float *z, int64_t ldz, __m512 (*c)[NV], const float *bias, int m, int cols) {
    for (int r = 0; r < m; r++)
        for (int v = 0; v < NV; v++) {
            const int n = cols - 16 * v;
            if (n <= 0) break;
            const __mmask16 k = n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
            _mm512_mask_storeu_ps(z + r * ldz + 16 * v, k, _mm512_add_ps(c[r][v], _mm512_maskz_loadu_ps(k, bias + 16 * v)));
        }
}

// c (MR rows x the panel's 48 columns) = x rows . panel: 24 accumulators in registers (inlined
// into its callers, with a compile-time row count: the tail's run-time one puts them in memory).
static inline __attribute__((always_inline)) void tile_acc(__m512 c[MR][NV], const uint32_t *xa, int64_t P,
                                                           const uint32_t *wp) {
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) c[r][v] = _mm512_setzero_ps();
    for (int64_t q = 0; q < P; q++) {
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512(wp + q * BF16_NR);
        const __m512bh b1 = (__m512bh)_mm512_loadu_si512(wp + q * BF16_NR + 16);
        const __m512bh b2 = (__m512bh)_mm512_loadu_si512(wp + q * BF16_NR + 32);
        #pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            const __m512bh a = (__m512bh)_mm512_set1_epi32((int)xa[r * P + q]);
            c[r][0] = _mm512_dpbf16_ps(c[r][0], a, b0);
            c[r][1] = _mm512_dpbf16_ps(c[r][1], a, b1);
            c[r][2] = _mm512_dpbf16_ps(c[r][2], a, b2);
        }
    }
}

// The tile plus bias into z (streamed past the cache when aligned and full).
static void micro(float *z, int64_t ldz, const uint32_t *xa, int64_t P, const uint32_t *wp, const float *bias,
                  int cols, int stream) {
    __m512 c[MR][NV];
    tile_acc(c, xa, P, wp);
    if (stream && cols == BF16_NR) // z is not read again before it leaves the cache: no read for ownership
        for (int r = 0; r < MR; r++)
            for (int v = 0; v < NV; v++)
                _mm512_stream_ps(z + r * ldz + 16 * v, _mm512_add_ps(c[r][v], _mm512_loadu_ps(bias + 16 * v)));
    else
        store_tile(z, ldz, c, bias, MR, cols);
}

// The last m < MR rows of the batch.
static void micro_tail(float *z, int64_t ldz, const uint32_t *xa, int64_t P, const uint32_t *wp,
                       const float *bias, int m, int cols) {
    __m512 c[MR][NV];
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) c[r][v] = _mm512_setzero_ps();
    for (int64_t q = 0; q < P; q++)
        for (int r = 0; r < m; r++) {
            const __m512bh a = (__m512bh)_mm512_set1_epi32((int)xa[r * P + q]);
            for (int v = 0; v < NV; v++)
                c[r][v] = _mm512_dpbf16_ps(c[r][v], a, (__m512bh)_mm512_loadu_si512(wp + q * BF16_NR + 16 * v));
        }
    store_tile(z, ldz, c, bias, m, cols);
}
// Each thread takes a contiguous range of panels; rows go in blocks of MC (their packed x, MC P
// words, stays in L2 while the thread's panels stream past) and micro-tiles of MR x 48.
static void gemm(float *z, const uint32_t *xp, const uint32_t *wp, const float *bias, int64_t B,
               int64_t N, int64_t D) {
    const int64_t P = (D + 1) / 2, npanel = (N + BF16_NR - 1) / BF16_NR;
    // streaming stores need 64-byte aligned tiles: z aligned and rows a multiple of 16 floats
    const int stream = (uintptr_t)z % 64 == 0 && N % 16 == 0;
    #pragma omp parallel
    {
        const int64_t nt = omp_get_num_threads(), id = omp_get_thread_num();
        const int64_t p0 = npanel * id / nt, p1 = npanel * (id + 1) / nt;
        for (int64_t t0 = 0; t0 < B; t0 += MC)
            for (int64_t j = p0; j < p1; j++) {
                const int cols = (int)(N - j * BF16_NR < BF16_NR ? N - j * BF16_NR : BF16_NR);
                for (int64_t t = t0; t < t0 + MC && t < B; t += MR) {
                    float *zt = z + t * N + j * BF16_NR;
                    const uint32_t *xt = xp + t * P, *wj = wp + j * BF16_NR * P;
                    if (B - t >= MR) micro(zt, N, xt, P, wj, bias + j * BF16_NR, cols, stream);
                    else micro_tail(zt, N, xt, P, wj, bias + j * BF16_NR, (int)(B - t), cols);
                }
            }
        _mm_sfence(); // the streamed stores before the barrier that ends the region
    }
}

// ---- fused with TopK -------------------------------------------------------------------------
// Per thread and row, a buffer of candidates above the row's cutoff (0 at first: only h > 0
// enters), in the order they came, which is increasing latent index. When the buffer fills it is
// cut to its K best by topk_select_unsorted (kernels.h: the K-th value by a binary search over the
// bits, ties to the lowest position, so to the lowest latent) and the cutoff becomes the K-th
// value: a later value equal to it has a higher index and loses. (A heap per row spent 35 ms a
// step at 768/24576/32 on sift-downs, a quickselect 30.)
typedef struct {
    float *v;   // (B, cap)
    int32_t *i; // (B, cap)
    int *n;     // (B)
    float *thr; // (B) the cutoff
    int K, cap;
    int32_t *sidx; // this thread's scratch for the cut: K positions, K values, cap keys
    float *sval, *skey;
} row_sel;

// Keeps the K best of the row's n > K candidates, in their order; the cutoff rises to the K-th.
static void cut(row_sel *s, int64_t row) {
    float *v = s->v + row * s->cap;
    int32_t *ix = s->i + row * s->cap;
    const int c = topk_select_unsorted(s->sidx, s->sval, v, s->n[row], s->K, s->skey);
    float lo = s->sval[0];
    for (int j = 0; j < c; j++) { // positions ascend: in place
        v[j] = s->sval[j], ix[j] = ix[s->sidx[j]];
        lo = s->sval[j] < lo ? s->sval[j] : lo;
    }
    s->n[row] = c, s->thr[row] = lo;
}

// A row's buffer holds cap = 4 K + 16 entries: it is cut once it reaches 4 K, so that the up
// to 16 values of one vector always fit.
static inline void maybe_cut(row_sel *s, int64_t row) {
    if (s->n[row] >= s->cap - 16) cut(s, row);
}

static inline void take(row_sel *s, int64_t row, int32_t i, float v) {
    const int n = s->n[row]++;
    s->v[row * s->cap + n] = v, s->i[row * s->cap + n] = i;
    maybe_cut(s, row);
}

// The 8-row tile as micro() computes it, then each value h = (z + bias) * scale compared with its
// row's cutoff in registers; only the values above it leave them.
static void micro_topk(row_sel *s, int64_t t, const uint32_t *xa, int64_t P, const uint32_t *wp,
                       const float *bias, const float *scale, int64_t base, int cols) {
    __m512 c[MR][NV];
    tile_acc(c, xa, P, wp);
    const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    for (int v = 0; v < NV; v++) {
        const int n = cols - 16 * v;
        if (n <= 0) break;
        const __mmask16 k = n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
        const __m512 bv = _mm512_maskz_loadu_ps(k, bias + 16 * v);
        const __m512 sv = scale ? _mm512_maskz_loadu_ps(k, scale + 16 * v) : _mm512_set1_ps(1.0f);
        for (int r = 0; r < MR; r++) {
            __m512 h = _mm512_add_ps(c[r][v], bv);
            if (scale) h = _mm512_mul_ps(h, sv);
            const __mmask16 hit = _mm512_mask_cmp_ps_mask(k, h, _mm512_set1_ps(s->thr[t + r]), _CMP_GT_OQ);
            if (!hit) continue;
            // the values above the cutoff, appended in lane (= index) order
            const int64_t at = (t + r) * s->cap + s->n[t + r];
            _mm512_mask_compressstoreu_ps(s->v + at, hit, h);
            _mm512_mask_compressstoreu_epi32(s->i + at, hit, _mm512_add_epi32(_mm512_set1_epi32((int)(base + 16 * v)), lane));
            s->n[t + r] += __builtin_popcount(hit);
            maybe_cut(s, t + r);
        }
    }
}

static int gemm_topk(int32_t *idx, float *val, int *cnt, const uint32_t *xp, const uint32_t *wp,
                   const float *bias, const float *scale, int64_t B, int64_t N, int64_t D, int K) {
    const int64_t P = (D + 1) / 2, npanel = (N + BF16_NR - 1) / BF16_NR;
    const int nt = omp_get_max_threads() < 64 ? omp_get_max_threads() : 64;
    const int cap = 4 * K + 16;
    float *bv = malloc((size_t)(nt * B * cap) * sizeof(float));
    int32_t *bi = malloc((size_t)(nt * B * cap) * sizeof(int32_t));
    int *num = calloc((size_t)(nt * B), sizeof(int));
    float *thr = calloc((size_t)(nt * B), sizeof(float)); // 0: only h > 0 enters
    int32_t *sidx = malloc((size_t)(nt * K) * sizeof(int32_t));
    float *sbuf = malloc((size_t)(nt * (K + cap)) * sizeof(float));
    if (!bv || !bi || !num || !thr || !sidx || !sbuf) {
        free(bv), free(bi), free(num), free(thr), free(sidx), free(sbuf);
        return -1;
    }
    int used = 1;
    #pragma omp parallel num_threads(nt)
    {
        const int64_t n_t = omp_get_num_threads(), id = omp_get_thread_num();
        #pragma omp single
        used = (int)n_t;
        const int64_t p0 = npanel * id / n_t, p1 = npanel * (id + 1) / n_t;
        row_sel rs = {bv + id * B * cap, bi + id * B * cap, num + id * B, thr + id * B, K, cap,
                      sidx + id * K, sbuf + id * (K + cap), sbuf + id * (K + cap) + K};
        float tile[MR][BF16_NR];
        for (int64_t t0 = 0; t0 < B; t0 += MC)
            for (int64_t j = p0; j < p1; j++) {
                const int cols = (int)(N - j * BF16_NR < BF16_NR ? N - j * BF16_NR : BF16_NR);
                const uint32_t *wj = wp + j * BF16_NR * P;
                const float *sj = scale ? scale + j * BF16_NR : NULL;
                for (int64_t t = t0; t < t0 + MC && t < B; t += MR) {
                    if (B - t >= MR) {
                        micro_topk(&rs, t, xp + t * P, P, wj, bias + j * BF16_NR, sj, j * BF16_NR, cols);
                        continue;
                    }
                    const int m = (int)(B - t); // the last rows: through a stored tile
                    micro_tail(&tile[0][0], BF16_NR, xp + t * P, P, wj, bias + j * BF16_NR, m, cols);
                    for (int r = 0; r < m; r++)
                        for (int e = 0; e < cols; e++) {
                            const float h = sj ? tile[r][e] * sj[e] : tile[r][e];
                            if (h > rs.thr[t + r]) take(&rs, t + r, (int32_t)(j * BF16_NR + e), h);
                        }
                }
            }
    }
    // per row: each thread's candidates cut to K and sorted best first, then merged
    #pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t t = 0; t < B; t++) {
        int pos[64] = {0}, len[64];
        const int me = omp_get_thread_num();
        for (int th = 0; th < used; th++) {
            float *v = bv + (th * B + t) * cap;
            int32_t *ix = bi + (th * B + t) * cap;
            row_sel rs = {bv + th * B * cap, bi + th * B * cap, num + th * B, thr + th * B, K, cap,
                          sidx + me * K, sbuf + me * (K + cap), sbuf + me * (K + cap) + K};
            if (num[th * B + t] > K) cut(&rs, t);
            const int n = num[th * B + t];
            for (int q = 1; q < n; q++) { // insertion sort, best first (n <= K; ties by index)
                const float x = v[q];
                const int32_t xi = ix[q];
                int p = q;
                for (; p > 0 && (x > v[p - 1] || (x == v[p - 1] && xi < ix[p - 1])); p--)
                    v[p] = v[p - 1], ix[p] = ix[p - 1];
                v[p] = x, ix[p] = xi;
            }
            len[th] = n;
        }
        int c = 0;
        for (; c < K; c++) {
            int best = -1;
            float b_v = 0;
            int32_t b_i = 0;
            for (int th = 0; th < used; th++) {
                if (pos[th] == len[th]) continue;
                const int64_t q = (th * B + t) * cap + pos[th];
                if (best < 0 || bv[q] > b_v || (bv[q] == b_v && bi[q] < b_i)) best = th, b_v = bv[q], b_i = bi[q];
            }
            if (best < 0) break;
            pos[best]++;
            idx[t * K + c] = b_i, val[t * K + c] = b_v;
        }
        cnt[t] = c;
    }
    free(bv), free(bi), free(num), free(thr), free(sidx), free(sbuf);
    return 0;
}

const kern_bf16 kern_bf16_avx512bf16 = {pack_x, pack_w, gemm, gemm_topk};

#include "sae/bf16.h"

#include <omp.h>
#include <string.h>

#ifdef __AVX512BF16__
#include <immintrin.h>
#endif

uint16_t bf16_from_f32(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1); // round to nearest, ties to even
    return (uint16_t)(u >> 16);
}

float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

int64_t bf16_packed_x_words(int64_t B, int64_t D) { return B * ((D + 1) / 2); }
int64_t bf16_packed_w_words(int64_t N, int64_t D) {
    return (N + BF16_NR - 1) / BF16_NR * BF16_NR * ((D + 1) / 2);
}

static inline uint32_t pair(const float *row, int64_t D, int64_t q) {
    uint32_t lo = bf16_from_f32(row[2 * q]), hi = 2 * q + 1 < D ? bf16_from_f32(row[2 * q + 1]) : 0;
    return lo | hi << 16;
}

void bf16_pack_x(uint32_t *xp, const float *x, int64_t B, int64_t D) {
    const int64_t P = (D + 1) / 2;
    #pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < B; t++) {
        const float *row = x + t * D;
        uint32_t *dst = xp + t * P;
        int64_t q = 0;
#ifdef __AVX512BF16__
        for (; 2 * q + 32 <= D; q += 16) { // the same rounding as bf16_from_f32
            __m512 lo = _mm512_loadu_ps(row + 2 * q), hi = _mm512_loadu_ps(row + 2 * q + 16);
            _mm512_storeu_si512(dst + q, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
        }
#endif
        for (; q < P; q++) dst[q] = pair(row, D, q);
    }
}

// Panels in groups of 16 latents: 16 rows x 16 pairs converted in vectors, then transposed
// through a 1 KB block (the scalar rounding of every value took 11 ms a step at 768/24576).
void bf16_pack_w(uint32_t *wp, const float *W, int64_t N, int64_t D) {
    const int64_t P = (D + 1) / 2, npanel = (N + BF16_NR - 1) / BF16_NR;
    #pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < npanel; j++) {
        uint32_t *dst = wp + j * BF16_NR * P;
        for (int64_t i0 = 0; i0 < BF16_NR; i0 += 16) {
            const int64_t n0 = j * BF16_NR + i0;
            int64_t q = 0;
#ifdef __AVX512BF16__
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
#endif
            for (; q < P; q++)
                for (int64_t r = 0; r < 16; r++)
                    dst[q * BF16_NR + i0 + r] = n0 + r < N ? pair(W + (n0 + r) * D, D, q) : 0;
        }
    }
}

#ifdef __AVX512BF16__
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

// C (MR rows x the panel's 48 columns) = bias + x rows . panel: 24 accumulators in registers
// (a separate function from the tail's, whose run-time row count would put them in memory).
static void micro(float *z, int64_t ldz, const uint32_t *xa, int64_t P, const uint32_t *wp, const float *bias,
                  int cols, int stream) {
    __m512 c[MR][NV];
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
#endif

int bf16_available(void) {
#ifdef __AVX512BF16__
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

const char *bf16_why_unavailable(void) {
#ifdef __AVX512BF16__
    return bf16_available() ? "it is available" : "this CPU has no AVX-512 BF16";
#else
    return "this build has no AVX-512 BF16 (build with -march=native on a CPU that has it)";
#endif
}

// Each thread takes a contiguous range of panels; rows go in blocks of MC (their packed x, MC P
// words, stays in L2 while the thread's panels stream past) and micro-tiles of MR x 48.
void bf16_gemm(float *z, const uint32_t *xp, const uint32_t *wp, const float *bias, int64_t B,
               int64_t N, int64_t D) {
#ifdef __AVX512BF16__
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
#else
    (void)z, (void)xp, (void)wp, (void)bias, (void)B, (void)N, (void)D;
#endif
}

void bf16_gemm_naive(float *z, const float *x, const float *W, const float *bias, int64_t B,
                     int64_t N, int64_t D) {
    for (int64_t t = 0; t < B; t++)
        for (int64_t n = 0; n < N; n++) {
            double s = 0;
            for (int64_t d = 0; d < D; d++)
                s += (double)bf16_to_f32(bf16_from_f32(x[t * D + d])) * bf16_to_f32(bf16_from_f32(W[n * D + d]));
            z[t * N + n] = (float)(s + bias[n]);
        }
}

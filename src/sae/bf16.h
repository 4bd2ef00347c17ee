// The encoder GEMM in bfloat16 (config field encoder_bf16, off by default): z = b_enc + xc W_enc^T
// with both inputs rounded to bf16 (round to nearest even) and f32 accumulation, on AVX-512 BF16
// (vdpbf16ps: twice the multiply-adds of an f32 FMA). The trainer chooses the top-k on these z
// and recomputes the chosen pairs' values in f32 (arch.c), so only the choice near the k-th
// value can differ from the f32 path, never the values or gradients of what was chosen.
//
// Layouts (u32 = two bf16, the lower index in the low half, as vdpbf16ps pairs them):
//   packed x (B, P) with P = ceil(D / 2): row t holds xc_t's pairs (odd D: last high half 0);
//   packed W (ceil(N / 48) panels, P, 48): panel j, pair q, lane i = (W_enc[48 j + i][2q], [2q+1])
//   (latents past N are zero).
#ifndef CTERP_SAE_BF16_H
#define CTERP_SAE_BF16_H

#include <stdint.h>

enum { BF16_NR = 48 }; // latents per packed panel

// 1 when this build and this CPU can run the bf16 GEMM (built with AVX-512 BF16 and the CPU has it).
int bf16_available(void);
// Why not, in words (for errors).
const char *bf16_why_unavailable(void);

// Sizes in u32 words of the packed buffers.
int64_t bf16_packed_x_words(int64_t B, int64_t D);
int64_t bf16_packed_w_words(int64_t N, int64_t D);

// f32 -> bf16 bits, round to nearest even (NaN stays NaN; subnormals become +-0, as the AVX-512
// conversion does).
uint16_t bf16_from_f32(float f);
float bf16_to_f32(uint16_t h);

void bf16_pack_x(uint32_t *xp, const float *x, int64_t B, int64_t D);
void bf16_pack_w(uint32_t *wp, const float *W, int64_t N, int64_t D);

// z (B, N) = bias + x W^T from the packed operands. Requires bf16_available().
void bf16_gemm(float *z, const uint32_t *xp, const uint32_t *wp, const float *bias, int64_t B,
               int64_t N, int64_t D);

// The same GEMM fused with TopK, no z written: per row t the (up to) K largest
// h_i = z_ti * scale_i (scale NULL: 1) that are > 0, ties by the lowest index, best first, in
// idx/val[t K ..] with their count in cnt[t] (as topk_row on the row of bf16_gemm's z). At most 64
// threads. Returns 0, or -1 when out of memory (per-thread heaps: threads x B x K entries).
int bf16_gemm_topk(int32_t *idx, float *val, int *cnt, const uint32_t *xp, const uint32_t *wp,
                   const float *bias, const float *scale, int64_t B, int64_t N, int64_t D, int K);

// Naive twin: the same bf16-rounded inputs, products summed in double.
void bf16_gemm_naive(float *z, const float *x, const float *W, const float *bias, int64_t B,
                     int64_t N, int64_t D);

#endif

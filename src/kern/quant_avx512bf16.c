// Dequantization and dot products of GGUF rows for the avx512bf16 variant (AVX-512 + BF16 +
// VNNI): quant.inc compiled with its flags (CMakeLists.txt, CTERP_ISA_FLAGS_avx512bf16), and the
// integer dots of quant_avx512.inc on vpdpbusd.
#define KERN_ISA avx512bf16
#define QUANT_XQ_ISA
#define QUANT_MV_F32
#include "kern/quant.inc"

#include <immintrin.h>

// 256·Σ q·xh + Σ q·xl over each 4 bytes, q unsigned (vpdpbusd: u8 x s8, no saturation)
static inline __m512i xq_dot_u(__m512i q, __m512i xh, __m512i xl) {
    __m512i h = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, xh);
    return _mm512_dpbusd_epi32(_mm512_slli_epi32(h, 8), q, xl);
}

// signed w: w + 128 is unsigned, then take 128·Σ X back off
static inline __m512i xq_dot_s(__m512i w, __m512i xh, __m512i xl, __m512i xs4) {
    __m512i u = _mm512_xor_si512(w, _mm512_set1_epi8((char)0x80));
    return _mm512_sub_epi32(xq_dot_u(u, xh, xl), _mm512_slli_epi32(xs4, 7));
}

#define XQ_DOT_U_ANY_BYTE 1 // vpdpbusd: any unsigned q (quant_avx512.inc)
#include "kern/quant_avx512.inc"

// Dequantization and dot products of GGUF rows for AVX-512 F/BW/VL/DQ (x86-64-v4): quant.inc
// compiled with that variant's flags (CMakeLists.txt, CTERP_ISA_FLAGS_avx512), and the integer dots
// of quant_avx512.inc on pmaddubsw + pmaddwd.
#define KERN_ISA avx512
#define QUANT_XQ_ISA
#define QUANT_MV_F32
#include "kern/quant.inc"

#include <immintrin.h>

// 256·Σ q·xh + Σ q·xl over each 4 bytes, q unsigned <= 128 with |x| <= 127: pmaddubsw's pairs stay
// below 2·128·127 = 32512, no saturation
static inline __m512i xq_dot_u(__m512i q, __m512i xh, __m512i xl) {
    __m512i h = _mm512_madd_epi16(_mm512_maddubs_epi16(q, xh), _mm512_set1_epi16(256));
    return _mm512_add_epi32(h,
                            _mm512_madd_epi16(_mm512_maddubs_epi16(q, xl), _mm512_set1_epi16(1)));
}

// signed w: |w| against x with w's sign
static inline __m512i xq_dot_s(__m512i w, __m512i xh, __m512i xl, __m512i xs4) {
    (void)xs4;
    __mmask64 neg = _mm512_movepi8_mask(w);
    const __m512i z = _mm512_setzero_si512();
    return xq_dot_u(_mm512_abs_epi8(w), _mm512_mask_sub_epi8(xh, neg, z, xh),
                    _mm512_mask_sub_epi8(xl, neg, z, xl));
}

#define XQ_DOT_U_ANY_BYTE 0 // pmaddubsw: q <= 128 (quant_avx512.inc)
#include "kern/quant_avx512.inc"

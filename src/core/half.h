// IEEE half (f16) and bfloat16 <-> f32 conversions, exact for every bit pattern
// (round-to-nearest-even when narrowing; NaN stays NaN).
#ifndef CTERP_CORE_HALF_H
#define CTERP_CORE_HALF_H

#include <stdint.h>
#include <string.h>

static inline float half_bits_to_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint32_t half_f32_to_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0) {
        if (man == 0) return half_bits_to_f32(sign);
        // subnormal: value = man * 2^-24
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    if (exp == 31) return half_bits_to_f32(sign | 0x7f800000u | (man << 13));
    return half_bits_to_f32(sign | ((exp + 112) << 23) | (man << 13));
}

static inline uint16_t f32_to_f16(float f) {
    uint32_t x = half_f32_to_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0); // inf/nan
    if (ax >= 0x477ff000u) return sign | 0x7c00;                                 // overflow
    if (ax < 0x38800000u) {                                                      // subnormal/zero
        if (ax < 0x33000000u) return sign;                                       // < 2^-25 -> 0
        uint32_t e = ax >> 23, m = (ax & 0x7fffff) | 0x800000;
        int shift = 126 - (int)e; // 14..24 : value m * 2^(e-150), target unit 2^-24
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return sign | (uint16_t)q;
    }
    uint32_t r = ax + 0xfffu + ((ax >> 13) & 1); // round to nearest even
    return sign | (uint16_t)((r - 0x38000000u) >> 13);
}

static inline float bf16_to_f32(uint16_t h) { return half_bits_to_f32((uint32_t)h << 16); }

static inline uint16_t f32_to_bf16(float f) {
    uint32_t x = half_f32_to_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); // quiet NaN
    x += 0x7fffu + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

#endif

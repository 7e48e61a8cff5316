// IEEE binary16 and bfloat16 <-> binary32, bit-exact with round-to-nearest-even.
#include <string.h>

#include "quant/quant.h"
#include "quant/quant_impl.h"

static inline uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

float vm_fp16_to_fp32(uint16_t h) { return fp16_to_f32(h); }

uint16_t vm_fp32_to_fp16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a >= 0x7f800000u)  // inf stays inf; NaN keeps its top payload bits and is made quiet
        return (uint16_t)(sign | 0x7c00 | (a > 0x7f800000u ? 0x200 | ((a >> 13) & 0x3ff) : 0));
    if (a >= 0x47800000u) return sign | 0x7c00;  // >= 2^16: beyond every rounding of 65504
    if (a < 0x38800000u) {
        // below 2^-14: fp16 subnormal (units of 2^-24); 2^-25 and less round to 0 (tie -> even 0)
        if (a <= 0x33000000u) return sign;
        uint32_t e = a >> 23, mant = (a & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e;  // 14..24
        uint32_t h = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) h++;  // may carry into the smallest normal: fine
        return (uint16_t)(sign | h);
    }
    uint32_t h = (((a >> 23) - 112) << 10) | ((a >> 13) & 0x3ff);
    uint32_t rem = a & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;  // a carry into the exponent is correct (even to inf)
    return (uint16_t)(sign | h);
}

float vm_bf16_to_fp32(uint16_t h) { return bf16_to_f32(h); }

uint16_t vm_fp32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);  // NaN: keep it quiet
    // cannot overflow 32 bits: the largest non-NaN pattern is 0xff800000
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

// Helpers shared by the AVX2 level's files (simd_avx2.c, simd_avx2_int8.c). Include it after the
// avx2,fma,f16c target pragma: the intrinsics below need that target.
#pragma once
#include <immintrin.h>
#include <stdint.h>

#include "quant/quant_impl.h"

#define AI static inline __attribute__((always_inline))

// ((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7)): the usual 256-bit horizontal sum
AI float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AI int32_t hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
    return _mm_cvtsi128_si32(s);
}

// A Q8_0 block's 32 signed weights, or a Q4_0 block's 32 nibbles minus 8 (element j in the low
// nibble of byte j, j + 16 in the high nibble), in element order.
AI __m256i q40_q80_unpack(const uint8_t *w, const int four) {
    if (!four) return _mm256_loadu_si256((const __m256i *)(w + 2));
    const __m128i b = _mm_loadu_si128((const __m128i *)(w + 2));
    const __m256i q = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(b, 4), b), _mm256_set1_epi8(0x0f));
    return _mm256_sub_epi8(q, _mm256_set1_epi8(8));
}

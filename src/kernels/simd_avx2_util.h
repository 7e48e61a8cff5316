// Helpers shared by the AVX2 level's files (simd_avx2*.c) and the AVX-512 ones (simd_avx512*.c).
// Include it after the target pragma (avx2,fma,f16c at least): the intrinsics below need it.
#pragma once
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "quant/quant_impl.h"

#define AI static inline __attribute__((always_inline))

// vm_exp_neg (kernels/exp_neg.h) on 8 lanes: the same operations in the same order, so the same
// bits for non-NaN x. Include kernels/exp_neg.h first.
#ifdef VM_EXP_MIN
AI __m256 exp_neg8(__m256 x) {
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(VM_EXP_LOG2E)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(VM_EXP_LN2_HI), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(VM_EXP_LN2_LO), r);
    __m256 p = _mm256_set1_ps(VM_EXP_P0);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(VM_EXP_P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(VM_EXP_P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(VM_EXP_P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(VM_EXP_P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(VM_EXP_P5));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    p = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), _mm256_slli_epi32(_mm256_cvtps_epi32(n), 23)));
    // x < VM_EXP_MIN (-inf included) -> 0; an unordered compare is false, so NaN passes through
    return _mm256_andnot_ps(_mm256_cmp_ps(x, _mm256_set1_ps(VM_EXP_MIN), _CMP_LT_OQ), p);
}

// vm_sigmoid on 8 lanes (same bits): the sign bit picks e / (1 + e) (for -0 both give 1/2).
AI __m256 sigmoid8(__m256 g) {
    const __m256 e = exp_neg8(_mm256_or_ps(g, _mm256_set1_ps(-0.0f))), d = _mm256_add_ps(_mm256_set1_ps(1.0f), e);
    return _mm256_blendv_ps(_mm256_div_ps(_mm256_set1_ps(1.0f), d), _mm256_div_ps(e, d), g);
}
#endif

// ((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7)): the usual 256-bit horizontal sum
AI float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// r[i] lane j <- r[j] lane i (an 8x8 transpose)
AI void transpose8(__m256 r[8]) {
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xee);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xee);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20); r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20); r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20); r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20); r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
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

// The 8 scales and 8 mins of a Q4_K/Q5_K block (12 bytes at s) as bytes, vm_kscale_get(s, j) for
// j = 0..7: j < 4 keep the low 6 bits of s[j] / s[j+4]; j >= 4 take a nibble of s[j+4] below the
// top 2 bits of s[j-4] / s[j]. On 32-bit words a = s[0..3], b = s[4..7], c = s[8..11].
AI void kscales8(const uint8_t *s, uint64_t *sc, uint64_t *mn) {
    uint32_t a, b, c;
    memcpy(&a, s, 4);
    memcpy(&b, s + 4, 4);
    memcpy(&c, s + 8, 4);
    const uint32_t lo6 = 0x3f3f3f3fu, lo4 = 0x0f0f0f0fu, lo2 = 0x03030303u;
    *sc = (a & lo6) | (uint64_t)((c & lo4) | (((a >> 6) & lo2) << 4)) << 32;
    *mn = (b & lo6) | (uint64_t)(((c >> 4) & lo4) | (((b >> 6) & lo2) << 4)) << 32;
}

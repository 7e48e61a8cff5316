// AVX-512F f32 tiles: as simd_avx2.c's f32 kernel with 16-lane accumulators (4 rows x 3 tokens,
// 8 rows x 1 token). The 16 lanes are folded to 8 (lane j + lane j+8) and then summed as the AVX2
// level does; the C % 16 tail follows in order. Used only when the CPU reports avx512f.
// NOTE: not exercised on the development machine (no AVX-512 there); tests/test_simd.c covers it
// wherever the CPU has it.
#include "kernels/simd.h"

#ifdef VM_SIMD_X86
#ifdef __clang__   // clang ignores GCC target pragmas
#pragma clang attribute push(__attribute__((target("avx512f,avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma,f16c")
#endif
#include <immintrin.h>

#define AI static inline __attribute__((always_inline))

AI float hsum16(__m512 v) {
    const __m256 lo = _mm512_castps512_ps256(v);
    const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    const __m256 h8 = _mm256_add_ps(lo, hi);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AI void tile16(float *out, size_t ldo, const float *w, size_t ldw, const float *x, size_t ldx,
               int64_t C, const int R, const int T) {
    __m512 acc[8][3];
    #pragma GCC unroll 8
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 8
        for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= C; k += 16) {
        __m512 xv[3];
        #pragma GCC unroll 8
        for (int t = 0; t < T; t++) xv[t] = _mm512_loadu_ps(x + (size_t)t * ldx + k);
        #pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            const __m512 wv = _mm512_loadu_ps(w + (size_t)r * ldw + k);
            #pragma GCC unroll 8
            for (int t = 0; t < T; t++) acc[r][t] = _mm512_fmadd_ps(wv, xv[t], acc[r][t]);
        }
    }
    #pragma GCC unroll 8
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            float s = hsum16(acc[r][t]);
            for (int64_t j = k; j < C; j++) s += w[(size_t)r * ldw + j] * x[(size_t)t * ldx + j];
            out[(size_t)t * ldo + r] = s;
        }
}

#define TILE(R_, T_) tile16(out + (size_t)t0 * ldo + r0, ldo, w + (size_t)r0 * ldw, ldw, x + (size_t)t0 * ldx, ldx, C, R_, T_)

void vm_avx512_f32_rows(float *out, size_t ldo, const float *w, size_t ldw, const float *x, size_t ldx,
                        int R, int B, int64_t C) {
    int t0 = 0;
    for (; t0 + 3 <= B; t0 += 3) {
        int r0 = 0;
        for (; r0 + 4 <= R; r0 += 4) TILE(4, 3);
        for (; r0 < R; r0++) TILE(1, 3);
    }
    const int T = B - t0;
    if (T == 2) {
        int r0 = 0;
        for (; r0 + 6 <= R; r0 += 6) TILE(6, 2);
        for (; r0 < R; r0++) TILE(1, 2);
    } else if (T == 1) {
        int r0 = 0;
        for (; r0 + 8 <= R; r0 += 8) TILE(8, 1);
        for (; r0 < R; r0++) TILE(1, 1);
    }
}
#undef TILE

#ifdef __clang__
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

// The AVX-512 level's own f32 kernels: the AVX2 level's arithmetic, element for element, with two
// 8-lane accumulators in one 512-bit register. Compiled for avx512f whatever the build flags; used
// only when simd_dispatch.c says the CPU has the level.
//
// Why the bits are the same as the AVX2 level's (simd_avx2.c), and so do not depend on the level
// any more than on the tile or the thread count:
// - f32_rows: an output is an 8-lane FMA accumulator over C in chunks of 8 (lane l sums the
//   products of elements l, l+8, ... in order), then hsum_ps's fixed tree ((a0+a4)+(a2+a6)) +
//   ((a1+a5)+(a3+a7)), then the C % 8 tail in order. Here the low half of a register is token t's
//   accumulator and the high half token t+1's: every lane does the same FMAs as before, only two
//   outputs at once. The horizontal sums of 8 such registers (8 rows x 2 tokens) run together with
//   shuffles that add exactly the pairs of that tree, lane-wise (hsum16x8). Odd tokens and rows past
//   a multiple of 8 take the AVX2 kernel itself.
// - axpy_rows: per element of di, the products g[idx[k]] * w rounded then added in row order; lanes
//   are independent, so 16 lanes (and masked lanes for the tail) are the same roundings as 8.
#include "kernels/simd.h"

#ifdef VM_SIMD_X86
#ifdef __clang__   // clang ignores GCC target pragmas
#pragma clang attribute push(__attribute__((target("avx512f,avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma,f16c")
#endif
#include <immintrin.h>

#include "kernels/simd_avx2_util.h"

// ---- f32 ---------------------------------------------------------------------------------------

// 8 floats at a and 8 at b as one register: a low, b high (AVX512F only: the f64x4 insert).
AI __m512 load_pair(const float *a, const float *b) {
    const __m512d lo = _mm512_castpd256_pd512(_mm256_castps_pd(_mm256_loadu_ps(a)));
    return _mm512_castpd_ps(_mm512_insertf64x4(lo, _mm256_castps_pd(_mm256_loadu_ps(b)), 1));
}

// 8 floats at a in both halves.
AI __m512 load_twice(const float *a) {
    return _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_castps_pd(_mm256_loadu_ps(a))));
}

// v[r] holds two 8-lane accumulators (row r: token t low, token t+1 high). Returns lane r = row r's
// sum for token t and lane 8 + r = its sum for token t+1, each added in hsum_ps's order. Per 128-bit
// block: step 1 adds a half's lanes l and l+4, step 2 the step-1 sums 0+2 and 1+3, step 3 those two.
AI __m512 hsum16x8(const __m512 v[8]) {
    __m512 x[4];
    #pragma GCC unroll 4
    for (int j = 0; j < 4; j++)   // blocks: (row j, t), (row j, t+1), (row j+4, t), (row j+4, t+1)
        x[j] = _mm512_add_ps(_mm512_shuffle_f32x4(v[j], v[j + 4], _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(v[j], v[j + 4], _MM_SHUFFLE(3, 1, 3, 1)));
    // per block: lanes (x0: 0+2, x1: 0+2, x0: 1+3, x1: 1+3)
    const __m512 a = _mm512_add_ps(_mm512_unpacklo_ps(x[0], x[1]), _mm512_unpackhi_ps(x[0], x[1]));
    const __m512 b = _mm512_add_ps(_mm512_unpacklo_ps(x[2], x[3]), _mm512_unpackhi_ps(x[2], x[3]));
    // per block: lanes x0, x1, x2, x3 (rows j of the block's (row j or j+4, token))
    const __m512 s = _mm512_add_ps(_mm512_shuffle_ps(a, b, 0x44), _mm512_shuffle_ps(a, b, 0xee));
    // blocks (rows 0-3, t), (0-3, t+1), (4-7, t), (4-7, t+1) -> rows 0-7 of t, then of t+1
    return _mm512_shuffle_f32x4(s, s, _MM_SHUFFLE(3, 1, 2, 0));
}

// 8 rows x 2P tokens (P pairs, 8P accumulators, constants after inlining).
AI void f32_tile16(float *out, size_t ldo, const float *w, size_t ldw, const float *x, size_t ldx, int64_t C,
                   const int P) {
    __m512 acc[3][8];
    #pragma GCC unroll 3
    for (int p = 0; p < P; p++)
        #pragma GCC unroll 8
        for (int r = 0; r < 8; r++) acc[p][r] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= C; k += 8) {
        __m512 xv[3];
        #pragma GCC unroll 3
        for (int p = 0; p < P; p++) xv[p] = load_pair(x + (size_t)(2 * p) * ldx + k, x + (size_t)(2 * p + 1) * ldx + k);
        #pragma GCC unroll 8
        for (int r = 0; r < 8; r++) {
            const __m512 wv = load_twice(w + (size_t)r * ldw + k);
            #pragma GCC unroll 3
            for (int p = 0; p < P; p++) acc[p][r] = _mm512_fmadd_ps(wv, xv[p], acc[p][r]);
        }
    }
    #pragma GCC unroll 3
    for (int p = 0; p < P; p++) {
        const __m512 s = hsum16x8(acc[p]);
        float *o = out + (size_t)(2 * p) * ldo;
        if (k == C) {
            _mm256_storeu_ps(o, _mm512_castps512_ps256(s));
            _mm256_storeu_ps(o + ldo, _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(s), 1)));
            continue;
        }
        // the C % 8 tail in order, with the AVX2 kernel's very expression (a compiler that
        // contracts it to an FMA there does here too)
        float h[16];
        _mm512_storeu_ps(h, s);
        for (int u = 0; u < 2; u++) {
            const float *xt = x + (size_t)(2 * p + u) * ldx;
            for (int r = 0; r < 8; r++) {
                float sum = h[8 * u + r];
                for (int64_t j = k; j < C; j++) sum += w[(size_t)r * ldw + j] * xt[j];
                o[(size_t)u * ldo + r] = sum;
            }
        }
    }
}

#define TILE(P_) f32_tile16(out + (size_t)t0 * ldo + r0, ldo, w + (size_t)r0 * ldw, ldw, x + (size_t)t0 * ldx, ldx, C, P_)

void vm_avx512_f32_rows(float *out, size_t ldo, const float *w, size_t ldw, const float *x, size_t ldx, int R, int B,
                        int64_t C) {
    if (B < 2) {   // a lone token (decode): the AVX2 level's 8 x 1 tiles
        vm_avx2_f32_rows(out, ldo, w, ldw, x, ldx, R, B, C);
        return;
    }
    const int R8 = R & ~7, B2 = B & ~1;
    int t0 = 0;
    for (; t0 + 6 <= B2; t0 += 6)
        for (int r0 = 0; r0 < R8; r0 += 8) TILE(3);
    if (B2 - t0 == 4)
        for (int r0 = 0; r0 < R8; r0 += 8) TILE(2);
    else if (B2 - t0 == 2)
        for (int r0 = 0; r0 < R8; r0 += 8) TILE(1);
    if (B2 < B && R8)   // the odd token
        vm_avx2_f32_rows(out + (size_t)B2 * ldo, ldo, w, ldw, x + (size_t)B2 * ldx, ldx, R8, 1, C);
    if (R8 < R)   // the rows past a multiple of 8, every token
        vm_avx2_f32_rows(out + R8, ldo, w + (size_t)R8 * ldw, ldw, x, ldx, R - R8, B, C);
}
#undef TILE

// ---- backward: rows of W scaled into one row of dinp --------------------------------------------

// di[0 .. 16 NV) (the last vector masked by `last`) += the m rows, each product rounded, then
// added: NV accumulators in registers across the rows.
AI void axpy_block(float *di, const float *g, const float *wt, size_t ldw, const int *idx, int m, const int NV,
                   __mmask16 last) {
    __m512 s[8];
    #pragma GCC unroll 8
    for (int v = 0; v < NV; v++)
        s[v] = v < NV - 1 ? _mm512_loadu_ps(di + 16 * v) : _mm512_maskz_loadu_ps(last, di + 16 * v);
    for (int k = 0; k < m; k++) {
        const __m512 a = _mm512_set1_ps(g[idx[k]]);
        const float *wr = wt + (size_t)idx[k] * ldw;
        #pragma GCC unroll 8
        for (int v = 0; v < NV; v++) {
            const __m512 wv = v < NV - 1 ? _mm512_loadu_ps(wr + 16 * v) : _mm512_maskz_loadu_ps(last, wr + 16 * v);
            s[v] = _mm512_add_ps(s[v], _mm512_mul_ps(a, wv));
        }
    }
    #pragma GCC unroll 8
    for (int v = 0; v < NV; v++) {
        if (v < NV - 1) _mm512_storeu_ps(di + 16 * v, s[v]);
        else _mm512_mask_storeu_ps(di + 16 * v, last, s[v]);
    }
}

// Blocks of up to 128 floats of di: C = 64 is one pass of 4 registers, C = 97 one of 7.
void vm_avx512_axpy_rows(float *di, const float *g, const float *wt, size_t ldw, const int *idx, int m, int64_t C) {
    for (int64_t c0 = 0; c0 < C; c0 += 128) {
        const int n = C - c0 < 128 ? (int)(C - c0) : 128, nv = (n + 15) / 16;
        const __mmask16 last = (__mmask16)(0xffffu >> (16 * nv - n));
        float *d = di + c0;
        const float *w = wt + c0;
        switch (nv) {
        case 1: axpy_block(d, g, w, ldw, idx, m, 1, last); break;
        case 2: axpy_block(d, g, w, ldw, idx, m, 2, last); break;
        case 3: axpy_block(d, g, w, ldw, idx, m, 3, last); break;
        case 4: axpy_block(d, g, w, ldw, idx, m, 4, last); break;
        case 5: axpy_block(d, g, w, ldw, idx, m, 5, last); break;
        case 6: axpy_block(d, g, w, ldw, idx, m, 6, last); break;
        case 7: axpy_block(d, g, w, ldw, idx, m, 7, last); break;
        default: axpy_block(d, g, w, ldw, idx, m, 8, last); break;
        }
    }
}

// Two tokens at once: axpy_block's operations for each token (a row whose g_t[j] is 0 leaves
// token t's accumulators as they are: a masked add), sharing the row loads. Two independent
// chains of adds per register of di instead of one: the adds' latency no longer sets the pace.
AI void axpy_block2(float *d0, float *d1, const float *g0, const float *g1, const float *wt, size_t ldw, int n,
                    const int NV, __mmask16 last) {
    __m512 s0[8], s1[8];
    #pragma GCC unroll 8
    for (int v = 0; v < NV; v++) {
        s0[v] = v < NV - 1 ? _mm512_loadu_ps(d0 + 16 * v) : _mm512_maskz_loadu_ps(last, d0 + 16 * v);
        s1[v] = v < NV - 1 ? _mm512_loadu_ps(d1 + 16 * v) : _mm512_maskz_loadu_ps(last, d1 + 16 * v);
    }
    const __m512 zero = _mm512_setzero_ps();
    for (int j = 0; j < n; j++) {
        const __m512 a0 = _mm512_set1_ps(g0[j]), a1 = _mm512_set1_ps(g1[j]);
        // g != 0 as in axpy_rows's caller (kernels/backward.c): -0 is 0, NaN is not
        const __mmask16 k0 = _mm512_cmp_ps_mask(a0, zero, _CMP_NEQ_UQ), k1 = _mm512_cmp_ps_mask(a1, zero, _CMP_NEQ_UQ);
        if (!(k0 | k1)) continue;
        const float *wr = wt + (size_t)j * ldw;
        #pragma GCC unroll 8
        for (int v = 0; v < NV; v++) {
            const __m512 wv = v < NV - 1 ? _mm512_loadu_ps(wr + 16 * v) : _mm512_maskz_loadu_ps(last, wr + 16 * v);
            s0[v] = _mm512_mask_add_ps(s0[v], k0, s0[v], _mm512_mul_ps(a0, wv));
            s1[v] = _mm512_mask_add_ps(s1[v], k1, s1[v], _mm512_mul_ps(a1, wv));
        }
    }
    #pragma GCC unroll 8
    for (int v = 0; v < NV; v++) {
        if (v < NV - 1) {
            _mm512_storeu_ps(d0 + 16 * v, s0[v]);
            _mm512_storeu_ps(d1 + 16 * v, s1[v]);
        } else {
            _mm512_mask_storeu_ps(d0 + 16 * v, last, s0[v]);
            _mm512_mask_storeu_ps(d1 + 16 * v, last, s1[v]);
        }
    }
}

void vm_avx512_axpy_rows2(float *di0, float *di1, const float *g0, const float *g1, const float *wt, size_t ldw, int n,
                          int64_t C) {
    for (int64_t c0 = 0; c0 < C; c0 += 128) {
        const int m = C - c0 < 128 ? (int)(C - c0) : 128, nv = (m + 15) / 16;
        const __mmask16 last = (__mmask16)(0xffffu >> (16 * nv - m));
        float *d0 = di0 + c0, *d1 = di1 + c0;
        const float *w = wt + c0;
        switch (nv) {
        case 1: axpy_block2(d0, d1, g0, g1, w, ldw, n, 1, last); break;
        case 2: axpy_block2(d0, d1, g0, g1, w, ldw, n, 2, last); break;
        case 3: axpy_block2(d0, d1, g0, g1, w, ldw, n, 3, last); break;
        case 4: axpy_block2(d0, d1, g0, g1, w, ldw, n, 4, last); break;
        case 5: axpy_block2(d0, d1, g0, g1, w, ldw, n, 5, last); break;
        case 6: axpy_block2(d0, d1, g0, g1, w, ldw, n, 6, last); break;
        case 7: axpy_block2(d0, d1, g0, g1, w, ldw, n, 7, last); break;
        default: axpy_block2(d0, d1, g0, g1, w, ldw, n, 8, last); break;
        }
    }
}

// ---- rmsnorm: 8 rows in the lanes ---------------------------------------------------------------

// vm_rmsnorm_forward (kernels/ops.c) on rows 0-7 of C floats: lane u of a double vector is row u's
// sum of squares, added in element order (x*x is exact in double, so fused or not the same bits),
// then 1 / sqrt(ss / C + eps) in double (correctly rounded, as the scalar ops) rounded to float,
// and o = (x scale) w in float, lane-wise. Row by row, these took a latency-bound chain of
// double adds each.
void vm_avx512_rmsnorm8(float *out, const float *inp, const float *weight, int C, float eps) {
    __m512d ss = _mm512_setzero_pd();
    int i = 0;
    for (; i + 8 <= C; i += 8) {
        __m256 r[8];
        for (int u = 0; u < 8; u++) r[u] = _mm256_loadu_ps(inp + (size_t)u * C + i);
        transpose8(r);   // r[d] lane u = row u's element i + d
        #pragma GCC unroll 8
        for (int d = 0; d < 8; d++) {
            const __m512d x = _mm512_cvtps_pd(r[d]);
            ss = _mm512_add_pd(ss, _mm512_mul_pd(x, x));
        }
    }
    const __m256i rows = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(C));
    for (; i < C; i++) {
        const __m512d x = _mm512_cvtps_pd(_mm256_i32gather_ps(inp + i, rows, 4));
        ss = _mm512_add_pd(ss, _mm512_mul_pd(x, x));
    }
    const __m512d m = _mm512_add_pd(_mm512_div_pd(ss, _mm512_set1_pd((double)C)), _mm512_set1_pd((double)eps));
    float sc[8];
    _mm256_storeu_ps(sc, _mm512_cvtpd_ps(_mm512_div_pd(_mm512_set1_pd(1.0), _mm512_sqrt_pd(m))));
    for (int u = 0; u < 8; u++) {
        const float *x = inp + (size_t)u * C;
        float *o = out + (size_t)u * C;
        const __m512 s = _mm512_set1_ps(sc[u]);
        int j = 0;
        for (; j + 16 <= C; j += 16)
            _mm512_storeu_ps(o + j, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + j), s), _mm512_loadu_ps(weight + j)));
        if (j < C) {
            const __mmask16 k = (__mmask16)((1u << (C - j)) - 1);
            _mm512_mask_storeu_ps(o + j, k, _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + j), s),
                                                          _mm512_maskz_loadu_ps(k, weight + j)));
        }
    }
}

#ifdef __clang__
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

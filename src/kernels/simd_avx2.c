// AVX2 + FMA + F16C level, compiled for that target whatever the build flags; used only when
// __builtin_cpu_supports says so (simd_dispatch.c).
// - f32: register tiles of up to 4 weight rows x 3 tokens (8 rows x 1 token for a single token):
//   one 8-lane FMA accumulator per output element over C, the same 256-bit horizontal sum, then the
//   C % 8 tail in order. The operations an element gets do not depend on its tile.
// - quantised weights x int8 activations: simd_avx2_int8.c.
// - dequantisation and the backward's axpy_rows with the portable level's roundings.
// - attention forward and backward: simd_avx2_attn.c.
#include "kernels/simd.h"

#ifdef VM_SIMD_X86
#ifdef __clang__   // clang ignores GCC target pragmas
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/exp_neg.h"
#include "kernels/simd_avx2_util.h"

// ---- f32 ---------------------------------------------------------------------------------------

// R rows x T tokens (R*T <= 12 accumulators, constants after inlining).
AI void f32_tile(float *out, size_t ldo, const float *w, size_t ldw, const float *x, size_t ldx,
                 int64_t C, const int R, const int T) {
    __m256 acc[8][3];
    #pragma GCC unroll 8
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 8
        for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= C; k += 8) {
        __m256 xv[3];
        #pragma GCC unroll 8
        for (int t = 0; t < T; t++) xv[t] = _mm256_loadu_ps(x + (size_t)t * ldx + k);
        #pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            const __m256 wv = _mm256_loadu_ps(w + (size_t)r * ldw + k);
            #pragma GCC unroll 8
            for (int t = 0; t < T; t++) acc[r][t] = _mm256_fmadd_ps(wv, xv[t], acc[r][t]);
        }
    }
    #pragma GCC unroll 8
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            float s = hsum_ps(acc[r][t]);
            for (int64_t j = k; j < C; j++) s += w[(size_t)r * ldw + j] * x[(size_t)t * ldx + j];
            out[(size_t)t * ldo + r] = s;
        }
}

#define TILE(R_, T_) f32_tile(out + (size_t)t0 * ldo + r0, ldo, w + (size_t)r0 * ldw, ldw, x + (size_t)t0 * ldx, ldx, C, R_, T_)

void vm_avx2_f32_rows(float *out, size_t ldo, const float *w, size_t ldw, const float *x, size_t ldx,
                      int R, int B, int64_t C) {
    int t0 = 0;
    for (; t0 + 3 <= B; t0 += 3) {
        int r0 = 0;
        for (; r0 + 4 <= R; r0 += 4) TILE(4, 3);
        for (; r0 < R; r0++) TILE(1, 3);
    }
    const int T = B - t0;   // 0, 1 or 2 tokens left
    if (T == 2) {
        int r0 = 0;
        for (; r0 + 6 <= R; r0 += 6) TILE(6, 2);
        for (; r0 < R; r0++) TILE(1, 2);
    } else if (T == 1) {
        int r0 = 0;
        for (; r0 + 8 <= R; r0 += 8) TILE(8, 1);
        for (; r0 + 4 <= R; r0 += 4) TILE(4, 1);
        for (; r0 < R; r0++) TILE(1, 1);
    }
}
#undef TILE

// ---- dequantisation: vm_dequant_row's bits (exact conversions, the same float products) ------------

static void f16_row(const uint8_t *s, float *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + 2 * i))));
    for (; i < n; i++) dst[i] = fp16_to_f32(rd_u16(s + 2 * i));
}

static void bf16_row(const uint8_t *s, float *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(s + 2 * i)));
        _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(h, 16)));
    }
    for (; i < n; i++) dst[i] = bf16_to_f32(rd_u16(s + 2 * i));
}

// Q8_0 / Q4_0: y = q * d per element (q exact in float)
static void q40_q80_dequant(const uint8_t *b, float *y, int64_t nb, const int four) {
    const size_t bsz = four ? QB_Q4_0 : QB_Q8_0;
    for (int64_t i = 0; i < nb; i++, b += bsz, y += 32) {
        const __m256 d = _mm256_set1_ps(_cvtsh_ss(rd_u16(b)));
        const __m256i q = q40_q80_unpack(b, four);
        const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
        _mm256_storeu_ps(y, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)), d));
        _mm256_storeu_ps(y + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))), d));
        _mm256_storeu_ps(y + 16, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)), d));
        _mm256_storeu_ps(y + 24, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))), d));
    }
}

static void dequant_row(vm_type type, const void *src, float *dst, int64_t n) {
    switch (type) {
    case VM_TYPE_F16: f16_row(src, dst, n); return;
    case VM_TYPE_BF16: bf16_row(src, dst, n); return;
    case VM_TYPE_Q8_0: if (n % 32 == 0) { q40_q80_dequant(src, dst, n / 32, 0); return; } break;
    case VM_TYPE_Q4_0: if (n % 32 == 0) { q40_q80_dequant(src, dst, n / 32, 1); return; } break;
    default: break;
    }
    vm_dequant_row(type, src, dst, n);   // the K-quants and every error case
}

// ---- backward: rows of W scaled into one row of dinp (kernels/backward.c) ----------------------------

// Four 8-lane partial rows of di stay in registers across the m rows; products and sums are rounded
// separately, as at the portable level, so the bits are the same.
static void axpy_rows(float *di, const float *g, const float *wt, size_t ldw, const int *idx, int m, int64_t C) {
    int64_t c0 = 0;
    for (; c0 + 32 <= C; c0 += 32) {
        __m256 s0 = _mm256_loadu_ps(di + c0), s1 = _mm256_loadu_ps(di + c0 + 8);
        __m256 s2 = _mm256_loadu_ps(di + c0 + 16), s3 = _mm256_loadu_ps(di + c0 + 24);
        for (int k = 0; k < m; k++) {
            const __m256 a = _mm256_set1_ps(g[idx[k]]);
            const float *wr = wt + (size_t)idx[k] * ldw + (size_t)c0;
            s0 = _mm256_add_ps(s0, _mm256_mul_ps(a, _mm256_loadu_ps(wr)));
            s1 = _mm256_add_ps(s1, _mm256_mul_ps(a, _mm256_loadu_ps(wr + 8)));
            s2 = _mm256_add_ps(s2, _mm256_mul_ps(a, _mm256_loadu_ps(wr + 16)));
            s3 = _mm256_add_ps(s3, _mm256_mul_ps(a, _mm256_loadu_ps(wr + 24)));
        }
        _mm256_storeu_ps(di + c0, s0);
        _mm256_storeu_ps(di + c0 + 8, s1);
        _mm256_storeu_ps(di + c0 + 16, s2);
        _mm256_storeu_ps(di + c0 + 24, s3);
    }
    for (; c0 + 8 <= C; c0 += 8) {
        __m256 s0 = _mm256_loadu_ps(di + c0);
        for (int k = 0; k < m; k++)
            s0 = _mm256_add_ps(s0, _mm256_mul_ps(_mm256_set1_ps(g[idx[k]]), _mm256_loadu_ps(wt + (size_t)idx[k] * ldw + (size_t)c0)));
        _mm256_storeu_ps(di + c0, s0);
    }
    for (int64_t c = c0; c < C; c++) {
        float s = di[c];
        for (int k = 0; k < m; k++) {
            const float t = g[idx[k]] * wt[(size_t)idx[k] * ldw + (size_t)c];
            s += t;
        }
        di[c] = s;
    }
}

// ---- SwiGLU: vm_swiglu_scalar / vm_swiglu_backward_scalar's steps 8 lanes at a time (same bits) -----

static void swiglu(float *out, const float *gate, const float *up, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 g = _mm256_loadu_ps(gate + i);
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(g, sigmoid8(g)), _mm256_loadu_ps(up + i)));
    }
    if (i < n) vm_swiglu_scalar(out + i, gate + i, up + i, n - i);
}

static void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int n) {
    const __m256 one = _mm256_set1_ps(1.0f);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 g = _mm256_loadu_ps(gate + i), sg = sigmoid8(g), go = _mm256_loadu_ps(dout + i);
        const __m256 f = _mm256_add_ps(one, _mm256_mul_ps(g, _mm256_sub_ps(one, sg)));
        const __m256 dg = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(go, _mm256_loadu_ps(up + i)), sg), f);
        _mm256_storeu_ps(dgate + i, _mm256_add_ps(_mm256_loadu_ps(dgate + i), dg));
        _mm256_storeu_ps(dup + i, _mm256_add_ps(_mm256_loadu_ps(dup + i), _mm256_mul_ps(_mm256_mul_ps(go, g), sg)));
    }
    if (i < n) vm_swiglu_backward_scalar(dgate + i, dup + i, dout + i, gate + i, up + i, n - i);
}

const vm_simd_kernels vm_simd_avx2 = { vm_avx2_f32_rows, vm_avx2_act_rows, vm_avx2_act_quant, dequant_row, axpy_rows, vm_avx2_attention,
                                       vm_avx2_attention_backward, swiglu, swiglu_backward, &vm_avx2_gemm, NULL, NULL };
// AVX-VNNI: the same, with vpdpbusd in the batched int8 products (simd_avx2_gemm.c)
const vm_simd_kernels vm_simd_avxvnni = { vm_avx2_f32_rows, vm_avx2_act_rows, vm_avx2_act_quant, dequant_row, axpy_rows, vm_avx2_attention,
                                       vm_avx2_attention_backward, swiglu, swiglu_backward, &vm_avxvnni_gemm, NULL, NULL };
// AVX-512: 16 tokens a vector in the batched int8 products; f32 tiles and axpy_rows with two of
// this level's 8-lane accumulators per 512-bit register (simd_avx512.c: the same bits; 16-lane
// accumulators, another summation order, measured 0.7x these 8-lane ones on a Zen 5); the rest is
// this level's.
const vm_simd_kernels vm_simd_avx512 = { vm_avx512_f32_rows, vm_avx2_act_rows, vm_avx2_act_quant, dequant_row, vm_avx512_axpy_rows, vm_avx512_attention,
                                       vm_avx512_attention_backward, swiglu, swiglu_backward, &vm_avx512_gemm,
                                       vm_avx512_axpy_rows2, vm_avx512_rmsnorm8 };

#ifdef __clang__
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

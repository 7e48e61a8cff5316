// AVX2 + FMA + F16C level, compiled for that target whatever the build flags; used only when
// __builtin_cpu_supports says so (simd_dispatch.c).
// - f32: register tiles of up to 4 weight rows x 3 tokens (8 rows x 1 token for a single token):
//   one 8-lane FMA accumulator per output element over C, the same 256-bit horizontal sum, then the
//   C % 8 tail in order. The operations an element gets do not depend on its tile.
// - quantised weights x int8 activations: simd_avx2_int8.c.
// - dequantisation and the backward's axpy_rows with the portable level's roundings; attention.
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

static void f32_rows(float *out, size_t ldo, const float *w, size_t ldw, const float *x, size_t ldx,
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

// ---- attention --------------------------------------------------------------------------------------

enum { ATT_CHUNK = 64 };   // keys scored before one softmax rescale; chunks start at absolute positions

AI float dot_hd(const float *a, const float *b, int n) {
    __m256 acc = _mm256_setzero_ps();
    int d = 0;
    for (; d + 8 <= n; d += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + d), _mm256_loadu_ps(b + d), acc);
    float s = hsum_ps(acc);
    for (; d < n; d++) s += a[d] * b[d];
    return s;
}

// lane j = the sum of the 8 lanes of v[j], added in hsum_ps's order ((l0+l4)+(l2+l6)) +
// ((l1+l5)+(l3+l7)), so a score is the same float whether its key was scored alone or with 7 others
AI __m256 hsum8x8_ps(const __m256 v[8]) {
    __m256 x[4];
    #pragma GCC unroll 4
    for (int j = 0; j < 4; j++)   // halves added: v[j]'s 4 sums low, v[j+4]'s high
        x[j] = _mm256_add_ps(_mm256_permute2f128_ps(v[j], v[j + 4], 0x20), _mm256_permute2f128_ps(v[j], v[j + 4], 0x31));
    const __m256 a = _mm256_add_ps(_mm256_unpacklo_ps(x[0], x[1]), _mm256_unpackhi_ps(x[0], x[1]));
    const __m256 b = _mm256_add_ps(_mm256_unpacklo_ps(x[2], x[3]), _mm256_unpackhi_ps(x[2], x[3]));
    return _mm256_add_ps(_mm256_shuffle_ps(a, b, 0x44), _mm256_shuffle_ps(a, b, 0xee));
}

// One query head over n_kv cached positions, a chunk of keys at a time: the chunk's scores (8 keys
// per pass over q, each one's sum as dot_hd's), their maximum, one rescale of what was accumulated
// when the maximum grows, then o += e_j v_j with slices of o in registers. The float operations of
// every output element are those of a key-by-key update (same bits as before this layout), and
// every query takes them whatever its batch.
static void attend_one(float *o, const float *qv, const float *kc, const float *vc, size_t kv_stride,
                       int n_kv, int hd, float scale) {
    float s[ATT_CHUNK] __attribute__((aligned(32)));
    float mx = -INFINITY, sum = 0.0f;
    const int hv = hd & ~7;   // the vector part of a head
    for (int d = 0; d < hd; d++) o[d] = 0.0f;
    for (int t0 = 0; t0 < n_kv; t0 += ATT_CHUNK) {
        const int n = n_kv - t0 < ATT_CHUNK ? n_kv - t0 : ATT_CHUNK;
        const float *k0 = kc + (size_t)t0 * kv_stride, *v0 = vc + (size_t)t0 * kv_stride;
        int j = 0;
        for (; j + 8 <= n; j += 8) {
            __m256 acc[8];
            #pragma GCC unroll 8
            for (int u = 0; u < 8; u++) acc[u] = _mm256_setzero_ps();
            for (int d = 0; d < hv; d += 8) {
                const __m256 q8 = _mm256_loadu_ps(qv + d);
                #pragma GCC unroll 8
                for (int u = 0; u < 8; u++) acc[u] = _mm256_fmadd_ps(q8, _mm256_loadu_ps(k0 + (size_t)(j + u) * kv_stride + d), acc[u]);
            }
            float sc[8];
            _mm256_storeu_ps(sc, hsum8x8_ps(acc));
            for (int u = 0; u < 8; u++) {   // head tails in dot_hd's order
                for (int d = hv; d < hd; d++) sc[u] += qv[d] * k0[(size_t)(j + u) * kv_stride + d];
                s[j + u] = sc[u] * scale;
            }
        }
        for (; j < n; j++) s[j] = dot_hd(qv, k0 + (size_t)j * kv_stride, hd) * scale;
        float cmax = -INFINITY;
        for (j = 0; j < n; j++) cmax = s[j] > cmax ? s[j] : cmax;
        float r = 1.0f;
        if (cmax > mx) { r = expf(mx - cmax); sum *= r; mx = cmax; }
        for (j = 0; j < n; j++) {
            s[j] = expf(s[j] - mx);
            sum += s[j];
        }
        // o = o r + sum_j e_j v_j, 32 (then 8) floats of o at a time in registers: per element the
        // multiply-adds of one key after another, as a key-by-key update would do them
        int d0 = 0;
        for (; d0 + 32 <= hd; d0 += 32) {
            __m256 ov[4];
            #pragma GCC unroll 4
            for (int u = 0; u < 4; u++) ov[u] = _mm256_mul_ps(_mm256_set1_ps(r), _mm256_loadu_ps(o + d0 + 8 * u));
            for (j = 0; j < n; j++) {
                const __m256 e = _mm256_set1_ps(s[j]);
                const float *v = v0 + (size_t)j * kv_stride + d0;
                #pragma GCC unroll 4
                for (int u = 0; u < 4; u++) ov[u] = _mm256_fmadd_ps(e, _mm256_loadu_ps(v + 8 * u), ov[u]);
            }
            #pragma GCC unroll 4
            for (int u = 0; u < 4; u++) _mm256_storeu_ps(o + d0 + 8 * u, ov[u]);
        }
        for (; d0 + 8 <= hd; d0 += 8) {
            __m256 ov = _mm256_mul_ps(_mm256_set1_ps(r), _mm256_loadu_ps(o + d0));
            for (j = 0; j < n; j++) ov = _mm256_fmadd_ps(_mm256_set1_ps(s[j]), _mm256_loadu_ps(v0 + (size_t)j * kv_stride + d0), ov);
            _mm256_storeu_ps(o + d0, ov);
        }
        for (; d0 < hd; d0++) {   // tails: product, then sum
            float a = r * o[d0];
            for (j = 0; j < n; j++) {
                const float b = s[j] * v0[(size_t)j * kv_stride + d0];
                a += b;
            }
            o[d0] = a;
        }
    }
    const __m256 inv = _mm256_set1_ps(1.0f / sum);
    int d = 0;
    for (; d + 8 <= hd; d += 8) _mm256_storeu_ps(o + d, _mm256_mul_ps(inv, _mm256_loadu_ps(o + d)));
    for (; d < hd; d++) o[d] *= 1.0f / sum;
}

static void attention(float *out, const float *q, const float *kc, const float *vc, int n_past, int B,
                      int n_head, int n_head_kv, int hd, float scale) {
    const int group = n_head / n_head_kv;
    const size_t q_stride = (size_t)n_head * hd, kv_stride = (size_t)n_head_kv * hd;
    const int64_t n_items = (int64_t)B * n_head;
    #pragma omp parallel for schedule(static) if (n_items > 1 && (int64_t)(n_past + B) * n_items * hd > 32768)
    for (int64_t it = 0; it < n_items; it++) {
        const int b = (int)(it / n_head), h = (int)(it % n_head), hk = h / group;
        attend_one(out + (size_t)b * q_stride + (size_t)h * hd, q + (size_t)b * q_stride + (size_t)h * hd,
                   kc + (size_t)hk * hd, vc + (size_t)hk * hd, kv_stride, n_past + b + 1, hd, scale);
    }
}

const vm_simd_kernels vm_simd_avx2 = { f32_rows, vm_avx2_act_rows, vm_avx2_act_quant, dequant_row, axpy_rows, attention,
                                       &vm_avx2_gemm };
// AVX-VNNI: the same, with vpdpbusd in the batched int8 products (simd_avx2_gemm.c)
const vm_simd_kernels vm_simd_avxvnni = { f32_rows, vm_avx2_act_rows, vm_avx2_act_quant, dequant_row, axpy_rows, attention,
                                          &vm_avxvnni_gemm };
// AVX-512: 16 tokens a vector in the batched int8 products; the rest is this level's (16-lane f32
// tiles measured 0.7x these 8-lane ones on the first AVX-512 machine it ran on, a Zen 5).
const vm_simd_kernels vm_simd_avx512 = { f32_rows, vm_avx2_act_rows, vm_avx2_act_quant, dequant_row, axpy_rows, attention,
                                         &vm_avx512_gemm };

#ifdef __clang__
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

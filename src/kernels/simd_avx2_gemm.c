// Batched products of quantised weights with int8 activations (several tokens): the gemm entries
// of the AVX2 and AVX-VNNI levels. The single-token tiles (simd_avx2_int8.c) reduce each block's
// 32 products of a (row, token) pair across the lanes of a vector, then transpose 8 pairs' sums;
// at batch 64 that reduction costs as much as the products (Q8_0 ran at 0.8-1.0x the F32 kernel).
// Here lanes are tokens instead, so nothing is reduced:
// - gemm_pack, once per matmul: 8 tokens' int8 activations interleaved by 4-element groups, one
//   32-byte vector per group holding those 4 elements of each token, with the tokens' scales and
//   the sums of x that the weights' offsets and mins need;
// - gemm_rows: a tile of 4 weight rows x 2 token groups; each row's block is unpacked once to
//   unsigned bytes (vpdpbusd's unsigned operand: Q8_0 as w + 128, Q4_0 as the nibble, Q6_K as
//   q + 32 before its offset), then per 4-element group a broadcast of the row's 4 bytes meets the
//   group vector: one vpdpbusd (or vpmaddubsw + vpmaddwd) adds 4 products for 8 tokens. The offsets
//   come back from the token sums: sum (w + c) x - c sum x.
// The integers are q8act.c's exact block sums and the float steps are its steps, lane by lane, so
// the bits equal every other level's (tests/test_simd.c).
#include "kernels/simd.h"

#ifdef VM_SIMD_X86
#ifdef __clang__   // clang ignores GCC target pragmas
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif
#include <immintrin.h>
#include <string.h>

#include "kernels/simd_avx2_util.h"

enum {
    GEMM_RT = 4,      // weight rows per tile (4 int32 accumulators, 4 float ones per token group)
    GEMM_GMAX = 32,   // token groups (of 8) per pass: their float accumulators live on the stack
};

// One group of GW tokens (8 for 256-bit vectors, 16 for 512-bit): [C/4 element groups x 4 GW bytes]
// [nb x GW scales][nb x per-block sums]; the sums are c sum x (int32 per token) for Q8_0 (c = 128) /
// Q4_0 (c = 8), and int16 pairs per token of the 32-element sums (Q4_K/Q5_K, 4 pairs) or of the
// 16-element sums (Q6_K, 8 pairs).
static size_t gemm_d_off(int64_t nb, int bs, int gw) { return (size_t)nb * (size_t)bs * (size_t)gw; }
static size_t gemm_s_off(int64_t nb, int bs, int gw) { return gemm_d_off(nb, bs, gw) + (size_t)nb * 4 * (size_t)gw; }
static size_t gemm_s_bytes(vm_type type, int gw) {
    return (size_t)gw * (type == VM_TYPE_Q6_K ? 32 : vm_act_block(type) == 256 ? 16 : 4);
}

static size_t gemm_group_bytes(vm_type type, int64_t C, int gw) {
    const int bs = vm_act_block(type);
    const int64_t nb = C / bs;
    return gemm_s_off(nb, bs, gw) + (size_t)nb * gemm_s_bytes(type, gw);
}

// 8 rows of 8 dwords -> 8 columns (column j: dword j of each row)
AI void transpose8x8_epi32(__m256i v[8]) {
    __m256i t[8], u[8];
    for (int k = 0; k < 4; k++) {
        t[2 * k] = _mm256_unpacklo_epi32(v[2 * k], v[2 * k + 1]);
        t[2 * k + 1] = _mm256_unpackhi_epi32(v[2 * k], v[2 * k + 1]);
    }
    for (int h = 0; h < 2; h++) {
        u[4 * h + 0] = _mm256_unpacklo_epi64(t[4 * h], t[4 * h + 2]);
        u[4 * h + 1] = _mm256_unpackhi_epi64(t[4 * h], t[4 * h + 2]);
        u[4 * h + 2] = _mm256_unpacklo_epi64(t[4 * h + 1], t[4 * h + 3]);
        u[4 * h + 3] = _mm256_unpackhi_epi64(t[4 * h + 1], t[4 * h + 3]);
    }
    for (int j = 0; j < 4; j++) {
        v[j] = _mm256_permute2x128_si256(u[j], u[j + 4], 0x20);
        v[j + 4] = _mm256_permute2x128_si256(u[j], u[j + 4], 0x31);
    }
}

// B <= gw tokens (rows of vm_act_quant_row output, stride ldx) into one group; missing tokens are 0.
static void gemm_pack_gw(vm_type type, const void *xq, size_t ldx, int B, int64_t C, void *dst, const int gw) {
    const int bs = vm_act_block(type);
    const int64_t nb = C / bs;
    const size_t qoff = bs == 32 ? offsetof(vm_q8a32, qs) : offsetof(vm_q8a256, qs);
    const size_t bbytes = bs == 32 ? sizeof(vm_q8a32) : sizeof(vm_q8a256);
    uint8_t *g = dst;
    float *d = (float *)(g + gemm_d_off(nb, bs, gw));
    uint8_t *sums = g + gemm_s_off(nb, bs, gw);
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *blk[16];
        for (int t = 0; t < gw; t++) blk[t] = t < B ? (const uint8_t *)xq + (size_t)t * ldx + (size_t)i * bbytes : NULL;
        uint8_t *si = sums + (size_t)i * gemm_s_bytes(type, gw);
        for (int h = 0; h < gw / 8; h++) {   // 8 tokens at a time, into their 32 bytes of each vector
            __m256i sx = _mm256_setzero_si256();   // 32-element blocks: each token's sum of x
            for (int c = 0; c < bs / 32; c++) {
                __m256i v[8];
                for (int t = 0; t < 8; t++) {
                    const uint8_t *b = blk[8 * h + t];
                    v[t] = b ? _mm256_loadu_si256((const __m256i *)(b + qoff + 32 * c)) : _mm256_setzero_si256();
                }
                transpose8x8_epi32(v);
                for (int j = 0; j < 8; j++) {
                    _mm256_store_si256((__m256i *)(g + ((size_t)i * bs / 4 + 8 * c + j) * 4 * gw + 32 * h), v[j]);
                    if (bs == 32)   // the 4 bytes of each lane, summed (exact)
                        sx = _mm256_add_epi32(sx, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), v[j]), _mm256_set1_epi16(1)));
                }
            }
            if (bs == 32)
                _mm256_storeu_si256((__m256i *)(si + 32 * h), _mm256_slli_epi32(sx, type == VM_TYPE_Q8_0 ? 7 : 3));
        }
        for (int t = 0; t < gw; t++) d[(size_t)i * gw + t] = blk[t] ? ((const float *)blk[t])[0] : 0.0f;
        if (bs != 32) {   // pair j of token t: sums (2j, 2j+1) of 32 elements (Q4_K/Q5_K) or 16 (Q6_K)
            const int npair = type == VM_TYPE_Q6_K ? 8 : 4, per = type == VM_TYPE_Q6_K ? 1 : 2;
            int16_t *sp = (int16_t *)si;
            for (int j = 0; j < npair; j++)
                for (int t = 0; t < gw; t++)
                    for (int h = 0; h < 2; h++) {
                        int sum = 0;
                        for (int k = 0; blk[t] && k < per; k++) sum += ((const vm_q8a256 *)blk[t])->bsums[per * (2 * j + h) + k];
                        sp[2 * ((size_t)j * gw + t) + h] = (int16_t)sum;
                    }
        }
    }
}
static void gemm_pack8(vm_type type, const void *xq, size_t ldx, int B, int64_t C, void *dst) {
    gemm_pack_gw(type, xq, ldx, B, C, dst, 8);
}
static void gemm_pack16(vm_type type, const void *xq, size_t ldx, int B, int64_t C, void *dst) {
    gemm_pack_gw(type, xq, ldx, B, C, dst, 16);
}

// 4 rows x 8 tokens (f[r], lanes are tokens) to out[t * ldo + r], the first nt tokens: a 4x8
// transpose, one 4-float store per token.
AI void store4x8(float *o, size_t ldo, __m256 f0, __m256 f1, __m256 f2, __m256 f3, int nt) {
    const __m256 a = _mm256_unpacklo_ps(f0, f1), b = _mm256_unpackhi_ps(f0, f1);
    const __m256 c = _mm256_unpacklo_ps(f2, f3), d = _mm256_unpackhi_ps(f2, f3);
    // token t (t < 4 in the low halves, t + 4 in the high): rows 0-3
    const __m256 v[4] = {_mm256_shuffle_ps(a, c, 0x44), _mm256_shuffle_ps(a, c, 0xee),
                         _mm256_shuffle_ps(b, d, 0x44), _mm256_shuffle_ps(b, d, 0xee)};
    for (int t = 0; t < nt; t++)
        _mm_storeu_ps(o + (size_t)t * ldo, t < 4 ? _mm256_castps256_ps128(v[t]) : _mm256_extractf128_ps(v[t - 4], 1));
}

// The same block of the next tile's rows: a tile reads RT rows side by side, too many short streams
// for the hardware prefetcher when the weights come from memory (expert matrices, read once per
// layer); a tile ahead is a few KB, more than memory latency times bandwidth.
AI void gemm_prefetch(const uint8_t *p, size_t bytes) {
    for (size_t off = 0; off < bytes; off += 64) _mm_prefetch((const char *)(p + off), _MM_HINT_T0);
}

// A 32-block's weights as unsigned bytes in element order (Q8_0 w + 128, Q4_0 the nibble), its scale.
AI float gemm_q32_unpack(const uint8_t *wb, const int four, uint8_t q[32]) {
    __m256i v;
    if (four) {
        const __m128i b = _mm_loadu_si128((const __m128i *)(wb + 2));
        v = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(b, 4), b), _mm256_set1_epi8(0x0f));
    } else {
        v = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(wb + 2)), _mm256_set1_epi8((char)0x80));
    }
    _mm256_store_si256((__m256i *)q, v);
    return _cvtsh_ss(rd_u16(wb));
}

// A K-quant block (256 weights) as unsigned bytes in element order (Q6_K: q + 32, before its
// offset), the sub-block scales, int16 pairs for vpmaddwd (Q4_K/Q5_K: mins m_2j | m_2j+1 << 16;
// Q6_K: scales sc_2j | sc_2j+1 << 16), the scales d / dmin as floats.
AI void gemm_kq_unpack(const uint8_t *wb, vm_type type, uint8_t q[256], int32_t sc[16], int32_t pairs[8],
                       float *dd, float *dm) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    if (type == VM_TYPE_Q6_K) {
        const __m256i m2 = _mm256_set1_epi8(3);
        for (int h = 0; h < 2; h++) {
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)(wb + 64 * h));
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(wb + 64 * h + 32));
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(wb + 128 + 32 * h));
            const __m256i lo[4] = {_mm256_and_si256(l0, m4), _mm256_and_si256(l1, m4),
                                   _mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(_mm256_srli_epi16(l1, 4), m4)};
            for (int k = 0; k < 4; k++) {
                const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * k), m2);
                _mm256_store_si256((__m256i *)(q + 128 * h + 32 * k), _mm256_or_si256(lo[k], _mm256_slli_epi16(hi, 4)));
            }
        }
        const __m128i s8 = _mm_loadu_si128((const __m128i *)(wb + 192));
        _mm256_storeu_si256((__m256i *)sc, _mm256_cvtepi8_epi32(s8));
        _mm256_storeu_si256((__m256i *)(sc + 8), _mm256_cvtepi8_epi32(_mm_unpackhi_epi64(s8, s8)));
        _mm256_storeu_si256((__m256i *)pairs, _mm256_cvtepi8_epi16(s8));   // int16 lanes 2j, 2j+1 = sc_2j, sc_2j+1
        *dd = _cvtsh_ss(rd_u16(wb + 208));
        *dm = 0.0f;
        return;
    }
    const int five = type == VM_TYPE_Q5_K;
    const uint8_t *qs = wb + (five ? 48 : 16);
    const __m256i hb = five ? _mm256_loadu_si256((const __m256i *)(wb + 16)) : _mm256_setzero_si256();
    for (int p = 0; p < 4; p++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * p));
        __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        if (five) {
            const __m256i b0 = _mm256_set1_epi8((char)(1 << (2 * p))), b1 = _mm256_set1_epi8((char)(1 << (2 * p + 1)));
            const __m256i s16 = _mm256_set1_epi8(16);
            lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hb, b0), b0), s16));
            hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hb, b1), b1), s16));
        }
        _mm256_store_si256((__m256i *)(q + 64 * p), lo);
        _mm256_store_si256((__m256i *)(q + 64 * p + 32), hi);
    }
    uint64_t scb, mnb;
    kscales8(wb + 4, &scb, &mnb);
    _mm256_storeu_si256((__m256i *)sc, _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)scb)));
    _mm_storeu_si128((__m128i *)pairs, _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)mnb)));
    *dd = _cvtsh_ss(rd_u16(wb));
    *dm = _cvtsh_ss(rd_u16(wb + 2));
}

// Q8_0 stores w + 128 (up to 255) against |x| <= 127: only vpdpbusd keeps those sums exact; the
// vpmaddubsw pair sum would saturate.
static size_t gemm_pack_size_avx2(vm_type type, int B, int64_t C) {
    if (type == VM_TYPE_Q8_0 || !vm_act_row_size(type, C)) return 0;
    return gemm_group_bytes(type, C, 8) * (size_t)((B + 7) / 8);
}
static size_t gemm_pack_size_vnni(vm_type type, int B, int64_t C) {
    if (!vm_act_row_size(type, C)) return 0;
    return gemm_group_bytes(type, C, 8) * (size_t)((B + 7) / 8);
}
static size_t gemm_pack_size_512(vm_type type, int B, int64_t C) {
    if (!vm_act_row_size(type, C)) return 0;
    return gemm_group_bytes(type, C, 16) * (size_t)((B + 15) / 16);
}

// 256-bit copies: tokens 8 to a vector
#define GW 8
#define VI __m256i
#define VF __m256
#define VI_LOAD(p) _mm256_load_si256((const __m256i *)(p))
#define VI_ZERO() _mm256_setzero_si256()
#define VI_SET1(v) _mm256_set1_epi32(v)
#define VI_ADD _mm256_add_epi32
#define VI_SUB _mm256_sub_epi32
#define VI_MULLO _mm256_mullo_epi32
#define VI_MADD16 _mm256_madd_epi16
#define VI_SLLI _mm256_slli_epi32
#define VF_LOAD(p) _mm256_load_ps(p)
#define VF_ZERO() _mm256_setzero_ps()
#define VF_SET1 _mm256_set1_ps
#define VF_ADD _mm256_add_ps
#define VF_SUB _mm256_sub_ps
#define VF_MUL _mm256_mul_ps
#define VF_CVT _mm256_cvtepi32_ps
#define STORE_TILE4(o, ldo, f, nt) store4x8(o, ldo, (f)[0], (f)[1], (f)[2], (f)[3], nt)
#define VF_LANES(dst, v) _mm256_storeu_ps(dst, v)

#define DOT4(acc, u, s) _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)))
#define GEMM_FN(name) name##_avx2
#include "kernels/simd_avx2_gemm_body.h"
#undef DOT4
#undef GEMM_FN

#ifdef __clang__
#pragma clang attribute pop
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avxvnni"))), apply_to = function)
#else
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avxvnni")
#endif
#define DOT4(acc, u, s) _mm256_dpbusd_avx_epi32(acc, u, s)
#define GEMM_FN(name) name##_vnni
#include "kernels/simd_avx2_gemm_body.h"
#undef DOT4
#undef GEMM_FN
#undef GW
#undef VI
#undef VF
#undef VI_LOAD
#undef VI_ZERO
#undef VI_SET1
#undef VI_ADD
#undef VI_SUB
#undef VI_MULLO
#undef VI_MADD16
#undef VI_SLLI
#undef VF_LOAD
#undef VF_ZERO
#undef VF_SET1
#undef VF_ADD
#undef VF_SUB
#undef VF_MUL
#undef VF_CVT
#undef STORE_TILE4
#undef VF_LANES

// 512-bit copy (AVX-512 VNNI): tokens 16 to a vector, the stores as two 4x8 halves
#ifdef __clang__
#pragma clang attribute pop
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vnni,avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vnni,avx2,fma,f16c")
#endif
#define GW 16
#define VI __m512i
#define VF __m512
#define VI_LOAD(p) _mm512_load_si512((const void *)(p))
#define VI_ZERO() _mm512_setzero_si512()
#define VI_SET1(v) _mm512_set1_epi32(v)
#define VI_ADD _mm512_add_epi32
#define VI_SUB _mm512_sub_epi32
#define VI_MULLO _mm512_mullo_epi32
#define VI_MADD16 _mm512_madd_epi16
#define VI_SLLI _mm512_slli_epi32
#define VF_LOAD(p) _mm512_load_ps(p)
#define VF_ZERO() _mm512_setzero_ps()
#define VF_SET1 _mm512_set1_ps
#define VF_ADD _mm512_add_ps
#define VF_SUB _mm512_sub_ps
#define VF_MUL _mm512_mul_ps
#define VF_CVT _mm512_cvtepi32_ps
#define VF_LANES(dst, v) _mm512_storeu_ps(dst, v)
#define LO8(v) _mm512_castps512_ps256(v)
#define HI8(v) _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))
#define STORE_TILE4(o, ldo, f, nt) do { \
        store4x8(o, ldo, LO8((f)[0]), LO8((f)[1]), LO8((f)[2]), LO8((f)[3]), (nt) < 8 ? (nt) : 8); \
        if ((nt) > 8) store4x8((o) + 8 * (ldo), ldo, HI8((f)[0]), HI8((f)[1]), HI8((f)[2]), HI8((f)[3]), (nt) - 8); \
    } while (0)
#define DOT4(acc, u, s) _mm512_dpbusd_epi32(acc, u, s)
#define GEMM_FN(name) name##_512
#include "kernels/simd_avx2_gemm_body.h"
#ifdef __clang__
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

const vm_simd_gemm vm_avx2_gemm = {8, gemm_pack_size_avx2, gemm_pack8, gemm_rows_avx2};
const vm_simd_gemm vm_avxvnni_gemm = {8, gemm_pack_size_vnni, gemm_pack8, gemm_rows_vnni};
const vm_simd_gemm vm_avx512_gemm = {16, gemm_pack_size_512, gemm_pack16, gemm_rows_512};
#endif

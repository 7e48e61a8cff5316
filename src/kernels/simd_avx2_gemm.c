// Batched products of quantised weights with int8 activations (several tokens): the gemm_* entries
// of the AVX2 and AVX-VNNI levels. The single-token tiles (simd_avx2_int8.c) reduce each block's
// 32 products of a (row, token) pair across the lanes of a vector, then transpose 8 pairs' sums;
// at batch 64 that reduction costs as much as the products (Q8_0 ran at 0.8-1.0x the F32 kernel).
// Here lanes are tokens instead, so nothing is reduced:
// - gemm_pack, once per matmul: 8 tokens' int8 activations interleaved by 4-element groups, one
//   32-byte vector per group holding those 4 elements of each token, stored as x + 128 (unsigned,
//   as vpdpbusd's first operand must be), with the tokens' scales and, for Q4_K/Q5_K, the 32-element
//   sums of x the mins need;
// - gemm_rows: a tile of 4 weight rows; per 4-element group a broadcast of each row's 4 weight bytes
//   meets the group vector: one vpdpbusd (or vpmaddubsw + vpmaddwd) adds 4 products for 8 tokens.
//   sum (x + 128) w = sum x w + 128 sum w, and 128 sum w is the row's, computed once per block.
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

// Layout of one token group: [C/4 groups x 32 bytes][nb x 8 scales][Q4_K/Q5_K: nb x 4 x 8 sum pairs]
static size_t gemm_d_off(int64_t nb, int bs) { return (size_t)nb * (size_t)bs * 8; }
static size_t gemm_s_off(int64_t nb) { return gemm_d_off(nb, 256) + (size_t)nb * 32; }
static int gemm_sums(vm_type type) { return type == VM_TYPE_Q4_K || type == VM_TYPE_Q5_K; }

static size_t gemm_group_bytes(vm_type type, int64_t C) {
    const int bs = vm_act_block(type);
    const int64_t nb = C / bs;
    return gemm_d_off(nb, bs) + (size_t)nb * 32 + (gemm_sums(type) ? (size_t)nb * 128 : 0);
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

static void gemm_pack(vm_type type, const void *xq, size_t ldx, int B, int64_t C, void *dst) {
    const int bs = vm_act_block(type), G = (B + 7) / 8;
    const int64_t nb = C / bs;
    const size_t gb = gemm_group_bytes(type, C), qoff = bs == 32 ? offsetof(vm_q8a32, qs) : offsetof(vm_q8a256, qs);
    const size_t bbytes = bs == 32 ? sizeof(vm_q8a32) : sizeof(vm_q8a256);
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    for (int gi = 0; gi < G; gi++) {
        uint8_t *g = (uint8_t *)dst + (size_t)gi * gb;
        float *d = (float *)(g + gemm_d_off(nb, bs));
        int16_t *s = (int16_t *)(g + gemm_s_off(nb));
        const int nt = B - 8 * gi < 8 ? B - 8 * gi : 8;
        for (int64_t i = 0; i < nb; i++) {
            const uint8_t *blk[8];
            for (int t = 0; t < 8; t++) blk[t] = t < nt ? (const uint8_t *)xq + (size_t)(8 * gi + t) * ldx + (size_t)i * bbytes : NULL;
            for (int c = 0; c < bs / 32; c++) {
                __m256i v[8];
                for (int t = 0; t < 8; t++)
                    v[t] = _mm256_xor_si256(flip, blk[t] ? _mm256_loadu_si256((const __m256i *)(blk[t] + qoff + 32 * c)) : _mm256_setzero_si256());
                transpose8x8_epi32(v);
                for (int j = 0; j < 8; j++) _mm256_store_si256((__m256i *)(g + ((size_t)i * bs / 4 + 8 * c + j) * 32), v[j]);
            }
            for (int t = 0; t < 8; t++) d[8 * i + t] = blk[t] ? ((const float *)blk[t])[0] : 0.0f;
            if (gemm_sums(type))   // pair j, token t: the sums of x over sub-blocks 2j and 2j+1
                for (int j = 0; j < 4; j++)
                    for (int t = 0; t < 8; t++)
                        for (int h = 0; h < 2; h++) {
                            const int16_t *bsum = blk[t] ? ((const vm_q8a256 *)blk[t])->bsums : NULL;
                            const int sb = 2 * j + h;
                            s[((size_t)i * 4 + j) * 16 + 2 * t + h] = bsum ? (int16_t)(bsum[2 * sb] + bsum[2 * sb + 1]) : 0;
                        }
        }
    }
}

// A K-quant block (256 weights) as signed bytes in element order (Q6_K minus 32), the sub-block
// scales, the Q4_K/Q5_K mins as int16 pairs (m_2j | m_2j+1 << 16), the scales d / dmin as floats;
// returns 128 sum_s sc_s sum(w in s), the correction of the unsigned activations.
AI int32_t gemm_kq_unpack(const uint8_t *wb, vm_type type, int8_t q[256], int32_t sc[16], int32_t mp[4],
                          float *dd, float *dm) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    int32_t K = 0;
    if (type == VM_TYPE_Q6_K) {
        const __m256i m2 = _mm256_set1_epi8(3), off = _mm256_set1_epi8(32);
        for (int h = 0; h < 2; h++) {
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)(wb + 64 * h));
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(wb + 64 * h + 32));
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(wb + 128 + 32 * h));
            const __m256i lo[4] = {_mm256_and_si256(l0, m4), _mm256_and_si256(l1, m4),
                                   _mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(_mm256_srli_epi16(l1, 4), m4)};
            for (int k = 0; k < 4; k++) {
                const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * k), m2);
                const __m256i v = _mm256_sub_epi8(_mm256_or_si256(lo[k], _mm256_slli_epi16(hi, 4)), off);
                _mm256_store_si256((__m256i *)(q + 128 * h + 32 * k), v);
            }
        }
        const int8_t *s8 = (const int8_t *)(wb + 192);
        for (int g = 0; g < 16; g++) {
            int sum = 0;
            for (int l = 0; l < 16; l++) sum += q[16 * g + l];
            sc[g] = s8[g];
            K += sc[g] * sum;
        }
        *dd = _cvtsh_ss(rd_u16(wb + 208));
        *dm = 0.0f;
        mp[0] = mp[1] = mp[2] = mp[3] = 0;
        return 128 * K;
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
        // sums of the two 32-weight sub-blocks (unsigned bytes: vpsadbw)
        for (int h = 0; h < 2; h++) {
            const __m256i sd = _mm256_sad_epu8(h ? hi : lo, _mm256_setzero_si256());
            const __m128i s2 = _mm_add_epi64(_mm256_castsi256_si128(sd), _mm256_extracti128_si256(sd, 1));
            uint8_t scale, mn;
            vm_kscale_get(wb + 4, 2 * p + h, &scale, &mn);
            sc[2 * p + h] = scale;
            K += scale * (int32_t)(_mm_cvtsi128_si64(s2) + _mm_extract_epi64(s2, 1));
            mp[p] = h ? (int32_t)((uint32_t)mp[p] | (uint32_t)mn << 16) : mn;
        }
    }
    *dd = _cvtsh_ss(rd_u16(wb));
    *dm = _cvtsh_ss(rd_u16(wb + 2));
    return 128 * K;
}

// Q8_0 needs the unsigned x + 128 against |w| up to 128: only vpdpbusd keeps those sums exact.
static size_t gemm_pack_size_avx2(vm_type type, int B, int64_t C) {
    if (type == VM_TYPE_Q8_0 || !vm_act_row_size(type, C)) return 0;
    return gemm_group_bytes(type, C) * (size_t)((B + 7) / 8);
}
static size_t gemm_pack_size_vnni(vm_type type, int B, int64_t C) {
    if (!vm_act_row_size(type, C)) return 0;
    return gemm_group_bytes(type, C) * (size_t)((B + 7) / 8);
}

#define GEMM_VNNI 0
#define GEMM_FN(name) name##_avx2
#include "kernels/simd_avx2_gemm_body.h"
#undef GEMM_VNNI
#undef GEMM_FN

#ifdef __clang__
#pragma clang attribute pop
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avxvnni"))), apply_to = function)
#else
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avxvnni")
#endif
#define GEMM_VNNI 1
#define GEMM_FN(name) name##_vnni
#include "kernels/simd_avx2_gemm_body.h"
#undef GEMM_VNNI
#undef GEMM_FN
#ifdef __clang__
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

const vm_simd_gemm vm_avx2_gemm = {gemm_pack_size_avx2, gemm_pack, gemm_rows_avx2};
const vm_simd_gemm vm_avxvnni_gemm = {gemm_pack_size_vnni, gemm_pack, gemm_rows_vnni};
#endif

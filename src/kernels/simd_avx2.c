// AVX2 + FMA + F16C level, compiled for that target whatever the build flags; used only when
// __builtin_cpu_supports says so (simd_dispatch.c).
// - f32: register tiles of up to 4 weight rows x 3 tokens (8 rows x 1 token for a single token):
//   one 8-lane FMA accumulator per output element over C, the same 256-bit horizontal sum, then the
//   C % 8 tail in order. The operations an element gets do not depend on its tile.
// - quantised weights x int8 activations: each weight block is unpacked once and dotted with up to
//   8 (Q8_0/Q4_0) or 4 (K-quants) tokens (vpmaddubsw/vpmaddwd); integer sums are exact and the
//   float steps are those of vm_vec_dot_act (q8act.c), so the bits equal the portable level's. A
//   tile transposes the per-block integers of its (row, token) pairs into one vector, so the scale
//   products and float steps run once per block for all of them; a single token takes several rows
//   at a time and prefetches the next rows itself.
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

// ---- quantised weights x int8 activations ---------------------------------------------------------

// Q8_0 / Q4_0: tiles of P = R x T (row, token) pairs, P = 8, 4 or 1 (8 rows x 1 token, 1 x 8,
// 4 x 1, 1 x 4, 1 x 1). Per block, each pair's 32-element integer dot is reduced to one exact int32
// and the P sums are transposed into the lanes of one vector, so a single convert / multiply / add
// serves P outputs and the scales of the P pairs are converted together: the float work per block
// is that of one pair, not P (the float steps per element are still q8act.c's: d = d_w * d_x, then
// acc += d * sum).
AI __m256i q40_q80_unpack(const uint8_t *w, const int four) {
    if (!four) return _mm256_loadu_si256((const __m256i *)(w + 2));
    const __m128i b = _mm_loadu_si128((const __m128i *)(w + 2));
    const __m256i q = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(b, 4), b), _mm256_set1_epi8(0x0f));
    return _mm256_sub_epi8(q, _mm256_set1_epi8(8));
}

// Lane k of the result: the 128-bit-half partial sums of v[k] (k < 4), by unpacks and adds (single
// micro-ops, cheaper than vphaddd).
AI __m256i psum4x8_epi32(const __m256i v[4]) {
    const __m256i a = _mm256_add_epi32(_mm256_unpacklo_epi32(v[0], v[1]), _mm256_unpackhi_epi32(v[0], v[1]));
    const __m256i b = _mm256_add_epi32(_mm256_unpacklo_epi32(v[2], v[3]), _mm256_unpackhi_epi32(v[2], v[3]));
    return _mm256_add_epi32(_mm256_unpacklo_epi64(a, b), _mm256_unpackhi_epi64(a, b));
}

// lane k = the sum of the 8 lanes of v[k], k < 4 (exact)
AI __m128i hsum4x8_epi32(const __m256i v[4]) {
    const __m256i c = psum4x8_epi32(v);
    return _mm_add_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1));
}

// lane k = the sum of the 8 lanes of v[k], k < 8 (exact)
AI __m256i hsum8x8_epi32(const __m256i v[8]) {
    const __m256i c0 = psum4x8_epi32(v), c1 = psum4x8_epi32(v + 4);
    return _mm256_add_epi32(_mm256_permute2x128_si256(c0, c1, 0x20), _mm256_permute2x128_si256(c0, c1, 0x31));
}

// Several rows at once read as several short streams, too short for the hardware prefetcher to
// follow (measured 2-2.5x slower than one row at a time with the weights in DRAM); the tile
// therefore prefetches the next tile's rows (contiguous after its own), R*bsz bytes per block.
AI void prefetch_next_rows(const uint8_t *w, size_t ldw, int64_t i, size_t bsz, const int R) {
    if (R == 1) return;
    const uint8_t *next = w + (size_t)R * ldw + (size_t)i * R * bsz;
    for (size_t off = 0; off < (size_t)R * bsz; off += 64) _mm_prefetch((const char *)(next + off), _MM_HINT_T0);
}

// One pair's 32-element integer dot, 8 int32 lanes.
AI __m256i q40_q80_pair(__m256i aw, __m256i qw, const vm_q8a32 *xb) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)xb->qs), qw)),
                             _mm256_set1_epi16(1));
}

// Tiles (R, T) in {(8,1), (4,1), (1,1)} for a single token, {(1,8), (1,4)} for batches: one weight
// row at a time when there are several tokens, so the weights stream from memory as one sequential
// run (two rows x 4 tokens measured 1.6x slower than one row x 4 with the weights in DRAM).
AI void q40_q80_tile(float *out, size_t ldo, const uint8_t *w, size_t ldw, const char *x, size_t ldx,
                     int64_t nb, const int R, const int T, const int four) {
    enum { PMAX = 8 };
    const int P = R * T;   // 8, 4 or 1 (row, token) pairs, pair p = r * T + t
    const size_t bsz = four ? QB_Q4_0 : QB_Q8_0;
    __m256 acc8 = _mm256_setzero_ps();
    __m128 acc4 = _mm_setzero_ps();
    float acc1 = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        prefetch_next_rows(w, ldw, i, bsz, R);
        const vm_q8a32 *xb[PMAX];
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) xb[t] = (const vm_q8a32 *)(x + (size_t)t * ldx) + i;
        __m256i s[PMAX];
        __m128i red[2];   // batches: the sums of 4 tokens, reduced as soon as they are ready
        uint16_t hw[PMAX];
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            const uint8_t *wb = w + (size_t)r * ldw + (size_t)i * bsz;
            // vpmaddubsw needs an unsigned operand: |w| (128 for -128) against x carrying w's sign
            // (exact: |w| <= 128, |x| <= 127, no saturation)
            const __m256i qw = q40_q80_unpack(wb, four), aw = _mm256_sign_epi8(qw, qw);
            hw[r] = rd_u16(wb);
            if (T == 1) {
                s[r] = q40_q80_pair(aw, qw, xb[0]);
            } else {
#pragma GCC unroll 8
                for (int g = 0; g < T / 4; g++) {
                    __m256i s4[4];
#pragma GCC unroll 4
                    for (int t = 0; t < 4; t++) s4[t] = q40_q80_pair(aw, qw, xb[4 * g + t]);
                    red[g] = hsum4x8_epi32(s4);
                }
            }
        }
        // scales of the P pairs, d = d_w * d_x per lane
        if (P == 8) {
            __m128i h;
            __m256 dxv;
            if (T == 1) {
                h = _mm_setr_epi16((short)hw[0], (short)hw[1 % R], (short)hw[2 % R], (short)hw[3 % R],
                                   (short)hw[4 % R], (short)hw[5 % R], (short)hw[6 % R], (short)hw[7 % R]);
                dxv = _mm256_set1_ps(xb[0]->d);
            } else {   // one row, 8 tokens
                h = _mm_set1_epi16((short)hw[0]);
                dxv = _mm256_setr_ps(xb[0]->d, xb[1 % T]->d, xb[2 % T]->d, xb[3 % T]->d,
                                     xb[4 % T]->d, xb[5 % T]->d, xb[6 % T]->d, xb[7 % T]->d);
            }
            const __m256 d = _mm256_mul_ps(_mm256_cvtph_ps(h), dxv);
            const __m256i si = T == 1 ? hsum8x8_epi32(s) : _mm256_set_m128i(red[1], red[0]);
            acc8 = _mm256_add_ps(acc8, _mm256_mul_ps(d, _mm256_cvtepi32_ps(si)));
        } else if (P == 4) {
            __m128i h;
            __m128 dxv;
            if (T == 1) {
                h = _mm_setr_epi16((short)hw[0], (short)hw[1 % R], (short)hw[2 % R], (short)hw[3 % R], 0, 0, 0, 0);
                dxv = _mm_set1_ps(xb[0]->d);
            } else {
                h = _mm_set1_epi16((short)hw[0]);
                dxv = _mm_setr_ps(xb[0]->d, xb[1 % T]->d, xb[2 % T]->d, xb[3 % T]->d);
            }
            const __m128 d = _mm_mul_ps(_mm_cvtph_ps(h), dxv);
            const __m128i si = T == 1 ? hsum4x8_epi32(s) : red[0];
            acc4 = _mm_add_ps(acc4, _mm_mul_ps(d, _mm_cvtepi32_ps(si)));
        } else {
            const float d = _cvtsh_ss(hw[0]) * xb[0]->d;
            const float t = d * (float)hsum_epi32(s[0]);
            acc1 += t;
        }
    }
    float o[PMAX];
    if (P == 8) _mm256_storeu_ps(o, acc8);
    else if (P == 4) _mm_storeu_ps(o, acc4);
    else o[0] = acc1;
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) out[(size_t)t * ldo + r] = o[r * T + t];
}

AI void q40_q80_rows(float *out, size_t ldo, const uint8_t *w, size_t ldw, const char *x, size_t ldx,
                     int R, int B, int64_t nb, const int four) {
#define QT(R_, T_) q40_q80_tile(out + (size_t)t0 * ldo + r0, ldo, w + (size_t)r0 * ldw, ldw, x + (size_t)t0 * ldx, ldx, nb, R_, T_, four)
    int t0 = 0;
    for (; t0 + 8 <= B; t0 += 8)
        for (int r0 = 0; r0 < R; r0++) QT(1, 8);
    for (; t0 + 4 <= B; t0 += 4)
        for (int r0 = 0; r0 < R; r0++) QT(1, 4);
    for (; t0 < B; t0++) {
        int r0 = 0;
        for (; r0 + 8 <= R; r0 += 8) QT(8, 1);
        for (; r0 + 4 <= R; r0 += 4) QT(4, 1);
        for (; r0 < R; r0++) QT(1, 1);
    }
#undef QT
}

// one copy per type, `four` a constant
static void q8_0_rows(float *out, size_t ldo, const uint8_t *w, size_t ldw, const char *x, size_t ldx, int R, int B, int64_t nb) {
    q40_q80_rows(out, ldo, w, ldw, x, ldx, R, B, nb, 0);
}
static void q4_0_rows(float *out, size_t ldo, const uint8_t *w, size_t ldw, const char *x, size_t ldx, int R, int B, int64_t nb) {
    q40_q80_rows(out, ldo, w, ldw, x, ldx, R, B, nb, 1);
}

// K-quants: tiles (R, T) in {(4,1), (1,1)} for a single token and (1,4) for batches. Per block and
// pair, the exact integers A (and M for Q4_K/Q5_K) of q8act.c; the P pairs' integers are transposed
// into one vector so the scale products and the float steps (acc += (d*d_x)*A, acc -= (dmin*d_x)*M)
// run once per block for all of them.

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

// lane k = the sum of the 4 lanes of v[k] (exact)
AI __m128i hsum4x4_epi32(const __m128i v[4]) {
    return _mm_hadd_epi32(_mm_hadd_epi32(v[0], v[1]), _mm_hadd_epi32(v[2], v[3]));
}

// the P pairs' scale products: lanes (d_w of row r) * (d_x of token t), pair p = r * T + t
AI __m128 kq_scales4(const uint16_t h[4], const vm_q8a256 *const xb[4], const int R, const int T) {
    const __m128i hv = R == 4 ? _mm_setr_epi16((short)h[0], (short)h[1 % R], (short)h[2 % R], (short)h[3 % R], 0, 0, 0, 0)
                              : _mm_set1_epi16((short)h[0]);
    const __m128 dx = T == 4 ? _mm_setr_ps(xb[0]->d, xb[1 % T]->d, xb[2 % T]->d, xb[3 % T]->d) : _mm_set1_ps(xb[0]->d);
    return _mm_mul_ps(_mm_cvtph_ps(hv), dx);
}

AI void q45_K_tile(float *out, size_t ldo, const uint8_t *w, size_t ldw, const char *x, size_t ldx,
                   int64_t nb, const int R, const int T, const int five) {
    const int P = R * T;   // 4 or 1
    const size_t bsz = five ? QB_Q5_K : QB_Q4_K;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m128 acc4 = _mm_setzero_ps();
    float acc1 = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        prefetch_next_rows(w, ldw, i, bsz, R);
        const vm_q8a256 *xb[4];
        #pragma GCC unroll 4
        for (int t = 0; t < T; t++) xb[t] = (const vm_q8a256 *)(x + (size_t)t * ldx) + i;
        __m256i sumi[4];
        __m128i msum[4];
        uint16_t hd[4], hm[4];
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const uint8_t *wb = w + (size_t)r * ldw + (size_t)i * bsz;
            hd[r] = rd_u16(wb);
            hm[r] = rd_u16(wb + 2);
            uint64_t scb, mnb;
            kscales8(wb + 4, &scb, &mnb);
            const __m128i mn16 = _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)mnb));
            const __m256i sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)scb)));
            #pragma GCC unroll 4
            for (int t = 0; t < T; t++) {   // M = sum_s min_s * (bsum_2s + bsum_2s+1)
                const __m128i bs = _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)xb[t]->bsums),
                                                  _mm_loadu_si128((const __m128i *)(xb[t]->bsums + 8)));
                msum[r * T + t] = _mm_madd_epi16(mn16, bs);
                sumi[r * T + t] = _mm256_setzero_si256();
            }
            const uint8_t *qs = wb + (five ? 48 : 16);
            const __m256i hb = five ? _mm256_loadu_si256((const __m256i *)(wb + 16)) : _mm256_setzero_si256();
            #pragma GCC unroll 4
            for (int p = 0; p < 4; p++) {
                const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * p));
                __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                if (five) {
                    const __m256i b0 = _mm256_set1_epi8((char)(1 << (2 * p))), b1 = _mm256_set1_epi8((char)(1 << (2 * p + 1)));
                    const __m256i s16 = _mm256_set1_epi8(16);
                    lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hb, b0), b0), s16));
                    hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hb, b1), b1), s16));
                }
                const __m256i s0 = _mm256_shuffle_epi8(sc16, _mm256_set1_epi16((short)(((4 * p + 1) << 8) | (4 * p))));
                const __m256i s1 = _mm256_shuffle_epi8(sc16, _mm256_set1_epi16((short)(((4 * p + 3) << 8) | (4 * p + 2))));
                #pragma GCC unroll 4
                for (int t = 0; t < T; t++) {
                    const int8_t *xq = xb[t]->qs + 64 * p;
                    const __m256i x0 = _mm256_loadu_si256((const __m256i *)xq), x1 = _mm256_loadu_si256((const __m256i *)(xq + 32));
                    const __m256i d0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, x0), s0);
                    const __m256i d1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, x1), s1);
                    sumi[r * T + t] = _mm256_add_epi32(sumi[r * T + t], _mm256_add_epi32(d0, d1));
                }
            }
        }
        if (P == 4) {
            const __m128 dd = kq_scales4(hd, xb, R, T), dm = kq_scales4(hm, xb, R, T);
            const __m128 ta = _mm_mul_ps(dd, _mm_cvtepi32_ps(hsum4x8_epi32(sumi)));
            const __m128 tm = _mm_mul_ps(dm, _mm_cvtepi32_ps(hsum4x4_epi32(msum)));
            acc4 = _mm_sub_ps(_mm_add_ps(acc4, ta), tm);
        } else {
            const __m128i m2 = _mm_add_epi32(msum[0], _mm_unpackhi_epi64(msum[0], msum[0]));
            const int32_t A = hsum_epi32(sumi[0]), M = _mm_cvtsi128_si32(_mm_add_epi32(m2, _mm_shuffle_epi32(m2, 1)));
            const float dd = _cvtsh_ss(hd[0]) * xb[0]->d, dm = _cvtsh_ss(hm[0]) * xb[0]->d;
            const float ta = dd * (float)A, tm = dm * (float)M;
            acc1 += ta;
            acc1 -= tm;
        }
    }
    float o[4];
    if (P == 4) _mm_storeu_ps(o, acc4);
    else o[0] = acc1;
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 4
        for (int t = 0; t < T; t++) out[(size_t)t * ldo + r] = o[r * T + t];
}

// Q6_K: unsigned 6-bit q against x per sub-block scale, minus 32 * sum(scale * bsum) per block.
AI void q6_K_tile(float *out, size_t ldo, const uint8_t *w, size_t ldw, const char *x, size_t ldx,
                  int64_t nb, const int R, const int T) {
    const int P = R * T;   // 4 or 1
    const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(3);
    __m128 acc4 = _mm_setzero_ps();
    float acc1 = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        prefetch_next_rows(w, ldw, i, QB_Q6_K, R);
        const vm_q8a256 *xb[4];
        #pragma GCC unroll 4
        for (int t = 0; t < T; t++) xb[t] = (const vm_q8a256 *)(x + (size_t)t * ldx) + i;
        __m256i sumi[4];
        uint16_t hd[4];
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const uint8_t *wb = w + (size_t)r * ldw + (size_t)i * QB_Q6_K;
            const int8_t *sc = (const int8_t *)(wb + 192);
            hd[r] = rd_u16(wb + 208);
            // the offset term, folded into the sums: A = sum - 32 * sum_g sc_g * bsum_g
            const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)sc));
            #pragma GCC unroll 4
            for (int t = 0; t < T; t++)
                sumi[r * T + t] = _mm256_sub_epi32(_mm256_setzero_si256(),
                    _mm256_slli_epi32(_mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)xb[t]->bsums)), 5));
            #pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                const __m256i l0 = _mm256_loadu_si256((const __m256i *)(wb + 64 * h));
                const __m256i l1 = _mm256_loadu_si256((const __m256i *)(wb + 64 * h + 32));
                const __m256i qh = _mm256_loadu_si256((const __m256i *)(wb + 128 + 32 * h));
                __m256i q[4];
                q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4));
                q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m2), 4));
                q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2), 4));
                q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m2), 4));
                // sc[8h..8h+7] in both halves (two literal immediates: clang wants a constant)
                const __m256i sch = h ? _mm256_permute2x128_si256(sc16, sc16, 0x11) : _mm256_permute2x128_si256(sc16, sc16, 0x00);
                #pragma GCC unroll 4
                for (int k = 0; k < 4; k++) {
                    // int16 lanes 0-7 hold elements 0-15 (scale 8h+2k), lanes 8-15 elements 16-31 (8h+2k+1)
                    const __m256i s = _mm256_shuffle_epi8(sch, _mm256_set_m128i(_mm_set1_epi16((short)(((4 * k + 3) << 8) | (4 * k + 2))),
                                                                                _mm_set1_epi16((short)(((4 * k + 1) << 8) | (4 * k)))));
                    #pragma GCC unroll 4
                    for (int t = 0; t < T; t++) {
                        const int8_t *xq = xb[t]->qs + 128 * h + 32 * k;
                        const __m256i p = _mm256_maddubs_epi16(q[k], _mm256_loadu_si256((const __m256i *)xq));
                        sumi[r * T + t] = _mm256_add_epi32(sumi[r * T + t], _mm256_madd_epi16(p, s));
                    }
                }
            }
        }
        if (P == 4) {
            const __m128 ta = _mm_mul_ps(kq_scales4(hd, xb, R, T), _mm_cvtepi32_ps(hsum4x8_epi32(sumi)));
            acc4 = _mm_add_ps(acc4, ta);
        } else {
            const float dd = _cvtsh_ss(hd[0]) * xb[0]->d;
            const float ta = dd * (float)hsum_epi32(sumi[0]);
            acc1 += ta;
        }
    }
    float o[4];
    if (P == 4) _mm_storeu_ps(o, acc4);
    else o[0] = acc1;
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 4
        for (int t = 0; t < T; t++) out[(size_t)t * ldo + r] = o[r * T + t];
}

// one copy per type and tile shape
#define KQ_ROWS(name, TILE_CALL)                                                                          \
    static void name(float *out, size_t ldo, const uint8_t *w, size_t ldw, const char *x, size_t ldx,   \
                     int R, int B, int64_t nb) {                                                         \
        int t0 = 0;                                                                                      \
        for (; t0 + 4 <= B; t0 += 4)                                                                     \
            for (int r0 = 0; r0 < R; r0++) TILE_CALL(1, 4);                                              \
        for (; t0 < B; t0++) {                                                                           \
            int r0 = 0;                                                                                  \
            for (; r0 + 4 <= R; r0 += 4) TILE_CALL(4, 1);                                                \
            for (; r0 < R; r0++) TILE_CALL(1, 1);                                                        \
        }                                                                                                \
    }
#define KQ_ARGS out + (size_t)t0 * ldo + r0, ldo, w + (size_t)r0 * ldw, ldw, x + (size_t)t0 * ldx, ldx, nb
#define Q4K_TILE(R_, T_) q45_K_tile(KQ_ARGS, R_, T_, 0)
#define Q5K_TILE(R_, T_) q45_K_tile(KQ_ARGS, R_, T_, 1)
#define Q6K_TILE(R_, T_) q6_K_tile(KQ_ARGS, R_, T_)
KQ_ROWS(q4_K_rows, Q4K_TILE)
KQ_ROWS(q5_K_rows, Q5K_TILE)
KQ_ROWS(q6_K_rows, Q6K_TILE)
#undef KQ_ROWS
#undef KQ_ARGS
#undef Q4K_TILE
#undef Q5K_TILE
#undef Q6K_TILE

static void act_rows(vm_type type, float *out, size_t ldo, const void *w, size_t ldw, const void *x,
                     size_t ldx, int R, int B, int64_t C) {
    const uint8_t *wb = w;
    const char *xb = x;
    switch (type) {
    case VM_TYPE_Q8_0: q8_0_rows(out, ldo, wb, ldw, xb, ldx, R, B, C / 32); break;
    case VM_TYPE_Q4_0: q4_0_rows(out, ldo, wb, ldw, xb, ldx, R, B, C / 32); break;
    case VM_TYPE_Q4_K: q4_K_rows(out, ldo, wb, ldw, xb, ldx, R, B, C / 256); break;
    case VM_TYPE_Q5_K: q5_K_rows(out, ldo, wb, ldw, xb, ldx, R, B, C / 256); break;
    case VM_TYPE_Q6_K: q6_K_rows(out, ldo, wb, ldw, xb, ldx, R, B, C / 256); break;
    default:
        for (int t = 0; t < B; t++)
            for (int r = 0; r < R; r++) out[(size_t)t * ldo + r] = NAN;
        break;
    }
}

// ---- activation quantisation: vm_act_quant_row's arithmetic (exact steps, so the same bits) ------

// n (a multiple of 32) floats to int8 with scale d; returns d, NaN when x is not finite.
// General path: any input (inf / NaN lanes, a denormal maximum whose reciprocal overflows).
static float quant_block8_slow(const float *x, int8_t *q, int n) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)), big = _mm256_set1_ps(0x1.fffffep127f);
    __m256 amax = _mm256_setzero_ps();
    int finite = 1;
    for (int i = 0; i < n; i += 8) {
        const __m256 a = _mm256_and_ps(_mm256_loadu_ps(x + i), absmask);
        const __m256 fin = _mm256_cmp_ps(a, big, _CMP_LE_OQ);   // false for inf and NaN
        finite &= _mm256_movemask_ps(fin) == 0xff;
        amax = _mm256_max_ps(amax, _mm256_and_ps(a, fin));
    }
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    const float am = _mm_cvtss_f32(m);
    const float d = am / 127.0f, id = am > 0.0f ? 127.0f / am : 0.0f;
    const __m256 idv = _mm256_set1_ps(id), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    const __m256 magic = _mm256_set1_ps(12582912.0f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int i = 0; i < n; i += 32) {
        __m256i v32[4];
        for (int k = 0; k < 4; k++) {
            __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * k), idv);
            v = _mm256_and_ps(v, _mm256_cmp_ps(v, v, _CMP_ORD_Q));   // NaN -> 0
            v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
            v = _mm256_sub_ps(_mm256_add_ps(v, magic), magic);
            v32[k] = _mm256_cvtps_epi32(v);
        }
        const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(v32[0], v32[1]), _mm256_packs_epi32(v32[2], v32[3]));
        _mm256_storeu_si256((__m256i *)(q + i), _mm256_permutevar8x32_epi32(p, perm));
    }
    return finite ? d : NAN;
}

// Fast path for finite blocks with a finite reciprocal scale (all but pathological inputs): no NaN
// masking, and vcvtps2dq's round-to-nearest-even replaces the add/subtract of 1.5*2^23 (the same
// integers for |v| <= 127 in the default rounding mode).
AI float quant_block8(const float *x, int8_t *q, int n) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)), big = _mm256_set1_ps(0x1.fffffep127f);
    __m256 amax = _mm256_setzero_ps(), fin = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    for (int i = 0; i < n; i += 8) {
        const __m256 a = _mm256_and_ps(_mm256_loadu_ps(x + i), absmask);
        fin = _mm256_and_ps(fin, _mm256_cmp_ps(a, big, _CMP_LE_OQ));   // false for inf and NaN
        amax = _mm256_max_ps(amax, a);
    }
    if (_mm256_movemask_ps(fin) != 0xff) return quant_block8_slow(x, q, n);
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    const float am = _mm_cvtss_f32(m);
    const float d = am / 127.0f, id = am > 0.0f ? 127.0f / am : 0.0f;
    if (!(id <= 0x1.fffffep127f)) return quant_block8_slow(x, q, n);   // 0 * inf would make NaN lanes
    const __m256 idv = _mm256_set1_ps(id), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int i = 0; i < n; i += 32) {
        __m256i v32[4];
        for (int k = 0; k < 4; k++) {
            const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * k), idv);
            v32[k] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v, lo), hi));
        }
        const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(v32[0], v32[1]), _mm256_packs_epi32(v32[2], v32[3]));
        _mm256_storeu_si256((__m256i *)(q + i), _mm256_permutevar8x32_epi32(p, perm));
    }
    return d;
}

static void act_quant(vm_type type, const float *x, void *dst, int64_t n) {
    if (vm_act_block(type) == 32) {
        vm_q8a32 *b = dst;
        for (int64_t i = 0; i < n / 32; i++) b[i].d = quant_block8(x + 32 * i, b[i].qs, 32);
    } else {
        vm_q8a256 *b = dst;
        for (int64_t i = 0; i < n / 256; i++) {
            b[i].d = quant_block8(x + 256 * i, b[i].qs, 256);
            for (int g = 0; g < 16; g++) {
                int s = 0;
                for (int l = 0; l < 16; l++) s += b[i].qs[16 * g + l];
                b[i].bsums[g] = (int16_t)s;
            }
        }
    }
}

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

// o = o * r + e * v   (r = 1: plain accumulate)
AI void scale_axpy(float *o, float r, float e, const float *v, int n) {
    const __m256 rv = _mm256_set1_ps(r), ev = _mm256_set1_ps(e);
    int d = 0;
    for (; d + 8 <= n; d += 8)
        _mm256_storeu_ps(o + d, _mm256_fmadd_ps(ev, _mm256_loadu_ps(v + d), _mm256_mul_ps(rv, _mm256_loadu_ps(o + d))));
    for (; d < n; d++) { const float a = r * o[d], b = e * v[d]; o[d] = a + b; }
}

// One query head over n_kv cached positions: scores a chunk, rescales once per chunk when the
// maximum grows, then accumulates exp(s - max) * v.
static void attend_one(float *o, const float *qv, const float *kc, const float *vc, size_t kv_stride,
                       int n_kv, int hd, float scale) {
    float s[ATT_CHUNK];
    float mx = -INFINITY, sum = 0.0f;
    for (int d = 0; d < hd; d++) o[d] = 0.0f;
    for (int t0 = 0; t0 < n_kv; t0 += ATT_CHUNK) {
        const int n = n_kv - t0 < ATT_CHUNK ? n_kv - t0 : ATT_CHUNK;
        float cmax = -INFINITY;
        for (int j = 0; j < n; j++) {
            s[j] = dot_hd(qv, kc + (size_t)(t0 + j) * kv_stride, hd) * scale;
            if (s[j] > cmax) cmax = s[j];
        }
        float r = 1.0f;
        if (cmax > mx) { r = expf(mx - cmax); sum *= r; mx = cmax; }
        for (int j = 0; j < n; j++) {
            const float e = expf(s[j] - mx);
            sum += e;
            scale_axpy(o, j == 0 ? r : 1.0f, e, vc + (size_t)(t0 + j) * kv_stride, hd);
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

const vm_simd_kernels vm_simd_avx2 = { f32_rows, act_rows, act_quant, dequant_row, axpy_rows, attention };
// AVX-512: wider f32 tiles (simd_avx512.c); the rest is this level's.
const vm_simd_kernels vm_simd_avx512 = { vm_avx512_f32_rows, act_rows, act_quant, dequant_row, axpy_rows, attention };

#ifdef __clang__
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

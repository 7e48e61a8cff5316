// AVX2 level, quantised weights against int8 activations (the act_rows / act_quant entries of
// vm_simd_avx2 and vm_simd_avx512): the integers are exact and the float steps are those of
// vm_vec_dot_act / vm_act_quant_row (src/quant/q8act.c), so the bits equal the portable level's.
// A tile transposes the per-block integers of its (row, token) pairs into one vector, so the scale
// products and float steps run once per block for all of them; a single token takes several rows
// at a time and prefetches the next rows itself.
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

// ---- quantised weights x int8 activations ---------------------------------------------------------

// Q8_0 / Q4_0: tiles of P = R x T (row, token) pairs, P = 8, 4 or 1 (8 rows x 1 token, 1 x 8,
// 4 x 1, 1 x 4, 1 x 1). Per block, each pair's 32-element integer dot is reduced to one exact int32
// and the P sums are transposed into the lanes of one vector, so a single convert / multiply / add
// serves P outputs and the scales of the P pairs are converted together: the float work per block
// is that of one pair, not P (the float steps per element are still q8act.c's: d = d_w * d_x, then
// acc += d * sum).

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

// A tile's outputs: the lanes of acc8 or acc4 (pair p = r * T + t), or the single acc1, by P = R * T.
AI void tile_store(float *out, size_t ldo, __m256 acc8, __m128 acc4, float acc1, const int R, const int T) {
    float o[8];
    if (R * T == 8) _mm256_storeu_ps(o, acc8);
    else if (R * T == 4) _mm_storeu_ps(o, acc4);
    else o[0] = acc1;
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) out[(size_t)t * ldo + r] = o[r * T + t];
}

// The scale products of 4 pairs (4 rows x 1 token or 1 row x 4 tokens): lanes (d_w of row r, fp16
// bits h[r]) * (d_x of token t), pair p = r * T + t.
AI __m128 scales4(const uint16_t h[4], const float dx[4], const int R, const int T) {
    const __m128i hv = R == 4 ? _mm_setr_epi16((short)h[0], (short)h[1 % R], (short)h[2 % R], (short)h[3 % R], 0, 0, 0, 0)
                              : _mm_set1_epi16((short)h[0]);
    const __m128 dxv = T == 4 ? _mm_setr_ps(dx[0], dx[1 % T], dx[2 % T], dx[3 % T]) : _mm_set1_ps(dx[0]);
    return _mm_mul_ps(_mm_cvtph_ps(hv), dxv);
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
        float dx[PMAX];
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            xb[t] = (const vm_q8a32 *)(x + (size_t)t * ldx) + i;
            dx[t] = xb[t]->d;
        }
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
                dxv = _mm256_set1_ps(dx[0]);
            } else {   // one row, 8 tokens
                h = _mm_set1_epi16((short)hw[0]);
                dxv = _mm256_loadu_ps(dx);
            }
            const __m256 d = _mm256_mul_ps(_mm256_cvtph_ps(h), dxv);
            const __m256i si = T == 1 ? hsum8x8_epi32(s) : _mm256_set_m128i(red[1], red[0]);
            acc8 = _mm256_add_ps(acc8, _mm256_mul_ps(d, _mm256_cvtepi32_ps(si)));
        } else if (P == 4) {
            const __m128 d = scales4(hw, dx, R, T);
            const __m128i si = T == 1 ? hsum4x8_epi32(s) : red[0];
            acc4 = _mm_add_ps(acc4, _mm_mul_ps(d, _mm_cvtepi32_ps(si)));
        } else {
            const float d = _cvtsh_ss(hw[0]) * dx[0];
            const float t = d * (float)hsum_epi32(s[0]);
            acc1 += t;
        }
    }
    tile_store(out, ldo, acc8, acc4, acc1, R, T);
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

// lane k = the sum of the 4 lanes of v[k] (exact)
AI __m128i hsum4x4_epi32(const __m128i v[4]) {
    return _mm_hadd_epi32(_mm_hadd_epi32(v[0], v[1]), _mm_hadd_epi32(v[2], v[3]));
}

// block i of the T token rows, and its scales
AI void kq_tokens(const vm_q8a256 *xb[4], float dx[4], const char *x, size_t ldx, int64_t i, const int T) {
    #pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        xb[t] = (const vm_q8a256 *)(x + (size_t)t * ldx) + i;
        dx[t] = xb[t]->d;
    }
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
        float dx[4];
        kq_tokens(xb, dx, x, ldx, i, T);
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
            const __m128 dd = scales4(hd, dx, R, T), dm = scales4(hm, dx, R, T);
            const __m128 ta = _mm_mul_ps(dd, _mm_cvtepi32_ps(hsum4x8_epi32(sumi)));
            const __m128 tm = _mm_mul_ps(dm, _mm_cvtepi32_ps(hsum4x4_epi32(msum)));
            acc4 = _mm_sub_ps(_mm_add_ps(acc4, ta), tm);
        } else {
            const __m128i m2 = _mm_add_epi32(msum[0], _mm_unpackhi_epi64(msum[0], msum[0]));
            const int32_t A = hsum_epi32(sumi[0]), M = _mm_cvtsi128_si32(_mm_add_epi32(m2, _mm_shuffle_epi32(m2, 1)));
            const float dd = _cvtsh_ss(hd[0]) * dx[0], dm = _cvtsh_ss(hm[0]) * dx[0];
            const float ta = dd * (float)A, tm = dm * (float)M;
            acc1 += ta;
            acc1 -= tm;
        }
    }
    tile_store(out, ldo, _mm256_setzero_ps(), acc4, acc1, R, T);
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
        float dx[4];
        kq_tokens(xb, dx, x, ldx, i, T);
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
            const __m128 ta = _mm_mul_ps(scales4(hd, dx, R, T), _mm_cvtepi32_ps(hsum4x8_epi32(sumi)));
            acc4 = _mm_add_ps(acc4, ta);
        } else {
            const float dd = _cvtsh_ss(hd[0]) * dx[0];
            const float ta = dd * (float)hsum_epi32(sumi[0]);
            acc1 += ta;
        }
    }
    tile_store(out, ldo, _mm256_setzero_ps(), acc4, acc1, R, T);
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

void vm_avx2_act_rows(vm_type type, float *out, size_t ldo, const void *w, size_t ldw, const void *x,
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
// vcvtps2dq's round-to-nearest-even stands in for the add/subtract of 1.5*2^23 (the same integers
// for |v| <= 127 in the default rounding mode). NaN lanes (a NaN input, or 0 * inf when a denormal
// maximum's reciprocal overflows) are zeroed only in blocks where they can occur.
AI float quant_block8(const float *x, int8_t *q, int n) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)), big = _mm256_set1_ps(0x1.fffffep127f);
    __m256 amax = _mm256_setzero_ps(), fin_all = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    for (int i = 0; i < n; i += 8) {
        const __m256 a = _mm256_and_ps(_mm256_loadu_ps(x + i), absmask);
        const __m256 fin = _mm256_cmp_ps(a, big, _CMP_LE_OQ);   // false for inf and NaN
        fin_all = _mm256_and_ps(fin_all, fin);
        amax = _mm256_max_ps(amax, _mm256_and_ps(a, fin));
    }
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    const float am = _mm_cvtss_f32(m);
    const float d = am / 127.0f, id = am > 0.0f ? 127.0f / am : 0.0f;
    const int finite = _mm256_movemask_ps(fin_all) == 0xff, plain = finite && id <= 0x1.fffffep127f;
    const __m256 idv = _mm256_set1_ps(id), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int i = 0; i < n; i += 32) {
        __m256i v32[4];
        for (int k = 0; k < 4; k++) {
            __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * k), idv);
            if (!plain) v = _mm256_and_ps(v, _mm256_cmp_ps(v, v, _CMP_ORD_Q));   // NaN -> 0
            v32[k] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v, lo), hi));
        }
        const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(v32[0], v32[1]), _mm256_packs_epi32(v32[2], v32[3]));
        _mm256_storeu_si256((__m256i *)(q + i), _mm256_permutevar8x32_epi32(p, perm));
    }
    return finite ? d : NAN;
}

void vm_avx2_act_quant(vm_type type, const float *x, void *dst, int64_t n) {
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

#ifdef __clang__
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

// Attention forward at the AVX-512 level for heads of 8: the AVX2 level's attend8_lanes
// (simd_avx2_attn.c) with two heads of a KV group in one 512-bit register. Compiled for avx512f
// whatever the build flags; used only when simd_dispatch.c says the CPU has the level.
//
// attend8_lanes puts 8 queries of one head in the lanes of a vector, and every lane does the
// operations of its own query in key order (the recipe in simd_avx2_attn.c's hd = 8 section).
// Heads h and h+1 of one KV group see the same keys and values, and the same queries of a block
// see the same number of keys, so lanes 0-7 take head h's block and lanes 8-15 head h+1's: every
// lane still does exactly its query's operations (the same FMAs, the same exp polynomial, the same
// -inf blending past its own n_kv), only 16 at a time. Hence the same bits as the AVX2 level,
// alone or in a batch, and with any thread count (threads own whole (block, head pair) items).
#include "kernels/simd.h"

#ifdef VM_SIMD_X86
#ifdef __clang__   // clang ignores GCC target pragmas
#pragma clang attribute push(__attribute__((target("avx512f,avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma,f16c")
#endif
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/exp_neg.h"
#include "kernels/simd_avx2_util.h"

enum { ATT_CHUNK = 64 };   // as simd_avx2_attn.c: keys per softmax rescale, from absolute positions

// exp_neg8 (vm_exp_neg) on 16 lanes: the same operations in the same order.
AI __m512 exp_neg16(__m512 x) {
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(VM_EXP_LOG2E)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(VM_EXP_LN2_HI), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(VM_EXP_LN2_LO), r);
    __m512 p = _mm512_set1_ps(VM_EXP_P0);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(VM_EXP_P1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(VM_EXP_P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(VM_EXP_P3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(VM_EXP_P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(VM_EXP_P5));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    p = _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(p), _mm512_slli_epi32(_mm512_cvtps_epi32(n), 23)));
    // x < VM_EXP_MIN (-inf included) -> +0; an unordered compare is false, so NaN passes through
    return _mm512_maskz_mov_ps(~_mm512_cmp_ps_mask(x, _mm512_set1_ps(VM_EXP_MIN), _CMP_LT_OQ), p);
}

AI __m512 join(__m256 lo, __m256 hi) {
    return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(lo)), _mm256_castps_pd(hi), 1));
}

AI __m256 high_half(__m512 v) { return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)); }

// nb (<= 8) queries at stride qs of heads h (at q) and h+1 (at q + 8), query i with n0 + i keys
// (rows of k and v at stride ks); out likewise. attend8_lanes line for line, 16 lanes.
static void attend8x2_lanes(float *out, const float *q, size_t qs, const float *k, const float *v, size_t ks, int n0,
                            int nb, float scale) {
    __m512 Q[8], O[8];
    {
        __m256 qa[8], qb[8];
        for (int i = 0; i < 8; i++) {
            qa[i] = i < nb ? _mm256_loadu_ps(q + (size_t)i * qs) : _mm256_setzero_ps();
            qb[i] = i < nb ? _mm256_loadu_ps(q + (size_t)i * qs + 8) : _mm256_setzero_ps();
        }
        transpose8(qa);
        transpose8(qb);
        for (int d = 0; d < 8; d++) Q[d] = join(qa[d], qb[d]);   // lane i = head h's q_i[d], 8 + i head h+1's
    }
    for (int d = 0; d < 8; d++) O[d] = _mm512_setzero_ps();
    const int N = n0 + nb - 1;   // the last lane's keys
    const __m512i nkv = _mm512_add_epi32(_mm512_set1_epi32(n0), _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7));
    const __m512 scv = _mm512_set1_ps(scale), ninf = _mm512_set1_ps(-INFINITY), one = _mm512_set1_ps(1.0f);
    __m512 mx = ninf, sum = _mm512_setzero_ps();
    __m512 sb[ATT_CHUNK];
    for (int t0 = 0; t0 < N; t0 += ATT_CHUNK) {
        const int n = N - t0 < ATT_CHUNK ? N - t0 : ATT_CHUNK;
        __m512 cm = ninf;
        for (int j = 0; j < n; j++) {
            const int t = t0 + j;
            const float *kr = k + (size_t)t * ks;
            __m512 sc = _mm512_mul_ps(Q[0], _mm512_set1_ps(kr[0]));
            #pragma GCC unroll 7
            for (int d = 1; d < 8; d++) sc = _mm512_fmadd_ps(Q[d], _mm512_set1_ps(kr[d]), sc);
            sc = _mm512_mul_ps(sc, scv);
            if (t >= n0)   // lanes with n_kv <= t: -inf
                sc = _mm512_mask_blend_ps(_mm512_cmpgt_epi32_mask(_mm512_set1_epi32(t + 1), nkv), sc, ninf);
            sb[j] = sc;
            cm = _mm512_max_ps(cm, sc);
        }
        const __mmask16 grow = _mm512_cmp_ps_mask(cm, mx, _CMP_GT_OQ);
        const __m512 r = _mm512_mask_blend_ps(grow, one, exp_neg16(_mm512_sub_ps(mx, cm)));
        mx = _mm512_mask_blend_ps(grow, mx, cm);
        sum = _mm512_mul_ps(sum, r);
        #pragma GCC unroll 8
        for (int d = 0; d < 8; d++) O[d] = _mm512_mul_ps(O[d], r);
        int j = 0;
        const int nfull = n0 - t0 < n ? (n0 - t0 > 0 ? n0 - t0 : 0) : n;   // keys every lane sees
        for (; j < nfull; j++) {
            const __m512 e = exp_neg16(_mm512_sub_ps(sb[j], mx));
            const float *vr = v + (size_t)(t0 + j) * ks;
            sum = _mm512_add_ps(sum, e);
            #pragma GCC unroll 8
            for (int d = 0; d < 8; d++) O[d] = _mm512_fmadd_ps(e, _mm512_set1_ps(vr[d]), O[d]);
        }
        for (; j < n; j++) {   // the last nb - 1 keys: only the lanes that see them change
            const __m512 e = exp_neg16(_mm512_sub_ps(sb[j], mx));
            const float *vr = v + (size_t)(t0 + j) * ks;
            const __mmask16 ok = _mm512_cmpgt_epi32_mask(nkv, _mm512_set1_epi32(t0 + j));
            sum = _mm512_mask_add_ps(sum, ok, sum, e);
            #pragma GCC unroll 8
            for (int d = 0; d < 8; d++) O[d] = _mm512_mask3_fmadd_ps(e, _mm512_set1_ps(vr[d]), O[d], ok);
        }
    }
    const __m512 inv = _mm512_div_ps(one, sum);
    __m256 oa[8], ob[8];
    #pragma GCC unroll 8
    for (int d = 0; d < 8; d++) {
        const __m512 o = _mm512_mul_ps(O[d], inv);
        oa[d] = _mm512_castps512_ps256(o);
        ob[d] = high_half(o);
    }
    transpose8(oa);   // oa[i] = head h's output for query i
    transpose8(ob);
    for (int i = 0; i < nb; i++) {
        _mm256_storeu_ps(out + (size_t)i * qs, oa[i]);
        _mm256_storeu_ps(out + (size_t)i * qs + 8, ob[i]);
    }
}

// Heads of 8, an even number of heads per KV head: work items of (a block of up to 8 consecutive
// queries, a pair of heads of one group); a thread writes whole items. A block of one query takes
// attend8_one per head (the same bits, fewer wasted lanes). No intrinsics in the OpenMP region:
// clang gives the outlined region no target attribute.
static void attention8x2(float *out, const float *q, const float *kc, const float *vc, int n_past, int B, int n_head,
                         int n_head_kv, float scale) {
    const int group = n_head / n_head_kv, n_blk = (B + 7) / 8, n_pair = n_head / 2;
    const size_t qs = (size_t)n_head * 8, ks = (size_t)n_head_kv * 8;
    const int64_t n_items = (int64_t)n_blk * n_pair;
    #pragma omp parallel for schedule(static) if (n_items > 1 && (int64_t)(n_past + B) * B * n_head * 8 > 32768)
    for (int64_t it = 0; it < n_items; it++) {
        const int b0 = (int)(it / n_pair) * 8, h = 2 * (int)(it % n_pair), hk = h / group, nb = B - b0 < 8 ? B - b0 : 8;
        const size_t qo = (size_t)b0 * qs + (size_t)h * 8, ko = (size_t)hk * 8;
        if (nb >= 2) {
            attend8x2_lanes(out + qo, q + qo, qs, kc + ko, vc + ko, ks, n_past + b0 + 1, nb, scale);
        } else {
            vm_avx2_attend8_one(out + qo, q + qo, kc + ko, vc + ko, ks, n_past + b0 + 1, scale);
            vm_avx2_attend8_one(out + qo + 8, q + qo + 8, kc + ko, vc + ko, ks, n_past + b0 + 1, scale);
        }
    }
}

void vm_avx512_attention(float *out, const float *q, const float *kc, const float *vc, int n_past, int B, int n_head,
                         int n_head_kv, int hd, float scale) {
    if (hd == 8 && n_head_kv > 0 && n_head % n_head_kv == 0 && (n_head / n_head_kv) % 2 == 0)
        attention8x2(out, q, kc, vc, n_past, B, n_head, n_head_kv, scale);
    else
        vm_avx2_attention(out, q, kc, vc, n_past, B, n_head, n_head_kv, hd, scale);
}

// ---- backward, heads of 8 ----------------------------------------------------------------------
// The AVX2 level takes a head's queries in blocks of 8 (bwd8_lanes), in order: per block the
// lanes' softmax, dp, ds and dq, then per key the block's rows gv_t += sum_i p_i go_i and gk_t +=
// sum_i ds_i q_i (even and odd queries in two chains). Here two consecutive blocks of 8 share a
// register: lanes 0-7 the first block, 8-15 the second. The first block's lanes run over the
// second's extra keys too, where their scores are -inf (masked exactly as past a lane's own n_kv
// in bwd8_lanes): exp gives 0, so p = ds = 0 and sum, pdp and dq add exact zeros. The row updates
// stay per block and in block order (the first block's, only for its own keys, then the
// second's), each with bwd8_lanes's two chains: every dk / dv row gets the same sums in the same
// order. Heads of a KV group are not paired: both would add into the same rows, in another order.

// Two floats at a (an aligned pair) in every 64-bit lane.
AI __m512 pair_bcast(const float *a) {
    double d;
    memcpy(&d, a, sizeof d);
    return _mm512_castpd_ps(_mm512_set1_pd(d));
}

// out[2i], out[2i+1] = a[i], b[i] for i < 16.
AI void interleave2(float *out, __m512 a, __m512 b) {
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    _mm512_store_ps(out, _mm512_permutex2var_ps(a, lo, b));
    _mm512_store_ps(out + 16, _mm512_permutex2var_ps(a, hi, b));
}

AI __m512 load_pair(const float *a, const float *b) { return join(_mm256_loadu_ps(a), _mm256_loadu_ps(b)); }

AI void store_pair(float *a, float *b, __m512 v) {
    _mm256_storeu_ps(a, _mm512_castps512_ps256(v));
    _mm256_storeu_ps(b, high_half(v));
}

// gv_t += sum_{i<nb} p_i go_i and gk_t += sum_{i<nb} ds_i q_i: bwd8_lanes's chains, line for line.
AI void bwd_rows(float *gvr, float *gkr, const float *pt, const float *dst, const float (*gr)[8], const float (*qr)[8],
                 int nb) {
    __m256 va = _mm256_loadu_ps(gvr), vb = _mm256_setzero_ps(), ka = _mm256_loadu_ps(gkr), kb = vb;
    for (int i = 0; i + 1 < nb; i += 2) {
        va = _mm256_fmadd_ps(_mm256_broadcast_ss(pt + i), _mm256_load_ps(gr[i]), va);
        vb = _mm256_fmadd_ps(_mm256_broadcast_ss(pt + i + 1), _mm256_load_ps(gr[i + 1]), vb);
        ka = _mm256_fmadd_ps(_mm256_broadcast_ss(dst + i), _mm256_load_ps(qr[i]), ka);
        kb = _mm256_fmadd_ps(_mm256_broadcast_ss(dst + i + 1), _mm256_load_ps(qr[i + 1]), kb);
    }
    if (nb & 1) {
        va = _mm256_fmadd_ps(_mm256_broadcast_ss(pt + nb - 1), _mm256_load_ps(gr[nb - 1]), va);
        ka = _mm256_fmadd_ps(_mm256_broadcast_ss(dst + nb - 1), _mm256_load_ps(qr[nb - 1]), ka);
    }
    _mm256_storeu_ps(gvr, _mm256_add_ps(va, vb));
    _mm256_storeu_ps(gkr, _mm256_add_ps(ka, kb));
}

// bwd_rows for two keys t, t+1 at once: *v, *k hold their gv and gk rows interleaved (lane 2d = key
// t's dim d, 2d+1 = key t+1's); pi, di the pairs (p_t,i, p_t+1,i) and (ds_t,i, ds_t+1,i) for each
// query i, broadcast as one 64-bit pair against the query's row with each dim twice (gr2, qr2).
// Every lane does bwd_rows's chains for its own key: the same FMAs in the same order.
AI void bwd_rows2(__m512 *v, __m512 *k, const float *pi, const float *di, const float (*gr2)[16],
                  const float (*qr2)[16], int nb) {
    __m512 va = *v, vb = _mm512_setzero_ps(), ka = *k, kb = vb;
    for (int i = 0; i + 1 < nb; i += 2) {
        va = _mm512_fmadd_ps(pair_bcast(pi + 2 * i), _mm512_load_ps(gr2[i]), va);
        vb = _mm512_fmadd_ps(pair_bcast(pi + 2 * i + 2), _mm512_load_ps(gr2[i + 1]), vb);
        ka = _mm512_fmadd_ps(pair_bcast(di + 2 * i), _mm512_load_ps(qr2[i]), ka);
        kb = _mm512_fmadd_ps(pair_bcast(di + 2 * i + 2), _mm512_load_ps(qr2[i + 1]), kb);
    }
    if (nb & 1) {
        va = _mm512_fmadd_ps(pair_bcast(pi + 2 * (nb - 1)), _mm512_load_ps(gr2[nb - 1]), va);
        ka = _mm512_fmadd_ps(pair_bcast(di + 2 * (nb - 1)), _mm512_load_ps(qr2[nb - 1]), ka);
    }
    *v = _mm512_add_ps(va, vb);
    *k = _mm512_add_ps(ka, kb);
}

// Rows i < n of a (at stride as), zero past n, as 8 vectors with lane i of vector d = row i's dim d.
AI void load_transposed(__m256 r[8], const float *a, size_t as, int n) {
    for (int i = 0; i < 8; i++) r[i] = i < n ? _mm256_loadu_ps(a + (size_t)i * as) : _mm256_setzero_ps();
    transpose8(r);
}

// Queries 0-7 (query i with n0 + i keys) and 8 .. 7 + nb_hi (VM_AVX2_BWD8_LANES_MIN <= nb_hi <= 8)
// of one head, at stride qs: bwd8_lanes on both blocks. P, DS: 16 (n0 + 7 + nb_hi) floats each.
static void bwd8x2_lanes(float *gq, float *gk, float *gv, const float *go, const float *q, size_t qs, const float *k,
                         const float *v, size_t ks, int n0, int nb_hi, float scale, float *P, float *DS) {
    __m512 Q[8], G[8];
    {
        __m256 lo[8], hi[8];
        load_transposed(lo, q, qs, 8);
        load_transposed(hi, q + 8 * qs, qs, nb_hi);
        for (int d = 0; d < 8; d++) Q[d] = join(lo[d], hi[d]);   // lane i = query i's dim d
        load_transposed(lo, go, qs, 8);
        load_transposed(hi, go + 8 * qs, qs, nb_hi);
        for (int d = 0; d < 8; d++) G[d] = join(lo[d], hi[d]);
    }
    const int N = n0 + 7 + nb_hi, N_lo = n0 + 7;   // the keys of the last lane of each block
    const __m512i nkv = _mm512_add_epi32(_mm512_set1_epi32(n0), _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    const __m512 scv = _mm512_set1_ps(scale), ninf = _mm512_set1_ps(-INFINITY);
    __m512 mx = ninf;
    for (int t = 0; t < N; t++) {
        const float *kr = k + (size_t)t * ks;
        __m512 sc = _mm512_mul_ps(Q[0], _mm512_set1_ps(kr[0]));
        #pragma GCC unroll 7
        for (int d = 1; d < 8; d++) sc = _mm512_fmadd_ps(Q[d], _mm512_set1_ps(kr[d]), sc);
        sc = _mm512_mul_ps(sc, scv);
        if (t >= n0) sc = _mm512_mask_blend_ps(_mm512_cmpgt_epi32_mask(_mm512_set1_epi32(t + 1), nkv), sc, ninf);
        _mm512_storeu_ps(P + 16 * (size_t)t, sc);
        mx = _mm512_max_ps(mx, sc);
    }
    __m512 sum = _mm512_setzero_ps();
    for (int t = 0; t < N; t++) {
        const __m512 e = exp_neg16(_mm512_sub_ps(_mm512_loadu_ps(P + 16 * (size_t)t), mx));
        _mm512_storeu_ps(P + 16 * (size_t)t, e);
        sum = _mm512_add_ps(sum, e);
    }
    const __m512 inv = _mm512_div_ps(_mm512_set1_ps(1.0f), sum);
    __m512 pdp = _mm512_setzero_ps();
    for (int t = 0; t < N; t++) {   // p, dp = go . v_t
        const float *vr = v + (size_t)t * ks;
        const __m512 p = _mm512_mul_ps(_mm512_loadu_ps(P + 16 * (size_t)t), inv);
        __m512 dp = _mm512_mul_ps(G[0], _mm512_set1_ps(vr[0]));
        #pragma GCC unroll 7
        for (int d = 1; d < 8; d++) dp = _mm512_fmadd_ps(G[d], _mm512_set1_ps(vr[d]), dp);
        _mm512_storeu_ps(P + 16 * (size_t)t, p);
        _mm512_storeu_ps(DS + 16 * (size_t)t, dp);
        pdp = _mm512_fmadd_ps(p, dp, pdp);
    }
    float qr[16][8] __attribute__((aligned(32))), gr[16][8] __attribute__((aligned(32)));
    for (int i = 0; i < 8 + nb_hi; i++) {
        _mm256_store_ps(qr[i], _mm256_loadu_ps(q + (size_t)i * qs));
        _mm256_store_ps(gr[i], _mm256_loadu_ps(go + (size_t)i * qs));
    }
    // the query rows with each dim twice, for the rows of two keys interleaved (below)
    float qr2[16][16] __attribute__((aligned(64))), gr2[16][16] __attribute__((aligned(64)));
    const __m512i dup = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    for (int i = 0; i < 8 + nb_hi; i++) {
        _mm512_store_ps(qr2[i], _mm512_permutexvar_ps(dup, _mm512_castps256_ps512(_mm256_load_ps(qr[i]))));
        _mm512_store_ps(gr2[i], _mm512_permutexvar_ps(dup, _mm512_castps256_ps512(_mm256_load_ps(gr[i]))));
    }
    __m512 DQ[8];
    for (int d = 0; d < 8; d++) DQ[d] = _mm512_setzero_ps();
    int t = 0;
    for (; t + 2 <= N; t += 2) {   // two keys at a time: their rows in one register (bwd_rows2)
        float pi[32] __attribute__((aligned(64))), di[32] __attribute__((aligned(64)));
        __m512 ds[2];
        for (int u = 0; u < 2; u++) {
            const float *pt = P + 16 * (size_t)(t + u), *kr = k + (size_t)(t + u) * ks;
            ds[u] = _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(pt), _mm512_sub_ps(_mm512_loadu_ps(DS + 16 * (size_t)(t + u)), pdp)), scv);
            #pragma GCC unroll 8
            for (int d = 0; d < 8; d++) DQ[d] = _mm512_fmadd_ps(ds[u], _mm512_set1_ps(kr[d]), DQ[d]);
        }
        interleave2(pi, _mm512_loadu_ps(P + 16 * (size_t)t), _mm512_loadu_ps(P + 16 * (size_t)(t + 1)));
        interleave2(di, ds[0], ds[1]);
        float *gvr = gv + (size_t)t * ks, *gkr = gk + (size_t)t * ks;
        const __m512i il = _mm512_setr_epi32(0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
        const __m512 rv0 = _mm512_permutexvar_ps(il, load_pair(gvr, gvr + ks)), rk0 = _mm512_permutexvar_ps(il, load_pair(gkr, gkr + ks));
        __m512 rv = rv0, rk = rk0;
        if (t < N_lo) {   // the first block: both keys, or key t alone (its lanes are the even ones)
            bwd_rows2(&rv, &rk, pi, di, gr2, qr2, 8);
            if (t + 1 == N_lo) {
                rv = _mm512_mask_blend_ps(0xaaaa, rv, rv0);
                rk = _mm512_mask_blend_ps(0xaaaa, rk, rk0);
            }
        }
        bwd_rows2(&rv, &rk, pi + 16, di + 16, gr2 + 8, qr2 + 8, nb_hi);   // then the second
        const __m512i de = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
        store_pair(gvr, gvr + ks, _mm512_permutexvar_ps(de, rv));
        store_pair(gkr, gkr + ks, _mm512_permutexvar_ps(de, rk));
    }
    for (; t < N; t++) {   // the last key of an odd count
        const __m512 ds = _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(P + 16 * (size_t)t),
                                                      _mm512_sub_ps(_mm512_loadu_ps(DS + 16 * (size_t)t), pdp)), scv);
        _mm512_storeu_ps(DS + 16 * (size_t)t, ds);
        const float *pt = P + 16 * (size_t)t, *dst = DS + 16 * (size_t)t, *kr = k + (size_t)t * ks;
        float *gvr = gv + (size_t)t * ks, *gkr = gk + (size_t)t * ks;
        if (t < N_lo) bwd_rows(gvr, gkr, pt, dst, gr, qr, 8);   // the first block, then the second
        bwd_rows(gvr, gkr, pt + 8, dst + 8, gr + 8, qr + 8, nb_hi);
        #pragma GCC unroll 8
        for (int d = 0; d < 8; d++) DQ[d] = _mm512_fmadd_ps(ds, _mm512_set1_ps(kr[d]), DQ[d]);
    }
    __m256 lo[8], hi[8];
    for (int d = 0; d < 8; d++) {
        lo[d] = _mm512_castps512_ps256(DQ[d]);
        hi[d] = high_half(DQ[d]);
    }
    transpose8(lo);   // lo[i] = query i's dq, hi[i] query 8 + i's
    transpose8(hi);
    for (int i = 0; i < 8 + nb_hi; i++) {
        float *g = gq + (size_t)i * qs;
        _mm256_storeu_ps(g, _mm256_add_ps(_mm256_loadu_ps(g), i < 8 ? lo[i] : hi[i - 8]));
    }
}

// One KV head's queries (every head of its group, in order), as vm_avx2_attention_backward's hd = 8
// loop: the same blocks of 8, two at a time when both go to lanes. p: 32 cap floats of scratch.
static void bwd8_head(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *kc,
                      const float *vc, int n_past, int B, int n_head, int n_head_kv, int hk, float scale, float *p,
                      size_t cap) {
    const int group = n_head / n_head_kv;
    const size_t q_stride = (size_t)n_head * 8, ks = (size_t)n_head_kv * 8, ko = (size_t)hk * 8;
    const float *k = kc + ko, *v = vc + ko;
    float *gk = dk + ko, *gv = dv + ko;
    for (int h = hk * group; h < (hk + 1) * group; h++)
        for (int b = 0; b < B;) {
            const size_t qo = (size_t)b * q_stride + (size_t)h * 8;
            const int nb = B - b < 8 ? B - b : 8, nb_hi = B - b - 8 < 8 ? B - b - 8 : 8;
            if (nb == 8 && nb_hi >= VM_AVX2_BWD8_LANES_MIN) {
                bwd8x2_lanes(dq + qo, gk, gv, dout + qo, q + qo, q_stride, k, v, ks, n_past + b + 1, nb_hi, scale, p,
                             p + 16 * cap);
                b += 8 + nb_hi;
            } else if (nb >= VM_AVX2_BWD8_LANES_MIN) {
                vm_avx2_bwd8_lanes(dq + qo, gk, gv, dout + qo, q + qo, q_stride, k, v, ks, n_past + b + 1, nb, scale, p,
                                   p + 8 * cap);
                b += nb;
            } else {
                vm_avx2_bwd_one(dq + qo, gk, gv, dout + qo, q + qo, k, v, ks, n_past + b + 1, 8, scale, p, p + cap);
                b++;
            }
        }
}

// As vm_avx2_attention_backward (same bits): threads own whole KV heads, each head's queries in
// order. Other head sizes take the AVX2 kernel. No intrinsics in the OpenMP region (clang).
void vm_avx512_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *kc,
                                  const float *vc, int n_past, int B, int n_head, int n_head_kv, int hd, float scale) {
    if (hd != 8) {
        vm_avx2_attention_backward(dq, dk, dv, dout, q, kc, vc, n_past, B, n_head, n_head_kv, hd, scale);
        return;
    }
    const int n_tot = n_past + B;
    const size_t cap = ((size_t)(n_tot > 0 ? n_tot : 1) + 7) & ~(size_t)7;   // 16 cap: bwd8x2_lanes's P or DS
    #pragma omp parallel if (n_head_kv > 1 && (int64_t)n_tot * B * n_head * hd > 32768)
    {
        float *p = malloc(32 * cap * sizeof(float));
        #pragma omp for schedule(static)
        for (int hk = 0; hk < n_head_kv; hk++)
            if (p) bwd8_head(dq, dk, dv, dout, q, kc, vc, n_past, B, n_head, n_head_kv, hk, scale, p, cap);
        free(p);
    }
}

#ifdef __clang__
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

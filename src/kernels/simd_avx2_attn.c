// Attention forward and backward at the AVX2 level (kernels/ops.h vm_attention_forward and
// vm_attention_backward; the portable ones are the scalar level's reference). Compiled for
// avx2,fma whatever the build flags; used only when simd_dispatch.c says the CPU has them.
//
// Small heads (the bundled model's hd = 8) made the per-key scalar work the whole cost: one libm
// exp per key, and chains of dependent adds (the softmax sum, o += e v with one vector per key)
// that wait on the FP latency at every key. So here:
// - exponentials 8 at a time (exp_neg8: kernels/exp_neg.h's polynomial, the same bits as the
//   scalar level's vm_exp_neg);
// - any head size, per query: scores 8 keys at a time (lane j = key j, one horizontal reduction
//   per 8 keys), the softmax sum in an 8-lane accumulator, o += e_j v_j and dq += ds_j k_j over
//   several independent accumulators (keys split round-robin), added in a fixed order;
// - heads of 8: 8 queries of a head in the lanes instead (attend8_lanes, bwd8_lanes), no
//   horizontal sums at all; see the hd = 8 section.
// Forward: every operation of a query depends only on its data and its number of keys, so a row is
// the same bits alone (decode) or in any batch; threads own whole queries. Backward: threads own
// whole KV heads and take each head's queries in a fixed order, so the bits do not depend on the
// thread count. Versus the scalar level the sums run in another order: agreement within float
// rounding (tests/test_simd.c), not bit for bit.
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
#include <stdlib.h>
#include <string.h>

#include "kernels/exp_neg.h"
#include "kernels/simd_avx2_util.h"

enum { ATT_CHUNK = 64 };   // keys scored before one softmax rescale; chunks start at absolute positions

AI float hmax_ps(__m256 v) {   // exact whatever the order (no NaN)
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

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

// s[j] = scale (a . row_j) for j < n: rows of hd floats at stride ks. 8 keys per pass over a
// (independent accumulators, hsum8x8_ps), the head's tail (hd % 8) in dot_hd's order, a lone key
// by dot_hd: each score is the same float wherever its key falls.
AI void score_keys(float *s, const float *a, const float *rows, size_t ks, int n, int hd, float scale) {
    const int hv = hd & ~7;   // the vector part of a head
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 acc[8];
        #pragma GCC unroll 8
        for (int u = 0; u < 8; u++) acc[u] = _mm256_setzero_ps();
        for (int d = 0; d < hv; d += 8) {
            const __m256 a8 = _mm256_loadu_ps(a + d);
            #pragma GCC unroll 8
            for (int u = 0; u < 8; u++) acc[u] = _mm256_fmadd_ps(a8, _mm256_loadu_ps(rows + (size_t)(j + u) * ks + d), acc[u]);
        }
        __m256 sc = hsum8x8_ps(acc);
        if (hv < hd) {
            float t[8];
            _mm256_storeu_ps(t, sc);
            for (int u = 0; u < 8; u++)
                for (int d = hv; d < hd; d++) t[u] += a[d] * rows[(size_t)(j + u) * ks + d];
            sc = _mm256_loadu_ps(t);
        }
        _mm256_storeu_ps(s + j, _mm256_mul_ps(sc, _mm256_set1_ps(scale)));
    }
    for (; j < n; j++) s[j] = dot_hd(a, rows + (size_t)j * ks, hd) * scale;
}

// o (hd) = r o + sum_{j<n} e_j v_j (v_j at stride ks). 32 floats of o at a time: two sets of 4
// accumulators (even and odd keys); 8 at a time (hd = 8: a key is one vector): four accumulators
// (keys j mod 4), so the FMAs of consecutive keys do not wait on each other. Tails: products
// then sums in key order.
AI void pv_chunk(float *o, const float *e, const float *v0, size_t ks, int n, int hd, float r) {
    const __m256 rv = _mm256_set1_ps(r);
    int d0 = 0;
    for (; d0 + 32 <= hd; d0 += 32) {
        __m256 a[2][4];
        #pragma GCC unroll 4
        for (int u = 0; u < 4; u++) a[0][u] = a[1][u] = _mm256_setzero_ps();
        int j = 0;
        for (; j + 2 <= n; j += 2) {
            const __m256 e0 = _mm256_set1_ps(e[j]), e1 = _mm256_set1_ps(e[j + 1]);
            const float *v = v0 + (size_t)j * ks + d0;
            #pragma GCC unroll 4
            for (int u = 0; u < 4; u++) {
                a[0][u] = _mm256_fmadd_ps(e0, _mm256_loadu_ps(v + 8 * u), a[0][u]);
                a[1][u] = _mm256_fmadd_ps(e1, _mm256_loadu_ps(v + ks + 8 * u), a[1][u]);
            }
        }
        if (j < n) {
            const __m256 e0 = _mm256_set1_ps(e[j]);
            const float *v = v0 + (size_t)j * ks + d0;
            #pragma GCC unroll 4
            for (int u = 0; u < 4; u++) a[0][u] = _mm256_fmadd_ps(e0, _mm256_loadu_ps(v + 8 * u), a[0][u]);
        }
        #pragma GCC unroll 4
        for (int u = 0; u < 4; u++)
            _mm256_storeu_ps(o + d0 + 8 * u, _mm256_fmadd_ps(rv, _mm256_loadu_ps(o + d0 + 8 * u), _mm256_add_ps(a[0][u], a[1][u])));
    }
    for (; d0 + 8 <= hd; d0 += 8) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        const float *v = v0 + d0;
        int j = 0;
        for (; j + 4 <= n; j += 4) {
            a0 = _mm256_fmadd_ps(_mm256_set1_ps(e[j]), _mm256_loadu_ps(v + (size_t)j * ks), a0);
            a1 = _mm256_fmadd_ps(_mm256_set1_ps(e[j + 1]), _mm256_loadu_ps(v + (size_t)(j + 1) * ks), a1);
            a2 = _mm256_fmadd_ps(_mm256_set1_ps(e[j + 2]), _mm256_loadu_ps(v + (size_t)(j + 2) * ks), a2);
            a3 = _mm256_fmadd_ps(_mm256_set1_ps(e[j + 3]), _mm256_loadu_ps(v + (size_t)(j + 3) * ks), a3);
        }
        if (j < n) a0 = _mm256_fmadd_ps(_mm256_set1_ps(e[j]), _mm256_loadu_ps(v + (size_t)j * ks), a0);
        if (j + 1 < n) a1 = _mm256_fmadd_ps(_mm256_set1_ps(e[j + 1]), _mm256_loadu_ps(v + (size_t)(j + 1) * ks), a1);
        if (j + 2 < n) a2 = _mm256_fmadd_ps(_mm256_set1_ps(e[j + 2]), _mm256_loadu_ps(v + (size_t)(j + 2) * ks), a2);
        const __m256 acc = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
        _mm256_storeu_ps(o + d0, _mm256_fmadd_ps(rv, _mm256_loadu_ps(o + d0), acc));
    }
    for (; d0 < hd; d0++) {
        float a = 0.0f;
        for (int j = 0; j < n; j++) {
            const float b = e[j] * v0[(size_t)j * ks + d0];
            a += b;
        }
        const float ro = r * o[d0];
        o[d0] = ro + a;
    }
}

// One query head over n_kv cached positions (online softmax), a chunk of keys at a time: the
// chunk's scores, their maximum; when it grows, one rescale of o and of the sum; the chunk's
// exponentials (lanes past the chunk's end hold -inf: exp 0); then o = r o + sum e_j v_j.
static void attend_one(float *o, const float *qv, const float *kc, const float *vc, size_t ks, int n_kv, int hd,
                       float scale) {
    float s[ATT_CHUNK] __attribute__((aligned(32)));
    float mx = -INFINITY;
    __m256 sumv = _mm256_setzero_ps();   // 8 partial sums of the exponentials
    for (int d = 0; d < hd; d++) o[d] = 0.0f;
    for (int t0 = 0; t0 < n_kv; t0 += ATT_CHUNK) {
        const int n = n_kv - t0 < ATT_CHUNK ? n_kv - t0 : ATT_CHUNK, nv = (n + 7) & ~7;
        const float *k0 = kc + (size_t)t0 * ks, *v0 = vc + (size_t)t0 * ks;
        score_keys(s, qv, k0, ks, n, hd, scale);
        for (int j = n; j < nv; j++) s[j] = -INFINITY;
        __m256 m = _mm256_load_ps(s);
        for (int j = 8; j < nv; j += 8) m = _mm256_max_ps(m, _mm256_load_ps(s + j));
        const float cmax = hmax_ps(m);
        float r = 1.0f;
        if (cmax > mx) {   // exp(-inf) = 0 on the first chunk: o and the sum are still 0
            r = vm_exp_neg(mx - cmax);
            sumv = _mm256_mul_ps(sumv, _mm256_set1_ps(r));
            mx = cmax;
        }
        const __m256 mxv = _mm256_set1_ps(mx);
        for (int j = 0; j < nv; j += 8) {
            const __m256 e = exp_neg8(_mm256_sub_ps(_mm256_load_ps(s + j), mxv));
            _mm256_store_ps(s + j, e);
            sumv = _mm256_add_ps(sumv, e);
        }
        pv_chunk(o, s, v0, ks, n, hd, r);
    }
    const float inv = 1.0f / hsum_ps(sumv);
    const __m256 iv = _mm256_set1_ps(inv);
    int d = 0;
    for (; d + 8 <= hd; d += 8) _mm256_storeu_ps(o + d, _mm256_mul_ps(iv, _mm256_loadu_ps(o + d)));
    for (; d < hd; d++) o[d] *= inv;
}

// ---- hd = 8: queries in lanes -------------------------------------------------------------------
// With a head of 8 a score is 8 products: keys in lanes cost a horizontal reduction per key, about
// as much as the products. Blocks of 8 queries of one head put the queries in the lanes instead
// (attend8_lanes): per key, 8 broadcasts of its dims against the queries' transposed heads give 8
// scores with no reduction, one exp_neg8 gives their 8 exponentials, and o += e v is 8 FMAs on the
// 8 dims (one vector per dim). A query's lane sees exactly these operations, in key order:
//   s = ((q0 k0) fma q1 k1 ...) fma q7 k7, then * scale;
//   per chunk of 64 keys (absolute positions): the maximum; if it grows, r = exp(mx - max),
//   o *= r, sum *= r; then per key e = exp(s - mx), sum += e, o = fma(e, v, o);
//   finally o *= 1 / sum.
// A query alone (decode, or a block of fewer than LANES_MIN) takes attend8_one, the same operations
// with the keys in lanes (8x8 transposes of the key rows, the scalar exp for r and the chunk's
// tail): the same bits as in a block. In a block, lane i stops at its own n_kv: keys past it are
// blended out (-inf scores, sum and o left as they were), so the other lanes change nothing.
// Fewer queries than these per block go one at a time (about where the two cost the same per key,
// by operation counts: a block pays its per-key work for 8 lanes whatever nb).
enum { LANES_MIN = 3, BWD_LANES_MIN = VM_AVX2_BWD8_LANES_MIN };

// nb (<= 8) queries at stride qs, query i with n0 + i keys (rows of k and v at stride ks); out at stride qs.
static void attend8_lanes(float *out, const float *q, size_t qs, const float *k, const float *v, size_t ks, int n0, int nb,
                          float scale) {
    __m256 Q[8], O[8];
    for (int i = 0; i < 8; i++) Q[i] = i < nb ? _mm256_loadu_ps(q + (size_t)i * qs) : _mm256_setzero_ps();
    transpose8(Q);   // Q[d] lane i = q_i[d]
    for (int d = 0; d < 8; d++) O[d] = _mm256_setzero_ps();
    const int N = n0 + nb - 1;   // the last lane's keys
    const __m256i nkv = _mm256_add_epi32(_mm256_set1_epi32(n0), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256 scv = _mm256_set1_ps(scale), ninf = _mm256_set1_ps(-INFINITY), one = _mm256_set1_ps(1.0f);
    __m256 mx = ninf, sum = _mm256_setzero_ps();
    __m256 sb[ATT_CHUNK];
    for (int t0 = 0; t0 < N; t0 += ATT_CHUNK) {
        const int n = N - t0 < ATT_CHUNK ? N - t0 : ATT_CHUNK;
        __m256 cm = ninf;
        for (int j = 0; j < n; j++) {
            const int t = t0 + j;
            const float *kr = k + (size_t)t * ks;
            __m256 sc = _mm256_mul_ps(Q[0], _mm256_broadcast_ss(kr));
            #pragma GCC unroll 7
            for (int d = 1; d < 8; d++) sc = _mm256_fmadd_ps(Q[d], _mm256_broadcast_ss(kr + d), sc);
            sc = _mm256_mul_ps(sc, scv);
            if (t >= n0)   // lanes with n_kv <= t: -inf
                sc = _mm256_blendv_ps(sc, ninf, _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(t + 1), nkv)));
            sb[j] = sc;
            cm = _mm256_max_ps(cm, sc);
        }
        const __m256 grow = _mm256_cmp_ps(cm, mx, _CMP_GT_OQ);
        const __m256 r = _mm256_blendv_ps(one, exp_neg8(_mm256_sub_ps(mx, cm)), grow);
        mx = _mm256_blendv_ps(mx, cm, grow);
        sum = _mm256_mul_ps(sum, r);
        #pragma GCC unroll 8
        for (int d = 0; d < 8; d++) O[d] = _mm256_mul_ps(O[d], r);
        int j = 0;
        const int nfull = n0 - t0 < n ? (n0 - t0 > 0 ? n0 - t0 : 0) : n;   // keys every lane sees
        for (; j < nfull; j++) {
            const __m256 e = exp_neg8(_mm256_sub_ps(sb[j], mx));
            const float *vr = v + (size_t)(t0 + j) * ks;
            sum = _mm256_add_ps(sum, e);
            #pragma GCC unroll 8
            for (int d = 0; d < 8; d++) O[d] = _mm256_fmadd_ps(e, _mm256_broadcast_ss(vr + d), O[d]);
        }
        for (; j < n; j++) {   // the last nb - 1 keys: only the lanes that see them change
            const __m256 e = exp_neg8(_mm256_sub_ps(sb[j], mx));
            const float *vr = v + (size_t)(t0 + j) * ks;
            const __m256 ok = _mm256_castsi256_ps(_mm256_cmpgt_epi32(nkv, _mm256_set1_epi32(t0 + j)));
            sum = _mm256_blendv_ps(sum, _mm256_add_ps(sum, e), ok);
            #pragma GCC unroll 8
            for (int d = 0; d < 8; d++) O[d] = _mm256_blendv_ps(O[d], _mm256_fmadd_ps(e, _mm256_broadcast_ss(vr + d), O[d]), ok);
        }
    }
    const __m256 inv = _mm256_div_ps(one, sum);
    #pragma GCC unroll 8
    for (int d = 0; d < 8; d++) O[d] = _mm256_mul_ps(O[d], inv);
    transpose8(O);   // O[i] = query i's head
    for (int i = 0; i < nb; i++) _mm256_storeu_ps(out + (size_t)i * qs, O[i]);
}

// One query of n_kv keys: attend8_lanes's operations for one lane, keys in lanes.
void vm_avx2_attend8_one(float *o, const float *qv, const float *k, const float *v, size_t ks, int n_kv, float scale) {
    __m256 qb[8];
    for (int d = 0; d < 8; d++) qb[d] = _mm256_set1_ps(qv[d]);
    const __m256 scv = _mm256_set1_ps(scale);
    float s[ATT_CHUNK] __attribute__((aligned(32)));
    float mx = -INFINITY, sum = 0.0f;
    __m256 ov = _mm256_setzero_ps();
    for (int t0 = 0; t0 < n_kv; t0 += ATT_CHUNK) {
        const int n = n_kv - t0 < ATT_CHUNK ? n_kv - t0 : ATT_CHUNK;
        const float *k0 = k + (size_t)t0 * ks, *v0 = v + (size_t)t0 * ks;
        int j = 0;
        __m256 cm = _mm256_set1_ps(-INFINITY);
        for (; j + 8 <= n; j += 8) {
            __m256 kt[8];
            #pragma GCC unroll 8
            for (int u = 0; u < 8; u++) kt[u] = _mm256_loadu_ps(k0 + (size_t)(j + u) * ks);
            transpose8(kt);   // kt[d] lane u = key j+u's dim d
            __m256 sc = _mm256_mul_ps(qb[0], kt[0]);
            #pragma GCC unroll 7
            for (int d = 1; d < 8; d++) sc = _mm256_fmadd_ps(qb[d], kt[d], sc);
            sc = _mm256_mul_ps(sc, scv);
            _mm256_store_ps(s + j, sc);
            cm = _mm256_max_ps(cm, sc);
        }
        float cmax = hmax_ps(cm);
        for (; j < n; j++) {
            const float *kr = k0 + (size_t)j * ks;
            float a = qv[0] * kr[0];
            for (int d = 1; d < 8; d++) a = fmaf(qv[d], kr[d], a);
            s[j] = a * scale;
            cmax = s[j] > cmax ? s[j] : cmax;
        }
        if (cmax > mx) {
            const float r = vm_exp_neg(mx - cmax);
            sum *= r;
            ov = _mm256_mul_ps(ov, _mm256_set1_ps(r));
            mx = cmax;
        }
        const __m256 mxv = _mm256_set1_ps(mx);
        for (j = 0; j + 8 <= n; j += 8) _mm256_store_ps(s + j, exp_neg8(_mm256_sub_ps(_mm256_load_ps(s + j), mxv)));
        for (; j < n; j++) s[j] = vm_exp_neg(s[j] - mx);
        for (j = 0; j < n; j++) {
            sum += s[j];
            ov = _mm256_fmadd_ps(_mm256_set1_ps(s[j]), _mm256_loadu_ps(v0 + (size_t)j * ks), ov);
        }
    }
    _mm256_storeu_ps(o, _mm256_mul_ps(ov, _mm256_set1_ps(1.0f / sum)));
}

// Heads of 8: work items of (a block of up to 8 consecutive queries, one head); a thread writes
// whole items.
static void attention8(float *out, const float *q, const float *kc, const float *vc, int n_past, int B, int n_head,
                       int n_head_kv, float scale) {
    const int group = n_head / n_head_kv, n_blk = (B + 7) / 8;
    const size_t qs = (size_t)n_head * 8, ks = (size_t)n_head_kv * 8;
    const int64_t n_items = (int64_t)n_blk * n_head;
    #pragma omp parallel for schedule(static) if (n_items > 1 && (int64_t)(n_past + B) * B * n_head * 8 > 32768)
    for (int64_t it = 0; it < n_items; it++) {
        const int b0 = (int)(it / n_head) * 8, h = (int)(it % n_head), hk = h / group, nb = B - b0 < 8 ? B - b0 : 8;
        const size_t qo = (size_t)b0 * qs + (size_t)h * 8, ko = (size_t)hk * 8;
        if (nb >= LANES_MIN) {
            attend8_lanes(out + qo, q + qo, qs, kc + ko, vc + ko, ks, n_past + b0 + 1, nb, scale);
        } else {
            for (int i = 0; i < nb; i++)
                vm_avx2_attend8_one(out + qo + (size_t)i * qs, q + qo + (size_t)i * qs, kc + ko, vc + ko, ks, n_past + b0 + i + 1,
                            scale);
        }
    }
}

void vm_avx2_attention(float *out, const float *q, const float *kc, const float *vc, int n_past, int B, int n_head,
                       int n_head_kv, int hd, float scale) {
    if (hd == 8) {
        attention8(out, q, kc, vc, n_past, B, n_head, n_head_kv, scale);
        return;
    }
    const int group = n_head / n_head_kv;
    const size_t q_stride = (size_t)n_head * hd, kv_stride = (size_t)n_head_kv * hd;
    const int64_t n_items = (int64_t)B * n_head;
    const int parallel = n_items > 1 && (int64_t)(n_past + B) * n_items * hd > 32768;
    if (hd < 32 || n_head_kv == 1 || B < 2) {   // one pass over the rows per query: read them in place
        #pragma omp parallel for schedule(static) if (parallel)
        for (int64_t it = 0; it < n_items; it++) {
            const int b = (int)(it / n_head), h = (int)(it % n_head), hk = h / group;
            attend_one(out + (size_t)b * q_stride + (size_t)h * hd, q + (size_t)b * q_stride + (size_t)h * hd,
                       kc + (size_t)hk * hd, vc + (size_t)hk * hd, kv_stride, n_past + b + 1, hd, scale);
        }
        return;
    }
    // Wide heads, several queries: a head's rows sit kv_stride floats apart (4 KB for 8 heads of
    // 128), so K and V rows share a few cache sets and each query streams them from memory. An item
    // is (a block of ATT_QBLK queries, a KV head): it copies the head's rows its queries see into
    // contiguous scratch once, then runs every query of the group on them. attend_one does the same
    // operations wherever the rows are: the same bits as in place (and as a decode).
    enum { ATT_QBLK = 16 };
    const int n_qb = (B + ATT_QBLK - 1) / ATT_QBLK;
    const int64_t n_blk = (int64_t)n_qb * n_head_kv;
    #pragma omp parallel if (parallel)
    {
        float *buf = malloc(2 * (size_t)(n_past + B) * hd * sizeof(float));   // NULL: in place
        #pragma omp for schedule(static, 1)
        for (int64_t it = 0; it < n_blk; it++) {
            const int hk = (int)(it % n_head_kv), b0 = (int)(it / n_head_kv) * ATT_QBLK;
            const int b1 = B - b0 < ATT_QBLK ? B : b0 + ATT_QBLK, n_rows = n_past + b1;
            const float *k = kc + (size_t)hk * hd, *v = vc + (size_t)hk * hd;
            size_t ks = kv_stride;
            if (buf) {
                float *kh = buf, *vh = buf + (size_t)n_rows * hd;
                for (int t = 0; t < n_rows; t++) {
                    memcpy(kh + (size_t)t * hd, k + (size_t)t * kv_stride, (size_t)hd * sizeof(float));
                    memcpy(vh + (size_t)t * hd, v + (size_t)t * kv_stride, (size_t)hd * sizeof(float));
                }
                k = kh; v = vh; ks = (size_t)hd;
            }
            for (int b = b0; b < b1; b++)
                for (int h = hk * group; h < (hk + 1) * group; h++)
                    attend_one(out + (size_t)b * q_stride + (size_t)h * hd, q + (size_t)b * q_stride + (size_t)h * hd,
                               k, v, ks, n_past + b + 1, hd, scale);
        }
        free(buf);
    }
}

// ---- backward ---------------------------------------------------------------------------------------

// For 8*NV head dims (d0 .. of the caller's pointers): gv_j += p_j go, gk_j += ds_j q for every key,
// gq += sum_j ds_j k_j over two accumulators (even and odd keys) added at the end.
AI void bwd_keys(float *gq, float *gk, float *gv, const float *go, const float *qv, const float *k, size_t ks,
                 const float *p, const float *ds, int n, const int NV) {
    __m256 g[4], qq[4], a0[4], a1[4];
    #pragma GCC unroll 4
    for (int u = 0; u < NV; u++) {
        g[u] = _mm256_loadu_ps(go + 8 * u);
        qq[u] = _mm256_loadu_ps(qv + 8 * u);
        a0[u] = a1[u] = _mm256_setzero_ps();
    }
#define BWD_KEY(j_, a_)                                                                                      \
    do {                                                                                                     \
        const __m256 pj = _mm256_set1_ps(p[j_]), dsj = _mm256_set1_ps(ds[j_]);                               \
        const size_t off = (size_t)(j_) * ks;                                                                \
        _Pragma("GCC unroll 4") for (int u = 0; u < NV; u++) {                                               \
            _mm256_storeu_ps(gv + off + 8 * u, _mm256_fmadd_ps(pj, g[u], _mm256_loadu_ps(gv + off + 8 * u)));  \
            _mm256_storeu_ps(gk + off + 8 * u, _mm256_fmadd_ps(dsj, qq[u], _mm256_loadu_ps(gk + off + 8 * u))); \
            a_[u] = _mm256_fmadd_ps(dsj, _mm256_loadu_ps(k + off + 8 * u), a_[u]);                            \
        }                                                                                                    \
    } while (0)
    int j = 0;
    for (; j + 2 <= n; j += 2) {
        BWD_KEY(j, a0);
        BWD_KEY(j + 1, a1);
    }
    if (j < n) BWD_KEY(j, a0);
#undef BWD_KEY
    #pragma GCC unroll 4
    for (int u = 0; u < NV; u++)
        _mm256_storeu_ps(gq + 8 * u, _mm256_add_ps(_mm256_loadu_ps(gq + 8 * u), _mm256_add_ps(a0[u], a1[u])));
}

// One query (hd % 8 == 0) over its n keys: p = softmax(scale q.k) (the maximum over all n, sums
// in 8 lanes), dp_j = go.v_j, ds_j = scale p_j (dp_j - sum_i p_i dp_i), then the updates of
// bwd_keys. p, ds: scratch of n rounded up to 8 floats.
void vm_avx2_bwd_one(float *gq, float *gk, float *gv, const float *go, const float *qv, const float *k, const float *v,
                     size_t ks, int n, int hd, float scale, float *p, float *ds) {
    const int nv = (n + 7) & ~7;
    score_keys(p, qv, k, ks, n, hd, scale);
    for (int j = n; j < nv; j++) p[j] = -INFINITY;
    __m256 m = _mm256_set1_ps(-INFINITY);
    for (int j = 0; j < nv; j += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(p + j));
    const __m256 mxv = _mm256_set1_ps(hmax_ps(m));
    __m256 sumv = _mm256_setzero_ps();
    for (int j = 0; j < nv; j += 8) {
        const __m256 e = exp_neg8(_mm256_sub_ps(_mm256_loadu_ps(p + j), mxv));
        _mm256_storeu_ps(p + j, e);
        sumv = _mm256_add_ps(sumv, e);
    }
    const __m256 inv = _mm256_set1_ps(1.0f / hsum_ps(sumv));
    score_keys(ds, go, v, ks, n, hd, 1.0f);   // dp
    for (int j = n; j < nv; j++) ds[j] = 0.0f;
    __m256 pdp = _mm256_setzero_ps();
    for (int j = 0; j < nv; j += 8) {
        const __m256 pj = _mm256_mul_ps(_mm256_loadu_ps(p + j), inv);
        _mm256_storeu_ps(p + j, pj);
        pdp = _mm256_fmadd_ps(pj, _mm256_loadu_ps(ds + j), pdp);
    }
    const __m256 pdpv = _mm256_set1_ps(hsum_ps(pdp)), sc = _mm256_set1_ps(scale);
    for (int j = 0; j < nv; j += 8)
        _mm256_storeu_ps(ds + j, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(p + j), _mm256_sub_ps(_mm256_loadu_ps(ds + j), pdpv)), sc));
    for (int d0 = 0; d0 < hd; d0 += 32) {
        const int w = hd - d0 < 32 ? (hd - d0) / 8 : 4;
        float *gq0 = gq + d0, *gk0 = gk + d0, *gv0 = gv + d0;
        const float *go0 = go + d0, *q0 = qv + d0, *k0 = k + d0;
        switch (w) {
        case 1: bwd_keys(gq0, gk0, gv0, go0, q0, k0, ks, p, ds, n, 1); break;
        case 2: bwd_keys(gq0, gk0, gv0, go0, q0, k0, ks, p, ds, n, 2); break;
        case 3: bwd_keys(gq0, gk0, gv0, go0, q0, k0, ks, p, ds, n, 3); break;
        default: bwd_keys(gq0, gk0, gv0, go0, q0, k0, ks, p, ds, n, 4); break;
        }
    }
}

// Heads of 8, a block of nb (<= 8) queries of one head in the lanes (as attend8_lanes; query i at
// stride qs with n0 + i keys): per key, the 8 queries' scores, probabilities, dp and ds are one
// vector each, with no horizontal sums; then the key's gv row += sum_i p_i go_i and gk row +=
// sum_i ds_i q_i (the query rows broadcast-weighted, even and odd queries in two chains), and
// dq (queries in lanes) += ds k. Keys past a lane's n_kv get p = ds = 0. P, DS: scratch of
// 8 (n0 + nb - 1) floats each.
void vm_avx2_bwd8_lanes(float *gq, float *gk, float *gv, const float *go, const float *q, size_t qs, const float *k,
                        const float *v, size_t ks, int n0, int nb, float scale, float *P, float *DS) {
    __m256 Q[8], G[8];
    for (int i = 0; i < 8; i++) {
        Q[i] = i < nb ? _mm256_loadu_ps(q + (size_t)i * qs) : _mm256_setzero_ps();
        G[i] = i < nb ? _mm256_loadu_ps(go + (size_t)i * qs) : _mm256_setzero_ps();
    }
    transpose8(Q);   // Q[d], G[d] lane i = query i's dim d
    transpose8(G);
    const int N = n0 + nb - 1;
    const __m256i nkv = _mm256_add_epi32(_mm256_set1_epi32(n0), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256 scv = _mm256_set1_ps(scale), ninf = _mm256_set1_ps(-INFINITY);
    __m256 mx = ninf;
    for (int t = 0; t < N; t++) {
        const float *kr = k + (size_t)t * ks;
        __m256 sc = _mm256_mul_ps(Q[0], _mm256_broadcast_ss(kr));
        #pragma GCC unroll 7
        for (int d = 1; d < 8; d++) sc = _mm256_fmadd_ps(Q[d], _mm256_broadcast_ss(kr + d), sc);
        sc = _mm256_mul_ps(sc, scv);
        if (t >= n0) sc = _mm256_blendv_ps(sc, ninf, _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(t + 1), nkv)));
        _mm256_storeu_ps(P + 8 * (size_t)t, sc);
        mx = _mm256_max_ps(mx, sc);
    }
    __m256 sum = _mm256_setzero_ps();
    for (int t = 0; t < N; t++) {
        const __m256 e = exp_neg8(_mm256_sub_ps(_mm256_loadu_ps(P + 8 * (size_t)t), mx));
        _mm256_storeu_ps(P + 8 * (size_t)t, e);
        sum = _mm256_add_ps(sum, e);
    }
    const __m256 inv = _mm256_div_ps(_mm256_set1_ps(1.0f), sum);
    __m256 pdp = _mm256_setzero_ps();
    for (int t = 0; t < N; t++) {   // p, dp = go . v_t
        const float *vr = v + (size_t)t * ks;
        const __m256 p = _mm256_mul_ps(_mm256_loadu_ps(P + 8 * (size_t)t), inv);
        __m256 dp = _mm256_mul_ps(G[0], _mm256_broadcast_ss(vr));
        #pragma GCC unroll 7
        for (int d = 1; d < 8; d++) dp = _mm256_fmadd_ps(G[d], _mm256_broadcast_ss(vr + d), dp);
        _mm256_storeu_ps(P + 8 * (size_t)t, p);
        _mm256_storeu_ps(DS + 8 * (size_t)t, dp);
        pdp = _mm256_fmadd_ps(p, dp, pdp);
    }
    // the query rows again (registers went to the transposes), from memory in the loop below
    float qr[8][8] __attribute__((aligned(32))), gr[8][8] __attribute__((aligned(32)));
    for (int i = 0; i < nb; i++) {
        _mm256_store_ps(qr[i], _mm256_loadu_ps(q + (size_t)i * qs));
        _mm256_store_ps(gr[i], _mm256_loadu_ps(go + (size_t)i * qs));
    }
    __m256 DQ[8];
    for (int d = 0; d < 8; d++) DQ[d] = _mm256_setzero_ps();
    for (int t = 0; t < N; t++) {
        const __m256 ds = _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(P + 8 * (size_t)t),
                                                      _mm256_sub_ps(_mm256_loadu_ps(DS + 8 * (size_t)t), pdp)), scv);
        _mm256_storeu_ps(DS + 8 * (size_t)t, ds);
        const float *pt = P + 8 * (size_t)t, *dst = DS + 8 * (size_t)t, *kr = k + (size_t)t * ks;
        float *gvr = gv + (size_t)t * ks, *gkr = gk + (size_t)t * ks;
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
        #pragma GCC unroll 8
        for (int d = 0; d < 8; d++) DQ[d] = _mm256_fmadd_ps(ds, _mm256_broadcast_ss(kr + d), DQ[d]);
    }
    transpose8(DQ);   // DQ[i] = query i's dq
    for (int i = 0; i < nb; i++) _mm256_storeu_ps(gq + (size_t)i * qs, _mm256_add_ps(_mm256_loadu_ps(gq + (size_t)i * qs), DQ[i]));
}

// As vm_attention_backward_scalar (kernels/backward.c) in float: threads own whole KV heads (the
// keys' dk/dv rows), each head's queries in a fixed order, so the bits do not depend on the
// thread count. Head dims that are not a multiple of 8 take the portable kernel.
// dst (n rows of hd at stride ld) += src (n x hd, contiguous). A function of its own, not code in
// the OpenMP region: clang gives the outlined region no target attribute, so no intrinsics there.
static void add_rows(float *dst, size_t ld, const float *src, int n, int hd) {
    for (int t = 0; t < n; t++)
        for (int d = 0; d < hd; d += 8) {
            float *a = dst + (size_t)t * ld + d;
            _mm256_storeu_ps(a, _mm256_add_ps(_mm256_loadu_ps(a), _mm256_loadu_ps(src + (size_t)t * hd + d)));
        }
}

void vm_avx2_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *kc,
                                const float *vc, int n_past, int B, int n_head, int n_head_kv, int hd, float scale) {
    if (hd % 8) {
        vm_attention_backward_scalar(dq, dk, dv, dout, q, kc, vc, n_past, B, n_head, n_head_kv, hd, scale);
        return;
    }
    const int group = n_head / n_head_kv, n_tot = n_past + B;
    const size_t q_stride = (size_t)n_head * hd, kv_stride = (size_t)n_head_kv * hd;
    const size_t cap = ((size_t)(n_tot > 0 ? n_tot : 1) + 7) & ~(size_t)7;   // 8 * cap: bwd8_lanes's P or DS
    // Wide heads (hd >= 32, several KV heads): a head's rows sit kv_stride floats apart, 4 KB for
    // 8 heads of 128, so the rows of K, V, dK and dV all fall in the same few cache sets and every
    // pass over the keys streams from memory. Each thread copies its head's K and V rows into
    // contiguous scratch (n_tot x hd, O(n_tot hd) next to the O(B n_tot hd) work), accumulates dK and
    // dV there from zero, and adds them to dk and dv at the end.
    const int pack = hd >= 32 && n_head_kv > 1;
    const size_t sp = (hd == 8 ? 16 : 2) * cap, sh = pack ? 4 * (size_t)n_tot * hd : 0;
    #pragma omp parallel if (n_head_kv > 1 && (int64_t)n_tot * B * n_head * hd > 32768)
    {
        float *p = malloc((sp + sh) * sizeof(float));
        #pragma omp for schedule(static)
        for (int hk = 0; hk < n_head_kv; hk++) {
            if (!p) continue;
            const size_t ko = (size_t)hk * hd;
            const float *k = kc + ko, *v = vc + ko;
            float *gk = dk + ko, *gv = dv + ko;
            size_t ks = kv_stride;
            if (pack) {
                float *kh = p + sp, *vh = kh + (size_t)n_tot * hd;
                gk = vh + (size_t)n_tot * hd;
                gv = gk + (size_t)n_tot * hd;
                for (int t = 0; t < n_tot; t++) {
                    memcpy(kh + (size_t)t * hd, k + (size_t)t * kv_stride, (size_t)hd * sizeof(float));
                    memcpy(vh + (size_t)t * hd, v + (size_t)t * kv_stride, (size_t)hd * sizeof(float));
                }
                memset(gk, 0, 2 * (size_t)n_tot * hd * sizeof(float));
                k = kh; v = vh; ks = (size_t)hd;
            }
            for (int h = hk * group; h < (hk + 1) * group; h++)
                for (int b = 0; b < B;) {
                    const size_t qo = (size_t)b * q_stride + (size_t)h * hd;
                    const int nb = B - b < 8 ? B - b : 8;
                    if (hd == 8 && nb >= BWD_LANES_MIN) {   // a block of 8 queries in the lanes
                        vm_avx2_bwd8_lanes(dq + qo, gk, gv, dout + qo, q + qo, q_stride, k, v, ks, n_past + b + 1, nb, scale, p,
                                   p + 8 * cap);
                        b += nb;
                    } else {
                        vm_avx2_bwd_one(dq + qo, gk, gv, dout + qo, q + qo, k, v, ks, n_past + b + 1, hd, scale, p, p + cap);
                        b++;
                    }
                }
            if (pack) {
                add_rows(dk + ko, kv_stride, gk, n_tot, hd);
                add_rows(dv + ko, kv_stride, gv, n_tot, hd);
            }
        }
        free(p);
    }
}

#ifdef __clang__
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

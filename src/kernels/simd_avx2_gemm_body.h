// Body of the batched int8 products (see simd_avx2_gemm.c), included once per instruction set:
// GEMM_VNNI 1 uses AVX-VNNI's vpdpbusd (4 u8 x s8 products added into an int32 lane, one
// instruction), 0 the AVX2 pair vpmaddubsw + vpmaddwd (the same exact integers while no int16
// pair sum saturates: weight bytes <= 63 here, so |pair| <= 2 * 63 * 127; Q8_0 needs VNNI).
// GEMM_FN(name) gives each copy its own names.

// acc + sum over the 4 byte pairs of each 32-bit lane of u (unsigned) * s (signed): exact
AI __m256i GEMM_FN(dot4)(__m256i acc, __m256i u, __m256i s) {
#if GEMM_VNNI
    return _mm256_dpbusd_avx_epi32(acc, u, s);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
#endif
}

// acc[t][r] += the k-groups [g0, g0 + n) of TG token groups (at xg, gstride apart) against the
// unsigned weight bytes wq[r] of RT rows: RT * TG independent sums hide vpdpbusd's latency.
AI void GEMM_FN(dot_groups)(__m256i acc[][GEMM_RT], const uint8_t *xg, size_t gstride, const uint8_t *const *wq,
                            int g0, int n, const int RT, const int TG) {
    for (int g = g0; g < g0 + n; g++) {
        __m256i xv[2];
#pragma GCC unroll 2
        for (int t = 0; t < TG; t++) xv[t] = _mm256_load_si256((const __m256i *)(xg + (size_t)t * gstride + 32 * (size_t)g));
#pragma GCC unroll 4
        for (int r = 0; r < RT; r++) {
            int32_t w4;
            memcpy(&w4, wq[r] + 4 * g, 4);
            const __m256i wv = _mm256_set1_epi32(w4);
#pragma GCC unroll 2
            for (int t = 0; t < TG; t++) acc[t][r] = GEMM_FN(dot4)(acc[t][r], wv, xv[t]);
        }
    }
}

// Outputs of a row tile: F[group * GEMM_RT + r], lanes are tokens. A full tile is transposed to
// one 4-float row per token (out[t * ldo + r .. r + 3] are adjacent).
AI void GEMM_FN(store_tile)(float *out, size_t ldo, const __m256 *F, int G, int B, const int RT) {
    for (int gi = 0; gi < G; gi++) {
        const __m256 *f = F + gi * GEMM_RT;
        const int nt = B - 8 * gi < 8 ? B - 8 * gi : 8;
        float *o = out + (size_t)(8 * gi) * ldo;
        if (RT == 4) {
            const __m256 a = _mm256_unpacklo_ps(f[0], f[1]), b = _mm256_unpackhi_ps(f[0], f[1]);
            const __m256 c = _mm256_unpacklo_ps(f[2], f[3]), d = _mm256_unpackhi_ps(f[2], f[3]);
            // token t (t < 4 in the low halves, t + 4 in the high): rows 0-3
            const __m256 t04 = _mm256_shuffle_ps(a, c, 0x44), t15 = _mm256_shuffle_ps(a, c, 0xee);
            const __m256 t26 = _mm256_shuffle_ps(b, d, 0x44), t37 = _mm256_shuffle_ps(b, d, 0xee);
            const __m256 v[4] = {t04, t15, t26, t37};
            for (int t = 0; t < nt; t++)
                _mm_storeu_ps(o + (size_t)t * ldo, t < 4 ? _mm256_castps256_ps128(v[t]) : _mm256_extractf128_ps(v[t - 4], 1));
        } else {
            float l[8];
            _mm256_storeu_ps(l, f[0]);
            for (int t = 0; t < nt; t++) o[(size_t)t * ldo] = l[t];
        }
    }
}

// Q8_0 / Q4_0, block i of TG token groups from group gi: S = sum (w + c) x - c sum x, then
// acc += (d_w * d_x) * S, lane by lane (q8act.c's steps).
AI void GEMM_FN(q32_groups)(__m256 *F, const uint8_t *xp, size_t gstride, int gi, int64_t i, int64_t nb,
                            const uint8_t *const *wq, const float *dw, const int RT, const int TG) {
    const uint8_t *xg = xp + (size_t)gi * gstride;
    __m256i acc[2][GEMM_RT];
#pragma GCC unroll 2
    for (int t = 0; t < TG; t++)
#pragma GCC unroll 4
        for (int r = 0; r < RT; r++) acc[t][r] = _mm256_setzero_si256();
    GEMM_FN(dot_groups)(acc, xg + (size_t)i * 256, gstride, wq, 0, 8, RT, TG);
#pragma GCC unroll 2
    for (int t = 0; t < TG; t++) {
        const uint8_t *xb = xg + (size_t)t * gstride;
        const __m256 dx = _mm256_load_ps((const float *)(xb + gemm_d_off(nb, 32)) + 8 * i);
        const __m256i cs = _mm256_load_si256((const __m256i *)(xb + gemm_s_off(nb, 32)) + i);
#pragma GCC unroll 4
        for (int r = 0; r < RT; r++) {
            const __m256 d = _mm256_mul_ps(_mm256_set1_ps(dw[r]), dx);
            const __m256 v = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(acc[t][r], cs)));
            F[(gi + t) * GEMM_RT + r] = _mm256_add_ps(F[(gi + t) * GEMM_RT + r], v);
        }
    }
}

// Q8_0 / Q4_0, a tile of RT rows over G token groups.
AI void GEMM_FN(q32_tile)(float *out, size_t ldo, const uint8_t *w, size_t ldw, const uint8_t *xp, size_t gstride,
                          int G, int B, int64_t nb, const int RT, const int four) {
    const size_t bsz = four ? QB_Q4_0 : QB_Q8_0;
    __m256 F[GEMM_GMAX * GEMM_RT];
    for (int i = 0; i < G * GEMM_RT; i++) F[i] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        uint8_t q[GEMM_RT][32] __attribute__((aligned(32)));
        const uint8_t *wq[GEMM_RT];
        float dw[GEMM_RT];
#pragma GCC unroll 4
        for (int r = 0; r < RT; r++) {
            const uint8_t *wb = w + (size_t)r * ldw + (size_t)i * bsz;
            gemm_prefetch(wb + (size_t)RT * ldw, bsz);
            dw[r] = gemm_q32_unpack(wb, four, q[r]);
            wq[r] = q[r];
        }
        int gi = 0;
        for (; gi + 2 <= G; gi += 2) GEMM_FN(q32_groups)(F, xp, gstride, gi, i, nb, wq, dw, RT, 2);
        if (gi < G) GEMM_FN(q32_groups)(F, xp, gstride, gi, i, nb, wq, dw, RT, 1);
    }
    GEMM_FN(store_tile)(out, ldo, F, G, B, RT);
}

// K-quants, block i of TG token groups from group gi: A = sum_s sc_s sum_s w x (Q6_K minus
// 32 sum_g sc_g sum_g x), M = sum_s m_s sum_s x (Q4_K/Q5_K); acc += (d d_x) A, then
// acc -= (dmin d_x) M, lane by lane (q8act.c's steps).
AI void GEMM_FN(kq_groups)(__m256 *F, const uint8_t *xp, size_t gstride, int gi, int64_t i, int64_t nb,
                           const uint8_t *const *wq, int32_t sc[][16], int32_t pairs[][8], const float *dd,
                           const float *dm, const int RT, const int TG, const int six) {
    const int nsub = six ? 16 : 8, glen = six ? 4 : 8;   // sub-blocks, k-groups per sub-block
    const uint8_t *xg = xp + (size_t)gi * gstride;
    __m256i A[2][GEMM_RT];
#pragma GCC unroll 2
    for (int t = 0; t < TG; t++)
#pragma GCC unroll 4
        for (int r = 0; r < RT; r++) A[t][r] = _mm256_setzero_si256();
    for (int s = 0; s < nsub; s++) {
        __m256i acc[2][GEMM_RT];
#pragma GCC unroll 2
        for (int t = 0; t < TG; t++)
#pragma GCC unroll 4
            for (int r = 0; r < RT; r++) acc[t][r] = _mm256_setzero_si256();
        GEMM_FN(dot_groups)(acc, xg + (size_t)i * 2048, gstride, wq, s * glen, glen, RT, TG);
#pragma GCC unroll 4
        for (int r = 0; r < RT; r++) {
            const __m256i scv = _mm256_set1_epi32(sc[r][s]);
#pragma GCC unroll 2
            for (int t = 0; t < TG; t++) A[t][r] = _mm256_add_epi32(A[t][r], _mm256_mullo_epi32(acc[t][r], scv));
        }
    }
#pragma GCC unroll 2
    for (int t = 0; t < TG; t++) {
        const uint8_t *xb = xg + (size_t)t * gstride;
        const __m256 dx = _mm256_load_ps((const float *)(xb + gemm_d_off(nb, 256)) + 8 * i);
        const __m256i *xs = (const __m256i *)(xb + gemm_s_off(nb, 256) + (size_t)i * (six ? 256 : 128));
#pragma GCC unroll 4
        for (int r = 0; r < RT; r++) {
            // Q6_K: sum_g sc_g sum_g x; Q4_K/Q5_K: M
            __m256i P = _mm256_setzero_si256();
            for (int j = 0; j < (six ? 8 : 4); j++)
                P = _mm256_add_epi32(P, _mm256_madd_epi16(_mm256_set1_epi32(pairs[r][j]), _mm256_load_si256(xs + j)));
            const __m256i a = six ? _mm256_sub_epi32(A[t][r], _mm256_slli_epi32(P, 5)) : A[t][r];
            const __m256 ta = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(dd[r]), dx), _mm256_cvtepi32_ps(a));
            __m256 f = _mm256_add_ps(F[(gi + t) * GEMM_RT + r], ta);
            if (!six) {
                const __m256 tm = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(dm[r]), dx), _mm256_cvtepi32_ps(P));
                f = _mm256_sub_ps(f, tm);
            }
            F[(gi + t) * GEMM_RT + r] = f;
        }
    }
}

// K-quants, a tile of RT rows over G token groups.
AI void GEMM_FN(kq_tile)(float *out, size_t ldo, const uint8_t *w, size_t ldw, const uint8_t *xp, size_t gstride,
                         int G, int B, int64_t nb, const int RT, const vm_type type) {
    const int six = type == VM_TYPE_Q6_K;
    const size_t bsz = type == VM_TYPE_Q4_K ? QB_Q4_K : type == VM_TYPE_Q5_K ? QB_Q5_K : QB_Q6_K;
    __m256 F[GEMM_GMAX * GEMM_RT];
    for (int i = 0; i < G * GEMM_RT; i++) F[i] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        uint8_t q[GEMM_RT][256] __attribute__((aligned(32)));
        const uint8_t *wq[GEMM_RT];
        int32_t sc[GEMM_RT][16], pairs[GEMM_RT][8];
        float dd[GEMM_RT], dm[GEMM_RT];
#pragma GCC unroll 4
        for (int r = 0; r < RT; r++) {
            const uint8_t *wb = w + (size_t)r * ldw + (size_t)i * bsz;
            gemm_prefetch(wb + (size_t)RT * ldw, bsz);
            gemm_kq_unpack(wb, type, q[r], sc[r], pairs[r], &dd[r], &dm[r]);
            wq[r] = q[r];
        }
        int gi = 0;
        for (; gi + 2 <= G; gi += 2) GEMM_FN(kq_groups)(F, xp, gstride, gi, i, nb, wq, sc, pairs, dd, dm, RT, 2, six);
        if (gi < G) GEMM_FN(kq_groups)(F, xp, gstride, gi, i, nb, wq, sc, pairs, dd, dm, RT, 1, six);
    }
    GEMM_FN(store_tile)(out, ldo, F, G, B, RT);
}

// one copy per type and tile height, the type a constant
#define GEMM_TILES(T_, CALL)                                                                              \
    if (RT == GEMM_RT) CALL(oc + r0, ldo, wr, ldw, xc, gstride, G, Bc, nb, GEMM_RT, T_);                  \
    else CALL(oc + r0, ldo, wr, ldw, xc, gstride, G, Bc, nb, 1, T_);

static void GEMM_FN(gemm_rows)(vm_type type, float *out, size_t ldo, const void *w, size_t ldw, const void *xp,
                               int R, int B, int64_t C) {
    const int64_t nb = C / vm_act_block(type);
    const size_t gstride = gemm_group_bytes(type, C);
    // tokens in chunks of GEMM_GMAX groups (the float accumulators of a tile stay on the stack)
    for (int t0 = 0; t0 < B; t0 += 8 * GEMM_GMAX) {
        const int Bc = B - t0 < 8 * GEMM_GMAX ? B - t0 : 8 * GEMM_GMAX, G = (Bc + 7) / 8;
        const uint8_t *xc = (const uint8_t *)xp + (size_t)(t0 / 8) * gstride;
        float *oc = out + (size_t)t0 * ldo;
        for (int r0 = 0; r0 < R;) {
            const int RT = R - r0 >= GEMM_RT ? GEMM_RT : 1;
            const uint8_t *wr = (const uint8_t *)w + (size_t)r0 * ldw;
            switch (type) {
            case VM_TYPE_Q8_0: GEMM_TILES(0, GEMM_FN(q32_tile)) break;
            case VM_TYPE_Q4_0: GEMM_TILES(1, GEMM_FN(q32_tile)) break;
            case VM_TYPE_Q4_K: GEMM_TILES(VM_TYPE_Q4_K, GEMM_FN(kq_tile)) break;
            case VM_TYPE_Q5_K: GEMM_TILES(VM_TYPE_Q5_K, GEMM_FN(kq_tile)) break;
            default: GEMM_TILES(VM_TYPE_Q6_K, GEMM_FN(kq_tile)) break;
            }
            r0 += RT;
        }
    }
}
#undef GEMM_TILES

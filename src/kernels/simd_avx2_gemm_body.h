// Body of the batched int8 products (see simd_avx2_gemm.c), included once per instruction set:
// GEMM_VNNI 1 uses AVX-VNNI's vpdpbusd (4 u8 x s8 products added into an int32 lane, one
// instruction), 0 the AVX2 pair vpmaddubsw + vpmaddwd (the same exact integers while no int16
// pair sum saturates: |weight| <= 32 here, so |pair| <= 2 * 255 * 32; Q8_0 needs VNNI).
// GEMM_FN(name) gives each copy its own names.

// acc + sum over the 4 byte pairs of each 32-bit lane of u (unsigned) * s (signed): exact
AI __m256i GEMM_FN(dot4)(__m256i acc, __m256i u, __m256i s) {
#if GEMM_VNNI
    return _mm256_dpbusd_avx_epi32(acc, u, s);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
#endif
}

// acc[t][r] += the k-groups [g0, g0 + n) of TG token groups (at xg, gstride apart) against the rows'
// weight bytes wq[r]: RT * TG independent accumulators hide vpdpbusd's latency.
AI void GEMM_FN(dot_groups)(__m256i acc[][GEMM_RT], const uint8_t *xg, size_t gstride, const int8_t *const *wq,
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
            for (int t = 0; t < TG; t++) acc[t][r] = GEMM_FN(dot4)(acc[t][r], xv[t], wv);
        }
    }
}

// Outputs of a row tile: F[group][r] lanes are tokens.
AI void GEMM_FN(store_tile)(float *out, size_t ldo, const __m256 *F, int G, int B, const int RT) {
    for (int gi = 0; gi < G; gi++) {
        float o[GEMM_RT][8];
#pragma GCC unroll 4
        for (int r = 0; r < RT; r++) _mm256_storeu_ps(o[r], F[gi * GEMM_RT + r]);
        const int nt = B - 8 * gi < 8 ? B - 8 * gi : 8;
        for (int t = 0; t < nt; t++)
#pragma GCC unroll 4
            for (int r = 0; r < RT; r++) out[(size_t)(8 * gi + t) * ldo + r] = o[r][t];
    }
}

// Block i of TG token groups from group gi: integer sums, then the float steps into F.
AI void GEMM_FN(q32_groups)(__m256 *F, const uint8_t *xp, size_t gstride, int gi, int64_t i, int64_t nb,
                            const int8_t *const *wq, const float *dw, const int32_t *K, const int RT, const int TG) {
    const uint8_t *xg = xp + (size_t)gi * gstride;
    __m256i acc[2][GEMM_RT];
#pragma GCC unroll 2
    for (int t = 0; t < TG; t++)
#pragma GCC unroll 4
        for (int r = 0; r < RT; r++) acc[t][r] = _mm256_setzero_si256();
    GEMM_FN(dot_groups)(acc, xg + (size_t)i * 256, gstride, wq, 0, 8, RT, TG);
#pragma GCC unroll 2
    for (int t = 0; t < TG; t++) {
        const __m256 dx = _mm256_load_ps((const float *)(xg + (size_t)t * gstride + gemm_d_off(nb, 32)) + 8 * i);
#pragma GCC unroll 4
        for (int r = 0; r < RT; r++) {
            const __m256 d = _mm256_mul_ps(_mm256_set1_ps(dw[r]), dx);
            const __m256 v = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(acc[t][r], _mm256_set1_epi32(K[r]))));
            F[(gi + t) * GEMM_RT + r] = _mm256_add_ps(F[(gi + t) * GEMM_RT + r], v);
        }
    }
}

// Q8_0 / Q4_0, a tile of RT rows over G token groups: per block, S = sum (x + 128) w - 128 sum w,
// then acc += (d_w * d_x) * S, lane by lane (q8act.c's steps).
AI void GEMM_FN(q32_tile)(float *out, size_t ldo, const uint8_t *w, size_t ldw, const uint8_t *xp, size_t gstride,
                          int G, int B, int64_t nb, const int RT, const int four) {
    const size_t bsz = four ? QB_Q4_0 : QB_Q8_0;
    __m256 F[GEMM_GMAX * GEMM_RT];
    for (int i = 0; i < G * GEMM_RT; i++) F[i] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        int8_t unpacked[GEMM_RT][32] __attribute__((aligned(32)));
        const int8_t *wq[GEMM_RT];
        float dw[GEMM_RT];
        int32_t K[GEMM_RT];
#pragma GCC unroll 4
        for (int r = 0; r < RT; r++) {
            const uint8_t *wb = w + (size_t)r * ldw + (size_t)i * bsz;
            _mm_prefetch((const char *)(wb + 4 * bsz), _MM_HINT_T0);
            dw[r] = _cvtsh_ss(rd_u16(wb));
            __m256i q;
            if (four) {
                q = q40_q80_unpack(wb, 1);
                _mm256_store_si256((__m256i *)unpacked[r], q);
                wq[r] = unpacked[r];
            } else {
                q = _mm256_loadu_si256((const __m256i *)(wb + 2));
                wq[r] = (const int8_t *)(wb + 2);
            }
            // sum of the 32 weights: |w + 128| summed by vpsadbw, minus 32 * 128
            const __m256i s = _mm256_sad_epu8(_mm256_xor_si256(q, _mm256_set1_epi8((char)0x80)), _mm256_setzero_si256());
            const __m128i s2 = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
            K[r] = 128 * ((int32_t)(_mm_cvtsi128_si64(s2) + _mm_extract_epi64(s2, 1)) - 32 * 128);
        }
        int gi = 0;
        for (; gi + 2 <= G; gi += 2) GEMM_FN(q32_groups)(F, xp, gstride, gi, i, nb, wq, dw, K, RT, 2);
        if (gi < G) GEMM_FN(q32_groups)(F, xp, gstride, gi, i, nb, wq, dw, K, RT, 1);
    }
    GEMM_FN(store_tile)(out, ldo, F, G, B, RT);
}

// Block i of TG token groups from group gi (K-quants): A per sub-block, M, then the float steps.
AI void GEMM_FN(kq_groups)(__m256 *F, const uint8_t *xp, size_t gstride, int gi, int64_t i, int64_t nb,
                           const int8_t *const *wq, int32_t sc[][16], int32_t mp[][4], const int32_t *K,
                           const float *dd, const float *dm, const int RT, const int TG, const int six) {
    const int nsub = six ? 16 : 8, glen = six ? 4 : 8;   // sub-blocks, k-groups per sub-block
    const uint8_t *xg = xp + (size_t)gi * gstride;
    __m256i A[2][GEMM_RT];
#pragma GCC unroll 2
    for (int t = 0; t < TG; t++)
#pragma GCC unroll 4
        for (int r = 0; r < RT; r++) A[t][r] = _mm256_set1_epi32(-K[r]);
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
        const __m256i *xs = (const __m256i *)(xb + gemm_s_off(nb)) + 4 * i;
#pragma GCC unroll 4
        for (int r = 0; r < RT; r++) {
            const __m256 ta = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(dd[r]), dx), _mm256_cvtepi32_ps(A[t][r]));
            __m256 f = _mm256_add_ps(F[(gi + t) * GEMM_RT + r], ta);
            if (!six) {
                __m256i M = _mm256_setzero_si256();
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++) M = _mm256_add_epi32(M, _mm256_madd_epi16(_mm256_set1_epi32(mp[r][j]), _mm256_load_si256(xs + j)));
                const __m256 tm = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(dm[r]), dx), _mm256_cvtepi32_ps(M));
                f = _mm256_sub_ps(f, tm);
            }
            F[(gi + t) * GEMM_RT + r] = f;
        }
    }
}

// K-quants, a tile of RT rows over G token groups. Per block and row: the weights as signed bytes
// in element order (Q6_K minus 32), the sub-block scales (and Q4_K/Q5_K mins), and
// K = 128 sum_s sc_s sum(w in s); per token: A = sum_s sc_s sum (x + 128) w - K (q8act.c's A),
// M = sum_s m_s sum(x in s); acc += (d d_x) A, then acc -= (dmin d_x) M.
AI void GEMM_FN(kq_tile)(float *out, size_t ldo, const uint8_t *w, size_t ldw, const uint8_t *xp, size_t gstride,
                         int G, int B, int64_t nb, const int RT, const vm_type type) {
    const int six = type == VM_TYPE_Q6_K;
    const size_t bsz = type == VM_TYPE_Q4_K ? QB_Q4_K : type == VM_TYPE_Q5_K ? QB_Q5_K : QB_Q6_K;
    __m256 F[GEMM_GMAX * GEMM_RT];
    for (int i = 0; i < G * GEMM_RT; i++) F[i] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        int8_t q[GEMM_RT][256] __attribute__((aligned(32)));
        const int8_t *wq[GEMM_RT];
        int32_t sc[GEMM_RT][16], mp[GEMM_RT][4], K[GEMM_RT];
        float dd[GEMM_RT], dm[GEMM_RT];
#pragma GCC unroll 4
        for (int r = 0; r < RT; r++) {
            const uint8_t *wb = w + (size_t)r * ldw + (size_t)i * bsz;
            for (int off = 0; off < (int)bsz; off += 64) _mm_prefetch((const char *)(wb + 2 * bsz + off), _MM_HINT_T0);
            K[r] = gemm_kq_unpack(wb, type, q[r], sc[r], mp[r], &dd[r], &dm[r]);
            wq[r] = q[r];
        }
        int gi = 0;
        for (; gi + 2 <= G; gi += 2) GEMM_FN(kq_groups)(F, xp, gstride, gi, i, nb, wq, sc, mp, K, dd, dm, RT, 2, six);
        if (gi < G) GEMM_FN(kq_groups)(F, xp, gstride, gi, i, nb, wq, sc, mp, K, dd, dm, RT, 1, six);
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

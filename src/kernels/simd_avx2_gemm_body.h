// Body of the batched int8 products (see simd_avx2_gemm.c), included once per instruction set
// with: GW tokens per vector, the vector types VI / VF and their operations (VI_*, VF_*),
// DOT4(acc, u, s) = acc + the sums of 4 byte products u (unsigned) * s (signed) per 32-bit lane
// (vpdpbusd; or AVX2's vpmaddubsw + vpmaddwd, the same exact integers while no int16 pair sum
// saturates: weight bytes <= 63 there, |pair| <= 2 * 63 * 127, so Q8_0 needs VNNI), STORE_TILE4,
// and GEMM_FN(name) to give each copy its own names.

// acc[t][r] += the k-groups [g0, g0 + n) of TG token groups (at xg, gstride apart) against the
// unsigned weight bytes wq[r] of RT rows: RT * TG independent sums hide vpdpbusd's latency.
AI void GEMM_FN(dot_groups)(VI acc[][GEMM_RT], const uint8_t *xg, size_t gstride, const uint8_t *const *wq,
                            int g0, int n, const int RT, const int TG) {
    for (int g = g0; g < g0 + n; g++) {
        VI xv[2];
#pragma GCC unroll 2
        for (int t = 0; t < TG; t++) xv[t] = VI_LOAD(xg + (size_t)t * gstride + 4 * GW * (size_t)g);
#pragma GCC unroll 4
        for (int r = 0; r < RT; r++) {
            int32_t w4;
            memcpy(&w4, wq[r] + 4 * g, 4);
            const VI wv = VI_SET1(w4);
#pragma GCC unroll 2
            for (int t = 0; t < TG; t++) acc[t][r] = DOT4(acc[t][r], wv, xv[t]);
        }
    }
}

// Outputs of a row tile: F[group * GEMM_RT + r], lanes are tokens.
AI void GEMM_FN(store_tile)(float *out, size_t ldo, const VF *F, int G, int B, const int RT) {
    for (int gi = 0; gi < G; gi++) {
        const VF *f = F + gi * GEMM_RT;
        const int nt = B - GW * gi < GW ? B - GW * gi : GW;
        float *o = out + (size_t)(GW * gi) * ldo;
        if (RT == 4) {
            STORE_TILE4(o, ldo, f, nt);
        } else {
            float l[GW];
            VF_LANES(l, f[0]);
            for (int t = 0; t < nt; t++) o[(size_t)t * ldo] = l[t];
        }
    }
}

// Q8_0 / Q4_0, block i of TG token groups from group gi: S = sum (w + c) x - c sum x, then
// acc += (d_w * d_x) * S, lane by lane (q8act.c's steps).
AI void GEMM_FN(q32_groups)(VF *F, const uint8_t *xp, size_t gstride, int gi, int64_t i, int64_t nb,
                            const uint8_t *const *wq, const float *dw, const int RT, const int TG) {
    const uint8_t *xg = xp + (size_t)gi * gstride;
    VI acc[2][GEMM_RT];
#pragma GCC unroll 2
    for (int t = 0; t < TG; t++)
#pragma GCC unroll 4
        for (int r = 0; r < RT; r++) acc[t][r] = VI_ZERO();
    GEMM_FN(dot_groups)(acc, xg + (size_t)i * 32 * GW, gstride, wq, 0, 8, RT, TG);
#pragma GCC unroll 2
    for (int t = 0; t < TG; t++) {
        const uint8_t *xb = xg + (size_t)t * gstride;
        const VF dx = VF_LOAD((const float *)(xb + gemm_d_off(nb, 32, GW)) + GW * i);
        const VI cs = VI_LOAD(xb + gemm_s_off(nb, 32, GW) + (size_t)i * 4 * GW);
#pragma GCC unroll 4
        for (int r = 0; r < RT; r++) {
            const VF d = VF_MUL(VF_SET1(dw[r]), dx);
            const VF v = VF_MUL(d, VF_CVT(VI_SUB(acc[t][r], cs)));
            F[(gi + t) * GEMM_RT + r] = VF_ADD(F[(gi + t) * GEMM_RT + r], v);
        }
    }
}

// Q8_0 / Q4_0, a tile of RT rows over G token groups.
AI void GEMM_FN(q32_tile)(float *out, size_t ldo, const uint8_t *w, size_t ldw, const uint8_t *xp, size_t gstride,
                          int G, int B, int64_t nb, const int RT, const int four) {
    const size_t bsz = four ? QB_Q4_0 : QB_Q8_0;
    VF F[GEMM_GMAX * GEMM_RT];
    for (int i = 0; i < G * GEMM_RT; i++) F[i] = VF_ZERO();
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
AI void GEMM_FN(kq_groups)(VF *F, const uint8_t *xp, size_t gstride, int gi, int64_t i, int64_t nb,
                           const uint8_t *const *wq, int32_t sc[][16], int32_t pairs[][8], const float *dd,
                           const float *dm, const int RT, const int TG, const int six) {
    const int nsub = six ? 16 : 8, glen = six ? 4 : 8;   // sub-blocks, k-groups per sub-block
    const uint8_t *xg = xp + (size_t)gi * gstride;
    VI A[2][GEMM_RT];
#pragma GCC unroll 2
    for (int t = 0; t < TG; t++)
#pragma GCC unroll 4
        for (int r = 0; r < RT; r++) A[t][r] = VI_ZERO();
    for (int s = 0; s < nsub; s++) {
        VI acc[2][GEMM_RT];
#pragma GCC unroll 2
        for (int t = 0; t < TG; t++)
#pragma GCC unroll 4
            for (int r = 0; r < RT; r++) acc[t][r] = VI_ZERO();
        GEMM_FN(dot_groups)(acc, xg + (size_t)i * 256 * GW, gstride, wq, s * glen, glen, RT, TG);
#pragma GCC unroll 4
        for (int r = 0; r < RT; r++) {
            const VI scv = VI_SET1(sc[r][s]);
#pragma GCC unroll 2
            for (int t = 0; t < TG; t++) A[t][r] = VI_ADD(A[t][r], VI_MULLO(acc[t][r], scv));
        }
    }
#pragma GCC unroll 2
    for (int t = 0; t < TG; t++) {
        const uint8_t *xb = xg + (size_t)t * gstride;
        const VF dx = VF_LOAD((const float *)(xb + gemm_d_off(nb, 256, GW)) + GW * i);
        const uint8_t *xs = xb + gemm_s_off(nb, 256, GW) + (size_t)i * (six ? 32 : 16) * GW;
#pragma GCC unroll 4
        for (int r = 0; r < RT; r++) {
            // Q6_K: sum_g sc_g sum_g x; Q4_K/Q5_K: M
            VI P = VI_ZERO();
            for (int j = 0; j < (six ? 8 : 4); j++)
                P = VI_ADD(P, VI_MADD16(VI_SET1(pairs[r][j]), VI_LOAD(xs + (size_t)j * 4 * GW)));
            const VI a = six ? VI_SUB(A[t][r], VI_SLLI(P, 5)) : A[t][r];
            const VF ta = VF_MUL(VF_MUL(VF_SET1(dd[r]), dx), VF_CVT(a));
            VF f = VF_ADD(F[(gi + t) * GEMM_RT + r], ta);
            if (!six) {
                const VF tm = VF_MUL(VF_MUL(VF_SET1(dm[r]), dx), VF_CVT(P));
                f = VF_SUB(f, tm);
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
    VF F[GEMM_GMAX * GEMM_RT];
    for (int i = 0; i < G * GEMM_RT; i++) F[i] = VF_ZERO();
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
    const size_t gstride = gemm_group_bytes(type, C, GW);
    // tokens in chunks of GEMM_GMAX groups (the float accumulators of a tile stay on the stack)
    for (int t0 = 0; t0 < B; t0 += GW * GEMM_GMAX) {
        const int Bc = B - t0 < GW * GEMM_GMAX ? B - t0 : GW * GEMM_GMAX, G = (Bc + GW - 1) / GW;
        const uint8_t *xc = (const uint8_t *)xp + (size_t)(t0 / GW) * gstride;
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

// exp(x) for x <= 0 (a score minus its row's running maximum), shared by every SIMD level so that
// they get the same bits: x = n ln2 + r with n = round(x log2 e) and r reduced by a two-part ln2
// (|r| <= ln2/2), exp(r) by Cephes' degree-6 polynomial (expf.c), 2^n put in the exponent field.
// About 1 ulp on [-86.5, 0]. Below -86.5 (exp < 3e-38, nothing next to the maximum's 1) the result
// is 0, so exp(-inf) = 0 (the first rescale, from mx = -inf); NaN stays NaN. The AVX2 level's
// 8-lane version (simd_avx2.c exp_neg8) does the same operations in the same order: one rounding
// per step, every multiply-add fused (fmaf), so the two agree bit for bit on non-NaN input.
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>

#define VM_EXP_MIN (-86.5f)   // n >= -125 down to here: p 2^n (p in [0.7, 1.42]) stays a normal float
#define VM_EXP_LOG2E 1.44269504088896341f
#define VM_EXP_LN2_HI 0.693359375f      // ln2 = hi - lo; hi has 9 significant bits: n hi is exact
#define VM_EXP_LN2_LO (-2.12194440e-4f)
#define VM_EXP_P0 1.9875691500e-4f
#define VM_EXP_P1 1.3981999507e-3f
#define VM_EXP_P2 8.3334519073e-3f
#define VM_EXP_P3 4.1665795894e-2f
#define VM_EXP_P4 1.6666665459e-1f
#define VM_EXP_P5 5.0000001201e-1f

static inline float vm_exp_neg(float x) {
    if (!(x >= VM_EXP_MIN)) return x < VM_EXP_MIN ? 0.0f : x;   // tiny and -inf: 0; NaN: itself
    const float t = x * VM_EXP_LOG2E;   // separate statements: no contraction whatever -ffp-contract
    const float n = rintf(t);           // nearest, ties to even (the default rounding mode)
    float r = fmaf(-n, VM_EXP_LN2_HI, x);
    r = fmaf(-n, VM_EXP_LN2_LO, r);
    float p = VM_EXP_P0;
    p = fmaf(p, r, VM_EXP_P1);
    p = fmaf(p, r, VM_EXP_P2);
    p = fmaf(p, r, VM_EXP_P3);
    p = fmaf(p, r, VM_EXP_P4);
    p = fmaf(p, r, VM_EXP_P5);
    const float r2 = r * r, r1 = r + 1.0f;
    p = fmaf(p, r2, r1);   // 1 + r + r^2 (1/2 + r P(r))
    uint32_t u;
    memcpy(&u, &p, sizeof u);
    u += (uint32_t)(int32_t)n << 23;   // p 2^n: n in [-125, 0] keeps the exponent field in range
    memcpy(&p, &u, sizeof p);
    return p;
}

// The logistic 1 / (1 + exp(-g)) from e = exp(-|g|) <= 1 (never overflows): 1 / (1 + e) for g >= 0,
// e / (1 + e) below. The AVX2 level's sigmoid8 (simd_avx2_util.h) takes the same steps.
static inline float vm_sigmoid(float g) {
    const float e = vm_exp_neg(-fabsf(g)), d = 1.0f + e;
    return g >= 0.0f ? 1.0f / d : e / d;
}

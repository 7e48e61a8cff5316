// Vectorisable maths for the sampled routers: exp, log, Box-Muller normals and geometric gaps on
// arrays, written so that `#pragma omp simd` loops compile to packed instructions (no libm calls,
// no errno). Accuracy: exp and log to a few float ulps, sin/cos to ~3e-7 absolute: ample for
// Monte-Carlo samples of routing logits. Results depend only on the inputs (not on the thread count).
#pragma once
#include <stdint.h>
#include <string.h>
#include "util/rng.h"

static inline float vm_vec_bits_f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t vm_vec_f_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
// c ? a : b through bit masks: GCC will not if-convert float selects under -ftrapping-math, so a
// plain ?: would keep the loop scalar.
static inline float vm_vec_sel(int c, float a, float b) {
    const uint32_t m = (uint32_t)-(int32_t)(c != 0);
    return vm_vec_bits_f((vm_vec_f_bits(a) & m) | (vm_vec_f_bits(b) & ~m));
}

// exp(x), x clamped to [-87, 88]: 2^k p(r), r = x - k ln2 in [-ln2/2, ln2/2], Taylor to degree 7.
static inline float vm_vec_exp(float x) {
    x = vm_vec_sel(x < -87.0f, -87.0f, x);
    x = vm_vec_sel(x > 88.0f, 88.0f, x);
    const float kf = (x * 1.44269504f + 12582912.0f) - 12582912.0f;   // round to nearest
    const float r = (x - kf * 0.693145752f) - kf * 1.42860677e-6f;    // ln2 split hi + lo
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    return p * vm_vec_bits_f((uint32_t)((int32_t)kf + 127) << 23);
}

// log(x) for a positive normal x: exponent + 2 atanh((m-1)/(m+1)), m in [sqrt(1/2), sqrt(2)).
static inline float vm_vec_log(float x) {
    uint32_t b = vm_vec_f_bits(x);
    // move the mantissa to [0.7071, 1.4142) by borrowing one from the exponent when m >= sqrt(2)
    const uint32_t adj = (b & 0x007fffffu) >= 0x003504f3u ? 1u : 0u;
    const int32_t e = (int32_t)(b >> 23) - 127 + (int32_t)adj;
    const float m = vm_vec_bits_f((b & 0x007fffffu) | ((127u - adj) << 23));
    const float t = (m - 1.0f) / (m + 1.0f), t2 = t * t;
    float p = 1.0f / 9.0f;
    p = p * t2 + 1.0f / 7.0f;
    p = p * t2 + 1.0f / 5.0f;
    p = p * t2 + 1.0f / 3.0f;
    p = p * t2 + 1.0f;
    return 2.0f * t * p + (float)e * 0.693147181f;
}

// sqrt(x) for x >= 0 as x / sqrt(x) from a bit-trick reciprocal square root and three Newton steps
// (libm's sqrtf sets errno, which keeps loops scalar); 0 for x below 1e-30.
static inline float vm_vec_sqrt(float x) {
    const float xc = vm_vec_sel(x < 1e-30f, 1e-30f, x);
    float y = vm_vec_bits_f(0x5f375a86u - (vm_vec_f_bits(xc) >> 1));
    y = y * (1.5f - 0.5f * xc * y * y);
    y = y * (1.5f - 0.5f * xc * y * y);
    y = y * (1.5f - 0.5f * xc * y * y);
    return vm_vec_sel(x < 1e-30f, 0.0f, xc * y);
}

// n normals (n even) from g by Box-Muller: per pair one u64, whose top 24 bits give u1 in (0, 1]
// and low 24 bits u2 in [0, 1); out[i] = r cos(2 pi u2), out[n/2 + i] = r sin(2 pi u2) with
// r = sqrt(-2 log u1) (the angle reduced to a quarter turn around 0). u1 >= 2^-24 caps |z| at 5.77.
// scratch: n floats.
static inline void vm_vec_normals(vm_rng *g, float *out, float *scratch, int n) {
    const int h = n / 2;
    float *u1 = scratch, *u2 = scratch + h, *z0 = out, *z1 = out + h;
    for (int i = 0; i < h; i++) {
        const uint64_t x = vm_rng_u64(g);
        u1[i] = (float)((x >> 40) + 1) * 0x1.0p-24f;
        u2[i] = (float)(x & 0xffffff) * 0x1.0p-24f;
    }
    #pragma omp simd
    for (int i = 0; i < h; i++) {
        const float rad = vm_vec_sqrt(-2.0f * vm_vec_log(u1[i]));
        const float q = (4.0f * u2[i] + 12582912.0f) - 12582912.0f;   // nearest quarter turn, 0..4
        const float a = 6.28318531f * (u2[i] - 0.25f * q), a2 = a * a;  // |a| <= pi/4
        const float s = a * (1.0f + a2 * (-1.0f / 6.0f + a2 * (1.0f / 120.0f + a2 * (-1.0f / 5040.0f))));
        const float c = 1.0f + a2 * (-0.5f + a2 * (1.0f / 24.0f + a2 * (-1.0f / 720.0f + a2 * (1.0f / 40320.0f))));
        const int qi = (int)q & 3;
        const float cs = vm_vec_sel(qi & 1, s, c), sn = vm_vec_sel(qi & 1, c, s);
        z0[i] = rad * vm_vec_sel(qi == 1 || qi == 2, -cs, cs);
        z1[i] = rad * vm_vec_sel(qi >= 2, -sn, sn);
    }
}

// n Gumbel(0, 1) draws (n even) from g: two 24-bit uniforms u in (0, 1) per u64 (high, then low
// bits), out[i] = -log(-log(u)). scratch: n floats.
static inline void vm_vec_gumbels(vm_rng *g, float *out, float *scratch, int n) {
    for (int i = 0; i + 1 < n; i += 2) {
        const uint64_t x = vm_rng_u64(g);
        scratch[i] = ((float)(x >> 40) + 0.5f) * 0x1.0p-24f;
        scratch[i + 1] = ((float)(x & 0xffffff) + 0.5f) * 0x1.0p-24f;
    }
    #pragma omp simd
    for (int i = 0; i < n; i++) out[i] = -vm_vec_log(-vm_vec_log(scratch[i]));
}

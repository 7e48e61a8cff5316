// int8 activations for the integer dot products of quantised weights, and the portable dots.
// These define the arithmetic; src/kernels/simd_avx2.c computes the same integers with SIMD and
// then performs the same float operations in the same order, so every dispatch level gives the same
// bits for quantised weights:
// - Q8_0/Q4_0 (blocks of 32): one exact integer S per block; acc += (d_w*d_x) * S, block after block
//   (product, then sum: no fused multiply-add). One float step per block, not one per 4 elements,
//   lets SIMD code convert and scale the sums of several rows/tokens with one instruction.
// - K-quants (blocks of 256): two exact integers per block, A = sum over sub-blocks of
//   scale * (q . x) and, for Q4_K/Q5_K, M = sum of min * (sum of x); acc += (d*d_x) * A, then
//   acc -= (dmin*d_x) * M, block after block.
#include <math.h>
#include <string.h>

#include "quant/quant.h"
#include "quant/quant_impl.h"
#include "util/err.h"

int vm_act_block(vm_type wtype) {
    switch (wtype) {
    case VM_TYPE_Q8_0: case VM_TYPE_Q4_0: return 32;
    case VM_TYPE_Q4_K: case VM_TYPE_Q5_K: case VM_TYPE_Q6_K: return 256;
    default: return 0;
    }
}

size_t vm_act_row_size(vm_type wtype, int64_t n) {
    const int bs = vm_act_block(wtype);
    if (bs == 0 || n < 0 || n % bs) return 0;
    return (size_t)(n / bs) * (bs == 32 ? sizeof(vm_q8a32) : sizeof(vm_q8a256));
}

// Quantises one block of n floats to q (n int8) and returns its scale; NaN when x is not finite.
static float quant_block(const float *x, int8_t *q, int n) {
    float amax = 0.0f;
    int finite = 1;
    for (int i = 0; i < n; i++) {
        const float a = fabsf(x[i]);
        if (!(a <= 0x1.fffffep127f)) finite = 0;   // inf or NaN
        else if (a > amax) amax = a;
    }
    const float d = amax / 127.0f, id = amax > 0.0f ? 127.0f / amax : 0.0f;
    for (int i = 0; i < n; i++) {
        // round half to even: adding and removing 1.5*2^23 leaves the integer part (|v| <= 127 here);
        // exact in the default rounding mode, and unlike nearbyintf it vectorises without SSE4.1
        float v = x[i] * id;
        v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v == v ? v : 0.0f;   // NaN: the scale carries it
        v = (v + 12582912.0f) - 12582912.0f;
        q[i] = (int8_t)v;
    }
    return finite ? d : NAN;
}

int vm_act_quant_row(vm_type wtype, const float *x, void *dst, int64_t n) {
    const int bs = vm_act_block(wtype);
    if (bs == 0) return vm_err("quant: act_quant_row: type %s has no int8 path", vm_type_name((int)wtype));
    if (n < 0 || n % bs) return vm_err("quant: act_quant_row: n=%lld not a multiple of %d", (long long)n, bs);
    if (bs == 32) {
        vm_q8a32 *b = dst;
        for (int64_t i = 0; i < n / 32; i++) b[i].d = quant_block(x + 32 * i, b[i].qs, 32);
    } else {
        vm_q8a256 *b = dst;
        for (int64_t i = 0; i < n / 256; i++) {
            b[i].d = quant_block(x + 256 * i, b[i].qs, 256);
            for (int g = 0; g < 16; g++) {
                int s = 0;
                for (int l = 0; l < 16; l++) s += b[i].qs[16 * g + l];
                b[i].bsums[g] = (int16_t)s;
            }
        }
    }
    return 0;
}

// ---- portable dots ---------------------------------------------------------------------------------

// Q8_0 (w = d*q) and Q4_0 (w = d*(nibble-8), element j in the low nibble of qs[j], j+16 in the high).
static float dot_q8_0_act(const uint8_t *w, const vm_q8a32 *x, int64_t nb) {
    float acc = 0.0f;
    for (int64_t i = 0; i < nb; i++, w += QB_Q8_0) {
        const int8_t *q = (const int8_t *)(w + 2);
        int32_t s = 0;
        for (int e = 0; e < 32; e++) s += q[e] * x[i].qs[e];
        const float d = fp16_to_f32(rd_u16(w)) * x[i].d;
        const float t = d * (float)s;
        acc += t;
    }
    return acc;
}

static float dot_q4_0_act(const uint8_t *w, const vm_q8a32 *x, int64_t nb) {
    float acc = 0.0f;
    for (int64_t i = 0; i < nb; i++, w += QB_Q4_0) {
        const uint8_t *q = w + 2;
        int32_t s = 0;
        for (int e = 0; e < 16; e++) s += ((q[e] & 0xf) - 8) * x[i].qs[e] + ((q[e] >> 4) - 8) * x[i].qs[e + 16];
        const float d = fp16_to_f32(rd_u16(w)) * x[i].d;
        const float t = d * (float)s;
        acc += t;
    }
    return acc;
}

// Q4_K / Q5_K: sub-block s (32 elements) of a 256-block; hbit = 1 for Q5_K's fifth bit.
static float dot_q45_K_act(const uint8_t *w, const vm_q8a256 *x, int64_t nb, int five) {
    float acc = 0.0f;
    const size_t bsz = five ? QB_Q5_K : QB_Q4_K;
    for (int64_t i = 0; i < nb; i++, w += bsz) {
        const uint8_t *sc = w + 4, *qh = w + 16, *qs = w + (five ? 48 : 16);
        int32_t A = 0, M = 0;
        for (int s = 0; s < 8; s++) {
            uint8_t scale, mn;
            vm_kscale_get(sc, s, &scale, &mn);
            const uint8_t *q = qs + 32 * (s / 2);
            const int8_t *xq = x[i].qs + 32 * s;
            int32_t dot = 0;
            for (int l = 0; l < 32; l++) {
                int v = (s & 1) ? q[l] >> 4 : q[l] & 0xf;
                if (five) v += ((qh[l] >> s) & 1) << 4;
                dot += v * xq[l];
            }
            A += scale * dot;
            M += mn * (x[i].bsums[2 * s] + x[i].bsums[2 * s + 1]);
        }
        const float dd = fp16_to_f32(rd_u16(w)) * x[i].d, dm = fp16_to_f32(rd_u16(w + 2)) * x[i].d;
        const float ta = dd * (float)A, tm = dm * (float)M;
        acc += ta;
        acc -= tm;
    }
    return acc;
}

// Q6_K: element l + 32k of half h (l < 32, k < 4): low nibble from ql[64h + l + 32(k&1)] (k < 2 low,
// else high), two high bits from qh[32h + l] bits 2k..2k+1; value q - 32; scale sc[8h + 2k + l/16].
static float dot_q6_K_act(const uint8_t *w, const vm_q8a256 *x, int64_t nb) {
    float acc = 0.0f;
    for (int64_t i = 0; i < nb; i++, w += QB_Q6_K) {
        const int8_t *sc = (const int8_t *)(w + 192);
        int32_t A = 0;
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = w + 64 * h, *qh = w + 128 + 32 * h;
            for (int k = 0; k < 4; k++)
                for (int g = 0; g < 2; g++) {
                    const int8_t *xq = x[i].qs + 128 * h + 32 * k + 16 * g;
                    int32_t dot = 0;
                    for (int l = 16 * g; l < 16 * g + 16; l++) {
                        const int lo = k < 2 ? ql[l + 32 * k] & 0xf : ql[l + 32 * (k - 2)] >> 4;
                        dot += ((lo | (((qh[l] >> (2 * k)) & 3) << 4)) - 32) * xq[l - 16 * g];
                    }
                    A += sc[8 * h + 2 * k + g] * dot;
                }
        }
        const float dd = fp16_to_f32(rd_u16(w + 208)) * x[i].d;
        const float ta = dd * (float)A;
        acc += ta;
    }
    return acc;
}

float vm_vec_dot_act(vm_type wtype, const void *w, const void *xq, int64_t n) {
    const int bs = vm_act_block(wtype);
    if (bs == 0 || n < 0 || n % bs) {
        vm_err("quant: vec_dot_act: type %s, n=%lld: no int8 path", vm_type_name((int)wtype), (long long)n);
        return NAN;
    }
    switch (wtype) {
    case VM_TYPE_Q8_0: return dot_q8_0_act(w, xq, n / 32);
    case VM_TYPE_Q4_0: return dot_q4_0_act(w, xq, n / 32);
    case VM_TYPE_Q4_K: return dot_q45_K_act(w, xq, n / 256, 0);
    case VM_TYPE_Q5_K: return dot_q45_K_act(w, xq, n / 256, 1);
    case VM_TYPE_Q6_K: return dot_q6_K_act(w, xq, n / 256);
    default: return NAN;
    }
}

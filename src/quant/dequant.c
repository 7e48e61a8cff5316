// Dequantise rows and dot them with f32 vectors. Block layouts are ggml's (ggml-common.h);
// blocks are read as bytes, so rows need no alignment (Q4_0 blocks are 18 bytes).
// vec_dot sums inside a (sub-)block in float and across blocks in double: the inner sums are what
// SIMD versions will vectorise, the double total keeps long rows accurate.
#include <math.h>
#include <string.h>

#include "quant/quant.h"
#include "quant/quant_impl.h"
#include "util/err.h"

// ---- float types -------------------------------------------------------------------------------

// Eight independent partial sums per 32 elements let the adds overlap (and vectorise).
#define DOT_FLOAT_ROW(NAME, LOAD)                                                   \
    static float NAME(const uint8_t *w, const float *x, int64_t n) {                \
        double total = 0;                                                           \
        int64_t i = 0;                                                              \
        for (; i + 32 <= n; i += 32) {                                              \
            float s[8] = {0};                                                       \
            for (int j = 0; j < 32; j++) s[j & 7] += LOAD(i + j) * x[i + j];        \
            total += ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7])); \
        }                                                                           \
        for (; i < n; i++) total += (double)LOAD(i) * x[i];                         \
        return (float)total;                                                        \
    }

#define LOAD_F32(k) rd_f32(w + 4 * (k))
#define LOAD_F16(k) fp16_to_f32(rd_u16(w + 2 * (k)))
#define LOAD_BF16(k) bf16_to_f32(rd_u16(w + 2 * (k)))
DOT_FLOAT_ROW(dot_f32, LOAD_F32)
DOT_FLOAT_ROW(dot_f16, LOAD_F16)
DOT_FLOAT_ROW(dot_bf16, LOAD_BF16)

// ---- Q8_0: {fp16 d; int8 qs[32]}, w = d * q ----------------------------------------------------

static void dequant_q8_0(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += QB_Q8_0, y += 32) {
        float d = fp16_to_f32(rd_u16(b));
        const int8_t *q = (const int8_t *)(b + 2);
        for (int j = 0; j < 32; j++) y[j] = q[j] * d;
    }
}

static float dot_q8_0(const uint8_t *b, const float *x, int64_t nb) {
    double total = 0;
    for (int64_t i = 0; i < nb; i++, b += QB_Q8_0, x += 32) {
        const int8_t *q = (const int8_t *)(b + 2);
        float s = 0;
        for (int j = 0; j < 32; j++) s += q[j] * x[j];
        total += (double)fp16_to_f32(rd_u16(b)) * s;
    }
    return (float)total;
}

// ---- Q4_0: {fp16 d; u8 qs[16]}, element j in the low nibble of qs[j], j+16 in the high nibble;
// w = d * (q - 8) ------------------------------------------------------------------------------

static void dequant_q4_0(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += QB_Q4_0, y += 32) {
        float d = fp16_to_f32(rd_u16(b));
        const uint8_t *q = b + 2;
        for (int j = 0; j < 16; j++) {
            y[j] = ((q[j] & 0xf) - 8) * d;
            y[j + 16] = ((q[j] >> 4) - 8) * d;
        }
    }
}

static float dot_q4_0(const uint8_t *b, const float *x, int64_t nb) {
    double total = 0;
    for (int64_t i = 0; i < nb; i++, b += QB_Q4_0, x += 32) {
        const uint8_t *q = b + 2;
        float s = 0;
        for (int j = 0; j < 16; j++) s += ((q[j] & 0xf) - 8) * x[j] + ((q[j] >> 4) - 8) * x[j + 16];
        total += (double)fp16_to_f32(rd_u16(b)) * s;
    }
    return (float)total;
}

// ---- Q4_K: {fp16 d, dmin; u8 scales[12]; u8 qs[128]}, 8 sub-blocks of 32 ------------------------
// Sub-blocks come in pairs per 32 qs bytes: 2p uses the low nibbles, 2p+1 the high nibbles.
// w = d * sc[s] * q - dmin * m[s]

static void dequant_q4_K(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += QB_Q4_K) {
        float d = fp16_to_f32(rd_u16(b)), dmin = fp16_to_f32(rd_u16(b + 2));
        const uint8_t *sc = b + 4, *q = b + 16;
        for (int p = 0; p < 4; p++, q += 32) {
            uint8_t s0, m0, s1, m1;
            vm_kscale_get(sc, 2 * p, &s0, &m0);
            vm_kscale_get(sc, 2 * p + 1, &s1, &m1);
            float d0 = d * s0, n0 = dmin * m0, d1 = d * s1, n1 = dmin * m1;
            // product and difference as separate statements: no FMA contraction, bit-exact with ggml
            for (int l = 0; l < 32; l++) { float t = d0 * (q[l] & 0xf); *y++ = t - n0; }
            for (int l = 0; l < 32; l++) { float t = d1 * (q[l] >> 4); *y++ = t - n1; }
        }
    }
}

static float dot_q4_K(const uint8_t *b, const float *x, int64_t nb) {
    double total = 0;
    for (int64_t i = 0; i < nb; i++, b += QB_Q4_K) {
        double d = fp16_to_f32(rd_u16(b)), dmin = fp16_to_f32(rd_u16(b + 2));
        const uint8_t *sc = b + 4, *q = b + 16;
        for (int p = 0; p < 4; p++, q += 32, x += 64) {
            uint8_t s0, m0, s1, m1;
            vm_kscale_get(sc, 2 * p, &s0, &m0);
            vm_kscale_get(sc, 2 * p + 1, &s1, &m1);
            float qx0 = 0, qx1 = 0, sx0 = 0, sx1 = 0;
            for (int l = 0; l < 32; l++) {
                qx0 += (q[l] & 0xf) * x[l];      sx0 += x[l];
                qx1 += (q[l] >> 4) * x[l + 32];  sx1 += x[l + 32];
            }
            total += d * (s0 * (double)qx0 + s1 * (double)qx1) - dmin * (m0 * (double)sx0 + m1 * (double)sx1);
        }
    }
    return (float)total;
}

// ---- Q5_K: {fp16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]} --------------------------------
// Like Q4_K plus a fifth bit: sub-block s takes bit s of qh[l] for its element l.

static void dequant_q5_K(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += QB_Q5_K) {
        float d = fp16_to_f32(rd_u16(b)), dmin = fp16_to_f32(rd_u16(b + 2));
        const uint8_t *sc = b + 4, *qh = b + 16, *q = b + 48;
        for (int p = 0; p < 4; p++, q += 32) {
            uint8_t s0, m0, s1, m1;
            vm_kscale_get(sc, 2 * p, &s0, &m0);
            vm_kscale_get(sc, 2 * p + 1, &s1, &m1);
            float d0 = d * s0, n0 = dmin * m0, d1 = d * s1, n1 = dmin * m1;
            int h0 = 2 * p, h1 = 2 * p + 1;
            for (int l = 0; l < 32; l++) { float t = d0 * ((q[l] & 0xf) + (((qh[l] >> h0) & 1) << 4)); *y++ = t - n0; }
            for (int l = 0; l < 32; l++) { float t = d1 * ((q[l] >> 4) + (((qh[l] >> h1) & 1) << 4)); *y++ = t - n1; }
        }
    }
}

static float dot_q5_K(const uint8_t *b, const float *x, int64_t nb) {
    double total = 0;
    for (int64_t i = 0; i < nb; i++, b += QB_Q5_K) {
        double d = fp16_to_f32(rd_u16(b)), dmin = fp16_to_f32(rd_u16(b + 2));
        const uint8_t *sc = b + 4, *qh = b + 16, *q = b + 48;
        for (int p = 0; p < 4; p++, q += 32, x += 64) {
            uint8_t s0, m0, s1, m1;
            vm_kscale_get(sc, 2 * p, &s0, &m0);
            vm_kscale_get(sc, 2 * p + 1, &s1, &m1);
            int h0 = 2 * p, h1 = 2 * p + 1;
            float qx0 = 0, qx1 = 0, sx0 = 0, sx1 = 0;
            for (int l = 0; l < 32; l++) {
                qx0 += ((q[l] & 0xf) + (((qh[l] >> h0) & 1) << 4)) * x[l];  sx0 += x[l];
                qx1 += ((q[l] >> 4) + (((qh[l] >> h1) & 1) << 4)) * x[l + 32];  sx1 += x[l + 32];
            }
            total += d * (s0 * (double)qx0 + s1 * (double)qx1) - dmin * (m0 * (double)sx0 + m1 * (double)sx1);
        }
    }
    return (float)total;
}

// ---- Q6_K: {u8 ql[128]; u8 qh[64]; int8 scales[16]; fp16 d}, 16 sub-blocks of 16 ---------------
// Two halves of 128 elements, each with 64 ql bytes and 32 qh bytes. In a half, element l + 32k
// (l < 32, k < 4) has low nibble from ql[l + 32*(k&1)] (k < 2: low nibble, else high) and the
// 2-bit high part from qh[l] bits 2k..2k+1; q = value - 32, scale index 8*half + 2k + l/16.
// w = d * sc * q

static inline int q6_get(const uint8_t *ql, const uint8_t *qh, int l, int k) {
    int lo = k < 2 ? ql[l + 32 * k] & 0xf : ql[l + 32 * (k - 2)] >> 4;
    return (lo | (((qh[l] >> (2 * k)) & 3) << 4)) - 32;
}

static void dequant_q6_K(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += QB_Q6_K) {
        float d = fp16_to_f32(rd_u16(b + 208));
        const int8_t *sc = (const int8_t *)(b + 192);
        for (int half = 0; half < 2; half++, y += 128) {
            const uint8_t *ql = b + 64 * half, *qh = b + 128 + 32 * half;
            for (int k = 0; k < 4; k++)
                for (int l = 0; l < 32; l++)
                    y[32 * k + l] = d * sc[8 * half + 2 * k + l / 16] * q6_get(ql, qh, l, k);
        }
    }
}

static float dot_q6_K(const uint8_t *b, const float *x, int64_t nb) {
    double total = 0;
    for (int64_t i = 0; i < nb; i++, b += QB_Q6_K) {
        double d = fp16_to_f32(rd_u16(b + 208));
        const int8_t *sc = (const int8_t *)(b + 192);
        double acc = 0;
        for (int half = 0; half < 2; half++, x += 128) {
            const uint8_t *ql = b + 64 * half, *qh = b + 128 + 32 * half;
            for (int k = 0; k < 4; k++)
                for (int g = 0; g < 2; g++) {
                    float s = 0;
                    for (int l = 16 * g; l < 16 * g + 16; l++) s += q6_get(ql, qh, l, k) * x[32 * k + l];
                    acc += sc[8 * half + 2 * k + g] * (double)s;
                }
        }
        total += d * acc;
    }
    return (float)total;
}

// ---- dispatch ------------------------------------------------------------------------------------

// Checks type and n; records an error and returns the block count, or -1.
static int64_t check_row(vm_type type, int64_t n, const char *fn) {
    const vm_type_traits *t = vm_type_get((int)type);
    if (!t || !t->compute) { vm_err("quant: %s: type %d (%s) not supported", fn, (int)type, vm_type_name((int)type)); return -1; }
    if (n < 0 || n % t->blck_size) { vm_err("quant: %s: n=%lld not a multiple of %s block %lld", fn, (long long)n, t->name, (long long)t->blck_size); return -1; }
    return n / t->blck_size;
}

void vm_dequant_row(vm_type type, const void *src, float *dst, int64_t n) {
    int64_t nb = check_row(type, n, "dequant_row");
    if (nb < 0) { for (int64_t i = 0; i < n; i++) dst[i] = NAN; return; }
    const uint8_t *s = src;
    switch (type) {
    case VM_TYPE_F32:  memcpy(dst, s, (size_t)n * 4); break;
    case VM_TYPE_F16:  for (int64_t i = 0; i < n; i++) dst[i] = fp16_to_f32(rd_u16(s + 2 * i)); break;
    case VM_TYPE_BF16: for (int64_t i = 0; i < n; i++) dst[i] = bf16_to_f32(rd_u16(s + 2 * i)); break;
    case VM_TYPE_Q8_0: dequant_q8_0(s, dst, nb); break;
    case VM_TYPE_Q4_0: dequant_q4_0(s, dst, nb); break;
    case VM_TYPE_Q4_K: dequant_q4_K(s, dst, nb); break;
    case VM_TYPE_Q5_K: dequant_q5_K(s, dst, nb); break;
    case VM_TYPE_Q6_K: dequant_q6_K(s, dst, nb); break;
    default: break;  // unreachable: check_row accepted only compute types
    }
}

float vm_vec_dot(vm_type type, const void *w, const float *x, int64_t n) {
    int64_t nb = check_row(type, n, "vec_dot");
    if (nb < 0) return NAN;
    const uint8_t *s = w;
    switch (type) {
    case VM_TYPE_F32:  return dot_f32(s, x, n);
    case VM_TYPE_F16:  return dot_f16(s, x, n);
    case VM_TYPE_BF16: return dot_bf16(s, x, n);
    case VM_TYPE_Q8_0: return dot_q8_0(s, x, nb);
    case VM_TYPE_Q4_0: return dot_q4_0(s, x, nb);
    case VM_TYPE_Q4_K: return dot_q4_K(s, x, nb);
    case VM_TYPE_Q5_K: return dot_q5_K(s, x, nb);
    case VM_TYPE_Q6_K: return dot_q6_K(s, x, nb);
    default: return NAN;
    }
}

// Reference quantisers. F16/BF16 round to nearest even. Q8_0 and Q4_0 follow ggml's rules exactly
// (so bytes match ggml's reference quantiser). The K-quants use a simple covering method instead
// of ggml's scale search; see quant_k_affine and quant_q6_K.
#include <math.h>
#include <string.h>

#include "quant/quant.h"
#include "quant/quant_impl.h"
#include "util/err.h"

#define FP16_MAX 65504.0f

// Q8_0: d = amax/127, q = roundf(x/d) (half away from zero); id uses the unrounded d, as ggml does.
static void quant_q8_0(const float *x, uint8_t *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32, b += QB_Q8_0) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        // a subnormal d overflows 1/d to inf (and its fp16 is 0 anyway): then every q is 0
        float d = amax / 127, id = d && isfinite(1.0f / d) ? 1.0f / d : 0.0f;
        wr_u16(b, vm_fp32_to_fp16(d));
        for (int j = 0; j < 32; j++) b[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
    }
}

// Q4_0: the signed value of largest magnitude (first one on ties) maps to -8, so d = max/-8 and the
// other end of the range reaches +7; q = min(15, trunc(x/d + 8.5)).
static void quant_q4_0(const float *x, uint8_t *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32, b += QB_Q4_0) {
        float amax = 0, max = 0;
        for (int j = 0; j < 32; j++)
            if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
        float d = max / -8, id = d && isfinite(1.0f / d) ? 1.0f / d : 0.0f;   // as Q8_0
        wr_u16(b, vm_fp32_to_fp16(d));
        for (int j = 0; j < 16; j++) {
            int q0 = (int)(int8_t)(x[j] * id + 8.5f), q1 = (int)(int8_t)(x[j + 16] * id + 8.5f);
            q0 = q0 < 15 ? q0 : 15;
            q1 = q1 < 15 ? q1 : 15;
            b[2 + j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

// fp16 of a non-negative super-scale, read back, so the sub-scales are fitted to what is stored.
static float fp16_round_trip(float v, uint16_t *h) {
    *h = vm_fp32_to_fp16(fminf(v, FP16_MAX));
    return vm_fp16_to_fp32(*h);
}

// Q4_K/Q5_K (nq = 16 or 32 levels), a super-block of 8 sub-blocks of 32: w = d*sc*q - dmin*m.
// Method: sub-block s covers [lo, hi] with lo = min(0, min x), hi = max x. The mins are rounded UP
// (m = ceil(-lo/dmin)) so the grid starts at or below lo, then the scales are rounded UP
// (sc = ceil(((hi + dmin*m)/(nq-1))/d)) so the grid reaches hi; q = round((x + dmin*m)/(d*sc)).
// Each element is then within half a step d*sc of its value (exactly so unless a super-scale was
// clamped to the fp16 range or flushed to zero). Outputs sc, m, q.
static void quant_k_affine(const float *x, int nq, uint16_t *hd, uint16_t *hdmin,
                           uint8_t sc[8], uint8_t m[8], uint8_t q[256]) {
    float lo[8], hi[8], maxneg = 0;
    for (int s = 0; s < 8; s++) {
        float a = 0, b = -INFINITY;
        for (int l = 0; l < 32; l++) { a = fminf(a, x[32 * s + l]); b = fmaxf(b, x[32 * s + l]); }
        lo[s] = a; hi[s] = b;
        maxneg = fmaxf(maxneg, -a);
    }
    float dmin = fp16_round_trip(maxneg / 63, hdmin);
    float off[8], range[8], maxrange = 0;
    for (int s = 0; s < 8; s++) {
        float mm = dmin > 0 ? ceilf(-lo[s] / dmin) : 0;
        m[s] = (uint8_t)(mm > 63 ? 63 : mm);
        off[s] = dmin * m[s];
        range[s] = fmaxf(0, (hi[s] + off[s]) / (nq - 1));
        maxrange = fmaxf(maxrange, range[s]);
    }
    float d = fp16_round_trip(maxrange / 63, hd);
    for (int s = 0; s < 8; s++) {
        float ss = d > 0 ? ceilf(range[s] / d) : 0;
        sc[s] = (uint8_t)(ss > 63 ? 63 : ss);
        float step = d * sc[s];
        for (int l = 0; l < 32; l++) {
            float v = step > 0 ? roundf((x[32 * s + l] + off[s]) / step) : 0;
            v = v < 0 ? 0 : v > nq - 1 ? nq - 1 : v;
            q[32 * s + l] = (uint8_t)v;
        }
    }
}

// Packs 8 (scale, min) 6-bit pairs into ggml's 12-byte layout (inverse of vm_kscale_get).
static void kscale_pack(const uint8_t sc[8], const uint8_t m[8], uint8_t *s) {
    for (int j = 0; j < 4; j++) {
        s[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
        s[j + 4] = (uint8_t)((m[j] & 63) | ((m[j + 4] >> 4) << 6));
        s[j + 8] = (uint8_t)((sc[j + 4] & 0xf) | ((m[j + 4] & 0xf) << 4));
    }
}

static void quant_q4_K(const float *x, uint8_t *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 256, b += QB_Q4_K) {
        uint16_t hd, hdmin;
        uint8_t sc[8], m[8], q[256];
        quant_k_affine(x, 16, &hd, &hdmin, sc, m, q);
        wr_u16(b, hd);
        wr_u16(b + 2, hdmin);
        kscale_pack(sc, m, b + 4);
        for (int p = 0; p < 4; p++)
            for (int l = 0; l < 32; l++)
                b[16 + 32 * p + l] = (uint8_t)(q[64 * p + l] | (q[64 * p + 32 + l] << 4));
    }
}

static void quant_q5_K(const float *x, uint8_t *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 256, b += QB_Q5_K) {
        uint16_t hd, hdmin;
        uint8_t sc[8], m[8], q[256];
        quant_k_affine(x, 32, &hd, &hdmin, sc, m, q);
        wr_u16(b, hd);
        wr_u16(b + 2, hdmin);
        kscale_pack(sc, m, b + 4);
        uint8_t *qh = b + 16, *qs = b + 48;
        memset(qh, 0, 32);
        for (int p = 0; p < 4; p++)
            for (int l = 0; l < 32; l++) {
                int q0 = q[64 * p + l], q1 = q[64 * p + 32 + l];
                qs[32 * p + l] = (uint8_t)((q0 & 0xf) | ((q1 & 0xf) << 4));
                qh[l] |= (uint8_t)(((q0 >> 4) << (2 * p)) | ((q1 >> 4) << (2 * p + 1)));
            }
    }
}

// Q6_K, 16 sub-blocks of 16: w = d*sc*q, q in [-32, 31], sc int8. Method: symmetric, sub-block
// scale a = amax/31; d = max(a)/127 (fp16); sc = ceil(a/d) <= 127 so |x| <= 31*d*sc; q = round(x/(d*sc)).
// Error per element <= d*sc/2 (same caveats as quant_k_affine).
static void quant_q6_K(const float *x, uint8_t *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 256, b += QB_Q6_K) {
        float a[16], amax = 0;
        for (int s = 0; s < 16; s++) {
            float v = 0;
            for (int l = 0; l < 16; l++) v = fmaxf(v, fabsf(x[16 * s + l]));
            a[s] = v / 31;
            amax = fmaxf(amax, a[s]);
        }
        uint16_t hd;
        float d = fp16_round_trip(amax / 127, &hd);
        wr_u16(b + 208, hd);
        int8_t *sc = (int8_t *)(b + 192);
        uint8_t q[256];
        for (int s = 0; s < 16; s++) {
            float ss = d > 0 ? ceilf(a[s] / d) : 0;
            sc[s] = (int8_t)(ss > 127 ? 127 : ss);
            float step = d * sc[s];
            for (int l = 0; l < 16; l++) {
                float v = step > 0 ? roundf(x[16 * s + l] / step) : 0;
                v = v < -32 ? -32 : v > 31 ? 31 : v;
                q[16 * s + l] = (uint8_t)((int)v + 32);
            }
        }
        // inverse of q6_get in dequant.c: element 32k + l of a half
        uint8_t *ql = b, *qh = b + 128;
        memset(b, 0, 192);
        for (int half = 0; half < 2; half++)
            for (int k = 0; k < 4; k++)
                for (int l = 0; l < 32; l++) {
                    int v = q[128 * half + 32 * k + l];
                    uint8_t *lo = &ql[64 * half + l + 32 * (k & 1)];
                    *lo |= (uint8_t)(k < 2 ? (v & 0xf) : (v & 0xf) << 4);
                    qh[32 * half + l] |= (uint8_t)((v >> 4) << (2 * k));
                }
    }
}

int vm_quant_row(vm_type type, const float *src, void *dst, int64_t n) {
    const vm_type_traits *t = vm_type_get((int)type);
    if (!t) return vm_err("quant: quant_row: unknown type %d", (int)type);
    if (n < 0 || n % t->blck_size) return vm_err("quant: quant_row: n=%lld not a multiple of %s block %lld", (long long)n, t->name, (long long)t->blck_size);
    int64_t nb = n / t->blck_size;
    uint8_t *b = dst;
    // A NaN/Inf has no block scale, and float->int of NaN is undefined behaviour in the quantisers.
    int blocks = type == VM_TYPE_Q8_0 || type == VM_TYPE_Q4_0 || type == VM_TYPE_Q4_K ||
                 type == VM_TYPE_Q5_K || type == VM_TYPE_Q6_K;
    if (blocks)
        for (int64_t i = 0; i < n; i++)
            if (!isfinite(src[i])) return vm_err("quant: quant_row: non-finite value at %lld (%s)", (long long)i, t->name);
    switch (type) {
    case VM_TYPE_F32:  memcpy(b, src, (size_t)n * 4); return 0;
    case VM_TYPE_F16:  for (int64_t i = 0; i < n; i++) wr_u16(b + 2 * i, vm_fp32_to_fp16(src[i])); return 0;
    case VM_TYPE_BF16: for (int64_t i = 0; i < n; i++) wr_u16(b + 2 * i, vm_fp32_to_bf16(src[i])); return 0;
    case VM_TYPE_Q8_0: quant_q8_0(src, b, nb); return 0;
    case VM_TYPE_Q4_0: quant_q4_0(src, b, nb); return 0;
    case VM_TYPE_Q4_K: quant_q4_K(src, b, nb); return 0;
    case VM_TYPE_Q5_K: quant_q5_K(src, b, nb); return 0;
    case VM_TYPE_Q6_K: quant_q6_K(src, b, nb); return 0;
    default: return vm_err("quant: quant_row: no quantiser for %s", t->name);
    }
}

// Portable level: the reference arithmetic the SIMD levels are tested against.
#include "kernels/simd.h"

// f32 dot with 8 independent partial sums: the compiler can vectorise it without -ffast-math
// while the summation order stays fixed.
static float dot_f32(const float *w, const float *x, int64_t n) {
    float s[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) s[j] += w[i + j] * x[i + j];
    float tail = 0.0f;
    for (; i < n; i++) tail += w[i] * x[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])) + tail;
}

static void f32_rows(float *out, size_t ldo, const float *w, size_t ldw, const float *x, size_t ldx,
                     int R, int B, int64_t C) {
    for (int r = 0; r < R; r++)
        for (int t = 0; t < B; t++) out[(size_t)t * ldo + r] = dot_f32(w + (size_t)r * ldw, x + (size_t)t * ldx, C);
}

static void act_rows(vm_type type, float *out, size_t ldo, const void *w, size_t ldw, const void *x,
                     size_t ldx, int R, int B, int64_t C) {
    for (int r = 0; r < R; r++)
        for (int t = 0; t < B; t++)
            out[(size_t)t * ldo + r] = vm_vec_dot_act(type, (const char *)w + (size_t)r * ldw,
                                                      (const char *)x + (size_t)t * ldx, C);
}

static void act_quant(vm_type type, const float *x, void *dst, int64_t n) { vm_act_quant_row(type, x, dst, n); }
// A chunk of di stays in registers across the m rows; per element the products are added in row order.
static void axpy_rows(float *restrict di, const float *restrict g, const float *restrict wt, size_t ldw,
                      const int *restrict idx, int m, int64_t C) {
    enum { CH = 16 };
    int64_t c0 = 0;
    for (; c0 + CH <= C; c0 += CH) {
        float s[CH];
        for (int c = 0; c < CH; c++) s[c] = di[c0 + c];
        for (int k = 0; k < m; k++) {
            const float a = g[idx[k]], *wr = wt + (size_t)idx[k] * ldw + (size_t)c0;
            for (int c = 0; c < CH; c++) {
                const float t = a * wr[c];
                s[c] += t;
            }
        }
        for (int c = 0; c < CH; c++) di[c0 + c] = s[c];
    }
    for (int k = 0; k < m; k++) {
        const float a = g[idx[k]], *wr = wt + (size_t)idx[k] * ldw;
        for (int64_t c = c0; c < C; c++) {
            const float t = a * wr[c];
            di[c] += t;
        }
    }
}

const vm_simd_kernels vm_simd_scalar = { f32_rows, act_rows, act_quant, vm_dequant_row, axpy_rows, vm_attention_scalar,
                                         vm_attention_backward_scalar, vm_swiglu_scalar,
                                         vm_swiglu_backward_scalar, NULL, NULL, NULL };

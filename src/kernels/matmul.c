// Matrix multiply over typed weights: out (B,OC) = inp (B,C) . W^T (+ bias).
// Parallel over output rows; every output element is one dot product computed by one thread, so
// the result does not depend on the thread count (nor on B: a token alone or in a batch gets the
// same bits).
#include "kernels/ops.h"
#include "quant/quant.h"

#include <stdlib.h>

// f32 dot with 8 independent partial sums: lets the compiler vectorise without -ffast-math while
// keeping a fixed summation order.
static float dot_f32(const float *w, const float *x, int64_t n) {
    float s[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) s[j] += w[i + j] * x[i + j];
    float tail = 0.0f;
    for (; i < n; i++) tail += w[i] * x[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])) + tail;
}

// Types whose vm_vec_dot is "widen to f32, then dot": a row is widened once per call and dotted
// with all B tokens (B times less conversion). Used for every B, so a token gets the same bits
// alone or in a batch. Quantised types keep vm_vec_dot (its activation handling is the type's).
static int widens_exactly(vm_type t) { return t == VM_TYPE_F16 || t == VM_TYPE_BF16; }

void vm_matmul_forward(float *out, const float *inp, const vm_tensor *w, const float *bias, int B) {
    const int64_t C = w->ne[0], OC = w->ne[1];
    const size_t row = w->nb[1];
    const char *base = (const char *)w->data;
    const vm_type type = w->type;
    #pragma omp parallel if (OC * (int64_t)B * C > 32768)
    {
        float *wrow = widens_exactly(type) ? malloc((size_t)C * sizeof(float)) : NULL;
        #pragma omp for schedule(static)
        for (int64_t o = 0; o < OC; o++) {
            const void *wr = base + (size_t)o * row;
            const float bo = bias ? bias[o] : 0.0f;
            if (wrow) vm_dequant_row(type, wr, wrow, C);
            for (int b = 0; b < B; b++) {
                const float *x = inp + (size_t)b * (size_t)C;
                float d = type == VM_TYPE_F32 ? dot_f32((const float *)wr, x, C)
                        : wrow ? dot_f32(wrow, x, C) : vm_vec_dot(type, wr, x, C);
                out[(size_t)b * (size_t)OC + (size_t)o] = d + bo;
            }
        }
        free(wrow);
    }
}

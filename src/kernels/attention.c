// Causal grouped-query attention of B new queries over a KV cache (keys/values of earlier tokens
// are never recomputed). One (query, head) pair per work item, reduced with a single-pass
// ("online") softmax: no scratch the size of the context, and each output is computed by one
// thread in a fixed order, so results are independent of the thread count and of how the tokens
// were batched. This is the portable level; simd_avx2_attn.c has the vectorised one. Both take
// exponentials by kernels/exp_neg.h (the same bits); their sums run in different orders.
#include "kernels/ops.h"
#include "kernels/simd.h"
#include "kernels/exp_neg.h"

#include <math.h>

void vm_attention_scalar(float *out, const float *q, const float *kc, const float *vc,
                         int n_past, int B, int n_head, int n_head_kv, int hd, float scale) {
    const int group = n_head / n_head_kv;          // query heads sharing one KV head
    const size_t q_stride = (size_t)n_head * hd;   // q, out (B, n_head*hd)
    const size_t kv_stride = (size_t)n_head_kv * hd;
    const int64_t n_items = (int64_t)B * n_head;
    #pragma omp parallel for schedule(static) if (n_items > 1 && (int64_t)(n_past + B) * n_items * hd > 32768)
    for (int64_t it = 0; it < n_items; it++) {
        const int b = (int)(it / n_head), h = (int)(it % n_head), hk = h / group;
        const float *qv = q + (size_t)b * q_stride + (size_t)h * hd;
        float *o = out + (size_t)b * q_stride + (size_t)h * hd;
        const int n_kv = n_past + b + 1;   // causal: positions 0 .. n_past+b
        float mx = -INFINITY, sum = 0.0f;
        for (int d = 0; d < hd; d++) o[d] = 0.0f;
        for (int t = 0; t < n_kv; t++) {
            const float *k = kc + (size_t)t * kv_stride + (size_t)hk * hd;
            const float *v = vc + (size_t)t * kv_stride + (size_t)hk * hd;
            float s = 0.0f;
            for (int d = 0; d < hd; d++) s += qv[d] * k[d];
            s *= scale;
            if (s > mx) {   // new maximum: rescale what has been accumulated so far
                const float r = vm_exp_neg(mx - s);   // 0 for the first key (mx = -inf)
                sum *= r;
                for (int d = 0; d < hd; d++) o[d] *= r;
                mx = s;
            }
            const float e = vm_exp_neg(s - mx);
            sum += e;
            for (int d = 0; d < hd; d++) o[d] += e * v[d];
        }
        const float inv = 1.0f / sum;
        for (int d = 0; d < hd; d++) o[d] *= inv;
    }
}

void vm_attention_forward(float *out, const float *q, const float *kc, const float *vc,
                          int n_past, int B, int n_head, int n_head_kv, int hd, float scale) {
    vm_simd_kernels_get(vm_simd_get())->attention(out, q, kc, vc, n_past, B, n_head, n_head_kv, hd, scale);
}

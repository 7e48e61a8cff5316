// Forward kernels of the network (backward pairs arrive with the fit work). Shapes in comments,
// row-major, B = number of tokens in the batch.
#pragma once
#include <stdint.h>
#include "quant/tensor.h"

// out (B,OC) = inp (B,C) . W^T (+ bias (OC)); W is a typed view with ne[0] = C, ne[1] = OC.
void vm_matmul_forward(float *out, const float *inp, const vm_tensor *w, const float *bias, int B);
// out (B,C) = inp / rms(inp) * weight
void vm_rmsnorm_forward(float *out, const float *inp, const float *weight, int B, int C, float eps);
// In place on x (B, n_head*head_dim) at positions pos (B). The first n_rot dims of each head rotate;
// neox = 0: pairs (2i, 2i+1) (ggml "normal"); neox = 1: pairs (i, i + n_rot/2).
#define VM_ROPE_MAX_HALF 256   // rotated pairs whose frequencies the rope kernels tabulate per call
// The rope kernels' cos and sin (kernels/ops.c): vm_rope_cs_init once per call, then per token
// vm_rope_cs_row: cos, sin of pair i at [2i], [2i+1], from a process-wide table or computed into
// buf (2 * (n_rot / 2) floats) for positions past it; the same floats either way.
typedef struct vm_rope_cs {
    const void *tab;
    double fr[VM_ROPE_MAX_HALF];
    float base, scale;
    int n_rot, half;
} vm_rope_cs;
void vm_rope_cs_init(vm_rope_cs *r, int n_rot, float freq_base, float freq_scale);
const float *vm_rope_cs_row(const vm_rope_cs *r, int32_t pos, float *buf);
void vm_rope_forward(float *x, const int32_t *pos, int B, int n_head, int head_dim, int n_rot,
                     float freq_base, float freq_scale, int neox);
void vm_softmax_forward(float *out, const float *inp, int n);
// out (n) = silu(gate) * up
void vm_swiglu_forward(float *out, const float *gate, const float *up, int n);
// Causal attention of B new queries over a cache of n_past + B positions.
// q (B, n_head*hd); kc, vc (n_ctx, n_head_kv*hd) with rows [0, n_past+B) valid; out (B, n_head*hd).
// Query b sits at position n_past + b. att is scratch of (n_past+B) floats per thread.
void vm_attention_forward(float *out, const float *q, const float *kc, const float *vc,
                          int n_past, int B, int n_head, int n_head_kv, int hd, float scale);

// ---- backward kernels (kernels/backward.c): one per forward op, llm.c style. Gradients are named
// d<thing> and accumulated (+=) unless said otherwise; the caller zeroes them.
// dinp (B,C) += dout (B,OC) . W: the gradient through a frozen typed weight (any compute type).
void vm_matmul_backward(float *dinp, const float *dout, const vm_tensor *w, int B);
// dw (OC,C) += dout^T . inp, dbias (OC) += sum_b dout (NULL: none): for trainable f32 weights only.
void vm_matmul_backward_weight(float *dw, float *dbias, const float *dout, const float *inp,
                               int B, int C, int OC);
// dinp (B,C) += d rmsnorm; dweight (C) += dout * inp / rms when non-NULL.
void vm_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                         const float *weight, int B, int C, float eps);
// In place on dx (B, n_head*head_dim): the inverse rotation (the rotation is orthogonal, so its
// backward is the rotation by -theta). Same arguments as vm_rope_forward.
void vm_rope_backward(float *dx, const int32_t *pos, int B, int n_head, int head_dim, int n_rot,
                      float freq_base, float freq_scale, int neox);
// dinp (n) += J^T dout for out = softmax(inp): dinp_i += out_i (dout_i - sum_j out_j dout_j).
void vm_softmax_backward(float *dinp, const float *dout, const float *out, int n);
// dgate, dup (n) += gradients of out = silu(gate) * up.
void vm_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                        const float *up, int n);
// Backward of vm_attention_forward (same arguments): dq (B, n_head*hd) += ..., dk, dv
// (n_past+B, n_head_kv*hd) += ... . The probabilities are recomputed from q and the cache.
void vm_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                           const float *kc, const float *vc, int n_past, int B, int n_head,
                           int n_head_kv, int hd, float scale);

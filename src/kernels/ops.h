// Forward kernels of the network (backward pairs arrive with the fit work). Shapes in comments,
// row-major, B = number of tokens in the batch.
#pragma once
#include <stdint.h>
#include "model/tensor.h"

// out (B,OC) = inp (B,C) . W^T (+ bias (OC)); W is a typed view with ne[0] = C, ne[1] = OC.
void vm_matmul_forward(float *out, const float *inp, const vm_tensor *w, const float *bias, int B);
// out (B,C) = inp / rms(inp) * weight
void vm_rmsnorm_forward(float *out, const float *inp, const float *weight, int B, int C, float eps);
// In place on x (B, n_head*head_dim) at positions pos (B). The first n_rot dims of each head rotate;
// neox = 0: pairs (2i, 2i+1) (ggml "normal"); neox = 1: pairs (i, i + n_rot/2).
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

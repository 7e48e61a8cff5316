// Training through the frozen network (method.md §4): only router heads (and later W_r or a LoRA)
// learn, so the hidden state entering the lowest trained layer l0 is computed once per example
// (vm_model_hidden, the inference path) and each step runs layers [l0, L) forward with every
// activation kept, then backward from the logits at a few positions (the answer letter) to the
// router parameters and, if asked, to that hidden state.
#pragma once
#include <stdint.h>
#include "model/model.h"
#include "util/rng.h"

typedef struct vm_tctx vm_tctx;

// A training context for layers [l0, n_layer) and sequences of up to T_max tokens: one allocation
// holding every saved activation and the backward scratch.
vm_tctx *vm_tctx_init(const vm_model *m, int l0, int T_max);
void vm_tctx_free(vm_tctx *c);

// h (T,D) = hidden state entering layer l0 for one sequence at positions 0..T-1, through the
// inference path (l0 = 0: the token embeddings). Returns 0 or -1.
int vm_model_hidden(const vm_model *m, const int32_t *tokens, int T, int l0, float *h);

// One sequence at positions 0..T-1 entering layer l0 as h (T,D): runs layers [l0, L) keeping the
// activations, then the output norm and head at positions out_pos (n_out of them, each in
// [0, T), n_out <= T_max) into logits (n_out, V). Routers run their forward as configured (the
// caller sets r->training = 1 for the training-mode forward); rng is the stream sampled routers
// draw from (may be NULL for deterministic ones).
int vm_tctx_forward(vm_tctx *c, const float *h, int T, const int32_t *out_pos, int n_out,
                    float *logits, vm_rng *rng);

// Backward of the last vm_tctx_forward given dlogits (n_out,V) = dL/dlogits: accumulates (+=)
// router parameter gradients through each MoE layer's router->ops->backward (reg_weight times the
// kind's regulariser included there), and writes dh (T,D) = dL/dh when dh is non-NULL.
// A kind without a backward (ops->backward NULL) passes no gradient from its gates to u, so dh
// then misses that path. The discrete expert selection carries no gradient.
int vm_tctx_backward(vm_tctx *c, const float *dlogits, float reg_weight, float *dh);

// Sum over the MoE layers in [l0, L) of router->ops->reg (mean over the last forward's tokens).
double vm_tctx_reg(const vm_tctx *c);

int vm_tctx_l0(const vm_tctx *c);

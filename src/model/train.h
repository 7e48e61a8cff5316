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

// A "tree" batch: the union of several sequences that share prefixes, each shared prefix stored
// once (a multiple-choice item: the context once, then each choice's continuation; data/task.h
// vm_task_tree builds it). Rows are grouped in segments, contiguous in row order: segment s holds
// rows [seg_off[s], seg_off[s+1]) and continues the sequence of its parent (parent[s] < s), or
// starts one (parent -1, a root). A row attends to every row of its segment's ancestors and to the
// rows of its own segment up to itself, at RoPE position pos[row]: a root's rows sit at 0, 1, ..,
// a child's first row right after its parent's last. So the rows of segment s, read after those
// of its ancestors, are exactly one causal sequence, and every per-row result (logits, router
// outputs) equals running that sequence alone. Everything else (norms, routers, experts, head)
// is per row and runs once over all rows: a row shared by several sequences is computed once,
// and its gradient is the sum over its descendants.
typedef struct vm_tree {
    int n_rows, n_seg;
    const int32_t *pos;        // (n_rows) positions, as implied by the segments (checked)
    const int32_t *seg_off;    // (n_seg + 1) seg_off[0] = 0 < seg_off[1] < .. < seg_off[n_seg] = n_rows
    const int32_t *parent;     // (n_seg) -1 for a root, else an earlier segment
} vm_tree;

// 0 when t is a well-formed tree of at most max_rows rows (segments non-empty and in order,
// parents earlier, positions as implied), else -1 with the reason.
int vm_tree_check(const vm_tree *t, int max_rows);

// A training context for layers [l0, n_layer) and sequences of up to T_max tokens: one allocation
// holding every saved activation and the backward scratch.
vm_tctx *vm_tctx_init(const vm_model *m, int l0, int T_max);
void vm_tctx_free(vm_tctx *c);

// h (T,D) = hidden state entering layer l0 for one sequence at positions 0..T-1, through the
// inference path (l0 = 0: the token embeddings). Returns 0 or -1.
int vm_model_hidden(const vm_model *m, const int32_t *tokens, int T, int l0, float *h);

// h (T,D) for the rows of tree t (T = t->n_rows): the hidden state entering layer l0 through the
// inference path with the model's routers (l0 = 0: the token embeddings of tokens (T)). Sampled
// routers below l0 draw from rng (NULL: a stream seeded 0, as vm_model_hidden). Computing it once
// per item lets a fit or an evaluation reuse it for every step, method and pass. 0 or -1.
int vm_model_hidden_tree(const vm_model *m, const int32_t *tokens, const vm_tree *t, int l0,
                         float *h, vm_rng *rng);

// One sequence at positions 0..T-1 entering layer l0 as h (T,D): runs layers [l0, L) keeping the
// activations, then the output norm and head at positions out_pos (n_out of them, each in
// [0, T), n_out <= T_max) into logits (n_out, V). Routers run their forward as configured (the
// caller sets r->training = 1 for the training-mode forward); rng is the stream sampled routers
// draw from (may be NULL for deterministic ones). = vm_tctx_forward_tree with one root segment.
int vm_tctx_forward(vm_tctx *c, const float *h, int T, const int32_t *out_pos, int n_out,
                    float *logits, vm_rng *rng);
// The same over a tree batch (t->n_rows <= T_max rows entering l0 as h (n_rows, D)); out_rows are
// rows of the tree. Each router runs ONE forward per layer over all rows (so its regulariser and
// its random draws count each shared row once). t is copied: it need not outlive the call.
int vm_tctx_forward_tree(vm_tctx *c, const float *h, const vm_tree *t, const int32_t *out_rows,
                         int n_out, float *logits, vm_rng *rng);

// Backward of the last vm_tctx_forward(_tree) given dlogits (n_out,V) = dL/dlogits: accumulates
// (+=) router parameter gradients through each MoE layer's router->ops->backward (reg_weight times
// the kind's regulariser included there), and writes dh (T,D) = dL/dh (T rows of the forward)
// when dh is non-NULL. A kind without a backward (ops->backward NULL) passes no gradient from its
// gates to u, so dh then misses that path. The discrete expert selection carries no gradient.
int vm_tctx_backward(vm_tctx *c, const float *dlogits, float reg_weight, float *dh);

// Sum over the MoE layers in [l0, L) of router->ops->reg (each a sum over the last forward's rows).
double vm_tctx_reg(const vm_tctx *c);

int vm_tctx_l0(const vm_tctx *c);
// The router read-outs (T, VM_UNC_COUNT) of MoE layer il in the last forward (NaN where the kind
// has none); NULL for a layer below l0, a dense layer or before a forward.
const float *vm_tctx_router_unc(const vm_tctx *c, int il);
// The router input u = ffn_norm(x) (T, D) of MoE layer il in the last forward; NULL as above.
const float *vm_tctx_router_input(const vm_tctx *c, int il);

// ---- Full-parameter training (`vmoer train`, train/lm.h): weight gradients of every block.
// Each pointer is the gradient buffer of the weight of the same name, laid out as the weight
// (f32, ne[0] contiguous: (out, in) for matrices); NULL = not trained. The weights themselves must
// be f32 and are read through the model's views (the trainer owns writable copies).
typedef struct vm_layer_grads {
    float *attn_norm, *ffn_norm;           // (D)
    float *wq, *wk, *wv, *wo;              // (qd,D), (kvd,D), (kvd,D), (D,qd)
    float *ffn_gate, *ffn_up, *ffn_down;   // dense: (F,D), (F,D), (D,F)
    float *gate_inp;                       // W_r (N,D): trained through the layer's logits
    float **exp_gate, **exp_up, **exp_down;// MoE: N pointers each, (F,D), (F,D), (D,F); NULL: none
} vm_layer_grads;

typedef struct vm_model_grads {
    float *output, *output_norm;           // (V,D), (D); output may be the tok_embd gradient (tied)
    vm_layer_grads *layers;                // (n_layer)
    // Load-balancing auxiliary loss (Switch Transformer form) per MoE layer whose gate_inp is
    // trained: lb = lb_weight * N * sum_e f_e P_e over the sequence's T tokens, f_e = share of the
    // T*K selections that went to e (no gradient), P_e = mean_t softmax(l_t)_e. 1 at perfect balance.
    float lb_weight;
} vm_model_grads;

// Points the backward at weight gradients (NULL: router/activation gradients only, the fit path).
// Layers with gate_inp must use the deterministic router: its logits are W_r u, and W_r's gradient
// is taken here instead of through the router object. Returns 0 or -1 (unsupported model: µP
// scales, biases, Q/K norms, shared experts and MLA have no weight gradients yet).
int vm_tctx_set_grads(vm_tctx *c, const vm_model_grads *g);
// The load-balancing loss of the last forward, sum over the layers with a trained W_r, before
// lb_weight (each layer's N sum_e f_e P_e).
double vm_tctx_lb_loss(const vm_tctx *c);

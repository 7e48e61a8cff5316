// The router interface: per MoE layer, turns the router input u into selected experts and gate
// weights under the base model's gate convention (method.md §2). The model calls only this
// interface, so deterministic, MAP and Bayesian routers (method.md §3) plug in per layer without
// touching model code. Kinds live one per file (router_<kind>.c) plus a line in router.c.
#pragma once
#include <stdint.h>
#include "model/tensor.h"
#include "util/rng.h"

typedef enum vm_gate_conv {
    VM_GATE_SOFTMAX_SELECTED,  // w_i = exp(l_i)/sum_{j in S} exp(l_j)  (llama/Mixtral, qwen3moe, granitemoe)
    VM_GATE_SOFTMAX_ALL,       // p = softmax(l) over all N; w_i = p_i    (olmoe, qwen2moe, deepseek)
    VM_GATE_SOFTMAX_ALL_NORM,  // p = softmax(l); w_i = p_i / sum_{j in S} p_j (expert_weights_norm)
    VM_GATE_SIGMOID_NORM,      // p = sigmoid(l); select on p + bias; w_i = p_i / sum_S p_j (V3 style)
    VM_GATE_SIGMOID,           // p = sigmoid(l); select on p + bias; w_i = p_i
} vm_gate_conv;

// Static description of one MoE layer's routing (owned by the model).
typedef struct vm_router_layer {
    int layer;                 // block index
    int n_embd, n_expert, n_expert_used;
    vm_gate_conv conv;
    const vm_tensor *w_gate;   // frozen W_r: ne = [n_embd, n_expert]
    float weights_scale;       // gates are multiplied by this (1 unless the arch says otherwise)
    const float *sel_bias;     // (N) selection-only bias, or NULL
    int n_group, topk_group;   // group-limited routing (0 = off)
} vm_router_layer;

// Per-call outputs, caller-allocated, T tokens.
typedef struct vm_router_out {
    float *logits;     // (T,N) logits the decision was made from (for sampled kinds: the sample)
    float *probs;      // (T,N) routing probabilities (softmax or sigmoid of logits, or their mean)
    int32_t *sel;      // (T,K) selected experts, best first
    float *gates;      // (T,K) gate weights for sel
} vm_router_out;

typedef struct vm_router vm_router;
typedef struct vm_router_ops {
    const char *name;
    // u (T,D) -> out. rng is the caller's explicit stream (sampled kinds); may be NULL otherwise.
    int (*forward)(vm_router *r, const vm_router_layer *L, const float *u, int T,
                   vm_router_out *out, vm_rng *rng);
    void (*free)(vm_router *r);
} vm_router_ops;

struct vm_router {
    const vm_router_ops *ops;
    void *state;
};

// The pretrained router: l = W_r u, then the layer's gate convention.
vm_router *vm_router_deterministic(void);
void vm_router_free(vm_router *r);

// Shared building blocks every kind uses.
// logits (T,N) = u (T,D) W_r^T
void vm_router_logits(const vm_router_layer *L, const float *u, int T, float *logits);
// One token: probs from logits by the convention, top-K selection (ties: lower index first),
// gates by the convention (times weights_scale).
void vm_gate_from_logits(const vm_router_layer *L, const float *logits, float *probs,
                         int32_t *sel, float *gates);
// One token, from given probabilities (e.g. the mean over posterior samples): selection and gates.
void vm_gate_from_probs(const vm_router_layer *L, const float *probs, int32_t *sel, float *gates);

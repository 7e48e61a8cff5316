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
    float *unc;        // (T,VM_UNC_COUNT) uncertainty read-outs, or NULL when not wanted;
                       // NaN where a kind has no such read-out
} vm_router_out;

// Per-token uncertainty read-outs of a router (method.md §3).
typedef enum vm_unc {
    VM_UNC_ILV = 0,          // inferred logit variance tr(Sigma) (VGLR)
    VM_UNC_GATE_ENTROPY,     // entropy of the routing distribution the selection was drawn from
    VM_UNC_TEMPERATURE,      // T(u) (VTSR)
    VM_UNC_DISAGREEMENT,     // sampled kinds: fraction of samples whose top-K set differs from the final one
    VM_UNC_ILV_DEV,          // |log(tr Sigma / tr Sigma_prior)| (VGLR): how far the posterior's spread is
                             // from the prior's, in either direction (docs/method.md §5.3)
    VM_UNC_PROB_VAR,         // sum over experts of the variance of the routing probabilities across the S
                             // samples (SWAG): inference only, NaN in training forwards
    VM_UNC_COUNT
} vm_unc;

// A trainable parameter tensor of a router (f32, owned by the router): what the optimiser,
// the adapter writer and the gradient checks see. ne[0] is the contiguous dimension.
typedef struct vm_param {
    char name[64];           // e.g. "vglr.w_t" (the adapter prefixes "blk.N.")
    int n_dims;
    int64_t ne[2];
    float *w;                // values
    float *g;                // gradient, accumulated by backward (+=), zeroed by the optimiser
    int frozen;              // 1: a constant of the router (e.g. its prior scale), saved and loaded with
                             // the parameters but never trained (the optimiser and checks skip it); an
                             // adapter without it leaves the kind's default. 2: the same, but an adapter
                             // must carry it (e.g. SWAG's variance: no default is a posterior)
} vm_param;

// What a router kind is, declared once in its ops (router_<kind>.c); eval, cost, bench, fit and the
// tests read these instead of keeping lists of kind names.
enum vm_router_flag {
    VM_ROUTER_TRAINABLE  = 1u << 0,  // has parameters `vmoer fit` trains (an adapter can store it)
    VM_ROUTER_STOCHASTIC = 1u << 1,  // its inference forward draws from the caller's random stream
    VM_ROUTER_SAMPLED_SELECTION = 1u << 2, // one forward = one sampled expert selection, so a predictive
                                     // mean and mutual information need several model passes
                                     // (multi-pass MC); the other stochastic kinds average their
                                     // samples inside the router and run the experts once
};
#define VM_UNC_BIT(u) (1u << (u))

typedef struct vm_router vm_router;
typedef struct vm_router_ops {
    const char *name;
    unsigned flags;          // VM_ROUTER_* of the kind
    unsigned unc;            // VM_UNC_BIT()s of the read-outs the kind writes (the others are NaN)
    // FLOPs per token of this router instance (2 per multiply-add of every product, S samples
    // included; the deterministic W_r u alone is 2 D N). NULL: that of the deterministic router.
    double (*flops)(const vm_router *r, const vm_router_layer *L);
    // u (T,D) -> out. rng is the caller's explicit stream (sampled kinds); may be NULL otherwise.
    int (*forward)(vm_router *r, const vm_router_layer *L, const float *u, int T,
                   vm_router_out *out, vm_rng *rng);
    void (*free)(vm_router *r);
    // ---- training ----
    // Every kind has a backward (the gates depend on u through W_r u even when nothing is trainable).
    // Kinds keep their own copy of what backward needs (sampled logits, selection, noise), so `out`
    // may be a buffer later layers have reused.
    // Backward of the most recent forward call (same L, u, T, out): given dgates (T,K) = dL/dgates,
    // accumulates (+=) dL/du into du (T,D) and parameter gradients into params[i].g. The kind's
    // regulariser, reg_weight * sum_t reg_t (KL for VGLR, the log-normal prior of T for VTSR), is
    // included in both. Through the discrete selection: kinds whose training selection is sampled
    // from a distribution they learn (VTSR) add the score-function term r->sf_coef * d log P(sel)
    // (r->sf_coef = 0: none); the other kinds pass no gradient through the selection.
    int (*backward)(vm_router *r, const vm_router_layer *L, const float *u, int T,
                    const vm_router_out *out, const float *dgates, float *du, float reg_weight);
    // Sum over the T tokens of the last forward of the regulariser (0 for kinds without one).
    double (*reg)(const vm_router *r);
    // ---- optional (NULL: the kind has none) ----
    // A collection phase after training (SWAG): `vmoer fit` calls collect(r) at every snapshot of the
    // phase, with r's trainable parameters holding the current iterate, and finish(r) once after the
    // last, which turns what was collected into the kind's stored parameters.
    int (*collect)(vm_router *r);
    int (*finish)(vm_router *r);
    // Checks parameters loaded from an adapter beyond their shapes and finiteness (e.g. a variance
    // must not be negative): 0, or -1 with an error naming the parameter.
    int (*check)(const vm_router *r);
} vm_router_ops;

struct vm_router {
    const vm_router_ops *ops;
    void *state;
    int training;            // 1: training-mode forward (one reparameterised sample, caches for backward)
    int n_params;
    vm_param *params;        // owned by the kind; NULL when none
    float beta;              // regulariser weight the fit loop should pass as reg_weight (from the opts;
                             // 0 for kinds without a regulariser)
    float sf_coef;           // score-function coefficient of the next backward: the fit loop sets it to
                             // (example loss - baseline) * the example's gradient scale, so that
                             // sf_coef * d log P(sampled selection) is an unbiased estimate of the
                             // selection's share of the gradient (used by VTSR; 0 = none)
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

// ---- The router family (method.md §3): create any kind by name ----
typedef struct vm_router_opts {
    int samples;          // S: inference samples of vglr-* and mcdropout (default 35)
    float temp;           // temp-sample's fixed temperature (default 0.3)
    float dropout;        // mcdropout's p on u (default 0.05)
    int members;          // ensemble's M (default 5)
    float member_noise;   // ensemble: member m = W_r + member_noise * rms(W_r) * N(0,1) (default 0.1)
    int hidden;           // H of the vglr/vtsr heads; 0 = max(1, D/4)
    float beta;           // regulariser weight; < 0 = the kind's default (vglr 1: the ELBO, vtsr 0.01)
    float prior_sd;       // the layer's router-logit scale sigma_p (docs/method.md §3): vglr's prior is
                          // N(l_det, sigma_p^2 I), vtsr starts at and is pulled towards
                          // T0 = sigma_p sqrt(6)/pi; <= 0: sigma_p = 1 and T0 = 1 (scale-blind)
    uint64_t seed;        // parameter initialisation (streams per layer, see router.c)
    int swag_rank;        // swag: k, the deviation columns of the low-rank covariance (default 20, 2..256)
    float swag_scale;     // swag: the sampler's covariance multiplier (default 1: Maddox et al.'s sampler)
} vm_router_opts;

void vm_router_opts_default(vm_router_opts *o);
// kind: one of vm_router_kind_names(). L gives the shapes and W_r (f32 copies are taken where a
// kind trains W_r). o may be NULL (defaults). NULL + vm_err on a bad kind or option.
vm_router *vm_router_create(const char *kind, const vm_router_layer *L, const vm_router_opts *o);
// NULL-terminated list of the kind names, in a fixed order (for the CLI's help and checks).
const char *const *vm_router_kind_names(void);
// The ops of a kind by name, for its declared flags and read-outs without creating one; NULL (no
// error set) when the name is unknown.
const vm_router_ops *vm_router_kind_ops(const char *kind);
// "a, b, c": the kinds whose flags include all of `need` (0: every kind), for help texts and errors.
// Returns buf (truncated to n bytes).
const char *vm_router_kind_list(unsigned need, char *buf, size_t n);
// The kind's default regulariser weight beta (vglr 1, vtsr 0.01); 0 for a kind without a regulariser
// (map, ensemble, swag: nothing for a beta grid to choose) or an unknown name.
float vm_router_kind_beta(const char *kind);
// FLOPs per token of router r on layer L by its kind's formula (r NULL: the deterministic router).
double vm_router_flops(const vm_router *r, const vm_router_layer *L);

// ---- More shared building blocks (one token each unless said otherwise) ----
// probs (N) from logits by the convention: softmax or sigmoid.
void vm_gate_probs(const vm_router_layer *L, const float *logits, float *probs);
// The convention's selection rule applied to logits (selection bias and groups included).
void vm_gate_select(const vm_router_layer *L, const float *logits, int32_t *sel);
// gates (K) by the convention from logits for a GIVEN selection sel (K distinct experts).
void vm_gate_at(const vm_router_layer *L, const float *logits, const int32_t *sel, float *gates);
// Backward of vm_gate_at (and of vm_gate_from_logits): dlogits (N) += (d gates / d logits)^T dgates.
void vm_gate_backward(const vm_router_layer *L, const float *logits, const int32_t *sel,
                      const float *dgates, float *dlogits);
// du (T,D) += dlogits (T,N) W_r: the backward of vm_router_logits (any compute type of W_r).
int vm_router_logits_backward(const vm_router_layer *L, const float *dlogits, int T, float *du);
// Entropy (nats) of p normalised to sum 1 (the gate entropy read-out); 0 for an all-zero p.
float vm_gate_entropy(const float *p, int n);

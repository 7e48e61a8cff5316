// The network: hyper-parameters from GGUF metadata, typed weight views into the mapped file,
// a per-sequence context (KV cache + activations) and the forward pass. One file per
// architecture family for what differs (arch_<name>.c); shared blocks in model.c.
#pragma once
#include <stdint.h>
#include "gguf/gguf.h"
#include "quant/tensor.h"
#include "router/router.h"
#include "vmoer.h"

typedef enum vm_arch {
    VM_ARCH_LLAMA = 0,
    VM_ARCH_GRANITEMOE,        // µP multipliers, softmax over the selected logits, optional shared expert
    VM_ARCH_QWEN2MOE,          // QKV bias, full softmax unrenormalised, sigmoid-gated shared expert
    VM_ARCH_QWEN3MOE,          // per-head Q/K RMSNorm, renormalised gates
    VM_ARCH_OLMOE,             // Q/K RMSNorm over the whole projection, unrenormalised
    VM_ARCH_DEEPSEEK,          // v1 MoE: leading dense blocks, ungated shared experts, unrenormalised
    VM_ARCH_DEEPSEEK2,         // multi-head latent attention (attn_mla.c), V2/V3 gating (arch_deepseek2.c)
    VM_ARCH_COUNT
} vm_arch;

typedef struct vm_hparams {
    vm_arch arch;
    char arch_name[32];        // general.architecture as written
    int n_vocab, n_ctx_train;
    int n_embd, n_ff, n_layer;
    int n_head, n_head_kv, head_dim, n_rot;
    int n_expert, n_expert_used, n_ff_exp;
    float norm_eps, rope_freq_base, rope_freq_scale;
    int rope_neox;             // 0: ggml "normal" (adjacent pairs), 1: NeoX (halves)
    vm_gate_conv gate_conv;
    // µP multipliers (granitemoe); the defaults set before the arch loader runs leave the llama
    // block unchanged: 1, and attention scale 0 = 1/sqrt(head_dim)
    float f_embedding_scale, f_residual_scale, f_attention_scale, f_logit_scale;
    float expert_weights_scale;   // routed gates times this (1 unless the file says otherwise)
    int n_ff_shexp;               // shared-expert FFN width (0: no shared expert)
    int n_layer_dense_lead;       // the first blocks are dense (deepseek); 0 elsewhere
    int qk_norm;                  // Q/K RMSNorm before RoPE: 0 none, 1 per head (qwen3moe),
                                  // 2 over the whole projection (olmoe)
} vm_hparams;

typedef struct vm_layer {
    const float *attn_norm, *ffn_norm;      // (n_embd) f32 (converted once if stored otherwise)
    vm_tensor wq, wk, wv, wo;
    int is_moe;
    vm_tensor ffn_gate, ffn_up, ffn_down;   // dense FFN
    vm_tensor ffn_gate_inp;                 // router W_r [n_embd, n_expert]
    vm_tensor *exp_gate, *exp_up, *exp_down;// n_expert views each (stacked *_exps or per-expert)
    vm_router_layer rl;                     // static routing description
    const float *bq, *bk, *bv;              // optional Q/K/V biases (qwen2moe), NULL when absent
    const float *attn_q_norm, *attn_k_norm; // Q/K RMSNorm weights (hp.qk_norm), else NULL
    int has_shexp;                          // shared expert: always on, added to the routed output
    vm_tensor ffn_gate_shexp, ffn_up_shexp, ffn_down_shexp;
    const float *ffn_gate_inp_shexp;        // (n_embd) its sigmoid gate (qwen2moe), or NULL: ungated
} vm_layer;

typedef struct vm_model {
    vm_gguf *gguf;             // owned; weights point into its mapping
    vm_hparams hp;
    vm_tensor tok_embd, output; // output may alias tok_embd (tied embeddings)
    const float *output_norm;
    vm_layer *layers;
    vm_router **routers;       // per layer; NULL for dense layers; deterministic by default
    float *f32_store;          // norm weights converted to f32 at load (tiny)
    struct vm_mla *mla;        // deepseek2: multi-head latent attention (model/attn_mla.h), else NULL
    struct vm_lora **loras;    // per layer LoRA on Q/K/V (model/lora.h), or NULL; NULL when none
} vm_model;

vm_model *vm_model_load(const char *path);
// Takes ownership of g (freed on failure too).
vm_model *vm_model_from_gguf(vm_gguf *g);
void vm_model_free(vm_model *m);
// Replaces the router of a MoE layer; takes ownership of r. -1 for a dense layer.
int vm_model_set_router(vm_model *m, int layer, vm_router *r);
// vm_model_set_routers (vmoer.h) with options per layer: o[i] for layers[i]. All or nothing.
int vm_model_set_routers_each(vm_model *m, const char *kind, const int *layers, int n_layers,
                              const vm_router_opts *o);

// Trace points: every named intermediate of a batch is reported here when a callback is set.
// Names: "attn_norm", "attn_out", "ffn_inp", "ffn_norm", "ffn_moe_logits" (T,N),
// "ffn_moe_probs" (T,N), "ffn_moe_topk" (T,K, int), "ffn_moe_weights" (T,K), "ffn_out",
// "l_out", "result_norm", "result_output". layer = -1 outside blocks.
// vm_trace_ev and vm_trace_fn are defined in vmoer.h (public).

typedef struct vm_ctx vm_ctx;
vm_ctx *vm_ctx_init(const vm_model *m, int n_ctx, int n_batch);
void vm_ctx_free(vm_ctx *c);
void vm_ctx_reset(vm_ctx *c);                  // empties the KV cache
int vm_ctx_n_past(const vm_ctx *c);
void vm_ctx_set_trace(vm_ctx *c, vm_trace_fn fn, void *ud);
void vm_ctx_set_seed(vm_ctx *c, uint64_t seed);  // the stream sampled routers draw from
// Adds eps ~ N(0, sigma^2 I) to every embedding row from now on (routing stability, method.md §5.4),
// drawn from a stream seeded here, token-major; sigma <= 0 turns it off.
void vm_ctx_set_embd_noise(vm_ctx *c, float sigma, uint64_t seed);
// Appends n tokens (n may exceed n_batch: processed in chunks). Writes the logits of every new
// position to logits (n, n_vocab) when non-NULL; the last row is always kept.
int vm_ctx_eval(vm_ctx *c, const int32_t *tokens, int n, float *logits);
const float *vm_ctx_last_logits(const vm_ctx *c);

// ---- analytic FLOPs per token (model/flops.c; 2 per multiply-add, matrix products only) ----
double vm_flops_proj(const vm_model *m);               // q, k, v, o projections of one block
double vm_flops_attn(const vm_model *m, double span);  // one block's q.k and att.v over `span` keys
double vm_flops_ffn(const vm_model *m, int il);        // block il's FFN: dense, or the K selected experts
double vm_flops_output(const vm_model *m);             // the output head

int vm_model_n_vocab(const vm_model *m);
int vm_model_n_layer(const vm_model *m);
int vm_model_n_expert(const vm_model *m);      // 0 for a dense model
const vm_gguf *vm_model_gguf(const vm_model *m);

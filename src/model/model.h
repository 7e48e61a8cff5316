// The network: hyper-parameters from GGUF metadata, typed weight views into the mapped file,
// a per-sequence context (KV cache + activations) and the forward pass. One file per
// architecture family for what differs (arch_<name>.c); shared blocks in model.c.
#pragma once
#include <stdint.h>
#include "gguf/gguf.h"
#include "model/tensor.h"
#include "router/router.h"
#include "vmoer.h"

typedef enum vm_arch { VM_ARCH_LLAMA = 0, VM_ARCH_COUNT } vm_arch;

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
} vm_hparams;

typedef struct vm_layer {
    const float *attn_norm, *ffn_norm;      // (n_embd) f32 (converted once if stored otherwise)
    vm_tensor wq, wk, wv, wo;
    int is_moe;
    vm_tensor ffn_gate, ffn_up, ffn_down;   // dense FFN
    vm_tensor ffn_gate_inp;                 // router W_r [n_embd, n_expert]
    vm_tensor *exp_gate, *exp_up, *exp_down;// n_expert views each (stacked *_exps or per-expert)
    vm_router_layer rl;                     // static routing description
} vm_layer;

typedef struct vm_model {
    vm_gguf *gguf;             // owned; weights point into its mapping
    vm_hparams hp;
    vm_tensor tok_embd, output; // output may alias tok_embd (tied embeddings)
    const float *output_norm;
    vm_layer *layers;
    vm_router **routers;       // per layer; NULL for dense layers; deterministic by default
    float *f32_store;          // norm weights converted to f32 at load (tiny)
} vm_model;

vm_model *vm_model_load(const char *path);
// Takes ownership of g (freed on failure too).
vm_model *vm_model_from_gguf(vm_gguf *g);
void vm_model_free(vm_model *m);
// Replaces the router of a MoE layer; takes ownership of r. -1 for a dense layer.
int vm_model_set_router(vm_model *m, int layer, vm_router *r);

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
// Appends n tokens (n may exceed n_batch: processed in chunks). Writes the logits of every new
// position to logits (n, n_vocab) when non-NULL; the last row is always kept.
int vm_ctx_eval(vm_ctx *c, const int32_t *tokens, int n, float *logits);
const float *vm_ctx_last_logits(const vm_ctx *c);

int vm_model_n_vocab(const vm_model *m);
int vm_model_n_layer(const vm_model *m);
int vm_model_n_expert(const vm_model *m);      // 0 for a dense model
const vm_gguf *vm_model_gguf(const vm_model *m);

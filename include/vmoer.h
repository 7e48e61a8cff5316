// vmoer public API: load a GGUF model, tokenize, evaluate, sample, inspect routing.
// Handles are opaque; every call that can fail returns NULL or -1 and leaves a one-line message
// in vm_errmsg(). The library is C11 and links with -fopenmp -ljansson -lpcre2-8 -lm (and
// -lmicrohttpd when the HTTP server of src/serve/ is used).
// (tests/test_api.c includes this header together with the internal ones, so the two can never
// disagree.)
#ifndef VMOER_H
#define VMOER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VMOER_VERSION "0.1.0"
const char *vmoer_version(void);

// ---- errors ----
const char *vm_errmsg(void);
void vm_err_clear(void);

// ---- GGUF files ----
typedef struct vm_gguf vm_gguf;
vm_gguf *vm_gguf_open(const char *path);       // memory-mapped, validated
void vm_gguf_free(vm_gguf *g);

// ---- models ----
typedef struct vm_model vm_model;
typedef struct vm_ctx vm_ctx;
typedef struct vm_router vm_router;

vm_model *vm_model_load(const char *path);      // maps the file; weights are never copied
void vm_model_free(vm_model *m);
// Replaces the router of MoE layer `layer` (takes ownership); -1 for a dense layer.
int vm_model_set_router(vm_model *m, int layer, vm_router *r);
vm_router *vm_router_deterministic(void);
int vm_model_n_vocab(const vm_model *m);
int vm_model_n_layer(const vm_model *m);
int vm_model_n_expert(const vm_model *m);      // 0 for a dense model
const vm_gguf *vm_model_gguf(const vm_model *m);

// A sequence being evaluated: KV cache and activations. n_ctx 0 = the model's training context.
vm_ctx *vm_ctx_init(const vm_model *m, int n_ctx, int n_batch);
void vm_ctx_free(vm_ctx *c);
void vm_ctx_reset(vm_ctx *c);
int vm_ctx_n_past(const vm_ctx *c);
void vm_ctx_set_seed(vm_ctx *c, uint64_t seed);
// Appends n tokens; logits (n, n_vocab) of every new position when non-NULL.
int vm_ctx_eval(vm_ctx *c, const int32_t *tokens, int n, float *logits);
const float *vm_ctx_last_logits(const vm_ctx *c);

// Routing traces: every named intermediate of a batch (router logits "ffn_moe_logits",
// probabilities "ffn_moe_probs", selected experts "ffn_moe_topk", gates "ffn_moe_weights", ...).
typedef struct vm_trace_ev {
    const char *name;
    int layer;
    int pos0, n_tokens;        // positions pos0 .. pos0+n_tokens-1
    int ne;                    // values per token
    const float *f;            // (n_tokens, ne) or NULL
    const int32_t *i;          // (n_tokens, ne) or NULL
} vm_trace_ev;
typedef void (*vm_trace_fn)(void *ud, const vm_trace_ev *ev);
void vm_ctx_set_trace(vm_ctx *c, vm_trace_fn fn, void *ud);

// ---- tokenizer ----
typedef struct vm_tokenizer vm_tokenizer;
vm_tokenizer *vm_tokenizer_from_gguf(const vm_gguf *g);
void vm_tokenizer_free(vm_tokenizer *t);
// Returns the token count (only max written when larger), or -1.
int vm_tokenize(const vm_tokenizer *t, const char *text, size_t len, int add_bos, int parse_special,
                int32_t *out, int max);
int vm_token_to_piece(const vm_tokenizer *t, int32_t id, char *buf, int size);
int vm_tokenizer_n_vocab(const vm_tokenizer *t);
int32_t vm_tokenizer_bos(const vm_tokenizer *t);
int32_t vm_tokenizer_eos(const vm_tokenizer *t);

// ---- sampling ----
int32_t vm_sample_argmax(const float *logits, int n);

// ---- converters ----
// Dense llama GGUF -> Mixtral-layout MoE: expert e = W + noise * rms(W) * N(0,1); router ~ N(0, router_std^2).
typedef struct vm_upcycle_opts {
    int n_expert, n_expert_used;
    float noise;        // relative std (default 0)
    float router_std;   // default VM_UPCYCLE_ROUTER_STD
    uint64_t seed;
} vm_upcycle_opts;
int vm_upcycle(const char *in_path, const char *out_path, const vm_upcycle_opts *o);

#ifdef __cplusplus
}
#endif
#endif

// vmoer public API: load a GGUF model (with a router adapter), tokenize, evaluate batches and read
// logits, routing traces and per-token uncertainty, create any router kind (or your own) and set it
// on chosen layers, fit an adapter, run an evaluation and read its metrics.
//
// Conventions (those of llama.cpp's llama.h): handles are opaque and come in init/free pairs
// (free accepts NULL); options are plain structs whose defaults come from *_default_params(), so a
// caller sets only what it changes; every call that can fail returns NULL or -1 (a count otherwise)
// and leaves a one-line message in vm_errmsg() (thread-local). Everything a program needs is here:
// `cc app.c $(pkg-config --cflags --libs vmoer)` (docs: README "Using the library", examples/).
// Inside the project, tests/test_api.c includes this header together with the internal ones, so the
// two can never disagree, and tests/cli/install.sh builds examples/ against an installed copy.
#ifndef VMOER_H
#define VMOER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// The library is built with -fvisibility=hidden: only what this header marks is exported from
// libvmoer.so, so internal helpers can change without breaking programs linked against it.
#if defined(__GNUC__) || defined(__clang__)
#define VMOER_API __attribute__((visibility("default")))
#else
#define VMOER_API
#endif

// The soname carries the major version (libvmoer.so.0): a program is rebuilt only when it changes.
#define VMOER_VERSION_MAJOR 0
#define VMOER_VERSION_MINOR 1
#define VMOER_VERSION_PATCH 0
#define VMOER_VERSION "0.1.0"
VMOER_API const char *vmoer_version(void);   // the library's VMOER_VERSION (may differ from the header's)

// ---- errors ----
VMOER_API const char *vm_errmsg(void);   // the last failure's message on this thread ("" if none)
VMOER_API void vm_err_clear(void);

// ---- threads ----
// Worker threads of the calls this thread makes next (OpenMP's nthreads for the calling thread, as
// `--threads N`; bindings without an OpenMP runtime of their own, e.g. Python's ctypes, need it).
// 0, or -1 with a message for n outside 1..1024.
VMOER_API int vm_set_threads(int n);

// ---- GGUF files ----
typedef struct vm_gguf vm_gguf;
VMOER_API vm_gguf *vm_gguf_open(const char *path);       // memory-mapped, validated
VMOER_API void vm_gguf_free(vm_gguf *g);

// ---- models ----
typedef struct vm_model vm_model;
typedef struct vm_ctx vm_ctx;
typedef struct vm_router vm_router;
typedef struct vm_tensor vm_tensor;   // a typed weight view (opaque here; vm_router_logits reads it)
typedef struct vm_rng vm_rng;         // an explicit random stream (vm_rng_uniform, vm_rng_normal)

typedef struct vm_model_params {
    const char *adapter;  // a router adapter (GGUF written by vm_fit or `vmoer fit`) or NULL
    int samples;          // > 0: override the adapter's inference sample count S (0: as stored)
} vm_model_params;
VMOER_API vm_model_params vm_model_default_params(void);
// Maps the file (weights are never copied), then applies p->adapter; p NULL = defaults.
VMOER_API vm_model *vm_model_load_params(const char *path, const vm_model_params *p);
VMOER_API vm_model *vm_model_load(const char *path);      // no adapter
VMOER_API void vm_model_free(vm_model *m);
VMOER_API int vm_model_n_vocab(const vm_model *m);
VMOER_API int vm_model_n_layer(const vm_model *m);
VMOER_API int vm_model_n_expert(const vm_model *m);      // 0 for a dense model
VMOER_API int vm_model_n_ctx_train(const vm_model *m);
VMOER_API int vm_model_is_moe_layer(const vm_model *m, int layer);   // 1 or 0 (also out of range)
VMOER_API const vm_gguf *vm_model_gguf(const vm_model *m);

// A sequence being evaluated: KV cache and activations. n_ctx 0 = the model's training context.
VMOER_API vm_ctx *vm_ctx_init(const vm_model *m, int n_ctx, int n_batch);
VMOER_API void vm_ctx_free(vm_ctx *c);
VMOER_API void vm_ctx_reset(vm_ctx *c);       // empties the KV cache
VMOER_API int vm_ctx_n_past(const vm_ctx *c);
VMOER_API void vm_ctx_set_seed(vm_ctx *c, uint64_t seed);   // the stream sampled routers draw from
// Appends n tokens (n may exceed n_batch: processed in chunks); logits (n, n_vocab) of every new
// position when non-NULL. The last position's row is always kept (vm_ctx_last_logits).
VMOER_API int vm_ctx_eval(vm_ctx *c, const int32_t *tokens, int n, float *logits);
VMOER_API const float *vm_ctx_last_logits(const vm_ctx *c);

// Routing traces: every named intermediate of a batch (router logits "ffn_moe_logits",
// probabilities "ffn_moe_probs", selected experts "ffn_moe_topk", gates "ffn_moe_weights", the
// routers' read-outs "ffn_moe_unc" (n_tokens, VM_UNC_COUNT), ...). layer = -1 outside blocks.
typedef struct vm_trace_ev {
    const char *name;
    int layer;
    int pos0, n_tokens;        // positions pos0 .. pos0+n_tokens-1
    int ne;                    // values per token
    const float *f;            // (n_tokens, ne) or NULL
    const int32_t *i;          // (n_tokens, ne) or NULL
} vm_trace_ev;
typedef void (*vm_trace_fn)(void *ud, const vm_trace_ev *ev);
VMOER_API void vm_ctx_set_trace(vm_ctx *c, vm_trace_fn fn, void *ud);   // fn NULL: off

// ---- tokenizer ----
typedef struct vm_tokenizer vm_tokenizer;
VMOER_API vm_tokenizer *vm_tokenizer_from_gguf(const vm_gguf *g);   // of a model: vm_model_gguf(m)
VMOER_API void vm_tokenizer_free(vm_tokenizer *t);
// Returns the token count (only max written when larger), or -1.
VMOER_API int vm_tokenize(const vm_tokenizer *t, const char *text, size_t len, int add_bos,
                          int parse_special, int32_t *out, int max);
VMOER_API int vm_token_to_piece(const vm_tokenizer *t, int32_t id, char *buf, int size);
VMOER_API int vm_tokenizer_n_vocab(const vm_tokenizer *t);
VMOER_API int32_t vm_tokenizer_bos(const vm_tokenizer *t);   // -1 when none
VMOER_API int32_t vm_tokenizer_eos(const vm_tokenizer *t);

// ---- sampling ----
VMOER_API int32_t vm_sample_argmax(const float *logits, int n);

// ---- random streams (xoshiro256**), for router kinds that sample (per draw: unchecked) ----
VMOER_API double vm_rng_uniform(vm_rng *r);   // [0, 1)
VMOER_API float vm_rng_normal(vm_rng *r);     // N(0, 1)

// ---- the router interface (method.md §2-3) ----
// A router turns a MoE layer's input u into selected experts and gate weights. The model calls
// only this interface, so every kind -- the library's (vm_router_kind_names) and a caller's own,
// built from a vm_router_ops of its own -- plugs in per layer the same way (examples/custom_router.c).
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

VMOER_API vm_router_opts vm_router_default_params(void);
VMOER_API void vm_router_opts_default(vm_router_opts *o);   // the same defaults, into *o
// kind: one of vm_router_kind_names(). L gives the shapes and W_r (f32 copies are taken where a
// kind trains W_r). o may be NULL (defaults). NULL + message on a bad kind or option.
VMOER_API vm_router *vm_router_create(const char *kind, const vm_router_layer *L, const vm_router_opts *o);
VMOER_API vm_router *vm_router_deterministic(void);   // the pretrained router: l = W_r u, then the convention
// Frees through r->ops->free (or free(r) when the kind has none). NULL is fine.
VMOER_API void vm_router_free(vm_router *r);
// NULL-terminated list of the library's kind names, in a fixed order.
VMOER_API const char *const *vm_router_kind_names(void);
// The ops of a kind by name (flags, read-outs); NULL (no message) when the name is unknown.
VMOER_API const vm_router_ops *vm_router_kind_ops(const char *kind);
// The name of a read-out (vm_unc): "ilv", "gate_entropy", "temperature", ...; "?" out of range.
VMOER_API const char *vm_unc_name(int u);

// Building blocks for a kind's forward, called per token inside it: their arguments are not
// checked (a kind passes what the model gave it). logits (T,N) = u (T,D) W_r^T:
VMOER_API void vm_router_logits(const vm_router_layer *L, const float *u, int T, float *logits);
// One token: probs from logits by the layer's convention, top-K selection (ties: lower index
// first), gates by the convention (times weights_scale).
VMOER_API void vm_gate_from_logits(const vm_router_layer *L, const float *logits, float *probs,
                                   int32_t *sel, float *gates);
// One token, from given probabilities (e.g. a mean over samples): selection and gates.
VMOER_API void vm_gate_from_probs(const vm_router_layer *L, const float *probs, int32_t *sel, float *gates);
// Entropy (nats) of p normalised to sum 1 (the gate entropy read-out); 0 for an all-zero p.
VMOER_API float vm_gate_entropy(const float *p, int n);

// Routers in a model. The layer description a kind is created for; NULL + message for a dense
// layer or one out of range.
VMOER_API const vm_router_layer *vm_model_router_layer(const vm_model *m, int layer);
VMOER_API const vm_router *vm_model_router(const vm_model *m, int layer);   // NULL for a dense layer
// Replaces the router of MoE layer `layer` (takes ownership of r, also on failure); -1 for a dense layer.
VMOER_API int vm_model_set_router(vm_model *m, int layer, vm_router *r);
// Creates a router of `kind` with options o (NULL: defaults) for each of layers[0..n_layers-1]
// (layers NULL: every MoE layer) and sets them. All or nothing: on failure the model is unchanged.
VMOER_API int vm_model_set_routers(vm_model *m, const char *kind, const int *layers, int n_layers,
                                   const vm_router_opts *o);

// ---- generation with per-token uncertainty ----
// Scores of a generated token t, all "higher = less sure": nll and entropy of the next-token
// distribution, and the routers' read-outs (vm_unc) at the position that predicted t, averaged over
// the read-out layers: the layers an adapter replaced, else every MoE layer.
typedef enum vm_gen_score {
    VM_GS_NLL = 0, VM_GS_ENTROPY, VM_GS_GATE_ENTROPY, VM_GS_ILV, VM_GS_ILV_DEV, VM_GS_TEMPERATURE,
    VM_GS_DISAGREEMENT, VM_GS_PROB_VAR, VM_GS_COUNT
} vm_gen_score;

#define VM_GEN_MAX_TOP 20                    // top log-probabilities per token (OpenAI's limit)


// One position's record: the distribution its logits give and the routers' read-outs there.
typedef struct vm_gen_tok {
    int32_t id;                  // the token scored (sampled, or the next token of a given sequence; -1: none)
    int pos;                     // position whose logits predicted it
    float prob, logprob;         // of id (NaN when id < 0)
    float score[VM_GS_COUNT];    // NaN where unavailable (nll NaN when id < 0)
    const float *unc;            // (n_layer, VM_UNC_COUNT) read-outs of every layer at pos (NaN: none)
    int n_top;
    int32_t top_id[VM_GEN_MAX_TOP];
    float top_lp[VM_GEN_MAX_TOP];   // log-probabilities, best first (ties: lower id first)
} vm_gen_tok;

typedef struct vm_gen_params {
    int max_tokens;              // tokens to generate at most (>= 0)
    float temp, top_p;           // temp 0: greedy
    int top_k;
    uint64_t seed;               // sampling and the routers' stream
    int n_top;                   // top log-probabilities per token (0 .. VM_GEN_MAX_TOP)
    int abstain_score;           // -1: off; else stop before a token whose score > abstain_threshold
    double abstain_threshold;
    int end_at_control;          // a control token (e.g. a chat's end of turn) ends the answer, as EOS
    int eval_last;               // evaluate the last accepted token too (routing rows for every token)
} vm_gen_params;

typedef enum vm_gen_finish {
    VM_GEN_EOS = 0,              // EOS/BOS (or a control token with end_at_control) sampled
    VM_GEN_LENGTH,               // max_tokens or the context reached
    VM_GEN_UNCERTAIN,            // abstained: a token's score passed the threshold (not emitted)
    VM_GEN_STOPPED,              // the callback asked to stop (a stop string, a cancelled request)
} vm_gen_finish;

// Summary over the emitted tokens: mean and max of each score.
typedef struct vm_gen_summary {
    int n;
    double sum[VM_GS_COUNT], max[VM_GS_COUNT];
    int cnt[VM_GS_COUNT];        // tokens where the score was finite
} vm_gen_summary;

typedef struct vm_gen_result {
    int n_prompt, n_gen;         // n_gen: tokens passed to the callback
    vm_gen_finish finish;
    vm_gen_tok withheld;         // finish UNCERTAIN: the token not emitted and its scores
    vm_gen_summary summary;
    double ms_prompt, ms_gen;    // wall time of the prompt's evaluation and of the generation after it
} vm_gen_result;

// Called once per emitted token, in order: 0 to go on, 1 to stop (finish STOPPED), -1 for an error.
typedef int (*vm_gen_fn)(void *ud, const vm_gen_tok *t);

typedef struct vm_gen vm_gen;
// A context of n_ctx positions (0: the model's) on m; m and tok must outlive it, and m must not be
// used by another thread while it runs (routers keep per-call state).
VMOER_API vm_gen *vm_gen_new(const vm_model *m, const vm_tokenizer *tok, int n_ctx);
VMOER_API void vm_gen_free(vm_gen *g);
VMOER_API vm_gen_params vm_gen_default_params(void);   // 16 tokens, greedy, no top, no abstain
VMOER_API void vm_gen_params_default(vm_gen_params *p);   // the same, into *p
VMOER_API const char *vm_gen_score_name(int s);      // "nll", "entropy", ..; "?" out of range
VMOER_API unsigned vm_gen_available(const vm_gen *g);   // bit s set when score s is available
VMOER_API const char *vm_gen_finish_name(vm_gen_finish f);
// Evaluates the prompt (one batch) then samples one token at a time, calling fn for each.
// 0, or -1 with a message.
VMOER_API int vm_gen_run(vm_gen *g, const int32_t *prompt, int n_prompt, const vm_gen_params *p,
                         vm_gen_fn fn, void *ud, vm_gen_result *r);

// ---- fitting an adapter (method.md §4) ----
typedef struct vm_fit_params {
    const char *kind;          // trainable router kind (default "vglr-mf")
    const int *layers;         // MoE layers to fit; NULL: the last n_layers (default 5) MoE layers
    int n_layers;
    const char *score;         // task mode: "letter" (default), "loglik", "loglik-raw", "pmi"
    const char *chat_template; // NULL: picked from the model's metadata
    const char *format;        // dataset format: NULL auto, "obqa", "arc", "sciq", "medmcqa", "mmlu", "jsonl"
    long limit;                // items read from the data file (0: all)
    int epochs, batch, patience;   // 3, 16, 2
    float lr, val_frac;        // 1e-3, 0.1
    float beta;                // < 0: the kind's default (vglr 1, vtsr 0.01)
    int samples, hidden, members;   // 0: the kind's defaults
    uint64_t seed;
    int lora_rank;             // a LoRA on attention Q/K/V trained with the routers (0: none)
    int verbose;               // 0: quiet; 1: a line per epoch on stderr
} vm_fit_params;
typedef struct vm_fit_result {
    int n_train, n_val, n_layers, epochs_run, best_epoch;
    long long steps;
    double val_nll_init, val_nll_best, val_acc_init, val_acc_best;
    double seconds;
} vm_fit_result;
VMOER_API vm_fit_params vm_fit_default_params(void);
// Fits the routers of the chosen layers of m on the multiple-choice items of data_path and writes
// the adapter (best validation parameters) to out_path; m keeps the fitted routers. r may be NULL.
VMOER_API int vm_fit(vm_model *m, const char *data_path, const char *out_path, const vm_fit_params *p,
                     vm_fit_result *r);

// ---- evaluation (method.md §5) ----
// Per-question uncertainty scores, higher = more uncertain.
typedef enum vm_eval_unc {
    VM_EVAL_UNC_ENTROPY = 0,     // predictive entropy H(p_bar), nats
    VM_EVAL_UNC_NEG_MAXPROB,     // -max_c p_bar (the max-prob score, negated: higher = more OOD)
    VM_EVAL_UNC_MI,              // mutual information (sampled routers; NaN otherwise)
    VM_EVAL_UNC_ILV,             // VGLR inferred logit variance tr(Sigma)
    VM_EVAL_UNC_GATE_ENTROPY,    // the router's own gate entropy read-out
    VM_EVAL_UNC_TEMPERATURE,     // VTSR T(u)
    VM_EVAL_UNC_BASE_GATE_ENTROPY, // entropy of convention(W_r u)
    VM_EVAL_UNC_ILV_DEV,         // VGLR |log(tr Sigma / tr Sigma_prior)|, the direction-free ILV score
    VM_EVAL_UNC_PROB_VAR,        // SWAG: sum over experts of the variance of the routing probabilities
                                 // across the router's S samples
    VM_EVAL_UNC_COUNT
} vm_eval_unc;
VMOER_API const char *vm_eval_unc_name(int u);   // "entropy", "neg_maxprob", "mi", "ilv", ...

typedef struct vm_eval_params {
    const char *score;         // task mode, as vm_fit_params (default "letter")
    const char *chat_template; // NULL: picked from the model's metadata
    const char *format;        // NULL: auto
    long limit;                // items (0: all)
    int passes;                // multi-pass MC for stochastic routers (default 1)
    uint64_t seed;             // the routers' streams
    int bins;                  // ECE bins (default 10)
} vm_eval_params;
typedef struct vm_eval_metrics {
    int n, n_skipped;          // items scored, items that could not be built
    double acc, nll, brier, ece;
    double unc_mean[VM_EVAL_UNC_COUNT];   // mean of each score (NaN where the routers give none)
    double seconds;
} vm_eval_metrics;
typedef struct vm_evaluation vm_evaluation;
VMOER_API vm_eval_params vm_eval_default_params(void);
// Scores every multiple-choice item of data_path with m's current routers.
VMOER_API vm_evaluation *vm_evaluate(vm_model *m, const char *data_path, const vm_eval_params *p);
VMOER_API void vm_evaluation_free(vm_evaluation *e);
VMOER_API int vm_evaluation_metrics(const vm_evaluation *e, vm_eval_metrics *out);
VMOER_API int vm_evaluation_n_items(const vm_evaluation *e);
// Item i: its answer, prediction, number of choices and the uncertainty scores
// (unc: VM_EVAL_UNC_COUNT values, may be NULL). 0, or -1 for i out of range.
VMOER_API int vm_evaluation_item(const vm_evaluation *e, int i, int *answer, int *pred, int *n_choices,
                                 double *unc);

// ---- the whole evaluation, as `vmoer eval` ----
// Scores data (a path, or a folder name under $VMOER_SHARED/data/mcqa) with m's current routers,
// the OOD sets and the validation set likewise, measures routing stability under embedding noise
// and the cost, and writes outdir as `vmoer eval -o outdir` does: questions.jsonl, metrics.json
// (acc, NLL, Brier, ECE with its bootstrap interval, MCE, AURC, OOD AUROC/AUPR/FPR95 per set and
// score, temperature scaling, stability, cost), the CSVs, curves.json and report.html. outdir is
// replaced as one set (an existing folder may hold only those files). 0, or -1 with a message.
typedef struct vm_eval_report_params {
    const char *val;             // validation set (path or shared name): adds '<router>+ts' (NULL: none)
    const char *const *ood;      // OOD sets, "NAME=PATH[@SUBJECT]" each (@SUBJECT keeps one subject)
    int n_ood;                   // up to 16
    const char *score;           // task mode, as vm_fit_params (default "letter")
    const char *chat_template;   // NULL or "auto": the model's; "none": raw text
    const char *format;          // every set's format (NULL: detect each file)
    long limit;                  // first items of every set (0: all)
    int passes;                  // 0: the method's one pass; P > 1: multi-pass MC for sampled routers
    int bins, boot;              // ECE bins 1..1000 (10), bootstrap replicates of its interval (1000)
    const double *noise_grid;    // stability's embedding-noise levels gamma, n_noise of them;
    int n_noise;                 // -1 (default): the standard grid, 0: no stability runs
    long stability_limit;        // first prompts used for stability (< 0, default: all)
    int time_items;              // prompts timed for the cost ratio (default 50)
    uint64_t seed;               // router streams, noise and bootstrap
    const char *model_label;     // the paths metrics.json and the report name (NULL: "?" / none)
    const char *adapter_label;
    int verbose;                 // progress lines on stderr
    int distributed;             // 1: in a process that joined an MPI job (`mpirun -np N vmoer eval`),
                                 // the items and stability prompts are split over the ranks and rank 0
                                 // writes; the same outputs (docs/mpi.md). 0 (default): this process
                                 // does everything (a library caller never joins a job)
} vm_eval_report_params;
VMOER_API vm_eval_report_params vm_eval_report_default_params(void);
VMOER_API int vm_eval_report(vm_model *m, const char *data, const char *outdir, const vm_eval_report_params *p);

// ---- converters ----
// Dense llama GGUF -> Mixtral-layout MoE: expert e = W + noise * rms(W) * N(0,1); router ~ N(0, router_std^2).
typedef struct vm_upcycle_opts {
    int n_expert, n_expert_used;
    float noise;        // relative std (default 0)
    float router_std;   // default VM_UPCYCLE_ROUTER_STD
    uint64_t seed;
} vm_upcycle_opts;
VMOER_API int vm_upcycle(const char *in_path, const char *out_path, const vm_upcycle_opts *o);

#ifdef __cplusplus
}
#endif
#endif

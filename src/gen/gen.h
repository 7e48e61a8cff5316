// Generation with uncertainty read-outs (issue 17): one model + context + the collector of the
// routers' per-token read-outs (trace point "ffn_moe_unc") and, on request, of the routing itself
// (issue 22). `vmoer run`, `vmoer logits --uncertainty` and every slot of `vmoer serve` use it, so
// the three report the same numbers for the same tokens.
//
// Scores of a generated token t, all "higher = less sure":
//   nll           -log p(t) under the model's next-token distribution (softmax of the logits, T = 1,
//                 whatever temperature sampled t)
//   entropy       entropy (nats) of that distribution
//   gate_entropy, ilv, ilv_dev, temperature, disagreement, prob_var
//                 the routers' read-outs (router.h vm_unc) at the position whose logits predicted t,
//                 averaged over the read-out layers: the MoE layers whose router is not the
//                 pretrained one when an adapter replaced some (the Bayesian layers), else every MoE
//                 layer. A score is available when a read-out layer's kind declares it (ops->unc).
#pragma once
#include <stdint.h>
#include "model/model.h"
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"

const char *vm_gen_score_name(int s);        // "nll", "entropy", ..; "?" out of range
int vm_gen_score_parse(const char *name);    // the score, or -1 (no error recorded)
const char *vm_gen_score_names(void);        // comma-separated, for messages
// The router read-out (vm_unc) behind a score, or -1 for nll and entropy.
int vm_gen_score_unc(int s);
// The name of a router read-out (vm_unc): the name of its score ("ilv", "temperature", ..).
const char *vm_gen_unc_name(int u);

typedef struct vm_gen vm_gen;

// A context of n_ctx positions (0: the model's) on m; m and tok must outlive it, and m must not be
// used by another thread while the generator runs (routers keep per-call state).
vm_gen *vm_gen_new(const vm_model *m, const vm_tokenizer *tok, int n_ctx);
void vm_gen_free(vm_gen *g);
vm_ctx *vm_gen_ctx(vm_gen *g);
const vm_model *vm_gen_model(const vm_gen *g);
int vm_gen_n_ctx(const vm_gen *g);
// The read-out layers (ascending) and how many.
int vm_gen_readout_layers(const vm_gen *g, const int **layers);
// Bit s (1u << s) set when score s is available with these routers.
unsigned vm_gen_available(const vm_gen *g);

// The record of position pos (already evaluated) from its logits row; n_top top log-probabilities.
void vm_gen_record(vm_gen *g, const float *logits, int pos, int32_t id, int n_top, vm_gen_tok *t);

// ---- routing capture (issue 22): what `vmoer trace` writes, kept per position ----
// Captures every position < max_pos at the given MoE layers (sorted, distinct) from the next
// evaluation on; n_layers 0 turns it off. 0, or -1 with an error (not a MoE layer, memory).
int vm_gen_capture(vm_gen *g, const int *layers, int n_layers, int max_pos);
typedef struct vm_gen_routing {
    int n_layers, N, K, n_pos;   // n_pos: positions captured so far (0 .. n_pos-1)
    const int *layers;
    const float *logits, *probs; // (max_pos, n_layers, N)
    const int32_t *experts;      // (max_pos, n_layers, K)
    const float *gates;          // (max_pos, n_layers, K)
    const float *unc;            // (max_pos, n_layers, VM_UNC_COUNT)
    const int32_t *ids;          // (max_pos) the token at each position
} vm_gen_routing;
void vm_gen_routing_view(const vm_gen *g, vm_gen_routing *r);

// ---- evaluation ----
// Resets the context and seeds the routers' random stream (a request's seed: sampled routers give
// the same numbers for the same request on any slot).
void vm_gen_reset(vm_gen *g, uint64_t seed);
// Appends n tokens (logits of every new position into `logits` (n, n_vocab) when not NULL).
int vm_gen_eval(vm_gen *g, const int32_t *ids, int n, float *logits);

// Multiple-choice scoring (vm_task_score runs its sequences through vm_gen_ctx): from now on, sum the
// read-out layers' read-outs at position pos of the first n_cond sequences (each starts at
// position 0); vm_gen_target_mean gives their means (NaN where none). pos -1 turns it off.
void vm_gen_target(vm_gen *g, int pos, int n_cond);
void vm_gen_target_mean(const vm_gen *g, double out[VM_UNC_COUNT]);

// ---- generation ----

void vm_gen_params_default(vm_gen_params *p);   // 16 tokens, greedy, no top, no abstain

const char *vm_gen_finish_name(vm_gen_finish f);   // "stop", "length", "uncertain", "stop"

void vm_gen_summary_add(vm_gen_summary *s, const vm_gen_tok *t);

// Evaluates the prompt (one batch) then samples one token at a time. The prompt must be non-empty
// and fit the context (a prompt that fills it still gives the one token its last logits predict).
// 0, or -1 with an error.
int vm_gen_run(vm_gen *g, const int32_t *prompt, int n_prompt, const vm_gen_params *p,
               vm_gen_fn fn, void *ud, vm_gen_result *r);

// ---- chat ----
// Renders messages with template id for model m (its BOS/EOS texts fill bos_token/eos_token; a
// ChatML template's literal default system message is used when there is none), generation prompt
// added. malloc'd text, or NULL with an error.
char *vm_gen_chat_render(const vm_model *m, const vm_tokenizer *tok, int tmpl, const vm_chat_msg *msgs,
                         int n);

// Measured expert specialisation of a MoE model on plain text (issue 14): does routing matter?
//
// The text is read like `vmoer train` reads its validation text (documents split at blank lines,
// each BOS + its tokens, concatenated) and scored on consecutive non-overlapping windows of `seq`
// predictions, each window a fresh sequence at positions 0..seq-1 (so `loss_router` equals the
// validation loss `vmoer train` reports for the same text, windows and model).
//
// Read-outs (docs/model.md defines them with the numbers of the bundled model):
//   loss_router          mean next-token cross-entropy (nats/token) with the routers installed in
//                        the model (the deterministic top-K router of a freshly loaded model)
//   loss_random_routing  the same windows with every MoE layer routed at random: each token draws
//                        K distinct experts uniformly (a partial Fisher-Yates shuffle of 0..N-1,
//                        index k + u64 % (N - k) for k = 0..K-1) from the stream
//                        vm_rng_seed2(seed, VM_EXPERTS_STREAM + window * n_layer + layer), tokens
//                        in order; the gates are the model's gate convention applied to the router
//                        logits of the drawn experts (vm_gate_at), so only the choice is random
//   loss_random_layer    per MoE layer, the loss when only that layer is routed at random (same
//                        streams): where the choice matters most
//   router_logit_sd      per token, the standard deviation over the N experts of its router logits
//                        (population SD, divisor N), averaged over tokens; per MoE layer and mean
//   logit_gap            per token, the K-th minus the (K+1)-th largest logit (0 when K = N),
//                        averaged over tokens; per layer and mean
//   load                 per layer and expert, the fraction of the T*K selections of the router
//                        pass that went to the expert (sums to 1 per layer); load_min = the
//                        smallest over every layer and expert (dead expert: load < 1/(4N))
//   expert_diff          on the first diff_tokens scored positions, the router input u of each MoE
//                        layer is given to every expert: per token, mean over expert pairs a < b of
//                        ||E_a(u) - E_b(u)|| divided by mean_e ||E_e(u)|| (E_e = the expert's SwiGLU
//                        output before its gate), averaged over tokens; per layer and mean.
//                        0 for identical experts, about sqrt(2) for unrelated ones of equal size.
// Deterministic for a seed, whatever the thread count.
#pragma once
#include <stdint.h>
#include <jansson.h>
#include "model/model.h"
#include "tokenizer/tokenizer.h"

#define VM_EXPERTS_STREAM 0x72616e64ull   // "rand": the random-routing streams

typedef struct vm_expert_stats_opts {
    int64_t max_tokens;      // predictions scored (rounded down to whole windows; default 16384;
                             // 0 = every whole window of the text)
    int seq;                 // predictions per window (default 256)
    uint64_t seed;           // random-routing stream (default 0)
    int diff_tokens;         // token sample of expert_diff (default 512)
} vm_expert_stats_opts;

typedef struct vm_expert_stats {
    int n_moe;               // MoE layers measured
    int n_expert, n_expert_used;
    int *layers;             // (n_moe) their block indices
    int64_t n_tokens;        // predictions scored
    int n_windows, seq, diff_tokens;
    uint64_t seed;
    double loss_router, loss_random_routing;
    double *loss_random_layer;             // (n_moe)
    double *logit_sd, logit_sd_mean;       // (n_moe), mean over layers
    double *logit_gap, logit_gap_mean;     // (n_moe)
    double *load, load_min;                // (n_moe, N)
    double *expert_diff, expert_diff_mean; // (n_moe)
} vm_expert_stats;

void vm_expert_stats_opts_default(vm_expert_stats_opts *o);
// The read-outs on a token stream (tokens[0..n)): windows of o->seq + 1 tokens starting every
// o->seq tokens. The model must be a MoE; its routers are restored before returning. 0 or -1.
int vm_expert_stats_tokens(vm_model *m, const int32_t *tokens, int64_t n, const vm_expert_stats_opts *o,
                           vm_expert_stats *out);
// The same on a text file read as `vmoer train` reads it (documents at blank lines, BOS each).
int vm_expert_stats_run(vm_model *m, const vm_tokenizer *tok, const char *text_path,
                        const vm_expert_stats_opts *o, vm_expert_stats *out);
void vm_expert_stats_free(vm_expert_stats *s);
// {"n_tokens", "seq", "seed", "n_expert", "n_expert_used", "layers", "loss_router",
//  "loss_random_routing", "random_routing_cost", "random_routing_cost_per_layer", "router_logit_sd": {"mean", "per_layer"},
//  "logit_gap": {"mean", "per_layer"}, "load": {"min", "per_layer": [[N]...]},
//  "expert_diff": {"mean", "per_layer"}}; NULL on allocation failure.
json_t *vm_expert_stats_json(const vm_expert_stats *s);

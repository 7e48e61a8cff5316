// `vmoer eval` as a library (method.md §5, issue 5): score MCQA items with a model under a router,
// collect every uncertainty score per question, measure routing stability under embedding noise
// (stability.c) and the cost of the method (cost.c), then write JSONL / metrics.json / CSVs /
// report.html (eval_write.c).
//
// Passes: every router kind is evaluated as the method defines it in ONE model pass (VGLR and
// MC-dropout average their S samples inside the router, docs/method.md §3.1). For a stochastic kind
// (VM_ROUTER_STOCHASTIC: its forward draws random numbers) opts.passes = P > 1 asks for multi-pass
// Monte Carlo on top: each question is scored P times with independent router streams, the answer
// distribution is the mean p_bar of the P pass distributions and the mutual information
// MI = H(p_bar) - mean_q H(p_q) (nats); with one pass MI is NaN. Deterministic kinds always run once.
// Each item runs as one tree batch (vm_scorer_run): the context once, each choice's continuation
// once (scores as if every sequence ran alone). Router read-outs (ILV, gate entropy, T, ILV
// deviation) come out of the routers per token and are taken at the last prompt token (letter mode)
// or the last context token (loglik: one row, shared by every choice), averaged over the replaced
// MoE layers (those whose router is not the deterministic one; all MoE layers when none is), then
// over passes. The baseline gate entropy is the entropy of the frozen router's distribution
// convention(W_r u) at the same token, whatever router runs (so it is the deterministic model's
// score, seen through this method's hidden states).
#pragma once
#include <stdint.h>

#include "data/dataset.h"
#include "data/task.h"
#include "model/model.h"
#include "router/router.h"
#include "util/rng.h"

#define VM_EVAL_PASSES 1   // the method: one pass; > 1 only on request (multi-pass MC)

// vm_eval_unc (the per-question scores) and vm_eval_unc_name are public (vmoer.h).

typedef struct vm_eval_item {
    const char *id;                      // borrowed from the dataset
    int n_choices, answer;
    double probs[VM_MCQ_MAX_CHOICES];    // p_bar
    double logp[VM_MCQ_MAX_CHOICES];     // log p_bar (temperature scaling fits on these)
    double ll[VM_MCQ_MAX_CHOICES];       // loglik: mean over passes of the summed log-likelihoods
    int pred, pred_norm;                 // argmax p_bar; loglik: argmax ll/bytes (acc_norm)
    double unc[VM_EVAL_UNC_COUNT];
    int n_tokens;                        // prompt (letter) or longest sequence (loglik) length
} vm_eval_item;

typedef struct vm_eval_set {
    char *name;                          // "id" for the in-distribution set, else the OOD name
    int n;
    vm_eval_item *items;
    double seconds;                      // wall time of scoring (all passes)
    long long n_tokens;                  // tokens evaluated (all passes, all sequences)
    int n_skipped;                       // items that could not be built (too long for the context, ...)
    char *skip_msg;                      // the first such message
} vm_eval_set;

typedef struct vm_eval_opts {
    int passes;          // P for stochastic routers (0 = VM_EVAL_PASSES = 1); deterministic ones always 1
    uint64_t seed;       // router streams: pass q of item i uses vm_rng_seed2(seed, i * 65536 + q)
    int distributed;     // 1: the items are split over the job's ranks (util/dist.h), each rank scores
                         // its block and every rank receives the whole set in item order, equal byte
                         // for byte to one process's (an item's streams depend on its index only).
                         // Every rank must call with the same model, data and options (refused
                         // otherwise). 0 (default): this process scores every item (library callers,
                         // the demo's worker threads).
} vm_eval_opts;

// For a distributed step: refuses (-1 on every rank, the message naming the differing rank) ranks
// whose model identity, dataset fingerprint or `opts` (a hash of the step's options) differ.
int vm_eval_dist_same(const vm_model *m, const vm_dataset *ds, uint64_t opts, const char *what);

// 1 when the kind draws random numbers at inference.
int vm_eval_kind_sampled(const char *kind);
// Name of the router kind running in the model's MoE layers, deterministic layers aside (an adapter
// replaces some layers); "mixed" when two other kinds run, "deterministic" when all are, NULL if none.
const char *vm_eval_model_router(const vm_model *m);

// ---- one item scored as one tree batch (score.c) ----
// The item's sequences (data/task.h vm_task_tree: the context once, each continuation once) run as
// one vm_tctx forward over layers [l0, L) with the routers in inference mode (router->training 0,
// as loaded; fit's validation sets it). The scores equal running each sequence alone (bit for bit
// with deterministic routers); sampled routers draw each shared row once from the given stream.
typedef struct vm_tree_score_out {
    vm_task_result r;                  // per-choice scores (r.ll: loglik, or pmi scores), answer
                                       // probabilities, predictions, nll (letter mode: as vm_task_score)
    double unc[VM_UNC_COUNT];          // the routers' read-outs (vm_tctx_router_unc) at the last context
                                       // row (in->tree.ctx_row), mean over the chosen layers where
                                       // finite; NaN when no chosen layer gives it
    double base_gate_entropy;          // entropy of convention(W_r u) at that row, same layers (the
                                       // frozen router seen through this method's hidden states)
} vm_tree_score_out;

typedef struct vm_scorer vm_scorer;
// A scorer for m from layer l0 up: one vm_tctx, grown to the largest tree it meets.
vm_scorer *vm_scorer_init(const vm_model *m, int l0);
void vm_scorer_free(vm_scorer *s);
int vm_scorer_l0(const vm_scorer *s);
// Scores one built input. h: the hidden states of in->tree's rows entering l0 (a cache from
// vm_model_hidden_tree), or NULL to compute them here (drawing from rng below l0). rng: the stream
// sampled routers draw from (NULL for deterministic ones). layers (n_layer flags, NULL = every MoE
// layer): whose read-outs are averaged (layers below l0 have none here). 0 or -1.
int vm_scorer_run(vm_scorer *s, const vm_task_input *in, const float *h, vm_rng *rng,
                  const unsigned char *layers, vm_tree_score_out *out);
// After vm_scorer_run of `in`: MoE layer il's own read-outs (VM_UNC_COUNT) at in's last context row
// (NaN where its kind has none). 0, or -1 for a layer below l0 or not MoE.
int vm_scorer_layer_unc(const vm_scorer *s, const vm_task_input *in, int il, float *unc);

// Scores every item of ds. An item that cannot be built (longer than the model's context, letters
// that collide) is skipped and counted. out is filled (free with vm_eval_set_free). 0 or -1
// (also when every item was skipped).
int vm_eval_run(vm_model *m, const vm_task *task, const vm_dataset *ds, const char *name,
                const vm_eval_opts *o, vm_eval_set *out);
void vm_eval_set_free(vm_eval_set *s);
// The headline numbers metrics.json reports for a set: accuracy, NLL, Brier and ECE (bins bins) of
// its clamped probabilities, computed as vm_eval_write computes them (the same rows, the same metric
// functions). 0 or -1.
int vm_eval_set_headline(const vm_eval_set *s, int bins, double *acc, double *nll, double *brier, double *ece);

// ---- routing stability (method.md §5.4, stability.c) ----
#define VM_EVAL_GAMMA_HEADLINE 0.01
typedef struct vm_stability {
    int n_gamma, n_layer;     // n_layer = the model's MoE layers
    double *gamma;            // (n_gamma)
    int *layers;              // (n_layer) block index of each MoE layer
    double L_bar;             // mean L2 norm of the input token embeddings over the prompts
    double *jac;              // (n_gamma, n_layer) mean Jaccard over every prompt token
    double *jac_mean;         // (n_gamma) mean over layers
    double *changed;          // (n_gamma) fraction of (token, layer) pairs whose set changed
    long long n_tokens;       // tokens per layer averaged over
    int n_items;              // prompts measured (skipped items excluded)
    double *jac_item;         // (n_items, n_gamma, n_layer) each prompt's mean Jaccard over its tokens
    int *item_tokens;         // (n_items) its tokens (the token-weighted mean of jac_item is jac)
} vm_stability;

// For each gamma, every prompt of `task` over ds (letter prompt; loglik: the context of choice 0)
// runs clean and with eps ~ N(0, (gamma L_bar)^2 I) added to the embedding output; the same
// standard-normal draws per prompt for every gamma (common random numbers). The clean and the noisy
// passes draw their routers' random numbers from INDEPENDENT streams (the noisy passes share one),
// so a sampled router's stability counts its own sampling noise too, as two separate uses of the
// router would see it (docs/method.md §5.4). 0 or -1.
int vm_stability_run(vm_model *m, const vm_task *task, const vm_dataset *ds, int n_gamma,
                     const double *gamma, uint64_t seed, vm_stability *out);
// The same, the prompts split over the job's ranks when distributed (as vm_eval_opts.distributed):
// every rank receives the result of one process, byte for byte.
int vm_stability_run_dist(vm_model *m, const vm_task *task, const vm_dataset *ds, int n_gamma,
                          const double *gamma, uint64_t seed, int distributed, vm_stability *out);
void vm_stability_free(vm_stability *s);

// ---- cost (method.md §5.5, cost.c) ----
typedef struct vm_cost {
    double flops_base;        // per token, deterministic model (every matrix product)
    double flops_method;      // per token, one pass with the model's current routers
    double flops_router_base, flops_router_method;   // the router parts of those, all MoE layers
    double ctx_mean;          // mean attention span used for the attention products
    int passes;               // model passes per question
    long long params_extra;   // trainable router parameters of the current routers
    long long params_base;    // parameters of the model
    double sec_method, sec_base;   // measured: one pass over the same prompts
} vm_cost;
// Analytic per-token FLOPs (2 per multiply-add) of a forward at mean attention span ctx_mean,
// for the model's routers (method) and for the deterministic router (base). Each router's share is
// its kind's own formula (vm_router_flops: the `flops` of the kind's ops, router_<kind>.c).
int vm_cost_flops(const vm_model *m, double ctx_mean, vm_cost *c);
// Times one pass over the prompts with the current routers and with deterministic ones (swapped in
// and back), same prompts, same threads. Fills sec_method / sec_base.
int vm_cost_time(vm_model *m, const vm_task *task, const vm_dataset *ds, int max_items, vm_cost *c);

// ---- outputs (eval_write.c) ----
typedef struct vm_eval_write_opts {
    const char *outdir;
    const char *model_path, *adapter_path, *data_path, *router, *score, *val_path;
    int bins;            // ECE bins, 1..1000 (the paper reports 10 and 15)
    int boot;            // bootstrap replicates
    uint64_t seed;
    int passes;
    int distributed;     // 1: only rank 0 of the job writes (the others return 0 at once)
} vm_eval_write_opts;

// The files of an eval folder (NULL-terminated): vm_eval_write replaces a folder holding only these.
extern const char *const vm_eval_output_names[];

// Writes questions.jsonl, metrics.json, metrics.csv, reliability.csv, risk_coverage.csv, ood.csv,
// roc.csv, stability.csv, curves.json and report.html into outdir (created) as one set: written
// into a temporary folder beside it and swapped in (util/fileio.h vm_adir), so a failure (full
// disk, kill) leaves the previous set whole. An existing outdir must hold only these files
// (vm_output_dir_check). sets[0] is the in-distribution set, sets[1..] OOD. val (may be NULL): the
// validation set temperature scaling is fitted on.
int vm_eval_write(const vm_eval_write_opts *o, int n_sets, const vm_eval_set *sets,
                  const vm_eval_set *val, const vm_stability *st, const vm_cost *cost);

// `vmoer fit`: trains the routers of chosen MoE layers on an MCQA training set (method.md §4).
//
// Loss per example = answer cross-entropy (letter mode: over the letter tokens' softmax at the last
// prompt position; loglik mode: over softmax_c of the choices' summed log-likelihoods) + beta *
// sum_layers sum_rows(reg) (the routers' backward adds the reg gradient through reg_weight). An
// example runs as ONE forward and backward over its tree (data/task.h: the context once, each
// choice's continuation once), so every row, a shared context's included, counts once in the
// regulariser (the ELBO's tokens, method.md §4); the hidden states entering the lowest trained
// layer are cached per tree. Batch loss = mean over its examples
// (gradient accumulation: examples run one at a time, each example's gradient on its own, then
// added in batch order -- the same additions whichever process ran each example, so a distributed
// fit gives the same bytes, docs/mpi.md; one AdamW step per effective batch). AdamW (optim.h): weight decay wd on 2-D head weights of vglr/vtsr only (not on
// biases, and not on the W_r copies of map/ensemble, which would decay towards 0 instead of towards
// the pretrained router); linear warm-up over 5 % of the steps, cosine decay to 0.
// Validation: items are shuffled by index with a stream seeded by (seed, VM_FIT_STREAM_SPLIT); the
// first round(val_frac * n) are validation, the rest training (disjoint by construction). Validation
// NLL is measured before training and after each epoch with the routers in inference mode; the
// best parameters (the initial ones included) are kept; training stops after `patience` epochs
// without improvement.
// Randomness is counter-based: epoch e's example order from stream (seed, 1000 + e), example i's
// router noise in epoch e from stream (seed, (e+1) << 32 | i), validation example i from
// (seed ^ 0x76616c, i); so a checkpoint needs only its step counter to resume bit-exactly.
// Checkpoints (<out>.ckpt unless given, GGUF): params, AdamW moments and step, best params, counters,
// running epoch sums and a fingerprint of the options; written atomically at every epoch end and
// every ckpt_every steps; removed when the fit completes.
// Collection phase (kinds with ops->collect, i.e. swag; docs/method.md §3.4): after the loop above
// and from the kept (best-validation) parameters -- the MAP router -- plain SGD, w -= swag_lr * g, at a
// constant learning rate continues on the router parameters only (a LoRA stays as fitted) for
// swag_rank * swag_every steps over further epochs of the training items (epoch e's order from stream
// (seed, VM_FIT_STREAM_SWAG + e), example i's stream (seed ^ VM_FIT_STREAM_SWAG, e << 32 | i)), and the
// routers' collect() runs after every swag_every-th step:
// swag_rank snapshots, so the deviation matrix holds them all and the diagonal averages them. Then
// finish() stores the moments and the adapter is written. With map_from the MAP loop is skipped
// (no steps, best_epoch 0, val_nll_init = the validation NLL of that MAP router) and the phase starts
// from the map adapter's W_r. The phase is not checkpointed: a fit
// resumed after its last MAP step (or killed during the phase) runs it again, bit for bit.
// Ensemble: its M members are MAP routers; each training forward uses one member drawn from the
// example's stream and updates only it (router_ensemble.c), so members train on disjoint random
// subsets of the examples from different starting noise.
#pragma once
#include <stdint.h>
#include "data/dataset.h"
#include "data/task.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "train/adapter.h"

#define VM_FIT_STREAM_SPLIT 0x73706c6974ull
#define VM_FIT_STREAM_SWAG 0x73776167ull

typedef struct vm_fit_opts {
    const char *kind;          // router kind (must have trainable parameters)
    int n_layers;              // 0 = default (last 5 MoE layers) unless layers_auto
    int layers[VM_ADAPTER_MAX_LAYERS];
    int layers_auto;           // rank by routing instability under embedding noise (method.md §5.4)
    int auto_count;            // layers picked by auto (default 5, or all MoE layers if fewer)
    float auto_gamma;          // noise scale gamma (default 0.01)
    int auto_prompts;          // training prompts used to rank (default 32)
    float beta;                // < 0: the kind's default
    float prior_sd;            // router-logit scale sigma_p: < 0 measured per layer on the training
                               // items (vm_fit_logit_scale; default), 0 scale-blind (1), > 0 given
    int samples;               // inference samples S (0: default 35)
    int hidden;                // head width H (0: kind default)
    int members;               // ensemble M (0: default 5)
    int epochs;                // default 3
    float lr;                  // peak learning rate (default 1e-3)
    int batch;                 // effective batch (default 16)
    uint64_t seed;
    float val_frac;            // default 0.1
    int patience;              // epochs without improvement before stopping (default 2)
    vm_task_mode mode;
    int tmpl;                  // chat template id for the task (VM_CHAT_NONE: raw text)
    const char *system;        // letter-mode system message (NULL: VM_TASK_SYSTEM)
    int max_tokens;            // task length limit (0: model context length)
    float wd;                  // default 0.01
    float warmup_frac;         // default 0.05
    int no_cache;              // recompute the hidden state below l0 at every step (benchmark)
    // A prefix computed by the caller and shared by several fits (vmoer demo): cache_h[i] = the
    // hidden states entering layer cache_l0 of the tree rows of dataset item i (NULL: compute it;
    // cache_rows[i] their count, checked). Used when cache_l0 is the fit's lowest trained layer;
    // borrowed, never freed. The routers below cache_l0 must be the ones the prefix was made with.
    const float *const *cache_h;
    const int *cache_rows;
    int cache_l0, cache_n;
    const char *ckpt_path;     // NULL: "<out>.ckpt"
    int ckpt_every;            // also checkpoint every N steps (0: at epoch ends only)
    int resume;                // continue from the checkpoint when it exists
    int64_t stop_after;        // stop (with a checkpoint) after this many steps in total (0: off)
    int keep_best_on_diverge;  // a non-finite loss or gradient ends training (before that update) and
                               // the adapter gets the best parameters so far (st->diverged_step set)
                               // instead of failing; for sweeps like the demo's, which report it
    int progress;              // -1: bar when stderr is a tty, else a line per epoch; 0: lines; 2: quiet
    // One fit over the ranks of the job (util/dist.h, `mpirun -np N vmoer fit`; docs/mpi.md): each
    // rank caches and runs its block of the items, the examples' gradients are exchanged and summed
    // in batch order, so the adapter is the same bytes for every N. Collective: every rank must call
    // vm_fit_run with the same options; rank 0 alone writes checkpoints, the adapter and progress.
    // 0 (default): this process alone, never entering MPI (the demo's workers fit concurrently).
    int distributed;
    // LoRA on attention Q/K/V (model/lora.h), trained jointly with the routers ("stage 1" task
    // adaptation, method.md §4): rank 0 = none; alpha <= 0 = rank (scale 1); layers as given, or
    // (n_lora 0) the routers' layers. Weight decay pulls the deltas towards 0 (the base model).
    int lora_rank;
    float lora_alpha;
    int n_lora;
    int lora_layers[VM_ADAPTER_MAX_LAYERS];
    // The collection phase of swag (above); ignored by the other kinds.
    int swag_rank;             // k deviation columns = snapshots collected (default 20)
    int swag_every;            // c: steps between snapshots; 0 = a tenth of an epoch, at least 1
    float swag_lr;             // constant SGD learning rate; 0 = lr / rms(g) of the routers' gradient
                               // on the phase's first batch (steps the size of AdamW's at the peak lr)
    float swag_scale;          // the sampler's covariance multiplier stored in the adapter (default 1)
    // swag only: the MAP phase's result read from this finished map adapter (same layers; the caller
    // vouches that it was fitted on the same items with the same seed and MAP settings) instead of
    // running the MAP loop again: the collection phase starts from its W_r. SWAG's first phase IS a
    // map fit (training forward, backward, AdamW and validation schedule are map's), so a run that
    // already has the map row (vmoer demo) pays the MAP epochs once. NULL: run the MAP phase.
    const char *map_from;
} vm_fit_opts;

typedef struct vm_fit_stats {
    int n_items, n_skipped, n_train, n_val;
    int n_layers, layers[VM_ADAPTER_MAX_LAYERS], l0;
    int64_t steps, total_steps, tokens;
    int epochs_run, best_epoch, stopped_early, interrupted, resumed;
    int64_t diverged_step;                    // keep_best_on_diverge: the step that diverged (0: none)
    double train_ce_first, train_ce_last;     // mean answer CE over the first/last epoch run
    double val_nll_init, val_nll_best, val_acc_init, val_acc_best;
    double seconds, tokens_per_s;             // training forward/backward only (no validation)
    double jaccard[VM_ADAPTER_MAX_LAYERS];    // --layers auto: per layer (NaN: not MoE / not measured)
    float prior_sd[VM_ADAPTER_MAX_LAYERS];    // sigma_p of each trained layer (st->layers order)
    int swag_snapshots, swag_every;           // collection phase (0: none)
    int64_t swag_steps;
    float swag_lr;
    double swag_val_nll, swag_val_acc;        // validation of the final (sampled) routers
} vm_fit_stats;

void vm_fit_opts_default(vm_fit_opts *o);

// Seeded split by item index: order (n) receives a permutation of 0..n-1 whose first *n_val
// entries are the validation items. n_val = round(val_frac * n), at least 1 when val_frac > 0 and
// n >= 2, and at most n - 1.
int vm_fit_split(int n, float val_frac, uint64_t seed, int *order, int *n_val);
// The last min(max, #MoE) MoE layers, ascending. Returns the count (0 for a dense model).
int vm_fit_default_layers(const vm_model *m, int max, int *layers);
// Mean Jaccard index per layer between the selected sets of a clean and a noisy inference pass
// (embedding noise N(0, (gamma * Lbar)^2 I), Lbar = mean L2 norm of the prompts' token embeddings)
// over n prompts; jacc (n_layer) gets NaN for dense layers. Uses the model's current routers.
int vm_fit_layer_stability(const vm_model *m, const vm_task_input *ins, int n, float gamma,
                           uint64_t seed, double *jacc);

// sd[i] = sigma_p of layers[i]: the mean over the tokens of the n prompts' first sequences of the
// SD over the N experts of the frozen router's logits l_det = W_r u (docs/method.md §3.0), with the
// model's current routers (vm_fit_run installs deterministic ones in the trained layers first).
// Returns 0, or -1 when a layer's logits have no spread.
int vm_fit_logit_scale(const vm_model *m, const vm_task_input *ins, int n, const int *layers, int nl,
                       float *sd);

// The whole fit: builds the task, splits, picks layers, installs fresh routers in m, trains and
// writes the adapter to out_path (the best validation parameters). m keeps the trained routers.
// st may be NULL. Returns 0 (also when stopped by stop_after: st->interrupted = 1, no adapter), -1.
int vm_fit_run(vm_model *m, const vm_tokenizer *tok, const vm_dataset *ds, const vm_fit_opts *o,
               const char *out_path, vm_fit_stats *st);

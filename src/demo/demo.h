// `vmoer demo` as a library: the whole VMoER experiment on the story-cloze task (data/cloze/) with
// the bundled MoE model, in one call, as a decisive test (docs/method.md §5, docs/demo.md).
//
// Protocol (nothing is chosen on test):
//  1. Items: every item of test.jsonl and of each OOD set (n_test, n_ood), the first n_train items
//     of train.jsonl (each fit holds val_frac of them out for early stopping, split by its seed) and
//     n_val items of validation.jsonl (temperature scaling and the choice of beta).
//  2. Layers: the n_layers MoE layers whose routing is least stable under embedding noise on the
//     training prompts (`--layers auto`, as the paper), the same for every method.
//  3. The frozen prefix: the hidden state entering the lowest chosen layer, for every row of every
//     item's tree (context once, choices as its children), computed once and shared by every
//     method, seed, fit and pass.
//  4. Methods ("rows") on the chosen layers: deterministic (the pretrained router), map (W_r
//     fine-tuned), temp-sample, mcdropout, vglr-mf, vglr-fc, vtsr; each with n_seeds seeds (fit and
//     inference streams); deterministic has one. beta of each Bayesian kind is chosen from a grid by
//     the fit's held-out NLL with the first seed; the other seeds use the chosen value. Every row
//     also appears temperature-scaled ("+ts": one T per seed fitted on validation.jsonl).
//  5. Every (row, seed) scores validation, test and the OOD sets in one model pass per item (the
//     method as defined), measures routing stability at gamma = 0.01 on n_stab test prompts (clean
//     and noisy pass with independent router streams), FLOPs per question.
//  6. Statistics: per row, every metric is the mean over seeds with a 95 % paired bootstrap interval
//     (eval/paired.h) of its difference from the deterministic row (raw rows) or from the
//     temperature-scaled deterministic row (+ts rows); "better" only when that interval excludes 0.
// Outputs (outdir, written as a set): table.md, table.json (no time measurements: the same seed gives
// the same bytes for any thread count), timing.json, report.html, adapters/.
#pragma once
#include <stdint.h>
#include "data/task.h"

#define VM_DEMO_N_OOD 2
#define VM_DEMO_MAX_SEEDS 8
#define VM_DEMO_MAX_GRID 4

typedef struct vm_demo_opts {
    const char *model_path;   // default "data/models/stories-moe.gguf"
    const char *data_dir;     // the cloze folder (default "data/cloze")
    const char *outdir;       // default "out/demo"
    vm_task_mode mode;        // default VM_TASK_PMI
    int n_train;              // train.jsonl items for the fits (their early-stopping part included)
    float val_frac;           // fraction of those held out for early stopping
    int n_val, n_test, n_ood; // validation.jsonl, test.jsonl, each OOD set (0 = every item)
    int n_layers;             // Bayesian / fitted layers
    int layers_auto;          // 1: the least stable layers (default); 0: the last n_layers
    int n_seeds;              // fit and inference seeds per method (default 3)
    uint64_t seed;            // the first seed; seed k is seed + k
    int epochs, epochs_map;   // Bayesian fits, MAP fit
    float lr, lr_map;         // peak learning rates
    int batch, patience;
    int samples;              // S of vglr / mcdropout at inference
    int n_beta;  float beta[VM_DEMO_MAX_GRID];     // VGLR beta grid (the ELBO is 1)
    int n_beta_t; float beta_t[VM_DEMO_MAX_GRID];  // VTSR beta_T grid
    int n_stab;               // test prompts for the Jaccard stability
    int swag_rank, swag_every;  // swag's collection phase: snapshots and steps between them
    int64_t model_tokens;     // predictions of the model's specialisation read-outs (eval/experts.h;
                              // on <data_dir>/validation-stories.txt; 0 = the whole text)
    int boot, bins;           // bootstrap resamples and ECE bins
    int verbose;              // progress lines on stderr
    int distributed;          // 1: the jobs are split over the ranks of an MPI job (util/dist.h; the
                              // same outputs, written by rank 0); 0 (default): this process runs all
} vm_demo_opts;

void vm_demo_opts_default(vm_demo_opts *o);
// The --quick sizes (seconds; for tests).
void vm_demo_opts_quick(vm_demo_opts *o);

// Runs everything and writes the outputs. *seconds (may be NULL) gets the wall time. 0 or -1.
int vm_demo_run(const vm_demo_opts *o, double *seconds);

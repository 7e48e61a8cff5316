// `vmoer demo` as a library (issue 6, item 4): the whole VMoER experiment on the story-cloze task
// (data/cloze/) with a small MoE model, in one call.
//
// Pipeline (every fit uses the first n_train items of train.jsonl and splits its own validation
// items off them, vm_fit_split with val_frac; early stopping on that validation NLL):
//  1. MAP: fine-tune W_r of the chosen layers (the last n_layers MoE layers). The MAP W_r is then
//     written into the model's router matrix (ffn_gate_inp) of those layers: the MAP model is the
//     base of everything after. Decision: method.md §3 defines the Bayesian heads around
//     l_det = W_r u with W_r frozen; we take W_r = W_MAP there, so VGLR/VTSR refine the task-adapted
//     router instead of the pretrained one, and "deterministic" is the MAP model with the pretrained
//     Top-K rule (the fair baseline: the same task adaptation without Bayesian routing).
//  2. Methods on the chosen layers (the same layers for every method; the other layers stay
//     deterministic): deterministic, temperature scaling (one T fitted by NLL on the first n_val
//     items of validation.jsonl, never on test), temp-sample (T = 0.3), mcdropout (p = 0.05),
//     vglr-mf, vglr-fc, vtsr (each fitted as in 1, starting from the MAP model).
//  3. Each method scores the first n_test items of test.jsonl and the first n_ood items of
//     ood-tinyshakespeare.jsonl and ood-wikitext2.jsonl with vm_eval_run (sampled methods: `passes`
//     passes, p_bar and MI from them); metrics from eval/metrics.h; routing stability
//     (vm_stability_run, gamma = 0.01, first n_stab test prompts); FLOPs from vm_cost_flops.
// Scoring mode: opts.mode (default pmi, data/task.h: softmax over ll(choice | BOS + passage) -
// ll(choice | BOS) is the answer distribution for NLL/ECE and the fit loss).
// Every random stream is seeded from opts.seed, so a seed and thread count give the same numbers;
// the table (table.md, table.json) holds no time measurement, so it is the same byte for byte.
// Wall times go to timing.json and the stderr/stdout lines only.
#pragma once
#include <stdint.h>
#include "data/task.h"

#define VM_DEMO_MAX_METHODS 8
#define VM_DEMO_N_OOD 2
#define VM_DEMO_N_SCORES 6   // OOD scores: max-prob, entropy, MI, ILV, gate entropy, T

typedef struct vm_demo_opts {
    const char *model_path;   // default "data/models/stories-moe.gguf"
    const char *data_dir;     // the cloze folder (default "data/cloze")
    const char *outdir;       // default "out/demo"
    vm_task_mode mode;        // default VM_TASK_PMI
    int n_train;              // train.jsonl items for the fits (their validation split included)
    float val_frac;           // fraction of those held out for early stopping
    int n_val, n_test, n_ood; // validation.jsonl (temperature scaling), test.jsonl, each OOD set
    int n_layers;             // the last n_layers MoE layers are fitted / made Bayesian
    int epochs_map, epochs;   // MAP fit, Bayesian fits
    float lr_map, lr;         // peak learning rates
    int batch, patience;
    int passes;               // model passes per question for sampled methods
    int samples;              // S of vglr / mcdropout at inference
    int n_stab;               // test prompts for the Jaccard stability
    int boot, bins;           // ECE bootstrap replicates and bins
    uint64_t seed;
    int verbose;              // 1: one progress line per stage on stderr
} vm_demo_opts;

// Defaults (the < 5 minute run on 2 cores) and the --quick size (seconds; for tests).
void vm_demo_opts_default(vm_demo_opts *o);
void vm_demo_opts_quick(vm_demo_opts *o);

typedef struct vm_demo_row {
    char name[32];
    int n;                                    // test items scored
    double acc, nll, ece, ece_lo, ece_hi, mce, brier;
    double ood_acc[VM_DEMO_N_OOD];
    double auroc[VM_DEMO_N_OOD][VM_DEMO_N_SCORES];   // NaN: the method has no such score
    double jaccard;          // mean Jaccard at gamma 0.01 over the chosen layers (NaN: not measured)
    double jaccard_all;      // ... over every MoE layer
    double flops_ratio;      // FLOPs per question / the deterministic model's (passes included)
    int passes;
    double temperature;      // temperature scaling's T (NaN otherwise)
    double sec_fit, sec_eval;// wall time (not in the table)
} vm_demo_row;

typedef struct vm_demo_result {
    int n_rows;
    vm_demo_row rows[VM_DEMO_MAX_METHODS];
    int n_layers, layers[8];
    char ood_names[VM_DEMO_N_OOD][32];
    double map_val_nll_init, map_val_nll_best, map_val_acc_init, map_val_acc_best;
    double seconds;          // the whole run
} vm_demo_result;

// Names of the OOD scores, in auroc[][k] order: "maxprob", "entropy", "mi", "ilv", "gate_entropy", "T".
const char *vm_demo_score_name(int k);

// Runs everything, writes table.md, table.json, timing.json, report.html and methods/<name>/ (the
// `vmoer eval` outputs per method) into opts.outdir. res may be NULL. 0 or -1 (vm_err set).
int vm_demo_run(const vm_demo_opts *o, vm_demo_result *res);

// The table (markdown) and the plain statement of where VMoER improves on deterministic, computed
// from the numbers; malloc'd strings (NULL on allocation failure).
char *vm_demo_table_md(const vm_demo_opts *o, const vm_demo_result *r);
char *vm_demo_verdict(const vm_demo_result *r);

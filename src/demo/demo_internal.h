// Shared between demo.c (the run) and demo_out.c (statistics, table, report); not an interface.
#pragma once
#include "demo/demo.h"
#include "data/dataset.h"
#include "eval/eval.h"
#include "eval/experts.h"
#include "eval/paired.h"
#include "model/model.h"
#include "router/router.h"
#include "tokenizer/tokenizer.h"
#include "util/err.h"
#include "report/html.h"

#include <stddef.h>

#define DM_N_METHODS 8
#define DM_MAX_OOD 4
#define DM_MAX_WORKERS 8
#define DM_MAX_LAYERS 8
// sets: the training items (fits only), validation, test, then the OOD sets
enum { DM_SET_TRAIN = 0, DM_SET_VAL = 1, DM_SET_TEST = 2, DM_SET_OOD = 3 };
#define DM_MAX_SETS (DM_SET_OOD + DM_MAX_OOD)
#define DM_N_SETS(d) (DM_SET_OOD + (d)->n_ood)

typedef struct dm_method {
    const char *name, *kind;
    int fit;       // fitted by `vmoer fit` (an adapter per seed)
    int seeded;    // n_seeds runs (fit and/or inference streams); else one
} dm_method;
extern const dm_method dm_methods[DM_N_METHODS];
// A fitted kind with a regulariser (vglr, vtsr): its beta is chosen from a grid. map and swag
// (whose first phase is map's fit) have none.
static inline int dm_gridded(const char *kind) { return vm_router_kind_beta(kind) > 0.0f; }

typedef struct dm_item {
    vm_task_input in;   // sequences and their tree
    float *h;           // (tree rows, D) hidden state entering l0 (the frozen prefix)
} dm_item;

typedef struct dm_set {
    char name[64];
    vm_dataset ds;
    dm_item *it;        // the built items (n)
    int *idx;           // (n) their index in ds
    int n, n_skipped;
    char skip_msg[512];
} dm_set;

// One item's outcome under one (method, seed).
typedef struct dm_res {
    int C, y;
    double p[VM_MCQ_MAX_CHOICES];     // answer distribution
    double unc[VM_EVAL_UNC_COUNT];    // scores (eval.h order; higher = more uncertain)
    float lay[DM_MAX_LAYERS][3];      // per chosen layer: ILV, ILV deviation, gate entropy
} dm_res;
// entropy and -max p from p (the router read-outs are left as they are).
void dm_res_derive(dm_res *r);

typedef struct dm_fit {
    int done, improved, best_epoch, epochs_run;
    long long diverged_step;   // 0, or the step at which training diverged (the best so far kept)
    float beta;
    double val_nll_init, val_nll_best, val_acc_init, val_acc_best, seconds;
    float prior_sd[DM_MAX_LAYERS];
    char path[4400];
} dm_fit;

typedef struct dm_run {
    int seed_idx, done;
    dm_fit fit;
    dm_res *res[DM_MAX_SETS];         // per set (NULL for train)
    dm_res *ts[DM_MAX_SETS];          // temperature-scaled copies
    double T;                         // temperature fitted on validation
    vm_stability stab;                // gamma 0.01 on the first n_stab test prompts
    double flops_ratio;
    long long params_extra;
    double sec_eval;
} dm_run;

typedef struct dm_worker {
    vm_model *m;
    vm_tokenizer *tok;
    vm_task task;
    vm_scorer *sc;      // tree scorer from l0 up
} dm_worker;

typedef struct dm_job {
    int method, seed_idx;
    int grid;           // >= 0: a beta-grid fit (seed 0), nothing else
    int reuse;          // >= 0: seed 0 of a gridded kind reuses grid fit `reuse`
    double units;
    int rank;           // the rank that runs it (distributed; else 0)
    int worker, rc;
    char err[1024];
} dm_job;

typedef struct dm {
    const vm_demo_opts *o;
    dm_worker wk[DM_MAX_WORKERS];
    int n_workers, n_layer;
    int n_ood;
    char ood_file[DM_MAX_OOD][256];
    dm_set sets[DM_MAX_SETS];
    int layers[DM_MAX_LAYERS], nl, l0;
    double jac_det[64];                 // per block: the deterministic model's Jaccard used to pick layers
    float **train_h;                    // (train ds.n) prefix per dataset item (NULL: skipped)
    int *train_rows;                    // (train ds.n) its rows
    unsigned char ro_layers[64];        // per block: 1 for the chosen layers (read-outs averaged there)
    int n_seeds[DM_N_METHODS];
    dm_run runs[DM_N_METHODS][VM_DEMO_MAX_SEEDS];
    dm_fit grid[DM_N_METHODS][VM_DEMO_MAX_GRID];
    int beta_idx[DM_N_METHODS];
    float beta_chosen[DM_N_METHODS];
    vm_expert_stats mstats;             // does routing matter on this model (table.json "model")
    int has_mstats;
    char mstats_text[4200], mstats_skip[512];
    char stage_dir[4200];               // outputs are written here, then renamed to outdir
    struct vm_adir *adir;
    double t0, units_done, units_total, busy, seconds;
    int dist, rank, size;               // distributed over the job's ranks (demo_dist.c); else 0, 0, 1
} dm;

void dm_stage(dm *d, const char *fmt, ...) VM_PRINTF(2, 3);
int dm_temperature(dm *d, dm_run *run);   // T on validation, and the scaled copies of every set
int dm_outputs(dm *d);                    // statistics, table.md, table.json, timing.json, report.html
// The output folder as a set: written into a fresh sibling folder, which replaces outdir at the
// end (the previous outdir stays whole until then).
int dm_stage_dir_open(dm *d);
int dm_stage_dir_commit(dm *d);
void dm_stage_dir_abort(dm *d);
// A fit's adapter path in the stage folder (grid >= 0: a beta-grid fit with seed 0).
void dm_adapter_path(const dm *d, char *buf, size_t n, const char *kind, int seed_idx, int grid);

// ---- ranks of one job (demo_dist.c)
// Opens the stage folder: rank 0 the output's, the other ranks a private one for their adapters.
int dm_dist_begin(dm *d);
// Refuses ranks whose model, data sets or options differ (-1 on every rank, naming the rank).
int dm_dist_same(dm *d);
// jobs[].rank: largest first, each to the least loaded rank; the same on every rank.
void dm_dist_assign(dm *d, dm_job *jobs, int n);
// After a phase (rc: this rank's outcome): every job's result and adapter on every rank, or -1 on
// every rank naming the first failing one.
int dm_dist_gather(dm *d, dm_job *jobs, int n, int rc);
// Removes another rank's private folder; rank 0's output folder is aborted on failure (rc != 0).
void dm_dist_end(dm *d, int rc);

// ---- statistics (demo_out.c) and their presentation (demo_out.c, demo_report.c)
#define NSC VM_EVAL_UNC_COUNT
// Statistics of a row, in this order: the test-set metrics, the stability, then per OOD set the
// accuracy on its items and per score the AUROC against the test items and the same AUROC "vs":
// for a baseline row (deterministic, deterministic+ts) the vs-statistic is its max-prob AUROC, so
// every method's score is compared with the deterministic model's confidence (the paper's baseline).
enum { ST_ACC, ST_NLL, ST_ECE, ST_MCE, ST_BRIER, ST_JAC, ST_HEAD };
#define ST_OOD(d, s) (ST_HEAD + (s) * (1 + 2 * NSC))
#define ST_OODACC(d, s) ST_OOD(d, s)
#define ST_AUROC(d, s, k) (ST_OOD(d, s) + 1 + 2 * (k))
#define ST_AUROC_VS(d, s, k) (ST_AUROC(d, s, k) + 1)
#define N_STATS(d) (ST_HEAD + (d)->n_ood * (1 + 2 * NSC))

static inline int row_method(int row) { return row / 2; }   // rows: method m raw (2m), +ts (2m + 1)
static inline int row_ts(int row) { return row % 2; }

typedef struct out_ctx {
    dm *d;
    int n_rows, n_stats;
    vm_pstat *ps;           // (n_rows, n_stats)
    int *base_of;
    char names[2 * DM_N_METHODS][48];
} out_ctx;

static inline const vm_pstat *PS(const out_ctx *c, int row, int st) { return &c->ps[(size_t)row * c->n_stats + st]; }

const char *num(char *b, size_t n, double x, int digits);    // "n/a" for non-finite
const char *snum(char *b, size_t n, double x, int digits);   // signed
int verdict_of(const vm_pstat *p, int higher_better);       // 1 better, -1 worse, 0 no difference, 2 n/a
const char *vword(int v);
const char *score_label(int k);
int declared_scores(const char *kind, int *k);              // the OOD scores a method is judged by
int seeds_improved(const dm *d, int m);
int seeds_diverged(const dm *d, int m);   // fits stopped by a non-finite loss (best so far kept)
void mean_over_seeds(const dm *d, int m, double (*f)(const dm_run *), double *out);
double run_flops(const dm_run *r);
double run_T(const dm_run *r);
void table_md_setup(const out_ctx *c, vm_sbuf *b);
int dm_report(const out_ctx *c, const char *verdict);      // report.html

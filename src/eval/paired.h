// Paired bootstrap of metric differences between methods, over items and fit seeds
// (docs/method.md §5.5): every method ("row") is run with several seeds on the same items; a
// statistic of a row is the mean over its seeds of a metric on the items; its interval and the
// interval of its difference from a baseline row come from resampling the ITEMS (the same resample
// for every row and seed: paired), the mean over seeds being taken inside each resample.
//
// Items fall into strata resampled separately (e.g. the test set, each OOD set, the stability
// prompts), so an AUROC always sees both sides. A resample is a vector of multiplicities w per
// stratum (n draws with replacement: w_i = how often item i was drawn); metrics are computed from
// weighted sums, which equal the metric of the materialised resample (tests/test_paired.c checks
// this against metrics.c for every kind).
#pragma once
#include <stdint.h>

// One reported statistic of one row.
typedef struct vm_pstat {
    double point;              // mean over the row's seeds, on all items
    double lo, hi;             // percentile interval of that mean over the resamples
    double diff;               // point - the baseline row's point
    double diff_lo, diff_hi;   // percentile interval of the paired difference (0, 0 for a baseline)
    double seed_min, seed_max; // the per-seed values on all items (spread over seeds)
    int n_valid;               // resamples where the statistic was finite
} vm_pstat;

// Computes all n_stats statistics of (row, seed) under the multiplicities w[stratum][item] (w NULL:
// every item once). NaN where a statistic does not apply to the row. Returns 0 or -1.
typedef int (*vm_paired_fn)(void *ud, int row, int seed, const double *const *w, double *out);

typedef struct vm_paired_opts {
    int n_rows, n_stats;
    const int *base_of;        // (n_rows) each row's baseline row (itself for a baseline)
    const int *n_seeds;        // (n_rows) seeds of each row (>= 1)
    int n_strata;
    const int *stratum_n;      // (n_strata) items per stratum (>= 1)
    int B;                     // resamples (0: points only)
    double level;              // e.g. 0.95
    uint64_t seed;             // resampling stream
} vm_paired_opts;

// out (n_rows * n_stats), row-major. Rows run in parallel over OpenMP threads; the resamples are
// drawn in a fixed order, so the result does not depend on the thread count.
int vm_paired_bootstrap(const vm_paired_opts *o, vm_paired_fn fn, void *ud, vm_pstat *out);

// ---- weighted metrics (w NULL = all ones); each equals the plain metric of the resample
// Per-item quantities of a classifier: conf = max prob, correct = 1[argmax = y], and the item's
// NLL and Brier terms; bin = min(floor(conf * M), M - 1).
typedef struct vm_pitem { double conf, correct, nll, brier; int bin; } vm_pitem;
void vm_pitem_fill(vm_pitem *it, int C, const double *p, int y, int M);

double vm_pw_mean_acc(int n, const vm_pitem *it, const double *w);
double vm_pw_mean_nll(int n, const vm_pitem *it, const double *w);
double vm_pw_mean_brier(int n, const vm_pitem *it, const double *w);
// ECE and MCE with M equal-width bins (metrics.h conventions; MCE over non-empty bins).
double vm_pw_ece(int n, const vm_pitem *it, const double *w, int M);
double vm_pw_mce(int n, const vm_pitem *it, const double *w, int M);
// Weighted mean of x.
double vm_pw_mean(int n, const double *x, const double *w);

// AUROC (OOD positive, higher score = more OOD, ties 1/2) of weighted in- and out-of-distribution
// scores, from a pooled order computed once (vm_pw_auroc_prepare); O(n_in + n_out) per call.
// NaN scores make the order invalid (prepare returns -1).
typedef struct vm_pw_auroc { int n_in, n_out; int *order; int *group; } vm_pw_auroc;   // order: pooled
int vm_pw_auroc_prepare(vm_pw_auroc *a, int n_in, const double *s_in, int n_out, const double *s_out);
double vm_pw_auroc_eval(const vm_pw_auroc *a, const double *w_in, const double *w_out);
void vm_pw_auroc_free(vm_pw_auroc *a);

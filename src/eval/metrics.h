// Evaluation metrics (method.md §5.2): accuracy, NLL, Brier, calibration errors, OOD detection,
// selective prediction, bootstrap intervals and temperature scaling. Pure functions on plain arrays.
//
// Conventions shared by every function here:
// - Classification inputs: n examples, C classes, p (n,C) row-major probabilities, each in [0,1]
//   (rows are not renormalised; they should sum to 1), y (n) labels in [0,C). All in double.
// - The prediction is the argmax of a row; equal maxima go to the lowest class index (numpy argmax).
//   The confidence c is that row maximum.
// - Every function returns 0, or -1 with vm_err() set: n <= 0 ("n = 0 -> error"), C < 1, M < 1,
//   NULL arrays, a label out of range, a probability outside [0,1] or NaN, a non-finite score/logit.
// - A metric that is mathematically undefined on valid input (e.g. AUROC with no OOD examples) is
//   not an error: it returns 0 and writes NaN. Callers must check isnan().
#pragma once
#include <stdint.h>

// ---------------------------------------------------------------------------------------------
// Proper scores and accuracy

// NLL clamps p_y from below at this value before the log, so a zero probability on the true class
// costs -ln(1e-12) = 27.631 nats instead of +inf. Nothing else is clamped or renormalised.
#define VM_METRIC_NLL_CLAMP 1e-12

int vm_metric_acc(int n, int C, const double *p, const int *y, double *out);  // mean 1[argmax = y]
// NLL = mean_i -ln(max(p[i,y_i], VM_METRIC_NLL_CLAMP)), in nats.
int vm_metric_nll(int n, int C, const double *p, const int *y, double *out);
// Brier = mean_i sum_k (p[i,k] - 1[k = y_i])^2: summed over classes, so in [0, 2]
// (for C = 2 this is twice scikit-learn's binary brier_score_loss).
int vm_metric_brier(int n, int C, const double *p, const int *y, double *out);
// Per-example confidence (row max) and correctness (argmax = y); either output may be NULL.
int vm_metric_maxprob(int n, int C, const double *p, const int *y, double *conf, int *correct);

// ---------------------------------------------------------------------------------------------
// Calibration. Equal-width bins: bin(c) = min(floor(c*M), M-1), i.e. [k/M,(k+1)/M) with the last
// bin closed, so c = 0 goes to bin 0 and c = 1 to bin M-1. (torchmetrics bucketizes against
// linspace(0,1,M+1) instead; the two agree except where c*M rounds across an integer.)
// acc_m = fraction correct in bin m, conf_m = mean confidence in bin m, n_m = its count.

typedef struct vm_ece_bin {
    int count;    // n_m; 0 = empty bin, and then acc = conf = 0
    double acc;   // acc_m
    double conf;  // conf_m
} vm_ece_bin;

// Reliability-diagram data: bins (M) filled for bin edges k/M.
int vm_ece_reliability(int n, int C, const double *p, const int *y, int M, vm_ece_bin *bins);
// The bins as three plain arrays (M each), the form report/ takes.
int vm_ece_bins_split(int M, const vm_ece_bin *bins, int *count, double *acc, double *conf);
// ECE = sum_m (n_m/n) |acc_m - conf_m|. method.md default M = 10.
int vm_ece(int n, int C, const double *p, const int *y, int M, double *out);
// MCE = max over non-empty bins of |acc_m - conf_m|.
int vm_ece_mce(int n, int C, const double *p, const int *y, int M, double *out);
// Signed ECE = sum_m (n_m/n)(acc_m - conf_m): negative = over-confident, positive = under-confident.
int vm_ece_signed(int n, int C, const double *p, const int *y, int M, double *out);
// Adaptive (equal-mass) ECE, the sorted equal-count convention of Nixon et al. 2019 ("ACE" with
// top-label confidence): sort examples by c ascending (stable: equal c keep example order), bin m
// holds sorted positions [floor(m*n/M), floor((m+1)*n/M)); then ECE over those bins as above.
// When n < M some bins are empty and contribute nothing.
int vm_ece_adaptive(int n, int C, const double *p, const int *y, int M, double *out);
// Classwise ECE (Kull et al. 2019): for each class k, the equal-width ECE of the one-vs-rest
// problem (confidence p[i,k], outcome 1[y_i = k], all n examples); the mean over the C classes.
int vm_ece_classwise(int n, int C, const double *p, const int *y, int M, double *out);

// ---------------------------------------------------------------------------------------------
// OOD detection. s_in (n_in) in-distribution scores, s_out (n_out) OOD scores; OOD is the positive
// class and a higher score means "more OOD" (use -max-prob, not max-prob). n_in + n_out = 0 is an
// error; one empty side gives NaN (AUPR with n_in = 0 is 1).

// AUROC = P(s_out > s_in) + 1/2 P(s_out = s_in) over all pairs (Mann-Whitney U / (n_in n_out)).
int vm_metric_auroc(int n_in, const double *s_in, int n_out, const double *s_out, double *out);
// AUPR = average precision as scikit-learn's average_precision_score: thresholds t at the distinct
// scores, descending; predict OOD when s >= t; AP = sum_t (R_t - R_prev) P_t with R_prev(start) = 0.
int vm_metric_aupr(int n_in, const double *s_in, int n_out, const double *s_out, double *out);
// FPR@95: thresholds t at the distinct scores; predict OOD when s >= t; TPR(t) = #{s_out >= t}/n_out,
// FPR(t) = #{s_in >= t}/n_in. Result = FPR at the largest t with TPR(t) >= 0.95 (exact rational
// test 20*tp >= 19*n_out), i.e. the lowest FPR of any threshold reaching 95% TPR. Tied scores are
// never split: a threshold takes every example with that score (as roc_curve's fpr[argmax(tpr>=.95)]).
int vm_metric_fpr95(int n_in, const double *s_in, int n_out, const double *s_out, double *out);
// ROC points for plots, like scikit-learn roc_curve(drop_intermediate=False): point 0 is
// (0,0) at thr = +INFINITY, then one point per distinct score in descending order, ending at (1,1).
// fpr, tpr, thr need room for n_in + n_out + 1; *n_points receives the count used.
// With n_in = 0 (n_out = 0) the fpr (tpr) column is NaN.
int vm_metric_roc(int n_in, const double *s_in, int n_out, const double *s_out,
                  double *fpr, double *tpr, double *thr, int *n_points);

// ---------------------------------------------------------------------------------------------
// Selective prediction. conf (n): higher = keep first; loss (n): per-example loss (0/1 error of
// the argmax for the usual AURC; any finite loss works). Sort by conf descending; tie groups are
// kept whole: with group ends k_1 < k_2 < ... < k_G = n, coverage_j = k_j/n and
// risk_j = (sum of loss over the k_j most confident) / k_j.
// AURC = sum_j ((k_j - k_{j-1})/n) risk_j, i.e. the mean over k = 1..n of the selective risk at
// coverage k/n, where a k inside a tie group takes the risk of the whole group. Without ties this
// is exactly Geifman et al.'s mean_{k=1..n} risk(k/n).
int vm_metric_aurc(int n, const double *conf, const double *loss, double *out);
// The curve: coverage and risk need room for n; *n_points receives G (one point per tie group).
int vm_metric_risk_coverage(int n, const double *conf, const double *loss,
                            double *coverage, double *risk, int *n_points);

// ---------------------------------------------------------------------------------------------
// Bootstrap percentile intervals for any scalar metric.
// The callback computes the metric on a resample: idx (n) are indices into the caller's data
// (with repeats). It returns 0 or -1 (error: the bootstrap stops and fails); *out may be NaN, and
// NaN replicates are skipped (n_valid says how many were kept).
typedef int (*vm_metric_fn)(void *ctx, int n, const int *idx, double *out);

typedef struct vm_boot {
    double point;  // metric on the full data (idx = 0..n-1)
    double lo, hi; // percentile interval: numpy-style linear quantiles (1-level)/2 and (1+level)/2
    int n_valid;   // finite replicates used
} vm_boot;

// Resampling: rng = vm_rng_seed(seed); for b in 0..B-1, for i in 0..n-1:
// idx[i] = (int)(vm_rng_uniform(&rng) * n). level in (0,1), e.g. 0.95. Fails if n_valid = 0.
int vm_metric_bootstrap(vm_metric_fn fn, void *ctx, int n, int B, double level, uint64_t seed,
                        vm_boot *out);

// Ready-made callbacks: ctx = vm_metric_cls_ctx (resamples examples) or vm_metric_ood_ctx
// (idx runs over n_in + n_out: idx < n_in is in-distribution example idx, else OOD idx - n_in;
// not stratified, so a resample with one side empty gives NaN and is skipped).
typedef enum vm_metric_kind {
    VM_METRIC_ACC, VM_METRIC_NLL, VM_METRIC_BRIER,
    VM_METRIC_ECE, VM_METRIC_MCE, VM_METRIC_ECE_SIGNED, VM_METRIC_ECE_ADAPTIVE, VM_METRIC_ECE_CLASSWISE,
    VM_METRIC_AUROC, VM_METRIC_AUPR, VM_METRIC_FPR95,
} vm_metric_kind;

typedef struct vm_metric_cls_ctx {
    vm_metric_kind kind;  // ACC .. ECE_CLASSWISE
    int C, M;             // M: bins for ECE kinds
    const double *p;      // (n,C)
    const int *y;         // (n)
} vm_metric_cls_ctx;
int vm_metric_cls_fn(void *ctx, int n, const int *idx, double *out);

typedef struct vm_metric_ood_ctx {
    vm_metric_kind kind;  // AUROC, AUPR or FPR95
    int n_in, n_out;
    const double *s_in, *s_out;
} vm_metric_ood_ctx;
int vm_metric_ood_fn(void *ctx, int n, const int *idx, double *out);

// One entry point for the classification kinds (ACC .. ECE_CLASSWISE); M is ignored by the first three.
int vm_metric_cls(vm_metric_kind kind, int n, int C, const double *p, const int *y, int M, double *out);

// ---------------------------------------------------------------------------------------------
// Temperature scaling (Guo et al. 2017): one scalar T > 0, p = softmax(logits / T).
// vm_temp_fit minimises mean NLL of softmax(z/T) over T in [VM_TEMP_MIN, VM_TEMP_MAX]. NLL is convex
// in beta = 1/T, so it solves dNLL/dbeta = mean_i (E_{softmax(beta z_i)}[z] - z_{i,y_i}) = 0 by
// Newton's method safeguarded by a bisection bracket (geometric midpoint); when the derivative
// has no sign change in the range the boundary is returned (e.g. T = VM_TEMP_MIN for perfectly
// separable data whose NLL keeps falling as T -> 0).
#define VM_TEMP_MIN 0.01
#define VM_TEMP_MAX 100.0
int vm_temp_fit(int n, int C, const double *logits, const int *y, double *T);
// p_out (n,C) = softmax(logits / T), computed stably (max subtracted). p_out may alias logits.
int vm_temp_apply(int n, int C, const double *logits, double T, double *p_out);
// Mean NLL of softmax(logits / T) from log-softmax (exact, no clamp).
int vm_temp_nll(int n, int C, const double *logits, const int *y, double T, double *out);

// Accuracy, proper scores and calibration errors (definitions in eval/metrics.h, method.md §5.2).
#include "eval/metrics.h"
#include "eval/metrics_internal.h"

#include <math.h>
#include <stdlib.h>

#include "util/err.h"

int vm_metric_check_cls(const char *fn, int n, int C, const double *p, const int *y) {
    if (n <= 0) return vm_err("metrics: no examples (n = %d) (%s)", n, fn);
    if (C < 1) return vm_err("metrics: C = %d classes (%s)", C, fn);
    if (!p || !y) return vm_err("metrics: NULL probabilities or labels (%s)", fn);
    for (int i = 0; i < n; i++) {
        if (y[i] < 0 || y[i] >= C)
            return vm_err("metrics: label %d out of range [0,%d) at example %d (%s)", y[i], C, i, fn);
        const double *row = p + (size_t)i * C;
        for (int k = 0; k < C; k++)
            if (!(row[k] >= 0.0 && row[k] <= 1.0))  // also rejects NaN
                return vm_err("metrics: probability %g outside [0,1] at (%d,%d) (%s)", row[k], i, k, fn);
    }
    return 0;
}

static int check_bins(const char *fn, int M) {
    if (M < 1) return vm_err("metrics: M = %d bins (%s)", M, fn);
    return 0;
}

// Prediction = first maximum, so equal rows are reproducible (numpy argmax).
static inline int argmax_row(const double *row, int C, double *maxp) {
    int best = 0;
    for (int k = 1; k < C; k++)
        if (row[k] > row[best]) best = k;
    *maxp = row[best];
    return best;
}

static inline int bin_of(double c, int M) {
    int b = (int)floor(c * M);
    return b < M ? b : M - 1;  // c = 1 lands in the closed last bin
}

int vm_metric_maxprob(int n, int C, const double *p, const int *y, double *conf, int *correct) {
    if (vm_metric_check_cls("vm_metric_maxprob", n, C, p, y)) return -1;
    for (int i = 0; i < n; i++) {
        double c;
        int k = argmax_row(p + (size_t)i * C, C, &c);
        if (conf) conf[i] = c;
        if (correct) correct[i] = k == y[i];
    }
    return 0;
}

int vm_metric_acc(int n, int C, const double *p, const int *y, double *out) {
    if (vm_metric_check_cls("vm_metric_acc", n, C, p, y)) return -1;
    int hits = 0;
    for (int i = 0; i < n; i++) {
        double c;
        hits += argmax_row(p + (size_t)i * C, C, &c) == y[i];
    }
    *out = (double)hits / n;
    return 0;
}

int vm_metric_nll(int n, int C, const double *p, const int *y, double *out) {
    if (vm_metric_check_cls("vm_metric_nll", n, C, p, y)) return -1;
    double s = 0.0;
    for (int i = 0; i < n; i++) {
        double py = p[(size_t)i * C + y[i]];
        s -= log(py > VM_METRIC_NLL_CLAMP ? py : VM_METRIC_NLL_CLAMP);
    }
    *out = s / n;
    return 0;
}

int vm_metric_brier(int n, int C, const double *p, const int *y, double *out) {
    if (vm_metric_check_cls("vm_metric_brier", n, C, p, y)) return -1;
    double s = 0.0;
    for (int i = 0; i < n; i++) {
        const double *row = p + (size_t)i * C;
        for (int k = 0; k < C; k++) {
            double d = row[k] - (k == y[i]);
            s += d * d;
        }
    }
    *out = s / n;
    return 0;
}

// Accumulates (count, hits, confidence sum) per equal-width bin of the top-label confidence.
static void fill_bins(int n, int C, const double *p, const int *y, int M,
                      int *cnt, double *hits, double *csum) {
    for (int m = 0; m < M; m++) cnt[m] = 0, hits[m] = 0.0, csum[m] = 0.0;
    for (int i = 0; i < n; i++) {
        double c;
        int k = argmax_row(p + (size_t)i * C, C, &c);
        int b = bin_of(c, M);
        cnt[b]++;
        hits[b] += k == y[i];
        csum[b] += c;
    }
}

// ECE-like reductions over bins: which = 0 |gap| weighted, 1 max |gap|, 2 signed weighted.
static double reduce_bins(int n, int M, const int *cnt, const double *hits, const double *csum, int which) {
    double s = 0.0;
    for (int m = 0; m < M; m++) {
        if (cnt[m] == 0) continue;
        double gap = hits[m] / cnt[m] - csum[m] / cnt[m];
        if (which == 0) s += (double)cnt[m] / n * fabs(gap);
        else if (which == 1) s = fabs(gap) > s ? fabs(gap) : s;
        else s += (double)cnt[m] / n * gap;
    }
    return s;
}

static int binned(const char *fn, int n, int C, const double *p, const int *y, int M, int which,
                  double *out, vm_ece_bin *bins) {
    if (vm_metric_check_cls(fn, n, C, p, y) || check_bins(fn, M)) return -1;
    int *cnt = vm_malloc((size_t)M * sizeof *cnt);
    double *hits = vm_malloc((size_t)M * sizeof *hits), *csum = vm_malloc((size_t)M * sizeof *csum);
    if (!cnt || !hits || !csum) {
        free(cnt), free(hits), free(csum);
        return vm_err_prefix("%s", fn);
    }
    fill_bins(n, C, p, y, M, cnt, hits, csum);
    if (out) *out = reduce_bins(n, M, cnt, hits, csum, which);
    if (bins)
        for (int m = 0; m < M; m++) {
            bins[m].count = cnt[m];
            bins[m].acc = cnt[m] ? hits[m] / cnt[m] : 0.0;
            bins[m].conf = cnt[m] ? csum[m] / cnt[m] : 0.0;
        }
    free(cnt), free(hits), free(csum);
    return 0;
}

int vm_ece_bins_split(int M, const vm_ece_bin *bins, int *count, double *acc, double *conf) {
    if (M < 1 || !bins || !count || !acc || !conf) return vm_err("metrics: bad bins (M = %d)", M);
    for (int m = 0; m < M; m++) { count[m] = bins[m].count; acc[m] = bins[m].acc; conf[m] = bins[m].conf; }
    return 0;
}

int vm_ece_reliability(int n, int C, const double *p, const int *y, int M, vm_ece_bin *bins) {
    if (!bins) return vm_err("metrics: NULL bins (vm_ece_reliability)");
    return binned("vm_ece_reliability", n, C, p, y, M, 0, NULL, bins);
}
int vm_ece(int n, int C, const double *p, const int *y, int M, double *out) {
    return binned("vm_ece", n, C, p, y, M, 0, out, NULL);
}
int vm_ece_mce(int n, int C, const double *p, const int *y, int M, double *out) {
    return binned("vm_ece_mce", n, C, p, y, M, 1, out, NULL);
}
int vm_ece_signed(int n, int C, const double *p, const int *y, int M, double *out) {
    return binned("vm_ece_signed", n, C, p, y, M, 2, out, NULL);
}

typedef struct conf_item { double c; int idx; int hit; } conf_item;

static int cmp_conf_asc(const void *a, const void *b) {
    const conf_item *x = a, *y = b;
    if (x->c != y->c) return x->c < y->c ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);  // stable: example order among equal c
}

int vm_ece_adaptive(int n, int C, const double *p, const int *y, int M, double *out) {
    const char *fn = "vm_ece_adaptive";
    if (vm_metric_check_cls(fn, n, C, p, y) || check_bins(fn, M)) return -1;
    conf_item *it = vm_malloc((size_t)n * sizeof *it);
    if (!it) return vm_err_prefix("%s", fn);
    for (int i = 0; i < n; i++) {
        int k = argmax_row(p + (size_t)i * C, C, &it[i].c);
        it[i].idx = i;
        it[i].hit = k == y[i];
    }
    qsort(it, (size_t)n, sizeof *it, cmp_conf_asc);
    double s = 0.0;
    for (int m = 0; m < M; m++) {
        // positions [floor(m n / M), floor((m+1) n / M)) in 64-bit to avoid overflow
        int lo = (int)((int64_t)m * n / M), hi = (int)((int64_t)(m + 1) * n / M);
        if (hi <= lo) continue;
        double hits = 0.0, csum = 0.0;
        for (int j = lo; j < hi; j++) hits += it[j].hit, csum += it[j].c;
        int cnt = hi - lo;
        s += (double)cnt / n * fabs(hits / cnt - csum / cnt);
    }
    free(it);
    *out = s;
    return 0;
}

int vm_ece_classwise(int n, int C, const double *p, const int *y, int M, double *out) {
    const char *fn = "vm_ece_classwise";
    if (vm_metric_check_cls(fn, n, C, p, y) || check_bins(fn, M)) return -1;
    int *cnt = vm_malloc((size_t)M * sizeof *cnt);
    double *hits = vm_malloc((size_t)M * sizeof *hits), *csum = vm_malloc((size_t)M * sizeof *csum);
    if (!cnt || !hits || !csum) {
        free(cnt), free(hits), free(csum);
        return vm_err_prefix("%s", fn);
    }
    double total = 0.0;
    for (int k = 0; k < C; k++) {
        for (int m = 0; m < M; m++) cnt[m] = 0, hits[m] = 0.0, csum[m] = 0.0;
        for (int i = 0; i < n; i++) {
            double c = p[(size_t)i * C + k];
            int b = bin_of(c, M);
            cnt[b]++;
            hits[b] += y[i] == k;
            csum[b] += c;
        }
        total += reduce_bins(n, M, cnt, hits, csum, 0);
    }
    free(cnt), free(hits), free(csum);
    *out = total / C;
    return 0;
}

int vm_metric_cls(vm_metric_kind kind, int n, int C, const double *p, const int *y, int M, double *out) {
    switch (kind) {
    case VM_METRIC_ACC: return vm_metric_acc(n, C, p, y, out);
    case VM_METRIC_NLL: return vm_metric_nll(n, C, p, y, out);
    case VM_METRIC_BRIER: return vm_metric_brier(n, C, p, y, out);
    case VM_METRIC_ECE: return vm_ece(n, C, p, y, M, out);
    case VM_METRIC_MCE: return vm_ece_mce(n, C, p, y, M, out);
    case VM_METRIC_ECE_SIGNED: return vm_ece_signed(n, C, p, y, M, out);
    case VM_METRIC_ECE_ADAPTIVE: return vm_ece_adaptive(n, C, p, y, M, out);
    case VM_METRIC_ECE_CLASSWISE: return vm_ece_classwise(n, C, p, y, M, out);
    default: return vm_err("metrics: kind %d is not a classification metric (vm_metric_cls)", (int)kind);
    }
}

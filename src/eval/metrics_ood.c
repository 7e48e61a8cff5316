// OOD detection (AUROC, AUPR, FPR@95, ROC points) and selective prediction (AURC, risk-coverage).
// All of them walk the examples sorted by score, one tie group at a time, so tied scores are
// never split and the result does not depend on input order.
#include "eval/metrics.h"

#include <math.h>
#include <stdlib.h>

#include "util/err.h"

typedef struct scored { double s; int pos; } scored;  // pos: 1 = OOD (positive), 0 = in-distribution

static int cmp_desc(const void *a, const void *b) {
    const scored *x = a, *y = b;
    if (x->s != y->s) return x->s > y->s ? -1 : 1;
    return y->pos - x->pos;  // irrelevant for results (groups are whole); keeps qsort deterministic
}

// Validates, merges and sorts both sets by score descending. *all is malloc'd (n_in + n_out).
static int merge_sorted(const char *fn, int n_in, const double *s_in, int n_out, const double *s_out,
                        scored **all) {
    *all = NULL;
    if (n_in < 0 || n_out < 0 || (int64_t)n_in + n_out <= 0)
        return vm_err("metrics: no scores (n_in = %d, n_out = %d) (%s)", n_in, n_out, fn);
    if ((int64_t)n_in + n_out >= (int64_t)1 << 31)
        return vm_err("metrics: too many scores (%s)", fn);
    if ((n_in && !s_in) || (n_out && !s_out)) return vm_err("metrics: NULL scores (%s)", fn);
    int n = n_in + n_out;
    scored *a = vm_malloc((size_t)n * sizeof *a);
    if (!a) return vm_err_prefix("%s", fn);
    for (int i = 0; i < n; i++) {
        double s = i < n_in ? s_in[i] : s_out[i - n_in];
        if (!isfinite(s)) {
            free(a);
            return vm_err("metrics: non-finite %s score %g at %d (%s)", i < n_in ? "in-distribution" : "OOD",
                          s, i < n_in ? i : i - n_in, fn);
        }
        a[i].s = s;
        a[i].pos = i >= n_in;
    }
    qsort(a, (size_t)n, sizeof *a, cmp_desc);
    *all = a;
    return 0;
}

// Ends of tie groups: returns the index one past the group starting at i.
static inline int group_end(const scored *a, int n, int i) {
    int j = i + 1;
    while (j < n && a[j].s == a[i].s) j++;
    return j;
}

int vm_metric_auroc(int n_in, const double *s_in, int n_out, const double *s_out, double *out) {
    scored *a;
    if (merge_sorted("vm_metric_auroc", n_in, s_in, n_out, s_out, &a)) return -1;
    if (n_in == 0 || n_out == 0) {
        free(a);
        *out = NAN;
        return 0;
    }
    int n = n_in + n_out;
    double u = 0.0;  // Mann-Whitney U of the OOD set: pairs won + 1/2 pairs tied
    int fp = 0;      // in-distribution examples with a higher score than the current group
    for (int i = 0; i < n;) {
        int j = group_end(a, n, i), tp_g = 0, fp_g = 0;
        for (int k = i; k < j; k++) { if (a[k].pos) tp_g++; else fp_g++; }
        u += (double)tp_g * (double)(n_in - fp - fp_g) + 0.5 * (double)tp_g * (double)fp_g;
        fp += fp_g;
        i = j;
    }
    free(a);
    *out = u / ((double)n_in * (double)n_out);
    return 0;
}

int vm_metric_aupr(int n_in, const double *s_in, int n_out, const double *s_out, double *out) {
    scored *a;
    if (merge_sorted("vm_metric_aupr", n_in, s_in, n_out, s_out, &a)) return -1;
    if (n_out == 0) {
        free(a);
        *out = NAN;
        return 0;
    }
    int n = n_in + n_out, tp = 0, fp = 0;
    double ap = 0.0, r_prev = 0.0;
    for (int i = 0; i < n;) {
        int j = group_end(a, n, i);
        for (int k = i; k < j; k++) { if (a[k].pos) tp++; else fp++; }
        double r = (double)tp / n_out, prec = (double)tp / (tp + fp);
        ap += (r - r_prev) * prec;
        r_prev = r;
        i = j;
    }
    free(a);
    *out = ap;
    return 0;
}

int vm_metric_fpr95(int n_in, const double *s_in, int n_out, const double *s_out, double *out) {
    scored *a;
    if (merge_sorted("vm_metric_fpr95", n_in, s_in, n_out, s_out, &a)) return -1;
    *out = NAN;
    if (n_in == 0 || n_out == 0) {
        free(a);
        return 0;
    }
    int n = n_in + n_out, tp = 0, fp = 0;
    for (int i = 0; i < n;) {
        int j = group_end(a, n, i);
        for (int k = i; k < j; k++) { if (a[k].pos) tp++; else fp++; }
        if (20 * (int64_t)tp >= 19 * (int64_t)n_out) {  // TPR >= 0.95 exactly
            *out = (double)fp / n_in;
            break;
        }
        i = j;
    }
    free(a);
    return 0;
}

int vm_metric_roc(int n_in, const double *s_in, int n_out, const double *s_out,
                  double *fpr, double *tpr, double *thr, int *n_points) {
    if (!fpr || !tpr || !thr || !n_points) return vm_err("metrics: NULL output (vm_metric_roc)");
    scored *a;
    if (merge_sorted("vm_metric_roc", n_in, s_in, n_out, s_out, &a)) return -1;
    int n = n_in + n_out, tp = 0, fp = 0, np_ = 0;
    double fden = n_in ? (double)n_in : NAN, tden = n_out ? (double)n_out : NAN;
    fpr[0] = n_in ? 0.0 : NAN, tpr[0] = n_out ? 0.0 : NAN, thr[0] = INFINITY;
    np_ = 1;
    for (int i = 0; i < n;) {
        int j = group_end(a, n, i);
        for (int k = i; k < j; k++) { if (a[k].pos) tp++; else fp++; }
        fpr[np_] = fp / fden, tpr[np_] = tp / tden, thr[np_] = a[i].s;
        np_++;
        i = j;
    }
    free(a);
    *n_points = np_;
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Selective prediction

typedef struct kept { double c, loss; } kept;

static int cmp_conf_desc(const void *a, const void *b) {
    const kept *x = a, *y = b;
    if (x->c != y->c) return x->c > y->c ? -1 : 1;
    return (x->loss > y->loss) - (x->loss < y->loss);  // within a group order is irrelevant
}

// Fills per-group (coverage, risk); returns G or -1. Either output may be NULL; *aurc optional.
static int risk_curve(const char *fn, int n, const double *conf, const double *loss,
                      double *coverage, double *risk, double *aurc) {
    if (n <= 0) return vm_err("metrics: no examples (n = %d) (%s)", n, fn);
    if (!conf || !loss) return vm_err("metrics: NULL confidences or losses (%s)", fn);
    kept *a = vm_malloc((size_t)n * sizeof *a);
    if (!a) return vm_err_prefix("%s", fn);
    for (int i = 0; i < n; i++) {
        if (!isfinite(conf[i]) || !isfinite(loss[i])) {
            free(a);
            return vm_err("metrics: non-finite confidence or loss at %d (%s)", i, fn);
        }
        a[i].c = conf[i], a[i].loss = loss[i];
    }
    qsort(a, (size_t)n, sizeof *a, cmp_conf_desc);
    double cum = 0.0, area = 0.0;
    int g = 0;
    for (int i = 0; i < n;) {
        int j = i + 1;
        while (j < n && a[j].c == a[i].c) j++;
        for (int k = i; k < j; k++) cum += a[k].loss;
        double r = cum / j;
        area += (double)(j - i) / n * r;
        if (coverage) coverage[g] = (double)j / n;
        if (risk) risk[g] = r;
        g++;
        i = j;
    }
    free(a);
    if (aurc) *aurc = area;
    return g;
}

int vm_metric_aurc(int n, const double *conf, const double *loss, double *out) {
    return risk_curve("vm_metric_aurc", n, conf, loss, NULL, NULL, out) < 0 ? -1 : 0;
}

int vm_metric_risk_coverage(int n, const double *conf, const double *loss,
                            double *coverage, double *risk, int *n_points) {
    if (!coverage || !risk || !n_points) return vm_err("metrics: NULL output (vm_metric_risk_coverage)");
    int g = risk_curve("vm_metric_risk_coverage", n, conf, loss, coverage, risk, NULL);
    if (g < 0) return -1;
    *n_points = g;
    return 0;
}

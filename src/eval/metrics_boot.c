// Bootstrap percentile intervals (with ready-made metric callbacks) and temperature scaling.
#include "eval/metrics.h"
#include "eval/metrics_internal.h"

#include <math.h>
#include <stdlib.h>

#include "util/err.h"
#include "util/rng.h"

// ---------------------------------------------------------------------------------------------
// Ready-made callbacks: gather the resampled rows, then call the plain metric.

int vm_metric_cls_fn(void *ctx, int n, const int *idx, double *out) {
    const vm_metric_cls_ctx *c = ctx;
    if (!c || !idx || n <= 0 || c->C < 1 || !c->p || !c->y)
        return vm_err("metrics: bad classification context or resample (vm_metric_cls_fn)");
    size_t np;
    if (vm_size_mul((size_t)n, (size_t)c->C, &np)) return vm_err_prefix("vm_metric_cls_fn");
    double *p = vm_malloc(np * sizeof *p);
    int *y = vm_malloc((size_t)n * sizeof *y);
    if (!p || !y) {
        free(p), free(y);
        return vm_err_prefix("vm_metric_cls_fn");
    }
    for (int i = 0; i < n; i++) {
        const double *src = c->p + (size_t)idx[i] * c->C;
        for (int k = 0; k < c->C; k++) p[(size_t)i * c->C + k] = src[k];
        y[i] = c->y[idx[i]];
    }
    int rc = vm_metric_cls(c->kind, n, c->C, p, y, c->M, out);
    free(p), free(y);
    return rc;
}

int vm_metric_ood_fn(void *ctx, int n, const int *idx, double *out) {
    const vm_metric_ood_ctx *c = ctx;
    if (!c || !idx || n <= 0 || c->n_in < 0 || c->n_out < 0)
        return vm_err("metrics: bad OOD context or resample (vm_metric_ood_fn)");
    double *s = vm_malloc((size_t)n * sizeof *s);  // in-distribution from the front, OOD from the back
    if (!s) return vm_err_prefix("vm_metric_ood_fn");
    int a = 0, b = n;
    for (int i = 0; i < n; i++) {
        int j = idx[i];
        if (j < 0 || j >= c->n_in + c->n_out) {
            free(s);
            return vm_err("metrics: resample index %d out of range (vm_metric_ood_fn)", j);
        }
        if (j < c->n_in) s[a++] = c->s_in[j];
        else s[--b] = c->s_out[j - c->n_in];
    }
    int rc;
    switch (c->kind) {
    case VM_METRIC_AUROC: rc = vm_metric_auroc(a, s, n - b, s + b, out); break;
    case VM_METRIC_AUPR: rc = vm_metric_aupr(a, s, n - b, s + b, out); break;
    case VM_METRIC_FPR95: rc = vm_metric_fpr95(a, s, n - b, s + b, out); break;
    default: rc = vm_err("metrics: kind %d is not an OOD metric (vm_metric_ood_fn)", (int)c->kind);
    }
    free(s);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Bootstrap

int vm_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double vm_quantile_sorted(const double *v, int m, double q) {
    double h = (m - 1) * q;
    int lo = (int)floor(h);
    if (lo >= m - 1) return v[m - 1];
    return v[lo] + (h - lo) * (v[lo + 1] - v[lo]);
}

int vm_metric_bootstrap(vm_metric_fn fn, void *ctx, int n, int B, double level, uint64_t seed,
                        vm_boot *out) {
    if (!fn || !out) return vm_err("metrics: NULL callback or output (vm_metric_bootstrap)");
    if (n <= 0) return vm_err("metrics: no examples (n = %d) (vm_metric_bootstrap)", n);
    if (B < 1) return vm_err("metrics: B = %d resamples (vm_metric_bootstrap)", B);
    if (!(level > 0.0 && level < 1.0)) return vm_err("metrics: level %g not in (0,1) (vm_metric_bootstrap)", level);
    int *idx = vm_malloc((size_t)n * sizeof *idx);
    double *v = vm_malloc((size_t)B * sizeof *v);
    if (!idx || !v) {
        free(idx), free(v);
        return vm_err_prefix("vm_metric_bootstrap");
    }
    int rc = 0, m = 0;
    for (int i = 0; i < n; i++) idx[i] = i;
    if (fn(ctx, n, idx, &out->point)) {
        rc = vm_err_prefix("vm_metric_bootstrap (full data)");
        goto done;
    }
    vm_rng rng;
    vm_rng_seed(&rng, seed);
    for (int b = 0; b < B; b++) {
        for (int i = 0; i < n; i++) {
            int j = (int)(vm_rng_uniform(&rng) * n);
            idx[i] = j < n ? j : n - 1;  // uniform < 1, so only a guard
        }
        double x;
        if (fn(ctx, n, idx, &x)) {
            rc = vm_err_prefix("vm_metric_bootstrap (resample %d)", b);
            goto done;
        }
        if (!isnan(x)) v[m++] = x;
    }
    if (m == 0) {
        rc = vm_err("metrics: every bootstrap replicate is NaN (vm_metric_bootstrap)");
        goto done;
    }
    qsort(v, (size_t)m, sizeof *v, vm_cmp_double);
    out->lo = vm_quantile_sorted(v, m, (1.0 - level) / 2.0);
    out->hi = vm_quantile_sorted(v, m, (1.0 + level) / 2.0);
    out->n_valid = m;
done:
    free(idx), free(v);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Temperature scaling

static int check_logits(const char *fn, int n, int C, const double *z, const int *y) {
    if (n <= 0) return vm_err("metrics: no examples (n = %d) (%s)", n, fn);
    if (C < 1) return vm_err("metrics: C = %d classes (%s)", C, fn);
    if (!z) return vm_err("metrics: NULL logits (%s)", fn);
    for (size_t i = 0; i < (size_t)n * C; i++)
        if (!isfinite(z[i])) return vm_err("metrics: non-finite logit at (%zu,%zu) (%s)", i / C, i % C, fn);
    if (y)
        for (int i = 0; i < n; i++)
            if (y[i] < 0 || y[i] >= C)
                return vm_err("metrics: label %d out of range [0,%d) at example %d (%s)", y[i], C, i, fn);
    return 0;
}

// At beta = 1/T: mean NLL, its derivative g = mean(E_p[z] - z_y) and curvature h = mean Var_p[z].
static void nll_beta(int n, int C, const double *z, const int *y, double beta,
                     double *nll, double *g, double *h) {
    double sn = 0.0, sg = 0.0, sh = 0.0;
    for (int i = 0; i < n; i++) {
        const double *row = z + (size_t)i * C;
        double mx = row[0];
        for (int k = 1; k < C; k++) mx = row[k] > mx ? row[k] : mx;
        // shift by the max logit: z - mx <= 0, so exp never overflows for beta > 0
        double S = 0.0, E = 0.0, E2 = 0.0;
        for (int k = 0; k < C; k++) {
            double d = row[k] - mx, w = exp(beta * d);
            S += w, E += w * d, E2 += w * d * d;
        }
        E /= S, E2 /= S;
        double dy = row[y[i]] - mx;
        sn += log(S) - beta * dy;
        sg += E - dy;
        double var = E2 - E * E;
        sh += var > 0.0 ? var : 0.0;
    }
    if (nll) *nll = sn / n;
    if (g) *g = sg / n;
    if (h) *h = sh / n;
}

int vm_temp_nll(int n, int C, const double *logits, const int *y, double T, double *out) {
    if (!y) return vm_err("metrics: NULL labels (vm_temp_nll)");
    if (check_logits("vm_temp_nll", n, C, logits, y)) return -1;
    if (!(T > 0.0 && isfinite(T))) return vm_err("metrics: temperature %g is not > 0 (vm_temp_nll)", T);
    nll_beta(n, C, logits, y, 1.0 / T, out, NULL, NULL);
    return 0;
}

int vm_temp_fit(int n, int C, const double *logits, const int *y, double *T) {
    if (!y || !T) return vm_err("metrics: NULL labels or output (vm_temp_fit)");
    if (check_logits("vm_temp_fit", n, C, logits, y)) return -1;
    double lo = 1.0 / VM_TEMP_MAX, hi = 1.0 / VM_TEMP_MIN, g, h;
    nll_beta(n, C, logits, y, lo, NULL, &g, NULL);
    if (g >= 0.0) { *T = VM_TEMP_MAX; return 0; }  // NLL rises from the smallest beta on
    nll_beta(n, C, logits, y, hi, NULL, &g, NULL);
    if (g <= 0.0) { *T = VM_TEMP_MIN; return 0; }  // still falling at the largest beta
    double beta = 1.0;
    for (int it = 0; it < 200; it++) {
        nll_beta(n, C, logits, y, beta, NULL, &g, &h);
        if (g == 0.0) break;
        if (g < 0.0) lo = beta; else hi = beta;
        double next = beta - g / h;
        if (!(h > 0.0) || !(next > lo && next < hi)) next = sqrt(lo * hi);
        int done = fabs(next - beta) <= 1e-15 * beta || hi - lo <= 1e-15 * lo;
        beta = next;
        if (done) break;
    }
    *T = 1.0 / beta;
    return 0;
}

int vm_temp_apply(int n, int C, const double *logits, double T, double *p_out) {
    if (!p_out) return vm_err("metrics: NULL output (vm_temp_apply)");
    if (check_logits("vm_temp_apply", n, C, logits, NULL)) return -1;
    if (!(T > 0.0 && isfinite(T))) return vm_err("metrics: temperature %g is not > 0 (vm_temp_apply)", T);
    for (int i = 0; i < n; i++) {
        const double *row = logits + (size_t)i * C;
        double *p = p_out + (size_t)i * C;  // may be the same row: each entry is read before written
        double mx = row[0];
        for (int k = 1; k < C; k++) mx = row[k] > mx ? row[k] : mx;
        double S = 0.0;
        for (int k = 0; k < C; k++) S += (p[k] = exp((row[k] - mx) / T));
        for (int k = 0; k < C; k++) p[k] /= S;
    }
    return 0;
}

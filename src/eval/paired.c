// Paired bootstrap over items and seeds (paired.h).
#include "eval/paired.h"
#include "eval/metrics_internal.h"
#include "util/err.h"
#include "util/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------- weighted metrics

void vm_pitem_fill(vm_pitem *it, int C, const double *p, int y, int M) {
    int b = 0;
    double br = 0.0;
    for (int k = 1; k < C; k++) if (p[k] > p[b]) b = k;
    for (int k = 0; k < C; k++) { const double d = p[k] - (k == y); br += d * d; }
    it->conf = p[b];
    it->correct = b == y;
    it->nll = -log(p[y] > 1e-300 ? p[y] : 1e-300);
    it->brier = br;
    int bin = (int)floor(it->conf * M);
    it->bin = bin < 0 ? 0 : bin > M - 1 ? M - 1 : bin;
}

static double wt(const double *w, int i) { return w ? w[i] : 1.0; }

double vm_pw_mean(int n, const double *x, const double *w) {
    double s = 0.0, W = 0.0;
    for (int i = 0; i < n; i++) { s += wt(w, i) * x[i]; W += wt(w, i); }
    return W > 0 ? s / W : NAN;
}

#define PW_FIELD_MEAN(fn, field)                                               \
    double fn(int n, const vm_pitem *it, const double *w) {                    \
        double s = 0.0, W = 0.0;                                               \
        for (int i = 0; i < n; i++) { s += wt(w, i) * it[i].field; W += wt(w, i); } \
        return W > 0 ? s / W : NAN;                                            \
    }
PW_FIELD_MEAN(vm_pw_mean_acc, correct)
PW_FIELD_MEAN(vm_pw_mean_nll, nll)
PW_FIELD_MEAN(vm_pw_mean_brier, brier)

// Per bin: weight, weighted sum of correctness and of confidence.
static double bins_fill(int n, const vm_pitem *it, const double *w, int M, double *bw, double *ba, double *bc) {
    double W = 0.0;
    for (int m = 0; m < M; m++) bw[m] = ba[m] = bc[m] = 0.0;
    for (int i = 0; i < n; i++) {
        const double x = wt(w, i);
        const int m = it[i].bin;
        bw[m] += x; ba[m] += x * it[i].correct; bc[m] += x * it[i].conf;
        W += x;
    }
    return W;
}

double vm_pw_ece(int n, const vm_pitem *it, const double *w, int M) {
    double bw[M], ba[M], bc[M];
    const double W = bins_fill(n, it, w, M, bw, ba, bc);
    if (!(W > 0)) return NAN;
    double e = 0.0;
    for (int m = 0; m < M; m++) e += fabs(ba[m] - bc[m]);   // n_m |acc_m - conf_m| = |sum(correct - conf)|
    return e / W;
}

double vm_pw_mce(int n, const vm_pitem *it, const double *w, int M) {
    double bw[M], ba[M], bc[M];
    const double W = bins_fill(n, it, w, M, bw, ba, bc);
    if (!(W > 0)) return NAN;
    double e = 0.0;
    for (int m = 0; m < M; m++) if (bw[m] > 0) e = fmax(e, fabs(ba[m] - bc[m]) / bw[m]);
    return e;
}

// ---------------------------------------------------------------- weighted AUROC

typedef struct { double s; int k; } keyed;
static int cmp_keyed(const void *a, const void *b) {
    const keyed *x = a, *y = b;
    if (x->s != y->s) return x->s < y->s ? -1 : 1;
    return (x->k > y->k) - (x->k < y->k);   // a fixed order inside ties (they are scored together)
}

int vm_pw_auroc_prepare(vm_pw_auroc *a, int n_in, const double *s_in, int n_out, const double *s_out) {
    memset(a, 0, sizeof *a);
    if (n_in < 1 || n_out < 1) return vm_err("paired: AUROC needs items on both sides (%d, %d)", n_in, n_out);
    const int n = n_in + n_out;
    keyed *k = vm_malloc((size_t)n * sizeof *k);
    a->order = vm_malloc((size_t)n * sizeof(int));
    a->group = vm_malloc((size_t)n * sizeof(int));
    if (!k || !a->order || !a->group) { free(k); vm_pw_auroc_free(a); return -1; }
    for (int i = 0; i < n; i++) {
        k[i].s = i < n_in ? s_in[i] : s_out[i - n_in];
        k[i].k = i;
        if (isnan(k[i].s)) { free(k); vm_pw_auroc_free(a); return vm_err("paired: NaN score (item %d)", i); }
    }
    qsort(k, (size_t)n, sizeof *k, cmp_keyed);
    for (int i = 0, g = -1; i < n; i++) {
        if (i == 0 || k[i].s != k[i - 1].s) g++;
        a->order[i] = k[i].k;
        a->group[i] = g;
    }
    free(k);
    a->n_in = n_in; a->n_out = n_out;
    return 0;
}

double vm_pw_auroc_eval(const vm_pw_auroc *a, const double *w_in, const double *w_out) {
    const int n = a->n_in + a->n_out;
    double below = 0.0, U = 0.0, Wi = 0.0, Wo = 0.0;
    for (int i = 0; i < n;) {
        double gi = 0.0, go = 0.0;   // the tie group's in- and out-of-distribution weights
        const int g = a->group[i];
        for (; i < n && a->group[i] == g; i++) {
            const int k = a->order[i];
            if (k < a->n_in) gi += wt(w_in, k); else go += wt(w_out, k - a->n_in);
        }
        U += go * (below + 0.5 * gi);
        below += gi; Wi += gi; Wo += go;
    }
    return Wi > 0 && Wo > 0 ? U / (Wi * Wo) : NAN;
}

void vm_pw_auroc_free(vm_pw_auroc *a) {
    if (!a) return;
    free(a->order); free(a->group);
    a->order = a->group = NULL;
}

// ---------------------------------------------------------------- the bootstrap

// Percentile interval of the finite values among v (m), sorted in place.
static int interval(double *v, int m, double level, double *lo, double *hi) {
    int k = 0;
    for (int i = 0; i < m; i++) if (isfinite(v[i])) v[k++] = v[i];
    if (k == 0) { *lo = *hi = NAN; return 0; }
    qsort(v, (size_t)k, sizeof *v, vm_cmp_double);
    *lo = vm_quantile_sorted(v, k, (1.0 - level) / 2.0);
    *hi = vm_quantile_sorted(v, k, (1.0 + level) / 2.0);
    return k;
}

int vm_paired_bootstrap(const vm_paired_opts *o, vm_paired_fn fn, void *ud, vm_pstat *out) {
    if (!o || !fn || !out || o->n_rows < 1 || o->n_stats < 1 || !o->base_of ||
        !o->n_seeds || o->n_strata < 0 || (o->n_strata && !o->stratum_n) || o->B < 0 ||
        (o->B > 0 && !(o->level > 0 && o->level < 1)))
        return vm_err("paired: bad options");
    for (int r = 0; r < o->n_rows; r++) {
        if (o->n_seeds[r] < 1) return vm_err("paired: row %d has no seed", r);
        if (o->base_of[r] < 0 || o->base_of[r] >= o->n_rows) return vm_err("paired: row %d's baseline %d", r, o->base_of[r]);
    }
    for (int s = 0; s < o->n_strata; s++) if (o->stratum_n[s] < 1) return vm_err("paired: stratum %d is empty", s);
    const int R = o->n_rows, S = o->n_stats;
    double *tmp = vm_malloc((size_t)S * sizeof(double));
    if (!tmp) return -1;
    int rc = 0;
    // points and the per-seed spread
    for (int r = 0; r < R && !rc; r++) {
        vm_pstat *ps = out + (size_t)r * S;
        for (int k = 0; k < S; k++) ps[k] = (vm_pstat){ .point = 0.0, .seed_min = INFINITY, .seed_max = -INFINITY,
                                                        .lo = NAN, .hi = NAN, .diff_lo = NAN, .diff_hi = NAN };
        for (int sd = 0; sd < o->n_seeds[r] && !rc; sd++) {
            if ((rc = fn(ud, r, sd, NULL, tmp))) break;
            for (int k = 0; k < S; k++) {
                ps[k].point += tmp[k] / o->n_seeds[r];
                ps[k].seed_min = fmin(ps[k].seed_min, tmp[k]);
                ps[k].seed_max = fmax(ps[k].seed_max, tmp[k]);
            }
        }
    }
    free(tmp);
    if (rc) return -1;
    for (int r = 0; r < R; r++)
        for (int k = 0; k < S; k++) {
            vm_pstat *ps = &out[(size_t)r * S + k];
            ps->diff = ps->point - out[(size_t)o->base_of[r] * S + k].point;
            if (!isfinite(ps->point)) ps->seed_min = ps->seed_max = NAN;
        }
    if (o->B == 0) return 0;

    // the resamples' multiplicities, drawn in order from one stream
    size_t tot = 0;
    for (int s = 0; s < o->n_strata; s++) tot += (size_t)o->stratum_n[s];
    double *W = vm_calloc((size_t)o->B * (tot ? tot : 1), sizeof(double));
    double *reps = vm_malloc((size_t)o->B * R * S * sizeof(double));
    if (!W || !reps) { free(W); free(reps); return -1; }
    vm_rng g;
    vm_rng_seed(&g, o->seed);
    for (int b = 0; b < o->B; b++) {
        double *wb = W + (size_t)b * tot;
        for (int s = 0, off = 0; s < o->n_strata; off += o->stratum_n[s], s++)
            for (int i = 0; i < o->stratum_n[s]; i++) {
                int j = (int)(vm_rng_uniform(&g) * o->stratum_n[s]);
                if (j >= o->stratum_n[s]) j = o->stratum_n[s] - 1;
                wb[off + j] += 1.0;
            }
    }
    int failed = 0;
    #pragma omp parallel for schedule(dynamic, 8)
    for (int b = 0; b < o->B; b++) {
        const double *w[o->n_strata > 0 ? o->n_strata : 1];
        for (int s = 0, off = 0; s < o->n_strata; off += o->stratum_n[s], s++) w[s] = W + (size_t)b * tot + off;
        double t[S];
        for (int r = 0; r < R; r++) {
            double *rep = reps + ((size_t)b * R + r) * S;
            for (int k = 0; k < S; k++) rep[k] = 0.0;
            for (int sd = 0; sd < o->n_seeds[r]; sd++) {
                if (fn(ud, r, sd, w, t)) {
                    #pragma omp atomic write
                    failed = 1;
                    break;
                }
                for (int k = 0; k < S; k++) rep[k] += t[k] / o->n_seeds[r];
            }
        }
    }
    double *v = failed ? NULL : vm_malloc((size_t)o->B * sizeof(double));
    for (int r = 0; r < R && v; r++)
        for (int k = 0; k < S; k++) {
            vm_pstat *ps = &out[(size_t)r * S + k];
            for (int b = 0; b < o->B; b++) v[b] = reps[((size_t)b * R + r) * S + k];
            ps->n_valid = interval(v, o->B, o->level, &ps->lo, &ps->hi);
            const int base = o->base_of[r];
            if (r == base) { ps->diff_lo = ps->diff_hi = isfinite(ps->point) ? 0.0 : NAN; continue; }
            for (int b = 0; b < o->B; b++)
                v[b] = reps[((size_t)b * R + r) * S + k] - reps[((size_t)b * R + base) * S + k];
            interval(v, o->B, o->level, &ps->diff_lo, &ps->diff_hi);
        }
    free(W); free(reps);
    if (failed) return vm_err_prefix("paired: a resample");
    if (!v) return -1;
    free(v);
    return 0;
}

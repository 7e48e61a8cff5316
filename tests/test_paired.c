// The paired bootstrap (eval/paired.h): every weighted metric equals the plain metric of metrics.c
// (itself checked against scikit-learn/NumPy goldens) on the materialised resample; the bootstrap
// engine's points, seed spread and intervals behave as specified (a row against itself: difference
// exactly 0; a row that is better on every item: the difference interval excludes 0; a row equal to
// the baseline plus noise: the interval covers 0; results independent of the thread count).
#include "test.h"
#include "eval/metrics.h"
#include "eval/paired.h"
#include "util/err.h"
#include "util/rng.h"

#include <omp.h>
#include <string.h>

enum { C = 4, M = 10 };

static void random_probs(vm_rng *g, int n, double *p, int *y, double sharp) {
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int k = 0; k < C; k++) { p[i * C + k] = exp(sharp * vm_rng_normal(g)); s += p[i * C + k]; }
        for (int k = 0; k < C; k++) p[i * C + k] /= s;
        y[i] = (int)(vm_rng_u64(g) % C);
    }
}

// draws n indices with replacement: w = multiplicities, idx = the materialised resample
static void resample(vm_rng *g, int n, double *w, int *idx) {
    for (int i = 0; i < n; i++) w[i] = 0;
    for (int i = 0; i < n; i++) { idx[i] = (int)(vm_rng_u64(g) % (uint64_t)n); w[idx[i]] += 1; }
}

static void test_weighted_metrics(void) {
    enum { N = 300, NO = 170 };
    static double p[N * C], q[N * C], s_in[N], s_out[NO], r_in[N], r_out[NO], w[N], wo[NO], x[N], xr[N];
    static int y[N], yr[N], idx[N], idx_o[NO];
    static vm_pitem it[N];
    vm_rng g;
    vm_rng_seed(&g, 5);
    random_probs(&g, N, p, y, 1.5);
    for (int i = 0; i < N; i++) {
        vm_pitem_fill(&it[i], C, p + i * C, y[i], M);
        s_in[i] = floor(4 * vm_rng_normal(&g)) / 4;   // coarse: many ties
        x[i] = vm_rng_normal(&g);
    }
    for (int i = 0; i < NO; i++) s_out[i] = floor(4 * (0.7 + vm_rng_normal(&g))) / 4;
    vm_pw_auroc a;
    CHECK(vm_pw_auroc_prepare(&a, N, s_in, NO, s_out) == 0, "prepare: %s", vm_errmsg());
    double worst = 0;
    for (int rep = 0; rep < 20; rep++) {
        const int full = rep == 0;   // first round: w NULL (every item once)
        resample(&g, N, w, idx);
        resample(&g, NO, wo, idx_o);
        if (full) for (int i = 0; i < N; i++) idx[i] = i;
        if (full) for (int i = 0; i < NO; i++) idx_o[i] = i;
        for (int i = 0; i < N; i++) {
            memcpy(q + i * C, p + idx[i] * C, sizeof(double) * C);
            yr[i] = y[idx[i]]; r_in[i] = s_in[idx[i]]; xr[i] = x[idx[i]];
        }
        for (int i = 0; i < NO; i++) r_out[i] = s_out[idx_o[i]];
        const double *wp = full ? NULL : w, *wop = full ? NULL : wo;
        double ref;
        vm_metric_acc(N, C, q, yr, &ref);   worst = fmax(worst, fabs(ref - vm_pw_mean_acc(N, it, wp)));
        vm_metric_nll(N, C, q, yr, &ref);   worst = fmax(worst, fabs(ref - vm_pw_mean_nll(N, it, wp)));
        vm_metric_brier(N, C, q, yr, &ref); worst = fmax(worst, fabs(ref - vm_pw_mean_brier(N, it, wp)));
        vm_ece(N, C, q, yr, M, &ref);       worst = fmax(worst, fabs(ref - vm_pw_ece(N, it, wp, M)));
        vm_ece_mce(N, C, q, yr, M, &ref);   worst = fmax(worst, fabs(ref - vm_pw_mce(N, it, wp, M)));
        vm_metric_auroc(N, r_in, NO, r_out, &ref);
        worst = fmax(worst, fabs(ref - vm_pw_auroc_eval(&a, wp, wop)));
        double mref = 0;
        for (int i = 0; i < N; i++) mref += xr[i] / N;
        worst = fmax(worst, fabs(mref - vm_pw_mean(N, x, wp)));
    }
    printf("weighted metrics vs metrics.c on materialised resamples: worst |difference| %.3g\n", worst);
    CHECK(worst < 1e-12, "weighted metrics off the plain ones by %g", worst);
    vm_pw_auroc_free(&a);
    double nan_s[2] = { 0, NAN };
    CHECK(vm_pw_auroc_prepare(&a, 1, nan_s, 1, nan_s + 1) == -1, "NaN score refused");
}

// rows: 0 = baseline, 1 = the baseline itself, 2 = better on every item, 3 = baseline + noise.
// Each row has per-seed item values; the statistic is the weighted mean.
typedef struct fix { int n, seeds; double *v[4][3]; } fix;

static int stat_fn(void *ud, int row, int seed, const double *const *w, double *out) {
    const fix *f = ud;
    out[0] = vm_pw_mean(f->n, f->v[row][seed], w ? w[0] : NULL);
    out[1] = row == 3 ? NAN : out[0];   // a statistic that does not apply to one row
    return 0;
}

static void run(const fix *f, int threads, vm_pstat *out) {
    const int seeds[4] = { 1, 1, 3, 3 }, base_of[4] = { 0, 0, 0, 0 };
    const int sn[1] = { f->n };
    vm_paired_opts o = { .n_rows = 4, .n_stats = 2, .base_of = base_of, .n_seeds = seeds, .n_strata = 1,
                         .stratum_n = sn, .B = 400, .level = 0.95, .seed = 11 };
    omp_set_num_threads(threads);
    CHECK(vm_paired_bootstrap(&o, stat_fn, (void *)f, out) == 0, "bootstrap: %s", vm_errmsg());
}

static void test_engine(void) {
    enum { N = 200 };
    static double base[N], same[N], better[3][N], noisy[3][N];
    vm_rng g;
    vm_rng_seed(&g, 3);
    for (int i = 0; i < N; i++) base[i] = same[i] = vm_rng_normal(&g);
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < N; i++) {
            better[s][i] = base[i] + 0.05 + 0.01 * s;   // every item, every seed better
            noisy[s][i] = base[i] + 0.3 * vm_rng_normal(&g);
        }
    fix f = { .n = N, .v = { { base }, { same }, { better[0], better[1], better[2] }, { noisy[0], noisy[1], noisy[2] } } };
    vm_pstat a[8], b[8];
    run(&f, 1, a);
    run(&f, 2, b);
    CHECK(memcmp(a, b, sizeof a) == 0, "results depend on the thread count");
    CHECK(a[0].diff == 0 && a[0].diff_lo == 0 && a[0].diff_hi == 0, "baseline against itself");
    CHECK(a[2].diff == 0 && a[2].diff_lo == 0 && a[2].diff_hi == 0, "an identical row: difference exactly 0 (%g [%g, %g])",
          a[2].diff, a[2].diff_lo, a[2].diff_hi);
    CHECK(a[0].lo < a[0].point && a[0].point < a[0].hi, "interval around the point");
    CHECK_NEAR(a[4].diff, 0.06, 1e-12, "mean over seeds of +0.05, +0.06, +0.07");
    CHECK(a[4].diff_lo > 0.05 - 1e-12 && a[4].diff_hi < 0.07 + 1e-12, "uniformly better: [%g, %g]", a[4].diff_lo, a[4].diff_hi);
    CHECK_NEAR(a[4].seed_min, a[0].point + 0.05, 1e-12, "seed min");
    CHECK_NEAR(a[4].seed_max, a[0].point + 0.07, 1e-12, "seed max");
    CHECK(a[6].diff_lo < 0 && a[6].diff_hi > 0, "noise only: interval covers 0 ([%g, %g])", a[6].diff_lo, a[6].diff_hi);
    CHECK(isnan(a[7].point) && isnan(a[7].diff_lo) && a[7].n_valid == 0, "statistic not applicable: NaN");
    printf("paired: better row diff %.4f [%.4f, %.4f]; noisy row diff %.4f [%.4f, %.4f]\n", a[4].diff, a[4].diff_lo,
           a[4].diff_hi, a[6].diff, a[6].diff_lo, a[6].diff_hi);
}

int main(void) {
    test_weighted_metrics();
    test_engine();
    return TEST_SUMMARY();
}

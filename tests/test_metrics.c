// Evaluation metrics against golden values from tests/reference/metrics_ref.py (scikit-learn,
// scipy and numpy written from method.md §5.2), plus error handling and invariance properties.
#include "test.h"

#include <jansson.h>
#include <string.h>

#include "eval/metrics.h"
#include "util/err.h"
#include "util/rng.h"

#define TOL 1e-9
#define GOLDEN "tests/golden/metrics/"

// NaN-aware comparison: both NaN counts as equal.
#define CHECK_SAME(a, b, tol, ...) do { double x_ = (a), y_ = (b); char w_[200]; \
    snprintf(w_, sizeof w_, __VA_ARGS__); \
    CHECK((isnan(x_) && isnan(y_)) || fabs(x_ - y_) <= (tol), "%s: %.17g vs %.17g", w_, x_, y_); } while (0)

static json_t *load(const char *name) {
    char path[256];
    snprintf(path, sizeof path, GOLDEN "%s.json", name);
    json_error_t e;
    json_t *root = json_load_file(path, 0, &e);
    CHECK(root != NULL, "cannot read %s: %s (line %d)", path, e.text, e.line);
    json_t *cases = root ? json_object_get(root, "cases") : NULL;
    CHECK(cases && json_array_size(cases) > 0, "%s has no cases", path);
    return root;
}

// null = NaN, "inf" = +inf.
static double num(const json_t *v) {
    if (json_is_number(v)) return json_number_value(v);
    if (json_is_string(v) && !strcmp(json_string_value(v), "inf")) return INFINITY;
    if (json_is_string(v) && !strcmp(json_string_value(v), "-inf")) return -INFINITY;
    return NAN;
}
static double getd(const json_t *c, const char *key) { return num(json_object_get(c, key)); }
static int geti(const json_t *c, const char *key) { return (int)json_integer_value(json_object_get(c, key)); }

// Array of doubles (malloc'd, at least 1 element so empty arrays are still non-NULL).
static double *getv(const json_t *c, const char *key, int *len) {
    const json_t *a = json_object_get(c, key);
    size_t n = json_array_size(a);
    double *v = malloc((n ? n : 1) * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = num(json_array_get(a, i));
    if (len) *len = (int)n;
    return v;
}
static int *getiv(const json_t *c, const char *key) {
    const json_t *a = json_object_get(c, key);
    size_t n = json_array_size(a);
    int *v = malloc((n ? n : 1) * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = (int)json_integer_value(json_array_get(a, i));
    return v;
}

static void test_cls(void) {
    json_t *root = load("cls");
    if (!root) return;
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(root, "cases"), i, c) {
        const char *name = json_string_value(json_object_get(c, "name"));
        int n = geti(c, "n"), C = geti(c, "C"), M = geti(c, "M");
        double *p = getv(c, "p", NULL);
        int *y = getiv(c, "y");
        double v;
        struct { const char *key; int (*fn)(int, int, const double *, const int *, int, double *); vm_metric_kind kind; } binned[] = {
            {"ece", vm_ece, VM_METRIC_ECE}, {"mce", vm_ece_mce, VM_METRIC_MCE},
            {"ece_signed", vm_ece_signed, VM_METRIC_ECE_SIGNED}, {"ece_adaptive", vm_ece_adaptive, VM_METRIC_ECE_ADAPTIVE},
            {"ece_classwise", vm_ece_classwise, VM_METRIC_ECE_CLASSWISE}};
        CHECK(vm_metric_acc(n, C, p, y, &v) == 0, "%s acc: %s", name, vm_errmsg());
        CHECK_SAME(v, getd(c, "acc"), TOL, "%s acc", name);
        CHECK(vm_metric_nll(n, C, p, y, &v) == 0, "%s nll: %s", name, vm_errmsg());
        CHECK_SAME(v, getd(c, "nll"), TOL, "%s nll", name);
        CHECK(vm_metric_brier(n, C, p, y, &v) == 0, "%s brier: %s", name, vm_errmsg());
        CHECK_SAME(v, getd(c, "brier"), TOL, "%s brier", name);
        for (size_t k = 0; k < sizeof binned / sizeof binned[0]; k++) {
            CHECK(binned[k].fn(n, C, p, y, M, &v) == 0, "%s %s: %s", name, binned[k].key, vm_errmsg());
            CHECK_SAME(v, getd(c, binned[k].key), TOL, "%s %s", name, binned[k].key);
            CHECK(vm_metric_cls(binned[k].kind, n, C, p, y, M, &v) == 0, "%s %s", name, binned[k].key);
            CHECK_SAME(v, getd(c, binned[k].key), TOL, "%s %s via vm_metric_cls", name, binned[k].key);
        }
        vm_ece_bin *bins = malloc((size_t)M * sizeof *bins);
        double *bacc = getv(c, "bin_acc", NULL), *bconf = getv(c, "bin_conf", NULL);
        int *bcnt = getiv(c, "bin_count");
        CHECK(vm_ece_reliability(n, C, p, y, M, bins) == 0, "%s reliability: %s", name, vm_errmsg());
        int ok = 1;
        for (int m = 0; m < M; m++)
            ok &= bins[m].count == bcnt[m] && fabs(bins[m].acc - bacc[m]) <= TOL && fabs(bins[m].conf - bconf[m]) <= TOL;
        CHECK(ok, "%s reliability bins differ", name);
        // maxprob agrees with the reliability counts
        double *conf = malloc((size_t)n * sizeof *conf);
        int *corr = malloc((size_t)n * sizeof *corr), hits = 0;
        CHECK(vm_metric_maxprob(n, C, p, y, conf, corr) == 0, "%s maxprob", name);
        for (int j = 0; j < n; j++) hits += corr[j];
        CHECK_SAME((double)hits / n, getd(c, "acc"), TOL, "%s maxprob hits", name);
        free(conf), free(corr), free(bins), free(bacc), free(bconf), free(bcnt), free(p), free(y);
    }
    json_decref(root);
}

static void test_ood(void) {
    json_t *root = load("ood");
    if (!root) return;
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(root, "cases"), i, c) {
        const char *name = json_string_value(json_object_get(c, "name"));
        int n_in, n_out, len;
        double *si = getv(c, "s_in", &n_in), *so = getv(c, "s_out", &n_out), v;
        CHECK(vm_metric_auroc(n_in, si, n_out, so, &v) == 0, "%s auroc: %s", name, vm_errmsg());
        CHECK_SAME(v, getd(c, "auroc"), TOL, "%s auroc", name);
        CHECK(vm_metric_aupr(n_in, si, n_out, so, &v) == 0, "%s aupr: %s", name, vm_errmsg());
        CHECK_SAME(v, getd(c, "aupr"), TOL, "%s aupr", name);
        CHECK(vm_metric_fpr95(n_in, si, n_out, so, &v) == 0, "%s fpr95: %s", name, vm_errmsg());
        CHECK_SAME(v, getd(c, "fpr95"), TOL, "%s fpr95", name);
        double *gf = getv(c, "roc_fpr", &len), *gt = getv(c, "roc_tpr", NULL), *gh = getv(c, "roc_thr", NULL);
        int cap = n_in + n_out + 1, np_ = -1;
        double *f = malloc(cap * sizeof *f), *t = malloc(cap * sizeof *t), *h = malloc(cap * sizeof *h);
        CHECK(vm_metric_roc(n_in, si, n_out, so, f, t, h, &np_) == 0, "%s roc: %s", name, vm_errmsg());
        CHECK(np_ == len, "%s roc points %d vs %d", name, np_, len);
        int ok = np_ == len;
        for (int k = 0; ok && k < len; k++) {
            ok &= (isnan(f[k]) && isnan(gf[k])) || fabs(f[k] - gf[k]) <= TOL;
            ok &= (isnan(t[k]) && isnan(gt[k])) || fabs(t[k] - gt[k]) <= TOL;
            ok &= h[k] == gh[k];
        }
        CHECK(ok, "%s roc curve differs", name);
        free(f), free(t), free(h), free(gf), free(gt), free(gh), free(si), free(so);
    }
    json_decref(root);
}

static void test_aurc(void) {
    json_t *root = load("aurc");
    if (!root) return;
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(root, "cases"), i, c) {
        const char *name = json_string_value(json_object_get(c, "name"));
        int n, len, np_ = -1;
        double *conf = getv(c, "conf", &n), *loss = getv(c, "loss", NULL), v;
        double *gc = getv(c, "coverage", &len), *gr = getv(c, "risk", NULL);
        CHECK(vm_metric_aurc(n, conf, loss, &v) == 0, "%s aurc: %s", name, vm_errmsg());
        CHECK_SAME(v, getd(c, "aurc"), TOL, "%s aurc", name);
        double *cov = malloc(n * sizeof *cov), *risk = malloc(n * sizeof *risk);
        CHECK(vm_metric_risk_coverage(n, conf, loss, cov, risk, &np_) == 0, "%s curve: %s", name, vm_errmsg());
        int ok = np_ == len;
        for (int k = 0; ok && k < len; k++) ok &= fabs(cov[k] - gc[k]) <= TOL && fabs(risk[k] - gr[k]) <= TOL;
        CHECK(ok, "%s risk-coverage curve differs (%d vs %d points)", name, np_, len);
        free(cov), free(risk), free(gc), free(gr), free(conf), free(loss);
    }
    json_decref(root);
}

static void test_boot(void) {
    json_t *root = load("boot");
    if (!root) return;
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(root, "cases"), i, c) {
        const char *name = json_string_value(json_object_get(c, "name"));
        const char *kind = json_string_value(json_object_get(c, "kind"));
        int B = geti(c, "B");
        double level = getd(c, "level");
        uint64_t seed = (uint64_t)json_integer_value(json_object_get(c, "seed"));
        vm_boot bo = {0};
        int rc;
        if (!strcmp(kind, "auroc")) {
            int n_in, n_out;
            double *si = getv(c, "s_in", &n_in), *so = getv(c, "s_out", &n_out);
            vm_metric_ood_ctx ctx = {VM_METRIC_AUROC, n_in, n_out, si, so};
            rc = vm_metric_bootstrap(vm_metric_ood_fn, &ctx, n_in + n_out, B, level, seed, &bo);
            free(si), free(so);
        } else {
            double *p = getv(c, "p", NULL);
            int *y = getiv(c, "y");
            vm_metric_kind k = !strcmp(kind, "acc") ? VM_METRIC_ACC : !strcmp(kind, "ece") ? VM_METRIC_ECE : VM_METRIC_NLL;
            vm_metric_cls_ctx ctx = {k, geti(c, "C"), geti(c, "M"), p, y};
            rc = vm_metric_bootstrap(vm_metric_cls_fn, &ctx, geti(c, "n"), B, level, seed, &bo);
            free(p), free(y);
        }
        CHECK(rc == 0, "%s bootstrap: %s", name, vm_errmsg());
        CHECK_SAME(bo.point, getd(c, "point"), TOL, "%s point", name);
        CHECK_SAME(bo.lo, getd(c, "lo"), TOL, "%s lo", name);
        CHECK_SAME(bo.hi, getd(c, "hi"), TOL, "%s hi", name);
        CHECK(bo.n_valid == geti(c, "n_valid"), "%s n_valid %d vs %d", name, bo.n_valid, geti(c, "n_valid"));
    }
    json_decref(root);
}

static void test_temp(void) {
    json_t *root = load("temp");
    if (!root) return;
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(root, "cases"), i, c) {
        const char *name = json_string_value(json_object_get(c, "name"));
        int n = geti(c, "n"), C = geti(c, "C");
        double *z = getv(c, "logits", NULL), *pT = getv(c, "p_T", NULL), *ph = getv(c, "p_half", NULL);
        int *y = getiv(c, "y");
        double T = -1, gT = getd(c, "T"), v;
        CHECK(vm_temp_fit(n, C, z, y, &T) == 0, "%s fit: %s", name, vm_errmsg());
        CHECK_NEAR(T, gT, TOL * gT, name);
        CHECK(vm_temp_nll(n, C, z, y, gT, &v) == 0, "%s nll_T", name);
        CHECK_SAME(v, getd(c, "nll_T"), TOL, "%s nll at T", name);
        CHECK(vm_temp_nll(n, C, z, y, 1.0, &v) == 0, "%s nll_1", name);
        CHECK_SAME(v, getd(c, "nll_1"), TOL, "%s nll at 1", name);
        double *p = malloc((size_t)n * C * sizeof *p);
        int ok = vm_temp_apply(n, C, z, gT, p) == 0;
        for (int k = 0; ok && k < n * C; k++) ok &= fabs(p[k] - pT[k]) <= TOL;
        CHECK(ok, "%s apply at T", name);
        memcpy(p, z, (size_t)n * C * sizeof *p);
        ok = vm_temp_apply(n, C, p, 0.5, p) == 0;  // in place
        for (int k = 0; ok && k < n * C; k++) ok &= fabs(p[k] - ph[k]) <= TOL;
        CHECK(ok, "%s apply in place at T = 0.5", name);
        free(p), free(z), free(pT), free(ph), free(y);
    }
    json_decref(root);
}

static int nan_metric(void *ctx, int n, const int *idx, double *out) { *out = NAN; return 0; }
static int fail_metric(void *ctx, int n, const int *idx, double *out) { return vm_err("test: failing metric"); }

// Every bad input is an error with a message, never a crash.
static void test_errors(void) {
    double p[4] = {0.5, 0.5, 0.2, 0.8}, v, s[2] = {0.1, 0.2};
    int y[2] = {0, 1}, bad_y[2] = {0, 2};
    vm_ece_bin bins[3];
    vm_err_clear();
    CHECK(vm_metric_acc(0, 2, p, y, &v) == -1 && strstr(vm_errmsg(), "n = 0"), "n = 0: %s", vm_errmsg());
    CHECK(vm_ece(0, 2, p, y, 10, &v) == -1, "ece n = 0");
    CHECK(vm_ece_adaptive(-3, 2, p, y, 10, &v) == -1, "adaptive n < 0");
    CHECK(vm_metric_nll(2, 2, p, bad_y, &v) == -1 && strstr(vm_errmsg(), "label"), "bad label: %s", vm_errmsg());
    CHECK(vm_metric_brier(2, 0, p, y, &v) == -1, "C = 0");
    CHECK(vm_ece(2, 2, p, y, 0, &v) == -1, "M = 0");
    CHECK(vm_ece_reliability(2, 2, p, y, 3, NULL) == -1, "NULL bins");
    CHECK(vm_ece_classwise(2, 2, NULL, y, 3, &v) == -1, "NULL p");
    double q[4] = {0.5, 0.5, NAN, 0.8};
    CHECK(vm_ece_mce(2, 2, q, y, 3, &v) == -1 && strstr(vm_errmsg(), "(1,0)"), "NaN p: %s", vm_errmsg());
    q[2] = -1e-17;
    CHECK(vm_ece_signed(2, 2, q, y, 3, &v) == -1, "negative p");
    q[2] = 1.0000001;
    CHECK(vm_ece_reliability(2, 2, q, y, 3, bins) == -1, "p > 1");
    CHECK(vm_metric_cls((vm_metric_kind)99, 2, 2, p, y, 3, &v) == -1, "bad kind");
    CHECK(vm_metric_cls(VM_METRIC_AUROC, 2, 2, p, y, 3, &v) == -1, "OOD kind for cls");
    // OOD
    CHECK(vm_metric_auroc(0, s, 0, s, &v) == -1, "auroc on no scores");
    CHECK(vm_metric_aupr(-1, s, 2, s, &v) == -1, "negative n_in");
    CHECK(vm_metric_fpr95(2, NULL, 2, s, &v) == -1, "NULL s_in");
    double sn[2] = {0.1, INFINITY};
    CHECK(vm_metric_auroc(2, s, 2, sn, &v) == -1 && strstr(vm_errmsg(), "non-finite"), "inf score: %s", vm_errmsg());
    sn[1] = NAN;
    double rf[5], rt[5], rh[5];
    int rn;
    CHECK(vm_metric_roc(2, sn, 2, s, rf, rt, rh, &rn) == -1, "NaN score in roc");
    CHECK(vm_metric_roc(2, s, 2, s, NULL, rt, rh, &rn) == -1, "NULL roc output");
    CHECK(vm_metric_auroc(0, NULL, 2, s, &v) == 0 && isnan(v), "AUROC with no in-distribution is NaN");
    CHECK(vm_metric_fpr95(2, s, 0, NULL, &v) == 0 && isnan(v), "FPR95 with no OOD is NaN");
    // AURC
    CHECK(vm_metric_aurc(0, s, s, &v) == -1, "aurc n = 0");
    CHECK(vm_metric_aurc(2, sn, s, &v) == -1, "aurc NaN confidence");
    // bootstrap
    vm_boot bo;
    vm_metric_cls_ctx ctx = {VM_METRIC_ACC, 2, 10, p, y};
    CHECK(vm_metric_bootstrap(vm_metric_cls_fn, &ctx, 2, 0, 0.95, 1, &bo) == -1, "B = 0");
    CHECK(vm_metric_bootstrap(vm_metric_cls_fn, &ctx, 2, 10, 1.0, 1, &bo) == -1, "level 1");
    CHECK(vm_metric_bootstrap(vm_metric_cls_fn, &ctx, 0, 10, 0.95, 1, &bo) == -1, "bootstrap n = 0");
    CHECK(vm_metric_bootstrap(NULL, &ctx, 2, 10, 0.95, 1, &bo) == -1, "NULL callback");
    CHECK(vm_metric_bootstrap(nan_metric, NULL, 5, 10, 0.95, 1, &bo) == -1 && strstr(vm_errmsg(), "NaN"), "all NaN: %s", vm_errmsg());
    CHECK(vm_metric_bootstrap(fail_metric, NULL, 5, 10, 0.95, 1, &bo) == -1 && strstr(vm_errmsg(), "failing metric"),
          "callback error propagates: %s", vm_errmsg());
    vm_metric_ood_ctx octx = {VM_METRIC_ACC, 2, 2, s, s};
    CHECK(vm_metric_bootstrap(vm_metric_ood_fn, &octx, 4, 10, 0.95, 1, &bo) == -1, "cls kind for OOD callback");
    // temperature
    double z[4] = {1, 2, 3, 4}, T;
    CHECK(vm_temp_fit(0, 2, z, y, &T) == -1, "temp n = 0");
    CHECK(vm_temp_fit(2, 2, z, bad_y, &T) == -1, "temp bad label");
    z[3] = NAN;
    CHECK(vm_temp_fit(2, 2, z, y, &T) == -1, "temp NaN logit");
    z[3] = 4;
    CHECK(vm_temp_apply(2, 2, z, 0.0, p) == -1, "T = 0");
    CHECK(vm_temp_apply(2, 2, z, -1.0, p) == -1, "T < 0");
    CHECK(vm_temp_nll(2, 2, z, y, NAN, &v) == -1, "T NaN");
}

// Properties that hold whatever the data: order invariance, symmetry, determinism.
static void test_properties(void) {
    enum { NI = 300, NO = 200 };
    static double si[NI], so[NO], si2[NI], neg_i[NI], neg_o[NO];
    vm_rng r;
    vm_rng_seed(&r, 42);
    for (int i = 0; i < NI; i++) si[i] = (int)(vm_rng_uniform(&r) * 20);  // many ties
    for (int i = 0; i < NO; i++) so[i] = (int)(vm_rng_uniform(&r) * 20) + 3;
    for (int i = 0; i < NI; i++) si2[i] = si[NI - 1 - i], neg_i[i] = -si[i];
    for (int i = 0; i < NO; i++) neg_o[i] = -so[i];
    double a, b, c2;
    vm_metric_auroc(NI, si, NO, so, &a);
    vm_metric_auroc(NI, si2, NO, so, &b);
    CHECK(a == b, "AUROC depends on input order: %g vs %g", a, b);
    vm_metric_auroc(NI, neg_i, NO, neg_o, &c2);
    CHECK_NEAR(a + c2, 1.0, 1e-12, "AUROC(s) + AUROC(-s) = 1 with ties counted 1/2");
    vm_metric_auroc(NO, so, NI, si, &c2);
    CHECK_NEAR(a + c2, 1.0, 1e-12, "swapping the sets mirrors AUROC");
    // bootstrap: same seed same interval, another seed another interval
    static double p[500 * 2];
    static int y[500];
    double ece_sum = 0.0;
    for (int rep = 0; rep < 200; rep++) {  // a perfectly calibrated binary model on 500 questions
        for (int i = 0; i < 500; i++) {
            double conf = 0.5 + 0.5 * vm_rng_uniform(&r);
            p[2 * i] = conf, p[2 * i + 1] = 1 - conf;
            y[i] = vm_rng_uniform(&r) < conf ? 0 : 1;
        }
        double e;
        vm_ece(500, 2, p, y, 10, &e);
        ece_sum += e;
    }
    printf("mean ECE (10 bins) of a perfectly calibrated model on 500 questions: %.4f\n", ece_sum / 200);
    CHECK(ece_sum / 200 > 0.01 && ece_sum / 200 < 0.06, "calibrated ECE %g not ~0.03 (method.md 5.2)", ece_sum / 200);
    vm_metric_cls_ctx ctx = {VM_METRIC_ECE, 2, 10, p, y};
    vm_boot b1, b2, b3;
    CHECK(vm_metric_bootstrap(vm_metric_cls_fn, &ctx, 500, 200, 0.95, 9, &b1) == 0, "boot: %s", vm_errmsg());
    vm_metric_bootstrap(vm_metric_cls_fn, &ctx, 500, 200, 0.95, 9, &b2);
    vm_metric_bootstrap(vm_metric_cls_fn, &ctx, 500, 200, 0.95, 10, &b3);
    CHECK(b1.lo == b2.lo && b1.hi == b2.hi, "bootstrap not reproducible for a seed");
    CHECK(b1.lo != b3.lo || b1.hi != b3.hi, "bootstrap ignores the seed");
    CHECK(b1.lo < b1.hi && b1.n_valid == 200, "interval [%g, %g]", b1.lo, b1.hi);
    printf("ECE %.4f, 95%% bootstrap interval [%.4f, %.4f]\n", b1.point, b1.lo, b1.hi);
    // temperature: fitting on already tempered logits undoes the tempering
    static double z[500 * 2];
    for (int i = 0; i < 500; i++) {
        double l = log(p[2 * i] / p[2 * i + 1]);
        z[2 * i] = 3.0 * l, z[2 * i + 1] = 0.0;  // 3x over-confident logits
    }
    double T;
    CHECK(vm_temp_fit(500, 2, z, y, &T) == 0, "fit: %s", vm_errmsg());
    CHECK(T > 2.4 && T < 3.7, "T = %g should recover ~3", T);
    printf("temperature fitted on 3x over-confident logits: %.4f\n", T);
}

int main(void) {
    test_cls();
    test_ood();
    test_aurc();
    test_boot();
    test_temp();
    test_errors();
    test_properties();
    return TEST_SUMMARY();
}

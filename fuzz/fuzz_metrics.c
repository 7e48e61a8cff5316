// libFuzzer target: every metric of eval/metrics.h on arbitrary probability rows, labels, scores
// and logits (NaN, Inf, negative, > 1, labels out of range included). They must return 0 or -1 and
// never crash; on valid input (rows in [0,1], labels in range) they must succeed with results in
// their documented ranges.
//   byte 0: n - 1 (mod 32); byte 1: C - 1 (mod 8); byte 2: M - 1 (mod 16); byte 3: mode
//   (bit 0: values are raw float32 bit patterns instead of bytes / 255; bit 1: labels may be out
//   of range); then the values, then the labels (missing bytes read as 0).
#include "fuzz_common.h"
#include "eval/metrics.h"
#include "util/err.h"

#include <math.h>

typedef struct fuzz_src { const uint8_t *p; size_t n, pos; } fuzz_src;

static uint8_t next_byte(fuzz_src *s) { return s->pos < s->n ? s->p[s->pos++] : 0; }

static double next_val(fuzz_src *s, int raw) {
    if (!raw) return next_byte(s) / 255.0;
    uint32_t u = 0;
    for (int i = 0; i < 4; i++) u |= (uint32_t)next_byte(s) << (8 * i);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

#define RANGE01(x) ((x) >= 0.0 && (x) <= 1.0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 4) return 0;
    int n = data[0] % 32 + 1, C = data[1] % 8 + 1, M = data[2] % 16 + 1, raw = data[3] & 1, wild = data[3] & 2;
    fuzz_src s = {data + 4, size - 4, 0};
    double *p = malloc(sizeof(double) * (size_t)n * C), *z = malloc(sizeof(double) * (size_t)n * C);
    double *sc = malloc(sizeof(double) * (size_t)n), *loss = malloc(sizeof(double) * (size_t)n);
    double *cov = malloc(sizeof(double) * (size_t)n), *risk = malloc(sizeof(double) * (size_t)n);
    double *fpr = malloc(sizeof(double) * (size_t)(n + 1)), *tpr = malloc(sizeof(double) * (size_t)(n + 1));
    double *thr = malloc(sizeof(double) * (size_t)(n + 1)), *conf = malloc(sizeof(double) * (size_t)n);
    int *y = malloc(sizeof(int) * (size_t)n), *corr = malloc(sizeof(int) * (size_t)n);
    vm_ece_bin *bins = malloc(sizeof(vm_ece_bin) * (size_t)M);
    FUZZ_ASSERT(p && z && sc && loss && cov && risk && fpr && tpr && thr && conf && y && corr && bins);

    int valid = 1;
    for (int i = 0; i < n * C; i++) {
        p[i] = next_val(&s, raw);
        valid &= RANGE01(p[i]);
        z[i] = raw ? p[i] : (p[i] - 0.5) * 40;   // logits
    }
    for (int i = 0; i < n; i++) {
        uint8_t b = next_byte(&s);
        y[i] = wild ? (int)(int8_t)b : b % C;
        valid &= y[i] >= 0 && y[i] < C;
        sc[i] = p[i * C];
        loss[i] = p[i * C + (C > 1)];
    }

    double out = 0;
    int rc;
    // range checks allow an ulp: sums of n_m/n may pass 1 by rounding
#define CLS(call, lo, hi) do { rc = (call); FUZZ_ASSERT(rc == 0 || rc == -1); \
        if (valid) { FUZZ_ASSERT(rc == 0); FUZZ_ASSERT(out >= (lo) - 1e-12 && out <= (hi) + 1e-12); } } while (0)
    CLS(vm_metric_acc(n, C, p, y, &out), 0, 1);
    CLS(vm_metric_nll(n, C, p, y, &out), 0, 27.64);
    CLS(vm_metric_brier(n, C, p, y, &out), 0, (double)C);   // rows need not sum to 1 here
    CLS(vm_ece(n, C, p, y, M, &out), 0, 1);
    CLS(vm_ece_mce(n, C, p, y, M, &out), 0, 1);
    CLS(vm_ece_signed(n, C, p, y, M, &out), -1, 1);
    CLS(vm_ece_adaptive(n, C, p, y, M, &out), 0, 1);
    CLS(vm_ece_classwise(n, C, p, y, M, &out), 0, 1);
    rc = vm_metric_maxprob(n, C, p, y, conf, corr);
    FUZZ_ASSERT(valid ? rc == 0 : rc == 0 || rc == -1);
    rc = vm_ece_reliability(n, C, p, y, M, bins);
    if (rc == 0) { int tot = 0; for (int m = 0; m < M; m++) tot += bins[m].count; FUZZ_ASSERT(tot == n); }

    // OOD scores: split the n scores into in/out at a data-chosen point (either side may be empty)
    int n_in = y[0] >= 0 ? y[0] % (n + 1) : 0, n_out = n - n_in, np_ = 0;
    rc = vm_metric_auroc(n_in, sc, n_out, sc + n_in, &out);
    FUZZ_ASSERT(rc == -1 || isnan(out) || RANGE01(out));
    rc = vm_metric_aupr(n_in, sc, n_out, sc + n_in, &out);
    FUZZ_ASSERT(rc == -1 || isnan(out) || RANGE01(out));
    rc = vm_metric_fpr95(n_in, sc, n_out, sc + n_in, &out);
    FUZZ_ASSERT(rc == -1 || isnan(out) || RANGE01(out));
    rc = vm_metric_roc(n_in, sc, n_out, sc + n_in, fpr, tpr, thr, &np_);
    FUZZ_ASSERT(rc == -1 || (np_ >= 1 && np_ <= n + 1));

    rc = vm_metric_aurc(n, sc, loss, &out);
    FUZZ_ASSERT(rc == 0 || rc == -1);
    rc = vm_metric_risk_coverage(n, sc, loss, cov, risk, &np_);
    FUZZ_ASSERT(rc == -1 || (np_ >= 1 && np_ <= n && cov[np_ - 1] == 1.0));

    vm_metric_cls_ctx cc = {(vm_metric_kind)(data[3] >> 2) % (VM_METRIC_ECE_CLASSWISE + 1), C, M, p, y};
    vm_boot bo;
    rc = vm_metric_bootstrap(vm_metric_cls_fn, &cc, n, 8, 0.9, data[2], &bo);
    FUZZ_ASSERT(rc == 0 || rc == -1);
    if (rc == 0) FUZZ_ASSERT(bo.n_valid >= 1 && bo.n_valid <= 8 && !(bo.lo > bo.hi));
    vm_metric_ood_ctx oc = {VM_METRIC_AUROC + (data[3] >> 2) % 3, n_in, n_out, sc, sc + n_in};
    rc = vm_metric_bootstrap(vm_metric_ood_fn, &oc, n, 8, 0.9, data[2], &bo);
    FUZZ_ASSERT(rc == 0 || rc == -1);

    double T = -1;
    rc = vm_temp_fit(n, C, z, y, &T);
    FUZZ_ASSERT(rc == 0 || rc == -1);
    if (rc == 0) {
        FUZZ_ASSERT(T >= VM_TEMP_MIN && T <= VM_TEMP_MAX);
        FUZZ_ASSERT(vm_temp_nll(n, C, z, y, T, &out) == 0 && out >= 0);
        FUZZ_ASSERT(vm_temp_apply(n, C, z, T, p) == 0);
        for (int i = 0; i < n * C; i++) FUZZ_ASSERT(RANGE01(p[i]));
    }
    free(p); free(z); free(sc); free(loss); free(cov); free(risk); free(fpr); free(tpr); free(thr);
    free(conf); free(y); free(corr); free(bins);
    vm_err_clear();
    return 0;
}

// Full-parameter training (train/lm.h, the weight gradients of model/backward.c): every tensor's
// gradient of (next-token CE + lb_weight * load-balancing loss) against central finite
// differences on the golden random-weight models (dense, tied embeddings, stacked and per-expert
// MoE), a few coordinates per tensor; then a short run must lower the loss, and refusals.
//
// Errors are normalised per tensor: ||g - g_fd|| / max(||g||, ||g_fd||, floor) over the sampled
// coordinates. f32 forward noise (~1e-7 of L ~ 5) over a step of 2 eps = 2e-2 is ~3e-5 per
// coordinate (3e-4 with eps 1e-3); the floor 3e-3 on the norm turns the tolerance 2e-2 into an
// allowance of 6e-5 for tensors whose sampled gradients are tiny, while a wrong formula errs by the
// gradient's own size. Steps must not flip an expert selection (the loss jumps there).
#include "test.h"
#include "train/lm.h"
#include "model/train.h"
#include "util/err.h"
#include "util/rng.h"

#include <string.h>

#define GOLD "tests/golden/model/"
#define B 2
#define SEQ 7

static float kd_alpha;   // distillation weight of the model under test (0: no teacher)

static double objective(vm_lm *lm, const int32_t *tok, float lbw) {
    double ce, lb;
    if (vm_lm_loss(lm, tok, B, SEQ, lbw, 0, &ce, &lb)) return NAN;
    return (1.0 - kd_alpha) * ce + kd_alpha * vm_lm_kd_last(lm) + lbw * lb;
}

// teacher: a golden model whose next-token distribution is distilled with weight kd (NULL: none).
static void check_model_kd(const char *name, float lbw, float eps, const char *teacher, float kd) {
    char path[256];
    snprintf(path, sizeof path, GOLD "%s.gguf", name);
    vm_lm *lm = vm_lm_load(path);
    CHECK(lm != NULL, "%s: load: %s", name, vm_errmsg());
    if (!lm) return;
    vm_model *tm = NULL;
    kd_alpha = 0.0f;
    if (teacher) {
        snprintf(path, sizeof path, GOLD "%s.gguf", teacher);
        tm = vm_model_load(path);
        CHECK(tm && vm_lm_set_teacher(lm, tm, kd) == 0, "%s: teacher %s: %s", name, teacher, vm_errmsg());
        if (!tm) { vm_lm_free(lm); return; }
        kd_alpha = kd;
    }
    const int V = vm_model_n_vocab(vm_lm_model(lm));
    vm_rng r;
    vm_rng_seed2(&r, 7, 1);
    int32_t tok[B * (SEQ + 1)];
    for (int i = 0; i < B * (SEQ + 1); i++) tok[i] = (int32_t)(vm_rng_u64(&r) % (uint64_t)V);
    double ce, lb;
    CHECK(vm_lm_loss(lm, tok, B, SEQ, lbw, 1, &ce, &lb) == 0, "%s: loss: %s", name, vm_errmsg());
    const double L0 = ce + lbw * lb;
    CHECK(isfinite(L0), "%s: loss %g", name, L0);
    const int moe = vm_model_n_expert(vm_lm_model(lm)) > 0;
    if (moe) CHECK(lb >= 1.0 - 1e-9, "%s: load-balancing loss %g below its minimum 1", name, lb);
    double worst = 0;
    const char *worst_name = "";
    int n_checked = 0;
    const char *pname;
    float *w, *g;
    int64_t n;
    for (int i = 0; vm_lm_param(lm, i, &pname, &w, &g, &n) == 0; i++) {
        // a few random coordinates plus the one with the largest gradient
        int64_t idx[5];
        int64_t big = 0;
        for (int64_t j = 1; j < n; j++) if (fabsf(g[j]) > fabsf(g[big])) big = j;
        idx[0] = big;
        for (int k = 1; k < 5; k++) idx[k] = (int64_t)(vm_rng_u64(&r) % (uint64_t)n);
        double num = 0, na = 0, nf = 0;
        for (int k = 0; k < 5; k++) {
            const float keep = w[idx[k]];
            w[idx[k]] = keep + eps;
            const double lp = objective(lm, tok, lbw);
            w[idx[k]] = keep - eps;
            const double lm_ = objective(lm, tok, lbw);
            w[idx[k]] = keep;
            const double fd = (lp - lm_) / (2.0 * eps), ga = g[idx[k]];
            num += (ga - fd) * (ga - fd); na += ga * ga; nf += fd * fd;
        }
        double den = na > nf ? na : nf;
        if (den < 9e-6) den = 9e-6;
        const double err = sqrt(num / den);
        if (err > worst) { worst = err; worst_name = pname; }
        CHECK(err <= 2e-2, "%s: tensor %s gradient error %.3g (|g| %.3g, |fd| %.3g)", name, pname, err, sqrt(na), sqrt(nf));
        n_checked++;
    }
    printf("%-12s %2d tensors, lb_weight %.2f, kd %.2f: loss %.4f lb %.4f; worst normalised gradient error %.2g (%s)\n",
           name, n_checked, (double)lbw, (double)kd_alpha, ce, lb, worst, worst_name);
    if (teacher) {   // the soft-target CE is at least the teacher's entropy, and differs from the hard CE
        CHECK(isfinite(vm_lm_kd_last(lm)) && fabs(vm_lm_kd_last(lm) - ce) > 1e-3, "%s: kd term %g vs ce %g", name,
              vm_lm_kd_last(lm), ce);
    }
    vm_lm_free(lm);
    vm_model_free(tm);
    kd_alpha = 0.0f;
}

static void check_model(const char *name, float lbw, float eps) { check_model_kd(name, lbw, eps, NULL, 0.0f); }

// The same gradient buffers accumulate: two calls give twice the gradient.
static void check_accumulate(void) {
    vm_lm *lm = vm_lm_load(GOLD "moe_stacked.gguf");
    CHECK(lm != NULL, "load: %s", vm_errmsg());
    if (!lm) return;
    int32_t tok[B * (SEQ + 1)];
    for (int i = 0; i < B * (SEQ + 1); i++) tok[i] = (int32_t)((i * 7 + 3) % vm_model_n_vocab(vm_lm_model(lm)));
    double ce, lb;
    float *g;
    int64_t n;
    vm_lm_param(lm, 1, NULL, NULL, &g, &n);
    vm_lm_loss(lm, tok, B, SEQ, 0.01f, 1, &ce, &lb);
    float *once = malloc((size_t)n * sizeof(float));
    memcpy(once, g, (size_t)n * sizeof(float));
    vm_lm_loss(lm, tok, B, SEQ, 0.01f, 1, &ce, &lb);
    double d = 0;
    for (int64_t j = 0; j < n; j++) d = fmax(d, fabs(g[j] - 2.0 * once[j]));
    CHECK(d <= 1e-6, "gradients do not accumulate: max |g2 - 2 g1| %g", d);
    free(once);
    vm_lm_free(lm);
}

// Training on a repeated pattern must drive the loss down (the whole loop, written and reread).
static void check_learns(void) {
    vm_lm *lm = vm_lm_load(GOLD "moe_split.gguf");
    CHECK(lm != NULL, "load: %s", vm_errmsg());
    if (!lm) return;
    const int V = vm_model_n_vocab(vm_lm_model(lm));
    int32_t text[600];
    for (int i = 0; i < 600; i++) text[i] = (int32_t)((i % 5) * 3 % V);
    vm_lm_opts o;
    vm_lm_opts_default(&o);
    o.steps = 40; o.seq = 8; o.batch = 4; o.lr = 1e-2f; o.eval_every = 0; o.eval_windows = 8; o.progress = 2;
    vm_lm_stats st;
    const char *out = "build/test_train_out.gguf";
    CHECK(vm_lm_train(lm, text, 500, text + 500, 100, &o, out, &st) == 0, "train: %s", vm_errmsg());
    printf("learns: val loss %.4f -> %.4f (best step %lld), train %.4f -> %.4f\n", st.val_init, st.val_best,
           (long long)st.best_step, st.train_first, st.train_last);
    CHECK(st.val_best < 0.5 * st.val_init, "validation loss did not halve: %g -> %g", st.val_init, st.val_best);
    vm_lm_free(lm);
    vm_lm *back = vm_lm_load(out);
    CHECK(back != NULL, "reload: %s", vm_errmsg());
    if (back) {
        double ce, lb;
        CHECK(vm_lm_loss(back, text + 500, 1, 8, 0, 0, &ce, &lb) == 0 && ce < st.val_init, "reloaded model loss %g", ce);
        vm_lm_free(back);
    }
    remove(out);
}

static void check_refusals(void) {
    vm_lm *lm = vm_lm_load(GOLD "moe_f16.gguf");
    CHECK(lm == NULL && strstr(vm_errmsg(), "f32"), "f16 weights must be refused: %s", lm ? "loaded" : vm_errmsg());
    vm_lm_free(lm);
    lm = vm_lm_load("tests/golden/model/does-not-exist.gguf");
    CHECK(lm == NULL && strstr(vm_errmsg(), "does-not-exist"), "missing file: %s", vm_errmsg());
}

int main(void) {
    check_model("dense", 0.0f, 1e-2f);
    check_model("tied", 0.0f, 1e-2f);
    check_model("moe_stacked", 0.0f, 1e-2f);
    check_model("moe_stacked", 0.5f, 1e-2f);
    // moe_split routes some tokens of layer 0 near a tie: a step of 1e-2 on W_r flips the selection
    check_model("moe_split", 0.5f, 1e-3f);
    // distillation: the soft-target term's gradient too (teacher: the golden dense model)
    check_model_kd("moe_stacked", 0.5f, 1e-2f, "dense", 0.7f);
    check_model_kd("dense", 0.0f, 1e-2f, "tied", 1.0f);
    check_accumulate();
    check_learns();
    check_refusals();
    return TEST_SUMMARY();
}

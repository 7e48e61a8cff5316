// The swag router (router_swag.c, docs/method.md §3.4):
// (a) the moment collector -- alone and through the router's collect/finish -- against
//     tests/golden/swag/moments.txt, written by NumPy (tests/reference/swag_ref.py) from a recorded
//     SGD trajectory with the plain (non-running) formulas;
// (b) the sampler: mean and covariance of 1e5 logit samples of one token against the Gaussian the
//     stored moments define, N(W_bar u, U Sigma_W U^T) with Sigma_W = scale (diag(var)/2 +
//     Dev Dev^T / (2(k-1))) built here, each entry within 5 Monte-Carlo standard errors (mean:
//     sqrt(C_ii/n); covariance: sqrt((C_ii C_jj + C_ij^2)/n), the Gaussian SE of a sample covariance);
//     a wrong factor such as 1/(2k) for 1/(2(k-1)) (k = 4: 25 % off) is ~50 SE away; and the
//     one-pass forward's p_bar and prob_var against a Monte-Carlo estimate drawn here from that
//     Gaussian through its Cholesky factor;
// (c) a real fit on a tiny upcycled stories260K MoE: the collection phase runs, the adapter
//     round-trips bit for bit, and hostile adapters (negative variance, no deviation matrix, a rank
//     that disagrees with it) are refused with one line, leaving the model unchanged.
#include "test.h"
#include "convert/convert.h"
#include "data/dataset.h"
#include "model/model.h"
#include "router/router.h"
#include "router/router_swag.h"
#include "train/adapter.h"
#include "train/fit.h"
#include "util/err.h"
#include "util/rng.h"

#include <omp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define GOLD "tests/golden/swag/moments.txt"

typedef struct golden {
    int D, N, steps, c, k;
    double *traj, *mean, *var, *dev;   // (steps, n), (n), (n), (k, n)
} golden;

static int read_golden(golden *g) {
    FILE *f = fopen(GOLD, "r");
    if (!f) return -1;
    char line[256];
    long pos = 0;
    while (fgets(line, sizeof line, f) && line[0] == '#') pos = ftell(f);   // the comment lines
    fseek(f, pos, SEEK_SET);
    int ok = fscanf(f, "%d %d %d %d %d", &g->D, &g->N, &g->steps, &g->c, &g->k) == 5;
    const int n = g->D * g->N;
    g->traj = malloc(sizeof(double) * g->steps * n); g->mean = malloc(sizeof(double) * n);
    g->var = malloc(sizeof(double) * n); g->dev = malloc(sizeof(double) * g->k * n);
    for (int i = 0; ok && i < g->steps * n; i++) ok = fscanf(f, "%lf", &g->traj[i]) == 1;
    for (int i = 0; ok && i < n; i++) ok = fscanf(f, "%lf", &g->mean[i]) == 1;
    for (int i = 0; ok && i < n; i++) ok = fscanf(f, "%lf", &g->var[i]) == 1;
    for (int i = 0; ok && i < g->k * n; i++) ok = fscanf(f, "%lf", &g->dev[i]) == 1;
    fclose(f);
    return ok ? 0 : -1;
}

// |got - want| within 1e-6 relative (float storage of double moments) plus a small absolute floor
static int close_to(const float *got, const double *want, int n, double floor_, const char *what) {
    int bad = 0;
    for (int i = 0; i < n; i++)
        if (!(fabs(got[i] - want[i]) <= 1e-6 * fabs(want[i]) + floor_)) {
            if (bad++ < 3) fprintf(stderr, "  %s[%d]: %.9g vs %.9g\n", what, i, (double)got[i], want[i]);
        }
    return bad == 0;
}

static void test_moments_golden(void) {
    golden g;
    if (read_golden(&g)) { CHECK(0, "read %s", GOLD); return; }
    const int n = g.D * g.N, k = g.k;
    float *theta = malloc(sizeof(float) * n), *mean = malloc(sizeof(float) * n), *var = malloc(sizeof(float) * n),
          *dev = malloc(sizeof(float) * k * n);
    // the collector alone
    vm_swag_moments m;
    CHECK(vm_swag_moments_init(&m, n, k) == 0, "init");
    int snaps = 0;
    for (int s = 0; s < g.steps; s++) {
        if ((s + 1) % g.c) continue;
        for (int i = 0; i < n; i++) theta[i] = (float)g.traj[(size_t)s * n + i];
        vm_swag_moments_add(&m, theta);
        snaps++;
    }
    CHECK(vm_swag_moments_get(&m, mean, var, dev) == k && snaps > k, "k filled columns of %d snapshots", snaps);
    CHECK(close_to(mean, g.mean, n, 1e-9, "mean"), "collector mean == NumPy");
    CHECK(close_to(var, g.var, n, 1e-9, "var"), "collector variance == NumPy");
    CHECK(close_to(dev, g.dev, k * n, 1e-8, "dev"), "collector deviations == NumPy (last k, oldest first)");
    vm_swag_moments_free(&m);
    // fewer snapshots than columns: zero columns after the filled ones
    CHECK(vm_swag_moments_init(&m, n, k) == 0, "init");
    for (int i = 0; i < n; i++) theta[i] = (float)g.traj[i];
    vm_swag_moments_add(&m, theta);
    vm_swag_moments_add(&m, theta);
    int zeros = 1;
    CHECK(vm_swag_moments_get(&m, mean, var, dev) == 2, "2 filled columns");
    for (int i = 2 * n; i < k * n; i++) zeros &= dev[i] == 0.0f;
    for (int i = 0; i < n; i++) zeros &= var[i] == 0.0f;   // a constant weight: no spread, not a negative one
    CHECK(zeros, "unfilled columns and the variance of a repeated snapshot are 0");
    vm_swag_moments_free(&m);

    // the same trajectory through the router: W_r (N, D) row-major is the golden's layout
    float *w0 = calloc((size_t)n, sizeof(float));
    vm_tensor wt;
    vm_tensor_init(&wt, "w", VM_TYPE_F32, 2, (int64_t[]){ g.D, g.N }, w0);
    const vm_router_layer L = { .layer = 1, .n_embd = g.D, .n_expert = g.N, .n_expert_used = 1,
                                .conv = VM_GATE_SOFTMAX_SELECTED, .w_gate = &wt, .weights_scale = 1.0f };
    vm_router_opts o;
    vm_router_opts_default(&o);
    o.swag_rank = k;
    vm_router *r = vm_router_create("swag", &L, &o);
    CHECK(r && r->n_params == 3 && r->ops->collect && r->ops->finish, "swag create: %s", vm_errmsg());
    if (r) {
        for (int s = 0; s < g.steps; s++) {
            for (int i = 0; i < n; i++) r->params[0].w[i] = (float)g.traj[(size_t)s * n + i];
            if ((s + 1) % g.c == 0) CHECK(r->ops->collect(r) == 0, "collect");
        }
        CHECK(r->ops->finish(r) == 0, "finish");
        CHECK(close_to(r->params[0].w, g.mean, n, 1e-9, "swag.w_r"), "swag.w_r = the SWA mean");
        CHECK(close_to(r->params[1].w, g.var, n, 1e-9, "swag.var"), "swag.var = the diagonal variance");
        CHECK(close_to(r->params[2].w, g.dev, k * n, 1e-8, "swag.dev"), "swag.dev = the deviation columns");
        CHECK(r->params[2].ne[0] == n && r->params[2].ne[1] == k, "swag.dev is [D N, k]");
        CHECK(r->ops->finish(r) < 0, "a second finish without snapshots refused");
        CHECK(r->ops->check(r) == 0, "the fitted variance passes the check");
        r->params[1].w[3] = -1e-3f;
        CHECK(r->ops->check(r) < 0 && strstr(vm_errmsg(), "swag.var[3]"), "negative variance refused: %s", vm_errmsg());
    }
    vm_router_free(r);
    free(w0); free(theta); free(mean); free(var); free(dev);
    free(g.traj); free(g.mean); free(g.var); free(g.dev);
}

// The Gaussian of token u's logits the stored moments define, built here from the weight-space
// covariance: mu (N) = W_bar u, C (N,N) = U Sigma_W U^T.
static void logit_gaussian(const vm_router *r, const vm_router_layer *L, const float *u, float scale, int k,
                           double mu[8], double C[8][8]) {
    const int D = L->n_embd, N = L->n_expert, n = D * N;
    const float *wb = r->params[0].w, *var = r->params[1].w, *dev = r->params[2].w;
    // Sigma_W (n, n), entry (iD + d, jD + e) for W_{i,d}, W_{j,e}
    double *SW = calloc((size_t)n * n, sizeof(double));
    for (int a = 0; a < n; a++) {
        SW[(size_t)a * n + a] += 0.5 * var[a];
        for (int b = 0; b < n; b++) {
            double s = 0.0;
            for (int j = 0; j < k; j++) s += (double)dev[(size_t)j * n + a] * dev[(size_t)j * n + b];
            SW[(size_t)a * n + b] += s / (2.0 * (k - 1));
        }
    }
    for (int i = 0; i < N; i++) {
        mu[i] = 0.0;
        for (int d = 0; d < D; d++) mu[i] += (double)wb[i * D + d] * u[d];
        for (int j = 0; j < N; j++) {
            double c = 0.0;
            for (int d = 0; d < D; d++)
                for (int e = 0; e < D; e++) c += (double)u[d] * u[e] * SW[(size_t)(i * D + d) * n + j * D + e];
            C[i][j] = scale * c;
        }
    }
    free(SW);
}

// Sample mean and covariance of n logit draws of token u against N(W_bar u, U Sigma_W U^T).
static void check_samples(vm_router *r, const vm_router_layer *L, const float *u, float scale, int k, const char *what) {
    enum { S = 100000 };
    const int N = L->n_expert;
    double mu[8], C[8][8];
    logit_gaussian(r, L, u, scale, k, mu, C);
    float *out = malloc(sizeof(float) * (size_t)S * N);
    vm_rng g;
    vm_rng_seed(&g, 2026);
    CHECK(vm_swag_token_logits(r, L, u, S, &g, out) == 0, "%s: sample: %s", what, vm_errmsg());
    double m[8] = {0}, c[8][8] = {{0}};
    for (int s = 0; s < S; s++) for (int i = 0; i < N; i++) m[i] += out[(size_t)s * N + i];
    for (int i = 0; i < N; i++) m[i] /= S;
    for (int s = 0; s < S; s++)
        for (int i = 0; i < N; i++)
            for (int j = 0; j < N; j++) c[i][j] += (out[(size_t)s * N + i] - m[i]) * (out[(size_t)s * N + j] - m[j]);
    for (int i = 0; i < N; i++) {
        CHECK(fabs(m[i] - mu[i]) <= 5.0 * sqrt(C[i][i] / S) + 1e-6, "%s: mean %d: %.6g vs %.6g (SE %.3g)", what, i,
              m[i], mu[i], sqrt(C[i][i] / S));
        for (int j = 0; j < N; j++) {
            const double ch = c[i][j] / (S - 1), se = sqrt((C[i][i] * C[j][j] + C[i][j] * C[i][j]) / S);
            CHECK(fabs(ch - C[i][j]) <= 5.0 * se + 1e-9, "%s: cov %d,%d: %.6g vs %.6g (SE %.3g)", what, i, j, ch,
                  C[i][j], se);
        }
    }
    free(out);
}

// The router's one-pass inference output for token u against an independent Monte-Carlo estimate:
// p_bar = E[softmax(l)] and prob_var = sum_i Var[softmax(l)_i] under l ~ N(mu, C), drawn here through
// a Cholesky factor of C with another generator. Tolerances: 5 combined standard errors for p_bar,
// 5 % for prob_var (S = 50000 samples in the router, 200000 here).
static void check_forward(vm_router *r, const vm_router_layer *L, const float *u, float scale, int k, const char *what) {
    enum { SR = 50000, SM = 200000 };
    const int N = L->n_expert;
    double mu[8], C[8][8], Lc[8][8] = {{0}};
    logit_gaussian(r, L, u, scale, k, mu, C);
    for (int i = 0; i < N; i++)   // Cholesky (C is positive definite: the diagonal part is)
        for (int j = 0; j <= i; j++) {
            double a = C[i][j];
            for (int q = 0; q < j; q++) a -= Lc[i][q] * Lc[j][q];
            Lc[i][j] = i == j ? sqrt(a) : a / Lc[j][j];
        }
    double pm[8] = {0}, p2[8] = {0};
    vm_rng g;
    vm_rng_seed(&g, 99);
    for (int s = 0; s < SM; s++) {
        double z[8], l[8], mx = -1e300, den = 0.0;
        for (int i = 0; i < N; i++) z[i] = vm_rng_normal(&g);
        for (int i = 0; i < N; i++) {
            l[i] = mu[i];
            for (int j = 0; j <= i; j++) l[i] += Lc[i][j] * z[j];
            mx = fmax(mx, l[i]);
        }
        for (int i = 0; i < N; i++) den += exp(l[i] - mx);
        for (int i = 0; i < N; i++) { const double p = exp(l[i] - mx) / den; pm[i] += p; p2[i] += p * p; }
    }
    double pv = 0.0;
    for (int i = 0; i < N; i++) { pm[i] /= SM; p2[i] = p2[i] / SM - pm[i] * pm[i]; pv += p2[i]; }
    vm_router_opts o;   // the same posterior in a router drawing SR samples
    vm_router_opts_default(&o);
    o.samples = SR; o.swag_rank = k; o.swag_scale = scale;
    vm_router *rs = vm_router_create("swag", L, &o);
    if (!rs) { CHECK(0, "%s: create: %s", what, vm_errmsg()); return; }
    for (int p = 0; p < 3; p++)
        memcpy(rs->params[p].w, r->params[p].w, sizeof(float) * (size_t)(r->params[p].ne[0] * r->params[p].ne[1]));
    float lo[8], pr[8], ga[8], un[VM_UNC_COUNT];
    int32_t se[8];
    vm_router_out out = { lo, pr, se, ga, un };
    vm_rng_seed(&g, 5);
    CHECK(rs->ops->forward(rs, L, u, 1, &out, &g) == 0, "%s: forward: %s", what, vm_errmsg());
    vm_router_free(rs);
    for (int i = 0; i < N; i++) {
        const double se_i = sqrt(p2[i] / SR + p2[i] / SM);
        CHECK(fabs(pr[i] - pm[i]) <= 5.0 * se_i + 1e-6, "%s: p_bar %d: %.6g vs %.6g (SE %.2g)", what, i, (double)pr[i], pm[i], se_i);
        CHECK(fabs(lo[i] - mu[i]) <= 1e-4 * (1.0 + fabs(mu[i])), "%s: logits = W_bar u", what);
    }
    CHECK(fabs(un[VM_UNC_PROB_VAR] - pv) <= 0.05 * pv, "%s: prob_var %.6g vs %.6g", what, (double)un[VM_UNC_PROB_VAR], pv);
    CHECK(isfinite(un[VM_UNC_GATE_ENTROPY]) && un[VM_UNC_DISAGREEMENT] >= 0.0f && isnan(un[VM_UNC_ILV]),
          "%s: the declared read-outs, NaN for the others", what);
}

static void test_sampler(void) {
    const int D = 5, N = 3, k = 4, n = D * N;
    float *w0 = calloc((size_t)n, sizeof(float));
    vm_tensor wt;
    vm_tensor_init(&wt, "w", VM_TYPE_F32, 2, (int64_t[]){ D, N }, w0);
    const vm_router_layer L = { .layer = 1, .n_embd = D, .n_expert = N, .n_expert_used = 2,
                                .conv = VM_GATE_SOFTMAX_ALL, .w_gate = &wt, .weights_scale = 1.0f };
    const float scales[2] = { 1.0f, 0.4f };
    for (int si = 0; si < 2; si++) {
        vm_router_opts o;
        vm_router_opts_default(&o);
        o.swag_rank = k; o.swag_scale = scales[si];
        vm_router *r = vm_router_create("swag", &L, &o);
        if (!r) { CHECK(0, "create: %s", vm_errmsg()); continue; }
        vm_rng g;
        vm_rng_seed(&g, 7);
        for (int i = 0; i < n; i++) {
            r->params[0].w[i] = vm_rng_normal(&g);
            const float sd = 0.3f * vm_rng_normal(&g);
            r->params[1].w[i] = sd * sd;
        }
        for (int i = 0; i < k * n; i++) r->params[2].w[i] = 0.5f * vm_rng_normal(&g);
        float u[5], e2[5] = { 0, 0, 1, 0, 0 };   // e2: the logits are W's column 2 itself
        for (int d = 0; d < D; d++) u[d] = vm_rng_normal(&g);
        char what[64];
        snprintf(what, sizeof what, "scale %g, random u", (double)scales[si]);
        check_samples(r, &L, u, scales[si], k, what);
        snprintf(what, sizeof what, "scale %g, u = e_2", (double)scales[si]);
        check_samples(r, &L, e2, scales[si], k, what);
        snprintf(what, sizeof what, "scale %g, forward", (double)scales[si]);
        check_forward(r, &L, u, scales[si], k, what);
        vm_router_free(r);
    }
    free(w0);
}

// A short swag fit on layer 4 of a tiny upcycled MoE; the adapter round trip and hostile adapters.
static void test_fit_and_adapter(void) {
    char dir[] = "/tmp/vmoer_swag_XXXXXX";
    if (!mkdtemp(dir)) { CHECK(0, "mkdtemp"); return; }
    const char *sh = test_shared_dir();
    char src[512], tk[512], data[512], dense[128], moe[128], ad[128], bad[128];
    snprintf(src, sizeof src, "%s/models/stories260K.bin", sh);
    snprintf(tk, sizeof tk, "%s/models/tok512.bin", sh);
    snprintf(data, sizeof data, "%s/data/mcqa/openbookqa/train.jsonl", sh);
    snprintf(dense, sizeof dense, "%s/d.gguf", dir); snprintf(moe, sizeof moe, "%s/moe.gguf", dir);
    snprintf(ad, sizeof ad, "%s/a.gguf", dir); snprintf(bad, sizeof bad, "%s/bad.gguf", dir);
    vm_upcycle_opts uo = { .n_expert = 4, .n_expert_used = 2, .noise = 0.05f, .router_std = VM_UPCYCLE_ROUTER_STD, .seed = 1 };
    CHECK(vm_convert_llama2c(src, tk, dense, VM_TYPE_F32, NULL) == 0, "convert: %s", vm_errmsg());
    CHECK(vm_upcycle(dense, moe, &uo) == 0, "upcycle: %s", vm_errmsg());
    vm_dataset ds;
    vm_dataset_opts dop; vm_dataset_opts_default(&dop); dop.limit = 16;
    CHECK(vm_dataset_load(&ds, data, &dop) == 0, "data: %s", vm_errmsg());
    vm_model *m = vm_model_load(moe), *m2 = vm_model_load(moe);
    vm_tokenizer *tok = m ? vm_tokenizer_from_gguf(m->gguf) : NULL;
    if (!m || !m2 || !tok) { CHECK(0, "load: %s", vm_errmsg()); goto out; }
    vm_fit_opts o;
    vm_fit_opts_default(&o);
    o.kind = "swag"; o.n_layers = 1; o.layers[0] = 4; o.epochs = 2; o.batch = 4; o.val_frac = 0.25f;
    o.seed = 3; o.progress = 2; o.system = "Answer with a letter."; o.prior_sd = 0.0f;
    o.swag_rank = 4; o.swag_every = 2;
    vm_fit_stats st;
    CHECK(vm_fit_run(m, tok, &ds, &o, ad, &st) == 0, "swag fit: %s", vm_errmsg());
    CHECK(st.swag_snapshots == 4 && st.swag_every == 2 && st.swag_steps == 8 && st.swag_lr > 0.0f,
          "collection phase: %d snapshots every %d (%lld steps, lr %g)", st.swag_snapshots, st.swag_every,
          (long long)st.swag_steps, (double)st.swag_lr);
    CHECK(isfinite(st.swag_val_nll), "the sampled posterior validated: %g", st.swag_val_nll);
    const vm_router *r = m->routers[4];
    CHECK(r && !strcmp(r->ops->name, "swag"), "layer 4 routed by swag");
    double vs = 0.0, ds2 = 0.0;
    const int64_t nw = r->params[1].ne[0] * r->params[1].ne[1];
    for (int64_t i = 0; i < nw; i++) vs += r->params[1].w[i];
    for (int64_t i = 0; i < r->params[2].ne[0] * r->params[2].ne[1]; i++) ds2 += (double)r->params[2].w[i] * r->params[2].w[i];
    CHECK(vs > 0.0 && ds2 > 0.0, "the fit collected a spread (sum var %g, |Dev|^2 %g)", vs, ds2);
    printf("swag fit: %d snapshots every %d steps at lr %g, val nll %.4f -> %.4f (MAP) -> %.4f (SWAG), mean var %.3g\n",
           st.swag_snapshots, st.swag_every, (double)st.swag_lr, st.val_nll_init, st.val_nll_best, st.swag_val_nll,
           vs / (double)nw);
    // round trip: the loaded parameters are the fitted ones, bit for bit
    CHECK(vm_adapter_apply(m2, ad) == 0, "apply: %s", vm_errmsg());
    const vm_router *r2 = m2->routers[4];
    int same = r2 && r2->n_params == r->n_params && !strcmp(r2->ops->name, "swag");
    for (int j = 0; same && j < r->n_params; j++)
        same = !memcmp(r->params[j].w, r2->params[j].w, sizeof(float) * (size_t)(r->params[j].ne[0] * r->params[j].ne[1]));
    CHECK(same, "adapter round trip: the same mean, variance and deviations");

    // hostile adapters, written from m's router with one thing wrong each; a fresh model refuses them
    vm_model *m3 = vm_model_load(moe);
    vm_adapter_info ai;
    memset(&ai, 0, sizeof ai);
    snprintf(ai.kind, sizeof ai.kind, "swag");
    ai.n_layers = 1; ai.layers[0] = 4;
    vm_router_opts_default(&ai.opts);
    ai.opts.swag_rank = 4; ai.opts.beta = 0.0f;
    vm_router *rw = m->routers[4];
    const float keep = rw->params[1].w[5];
    rw->params[1].w[5] = -0.25f;
    CHECK(vm_adapter_write(m, &ai, bad, NULL, NULL) == 0, "write: %s", vm_errmsg());
    rw->params[1].w[5] = keep;
    CHECK(m3 && vm_adapter_apply(m3, bad) < 0 && strstr(vm_errmsg(), "cannot be negative") && !strchr(vm_errmsg(), '\n'),
          "negative variance refused in one line: %s", vm_errmsg());
    CHECK(m3 && !strcmp(m3->routers[4]->ops->name, "deterministic"), "a refused adapter leaves the model unchanged");
    rw->n_params = 2;   // the deviation matrix left out
    CHECK(vm_adapter_write(m, &ai, bad, NULL, NULL) == 0, "write: %s", vm_errmsg());
    rw->n_params = 3;
    CHECK(m3 && vm_adapter_apply(m3, bad) < 0 && strstr(vm_errmsg(), "swag.dev missing"), "no deviation matrix refused: %s", vm_errmsg());
    ai.opts.swag_rank = 5;   // the key says 5 columns, the tensor has 4
    CHECK(vm_adapter_write(m, &ai, bad, NULL, NULL) == 0, "write: %s", vm_errmsg());
    CHECK(m3 && vm_adapter_apply(m3, bad) < 0 && strstr(vm_errmsg(), "swag.dev"), "rank mismatch refused: %s", vm_errmsg());
    ai.opts.swag_rank = 100000;   // absurd: refused before anything is allocated
    CHECK(vm_adapter_write(m, &ai, bad, NULL, NULL) == 0, "write: %s", vm_errmsg());
    CHECK(m3 && vm_adapter_apply(m3, bad) < 0 && strstr(vm_errmsg(), "swag rank 100000"), "rank out of range refused: %s", vm_errmsg());
    vm_model_free(m3);

    // stopped during the MAP phase and resumed: the collection phase runs after the resume and the
    // adapter has the uninterrupted fit's bytes
    {
        vm_model *ma = vm_model_load(moe);
        char ad2[160];
        snprintf(ad2, sizeof ad2, "%s/a2.gguf", dir);
        vm_fit_opts o2 = o;
        o2.stop_after = 2;
        CHECK(ma && vm_fit_run(ma, tok, &ds, &o2, ad2, &st) == 0 && st.interrupted && st.swag_snapshots == 0,
              "stopped after 2 steps, before the collection phase: %s", vm_errmsg());
        vm_model_free(ma);
        ma = vm_model_load(moe);
        o2.stop_after = 0; o2.resume = 1;
        CHECK(ma && vm_fit_run(ma, tok, &ds, &o2, ad2, &st) == 0 && st.resumed && st.swag_snapshots == 4,
              "resumed: %s", vm_errmsg());
        FILE *fa = fopen(ad, "rb"), *fb = fopen(ad2, "rb");
        int same_bytes = fa && fb;
        for (int ca = 0, cb = 0; same_bytes && (ca != EOF || cb != EOF);) {
            ca = fgetc(fa); cb = fgetc(fb);
            same_bytes = ca == cb;
        }
        if (fa) fclose(fa);
        if (fb) fclose(fb);
        CHECK(same_bytes, "resumed swag adapter == uninterrupted adapter");
        vm_model_free(ma);
        unlink(ad2);
    }
out:
    vm_dataset_free(&ds);
    vm_tokenizer_free(tok); vm_model_free(m); vm_model_free(m2);
    unlink(dense); unlink(moe); unlink(ad); unlink(bad);
    char ck[160];
    snprintf(ck, sizeof ck, "%s.ckpt", ad);
    unlink(ck);
    rmdir(dir);
}

int main(void) {
    // correctness, not speed: one thread keeps it fast on a loaded machine (OpenMP barriers spin);
    // the thread-count independence is test_router_threads' and fit_determinism.sh's
    omp_set_num_threads(1);
    test_moments_golden();
    test_sampler();
    test_fit_and_adapter();
    return TEST_SUMMARY();
}

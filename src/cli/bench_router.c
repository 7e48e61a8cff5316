// Router benchmarks of `vmoer bench` (see bench_router.h). Numbers from a busy machine are noise:
// the comparisons interleave their two sides so that drift slows both alike.
#include "cli/bench_router.h"
#include "cli/cli.h"
#include "convert/convert.h"
#include "gguf/gguf.h"
#include "kernels/ops.h"
#include "kernels/simd.h"
#include "model/model.h"
#include "quant/quant.h"
#include "model/train.h"
#include "router/router.h"
#include "train/fit.h"
#include "train/optim.h"
#include "util/err.h"
#include "util/progress.h"
#include "util/rng.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

static const char *CMD = "bench";

// CPU seconds of the whole process (all threads): on a shared machine a steadier measure of work.
static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Peak resident set size of this process (kB), or -1.
static long vm_hwm_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kb = strtol(line + 6, NULL, 10);
    fclose(f);
    return kb;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// ---- the router kinds alone ----------------------------------------------------------------------

typedef struct rb_shape { int D, N, K; } rb_shape;

int bench_routers(const int32_t *thr, int n_thr, int T, int S, int reps, FILE *js) {
    const rb_shape shapes[] = { { 1536, 40, 8 }, { 2048, 64, 8 } };
    const char *const *kinds = vm_router_kind_names();
    int n_kinds = 0;
    while (kinds[n_kinds]) n_kinds++;
    printf("router forward (inference), T = %d tokens, S = %d, simd %s: us per token per layer\n"
           "(1 thread: process CPU time, steady on a shared machine; more threads: wall time)\n", T, S,
           vm_simd_name(vm_simd_get()));
    printf("%8s %6s %4s %3s", "threads", "D", "N", "K");
    for (int k = 0; k < n_kinds; k++) printf(" %13s", kinds[k]);
    printf("\n");
    if (js) fprintf(js, "{\"mode\": \"routers\", \"simd\": \"%s\", \"tokens\": %d, \"samples\": %d, \"runs\": [",
                    vm_simd_name(vm_simd_get()), T, S);
    int rc = 0, first = 1;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0] && !rc; si++) {
        const int D = shapes[si].D, N = shapes[si].N, K = shapes[si].K;
        float *w = malloc(sizeof(float) * (size_t)N * D), *u = malloc(sizeof(float) * (size_t)T * D);
        float *lo = malloc(sizeof(float) * (size_t)T * N), *pr = malloc(sizeof(float) * (size_t)T * N);
        float *ga = malloc(sizeof(float) * (size_t)T * K);
        int32_t *se = malloc(sizeof(int32_t) * (size_t)T * K);
        vm_router **rs = calloc((size_t)n_kinds, sizeof *rs);
        double *best = malloc(sizeof(double) * (size_t)n_kinds);
        if (!w || !u || !lo || !pr || !ga || !se || !rs || !best) { rc = cli_fail(CMD, "out of memory"); goto next; }
        vm_rng g;
        vm_rng_seed(&g, 7);
        for (size_t i = 0; i < (size_t)N * D; i++) w[i] = vm_rng_normal(&g) / sqrtf((float)D);
        for (size_t i = 0; i < (size_t)T * D; i++) u[i] = vm_rng_normal(&g);
        vm_tensor wt;
        vm_tensor_init(&wt, "ffn_gate_inp", VM_TYPE_F32, 2, (int64_t[]){ D, N }, w);
        const vm_router_layer L = { .layer = 0, .n_embd = D, .n_expert = N, .n_expert_used = K,
                                    .conv = VM_GATE_SOFTMAX_SELECTED, .w_gate = &wt, .weights_scale = 1.0f };
        vm_router_opts o;
        vm_router_opts_default(&o);
        o.samples = S;
        for (int k = 0; k < n_kinds && !rc; k++)
            if (!(rs[k] = vm_router_create(kinds[k], &L, &o))) rc = cli_fail(CMD, NULL);
        vm_router_out out = { lo, pr, se, ga, NULL };
        for (int it = 0; it < n_thr && !rc; it++) {
            omp_set_num_threads(thr[it]);
            double (*clk)(void) = thr[it] == 1 ? cpu_s : vm_now_s;
            int calls[64];
            // calls per round: ~30 ms each; then the kinds take turns, best round kept
            for (int k = 0; k < n_kinds && !rc; k++) {
                rs[k]->ops->forward(rs[k], &L, u, T, &out, &g);   // warm-up
                int n = 1;
                for (;;) {
                    double t0 = clk();
                    for (int i = 0; i < n && !rc; i++)
                        if (rs[k]->ops->forward(rs[k], &L, u, T, &out, &g)) rc = cli_fail(CMD, NULL);
                    const double t = clk() - t0;
                    if (t > 0.03 || n >= (1 << 16) || rc) { best[k] = t / n; break; }
                    n *= 2;
                }
                calls[k < 64 ? k : 63] = n;
            }
            for (int round = 0; round < reps && !rc; round++)
                for (int k = 0; k < n_kinds && !rc; k++) {
                    const int n = calls[k < 64 ? k : 63];
                    double t0 = clk();
                    for (int i = 0; i < n; i++) rs[k]->ops->forward(rs[k], &L, u, T, &out, &g);
                    const double t = (clk() - t0) / n;
                    if (t < best[k]) best[k] = t;
                }
            if (rc) break;
            printf("%8d %6d %4d %3d", thr[it], D, N, K);
            for (int k = 0; k < n_kinds; k++) printf(" %13.2f", best[k] / T * 1e6);
            printf("\n");
            for (int k = 0; k < n_kinds && js; k++) {
                fprintf(js, "%s\n  {\"threads\": %d, \"D\": %d, \"N\": %d, \"K\": %d, \"kind\": \"%s\", "
                        "\"us_per_token\": %.4f}", first ? "" : ",", thr[it], D, N, K, kinds[k], best[k] / T * 1e6);
                first = 0;
            }
        }
    next:
        if (rs) for (int k = 0; k < n_kinds; k++) vm_router_free(rs[k]);
        free(rs); free(best); free(w); free(u); free(lo); free(pr); free(ga); free(se);
    }
    if (js) fprintf(js, "\n]}\n");
    return rc;
}

// ---- Granite-3B-shaped random model (the generator: convert/synth.c) ------------------------------

int bench_gen_granite(const char *path, const char *type_name, int n_layer, int n_vocab, int n_expert) {
    const int t = vm_type_from_name(type_name);
    if (t != VM_TYPE_Q8_0 && t != VM_TYPE_Q4_0 && t != VM_TYPE_F32 && t != VM_TYPE_F16)
        return cli_fail(CMD, "--type: '%s' (expected q8_0, q4_0, f32 or f16)", type_name);
    if (vm_synth_granite(path, (vm_type)t, n_layer, n_vocab, n_expert)) return cli_fail(CMD, NULL);
    struct stat st;
    printf("wrote %s: %d layers, vocab %d, %s, %.2f GB\n", path, n_layer, n_vocab, vm_type_name(t),
           stat(path, &st) ? 0.0 : (double)st.st_size / 1e9);
    return 0;
}

// ---- deterministic vs Bayesian prompt processing -----------------------------------------------------

// Matrix-product FLOPs (2 per multiply-add) of a prompt of n tokens: every weight matrix, attention
// scores and values over the causal context, the router, the K selected experts, the last row's
// output head; elementwise work (norms, softmax, rope, swiglu, exp of the samples) is not counted.
static double flops_base(const vm_hparams *hp, const vm_model *m, int n) {
    double per_tok = 0.0;
    for (int il = 0; il < hp->n_layer; il++) {
        per_tok += vm_flops_proj(m) + vm_flops_ffn(m, il);
        if (m->layers[il].is_moe) per_tok += vm_router_flops(NULL, &m->layers[il].rl);
    }
    // causal attention: token t attends to t+1 keys, summed over the prompt; the last row's head
    return per_tok * n + hp->n_layer * vm_flops_attn(m, (double)n * (n + 1) / 2.0) + vm_flops_output(m);
}

static int install(vm_model *m, const int *layers, int n, const char *kind, const vm_router_opts *o) {
    return vm_model_set_routers(m, kind ? kind : "deterministic", layers, n, kind ? o : NULL);
}

int bench_router_ab(const char *path, const char *kind, int n_bayes, int S, int threads, int batch,
                    int n_prompt, int reps, FILE *js) {
    if (threads > 0) omp_set_num_threads(threads);
    vm_model *m = vm_model_load(path);
    if (!m) return cli_fail(CMD, NULL);
    const vm_hparams *hp = &m->hp;
    int *layers = malloc(sizeof(int) * (size_t)hp->n_layer), n_moe = 0;
    int32_t *tok = malloc(sizeof *tok * (size_t)n_prompt);
    double *tt[2] = { malloc(sizeof(double) * (size_t)reps), malloc(sizeof(double) * (size_t)reps) };
    double *tc[2] = { malloc(sizeof(double) * (size_t)reps), malloc(sizeof(double) * (size_t)reps) };
    vm_ctx *c = NULL;
    int rc = 0;
    if (!layers || !tok || !tt[0] || !tt[1] || !tc[0] || !tc[1]) { rc = cli_fail(CMD, "out of memory"); goto done; }
    // pin the mapped weights: a proactive reclaimer (DAMON) or memory pressure would otherwise drop
    // pages between passes and the timings would measure the disk
    const vm_gguf *gg = vm_model_gguf(m);
    const int locked = gg && gg->base && mlock(gg->base, gg->size) == 0;
    if (!locked) fprintf(stderr, "vmoer bench: note: could not mlock the weights; timings may include page-ins\n");
    // the last n_bayes MoE layers
    for (int il = hp->n_layer - 1; il >= 0 && n_moe < n_bayes; il--)
        if (m->layers[il].is_moe) layers[n_moe++] = il;
    if (n_moe == 0) { rc = cli_fail(CMD, "%s has no MoE layer", path); goto done; }
    vm_router_opts o;
    vm_router_opts_default(&o);
    o.samples = S;
    o.seed = 1;
    vm_rng g;
    vm_rng_seed(&g, 1);
    for (int i = 0; i < n_prompt; i++) tok[i] = (int32_t)(vm_rng_u64(&g) % (uint64_t)hp->n_vocab);
    if (!(c = vm_ctx_init(m, n_prompt + 1, batch))) { rc = cli_fail(CMD, NULL); goto done; }
    printf("model %s: %d layers (%d MoE routed by %s, S = %d), D %d, N %d, K %d, threads %d, batch %d, "
           "prompt %d, simd %s\n", path, hp->n_layer, n_moe, kind, S, hp->n_embd, hp->n_expert,
           hp->n_expert_used, omp_get_max_threads(), batch, n_prompt, vm_simd_name(vm_simd_get()));
    // warm-up (maps the weights in) with each side once
    for (int side = 0; side < 2 && !rc; side++) {
        if (install(m, layers, n_moe, side ? kind : NULL, &o)) { rc = cli_fail(CMD, NULL); break; }
        vm_ctx_reset(c);
        if (vm_ctx_eval(c, tok, n_prompt, NULL)) rc = cli_fail(CMD, NULL);
    }
    // ABBA: rep 0 det, bayes; rep 1 bayes, det; ...
    for (int rep = 0; rep < reps && !rc; rep++)
        for (int k = 0; k < 2 && !rc; k++) {
            const int side = (rep % 2) ^ k;
            if (install(m, layers, n_moe, side ? kind : NULL, &o)) { rc = cli_fail(CMD, NULL); break; }
            vm_ctx_reset(c);
            vm_ctx_set_seed(c, (uint64_t)rep);
            const double t0 = vm_now_s(), c0 = cpu_s();
            if (vm_ctx_eval(c, tok, n_prompt, NULL)) { rc = cli_fail(CMD, NULL); break; }
            tt[side][rep] = vm_now_s() - t0;
            tc[side][rep] = cpu_s() - c0;
        }
    if (rc) goto done;
    {
        double best[2] = { 1e30, 1e30 }, med[2], cbest[2] = { 1e30, 1e30 }, cmed[2];
        for (int side = 0; side < 2; side++) {
            for (int r = 0; r < reps; r++) {
                if (tt[side][r] < best[side]) best[side] = tt[side][r];
                if (tc[side][r] < cbest[side]) cbest[side] = tc[side][r];
            }
            med[side] = median(tt[side], reps);
            cmed[side] = median(tc[side], reps);
        }
        const double fb = flops_base(hp, m, n_prompt);
        // the kind's own per-token formula (router_<kind>.c) minus the deterministic W_r u it replaces
        if (install(m, layers, n_moe, kind, &o)) { rc = cli_fail(CMD, NULL); goto done; }
        double fx = 0.0;
        for (int i = 0; i < n_moe; i++) {
            const vm_router_layer *L = &m->layers[layers[i]].rl;
            fx += (vm_router_flops(m->routers[layers[i]], L) - vm_router_flops(NULL, L)) * n_prompt;
        }
        struct stat st;
        const double fsize = stat(path, &st) ? 0.0 : (double)st.st_size;
        const long hwm = vm_hwm_kb();
        printf("weights %s\n", locked ? "locked in memory (mlock)" : "NOT locked");
        printf("%-14s %12s %12s %12s %12s %12s\n", "router", "median s", "best s", "cpu med s", "cpu best s",
               "pp tok/s");
        printf("%-14s %12.3f %12.3f %12.3f %12.3f %12.1f\n", "deterministic", med[0], best[0], cmed[0], cbest[0],
               n_prompt / med[0]);
        printf("%-14s %12.3f %12.3f %12.3f %12.3f %12.1f\n", kind, med[1], best[1], cmed[1], cbest[1],
               n_prompt / med[1]);
        printf("wall time: %s / deterministic = %.4f (median), %.4f (best): %+.2f %% extra\n", kind,
               med[1] / med[0], best[1] / best[0], 100.0 * (med[1] / med[0] - 1.0));
        printf("cpu time:  %s / deterministic = %.4f (median), %.4f (best): %+.2f %% extra\n", kind,
               cmed[1] / cmed[0], cbest[1] / cbest[0], 100.0 * (cmed[1] / cmed[0] - 1.0));
        printf("matrix-product FLOPs: deterministic %.4g per prompt (%.4g per token), %s adds %.4g: %+.3f %% extra\n",
               fb, fb / n_prompt, kind, fx, 100.0 * fx / fb);
        printf("peak RSS (VmHWM) %.3f GB, file %.3f GB: %+.2f %% of the file size\n", hwm * 1024.0 / 1e9,
               fsize / 1e9, fsize > 0 ? 100.0 * (hwm * 1024.0 / fsize - 1.0) : 0.0);
        if (js)
            fprintf(js, "{\"mode\": \"router-ab\", \"model\": \"%s\", \"kind\": \"%s\", \"samples\": %d, "
                    "\"bayes_layers\": %d, \"threads\": %d, \"batch\": %d, \"n_prompt\": %d, \"reps\": %d, "
                    "\"simd\": \"%s\", \"det_s_median\": %.6f, \"bayes_s_median\": %.6f, \"det_s_best\": %.6f, "
                    "\"bayes_s_best\": %.6f, \"wall_ratio\": %.6f, \"cpu_ratio\": %.6f, \"locked\": %d, \"flops_det\": %.6g, \"flops_extra\": %.6g, "
                    "\"flops_ratio\": %.6f, \"vm_hwm_bytes\": %.0f, \"file_bytes\": %.0f}\n",
                    path, kind, S, n_moe, omp_get_max_threads(), batch, n_prompt, reps,
                    vm_simd_name(vm_simd_get()), med[0], med[1], best[0], best[1], med[1] / med[0],
                    cmed[1] / cmed[0], locked, fb, fx,
                    1.0 + fx / fb, hwm * 1024.0, fsize);
    }
done:
    vm_ctx_free(c);
    vm_model_free(m);
    free(layers); free(tok); free(tt[0]); free(tt[1]); free(tc[0]); free(tc[1]);
    return rc;
}

// ---- fit throughput per router kind --------------------------------------------------------------

// One training epoch over the n sequences (T tokens each) as `vmoer fit` runs it in letter mode:
// hidden state entering l0 (from the cache h, or recomputed when h is NULL), forward through
// [l0, L) in training mode, cross-entropy at the last position against tgt[i], backward with the
// kind's regulariser, an AdamW step every `batch` sequences. Returns seconds or -1.
typedef struct fit_job {
    vm_model *m;
    vm_tctx *tc;
    vm_adamw *opt;
    const int32_t *tok, *tgt;   // (n, T), (n)
    float **h;                  // (n) cached (T,D) or NULL
    float *h_tmp, *logits;      // (T,D), (V)
    int n, T, l0, batch;
    float beta;
} fit_job;

static double fit_epoch(const fit_job *j, uint64_t seed) {
    const int V = j->m->hp.n_vocab;
    const int32_t p = j->T - 1;
    const double t0 = vm_now_s();
    for (int i = 0; i < j->n; i++) {
        const int32_t *tk = j->tok + (size_t)i * j->T;
        const float *h = j->h ? j->h[i] : j->h_tmp;
        if (!j->h && vm_model_hidden(j->m, tk, j->T, j->l0, j->h_tmp)) return -1;
        vm_rng r;
        vm_rng_seed2(&r, seed, (uint64_t)i);
        if (vm_tctx_forward(j->tc, h, j->T, &p, 1, j->logits, &r)) return -1;
        vm_softmax_forward(j->logits, j->logits, V);   // dCE/dlogits = softmax - onehot
        j->logits[j->tgt[i]] -= 1.0f;
        const float sc = 1.0f / (float)j->batch;
        for (int v = 0; v < V; v++) j->logits[v] *= sc;
        if (vm_tctx_backward(j->tc, j->logits, j->beta * sc, NULL)) return -1;
        if ((i + 1) % j->batch == 0 || i + 1 == j->n) vm_adamw_step(j->opt, 1e-4f);
    }
    return vm_now_s() - t0;
}

// Full-model inference forward of the n sequences (deterministic routers, last logits only):
// the reference rate the fit rates are divided by.
static double fwd_epoch(vm_ctx *c, const int32_t *tok, int n, int T) {
    const double t0 = vm_now_s();
    for (int i = 0; i < n; i++) {
        vm_ctx_reset(c);
        if (vm_ctx_eval(c, tok + (size_t)i * T, T, NULL)) return -1;
    }
    return vm_now_s() - t0;
}

static int kind_trainable(const char *kind, const vm_router_layer *L, const vm_router_opts *o) {
    vm_router *r = vm_router_create(kind, L, o);
    if (!r) return -1;
    const int np = r->n_params;
    vm_router_free(r);
    return np > 0;
}

// Points the fitted layers at routers rs (ownership stays with the caller's arrays).
static void point(vm_model *m, const int *layers, int n, vm_router **rs) {
    for (int i = 0; i < n; i++) m->routers[layers[i]] = rs[i];
}

int bench_fit(const char *path, const char *kinds_arg, const int32_t *thr, int n_thr, int n_bayes, int S,
              int T, int n_seq, int batch, int reps, FILE *js) {
    vm_model *m = vm_model_load(path);
    if (!m) return cli_fail(CMD, NULL);
    const vm_hparams *hp = &m->hp;
    const int D = hp->n_embd, V = hp->n_vocab;
    int rc = 0, layers[256], nl = 0, n_kinds = 0, first = 1;
    const char *kinds[32];
    vm_router *det[256], *kr[256] = {0};
    char *kbuf = NULL;
    int32_t *tok = malloc(sizeof *tok * (size_t)n_seq * T), *tgt = malloc(sizeof *tgt * (size_t)n_seq);
    float **hc = calloc((size_t)n_seq, sizeof *hc), *h_tmp = malloc(sizeof(float) * (size_t)T * D),
          *logits = malloc(sizeof(float) * (size_t)V);
    vm_ctx *c = NULL;
    if (!tok || !tgt || !hc || !h_tmp || !logits) { rc = cli_fail(CMD, "out of memory"); goto done; }
    if (T > hp->n_ctx_train) { rc = cli_fail(CMD, "--n-prompt %d exceeds the model context %d", T, hp->n_ctx_train); goto done; }
    nl = vm_fit_default_layers(m, n_bayes < 256 ? n_bayes : 256, layers);
    if (nl == 0) { rc = cli_fail(CMD, "%s has no MoE layer", path); goto done; }
    for (int i = 0; i < nl; i++) det[i] = m->routers[layers[i]];   // the model's own, deterministic
    vm_router_opts o;
    vm_router_opts_default(&o);
    o.samples = S; o.seed = 1;
    const vm_router_layer *L0 = &m->layers[layers[0]].rl;
    if (kinds_arg) {   // comma list
        if (!(kbuf = strdup(kinds_arg))) { rc = cli_fail(CMD, "out of memory"); goto done; }
        for (char *sv = NULL, *s = strtok_r(kbuf, ",", &sv); s && !rc; s = strtok_r(NULL, ",", &sv)) {
            const int t = kind_trainable(s, L0, &o);
            if (t < 0) rc = cli_fail(CMD, NULL);
            else if (!t) rc = cli_fail(CMD, "router kind '%s' has no trainable parameters: nothing to fit", s);
            else if (n_kinds == 32) rc = cli_fail(CMD, "too many --kinds");
            else kinds[n_kinds++] = s;
        }
        if (rc) goto done;
        if (!n_kinds) { rc = cli_fail(CMD, "empty --kinds list"); goto done; }
    } else {   // every kind with parameters
        for (const char *const *k = vm_router_kind_names(); *k && n_kinds < 32; k++) {
            const int t = kind_trainable(*k, L0, &o);
            if (t < 0) { rc = cli_fail(CMD, NULL); goto done; }
            if (t) kinds[n_kinds++] = *k;
        }
    }
    vm_rng g;
    vm_rng_seed(&g, 1);
    for (size_t i = 0; i < (size_t)n_seq * T; i++) tok[i] = (int32_t)(vm_rng_u64(&g) % (uint64_t)V);
    for (int i = 0; i < n_seq; i++) tgt[i] = (int32_t)(vm_rng_u64(&g) % (uint64_t)(V < 4 ? V : 4));
    for (int i = 0; i < n_seq; i++)
        if (!(hc[i] = malloc(sizeof(float) * (size_t)T * D))) { rc = cli_fail(CMD, "out of memory"); goto done; }
    if (!(c = vm_ctx_init(m, T, T))) { rc = cli_fail(CMD, NULL); goto done; }
    printf("model %s: %d layers, D %d, N %d, K %d; fit of layers %d..%d (%d), %d sequences of %d tokens, "
           "batch %d, S %d, simd %s\n", path, hp->n_layer, D, hp->n_expert, hp->n_expert_used, layers[0],
           layers[nl - 1], nl, n_seq, T, batch, S, vm_simd_name(vm_simd_get()));
    printf("tok/s: sequence tokens per second; fit = training (forward + backward + AdamW) with the hidden\n"
           "states entering layer %d cached or recomputed; fwd = full-model inference forward with the\n"
           "deterministic router (the reference). Per row the three take turns for %d rounds (best kept).\n",
           layers[0], reps);
    printf("%4s %-12s %11s %11s %11s %8s %9s %9s\n", "thr", "router", "fwd tok/s", "fit cache", "fit nocache",
           "cache x", "cache/fwd", "nocache/fwd");
    if (js)
        fprintf(js, "{\"mode\": \"fit\", \"model\": \"%s\", \"simd\": \"%s\", \"n_layer\": %d, \"fit_layers\": %d, "
                "\"l0\": %d, \"n_seq\": %d, \"n_tokens\": %d, \"batch\": %d, \"samples\": %d, \"reps\": %d, \"runs\": [",
                path, vm_simd_name(vm_simd_get()), hp->n_layer, nl, layers[0], n_seq, T, batch, S, reps);
    const double ntok = (double)n_seq * T;
    for (int it = 0; it < n_thr && !rc; it++) {
        omp_set_num_threads(thr[it]);
        // the cache: layers below l0, once per fit (its cost is not in the fit rates)
        double tcache = 1e30;
        if (fwd_epoch(c, tok, n_seq, T) < 0) { rc = cli_fail(CMD, NULL); break; }   // warm-up
        for (int rep = 0; rep < reps && !rc; rep++) {
            const double t0 = vm_now_s();
            for (int i = 0; i < n_seq && !rc; i++)
                if (vm_model_hidden(m, tok + (size_t)i * T, T, layers[0], hc[i])) rc = cli_fail(CMD, NULL);
            if (vm_now_s() - t0 < tcache) tcache = vm_now_s() - t0;
        }
        if (rc) break;
        printf("%4d cache build (layers 0..%d): %.1f tok/s\n", thr[it], layers[0] - 1, ntok / tcache);
        for (int ik = 0; ik < n_kinds && !rc; ik++) {
            vm_tctx *tc = NULL;
            vm_adamw opt = {0};
            vm_param **pp = NULL;
            unsigned char *dec = NULL;
            double best[3] = { 1e30, 1e30, 1e30 };   // fwd, fit cache, fit no cache
            int np = 0;
            for (int i = 0; i < nl && !rc; i++) {
                if (!(kr[i] = vm_router_create(kinds[ik], &m->layers[layers[i]].rl, &o))) rc = cli_fail(CMD, NULL);
                else {
                    kr[i]->training = 1;
                    for (int q = 0; q < kr[i]->n_params; q++) np += !kr[i]->params[q].frozen;
                }
            }
            if (rc) goto next;
            pp = calloc((size_t)np, sizeof *pp); dec = calloc((size_t)np, 1);
            if (!pp || !dec) { rc = cli_fail(CMD, "out of memory"); goto next; }
            for (int i = 0, k = 0; i < nl; i++)
                for (int q = 0; q < kr[i]->n_params; q++) {   // as fit.c: constants are not trained, and
                    if (kr[i]->params[q].frozen) continue;    // no decay towards 0 of W_r copies
                    pp[k] = &kr[i]->params[q];
                    dec[k] = pp[k]->n_dims == 2 && strcmp(kinds[ik], "map") && strcmp(kinds[ik], "ensemble") &&
                             strcmp(kinds[ik], "swag");
                    k++;
                }
            point(m, layers, nl, kr);
            if (vm_adamw_init(&opt, pp, dec, np, 0.01f) || !(tc = vm_tctx_init(m, layers[0], T))) {
                rc = cli_fail(CMD, NULL); goto next;
            }
            fit_job j = { m, tc, &opt, tok, tgt, hc, h_tmp, logits, n_seq, T, layers[0], batch, kr[0]->beta };
            if (fit_epoch(&j, 0) < 0) { rc = cli_fail(CMD, NULL); goto next; }   // warm-up
            // the three sides take turns (rotating who goes first) so drift slows them alike
            for (int rep = 0; rep < reps && !rc; rep++)
                for (int k = 0; k < 3; k++) {
                    const int side = (rep + k) % 3;
                    double t;
                    if (side == 0) {
                        point(m, layers, nl, det);
                        t = fwd_epoch(c, tok, n_seq, T);
                        point(m, layers, nl, kr);
                    } else {
                        j.h = side == 1 ? hc : NULL;
                        t = fit_epoch(&j, (uint64_t)rep + 1);
                    }
                    if (t < 0) { rc = cli_fail(CMD, NULL); break; }
                    if (t < best[side]) best[side] = t;
                }
            if (rc) goto next;
            printf("%4d %-12s %11.1f %11.1f %11.1f %8.2f %9.3f %9.3f\n", thr[it], kinds[ik], ntok / best[0],
                   ntok / best[1], ntok / best[2], best[2] / best[1], best[0] / best[1], best[0] / best[2]);
            if (js)   // ratios to 6 significant digits: a slow run's small ratio keeps its precision
                fprintf(js, "%s\n  {\"threads\": %d, \"kind\": \"%s\", \"fwd_tok_s\": %.3f, \"cache_build_tok_s\": %.3f, "
                        "\"fit_tok_s_cache\": %.3f, \"fit_tok_s_nocache\": %.3f, \"cache_speedup\": %.6g, "
                        "\"fit_cache_vs_fwd\": %.6g, \"fit_nocache_vs_fwd\": %.6g}", first ? "" : ",", thr[it],
                        kinds[ik], ntok / best[0], ntok / tcache, ntok / best[1], ntok / best[2], best[2] / best[1],
                        best[0] / best[1], best[0] / best[2]);
            first = 0;
            fflush(stdout);
        next:
            point(m, layers, nl, det);   // the model owns its deterministic routers again
            for (int i = 0; i < nl; i++) { vm_router_free(kr[i]); kr[i] = NULL; }
            vm_tctx_free(tc);
            vm_adamw_free(&opt);
            free(pp); free(dec);
        }
    }
    if (js) fprintf(js, "\n]}\n");
done:
    for (int i = 0; hc && i < n_seq; i++) free(hc[i]);
    vm_ctx_free(c);
    vm_model_free(m);
    free(kbuf); free(tok); free(tgt); free(hc); free(h_tmp); free(logits);
    return rc;
}

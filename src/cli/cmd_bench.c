// vmoer bench MODEL.gguf [--threads LIST] [--batch LIST] [--json OUT]: prompt-processing and decode
// throughput. vmoer bench --kernels [MODEL.gguf]: our f32 matmul against BLAS sgemm on the model's
// shapes (when the binary is linked with a CBLAS, bench/Makefile), and Q8_0 vs F32 at batch 1.
// The CBLAS functions are weak references: a normal build has none and skips that column.
// vmoer bench MODEL.gguf --fit: fit training tokens/s per router kind (bench_router.c).
// vmoer bench --attention: attention forward/backward against the kernels they replaced (bench_attn.c).
#include "cli/bench_attn.h"
#include "cli/bench_profile.h"
#include "cli/bench_router.h"
#include "cli/cli.h"
#include "kernels/ops.h"
#include "kernels/simd.h"
#include "model/model.h"
#include "util/err.h"
#include "util/fileio.h"
#include "util/progress.h"
#include "util/rng.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *CMD = "bench";

// CBLAS, present only when linked in (row-major = 101, no-trans = 111, trans = 112).
extern void cblas_sgemm(int order, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                        const float *b, int ldb, float beta, float *c, int ldc) __attribute__((weak));
extern void cblas_sgemv(int order, int ta, int m, int n, float alpha, const float *a, int lda, const float *x,
                        int incx, float beta, float *y, int incy) __attribute__((weak));
extern void openblas_set_num_threads(int n) __attribute__((weak));

static void usage(void) {
    printf("usage: vmoer bench MODEL.gguf [options]\n"
           "       vmoer bench --kernels [MODEL.gguf] [options]\n"
           "       vmoer bench --routers [options]\n"
           "       vmoer bench --attention [options]\n"
           "       vmoer bench --gen-granite OUT.gguf [--type q8_0|q4_0|f32|f16] [--layers N] [--vocab N] [--experts N]\n"
           "       vmoer bench MODEL.gguf --ab KIND [--bayes-layers N] [--samples S] [options]\n"
           "       vmoer bench MODEL.gguf --fit [--kinds LIST] [--bayes-layers N] [--items N] [options]\n"
           "       vmoer bench MODEL.gguf --profile [options]\n\n"
           "Model mode: prompt processing (a prompt of --n-prompt random tokens evaluated in chunks of\n"
           "each --batch size, as evaluation runs prompts; only the last logits are computed) and decode\n"
           "(--n-gen tokens one at a time), tokens/s for each --threads count; best of --reps runs.\n"
           "Kernel mode: GFLOP/s of the f32 matmul on the model's matrix shapes (Granite-3B-like shapes\n"
           "without a model) at batch 1 and --batch, against BLAS sgemm when linked in (bench/Makefile),\n"
           "and Q8_0 / Q4_0 / Q4_K / Q5_K / Q6_K weights against F32 at batch 1 and at --batch.\n"
           "Attention mode (--attention): ms per call of the attention forward (a prompt of --n-prompt\n"
           "tokens in chunks of --batch) and backward (the whole prompt) on heads of 8 (8/4 heads, the\n"
           "bundled model), 64 (24/8) and 128 (32/8), against the code they replaced, timed in turns.\n"
           "Router mode (--routers): us per token per layer of every router kind on D 1536 / N 40 / K 8\n"
           "and D 2048 / N 64 / K 8, a batch of --batch tokens, --samples S.\n"
           "--gen-granite writes a random-weight llama-arch MoE with Granite-3B-like shapes (D 1536,\n"
           "--experts (default 40), top-8, n_ff_exp 512, heads 24/8; default 32 layers, vocab 49155, q8_0; routers and\n"
           "norms F32; a placeholder SentencePiece vocabulary, so llama.cpp loads it too).\n"
           "--ab KIND: prompt processing (--n-prompt tokens in --batch chunks, first --threads count)\n"
           "with the deterministic router vs KIND on the last --bayes-layers MoE layers (default 5),\n"
           "interleaved --reps times (weights mlock'ed): wall-time, CPU-time and matrix-product FLOPs\n"
           "ratios, peak RSS (VmHWM) vs the file size.\n"
           "--fit: fit training tokens/s (forward + backward + AdamW, as `vmoer fit` trains) of each router\n"
           "kind in --kinds (default: every kind with parameters) on the last --bayes-layers MoE layers\n"
           "(default 5), --items random sequences of --n-prompt tokens, an optimiser step every --batch\n"
           "sequences (default 8), with and without the hidden-state cache, for each --threads count;\n"
           "ratios against the full-model deterministic inference forward in the same run.\n"
           "--profile: time per op kind (attention, routing, expert gather/scatter, activation quantisation,\n"
           "each product) of prompt processing (--n-prompt tokens in chunks of the first --batch) and decode\n"
           "(--n-gen tokens), with GFLOP/s and weight GB/s, and decode's weight traffic against the streaming\n"
           "read bandwidth measured in the same run, for each --threads count.\n\n"
           "options:\n"
           "  --threads LIST   thread counts, e.g. 1,2 (default: the OpenMP default)\n"
           "  --batch LIST     prompt batch sizes (default 64); kernel mode uses the first\n"
           "  --n-prompt N     prompt tokens (default 128)\n"
           "  --n-gen N        decoded tokens (default 32)\n"
           "  --reps N         repetitions, best kept (default 3)\n"
           "  --json OUT       also write the results as JSON\n"
           "  --kernels        kernel mode\n"
           "  --routers        router mode\n"
           "  --attention      attention kernel mode\n"
           "  --samples S      samples of the sampled routers (default 35)\n"
           "  --fit            fit mode; --kinds LIST (e.g. map,vglr-mf), --items N (default 32)\n"
           "  --profile        per-op profile of prompt processing and decode\n"
           "  -h, --help       this text\n");
}

// ---- model mode ----------------------------------------------------------------------------------

static int bench_model(const char *path, const int32_t *thr, int n_thr, const int32_t *bat, int n_bat,
                       int n_prompt, int n_gen, int reps, FILE *js) {
    vm_model *m = vm_model_load(path);
    if (!m) return cli_fail(CMD, NULL);
    const int V = vm_model_n_vocab(m), n_tok = n_prompt > n_gen ? n_prompt : n_gen;
    int32_t *tok = malloc(sizeof *tok * (size_t)n_tok);
    if (!tok) { vm_model_free(m); return cli_fail(CMD, "out of memory"); }
    vm_rng r;
    vm_rng_seed(&r, 1);
    for (int i = 0; i < n_tok; i++) tok[i] = (int32_t)(vm_rng_u64(&r) % (uint64_t)V);
    printf("model %s: %d layers, %d experts, simd %s\n", path, vm_model_n_layer(m), vm_model_n_expert(m),
           vm_simd_name(vm_simd_get()));
    printf("%8s %8s %14s %14s\n", "threads", "batch", "pp tok/s", "decode tok/s");
    if (js) fprintf(js, "{\"model\": \"%s\", \"simd\": \"%s\", \"n_prompt\": %d, \"n_gen\": %d, \"runs\": [",
                    path, vm_simd_name(vm_simd_get()), n_prompt, n_gen);
    int rc = 0, first = 1;
    for (int it = 0; it < n_thr && !rc; it++) {
        omp_set_num_threads(thr[it]);
        double best_tg = 0;
        for (int ib = 0; ib < n_bat && !rc; ib++) {
            vm_ctx *c = vm_ctx_init(m, n_tok + 1, bat[ib]);
            if (!c) { rc = cli_fail(CMD, NULL); break; }
            double best_pp = 1e30;
            for (int rep = 0; rep < reps && !rc; rep++) {
                vm_ctx_reset(c);
                double t0 = vm_now_s();
                if (vm_ctx_eval(c, tok, n_prompt, NULL)) rc = cli_fail(CMD, NULL);
                double dt = vm_now_s() - t0;
                if (dt < best_pp) best_pp = dt;
            }
            if (ib == 0)   // decode does not depend on the prompt batch size
                for (int rep = 0; rep < reps && !rc; rep++) {
                    vm_ctx_reset(c);
                    double t0 = vm_now_s();
                    for (int i = 0; i < n_gen && !rc; i++)
                        if (vm_ctx_eval(c, tok + i, 1, NULL)) rc = cli_fail(CMD, NULL);
                    double tps = n_gen / (vm_now_s() - t0);
                    if (tps > best_tg) best_tg = tps;
                }
            vm_ctx_free(c);
            if (rc) break;
            printf("%8d %8d %14.1f %14.1f\n", thr[it], bat[ib], n_prompt / best_pp, best_tg);
            if (js) fprintf(js, "%s\n  {\"threads\": %d, \"batch\": %d, \"pp_tok_s\": %.3f, \"decode_tok_s\": %.3f}",
                            first ? "" : ",", thr[it], bat[ib], n_prompt / best_pp, best_tg);
            first = 0;
        }
    }
    if (js) fprintf(js, "\n]}\n");
    free(tok);
    vm_model_free(m);
    return rc;
}

// ---- kernel mode ---------------------------------------------------------------------------------

typedef struct shape { const char *name; int C, OC; } shape;

// Seconds per call of fn: repeated until ~0.15 s, best of 3.
typedef struct kjob { int kind; const vm_tensor *w; const float *x; float *y; int B; } kjob;
static void kjob_run(const kjob *j) {
    if (j->kind == 0) vm_matmul_forward(j->y, j->x, j->w, NULL, j->B);
    else if (j->B == 1)   // the fair batch-1 reference is BLAS's matrix-vector product
        cblas_sgemv(101, 111, (int)j->w->ne[1], (int)j->w->ne[0], 1.0f, (const float *)j->w->data, (int)j->w->ne[0],
                    j->x, 1, 0.0f, j->y, 1);
    else cblas_sgemm(101, 111, 112, j->B, (int)j->w->ne[1], (int)j->w->ne[0], 1.0f, j->x, (int)j->w->ne[0],
                     (const float *)j->w->data, (int)j->w->ne[0], 0.0f, j->y, (int)j->w->ne[1]);
}
// The quantised types timed against F32
enum { NQ = 5 };
static const vm_type kq_types[NQ] = {VM_TYPE_Q8_0, VM_TYPE_Q4_0, VM_TYPE_Q4_K, VM_TYPE_Q5_K, VM_TYPE_Q6_K};

// Seconds per call of each job: calls are batched to ~20 ms, and the jobs take turns for 7 rounds
// keeping each one's best, so a busy machine slows both sides of a ratio alike. With one thread the
// clock is the process CPU time (steady on a shared machine: time spent descheduled does not count).
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void time_jobs(const kjob *j, int n_jobs, double *best) {
    double (*now)(void) = omp_get_max_threads() == 1 ? cpu_now : vm_now_s;
    int reps[2 + NQ];
    for (int k = 0; k < n_jobs; k++) {
        kjob_run(&j[k]);   // warm-up
        int n = 1;
        for (;;) {
            double t0 = now();
            for (int i = 0; i < n; i++) kjob_run(&j[k]);
            double t = now() - t0;
            if (t > 0.02 || n > (1 << 20)) { best[k] = t / n; break; }
            n *= 2;
        }
        reps[k] = n;
    }
    for (int round = 0; round < 7; round++)
        for (int k = 0; k < n_jobs; k++) {
            double t0 = now();
            for (int i = 0; i < reps[k]; i++) kjob_run(&j[k]);
            double t = (now() - t0) / reps[k];
            if (t < best[k]) best[k] = t;
        }
}

// At batch B: sec[0] = seconds per call of the f32 matmul, sec[1] of BLAS (the f32 matmul again,
// unreported, without BLAS), qx[k] = f32 time / time with weights tq[k] (0 when qd[k] is NULL: the
// row length does not fit the type). All taken by time_jobs in one interleaved run.
static void time_batch(const vm_tensor *tw, const vm_tensor tq[NQ], void *const qd[NQ], int blas, const float *x,
                       float *y, int B, double sec[2], double qx[NQ]) {
    kjob j[2 + NQ] = {{0, tw, x, y, B}, {blas, tw, x, y, B}};
    int n = 2, slot[NQ];
    for (int k = 0; k < NQ; k++) {
        slot[k] = -1;
        if (qd[k]) { slot[k] = n; j[n++] = (kjob){0, &tq[k], x, y, B}; }
    }
    double s[2 + NQ] = {0};
    time_jobs(j, n, s);
    sec[0] = s[0];
    sec[1] = s[1];
    for (int k = 0; k < NQ; k++) qx[k] = slot[k] >= 0 ? s[0] / s[slot[k]] : 0.0;
}

static int add_shape(shape *s, int n, const char *name, const vm_tensor *t) {
    if (!t || !t->data || t->ne[0] <= 0 || t->ne[1] <= 0) return n;
    for (int i = 0; i < n; i++)
        if (s[i].C == t->ne[0] && s[i].OC == t->ne[1]) return n;
    // the output matrix can be huge: a slice of its rows has the same per-row behaviour
    s[n] = (shape){name, (int)t->ne[0], (int)(t->ne[1] > 16384 ? 16384 : t->ne[1])};
    return n + 1;
}

static int bench_kernels(const char *path, const int32_t *thr, int n_thr, int B, FILE *js) {
    shape sh[16];
    int ns = 0;
    vm_model *m = NULL;
    if (path) {
        if (!(m = vm_model_load(path))) return cli_fail(CMD, NULL);
        const vm_layer *ly = &m->layers[0];
        ns = add_shape(sh, ns, "attn_q", &ly->wq);
        ns = add_shape(sh, ns, "attn_k", &ly->wk);
        ns = add_shape(sh, ns, "attn_output", &ly->wo);
        if (ly->is_moe) {
            ns = add_shape(sh, ns, "ffn_gate_inp", &ly->ffn_gate_inp);
            ns = add_shape(sh, ns, "ffn_up_exps", &ly->exp_up[0]);
            ns = add_shape(sh, ns, "ffn_down_exps", &ly->exp_down[0]);
        } else {
            ns = add_shape(sh, ns, "ffn_up", &ly->ffn_up);
            ns = add_shape(sh, ns, "ffn_down", &ly->ffn_down);
        }
        ns = add_shape(sh, ns, "output", &m->output);
    } else {   // Granite-3B-A800M-like: D 1536, 24/8 heads of 64, 40 experts of 512, vocab 49155
        const shape g[] = {{"attn_q", 1536, 1536}, {"attn_k", 1536, 512}, {"ffn_gate_inp", 1536, 40},
                           {"ffn_up_exps", 1536, 512}, {"ffn_down_exps", 512, 1536}, {"output", 1536, 16384}};
        memcpy(sh, g, sizeof g);
        ns = (int)(sizeof g / sizeof *g);
    }
    const int blas = cblas_sgemm != NULL && cblas_sgemv != NULL;
    printf("kernels: simd %s, BLAS %s, batch %d (GFLOP/s; ratios ours/BLAS and F32-time/quantised-time at\n"
           "batch 1 and at batch n; 1 thread: process CPU time, more threads: wall time)\n",
           vm_simd_name(vm_simd_get()), blas ? "linked" : "not linked (build bench/Makefile)", B);
    printf("%-14s %6s %6s %3s | %8s %8s %6s | %8s %8s %6s |", "matrix", "C", "OC", "thr",
           "f32 B=1", "blas B=1", "ratio", "f32 B=n", "blas B=n", "ratio");
    for (int k = 0; k < NQ; k++) printf(" %5sx", vm_type_name(kq_types[k]));
    printf(" |");
    for (int k = 0; k < NQ; k++) printf(" %5sxn", vm_type_name(kq_types[k]));
    printf("\n");
    if (js) fprintf(js, "{\"simd\": \"%s\", \"blas\": %s, \"batch\": %d, \"results\": [", vm_simd_name(vm_simd_get()),
                    blas ? "true" : "false", B);
    vm_rng r;
    vm_rng_seed(&r, 3);
    int rc = 0, first = 1;
    for (int is = 0; is < ns && !rc; is++) {
        const int C = sh[is].C, OC = sh[is].OC;
        float *w = malloc(sizeof(float) * (size_t)C * OC), *x = malloc(sizeof(float) * (size_t)C * B),
              *y = malloc(sizeof(float) * (size_t)OC * B);
        const vm_type *qt = kq_types;
        void *qd[NQ] = {0};
        for (int k = 0; k < NQ; k++)
            if (vm_type_row_size(qt[k], C)) qd[k] = malloc(vm_type_row_size(qt[k], C) * (size_t)OC);
        if (!w || !x || !y) { rc = cli_fail(CMD, "out of memory"); goto next; }
        for (size_t i = 0; i < (size_t)C * OC; i++) w[i] = vm_rng_normal(&r) * 0.05f;
        for (size_t i = 0; i < (size_t)C * B; i++) x[i] = vm_rng_normal(&r);
        vm_tensor tw, tq[NQ];
        vm_tensor_init(&tw, "w", VM_TYPE_F32, 2, (int64_t[]){C, OC}, w);
        for (int k = 0; k < NQ; k++)
            if (qd[k]) {
                const size_t row = vm_type_row_size(qt[k], C);
                for (int o = 0; o < OC; o++) vm_quant_row(qt[k], w + (size_t)o * C, (char *)qd[k] + row * o, C);
                vm_tensor_init(&tq[k], "q", qt[k], 2, (int64_t[]){C, OC}, qd[k]);
            }
        for (int it = 0; it < n_thr; it++) {
            omp_set_num_threads(thr[it]);
            if (openblas_set_num_threads) openblas_set_num_threads(thr[it]);
            double f1 = 2.0 * C * OC, fn = f1 * B;
            double s1[2], sn[2], qx[NQ], qxn[NQ];
            time_batch(&tw, tq, qd, blas, x, y, 1, s1, qx);
            time_batch(&tw, tq, qd, blas, x, y, B, sn, qxn);
            const double t1 = s1[0], b1 = s1[1], tn = sn[0], bn = sn[1];
            printf("%-14s %6d %6d %3d | %8.2f %8.2f %6.2f | %8.2f %8.2f %6.2f |", sh[is].name, C, OC, thr[it],
                   f1 / t1 * 1e-9, blas ? f1 / b1 * 1e-9 : 0, blas ? b1 / t1 : 0, fn / tn * 1e-9, blas ? fn / bn * 1e-9 : 0,
                   blas ? bn / tn : 0);
            for (int k = 0; k < NQ; k++) printf(" %6.2f", qx[k]);
            printf(" |");
            for (int k = 0; k < NQ; k++) printf(" %7.2f", qxn[k]);
            printf("\n");
            if (js) {
                fprintf(js, "%s\n  {\"matrix\": \"%s\", \"C\": %d, \"OC\": %d, \"threads\": %d, \"f32_gflops_b1\": %.3f, "
                            "\"blas_gflops_b1\": %.3f, \"f32_gflops_bn\": %.3f, \"blas_gflops_bn\": %.3f",
                        first ? "" : ",", sh[is].name, C, OC, thr[it], f1 / t1 * 1e-9, blas ? f1 / b1 * 1e-9 : 0,
                        fn / tn * 1e-9, blas ? fn / bn * 1e-9 : 0);
                for (int k = 0; k < NQ; k++)
                    fprintf(js, ", \"%s_speedup_b1\": %.3f, \"%s_speedup_bn\": %.3f", vm_type_name(qt[k]), qx[k],
                            vm_type_name(qt[k]), qxn[k]);
                fprintf(js, "}");
            }
            first = 0;
        }
    next:
        free(w); free(x); free(y);
        for (int k = 0; k < NQ; k++) free(qd[k]);
    }
    if (js) fprintf(js, "\n]}\n");
    vm_model_free(m);
    return rc;
}

int cmd_bench(int argc, char **argv) {
    const char *path = NULL, *json = NULL, *thr_arg = NULL, *bat_arg = NULL;
    long n_prompt = 128, n_gen = 32, reps = 3;
    int kernels = 0, routers = 0, fit = 0, profile = 0, attention = 0;
    const char *kinds = NULL;
    long items = 32;
    const char *gen = NULL, *ab = NULL, *qtype = "q8_0";
    long n_layers = 32, n_vocab = 49155, n_experts = 40, bayes_layers = 5, samples = 35;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(); return 0; }
        else if (!strcmp(a, "--kernels")) kernels = 1;
        else if (!strcmp(a, "--routers")) routers = 1;
        else if (!strcmp(a, "--attention")) attention = 1;
        else if (!strcmp(a, "--fit")) fit = 1;
        else if (!strcmp(a, "--profile")) profile = 1;
        else if (!strcmp(a, "--kinds")) { if (!(kinds = cli_value(CMD, argc, argv, &i))) return 1; }
        else if (!strcmp(a, "--items")) {
            if (!(v = cli_value(CMD, argc, argv, &i)) || cli_long(CMD, a, v, 1, 1 << 20, &items)) return 1;
        }
        else if (!strcmp(a, "--gen-granite")) { if (!(gen = cli_value(CMD, argc, argv, &i))) return 1; }
        else if (!strcmp(a, "--ab")) { if (!(ab = cli_value(CMD, argc, argv, &i))) return 1; }
        else if (!strcmp(a, "--type")) { if (!(qtype = cli_value(CMD, argc, argv, &i))) return 1; }
        else if (!strcmp(a, "--layers")) {
            if (!(v = cli_value(CMD, argc, argv, &i)) || cli_long(CMD, a, v, 1, 1024, &n_layers)) return 1;
        } else if (!strcmp(a, "--experts")) {
            if (!(v = cli_value(CMD, argc, argv, &i)) || cli_long(CMD, a, v, 1, 256, &n_experts)) return 1;
        } else if (!strcmp(a, "--vocab")) {
            if (!(v = cli_value(CMD, argc, argv, &i)) || cli_long(CMD, a, v, 1, 1 << 20, &n_vocab)) return 1;
        } else if (!strcmp(a, "--bayes-layers")) {
            if (!(v = cli_value(CMD, argc, argv, &i)) || cli_long(CMD, a, v, 1, 1 << 16, &bayes_layers)) return 1;
        } else if (!strcmp(a, "--samples")) {
            if (!(v = cli_value(CMD, argc, argv, &i)) || cli_long(CMD, a, v, 1, 100000, &samples)) return 1;
        }
        else if (!strcmp(a, "--threads")) { if (!(thr_arg = cli_value(CMD, argc, argv, &i))) return 1; }
        else if (!strcmp(a, "--batch")) { if (!(bat_arg = cli_value(CMD, argc, argv, &i))) return 1; }
        else if (!strcmp(a, "--json")) { if (!(json = cli_value(CMD, argc, argv, &i))) return 1; }
        else if (!strcmp(a, "--n-prompt")) {
            if (!(v = cli_value(CMD, argc, argv, &i)) || cli_long(CMD, a, v, 1, 1 << 20, &n_prompt)) return 1;
        } else if (!strcmp(a, "--n-gen")) {
            if (!(v = cli_value(CMD, argc, argv, &i)) || cli_long(CMD, a, v, 1, 1 << 20, &n_gen)) return 1;
        } else if (!strcmp(a, "--reps")) {
            if (!(v = cli_value(CMD, argc, argv, &i)) || cli_long(CMD, a, v, 1, 1000, &reps)) return 1;
        } else if (a[0] == '-' && a[1]) {
            return cli_fail(CMD, "unknown option '%s' (see --help)", a);
        } else {
            if (path) return cli_fail(CMD, "unexpected argument '%s' (see --help)", a);
            path = a;
        }
    }
    if (gen) {
        if (path || kernels || routers || ab) return cli_fail(CMD, "--gen-granite takes no other mode (see --help)");
        return bench_gen_granite(gen, qtype, (int)n_layers, (int)n_vocab, (int)n_experts);
    }
    if (attention && (path || kernels || routers || ab || fit || profile))
        return cli_fail(CMD, "--attention takes no model and no other mode (see --help)");
    if (!path && !kernels && !routers && !attention) return cli_fail(CMD, "expected MODEL.gguf, --kernels or --routers (see --help)");
    if (ab && !path) return cli_fail(CMD, "--ab needs MODEL.gguf (see --help)");
    if (fit && (!path || kernels || routers || ab)) return cli_fail(CMD, "--fit needs MODEL.gguf and no other mode (see --help)");
    if (kinds && !fit) return cli_fail(CMD, "--kinds is for --fit (see --help)");
    if (profile && (!path || kernels || routers || ab || fit))
        return cli_fail(CMD, "--profile needs MODEL.gguf and no other mode (see --help)");
    int32_t *thr = NULL, *bat = NULL;
    int n_thr, n_bat;
    int32_t thr_def = omp_get_max_threads(), bat_def = fit ? 8 : 64;
    if (thr_arg) { if ((n_thr = cli_parse_ids(CMD, thr_arg, &thr)) < 0) return 1; }
    else { thr = &thr_def; n_thr = 1; }
    if (bat_arg) { if ((n_bat = cli_parse_ids(CMD, bat_arg, &bat)) < 0) { if (thr != &thr_def) free(thr); return 1; } }
    else { bat = &bat_def; n_bat = 1; }
    int rc = 0;
    for (int i = 0; i < n_thr && !rc; i++)
        if (thr[i] < 1 || thr[i] > 1024) rc = cli_fail(CMD, "--threads: %d out of range [1, 1024]", thr[i]);
    for (int i = 0; i < n_bat && !rc; i++)
        if (bat[i] < 1 || bat[i] > 4096) rc = cli_fail(CMD, "--batch: %d out of range [1, 4096]", bat[i]);
    if (n_thr == 0 || n_bat == 0) rc = cli_fail(CMD, "empty --threads or --batch list");
    FILE *js = NULL;
    vm_afile jf = {0};   // the JSON appears whole under its name, or not at all
    if (!rc && json && vm_afile_open(&jf, json)) rc = cli_fail(CMD, NULL);
    js = jf.f;
    if (!rc) rc = attention ? bench_attention(thr, n_thr, bat[0], (int)n_prompt, js)
                : routers ? bench_routers(thr, n_thr, bat[0], (int)samples, (int)reps, js)
                : kernels ? bench_kernels(path, thr, n_thr, bat[0], js)
                : profile ? bench_profile(path, thr, n_thr, bat[0], (int)n_prompt, (int)n_gen, js)
                : fit ? bench_fit(path, kinds, thr, n_thr, (int)bayes_layers, (int)samples, (int)n_prompt, (int)items,
                                  bat[0], (int)reps, js)
                : ab ? bench_router_ab(path, ab, (int)bayes_layers, (int)samples, thr[0], bat[0], (int)n_prompt,
                                       (int)reps, js)
                : bench_model(path, thr, n_thr, bat, n_bat, (int)n_prompt, (int)n_gen, (int)reps, js);
    if (js && rc) vm_afile_abort(&jf);
    else if (js && vm_afile_commit(&jf)) rc = cli_fail(CMD, NULL);
    if (thr != &thr_def) free(thr);
    if (bat != &bat_def) free(bat);
    return rc;
}

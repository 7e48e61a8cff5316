// vmoer bench MODEL --profile: where prompt processing and decode spend their time, per op kind
// (util/profile.h), with the matrix products' GFLOP/s and weight GB/s, and decode's weight traffic
// against the streaming read bandwidth measured here (the memory's practical ceiling for decode).
#include "cli/bench_profile.h"
#include "cli/cli.h"
#include "kernels/simd.h"
#include "model/model.h"
#include "util/profile.h"
#include "util/progress.h"
#include "util/rng.h"

#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *CMD = "bench";

// Streaming read bandwidth (GB/s) of a 512 MB buffer (well past the caches) with the current
// thread count: each thread sums its own contiguous part, best of 3 passes after a first touch.
double bench_stream_gb_s(void) {
    const size_t n = (size_t)64 << 20;   // uint64 words
    uint64_t *buf = malloc(n * sizeof *buf);
    if (!buf) return 0.0;
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) buf[i] = i;
    double best = 1e30;
    uint64_t sink = 0;
    for (int rep = 0; rep < 3; rep++) {
        const double t0 = vm_now_s();
        uint64_t s = 0;
        #pragma omp parallel for schedule(static) reduction(+ : s)
        for (size_t i = 0; i < n; i++) s += buf[i];
        const double dt = vm_now_s() - t0;
        sink += s;
        if (dt < best) best = dt;
    }
    free(buf);
    return sink == 1 ? 0.0 : (double)n * sizeof(uint64_t) / best * 1e-9;   // sink: keeps the sums
}

static void print_table(const char *what, const vm_prof *p, double wall, int n_tok, FILE *js, int *first) {
    double total = 0;
    for (int k = 0; k < VM_PROF_COUNT; k++) total += p->sec[k];
    printf("%s: %.1f tok/s, %.3f ms/token (%.0f%% of the wall time in timed ops)\n", what, n_tok / wall,
           wall / n_tok * 1e3, 100.0 * total / wall);
    printf("  %-16s %10s %7s %9s %9s\n", "op", "ms/token", "share", "GFLOP/s", "weight GB/s");
    if (js) fprintf(js, "%s\n    \"%s\": {\"tok_s\": %.3f, \"ms_per_token\": %.5f, \"ops\": [", *first ? "" : ",", what,
                    n_tok / wall, wall / n_tok * 1e3);
    *first = 0;
    int f = 1;
    for (int k = 0; k < VM_PROF_COUNT; k++) {
        if (!p->calls[k]) continue;
        const double s = p->sec[k], gf = s > 0 ? p->flops[k] / s * 1e-9 : 0, gb = s > 0 ? p->wbytes[k] / s * 1e-9 : 0;
        printf("  %-16s %10.4f %6.1f%% %9.1f %9.1f\n", vm_prof_name((vm_prof_op)k), s / n_tok * 1e3, 100.0 * s / wall,
               gf, gb);
        if (js) fprintf(js, "%s\n      {\"op\": \"%s\", \"ms_per_token\": %.5f, \"share\": %.4f, \"gflops\": %.3f, "
                            "\"weight_gb_s\": %.3f}", f ? "" : ",", vm_prof_name((vm_prof_op)k), s / n_tok * 1e3,
                        s / wall, gf, gb);
        f = 0;
    }
    if (js) fprintf(js, "\n    ]}");
}

int bench_profile(const char *path, const int32_t *thr, int n_thr, int batch, int n_prompt, int n_gen, FILE *js) {
    vm_model *m = vm_model_load(path);
    if (!m) return cli_fail(CMD, NULL);
    const int V = vm_model_n_vocab(m), n_tok = n_prompt > n_gen ? n_prompt : n_gen;
    int32_t *tok = malloc(sizeof *tok * (size_t)n_tok);
    if (!tok) { vm_model_free(m); return cli_fail(CMD, "out of memory"); }
    vm_rng r;
    vm_rng_seed(&r, 1);
    for (int i = 0; i < n_tok; i++) tok[i] = (int32_t)(vm_rng_u64(&r) % (uint64_t)V);
    printf("profile of %s: %d layers, %d experts, simd %s, prompt %d in batches of %d, %d decoded tokens\n", path,
           vm_model_n_layer(m), vm_model_n_expert(m), vm_simd_name(vm_simd_get()), n_prompt, batch, n_gen);
    if (js) fprintf(js, "{\"mode\": \"profile\", \"model\": \"%s\", \"simd\": \"%s\", \"n_prompt\": %d, \"batch\": %d, "
                        "\"n_gen\": %d, \"runs\": [", path, vm_simd_name(vm_simd_get()), n_prompt, batch, n_gen);
    int rc = 0;
    for (int it = 0; it < n_thr && !rc; it++) {
        omp_set_num_threads(thr[it]);
        vm_ctx *c = vm_ctx_init(m, n_tok + 1, batch);
        if (!c) { rc = cli_fail(CMD, NULL); break; }
        // a warm-up pass maps the weights in; then the timed passes
        if (vm_ctx_eval(c, tok, n_prompt, NULL)) rc = cli_fail(CMD, NULL);
        vm_prof pp, dec;
        double t_pp = 0, t_dec = 0;
        vm_prof_enable(1);
        if (!rc) {
            vm_ctx_reset(c);
            vm_prof_reset();
            const double t0 = vm_now_s();
            if (vm_ctx_eval(c, tok, n_prompt, NULL)) rc = cli_fail(CMD, NULL);
            t_pp = vm_now_s() - t0;
            vm_prof_get(&pp);
        }
        if (!rc) {
            vm_ctx_reset(c);
            vm_prof_reset();
            const double t0 = vm_now_s();
            for (int i = 0; i < n_gen && !rc; i++)
                if (vm_ctx_eval(c, tok + i, 1, NULL)) rc = cli_fail(CMD, NULL);
            t_dec = vm_now_s() - t0;
            vm_prof_get(&dec);
        }
        vm_prof_enable(0);
        vm_ctx_free(c);
        if (rc) break;
        const double stream = bench_stream_gb_s();
        double wb = 0;
        for (int k = 0; k < VM_PROF_COUNT; k++) wb += dec.wbytes[k];
        const double dec_gb_s = wb / t_dec * 1e-9;
        printf("\nthreads %d\n", thr[it]);
        if (js) fprintf(js, "%s\n  {\"threads\": %d,", it ? "," : "", thr[it]);
        int first = 1;
        print_table("prompt", &pp, t_pp, n_prompt, js, &first);
        print_table("decode", &dec, t_dec, n_gen, js, &first);
        printf("decode reads %.3f GB of weights per token: %.1f GB/s, %.0f%% of the streaming read bandwidth "
               "(%.1f GB/s, %d thread%s)\n", wb / n_gen * 1e-9, dec_gb_s, stream > 0 ? 100.0 * dec_gb_s / stream : 0.0,
               stream, thr[it], thr[it] > 1 ? "s" : "");
        if (js) fprintf(js, ",\n    \"decode_weight_gb_per_token\": %.5f, \"decode_weight_gb_s\": %.3f, "
                            "\"stream_gb_s\": %.3f, \"decode_bandwidth_share\": %.4f}",
                        wb / n_gen * 1e-9, dec_gb_s, stream, stream > 0 ? dec_gb_s / stream : 0.0);
    }
    if (js) fprintf(js, "\n]}\n");
    free(tok);
    vm_model_free(m);
    return rc;
}

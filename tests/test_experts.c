// Expert specialisation read-outs (eval/experts.h) against independent oracles, on models made from
// the real stories260K:
// - a 1-LAYER MoE (stories260K's first block, 4 experts, top-2, noisy experts, a strong random
//   router; a poor language model, but the arithmetic is the same): there a token's loss
//   depends only on the experts chosen for it in the one MoE layer (keys and values are computed
//   before the FFN), so the test tabulates CE_t(S) for all 6 expert pairs S with its own
//   fixed-pair router, and the router loss (S = top-2 of the logits), the random-routing loss
//   (S = the pair drawn by the documented stream, replayed here) and its expectation (mean over
//   the 6 pairs) follow by hand; logit SD, K-th gap, loads from the recorded logits; the expert
//   difference by naive loops over the f32 weights;
// - top-K = N: random routing selects all experts, so the two losses are equal and loads uniform;
// - exact copies (noise 0): every choice computes the dense model, so random routing costs nothing
//   and the expert difference is exactly 0;
// - same numbers for 1 and 2 threads; the routers are restored; refusals.
#include "convert/convert.h"
#include "eval/experts.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "router/router.h"
#include "tokenizer/tokenizer.h"
#include "train/lm.h"
#include "util/err.h"
#include "util/fileio.h"
#include "util/rng.h"
#include "test.h"

#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];

static const char *tmp(const char *name) {
    static char buf[8][512];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, 512, "%s/%s", dir, name);
    return b;
}

// The dense model cut to its first block (llama.block_count = 1, blk.1.. dropped).
static int one_layer(const char *in, const char *out) {
    vm_gguf *g = vm_gguf_open(in);
    if (!g) return -1;
    vm_gguf_writer *w = vm_gguf_writer_init();
    vm_gguf_copy_kv(w, g);
    vm_gguf_set_u32(w, "llama.block_count", 1);
    int rc = 0;
    for (int64_t i = 0; i < g->n_tensors && !rc; i++) {
        const vm_gguf_tensor_info *ti = &g->tensors[i];
        if (!strncmp(ti->name, "blk.", 4) && strncmp(ti->name, "blk.0.", 6)) continue;
        rc = vm_gguf_add_tensor(w, ti->name, ti->t.type, ti->t.n_dims, ti->t.ne, ti->t.data, ti->nbytes);
    }
    if (!rc) rc = vm_gguf_write(w, out);
    vm_gguf_writer_free(w);
    vm_gguf_free(g);
    return rc;
}

// ---- a test router that always picks the pair `pair` and records the logits it saw
typedef struct fixed_router {
    vm_router r;
    int32_t pair[2];
    float *rec;        // (n_tok, N) logits by scored position
    int64_t at;        // scored position of the next token
} fixed_router;

static int fixed_forward(vm_router *r, const vm_router_layer *L, const float *u, int T, vm_router_out *out,
                         vm_rng *rng) {
    (void)rng;
    fixed_router *f = (fixed_router *)r;
    const int N = L->n_expert;
    vm_router_logits(L, u, T, out->logits);
    for (int t = 0; t < T; t++) {
        const float *l = out->logits + (size_t)t * N;
        memcpy(out->sel + (size_t)t * 2, f->pair, sizeof f->pair);
        vm_gate_probs(L, l, out->probs + (size_t)t * N);
        vm_gate_at(L, l, f->pair, out->gates + (size_t)t * 2);
        memcpy(f->rec + (size_t)(f->at + t) * N, l, (size_t)N * sizeof(float));
    }
    f->at += T;
    return 0;
}

static void fixed_free(vm_router *r) { (void)r; }
static const vm_router_ops fixed_ops = { .name = "fixed-pair", .forward = fixed_forward, .free = fixed_free };

// Per-token CE of the windows (w * seq, seq + 1 tokens each) with the model's current routers.
static int token_ce(vm_model *m, const int32_t *ids, int nw, int seq, double *ce, fixed_router *f) {
    const int V = vm_model_n_vocab(m);
    vm_ctx *c = vm_ctx_init(m, seq, seq);
    float *lg = malloc((size_t)seq * V * sizeof *lg);
    int rc = c && lg ? 0 : -1;
    for (int w = 0; w < nw && !rc; w++) {
        vm_ctx_reset(c);
        if (f) f->at = (int64_t)w * seq;
        if ((rc = vm_ctx_eval(c, ids + (size_t)w * seq, seq, lg))) break;
        for (int t = 0; t < seq; t++) {
            const float *l = lg + (size_t)t * V;
            double mx = l[0], z = 0;
            for (int v = 1; v < V; v++) if (l[v] > mx) mx = l[v];
            for (int v = 0; v < V; v++) z += exp(l[v] - mx);
            ce[(size_t)w * seq + t] = log(z) + mx - l[ids[(size_t)w * seq + t + 1]];
        }
    }
    vm_ctx_free(c);
    free(lg);
    return rc;
}

static int pair_index(int a, int b) {   // the 6 pairs of 4 experts, a < b
    static const int idx[4][4] = {{-1, 0, 1, 2}, {0, -1, 3, 4}, {1, 3, -1, 5}, {2, 4, 5, -1}};
    return idx[a][b];
}

typedef struct u_rec { int n, D; float *u; } u_rec;   // router inputs of layer 0, first n positions
static void on_u(void *ud, const vm_trace_ev *ev) {
    u_rec *r = ud;
    if (strcmp(ev->name, "ffn_norm") || ev->layer != 0) return;
    for (int t = 0; t < ev->n_tokens; t++)
        if (ev->pos0 + t < r->n) memcpy(r->u + (size_t)(ev->pos0 + t) * r->D, ev->f + (size_t)t * r->D, (size_t)r->D * sizeof(float));
}

static double silu(double x) { return x / (1.0 + exp(-x)); }

static void check_one_layer(const char *path, const int32_t *ids, int64_t n_ids) {
    vm_model *m = vm_model_load(path);
    CHECK(m != NULL, "load %s: %s", path, vm_errmsg());
    if (!m) return;
    const int N = m->hp.n_expert, D = m->hp.n_embd, F = m->hp.n_ff_exp, seq = 32, nw = 6, n = seq * nw;
    CHECK(N == 4 && m->hp.n_expert_used == 2 && m->hp.n_layer == 1, "model shape");
    CHECK(n_ids > n + 1, "text too short");
    vm_expert_stats_opts o;
    vm_expert_stats_opts_default(&o);
    o.seq = seq; o.max_tokens = n + seq - 1; o.seed = 11; o.diff_tokens = 40;   // rounds down to nw windows
    vm_expert_stats s;
    vm_router *before = m->routers[0];
    CHECK(vm_expert_stats_tokens(m, ids, n_ids, &o, &s) == 0, "stats: %s", vm_errmsg());
    CHECK(m->routers[0] == before, "the model's router was not restored");
    CHECK(s.n_tokens == n && s.n_windows == nw && s.n_moe == 1 && s.layers[0] == 0, "sizes %lld %d", (long long)s.n_tokens, s.n_windows);

    // CE_t(S) for all 6 pairs with the test's own router; the logits do not depend on the pair
    double *ce = malloc(sizeof(double) * 6 * n);
    float *rec = malloc(sizeof(float) * (size_t)n * N);
    fixed_router f = { .r = { .ops = &fixed_ops }, .rec = rec };
    m->routers[0] = &f.r;
    for (int a = 0; a < N; a++)
        for (int b = a + 1; b < N; b++) {
            f.pair[0] = a; f.pair[1] = b;
            CHECK(token_ce(m, ids, nw, seq, ce + (size_t)pair_index(a, b) * n, &f) == 0, "ce: %s", vm_errmsg());
        }
    m->routers[0] = before;

    double l_router = 0, l_random = 0, l_expect = 0, sd = 0, gap = 0, var = 0;
    int64_t count[4] = {0};
    for (int w = 0; w < nw; w++) {
        vm_rng r;
        vm_rng_seed2(&r, o.seed, VM_EXPERTS_STREAM + (uint64_t)w * 1 + 0);
        for (int t = 0; t < seq; t++) {
            const int p = w * seq + t;
            const float *l = rec + (size_t)p * N;
            int top[4] = {0, 1, 2, 3};   // sort by logit, ties lower index first
            for (int i = 0; i < N; i++)
                for (int j = i + 1; j < N; j++)
                    if (l[top[j]] > l[top[i]] || (l[top[j]] == l[top[i]] && top[j] < top[i])) { int x = top[i]; top[i] = top[j]; top[j] = x; }
            const int a = top[0] < top[1] ? top[0] : top[1], b = top[0] < top[1] ? top[1] : top[0];
            l_router += ce[(size_t)pair_index(a, b) * n + p];
            count[top[0]]++; count[top[1]]++;
            gap += (double)l[top[1]] - l[top[2]];
            double mean = 0, ss = 0;
            for (int e = 0; e < N; e++) mean += l[e] / 4.0;
            for (int e = 0; e < N; e++) ss += (l[e] - mean) * (l[e] - mean);
            sd += sqrt(ss / N);
            int perm[4] = {0, 1, 2, 3};   // the documented draw: partial Fisher-Yates
            for (int k = 0; k < 2; k++) {
                const int j = k + (int)(vm_rng_u64(&r) % (uint64_t)(N - k));
                int x = perm[k]; perm[k] = perm[j]; perm[j] = x;
            }
            const int ra = perm[0] < perm[1] ? perm[0] : perm[1], rb = perm[0] < perm[1] ? perm[1] : perm[0];
            l_random += ce[(size_t)pair_index(ra, rb) * n + p];
            double e1 = 0, e2 = 0;
            for (int q = 0; q < 6; q++) { e1 += ce[(size_t)q * n + p] / 6; e2 += ce[(size_t)q * n + p] * ce[(size_t)q * n + p] / 6; }
            l_expect += e1;
            var += e2 - e1 * e1;
        }
    }
    l_router /= n; l_random /= n; l_expect /= n; sd /= n; gap /= n;
    const double se = sqrt(var) / n;   // SD of the mean of n independent draws
    printf("1-layer: router %.6f (oracle %.6f), random %.6f (oracle %.6f, expectation %.6f +- %.4f)\n",
           s.loss_router, l_router, s.loss_random_routing, l_random, l_expect, se);
    CHECK_NEAR(s.loss_router, l_router, 1e-5, "loss_router vs hand computation");
    CHECK_NEAR(s.loss_random_routing, l_random, 1e-5, "loss_random_routing vs the replayed draws");
    CHECK(fabs(s.loss_random_routing - l_expect) <= 4 * se + 1e-9, "random loss %g far from its expectation %g (se %g)",
          s.loss_random_routing, l_expect, se);
    CHECK(fabs(s.loss_random_routing - s.loss_router) > 1e-3, "the choice should change the loss: %g vs %g",
          s.loss_random_routing, s.loss_router);
    CHECK_NEAR(s.logit_sd[0], sd, 1e-5, "router_logit_sd");
    CHECK_NEAR(s.logit_gap[0], gap, 1e-5, "logit_gap");
    double mn = 1;
    for (int e = 0; e < N; e++) {
        CHECK_NEAR(s.load[e], count[e] / (2.0 * n), 1e-12, "load");
        if (count[e] / (2.0 * n) < mn) mn = count[e] / (2.0 * n);
    }
    CHECK_NEAR(s.load_min, mn, 1e-12, "load_min");
    CHECK(s.logit_sd_mean == s.logit_sd[0] && s.expert_diff_mean == s.expert_diff[0], "means of one layer");
    CHECK(s.loss_random_layer[0] == s.loss_random_routing, "one layer at random = all layers at random (same streams)");

    // expert_diff by naive loops on the first 40 router inputs (recorded from a trace)
    u_rec ur = { 40, D, malloc(sizeof(float) * 40 * D) };
    vm_ctx *c = vm_ctx_init(m, seq, seq);
    vm_ctx_set_trace(c, on_u, &ur);
    CHECK(vm_ctx_eval(c, ids, seq, NULL) == 0, "trace: %s", vm_errmsg());
    vm_ctx_free(c);
    // positions 32..39 come from window 1, which starts again at position 0: record them separately
    vm_ctx *c2 = vm_ctx_init(m, seq, seq);
    u_rec ur2 = { 8, D, malloc(sizeof(float) * 8 * D) };
    vm_ctx_set_trace(c2, on_u, &ur2);
    CHECK(vm_ctx_eval(c2, ids + seq, 8, NULL) == 0, "trace 2: %s", vm_errmsg());
    vm_ctx_free(c2);
    memcpy(ur.u + (size_t)32 * D, ur2.u, sizeof(float) * 8 * D);
    const vm_layer *ly = &m->layers[0];
    double dsum = 0;
    double *y = malloc(sizeof(double) * N * D);
    for (int t = 0; t < 40; t++) {
        const float *u = ur.u + (size_t)t * D;
        for (int e = 0; e < N; e++) {
            const float *G = ly->exp_gate[e].data, *U = ly->exp_up[e].data, *Dn = ly->exp_down[e].data;
            for (int d = 0; d < D; d++) y[e * D + d] = 0;
            for (int i = 0; i < F; i++) {
                double g = 0, up = 0;
                for (int d = 0; d < D; d++) { g += (double)G[(size_t)i * D + d] * u[d]; up += (double)U[(size_t)i * D + d] * u[d]; }
                const double h = silu(g) * up;
                for (int d = 0; d < D; d++) y[e * D + d] += h * Dn[(size_t)d * F + i];
            }
        }
        double norm = 0, pair = 0;
        for (int a = 0; a < N; a++) {
            double q = 0;
            for (int d = 0; d < D; d++) q += y[a * D + d] * y[a * D + d];
            norm += sqrt(q) / N;
            for (int b = a + 1; b < N; b++) {
                double r2 = 0;
                for (int d = 0; d < D; d++) r2 += (y[a * D + d] - y[b * D + d]) * (y[a * D + d] - y[b * D + d]);
                pair += sqrt(r2) / 6;
            }
        }
        dsum += pair / norm;
    }
    printf("1-layer: expert_diff %.6f (naive %.6f)\n", s.expert_diff[0], dsum / 40);
    CHECK_NEAR(s.expert_diff[0], dsum / 40, 1e-4 * (dsum / 40), "expert_diff vs naive loops");
    CHECK(s.diff_tokens == 40, "diff tokens %d", s.diff_tokens);

    // same numbers whatever the thread count; the seed moves only the random-routing loss
    vm_expert_stats s1, s2, s3;
    omp_set_num_threads(1);
    CHECK(vm_expert_stats_tokens(m, ids, n_ids, &o, &s1) == 0, "1 thread: %s", vm_errmsg());
    omp_set_num_threads(2);
    CHECK(vm_expert_stats_tokens(m, ids, n_ids, &o, &s2) == 0, "2 threads: %s", vm_errmsg());
    CHECK(s1.loss_router == s2.loss_router && s1.loss_random_routing == s2.loss_random_routing &&
          s1.logit_sd[0] == s2.logit_sd[0] && s1.expert_diff[0] == s2.expert_diff[0] &&
          !memcmp(s1.load, s2.load, sizeof(double) * N), "1 and 2 threads differ");
    o.seed = 12;
    CHECK(vm_expert_stats_tokens(m, ids, n_ids, &o, &s3) == 0, "seed 12: %s", vm_errmsg());
    CHECK(s3.loss_router == s1.loss_router && s3.loss_random_routing != s1.loss_random_routing,
          "seed: router %g vs %g, random %g vs %g", s3.loss_router, s1.loss_router, s3.loss_random_routing,
          s1.loss_random_routing);

    // JSON carries the same numbers
    json_t *j = vm_expert_stats_json(&s);
    CHECK(j && json_real_value(json_object_get(j, "loss_router")) == s.loss_router &&
          json_real_value(json_object_get(j, "loss_random_routing")) == s.loss_random_routing &&
          json_real_value(json_object_get(json_object_get(j, "load"), "min")) == s.load_min &&
          json_array_size(json_object_get(json_object_get(j, "load"), "per_layer")) == 1 &&
          json_real_value(json_object_get(json_object_get(j, "expert_diff"), "mean")) == s.expert_diff_mean,
          "json");
    json_decref(j);
    vm_expert_stats_free(&s); vm_expert_stats_free(&s1); vm_expert_stats_free(&s2); vm_expert_stats_free(&s3);
    free(ce); free(rec); free(ur.u); free(ur2.u); free(y);
    vm_model_free(m);
}

// Models where the choice cannot matter: the two losses agree.
static void check_no_effect(const char *path, const int32_t *ids, int64_t n_ids, int copies) {
    vm_model *m = vm_model_load(path);
    CHECK(m != NULL, "load %s: %s", path, vm_errmsg());
    if (!m) return;
    vm_expert_stats_opts o;
    vm_expert_stats_opts_default(&o);
    o.seq = 64; o.max_tokens = 640; o.diff_tokens = 64;
    vm_expert_stats s;
    CHECK(vm_expert_stats_tokens(m, ids, n_ids, &o, &s) == 0, "%s: %s", path, vm_errmsg());
    printf("%s: router %.7f random %.7f sd %.4f gap %.4f diff %.4f load min %.4f\n", copies ? "copies" : "top-K = N",
           s.loss_router, s.loss_random_routing, s.logit_sd_mean, s.logit_gap_mean, s.expert_diff_mean, s.load_min);
    CHECK_NEAR(s.loss_random_routing, s.loss_router, 2e-5, "random routing must cost nothing here");
    for (int i = 0; i < s.n_moe; i++) CHECK_NEAR(s.loss_random_layer[i], s.loss_router, 2e-5, "one layer at random");
    CHECK(s.loss_router > 0.5 && s.loss_router < 4, "loss %g", s.loss_router);
    if (copies) {
        CHECK(s.expert_diff_mean == 0.0, "identical experts differ: %g", s.expert_diff_mean);
    } else {
        for (int i = 0; i < s.n_moe * s.n_expert; i++) CHECK(s.load[i] == 1.0 / s.n_expert, "load %g", s.load[i]);
        CHECK(s.logit_gap_mean == 0.0, "no K+1-th logit: gap %g", s.logit_gap_mean);
        CHECK(s.expert_diff_mean > 0.05, "noisy experts should differ: %g", s.expert_diff_mean);
    }
    vm_expert_stats_free(&s);
    vm_model_free(m);
}

static void check_refusals(const char *dense, const char *moe, const int32_t *ids, int64_t n_ids) {
    vm_expert_stats s;
    vm_expert_stats_opts o;
    vm_expert_stats_opts_default(&o);
    vm_model *d = vm_model_load(dense), *m = vm_model_load(moe);
    CHECK(d && vm_expert_stats_tokens(d, ids, n_ids, &o, &s) == -1 && strstr(vm_errmsg(), "dense"), "dense: %s", vm_errmsg());
    CHECK(vm_expert_stats_tokens(m, ids, 100, &o, &s) == -1 && strstr(vm_errmsg(), "no window"), "short: %s", vm_errmsg());
    o.seq = 100000;
    CHECK(vm_expert_stats_tokens(m, ids, n_ids, &o, &s) == -1 && strstr(vm_errmsg(), "context"), "seq: %s", vm_errmsg());
    vm_tokenizer *tok = vm_tokenizer_from_gguf(m->gguf);
    vm_expert_stats_opts_default(&o);
    CHECK(vm_expert_stats_run(m, tok, tmp("missing.txt"), &o, &s) == -1 && strstr(vm_errmsg(), "missing.txt"), "missing: %s",
          vm_errmsg());
    vm_tokenizer_free(tok);
    vm_model_free(d);
    vm_model_free(m);
}

int main(void) {
    const char *td = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/vmoer_experts_XXXXXX", td && *td ? td : "/tmp");
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    char bin[512], tokf[512];
    snprintf(bin, sizeof bin, "%s/models/stories260K.bin", test_shared_dir());
    snprintf(tokf, sizeof tokf, "%s/models/tok512.bin", test_shared_dir());
    const char *dense = tmp("dense.gguf"), *dense1 = tmp("dense1.gguf"), *moe1 = tmp("moe1.gguf"),
               *copies = tmp("copies.gguf"), *full = tmp("full.gguf");
    CHECK(vm_convert_llama2c(bin, tokf, dense, VM_TYPE_F32, NULL) == 0, "convert: %s", vm_errmsg());
    CHECK(one_layer(dense, dense1) == 0, "one layer: %s", vm_errmsg());
    vm_upcycle_opts o1 = { .n_expert = 4, .n_expert_used = 2, .noise = 0.5f, .router_std = 0.5f, .seed = 3 };
    vm_upcycle_opts oc = { .n_expert = 4, .n_expert_used = 2, .noise = 0.0f, .router_std = 0.5f, .seed = 3 };
    vm_upcycle_opts of = { .n_expert = 4, .n_expert_used = 4, .noise = 0.3f, .router_std = 0.5f, .seed = 3 };
    CHECK(vm_upcycle(dense1, moe1, &o1) == 0 && vm_upcycle(dense, copies, &oc) == 0 && vm_upcycle(dense, full, &of) == 0,
          "upcycle: %s", vm_errmsg());

    vm_model *m = vm_model_load(dense);
    vm_tokenizer *tok = m ? vm_tokenizer_from_gguf(m->gguf) : NULL;
    size_t len = 0;
    char *text = vm_read_file("data/cloze/validation-stories.txt", &len);
    int32_t *ids = NULL;
    int64_t n_ids = tok && text ? vm_lm_tokenize_docs(tok, text, len, 0, 3, NULL, &ids) : -1;
    CHECK(n_ids > 700, "validation text: %lld tokens (%s)", (long long)n_ids, vm_errmsg());
    if (n_ids > 700) {
        check_one_layer(moe1, ids, n_ids);
        check_no_effect(full, ids, n_ids, 0);
        check_no_effect(copies, ids, n_ids, 1);
        check_refusals(dense, moe1, ids, n_ids);
    }
    free(ids); free(text);
    vm_tokenizer_free(tok);
    vm_model_free(m);
    const char *names[] = {"dense.gguf", "dense1.gguf", "moe1.gguf", "copies.gguf", "full.gguf"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) remove(tmp(names[i]));
    rmdir(dir);
    return TEST_SUMMARY();
}

// The deepseek2 forward pass (multi-head latent attention + DeepSeek MoE) against
// tests/reference/deepseek2_ref.py (a numpy implementation from the HF DeepSeek-V2/V3
// definitions): logits of a V2-style model (softmax, no renormalisation, x1.5, YaRN, no q LoRA;
// current split attn_k_b/attn_v_b layout and the legacy attn_kv_b layout) and a V3-style model
// (q LoRA, sigmoid, selection bias, 4 groups / 2 kept, renormalised, x2.5); the selected experts
// through the trace; one batch == chunks == one token at a time; loader errors; the backward
// (model/train.h): training forward == inference, dL/dh against central finite differences;
// convert-hf of a DeepseekV3ForCausalLM checkpoint written by the reference, run to its logits.
#include "test.h"
#include "model/model.h"
#include "model/attn_mla.h"
#include "convert/hf.h"
#include "gguf/gguf.h"
#include "model/train.h"
#include "util/rng.h"
#include "util/err.h"
#include "util/npy.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GOLD "tests/golden/deepseek2/"
#define TMAX 32

static float max_abs_diff(const float *a, const float *b, size_t n) {
    float m = 0;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]);
        if (!(d <= m)) m = d;   // NaN propagates
    }
    return m;
}

static int load_npy(const char *name, const char *what, float **data, int64_t shape[4]) {
    char path[256];
    int nd;
    snprintf(path, sizeof path, GOLD "%s.%s.npy", name, what);
    if (vm_npy_read_f32(path, data, &nd, shape)) { fprintf(stderr, "%s\n", vm_errmsg()); return -1; }
    return nd;
}

typedef struct { int32_t sel[8][TMAX][8]; int K, n_weights; double wsum[8][TMAX]; } trace_t;

static void on_trace(void *ud, const vm_trace_ev *ev) {
    trace_t *tr = ud;
    if (ev->layer < 0 || ev->layer >= 8) return;
    if (!strcmp(ev->name, "ffn_moe_topk") && ev->i && ev->ne <= 8) {
        tr->K = ev->ne;
        for (int t = 0; t < ev->n_tokens && ev->pos0 + t < TMAX; t++)
            for (int k = 0; k < ev->ne; k++) tr->sel[ev->layer][ev->pos0 + t][k] = ev->i[t * ev->ne + k];
    }
    if (!strcmp(ev->name, "ffn_moe_weights") && ev->f)
        for (int t = 0; t < ev->n_tokens && ev->pos0 + t < TMAX; t++) {
            double s = 0;
            for (int k = 0; k < ev->ne; k++) s += ev->f[t * ev->ne + k];
            tr->wsum[ev->layer][ev->pos0 + t] = s;
        }
}

// file: the GGUF (tests/golden/deepseek2/<file>.gguf); gold: the name of its golden files.
// wsum: expected sum of the K gates per token (renormalised models), or < 0 to skip.
static void test_golden(const char *file, const char *gold, double wsum) {
    char path[256];
    snprintf(path, sizeof path, GOLD "%s.gguf", file);
    vm_model *m = vm_model_load(path);
    CHECK(m != NULL, "%s: load: %s", file, vm_errmsg());
    if (!m) return;
    CHECK(m->hp.arch == VM_ARCH_DEEPSEEK2 && m->mla != NULL, "%s: arch", file);
    float *tokf = NULL, *logits_gold = NULL, *topk = NULL;
    int64_t ts[4], gs[4], ks[4];
    if (load_npy(gold, "tokens", &tokf, ts) != 1 || load_npy(gold, "logits", &logits_gold, gs) != 2 ||
        load_npy(gold, "topk", &topk, ks) != 3) {
        CHECK(0, "%s: golden files", file);
        free(tokf); free(logits_gold); free(topk); vm_model_free(m);
        return;
    }
    const int T = (int)ts[0], V = m->hp.n_vocab;
    CHECK(T <= TMAX && gs[0] == T && gs[1] == V, "%s: golden shape", file);
    int32_t tok[TMAX];
    for (int i = 0; i < T && i < TMAX; i++) tok[i] = (int32_t)tokf[i];
    float *lg = calloc((size_t)T * V, sizeof(float)), *lg1 = calloc((size_t)T * V, sizeof(float));
    trace_t *tr = calloc(1, sizeof *tr);

    // one batch, two threads, traced
    int saved = omp_get_max_threads();
    omp_set_num_threads(2);
    vm_ctx *c = vm_ctx_init(m, TMAX, TMAX);
    CHECK(c != NULL, "%s: ctx: %s", file, vm_errmsg());
    if (c) {
        vm_ctx_set_trace(c, on_trace, tr);
        CHECK(vm_ctx_eval(c, tok, T, lg) == 0, "%s: eval: %s", file, vm_errmsg());
        const float d = max_abs_diff(lg, logits_gold, (size_t)T * V);
        printf("%-10s max |logit - reference| = %.3g\n", file, d);
        CHECK(d <= 1e-4f, "%s: max abs logit diff %g > 1e-4", file, d);
        // selected experts == the reference's (order: best first), per MoE layer
        const int nmoe = (int)ks[0], K = (int)ks[2];
        int bad = 0;
        CHECK(tr->K == K && ks[1] == T, "%s: K %d vs %d", file, tr->K, K);
        for (int l = 0; l < nmoe; l++) {
            const int il = m->hp.n_layer_dense_lead + l;
            for (int t = 0; t < T; t++)
                for (int k = 0; k < K && k < 8; k++)
                    bad += tr->sel[il][t][k] != (int32_t)topk[((size_t)l * T + t) * K + k];
        }
        CHECK(bad == 0, "%s: %d selections differ from the reference", file, bad);
        if (wsum >= 0) {
            double worst = 0;
            for (int l = m->hp.n_layer_dense_lead; l < m->hp.n_layer; l++)
                for (int t = 0; t < T; t++) worst = fmax(worst, fabs(tr->wsum[l][t] - wsum));
            CHECK(worst < 1e-5, "%s: gates sum to %g off %g", file, worst, wsum);
        }
        // one token at a time (decode through the latent cache): same numbers
        vm_ctx_reset(c);
        vm_ctx_set_trace(c, NULL, NULL);
        for (int t = 0; t < T; t++)
            CHECK(vm_ctx_eval(c, tok + t, 1, lg1 + (size_t)t * V) == 0, "%s: eval token %d", file, t);
        CHECK(max_abs_diff(lg, lg1, (size_t)T * V) == 0.0f, "%s: one-at-a-time differs by %g", file,
              max_abs_diff(lg, lg1, (size_t)T * V));
        vm_ctx_free(c);
    }
    // chunks of 3 (n_batch 3), one thread
    omp_set_num_threads(1);
    c = vm_ctx_init(m, TMAX, 3);
    CHECK(c != NULL, "%s: ctx chunks", file);
    if (c) {
        memset(lg1, 0, (size_t)T * V * sizeof(float));
        CHECK(vm_ctx_eval(c, tok, T, lg1) == 0, "%s: eval chunks: %s", file, vm_errmsg());
        CHECK(max_abs_diff(lg, lg1, (size_t)T * V) == 0.0f, "%s: chunked/1 thread differs by %g", file,
              max_abs_diff(lg, lg1, (size_t)T * V));
        vm_ctx_free(c);
    }
    omp_set_num_threads(saved);
    free(tr); free(lg); free(lg1); free(tokf); free(logits_gold); free(topk);
    vm_model_free(m);
}

// ggml's YaRN ramp bounds for DeepSeek's usual settings (rope 64, 4096 positions, base 10000,
// beta 32/1): 10 and 23 by the formula n_rot ln(n_ctx / (2 pi beta)) / (2 ln base).
static void test_yarn_corr(void) {
    float lo, hi;
    vm_mla_yarn_corr(64, 4096, 10000.0f, 32.0f, 1.0f, &lo, &hi);
    CHECK(lo == 10.0f && hi == 23.0f, "corr dims %g %g", lo, hi);
    vm_mla_yarn_corr(8, 4096, 10000.0f, 32.0f, 1.0f, &lo, &hi);
    CHECK(lo == 1.0f && hi == 3.0f, "corr dims (8) %g %g", lo, hi);
}

// A copy of the v3 file with one key changed or dropped must fail to load with a message.
static void test_errors(void) {
    vm_model *m = vm_model_load(GOLD "v3.gguf");
    CHECK(m != NULL, "load v3");
    if (!m) return;
    // the router layer got the V3 pieces
    const vm_router_layer *L = &m->layers[1].rl;
    CHECK(L->conv == VM_GATE_SIGMOID_NORM && L->sel_bias && L->n_group == 4 && L->topk_group == 2 &&
          fabsf(L->weights_scale - 2.5f) < 1e-6f, "v3 routing description");
    CHECK(!m->layers[0].is_moe && m->layers[1].has_shexp && m->hp.n_ff_shexp == 12, "v3 dense lead / shared");
    CHECK(m->mla->q_lora == 24 && !m->mla->kb_fused && m->mla->nope == 8 && m->mla->v_dim == 12, "v3 mla shape");
    vm_model_free(m);
    m = vm_model_load(GOLD "v2_legacy.gguf");
    CHECK(m && m->mla->kb_fused && m->layers[1].rl.conv == VM_GATE_SOFTMAX_ALL && !m->layers[1].rl.sel_bias,
          "v2 legacy description");
    vm_model_free(m);
}

// ---------------------------------------------------------------- backward

enum { BT = 8, NOUT = 2 };

typedef struct {
    vm_model *m;
    vm_tctx *tc;
    float *h, *logits, *dlogits;
    int32_t out_pos[NOUT], target[NOUT];
} net;

// L = sum over the NOUT positions of cross-entropy; dlogits filled.
static double net_loss(net *n) {
    const int V = n->m->hp.n_vocab;
    if (vm_tctx_forward(n->tc, n->h, BT, n->out_pos, NOUT, n->logits, NULL)) return NAN;
    double L = 0;
    for (int i = 0; i < NOUT; i++) {
        const float *lg = n->logits + (size_t)i * V;
        double mx = lg[0], s = 0;
        for (int v = 1; v < V; v++) mx = fmax(mx, lg[v]);
        for (int v = 0; v < V; v++) s += exp(lg[v] - mx);
        L += mx + log(s) - lg[n->target[i]];
        for (int v = 0; v < V; v++) n->dlogits[(size_t)i * V + v] = (float)(exp(lg[v] - mx) / s - (v == n->target[i]));
    }
    return L;
}

static double fd_at(net *n, float *x, float eps) {
    const float save = *x, xp = save + eps, xm = save - eps;
    *x = xp; const double lp = net_loss(n);
    *x = xm; const double lm = net_loss(n);
    *x = save;
    return (lp - lm) / ((double)xp - xm);
}

// Training forward == inference logits for every l0; dL/dh by central differences (eps 1e-2)
// for l0 = 0 and the first MoE layer. A coordinate whose step flips an expert selection shows
// as two step sizes disagreeing: it is skipped and counted (the selection has no gradient).
static void test_backward(const char *file) {
    char path[256];
    snprintf(path, sizeof path, GOLD "%s.gguf", file);
    vm_model *m = vm_model_load(path);
    CHECK(m != NULL, "%s: load: %s", file, vm_errmsg());
    if (!m) return;
    const int V = m->hp.n_vocab, D = m->hp.n_embd;
    vm_rng rng;
    vm_rng_seed(&rng, 7);
    int32_t tok[BT], pos[BT];
    for (int t = 0; t < BT; t++) { tok[t] = (int32_t)(vm_rng_u64(&rng) % (uint64_t)V); pos[t] = t; }
    float *ref = calloc((size_t)BT * V, sizeof(float)), *lg = calloc((size_t)BT * V, sizeof(float));
    vm_ctx *c = vm_ctx_init(m, BT, BT);
    CHECK(c && vm_ctx_eval(c, tok, BT, ref) == 0, "%s: eval: %s", file, vm_errmsg());
    vm_ctx_free(c);
    net n = { .m = m };
    n.h = calloc((size_t)BT * D, sizeof(float));
    n.logits = calloc((size_t)NOUT * V, sizeof(float));
    n.dlogits = calloc((size_t)NOUT * V, sizeof(float));
    float *dh = calloc((size_t)BT * D, sizeof(float));
    for (int l0 = 0; l0 < m->hp.n_layer; l0++) {
        n.tc = vm_tctx_init(m, l0, BT);
        CHECK(n.tc != NULL, "%s: tctx: %s", file, vm_errmsg());
        if (!n.tc) break;
        CHECK(vm_model_hidden(m, tok, BT, l0, n.h) == 0, "%s: hidden: %s", file, vm_errmsg());
        CHECK(vm_tctx_forward(n.tc, n.h, BT, pos, BT, lg, NULL) == 0, "%s: tctx forward: %s", file, vm_errmsg());
        const float d = max_abs_diff(lg, ref, (size_t)BT * V);
        CHECK(d <= 1e-6f, "%s l0 %d: training forward differs from inference by %g", file, l0, d);
        if (l0 <= m->hp.n_layer_dense_lead) {
            n.out_pos[0] = BT - 4; n.out_pos[1] = BT - 2;
            n.target[0] = 3; n.target[1] = V - 5;
            const double L0 = net_loss(&n);
            memset(dh, 0, (size_t)BT * D * sizeof(float));
            CHECK(isfinite(L0) && vm_tctx_backward(n.tc, n.dlogits, 0.0f, dh) == 0, "%s: backward: %s", file, vm_errmsg());
            double num = 0, na = 0, nf = 0;
            int skipped = 0;
            for (int i = 0; i < BT * D; i++) {
                const double g1 = fd_at(&n, n.h + i, 1e-2f), g2 = fd_at(&n, n.h + i, 2.5e-3f);
                if (fabs(g1 - g2) > 1e-2 * fmax(fabs(g1), fabs(g2)) + 2e-3) { skipped++; continue; }
                num += (dh[i] - g1) * (dh[i] - g1); na += (double)dh[i] * dh[i]; nf += g1 * g1;
            }
            double den = fmax(fmax(na, nf), 2.5e-3);
            const double e = sqrt(num / den);
            printf("%-10s l0 %d  dL/dh nerr %.2e (%d of %d coordinates skipped: a selection flipped)\n",
                   file, l0, e, skipped, BT * D);
            CHECK(e < 2e-3, "%s l0 %d: dL/dh nerr %g", file, l0, e);
            CHECK(skipped <= BT * D / 4, "%s l0 %d: %d coordinates skipped", file, l0, skipped);
            double tail = 0;   // causal: rows after the last output position get nothing
            for (int i = (BT - 1) * D; i < BT * D; i++) tail += fabs(dh[i]);
            CHECK(tail == 0, "%s: gradient after the last output position", file);
        }
        vm_tctx_free(n.tc);
    }
    free(ref); free(lg); free(n.h); free(n.logits); free(n.dlogits); free(dh);
    vm_model_free(m);
}

// HF checkpoint -> GGUF -> logits against the reference: hf_v3 (split attn_k_b / attn_v_b,
// exp_probs_b, groups, YaRN keys), hf_v2 (softmax greedy gate, rms_norm_eps 0.05 while the latent
// norms keep eps 1e-6, as the reference modelling code: VM_MLA_LATENT_NORM_EPS).
static void convert_hf_case(const char *name) {
    char dir[] = "/tmp/vmoer_ds2_XXXXXX", out[64], src[128];
    if (!mkdtemp(dir)) { CHECK(0, "mkdtemp"); return; }
    snprintf(out, sizeof out, "%s/%s.gguf", dir, name);
    snprintf(src, sizeof src, GOLD "%s", name);
    vm_convert_hf_opts o = { .type = VM_TYPE_F32, .no_tokenizer = 1 };
    CHECK(vm_convert_hf(src, out, &o) == 0, "convert-hf %s: %s", name, vm_errmsg());
    vm_model *m = vm_model_load(out);
    CHECK(m != NULL, "load converted %s: %s", name, vm_errmsg());
    float *tokf = NULL, *gold = NULL;
    int64_t ts[4], gs[4];
    if (m && load_npy(name, "tokens", &tokf, ts) == 1 && load_npy(name, "logits", &gold, gs) == 2 &&
        ts[0] <= TMAX && gs[1] == m->hp.n_vocab) {
        const int T = (int)ts[0], V = m->hp.n_vocab;
        int32_t tok[TMAX];
        for (int i = 0; i < T; i++) tok[i] = (int32_t)tokf[i];
        float *lg = calloc((size_t)T * V, sizeof(float));
        vm_ctx *c = vm_ctx_init(m, TMAX, TMAX);
        CHECK(c && vm_ctx_eval(c, tok, T, lg) == 0, "eval converted %s: %s", name, vm_errmsg());
        const float d = max_abs_diff(lg, gold, (size_t)T * V);
        printf("%s (convert-hf) max |logit - reference| = %.3g\n", name, d);
        CHECK(d <= 1e-4f, "convert-hf round trip %s: max abs logit diff %g", name, d);
        if (!strcmp(name, "hf_v3"))
            CHECK(m->layers[1].rl.conv == VM_GATE_SIGMOID_NORM && m->layers[1].rl.sel_bias && m->layers[1].rl.n_group == 2,
                  "converted routing description");
        else
            CHECK(m->hp.norm_eps == 0.05f && !m->layers[1].rl.sel_bias, "hf_v2: rms eps %g", (double)m->hp.norm_eps);
        vm_ctx_free(c);
        free(lg);
    } else {
        CHECK(0, "%s golden files", name);
    }
    free(tokf); free(gold);
    vm_model_free(m);
    unlink(out);
    rmdir(dir);
}

static void test_convert_hf(void) {
    convert_hf_case("hf_v3");
    convert_hf_case("hf_v2");
}

// v3.gguf without one tensor: the load fails with a message naming it.
static void test_missing(const char *drop) {
    vm_gguf *g = vm_gguf_open(GOLD "v3.gguf");
    CHECK(g != NULL, "open v3: %s", vm_errmsg());
    if (!g) return;
    vm_gguf_writer *w = vm_gguf_writer_init();
    vm_gguf_copy_kv(w, g);
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const vm_gguf_tensor_info *ti = &g->tensors[i];
        if (strcmp(ti->name, drop) != 0)
            vm_gguf_add_tensor(w, ti->name, ti->t.type, ti->t.n_dims, ti->t.ne, ti->t.data, vm_tensor_nbytes(&ti->t));
    }
    char dir[] = "/tmp/vmoer_ds2m_XXXXXX", path[64];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(path, sizeof path, "%s/m.gguf", dir);
    CHECK(vm_gguf_write(w, path) == 0, "write: %s", vm_errmsg());
    vm_gguf_writer_free(w);
    vm_gguf_free(g);
    vm_model *m = vm_model_load(path);
    CHECK(m == NULL && strstr(vm_errmsg(), drop), "without %s: %s", drop, m ? "loaded" : vm_errmsg());
    vm_model_free(m);
    unlink(path);
    rmdir(dir);
}

int main(void) {
    test_yarn_corr();
    test_golden("v2", "v2", -1.0);
    test_golden("v2_legacy", "v2", -1.0);
    test_golden("v3", "v3", 2.5);
    test_errors();
    test_missing("blk.2.attn_k_b.weight");
    test_missing("blk.1.ffn_gate_shexp.weight");
    test_missing("blk.2.attn_kv_a_mqa.weight");
    test_missing("blk.0.attn_q_a_norm.weight");
    test_convert_hf();
    test_backward("v2");
    test_backward("v2_legacy");
    test_backward("v3");
    return TEST_SUMMARY();
}

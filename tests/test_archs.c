// The MoE families granitemoe, qwen2moe, qwen3moe, olmoe, deepseek against the independent
// reference of tests/reference/archs_ref.py (HF model definitions, GGUF in llama.cpp's layout):
//  - forward parity: logits within 1e-4 of the reference, every router convention and shared
//    experts, and the hyper-parameters each family must have set (rope type, gate convention...);
//  - the same logits through the KV cache in chunks, and through the training forward;
//  - dL/dh of the training backward against central finite differences (test_backward.c's
//    method: steps that flip a selection are retried smaller, then skipped);
//  - convert-hf round trip: the reference's HF checkpoints convert and reproduce its logits;
//  - missing family tensors and unsupported settings fail with one line naming them.
#include "test.h"
#include "convert/hf.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "model/train.h"
#include "router/router.h"
#include "util/err.h"
#include "util/npy.h"
#include "util/rng.h"

#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define GOLD "tests/golden/archs/"

static vm_rng rng;

typedef struct {
    const char *name;
    vm_arch arch;
    int rope_neox, qk_norm, shexp, shexp_gated, dense_lead;
    vm_gate_conv conv;
    int hf;   // has an HF checkpoint hf_<name>/
} fixture;

static const fixture FIX[] = {
    { "granitemoe",       VM_ARCH_GRANITEMOE, 0, 0, 0, 0, 0, VM_GATE_SOFTMAX_SELECTED, 0 },
    { "granitemoeshared", VM_ARCH_GRANITEMOE, 0, 0, 1, 0, 0, VM_GATE_SOFTMAX_SELECTED, 1 },
    { "qwen2moe",         VM_ARCH_QWEN2MOE,   1, 0, 1, 1, 0, VM_GATE_SOFTMAX_ALL, 1 },
    { "qwen3moe",         VM_ARCH_QWEN3MOE,   1, 1, 0, 0, 0, VM_GATE_SOFTMAX_SELECTED, 1 },
    { "olmoe",            VM_ARCH_OLMOE,      1, 2, 0, 0, 0, VM_GATE_SOFTMAX_ALL, 1 },
    { "olmoe_norm",       VM_ARCH_OLMOE,      1, 2, 0, 0, 0, VM_GATE_SOFTMAX_ALL_NORM, 0 },
    { "deepseek",         VM_ARCH_DEEPSEEK,   0, 0, 1, 0, 1, VM_GATE_SOFTMAX_ALL, 1 },
};
enum { NFIX = sizeof FIX / sizeof FIX[0] };

static float *gold_tokens, *gold_logits;
static int32_t tokens[64];
static int n_tok;

static double max_diff(const float *a, const float *b, size_t n) {
    double d = 0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

// Logits of the model at path over the reference tokens vs <name>.logits.npy.
static double parity(const char *path, const char *name, int n_batch) {
    char gp[256];
    snprintf(gp, sizeof gp, GOLD "%s.logits.npy", name);
    float *gold = NULL;
    int nd;
    int64_t sh[4];
    if (vm_npy_read_f32(gp, &gold, &nd, sh)) { CHECK(0, "%s: %s", gp, vm_errmsg()); return INFINITY; }
    vm_model *m = vm_model_load(path);
    CHECK(m != NULL, "load %s: %s", path, vm_errmsg());
    double d = INFINITY;
    if (m) {
        CHECK(nd == 2 && sh[0] == n_tok && sh[1] == m->hp.n_vocab, "%s: golden shape", name);
        vm_ctx *c = vm_ctx_init(m, 32, n_batch);
        float *lg = calloc((size_t)n_tok * m->hp.n_vocab, sizeof(float));
        if (c && vm_ctx_eval(c, tokens, n_tok, lg) == 0 && nd == 2 && sh[0] == n_tok && sh[1] == m->hp.n_vocab)
            d = max_diff(lg, gold, (size_t)n_tok * m->hp.n_vocab);
        else CHECK(0, "%s: eval: %s", name, vm_errmsg());
        free(lg);
        vm_ctx_free(c);
        vm_model_free(m);
    }
    free(gold);
    return d;
}

static void test_parity(void) {
    for (int i = 0; i < NFIX; i++) {
        const fixture *f = &FIX[i];
        char path[256];
        snprintf(path, sizeof path, GOLD "%s.gguf", f->name);
        vm_model *m = vm_model_load(path);
        CHECK(m != NULL, "load %s: %s", path, vm_errmsg());
        if (!m) continue;
        const vm_hparams *hp = &m->hp;
        int moe = 0, sh = 0, gated = 0;
        for (int l = 0; l < hp->n_layer; l++) {
            moe += m->layers[l].is_moe;
            sh += m->layers[l].has_shexp;
            gated += m->layers[l].ffn_gate_inp_shexp != NULL;
            if (m->layers[l].is_moe) CHECK(m->layers[l].rl.conv == f->conv, "%s layer %d: gate convention %d", f->name, l, m->layers[l].rl.conv);
        }
        CHECK(hp->arch == f->arch && hp->rope_neox == f->rope_neox && hp->qk_norm == f->qk_norm,
              "%s: arch %d rope_neox %d qk_norm %d", f->name, hp->arch, hp->rope_neox, hp->qk_norm);
        CHECK(hp->gate_conv == f->conv, "%s: gate convention %d, expected %d", f->name, hp->gate_conv, f->conv);
        CHECK(moe == hp->n_layer - f->dense_lead && hp->n_layer_dense_lead == f->dense_lead, "%s: %d MoE layers", f->name, moe);
        CHECK(sh == (f->shexp ? moe : 0) && gated == (f->shexp_gated ? moe : 0), "%s: %d shared experts, %d gated", f->name, sh, gated);
        if (f->arch == VM_ARCH_QWEN2MOE)
            CHECK(m->layers[0].bq && m->layers[0].bk && m->layers[0].bv, "qwen2moe: QKV biases loaded");
        if (f->arch == VM_ARCH_GRANITEMOE)
            CHECK(hp->f_embedding_scale != 1 && hp->f_residual_scale != 1 && hp->f_attention_scale != 0 && hp->f_logit_scale != 1,
                  "granitemoe: µP multipliers read");
        vm_model_free(m);
        // whole prompt in one batch, and in chunks of 4 through the KV cache
        const double d1 = parity(path, f->name, 32), d4 = parity(path, f->name, 4);
        printf("%-17s max|logit - reference| %.2e (one batch)  %.2e (chunks of 4)\n", f->name, d1, d4);
        CHECK(d1 <= 1e-4 && d4 <= 1e-4, "%s: logits differ from the reference by %g / %g", f->name, d1, d4);
    }
}

// ---------------------------------------------------------------- training forward and backward

// Wraps a router kind, recording the selected sets of a reference forward and flagging any later
// forward that selects differently (a finite-difference step that flipped a selection).
typedef struct { vm_router *inner; uint64_t ref[64]; int n_ref, record, changed; } spy_state;

static int spy_forward(vm_router *r, const vm_router_layer *L, const float *u, int T, vm_router_out *out, vm_rng *rg) {
    spy_state *s = r->state;
    if (s->inner->ops->forward(s->inner, L, u, T, out, rg)) return -1;
    for (int t = 0; t < T && t < 64; t++) {
        uint64_t mask = 0;
        for (int k = 0; k < L->n_expert_used; k++) mask |= 1ull << out->sel[t * L->n_expert_used + k];
        if (s->record) { s->ref[t] = mask; s->n_ref = t + 1; }
        else if (t < s->n_ref && s->ref[t] != mask) s->changed = 1;
    }
    return 0;
}
static int spy_backward(vm_router *r, const vm_router_layer *L, const float *u, int T,
                        const vm_router_out *out, const float *dgates, float *du, float reg_weight) {
    vm_router *in = ((spy_state *)r->state)->inner;
    return in->ops->backward(in, L, u, T, out, dgates, du, reg_weight);
}
static void spy_free(vm_router *r) {
    spy_state *s = r->state;
    vm_router_free(s->inner);
    free(s);
    free(r);
}
static const vm_router_ops spy_ops = { .name = "test-spy", .forward = spy_forward, .free = spy_free,
                                       .backward = spy_backward };

static void spy_install(vm_model *m) {
    for (int l = 0; l < m->hp.n_layer; l++) {
        if (!m->layers[l].is_moe) continue;
        vm_router *r = calloc(1, sizeof *r);
        spy_state *s = calloc(1, sizeof *s);
        s->inner = vm_router_deterministic();
        r->ops = &spy_ops;
        r->state = s;
        vm_model_set_router(m, l, r);
    }
}

static int spy_changed(vm_model *m, int record) {
    int c = 0;
    for (int l = 0; l < m->hp.n_layer; l++) {
        if (!m->layers[l].is_moe) continue;
        spy_state *s = m->routers[l]->state;
        c |= s->changed;
        s->changed = 0;
        s->record = record;
    }
    return c;
}

enum { T = 8, NOUT = 2 };
typedef struct {
    vm_model *m;
    vm_tctx *tc;
    float *h, *logits, *dlogits;
    int32_t out_pos[NOUT], target[NOUT];
    int fails;
} net;

// Cross-entropy at NOUT positions; fills dlogits.
static double net_loss(net *n) {
    const int V = n->m->hp.n_vocab;
    if (vm_tctx_forward(n->tc, n->h, T, n->out_pos, NOUT, n->logits, NULL)) { n->fails++; return NAN; }
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

static int n_checked, n_skipped;

// Normalised error of dh against central differences (units and floor as in test_backward.c).
static double fd_dh(net *n, const float *dh, float eps, int *skipped) {
    double num = 0, na = 0, nf = 0;
    *skipped = 0;
    for (size_t i = 0; i < (size_t)T * n->m->hp.n_embd; i++) {
        double g = NAN, wt = 1;
        for (float e = eps; e >= eps * 0.05f && isnan(g); e *= 0.1f) {
            const float save = n->h[i], xp = save + e, xm = save - e;
            n->h[i] = xp; const double lp = net_loss(n); int flip = spy_changed(n->m, 0);
            n->h[i] = xm; const double lm = net_loss(n); flip |= spy_changed(n->m, 0);
            n->h[i] = save;
            if (!flip) { g = (lp - lm) / ((double)xp - xm); wt = e / eps; }
        }
        if (isnan(g)) { (*skipped)++; n_skipped++; continue; }
        n_checked++;
        num += (dh[i] - g) * (dh[i] - g) * wt * wt; na += (double)dh[i] * dh[i]; nf += g * g;
    }
    double den = fmax(fmax(na, nf), 2.5e-3);
    return sqrt(num / den);
}

static void test_training(const fixture *f) {
    char path[256];
    snprintf(path, sizeof path, GOLD "%s.gguf", f->name);
    vm_model *m = vm_model_load(path);
    CHECK(m != NULL, "load %s: %s", path, vm_errmsg());
    if (!m) return;
    const int V = m->hp.n_vocab, D = m->hp.n_embd, L = m->hp.n_layer;
    int32_t tok[T], pos[T];
    for (int t = 0; t < T; t++) { tok[t] = (int32_t)(vm_rng_u64(&rng) % (uint64_t)V); pos[t] = t; }
    float *ref = calloc((size_t)T * V, sizeof(float)), *lg = calloc((size_t)T * V, sizeof(float));
    float *dh = calloc((size_t)T * D, sizeof(float));
    vm_ctx *c = vm_ctx_init(m, T, T);
    CHECK(c && vm_ctx_eval(c, tok, T, ref) == 0, "%s: eval: %s", f->name, vm_errmsg());
    vm_ctx_free(c);
    spy_install(m);
    for (int l0 = 0; l0 < L; l0++) {
        net n = { .m = m, .out_pos = { T - 3, T - 1 } };
        n.tc = vm_tctx_init(m, l0, T);
        n.h = calloc((size_t)T * D, sizeof(float));
        n.logits = calloc((size_t)T * V, sizeof(float));
        n.dlogits = calloc((size_t)NOUT * V, sizeof(float));
        CHECK(n.tc && vm_model_hidden(m, tok, T, l0, n.h) == 0, "%s: tctx / hidden: %s", f->name, vm_errmsg());
        if (!n.tc) { free(n.h); free(n.logits); free(n.dlogits); continue; }
        // the training forward is the inference forward
        CHECK(vm_tctx_forward(n.tc, n.h, T, pos, T, n.logits, NULL) == 0, "%s: tctx forward: %s", f->name, vm_errmsg());
        const double d = max_diff(n.logits, ref, (size_t)T * V);
        CHECK(d <= 1e-6, "%s l0 %d: training forward differs from inference by %g", f->name, l0, d);
        for (int i = 0; i < NOUT; i++) n.target[i] = (int32_t)(vm_rng_u64(&rng) % (uint64_t)V);
        spy_changed(m, 1);
        const double L0 = net_loss(&n);
        spy_changed(m, 0);
        CHECK(isfinite(L0) && vm_tctx_backward(n.tc, n.dlogits, 0.0f, dh) == 0, "%s: backward: %s", f->name, vm_errmsg());
        int skipped;
        const double e = fd_dh(&n, dh, 1e-2f, &skipped);
        printf("%-17s l0 %d  training vs inference %.1e  dL/dh nerr %.2e (%d of %d skipped)\n", f->name, l0, d, e, skipped, T * D);
        CHECK(e < 2e-3, "%s l0 %d: dL/dh nerr %g", f->name, l0, e);
        CHECK(skipped <= T * D / 4, "%s l0 %d: %d coordinates flipped a selection", f->name, l0, skipped);
        CHECK(n.fails == 0, "%s: %d forwards failed: %s", f->name, n.fails, vm_errmsg());
        vm_tctx_free(n.tc);
        free(n.h); free(n.logits); free(n.dlogits);
    }
    free(ref); free(lg); free(dh);
    vm_model_free(m);
}

// ---------------------------------------------------------------- convert-hf round trip

static void test_convert(const char *dir) {
    for (int i = 0; i < NFIX; i++) {
        if (!FIX[i].hf) continue;
        char hf[256], out[256];
        snprintf(hf, sizeof hf, GOLD "hf_%s", FIX[i].name);
        snprintf(out, sizeof out, "%s/%s.gguf", dir, FIX[i].name);
        vm_convert_hf_opts o = { .no_tokenizer = 1 };
        const int rc = vm_convert_hf(hf, out, &o);
        CHECK(rc == 0, "convert-hf %s: %s", hf, vm_errmsg());
        if (rc) continue;
        const double d = parity(out, FIX[i].name, 32);
        printf("convert-hf %-17s max|logit - reference| %.2e\n", FIX[i].name, d);
        CHECK(d <= 1e-4, "convert-hf %s: logits differ from the reference by %g", FIX[i].name, d);
        unlink(out);
    }
}

// ---------------------------------------------------------------- errors

// A copy of a golden file without tensor `drop` (NULL: none) and with one key set.
static int write_variant(const char *src, const char *dst, const char *drop, const char *key,
                         const char *sval, int ival) {
    vm_gguf *g = vm_gguf_open(src);
    if (!g) return -1;
    vm_gguf_writer *w = vm_gguf_writer_init();
    vm_gguf_copy_kv(w, g);
    if (key && sval) vm_gguf_set_str(w, key, sval);
    else if (key) vm_gguf_set_u32(w, key, (uint32_t)ival);
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const vm_gguf_tensor_info *ti = &g->tensors[i];
        if (drop && !strcmp(ti->name, drop)) continue;
        vm_gguf_add_tensor(w, ti->name, ti->t.type, ti->t.n_dims, ti->t.ne, ti->t.data, ti->nbytes);
    }
    int rc = vm_gguf_write(w, dst);
    vm_gguf_writer_free(w);
    vm_gguf_free(g);
    return rc;
}

static void refused(const char *dir, const char *src, const char *drop, const char *key, const char *sval,
                    int ival, const char *want) {
    char path[256];
    snprintf(path, sizeof path, "%s/bad.gguf", dir);
    CHECK(write_variant(src, path, drop, key, sval, ival) == 0, "write variant: %s", vm_errmsg());
    vm_model *m = vm_model_load(path);
    CHECK(m == NULL && strstr(vm_errmsg(), want) && !strchr(vm_errmsg(), '\n'),
          "%s without %s / %s: expected an error naming '%s', got: %s", src, drop ? drop : "-", key ? key : "-",
          want, m ? "(loaded)" : vm_errmsg());
    vm_model_free(m);
    unlink(path);
}

static void test_errors(const char *dir) {
    refused(dir, GOLD "qwen3moe.gguf", "blk.1.attn_k_norm.weight", NULL, NULL, 0, "blk.1.attn_k_norm.weight");
    refused(dir, GOLD "olmoe.gguf", "blk.0.attn_q_norm.weight", NULL, NULL, 0, "blk.0.attn_q_norm.weight");
    refused(dir, GOLD "qwen2moe.gguf", "blk.1.ffn_gate_inp_shexp.weight", NULL, NULL, 0, "blk.1.ffn_gate_inp_shexp.weight");
    refused(dir, GOLD "qwen2moe.gguf", "blk.0.ffn_up_shexp.weight", NULL, NULL, 0, "blk.0.ffn_up_shexp.weight");
    refused(dir, GOLD "deepseek.gguf", "blk.0.ffn_down.weight", NULL, NULL, 0, "blk.0.ffn_down.weight");
    refused(dir, GOLD "deepseek.gguf", "blk.2.ffn_gate_shexp.weight", NULL, NULL, 0, "blk.2.ffn_gate_shexp.weight");
    refused(dir, GOLD "granitemoeshared.gguf", NULL, "granitemoe.expert_shared_feed_forward_length", NULL, 20,
            "blk.0.ffn_gate_shexp.weight");
    refused(dir, GOLD "qwen2moe.gguf", NULL, "qwen2moe.expert_gating_func", NULL, 2, "expert_gating_func");
    refused(dir, GOLD "olmoe.gguf", NULL, "general.architecture", "mamba", 0, "qwen2moe");
    // head size disagreeing with the value length
    refused(dir, GOLD "qwen3moe.gguf", NULL, "qwen3moe.attention.key_length", NULL, 8, "key_length");
}

int main(void) {
    vm_rng_seed(&rng, 2024);
    int nd;
    int64_t sh[4];
    if (vm_npy_read_f32(GOLD "tokens.npy", &gold_tokens, &nd, sh) || nd != 1 || sh[0] > 64) {
        CHECK(0, "tokens.npy: %s", vm_errmsg());
        return TEST_SUMMARY();
    }
    n_tok = (int)sh[0];
    for (int i = 0; i < n_tok; i++) tokens[i] = (int32_t)gold_tokens[i];
    test_parity();
    for (int i = 0; i < NFIX; i++) test_training(&FIX[i]);
    printf("finite differences: %d coordinates checked, %d skipped\n", n_checked, n_skipped);
    CHECK(n_skipped * 20 < n_checked, "%d of %d coordinates skipped", n_skipped, n_checked + n_skipped);
    char dir[] = "/tmp/vmoer_archs_XXXXXX";
    if (mkdtemp(dir)) {
        test_convert(dir);
        test_errors(dir);
        rmdir(dir);
    } else CHECK(0, "mkdtemp");
    free(gold_tokens);
    free(gold_logits);
    return TEST_SUMMARY();
}

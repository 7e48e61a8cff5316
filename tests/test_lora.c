// LoRA on attention Q/K/V (model/lora.h): (1) a fresh LoRA (B = 0) leaves the logits bit-exact;
// (2) a random LoRA gives the logits of the model whose weights are merged, W + scale B A, computed
// here in double from the definition and written into a writable copy of the file (train/lm.h);
// (3) dA, dB and dL/dh through vm_tctx_backward against central finite differences.
#include "test.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/train.h"
#include "train/adapter.h"
#include "train/lm.h"
#include "util/err.h"
#include "util/rng.h"

#include <string.h>

#define MODEL "tests/golden/model/moe_stacked.gguf"
#define T 6

static void randomise_b(vm_lora *l, vm_rng *r) {
    for (int j = 0; j < VM_LORA_COUNT; j++) {
        vm_param *b = &l->p[2 * j + 1];
        for (int64_t i = 0; i < b->ne[0] * b->ne[1]; i++) b->w[i] = 0.2f * vm_rng_normal(r);
    }
}

// W (out, D) += scale * B (out, r) A (r, D), in double.
static void merge(float *W, const vm_lora *l, int j) {
    const vm_param *a = &l->p[2 * j], *b = &l->p[2 * j + 1];
    const int D = (int)a->ne[0], r = l->rank, O = (int)b->ne[1];
    for (int o = 0; o < O; o++)
        for (int d = 0; d < D; d++) {
            double s = 0.0;
            for (int k = 0; k < r; k++) s += (double)b->w[(size_t)o * r + k] * a->w[(size_t)k * D + d];
            W[(size_t)o * D + d] += (float)(l->scale * s);
        }
}

static void test_forward(void) {
    vm_model *m = vm_model_load(MODEL);
    vm_lm *merged = vm_lm_load(MODEL);
    CHECK(m && merged, "load: %s", vm_errmsg());
    if (!m || !merged) { vm_model_free(m); vm_lm_free(merged); return; }
    const int V = m->hp.n_vocab, L = m->hp.n_layer;
    int32_t tok[T];
    for (int t = 0; t < T; t++) tok[t] = (int32_t)((t * 11 + 5) % V);
    float *ref = calloc((size_t)T * V, sizeof(float)), *lg = calloc((size_t)T * V, sizeof(float));
    vm_ctx *c = vm_ctx_init(m, T, T);
    CHECK(vm_ctx_eval(c, tok, T, ref) == 0, "eval: %s", vm_errmsg());
    for (int il = 0; il < L; il++) CHECK(vm_model_set_lora(m, il, vm_lora_create(m, il, 4, 8.0f, 3)) == 0, "set_lora: %s", vm_errmsg());
    vm_ctx_reset(c);
    CHECK(vm_ctx_eval(c, tok, T, lg) == 0, "eval: %s", vm_errmsg());
    CHECK(memcmp(ref, lg, (size_t)T * V * sizeof(float)) == 0, "a fresh LoRA (B = 0) changed the logits");
    vm_rng r;
    vm_rng_seed2(&r, 11, 0);
    vm_model *mm = vm_lm_model(merged);
    for (int il = 0; il < L; il++) {
        vm_lora *lo = m->loras[il];
        randomise_b(lo, &r);
        vm_layer *ly = &mm->layers[il];
        merge((float *)(uintptr_t)ly->wq.data, lo, VM_LORA_Q);
        merge((float *)(uintptr_t)ly->wk.data, lo, VM_LORA_K);
        merge((float *)(uintptr_t)ly->wv.data, lo, VM_LORA_V);
    }
    vm_ctx_reset(c);
    CHECK(vm_ctx_eval(c, tok, T, lg) == 0, "eval: %s", vm_errmsg());
    vm_ctx *cm = vm_ctx_init(mm, T, T);
    CHECK(vm_ctx_eval(cm, tok, T, ref) == 0, "eval merged: %s", vm_errmsg());
    double d = 0, dd = 0;
    for (size_t i = 0; i < (size_t)T * V; i++) d = fmax(d, fabs(lg[i] - ref[i]));
    vm_model_set_lora(m, 0, NULL);   // removing one changes the output again
    vm_ctx_reset(c);
    vm_ctx_eval(c, tok, T, lg);
    for (size_t i = 0; i < (size_t)T * V; i++) dd = fmax(dd, fabs(lg[i] - ref[i]));
    printf("LoRA rank 4 vs merged weights: max |dlogit| %.2g; with layer 0's removed %.2g\n", d, dd);
    CHECK(d <= 1e-4, "LoRA logits differ from the merged model's by %g", d);
    CHECK(dd > 1e-3, "removing a LoRA did not change the logits (%g)", dd);
    vm_ctx_free(c); vm_ctx_free(cm);
    free(ref); free(lg);
    vm_model_free(m);
    vm_lm_free(merged);
}

typedef struct { vm_model *m; vm_tctx *tc; float *h, *logits, *w; int32_t pos[T], op[2]; } net;

static double loss(net *n) {   // L = sum_i w_i logits_i over two output rows
    const int V = n->m->hp.n_vocab;
    if (vm_tctx_forward(n->tc, n->h, T, n->op, 2, n->logits, NULL)) return NAN;
    double s = 0.0;
    for (int i = 0; i < 2 * V; i++) s += (double)n->w[i] * n->logits[i];
    return s;
}

static void test_grads(void) {
    vm_model *m = vm_model_load(MODEL);
    CHECK(m != NULL, "load: %s", vm_errmsg());
    if (!m) return;
    const int V = m->hp.n_vocab, D = m->hp.n_embd, L = m->hp.n_layer;
    vm_rng r;
    vm_rng_seed2(&r, 12, 0);
    for (int il = 0; il < L; il++) {
        vm_lora *lo = vm_lora_create(m, il, 3, 6.0f, 5);
        randomise_b(lo, &r);
        vm_model_set_lora(m, il, lo);
    }
    net n = { .m = m };
    n.tc = vm_tctx_init(m, 0, T);
    n.h = calloc((size_t)T * D, sizeof(float));
    n.logits = calloc((size_t)2 * V, sizeof(float));
    n.w = calloc((size_t)2 * V, sizeof(float));
    float *dh = calloc((size_t)T * D, sizeof(float));
    int32_t tok[T];
    for (int t = 0; t < T; t++) { tok[t] = (int32_t)((t * 7 + 1) % V); n.pos[t] = t; }
    for (int i = 0; i < 2 * V; i++) n.w[i] = vm_rng_normal(&r) * 0.1f;
    n.op[0] = T - 1; n.op[1] = 2;
    CHECK(vm_model_hidden(m, tok, T, 0, n.h) == 0, "hidden: %s", vm_errmsg());
    CHECK(isfinite(loss(&n)) && vm_tctx_backward(n.tc, n.w, 0.0f, dh) == 0, "backward: %s", vm_errmsg());
    double worst = 0;
    for (int il = 0; il < L; il++)
        for (int pi = 0; pi < 2 * VM_LORA_COUNT; pi++) {
            vm_param *p = &m->loras[il]->p[pi];
            const int64_t ne = p->ne[0] * p->ne[1];
            double num = 0, na = 0, nf = 0;
            for (int k = 0; k < 4; k++) {
                const int64_t i = (int64_t)(vm_rng_u64(&r) % (uint64_t)ne);
                const float keep = p->w[i], eps = 1e-2f;
                p->w[i] = keep + eps; const double lp = loss(&n);
                p->w[i] = keep - eps; const double lm = loss(&n);
                p->w[i] = keep;
                const double fd = (lp - lm) / (2 * eps);
                num += (p->g[i] - fd) * (p->g[i] - fd); na += (double)p->g[i] * p->g[i]; nf += fd * fd;
            }
            double den = fmax(fmax(na, nf), 1e-6);
            const double err = sqrt(num / den);
            worst = fmax(worst, err);
            CHECK(err <= 1e-2, "layer %d %s: gradient error %.3g (|g| %.3g, |fd| %.3g)", il, p->name, err, sqrt(na), sqrt(nf));
        }
    // dL/dh (the LoRA adds a path from every layer's input)
    double num = 0, na = 0, nf = 0;
    for (int k = 0; k < 6; k++) {
        const int i = (int)(vm_rng_u64(&r) % (uint64_t)(T * D));
        const float keep = n.h[i], eps = 1e-2f;
        n.h[i] = keep + eps; const double lp = loss(&n);
        n.h[i] = keep - eps; const double lm = loss(&n);
        n.h[i] = keep;
        const double fd = (lp - lm) / (2 * eps);
        num += (dh[i] - fd) * (dh[i] - fd); na += (double)dh[i] * dh[i]; nf += fd * fd;
    }
    const double eh = sqrt(num / fmax(fmax(na, nf), 1e-6));
    printf("LoRA gradients: worst normalised error over dA/dB %.2g, dL/dh %.2g\n", worst, eh);
    CHECK(eh <= 1e-2, "dL/dh with LoRA: error %.3g", eh);
    CHECK(vm_lora_create(m, 0, 0, 1.0f, 0) == NULL && strstr(vm_errmsg(), "rank"), "rank 0 accepted");
    CHECK(vm_lora_create(m, 99, 4, 1.0f, 0) == NULL, "layer 99 accepted");
    free(n.h); free(n.logits); free(n.w); free(dh);
    vm_tctx_free(n.tc);
    vm_model_free(m);
}

// An adapter carries the LoRA: written with a MAP router, applied to a fresh model, same logits.
static void test_adapter(void) {
    vm_model *m = vm_model_load(MODEL), *m2 = vm_model_load(MODEL);
    CHECK(m && m2, "load: %s", vm_errmsg());
    if (!m || !m2) { vm_model_free(m); vm_model_free(m2); return; }
    const int V = m->hp.n_vocab, L = m->hp.n_layer;
    vm_rng r;
    vm_rng_seed2(&r, 13, 0);
    int last_moe = -1;
    for (int il = 0; il < L; il++) if (m->layers[il].is_moe) last_moe = il;
    vm_adapter_info a;
    memset(&a, 0, sizeof a);
    snprintf(a.kind, sizeof a.kind, "map");
    vm_router_opts_default(&a.opts);
    a.n_layers = 1; a.layers[0] = last_moe;
    CHECK(vm_model_set_router(m, last_moe, vm_router_create("map", &m->layers[last_moe].rl, &a.opts)) == 0, "map: %s", vm_errmsg());
    for (int il = 1; il < L; il++) {
        vm_lora *lo = vm_lora_create(m, il, 2, 4.0f, 9);
        randomise_b(lo, &r);
        vm_model_set_lora(m, il, lo);
    }
    const char *path = "build/test_lora_adapter.gguf";
    CHECK(vm_adapter_write(m, &a, path, NULL, NULL) == 0, "write: %s", vm_errmsg());
    vm_adapter_info back;
    CHECK(vm_adapter_apply_ex(m2, path, 0, &back) == 0, "apply: %s", vm_errmsg());
    CHECK(back.lora_rank == 2 && back.n_lora == L - 1 && back.lora_layers[0] == 1 && vm_model_lora(m2, 0) == NULL,
          "LoRA keys read back: rank %d, %d layers", back.lora_rank, back.n_lora);
    int32_t tok[T];
    for (int t = 0; t < T; t++) tok[t] = (int32_t)((t * 5 + 2) % V);
    float *l1 = calloc((size_t)T * V, sizeof(float)), *l2 = calloc((size_t)T * V, sizeof(float));
    vm_ctx *c1 = vm_ctx_init(m, T, T), *c2 = vm_ctx_init(m2, T, T);
    CHECK(vm_ctx_eval(c1, tok, T, l1) == 0 && vm_ctx_eval(c2, tok, T, l2) == 0, "eval: %s", vm_errmsg());
    CHECK(memcmp(l1, l2, (size_t)T * V * sizeof(float)) == 0, "logits after applying the adapter differ");
    vm_ctx_free(c1); vm_ctx_free(c2);
    free(l1); free(l2);
    vm_model_free(m); vm_model_free(m2);
    remove(path);
}

int main(void) {
    test_forward();
    test_adapter();
    test_grads();
    return TEST_SUMMARY();
}

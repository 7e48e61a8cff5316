// The llama / Mixtral forward pass against tests/reference/llama_ref.py (an independent numpy
// implementation from the published definitions): logits of 5 random-weight models, run as one
// batch, in chunks and one token at a time; router selections of MoE layers through the trace;
// loader errors; the router interface as the only way the MoE block routes.
#include "test.h"
#include "model/model.h"
#include "util/err.h"
#include "util/fileio.h"
#include "util/npy.h"

#include <omp.h>
#include <string.h>

#define GOLD "tests/golden/model/"

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

// Trace sink: counts events and keeps the MoE selections (n_layer, T, K).
typedef struct { int n_ev, n_topk, n_weights_bad, K, T; int32_t sel[8][64][8]; int n_result; } trace_t;

static void on_trace(void *ud, const vm_trace_ev *ev) {
    trace_t *tr = ud;
    tr->n_ev++;
    if (strcmp(ev->name, "ffn_moe_topk") == 0 && ev->i && ev->layer >= 0 && ev->layer < 8 && ev->ne <= 8) {
        tr->n_topk++;
        tr->K = ev->ne;
        for (int t = 0; t < ev->n_tokens; t++)
            for (int k = 0; k < ev->ne; k++)
                if (ev->pos0 + t < 64) tr->sel[ev->layer][ev->pos0 + t][k] = ev->i[t * ev->ne + k];
    }
    if (strcmp(ev->name, "ffn_moe_weights") == 0 && ev->f)
        for (int t = 0; t < ev->n_tokens; t++) {
            double s = 0;
            for (int k = 0; k < ev->ne; k++) s += ev->f[t * ev->ne + k];
            if (fabs(s - 1.0) > 1e-5) tr->n_weights_bad++;
        }
    if (strcmp(ev->name, "result_output") == 0) tr->n_result += ev->n_tokens;
}

static void test_golden(const char *name, int check_trace) {
    char path[256];
    snprintf(path, sizeof path, GOLD "%s.gguf", name);
    vm_model *m = vm_model_load(path);
    CHECK(m != NULL, "%s: load: %s", name, vm_errmsg());
    if (!m) return;
    float *tokf = NULL, *gold = NULL;
    int64_t ts[4], gs[4];
    if (load_npy(name, "tokens", &tokf, ts) != 1 || load_npy(name, "logits", &gold, gs) != 2) {
        CHECK(0, "%s: golden files", name);
        free(tokf); free(gold); vm_model_free(m);
        return;
    }
    const int T = (int)ts[0], V = m->hp.n_vocab;
    CHECK(gs[0] == T && gs[1] == V, "%s: golden shape (%lld,%lld) vs T=%d V=%d", name,
          (long long)gs[0], (long long)gs[1], T, V);
    int32_t tok[64];
    for (int i = 0; i < T && i < 64; i++) tok[i] = (int32_t)tokf[i];
    float *lg = calloc((size_t)T * V, sizeof(float)), *lg1 = calloc((size_t)T * V, sizeof(float));

    // one batch, two threads
    int saved = omp_get_max_threads();
    omp_set_num_threads(2);
    vm_ctx *c = vm_ctx_init(m, 64, 64);
    CHECK(c != NULL, "%s: ctx: %s", name, vm_errmsg());
    trace_t *tr = calloc(1, sizeof *tr);
    vm_ctx_set_trace(c, on_trace, tr);
    CHECK(vm_ctx_eval(c, tok, T, lg) == 0, "%s: eval batch: %s", name, vm_errmsg());
    float d = max_abs_diff(lg, gold, (size_t)T * V);
    CHECK(d <= 1e-4f, "%s: batch max |logit diff| %g", name, d);
    printf("%-12s batch  max|diff| %.3g\n", name, d);
    CHECK(vm_ctx_n_past(c) == T, "%s: n_past %d", name, vm_ctx_n_past(c));
    CHECK(vm_ctx_last_logits(c) && memcmp(vm_ctx_last_logits(c), lg + (size_t)(T - 1) * V, V * sizeof(float)) == 0,
          "%s: last logits", name);
    CHECK(tr->n_result == T, "%s: result_output events cover %d of %d tokens", name, tr->n_result, T);
    if (m->hp.n_expert > 0) {
        CHECK(tr->n_topk == m->hp.n_layer, "%s: %d topk events", name, tr->n_topk);
        CHECK(tr->n_weights_bad == 0, "%s: %d tokens with gates not summing to 1", name, tr->n_weights_bad);
    }
    if (check_trace) {
        float *sel = NULL;
        int64_t ss[4];
        if (load_npy(name, "topk", &sel, ss) == 3 && ss[0] == m->hp.n_layer && ss[1] == T && ss[2] == tr->K) {
            int bad = 0;
            for (int l = 0; l < ss[0]; l++)
                for (int t = 0; t < T; t++)
                    for (int k = 0; k < tr->K; k++)
                        bad += tr->sel[l][t][k] != (int32_t)sel[(l * T + t) * tr->K + k];
            CHECK(bad == 0, "%s: %d router selections differ from the reference", name, bad);
        } else {
            CHECK(0, "%s: topk golden file", name);
        }
        free(sel);
    }

    // one token at a time through the KV cache
    vm_ctx_reset(c);
    vm_ctx_set_trace(c, NULL, NULL);
    int ok = 1;
    for (int i = 0; i < T; i++) {
        ok &= vm_ctx_eval(c, tok + i, 1, NULL) == 0;
        const float *l = vm_ctx_last_logits(c);
        if (l) memcpy(lg1 + (size_t)i * V, l, V * sizeof(float));
        else ok = 0;
    }
    CHECK(ok, "%s: eval one by one: %s", name, vm_errmsg());
    d = max_abs_diff(lg1, gold, (size_t)T * V);
    CHECK(d <= 1e-4f, "%s: one-by-one max |logit diff| %g", name, d);
    CHECK(memcmp(lg1, lg, (size_t)T * V * sizeof(float)) == 0, "%s: one-by-one differs from batch", name);
    vm_ctx_free(c);

    // chunks of 5 (n > n_batch), one thread
    omp_set_num_threads(1);
    c = vm_ctx_init(m, 64, 5);
    memset(lg1, 0, (size_t)T * V * sizeof(float));
    CHECK(c && vm_ctx_eval(c, tok, 3, lg1) == 0 && vm_ctx_eval(c, tok + 3, T - 3, lg1 + (size_t)3 * V) == 0,
          "%s: chunked eval: %s", name, vm_errmsg());
    CHECK(memcmp(lg1, lg, (size_t)T * V * sizeof(float)) == 0, "%s: chunked 1-thread run differs from the 2-thread batch", name);
    // the context is full after 64 positions
    CHECK(c && vm_ctx_eval(c, tok, 64, NULL) == -1, "%s: context overflow accepted", name);
    vm_ctx_free(c);
    omp_set_num_threads(saved);

    free(tr); free(lg); free(lg1); free(tokf); free(gold);
    vm_model_free(m);
}

// A router that always picks experts (K-1, ..., 0) with equal gates, or an invalid one.
static int fixed_forward(vm_router *r, const vm_router_layer *L, const float *u, int T, vm_router_out *out, vm_rng *rng) {
    int bad = r->state != NULL;
    for (int t = 0; t < T; t++)
        for (int k = 0; k < L->n_expert_used; k++) {
            out->sel[t * L->n_expert_used + k] = bad ? L->n_expert : L->n_expert_used - 1 - k;
            out->gates[t * L->n_expert_used + k] = 1.0f / L->n_expert_used;
        }
    for (int i = 0; i < T * L->n_expert; i++) out->logits[i] = out->probs[i] = 0;
    return 0;
}
static void fixed_free(vm_router *r) { free(r); }
static const vm_router_ops fixed_ops = { .name = "fixed", .forward = fixed_forward, .free = fixed_free };

static void test_router_plugin(void) {
    vm_model *m = vm_model_load(GOLD "moe_stacked.gguf");
    CHECK(m != NULL, "load: %s", vm_errmsg());
    if (!m) return;
    int32_t tok[4] = {1, 2, 3, 4};
    float a[4 * 96], b[4 * 96];
    vm_ctx *c = vm_ctx_init(m, 16, 16);
    CHECK(vm_ctx_eval(c, tok, 4, a) == 0, "eval");
    for (int l = 0; l < m->hp.n_layer; l++) {
        vm_router *r = calloc(1, sizeof *r);
        r->ops = &fixed_ops;
        CHECK(vm_model_set_router(m, l, r) == 0, "set_router %d", l);
    }
    vm_ctx_reset(c);
    CHECK(vm_ctx_eval(c, tok, 4, b) == 0, "eval with fixed router: %s", vm_errmsg());
    CHECK(max_abs_diff(a, b, 4 * 96) > 1e-3, "a different router changed nothing");
    vm_router *r = calloc(1, sizeof *r);
    r->ops = &fixed_ops;
    r->state = r;   // marks the invalid variant
    CHECK(vm_model_set_router(m, 1, r) == 0, "set invalid router");
    vm_ctx_reset(c);
    CHECK(vm_ctx_eval(c, tok, 4, b) == -1 && strstr(vm_errmsg(), "selected expert"), "invalid selection: %s", vm_errmsg());
    CHECK(vm_ctx_eval(c, (int32_t[]){96}, 1, b) == -1 && strstr(vm_errmsg(), "token id"), "token range: %s", vm_errmsg());
    vm_ctx_free(c);
    vm_model_free(m);

    m = vm_model_load(GOLD "dense.gguf");
    r = vm_router_deterministic();
    CHECK(m && vm_model_set_router(m, 0, r) == -1, "router on a dense layer accepted");
    vm_model_free(m);
}

// Loader errors on patched copies of a golden file: a renamed tensor, transposed dims.
static void test_load_errors(void) {
    size_t len;
    char *buf = vm_read_file(GOLD "moe_stacked.gguf", &len);
    CHECK(buf != NULL, "read: %s", vm_errmsg());
    if (!buf) return;
    char *copy = malloc(len);
    const char *needle = "blk.1.attn_k.weight";
    char *p = NULL;
    for (size_t i = 0; i + strlen(needle) < len && !p; i++)
        if (memcmp(buf + i, needle, strlen(needle)) == 0) p = buf + i;
    CHECK(p != NULL, "tensor name in file");
    if (!p) { free(buf); free(copy); return; }
    size_t off = (size_t)(p - buf);

    memcpy(copy, buf, len);
    copy[off + strlen(needle) - 1] = 'X';   // "weighX"
    vm_gguf *g = vm_gguf_open_mem(copy, len, "renamed");
    vm_model *m = g ? vm_model_from_gguf(g) : NULL;
    CHECK(m == NULL && strstr(vm_errmsg(), "missing tensor 'blk.1.attn_k.weight' (expected [32, 16])"),
          "missing tensor message: %s", vm_errmsg());

    memcpy(copy, buf, len);
    uint64_t ne[2];   // after the name: u32 n_dims, u64 ne[0], u64 ne[1]
    memcpy(ne, copy + off + strlen(needle) + 4, sizeof ne);
    uint64_t sw[2] = {ne[1], ne[0]};
    memcpy(copy + off + strlen(needle) + 4, sw, sizeof sw);
    g = vm_gguf_open_mem(copy, len, "transposed");
    m = g ? vm_model_from_gguf(g) : NULL;
    CHECK(m == NULL && strstr(vm_errmsg(), "'blk.1.attn_k.weight' has shape [16, 32], expected [32, 16]"),
          "wrong shape message: %s", vm_errmsg());
    free(copy);
    free(buf);

    CHECK(vm_model_load(GOLD "does-not-exist.gguf") == NULL, "missing file");
}

static void test_hparams(void) {
    vm_model *m = vm_model_load(GOLD "moe_f16.gguf");
    CHECK(m != NULL, "load moe_f16: %s", vm_errmsg());
    if (m) {
        const vm_hparams *hp = &m->hp;
        CHECK(hp->n_embd == 32 && hp->n_layer == 2 && hp->n_head == 4 && hp->n_head_kv == 2, "dims");
        CHECK(hp->head_dim == 16 && hp->n_rot == 16, "key_length head_dim %d n_rot %d", hp->head_dim, hp->n_rot);
        CHECK(hp->n_expert == 4 && hp->n_expert_used == 2 && hp->n_ff_exp == 32, "experts");
        CHECK(hp->n_vocab == 96 && hp->gate_conv == VM_GATE_SOFTMAX_SELECTED, "vocab/conv");
        CHECK(m->layers[0].attn_norm >= m->f32_store && m->layers[0].attn_norm < m->f32_store + 5 * 32,
              "f16 norm converted into f32_store");
        CHECK(m->layers[1].rl.w_gate == &m->layers[1].ffn_gate_inp && m->routers[1] != NULL, "router layer");
        vm_model_free(m);
    }
    m = vm_model_load(GOLD "tied.gguf");
    CHECK(m && m->output.data == m->tok_embd.data, "tied output");
    CHECK(m && fabsf(m->hp.rope_freq_scale - 0.5f) < 1e-7f && m->hp.rope_freq_base == 1e6f, "rope linear scaling");
    vm_model_free(m);
}

int main(void) {
    test_golden("dense", 0);
    test_golden("moe_stacked", 1);
    test_golden("moe_split", 0);
    test_golden("moe_f16", 0);
    test_golden("tied", 0);
    test_router_plugin();
    test_load_errors();
    test_hparams();
    return TEST_SUMMARY();
}

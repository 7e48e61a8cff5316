// Expert specialisation read-outs (experts.h): one pass with the model's routers (loss, router
// logits, loads, router inputs of a token sample) and one with every MoE layer routed at random.
#include "eval/experts.h"
#include "kernels/ops.h"
#include "train/lm.h"
#include "util/err.h"
#include "util/fileio.h"
#include "util/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void vm_expert_stats_opts_default(vm_expert_stats_opts *o) {
    memset(o, 0, sizeof *o);
    o->max_tokens = 16384;
    o->seq = 256;
    o->diff_tokens = 512;
}

void vm_expert_stats_free(vm_expert_stats *s) {
    if (!s) return;
    free(s->layers); free(s->loss_random_layer); free(s->logit_sd); free(s->logit_gap); free(s->load); free(s->expert_diff);
    memset(s, 0, sizeof *s);
}

// ---------------------------------------------------------------- the random router
// A router kind private to this file (not in the registry: it exists to be compared with).
// Its stream lives in the router, reseeded per (window, layer) by the caller, and is consumed in
// token order, so the draws do not depend on how a window is cut into batches.

typedef struct rand_router {
    vm_router r;
    vm_rng rng;
    int32_t *perm;           // (N) scratch
} rand_router;

static int rand_forward(vm_router *r, const vm_router_layer *L, const float *u, int T,
                        vm_router_out *out, vm_rng *unused) {
    (void)unused;
    rand_router *rr = (rand_router *)r;
    const int N = L->n_expert, K = L->n_expert_used;
    if (!out->logits || !out->probs || !out->sel || !out->gates) return vm_err("random router: missing outputs");
    int32_t *perm = rr->perm;
    vm_router_logits(L, u, T, out->logits);
    for (int t = 0; t < T; t++) {
        const float *l = out->logits + (size_t)t * N;
        int32_t *sel = out->sel + (size_t)t * K;
        for (int i = 0; i < N; i++) perm[i] = i;
        for (int k = 0; k < K; k++) {   // partial Fisher-Yates: K distinct experts, uniformly
            const int j = k + (int)(vm_rng_u64(&rr->rng) % (uint64_t)(N - k));
            const int32_t x = perm[k]; perm[k] = perm[j]; perm[j] = x;
            sel[k] = perm[k];
        }
        vm_gate_probs(L, l, out->probs + (size_t)t * N);
        vm_gate_at(L, l, sel, out->gates + (size_t)t * K);
        if (out->unc)
            for (int i = 0; i < VM_UNC_COUNT; i++) out->unc[(size_t)t * VM_UNC_COUNT + i] = NAN;
    }
    return 0;
}

static void rand_free(vm_router *r) { (void)r; }   // owned by the stats run, freed there

static const vm_router_ops rand_ops = { .name = "random", .forward = rand_forward, .free = rand_free };

// ---------------------------------------------------------------- the router pass's trace

typedef struct acc {
    const vm_model *m;
    int *moe_of;             // (n_layer) index among the MoE layers, -1 for dense layers
    int N, K, D, seq, n_diff;
    int64_t base;            // scored position of the current window's first token
    double *sd, *gap;        // (n_moe) sums over tokens
    int64_t *n_logit;        // (n_moe) tokens summed
    int64_t *count;          // (n_moe, N) selections
    float *sorted;           // (N) scratch
    float *u;                // (n_moe, n_diff, D) router inputs of the first n_diff positions
    int bad;
} acc;

static void on_trace(void *ud, const vm_trace_ev *ev) {
    acc *a = ud;
    if (ev->layer < 0 || ev->layer >= a->m->hp.n_layer) return;
    const int mi = a->moe_of[ev->layer];
    if (mi < 0) return;
    if (!strcmp(ev->name, "ffn_moe_logits")) {
        if (ev->ne != a->N || !ev->f) { a->bad = 1; return; }
        for (int t = 0; t < ev->n_tokens; t++) {
            const float *l = ev->f + (size_t)t * a->N;
            double mean = 0, ss = 0;
            for (int e = 0; e < a->N; e++) mean += l[e];
            mean /= a->N;
            for (int e = 0; e < a->N; e++) ss += (l[e] - mean) * (l[e] - mean);
            a->sd[mi] += sqrt(ss / a->N);
            if (a->K < a->N) {   // K-th and (K+1)-th largest: a partial selection sort of a copy
                float *s = a->sorted;
                memcpy(s, l, (size_t)a->N * sizeof *s);
                for (int k = 0; k <= a->K; k++)
                    for (int j = k + 1; j < a->N; j++)
                        if (s[j] > s[k]) { const float x = s[j]; s[j] = s[k]; s[k] = x; }
                a->gap[mi] += (double)s[a->K - 1] - s[a->K];
            }
        }
        a->n_logit[mi] += ev->n_tokens;
    } else if (!strcmp(ev->name, "ffn_moe_topk")) {
        if (ev->ne != a->K || !ev->i) { a->bad = 1; return; }
        for (int j = 0; j < ev->n_tokens * a->K; j++) {
            const int e = ev->i[j];
            if (e < 0 || e >= a->N) { a->bad = 1; return; }
            a->count[(size_t)mi * a->N + e]++;
        }
    } else if (!strcmp(ev->name, "ffn_norm")) {   // the router input u of the layer
        if (ev->ne != a->D || !ev->f) { a->bad = 1; return; }
        for (int t = 0; t < ev->n_tokens; t++) {
            const int64_t p = a->base + ev->pos0 + t;
            if (p >= 0 && p < a->n_diff)
                memcpy(a->u + ((size_t)mi * a->n_diff + (size_t)p) * a->D, ev->f + (size_t)t * a->D,
                       (size_t)a->D * sizeof(float));
        }
    }
}

// ---------------------------------------------------------------- passes

// Mean CE of the windows; `rr` non-NULL: those routers are installed and reseeded per window.
static int score(vm_model *m, vm_ctx *c, const int32_t *tokens, int nw, int seq, uint64_t seed,
                 rand_router *rr, acc *a, double *loss) {
    const int V = m->hp.n_vocab, L = m->hp.n_layer;
    float *logits = vm_malloc((size_t)seq * V * sizeof(float));
    if (!logits) return -1;
    double s = 0;
    int rc = 0;
    for (int w = 0; w < nw && !rc; w++) {
        const int32_t *tk = tokens + (size_t)w * seq;
        vm_ctx_reset(c);
        vm_ctx_set_seed(c, seed ^ (uint64_t)w);   // installed sampled routers: one stream per window
        if (rr)
            for (int l = 0; l < L; l++)
                vm_rng_seed2(&rr[l].rng, seed, VM_EXPERTS_STREAM + (uint64_t)w * L + (uint64_t)l);
        if (a) a->base = (int64_t)w * seq;
        if ((rc = vm_ctx_eval(c, tk, seq, logits))) break;
        for (int t = 0; t < seq; t++) {
            const float *lg = logits + (size_t)t * V;
            float mx = lg[0];
            for (int v = 1; v < V; v++) if (lg[v] > mx) mx = lg[v];
            double z = 0;
            for (int v = 0; v < V; v++) z += exp((double)lg[v] - mx);
            s += log(z) + mx - lg[tk[t + 1]];
        }
    }
    free(logits);
    *loss = s / ((double)nw * seq);
    return rc;
}

// expert_diff of one layer from its router inputs u (n, D).
static int expert_diff(const vm_model *m, const vm_layer *ly, const float *u, int n, double *out) {
    const int N = m->hp.n_expert, D = m->hp.n_embd, F = m->hp.n_ff_exp;
    float *hb = vm_malloc((size_t)n * F * sizeof(float)), *hb2 = vm_malloc((size_t)n * F * sizeof(float));
    float *y = vm_malloc((size_t)N * n * D * sizeof(float));
    int rc = -1;
    if (!hb || !hb2 || !y) goto done;
    for (int e = 0; e < N; e++) {
        vm_matmul_forward(hb, u, &ly->exp_gate[e], NULL, n);
        vm_matmul_forward(hb2, u, &ly->exp_up[e], NULL, n);
        vm_swiglu_forward(hb, hb, hb2, n * F);
        vm_matmul_forward(y + (size_t)e * n * D, hb, &ly->exp_down[e], NULL, n);
    }
    double s = 0;
    int counted = 0;
    for (int t = 0; t < n; t++) {
        double norm = 0, pair = 0;
        for (int e = 0; e < N; e++) {
            const float *a = y + ((size_t)e * n + t) * D;
            double q = 0;
            for (int d = 0; d < D; d++) q += (double)a[d] * a[d];
            norm += sqrt(q);
            for (int f = e + 1; f < N; f++) {
                const float *b = y + ((size_t)f * n + t) * D;
                double r = 0;
                for (int d = 0; d < D; d++) r += ((double)a[d] - b[d]) * ((double)a[d] - b[d]);
                pair += sqrt(r);
            }
        }
        norm /= N;
        if (N < 2 || norm <= 0) continue;   // every expert silent: no direction to compare
        s += pair / (N * (N - 1) / 2.0) / norm;
        counted++;
    }
    *out = counted ? s / counted : 0.0;
    rc = 0;
done:
    free(hb); free(hb2); free(y);
    return rc;
}

int vm_expert_stats_tokens(vm_model *m, const int32_t *tokens, int64_t n, const vm_expert_stats_opts *o,
                           vm_expert_stats *out) {
    memset(out, 0, sizeof *out);
    vm_expert_stats_opts def;
    if (!o) { vm_expert_stats_opts_default(&def); o = &def; }
    if (!m || !tokens) return vm_err("experts: no model or tokens");
    const vm_hparams *hp = &m->hp;
    const int L = hp->n_layer, N = hp->n_expert, K = hp->n_expert_used, seq = o->seq;
    if (N <= 0) return vm_err("experts: the model has no experts (a dense model)");
    if (seq < 1 || seq > hp->n_ctx_train)
        return vm_err("experts: window of %d predictions does not fit the context of %d", seq, hp->n_ctx_train);
    if (o->max_tokens < 0 || o->diff_tokens < 0) return vm_err("experts: negative token count");
    int64_t nw = n > seq ? (n - 1) / seq : 0;
    if (o->max_tokens > 0 && nw > o->max_tokens / seq) nw = o->max_tokens / seq;
    if (nw < 1)
        return vm_err("experts: %lld tokens (at most %lld scored) make no window of %d predictions",
                      (long long)n, (long long)o->max_tokens, seq);
    if (nw > INT32_MAX) nw = INT32_MAX;
    for (int l = 0; l < L; l++)
        if (m->layers[l].is_moe && !m->routers[l]) return vm_err("experts: layer %d has no router", l);

    acc a = { .m = m, .N = N, .K = K, .D = hp->n_embd, .seq = seq };
    a.n_diff = o->diff_tokens < nw * seq ? o->diff_tokens : (int)(nw * seq);
    int n_moe = 0;
    a.moe_of = vm_malloc((size_t)L * sizeof *a.moe_of);
    if (!a.moe_of) return -1;
    for (int l = 0; l < L; l++) a.moe_of[l] = m->layers[l].is_moe ? n_moe++ : -1;
    out->n_moe = n_moe; out->n_expert = N; out->n_expert_used = K;
    out->seq = seq; out->n_windows = (int)nw; out->n_tokens = nw * seq; out->seed = o->seed;
    out->diff_tokens = a.n_diff;
    out->layers = vm_malloc((size_t)n_moe * sizeof *out->layers);
    out->loss_random_layer = vm_calloc((size_t)n_moe, sizeof(double));
    out->logit_sd = vm_calloc((size_t)n_moe, sizeof(double));
    out->logit_gap = vm_calloc((size_t)n_moe, sizeof(double));
    out->load = vm_calloc((size_t)n_moe * N, sizeof(double));
    out->expert_diff = vm_calloc((size_t)n_moe, sizeof(double));
    a.sd = vm_calloc((size_t)n_moe, sizeof(double));
    a.gap = vm_calloc((size_t)n_moe, sizeof(double));
    a.n_logit = vm_calloc((size_t)n_moe, sizeof(int64_t));
    a.count = vm_calloc((size_t)n_moe * N, sizeof(int64_t));
    a.sorted = vm_malloc((size_t)N * sizeof *a.sorted);
    a.u = vm_calloc((size_t)n_moe * (a.n_diff ? a.n_diff : 1) * a.D, sizeof(float));
    rand_router *rr = vm_calloc((size_t)L, sizeof *rr);
    vm_router **saved = vm_calloc((size_t)L, sizeof *saved);
    int32_t *perm = vm_malloc((size_t)L * N * sizeof *perm);
    vm_ctx *c = vm_ctx_init(m, seq, seq);
    int rc = -1;
    if (!out->layers || !out->loss_random_layer || !out->logit_sd || !out->logit_gap || !out->load || !out->expert_diff || !a.sd ||
        !a.gap || !a.n_logit || !a.count || !a.sorted || !a.u || !rr || !saved || !perm || !c)
        goto done;
    for (int l = 0; l < L; l++) if (a.moe_of[l] >= 0) out->layers[a.moe_of[l]] = l;

    vm_ctx_set_trace(c, on_trace, &a);
    if (score(m, c, tokens, (int)nw, seq, o->seed, NULL, &a, &out->loss_router)) goto done;
    vm_ctx_set_trace(c, NULL, NULL);
    if (a.bad) { vm_err("experts: unexpected routing trace shapes"); goto done; }

    // every MoE layer at random (only = -1), then one layer at a time
    for (int l = 0; l < L; l++) {
        saved[l] = m->routers[l];
        if (a.moe_of[l] >= 0) {
            rr[l].r.ops = &rand_ops;
            rr[l].perm = perm + (size_t)l * N;
        }
    }
    int sc = 0;
    for (int only = -1; only < n_moe && !sc; only++) {
        for (int l = 0; l < L; l++)
            m->routers[l] = a.moe_of[l] >= 0 && (only < 0 || a.moe_of[l] == only) ? &rr[l].r : saved[l];
        sc = score(m, c, tokens, (int)nw, seq, o->seed, rr, NULL,
                   only < 0 ? &out->loss_random_routing : &out->loss_random_layer[only]);
    }
    for (int l = 0; l < L; l++) m->routers[l] = saved[l];
    if (sc) goto done;

    out->load_min = INFINITY;
    for (int i = 0; i < n_moe; i++) {
        const vm_layer *ly = &m->layers[out->layers[i]];
        out->logit_sd[i] = a.n_logit[i] ? a.sd[i] / a.n_logit[i] : 0;
        out->logit_gap[i] = a.n_logit[i] ? a.gap[i] / a.n_logit[i] : 0;
        int64_t tot = 0;
        for (int e = 0; e < N; e++) tot += a.count[(size_t)i * N + e];
        for (int e = 0; e < N; e++) {
            const double f = tot ? (double)a.count[(size_t)i * N + e] / tot : 0;
            out->load[(size_t)i * N + e] = f;
            if (f < out->load_min) out->load_min = f;
        }
        if (a.n_diff && expert_diff(m, ly, a.u + (size_t)i * a.n_diff * a.D, a.n_diff, &out->expert_diff[i])) goto done;
        out->logit_sd_mean += out->logit_sd[i] / n_moe;
        out->logit_gap_mean += out->logit_gap[i] / n_moe;
        out->expert_diff_mean += out->expert_diff[i] / n_moe;
    }
    rc = 0;
done:
    vm_ctx_free(c);
    free(a.moe_of); free(a.sd); free(a.gap); free(a.n_logit); free(a.count); free(a.sorted); free(a.u);
    free(rr); free(saved); free(perm);
    if (rc) {
        vm_err_prefix("experts");
        vm_expert_stats_free(out);
    }
    return rc;
}

int vm_expert_stats_run(vm_model *m, const vm_tokenizer *tok, const char *text_path,
                        const vm_expert_stats_opts *o, vm_expert_stats *out) {
    memset(out, 0, sizeof *out);
    if (!tok || !text_path) return vm_err("experts: no tokenizer or text");
    size_t len;
    char *text = vm_read_file(text_path, &len);
    if (!text) return vm_err_prefix("experts");
    int32_t *ids = NULL;
    int n_docs;
    const int64_t n = vm_lm_tokenize_docs(tok, text, len, 0, -1, &n_docs, &ids);
    free(text);
    if (n < 0) return vm_err_prefix("experts: %s", text_path);
    const int rc = vm_expert_stats_tokens(m, ids, n, o, out);
    free(ids);
    return rc ? vm_err_prefix("%s", text_path) : 0;
}

static json_t *jdoubles(const double *x, int n) {
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++) json_array_append_new(a, isfinite(x[i]) ? json_real(x[i]) : json_null());
    return a;
}

json_t *vm_expert_stats_json(const vm_expert_stats *s) {
    json_t *j = json_object(), *layers = json_array(), *load = json_array();
    if (!j || !layers || !load) { json_decref(j); json_decref(layers); json_decref(load); return NULL; }
    for (int i = 0; i < s->n_moe; i++) {
        json_array_append_new(layers, json_integer(s->layers[i]));
        json_array_append_new(load, jdoubles(s->load + (size_t)i * s->n_expert, s->n_expert));
    }
    json_object_set_new(j, "n_tokens", json_integer(s->n_tokens));
    json_object_set_new(j, "seq", json_integer(s->seq));
    json_object_set_new(j, "seed", json_integer((json_int_t)s->seed));
    json_object_set_new(j, "n_expert", json_integer(s->n_expert));
    json_object_set_new(j, "n_expert_used", json_integer(s->n_expert_used));
    json_object_set_new(j, "layers", layers);
    json_object_set_new(j, "loss_router", json_real(s->loss_router));
    json_object_set_new(j, "loss_random_routing", json_real(s->loss_random_routing));
    json_object_set_new(j, "random_routing_cost", json_real(s->loss_random_routing - s->loss_router));
    json_t *per = json_array();
    for (int i = 0; per && i < s->n_moe; i++) json_array_append_new(per, json_real(s->loss_random_layer[i] - s->loss_router));
    json_object_set_new(j, "random_routing_cost_per_layer", per);
    json_object_set_new(j, "router_logit_sd", json_pack("{s:f, s:o}", "mean", s->logit_sd_mean, "per_layer",
                                                        jdoubles(s->logit_sd, s->n_moe)));
    json_object_set_new(j, "logit_gap", json_pack("{s:f, s:o}", "mean", s->logit_gap_mean, "per_layer",
                                                  jdoubles(s->logit_gap, s->n_moe)));
    json_object_set_new(j, "load", json_pack("{s:f, s:o}", "min", s->load_min, "per_layer", load));
    json_object_set_new(j, "expert_diff", json_pack("{s:f, s:i, s:o}", "mean", s->expert_diff_mean,
                                                    "n_tokens", s->diff_tokens, "per_layer",
                                                    jdoubles(s->expert_diff, s->n_moe)));
    return j;
}

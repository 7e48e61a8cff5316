// Generation with uncertainty read-outs (gen.h). The routers' read-outs arrive through the trace
// point "ffn_moe_unc" and are kept per (position, layer), so any position's record can be built
// after its evaluation; the routing capture keeps what `vmoer trace` writes for chosen layers.
#include "gen/gen.h"
#include "model/sample.h"
#include "util/err.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const score_names[VM_GS_COUNT] = {
    "nll", "entropy", "gate_entropy", "ilv", "ilv_dev", "temperature", "disagreement", "prob_var",
};
static const int score_unc[VM_GS_COUNT] = {
    -1, -1, VM_UNC_GATE_ENTROPY, VM_UNC_ILV, VM_UNC_ILV_DEV, VM_UNC_TEMPERATURE, VM_UNC_DISAGREEMENT, VM_UNC_PROB_VAR,
};

const char *vm_gen_score_name(int s) { return s >= 0 && s < VM_GS_COUNT ? score_names[s] : "?"; }
int vm_gen_score_unc(int s) { return s >= 0 && s < VM_GS_COUNT ? score_unc[s] : -1; }
const char *vm_gen_unc_name(int u) {
    for (int s = 0; s < VM_GS_COUNT; s++) if (score_unc[s] == u && u >= 0) return score_names[s];
    return "?";
}
int vm_gen_score_parse(const char *name) {
    for (int s = 0; name && s < VM_GS_COUNT; s++) if (!strcmp(name, score_names[s])) return s;
    return -1;
}
const char *vm_gen_score_names(void) {
    return "nll, entropy, gate_entropy, ilv, ilv_dev, temperature, disagreement, prob_var";
}

const char *vm_gen_finish_name(vm_gen_finish f) {
    return f == VM_GEN_LENGTH ? "length" : f == VM_GEN_UNCERTAIN ? "uncertain" : "stop";
}

struct vm_gen {
    const vm_model *m;
    const vm_tokenizer *tok;
    vm_ctx *c;
    int n_ctx, n_layer, first_moe;
    float *unc;                  // (n_ctx, n_layer, VM_UNC_COUNT), NaN until written
    int n_ro, *ro;               // read-out layers
    unsigned avail;
    // routing capture
    int cap_n, cap_max, cap_pos;
    int *cap_layers, *cap_slot; // cap_slot[layer] = index in cap_layers or -1
    float *cap_logits, *cap_probs, *cap_gates, *cap_unc;
    int32_t *cap_experts, *cap_ids;
    // target accumulation (multiple-choice scoring: the read-outs at the last context token)
    int tgt_pos, tgt_ncond, tgt_seq;
    double tgt_sum[VM_UNC_COUNT];
    int tgt_cnt[VM_UNC_COUNT];
};

static void trace_cb(void *ud, const vm_trace_ev *ev) {
    vm_gen *g = ud;
    const int l = ev->layer;
    if (l < 0 || l >= g->n_layer || ev->pos0 < 0 || ev->n_tokens < 0 || ev->pos0 + ev->n_tokens > g->n_ctx) return;
    const int N = g->m->hp.n_expert, K = g->m->hp.n_expert_used;
    if (!strcmp(ev->name, "ffn_moe_unc")) {
        if (!ev->f || ev->ne != VM_UNC_COUNT) return;
        for (int t = 0; t < ev->n_tokens; t++)
            memcpy(g->unc + ((size_t)(ev->pos0 + t) * g->n_layer + l) * VM_UNC_COUNT,
                   ev->f + (size_t)t * VM_UNC_COUNT, VM_UNC_COUNT * sizeof(float));
        if (g->tgt_pos >= 0) {
            if (l == g->first_moe && ev->pos0 == 0) g->tgt_seq++;   // every sequence starts at position 0
            int t = g->tgt_pos - ev->pos0, is_ro = 0;
            for (int i = 0; i < g->n_ro; i++) is_ro |= g->ro[i] == l;
            if (is_ro && g->tgt_seq < g->tgt_ncond && t >= 0 && t < ev->n_tokens)
                for (int u = 0; u < VM_UNC_COUNT; u++) {
                    const float v = ev->f[(size_t)t * VM_UNC_COUNT + u];
                    if (isfinite(v)) { g->tgt_sum[u] += v; g->tgt_cnt[u]++; }
                }
        }
        if (g->cap_n && g->cap_slot[l] >= 0)
            for (int t = 0; t < ev->n_tokens && ev->pos0 + t < g->cap_max; t++)
                memcpy(g->cap_unc + ((size_t)(ev->pos0 + t) * g->cap_n + g->cap_slot[l]) * VM_UNC_COUNT,
                       ev->f + (size_t)t * VM_UNC_COUNT, VM_UNC_COUNT * sizeof(float));
        return;
    }
    if (!g->cap_n || g->cap_slot[l] < 0 || strncmp(ev->name, "ffn_moe_", 8)) return;
    const char *what = ev->name + 8;
    float *fdst = NULL;
    int32_t *idst = NULL;
    int ne = 0;
    if (!strcmp(what, "logits")) { fdst = g->cap_logits; ne = N; }
    else if (!strcmp(what, "probs")) { fdst = g->cap_probs; ne = N; }
    else if (!strcmp(what, "weights")) { fdst = g->cap_gates; ne = K; }
    else if (!strcmp(what, "topk")) { idst = g->cap_experts; ne = K; }
    else return;
    if (ev->ne != ne || (fdst && !ev->f) || (idst && !ev->i)) return;
    for (int t = 0; t < ev->n_tokens && ev->pos0 + t < g->cap_max; t++) {
        const size_t at = ((size_t)(ev->pos0 + t) * g->cap_n + g->cap_slot[l]) * ne;
        if (fdst) memcpy(fdst + at, ev->f + (size_t)t * ne, (size_t)ne * sizeof(float));
        else memcpy(idst + at, ev->i + (size_t)t * ne, (size_t)ne * sizeof(int32_t));
    }
}

// The read-out layers: those an adapter replaced, else every MoE layer (as `vmoer eval`).
static int pick_readout(vm_gen *g) {
    const vm_model *m = g->m;
    int replaced = 0;
    g->first_moe = -1;
    for (int l = 0; l < m->hp.n_layer; l++) {
        const vm_router *r = m->routers[l];
        if (!m->layers[l].is_moe) continue;
        if (g->first_moe < 0) g->first_moe = l;
        replaced |= r && r->ops && strcmp(r->ops->name, "deterministic") != 0;
    }
    if (!(g->ro = vm_calloc((size_t)m->hp.n_layer + 1, sizeof *g->ro))) return -1;
    g->avail = (1u << VM_GS_NLL) | (1u << VM_GS_ENTROPY);
    for (int l = 0; l < m->hp.n_layer; l++) {
        const vm_router *r = m->routers[l];
        if (!m->layers[l].is_moe || !r || !r->ops) continue;
        if (replaced && !strcmp(r->ops->name, "deterministic")) continue;
        g->ro[g->n_ro++] = l;
        for (int s = 0; s < VM_GS_COUNT; s++)
            if (score_unc[s] >= 0 && (r->ops->unc & VM_UNC_BIT(score_unc[s]))) g->avail |= 1u << s;
    }
    return 0;
}

vm_gen *vm_gen_new(const vm_model *m, const vm_tokenizer *tok, int n_ctx) {
    if (!m || !tok) { vm_err("gen: no model or tokenizer"); return NULL; }
    vm_gen *g = vm_calloc(1, sizeof *g);
    if (!g) return NULL;
    g->m = m; g->tok = tok;
    g->n_ctx = n_ctx > 0 ? n_ctx : m->hp.n_ctx_train;
    g->n_layer = m->hp.n_layer;
    g->tgt_pos = -1;
    size_t n;
    if (g->n_ctx <= 0 || vm_size_mul((size_t)g->n_ctx * (size_t)g->n_layer, VM_UNC_COUNT, &n) ||
        !(g->unc = vm_malloc(n * sizeof(float) + 1)) || pick_readout(g) ||
        !(g->c = vm_ctx_init(m, g->n_ctx, g->n_ctx < 512 ? g->n_ctx : 512))) {
        vm_gen_free(g);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) g->unc[i] = NAN;
    vm_ctx_set_trace(g->c, trace_cb, g);
    return g;
}

static void capture_free(vm_gen *g) {
    free(g->cap_layers); free(g->cap_slot); free(g->cap_logits); free(g->cap_probs); free(g->cap_gates);
    free(g->cap_unc); free(g->cap_experts); free(g->cap_ids);
    g->cap_layers = g->cap_slot = NULL;
    g->cap_logits = g->cap_probs = g->cap_gates = g->cap_unc = NULL;
    g->cap_experts = g->cap_ids = NULL;
    g->cap_n = g->cap_max = g->cap_pos = 0;
}

void vm_gen_free(vm_gen *g) {
    if (!g) return;
    capture_free(g);
    vm_ctx_free(g->c);
    free(g->unc);
    free(g->ro);
    free(g);
}

vm_ctx *vm_gen_ctx(vm_gen *g) { return g->c; }
const vm_model *vm_gen_model(const vm_gen *g) { return g->m; }
int vm_gen_n_ctx(const vm_gen *g) { return g->n_ctx; }
unsigned vm_gen_available(const vm_gen *g) {
    if (!g) vm_err("gen: no generator given");
    return g ? g->avail : 0;
}
int vm_gen_readout_layers(const vm_gen *g, const int **layers) { *layers = g->ro; return g->n_ro; }

int vm_gen_capture(vm_gen *g, const int *layers, int n_layers, int max_pos) {
    capture_free(g);
    if (n_layers <= 0) return 0;
    const vm_model *m = g->m;
    if (max_pos < 1 || max_pos > g->n_ctx) max_pos = g->n_ctx;
    for (int i = 0; i < n_layers; i++) {
        if (layers[i] < 0 || layers[i] >= g->n_layer || !m->layers[layers[i]].is_moe)
            return vm_err("layer %d is not a MoE layer of this model", layers[i]);
        if (i && layers[i] <= layers[i - 1]) return vm_err("layers must be ascending and distinct");
    }
    const size_t cells = (size_t)max_pos * (size_t)n_layers, N = (size_t)m->hp.n_expert, K = (size_t)m->hp.n_expert_used;
    g->cap_layers = vm_malloc(sizeof(int) * (size_t)n_layers);
    g->cap_slot = vm_malloc(sizeof(int) * (size_t)g->n_layer);
    g->cap_logits = vm_calloc(cells * N, sizeof(float));
    g->cap_probs = vm_calloc(cells * N, sizeof(float));
    g->cap_gates = vm_calloc(cells * K, sizeof(float));
    g->cap_unc = vm_calloc(cells * VM_UNC_COUNT, sizeof(float));
    g->cap_experts = vm_calloc(cells * K, sizeof(int32_t));
    g->cap_ids = vm_calloc((size_t)max_pos, sizeof(int32_t));
    if (!g->cap_layers || !g->cap_slot || !g->cap_logits || !g->cap_probs || !g->cap_gates || !g->cap_unc ||
        !g->cap_experts || !g->cap_ids) { capture_free(g); return -1; }
    for (int l = 0; l < g->n_layer; l++) g->cap_slot[l] = -1;
    for (int i = 0; i < n_layers; i++) { g->cap_layers[i] = layers[i]; g->cap_slot[layers[i]] = i; }
    g->cap_n = n_layers;
    g->cap_max = max_pos;
    return 0;
}

void vm_gen_routing_view(const vm_gen *g, vm_gen_routing *r) {
    *r = (vm_gen_routing){ .n_layers = g->cap_n, .N = g->m->hp.n_expert, .K = g->m->hp.n_expert_used,
                           .n_pos = g->cap_pos, .layers = g->cap_layers, .logits = g->cap_logits,
                           .probs = g->cap_probs, .experts = g->cap_experts, .gates = g->cap_gates,
                           .unc = g->cap_unc, .ids = g->cap_ids };
}

void vm_gen_reset(vm_gen *g, uint64_t seed) {
    vm_ctx_reset(g->c);
    vm_ctx_set_seed(g->c, seed);
    g->cap_pos = 0;
}

int vm_gen_eval(vm_gen *g, const int32_t *ids, int n, float *logits) {
    const int p0 = vm_ctx_n_past(g->c);
    if (vm_ctx_eval(g->c, ids, n, logits)) return -1;
    for (int t = 0; t < n && p0 + t < g->cap_max; t++) g->cap_ids[p0 + t] = ids[t];
    if (g->cap_n) g->cap_pos = p0 + n < g->cap_max ? p0 + n : g->cap_max;
    return 0;
}

void vm_gen_target(vm_gen *g, int pos, int n_cond) {
    g->tgt_pos = pos; g->tgt_ncond = n_cond; g->tgt_seq = -1;
    memset(g->tgt_sum, 0, sizeof g->tgt_sum);
    memset(g->tgt_cnt, 0, sizeof g->tgt_cnt);
}

void vm_gen_target_mean(const vm_gen *g, double out[VM_UNC_COUNT]) {
    for (int u = 0; u < VM_UNC_COUNT; u++) out[u] = g->tgt_cnt[u] ? g->tgt_sum[u] / g->tgt_cnt[u] : NAN;
}

// ---------------------------------------------------------------- records

void vm_gen_record(vm_gen *g, const float *logits, int pos, int32_t id, int n_top, vm_gen_tok *t) {
    const int V = g->m->hp.n_vocab;
    memset(t, 0, sizeof *t);
    t->id = id; t->pos = pos;
    if (n_top > VM_GEN_MAX_TOP) n_top = VM_GEN_MAX_TOP;
    if (n_top < 0) n_top = 0;
    // log-softmax in double; NaN logits count as -inf (probability 0, as the sampler treats them)
    double mx = -INFINITY;
    for (int i = 0; i < V; i++) if (logits[i] > mx) mx = logits[i];
    double z = 0.0, el = 0.0;
    for (int i = 0; i < V; i++) {
        if (!(logits[i] > -INFINITY)) continue;
        const double d = (double)logits[i] - mx, e = exp(d);
        z += e; el += e * d;
    }
    const double lz = log(z);
    for (int s = 0; s < VM_GS_COUNT; s++) t->score[s] = NAN;
    t->score[VM_GS_ENTROPY] = (float)(lz - el / z);
    t->prob = t->logprob = NAN;
    if (id >= 0 && id < V) {
        const double lp = logits[id] > -INFINITY ? (double)logits[id] - mx - lz : -INFINITY;
        t->logprob = (float)lp; t->prob = (float)exp(lp); t->score[VM_GS_NLL] = (float)-lp;
    }
    // top n by logit, insertion into a short sorted list (ties: the lower id stays first)
    for (int i = 0; i < V && n_top; i++) {
        const float x = logits[i];
        if (!(x > -INFINITY)) continue;
        if (t->n_top == n_top && !(x > logits[t->top_id[n_top - 1]])) continue;
        int k = t->n_top < n_top ? t->n_top++ : n_top - 1;
        while (k > 0 && x > logits[t->top_id[k - 1]]) { t->top_id[k] = t->top_id[k - 1]; k--; }
        t->top_id[k] = i;
    }
    for (int k = 0; k < t->n_top; k++) t->top_lp[k] = (float)((double)logits[t->top_id[k]] - mx - lz);
    // the routers' read-outs at pos, averaged over the read-out layers
    t->unc = g->unc + (size_t)pos * g->n_layer * VM_UNC_COUNT;
    for (int s = 0; s < VM_GS_COUNT; s++) {
        if (score_unc[s] < 0 || !(g->avail & (1u << s))) continue;
        double sum = 0.0;
        int n = 0;
        for (int i = 0; i < g->n_ro; i++) {
            const float v = t->unc[(size_t)g->ro[i] * VM_UNC_COUNT + score_unc[s]];
            if (isfinite(v)) { sum += v; n++; }
        }
        if (n) t->score[s] = (float)(sum / n);
    }
}

void vm_gen_summary_add(vm_gen_summary *s, const vm_gen_tok *t) {
    s->n++;
    for (int k = 0; k < VM_GS_COUNT; k++) {
        const double v = t->score[k];
        if (!isfinite(v)) continue;
        s->max[k] = s->cnt[k] ? fmax(s->max[k], v) : v;
        s->sum[k] += v;
        s->cnt[k]++;
    }
}

// ---------------------------------------------------------------- generation

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

void vm_gen_params_default(vm_gen_params *p) {
    *p = (vm_gen_params){ .max_tokens = 16, .temp = 0.0f, .top_p = 1.0f, .abstain_score = -1 };
}

int vm_gen_run(vm_gen *g, const int32_t *prompt, int n_prompt, const vm_gen_params *p,
               vm_gen_fn fn, void *ud, vm_gen_result *r) {
    if (!g || !p || !r) return vm_err("gen: no generator, parameters or result given");
    memset(r, 0, sizeof *r);
    r->n_prompt = n_prompt;
    r->finish = VM_GEN_LENGTH;
    if (n_prompt <= 0) return vm_err("gen: empty prompt");
    if (n_prompt > g->n_ctx) return vm_err("gen: the prompt of %d tokens exceeds the context of %d", n_prompt, g->n_ctx);
    vm_sampler smp;
    if (vm_sampler_init(&smp, p->temp, p->top_k, p->top_p, p->seed)) return -1;
    const int32_t bos = vm_tokenizer_bos(g->tok), eos = vm_tokenizer_eos(g->tok);
    const int V = g->m->hp.n_vocab;
    int rc = 0, pending = 0;   // pending: the last accepted token has not been evaluated
    int32_t last = -1;
    vm_gen_reset(g, p->seed);
    const double t0 = now_ms();
    if (vm_gen_eval(g, prompt, n_prompt, NULL)) { vm_sampler_free(&smp); return -1; }
    const double t1 = now_ms();
    r->ms_prompt = t1 - t0;
    while (r->n_gen < p->max_tokens) {
        const float *lg = vm_ctx_last_logits(g->c);
        const int32_t id = vm_sampler_sample(&smp, lg, V);
        if (id < 0) { rc = -1; break; }
        if (id == eos || id == bos || (p->end_at_control && vm_tokenizer_type(g->tok, id) == VM_TOKEN_TYPE_CONTROL)) {
            r->finish = VM_GEN_EOS;
            break;
        }
        vm_gen_tok t;
        vm_gen_record(g, lg, vm_ctx_n_past(g->c) - 1, id, p->n_top, &t);
        if (p->abstain_score >= 0 && p->abstain_score < VM_GS_COUNT && t.score[p->abstain_score] > p->abstain_threshold) {
            r->withheld = t;
            r->finish = VM_GEN_UNCERTAIN;
            break;
        }
        vm_gen_summary_add(&r->summary, &t);
        r->n_gen++;
        last = id;
        pending = 1;
        const int f = fn ? fn(ud, &t) : 0;
        if (f < 0) { rc = -1; break; }
        if (f > 0) { r->finish = VM_GEN_STOPPED; break; }
        if (r->n_gen == p->max_tokens || vm_ctx_n_past(g->c) >= g->n_ctx) break;   // needs no evaluation
        if (vm_gen_eval(g, &id, 1, NULL)) { rc = -1; break; }
        pending = 0;
    }
    if (rc == 0 && pending && p->eval_last && vm_ctx_n_past(g->c) < g->n_ctx) rc = vm_gen_eval(g, &last, 1, NULL);
    r->ms_gen = now_ms() - t1;
    vm_sampler_free(&smp);
    return rc;
}

// ---------------------------------------------------------------- chat

char *vm_gen_chat_render(const vm_model *m, const vm_tokenizer *tok, int tmpl, const vm_chat_msg *msgs, int n) {
    char *gt = NULL, *dsys = NULL, *out = NULL;
    if (vm_gguf_get_str(m->gguf, "tokenizer.chat_template", &gt) < 0) return NULL;
    if (gt && (tmpl == VM_CHAT_CHATML || tmpl == VM_CHAT_QWEN3 || tmpl == VM_CHAT_QWEN3_NOTHINK))
        dsys = vm_chat_default_system(gt);     // Qwen1.5/Qwen2 add one when there is no system message
    const int32_t bos = vm_tokenizer_bos(tok), eos = vm_tokenizer_eos(tok), nv = vm_tokenizer_n_vocab(tok);
    vm_chat_opts o = { bos >= 0 && bos < nv ? vm_tokenizer_text(tok, bos) : NULL,
                       eos >= 0 && eos < nv ? vm_tokenizer_text(tok, eos) : NULL, dsys };
    if (vm_chat_render_ex(tmpl, msgs, n, 1, &o, &out) < 0) out = NULL;
    free(dsys);
    free(gt);
    return out;
}

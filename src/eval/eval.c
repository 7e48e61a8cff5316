// Scoring a dataset with every uncertainty score per question (eval.h). Each item runs as one tree
// batch (vm_scorer_run, score.c): its context once, each choice's continuation once. The router
// read-outs travel out of the model through the router interface itself: every kind writes its
// per-token read-outs (vm_router_out.unc), the training context keeps them per layer and row
// (vm_tctx_router_unc), and the scorer reads the row of the last context token.
#include "util/progress.h"
#include "eval/eval_internal.h"
#include "train/adapter.h"
#include "util/dist.h"
#include "util/err.h"
#include "util/hash.h"
#include "util/rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const unc_names[VM_EVAL_UNC_COUNT] = {
    "entropy", "neg_maxprob", "mi", "ilv", "gate_entropy", "temperature", "base_gate_entropy", "ilv_dev",
    "prob_var",
};
const char *vm_eval_unc_name(int u) { return u >= 0 && u < VM_EVAL_UNC_COUNT ? unc_names[u] : "?"; }

int vm_eval_kind_sampled(const char *kind) {
    const vm_router_ops *ops = vm_router_kind_ops(kind);
    return ops && (ops->flags & VM_ROUTER_STOCHASTIC);
}

// Adapters usually replace only some layers: the other layers' deterministic routers do not count.
const char *vm_eval_model_router(const vm_model *m) {
    const char *name = NULL;
    int any = 0;
    for (int l = 0; l < m->hp.n_layer; l++) {
        const vm_router *r = m->routers[l];
        if (!m->layers[l].is_moe || !r || !r->ops) continue;
        any = 1;
        const char *n = r->ops->name;
        if (!strcmp(n, "deterministic")) continue;
        if (!name) name = n;
        else if (strcmp(name, n)) return "mixed";
    }
    return name ? name : any ? "deterministic" : NULL;
}

int vm_eval_readout_layer(const vm_model *m, int il) {
    if (il < 0 || il >= m->hp.n_layer || !m->layers[il].is_moe) return 0;
    int replaced = 0;
    for (int l = 0; l < m->hp.n_layer; l++) {
        const vm_router *r = m->routers[l];
        replaced |= m->layers[l].is_moe && r && r->ops && strcmp(r->ops->name, "deterministic") != 0;
    }
    const vm_router *r = m->routers[il];
    return !replaced || (r && r->ops && strcmp(r->ops->name, "deterministic") != 0);
}

double vm_eval_now(void) { return vm_now_s(); }

// ---------------------------------------------------------------- ranks of one job

int vm_eval_dist_same(const vm_model *m, const vm_dataset *ds, uint64_t opts, const char *what) {
    if (vm_dist_size() == 1) return 0;
    char w[256];
    snprintf(w, sizeof w, "%s: the model", what);
    if (vm_dist_same_u64(vm_model_identity(m), w)) return -1;
    snprintf(w, sizeof w, "%s: the data set", what);
    if (vm_dist_same_u64(vm_dataset_fingerprint(ds), w)) return -1;
    snprintf(w, sizeof w, "%s: the options", what);
    return vm_dist_same_u64(opts, w);
}

// What a rank sends of its block of a set: the counts, then (dataset index, item) per scored item
// (the id pointer travels as the index: each rank has the same dataset), then the first skip message.
typedef struct shard_head { int32_t n, n_skipped; int64_t n_tokens; uint32_t msg_len, pad; } shard_head;
typedef struct shard_rec { int64_t idx; vm_eval_item e; } shard_rec;

// Every rank's block, in rank order (= item order: blocks are contiguous and ascending), into out.
static int gather_set(const vm_dataset *ds, const int *idx, vm_eval_set *out) {
    const size_t msg_len = out->n_skipped && out->skip_msg ? strlen(out->skip_msg) + 1 : 0;
    const size_t n = sizeof(shard_head) + (size_t)out->n * sizeof(shard_rec) + msg_len;
    unsigned char *mine = vm_calloc(n, 1);   // zeroed: the structs' padding is sent too
    size_t *counts = vm_calloc((size_t)vm_dist_size(), sizeof *counts);
    void *all = NULL;
    int rc = mine && counts ? 0 : -1;
    if (rc == 0) {
        shard_head hd = { .n = out->n, .n_skipped = out->n_skipped, .n_tokens = out->n_tokens, .msg_len = (uint32_t)msg_len };
        memcpy(mine, &hd, sizeof hd);
        shard_rec *rec = (shard_rec *)(void *)(mine + sizeof hd);
        for (int i = 0; i < out->n; i++) {
            shard_rec r;
            memset(&r, 0, sizeof r);
            r.idx = idx[i]; r.e = out->items[i]; r.e.id = NULL;
            memcpy(&rec[i], &r, sizeof r);
        }
        if (msg_len) memcpy(mine + sizeof hd + (size_t)out->n * sizeof(shard_rec), out->skip_msg, msg_len);
        rc = vm_dist_allgatherv(mine, n, &all, counts);
    }
    if (rc == 0) {
        free(out->skip_msg);
        out->skip_msg = NULL;
        out->n = out->n_skipped = 0;
        out->n_tokens = 0;
        const unsigned char *p = all;
        for (int r = 0; r < vm_dist_size() && rc == 0; r++) {
            shard_head hd;
            memcpy(&hd, p, sizeof hd);
            if (counts[r] != sizeof hd + (size_t)hd.n * sizeof(shard_rec) + hd.msg_len || out->n + (size_t)hd.n > ds->n) {
                rc = vm_err("eval %s: rank %d sent %zu bytes that do not match its %d items", out->name, r, counts[r], hd.n);
                break;
            }
            const unsigned char *q = p + sizeof hd;
            for (int i = 0; i < hd.n; i++, q += sizeof(shard_rec)) {
                shard_rec rec;
                memcpy(&rec, q, sizeof rec);
                if (rec.idx < 0 || (size_t)rec.idx >= ds->n) { rc = vm_err("eval %s: rank %d sent item index %lld", out->name, r, (long long)rec.idx); break; }
                out->items[out->n] = rec.e;
                out->items[out->n++].id = ds->items[rec.idx].id;
            }
            if (hd.n_skipped && !out->n_skipped && hd.msg_len) out->skip_msg = vm_strdup((const char *)q);
            out->n_skipped += hd.n_skipped;
            out->n_tokens += hd.n_tokens;
            p += counts[r];
        }
    }
    free(mine); free(counts); free(all);
    return rc;
}

// ---------------------------------------------------------------- scoring

static double entropy(const double *p, int n) {
    double h = 0.0;
    for (int i = 0; i < n; i++) if (p[i] > 0.0) h -= p[i] * log(p[i]);
    return h;
}

static int argmax(const double *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++) if (x[i] > x[b]) b = i;
    return b;
}

uint64_t vm_eval_stream_seed(uint64_t seed, uint64_t stream) {
    vm_rng g;
    vm_rng_seed2(&g, seed, stream);
    return vm_rng_u64(&g);
}

void vm_eval_set_free(vm_eval_set *s) {
    if (!s) return;
    free(s->name);
    free(s->items);
    free(s->skip_msg);
    memset(s, 0, sizeof *s);
}

int vm_eval_run(vm_model *m, const vm_task *task, const vm_dataset *ds, const char *name,
                const vm_eval_opts *o, vm_eval_set *out) {
    memset(out, 0, sizeof *out);
    if (!m || !task || !ds || ds->n == 0) return vm_err("eval: nothing to evaluate");
    if (ds->n > 10000000) return vm_err("eval: %zu items is too many", ds->n);
    const char *kind = vm_eval_model_router(m);
    const int sampled = vm_eval_kind_sampled(kind) || (kind && !strcmp(kind, "mixed"));
    const int P = sampled ? (o && o->passes > 0 ? o->passes : VM_EVAL_PASSES) : 1;
    const uint64_t seed = o ? o->seed : 0;
    const int dist = o && o->distributed && vm_dist_size() > 1;
    out->name = vm_strdup(name ? name : "id");
    out->items = vm_calloc(ds->n, sizeof *out->items);
    if (!out->name || !out->items) { vm_eval_set_free(out); return -1; }
    if (dist) {   // the same model, items and streams on every rank, or the gathered set is not one run's
        char what[128];
        snprintf(what, sizeof what, "eval %s", out->name);
        uint64_t oh = vm_fnv1a(VM_FNV1A_INIT, &P, sizeof P);
        oh = vm_fnv1a(oh, &seed, sizeof seed);
        oh = vm_fnv1a(oh, &task->mode, sizeof task->mode);
        oh = vm_fnv1a(oh, &task->tmpl, sizeof task->tmpl);
        oh = vm_fnv1a(oh, &task->max_tokens, sizeof task->max_tokens);
        if (vm_eval_dist_same(m, ds, oh, what)) { vm_eval_set_free(out); return -1; }
    }
    // this rank's block of items (all of them in one process); idx: the dataset index of each scored one
    int lo = 0, hi = (int)ds->n;
    if (dist) vm_dist_shard((int)ds->n, vm_dist_rank(), vm_dist_size(), &lo, &hi);
    int *idx = vm_malloc((ds->n ? ds->n : 1) * sizeof(int));
    if (!idx) { vm_eval_set_free(out); return -1; }
    unsigned char *ro_layers = vm_calloc((size_t)m->hp.n_layer, 1);
    if (!ro_layers) { free(idx); vm_eval_set_free(out); return -1; }
    // the forward kept per layer starts at the lowest read-out layer; below it every router is the
    // deterministic one (a replaced layer is a read-out layer), unless a kind says it samples
    int l0 = -1, prefix_sampled = 0;
    for (int l = 0; l < m->hp.n_layer; l++) {
        ro_layers[l] = (unsigned char)vm_eval_readout_layer(m, l);
        if (ro_layers[l] && l0 < 0) l0 = l;
    }
    if (l0 < 0) l0 = m->hp.n_layer - 1;
    for (int l = 0; l < l0; l++)
        prefix_sampled |= m->routers && m->routers[l] && m->routers[l]->ops && (m->routers[l]->ops->flags & VM_ROUTER_STOCHASTIC);
    vm_scorer *sc = vm_scorer_init(m, l0);
    float *h = NULL;   // the item's hidden states entering l0, shared by its P passes
    size_t h_cap = 0;
    int rc = sc ? 0 : -1;
    const double t0 = vm_eval_now();
    for (size_t i = (size_t)lo; i < (size_t)hi && rc == 0; i++) {
        const vm_mcq_item *it = &ds->items[i];
        vm_task_input in;
        if (vm_task_build(task, it, &in)) {
            if (!out->n_skipped++) out->skip_msg = vm_strdup(vm_errmsg());
            continue;
        }
        vm_eval_item *e = &out->items[out->n];
        const int C = in.n_choices;
        double pbar[VM_MCQ_MAX_CHOICES] = {0}, llbar[VM_MCQ_MAX_CHOICES] = {0}, hsum = 0.0;
        double usum[VM_EVAL_UNC_COUNT] = {0};
        int ucnt[VM_EVAL_UNC_COUNT] = {0};
        int ntok = 0;
        for (int s = 0; s < in.n_seq; s++) {
            if (in.seq[s].n > ntok) ntok = in.seq[s].n;
            out->n_tokens += (long long)in.seq[s].n * P;
        }
        const size_t need = (size_t)in.tree.view.n_rows * m->hp.n_embd;
        if (!prefix_sampled && need > h_cap) {
            free(h);
            h_cap = (h = vm_malloc(need * sizeof(float))) ? need : 0;
            if (!h) rc = -1;
        }
        if (rc == 0 && !prefix_sampled && vm_model_hidden_tree(m, in.tree.tok, &in.tree.view, l0, h, NULL))
            rc = vm_err_prefix("eval %s: item %s", out->name, it->id);
        for (int q = 0; q < P && rc == 0; q++) {
            vm_tree_score_out r;
            vm_rng rng;
            vm_rng_seed(&rng, vm_eval_stream_seed(seed, (uint64_t)i * 65536u + (uint64_t)q));
            if (vm_scorer_run(sc, &in, prefix_sampled ? NULL : h, &rng, ro_layers, &r)) {
                rc = vm_err_prefix("eval %s: item %s", out->name, it->id);
                break;
            }
            for (int k = 0; k < C; k++) { pbar[k] += r.r.probs[k] / P; llbar[k] += r.r.ll[k] / P; }
            hsum += entropy(r.r.probs, C);
            // the routers' read-outs, and the frozen router's gate entropy, over passes
            static const int map[][2] = { { VM_UNC_ILV, VM_EVAL_UNC_ILV }, { VM_UNC_GATE_ENTROPY, VM_EVAL_UNC_GATE_ENTROPY },
                                          { VM_UNC_TEMPERATURE, VM_EVAL_UNC_TEMPERATURE }, { VM_UNC_ILV_DEV, VM_EVAL_UNC_ILV_DEV },
                                          { VM_UNC_PROB_VAR, VM_EVAL_UNC_PROB_VAR }, { -1, VM_EVAL_UNC_BASE_GATE_ENTROPY } };
            for (size_t k = 0; k < sizeof map / sizeof *map; k++) {
                const double v = map[k][0] < 0 ? r.base_gate_entropy : r.unc[map[k][0]];
                if (isfinite(v)) { usum[map[k][1]] += v; ucnt[map[k][1]]++; }
            }
        }
        if (rc == 0) {
            e->id = it->id;
            idx[out->n] = (int)i;
            e->n_choices = C;
            e->answer = in.answer;
            e->n_tokens = ntok;
            for (int k = 0; k < C; k++) {
                e->probs[k] = pbar[k];
                e->logp[k] = log(pbar[k] > 1e-300 ? pbar[k] : 1e-300);
                e->ll[k] = llbar[k];
            }
            e->pred = argmax(pbar, C);
            if (in.mode == VM_TASK_LOGLIK || in.mode == VM_TASK_LOGLIK_RAW) {   // pmi scores are not per byte
                double norm[VM_MCQ_MAX_CHOICES];
                for (int k = 0; k < C; k++)
                    norm[k] = llbar[k] / (double)(in.seq[k].cont_bytes ? in.seq[k].cont_bytes : 1);
                e->pred_norm = argmax(norm, C);
            } else {
                e->pred_norm = e->pred;
            }
            const double H = entropy(pbar, C);
            e->unc[VM_EVAL_UNC_ENTROPY] = H;
            e->unc[VM_EVAL_UNC_NEG_MAXPROB] = -pbar[e->pred];
            e->unc[VM_EVAL_UNC_MI] = P > 1 ? fmax(0.0, H - hsum / P) : NAN;
            for (int k = VM_EVAL_UNC_ILV; k < VM_EVAL_UNC_COUNT; k++)
                e->unc[k] = ucnt[k] ? usum[k] / ucnt[k] : NAN;
            out->n++;
        }
        vm_task_input_free(&in);
    }
    if (dist) {   // a failure anywhere stops every rank here, named; else the blocks in item order
        char what[128];
        snprintf(what, sizeof what, "eval %s", out->name);
        rc = vm_dist_check(rc, what);
        if (rc == 0) rc = gather_set(ds, idx, out);
    }
    if (rc == 0 && out->n == 0)
        rc = vm_err("eval %s: no item could be scored (%d skipped; first: %s)", out->name, out->n_skipped,
                    out->skip_msg ? out->skip_msg : "?");
    out->seconds = vm_eval_now() - t0;   // this rank's wall time (scoring and exchange)
    vm_scorer_free(sc);
    free(h);
    free(idx);
    free(ro_layers);
    if (rc) vm_eval_set_free(out);
    return rc;
}

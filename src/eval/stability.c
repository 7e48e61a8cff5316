// Routing stability under embedding noise (method.md §5.4): Jaccard index of the selected expert
// sets of a clean and a noisy pass, per token and MoE layer, for a grid of noise levels gamma.
#include "eval/eval_internal.h"
#include "quant/quant.h"
#include "util/dist.h"
#include "util/err.h"
#include "util/hash.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct sel_buf {
    int n_moe, T, K;
    const int *moe_of_layer;   // block -> MoE index, -1 for dense
    int32_t *sel;              // (n_moe, T, K)
    int bad;
} sel_buf;

static void sel_cb(void *ud, const vm_trace_ev *ev) {
    sel_buf *b = ud;
    if (strcmp(ev->name, "ffn_moe_topk") || ev->layer < 0) return;
    const int li = b->moe_of_layer[ev->layer];
    if (li < 0 || !ev->i || ev->ne != b->K || ev->pos0 < 0 || ev->pos0 + ev->n_tokens > b->T) { b->bad = 1; return; }
    memcpy(b->sel + ((size_t)li * b->T + (size_t)ev->pos0) * b->K, ev->i,
           (size_t)ev->n_tokens * b->K * sizeof(int32_t));
}

// |A ∩ B| of two sets of K distinct experts; their Jaccard index is that over 2K minus it
static int overlap(const int32_t *a, const int32_t *b, int K) {
    int inter = 0;
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++) inter += a[i] == b[j];
    return inter;
}

static double jaccard_of(int inter, int K) { return (double)inter / (double)(2 * K - inter); }

// Each measured prompt's overlaps |A ∩ B| (0..K) per (gamma, layer, token), in that order, appended:
// the means over every (token, layer) are replayed from them in prompt order after the loop, so one
// process and any split over ranks add the same numbers in the same order (the same bits).
typedef struct ovl_buf { unsigned char *p; size_t n, cap; } ovl_buf;

static unsigned char *ovl_grow(ovl_buf *o, size_t n) {
    if (o->n + n > o->cap) {
        size_t cap = o->cap ? o->cap : 1 << 16;
        while (cap < o->n + n) cap *= 2;
        unsigned char *q = realloc(o->p, cap);
        if (!q) { vm_err("stability: out of memory (%zu bytes of overlaps)", cap); return NULL; }
        o->p = q; o->cap = cap;
    }
    unsigned char *at = o->p + o->n;
    o->n += n;
    return at;
}

// What a rank sends of its block of prompts: counts, then per prompt its token count (int32) and its
// mean Jaccard per (gamma, layer) (double, per_item), then the overlaps.
typedef struct stab_head { int32_t n_items, pad; int64_t n_tokens; uint64_t n_ovl; } stab_head;

// Every rank's block in rank order (= prompt order): per-prompt rows and overlaps concatenated.
static int gather_stab(vm_stability *out, ovl_buf *ovl, size_t per_item, size_t cap) {
    const size_t rec = sizeof(int32_t) + per_item * sizeof(double);
    const size_t n = sizeof(stab_head) + (size_t)out->n_items * rec + ovl->n;
    unsigned char *mine = vm_calloc(n, 1), *p = mine;
    size_t *counts = vm_calloc((size_t)vm_dist_size(), sizeof *counts);
    void *all = NULL;
    int rc = mine && counts ? 0 : -1;
    if (rc == 0) {
        const stab_head hd = { .n_items = out->n_items, .n_tokens = out->n_tokens, .n_ovl = ovl->n };
        memcpy(p, &hd, sizeof hd); p += sizeof hd;
        for (int i = 0; i < out->n_items; i++) {
            memcpy(p, &out->item_tokens[i], sizeof(int32_t)); p += sizeof(int32_t);
            memcpy(p, out->jac_item + (size_t)i * per_item, per_item * sizeof(double)); p += per_item * sizeof(double);
        }
        if (ovl->n) memcpy(p, ovl->p, ovl->n);
        rc = vm_dist_allgatherv(mine, n, &all, counts);
    }
    if (rc == 0) {
        out->n_items = 0;
        out->n_tokens = 0;
        ovl->n = 0;
        const unsigned char *q = all;
        for (int r = 0; r < vm_dist_size() && rc == 0; r++) {
            stab_head hd;
            memcpy(&hd, q, sizeof hd);
            if (hd.n_items < 0 || counts[r] != sizeof hd + (size_t)hd.n_items * rec + hd.n_ovl ||
                (size_t)out->n_items + (size_t)hd.n_items > cap) {
                rc = vm_err("stability: rank %d sent %zu bytes that do not match its %d prompts", r, counts[r], hd.n_items);
                break;
            }
            const unsigned char *b = q + sizeof hd;
            for (int i = 0; i < hd.n_items; i++, out->n_items++) {
                int32_t t;
                memcpy(&t, b, sizeof t); b += sizeof t;
                out->item_tokens[out->n_items] = t;
                memcpy(out->jac_item + (size_t)out->n_items * per_item, b, per_item * sizeof(double));
                b += per_item * sizeof(double);
            }
            unsigned char *o = ovl_grow(ovl, hd.n_ovl);
            if (!o) { rc = -1; break; }
            if (hd.n_ovl) memcpy(o, b, hd.n_ovl);
            out->n_tokens += hd.n_tokens;
            q += counts[r];
        }
    }
    free(mine); free(counts); free(all);
    return rc;
}

void vm_stability_free(vm_stability *s) {
    if (!s) return;
    free(s->gamma); free(s->layers); free(s->jac); free(s->jac_mean); free(s->changed);
    free(s->jac_item); free(s->item_tokens);
    memset(s, 0, sizeof *s);
}

// Prompt tokens of an item: the letter prompt, or the loglik context (shared by every choice).
static int prompt_of(const vm_task *task, const vm_mcq_item *it, vm_task_input *in, int *T) {
    if (vm_task_build(task, it, in)) return -1;
    *T = in->seq[0].n_ctx;
    return 0;
}

int vm_stability_run(vm_model *m, const vm_task *task, const vm_dataset *ds, int n_gamma,
                     const double *gamma, uint64_t seed, vm_stability *out) {
    return vm_stability_run_dist(m, task, ds, n_gamma, gamma, seed, 0, out);
}

int vm_stability_run_dist(vm_model *m, const vm_task *task, const vm_dataset *ds, int n_gamma,
                          const double *gamma, uint64_t seed, int distributed, vm_stability *out) {
    memset(out, 0, sizeof *out);
    const int dist = distributed && vm_dist_size() > 1;
    if (!m || !task || !ds || ds->n == 0 || n_gamma < 1 || !gamma) return vm_err("stability: nothing to measure");
    const vm_hparams *hp = &m->hp;
    const int D = hp->n_embd, K = hp->n_expert_used, n_ctx = hp->n_ctx_train;
    int moe_of_layer[hp->n_layer], n_moe = 0;
    for (int l = 0; l < hp->n_layer; l++) moe_of_layer[l] = m->layers[l].is_moe ? n_moe++ : -1;
    if (n_moe == 0) return vm_err("stability: the model has no MoE layer");
    for (int g = 0; g < n_gamma; g++)
        if (!(gamma[g] >= 0.0) || !isfinite(gamma[g])) return vm_err("stability: noise level %g is not >= 0", gamma[g]);
    out->n_gamma = n_gamma; out->n_layer = n_moe;
    out->gamma = vm_malloc((size_t)n_gamma * sizeof(double));
    out->layers = vm_malloc((size_t)n_moe * sizeof(int));
    out->jac = vm_calloc((size_t)n_gamma * n_moe, sizeof(double));
    out->jac_mean = vm_calloc((size_t)n_gamma, sizeof(double));
    out->changed = vm_calloc((size_t)n_gamma, sizeof(double));
    out->jac_item = vm_calloc(ds->n * (size_t)n_gamma * n_moe, sizeof(double));
    out->item_tokens = vm_calloc(ds->n, sizeof(int));
    float *row = vm_malloc((size_t)D * sizeof(float));
    int32_t *clean = vm_malloc((size_t)n_moe * n_ctx * (K > 0 ? K : 1) * sizeof(int32_t));
    int32_t *noisy = vm_malloc((size_t)n_moe * n_ctx * (K > 0 ? K : 1) * sizeof(int32_t));
    vm_ctx *c = vm_ctx_init(m, n_ctx, n_ctx);
    int rc = out->gamma && out->layers && out->jac && out->jac_mean && out->changed && out->jac_item &&
             out->item_tokens && row && clean && noisy && c ? 0 : -1;
    if (rc == 0) {
        memcpy(out->gamma, gamma, (size_t)n_gamma * sizeof(double));
        for (int l = 0; l < hp->n_layer; l++) if (moe_of_layer[l] >= 0) out->layers[moe_of_layer[l]] = l;
    }
    // L_bar: mean L2 norm of the embedding rows of every prompt token
    double norm_sum = 0.0;
    long long n_tok = 0;
    for (size_t i = 0; i < ds->n && rc == 0; i++) {
        vm_task_input in;
        int T;
        if (prompt_of(task, &ds->items[i], &in, &T)) continue;   // skipped by the scoring too
        if (T > n_ctx) { vm_task_input_free(&in); continue; }
        for (int t = 0; t < T; t++) {
            vm_dequant_row(m->tok_embd.type, (const char *)m->tok_embd.data + (size_t)in.seq[0].tokens[t] * m->tok_embd.nb[1], row, D);
            double s = 0.0;
            for (int d = 0; d < D; d++) s += (double)row[d] * row[d];
            norm_sum += sqrt(s);
        }
        n_tok += T;
        vm_task_input_free(&in);
    }
    if (rc == 0 && n_tok == 0) rc = vm_err("stability: no prompt tokens");
    if (rc == 0) out->L_bar = norm_sum / (double)n_tok;
    if (dist) {   // every rank measures with the same model, prompts, grid and streams
        uint64_t oh = vm_fnv1a(VM_FNV1A_INIT, gamma, (size_t)n_gamma * sizeof *gamma);
        oh = vm_fnv1a(oh, &seed, sizeof seed);
        oh = vm_fnv1a(oh, &task->mode, sizeof task->mode);
        oh = vm_fnv1a(oh, &task->tmpl, sizeof task->tmpl);
        if (vm_eval_dist_same(m, ds, oh, "stability")) rc = -1;   // called by every rank, failed or not
    }
    ovl_buf ovl = {0};
    if (K > 255) rc = vm_err("stability: %d experts per token (at most 255)", K);
    int lo = 0, hi = (int)ds->n;
    if (dist) vm_dist_shard((int)ds->n, vm_dist_rank(), vm_dist_size(), &lo, &hi);
    sel_buf sb = { .n_moe = n_moe, .K = K, .moe_of_layer = moe_of_layer };
    if (rc == 0) vm_ctx_set_trace(c, sel_cb, &sb);
    for (size_t i = (size_t)lo; i < (size_t)hi && rc == 0; i++) {
        vm_task_input in;
        int T;
        if (prompt_of(task, &ds->items[i], &in, &T)) continue;
        if (T > n_ctx) { vm_task_input_free(&in); continue; }
        // router streams: one for the clean pass, an independent one for the noisy passes
        const uint64_t cseed = vm_eval_stream_seed(seed, 3 * (uint64_t)i);
        const uint64_t rseed = vm_eval_stream_seed(seed, 3 * (uint64_t)i + 1);
        const uint64_t nseed = vm_eval_stream_seed(seed, 3 * (uint64_t)i + 2);   // noise draws
        sb.T = T;
        double *ji = out->jac_item + (size_t)out->n_items * n_gamma * n_moe;
        for (int g = -1; g < n_gamma && rc == 0; g++) {   // g = -1: the clean pass
            sb.sel = g < 0 ? clean : noisy;
            sb.bad = 0;
            vm_ctx_reset(c);
            vm_ctx_set_seed(c, g < 0 ? cseed : rseed);
            vm_ctx_set_embd_noise(c, g < 0 ? 0.0f : (float)(gamma[g] * out->L_bar), nseed);
            if (vm_ctx_eval(c, in.seq[0].tokens, T, NULL)) { rc = vm_err_prefix("stability: item %s", ds->items[i].id); break; }
            if (sb.bad) { rc = vm_err("stability: unexpected routing trace (item %s)", ds->items[i].id); break; }
            if (g < 0) continue;
            unsigned char *ov = ovl_grow(&ovl, (size_t)n_moe * T);
            if (!ov) { rc = -1; break; }
            for (int li = 0; li < n_moe; li++)
                for (int t = 0; t < T; t++) {
                    const size_t at = ((size_t)li * T + t) * K;
                    const int k = overlap(clean + at, noisy + at, K);
                    *ov++ = (unsigned char)k;
                    ji[(size_t)g * n_moe + li] += jaccard_of(k, K) / T;
                }
        }
        vm_ctx_set_embd_noise(c, 0.0f, 0);
        out->item_tokens[out->n_items++] = T;
        out->n_tokens += T;
        vm_task_input_free(&in);
    }
    if (dist) {
        rc = vm_dist_check(rc, "stability");
        if (rc == 0) rc = gather_stab(out, &ovl, (size_t)n_gamma * n_moe, ds->n);
    }
    if (rc == 0 && out->n_tokens == 0) rc = vm_err("stability: no prompt could be measured");
    long long *changed = rc == 0 ? vm_calloc((size_t)n_gamma, sizeof(long long)) : NULL;
    if (rc == 0 && !changed) rc = -1;
    if (rc == 0) {   // the sums over prompts, gammas, layers and tokens, in that order
        const unsigned char *ov = ovl.p;
        for (int i = 0; i < out->n_items; i++)
            for (int g = 0; g < n_gamma; g++)
                for (int li = 0; li < n_moe; li++)
                    for (int t = 0; t < out->item_tokens[i]; t++) {
                        const double j = jaccard_of(*ov++, K);
                        out->jac[(size_t)g * n_moe + li] += j;
                        changed[g] += j < 1.0;
                    }
        for (int g = 0; g < n_gamma; g++) {
            double s = 0.0;
            for (int li = 0; li < n_moe; li++) {
                out->jac[(size_t)g * n_moe + li] /= (double)out->n_tokens;
                s += out->jac[(size_t)g * n_moe + li];
            }
            out->jac_mean[g] = s / n_moe;
            out->changed[g] = (double)changed[g] / ((double)out->n_tokens * n_moe);
        }
    }
    free(changed); free(ovl.p); free(row); free(clean); free(noisy);
    vm_ctx_free(c);
    if (rc) vm_stability_free(out);
    return rc;
}

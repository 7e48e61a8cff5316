// The fit loop (fit.h): task building, split, layer choice, hidden-state cache, training with
// gradient accumulation and AdamW, validation and early stopping, checkpoints, adapter output.
#include "train/fit.h"
#include "model/lora.h"
#include "train/checkpoint.h"
#include "train/optim.h"
#include "model/train.h"
#include "util/dist.h"
#include "util/err.h"
#include "util/fileio.h"
#include "util/progress.h"
#include "util/hash.h"
#include "util/rng.h"
#include "util/testhook.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void vm_fit_opts_default(vm_fit_opts *o) {
    memset(o, 0, sizeof *o);
    o->kind = "vglr-mf"; o->auto_count = 5; o->auto_gamma = 0.01f; o->auto_prompts = 32;
    o->beta = -1.0f; o->epochs = 3; o->lr = 1e-3f; o->batch = 16; o->val_frac = 0.1f;
    o->patience = 2; o->mode = VM_TASK_LETTER; o->tmpl = VM_CHAT_NONE; o->wd = 0.01f;
    o->warmup_frac = 0.05f; o->progress = -1; o->prior_sd = -1.0f;
    o->swag_rank = 20; o->swag_scale = 1.0f;
}

int vm_fit_split(int n, float val_frac, uint64_t seed, int *order, int *n_val) {
    if (n <= 0) return vm_err("fit: no items to split");
    if (!(val_frac >= 0.0f && val_frac < 1.0f)) return vm_err("fit: validation fraction %g not in [0, 1)", (double)val_frac);
    for (int i = 0; i < n; i++) order[i] = i;
    vm_rng r;
    vm_rng_seed2(&r, seed, VM_FIT_STREAM_SPLIT);
    for (int i = n - 1; i > 0; i--) {   // Fisher-Yates
        const int j = (int)(vm_rng_u64(&r) % (uint64_t)(i + 1));
        const int t = order[i]; order[i] = order[j]; order[j] = t;
    }
    int v = (int)lround(val_frac * n);
    if (val_frac > 0.0f && v < 1 && n >= 2) v = 1;
    if (v > n - 1) v = n - 1;
    *n_val = v;
    return 0;
}

int vm_fit_default_layers(const vm_model *m, int max, int *layers) {
    int n = 0;
    for (int il = m->hp.n_layer - 1; il >= 0 && n < max; il--)
        if (m->layers[il].is_moe) layers[n++] = il;
    for (int i = 0; i < n / 2; i++) { int t = layers[i]; layers[i] = layers[n - 1 - i]; layers[n - 1 - i] = t; }
    return n;
}

// ---------------------------------------------------------------- routing stability

typedef struct sel_rec { int K, T, L; int32_t *sel; } sel_rec;   // sel (L, T, K)

static void rec_trace(void *ud, const vm_trace_ev *ev) {
    sel_rec *r = ud;
    if (strcmp(ev->name, "ffn_moe_topk") || !ev->i || ev->layer < 0 || ev->layer >= r->L || ev->ne != r->K) return;
    for (int t = 0; t < ev->n_tokens; t++) {
        const int p = ev->pos0 + t;
        if (p < 0 || p >= r->T) continue;
        memcpy(r->sel + ((size_t)ev->layer * r->T + p) * r->K, ev->i + (size_t)t * r->K, (size_t)r->K * sizeof(int32_t));
    }
}

// Embedding-noise scale sigma = gamma * mean L2 norm of the n prompts' token embeddings; *Tmax the
// longest prompt.
static int stability_sigma(const vm_model *m, const vm_task_input *ins, int n, float gamma, float *sigma, int *Tmax) {
    const int D = m->hp.n_embd;
    double norm_sum = 0; long n_tok = 0;
    float *row = vm_malloc((size_t)D * sizeof(float));
    if (!row) return -1;
    *Tmax = 0;
    for (int i = 0; i < n; i++) {
        const vm_task_seq *s = &ins[i].seq[0];
        if (s->n > *Tmax) *Tmax = s->n;
        for (int t = 0; t < s->n; t++) {
            vm_dequant_row(m->tok_embd.type, (const char *)m->tok_embd.data + (size_t)s->tokens[t] * m->tok_embd.nb[1], row, D);
            double q = 0;
            for (int d = 0; d < D; d++) q += (double)row[d] * row[d];
            norm_sum += sqrt(q); n_tok++;
        }
    }
    free(row);
    *sigma = (float)(gamma * norm_sum / (double)(n_tok ? n_tok : 1));
    return 0;
}

// The overlap |clean & noisy| of each token's selected experts, per prompt i in [lo, hi), MoE layer
// and token in that order, into inter (one byte each: at most K <= 255 shared experts; checked by
// the caller). 0 or -1.
static int stability_overlaps(const vm_model *m, const vm_task_input *ins, int lo, int hi, float sigma, int Tmax,
                              uint64_t seed, uint8_t *inter) {
    const int L = m->hp.n_layer, K = m->hp.n_expert_used;
    sel_rec clean = { K, Tmax, L, NULL }, noisy = { K, Tmax, L, NULL };
    clean.sel = vm_calloc((size_t)L * Tmax * K, sizeof(int32_t));
    noisy.sel = vm_calloc((size_t)L * Tmax * K, sizeof(int32_t));
    vm_ctx *c = vm_ctx_init(m, Tmax, Tmax);
    int rc = clean.sel && noisy.sel && c ? 0 : -1;
    for (int i = lo; i < hi && !rc; i++) {
        const vm_task_seq *s = &ins[i].seq[0];
        vm_ctx_set_embd_noise(c, 0.0f, 0);
        vm_ctx_set_trace(c, rec_trace, &clean);
        vm_ctx_reset(c);
        if (vm_ctx_eval(c, s->tokens, s->n, NULL)) { rc = -1; break; }
        vm_ctx_set_embd_noise(c, sigma, seed + (uint64_t)i);
        vm_ctx_set_trace(c, rec_trace, &noisy);
        vm_ctx_reset(c);
        if (vm_ctx_eval(c, s->tokens, s->n, NULL)) { rc = -1; break; }
        for (int il = 0; il < L; il++) {
            if (!m->layers[il].is_moe) continue;
            for (int t = 0; t < s->n; t++) {
                const int32_t *a = clean.sel + ((size_t)il * Tmax + t) * K, *b = noisy.sel + ((size_t)il * Tmax + t) * K;
                int n_in = 0;
                for (int x = 0; x < K; x++) for (int y = 0; y < K; y++) n_in += a[x] == b[y];
                *inter++ = (uint8_t)n_in;
            }
        }
    }
    vm_ctx_free(c); free(clean.sel); free(noisy.sel);
    return rc;
}

// Bytes stability_overlaps writes for prompts [lo, hi).
static size_t stability_bytes(const vm_model *m, const vm_task_input *ins, int lo, int hi) {
    int n_moe = 0;
    for (int il = 0; il < m->hp.n_layer; il++) n_moe += m->layers[il].is_moe;
    size_t n = 0;
    for (int i = lo; i < hi; i++) n += (size_t)ins[i].seq[0].n * (size_t)n_moe;
    return n;
}

// jacc[il] = mean over the tokens of the Jaccard index inter / (2K - inter), summed in the order
// stability_overlaps wrote them (prompt, then token, per layer).
static void stability_finish(const vm_model *m, const vm_task_input *ins, int n, const uint8_t *inter, double *jacc) {
    const int L = m->hp.n_layer, K = m->hp.n_expert_used;
    double sum[L];
    long tot = 0;
    for (int il = 0; il < L; il++) sum[il] = 0.0;
    for (int i = 0; i < n; i++) {
        const int T = ins[i].seq[0].n;
        tot += T;
        for (int il = 0; il < L; il++) {
            if (!m->layers[il].is_moe) continue;
            for (int t = 0; t < T; t++, inter++) sum[il] += (double)*inter / (double)(2 * K - *inter);
        }
    }
    for (int il = 0; il < L; il++) if (m->layers[il].is_moe) jacc[il] = sum[il] / (double)tot;
}

int vm_fit_layer_stability(const vm_model *m, const vm_task_input *ins, int n, float gamma,
                           uint64_t seed, double *jacc) {
    const int L = m->hp.n_layer, K = m->hp.n_expert_used;
    for (int il = 0; il < L; il++) jacc[il] = NAN;
    if (n <= 0 || K <= 0) return vm_err("fit: no prompts or no MoE layers to rank");
    if (K > 255) return vm_err("fit: %d experts per token: too many to rank layers", K);
    float sigma;
    int Tmax;
    if (stability_sigma(m, ins, n, gamma, &sigma, &Tmax)) return -1;
    uint8_t *inter = vm_malloc(stability_bytes(m, ins, 0, n) + 1);
    int rc = inter ? stability_overlaps(m, ins, 0, n, sigma, Tmax, seed, inter) : -1;
    if (!rc) stability_finish(m, ins, n, inter, jacc);
    free(inter);
    return rc;
}

// ---------------------------------------------------------------- the router-logit scale

// One token's SD of the frozen router's logits in trained layer layers[i].
typedef struct scale_rec { double sd; int32_t i, pad; } scale_rec;

// The records of the prompts run, in the order the trace meets them (prompt, layer, token). Summed
// per layer in that order afterwards (scale_finish): the additions of summing as they come, so
// prompts split over ranks and gathered in prompt order give the one-process bits.
typedef struct scale_acc { const vm_model *m; const int *layers; int nl; scale_rec *rec; size_t n, cap; int oom; } scale_acc;

static void scale_trace(void *ud, const vm_trace_ev *ev) {
    scale_acc *a = ud;
    if (strcmp(ev->name, "ffn_norm") || !ev->f || ev->layer < 0 || a->oom) return;
    int i = 0;
    while (i < a->nl && a->layers[i] != ev->layer) i++;
    if (i == a->nl) return;
    const vm_router_layer *L = &a->m->layers[ev->layer].rl;
    const int N = L->n_expert;
    float l[N];
    if (a->n + (size_t)ev->n_tokens > a->cap) {
        const size_t cap = (a->n + (size_t)ev->n_tokens) * 2;
        scale_rec *r = realloc(a->rec, cap * sizeof *r);
        if (!r) { a->oom = 1; return; }
        a->rec = r; a->cap = cap;
    }
    for (int t = 0; t < ev->n_tokens; t++) {
        vm_router_logits(L, ev->f + (size_t)t * ev->ne, 1, l);   // l_det = W_r u, whatever routes
        double mean = 0.0, var = 0.0;
        for (int e = 0; e < N; e++) mean += l[e];
        mean /= N;
        for (int e = 0; e < N; e++) var += (l[e] - mean) * (l[e] - mean);
        a->rec[a->n++] = (scale_rec){ .sd = sqrt(var / N), .i = i };
    }
}

// Records of prompts [lo, hi) of ins into a (a->rec malloc'd, caller frees). 0 or -1.
static int scale_records(const vm_model *m, const vm_task_input *ins, int lo, int hi, scale_acc *a) {
    vm_ctx *c = vm_ctx_init(m, m->hp.n_ctx_train, m->hp.n_ctx_train);
    if (!c) return -1;
    vm_ctx_set_trace(c, scale_trace, a);
    int rc = 0;
    for (int i = lo; i < hi && !rc; i++) {
        vm_ctx_reset(c);
        vm_ctx_set_seed(c, (uint64_t)i);
        rc = vm_ctx_eval(c, ins[i].seq[0].tokens, ins[i].seq[0].n, NULL);
    }
    vm_ctx_free(c);
    return rc ? -1 : a->oom ? vm_err("fit: out of memory for the logit-scale records") : 0;
}

// sd[i] = mean of layer i's records, summed in record order.
static int scale_finish(const scale_rec *rec, size_t n, const int *layers, int nl, float *sd) {
    double sum[VM_ADAPTER_MAX_LAYERS] = {0};
    long cnt[VM_ADAPTER_MAX_LAYERS] = {0};
    for (size_t k = 0; k < n; k++) { sum[rec[k].i] += rec[k].sd; cnt[rec[k].i]++; }
    for (int i = 0; i < nl; i++) {
        sd[i] = cnt[i] ? (float)(sum[i] / cnt[i]) : 0.0f;
        if (!(sd[i] > 0.0f) || !isfinite(sd[i]))
            return vm_err("fit: layer %d's router logits have no spread (SD %g over %ld tokens): no scale for the prior",
                          layers[i], (double)sd[i], cnt[i]);
    }
    return 0;
}

int vm_fit_logit_scale(const vm_model *m, const vm_task_input *ins, int n, const int *layers, int nl,
                       float *sd) {
    if (nl < 1 || nl > VM_ADAPTER_MAX_LAYERS) return vm_err("fit: %d layers for the logit scale", nl);
    scale_acc a = { .m = m, .layers = layers, .nl = nl };
    const int rc = scale_records(m, ins, 0, n, &a) || scale_finish(a.rec, a.n, layers, nl, sd) ? -1 : 0;
    free(a.rec);
    return rc ? vm_err_prefix("fit: router-logit scale") : 0;
}

// ---------------------------------------------------------------- the fit

typedef struct fit_ex {
    vm_task_input in;               // in.tree: the rows the example runs as (task.h)
    float *h;                       // cached hidden states entering l0 of the tree's rows (n_rows, D)
    int h_borrowed;                 // h belongs to the caller (vm_fit_opts.cache_h)
} fit_ex;

typedef struct fit_state {
    vm_model *m;
    const vm_fit_opts *o;
    vm_tctx *tc;
    int l0, D, V, T_max;
    fit_ex *ex;
    int n_ex;
    float *h_tmp, *logits, *dlogits;   // (T_max, D), (T_max, V) x2; T_max = the largest tree
    double *lz;                        // (T_max) log-partition of each scored row (its loglik's, reused by the gradient)
    float beta;
    vm_param **params;
    int n_params;
    vm_router **routers;               // the trained ones (n_layers)
    int n_layers;
    int n_router_params;               // params[0 .. n_router_params) are the routers' (LoRA's follow)
    int64_t tokens;
    double sf_base;                    // score-function baseline: the validation NLL of the kept
                                       // parameters (a constant within an epoch, and in the checkpoint)
    // Ranks of a distributed fit (vm_fit_opts.distributed; else rank 0 of 1): this rank runs (and
    // caches) the training items at positions [tr_lo, tr_hi) of tr_idx and the validation items at
    // [va_lo, va_hi) of va_idx, its vm_dist_shard blocks.
    int rank, size, n_tr, tr_lo, tr_hi, va_lo, va_hi;
    size_t n_w;                        // floats in all trained parameters
    float *acc;                        // (n_w) a batch's gradient, summed in batch order
    unsigned char *send;               // (batch, rec_bytes(n_w)) this rank's examples of a batch
} fit_state;

static void set_training(fit_state *s, int on) {
    for (int i = 0; i < s->n_layers; i++) s->routers[i]->training = on;
}

// The score-function coefficient of the coming backward calls, (loss - baseline) * scale: the
// baseline does not depend on this example's samples, so the estimate stays unbiased.
static void set_sf(fit_state *s, double ce, float scale) {
    const float c = isfinite(ce) && isfinite(s->sf_base) ? (float)((ce - s->sf_base) * scale) : 0.0f;
    for (int i = 0; i < s->n_layers; i++) s->routers[i]->sf_coef = c;
}

// Hidden states of example e's tree rows entering l0 (cached, or recomputed with no_cache).
static const float *hidden(fit_state *s, fit_ex *e) {
    if (e->h) return e->h;
    const vm_task_tree *t = &e->in.tree;
    if (vm_model_hidden_tree(s->m, t->tok, &t->view, s->l0, s->h_tmp, NULL)) return NULL;
    return s->h_tmp;
}

// One example: one forward over its tree (every sequence: letter mode's prompt, or the context once
// and each choice's continuation), and when train one backward with gradient scale `scale`.
// Returns the answer cross-entropy in *ce, the regulariser sum over the tree's rows in *reg (each
// row once: a shared context is one set of tokens of the ELBO, method.md §4), probabilities in
// probs. 0 or -1.
static int run_example(fit_state *s, fit_ex *e, int train, float scale, vm_rng *rng, double *ce,
                       double *reg, double *probs) {
    const vm_task_input *in = &e->in;
    const vm_task_tree *t = &in->tree;
    const int V = s->V;
    const float *h = hidden(s, e);
    if (!h) return -1;
    if (vm_tctx_forward_tree(s->tc, h, &t->view, t->out_row, t->n_out, s->logits, rng)) return -1;
    if (train) s->tokens += t->view.n_rows;   // tok/s: rows run per second of training (validation aside)
    *reg = vm_tctx_reg(s->tc);
    if (train) memset(s->dlogits, 0, (size_t)t->n_out * V * sizeof(float));
    if (in->mode == VM_TASK_LETTER) {
        *ce = -vm_task_letter_probs(in, s->logits, probs, train ? s->dlogits : NULL, scale);
    } else {
        double ll[VM_TASK_MAX_SEQ], score[VM_MCQ_MAX_CHOICES];
        vm_task_tree_loglik_lz(in, s->logits, V, ll, s->lz);
        vm_task_choice_scores(in, ll, score);   // pmi: conditional minus unconditional
        *ce = vm_task_choice_softmax(score, in->n_choices, in->answer, probs);
        // d(-log p_y)/d ll_q = p_c - 1[c = y] (negated for pmi's unconditional sequences), at
        // sequence q's scored rows
        for (int q = 0; train && q < in->n_seq; q++)
            vm_task_seq_dlogits(in, q, s->logits + (size_t)t->out0[q] * V, V, s->lz + t->out0[q],
                                s->dlogits + (size_t)t->out0[q] * V, scale * (float)vm_task_seq_coef(in, q, probs));
    }
    if (!train) return 0;
    set_sf(s, *ce, scale);
    return vm_tctx_backward(s->tc, s->dlogits, s->beta * scale, NULL);
}

// Every rank's n bytes at mine, in rank order (the shards are contiguous: item order); *all is
// vm_malloc'd. One process (not distributed, e.g. the demo's workers) never enters MPI.
static int fit_gather(const fit_state *s, const void *mine, size_t n, void **all, size_t *counts) {
    if (s->size > 1) return vm_dist_allgatherv(mine, n, all, counts);
    if (!(*all = vm_malloc(n ? n : 1))) return -1;
    if (n) memcpy(*all, mine, n);
    counts[0] = n;
    return 0;
}

// Validation NLL and accuracy over idx (n): each rank runs its block of items; the per-item values
// are gathered and summed in item order, so every rank gets the one-process numbers bit for bit.
static int validate(fit_state *s, const int *idx, int n, uint64_t seed, double *nll, double *acc) {
    set_training(s, 0);
    int lo = 0, hi = n;
    vm_dist_shard(n, s->rank, s->size, &lo, &hi);
    double probs[VM_MCQ_MAX_CHOICES], ce, reg;
    double *mine = vm_malloc((size_t)(hi - lo + 1) * 2 * sizeof(double));   // (item, {nll, correct})
    if (!mine) return -1;
    for (int i = lo; i < hi; i++) {
        vm_rng r;
        vm_rng_seed2(&r, seed ^ 0x76616cull, (uint64_t)i);
        fit_ex *e = &s->ex[idx[i]];
        if (run_example(s, e, 0, 0, &r, &ce, &reg, probs)) { free(mine); return -1; }
        const double py = probs[e->in.answer];
        int b = 0;
        for (int c = 1; c < e->in.n_choices; c++) if (probs[c] > probs[b]) b = c;
        mine[2 * (i - lo)] = -log(py > 1e-12 ? py : 1e-12);
        mine[2 * (i - lo) + 1] = b == e->in.answer;
    }
    void *all = NULL;
    size_t counts[s->size];
    const int grc = fit_gather(s, mine, (size_t)(hi - lo) * 2 * sizeof(double), &all, counts);
    free(mine);
    if (grc) return -1;
    const double *v = all;   // (n, 2) in item order
    double sn = 0, sa = 0;
    for (int i = 0; i < n; i++) { sn += v[2 * i]; sa += v[2 * i + 1]; }
    free(all);
    *nll = n ? sn / n : NAN; *acc = n ? sa / n : NAN;
    return 0;
}

// An example's record in a batch exchange: its loss terms and tree rows, then its gradient (n_w
// floats, the trained parameters flattened in order).
typedef struct ex_head { double ce, reg, rows; } ex_head;
static size_t rec_bytes(size_t n_w) { return sizeof(ex_head) + n_w * sizeof(float); }

static void zero_grads(fit_state *s) {
    for (int i = 0; i < s->n_params; i++) memset(s->params[i]->g, 0, (size_t)vm_param_numel(s->params[i]) * sizeof(float));
}

// Flattened gradient -> dst (n_w), or dst += the flattened gradient (add; the batch sum, one
// example at a time in batch order).
static void flat_grads(const fit_state *s, float *dst, int add) {
    for (int i = 0; i < s->n_params; i++) {
        const vm_param *p = s->params[i];
        const int64_t n = vm_param_numel(p);
        if (add) for (int64_t j = 0; j < n; j++) dst[j] += p->g[j];
        else memcpy(dst, p->g, (size_t)n * sizeof(float));
        dst += n;
    }
}

static void unflat_grads(fit_state *s, const float *src) {
    for (int i = 0; i < s->n_params; i++) {
        const int64_t n = vm_param_numel(s->params[i]);
        memcpy(s->params[i]->g, src, (size_t)n * sizeof(float));
        src += n;
    }
}

// One batch's gradient into the params' .g (docs/mpi.md): each example's gradient is computed on
// its own (.g zeroed first; the routers' backward adds row by row into .g, so the gradients of
// examples run back to back could not be pulled apart again), then acc = sum over the batch in
// batch order, whichever rank computed each example: the same float additions for any number of
// ranks. ti (bn): training positions; example ti draws from stream (s0, hi | ti). ce, reg (bn)
// receive every example's loss terms, in batch order, on every rank.
static int batch_grad(fit_state *s, const int *tr_idx, const int *ti, int bn, uint64_t s0, uint64_t hi,
                      double *ce, double *reg) {
    double probs[VM_MCQ_MAX_CHOICES];
    memset(s->acc, 0, s->n_w * sizeof(float));
    const size_t rec = rec_bytes(s->n_w);
    size_t n_mine = 0;
    for (int k = 0; k < bn; k++) {
        if (vm_dist_owner(s->n_tr, s->size, ti[k]) != s->rank) continue;
        vm_rng rg;
        vm_rng_seed2(&rg, s0, hi | (uint64_t)ti[k]);
        zero_grads(s);
        if (run_example(s, &s->ex[tr_idx[ti[k]]], 1, 1.0f / bn, &rg, &ce[k], &reg[k], probs)) return -1;
        if (s->size == 1) { flat_grads(s, s->acc, 1); continue; }   // one process: no copies
        unsigned char *out = s->send + n_mine++ * rec;
        const ex_head h = { ce[k], reg[k], s->ex[tr_idx[ti[k]]].in.tree.view.n_rows };
        memcpy(out, &h, sizeof h);
        flat_grads(s, (float *)(out + sizeof h), 0);
    }
    if (s->size > 1) {
        void *all = NULL;
        size_t counts[s->size], next[s->size];   // next[r]: rank r's next record in all
        if (vm_dist_allgatherv(s->send, n_mine * rec, &all, counts)) return -1;
        size_t off = 0;
        for (int q = 0; q < s->size; q++) { next[q] = off; off += counts[q]; }
        for (int k = 0; k < bn; k++) {   // rank q's records are its examples in batch order
            const int q = vm_dist_owner(s->n_tr, s->size, ti[k]);
            const unsigned char *in = (const unsigned char *)all + next[q];
            next[q] += rec;
            ex_head h;
            memcpy(&h, in, sizeof h);
            ce[k] = h.ce; reg[k] = h.reg;
            if (q != s->rank) s->tokens += (int64_t)h.rows;   // tok/s: the job's rows
            const float *g = (const float *)(in + sizeof h);   // 4-byte aligned: records are 24 + 4 n_w bytes
            for (size_t j = 0; j < s->n_w; j++) s->acc[j] += g[j];
        }
        free(all);
    }
    unflat_grads(s, s->acc);
    return 0;
}

// Numerical guard: every gradient and parameter finite (a diverging fit is stopped before the
// optimiser step that would write NaN into the parameters or the next checkpoint).
static int params_finite(const fit_state *s) {
    for (int i = 0; i < s->n_params; i++) {
        const vm_param *p = s->params[i];
        const int64_t n = vm_param_numel(p);
        for (int64_t j = 0; j < n; j++)
            if (!isfinite(p->g[j]) || !isfinite(p->w[j])) return 0;
    }
    return 1;
}

// One-line bar redrawn in place with \r (stderr is a terminal): steps, mean training CE of the
// epoch so far, training tokens/s and the time left. *open marks a line still unterminated, so
// whatever is printed next (epoch summary, interruption, error) starts on a line of its own.
static void progress_bar(int *open, int64_t done, int64_t total, double loss, double tps, double eta) {
    char what[32];
    snprintf(what, sizeof what, "loss %.4f", loss);
    vm_progress_bar(done, total, what, tps, "tok", eta);
    *open = 1;
}

static void progress_end(int *open) {
    if (*open) { fputc('\n', stderr); fflush(stderr); }
    *open = 0;
}

// The collection phase's default constant learning rate: lr_adam / rms(g) of the routers' gradient
// g of its first batch, so that plain SGD's steps start the size AdamW's had at the peak rate (Adam's
// step is ~lr per weight); SGD's raw scale depends on the model and would otherwise leave the
// posterior either negligible or divergent.
static float auto_lr(const fit_state *s, float lr_adam) {
    double ss = 0.0;
    int64_t n = 0;
    for (int i = 0; i < s->n_router_params; i++) {
        const vm_param *p = s->params[i];
        const int64_t m = vm_param_numel(p);
        for (int64_t e = 0; e < m; e++) ss += (double)p->g[e] * p->g[e];
        n += m;
    }
    const double rms = n ? sqrt(ss / (double)n) : 0.0;
    return rms > 0.0 && isfinite(rms) ? (float)(lr_adam / rms) : lr_adam;
}

// The collection phase (fit.h): constant-rate SGD on the routers' parameters from the kept ones, a
// snapshot (ops->collect) every c steps, k snapshots, then ops->finish. The LoRA's gradients are
// dropped: the posterior is over the routers given the fitted rest of the model.
static int collect_phase(fit_state *s, const int *tr_idx, int n_tr, int64_t spe, int quiet, vm_fit_stats *st) {
    const vm_fit_opts *o = s->o;
    const int B = o->batch, k = o->swag_rank;
    const int64_t c = o->swag_every > 0 ? o->swag_every : (spe + 5) / 10 > 0 ? (spe + 5) / 10 : 1;
    float lr = o->swag_lr;   // 0: set from the first batch's gradient below
    const int64_t n_steps = (int64_t)k * c;
    int *eorder = vm_malloc((size_t)n_tr * sizeof(int));
    double *ce = vm_malloc((size_t)B * 2 * sizeof(double)), *reg = ce ? ce + B : NULL;   // (B) each
    if (!eorder || !ce) { free(eorder); free(ce); return -1; }
    int rc = -1;
    set_training(s, 1);
    for (int64_t j = 0; j < n_steps; j++) {
        const int64_t epoch = j / spe;
        if (j % spe == 0) {   // Fisher-Yates of the training items with stream (seed, SWAG + epoch)
            vm_rng er;
            vm_rng_seed2(&er, o->seed, VM_FIT_STREAM_SWAG + (uint64_t)epoch);
            for (int i = 0; i < n_tr; i++) eorder[i] = i;
            for (int i = n_tr - 1; i > 0; i--) {
                const int q = (int)(vm_rng_u64(&er) % (uint64_t)(i + 1));
                const int t = eorder[i]; eorder[i] = eorder[q]; eorder[q] = t;
            }
        }
        const int64_t b0 = (j % spe) * B;
        const int bn = (int)(b0 + B <= n_tr ? B : n_tr - b0);
        int finite = 1;
        if (batch_grad(s, tr_idx, eorder + b0, bn, o->seed ^ VM_FIT_STREAM_SWAG, (uint64_t)epoch << 32, ce, reg)) goto done;
        for (int q = 0; q < bn; q++) finite &= isfinite(ce[q]) && isfinite(reg[q]);
        if (!finite || !params_finite(s)) {
            vm_err("the collection phase diverged at its step %lld: non-finite loss or gradient (try a lower "
                   "--swag-lr)", (long long)j + 1);
            goto done;
        }
        if (j == 0 && !(lr > 0.0f)) {
            lr = auto_lr(s, o->lr);
            if (!quiet)
                fprintf(stderr, "fit: %s collection: %lld SGD steps at lr %g from the kept parameters, a snapshot "
                        "every %lld (%d)\n", o->kind, (long long)n_steps, (double)lr, (long long)c, k);
        }
        for (int i = 0; i < s->n_params; i++) {   // SGD on the routers; the LoRA's gradients dropped
            vm_param *p = s->params[i];
            const int64_t n = vm_param_numel(p);
            if (i < s->n_router_params) for (int64_t e = 0; e < n; e++) p->w[e] -= lr * p->g[e];
            memset(p->g, 0, (size_t)n * sizeof(float));
        }
        if ((j + 1) % c == 0)
            for (int l = 0; l < s->n_layers; l++) if (s->routers[l]->ops->collect(s->routers[l])) goto done;
    }
    for (int l = 0; l < s->n_layers; l++) if (s->routers[l]->ops->finish(s->routers[l])) goto done;
    st->swag_snapshots = k; st->swag_every = (int)c; st->swag_steps = n_steps; st->swag_lr = lr;
    rc = 0;
done:
    set_training(s, 0);
    free(eorder); free(ce);
    return rc;
}

// A router's W_r copy (map.w_r, swag.w_r, ...): its parameter named "<kind>.w_r", or NULL.
static vm_param *w_r_param(vm_router *r) {
    for (int j = 0; j < r->n_params; j++) {
        const char *dot = strchr(r->params[j].name, '.');
        if (dot && !strcmp(dot, ".w_r") && !r->params[j].frozen) return &r->params[j];
    }
    return NULL;
}

// map_from: installs the map adapter at path (checked against the model by vm_adapter_apply), checks
// it covers exactly `layers`, and copies each layer's W_r into w (nl x per floats).
static int read_map_from(vm_model *m, const char *path, const int *layers, int nl, float *w, size_t per) {
    vm_adapter_info ai;
    if (vm_adapter_apply_ex(m, path, 0, &ai)) return vm_err_prefix("fit: map_from");
    if (strcmp(ai.kind, "map")) return vm_err("fit: map_from %s is a '%s' adapter, not map", path, ai.kind);
    if (ai.lora_rank > 0) return vm_err("fit: map_from %s carries a LoRA (not supported)", path);
    int same = ai.n_layers == nl;
    for (int i = 0; same && i < nl; i++) same = ai.layers[i] == layers[i];
    if (!same) return vm_err("fit: map_from %s covers other layers than the fit's", path);
    for (int i = 0; i < nl; i++) {
        vm_param *p = w_r_param(m->routers[layers[i]]);
        if (!p || (size_t)vm_param_numel(p) != per) return vm_err("fit: map_from %s: layer %d has no W_r of %zu values", path, layers[i], per);
        memcpy(w + (size_t)i * per, p->w, per * sizeof(float));
    }
    return 0;
}

// Everything a resumed run must agree on.
static uint64_t fingerprint(const vm_model *m, const vm_fit_opts *o, const int *layers, int nl, int n_ex,
                            uint64_t data_id) {
    uint64_t h = vm_model_router_checksum(m);
    h = vm_fnv1a(h, &data_id, sizeof data_id);   // the items' contents, not only their count
    h = vm_fnv1a(h, o->kind, strlen(o->kind));
    h = vm_fnv1a(h, layers, (size_t)nl * sizeof(int));
    const double nums[] = { o->beta, o->samples, o->hidden, o->members, o->epochs, o->lr, o->batch,
                            (double)o->seed, o->val_frac, o->patience, o->mode, o->tmpl, o->wd,
                            o->warmup_frac, n_ex, o->max_tokens };
    h = vm_fnv1a(h, nums, sizeof nums);
    h = vm_fnv1a(h, &o->prior_sd, sizeof o->prior_sd);   // the measured sigma_p follow from model and items
    const vm_router_ops *ops = vm_router_kind_ops(o->kind);
    if (ops && ops->collect) {   // the collection phase follows the loop the checkpoint is of
        const double sw[] = { o->swag_rank, o->swag_every, o->swag_lr, o->swag_scale };
        h = vm_fnv1a(h, sw, sizeof sw);
    }
    if (o->lora_rank > 0) {
        const double lo[] = { o->lora_rank, o->lora_alpha };
        h = vm_fnv1a(h, lo, sizeof lo);
        h = vm_fnv1a(h, o->lora_layers, (size_t)o->n_lora * sizeof(int));
    }
    return o->system ? vm_fnv1a(h, o->system, strlen(o->system)) : h;
}

// ---- vm_fit_run, step by step. What the steps share lives in one fit_run; each step returns 0, or
// -1 with an error (vm_fit_run then adds "fit: " and frees everything in one place).
typedef struct fit_run {
    fit_state s;
    vm_model *m;
    const vm_fit_opts *o;
    const vm_dataset *ds;
    const char *out_path;
    vm_fit_stats *st;
    vm_router_opts ro;                 // the options every trained router is created with
    int quiet, bar, bar_open;          // bar_open: a bar line is on screen without its newline
    int n_items, *order, *tr_idx, *va_idx, n_tr, n_va;
    int layers[VM_ADAPTER_MAX_LAYERS], nl;
    int lora_layers[VM_ADAPTER_MAX_LAYERS], n_lora;
    vm_adamw opt;
    float *best;                       // the kept (best validation) parameters, all flattened
    float *map_w;                      // map_from: the MAP phase's W_r per layer (nl x D N)
    size_t n_w;
    int *eorder;                       // the epoch's example order
    double *bce;                       // (2 batch) a step's examples' ce, then reg
    int64_t spe, total;                // steps per epoch, in all
    char ckpt_buf[4096];
    const char *ckpt;
    vm_ckpt_state cs;
    double t0, t_train;                // t_train: training forward/backward only
    int64_t step0;
} fit_run;

// Options checked before any work; the router options the fit creates its routers with. A kind
// without parameters cannot be fitted: said here, before the task is built.
static int fit_check(fit_run *r) {
    const vm_model *m = r->m;
    const vm_fit_opts *o = r->o;
    const vm_hparams *hp = &m->hp;
    if (vm_output_check(r->out_path)) return vm_err_prefix("fit");   // before the work, not after it
    if (!r->ds || r->ds->n == 0) return vm_err("fit: no training items");
    if (r->ds->n > 10000000) return vm_err("fit: too many items (%zu)", r->ds->n);
    if (hp->n_expert <= 0) return vm_err("fit: the model has no MoE layers");
    if (o->epochs < 1 || o->batch < 1 || !(o->lr > 0) || o->patience < 1)
        return vm_err("fit: bad options (epochs %d, batch %d, lr %g, patience %d)", o->epochs, o->batch, (double)o->lr, o->patience);
    if (o->map_from) {   // the MAP phase is of swag only, and has no checkpoint to resume
        const vm_router_ops *kops = vm_router_kind_ops(o->kind);
        if (!kops || !kops->collect) return vm_err("fit: map_from applies to kinds with a collection phase (swag), not '%s'", o->kind);
        if (o->resume) return vm_err("fit: map_from runs no MAP loop: nothing to resume");
        if (o->lora_rank > 0) return vm_err("fit: map_from with a LoRA is not supported (the map adapter's LoRA would be dropped)");
    }
    int first_moe = -1;
    for (int il = 0; il < hp->n_layer && first_moe < 0; il++) if (m->layers[il].is_moe) first_moe = il;
    vm_router_opts *ro = &r->ro;
    vm_router_opts_default(ro);
    ro->seed = o->seed; ro->beta = o->beta;
    if (o->samples > 0) ro->samples = o->samples;
    if (o->hidden > 0) ro->hidden = o->hidden;
    if (o->members > 0) ro->members = o->members;
    ro->swag_rank = o->swag_rank; ro->swag_scale = o->swag_scale;
    vm_router *probe = vm_router_create(o->kind, &m->layers[first_moe].rl, ro);
    if (!probe) return vm_err_prefix("fit");
    const int trainable = (probe->ops->flags & VM_ROUTER_TRAINABLE) != 0;
    vm_router_free(probe);
    if (!trainable) {
        char list[256];
        return vm_err("fit: router kind '%s' has no trainable parameters (fit trains %s)", o->kind,
                      vm_router_kind_list(VM_ROUTER_TRAINABLE, list, sizeof list));
    }
    return 0;
}

// Task inputs and the split (by item index); items that cannot be built are skipped and counted.
static int fit_examples(fit_run *r, const vm_tokenizer *tok) {
    const vm_fit_opts *o = r->o;
    vm_fit_stats *st = r->st;
    fit_state *s = &r->s;
    const int n_items = r->n_items;
    int n_val_items = 0;
    if (!r->order || vm_fit_split(n_items, o->val_frac, o->seed, r->order, &n_val_items)) return -1;
    vm_task task;
    vm_task_init(&task, tok, o->mode, o->tmpl, o->max_tokens > 0 ? o->max_tokens : r->m->hp.n_ctx_train);
    task.system = o->system;
    s->ex = vm_calloc((size_t)n_items, sizeof *s->ex);
    r->tr_idx = vm_malloc((size_t)n_items * sizeof(int));
    r->va_idx = vm_malloc((size_t)n_items * sizeof(int));
    if (!s->ex || !r->tr_idx || !r->va_idx) return -1;
    for (int k = 0; k < n_items; k++) {
        const int it = r->order[k];
        if (vm_task_build(&task, &r->ds->items[it], &s->ex[it].in)) {
            if (!r->quiet && st->n_skipped < 3) fprintf(stderr, "fit: skipping: %s\n", vm_errmsg());
            st->n_skipped++;
            continue;
        }
        if (k < n_val_items) r->va_idx[r->n_va++] = it; else r->tr_idx[r->n_tr++] = it;
        if (s->ex[it].in.tree.view.n_rows > s->T_max) s->T_max = s->ex[it].in.tree.view.n_rows;
    }
    s->n_ex = n_items;
    st->n_items = n_items; st->n_train = r->n_tr; st->n_val = r->n_va;
    if (r->n_tr == 0) return vm_err("fit: no usable training items (%d skipped)", st->n_skipped);
    return 0;
}

// vm_fit_layer_stability over the ranks: each runs its block of the n prompts; the overlaps are
// gathered in rank (= prompt) order and summed as one process sums them.
static int fit_layer_stability_dist(const fit_state *s, const vm_task_input *ins, int n, float gamma, double *jacc) {
    const vm_model *m = s->m;
    const int K = m->hp.n_expert_used;
    for (int il = 0; il < m->hp.n_layer; il++) jacc[il] = NAN;
    if (n <= 0 || K <= 0) return vm_err("fit: no prompts or no MoE layers to rank");
    if (K > 255) return vm_err("fit: %d experts per token: too many to rank layers", K);
    float sigma;
    int Tmax, lo, hi;
    if (stability_sigma(m, ins, n, gamma, &sigma, &Tmax)) return -1;   // over every prompt: cheap
    vm_dist_shard(n, s->rank, s->size, &lo, &hi);
    const size_t nb = stability_bytes(m, ins, lo, hi);
    uint8_t *mine = vm_malloc(nb + 1);
    void *all = NULL;
    size_t counts[s->size];
    int rc = !mine || stability_overlaps(m, ins, lo, hi, sigma, Tmax, s->o->seed, mine) ||
             fit_gather(s, mine, nb, &all, counts) ? -1 : 0;
    if (!rc) stability_finish(m, ins, n, all, jacc);
    free(mine); free(all);
    return rc;
}

// --layers auto: the auto_count layers least stable under embedding noise (method.md §5.4), ascending.
static int fit_layers_auto(fit_run *r) {
    const vm_fit_opts *o = r->o;
    const vm_hparams *hp = &r->m->hp;
    const int n_tr = r->n_tr;
    const int np = n_tr < (o->auto_prompts > 0 ? o->auto_prompts : 32) ? n_tr : (o->auto_prompts > 0 ? o->auto_prompts : 32);
    vm_task_input *ins = vm_malloc((size_t)np * sizeof *ins);
    double *jac = vm_malloc((size_t)hp->n_layer * sizeof(double));
    if (!ins || !jac) { free(ins); free(jac); return -1; }
    for (int i = 0; i < np; i++) ins[i] = r->s.ex[r->tr_idx[i]].in;
    const float gamma = o->auto_gamma > 0 ? o->auto_gamma : 0.01f;
    int r2 = r->s.size > 1 ? fit_layer_stability_dist(&r->s, ins, np, gamma, jac)
                           : vm_fit_layer_stability(r->m, ins, np, gamma, o->seed, jac);
    free(ins);
    if (r2) { free(jac); return -1; }
    const int want = o->auto_count > 0 ? o->auto_count : 5;
    unsigned char *taken = vm_calloc((size_t)hp->n_layer, 1);
    if (!taken) { free(jac); return -1; }
    int *layers = r->layers, nl = 0;
    for (int k = 0; k < want; k++) {   // least stable first; ties: the higher layer
        int b = -1;
        for (int il = 0; il < hp->n_layer; il++)
            if (!isnan(jac[il]) && !taken[il] && (b < 0 || jac[il] <= jac[b])) b = il;
        if (b < 0) break;
        taken[b] = 1; layers[nl++] = b;
    }
    for (int il = 0; il < hp->n_layer && il < VM_ADAPTER_MAX_LAYERS; il++) r->st->jaccard[il] = jac[il];
    free(taken); free(jac);
    for (int i = 1; i < nl; i++) for (int j = i; j > 0 && layers[j] < layers[j - 1]; j--) {
        int t = layers[j]; layers[j] = layers[j - 1]; layers[j - 1] = t;
    }
    r->nl = nl;
    return 0;
}

// The trained layers (auto, given, or the last 5 MoE layers) and the LoRA's (default: the
// routers'); the lowest of them, l0, bounds the cached part of the network.
static int fit_layers(fit_run *r) {
    const vm_fit_opts *o = r->o;
    const vm_model *m = r->m;
    const vm_hparams *hp = &m->hp;
    int *layers = r->layers;
    if (o->layers_auto) {
        if (fit_layers_auto(r)) return -1;
    } else if (o->n_layers > 0) {
        r->nl = o->n_layers;
        for (int i = 0; i < r->nl; i++) {
            layers[i] = o->layers[i];
            if (layers[i] < 0 || layers[i] >= hp->n_layer || !m->layers[layers[i]].is_moe)
                return vm_err("fit: layer %d is not a MoE layer of this model (%d layers)", layers[i], hp->n_layer);
            if (i && layers[i] <= layers[i - 1]) return vm_err("fit: layers must be ascending and distinct");
        }
    } else {
        r->nl = vm_fit_default_layers(m, 5, layers);
    }
    r->st->n_layers = r->nl;
    memcpy(r->st->layers, layers, (size_t)r->nl * sizeof(int));
    r->s.l0 = layers[0];
    if (o->lora_rank > 0) {
        r->n_lora = o->n_lora > 0 ? o->n_lora : r->nl;
        for (int i = 0; i < r->n_lora; i++) {
            r->lora_layers[i] = o->n_lora > 0 ? o->lora_layers[i] : layers[i];
            if (r->lora_layers[i] < 0 || r->lora_layers[i] >= hp->n_layer)
                return vm_err("fit: LoRA layer %d out of range (%d layers)", r->lora_layers[i], hp->n_layer);
            if (i && r->lora_layers[i] <= r->lora_layers[i - 1]) return vm_err("fit: LoRA layers must be ascending and distinct");
        }
        if (r->lora_layers[0] < r->s.l0) r->s.l0 = r->lora_layers[0];
    }
    r->st->l0 = r->s.l0;
    return 0;
}

// vm_fit_logit_scale over the ranks: each runs its block of the n prompts, the records are gathered
// in rank (= prompt) order and summed as one process sums them.
static int fit_logit_scale_dist(const fit_state *s, const vm_task_input *ins, int n, const int *layers, int nl,
                                float *sd) {
    int lo, hi;
    vm_dist_shard(n, s->rank, s->size, &lo, &hi);
    scale_acc a = { .m = s->m, .layers = layers, .nl = nl };
    void *all = NULL;
    size_t counts[s->size], tot = 0;
    int rc = scale_records(s->m, ins, lo, hi, &a) || fit_gather(s, a.rec, a.n * sizeof *a.rec, &all, counts) ? -1 : 0;
    for (int q = 0; q < s->size && !rc; q++) tot += counts[q];
    if (!rc) rc = scale_finish(all, tot / sizeof *a.rec, layers, nl, sd);
    free(a.rec); free(all);
    return rc ? vm_err_prefix("fit: router-logit scale") : 0;
}

// The prior's scale per layer, measured on (up to 64) training prompts with the frozen
// (deterministic) routers in the trained layers -- whatever the model held there before -- and
// the model's routers elsewhere; then the fresh routers, the LoRA, the trained parameters (frozen
// constants such as the prior's scale are not trained) and AdamW over them.
static int fit_routers(fit_run *r) {
    const vm_fit_opts *o = r->o;
    vm_model *m = r->m;
    fit_state *s = &r->s;
    const int nl = r->nl, *layers = r->layers;
    float sd[VM_ADAPTER_MAX_LAYERS];
    for (int i = 0; i < nl; i++) sd[i] = o->prior_sd > 0 ? o->prior_sd : 0.0f;
    if (o->prior_sd < 0) {
        if (vm_model_set_routers(m, "deterministic", layers, nl, NULL)) return -1;
        const int np = r->n_tr < 64 ? r->n_tr : 64;
        vm_task_input *ins = vm_malloc((size_t)np * sizeof *ins);
        if (!ins) return -1;
        for (int i = 0; i < np; i++) ins[i] = s->ex[r->tr_idx[i]].in;
        const int r2 = s->size > 1 ? fit_logit_scale_dist(s, ins, np, layers, nl, sd) : vm_fit_logit_scale(m, ins, np, layers, nl, sd);
        free(ins);
        if (r2) return -1;
    }
    memcpy(r->st->prior_sd, sd, (size_t)nl * sizeof(float));

    // map_from: the finished MAP phase's W_r per layer (installed, read, then replaced below)
    const size_t per = (size_t)m->hp.n_embd * m->hp.n_expert;
    if (o->map_from) {
        if (!(r->map_w = vm_malloc((size_t)nl * per * sizeof(float)))) return -1;
        if (read_map_from(m, o->map_from, layers, nl, r->map_w, per)) return -1;
    }

    s->routers = vm_calloc((size_t)nl, sizeof *s->routers);
    vm_router_opts *rl = vm_calloc((size_t)nl, sizeof *rl);   // each layer's prior scale
    for (int i = 0; rl && i < nl; i++) { rl[i] = r->ro; rl[i].prior_sd = sd[i]; }
    const int set_rc = !s->routers || !rl ? -1 : vm_model_set_routers_each(m, o->kind, layers, nl, rl);
    free(rl);
    if (set_rc) return -1;
    for (int i = 0; i < nl; i++) {
        vm_router *rt = m->routers[layers[i]];
        s->routers[i] = rt; s->n_layers = i + 1;
        for (int j = 0; j < rt->n_params; j++) s->n_params += !rt->params[j].frozen;
        if (r->map_w) {   // the iterate starts where the MAP phase ended
            vm_param *w = w_r_param(rt);
            if (!w || (size_t)vm_param_numel(w) != per)
                return vm_err("fit: router kind '%s' has no W_r to start from %s", o->kind, o->map_from);
            memcpy(w->w, r->map_w + (size_t)i * per, (size_t)vm_param_numel(w) * sizeof(float));
        }
    }
    s->beta = s->routers[0]->beta;
    for (int i = 0; i < r->n_lora; i++) {
        const float alpha = o->lora_alpha > 0 ? o->lora_alpha : (float)o->lora_rank;
        vm_lora *lo = vm_lora_create(m, r->lora_layers[i], o->lora_rank, alpha, o->seed);
        if (!lo || vm_model_set_lora(m, r->lora_layers[i], lo)) return -1;
        s->n_params += 2 * VM_LORA_COUNT;
    }
    s->params = vm_calloc((size_t)s->n_params, sizeof *s->params);
    unsigned char *decay = vm_calloc((size_t)s->n_params, 1);
    if (!s->params || !decay) { free(decay); return -1; }
    const int wd_ok = strcmp(o->kind, "map") && strcmp(o->kind, "ensemble") && strcmp(o->kind, "swag");
    size_t n_w = 0;
    int np = 0;
    for (int i = 0; i < nl; i++)
        for (int j = 0; j < s->routers[i]->n_params; j++) {
            if (s->routers[i]->params[j].frozen) continue;
            s->params[np] = &s->routers[i]->params[j];
            decay[np] = wd_ok && s->params[np]->n_dims == 2;
            n_w += (size_t)vm_param_numel(s->params[np]);
            np++;
        }
    s->n_router_params = np;
    for (int i = 0; i < r->n_lora; i++)
        for (int j = 0; j < 2 * VM_LORA_COUNT; j++, np++) {
            s->params[np] = &m->loras[r->lora_layers[i]]->p[j];
            decay[np] = 1;   // towards a zero delta: the base model
            n_w += (size_t)vm_param_numel(s->params[np]);
        }
    int orc = vm_adamw_init(&r->opt, s->params, decay, s->n_params, o->wd);
    free(decay);
    r->n_w = n_w;
    if (orc || !(r->best = vm_malloc(n_w * sizeof(float)))) return -1;
    return 0;
}

// Whether this rank runs entry k of the training positions followed by the validation positions.
static int runs_here(const fit_state *s, int k, int n_tr) {
    return k < n_tr ? k >= s->tr_lo && k < s->tr_hi : k - n_tr >= s->va_lo && k - n_tr < s->va_hi;
}

// Buffers and the hidden-state cache: one prefix per item, its tree's rows (the shared context
// once), computed here or borrowed from the caller (vm_fit_opts.cache_h).
static int fit_cache(fit_run *r) {
    const vm_fit_opts *o = r->o;
    const vm_hparams *hp = &r->m->hp;
    fit_state *s = &r->s;
    s->D = hp->n_embd; s->V = hp->n_vocab;
    if (!(s->tc = vm_tctx_init(r->m, s->l0, s->T_max))) return -1;
    s->h_tmp = vm_malloc((size_t)s->T_max * s->D * sizeof(float));
    s->logits = vm_malloc((size_t)s->T_max * s->V * sizeof(float));
    s->dlogits = vm_malloc((size_t)s->T_max * s->V * sizeof(float));
    s->lz = vm_malloc((size_t)s->T_max * sizeof(double));
    if (!s->h_tmp || !s->logits || !s->dlogits || !s->lz) return -1;
    s->n_tr = r->n_tr; s->n_w = r->n_w;
    vm_dist_shard(r->n_tr, s->rank, s->size, &s->tr_lo, &s->tr_hi);
    vm_dist_shard(r->n_va, s->rank, s->size, &s->va_lo, &s->va_hi);
    if (!(s->acc = vm_malloc(s->n_w * sizeof(float)))) return -1;
    if (s->size > 1 && !(s->send = vm_malloc((size_t)o->batch * rec_bytes(s->n_w)))) return -1;
    if (o->no_cache) return 0;
    const int shared = o->cache_h && o->cache_l0 == s->l0;
    for (int k = 0; k < r->n_tr + r->n_va; k++) {
        if (!runs_here(s, k, r->n_tr)) continue;   // another rank runs it
        const int item = k < r->n_tr ? r->tr_idx[k] : r->va_idx[k - r->n_tr];
        fit_ex *e = &s->ex[item];
        vm_test_kill_point("fit-cache");   // tests: a kill during the cache build
        const vm_task_tree *t = &e->in.tree;
        if (shared && item < o->cache_n && o->cache_h[item]) {   // the caller's prefix
            if (!o->cache_rows || o->cache_rows[item] != t->view.n_rows)
                return vm_err("fit: the shared prefix of item %d has %d rows, its tree %d", item,
                              o->cache_rows ? o->cache_rows[item] : -1, t->view.n_rows);
            e->h = (float *)o->cache_h[item];
            e->h_borrowed = 1;
            continue;
        }
        if (!(e->h = vm_malloc((size_t)t->view.n_rows * s->D * sizeof(float)))) return -1;
        if (vm_model_hidden_tree(r->m, t->tok, &t->view, s->l0, e->h, NULL)) return -1;
    }
    return 0;
}

// params -> best (keep) or best -> params (restore), flattened in parameter order.
static void fit_copy_best(fit_run *r, int keep) {
    const fit_state *s = &r->s;
    for (int i = 0, off = 0; i < s->n_params; i++) {
        const size_t n = (size_t)vm_param_numel(s->params[i]) * sizeof(float);
        if (keep) memcpy(r->best + off, s->params[i]->w, n);
        else memcpy(s->params[i]->w, r->best + off, n);
        off += (int)vm_param_numel(s->params[i]);
    }
}

// The state to train from: the checkpoint when resuming, else the initial parameters validated.
static int fit_start(fit_run *r) {
    const vm_fit_opts *o = r->o;
    vm_fit_stats *st = r->st;
    fit_state *s = &r->s;
    vm_ckpt_state *cs = &r->cs;
    r->spe = (r->n_tr + o->batch - 1) / o->batch;
    r->total = o->map_from ? 0 : r->spe * o->epochs;   // map_from: no MAP loop
    st->total_steps = r->total;
    r->ckpt = o->ckpt_path;
    if (!r->ckpt) { snprintf(r->ckpt_buf, sizeof r->ckpt_buf, "%s.ckpt", r->out_path); r->ckpt = r->ckpt_buf; }
    *cs = (vm_ckpt_state){ .best_val = INFINITY, .best_epoch = 0 };
    cs->fingerprint = fingerprint(r->m, o, r->layers, r->nl, r->n_items, vm_dataset_fingerprint(r->ds));
    if (s->size > 1 && vm_dist_same_u64(cs->fingerprint, "the fit's options (checkpoint fingerprint)")) return -1;
    int have_ckpt = 0;
    if (o->resume && access(r->ckpt, F_OK) == 0) {
        const vm_ckpt_expect ex = { .total_steps = r->total, .steps_per_epoch = r->spe, .batch = o->batch,
                                    .n_train = r->n_tr, .n_val = r->n_va, .patience = o->patience };
        if (vm_ckpt_read(r->ckpt, cs, &r->opt, r->best, r->n_w, &ex)) return -1;
        have_ckpt = 1; st->resumed = 1;
        if (!r->quiet) fprintf(stderr, "fit: resuming from %s at step %lld/%lld\n", r->ckpt, (long long)cs->step, (long long)r->total);
    }
    if (!have_ckpt) {
        if (validate(s, r->va_idx, r->n_va, o->seed, &cs->val_init, &cs->acc_init)) return -1;
        cs->best_val = r->n_va ? cs->val_init : INFINITY; cs->best_acc = cs->acc_init; cs->best_epoch = 0;
        fit_copy_best(r, 1);
    }
    st->val_nll_init = cs->val_init; st->val_acc_init = cs->acc_init;
    // the score-function baseline: the kept parameters' validation NLL (chance level without one)
    s->sf_base = isfinite(cs->best_val) ? cs->best_val : log((double)(s->ex[r->tr_idx[0]].in.n_choices > 1 ? s->ex[r->tr_idx[0]].in.n_choices : 2));
    if (!r->quiet)
        fprintf(stderr, "fit: %s on layers %d..%d (%d), %d train / %d val items (%d skipped), %lld steps of %d, "
                "val nll %.4f acc %.3f at start\n", o->kind, r->layers[0], r->layers[r->nl - 1], r->nl, r->n_tr, r->n_va,
                st->n_skipped, (long long)r->total, o->batch, cs->val_init, cs->acc_init);
    return 0;
}

// A step's examples were not all finite: keep the best parameters (keep_best_on_diverge: *stop set)
// or fail naming the step, before the update either way.
static int fit_diverged(fit_run *r, int epoch, int *stop) {
    vm_ckpt_state *cs = &r->cs;
    progress_end(&r->bar_open);
    if (r->o->keep_best_on_diverge) {   // the parameters are untouched by this step's update
        r->st->diverged_step = cs->step + 1;
        if (!r->quiet)
            fprintf(stderr, "fit: diverged at step %lld (epoch %d): non-finite loss or gradient; the adapter "
                    "keeps the best parameters so far (epoch %d)\n", (long long)cs->step + 1, epoch + 1,
                    cs->best_epoch);
        *stop = 1;
        return 0;
    }
    if (access(r->ckpt, F_OK) == 0)
        return vm_err("training diverged at step %lld (epoch %d): non-finite loss or gradient; stopped "
                      "before the update, %s keeps the last good state (try a lower --lr)",
                      (long long)cs->step + 1, epoch + 1, r->ckpt);
    return vm_err("training diverged at step %lld (epoch %d): non-finite loss or gradient; stopped "
                  "before the update, no checkpoint written yet (try a lower --lr)",
                  (long long)cs->step + 1, epoch + 1);
}

// One optimiser step: the batch's examples accumulate their gradients, then AdamW. *stop is set
// when a diverged step ends training (keep_best_on_diverge).
static int fit_step(fit_run *r, int epoch, int *stop) {
    const vm_fit_opts *o = r->o;
    fit_state *s = &r->s;
    vm_ckpt_state *cs = &r->cs;
    const int64_t b0 = (cs->step % r->spe) * o->batch;
    const int bn = (int)(b0 + o->batch <= r->n_tr ? o->batch : r->n_tr - b0);
    const double ts = vm_now_s();
    set_training(s, 1);
    int finite = 1;
    double *ce = r->bce, *reg = r->bce + o->batch;
    if (batch_grad(s, r->tr_idx, r->eorder + b0, bn, o->seed, (uint64_t)(epoch + 1) << 32, ce, reg)) return -1;
    for (int k = 0; k < bn; k++) {   // the epoch's sums in batch order, as on one process
        cs->ep_ce += ce[k]; cs->ep_obj += ce[k] + s->beta * reg[k]; cs->ep_n++;
        finite &= isfinite(ce[k]) && isfinite(reg[k]);
    }
    if (!finite || !params_finite(s)) return fit_diverged(r, epoch, stop);
    vm_adamw_step(&r->opt, vm_lr_schedule(o->lr, cs->step, r->total, o->warmup_frac));
    cs->step++;
    vm_test_kill_point("fit-step");   // tests: a kill between a step and its checkpoint
    r->t_train += vm_now_s() - ts;
    if (r->bar && !r->quiet) {
        const double tps = r->t_train > 0 ? s->tokens / r->t_train : 0;
        const double eta = (vm_now_s() - r->t0) / (double)(cs->step - r->step0) * (double)(r->total - cs->step);
        progress_bar(&r->bar_open, cs->step, r->total, cs->ep_n ? cs->ep_ce / cs->ep_n : 0, tps, eta);
    }
    return 0;
}

// An epoch's end: its mean loss, validation, the kept parameters and early stopping.
static int fit_epoch_end(fit_run *r, int epoch) {
    const vm_fit_opts *o = r->o;
    fit_state *s = &r->s;
    vm_ckpt_state *cs = &r->cs;
    const double ce_mean = cs->ep_n ? cs->ep_ce / cs->ep_n : NAN;
    if (cs->epochs_run == 0) cs->ce_first = ce_mean;
    cs->ce_last = ce_mean;
    cs->epochs_run++;
    double vn = NAN, va = NAN;
    if (validate(s, r->va_idx, r->n_va, o->seed, &vn, &va)) return -1;
    if (r->n_va == 0 || vn < cs->best_val) {
        cs->best_val = r->n_va ? vn : cs->best_val; cs->best_acc = va; cs->best_epoch = epoch + 1; cs->bad = 0;
        fit_copy_best(r, 1);
    } else if (++cs->bad >= o->patience) {
        cs->stopped = 1;
    }
    if (!r->quiet) {
        progress_end(&r->bar_open);
        fprintf(stderr, "epoch %d/%d: train ce %.4f (objective %.4f), val nll %.4f acc %.3f%s, %.0f tok/s\n",
                epoch + 1, o->epochs, ce_mean, cs->ep_n ? cs->ep_obj / cs->ep_n : NAN, vn, va,
                cs->stopped ? " (early stop)" : "", r->t_train > 0 ? s->tokens / r->t_train : 0);
    }
    cs->ep_ce = cs->ep_obj = 0; cs->ep_n = 0;
    if (isfinite(cs->best_val)) s->sf_base = cs->best_val;
    return 0;
}

// The training loop: epochs of shuffled training items, a step per batch, validation at each
// epoch's end, checkpoints. Returns 0, 1 when stopped by stop_after (checkpoint written), or -1.
static int fit_train(fit_run *r) {
    const vm_fit_opts *o = r->o;
    vm_ckpt_state *cs = &r->cs;
    const int n_tr = r->n_tr;
    if (!(r->eorder = vm_malloc((size_t)n_tr * sizeof(int))) || !(r->bce = vm_malloc((size_t)o->batch * 2 * sizeof(double)))) return -1;
    r->t0 = vm_now_s(); r->t_train = 0;
    r->step0 = cs->step;
    int stop = cs->stopped;
    while (!stop && cs->step < r->total) {
        const int epoch = (int)(cs->step / r->spe);
        // epoch order: Fisher-Yates of the training items with stream (seed, 1000 + epoch)
        vm_rng er;
        vm_rng_seed2(&er, o->seed, 1000 + (uint64_t)epoch);
        for (int i = 0; i < n_tr; i++) r->eorder[i] = i;
        for (int i = n_tr - 1; i > 0; i--) {
            const int j = (int)(vm_rng_u64(&er) % (uint64_t)(i + 1));
            const int t = r->eorder[i]; r->eorder[i] = r->eorder[j]; r->eorder[j] = t;
        }
        while (cs->step < r->total && cs->step / r->spe == epoch) {
            if (fit_step(r, epoch, &stop)) return -1;
            if (stop) break;
            const int epoch_end = cs->step % r->spe == 0 || cs->step == r->total;
            if (epoch_end) {
                if (fit_epoch_end(r, epoch)) return -1;
                stop = cs->stopped;
            }
            const int interrupt = o->stop_after > 0 && cs->step >= o->stop_after && cs->step < r->total && !stop;
            if (epoch_end || interrupt || (o->ckpt_every > 0 && cs->step % o->ckpt_every == 0))
                if (r->s.rank == 0 && vm_ckpt_write(r->ckpt, cs, &r->opt, r->best, r->n_w)) return -1;   // every rank holds the same state
            if (interrupt) {
                r->st->interrupted = 1;
                progress_end(&r->bar_open);
                if (!r->quiet) fprintf(stderr, "fit: stopped after %lld steps (checkpoint %s)\n", (long long)cs->step, r->ckpt);
                return 1;
            }
        }
    }
    return 0;
}

// The best parameters back in the routers, the collection phase (swag), the adapter.
static int fit_finish(fit_run *r) {
    const vm_fit_opts *o = r->o;
    fit_state *s = &r->s;
    vm_fit_stats *st = r->st;
    fit_copy_best(r, 0);
    if (s->routers[0]->ops->collect) {
        if (collect_phase(s, r->tr_idx, r->n_tr, r->spe, r->quiet, st)) return -1;
        if (validate(s, r->va_idx, r->n_va, o->seed, &st->swag_val_nll, &st->swag_val_acc)) return -1;
        if (!r->quiet && r->n_va)
            fprintf(stderr, "fit: %s posterior from %d snapshots: val nll %.4f acc %.3f\n", o->kind,
                    st->swag_snapshots, st->swag_val_nll, st->swag_val_acc);
    }
    set_training(s, 0);
    vm_adapter_info ai;
    memset(&ai, 0, sizeof ai);
    snprintf(ai.kind, sizeof ai.kind, "%s", o->kind);
    ai.n_layers = r->nl;
    memcpy(ai.layers, r->layers, (size_t)r->nl * sizeof(int));
    ai.opts = r->ro; ai.opts.beta = s->beta;
    if (s->rank != 0) return 0;   // every rank holds the same routers; one writes them
    if (vm_adapter_write(r->m, &ai, r->out_path, NULL, NULL)) return -1;
    remove(r->ckpt);
    return 0;
}

static void fit_fill_stats(const fit_run *r) {
    const vm_ckpt_state *cs = &r->cs;
    vm_fit_stats *st = r->st;
    st->steps = cs->step; st->epochs_run = cs->epochs_run; st->best_epoch = cs->best_epoch;
    st->stopped_early = cs->stopped; st->train_ce_first = cs->ce_first; st->train_ce_last = cs->ce_last;
    st->val_nll_best = cs->best_val; st->val_acc_best = cs->best_acc;
    st->tokens = r->s.tokens; st->seconds = r->t_train; st->tokens_per_s = r->t_train > 0 ? r->s.tokens / r->t_train : 0;
}

static void fit_free(fit_run *r) {
    fit_state *s = &r->s;
    for (int i = 0; s->ex && i < r->n_items; i++) {
        if (!s->ex[i].h_borrowed) free(s->ex[i].h);
        vm_task_input_free(&s->ex[i].in);
    }
    free(s->ex); free(r->order); free(r->tr_idx); free(r->va_idx); free(r->best); free(r->map_w); free(r->eorder); free(r->bce);
    free(s->acc); free(s->send);
    vm_adamw_free(&r->opt);
    vm_tctx_free(s->tc);
    free(s->h_tmp); free(s->logits); free(s->dlogits); free(s->lz);
    free(s->params); free(s->routers);
}

// A distributed fit's ranks must read the same model and items: the model file's sampled checksum
// (adapter.h vm_model_identity) and the dataset's fingerprint compared before any work, naming the rank.
static int fit_same_inputs(const fit_run *r) {
    if (vm_dist_same_u64(vm_model_identity(r->m), "the model file (sampled checksum)")) return -1;
    return vm_dist_same_u64(vm_dataset_fingerprint(r->ds), "the training items (dataset fingerprint)");
}

int vm_fit_run(vm_model *m, const vm_tokenizer *tok, const vm_dataset *ds, const vm_fit_opts *o,
               const char *out_path, vm_fit_stats *st_out) {
    vm_fit_stats st_local, *st = st_out ? st_out : &st_local;
    memset(st, 0, sizeof *st);
    for (int i = 0; i < VM_ADAPTER_MAX_LAYERS; i++) st->jaccard[i] = NAN;
    fit_run *r = vm_calloc(1, sizeof *r);   // large (layer lists, the checkpoint path): not on the stack
    if (!r) return vm_err_prefix("fit");
    *r = (fit_run){ .s = { .m = m, .o = o }, .m = m, .o = o, .ds = ds, .out_path = out_path, .st = st };
    if (fit_check(r)) { free(r); return -1; }
    if (o->distributed) { r->s.rank = vm_dist_rank(); r->s.size = vm_dist_size(); }
    else { r->s.rank = 0; r->s.size = 1; }
    if (r->s.size > 1 && fit_same_inputs(r)) { free(r); return vm_err_prefix("fit"); }
    r->quiet = o->progress == 2 || r->s.rank != 0;   // one rank reports
    r->bar = o->progress == 1 || (o->progress < 0 && isatty(2));
    r->n_items = (int)ds->n;
    r->order = vm_malloc((size_t)r->n_items * sizeof(int));
    int rc = fit_examples(r, tok) || fit_layers(r) || fit_routers(r) || fit_cache(r) || fit_start(r) ? -1 : 0;
    if (!rc) rc = fit_train(r);
    if (rc == 1) rc = 0;                       // stopped by stop_after: no adapter yet
    else if (!rc) rc = fit_finish(r);
    if (!rc) fit_fill_stats(r);
    progress_end(&r->bar_open);   // the caller's error line must not land on the bar
    if (rc) vm_err_prefix("fit");
    fit_free(r);
    free(r);
    return rc;
}

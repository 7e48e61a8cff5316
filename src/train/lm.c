// Full-parameter LM training (lm.h): the model lives in one heap copy of its GGUF file whose f32
// tensors are the parameters; gradients in one arena laid out like them.
#include "train/lm.h"
#include "gguf/gguf.h"
#include "model/train.h"
#include "train/checkpoint.h"
#include "train/optim.h"
#include "util/err.h"
#include "util/fileio.h"
#include "util/hash.h"
#include "util/progress.h"
#include "util/rng.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct vm_lm {
    void *buf;                  // the GGUF file, 64-byte aligned; tensors point into it
    size_t size;
    vm_model *m;                // owns the vm_gguf over buf
    int n;                      // parameters = the file's tensors, in file order
    vm_param *p;
    float *garena;              // all gradients
    float *embd_g;              // gradient of token_embd (rows scattered from dh)
    vm_model_grads grads;
    vm_layer_grads *lg;         // (n_layer)
    float **expp;               // (n_layer * 3 * N) per-expert gradient pointers
    vm_tctx *tc;                // for windows of tc_T tokens
    int tc_T;
    float *h, *dh, *logits, *dlogits;   // (T,D), (T,D), (T,V), (T,V)
    int32_t *pos;               // (T)
    const vm_model *teacher;    // distillation (vm_lm_set_teacher), or NULL
    float kd_alpha;
    vm_ctx *tctx;               // the teacher's context for windows of tc_T tokens
    float *tlogits;             // (T,V)
    double kd_last;             // soft-target CE of the last vm_lm_loss (mean per prediction)
};

void vm_lm_opts_default(vm_lm_opts *o) {
    memset(o, 0, sizeof *o);
    o->steps = 200; o->seq = 128; o->batch = 8;
    o->lr = 1e-3f; o->wd = 0.01f; o->warmup_frac = 0.05f; o->clip = 1.0f; o->lb_weight = 0.01f; o->router_lr_mult = 1.0f;
    o->val_frac = 0.05f; o->eval_every = 50; o->eval_windows = 32;
    o->progress = -1;
}

vm_model *vm_lm_model(vm_lm *lm) { return lm ? lm->m : NULL; }

int64_t vm_lm_n_params(const vm_lm *lm) {
    int64_t s = 0;
    for (int i = 0; lm && i < lm->n; i++) s += vm_param_numel(&lm->p[i]);
    return s;
}

int vm_lm_param(vm_lm *lm, int i, const char **name, float **w, float **g, int64_t *n) {
    if (!lm || i < 0 || i >= lm->n) return -1;
    if (name) *name = lm->p[i].name;
    if (w) *w = lm->p[i].w;
    if (g) *g = lm->p[i].g;
    if (n) *n = vm_param_numel(&lm->p[i]);
    return 0;
}

// The gradient element that shadows weight element `data` (any tensor, any view of it).
static float *grad_of(const vm_lm *lm, const void *data) {
    const float *x = data;
    for (int i = 0; x && i < lm->n; i++) {
        const float *w = lm->p[i].w;
        if (x >= w && x < w + vm_param_numel(&lm->p[i])) return lm->p[i].g + (x - w);
    }
    return NULL;
}

static int read_aligned(const char *path, void **buf, size_t *size) {
    if (vm_input_check(path)) return -1;   // a FIFO would block the open
    FILE *f = fopen(path, "rb");
    if (!f) return vm_err("%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) || st.st_size <= 0) { fclose(f); return vm_err("%s: empty or unreadable", path); }
    *size = (size_t)st.st_size;
    if (posix_memalign(buf, 64, *size)) { fclose(f); *buf = NULL; return vm_err("%s: out of memory (%zu bytes)", path, *size); }
    const size_t got = fread(*buf, 1, *size, f);
    fclose(f);
    if (got != *size) { free(*buf); *buf = NULL; return vm_err("%s: short read", path); }
    return 0;
}

static int map_grads(vm_lm *lm) {
    const vm_model *m = lm->m;
    const vm_hparams *hp = &m->hp;
    const int L = hp->n_layer, N = hp->n_expert > 0 ? hp->n_expert : 1;
    lm->lg = vm_calloc((size_t)L, sizeof *lm->lg);
    lm->expp = vm_calloc((size_t)L * 3 * N, sizeof *lm->expp);
    if (!lm->lg || !lm->expp) return -1;
#define G(dst, src, what) do { if (!((dst) = grad_of(lm, (src)))) \
        return vm_err("train: %s is not a trainable f32 tensor of the file", what); } while (0)
    G(lm->embd_g, m->tok_embd.data, "token_embd");
    G(lm->grads.output, m->output.data, "output");
    G(lm->grads.output_norm, m->output_norm, "output_norm");
    for (int il = 0; il < L; il++) {
        const vm_layer *ly = &m->layers[il];
        vm_layer_grads *g = &lm->lg[il];
        G(g->attn_norm, ly->attn_norm, "attn_norm"); G(g->ffn_norm, ly->ffn_norm, "ffn_norm");
        G(g->wq, ly->wq.data, "attn_q"); G(g->wk, ly->wk.data, "attn_k");
        G(g->wv, ly->wv.data, "attn_v"); G(g->wo, ly->wo.data, "attn_output");
        if (!ly->is_moe) {
            G(g->ffn_gate, ly->ffn_gate.data, "ffn_gate"); G(g->ffn_up, ly->ffn_up.data, "ffn_up");
            G(g->ffn_down, ly->ffn_down.data, "ffn_down");
            continue;
        }
        G(g->gate_inp, ly->ffn_gate_inp.data, "ffn_gate_inp");
        g->exp_gate = lm->expp + (size_t)il * 3 * N;
        g->exp_up = g->exp_gate + N;
        g->exp_down = g->exp_up + N;
        for (int e = 0; e < hp->n_expert; e++) {
            G(g->exp_gate[e], ly->exp_gate[e].data, "ffn_gate_exps");
            G(g->exp_up[e], ly->exp_up[e].data, "ffn_up_exps");
            G(g->exp_down[e], ly->exp_down[e].data, "ffn_down_exps");
        }
    }
#undef G
    lm->grads.layers = lm->lg;
    return 0;
}

const vm_model_grads *vm_lm_grads(const vm_lm *lm) { return lm ? &lm->grads : NULL; }

vm_lm *vm_lm_load(const char *path) {
    vm_lm *lm = vm_calloc(1, sizeof *lm);
    if (!lm) return NULL;
    if (read_aligned(path, &lm->buf, &lm->size)) goto fail;
    vm_gguf *g = vm_gguf_open_mem(lm->buf, lm->size, path);
    if (!g || !(lm->m = vm_model_from_gguf(g))) goto fail;
    g = lm->m->gguf;
    lm->n = (int)g->n_tensors;
    lm->p = vm_calloc((size_t)lm->n, sizeof *lm->p);
    if (!lm->p) goto fail;
    size_t total = 0;
    for (int i = 0; i < lm->n; i++) {
        const vm_gguf_tensor_info *ti = &g->tensors[i];
        if (ti->t.type != VM_TYPE_F32) {
            vm_err("train: tensor %s is %s; training needs f32 weights (convert with --type f32)", ti->name,
                   vm_type_name(ti->t.type));
            goto fail;
        }
        vm_param *p = &lm->p[i];
        snprintf(p->name, sizeof p->name, "%s", ti->name);
        const int64_t n = vm_tensor_nelements(&ti->t);
        p->n_dims = ti->t.n_dims > 1 ? 2 : 1;
        p->ne[0] = ti->t.ne[0];
        p->ne[1] = p->n_dims > 1 ? n / ti->t.ne[0] : 1;
        // the buffer is ours and writable; the model only sees it through const views
        p->w = (float *)(uintptr_t)ti->t.data;
        total += (size_t)n;
    }
    if (!(lm->garena = vm_calloc(total ? total : 1, sizeof(float)))) goto fail;
    size_t off = 0;
    for (int i = 0; i < lm->n; i++) { lm->p[i].g = lm->garena + off; off += (size_t)vm_param_numel(&lm->p[i]); }
    if (map_grads(lm)) goto fail;
    return lm;
fail:
    vm_err_prefix("train: %s", path);
    vm_lm_free(lm);
    return NULL;
}

void vm_lm_free(vm_lm *lm) {
    if (!lm) return;
    vm_ctx_free(lm->tctx);
    free(lm->tlogits);
    vm_tctx_free(lm->tc);
    free(lm->h); free(lm->dh); free(lm->logits); free(lm->dlogits); free(lm->pos);
    vm_model_free(lm->m);
    free(lm->buf);
    free(lm->p); free(lm->garena); free(lm->lg); free(lm->expp);
    free(lm);
}

void vm_lm_init_random(vm_lm *lm, uint64_t seed) {
    const int L = lm->m->hp.n_layer;
    for (int i = 0; i < lm->n; i++) {
        vm_param *p = &lm->p[i];
        const int64_t n = vm_param_numel(p);
        if (p->n_dims == 1) { for (int64_t j = 0; j < n; j++) p->w[j] = 1.0f; continue; }   // norms
        // GPT-2 style: projections that write into the residual stream are scaled down by depth
        const int resid = strstr(p->name, "attn_output") || strstr(p->name, "ffn_down");
        const float sd = resid ? 0.02f / sqrtf(2.0f * L) : 0.02f;
        vm_rng r;
        vm_rng_seed2(&r, seed, 0x696e6974ull + (uint64_t)i);
        for (int64_t j = 0; j < n; j++) p->w[j] = sd * vm_rng_normal(&r);
    }
}

int vm_lm_set_teacher(vm_lm *lm, const vm_model *teacher, float alpha) {
    if (!lm) return vm_err("train: no model");
    if (teacher && teacher->hp.n_vocab != lm->m->hp.n_vocab)
        return vm_err("train: the teacher's vocabulary (%d) differs from the model's (%d)", teacher->hp.n_vocab,
                      lm->m->hp.n_vocab);
    if (teacher && !(alpha >= 0 && alpha <= 1)) return vm_err("train: distillation weight %g out of [0, 1]", (double)alpha);
    lm->teacher = teacher;
    lm->kd_alpha = teacher ? alpha : 0.0f;
    lm->tc_T = 0;   // (re)allocate the contexts, the teacher's included, at the next loss
    return 0;
}

double vm_lm_kd_last(const vm_lm *lm) { return lm ? lm->kd_last : 0.0; }

static int ensure_ctx(vm_lm *lm, int T) {
    if (lm->tc && lm->tc_T == T && (!lm->teacher || lm->tctx)) return 0;
    const int D = lm->m->hp.n_embd, V = lm->m->hp.n_vocab;
    vm_tctx_free(lm->tc);
    vm_ctx_free(lm->tctx);
    free(lm->h); free(lm->dh); free(lm->logits); free(lm->dlogits); free(lm->pos); free(lm->tlogits);
    lm->h = lm->dh = lm->logits = lm->dlogits = lm->tlogits = NULL; lm->pos = NULL; lm->tc_T = 0; lm->tctx = NULL;
    if (lm->teacher) {
        if (!(lm->tctx = vm_ctx_init(lm->teacher, T, T))) return vm_err_prefix("train: teacher");
        if (!(lm->tlogits = vm_malloc((size_t)T * V * sizeof(float)))) return -1;
    }
    if (!(lm->tc = vm_tctx_init(lm->m, 0, T))) return -1;
    if (vm_tctx_set_grads(lm->tc, &lm->grads)) return vm_err_prefix("train");
    lm->h = vm_malloc((size_t)T * D * sizeof(float));
    lm->dh = vm_malloc((size_t)T * D * sizeof(float));
    lm->logits = vm_malloc((size_t)T * V * sizeof(float));
    lm->dlogits = vm_malloc((size_t)T * V * sizeof(float));
    lm->pos = vm_malloc((size_t)T * sizeof(int32_t));
    if (!lm->h || !lm->dh || !lm->logits || !lm->dlogits || !lm->pos) return -1;
    for (int t = 0; t < T; t++) lm->pos[t] = t;
    lm->tc_T = T;
    return 0;
}

int vm_lm_loss(vm_lm *lm, const int32_t *tokens, int batch, int seq, float lb_weight, int grad,
               double *ce, double *lb) {
    if (!lm || !tokens || batch < 1 || seq < 1) return vm_err("train: bad loss call");
    const vm_model *m = lm->m;
    const int D = m->hp.n_embd, V = m->hp.n_vocab;
    if (seq > m->hp.n_ctx_train) return vm_err("train: window of %d tokens exceeds the context length %d", seq, m->hp.n_ctx_train);
    if (ensure_ctx(lm, seq)) return -1;
    // the lb gradient of one window, averaged over the batch like the CE
    lm->grads.lb_weight = lb_weight / batch;
    const double inv = 1.0 / ((double)batch * seq);
    const double a = lm->teacher ? lm->kd_alpha : 0.0;
    double ce_sum = 0.0, lb_sum = 0.0, kd_sum = 0.0;
    for (int b = 0; b < batch; b++) {
        const int32_t *tk = tokens + (size_t)b * (seq + 1);
        for (int t = 0; t <= seq; t++)
            if (tk[t] < 0 || tk[t] >= V) return vm_err("train: token id %d out of range [0, %d)", tk[t], V);
        if (vm_model_hidden(m, tk, seq, 0, lm->h) ||
            vm_tctx_forward(lm->tc, lm->h, seq, lm->pos, seq, lm->logits, NULL))
            return vm_err_prefix("train");
        if (lm->teacher) {
            vm_ctx_reset(lm->tctx);
            if (vm_ctx_eval(lm->tctx, tk, seq, lm->tlogits)) return vm_err_prefix("train: teacher");
        }
        lb_sum += vm_tctx_lb_loss(lm->tc);
        for (int t = 0; t < seq; t++) {
            const float *lg = lm->logits + (size_t)t * V;
            float mx = lg[0];
            for (int v = 1; v < V; v++) if (lg[v] > mx) mx = lg[v];
            double s = 0.0;
            for (int v = 0; v < V; v++) s += exp((double)lg[v] - mx);
            const int y = tk[t + 1];
            const double lse = log(s) + mx;
            ce_sum += lse - lg[y];
            float *dl = lm->dlogits + (size_t)t * V;
            if (lm->teacher) {
                // soft targets q = softmax(teacher logits): CE(q, p) = lse - sum_v q_v l_v; the
                // objective mixes it with the hard CE, so its gradient is p - ((1-a) onehot + a q)
                const float *tl = lm->tlogits + (size_t)t * V;
                float tmx = tl[0];
                for (int v = 1; v < V; v++) if (tl[v] > tmx) tmx = tl[v];
                double ts = 0.0, ql = 0.0;
                for (int v = 0; v < V; v++) ts += exp((double)tl[v] - tmx);
                for (int v = 0; v < V; v++) {
                    const double q = exp((double)tl[v] - tmx) / ts;
                    ql += q * lg[v];
                    if (grad) dl[v] = (float)((exp((double)lg[v] - mx) / s - a * q) * inv);
                }
                kd_sum += lse - ql;
                if (grad) dl[y] -= (float)((1.0 - a) * inv);
                continue;
            }
            if (!grad) continue;
            for (int v = 0; v < V; v++) dl[v] = (float)(exp((double)lg[v] - mx) / s * inv);
            dl[y] -= (float)inv;
        }
        if (!grad) continue;
        if (vm_tctx_backward(lm->tc, lm->dlogits, 0.0f, lm->dh)) return vm_err_prefix("train");
        for (int t = 0; t < seq; t++) {   // h = token_embd rows: scatter the gradient back
            float *ge = lm->embd_g + (size_t)tk[t] * D;
            const float *d = lm->dh + (size_t)t * D;
            for (int i = 0; i < D; i++) ge[i] += d[i];
        }
    }
    if (ce) *ce = ce_sum * inv;
    if (lb) *lb = lb_sum / batch;
    lm->kd_last = kd_sum * inv;
    return 0;
}

int64_t vm_lm_tokenize_docs(const vm_tokenizer *tok, const char *text, size_t len, int first_doc,
                            int n_docs, int *total_docs, int32_t **out) {
    *out = NULL;
    int32_t *all = NULL;
    int64_t n = 0, cap = 0;
    int doc = 0;
    size_t i = 0;
    while (i < len) {
        // skip blank lines; a document is the run of non-blank lines that follows
        size_t ls = i, le;
        int blank = 1;
        for (le = ls; le < len && text[le] != '\n'; le++)
            if (text[le] != ' ' && text[le] != '\t' && text[le] != '\r') blank = 0;
        if (blank) { i = le + 1; continue; }
        const size_t ds = ls;
        size_t de = le;
        i = le < len ? le + 1 : len;
        while (i < len) {
            size_t e2;
            int b2 = 1;
            for (e2 = i; e2 < len && text[e2] != '\n'; e2++)
                if (text[e2] != ' ' && text[e2] != '\t' && text[e2] != '\r') b2 = 0;
            if (b2) break;
            de = e2;
            i = e2 < len ? e2 + 1 : len;
        }
        const int take = doc >= first_doc && (n_docs < 0 || doc < first_doc + n_docs);
        doc++;
        if (!take) continue;
        int32_t *ids = NULL;
        const int k = vm_tokenize_alloc(tok, text + ds, de - ds, 1, 0, &ids);
        if (k < 0) { free(all); return vm_err_prefix("train: document %d", doc); }
        if (n + k > cap) {
            int64_t nc = cap ? cap * 2 : 65536;
            while (nc < n + k) nc *= 2;
            int32_t *na = realloc(all, (size_t)nc * sizeof *na);
            if (!na) { free(ids); free(all); return vm_err("train: out of memory"); }
            all = na; cap = nc;
        }
        memcpy(all + n, ids, (size_t)k * sizeof *ids);
        n += k;
        free(ids);
    }
    if (total_docs) *total_docs = doc;
    *out = all;
    return n;
}

// ---------------------------------------------------------------- the loop

// Mean CE over consecutive non-overlapping windows of the validation stream.
static int val_loss(vm_lm *lm, const int32_t *val, int64_t n_val, const vm_lm_opts *o, int32_t *buf, double *out) {
    const int T = o->seq;
    int64_t nw = (n_val - 1) / T;
    if (nw > o->eval_windows) nw = o->eval_windows;
    if (nw < 1) return vm_err("train: validation text has %lld tokens, fewer than one window of %d", (long long)n_val, T + 1);
    double s = 0.0;
    const vm_model *teacher = lm->teacher;   // validation is the hard-label CE: no teacher pass
    lm->teacher = NULL;
    for (int64_t w0 = 0; w0 < nw; w0 += o->batch) {
        const int nb = (int)(nw - w0 < o->batch ? nw - w0 : o->batch);
        for (int b = 0; b < nb; b++) memcpy(buf + (size_t)b * (T + 1), val + (w0 + b) * T, (size_t)(T + 1) * sizeof(int32_t));
        double ce, lb;
        if (vm_lm_loss(lm, buf, nb, T, 0.0f, 0, &ce, &lb)) { lm->teacher = teacher; return -1; }
        s += ce * nb;
    }
    lm->teacher = teacher;
    *out = s / (double)nw;
    return 0;
}

static int write_model(vm_lm *lm, const char *path, const vm_lm_opts *o, const vm_lm_stats *st) {
    const vm_gguf *g = lm->m->gguf;
    vm_gguf_writer *w = vm_gguf_writer_init();
    if (!w) return -1;
    vm_gguf_copy_kv(w, g);
    vm_gguf_set_i64(w, "vmoer.train.steps", st->steps);
    vm_gguf_set_i64(w, "vmoer.train.best_step", st->best_step);
    vm_gguf_set_i64(w, "vmoer.train.tokens", st->tokens);
    vm_gguf_set_u64(w, "vmoer.train.seed", o->seed);
    vm_gguf_set_i32(w, "vmoer.train.seq", o->seq);
    vm_gguf_set_i32(w, "vmoer.train.batch", o->batch);
    vm_gguf_set_f32(w, "vmoer.train.lr", o->lr);
    vm_gguf_set_f32(w, "vmoer.train.lb_weight", o->lb_weight);
    vm_gguf_set_f32(w, "vmoer.train.router_lr_mult", o->router_lr_mult);
    if (lm->teacher) vm_gguf_set_f32(w, "vmoer.train.kd", lm->kd_alpha);
    vm_gguf_set_f64(w, "vmoer.train.val_loss", st->val_best);
    int rc = 0;
    for (int i = 0; i < lm->n && !rc; i++) {
        const vm_gguf_tensor_info *ti = &g->tensors[i];
        rc = vm_gguf_add_tensor(w, ti->name, VM_TYPE_F32, ti->t.n_dims, ti->t.ne, lm->p[i].w, ti->nbytes);
    }
    if (!rc) rc = vm_gguf_write(w, path);
    vm_gguf_writer_free(w);
    return rc ? vm_err_prefix("train: writing %s", path) : 0;
}

static void params_copy(vm_lm *lm, float *dst, int to_params) {
    size_t off = 0;
    for (int i = 0; i < lm->n; i++) {
        const size_t n = (size_t)vm_param_numel(&lm->p[i]);
        if (to_params) memcpy(lm->p[i].w, dst + off, n * sizeof(float));
        else memcpy(dst + off, lm->p[i].w, n * sizeof(float));
        off += n;
    }
}

int vm_lm_train(vm_lm *lm, const int32_t *train, int64_t n_train, const int32_t *val, int64_t n_val,
                const vm_lm_opts *o, const char *out_path, vm_lm_stats *st_out) {
    vm_lm_stats st0, *st = st_out ? st_out : &st0;
    memset(st, 0, sizeof *st);
    if (!lm || !train || !val || !o || !out_path) return vm_err("train: missing argument");
    if (o->steps < 1 || o->seq < 2 || o->batch < 1 || !(o->lr > 0) || o->clip < 0 || o->lb_weight < 0 ||
        !(o->router_lr_mult > 0))
        return vm_err("train: bad options (steps %lld, seq %d, batch %d, lr %g)", (long long)o->steps, o->seq, o->batch, (double)o->lr);
    if (n_train < o->seq + 1)
        return vm_err("train: training text has %lld tokens, fewer than one window of %d", (long long)n_train, o->seq + 1);
    const int T = o->seq, B = o->batch;
    const int quiet = o->progress == 2, bar = !quiet && vm_progress_want(o->progress);
    st->n_train_tokens = n_train; st->n_val_tokens = n_val; st->n_params = vm_lm_n_params(lm);
    char ckpt_def[4096];
    const char *ckpt = o->ckpt_path;
    if (!ckpt) { snprintf(ckpt_def, sizeof ckpt_def, "%s.ckpt", out_path); ckpt = ckpt_def; }

    int rc = -1;
    vm_adamw opt = {0};
    vm_param **pp = vm_malloc((size_t)lm->n * sizeof *pp);
    unsigned char *decay = vm_malloc((size_t)lm->n);
    const size_t n_all = (size_t)vm_lm_n_params(lm);
    float *best = vm_malloc(n_all * sizeof(float));
    int32_t *bt = vm_malloc((size_t)B * (T + 1) * sizeof(int32_t));
    if (!pp || !decay || !best || !bt) goto done;
    for (int i = 0; i < lm->n; i++) { pp[i] = &lm->p[i]; decay[i] = lm->p[i].n_dims > 1; }
    if (vm_adamw_init(&opt, pp, decay, lm->n, o->wd)) goto done;
    for (int i = 0; i < lm->n; i++)
        if (strstr(lm->p[i].name, "ffn_gate_inp")) opt.lr_mult[i] = o->router_lr_mult;

    vm_ckpt_state cs;
    memset(&cs, 0, sizeof cs);
    {   // what a resume must match: options, model size, the data
        uint64_t h = VM_FNV1A_INIT;
        const int64_t iv[] = { o->steps, o->seq, o->batch, o->eval_every, o->eval_windows, o->from_scratch, n_train, n_val,
                               (int64_t)lm->size };
        const float fv[] = { o->lr, o->wd, o->warmup_frac, o->clip, o->lb_weight, o->router_lr_mult,
                             lm->teacher ? lm->kd_alpha : -1.0f };
        h = vm_fnv1a(h, iv, sizeof iv); h = vm_fnv1a(h, fv, sizeof fv); h = vm_fnv1a(h, &o->seed, sizeof o->seed);
        h = vm_fnv1a(h, train, (size_t)n_train * sizeof *train); h = vm_fnv1a(h, val, (size_t)n_val * sizeof *val);
        cs.fingerprint = h;
    }
    if (o->resume && access(ckpt, F_OK) == 0) {   // vm_ckpt_read refuses what is not a regular file
        const vm_ckpt_expect ex = { .total_steps = o->steps };   // no epochs
        if (vm_ckpt_read(ckpt, &cs, &opt, best, n_all, &ex)) goto done;
        st->resumed = 1;
        if (!quiet) fprintf(stderr, "train: resumed from %s at step %lld\n", ckpt, (long long)cs.step);
    } else {
        if (val_loss(lm, val, n_val, o, bt, &cs.val_init)) goto done;
        cs.best_val = cs.val_init;
        cs.best_epoch = 0;
        params_copy(lm, best, 0);
        cs.ce_first = NAN;
    }
    st->val_init = cs.val_init;
    if (!quiet && !st->resumed)
        fprintf(stderr, "train: %lld parameters, %lld training tokens, %lld validation tokens; val loss %.4f\n",
                (long long)st->n_params, (long long)n_train, (long long)n_val, cs.val_init);

    const double t0 = vm_now_s();
    int64_t tok_done = 0;
    double ce = 0, lb = 0;
    while (cs.step < o->steps) {
        const int64_t s = cs.step;
        vm_rng r;
        vm_rng_seed2(&r, o->seed, 0x7374657000000000ull + (uint64_t)s);
        for (int b = 0; b < B; b++) {
            const int64_t off = (int64_t)(vm_rng_u64(&r) % (uint64_t)(n_train - T));
            memcpy(bt + (size_t)b * (T + 1), train + off, (size_t)(T + 1) * sizeof(int32_t));
        }
        if (vm_lm_loss(lm, bt, B, T, o->lb_weight, 1, &ce, &lb)) goto done;
        double gn = 0.0;
        for (size_t j = 0; j < n_all; j++) gn += (double)lm->garena[j] * lm->garena[j];
        gn = sqrt(gn);
        if (!isfinite(ce) || !isfinite(gn)) { vm_err("train: loss or gradient is not finite at step %lld (lower --lr)", (long long)s); goto done; }
        if (o->clip > 0 && gn > o->clip) {
            const float sc = (float)(o->clip / gn);
            for (size_t j = 0; j < n_all; j++) lm->garena[j] *= sc;
        }
        vm_adamw_step(&opt, vm_lr_schedule(o->lr, s, o->steps, o->warmup_frac));
        cs.step = s + 1;
        tok_done += (int64_t)B * T;
        if (isnan(cs.ce_first)) cs.ce_first = ce;
        cs.ce_last = ce;
        const int at_eval = cs.step == o->steps || (o->eval_every > 0 && cs.step % o->eval_every == 0);
        if (at_eval) {
            double v;
            if (val_loss(lm, val, n_val, o, bt, &v)) goto done;
            if (v < cs.best_val) { cs.best_val = v; cs.best_epoch = (int)cs.step; params_copy(lm, best, 0); }
            if (bar) vm_progress_end();
            if (!quiet)
                fprintf(stderr, "train: step %lld/%lld  train %.4f  lb %.3f  val %.4f%s\n", (long long)cs.step,
                        (long long)o->steps, ce, lb, v, cs.best_epoch == cs.step ? " (best)" : "");
        }
        if (bar) {
            const double el = vm_now_s() - t0, rate = el > 0 ? tok_done / el : 0;
            const double eta = rate > 0 ? (double)(o->steps - cs.step) * B * T / rate : 0;
            char what[48];
            snprintf(what, sizeof what, "loss %.4f", ce);
            vm_progress_bar(cs.step, o->steps, what, rate, "tok", eta);
        }
        const int want_ckpt = cs.step < o->steps && (at_eval || (o->ckpt_every > 0 && cs.step % o->ckpt_every == 0) ||
                                                     (o->stop_after > 0 && cs.step >= o->stop_after));
        if (want_ckpt && vm_ckpt_write(ckpt, &cs, &opt, best, n_all)) goto done;
        if (o->stop_after > 0 && cs.step >= o->stop_after && cs.step < o->steps) {
            if (bar) vm_progress_end();
            st->interrupted = 1;
            break;
        }
    }
    if (bar && !st->interrupted) vm_progress_end();
    st->seconds = vm_now_s() - t0;
    st->tokens = cs.step * (int64_t)B * T;
    st->tokens_per_s = st->seconds > 0 ? tok_done / st->seconds : 0;
    st->steps = cs.step;
    st->val_best = cs.best_val; st->best_step = cs.best_epoch;
    st->train_first = cs.ce_first; st->train_last = cs.ce_last; st->lb_last = lb;
    if (!st->interrupted) {
        params_copy(lm, best, 1);
        if (write_model(lm, out_path, o, st)) goto done;
        remove(ckpt);
    }
    rc = 0;
done:
    vm_adamw_free(&opt);
    free(pp); free(decay); free(best); free(bt);
    return rc;
}

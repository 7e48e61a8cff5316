// The network's shared parts: loading (dispatch to arch_<name>.c), weight lookup helpers, the
// per-sequence context (KV cache + activations) and the forward pass of a pre-norm decoder block
// with attention, dense SwiGLU FFN or a routed mixture of SwiGLU experts.
#include "model/model_internal.h"
#include "model/lora.h"
#include "model/train.h"
#include "model/attn_mla.h"
#include "kernels/ops.h"
#include "util/err.h"
#include "util/profile.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------- loading helpers

static void fmt_shape(char *buf, size_t size, int n, const int64_t *ne) {
    int o = snprintf(buf, size, "[");
    for (int i = 0; i < n && o > 0 && (size_t)o < size; i++)
        o += snprintf(buf + o, size - (size_t)o, "%s%lld", i ? ", " : "", (long long)ne[i]);
    if (o > 0 && (size_t)o < size) snprintf(buf + o, size - (size_t)o, "]");
}

int vm_model_tensor(const vm_model *m, vm_tensor *out, const char *name, int n_dims,
                    const int64_t *ne, int required) {
    char want[96], have[96];
    fmt_shape(want, sizeof want, n_dims, ne);
    const vm_gguf_tensor_info *ti = vm_gguf_find_tensor(m->gguf, name);
    if (!ti) {
        if (!required) return 1;
        return vm_err("model: missing tensor '%s' (expected %s)", name, want);
    }
    const vm_tensor *t = &ti->t;
    int ok = 1;
    for (int i = 0; i < 4; i++) ok &= t->ne[i] == (i < n_dims ? ne[i] : 1);
    if (!ok) {
        fmt_shape(have, sizeof have, t->n_dims, t->ne);
        return vm_err("model: tensor '%s' has shape %s, expected %s", name, have, want);
    }
    const vm_type_traits *tr = vm_type_get((int)t->type);
    if (!tr || !tr->compute)
        return vm_err("model: tensor '%s' has type %s, which vmoer cannot compute (expected %s)",
                      name, vm_type_name((int)t->type), want);
    if (t->ne[0] % tr->blck_size != 0 || !t->data)
        return vm_err("model: tensor '%s' rows of %lld are not whole %s blocks", name,
                      (long long)t->ne[0], tr->name);
    // a NaN/Inf weight would poison every output it touches: refuse the file now, naming the tensor
    char what[96];
    snprintf(what, sizeof what, "model: tensor '%s'", name);
    const int bad = vm_type_check_finite(t->type, t->data, vm_tensor_nelements(t), what);
    vm_mmap_release(&m->gguf->map, t->data, vm_tensor_nbytes(t));   // read once, not kept resident
    if (bad) return -1;
    *out = *t;
    out->name = ti->name;
    return 0;
}

int vm_model_embd_output(vm_model *m) {
    vm_hparams *hp = &m->hp;
    const int64_t D = hp->n_embd;
    char embd[64], out[64];
    vm_tn(embd, sizeof embd, VM_TN_TOKEN_EMBD, -1, "weight");
    vm_tn(out, sizeof out, VM_TN_OUTPUT, -1, "weight");
    const vm_gguf_tensor_info *te = vm_gguf_find_tensor(m->gguf, embd);
    if (!te) return vm_err("model: missing tensor '%s' (expected [%lld, n_vocab])", embd, (long long)D);
    if (te->t.ne[1] < 1 || te->t.ne[1] > INT32_MAX)
        return vm_err("model: tensor '%s' has %lld rows", embd, (long long)te->t.ne[1]);
    hp->n_vocab = (int)te->t.ne[1];
    const int64_t V = hp->n_vocab;
    if (vm_model_tensor(m, &m->tok_embd, embd, 2, (int64_t[]){D, V}, 1)) return -1;
    int rc = vm_model_tensor(m, &m->output, out, 2, (int64_t[]){D, V}, 0);
    if (rc < 0) return -1;
    if (rc == 1) m->output = m->tok_embd;   // tied embeddings
    return 0;
}

int vm_model_norm(vm_model *m, const char *name, int64_t n, const float **out, size_t *used) {
    vm_tensor t;
    if (vm_model_tensor(m, &t, name, 1, (int64_t[]){n}, 1)) return -1;
    if (t.type == VM_TYPE_F32 && (uintptr_t)t.data % sizeof(float) == 0) {
        *out = (const float *)t.data;
        return 0;
    }
    if (t.type != VM_TYPE_F32 && t.type != VM_TYPE_F16 && t.type != VM_TYPE_BF16)
        return vm_err("model: norm tensor '%s' has type %s (expected f32, f16 or bf16)", name,
                      vm_type_name((int)t.type));
    float *dst = m->f32_store + *used;
    if (t.type == VM_TYPE_F32) memcpy(dst, t.data, (size_t)n * sizeof(float));   // unaligned f32
    else vm_dequant_row(t.type, t.data, dst, n);
    *used += (size_t)n;
    *out = dst;
    return 0;
}

int vm_model_key_int(const vm_model *m, const char *suffix, int *out, int required, int lo, int hi) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->hp.arch_name, suffix);
    int64_t v;
    int rc = vm_gguf_get_i64(m->gguf, key, &v);
    if (rc < 0) return vm_err_prefix("model");
    if (rc == 1) return required ? vm_err("model: missing key '%s'", key) : 1;
    if (v < lo || v > hi)
        return vm_err("model: key '%s' = %lld out of range [%d, %d]", key, (long long)v, lo, hi);
    *out = (int)v;
    return 0;
}

int vm_model_key_f32(const vm_model *m, const char *suffix, float *out, int required) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->hp.arch_name, suffix);
    float v;
    int rc = vm_gguf_get_f32(m->gguf, key, &v);
    if (rc < 0) return vm_err_prefix("model");
    if (rc == 1) return required ? vm_err("model: missing key '%s'", key) : 1;
    if (!isfinite(v)) return vm_err("model: key '%s' is not finite", key);
    *out = v;
    return 0;
}

// ---------------------------------------------------------------- model

vm_model *vm_model_load(const char *path) {
    vm_gguf *g = vm_gguf_open(path);
    if (!g) return NULL;
    return vm_model_from_gguf(g);
}

// general.architecture -> loader (arch_<name>.c)
static const struct { const char *name; vm_arch arch; int (*load)(vm_model *m); } arch_loaders[] = {
    { "llama", VM_ARCH_LLAMA, vm_arch_llama_load },
    { "granitemoe", VM_ARCH_GRANITEMOE, vm_arch_granitemoe_load },
    { "qwen2moe", VM_ARCH_QWEN2MOE, vm_arch_qwen2moe_load },
    { "qwen3moe", VM_ARCH_QWEN3MOE, vm_arch_qwen3moe_load },
    { "olmoe", VM_ARCH_OLMOE, vm_arch_olmoe_load },
    { "deepseek", VM_ARCH_DEEPSEEK, vm_arch_deepseek_load },
    { "deepseek2", VM_ARCH_DEEPSEEK2, vm_arch_deepseek2_load },
};
#define VM_N_ARCH_LOADERS ((int)(sizeof arch_loaders / sizeof arch_loaders[0]))

vm_model *vm_model_from_gguf(vm_gguf *g) {
    if (!g) { vm_err("model: no GGUF given"); return NULL; }
    vm_model *m = vm_calloc(1, sizeof *m);
    if (!m) { vm_gguf_free(g); return NULL; }
    m->gguf = g;
    char *arch = NULL;
    int rc = vm_gguf_get_str(g, "general.architecture", &arch);
    if (rc != 0) {
        if (rc == 1) vm_err("model: %s: missing key 'general.architecture'", g->path ? g->path : "?");
        goto fail;
    }
    snprintf(m->hp.arch_name, sizeof m->hp.arch_name, "%s", arch);
    int ia = 0;
    while (ia < VM_N_ARCH_LOADERS && strcmp(arch, arch_loaders[ia].name) != 0) ia++;
    if (ia == VM_N_ARCH_LOADERS) {
        char list[256];
        int o = 0;
        for (int i = 0; i < VM_N_ARCH_LOADERS && o >= 0 && (size_t)o < sizeof list; i++)
            o += snprintf(list + o, sizeof list - (size_t)o, "%s%s", i ? ", " : "", arch_loaders[i].name);
        vm_err("model: %s: architecture '%s' is not supported (supported: %s)",
               g->path ? g->path : "?", arch, list);
        free(arch);
        goto fail;
    }
    free(arch);
    m->hp.arch = arch_loaders[ia].arch;
    // what the llama block does; families with µP multipliers override them
    m->hp.f_embedding_scale = m->hp.f_residual_scale = m->hp.f_logit_scale = 1.0f;
    m->hp.f_attention_scale = 0.0f;
    m->hp.expert_weights_scale = 1.0f;
    if (arch_loaders[ia].load(m)) goto fail_ctx;
    return m;
fail_ctx:
    if (!g->path || !strstr(vm_errmsg(), g->path)) vm_err_prefix("%s", g->path ? g->path : "?");   // once
fail:
    vm_model_free(m);
    return NULL;
}

void vm_model_free(vm_model *m) {
    if (!m) return;
    if (m->routers)
        for (int l = 0; l < m->hp.n_layer; l++) vm_router_free(m->routers[l]);
    free(m->routers);
    if (m->loras)
        for (int l = 0; l < m->hp.n_layer; l++) vm_lora_free(m->loras[l]);
    free(m->loras);
    if (m->layers) free(m->layers[0].exp_gate);   // one array holds every layer's expert views
    free(m->layers);
    free(m->f32_store);
    vm_mla_free(m->mla);
    vm_gguf_free(m->gguf);
    free(m);
}

int vm_model_set_router(vm_model *m, int layer, vm_router *r) {
    if (!m || layer < 0 || layer >= m->hp.n_layer || !m->layers[layer].is_moe) {
        vm_router_free(r);
        return vm_err("model: layer %d is not a MoE layer", layer);
    }
    if (!r) return vm_err("model: no router given (layer %d)", layer);
    vm_router_free(m->routers[layer]);
    m->routers[layer] = r;
    return 0;
}

int vm_model_is_moe_layer(const vm_model *m, int layer) {
    return m && layer >= 0 && layer < m->hp.n_layer && m->layers[layer].is_moe;
}

const vm_router_layer *vm_model_router_layer(const vm_model *m, int layer) {
    if (!m) { vm_err("model: no model given"); return NULL; }
    if (!vm_model_is_moe_layer(m, layer)) { vm_err("model: layer %d is not a MoE layer", layer); return NULL; }
    return &m->layers[layer].rl;
}

const vm_router *vm_model_router(const vm_model *m, int layer) {
    return vm_model_is_moe_layer(m, layer) ? m->routers[layer] : NULL;
}

// Every router is created before any is set, so a bad option or layer leaves the model as it was:
// a caller never has to undo half a swap. o_each: o holds one options struct per listed layer.
static int set_routers(vm_model *m, const char *kind, const int *layers, int n_layers,
                       const vm_router_opts *o, int o_each) {
    if (!m) return vm_err("model: no model given");
    if (!kind) return vm_err("model: no router kind given");
    if (layers && n_layers < 0) return vm_err("model: bad layer count %d", n_layers);
    const int L = m->hp.n_layer, n = layers ? n_layers : L;
    vm_router **rs = vm_calloc((size_t)(L > 0 ? L : 1), sizeof *rs);
    if (!rs) return -1;
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        const int il = layers ? layers[i] : i;
        if (!layers && !vm_model_is_moe_layer(m, il)) continue;   // "every MoE layer"
        if (!vm_model_is_moe_layer(m, il)) rc = vm_err("model: layer %d is not a MoE layer", il);
        else if (rs[il]) rc = vm_err("model: layer %d given twice", il);
        else if (!(rs[il] = vm_router_create(kind, &m->layers[il].rl, o_each ? &o[i] : o))) rc = -1;
    }
    for (int il = 0; il < L; il++) {
        if (!rs[il]) continue;
        if (rc) { vm_router_free(rs[il]); continue; }
        vm_router_free(m->routers[il]);
        m->routers[il] = rs[il];
    }
    free(rs);
    return rc;
}

int vm_model_set_routers(vm_model *m, const char *kind, const int *layers, int n_layers,
                         const vm_router_opts *o) {
    return set_routers(m, kind, layers, n_layers, o, 0);
}

int vm_model_set_routers_each(vm_model *m, const char *kind, const int *layers, int n_layers,
                              const vm_router_opts *o) {
    if (!layers || !o) return vm_err("model: per-layer routers need the layers and their options");
    return set_routers(m, kind, layers, n_layers, o, 1);
}

// ---------------------------------------------------------------- context

struct vm_ctx {
    const vm_model *m;
    int n_ctx, n_batch, n_past;
    float *kcache, *vcache;   // (n_layer, n_ctx, kv_dim) each
    void *arena;              // every activation buffer below lives in this one allocation
    float *x;                 // (nb, D) residual stream
    float *xb;                // (nb, D) normalised input of a sub-block
    float *q;                 // (nb, n_head*hd)
    float *att;               // (nb, n_head*hd) attention output before wo
    float *ao;                // (nb, D) attention / FFN output
    float *hb, *hb2;          // (nb, max(n_ff, n_ff_exp)) FFN hidden
    float *r_logits, *r_probs;// (nb, N)
    float *r_gates;           // (nb, K)
    int32_t *r_sel;           // (nb, K)
    float *r_unc;             // (nb, VM_UNC_COUNT) router read-outs
    float *xe, *ye;           // (nb, D) tokens routed to one expert, and their outputs
    int32_t *e_tok;           // (nb) token rows routed to the current expert
    float *e_gate;            // (nb) their gates
    int32_t *pos;             // (nb)
    float *last_logits;       // (n_vocab)
    float *mla;               // (nb, vm_mla_scratch) deepseek2 attention scratch, else NULL
    int have_last;
    vm_trace_fn trace;
    void *ud;
    vm_rng rng;
    float embd_sigma;         // > 0: N(0, sigma^2) noise added to the embedding output (eval stability)
    vm_rng embd_rng;          // its own stream, so sampled routers draw the same numbers either way
};

static int carve_add(size_t *total, size_t n_elems) {
    size_t bytes;
    if (vm_size_mul(n_elems, 4, &bytes) || vm_size_add(bytes, 63, &bytes)) return -1;
    bytes &= ~(size_t)63;
    return vm_size_add(*total, bytes, total);
}

static void *carve(char **cur, size_t n_elems) {
    void *p = *cur;
    *cur += (n_elems * 4 + 63) & ~(size_t)63;
    return p;
}

vm_ctx *vm_ctx_init(const vm_model *m, int n_ctx, int n_batch) {
    if (!m) { vm_err("ctx: no model"); return NULL; }
    const vm_hparams *hp = &m->hp;
    if (n_ctx <= 0) n_ctx = hp->n_ctx_train;
    if (n_batch <= 0 || n_batch > n_ctx) n_batch = n_ctx < 512 ? n_ctx : 512;
    if (n_ctx <= 0) { vm_err("ctx: context length must be positive"); return NULL; }
    vm_ctx *c = vm_calloc(1, sizeof *c);
    if (!c) return NULL;
    c->m = m; c->n_ctx = n_ctx; c->n_batch = n_batch;
    const size_t nb = (size_t)n_batch, D = (size_t)hp->n_embd;
    const size_t qd = (size_t)hp->n_head * hp->head_dim, kvd = (size_t)hp->n_head_kv * hp->head_dim;
    size_t ff = (size_t)(hp->n_ff > hp->n_ff_exp ? hp->n_ff : hp->n_ff_exp);
    if ((size_t)hp->n_ff_shexp > ff) ff = (size_t)hp->n_ff_shexp;   // the shared expert reuses hb/hb2
    const size_t N = (size_t)(hp->n_expert > 0 ? hp->n_expert : 1);
    const size_t K = (size_t)(hp->n_expert_used > 0 ? hp->n_expert_used : 1);
    const size_t V = (size_t)hp->n_vocab;
    const size_t sizes[] = { nb * D, nb * D, nb * qd, nb * qd, nb * D, nb * ff, nb * ff, nb * N, nb * N,
                             nb * K, nb * K, nb * D, nb * D, nb, nb, nb, V, nb * vm_mla_scratch(m),
                             nb * VM_UNC_COUNT };
    size_t total = 0, kv;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (carve_add(&total, sizes[i])) goto fail;
    c->arena = vm_malloc(total);
    if (!c->arena) goto fail;
    char *cur = c->arena;
    c->x = carve(&cur, nb * D);          c->xb = carve(&cur, nb * D);
    c->q = carve(&cur, nb * qd);         c->att = carve(&cur, nb * qd);
    c->ao = carve(&cur, nb * D);         c->hb = carve(&cur, nb * ff);
    c->hb2 = carve(&cur, nb * ff);       c->r_logits = carve(&cur, nb * N);
    c->r_probs = carve(&cur, nb * N);    c->r_gates = carve(&cur, nb * K);
    c->r_sel = carve(&cur, nb * K);      c->xe = carve(&cur, nb * D);
    c->ye = carve(&cur, nb * D);         c->e_tok = carve(&cur, nb);
    c->e_gate = carve(&cur, nb);         c->pos = carve(&cur, nb);
    c->last_logits = carve(&cur, V);
    if (m->mla) c->mla = carve(&cur, nb * vm_mla_scratch(m));
    c->r_unc = carve(&cur, nb * VM_UNC_COUNT);
    if (vm_size_mul((size_t)hp->n_layer * (size_t)n_ctx, kvd, &kv) || vm_size_mul(kv, sizeof(float), &kv))
        goto fail;
    c->kcache = vm_malloc(kv ? kv : 1);
    c->vcache = vm_malloc(kv && !m->mla ? kv : 1);   // MLA: values are read from the key cache
    if (!c->kcache || !c->vcache) goto fail;
    vm_rng_seed(&c->rng, 0);
    return c;
fail:
    vm_err_prefix("ctx (n_ctx %d, n_batch %d)", n_ctx, n_batch);
    vm_ctx_free(c);
    return NULL;
}

void vm_ctx_free(vm_ctx *c) {
    if (!c) return;
    free(c->arena);
    free(c->kcache);
    free(c->vcache);
    free(c);
}

void vm_ctx_reset(vm_ctx *c) { if (c) { c->n_past = 0; c->have_last = 0; } }
int vm_ctx_n_past(const vm_ctx *c) { return c ? c->n_past : vm_err("ctx: no context given"); }
void vm_ctx_set_trace(vm_ctx *c, vm_trace_fn fn, void *ud) { if (c) { c->trace = fn; c->ud = ud; } }
void vm_ctx_set_seed(vm_ctx *c, uint64_t seed) { if (c) vm_rng_seed(&c->rng, seed); }
void vm_ctx_set_embd_noise(vm_ctx *c, float sigma, uint64_t seed) {
    if (c) { c->embd_sigma = sigma > 0.0f ? sigma : 0.0f; vm_rng_seed(&c->embd_rng, seed); }
}
const float *vm_ctx_last_logits(const vm_ctx *c) {
    if (!c || !c->have_last) vm_err(c ? "ctx: no position evaluated yet" : "ctx: no context given");
    return c && c->have_last ? c->last_logits : NULL;
}

// ---------------------------------------------------------------- forward

static void emit(const vm_block_io *io, const char *name, int layer, int B, int ne, const float *f,
                 const int32_t *i) {
    if (!io->trace) return;
    vm_trace_ev ev = { name, layer, io->n_past, B, ne, f, i };
    io->trace(io->ud, &ev);
}

// ffn_out (B,D) = sum over selected experts e of gate * down_e(silu(gate_e xb) * up_e xb), into io->ao.
// Tokens are grouped per expert so each expert's weights are read once per batch; outputs are
// summed in expert-index order, the same for any batching or thread count.
static int moe_ffn(const vm_model *m, int il, const vm_block_io *io, int B, vm_rng *rng) {
    const vm_layer *ly = &m->layers[il];
    const vm_router_layer *L = &ly->rl;
    const int D = m->hp.n_embd, N = L->n_expert, K = L->n_expert_used, F = m->hp.n_ff_exp;
    vm_router *r = m->routers[il];
    vm_router_out ro = { .logits = io->r_logits, .probs = io->r_probs, .sel = io->r_sel, .gates = io->r_gates,
                         .unc = io->r_unc };
    if (!r || !r->ops || !r->ops->forward) return vm_err("model: layer %d has no router", il);
    // read-outs a kind does not write stay NaN (kinds written outside the library included)
    if (io->r_unc) for (size_t i = 0; i < (size_t)B * VM_UNC_COUNT; i++) io->r_unc[i] = NAN;
    vm_prof_t pt = vm_prof_begin(VM_PROF_ROUTER);
    const int rrc = r->ops->forward(r, L, io->xb_ffn, B, &ro, rng);
    vm_prof_end(pt);
    if (rrc) return vm_err_prefix("layer %d", il);
    for (int t = 0; t < B * K; t++)
        if (io->r_sel[t] < 0 || io->r_sel[t] >= N)
            return vm_err("model: router '%s' selected expert %d of %d (layer %d)", r->ops->name,
                          io->r_sel[t], N, il);
    emit(io, "ffn_moe_logits", il, B, N, io->r_logits, NULL);
    emit(io, "ffn_moe_probs", il, B, N, io->r_probs, NULL);
    emit(io, "ffn_moe_topk", il, B, K, NULL, io->r_sel);
    emit(io, "ffn_moe_weights", il, B, K, io->r_gates, NULL);
    if (io->r_unc) emit(io, "ffn_moe_unc", il, B, VM_UNC_COUNT, io->r_unc, NULL);
    memset(io->ao, 0, (size_t)B * D * sizeof(float));
    int off = 0;   // first slot of the current expert (stays 0 when slots are reused)
    for (int e = 0; e < N; e++) {
        if (io->e_off) io->e_off[e] = off;
        pt = vm_prof_begin(VM_PROF_GATHER);
        int32_t *tk = io->slot_tk + off;
        int n = 0;
        for (int t = 0; t < B; t++)
            for (int k = 0; k < K; k++)
                if (io->r_sel[t * K + k] == e) {
                    tk[n] = t * K + k;
                    memcpy(io->xe + (size_t)n * D, io->xb_ffn + (size_t)t * D, (size_t)D * sizeof(float));
                    n++;
                }
        vm_prof_end(pt);
        if (n == 0) continue;
        float *hb = io->hb + (size_t)off * F, *hb2 = io->hb2 + (size_t)off * F;
        float *hs = io->hs + (size_t)off * F, *ye = io->ye + (size_t)off * D;
        pt = vm_prof_begin(VM_PROF_EXP_GATE_UP);
        vm_matmul_forward(hb, io->xe, &ly->exp_gate[e], NULL, n);   // (n, F)
        vm_matmul_forward(hb2, io->xe, &ly->exp_up[e], NULL, n);
        vm_prof_end(pt);
        pt = vm_prof_begin(VM_PROF_SWIGLU);
        vm_swiglu_forward(hs, hb, hb2, n * F);
        vm_prof_end(pt);
        pt = vm_prof_begin(VM_PROF_EXP_DOWN);
        vm_matmul_forward(ye, hs, &ly->exp_down[e], NULL, n);        // (n, D)
        vm_prof_end(pt);
        pt = vm_prof_begin(VM_PROF_SCATTER);
        for (int j = 0; j < n; j++) {   // restrict: ao and ye never overlap, so this vectorises
            float *restrict o = io->ao + (size_t)(tk[j] / K) * D;
            const float *restrict y = ye + (size_t)j * D;
            const float g = io->r_gates[tk[j]];
            #pragma omp simd   // element-wise (gcc -O2's cheap vectoriser skips it): the same bits
            for (int d = 0; d < D; d++) o[d] += g * y[d];
        }
        vm_prof_end(pt);
        if (io->keep) off += n;
    }
    if (io->e_off) io->e_off[N] = off;
    return 0;
}

float vm_model_kq_scale(const vm_hparams *hp) {
    return hp->f_attention_scale != 0.0f ? hp->f_attention_scale : 1.0f / sqrtf((float)hp->head_dim);
}

// Self-attention of the block: io->xb_att (B,D) -> io->ao (B,D); keys and values into the cache.
// Optional pieces by family: QKV biases, RMSNorm of Q and K before RoPE (per head or over the
// whole projection), the attention scale.
static void attn_forward(const vm_model *m, int il, const vm_block_io *io, int B) {
    const vm_hparams *hp = &m->hp;
    const vm_layer *ly = &m->layers[il];
    const int hd = hp->head_dim;
    const size_t kvd = (size_t)hp->n_head_kv * hd;
    float *knew = io->kc + (size_t)io->n_past * kvd, *vnew = io->vc + (size_t)io->n_past * kvd;
    // with a Q/K norm the projections land in q_pre/k_pre when kept, else are normalised in place
    float *qp = hp->qk_norm && io->q_pre ? io->q_pre : io->q;
    float *kp = hp->qk_norm && io->k_pre ? io->k_pre : knew;
    vm_prof_t pt = vm_prof_begin(VM_PROF_ATTN_QKV);
    vm_matmul_forward(qp, io->xb_att, &ly->wq, ly->bq, B);
    vm_matmul_forward(kp, io->xb_att, &ly->wk, ly->bk, B);   // straight into the cache
    vm_matmul_forward(vnew, io->xb_att, &ly->wv, ly->bv, B);
    const vm_lora *lo = vm_model_lora(m, il);
    if (lo) {   // W' = W + scale B A on the projections, before any norm or rotation
        vm_lora_forward(lo, VM_LORA_Q, io->xb_att, B, qp);
        vm_lora_forward(lo, VM_LORA_K, io->xb_att, B, kp);
        vm_lora_forward(lo, VM_LORA_V, io->xb_att, B, vnew);
    }
    vm_prof_end(pt);
    pt = vm_prof_begin(VM_PROF_ROPE);
    if (hp->qk_norm == 1) {          // each head's hd values: rows of (B*n_head, hd)
        vm_rmsnorm_forward(io->q, qp, ly->attn_q_norm, B * hp->n_head, hd, hp->norm_eps);
        vm_rmsnorm_forward(knew, kp, ly->attn_k_norm, B * hp->n_head_kv, hd, hp->norm_eps);
    } else if (hp->qk_norm == 2) {   // the whole projection: rows of (B, n_head*hd)
        vm_rmsnorm_forward(io->q, qp, ly->attn_q_norm, B, hp->n_head * hd, hp->norm_eps);
        vm_rmsnorm_forward(knew, kp, ly->attn_k_norm, B, (int)kvd, hp->norm_eps);
    }
    vm_rope_forward(io->q, io->pos, B, hp->n_head, hd, hp->n_rot, hp->rope_freq_base, hp->rope_freq_scale, hp->rope_neox);
    vm_rope_forward(knew, io->pos, B, hp->n_head_kv, hd, hp->n_rot, hp->rope_freq_base, hp->rope_freq_scale, hp->rope_neox);
    vm_prof_end(pt);
    pt = vm_prof_begin(VM_PROF_ATTENTION);
    if (io->tree)
        vm_tree_attention_forward(io->tree, io->att, io->q, io->kc, io->vc, hp->n_head, hp->n_head_kv, hd,
                                  vm_model_kq_scale(hp), io->tree_kv);
    else
        vm_attention_forward(io->att, io->q, io->kc, io->vc, io->n_past, B, hp->n_head, hp->n_head_kv, hd,
                             vm_model_kq_scale(hp));
    vm_prof_end(pt);
    pt = vm_prof_begin(VM_PROF_ATTN_OUT);
    vm_matmul_forward(io->ao, io->att, &ly->wo, NULL, B);
    vm_prof_end(pt);
}

// The shared expert of a MoE layer, added to io->ao: g * down(silu(gate u) * up u) with
// g = sigmoid(ffn_gate_inp_shexp . u) (qwen2moe) or 1.
static void shexp_forward(const vm_model *m, int il, const vm_block_io *io, int B) {
    const vm_layer *ly = &m->layers[il];
    const int D = m->hp.n_embd, Fs = m->hp.n_ff_shexp;
    vm_matmul_forward(io->sh_hb, io->xb_ffn, &ly->ffn_gate_shexp, NULL, B);
    vm_matmul_forward(io->sh_hb2, io->xb_ffn, &ly->ffn_up_shexp, NULL, B);
    vm_swiglu_forward(io->sh_hs, io->sh_hb, io->sh_hb2, B * Fs);
    vm_matmul_forward(io->sh_y, io->sh_hs, &ly->ffn_down_shexp, NULL, B);
    for (int t = 0; t < B; t++) {
        const float *u = io->xb_ffn + (size_t)t * D, *y = io->sh_y + (size_t)t * D;
        float g = 1.0f;
        if (ly->ffn_gate_inp_shexp) {
            double z = 0.0;
            for (int d = 0; d < D; d++) z += (double)ly->ffn_gate_inp_shexp[d] * u[d];
            g = (float)(1.0 / (1.0 + exp(-z)));
        }
        io->sh_g[t] = g;
        float *o = io->ao + (size_t)t * D;
        for (int d = 0; d < D; d++) o[d] += g * y[d];
    }
}

int vm_block_forward(const vm_model *m, int il, const vm_block_io *io, int B, vm_rng *rng) {
    const vm_hparams *hp = &m->hp;
    const vm_layer *ly = &m->layers[il];
    const int D = hp->n_embd;
    const size_t nd = (size_t)B * D;
    const float rs = hp->f_residual_scale;   // µP: branch outputs are scaled before the residual add
    // attention
    vm_prof_t pt = vm_prof_begin(VM_PROF_NORM);
    vm_rmsnorm_forward(io->xb_att, io->x_in, ly->attn_norm, B, D, hp->norm_eps);
    vm_prof_end(pt);
    emit(io, "attn_norm", il, B, D, io->xb_att, NULL);
    if (m->mla) {
        pt = vm_prof_begin(VM_PROF_ATTENTION);   // MLA: projections and attention together
        const int rc = vm_mla_forward(m, il, io, B);
        vm_prof_end(pt);
        if (rc) return -1;
    } else {
        attn_forward(m, il, io, B);
    }
    emit(io, "attn_out", il, B, D, io->ao, NULL);
    pt = vm_prof_begin(VM_PROF_RESIDUAL);
    #pragma omp simd   // element-wise, each element's own mul and add: the same bits
    for (size_t i = 0; i < nd; i++) io->x_mid[i] = io->x_in[i] + rs * io->ao[i];
    vm_prof_end(pt);
    emit(io, "ffn_inp", il, B, D, io->x_mid, NULL);
    // feed-forward
    pt = vm_prof_begin(VM_PROF_NORM);
    vm_rmsnorm_forward(io->xb_ffn, io->x_mid, ly->ffn_norm, B, D, hp->norm_eps);
    vm_prof_end(pt);
    emit(io, "ffn_norm", il, B, D, io->xb_ffn, NULL);
    if (ly->is_moe) {
        if (moe_ffn(m, il, io, B, rng)) return -1;
        pt = vm_prof_begin(VM_PROF_FFN);
        if (ly->has_shexp) shexp_forward(m, il, io, B);
        vm_prof_end(pt);
    } else {
        const int F = hp->n_ff;
        pt = vm_prof_begin(VM_PROF_FFN);
        vm_matmul_forward(io->hb, io->xb_ffn, &ly->ffn_gate, NULL, B);
        vm_matmul_forward(io->hb2, io->xb_ffn, &ly->ffn_up, NULL, B);
        vm_swiglu_forward(io->hs, io->hb, io->hb2, B * F);
        vm_matmul_forward(io->ao, io->hs, &ly->ffn_down, NULL, B);
        vm_prof_end(pt);
    }
    emit(io, "ffn_out", il, B, D, io->ao, NULL);
    pt = vm_prof_begin(VM_PROF_RESIDUAL);
    #pragma omp simd   // element-wise, each element's own mul and add: the same bits
    for (size_t i = 0; i < nd; i++) io->x_out[i] = io->x_mid[i] + rs * io->ao[i];
    vm_prof_end(pt);
    emit(io, "l_out", il, B, D, io->x_out, NULL);
    return 0;
}

// Embeds B tokens at positions n_past .. n_past+B-1 into c->x and runs layers [0, n_layers);
// with a tree (n_past 0), the B rows of the tree at its positions (tree_kv: its attention scratch).
static int ctx_layers(vm_ctx *c, const int32_t *tokens, int B, int n_layers, const vm_tree *tree,
                      float *tree_kv, vm_rng *rng) {
    const vm_model *m = c->m;
    const vm_hparams *hp = &m->hp;
    const int D = hp->n_embd;
    const size_t kvd = (size_t)hp->n_head_kv * hp->head_dim;
    vm_prof_t pt = vm_prof_begin(VM_PROF_EMBED);
    for (int b = 0; b < B; b++) {
        if (tokens[b] < 0 || tokens[b] >= hp->n_vocab)
            return vm_err("model: token id %d out of range [0, %d) (position %d)", tokens[b],
                          hp->n_vocab, c->n_past + b);
        vm_dequant_row(m->tok_embd.type, (const char *)m->tok_embd.data + (size_t)tokens[b] * m->tok_embd.nb[1],
                       c->x + (size_t)b * D, D);
        if (hp->f_embedding_scale != 1.0f)   // µP (granitemoe)
            for (int d = 0; d < D; d++) c->x[(size_t)b * D + d] *= hp->f_embedding_scale;
        c->pos[b] = tree ? tree->pos[b] : c->n_past + b;
        if (c->embd_sigma > 0.0f)
            for (int d = 0; d < D; d++) c->x[(size_t)b * D + d] += c->embd_sigma * vm_rng_normal(&c->embd_rng);
    }
    vm_prof_end(pt);
    // one set of scratch for every layer; the residual stream is updated in place
    vm_block_io io = { .x_in = c->x, .x_mid = c->x, .x_out = c->x, .xb_att = c->xb, .q = c->q,
                       .att = c->att, .ao = c->ao, .xb_ffn = c->xb, .hb = c->hb, .hb2 = c->hb2,
                       .hs = c->hb, .r_logits = c->r_logits, .r_probs = c->r_probs,
                       .r_gates = c->r_gates, .r_sel = c->r_sel, .r_unc = c->r_unc, .xe = c->xe, .ye = c->ye,
                       .slot_tk = c->e_tok, .pos = c->pos, .n_past = c->n_past, .tree = tree, .tree_kv = tree_kv,
                       .sh_hb = c->hb, .sh_hb2 = c->hb2, .sh_hs = c->hb, .sh_y = c->ye, .sh_g = c->e_gate,
                       .mla = c->mla,
                       .trace = c->trace, .ud = c->ud };
    for (int il = 0; il < n_layers; il++) {
        io.kc = c->kcache + (size_t)il * c->n_ctx * kvd;
        io.vc = m->mla ? io.kc : c->vcache + (size_t)il * c->n_ctx * kvd;
        if (vm_block_forward(m, il, &io, B, rng)) return -1;
    }
    return 0;
}

void vm_model_scale_logits(const vm_model *m, float *logits, int B) {
    const float ls = m->hp.f_logit_scale;
    if (ls == 1.0f) return;
    const size_t n = (size_t)B * m->hp.n_vocab;
    for (size_t i = 0; i < n; i++) logits[i] /= ls;   // divided, as llama.cpp and HF granite do
}

// One chunk of B tokens at positions n_past .. n_past+B-1; logits (B, n_vocab) or NULL (then only
// the last row is computed, into last_logits when `last`).
static int eval_chunk(vm_ctx *c, const int32_t *tokens, int B, float *logits, int last) {
    const vm_model *m = c->m;
    const vm_hparams *hp = &m->hp;
    const int D = hp->n_embd;
    if (ctx_layers(c, tokens, B, hp->n_layer, NULL, NULL, &c->rng)) return -1;
    vm_prof_t pt = vm_prof_begin(VM_PROF_OUTPUT);
    vm_rmsnorm_forward(c->xb, c->x, m->output_norm, B, D, hp->norm_eps);
    if (c->trace) {
        vm_trace_ev ev = { "result_norm", -1, c->n_past, B, D, c->xb, NULL };
        c->trace(c->ud, &ev);
    }
    const size_t V = (size_t)hp->n_vocab;
    if (logits) {
        vm_matmul_forward(logits, c->xb, &m->output, NULL, B);
        vm_model_scale_logits(m, logits, B);
        if (c->trace) {
            vm_trace_ev ev = { "result_output", -1, c->n_past, B, (int)V, logits, NULL };
            c->trace(c->ud, &ev);
        }
        if (last) memcpy(c->last_logits, logits + (size_t)(B - 1) * V, V * sizeof(float));
    } else if (last) {
        vm_matmul_forward(c->last_logits, c->xb + (size_t)(B - 1) * D, &m->output, NULL, 1);
        vm_model_scale_logits(m, c->last_logits, 1);
        if (c->trace) {
            vm_trace_ev ev = { "result_output", -1, c->n_past + B - 1, 1, (int)V, c->last_logits, NULL };
            c->trace(c->ud, &ev);
        }
    }
    vm_prof_end(pt);
    if (last) c->have_last = 1;
    return 0;
}

int vm_ctx_eval(vm_ctx *c, const int32_t *tokens, int n, float *logits) {
    if (!c || (n > 0 && !tokens)) return vm_err("ctx: eval without context or tokens");
    if (n <= 0) return vm_err("ctx: eval of %d tokens", n);
    if (n > c->n_ctx - c->n_past)
        return vm_err("ctx: %d tokens do not fit: %d of %d positions used", n, c->n_past, c->n_ctx);
    for (int i = 0; i < n; i += c->n_batch) {
        const int B = n - i < c->n_batch ? n - i : c->n_batch;
        float *lg = logits ? logits + (size_t)i * c->m->hp.n_vocab : NULL;
        if (eval_chunk(c, tokens + i, B, lg, i + B == n)) {
            c->have_last = 0;
            return -1;
        }
        c->n_past += B;
    }
    return 0;
}

// The inference path over T rows (a sequence, or the rows of a tree) up to layer l0, in a context
// of exactly T positions.
static int hidden_rows(const vm_model *m, const int32_t *tokens, int T, const vm_tree *tree, int l0,
                       float *h, vm_rng *rng) {
    if (!m || !tokens || !h || T <= 0) return vm_err("model: hidden state of %d tokens without model, tokens or output", T);
    if (l0 < 0 || l0 > m->hp.n_layer) return vm_err("model: hidden state entering layer %d of %d", l0, m->hp.n_layer);
    vm_ctx *c = vm_ctx_init(m, T, T);
    if (!c) return -1;
    float *kv = NULL;
    int rc = 0;
    if (tree && !(kv = vm_malloc(vm_tree_attn_scratch(T, (size_t)m->hp.n_head_kv * m->hp.head_dim) * sizeof(float)))) rc = -1;
    if (rc == 0) rc = ctx_layers(c, tokens, T, l0, tree, kv, rng ? rng : &c->rng);
    if (rc == 0) memcpy(h, c->x, (size_t)T * m->hp.n_embd * sizeof(float));
    free(kv);
    vm_ctx_free(c);
    return rc;
}

int vm_model_hidden(const vm_model *m, const int32_t *tokens, int T, int l0, float *h) {
    return hidden_rows(m, tokens, T, NULL, l0, h, NULL);
}

int vm_model_hidden_tree(const vm_model *m, const int32_t *tokens, const vm_tree *t, int l0,
                         float *h, vm_rng *rng) {
    if (vm_tree_check(t, t && t->n_rows > 0 ? t->n_rows : 1)) return vm_err_prefix("model: hidden state");
    return hidden_rows(m, tokens, t->n_rows, t, l0, h, rng);
}

// Public accessors: a NULL model is a caller's bug, reported (-1 and a message) rather than a crash.
int vm_model_n_vocab(const vm_model *m) { return m ? m->hp.n_vocab : vm_err("model: no model given"); }
int vm_model_n_layer(const vm_model *m) { return m ? m->hp.n_layer : vm_err("model: no model given"); }
int vm_model_n_expert(const vm_model *m) { return m ? m->hp.n_expert : vm_err("model: no model given"); }
int vm_model_n_ctx_train(const vm_model *m) { return m ? m->hp.n_ctx_train : vm_err("model: no model given"); }
const vm_gguf *vm_model_gguf(const vm_model *m) {
    if (!m) vm_err("model: no model given");
    return m ? m->gguf : NULL;
}

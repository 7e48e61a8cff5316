// Adapter GGUF writer and loader (format in adapter.h).
#include "util/hash.h"
#include "train/adapter.h"
#include "model/lora.h"
#include "train/optim.h"
#include "util/err.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t fnv_i(uint64_t h, int64_t v) { return vm_fnv1a(h, &v, sizeof v); }

uint64_t vm_model_router_checksum(const vm_model *m) {
    const vm_hparams *hp = &m->hp;
    uint64_t h = VM_FNV1A_INIT;
    h = vm_fnv1a(h, hp->arch_name, strlen(hp->arch_name));
    h = fnv_i(h, hp->n_layer); h = fnv_i(h, hp->n_embd); h = fnv_i(h, hp->n_expert);
    h = fnv_i(h, hp->n_expert_used); h = fnv_i(h, hp->n_vocab); h = fnv_i(h, hp->gate_conv);
    for (int il = 0; il < hp->n_layer; il++) {
        const vm_layer *l = &m->layers[il];
        if (!l->is_moe) continue;
        const vm_tensor *w = &l->ffn_gate_inp;
        h = fnv_i(h, il); h = fnv_i(h, w->type); h = fnv_i(h, w->ne[0]); h = fnv_i(h, w->ne[1]);
        if (w->data) h = vm_fnv1a(h, w->data, vm_tensor_nbytes(w));
    }
    return h;
}

uint64_t vm_model_identity(const vm_model *m) {
    const vm_gguf *g = vm_model_gguf(m);
    uint64_t h = vm_model_router_checksum(m);
    if (g) { const uint64_t f = vm_gguf_sample_checksum(g); h = vm_fnv1a(h, &f, sizeof f); }
    for (int l = 0; l < m->hp.n_layer; l++) {
        const vm_router *r = m->routers ? m->routers[l] : NULL;
        if (!r || !r->ops) continue;
        h = fnv_i(h, l);
        h = vm_fnv1a(h, r->ops->name, strlen(r->ops->name));
        for (int i = 0; i < r->n_params; i++)
            if (r->params[i].w) h = vm_fnv1a(h, r->params[i].w, (size_t)vm_param_numel(&r->params[i]) * sizeof(float));
    }
    return h;
}

int vm_adapter_write(const vm_model *m, const vm_adapter_info *a, const char *path,
                     void (*extra)(vm_gguf_writer *w, void *ud), void *ud) {
    if (a->n_layers <= 0 || a->n_layers > VM_ADAPTER_MAX_LAYERS) return vm_err("adapter: %d layers", a->n_layers);
    vm_gguf_writer *w = vm_gguf_writer_init();
    if (!w) return -1;
    const vm_hparams *hp = &m->hp;
    vm_gguf_set_str(w, "general.type", "adapter");
    vm_gguf_set_str(w, "general.architecture", hp->arch_name);
    vm_gguf_set_str(w, "vmoer.router.kind", a->kind);
    uint32_t ls[VM_ADAPTER_MAX_LAYERS];
    for (int i = 0; i < a->n_layers; i++) ls[i] = (uint32_t)a->layers[i];
    vm_gguf_set_arr(w, "vmoer.router.layers", VM_GGUF_TYPE_UINT32, ls, (uint64_t)a->n_layers);
    vm_gguf_set_f32(w, "vmoer.router.beta", a->opts.beta);
    vm_gguf_set_u32(w, "vmoer.router.samples", (uint32_t)a->opts.samples);
    vm_gguf_set_u32(w, "vmoer.router.hidden", (uint32_t)a->opts.hidden);
    vm_gguf_set_u32(w, "vmoer.router.members", (uint32_t)a->opts.members);
    vm_gguf_set_f32(w, "vmoer.router.temp", a->opts.temp);
    vm_gguf_set_f32(w, "vmoer.router.dropout", a->opts.dropout);
    vm_gguf_set_f32(w, "vmoer.router.member_noise", a->opts.member_noise);
    const vm_router_ops *ops = vm_router_kind_ops(a->kind);
    if (ops && ops->collect) {   // SWAG's shape and sampler
        vm_gguf_set_u32(w, "vmoer.router.swag_rank", (uint32_t)a->opts.swag_rank);
        vm_gguf_set_f32(w, "vmoer.router.swag_scale", a->opts.swag_scale);
    }
    vm_gguf_set_str(w, "vmoer.base.arch", hp->arch_name);
    vm_gguf_set_u32(w, "vmoer.base.n_layer", (uint32_t)hp->n_layer);
    vm_gguf_set_u32(w, "vmoer.base.n_embd", (uint32_t)hp->n_embd);
    vm_gguf_set_u32(w, "vmoer.base.n_expert", (uint32_t)hp->n_expert);
    vm_gguf_set_u32(w, "vmoer.base.n_expert_used", (uint32_t)hp->n_expert_used);
    vm_gguf_set_u32(w, "vmoer.base.n_vocab", (uint32_t)hp->n_vocab);
    vm_gguf_set_u64(w, "vmoer.base.checksum", vm_model_router_checksum(m));
    int rc = 0;
    for (int i = 0; i < a->n_layers && !rc; i++) {
        const int il = a->layers[i];
        const vm_router *r = il >= 0 && il < hp->n_layer ? m->routers[il] : NULL;
        if (!r || r->n_params <= 0) { rc = vm_err("adapter: layer %d has no trained router", il); break; }
        for (int j = 0; j < r->n_params && !rc; j++) {
            const vm_param *p = &r->params[j];
            char name[VM_GGUF_MAX_NAME + 16];
            vm_tn_blk(name, sizeof name, il, p->name);
            const size_t nb = (size_t)(p->ne[0] * (p->n_dims > 1 ? p->ne[1] : 1)) * sizeof(float);
            rc = vm_gguf_add_tensor(w, name, VM_TYPE_F32, p->n_dims, p->ne, p->w, nb);
        }
    }
    // LoRA, when the model carries one (all of one rank and alpha: one fit makes them)
    uint32_t ll[VM_ADAPTER_MAX_LAYERS];
    int nll = 0;
    const vm_lora *first = NULL;
    for (int il = 0; il < hp->n_layer && !rc; il++) {
        const vm_lora *lo = vm_model_lora(m, il);
        if (!lo) continue;
        if (!first) first = lo;
        else if (lo->rank != first->rank || lo->alpha != first->alpha) { rc = vm_err("adapter: LoRA layers of different rank/alpha"); break; }
        if (nll == VM_ADAPTER_MAX_LAYERS) { rc = vm_err("adapter: too many LoRA layers"); break; }
        ll[nll++] = (uint32_t)il;
        for (int j = 0; j < 2 * VM_LORA_COUNT && !rc; j++) {
            const vm_param *p = &lo->p[j];
            char name[VM_GGUF_MAX_NAME + 16];
            vm_tn_blk(name, sizeof name, il, p->name);
            rc = vm_gguf_add_tensor(w, name, VM_TYPE_F32, 2, p->ne, p->w, (size_t)(p->ne[0] * p->ne[1]) * sizeof(float));
        }
    }
    if (!rc && first) {
        vm_gguf_set_u32(w, "vmoer.lora.rank", (uint32_t)first->rank);
        vm_gguf_set_f32(w, "vmoer.lora.alpha", first->alpha);
        vm_gguf_set_arr(w, "vmoer.lora.layers", VM_GGUF_TYPE_UINT32, ll, (uint64_t)nll);
    }
    if (!rc && extra) extra(w, ud);
    if (!rc) rc = vm_gguf_write(w, path);
    vm_gguf_writer_free(w);
    return rc ? vm_err_prefix_file("adapter", path) : 0;
}

// A count that must fit in an int (a u32 above INT_MAX would turn negative).
static int get_u32(const vm_gguf *g, const char *key, int *out, int required) {
    uint32_t v;
    int rc = vm_gguf_get_u32(g, key, &v);
    if (rc < 0) return -1;
    if (rc == 1) return required ? vm_err("missing key %s", key) : 0;
    if (v > INT_MAX) return vm_err("%s = %u is out of range [0, %d]", key, v, INT_MAX);
    *out = (int)v;
    return 0;
}
static int get_f32(const vm_gguf *g, const char *key, float *out) {
    const int rc = vm_gguf_get_f32(g, key, out);
    if (rc < 0) return -1;
    if (rc == 0 && !isfinite(*out)) return vm_err("%s is not finite", key);
    return 0;
}

static int is_int_array(vm_gguf_type t) {
    return t == VM_GGUF_TYPE_UINT8 || t == VM_GGUF_TYPE_INT8 || t == VM_GGUF_TYPE_UINT16 || t == VM_GGUF_TYPE_INT16 ||
           t == VM_GGUF_TYPE_UINT32 || t == VM_GGUF_TYPE_INT32 || t == VM_GGUF_TYPE_UINT64 || t == VM_GGUF_TYPE_INT64;
}

// An ascending list of distinct layer indices of m from the u32 array `key`.
static int read_layers(const vm_model *m, const vm_gguf *g, const char *key, int *out, int *n_out) {
    vm_gguf_type t; uint64_t n; const void *d;
    const int rc = vm_gguf_get_arr(g, key, &t, &n, &d);
    if (rc == 1) return vm_err("missing %s", key);
    if (rc != 0 || !is_int_array(t))
        return vm_err("%s must be an array of integer layer indices (is %s)", key,
                      rc != 0 ? "not an array" : vm_gguf_type_name(t));
    if (n == 0 || n > VM_ADAPTER_MAX_LAYERS) return vm_err("%s has %llu entries", key, (unsigned long long)n);
    const vm_gguf_kv *kv = vm_gguf_get_kv(g, key);
    for (uint64_t i = 0; i < n; i++) {
        const double v = vm_gguf_arr_num(kv, i);
        if (!(v >= 0 && v < m->hp.n_layer)) return vm_err("%s[%llu] out of range", key, (unsigned long long)i);
        out[i] = (int)v;
        if (i && out[i] <= out[i - 1]) return vm_err("%s must be ascending and distinct", key);
    }
    *n_out = (int)n;
    return 0;
}

// Parameter p of layer il from the adapter tensor blk.<il>.<p->name> (f32, p's shape).
static int load_param(const vm_gguf *g, int il, vm_param *p) {
    char name[VM_GGUF_MAX_NAME + 16];
    vm_tn_blk(name, sizeof name, il, p->name);
    const vm_gguf_tensor_info *ti = vm_gguf_find_tensor(g, name);
    const int64_t ne1 = p->n_dims > 1 ? p->ne[1] : 1;
    if (!ti && p->frozen == 1) return 0;   // a constant older adapters did not store: the kind's default stays
    if (!ti) return vm_err("tensor %s missing", name);
    if (ti->t.type != VM_TYPE_F32 || ti->t.ne[0] != p->ne[0] || ti->t.ne[1] != ne1 || ti->t.ne[2] != 1)
        return vm_err("tensor %s: expected f32 [%lld, %lld]", name, (long long)p->ne[0], (long long)ne1);
    char what[VM_GGUF_MAX_NAME + 24];
    snprintf(what, sizeof what, "tensor %s", name);
    if (vm_type_check_finite(VM_TYPE_F32, ti->t.data, p->ne[0] * ne1, what)) return -1;
    memcpy(p->w, ti->t.data, (size_t)(p->ne[0] * ne1) * sizeof(float));
    return 0;
}

// Reads and checks the adapter's keys against m.
static int read_info(const vm_model *m, const vm_gguf *g, vm_adapter_info *a) {
    char *s = NULL;
    memset(a, 0, sizeof *a);
    vm_router_opts_default(&a->opts);
    if (vm_gguf_get_str(g, "general.type", &s) != 0 || strcmp(s, "adapter")) {
        free(s); return vm_err("not a vmoer adapter (general.type is not \"adapter\")");
    }
    free(s); s = NULL;
    if (vm_gguf_get_str(g, "vmoer.router.kind", &s) != 0) { free(s); return vm_err("missing vmoer.router.kind"); }
    snprintf(a->kind, sizeof a->kind, "%s", s);
    free(s); s = NULL;
    // base model identity first: the clearest message for the commonest mistake
    const vm_hparams *hp = &m->hp;
    int nl = -1, ne = -1, nx = -1, nu = -1, nv = -1;
    if (vm_gguf_get_str(g, "vmoer.base.arch", &s) != 0) { free(s); return vm_err("missing vmoer.base.arch"); }
    if (get_u32(g, "vmoer.base.n_layer", &nl, 1) || get_u32(g, "vmoer.base.n_embd", &ne, 1) ||
        get_u32(g, "vmoer.base.n_expert", &nx, 1) || get_u32(g, "vmoer.base.n_expert_used", &nu, 1) ||
        get_u32(g, "vmoer.base.n_vocab", &nv, 0)) { free(s); return -1; }
    int rc = 0;
    if (strcmp(s, hp->arch_name) || nl != hp->n_layer || ne != hp->n_embd || nx != hp->n_expert ||
        nu != hp->n_expert_used || (nv >= 0 && nv != hp->n_vocab))
        rc = vm_err("fitted for another model (%s, %d layers, n_embd %d, %d experts, top-%d; this model: "
                    "%s, %d layers, n_embd %d, %d experts, top-%d)", s, nl, ne, nx, nu, hp->arch_name,
                    hp->n_layer, hp->n_embd, hp->n_expert, hp->n_expert_used);
    free(s);
    if (rc) return -1;
    int64_t ck;
    if (vm_gguf_get_i64(g, "vmoer.base.checksum", &ck) != 0) {
        const vm_gguf_kv *kv = vm_gguf_get_kv(g, "vmoer.base.checksum");
        if (!kv || kv->type != VM_GGUF_TYPE_UINT64) return vm_err("missing vmoer.base.checksum");
        uint64_t u; memcpy(&u, kv->data, 8); ck = (int64_t)u;
        vm_err_clear();
    }
    const uint64_t mine = vm_model_router_checksum(m);
    if ((uint64_t)ck != mine)
        return vm_err("fitted for another model: base router checksum %016llx, this model's is %016llx "
                      "(same shape, different router weights)", (unsigned long long)ck, (unsigned long long)mine);
    if (read_layers(m, g, "vmoer.router.layers", a->layers, &a->n_layers)) return -1;
    for (int i = 0; i < a->n_layers; i++)
        if (!m->layers[a->layers[i]].is_moe) return vm_err("layer %d of this model is not a MoE layer", a->layers[i]);
    if (get_f32(g, "vmoer.router.beta", &a->opts.beta) || get_u32(g, "vmoer.router.samples", &a->opts.samples, 0) ||
        get_u32(g, "vmoer.router.hidden", &a->opts.hidden, 0) || get_u32(g, "vmoer.router.members", &a->opts.members, 0) ||
        get_f32(g, "vmoer.router.temp", &a->opts.temp) || get_f32(g, "vmoer.router.dropout", &a->opts.dropout) ||
        get_f32(g, "vmoer.router.member_noise", &a->opts.member_noise) ||
        get_u32(g, "vmoer.router.swag_rank", &a->opts.swag_rank, 0) ||
        get_f32(g, "vmoer.router.swag_scale", &a->opts.swag_scale)) return -1;
    if (get_u32(g, "vmoer.lora.rank", &a->lora_rank, 0)) return -1;
    if (a->lora_rank) {
        if (a->lora_rank < 1 || a->lora_rank > VM_LORA_MAX_RANK) return vm_err("vmoer.lora.rank %d out of range", a->lora_rank);
        a->lora_alpha = 0.0f;
        if (get_f32(g, "vmoer.lora.alpha", &a->lora_alpha) || !(a->lora_alpha > 0)) return vm_err("missing or bad vmoer.lora.alpha");
        if (read_layers(m, g, "vmoer.lora.layers", a->lora_layers, &a->n_lora)) return -1;
    }
    return 0;
}

// One layer's LoRA from the adapter's tensors (shapes checked against a fresh LoRA of the model).
static vm_lora *read_lora(const vm_model *m, const vm_gguf *g, const vm_adapter_info *a, int il) {
    vm_lora *lo = vm_lora_create(m, il, a->lora_rank, a->lora_alpha, 0);
    if (!lo) return NULL;
    for (int j = 0; j < 2 * VM_LORA_COUNT; j++)
        if (load_param(g, il, &lo->p[j])) { vm_lora_free(lo); return NULL; }
    return lo;
}

int vm_adapter_apply_ex(vm_model *m, const char *path, int samples, vm_adapter_info *info) {
    vm_gguf *g = vm_gguf_open(path);
    if (!g) return -1;
    vm_adapter_info a;
    vm_router *rs[VM_ADAPTER_MAX_LAYERS] = {0};
    vm_lora *los[VM_ADAPTER_MAX_LAYERS] = {0};
    int rc = read_info(m, g, &a);
    for (int i = 0; i < a.n_lora && !rc; i++)
        if (!(los[i] = read_lora(m, g, &a, a.lora_layers[i]))) rc = -1;
    if (!rc && samples > 0) a.opts.samples = samples;
    for (int i = 0; i < a.n_layers && !rc; i++) {
        const int il = a.layers[i];
        if (!(rs[i] = vm_router_create(a.kind, &m->layers[il].rl, &a.opts))) { rc = -1; break; }
        if (rs[i]->n_params <= 0) { rc = vm_err("router kind '%s' has no parameters to load", a.kind); break; }
        for (int j = 0; j < rs[i]->n_params && !rc; j++) rc = load_param(g, il, &rs[i]->params[j]);
        if (!rc && rs[i]->ops->check && rs[i]->ops->check(rs[i])) rc = vm_err_prefix("layer %d", il);
    }
    if (!rc) {
        for (int i = 0; i < a.n_layers; i++) { vm_model_set_router(m, a.layers[i], rs[i]); rs[i] = NULL; }
        for (int i = 0; i < a.n_lora; i++) { vm_model_set_lora(m, a.lora_layers[i], los[i]); los[i] = NULL; }
        if (info) *info = a;
    }
    for (int i = 0; i < VM_ADAPTER_MAX_LAYERS; i++) { vm_router_free(rs[i]); vm_lora_free(los[i]); }
    vm_gguf_free(g);
    return rc ? vm_err_prefix_file("adapter", path) : 0;
}

int vm_adapter_apply(vm_model *m, const char *path) { return vm_adapter_apply_ex(m, path, 0, NULL); }

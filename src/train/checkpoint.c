// Checkpoint write/read (see checkpoint.h).
#include "train/checkpoint.h"
#include "gguf/gguf.h"
#include "util/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int vm_ckpt_write(const char *path, const vm_ckpt_state *s, const vm_adamw *o, const float *best, size_t n_best) {
    vm_gguf_writer *w = vm_gguf_writer_init();
    if (!w) return -1;
    vm_gguf_set_str(w, "general.type", "vmoer-fit-checkpoint");
    vm_gguf_set_u64(w, "ckpt.fingerprint", s->fingerprint);
    vm_gguf_set_i64(w, "ckpt.step", s->step);
    vm_gguf_set_i64(w, "ckpt.adam_step", o->step);
    vm_gguf_set_i64(w, "ckpt.epochs_run", s->epochs_run);
    vm_gguf_set_i64(w, "ckpt.best_epoch", s->best_epoch);
    vm_gguf_set_i64(w, "ckpt.bad", s->bad);
    vm_gguf_set_i64(w, "ckpt.stopped", s->stopped);
    vm_gguf_set_i64(w, "ckpt.ep_n", s->ep_n);
    const double d[] = { s->best_val, s->best_acc, s->val_init, s->acc_init, s->ep_ce, s->ep_obj, s->ce_first, s->ce_last };
    vm_gguf_set_arr(w, "ckpt.f64", VM_GGUF_TYPE_FLOAT64, d, sizeof d / sizeof d[0]);
    int rc = 0;
    for (int i = 0; i < o->n && !rc; i++) {
        const int64_t ne[1] = { vm_param_numel(o->p[i]) };
        const size_t nb = (size_t)ne[0] * sizeof(float);
        char name[64];
        snprintf(name, sizeof name, "p.%d.w", i);
        rc = vm_gguf_add_tensor(w, name, VM_TYPE_F32, 1, ne, o->p[i]->w, nb);
        snprintf(name, sizeof name, "p.%d.m", i);
        if (!rc) rc = vm_gguf_add_tensor(w, name, VM_TYPE_F32, 1, ne, o->m[i], nb);
        snprintf(name, sizeof name, "p.%d.v", i);
        if (!rc) rc = vm_gguf_add_tensor(w, name, VM_TYPE_F32, 1, ne, o->v[i], nb);
    }
    const int64_t nbst[1] = { (int64_t)n_best };
    if (!rc) rc = vm_gguf_add_tensor(w, "best", VM_TYPE_F32, 1, nbst, best, n_best * sizeof(float));
    if (!rc) rc = vm_gguf_write(w, path);
    vm_gguf_writer_free(w);
    return rc ? vm_err_prefix("checkpoint %s", path) : 0;
}

static int load_f32(const vm_gguf *g, const char *name, float *dst, int64_t n) {
    const vm_gguf_tensor_info *t = vm_gguf_find_tensor(g, name);
    if (!t || t->t.type != VM_TYPE_F32 || t->t.ne[0] != n || t->t.n_dims != 1)
        return vm_err("tensor %s missing or of another shape", name);
    memcpy(dst, t->t.data, (size_t)n * sizeof(float));
    return 0;
}

static int geti(const vm_gguf *g, const char *key, int64_t *v) {
    return vm_gguf_get_i64(g, key, v) == 0 ? 0 : vm_err("missing %s", key);
}

int vm_ckpt_read(const char *path, vm_ckpt_state *s, vm_adamw *o, float *best, size_t n_best) {
    vm_gguf *g = vm_gguf_open(path);
    if (!g) return -1;
    int rc = 0;
    char *type = NULL;
    const vm_gguf_kv *fp = vm_gguf_get_kv(g, "ckpt.fingerprint");
    const vm_gguf_kv *f64 = vm_gguf_get_kv(g, "ckpt.f64");
    int64_t step, astep, er, be, bad, stopped, epn;
    if (vm_gguf_get_str(g, "general.type", &type) != 0 || strcmp(type, "vmoer-fit-checkpoint"))
        rc = vm_err("not a fit checkpoint");
    else if (!fp || fp->type != VM_GGUF_TYPE_UINT64 || !f64 || f64->n != 8)
        rc = vm_err("missing ckpt.fingerprint or ckpt.f64");
    else {
        uint64_t u; memcpy(&u, fp->data, 8);
        if (u != s->fingerprint)
            rc = vm_err("written by a fit with other options, data or model; remove it or drop --resume");
    }
    if (!rc && (geti(g, "ckpt.step", &step) || geti(g, "ckpt.adam_step", &astep) || geti(g, "ckpt.epochs_run", &er) ||
                geti(g, "ckpt.best_epoch", &be) || geti(g, "ckpt.bad", &bad) || geti(g, "ckpt.stopped", &stopped) ||
                geti(g, "ckpt.ep_n", &epn))) rc = -1;
    for (int i = 0; i < o->n && !rc; i++) {
        const int64_t n = vm_param_numel(o->p[i]);
        char name[64];
        snprintf(name, sizeof name, "p.%d.w", i);
        rc = load_f32(g, name, o->p[i]->w, n);
        snprintf(name, sizeof name, "p.%d.m", i);
        if (!rc) rc = load_f32(g, name, o->m[i], n);
        snprintf(name, sizeof name, "p.%d.v", i);
        if (!rc) rc = load_f32(g, name, o->v[i], n);
    }
    if (!rc) rc = load_f32(g, "best", best, (int64_t)n_best);
    if (!rc) {
        s->step = step; o->step = astep; s->epochs_run = (int)er; s->best_epoch = (int)be; s->bad = (int)bad;
        s->stopped = (int)stopped; s->ep_n = epn;
        double d[8];
        for (int i = 0; i < 8; i++) d[i] = vm_gguf_arr_num(f64, (uint64_t)i);
        s->best_val = d[0]; s->best_acc = d[1]; s->val_init = d[2]; s->acc_init = d[3];
        s->ep_ce = d[4]; s->ep_obj = d[5]; s->ce_first = d[6]; s->ce_last = d[7];
    }
    free(type);
    vm_gguf_free(g);
    return rc ? vm_err_prefix("checkpoint %s", path) : 0;
}

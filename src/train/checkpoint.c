// Checkpoint write/read (see checkpoint.h).
#include "train/checkpoint.h"
#include "gguf/gguf.h"
#include "util/err.h"

#include <math.h>
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
    return rc ? vm_err_prefix_file("checkpoint", path) : 0;
}

// A value no run writes: the caller adds "checkpoint <path>: ", the message says which field and why.
#define CORRUPT(...) (vm_err(__VA_ARGS__), vm_err_prefix("corrupt"))

// Largest validation NLL a fit reports: the mean of -ln max(p_y, 1e-12) (fit.c validate).
#define MAX_VAL_NLL 27.7

// Tensor `name`: f32 [n], every element finite (and >= 0 for second moments), copied to dst.
static int load_f32(const vm_gguf *g, const char *name, float *dst, int64_t n, int nonneg) {
    const vm_gguf_tensor_info *t = vm_gguf_find_tensor(g, name);
    if (!t || t->t.type != VM_TYPE_F32 || t->t.ne[0] != n || t->t.n_dims != 1)
        return CORRUPT("tensor %s missing or of another shape", name);
    memcpy(dst, t->t.data, (size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(dst[i])) return CORRUPT("tensor %s: element %lld is not finite", name, (long long)i);
        if (nonneg && dst[i] < 0)
            return CORRUPT("tensor %s: element %lld is negative (a second moment)", name, (long long)i);
    }
    return 0;
}

static int geti(const vm_gguf *g, const char *key, int64_t *v) {
    const int rc = vm_gguf_get_i64(g, key, v);
    return rc == 0 ? 0 : rc == 1 ? CORRUPT("missing %s", key) : CORRUPT("%s is not an integer that fits in int64", key);
}

static int in_range(const char *key, int64_t v, int64_t lo, int64_t hi) {
    if (v >= lo && v <= hi) return 0;
    return CORRUPT("%s = %lld is outside [%lld, %lld]", key, (long long)v, (long long)lo, (long long)hi);
}

static int must_be(const char *key, int64_t v, int64_t want, const char *why) {
    return v == want ? 0 : CORRUPT("%s = %lld, expected %lld (%s)", key, (long long)v, (long long)want, why);
}

typedef struct ckpt_ints { int64_t step, adam_step, epochs_run, best_epoch, bad, stopped, ep_n; } ckpt_ints;

// The loop counters against each other and the run (checkpoint.h).
static int check_counters(const ckpt_ints *c, const vm_ckpt_expect *e) {
    if (in_range("ckpt.step", c->step, 1, e->total_steps) ||
        must_be("ckpt.adam_step", c->adam_step, c->step, "one optimiser step per step")) return -1;
    if (e->steps_per_epoch <= 0)   // vmoer train: best_epoch is the best step; no epochs, no early stop
        return in_range("ckpt.best_epoch", c->best_epoch, 0, c->step) ||
               must_be("ckpt.epochs_run", c->epochs_run, 0, "no epochs") || must_be("ckpt.bad", c->bad, 0, "no epochs") ||
               must_be("ckpt.stopped", c->stopped, 0, "no early stop") || must_be("ckpt.ep_n", c->ep_n, 0, "no epochs") ? -1 : 0;
    const int64_t spe = e->steps_per_epoch, done = c->step / spe;
    return must_be("ckpt.epochs_run", c->epochs_run, done, "finished epochs at this step") ||
           must_be("ckpt.ep_n", c->ep_n, (c->step % spe) * e->batch, "examples since the epoch began") ||
           in_range("ckpt.best_epoch", c->best_epoch, 0, done) ||
           must_be("ckpt.bad", c->bad, done - c->best_epoch, "epochs since the best one") ||
           in_range("ckpt.bad", c->bad, 0, e->patience) ||
           must_be("ckpt.stopped", c->stopped, c->bad >= e->patience, "stopped after --patience epochs without improvement")
           ? -1 : 0;
}

// lo <= x <= hi (NaN fails).
static int num_in(const char *what, double x, double lo, double hi) {
    return x >= lo && x <= hi ? 0 : CORRUPT("ckpt.f64 %s = %g is outside [%g, %g]", what, x, lo, hi);
}

static int num_nan(const char *what, double x, const char *why) {
    return isnan(x) ? 0 : CORRUPT("ckpt.f64 %s = %g, expected NaN (%s)", what, x, why);
}

// The running numbers: losses >= 0, accuracies in [0, 1], the best validation NLL no worse than the
// initial one; without validation items the validation numbers are NaN (best: +inf), as written.
static int check_numbers(const vm_ckpt_state *s, const ckpt_ints *c, const vm_ckpt_expect *e) {
    const double big = 1e30;
    if (e->steps_per_epoch <= 0)
        return num_in("val_init", s->val_init, 0, big) || num_in("best_val", s->best_val, 0, s->val_init) ||
               num_in("ce_first", s->ce_first, 0, big) || num_in("ce_last", s->ce_last, 0, big) ? -1 : 0;
    if (e->n_val > 0) {
        if (num_in("val_init", s->val_init, 0, MAX_VAL_NLL) || num_in("best_val", s->best_val, 0, s->val_init) ||
            num_in("acc_init", s->acc_init, 0, 1) || num_in("best_acc", s->best_acc, 0, 1)) return -1;
    } else if (num_nan("val_init", s->val_init, "no validation items") || num_nan("acc_init", s->acc_init, "no validation items") ||
               num_nan("best_acc", s->best_acc, "no validation items") ||
               (s->best_val != INFINITY && CORRUPT("ckpt.f64 best_val = %g, expected inf (no validation items)", s->best_val))) {
        return -1;
    }
    if (num_in("ep_ce", s->ep_ce, 0, big) || num_in("ep_obj", s->ep_obj, -big, big)) return -1;
    if (c->ep_n == 0 && (s->ep_ce != 0 || s->ep_obj != 0))
        return CORRUPT("ckpt.f64 ep_ce/ep_obj = %g/%g with no example in the epoch yet", s->ep_ce, s->ep_obj);
    // before the first epoch ends the epoch means are not set yet (0 or NaN)
    const int set = c->epochs_run > 0;
    if ((set || !isnan(s->ce_first)) && num_in("ce_first", s->ce_first, 0, big)) return -1;
    if ((set || !isnan(s->ce_last)) && num_in("ce_last", s->ce_last, 0, big)) return -1;
    return 0;
}

int vm_ckpt_read(const char *path, vm_ckpt_state *s, vm_adamw *o, float *best, size_t n_best,
                 const vm_ckpt_expect *e) {
    vm_gguf *g = vm_gguf_open(path);
    if (!g) return -1;
    int rc = 0;
    char *type = NULL;
    const vm_gguf_kv *fp = vm_gguf_get_kv(g, "ckpt.fingerprint");
    const vm_gguf_kv *f64 = vm_gguf_get_kv(g, "ckpt.f64");
    ckpt_ints c;
    if (vm_gguf_get_str(g, "general.type", &type) != 0 || strcmp(type, "vmoer-fit-checkpoint"))
        rc = vm_err("not a fit checkpoint");
    else if (!fp || fp->type != VM_GGUF_TYPE_UINT64 || !f64 || f64->type != VM_GGUF_TYPE_ARRAY ||
             f64->arr_type != VM_GGUF_TYPE_FLOAT64 || f64->n != 8)
        rc = CORRUPT("missing ckpt.fingerprint or ckpt.f64 (8 float64)");
    else {
        uint64_t u; memcpy(&u, fp->data, 8);
        if (u != s->fingerprint)
            rc = vm_err("written by a fit with other options, data or model; remove it or drop --resume");
    }
    if (!rc && (geti(g, "ckpt.step", &c.step) || geti(g, "ckpt.adam_step", &c.adam_step) ||
                geti(g, "ckpt.epochs_run", &c.epochs_run) || geti(g, "ckpt.best_epoch", &c.best_epoch) ||
                geti(g, "ckpt.bad", &c.bad) || geti(g, "ckpt.stopped", &c.stopped) || geti(g, "ckpt.ep_n", &c.ep_n) ||
                check_counters(&c, e))) rc = -1;
    vm_ckpt_state t = *s;
    if (!rc) {
        double d[8];
        for (int i = 0; i < 8; i++) d[i] = vm_gguf_arr_num(f64, (uint64_t)i);
        t.best_val = d[0]; t.best_acc = d[1]; t.val_init = d[2]; t.acc_init = d[3];
        t.ep_ce = d[4]; t.ep_obj = d[5]; t.ce_first = d[6]; t.ce_last = d[7];
        rc = check_numbers(&t, &c, e);
    }
    for (int i = 0; i < o->n && !rc; i++) {
        const int64_t n = vm_param_numel(o->p[i]);
        char name[64];
        snprintf(name, sizeof name, "p.%d.w", i);
        rc = load_f32(g, name, o->p[i]->w, n, 0);
        snprintf(name, sizeof name, "p.%d.m", i);
        if (!rc) rc = load_f32(g, name, o->m[i], n, 0);
        snprintf(name, sizeof name, "p.%d.v", i);
        if (!rc) rc = load_f32(g, name, o->v[i], n, 1);
    }
    if (!rc) rc = load_f32(g, "best", best, (int64_t)n_best, 0);
    if (!rc) {   // counters checked above: they fit in an int
        *s = t;
        s->step = c.step; o->step = c.adam_step; s->epochs_run = (int)c.epochs_run; s->best_epoch = (int)c.best_epoch;
        s->bad = (int)c.bad; s->stopped = (int)c.stopped; s->ep_n = c.ep_n;
    }
    free(type);
    vm_gguf_free(g);
    return rc ? vm_err_prefix_file("checkpoint", path) : 0;
}

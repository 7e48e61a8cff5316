// Cost accounting (method.md §5.5): analytic FLOPs per token of every matrix product (2 FLOPs per
// multiply-add), extra router parameters, and the measured wall time of the method against the
// deterministic router on the same prompts.
#include "eval/eval_internal.h"
#include "eval/task_score.h"
#include "util/err.h"

#include <stdlib.h>
#include <string.h>

int vm_cost_flops(const vm_model *m, double ctx_mean, vm_cost *c) {
    if (!m || !c) return vm_err("cost: no model");
    const vm_hparams *hp = &m->hp;
    double common = vm_flops_output(m);
    double rb = 0.0, rm = 0.0;
    for (int l = 0; l < hp->n_layer; l++) {
        const vm_layer *ly = &m->layers[l];
        common += vm_flops_proj(m);
        common += vm_flops_attn(m, ctx_mean);   // over the mean span
        common += vm_flops_ffn(m, l);
        if (!ly->is_moe) continue;
        rb += vm_router_flops(NULL, &ly->rl);
        rm += vm_router_flops(m->routers[l], &ly->rl);
    }
    c->flops_base = common + rb;
    c->flops_method = common + rm;
    c->flops_router_base = rb;
    c->flops_router_method = rm;
    c->ctx_mean = ctx_mean;
    long long pe = 0, pb = 0;
    for (int l = 0; l < hp->n_layer; l++) {
        const vm_router *r = m->routers[l];
        if (!r) continue;
        for (int i = 0; i < r->n_params; i++)
            if (!r->params[i].frozen) pe += (long long)(r->params[i].ne[0] * r->params[i].ne[1]);
    }
    for (int64_t i = 0; i < m->gguf->n_tensors; i++) {
        const vm_tensor *t = &m->gguf->tensors[i].t;
        pb += (long long)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]);
    }
    c->params_extra = pe;
    c->params_base = pb;
    return 0;
}

// One timed pass over the first n items with whatever routers the model has.
static int timed_pass(vm_model *m, vm_ctx *c, const vm_task *task, const vm_dataset *ds, size_t n,
                      double *sec) {
    const double t0 = vm_eval_now();
    for (size_t i = 0; i < n; i++) {
        vm_task_input in;
        vm_task_result r;
        if (vm_task_build(task, &ds->items[i], &in)) continue;   // skipped by the scoring too
        vm_ctx_set_seed(c, vm_eval_stream_seed(1234, i));
        int rc = vm_task_score(m, c, &in, &r);
        vm_task_input_free(&in);
        if (rc) return -1;
    }
    *sec = vm_eval_now() - t0;
    return 0;
}

int vm_cost_time(vm_model *m, const vm_task *task, const vm_dataset *ds, int max_items, vm_cost *c) {
    if (!m || !task || !ds || !c || ds->n == 0) return vm_err("cost: nothing to time");
    const int L = m->hp.n_layer;
    size_t n = max_items > 0 && (size_t)max_items < ds->n ? (size_t)max_items : ds->n;
    vm_router **mine = vm_calloc((size_t)L, sizeof *mine), **det = vm_calloc((size_t)L, sizeof *det);
    vm_ctx *ctx = vm_ctx_init(m, m->hp.n_ctx_train, m->hp.n_ctx_train);
    int rc = mine && det && ctx ? 0 : -1;
    for (int l = 0; l < L && rc == 0; l++) {
        mine[l] = m->routers[l];
        if (mine[l] && !(det[l] = vm_router_deterministic())) rc = -1;
    }
    // alternate base / method twice and keep the faster run of each (warm caches, less noise)
    double best_m = 1e300, best_b = 1e300;
    for (int rep = 0; rep < 2 && rc == 0; rep++) {
        double s;
        for (int l = 0; l < L; l++) if (mine[l]) m->routers[l] = det[l];
        rc = timed_pass(m, ctx, task, ds, n, &s);
        for (int l = 0; l < L; l++) if (mine[l]) m->routers[l] = mine[l];
        if (rc) break;
        if (s < best_b) best_b = s;
        if ((rc = timed_pass(m, ctx, task, ds, n, &s))) break;
        if (s < best_m) best_m = s;
    }
    if (rc == 0) { c->sec_base = best_b; c->sec_method = best_m; }
    if (det) for (int l = 0; l < L; l++) vm_router_free(det[l]);
    free(mine); free(det);
    vm_ctx_free(ctx);
    return rc ? vm_err_prefix("cost") : 0;
}

// One item scored as one tree batch (eval.h vm_scorer_run): the forward of model/train.h over the
// item's tree, the choice scores from the scored rows (data/task.c), and the routers' read-outs at
// the last context row straight from the forward's per-layer buffers (no trace callback).
#include "eval/eval_internal.h"
#include "model/train.h"
#include "util/err.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct vm_scorer {
    const vm_model *m;
    int l0, T_max;
    vm_tctx *tc;
    float *h, *logits;   // (T_max, D), (T_max, V)
};

vm_scorer *vm_scorer_init(const vm_model *m, int l0) {
    if (!m || l0 < 0 || l0 >= m->hp.n_layer) { vm_err("scorer: no model or layer %d out of range", l0); return NULL; }
    vm_scorer *s = vm_calloc(1, sizeof *s);
    if (s) { s->m = m; s->l0 = l0; }
    return s;
}

void vm_scorer_free(vm_scorer *s) {
    if (!s) return;
    vm_tctx_free(s->tc);
    free(s->h); free(s->logits);
    free(s);
}

int vm_scorer_l0(const vm_scorer *s) { return s ? s->l0 : -1; }

// Room for T rows (the context and its buffers are reallocated only when a larger tree comes).
static int grow(vm_scorer *s, int T) {
    if (T <= s->T_max) return 0;
    const size_t D = (size_t)s->m->hp.n_embd, V = (size_t)s->m->hp.n_vocab;
    vm_tctx_free(s->tc);
    free(s->h); free(s->logits);
    s->tc = vm_tctx_init(s->m, s->l0, T);
    s->h = vm_malloc((size_t)T * D * sizeof(float));
    s->logits = vm_malloc((size_t)T * V * sizeof(float));
    s->T_max = s->tc && s->h && s->logits ? T : 0;
    return s->T_max ? 0 : -1;
}

// Read-outs at row `row`: the kinds' own (vm_tctx_router_unc) and the frozen router's gate entropy
// from the router input u, averaged over the chosen MoE layers >= l0 where finite.
static void readouts(const vm_scorer *s, int row, const unsigned char *layers, vm_tree_score_out *out) {
    const vm_model *m = s->m;
    double sum[VM_UNC_COUNT] = {0}, hsum = 0;
    int cnt[VM_UNC_COUNT] = {0}, hcnt = 0;
    for (int il = s->l0; il < m->hp.n_layer; il++) {
        const float *unc = vm_tctx_router_unc(s->tc, il), *u = vm_tctx_router_input(s->tc, il);
        if (!unc || !u || (layers && !layers[il])) continue;
        for (int k = 0; k < VM_UNC_COUNT; k++) {
            const float v = unc[(size_t)row * VM_UNC_COUNT + k];
            if (isfinite(v)) { sum[k] += v; cnt[k]++; }
        }
        const vm_router_layer *L = &m->layers[il].rl;
        float lg[L->n_expert], p[L->n_expert];
        vm_router_logits(L, u + (size_t)row * m->hp.n_embd, 1, lg);
        vm_gate_probs(L, lg, p);
        const double h = vm_gate_entropy(p, L->n_expert);
        if (isfinite(h)) { hsum += h; hcnt++; }
    }
    for (int k = 0; k < VM_UNC_COUNT; k++) out->unc[k] = cnt[k] ? sum[k] / cnt[k] : NAN;
    out->base_gate_entropy = hcnt ? hsum / hcnt : NAN;
}

int vm_scorer_layer_unc(const vm_scorer *s, const vm_task_input *in, int il, float *unc) {
    const float *u = s && in ? vm_tctx_router_unc(s->tc, il) : NULL;
    if (!u) return vm_err("scorer: no read-outs of layer %d", il);
    memcpy(unc, u + (size_t)in->tree.ctx_row * VM_UNC_COUNT, VM_UNC_COUNT * sizeof(float));
    return 0;
}

int vm_scorer_run(vm_scorer *s, const vm_task_input *in, const float *h, vm_rng *rng,
                  const unsigned char *layers, vm_tree_score_out *out) {
    if (!s || !in || !out) return vm_err("scorer: nothing to score");
    const vm_task_tree *t = &in->tree;
    const size_t V = (size_t)s->m->hp.n_vocab;
    if (!t->mem) return vm_err("scorer: an input without its tree (vm_task_tree_build)");
    if (grow(s, t->view.n_rows)) return vm_err_prefix("scorer");
    if (!h) {
        if (vm_model_hidden_tree(s->m, t->tok, &t->view, s->l0, s->h, rng)) return vm_err_prefix("scorer");
        h = s->h;
    }
    if (vm_tctx_forward_tree(s->tc, h, &t->view, t->out_row, t->n_out, s->logits, rng)) return vm_err_prefix("scorer");
    if (in->mode == VM_TASK_LETTER) {
        vm_task_result_letter(in, s->logits, &out->r);
    } else {
        double ll[VM_TASK_MAX_SEQ];
        vm_task_tree_loglik(in, s->logits, (int)V, ll);
        vm_task_result_loglik(in, ll, &out->r);
    }
    readouts(s, t->ctx_row, layers, out);
    return 0;
}

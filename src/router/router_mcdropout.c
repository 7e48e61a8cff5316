// MC-dropout router baseline (method.md §3.3): S router-only samples l_s = W_r (u .* m_s) / (1 - p)
// with m_s ~ Bernoulli(1 - p)^D (inverted dropout), mean logits l_bar = mean_s l_s, then the base
// convention's top-K and gates from l_bar. Same in training and inference; no parameters.
// Because the router is linear, l_bar = W_r (u .* m_bar) with m_bar = mean_s m_s / (1 - p), and
// l_s = (l_det - sum_{d dropped} u_d W_r[:,d]) / (1 - p): only the ~pD dropped columns are touched
// per sample. With p = 0 l_bar == l_det bit for bit.
// Outputs: logits = l_bar, probs = convention(l_bar). Read-outs: gate entropy of probs,
// disagreement = fraction of the S samples whose own top-K set differs from the final one.
// Random stream: per token in order, per sample s = 0..S-1: the dropped inputs in increasing order,
// each as one uniform U giving the gap floor(log(1-U) / log(1-p)) to the next (Bernoulli(p) per
// input, drawn as geometric gaps), until the next drop would lie past D. No draws when p = 0.
#include "router/router_impl.h"

#include <stdlib.h>

typedef struct mcd_state {
    float p;
    int S, T;
    float *wt;                       // (D,N) W_r transposed, f32: the column of input d is wt[d]
    float *mbar; size_t mbar_cap;    // (T,D) mean mask / (1-p), for backward
    float *lbar; size_t lbar_cap;    // (T,N) mean logits
    int32_t *sel; size_t sel_cap;    // (T,K)
} mcd_state;

static int mcd_forward(vm_router *r, const vm_router_layer *L, const float *u, int T,
                       vm_router_out *out, vm_rng *rng) {
    mcd_state *s = r->state;
    if (vm_rt_check_out(L, out, "mcdropout")) return -1;
    if (!rng) return vm_err("router mcdropout: needs a random stream (layer %d)", L->layer);
    const int D = L->n_embd, N = L->n_expert, K = L->n_expert_used, S = s->S;
    const double keep = 1.0 - s->p, lp = log1p(-(double)s->p);
    if (!(s->mbar = vm_rt_grow(s->mbar, &s->mbar_cap, (size_t)T * D * sizeof(float))) ||
        !(s->lbar = vm_rt_grow(s->lbar, &s->lbar_cap, (size_t)T * N * sizeof(float))) ||
        !(s->sel = vm_rt_grow(s->sel, &s->sel_cap, (size_t)T * K * sizeof(int32_t)))) return -1;
    int32_t *ssel = vm_malloc((size_t)S * K * sizeof(int32_t));
    int *ndrop = vm_malloc((size_t)D * sizeof(int));
    if (!ssel || !ndrop) { free(ssel); free(ndrop); return -1; }
    s->T = T;
    vm_router_logits(L, u, T, out->logits);   // l_det, replaced by l_bar below
    double acc[N], sum[N];
    float ls[N];
    for (int t = 0; t < T; t++) {
        const float *ut = u + (size_t)t * D;
        float *l = out->logits + (size_t)t * N;
        for (int i = 0; i < N; i++) sum[i] = 0.0;
        for (int d = 0; d < D; d++) ndrop[d] = 0;
        for (int smp = 0; smp < S; smp++) {
            for (int i = 0; i < N; i++) acc[i] = 0.0;
            // the dropped inputs as gaps of a geometric distribution: ~pD draws instead of D
            for (int d = -1; s->p > 0.0f;) {
                const double gap = floor(log(1.0 - vm_rng_uniform(rng)) / lp);
                if (gap >= (double)(D - 1 - d)) break;
                d += 1 + (int)gap;
                ndrop[d]++;
                const float *col = s->wt + (size_t)d * N;
                for (int i = 0; i < N; i++) acc[i] -= (double)ut[d] * col[i];
            }
            for (int i = 0; i < N; i++) { sum[i] += acc[i]; ls[i] = (float)((l[i] + acc[i]) / keep); }
            vm_gate_select(L, ls, ssel + (size_t)smp * K);
        }
        for (int i = 0; i < N; i++) l[i] = (float)(((double)S * l[i] + sum[i]) / ((double)S * keep));
        for (int d = 0; d < D; d++) s->mbar[(size_t)t * D + d] = (float)((double)(S - ndrop[d]) / ((double)S * keep));
        int32_t *sel = out->sel + (size_t)t * K;
        vm_gate_from_logits(L, l, out->probs + (size_t)t * N, sel, out->gates + (size_t)t * K);
        memcpy(s->lbar + (size_t)t * N, l, (size_t)N * sizeof(float));
        memcpy(s->sel + (size_t)t * K, sel, (size_t)K * sizeof(int32_t));
        int differ = 0;
        for (int smp = 0; smp < S; smp++) differ += !vm_rt_same_set(ssel + (size_t)smp * K, sel, K);
        vm_rt_unc(out->unc, t, NAN, vm_gate_entropy(out->probs + (size_t)t * N, N), NAN, (float)differ / S);
    }
    free(ssel); free(ndrop);
    return 0;
}

// l_bar = W_r (u .* m_bar): du += m_bar .* (W_r^T dl)
static int mcd_backward(vm_router *r, const vm_router_layer *L, const float *u, int T,
                        const vm_router_out *out, const float *dgates, float *du, float reg_weight) {
    (void)u; (void)out; (void)reg_weight;
    mcd_state *s = r->state;
    if (T != s->T) return vm_err("router mcdropout: backward for %d tokens after a forward of %d (layer %d)",
                                 T, s->T, L->layer);
    const int D = L->n_embd, N = L->n_expert, K = L->n_expert_used;
    float *dl = vm_calloc((size_t)T * N, sizeof(float)), *dv = vm_calloc((size_t)T * D, sizeof(float));
    int rc = -1;
    if (!dl || !dv) goto done;
    for (int t = 0; t < T; t++)
        vm_gate_backward(L, s->lbar + (size_t)t * N, s->sel + (size_t)t * K, dgates + (size_t)t * K,
                         dl + (size_t)t * N);
    if (vm_router_logits_backward(L, dl, T, dv)) goto done;
    for (size_t i = 0; i < (size_t)T * D; i++) du[i] += s->mbar[i] * dv[i];
    rc = 0;
done:
    free(dl); free(dv);
    return rc;
}

static double mcd_reg(const vm_router *r) { (void)r; return 0.0; }

static void mcd_free(vm_router *r) {
    if (!r) return;
    mcd_state *s = r->state;
    if (s) { free(s->wt); free(s->mbar); free(s->lbar); free(s->sel); }
    vm_rt_free(r);
}

static const vm_router_ops mcd_ops = { .name = "mcdropout", .forward = mcd_forward, .free = mcd_free,
                                       .backward = mcd_backward, .reg = mcd_reg };

vm_router *vm_router_create_mcdropout(const vm_router_layer *L, const vm_router_opts *o) {
    vm_router *r = vm_rt_alloc(&mcd_ops, sizeof(mcd_state), 0);
    if (!r) return NULL;
    mcd_state *s = r->state;
    s->p = o->dropout;
    s->S = o->samples;
    const int D = L->n_embd, N = L->n_expert;
    float *w = vm_rt_w_gate_f32(L);   // (N,D)
    s->wt = vm_malloc((size_t)D * N * sizeof(float));
    if (!w || !s->wt) { free(w); mcd_free(r); return NULL; }
    for (int i = 0; i < N; i++)
        for (int d = 0; d < D; d++) s->wt[(size_t)d * N + i] = w[(size_t)i * D + d];
    free(w);
    return r;
}

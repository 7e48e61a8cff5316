// Fixed-temperature Sample-K baseline (method.md §3.3): K draws without replacement from
// softmax(l_det / T) by the Gumbel-top-K trick, gates from the UNSCALED logits l_det of the chosen
// experts by the base convention. No parameters; backward flows through l_det = W_r u.
// Outputs: logits = l_det (what the gates come from), probs = the convention's probabilities of
// l_det / T (what the selection was drawn from). Read-out: gate entropy H(softmax(l_det / T)).
// Random stream: one vm_rng_u64 of the caller's stream gives `base`; token t draws its N Gumbels
// (expert 0..N-1; N rounded up to even) from its own stream vm_rng_seed2(base, t) by
// vm_vec_gumbels (router_vec.h). Tokens run in parallel: same result for any thread count.
#include "router/router_impl.h"
#include "router/router_vec.h"
#include "kernels/ops.h"

#include <omp.h>
#include <stdlib.h>

typedef struct ts_state {
    float temp;
    int T;                 // tokens of the last forward
    int32_t *sel; size_t sel_cap;   // (T,K) the drawn selection, for backward
} ts_state;

static int ts_forward(vm_router *r, const vm_router_layer *L, const float *u, int T,
                      vm_router_out *out, vm_rng *rng) {
    ts_state *s = r->state;
    if (vm_rt_check_out(L, out, "temp-sample")) return -1;
    if (!rng) return vm_err("router temp-sample: needs a random stream (layer %d)", L->layer);
    const int N = L->n_expert, K = L->n_expert_used;
    if (!(s->sel = vm_rt_grow(s->sel, &s->sel_cap, (size_t)T * K * sizeof(int32_t)))) return -1;
    s->T = T;
    vm_router_logits(L, u, T, out->logits);
    // tokens in parallel, token t drawing from its own stream (base, t): thread-count independent
    const uint64_t base = vm_rng_u64(rng);
    const int Np = (N + 1) & ~1;
    #pragma omp parallel if (T > 1 && omp_get_max_threads() > 1)
    {
        float gum[Np], scr[Np], z[N], zg[N], sm[N];
        #pragma omp for schedule(static)
        for (int t = 0; t < T; t++) {
            const float *l = out->logits + (size_t)t * N;
            int32_t *sel = out->sel + (size_t)t * K;
            vm_rng g;
            vm_rng_seed2(&g, base, (uint64_t)t);
            vm_vec_gumbels(&g, gum, scr, Np);
            for (int i = 0; i < N; i++) { z[i] = l[i] / s->temp; zg[i] = z[i] + gum[i]; }
            vm_gate_select(L, zg, sel);
            vm_gate_at(L, l, sel, out->gates + (size_t)t * K);
            vm_gate_probs(L, z, out->probs + (size_t)t * N);
            memcpy(s->sel + (size_t)t * K, sel, (size_t)K * sizeof(int32_t));
            if (out->unc) {
                vm_softmax_forward(sm, z, N);
                vm_rt_unc(out->unc, t, NAN, vm_gate_entropy(sm, N), s->temp, NAN);
            }
        }
    }
    return 0;
}

static int ts_backward(vm_router *r, const vm_router_layer *L, const float *u, int T,
                       const vm_router_out *out, const float *dgates, float *du, float reg_weight) {
    (void)out; (void)reg_weight;
    ts_state *s = r->state;
    if (T != s->T) return vm_err("router temp-sample: backward for %d tokens after a forward of %d (layer %d)",
                                 T, s->T, L->layer);
    const int N = L->n_expert, K = L->n_expert_used;
    float *l = vm_malloc((size_t)T * N * sizeof(float)), *dl = vm_calloc((size_t)T * N, sizeof(float));
    int rc = -1;
    if (!l || !dl) goto done;
    vm_router_logits(L, u, T, l);
    for (int t = 0; t < T; t++)
        vm_gate_backward(L, l + (size_t)t * N, s->sel + (size_t)t * K, dgates + (size_t)t * K,
                         dl + (size_t)t * N);
    rc = vm_router_logits_backward(L, dl, T, du);
done:
    free(l); free(dl);
    return rc;
}

static double ts_reg(const vm_router *r) { (void)r; return 0.0; }

static void ts_free(vm_router *r) {
    if (!r) return;
    ts_state *s = r->state;
    if (s) free(s->sel);
    vm_rt_free(r);
}

const vm_router_ops vm_router_ops_temp_sample = {
    .name = "temp-sample", .flags = VM_ROUTER_STOCHASTIC | VM_ROUTER_SAMPLED_SELECTION,
    .unc = VM_UNC_BIT(VM_UNC_GATE_ENTROPY) | VM_UNC_BIT(VM_UNC_TEMPERATURE),
    .flops = NULL,   // W_r u; the Gumbel draws are not matrix products
    .forward = ts_forward, .free = ts_free, .backward = ts_backward, .reg = ts_reg };

vm_router *vm_router_create_temp_sample(const vm_router_layer *L, const vm_router_opts *o) {
    (void)L;
    vm_router *r = vm_rt_alloc(&vm_router_ops_temp_sample, sizeof(ts_state), 0);
    if (!r) return NULL;
    ((ts_state *)r->state)->temp = o->temp;
    return r;
}

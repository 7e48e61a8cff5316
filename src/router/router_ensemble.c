// Deep-ensemble router baseline (method.md §3.3): M MAP routers ("ensemble.w_r.<m>", ne = [D, N]).
// Decision (documented): the members start from the pretrained W_r plus seeded noise,
//   W_m = W_r + member_noise * rms(W_r) * N(0, 1)   (stream vm_rt_init_rng(seed, layer, m)),
// so they differ from the first step (the paper trains members "from different seeds"). With
// member_noise = 0 every member equals W_r.
// Inference: p_bar = mean_m convention(W_m u); selection and gates from p_bar (vm_gate_from_probs).
// Outputs: logits = mean_m W_m u, probs = p_bar; read-outs: gate entropy of p_bar, disagreement =
// fraction of members whose own top-K set differs from the final one.
// Training: each forward call routes with ONE member m drawn uniformly from the caller's stream
// (one vm_rng_u64 per call, none when M = 1) as a plain MAP router, and backward updates only that
// member: over a fit each member is trained as an independent MAP router on a random 1/M of the
// batches, which keeps the members independent as in a deep ensemble.
#include "router/router_impl.h"
#include "kernels/ops.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct ens_state {
    int M, T, member;               // member: the one used by the last training forward, -1 otherwise
    float *lm; size_t lm_cap;       // (T,N) scratch: one member's logits
} ens_state;

static vm_tensor member_view(const vm_router_layer *L, const float *w) {
    vm_tensor t;
    const int64_t ne[2] = { L->n_embd, L->n_expert };
    vm_tensor_init(&t, "ensemble.w_r", VM_TYPE_F32, 2, ne, w);
    return t;
}

static int ens_forward(vm_router *r, const vm_router_layer *L, const float *u, int T,
                       vm_router_out *out, vm_rng *rng) {
    ens_state *s = r->state;
    if (vm_rt_check_out(L, out, "ensemble")) return -1;
    const int N = L->n_expert, K = L->n_expert_used, M = s->M;
    s->T = T;
    s->member = -1;
    if (r->training) {
        if (M > 1 && !rng) return vm_err("router ensemble: training needs a random stream (layer %d)", L->layer);
        const int m = M > 1 ? (int)(vm_rng_u64(rng) % (uint64_t)M) : 0;
        const vm_tensor w = member_view(L, r->params[m].w);
        vm_matmul_forward(out->logits, u, &w, NULL, T);
        for (int t = 0; t < T; t++) {
            vm_gate_from_logits(L, out->logits + (size_t)t * N, out->probs + (size_t)t * N,
                                out->sel + (size_t)t * K, out->gates + (size_t)t * K);
            vm_rt_unc(out->unc, t, NAN, vm_gate_entropy(out->probs + (size_t)t * N, N), NAN, NAN);
        }
        s->member = m;
        return 0;
    }
    if (!(s->lm = vm_rt_grow(s->lm, &s->lm_cap, (size_t)T * N * sizeof(float)))) return -1;
    int32_t *msel = vm_malloc((size_t)T * M * K * sizeof(int32_t));
    double *lsum = vm_calloc((size_t)T * N, sizeof(double)), *psum = vm_calloc((size_t)T * N, sizeof(double));
    if (!msel || !lsum || !psum) { free(msel); free(lsum); free(psum); return -1; }
    float p[N];
    for (int m = 0; m < M; m++) {
        const vm_tensor w = member_view(L, r->params[m].w);
        vm_matmul_forward(s->lm, u, &w, NULL, T);
        for (int t = 0; t < T; t++) {
            const float *l = s->lm + (size_t)t * N;
            vm_gate_probs(L, l, p);
            for (int i = 0; i < N; i++) { lsum[(size_t)t * N + i] += l[i]; psum[(size_t)t * N + i] += p[i]; }
            vm_gate_select(L, l, msel + ((size_t)t * M + m) * K);
        }
    }
    for (int t = 0; t < T; t++) {
        float *pb = out->probs + (size_t)t * N;
        for (int i = 0; i < N; i++) {
            out->logits[(size_t)t * N + i] = (float)(lsum[(size_t)t * N + i] / M);
            pb[i] = (float)(psum[(size_t)t * N + i] / M);
        }
        int32_t *sel = out->sel + (size_t)t * K;
        vm_gate_from_probs(L, pb, sel, out->gates + (size_t)t * K);
        int differ = 0;
        for (int m = 0; m < M; m++) differ += !vm_rt_same_set(msel + ((size_t)t * M + m) * K, sel, K);
        vm_rt_unc(out->unc, t, NAN, vm_gate_entropy(pb, N), NAN, (float)differ / M);
    }
    free(msel); free(lsum); free(psum);
    return 0;
}

// Training forward only: the member that routed, as a MAP router (recomputed from u).
static int ens_backward(vm_router *r, const vm_router_layer *L, const float *u, int T,
                        const vm_router_out *out, const float *dgates, float *du, float reg_weight) {
    (void)out; (void)reg_weight;
    ens_state *s = r->state;
    if (s->member < 0 || T != s->T)
        return vm_err("router ensemble: backward needs a training-mode forward of the same %d tokens (layer %d)",
                      T, L->layer);
    const int D = L->n_embd, N = L->n_expert, K = L->n_expert_used;
    vm_param *P = &r->params[s->member];
    if (!(s->lm = vm_rt_grow(s->lm, &s->lm_cap, (size_t)T * N * sizeof(float)))) return -1;
    const vm_tensor w = member_view(L, P->w);
    vm_matmul_forward(s->lm, u, &w, NULL, T);
    float p[N], g[K], dl[N];
    int32_t sel[K];
    for (int t = 0; t < T; t++) {
        const float *lt = s->lm + (size_t)t * N;
        vm_gate_from_logits(L, lt, p, sel, g);
        for (int i = 0; i < N; i++) dl[i] = 0.0f;
        vm_gate_backward(L, lt, sel, dgates + (size_t)t * K, dl);
        vm_rt_matvec_backward(P->g, du + (size_t)t * D, P->w, u + (size_t)t * D, dl, N, D);
    }
    return 0;
}

static double ens_reg(const vm_router *r) { (void)r; return 0.0; }

static void ens_free(vm_router *r) {
    if (!r) return;
    ens_state *s = r->state;
    if (s) free(s->lm);
    vm_rt_free(r);
}

static double ens_flops(const vm_router *r, const vm_router_layer *L) {   // M members' W_m u
    return ((const ens_state *)r->state)->M * 2.0 * L->n_embd * L->n_expert;
}

const vm_router_ops vm_router_ops_ensemble = {
    .name = "ensemble", .flags = VM_ROUTER_TRAINABLE,
    .unc = VM_UNC_BIT(VM_UNC_GATE_ENTROPY) | VM_UNC_BIT(VM_UNC_DISAGREEMENT),
    .flops = ens_flops,
    .forward = ens_forward, .free = ens_free, .backward = ens_backward, .reg = ens_reg };

vm_router *vm_router_create_ensemble(const vm_router_layer *L, const vm_router_opts *o) {
    const int D = L->n_embd, N = L->n_expert, M = o->members;
    vm_router *r = vm_rt_alloc(&vm_router_ops_ensemble, sizeof(ens_state), M);
    if (!r) return NULL;
    ens_state *s = r->state;
    s->M = M;
    s->member = -1;
    float *w = vm_rt_w_gate_f32(L);
    if (!w) { ens_free(r); return NULL; }
    const size_t n = (size_t)N * D;
    double ss = 0.0;
    for (size_t i = 0; i < n; i++) ss += (double)w[i] * w[i];
    const float rms = (float)sqrt(ss / (double)n);
    for (int m = 0; m < M; m++) {
        char name[64];
        snprintf(name, sizeof name, "ensemble.w_r.%d", m);
        if (vm_rt_param(&r->params[m], name, D, N)) { free(w); ens_free(r); return NULL; }
        vm_rng g;
        vm_rt_init_rng(&g, o->seed, L->layer, m);
        for (size_t i = 0; i < n; i++)
            r->params[m].w[i] = o->member_noise > 0.0f ? w[i] + o->member_noise * rms * vm_rng_normal(&g) : w[i];
    }
    free(w);
    return r;
}

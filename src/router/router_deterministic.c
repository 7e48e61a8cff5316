// The pretrained router: l = W_r u, then the layer's gate convention. No state: backward
// recomputes the logits and the (deterministic) selection from u.
#include "router/router_impl.h"

#include <stdlib.h>

static int det_forward(vm_router *r, const vm_router_layer *L, const float *u, int T,
                       vm_router_out *out, vm_rng *rng) {
    (void)r; (void)rng;
    if (vm_rt_check_out(L, out, "deterministic")) return -1;
    const int N = L->n_expert, K = L->n_expert_used;
    vm_router_logits(L, u, T, out->logits);
    for (int t = 0; t < T; t++) {
        vm_gate_from_logits(L, out->logits + (size_t)t * N, out->probs + (size_t)t * N,
                            out->sel + (size_t)t * K, out->gates + (size_t)t * K);
        vm_rt_unc(out->unc, t, NAN, vm_gate_entropy(out->probs + (size_t)t * N, N), NAN, NAN);
    }
    return 0;
}

// dgates (T,K) -> du (T,D) += W_r^T dl
static int det_backward(vm_router *r, const vm_router_layer *L, const float *u, int T,
                        const vm_router_out *out, const float *dgates, float *du, float reg_weight) {
    (void)r; (void)out; (void)reg_weight;
    const int N = L->n_expert, K = L->n_expert_used;
    float *l = vm_malloc((size_t)T * N * sizeof(float)), *dl = vm_calloc((size_t)T * N, sizeof(float));
    float p[N], g[K];
    int32_t sel[K];
    int rc = -1;
    if (!l || !dl) goto done;
    vm_router_logits(L, u, T, l);
    for (int t = 0; t < T; t++) {
        vm_gate_from_logits(L, l + (size_t)t * N, p, sel, g);
        vm_gate_backward(L, l + (size_t)t * N, sel, dgates + (size_t)t * K, dl + (size_t)t * N);
    }
    rc = vm_router_logits_backward(L, dl, T, du);
done:
    free(l); free(dl);
    return rc;
}

static double det_reg(const vm_router *r) { (void)r; return 0.0; }

const vm_router_ops vm_router_ops_deterministic = {
    .name = "deterministic", .flags = 0, .unc = VM_UNC_BIT(VM_UNC_GATE_ENTROPY),
    .flops = NULL,   // W_r u
    .forward = det_forward, .free = vm_rt_free, .backward = det_backward, .reg = det_reg };

vm_router *vm_router_deterministic(void) { return vm_rt_alloc(&vm_router_ops_deterministic, 0, 0); }

vm_router *vm_router_create_deterministic(const vm_router_layer *L, const vm_router_opts *o) {
    (void)L; (void)o;
    return vm_router_deterministic();
}

// MAP router (method.md §3.3): a trainable f32 copy of W_r ("map.w_r", ne = [D, N]), initialised
// to the pretrained weights, then the base convention's top-K and gates. At initialisation it
// routes exactly like the deterministic router (bit-identical when W_r is f32).
#include "router/router_impl.h"
#include "kernels/ops.h"

#include <stdlib.h>

// The trainable matrix as a tensor view, so the logits use the same kernel as W_r.
static vm_tensor map_view(const vm_router_layer *L, const float *w) {
    vm_tensor t;
    const int64_t ne[2] = { L->n_embd, L->n_expert };
    vm_tensor_init(&t, "map.w_r", VM_TYPE_F32, 2, ne, w);
    return t;
}

static int map_forward(vm_router *r, const vm_router_layer *L, const float *u, int T,
                       vm_router_out *out, vm_rng *rng) {
    (void)rng;
    if (vm_rt_check_out(L, out, "map")) return -1;
    const int N = L->n_expert, K = L->n_expert_used;
    const vm_tensor w = map_view(L, r->params[0].w);
    vm_matmul_forward(out->logits, u, &w, NULL, T);
    for (int t = 0; t < T; t++) {
        vm_gate_from_logits(L, out->logits + (size_t)t * N, out->probs + (size_t)t * N,
                            out->sel + (size_t)t * K, out->gates + (size_t)t * K);
        vm_rt_unc(out->unc, t, NAN, vm_gate_entropy(out->probs + (size_t)t * N, N), NAN, NAN);
    }
    return 0;
}

// Recomputes logits and selection from u (deterministic), then dW += dl u^T, du += W^T dl.
static int map_backward(vm_router *r, const vm_router_layer *L, const float *u, int T,
                        const vm_router_out *out, const float *dgates, float *du, float reg_weight) {
    (void)out; (void)reg_weight;
    return vm_rt_linear_backward(L, &r->params[0], u, T, dgates, du);
}

static double map_reg(const vm_router *r) { (void)r; return 0.0; }

const vm_router_ops vm_router_ops_map = {
    .name = "map", .flags = VM_ROUTER_TRAINABLE, .unc = VM_UNC_BIT(VM_UNC_GATE_ENTROPY),
    .flops = NULL,   // its own W_r u
    .forward = map_forward, .free = vm_rt_free, .backward = map_backward, .reg = map_reg };

vm_router *vm_router_create_map(const vm_router_layer *L, const vm_router_opts *o) {
    (void)o;
    vm_router *r = vm_rt_alloc(&vm_router_ops_map, 0, 1);
    if (!r) return NULL;
    float *w = vm_rt_w_gate_f32(L);
    if (!w || vm_rt_param(&r->params[0], "map.w_r", L->n_embd, L->n_expert)) { free(w); vm_rt_free(r); return NULL; }
    memcpy(r->params[0].w, w, (size_t)L->n_embd * L->n_expert * sizeof(float));
    free(w);
    return r;
}

// The pretrained router: l = W_r u, then the layer's gate convention. No state.
#include "router/router.h"
#include "util/err.h"

#include <stdlib.h>

static int det_forward(vm_router *r, const vm_router_layer *L, const float *u, int T,
                       vm_router_out *out, vm_rng *rng) {
    (void)r; (void)rng;
    if (!out->logits || !out->probs || !out->sel || !out->gates)
        return vm_err("router deterministic: missing output buffer (layer %d)", L->layer);
    const int N = L->n_expert, K = L->n_expert_used;
    vm_router_logits(L, u, T, out->logits);
    for (int t = 0; t < T; t++)
        vm_gate_from_logits(L, out->logits + (size_t)t * N, out->probs + (size_t)t * N,
                            out->sel + (size_t)t * K, out->gates + (size_t)t * K);
    return 0;
}

static void det_free(vm_router *r) { free(r); }

static const vm_router_ops det_ops = { .name = "deterministic", .forward = det_forward, .free = det_free };

vm_router *vm_router_deterministic(void) {
    vm_router *r = vm_calloc(1, sizeof *r);
    if (!r) return NULL;
    r->ops = &det_ops;
    return r;
}

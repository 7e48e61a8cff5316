// Internal helpers shared by the router kinds (router_<kind>.c): allocation of a router with its
// parameter list, growable caches for backward, small f32 matrix-vector products, initialisers.
#pragma once
#include "router/router.h"
#include "util/err.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

// Constructors of the kinds (called by vm_router_create after the layer and options were checked).
vm_router *vm_router_create_deterministic(const vm_router_layer *L, const vm_router_opts *o);
vm_router *vm_router_create_map(const vm_router_layer *L, const vm_router_opts *o);
vm_router *vm_router_create_temp_sample(const vm_router_layer *L, const vm_router_opts *o);
vm_router *vm_router_create_mcdropout(const vm_router_layer *L, const vm_router_opts *o);
vm_router *vm_router_create_ensemble(const vm_router_layer *L, const vm_router_opts *o);
vm_router *vm_router_create_vglr_mf(const vm_router_layer *L, const vm_router_opts *o);
vm_router *vm_router_create_vglr_fc(const vm_router_layer *L, const vm_router_opts *o);
vm_router *vm_router_create_vtsr(const vm_router_layer *L, const vm_router_opts *o);
vm_router *vm_router_create_swag(const vm_router_layer *L, const vm_router_opts *o);

// The kinds' ops (router_<kind>.c), for the registry's table in router.c.
extern const vm_router_ops vm_router_ops_deterministic, vm_router_ops_map, vm_router_ops_temp_sample,
    vm_router_ops_mcdropout, vm_router_ops_ensemble, vm_router_ops_vglr_mf, vm_router_ops_vglr_fc,
    vm_router_ops_vtsr, vm_router_ops_swag;

// A router with `state_size` bytes of zeroed state and n_params zeroed vm_param slots.
vm_router *vm_rt_alloc(const vm_router_ops *ops, size_t state_size, int n_params);
// Names the parameter, allocates zeroed w and g of ne0*ne1 floats (ne1 = 1: a vector).
int vm_rt_param(vm_param *p, const char *name, int64_t ne0, int64_t ne1);
// Frees the params, the state and r (state must not own other memory, or free it first).
void vm_rt_free(vm_router *r);
// Returns a buffer of at least n bytes: old when *cap suffices, else a new one (old freed, contents
// not kept). NULL (old freed, *cap = 0) on failure. Use as p = vm_rt_grow(p, &cap, n).
void *vm_rt_grow(void *old, size_t *cap, size_t n);
// All four output buffers present, else -1 with an error naming the kind.
int vm_rt_check_out(const vm_router_layer *L, const vm_router_out *out, const char *kind);
// An f32 (N,D) copy of W_r (dequantised), or NULL.
float *vm_rt_w_gate_f32(const vm_router_layer *L);
// Writes one token's read-outs (NaN = none) when unc is not NULL.
static inline void vm_rt_unc(float *unc, int t, float ilv, float ent, float temp, float dis) {
    if (!unc) return;
    float *u = unc + (size_t)t * VM_UNC_COUNT;
    u[VM_UNC_ILV] = ilv; u[VM_UNC_GATE_ENTROPY] = ent;
    u[VM_UNC_TEMPERATURE] = temp; u[VM_UNC_DISAGREEMENT] = dis; u[VM_UNC_ILV_DEV] = NAN;
    u[VM_UNC_PROB_VAR] = NAN;
}
// 1 when the two selections hold the same set of experts (order ignored).
static inline int vm_rt_same_set(const int32_t *a, const int32_t *b, int k) {
    for (int i = 0; i < k; i++) {
        int found = 0;
        for (int j = 0; j < k && !found; j++) found = a[i] == b[j];
        if (!found) return 0;
    }
    return 1;
}

// out (B,M) = inp (B,C) W^T for an f32 W (M,C): the library's matmul kernel (vectorised,
// parallel over rows, result independent of the thread count).
void vm_rt_matmul(float *out, const float *inp, const float *W, int B, int C, int M);
// Backward of vm_rt_matmul: dW (M,C) += dout^T inp; dinp (B,C) += dout W (dinp may be NULL).
void vm_rt_matmul_backward(float *dW, float *dinp, const float *W, const float *inp, const float *dout,
                           int B, int C, int M);

// Backward of a linear head l = W u (W = P->w, f32 (N, D)) under the layer's gate convention (map,
// and swag's iterate): recomputes l (vm_rt_matmul, the forward's kernel) and the selection from u,
// then P->g += dl u^T and du += W^T dl. 0, or -1 on allocation failure.
int vm_rt_linear_backward(const vm_router_layer *L, vm_param *P, const float *u, int T, const float *dgates,
                          float *du);

// y (M) = W (M,C) x (C), accumulating in f32 in a fixed order.
static inline void vm_rt_matvec(float *y, const float *W, const float *x, int M, int C) {
    for (int m = 0; m < M; m++) {
        const float *w = W + (size_t)m * C;
        float s = 0.0f;
        for (int c = 0; c < C; c++) s += w[c] * x[c];
        y[m] = s;
    }
}
// Backward of y = W x: dW (M,C) += dy x^T; dx (C) += W^T dy (dx may be NULL).
static inline void vm_rt_matvec_backward(float *dW, float *dx, const float *W, const float *x,
                                         const float *dy, int M, int C) {
    for (int m = 0; m < M; m++) {
        const float g = dy[m];
        if (g == 0.0f) continue;
        float *dw = dW + (size_t)m * C;
        const float *w = W + (size_t)m * C;
        for (int c = 0; c < C; c++) dw[c] += g * x[c];
        if (dx) for (int c = 0; c < C; c++) dx[c] += g * w[c];
    }
}

static inline float vm_rt_softplus(float x) {
    return x > 20.0f ? x : (float)log1p(exp((double)x));
}
static inline float vm_rt_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// Parameter-init stream of (seed, layer, tensor index): different layers and tensors differ.
static inline void vm_rt_init_rng(vm_rng *g, uint64_t seed, int layer, int which) {
    vm_rng_seed2(g, seed, ((uint64_t)(uint32_t)layer << 16) | (uint64_t)(which & 0xffff) | (1ULL << 48));
}

// The router interface: per MoE layer, turns the router input u into selected experts and gate
// weights under the base model's gate convention (method.md §2). The model calls only this
// interface, so deterministic, MAP and Bayesian routers (method.md §3) plug in per layer without
// touching model code. Kinds live one per file (router_<kind>.c) plus a line in router.c.
#pragma once
#include <stdint.h>
#include "quant/tensor.h"
#include "util/rng.h"
#include "vmoer.h"   // the interface types (vm_router_ops, vm_router_layer, ...) are public

// The public part of the interface -- the types, vm_router_create / _free / _deterministic,
// vm_router_kind_names / _ops, vm_router_logits, vm_gate_from_logits / _from_probs, vm_gate_entropy
// -- is declared in vmoer.h; what follows is the library's own.

// "a, b, c": the kinds whose flags include all of `need` (0: every kind), for help texts and errors.
// Returns buf (truncated to n bytes).
const char *vm_router_kind_list(unsigned need, char *buf, size_t n);
// The kind's default regulariser weight beta (vglr 1, vtsr 0.01); 0 for a kind without a regulariser
// (map, ensemble, swag: nothing for a beta grid to choose) or an unknown name.
float vm_router_kind_beta(const char *kind);
// FLOPs per token of router r on layer L by its kind's formula (r NULL: the deterministic router).
double vm_router_flops(const vm_router *r, const vm_router_layer *L);

// ---- More shared building blocks (one token each unless said otherwise) ----
// probs (N) from logits by the convention: softmax or sigmoid.
void vm_gate_probs(const vm_router_layer *L, const float *logits, float *probs);
// The convention's selection rule applied to logits (selection bias and groups included).
void vm_gate_select(const vm_router_layer *L, const float *logits, int32_t *sel);
// gates (K) by the convention from logits for a GIVEN selection sel (K distinct experts).
void vm_gate_at(const vm_router_layer *L, const float *logits, const int32_t *sel, float *gates);
// Backward of vm_gate_at (and of vm_gate_from_logits): dlogits (N) += (d gates / d logits)^T dgates.
void vm_gate_backward(const vm_router_layer *L, const float *logits, const int32_t *sel,
                      const float *dgates, float *dlogits);
// du (T,D) += dlogits (T,N) W_r: the backward of vm_router_logits (any compute type of W_r).
int vm_router_logits_backward(const vm_router_layer *L, const float *dlogits, int T, float *du);

// LoRA on a layer's attention Q, K and V projections (method.md §4, "stage 1" task adaptation):
// W' = W + scale * B A with A (r, D) and B (out, r), scale = alpha / r (Hu et al. 2021). B starts
// at 0, so a fresh LoRA leaves the model unchanged; A starts N(0, 1/D). The frozen W stays in the
// file; the delta is applied as two thin products per token, never materialised.
#pragma once
#include <stdint.h>
#include "router/router.h"

#define VM_LORA_MAX_RANK 64

typedef enum vm_lora_proj { VM_LORA_Q = 0, VM_LORA_K, VM_LORA_V, VM_LORA_COUNT } vm_lora_proj;

typedef struct vm_lora {
    int rank;
    float alpha, scale;              // scale = alpha / rank
    vm_param p[2 * VM_LORA_COUNT];   // "lora.q.a" (ne {D, r}), "lora.q.b" (ne {r, qd}), then k, v
} vm_lora;

typedef struct vm_model vm_model;

// A fresh LoRA for layer `layer` of m (seeded A, zero B). NULL + vm_err for a bad rank or a model
// whose attention has no plain Q/K/V projections (deepseek2's MLA).
vm_lora *vm_lora_create(const vm_model *m, int layer, int rank, float alpha, uint64_t seed);
void vm_lora_free(vm_lora *l);
// Installs l on layer (takes ownership; NULL removes the layer's LoRA). 0 or -1.
int vm_model_set_lora(vm_model *m, int layer, vm_lora *l);
const vm_lora *vm_model_lora(const vm_model *m, int layer);

// out (B,out) += scale * (x A^T) B^T for projection j: the forward delta.
void vm_lora_forward(const vm_lora *l, int j, const float *x, int B, float *out);
// Backward of vm_lora_forward given dout (B,out): accumulates dA, dB into the params' g and
// adds dL/dx into dx (B,D).
void vm_lora_backward(vm_lora *l, int j, const float *x, const float *dout, int B, float *dx);

// Typed weight view: a tensor inside a mapped GGUF file (or any buffer). Nothing copies weights
// at load time; kernels take views. ne[0] is the contiguous (row) dimension, as in ggml:
// a matrix W used as y = W x has ne[0] = in_features, ne[1] = out_features.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include "quant/quant.h"

typedef struct vm_tensor {
    const char *name;
    vm_type type;
    int n_dims;
    int64_t ne[4];   // elements per dimension (unused dims are 1)
    size_t nb[4];    // byte strides: nb[1] = row size, nb[2] = nb[1]*ne[1], ...
    const void *data;
} vm_tensor;

// Fills ne/nb for a contiguous tensor of the given type.
void vm_tensor_init(vm_tensor *t, const char *name, vm_type type, int n_dims, const int64_t *ne, const void *data);
// A view of the i-th slice along dimension 2 (one expert of a stacked [in, out, n_expert] tensor).
vm_tensor vm_tensor_slice2(const vm_tensor *t, int64_t i);
int64_t vm_tensor_nelements(const vm_tensor *t);
size_t vm_tensor_nbytes(const vm_tensor *t);

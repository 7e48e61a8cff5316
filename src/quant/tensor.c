// Tensor views: shapes and byte strides over borrowed data (usually a GGUF mapping).
#include "quant/tensor.h"
#include "util/err.h"

#include <string.h>

void vm_tensor_init(vm_tensor *t, const char *name, vm_type type, int n_dims, const int64_t *ne, const void *data) {
    memset(t, 0, sizeof *t);
    t->name = name;
    t->type = type;
    t->n_dims = n_dims < 1 ? 1 : n_dims > 4 ? 4 : n_dims;
    t->data = data;
    for (int i = 0; i < 4; i++) t->ne[i] = (i < n_dims && ne) ? ne[i] : 1;
    const vm_type_traits *tr = vm_type_get((int)type);
    if (!tr) return;   // unknown type: strides stay 0, nbytes() is 0
    // nb[0] is the size of one block, as in ggml; rows are whole blocks
    t->nb[0] = tr->type_size;
    t->nb[1] = tr->type_size * (size_t)(t->ne[0] / tr->blck_size);
    for (int i = 2; i < 4; i++) t->nb[i] = t->nb[i - 1] * (size_t)t->ne[i - 1];
}

vm_tensor vm_tensor_slice2(const vm_tensor *t, int64_t i) {
    vm_tensor s = *t;
    if (i < 0 || i >= t->ne[2]) {
        vm_err("tensor '%s': slice %lld out of range [0, %lld)", t->name ? t->name : "?",
               (long long)i, (long long)t->ne[2]);
        s.data = NULL;
        s.ne[2] = 0;
        return s;
    }
    s.data = t->data ? (const char *)t->data + (size_t)i * t->nb[2] : NULL;
    s.ne[2] = 1;
    // one expert of a stacked [in, out, n_expert] tensor is an ordinary matrix
    if (s.ne[3] == 1) {
        s.nb[3] = s.nb[2];
        if (s.n_dims > 2) s.n_dims = 2;
    }
    return s;
}

int64_t vm_tensor_nelements(const vm_tensor *t) {
    return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
}

size_t vm_tensor_nbytes(const vm_tensor *t) {
    const vm_type_traits *tr = vm_type_get((int)t->type);
    if (!tr) return 0;
    for (int i = 0; i < 4; i++)
        if (t->ne[i] <= 0) return 0;
    // last byte reached through the strides (views may be non-contiguous in dims >= 1)
    size_t n = (size_t)(t->ne[0] / tr->blck_size) * t->nb[0];
    for (int i = 1; i < 4; i++) n += (size_t)(t->ne[i] - 1) * t->nb[i];
    return n;
}

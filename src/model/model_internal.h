// Loader helpers shared by model.c and the arch_<name>.c files (not part of the public interface).
#pragma once
#include "model/model.h"

// Looks up `name` and checks its shape against ne (n_dims entries; trailing dims must be 1) and
// that vmoer can compute its type. Returns 0 (found, *out filled), 1 (absent and !required) or
// -1 with a one-line error naming the tensor and the expected shape.
int vm_model_tensor(const vm_model *m, vm_tensor *out, const char *name, int n_dims,
                    const int64_t *ne, int required);
// A norm weight vector of n values as f32: points into the mapping when stored as aligned f32,
// otherwise converted once into m->f32_store at *used (advanced). Returns 0 or -1.
int vm_model_norm(vm_model *m, const char *name, int64_t n, const float **out, size_t *used);

// Hyper-parameter keys "<arch>.<suffix>": 0 found, 1 absent (default kept), -1 error.
int vm_model_key_int(const vm_model *m, const char *suffix, int *out, int required, int lo, int hi);
int vm_model_key_f32(const vm_model *m, const char *suffix, float *out, int required);

// Per architecture: fills m->hp, allocates m->layers / m->routers / m->f32_store and the views.
int vm_arch_llama_load(vm_model *m);

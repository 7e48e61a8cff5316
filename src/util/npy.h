// NumPy .npy (format 1.0, little-endian float32/int32, C order): the exchange format of logits
// and golden files.
#pragma once
#include <stdint.h>

int vm_npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape);
// Reads a '<f4' array; *data is malloc'd. shape has room for 4 dims. Returns 0 or -1.
int vm_npy_read_f32(const char *path, float **data, int *ndim, int64_t shape[4]);

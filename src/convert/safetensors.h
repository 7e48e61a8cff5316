// safetensors reader (huggingface/safetensors format): 8-byte little-endian header length N,
// N bytes of JSON {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}},
// then the byte buffer the offsets index (relative to its start). Read through a memory map,
// zero-copy, strictly validated: header inside the file and below VM_ST_MAX_HEADER, no duplicate
// keys, known dtypes, non-negative integer shapes, end - begin == prod(shape) * dtype size, and the
// tensors tile the buffer exactly (sorted by offset: no overlap, no hole, no trailing bytes), as the
// format's reference implementation requires. __metadata__ is ignored.
// A checkpoint folder is either sharded (model.safetensors.index.json with a "weight_map" of
// tensor -> file, every file a plain name inside the folder, the map and the files agreeing
// exactly) or a single model.safetensors.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include "util/fileio.h"

#define VM_ST_MAX_DIMS 8
#define VM_ST_MAX_HEADER ((size_t)100 << 20)   // as the reference implementation's limit
#define VM_ST_MAX_FILES 4096

typedef enum vm_st_dtype {
    VM_ST_F64 = 0, VM_ST_F32, VM_ST_F16, VM_ST_BF16, VM_ST_I64, VM_ST_I32, VM_ST_I16, VM_ST_I8,
    VM_ST_U64, VM_ST_U32, VM_ST_U16, VM_ST_U8, VM_ST_BOOL, VM_ST_F8_E4M3, VM_ST_F8_E5M2,
    VM_ST_DTYPE_COUNT
} vm_st_dtype;

typedef struct vm_st_tensor {
    char *name;
    vm_st_dtype dtype;
    int n_dims;                      // 0 for a scalar
    int64_t shape[VM_ST_MAX_DIMS];   // outermost first, as written (row-major)
    const void *data;                // inside the mapping; not aligned in general
    size_t nbytes;
    int file;                        // index into vm_st.paths
} vm_st_tensor;

typedef struct vm_st {
    int n_files;
    vm_mmap *maps;
    char **paths;
    int n;
    vm_st_tensor *t;                 // sorted by name
} vm_st;

vm_st *vm_st_open_file(const char *path);
// Over a caller-owned buffer (tests, fuzzing); the buffer must outlive the result.
vm_st *vm_st_open_mem(const void *buf, size_t size, const char *name);
// A checkpoint folder: model.safetensors.index.json if present, else model.safetensors.
vm_st *vm_st_open_dir(const char *dir);
void vm_st_free(vm_st *s);

const vm_st_tensor *vm_st_find(const vm_st *s, const char *name);   // NULL when absent
const char *vm_st_dtype_name(vm_st_dtype d);
size_t vm_st_dtype_size(vm_st_dtype d);
int64_t vm_st_nelements(const vm_st_tensor *t);
// All elements as float32; F32, F16 and BF16 only (others: error naming the tensor and dtype).
int vm_st_read_f32(const vm_st_tensor *t, float *dst);

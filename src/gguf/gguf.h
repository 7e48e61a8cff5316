// GGUF v3 (also reads v2): reader over a read-only memory map, zero-copy, strictly validated;
// and a writer that follows ggml's packing rules. Spec: ggml/docs/gguf.md.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include "quant/tensor.h"
#include "gguf/tensor_names.h"
#include "quant/quant.h"
#include "util/fileio.h"
#include "vmoer.h"   // the public declarations of some of these (exported from libvmoer.so)

#define VM_GGUF_MAGIC "GGUF"
#define VM_GGUF_VERSION 3
#define VM_GGUF_DEFAULT_ALIGNMENT 32
#define VM_GGUF_MAX_NAME 64      // tensor names: strlen < 64, as ggml's GGML_MAX_NAME
#define VM_GGUF_MAX_DIMS 4

typedef enum vm_gguf_type {
    VM_GGUF_TYPE_UINT8 = 0, VM_GGUF_TYPE_INT8 = 1, VM_GGUF_TYPE_UINT16 = 2, VM_GGUF_TYPE_INT16 = 3,
    VM_GGUF_TYPE_UINT32 = 4, VM_GGUF_TYPE_INT32 = 5, VM_GGUF_TYPE_FLOAT32 = 6, VM_GGUF_TYPE_BOOL = 7,
    VM_GGUF_TYPE_STRING = 8, VM_GGUF_TYPE_ARRAY = 9, VM_GGUF_TYPE_UINT64 = 10, VM_GGUF_TYPE_INT64 = 11,
    VM_GGUF_TYPE_FLOAT64 = 12, VM_GGUF_TYPE_COUNT = 13
} vm_gguf_type;

// A string inside the mapping: not NUL-terminated.
typedef struct vm_gguf_str { const char *s; uint64_t n; } vm_gguf_str;

typedef struct vm_gguf_kv {
    char *key;                 // NUL-terminated copy (keys are small)
    vm_gguf_type type;         // value type; ARRAY for arrays
    vm_gguf_type arr_type;     // element type when type == ARRAY (scalars: equal to type)
    uint64_t n;                // array length (1 for scalars)
    const void *data;          // scalar value / first array element, inside the mapping
    vm_gguf_str *strs;         // string values (n of them) when type or arr_type is STRING
} vm_gguf_kv;

typedef struct vm_gguf_tensor_info {
    char name[VM_GGUF_MAX_NAME];
    vm_tensor t;               // type, dims, strides, data pointer into the mapping
    uint64_t offset;           // relative to the start of the data section
    size_t nbytes;
} vm_gguf_tensor_info;

typedef struct vm_gguf {
    vm_mmap map;               // owned when opened from a file
    const uint8_t *base;
    size_t size;
    uint32_t version;
    int64_t n_kv, n_tensors;
    vm_gguf_kv *kv;
    vm_gguf_tensor_info *tensors;
    size_t alignment;
    size_t data_offset;        // start of the tensor data section
    char *path;                // for messages ("<memory>" for buffers)
    int64_t *kv_sorted;        // kv indices sorted by key (binary-search lookup)
    int64_t *tensor_sorted;    // tensor indices sorted by name
} vm_gguf;

// Opens and validates; returns NULL with vm_errmsg() naming the file and the problem. Checked:
// magic, version 2/3, counts vs bytes left (before allocating), unique non-empty keys and tensor
// names (< 64 bytes), known value types, no nested arrays, bools 0/1, u32 power-of-two alignment,
// n_dims 1..4, ne >= 0 without overflow, known tensor type, ne[0] % block == 0, offsets aligned,
// ranges inside the file and not overlapping. Unlike ggml, gaps between tensors are allowed.
vm_gguf *vm_gguf_open(const char *path);
// Same over a caller-owned buffer (fuzzing, tests); the buffer must outlive the result.
vm_gguf *vm_gguf_open_mem(const void *buf, size_t size, const char *name);
void vm_gguf_free(vm_gguf *g);

int64_t vm_gguf_find_key(const vm_gguf *g, const char *key);       // -1 when absent
const vm_gguf_kv *vm_gguf_get_kv(const vm_gguf *g, const char *key); // NULL when absent
const vm_gguf_tensor_info *vm_gguf_find_tensor(const vm_gguf *g, const char *name);
const char *vm_gguf_type_name(vm_gguf_type t);
// A cheap identity of the file's bytes (FNV-1a 64): its size, the whole header (metadata and tensor
// infos, up to the data section) and of each tensor 17 windows of 64 bytes evenly spaced from its
// first byte to its last. Reads a few KiB per tensor, not the tensor data: ranks of one job compare
// it before a fit (a different or damaged copy of a model), not a proof that two files are equal.
uint64_t vm_gguf_sample_checksum(const vm_gguf *g);

// Typed getters: 0 = found and converted, 1 = absent (out untouched), -1 = wrong type or out of
// range (error recorded). Integers are accepted in any integer width (and bool) if the value fits.
int vm_gguf_get_i64(const vm_gguf *g, const char *key, int64_t *out);
int vm_gguf_get_u32(const vm_gguf *g, const char *key, uint32_t *out);
int vm_gguf_get_f32(const vm_gguf *g, const char *key, float *out);   // float32/float64/integers
int vm_gguf_get_bool(const vm_gguf *g, const char *key, int *out);
// String value as a malloc'd NUL-terminated copy.
int vm_gguf_get_str(const vm_gguf *g, const char *key, char **out);
// Array: element type, count and pointer to the first element (strings: use kv->strs).
int vm_gguf_get_arr(const vm_gguf *g, const char *key, vm_gguf_type *type, uint64_t *n, const void **data);
// Element i of a numeric array converted to double (any numeric element type).
double vm_gguf_arr_num(const vm_gguf_kv *kv, uint64_t i);

// ---- writer ----
typedef struct vm_gguf_writer vm_gguf_writer;

vm_gguf_writer *vm_gguf_writer_init(void);
void vm_gguf_writer_free(vm_gguf_writer *w);
// Setters replace an existing key of the same name (keys stay unique). A failing setter (bad
// type, out of memory) records its error and makes vm_gguf_write fail with it.
void vm_gguf_set_u32(vm_gguf_writer *w, const char *key, uint32_t v);
void vm_gguf_set_i32(vm_gguf_writer *w, const char *key, int32_t v);
void vm_gguf_set_u64(vm_gguf_writer *w, const char *key, uint64_t v);
void vm_gguf_set_f32(vm_gguf_writer *w, const char *key, float v);
void vm_gguf_set_bool(vm_gguf_writer *w, const char *key, int v);
void vm_gguf_set_str(vm_gguf_writer *w, const char *key, const char *v);
void vm_gguf_set_i64(vm_gguf_writer *w, const char *key, int64_t v);
void vm_gguf_set_f64(vm_gguf_writer *w, const char *key, double v);
// Scalar of any numeric type (u8 ... f64, bool) read from *val.
void vm_gguf_set_val(vm_gguf_writer *w, const char *key, vm_gguf_type type, const void *val);
// Numeric array of n elements of `type` copied from data.
void vm_gguf_set_arr(vm_gguf_writer *w, const char *key, vm_gguf_type type, const void *data, uint64_t n);
void vm_gguf_set_arr_str(vm_gguf_writer *w, const char *key, const char *const *strs, uint64_t n);
// Copies every key of a reader (used by converters that keep metadata).
void vm_gguf_copy_kv(vm_gguf_writer *w, const vm_gguf *g);
// Adds a tensor; `data` (nbytes = row size * rows ...) is borrowed until write returns.
// Returns -1 for a duplicate/too long name, bad dims or a size that does not match the type.
int vm_gguf_add_tensor(vm_gguf_writer *w, const char *name, vm_type type, int n_dims,
                       const int64_t *ne, const void *data, size_t nbytes);
// Writes atomically (temp + fsync + rename). general.alignment is honoured if set.
int vm_gguf_write(vm_gguf_writer *w, const char *path);

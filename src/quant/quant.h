// Tensor element types (ggml's type ids, as stored in GGUF) and their arithmetic:
// dequantise a row, dot a quantised row with an f32 vector, quantise a row (for writers).
#pragma once
#include <stddef.h>
#include <stdint.h>

// Values are ggml's `enum ggml_type` ids: they are what GGUF files store.
typedef enum vm_type {
    VM_TYPE_F32 = 0, VM_TYPE_F16 = 1, VM_TYPE_Q4_0 = 2, VM_TYPE_Q4_1 = 3,
    VM_TYPE_Q5_0 = 6, VM_TYPE_Q5_1 = 7, VM_TYPE_Q8_0 = 8, VM_TYPE_Q8_1 = 9,
    VM_TYPE_Q2_K = 10, VM_TYPE_Q3_K = 11, VM_TYPE_Q4_K = 12, VM_TYPE_Q5_K = 13,
    VM_TYPE_Q6_K = 14, VM_TYPE_Q8_K = 15, VM_TYPE_IQ2_XXS = 16, VM_TYPE_IQ2_XS = 17,
    VM_TYPE_IQ3_XXS = 18, VM_TYPE_IQ1_S = 19, VM_TYPE_IQ4_NL = 20, VM_TYPE_IQ3_S = 21,
    VM_TYPE_IQ2_S = 22, VM_TYPE_IQ4_XS = 23, VM_TYPE_I8 = 24, VM_TYPE_I16 = 25,
    VM_TYPE_I32 = 26, VM_TYPE_I64 = 27, VM_TYPE_F64 = 28, VM_TYPE_IQ1_M = 29,
    VM_TYPE_BF16 = 30, VM_TYPE_TQ1_0 = 34, VM_TYPE_TQ2_0 = 35, VM_TYPE_MXFP4 = 39,
    VM_TYPE_COUNT = 40
} vm_type;

typedef struct vm_type_traits {
    const char *name;      // "f32", "q4_K", ... (ggml's spelling)
    int64_t blck_size;     // elements per block
    size_t type_size;      // bytes per block
    int compute;           // 1 when vmoer can dequantise/dot it (F32 F16 BF16 Q8_0 Q4_0 Q4_K Q5_K Q6_K)
} vm_type_traits;

// NULL for an id that is not a known ggml type (holes and ids >= VM_TYPE_COUNT).
const vm_type_traits *vm_type_get(int type);
const char *vm_type_name(int type);     // "?" when unknown
int vm_type_from_name(const char *name); // -1 when unknown (case-insensitive)
// Bytes of a row of n elements; n must be a multiple of the block size (0 returned otherwise).
size_t vm_type_row_size(vm_type type, int64_t n);

// Index of the first element of n (a multiple of the block size) stored as `type` at data that is
// not finite (NaN or +-Inf), or -1 when every one is. f32/f16/bf16: each value; Q8_0, Q4_0, Q4_K,
// Q5_K, Q6_K: the block's fp16 scales (d, and dmin for Q4_K/Q5_K), whose quants are integers; the
// result is then the block's first element. Types without a check (integers, unsupported blocks): -1.
int64_t vm_type_find_nonfinite(vm_type type, const void *data, int64_t n);
// The same as a check: 0, or -1 with "<what> holds a non-finite <type> value (NaN or Inf) at
// element N" (a converter's f16 or q8_0 output can overflow to Inf where its f32 input did not).
int vm_type_check_finite(vm_type type, const void *data, int64_t n, const char *what);

// All of these require a compute type and n a multiple of the block size.
void vm_dequant_row(vm_type type, const void *src, float *dst, int64_t n);
// sum_i w[i] * x[i] for a row of weights w stored as `type`.
float vm_vec_dot(vm_type type, const void *w, const float *x, int64_t n);
// Quantise n floats into `type` (reference quantisers; used by writers, converters and tests).
// Returns 0, or -1 for a type without a quantiser.
int vm_quant_row(vm_type type, const float *src, void *dst, int64_t n);

float vm_fp16_to_fp32(uint16_t h);
uint16_t vm_fp32_to_fp16(float f);   // round to nearest even
float vm_bf16_to_fp32(uint16_t h);
uint16_t vm_fp32_to_bf16(float f);   // round to nearest even, NaN kept quiet

// ---- int8 activations: integer dot products for quantised weights --------------------------------
// A matmul over quantised weights quantises each activation row once to int8 blocks that match the
// weight type's blocks (32 for Q8_0/Q4_0; 256 with 16-element sums, as ggml's Q8_K, for the K-quants),
// then every weight block is an exact integer dot. This adds the activations' rounding error
// (|x - d q| <= d/2 per element, d = blockmax/127) to the weights' own.
typedef struct vm_q8a32 { float d; int8_t qs[32]; } vm_q8a32;
typedef struct vm_q8a256 { float d; int16_t bsums[16]; int8_t qs[256]; } vm_q8a256;
// Elements per activation block for weights of type wtype: 32, 256, or 0 (no int8 path: f32/f16/bf16).
int vm_act_block(vm_type wtype);
// Bytes of a quantised activation row of n elements for wtype (0 when no int8 path or bad n).
size_t vm_act_row_size(vm_type wtype, int64_t n);
// Quantises x (n) for dotting with rows of wtype. A non-finite x makes its block's scale NaN, so
// the dot products come out NaN rather than silently finite. 0, or -1 with an error.
int vm_act_quant_row(vm_type wtype, const float *x, void *dst, int64_t n);
// Portable dot of a wtype row with a quantised activation row (NAN on an unsupported type). The
// SIMD kernels (src/kernels/simd_*.c) reproduce its bits: the integer sums are exact and the float
// operations happen in the same order (see q8act.c).
float vm_vec_dot_act(vm_type wtype, const void *w, const void *xq, int64_t n);

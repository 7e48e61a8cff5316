// Run-time SIMD dispatch. Each level (simd_<level>.c) fills a table of kernels; vm_matmul_forward,
// vm_attention_forward / _backward, vm_swiglu_forward / _backward and the matmul backward call the
// table of the current level. Levels differ only in rounding order (the AVX-512 level not at all
// from the AVX2 one), and not at all for quantised weights (their int8-activation dots reproduce
// vm_vec_dot_act's bits) nor SwiGLU (one polynomial exp, kernels/exp_neg.h, which attention shares). Within one level, every output element is
// computed by one thread in a fixed order: results do not depend on the thread count, nor (forward)
// on the batching.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include "quant/quant.h"

typedef enum vm_simd_level {
    VM_SIMD_SCALAR = 0,    // portable C
    VM_SIMD_AVX2 = 1,      // AVX2 + FMA + F16C
    VM_SIMD_AVXVNNI = 2,   // the AVX2 level with AVX-VNNI's vpdpbusd in the batched int8 products
    VM_SIMD_AVX512 = 3,    // the AVX2 level with AVX-512 VNNI (16 tokens a vector) in the batched int8 products,
                           // and 512-bit f32 / attention / rmsnorm kernels with the AVX2 level's bits
    VM_SIMD_COUNT
} vm_simd_level;

// Batched products of quantised weights (several tokens, simd_avx2_gemm.c): the int8 activations
// re-laid once per matmul (pack) so that rows() keeps tokens in vector lanes. Same bits as act_rows.
typedef struct vm_simd_gemm {
    int group;   // tokens per packed group (the vector's 32-bit lanes): pack takes at most this many
    // bytes of the packed activations of B tokens, 0 when this level has no packed path for the type
    size_t (*pack_size)(vm_type type, int B, int64_t C);
    // from B rows of vm_act_quant_row output at byte stride ldx
    void (*pack)(vm_type type, const void *xq, size_t ldx, int B, int64_t C, void *dst);
    // as act_rows over the packed activations of all B tokens
    void (*rows)(vm_type type, float *out, size_t ldo, const void *w, size_t ldw, const void *xp, int R, int B,
                 int64_t C);
} vm_simd_gemm;

typedef struct vm_simd_kernels {
    // out[t*ldo + r] = w_r . x_t for r < R, t < B: weight rows of C floats at stride ldw, token rows
    // at stride ldx. R is small (a block of rows, <= 64); the kernel tiles it with the tokens in
    // registers. Every element gets the same operations whatever its tile: same bits for a token
    // alone or in a batch.
    void (*f32_rows)(float *out, size_t ldo, const float *w, size_t ldw, const float *x, size_t ldx,
                     int R, int B, int64_t C);
    // out[t*ldo + r] = vm_vec_dot_act(type, w_r, x_t, C) (same bits): weight rows of `type` at byte
    // stride ldw, quantised activation rows (vm_act_quant_row) at byte stride ldx.
    void (*act_rows)(vm_type type, float *out, size_t ldo, const void *w, size_t ldw, const void *x,
                     size_t ldx, int R, int B, int64_t C);
    // As vm_act_quant_row (same bits) for a type with an int8 path and a valid n.
    void (*act_quant)(vm_type type, const float *x, void *dst, int64_t n);
    // As vm_dequant_row (same bits): F16 / BF16 widening (exact) for the f32 tiles, and any
    // compute type for the backward pass (kernels/backward.c).
    void (*dequant_row)(vm_type type, const void *src, float *dst, int64_t n);
    // di (C) += sum over k < m of g[idx[k]] * (row idx[k] of wt, stride ldw), rows in order, each
    // product rounded then added (no FMA): the bits of one axpy per row, at every level.
    void (*axpy_rows)(float *di, const float *g, const float *wt, size_t ldw, const int *idx, int m, int64_t C);
    // As vm_attention_forward (kernels/ops.h).
    void (*attention)(float *out, const float *q, const float *kc, const float *vc, int n_past, int B,
                      int n_head, int n_head_kv, int hd, float scale);
    // As vm_attention_backward (kernels/ops.h).
    void (*attention_backward)(float *dq, float *dk, float *dv, const float *dout, const float *q,
                               const float *kc, const float *vc, int n_past, int B, int n_head,
                               int n_head_kv, int hd, float scale);
    // As vm_swiglu_forward and vm_swiglu_backward (kernels/ops.h): the same bits at every level.
    void (*swiglu)(float *out, const float *gate, const float *up, int n);
    void (*swiglu_backward)(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int n);
    const vm_simd_gemm *gemm;   // NULL: batches use act_rows
    // Two tokens' axpy_rows at once over n rows of wt (NULL: one token at a time): for t = 0, 1,
    // di_t += g_t[j] * row j for every j < n with g_t[j] != 0, in row order: the bits of axpy_rows
    // with the list of those rows.
    void (*axpy_rows2)(float *di0, float *di1, const float *g0, const float *g1, const float *wt, size_t ldw, int n,
                       int64_t C);
    // vm_rmsnorm_forward on 8 rows of C floats (NULL: row by row), the same bits.
    void (*rmsnorm8)(float *out, const float *inp, const float *weight, int C, float eps);
} vm_simd_kernels;

// Best level this CPU supports (and vmoer has kernels for).
vm_simd_level vm_simd_detect(void);
// Current level: VMOER_SIMD=scalar|avx2|avxvnni|avx512 in the environment when supported, else detected,
// unless changed by vm_simd_set.
vm_simd_level vm_simd_get(void);
// Forces a level (tests, benchmarks); -1 with an error when the CPU lacks it. Not thread-safe:
// call between forward passes.
int vm_simd_set(vm_simd_level level);
int vm_simd_supported(vm_simd_level level);
const char *vm_simd_name(vm_simd_level level);
const vm_simd_kernels *vm_simd_kernels_get(vm_simd_level level);   // NULL when not compiled in

// Per-level tables (defined in simd_<level>.c; NULL-equivalent when the compiler lacks the target).
extern const vm_simd_kernels vm_simd_scalar;
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define VM_SIMD_X86 1
extern const vm_simd_kernels vm_simd_avx2;
extern const vm_simd_kernels vm_simd_avxvnni;
extern const vm_simd_kernels vm_simd_avx512;
extern const vm_simd_gemm vm_avx2_gemm, vm_avxvnni_gemm, vm_avx512_gemm;
void vm_avx2_f32_rows(float *out, size_t ldo, const float *w, size_t ldw, const float *x, size_t ldx, int R, int B,
                      int64_t C);
// simd_avx512.c: the AVX2 level's f32_rows and axpy_rows (same bits), two 8-lane accumulators a register
void vm_avx512_f32_rows(float *out, size_t ldo, const float *w, size_t ldw, const float *x, size_t ldx, int R, int B,
                        int64_t C);
void vm_avx512_axpy_rows(float *di, const float *g, const float *wt, size_t ldw, const int *idx, int m, int64_t C);
void vm_avx512_rmsnorm8(float *out, const float *inp, const float *weight, int C, float eps);
void vm_avx512_axpy_rows2(float *di0, float *di1, const float *g0, const float *g1, const float *wt, size_t ldw, int n,
                          int64_t C);
void vm_avx2_act_rows(vm_type type, float *out, size_t ldo, const void *w, size_t ldw, const void *x,
                      size_t ldx, int R, int B, int64_t C);
void vm_avx2_act_quant(vm_type type, const float *x, void *dst, int64_t n);
// simd_avx2_attn.c; attend8_one: one query of a head of 8 (n_kv keys at stride ks), the bits it
// gets in a block of queries in lanes
void vm_avx2_attend8_one(float *o, const float *qv, const float *k, const float *v, size_t ks, int n_kv, float scale);
// The backward's pieces (simd_avx2_attn.c): one query (hd % 8 == 0; p, ds: scratch of n rounded
// up to 8), and a block of nb (VM_AVX2_BWD8_LANES_MIN <= nb <= 8) queries of a head of 8 in lanes
// (P, DS: 8 (n0 + nb - 1) floats each)
#define VM_AVX2_BWD8_LANES_MIN 4
void vm_avx2_bwd_one(float *gq, float *gk, float *gv, const float *go, const float *qv, const float *k, const float *v,
                     size_t ks, int n, int hd, float scale, float *p, float *ds);
void vm_avx2_bwd8_lanes(float *gq, float *gk, float *gv, const float *go, const float *q, size_t qs, const float *k,
                        const float *v, size_t ks, int n0, int nb, float scale, float *P, float *DS);
// simd_avx512_attn.c: as vm_avx2_attention and vm_avx2_attention_backward (same bits), 16 lanes
void vm_avx512_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                                  const float *kc, const float *vc, int n_past, int B, int n_head,
                                  int n_head_kv, int hd, float scale);
void vm_avx512_attention(float *out, const float *q, const float *kc, const float *vc, int n_past, int B,
                         int n_head, int n_head_kv, int hd, float scale);
void vm_avx2_attention(float *out, const float *q, const float *kc, const float *vc, int n_past, int B,
                       int n_head, int n_head_kv, int hd, float scale);
void vm_avx2_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                                const float *kc, const float *vc, int n_past, int B, int n_head,
                                int n_head_kv, int hd, float scale);
#endif
void vm_attention_scalar(float *out, const float *q, const float *kc, const float *vc, int n_past, int B,
                         int n_head, int n_head_kv, int hd, float scale);
void vm_swiglu_scalar(float *out, const float *gate, const float *up, int n);
void vm_swiglu_backward_scalar(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int n);
// The portable backward (kernels/backward.c): double sums, libm exp; the reference of the others.
void vm_attention_backward_scalar(float *dq, float *dk, float *dv, const float *dout, const float *q,
                                  const float *kc, const float *vc, int n_past, int B, int n_head,
                                  int n_head_kv, int hd, float scale);

// Importers and model surgery: llama2.c checkpoints -> GGUF, dense llama -> Mixtral-layout MoE.
// Both read their input through a memory map and write the output atomically.
#pragma once
#include <stdint.h>
#include <stdio.h>
#include "quant/quant.h"
#include "vmoer.h"

// Converts a legacy llama2.c checkpoint (7-int32 header, fp32 weights) and its tokenizer.bin into
// a llama GGUF. type: F32, F16 or Q8_0 for the 2-D weight matrices (norms stay F32; a matrix whose
// rows are not a multiple of the block size falls back to F16). name NULL: the model file's
// basename without extension. Returns 0 or -1 with a one-line error.
int vm_convert_llama2c(const char *model_path, const char *tok_path, const char *out_path,
                       vm_type type, const char *name);

// Upcycling (sparse upcycling, Komatsuzaki et al. 2022): every dense FFN becomes n_expert copies.
//   expert e of matrix W = W + noise * rms(W) * z,  z ~ N(0,1) elementwise, rms(W) = sqrt(mean(W^2))
//   router W_r[n_embd, n_expert] ~ N(0, router_std^2)
// Random streams: vm_rng_seed2(seed, (layer << 32) | (which << 24) | expert), which = 0 router,
// 1 gate, 2 up, 3 down; so a result depends only on (seed, layer, matrix, expert).
// noise == 0 copies the dense bytes (bit-identical experts, the MoE computes the dense function).
// With noise > 0 the expert keeps the source type when vm_quant_row can write it, else F32.
// vm_upcycle_opts is defined in vmoer.h (public).

// 0.02: the usual initializer_range of llama/Mixtral configs, so fresh router logits are small
// (|l| ~ 0.02 * |u|) and the initial routing is close to uniform, as for a freshly initialised router.
#define VM_UPCYCLE_ROUTER_STD 0.02f

int vm_upcycle(const char *in_path, const char *out_path, const vm_upcycle_opts *o);

// A Granite-3B-shaped random MoE model (convert/synth.c, `vmoer bench --gen`): type F32, F16, Q8_0
// or Q4_0 for the matrices. 0, or -1 with an error.
int vm_synth_granite(const char *path, vm_type type, int n_layer, int n_vocab, int n_expert);

// ---- quantize: F32/F16/BF16 GGUF -> quantised GGUF (convert/quantize_file.c) ------------------------
// A plain type (q8_0, q4_0, q4_K, q5_K, q6_K) puts every quantisable tensor in that type ("pure");
// the mixes q4_K_M / q5_K_M follow llama.cpp's choices: output (or tied token_embd) Q6_K; attn_v
// (attn_qkv, attn_kv_b) Q6_K on the "more bits" layers (first and last eighth, every third between),
// Q8_0 when the model has exactly 8 experts, as attn_k then; ffn_down Q6_K on the more-bits layers;
// attn_output Q5_K for q4_K_M with 8 experts; the rest the base type. Kept as they are: 1-D tensors,
// norms, and routers (ffn_gate_inp, widened to F32 when stored as F16/BF16). A row length the type's
// block does not divide falls back to Q8_0 (K-quants) when it is a multiple of 32, else to F16.
// f32 / f16 widen the weight matrices of any file vmoer computes (quantised ones included).
typedef struct vm_quantize_opts { vm_type base; int mix; int ftype; } vm_quantize_opts;
// What the mix rules need to know about the file: counts, and counters advanced in tensor order.
typedef struct vm_quantize_ctx {
    int n_layer, n_expert, tied;   // tied: no output.weight (token_embd is the output matrix)
    int n_attn_v, i_attn_v, i_ffn_down;
} vm_quantize_ctx;
// "q4_K_M" etc. (case-insensitive) -> opts; -1 with an error for an unknown name.
int vm_quantize_parse(const char *name, vm_quantize_opts *o);
// 1 when the tensor keeps its type (1-D, norms, routers, names not ending in "weight").
int vm_quantize_keeps(const char *name, int n_dims);
// Target type of a quantisable tensor with rows of ne0 elements.
vm_type vm_quantize_choose(const vm_quantize_opts *o, const vm_quantize_ctx *c, const char *name, int64_t ne0);
// The whole file; log (may be NULL) gets one line per tensor. 0, or -1 with a one-line error.
int vm_quantize_file(const char *in_path, const char *out_path, const vm_quantize_opts *o, FILE *log);
// Neuron-partition upcycling (MoEfication, Zhang et al. 2022) instead of copies: the F neurons of
// every dense SwiGLU FFN are split into N experts of Fe = ceil(F/N) neurons (balanced spherical
// k-means on the gate rows, k-means++ seeded from the stream (seed, layer, 4)); expert down
// columns are the dense ones times K, so K experts at the uniform gates 1/K add exactly their
// neurons' dense output, and with K = N and equal router logits the MoE computes the dense model.
// Padding neurons (F mod N != 0) get N(0, rms^2) gate/up rows and a zero down column. Router row
// e = router_gain * mean gate row of expert e + N(0, router_std^2). Output experts are F32.
// o->noise must be 0.
typedef struct vm_upcycle_partition_opts {
    float router_gain;
    int n_core;          // neurons copied into every expert (largest |gate_i| |up_i| |down_i|), 0..F
    int n_ff_exp;        // expert width (0: C + ceil((F-C)/N)); the slots beyond the dense neurons
                         // are new neurons, silent at first (as the padding)
} vm_upcycle_partition_opts;
int vm_upcycle_partition(const char *in_path, const char *out_path, const vm_upcycle_opts *o,
                         const vm_upcycle_partition_opts *p);

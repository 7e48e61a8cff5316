// Multi-head latent attention (DeepSeek-V2/V3, GGUF arch `deepseek2`), run as llama.cpp runs
// current deepseek2 GGUFs: the "absorbed" form. Per token the cache holds one row of
// kv_lora + rope floats, [rmsnorm(c_kv) ; rope(k_pe)], shared by every head (multi-query
// attention with head size kv_lora + rope); each head's query is [W_kb_h^T q_nope_h ; rope(q_pe_h)]
// and its output W_vb_h (softmax-weighted sum of the cached latents). This is exactly the HF
// definition (k_nope_h = W_kb_h c, v_h = W_vb_h c) with the products reassociated.
// The hyper-parameters are mapped so the generic context sizes fit: hp.n_head_kv = 1,
// hp.head_dim = kv_lora + rope (one cache row), so io->q / io->att hold the absorbed queries and
// the latent attention outputs (B, n_head*(kv_lora+rope)); the value cache is not used.
#pragma once
#include <stddef.h>
#include "model/model_internal.h"

// Epsilon of the two latent norms (q_a_layernorm, kv_a_layernorm). The reference modelling code
// (transformers' modeling_deepseek_v2.py / modeling_deepseek_v3.py, as DeepSeek's own) builds them
// with the RMSNorm default 1e-6 and never passes rms_norm_eps, which only the block and output
// norms use; so the GGUF key attention.layer_norm_rms_epsilon does not apply to them. (Released
// checkpoints all have rms_norm_eps 1e-6, where the two agree; llama.cpp uses the key for both.)
#define VM_MLA_LATENT_NORM_EPS 1e-6f

typedef struct vm_mla_layer {
    vm_tensor wq_a, wq_b;           // q LoRA [D, q_lora], [q_lora, H*(nope+rope)]; without it the
                                    // layer's wq is attn_q [D, H*(nope+rope)]
    const float *q_a_norm;          // (q_lora)
    vm_tensor wkv_a;                // attn_kv_a_mqa [D, kv_lora + rope]
    const float *kv_a_norm;         // (kv_lora)
    vm_tensor *k_b, *v_b;           // n_head views each. k_b[h]: ne [nope, kv_lora] (attn_k_b), or with
                                    // kb_fused ne [kv_lora, nope] rows of the legacy attn_kv_b, used
                                    // transposed; v_b[h]: ne [kv_lora, v_dim]
} vm_mla_layer;

typedef struct vm_mla {
    int n_head, q_lora, kv_lora, nope, rope, v_dim;
    int kb_fused;                   // legacy files: attn_kv_b [kv_lora, H*(nope+v_dim)] only
    float kq_scale;                 // mscale^2 / sqrt(nope + rope)
    // RoPE of the rope parts: ggml "normal" pairs (2i, 2i+1), YaRN when ext_factor != 0
    float freq_base, freq_scale, ext_factor, rope_mscale;
    float corr_lo, corr_hi;         // YaRN ramp between these pair indices
    vm_mla_layer *layers;           // n_layer
    vm_tensor *views;               // storage behind every k_b / v_b
} vm_mla;

void vm_mla_free(vm_mla *a);
// Floats of io->mla scratch the block needs per token (0 for a model without MLA).
size_t vm_mla_scratch(const vm_model *m);
// io->xb_att (B,D) -> io->ao (B,D); writes cache rows n_past.. of io->kc (io->vc unused).
int vm_mla_forward(const vm_model *m, int il, const vm_block_io *io, int B);
// The YaRN ramp bounds of ggml (ggml_rope_yarn_corr_dims) for n_rot dims.
void vm_mla_yarn_corr(int n_rot, int n_ctx_orig, float freq_base, float beta_fast, float beta_slow,
                      float *lo, float *hi);
// Floats of backward scratch per token (0 for a model without MLA).
size_t vm_mla_backward_scratch(const vm_model *m);
// Backward of vm_mla_forward over the T = tree->n_rows rows of a tree batch (one sequence: a
// single root segment; positions tree->pos), from what the training forward kept: xb (T,D) its
// input, q (T, H*(kvl+rope)) the absorbed queries, kc (T, kvl+rope) the cache rows (the attention
// is recomputed from them; tree_kv: vm_tree_attn_scratch(T, kvl+rope) floats). Given
// dao (T,D) = dL/d(output), accumulates dxb (T,D) += dL/dxb. Weights are frozen (no gradients).
void vm_mla_backward(const vm_model *m, int il, const float *dao, const float *xb, const float *q,
                     const float *kc, const vm_tree *tree, float *tree_kv, float *dxb, float *scratch);

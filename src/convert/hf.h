// Hugging Face checkpoint folder (config.json + safetensors, single or sharded) -> GGUF, with
// llama.cpp's metadata keys and tensor names (convert_hf_to_gguf.py / gguf-py tensor_mapping.py).
//
// Architectures (config "architectures"[0], or its "model_type" when the list is absent, as
// transformers accepts -> general.architecture; max_position_embeddings defaults to the config
// class's value, listed with its source in hf.c):
//   LlamaForCausalLM, MistralForCausalLM, MixtralForCausalLM -> llama  (Q/K rows permuted from
//     HF's rotate-half layout to ggml's adjacent-pair RoPE layout)
//   GraniteMoeForCausalLM, GraniteMoeSharedForCausalLM -> granitemoe (permuted like llama;
//     fused input_linear [E, 2F, D] split into gate (first F rows) and up)
//   Qwen2MoeForCausalLM -> qwen2moe, Qwen3MoeForCausalLM -> qwen3moe, OlmoeForCausalLM -> olmoe
//     (NeoX RoPE: no permutation)
//   DeepseekForCausalLM -> deepseek (permuted like llama)
//   DeepseekV2ForCausalLM, DeepseekV3ForCausalLM -> deepseek2 (MLA; kv_b_proj split into
//     attn_k_b (transposed) and attn_v_b as current llama.cpp does; no permutation)
// Experts: per-expert tensors (experts.E.w1/w2/w3 or experts.E.gate_proj/up_proj/down_proj) or
// fused ones (experts.gate_up_proj [E, 2F, D] + experts.down_proj [E, D, F], transformers v5;
// Granite's input_linear/output_linear) are stacked into blk.N.ffn_{gate,up,down}_exps.
//
// Types: `type` (F32, F16, BF16, Q8_0) applies to weight matrices; norms, biases and the router
// (ffn_gate_inp, as llama.cpp) stay F32; with Q8_0 a matrix whose rows are not whole 32-blocks is
// stored as F16. A matrix already stored in the output type is copied without conversion.
// Checks: every tensor the mapping needs must exist with the shape config.json implies (else an
// error naming it); a checkpoint tensor the mapping does not use is an error naming it unless
// allow_unused (rotary_emb.inv_freq buffers, a tied lm_head and MTP layers beyond
// num_hidden_layers are always skipped).
// Tokenizer: with no_tokenizer the GGUF has no tokenizer keys (weights only). Otherwise the
// folder's tokenizer.json is required and imported by vm_hf_vocab_read (byte-level BPE only:
// SentencePiece-style files with byte_fallback are refused there), padded to vocab_size with
// "[PAD<id>]" UNUSED tokens; config.json's bos/eos_token_id override tokenizer_config.json's.
// Memory: converted tensors are held until the file is written (about the output size).
#pragma once
#include "quant/quant.h"

typedef struct vm_convert_hf_opts {
    vm_type type;        // VM_TYPE_F32 (0, default), VM_TYPE_F16, VM_TYPE_BF16 or VM_TYPE_Q8_0
    int no_tokenizer;    // write a weights-only GGUF (no tokenizer.* keys)
    int allow_unused;    // drop unmapped checkpoint tensors instead of failing
    const char *name;    // general.name; NULL: config "_name_or_path", else the folder name
} vm_convert_hf_opts;

// Returns 0, or -1 with a one-line error. o NULL = defaults.
int vm_convert_hf(const char *dir, const char *out_path, const vm_convert_hf_opts *o);

// Arch `qwen3moe` (Qwen3 MoE; HF modeling_qwen3_moe.py, llama.cpp qwen3moe.cpp): RMSNorm of each
// head's query and key (weights of head_dim values, shared by the heads) before RoPE; router
// softmax, top-K, renormalised (llama.cpp always renormalises; expert_weights_norm = false, from
// norm_topk_prob, turns it off as HF does). RoPE: NeoX.
#include "model/model_internal.h"

int vm_arch_qwen3moe_load(vm_model *m) {
    if (vm_arch_llama_hparams(m)) return -1;
    m->hp.rope_neox = 1;
    m->hp.qk_norm = 1;
    const vm_arch_moe_spec spec = { .norm_default = 1, .norm_selected = 1, .ff_exp_default = 1 };
    return vm_arch_moe_load(m, &spec);
}

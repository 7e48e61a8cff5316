// Arch `qwen2moe` (Qwen1.5-MoE, Qwen2-MoE; HF modeling_qwen2_moe.py, llama.cpp qwen2moe.cpp):
// Q/K/V projections with bias; router p = softmax over all experts, top-K, gates p_i not
// renormalised (unless expert_weights_norm, from norm_topk_prob); a shared expert on every token,
// scaled by sigmoid(ffn_gate_inp_shexp . u). RoPE: NeoX (halves), HF's layout unpermuted.
#include "model/model_internal.h"

int vm_arch_qwen2moe_load(vm_model *m) {
    if (vm_arch_llama_hparams(m)) return -1;
    m->hp.rope_neox = 1;
    const vm_arch_moe_spec spec = { .norm_default = 0, .shexp = 2, .shexp_gated = 1, .ff_exp_default = 1 };
    return vm_arch_moe_load(m, &spec);
}

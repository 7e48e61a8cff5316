// Arch `olmoe` (AllenAI OLMoE; HF modeling_olmoe.py, llama.cpp olmoe.cpp): RMSNorm over the whole
// query projection (n_head*head_dim weights) and the whole key projection before RoPE; router
// softmax over all experts, top-K, gates not renormalised (unless expert_weights_norm). RoPE: NeoX.
#include "model/model_internal.h"

int vm_arch_olmoe_load(vm_model *m) {
    if (vm_arch_llama_hparams(m)) return -1;
    m->hp.rope_neox = 1;
    m->hp.qk_norm = 2;
    const vm_arch_moe_spec spec = { .norm_default = 0 };
    return vm_arch_moe_load(m, &spec);
}

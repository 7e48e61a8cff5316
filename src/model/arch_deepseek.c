// Arch `deepseek` (DeepSeek-MoE v1, e.g. deepseek-moe-16b; remote-code modeling_deepseek.py,
// llama.cpp deepseek.cpp): the first leading_dense_block_count blocks have a dense FFN of
// feed_forward_length; the others route (softmax over all experts, top-K, gates not renormalised
// unless expert_weights_norm) and add expert_shared_count shared experts, fused into one FFN of
// expert_shared_count * expert_feed_forward_length, ungated. Gates are multiplied by
// expert_weights_scale when the file has it (converters write 1; llama.cpp ignores it for v1).
// RoPE: ggml "normal" (the converter permutes Q/K rows as for llama).
#include "model/model_internal.h"

int vm_arch_deepseek_load(vm_model *m) {
    if (vm_arch_llama_hparams(m)) return -1;
    m->hp.rope_neox = 0;
    const vm_arch_moe_spec spec = { .norm_default = 0, .shexp = 1 };
    return vm_arch_moe_load(m, &spec);
}

// Arch `granitemoe` (IBM Granite 3.x MoE; GraniteMoeShared writes the same arch with a shared
// expert). Llama's block with µP multipliers (HF modeling_granitemoe.py, llama.cpp granite.cpp):
// embeddings times embedding_scale, each branch output times residual_scale before it joins the
// residual stream, attention.scale in place of 1/sqrt(head_dim), logits divided by logit_scale.
// Router: top-K of the logits, softmax over those K (= softmax, top-K, renormalise).
// RoPE: ggml "normal" (llama.cpp's converter permutes Q/K rows as for llama).
#include "model/model_internal.h"
#include "util/err.h"

// An optional positive multiplier; 0 or absent leaves *out (llama.cpp treats 0 as "unset").
static int scale_key(vm_model *m, const char *suffix, float *out) {
    float v = 0.0f;
    int rc = vm_model_key_f32(m, suffix, &v, 0);
    if (rc < 0) return -1;
    if (rc == 0 && v < 0) return vm_err("model: %s.%s = %g is negative", m->hp.arch_name, suffix, v);
    if (rc == 0 && v > 0) *out = v;
    return 0;
}

int vm_arch_granitemoe_load(vm_model *m) {
    if (vm_arch_llama_hparams(m)) return -1;
    vm_hparams *hp = &m->hp;
    hp->rope_neox = 0;
    if (scale_key(m, "embedding_scale", &hp->f_embedding_scale) ||
        scale_key(m, "residual_scale", &hp->f_residual_scale) ||
        scale_key(m, "attention.scale", &hp->f_attention_scale) ||
        scale_key(m, "logit_scale", &hp->f_logit_scale)) return -1;
    const vm_arch_moe_spec spec = { .norm_default = 1, .norm_selected = 1, .shexp = 1 };
    return vm_arch_moe_load(m, &spec);
}

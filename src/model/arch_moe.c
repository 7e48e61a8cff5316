// The loader shared by the llama-like MoE families (granitemoe, qwen2moe, qwen3moe, olmoe,
// deepseek): llama's keys and tensors plus what they add, each optional piece looked up by the
// name llama.cpp writes (llama-arch.cpp): QKV biases attn_{q,k,v}.bias, Q/K norms
// attn_{q,k}_norm.weight, shared experts ffn_{gate,up,down}_shexp.weight and the qwen2moe shared
// gate ffn_gate_inp_shexp.weight, and dense leading blocks (ffn_{gate,up,down}.weight).
// What is specific to a family (rope type, µP scales, which pieces it requires) is set by its
// arch_<name>.c before this runs.
#include "model/model_internal.h"
#include "util/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// The MoE keys. Conventions (method.md §2): softmax over all experts, top-K, and the K gates
// either renormalised (= softmax over the selected logits) or taken as they are.
static int moe_hparams(vm_model *m, const vm_arch_moe_spec *spec) {
    vm_hparams *hp = &m->hp;
    const int BIG = 1 << 24;
    if (hp->n_expert <= 0 || hp->n_expert_used <= 0)
        return vm_err("model: %s needs expert_count and expert_used_count > 0", hp->arch_name);
    // expert width: llama.cpp's default when the key is absent differs per family
    int ff_exp = spec->ff_exp_default ? hp->n_ff / hp->n_expert_used : hp->n_ff;
    int rc = vm_model_key_int(m, "expert_feed_forward_length", &ff_exp, 0, 1, BIG);
    if (rc < 0) return -1;
    if (ff_exp < 1) return vm_err("model: expert feed-forward length %d", ff_exp);
    hp->n_ff_exp = ff_exp;
    hp->n_layer_dense_lead = 0;
    if (vm_model_key_int(m, "leading_dense_block_count", &hp->n_layer_dense_lead, 0, 0, hp->n_layer) < 0)
        return -1;
    int n_shared = 0;
    if (vm_model_key_int(m, "expert_shared_count", &n_shared, 0, 0, 1 << 16) < 0) return -1;
    hp->n_ff_shexp = n_shared * hp->n_ff_exp;   // deepseek: n_shared experts fused into one FFN
    if (spec->shexp == 2 && hp->n_ff_shexp == 0) hp->n_ff_shexp = hp->n_ff;   // qwen2moe default
    if (vm_model_key_int(m, "expert_shared_feed_forward_length", &hp->n_ff_shexp, 0, 1, BIG) < 0) return -1;
    hp->expert_weights_scale = 1.0f;
    if (vm_model_key_f32(m, "expert_weights_scale", &hp->expert_weights_scale, 0) < 0) return -1;
    if (!(hp->expert_weights_scale > 0)) hp->expert_weights_scale = 1.0f;   // 0 in files = "unset"
    char key[128];
    snprintf(key, sizeof key, "%s.expert_weights_norm", hp->arch_name);
    int norm = spec->norm_default;
    rc = vm_gguf_get_bool(m->gguf, key, &norm);
    if (rc < 0) return vm_err_prefix("model");
    int gating = 1;   // llama.cpp's expert_gating_func: 1 softmax, 2 sigmoid
    if (vm_model_key_int(m, "expert_gating_func", &gating, 0, 0, 3) < 0) return -1;
    if (gating > 1) return vm_err("model: %s with expert_gating_func %d (only softmax) is not supported",
                                  hp->arch_name, gating);
    hp->gate_conv = !norm ? VM_GATE_SOFTMAX_ALL
                  : spec->norm_selected ? VM_GATE_SOFTMAX_SELECTED : VM_GATE_SOFTMAX_ALL_NORM;
    return 0;
}

// An optional f32 vector (bias, norm): 0 loaded, 1 absent, -1 error.
static int opt_vec(vm_model *m, const char *name, int64_t n, const float **out, size_t *used) {
    if (!vm_gguf_find_tensor(m->gguf, name)) { *out = NULL; return 1; }
    return vm_model_norm(m, name, n, out, used);
}

static int load_layer(vm_model *m, const vm_arch_moe_spec *spec, int il, size_t *used) {
    const vm_hparams *hp = &m->hp;
    vm_layer *ly = &m->layers[il];
    const int64_t D = hp->n_embd, hd = hp->head_dim, qd = (int64_t)hp->n_head * hd;
    const int64_t kvd = (int64_t)hp->n_head_kv * hd, N = hp->n_expert, Fs = hp->n_ff_shexp;
    char name[96];
#define NM(t, suffix) vm_tn(name, sizeof name, t, il, suffix)
#define T2(field, t, a, b) do { \
        if (vm_model_tensor(m, &ly->field, NM(t, "weight"), 2, (int64_t[]){a, b}, 1)) return -1; } while (0)
    if (vm_model_norm(m, NM(VM_TN_ATTN_NORM, "weight"), D, &ly->attn_norm, used) ||
        vm_model_norm(m, NM(VM_TN_FFN_NORM, "weight"), D, &ly->ffn_norm, used)) return -1;
    T2(wq, VM_TN_ATTN_Q, D, qd);
    T2(wk, VM_TN_ATTN_K, D, kvd);
    T2(wv, VM_TN_ATTN_V, D, kvd);
    T2(wo, VM_TN_ATTN_OUTPUT, qd, D);
    if (opt_vec(m, NM(VM_TN_ATTN_Q, "bias"), qd, &ly->bq, used) < 0 ||
        opt_vec(m, NM(VM_TN_ATTN_K, "bias"), kvd, &ly->bk, used) < 0 ||
        opt_vec(m, NM(VM_TN_ATTN_V, "bias"), kvd, &ly->bv, used) < 0) return -1;
    if (hp->qk_norm) {   // per head: (head_dim); whole projection: (n_head*head_dim), (n_head_kv*head_dim)
        if (vm_model_norm(m, NM(VM_TN_ATTN_Q_NORM, "weight"), hp->qk_norm == 1 ? hd : qd, &ly->attn_q_norm, used) ||
            vm_model_norm(m, NM(VM_TN_ATTN_K_NORM, "weight"), hp->qk_norm == 1 ? hd : kvd, &ly->attn_k_norm, used))
            return -1;
    }
    if (il < hp->n_layer_dense_lead) {
        T2(ffn_gate, VM_TN_FFN_GATE, D, hp->n_ff);
        T2(ffn_up, VM_TN_FFN_UP, D, hp->n_ff);
        T2(ffn_down, VM_TN_FFN_DOWN, hp->n_ff, D);
        return 0;
    }
    ly->is_moe = 1;
    T2(ffn_gate_inp, VM_TN_FFN_GATE_INP, D, N);
    if (vm_arch_load_experts(m, il, ly)) return -1;
    ly->rl = (vm_router_layer){ .layer = il, .n_embd = hp->n_embd, .n_expert = hp->n_expert,
                                .n_expert_used = hp->n_expert_used, .conv = hp->gate_conv,
                                .w_gate = &ly->ffn_gate_inp, .weights_scale = hp->expert_weights_scale };
    int want = spec->shexp == 2 || (spec->shexp == 1 && Fs > 0);
    if (!want && spec->shexp == 1 && vm_gguf_find_tensor(m->gguf, NM(VM_TN_FFN_GATE_SHEXP, "weight")))
        return vm_err("model: tensor '%s' present but no shared-expert size key", name);
    if (want) {
        ly->has_shexp = 1;
        T2(ffn_gate_shexp, VM_TN_FFN_GATE_SHEXP, D, Fs);
        T2(ffn_up_shexp, VM_TN_FFN_UP_SHEXP, D, Fs);
        T2(ffn_down_shexp, VM_TN_FFN_DOWN_SHEXP, Fs, D);
        if (spec->shexp_gated && vm_model_norm(m, NM(VM_TN_FFN_GATE_INP_SHEXP, "weight"), D, &ly->ffn_gate_inp_shexp, used))
            return -1;
    }
#undef T2
#undef NM
    m->routers[il] = vm_router_deterministic();
    return m->routers[il] ? 0 : -1;
}

int vm_arch_moe_load(vm_model *m, const vm_arch_moe_spec *spec) {
    vm_hparams *hp = &m->hp;
    if (moe_hparams(m, spec)) return -1;
    const int64_t D = hp->n_embd, N = hp->n_expert;
    if (vm_model_embd_output(m)) return -1;

    // f32 copies of small vectors, worst case per layer: 2 norms + shared gate (D each),
    // 3 biases and 2 Q/K norms (at most qd + 2 kvd + qd + kvd)
    const size_t qd = (size_t)hp->n_head * hp->head_dim, kvd = (size_t)hp->n_head_kv * hp->head_dim;
    const size_t per_layer = 3 * (size_t)D + 2 * qd + 3 * kvd;
    m->layers = vm_calloc((size_t)hp->n_layer, sizeof *m->layers);
    m->routers = vm_calloc((size_t)hp->n_layer, sizeof *m->routers);
    m->f32_store = vm_calloc((size_t)hp->n_layer * per_layer + (size_t)D, sizeof(float));
    vm_tensor *views = vm_calloc((size_t)hp->n_layer * 3 * (size_t)N, sizeof *views);
    if (!m->layers || !m->routers || !m->f32_store || !views) { free(views); return -1; }
    for (int il = 0; il < hp->n_layer; il++) {   // one array, freed through layers[0].exp_gate
        m->layers[il].exp_gate = views + (size_t)il * 3 * N;
        m->layers[il].exp_up = m->layers[il].exp_gate + N;
        m->layers[il].exp_down = m->layers[il].exp_up + N;
    }
    size_t used = 0;
    char name[96];
    if (vm_model_norm(m, vm_tn(name, sizeof name, VM_TN_OUTPUT_NORM, -1, "weight"), D, &m->output_norm, &used)) return -1;
    for (int il = 0; il < hp->n_layer; il++)
        if (load_layer(m, spec, il, &used)) return -1;
    return 0;
}

// Arch `llama` (Llama 1/2/3 dense, Mistral, Mixtral MoE): hyper-parameters and weight views.
// Tensor names and shapes as llama.cpp writes them; Mixtral experts either stacked
// (blk.N.ffn_*_exps) or the older per-expert layout (blk.N.ffn_gate.E.weight ...).
// Routing: softmax over all experts, top-K, renormalise == softmax over the selected logits.
#include "model/model_internal.h"
#include "util/err.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int vm_arch_llama_hparams(vm_model *m) {
    vm_hparams *hp = &m->hp;
    const int BIG = 1 << 24;
    if (vm_model_key_int(m, "context_length", &hp->n_ctx_train, 1, 1, 1 << 30) ||
        vm_model_key_int(m, "embedding_length", &hp->n_embd, 1, 1, BIG) ||
        vm_model_key_int(m, "block_count", &hp->n_layer, 1, 1, 1 << 16) ||
        vm_model_key_int(m, "attention.head_count", &hp->n_head, 1, 1, 1 << 16))
        return -1;
    hp->n_head_kv = hp->n_head;
    hp->n_expert = 0; hp->n_expert_used = 0;
    if (vm_model_key_int(m, "attention.head_count_kv", &hp->n_head_kv, 0, 1, hp->n_head) < 0 ||
        vm_model_key_int(m, "expert_count", &hp->n_expert, 0, 0, 1 << 16) < 0)
        return -1;
    if (hp->n_head % hp->n_head_kv)
        return vm_err("model: head_count %d is not a multiple of head_count_kv %d", hp->n_head, hp->n_head_kv);
    if (hp->n_expert > 0 &&
        vm_model_key_int(m, "expert_used_count", &hp->n_expert_used, 1, 1, hp->n_expert))
        return -1;
    if (vm_model_key_int(m, "feed_forward_length", &hp->n_ff, 1, 1, BIG)) return -1;
    hp->n_ff_exp = hp->n_ff;
    if (vm_model_key_int(m, "expert_feed_forward_length", &hp->n_ff_exp, 0, 1, BIG) < 0) return -1;
    hp->head_dim = hp->n_embd / hp->n_head;
    int rc = vm_model_key_int(m, "attention.key_length", &hp->head_dim, 0, 1, BIG);
    if (rc < 0) return -1;
    if (rc == 1 && hp->n_embd % hp->n_head)
        return vm_err("model: embedding_length %d is not a multiple of head_count %d", hp->n_embd, hp->n_head);
    int vlen = hp->head_dim;
    if (vm_model_key_int(m, "attention.value_length", &vlen, 0, 1, BIG) < 0) return -1;
    if (vlen != hp->head_dim)
        return vm_err("model: attention.value_length %d != key_length %d is not supported", vlen, hp->head_dim);
    hp->n_rot = hp->head_dim;
    if (vm_model_key_int(m, "rope.dimension_count", &hp->n_rot, 0, 2, hp->head_dim) < 0) return -1;
    if (hp->n_rot % 2) return vm_err("model: rope.dimension_count %d is odd", hp->n_rot);
    if (vm_model_key_f32(m, "attention.layer_norm_rms_epsilon", &hp->norm_eps, 1)) return -1;
    if (!(hp->norm_eps > 0)) return vm_err("model: layer_norm_rms_epsilon %g must be positive", hp->norm_eps);
    hp->rope_freq_base = 10000.0f;
    if (vm_model_key_f32(m, "rope.freq_base", &hp->rope_freq_base, 0) < 0) return -1;
    if (!(hp->rope_freq_base > 0)) return vm_err("model: rope.freq_base %g must be positive", hp->rope_freq_base);
    // linear scaling (position interpolation): freq_scale = 1/factor; other schemes are refused
    // rather than run wrong
    char key[96], *stype = NULL;
    snprintf(key, sizeof key, "%s.rope.scaling.type", hp->arch_name);
    rc = vm_gguf_get_str(m->gguf, key, &stype);
    if (rc < 0) return vm_err_prefix("model");
    if (rc == 0 && strcmp(stype, "none") != 0 && strcmp(stype, "linear") != 0) {
        vm_err("model: rope scaling '%s' is not supported (none, linear)", stype);
        free(stype);
        return -1;
    }
    free(stype);
    float factor = 0.0f;
    rc = vm_model_key_f32(m, "rope.scaling.factor", &factor, 0);
    if (rc == 1) rc = vm_model_key_f32(m, "rope.scale_linear", &factor, 0);
    if (rc < 0) return -1;
    if (factor < 0) return vm_err("model: rope scaling factor %g is negative", factor);
    hp->rope_freq_scale = factor == 0.0f ? 1.0f : 1.0f / factor;
    hp->rope_neox = 0;
    hp->gate_conv = VM_GATE_SOFTMAX_SELECTED;
    char name[96];
    if (vm_gguf_find_tensor(m->gguf, vm_tn(name, sizeof name, VM_TN_ROPE_FREQS, -1, "weight")))
        return vm_err("model: rope_freqs.weight (per-dimension rope factors) is not supported");
    return 0;
}

int vm_arch_load_experts(vm_model *m, int il, vm_layer *ly) {
    const vm_hparams *hp = &m->hp;
    const int64_t D = hp->n_embd, F = hp->n_ff_exp, N = hp->n_expert;
    char name[96];
    if (vm_gguf_find_tensor(m->gguf, vm_tn(name, sizeof name, VM_TN_FFN_GATE_EXPS, il, "weight"))) {   // stacked [in, out, n_expert]
        vm_tensor g, u, d;
        if (vm_model_tensor(m, &g, vm_tn(name, sizeof name, VM_TN_FFN_GATE_EXPS, il, "weight"), 3, (int64_t[]){D, F, N}, 1)) return -1;
        if (vm_model_tensor(m, &u, vm_tn(name, sizeof name, VM_TN_FFN_UP_EXPS, il, "weight"), 3, (int64_t[]){D, F, N}, 1)) return -1;
        if (vm_model_tensor(m, &d, vm_tn(name, sizeof name, VM_TN_FFN_DOWN_EXPS, il, "weight"), 3, (int64_t[]){F, D, N}, 1)) return -1;
        for (int e = 0; e < N; e++) {
            ly->exp_gate[e] = vm_tensor_slice2(&g, e);
            ly->exp_up[e] = vm_tensor_slice2(&u, e);
            ly->exp_down[e] = vm_tensor_slice2(&d, e);
        }
        return 0;
    }
    char stacked[96];
    if (!vm_gguf_find_tensor(m->gguf, vm_tn_exp(name, sizeof name, VM_TN_FFN_GATE, il, 0, "weight")))
        return vm_err("model: missing tensor '%s' (expected [%lld, %lld, %lld]) or per-expert '%s'",
                      vm_tn(stacked, sizeof stacked, VM_TN_FFN_GATE_EXPS, il, "weight"), (long long)D, (long long)F,
                      (long long)N, name);
    for (int e = 0; e < N; e++) {   // older layout: one matrix per expert
        if (vm_model_tensor(m, &ly->exp_gate[e], vm_tn_exp(name, sizeof name, VM_TN_FFN_GATE, il, e, "weight"), 2, (int64_t[]){D, F}, 1)) return -1;
        if (vm_model_tensor(m, &ly->exp_up[e], vm_tn_exp(name, sizeof name, VM_TN_FFN_UP, il, e, "weight"), 2, (int64_t[]){D, F}, 1)) return -1;
        if (vm_model_tensor(m, &ly->exp_down[e], vm_tn_exp(name, sizeof name, VM_TN_FFN_DOWN, il, e, "weight"), 2, (int64_t[]){F, D}, 1)) return -1;
    }
    return 0;
}

int vm_arch_llama_load(vm_model *m) {
    if (vm_arch_llama_hparams(m)) return -1;
    vm_hparams *hp = &m->hp;
    const int64_t D = hp->n_embd, qd = (int64_t)hp->n_head * hp->head_dim;
    const int64_t kvd = (int64_t)hp->n_head_kv * hp->head_dim, N = hp->n_expert;
    if (vm_model_embd_output(m)) return -1;

    m->layers = vm_calloc((size_t)hp->n_layer, sizeof *m->layers);
    m->routers = vm_calloc((size_t)hp->n_layer, sizeof *m->routers);
    m->f32_store = vm_calloc((size_t)(2 * hp->n_layer + 1) * (size_t)D, sizeof(float));
    if (!m->layers || !m->routers || !m->f32_store) return -1;
    if (N > 0) {   // every layer's expert views in one array, freed through layers[0].exp_gate
        vm_tensor *views = vm_calloc((size_t)hp->n_layer * 3 * (size_t)N, sizeof *views);
        if (!views) return -1;
        for (int il = 0; il < hp->n_layer; il++) {
            m->layers[il].exp_gate = views + (size_t)il * 3 * N;
            m->layers[il].exp_up = m->layers[il].exp_gate + N;
            m->layers[il].exp_down = m->layers[il].exp_up + N;
        }
    }
    size_t used = 0;
    char name[96];
    if (vm_model_norm(m, vm_tn(name, sizeof name, VM_TN_OUTPUT_NORM, -1, "weight"), D, &m->output_norm, &used)) return -1;
#define T2(field, t, a, b) do { \
        if (vm_model_tensor(m, &ly->field, vm_tn(name, sizeof name, t, il, "weight"), 2, (int64_t[]){a, b}, 1)) return -1; } while (0)
    for (int il = 0; il < hp->n_layer; il++) {
        vm_layer *ly = &m->layers[il];
        if (vm_model_norm(m, vm_tn(name, sizeof name, VM_TN_ATTN_NORM, il, "weight"), D, &ly->attn_norm, &used)) return -1;
        if (vm_model_norm(m, vm_tn(name, sizeof name, VM_TN_FFN_NORM, il, "weight"), D, &ly->ffn_norm, &used)) return -1;
        T2(wq, VM_TN_ATTN_Q, D, qd);
        T2(wk, VM_TN_ATTN_K, D, kvd);
        T2(wv, VM_TN_ATTN_V, D, kvd);
        T2(wo, VM_TN_ATTN_OUTPUT, qd, D);
        if (N == 0) {
            T2(ffn_gate, VM_TN_FFN_GATE, D, hp->n_ff);
            T2(ffn_up, VM_TN_FFN_UP, D, hp->n_ff);
            T2(ffn_down, VM_TN_FFN_DOWN, hp->n_ff, D);
            continue;
        }
        ly->is_moe = 1;
        T2(ffn_gate_inp, VM_TN_FFN_GATE_INP, D, N);
        if (vm_arch_load_experts(m, il, ly)) return -1;
        ly->rl = (vm_router_layer){ .layer = il, .n_embd = hp->n_embd, .n_expert = hp->n_expert,
                                    .n_expert_used = hp->n_expert_used, .conv = hp->gate_conv,
                                    .w_gate = &ly->ffn_gate_inp, .weights_scale = 1.0f };
        m->routers[il] = vm_router_deterministic();
        if (!m->routers[il]) return -1;
    }
#undef T2
    return 0;
}

// Arch `deepseek2` (DeepSeek-V2, V2-Lite, V2.5, V3, R1 and their relatives): multi-head latent
// attention (attn_mla.c) and DeepSeek's MoE, keys and tensor names as llama.cpp writes and reads
// them (llama-arch.cpp, models/deepseek2.cpp):
//  - attention: attn_q (lite) or attn_q_a + attn_q_a_norm + attn_q_b; attn_kv_a_mqa, attn_kv_a_norm;
//    attn_k_b + attn_v_b (current converters, with attention.key_length_mla / value_length_mla) or
//    the legacy attn_kv_b; RoPE ggml "normal" on the qk_rope part, YaRN when rope.scaling.type is
//    yarn, with llama.cpp's magnitude handling: rope.scaling.yarn_log_multiplier (stored by the
//    converters as 0.1 * mscale_all_dim) sets the q.k scale mscale^2 / sqrt(key_length_mla);
//  - FFN: the first leading_dense_block_count blocks dense; the others route by expert_gating_func
//    (absent/0 or 1 softmax, 2 sigmoid), select on probs + exp_probs_b (selection only), with
//    group-limited routing (expert_group_count / expert_group_used_count), gates renormalised when
//    expert_weights_norm and times expert_weights_scale, plus expert_shared_count shared experts
//    fused into one ungated SwiGLU of expert_shared_count * expert_feed_forward_length.
#include "model/attn_mla.h"
#include "util/err.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ds2_keys {
    int k_mla, v_mla;                // nope + rope, v_dim (0: legacy file)
    int n_shared, gating, norm, n_group, topk_group, n_ctx_orig;
    float log_mul, beta_fast, beta_slow, factor;
    int yarn;
} ds2_keys;

static int load_hparams(vm_model *m, vm_mla *a, ds2_keys *k) {
    vm_hparams *hp = &m->hp;
    const int BIG = 1 << 24;
    if (vm_model_key_int(m, "context_length", &hp->n_ctx_train, 1, 1, 1 << 30) ||
        vm_model_key_int(m, "embedding_length", &hp->n_embd, 1, 1, BIG) ||
        vm_model_key_int(m, "block_count", &hp->n_layer, 1, 1, 1 << 16) ||
        vm_model_key_int(m, "attention.head_count", &a->n_head, 1, 1, 1 << 16) ||
        vm_model_key_int(m, "feed_forward_length", &hp->n_ff, 1, 1, BIG) ||
        vm_model_key_int(m, "expert_count", &hp->n_expert, 1, 1, 1 << 16) ||
        vm_model_key_int(m, "expert_used_count", &hp->n_expert_used, 1, 1, hp->n_expert) ||
        vm_model_key_int(m, "expert_feed_forward_length", &hp->n_ff_exp, 1, 1, BIG) ||
        vm_model_key_int(m, "attention.kv_lora_rank", &a->kv_lora, 1, 1, BIG) ||
        vm_model_key_int(m, "rope.dimension_count", &a->rope, 1, 2, BIG) ||
        vm_model_key_f32(m, "attention.layer_norm_rms_epsilon", &hp->norm_eps, 1))
        return -1;
    if (a->rope % 2) return vm_err("model: rope.dimension_count %d is odd", a->rope);
    if (!(hp->norm_eps > 0)) return vm_err("model: layer_norm_rms_epsilon %g must be positive", hp->norm_eps);
    *k = (ds2_keys){ .gating = 1, .beta_fast = 32.0f, .beta_slow = 1.0f };
    hp->n_layer_dense_lead = 0;
    a->q_lora = 0;
    if (vm_model_key_int(m, "leading_dense_block_count", &hp->n_layer_dense_lead, 0, 0, hp->n_layer) < 0 ||
        vm_model_key_int(m, "attention.q_lora_rank", &a->q_lora, 0, 0, BIG) < 0 ||
        vm_model_key_int(m, "expert_shared_count", &k->n_shared, 0, 0, 1 << 16) < 0 ||
        vm_model_key_int(m, "expert_gating_func", &k->gating, 0, 0, 3) < 0 ||
        vm_model_key_int(m, "expert_group_count", &k->n_group, 0, 0, hp->n_expert) < 0 ||
        vm_model_key_int(m, "expert_group_used_count", &k->topk_group, 0, 0, hp->n_expert) < 0)
        return -1;
    // head sizes: *_mla keys in current files (the cache then holds the latent); legacy files give
    // the decompressed sizes as key_length / value_length
    int rk = vm_model_key_int(m, "attention.key_length_mla", &k->k_mla, 0, 1, BIG);
    int rv = vm_model_key_int(m, "attention.value_length_mla", &k->v_mla, 0, 1, BIG);
    if (rk < 0 || rv < 0) return -1;
    if (rk != rv) return vm_err("model: attention.key_length_mla and value_length_mla must come together");
    if (rk == 1) {
        if (vm_model_key_int(m, "attention.key_length", &k->k_mla, 1, 1, BIG) ||
            vm_model_key_int(m, "attention.value_length", &k->v_mla, 1, 1, BIG)) return -1;
        a->kb_fused = 1;
    }
    a->nope = k->k_mla - a->rope;
    a->v_dim = k->v_mla;
    if (a->nope < 1)
        return vm_err("model: key length %d leaves no room for rope.dimension_count %d", k->k_mla, a->rope);
    hp->expert_weights_scale = 1.0f;
    if (vm_model_key_f32(m, "expert_weights_scale", &hp->expert_weights_scale, 0) < 0) return -1;
    if (!(hp->expert_weights_scale > 0)) hp->expert_weights_scale = 1.0f;   // 0 in files = "unset"
    char key[128];
    snprintf(key, sizeof key, "%s.expert_weights_norm", hp->arch_name);
    if (vm_gguf_get_bool(m->gguf, key, &k->norm) < 0) return vm_err_prefix("model");
    if (k->gating == 3) return vm_err("model: expert_gating_func 3 (softmax of the selected weights) is not supported for deepseek2");
    const int sigmoid = k->gating == 2;
    hp->gate_conv = sigmoid ? (k->norm ? VM_GATE_SIGMOID_NORM : VM_GATE_SIGMOID)
                            : (k->norm ? VM_GATE_SOFTMAX_ALL_NORM : VM_GATE_SOFTMAX_ALL);
    if (k->n_group > 1 && (hp->n_expert % k->n_group || k->topk_group < 1 || k->topk_group > k->n_group))
        return vm_err("model: %d experts in %d groups with %d used groups", hp->n_expert, k->n_group, k->topk_group);
    hp->n_ff_shexp = k->n_shared * hp->n_ff_exp;
    // the generic sizes: one cache row of kv_lora + rope per token, shared by all heads
    hp->n_head = a->n_head;
    hp->n_head_kv = 1;
    hp->head_dim = a->kv_lora + a->rope;
    hp->n_rot = a->rope;
    hp->rope_neox = 0;
    hp->rope_freq_base = 10000.0f;
    if (vm_model_key_f32(m, "rope.freq_base", &hp->rope_freq_base, 0) < 0) return -1;
    if (!(hp->rope_freq_base > 0)) return vm_err("model: rope.freq_base %g must be positive", hp->rope_freq_base);
    // rope scaling: none or yarn (llama.cpp's deepseek2 graph asserts YaRN-style handling)
    char *stype = NULL;
    snprintf(key, sizeof key, "%s.rope.scaling.type", hp->arch_name);
    int rc = vm_gguf_get_str(m->gguf, key, &stype);
    if (rc < 0) return vm_err_prefix("model");
    if (rc == 0 && strcmp(stype, "none") != 0 && strcmp(stype, "yarn") != 0) {
        vm_err("model: deepseek2 rope scaling '%s' is not supported (none, yarn)", stype);
        free(stype);
        return -1;
    }
    k->yarn = rc == 0 && strcmp(stype, "yarn") == 0;
    free(stype);
    k->factor = 1.0f;
    k->n_ctx_orig = hp->n_ctx_train;
    if (k->yarn) {
        if (vm_model_key_f32(m, "rope.scaling.factor", &k->factor, 1) ||
            vm_model_key_int(m, "rope.scaling.original_context_length", &k->n_ctx_orig, 0, 1, 1 << 30) < 0 ||
            vm_model_key_f32(m, "rope.scaling.yarn_log_multiplier", &k->log_mul, 0) < 0 ||
            vm_model_key_f32(m, "rope.scaling.yarn_beta_fast", &k->beta_fast, 0) < 0 ||
            vm_model_key_f32(m, "rope.scaling.yarn_beta_slow", &k->beta_slow, 0) < 0)
            return -1;
        if (!(k->factor >= 1.0f)) return vm_err("model: YaRN factor %g must be >= 1", k->factor);
    }
    return 0;
}

// RoPE and q.k scale as llama.cpp derives them for deepseek2 (llama-context.cpp yarn_attn_factor,
// models/deepseek2.cpp kq_scale): with f = factor and M = yarn_log_multiplier / 0.1
// (= mscale_all_dim), the rotation keeps unit magnitude and q.k is scaled by
// (1 + 0.1 M ln f)^2 / sqrt(nope + rope); without M both carry get_mscale(f, 1) = 1 + 0.1 ln f.
static void set_rope(vm_model *m, vm_mla *a, const ds2_keys *k) {
    const vm_hparams *hp = &m->hp;
    a->freq_base = hp->rope_freq_base;
    a->freq_scale = 1.0f / k->factor;
    a->ext_factor = k->yarn ? 1.0f : 0.0f;
    a->rope_mscale = 1.0f;
    float mscale = 1.0f;
    if (k->yarn) {
        const float lf = logf(k->factor), mall = k->log_mul / 0.1f;
        const float base = k->factor > 1.0f ? 1.0f + 0.1f * lf : 1.0f;   // get_mscale(f, 1)
        a->rope_mscale = mall != 0.0f ? 1.0f : base;
        mscale = a->rope_mscale * (1.0f + 0.1f * mall * lf);
        vm_mla_yarn_corr(a->rope, k->n_ctx_orig, a->freq_base, k->beta_fast, k->beta_slow, &a->corr_lo, &a->corr_hi);
    }
    a->kq_scale = mscale * mscale / sqrtf((float)(a->nope + a->rope));
}

static int load_layer(vm_model *m, vm_mla *a, const ds2_keys *k, int il, size_t *used) {
    const vm_hparams *hp = &m->hp;
    vm_layer *ly = &m->layers[il];
    vm_mla_layer *L = &a->layers[il];
    const int64_t D = hp->n_embd, H = a->n_head, nope = a->nope, rope = a->rope, kvl = a->kv_lora;
    const int64_t vd = a->v_dim, ql = a->q_lora, N = hp->n_expert, Fs = hp->n_ff_shexp;
    char name[96];
#define NM(t, suffix) vm_tn(name, sizeof name, t, il, suffix)
#define T2(dst, t, a_, b_) do { \
        if (vm_model_tensor(m, dst, NM(t, "weight"), 2, (int64_t[]){a_, b_}, 1)) return -1; } while (0)
    if (vm_model_norm(m, NM(VM_TN_ATTN_NORM, "weight"), D, &ly->attn_norm, used) ||
        vm_model_norm(m, NM(VM_TN_FFN_NORM, "weight"), D, &ly->ffn_norm, used) ||
        vm_model_norm(m, NM(VM_TN_ATTN_KV_A_NORM, "weight"), kvl, &L->kv_a_norm, used)) return -1;
    if (ql > 0) {
        T2(&L->wq_a, VM_TN_ATTN_Q_A, D, ql);
        if (vm_model_norm(m, NM(VM_TN_ATTN_Q_A_NORM, "weight"), ql, &L->q_a_norm, used)) return -1;
        T2(&L->wq_b, VM_TN_ATTN_Q_B, ql, H * (nope + rope));
    } else {
        T2(&ly->wq, VM_TN_ATTN_Q, D, H * (nope + rope));
    }
    T2(&L->wkv_a, VM_TN_ATTN_KV_A_MQA, D, kvl + rope);
    T2(&ly->wo, VM_TN_ATTN_OUTPUT, H * vd, D);
    L->k_b = a->views + (size_t)il * 2 * H;
    L->v_b = L->k_b + H;
    if (a->kb_fused) {   // [kvl, H*(nope+vd)]: head h's rows are k (nope) then v (vd)
        vm_tensor kv;
        T2(&kv, VM_TN_ATTN_KV_B, kvl, H * (nope + vd));
        for (int64_t h = 0; h < H; h++) {
            const char *base = (const char *)kv.data + (size_t)(h * (nope + vd)) * kv.nb[1];
            vm_tensor_init(&L->k_b[h], kv.name, kv.type, 2, (int64_t[]){kvl, nope}, base);
            vm_tensor_init(&L->v_b[h], kv.name, kv.type, 2, (int64_t[]){kvl, vd}, base + (size_t)nope * kv.nb[1]);
        }
    } else {
        vm_tensor kb, vb;
        if (vm_model_tensor(m, &kb, NM(VM_TN_ATTN_K_B, "weight"), 3, (int64_t[]){nope, kvl, H}, 1) ||
            vm_model_tensor(m, &vb, NM(VM_TN_ATTN_V_B, "weight"), 3, (int64_t[]){kvl, vd, H}, 1)) return -1;
        for (int64_t h = 0; h < H; h++) {
            L->k_b[h] = vm_tensor_slice2(&kb, h);
            L->v_b[h] = vm_tensor_slice2(&vb, h);
        }
    }
    if (il < hp->n_layer_dense_lead) {
        T2(&ly->ffn_gate, VM_TN_FFN_GATE, D, hp->n_ff);
        T2(&ly->ffn_up, VM_TN_FFN_UP, D, hp->n_ff);
        T2(&ly->ffn_down, VM_TN_FFN_DOWN, hp->n_ff, D);
        return 0;
    }
    ly->is_moe = 1;
    T2(&ly->ffn_gate_inp, VM_TN_FFN_GATE_INP, D, N);
    if (vm_gguf_find_tensor(m->gguf, NM(VM_TN_EXP_PROBS_B, "bias")) &&
        vm_model_norm(m, name, N, &ly->rl.sel_bias, used)) return -1;
    NM(VM_TN_FFN_GATE_EXPS, "weight");
    if (!vm_gguf_find_tensor(m->gguf, name))
        return vm_err("model: missing tensor '%s' (expected [%lld, %lld, %lld])", name, (long long)D,
                      (long long)hp->n_ff_exp, (long long)N);
    if (vm_arch_load_experts(m, il, ly)) return -1;
    const float *bias = ly->rl.sel_bias;
    ly->rl = (vm_router_layer){ .layer = il, .n_embd = hp->n_embd, .n_expert = hp->n_expert,
                                .n_expert_used = hp->n_expert_used, .conv = hp->gate_conv,
                                .w_gate = &ly->ffn_gate_inp, .weights_scale = hp->expert_weights_scale,
                                .sel_bias = bias, .n_group = k->n_group > 1 ? k->n_group : 0,
                                .topk_group = k->n_group > 1 ? k->topk_group : 0 };
    if (Fs > 0) {
        ly->has_shexp = 1;
        T2(&ly->ffn_gate_shexp, VM_TN_FFN_GATE_SHEXP, D, Fs);
        T2(&ly->ffn_up_shexp, VM_TN_FFN_UP_SHEXP, D, Fs);
        T2(&ly->ffn_down_shexp, VM_TN_FFN_DOWN_SHEXP, Fs, D);
    }
#undef T2
#undef NM
    m->routers[il] = vm_router_deterministic();
    return m->routers[il] ? 0 : -1;
}

int vm_arch_deepseek2_load(vm_model *m) {
    vm_hparams *hp = &m->hp;
    vm_mla *a = m->mla = vm_calloc(1, sizeof *m->mla);
    if (!a) return -1;
    ds2_keys k;
    if (load_hparams(m, a, &k)) return -1;
    set_rope(m, a, &k);
    const int64_t D = hp->n_embd, N = hp->n_expert, H = a->n_head;
    if (vm_model_embd_output(m)) return -1;

    // the last block's attention shapes first: the per-layer arrays below are sized from
    // metadata, which must not allocate what the file cannot back
    char name[96];
    vm_tensor t;
    vm_tn(name, sizeof name, VM_TN_ATTN_KV_A_MQA, hp->n_layer - 1, "weight");
    if (vm_model_tensor(m, &t, name, 2, (int64_t[]){D, (int64_t)a->kv_lora + a->rope}, 1)) return -1;
    vm_tn(name, sizeof name, VM_TN_ATTN_OUTPUT, hp->n_layer - 1, "weight");
    if (vm_model_tensor(m, &t, name, 2, (int64_t[]){H * a->v_dim, D}, 1)) return -1;
    // f32 copies of small vectors per layer: 2 norms (D), q/kv LoRA norms, selection bias (N)
    const size_t per_layer = 2 * (size_t)D + (size_t)a->q_lora + (size_t)a->kv_lora + (size_t)N;
    m->layers = vm_calloc((size_t)hp->n_layer, sizeof *m->layers);
    m->routers = vm_calloc((size_t)hp->n_layer, sizeof *m->routers);
    m->f32_store = vm_calloc((size_t)hp->n_layer * per_layer + (size_t)D, sizeof(float));
    a->layers = vm_calloc((size_t)hp->n_layer, sizeof *a->layers);
    a->views = vm_calloc((size_t)hp->n_layer * 2 * (size_t)H, sizeof *a->views);
    vm_tensor *views = vm_calloc((size_t)hp->n_layer * 3 * (size_t)N, sizeof *views);
    if (!m->layers || !m->routers || !m->f32_store || !a->layers || !a->views || !views) { free(views); return -1; }
    for (int il = 0; il < hp->n_layer; il++) {   // one array, freed through layers[0].exp_gate
        m->layers[il].exp_gate = views + (size_t)il * 3 * N;
        m->layers[il].exp_up = m->layers[il].exp_gate + N;
        m->layers[il].exp_down = m->layers[il].exp_up + N;
    }
    size_t used = 0;
    if (vm_model_norm(m, vm_tn(name, sizeof name, VM_TN_OUTPUT_NORM, -1, "weight"), D, &m->output_norm, &used)) return -1;
    for (int il = 0; il < hp->n_layer; il++)
        if (load_layer(m, a, &k, il, &used)) return -1;
    return 0;
}

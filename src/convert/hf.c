// Hugging Face checkpoint -> GGUF (see hf.h for what is mapped and checked).
// Shapes: HF stores a linear layer as [out, in] row-major, which is ggml's ne = [in, out]: GGUF
// dims are the HF shape reversed, bytes unchanged (stacked experts [E, F, D] -> ne [D, F, E]).
#include "convert/hf.h"
#include "convert/safetensors.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"
#include "util/err.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef enum hf_arch {
    HF_LLAMA = 0, HF_GRANITEMOE, HF_QWEN2MOE, HF_QWEN3MOE, HF_OLMOE, HF_DEEPSEEK, HF_DEEPSEEK2
} hf_arch;

// "architectures"[0], or (a config without that list, which transformers loads by its model_type)
// "model_type"; n_ctx: the config class's max_position_embeddings default, used when config.json
// has none (transformers fills the attribute from the class default then). Sources: the
// `configuration_<model_type>.py` files of transformers (Llama 2048; Mistral, Mixtral 4096 * 32;
// GraniteMoe, GraniteMoeShared 2048; Qwen2Moe, Qwen3Moe 32768; Olmoe 4096; DeepseekV2 2048;
// DeepseekV3 4096) and, for deepseek (not in transformers), the remote-code DeepseekConfig of
// deepseek-ai/deepseek-moe-16b (2048).
static const struct { const char *hf, *model_type; hf_arch arch; const char *gguf; int n_ctx; } hf_archs[] = {
    {"LlamaForCausalLM", "llama", HF_LLAMA, "llama", 2048},
    {"MistralForCausalLM", "mistral", HF_LLAMA, "llama", 4096 * 32},
    {"MixtralForCausalLM", "mixtral", HF_LLAMA, "llama", 4096 * 32},
    {"GraniteMoeForCausalLM", "granitemoe", HF_GRANITEMOE, "granitemoe", 2048},
    {"GraniteMoeSharedForCausalLM", "granitemoeshared", HF_GRANITEMOE, "granitemoe", 2048},
    {"Qwen2MoeForCausalLM", "qwen2_moe", HF_QWEN2MOE, "qwen2moe", 32768},
    {"Qwen3MoeForCausalLM", "qwen3_moe", HF_QWEN3MOE, "qwen3moe", 32768},
    {"OlmoeForCausalLM", "olmoe", HF_OLMOE, "olmoe", 4096},
    {"DeepseekForCausalLM", "deepseek", HF_DEEPSEEK, "deepseek", 2048},
    {"DeepseekV2ForCausalLM", "deepseek_v2", HF_DEEPSEEK2, "deepseek2", 2048},
    {"DeepseekV3ForCausalLM", "deepseek_v3", HF_DEEPSEEK2, "deepseek2", 4096},
};

// ---------------------------------------------------------------- config.json

typedef struct hf_cfg {
    hf_arch arch;
    const char *gguf_arch;
    int n_vocab, n_ctx, n_embd, n_ff, n_layer, n_head, n_head_kv, head_dim, head_dim_given;
    int n_expert, n_expert_used, n_ff_exp, n_ff_shexp, n_shared, n_dense_lead, n_nextn;
    int tie;
    double eps, theta;
    char rope_type[16];            // "" none, "linear", "yarn"
    double rope_factor, mscale_all_dim;
    int rope_orig_ctx;
    int q_lora, kv_lora, qk_nope, qk_rope, v_head;    // deepseek2 MLA
    int n_group, topk_group, gating, norm_topk;       // gating 0 absent / 1 softmax / 2 sigmoid; norm -1 absent
    double routed_scale;                               // 0 absent
    double g_attn, g_emb, g_resid, g_logits;           // granite multipliers (0 absent)
} hf_cfg;

static const char *CFG = "config.json";

// 0 found, 1 absent (or null), -1 wrong type / out of range.
static int cj_int(json_t *c, const char *key, int *out, int required, int lo, int hi) {
    json_t *v = json_object_get(c, key);
    if (!v || json_is_null(v)) return required ? vm_err("%s: missing \"%s\"", CFG, key) : 1;
    if (!json_is_integer(v)) return vm_err("%s: \"%s\" is not an integer", CFG, key);
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi) return vm_err("%s: \"%s\" = %lld out of range [%d, %d]", CFG, key, (long long)x, lo, hi);
    *out = (int)x;
    return 0;
}

static int cj_num(json_t *c, const char *key, double *out, int required) {
    json_t *v = json_object_get(c, key);
    if (!v || json_is_null(v)) return required ? vm_err("%s: missing \"%s\"", CFG, key) : 1;
    if (!json_is_number(v)) return vm_err("%s: \"%s\" is not a number", CFG, key);
    *out = json_number_value(v);
    return 0;
}

static int cj_bool(json_t *c, const char *key, int *out) {
    json_t *v = json_object_get(c, key);
    if (!v || json_is_null(v)) return 1;
    if (!json_is_boolean(v)) return vm_err("%s: \"%s\" is not a boolean", CFG, key);
    *out = json_is_true(v);
    return 0;
}

// First present key of a list (HF names vary between families).
static int cj_int_any(json_t *c, const char *const *keys, int *out, int required, int lo, int hi) {
    for (int i = 0; keys[i]; i++) {
        json_t *v = json_object_get(c, keys[i]);
        if (v && !json_is_null(v)) return cj_int(c, keys[i], out, 1, lo, hi);
    }
    return required ? vm_err("%s: missing \"%s\"", CFG, keys[0]) : 1;
}

static int cfg_rope(json_t *root, hf_cfg *c) {
    json_t *rp = json_object_get(root, "rope_parameters");   // newer transformers
    c->theta = 10000.0;
    if (cj_num(root, "rope_theta", &c->theta, 0) < 0) return -1;
    if (json_is_object(rp) && cj_num(rp, "rope_theta", &c->theta, 0) < 0) return -1;
    if (!(c->theta > 0)) return vm_err("%s: rope_theta %g must be positive", CFG, c->theta);
    json_t *rs = json_object_get(root, "rope_scaling");
    if (!json_is_object(rs)) rs = rp;
    if (!rs || json_is_null(rs)) return 0;
    if (!json_is_object(rs)) return vm_err("%s: \"rope_scaling\" is not an object", CFG);
    json_t *t = json_object_get(rs, "rope_type");
    if (!t) t = json_object_get(rs, "type");
    if (!t || json_is_null(t)) return 0;
    if (!json_is_string(t)) return vm_err("%s: rope_scaling type is not a string", CFG);
    const char *ty = json_string_value(t);
    if (!strcmp(ty, "default")) return 0;
    if (strcmp(ty, "linear") && strcmp(ty, "yarn"))
        return vm_err("%s: rope_scaling type '%s' is not supported (linear, yarn)", CFG, ty);
    snprintf(c->rope_type, sizeof c->rope_type, "%s", ty);
    if (cj_num(rs, "factor", &c->rope_factor, 1)) return vm_err_prefix("rope_scaling");
    if (!(c->rope_factor > 0)) return vm_err("%s: rope_scaling factor %g must be positive", CFG, c->rope_factor);
    if (!strcmp(ty, "yarn")) {
        if (cj_int(rs, "original_max_position_embeddings", &c->rope_orig_ctx, 0, 1, 1 << 30) < 0 ||
            cj_num(rs, "mscale_all_dim", &c->mscale_all_dim, 0) < 0) return -1;
    }
    return 0;
}

static int cfg_read(const char *dir, hf_cfg *c, char **name_out) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    size_t len;
    char *text = vm_read_file(path, &len);
    if (!text) return -1;
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    free(text);
    if (!root) return vm_err("%s: not valid JSON: %s (line %d)", path, jerr.text, jerr.line);
    int rc = -1;
    memset(c, 0, sizeof *c);
    c->norm_topk = -1;
    if (!json_is_object(root)) { vm_err("%s: not a JSON object", path); goto done; }
    json_t *archs = json_object_get(root, "architectures");
    const char *a = json_is_array(archs) ? json_string_value(json_array_get(archs, 0)) : NULL;
    const char *mt = a ? NULL : json_string_value(json_object_get(root, "model_type"));
    if (!a && !mt) { vm_err("%s: neither an \"architectures\" list nor a \"model_type\"", path); goto done; }
    int found = -1;
    for (size_t i = 0; i < sizeof hf_archs / sizeof *hf_archs; i++)
        if (a ? !strcmp(a, hf_archs[i].hf) : !strcmp(mt, hf_archs[i].model_type)) found = (int)i;
    if (found < 0) {
        vm_err("%s: %s '%s' is not supported (Llama, Mistral, Mixtral, GraniteMoe, Qwen2Moe, Qwen3Moe, Olmoe, "
               "Deepseek, DeepseekV2/V3)", path, a ? "architecture" : "model_type", a ? a : mt);
        goto done;
    }
    c->arch = hf_archs[found].arch; c->gguf_arch = hf_archs[found].gguf;
    if (!a) a = hf_archs[found].hf;   // for messages
    c->n_ctx = hf_archs[found].n_ctx;
    const int BIG = 1 << 24;
    static const char *const k_ctx[] = {"max_position_embeddings", "n_ctx", "n_positions", NULL};
    static const char *const k_nexp[] = {"num_local_experts", "num_experts", "n_routed_experts", NULL};
    static const char *const k_used[] = {"num_experts_per_tok", NULL};
    if (cj_int(root, "vocab_size", &c->n_vocab, 1, 1, BIG) ||
        cj_int_any(root, k_ctx, &c->n_ctx, 0, 1, 1 << 30) < 0 ||
        cj_int(root, "hidden_size", &c->n_embd, 1, 1, BIG) ||
        cj_int(root, "intermediate_size", &c->n_ff, 1, 1, BIG) ||
        cj_int(root, "num_hidden_layers", &c->n_layer, 1, 1, 1 << 16) ||
        cj_int(root, "num_attention_heads", &c->n_head, 1, 1, 1 << 16)) goto done;
    c->n_head_kv = c->n_head;
    if (cj_int(root, "num_key_value_heads", &c->n_head_kv, 0, 1, c->n_head) < 0) goto done;
    if (c->n_head % c->n_head_kv) { vm_err("%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", path, c->n_head, c->n_head_kv); goto done; }
    int r = cj_int(root, "head_dim", &c->head_dim, 0, 1, BIG);
    if (r < 0) goto done;
    c->head_dim_given = r == 0;
    if (!c->head_dim_given) {
        if (c->n_embd % c->n_head) { vm_err("%s: hidden_size %d is not a multiple of num_attention_heads %d", path, c->n_embd, c->n_head); goto done; }
        c->head_dim = c->n_embd / c->n_head;
    }
    c->eps = 1e-6;
    if (cj_num(root, "rms_norm_eps", &c->eps, c->arch != HF_DEEPSEEK2) < 0) goto done;
    if (!(c->eps > 0)) { vm_err("%s: rms_norm_eps %g must be positive", path, c->eps); goto done; }
    if (cj_bool(root, "tie_word_embeddings", &c->tie) < 0 || cfg_rope(root, c)) goto done;
    if (cj_int_any(root, k_nexp, &c->n_expert, 0, 0, 1 << 16) < 0) goto done;
    if (c->n_expert > 0 && cj_int_any(root, k_used, &c->n_expert_used, 1, 1, c->n_expert)) goto done;
    if (c->arch != HF_LLAMA && c->n_expert == 0) {
        vm_err("%s: %s without experts (num_experts / n_routed_experts) is not a MoE checkpoint", path, a);
        goto done;
    }
    c->n_ff_exp = c->n_ff;
    if (cj_int(root, "moe_intermediate_size", &c->n_ff_exp, 0, 1, BIG) < 0 ||
        cj_int(root, "shared_expert_intermediate_size", &c->n_ff_shexp, 0, 0, BIG) < 0 ||
        cj_int(root, "shared_intermediate_size", &c->n_ff_shexp, 0, 0, BIG) < 0 ||
        cj_int(root, "n_shared_experts", &c->n_shared, 0, 0, 1 << 16) < 0 ||
        cj_int(root, "first_k_dense_replace", &c->n_dense_lead, 0, 0, c->n_layer) < 0 ||
        cj_int(root, "num_nextn_predict_layers", &c->n_nextn, 0, 0, 1 << 10) < 0 ||
        cj_int(root, "n_group", &c->n_group, 0, 1, 1 << 16) < 0 ||
        cj_int(root, "topk_group", &c->topk_group, 0, 1, 1 << 16) < 0 ||
        cj_bool(root, "norm_topk_prob", &c->norm_topk) < 0 ||
        cj_num(root, "routed_scaling_factor", &c->routed_scale, 0) < 0) goto done;
    int step = 1;
    json_t *mlp_only = json_object_get(root, "mlp_only_layers");
    if (cj_int(root, "decoder_sparse_step", &step, 0, 1, 1 << 16) < 0) goto done;
    if (step != 1 || (json_is_array(mlp_only) && json_array_size(mlp_only) > 0)) {
        vm_err("%s: decoder_sparse_step %d / mlp_only_layers (dense layers between MoE layers) are not supported", path, step);
        goto done;
    }
    json_t *sf = json_object_get(root, "scoring_func");
    if (sf && !json_is_null(sf)) {
        const char *s = json_string_value(sf);
        if (s && !strcmp(s, "softmax")) c->gating = 1;
        else if (s && !strcmp(s, "sigmoid")) c->gating = 2;
        else { vm_err("%s: scoring_func '%s' is not supported (softmax, sigmoid)", path, s ? s : "?"); goto done; }
    }
    if (c->arch == HF_GRANITEMOE &&
        (cj_num(root, "attention_multiplier", &c->g_attn, 0) < 0 || cj_num(root, "embedding_multiplier", &c->g_emb, 0) < 0 ||
         cj_num(root, "residual_multiplier", &c->g_resid, 0) < 0 || cj_num(root, "logits_scaling", &c->g_logits, 0) < 0))
        goto done;
    if (c->arch == HF_DEEPSEEK2) {
        if (cj_int(root, "q_lora_rank", &c->q_lora, 0, 1, BIG) < 0 ||
            cj_int(root, "kv_lora_rank", &c->kv_lora, 1, 1, BIG) ||
            cj_int(root, "qk_nope_head_dim", &c->qk_nope, 1, 1, BIG) ||
            cj_int(root, "qk_rope_head_dim", &c->qk_rope, 1, 2, BIG) ||
            cj_int(root, "v_head_dim", &c->v_head, 1, 1, BIG)) goto done;
    }
    json_t *nm = json_object_get(root, "_name_or_path");
    if (name_out && json_is_string(nm) && *json_string_value(nm)) *name_out = vm_strdup(json_string_value(nm));
    rc = 0;
done:
    json_decref(root);
    return rc;
}

// ---------------------------------------------------------------- conversion context

typedef struct hf_ctx {
    const vm_st *st;
    const hf_cfg *c;
    char *used;                // per checkpoint tensor (indexed like st->t)
    vm_gguf_writer *w;
    vm_type type;
    void **bufs;               // converted data, alive until the writer has written it
    int nbufs, capbufs;
} hf_ctx;

static void *keep(hf_ctx *x, void *p) {
    if (!p) return NULL;
    if (x->nbufs == x->capbufs) {
        int cap = x->capbufs ? 2 * x->capbufs : 256;
        void **np = realloc(x->bufs, sizeof *np * (size_t)cap);
        if (!np) { free(p); vm_err("out of memory"); return NULL; }
        x->bufs = np; x->capbufs = cap;
    }
    return x->bufs[x->nbufs++] = p;
}

static void fmt_shape(char *buf, size_t size, int n, const int64_t *sh) {
    int o = snprintf(buf, size, "[");
    for (int i = 0; i < n && o > 0 && (size_t)o < size; i++)
        o += snprintf(buf + o, size - (size_t)o, "%s%lld", i ? ", " : "", (long long)sh[i]);
    if (o > 0 && (size_t)o < size) snprintf(buf + o, size - (size_t)o, "]");
}

// Looks a checkpoint tensor up with its expected HF shape and marks it used.
// 0 found, 1 absent and not required, -1 error (absent and required, wrong shape or dtype).
static int get(hf_ctx *x, const char *name, int nd, const int64_t *shape, int required, const vm_st_tensor **out) {
    char want[128], have[128];
    fmt_shape(want, sizeof want, nd, shape);
    const vm_st_tensor *t = vm_st_find(x->st, name);
    if (!t) return required ? vm_err("missing tensor '%s' (expected %s)", name, want) : 1;
    int ok = t->n_dims == nd;
    for (int i = 0; ok && i < nd; i++) ok = t->shape[i] == shape[i];
    if (!ok) {
        fmt_shape(have, sizeof have, t->n_dims, t->shape);
        return vm_err("tensor '%s' has shape %s, expected %s from config.json", name, have, want);
    }
    if (t->dtype != VM_ST_F32 && t->dtype != VM_ST_F16 && t->dtype != VM_ST_BF16)
        return vm_err("tensor '%s' has dtype %s (supported: F32, F16, BF16)", name, vm_st_dtype_name(t->dtype));
    x->used[t - x->st->t] = 1;
    *out = t;
    return 0;
}

static float *read_f32(const vm_st_tensor *t) {
    size_t n;
    if (vm_size_mul((size_t)vm_st_nelements(t), sizeof(float), &n)) return NULL;
    float *f = vm_malloc(n ? n : 1);
    if (f && vm_st_read_f32(t, f)) { free(f); return NULL; }
    return f;
}

// Adds data (n_dims, ne = GGUF order) under name; takes ownership of data. matrix: stored in the
// output type (Q8_0 needs whole blocks per row, else F16); otherwise F32.
static int put(hf_ctx *x, const char *name, float *data, int n_dims, const int64_t *ne, int matrix) {
    if (!keep(x, data)) return -1;
    vm_type ty = matrix ? x->type : VM_TYPE_F32;
    if (ty == VM_TYPE_Q8_0 && ne[0] % 32) ty = VM_TYPE_F16;
    int64_t rows = 1;
    for (int i = 1; i < n_dims; i++) rows *= ne[i];
    size_t row = vm_type_row_size(ty, ne[0]), nbytes;
    if (row == 0 || vm_size_mul(row, (size_t)rows, &nbytes)) return vm_err("%s: bad size", name);
    // what is written must be finite, or the model would not load (f16/q8_0 can overflow to Inf)
    if (vm_type_check_finite(VM_TYPE_F32, data, ne[0] * rows, name)) return -1;
    if (ty == VM_TYPE_F32) return vm_gguf_add_tensor(x->w, name, ty, n_dims, ne, data, nbytes);
    uint8_t *dst = keep(x, vm_malloc(nbytes ? nbytes : 1));
    if (!dst) return -1;
    for (int64_t r = 0; r < rows; r++) {
        const float *s = data + r * ne[0];
        uint8_t *d = dst + (size_t)r * row;
        if (ty == VM_TYPE_F16 || ty == VM_TYPE_BF16) {
            for (int64_t i = 0; i < ne[0]; i++) {
                uint16_t h = ty == VM_TYPE_F16 ? vm_fp32_to_fp16(s[i]) : vm_fp32_to_bf16(s[i]);
                memcpy(d + 2 * i, &h, 2);
            }
        } else if (vm_quant_row(ty, s, d, ne[0])) {
            return vm_err("%s: cannot quantise to %s", name, vm_type_name(ty));
        }
    }
    if (vm_type_check_finite(ty, dst, ne[0] * rows, name)) return -1;
    return vm_gguf_add_tensor(x->w, name, ty, n_dims, ne, dst, nbytes);
}

// HF rotate-half -> ggml adjacent pairs, per head of hd rows (llama.cpp's permute, undone by
// HF's own conversion script): new row h*hd + 2i + j = old row h*hd + j*hd/2 + i, i < hd/2, j < 2.
static int permute_rows(float *w, int64_t rows, int64_t cols, int n_head) {
    if (n_head < 1 || rows % n_head || (rows / n_head) % 2) return vm_err("cannot permute %lld rows into %d heads of pairs", (long long)rows, n_head);
    int64_t hd = rows / n_head;
    float *tmp = vm_malloc((size_t)(hd * cols) * sizeof *tmp);
    if (!tmp) return -1;
    for (int h = 0; h < n_head; h++) {
        float *base = w + (size_t)h * hd * cols;
        for (int64_t i = 0; i < hd / 2; i++)
            for (int j = 0; j < 2; j++)
                memcpy(tmp + (2 * i + j) * cols, base + (j * hd / 2 + i) * cols, (size_t)cols * sizeof *tmp);
        memcpy(base, tmp, (size_t)(hd * cols) * sizeof *tmp);
    }
    free(tmp);
    return 0;
}

enum { K_NORM = 0, K_MAT = 1, K_F32 = 2 };   // 1-D f32 / matrix in the output type / matrix kept f32

static vm_type st_to_vm(vm_st_dtype d) {
    return d == VM_ST_F32 ? VM_TYPE_F32 : d == VM_ST_F16 ? VM_TYPE_F16 : d == VM_ST_BF16 ? VM_TYPE_BF16 : VM_TYPE_COUNT;
}

// One checkpoint tensor -> one GGUF tensor. shape is the HF shape; permute_heads > 0 reorders the
// rows for ggml's RoPE. required 0: an absent tensor is skipped (returns 1).
static int emit(hf_ctx *x, const char *gname, const char *hname, int nd, const int64_t *shape,
                int kind, int permute_heads, int required) {
    const vm_st_tensor *t;
    int rc = get(x, hname, nd, shape, required, &t);
    if (rc) return rc;
    int64_t ne[4] = {1, 1, 1, 1};
    for (int i = 0; i < nd; i++) ne[i] = shape[nd - 1 - i];
    vm_type want = kind == K_MAT ? x->type : VM_TYPE_F32;
    if (want == VM_TYPE_Q8_0 && ne[0] % 32) want = VM_TYPE_F16;
    if (!permute_heads && st_to_vm(t->dtype) == want) {   // already in the output type: no copy
        if (vm_type_check_finite(want, t->data, ne[0] * ne[1] * ne[2] * ne[3], hname)) return -1;
        return vm_gguf_add_tensor(x->w, gname, want, nd, ne, t->data, t->nbytes);
    }
    float *f = read_f32(t);
    if (!f) return -1;
    if (permute_heads && permute_rows(f, shape[0], nd > 1 ? shape[1] : 1, permute_heads)) { free(f); return -1; }
    return put(x, gname, f, nd, ne, kind == K_MAT);
}

#define NAME(buf, ...) snprintf(buf, sizeof buf, __VA_ARGS__)

// Routed experts of layer il under HF prefix P ("model.layers.N.mlp" ...) into ffn_*_exps.
// names: per-expert gate/up/down leaf names (w1/w3/w2 or gate_proj/up_proj/down_proj).
static int emit_experts(hf_ctx *x, int il, const char *P, const char *const names[3]) {
    const int64_t E = x->c->n_expert, F = x->c->n_ff_exp, D = x->c->n_embd;
    char g[96], h[256], h2[256];
    size_t per = (size_t)(F * D);
    float *out[3] = {0};   // gate, up, down: (E, F, D), (E, F, D), (E, D, F)
    const vm_st_tensor *t = NULL, *td = NULL;
    NAME(h, "%s.experts.gate_up_proj", P);        // transformers v5 fused layout
    NAME(h2, "%s.input_linear.weight", P);        // Granite (JetMoe parallel experts)
    const char *fused = vm_st_find(x->st, h) ? h : vm_st_find(x->st, h2) ? h2 : NULL;
    // Every source tensor is found and shape-checked before anything is allocated, so the
    // buffers are as large as tensors the file holds, never just as config.json claims
    // (a 1 KB config could otherwise ask for terabytes: found by fuzz_convert_hf).
    if (fused) {
        const char *down = fused == h ? "%s.experts.down_proj" : "%s.output_linear.weight";
        if (get(x, fused, 3, (int64_t[]){E, 2 * F, D}, 1, &t)) return -1;
        NAME(h2, down, P);
        if (get(x, h2, 3, (int64_t[]){E, D, F}, 1, &td)) return -1;
    } else {
        for (int64_t e = 0; e < E; e++)
            for (int k = 0; k < 3; k++) {
                NAME(h, "%s.experts.%lld.%s.weight", P, (long long)e, names[k]);
                int64_t sh[2] = {k == 2 ? D : F, k == 2 ? F : D};
                if (get(x, h, 2, sh, 1, &t)) return -1;
            }
    }
    for (int k = 0; k < 3; k++)
        if (!(out[k] = vm_malloc(per * (size_t)E * sizeof(float)))) goto fail;
    if (fused) {
        float *gu = read_f32(t);
        if (!gu) goto fail;
        for (int64_t e = 0; e < E; e++) {   // first F rows gate, next F up
            memcpy(out[0] + e * per, gu + (size_t)(2 * e) * per, per * sizeof(float));
            memcpy(out[1] + e * per, gu + (size_t)(2 * e + 1) * per, per * sizeof(float));
        }
        free(gu);
        if (vm_st_read_f32(td, out[2])) goto fail;
    } else {
        for (int64_t e = 0; e < E; e++)
            for (int k = 0; k < 3; k++) {
                NAME(h, "%s.experts.%lld.%s.weight", P, (long long)e, names[k]);
                if (!(t = vm_st_find(x->st, h)) || vm_st_read_f32(t, out[k] + e * per)) goto fail;
            }
    }
    static const vm_tn_id gn[3] = {VM_TN_FFN_GATE_EXPS, VM_TN_FFN_UP_EXPS, VM_TN_FFN_DOWN_EXPS};
    for (int k = 0; k < 3; k++) {
        vm_tn(g, sizeof g, gn[k], il, "weight");
        int64_t ne[3] = {k == 2 ? F : D, k == 2 ? D : F, E};
        float *p = out[k];
        out[k] = NULL;
        if (put(x, g, p, 3, ne, 1)) goto fail;
    }
    return 0;
fail:
    for (int k = 0; k < 3; k++) free(out[k]);
    return -1;
}

// A dense SwiGLU block P.{gate,up,down}_proj -> blk.N.ffn_{gate,up,down}<suffix>.
// shexp: the shared expert's matrices (ffn_*_shexp) instead of the dense FFN's.
static int emit_mlp(hf_ctx *x, int il, const char *P, int64_t F, int shexp) {
    const int64_t D = x->c->n_embd;
    char g[96], h[256];
    static const char *const hn[3] = {"gate_proj", "up_proj", "down_proj"};
    static const vm_tn_id gn[2][3] = {{VM_TN_FFN_GATE, VM_TN_FFN_UP, VM_TN_FFN_DOWN},
                                      {VM_TN_FFN_GATE_SHEXP, VM_TN_FFN_UP_SHEXP, VM_TN_FFN_DOWN_SHEXP}};
    for (int k = 0; k < 3; k++) {
        NAME(h, "%s.%s.weight", P, hn[k]);
        vm_tn(g, sizeof g, gn[shexp][k], il, "weight");
        int64_t sh[2] = {k == 2 ? D : F, k == 2 ? F : D};
        if (emit(x, g, h, 2, sh, K_MAT, 0, 1)) return -1;
    }
    return 0;
}

// Granite's fused shared expert: input_linear [2F, D] = gate; up, output_linear [D, F].
static int emit_granite_shared(hf_ctx *x, int il, const char *L, int64_t F) {
    const int64_t D = x->c->n_embd;
    char g[96], h[256];
    const vm_st_tensor *t;
    NAME(h, "%s.shared_mlp.input_linear.weight", L);
    if (get(x, h, 2, (int64_t[]){2 * F, D}, 1, &t)) return -1;
    float *gu = read_f32(t);
    if (!gu) return -1;
    float *up = vm_malloc((size_t)(F * D) * sizeof *up);
    if (!up) { free(gu); return -1; }
    memcpy(up, gu + F * D, (size_t)(F * D) * sizeof *up);
    vm_tn(g, sizeof g, VM_TN_FFN_GATE_SHEXP, il, "weight");
    if (put(x, g, gu, 2, (int64_t[]){D, F}, 1)) { free(up); return -1; }
    vm_tn(g, sizeof g, VM_TN_FFN_UP_SHEXP, il, "weight");
    if (put(x, g, up, 2, (int64_t[]){D, F}, 1)) return -1;
    vm_tn(g, sizeof g, VM_TN_FFN_DOWN_SHEXP, il, "weight");
    NAME(h, "%s.shared_mlp.output_linear.weight", L);
    return emit(x, g, h, 2, (int64_t[]){D, F}, K_MAT, 0, 1);
}

// DeepSeek-V2/V3 multi-head latent attention.
static int emit_mla(hf_ctx *x, int il, const char *L) {
    const hf_cfg *c = x->c;
    const int64_t D = c->n_embd, H = c->n_head, nope = c->qk_nope, rope = c->qk_rope, vd = c->v_head, kvl = c->kv_lora;
    char g[96], h[256];
#define E2(id, sfx, hn, a, b, kind) do { vm_tn(g, sizeof g, id, il, sfx); NAME(h, "%s.self_attn." hn, L); \
        int64_t sh_[2] = {a, b}; \
        if (emit(x, g, h, sh_[1] ? 2 : 1, sh_, kind, 0, 1)) return -1; } while (0)
    if (c->q_lora) {
        E2(VM_TN_ATTN_Q_A, "weight", "q_a_proj.weight", c->q_lora, D, K_MAT);
        E2(VM_TN_ATTN_Q_A_NORM, "weight", "q_a_layernorm.weight", c->q_lora, 0, K_NORM);
        E2(VM_TN_ATTN_Q_B, "weight", "q_b_proj.weight", H * (nope + rope), c->q_lora, K_MAT);
    } else {
        E2(VM_TN_ATTN_Q, "weight", "q_proj.weight", H * (nope + rope), D, K_MAT);
    }
    E2(VM_TN_ATTN_KV_A_MQA, "weight", "kv_a_proj_with_mqa.weight", kvl + rope, D, K_MAT);
    E2(VM_TN_ATTN_KV_A_NORM, "weight", "kv_a_layernorm.weight", kvl, 0, K_NORM);
    E2(VM_TN_ATTN_OUTPUT, "weight", "o_proj.weight", D, H * vd, K_MAT);
#undef E2
    // kv_b [H*(nope+v), kvl] -> k_b (H, kvl, nope) transposed per head, v_b (H, v, kvl)
    const vm_st_tensor *t;
    NAME(h, "%s.self_attn.kv_b_proj.weight", L);
    if (get(x, h, 2, (int64_t[]){H * (nope + vd), kvl}, 1, &t)) return -1;
    float *kv = read_f32(t);
    if (!kv) return -1;
    float *kb = vm_malloc((size_t)(H * kvl * nope) * sizeof *kb), *vb = vm_malloc((size_t)(H * vd * kvl) * sizeof *vb);
    if (!kb || !vb) { free(kv); free(kb); free(vb); return -1; }
    for (int64_t hh = 0; hh < H; hh++) {
        const float *src = kv + hh * (nope + vd) * kvl;
        for (int64_t r = 0; r < nope; r++)
            for (int64_t k = 0; k < kvl; k++) kb[(hh * kvl + k) * nope + r] = src[r * kvl + k];
        memcpy(vb + hh * vd * kvl, src + nope * kvl, (size_t)(vd * kvl) * sizeof *vb);
    }
    free(kv);
    vm_tn(g, sizeof g, VM_TN_ATTN_K_B, il, "weight");
    if (put(x, g, kb, 3, (int64_t[]){nope, kvl, H}, 1)) { free(vb); return -1; }
    vm_tn(g, sizeof g, VM_TN_ATTN_V_B, il, "weight");
    return put(x, g, vb, 3, (int64_t[]){kvl, vd, H}, 1);
}

static int emit_layer(hf_ctx *x, int il) {
    const hf_cfg *c = x->c;
    const int64_t D = c->n_embd, H = c->n_head, KV = c->n_head_kv, hd = c->head_dim, E = c->n_expert;
    char L[64], g[96], h[256], P[128];
    NAME(L, "model.layers.%d", il);
#define E1(id, sfx, hn, nd, a, b, kind, perm, req) do { vm_tn(g, sizeof g, id, il, sfx); NAME(h, "%s." hn, L); \
        if (emit(x, g, h, nd, (int64_t[]){a, b}, kind, perm, req) < 0) return -1; } while (0)
    E1(VM_TN_ATTN_NORM, "weight", "input_layernorm.weight", 1, D, 0, K_NORM, 0, 1);
    E1(VM_TN_FFN_NORM, "weight", "post_attention_layernorm.weight", 1, D, 0, K_NORM, 0, 1);
    if (c->arch == HF_DEEPSEEK2) {
        if (emit_mla(x, il, L)) return -1;
    } else {
        // ggml "normal" RoPE families need the pair layout; NeoX ones (qwen, olmoe) keep HF's
        int perm = c->arch == HF_LLAMA || c->arch == HF_GRANITEMOE || c->arch == HF_DEEPSEEK;
        E1(VM_TN_ATTN_Q, "weight", "self_attn.q_proj.weight", 2, H * hd, D, K_MAT, perm ? (int)H : 0, 1);
        E1(VM_TN_ATTN_K, "weight", "self_attn.k_proj.weight", 2, KV * hd, D, K_MAT, perm ? (int)KV : 0, 1);
        E1(VM_TN_ATTN_V, "weight", "self_attn.v_proj.weight", 2, KV * hd, D, K_MAT, 0, 1);
        E1(VM_TN_ATTN_OUTPUT, "weight", "self_attn.o_proj.weight", 2, D, H * hd, K_MAT, 0, 1);
        if (c->arch == HF_QWEN2MOE) {
            E1(VM_TN_ATTN_Q, "bias", "self_attn.q_proj.bias", 1, H * hd, 0, K_NORM, 0, 1);
            E1(VM_TN_ATTN_K, "bias", "self_attn.k_proj.bias", 1, KV * hd, 0, K_NORM, 0, 1);
            E1(VM_TN_ATTN_V, "bias", "self_attn.v_proj.bias", 1, KV * hd, 0, K_NORM, 0, 1);
        }
        if (c->arch == HF_QWEN3MOE) {   // per-head norms
            E1(VM_TN_ATTN_Q_NORM, "weight", "self_attn.q_norm.weight", 1, hd, 0, K_NORM, 0, 1);
            E1(VM_TN_ATTN_K_NORM, "weight", "self_attn.k_norm.weight", 1, hd, 0, K_NORM, 0, 1);
        }
        if (c->arch == HF_OLMOE) {      // norms over the whole projection
            E1(VM_TN_ATTN_Q_NORM, "weight", "self_attn.q_norm.weight", 1, H * hd, 0, K_NORM, 0, 1);
            E1(VM_TN_ATTN_K_NORM, "weight", "self_attn.k_norm.weight", 1, KV * hd, 0, K_NORM, 0, 1);
        }
    }
    static const char *const mixtral_names[3] = {"w1", "w3", "w2"}, *const proj_names[3] = {"gate_proj", "up_proj", "down_proj"};
    switch (c->arch) {
    case HF_LLAMA:
        if (E == 0) { NAME(P, "%s.mlp", L); return emit_mlp(x, il, P, c->n_ff, 0); }
        NAME(P, "%s.block_sparse_moe", L);   // Mixtral; transformers v5 names the block "mlp"
        NAME(h, "%s.gate.weight", P);
        if (!vm_st_find(x->st, h)) NAME(P, "%s.mlp", L);
        vm_tn(g, sizeof g, VM_TN_FFN_GATE_INP, il, "weight");
        NAME(h, "%s.gate.weight", P);
        if (emit(x, g, h, 2, (int64_t[]){E, D}, K_F32, 0, 1)) return -1;
        return emit_experts(x, il, P, mixtral_names);
    case HF_GRANITEMOE:
        NAME(P, "%s.block_sparse_moe", L);
        vm_tn(g, sizeof g, VM_TN_FFN_GATE_INP, il, "weight");
        NAME(h, "%s.router.layer.weight", P);
        if (emit(x, g, h, 2, (int64_t[]){E, D}, K_F32, 0, 1) || emit_experts(x, il, P, proj_names)) return -1;
        return c->n_ff_shexp > 0 ? emit_granite_shared(x, il, L, c->n_ff_shexp) : 0;
    case HF_QWEN2MOE:
    case HF_QWEN3MOE:
    case HF_OLMOE:
    case HF_DEEPSEEK:
    case HF_DEEPSEEK2:
        NAME(P, "%s.mlp", L);
        if ((c->arch == HF_DEEPSEEK || c->arch == HF_DEEPSEEK2) && il < c->n_dense_lead)
            return emit_mlp(x, il, P, c->n_ff, 0);
        vm_tn(g, sizeof g, VM_TN_FFN_GATE_INP, il, "weight");
        NAME(h, "%s.gate.weight", P);
        if (emit(x, g, h, 2, (int64_t[]){E, D}, K_F32, 0, 1) || emit_experts(x, il, P, proj_names)) return -1;
        if (c->arch == HF_DEEPSEEK2) {   // selection-only bias (noaux_tc); absent in V2
            vm_tn(g, sizeof g, VM_TN_EXP_PROBS_B, il, "bias");
            NAME(h, "%s.gate.e_score_correction_bias", P);
            if (emit(x, g, h, 1, (int64_t[]){E}, K_NORM, 0, 0) < 0) return -1;
        }
        if (c->arch == HF_QWEN2MOE && c->n_ff_shexp > 0) {
            NAME(h, "%s.shared_expert", P);
            if (emit_mlp(x, il, h, c->n_ff_shexp, 1)) return -1;
            vm_tn(g, sizeof g, VM_TN_FFN_GATE_INP_SHEXP, il, "weight");
            NAME(h, "%s.shared_expert_gate.weight", P);
            const vm_st_tensor *t;   // [1, D] -> ne [D]
            if (get(x, h, 2, (int64_t[]){1, D}, 1, &t)) return -1;
            float *f = read_f32(t);
            if (!f || put(x, g, f, 1, (int64_t[]){D}, 0)) return -1;
        }
        if ((c->arch == HF_DEEPSEEK || c->arch == HF_DEEPSEEK2) && c->n_shared > 0) {
            NAME(h, "%s.shared_experts", P);
            return emit_mlp(x, il, h, (int64_t)c->n_shared * c->n_ff_exp, 1);
        }
        return 0;
    }
#undef E1
    return 0;
}

// ---------------------------------------------------------------- metadata

static void write_kv(vm_gguf_writer *w, const hf_cfg *c, const char *name, vm_type type) {
    char k[128];
    const char *A = c->gguf_arch;
#define KEY(suffix) (snprintf(k, sizeof k, "%s." suffix, A), k)
    // ggml's llama_ftype: ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q8_0 7, MOSTLY_BF16 32
    uint32_t ftype = type == VM_TYPE_F16 ? 1 : type == VM_TYPE_Q8_0 ? 7 : type == VM_TYPE_BF16 ? 32 : 0;
    vm_gguf_set_str(w, "general.architecture", A);
    vm_gguf_set_str(w, "general.name", name);
    vm_gguf_set_u32(w, "general.file_type", ftype);
    vm_gguf_set_u32(w, KEY("vocab_size"), (uint32_t)c->n_vocab);
    vm_gguf_set_u32(w, KEY("context_length"), (uint32_t)c->n_ctx);
    vm_gguf_set_u32(w, KEY("embedding_length"), (uint32_t)c->n_embd);
    vm_gguf_set_u32(w, KEY("block_count"), (uint32_t)c->n_layer);
    vm_gguf_set_u32(w, KEY("feed_forward_length"), (uint32_t)c->n_ff);
    vm_gguf_set_u32(w, KEY("attention.head_count"), (uint32_t)c->n_head);
    // MLA is run as multi-query attention over the compressed latent
    vm_gguf_set_u32(w, KEY("attention.head_count_kv"), c->arch == HF_DEEPSEEK2 ? 1u : (uint32_t)c->n_head_kv);
    vm_gguf_set_f32(w, KEY("rope.freq_base"), (float)c->theta);
    vm_gguf_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), (float)c->eps);
    if (c->arch == HF_DEEPSEEK2) {
        if (c->q_lora) vm_gguf_set_u32(w, KEY("attention.q_lora_rank"), (uint32_t)c->q_lora);
        vm_gguf_set_u32(w, KEY("attention.kv_lora_rank"), (uint32_t)c->kv_lora);
        vm_gguf_set_u32(w, KEY("attention.key_length"), (uint32_t)(c->kv_lora + c->qk_rope));
        vm_gguf_set_u32(w, KEY("attention.value_length"), (uint32_t)c->kv_lora);
        vm_gguf_set_u32(w, KEY("attention.key_length_mla"), (uint32_t)(c->qk_nope + c->qk_rope));
        vm_gguf_set_u32(w, KEY("attention.value_length_mla"), (uint32_t)c->v_head);
        vm_gguf_set_u32(w, KEY("rope.dimension_count"), (uint32_t)c->qk_rope);
    } else {
        vm_gguf_set_u32(w, KEY("rope.dimension_count"), (uint32_t)c->head_dim);
        if (c->head_dim_given) {
            vm_gguf_set_u32(w, KEY("attention.key_length"), (uint32_t)c->head_dim);
            vm_gguf_set_u32(w, KEY("attention.value_length"), (uint32_t)c->head_dim);
        }
    }
    if (c->rope_type[0]) {
        vm_gguf_set_str(w, KEY("rope.scaling.type"), c->rope_type);
        vm_gguf_set_f32(w, KEY("rope.scaling.factor"), (float)c->rope_factor);
        if (c->rope_orig_ctx) vm_gguf_set_u32(w, KEY("rope.scaling.original_context_length"), (uint32_t)c->rope_orig_ctx);
        if (c->arch == HF_DEEPSEEK2 && c->mscale_all_dim != 0)
            vm_gguf_set_f32(w, KEY("rope.scaling.yarn_log_multiplier"), (float)(0.1 * c->mscale_all_dim));
    }
    if (c->n_expert > 0) {
        vm_gguf_set_u32(w, KEY("expert_count"), (uint32_t)c->n_expert);
        vm_gguf_set_u32(w, KEY("expert_used_count"), (uint32_t)c->n_expert_used);
        if (c->arch != HF_LLAMA) vm_gguf_set_u32(w, KEY("expert_feed_forward_length"), (uint32_t)c->n_ff_exp);
        if (c->arch != HF_LLAMA && c->arch != HF_GRANITEMOE && c->norm_topk >= 0)
            vm_gguf_set_bool(w, KEY("expert_weights_norm"), c->norm_topk);
        if (c->gating) vm_gguf_set_u32(w, KEY("expert_gating_func"), (uint32_t)c->gating);
        if (c->n_group) vm_gguf_set_u32(w, KEY("expert_group_count"), (uint32_t)c->n_group);
        if (c->topk_group) vm_gguf_set_u32(w, KEY("expert_group_used_count"), (uint32_t)c->topk_group);
    }
    if (c->n_ff_shexp > 0 && (c->arch == HF_QWEN2MOE || c->arch == HF_GRANITEMOE))
        vm_gguf_set_u32(w, KEY("expert_shared_feed_forward_length"), (uint32_t)c->n_ff_shexp);
    if (c->arch == HF_DEEPSEEK || c->arch == HF_DEEPSEEK2) {
        vm_gguf_set_u32(w, KEY("leading_dense_block_count"), (uint32_t)c->n_dense_lead);
        vm_gguf_set_u32(w, KEY("expert_shared_count"), (uint32_t)c->n_shared);
        if (c->arch == HF_DEEPSEEK) vm_gguf_set_f32(w, KEY("expert_weights_scale"), 1.0f);
        else if (c->routed_scale != 0) vm_gguf_set_f32(w, KEY("expert_weights_scale"), (float)c->routed_scale);
    }
    if (c->arch == HF_GRANITEMOE) {
        if (c->g_attn != 0) vm_gguf_set_f32(w, KEY("attention.scale"), (float)c->g_attn);
        if (c->g_emb != 0) vm_gguf_set_f32(w, KEY("embedding_scale"), (float)c->g_emb);
        if (c->g_resid != 0) vm_gguf_set_f32(w, KEY("residual_scale"), (float)c->g_resid);
        if (c->g_logits != 0) vm_gguf_set_f32(w, KEY("logit_scale"), (float)c->g_logits);
    }
#undef KEY
}

// ---------------------------------------------------------------- driver

// Checkpoint tensors that are never weights of the GGUF: derived RoPE buffers, a tied lm_head,
// DeepSeek-V3's multi-token-prediction layers past num_hidden_layers.
static int skippable(const hf_cfg *c, const char *name) {
    size_t n = strlen(name);
    const char *sfx = "rotary_emb.inv_freq";
    if (n >= strlen(sfx) && !strcmp(name + n - strlen(sfx), sfx)) return 1;
    if (c->tie && !strcmp(name, "lm_head.weight")) return 1;
    int layer;
    if (c->n_nextn > 0 && sscanf(name, "model.layers.%d.", &layer) == 1 && layer >= c->n_layer) return 1;
    return 0;
}

static int check_unused(const hf_ctx *x, int allow) {
    int n = 0;
    char list[512] = "";
    for (int i = 0; i < x->st->n; i++) {
        if (x->used[i] || skippable(x->c, x->st->t[i].name)) continue;
        if (n < 4) {
            size_t o = strlen(list);
            snprintf(list + o, sizeof list - o, "%s'%s'", n ? ", " : "", x->st->t[i].name);
        }
        n++;
    }
    if (n == 0 || allow) return 0;
    return vm_err("%d checkpoint tensor(s) not used by the %s mapping: %s%s (pass --allow-unused to drop them)",
                  n, x->c->gguf_arch, list, n > 4 ? ", ..." : "");
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

// tokenizer.json -> tokenizer.* keys. The token list is padded to config's vocab_size with
// "[PAD<id>]" UNUSED entries (as llama.cpp's converter: the embedding has the config's rows);
// bos/eos ids in config.json override tokenizer_config.json's.
static int write_vocab(vm_hf_vocab *hv, const char *dir, int n_vocab, vm_gguf_writer *w) {
    vm_tok_vocab v = hv->v;
    if (v.n_tokens > n_vocab)
        return vm_err("%s/tokenizer.json: %d tokens but config.json vocab_size is %d", dir, v.n_tokens, n_vocab);
    char cpath[4096];
    snprintf(cpath, sizeof cpath, "%s/config.json", dir);
    size_t len;
    char *text = vm_read_file(cpath, &len);
    json_t *root = text ? json_loadb(text, len, 0, NULL) : NULL;
    free(text);
    int bos, eos;
    if (root && cj_int(root, "bos_token_id", &bos, 0, 0, n_vocab - 1) == 0) v.bos = bos;
    if (root && cj_int(root, "eos_token_id", &eos, 0, 0, n_vocab - 1) == 0) v.eos = eos;
    json_decref(root);
    vm_err_clear();   // an eos list or out-of-range id keeps the tokenizer's own
    const char **texts = NULL;
    int32_t *types = NULL;
    uint32_t *lens = NULL;
    char (*pads)[24] = NULL;
    int rc = -1, n0 = v.n_tokens;
    if (n0 < n_vocab) {
        texts = vm_calloc((size_t)n_vocab, sizeof *texts);
        types = vm_calloc((size_t)n_vocab, sizeof *types);
        lens = vm_calloc((size_t)n_vocab, sizeof *lens);
        pads = vm_calloc((size_t)(n_vocab - n0), sizeof *pads);
        if (!texts || !types || !lens || !pads) goto done;
        for (int i = 0; i < n_vocab; i++) {
            if (i < n0) {
                texts[i] = v.texts[i];
                types[i] = v.types ? v.types[i] : VM_TOKEN_TYPE_NORMAL;
                lens[i] = v.lens ? v.lens[i] : (uint32_t)strlen(v.texts[i]);
            } else {
                snprintf(pads[i - n0], sizeof pads[0], "[PAD%d]", i);
                texts[i] = pads[i - n0];
                types[i] = VM_TOKEN_TYPE_UNUSED;
                lens[i] = (uint32_t)strlen(texts[i]);
            }
        }
        v.texts = texts; v.types = types; v.lens = lens; v.n_tokens = n_vocab;
        v.scores = NULL;
    }
    rc = vm_tok_vocab_to_gguf(&v, w);
    if (rc) vm_err_prefix("%s/tokenizer.json", dir);
done:
    free(texts); free(types); free(lens); free(pads);
    return rc;
}

int vm_convert_hf(const char *dir, const char *out_path, const vm_convert_hf_opts *o) {
    vm_convert_hf_opts def = {0};
    if (!o) o = &def;
    if (o->type != VM_TYPE_F32 && o->type != VM_TYPE_F16 && o->type != VM_TYPE_BF16 && o->type != VM_TYPE_Q8_0)
        return vm_err("convert-hf: output type %s not supported (f32, f16, bf16, q8_0)", vm_type_name(o->type));
    hf_cfg c;
    char *cfg_name = NULL, tokpath[4096];
    if (cfg_read(dir, &c, &cfg_name)) return vm_err_prefix("convert-hf: %s", dir);
    snprintf(tokpath, sizeof tokpath, "%s/tokenizer.json", dir);
    if (!o->no_tokenizer && !file_exists(tokpath)) {
        free(cfg_name);
        return vm_err("convert-hf: %s has no tokenizer.json (pass --no-tokenizer to write a GGUF without a tokenizer)", dir);
    }
    vm_st *st = vm_st_open_dir(dir);
    if (!st) { free(cfg_name); return vm_err_prefix("convert-hf"); }
    hf_ctx x = {.st = st, .c = &c, .type = o->type};
    vm_hf_vocab hv;
    int have_vocab = 0, rc = -1;
    x.used = vm_calloc((size_t)st->n + 1, 1);
    x.w = vm_gguf_writer_init();
    if (!x.used || !x.w) { vm_err("out of memory"); goto done; }
    const char *base = strrchr(dir, '/');
    base = base && base[1] ? base + 1 : dir;
    write_kv(x.w, &c, o->name ? o->name : cfg_name ? cfg_name : base, o->type);
    if (!o->no_tokenizer) {
        if (vm_hf_vocab_read(tokpath, &hv)) goto done;
        have_vocab = 1;
        if (hv.v.n_tokens > c.n_vocab) {
            vm_err("%s/tokenizer.json: %d tokens but config.json vocab_size is %d", dir, hv.v.n_tokens, c.n_vocab);
            goto done;
        }
    }
    const int64_t D = c.n_embd, V = c.n_vocab;
    char gn[64];
    if (emit(&x, vm_tn(gn, sizeof gn, VM_TN_TOKEN_EMBD, -1, "weight"), "model.embed_tokens.weight", 2, (int64_t[]){V, D}, K_MAT, 0, 1) ||
        emit(&x, vm_tn(gn, sizeof gn, VM_TN_OUTPUT_NORM, -1, "weight"), "model.norm.weight", 1, (int64_t[]){D}, K_NORM, 0, 1) ||
        (!c.tie && emit(&x, vm_tn(gn, sizeof gn, VM_TN_OUTPUT, -1, "weight"), "lm_head.weight", 2, (int64_t[]){V, D}, K_MAT, 0, 1)))
        goto done;
    // padded to vocab_size only now that the [V, D] embedding in the file vouches for it
    // (config.json alone could ask for 2^24 padding tokens)
    if (have_vocab && write_vocab(&hv, dir, c.n_vocab, x.w)) goto done;
    for (int il = 0; il < c.n_layer; il++)
        if (emit_layer(&x, il)) goto done;
    if (check_unused(&x, o->allow_unused)) goto done;
    rc = vm_gguf_write(x.w, out_path);
done:
    if (rc) vm_err_prefix("convert-hf: %s", dir);
    if (x.w) vm_gguf_writer_free(x.w);
    for (int i = 0; i < x.nbufs; i++) free(x.bufs[i]);
    free(x.bufs);
    free(x.used);
    free(cfg_name);
    if (have_vocab) vm_hf_vocab_free(&hv);
    vm_st_free(st);
    return rc;
}

// vmoer quantize: an F32/F16/BF16 GGUF to Q8_0, Q4_0, Q4_K, Q5_K, Q6_K, or the Q4_K_M / Q5_K_M
// mixes; or any file vmoer computes back to F32/F16 (the same weights without int8 activations). The mixes follow llama.cpp's published choices (its src/llama-quant.cpp, read, not copied):
// which tensors get more bits, so files quantised here match what llama.cpp users know by name.
// Everything is written atomically (vm_gguf_write); the input is read through its memory map.
#include "convert/convert.h"
#include "gguf/gguf.h"
#include "gguf/tensor_names.h"
#include "util/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

// llama.cpp's llama_ftype ids (general.file_type): informational, shown by its tools.
enum { FT_F32 = 0, FT_F16 = 1, FT_Q4_0 = 2, FT_Q8_0 = 7, FT_Q4_K_S = 14, FT_Q4_K_M = 15, FT_Q5_K_S = 16,
       FT_Q5_K_M = 17, FT_Q6_K = 18 };

static const struct { const char *name; vm_type base; int mix, ftype; } qnames[] = {
    {"q8_0", VM_TYPE_Q8_0, 0, FT_Q8_0}, {"q4_0", VM_TYPE_Q4_0, 0, FT_Q4_0},
    {"q4_k", VM_TYPE_Q4_K, 0, FT_Q4_K_S}, {"q5_k", VM_TYPE_Q5_K, 0, FT_Q5_K_S},
    {"q6_k", VM_TYPE_Q6_K, 0, FT_Q6_K}, {"q4_k_m", VM_TYPE_Q4_K, 1, FT_Q4_K_M},
    {"q5_k_m", VM_TYPE_Q5_K, 1, FT_Q5_K_M}, {"f32", VM_TYPE_F32, 0, FT_F32}, {"f16", VM_TYPE_F16, 0, FT_F16},
};

int vm_quantize_parse(const char *name, vm_quantize_opts *o) {
    for (size_t i = 0; i < sizeof qnames / sizeof *qnames; i++)
        if (!strcasecmp(name, qnames[i].name)) {
            o->base = qnames[i].base;
            o->mix = qnames[i].mix;
            o->ftype = qnames[i].ftype;
            return 0;
        }
    return vm_err("unknown type '%s' (expected q8_0, q4_0, q4_K, q5_K, q6_K, q4_K_M, q5_K_M, f16 or f32)", name);
}

static int has(const char *s, const char *sub) { return strstr(s, sub) != NULL; }

static int ends_with(const char *s, const char *suf) {
    const size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcmp(s + n - m, suf);
}

int vm_quantize_keeps(const char *name, int n_dims) {
    // 1-D tensors, norms, and the routers (ffn_gate_inp: small, and routing is sensitive to them;
    // llama.cpp never quantises them either) keep their precision
    return n_dims < 2 || !ends_with(name, "weight") || has(name, "_norm.weight") || has(name, "ffn_gate_inp");
}

// llama.cpp's "use more bits" layers: the first and last eighth, and every third one between.
static int more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

// A type whose block does not divide the row: K-quants fall back to Q8_0 (llama.cpp picks Q5_0/Q5_1
// for Q4_K/Q5_K, which vmoer does not compute; Q8_0 is never less precise), anything else to F16.
static vm_type fit_rows(vm_type t, int64_t ne0) {
    if (vm_type_row_size(t, ne0)) return t;
    if (t != VM_TYPE_Q8_0 && vm_type_row_size(VM_TYPE_Q8_0, ne0)) return VM_TYPE_Q8_0;
    return VM_TYPE_F16;
}

vm_type vm_quantize_choose(const vm_quantize_opts *o, const vm_quantize_ctx *c, const char *name, int64_t ne0) {
    vm_type t = o->base;
    if (o->mix) {
        const int is_output = !strcmp(name, "output.weight") || (c->tied && !strcmp(name, "token_embd.weight"));
        int layer;
        const char *rest;
        vm_tn_parse(name, &layer, &rest);   // the layer of a block's tensor, -1 for a global one
        if (is_output) t = VM_TYPE_Q6_K;
        else if (has(name, "attn_v.weight") || has(name, "attn_qkv.weight") || has(name, "attn_kv_b.weight")) {
            if (c->n_expert == 8) t = VM_TYPE_Q8_0;   // llama.cpp's Mixtral-8x rule
            else if (more_bits(c->i_attn_v, c->n_attn_v)) t = VM_TYPE_Q6_K;
        } else if (has(name, "attn_k.weight")) {
            if (c->n_expert == 8) t = VM_TYPE_Q8_0;
        } else if (has(name, "ffn_down")) {
            const int i = c->n_expert > 1 && layer >= 0 ? layer : c->i_ffn_down;
            if (more_bits(i, c->n_layer)) t = VM_TYPE_Q6_K;
        } else if (has(name, "attn_output.weight")) {
            if (c->n_expert == 8 && o->base == VM_TYPE_Q4_K) t = VM_TYPE_Q5_K;
        }
        // output.weight with a row length that is not a multiple of 256: llama.cpp uses Q8_0 there too
    }
    return fit_rows(t, ne0);
}

// ---- the file --------------------------------------------------------------------------------------

typedef struct qt_out { vm_type type; void *data; size_t bytes; } qt_out;

// Rows of t (F32/F16/BF16) quantised to `type` into a new buffer; rows in parallel, each one by
// itself, so the bytes do not depend on the thread count.
static int quantize_tensor(const vm_gguf_tensor_info *ti, vm_type type, qt_out *q) {
    const vm_tensor *t = &ti->t;
    const int64_t C = t->ne[0], rows = t->ne[1] * t->ne[2] * t->ne[3];
    const size_t rs = vm_type_row_size(type, C);
    size_t total;
    if (!rs || vm_size_mul(rs, (size_t)rows, &total)) return vm_err("%s: too large", ti->name);
    char *buf = vm_malloc(total ? total : 1);
    if (!buf) return -1;
    int failed = 0;
    #pragma omp parallel
    {
        float *row = malloc(sizeof(float) * (size_t)C);
        if (!row) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for schedule(dynamic, 16)
        for (int64_t r = 0; r < rows; r++) {
            if (!row) continue;
            vm_dequant_row(t->type, (const char *)t->data + (size_t)r * t->nb[1], row, C);
            if (vm_quant_row(type, row, buf + (size_t)r * rs, C)) {
                #pragma omp atomic write
                failed = 2;
            }
        }
        free(row);
    }
    if (failed) {
        free(buf);
        return failed == 1 ? vm_err("out of memory") : vm_err("%s: %s", ti->name, vm_errmsg());
    }
    q->type = type; q->data = buf; q->bytes = total;
    return 0;
}

static int arch_u32(const vm_gguf *g, const char *arch, const char *key, uint32_t *v) {
    char k[160];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    return vm_gguf_get_u32(g, k, v);
}

int vm_quantize_file(const char *in_path, const char *out_path, const vm_quantize_opts *o, FILE *log) {
    vm_gguf *g = vm_gguf_open(in_path);
    if (!g) return -1;
    vm_quantize_ctx c = {0};
    char *arch = NULL;
    uint32_t u = 0;
    if (vm_gguf_get_str(g, "general.architecture", &arch) == 0) {
        if (arch_u32(g, arch, "block_count", &u) == 0) c.n_layer = (int)u;
        u = 0;
        if (arch_u32(g, arch, "expert_count", &u) == 0) c.n_expert = (int)u;
    }
    free(arch);
    c.tied = vm_gguf_find_tensor(g, "output.weight") == NULL;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const char *nm = g->tensors[i].name;
        if (has(nm, "attn_v.weight") || has(nm, "attn_qkv.weight") || has(nm, "attn_kv_b.weight")) c.n_attn_v++;
    }
    qt_out *outs = calloc((size_t)(g->n_tensors ? g->n_tensors : 1), sizeof *outs);
    vm_gguf_writer *w = vm_gguf_writer_init();
    int rc = (!outs || !w) ? vm_err("out of memory") : 0;
    if (!rc) {
        vm_gguf_copy_kv(w, g);
        vm_gguf_set_u32(w, "general.quantization_version", 2);
        vm_gguf_set_u32(w, "general.file_type", (uint32_t)o->ftype);
    }
    const int widen = o->base == VM_TYPE_F32 || o->base == VM_TYPE_F16;
    size_t in_bytes = 0, out_bytes = 0;
    for (int64_t i = 0; i < g->n_tensors && !rc; i++) {
        const vm_gguf_tensor_info *ti = &g->tensors[i];
        const vm_tensor *t = &ti->t;
        const int router = has(ti->name, "ffn_gate_inp");
        vm_type target = t->type;
        if (!vm_quantize_keeps(ti->name, t->n_dims)) {
            // quantising quantised weights again would add a second rounding; widening them is exact
            const int plain_in = t->type == VM_TYPE_F32 || t->type == VM_TYPE_F16 || t->type == VM_TYPE_BF16;
            const vm_type_traits *tr = vm_type_get(t->type);
            if (!(plain_in || (widen && tr && tr->compute))) {
                rc = vm_err("%s: input type %s (expected F32, F16 or BF16%s)", ti->name, vm_type_name(t->type),
                            widen ? ", or a quantised type vmoer computes" : "");
                break;
            }
            target = vm_quantize_choose(o, &c, ti->name, t->ne[0]);
        } else if (router && (t->type == VM_TYPE_F16 || t->type == VM_TYPE_BF16)) {
            target = VM_TYPE_F32;   // routers are kept in F32
        }
        if (has(ti->name, "attn_v.weight") || has(ti->name, "attn_qkv.weight") || has(ti->name, "attn_kv_b.weight")) c.i_attn_v++;
        if (has(ti->name, "ffn_down")) c.i_ffn_down++;
        const void *data = t->data;
        size_t bytes = ti->nbytes;
        if (target != t->type) {
            if (quantize_tensor(ti, target, &outs[i])) { rc = -1; break; }
            data = outs[i].data;
            bytes = outs[i].bytes;
        }
        in_bytes += ti->nbytes;
        out_bytes += bytes;
        if (log)
            fprintf(log, "%-40s %-6s -> %-6s %s\n", ti->name, vm_type_name(t->type), vm_type_name(target),
                    target != t->type && target != o->base && target != VM_TYPE_F32 ? "(mix/fallback)" : "");
        if (vm_gguf_add_tensor(w, ti->name, target, t->n_dims, t->ne, data, bytes)) rc = -1;
    }
    if (!rc && vm_gguf_write(w, out_path)) rc = -1;
    if (!rc && log) fprintf(log, "wrote %s: %.1f MB -> %.1f MB\n", out_path, in_bytes / 1e6, out_bytes / 1e6);
    vm_gguf_writer_free(w);
    for (int64_t i = 0; outs && i < g->n_tensors; i++) free(outs[i].data);
    free(outs);
    vm_gguf_free(g);
    return rc;
}

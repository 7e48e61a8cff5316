// vmoer info: what a GGUF file holds (format, architecture, dimensions, experts, tensors, tokenizer),
// as text or as one JSON object. Reads metadata only: the tensor data is never touched.
#include "cli/cli.h"
#include "gguf/gguf.h"
#include "gguf/tensor_names.h"
#include "util/err.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *usage_ =
    "usage: vmoer info MODEL.gguf [--json] [--threads N] [--help]\n"
    "Describes a GGUF file: version, architecture, dimensions (<arch>.* keys), MoE layers,\n"
    "tensor count and bytes per type, parameter count, tokenizer and chat template.\n"
    "  --json       print one JSON object instead of text\n"
    "  --threads N  worker threads (accepted for uniformity; info does no heavy work)\n";

// <arch>.<suffix> keys shown as dimensions, in this order.
static const char *const dims_[] = {
    "vocab_size", "context_length", "embedding_length", "block_count", "feed_forward_length",
    "attention.head_count", "attention.head_count_kv", "attention.key_length", "attention.value_length",
    "attention.layer_norm_rms_epsilon", "attention.layer_norm_epsilon", "rope.dimension_count",
    "rope.freq_base", "rope.scaling.type", "rope.scaling.factor", "expert_count", "expert_used_count",
    "expert_feed_forward_length", "expert_shared_count", "expert_shared_feed_forward_length",
    "leading_dense_block_count", "expert_weights_scale", "expert_weights_norm", "expert_gating_func",
};

typedef struct info_stats {
    int64_t n_moe_layers, n_params;
    uint64_t bytes;
    int64_t type_n[VM_TYPE_COUNT];
    uint64_t type_bytes[VM_TYPE_COUNT];
} info_stats;

static void collect(const vm_gguf *g, info_stats *s) {
    memset(s, 0, sizeof *s);
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const vm_gguf_tensor_info *ti = &g->tensors[i];
        int layer;
        const char *rest;
        // one router matrix per MoE block: blk.<i>.ffn_gate_inp.weight
        if (vm_tn_parse(ti->name, &layer, &rest) == VM_TN_FFN_GATE_INP && layer >= 0 && !strcmp(rest, "weight"))
            s->n_moe_layers++;
        s->n_params += vm_tensor_nelements(&ti->t);
        s->bytes += ti->nbytes;
        int t = (int)ti->t.type;   // validated by the reader
        s->type_n[t]++;
        s->type_bytes[t] += ti->nbytes;
    }
}

// Printable copy of a file string for the terminal (control bytes and bytes that are not UTF-8
// escaped: a model's strings must not drive the terminal; long values cut).
static void print_str(const char *s, uint64_t n, size_t max) {
    vm_fput_escaped(stdout, s, n < max ? (size_t)n : max);
    if (n > max) printf("... (%llu bytes)", (unsigned long long)n);
}

static void print_value(const vm_gguf_kv *kv) {
    if (kv->type == VM_GGUF_TYPE_STRING) { print_str(kv->strs[0].s, kv->strs[0].n, 80); return; }
    if (kv->type == VM_GGUF_TYPE_ARRAY) {
        if (kv->arr_type == VM_GGUF_TYPE_STRING) { printf("[%llu strings]", (unsigned long long)kv->n); return; }
        printf("[");
        for (uint64_t i = 0; i < kv->n && i < 8; i++) printf("%s%.9g", i ? ", " : "", vm_gguf_arr_num(kv, i));
        printf("%s]", kv->n > 8 ? ", ..." : "");
        return;
    }
    if (kv->type == VM_GGUF_TYPE_BOOL) { printf("%s", vm_gguf_arr_num(kv, 0) != 0 ? "true" : "false"); return; }
    printf("%.9g", vm_gguf_arr_num(kv, 0));
}

// JSON string from file bytes: jansson needs valid UTF-8, so invalid input degrades to escaped ASCII.
static json_t *jstr(const char *s, uint64_t n) {
    json_t *j = json_stringn(s, (size_t)n);
    if (j) return j;
    char *b = malloc((size_t)n * 4 + 1);
    if (!b) return json_null();
    size_t k = 0;
    for (uint64_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 32 && c < 127) b[k++] = (char)c;
        else k += (size_t)snprintf(b + k, 5, "\\x%02x", c);
    }
    j = json_stringn(b, k);
    free(b);
    return j ? j : json_null();
}

static json_t *jvalue(const vm_gguf_kv *kv) {
    if (kv->type == VM_GGUF_TYPE_STRING) return jstr(kv->strs[0].s, kv->strs[0].n);
    if (kv->type == VM_GGUF_TYPE_BOOL) return json_boolean(vm_gguf_arr_num(kv, 0) != 0);
    int is_float = kv->arr_type == VM_GGUF_TYPE_FLOAT32 || kv->arr_type == VM_GGUF_TYPE_FLOAT64;
    if (kv->type == VM_GGUF_TYPE_ARRAY) {
        json_t *a = json_array();
        for (uint64_t i = 0; i < kv->n && kv->arr_type != VM_GGUF_TYPE_STRING; i++) {
            double v = vm_gguf_arr_num(kv, i);
            json_array_append_new(a, is_float ? json_real(v) : json_integer((json_int_t)v));
        }
        return a;
    }
    if (is_float) return json_real(vm_gguf_arr_num(kv, 0));
    int64_t v;
    if (kv->type == VM_GGUF_TYPE_UINT64) {
        uint64_t u;
        memcpy(&u, kv->data, 8);
        return u > (uint64_t)INT64_MAX ? json_real((double)u) : json_integer((json_int_t)u);
    }
    if (kv->type == VM_GGUF_TYPE_INT64) { memcpy(&v, kv->data, 8); return json_integer(v); }
    return json_integer((json_int_t)vm_gguf_arr_num(kv, 0));
}

static const vm_gguf_kv *arch_kv(const vm_gguf *g, const char *arch, const char *suffix) {
    char key[256];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return vm_gguf_get_kv(g, key);
}

// Token id key: its value and, when in range, the token text.
static int token_id(const vm_gguf *g, const char *key, int64_t *id) {
    return vm_gguf_get_i64(g, key, id) == 0 ? 1 : (vm_err_clear(), 0);
}

static const vm_gguf_str *token_text(const vm_gguf *g, int64_t id) {
    const vm_gguf_kv *t = vm_gguf_get_kv(g, "tokenizer.ggml.tokens");
    if (!t || t->type != VM_GGUF_TYPE_ARRAY || t->arr_type != VM_GGUF_TYPE_STRING || id < 0 || (uint64_t)id >= t->n)
        return NULL;
    return &t->strs[id];
}

static uint64_t n_vocab(const vm_gguf *g) {
    const vm_gguf_kv *t = vm_gguf_get_kv(g, "tokenizer.ggml.tokens");
    return (t && t->type == VM_GGUF_TYPE_ARRAY) ? t->n : 0;
}

static const vm_gguf_kv *str_kv(const vm_gguf *g, const char *key) {
    const vm_gguf_kv *kv = vm_gguf_get_kv(g, key);
    return (kv && kv->type == VM_GGUF_TYPE_STRING) ? kv : NULL;
}

static void print_text(const vm_gguf *g, const char *arch, const info_stats *s) {
    const vm_gguf_kv *kv;
    printf("file:            ");
    print_str(g->path, strlen(g->path), 4096);
    printf(" (%zu bytes)\n", g->size);
    printf("format:          GGUF v%u, %lld metadata keys, alignment %zu, data at %zu\n", g->version,
           (long long)g->n_kv, g->alignment, g->data_offset);
    printf("architecture:    ");
    if (arch[0]) print_str(arch, strlen(arch), strlen(arch)); else printf("(none)");
    printf("\n");
    if ((kv = str_kv(g, "general.name"))) { printf("name:            "); print_value(kv); printf("\n"); }
    for (size_t i = 0; arch[0] && i < sizeof dims_ / sizeof *dims_; i++) {
        if (!(kv = arch_kv(g, arch, dims_[i]))) continue;
        printf("  %-34s ", dims_[i]);
        print_value(kv);
        printf("\n");
    }
    int64_t n_layer = -1;
    if (arch[0] && (kv = arch_kv(g, arch, "block_count")) && kv->type != VM_GGUF_TYPE_ARRAY)
        n_layer = (int64_t)vm_gguf_arr_num(kv, 0);
    if (n_layer >= 0) printf("MoE layers:      %lld of %lld\n", (long long)s->n_moe_layers, (long long)n_layer);
    else printf("MoE layers:      %lld\n", (long long)s->n_moe_layers);
    printf("tensors:         %lld, %llu bytes, %lld parameters\n", (long long)g->n_tensors,
           (unsigned long long)s->bytes, (long long)s->n_params);
    for (int t = 0; t < VM_TYPE_COUNT; t++)
        if (s->type_n[t])
            printf("  %-8s %6lld tensors %14llu bytes\n", vm_type_name(t), (long long)s->type_n[t],
                   (unsigned long long)s->type_bytes[t]);
    printf("tokenizer:       ");
    if ((kv = str_kv(g, "tokenizer.ggml.model"))) print_value(kv); else printf("(none)");
    if ((kv = str_kv(g, "tokenizer.ggml.pre"))) { printf(" (pre "); print_value(kv); printf(")"); }
    printf(", %llu tokens\n", (unsigned long long)n_vocab(g));
    const char *ids[2][2] = {{"bos", "tokenizer.ggml.bos_token_id"}, {"eos", "tokenizer.ggml.eos_token_id"}};
    for (int i = 0; i < 2; i++) {
        int64_t id;
        if (!token_id(g, ids[i][1], &id)) continue;
        printf("  %s %lld", ids[i][0], (long long)id);
        const vm_gguf_str *tx = token_text(g, id);
        if (tx) { printf(" '"); print_str(tx->s, tx->n, 40); printf("'"); }
        printf("\n");
    }
    printf("chat template:   %s\n", vm_gguf_get_kv(g, "tokenizer.chat_template") ? "yes" : "no");
}

static int print_json(const vm_gguf *g, const char *arch, const info_stats *s) {
    json_t *o = json_object(), *hp = json_object(), *types = json_object(), *tok = json_object();
    const vm_gguf_kv *kv;
    json_object_set_new(o, "file", jstr(g->path, strlen(g->path)));
    json_object_set_new(o, "file_bytes", json_integer((json_int_t)g->size));
    json_object_set_new(o, "version", json_integer(g->version));
    json_object_set_new(o, "n_kv", json_integer(g->n_kv));
    json_object_set_new(o, "alignment", json_integer((json_int_t)g->alignment));
    json_object_set_new(o, "architecture", arch[0] ? jstr(arch, strlen(arch)) : json_null());
    kv = str_kv(g, "general.name");
    json_object_set_new(o, "name", kv ? jvalue(kv) : json_null());
    for (size_t i = 0; arch[0] && i < sizeof dims_ / sizeof *dims_; i++)
        if ((kv = arch_kv(g, arch, dims_[i]))) json_object_set_new(hp, dims_[i], jvalue(kv));
    json_object_set_new(o, "hparams", hp);
    json_object_set_new(o, "n_moe_layers", json_integer(s->n_moe_layers));
    json_object_set_new(o, "n_tensors", json_integer(g->n_tensors));
    json_object_set_new(o, "tensor_bytes", json_integer((json_int_t)s->bytes));
    json_object_set_new(o, "n_params", json_integer(s->n_params));
    for (int t = 0; t < VM_TYPE_COUNT; t++) {
        if (!s->type_n[t]) continue;
        json_t *e = json_object();
        json_object_set_new(e, "n", json_integer(s->type_n[t]));
        json_object_set_new(e, "bytes", json_integer((json_int_t)s->type_bytes[t]));
        json_object_set_new(types, vm_type_name(t), e);
    }
    json_object_set_new(o, "types", types);
    kv = str_kv(g, "tokenizer.ggml.model");
    json_object_set_new(tok, "model", kv ? jvalue(kv) : json_null());
    kv = str_kv(g, "tokenizer.ggml.pre");
    json_object_set_new(tok, "pre", kv ? jvalue(kv) : json_null());
    json_object_set_new(tok, "n_vocab", json_integer((json_int_t)n_vocab(g)));
    int64_t id;
    json_object_set_new(tok, "bos", token_id(g, "tokenizer.ggml.bos_token_id", &id) ? json_integer(id) : json_null());
    json_object_set_new(tok, "eos", token_id(g, "tokenizer.ggml.eos_token_id", &id) ? json_integer(id) : json_null());
    json_object_set_new(o, "tokenizer", tok);
    json_object_set_new(o, "chat_template", json_boolean(vm_gguf_get_kv(g, "tokenizer.chat_template") != NULL));
    char *txt = json_dumps(o, JSON_PRESERVE_ORDER | JSON_COMPACT);
    json_decref(o);
    if (!txt) return cli_fail("info", "%s: cannot format JSON", g->path);
    printf("%s\n", txt);
    free(txt);
    return 0;
}

int cmd_info(int argc, char **argv) {
    const char *path = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { fputs(usage_, stdout); return 0; }
        else if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--threads")) {
            const char *v = cli_value("info", argc, argv, &i);
            if (!v || cli_threads("info", v)) return 1;
        } else if (argv[i][0] == '-' && argv[i][1]) return cli_fail("info", "unknown option '%s' (see --help)", argv[i]);
        else if (path) return cli_fail("info", "more than one file given ('%s', '%s')", path, argv[i]);
        else path = argv[i];
    }
    if (!path) return cli_fail("info", "no file given (usage: vmoer info MODEL.gguf [--json])");
    vm_gguf *g = vm_gguf_open(path);
    if (!g) {
        // reader messages start with the path; others (e.g. out of memory) get it added
        if (strncmp(vm_errmsg(), path, strlen(path)) != 0) vm_err_prefix("%s", path);
        return cli_fail("info", NULL);
    }
    char arch[128] = "";
    const vm_gguf_kv *a = str_kv(g, "general.architecture");
    if (a) {
        size_t n = a->strs[0].n < sizeof arch - 1 ? (size_t)a->strs[0].n : sizeof arch - 1;
        memcpy(arch, a->strs[0].s, n);
        arch[n] = 0;
        if (strlen(arch) != n) arch[0] = 0;   // embedded NUL: not a usable key prefix
    }
    info_stats s;
    collect(g, &s);
    int rc = 0;
    if (json) rc = print_json(g, arch, &s);
    else print_text(g, arch, &s);
    vm_gguf_free(g);
    return rc;
}

// Vocabulary: token texts, scores and types, the text -> id table, byte fallback, the list of
// special tokens, and token -> piece decoding. Semantics follow llama.cpp's llama_vocab.
#include "tokenizer/tok_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

int vm_tok_ids_push(vm_tok_ids *ids, int32_t id) {
    if (ids->n == ids->cap) {
        size_t cap = ids->cap ? ids->cap * 2 : 64;
        int32_t *v = realloc(ids->v, cap * sizeof *v);
        if (!v) return vm_err("tokenizer: out of memory (%zu ids)", cap);
        ids->v = v;
        ids->cap = cap;
    }
    ids->v[ids->n++] = id;
    return 0;
}

// FNV-1a: token texts are short, this is fast enough and has no bad cases for text keys.
static uint32_t text_hash(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

int32_t vm_tok_lookup(const vm_tokenizer *t, const char *s, size_t n) {
    for (uint32_t i = text_hash(s, n) & t->mask;; i = (i + 1) & t->mask) {
        uint32_t e = t->table[i];
        if (!e) return -1;
        int32_t id = (int32_t)(e - 1);
        if (t->len[id] == n && !memcmp(vm_tok_str(t, id), s, n)) return id;
    }
}

static uint16_t type_to_attr(int32_t type) {
    switch (type) {
    case VM_TOKEN_TYPE_NORMAL: return VM_TATTR_NORMAL;
    case VM_TOKEN_TYPE_UNKNOWN: return VM_TATTR_UNKNOWN;
    case VM_TOKEN_TYPE_CONTROL: return VM_TATTR_CONTROL;
    case VM_TOKEN_TYPE_USER_DEFINED: return VM_TATTR_USER_DEFINED;
    case VM_TOKEN_TYPE_UNUSED: return VM_TATTR_UNUSED;
    case VM_TOKEN_TYPE_BYTE: return VM_TATTR_BYTE;
    default: return 0;   // UNDEFINED or out of range: decodes to nothing, never split out
    }
}

typedef struct spec_key { uint32_t len; int32_t id; } spec_key;
static int spec_cmp(const void *a, const void *b) {
    const spec_key *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;   // longest first
    return (x->id > y->id) - (x->id < y->id);                // then by id: deterministic
}

// Special-token list and byte fallback table; called again when attributes change.
static int build_derived(vm_tokenizer *t) {
    static const char hex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; b++) {
        char buf[7] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>', 0};
        int32_t id = vm_tok_lookup(t, buf, 6);
        if (id < 0) {   // vocabularies without byte tokens: the byte itself, as llama.cpp
            char c = (char)b;
            id = vm_tok_lookup(t, &c, 1);
        }
        t->byte_tok[b] = id;
    }
    free(t->special);
    t->special = NULL;
    t->n_special = 0;
    spec_key *keys = vm_malloc(sizeof *keys * (size_t)(t->n ? t->n : 1));
    if (!keys) return -1;
    int ns = 0;
    for (int i = 0; i < t->n; i++)
        if (t->attr[i] & (VM_TATTR_CONTROL | VM_TATTR_USER_DEFINED | VM_TATTR_UNKNOWN))
            keys[ns++] = (spec_key){t->len[i], i};
    qsort(keys, (size_t)ns, sizeof *keys, spec_cmp);
    t->special = vm_malloc(sizeof *t->special * (size_t)(ns ? ns : 1));
    if (!t->special) { free(keys); return -1; }
    for (int i = 0; i < ns; i++) t->special[i] = keys[i].id;
    t->n_special = ns;
    free(keys);
    return 0;
}

vm_tokenizer *vm_tokenizer_from_vocab(const vm_tok_vocab *v) {
    if (!v || v->n_tokens <= 0 || !v->texts) { vm_err("tokenizer: empty vocabulary"); return NULL; }
    if (v->kind != VM_TOK_SPM && v->kind != VM_TOK_BPE) { vm_err("tokenizer: unknown vocabulary kind %d", (int)v->kind); return NULL; }
    if (v->n_merges < 0 || (v->n_merges > 0 && !v->merges)) { vm_err("tokenizer: bad merge list"); return NULL; }
    if (v->n_tokens > (1 << 28)) { vm_err("tokenizer: vocabulary too large (%d tokens)", v->n_tokens); return NULL; }
    int32_t sid[4] = {v->bos, v->eos, v->unk, v->pad};
    for (int k = 0; k < 4; k++)
        if (sid[k] < -1 || sid[k] >= v->n_tokens) {
            vm_err("tokenizer: special token id %d out of range [0, %d)", sid[k], v->n_tokens);
            return NULL;
        }
    vm_tokenizer *t = vm_calloc(1, sizeof *t);
    if (!t) return NULL;
    int n = t->n = v->n_tokens;
    t->kind = v->kind;
    t->bos = v->bos; t->eos = v->eos; t->unk = v->unk; t->pad = v->pad;
    t->add_bos = v->add_bos != 0;
    t->add_space_prefix = v->add_space_prefix != 0;

    // arena size: every text (or its "[EMPTY_<id>]" stand-in) plus a NUL
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (!v->texts[i]) { vm_err("tokenizer: token %d has no text", i); goto fail; }
        size_t l = v->lens ? v->lens[i] : strlen(v->texts[i]);
        total += (l ? l : 24) + 1;
    }
    uint32_t cap = 1;
    while (cap < 2u * (uint32_t)n) cap <<= 1;
    t->arena = vm_malloc(total);
    t->off = vm_malloc(sizeof *t->off * (size_t)n);
    t->len = vm_malloc(sizeof *t->len * (size_t)n);
    t->score = vm_malloc(sizeof *t->score * (size_t)n);
    t->type = vm_malloc((size_t)n);
    t->attr = vm_malloc(sizeof *t->attr * (size_t)n);
    t->table = vm_calloc(cap, sizeof *t->table);
    if (!t->arena || !t->off || !t->len || !t->score || !t->type || !t->attr || !t->table) goto fail;
    t->mask = cap - 1;

    size_t pos = 0;
    for (int i = 0; i < n; i++) {
        size_t l = v->lens ? v->lens[i] : strlen(v->texts[i]);
        t->off[i] = pos;
        if (l == 0) l = (size_t)snprintf(t->arena + pos, 25, "[EMPTY_%d]", i);   // as llama.cpp
        else memcpy(t->arena + pos, v->texts[i], l);
        t->arena[pos + l] = 0;
        t->len[i] = (uint32_t)l;
        pos += l + 1;
        int32_t ty = v->types ? v->types[i] : VM_TOKEN_TYPE_NORMAL;
        t->type[i] = (uint8_t)((ty >= 0 && ty <= VM_TOKEN_TYPE_BYTE) ? ty : VM_TOKEN_TYPE_UNDEFINED);
        t->attr[i] = type_to_attr(ty);
        t->score[i] = v->scores ? v->scores[i] : 0.0f;
        // insert; a repeated text takes the later id (llama.cpp's token_to_id[word] = i)
        const char *s = vm_tok_str(t, i);
        for (uint32_t h = text_hash(s, l) & t->mask;; h = (h + 1) & t->mask) {
            uint32_t e = t->table[h];
            if (!e) { t->table[h] = (uint32_t)i + 1; break; }
            int32_t o = (int32_t)(e - 1);
            if (t->len[o] == l && !memcmp(vm_tok_str(t, o), s, l)) { t->table[h] = (uint32_t)i + 1; break; }
        }
    }
    if (build_derived(t)) goto fail;
    if (t->kind == VM_TOK_BPE) {
        t->add_space_prefix = 0;   // byte-level BPE spells spaces out (Ġ), never adds one
        if (!(t->pre = vm_pretok_init(v->pre))) goto fail;
        t->ignore_merges = v->ignore_merges || vm_pretok_ignore_merges(t->pre);
        if (vm_tok_bpe_merges(t, v->merges, v->merge_lens, v->n_merges)) goto fail;
    }
    return t;
fail:
    vm_tokenizer_free(t);
    return NULL;
}

void vm_tokenizer_free(vm_tokenizer *t) {
    if (!t) return;
    free(t->arena); free(t->off); free(t->len); free(t->score); free(t->type); free(t->attr);
    free(t->table); free(t->special);
    vm_pretok_free(t->pre); free(t->merge);
    free(t);
}

// ---- from GGUF ----

static int ci_contains(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    for (; *hay; hay++) {
        size_t i = 0;
        while (i < n && hay[i] && (hay[i] | 0x20) == (needle[i] | 0x20)) i++;   // ASCII case fold
        if (i == n) return 1;
    }
    return 0;
}

// llama.cpp promotes these end-of-generation texts to CONTROL whatever the file says, so they
// are only split out of text with parse_special.
static const char *const eog_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<end_of_turn>", "<|endoftext|>",
    "<|eom_id|>", "<EOT>", "_<EOT>", "<|end_of_text|>", "<end_of_utterance>",
    // DeepSeek's <｜end▁of▁sentence｜>, split after \x9c so "e" does not extend the escape
    ("<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"),
};

static void set_attr(vm_tokenizer *t, const char *text, uint16_t bit, int on) {
    int32_t id = vm_tok_lookup(t, text, strlen(text));
    if (id < 0) return;
    t->attr[id] = on ? (uint16_t)(t->attr[id] | bit) : (uint16_t)(t->attr[id] & ~bit);
}

// Special id key: absent -> default; present but out of range -> default (llama.cpp warns).
static int get_id(const vm_gguf *g, const char *key, int32_t def, int n, int32_t *out) {
    int64_t v;
    int r = vm_gguf_get_i64(g, key, &v);
    if (r < 0) return -1;
    *out = (r == 0 && v >= 0 && v < n) ? (int32_t)v : (def < n ? def : -1);
    return 0;
}

vm_tokenizer *vm_tokenizer_from_gguf(const vm_gguf *g) {
    char *model = NULL, *name = NULL, *pre = NULL;
    const char **texts = NULL, **merges = NULL;
    uint32_t *mlens = NULL;
    uint32_t *lens = NULL;
    float *scores = NULL;
    int32_t *types = NULL;
    vm_tokenizer *t = NULL;
    if (!g) { vm_err("tokenizer: no GGUF file"); return NULL; }
    const char *path = g->path ? g->path : "<gguf>";

    int r = vm_gguf_get_str(g, "tokenizer.ggml.model", &model);
    if (r) {
        if (r > 0) vm_err("%s: no tokenizer (key tokenizer.ggml.model is missing)", path);
        goto done;
    }
    int bpe = !strcmp(model, "gpt2");
    if (!bpe && strcmp(model, "llama")) {
        vm_err("%s: unknown tokenizer model '%s' (supported: llama, gpt2)", path, model);
        goto done;
    }
    const vm_gguf_kv *kt = vm_gguf_get_kv(g, "tokenizer.ggml.tokens");
    if (!kt) { vm_err("%s: key tokenizer.ggml.tokens is missing", path); goto done; }
    if (kt->type != VM_GGUF_TYPE_ARRAY || kt->arr_type != VM_GGUF_TYPE_STRING || !kt->strs) {
        vm_err("%s: tokenizer.ggml.tokens is not an array of strings", path);
        goto done;
    }
    if (kt->n == 0 || kt->n > (1u << 28)) {
        vm_err("%s: tokenizer.ggml.tokens has %llu entries", path, (unsigned long long)kt->n);
        goto done;
    }
    int n = (int)kt->n;
    texts = vm_malloc(sizeof *texts * (size_t)n);
    lens = vm_malloc(sizeof *lens * (size_t)n);
    if (!texts || !lens) goto done;
    for (int i = 0; i < n; i++) {
        if (kt->strs[i].n > UINT32_MAX / 2) { vm_err("%s: token %d is too long", path, i); goto done; }
        texts[i] = kt->strs[i].n ? kt->strs[i].s : "";
        lens[i] = (uint32_t)kt->strs[i].n;
    }
    const vm_gguf_kv *ks = vm_gguf_get_kv(g, "tokenizer.ggml.scores");
    if (ks) {
        if (ks->type != VM_GGUF_TYPE_ARRAY || ks->arr_type == VM_GGUF_TYPE_STRING ||
            ks->arr_type == VM_GGUF_TYPE_ARRAY || ks->n != kt->n) {
            vm_err("%s: tokenizer.ggml.scores must be a numeric array of %d entries", path, n);
            goto done;
        }
        if (!(scores = vm_malloc(sizeof *scores * (size_t)n))) goto done;
        for (int i = 0; i < n; i++) scores[i] = (float)vm_gguf_arr_num(ks, (uint64_t)i);
    }
    const vm_gguf_kv *ky = vm_gguf_get_kv(g, "tokenizer.ggml.token_type");
    if (ky) {
        if (ky->type != VM_GGUF_TYPE_ARRAY || ky->arr_type == VM_GGUF_TYPE_STRING ||
            ky->arr_type == VM_GGUF_TYPE_ARRAY || ky->n != kt->n) {
            vm_err("%s: tokenizer.ggml.token_type must be an integer array of %d entries", path, n);
            goto done;
        }
        if (!(types = vm_malloc(sizeof *types * (size_t)n))) goto done;
        for (int i = 0; i < n; i++) {
            double d = vm_gguf_arr_num(ky, (uint64_t)i);
            types[i] = (d >= 0 && d <= VM_TOKEN_TYPE_BYTE) ? (int32_t)d : VM_TOKEN_TYPE_UNDEFINED;
        }
    }
    vm_tok_vocab v = {.kind = VM_TOK_SPM, .n_tokens = n, .texts = texts, .lens = lens,
                      .scores = scores, .types = types, .add_bos = 1, .add_space_prefix = 1};
    if (bpe) {
        v.kind = VM_TOK_BPE;
        v.add_space_prefix = 0;
        if (vm_gguf_get_str(g, "tokenizer.ggml.pre", &pre) < 0) goto done;
        if (!vm_pretok_known(pre)) {
            vm_err("%s: unknown pre-tokenizer '%s' (tokenizer.ggml.pre)", path, pre);
            goto done;
        }
        v.pre = pre;
        v.add_bos = vm_pretok_default_add_bos(pre);
        const vm_gguf_kv *km = vm_gguf_get_kv(g, "tokenizer.ggml.merges");
        if (!km) { vm_err("%s: key tokenizer.ggml.merges is missing (needed by a gpt2 tokenizer)", path); goto done; }
        if (km->type != VM_GGUF_TYPE_ARRAY || km->arr_type != VM_GGUF_TYPE_STRING || !km->strs || km->n > (1u << 28)) {
            vm_err("%s: tokenizer.ggml.merges is not an array of strings", path);
            goto done;
        }
        v.n_merges = (int)km->n;
        merges = vm_malloc(sizeof *merges * (km->n ? km->n : 1));
        mlens = vm_malloc(sizeof *mlens * (km->n ? km->n : 1));
        if (!merges || !mlens) goto done;
        for (uint64_t i = 0; i < km->n; i++) {
            if (km->strs[i].n > UINT32_MAX / 2) { vm_err("%s: merge %llu is too long", path, (unsigned long long)i); goto done; }
            merges[i] = km->strs[i].n ? km->strs[i].s : "";
            mlens[i] = (uint32_t)km->strs[i].n;
        }
        v.merges = merges;
        v.merge_lens = mlens;
    }
    // llama.cpp's defaults: SPM bos 1, eos 2, unk 0; BPE bos = eos = 11, no unk; no pad
    if (get_id(g, "tokenizer.ggml.bos_token_id", bpe ? 11 : 1, n, &v.bos) ||
        get_id(g, "tokenizer.ggml.eos_token_id", bpe ? 11 : 2, n, &v.eos) ||
        get_id(g, "tokenizer.ggml.unknown_token_id", bpe ? -1 : 0, n, &v.unk) ||
        get_id(g, "tokenizer.ggml.padding_token_id", -1, n, &v.pad))
        goto done;   // the getters' messages name the file
    if (vm_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &v.add_bos) < 0 ||
        vm_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &v.add_space_prefix) < 0)
        goto done;
    if (bpe) v.add_space_prefix = 0;
    if (!(t = vm_tokenizer_from_vocab(&v))) { vm_err_prefix("%s", path); goto done; }

    for (size_t i = 0; i < sizeof eog_texts / sizeof *eog_texts; i++) {
        int32_t id = vm_tok_lookup(t, eog_texts[i], strlen(eog_texts[i]));
        if (id >= 0) t->attr[id] |= VM_TATTR_CONTROL;
    }
    // Phi-3: llama.cpp swallows whitespace after its special tokens (by model name, as there)
    if (vm_gguf_get_str(g, "general.name", &name) == 0 && (ci_contains(name, "phi-3") || ci_contains(name, "phi3"))) {
        for (int i = 0; i < t->n; i++)
            if (t->attr[i] & (VM_TATTR_CONTROL | VM_TATTR_USER_DEFINED | VM_TATTR_UNKNOWN))
                t->attr[i] |= VM_TATTR_RSTRIP;
        set_attr(t, "</s>", VM_TATTR_RSTRIP, 1);
        set_attr(t, "<unk>", VM_TATTR_RSTRIP, 0);
        set_attr(t, "<s>", VM_TATTR_RSTRIP, 0);
        set_attr(t, "<|endoftext|>", VM_TATTR_RSTRIP, 0);
    }
    if (build_derived(t)) { vm_tokenizer_free(t); t = NULL; }
done:
    free(model); free(name); free(texts); free(lens); free(scores); free(types);
    free(pre); free(merges); free(mlens);
    return t;
}

// ---- accessors ----

static int valid(const vm_tokenizer *t, int32_t id) { return t && id >= 0 && id < t->n; }

int vm_tokenizer_n_vocab(const vm_tokenizer *t) { return t ? t->n : vm_err("tokenizer: no tokenizer given"); }
int32_t vm_tokenizer_bos(const vm_tokenizer *t) { return t ? t->bos : -1; }
int32_t vm_tokenizer_eos(const vm_tokenizer *t) { return t ? t->eos : -1; }
int32_t vm_tokenizer_unk(const vm_tokenizer *t) { return t ? t->unk : -1; }
int32_t vm_tokenizer_pad(const vm_tokenizer *t) { return t ? t->pad : -1; }
int vm_tokenizer_add_bos(const vm_tokenizer *t) { return t && t->add_bos && t->bos >= 0; }
int vm_tokenizer_add_space_prefix(const vm_tokenizer *t) { return t && t->add_space_prefix; }
vm_tok_kind vm_tokenizer_kind(const vm_tokenizer *t) { return t ? t->kind : VM_TOK_SPM; }
const char *vm_tokenizer_text(const vm_tokenizer *t, int32_t id) { return valid(t, id) ? vm_tok_str(t, id) : NULL; }
vm_token_attr vm_tokenizer_type(const vm_tokenizer *t, int32_t id) {
    return valid(t, id) ? (vm_token_attr)t->type[id] : VM_TOKEN_TYPE_UNDEFINED;
}
float vm_tokenizer_score(const vm_tokenizer *t, int32_t id) { return valid(t, id) ? t->score[id] : 0.0f; }
int32_t vm_tokenizer_find(const vm_tokenizer *t, const char *text, size_t len) {
    return (t && (text || !len)) ? vm_tok_lookup(t, text ? text : "", len) : -1;
}

// ---- pieces ----

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Writes the piece into buf (up to size bytes), dropping up to lstrip leading spaces; returns
// the piece's full length.
static int piece(const vm_tokenizer *t, int32_t id, char *buf, int size, int special, int lstrip) {
    const char *s = vm_tok_str(t, id);
    size_t n = t->len[id];
    uint16_t a = t->attr[id];
    int w = 0;
#define PUT(c) do { char c_ = (c); \
        if (lstrip > 0 && w == 0 && c_ == ' ') lstrip--; \
        else { if (w < size) buf[w] = c_; w++; } } while (0)
    if (!special && (a & (VM_TATTR_UNKNOWN | VM_TATTR_CONTROL))) return 0;
    if (a & (VM_TATTR_UNKNOWN | VM_TATTR_CONTROL | VM_TATTR_USER_DEFINED)) {
        for (size_t i = 0; i < n; i++) PUT(s[i]);   // raw text, no unescaping (as llama.cpp)
    } else if ((a & VM_TATTR_NORMAL) && t->kind == VM_TOK_BPE) {
        for (size_t i = 0, k; i < n; i += k) {   // stand-in characters -> bytes
            int b = vm_bpe_byte_decode(s + i, n - i, &k);
            if (b >= 0) PUT((char)b);
            else for (size_t j = 0; j < k; j++) PUT(s[i + j]);   // no stand-in: the text as is
        }
    } else if (a & VM_TATTR_NORMAL) {
        for (size_t i = 0; i < n; i++) {
            if (n - i >= 3 && !memcmp(s + i, "\xe2\x96\x81", 3)) { PUT(' '); i += 2; }   // U+2581 -> space
            else PUT(s[i]);
        }
    } else if (a & VM_TATTR_BYTE) {
        int hi = n == 6 ? hexval(s[3]) : -1, lo = n == 6 ? hexval(s[4]) : -1;
        if (hi >= 0 && lo >= 0) PUT((char)(hi * 16 + lo));   // else not <0xXX>: nothing
    }
    // UNUSED / UNDEFINED: nothing, as llama.cpp
#undef PUT
    return w;
}

int vm_token_to_piece_ex(const vm_tokenizer *t, int32_t id, char *buf, int size, int special) {
    if (!valid(t, id)) return vm_err("tokenizer: token id %d out of range [0, %d)", (int)id, t ? t->n : 0);
    if (size < 0 || (size > 0 && !buf)) return vm_err("tokenizer: bad output buffer");
    return piece(t, id, buf, size, special, 0);
}

int vm_token_to_piece(const vm_tokenizer *t, int32_t id, char *buf, int size) {
    return vm_token_to_piece_ex(t, id, buf, size, 0);
}

int vm_detokenize(const vm_tokenizer *t, const int32_t *ids, int n, char *buf, int size, int special) {
    if (!t || n < 0 || (n > 0 && !ids) || size < 0 || (size > 0 && !buf))
        return vm_err("tokenizer: bad arguments to vm_detokenize");
    int total = 0, lstrip = t->add_space_prefix;
    for (int i = 0; i < n; i++) {
        if (!valid(t, ids[i])) return vm_err("tokenizer: token id %d out of range [0, %d)", (int)ids[i], t->n);
        int room = size - 1 - total;
        if (room < 0) room = 0;
        int w = piece(t, ids[i], room ? buf + total : NULL, room, special, lstrip);
        lstrip = 0;
        if (w > INT32_MAX - total) return vm_err("tokenizer: detokenized text too long");
        total += w;
    }
    if (size > 0) buf[total < size ? total : size - 1] = 0;
    return total;
}

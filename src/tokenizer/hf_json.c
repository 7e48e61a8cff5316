// Hugging Face tokenizer.json (model.type "BPE", byte-level) -> vm_tok_vocab, and a vocabulary
// -> the GGUF tokenizer keys llama.cpp reads. Token types follow convert_hf_to_gguf: added
// tokens are CONTROL when special (or shaped like <|...|>), USER_DEFINED otherwise, with their
// raw text; ids nobody names become "[PAD<id>]" UNUSED. The pre_tokenizer is matched to one of
// pretok.c's families; an unrecognised one is an error that shows it.
#include "tokenizer/tok_impl.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

static const char *jstr(const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int jtrue(const json_t *o, const char *key, int def) {
    const json_t *v = json_object_get(o, key);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

// ---- pre_tokenizer -> steps -> family ----

typedef struct steps { char *s[16]; int n; } steps;

static int step_add(steps *st, const char *a, const char *b) {
    if (st->n == 16) return vm_err("too many pre-tokenizer steps");
    size_t la = strlen(a), lb = b ? strlen(b) : 0;
    char *s = vm_malloc(la + lb + 1);
    if (!s) return -1;
    memcpy(s, a, la);
    if (b) memcpy(s + la, b, lb);
    s[la + lb] = 0;
    st->s[st->n++] = s;
    return 0;
}

static int pre_steps(const json_t *p, steps *st) {
    const char *type = jstr(p, "type");
    if (!type) return vm_err("pre_tokenizer without a type");
    if (!strcmp(type, "Sequence")) {
        const json_t *a = json_object_get(p, "pretokenizers");
        if (!json_is_array(a)) return vm_err("Sequence pre_tokenizer without pretokenizers");
        for (size_t i = 0; i < json_array_size(a); i++)
            if (pre_steps(json_array_get(a, i), st)) return -1;
        return 0;
    }
    if (!strcmp(type, "ByteLevel")) {
        if (jtrue(p, "add_prefix_space", 0)) return vm_err("ByteLevel with add_prefix_space is not supported");
        return step_add(st, jtrue(p, "use_regex", 1) ? "bytelevel:1" : "bytelevel:0", NULL);
    }
    if (!strcmp(type, "Digits")) return step_add(st, jtrue(p, "individual_digits", 0) ? "digits:1" : "digits:0", NULL);
    if (!strcmp(type, "Punctuation")) return step_add(st, "punct", NULL);
    if (!strcmp(type, "Split")) {
        const json_t *pat = json_object_get(p, "pattern");
        const char *re = jstr(pat, "Regex"), *beh = jstr(p, "behavior");
        if (!re) return vm_err("Split pre_tokenizer without a Regex pattern");
        if (jtrue(p, "invert", 0) || (beh && strcmp(beh, "Isolated")))
            return vm_err("Split pre_tokenizer with behavior '%s'%s is not supported", beh ? beh : "?",
                          jtrue(p, "invert", 0) ? " (inverted)" : "");
        return step_add(st, "split:", re);
    }
    return vm_err("pre_tokenizer type '%s' is not supported", type);
}

// ---- reading ----

static int looks_special(const char *s, size_t n) {   // <|...|> and DeepSeek's <｜...｜>
    return (n >= 4 && !memcmp(s, "<|", 2) && !memcmp(s + n - 2, "|>", 2)) ||
           (n >= 8 && !memcmp(s, "<\xef\xbd\x9c", 4) && !memcmp(s + n - 4, "\xef\xbd\x9c>", 4));
}

static int set_text(vm_hf_vocab *h, int32_t id, const char *s, size_t n) {
    char *c = vm_malloc(n + 1);
    if (!c) return -1;
    memcpy(c, s, n);
    c[n] = 0;
    free(h->texts_own[id]);
    h->texts_own[id] = c;
    h->lens_own[id] = (uint32_t)n;
    return 0;
}

// Special-token text from tokenizer_config.json: a string or {"content": ...}.
static const char *cfg_token(const json_t *cfg, const char *key) {
    const json_t *v = json_object_get(cfg, key);
    if (json_is_string(v)) return json_string_value(v);
    return json_is_object(v) ? jstr(v, "content") : NULL;
}

static int32_t find_text(const vm_hf_vocab *h, const char *s) {
    if (!s) return -1;
    size_t n = strlen(s);
    for (int i = h->v.n_tokens - 1; i >= 0; i--)   // the last one, as the tokenizer's table
        if (h->lens_own[i] == n && !memcmp(h->texts_own[i], s, n)) return i;
    return -1;
}

int vm_hf_vocab_read(const char *path, vm_hf_vocab *h) {
    memset(h, 0, sizeof *h);
    json_error_t je;
    json_t *root = json_load_file(path, JSON_ALLOW_NUL, &je), *cfg = NULL;
    steps st = {0};
    int rc = -1;
    if (!root) { vm_err("%s: not valid JSON (line %d: %s)", path, je.line, je.text); return -1; }
    const json_t *model = json_object_get(root, "model");
    const char *mtype = jstr(model, "type");
    if (!json_is_object(model) || !mtype || strcmp(mtype, "BPE")) {
        vm_err("%s: model.type is '%s' (only BPE is supported)", path, mtype ? mtype : "missing");
        goto done;
    }
    if (jtrue(model, "byte_fallback", 0)) { vm_err("%s: byte_fallback BPE is not byte-level (not supported)", path); goto done; }
    const json_t *vocab = json_object_get(model, "vocab"), *merges = json_object_get(model, "merges");
    if (!json_is_object(vocab) || !json_is_array(merges)) { vm_err("%s: model.vocab or model.merges is missing", path); goto done; }

    // the pre-tokenizer family
    const json_t *pre = json_object_get(root, "pre_tokenizer");
    if (!json_is_object(pre)) { vm_err("%s: no pre_tokenizer (byte-level BPE needs one)", path); goto done; }
    if (pre_steps(pre, &st)) { vm_err_prefix("%s", path); goto done; }
    const char *fam = vm_pretok_from_hf((const char *const *)st.s, st.n);
    if (!fam) {
        char buf[600];
        size_t o = 0;
        for (int i = 0; i < st.n && o < sizeof buf - 4; i++)
            o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%.120s", i ? ", " : "", st.s[i]);
        vm_err("%s: pre_tokenizer matches no known family: %s", path, buf);
        goto done;
    }
    const json_t *dec = json_object_get(root, "decoder");
    const char *dtype = jstr(dec, "type");
    if (dtype && strcmp(dtype, "ByteLevel") && strcmp(dtype, "Sequence")) {
        vm_err("%s: decoder '%s' is not byte-level", path, dtype);
        goto done;
    }

    // size: the largest id named by vocab or added_tokens
    const json_t *added = json_object_get(root, "added_tokens");
    int64_t maxid = -1;
    const char *key;
    size_t klen;
    json_t *val;
    json_object_keylen_foreach((json_t *)vocab, key, klen, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) >= (1 << 28)) {
            vm_err("%s: model.vocab entry '%.40s' has a bad id", path, key);
            goto done;
        }
        if (json_integer_value(val) > maxid) maxid = json_integer_value(val);
    }
    for (size_t i = 0; json_is_array(added) && i < json_array_size(added); i++) {
        const json_t *a = json_array_get(added, i), *id = json_object_get(a, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= (1 << 28) || !jstr(a, "content")) {
            vm_err("%s: added_tokens[%zu] has no valid id/content", path, i);
            goto done;
        }
        if (json_integer_value(id) > maxid) maxid = json_integer_value(id);
    }
    if (maxid < 0) { vm_err("%s: empty vocabulary", path); goto done; }
    // ids nobody names become "[PAD<id>]" tokens: allow as many as there are entries (plus some),
    // not 2^28 of them from one large id in a 100-byte file (found by fuzz_hf_json)
    size_t n_entries = json_object_size(vocab) + (json_is_array(added) ? json_array_size(added) : 0);
    if ((uint64_t)maxid >= 2 * (uint64_t)n_entries + 1024) {
        vm_err("%s: ids up to %lld for %zu entries (too sparse)", path, (long long)maxid, n_entries);
        goto done;
    }
    int n = (int)maxid + 1;
    h->texts_own = vm_calloc((size_t)n, sizeof *h->texts_own);
    h->lens_own = vm_calloc((size_t)n, sizeof *h->lens_own);
    h->types_own = vm_calloc((size_t)n, sizeof *h->types_own);
    h->v.n_tokens = n;
    if (!h->texts_own || !h->lens_own || !h->types_own) goto done;
    json_object_keylen_foreach((json_t *)vocab, key, klen, val) {
        int32_t id = (int32_t)json_integer_value(val);
        if (set_text(h, id, key, klen)) goto done;
        h->types_own[id] = VM_TOKEN_TYPE_NORMAL;
    }
    for (size_t i = 0; json_is_array(added) && i < json_array_size(added); i++) {
        const json_t *a = json_array_get(added, i), *c = json_object_get(a, "content");
        int32_t id = (int32_t)json_integer_value(json_object_get(a, "id"));
        size_t cl = json_string_length(c);
        if (set_text(h, id, json_string_value(c), cl)) goto done;
        h->types_own[id] = (jtrue(a, "special", 0) || looks_special(json_string_value(c), cl))
                         ? VM_TOKEN_TYPE_CONTROL : VM_TOKEN_TYPE_USER_DEFINED;
    }
    for (int i = 0; i < n; i++) {
        if (h->texts_own[i]) continue;
        char pad[32];
        int l = snprintf(pad, sizeof pad, "[PAD%d]", i);
        if (set_text(h, i, pad, (size_t)l)) goto done;
        h->types_own[i] = VM_TOKEN_TYPE_UNUSED;
    }

    // merges: "a b" strings or [a, b] pairs, kept as "a b" (the GGUF form)
    size_t nm = json_array_size(merges);
    if (nm > (1u << 28)) { vm_err("%s: too many merges", path); goto done; }
    h->merges_own = vm_calloc(nm ? nm : 1, sizeof *h->merges_own);
    h->mlens_own = vm_calloc(nm ? nm : 1, sizeof *h->mlens_own);
    if (!h->merges_own || !h->mlens_own) goto done;
    h->n_merges = (int)nm;   // the entries start NULL: freeing after a failure is safe
    for (size_t i = 0; i < nm; i++) {
        const json_t *m = json_array_get(merges, i);
        const char *a, *b = NULL;
        size_t la, lb = 0;
        if (json_is_string(m)) { a = json_string_value(m); la = json_string_length(m); }
        else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                 json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0)); la = json_string_length(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1)); lb = json_string_length(json_array_get(m, 1));
        } else { vm_err("%s: model.merges[%zu] is neither \"a b\" nor [a, b]", path, i); goto done; }
        // GGUF stores a merge as "left right": both sides non-empty, split at the one space
        // (found by fuzz_convert_hf: a merge without a space converted but did not reload)
        const char *sp = b ? NULL : memchr(a, ' ', la);
        if (b ? (la == 0 || lb == 0 || memchr(a, ' ', la) || memchr(b, ' ', lb))
              : (!sp || sp == a || sp == a + la - 1 || memchr(sp + 1, ' ', la - (size_t)(sp - a) - 1))) {
            vm_err("%s: model.merges[%zu] is not two non-empty parts without spaces", path, i);
            goto done;
        }
        size_t tl = la + (b ? lb + 1 : 0);
        char *s = h->merges_own[i] = vm_malloc(tl + 1);
        if (!s) goto done;
        memcpy(s, a, la);
        if (b) { s[la] = ' '; memcpy(s + la + 1, b, lb); }
        s[tl] = 0;
        h->mlens_own[i] = (uint32_t)tl;
    }
    snprintf(h->pre, sizeof h->pre, "%s", fam);

    // special ids: tokenizer_config.json next to the file when there is one, else by text
    h->v.bos = h->v.eos = h->v.unk = h->v.pad = -1;
    char cpath[4096];
    const char *slash = strrchr(path, '/');
    snprintf(cpath, sizeof cpath, "%.*stokenizer_config.json", slash ? (int)(slash - path + 1) : 0, path);
    cfg = json_load_file(cpath, JSON_ALLOW_NUL, &je);
    if (cfg) {
        h->v.bos = find_text(h, cfg_token(cfg, "bos_token"));
        h->v.eos = find_text(h, cfg_token(cfg, "eos_token"));
        h->v.unk = find_text(h, cfg_token(cfg, "unk_token"));
        h->v.pad = find_text(h, cfg_token(cfg, "pad_token"));
        h->v.add_bos = jtrue(cfg, "add_bos_token", 0);
    } else {
        static const char *const eos_texts[] = {"<|endoftext|>", ("<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"),
                                                "<|end_of_text|>", "</s>"};
        for (size_t i = 0; i < sizeof eos_texts / sizeof *eos_texts && h->v.eos < 0; i++) h->v.eos = find_text(h, eos_texts[i]);
        h->v.bos = find_text(h, "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>");
        if (h->v.bos < 0) h->v.bos = find_text(h, "<|begin_of_text|>");
    }
    const char *unk = jstr(model, "unk_token");
    if (unk && h->v.unk < 0) h->v.unk = find_text(h, unk);

    h->v.kind = VM_TOK_BPE;
    h->v.texts = (const char *const *)h->texts_own;
    h->v.lens = h->lens_own;
    h->v.types = h->types_own;
    h->v.pre = h->pre;
    h->v.merges = (const char *const *)h->merges_own;
    h->v.merge_lens = h->mlens_own;
    h->v.n_merges = h->n_merges;
    h->v.ignore_merges = jtrue(model, "ignore_merges", 0);
    rc = 0;
done:
    for (int i = 0; i < st.n; i++) free(st.s[i]);
    json_decref(root);
    json_decref(cfg);
    if (rc) vm_hf_vocab_free(h);
    return rc;
}

void vm_hf_vocab_free(vm_hf_vocab *h) {
    if (!h) return;
    for (int i = 0; h->texts_own && i < h->v.n_tokens; i++) free(h->texts_own[i]);
    for (int i = 0; h->merges_own && i < h->n_merges; i++) free(h->merges_own[i]);
    free(h->texts_own); free(h->lens_own); free(h->types_own); free(h->merges_own); free(h->mlens_own);
    memset(h, 0, sizeof *h);
}

vm_tokenizer *vm_tokenizer_from_hf_json(const char *path) {
    vm_hf_vocab h;
    if (vm_hf_vocab_read(path, &h)) return NULL;
    vm_tokenizer *t = vm_tokenizer_from_vocab(&h.v);
    if (!t) vm_err_prefix("%s", path);
    vm_hf_vocab_free(&h);
    return t;
}

// ---- vocabulary -> GGUF keys ----

int vm_tok_vocab_to_gguf(const vm_tok_vocab *v, vm_gguf_writer *w) {
    if (!v || !w || v->n_tokens <= 0 || !v->texts) return vm_err("tokenizer: nothing to write");
    int n = v->n_tokens, rc = -1;
    int32_t *types = vm_malloc(sizeof *types * (size_t)n);
    if (!types) return -1;
    for (int i = 0; i < n; i++) {
        size_t l = v->lens ? v->lens[i] : strlen(v->texts[i]);
        if (strlen(v->texts[i]) != l) { vm_err("tokenizer: token %d contains a NUL byte (GGUF strings cannot)", i); goto done; }
        types[i] = v->types ? v->types[i] : VM_TOKEN_TYPE_NORMAL;
    }
    for (int i = 0; i < v->n_merges; i++)
        if (v->merge_lens && strlen(v->merges[i]) != v->merge_lens[i]) { vm_err("tokenizer: merge %d contains a NUL byte", i); goto done; }
    if (v->kind == VM_TOK_BPE) {
        if (!vm_pretok_known(v->pre)) { vm_err("tokenizer: unknown pre-tokenizer '%s'", v->pre); goto done; }
        vm_gguf_set_str(w, "tokenizer.ggml.model", "gpt2");
        vm_gguf_set_str(w, "tokenizer.ggml.pre", v->pre && *v->pre ? v->pre : "default");
    } else {
        vm_gguf_set_str(w, "tokenizer.ggml.model", "llama");
    }
    vm_gguf_set_arr_str(w, "tokenizer.ggml.tokens", v->texts, (uint64_t)n);
    if (v->scores) vm_gguf_set_arr(w, "tokenizer.ggml.scores", VM_GGUF_TYPE_FLOAT32, v->scores, (uint64_t)n);
    vm_gguf_set_arr(w, "tokenizer.ggml.token_type", VM_GGUF_TYPE_INT32, types, (uint64_t)n);
    if (v->kind == VM_TOK_BPE) vm_gguf_set_arr_str(w, "tokenizer.ggml.merges", v->merges, (uint64_t)v->n_merges);
    if (v->bos >= 0) vm_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)v->bos);
    if (v->eos >= 0) vm_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)v->eos);
    if (v->unk >= 0) vm_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)v->unk);
    if (v->pad >= 0) vm_gguf_set_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)v->pad);
    // without a BOS id a reader falls back to llama.cpp's default id (11 for BPE, 1 for SPM): it
    // must not be told to add a BOS that does not exist (found by fuzz_hf_json)
    vm_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", v->add_bos != 0 && v->bos >= 0);
    if (v->kind == VM_TOK_SPM) vm_gguf_set_bool(w, "tokenizer.ggml.add_space_prefix", v->add_space_prefix != 0);
    rc = 0;
done:
    free(types);
    return rc;
}

// vm_tokenize: split special tokens out of the text (llama.cpp's tokenizer_st_partition), then
// run SentencePiece merging on each text fragment with its spaces escaped to U+2581, or
// byte-level BPE (pre-tokenizer + merges, bpe.c) on each fragment.
#include "tokenizer/tok_impl.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

// A fragment: either a special token or the text [off, off+len) of the input.
typedef struct frag { int32_t token; size_t off, len; } frag;   // token -1 = text
typedef struct frags { frag *v; size_t n, cap; } frags;

static int frag_push(frags *f, frag x) {
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        frag *v = realloc(f->v, cap * sizeof *v);
        if (!v) return vm_err("tokenizer: out of memory (%zu fragments)", cap);
        f->v = v;
        f->cap = cap;
    }
    f->v[f->n++] = x;
    return 0;
}

static int is_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }   // C-locale isspace

// One special token at a time, longest first: each text fragment is cut at every (leftmost,
// non-overlapping) occurrence. USER_DEFINED tokens are always split out; CONTROL and UNKNOWN
// ones only with parse_special (llama.cpp).
// Which byte pairs (and single bytes) occur in the text: a special token with a pair that
// does not occur cannot occur either, so its search is skipped (vocabularies such as
// DeepSeek's carry thousands of user-defined tokens; the result is the same).
typedef struct pairset { uint64_t pair[65536 / 64], byte[4]; } pairset;

static int may_occur(const pairset *ps, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)s[i];
        if (!(ps->byte[c >> 6] >> (c & 63) & 1)) return 0;
        if (i + 1 < n) {
            unsigned p = (unsigned)c << 8 | (uint8_t)s[i + 1];
            if (!(ps->pair[p >> 6] >> (p & 63) & 1)) return 0;
        }
    }
    return 1;
}

static int partition(const vm_tokenizer *t, const char *text, size_t len, int parse_special, frags *f) {
    if (frag_push(f, (frag){-1, 0, len})) return -1;
    pairset *ps = t->n_special ? vm_calloc(1, sizeof *ps) : NULL;
    if (t->n_special && !ps) return -1;
    for (size_t i = 0; ps && i < len; i++) {
        uint8_t c = (uint8_t)text[i];
        ps->byte[c >> 6] |= 1ull << (c & 63);
        if (i + 1 < len) {
            unsigned p = (unsigned)c << 8 | (uint8_t)text[i + 1];
            ps->pair[p >> 6] |= 1ull << (p & 63);
        }
    }
    frags next = {0};
    for (int k = 0; k < t->n_special; k++) {
        int32_t id = t->special[k];
        uint16_t a = t->attr[id];
        if (!parse_special && (a & (VM_TATTR_CONTROL | VM_TATTR_UNKNOWN))) continue;
        const char *st = vm_tok_str(t, id);
        size_t sl = t->len[id];
        if (!may_occur(ps, st, sl)) continue;
        next.n = 0;
        for (size_t i = 0; i < f->n; i++) {
            frag x = f->v[i];
            if (x.token >= 0) { if (frag_push(&next, x)) goto fail; continue; }
            size_t base = x.off, n = x.len;
            while (n > 0) {
                const char *m = memmem(text + base, n, st, sl);
                if (!m) { if (frag_push(&next, (frag){-1, base, n})) goto fail; break; }
                size_t at = (size_t)(m - text), left = at - base;
                if (a & VM_TATTR_LSTRIP) while (left > 0 && is_space(text[base + left - 1])) left--;
                if (left > 0 && frag_push(&next, (frag){-1, base, left})) goto fail;
                if (frag_push(&next, (frag){id, 0, 0})) goto fail;
                size_t roff = at + sl, rlen = base + n - roff;
                if (a & VM_TATTR_RSTRIP) while (rlen > 0 && is_space(text[roff])) { roff++; rlen--; }
                base = roff;
                n = rlen;
            }
        }
        frags tmp = *f; *f = next; next = tmp;
    }
    free(next.v);
    free(ps);
    return 0;
fail:
    free(next.v);
    free(ps);
    return -1;
}

// Escapes spaces to U+2581, with a leading one when asked: the form SentencePiece merges on.
static char *escape(const char *s, size_t n, int prefix, size_t *out_len) {
    size_t spaces = prefix ? 1 : 0;
    for (size_t i = 0; i < n; i++) spaces += s[i] == ' ';
    size_t m = n + (prefix ? 1 : 0) + 2 * spaces;   // each space grows from 1 to 3 bytes
    char *e = vm_malloc(m ? m : 1), *p = e;
    if (!e) return NULL;
    if (prefix) { memcpy(p, "\xe2\x96\x81", 3); p += 3; }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') { memcpy(p, "\xe2\x96\x81", 3); p += 3; }
        else *p++ = s[i];
    }
    *out_len = (size_t)(p - e);
    return e;
}

int vm_tokenize(const vm_tokenizer *t, const char *text, size_t len, int add_bos, int parse_special,
                int32_t *out, int max) {
    if (!t) return vm_err("tokenizer: no tokenizer");
    if (!text && len) return vm_err("tokenizer: no text");
    if (max < 0 || (max > 0 && !out)) return vm_err("tokenizer: bad output buffer");
    if (len > (size_t)INT_MAX / 4) return vm_err("tokenizer: text too long (%zu bytes)", len);

    frags f = {0};
    vm_tok_ids ids = {0};
    int rc = -1;
    if (len > 0 && partition(t, text, len, parse_special, &f)) goto done;
    if (add_bos && t->add_bos && t->bos >= 0 && vm_tok_ids_push(&ids, t->bos)) goto done;
    // The space prefix goes on the first text fragment and on any text right after a special
    // token (llama.cpp's is_prev_special), not after BOS-less plain text.
    int prev_special = 1;
    for (size_t i = 0; i < f.n; i++) {
        if (f.v[i].token >= 0) {
            if (vm_tok_ids_push(&ids, f.v[i].token)) goto done;
            prev_special = 1;
            continue;
        }
        if (t->kind == VM_TOK_BPE) {
            if (vm_tok_bpe(t, text + f.v[i].off, f.v[i].len, &ids)) goto done;
            continue;
        }
        size_t el;
        char *e = escape(text + f.v[i].off, f.v[i].len, t->add_space_prefix && prev_special, &el);
        if (!e) goto done;
        int r = vm_tok_spm(t, e, el, &ids);
        free(e);
        if (r) goto done;
        prev_special = 0;
    }
    if (ids.n > (size_t)INT_MAX) { vm_err("tokenizer: too many tokens"); goto done; }
    if (max > 0 && ids.n) memcpy(out, ids.v, (ids.n < (size_t)max ? ids.n : (size_t)max) * sizeof *out);
    rc = (int)ids.n;
done:
    free(f.v);
    free(ids.v);
    return rc;
}

int vm_tokenize_alloc(const vm_tokenizer *t, const char *text, size_t len, int add_bos,
                      int parse_special, int32_t **out) {
    *out = NULL;
    if (len > INT_MAX / 2) return vm_err("tokenize: text of %zu bytes is too long", len);
    int max = (int)len + 8;   // SPM and BPE give at most one token per byte, plus BOS/prefix
    int32_t *ids = vm_malloc(sizeof *ids * (size_t)max);
    if (!ids) return -1;
    int n = vm_tokenize(t, text, len, add_bos, parse_special, ids, max);
    if (n > max) {   // not expected, but the contract allows it: retry with the size asked for
        int32_t *more = realloc(ids, sizeof *ids * (size_t)n);
        if (!more) { free(ids); return vm_err("tokenize: out of memory"); }
        ids = more;
        n = vm_tokenize(t, text, len, add_bos, parse_special, ids, n);
    }
    if (n < 0) { free(ids); return -1; }
    *out = ids;
    return n;
}

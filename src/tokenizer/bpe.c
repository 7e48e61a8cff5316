// Byte-level BPE (GPT-2 family): every byte of a piece is replaced by a printable stand-in
// character (GPT-2's bytes_to_unicode), then adjacent symbols are merged by the rank of their
// pair in the merge list, lowest rank first and leftmost on ties, until no listed pair is left
// (the order of Hugging Face's BPE word merging and llama.cpp's llm_tokenizer_bpe).
#include "tokenizer/tok_impl.h"

#include <stdlib.h>
#include <string.h>

#include "util/err.h"

// bytes_to_unicode: '!'..'~', U+00A1..U+00AC and U+00AE..U+00FF stand for themselves; the 68
// other bytes (0..32, 127..160, 173) take U+0100.. in byte order.
static uint32_t byte_cp(uint8_t b) {
    if (b <= 32) return 256u + b;
    if (b >= 127 && b <= 160) return 256u + 33 + (b - 127u);
    if (b == 173) return 256u + 67;
    return b;
}

int vm_bpe_byte_encode(uint8_t b, char out[2]) {
    uint32_t cp = byte_cp(b);
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

int vm_bpe_byte_decode(const char *s, size_t n, size_t *adv) {
    const uint8_t *u = (const uint8_t *)s;
    *adv = 1;
    if (u[0] < 0x80) return (u[0] > 32 && u[0] < 127) ? u[0] : -1;
    size_t k = u[0] >= 0xF0 ? 4 : u[0] >= 0xE0 ? 3 : u[0] >= 0xC0 ? 2 : 1;
    if (k > n) return -1;
    for (size_t i = 1; i < k; i++) if ((u[i] & 0xC0) != 0x80) return -1;
    *adv = k;
    if (k != 2) return -1;   // every stand-in is below U+0800
    uint32_t cp = ((u[0] & 0x1Fu) << 6) | (u[1] & 0x3Fu);
    if (cp < 256) return (cp >= 161 && cp != 173) ? (int)cp : -1;
    if (cp < 256 + 33) return (int)(cp - 256);
    if (cp < 256 + 67) return (int)(127 + cp - 256 - 33);
    if (cp == 256 + 67) return 173;
    return -1;
}

// ---- merge table: (left id, right id) -> rank and merged id ----

static uint32_t pair_hash(int32_t l, int32_t r) {
    uint64_t x = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
    x *= 0x9E3779B97F4A7C15ull;   // Fibonacci hashing: the high bits mix both ids
    return (uint32_t)(x >> 32);
}

static const vm_tok_merge *merge_find(const vm_tokenizer *t, int32_t l, int32_t r) {
    if (!t->merge_mask || l < 0 || r < 0) return NULL;
    for (uint32_t i = pair_hash(l, r) & t->merge_mask;; i = (i + 1) & t->merge_mask) {
        const vm_tok_merge *m = &t->merge[i];
        if (m->left < 0) return NULL;
        if (m->left == l && m->right == r) return m;
    }
}

int vm_tok_bpe_merges(vm_tokenizer *t, const char *const *merges, const uint32_t *lens, int n) {
    free(t->merge);
    t->merge = NULL;
    t->merge_mask = 0;
    t->n_merges = 0;
    if (n <= 0) return 0;
    if (n > (1 << 28)) return vm_err("tokenizer: too many merges (%d)", n);
    uint32_t cap = 1;
    while (cap < 2u * (uint32_t)n) cap <<= 1;
    t->merge = vm_malloc(sizeof *t->merge * cap);
    if (!t->merge) return -1;
    for (uint32_t i = 0; i < cap; i++) t->merge[i].left = -1;
    t->merge_mask = cap - 1;
    char *buf = NULL;
    size_t bcap = 0;
    for (int k = 0; k < n; k++) {
        const char *s = merges[k];
        size_t len = s ? (lens ? lens[k] : strlen(s)) : 0;
        // "left right": the separator is the first space after the first byte (llama.cpp)
        const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
        if (!sp) {   // (the merge-text buffer leaked here: found by fuzz_hf_json)
            free(buf);
            return vm_err("tokenizer: merge %d ('%.*s') is not 'left right'", k, (int)(len < 40 ? len : 40), s ? s : "");
        }
        size_t ll = (size_t)(sp - s), rl = len - ll - 1;
        int32_t l = vm_tok_lookup(t, s, ll), r = vm_tok_lookup(t, sp + 1, rl);
        if (l < 0 || r < 0) continue;   // a side that is no token can never be formed
        if (ll + rl > bcap) {
            char *nb = realloc(buf, bcap = 2 * (ll + rl));
            if (!nb) { free(buf); return vm_err("tokenizer: out of memory (merge text)"); }
            buf = nb;
        }
        memcpy(buf, s, ll);
        memcpy(buf + ll, sp + 1, rl);
        int32_t res = vm_tok_lookup(t, buf, ll + rl);
        for (uint32_t i = pair_hash(l, r) & t->merge_mask;; i = (i + 1) & t->merge_mask) {
            vm_tok_merge *m = &t->merge[i];
            if (m->left == l && m->right == r) break;   // a repeated pair keeps its first (best) rank
            if (m->left < 0) { *m = (vm_tok_merge){l, r, k, res}; t->n_merges++; break; }
        }
    }
    free(buf);
    return 0;
}

// ---- merging one piece ----

// A run of the encoded piece enc[off, off+n) with its token id (-1 when it is none);
// merged-away symbols keep n = 0.
typedef struct sym { int32_t prev, next; uint32_t off, n; int32_t id; } sym;
// Lower merge rank first: queued with prio = -rank.
static int try_pair(const vm_tokenizer *t, const sym *s, vm_tok_heap *h, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return 0;
    const vm_tok_merge *m = merge_find(t, s[l].id, s[r].id);
    if (!m) return 0;
    return vm_tok_heap_push(h, (vm_tok_cand){-(double)m->rank, l, r, s[l].id, s[r].id});
}

// Emits the ids of a symbol that is no token: its characters one by one, <unk> for those that
// are not tokens either, nothing when there is no <unk> (as Hugging Face without unk_token).
static int emit_chars(const vm_tokenizer *t, const char *s, size_t n, vm_tok_ids *out) {
    for (size_t i = 0; i < n;) {
        size_t k = 1;
        vm_bpe_byte_decode(s + i, n - i, &k);
        int32_t id = vm_tok_lookup(t, s + i, k);
        if (id < 0) id = t->unk;
        if (id >= 0 && vm_tok_ids_push(out, id)) return -1;
        i += k;
    }
    return 0;
}

static int bpe_piece(const vm_tokenizer *t, const char *enc, size_t len, sym *s, vm_tok_heap *h, vm_tok_ids *out) {
    if (t->ignore_merges) {
        int32_t id = vm_tok_lookup(t, enc, len);
        if (id >= 0) return vm_tok_ids_push(out, id);
    }
    int32_t ns = 0;
    for (size_t off = 0; off < len;) {
        size_t k;
        vm_bpe_byte_decode(enc + off, len - off, &k);   // one stand-in character
        s[ns] = (sym){ns - 1, -1, (uint32_t)off, (uint32_t)k, vm_tok_lookup(t, enc + off, k)};
        if (ns > 0) s[ns - 1].next = ns;
        ns++;
        off += k;
    }
    h->n = 0;
    for (int32_t i = 1; i < ns; i++)
        if (try_pair(t, s, h, i - 1, i)) return -1;
    while (h->n) {
        vm_tok_cand c = vm_tok_heap_pop(h);
        sym *l = &s[c.left], *r = &s[c.right];
        // stale: a side was merged away or changed since this pair was queued
        if (l->n == 0 || r->n == 0 || l->next != c.right || l->id != c.a || r->id != c.b) continue;
        const vm_tok_merge *m = merge_find(t, l->id, r->id);
        l->n += r->n;
        l->id = m ? m->result : -1;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) s[r->next].prev = c.left;
        if (try_pair(t, s, h, l->prev, c.left) || try_pair(t, s, h, c.left, l->next)) return -1;
    }
    for (int32_t i = 0; i != -1 && ns > 0; i = s[i].next) {
        if (s[i].id >= 0) { if (vm_tok_ids_push(out, s[i].id)) return -1; }
        else if (emit_chars(t, enc + s[i].off, s[i].n, out)) return -1;
    }
    return 0;
}

int vm_tok_bpe(const vm_tokenizer *t, const char *text, size_t len, vm_tok_ids *out) {
    if (len == 0) return 0;
    if (!t->pre) return vm_err("tokenizer: BPE vocabulary without a pre-tokenizer");
    if (len > (size_t)INT32_MAX / 2) return vm_err("tokenizer: text fragment too long (%zu bytes)", len);
    vm_tok_spans sp = {0};
    vm_tok_heap h = {0};
    char *enc = NULL;
    sym *s = NULL;
    int rc = -1;
    if (vm_pretok_split(t->pre, text, len, &sp)) goto done;
    size_t maxl = 0;
    for (size_t i = 0; i < sp.n; i++) if (sp.v[i].len > maxl) maxl = sp.v[i].len;
    enc = vm_malloc(2 * maxl + 1);
    s = vm_malloc(sizeof *s * (maxl + 1));
    if (!enc || !s) goto done;
    for (size_t i = 0; i < sp.n; i++) {
        size_t el = 0;
        for (size_t j = 0; j < sp.v[i].len; j++) el += (size_t)vm_bpe_byte_encode((uint8_t)text[sp.v[i].off + j], enc + el);
        if (bpe_piece(t, enc, el, s, &h, out)) goto done;
    }
    rc = 0;
done:
    free(sp.v);
    free(h.v);
    free(enc);
    free(s);
    return rc;
}

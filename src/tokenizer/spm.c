// SentencePiece-style merging (llama.cpp's llm_tokenizer_spm): split the fragment into UTF-8
// characters, then repeatedly merge the adjacent pair whose concatenation is a vocabulary token
// with the highest score (leftmost on ties), using a heap of candidate pairs: O(n log n).
// Whatever is left that is not a token falls back to byte tokens.
#include "tokenizer/tok_impl.h"

#include <stdlib.h>

#include "util/err.h"

// A run of text[off, off+n); merged-away symbols keep n = 0. prev/next link the live ones.
typedef struct sym { int32_t prev, next; uint32_t off, n; } sym;
// A candidate merge of symbols l and r by the merged token's score, valid while their sizes
// still add up to the queued size.
static int try_add(const vm_tokenizer *t, const char *text, const sym *s, vm_tok_heap *h, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return 0;
    uint32_t size = s[l].n + s[r].n;
    int32_t id = vm_tok_lookup(t, text + s[l].off, size);
    if (id < 0) return 0;
    return vm_tok_heap_push(h, (vm_tok_cand){t->score[id], l, r, (int32_t)size, 0});
}

// Utf-8 sequence length from the lead byte; stray continuation bytes count as one byte, so
// invalid input still splits into symbols (which then fall back to bytes).
static uint32_t utf8_len(uint8_t c) {
    static const uint8_t lens[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lens[c >> 4];
}

int vm_tok_spm(const vm_tokenizer *t, const char *text, size_t len, vm_tok_ids *out) {
    if (len == 0) return 0;
    if (len > (size_t)INT32_MAX) return vm_err("tokenizer: text fragment too long (%zu bytes)", len);
    sym *s = malloc(len * sizeof *s);   // at most one symbol per byte
    vm_tok_heap h = {0};
    int rc = -1;
    if (!s) { vm_err("tokenizer: out of memory (%zu symbols)", len); goto done; }
    int32_t ns = 0;
    for (size_t off = 0; off < len;) {
        uint32_t n = utf8_len((uint8_t)text[off]);
        if (n > len - off) n = (uint32_t)(len - off);
        s[ns] = (sym){ns - 1, -1, (uint32_t)off, n};
        if (ns > 0) s[ns - 1].next = ns;
        ns++;
        off += n;
    }
    for (int32_t i = 1; i < ns; i++)
        if (try_add(t, text, s, &h, i - 1, i)) goto done;

    while (h.n) {
        vm_tok_cand b = vm_tok_heap_pop(&h);
        sym *l = &s[b.left], *r = &s[b.right];
        // stale: one side was merged away or grew since this pair was queued
        if (l->n == 0 || r->n == 0 || l->next != b.right || l->n + r->n != (uint32_t)b.a) continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) s[r->next].prev = b.left;
        if (try_add(t, text, s, &h, l->prev, b.left) || try_add(t, text, s, &h, b.left, l->next)) goto done;
    }

    // Every merged symbol is a vocabulary token by construction; a single character that is
    // not becomes its bytes (byte fallback; <unk> when the vocabulary has no such byte token).
    for (int32_t i = 0; i != -1; i = s[i].next) {
        int32_t id = vm_tok_lookup(t, text + s[i].off, s[i].n);
        if (id >= 0) {
            if (vm_tok_ids_push(out, id)) goto done;
            continue;
        }
        for (uint32_t k = 0; k < s[i].n; k++) {
            int32_t bid = t->byte_tok[(uint8_t)text[s[i].off + k]];
            if (bid < 0) bid = t->unk;
            if (bid < 0) {
                vm_err("tokenizer: byte 0x%02X has no token and the vocabulary has no <unk>",
                       (unsigned)(uint8_t)text[s[i].off + k]);
                goto done;
            }
            if (vm_tok_ids_push(out, bid)) goto done;
        }
    }
    rc = 0;
done:
    free(s);
    free(h.v);
    return rc;
}

// The binary heap of candidate merges used by both the SPM and the BPE tokenizer.
#include "tokenizer/tok_impl.h"

#include <stdlib.h>

#include "util/err.h"

static int before(const vm_tok_cand *x, const vm_tok_cand *y) {
    return x->prio > y->prio || (x->prio == y->prio && x->left < y->left);
}

int vm_tok_heap_push(vm_tok_heap *h, vm_tok_cand c) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        vm_tok_cand *v = realloc(h->v, cap * sizeof *v);
        if (!v) return vm_err("tokenizer: out of memory (merge queue of %zu)", cap);
        h->v = v;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!before(&c, &h->v[p])) break;
        h->v[i] = h->v[p];
        i = p;
    }
    h->v[i] = c;
    return 0;
}

vm_tok_cand vm_tok_heap_pop(vm_tok_heap *h) {
    vm_tok_cand top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && before(&h->v[c + 1], &h->v[c])) c++;
        if (!before(&h->v[c], &last)) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n) h->v[i] = last;
    return top;
}

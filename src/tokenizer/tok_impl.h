// Private to src/tokenizer/: the tokenizer object and the pieces shared by its files.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include "tokenizer/tokenizer.h"

// Attribute bits (llama.cpp's token attributes): token types map to one bit; LSTRIP/RSTRIP
// say whether whitespace next to a special token is swallowed when it is split out.
enum {
    VM_TATTR_NORMAL = 1 << 0, VM_TATTR_UNKNOWN = 1 << 1, VM_TATTR_CONTROL = 1 << 2,
    VM_TATTR_USER_DEFINED = 1 << 3, VM_TATTR_UNUSED = 1 << 4, VM_TATTR_BYTE = 1 << 5,
    VM_TATTR_LSTRIP = 1 << 6, VM_TATTR_RSTRIP = 1 << 7,
};

struct vm_tokenizer {
    vm_tok_kind kind;
    int n;
    char *arena;              // every token text, each NUL-terminated
    size_t *off;              // (n) text of id i = arena + off[i]
    uint32_t *len;            // (n) its length in bytes
    float *score;             // (n)
    uint8_t *type;            // (n) vm_token_attr as given by the vocabulary
    uint16_t *attr;           // (n) VM_TATTR_* bits
    uint32_t *table;          // open addressing: text -> id + 1 (0 = empty slot)
    uint32_t mask;            // table size - 1 (power of two)
    int32_t bos, eos, unk, pad;
    int add_bos, add_space_prefix;
    int32_t byte_tok[256];    // byte fallback: <0xXX> (or the 1-byte token), -1 when none
    int32_t *special;         // CONTROL/USER_DEFINED/UNKNOWN ids, longest text first
    int n_special;
    // byte-level BPE (kind VM_TOK_BPE)
    struct vm_pretok *pre;    // pre-tokenizer (regex family)
    struct vm_tok_merge *merge;   // open addressing: (left id, right id) -> rank, result id
    uint32_t merge_mask;      // table size - 1 (power of two); 0 when there is no table
    int n_merges;             // merges in the table (those whose both sides are tokens)
    int ignore_merges;        // a piece that is a whole token is emitted as is (Llama 3)
};

// Growable id list.
typedef struct vm_tok_ids { int32_t *v; size_t n, cap; } vm_tok_ids;
int vm_tok_ids_push(vm_tok_ids *ids, int32_t id);

static inline const char *vm_tok_str(const vm_tokenizer *t, int32_t id) { return t->arena + t->off[id]; }
int32_t vm_tok_lookup(const vm_tokenizer *t, const char *s, size_t n);   // -1 when absent

// SentencePiece-style merging of one fragment that is already escaped (spaces -> U+2581,
// space prefix added); appends the ids. 0 or -1.
int vm_tok_spm(const vm_tokenizer *t, const char *text, size_t len, vm_tok_ids *out);

// ---- byte-level BPE (pretok.c, bpe.c) ----

// A piece of the input: text[off, off+len); raw = bytes that are not well-formed UTF-8.
typedef struct vm_tok_span { size_t off, len; int raw; } vm_tok_span;
typedef struct vm_tok_spans { vm_tok_span *v; size_t n, cap; } vm_tok_spans;

typedef struct vm_pretok vm_pretok;
// Pre-tokenizer family by its tokenizer.ggml.pre name (NULL or "" = llama.cpp's "default");
// NULL with an error naming it when unknown.
vm_pretok *vm_pretok_init(const char *name);
void vm_pretok_free(vm_pretok *p);
int vm_pretok_known(const char *name);
int vm_pretok_default_add_bos(const char *name);
const char *vm_pretok_name(const vm_pretok *p);     // canonical family name
int vm_pretok_ignore_merges(const vm_pretok *p);    // family defaults (llama.cpp)
int vm_pretok_add_bos(const vm_pretok *p);
// Appends the pieces of text[0, len) to out, in order, covering every byte. 0 or -1.
// Family of a Hugging Face pre_tokenizer given as steps ("bytelevel:1", "split:<regex>", ...,
// see pretok.c); NULL when none matches.
const char *vm_pretok_from_hf(const char *const *steps, int n);
int vm_pretok_split(const vm_pretok *p, const char *text, size_t len, vm_tok_spans *out);

typedef struct vm_tok_merge { int32_t left, right, rank, result; } vm_tok_merge;   // left -1 = empty

// GPT-2's byte <-> printable character map: writes the UTF-8 of byte b's stand-in (1 or 2
// bytes) and returns its length.
int vm_bpe_byte_encode(uint8_t b, char out[2]);
// Decodes the character at s (n bytes left): returns the byte it stands for, or -1 when it
// is no stand-in; *adv = the character's length in bytes (>= 1).
int vm_bpe_byte_decode(const char *s, size_t n, size_t *adv);
// Builds t->merge from "left right" strings (rank = index). 0 or -1.
int vm_tok_bpe_merges(vm_tokenizer *t, const char *const *merges, const uint32_t *lens, int n);
// Pre-tokenizes one text fragment (no special tokens in it) and appends its BPE ids.
int vm_tok_bpe(const vm_tokenizer *t, const char *text, size_t len, vm_tok_ids *out);

// Merge queue shared by SPM and BPE: candidate merges of adjacent symbols, popped by prio (higher
// first), ties by left (leftmost first). a and b are what the caller needs to tell whether the pair
// is still current when it is popped (SPM: the merged size; BPE: the two token ids).
typedef struct vm_tok_cand { double prio; int32_t left, right, a, b; } vm_tok_cand;
typedef struct vm_tok_heap { vm_tok_cand *v; size_t n, cap; } vm_tok_heap;
int vm_tok_heap_push(vm_tok_heap *h, vm_tok_cand c);
vm_tok_cand vm_tok_heap_pop(vm_tok_heap *h);   // h->n must be > 0

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
};

// Growable id list.
typedef struct vm_tok_ids { int32_t *v; size_t n, cap; } vm_tok_ids;
int vm_tok_ids_push(vm_tok_ids *ids, int32_t id);

static inline const char *vm_tok_str(const vm_tokenizer *t, int32_t id) { return t->arena + t->off[id]; }
int32_t vm_tok_lookup(const vm_tokenizer *t, const char *s, size_t n);   // -1 when absent

// SentencePiece-style merging of one fragment that is already escaped (spaces -> U+2581,
// space prefix added); appends the ids. 0 or -1.
int vm_tok_spm(const vm_tokenizer *t, const char *text, size_t len, vm_tok_ids *out);

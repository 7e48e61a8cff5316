// Tokenizers from GGUF vocabularies: SentencePiece-style (tokenizer.ggml.model = "llama") with
// byte fallback and special tokens; byte-level BPE ("gpt2") arrives with its issue.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include "gguf/gguf.h"

typedef enum vm_token_attr {  // tokenizer.ggml.token_type values
    VM_TOKEN_TYPE_UNDEFINED = 0, VM_TOKEN_TYPE_NORMAL = 1, VM_TOKEN_TYPE_UNKNOWN = 2,
    VM_TOKEN_TYPE_CONTROL = 3, VM_TOKEN_TYPE_USER_DEFINED = 4, VM_TOKEN_TYPE_UNUSED = 5,
    VM_TOKEN_TYPE_BYTE = 6
} vm_token_attr;

typedef enum vm_tok_kind { VM_TOK_SPM = 0, VM_TOK_BPE = 1 } vm_tok_kind;

typedef struct vm_tokenizer vm_tokenizer;

vm_tokenizer *vm_tokenizer_from_gguf(const vm_gguf *g);
void vm_tokenizer_free(vm_tokenizer *t);

// Tokenises len bytes of text. add_bos: prepend BOS if the vocabulary says so (add_bos_token,
// default true for SPM). parse_special: control/user-defined token texts in the input become
// those tokens. Returns the number of tokens (if > max, only max were written: call again with
// more room), or -1 on error.
int vm_tokenize(const vm_tokenizer *t, const char *text, size_t len, int add_bos, int parse_special,
                int32_t *out, int max);
// The bytes a token stands for (byte tokens -> their byte, U+2581 -> space); returns the length
// (written up to size), or -1 for an id out of range.
int vm_token_to_piece(const vm_tokenizer *t, int32_t id, char *buf, int size);

int vm_tokenizer_n_vocab(const vm_tokenizer *t);
int32_t vm_tokenizer_bos(const vm_tokenizer *t);   // -1 when none
int32_t vm_tokenizer_eos(const vm_tokenizer *t);
vm_tok_kind vm_tokenizer_kind(const vm_tokenizer *t);
const char *vm_tokenizer_text(const vm_tokenizer *t, int32_t id);   // raw vocabulary entry (NUL-terminated)

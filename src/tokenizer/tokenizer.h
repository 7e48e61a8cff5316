// Tokenizers from GGUF vocabularies: SentencePiece-style (tokenizer.ggml.model = "llama") with
// byte fallback and special tokens, and byte-level BPE ("gpt2") with llama.cpp's pre-tokenizer
// families (tokenizer.ggml.pre); Hugging Face tokenizer.json import for converters.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include "gguf/gguf.h"
#include "vmoer.h"   // the public declarations of some of these (exported from libvmoer.so)

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
// default true for SPM). parse_special: control/unknown token texts in the input become those
// tokens (user-defined ones always do, as in llama.cpp). Never adds EOS. Thread-safe.
// Returns the number of tokens (if > max, only max were written: call again with more room),
// or -1 on error.
int vm_tokenize(const vm_tokenizer *t, const char *text, size_t len, int add_bos, int parse_special,
                int32_t *out, int max);
// As vm_tokenize, into a malloc'd array of exactly the needed size (*out; free() it).
// Returns the token count or -1.
int vm_tokenize_alloc(const vm_tokenizer *t, const char *text, size_t len, int add_bos,
                      int parse_special, int32_t **out);
// The bytes a token stands for (byte tokens -> their byte, U+2581 -> space); returns the length
// (written up to size), or -1 for an id out of range.
int vm_token_to_piece(const vm_tokenizer *t, int32_t id, char *buf, int size);

int vm_tokenizer_n_vocab(const vm_tokenizer *t);
int32_t vm_tokenizer_bos(const vm_tokenizer *t);   // -1 when none
int32_t vm_tokenizer_eos(const vm_tokenizer *t);
vm_tok_kind vm_tokenizer_kind(const vm_tokenizer *t);
const char *vm_tokenizer_text(const vm_tokenizer *t, int32_t id);   // raw vocabulary entry (NUL-terminated)

// ---- additions (tok) ----

// A vocabulary held in memory (tests, converters). Texts are copied; lens may be NULL when every
// text is NUL-terminated; scores NULL = all 0; types NULL = all NORMAL. Ids are -1 when absent.
// An empty text becomes "[EMPTY_<id>]" and a repeated text maps to its last id (as llama.cpp).
typedef struct vm_tok_vocab {
    vm_tok_kind kind;
    int n_tokens;
    const char *const *texts;
    const uint32_t *lens;
    const float *scores;
    const int32_t *types;          // vm_token_attr values
    int32_t bos, eos, unk, pad;
    int add_bos;                   // tokenizer.ggml.add_bos_token
    int add_space_prefix;          // tokenizer.ggml.add_space_prefix (SPM only)
    // byte-level BPE (kind VM_TOK_BPE, tokenizer.ggml.model "gpt2"): texts are byte-encoded
    // (GPT-2's bytes_to_unicode) except USER_DEFINED/CONTROL ones, which are raw text.
    const char *pre;               // pre-tokenizer family, tokenizer.ggml.pre; NULL or "" = "default"
    const char *const *merges;     // n_merges "left right" strings, best (lowest rank) first
    const uint32_t *merge_lens;    // NULL when every merge is NUL-terminated
    int n_merges;
    int ignore_merges;             // a piece that is a whole token stays one (on anyway for llama-bpe)
} vm_tok_vocab;

vm_tokenizer *vm_tokenizer_from_vocab(const vm_tok_vocab *v);

// vm_token_to_piece with a choice for CONTROL/UNKNOWN tokens: special=0 -> empty piece (as
// vm_token_to_piece), special=1 -> their raw text.
int vm_token_to_piece_ex(const vm_tokenizer *t, int32_t id, char *buf, int size, int special);
// Concatenated pieces of n ids (the first piece loses one leading space when the vocabulary
// adds a space prefix, as llama.cpp's detokenizer). Returns the full length (written up to
// size, always NUL-terminated when size > 0), or -1 for an id out of range.
int vm_detokenize(const vm_tokenizer *t, const int32_t *ids, int n, char *buf, int size, int special);

int32_t vm_tokenizer_unk(const vm_tokenizer *t);       // -1 when none
int32_t vm_tokenizer_pad(const vm_tokenizer *t);       // -1 when none
int vm_tokenizer_add_bos(const vm_tokenizer *t);       // whether vm_tokenize(add_bos=1) adds BOS
int vm_tokenizer_add_space_prefix(const vm_tokenizer *t);
vm_token_attr vm_tokenizer_type(const vm_tokenizer *t, int32_t id);   // UNDEFINED for bad ids
float vm_tokenizer_score(const vm_tokenizer *t, int32_t id);          // 0 for bad ids
int32_t vm_tokenizer_find(const vm_tokenizer *t, const char *text, size_t len);   // exact text -> id, -1

// ---- Hugging Face tokenizer.json (hf_json.c) ----

// A byte-level BPE vocabulary read from tokenizer.json; v points into the storage below.
// Added tokens: CONTROL when special (or <|...|>-shaped), else USER_DEFINED, raw text; ids no
// entry names: "[PAD<id>]" UNUSED. bos/eos/unk/pad and add_bos come from tokenizer_config.json
// in the same folder when present (else eos/bos are guessed from well-known texts, -1 when
// none): converters may override them from config.json. v.ignore_merges = model.ignore_merges.
// The NFC normalizer of some files is not applied (llama.cpp does not either).
typedef struct vm_hf_vocab {
    vm_tok_vocab v;
    char pre[32];                 // pre-tokenizer family matched from pre_tokenizer
    int n_merges;
    char **texts_own, **merges_own;
    uint32_t *lens_own, *mlens_own;
    int32_t *types_own;
} vm_hf_vocab;

// Reads tokenizer.json (model.type BPE, merges as "a b" or [a, b]); 0, or -1 with the reason
// (not BPE, byte_fallback, an unsupported pre_tokenizer shown step by step, bad entries).
int vm_hf_vocab_read(const char *path, vm_hf_vocab *out);
void vm_hf_vocab_free(vm_hf_vocab *h);
vm_tokenizer *vm_tokenizer_from_hf_json(const char *path);
// Writes the GGUF tokenizer keys of a vocabulary: tokenizer.ggml.model ("gpt2"/"llama"), pre,
// tokens, token_type, scores (when given), merges (BPE), bos/eos/unknown/padding ids (when
// >= 0), add_bos_token (and add_space_prefix for SPM). 0 or -1 (e.g. a NUL inside a token).
int vm_tok_vocab_to_gguf(const vm_tok_vocab *v, vm_gguf_writer *w);

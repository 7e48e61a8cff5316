// libFuzzer target: the SentencePiece tokenizer of a real vocabulary (../shared/tokenizers,
// llama-spm or phi-3; $VMOER_SHARED moves the folder) on arbitrary text. First byte: bit 0 add_bos,
// bit 1 parse_special, bit 2 special pieces when detokenizing, bit 3 phi-3 instead of llama-spm.
// Besides "no crash", checks the SPM round trip: valid UTF-8 without special parsing detokenizes
// back to the same bytes (llama.cpp's behaviour with byte fallback); exceptions below.
#include "fuzz_common.h"
#include "data/dataset.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"
#include "util/err.h"

static vm_gguf *g_[2];
static vm_tokenizer *t_[2];

static vm_tokenizer *load(int i, const char *file) {
    const char *dir = getenv("VMOER_SHARED");
    char path[1024];
    snprintf(path, sizeof path, "%s/tokenizers/%s", dir && *dir ? dir : "../shared", file);
    if (!(g_[i] = vm_gguf_open(path)) || !(t_[i] = vm_tokenizer_from_gguf(g_[i]))) {
        fprintf(stderr, "fuzz_tokenizer: cannot load %s: %s\n", path, vm_errmsg());
        exit(1);
    }
    return t_[i];
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    load(0, "ggml-vocab-llama-spm.gguf");
    load(1, "ggml-vocab-phi-3.gguf");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int add_bos = data[0] & 1, parse_special = (data[0] >> 1) & 1, special = (data[0] >> 2) & 1;
    const vm_tokenizer *t = t_[(data[0] >> 3) & 1];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    int V = vm_tokenizer_n_vocab(t);

    // too small an output first: the count must still be the full one
    int32_t small[4];
    int n = vm_tokenize(t, text, len, add_bos, parse_special, small, 4);
    FUZZ_ASSERT(n >= 0);
    int32_t *ids = malloc(((size_t)n + 1) * sizeof *ids);
    FUZZ_ASSERT(ids);
    int n2 = vm_tokenize(t, text, len, add_bos, parse_special, ids, n);
    FUZZ_ASSERT(n2 == n);
    for (int i = 0; i < n && i < 4; i++) FUZZ_ASSERT(ids[i] == small[i]);
    for (int i = 0; i < n; i++) FUZZ_ASSERT(ids[i] >= 0 && ids[i] < V);

    int need = vm_detokenize(t, ids, n, NULL, 0, special);
    FUZZ_ASSERT(need >= 0);
    char *out = malloc((size_t)need + 1);
    FUZZ_ASSERT(out);
    FUZZ_ASSERT(vm_detokenize(t, ids, n, out, need + 1, special) == need && out[need] == 0);
    // Not checked: U+2581 in the input (SentencePiece's own space mark, comes back as ' '), and
    // texts holding user-defined tokens (always parsed; phi-3's strip the whitespace after them
    // and put a space prefix on the next fragment, as llama.cpp does).
    int plain = 1;
    for (int i = 0; i < n; i++) plain &= vm_tokenizer_type(t, ids[i]) == VM_TOKEN_TYPE_NORMAL ||
                                         vm_tokenizer_type(t, ids[i]) == VM_TOKEN_TYPE_BYTE;
    if (plain && !parse_special && !add_bos && len && vm_dataset_utf8_check(text, len) == len &&
        !memmem(text, len, "\xe2\x96\x81", 3)) {
        if ((size_t)need != len || memcmp(out, text, len) != 0) {
            fprintf(stderr, "round trip: %zu bytes in, %d out: '%.*s' -> '%s'\n", len, need, (int)len, text, out);
            FUZZ_ASSERT(!"SPM round trip");
        }
    }
    // truncated detokenize buffers stay NUL-terminated
    char tiny[3];
    FUZZ_ASSERT(vm_detokenize(t, ids, n, tiny, sizeof tiny, special) == need && memchr(tiny, 0, sizeof tiny));

    // pieces of ids taken from the input bytes, in and out of range
    for (size_t i = 0; i + 2 <= len && i < 16; i += 2) {
        int32_t id = (int32_t)((uint8_t)text[i] | (uint8_t)text[i + 1] << 8) - 256;
        char buf[8];
        int r = vm_token_to_piece_ex(t, id, buf, sizeof buf, special);
        FUZZ_ASSERT((id < 0 || id >= V) ? r == -1 : r >= 0);
    }
    free(ids);
    free(out);
    vm_err_clear();
    return 0;
}

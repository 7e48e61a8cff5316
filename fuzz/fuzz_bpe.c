// libFuzzer target: the byte-level BPE tokenizer of two real vocabularies (../shared/tokenizers,
// gpt-2 and deepseek-llm, whose pre-tokenizers differ; $VMOER_SHARED moves the folder) on
// arbitrary text. First byte: bit 0 add_bos, bit 1 parse_special, bit 2 special pieces when
// detokenizing, bit 3 deepseek-llm instead of gpt-2.
// Besides "no crash": counts agree between a short and a full output buffer, ids are in range,
// detokenize is consistent with its own length, and byte-level BPE round-trips valid UTF-8
// exactly when no special token was produced (every byte has a token; nothing is normalised).
#include "fuzz_common.h"
#include "data/dataset.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"
#include "util/err.h"

static vm_gguf *bpe_g_[2];
static vm_tokenizer *bpe_t_[2];

static void bpe_load(int i, const char *file) {
    const char *dir = getenv("VMOER_SHARED");
    char path[1024];
    snprintf(path, sizeof path, "%s/tokenizers/%s", dir && *dir ? dir : "../shared", file);
    if (!(bpe_g_[i] = vm_gguf_open(path)) || !(bpe_t_[i] = vm_tokenizer_from_gguf(bpe_g_[i]))) {
        fprintf(stderr, "fuzz_bpe: cannot load %s: %s\n", path, vm_errmsg());
        exit(1);
    }
    FUZZ_ASSERT(vm_tokenizer_kind(bpe_t_[i]) == VM_TOK_BPE);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    bpe_load(0, "ggml-vocab-gpt-2.gguf");
    bpe_load(1, "ggml-vocab-deepseek-llm.gguf");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int add_bos = data[0] & 1, parse_special = (data[0] >> 1) & 1, special = (data[0] >> 2) & 1;
    const vm_tokenizer *t = bpe_t_[(data[0] >> 3) & 1];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    int V = vm_tokenizer_n_vocab(t);

    int32_t small[4];
    int n = vm_tokenize(t, text, len, add_bos, parse_special, small, 4);
    FUZZ_ASSERT(n >= 0);
    int32_t *ids = malloc(((size_t)n + 1) * sizeof *ids);
    FUZZ_ASSERT(ids);
    int n2 = vm_tokenize(t, text, len, add_bos, parse_special, ids, n);
    FUZZ_ASSERT(n2 == n);
    for (int i = 0; i < n && i < 4; i++) FUZZ_ASSERT(ids[i] == small[i]);
    for (int i = 0; i < n; i++) FUZZ_ASSERT(ids[i] >= 0 && ids[i] < V);
    if (len == 0) FUZZ_ASSERT(n == (add_bos && vm_tokenizer_add_bos(t) && vm_tokenizer_bos(t) >= 0));

    int need = vm_detokenize(t, ids, n, NULL, 0, special);
    FUZZ_ASSERT(need >= 0);
    char *out = malloc((size_t)need + 1);
    FUZZ_ASSERT(out);
    FUZZ_ASSERT(vm_detokenize(t, ids, n, out, need + 1, special) == need && out[need] == 0);
    int plain = 1;
    for (int i = 0; i < n; i++) plain &= vm_tokenizer_type(t, ids[i]) == VM_TOKEN_TYPE_NORMAL;
    if (plain && !add_bos && vm_dataset_utf8_check(text, len) == len) {
        if ((size_t)need != len || memcmp(out, text, len) != 0) {
            fprintf(stderr, "round trip: %zu bytes in, %d out: '%.*s' -> '%s'\n", len, need, (int)len, text, out);
            FUZZ_ASSERT(!"BPE round trip");
        }
    }
    char tiny[3];
    FUZZ_ASSERT(vm_detokenize(t, ids, n, tiny, sizeof tiny, special) == need && memchr(tiny, 0, sizeof tiny));

    // the concatenated pieces are the detokenized text (BPE adds no space prefix)
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        char buf[256];
        int r = vm_token_to_piece_ex(t, ids[i], buf, sizeof buf, special);
        FUZZ_ASSERT(r >= 0 && (size_t)r <= sizeof buf && o + (size_t)r <= (size_t)need);
        FUZZ_ASSERT(memcmp(out + o, buf, (size_t)r) == 0);
        o += (size_t)r;
    }
    FUZZ_ASSERT(o == (size_t)need);

    // pieces of ids taken from the input bytes, in and out of range
    for (size_t i = 0; i + 3 <= len && i < 24; i += 3) {
        int32_t id = (int32_t)((uint8_t)text[i] | (uint8_t)text[i + 1] << 8 | (uint8_t)text[i + 2] << 16) - 1024;
        char buf[8];
        int r = vm_token_to_piece_ex(t, id, buf, sizeof buf, special);
        FUZZ_ASSERT((id < 0 || id >= V) ? r == -1 : r >= 0);
        if (id >= 0 && id < V) FUZZ_ASSERT(vm_tokenizer_text(t, id) != NULL);
    }
    free(ids);
    free(out);
    vm_err_clear();
    return 0;
}

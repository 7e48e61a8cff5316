// libFuzzer target: the Hugging Face tokenizer.json reader (vm_hf_vocab_read) and what a
// converter does with its result. Parts separated by FUZZ_SEP: tokenizer.json, then optionally
// tokenizer_config.json (written next to it, where the reader looks), then a text to tokenize.
// A vocabulary that reads must satisfy tokenizer.h (texts for every id, special ids in range, a
// known pre-tokenizer); when it also builds a tokenizer, the text tokenizes to ids in range, and
// when it converts to GGUF keys, the written GGUF loads back as a tokenizer of the same size
// that tokenizes the text the same way (unless model.ignore_merges, which GGUF cannot carry,
// differs from the family's default).
#include "fuzz_common.h"
#include "gguf/gguf.h"
#include "tokenizer/tok_impl.h"
#include "tokenizer/tokenizer.h"
#include "util/err.h"

static int hj_tokenize(const vm_tokenizer *t, const char *text, size_t len, int32_t **ids) {
    int n = vm_tokenize(t, text, len, 1, 1, NULL, 0);
    *ids = NULL;
    if (n < 0) return n;
    *ids = malloc(((size_t)n + 1) * sizeof **ids);
    FUZZ_ASSERT(*ids);
    FUZZ_ASSERT(vm_tokenize(t, text, len, 1, 1, *ids, n) == n);
    int V = vm_tokenizer_n_vocab(t);
    for (int i = 0; i < n; i++) FUZZ_ASSERT((*ids)[i] >= 0 && (*ids)[i] < V);
    int need = vm_detokenize(t, *ids, n, NULL, 0, 1);
    FUZZ_ASSERT(need >= 0);
    char *out = malloc((size_t)need + 1);
    FUZZ_ASSERT(out && vm_detokenize(t, *ids, n, out, need + 1, 1) == need);
    free(out);
    return n;
}

static void hj_check_vocab(const vm_hf_vocab *h) {
    const vm_tok_vocab *v = &h->v;
    FUZZ_ASSERT(v->kind == VM_TOK_BPE && v->n_tokens > 0 && v->texts && v->lens && v->types);
    for (int i = 0; i < v->n_tokens; i++) {
        FUZZ_ASSERT(v->texts[i]);
        FUZZ_ASSERT(v->types[i] >= VM_TOKEN_TYPE_NORMAL && v->types[i] <= VM_TOKEN_TYPE_BYTE);
    }
    FUZZ_ASSERT(v->n_merges >= 0 && (v->n_merges == 0 || v->merges));
    for (int i = 0; i < v->n_merges; i++) FUZZ_ASSERT(v->merges[i] && strlen(v->merges[i]) <= v->merge_lens[i]);
    int32_t sid[4] = {v->bos, v->eos, v->unk, v->pad};
    for (int k = 0; k < 4; k++) FUZZ_ASSERT(sid[k] >= -1 && sid[k] < v->n_tokens);
    FUZZ_ASSERT(vm_pretok_known(v->pre));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *part[3];
    size_t len[3];
    int np = fuzz_split(data, size, part, len, 3);
    char dir[300], tj[512], tc[512], gg[512];
    if (fuzz_tmp_dir(dir, sizeof dir, "hfjson")) return 0;
    fuzz_join(tj, sizeof tj, dir, "tokenizer.json");
    fuzz_join(tc, sizeof tc, dir, "tokenizer_config.json");
    fuzz_join(gg, sizeof gg, dir, "vocab.gguf");
    remove(tc);
    if (fuzz_write_file(tj, part[0], len[0])) return 0;
    if (np > 1 && fuzz_write_file(tc, part[1], len[1])) return 0;
    const char *text = np > 2 ? (const char *)part[2] : "Hello world! <|endoftext|> 123 \xe4\xbd\xa0\xe5\xa5\xbd";
    size_t tlen = np > 2 ? len[2] : strlen(text);

    vm_hf_vocab h;
    if (vm_hf_vocab_read(tj, &h)) {
        FUZZ_ASSERT(vm_errmsg()[0]);
        FUZZ_ASSERT(h.texts_own == NULL && h.merges_own == NULL);   // freed on failure
        vm_err_clear();
        return 0;
    }
    hj_check_vocab(&h);
    vm_tokenizer *t = vm_tokenizer_from_vocab(&h.v);
    int32_t *ids = NULL;
    int n = -1;
    if (t) {
        FUZZ_ASSERT(vm_tokenizer_n_vocab(t) == h.v.n_tokens);
        n = hj_tokenize(t, text, tlen, &ids);
    } else {
        FUZZ_ASSERT(vm_errmsg()[0]);
    }
    vm_err_clear();

    vm_gguf_writer *w = vm_gguf_writer_init();
    FUZZ_ASSERT(w);
    if (vm_tok_vocab_to_gguf(&h.v, w) == 0 && vm_gguf_write(w, gg) == 0) {
        vm_gguf *g = vm_gguf_open(gg);
        if (!g) { fprintf(stderr, "written vocabulary does not open: %s\n", vm_errmsg()); FUZZ_ASSERT(!"reopen"); }
        vm_tokenizer *t2 = vm_tokenizer_from_gguf(g);
        if (t && !t2) { fprintf(stderr, "written vocabulary does not load: %s\n", vm_errmsg()); FUZZ_ASSERT(!"reload"); }
        // model.ignore_merges has no GGUF key (llama.cpp ties it to the pre-tokenizer family):
        // a file that sets it for a family that does not ignore merges may tokenize differently
        int same_rules = 1;
        if (h.v.ignore_merges) {
            vm_pretok *pt = vm_pretok_init(h.v.pre);
            same_rules = vm_pretok_ignore_merges(pt);
            vm_pretok_free(pt);
        }
        if (t && t2 && same_rules) {
            FUZZ_ASSERT(vm_tokenizer_n_vocab(t2) == h.v.n_tokens);
            int32_t *ids2 = NULL;
            int n2 = hj_tokenize(t2, text, tlen, &ids2);
            FUZZ_ASSERT(n2 == n);
            if (n > 0) FUZZ_ASSERT(memcmp(ids, ids2, (size_t)n * sizeof *ids) == 0);
            free(ids2);
        }
        vm_tokenizer_free(t2);
        vm_gguf_free(g);
    }
    vm_gguf_writer_free(w);
    remove(gg);
    free(ids);
    vm_tokenizer_free(t);
    vm_hf_vocab_free(&h);
    vm_err_clear();
    return 0;
}

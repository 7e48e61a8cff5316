// libFuzzer target: the Hugging Face importer (config.json + safetensors [+ tokenizer.json] ->
// GGUF). byte 0: bits 0-1 output type (f32, f16, bf16, q8_0), bit 2 allow_unused; then parts
// separated by FUZZ_SEP, written into a per-process folder: config.json, model.safetensors and,
// when present, tokenizer.json (else the conversion is weights-only).
// A conversion that succeeds must write a GGUF that opens, whose tensors lie inside it; a model
// that loads from it evaluates two tokens.
#include "fuzz_common.h"
#include "convert/hf.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "util/err.h"

static void chf_check_output(const char *path, int with_tok) {
    vm_gguf *g = vm_gguf_open(path);
    if (!g) { fprintf(stderr, "converted file does not open: %s\n", vm_errmsg()); FUZZ_ASSERT(!"reopen"); }
    char *arch = NULL;
    FUZZ_ASSERT(vm_gguf_get_str(g, "general.architecture", &arch) == 0 && arch);
    free(arch);
    if (with_tok) {
        vm_tokenizer *t = vm_tokenizer_from_gguf(g);
        if (!t) { fprintf(stderr, "converted tokenizer: %s\n", vm_errmsg()); FUZZ_ASSERT(!"tokenizer"); }
        int32_t ids[16];
        FUZZ_ASSERT(vm_tokenize(t, "Hello world", 11, 1, 1, ids, 16) >= 0);
        vm_tokenizer_free(t);
    }
    vm_err_clear();
    vm_model *m = vm_model_from_gguf(g);   // takes g; not every architecture runs: no assertion
    if (!m) { vm_err_clear(); return; }
    vm_ctx *c = vm_ctx_init(m, 2, 1);
    int V = vm_model_n_vocab(m);
    if (c && V > 0) {
        int32_t tok[2] = {0, V - 1};
        if (vm_ctx_eval(c, tok, 2, NULL) == 0) FUZZ_ASSERT(vm_ctx_n_past(c) == 2);
    }
    vm_ctx_free(c);
    vm_model_free(m);
}

static void chf_clear(const char *dir) {
    static const char *const names[] = {"config.json", "model.safetensors", "tokenizer.json", "out.gguf"};
    char p[512];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) { fuzz_join(p, sizeof p, dir, names[i]); remove(p); }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    static const vm_type types[4] = {VM_TYPE_F32, VM_TYPE_F16, VM_TYPE_BF16, VM_TYPE_Q8_0};
    vm_convert_hf_opts o = {.type = types[data[0] & 3], .allow_unused = (data[0] >> 2) & 1};
    const uint8_t *part[3];
    size_t len[3];
    int np = fuzz_split(data + 1, size - 1, part, len, 3);
    o.no_tokenizer = np < 3;

    char dir[300], p[512], out[512];
    if (fuzz_tmp_dir(dir, sizeof dir, "hf")) return 0;
    chf_clear(dir);
    static const char *const names[3] = {"config.json", "model.safetensors", "tokenizer.json"};
    for (int i = 0; i < np; i++) {
        fuzz_join(p, sizeof p, dir, names[i]);
        if (fuzz_write_file(p, part[i], len[i])) return 0;
    }
    fuzz_join(out, sizeof out, dir, "out.gguf");
    if (vm_convert_hf(dir, out, &o) == 0) chf_check_output(out, !o.no_tokenizer);
    else FUZZ_ASSERT(vm_errmsg()[0]);
    chf_clear(dir);
    vm_err_clear();
    return 0;
}

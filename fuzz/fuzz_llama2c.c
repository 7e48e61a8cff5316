// libFuzzer target: the llama2.c converter (header, weights size, tokenizer.bin parsing) on
// arbitrary bytes. It reads paths, so the input is split into two temp files:
//   byte 0: output type (0 f32, 1 f16, 2 q8_0); bytes 1-4: model length m (LE u32, clipped);
//   then m bytes of model file; the rest is tokenizer.bin.
// A conversion that succeeds must produce a GGUF that opens as a model with a working tokenizer.
#include "fuzz_common.h"
#include "convert/convert.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "util/err.h"

static void check_output(const char *path) {
    vm_gguf *g = vm_gguf_open(path);
    if (!g) { fprintf(stderr, "converted file does not open: %s\n", vm_errmsg()); FUZZ_ASSERT(!"reopen"); }
    vm_tokenizer *t = vm_tokenizer_from_gguf(g);
    if (!t) { fprintf(stderr, "converted tokenizer: %s\n", vm_errmsg()); FUZZ_ASSERT(!"tokenizer"); }
    int32_t ids[16];
    FUZZ_ASSERT(vm_tokenize(t, "Once upon", 9, 1, 0, ids, 16) >= 1);
    vm_tokenizer_free(t);
    vm_model *m = vm_model_from_gguf(g);   // takes g
    if (!m) { fprintf(stderr, "converted model: %s\n", vm_errmsg()); FUZZ_ASSERT(!"model"); }
    vm_ctx *c = vm_ctx_init(m, 2, 2);
    FUZZ_ASSERT(c);
    int32_t tok[2] = {1, vm_model_n_vocab(m) - 1};
    FUZZ_ASSERT(vm_ctx_eval(c, tok, 2, NULL) == 0);
    vm_ctx_free(c);
    vm_model_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 5) return 0;
    static const vm_type types[3] = {VM_TYPE_F32, VM_TYPE_F16, VM_TYPE_Q8_0};
    vm_type type = types[data[0] % 3];
    size_t m = (size_t)data[1] | (size_t)data[2] << 8 | (size_t)data[3] << 16 | (size_t)data[4] << 24;
    data += 5; size -= 5;
    if (m > size) m = size;

    char model[300], tok[300], out[300];
    fuzz_tmp_path(model, sizeof model, "l2c_model");
    fuzz_tmp_path(tok, sizeof tok, "l2c_tok");
    fuzz_tmp_path(out, sizeof out, "l2c_out.gguf");
    if (fuzz_write_file(model, data, m) || fuzz_write_file(tok, data + m, size - m)) return 0;
    if (vm_convert_llama2c(model, tok, out, type, NULL) == 0) check_output(out);
    else FUZZ_ASSERT(vm_errmsg()[0]);
    remove(model); remove(tok); remove(out);
    vm_err_clear();
    return 0;
}

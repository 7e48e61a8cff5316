// The public header agrees with the internal ones (both included: any mismatch fails to compile),
// and a program using only vmoer.h runs the real stories260K model end to end.
#include "vmoer.h"
#include "convert/convert.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "model/sample.h"
#include "tokenizer/tokenizer.h"
#include "util/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "test.h"

static int n_moe_events;
static void on_trace(void *ud, const vm_trace_ev *ev) {
    (void)ud;
    if (!strcmp(ev->name, "ffn_moe_topk")) n_moe_events += ev->n_tokens;
}

int main(void) {
    char dir[] = "/tmp/vmoer_api_XXXXXX", dense[256], moe[256], model[256], tok[256];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(dense, sizeof dense, "%s/dense.gguf", dir);
    snprintf(moe, sizeof moe, "%s/moe.gguf", dir);
    snprintf(model, sizeof model, "%s/models/stories260K.bin", test_shared_dir());
    snprintf(tok, sizeof tok, "%s/models/tok512.bin", test_shared_dir());
    CHECK(vm_convert_llama2c(model, tok, dense, VM_TYPE_F32, NULL) == 0, "convert: %s", vm_errmsg());
    vm_upcycle_opts o = { .n_expert = 4, .n_expert_used = 2, .noise = 0.01f, .router_std = 0.02f, .seed = 7 };
    CHECK(vm_upcycle(dense, moe, &o) == 0, "upcycle: %s", vm_errmsg());

    // Greedy generation through the public API only.
    vm_model *m = vm_model_load(dense);
    CHECK(m != NULL, "load: %s", vm_errmsg());
    if (m) {
        vm_tokenizer *t = vm_tokenizer_from_gguf(vm_model_gguf(m));
        int32_t ids[64];
        const char *prompt = "Once upon a time";
        int n = vm_tokenize(t, prompt, strlen(prompt), 1, 0, ids, 64);
        CHECK(n > 1 && ids[0] == vm_tokenizer_bos(t), "tokenize: n=%d", n);
        vm_ctx *c = vm_ctx_init(m, 0, 32);
        char text[1024] = "";
        CHECK(vm_ctx_eval(c, ids, n, NULL) == 0, "eval: %s", vm_errmsg());
        for (int i = 0; i < 12; i++) {
            int32_t next = vm_sample_argmax(vm_ctx_last_logits(c), vm_model_n_vocab(m));
            char piece[64];
            int k = vm_token_to_piece(t, next, piece, sizeof piece - 1);
            piece[k > 0 ? k : 0] = 0;
            strncat(text, piece, sizeof text - strlen(text) - 1);
            if (vm_ctx_eval(c, &next, 1, NULL)) break;
        }
        CHECK(!strncmp(text, ", there was a little girl named Lily", 36), "greedy text '%s'", text);
        CHECK(vm_model_n_expert(m) == 0 && vm_model_n_layer(m) == 5, "dims");
        vm_ctx_free(c);
        vm_tokenizer_free(t);
        vm_model_free(m);
    }
    // Routing traces through the public callback.
    m = vm_model_load(moe);
    CHECK(m && vm_model_n_expert(m) == 4, "moe load: %s", vm_errmsg());
    if (m) {
        vm_ctx *c = vm_ctx_init(m, 64, 8);
        vm_ctx_set_trace(c, on_trace, NULL);
        int32_t ids[5] = {1, 403, 407, 261, 378};
        CHECK(vm_ctx_eval(c, ids, 5, NULL) == 0, "moe eval: %s", vm_errmsg());
        CHECK(n_moe_events == 5 * 5, "one top-k event per token and layer: %d", n_moe_events);
        vm_ctx_free(c);
        vm_model_free(m);
    }
    CHECK(vm_model_load("/nonexistent.gguf") == NULL && strstr(vm_errmsg(), "/nonexistent.gguf"), "error names the file");
    unlink(dense); unlink(moe); rmdir(dir);
    return TEST_SUMMARY();
}

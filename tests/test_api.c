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

    // Routers on chosen layers through the public calls; every bad input is a -1/NULL and a message.
    m = vm_model_load(moe);
    CHECK(m != NULL, "moe load: %s", vm_errmsg());
    if (m) {
        const char *const *kinds = vm_router_kind_names();
        for (int k = 0; kinds[k]; k++) {   // every kind of the registry, on every MoE layer
            CHECK(vm_model_set_routers(m, kinds[k], NULL, 0, NULL) == 0, "set_routers %s: %s", kinds[k], vm_errmsg());
            const vm_router *r = vm_model_router(m, 4);
            CHECK(r && !strcmp(r->ops->name, kinds[k]), "layer 4 runs %s", kinds[k]);
        }
        const int l34[2] = {3, 4}, bad[2] = {3, 9}, twice[2] = {4, 4};
        CHECK(vm_model_set_routers(m, "vglr-mf", l34, 2, NULL) == 0, "set_routers 3,4: %s", vm_errmsg());
        const vm_router *before = vm_model_router(m, 3);
        CHECK(vm_model_set_routers(m, "map", bad, 2, NULL) == -1 && strstr(vm_errmsg(), "layer 9"), "layer 9: %s", vm_errmsg());
        CHECK(vm_model_router(m, 3) == before, "a failed set_routers leaves the model unchanged");
        CHECK(vm_model_set_routers(m, "map", twice, 2, NULL) == -1 && strstr(vm_errmsg(), "twice"), "twice: %s", vm_errmsg());
        CHECK(vm_model_set_routers(m, "nope", l34, 2, NULL) == -1 && strstr(vm_errmsg(), "nope"), "kind: %s", vm_errmsg());
        CHECK(vm_model_set_routers(m, NULL, l34, 2, NULL) == -1 && vm_errmsg()[0], "no kind");
        CHECK(vm_model_set_routers(m, "map", l34, -1, NULL) == -1 && vm_errmsg()[0], "negative count");
        vm_router_opts ro = vm_router_default_params();
        ro.samples = 0;
        CHECK(vm_model_set_routers(m, "vglr-mf", l34, 2, &ro) == -1 && strstr(vm_errmsg(), "bad options"), "options: %s", vm_errmsg());
        CHECK(vm_model_router(m, 3) == before, "bad options leave the model unchanged");
        CHECK(vm_model_router_layer(m, 4) != NULL && vm_model_router_layer(m, 5) == NULL && strstr(vm_errmsg(), "layer 5"),
              "router_layer range: %s", vm_errmsg());
        CHECK(vm_model_is_moe_layer(m, 0) == 1 && vm_model_is_moe_layer(m, -1) == 0 && vm_model_is_moe_layer(NULL, 0) == 0, "is_moe_layer");
        CHECK(vm_model_n_ctx_train(m) > 0, "n_ctx_train");
        vm_model_free(m);
    }
    CHECK(vm_model_n_vocab(NULL) == -1 && vm_errmsg()[0], "n_vocab(NULL)");
    CHECK(vm_model_router_layer(NULL, 0) == NULL && vm_errmsg()[0], "router_layer(NULL)");
    CHECK(vm_model_set_routers(NULL, "map", NULL, 0, NULL) == -1 && vm_errmsg()[0], "set_routers(NULL)");
    vm_model_params mp = vm_model_default_params();
    mp.adapter = "/nonexistent-adapter.gguf";
    CHECK(vm_model_load_params(moe, &mp) == NULL && strstr(vm_errmsg(), "nonexistent-adapter"), "bad adapter: %s", vm_errmsg());
    mp.adapter = NULL; mp.samples = -1;
    CHECK(vm_model_load_params(moe, &mp) == NULL && strstr(vm_errmsg(), "sample"), "bad samples: %s", vm_errmsg());
    CHECK(vm_model_load_params(NULL, NULL) == NULL && vm_errmsg()[0], "no path");
    CHECK(vm_evaluate(NULL, "x.jsonl", NULL) == NULL && vm_errmsg()[0], "evaluate(NULL)");
    CHECK(vm_fit(NULL, "x.jsonl", "o.gguf", NULL, NULL) == -1 && vm_errmsg()[0], "fit(NULL)");
    vm_fit_params fp = vm_fit_default_params();
    CHECK(!strcmp(fp.kind, "vglr-mf") && fp.epochs == 3 && !strcmp(fp.score, "letter"), "fit defaults");
    fp.n_layers = 2; fp.layers = NULL;
    CHECK(vm_fit(NULL, "x.jsonl", "o.gguf", &fp, NULL) == -1 && strstr(vm_errmsg(), "layer list"), "fit layers: %s", vm_errmsg());
    CHECK(vm_evaluation_n_items(NULL) == -1 && vm_evaluation_item(NULL, 0, NULL, NULL, NULL, NULL) == -1, "evaluation(NULL)");
    vm_eval_params ep = vm_eval_default_params();
    ep.bins = 0;
    CHECK(vm_evaluate(NULL, "x", &ep) == NULL && strstr(vm_errmsg(), "bins"), "bins: %s", vm_errmsg());
    CHECK(!strcmp(vm_unc_name(VM_UNC_ILV), "ilv") && !strcmp(vm_unc_name(VM_UNC_TEMPERATURE), "temperature") &&
          !strcmp(vm_unc_name(-1), "?"), "unc names");
    vm_router_opts a = vm_router_default_params(), b;
    vm_router_opts_default(&b);
    CHECK(a.samples == b.samples && a.temp == b.temp && a.members == b.members && a.beta == b.beta &&
          a.swag_rank == b.swag_rank && a.seed == b.seed, "router defaults agree");   // fields: padding may differ
    vm_gen_params ga = vm_gen_default_params(), gb;
    vm_gen_params_default(&gb);
    CHECK(ga.max_tokens == gb.max_tokens && ga.temp == gb.temp && ga.top_k == gb.top_k &&
          ga.abstain_score == gb.abstain_score && ga.n_top == gb.n_top, "gen defaults agree");
    CHECK(!strcmp(vmoer_version(), VMOER_VERSION), "version");
    vm_err_clear();
    CHECK(vm_set_threads(0) == -1 && strstr(vm_errmsg(), "threads"), "threads 0: %s", vm_errmsg());
    CHECK(vm_set_threads(1025) == -1 && vm_set_threads(2) == 0, "threads range");
    // NULL handles: a -1/NULL and a message, never a crash
    vm_err_clear();
    CHECK(vm_gguf_open(NULL) == NULL && vm_errmsg()[0], "gguf_open(NULL)");
    vm_err_clear();
    CHECK(vm_model_load(NULL) == NULL && vm_errmsg()[0], "model_load(NULL)");
    vm_err_clear();
    CHECK(vm_sample_argmax(NULL, 4) == -1 && vm_errmsg()[0], "argmax(NULL)");
    vm_err_clear();
    CHECK(vm_upcycle(NULL, NULL, NULL) == -1 && vm_errmsg()[0], "upcycle(NULL)");
    vm_err_clear();
    CHECK(vm_ctx_n_past(NULL) == -1 && vm_ctx_last_logits(NULL) == NULL && vm_errmsg()[0], "ctx(NULL)");
    vm_err_clear();
    CHECK(vm_gen_run(NULL, NULL, 0, NULL, NULL, NULL, NULL) == -1 && vm_gen_available(NULL) == 0 && vm_errmsg()[0], "gen(NULL)");
    vm_err_clear();
    CHECK(vm_tokenizer_n_vocab(NULL) == -1 && vm_errmsg()[0], "tokenizer(NULL)");
    unlink(dense); unlink(moe); rmdir(dir);
    return TEST_SUMMARY();
}

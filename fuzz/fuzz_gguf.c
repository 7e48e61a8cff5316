// libFuzzer target: the GGUF reader on arbitrary bytes. A file that opens is walked completely
// (every kv through every getter, every tensor's first and last byte), then handed to the
// tokenizer and model loaders, and a loaded model evaluates two tokens: whatever the reader
// accepted must be safe for everything downstream.
#include "fuzz_common.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "util/err.h"

static volatile uint8_t gguf_sink_;

static void walk_kv(const vm_gguf *g, const vm_gguf_kv *kv) {
    FUZZ_ASSERT(kv->key && kv->key[0]);
    FUZZ_ASSERT(vm_gguf_find_key(g, kv->key) >= 0);
    FUZZ_ASSERT(vm_gguf_get_kv(g, kv->key) == kv);   // keys are unique
    int64_t i64; uint32_t u32; float f32; int b; char *s = NULL;
    vm_gguf_type at; uint64_t an; const void *ad;
    // every getter on every key: 0, or -1 with an error for a type mismatch, never 1 (present)
    FUZZ_ASSERT(vm_gguf_get_i64(g, kv->key, &i64) != 1);
    FUZZ_ASSERT(vm_gguf_get_u32(g, kv->key, &u32) != 1);
    FUZZ_ASSERT(vm_gguf_get_f32(g, kv->key, &f32) != 1);
    FUZZ_ASSERT(vm_gguf_get_bool(g, kv->key, &b) != 1);
    int rs = vm_gguf_get_str(g, kv->key, &s);
    FUZZ_ASSERT(rs != 1);
    if (rs == 0) { FUZZ_ASSERT(s != NULL); gguf_sink_ ^= (uint8_t)strlen(s); free(s); }
    if (vm_gguf_get_arr(g, kv->key, &at, &an, &ad) == 0) FUZZ_ASSERT(at == kv->arr_type && an == kv->n);
    vm_err_clear();
    if (kv->arr_type == VM_GGUF_TYPE_STRING) {
        FUZZ_ASSERT(kv->strs != NULL || kv->n == 0);
        for (uint64_t i = 0; i < kv->n; i++)
            if (kv->strs[i].n) gguf_sink_ ^= (uint8_t)(kv->strs[i].s[0] ^ kv->strs[i].s[kv->strs[i].n - 1]);
    } else if (kv->type == VM_GGUF_TYPE_ARRAY) {
        for (uint64_t i = 0; i < kv->n; i++) gguf_sink_ ^= (uint8_t)(vm_gguf_arr_num(kv, i) > 0);
    }
    gguf_sink_ ^= (uint8_t)vm_gguf_type_name(kv->type)[0];
}

static void walk_tensor(const vm_gguf *g, const vm_gguf_tensor_info *ti) {
    FUZZ_ASSERT(ti->name[0] && strlen(ti->name) < VM_GGUF_MAX_NAME);
    FUZZ_ASSERT(vm_gguf_find_tensor(g, ti->name) == ti);
    const uint8_t *d = (const uint8_t *)ti->t.data;
    if (ti->nbytes) {
        // inside the buffer: ASan reports a read past its end
        FUZZ_ASSERT(d >= g->base && (size_t)(d - g->base) + ti->nbytes <= g->size);
        gguf_sink_ ^= d[0] ^ d[ti->nbytes - 1];
    }
}

static void run_model(const uint8_t *data, size_t size) {
    vm_gguf *g = vm_gguf_open_mem(data, size, "fuzz.gguf");
    if (!g) return;
    vm_model *m = vm_model_from_gguf(g);   // owns g from here
    if (!m) return;
    int V = vm_model_n_vocab(m);
    vm_ctx *c = vm_ctx_init(m, 4, 2);
    if (c && V > 0) {
        int32_t tok[2] = {0, V - 1};
        if (vm_ctx_eval(c, tok, 2, NULL) == 0) FUZZ_ASSERT(vm_ctx_n_past(c) == 2);
    }
    vm_ctx_free(c);
    vm_model_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    vm_gguf *g = vm_gguf_open_mem(data, size, "fuzz.gguf");
    if (!g) { FUZZ_ASSERT(vm_errmsg()[0]); vm_err_clear(); return 0; }
    for (int64_t i = 0; i < g->n_kv; i++) walk_kv(g, &g->kv[i]);
    for (int64_t i = 0; i < g->n_tensors; i++) walk_tensor(g, &g->tensors[i]);
    FUZZ_ASSERT(vm_gguf_find_key(g, "no.such.key") == -1 && vm_gguf_find_tensor(g, "no.such.tensor") == NULL);

    vm_tokenizer *t = vm_tokenizer_from_gguf(g);
    if (t) {
        static const char text[] = "Hello world <s> </s> \xe2\x96\x81 \xff";
        int32_t ids[64];
        int n = vm_tokenize(t, text, sizeof text - 1, 1, 1, ids, 64);
        if (n > 0) {
            char buf[256];
            FUZZ_ASSERT(vm_detokenize(t, ids, n < 64 ? n : 64, buf, sizeof buf, 1) >= 0);
        }
        for (int32_t id = -1; id <= vm_tokenizer_n_vocab(t) && id < 300; id++) {
            char buf[64];
            gguf_sink_ ^= (uint8_t)vm_token_to_piece(t, id, buf, sizeof buf);
        }
        vm_tokenizer_free(t);
    }
    vm_gguf_free(g);
    vm_err_clear();
    run_model(data, size);
    vm_err_clear();
    return 0;
}

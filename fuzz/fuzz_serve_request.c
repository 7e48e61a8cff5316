// libFuzzer target: `vmoer serve` request bodies (src/serve/request.c), the part of the server that
// reads what any client sends. Input: byte 0 picks the endpoint (completions, chat, choices), the
// rest is the body. The bundled model gives the tokenizer and the limits (loaded once). Checked:
// every body is either a job within the limits or an error with a 4xx status and a message.
#include "fuzz_common.h"
#include "serve/serve_internal.h"
#include "util/err.h"

static srv S;

static void init(void) {
    // the options that request parsing reads (http.c, which needs libmicrohttpd, is not linked)
    S.o.max_tokens = 64;
    S.o.max_routing_tokens = 100;
    S.o.score = "letter";
    vm_model *m = vm_model_load("data/models/stories-moe.gguf");
    FUZZ_ASSERT(m);
    S.m0 = m;
    S.tok = vm_tokenizer_from_gguf(m->gguf);
    FUZZ_ASSERT(S.tok);
    S.n_ctx = m->hp.n_ctx_train;
    S.chat_tmpl = VM_CHAT_CHATML;   // a real template: role markers and special-token parsing
    pthread_mutex_init(&S.mu, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!S.m0) init();
    if (size < 1) return 0;
    const srv_kind kind = (srv_kind)(data[0] % 3);
    srv_err e;
    srv_job *j = srv_parse(&S, kind, (const char *)data + 1, size - 1, &e);
    if (!j) {
        FUZZ_ASSERT(e.status >= 400 && e.status < 500 && e.msg[0]);
        return 0;
    }
    FUZZ_ASSERT(j->refs == 1);
    if (kind != SRV_CHOICES) {
        FUZZ_ASSERT(j->n_prompt >= 1 && j->n_prompt <= S.n_ctx && j->prompt);
        for (int i = 0; i < j->n_prompt; i++) FUZZ_ASSERT(j->prompt[i] >= 0 && j->prompt[i] < S.m0->hp.n_vocab);
        FUZZ_ASSERT(j->gp.max_tokens >= 0 && j->gp.max_tokens <= S.o.max_tokens);
        FUZZ_ASSERT(j->n_stop >= 0 && j->n_stop <= SRV_MAX_STOP);
        FUZZ_ASSERT(!j->routing || (j->n_rl >= 1 && j->n_prompt <= S.o.max_routing_tokens));
        FUZZ_ASSERT(j->gp.n_top >= 0 && j->gp.n_top <= VM_GEN_MAX_TOP);
    } else {
        FUZZ_ASSERT(j->task.n_choices >= 2 && j->task.n_choices <= VM_MCQ_MAX_CHOICES && j->passes >= 1);
    }
    srv_job_free(j);
    return 0;
}

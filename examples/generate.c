// Generate text and print, for every token, how sure the model was: the next-token distribution's
// NLL and entropy, and the routers' own read-outs (gate entropy; ILV with a VGLR adapter,
// temperature with a VTSR one). Uses only <vmoer.h>.
//   generate MODEL.gguf [ADAPTER.gguf] [PROMPT]
#include <stdio.h>
#include <string.h>
#include <vmoer.h>

typedef struct { const vm_tokenizer *tok; unsigned avail; } printer;

// Called once per generated token, in order: 0 = go on.
static int on_token(void *ud, const vm_gen_tok *t) {
    const printer *p = ud;
    char piece[64];
    int n = vm_token_to_piece(p->tok, t->id, piece, (int)sizeof piece - 1);
    piece[n > 0 ? n : 0] = 0;
    printf("%-14s", piece);
    for (int s = 0; s < VM_GS_COUNT; s++)   // only the scores these routers give
        if (p->avail & (1u << s)) printf(" %s %.3f", vm_gen_score_name(s), t->score[s]);
    printf("\n");
    return 0;
}

static void on_trace(void *ud, const vm_trace_ev *ev) {
    if (!strcmp(ev->name, "ffn_moe_topk")) *(int *)ud += ev->n_tokens * ev->ne;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s MODEL.gguf [ADAPTER.gguf] [PROMPT]\n", argv[0]); return 2; }
    vm_model_params mp = vm_model_default_params();
    mp.adapter = argc > 2 && argv[2][0] ? argv[2] : NULL;
    const char *prompt = argc > 3 ? argv[3] : "Once upon a time";

    vm_model *m = vm_model_load_params(argv[1], &mp);
    vm_tokenizer *tok = m ? vm_tokenizer_from_gguf(vm_model_gguf(m)) : NULL;
    if (!tok) { fprintf(stderr, "generate: %s\n", vm_errmsg()); vm_model_free(m); return 1; }
    int32_t ids[256];
    int n = vm_tokenize(tok, prompt, strlen(prompt), 1, 0, ids, 256);
    if (n < 1 || n > 256) { fprintf(stderr, "generate: cannot tokenize the prompt\n"); return 1; }

    // First the lower-level way: one batch through a context, the logits of its last position, and
    // the routing of every position as the model reports it (trace point "ffn_moe_topk").
    vm_ctx *c = vm_ctx_init(m, 0, 64);
    int routed = 0;
    if (c) vm_ctx_set_trace(c, on_trace, &routed);
    if (!c || vm_ctx_eval(c, ids, n, NULL)) { fprintf(stderr, "generate: %s\n", vm_errmsg()); return 1; }
    const int32_t next = vm_sample_argmax(vm_ctx_last_logits(c), vm_model_n_vocab(m));
    printf("prompt: %d tokens, %d expert choices traced, greedy next token %d\n", n, routed, (int)next);
    vm_ctx_free(c);

    // Then generation with a score per token.
    vm_gen *g = vm_gen_new(m, tok, 0);
    printer p = { tok, g ? vm_gen_available(g) : 0 };
    vm_gen_params gp = vm_gen_default_params();
    gp.max_tokens = 12;
    vm_gen_result r;
    int rc = g ? vm_gen_run(g, ids, n, &gp, on_token, &p, &r) : -1;
    if (rc) fprintf(stderr, "generate: %s\n", vm_errmsg());
    else printf("%d tokens, finish: %s\n", r.n_gen, vm_gen_finish_name(r.finish));
    vm_gen_free(g);
    vm_tokenizer_free(tok);
    vm_model_free(m);
    return rc ? 1 : 0;
}

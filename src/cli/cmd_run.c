// vmoer run MODEL.gguf -p PROMPT [-n N] [--temp T] [--seed S] [--top-k K] [--top-p P] [--threads N]
//           [--chat-template NAME|auto|none]
// Prints the prompt, then each generated piece as soon as it is sampled; timing goes to stderr.
#include "cli/cli.h"
#include "train/adapter.h"
#include "model/model.h"
#include "model/sample.h"
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"
#include "util/err.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *CMD = "run";

static void usage(void) {
    printf("usage: vmoer run MODEL.gguf -p PROMPT [options]\n\n"
           "Generates text: BOS (if the vocabulary asks for it) + prompt, evaluated as one batch, then\n"
           "one token at a time until EOS, -n tokens or a full context.\n\n"
           "options:\n"
           "  -p, --prompt TEXT   prompt (required; may be empty)\n"
           "  -n, --n-predict N   tokens to generate (default 256)\n"
           "  --temp T            temperature; 0 = greedy (default 0.8)\n"
           "  --top-k K           keep the K most probable tokens (default 0 = off)\n"
           "  --top-p P           nucleus sampling mass (default 1 = off)\n"
           "  --seed S            sampling seed (default 0)\n"
           "  --adapter A.gguf    routers fitted by vmoer fit (refused if fitted for another model)\n"
           "  --threads N         worker threads\n"
           "  --chat-template T   render the prompt as one user message of a chat, with the generation\n"
           "                      prompt: T = auto (the model's tokenizer.chat_template; an unknown one is\n"
           "                      an error) or a built-in name; default none = the prompt as it is.\n"
           "                      Names: %s\n"
           "  -h, --help          this text\n", vm_chat_names());
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

// BOS (when the vocabulary adds it) + prompt tokens; malloc'd, count returned, -1 on error.
// parse_special: a rendered chat turns its role markers and in-history BOS/EOS into their tokens.
static void print_piece(const vm_tokenizer *tok, int32_t id) {
    char buf[256];
    int n = vm_token_to_piece(tok, id, buf, sizeof buf);
    if (n < 0) return;
    if (n <= (int)sizeof buf) { fwrite(buf, 1, (size_t)n, stdout); }
    else {
        char *big = malloc((size_t)n);
        if (big && vm_token_to_piece(tok, id, big, n) == n) fwrite(big, 1, (size_t)n, stdout);
        free(big);
    }
    fflush(stdout);
}

// The prompt as one user message rendered with the chosen (or, for "auto", the model's) template.
// The model's own BOS/EOS texts fill the template's bos_token/eos_token. Returns the malloc'd text,
// or NULL with an error; *note gets a line to show when the model has no template.
static char *chat_prompt(const vm_model *m, const vm_tokenizer *tok, const char *name, const char *prompt,
                         char *note, size_t note_size) {
    int id = vm_chat_pick_gguf(m->gguf, strcmp(name, "auto") ? name : NULL, note, note_size);
    if (id < 0) return NULL;
    char *tmpl = NULL, *dsys = NULL, *out = NULL;
    if (vm_gguf_get_str(m->gguf, "tokenizer.chat_template", &tmpl) < 0) return NULL;
    if (tmpl && (id == VM_CHAT_CHATML || id == VM_CHAT_QWEN3 || id == VM_CHAT_QWEN3_NOTHINK))
        dsys = vm_chat_default_system(tmpl);     // Qwen1.5/Qwen2 add one when there is no system message
    int32_t bos = vm_tokenizer_bos(tok), eos = vm_tokenizer_eos(tok), nv = vm_tokenizer_n_vocab(tok);
    vm_chat_opts o = {bos >= 0 && bos < nv ? vm_tokenizer_text(tok, bos) : NULL,
                      eos >= 0 && eos < nv ? vm_tokenizer_text(tok, eos) : NULL, dsys};
    vm_chat_msg msg = {"user", prompt};
    if (vm_chat_render_ex(id, &msg, 1, 1, &o, &out) < 0) out = NULL;
    free(dsys);
    free(tmpl);
    return out;
}

int cmd_run(int argc, char **argv) {
    const char *path = NULL, *prompt = NULL, *chat = NULL;
    long n_gen = 256, top_k = 0;
    double temp = 0.8, top_p = 1;
    uint64_t seed = 0;
    const char *adapter = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(); return 0; }
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            if (!(prompt = cli_value(CMD, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
            if (!(v = cli_value(CMD, argc, argv, &i)) || cli_long(CMD, a, v, 0, 1 << 24, &n_gen)) return 1;
        } else if (!strcmp(a, "--temp")) {
            if (!(v = cli_value(CMD, argc, argv, &i)) || cli_float(CMD, a, v, 0, 1e4, &temp)) return 1;
        } else if (!strcmp(a, "--top-k")) {
            if (!(v = cli_value(CMD, argc, argv, &i)) || cli_long(CMD, a, v, 0, INT_MAX, &top_k)) return 1;
        } else if (!strcmp(a, "--top-p")) {
            if (!(v = cli_value(CMD, argc, argv, &i)) || cli_float(CMD, a, v, 1e-6, 1, &top_p)) return 1;
        } else if (!strcmp(a, "--seed")) {
            if (!(v = cli_value(CMD, argc, argv, &i)) || cli_u64(CMD, a, v, &seed)) return 1;
        } else if (!strcmp(a, "--adapter")) {
            if (!(adapter = cli_value(CMD, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--threads")) {
            if (!(v = cli_value(CMD, argc, argv, &i)) || cli_threads(CMD, v)) return 1;
        } else if (!strcmp(a, "--chat-template")) {
            if (!(chat = cli_value(CMD, argc, argv, &i))) return 1;
            if (strcmp(chat, "auto") && vm_chat_template_from_name(chat) < 0)
                return cli_fail(CMD, "--chat-template: unknown template '%s' (known: auto, %s)", chat, vm_chat_names());
            if (!strcmp(chat, "none")) chat = NULL;     // today's behaviour: the prompt as it is
        } else if (a[0] == '-' && a[1]) {
            return cli_fail(CMD, "unknown option '%s' (see --help)", a);
        } else {
            if (path) return cli_fail(CMD, "unexpected argument '%s' (see --help)", a);
            path = a;
        }
    }
    if (!path) return cli_fail(CMD, "expected MODEL.gguf (see --help)");
    if (!prompt) return cli_fail(CMD, "-p PROMPT is required");

    int rc = 1;
    vm_model *m = NULL;
    vm_tokenizer *tok = NULL;
    vm_ctx *c = NULL;
    int32_t *ids = NULL;
    char *rendered = NULL;
    vm_sampler smp;
    if (vm_sampler_init(&smp, (float)temp, (int)top_k, (float)top_p, seed)) return cli_fail(CMD, NULL);
    if (!(m = vm_model_load(path)) || !(tok = vm_tokenizer_from_gguf(m->gguf))) { cli_fail(CMD, NULL); goto done; }
    if (adapter && vm_adapter_apply(m, adapter)) { cli_fail(CMD, NULL); goto done; }
    if (chat) {
        char note[256];
        if (!(rendered = chat_prompt(m, tok, chat, prompt, note, sizeof note))) { cli_fail(CMD, NULL); goto done; }
        if (note[0]) fprintf(stderr, "vmoer run: note: %s\n", note);
        prompt = rendered;
    }
    int n_prompt = vm_tokenize_alloc(tok, prompt, strlen(prompt), 1, chat != NULL, &ids);
    if (n_prompt < 0) { cli_fail(CMD, NULL); goto done; }
    if (n_prompt == 0) { cli_fail(CMD, "empty prompt and no BOS token: nothing to condition on"); goto done; }
    int n_ctx_max = m->hp.n_ctx_train > 0 ? m->hp.n_ctx_train : INT_MAX;
    if (n_prompt > n_ctx_max) { cli_fail(CMD, "prompt of %d tokens exceeds the context length %d", n_prompt, n_ctx_max); goto done; }
    long want = (long)n_prompt + n_gen;
    int n_ctx = want < n_ctx_max ? (int)want : n_ctx_max;
    if (!(c = vm_ctx_init(m, n_ctx, n_prompt < 512 ? n_prompt : 512))) { cli_fail(CMD, NULL); goto done; }

    fputs(prompt, stdout);
    fflush(stdout);
    int32_t bos = vm_tokenizer_bos(tok), eos = vm_tokenizer_eos(tok);
    double t0 = now_ms();
    if (vm_ctx_eval(c, ids, n_prompt, NULL)) { putchar('\n'); cli_fail(CMD, NULL); goto done; }
    double t1 = now_ms();
    int n_out = 0;
    while (n_out < n_gen) {
        int32_t id = vm_sampler_sample(&smp, vm_ctx_last_logits(c), m->hp.n_vocab);
        if (id < 0) { putchar('\n'); cli_fail(CMD, NULL); goto done; }
        if (id == eos || id == bos) break;
        print_piece(tok, id);
        n_out++;
        if (n_out == n_gen || vm_ctx_n_past(c) >= n_ctx) break;   // the last token needs no evaluation
        if (vm_ctx_eval(c, &id, 1, NULL)) { putchar('\n'); cli_fail(CMD, NULL); goto done; }
    }
    double t2 = now_ms();
    putchar('\n');
    fflush(stdout);
    fprintf(stderr, "vmoer run: prompt %d tokens in %.1f ms (%.1f tok/s), generated %d tokens in %.1f ms (%.1f tok/s)\n",
            n_prompt, t1 - t0, n_prompt * 1e3 / (t1 - t0 + 1e-9), n_out, t2 - t1, n_out * 1e3 / (t2 - t1 + 1e-9));
    rc = 0;
done:
    vm_sampler_free(&smp);
    free(ids);
    free(rendered);
    if (c) vm_ctx_free(c);
    if (tok) vm_tokenizer_free(tok);
    if (m) vm_model_free(m);
    return rc;
}

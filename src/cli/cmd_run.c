// vmoer run MODEL.gguf -p PROMPT [-n N] [--temp T] [--seed S] [--top-k K] [--top-p P] [--threads N]
//           [--chat-template NAME|auto|none] [--uncertainty [--jsonl]] [--abstain X [--abstain-score S]]
// Prints the prompt, then each generated piece as soon as it is sampled; timing goes to stderr.
// With --uncertainty, one line per generated token with its read-outs (gen/gen.h) instead, then the
// text and a summary; --jsonl writes the same as JSON lines.
#include "cli/cli.h"
#include "gen/gen.h"
#include "gen/gen_json.h"
#include "train/adapter.h"
#include "model/model.h"
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"
#include "util/err.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
           "  --seed S            sampling seed, also the sampled routers' stream (default 0)\n"
           "  --adapter A.gguf    routers fitted by vmoer fit (refused if fitted for another model)\n"
           "  --threads N         worker threads\n"
           "  --chat-template T   render the prompt as one user message of a chat, with the generation\n"
           "                      prompt: T = auto (the model's tokenizer.chat_template; an unknown one is\n"
           "                      an error) or a built-in name; default none = the prompt as it is.\n"
           "                      Names: %s\n"
           "  --uncertainty       one line per generated token: its probability and the scores (higher =\n"
           "                      less sure) nll = -log p, entropy of the next-token distribution, and the\n"
           "                      routers' read-outs averaged over the Bayesian layers (every MoE layer\n"
           "                      without an adapter): gate_entropy, ilv = tr Sigma and ilv_dev (VGLR),\n"
           "                      temperature (VTSR), disagreement (sampled kinds), prob_var (SWAG);\n"
           "                      per-layer ILV and T in\n"
           "                      brackets; then the text and the mean/max of each score\n"
           "  --jsonl             --uncertainty as JSON: one object per token, then a summary object\n"
           "  --abstain X         stop before a token whose --abstain-score is above X, with the marker\n"
           "                      [uncertain: ...] (JSON: \"finish_reason\": \"uncertain\")\n"
           "  --abstain-score S   %s (default entropy)\n"
           "  -h, --help          this text\n", vm_chat_names(), vm_gen_score_names());
}

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

typedef struct run_out {
    const vm_gen *g;
    const vm_tokenizer *tok;
    int mode;                // 0 text, 1 a line per token, 2 JSON lines
    int colour;              // stdout is a terminal
    int i;
} run_out;

static void print_json(json_t *o) {
    char *s = vm_json_dump(o);
    if (s) { fputs(s, stdout); putchar('\n'); }
    free(s);
    json_decref(o);
}

static void print_value(float x) {
    if (isfinite(x)) printf(" %12.4g", (double)x);
    else printf(" %12s", "-");
}

// One human-readable line: index, the piece (quoted, coloured by its probability on a terminal),
// probability and every available score, then the per-layer ILV and T.
static void print_token_line(const run_out *o, const vm_gen_tok *t) {
    json_t *piece = vm_json_piece(o->tok, t->id);
    char *q = piece ? json_dumps(piece, JSON_ENCODE_ANY) : NULL;
    const char *col = !o->colour ? "" : t->prob >= 0.5f ? "\033[32m" : t->prob >= 0.2f ? "\033[33m" : "\033[31m";
    printf("%4d  %s%-14s%s", o->i, col, q ? q : "?", o->colour ? "\033[0m" : "");
    free(q);
    json_decref(piece);
    print_value(t->prob);
    const unsigned av = vm_gen_available(o->g);
    for (int s = 0; s < VM_GS_COUNT; s++) if (av & (1u << s)) print_value(t->score[s]);
    const int *ro;
    const int n_ro = vm_gen_readout_layers(o->g, &ro);
    for (int s = VM_GS_ILV; s <= VM_GS_TEMPERATURE; s += VM_GS_TEMPERATURE - VM_GS_ILV) {
        if (!(av & (1u << s))) continue;
        printf("  %s [", s == VM_GS_ILV ? "ILV" : "T");
        for (int i = 0; i < n_ro; i++)
            printf("%sL%d %.4g", i ? " " : "", ro[i], (double)t->unc[(size_t)ro[i] * VM_UNC_COUNT + vm_gen_score_unc(s)]);
        printf("]");
    }
    putchar('\n');
    fflush(stdout);
}

static int on_token(void *ud, const vm_gen_tok *t) {
    run_out *o = ud;
    if (o->mode == 0) print_piece(o->tok, t->id);
    else if (o->mode == 1) print_token_line(o, t);
    else {
        json_t *j = vm_gen_tok_json(o->g, o->tok, t, 1);
        json_t *line = json_object();
        json_object_set_new(line, "index", json_integer(o->i));
        json_object_update(line, j);
        json_decref(j);
        print_json(line);
    }
    o->i++;
    return 0;
}

static void print_header(const run_out *o) {
    printf("%4s  %-14s %12s", "#", "token", "prob");
    const unsigned av = vm_gen_available(o->g);
    for (int s = 0; s < VM_GS_COUNT; s++) if (av & (1u << s)) printf(" %12s", vm_gen_score_name(s));
    putchar('\n');
}

// The end of a line-per-token run: the text, the summary and the abstention, if any.
static void print_footer(const run_out *o, const vm_gen_result *r, const char *prompt, const int32_t *out, int n) {
    const unsigned av = vm_gen_available(o->g);
    printf("text: %s", prompt);
    for (int i = 0; i < n; i++) print_piece(o->tok, out[i]);
    putchar('\n');
    printf("summary over %d tokens (mean / max):", r->summary.n);
    for (int s = 0; s < VM_GS_COUNT; s++) {
        if (!(av & (1u << s)) || !r->summary.cnt[s]) continue;
        printf(" %s %.4g / %.4g;", vm_gen_score_name(s), r->summary.sum[s] / r->summary.cnt[s], r->summary.max[s]);
    }
    printf(" finish: %s\n", vm_gen_finish_name(r->finish));
}

typedef struct keep_ids { run_out *o; int32_t *ids; int n, cap; } keep_ids;

static int keep_token(void *ud, const vm_gen_tok *t) {
    keep_ids *k = ud;
    if (k->n == k->cap) {
        int cap = k->cap ? 2 * k->cap : 64;
        int32_t *p = realloc(k->ids, sizeof *p * (size_t)cap);
        if (!p) { vm_err("run: out of memory"); return -1; }
        k->ids = p; k->cap = cap;
    }
    k->ids[k->n++] = t->id;
    return on_token(k->o, t);
}

int cmd_run(int argc, char **argv) {
    const char *path = NULL, *prompt = NULL, *chat = NULL;
    long n_gen = 256, top_k = 0;
    double temp = 0.8, top_p = 1, abstain = NAN;
    uint64_t seed = 0;
    const char *adapter = NULL;
    int unc = 0, jsonl = 0, abstain_score = VM_GS_ENTROPY;
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
        } else if (!strcmp(a, "--uncertainty")) {
            unc = 1;
        } else if (!strcmp(a, "--jsonl")) {
            jsonl = unc = 1;
        } else if (!strcmp(a, "--abstain")) {
            if (!(v = cli_value(CMD, argc, argv, &i)) || cli_float(CMD, a, v, -1e30, 1e30, &abstain)) return 1;
        } else if (!strcmp(a, "--abstain-score")) {
            if (!(v = cli_value(CMD, argc, argv, &i))) return 1;
            if ((abstain_score = vm_gen_score_parse(v)) < 0)
                return cli_fail(CMD, "--abstain-score: unknown score '%s' (known: %s)", v, vm_gen_score_names());
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
    vm_gen *g = NULL;
    int32_t *ids = NULL;
    char *rendered = NULL;
    keep_ids kept = {0};
    if (!(m = vm_model_load(path)) || !(tok = vm_tokenizer_from_gguf(m->gguf))) { cli_fail(CMD, NULL); goto done; }
    if (adapter && vm_adapter_apply(m, adapter)) { cli_fail(CMD, NULL); goto done; }
    if (chat) {
        char note[256];
        int id = vm_chat_pick_gguf(m->gguf, strcmp(chat, "auto") ? chat : NULL, note, sizeof note);
        vm_chat_msg msg = {"user", prompt};
        if (id < 0 || !(rendered = vm_gen_chat_render(m, tok, id, &msg, 1))) { cli_fail(CMD, NULL); goto done; }
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
    if (!(g = vm_gen_new(m, tok, n_ctx))) { cli_fail(CMD, NULL); goto done; }

    run_out o = { g, tok, unc ? 1 + jsonl : 0, isatty(STDOUT_FILENO), 0 };
    vm_gen_params gp;
    vm_gen_params_default(&gp);
    gp.max_tokens = (int)n_gen;
    gp.temp = (float)temp; gp.top_k = (int)top_k; gp.top_p = (float)top_p; gp.seed = seed;
    if (isfinite(abstain)) { gp.abstain_score = abstain_score; gp.abstain_threshold = abstain; }
    kept.o = &o;
    if (o.mode == 0) { fputs(prompt, stdout); fflush(stdout); }
    if (o.mode == 1) print_header(&o);
    vm_gen_result r;
    if (vm_gen_run(g, ids, n_prompt, &gp, keep_token, &kept, &r)) { putchar('\n'); cli_fail(CMD, NULL); goto done; }
    char marker[160] = "";
    if (r.finish == VM_GEN_UNCERTAIN)
        snprintf(marker, sizeof marker, "[uncertain: %s %.4g > %.4g before token %d]", vm_gen_score_name(abstain_score),
                 (double)r.withheld.score[abstain_score], abstain, r.n_gen);
    if (o.mode == 0) printf("%s%s\n", marker[0] ? " " : "", marker);
    else if (o.mode == 1) {
        print_footer(&o, &r, prompt, kept.ids, kept.n);
        if (marker[0]) printf("%s\n", marker);
    } else {
        json_t *end = json_object();
        json_object_set_new(end, "summary", vm_gen_summary_json(g, &r.summary));
        json_object_set_new(end, "finish_reason", json_string(vm_gen_finish_name(r.finish)));
        json_object_set_new(end, "info", vm_gen_info_json(g));
        if (r.finish == VM_GEN_UNCERTAIN) {
            json_t *w = json_object();
            json_object_set_new(w, "score", json_string(vm_gen_score_name(abstain_score)));
            json_object_set_new(w, "threshold", json_real(abstain));
            json_object_set_new(w, "token", vm_gen_tok_json(g, tok, &r.withheld, 1));
            json_object_set_new(end, "abstained", w);
        }
        print_json(end);
    }
    fflush(stdout);
    fprintf(stderr, "vmoer run: prompt %d tokens in %.1f ms (%.1f tok/s), generated %d tokens in %.1f ms (%.1f tok/s)\n",
            n_prompt, r.ms_prompt, n_prompt * 1e3 / (r.ms_prompt + 1e-9), r.n_gen, r.ms_gen, r.n_gen * 1e3 / (r.ms_gen + 1e-9));
    rc = 0;
done:
    free(kept.ids);
    free(ids);
    free(rendered);
    vm_gen_free(g);
    if (tok) vm_tokenizer_free(tok);
    if (m) vm_model_free(m);
    return rc;
}

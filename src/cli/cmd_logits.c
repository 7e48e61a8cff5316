// vmoer logits MODEL.gguf (-p PROMPT | --ids 1,2,3) -o OUT.npy
// float32 [n_tokens, n_vocab]: row t holds the logits after token t (all positions, one batch).
// --uncertainty FILE.jsonl adds the read-outs of every position (gen/gen.h), as `run --jsonl`.
#include "cli/cli.h"
#include "gen/gen.h"
#include "gen/gen_json.h"
#include "train/adapter.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "util/err.h"
#include "util/fileio.h"
#include "util/npy.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *CMD = "logits";

static void usage(void) {
    printf("usage: vmoer logits MODEL.gguf (-p PROMPT | --ids 1,2,3) -o OUT.npy [options]\n\n"
           "Writes the logits of every position as a float32 .npy array [n_tokens, n_vocab].\n\n"
           "options:\n"
           "  -p, --prompt TEXT   text; BOS is added when the vocabulary asks for it (as in run)\n"
           "  --ids LIST          comma-separated token ids, used exactly as given\n"
           "  -o, --output FILE   output .npy (written atomically; required)\n"
           "  --adapter A.gguf    routers fitted by vmoer fit (refused if fitted for another model)\n"
           "  --uncertainty FILE  also write one JSON line per position t: {\"pos\", \"input\": token t,\n"
           "                      \"token\": token t+1 (null at the last position), \"prob\", \"nll\",\n"
           "                      \"entropy\", router read-outs, \"layers\"}, the fields of run --jsonl\n"
           "  --threads N         worker threads\n"
           "  -h, --help          this text\n");
}

// One JSON line per position: the record of the next token (gen_json.h), into an atomic file the
// caller commits once the .npy is written too (a failed command leaves neither).
static int write_unc(vm_afile *afp, const char *path, vm_gen *g, const vm_tokenizer *tok, const int32_t *ids, int n,
                     const float *logits) {
    vm_afile af = {0};
    if (vm_afile_open(&af, path)) return -1;
    const int V = vm_model_n_vocab(vm_gen_model(g));
    for (int t = 0; t < n; t++) {
        vm_gen_tok r;
        vm_gen_record(g, logits + (size_t)t * V, t, t + 1 < n ? ids[t + 1] : -1, 0, &r);
        json_t *o = json_object(), *j = vm_gen_tok_json(g, tok, &r, 1);
        json_object_set_new(o, "pos", json_integer(t));
        json_object_set_new(o, "input", json_integer(ids[t]));
        json_object_update(o, j);
        json_decref(j);
        if (r.id < 0) json_object_set_new(o, "token", json_null());
        char *line = vm_json_dump(o);
        json_decref(o);
        int e = !line || fputs(line, af.f) == EOF || fputc('\n', af.f) == EOF;
        free(line);
        if (e) { vm_afile_abort(&af); return vm_err("%s: write failed", path); }
    }
    *afp = af;
    return 0;
}

int cmd_logits(int argc, char **argv) {
    const char *path = NULL, *prompt = NULL, *ids_arg = NULL, *out = NULL;
    const char *adapter = NULL, *unc_out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(); return 0; }
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            if (!(prompt = cli_value(CMD, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--ids")) {
            if (!(ids_arg = cli_value(CMD, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (!(out = cli_value(CMD, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--adapter")) {
            if (!(adapter = cli_value(CMD, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--uncertainty")) {
            if (!(unc_out = cli_value(CMD, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--threads")) {
            if (!(v = cli_value(CMD, argc, argv, &i)) || cli_threads(CMD, v)) return 1;
        } else if (a[0] == '-' && a[1]) {
            return cli_fail(CMD, "unknown option '%s' (see --help)", a);
        } else {
            if (path) return cli_fail(CMD, "unexpected argument '%s' (see --help)", a);
            path = a;
        }
    }
    if (!path) return cli_fail(CMD, "expected MODEL.gguf (see --help)");
    if (!prompt == !ids_arg) return cli_fail(CMD, "give exactly one of -p PROMPT and --ids LIST");
    if (!out) return cli_fail(CMD, "-o OUT.npy is required");
    if (cli_output(CMD, out)) return 1;

    int rc = 1, n = 0;
    int32_t *ids = NULL;
    float *logits = NULL;
    vm_model *m = NULL;
    vm_tokenizer *tok = NULL;
    vm_gen *g = NULL;
    if (ids_arg && (n = cli_parse_ids(CMD, ids_arg, &ids)) < 0) return 1;
    if (!(m = vm_model_load(path))) { cli_fail(CMD, NULL); goto done; }
    if (adapter && vm_adapter_apply(m, adapter)) { cli_fail(CMD, NULL); goto done; }
    if ((prompt || unc_out) && !(tok = vm_tokenizer_from_gguf(m->gguf))) { cli_fail(CMD, NULL); goto done; }
    if (prompt) {
        if ((n = vm_tokenize_alloc(tok, prompt, strlen(prompt), 1, 0, &ids)) < 0) { cli_fail(CMD, NULL); goto done; }
        if (n == 0) { cli_fail(CMD, "empty prompt and no BOS token: no positions"); goto done; }
    }
    int n_vocab = m->hp.n_vocab;
    for (int i = 0; i < n; i++)
        if (ids[i] >= n_vocab) { cli_fail(CMD, "--ids: token id %d out of range [0, %d)", (int)ids[i], n_vocab); goto done; }
    if (m->hp.n_ctx_train > 0 && n > m->hp.n_ctx_train) {
        cli_fail(CMD, "%d tokens exceed the context length %d", n, m->hp.n_ctx_train);
        goto done;
    }
    if (!(logits = vm_calloc((size_t)n * (size_t)n_vocab, sizeof *logits))) { cli_fail(CMD, NULL); goto done; }
    if (unc_out) {   // the read-outs need the generator's collector; the logits are the same
        if (!(g = vm_gen_new(m, tok, n)) || vm_gen_eval(g, ids, n, logits)) { cli_fail(CMD, NULL); goto done; }
    } else {
        vm_ctx *c = vm_ctx_init(m, n, n < 512 ? n : 512);
        int e = !c || vm_ctx_eval(c, ids, n, logits);
        vm_ctx_free(c);
        if (e) { cli_fail(CMD, NULL); goto done; }
    }
    vm_afile uf = {0};
    if (unc_out && write_unc(&uf, unc_out, g, tok, ids, n, logits)) { cli_fail(CMD, NULL); goto done; }
    int64_t shape[2] = {n, n_vocab};
    if (vm_npy_write_f32(out, logits, 2, shape)) { if (unc_out) vm_afile_abort(&uf); cli_fail(CMD, NULL); goto done; }
    if (unc_out && vm_afile_commit(&uf)) { cli_fail(CMD, NULL); goto done; }
    rc = 0;
done:
    free(ids); free(logits);
    vm_gen_free(g);
    if (tok) vm_tokenizer_free(tok);
    if (m) vm_model_free(m);
    return rc;
}

// vmoer trace MODEL.gguf (-p PROMPT | --ids 1,2,3) -o OUT.jsonl
// One JSON object per (token, MoE layer), token-major:
// {"pos","token","piece","layer","logits":[N],"probs":[N],"experts":[K],"gates":[K],"unc":{..}}
// from the routing capture of gen/gen.h (the trace points ffn_moe_logits / _probs / _topk / _weights
// / _unc), the same code `vmoer serve` returns routing with.
#include "cli/cli.h"
#include "gen/gen.h"
#include "train/adapter.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "util/err.h"
#include "util/fileio.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *CMD = "trace";

static void usage(void) {
    printf("usage: vmoer trace MODEL.gguf (-p PROMPT | --ids 1,2,3) -o OUT.jsonl [options]\n\n"
           "Evaluates BOS + prompt and writes, for every token and MoE layer, one JSON line:\n"
           "  {\"pos\", \"token\", \"piece\", \"layer\", \"logits\": [N], \"probs\": [N], \"experts\": [K], \"gates\": [K],\n"
           "   \"unc\": {..}}\n"
           "(router logits and probabilities over all N experts, selected experts best first, gate weights,\n"
           "and the read-outs the layer's router kind writes: ilv, gate_entropy, temperature, disagreement,\n"
           "ilv_dev, prob_var).\n\n"
           "options:\n"
           "  -p, --prompt TEXT   prompt\n"
           "  --ids LIST          comma-separated token ids, used exactly as given (instead of -p)\n"
           "  -o, --output FILE   output .jsonl (written atomically; required)\n"
           "  --seed S            the sampled routers' random stream (default 0, as run and serve)\n"
           "  --decode-from P     evaluate the first P tokens as one batch and each later one alone, as\n"
           "                      generation does (sampled routers draw per call, so this reproduces the\n"
           "                      routing of a generated answer bit for bit; default: one batch)\n"
           "  --adapter A.gguf    routers fitted by vmoer fit (refused if fitted for another model)\n"
           "  --threads N         worker threads\n"
           "  -h, --help          this text\n");
}

static json_t *jfloats(const float *x, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, isfinite(x[i]) ? json_real(x[i]) : json_null());
    return a;
}

// The piece as text; control tokens (empty piece, e.g. BOS) and byte tokens that are not valid
// UTF-8 alone fall back to the vocabulary entry ("<s>", "<0xE2>").
static json_t *jpiece(const vm_tokenizer *tok, int32_t id) {
    char buf[512];
    int n = vm_token_to_piece(tok, id, buf, sizeof buf);
    json_t *s = n > 0 && n <= (int)sizeof buf ? json_stringn(buf, (size_t)n) : NULL;
    if (!s) s = json_string(vm_tokenizer_text(tok, id));
    return s ? s : json_null();
}

int cmd_trace(int argc, char **argv) {
    const char *path = NULL, *prompt = NULL, *ids_arg = NULL, *out = NULL;
    const char *adapter = NULL;
    uint64_t seed = 0;
    long decode_from = -1;
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
        } else if (!strcmp(a, "--seed")) {
            if (!(v = cli_value(CMD, argc, argv, &i)) || cli_u64(CMD, a, v, &seed)) return 1;
        } else if (!strcmp(a, "--decode-from")) {
            if (!(v = cli_value(CMD, argc, argv, &i)) || cli_long(CMD, a, v, 1, INT_MAX, &decode_from)) return 1;
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
    if (!out) return cli_fail(CMD, "-o OUT.jsonl is required");
    if (cli_output(CMD, out)) return 1;

    int rc = 1, n = 0;
    vm_model *m = NULL;
    vm_tokenizer *tok = NULL;
    vm_gen *g = NULL;
    int32_t *ids = NULL;
    int *layers = NULL;
    vm_afile af = {0};
    if (ids_arg && (n = cli_parse_ids(CMD, ids_arg, &ids)) < 0) return 1;
    if (!(m = vm_model_load(path))) { cli_fail(CMD, NULL); goto done; }
    if (adapter && vm_adapter_apply(m, adapter)) { cli_fail(CMD, NULL); goto done; }
    int n_moe = 0;
    for (int l = 0; l < m->hp.n_layer; l++) n_moe += m->layers[l].is_moe;
    if (n_moe == 0 || m->hp.n_expert < 1 || m->hp.n_expert_used < 1) {
        cli_fail(CMD, "%s: dense model (no MoE layers): nothing to trace; see vmoer upcycle", path);
        goto done;
    }
    if (!(tok = vm_tokenizer_from_gguf(m->gguf))) { cli_fail(CMD, NULL); goto done; }
    if (prompt && (n = vm_tokenize_alloc(tok, prompt, strlen(prompt), 1, 0, &ids)) < 0) { cli_fail(CMD, NULL); goto done; }
    if (n == 0) { cli_fail(CMD, "empty prompt and no BOS token: no positions"); goto done; }
    for (int i = 0; i < n; i++)
        if (ids[i] >= m->hp.n_vocab) { cli_fail(CMD, "--ids: token id %d out of range [0, %d)", (int)ids[i], m->hp.n_vocab); goto done; }
    if (m->hp.n_ctx_train > 0 && n > m->hp.n_ctx_train) { cli_fail(CMD, "%d tokens exceed the context length %d", n, m->hp.n_ctx_train); goto done; }
    if (!(layers = vm_malloc(sizeof *layers * (size_t)n_moe))) { cli_fail(CMD, NULL); goto done; }
    n_moe = 0;
    for (int l = 0; l < m->hp.n_layer; l++) if (m->layers[l].is_moe) layers[n_moe++] = l;
    if (!(g = vm_gen_new(m, tok, n)) || vm_gen_capture(g, layers, n_moe, n)) { cli_fail(CMD, NULL); goto done; }
    vm_gen_reset(g, seed);
    const int first = decode_from > 0 && decode_from < n ? (int)decode_from : n;
    if (vm_gen_eval(g, ids, first, NULL)) { cli_fail(CMD, NULL); goto done; }
    for (int t = first; t < n; t++)
        if (vm_gen_eval(g, ids + t, 1, NULL)) { cli_fail(CMD, NULL); goto done; }
    vm_gen_routing R;
    vm_gen_routing_view(g, &R);
    if (vm_afile_open(&af, out)) { cli_fail(CMD, NULL); goto done; }
    for (int t = 0; t < n; t++) {
        for (int li = 0; li < R.n_layers; li++) {
            const size_t at = (size_t)t * (size_t)R.n_layers + (size_t)li;
            const vm_router *r = m->routers[R.layers[li]];
            json_t *o = json_object(), *ex = json_array(), *u = json_object();
            for (int k = 0; k < R.K; k++) json_array_append_new(ex, json_integer(R.experts[at * (size_t)R.K + (size_t)k]));
            for (int k = 0; k < VM_UNC_COUNT; k++)
                if (r && r->ops && (r->ops->unc & VM_UNC_BIT(k))) {
                    const float x = R.unc[at * VM_UNC_COUNT + (size_t)k];
                    json_object_set_new(u, vm_gen_unc_name(k), isfinite(x) ? json_real(x) : json_null());
                }
            json_object_set_new(o, "pos", json_integer(t));
            json_object_set_new(o, "token", json_integer(ids[t]));
            json_object_set_new(o, "piece", jpiece(tok, ids[t]));
            json_object_set_new(o, "layer", json_integer(R.layers[li]));
            json_object_set_new(o, "logits", jfloats(R.logits + at * (size_t)R.N, R.N));
            json_object_set_new(o, "probs", jfloats(R.probs + at * (size_t)R.N, R.N));
            json_object_set_new(o, "experts", ex);
            json_object_set_new(o, "gates", jfloats(R.gates + at * (size_t)R.K, R.K));
            json_object_set_new(o, "unc", u);
            int e = json_dumpf(o, af.f, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
            json_decref(o);
            if (e || fputc('\n', af.f) == EOF) { vm_afile_abort(&af); cli_fail(CMD, "%s: write failed", out); goto done; }
        }
    }
    if (vm_afile_commit(&af)) { cli_fail(CMD, NULL); goto done; }
    rc = 0;
done:
    free(layers);
    free(ids);
    vm_gen_free(g);
    if (tok) vm_tokenizer_free(tok);
    if (m) vm_model_free(m);
    return rc;
}

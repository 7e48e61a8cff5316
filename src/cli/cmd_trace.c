// vmoer trace MODEL.gguf -p PROMPT -o OUT.jsonl
// One JSON object per (prompt token, MoE layer), token-major:
// {"pos","token","piece","layer","logits":[N],"probs":[N],"experts":[K],"gates":[K]}
// collected from the model's trace points ffn_moe_logits / _probs / _topk / _weights.
#include "cli/cli.h"
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
    printf("usage: vmoer trace MODEL.gguf -p PROMPT -o OUT.jsonl [options]\n\n"
           "Evaluates BOS + prompt and writes, for every token and MoE layer, one JSON line:\n"
           "  {\"pos\", \"token\", \"piece\", \"layer\", \"logits\": [N], \"probs\": [N], \"experts\": [K], \"gates\": [K]}\n"
           "(router logits and probabilities over all N experts, selected experts best first, gate weights).\n\n"
           "options:\n"
           "  -p, --prompt TEXT   prompt (required)\n"
           "  -o, --output FILE   output .jsonl (written atomically; required)\n"
           "  --adapter A.gguf    routers fitted by vmoer fit (refused if fitted for another model)\n"
           "  --threads N         worker threads\n"
           "  -h, --help          this text\n");
}

// Everything the trace callback stores: per (layer, pos) N logits, N probs, K experts, K gates.
typedef struct trace_buf {
    int n_layer, n_tok, N, K;
    float *logits, *probs, *gates;   // (n_layer, n_tok, N|K)
    int32_t *experts;                // (n_layer, n_tok, K)
    uint8_t *seen;                   // (n_layer, n_tok) bit mask of the four events
    int bad;                         // an event had an unexpected shape
} trace_buf;

static void trace_cb(void *ud, const vm_trace_ev *ev) {
    trace_buf *b = ud;
    static const char *names[4] = {"ffn_moe_logits", "ffn_moe_probs", "ffn_moe_topk", "ffn_moe_weights"};
    int k = 0;
    while (k < 4 && strcmp(ev->name, names[k])) k++;
    if (k == 4) return;
    int want = k < 2 ? b->N : b->K;
    if (ev->layer < 0 || ev->layer >= b->n_layer || ev->pos0 < 0 || ev->n_tokens < 0 ||
        ev->pos0 > b->n_tok - ev->n_tokens || ev->ne != want || (k == 2 ? !ev->i : !ev->f)) { b->bad = 1; return; }
    size_t at = (size_t)ev->layer * (size_t)b->n_tok + (size_t)ev->pos0, cnt = (size_t)ev->n_tokens * (size_t)want;
    if (k == 0) memcpy(b->logits + at * (size_t)b->N, ev->f, cnt * sizeof(float));
    if (k == 1) memcpy(b->probs + at * (size_t)b->N, ev->f, cnt * sizeof(float));
    if (k == 2) memcpy(b->experts + at * (size_t)b->K, ev->i, cnt * sizeof(int32_t));
    if (k == 3) memcpy(b->gates + at * (size_t)b->K, ev->f, cnt * sizeof(float));
    for (int t = 0; t < ev->n_tokens; t++) b->seen[at + (size_t)t] |= (uint8_t)(1u << k);
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
    const char *path = NULL, *prompt = NULL, *out = NULL;
    const char *adapter = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(); return 0; }
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            if (!(prompt = cli_value(CMD, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (!(out = cli_value(CMD, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--adapter")) {
            if (!(adapter = cli_value(CMD, argc, argv, &i))) return 1;
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
    if (!prompt) return cli_fail(CMD, "-p PROMPT is required");
    if (!out) return cli_fail(CMD, "-o OUT.jsonl is required");
    if (cli_output(CMD, out)) return 1;

    int rc = 1;
    vm_model *m = NULL;
    vm_tokenizer *tok = NULL;
    vm_ctx *c = NULL;
    int32_t *ids = NULL;
    trace_buf b = {0};
    vm_afile af = {0};
    if (!(m = vm_model_load(path))) { cli_fail(CMD, NULL); goto done; }
    if (adapter && vm_adapter_apply(m, adapter)) { cli_fail(CMD, NULL); goto done; }
    int n_moe = 0;
    for (int l = 0; l < m->hp.n_layer; l++) n_moe += m->layers[l].is_moe;
    if (n_moe == 0 || m->hp.n_expert < 1 || m->hp.n_expert_used < 1) {
        cli_fail(CMD, "%s: dense model (no MoE layers): nothing to trace; see vmoer upcycle", path);
        goto done;
    }
    if (!(tok = vm_tokenizer_from_gguf(m->gguf))) { cli_fail(CMD, NULL); goto done; }
    int n = vm_tokenize_alloc(tok, prompt, strlen(prompt), 1, 0, &ids);
    if (n < 0) { cli_fail(CMD, NULL); goto done; }
    if (n == 0) { cli_fail(CMD, "empty prompt and no BOS token: no positions"); goto done; }
    if (m->hp.n_ctx_train > 0 && n > m->hp.n_ctx_train) { cli_fail(CMD, "%d tokens exceed the context length %d", n, m->hp.n_ctx_train); goto done; }
    b.n_layer = m->hp.n_layer; b.n_tok = n; b.N = m->hp.n_expert; b.K = m->hp.n_expert_used;
    size_t cells = (size_t)b.n_layer * (size_t)n;
    b.logits = vm_calloc(cells * (size_t)b.N, sizeof(float));
    b.probs = vm_calloc(cells * (size_t)b.N, sizeof(float));
    b.gates = vm_calloc(cells * (size_t)b.K, sizeof(float));
    b.experts = vm_calloc(cells * (size_t)b.K, sizeof(int32_t));
    b.seen = vm_calloc(cells, 1);
    if (!b.logits || !b.probs || !b.gates || !b.experts || !b.seen) { cli_fail(CMD, NULL); goto done; }
    if (!(c = vm_ctx_init(m, n, n < 512 ? n : 512))) { cli_fail(CMD, NULL); goto done; }
    vm_ctx_set_trace(c, trace_cb, &b);
    if (vm_ctx_eval(c, ids, n, NULL)) { cli_fail(CMD, NULL); goto done; }
    if (b.bad) { cli_fail(CMD, "the model reported a routing trace of unexpected shape"); goto done; }
    if (vm_afile_open(&af, out)) { cli_fail(CMD, NULL); goto done; }
    for (int t = 0; t < n; t++) {
        for (int l = 0; l < b.n_layer; l++) {
            if (!m->layers[l].is_moe) continue;
            size_t at = (size_t)l * (size_t)n + (size_t)t;
            if (b.seen[at] != 15) { vm_afile_abort(&af); cli_fail(CMD, "no routing trace for layer %d, position %d", l, t); goto done; }
            json_t *o = json_object(), *ex = json_array();
            for (int k = 0; k < b.K; k++) json_array_append_new(ex, json_integer(b.experts[at * (size_t)b.K + (size_t)k]));
            json_object_set_new(o, "pos", json_integer(t));
            json_object_set_new(o, "token", json_integer(ids[t]));
            json_object_set_new(o, "piece", jpiece(tok, ids[t]));
            json_object_set_new(o, "layer", json_integer(l));
            json_object_set_new(o, "logits", jfloats(b.logits + at * (size_t)b.N, b.N));
            json_object_set_new(o, "probs", jfloats(b.probs + at * (size_t)b.N, b.N));
            json_object_set_new(o, "experts", ex);
            json_object_set_new(o, "gates", jfloats(b.gates + at * (size_t)b.K, b.K));
            int e = json_dumpf(o, af.f, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
            json_decref(o);
            if (e || fputc('\n', af.f) == EOF) { vm_afile_abort(&af); cli_fail(CMD, "%s: write failed", out); goto done; }
        }
    }
    if (vm_afile_commit(&af)) { cli_fail(CMD, NULL); goto done; }
    rc = 0;
done:
    free(b.logits); free(b.probs); free(b.gates); free(b.experts); free(b.seen);
    free(ids);
    if (c) vm_ctx_free(c);
    if (tok) vm_tokenizer_free(tok);
    if (m) vm_model_free(m);
    return rc;
}

// vmoer experts MODEL.gguf --text FILE [--json OUT] [--tokens N] [--seed S]
// Measured expert specialisation (eval/experts.h): loss with the router vs random routing, router
// logit spread, expert loads, how different the experts' outputs are.
#include "cli/cli.h"
#include "eval/experts.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "train/adapter.h"
#include "util/err.h"
#include "util/fileio.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

static const char *CMD = "experts";

static void usage(void) {
    printf("usage: vmoer experts MODEL.gguf --text FILE [options]\n\n"
           "Does routing matter? On plain text (read as `vmoer train` reads it: documents at blank\n"
           "lines, BOS each; windows of --seq predictions from position 0):\n"
           "  loss_router           nats/token with the model's own top-K routing\n"
           "  loss_random_routing   every MoE layer picks K distinct experts uniformly at random per\n"
           "                        token (seeded stream); gates = the gate convention on their logits\n"
           "                        (and per layer: only that layer at random)\n"
           "  router_logit_sd       SD over experts of a token's router logits, mean over tokens\n"
           "  logit_gap             K-th minus (K+1)-th largest logit, mean over tokens\n"
           "  load                  share of the top-K selections per expert and layer (min: dead experts)\n"
           "  expert_diff           mean over expert pairs of ||E_a(u) - E_b(u)|| / mean_e ||E_e(u)||\n"
           "                        on the same tokens (0: identical experts)\n\n"
           "options:\n"
           "  --text FILE          text to measure on (required)\n"
           "  --json OUT           also write the numbers as JSON\n"
           "  --tokens N           predictions scored, whole windows (default 16384; 0 = all the text)\n"
           "  --seq N              predictions per window (default 256)\n"
           "  --diff-tokens N      tokens of the expert_diff sample (default 512)\n"
           "  --seed S             random-routing stream (default 0)\n"
           "  --adapter A.gguf     routers fitted by vmoer fit instead of the model's own\n"
           "  --threads N          worker threads\n"
           "  -h, --help           this text\n");
}

static void print_layers(const char *name, const double *x, int n) {
    printf("%-22s", name);
    for (int i = 0; i < n; i++) printf(" %8.4f", x[i]);
    printf("\n");
}

int cmd_experts(int argc, char **argv) {
    const char *path = NULL, *text = NULL, *json = NULL, *adapter = NULL;
    vm_expert_stats_opts o;
    vm_expert_stats_opts_default(&o);
    long lv;
    uint64_t uv;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(); return 0; }
#define VAL() if (!(v = cli_value(CMD, argc, argv, &i))) return 1
        else if (!strcmp(a, "--text")) { VAL(); text = v; }
        else if (!strcmp(a, "--json")) { VAL(); json = v; }
        else if (!strcmp(a, "--adapter")) { VAL(); adapter = v; }
        else if (!strcmp(a, "--tokens")) { VAL(); if (cli_long(CMD, a, v, 0, LONG_MAX, &lv)) return 1; o.max_tokens = lv; }
        else if (!strcmp(a, "--seq")) { VAL(); if (cli_long(CMD, a, v, 1, 1 << 20, &lv)) return 1; o.seq = (int)lv; }
        else if (!strcmp(a, "--diff-tokens")) { VAL(); if (cli_long(CMD, a, v, 0, 1 << 20, &lv)) return 1; o.diff_tokens = (int)lv; }
        else if (!strcmp(a, "--seed")) { VAL(); if (cli_u64(CMD, a, v, &uv)) return 1; o.seed = uv; }
        else if (!strcmp(a, "--threads")) { VAL(); if (cli_threads(CMD, v)) return 1; }
#undef VAL
        else if (a[0] == '-' && a[1]) return cli_fail(CMD, "unknown option '%s' (see --help)", a);
        else {
            if (path) return cli_fail(CMD, "unexpected argument '%s' (see --help)", a);
            path = a;
        }
    }
    if (!path) return cli_fail(CMD, "expected MODEL.gguf (see --help)");
    if (!text) return cli_fail(CMD, "--text FILE is required");

    int rc = 1;
    vm_model *m = NULL;
    vm_tokenizer *tok = NULL;
    vm_expert_stats s = {0};
    json_t *j = NULL;
    vm_afile af = {0};
    if (!(m = vm_model_load(path))) { cli_fail(CMD, NULL); goto done; }
    if (adapter && vm_adapter_apply(m, adapter)) { cli_fail(CMD, NULL); goto done; }
    if (vm_model_n_expert(m) <= 0) { cli_fail(CMD, "%s: dense model (no experts): nothing to measure", path); goto done; }
    if (!(tok = vm_tokenizer_from_gguf(m->gguf))) { cli_fail(CMD, NULL); goto done; }
    if (vm_expert_stats_run(m, tok, text, &o, &s)) { cli_fail(CMD, NULL); goto done; }
    if (json) {
        if (!(j = vm_expert_stats_json(&s))) { cli_fail(CMD, "out of memory"); goto done; }
        if (vm_afile_open(&af, json)) { cli_fail(CMD, NULL); goto done; }
        if (json_dumpf(j, af.f, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9)) ||
            fputc('\n', af.f) == EOF) {
            vm_afile_abort(&af);
            cli_fail(CMD, "error writing %s", json);
            goto done;
        }
        if (vm_afile_commit(&af)) { cli_fail(CMD, NULL); goto done; }
    }
    printf("%s: %d MoE layers, %d experts, top-%d; %lld tokens (%d windows of %d), seed %llu\n", path, s.n_moe,
           s.n_expert, s.n_expert_used, (long long)s.n_tokens, s.n_windows, s.seq, (unsigned long long)s.seed);
    printf("loss_router            %.4f nats/token\n", s.loss_router);
    printf("loss_random_routing    %.4f nats/token (cost %+.4f)\n", s.loss_random_routing,
           s.loss_random_routing - s.loss_router);
    printf("router_logit_sd        %.4f   logit_gap (K-th - (K+1)-th) %.4f\n", s.logit_sd_mean, s.logit_gap_mean);
    printf("expert_diff            %.4f   (%d tokens)\n", s.expert_diff_mean, s.diff_tokens);
    printf("load min               %.4f   (dead below 1/(4N) = %.4f)\n", s.load_min, 0.25 / s.n_expert);
    printf("per layer              ");
    for (int i = 0; i < s.n_moe; i++) printf(" %8d", s.layers[i]);
    printf("\n");
    printf("%-22s", "  random cost (alone)");
    for (int i = 0; i < s.n_moe; i++) printf(" %8.4f", s.loss_random_layer[i] - s.loss_router);
    printf("\n");
    print_layers("  router_logit_sd", s.logit_sd, s.n_moe);
    print_layers("  logit_gap", s.logit_gap, s.n_moe);
    print_layers("  expert_diff", s.expert_diff, s.n_moe);
    printf("%-22s", "  load min");
    for (int i = 0; i < s.n_moe; i++) {
        double mn = 1.0;
        for (int e = 0; e < s.n_expert; e++)
            if (s.load[(size_t)i * s.n_expert + e] < mn) mn = s.load[(size_t)i * s.n_expert + e];
        printf(" %8.4f", mn);
    }
    printf("\n");
    rc = 0;
done:
    json_decref(j);
    vm_expert_stats_free(&s);
    vm_tokenizer_free(tok);
    vm_model_free(m);
    return rc;
}

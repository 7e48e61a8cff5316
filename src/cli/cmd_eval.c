// vmoer eval MODEL.gguf [--adapter A.gguf | --router KIND] --data PATH [--ood NAME=PATH ...] -o OUTDIR
// Scores an MCQA set with the model's routers, every uncertainty score per question, OOD sets,
// temperature scaling on a validation set, routing stability under embedding noise and cost;
// writes questions.jsonl, metrics.json, CSVs, curves.json and report.html (src/eval/eval.h).
#include "cli/cli.h"
#include "data/dataset.h"
#include "data/task.h"
#include "eval/eval.h"
#include "model/model.h"
#include "train/adapter.h"
#include "util/dist.h"
#include "util/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *CMD = "eval";

#define MAX_OOD 16
#define MAX_GAMMA 32

static void usage(void) {
    char kinds[256];
    vm_router_kind_list(0, kinds, sizeof kinds);
    printf("usage: vmoer eval MODEL.gguf --data PATH -o OUTDIR [options]\n\n"
           "Scores a multiple-choice set (method.md §5) and writes into OUTDIR: questions.jsonl (per question:\n"
           "probabilities, prediction, every uncertainty score), metrics.json (acc, acc_norm, nll, brier, ece with\n"
           "a bootstrap interval, mce, ece_adaptive/signed/classwise, aurc, OOD auroc/aupr/fpr95 per set and score,\n"
           "stability, cost; conventions named inside), metrics.csv, reliability.csv, risk_coverage.csv, roc.csv,\n"
           "ood.csv, stability.csv, curves.json and report.html.\n\n"
           "options:\n"
           "  --data PATH          in-distribution set: a file/folder (format detected), or a folder name under\n"
           "                       $VMOER_SHARED/data/mcqa (test.jsonl, else dev.jsonl), e.g. openbookqa\n"
           "  --ood NAME=PATH[@SUBJECT]  an OOD set (repeatable, up to %d); @SUBJECT keeps one subject (MedMCQA)\n"
           "  --val PATH           validation set: adds the method '<router>+ts' (temperature scaling fitted there)\n"
           "  --format NAME        format of every set: obqa, arc, sciq, medmcqa, mmlu, jsonl (default: detect\n"
           "                       each file)\n"
           "  --adapter A.gguf     trained routers from `vmoer fit`\n"
           "  --router KIND        replace every router by a fresh one of this kind (baselines): %s\n"
           "  --samples S --temp T --dropout P --members M   router options (defaults of vm_router_opts)\n"
           "  --score MODE         letter: the paper's prompt with the chat template (default); loglik:\n"
           "                       lm-eval log-likelihood; loglik-raw: the question as plain context\n"
           "                       (story cloze); pmi: loglik-raw minus log p(choice | BOS)\n"
           "  --chat-template NAME template to use instead of the model's (none = raw text; auto = the model's)\n"
           "  --limit N            first N items of every set (0 = all; default 0)\n"
           "  --passes P           model passes per question for stochastic routers (default %d: the method,\n"
           "                       which averages its samples inside the router); P > 1 is multi-pass Monte\n"
           "                       Carlo on top (mean probabilities, MI), labelled as such in the outputs\n"
           "  --noise-grid G,...   stability noise levels gamma (default 0,0.001,0.002,0.005,0.007,0.01,0.02,0.05;\n"
           "                       'none' skips the stability runs)\n"
           "  --stability-limit N  first N prompts used for stability (default: all --limit items)\n"
           "  --time-items N       prompts timed for the cost ratio (default 50)\n"
           "  --bins M             ECE bins, 1..1000 (default 10; the paper reports 10 and 15)\n"
           "  --boot B             bootstrap replicates for the ECE interval (default 1000; 0 = none)\n"
           "  --seed S             seed of router streams, noise and bootstrap (default 0)\n"
           "  --threads N          worker threads\n"
           "  -o, --output OUTDIR  output folder (created)\n"
           "  -h, --help           this text\n", MAX_OOD, kinds, VM_EVAL_PASSES);
}

static int parse_grid(const char *v, double *g, int *n) {
    if (!strcmp(v, "none")) { *n = 0; return 0; }
    *n = 0;
    const char *p = v;
    while (*p) {
        char *end;
        double x = strtod(p, &end);
        if (end == p || !(x >= 0.0) || x > 10.0 || *n == MAX_GAMMA)
            { cli_fail(CMD, "--noise-grid: bad list '%s' (comma-separated gamma in [0, 10], at most %d)", v, MAX_GAMMA); return -1; }
        g[(*n)++] = x;
        p = end;
        if (*p == ',') p++;
        else if (*p) { cli_fail(CMD, "--noise-grid: bad list '%s'", v); return -1; }
    }
    if (*n == 0) { cli_fail(CMD, "--noise-grid: empty list"); return -1; }
    return 0;
}

int cmd_eval(int argc, char **argv) {
    const char *model_path = NULL, *adapter = NULL, *router = NULL, *outdir = NULL, *score = "letter";
    const char *tmpl_name = NULL, *data_arg = NULL, *val_arg = NULL, *fmt_arg = NULL;
    const char *ood_args[MAX_OOD];
    int n_ood = 0, n_gamma = -1;   // -1: the library's default grid
    double grid[MAX_GAMMA];
    long limit = 0, passes = 0, bins = 10, boot = 1000, stab_limit = -1, time_items = 50;
    uint64_t seed = 0;
    vm_router_opts ropts;
    vm_router_opts_default(&ropts);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        double d;
        long l;
#define VAL() if (!(v = cli_value(CMD, argc, argv, &i))) return 1
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(); return 0; }
        else if (!strcmp(a, "--data")) { VAL(); data_arg = v; }
        else if (!strcmp(a, "--ood")) {
            VAL();
            if (n_ood == MAX_OOD) return cli_fail(CMD, "at most %d --ood sets", MAX_OOD);
            ood_args[n_ood++] = v;
        }
        else if (!strcmp(a, "--val")) { VAL(); val_arg = v; }
        else if (!strcmp(a, "--format")) { VAL(); fmt_arg = v; }
        else if (!strcmp(a, "--adapter")) { VAL(); adapter = v; }
        else if (!strcmp(a, "--router")) { VAL(); router = v; }
        else if (!strcmp(a, "--score")) { VAL(); score = v; }
        else if (!strcmp(a, "--chat-template")) { VAL(); tmpl_name = v; }
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) { VAL(); outdir = v; }
        else if (!strcmp(a, "--limit")) { VAL(); if (cli_long(CMD, a, v, 0, 100000000, &limit)) return 1; }
        else if (!strcmp(a, "--passes")) { VAL(); if (cli_long(CMD, a, v, 1, 10000, &passes)) return 1; }
        else if (!strcmp(a, "--bins")) { VAL(); if (cli_long(CMD, a, v, 1, 1000, &bins)) return 1; }
        else if (!strcmp(a, "--boot")) { VAL(); if (cli_long(CMD, a, v, 0, 1000000, &boot)) return 1; }
        else if (!strcmp(a, "--stability-limit")) { VAL(); if (cli_long(CMD, a, v, 0, 100000000, &stab_limit)) return 1; }
        else if (!strcmp(a, "--time-items")) { VAL(); if (cli_long(CMD, a, v, 1, 100000000, &time_items)) return 1; }
        else if (!strcmp(a, "--seed")) { VAL(); if (cli_u64(CMD, a, v, &seed)) return 1; }
        else if (!strcmp(a, "--threads")) { VAL(); if (cli_threads(CMD, v)) return 1; }
        else if (!strcmp(a, "--noise-grid")) { VAL(); if (parse_grid(v, grid, &n_gamma)) return 1; }
        else if (!strcmp(a, "--samples")) { VAL(); if (cli_long(CMD, a, v, 1, 100000, &l)) return 1; ropts.samples = (int)l; }
        else if (!strcmp(a, "--members")) { VAL(); if (cli_long(CMD, a, v, 1, 1000, &l)) return 1; ropts.members = (int)l; }
        else if (!strcmp(a, "--temp")) { VAL(); if (cli_float(CMD, a, v, 1e-6, 1e6, &d)) return 1; ropts.temp = (float)d; }
        else if (!strcmp(a, "--dropout")) { VAL(); if (cli_float(CMD, a, v, 0, 0.999, &d)) return 1; ropts.dropout = (float)d; }
        else if (a[0] == '-' && a[1]) return cli_fail(CMD, "unknown option '%s' (see --help)", a);
        else if (!model_path) model_path = a;
        else return cli_fail(CMD, "unexpected argument '%s' (see --help)", a);
#undef VAL
    }
    if (!model_path) return cli_fail(CMD, "expected MODEL.gguf (see --help)");
    if (!data_arg) return cli_fail(CMD, "--data PATH is required");
    if (!outdir) return cli_fail(CMD, "-o OUTDIR is required");
    if (cli_output_dir(CMD, outdir, vm_eval_output_names)) return 1;
    if (adapter && router) return cli_fail(CMD, "--adapter and --router exclude each other");
    if (router) {
        int ok = 0;
        for (const char *const *k = vm_router_kind_names(); *k; k++) ok |= !strcmp(*k, router);
        if (!ok) return cli_fail(CMD, "unknown router kind '%s' (see --help)", router);
    }
    vm_eval_report_params p = vm_eval_report_default_params();
    p.val = val_arg;
    p.ood = ood_args;
    p.n_ood = n_ood;
    p.score = score;
    p.chat_template = tmpl_name;
    p.format = fmt_arg;
    p.limit = limit;
    p.passes = (int)passes;
    p.bins = (int)bins;
    p.boot = (int)boot;
    p.noise_grid = grid;
    p.n_noise = n_gamma;
    p.stability_limit = stab_limit;
    p.time_items = (int)time_items;
    p.seed = seed;
    p.model_label = model_path;
    p.adapter_label = adapter;
    p.verbose = vm_dist_rank() == 0;   // under mpirun one rank speaks
    p.distributed = 1;                 // and the items are split over the ranks (one process: no change)
    vm_task_mode mode;   // flags checked before the model loads
    if (vm_task_mode_parse(score, &mode)) return cli_fail(CMD, NULL);
    vm_mcq_format fmt = VM_MCQ_FORMAT_AUTO;
    if (fmt_arg && vm_mcq_format_parse(fmt_arg, &fmt)) return cli_fail(CMD, NULL);

    vm_model *m = vm_model_load(model_path);
    if (!m) return cli_fail(CMD, NULL);
    int rc = 1;
    if (vm_model_n_expert(m) == 0) { cli_fail(CMD, "%s is a dense model (no MoE layer to route)", model_path); goto done; }
    if (adapter) {
        vm_adapter_info info;
        if (vm_adapter_apply_ex(m, adapter, 0, &info)) { cli_fail(CMD, NULL); goto done; }
    } else if (router) {   // every MoE layer
        if (vm_model_set_routers(m, router, NULL, 0, &ropts)) { cli_fail(CMD, NULL); goto done; }
    }
    if (vm_eval_report(m, data_arg, outdir, &p)) { cli_fail(CMD, NULL); goto done; }
    rc = 0;
done:
    vm_model_free(m);
    return rc;
}

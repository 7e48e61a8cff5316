// vmoer eval MODEL.gguf [--adapter A.gguf | --router KIND] --data PATH [--ood NAME=PATH ...] -o OUTDIR
// Scores an MCQA set with the model's routers, every uncertainty score per question, OOD sets,
// temperature scaling on a validation set, routing stability under embedding noise and cost;
// writes questions.jsonl, metrics.json, CSVs, curves.json and report.html (src/eval/eval.h).
#include "cli/cli.h"
#include "data/dataset.h"
#include "data/task.h"
#include "eval/eval.h"
#include "model/model.h"
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"
#include "train/adapter.h"
#include "util/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *CMD = "eval";

#define MAX_OOD 16
#define MAX_GAMMA 32
static const double default_grid[] = { 0, 0.001, 0.002, 0.005, 0.007, 0.01, 0.02, 0.05 };

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

// A set given on the command line: NAME=PATH[@SUBJECT] or PATH.
typedef struct set_arg { char *name, *path, *subject; } set_arg;

static int exists(const char *p) { struct stat st; return stat(p, &st) == 0; }

// Resolves a data argument: an existing path, or a shared folder name.
static char *resolve_data(const char *arg) {
    if (exists(arg)) return vm_strdup(arg);
    const char *sh = getenv("VMOER_SHARED");
    if (!sh) sh = "../shared";
    static const char *const files[] = { "test.jsonl", "dev.jsonl", "validation.jsonl" };
    char buf[4096];
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(buf, sizeof buf, "%s/data/mcqa/%s/%s", sh, arg, files[i]);
        if (exists(buf)) return vm_strdup(buf);
    }
    vm_err("data '%s': no such file, and no %s/data/mcqa/%s/{test,dev,validation}.jsonl", arg, sh, arg);
    return NULL;
}

static int parse_set(const char *flag, const char *v, int named, set_arg *out) {
    memset(out, 0, sizeof *out);
    char *s = vm_strdup(v);
    if (!s) return -1;
    char *path = s;
    if (named) {
        char *eq = strchr(s, '=');
        if (!eq || eq == s || !eq[1]) { free(s); cli_fail(CMD, "%s expects NAME=PATH, got '%s'", flag, v); return -1; }
        *eq = 0;
        path = eq + 1;
        out->name = vm_strdup(s);
    }
    char *at = strrchr(path, '@');
    if (at && at[1]) { *at = 0; out->subject = vm_strdup(at + 1); }
    out->path = resolve_data(path);
    free(s);
    if (!out->path) { cli_fail(CMD, NULL); return -1; }
    return 0;
}

static void set_free(set_arg *a) { free(a->name); free(a->path); free(a->subject); }

static int load_set(const set_arg *a, long limit, vm_mcq_format fmt, vm_dataset *ds) {
    vm_dataset_opts o;
    vm_dataset_opts_default(&o);
    o.format = fmt;
    o.limit = (size_t)limit;
    o.subject = a->subject;
    return vm_dataset_load(ds, a->path, &o);
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
    int n_ood = 0, n_gamma = (int)(sizeof default_grid / sizeof *default_grid);
    double grid[MAX_GAMMA];
    memcpy(grid, default_grid, sizeof default_grid);
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
    vm_task_mode mode;
    if (vm_task_mode_parse(score, &mode)) return cli_fail(CMD, NULL);
    vm_mcq_format fmt = VM_MCQ_FORMAT_AUTO;
    if (fmt_arg && vm_mcq_format_parse(fmt_arg, &fmt)) return cli_fail(CMD, NULL);
    if (router) {
        int ok = 0;
        for (const char *const *k = vm_router_kind_names(); *k; k++) ok |= !strcmp(*k, router);
        if (!ok) return cli_fail(CMD, "unknown router kind '%s' (see --help)", router);
    }

    int rc = 1, n_sets = 0;
    set_arg id_arg = {0}, val_set = {0}, oods[MAX_OOD];
    memset(oods, 0, sizeof oods);
    vm_dataset ds_id = {0}, ds_val = {0}, ds_ood[MAX_OOD];
    memset(ds_ood, 0, sizeof ds_ood);
    vm_eval_set sets[1 + MAX_OOD], val = {0};
    memset(sets, 0, sizeof sets);
    vm_stability st = {0};
    vm_cost cost = {0};
    vm_tokenizer *tok = NULL;
    vm_model *m = NULL;
    char kind_buf[64] = "";

    if (parse_set("--data", data_arg, 0, &id_arg)) goto done;
    if (val_arg && parse_set("--val", val_arg, 0, &val_set)) goto done;
    if (val_arg && !strcmp(val_set.path, id_arg.path)) {   // temperature is never fitted on the test set
        cli_fail(CMD, "--val %s is the evaluation set itself; give a validation split", val_set.path);
        goto done;
    }
    for (int i = 0; i < n_ood; i++) {
        if (parse_set("--ood", ood_args[i], 1, &oods[i])) goto done;
        if (!strcmp(oods[i].name, "id")) { cli_fail(CMD, "--ood: the name 'id' is reserved"); goto done; }
        for (int j = 0; j < i; j++)
            if (!strcmp(oods[i].name, oods[j].name)) { cli_fail(CMD, "--ood: name '%s' given twice", oods[i].name); goto done; }
    }
    if (load_set(&id_arg, limit, fmt, &ds_id)) { cli_fail(CMD, NULL); goto done; }
    if (val_arg && load_set(&val_set, limit, fmt, &ds_val)) { cli_fail(CMD, NULL); goto done; }
    for (int i = 0; i < n_ood; i++)
        if (load_set(&oods[i], limit, fmt, &ds_ood[i])) { cli_fail(CMD, NULL); goto done; }

    if (!(m = vm_model_load(model_path))) { cli_fail(CMD, NULL); goto done; }
    if (vm_model_n_expert(m) == 0) { cli_fail(CMD, "%s is a dense model (no MoE layer to route)", model_path); goto done; }
    if (adapter) {
        vm_adapter_info info;
        if (vm_adapter_apply_ex(m, adapter, 0, &info)) { cli_fail(CMD, NULL); goto done; }
        ropts = info.opts;
    } else if (router && vm_model_set_routers(m, router, NULL, 0, &ropts)) {   // every MoE layer
        cli_fail(CMD, NULL);
        goto done;
    }
    snprintf(kind_buf, sizeof kind_buf, "%s", vm_eval_model_router(m) ? vm_eval_model_router(m) : "deterministic");
    if (!(tok = vm_tokenizer_from_gguf(vm_model_gguf(m)))) { cli_fail(CMD, NULL); goto done; }
    char note[256] = "";
    if (tmpl_name && !strcmp(tmpl_name, "auto")) tmpl_name = NULL;   // as `vmoer fit`
    int tmpl = vm_chat_pick_gguf(vm_model_gguf(m), tmpl_name, note, sizeof note);
    if (tmpl < 0) { cli_fail(CMD, NULL); goto done; }
    if (note[0]) fprintf(stderr, "vmoer eval: %s\n", note);
    vm_task task;
    vm_task_init(&task, tok, mode, tmpl, m->hp.n_ctx_train);

    const int sampled = vm_eval_kind_sampled(kind_buf) || !strcmp(kind_buf, "mixed");
    vm_eval_opts eo = { .passes = sampled ? (int)(passes ? passes : VM_EVAL_PASSES) : 1, .seed = seed, .distributed = 1 };
    fprintf(stderr, "vmoer eval: router %s, %s scoring, template %s, %d pass(es) per question\n", kind_buf,
            vm_task_mode_name(mode), vm_chat_name(tmpl), eo.passes);
    if (vm_eval_run(m, &task, &ds_id, "id", &eo, &sets[0])) { cli_fail(CMD, NULL); goto done; }
    n_sets = 1;
    fprintf(stderr, "vmoer eval: id: %d items (%d skipped) in %.1f s\n", sets[0].n, sets[0].n_skipped, sets[0].seconds);
    for (int i = 0; i < n_ood; i++) {
        if (vm_eval_run(m, &task, &ds_ood[i], oods[i].name, &eo, &sets[1 + i])) { cli_fail(CMD, NULL); goto done; }
        n_sets++;
        fprintf(stderr, "vmoer eval: %s: %d items (%d skipped) in %.1f s\n", oods[i].name, sets[1 + i].n,
                sets[1 + i].n_skipped, sets[1 + i].seconds);
    }
    if (val_arg) {
        if (vm_eval_run(m, &task, &ds_val, "val", &eo, &val)) { cli_fail(CMD, NULL); goto done; }
        fprintf(stderr, "vmoer eval: val: %d items in %.1f s\n", val.n, val.seconds);
    }
    if (n_gamma > 0) {
        vm_dataset sub = ds_id;
        if (stab_limit > 0 && (size_t)stab_limit < sub.n) sub.n = (size_t)stab_limit;
        if (vm_stability_run_dist(m, &task, &sub, n_gamma, grid, seed, eo.distributed, &st)) { cli_fail(CMD, NULL); goto done; }
        fprintf(stderr, "vmoer eval: stability over %lld tokens, L_bar %.4g\n", st.n_tokens, st.L_bar);
    }
    {   // cost: attention span averaged over every scored token of the in-distribution prompts
        double num = 0, den = 0;
        for (int i = 0; i < sets[0].n; i++) {
            const double T = sets[0].items[i].n_tokens;
            num += T * (T + 1) / 2;
            den += T;
        }
        if (vm_cost_flops(m, den > 0 ? num / den : 1, &cost) ||
            vm_cost_time(m, &task, &ds_id, (int)time_items, &cost)) { cli_fail(CMD, NULL); goto done; }
        cost.passes = eo.passes;
    }
    vm_eval_write_opts wo = { .outdir = outdir, .model_path = model_path, .adapter_path = adapter,
                              .data_path = id_arg.path, .router = kind_buf, .score = vm_task_mode_name(mode),
                              .val_path = val_arg ? val_set.path : NULL, .bins = (int)bins, .boot = (int)boot,
                              .seed = seed, .passes = eo.passes, .distributed = eo.distributed };
    if (vm_eval_write(&wo, n_sets, sets, val_arg ? &val : NULL, n_gamma > 0 ? &st : NULL, &cost)) {
        cli_fail(CMD, NULL);
        goto done;
    }
    fprintf(stderr, "vmoer eval: wrote %s/{questions.jsonl,metrics.json,report.html,...}\n", outdir);
    rc = 0;
done:
    for (int i = 0; i < n_sets; i++) vm_eval_set_free(&sets[i]);
    vm_eval_set_free(&val);
    vm_stability_free(&st);
    vm_dataset_free(&ds_id);
    vm_dataset_free(&ds_val);
    for (int i = 0; i < n_ood; i++) { vm_dataset_free(&ds_ood[i]); set_free(&oods[i]); }
    set_free(&id_arg);
    set_free(&val_set);
    vm_tokenizer_free(tok);
    vm_model_free(m);
    return rc;
}

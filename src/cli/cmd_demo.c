// vmoer demo [--model M.gguf] [--out DIR] [--seed S] [--quick]: the whole VMoER experiment on story
// cloze (src/eval/demo.h): MAP fine-tune, baselines, Bayesian routers, one table, report.html.
#include "cli/cli.h"
#include "data/task.h"
#include "eval/demo.h"
#include "util/err.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *CMD = "demo";

static void usage(const vm_demo_opts *d) {
    printf("usage: vmoer demo [options]\n\n"
           "The VMoER experiment in one command, on the story-cloze task (data/cloze/README.md):\n"
           "MAP fine-tune of the routers W_r of the last MoE layers on train (own held-out part, early stopping)\n"
           "-> the MAP router is the base -> deterministic, temperature scaling (T fitted on validation, never\n"
           "test), temp-sample (T 0.3), mc-dropout, VGLR-mf, VGLR-fc, VTSR (fitted like MAP) -> each scores the\n"
           "test set and two OOD sets (tinyshakespeare, wikitext2). Prints a table (ACC, NLL, ECE with bootstrap\n"
           "interval, MCE, Brier, OOD AUROC per set and score, Jaccard at gamma 0.01, FLOPs overhead) and a\n"
           "verdict computed from it; writes table.md, table.json (no times: the same seed gives the same bytes),\n"
           "timing.json, report.html, methods/<name>/ (`vmoer eval` outputs) and adapters/ into the output folder.\n\n"
           "options:\n"
           "  --model PATH      MoE GGUF (default %s)\n"
           "  --data DIR        story-cloze folder (default %s)\n"
           "  -o, --out DIR     output folder (default %s)\n"
           "  --seed S          every random stream (default 0)\n"
           "  --quick           tiny sizes (seconds; for tests): train 12, test 8, OOD 6, val 6, 1 epoch, 2 passes\n"
           "  --score MODE      pmi (default), loglik-raw or loglik (data/task.h)\n"
           "  --train N         train.jsonl items for the fits (default %d)\n"
           "  --val-frac F      part of those held out for early stopping (default %.2f)\n"
           "  --val N           validation.jsonl items for temperature scaling (default %d)\n"
           "  --test N          test.jsonl items (default %d)\n"
           "  --ood N           items per OOD set (default %d)\n"
           "  --layers N        the last N MoE layers are fitted / made Bayesian (default %d)\n"
           "  --epochs-map E    MAP epochs (default %d)\n"
           "  --epochs E        VGLR/VTSR epochs (default %d)\n"
           "  --lr-map LR       MAP peak learning rate (default %g)\n"
           "  --lr LR           VGLR/VTSR peak learning rate (default %g)\n"
           "  --batch B         effective batch (default %d)\n"
           "  --passes P        model passes per question for sampled methods (default %d)\n"
           "  --samples S       VGLR/MC-dropout router samples per token (default %d)\n"
           "  --stability N     test prompts for the Jaccard measurement (default %d)\n"
           "  --boot B          ECE bootstrap resamples (default %d)\n"
           "  --bins M          ECE bins (default %d)\n"
           "  --threads N       methods run side by side on N threads, one model copy each (default 2); the\n"
           "                    numbers do not depend on N\n"
           "  --quiet           no progress lines on stderr\n"
           "  -h, --help        this text\n",
           d->model_path, d->data_dir, d->outdir, d->n_train, (double)d->val_frac, d->n_val, d->n_test, d->n_ood,
           d->n_layers, d->epochs_map, d->epochs, (double)d->lr_map, (double)d->lr, d->batch, d->passes, d->samples,
           d->n_stab, d->boot, d->bins);
}

static int int_opt(const char *flag, const char *v, long lo, long hi, int *out) {
    long l;
    if (cli_long(CMD, flag, v, lo, hi, &l)) return -1;
    *out = (int)l;
    return 0;
}

int cmd_demo(int argc, char **argv) {
    vm_demo_opts o, def;
    vm_demo_opts_default(&o);
    def = o;
    // --quick first, so explicit sizes given with it still win
    for (int i = 1; i < argc; i++) if (!strcmp(argv[i], "--quick")) vm_demo_opts_quick(&o);
    const char *threads = "2";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        double d;
#define VAL() if (!(v = cli_value(CMD, argc, argv, &i))) return 1
#define INT(lo, hi, dst) do { VAL(); if (int_opt(a, v, lo, hi, dst)) return 1; } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(&def); return 0; }
        else if (!strcmp(a, "--quick")) continue;
        else if (!strcmp(a, "--model")) { VAL(); o.model_path = v; }
        else if (!strcmp(a, "--data")) { VAL(); o.data_dir = v; }
        else if (!strcmp(a, "-o") || !strcmp(a, "--out")) { VAL(); o.outdir = v; }
        else if (!strcmp(a, "--seed")) { VAL(); if (cli_u64(CMD, a, v, &o.seed)) return 1; }
        else if (!strcmp(a, "--score")) {
            VAL();
            if (vm_task_mode_parse(v, &o.mode)) return cli_fail(CMD, NULL);
            if (!vm_task_is_loglik(o.mode)) return cli_fail(CMD, "--score %s: story cloze is scored by continuation (pmi, loglik-raw, loglik)", v);
        }
        else if (!strcmp(a, "--train")) INT(4, 100000, &o.n_train);
        else if (!strcmp(a, "--val-frac")) { VAL(); if (cli_float(CMD, a, v, 0.01, 0.9, &d)) return 1; o.val_frac = (float)d; }
        else if (!strcmp(a, "--val")) INT(2, 100000, &o.n_val);
        else if (!strcmp(a, "--test")) INT(2, 100000, &o.n_test);
        else if (!strcmp(a, "--ood")) INT(1, 100000, &o.n_ood);
        else if (!strcmp(a, "--layers")) INT(1, 8, &o.n_layers);
        else if (!strcmp(a, "--epochs-map")) INT(1, 1000, &o.epochs_map);
        else if (!strcmp(a, "--epochs")) INT(1, 1000, &o.epochs);
        else if (!strcmp(a, "--lr-map")) { VAL(); if (cli_float(CMD, a, v, 1e-8, 10, &d)) return 1; o.lr_map = (float)d; }
        else if (!strcmp(a, "--lr")) { VAL(); if (cli_float(CMD, a, v, 1e-8, 10, &d)) return 1; o.lr = (float)d; }
        else if (!strcmp(a, "--batch")) INT(1, 100000, &o.batch);
        else if (!strcmp(a, "--passes")) INT(1, 1000, &o.passes);
        else if (!strcmp(a, "--samples")) INT(1, 100000, &o.samples);
        else if (!strcmp(a, "--stability")) INT(1, 100000, &o.n_stab);
        else if (!strcmp(a, "--boot")) INT(0, 1000000, &o.boot);
        else if (!strcmp(a, "--bins")) INT(1, 1000, &o.bins);
        else if (!strcmp(a, "--threads")) { VAL(); threads = v; }
        else if (!strcmp(a, "--quiet")) o.verbose = 0;
        else if (a[0] == '-' && a[1]) return cli_fail(CMD, "unknown option '%s' (see --help)", a);
        else return cli_fail(CMD, "unexpected argument '%s' (see --help)", a);
#undef INT
#undef VAL
    }
    if (cli_threads(CMD, threads)) return 1;
    if (cli_output_dir(CMD, o.outdir, NULL)) return 1;
    vm_demo_result r;
    if (vm_demo_run(&o, &r)) return cli_fail(CMD, NULL);
    char *md = vm_demo_table_md(&o, &r);
    if (!md) return cli_fail(CMD, "out of memory");
    fputs(md, stdout);
    free(md);
    printf("\nWall time %.1f s (%d thread(s)); per method fit / eval seconds:", r.seconds, omp_get_max_threads());
    for (int i = 0; i < r.n_rows; i++) printf(" %s %.1f/%.1f%s", r.rows[i].name, r.rows[i].sec_fit, r.rows[i].sec_eval,
                                              i + 1 < r.n_rows ? "," : "\n");
    printf("Wrote %s/{table.md,table.json,timing.json,report.html,methods/,adapters/}\n", o.outdir);
    return 0;
}

// vmoer demo [options]: the whole VMoER experiment on story cloze (src/demo/demo.h).
#include "cli/cli.h"
#include "data/task.h"
#include "demo/demo.h"
#include "util/err.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *CMD = "demo";

static void print_grid(const float *g, int n) {
    for (int i = 0; i < n; i++) printf("%s%g", i ? "," : "", (double)g[i]);
}

static void usage(const vm_demo_opts *d) {
    printf("usage: vmoer demo [options]\n\n"
           "The VMoER experiment in one command, on the story-cloze task (data/cloze/README.md), as a decisive\n"
           "test (docs/method.md, docs/demo.md): the routers of the MoE layers least stable under embedding noise\n"
           "are replaced by deterministic (the pretrained router), MAP (W_r fine-tuned), fixed-temperature\n"
           "sampling, MC-dropout, SWAG, VGLR-mf, VGLR-fc and VTSR, each with %d seeds; beta of the Bayesian routers\n"
           "is chosen from a grid on the fits' held-out NLL; every method is also shown temperature-scaled (T\n"
           "fitted on validation.jsonl, never on test). Each scores every test item and every OOD item in one\n"
           "model pass. Every metric is the mean over seeds with a 95%% paired bootstrap interval of its\n"
           "difference from the deterministic router; the verdict says better only when that interval excludes\n"
           "zero. Writes table.md, table.json (no times: the same seed gives the same bytes for any --threads),\n"
           "timing.json, report.html and adapters/ into the output folder (replaced as a whole at the end).\n\n"
           "options:\n"
           "  --model PATH      MoE GGUF (default %s)\n"
           "  --data DIR        story-cloze folder: train/validation/test.jsonl and ood-*.jsonl (default %s)\n"
           "  -o, --out DIR     output folder (default %s)\n"
           "  --seed S          the first seed; seed k is S + k (default %llu)\n"
           "  --seeds N         fit and inference seeds per method (default %d)\n"
           "  --quick           tiny sizes (seconds; for tests)\n"
           "  --score MODE      pmi (default), loglik-raw or loglik (data/task.h)\n"
           "  --train N         train.jsonl items for the fits (default %d)\n"
           "  --val-frac F      part of those each fit holds out for early stopping (default %.2f)\n"
           "  --val N           validation.jsonl items for temperature scaling (default %d)\n"
           "  --test N          test.jsonl items, 0 = all (default %d)\n"
           "  --ood N           items per OOD set, 0 = all (default %d)\n"
           "  --layers N        number of Bayesian layers (default %d)\n"
           "  --last-layers     the last N MoE layers instead of the least stable ones\n"
           "  --epochs E        VGLR/VTSR epochs (default %d)      --epochs-map E   MAP epochs (default %d)\n"
           "  --lr LR           VGLR/VTSR peak learning rate (default %g)   --lr-map LR (default %g)\n"
           "  --batch B         effective batch (default %d)        --patience P (default %d)\n"
           "  --beta LIST       VGLR beta grid (default ",
           d->n_seeds, d->model_path, d->data_dir, d->outdir, (unsigned long long)d->seed, d->n_seeds, d->n_train,
           (double)d->val_frac, d->n_val, d->n_test, d->n_ood, d->n_layers, d->epochs, d->epochs_map, (double)d->lr,
           (double)d->lr_map, d->batch, d->patience);
    print_grid(d->beta, d->n_beta);
    printf("; add 1, the ELBO, with 0.01,0.1,1)\n  --beta-t LIST     VTSR beta_T grid (default ");
    print_grid(d->beta_t, d->n_beta_t);
    printf(")\n"
           "  --samples S       VGLR/MC-dropout/SWAG router samples per token (default %d)\n"
           "  --swag-rank K     SWAG snapshots (deviation columns, default %d)\n"
           "  --swag-every C    SGD steps between SWAG snapshots (default %d)\n"
           "  --stability N     test prompts for the Jaccard measurement (default %d)\n"
           "  --boot B          bootstrap resamples (default %d)\n"
           "  --bins M          ECE bins (default %d)\n"
           "  --threads N       (method, seed) units run side by side on N threads, one model copy each\n"
           "                    (default 2); the numbers do not depend on N\n"
           "  --quiet           no progress lines on stderr\n"
           "  -h, --help        this text\n",
           d->samples, d->swag_rank, d->swag_every, d->n_stab, d->boot, d->bins);
}

static int int_opt(const char *flag, const char *v, long lo, long hi, int *out) {
    long l;
    if (cli_long(CMD, flag, v, lo, hi, &l)) return -1;
    *out = (int)l;
    return 0;
}

// "0.01,0.1,1": 1..VM_DEMO_MAX_GRID values >= 0.
static int grid_opt(const char *flag, const char *v, float *g, int *n) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", v);
    int k = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        double d;
        if (k == VM_DEMO_MAX_GRID) return cli_fail(CMD, "%s: at most %d values", flag, VM_DEMO_MAX_GRID), -1;
        if (cli_float(CMD, flag, t, 0, 1e6, &d)) return -1;
        g[k++] = (float)d;
    }
    if (k == 0) return cli_fail(CMD, "%s: no value", flag), -1;
    *n = k;
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
        else if (!strcmp(a, "--seeds")) INT(1, VM_DEMO_MAX_SEEDS, &o.n_seeds);
        else if (!strcmp(a, "--score")) {
            VAL();
            if (vm_task_mode_parse(v, &o.mode)) return cli_fail(CMD, NULL);
            if (!vm_task_is_loglik(o.mode)) return cli_fail(CMD, "--score %s: story cloze is scored by continuation (pmi, loglik-raw, loglik)", v);
        }
        else if (!strcmp(a, "--train")) INT(4, 100000, &o.n_train);
        else if (!strcmp(a, "--val-frac")) { VAL(); if (cli_float(CMD, a, v, 0.01, 0.9, &d)) return 1; o.val_frac = (float)d; }
        else if (!strcmp(a, "--val")) INT(2, 100000, &o.n_val);
        else if (!strcmp(a, "--test")) { INT(0, 100000, &o.n_test); if (o.n_test == 1) return cli_fail(CMD, "--test: 0 (all) or at least 2"); }
        else if (!strcmp(a, "--ood")) { INT(0, 100000, &o.n_ood); if (o.n_ood == 1) return cli_fail(CMD, "--ood: 0 (all) or at least 2"); }
        else if (!strcmp(a, "--layers")) INT(1, 8, &o.n_layers);
        else if (!strcmp(a, "--last-layers")) o.layers_auto = 0;
        else if (!strcmp(a, "--epochs-map")) INT(1, 1000, &o.epochs_map);
        else if (!strcmp(a, "--epochs")) INT(1, 1000, &o.epochs);
        else if (!strcmp(a, "--lr-map")) { VAL(); if (cli_float(CMD, a, v, 1e-8, 10, &d)) return 1; o.lr_map = (float)d; }
        else if (!strcmp(a, "--lr")) { VAL(); if (cli_float(CMD, a, v, 1e-8, 10, &d)) return 1; o.lr = (float)d; }
        else if (!strcmp(a, "--batch")) INT(1, 100000, &o.batch);
        else if (!strcmp(a, "--patience")) INT(1, 1000, &o.patience);
        else if (!strcmp(a, "--beta")) { VAL(); if (grid_opt(a, v, o.beta, &o.n_beta)) return 1; }
        else if (!strcmp(a, "--beta-t")) { VAL(); if (grid_opt(a, v, o.beta_t, &o.n_beta_t)) return 1; }
        else if (!strcmp(a, "--samples")) INT(1, 100000, &o.samples);
        else if (!strcmp(a, "--swag-rank")) INT(2, 1000, &o.swag_rank);
        else if (!strcmp(a, "--swag-every")) INT(1, 100000, &o.swag_every);
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
    static const char *const names[] = { "table.md", "table.json", "timing.json", "report.html", "adapters", "methods", NULL };
    if (cli_output_dir(CMD, o.outdir, names)) return 1;
    double sec;
    o.distributed = 1;   // under mpirun the jobs are split over the ranks (one process: no change)
    if (vm_demo_run(&o, &sec)) return cli_fail(CMD, NULL);
    return 0;
}

// `vmoer demo` (demo.h): MAP fine-tune -> baselines and Bayesian routers -> one comparison table,
// the verdict, report.html and the per-method `vmoer eval` folders. Metrics come from metrics.h,
// scoring from vm_eval_run, stability and cost from eval.h; this file only orchestrates and prints.
#include "eval/demo.h"
#include "eval/eval.h"
#include "eval/eval_internal.h"
#include "eval/metrics.h"
#include "report/report.h"
#include "tokenizer/tokenizer.h"
#include "train/fit.h"
#include "train/optim.h"
#include "util/err.h"
#include "util/fileio.h"

#include <errno.h>
#include <jansson.h>
#include <omp.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define BOOT_LEVEL 0.95
#define N_SETS (1 + VM_DEMO_N_OOD)

static const int score_unc[VM_DEMO_N_SCORES] = { VM_EVAL_UNC_NEG_MAXPROB, VM_EVAL_UNC_ENTROPY, VM_EVAL_UNC_MI,
                                                 VM_EVAL_UNC_ILV, VM_EVAL_UNC_GATE_ENTROPY, VM_EVAL_UNC_TEMPERATURE };
static const char *const score_names[VM_DEMO_N_SCORES] = { "maxprob", "entropy", "mi", "ilv", "gate_entropy", "T" };
static const char *const ood_files[VM_DEMO_N_OOD] = { "ood-tinyshakespeare.jsonl", "ood-wikitext2.jsonl" };
static const char *const ood_names[VM_DEMO_N_OOD] = { "tinyshakespeare", "wikitext2" };

const char *vm_demo_score_name(int k) { return k >= 0 && k < VM_DEMO_N_SCORES ? score_names[k] : "?"; }

void vm_demo_opts_default(vm_demo_opts *o) {
    memset(o, 0, sizeof *o);
    o->model_path = "data/models/stories-moe.gguf";
    o->data_dir = "data/cloze";
    o->outdir = "out/demo";
    o->mode = VM_TASK_PMI;
    o->n_train = 200; o->val_frac = 0.2f;
    o->n_val = 100; o->n_test = 100; o->n_ood = 80;
    o->n_layers = 2;
    // Bayesian heads: 3 epochs at 3e-2, chosen on the fits' own validation items (never test) on the
    // bundled model: val NLL vglr-mf 1.842 -> 1.600, vglr-fc 1.852 -> 1.583; at 1e-2 x 2 epochs
    // vglr-mf reached 1.757 and vglr-fc no gain; at 3e-3 x 3 epochs vglr-mf 1.682, vglr-fc no gain.
    // VTSR improved its validation NLL at none of 3e-3 .. 2e-1.
    o->epochs_map = 2; o->epochs = 3;
    o->lr_map = 1e-2f; o->lr = 3e-2f;
    o->batch = 8; o->patience = 2;
    o->passes = 3; o->samples = 16;
    o->n_stab = 40;
    o->boot = 1000; o->bins = 10;
    o->verbose = 1;
}

void vm_demo_opts_quick(vm_demo_opts *o) {
    o->n_train = 12; o->val_frac = 0.25f;
    o->n_val = 6; o->n_test = 8; o->n_ood = 6;
    o->epochs_map = 1; o->epochs = 1;
    o->passes = 2; o->samples = 4;
    o->n_stab = 3; o->boot = 50;
}

// ---------------------------------------------------------------- state

// One model per worker: methods run in parallel, each on its own copy of the (MAP) model, since
// routers and contexts hold state. Every method's numbers depend only on the seed, never on which
// worker ran it or in what order (each sets its routers afresh), so the table does not depend on
// the thread count.
typedef struct worker {
    vm_model *m;
    vm_tokenizer *tok;
    vm_task task;
} worker;

#define MAX_WORKERS 8

typedef struct demo {
    const vm_demo_opts *o;
    vm_demo_result *r;
    worker wk[MAX_WORKERS];
    int n_workers, n_layer;
    vm_dataset train, val, test, ood[VM_DEMO_N_OOD];
    int layers[8], nl;
    float *w_map[8];                               // the MAP W_r written into the model (owned)
    vm_eval_set sets[VM_DEMO_MAX_METHODS][N_SETS]; // per method: test, OOD sets
    vm_eval_set val_set;                           // the deterministic model on validation.jsonl
    vm_stability stab[VM_DEMO_MAX_METHODS];
    double t0, units_done, units_total, busy;   // busy: summed worker seconds of finished stages
    int stage, n_stages;
} demo;


static void fmt_dur(char *b, size_t n, double s) {
    if (!isfinite(s) || s < 0) snprintf(b, n, "?");
    else if (s < 60) snprintf(b, n, "%.0fs", s);
    else snprintf(b, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
}

// One stderr line per stage: what runs now, the elapsed time and an ETA from the throughput so far.
// Stage sizes are in "item passes" (one model pass over one item's sequences; fit_units, eval_units);
// workers running in parallel report from their own threads.
static void stage_begin(demo *d, const char *fmt, ...) VM_PRINTF(2, 3);
static void stage_begin(demo *d, const char *fmt, ...) {
    char what[256], el[32], eta[32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
#pragma omp critical(vm_demo_progress)
    {
        d->stage++;
        if (d->o->verbose) {
            const double t = vm_eval_now() - d->t0;
            fmt_dur(el, sizeof el, t);
            // seconds per unit on one worker so far, the rest shared by the workers
            fmt_dur(eta, sizeof eta, d->units_done > 0 ? d->busy / d->units_done * (d->units_total - d->units_done) /
                                                         d->n_workers : NAN);
            fprintf(stderr, "demo [%d/%d] %s (elapsed %s, ETA %s)\n", d->stage, d->n_stages, what, el, eta);
        }
    }
}

static void stage_end(demo *d, double units, double t_begin) {
    const double dt = vm_eval_now() - t_begin;
#pragma omp critical(vm_demo_progress)
    { d->units_done += units; d->busy += dt; }
}

// ---------------------------------------------------------------- routers, fits, MAP

static void router_opts(const demo *d, vm_router_opts *ro) {
    vm_router_opts_default(ro);
    ro->seed = d->o->seed;
    if (d->o->samples > 0) ro->samples = d->o->samples;
}

// Fresh routers of one kind in the chosen layers (the other MoE layers keep theirs).
static int set_routers(demo *d, worker *wk, const char *kind) {
    vm_router_opts ro;
    router_opts(d, &ro);
    for (int i = 0; i < d->nl; i++) {
        const int l = d->layers[i];
        vm_router *r = vm_router_create(kind, &wk->m->layers[l].rl, &ro);
        if (!r || vm_model_set_router(wk->m, l, r)) return vm_err_prefix("demo: router %s on layer %d", kind, l);
    }
    return 0;
}

// Work of one fit in item passes: the hidden-state cache (one pass per item), then per epoch
// forward, forward again and backward through the chosen layers (about 3 passes of them) per
// training item, and a validation pass per epoch.
static double fit_units(const demo *d, int epochs) {
    const double frac = (double)d->nl / d->n_layer;
    return d->o->n_train * (1.0 + epochs * (3.0 * (1.0 - d->o->val_frac) + d->o->val_frac) * frac);
}

static int fit(demo *d, worker *wk, int row, const char *kind, int epochs, float lr, vm_fit_stats *st) {
    const vm_demo_opts *o = d->o;
    vm_fit_opts fo;
    vm_fit_opts_default(&fo);
    fo.kind = kind;
    fo.n_layers = d->nl;
    memcpy(fo.layers, d->layers, (size_t)d->nl * sizeof(int));
    fo.epochs = epochs; fo.lr = lr; fo.batch = o->batch; fo.patience = o->patience;
    fo.seed = o->seed; fo.val_frac = o->val_frac; fo.mode = o->mode; fo.tmpl = VM_CHAT_NONE;
    fo.samples = o->samples; fo.progress = 2;
    char path[4200];
    snprintf(path, sizeof path, "%s/adapters/%s.gguf", o->outdir, kind);
    const double t = vm_eval_now();
    if (vm_fit_run(wk->m, wk->tok, &d->train, &fo, path, st)) return vm_err_prefix("demo: fit %s", kind);
    if (row >= 0) d->r->rows[row].sec_fit = vm_eval_now() - t;
    if (o->verbose)
        fprintf(stderr, "demo: %s fit: %d train / %d val items, %d epoch(s) (best %d), val nll %.4f -> %.4f, acc %.3f -> %.3f\n",
                kind, st->n_train, st->n_val, st->epochs_run, st->best_epoch, st->val_nll_init, st->val_nll_best,
                st->val_acc_init, st->val_acc_best);
    return 0;
}

// Writes the trained MAP W_r of the chosen layers (from worker 0's model) into every worker's router
// matrices, so every later router (deterministic, baselines, Bayesian heads around l_det = W_r u)
// starts from it. The buffers are shared read-only and freed after the models.
static int bake_map(demo *d) {
    const vm_model *m0 = d->wk[0].m;
    for (int i = 0; i < d->nl; i++) {
        const int l = d->layers[i];
        const vm_router *r = m0->routers[l];
        const int D = m0->layers[l].rl.n_embd, N = m0->layers[l].rl.n_expert;
        if (!r || !r->ops || strcmp(r->ops->name, "map") || r->n_params < 1 ||
            vm_param_numel(&r->params[0]) != (int64_t)D * N)
            return vm_err("demo: layer %d has no MAP router to take W_r from", l);
        if (!(d->w_map[i] = vm_malloc((size_t)D * N * sizeof(float)))) return -1;
        memcpy(d->w_map[i], r->params[0].w, (size_t)D * N * sizeof(float));
        const int64_t ne[2] = { D, N };
        for (int k = 0; k < d->n_workers; k++) {
            vm_layer *ly = &d->wk[k].m->layers[l];
            vm_tensor_init(&ly->ffn_gate_inp, ly->ffn_gate_inp.name, VM_TYPE_F32, 2, ne, d->w_map[i]);
        }
    }
    for (int k = 0; k < d->n_workers; k++)
        if (set_routers(d, &d->wk[k], "deterministic")) return -1;
    return 0;
}

// ---------------------------------------------------------------- metrics of one method

static int row_metrics(demo *d, vm_demo_row *w, const vm_eval_set *sets) {
    const vm_demo_opts *o = d->o;
    const vm_eval_set *id = &sets[0];
    const int n = id->n;
    int C = 1;
    for (int i = 0; i < n; i++) if (id->items[i].n_choices > C) C = id->items[i].n_choices;
    double *p = vm_calloc((size_t)n * C, sizeof(double));
    int *y = vm_malloc((size_t)n * sizeof(int));
    int rc = p && y ? 0 : -1;
    for (int i = 0; i < n && !rc; i++) {
        const vm_eval_item *e = &id->items[i];
        for (int k = 0; k < e->n_choices; k++) p[(size_t)i * C + k] = fmin(1.0, fmax(0.0, e->probs[k]));
        y[i] = e->answer;
    }
    w->n = n;
    w->ece_lo = w->ece_hi = NAN;
    if (!rc)
        rc = vm_metric_acc(n, C, p, y, &w->acc) || vm_metric_nll(n, C, p, y, &w->nll) ||
             vm_metric_brier(n, C, p, y, &w->brier) || vm_ece(n, C, p, y, o->bins, &w->ece) ||
             vm_ece_mce(n, C, p, y, o->bins, &w->mce) ? -1 : 0;
    if (!rc && o->boot > 0) {
        vm_metric_cls_ctx cx = { .kind = VM_METRIC_ECE, .C = C, .M = o->bins, .p = p, .y = y };
        vm_boot bo;
        if (vm_metric_bootstrap(vm_metric_cls_fn, &cx, n, o->boot, BOOT_LEVEL, o->seed, &bo)) rc = -1;
        else { w->ece_lo = bo.lo; w->ece_hi = bo.hi; }
    }
    free(p); free(y);
    for (int s = 0; s < VM_DEMO_N_OOD && !rc; s++) {
        const vm_eval_set *od = &sets[1 + s];
        int k = 0;
        for (int i = 0; i < od->n; i++) k += od->items[i].pred == od->items[i].answer;
        w->ood_acc[s] = od->n ? (double)k / od->n : NAN;
        double *a = vm_malloc((size_t)(n ? n : 1) * sizeof(double)), *b = vm_malloc((size_t)(od->n ? od->n : 1) * sizeof(double));
        if (!a || !b) { free(a); free(b); rc = -1; break; }
        for (int j = 0; j < VM_DEMO_N_SCORES && !rc; j++) {
            int finite = 1;
            for (int i = 0; i < n; i++) finite &= isfinite(a[i] = id->items[i].unc[score_unc[j]]);
            for (int i = 0; i < od->n; i++) finite &= isfinite(b[i] = od->items[i].unc[score_unc[j]]);
            w->auroc[s][j] = NAN;
            if (finite && vm_metric_auroc(n, a, od->n, b, &w->auroc[s][j])) rc = -1;
        }
        free(a); free(b);
    }
    return rc ? vm_err_prefix("demo: metrics of %s", w->name) : 0;
}

// Temperature scaling of another method's sets: p = softmax(log p_bar / T); the scores that follow
// from p (entropy, max-prob) are recomputed, MI is dropped, router read-outs stay.
static int scale_sets(const vm_eval_set *src, double T, vm_eval_set *dst) {
    memset(dst, 0, sizeof *dst);
    dst->name = vm_strdup(src->name);
    dst->items = vm_malloc((size_t)(src->n ? src->n : 1) * sizeof *dst->items);
    if (!dst->name || !dst->items) { vm_eval_set_free(dst); return -1; }
    dst->n = src->n; dst->seconds = src->seconds; dst->n_tokens = src->n_tokens;
    memcpy(dst->items, src->items, (size_t)src->n * sizeof *dst->items);
    for (int i = 0; i < dst->n; i++) {
        vm_eval_item *e = &dst->items[i];
        double q[VM_MCQ_MAX_CHOICES], h = 0;
        if (vm_temp_apply(1, e->n_choices, e->logp, T, q)) { vm_eval_set_free(dst); return -1; }
        int b = 0;
        for (int k = 0; k < e->n_choices; k++) {
            e->probs[k] = q[k];
            e->logp[k] = log(q[k] > 1e-300 ? q[k] : 1e-300);
            if (q[k] > 0) h -= q[k] * log(q[k]);
            if (q[k] > q[b]) b = k;
        }
        e->pred = b;
        e->unc[VM_EVAL_UNC_ENTROPY] = h;
        e->unc[VM_EVAL_UNC_NEG_MAXPROB] = -q[b];
        e->unc[VM_EVAL_UNC_MI] = NAN;
    }
    return 0;
}

static int fit_temperature(const vm_eval_set *val, double *T) {
    int C = 1;
    for (int i = 0; i < val->n; i++) if (val->items[i].n_choices > C) C = val->items[i].n_choices;
    double *z = vm_malloc((size_t)(val->n ? val->n : 1) * C * sizeof(double));
    int *y = vm_malloc((size_t)(val->n ? val->n : 1) * sizeof(int));
    int rc = z && y ? 0 : -1;
    for (int i = 0; i < val->n && !rc; i++) {
        for (int k = 0; k < C; k++)   // missing choices: a logit far below any real one (as eval_write)
            z[(size_t)i * C + k] = k < val->items[i].n_choices ? val->items[i].logp[k] : -1e4;
        y[i] = val->items[i].answer;
    }
    if (!rc) rc = vm_temp_fit(val->n, C, z, y, T);
    free(z); free(y);
    return rc;
}

// ---------------------------------------------------------------- one method

static double jaccard_layers(const demo *d, const vm_stability *st) {
    double s = 0;
    int k = 0;
    for (int l = 0; l < st->n_layer; l++)
        for (int i = 0; i < d->nl; i++)
            if (st->layers[l] == d->layers[i]) { s += st->jac[l]; k++; }
    return k ? s / k : NAN;
}

static double eval_units(const demo *d, int passes) {
    return (double)(d->o->n_test + VM_DEMO_N_OOD * d->o->n_ood) * passes + 0.5 * d->o->n_stab;
}

// Scores test and OOD sets with the routers now in the model, measures stability and FLOPs, fills
// row `row`, writes methods/<name>/. with_val: also the validation set (for temperature scaling).
static int eval_method(demo *d, worker *wk, int row, const char *name, int with_val) {
    const vm_demo_opts *o = d->o;
    vm_demo_row *w = &d->r->rows[row];
    snprintf(w->name, sizeof w->name, "%s", name);
    w->temperature = NAN;
    const char *kind = vm_eval_model_router(wk->m);
    const int sampled = vm_eval_kind_sampled(kind) || (kind && !strcmp(kind, "mixed"));
    w->passes = sampled ? o->passes : 1;
    vm_eval_opts eo = { .passes = o->passes, .seed = o->seed };
    const vm_dataset *ds[N_SETS] = { &d->test, &d->ood[0], &d->ood[1] };
    const double t = vm_eval_now();
    for (int s = 0; s < N_SETS; s++)
        if (vm_eval_run(wk->m, &wk->task, ds[s], s ? ood_names[s - 1] : "id", &eo, &d->sets[row][s])) return -1;
    if (with_val && vm_eval_run(wk->m, &wk->task, &d->val, "val", &eo, &d->val_set)) return -1;
    vm_dataset sub = d->test;
    if ((size_t)o->n_stab < sub.n) sub.n = (size_t)(o->n_stab > 0 ? o->n_stab : 1);
    const double g = VM_EVAL_GAMMA_HEADLINE;
    if (vm_stability_run(wk->m, &wk->task, &sub, 1, &g, o->seed, &d->stab[row])) return -1;
    w->jaccard_all = d->stab[row].jac_mean[0];
    w->jaccard = jaccard_layers(d, &d->stab[row]);
    // FLOPs at the mean attention span of the scored test sequences (as `vmoer eval`)
    double num = 0, den = 0;
    for (int i = 0; i < d->sets[row][0].n; i++) {
        const double T = d->sets[row][0].items[i].n_tokens;
        num += T * (T + 1) / 2; den += T;
    }
    vm_router_opts ro;
    router_opts(d, &ro);
    vm_cost cost = {0};
    if (vm_cost_flops(wk->m, den > 0 ? num / den : 1, &cost)) return -1;
    cost.passes = w->passes;
    w->flops_ratio = w->passes * cost.flops_method / cost.flops_base;
    w->sec_eval = vm_eval_now() - t;
    if (row_metrics(d, w, d->sets[row])) return -1;
    // the full `vmoer eval` outputs of this method (deterministic: with its temperature-scaled twin)
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/methods/%s", o->outdir, name);
    vm_eval_write_opts wo = { .outdir = dir, .model_path = o->model_path, .data_path = o->data_dir,
                              .router = name, .score = vm_task_mode_name(o->mode), .bins = o->bins,
                              .boot = o->boot, .seed = o->seed, .passes = w->passes };
    if (with_val) wo.val_path = "validation.jsonl";
    return vm_eval_write(&wo, N_SETS, d->sets[row], with_val ? &d->val_set : NULL, &d->stab[row], &cost);
}

// Temperature scaling: the deterministic row's answers rescaled with T fitted on validation.
static int ts_method(demo *d, int row, int det) {
    vm_demo_row *w = &d->r->rows[row];
    *w = d->r->rows[det];
    snprintf(w->name, sizeof w->name, "temp-scaling");
    w->sec_fit = w->sec_eval = 0;
    double T;
    if (fit_temperature(&d->val_set, &T)) return vm_err_prefix("demo: temperature scaling");
    w->temperature = T;
    for (int s = 0; s < N_SETS; s++)
        if (scale_sets(&d->sets[det][s], T, &d->sets[row][s])) return -1;
    return row_metrics(d, w, d->sets[row]);
}

// ---------------------------------------------------------------- table, verdict, files

static const char *num(char *b, size_t n, double x, int digits) {
    if (!isfinite(x)) snprintf(b, n, "n/a");
    else snprintf(b, n, "%.*f", digits, x);
    return b;
}

static const vm_demo_row *find_row(const vm_demo_result *r, const char *name) {
    for (int i = 0; i < r->n_rows; i++) if (!strcmp(r->rows[i].name, name)) return &r->rows[i];
    return NULL;
}

char *vm_demo_table_md(const vm_demo_opts *o, const vm_demo_result *r) {
    vm_sbuf b;
    vm_sbuf_init(&b);
    char x[10][32];
    vm_sbuf_printf(&b, "## vmoer demo: story cloze, model %s, seed %llu\n\n", o->model_path, (unsigned long long)o->seed);
    vm_sbuf_printf(&b, "Scoring %s. Fits on the first %d items of train.jsonl (fraction %.2f held out for early "
                   "stopping); routers of MoE layers", vm_task_mode_name(o->mode), o->n_train, (double)o->val_frac);
    for (int i = 0; i < r->n_layers; i++) vm_sbuf_printf(&b, "%s %d", i ? "," : "", r->layers[i]);
    vm_sbuf_printf(&b, " replaced; the MAP W_r (val NLL %.4f -> %.4f) is the base of every row. Test n = %d, OOD n = %d "
                   "per set, temperature scaling fitted on %d validation items. Sampled methods: %d passes, S = %d. "
                   "ECE: %d bins, 95%% bootstrap interval (%d resamples). Jaccard at gamma = 0.01 over the replaced "
                   "layers. FLOPs x = per question, relative to the deterministic model.\n\n",
                   r->map_val_nll_init, r->map_val_nll_best, r->rows[0].n, o->n_ood, o->n_val, o->passes,
                   o->samples, o->bins, o->boot);
    vm_sbuf_puts(&b, "| method | ACC | NLL | ECE [95% CI] | MCE | Brier | Jaccard@0.01 | FLOPs x | T |\n"
                     "|---|---:|---:|---|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < r->n_rows; i++) {
        const vm_demo_row *w = &r->rows[i];
        vm_sbuf_printf(&b, "| %s | %s | %s | %s [%s, %s] | %s | %s | %s | %s | %s |\n", w->name,
                       num(x[0], 32, w->acc, 3), num(x[1], 32, w->nll, 3), num(x[2], 32, w->ece, 3),
                       num(x[3], 32, w->ece_lo, 3), num(x[4], 32, w->ece_hi, 3), num(x[5], 32, w->mce, 3),
                       num(x[6], 32, w->brier, 3), num(x[7], 32, w->jaccard, 4), num(x[8], 32, w->flops_ratio, 3),
                       num(x[9], 32, w->temperature, 3));
    }
    for (int s = 0; s < VM_DEMO_N_OOD; s++) {
        vm_sbuf_printf(&b, "\nOOD detection, %s vs test (AUROC; OOD = positive, higher score = more OOD; acc = "
                       "accuracy on the OOD items):\n\n| method | acc |", r->ood_names[s]);
        for (int k = 0; k < VM_DEMO_N_SCORES; k++) vm_sbuf_printf(&b, " %s |", score_names[k]);
        vm_sbuf_puts(&b, "\n|---|---:|");
        for (int k = 0; k < VM_DEMO_N_SCORES; k++) vm_sbuf_puts(&b, "---:|");
        vm_sbuf_puts(&b, "\n");
        for (int i = 0; i < r->n_rows; i++) {
            const vm_demo_row *w = &r->rows[i];
            vm_sbuf_printf(&b, "| %s | %s |", w->name, num(x[0], 32, w->ood_acc[s], 3));
            for (int k = 0; k < VM_DEMO_N_SCORES; k++) vm_sbuf_printf(&b, " %s |", num(x[0], 32, w->auroc[s][k], 3));
            vm_sbuf_puts(&b, "\n");
        }
    }
    char *v = vm_demo_verdict(r);
    if (v) { vm_sbuf_puts(&b, "\n"); vm_sbuf_puts(&b, v); free(v); }
    if (vm_sbuf_ok(&b) || !v) { vm_sbuf_free(&b); return NULL; }
    return b.s;
}

typedef struct tally { vm_sbuf yes, no, same; } tally;

// One comparison with the deterministic row, shown with `digits` decimals; "same" when equal at
// that precision (so the verdict never calls a difference the table cannot show).
static void judge(tally *t, vm_sbuf *line, const char *what, double v, double base, int higher_better,
                  const char *method, int digits) {
    char a[32], c[32];
    num(a, 32, v, digits); num(c, 32, base, digits);
    const int same = !strcmp(a, c), better = !same && (higher_better ? v > base : v < base);
    vm_sbuf_printf(line, "%s %s vs %s (%s)", what, a, c,
                   !isfinite(v) || !isfinite(base) ? "n/a" : same ? "same" : better ? "better" : "worse");
    if (!isfinite(v) || !isfinite(base)) return;
    vm_sbuf *to = better ? &t->yes : same ? &t->same : &t->no;
    vm_sbuf_printf(to, "%s%s %s", to->len ? "; " : "", method, what);
}

char *vm_demo_verdict(const vm_demo_result *r) {
    static const char *const bayes[] = { "vglr-mf", "vglr-fc", "vtsr" };
    const vm_demo_row *det = find_row(r, "deterministic");
    vm_sbuf b;
    vm_sbuf_init(&b);
    tally t;
    vm_sbuf_init(&t.yes);
    vm_sbuf_init(&t.no);
    vm_sbuf_init(&t.same);
    vm_sbuf_puts(&b, "### Verdict (computed from the numbers above; deterministic = the MAP router with Top-K)\n\n");
    if (!det) vm_sbuf_puts(&b, "No deterministic row: nothing to compare.\n");
    for (size_t i = 0; det && i < sizeof bayes / sizeof *bayes; i++) {
        const vm_demo_row *w = find_row(r, bayes[i]);
        if (!w) continue;
        const int vglr = strncmp(w->name, "vglr", 4) == 0;
        const int sc = vglr ? 3 : 4;   // ILV for VGLR, gate entropy for VTSR
        vm_sbuf_printf(&b, "- %s: ", w->name);
        judge(&t, &b, "ECE", w->ece, det->ece, 0, w->name, 3);
        const int overlap = w->ece_hi >= det->ece_lo && det->ece_hi >= w->ece_lo;
        if (isfinite(w->ece_lo) && isfinite(det->ece_lo))
            vm_sbuf_printf(&b, ", 95%% intervals %s", overlap ? "overlap" : "do not overlap");
        for (int s = 0; s < VM_DEMO_N_OOD; s++) {
            char what[96];
            snprintf(what, sizeof what, "OOD AUROC %s (%s vs max-prob)", r->ood_names[s], score_names[sc]);
            vm_sbuf_puts(&b, "; ");
            judge(&t, &b, what, w->auroc[s][sc], det->auroc[s][0], 1, w->name, 3);
        }
        if (!vglr) {   // for reference: the deterministic router's own gate entropy (not tallied)
            char g0[32], g1[32];
            vm_sbuf_printf(&b, " (the deterministic router's own gate entropy: %s, %s)", num(g0, 32, det->auroc[0][4], 3),
                           num(g1, 32, det->auroc[1][4], 3));
        }
        vm_sbuf_puts(&b, "; ");
        judge(&t, &b, "Jaccard@0.01", w->jaccard, det->jaccard, 1, w->name, 4);
        char a[32], c[32];
        vm_sbuf_printf(&b, "; accuracy %s vs %s.\n", num(a, 32, w->acc, 3), num(c, 32, det->acc, 3));
    }
    vm_sbuf_printf(&b, "\nVMoER improves on deterministic in: %s.\n", t.yes.len ? vm_sbuf_str(&t.yes) : "none");
    vm_sbuf_printf(&b, "It does not improve in: %s.\n", t.no.len ? vm_sbuf_str(&t.no) : "none");
    if (t.same.len) vm_sbuf_printf(&b, "No difference at the shown precision: %s.\n", vm_sbuf_str(&t.same));
    const int ok = vm_sbuf_ok(&t.yes) == 0 && vm_sbuf_ok(&t.no) == 0 && vm_sbuf_ok(&t.same) == 0;
    vm_sbuf_free(&t.yes);
    vm_sbuf_free(&t.no);
    vm_sbuf_free(&t.same);
    if (!ok || vm_sbuf_ok(&b)) { vm_sbuf_free(&b); return NULL; }
    return b.s;
}

static json_t *jnum(double x) { return isfinite(x) ? json_real(x) : json_null(); }

static int write_text(const char *dir, const char *name, const char *text) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    vm_afile a;
    if (vm_afile_open(&a, path)) return -1;
    if (fputs(text, a.f) == EOF) { vm_afile_abort(&a); return vm_err("demo: cannot write %s", path); }
    return vm_afile_commit(&a);
}

static int write_json(const char *dir, const char *name, json_t *j) {
    if (!j) return vm_err("demo: out of memory building %s", name);
    char *s = json_dumps(j, JSON_INDENT(1) | JSON_REAL_PRECISION(10));
    json_decref(j);
    if (!s) return vm_err("demo: out of memory writing %s", name);
    size_t n = strlen(s);
    char *t = realloc(s, n + 2);
    if (!t) { free(s); return vm_err("demo: out of memory"); }
    t[n] = '\n'; t[n + 1] = 0;
    int rc = write_text(dir, name, t);
    free(t);
    return rc;
}

// table.json: the table's numbers and configuration (no times, so reproducible byte for byte).
static json_t *table_json(const vm_demo_opts *o, const vm_demo_result *r) {
    json_t *j = json_object(), *cfg = json_object(), *rows = json_array(), *ly = json_array();
    json_object_set_new(j, "format", json_string("vmoer-demo-1"));
    json_object_set_new(cfg, "model", json_string(o->model_path));
    json_object_set_new(cfg, "data", json_string(o->data_dir));
    json_object_set_new(cfg, "score", json_string(vm_task_mode_name(o->mode)));
    json_object_set_new(cfg, "seed", json_integer((json_int_t)o->seed));
    json_object_set_new(cfg, "n_train", json_integer(o->n_train));
    json_object_set_new(cfg, "val_frac", json_real(o->val_frac));
    json_object_set_new(cfg, "n_val", json_integer(o->n_val));
    json_object_set_new(cfg, "n_test", json_integer(r->n_rows ? r->rows[0].n : 0));
    json_object_set_new(cfg, "n_ood", json_integer(o->n_ood));
    for (int i = 0; i < r->n_layers; i++) json_array_append_new(ly, json_integer(r->layers[i]));
    json_object_set_new(cfg, "layers", ly);
    json_object_set_new(cfg, "epochs_map", json_integer(o->epochs_map));
    json_object_set_new(cfg, "epochs", json_integer(o->epochs));
    json_object_set_new(cfg, "lr_map", json_real(o->lr_map));
    json_object_set_new(cfg, "lr", json_real(o->lr));
    json_object_set_new(cfg, "batch", json_integer(o->batch));
    json_object_set_new(cfg, "passes", json_integer(o->passes));
    json_object_set_new(cfg, "samples", json_integer(o->samples));
    json_object_set_new(cfg, "n_stab", json_integer(o->n_stab));
    json_object_set_new(cfg, "bins", json_integer(o->bins));
    json_object_set_new(cfg, "boot", json_integer(o->boot));
    json_object_set_new(cfg, "map_val_nll", json_pack("[o,o]", jnum(r->map_val_nll_init), jnum(r->map_val_nll_best)));
    json_object_set_new(cfg, "map_val_acc", json_pack("[o,o]", jnum(r->map_val_acc_init), jnum(r->map_val_acc_best)));
    json_object_set_new(j, "config", cfg);
    for (int i = 0; i < r->n_rows; i++) {
        const vm_demo_row *w = &r->rows[i];
        json_t *jr = json_object(), *ood = json_object();
        json_object_set_new(jr, "method", json_string(w->name));
        json_object_set_new(jr, "n", json_integer(w->n));
        json_object_set_new(jr, "acc", jnum(w->acc));
        json_object_set_new(jr, "nll", jnum(w->nll));
        json_object_set_new(jr, "ece", jnum(w->ece));
        json_object_set_new(jr, "ece_ci", json_pack("[o,o]", jnum(w->ece_lo), jnum(w->ece_hi)));
        json_object_set_new(jr, "mce", jnum(w->mce));
        json_object_set_new(jr, "brier", jnum(w->brier));
        json_object_set_new(jr, "jaccard_0.01", jnum(w->jaccard));
        json_object_set_new(jr, "jaccard_0.01_all_layers", jnum(w->jaccard_all));
        json_object_set_new(jr, "flops_ratio", jnum(w->flops_ratio));
        json_object_set_new(jr, "passes", json_integer(w->passes));
        json_object_set_new(jr, "temperature", jnum(w->temperature));
        for (int s = 0; s < VM_DEMO_N_OOD; s++) {
            json_t *js = json_object(), *au = json_object();
            json_object_set_new(js, "acc", jnum(w->ood_acc[s]));
            for (int k = 0; k < VM_DEMO_N_SCORES; k++) json_object_set_new(au, score_names[k], jnum(w->auroc[s][k]));
            json_object_set_new(js, "auroc", au);
            json_object_set_new(ood, r->ood_names[s], js);
        }
        json_object_set_new(jr, "ood", ood);
        json_array_append_new(rows, jr);
    }
    json_object_set_new(j, "rows", rows);
    char *v = vm_demo_verdict(r);
    json_object_set_new(j, "verdict", v ? json_string(v) : json_null());
    free(v);
    return j;
}

static json_t *timing_json(const vm_demo_result *r) {
    json_t *j = json_object(), *m = json_object();
    json_object_set_new(j, "seconds_total", jnum(r->seconds));
    for (int i = 0; i < r->n_rows; i++)
        json_object_set_new(m, r->rows[i].name, json_pack("{s:o,s:o}", "fit", jnum(r->rows[i].sec_fit), "eval",
                                                          jnum(r->rows[i].sec_eval)));
    json_object_set_new(j, "methods", m);
    return j;
}

// ---------------------------------------------------------------- report.html

// p (n, C) padded with 0 and y (n) of a set, for the reliability diagram.
static int set_py(const vm_eval_set *s, double **p, int **y, int *C) {
    *C = 1;
    for (int i = 0; i < s->n; i++) if (s->items[i].n_choices > *C) *C = s->items[i].n_choices;
    *p = vm_calloc((size_t)(s->n ? s->n : 1) * *C, sizeof(double));
    *y = vm_malloc((size_t)(s->n ? s->n : 1) * sizeof(int));
    if (!*p || !*y) { free(*p); free(*y); return -1; }
    for (int i = 0; i < s->n; i++) {
        for (int k = 0; k < s->items[i].n_choices; k++) (*p)[(size_t)i * *C + k] = fmin(1.0, fmax(0.0, s->items[i].probs[k]));
        (*y)[i] = s->items[i].answer;
    }
    return 0;
}

// The score each method's OOD curve uses: its own read-out for the Bayesian routers, else max-prob.
static int curve_score(const char *name) {
    if (!strncmp(name, "vglr", 4)) return 3;
    if (!strcmp(name, "vtsr")) return 4;
    return 0;
}

static int report_ood(demo *d, vm_report *rep, int s) {
    const vm_demo_result *r = d->r;
    vm_curve cv[VM_DEMO_MAX_METHODS];
    char labels[VM_DEMO_MAX_METHODS][96];
    double *buf[VM_DEMO_MAX_METHODS][3];
    memset(buf, 0, sizeof buf);
    int nc = 0, rc = 0;
    for (int i = 0; i < r->n_rows && !rc; i++) {
        const vm_eval_set *in = &d->sets[i][0], *out = &d->sets[i][1 + s];
        const int k = curve_score(r->rows[i].name), u = score_unc[k];
        const size_t np1 = (size_t)in->n + out->n + 1;
        double *a = vm_malloc((size_t)(in->n ? in->n : 1) * sizeof(double)), *b = vm_malloc((size_t)(out->n ? out->n : 1) * sizeof(double));
        int finite = a && b;
        for (int j = 0; finite && j < in->n; j++) finite &= isfinite(a[j] = in->items[j].unc[u]);
        for (int j = 0; finite && j < out->n; j++) finite &= isfinite(b[j] = out->items[j].unc[u]);
        if (finite) {
            for (int q = 0; q < 3; q++) buf[nc][q] = vm_malloc(np1 * sizeof(double));
            int np = 0;
            if (!buf[nc][0] || !buf[nc][1] || !buf[nc][2] ||
                vm_metric_roc(in->n, a, out->n, b, buf[nc][0], buf[nc][1], buf[nc][2], &np)) rc = -1;
            snprintf(labels[nc], sizeof labels[nc], "%s (%s)", r->rows[i].name, score_names[k]);
            cv[nc] = (vm_curve){ .label = labels[nc], .n = rc ? 0 : np, .x = buf[nc][0], .y = buf[nc][1] };
            nc++;
        }
        free(a); free(b);
    }
    char title[128];
    snprintf(title, sizeof title, "ROC: %s vs test", r->ood_names[s]);
    if (!rc && nc) rc = vm_report_curves(rep, VM_FIG_ROC, title, nc, cv);
    for (int i = 0; i < nc; i++) for (int q = 0; q < 3; q++) free(buf[i][q]);
    return rc;
}

static int write_report(demo *d, const char *md) {
    const vm_demo_opts *o = d->o;
    const vm_demo_result *r = d->r;
    vm_report *rep = vm_report_init("vmoer demo: Bayesian routing on story cloze");
    if (!rep) return -1;
    int rc = vm_report_section(rep, "Summary");
    char txt[1024];
    snprintf(txt, sizeof txt, "model %s, data %s, scoring %s, seed %llu, wall time %.0f s.\n"
             "Pipeline: MAP fine-tune of W_r of the replaced layers on train (early stopping on its own held-out "
             "part) -> the MAP W_r becomes the base router -> baselines and Bayesian routers on the same layers "
             "(VGLR and VTSR fitted on the same training items) -> every method scores the test and OOD sets. "
             "Temperature scaling is fitted on validation.jsonl, never on test. The per-method `vmoer eval` outputs "
             "are in methods/<name>/.", o->model_path, o->data_dir, vm_task_mode_name(o->mode),
             (unsigned long long)o->seed, r->seconds);
    if (!rc) rc = vm_report_text(rep, txt);
    // main table
    static const char *cols[] = { "ACC", "NLL", "ECE", "MCE", "Brier", "Jaccard@0.01", "FLOPs x", "T" };
    static const signed char better[] = { 1, -1, -1, -1, -1, 1, -1, 0 };
    enum { NC = 8 };
    double v[VM_DEMO_MAX_METHODS * NC], lo[VM_DEMO_MAX_METHODS * NC], hi[VM_DEMO_MAX_METHODS * NC];
    const char *rows[VM_DEMO_MAX_METHODS];
    for (int i = 0; i < r->n_rows; i++) {
        const vm_demo_row *w = &r->rows[i];
        const double x[NC] = { w->acc, w->nll, w->ece, w->mce, w->brier, w->jaccard, w->flops_ratio, w->temperature };
        rows[i] = w->name;
        for (int k = 0; k < NC; k++) { v[i * NC + k] = x[k]; lo[i * NC + k] = hi[i * NC + k] = NAN; }
        lo[i * NC + 2] = w->ece_lo; hi[i * NC + 2] = w->ece_hi;
    }
    char cap[256];
    snprintf(cap, sizeof cap, "Test (n = %d): ECE with %d bins [95%% bootstrap interval]", r->rows[0].n, o->bins);
    vm_table t = { .caption = cap, .n_rows = r->n_rows, .n_cols = NC, .row_names = rows, .col_names = cols,
                   .values = v, .lo = lo, .hi = hi, .better = better };
    if (!rc) rc = vm_report_table(rep, &t);
    for (int s = 0; s < VM_DEMO_N_OOD && !rc; s++) {
        const char *oc[1 + VM_DEMO_N_SCORES] = { "acc" };
        signed char ob[1 + VM_DEMO_N_SCORES] = { 0 };
        double ov[VM_DEMO_MAX_METHODS * (1 + VM_DEMO_N_SCORES)];
        for (int k = 0; k < VM_DEMO_N_SCORES; k++) { oc[1 + k] = score_names[k]; ob[1 + k] = 1; }
        for (int i = 0; i < r->n_rows; i++) {
            ov[i * (1 + VM_DEMO_N_SCORES)] = r->rows[i].ood_acc[s];
            for (int k = 0; k < VM_DEMO_N_SCORES; k++) ov[i * (1 + VM_DEMO_N_SCORES) + 1 + k] = r->rows[i].auroc[s][k];
        }
        snprintf(cap, sizeof cap, "OOD AUROC per score, %s (n = %d) vs test; acc = accuracy on the OOD items",
                 r->ood_names[s], d->sets[0][1 + s].n);
        vm_table ot = { .caption = cap, .n_rows = r->n_rows, .n_cols = 1 + VM_DEMO_N_SCORES, .row_names = rows,
                        .col_names = oc, .values = ov, .better = ob };
        rc = vm_report_table(rep, &ot);
    }
    char *verdict = vm_demo_verdict(r);
    if (!rc) rc = verdict ? vm_report_text(rep, verdict) : -1;
    free(verdict);
    (void)md;
    // calibration
    if (!rc) rc = vm_report_section(rep, "Calibration (test)");
    for (int i = 0; i < r->n_rows && !rc; i++) {
        double *p; int *y, C;
        vm_ece_bin bins[1000];
        if (set_py(&d->sets[i][0], &p, &y, &C)) { rc = -1; break; }
        rc = vm_ece_reliability(d->sets[i][0].n, C, p, y, o->bins, bins);
        free(p); free(y);
        char title[128];
        snprintf(title, sizeof title, "Reliability: %s (ECE %.3f)", r->rows[i].name, r->rows[i].ece);
        if (!rc) rc = vm_report_reliability(rep, title, o->bins, bins);
    }
    if (!rc) rc = vm_report_section(rep, "OOD detection");
    for (int s = 0; s < VM_DEMO_N_OOD && !rc; s++) rc = report_ood(d, rep, s);
    // stability per layer
    if (!rc) rc = vm_report_section(rep, "Routing stability under embedding noise (gamma = 0.01)");
    if (!rc) {
        vm_curve lc[VM_DEMO_MAX_METHODS];
        int n = 0, nl = 0;
        char names[64][16];
        const char *lnames[64];
        for (int i = 0; i < r->n_rows; i++) {
            const vm_stability *st = &d->stab[i];
            if (st->n_gamma < 1) continue;   // temperature scaling routes as deterministic
            nl = st->n_layer < 64 ? st->n_layer : 64;
            lc[n++] = (vm_curve){ .label = r->rows[i].name, .n = nl, .x = NULL, .y = st->jac };
        }
        for (int l = 0; l < nl; l++) { snprintf(names[l], sizeof names[l], "%d", d->stab[0].layers[l]); lnames[l] = names[l]; }
        if (n) rc = vm_report_layer_bars(rep, "Mean Jaccard of the selected experts, clean vs noisy, per MoE layer",
                                         "mean Jaccard", nl, lnames, n, lc);
    }
    // time (not in the reproducible table)
    if (!rc) rc = vm_report_section(rep, "Wall time");
    if (!rc) {
        static const char *tc[] = { "fit s", "eval s", "passes" };
        double tv[VM_DEMO_MAX_METHODS * 3];
        for (int i = 0; i < r->n_rows; i++) {
            tv[i * 3] = r->rows[i].sec_fit; tv[i * 3 + 1] = r->rows[i].sec_eval; tv[i * 3 + 2] = r->rows[i].passes;
        }
        static const int dg[] = { 1, 1, 0 };
        vm_table tt = { .caption = "Wall time per method (eval includes stability and the OOD sets; the deterministic "
                                   "row's fit is the MAP fit)", .n_rows = r->n_rows, .n_cols = 3, .row_names = rows,
                        .col_names = tc, .values = tv, .digits = dg };
        rc = vm_report_table(rep, &tt);
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/report.html", o->outdir);
    if (!rc) rc = vm_report_write(rep, path);
    vm_report_free(rep);
    return rc ? vm_err_prefix("demo: report") : 0;
}

// ---------------------------------------------------------------- the run

static int load_set(const demo *d, const char *file, int limit, vm_dataset *ds) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", d->o->data_dir, file);
    vm_dataset_opts o;
    vm_dataset_opts_default(&o);
    o.format = VM_MCQ_FORMAT_JSONL;
    o.limit = (size_t)limit;
    return vm_dataset_load(ds, path, &o) ? vm_err_prefix("demo") : 0;
}

static int check_opts(const vm_demo_opts *o) {
    if (!o->model_path || !o->data_dir || !o->outdir) return vm_err("demo: model, data and output paths are required");
    if (o->n_train < 4 || o->n_val < 2 || o->n_test < 2 || o->n_ood < 1)
        return vm_err("demo: too few items (train %d >= 4, val %d >= 2, test %d >= 2, ood %d >= 1)", o->n_train,
                      o->n_val, o->n_test, o->n_ood);
    if (!(o->val_frac > 0.0f && o->val_frac < 1.0f)) return vm_err("demo: validation fraction %g not in (0, 1)", (double)o->val_frac);
    if (o->n_layers < 1 || o->n_layers > 8) return vm_err("demo: %d layers (1..8)", o->n_layers);
    if (o->epochs_map < 1 || o->epochs < 1 || o->batch < 1 || o->patience < 1 || o->passes < 1 || o->samples < 1)
        return vm_err("demo: epochs, batch, patience, passes and samples must be >= 1");
    if (!(o->lr_map > 0) || !(o->lr > 0)) return vm_err("demo: learning rates must be > 0");
    if (o->bins < 1 || o->bins > 1000 || o->boot < 0 || o->n_stab < 1) return vm_err("demo: bad bins/boot/stability size");
    if (!vm_task_is_loglik(o->mode)) return vm_err("demo: story cloze is scored by continuation (loglik, loglik-raw, pmi)");
    return 0;
}

// A method of the parallel phase: optionally fitted, then evaluated, on one worker's model.
typedef struct job {
    int row;
    const char *kind;     // router kind
    int fit, with_val;
    double units;         // estimated work (for the assignment and the ETA)
    int worker, rc;
    char err[1024];
} job;

static int run_job(demo *d, job *j) {
    const vm_demo_opts *o = d->o;
    worker *wk = &d->wk[j->worker];
    vm_fit_stats st;
    int rc = 0;
    double t = vm_eval_now();
    if (j->fit) {
        stage_begin(d, "fit %s", j->kind);
        rc = fit(d, wk, j->row, j->kind, o->epochs, o->lr, &st);
        stage_end(d, fit_units(d, o->epochs), t);
        t = vm_eval_now();
    } else {
        rc = set_routers(d, wk, j->kind);
    }
    if (!rc) {
        stage_begin(d, "%s: test, OOD%s (%d pass%s)", j->kind, j->with_val ? ", validation" : "",
                    vm_eval_kind_sampled(j->kind) ? o->passes : 1, vm_eval_kind_sampled(j->kind) && o->passes > 1 ? "es" : "");
        rc = eval_method(d, wk, j->row, j->kind, j->with_val);
        stage_end(d, eval_units(d, vm_eval_kind_sampled(j->kind) ? o->passes : 1) + (j->with_val ? o->n_val : 0), t);
    }
    if (rc) snprintf(j->err, sizeof j->err, "%s", vm_errmsg());   // the message is thread-local
    return j->rc = rc;
}

static int load_worker(demo *d, worker *wk) {
    const vm_demo_opts *o = d->o;
    if (!(wk->m = vm_model_load(o->model_path))) return vm_err_prefix("demo");
    if (vm_model_n_expert(wk->m) == 0) return vm_err("demo: %s is a dense model (no MoE layer to route)", o->model_path);
    if (!(wk->tok = vm_tokenizer_from_gguf(vm_model_gguf(wk->m)))) return vm_err_prefix("demo");
    vm_task_init(&wk->task, wk->tok, o->mode, VM_CHAT_NONE, wk->m->hp.n_ctx_train);
    return 0;
}

int vm_demo_run(const vm_demo_opts *o, vm_demo_result *res) {
    vm_demo_result local;
    demo d;
    memset(&d, 0, sizeof d);
    d.o = o;
    d.r = res ? res : &local;
    memset(d.r, 0, sizeof *d.r);
    d.t0 = vm_eval_now();
    if (check_opts(o)) return -1;
    char sub[4200];
    int rc = vm_mkdir_p(o->outdir);
    snprintf(sub, sizeof sub, "%s/methods", o->outdir);
    if (!rc) rc = vm_mkdir_p(sub);
    snprintf(sub, sizeof sub, "%s/adapters", o->outdir);
    if (!rc) rc = vm_mkdir_p(sub);
    if (!rc) rc = load_set(&d, "train.jsonl", o->n_train, &d.train) || load_set(&d, "validation.jsonl", o->n_val, &d.val) ||
                  load_set(&d, "test.jsonl", o->n_test, &d.test) ? -1 : 0;
    for (int s = 0; s < VM_DEMO_N_OOD && !rc; s++) {
        rc = load_set(&d, ood_files[s], o->n_ood, &d.ood[s]);
        snprintf(d.r->ood_names[s], sizeof d.r->ood_names[s], "%s", ood_names[s]);
    }
    // the methods of the parallel phase, row order of the table (row 1, temperature scaling, is
    // computed from row 0 afterwards)
    job jobs[] = {
        { .row = 0, .kind = "deterministic", .with_val = 1 },
        { .row = 2, .kind = "temp-sample" }, { .row = 3, .kind = "mcdropout" },
        { .row = 4, .kind = "vglr-mf", .fit = 1 }, { .row = 5, .kind = "vglr-fc", .fit = 1 },
        { .row = 6, .kind = "vtsr", .fit = 1 },
    };
    enum { NJ = sizeof jobs / sizeof *jobs };
    // The threads run methods side by side; inside a method the kernels use one thread (the small
    // models this is for gain nothing from more, and spinning OpenMP teams collapse under load).
    const int n_threads = omp_get_max_threads();
    omp_set_num_threads(1);
    d.n_workers = n_threads < 1 ? 1 : n_threads > MAX_WORKERS ? MAX_WORKERS : n_threads > NJ ? NJ : n_threads;
    for (int k = 0; k < d.n_workers && !rc; k++) rc = load_worker(&d, &d.wk[k]);
    if (!rc) {
        const vm_model *m = d.wk[0].m;
        d.n_layer = m->hp.n_layer;
        d.nl = vm_fit_default_layers(m, o->n_layers, d.layers);
        d.r->n_layers = d.nl;
        memcpy(d.r->layers, d.layers, (size_t)d.nl * sizeof(int));
        // work estimates; jobs go to workers largest first, each to the least loaded (a fixed
        // assignment: it does not depend on timing)
        double load[MAX_WORKERS] = {0};
        int done[NJ] = {0};
        d.units_total = fit_units(&d, o->epochs_map);
        for (int i = 0; i < NJ; i++) {
            const int sampled = vm_eval_kind_sampled(jobs[i].kind);
            jobs[i].units = eval_units(&d, sampled ? o->passes : 1) + (jobs[i].with_val ? o->n_val : 0) +
                            (jobs[i].fit ? fit_units(&d, o->epochs) : 0);
            d.units_total += jobs[i].units;
        }
        for (int n = 0; n < NJ; n++) {
            int b = -1, w = 0;
            for (int i = 0; i < NJ; i++) if (!done[i] && (b < 0 || jobs[i].units > jobs[b].units)) b = i;
            for (int k = 1; k < d.n_workers; k++) if (load[k] < load[w]) w = k;
            done[b] = 1; jobs[b].worker = w; load[w] += jobs[b].units;
        }
        d.n_stages = 1 + NJ + 3 + 1;
    }
    vm_fit_stats st;
    if (!rc) {
        stage_begin(&d, "MAP fine-tune of W_r on layers %d..%d (%d train items)", d.layers[0], d.layers[d.nl - 1],
                    (int)d.train.n);
        rc = fit(&d, &d.wk[0], -1, "map", o->epochs_map, o->lr_map, &st);
        stage_end(&d, fit_units(&d, o->epochs_map), d.t0);
        if (!rc) {
            d.r->map_val_nll_init = st.val_nll_init; d.r->map_val_nll_best = st.val_nll_best;
            d.r->map_val_acc_init = st.val_acc_init; d.r->map_val_acc_best = st.val_acc_best;
            d.r->rows[0].sec_fit = st.seconds;
            rc = bake_map(&d);
        }
    }
    if (!rc) {
        if (o->verbose && d.n_workers > 1)
            fprintf(stderr, "demo: %d methods on %d workers (one model copy each)\n", NJ, d.n_workers);
        json_decref(json_object());   // jansson seeds its hash on first use: do that before the threads
        // nested parallel regions (the kernels') run on one thread inside each worker
#pragma omp parallel for num_threads(d.n_workers) schedule(static, 1)
        for (int k = 0; k < d.n_workers; k++)
            for (int i = 0; i < NJ; i++)
                if (jobs[i].worker == k && run_job(&d, &jobs[i])) break;
        for (int i = 0; i < NJ && !rc; i++)
            if (jobs[i].rc) rc = vm_err("%s", jobs[i].err);
        // a worker stops at its first failure; jobs it did not reach have rc 0 and no rows, but rc is set then
    }
    if (!rc) {
        rc = ts_method(&d, 1, 0);
        d.r->n_rows = rc ? 0 : 7;
    }
    if (!rc) {
        stage_begin(&d, "writing %s/{table.md,table.json,timing.json,report.html}", o->outdir);
        d.r->seconds = vm_eval_now() - d.t0;
        char *md = vm_demo_table_md(o, d.r);
        rc = !md || write_text(o->outdir, "table.md", md) || write_json(o->outdir, "table.json", table_json(o, d.r)) ||
             write_json(o->outdir, "timing.json", timing_json(d.r)) || write_report(&d, md) ? -1 : 0;
        free(md);
    }
    for (int i = 0; i < VM_DEMO_MAX_METHODS; i++) {
        for (int s = 0; s < N_SETS; s++) vm_eval_set_free(&d.sets[i][s]);
        vm_stability_free(&d.stab[i]);
    }
    vm_eval_set_free(&d.val_set);
    vm_dataset_free(&d.train); vm_dataset_free(&d.val); vm_dataset_free(&d.test);
    for (int s = 0; s < VM_DEMO_N_OOD; s++) vm_dataset_free(&d.ood[s]);
    for (int k = 0; k < MAX_WORKERS; k++) { vm_tokenizer_free(d.wk[k].tok); vm_model_free(d.wk[k].m); }
    for (int i = 0; i < 8; i++) free(d.w_map[i]);
    d.r->seconds = vm_eval_now() - d.t0;
    omp_set_num_threads(n_threads);
    return rc;
}

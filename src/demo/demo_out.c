// The demo's statistics and outputs (demo.h): temperature scaling per run, the paired bootstrap of
// every metric against the deterministic row, table.md, table.json, the verdict, report.html.
#include "demo/demo_internal.h"
#include "eval/metrics.h"
#include "report/report.h"
#include "util/err.h"
#include "util/fileio.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LEVEL 0.95

// ---------------------------------------------------------------- per item, per run

void dm_res_derive(dm_res *r) {
    double h = 0.0, mx = 0.0;
    for (int k = 0; k < r->C; k++) {
        if (r->p[k] > 0) h -= r->p[k] * log(r->p[k]);
        if (r->p[k] > mx) mx = r->p[k];
    }
    r->unc[VM_EVAL_UNC_ENTROPY] = h;
    r->unc[VM_EVAL_UNC_NEG_MAXPROB] = -mx;
    r->unc[VM_EVAL_UNC_MI] = NAN;   // one pass: the method as defined (no multi-pass MC here)
}

int dm_temperature(dm *d, dm_run *run) {
    const dm_set *val = &d->sets[DM_SET_VAL];
    const int n = val->n;
    int C = 1;
    for (int i = 0; i < n; i++) if (run->res[DM_SET_VAL][i].C > C) C = run->res[DM_SET_VAL][i].C;
    double *z = vm_malloc((size_t)n * C * sizeof(double));
    int *y = vm_malloc((size_t)n * sizeof(int));
    int rc = z && y ? 0 : -1;
    for (int i = 0; i < n && !rc; i++) {
        const dm_res *r = &run->res[DM_SET_VAL][i];
        for (int k = 0; k < C; k++) z[(size_t)i * C + k] = k < r->C ? log(fmax(r->p[k], 1e-300)) : -1e4;
        y[i] = r->y;
    }
    if (!rc) rc = vm_temp_fit(n, C, z, y, &run->T);
    free(z); free(y);
    for (int s = 0; s < DM_N_SETS(d) && !rc; s++) {
        if (!run->res[s]) continue;
        const int m = d->sets[s].n;
        if (!(run->ts[s] = vm_malloc((size_t)m * sizeof(dm_res)))) return -1;
        for (int i = 0; i < m; i++) {
            dm_res *t = &run->ts[s][i];
            *t = run->res[s][i];
            double lz[VM_MCQ_MAX_CHOICES], q[VM_MCQ_MAX_CHOICES];
            for (int k = 0; k < t->C; k++) lz[k] = log(fmax(t->p[k], 1e-300));
            vm_temp_apply(1, t->C, lz, run->T, q);
            for (int k = 0; k < t->C; k++) t->p[k] = q[k];
            dm_res_derive(t);
        }
    }
    return rc ? vm_err_prefix("demo: temperature scaling") : 0;
}

// ---------------------------------------------------------------- the output folder as a set

static const char *const out_names[] = { "table.md", "table.json", "timing.json", "report.html", "adapters", "methods", NULL };
// ("methods": the per-method folders of earlier versions, replaced with the rest)

int dm_stage_dir_open(dm *d) {
    vm_adir *a = vm_malloc(sizeof *a);
    if (!a) return -1;
    if (vm_adir_open(a, d->o->outdir, out_names)) { free(a); return vm_err_prefix("demo"); }
    d->adir = a;
    snprintf(d->stage_dir, sizeof d->stage_dir, "%s", a->tmp);
    char sub[4300];
    snprintf(sub, sizeof sub, "%s/adapters", a->tmp);
    return vm_mkdir_p(sub) ? vm_err_prefix("demo") : 0;
}

int dm_stage_dir_commit(dm *d) {
    vm_adir *a = d->adir;
    d->adir = NULL;
    const int rc = a ? vm_adir_commit(a) : 0;
    free(a);
    return rc ? vm_err_prefix("demo") : 0;
}

void dm_stage_dir_abort(dm *d) {
    if (d->adir) { vm_adir_abort(d->adir); free(d->adir); d->adir = NULL; }
}

// ---------------------------------------------------------------- statistics

typedef struct prep {
    int ok;
    vm_pitem *it;                          // test items
    double *jac;                           // stability items: mean Jaccard over the chosen layers
    double *ood_correct[DM_MAX_OOD];
    vm_pw_auroc au[DM_MAX_OOD][NSC];
    int au_ok[DM_MAX_OOD][NSC];
} prep;

typedef struct stats_ctx {
    dm *d;
    prep (*pr)[VM_DEMO_MAX_SEEDS];         // [row][seed]
    int n_rows;
    int *base_of;
} stats_ctx;

static const dm_res *row_res(const dm *d, int row, int seed, int set) {
    const dm_run *r = &d->runs[row_method(row)][seed];
    return row_ts(row) ? r->ts[set] : r->res[set];
}

static int prepare(dm *d, int row, int seed, prep *p) {
    memset(p, 0, sizeof *p);
    const dm_set *te = &d->sets[DM_SET_TEST];
    const int n = te->n;
    const dm_res *rt = row_res(d, row, seed, DM_SET_TEST);
    const dm_run *run = &d->runs[row_method(row)][seed];
    p->it = vm_malloc((size_t)n * sizeof *p->it);
    p->jac = vm_malloc((size_t)(run->stab.n_items ? run->stab.n_items : 1) * sizeof(double));
    if (!p->it || !p->jac) return -1;
    for (int i = 0; i < n; i++) vm_pitem_fill(&p->it[i], rt[i].C, rt[i].p, rt[i].y, d->o->bins);
    // per stability prompt: its Jaccard (gamma 0.01) averaged over the chosen layers
    const vm_stability *st = &run->stab;
    for (int i = 0; i < st->n_items; i++) {
        double s = 0;
        int k = 0;
        for (int l = 0; l < st->n_layer; l++)
            for (int j = 0; j < d->nl; j++)
                if (st->layers[l] == d->layers[j]) { s += st->jac_item[(size_t)i * st->n_layer + l]; k++; }
        p->jac[i] = k ? s / k : NAN;
    }
    double *a = vm_malloc((size_t)n * sizeof(double));
    if (!a) return -1;
    for (int s = 0; s < d->n_ood; s++) {
        const dm_set *os = &d->sets[DM_SET_OOD + s];
        const dm_res *ro = row_res(d, row, seed, DM_SET_OOD + s);
        double *b = vm_malloc((size_t)os->n * sizeof(double));
        if (!(p->ood_correct[s] = vm_malloc((size_t)os->n * sizeof(double))) || !b) { free(a); free(b); return -1; }
        for (int i = 0; i < os->n; i++) {
            int pred = 0;
            for (int k = 1; k < ro[i].C; k++) if (ro[i].p[k] > ro[i].p[pred]) pred = k;
            p->ood_correct[s][i] = pred == ro[i].y;
        }
        for (int k = 0; k < NSC; k++) {
            int finite = 1;
            for (int i = 0; i < n && finite; i++) finite = isfinite(a[i] = rt[i].unc[k]);
            for (int i = 0; i < os->n && finite; i++) finite = isfinite(b[i] = ro[i].unc[k]);
            p->au_ok[s][k] = finite && vm_pw_auroc_prepare(&p->au[s][k], n, a, os->n, b) == 0;
        }
        free(b);
    }
    free(a);
    vm_err_clear();
    p->ok = 1;
    return 0;
}

static void prep_free(prep *p, int n_ood) {
    free(p->it); free(p->jac);
    for (int s = 0; s < n_ood; s++) {
        free(p->ood_correct[s]);
        for (int k = 0; k < NSC; k++) vm_pw_auroc_free(&p->au[s][k]);
    }
}

static int stat_fn(void *ud, int row, int seed, const double *const *w, double *out) {
    const stats_ctx *c = ud;
    const dm *d = c->d;
    const prep *p = &c->pr[row][seed];
    const int n = d->sets[DM_SET_TEST].n, M = d->o->bins, stab = 1 + d->n_ood;
    const double *wt = w ? w[0] : NULL;
    out[ST_ACC] = vm_pw_mean_acc(n, p->it, wt);
    out[ST_NLL] = vm_pw_mean_nll(n, p->it, wt);
    out[ST_ECE] = vm_pw_ece(n, p->it, wt, M);
    out[ST_MCE] = vm_pw_mce(n, p->it, wt, M);
    out[ST_BRIER] = vm_pw_mean_brier(n, p->it, wt);
    const int ns = d->runs[row_method(row)][seed].stab.n_items;
    out[ST_JAC] = ns ? vm_pw_mean(ns, p->jac, w ? w[stab] : NULL) : NAN;
    const int base = c->base_of[row] == row;
    for (int s = 0; s < d->n_ood; s++) {
        const double *wo = w ? w[1 + s] : NULL;
        out[ST_OODACC(d, s)] = vm_pw_mean(d->sets[DM_SET_OOD + s].n, p->ood_correct[s], wo);
        for (int k = 0; k < NSC; k++)
            out[ST_AUROC(d, s, k)] = p->au_ok[s][k] ? vm_pw_auroc_eval(&p->au[s][k], wt, wo) : NAN;
        for (int k = 0; k < NSC; k++)
            out[ST_AUROC_VS(d, s, k)] = base ? out[ST_AUROC(d, s, VM_EVAL_UNC_NEG_MAXPROB)] : out[ST_AUROC(d, s, k)];
    }
    return 0;
}

// ---------------------------------------------------------------- formatting

const char *num(char *b, size_t n, double x, int digits) {
    if (!isfinite(x)) snprintf(b, n, "n/a");
    else snprintf(b, n, "%.*f", digits, x);
    return b;
}

const char *snum(char *b, size_t n, double x, int digits) {   // signed
    if (!isfinite(x)) snprintf(b, n, "n/a");
    else snprintf(b, n, "%+.*f", digits, x);
    return b;
}

// "better", "worse" or "no detectable difference" from the difference's interval.
int verdict_of(const vm_pstat *p, int higher_better) {
    if (!isfinite(p->diff_lo) || !isfinite(p->diff_hi)) return 2;   // n/a
    if (p->diff_lo > 0) return higher_better ? 1 : -1;
    if (p->diff_hi < 0) return higher_better ? -1 : 1;
    return 0;
}
const char *vword(int v) { return v == 1 ? "better" : v == -1 ? "worse" : v == 0 ? "no detectable difference" : "n/a"; }

// "0.612 [0.571, 0.655]"
static void cell_ci(vm_sbuf *b, const vm_pstat *p, int dg) {
    char x[3][32];
    vm_sbuf_printf(b, "%s [%s, %s]", num(x[0], 32, p->point, dg), num(x[1], 32, p->lo, dg), num(x[2], 32, p->hi, dg));
}
// "+0.012 [-0.004, +0.027]"
static void cell_diff(vm_sbuf *b, const vm_pstat *p, int dg) {
    char x[3][32];
    vm_sbuf_printf(b, "%s [%s, %s]", snum(x[0], 32, p->diff, dg), snum(x[1], 32, p->diff_lo, dg), snum(x[2], 32, p->diff_hi, dg));
}

const char *score_label(int k) {
    switch (k) {
    case VM_EVAL_UNC_NEG_MAXPROB: return "max-prob";
    case VM_EVAL_UNC_ILV: return "ILV";
    case VM_EVAL_UNC_ILV_DEV: return "ILV deviation";
    case VM_EVAL_UNC_GATE_ENTROPY: return "gate entropy";
    case VM_EVAL_UNC_TEMPERATURE: return "T";
    case VM_EVAL_UNC_BASE_GATE_ENTROPY: return "base gate entropy";
    default: return vm_eval_unc_name(k);
    }
}

// The uncertainty scores a method is judged by for OOD detection (declared in docs/method.md §5.3).
int declared_scores(const char *kind, int *k) {
    if (!strncmp(kind, "vglr", 4)) { k[0] = VM_EVAL_UNC_ILV; k[1] = VM_EVAL_UNC_ILV_DEV; return 2; }
    if (!strcmp(kind, "vtsr")) { k[0] = VM_EVAL_UNC_GATE_ENTROPY; k[1] = VM_EVAL_UNC_TEMPERATURE; return 2; }
    if (!strcmp(kind, "swag")) { k[0] = VM_EVAL_UNC_PROB_VAR; return 1; }   // issue 21's read-out
    k[0] = VM_EVAL_UNC_NEG_MAXPROB;
    return 1;
}

// Fits of a method: how many seeds improved their held-out NLL over the initial head.
int seeds_diverged(const dm *d, int m) {
    int k = 0;
    for (int s = 0; s < d->n_seeds[m]; s++) k += d->runs[m][s].fit.diverged_step > 0;
    return k;
}

int seeds_improved(const dm *d, int m) {
    int k = 0;
    for (int s = 0; s < d->n_seeds[m]; s++) k += d->runs[m][s].fit.improved;
    return k;
}

void mean_over_seeds(const dm *d, int m, double (*f)(const dm_run *), double *out) {
    double s = 0;
    for (int i = 0; i < d->n_seeds[m]; i++) s += f(&d->runs[m][i]);
    *out = s / d->n_seeds[m];
}
double run_flops(const dm_run *r) { return r->flops_ratio; }
double run_T(const dm_run *r) { return r->T; }

// ---------------------------------------------------------------- table.md and the verdict

void table_md_setup(const out_ctx *c, vm_sbuf *b) {
    const dm *d = c->d;
    const vm_demo_opts *o = d->o;
    char x[4][32];
    vm_sbuf_printf(b, "## vmoer demo: story cloze, model %s, %d seeds (%llu..%llu)\n\n", o->model_path, o->n_seeds,
                   (unsigned long long)o->seed, (unsigned long long)(o->seed + o->n_seeds - 1));
    vm_sbuf_printf(b, "Scoring %s, one model pass per item (VGLR and MC-dropout average their S = %d samples inside the "
                   "router). Items: test %d, ", vm_task_mode_name(o->mode), o->samples, d->sets[DM_SET_TEST].n);
    for (int s = 0; s < d->n_ood; s++) vm_sbuf_printf(b, "%s %d (OOD), ", d->sets[DM_SET_OOD + s].name, d->sets[DM_SET_OOD + s].n);
    vm_sbuf_printf(b, "validation %d (temperature scaling), training %d (each fit holds %.0f %% out for early stopping).",
                   d->sets[DM_SET_VAL].n, d->sets[DM_SET_TRAIN].n, 100.0 * o->val_frac);
    int skipped = 0;
    for (int s = 0; s < DM_N_SETS(d); s++) skipped += d->sets[s].n_skipped;
    if (skipped) vm_sbuf_printf(b, " %d item(s) could not be built and are left out (first: %s).", skipped,
                                d->sets[DM_SET_TEST].n_skipped ? d->sets[DM_SET_TEST].skip_msg : "see timing.json");
    if (d->has_mstats) {
        const vm_expert_stats *ms = &d->mstats;
        char y[7][32];
        vm_sbuf_printf(b, "\nThe model (%lld predictions of %s): loss %s nats/token with its routers, %s with K of N "
                       "experts drawn at random (+%s); router logit SD %s, K-th minus (K+1)-th logit %s, smallest "
                       "expert load %s (uniform %s).", (long long)ms->n_tokens, d->mstats_text,
                       num(y[0], 32, ms->loss_router, 3), num(y[1], 32, ms->loss_random_routing, 3),
                       num(y[2], 32, ms->loss_random_routing - ms->loss_router, 3), num(y[3], 32, ms->logit_sd_mean, 3),
                       num(y[4], 32, ms->logit_gap_mean, 3), num(y[5], 32, ms->load_min, 3),
                       num(y[6], 32, 1.0 / ms->n_expert, 3));
    }
    vm_sbuf_printf(b, "\nRouters replaced on MoE layer(s)");
    for (int i = 0; i < d->nl; i++) vm_sbuf_printf(b, "%s %d", i ? "," : "", d->layers[i]);
    vm_sbuf_printf(b, " (%s; the deterministic model's Jaccard at gamma 0.01 per layer:",
                   o->layers_auto ? "the least stable under embedding noise" : "the last layers");
    for (int l = 0; l < d->n_layer; l++) vm_sbuf_printf(b, " %s", num(x[0], 32, d->jac_det[l], 3));
    vm_sbuf_printf(b, "). Prior scale sigma_p per layer (seed 0):");
    for (int m = 0; m < DM_N_METHODS; m++)
        if (!strcmp(dm_methods[m].kind, "vglr-mf"))
            for (int i = 0; i < d->nl; i++) vm_sbuf_printf(b, " %s", num(x[0], 32, d->runs[m][0].fit.prior_sd[i], 4));
    vm_sbuf_printf(b, ". beta chosen on the fits' held-out NLL (seed 0):");
    for (int m = 0; m < DM_N_METHODS; m++)
        if (dm_methods[m].fit && dm_gridded(dm_methods[m].kind))
            vm_sbuf_printf(b, " %s %g;", dm_methods[m].name, (double)d->beta_chosen[m]);
    vm_sbuf_printf(b, "\nEvery number is the mean over seeds; [lo, hi] a 95 %% bootstrap interval (%d resamples of the "
                   "items); Delta = the paired difference from the deterministic router (same items, same resamples) "
                   "with its interval. ECE with %d bins. Jaccard of the selected experts at gamma 0.01 over the replaced "
                   "layers (%d test prompts, independent router streams for the clean and noisy pass).\n\n",
                   o->boot, o->bins, o->n_stab);
}

static void table_md_main(const out_ctx *c, vm_sbuf *b, int ts) {
    const dm *d = c->d;
    char x[2][32];
    vm_sbuf_printf(b, ts ? "### After temperature scaling (T per method and seed, fitted on validation; Delta vs deterministic+ts)\n\n"
                         : "### Test set: accuracy and calibration (Delta vs deterministic)\n\n");
    vm_sbuf_puts(b, "| method | ACC | Delta ACC | NLL | Delta NLL | ECE | Delta ECE | Brier | Delta Brier |");
    vm_sbuf_puts(b, ts ? " T |\n|---|---|---|---|---|---|---|---|---|---:|\n"
                       : " Jaccard@0.01 | Delta Jaccard | FLOPs x | fit |\n|---|---|---|---|---|---|---|---|---|---|---|---:|---|\n");
    for (int m = 0; m < DM_N_METHODS; m++) {
        const int row = 2 * m + ts;
        vm_sbuf_printf(b, "| %s |", c->names[row]);
        static const int st[] = { ST_ACC, ST_NLL, ST_ECE, ST_BRIER };
        for (size_t k = 0; k < sizeof st / sizeof *st; k++) {
            vm_sbuf_puts(b, " "); cell_ci(b, PS(c, row, st[k]), 3); vm_sbuf_puts(b, " |");
            if (c->base_of[row] == row) vm_sbuf_puts(b, " - |");
            else { vm_sbuf_puts(b, " "); cell_diff(b, PS(c, row, st[k]), 3); vm_sbuf_puts(b, " |"); }
        }
        if (ts) {
            double T;
            mean_over_seeds(d, m, run_T, &T);
            vm_sbuf_printf(b, " %s |\n", num(x[0], 32, T, 2));
            continue;
        }
        vm_sbuf_puts(b, " "); cell_ci(b, PS(c, row, ST_JAC), 3); vm_sbuf_puts(b, " |");
        if (c->base_of[row] == row) vm_sbuf_puts(b, " - |");
        else { vm_sbuf_puts(b, " "); cell_diff(b, PS(c, row, ST_JAC), 3); vm_sbuf_puts(b, " |"); }
        double fl;
        mean_over_seeds(d, m, run_flops, &fl);
        vm_sbuf_printf(b, " %s |", num(x[0], 32, fl, 4));
        if (!dm_methods[m].fit) vm_sbuf_puts(b, " - |\n");
        else {
            const int k = seeds_improved(d, m);
            const int dv = seeds_diverged(d, m);
            vm_sbuf_printf(b, " %d/%d improved%s", k, d->n_seeds[m], k < d->n_seeds[m] ? " (kept its initial head otherwise)" : "");
            if (dv) vm_sbuf_printf(b, "; %d diverged (best so far kept)", dv);
            vm_sbuf_puts(b, " |\n");
        }
    }
    vm_sbuf_puts(b, "\n");
}

static void table_md_ood(const out_ctx *c, vm_sbuf *b) {
    const dm *d = c->d;
    static const int show[] = { VM_EVAL_UNC_NEG_MAXPROB, VM_EVAL_UNC_ENTROPY, VM_EVAL_UNC_ILV, VM_EVAL_UNC_ILV_DEV,
                                VM_EVAL_UNC_GATE_ENTROPY, VM_EVAL_UNC_TEMPERATURE, VM_EVAL_UNC_PROB_VAR,
                                VM_EVAL_UNC_BASE_GATE_ENTROPY };
    enum { NSH = sizeof show / sizeof *show };
    char x[32];
    for (int s = 0; s < d->n_ood; s++) {
        vm_sbuf_printf(b, "### OOD detection: %s vs test (AUROC, OOD = positive, higher score = more OOD; raw methods)\n\n"
                          "| method | acc on OOD |", d->sets[DM_SET_OOD + s].name);
        for (int k = 0; k < NSH; k++) vm_sbuf_printf(b, " %s |", score_label(show[k]));
        vm_sbuf_puts(b, " declared score: Delta vs deterministic max-prob |\n|---|---:|");
        for (int k = 0; k < NSH; k++) vm_sbuf_puts(b, "---:|");
        vm_sbuf_puts(b, "---|\n");
        for (int m = 0; m < DM_N_METHODS; m++) {
            const int row = 2 * m;
            vm_sbuf_printf(b, "| %s | %s |", c->names[row], num(x, 32, PS(c, row, ST_OODACC(d, s))->point, 3));
            for (int k = 0; k < NSH; k++) vm_sbuf_printf(b, " %s |", num(x, 32, PS(c, row, ST_AUROC(d, s, show[k]))->point, 3));
            int ks[2];
            const int nk = declared_scores(dm_methods[m].kind, ks);
            for (int i = 0; i < nk; i++) {
                vm_sbuf_printf(b, "%s%s ", i ? "; " : " ", score_label(ks[i]));
                if (m == 0) vm_sbuf_puts(b, "-");
                else cell_diff(b, PS(c, row, ST_AUROC_VS(d, s, ks[i])), 3);
            }
            vm_sbuf_puts(b, " |\n");
        }
        vm_sbuf_puts(b, "\n");
    }
}

// One judged comparison, appended to line and tallied.
typedef struct tally { vm_sbuf better, worse; int same; } tally;

static void judge(tally *t, vm_sbuf *line, const char *method, const char *what, const vm_pstat *p, int higher, int dg,
                  int first) {
    char x[32];
    const int v = verdict_of(p, higher);
    vm_sbuf_printf(line, "%s%s %s, Delta ", first ? "" : "; ", what, num(x, 32, p->point, dg));
    cell_diff(line, p, dg);
    vm_sbuf_printf(line, " (%s)", vword(v));
    vm_sbuf *to = v == 1 ? &t->better : v == -1 ? &t->worse : NULL;
    if (to) vm_sbuf_printf(to, "%s%s %s", to->len ? "; " : "", method, what);
    t->same += v == 0;
}

static void verdict_md(const out_ctx *c, vm_sbuf *b) {
    const dm *d = c->d;
    tally t;
    vm_sbuf_init(&t.better); vm_sbuf_init(&t.worse);
    t.same = 0;
    vm_sbuf_puts(b, "### Verdict (computed from the intervals above: better or worse only when the 95 % interval of the "
                    "difference excludes zero)\n\n");
    for (int m = 1; m < DM_N_METHODS; m++) {
        const dm_method *me = &dm_methods[m];
        const int row = 2 * m;
        vm_sbuf_printf(b, "- %s", me->name);
        if (me->fit && dm_gridded(me->kind)) vm_sbuf_printf(b, " (beta %g)", (double)d->beta_chosen[m]);
        vm_sbuf_puts(b, ": ");
        judge(&t, b, me->name, "ECE", PS(c, row, ST_ECE), 0, 3, 1);
        judge(&t, b, me->name, "NLL", PS(c, row, ST_NLL), 0, 3, 0);
        judge(&t, b, me->name, "accuracy", PS(c, row, ST_ACC), 1, 3, 0);
        judge(&t, b, me->name, "Jaccard@0.01", PS(c, row, ST_JAC), 1, 3, 0);
        int ks[2];
        const int nk = declared_scores(me->kind, ks);
        for (int s = 0; s < d->n_ood; s++)
            for (int i = 0; i < nk; i++) {
                char what[160];
                snprintf(what, sizeof what, "OOD AUROC %s (%s vs deterministic max-prob)", d->sets[DM_SET_OOD + s].name,
                         score_label(ks[i]));
                judge(&t, b, me->name, what, PS(c, row, ST_AUROC_VS(d, s, ks[i])), 1, 3, 0);
            }
        // after temperature scaling, against the scaled deterministic router
        judge(&t, b, me->name, "ECE after temperature scaling (vs deterministic+ts)", PS(c, row + 1, ST_ECE), 0, 3, 0);
        judge(&t, b, me->name, "NLL after temperature scaling (vs deterministic+ts)", PS(c, row + 1, ST_NLL), 0, 3, 0);
        if (me->fit) {
            const int k = seeds_improved(d, m);
            if (k < d->n_seeds[m])
                vm_sbuf_printf(b, "; kept its initial head in %d of %d seeds (its fit did not improve the held-out NLL)",
                               d->n_seeds[m] - k, d->n_seeds[m]);
            if (seeds_diverged(d, m))
                vm_sbuf_printf(b, "; %d of %d fits diverged (non-finite loss; the best parameters before it kept)",
                               seeds_diverged(d, m), d->n_seeds[m]);
        }
        vm_sbuf_puts(b, ".\n");
    }
    vm_sbuf_printf(b, "\nBetter than deterministic: %s.\n", t.better.len ? vm_sbuf_str(&t.better) : "nothing");
    vm_sbuf_printf(b, "Worse than deterministic: %s.\n", t.worse.len ? vm_sbuf_str(&t.worse) : "nothing");
    vm_sbuf_printf(b, "No detectable difference: the other %d comparisons listed above.\n", t.same);
    vm_sbuf_free(&t.better); vm_sbuf_free(&t.worse);
    // the paper's four claims, on this model
    vm_sbuf_puts(b, "\nThe paper's claims on this model (VGLR-mf, VGLR-fc, VTSR against deterministic):\n");
    static const char *const bayes[] = { "vglr-mf", "vglr-fc", "vtsr" };
    char x[4][32];
    for (size_t i = 0; i < sizeof bayes / sizeof *bayes; i++) {
        int m = 0;
        while (m < DM_N_METHODS && strcmp(dm_methods[m].kind, bayes[i])) m++;
        if (m == DM_N_METHODS) continue;
        const int row = 2 * m;
        const vm_pstat *e = PS(c, row, ST_ECE), *e0 = PS(c, 0, ST_ECE), *j = PS(c, row, ST_JAC), *j0 = PS(c, 0, ST_JAC);
        double fl;
        mean_over_seeds(d, m, run_flops, &fl);
        int ks[2];
        declared_scores(bayes[i], ks);
        vm_sbuf_printf(b, "- %s: ECE %s%% (paper: -94 %%; %s); ", bayes[i],
                       snum(x[0], 32, 100.0 * e->diff / e0->point, 1), vword(verdict_of(e, 0)));
        for (int s = 0; s < d->n_ood; s++) {
            const vm_pstat *a = PS(c, row, ST_AUROC_VS(d, s, ks[0])), *a0 = PS(c, 0, ST_AUROC(d, s, VM_EVAL_UNC_NEG_MAXPROB));
            vm_sbuf_printf(b, "OOD AUROC %s with %s %s%% (paper: +12 %%; %s); ", d->sets[DM_SET_OOD + s].name,
                           score_label(ks[0]), snum(x[1], 32, 100.0 * a->diff / a0->point, 1), vword(verdict_of(a, 1)));
        }
        vm_sbuf_printf(b, "routing stability %s%% (paper: +38 %%; %s); extra FLOPs %s%% (paper: < 1 %%).\n",
                       snum(x[2], 32, 100.0 * j->diff / j0->point, 1), vword(verdict_of(j, 1)),
                       num(x[3], 32, 100.0 * (fl - 1.0), 2));
    }
}

// ---------------------------------------------------------------- table.json

static json_t *jnum(double x) { return isfinite(x) ? json_real(x) : json_null(); }
static json_t *jpair(double a, double b) { return json_pack("[o,o]", jnum(a), jnum(b)); }

static json_t *jstat(const vm_pstat *p, int with_diff) {
    json_t *j = json_object();
    json_object_set_new(j, "mean", jnum(p->point));
    json_object_set_new(j, "ci", jpair(p->lo, p->hi));
    json_object_set_new(j, "diff", with_diff ? jnum(p->diff) : json_real(0.0));
    json_object_set_new(j, "diff_ci", with_diff ? jpair(p->diff_lo, p->diff_hi) : jpair(0.0, 0.0));
    json_object_set_new(j, "seed_range", jpair(p->seed_min, p->seed_max));
    return j;
}

static json_t *table_json(const out_ctx *c) {
    const dm *d = c->d;
    const vm_demo_opts *o = d->o;
    json_t *j = json_object(), *cfg = json_object(), *ood = json_object(), *seeds = json_array(), *layers = json_array();
    json_object_set_new(j, "format", json_string("vmoer-demo-2"));
    json_object_set_new(j, "n_test", json_integer(d->sets[DM_SET_TEST].n));
    for (int s = 0; s < d->n_ood; s++) json_object_set_new(ood, d->sets[DM_SET_OOD + s].name, json_integer(d->sets[DM_SET_OOD + s].n));
    json_object_set_new(j, "n_ood", ood);
    json_object_set_new(j, "n_val", json_integer(d->sets[DM_SET_VAL].n));
    json_object_set_new(j, "n_train", json_integer(d->sets[DM_SET_TRAIN].n));
    for (int s = 0; s < o->n_seeds; s++) json_array_append_new(seeds, json_integer((json_int_t)(o->seed + s)));
    json_object_set_new(j, "seeds", seeds);
    for (int i = 0; i < d->nl; i++) json_array_append_new(layers, json_integer(d->layers[i]));
    json_object_set_new(j, "layers", layers);
    json_t *jd = json_array();
    for (int l = 0; l < d->n_layer; l++) json_array_append_new(jd, jnum(d->jac_det[l]));
    json_object_set_new(j, "layer_jaccard_deterministic", jd);
    json_object_set_new(cfg, "model", json_string(o->model_path));
    json_object_set_new(cfg, "model_tokens", json_integer(o->model_tokens));
    if (d->has_mstats) {   // issue 14: does routing matter on this model
        json_t *jm = vm_expert_stats_json(&d->mstats);
        if (jm) json_object_set_new(jm, "text", json_string(d->mstats_text));
        json_object_set_new(j, "model", jm ? jm : json_null());
    } else {
        json_object_set_new(j, "model", json_pack("{s:s}", "skipped", d->mstats_skip));
    }
    json_object_set_new(cfg, "data", json_string(o->data_dir));
    json_object_set_new(cfg, "score", json_string(vm_task_mode_name(o->mode)));
    json_object_set_new(cfg, "layers_auto", json_boolean(o->layers_auto));
    json_object_set_new(cfg, "val_frac", json_real(o->val_frac));
    json_object_set_new(cfg, "epochs", json_integer(o->epochs));
    json_object_set_new(cfg, "epochs_map", json_integer(o->epochs_map));
    json_object_set_new(cfg, "lr", json_real(o->lr));
    json_object_set_new(cfg, "lr_map", json_real(o->lr_map));
    json_object_set_new(cfg, "batch", json_integer(o->batch));
    json_object_set_new(cfg, "patience", json_integer(o->patience));
    json_object_set_new(cfg, "samples", json_integer(o->samples));
    json_object_set_new(cfg, "n_stab", json_integer(o->n_stab));
    json_object_set_new(cfg, "bins", json_integer(o->bins));
    json_object_set_new(cfg, "boot", json_integer(o->boot));
    json_object_set_new(cfg, "passes", json_integer(1));
    json_object_set_new(j, "config", cfg);
    json_t *methods = json_array();
    for (int row = 0; row < c->n_rows; row++) {
        const int m = row_method(row), ts = row_ts(row);
        const dm_method *me = &dm_methods[m];
        json_t *jm = json_object(), *jo = json_object();
        json_object_set_new(jm, "name", json_string(c->names[row]));
        json_object_set_new(jm, "kind", json_string(me->kind));
        json_object_set_new(jm, "temperature_scaled", json_boolean(ts));
        json_object_set_new(jm, "baseline", json_string(c->names[c->base_of[row]]));
        json_object_set_new(jm, "n_seeds", json_integer(d->n_seeds[m]));
        double fl, T;
        mean_over_seeds(d, m, run_flops, &fl);
        mean_over_seeds(d, m, run_T, &T);
        json_object_set_new(jm, "flops_ratio", jnum(fl));
        json_object_set_new(jm, "passes", json_integer(1));
        json_object_set_new(jm, "params_extra", json_integer(d->runs[m][0].params_extra));
        if (ts) json_object_set_new(jm, "temperature", jnum(T));
        json_object_set_new(jm, "fitted", json_boolean(me->fit));
        if (me->fit) {
            const int k = seeds_improved(d, m);
            json_object_set_new(jm, "improved_on_init", json_boolean(k == d->n_seeds[m]));
            json_object_set_new(jm, "seeds_improved", json_integer(k));
            json_t *fits = json_array();
            for (int s = 0; s < d->n_seeds[m]; s++) {
                const dm_fit *f = &d->runs[m][s].fit;
                json_t *jf = json_object(), *sd = json_array();
                json_object_set_new(jf, "seed", json_integer((json_int_t)(o->seed + s)));
                json_object_set_new(jf, "beta", jnum(f->beta));
                json_object_set_new(jf, "val_nll", jpair(f->val_nll_init, f->val_nll_best));
                json_object_set_new(jf, "val_acc", jpair(f->val_acc_init, f->val_acc_best));
                json_object_set_new(jf, "best_epoch", json_integer(f->best_epoch));
                json_object_set_new(jf, "improved_on_init", json_boolean(f->improved));
                json_object_set_new(jf, "diverged_step", json_integer(f->diverged_step));
                for (int i = 0; i < d->nl; i++) json_array_append_new(sd, jnum(f->prior_sd[i]));
                json_object_set_new(jf, "prior_sd", sd);
                json_array_append_new(fits, jf);
            }
            json_object_set_new(jm, "fits", fits);
        } else {
            json_object_set_new(jm, "improved_on_init", json_null());
        }
        const int wd = c->base_of[row] != row;
        static const struct { const char *name; int st; } main_stats[] = {
            { "acc", ST_ACC }, { "nll", ST_NLL }, { "ece", ST_ECE }, { "mce", ST_MCE }, { "brier", ST_BRIER }, { "jaccard", ST_JAC } };
        for (size_t k = 0; k < sizeof main_stats / sizeof *main_stats; k++)
            json_object_set_new(jm, main_stats[k].name, jstat(PS(c, row, main_stats[k].st), wd));
        json_t *oacc = json_object();
        for (int s = 0; s < d->n_ood; s++) {
            json_t *js = json_object();
            for (int k = 0; k < NSC; k++) {
                const vm_pstat *p = PS(c, row, ST_AUROC(d, s, k));
                if (!isfinite(p->point)) continue;
                json_t *e = jstat(p, 1);
                // the difference from the deterministic model's max-prob AUROC (the paper's baseline)
                const vm_pstat *v = PS(c, row, ST_AUROC_VS(d, s, k));
                const int self = !wd;
                json_object_set_new(e, "diff", self ? jnum(p->point - v->point) : jnum(v->diff));
                json_object_set_new(e, "diff_ci", self ? jpair(NAN, NAN) : jpair(v->diff_lo, v->diff_hi));
                json_object_set_new(e, "diff_same_score_ci", jpair(p->diff_lo, p->diff_hi));
                json_object_set_new(js, vm_eval_unc_name(k), e);
            }
            json_object_set_new(jo, d->sets[DM_SET_OOD + s].name, js);
            json_object_set_new(oacc, d->sets[DM_SET_OOD + s].name, jstat(PS(c, row, ST_OODACC(d, s)), wd));
        }
        json_object_set_new(jm, "auroc", jo);
        json_object_set_new(jm, "ood_acc", oacc);
        json_array_append_new(methods, jm);
    }
    json_object_set_new(j, "methods", methods);
    json_t *beta = json_object(), *grid = json_object();
    for (int m = 0; m < DM_N_METHODS; m++) {
        if (!dm_methods[m].fit || !dm_gridded(dm_methods[m].kind)) continue;
        json_object_set_new(beta, dm_methods[m].name, jnum(d->beta_chosen[m]));
        json_t *g = json_array();
        const int n = strcmp(dm_methods[m].kind, "vtsr") ? o->n_beta : o->n_beta_t;
        for (int k = 0; k < n; k++)
            json_array_append_new(g, json_pack("{s:o,s:o,s:o}", "beta", jnum(d->grid[m][k].beta), "val_nll_init",
                                               jnum(d->grid[m][k].val_nll_init), "val_nll_best", jnum(d->grid[m][k].val_nll_best)));
        json_object_set_new(grid, dm_methods[m].name, g);
    }
    json_object_set_new(j, "beta", beta);
    json_object_set_new(j, "beta_grid", grid);
    return j;
}

// ---------------------------------------------------------------- files

static int write_text(const dm *d, const char *name, const char *text) {
    char path[4300];
    snprintf(path, sizeof path, "%s/%s", d->stage_dir, name);
    vm_afile a;
    if (vm_afile_open(&a, path)) return -1;
    if (fputs(text, a.f) == EOF) { vm_afile_abort(&a); return vm_err("demo: cannot write %s", path); }
    return vm_afile_commit(&a);
}

static int write_json(const dm *d, const char *name, json_t *j) {
    if (!j) return vm_err("demo: out of memory building %s", name);
    char *s = json_dumps(j, JSON_INDENT(1) | JSON_REAL_PRECISION(10));
    json_decref(j);
    if (!s) return vm_err("demo: out of memory writing %s", name);
    vm_sbuf b;
    vm_sbuf_init(&b);
    vm_sbuf_puts(&b, s);
    vm_sbuf_puts(&b, "\n");
    free(s);
    const int rc = vm_sbuf_ok(&b) ? -1 : write_text(d, name, b.s);
    vm_sbuf_free(&b);
    return rc;
}

static json_t *timing_json(const dm *d) {
    json_t *j = json_object(), *m = json_object();
    json_object_set_new(j, "seconds_total", jnum(d->seconds));
    for (int k = 0; k < DM_N_METHODS; k++) {
        json_t *a = json_array();
        for (int s = 0; s < d->n_seeds[k]; s++)
            json_array_append_new(a, json_pack("{s:o,s:o}", "fit", jnum(d->runs[k][s].fit.seconds), "eval", jnum(d->runs[k][s].sec_eval)));
        json_object_set_new(m, dm_methods[k].name, a);
    }
    json_object_set_new(j, "methods", m);
    return j;
}

int dm_outputs(dm *d) {
    out_ctx c = { .d = d, .n_rows = 2 * DM_N_METHODS, .n_stats = N_STATS(d) };
    int base_of[2 * DM_N_METHODS], n_seeds[2 * DM_N_METHODS];
    for (int r = 0; r < c.n_rows; r++) {
        base_of[r] = row_ts(r);   // rows 0 (deterministic) and 1 (deterministic+ts)
        n_seeds[r] = d->n_seeds[row_method(r)];
        snprintf(c.names[r], sizeof c.names[r], "%s%s", dm_methods[row_method(r)].name, row_ts(r) ? "+ts" : "");
    }
    c.base_of = base_of;
    prep (*pr)[VM_DEMO_MAX_SEEDS] = vm_calloc((size_t)c.n_rows, sizeof *pr);
    c.ps = vm_calloc((size_t)c.n_rows * c.n_stats, sizeof *c.ps);
    int rc = pr && c.ps ? 0 : -1;
    for (int r = 0; r < c.n_rows && !rc; r++)
        for (int s = 0; s < n_seeds[r] && !rc; s++) rc = prepare(d, r, s, &pr[r][s]);
    const int stab_n = d->runs[0][0].stab.n_items;
    int strata[2 + DM_MAX_OOD];
    strata[0] = d->sets[DM_SET_TEST].n;
    for (int s = 0; s < d->n_ood; s++) strata[1 + s] = d->sets[DM_SET_OOD + s].n;
    strata[1 + d->n_ood] = stab_n > 0 ? stab_n : 1;
    stats_ctx sc = { .d = d, .pr = pr, .n_rows = c.n_rows, .base_of = base_of };
    vm_paired_opts po = { .n_rows = c.n_rows, .n_stats = c.n_stats, .base_of = base_of, .n_seeds = n_seeds,
                          .n_strata = 2 + d->n_ood, .stratum_n = strata, .B = d->o->boot, .level = LEVEL,
                          .seed = d->o->seed ^ 0x626f6f74ull };
    if (!rc) rc = vm_paired_bootstrap(&po, stat_fn, &sc, c.ps);
    vm_sbuf md, verdict;
    vm_sbuf_init(&md);
    vm_sbuf_init(&verdict);
    if (!rc) {
        table_md_setup(&c, &md);
        table_md_main(&c, &md, 0);
        table_md_main(&c, &md, 1);
        table_md_ood(&c, &md);
        verdict_md(&c, &verdict);
        vm_sbuf_puts(&md, vm_sbuf_str(&verdict));
        rc = vm_sbuf_ok(&md) || vm_sbuf_ok(&verdict) ? vm_err("demo: out of memory") : 0;
    }
    if (!rc) {
        fputs(md.s, stdout);
        rc = write_text(d, "table.md", md.s) || write_json(d, "table.json", table_json(&c)) ||
             write_json(d, "timing.json", timing_json(d)) || dm_report(&c, verdict.s) ? -1 : 0;
        printf("\nWall time %.0f s; outputs in %s/\n", d->seconds, d->o->outdir);
    }
    vm_sbuf_free(&md);
    vm_sbuf_free(&verdict);
    for (int r = 0; pr && r < c.n_rows; r++)
        for (int s = 0; s < n_seeds[r]; s++) prep_free(&pr[r][s], d->n_ood);
    free(pr);
    free(c.ps);
    return rc;
}

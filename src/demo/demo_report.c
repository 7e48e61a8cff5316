// report.html of `vmoer demo`: the same numbers as table.md and table.json, with the reliability
// diagrams, the per-layer stability and per-layer ILV separation, the beta grid and the fits.
#include "demo/demo_internal.h"
#include "eval/metrics.h"
#include "report/report.h"
#include "util/err.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Every paragraph of a markdown-ish block as its own text (headings "### x" as sections, "- " kept).
static int text_block(vm_report *rep, const char *md) {
    int rc = 0;
    const char *p = md;
    while (*p && !rc) {
        const char *e = strchr(p, '\n');
        const size_t n = e ? (size_t)(e - p) : strlen(p);
        char *line = vm_malloc(n + 1);
        if (!line) return -1;
        memcpy(line, p, n);
        line[n] = 0;
        if (!strncmp(line, "### ", 4)) rc = vm_report_section(rep, line + 4);
        else if (!strncmp(line, "## ", 3)) rc = vm_report_section(rep, line + 3);
        else if (n) rc = vm_report_text(rep, line);
        free(line);
        p = e ? e + 1 : p + n;
    }
    return rc;
}

static int main_tables(const out_ctx *c, vm_report *rep) {
    const dm *d = c->d;
    static const char *cols[] = { "ACC", "NLL", "ECE", "MCE", "Brier", "Jaccard@0.01", "FLOPs x" };
    static const int st[] = { ST_ACC, ST_NLL, ST_ECE, ST_MCE, ST_BRIER, ST_JAC };
    static const signed char better[] = { 1, -1, -1, -1, -1, 1, -1 };
    enum { NC = 7 };
    int rc = 0;
    for (int ts = 0; ts < 2 && !rc; ts++) {
        double v[DM_N_METHODS * NC], lo[DM_N_METHODS * NC], hi[DM_N_METHODS * NC];
        double dv[DM_N_METHODS * NC], dlo[DM_N_METHODS * NC], dhi[DM_N_METHODS * NC];
        const char *rows[DM_N_METHODS];
        for (int m = 0; m < DM_N_METHODS; m++) {
            const int row = 2 * m + ts;
            rows[m] = c->names[row];
            for (int k = 0; k < NC - 1; k++) {
                const vm_pstat *p = PS(c, row, st[k]);
                v[m * NC + k] = p->point; lo[m * NC + k] = p->lo; hi[m * NC + k] = p->hi;
                dv[m * NC + k] = p->diff; dlo[m * NC + k] = p->diff_lo; dhi[m * NC + k] = p->diff_hi;
            }
            double fl;
            mean_over_seeds(d, m, run_flops, &fl);
            v[m * NC + NC - 1] = fl; lo[m * NC + NC - 1] = hi[m * NC + NC - 1] = NAN;
            dv[m * NC + NC - 1] = fl - 1.0; dlo[m * NC + NC - 1] = dhi[m * NC + NC - 1] = NAN;
        }
        char cap[256];
        snprintf(cap, sizeof cap, "%s: mean over seeds [95%% bootstrap interval]; test n = %d",
                 ts ? "After temperature scaling" : "Test set", d->sets[DM_SET_TEST].n);
        vm_table t = { .caption = cap, .n_rows = DM_N_METHODS, .n_cols = NC, .row_names = rows, .col_names = cols,
                       .values = v, .lo = lo, .hi = hi, .better = better };
        rc = vm_report_table(rep, &t);
        snprintf(cap, sizeof cap, "%s: paired difference from %s [95%% interval]", ts ? "After temperature scaling" : "Test set",
                 ts ? "deterministic+ts" : "deterministic");
        vm_table t2 = { .caption = cap, .n_rows = DM_N_METHODS, .n_cols = NC, .row_names = rows, .col_names = cols,
                        .values = dv, .lo = dlo, .hi = dhi };
        if (!rc) rc = vm_report_table(rep, &t2);
    }
    return rc;
}

static int ood_tables(const out_ctx *c, vm_report *rep) {
    const dm *d = c->d;
    static const int show[] = { VM_EVAL_UNC_NEG_MAXPROB, VM_EVAL_UNC_ENTROPY, VM_EVAL_UNC_ILV, VM_EVAL_UNC_ILV_DEV,
                                VM_EVAL_UNC_GATE_ENTROPY, VM_EVAL_UNC_TEMPERATURE, VM_EVAL_UNC_PROB_VAR,
                                VM_EVAL_UNC_BASE_GATE_ENTROPY };
    enum { NS = sizeof show / sizeof *show };
    int rc = 0;
    for (int s = 0; s < d->n_ood && !rc; s++) {
        const char *cols[NS + 1] = { "acc" };
        signed char better[NS + 1] = { 0 };
        for (int k = 0; k < NS; k++) { cols[1 + k] = score_label(show[k]); better[1 + k] = 1; }
        double v[DM_N_METHODS * (NS + 1)], lo[DM_N_METHODS * (NS + 1)], hi[DM_N_METHODS * (NS + 1)];
        const char *rows[DM_N_METHODS];
        for (int m = 0; m < DM_N_METHODS; m++) {
            const int row = 2 * m;
            rows[m] = c->names[row];
            const vm_pstat *a = PS(c, row, ST_OODACC(d, s));
            v[m * (NS + 1)] = a->point; lo[m * (NS + 1)] = a->lo; hi[m * (NS + 1)] = a->hi;
            for (int k = 0; k < NS; k++) {
                const vm_pstat *p = PS(c, row, ST_AUROC(d, s, show[k]));
                v[m * (NS + 1) + 1 + k] = p->point; lo[m * (NS + 1) + 1 + k] = p->lo; hi[m * (NS + 1) + 1 + k] = p->hi;
            }
        }
        char cap[256];
        snprintf(cap, sizeof cap, "OOD AUROC per score, %s (n = %d) vs test; acc = accuracy on the OOD items",
                 d->sets[DM_SET_OOD + s].name, d->sets[DM_SET_OOD + s].n);
        vm_table t = { .caption = cap, .n_rows = DM_N_METHODS, .n_cols = NS + 1, .row_names = rows, .col_names = cols,
                       .values = v, .lo = lo, .hi = hi, .better = better };
        rc = vm_report_table(rep, &t);
    }
    return rc;
}

// Reliability diagrams of the first seed: every raw method and the scaled deterministic one.
static int reliability(const out_ctx *c, vm_report *rep) {
    const dm *d = c->d;
    const int n = d->sets[DM_SET_TEST].n, M = d->o->bins;
    double *p = vm_calloc((size_t)n * VM_MCQ_MAX_CHOICES, sizeof(double));
    int *y = vm_malloc((size_t)n * sizeof(int));
    int rc = p && y ? 0 : -1;
    for (int row = 0; row < c->n_rows && !rc; row++) {
        if (row_ts(row) && row != 1) continue;
        const dm_run *run = &d->runs[row_method(row)][0];
        const dm_res *r = row_ts(row) ? run->ts[DM_SET_TEST] : run->res[DM_SET_TEST];
        for (int i = 0; i < n; i++) {
            for (int k = 0; k < VM_MCQ_MAX_CHOICES; k++) p[(size_t)i * VM_MCQ_MAX_CHOICES + k] = k < r[i].C ? r[i].p[k] : 0.0;
            y[i] = r[i].y;
        }
        vm_ece_bin bins[1000];
        double ece = NAN;
        rc = vm_ece_reliability(n, VM_MCQ_MAX_CHOICES, p, y, M, bins) || vm_ece(n, VM_MCQ_MAX_CHOICES, p, y, M, &ece) ? -1 : 0;
        char title[160];
        snprintf(title, sizeof title, "Reliability: %s, seed %llu (ECE %.3f)", c->names[row], (unsigned long long)d->o->seed, ece);
        int cnt[1000];
        double acc[1000], conf[1000];
        if (!rc) rc = vm_ece_bins_split(M, bins, cnt, acc, conf) || vm_report_reliability(rep, title, M, cnt, acc, conf) ? -1 : 0;
    }
    free(p); free(y);
    return rc;
}

// Per MoE layer: each method's Jaccard at gamma 0.01 (mean over seeds).
static int layer_jaccard(const out_ctx *c, vm_report *rep) {
    const dm *d = c->d;
    const vm_stability *s0 = &d->runs[0][0].stab;
    const int nl = s0->n_layer < 64 ? s0->n_layer : 64;
    double y[DM_N_METHODS][64];
    vm_curve cv[DM_N_METHODS];
    char names[64][16];
    const char *lnames[64];
    for (int l = 0; l < nl; l++) { snprintf(names[l], sizeof names[l], "%d", s0->layers[l]); lnames[l] = names[l]; }
    for (int m = 0; m < DM_N_METHODS; m++) {
        for (int l = 0; l < nl; l++) {
            double s = 0;
            for (int k = 0; k < d->n_seeds[m]; k++) s += d->runs[m][k].stab.jac[l];
            y[m][l] = s / d->n_seeds[m];
        }
        cv[m] = (vm_curve){ .label = c->names[2 * m], .n = nl, .x = NULL, .y = y[m] };
    }
    return vm_report_layer_bars(rep, "Mean Jaccard of the selected experts, clean vs noisy (gamma 0.01), per MoE layer",
                                "mean Jaccard", nl, lnames, DM_N_METHODS, cv);
}

// Per replaced layer: AUROC of that layer's ILV and ILV deviation alone (VGLR rows, mean over seeds).
static int layer_ilv(const out_ctx *c, vm_report *rep) {
    const dm *d = c->d;
    const int n = d->sets[DM_SET_TEST].n;
    int rc = 0;
    for (int s = 0; s < d->n_ood && !rc; s++) {
        const int no = d->sets[DM_SET_OOD + s].n;
        double y[2 * DM_N_METHODS][DM_MAX_LAYERS];
        char labels[2 * DM_N_METHODS][96];
        vm_curve cv[2 * DM_N_METHODS];
        int nc = 0;
        double *a = vm_malloc((size_t)n * sizeof(double)), *b = vm_malloc((size_t)no * sizeof(double));
        if (!a || !b) { free(a); free(b); return -1; }
        for (int m = 0; m < DM_N_METHODS && !rc; m++) {
            if (strncmp(dm_methods[m].kind, "vglr", 4)) continue;
            for (int q = 0; q < 2; q++) {   // 0 ILV, 1 ILV deviation
                for (int li = 0; li < d->nl; li++) {
                    double sum = 0;
                    for (int k = 0; k < d->n_seeds[m]; k++) {
                        const dm_run *r = &d->runs[m][k];
                        for (int i = 0; i < n; i++) a[i] = r->res[DM_SET_TEST][i].lay[li][q];
                        for (int i = 0; i < no; i++) b[i] = r->res[DM_SET_OOD + s][i].lay[li][q];
                        double au = NAN;
                        if (vm_metric_auroc(n, a, no, b, &au)) { vm_err_clear(); au = NAN; }
                        sum += au;
                    }
                    y[nc][li] = sum / d->n_seeds[m];
                }
                snprintf(labels[nc], sizeof labels[nc], "%s %s", dm_methods[m].name, q ? "ILV deviation" : "ILV");
                cv[nc] = (vm_curve){ .label = labels[nc], .n = d->nl, .x = NULL, .y = y[nc] };
                nc++;
            }
        }
        free(a); free(b);
        char names[DM_MAX_LAYERS][16];
        const char *lnames[DM_MAX_LAYERS];
        for (int li = 0; li < d->nl; li++) { snprintf(names[li], sizeof names[li], "%d", d->layers[li]); lnames[li] = names[li]; }
        char title[160];
        snprintf(title, sizeof title, "OOD AUROC of one layer's read-out alone, %s vs test (per replaced layer)",
                 d->sets[DM_SET_OOD + s].name);
        if (nc) rc = vm_report_layer_bars(rep, title, "AUROC", d->nl, lnames, nc, cv);
    }
    return rc;
}

static int fits_table(const out_ctx *c, vm_report *rep) {
    const dm *d = c->d;
    static const char *cols[] = { "seed", "beta", "val NLL init", "val NLL best", "best epoch", "improved", "fit s" };
    enum { NC = 7 };
    double v[DM_N_METHODS * (VM_DEMO_MAX_SEEDS + VM_DEMO_MAX_GRID) * NC];
    char names[DM_N_METHODS * (VM_DEMO_MAX_SEEDS + VM_DEMO_MAX_GRID)][64];
    const char *rows[DM_N_METHODS * (VM_DEMO_MAX_SEEDS + VM_DEMO_MAX_GRID)];
    int n = 0;
    for (int m = 0; m < DM_N_METHODS; m++) {
        if (!dm_methods[m].fit) continue;
        const int gridded = dm_gridded(dm_methods[m].kind);
        const int ng = gridded ? (strcmp(dm_methods[m].kind, "vtsr") ? d->o->n_beta : d->o->n_beta_t) : 0;
        for (int g = 0; g < ng; g++) {   // the beta grid, seed 0
            const dm_fit *f = &d->grid[m][g];
            snprintf(names[n], sizeof names[n], "%s (grid)", dm_methods[m].name);
            const double x[NC] = { (double)d->o->seed, f->beta, f->val_nll_init, f->val_nll_best, f->best_epoch, f->improved, f->seconds };
            memcpy(v + n * NC, x, sizeof x);
            rows[n] = names[n]; n++;
        }
        for (int s = 0; s < d->n_seeds[m]; s++) {
            const dm_fit *f = &d->runs[m][s].fit;
            snprintf(names[n], sizeof names[n], "%s", dm_methods[m].name);
            const double x[NC] = { (double)(d->o->seed + s), f->beta, f->val_nll_init, f->val_nll_best, f->best_epoch, f->improved, f->seconds };
            memcpy(v + n * NC, x, sizeof x);
            rows[n] = names[n]; n++;
        }
    }
    static const int dg[NC] = { 0, 3, 4, 4, 0, 0, 1 };
    vm_table t = { .caption = "Fits: beta grid (first seed; beta chosen by the held-out NLL) and every seed's fit "
                              "(held-out NLL of the initial head and of the kept parameters)",
                   .row_header = "fit", .n_rows = n, .n_cols = NC, .row_names = rows, .col_names = cols, .values = v, .digits = dg };
    return n ? vm_report_table(rep, &t) : 0;
}

int dm_report(const out_ctx *c, const char *verdict) {
    const dm *d = c->d;
    vm_report *rep = vm_report_init("vmoer demo: Bayesian routing on story cloze");
    if (!rep) return -1;
    vm_sbuf b;
    vm_sbuf_init(&b);
    table_md_setup(c, &b);
    int rc = vm_sbuf_ok(&b) ? -1 : text_block(rep, b.s);
    vm_sbuf_free(&b);
    if (!rc) rc = vm_report_section(rep, "Accuracy and calibration");
    if (!rc) rc = main_tables(c, rep);
    if (!rc) rc = vm_report_section(rep, "OOD detection");
    if (!rc) rc = ood_tables(c, rep);
    if (!rc) rc = text_block(rep, verdict);
    if (!rc) rc = vm_report_section(rep, "Calibration (test, first seed)");
    if (!rc) rc = reliability(c, rep);
    if (!rc) rc = vm_report_section(rep, "Routing stability and ILV per layer");
    if (!rc) rc = layer_jaccard(c, rep);
    if (!rc) rc = layer_ilv(c, rep);
    if (!rc) rc = vm_report_section(rep, "Fits");
    if (!rc) rc = fits_table(c, rep);
    if (!rc) {
        char txt[256];
        snprintf(txt, sizeof txt, "Wall time %.0f s (not in table.md or table.json, which depend only on the seed).", d->seconds);
        rc = vm_report_section(rep, "Wall time") || vm_report_text(rep, txt) ? -1 : 0;
    }
    char path[4300];
    snprintf(path, sizeof path, "%s/report.html", d->stage_dir);
    if (!rc) rc = vm_report_write(rep, path);
    vm_report_free(rep);
    return rc ? vm_err_prefix("demo: report") : 0;
}

// vmoer compare OUTDIR... -o OUT.html: several `vmoer eval` runs side by side: their metrics tables
// (in-distribution, OOD per set, stability, cost) and overlaid figures (reliability, risk-coverage,
// ROC per OOD set, Jaccard vs noise), read from each run's metrics.json and curves.json.
#include "cli/cli.h"
#include "report/report.h"
#include "util/err.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *CMD = "compare";
#define MAX_RUNS 32

static void usage(void) {
    printf("usage: vmoer compare OUTDIR... -o OUT.html [--names A,B,...]\n\n"
           "Puts several `vmoer eval` output folders side by side in one self-contained HTML report:\n"
           "metrics tables (rows 'run · method') and overlaid reliability, risk-coverage, ROC and\n"
           "Jaccard-vs-noise figures (one colour per method, one dash pattern per run).\n\n"
           "options:\n"
           "  -o, --output FILE   the report (written atomically; required)\n"
           "  --names A,B,...     run names (default: the folder names)\n"
           "  -h, --help          this text\n");
}

typedef struct run {
    char name[128];
    json_t *metrics, *curves;
} run;

// Every double array handed to the report lives here until the end.
typedef struct pool { double **p; int n, cap; int oom; } pool;

static double *pool_alloc(pool *pl, size_t n) {
    if (pl->n == pl->cap) {
        int cap = pl->cap ? 2 * pl->cap : 64;
        double **q = realloc(pl->p, (size_t)cap * sizeof *q);
        if (!q) { pl->oom = 1; return NULL; }
        pl->p = q; pl->cap = cap;
    }
    double *d = malloc((n ? n : 1) * sizeof *d);
    if (!d) { pl->oom = 1; return NULL; }
    return pl->p[pl->n++] = d;
}

static double jval(const json_t *j) { return json_is_number(j) ? json_number_value(j) : NAN; }

static double *jarray(pool *pl, const json_t *a, int *n) {
    *n = json_is_array(a) ? (int)json_array_size(a) : 0;
    double *d = pool_alloc(pl, (size_t)*n);
    for (int i = 0; d && i < *n; i++) d[i] = jval(json_array_get(a, (size_t)i));
    return d;
}

static json_t *load_json(const char *dir, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    if (!j) vm_err("%s: %s (line %d)", path, e.text, e.line);
    return j;
}

// ROC overlays keep the predictive scores only (entropy, MI, ILV), or the legend outgrows the plot.
static int roc_keep(const char *label) {
    static const char *const keep[] = { " entropy", " mi", " ilv" };
    const size_t n = strlen(label);
    for (size_t i = 0; i < sizeof keep / sizeof *keep; i++) {
        const size_t m = strlen(keep[i]);
        if (n >= m && !strcmp(label + n - m, keep[i])) return 1;
    }
    return 0;
}

// Curves of one kind from every run: curves.json[key] is {label: {x, y}} (or {x, y} itself for
// "jaccard", labelled with the run's first method).
static int add_curves(vm_report *r, pool *pl, int n_runs, run *runs, const char *const *names, const char *key,
                      const char *sub, vm_fig_kind kind, const char *title) {
    vm_curve *cv[MAX_RUNS];
    int nc[MAX_RUNS], any = 0, rc = 0;
    for (int k = 0; k < n_runs; k++) {
        json_t *obj = json_object_get(runs[k].curves, key);
        if (sub) obj = json_object_get(obj, sub);
        nc[k] = 0;
        cv[k] = calloc(obj ? json_object_size(obj) + 1 : 1, sizeof(vm_curve));
        if (!cv[k]) { rc = -1; continue; }
        if (!obj) continue;
        if (json_object_get(obj, "x")) {   // a single curve
            json_t *m0 = json_array_get(json_object_get(runs[k].metrics, "methods"), 0);
            cv[k][0].label = json_is_string(m0) ? json_string_value(m0) : "model";
            cv[k][0].x = jarray(pl, json_object_get(obj, "x"), &cv[k][0].n);
            int ny;
            cv[k][0].y = jarray(pl, json_object_get(obj, "y"), &ny);
            if (ny < cv[k][0].n) cv[k][0].n = ny;
            nc[k] = 1;
        } else {
            const char *lab;
            json_t *c;
            json_object_foreach(obj, lab, c) {
                if (kind == VM_FIG_ROC && !roc_keep(lab)) continue;
                vm_curve *v = &cv[k][nc[k]++];
                int ny;
                v->label = lab;
                v->x = jarray(pl, json_object_get(c, "x"), &v->n);
                v->y = jarray(pl, json_object_get(c, "y"), &ny);
                if (ny < v->n) v->n = ny;
            }
        }
        any += nc[k];
    }
    if (!rc && !pl->oom && any)
        rc = vm_report_compare_curves(r, kind, title, n_runs, names, nc, (const vm_curve *const *)cv);
    for (int k = 0; k < n_runs; k++) free(cv[k]);
    return pl->oom ? -1 : rc;
}

// A table per run from results: rows = methods, columns = cols (values results[m][col]).
static int id_tables(vm_report *r, int n_runs, run *runs, const char *const *names) {
    static const char *cols[] = { "acc", "acc_norm", "nll", "brier", "ece", "mce", "ece_adaptive", "ece_signed",
                                  "ece_classwise", "aurc", "temperature" };
    static const signed char better[] = { 1, 1, -1, -1, -1, -1, -1, 0, -1, -1, 0 };
    enum { NC = sizeof cols / sizeof *cols };
    vm_table t[MAX_RUNS];
    const char **rows[MAX_RUNS] = {0};
    double *v[MAX_RUNS] = {0}, *lo[MAX_RUNS] = {0}, *hi[MAX_RUNS] = {0};
    int rc = 0;
    for (int k = 0; k < n_runs; k++) {
        json_t *ms = json_object_get(runs[k].metrics, "methods"), *res = json_object_get(runs[k].metrics, "results");
        const int n = (int)json_array_size(ms);
        rows[k] = calloc((size_t)(n ? n : 1), sizeof *rows[k]);
        v[k] = calloc((size_t)(n ? n : 1) * NC, sizeof(double));
        lo[k] = calloc((size_t)(n ? n : 1) * NC, sizeof(double));
        hi[k] = calloc((size_t)(n ? n : 1) * NC, sizeof(double));
        if (!rows[k] || !v[k] || !lo[k] || !hi[k]) { rc = vm_err("compare: out of memory"); break; }
        for (int i = 0; i < n; i++) {
            const char *mn = json_string_value(json_array_get(ms, (size_t)i));
            json_t *jm = json_object_get(res, mn ? mn : "");
            rows[k][i] = mn ? mn : "?";
            for (int c = 0; c < NC; c++) {
                v[k][i * NC + c] = jval(json_object_get(jm, cols[c]));
                lo[k][i * NC + c] = hi[k][i * NC + c] = NAN;
            }
            json_t *ci = json_object_get(jm, "ece_ci");
            lo[k][i * NC + 4] = jval(json_array_get(ci, 0));
            hi[k][i * NC + 4] = jval(json_array_get(ci, 1));
        }
        t[k] = (vm_table){ .n_rows = n, .n_cols = NC, .row_names = rows[k], .col_names = cols, .values = v[k],
                           .lo = lo[k], .hi = hi[k], .better = better };
    }
    if (!rc) rc = vm_report_compare_tables(r, "In-distribution metrics (ECE with its bootstrap interval)", n_runs, names, t);
    for (int k = 0; k < n_runs; k++) { free(rows[k]); free(v[k]); free(lo[k]); free(hi[k]); }
    return rc;
}

// OOD: one compare table per OOD set name (union over runs), rows "method · score".
static int ood_tables(vm_report *r, int n_runs, run *runs, const char *const *names) {
    static const char *cols[] = { "AUROC", "AUPR", "FPR@95" };
    static const signed char better[] = { 1, 1, -1 };
    json_t *seen = json_object();
    int rc = 0;
    for (int k0 = 0; k0 < n_runs && !rc; k0++) {
        json_t *res = json_object_get(runs[k0].metrics, "results");
        const char *mn, *setname;
        json_t *jm, *js;
        json_object_foreach(res, mn, jm) {
            json_object_foreach(json_object_get(jm, "ood"), setname, js) {
                if (json_object_get(seen, setname) || rc) continue;
                json_object_set_new(seen, setname, json_true());
                vm_table t[MAX_RUNS];
                char **rows[MAX_RUNS] = {0};
                double *v[MAX_RUNS] = {0};
                for (int k = 0; k < n_runs && !rc; k++) {
                    json_t *rk = json_object_get(runs[k].metrics, "results");
                    size_t cap = 0;
                    const char *m2; json_t *j2;
                    json_object_foreach(rk, m2, j2) cap += json_object_size(json_object_get(json_object_get(j2, "ood"), setname));
                    rows[k] = calloc(cap + 1, sizeof(char *));
                    v[k] = calloc((cap + 1) * 3, sizeof(double));
                    if (!rows[k] || !v[k]) { rc = vm_err("compare: out of memory"); break; }
                    int n = 0;
                    json_object_foreach(rk, m2, j2) {
                        const char *sc; json_t *s3;
                        json_object_foreach(json_object_get(json_object_get(j2, "ood"), setname), sc, s3) {
                            if (!json_is_object(s3)) continue;   // "n", "acc"
                            size_t len = strlen(m2) + strlen(sc) + 8;
                            if (!(rows[k][n] = malloc(len))) { rc = -1; break; }
                            snprintf(rows[k][n], len, "%s \xC2\xB7 %s", m2, sc);
                            v[k][n * 3] = jval(json_object_get(s3, "auroc"));
                            v[k][n * 3 + 1] = jval(json_object_get(s3, "aupr"));
                            v[k][n * 3 + 2] = jval(json_object_get(s3, "fpr95"));
                            n++;
                        }
                    }
                    t[k] = (vm_table){ .n_rows = n, .n_cols = 3, .row_names = (const char *const *)rows[k],
                                       .col_names = cols, .values = v[k], .better = better };
                }
                char cap[256];
                snprintf(cap, sizeof cap, "OOD detection: %s vs the in-distribution set", setname);
                if (!rc) rc = vm_report_compare_tables(r, cap, n_runs, names, t);
                for (int k = 0; k < n_runs; k++) {
                    if (rows[k]) for (int i = 0; rows[k][i]; i++) free(rows[k][i]);
                    free(rows[k]); free(v[k]);
                }
            }
        }
    }
    json_decref(seen);
    return rc;
}

// Stability (mean Jaccard per gamma) and cost: one row per run.
static int scalar_tables(vm_report *r, int n_runs, run *runs, const char *const *names) {
    static const char *ccols[] = { "flops_ratio_per_pass", "passes", "flops_ratio_per_question", "params_extra",
                                   "time_ratio_per_pass", "time_ratio_per_question" };
    vm_table t[MAX_RUNS];
    double v[MAX_RUNS][32];
    char cn[MAX_RUNS][32][32];
    const char *cp[MAX_RUNS][32];
    const char *rowname[MAX_RUNS][1];
    int rc = 0, any = 0;
    for (int k = 0; k < n_runs; k++) {
        json_t *st = json_object_get(runs[k].metrics, "stability");
        json_t *g = json_object_get(st, "gamma"), *jm = json_object_get(st, "jaccard_mean");
        int n = (int)json_array_size(g);
        if (n > 32) n = 32;
        for (int i = 0; i < n; i++) {
            snprintf(cn[k][i], sizeof cn[k][i], "gamma %g", jval(json_array_get(g, (size_t)i)));
            cp[k][i] = cn[k][i];
            v[k][i] = jval(json_array_get(jm, (size_t)i));
        }
        any += n;
        rowname[k][0] = json_string_value(json_array_get(json_object_get(runs[k].metrics, "methods"), 0));
        if (!rowname[k][0]) rowname[k][0] = "?";
        t[k] = (vm_table){ .n_rows = n ? 1 : 0, .n_cols = n, .row_names = rowname[k], .col_names = cp[k], .values = v[k] };
    }
    if (any) rc = vm_report_compare_tables(r, "Routing stability: mean Jaccard of the selected experts vs noise level",
                                           n_runs, names, t);
    if (rc) return rc;
    enum { NC = sizeof ccols / sizeof *ccols };
    static const int digits[NC] = { 4, 0, 4, 0, 3, 3 };
    for (int k = 0; k < n_runs; k++) {
        json_t *c = json_object_get(runs[k].metrics, "cost");
        for (int i = 0; i < NC; i++) v[k][i] = jval(json_object_get(c, ccols[i]));
        t[k] = (vm_table){ .n_rows = c ? 1 : 0, .n_cols = NC, .row_names = rowname[k], .col_names = ccols,
                           .values = v[k], .digits = digits };
    }
    return vm_report_compare_tables(r, "Cost relative to the deterministic router", n_runs, names, t);
}

int cmd_compare(int argc, char **argv) {
    const char *dirs[MAX_RUNS], *out = NULL, *names_arg = NULL;
    int n_runs = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(); return 0; }
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) { if (!(out = cli_value(CMD, argc, argv, &i))) return 1; }
        else if (!strcmp(a, "--names")) { if (!(names_arg = cli_value(CMD, argc, argv, &i))) return 1; }
        else if (a[0] == '-' && a[1]) return cli_fail(CMD, "unknown option '%s' (see --help)", a);
        else if (n_runs == MAX_RUNS) return cli_fail(CMD, "at most %d runs", MAX_RUNS);
        else dirs[n_runs++] = a;
    }
    if (n_runs < 1) return cli_fail(CMD, "expected one or more eval output folders (see --help)");
    if (!out) return cli_fail(CMD, "-o OUT.html is required");
    if (cli_output(CMD, out)) return 1;
    run runs[MAX_RUNS];
    memset(runs, 0, sizeof runs);
    const char *names[MAX_RUNS];
    int rc = 1;
    pool pl = {0};
    vm_report *r = NULL;
    const char *np = names_arg;
    for (int k = 0; k < n_runs; k++) {
        if (np && *np) {   // next comma-separated name
            const char *e = strchr(np, ',');
            size_t len = e ? (size_t)(e - np) : strlen(np);
            snprintf(runs[k].name, sizeof runs[k].name, "%.*s", (int)(len < 127 ? len : 127), np);
            np = e ? e + 1 : np + len;
        } else {
            const char *d = dirs[k];
            size_t len = strlen(d);
            while (len > 1 && d[len - 1] == '/') len--;
            const char *b = d + len;
            while (b > d && b[-1] != '/') b--;
            snprintf(runs[k].name, sizeof runs[k].name, "%.*s", (int)(d + len - b), b);
        }
        names[k] = runs[k].name;
        if (!(runs[k].metrics = load_json(dirs[k], "metrics.json")) || !(runs[k].curves = load_json(dirs[k], "curves.json"))) {
            cli_fail(CMD, NULL);
            goto done;
        }
        if (!json_is_array(json_object_get(runs[k].metrics, "methods")) ||
            !json_is_object(json_object_get(runs[k].metrics, "results"))) {
            cli_fail(CMD, "%s/metrics.json is not a vmoer eval result (no methods/results)", dirs[k]);
            goto done;
        }
    }
    char title[256];
    snprintf(title, sizeof title, "vmoer compare: %d runs", n_runs);
    if (!(r = vm_report_init(title))) { cli_fail(CMD, NULL); goto done; }
    int e = vm_report_section(r, "Calibration") || id_tables(r, n_runs, runs, names) ||
            add_curves(r, &pl, n_runs, runs, names, "reliability", NULL, VM_FIG_RELIABILITY, "Reliability (bin accuracy vs confidence)") ||
            add_curves(r, &pl, n_runs, runs, names, "risk_coverage", NULL, VM_FIG_RISK_COVERAGE, "Risk-coverage");
    if (!e) e = vm_report_section(r, "OOD detection") || ood_tables(r, n_runs, runs, names);
    if (!e) {   // one overlaid ROC figure per OOD set
        json_t *seen = json_object();
        for (int k = 0; k < n_runs && !e; k++) {
            const char *setname; json_t *js;
            json_object_foreach(json_object_get(runs[k].curves, "roc"), setname, js) {
                if (json_object_get(seen, setname) || e) continue;
                json_object_set_new(seen, setname, json_true());
                char t2[256];
                snprintf(t2, sizeof t2, "ROC: %s (entropy, MI, ILV scores)", setname);
                e = add_curves(r, &pl, n_runs, runs, names, "roc", setname, VM_FIG_ROC, t2);
            }
        }
        json_decref(seen);
    }
    if (!e) e = vm_report_section(r, "Routing stability and cost") ||
                add_curves(r, &pl, n_runs, runs, names, "jaccard", NULL, VM_FIG_JACCARD_NOISE, "Mean Jaccard vs noise level") ||
                scalar_tables(r, n_runs, runs, names);
    if (e || vm_report_write(r, out)) { cli_fail(CMD, NULL); goto done; }
    rc = 0;
done:
    for (int k = 0; k < n_runs; k++) { json_decref(runs[k].metrics); json_decref(runs[k].curves); }
    for (int i = 0; i < pl.n; i++) free(pl.p[i]);
    free(pl.p);
    vm_report_free(r);
    return rc;
}

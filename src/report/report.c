// Report writer: sections, tables and figures rendered into one HTML body as they are added.
// A failing call appends nothing (figures are rendered into a scratch buffer first), so the
// document stays well-formed whatever the caller does with the error.
#include "report/report.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/fileio.h"
#include "vmoer.h"

struct vm_report {
    char *title;
    vm_sbuf body;
    int in_section, in_figs;  // open <section> / <div class="figs">
    int n_figs;               // unique ids for the SVG clip paths
};

static const char css[] =
    "body{font-family:system-ui,\"Segoe UI\",Roboto,\"DejaVu Sans\",Arial,sans-serif;color:#222;"
    "background:#f7f7f7;max-width:1320px;margin:20px auto;padding:0 16px}\n"
    "h1{font-size:22px;margin:8px 0}h2{font-size:18px;border-bottom:1px solid #ccc;"
    "padding-bottom:4px;margin-top:32px}\n"
    ".gen{color:#777;font-size:12px;margin:0}\n"
    "p.note{white-space:pre-wrap;max-width:920px;line-height:1.4}\n"
    ".tablewrap{overflow-x:auto}\n"
    "table{border-collapse:collapse;margin:12px 0;font-size:13px;background:#fff}\n"
    "caption{caption-side:top;text-align:left;font-weight:600;padding:4px 0}\n"
    "th,td{border:1px solid #d8d8d8;padding:4px 8px}th{background:#eee;text-align:center}\n"
    "td.name{text-align:left;white-space:nowrap}\n"
    "td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}\n"
    "td.na{color:#999}td.best{font-weight:bold}.ci{color:#777;font-size:11px}\n"
    ".figs{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}\n"
    "figure{margin:0;background:#fff;border:1px solid #ddd;padding:4px}\n"
    "svg.plot{display:block;max-width:100%;height:auto}svg text{font-family:inherit}\n";

vm_report *vm_report_init(const char *title) {
    vm_report *r = vm_calloc(1, sizeof *r);
    if (!r) return NULL;
    r->title = vm_strdup(title ? title : "vmoer report");
    if (!r->title) { free(r); return NULL; }
    vm_sbuf_init(&r->body);
    return r;
}

void vm_report_free(vm_report *r) {
    if (!r) return;
    free(r->title);
    vm_sbuf_free(&r->body);
    free(r);
}

static void close_figs(vm_report *r) {
    if (r->in_figs) vm_sbuf_puts(&r->body, "</div>\n");
    r->in_figs = 0;
}

int vm_report_section(vm_report *r, const char *heading) {
    if (!r) return vm_err("report: NULL report (section)");
    close_figs(r);
    if (r->in_section) vm_sbuf_puts(&r->body, "</section>\n");
    vm_sbuf_puts(&r->body, "<section>\n<h2>");
    vm_sbuf_escape(&r->body, heading ? heading : "", 0);
    vm_sbuf_puts(&r->body, "</h2>\n");
    r->in_section = 1;
    return vm_sbuf_ok(&r->body);
}

int vm_report_text(vm_report *r, const char *text) {
    if (!r) return vm_err("report: NULL report (text)");
    close_figs(r);
    vm_sbuf_puts(&r->body, "<p class=\"note\">");
    vm_sbuf_escape(&r->body, text ? text : "", 0);
    vm_sbuf_puts(&r->body, "</p>\n");
    return vm_sbuf_ok(&r->body);
}

// ---------------------------------------------------------------------------------------------
// Tables

static void put_num(vm_sbuf *b, double v, int dec) {
    if (isnan(v)) vm_sbuf_puts(b, "n/a");
    else if (isinf(v)) vm_sbuf_puts(b, v > 0 ? "inf" : "\xE2\x88\x92inf");
    else if (fabs(v) >= 1e15) vm_sbuf_printf(b, "%.*g", dec + 1, v);
    else vm_sbuf_printf(b, "%.*f", dec, v);
}

static int table_check(const vm_table *t) {
    if (!t) return vm_err("report: NULL table");
    if (t->n_rows < 0 || t->n_cols < 0 || (int64_t)t->n_rows * t->n_cols > 100000000)
        return vm_err("report: bad table size %d x %d", t->n_rows, t->n_cols);
    if (t->n_cols > 0 && !t->col_names) return vm_err("report: table has no column names");
    if (t->n_rows > 0 && t->n_cols > 0 && !t->values) return vm_err("report: table has no values");
    return 0;
}

static void render_table(vm_sbuf *b, const vm_table *t) {
    int nr = t->n_rows, nc = t->n_cols;
    vm_sbuf_puts(b, "<div class=\"tablewrap\"><table>\n");
    if (t->caption) {
        vm_sbuf_puts(b, "<caption>");
        vm_sbuf_escape(b, t->caption, 0);
        vm_sbuf_puts(b, "</caption>\n");
    }
    vm_sbuf_puts(b, "<thead><tr><th>");
    vm_sbuf_escape(b, t->row_header ? t->row_header : "method", 0);
    vm_sbuf_puts(b, "</th>");
    for (int c = 0; c < nc; c++) {
        vm_sbuf_puts(b, "<th>");
        vm_sbuf_escape(b, t->col_names[c] ? t->col_names[c] : "", 0);
        vm_sbuf_puts(b, "</th>");
    }
    vm_sbuf_puts(b, "</tr></thead>\n<tbody>\n");
    if (nr == 0)
        vm_sbuf_printf(b, "<tr><td class=\"na\" colspan=\"%d\">no rows</td></tr>\n", nc + 1);
    for (int i = 0; i < nr; i++) {
        vm_sbuf_puts(b, "<tr><td class=\"name\">");
        if (t->row_names && t->row_names[i]) vm_sbuf_escape(b, t->row_names[i], 0);
        else vm_sbuf_printf(b, "row %d", i + 1);
        vm_sbuf_puts(b, "</td>");
        for (int c = 0; c < nc; c++) {
            double v = t->values[(size_t)i * nc + c];
            int dec = t->digits ? t->digits[c] : 3;
            dec = dec < 0 ? 0 : dec > 12 ? 12 : dec;
            int best = 0;
            if (t->better && t->better[c] && isfinite(v)) {
                best = 1;  // best = no other finite value in the column beats it (ties all bold)
                for (int j = 0; j < nr && best; j++) {
                    double u = t->values[(size_t)j * nc + c];
                    if (isfinite(u) && (t->better[c] > 0 ? u > v : u < v)) best = 0;
                }
                if (nr < 2) best = 0;
            }
            vm_sbuf_printf(b, "<td class=\"num%s%s\">", isnan(v) ? " na" : "", best ? " best" : "");
            put_num(b, v, dec);
            if (t->lo && t->hi && !isnan(v)) {
                double lo = t->lo[(size_t)i * nc + c], hi = t->hi[(size_t)i * nc + c];
                if (isfinite(lo) && isfinite(hi)) {
                    vm_sbuf_puts(b, " <span class=\"ci\">[");
                    put_num(b, lo, dec);
                    vm_sbuf_puts(b, ", ");
                    put_num(b, hi, dec);
                    vm_sbuf_puts(b, "]</span>");
                }
            }
            vm_sbuf_puts(b, "</td>");
        }
        vm_sbuf_puts(b, "</tr>\n");
    }
    vm_sbuf_puts(b, "</tbody></table></div>\n");
}

int vm_report_table(vm_report *r, const vm_table *t) {
    if (!r) return vm_err("report: NULL report (table)");
    if (table_check(t) != 0) return -1;
    close_figs(r);
    render_table(&r->body, t);
    return vm_sbuf_ok(&r->body);
}

// ---------------------------------------------------------------------------------------------
// Figures

int vm_report_plot(vm_report *r, const vm_plot *p) {
    if (!r) return vm_err("report: NULL report (figure)");
    vm_sbuf svg;
    vm_sbuf_init(&svg);
    if (vm_plot_svg(p, r->n_figs, &svg) != 0 || vm_sbuf_ok(&svg) != 0) {
        vm_sbuf_free(&svg);
        return vm_err_prefix("report: figure '%s'", p && p->title ? p->title : "?");
    }
    if (!r->in_figs) vm_sbuf_puts(&r->body, "<div class=\"figs\">\n");
    r->in_figs = 1;
    r->n_figs++;
    vm_sbuf_puts(&r->body, "<figure>\n");
    vm_sbuf_puts(&r->body, vm_sbuf_str(&svg));
    vm_sbuf_puts(&r->body, "</figure>\n");
    vm_sbuf_free(&svg);
    return vm_sbuf_ok(&r->body);
}

static int curves_check(int n, const vm_curve *c) {
    if (n < 0 || (n > 0 && !c)) return vm_err("report: bad curve list (n = %d)", n);
    for (int i = 0; i < n; i++)
        if (c[i].n < 0 || (c[i].n > 0 && (!c[i].x || !c[i].y)))
            return vm_err("report: curve %d has n = %d without x/y arrays", i, c[i].n);
    return 0;
}

// Axes, labels and series of a curve figure; series (n) is filled with one series per curve.
static void kind_plot(vm_plot *p, vm_fig_kind kind, const char *title, int n, const vm_curve *c,
                      vm_series *series) {
    memset(p, 0, sizeof *p);
    p->title = title;
    p->n_series = n;
    p->series = series;
    vm_series_kind sk = VM_SERIES_LINE;
    switch (kind) {
    case VM_FIG_ROC:
        p->xlabel = "false positive rate (in-distribution flagged)";
        p->ylabel = "true positive rate (OOD flagged)";
        p->xmax = p->ymax = 1;
        p->diagonal = 1;
        p->diagonal_label = "chance";
        break;
    case VM_FIG_RISK_COVERAGE:
        p->xlabel = "coverage (fraction answered, most confident first)";
        p->ylabel = "selective risk (error rate)";
        p->xmax = 1;
        p->y_include_zero = 1;
        break;
    case VM_FIG_JACCARD_NOISE: {
        p->xlabel = "noise level \xCE\xB3 (\xC3\x97 mean embedding norm)";
        p->ylabel = "mean Jaccard, clean vs noisy";
        p->xlog = 1;
        sk = VM_SERIES_LINE_POINTS;
        // Jaccard lives in [0,1] and is usually close to 1: show [floor to 0.05 below the data, 1].
        double lo = INFINITY, hi = -INFINITY;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < c[i].n; j++) {
                double y = c[i].y[j];
                if (isfinite(y) && isfinite(c[i].x[j]) && c[i].x[j] > 0) { lo = fmin(lo, y); hi = fmax(hi, y); }
            }
        if (lo >= 0 && hi <= 1) {  // (a margin below the lowest point keeps its marker off the frame)
            p->ymin = fmax(0, fmin(floor((lo - 0.01) * 20) / 20, 0.95));
            p->ymax = 1;
        }
        break;
    }
    case VM_FIG_RELIABILITY:
        p->xlabel = "mean confidence in bin";
        p->ylabel = "accuracy in bin";
        p->xmax = p->ymax = 1;
        p->diagonal = 1;
        p->diagonal_label = "perfect calibration";
        sk = VM_SERIES_LINE_POINTS;
        break;
    }
    for (int i = 0; i < n; i++)
        series[i] = (vm_series){.label = c[i].label ? c[i].label : "", .kind = sk, .n = c[i].n,
                                .x = c[i].x, .y = c[i].y};
}

int vm_report_curves(vm_report *r, vm_fig_kind kind, const char *title, int n, const vm_curve *curves) {
    if (!r) return vm_err("report: NULL report (curves)");
    if ((unsigned)kind > VM_FIG_RELIABILITY) return vm_err("report: unknown figure kind %d", (int)kind);
    if (curves_check(n, curves) != 0) return -1;
    vm_series *s = vm_calloc((size_t)(n ? n : 1), sizeof *s);
    if (!s) return -1;
    vm_plot p;
    kind_plot(&p, kind, title, n, curves, s);
    int rc = vm_report_plot(r, &p);
    free(s);
    return rc;
}

int vm_report_reliability(vm_report *r, const char *title, int M, const int *count, const double *bin_acc,
                          const double *bin_conf) {
    if (!r) return vm_err("report: NULL report (reliability)");
    if (M < 1 || M > 1000 || !count || !bin_acc || !bin_conf)
        return vm_err("report: reliability diagram needs 1..1000 bins (M = %d)", M);
    for (int m = 0; m < M; m++)
        if (count[m] < 0) return vm_err("report: reliability bin %d has count %d", m, count[m]);
    double *x = malloc((size_t)M * sizeof *x), *acc = malloc((size_t)M * sizeof *acc);
    double *conf = malloc((size_t)M * sizeof *conf);
    char (*txt)[16] = malloc((size_t)M * sizeof *txt);
    const char **notes = malloc((size_t)M * sizeof *notes);
    int rc = -1;
    if (!x || !acc || !conf || !txt || !notes) { vm_err("report: out of memory (reliability)"); goto done; }
    // Bin counts go under the bars while their digits fit in a bin (~380 px of axis / M).
    int maxc = 0;
    for (int m = 0; m < M; m++) maxc = count[m] > maxc ? count[m] : maxc;
    int show = (snprintf(NULL, 0, "%d", maxc) * 5.6 + 3) * M <= 380;
    for (int m = 0; m < M; m++) {
        x[m] = (m + 0.5) / M;
        acc[m] = count[m] > 0 ? bin_acc[m] : NAN;   // empty bin: no bar
        conf[m] = count[m] > 0 ? bin_conf[m] : NAN;
        snprintf(txt[m], sizeof txt[m], "%d", count[m]);
        notes[m] = txt[m];
    }
    vm_series s[2] = {
        {.label = "accuracy", .kind = VM_SERIES_BARS, .n = M, .x = x, .y = acc, .bar_width = 1.0 / M,
         .color = VM_COLOR_BLUE, .opacity = 0.8, .notes = show ? notes : NULL, .notes_at_base = 1},
        {.label = "gap to mean confidence", .kind = VM_SERIES_BARS, .n = M, .x = x, .y = conf, .y0 = acc,
         .bar_width = 1.0 / M, .color = VM_COLOR_RED, .opacity = 0.35},
    };
    vm_plot p = {.title = title, .xlabel = show ? "confidence (bin counts above the axis)" : "confidence",
                 .ylabel = "accuracy", .xmax = 1, .ymax = 1, .diagonal = 1,
                 .diagonal_label = "perfect calibration", .n_series = 2, .series = s};
    rc = vm_report_plot(r, &p);
done:
    free(x); free(acc); free(conf); free(txt); free(notes);
    return rc;
}

int vm_report_conf_hist(vm_report *r, const char *title, int n_bins, int n, const vm_conf_set *sets) {
    if (!r) return vm_err("report: NULL report (confidence histogram)");
    if (n_bins < 1 || n_bins > 1000) return vm_err("report: confidence histogram needs 1..1000 bins (%d)", n_bins);
    if (n < 0 || (n > 0 && !sets)) return vm_err("report: bad confidence set list (n = %d)", n);
    for (int k = 0; k < n; k++) {
        if (sets[k].n < 0 || (sets[k].n > 0 && !sets[k].conf))
            return vm_err("report: confidence set %d has n = %d without values", k, sets[k].n);
        for (int i = 0; i < sets[k].n; i++) {
            double c = sets[k].conf[i];
            if (!isnan(c) && !(c >= 0 && c <= 1))
                return vm_err("report: confidence %g outside [0,1] (set %d, example %d)", c, k, i);
        }
    }
    int stacked = n == 1 && sets[0].correct;
    int n_series = stacked ? 2 : n;
    size_t cells = (size_t)(n_series ? n_series : 1) * n_bins;
    double *x = malloc((size_t)n_bins * sizeof *x), *y = calloc(cells, sizeof *y);
    double *y0 = calloc((size_t)n_bins, sizeof *y0);
    vm_series *s = calloc((size_t)(n_series ? n_series : 1), sizeof *s);
    char *full_title = malloc(strlen(title ? title : "") + 64);
    int rc = -1;
    if (!x || !y || !y0 || !s || !full_title) { vm_err("report: out of memory (confidence histogram)"); goto done; }
    long n_nan = 0;
    for (int b = 0; b < n_bins; b++) x[b] = (b + 0.5) / n_bins;
    for (int k = 0; k < n; k++) {
        double *yk = y + (size_t)(stacked ? 1 : k) * n_bins;  // stacked: row 0 correct, row 1 total
        long m = 0;
        for (int i = 0; i < sets[k].n; i++) {
            double c = sets[k].conf[i];
            if (isnan(c)) { n_nan++; continue; }
            int b = (int)floor(c * n_bins);
            if (b >= n_bins) b = n_bins - 1;
            yk[b] += 1;
            if (stacked && sets[k].correct[i]) y[b] += 1;
            m++;
        }
        for (int b = 0; b < n_bins; b++) {
            yk[b] = m ? yk[b] / m : NAN;
            if (stacked) y[b] = m ? y[b] / m : NAN;
        }
    }
    if (stacked) {
        memcpy(y0, y, (size_t)n_bins * sizeof *y0);
        s[0] = (vm_series){.label = "correct", .kind = VM_SERIES_BARS, .n = n_bins, .x = x, .y = y,
                           .bar_width = 1.0 / n_bins, .color = VM_COLOR_GREEN, .opacity = 0.8};
        s[1] = (vm_series){.label = "wrong", .kind = VM_SERIES_BARS, .n = n_bins, .x = x, .y = y + n_bins,
                           .y0 = y0, .bar_width = 1.0 / n_bins, .color = VM_COLOR_RED, .opacity = 0.6};
    } else {
        for (int k = 0; k < n; k++)
            s[k] = (vm_series){.label = sets[k].label ? sets[k].label : "",
                               .kind = n == 1 ? VM_SERIES_BARS : VM_SERIES_LINE_POINTS, .n = n_bins, .x = x,
                               .y = y + (size_t)k * n_bins, .bar_width = 1.0 / n_bins};
    }
    if (n_nan) snprintf(full_title, strlen(title ? title : "") + 64, "%s (%ld n/a left out)", title ? title : "", n_nan);
    else strcpy(full_title, title ? title : "");
    vm_plot p = {.title = full_title, .xlabel = "confidence (max probability)", .ylabel = "fraction of questions",
                 .xmax = 1, .y_include_zero = 1, .n_series = n_series, .series = s};
    rc = vm_report_plot(r, &p);
done:
    free(x); free(y); free(y0); free(s); free(full_title);
    return rc;
}

int vm_report_layer_bars(vm_report *r, const char *title, const char *ylabel, int n_layers,
                         const char *const *layer_names, int n, const vm_curve *curves) {
    if (!r) return vm_err("report: NULL report (layer bars)");
    if (n_layers < 0 || n_layers > 100000) return vm_err("report: bad layer count %d", n_layers);
    if (n < 0 || (n > 0 && !curves)) return vm_err("report: bad method list (n = %d)", n);
    for (int k = 0; k < n; k++)
        if (curves[k].n != n_layers || (n_layers > 0 && !curves[k].y))
            return vm_err("report: method %d has %d values for %d layers", k, curves[k].n, n_layers);
    char (*num)[16] = malloc((size_t)(n_layers ? n_layers : 1) * sizeof *num);
    const char **cats = malloc((size_t)(n_layers ? n_layers : 1) * sizeof *cats);
    vm_series *s = calloc((size_t)(n ? n : 1), sizeof *s);
    const char **nan_notes = malloc((size_t)(n_layers ? n_layers : 1) * (n ? n : 1) * sizeof *nan_notes);
    int rc = -1;
    if (!num || !cats || !s || !nan_notes) { vm_err("report: out of memory (layer bars)"); goto done; }
    for (int l = 0; l < n_layers; l++) {
        snprintf(num[l], sizeof num[l], "%d", l);
        cats[l] = layer_names && layer_names[l] ? layer_names[l] : num[l];
    }
    for (int k = 0; k < n; k++) {
        int any_nan = 0;
        for (int l = 0; l < n_layers; l++) any_nan |= isnan(curves[k].y[l]);
        s[k] = (vm_series){.label = curves[k].label ? curves[k].label : "", .kind = VM_SERIES_BARS,
                           .n = n_layers, .y = curves[k].y, .bar_width = 0.8, .notes_at_base = 1};
        if (any_nan && (long long)n_layers * n <= 24) {  // mark missing values while the labels fit
            const char **nk = nan_notes + (size_t)k * n_layers;
            for (int l = 0; l < n_layers; l++) nk[l] = isnan(curves[k].y[l]) ? "n/a" : NULL;
            s[k].notes = nk;
        }
    }
    // Wider figures for many bars, so each stays a few pixels wide.
    int w = 80 + n_layers * (n > 0 ? n : 1) * 7;
    vm_plot p = {.title = title, .xlabel = "MoE layer", .ylabel = ylabel ? ylabel : "mean Jaccard",
                 .y_include_zero = 1, .bars_grouped = 1, .n_xcats = n_layers, .xcats = cats,
                 .n_series = n, .series = s, .width = w < 480 ? 480 : w > 1280 ? 1280 : w};
    rc = vm_report_plot(r, &p);
done:
    free(num); free(cats); free(s); free(nan_notes);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Comparing runs

static const char *run_name(const char *const *names, int k, char *buf, size_t cap) {
    if (names && names[k]) return names[k];
    snprintf(buf, cap, "run %d", k + 1);
    return buf;
}

// "<run> · <item>" (or just the run when item is NULL), malloc'd.
static char *join_name(const char *run, const char *item) {
    size_t n = strlen(run) + (item ? strlen(item) : 0) + 8;
    char *s = malloc(n);
    if (s) {
        if (item) snprintf(s, n, "%s \xC2\xB7 %s", run, item);
        else snprintf(s, n, "%s", run);
    }
    return s;
}

int vm_report_compare_tables(vm_report *r, const char *caption, int n_runs, const char *const *run_names,
                             const vm_table *tables) {
    if (!r) return vm_err("report: NULL report (compare tables)");
    if (n_runs < 0 || (n_runs > 0 && !tables)) return vm_err("report: bad run list (n = %d)", n_runs);
    int nr = 0, max_cols = 0;
    for (int k = 0; k < n_runs; k++) {
        if (table_check(&tables[k]) != 0) return vm_err_prefix("report: run %d", k + 1);
        nr += tables[k].n_rows;
        max_cols += tables[k].n_cols;
        if (nr > 10000000 || max_cols > 100000) return vm_err("report: compare tables too large");
    }
    const char **cols = malloc((size_t)(max_cols ? max_cols : 1) * sizeof *cols);
    int *digits = malloc((size_t)(max_cols ? max_cols : 1) * sizeof *digits);
    signed char *better = calloc((size_t)(max_cols ? max_cols : 1), 1);
    char **rows = calloc((size_t)(nr ? nr : 1), sizeof *rows);
    int nc = 0, has_ci = 0, rc = -1;
    double *v = NULL, *lo = NULL, *hi = NULL;
    if (!cols || !digits || !better || !rows) { vm_err("report: out of memory (compare)"); goto done; }
    for (int k = 0; k < n_runs; k++) {  // union of the columns, first-seen order
        const vm_table *t = &tables[k];
        if (t->lo && t->hi) has_ci = 1;
        for (int c = 0; c < t->n_cols; c++) {
            const char *name = t->col_names[c] ? t->col_names[c] : "";
            int j = 0;
            while (j < nc && strcmp(cols[j], name) != 0) j++;
            if (j < nc) continue;
            cols[nc] = name;
            digits[nc] = t->digits ? t->digits[c] : 3;
            better[nc] = t->better ? t->better[c] : 0;
            nc++;
        }
    }
    size_t cells = (size_t)(nr ? nr : 1) * (nc ? nc : 1);
    v = malloc(cells * sizeof *v);
    lo = malloc(cells * sizeof *lo);
    hi = malloc(cells * sizeof *hi);
    if (!v || !lo || !hi) { vm_err("report: out of memory (compare)"); goto done; }
    for (size_t i = 0; i < cells; i++) v[i] = lo[i] = hi[i] = NAN;
    int row = 0;
    for (int k = 0; k < n_runs; k++) {
        const vm_table *t = &tables[k];
        char buf[32];
        const char *run = run_name(run_names, k, buf, sizeof buf);
        for (int i = 0; i < t->n_rows; i++, row++) {
            const char *item = t->row_names ? t->row_names[i] : NULL;
            rows[row] = join_name(run, t->n_rows == 1 && !item ? NULL : item ? item : "?");
            if (!rows[row]) { vm_err("report: out of memory (compare)"); goto done; }
            for (int c = 0; c < t->n_cols; c++) {
                const char *name = t->col_names[c] ? t->col_names[c] : "";
                int j = 0;
                while (strcmp(cols[j], name) != 0) j++;
                size_t src = (size_t)i * t->n_cols + c, dst = (size_t)row * nc + j;
                v[dst] = t->values[src];
                if (t->lo && t->hi) { lo[dst] = t->lo[src]; hi[dst] = t->hi[src]; }
            }
        }
    }
    vm_table m = {.caption = caption, .row_header = "run \xC2\xB7 method", .n_rows = nr, .n_cols = nc,
                  .row_names = (const char *const *)rows, .col_names = cols, .values = v,
                  .lo = has_ci ? lo : NULL, .hi = has_ci ? hi : NULL, .digits = digits, .better = better};
    rc = vm_report_table(r, &m);
done:
    for (int i = 0; rows && i < nr; i++) free(rows[i]);
    free(cols); free(digits); free(better); free(rows); free(v); free(lo); free(hi);
    return rc;
}

int vm_report_compare_curves(vm_report *r, vm_fig_kind kind, const char *title, int n_runs,
                             const char *const *run_names, const int *n_curves,
                             const vm_curve *const *curves) {
    if (!r) return vm_err("report: NULL report (compare curves)");
    if ((unsigned)kind > VM_FIG_RELIABILITY) return vm_err("report: unknown figure kind %d", (int)kind);
    if (n_runs < 0 || (n_runs > 0 && (!n_curves || !curves))) return vm_err("report: bad run list (n = %d)", n_runs);
    int total = 0;
    for (int k = 0; k < n_runs; k++) {
        if (curves_check(n_curves[k], curves[k]) != 0) return vm_err_prefix("report: run %d", k + 1);
        total += n_curves[k];
        if (total > 100000) return vm_err("report: too many curves to compare");
    }
    vm_curve *flat = malloc((size_t)(total ? total : 1) * sizeof *flat);
    vm_series *s = calloc((size_t)(total ? total : 1), sizeof *s);
    char **labels = calloc((size_t)(total ? total : 1), sizeof *labels);
    const char **methods = malloc((size_t)(total ? total : 1) * sizeof *methods);
    int rc = -1, n_methods = 0, j = 0;
    if (!flat || !s || !labels || !methods) { vm_err("report: out of memory (compare)"); goto done; }
    for (int k = 0; k < n_runs; k++)
        for (int i = 0; i < n_curves[k]; i++) flat[j++] = curves[k][i];
    vm_plot p;
    kind_plot(&p, kind, title, total, flat, s);
    j = 0;
    for (int k = 0; k < n_runs; k++) {
        char buf[32];
        const char *run = run_name(run_names, k, buf, sizeof buf);
        for (int i = 0; i < n_curves[k]; i++, j++) {
            const char *method = curves[k][i].label ? curves[k][i].label : "";
            int m = 0;
            while (m < n_methods && strcmp(methods[m], method) != 0) m++;
            if (m == n_methods) methods[n_methods++] = method;
            labels[j] = join_name(run, method);
            if (!labels[j]) { vm_err("report: out of memory (compare)"); goto done; }
            s[j].label = labels[j];
            s[j].color = 1 + m % VM_PALETTE_SIZE;   // same method, same colour in every run
            s[j].dash = k;                          // run k: dash pattern k
        }
    }
    rc = vm_report_plot(r, &p);
done:
    for (int i = 0; labels && i < total; i++) free(labels[i]);
    free(flat); free(s); free(labels); free(methods);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Output

int vm_report_html(const vm_report *r, vm_sbuf *b) {
    if (!r || !b) return vm_err("report: NULL argument (html)");
    if (r->body.oom) return vm_sbuf_ok(&r->body);
    vm_sbuf_puts(b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                    "<link rel=\"icon\" href=\"data:,\">\n<title>");
    vm_sbuf_escape(b, r->title, 0);
    vm_sbuf_puts(b, "</title>\n<style>\n");
    vm_sbuf_puts(b, css);
    vm_sbuf_puts(b, "</style>\n</head>\n<body>\n<header>\n<h1>");
    vm_sbuf_escape(b, r->title, 0);
    vm_sbuf_puts(b, "</h1>\n<p class=\"gen\">written by vmoer ");
    vm_sbuf_escape(b, vmoer_version(), 0);
    vm_sbuf_puts(b, "</p>\n</header>\n<main>\n");
    vm_sbuf_puts(b, vm_sbuf_str(&r->body));
    if (r->in_figs) vm_sbuf_puts(b, "</div>\n");
    if (r->in_section) vm_sbuf_puts(b, "</section>\n");
    vm_sbuf_puts(b, "</main>\n</body>\n</html>\n");
    return vm_sbuf_ok(b);
}

int vm_report_write(const vm_report *r, const char *path) {
    if (!path) return vm_err("report: NULL path");
    vm_sbuf b;
    vm_sbuf_init(&b);
    if (vm_report_html(r, &b) != 0) { vm_sbuf_free(&b); return vm_err_prefix("%s", path); }
    vm_afile a;
    if (vm_afile_open(&a, path) != 0) { vm_sbuf_free(&b); return -1; }
    if (fwrite(vm_sbuf_str(&b), 1, b.len, a.f) != b.len) {
        vm_afile_abort(&a);
        vm_sbuf_free(&b);
        return vm_err("%s: write failed", path);
    }
    vm_sbuf_free(&b);
    return vm_afile_commit(&a);
}

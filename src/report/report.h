// The evaluation report (method.md §5, issue 5): one self-contained report.html with inline CSS and
// SVG figures, no scripts and no external resources. A report is a title followed by sections; a
// section holds metrics tables, free-text notes and figures in the order they were added.
// Every call renders its piece immediately, so inputs need only live for the duration of the call.
// Text is escaped everywhere; NaN values print as "n/a" in tables and are gaps in figures.
//
//   vm_report *r = vm_report_init("OpenBookQA, stories260K MoE");
//   vm_report_section(r, "Calibration");
//   vm_report_table(r, &tab);
//   vm_report_reliability(r, "deterministic (ECE 0.081)", 10, bins);
//   vm_report_write(r, "out/report.html");
//   vm_report_free(r);
#pragma once

#include "report/html.h"
#include "report/svg.h"

typedef struct vm_report vm_report;

vm_report *vm_report_init(const char *title);   // NULL (with vm_err) on allocation failure
void vm_report_free(vm_report *r);

// Starts a new section with a heading (closing the previous one).
int vm_report_section(vm_report *r, const char *heading);
// A paragraph of free text (line breaks kept).
int vm_report_text(vm_report *r, const char *text);

// Metrics table: one row per method/run, named columns, numbers with optional interval.
typedef struct vm_table {
    const char *caption;           // may be NULL
    const char *row_header;        // heading of the name column (NULL = "method")
    int n_rows, n_cols;
    const char *const *row_names;  // (n_rows)
    const char *const *col_names;  // (n_cols)
    const double *values;          // (n_rows, n_cols) row-major; NaN -> "n/a"
    const double *lo, *hi;         // optional (n_rows, n_cols) interval, shown as "[lo, hi]"
    const int *digits;             // optional (n_cols) decimals; default 3
    const signed char *better;     // optional (n_cols): +1 higher is better, -1 lower, 0 neither;
                                   // the best finite value of such a column is set in bold
} vm_table;
int vm_report_table(vm_report *r, const vm_table *t);

// A named curve: n points (x, y); NaN/inf are gaps.
typedef struct vm_curve {
    const char *label;
    int n;
    const double *x, *y;
} vm_curve;

typedef enum vm_fig_kind {
    VM_FIG_ROC,             // x = FPR, y = TPR in [0,1]^2 with the chance diagonal (vm_metric_roc)
    VM_FIG_RISK_COVERAGE,   // x = coverage in [0,1], y = selective risk (vm_metric_risk_coverage)
    VM_FIG_JACCARD_NOISE,   // x = noise level gamma (log axis), y = mean Jaccard of expert sets
    VM_FIG_RELIABILITY,     // x = mean confidence per bin, y = accuracy per bin, with the diagonal
} vm_fig_kind;

// Several methods' curves overlaid in one figure of the given kind.
int vm_report_curves(vm_report *r, vm_fig_kind kind, const char *title, int n, const vm_curve *curves);

// Reliability diagram of one method: accuracy bars over M equal-width confidence bins, the gap to
// the bin's mean confidence, the diagonal, and each bin's count above the axis (empty bins: no bar).
// Plain arrays (M each: count, accuracy, mean confidence), so the report needs nothing of eval/
// (eval/metrics.h vm_ece_bins_split turns its bins into these).
int vm_report_reliability(vm_report *r, const char *title, int M, const int *count, const double *acc,
                          const double *conf);

// Confidence histogram over n_bins equal-width bins of [0,1] (same edge rule as the ECE bins).
// One set with `correct` given: stacked correct/wrong bars. Several sets: one line per set.
// y = fraction of that set's finite confidences. NaN confidences are left out and counted in the title.
typedef struct vm_conf_set {
    const char *label;
    int n;
    const double *conf;   // (n) in [0,1] or NaN
    const int *correct;   // optional (n) 0/1
} vm_conf_set;
int vm_report_conf_hist(vm_report *r, const char *title, int n_bins, int n, const vm_conf_set *sets);

// Per-layer stability bars: for each method a value per layer (e.g. mean Jaccard at gamma = 0.01),
// grouped by layer. curves[m].y has n_layers values (curves[m].n must equal n_layers; x unused).
// layer_names may be NULL ("0", "1", ...). y is drawn from 0; ylabel NULL = "mean Jaccard".
int vm_report_layer_bars(vm_report *r, const char *title, const char *ylabel, int n_layers,
                         const char *const *layer_names, int n, const vm_curve *curves);

// Any other figure, drawn with the plot layer as it is.
int vm_report_plot(vm_report *r, const vm_plot *p);

// ---------------------------------------------------------------------------------------------
// Comparing runs (`vmoer compare OUTDIR...`). Run r's rows become "<run> · <row>" in one table whose
// columns are the union of the runs' columns (first-seen order; missing -> n/a), and the runs'
// curves are overlaid in one figure: one colour per method label, one dash pattern per run.
int vm_report_compare_tables(vm_report *r, const char *caption, int n_runs, const char *const *run_names,
                             const vm_table *tables);
int vm_report_compare_curves(vm_report *r, vm_fig_kind kind, const char *title, int n_runs,
                             const char *const *run_names, const int *n_curves,
                             const vm_curve *const *curves);

// ---------------------------------------------------------------------------------------------
// Output: the whole document as a string (for tests), or written atomically to path.
int vm_report_html(const vm_report *r, vm_sbuf *out);
int vm_report_write(const vm_report *r, const char *path);

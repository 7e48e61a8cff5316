// A tiny SVG plotting layer for the evaluation report: one 2-D plot with axes, nice ticks, labels,
// lines, markers, bars (optionally grouped), small text notes, a y = x reference and a legend below
// the axes (never on top of the data). Output is an inline <svg> element with a viewBox, meant to
// sit inside an HTML page; every piece of text is escaped.
//
// Robustness rules: non-finite x or y is a gap (lines break, markers and bars are skipped), a point
// with no finite neighbour is drawn as a dot, a line or marker series longer than
// VM_PLOT_MAX_POINTS is thinned to that many evenly spaced points (first and last kept), and a plot
// with nothing finite to draw says "no data" instead of failing.
#pragma once

#include "report/html.h"

#define VM_PLOT_MAX_POINTS 2000

typedef enum vm_series_kind {
    VM_SERIES_LINE,         // polyline through the points in order
    VM_SERIES_POINTS,       // markers only
    VM_SERIES_LINE_POINTS,  // both
    VM_SERIES_BARS,         // a bar per point, centred at x, from y0 (or 0) to y
} vm_series_kind;

// Palette (Tableau 10, readable on white). VM_COLOR_AUTO takes the series' position in the plot.
typedef enum vm_color {
    VM_COLOR_AUTO = 0, VM_COLOR_BLUE, VM_COLOR_ORANGE, VM_COLOR_GREEN, VM_COLOR_RED, VM_COLOR_PURPLE,
    VM_COLOR_BROWN, VM_COLOR_PINK, VM_COLOR_GREY, VM_COLOR_OLIVE, VM_COLOR_CYAN,
} vm_color;
#define VM_PALETTE_SIZE 10
// CSS colour of palette entry i (wraps around; i counts from 0 = blue).
const char *vm_palette(int i);

typedef struct vm_series {
    const char *label;        // legend text; NULL = not in the legend
    vm_series_kind kind;
    int n;
    const double *x, *y;      // (n); x may be NULL: x = 0, 1, ..., n-1 (categories)
    const double *y0;         // bars: bottom of each bar (NULL = 0)
    double bar_width;         // bars: width in x units (0 = 0.8 of the smallest x spacing, or 0.8)
    const char *const *notes; // optional (n) small labels: above each point/bar, NULL entries skipped
    int notes_at_base;        // draw notes just above the x axis instead (e.g. bin counts)
    int color;                // vm_color
    int dash;                 // 0 solid, 1 dashed, 2 dotted, 3 dash-dot (wraps)
    double opacity;           // bar fill opacity; 0 = default
} vm_series;

typedef struct vm_plot {
    const char *title, *xlabel, *ylabel;
    double xmin, xmax;            // axis range; xmin >= xmax (e.g. both 0) = automatic, "nice"
    double ymin, ymax;            // same for y
    int y_include_zero;           // automatic y range reaches down (or up) to 0
    int xlog;                     // log10 x axis; x <= 0 are gaps
    int diagonal;                 // dashed grey y = x reference (labelled in the legend if given)
    const char *diagonal_label;
    int bars_grouped;             // BARS series share each x slot side by side instead of overlapping
    int n_xcats;                  // categorical x axis: tick k at x = k labelled xcats[k]
    const char *const *xcats;     // (n_xcats) or NULL
    int n_series;
    const vm_series *series;
    int width, height;            // axes box incl. margins, px (0 = 480 x 320); the legend adds rows
} vm_plot;

// Appends <svg ...>...</svg> to out. id must be unique within the page (clip-path ids).
// Returns 0, or -1 with vm_err() on invalid arguments (negative n, NULL arrays, bad size).
int vm_plot_svg(const vm_plot *p, int id, vm_sbuf *out);

// SVG plot rendering: range and tick computation, then axes, series, notes and legend in that order
// (later elements paint over earlier ones). Pixel coordinates are clamped so an extreme value can
// never print a 300-digit number, and all text goes through vm_sbuf_escape.
#include "report/svg.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const palette[VM_PALETTE_SIZE] = {
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
};
static const char *const dashes[4] = {"", "6 4", "2 3", "8 3 2 3"};

const char *vm_palette(int i) {
    i %= VM_PALETTE_SIZE;
    if (i < 0) i += VM_PALETTE_SIZE;
    return palette[i];
}

// Approximate glyph widths (px) of the sans-serif fonts at the sizes used below; only used to keep
// labels inside the picture, so a generous estimate is the safe side.
#define CHAR_W_TICK 6.0    // 10px text
#define CHAR_W_LEGEND 6.6  // 11px text
#define CHAR_W_TITLE 7.8   // 13px bold
#define LEGEND_ROW 17.0
#define MAX_TICKS 64

typedef struct axis {
    double lo, hi;   // data range (log axes: the values, not their logs)
    int log;
    double p0, p1;   // pixels of lo and hi
} axis;

static double ax_px(const axis *a, double v) {
    double t;
    if (a->log) {
        if (!(v > 0)) return NAN;
        t = (log10(v) - log10(a->lo)) / (log10(a->hi) - log10(a->lo));
    } else {
        t = (v - a->lo) / (a->hi - a->lo);
    }
    double px = a->p0 + t * (a->p1 - a->p0);
    if (!isfinite(px)) return px;
    return px < -1e5 ? -1e5 : px > 1e5 ? 1e5 : px;
}

static double nice_step(double raw) {
    if (!(raw > 0) || !isfinite(raw)) return 1;
    double mag = pow(10, floor(log10(raw)));
    double f = raw / mag;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

// Ticks of an axis into t (at most MAX_TICKS); *step receives the linear step (0 for log axes).
static int ticks(const axis *a, double *t, double *step) {
    int n = 0;
    *step = 0;
    if (a->log) {
        int e0 = (int)floor(log10(a->lo) + 1e-9), e1 = (int)ceil(log10(a->hi) - 1e-9);
        static const double m125[3] = {1, 2, 5};
        int per = e1 - e0 <= 3 ? 3 : 1;
        for (int e = e0; e <= e1 && n < MAX_TICKS; e++)
            for (int k = 0; k < per && n < MAX_TICKS; k++) {
                double v = m125[k] * pow(10, e);
                if (v >= a->lo * (1 - 1e-9) && v <= a->hi * (1 + 1e-9)) t[n++] = v;
            }
        return n;
    }
    double s = nice_step((a->hi - a->lo) / 5);
    double k0 = ceil(a->lo / s - 1e-9), k1 = floor(a->hi / s + 1e-9);
    for (int i = 0; i < MAX_TICKS && k0 + i <= k1; i++) {
        double v = (k0 + i) * s;
        t[n++] = fabs(v) < s * 1e-9 ? 0 : v;  // no "-0"
    }
    *step = s;
    return n;
}

static void fmt_tick(char *buf, size_t cap, double v, double step) {
    if (step > 0 && fabs(v) < 1e6 && step >= 1e-6) {
        int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
        snprintf(buf, cap, "%.*f", dec, v);
    } else {
        snprintf(buf, cap, "%g", v);
    }
}

static int finite_x(const vm_plot *p, const vm_series *s, int i, double *x) {
    *x = s->x ? s->x[i] : (double)i;
    if (!isfinite(*x)) return 0;
    return !(p->xlog && *x <= 0);
}

// Smallest spacing between distinct x of a bar series, times 0.8 (0.8 for a single x).
static double default_bar_width(const vm_plot *p, const vm_series *s) {
    if (!s->x) return 0.8;
    double *v = malloc((size_t)(s->n ? s->n : 1) * sizeof *v);
    if (!v) return 0.8;
    int m = 0;
    for (int i = 0; i < s->n; i++) {
        double x;
        if (finite_x(p, s, i, &x)) v[m++] = x;
    }
    double best = INFINITY;
    for (int i = 0; i < m; i++)  // O(m^2) is fine for bar counts
        for (int j = i + 1; j < m; j++) {
            double d = fabs(v[i] - v[j]);
            if (d > 0 && d < best) best = d;
        }
    free(v);
    if (isfinite(best)) return 0.8 * best;
    return p->xmin < p->xmax ? 0.08 * (p->xmax - p->xmin) : 0.8;
}

static void grow(double v, double *lo, double *hi) {
    if (!isfinite(v)) return;
    if (v < *lo) *lo = v;
    if (v > *hi) *hi = v;
}

// Automatic data range of the plot, before "nicing"; returns 0 when no finite point exists.
static int data_range(const vm_plot *p, const double *bw, double *xlo, double *xhi, double *ylo, double *yhi) {
    *xlo = *ylo = INFINITY;
    *xhi = *yhi = -INFINITY;
    int any = 0;
    for (int k = 0; k < p->n_series; k++) {
        const vm_series *s = &p->series[k];
        for (int i = 0; i < s->n; i++) {
            double x, y = s->y[i];
            if (!finite_x(p, s, i, &x) || !isfinite(y)) continue;
            any = 1;
            if (s->kind == VM_SERIES_BARS) {
                double base = s->y0 ? s->y0[i] : 0, l = x - bw[k] / 2;
                grow(p->xlog && !(l > 0) ? x : l, xlo, xhi);  // log axes only take positive values
                grow(x + bw[k] / 2, xlo, xhi);
                grow(base, ylo, yhi);
            } else {
                grow(x, xlo, xhi);
            }
            grow(y, ylo, yhi);
        }
    }
    return any;
}

static void nice_range(double *lo, double *hi, int log) {
    if (log) {
        if (*lo == *hi) { *lo /= 2; *hi *= 2; }
        *lo = pow(10, floor(log10(*lo) + 1e-9));
        *hi = pow(10, ceil(log10(*hi) - 1e-9));
        return;
    }
    if (*lo == *hi) {
        double d = *lo == 0 ? 0.5 : fabs(*lo) * 0.1;
        *lo -= d;
        *hi += d;
    }
    double s = nice_step((*hi - *lo) / 5);
    *lo = floor(*lo / s + 1e-9) * s;
    *hi = ceil(*hi / s - 1e-9) * s;
}

static int validate(const vm_plot *p) {
    if (!p) return vm_err("svg: NULL plot");
    if (p->n_series < 0 || (p->n_series > 0 && !p->series)) return vm_err("svg: bad series list (plot)");
    if (p->n_xcats < 0 || (p->n_xcats > 0 && !p->xcats)) return vm_err("svg: bad category list (plot)");
    if (p->width < 0 || p->height < 0 || p->width > 20000 || p->height > 20000)
        return vm_err("svg: bad size %d x %d (plot)", p->width, p->height);
    if ((p->width && p->width < 160) || (p->height && p->height < 120))
        return vm_err("svg: size %d x %d too small (plot)", p->width, p->height);
    for (int k = 0; k < p->n_series; k++) {
        const vm_series *s = &p->series[k];
        if (s->n < 0) return vm_err("svg: series %d has n = %d", k, s->n);
        if (s->n > 0 && !s->y) return vm_err("svg: series %d has no y values", k);
        if ((unsigned)s->kind > VM_SERIES_BARS) return vm_err("svg: series %d has unknown kind %d", k, (int)s->kind);
        if (!(s->bar_width >= 0) || !isfinite(s->bar_width))
            return vm_err("svg: series %d has bad bar width", k);
    }
    return 0;
}

// Legend entries (labelled series, then the diagonal) laid out in rows below the axes.
typedef struct legend_item { const char *label; int series; double x, y; } legend_item;

static int legend_layout(const vm_plot *p, double W, double y0, legend_item *it, int *n_rows) {
    int n = 0;
    for (int k = 0; k < p->n_series; k++)
        if (p->series[k].label) it[n++] = (legend_item){p->series[k].label, k, 0, 0};
    if (p->diagonal && p->diagonal_label) it[n++] = (legend_item){p->diagonal_label, -1, 0, 0};
    double x = 10, row = 0;
    int max_chars = (int)((W - 20 - 28) / CHAR_W_LEGEND);
    for (int i = 0; i < n; i++) {
        int c = vm_utf8_chars(it[i].label);
        double w = 28 + (c < max_chars ? c : max_chars) * CHAR_W_LEGEND + 14;
        if (x > 10 && x + w > W - 10) { x = 10; row++; }
        it[i].x = x;
        it[i].y = y0 + row * LEGEND_ROW;
        x += w;
    }
    *n_rows = n ? (int)row + 1 : 0;
    return n;
}

static const char *series_color(const vm_series *s, int k) {
    return s->color > 0 ? vm_palette(s->color - 1) : vm_palette(k);
}

static void stroke_attrs(vm_sbuf *b, const vm_series *s, int k) {
    vm_sbuf_printf(b, " stroke=\"%s\"", series_color(s, k));
    int d = s->dash % 4;
    if (d < 0) d += 4;
    if (d) vm_sbuf_printf(b, " stroke-dasharray=\"%s\"", dashes[d]);
}

// Indices to draw: all, or VM_PLOT_MAX_POINTS evenly spaced ones including the first and last.
static int draw_count(int n) { return n > VM_PLOT_MAX_POINTS ? VM_PLOT_MAX_POINTS : n; }
static int draw_index(int n, int j) {
    if (n <= VM_PLOT_MAX_POINTS) return j;
    return (int)((long long)j * (n - 1) / (VM_PLOT_MAX_POINTS - 1));
}

static int point_px(const vm_plot *p, const vm_series *s, const axis *ax, const axis *ay, int i,
                    double *px, double *py) {
    double x;
    if (!finite_x(p, s, i, &x) || !isfinite(s->y[i])) return 0;
    *px = ax_px(ax, x);
    *py = ax_px(ay, s->y[i]);
    return isfinite(*px) && isfinite(*py);
}

static void draw_line(vm_sbuf *b, const vm_plot *p, const vm_series *s, int k, const axis *ax, const axis *ay) {
    int m = draw_count(s->n);
    vm_sbuf_puts(b, "<path fill=\"none\" stroke-width=\"2\" stroke-linejoin=\"round\"");
    stroke_attrs(b, s, k);
    vm_sbuf_puts(b, " d=\"");
    int run = 0;  // points in the current unbroken run
    double lx = 0, ly = 0;
    vm_sbuf dots;
    vm_sbuf_init(&dots);
    for (int j = 0; j <= m; j++) {
        double px = 0, py = 0;
        int ok = j < m && point_px(p, s, ax, ay, draw_index(s->n, j), &px, &py);
        if (!ok) {
            if (run == 1)  // an isolated point: a path of one point is invisible, so mark it
                vm_sbuf_printf(&dots, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>", lx, ly,
                               series_color(s, k));
            run = 0;
            continue;
        }
        vm_sbuf_printf(b, "%s%.1f %.1f", run ? "L" : "M", px, py);
        lx = px;
        ly = py;
        run++;
    }
    vm_sbuf_puts(b, "\"/>\n");
    if (dots.oom) b->oom = 1;
    vm_sbuf_puts(b, vm_sbuf_str(&dots));
    vm_sbuf_free(&dots);
}

static void draw_points(vm_sbuf *b, const vm_plot *p, const vm_series *s, int k, const axis *ax, const axis *ay) {
    int m = draw_count(s->n);
    vm_sbuf_printf(b, "<g fill=\"%s\" stroke=\"#fff\" stroke-width=\"0.8\">", series_color(s, k));
    for (int j = 0; j < m; j++) {
        double px, py;
        if (point_px(p, s, ax, ay, draw_index(s->n, j), &px, &py))
            vm_sbuf_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.2\"/>", px, py);
    }
    vm_sbuf_puts(b, "</g>\n");
}

// Pixel span of bar i of series k (slot = which of the grouped bar series, of n_slots).
static int bar_px(const vm_plot *p, const vm_series *s, int i, double bw, int slot, int n_slots,
                  const axis *ax, const axis *ay, double *x0, double *x1, double *y0, double *y1) {
    double x, y = s->y[i], base = s->y0 ? s->y0[i] : 0;
    if (!finite_x(p, s, i, &x) || !isfinite(y) || !isfinite(base)) return 0;
    double w = bw / n_slots, c = x + (slot - (n_slots - 1) / 2.0) * w;
    double a = ax_px(ax, c - w / 2), bb = ax_px(ax, c + w / 2);
    if (!isfinite(a) || !isfinite(bb)) return 0;  // log axis and a non-positive edge
    double ya = ax_px(ay, base), yb = ax_px(ay, y);
    if (!isfinite(ya) || !isfinite(yb)) return 0;
    *x0 = fmin(a, bb);
    *x1 = fmax(a, bb);
    *y0 = fmin(ya, yb);
    *y1 = fmax(ya, yb);
    return 1;
}

static void draw_bars(vm_sbuf *b, const vm_plot *p, const vm_series *s, int k, double bw, int slot,
                      int n_slots, const axis *ax, const axis *ay) {
    double op = s->opacity > 0 && s->opacity <= 1 ? s->opacity : 0.85;
    vm_sbuf_printf(b, "<g fill=\"%s\" fill-opacity=\"%.2f\">", series_color(s, k), op);
    for (int i = 0; i < s->n; i++) {
        double x0, x1, y0, y1;
        if (!bar_px(p, s, i, bw, slot, n_slots, ax, ay, &x0, &x1, &y0, &y1)) continue;
        double w = x1 - x0 > 1 ? x1 - x0 - 0.5 : x1 - x0;  // a hairline gap between neighbours
        vm_sbuf_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"/>", x0, y0, w,
                       y1 - y0 > 0.5 ? y1 - y0 : 0.5);
    }
    vm_sbuf_puts(b, "</g>\n");
}

static void draw_notes(vm_sbuf *b, const vm_plot *p, const vm_series *s, double bw, int slot, int n_slots,
                       const axis *ax, const axis *ay) {
    // A white halo keeps the small labels readable on top of bars and lines.
    vm_sbuf_puts(b, "<g class=\"note\" font-size=\"9\" fill=\"#444\" text-anchor=\"middle\" stroke=\"#fff\" "
                    "stroke-width=\"2.5\" paint-order=\"stroke\">");
    for (int i = 0; i < s->n; i++) {
        if (!s->notes[i]) continue;
        double x, cx, ty;
        if (!finite_x(p, s, i, &x)) continue;
        if (s->kind == VM_SERIES_BARS) {
            double w = bw / n_slots;
            x += (slot - (n_slots - 1) / 2.0) * w;
        }
        cx = ax_px(ax, x);
        if (!isfinite(cx) || cx < ax->p0 - 1 || cx > ax->p1 + 1) continue;
        if (s->notes_at_base) {
            ty = ay->p0 - 3;
        } else {
            double y = s->y[i];
            if (s->kind == VM_SERIES_BARS && s->y0 && isfinite(s->y0[i]) && s->y0[i] > y) y = s->y0[i];
            if (!isfinite(y)) continue;
            ty = ax_px(ay, y) - 4;
            if (!isfinite(ty)) continue;
            if (ty < ay->p1 - 2) ty = ay->p1 - 2;  // stay just above the frame at most
            if (ty > ay->p0 - 3) ty = ay->p0 - 3;
        }
        vm_sbuf_printf(b, "<text x=\"%.1f\" y=\"%.1f\">", cx, ty);
        vm_sbuf_escape(b, s->notes[i], 12);
        vm_sbuf_puts(b, "</text>");
    }
    vm_sbuf_puts(b, "</g>\n");
}

static void legend_swatch(vm_sbuf *b, const vm_plot *p, const legend_item *it) {
    double x = it->x, y = it->y;
    if (it->series < 0) {
        vm_sbuf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#888\" "
                       "stroke-width=\"1.5\" stroke-dasharray=\"4 3\"/>", x, y, x + 22, y);
        return;
    }
    const vm_series *s = &p->series[it->series];
    if (s->kind == VM_SERIES_BARS) {
        double op = s->opacity > 0 && s->opacity <= 1 ? s->opacity : 0.85;
        vm_sbuf_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"22\" height=\"10\" fill=\"%s\" "
                       "fill-opacity=\"%.2f\"/>", x, y - 5, series_color(s, it->series), op);
        return;
    }
    if (s->kind != VM_SERIES_POINTS) {
        vm_sbuf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke-width=\"2\"",
                       x, y, x + 22, y);
        stroke_attrs(b, s, it->series);
        vm_sbuf_puts(b, "/>");
    }
    if (s->kind != VM_SERIES_LINE)
        vm_sbuf_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.2\" fill=\"%s\"/>", x + 11, y,
                       series_color(s, it->series));
}

int vm_plot_svg(const vm_plot *p, int id, vm_sbuf *b) {
    if (validate(p) != 0) return -1;
    double W = p->width ? p->width : 480, H = p->height ? p->height : 320;

    // Bar widths and the slot of each bar series when grouped.
    int n_bar = 0;
    double *bw = malloc((size_t)(p->n_series ? p->n_series : 1) * sizeof *bw);
    int *slot = malloc((size_t)(p->n_series ? p->n_series : 1) * sizeof *slot);
    legend_item *items = malloc((size_t)(p->n_series + 1) * sizeof *items);
    if (!bw || !slot || !items) {
        free(bw); free(slot); free(items);
        return vm_err("svg: out of memory (plot)");
    }
    for (int k = 0; k < p->n_series; k++) {
        const vm_series *s = &p->series[k];
        bw[k] = s->kind != VM_SERIES_BARS ? 0 : s->bar_width > 0 ? s->bar_width : default_bar_width(p, s);
        slot[k] = s->kind == VM_SERIES_BARS ? n_bar++ : 0;
    }
    int n_slots = p->bars_grouped && n_bar > 1 ? n_bar : 1;
    if (n_slots == 1)
        for (int k = 0; k < p->n_series; k++) slot[k] = 0;

    // Ranges: fixed, categorical, or from the data.
    axis ax = {0, 1, p->xlog, 0, 0}, ay = {0, 1, 0, 0, 0};
    double dxlo, dxhi, dylo, dyhi;
    int any = data_range(p, bw, &dxlo, &dxhi, &dylo, &dyhi);
    if (p->xmin < p->xmax && !(p->xlog && p->xmin <= 0)) {
        ax.lo = p->xmin; ax.hi = p->xmax;
    } else if (p->n_xcats > 0 && !p->xlog) {
        ax.lo = -0.5; ax.hi = p->n_xcats - 0.5;
    } else if (any) {
        ax.lo = dxlo; ax.hi = dxhi;
        nice_range(&ax.lo, &ax.hi, ax.log);
    } else if (ax.log) {
        ax.lo = 1e-3; ax.hi = 1;
    }
    if (p->ymin < p->ymax) {
        ay.lo = p->ymin; ay.hi = p->ymax;
    } else if (any) {
        ay.lo = dylo; ay.hi = dyhi;
        if (p->y_include_zero) { grow(0, &ay.lo, &ay.hi); }
        nice_range(&ay.lo, &ay.hi, 0);
    }
    // Absurd data (say +-1e308) would overflow the range arithmetic: fall back and let clipping act.
    if (!(isfinite(ax.hi - ax.lo) && ax.hi > ax.lo && (!ax.log || ax.lo > 0))) {
        ax.lo = ax.log ? 1e-3 : 0; ax.hi = 1;
    }
    if (!(isfinite(ay.hi - ay.lo) && ay.hi > ay.lo)) { ay.lo = 0; ay.hi = 1; }

    // Tick labels decide the left margin.
    double xt[MAX_TICKS], yt[MAX_TICKS], xstep, ystep;
    int nxt = p->n_xcats > 0 && !(p->xmin < p->xmax) ? 0 : ticks(&ax, xt, &xstep);
    int nyt = ticks(&ay, yt, &ystep);
    char lab[64];
    int ychars = 1;
    for (int i = 0; i < nyt; i++) {
        fmt_tick(lab, sizeof lab, yt[i], ystep);
        int c = (int)strlen(lab);
        if (c > ychars) ychars = c;
    }
    double ml = 10 + ychars * CHAR_W_TICK + 6 + (p->ylabel ? 16 : 0);
    double mr = 16, mt = p->title ? 30 : 12, mb = p->xlabel ? 44 : 26;
    ax.p0 = ml; ax.p1 = W - mr;
    ay.p0 = H - mb; ay.p1 = mt;  // y grows upwards
    if (ax.p1 - ax.p0 < 40 || ay.p0 - ay.p1 < 40) {
        free(bw); free(slot); free(items);
        return vm_err("svg: plot %g x %g leaves no room for the axes", W, H);
    }

    int n_rows, n_items = legend_layout(p, W, H + 4, items, &n_rows);
    double TH = H + (n_rows ? n_rows * LEGEND_ROW + 8 : 0);

    vm_sbuf_printf(b, "<svg class=\"plot\" viewBox=\"0 0 %.0f %.0f\" width=\"%.0f\" height=\"%.0f\" "
                   "role=\"img\" font-size=\"10\">\n<title>", W, TH, W, TH);
    vm_sbuf_escape(b, p->title ? p->title : "plot", 0);
    vm_sbuf_puts(b, "</title>\n");
    vm_sbuf_printf(b, "<rect width=\"%.0f\" height=\"%.0f\" fill=\"#fff\"/>\n", W, TH);
    if (p->title) {
        vm_sbuf_printf(b, "<text x=\"%.1f\" y=\"19\" text-anchor=\"middle\" font-size=\"13\" "
                       "font-weight=\"bold\">", W / 2);
        vm_sbuf_escape(b, p->title, (int)((W - 12) / CHAR_W_TITLE));
        vm_sbuf_puts(b, "</text>\n");
    }

    // Grid and tick labels.
    vm_sbuf_puts(b, "<g stroke=\"#e4e4e4\" stroke-width=\"1\">");
    for (int i = 0; i < nyt; i++) {
        double y = ax_px(&ay, yt[i]);
        vm_sbuf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", ax.p0, y, ax.p1, y);
    }
    for (int i = 0; i < nxt; i++) {
        double x = ax_px(&ax, xt[i]);
        vm_sbuf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", x, ay.p0, x, ay.p1);
    }
    vm_sbuf_puts(b, "</g>\n<g fill=\"#333\" text-anchor=\"end\">");
    for (int i = 0; i < nyt; i++) {
        fmt_tick(lab, sizeof lab, yt[i], ystep);
        vm_sbuf_printf(b, "<text x=\"%.1f\" y=\"%.1f\">%s</text>", ax.p0 - 5, ax_px(&ay, yt[i]) + 3.5, lab);
    }
    vm_sbuf_puts(b, "</g>\n<g fill=\"#333\" text-anchor=\"middle\">");
    for (int i = 0; i < nxt; i++) {
        fmt_tick(lab, sizeof lab, xt[i], xstep);
        vm_sbuf_printf(b, "<text x=\"%.1f\" y=\"%.1f\">%s</text>", ax_px(&ax, xt[i]), ay.p0 + 14, lab);
    }
    if (p->n_xcats > 0 && nxt == 0) {
        // Thin the category labels so neighbours never overlap.
        double slot_px = (ax.p1 - ax.p0) / p->n_xcats;
        int maxc = 1;
        for (int i = 0; i < p->n_xcats; i++) {
            int c = vm_utf8_chars(p->xcats[i]);
            if (c > maxc) maxc = c;
        }
        if (maxc > 10) maxc = 10;
        int every = (int)ceil((maxc * CHAR_W_TICK + 6) / slot_px);
        if (every < 1) every = 1;
        for (int i = 0; i < p->n_xcats; i += every) {
            if (!p->xcats[i]) continue;
            vm_sbuf_printf(b, "<text x=\"%.1f\" y=\"%.1f\">", ax_px(&ax, i), ay.p0 + 14);
            vm_sbuf_escape(b, p->xcats[i], 10);
            vm_sbuf_puts(b, "</text>");
        }
    }
    vm_sbuf_puts(b, "</g>\n");
    if (p->xlabel) {
        vm_sbuf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"11\">",
                       (ax.p0 + ax.p1) / 2, H - 10);
        vm_sbuf_escape(b, p->xlabel, (int)((W - 20) / CHAR_W_LEGEND));
        vm_sbuf_puts(b, "</text>\n");
    }
    if (p->ylabel) {
        double cy = (ay.p0 + ay.p1) / 2;
        vm_sbuf_printf(b, "<text x=\"13\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"11\" "
                       "transform=\"rotate(-90 13 %.1f)\">", cy, cy);
        vm_sbuf_escape(b, p->ylabel, (int)((ay.p0 - ay.p1) / CHAR_W_LEGEND));
        vm_sbuf_puts(b, "</text>\n");
    }

    // Data, clipped to the axes box (a few px of slack so markers on the frame stay whole).
    vm_sbuf_printf(b, "<clipPath id=\"vmclip%d\"><rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
                   "height=\"%.1f\"/></clipPath>\n<g clip-path=\"url(#vmclip%d)\">\n",
                   id, ax.p0 - 4, ay.p1 - 4, ax.p1 - ax.p0 + 8, ay.p0 - ay.p1 + 8, id);
    for (int k = 0; k < p->n_series; k++)
        if (p->series[k].kind == VM_SERIES_BARS)  // bars first: lines stay visible on top
            draw_bars(b, p, &p->series[k], k, bw[k], slot[k], n_slots, &ax, &ay);
    if (p->diagonal && !ax.log) {
        double lo = fmax(ax.lo, ay.lo), hi = fmin(ax.hi, ay.hi);
        if (lo < hi)
            vm_sbuf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#888\" "
                           "stroke-width=\"1.5\" stroke-dasharray=\"4 3\"/>\n",
                           ax_px(&ax, lo), ax_px(&ay, lo), ax_px(&ax, hi), ax_px(&ay, hi));
    }
    for (int k = 0; k < p->n_series; k++) {
        const vm_series *s = &p->series[k];
        if (s->kind == VM_SERIES_LINE || s->kind == VM_SERIES_LINE_POINTS) draw_line(b, p, s, k, &ax, &ay);
        if (s->kind == VM_SERIES_POINTS || (s->kind == VM_SERIES_LINE_POINTS && draw_count(s->n) <= 200))
            draw_points(b, p, s, k, &ax, &ay);
    }
    vm_sbuf_puts(b, "</g>\n");
    vm_sbuf_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
                   "stroke=\"#444\"/>\n", ax.p0, ay.p1, ax.p1 - ax.p0, ay.p0 - ay.p1);
    for (int k = 0; k < p->n_series; k++)
        if (p->series[k].notes) draw_notes(b, p, &p->series[k], bw[k], slot[k], n_slots, &ax, &ay);
    if (!any)
        vm_sbuf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"13\" "
                       "fill=\"#888\" font-style=\"italic\">no data</text>\n",
                       (ax.p0 + ax.p1) / 2, (ay.p0 + ay.p1) / 2);

    if (n_items) {
        int max_chars = (int)((W - 20 - 28) / CHAR_W_LEGEND);
        vm_sbuf_puts(b, "<g font-size=\"11\" fill=\"#222\">");
        for (int i = 0; i < n_items; i++) {
            legend_swatch(b, p, &items[i]);
            vm_sbuf_printf(b, "<text x=\"%.1f\" y=\"%.1f\">", items[i].x + 28, items[i].y + 4);
            vm_sbuf_escape(b, items[i].label, max_chars);
            vm_sbuf_puts(b, "</text>");
        }
        vm_sbuf_puts(b, "</g>\n");
    }
    vm_sbuf_puts(b, "</svg>\n");
    free(bw); free(slot); free(items);
    return vm_sbuf_ok(b);
}

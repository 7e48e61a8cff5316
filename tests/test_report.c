// HTML report and SVG plots: escaping, a tiny well-formedness checker (balanced tags, every <svg>
// with a viewBox, entities, no scripts or external URLs), a synthetic report with NaN, empty and huge
// inputs, error paths, and the atomic write.
// `test_report --write PATH` also writes the synthetic report to PATH for tests/cli/report_browser.sh.
#include "test.h"

#include <ctype.h>
#include <dirent.h>
#include <string.h>
#include <unistd.h>

#include "eval/metrics.h"
#include "report/report.h"
#include "util/err.h"
#include "util/fileio.h"
#include "util/rng.h"

// The report takes plain arrays; the tests make their bins with eval/metrics.h.
static int reliability(vm_report *r, const char *title, int M, const vm_ece_bin *bins) {
    int cnt[1000];
    double acc[1000], conf[1000];
    if (M >= 1 && M <= 1000) vm_ece_bins_split(M, bins, cnt, acc, conf);
    return vm_report_reliability(r, title, M, cnt, acc, conf);
}

// ---------------------------------------------------------------------------------------------
// Checker: 0 if well-formed enough, else -1 with the reason in why. *n_svg counts <svg> elements.

static const char *const void_tags[] = {"meta", "link", "br", "hr", "img", "input", "col", "wbr", NULL};

static int is_void(const char *t) {
    for (int i = 0; void_tags[i]; i++)
        if (!strcmp(t, void_tags[i])) return 1;
    return 0;
}

static int entity_ok(const char *s) {  // s points at '&'
    const char *p = s + 1;
    if (*p == '#') {
        p++;
        int hex = *p == 'x' || *p == 'X';
        if (hex) p++;
        const char *d = p;
        while (hex ? isxdigit((unsigned char)*p) : isdigit((unsigned char)*p)) p++;
        return p > d && *p == ';';
    }
    const char *d = p;
    while (isalnum((unsigned char)*p)) p++;
    return p > d && *p == ';';
}

static int html_check(const char *s, char *why, size_t cap, int *n_svg) {
    char stack[256][16];
    int depth = 0;
    *n_svg = 0;
    if (strstr(s, "<script") || strstr(s, "<SCRIPT")) { snprintf(why, cap, "contains a script"); return -1; }
    if (strstr(s, "http:") || strstr(s, "https:")) { snprintf(why, cap, "external URL"); return -1; }
    for (const char *p = s; *p;) {
        if (*p == '&') {
            if (!entity_ok(p)) { snprintf(why, cap, "bare & at: %.30s", p); return -1; }
            p++;
            continue;
        }
        if (*p == '>') { snprintf(why, cap, "bare > at: %.30s", p); return -1; }
        if (*p != '<') { p++; continue; }
        if (!strncmp(p, "<!--", 4)) {
            const char *e = strstr(p, "-->");
            if (!e) { snprintf(why, cap, "unterminated comment"); return -1; }
            p = e + 3;
            continue;
        }
        if (!strncmp(p, "<!DOCTYPE", 9)) { p = strchr(p, '>'); if (!p) return -1; p++; continue; }
        int closing = p[1] == '/';
        const char *n = p + 1 + closing;
        if (!isalpha((unsigned char)*n)) { snprintf(why, cap, "bare < at: %.30s", p); return -1; }
        char name[16];
        size_t k = 0;
        while (isalnum((unsigned char)*n) || *n == '-') {
            if (k + 1 < sizeof name) name[k++] = (char)tolower((unsigned char)*n);
            n++;
        }
        name[k] = 0;
        // Attributes: up to '>' outside quotes; quoted values must have their & escaped too.
        const char *q = n;
        char quote = 0;
        int has_viewbox = 0;
        while (*q && (quote || *q != '>')) {
            if (quote && *q == '&' && !entity_ok(q)) { snprintf(why, cap, "bare & in attribute of <%s>", name); return -1; }
            if (quote && *q == '<') { snprintf(why, cap, "< in attribute of <%s>", name); return -1; }
            if (!quote && (*q == '"' || *q == '\'')) quote = *q;
            else if (quote && *q == quote) quote = 0;
            if (!quote && !strncmp(q, " viewBox=\"", 10)) has_viewbox = 1;
            q++;
        }
        if (!*q) { snprintf(why, cap, "unterminated tag <%s", name); return -1; }
        int self_closing = q[-1] == '/';
        p = q + 1;
        if (closing) {
            if (depth == 0 || strcmp(stack[depth - 1], name)) {
                snprintf(why, cap, "</%s> closes <%s>", name, depth ? stack[depth - 1] : "(nothing)");
                return -1;
            }
            depth--;
            continue;
        }
        if (!strcmp(name, "svg")) {
            (*n_svg)++;
            if (!has_viewbox) { snprintf(why, cap, "<svg> without viewBox"); return -1; }
        }
        if (self_closing || is_void(name)) continue;
        if (depth == 256) { snprintf(why, cap, "nesting too deep"); return -1; }
        snprintf(stack[depth++], sizeof stack[0], "%s", name);
        if (!strcmp(name, "style")) {  // raw text up to </style>
            const char *e = strstr(p, "</style>");
            if (!e) { snprintf(why, cap, "unterminated <style>"); return -1; }
            p = e;
        }
    }
    if (depth) { snprintf(why, cap, "<%s> never closed", stack[depth - 1]); return -1; }
    return 0;
}

static int count_str(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

static void test_checker(void) {
    static const char *const bad[] = {
        "<div><p></div></p>", "<div>", "</div>", "<p>a < b</p>", "<p>a & b</p>", "<p>x > y</p>",
        "<svg width=\"3\"></svg>", "<p title=\"a&b\">x</p>", "<p>ok</p><script>x()</script>",
        "<img src=\"https://example.com/a.png\">", "<p class=\"x>", "<!-- open",
    };
    char why[200];
    int n_svg;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(html_check(bad[i], why, sizeof why, &n_svg) != 0, "checker accepted bad input %s", bad[i]);
    const char *good = "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><style>a>b{}</style></head>"
                       "<body><p title=\"&quot;x&#39;\">a &amp; b &lt; c<br></p>"
                       "<svg viewBox=\"0 0 1 1\"><rect/><text>&#x2026;</text></svg></body></html>";
    CHECK(html_check(good, why, sizeof why, &n_svg) == 0, "checker rejected good input: %s", why);
    CHECK(n_svg == 1, "svg count %d", n_svg);
}

// ---------------------------------------------------------------------------------------------

static void test_escape(void) {
    vm_sbuf b;
    vm_sbuf_init(&b);
    vm_sbuf_escape(&b, "<a href=\"x\">&'</a>", 0);
    CHECK(!strcmp(vm_sbuf_str(&b), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"), "got %s", vm_sbuf_str(&b));
    vm_sbuf_free(&b);

    // Invalid UTF-8 (lone continuation, overlong '/', surrogate, truncated) and controls -> U+FFFD;
    // valid multi-byte text passes; CR dropped, LF and tab kept.
    vm_sbuf_escape(&b, "a\x80" "b\xC0\xAF" "c\xED\xA0\x80" "d\x01\x7F\r\n\t\xCE\xB3\xF0\x9F\xA6\x99\xE2\x82", 0);
    CHECK(!strcmp(vm_sbuf_str(&b), "a\xEF\xBF\xBD" "b\xEF\xBF\xBD\xEF\xBF\xBD" "c\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"
                                   "d\xEF\xBF\xBD\xEF\xBF\xBD\n\t\xCE\xB3\xF0\x9F\xA6\x99\xEF\xBF\xBD\xEF\xBF\xBD"),
          "invalid UTF-8 handling: %s", vm_sbuf_str(&b));
    vm_sbuf_free(&b);

    vm_sbuf_escape(&b, "\xCE\xB3\xCE\xB3\xCE\xB3\xCE\xB3\xCE\xB3", 3);  // 5 code points cut to 3 with the ellipsis
    CHECK(!strcmp(vm_sbuf_str(&b), "\xCE\xB3\xCE\xB3\xE2\x80\xA6"), "truncation: %s", vm_sbuf_str(&b));
    vm_sbuf_free(&b);
    vm_sbuf_escape(&b, "abc", 3);
    CHECK(!strcmp(vm_sbuf_str(&b), "abc"), "no truncation at the limit: %s", vm_sbuf_str(&b));
    vm_sbuf_free(&b);
    CHECK(vm_utf8_chars("a\xCE\xB3\xF0\x9F\xA6\x99") == 3, "utf8 chars");
    vm_sbuf_escape(&b, NULL, 0);
    CHECK(b.len == 0 && !strcmp(vm_sbuf_str(&b), ""), "NULL text");
    vm_sbuf_free(&b);
}

// ---------------------------------------------------------------------------------------------
// The plot layer on its own.

static void test_plot(void) {
    enum { N = 100000 };
    double *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    for (int i = 0; i < N; i++) { x[i] = (double)i / (N - 1); y[i] = sqrt(x[i]); }
    vm_series s = {.label = "many", .kind = VM_SERIES_LINE, .n = N, .x = x, .y = y};
    vm_plot p = {.title = "many points", .n_series = 1, .series = &s};
    vm_sbuf b;
    vm_sbuf_init(&b);
    CHECK(vm_plot_svg(&p, 0, &b) == 0, "%s", vm_errmsg());
    const char *d = strstr(vm_sbuf_str(&b), " d=\"M");
    int pts = 0;
    for (const char *q = d ? d + 4 : ""; *q && *q != '"'; q++) pts += *q == 'M' || *q == 'L';
    CHECK(pts == VM_PLOT_MAX_POINTS, "drawn %d points of %d (want %d)", pts, N, VM_PLOT_MAX_POINTS);
    // the last point (1, 1) survives thinning: the path ends at the top-right corner of the axes
    CHECK(b.len < 60000, "svg of a thinned line is %zu bytes", b.len);
    vm_sbuf_free(&b);

    // NaN breaks the line; an isolated point becomes a dot; NaN bars are skipped.
    double gx[5] = {1, 2, 3, 4, 5}, gy[5] = {0.5, NAN, 0.7, NAN, 0.2};
    vm_series g[2] = {{.label = "gaps", .kind = VM_SERIES_LINE, .n = 5, .x = gx, .y = gy},
                      {.label = "bars", .kind = VM_SERIES_BARS, .n = 5, .x = gx, .y = gy}};
    vm_plot pg = {.title = "gaps", .n_series = 2, .series = g};
    CHECK(vm_plot_svg(&pg, 1, &b) == 0, "%s", vm_errmsg());
    const char *out = vm_sbuf_str(&b);
    CHECK(count_str(out, "r=\"2.5\"") == 3, "three isolated points drawn as dots");
    const char *path = strstr(out, " d=\"M");
    int segs = 0, moves = 0;
    for (const char *q = path ? path + 4 : ""; *q && *q != '"'; q++) { segs += *q == 'L'; moves += *q == 'M'; }
    CHECK(path && segs == 0 && moves == 3, "no segment across a NaN (%d L, %d M)", segs, moves);
    // 3 finite bars + background + clip box + frame + legend swatch
    CHECK(count_str(out, "<rect") == 7, "rect count %d", count_str(out, "<rect"));
    CHECK(!strstr(out, "nan") && !strstr(out, "inf"), "no nan/inf printed into the SVG");
    vm_sbuf_free(&b);

    // Nothing finite: "no data", still a valid SVG; extreme values never print huge numbers.
    double ny[3] = {NAN, INFINITY, -INFINITY}, ex[2] = {-1e308, 1e308}, ey[2] = {1e300, -1e300};
    vm_series e[2] = {{.label = "nan", .n = 3, .x = NULL, .y = ny}, {.label = "extreme", .n = 0}};
    vm_plot pe = {.title = "empty", .xlog = 1, .n_series = 2, .series = e};
    CHECK(vm_plot_svg(&pe, 2, &b) == 0, "%s", vm_errmsg());
    CHECK(strstr(vm_sbuf_str(&b), ">no data<") != NULL, "no-data text");
    vm_sbuf_free(&b);
    vm_series ee = {.label = "extreme", .kind = VM_SERIES_LINE_POINTS, .n = 2, .x = ex, .y = ey};
    vm_plot pee = {.title = "extreme", .n_series = 1, .series = &ee};
    CHECK(vm_plot_svg(&pee, 3, &b) == 0, "%s", vm_errmsg());
    CHECK(b.len < 20000, "extreme values: %zu bytes", b.len);
    char why[200];
    int n_svg;
    CHECK(html_check(vm_sbuf_str(&b), why, sizeof why, &n_svg) == 0 && n_svg == 1, "extreme svg: %s", why);
    vm_sbuf_free(&b);

    // Bad arguments fail with a message.
    vm_series bad = {.n = -1};
    vm_plot pb = {.n_series = 1, .series = &bad};
    vm_err_clear();
    CHECK(vm_plot_svg(&pb, 4, &b) == -1 && strstr(vm_errmsg(), "n = -1"), "negative n: %s", vm_errmsg());
    vm_series noy = {.n = 3};
    pb.series = &noy;
    CHECK(vm_plot_svg(&pb, 4, &b) == -1, "NULL y accepted");
    vm_plot tiny = {.width = 10, .height = 10};
    CHECK(vm_plot_svg(&tiny, 4, &b) == -1, "10x10 plot accepted");
    CHECK(vm_plot_svg(NULL, 4, &b) == -1, "NULL plot accepted");
    vm_sbuf_free(&b);
    free(x);
    free(y);
}

// ---------------------------------------------------------------------------------------------
// A whole synthetic report. Returns the report (caller frees) and the number of figures in *n_fig.

#define EVIL "<script>alert(\"x\")</script> & 'q' \xFF"
#define EVIL_ESC "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;q&#39; \xEF\xBF\xBD"

static vm_report *build_report(int *n_fig) {
    enum { NQ = 500, C = 4, NOOD = 300 };
    vm_rng rng;
    vm_rng_seed(&rng, 7);
    *n_fig = 0;
    vm_report *r = vm_report_init("Synthetic evaluation " EVIL);
    CHECK(r != NULL, "init");
    if (!r) return NULL;

    // Three "methods" with increasingly sharp (over-confident) synthetic answer distributions.
    static const char *const methods[3] = {"deterministic", "VGLR (S=8)", "VTSR " EVIL};
    double *p[3], *conf[3], *loss[3], *score_in[3], *score_out[3];
    int *y = malloc(NQ * sizeof *y), *correct[3];
    for (int q = 0; q < NQ; q++) y[q] = (int)(vm_rng_uniform(&rng) * C);
    for (int m = 0; m < 3; m++) {
        p[m] = malloc((size_t)NQ * C * sizeof *p[m]);
        conf[m] = malloc(NQ * sizeof *conf[m]);
        loss[m] = malloc(NQ * sizeof *loss[m]);
        correct[m] = malloc(NQ * sizeof *correct[m]);
        score_in[m] = malloc(NQ * sizeof *score_in[m]);
        score_out[m] = malloc(NOOD * sizeof *score_out[m]);
        for (int q = 0; q < NQ; q++) {
            double z[C], s = 0;
            for (int c = 0; c < C; c++) {
                z[c] = (1.0 + m) * ((c == y[q]) * 1.2 + 1.5 * vm_rng_normal(&rng));
                s += (z[c] = exp(z[c]));
            }
            for (int c = 0; c < C; c++) p[m][q * C + c] = z[c] / s;
        }
        vm_metric_maxprob(NQ, C, p[m], y, conf[m], correct[m]);
        for (int q = 0; q < NQ; q++) { loss[m][q] = !correct[m][q]; score_in[m][q] = -conf[m][q]; }
        for (int q = 0; q < NOOD; q++) score_out[m][q] = -(0.25 + 0.6 * vm_rng_uniform(&rng)) + 0.1 * m;
    }

    // Table with CIs, NaN, and best-in-column marks.
    static const char *const cols[5] = {"ACC", "NLL", "ECE", "AUROC " EVIL, "n"};
    static const int digits[5] = {3, 3, 3, 3, 0};
    static const signed char better[5] = {1, -1, -1, 1, 0};
    double v[3 * 5], lo[3 * 5], hi[3 * 5];
    for (int m = 0; m < 3; m++) {
        vm_metric_acc(NQ, C, p[m], y, &v[m * 5 + 0]);
        vm_metric_nll(NQ, C, p[m], y, &v[m * 5 + 1]);
        vm_ece(NQ, C, p[m], y, 10, &v[m * 5 + 2]);
        vm_metric_auroc(NQ, score_in[m], NOOD, score_out[m], &v[m * 5 + 3]);
        v[m * 5 + 4] = NQ;
        for (int c = 0; c < 5; c++) { lo[m * 5 + c] = v[m * 5 + c] * 0.9; hi[m * 5 + c] = v[m * 5 + c] * 1.1; }
    }
    v[1 * 5 + 3] = NAN;  // a metric that could not be computed
    lo[2 * 5 + 0] = NAN;  // an interval that could not be computed: value shown without it
    vm_table t = {.caption = "In-distribution metrics (95% bootstrap intervals)", .n_rows = 3, .n_cols = 5,
                  .row_names = methods, .col_names = cols, .values = v, .lo = lo, .hi = hi,
                  .digits = digits, .better = better};
    CHECK(vm_report_section(r, "Summary " EVIL) == 0, "%s", vm_errmsg());
    CHECK(vm_report_text(r, "Free text with a line break\nand " EVIL) == 0, "%s", vm_errmsg());
    CHECK(vm_report_table(r, &t) == 0, "%s", vm_errmsg());
    vm_table empty = {.caption = "an empty table", .n_rows = 0, .n_cols = 2, .col_names = cols};
    CHECK(vm_report_table(r, &empty) == 0, "%s", vm_errmsg());

    CHECK(vm_report_section(r, "Calibration") == 0, "%s", vm_errmsg());
    for (int m = 0; m < 3; m++) {
        vm_ece_bin bins[15];
        int M = m == 1 ? 15 : 10;
        vm_ece_reliability(NQ, C, p[m], y, M, bins);
        char title[128];
        snprintf(title, sizeof title, "%s: ECE %.3f", methods[m], v[m * 5 + 2]);
        CHECK(reliability(r, title, M, bins) == 0, "%s", vm_errmsg());
        (*n_fig)++;
    }
    vm_ece_bin none[10] = {{0}};
    CHECK(reliability(r, "all bins empty", 10, none) == 0, "%s", vm_errmsg());
    (*n_fig)++;
    vm_ece_bin bins40[40];
    vm_ece_reliability(NQ, C, p[0], y, 40, bins40);
    CHECK(reliability(r, "40 bins (no counts)", 40, bins40) == 0, "%s", vm_errmsg());
    (*n_fig)++;

    conf[0][3] = NAN;  // one question without a confidence
    vm_conf_set one = {.label = methods[0], .n = NQ, .conf = conf[0], .correct = correct[0]};
    CHECK(vm_report_conf_hist(r, "Confidence, deterministic", 10, 1, &one) == 0, "%s", vm_errmsg());
    vm_conf_set sets[3];
    for (int m = 0; m < 3; m++) sets[m] = (vm_conf_set){.label = methods[m], .n = NQ, .conf = conf[m]};
    CHECK(vm_report_conf_hist(r, "Confidence, all methods", 20, 3, sets) == 0, "%s", vm_errmsg());
    vm_conf_set zero = {.label = "no questions", .n = 0};
    CHECK(vm_report_conf_hist(r, "Confidence, nothing", 10, 1, &zero) == 0, "%s", vm_errmsg());
    CHECK(vm_report_conf_hist(r, "Confidence, no sets", 10, 0, NULL) == 0, "%s", vm_errmsg());
    *n_fig += 4;
    conf[0][3] = 0.5;

    // Selective prediction.
    CHECK(vm_report_section(r, "Selective prediction") == 0, "%s", vm_errmsg());
    double *cov[3], *risk[3];
    vm_curve rc_curves[4];
    for (int m = 0; m < 3; m++) {
        int np;
        cov[m] = malloc(NQ * sizeof *cov[m]);
        risk[m] = malloc(NQ * sizeof *risk[m]);
        vm_metric_risk_coverage(NQ, conf[m], loss[m], cov[m], risk[m], &np);
        rc_curves[m] = (vm_curve){methods[m], np, cov[m], risk[m]};
    }
    double one_x = 1, one_y = 0.4;
    rc_curves[3] = (vm_curve){"single point", 1, &one_x, &one_y};
    CHECK(vm_report_curves(r, VM_FIG_RISK_COVERAGE, "Risk-coverage", 4, rc_curves) == 0, "%s", vm_errmsg());
    CHECK(vm_report_curves(r, VM_FIG_RISK_COVERAGE, "Risk-coverage, no curves", 0, NULL) == 0, "%s", vm_errmsg());
    *n_fig += 2;

    // OOD: ROC per OOD set; one set with a huge number of scores, one with no in-distribution side.
    CHECK(vm_report_section(r, "OOD detection") == 0, "%s", vm_errmsg());
    static const char *const ood_sets[2] = {"ARC-Easy", "MedMCQA"};
    for (int o = 0; o < 2; o++) {
        double *fpr[3], *tpr[3], *thr[3];
        vm_curve roc[3];
        char labels[3][96], title[64];
        for (int m = 0; m < 3; m++) {
            int n_out = o == 0 ? NOOD : 60000, np;
            double *so = score_out[m];
            if (o == 1) {
                so = malloc((size_t)n_out * sizeof *so);
                for (int q = 0; q < n_out; q++) so[q] = -vm_rng_uniform(&rng) * (1 + 0.2 * m);
            }
            fpr[m] = malloc((size_t)(NQ + n_out + 1) * sizeof *fpr[m]);
            tpr[m] = malloc((size_t)(NQ + n_out + 1) * sizeof *tpr[m]);
            thr[m] = malloc((size_t)(NQ + n_out + 1) * sizeof *thr[m]);
            vm_metric_roc(NQ, score_in[m], n_out, so, fpr[m], tpr[m], thr[m], &np);
            double auroc;
            vm_metric_auroc(NQ, score_in[m], n_out, so, &auroc);
            snprintf(labels[m], sizeof labels[m], "%s (AUROC %.3f)", methods[m], auroc);
            roc[m] = (vm_curve){labels[m], np, fpr[m], tpr[m]};
            if (o == 1) free(so);
        }
        snprintf(title, sizeof title, "ROC, OOD = %s", ood_sets[o]);
        CHECK(vm_report_curves(r, VM_FIG_ROC, title, 3, roc) == 0, "%s", vm_errmsg());
        (*n_fig)++;
        for (int m = 0; m < 3; m++) { free(fpr[m]); free(tpr[m]); free(thr[m]); }
    }
    {   // n_in = 0: the FPR column is NaN, so the curve is one long gap
        double fpr[NOOD + 1], tpr[NOOD + 1], thr[NOOD + 1];
        int np;
        vm_metric_roc(0, NULL, NOOD, score_out[0], fpr, tpr, thr, &np);
        vm_curve c = {"no in-distribution scores", np, fpr, tpr};
        CHECK(vm_report_curves(r, VM_FIG_ROC, "ROC, degenerate", 1, &c) == 0, "%s", vm_errmsg());
        (*n_fig)++;
    }

    // Routing stability: Jaccard vs noise (NaN hole), per-layer bars.
    CHECK(vm_report_section(r, "Routing stability under noise") == 0, "%s", vm_errmsg());
    static const double gamma[7] = {0.001, 0.002, 0.005, 0.007, 0.01, 0.02, 0.05};
    double jac[3][7];
    vm_curve jc[3];
    for (int m = 0; m < 3; m++) {
        for (int g = 0; g < 7; g++) jac[m][g] = 1 - (0.4 - 0.1 * m) * sqrt(gamma[g] / 0.05);
        jc[m] = (vm_curve){methods[m], 7, gamma, jac[m]};
    }
    jac[1][3] = NAN;
    CHECK(vm_report_curves(r, VM_FIG_JACCARD_NOISE, "Jaccard vs noise", 3, jc) == 0, "%s", vm_errmsg());
    double layers[3][8];
    vm_curve lc[3];
    for (int m = 0; m < 3; m++) {
        for (int l = 0; l < 8; l++) layers[m][l] = 0.97 - 0.05 * (l % 3) - 0.03 * m;
        lc[m] = (vm_curve){methods[m], 8, NULL, layers[m]};
    }
    layers[2][5] = NAN;
    CHECK(vm_report_layer_bars(r, "Per-layer stability at \xCE\xB3 = 0.01", NULL, 8, NULL, 3, lc) == 0, "%s",
          vm_errmsg());
    double l32[2][32];
    vm_curve lc32[2];
    for (int m = 0; m < 2; m++) {
        for (int l = 0; l < 32; l++) l32[m][l] = 0.8 + 0.006 * l - 0.05 * m;
        lc32[m] = (vm_curve){methods[m], 32, NULL, l32[m]};
    }
    CHECK(vm_report_layer_bars(r, "32 layers", NULL, 32, NULL, 2, lc32) == 0, "%s", vm_errmsg());
    CHECK(vm_report_layer_bars(r, "no layers", NULL, 0, NULL, 0, NULL) == 0, "%s", vm_errmsg());
    // Long texts everywhere: title, axis labels, legend, categories are cut to fit (checked in Chromium).
    static const char *const long_cats[3] = {"blk.0.ffn_gate_inp_extremely_long", "blk.1", "blk.2"};
    double lv[3] = {0.9, 0.8, NAN};
    vm_series ls = {.label = "a legend label that is much too long to fit on one row of a figure of this "
                             "width, so it must be cut with an ellipsis",
                    .kind = VM_SERIES_BARS, .n = 3, .y = lv, .notes = long_cats};
    vm_plot lp = {.title = "A title far too long for the figure: it goes on and on about calibration, OOD, noise",
                  .xlabel = "an x label that also goes on for much longer than the axis that it describes",
                  .ylabel = "a y label longer than the axis height it describes", .n_xcats = 3,
                  .xcats = long_cats, .n_series = 1, .series = &ls};
    CHECK(vm_report_plot(r, &lp) == 0, "%s", vm_errmsg());
    *n_fig += 5;

    // Failed calls add nothing.
    vm_err_clear();
    CHECK(vm_report_layer_bars(r, "mismatch", NULL, 8, NULL, 1, lc32) == -1 && strstr(vm_errmsg(), "32 values"),
          "layer count mismatch: %s", vm_errmsg());
    double badc = 1.5;
    vm_conf_set bs = {.label = "bad", .n = 1, .conf = &badc};
    CHECK(vm_report_conf_hist(r, "bad", 10, 1, &bs) == -1 && strstr(vm_errmsg(), "outside [0,1]"), "conf 1.5: %s",
          vm_errmsg());
    vm_curve neg = {"neg", -2, NULL, NULL};
    CHECK(vm_report_curves(r, VM_FIG_ROC, "bad", 1, &neg) == -1, "negative curve length accepted");
    CHECK(vm_report_curves(r, (vm_fig_kind)99, "bad", 0, NULL) == -1, "unknown kind accepted");
    CHECK(reliability(r, "bad", 0, none) == -1, "M = 0 accepted");
    CHECK(vm_report_reliability(r, "bad", 10, NULL, NULL, NULL) == -1 && strstr(vm_errmsg(), "bins"), "NULL arrays accepted");
    vm_table badt = {.n_rows = 2, .n_cols = 2, .col_names = cols};
    CHECK(vm_report_table(r, &badt) == -1, "table without values accepted");

    // Comparing two runs: tables with different columns, curves overlaid.
    CHECK(vm_report_section(r, "Compare: run A vs run B") == 0, "%s", vm_errmsg());
    static const char *const run_names[2] = {"runA", "runB " EVIL};
    static const char *const cols_b[2] = {"ECE", "AURC"};
    double vb[2 * 2] = {0.05, 0.2, NAN, 0.25};
    vm_table tb[2] = {t, {.n_rows = 2, .n_cols = 2, .row_names = methods, .col_names = cols_b, .values = vb}};
    CHECK(vm_report_compare_tables(r, "Side by side", 2, run_names, tb) == 0, "%s", vm_errmsg());
    const vm_curve *cc[2] = {rc_curves, rc_curves + 1};
    int ncc[2] = {3, 2};
    CHECK(vm_report_compare_curves(r, VM_FIG_RISK_COVERAGE, "Risk-coverage, both runs", 2, run_names, ncc, cc) == 0,
          "%s", vm_errmsg());
    double jac2[3][7];
    vm_curve jc2[3];
    for (int m = 0; m < 3; m++) {
        for (int g = 0; g < 7; g++) jac2[m][g] = jac[m][g] + 0.04 * (1 - jac[m][g]) - 0.01;
        jc2[m] = (vm_curve){methods[m], 7, gamma, jac2[m]};
    }
    const vm_curve *jcc[2] = {jc, jc2};
    int njc[2] = {3, 3};
    CHECK(vm_report_compare_curves(r, VM_FIG_JACCARD_NOISE, "Jaccard, both runs", 2, NULL, njc, jcc) == 0, "%s",
          vm_errmsg());
    *n_fig += 2;

    for (int m = 0; m < 3; m++) {
        free(p[m]); free(conf[m]); free(loss[m]); free(correct[m]); free(score_in[m]); free(score_out[m]);
        free(cov[m]); free(risk[m]);
    }
    free(y);
    return r;
}

static void test_report(const char *write_path) {
    int n_fig;
    vm_report *r = build_report(&n_fig);
    if (!r) return;
    vm_sbuf b;
    vm_sbuf_init(&b);
    CHECK(vm_report_html(r, &b) == 0, "%s", vm_errmsg());
    const char *h = vm_sbuf_str(&b);
    char why[200];
    int n_svg = -1;
    CHECK(html_check(h, why, sizeof why, &n_svg) == 0, "report not well-formed: %s", why);
    CHECK(n_svg == n_fig, "%d <svg> elements for %d figures", n_svg, n_fig);
    CHECK(count_str(h, "<figure>") == n_fig, "figure count");
    CHECK(count_str(h, "<section>") == 6 && count_str(h, "</section>") == 6, "sections");
    CHECK(strstr(h, "Synthetic evaluation " EVIL_ESC) != NULL, "title escaped");
    CHECK(strstr(h, "VTSR " EVIL_ESC) != NULL, "method name escaped");
    CHECK(!strstr(h, "<script"), "raw script tag");
    CHECK(strstr(h, "<td class=\"num na\">n/a</td>") != NULL, "NaN shown as n/a");
    CHECK(strstr(h, ">no rows<") != NULL, "empty table says so");
    CHECK(strstr(h, ">no data<") != NULL, "empty figure says so");
    CHECK(strstr(h, "(1 n/a left out)") != NULL, "NaN confidence counted");
    CHECK(strstr(h, "runA \xC2\xB7 deterministic") != NULL, "compare row names");
    CHECK(strstr(h, "<th>AURC</th>") != NULL, "compare column union");
    CHECK(count_str(h, " best\">") >= 3, "best values marked (%d)", count_str(h, " best\">"));
    CHECK(!strstr(h, "nan") && !strstr(h, "NaN"), "no raw NaN printed");
    // the thinned ROC: no path in the document has more than VM_PLOT_MAX_POINTS points
    int max_pts = 0;
    for (const char *d = strstr(h, " d=\"M"); d; d = strstr(d + 1, " d=\"M")) {
        int pts = 0;
        for (const char *q = d + 4; *q && *q != '"'; q++) pts += *q == 'M' || *q == 'L';
        if (pts > max_pts) max_pts = pts;
    }
    CHECK(max_pts > 1000 && max_pts <= VM_PLOT_MAX_POINTS, "longest path has %d points", max_pts);

    // Atomic write into a fresh directory: the file equals the rendered string, no temp file left.
    char dir[] = "/tmp/vmoer_report_XXXXXX", path[128];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(path, sizeof path, "%s/report.html", dir);
    CHECK(vm_report_write(r, path) == 0, "%s", vm_errmsg());
    size_t len = 0;
    char *f = vm_read_file(path, &len);
    CHECK(f && len == b.len && !memcmp(f, h, len), "written file differs from the rendered html");
    free(f);
    int entries = 0;
    DIR *dd = opendir(dir);
    for (struct dirent *e; dd && (e = readdir(dd));) entries += e->d_name[0] != '.';
    if (dd) closedir(dd);
    CHECK(entries == 1, "%d files in the output folder (temp file left behind?)", entries);
    remove(path);
    snprintf(path, sizeof path, "%s/missing/report.html", dir);
    CHECK(vm_report_write(r, path) == -1 && strstr(vm_errmsg(), "missing"), "unwritable path: %s", vm_errmsg());
    rmdir(dir);

    if (write_path) {
        CHECK(vm_report_write(r, write_path) == 0, "%s", vm_errmsg());
        printf("figures: %d\n", n_fig);
    }
    vm_sbuf_free(&b);
    vm_report_free(r);

    // An empty report is still a valid page.
    vm_report *e = vm_report_init(NULL);
    vm_sbuf_init(&b);
    CHECK(e && vm_report_html(e, &b) == 0, "empty report");
    CHECK(html_check(vm_sbuf_str(&b), why, sizeof why, &n_svg) == 0 && n_svg == 0, "empty report: %s", why);
    vm_sbuf_free(&b);
    vm_report_free(e);
    vm_report_free(NULL);
}

int main(int argc, char **argv) {
    const char *write_path = argc == 3 && !strcmp(argv[1], "--write") ? argv[2] : NULL;
    test_checker();
    test_escape();
    test_plot();
    test_report(write_path);
    return TEST_SUMMARY();
}

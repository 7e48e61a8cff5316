// `vmoer demo` pieces that need no model run (eval/demo.h): the verdict is computed from the numbers
// (better / worse / same at the shown precision, interval overlap), the markdown table prints every
// row and n/a for missing scores, option checks and input errors are one line and leave no crash.
// The end-to-end run (and same seed -> same bytes) is tests/cli/demo.sh.
#include "test.h"
#include "eval/demo.h"
#include "util/err.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static vm_demo_row row(const char *name, double acc, double ece, double lo, double hi, double jac) {
    vm_demo_row w;
    memset(&w, 0, sizeof w);
    snprintf(w.name, sizeof w.name, "%s", name);
    w.n = 100; w.acc = acc; w.nll = 1.25; w.ece = ece; w.ece_lo = lo; w.ece_hi = hi; w.mce = 0.3; w.brier = 0.6;
    w.jaccard = jac; w.jaccard_all = jac; w.flops_ratio = 1; w.passes = 1; w.temperature = NAN;
    for (int s = 0; s < VM_DEMO_N_OOD; s++) for (int k = 0; k < VM_DEMO_N_SCORES; k++) w.auroc[s][k] = NAN;
    return w;
}

// The text after `head` up to the end of its line.
static const char *line_of(const char *text, const char *head, char *buf, size_t n) {
    const char *p = strstr(text, head);
    if (!p) { buf[0] = 0; return buf; }
    p += strlen(head);
    size_t k = 0;
    while (p[k] && p[k] != '\n' && k + 1 < n) { buf[k] = p[k]; k++; }
    buf[k] = 0;
    return buf;
}

static void check_verdict(void) {
    vm_demo_result r;
    memset(&r, 0, sizeof r);
    snprintf(r.ood_names[0], sizeof r.ood_names[0], "tinyshakespeare");
    snprintf(r.ood_names[1], sizeof r.ood_names[1], "wikitext2");
    r.n_layers = 2; r.layers[0] = 3; r.layers[1] = 4;
    r.rows[0] = row("deterministic", 0.55, 0.100, 0.05, 0.15, 0.95001);
    r.rows[0].auroc[0][0] = 0.60; r.rows[0].auroc[1][0] = 0.70;
    r.rows[1] = row("vglr-mf", 0.54, 0.050, 0.01, 0.04, 0.96);
    r.rows[1].auroc[0][3] = 0.65; r.rows[1].auroc[1][3] = 0.65;   // ILV: better on one set, worse on the other
    r.rows[1].passes = 4; r.rows[1].flops_ratio = 4.02;
    r.rows[2] = row("vtsr", 0.55, 0.120, 0.08, 0.16, 0.95003);      // Jaccard equal at 4 decimals
    r.rows[2].auroc[0][4] = 0.61; r.rows[2].auroc[1][4] = 0.70;      // gate entropy: better, same
    r.n_rows = 3;
    char *v = vm_demo_verdict(&r);
    CHECK(v != NULL, "verdict");
    if (!v) return;
    char yes[2048], no[2048], same[2048];
    line_of(v, "improves on deterministic in: ", yes, sizeof yes);
    line_of(v, "does not improve in: ", no, sizeof no);
    line_of(v, "No difference at the shown precision: ", same, sizeof same);
    CHECK(strstr(yes, "vglr-mf ECE") && strstr(yes, "vglr-mf Jaccard@0.01") &&
          strstr(yes, "vglr-mf OOD AUROC tinyshakespeare (ilv vs max-prob)") &&
          strstr(yes, "vtsr OOD AUROC tinyshakespeare (gate_entropy vs max-prob)"), "improves: %s", yes);
    CHECK(strstr(no, "vglr-mf OOD AUROC wikitext2 (ilv vs max-prob)") && strstr(no, "vtsr ECE") &&
          !strstr(no, "Jaccard"), "does not: %s", no);
    CHECK(strstr(same, "vtsr Jaccard@0.01") && strstr(same, "vtsr OOD AUROC wikitext2"), "same: %s", same);
    CHECK(strstr(v, "ECE 0.050 vs 0.100 (better), 95% intervals do not overlap") != NULL, "interval text:\n%s", v);
    CHECK(strstr(v, "ECE 0.120 vs 0.100 (worse), 95% intervals overlap") != NULL, "vtsr interval text:\n%s", v);
    CHECK(!strstr(v, "vglr-fc"), "absent methods are not judged");
    free(v);
    vm_demo_opts o;
    vm_demo_opts_default(&o);
    char *md = vm_demo_table_md(&o, &r);
    CHECK(md != NULL, "table");
    if (!md) return;
    CHECK(strstr(md, "| vglr-mf | 0.540 | 1.250 | 0.050 [0.010, 0.040] | 0.300 | 0.600 | 0.9600 | 4.020 | n/a |") != NULL,
          "vglr-mf row:\n%s", md);
    CHECK(strstr(md, "| deterministic | 0.000 | 0.600 | n/a | n/a | n/a | n/a | n/a |") != NULL, "OOD row of set 0:\n%s", md);
    CHECK(strstr(md, "routers of MoE layers 3, 4 replaced") != NULL, "layers named");
    CHECK(strstr(md, "### Verdict") != NULL, "verdict in the table");
    free(md);
    r.n_rows = 0;
    v = vm_demo_verdict(&r);
    CHECK(v && strstr(v, "No deterministic row"), "empty result");
    free(v);
}

static void check_errors(void) {
    vm_demo_opts o, q;
    vm_demo_opts_default(&o);
    q = o;
    vm_demo_opts_quick(&q);
    CHECK(q.n_train < o.n_train && q.n_test < o.n_test && q.passes <= o.passes && q.mode == VM_TASK_PMI, "quick is smaller");
    CHECK(!strcmp(o.model_path, "data/models/stories-moe.gguf") && o.mode == VM_TASK_PMI, "defaults");
    char out[] = "/tmp/vmoer_demo_test_XXXXXX";
    CHECK(mkdtemp(out) != NULL, "mkdtemp");
    vm_demo_opts b = q;
    b.outdir = out;
    b.n_train = 0;
    CHECK(vm_demo_run(&b, NULL) < 0 && strstr(vm_errmsg(), "too few items"), "n_train 0: %s", vm_errmsg());
    b = q; b.outdir = out; b.mode = VM_TASK_LETTER;
    CHECK(vm_demo_run(&b, NULL) < 0 && strstr(vm_errmsg(), "continuation"), "letter mode: %s", vm_errmsg());
    b = q; b.outdir = out; b.model_path = "/nonexistent/m.gguf";
    CHECK(vm_demo_run(&b, NULL) < 0 && strstr(vm_errmsg(), "/nonexistent/m.gguf"), "missing model: %s", vm_errmsg());
    b = q; b.outdir = out; b.data_dir = "/nonexistent";
    CHECK(vm_demo_run(&b, NULL) < 0 && strstr(vm_errmsg(), "/nonexistent/train.jsonl"), "missing data: %s", vm_errmsg());
    char path[256];
    snprintf(path, sizeof path, "%s/methods", out); rmdir(path);
    snprintf(path, sizeof path, "%s/adapters", out); rmdir(path);
    rmdir(out);
}

int main(void) {
    check_verdict();
    check_errors();
    for (int k = 0; k < VM_DEMO_N_SCORES; k++) CHECK(strcmp(vm_demo_score_name(k), "?"), "score name %d", k);
    CHECK(!strcmp(vm_demo_score_name(3), "ilv") && !strcmp(vm_demo_score_name(99), "?"), "score names");
    return TEST_SUMMARY();
}

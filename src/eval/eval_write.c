// Outputs of `vmoer eval` (eval.h): per-question JSONL, metrics.json with named conventions, CSVs
// for other tools, curves.json for `vmoer compare`, and the self-contained report.html.
// Methods: the router that ran, and with a validation set also "<router>+ts", the same answer
// distributions temperature-scaled with one T fitted on the validation set (never on test).
#include "eval/eval_internal.h"
#include "eval/metrics.h"
#include "report/report.h"
#include "util/dist.h"
#include "util/err.h"
#include "util/fileio.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_METHODS 2
#define BOOT_LEVEL 0.95

static const char *const conventions[][2] = {
    { "probabilities", "answer distribution p_bar = mean over passes of each pass's distribution; letter mode: softmax over the letter-token logits at the last prompt position (method.md 5.1); loglik: softmax over summed choice log-likelihoods (lm-evaluation-harness)" },
    { "padding", "sets whose items have fewer choices than the set's largest count are padded with probability 0 (classwise ECE then averages over the largest count)" },
    { "acc", "argmax p_bar == answer, ties to the lowest index; acc_stderr = sqrt(acc(1-acc)/(n-1)) as lm-evaluation-harness" },
    { "acc_norm", "loglik only: argmax of summed log-likelihood / continuation bytes (lm-evaluation-harness); null in letter mode" },
    { "nll", "mean -ln max(p_y, 1e-12), nats" },
    { "brier", "mean sum_k (p_k - 1[k=y])^2, summed over classes, in [0,2]" },
    { "ece", "M equal-width bins, bin = min(floor(c*M), M-1), c = max prob; sum_m n_m/n |acc_m - conf_m|; ece_ci = bootstrap percentile interval (level 0.95, resampling questions)" },
    { "mce", "max over non-empty bins of |acc_m - conf_m|" },
    { "ece_adaptive", "equal-mass bins over examples sorted by confidence (Nixon et al. 2019), same M" },
    { "ece_signed", "sum_m n_m/n (acc_m - conf_m): negative = over-confident" },
    { "ece_classwise", "mean over classes of the one-vs-rest equal-width ECE (Kull et al. 2019)" },
    { "aurc", "area under the risk-coverage curve: mean over k of the 0/1 risk of the k most confident (max prob) answers, tie groups kept whole (Geifman et al. 2018)" },
    { "ood", "OOD = positive class, higher score = more OOD; auroc = Mann-Whitney with ties 1/2; aupr = average precision (scikit-learn); fpr95 = FPR at the largest threshold reaching TPR >= 0.95" },
    { "scores", "entropy = H(p_bar) nats; neg_maxprob = -max p_bar; mi = H(p_bar) - mean_q H(p_q) over the passes (multi-pass Monte Carlo of a stochastic router, passes > 1; NaN with one pass); ilv = tr Sigma, gate_entropy, temperature, ilv_dev = |log(tr Sigma / (N sigma_p^2))|, prob_var = sum over experts of the variance of the routing probabilities across the S samples (swag) = router read-outs at the last prompt token (loglik: last context token), mean over the replaced MoE layers (all MoE layers when none is replaced); base_gate_entropy = entropy of convention(W_r u) there" },
    { "temperature_scaling", "method '<router>+ts': p = softmax(log p_bar / T), T fitted by minimum NLL on the --val set only" },
    { "stability", "L_bar = mean L2 norm of the input token embeddings of the prompts; eps ~ N(0,(gamma L_bar)^2 I) added to the embedding output; Jaccard |A n B|/|A u B| of the selected experts, clean vs noisy pass with independent router streams (a sampled router counts its own sampling noise), per token and MoE layer; jaccard = mean over tokens, jaccard_mean = mean over layers; headline gamma 0.01" },
    { "cost", "analytic FLOPs per token, 2 per multiply-add, of every matrix product (attention products at the mean span ctx_mean); a question costs passes x that; params_extra = trainable router parameters; time ratio = one pass with this router / one pass with the deterministic router, same prompts and threads" },
};

const char *const vm_eval_output_names[] = {
    "questions.jsonl", "metrics.json", "metrics.csv", "reliability.csv", "risk_coverage.csv", "roc.csv",
    "ood.csv", "stability.csv", "curves.json", "report.html", NULL
};

// ---------------------------------------------------------------- small helpers

static json_t *jnum(double x) { return isfinite(x) ? json_real(x) : json_null(); }


// A CSV field per RFC 4180: as is, or (when it holds a comma, a double quote, CR or LF) in double
// quotes with its double quotes doubled. Names come from the command line (--ood NAME=...).
static char *csv_quote(const char *s) {
    if (!strpbrk(s, ",\"\r\n")) return vm_strdup(s);
    char *q = vm_malloc(2 * strlen(s) + 3), *o = q;
    if (!q) return NULL;
    *o++ = '"';
    for (; *s; s++) { if (*s == '"') *o++ = '"'; *o++ = *s; }
    *o++ = '"'; *o = 0;
    return q;
}

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *s = vm_malloc(n);
    if (s) snprintf(s, n, "%s/%s", dir, name);
    return s;
}

static int afile_open_in(vm_afile *a, const char *dir, const char *name) {
    char *p = join(dir, name);
    if (!p) return -1;
    int rc = vm_afile_open(a, p);
    free(p);
    return rc;
}

static int write_json(const char *dir, const char *name, json_t *j) {
    vm_afile a;
    if (!j) return vm_err("eval: out of memory building %s", name);
    if (afile_open_in(&a, dir, name)) return -1;
    if (json_dumpf(j, a.f, JSON_INDENT(1) | JSON_REAL_PRECISION(10)) || fputc('\n', a.f) == EOF) {
        vm_afile_abort(&a);
        return vm_err("eval: cannot write %s/%s", dir, name);
    }
    return vm_afile_commit(&a);
}

// ---------------------------------------------------------------- per-method data

typedef struct mset {           // one method on one set
    int n, C;                   // C = largest choice count of the set
    double *p;                  // (n, C) padded with 0
    int *y, *pred, *correct;
    double *unc;                // (n, VM_EVAL_UNC_COUNT)
    double *conf, *loss;        // (n) max prob, 0/1 error
} mset;

typedef struct method {
    char name[96];
    double T;                   // NaN unless temperature-scaled
    mset *sets;                 // (n_sets)
} method_t;

static void mset_free(mset *s) {
    free(s->p); free(s->y); free(s->pred); free(s->correct); free(s->unc); free(s->conf); free(s->loss);
}

static double entropy(const double *p, int n) {
    double h = 0.0;
    for (int i = 0; i < n; i++) if (p[i] > 0.0) h -= p[i] * log(p[i]);
    return h;
}

// Fills s from the items; T > 0: temperature-scaled probabilities (scores recomputed, MI dropped).
static int mset_fill(mset *s, const vm_eval_set *es, double T) {
    memset(s, 0, sizeof *s);
    s->n = es->n;
    s->C = 1;
    for (int i = 0; i < es->n; i++) if (es->items[i].n_choices > s->C) s->C = es->items[i].n_choices;
    const size_t n = (size_t)(es->n > 0 ? es->n : 1), C = (size_t)s->C;
    s->p = vm_calloc(n * C, sizeof(double));
    s->y = vm_calloc(n, sizeof(int)); s->pred = vm_calloc(n, sizeof(int)); s->correct = vm_calloc(n, sizeof(int));
    s->unc = vm_calloc(n * VM_EVAL_UNC_COUNT, sizeof(double));
    s->conf = vm_calloc(n, sizeof(double)); s->loss = vm_calloc(n, sizeof(double));
    if (!s->p || !s->y || !s->pred || !s->correct || !s->unc || !s->conf || !s->loss) { mset_free(s); return -1; }
    for (int i = 0; i < es->n; i++) {
        const vm_eval_item *e = &es->items[i];
        double *p = s->p + (size_t)i * C, *u = s->unc + (size_t)i * VM_EVAL_UNC_COUNT;
        memcpy(u, e->unc, sizeof e->unc);
        if (T > 0) {
            double z[VM_MCQ_MAX_CHOICES];
            if (vm_temp_apply(1, e->n_choices, e->logp, T, z)) { mset_free(s); return -1; }
            memcpy(p, z, (size_t)e->n_choices * sizeof(double));
        } else {
            memcpy(p, e->probs, (size_t)e->n_choices * sizeof(double));
        }
        for (int k = 0; k < e->n_choices; k++) p[k] = p[k] < 0 ? 0 : p[k] > 1 ? 1 : p[k];
        int b = 0;
        for (int k = 1; k < e->n_choices; k++) if (p[k] > p[b]) b = k;
        s->y[i] = e->answer;
        s->pred[i] = b;
        s->correct[i] = b == e->answer;
        s->conf[i] = p[b];
        s->loss[i] = b != e->answer;
        if (T > 0) {
            u[VM_EVAL_UNC_ENTROPY] = entropy(p, e->n_choices);
            u[VM_EVAL_UNC_NEG_MAXPROB] = -p[b];
            u[VM_EVAL_UNC_MI] = NAN;
        }
    }
    return 0;
}

int vm_eval_set_headline(const vm_eval_set *s, int bins, double *acc, double *nll, double *brier, double *ece) {
    mset m;
    if (mset_fill(&m, s, 0)) return -1;
    const int rc = vm_metric_acc(m.n, m.C, m.p, m.y, acc) || vm_metric_nll(m.n, m.C, m.p, m.y, nll) ||
                   vm_metric_brier(m.n, m.C, m.p, m.y, brier) || vm_ece(m.n, m.C, m.p, m.y, bins, ece) ? -1 : 0;
    mset_free(&m);
    return rc;
}

// Column k of the scores when every value is finite, else NULL (the score is not defined here).
static double *score_col(const mset *s, int k) {
    double *v = vm_malloc((size_t)(s->n > 0 ? s->n : 1) * sizeof(double));
    if (!v) return NULL;
    for (int i = 0; i < s->n; i++) {
        v[i] = s->unc[(size_t)i * VM_EVAL_UNC_COUNT + k];
        if (!isfinite(v[i])) { free(v); return NULL; }
    }
    return v;
}

// ---------------------------------------------------------------- metrics

typedef struct cls_metrics {
    double acc, acc_stderr, acc_norm, nll, brier, ece, ece_lo, ece_hi, mce, ece_adaptive, ece_signed,
           ece_classwise, aurc;
} cls_metrics;

static int cls_compute(const mset *s, const vm_eval_set *es, int loglik, int M, int B, uint64_t seed,
                       cls_metrics *o) {
    const int n = s->n, C = s->C;
    if (vm_metric_acc(n, C, s->p, s->y, &o->acc) || vm_metric_nll(n, C, s->p, s->y, &o->nll) ||
        vm_metric_brier(n, C, s->p, s->y, &o->brier) || vm_ece(n, C, s->p, s->y, M, &o->ece) ||
        vm_ece_mce(n, C, s->p, s->y, M, &o->mce) || vm_ece_adaptive(n, C, s->p, s->y, M, &o->ece_adaptive) ||
        vm_ece_signed(n, C, s->p, s->y, M, &o->ece_signed) ||
        vm_ece_classwise(n, C, s->p, s->y, M, &o->ece_classwise) || vm_metric_aurc(n, s->conf, s->loss, &o->aurc))
        return -1;
    o->acc_stderr = n > 1 ? sqrt(o->acc * (1.0 - o->acc) / (n - 1)) : NAN;
    o->acc_norm = NAN;
    if (loglik) {
        int k = 0;
        for (int i = 0; i < es->n; i++) k += es->items[i].pred_norm == es->items[i].answer;
        o->acc_norm = (double)k / n;
    }
    o->ece_lo = o->ece_hi = NAN;
    if (B > 0) {
        vm_metric_cls_ctx cx = { .kind = VM_METRIC_ECE, .C = C, .M = M, .p = s->p, .y = s->y };
        vm_boot bo;
        if (vm_metric_bootstrap(vm_metric_cls_fn, &cx, n, B, BOOT_LEVEL, seed, &bo)) return -1;
        o->ece_lo = bo.lo; o->ece_hi = bo.hi;
    }
    return 0;
}

static json_t *cls_json(const cls_metrics *c, int n) {
    json_t *j = json_object();
    json_object_set_new(j, "n", json_integer(n));
    json_object_set_new(j, "acc", jnum(c->acc));
    json_object_set_new(j, "acc_stderr", jnum(c->acc_stderr));
    json_object_set_new(j, "acc_norm", jnum(c->acc_norm));
    json_object_set_new(j, "nll", jnum(c->nll));
    json_object_set_new(j, "brier", jnum(c->brier));
    json_object_set_new(j, "ece", jnum(c->ece));
    json_t *ci = json_array();
    json_array_append_new(ci, jnum(c->ece_lo));
    json_array_append_new(ci, jnum(c->ece_hi));
    json_object_set_new(j, "ece_ci", ci);
    json_object_set_new(j, "mce", jnum(c->mce));
    json_object_set_new(j, "ece_adaptive", jnum(c->ece_adaptive));
    json_object_set_new(j, "ece_signed", jnum(c->ece_signed));
    json_object_set_new(j, "ece_classwise", jnum(c->ece_classwise));
    json_object_set_new(j, "aurc", jnum(c->aurc));
    return j;
}

typedef struct ood_metrics { double auroc, aupr, fpr95; int ok; } ood_metrics;

static int ood_compute(const mset *in, const mset *out, int k, ood_metrics *o) {
    o->ok = 0;
    o->auroc = o->aupr = o->fpr95 = NAN;
    double *a = score_col(in, k), *b = score_col(out, k);
    int rc = 0;
    if (a && b) {
        rc = vm_metric_auroc(in->n, a, out->n, b, &o->auroc) || vm_metric_aupr(in->n, a, out->n, b, &o->aupr) ||
             vm_metric_fpr95(in->n, a, out->n, b, &o->fpr95) ? -1 : 0;
        o->ok = rc == 0;
    }
    free(a); free(b);
    return rc;
}

// ---------------------------------------------------------------- the writer

typedef struct wctx {
    const vm_eval_write_opts *o;
    const char *dir;            // the temporary folder the set is written into (vm_adir)
    int n_sets, n_methods, loglik;
    const vm_eval_set *sets;
    method_t meth[MAX_METHODS];
    cls_metrics cm[MAX_METHODS];
    ood_metrics *om;            // (n_methods, n_sets, VM_EVAL_UNC_COUNT); set 0 unused
    vm_ece_bin *bins;           // (n_methods, M)
    char *qm[MAX_METHODS], **qs;   // method and set names as CSV fields (csv_quote)
} wctx;

#define OM(w, m, s, k) ((w)->om[((size_t)(m) * (w)->n_sets + (s)) * VM_EVAL_UNC_COUNT + (k)])

static int write_questions(wctx *w) {
    vm_afile a;
    if (afile_open_in(&a, w->dir, "questions.jsonl")) return -1;
    int rc = 0;
    for (int s = 0; s < w->n_sets && !rc; s++) {
        const vm_eval_set *es = &w->sets[s];
        for (int i = 0; i < es->n && !rc; i++) {
            const vm_eval_item *e = &es->items[i];
            json_t *j = json_object();
            json_object_set_new(j, "set", json_string(es->name));
            json_object_set_new(j, "id", json_string(e->id ? e->id : ""));
            json_object_set_new(j, "answer", json_integer(e->answer));
            json_object_set_new(j, "n_choices", json_integer(e->n_choices));
            json_object_set_new(j, "n_tokens", json_integer(e->n_tokens));
            if (w->loglik) {
                json_t *ll = json_array();
                for (int k = 0; k < e->n_choices; k++) json_array_append_new(ll, jnum(e->ll[k]));
                json_object_set_new(j, "ll", ll);
                json_object_set_new(j, "pred_norm", json_integer(e->pred_norm));
            }
            json_t *bm = json_object();
            for (int m = 0; m < w->n_methods; m++) {
                const mset *ms = &w->meth[m].sets[s];
                json_t *jm = json_object(), *p = json_array(), *sc = json_object();
                for (int k = 0; k < e->n_choices; k++) json_array_append_new(p, jnum(ms->p[(size_t)i * ms->C + k]));
                json_object_set_new(jm, "probs", p);
                json_object_set_new(jm, "pred", json_integer(ms->pred[i]));
                json_object_set_new(jm, "correct", json_boolean(ms->correct[i]));
                for (int k = 0; k < VM_EVAL_UNC_COUNT; k++)
                    json_object_set_new(sc, vm_eval_unc_name(k), jnum(ms->unc[(size_t)i * VM_EVAL_UNC_COUNT + k]));
                json_object_set_new(jm, "scores", sc);
                json_object_set_new(bm, w->meth[m].name, jm);
            }
            json_object_set_new(j, "methods", bm);
            char *line = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(17));
            json_decref(j);
            if (!line || fprintf(a.f, "%s\n", line) < 0) rc = vm_err("eval: cannot write questions.jsonl");
            free(line);
        }
    }
    if (rc) { vm_afile_abort(&a); return -1; }
    return vm_afile_commit(&a);
}

static json_t *stability_json(const vm_stability *st) {
    json_t *j = json_object(), *g = json_array(), *jm = json_array(), *ch = json_array(), *ly = json_array(),
           *pl = json_array();
    json_object_set_new(j, "L_bar", jnum(st->L_bar));
    json_object_set_new(j, "tokens", json_integer(st->n_tokens));
    json_object_set_new(j, "headline_gamma", json_real(VM_EVAL_GAMMA_HEADLINE));
    int hl = -1;
    for (int i = 0; i < st->n_gamma; i++) {
        json_array_append_new(g, jnum(st->gamma[i]));
        json_array_append_new(jm, jnum(st->jac_mean[i]));
        json_array_append_new(ch, jnum(st->changed[i]));
        json_t *row = json_array();
        for (int l = 0; l < st->n_layer; l++) json_array_append_new(row, jnum(st->jac[(size_t)i * st->n_layer + l]));
        json_array_append_new(pl, row);
        if (fabs(st->gamma[i] - VM_EVAL_GAMMA_HEADLINE) < 1e-12) hl = i;
    }
    for (int l = 0; l < st->n_layer; l++) json_array_append_new(ly, json_integer(st->layers[l]));
    json_object_set_new(j, "gamma", g);
    json_object_set_new(j, "jaccard_mean", jm);
    json_object_set_new(j, "changed_fraction", ch);
    json_object_set_new(j, "layers", ly);
    json_object_set_new(j, "jaccard_per_layer", pl);
    json_object_set_new(j, "jaccard_headline", hl >= 0 ? jnum(st->jac_mean[hl]) : json_null());
    return j;
}

static json_t *cost_json(const vm_cost *c) {
    json_t *j = json_object();
    json_object_set_new(j, "flops_per_token_base", jnum(c->flops_base));
    json_object_set_new(j, "flops_per_token_method", jnum(c->flops_method));
    json_object_set_new(j, "flops_router_base", jnum(c->flops_router_base));
    json_object_set_new(j, "flops_router_method", jnum(c->flops_router_method));
    json_object_set_new(j, "passes", json_integer(c->passes));
    json_object_set_new(j, "flops_ratio_per_pass", jnum(c->flops_method / c->flops_base));
    json_object_set_new(j, "flops_ratio_per_question", jnum(c->passes * c->flops_method / c->flops_base));
    json_object_set_new(j, "ctx_mean", jnum(c->ctx_mean));
    json_object_set_new(j, "params_base", json_integer(c->params_base));
    json_object_set_new(j, "params_extra", json_integer(c->params_extra));
    json_object_set_new(j, "sec_pass_base", jnum(c->sec_base));
    json_object_set_new(j, "sec_pass_method", jnum(c->sec_method));
    json_object_set_new(j, "time_ratio_per_pass", jnum(c->sec_method / c->sec_base));
    json_object_set_new(j, "time_ratio_per_question", jnum(c->passes * c->sec_method / c->sec_base));
    return j;
}

static int write_metrics(wctx *w, const vm_stability *st, const vm_cost *cost) {
    const vm_eval_write_opts *o = w->o;
    json_t *root = json_object(), *conv = json_object(), *cfg = json_object(), *res = json_object(),
           *ms = json_array();
    json_object_set_new(root, "format", json_string("vmoer-eval-1"));
    for (size_t i = 0; i < sizeof conventions / sizeof *conventions; i++)
        json_object_set_new(conv, conventions[i][0], json_string(conventions[i][1]));
    json_object_set_new(root, "conventions", conv);
#define SETS(k, v) json_object_set_new(cfg, k, (v) ? json_string(v) : json_null())
    SETS("model", o->model_path); SETS("adapter", o->adapter_path); SETS("data", o->data_path);
    SETS("router", o->router); SETS("score", o->score); SETS("val", o->val_path);
#undef SETS
    json_object_set_new(cfg, "passes", json_integer(o->passes));
    json_object_set_new(cfg, "bins", json_integer(o->bins));
    json_object_set_new(cfg, "boot", json_integer(o->boot));
    json_object_set_new(cfg, "seed", json_integer((json_int_t)o->seed));
    json_t *sets = json_object();
    for (int s = 0; s < w->n_sets; s++) {
        json_t *js = json_object();
        json_object_set_new(js, "n", json_integer(w->sets[s].n));
        json_object_set_new(js, "skipped", json_integer(w->sets[s].n_skipped));   // items that could not be built
        json_object_set_new(js, "seconds", jnum(w->sets[s].seconds));
        json_object_set_new(js, "tokens", json_integer(w->sets[s].n_tokens));
        json_object_set_new(sets, w->sets[s].name, js);
    }
    json_object_set_new(cfg, "sets", sets);
    json_object_set_new(root, "config", cfg);
    for (int m = 0; m < w->n_methods; m++) {
        json_array_append_new(ms, json_string(w->meth[m].name));
        json_t *jm = cls_json(&w->cm[m], w->sets[0].n), *ood = json_object();
        json_object_set_new(jm, "temperature", jnum(w->meth[m].T));
        for (int s = 1; s < w->n_sets; s++) {
            json_t *js = json_object();
            const mset *x = &w->meth[m].sets[s];
            int k = 0;
            for (int i = 0; i < x->n; i++) k += x->correct[i];
            json_object_set_new(js, "n", json_integer(x->n));
            json_object_set_new(js, "acc", jnum(x->n ? (double)k / x->n : NAN));
            for (int u = 0; u < VM_EVAL_UNC_COUNT; u++) {
                const ood_metrics *om = &OM(w, m, s, u);
                if (!om->ok) continue;
                json_t *ju = json_object();
                json_object_set_new(ju, "auroc", jnum(om->auroc));
                json_object_set_new(ju, "aupr", jnum(om->aupr));
                json_object_set_new(ju, "fpr95", jnum(om->fpr95));
                json_object_set_new(js, vm_eval_unc_name(u), ju);
            }
            json_object_set_new(ood, w->sets[s].name, js);
        }
        json_object_set_new(jm, "ood", ood);
        json_object_set_new(res, w->meth[m].name, jm);
    }
    json_object_set_new(root, "methods", ms);
    json_object_set_new(root, "results", res);
    if (st) json_object_set_new(root, "stability", stability_json(st));
    if (cost) json_object_set_new(root, "cost", cost_json(cost));
    int rc = write_json(w->dir, "metrics.json", root);
    json_decref(root);
    return rc;
}

// metrics.csv (long format), reliability.csv, risk_coverage.csv, roc.csv, ood.csv, stability.csv,
// and curves.json (the same curves for `vmoer compare`).
static int write_tables(wctx *w, const vm_stability *st, json_t *curves) {
    const char *dir = w->dir;
    const int M = w->o->bins;
    vm_afile a;
    // metrics.csv
    if (afile_open_in(&a, dir, "metrics.csv")) return -1;
    fprintf(a.f, "method,set,metric,value\n");
    for (int m = 0; m < w->n_methods; m++) {
        const cls_metrics *c = &w->cm[m];
        const char *nm = w->qm[m], *sn = w->qs[0];
        const struct { const char *k; double v; } rows[] = {
            { "acc", c->acc }, { "acc_stderr", c->acc_stderr }, { "acc_norm", c->acc_norm }, { "nll", c->nll },
            { "brier", c->brier }, { "ece", c->ece }, { "ece_lo", c->ece_lo }, { "ece_hi", c->ece_hi },
            { "mce", c->mce }, { "ece_adaptive", c->ece_adaptive }, { "ece_signed", c->ece_signed },
            { "ece_classwise", c->ece_classwise }, { "aurc", c->aurc }, { "temperature", w->meth[m].T } };
        for (size_t r = 0; r < sizeof rows / sizeof *rows; r++)
            if (isfinite(rows[r].v)) fprintf(a.f, "%s,%s,%s,%.10g\n", nm, sn, rows[r].k, rows[r].v);
        for (int s = 1; s < w->n_sets; s++)
            for (int u = 0; u < VM_EVAL_UNC_COUNT; u++) {
                const ood_metrics *om = &OM(w, m, s, u);
                if (!om->ok) continue;
                fprintf(a.f, "%s,%s,auroc_%s,%.10g\n", nm, w->qs[s], vm_eval_unc_name(u), om->auroc);
                fprintf(a.f, "%s,%s,aupr_%s,%.10g\n", nm, w->qs[s], vm_eval_unc_name(u), om->aupr);
                fprintf(a.f, "%s,%s,fpr95_%s,%.10g\n", nm, w->qs[s], vm_eval_unc_name(u), om->fpr95);
            }
    }
    if (vm_afile_commit(&a)) return -1;
    // reliability.csv
    json_t *jrel = json_object(), *jrc = json_object(), *jroc = json_object();
    json_object_set_new(curves, "reliability", jrel);
    json_object_set_new(curves, "risk_coverage", jrc);
    json_object_set_new(curves, "roc", jroc);
    if (afile_open_in(&a, dir, "reliability.csv")) return -1;
    fprintf(a.f, "method,bin,lo,hi,count,acc,conf\n");
    for (int m = 0; m < w->n_methods; m++) {
        json_t *x = json_array(), *y = json_array(), *cnt = json_array();
        for (int b = 0; b < M; b++) {
            const vm_ece_bin *e = &w->bins[(size_t)m * M + b];
            fprintf(a.f, "%s,%d,%.6g,%.6g,%d,%.10g,%.10g\n", w->qm[m], b, (double)b / M, (double)(b + 1) / M,
                    e->count, e->acc, e->conf);
            json_array_append_new(x, jnum(e->count ? e->conf : NAN));
            json_array_append_new(y, jnum(e->count ? e->acc : NAN));
            json_array_append_new(cnt, json_integer(e->count));
        }
        json_t *jm = json_object();
        json_object_set_new(jm, "x", x); json_object_set_new(jm, "y", y); json_object_set_new(jm, "count", cnt);
        json_object_set_new(jrel, w->meth[m].name, jm);
    }
    if (vm_afile_commit(&a)) return -1;
    // risk_coverage.csv
    if (afile_open_in(&a, dir, "risk_coverage.csv")) return -1;
    fprintf(a.f, "method,coverage,risk\n");
    int rc = 0;
    for (int m = 0; m < w->n_methods && !rc; m++) {
        const mset *s = &w->meth[m].sets[0];
        double *cov = vm_malloc((size_t)s->n * sizeof(double)), *risk = vm_malloc((size_t)s->n * sizeof(double));
        int np = 0;
        if (!cov || !risk || vm_metric_risk_coverage(s->n, s->conf, s->loss, cov, risk, &np)) rc = -1;
        json_t *x = json_array(), *y = json_array();
        for (int i = 0; i < np && !rc; i++) {
            fprintf(a.f, "%s,%.10g,%.10g\n", w->qm[m], cov[i], risk[i]);
            json_array_append_new(x, jnum(cov[i])); json_array_append_new(y, jnum(risk[i]));
        }
        json_t *jm = json_object();
        json_object_set_new(jm, "x", x); json_object_set_new(jm, "y", y);
        json_object_set_new(jrc, w->meth[m].name, jm);
        free(cov); free(risk);
    }
    if (rc || vm_afile_commit(&a)) { if (rc) vm_afile_abort(&a); return -1; }
    // roc.csv and ood.csv
    vm_afile b;
    if (afile_open_in(&a, dir, "roc.csv")) return -1;
    if (afile_open_in(&b, dir, "ood.csv")) { vm_afile_abort(&a); return -1; }
    fprintf(a.f, "method,set,score,fpr,tpr,threshold\n");
    fprintf(b.f, "method,set,score,auroc,aupr,fpr95\n");
    for (int s = 1; s < w->n_sets && !rc; s++) {
        json_t *jset = json_object();
        json_object_set_new(jroc, w->sets[s].name, jset);
        for (int m = 0; m < w->n_methods && !rc; m++)
            for (int u = 0; u < VM_EVAL_UNC_COUNT && !rc; u++) {
                const ood_metrics *om = &OM(w, m, s, u);
                if (!om->ok) continue;
                const mset *in = &w->meth[m].sets[0], *out = &w->meth[m].sets[s];
                fprintf(b.f, "%s,%s,%s,%.10g,%.10g,%.10g\n", w->qm[m], w->qs[s],
                        vm_eval_unc_name(u), om->auroc, om->aupr, om->fpr95);
                double *si = score_col(in, u), *so = score_col(out, u);
                const size_t np1 = (size_t)in->n + out->n + 1;
                double *fpr = vm_malloc(np1 * sizeof(double)), *tpr = vm_malloc(np1 * sizeof(double)),
                       *thr = vm_malloc(np1 * sizeof(double));
                int np = 0;
                if (!si || !so || !fpr || !tpr || !thr || vm_metric_roc(in->n, si, out->n, so, fpr, tpr, thr, &np)) rc = -1;
                json_t *x = json_array(), *y = json_array();
                for (int i = 0; i < np && !rc; i++) {
                    fprintf(a.f, "%s,%s,%s,%.10g,%.10g,%.10g\n", w->qm[m], w->qs[s],
                            vm_eval_unc_name(u), fpr[i], tpr[i], thr[i]);
                    json_array_append_new(x, jnum(fpr[i])); json_array_append_new(y, jnum(tpr[i]));
                }
                char label[160];
                snprintf(label, sizeof label, "%s %s", w->meth[m].name, vm_eval_unc_name(u));
                json_t *jc = json_object();
                json_object_set_new(jc, "x", x); json_object_set_new(jc, "y", y);
                json_object_set_new(jset, label, jc);
                free(si); free(so); free(fpr); free(tpr); free(thr);
            }
    }
    if (rc) { vm_afile_abort(&a); vm_afile_abort(&b); return -1; }
    if (vm_afile_commit(&a)) { vm_afile_abort(&b); return -1; }
    if (vm_afile_commit(&b)) return -1;
    // stability.csv
    if (st) {
        if (afile_open_in(&a, dir, "stability.csv")) return -1;
        fprintf(a.f, "gamma,layer,jaccard,changed_fraction\n");
        json_t *x = json_array(), *y = json_array();
        for (int g = 0; g < st->n_gamma; g++) {
            fprintf(a.f, "%.10g,mean,%.10g,%.10g\n", st->gamma[g], st->jac_mean[g], st->changed[g]);
            for (int l = 0; l < st->n_layer; l++)
                fprintf(a.f, "%.10g,%d,%.10g,\n", st->gamma[g], st->layers[l], st->jac[(size_t)g * st->n_layer + l]);
            json_array_append_new(x, jnum(st->gamma[g])); json_array_append_new(y, jnum(st->jac_mean[g]));
        }
        json_t *jj = json_object();
        json_object_set_new(jj, "x", x); json_object_set_new(jj, "y", y);
        json_object_set_new(curves, "jaccard", jj);
        if (vm_afile_commit(&a)) return -1;
    }
    return 0;
}

// ---------------------------------------------------------------- report.html

static int add_id_table(vm_report *r, wctx *w) {
    static const char *cols[] = { "acc", "acc_norm", "nll", "brier", "ece", "mce", "ece_adaptive", "ece_signed",
                                  "ece_classwise", "aurc", "T" };
    static const signed char better[] = { 1, 1, -1, -1, -1, -1, -1, 0, -1, -1, 0 };
    enum { NC = sizeof cols / sizeof *cols };
    double v[MAX_METHODS * NC], lo[MAX_METHODS * NC], hi[MAX_METHODS * NC];
    const char *rows[MAX_METHODS];
    for (int m = 0; m < w->n_methods; m++) {
        const cls_metrics *c = &w->cm[m];
        const double x[NC] = { c->acc, c->acc_norm, c->nll, c->brier, c->ece, c->mce, c->ece_adaptive,
                               c->ece_signed, c->ece_classwise, c->aurc, w->meth[m].T };
        rows[m] = w->meth[m].name;
        for (int k = 0; k < NC; k++) { v[m * NC + k] = x[k]; lo[m * NC + k] = hi[m * NC + k] = NAN; }
        lo[m * NC + 4] = c->ece_lo; hi[m * NC + 4] = c->ece_hi;
    }
    char cap[256];
    snprintf(cap, sizeof cap, "In-distribution (%s, n = %d): ECE with %d bins, [95%% bootstrap interval]",
             w->sets[0].name, w->sets[0].n, w->o->bins);
    vm_table t = { .caption = cap, .n_rows = w->n_methods, .n_cols = NC, .row_names = rows, .col_names = cols,
                   .values = v, .lo = lo, .hi = hi, .better = better };
    return vm_report_table(r, &t);
}

static int add_ood(vm_report *r, wctx *w) {
    for (int s = 1; s < w->n_sets; s++) {
        const char *rows[MAX_METHODS * VM_EVAL_UNC_COUNT];
        char names[MAX_METHODS * VM_EVAL_UNC_COUNT][128];
        double v[MAX_METHODS * VM_EVAL_UNC_COUNT * 3];
        static const char *cols[] = { "AUROC", "AUPR", "FPR@95" };
        static const signed char better[] = { 1, 1, -1 };
        int nr = 0;
        vm_curve cv[MAX_METHODS * VM_EVAL_UNC_COUNT];
        double *bufs[MAX_METHODS * VM_EVAL_UNC_COUNT * 2];
        int nb = 0, rc = 0;
        for (int m = 0; m < w->n_methods; m++)
            for (int u = 0; u < VM_EVAL_UNC_COUNT; u++) {
                const ood_metrics *om = &OM(w, m, s, u);
                if (!om->ok) continue;
                snprintf(names[nr], sizeof names[nr], "%s · %s", w->meth[m].name, vm_eval_unc_name(u));
                rows[nr] = names[nr];
                v[nr * 3] = om->auroc; v[nr * 3 + 1] = om->aupr; v[nr * 3 + 2] = om->fpr95;
                const mset *in = &w->meth[m].sets[0], *out = &w->meth[m].sets[s];
                double *si = score_col(in, u), *so = score_col(out, u);
                const size_t np1 = (size_t)in->n + out->n + 1;
                double *fpr = vm_malloc(np1 * sizeof(double)), *tpr = vm_malloc(np1 * sizeof(double)),
                       *thr = vm_malloc(np1 * sizeof(double));
                int np = 0;
                if (!si || !so || !fpr || !tpr || !thr || vm_metric_roc(in->n, si, out->n, so, fpr, tpr, thr, &np)) rc = -1;
                free(si); free(so); free(thr);
                bufs[nb++] = fpr; bufs[nb++] = tpr;
                cv[nr] = (vm_curve){ .label = names[nr], .n = rc ? 0 : np, .x = fpr, .y = tpr };
                nr++;
            }
        char cap[256], title[256];
        snprintf(cap, sizeof cap, "OOD detection: %s (n = %d) vs %s (n = %d)", w->sets[s].name, w->sets[s].n,
                 w->sets[0].name, w->sets[0].n);
        snprintf(title, sizeof title, "ROC: %s vs %s", w->sets[s].name, w->sets[0].name);
        vm_table t = { .caption = cap, .row_header = "method · score", .n_rows = nr, .n_cols = 3,
                       .row_names = rows, .col_names = cols, .values = v, .better = better };
        if (!rc && nr > 0) rc = vm_report_table(r, &t) || vm_report_curves(r, VM_FIG_ROC, title, nr, cv) ? -1 : 0;
        for (int i = 0; i < nb; i++) free(bufs[i]);
        if (rc) return -1;
    }
    return 0;
}

static int add_stability(vm_report *r, const vm_stability *st, const char *mname) {
    char txt[512];
    int hl = -1;
    for (int g = 0; g < st->n_gamma; g++) if (fabs(st->gamma[g] - VM_EVAL_GAMMA_HEADLINE) < 1e-12) hl = g;
    snprintf(txt, sizeof txt, "L_bar = %.4g (mean embedding norm over %lld prompt tokens). Headline gamma = 0.01: "
             "mean Jaccard %s.", st->L_bar, st->n_tokens, hl >= 0 ? "" : "n/a (0.01 is not in the grid)");
    if (hl >= 0) {
        char *e = strstr(txt, "Jaccard ") + 8;
        snprintf(e, sizeof txt - (size_t)(e - txt), "%.4f, %.2f%% of (token, layer) sets changed.",
                 st->jac_mean[hl], 100.0 * st->changed[hl]);
    }
    vm_curve c = { .label = mname, .n = st->n_gamma, .x = st->gamma, .y = st->jac_mean };
    if (vm_report_text(r, txt) || vm_report_curves(r, VM_FIG_JACCARD_NOISE, "Mean Jaccard vs noise level", 1, &c))
        return -1;
    int g = hl >= 0 ? hl : st->n_gamma - 1;
    char title[128], names[64][16];
    const char *lnames[64];
    const int nl = st->n_layer < 64 ? st->n_layer : 64;
    for (int l = 0; l < nl; l++) { snprintf(names[l], sizeof names[l], "%d", st->layers[l]); lnames[l] = names[l]; }
    snprintf(title, sizeof title, "Per-layer mean Jaccard at gamma = %g", st->gamma[g]);
    vm_curve lc = { .label = mname, .n = nl, .x = NULL, .y = st->jac + (size_t)g * st->n_layer };
    return vm_report_layer_bars(r, title, "mean Jaccard", nl, lnames, 1, &lc);
}

static int add_cost(vm_report *r, const vm_cost *c, const char *mname) {
    static const char *cols[] = { "MFLOP/token", "router MFLOP/token", "FLOP ratio/pass", "passes",
                                  "FLOP ratio/question", "extra params", "time ratio/pass", "time ratio/question" };
    static const int digits[] = { 4, 4, 4, 0, 4, 0, 3, 3 };
    double v[2 * 8] = {
        c->flops_base * 1e-6, c->flops_router_base * 1e-6, 1, 1, 1, 0, 1, 1,
        c->flops_method * 1e-6, c->flops_router_method * 1e-6, c->flops_method / c->flops_base, c->passes,
        c->passes * c->flops_method / c->flops_base, (double)c->params_extra, c->sec_method / c->sec_base,
        c->passes * c->sec_method / c->sec_base };
    const char *rows[2] = { "deterministic (reference)", mname };
    char cap[200];
    snprintf(cap, sizeof cap, "Cost per token (attention span %.1f tokens; %lld model parameters)", c->ctx_mean,
             c->params_base);
    vm_table t = { .caption = cap, .n_rows = 2, .n_cols = 8, .row_names = rows, .col_names = cols, .values = v,
                   .digits = digits };
    return vm_report_table(r, &t);
}

static int write_report(wctx *w, const vm_stability *st, const vm_cost *cost) {
    char title[512];
    snprintf(title, sizeof title, "vmoer eval: %s on %s (%s scoring)", w->meth[0].name, w->sets[0].name,
             w->o->score ? w->o->score : "letter");
    vm_report *r = vm_report_init(title);
    if (!r) return -1;
    int rc = 0;
    char txt[2048];
    snprintf(txt, sizeof txt, "model %s%s%s\ndata %s\nrouter %s, %d pass(es) per question, seed %llu, "
             "%d ECE bins, %d bootstrap replicates%s%s\nConventions are named in metrics.json.",
             w->o->model_path ? w->o->model_path : "?", w->o->adapter_path ? ", adapter " : "",
             w->o->adapter_path ? w->o->adapter_path : "", w->o->data_path ? w->o->data_path : "?",
             w->meth[0].name, w->o->passes, (unsigned long long)w->o->seed, w->o->bins, w->o->boot,
             w->o->val_path ? ", temperature scaling fitted on " : "", w->o->val_path ? w->o->val_path : "");
    rc |= vm_report_section(r, "Summary") || vm_report_text(r, txt) || add_id_table(r, w);
    rc |= vm_report_section(r, "Calibration");
    for (int m = 0; m < w->n_methods && !rc; m++) {
        char t[200];
        snprintf(t, sizeof t, "Reliability: %s (ECE %.3f)", w->meth[m].name, w->cm[m].ece);
        const int M = w->o->bins;
        int cnt[M];
        double acc[M], conf[M];
        rc |= vm_ece_bins_split(M, w->bins + (size_t)m * M, cnt, acc, conf) ||
              vm_report_reliability(r, t, M, cnt, acc, conf);
    }
    vm_conf_set cs[MAX_METHODS];
    for (int m = 0; m < w->n_methods; m++)
        cs[m] = (vm_conf_set){ .label = w->meth[m].name, .n = w->meth[m].sets[0].n, .conf = w->meth[m].sets[0].conf,
                               .correct = w->n_methods == 1 ? w->meth[m].sets[0].correct : NULL };
    if (!rc) rc |= vm_report_conf_hist(r, "Confidence histogram", w->o->bins, w->n_methods, cs);
    vm_curve rcv[MAX_METHODS];
    double *bufs[2 * MAX_METHODS] = {0};
    for (int m = 0; m < w->n_methods && !rc; m++) {
        const mset *s = &w->meth[m].sets[0];
        bufs[2 * m] = vm_malloc((size_t)s->n * sizeof(double));
        bufs[2 * m + 1] = vm_malloc((size_t)s->n * sizeof(double));
        int np = 0;
        if (!bufs[2 * m] || !bufs[2 * m + 1] ||
            vm_metric_risk_coverage(s->n, s->conf, s->loss, bufs[2 * m], bufs[2 * m + 1], &np)) rc = -1;
        rcv[m] = (vm_curve){ .label = w->meth[m].name, .n = np, .x = bufs[2 * m], .y = bufs[2 * m + 1] };
    }
    if (!rc) rc |= vm_report_curves(r, VM_FIG_RISK_COVERAGE, "Risk-coverage (max-prob confidence)", w->n_methods, rcv);
    for (int i = 0; i < 2 * MAX_METHODS; i++) free(bufs[i]);
    if (!rc && w->n_sets > 1) rc |= vm_report_section(r, "OOD detection") || add_ood(r, w);
    if (!rc && st) rc |= vm_report_section(r, "Routing stability under embedding noise") || add_stability(r, st, w->meth[0].name);
    if (!rc && cost) rc |= vm_report_section(r, "Cost") || add_cost(r, cost, w->meth[0].name);
    char *path = join(w->dir, "report.html");
    if (!rc && path) rc = vm_report_write(r, path);
    free(path);
    vm_report_free(r);
    return rc ? -1 : 0;
}

int vm_eval_write(const vm_eval_write_opts *o, int n_sets, const vm_eval_set *sets,
                  const vm_eval_set *val, const vm_stability *st, const vm_cost *cost) {
    if (!o || !o->outdir || n_sets < 1 || !sets || sets[0].n < 1) return vm_err("eval: nothing to write");
    if (o->bins < 1 || o->bins > 1000) return vm_err("eval: %d ECE bins", o->bins);
    if (o->distributed && vm_dist_rank() != 0) return 0;   // every rank holds the same sets: one writes
    vm_adir out;
    if (vm_adir_open(&out, o->outdir, vm_eval_output_names)) return vm_err_prefix("eval");
    wctx w = { .o = o, .dir = out.tmp, .n_sets = n_sets, .sets = sets, .n_methods = 1,
               .loglik = o->score && (!strcmp(o->score, "loglik") || !strcmp(o->score, "loglik-raw")) };
    snprintf(w.meth[0].name, sizeof w.meth[0].name, "%s", o->router ? o->router : "model");
    w.meth[0].T = NAN;
    int rc = 0;
    if (val && val->n > 0) {   // temperature scaling: T fitted on the validation set's log p_bar
        int C = 1;
        for (int i = 0; i < val->n; i++) if (val->items[i].n_choices > C) C = val->items[i].n_choices;
        double *z = vm_malloc((size_t)val->n * C * sizeof(double));
        int *y = vm_malloc((size_t)val->n * sizeof(int));
        double T = NAN;
        if (!z || !y) rc = -1;
        for (int i = 0; i < val->n && !rc; i++) {
            for (int k = 0; k < C; k++)   // missing choices: a logit far below any real one
                z[(size_t)i * C + k] = k < val->items[i].n_choices ? val->items[i].logp[k] : -1e4;
            y[i] = val->items[i].answer;
        }
        if (!rc && vm_temp_fit(val->n, C, z, y, &T)) rc = -1;
        free(z); free(y);
        if (rc) { vm_adir_abort(&out); return vm_err_prefix("eval: temperature scaling on %s", val->name); }
        w.n_methods = 2;
        snprintf(w.meth[1].name, sizeof w.meth[1].name, "%.80s+ts", w.meth[0].name);
        w.meth[1].T = T;
    }
    w.qs = vm_calloc((size_t)n_sets, sizeof *w.qs);
    for (int m = 0; m < w.n_methods && !rc; m++) if (!(w.qm[m] = csv_quote(w.meth[m].name))) rc = -1;
    for (int s = 0; s < n_sets && w.qs && !rc; s++) if (!(w.qs[s] = csv_quote(sets[s].name))) rc = -1;
    if (!w.qs) rc = -1;
    w.om = vm_calloc((size_t)w.n_methods * n_sets * VM_EVAL_UNC_COUNT, sizeof *w.om);
    w.bins = vm_calloc((size_t)w.n_methods * o->bins, sizeof *w.bins);
    if (!w.om || !w.bins) rc = -1;
    for (int m = 0; m < w.n_methods && !rc; m++) {
        if (!(w.meth[m].sets = vm_calloc((size_t)n_sets, sizeof(mset)))) { rc = -1; break; }
        for (int s = 0; s < n_sets && !rc; s++)
            if (sets[s].n > 0) rc = mset_fill(&w.meth[m].sets[s], &sets[s], m ? w.meth[m].T : 0);
        if (rc) break;
        const mset *id = &w.meth[m].sets[0];
        rc = cls_compute(id, &sets[0], w.loglik, o->bins, o->boot, o->seed, &w.cm[m]) ||
             vm_ece_reliability(id->n, id->C, id->p, id->y, o->bins, w.bins + (size_t)m * o->bins) ? -1 : 0;
        for (int s = 1; s < n_sets && !rc; s++)
            for (int u = 0; u < VM_EVAL_UNC_COUNT && !rc; u++)
                if (sets[s].n > 0) rc = ood_compute(id, &w.meth[m].sets[s], u, &OM(&w, m, s, u));
    }
    json_t *curves = json_object();
    if (!rc) rc = write_questions(&w);
    if (!rc) rc = write_tables(&w, st, curves);
    if (!rc) rc = write_json(w.dir, "curves.json", curves);
    if (!rc) rc = write_metrics(&w, st, cost);
    if (!rc) rc = write_report(&w, st, cost);
    if (!rc) rc = vm_adir_commit(&out);   // the whole set in one step: never a mix of two runs
    else vm_adir_abort(&out);
    json_decref(curves);
    for (int m = 0; m < w.n_methods; m++) {
        if (!w.meth[m].sets) continue;
        for (int s = 0; s < n_sets; s++) mset_free(&w.meth[m].sets[s]);
        free(w.meth[m].sets);
    }
    free(w.om); free(w.bins);
    for (int m = 0; m < MAX_METHODS; m++) free(w.qm[m]);
    for (int s = 0; w.qs && s < n_sets; s++) free(w.qs[s]);
    free(w.qs);
    return rc ? vm_err_prefix("eval: writing %s", o->outdir) : 0;
}

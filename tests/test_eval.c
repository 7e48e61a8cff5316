// vmoer eval as a library: the embedding-noise hook, scoring with read-outs (deterministic and
// sampled routers; the tree scorer against sequence-by-sequence scoring and traced read-outs in
// letter, loglik and pmi modes), routing stability, cost, and the outputs. `test_eval --check OUTDIR` re-derives
// metrics.json from questions.jsonl with independent code (used by tests/cli/eval.sh on a real run).
#include "test.h"

#include "convert/convert.h"
#include "data/dataset.h"
#include "data/task.h"
#include "eval/task_score.h"
#include "eval/eval.h"
#include "model/model.h"
#include "router/router.h"
#include "tokenizer/tokenizer.h"
#include "util/err.h"

#include <jansson.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// ---------------------------------------------------------------- independent recomputation

typedef struct row { double p[8]; int C, y; double score[8]; } row;
static const char *const score_names[] = { "entropy", "neg_maxprob", "mi", "ilv", "gate_entropy", "temperature",
                                           "base_gate_entropy" };
enum { NS = 7 };

static double jd(const json_t *j) { return json_is_number(j) ? json_number_value(j) : NAN; }

static int cmp_desc(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

// Rows of one (set, method) from questions.jsonl.
static int read_rows(const char *dir, const char *set, const char *method, row *rows, int max) {
    char path[1024];
    snprintf(path, sizeof path, "%s/questions.jsonl", dir);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char *line = NULL;
    size_t cap = 0;
    int n = 0;
    while (getline(&line, &cap, f) > 0 && n < max) {
        json_t *j = json_loads(line, 0, NULL);
        if (!j) { n = -1; break; }
        json_t *m = json_object_get(json_object_get(j, "methods"), method);
        if (!strcmp(json_string_value(json_object_get(j, "set")), set) && m) {
            row *r = &rows[n++];
            json_t *p = json_object_get(m, "probs");
            r->C = (int)json_array_size(p);
            r->y = (int)json_integer_value(json_object_get(j, "answer"));
            for (int k = 0; k < r->C && k < 8; k++) r->p[k] = jd(json_array_get(p, (size_t)k));
            for (int s = 0; s < NS; s++) r->score[s] = jd(json_object_get(json_object_get(m, "scores"), score_names[s]));
        }
        json_decref(j);
    }
    free(line);
    fclose(f);
    return n;
}

static int top(const row *r) { int b = 0; for (int k = 1; k < r->C; k++) if (r->p[k] > r->p[b]) b = k; return b; }

// Checks metrics.json against the rows; returns the number of methods checked.
static int check_outdir(const char *dir) {
    char path[1024];
    static const char *files[] = { "questions.jsonl", "metrics.json", "metrics.csv", "reliability.csv",
                                   "risk_coverage.csv", "roc.csv", "ood.csv", "curves.json", "report.html" };
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        CHECK(stat(path, &st) == 0 && st.st_size > 0, "%s missing or empty", path);
    }
    snprintf(path, sizeof path, "%s/metrics.json", dir);
    json_t *mj = json_load_file(path, 0, NULL);
    CHECK(mj != NULL, "metrics.json does not parse");
    if (!mj) return 0;
    const int M = (int)json_integer_value(json_object_get(json_object_get(mj, "config"), "bins"));
    CHECK(M == 10 || M == 15, "bins %d", M);
    CHECK(json_is_string(json_object_get(json_object_get(mj, "conventions"), "ece")), "conventions named");
    json_t *methods = json_object_get(mj, "methods");
    static row in[4096], out[4096];
    int n_methods = 0;
    for (size_t mi = 0; mi < json_array_size(methods); mi++) {
        const char *mname = json_string_value(json_array_get(methods, mi));
        json_t *res = json_object_get(json_object_get(mj, "results"), mname);
        const int n = read_rows(dir, "id", mname, in, 4096);
        CHECK(n > 0 && n == json_integer_value(json_object_get(res, "n")), "%s: %d rows", mname, n);
        if (n <= 0) continue;
        n_methods++;
        double acc = 0, nll = 0, brier = 0, cnt[15] = {0}, sc[15] = {0}, sa[15] = {0};
        double conf[4096], loss[4096];
        for (int i = 0; i < n; i++) {
            const row *r = &in[i];
            const int b = top(r);
            double sum = 0;
            for (int k = 0; k < r->C; k++) {
                sum += r->p[k];
                brier += (r->p[k] - (k == r->y)) * (r->p[k] - (k == r->y));
            }
            CHECK(fabs(sum - 1.0) < 1e-6, "%s row %d sums to %g", mname, i, sum);
            acc += b == r->y;
            nll += -log(r->p[r->y] > 1e-12 ? r->p[r->y] : 1e-12);
            int bin = (int)floor(r->p[b] * M);
            if (bin > M - 1) bin = M - 1;
            cnt[bin]++; sc[bin] += r->p[b]; sa[bin] += b == r->y;
            conf[i] = r->p[b]; loss[i] = b != r->y;
        }
        double ece = 0, mce = 0;
        for (int m = 0; m < M; m++)
            if (cnt[m] > 0) {
                const double g = fabs(sa[m] / cnt[m] - sc[m] / cnt[m]);
                ece += cnt[m] / n * g;
                if (g > mce) mce = g;
            }
        // AURC: sort by confidence descending, tie groups whole, mean selective risk
        int idx[4096];
        for (int i = 0; i < n; i++) idx[i] = i;
        for (int i = 1; i < n; i++)   // insertion sort by conf descending (stable)
            for (int j = i; j > 0 && conf[idx[j]] > conf[idx[j - 1]]; j--) { int t = idx[j]; idx[j] = idx[j - 1]; idx[j - 1] = t; }
        double aurc = 0, lsum = 0;
        for (int i = 0; i < n;) {
            int j = i;
            while (j < n && conf[idx[j]] == conf[idx[i]]) lsum += loss[idx[j++]];
            aurc += (double)(j - i) / n * (lsum / j);
            i = j;
        }
        CHECK_NEAR(jd(json_object_get(res, "acc")), acc / n, 1e-9, "acc");
        CHECK_NEAR(jd(json_object_get(res, "nll")), nll / n, 1e-7, "nll");
        CHECK_NEAR(jd(json_object_get(res, "brier")), brier / n, 1e-7, "brier");
        CHECK_NEAR(jd(json_object_get(res, "ece")), ece, 1e-7, "ece");
        CHECK_NEAR(jd(json_object_get(res, "mce")), mce, 1e-7, "mce");
        CHECK_NEAR(jd(json_object_get(res, "aurc")), aurc, 1e-7, "aurc");
        json_t *ci = json_object_get(res, "ece_ci");
        // (a percentile interval of ECE need not contain the point: resampled ECE is biased upwards)
        const double lo = jd(json_array_get(ci, 0)), hi = jd(json_array_get(ci, 1));
        CHECK(lo >= 0 && lo <= hi && hi <= 1, "%s: ece interval [%g, %g]", mname, lo, hi);
        // OOD: AUROC by counting pairs, for every score given
        const char *setname;
        json_t *js;
        int n_ood = 0;
        json_object_foreach(json_object_get(res, "ood"), setname, js) {
            const int no = read_rows(dir, setname, mname, out, 4096);
            CHECK(no > 0, "%s: no rows of %s", mname, setname);
            n_ood++;
            for (int s = 0; s < NS; s++) {
                json_t *jsc = json_object_get(js, score_names[s]);
                int finite = 1;
                for (int i = 0; i < n; i++) finite &= isfinite(in[i].score[s]);
                for (int i = 0; i < no; i++) finite &= isfinite(out[i].score[s]);
                CHECK(finite == (jsc != NULL), "%s %s %s: given %d, finite %d", mname, setname, score_names[s], jsc != NULL, finite);
                if (!jsc || !finite) continue;
                double u = 0;
                for (int i = 0; i < n; i++)
                    for (int o = 0; o < no; o++)
                        u += out[o].score[s] > in[i].score[s] ? 1.0 : out[o].score[s] == in[i].score[s] ? 0.5 : 0.0;
                CHECK_NEAR(jd(json_object_get(jsc, "auroc")), u / ((double)n * no), 1e-7, "auroc");
                // FPR@95 from the sorted out scores: threshold = largest t with TPR >= 0.95
                double so[4096];
                for (int o = 0; o < no; o++) so[o] = out[o].score[s];
                qsort(so, (size_t)no, sizeof *so, cmp_desc);
                const int need = (19 * no + 19) / 20;   // smallest tp with 20 tp >= 19 n_out
                const double t = so[need - 1];
                int fp = 0;
                for (int i = 0; i < n; i++) fp += in[i].score[s] >= t;
                CHECK_NEAR(jd(json_object_get(jsc, "fpr95")), (double)fp / n, 1e-9, "fpr95");
            }
        }
        (void)n_ood;
    }
    // stability: Jaccard 1 at gamma 0 for a deterministic router (a stochastic one's clean and noisy
    // passes draw from independent streams: below 1 there too), falling with gamma
    json_t *st = json_object_get(mj, "stability");
    const char *rk = json_string_value(json_object_get(json_object_get(mj, "config"), "router"));
    const int stochastic = !rk || vm_eval_kind_sampled(rk) || !strcmp(rk, "mixed");
    if (st) {
        json_t *g = json_object_get(st, "gamma"), *jm = json_object_get(st, "jaccard_mean");
        const int ng = (int)json_array_size(g);
        CHECK(ng >= 3 && json_array_size(jm) == (size_t)ng, "stability grid of %d", ng);
        for (int i = 0; i < ng; i++) {
            const double gi = jd(json_array_get(g, (size_t)i)), ji = jd(json_array_get(jm, (size_t)i));
            CHECK(ji >= 0 && ji <= 1, "jaccard %g", ji);
            if (gi == 0 && !stochastic) CHECK(ji == 1.0, "Jaccard at gamma 0 is %.17g", ji);
            if (i > 0) CHECK(ji <= jd(json_array_get(jm, (size_t)i - 1)) + 0.01, "Jaccard rises at gamma %g", gi);
        }
        if (ng >= 2) CHECK(jd(json_array_get(jm, (size_t)ng - 1)) < jd(json_array_get(jm, 1)),
                           "Jaccard does not fall over the grid");
        snprintf(path, sizeof path, "%s/stability.csv", dir);
        struct stat sst;
        CHECK(stat(path, &sst) == 0 && sst.st_size > 0, "stability.csv");
    }
    json_t *cost = json_object_get(mj, "cost");
    CHECK(cost && jd(json_object_get(cost, "flops_per_token_method")) >= jd(json_object_get(cost, "flops_per_token_base")),
          "cost block");
    json_decref(mj);
    return n_methods;
}

// ---------------------------------------------------------------- unit tests on stories260K

static const char items_jsonl[] =
    "{\"question\": \"What does a cat say?\", \"choices\": [\"meow\", \"moo\", \"quack\", \"woof\"], \"answer\": 0}\n"
    "{\"question\": \"Which is a color?\", \"choices\": [\"red\", \"run\", \"tree\", \"sun\"], \"answer\": 0}\n"
    "{\"question\": \"Lily has a ball. What does she do?\", \"choices\": [\"play\", \"sleep\", \"eat\"], \"answer\": 0}\n"
    "{\"question\": \"The sky is?\", \"choices\": [\"green\", \"blue\", \"hot\", \"wet\"], \"answer\": 1}\n"
    "{\"question\": \"A dog can?\", \"choices\": [\"fly\", \"read\", \"run\", \"sing\"], \"answer\": 2}\n"
    "{\"question\": \"Tom was sad. Why?\", \"choices\": [\"he lost his toy\", \"he won\", \"it was fun\", \"he ate cake\"], \"answer\": 0}\n";

// Read-outs at one position of a plain inference pass (vm_ctx and its trace), independent of the
// tree scorer: the router's gate entropy (ffn_moe_unc) and the frozen router's (from ffn_norm),
// summed over the MoE layers.
typedef struct { const vm_model *m; int target; double gate, base; int n_gate, n_base; } ro_acc;

static void ro_cb(void *ud, const vm_trace_ev *ev) {
    ro_acc *a = ud;
    if (ev->layer < 0 || !ev->f || a->target < ev->pos0 || a->target >= ev->pos0 + ev->n_tokens) return;
    const float *v = ev->f + (size_t)(a->target - ev->pos0) * ev->ne;
    if (!strcmp(ev->name, "ffn_moe_unc")) { a->gate += v[VM_UNC_GATE_ENTROPY]; a->n_gate++; }
    if (!strcmp(ev->name, "ffn_norm") && a->m->layers[ev->layer].is_moe) {
        const vm_router_layer *L = &a->m->layers[ev->layer].rl;
        float lg[64], p[64];
        vm_router_logits(L, v, 1, lg);
        vm_gate_probs(L, lg, p);
        a->base += vm_gate_entropy(p, L->n_expert); a->n_base++;
    }
}

// vm_eval_run (one tree batch per item) against the sequence-by-sequence reference vm_task_score
// and against read-outs traced from a plain pass over the context, deterministic routers: the
// same numbers (the tree's logits are bit for bit those of the sequences run alone).
static void check_tree_eval(vm_model *m, const vm_tokenizer *tok, const vm_dataset *ds, vm_task_mode mode) {
    vm_task task;
    vm_task_init(&task, tok, mode, VM_CHAT_NONE, m->hp.n_ctx_train);
    vm_eval_set es;
    vm_eval_opts eo = { .passes = 1, .seed = 3 };
    CHECK(vm_eval_run(m, &task, ds, "id", &eo, &es) == 0 && es.n == (int)ds->n, "eval %s: %s", vm_task_mode_name(mode), vm_errmsg());
    vm_ctx *c = vm_ctx_init(m, 256, 256);
    double dp = 0, dr = 0;
    for (int i = 0; i < es.n; i++) {
        vm_task_input in;
        vm_task_result r;
        if (vm_task_build(&task, &ds->items[i], &in) || vm_task_score(m, c, &in, &r)) { CHECK(0, "reference: %s", vm_errmsg()); break; }
        const vm_eval_item *e = &es.items[i];
        for (int k = 0; k < in.n_choices; k++) dp = fmax(dp, fmax(fabs(e->probs[k] - r.probs[k]), fabs(e->ll[k] - r.ll[k])));
        CHECK(e->pred == r.pred && (mode == VM_TASK_PMI || e->pred_norm == r.pred_norm), "%s item %d: predictions", vm_task_mode_name(mode), i);
        // the read-outs at the last context token (letter: the last prompt token)
        ro_acc a = { .m = m, .target = in.seq[0].n_ctx - 1 };
        vm_ctx_reset(c);
        vm_ctx_set_trace(c, ro_cb, &a);
        CHECK(vm_ctx_eval(c, in.seq[0].tokens, in.seq[0].n_ctx, NULL) == 0, "trace pass");
        vm_ctx_set_trace(c, NULL, NULL);
        dr = fmax(dr, fmax(fabs(e->unc[VM_EVAL_UNC_GATE_ENTROPY] - a.gate / a.n_gate), fabs(e->unc[VM_EVAL_UNC_BASE_GATE_ENTROPY] - a.base / a.n_base)));
        vm_task_input_free(&in);
    }
    printf("eval %-10s tree scorer vs sequences: probs/scores max|diff| %.2g, read-outs %.2g\n", vm_task_mode_name(mode), dp, dr);
    CHECK(dp <= 1e-9 && dr <= 1e-6, "%s: tree scorer differs from the reference: %g (scores), %g (read-outs)", vm_task_mode_name(mode), dp, dr);
    vm_ctx_free(c);
    vm_eval_set_free(&es);
}

static void set_router(vm_model *m, const char *kind) {
    vm_router_opts o;
    vm_router_opts_default(&o);
    o.samples = 4;
    for (int l = 0; l < m->hp.n_layer; l++)
        if (m->layers[l].is_moe) CHECK(vm_model_set_router(m, l, vm_router_create(kind, &m->layers[l].rl, &o)) == 0, "router %s", kind);
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--check")) {
        CHECK(check_outdir(argv[2]) > 0, "no method checked in %s", argv[2]);
        return TEST_SUMMARY();
    }
    // correctness, not speed: one thread keeps it fast on a loaded machine (OpenMP barriers spin)
    omp_set_num_threads(1);
    char dir[] = "/tmp/vmoer_test_eval.XXXXXX", p_dense[512], p_moe[512], p_out[512];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(p_dense, sizeof p_dense, "%s/st.gguf", dir);
    snprintf(p_moe, sizeof p_moe, "%s/moe.gguf", dir);
    snprintf(p_out, sizeof p_out, "%s/out", dir);
    char bin[512], tokp[512];
    snprintf(bin, sizeof bin, "%s/models/stories260K.bin", test_shared_dir());
    snprintf(tokp, sizeof tokp, "%s/models/tok512.bin", test_shared_dir());
    vm_upcycle_opts uo = { 8, 2, 0.05f, VM_UPCYCLE_ROUTER_STD, 3 };
    int ok = vm_convert_llama2c(bin, tokp, p_dense, VM_TYPE_F32, NULL) == 0 && vm_upcycle(p_dense, p_moe, &uo) == 0;
    CHECK(ok, "building the stories260K MoE: %s", vm_errmsg());
    vm_model *m = ok ? vm_model_load(p_moe) : NULL;
    CHECK(m != NULL, "load: %s", vm_errmsg());
    if (!m) return TEST_SUMMARY();

    // 1. the noise hook: sigma 0 = no noise; same seed = same draws; other seed = other draws
    {
        const int32_t toks[6] = { 1, 403, 407, 261, 378, 300 };
        const int V = vm_model_n_vocab(m);
        float *a = malloc(sizeof(float) * V), *b = malloc(sizeof(float) * V), *c2 = malloc(sizeof(float) * V);
        vm_ctx *c = vm_ctx_init(m, 64, 64);
        vm_ctx_eval(c, toks, 6, NULL); memcpy(a, vm_ctx_last_logits(c), sizeof(float) * V);
        vm_ctx_reset(c); vm_ctx_set_embd_noise(c, 0.0f, 7);
        vm_ctx_eval(c, toks, 6, NULL);
        CHECK(!memcmp(a, vm_ctx_last_logits(c), sizeof(float) * V), "sigma 0 changes the logits");
        vm_ctx_reset(c); vm_ctx_set_embd_noise(c, 0.2f, 7);
        vm_ctx_eval(c, toks, 6, NULL); memcpy(b, vm_ctx_last_logits(c), sizeof(float) * V);
        CHECK(memcmp(a, b, sizeof(float) * V), "sigma 0.2 does not change the logits");
        vm_ctx_reset(c); vm_ctx_set_embd_noise(c, 0.2f, 7);
        vm_ctx_eval(c, toks, 6, NULL);
        CHECK(!memcmp(b, vm_ctx_last_logits(c), sizeof(float) * V), "same noise seed, other logits");
        vm_ctx_reset(c); vm_ctx_set_embd_noise(c, 0.2f, 8);
        vm_ctx_eval(c, toks, 6, NULL); memcpy(c2, vm_ctx_last_logits(c), sizeof(float) * V);
        CHECK(memcmp(b, c2, sizeof(float) * V), "other noise seed, same logits");
        vm_ctx_free(c); free(a); free(b); free(c2);
    }

    vm_dataset ds;
    CHECK(vm_dataset_load_buf(&ds, "tiny.jsonl", items_jsonl, sizeof items_jsonl - 1, NULL) == 0, "dataset: %s", vm_errmsg());
    vm_tokenizer *tok = vm_tokenizer_from_gguf(vm_model_gguf(m));
    vm_task task;
    vm_task_init(&task, tok, VM_TASK_LETTER, VM_CHAT_NONE, m->hp.n_ctx_train);

    // 2. deterministic: one pass, probabilities, read-outs, routers restored
    vm_router *before = m->routers[0];
    vm_eval_set det;
    vm_eval_opts eo = { .passes = 4, .seed = 5 };
    CHECK(vm_eval_run(m, &task, &ds, "id", &eo, &det) == 0, "eval: %s", vm_errmsg());
    CHECK(m->routers[0] == before, "the probe was not removed");
    CHECK(det.n == 6, "n %d", det.n);
    for (int i = 0; i < det.n; i++) {
        const vm_eval_item *e = &det.items[i];
        double s = 0, h = 0;
        for (int k = 0; k < e->n_choices; k++) { s += e->probs[k]; if (e->probs[k] > 0) h -= e->probs[k] * log(e->probs[k]); }
        CHECK_NEAR(s, 1.0, 1e-9, "probabilities sum");
        CHECK_NEAR(e->unc[VM_EVAL_UNC_ENTROPY], h, 1e-12, "entropy");
        CHECK(isnan(e->unc[VM_EVAL_UNC_MI]) && isnan(e->unc[VM_EVAL_UNC_ILV]) && isnan(e->unc[VM_EVAL_UNC_TEMPERATURE]),
              "deterministic: MI/ILV/T must be NaN");
        // the router's gate entropy is the frozen router's own: both read-outs agree
        CHECK_NEAR(e->unc[VM_EVAL_UNC_GATE_ENTROPY], e->unc[VM_EVAL_UNC_BASE_GATE_ENTROPY], 1e-5, "gate vs base gate entropy");
        CHECK(e->unc[VM_EVAL_UNC_GATE_ENTROPY] > 0 && e->unc[VM_EVAL_UNC_GATE_ENTROPY] <= log(8) + 1e-6, "gate entropy range");
    }
    CHECK(det.items[2].n_choices == 3, "3-choice item");
    check_tree_eval(m, tok, &ds, VM_TASK_LETTER);
    check_tree_eval(m, tok, &ds, VM_TASK_LOGLIK);
    check_tree_eval(m, tok, &ds, VM_TASK_PMI);

    // 3. sampled router: P passes, MI >= 0, reproducible for a seed, other seed differs
    set_router(m, "temp-sample");
    vm_eval_set s1, s2, s3;
    CHECK(vm_eval_run(m, &task, &ds, "id", &eo, &s1) == 0 && vm_eval_run(m, &task, &ds, "id", &eo, &s2) == 0, "sampled: %s", vm_errmsg());
    eo.seed = 6;
    CHECK(vm_eval_run(m, &task, &ds, "id", &eo, &s3) == 0, "sampled: %s", vm_errmsg());
    int same = 1, differ = 0;
    for (int i = 0; i < s1.n; i++) {
        CHECK(isfinite(s1.items[i].unc[VM_EVAL_UNC_MI]) && s1.items[i].unc[VM_EVAL_UNC_MI] >= 0, "MI %g", s1.items[i].unc[VM_EVAL_UNC_MI]);
        CHECK(s1.items[i].unc[VM_EVAL_UNC_MI] <= s1.items[i].unc[VM_EVAL_UNC_ENTROPY] + 1e-12, "MI > H");
        for (int k = 0; k < s1.items[i].n_choices; k++) {
            same &= s1.items[i].probs[k] == s2.items[i].probs[k];
            differ |= s1.items[i].probs[k] != s3.items[i].probs[k];
        }
    }
    CHECK(same, "same seed, different results");
    CHECK(differ, "other seed, same results");

    // 4. stability: a sampled router's clean and noisy passes draw from independent streams, so even
    // at gamma 0 its Jaccard is below 1 (its own sampling noise), and repeatable for a seed; the
    // deterministic router's is exactly 1 at gamma 0, falling with gamma; per-item values average
    // (token-weighted) to the per-layer means
    const double grid[] = { 0, 0.001, 0.01, 0.1, 1.0 };
    vm_stability st, st2;
    CHECK(vm_stability_run(m, &task, &ds, 5, grid, 1, &st) == 0, "stability: %s", vm_errmsg());
    CHECK(vm_stability_run(m, &task, &ds, 5, grid, 1, &st2) == 0, "stability: %s", vm_errmsg());
    CHECK(st.jac_mean[0] < 1.0 && st.changed[0] > 0.0, "sampled router, gamma 0: %g (independent streams)", st.jac_mean[0]);
    CHECK(!memcmp(st.jac, st2.jac, sizeof(double) * 5 * st.n_layer), "same seed, same stability");
    {
        double worst = 0;
        for (int g = 0; g < 5; g++)
            for (int l = 0; l < st.n_layer; l++) {
                double s = 0;
                long long n = 0;
                for (int i = 0; i < st.n_items; i++) {
                    s += st.jac_item[((size_t)i * 5 + g) * st.n_layer + l] * st.item_tokens[i];
                    n += st.item_tokens[i];
                }
                worst = fmax(worst, fabs(s / n - st.jac[g * st.n_layer + l]));
            }
        CHECK(st.n_items == 6 && worst < 1e-12, "per-item Jaccard: %d items, off by %g", st.n_items, worst);
    }
    vm_stability_free(&st);
    vm_stability_free(&st2);
    set_router(m, "deterministic");
    CHECK(vm_stability_run(m, &task, &ds, 5, grid, 1, &st) == 0, "stability: %s", vm_errmsg());
    CHECK(st.n_layer == 5 && st.L_bar > 0, "layers %d, L_bar %g", st.n_layer, st.L_bar);
    CHECK(st.jac_mean[0] == 1.0, "gamma 0: %g", st.jac_mean[0]);
    for (int g = 1; g < 5; g++) CHECK(st.jac_mean[g] <= st.jac_mean[g - 1] + 1e-3, "Jaccard rises at %g", grid[g]);
    CHECK(st.jac_mean[4] < 0.9 && st.jac_mean[1] > 0.95, "Jaccard %g at gamma 1, %g at 0.001", st.jac_mean[4], st.jac_mean[1]);

    // 5. cost: deterministic = base; vglr-mf adds 2DH + 2HN + 2HN + S*2N per MoE layer (H = D/4)
    vm_cost c0, c1;
    CHECK(vm_cost_flops(m, 10, &c0) == 0, "cost");
    CHECK(c0.flops_method == c0.flops_base && c0.params_extra == 0, "deterministic cost");
    const double D = m->hp.n_embd, N = m->hp.n_expert, H = (int)(D / 4), S = 4;
    // hand count of the dense part: q,k,v,o + attention at span 10 + K experts + output
    const double qd = m->hp.n_head * m->hp.head_dim, kvd = m->hp.n_head_kv * m->hp.head_dim;
    const double per_layer = 2 * D * qd + 4 * D * kvd + 2 * qd * D + 4 * qd * 10 + 2.0 * 6 * D * m->hp.n_ff_exp + 2 * D * N;
    CHECK_NEAR(c0.flops_base, 5 * per_layer + 2 * D * m->hp.n_vocab, 1e-6, "analytic FLOPs");
    set_router(m, "vglr-mf");
    CHECK(vm_cost_flops(m, 10, &c1) == 0, "cost");
    CHECK_NEAR(c1.flops_method - c1.flops_base, 5 * (2 * D * H + 4 * H * N + S * 2 * N), 1e-6, "vglr-mf router FLOPs");
    CHECK(c1.params_extra == (long long)(5 * (D * H + 2 * H * N)), "vglr-mf parameters %lld", c1.params_extra);
    {   // swag (k = 20): W_bar u, u^2, sigma^2 u^2, k Dev_j u, then per sample N (2 + 2k); its trainable
        // parameters are the W_r copy (the variance and deviations are stored constants)
        vm_cost cs;
        set_router(m, "swag");
        CHECK(vm_cost_flops(m, 10, &cs) == 0, "cost");
        const double k = 20;
        CHECK_NEAR(cs.flops_method - cs.flops_base, 5 * (2 * D * N * (k + 2) + D + S * N * (2 + 2 * k) - 2 * D * N), 1e-6,
                   "swag router FLOPs");
        CHECK(cs.params_extra == (long long)(5 * D * N), "swag parameters %lld", cs.params_extra);
        set_router(m, "vglr-mf");
    }
    CHECK(vm_cost_time(m, &task, &ds, 3, &c1) == 0 && c1.sec_base > 0 && c1.sec_method > 0, "timing: %s", vm_errmsg());
    CHECK(m->routers[0] && strcmp(m->routers[0]->ops->name, "vglr-mf") == 0, "routers restored after timing");

    // 6. outputs: every file, and metrics.json agrees with the independent recomputation
    vm_eval_set sets[2] = { det, s1 };
    free(sets[1].name);
    sets[1].name = strdup("ood");
    c1.passes = 4;
    vm_eval_write_opts wo = { .outdir = p_out, .model_path = p_moe, .data_path = "tiny.jsonl", .router = "deterministic",
                              .score = "letter", .val_path = "tiny.jsonl", .bins = 10, .boot = 50, .seed = 1, .passes = 1 };
    CHECK(vm_eval_write(&wo, 2, sets, &s2, &st, &c1) == 0, "write: %s", vm_errmsg());
    CHECK(check_outdir(p_out) == 2, "two methods (with +ts)");
    wo.bins = 0;
    CHECK(vm_eval_write(&wo, 2, sets, NULL, NULL, NULL) == -1, "0 bins accepted");

    vm_stability_free(&st);
    vm_eval_set_free(&sets[0]); vm_eval_set_free(&sets[1]); vm_eval_set_free(&s2); vm_eval_set_free(&s3);
    vm_tokenizer_free(tok);
    vm_dataset_free(&ds);
    vm_model_free(m);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
    return TEST_SUMMARY();
}

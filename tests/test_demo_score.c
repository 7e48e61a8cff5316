// Story-cloze scoring modes of data/task.h: loglik-raw (BOS + question, continuation " " + choice)
// and pmi (minus the same continuation after BOS alone), against golden token ids and scores from
// an independent numpy forward of stories260K (tests/reference/cloze_pmi_ref.py); the pmi gradient
// weights against finite differences; the fit's pmi loss against eval scoring (validation NLL at
// step 0 equals the deterministic model's); pmi accuracy on real items (the README's claim).
#include "test.h"
#include "convert/convert.h"
#include "data/dataset.h"
#include "data/task.h"
#include "eval/task_score.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "train/fit.h"
#include "util/err.h"

#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[] = "/tmp/vmoer_demo_score_XXXXXX";

static int ids_equal(const int32_t *a, int n, const json_t *arr) {
    if ((int)json_array_size(arr) != n) return 0;
    for (int i = 0; i < n; i++) if (a[i] != json_integer_value(json_array_get(arr, i))) return 0;
    return 1;
}

// Token ids and scores of the first golden items, both modes.
static void check_golden(const vm_model *m, const vm_tokenizer *tok, const vm_dataset *ds) {
    json_error_t je;
    json_t *g = json_load_file("tests/golden/cloze/pmi.json", 0, &je);
    CHECK(g != NULL, "golden: %s", je.text);
    if (!g) return;
    vm_ctx *c = vm_ctx_init(m, 512, 512);
    vm_task raw, pmi;
    vm_task_init(&raw, tok, VM_TASK_LOGLIK_RAW, VM_CHAT_NONE, 512);
    vm_task_init(&pmi, tok, VM_TASK_PMI, VM_CHAT_NONE, 512);
    const json_t *items = json_object_get(g, "items");
    for (size_t i = 0; i < json_array_size(items) && i < ds->n; i++) {
        const json_t *gi = json_array_get(items, i);
        const vm_mcq_item *it = &ds->items[i];
        CHECK(!strcmp(json_string_value(json_object_get(gi, "id")), it->id), "item order %s", it->id);
        vm_task_input a, b;
        CHECK(vm_task_build(&raw, it, &a) == 0, "raw build: %s", vm_errmsg());
        CHECK(vm_task_build(&pmi, it, &b) == 0, "pmi build: %s", vm_errmsg());
        CHECK(!strcmp(a.text, it->question), "raw context is the question itself");
        const int n = it->n_choices;
        CHECK(a.n_seq == n && b.n_seq == 2 * n, "sequence counts %d %d", a.n_seq, b.n_seq);
        const json_t *ch = json_object_get(gi, "choices");
        for (int k = 0; k < n && a.n_seq == n && b.n_seq == 2 * n; k++) {
            const json_t *gc = json_array_get(ch, (size_t)k);
            const int nctx = (int)json_integer_value(json_object_get(gc, "n_ctx"));
            CHECK(ids_equal(a.seq[k].tokens, a.seq[k].n, json_object_get(gc, "ids")), "%s choice %d: ids run", it->id, k);
            CHECK(a.seq[k].n_ctx == nctx && b.seq[k].n_ctx == nctx, "%s choice %d: n_ctx %d vs %d", it->id, k, a.seq[k].n_ctx, nctx);
            CHECK(b.seq[k].n == a.seq[k].n && !memcmp(b.seq[k].tokens, a.seq[k].tokens, (size_t)a.seq[k].n * 4), "pmi conditional = raw");
            const vm_task_seq *u = &b.seq[n + k];
            CHECK(u->n_ctx == 1 && u->tokens[0] == 1 && u->n == 1 + a.seq[k].n - nctx &&
                  !memcmp(u->tokens + 1, a.seq[k].tokens + nctx, (size_t)(u->n - 1) * 4), "%s choice %d: BOS + continuation", it->id, k);
        }
        vm_task_result ra, rb;
        CHECK(vm_task_score(m, c, &a, &ra) == 0 && vm_task_score(m, c, &b, &rb) == 0, "score: %s", vm_errmsg());
        const json_t *pl = json_object_get(gi, "probs_loglik"), *pp = json_object_get(gi, "probs_pmi");
        for (int k = 0; k < n; k++) {
            const json_t *gc = json_array_get(ch, (size_t)k);
            CHECK_NEAR(ra.ll[k], json_real_value(json_object_get(gc, "ll_cond")), 2e-3, "ll_cond");
            CHECK_NEAR(rb.ll[k], json_real_value(json_object_get(gc, "pmi")), 3e-3, "pmi score");
            CHECK_NEAR(ra.probs[k], json_real_value(json_array_get(pl, (size_t)k)), 1e-3, "loglik probs");
            CHECK_NEAR(rb.probs[k], json_real_value(json_array_get(pp, (size_t)k)), 1e-3, "pmi probs");
        }
        vm_task_input_free(&a);
        vm_task_input_free(&b);
    }
    vm_ctx_free(c);
    json_decref(g);
}

// vm_task_seq_coef = d(-log softmax(scores)_y)/d ll_s, by central differences on random ll.
static void check_coef(void) {
    vm_task_input in = { .mode = VM_TASK_PMI, .n_choices = 3, .answer = 2, .n_seq = 6 };
    double ll[6] = { -12.5, -9.25, -11.0, -7.5, -6.0, -8.75 }, sc[3], p[3];
    vm_task_choice_scores(&in, ll, sc);
    CHECK_NEAR(sc[1], -9.25 + 6.0, 1e-12, "pmi score = cond - uncond");
    vm_task_choice_softmax(sc, 3, 2, p);
    for (int s = 0; s < 6; s++) {
        double h = 1e-5, up[6], dn[6], su[3], sd[3], q[3];
        memcpy(up, ll, sizeof ll); memcpy(dn, ll, sizeof ll);
        up[s] += h; dn[s] -= h;
        vm_task_choice_scores(&in, up, su); vm_task_choice_scores(&in, dn, sd);
        const double fd = (vm_task_choice_softmax(su, 3, 2, q) - vm_task_choice_softmax(sd, 3, 2, q)) / (2 * h);
        CHECK_NEAR(vm_task_seq_coef(&in, s, p), fd, 1e-7, "coef vs finite difference");
    }
    in.mode = VM_TASK_LOGLIK_RAW; in.n_seq = 3;
    vm_task_choice_scores(&in, ll, sc);
    CHECK(sc[0] == ll[0] && sc[2] == ll[2], "loglik-raw scores are the lls");
    const char *names[] = { "letter", "loglik", "loglik-raw", "pmi" };
    for (int k = 0; k < 4; k++) {
        vm_task_mode md;
        CHECK(vm_task_mode_parse(names[k], &md) == 0 && !strcmp(vm_task_mode_name(md), names[k]), "mode %s", names[k]);
    }
    vm_task_mode md;
    CHECK(vm_task_mode_parse("PMI", &md) < 0 && strstr(vm_errmsg(), "pmi"), "bad mode lists the names");
    CHECK(vm_task_is_loglik(VM_TASK_PMI) && vm_task_is_loglik(VM_TASK_LOGLIK_RAW) && !vm_task_is_loglik(VM_TASK_LETTER), "is_loglik");
}

// The fit's pmi loss agrees with eval scoring: a map fit starts at W_r, so its validation NLL before
// training is the deterministic model's mean pmi NLL over the same validation items.
static void check_fit(const char *moe, const vm_dataset *ds) {
    vm_model *m = vm_model_load(moe);
    vm_tokenizer *tok = m ? vm_tokenizer_from_gguf(vm_model_gguf(m)) : NULL;
    CHECK(m && tok, "load moe: %s", vm_errmsg());
    if (!m || !tok) { vm_model_free(m); return; }
    vm_dataset sub = *ds;
    sub.n = 8;
    vm_fit_opts o;
    vm_fit_opts_default(&o);
    o.kind = "map"; o.mode = VM_TASK_PMI; o.epochs = 1; o.batch = 4; o.val_frac = 0.25f; o.seed = 3;
    o.progress = 2; o.n_layers = 1; o.layers[0] = m->hp.n_layer - 1; o.lr = 1e-2f;
    // reference first, with the deterministic routers
    int order[8], n_val = 0;
    CHECK(vm_fit_split(8, o.val_frac, o.seed, order, &n_val) == 0 && n_val == 2, "split");
    vm_task t;
    vm_task_init(&t, tok, VM_TASK_PMI, VM_CHAT_NONE, 512);
    vm_ctx *c = vm_ctx_init(m, 512, 512);
    double ref = 0;
    for (int i = 0; i < n_val; i++) {
        vm_task_input in; vm_task_result r;
        CHECK(vm_task_build(&t, &ds->items[order[i]], &in) == 0 && vm_task_score(m, c, &in, &r) == 0, "score");
        ref += r.nll / n_val;
        vm_task_input_free(&in);
    }
    vm_ctx_free(c);
    char out[256];
    snprintf(out, sizeof out, "%s/pmi_map.gguf", dir);
    vm_fit_stats st;
    CHECK(vm_fit_run(m, tok, &sub, &o, out, &st) == 0, "pmi fit: %s", vm_errmsg());
    CHECK_NEAR(st.val_nll_init, ref, 2e-3, "fit val nll at step 0 = eval pmi nll");
    CHECK(isfinite(st.train_ce_first) && st.steps == 2, "fit ran: ce %g, %lld steps", st.train_ce_first, (long long)st.steps);
    unlink(out);
    vm_tokenizer_free(tok);
    vm_model_free(m);
}

// Accuracy of both modes on the first test items with the real model (README: pmi >> loglik).
static void check_accuracy(const vm_model *m, const vm_tokenizer *tok, const vm_dataset *ds, int n) {
    vm_ctx *c = vm_ctx_init(m, 512, 512);
    vm_task raw, pmi;
    vm_task_init(&raw, tok, VM_TASK_LOGLIK_RAW, VM_CHAT_NONE, 512);
    vm_task_init(&pmi, tok, VM_TASK_PMI, VM_CHAT_NONE, 512);
    int ok_raw = 0, ok_pmi = 0, used = 0;
    for (int i = 0; i < n && i < (int)ds->n; i++) {
        vm_task_input a, b; vm_task_result ra, rb;
        if (vm_task_build(&raw, &ds->items[i], &a) || vm_task_build(&pmi, &ds->items[i], &b)) { CHECK(0, "build"); break; }
        if (vm_task_score(m, c, &a, &ra) || vm_task_score(m, c, &b, &rb)) { CHECK(0, "score"); break; }
        ok_raw += ra.pred == ra.answer; ok_pmi += rb.pred == rb.answer; used++;
        vm_task_input_free(&a); vm_task_input_free(&b);
    }
    printf("first %d test items: acc loglik-raw %.3f, pmi %.3f\n", used, (double)ok_raw / used, (double)ok_pmi / used);
    CHECK(used == n && ok_pmi > ok_raw && (double)ok_pmi / used >= 0.5, "pmi acc %d/%d vs raw %d/%d", ok_pmi, used, ok_raw, used);
    vm_ctx_free(c);
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_UNDEFINED__)
#define ACC_ITEMS 12
#else
#define ACC_ITEMS 40
#endif

int main(void) {
    omp_set_num_threads(1);   // a tiny model: threads only add synchronisation (and spin under load)
    const char *sh = test_shared_dir();
    char src[512], tk[512], dense[256], moe[256];
    snprintf(src, sizeof src, "%s/models/stories260K.bin", sh);
    snprintf(tk, sizeof tk, "%s/models/tok512.bin", sh);
    if (!mkdtemp(dir)) { CHECK(0, "mkdtemp"); return TEST_SUMMARY(); }
    snprintf(dense, sizeof dense, "%s/dense.gguf", dir);
    snprintf(moe, sizeof moe, "%s/moe.gguf", dir);
    vm_upcycle_opts uo = { .n_expert = 4, .n_expert_used = 2, .noise = 0.05f, .router_std = VM_UPCYCLE_ROUTER_STD, .seed = 1 };
    CHECK(vm_convert_llama2c(src, tk, dense, VM_TYPE_F32, NULL) == 0, "convert: %s", vm_errmsg());
    CHECK(vm_upcycle(dense, moe, &uo) == 0, "upcycle: %s", vm_errmsg());
    vm_model *m = vm_model_load(dense);
    vm_tokenizer *tok = m ? vm_tokenizer_from_gguf(vm_model_gguf(m)) : NULL;
    vm_dataset ds = {0};
    vm_dataset_opts dopt;
    vm_dataset_opts_default(&dopt);
    dopt.limit = 40;
    CHECK(vm_dataset_load(&ds, "data/cloze/test.jsonl", &dopt) == 0, "cloze: %s", vm_errmsg());
    check_coef();
    if (m && tok && ds.n == 40) {
        check_golden(m, tok, &ds);
        check_accuracy(m, tok, &ds, ACC_ITEMS);
        check_fit(moe, &ds);
    } else {
        CHECK(0, "setup: %s", vm_errmsg());
    }
    vm_dataset_free(&ds);
    vm_tokenizer_free(tok);
    vm_model_free(m);
    unlink(dense); unlink(moe); rmdir(dir);
    return TEST_SUMMARY();
}

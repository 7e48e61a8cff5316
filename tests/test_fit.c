// vmoer fit pieces: the validation split, the schedule, AdamW, routing stability, and a real fit
// on a tiny upcycled stories260K MoE (built here: convert + upcycle --noise 0.05) with OBQA items:
// the loss decreases, held-out NLL lowers, the adapter round-trips (same logits), a mismatched
// adapter is refused, a fit stopped mid-run and resumed writes the same adapter bytes as an
// uninterrupted one (which also shows determinism for a seed).
#include "test.h"
#include "convert/convert.h"
#include "data/dataset.h"
#include "model/model.h"
#include "train/adapter.h"
#include "train/fit.h"
#include "train/optim.h"
#include "util/err.h"
#include "util/fileio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[] = "/tmp/vmoer_fit_XXXXXX";

static void test_split(void) {
    int a[101], b[101], n_val, n_val2;
    CHECK(vm_fit_split(101, 0.2f, 5, a, &n_val) == 0 && n_val == 20, "n_val %d", n_val);
    int seen[101] = {0}, ok = 1;
    for (int i = 0; i < 101; i++) { if (a[i] < 0 || a[i] >= 101 || seen[a[i]]++) ok = 0; }
    CHECK(ok, "the split is a permutation: validation and training are disjoint and cover every item");
    vm_fit_split(101, 0.2f, 5, b, &n_val2);
    CHECK(!memcmp(a, b, sizeof a) && n_val2 == n_val, "same seed, same split");
    vm_fit_split(101, 0.2f, 6, b, &n_val2);
    CHECK(memcmp(a, b, sizeof a), "another seed, another split");
    CHECK(vm_fit_split(3, 0.01f, 0, b, &n_val) == 0 && n_val == 1, "at least one validation item");
    CHECK(vm_fit_split(2, 0.9f, 0, b, &n_val) == 0 && n_val == 1, "at least one training item");
}

static void test_schedule_adamw(void) {
    // 100 steps, 5 % warm-up: 5 steps up to lr, then cosine to 0
    CHECK_NEAR(vm_lr_schedule(1.0f, 0, 100, 0.05f), 0.2, 1e-6, "warm-up step 0");
    CHECK_NEAR(vm_lr_schedule(1.0f, 4, 100, 0.05f), 1.0, 1e-6, "warm-up end");
    CHECK_NEAR(vm_lr_schedule(1.0f, 5, 100, 0.05f), 1.0, 1e-6, "cosine start");
    CHECK_NEAR(vm_lr_schedule(1.0f, 52, 100, 0.05f), 0.5 * (1 + cos(M_PI * 47.0 / 95.0)), 1e-6, "cosine middle");
    CHECK(vm_lr_schedule(1.0f, 99, 100, 0.05f) < 0.001, "near 0 at the end");
    // one AdamW step: m_hat/sqrt(v_hat) = sign(g), so w -= lr * (sign(g) + wd * w)
    float w[3] = { 1, -2, 0.5f }, g[3] = { 0.3f, -4, 0 };
    vm_param p = { .name = "x", .n_dims = 1, .ne = { 3, 1 }, .w = w, .g = g };
    vm_param *pp = &p;
    const unsigned char dec = 1;
    vm_adamw o;
    CHECK(vm_adamw_init(&o, &pp, &dec, 1, 0.1f) == 0, "adamw init");
    vm_adamw_step(&o, 0.01f);
    CHECK_NEAR(w[0], 1 - 0.01 * (1 + 0.1 * 1), 1e-6, "adamw w0");
    CHECK_NEAR(w[1], -2 - 0.01 * (-1 + 0.1 * -2), 1e-6, "adamw w1");
    CHECK_NEAR(w[2], 0.5 - 0.01 * (0 + 0.1 * 0.5), 1e-6, "adamw w2 (no gradient: decay only)");
    CHECK(g[0] == 0 && g[1] == 0, "gradients zeroed");
    vm_adamw_free(&o);
}

static unsigned char *slurp(const char *path, size_t *n) {
    vm_mmap mm;
    if (vm_mmap_open(&mm, path)) return NULL;
    unsigned char *b = malloc(mm.size);
    memcpy(b, mm.data, mm.size); *n = mm.size;
    vm_mmap_close(&mm);
    return b;
}

// Mean over tokens of the population SD of the router logits, per layer, from the trace.
typedef struct sd_acc { double sum[8]; long cnt[8]; } sd_acc;
static void sd_trace(void *ud, const vm_trace_ev *ev) {
    sd_acc *a = ud;
    if (strcmp(ev->name, "ffn_moe_logits") || ev->layer < 0 || ev->layer >= 8) return;
    for (int t = 0; t < ev->n_tokens; t++) {
        const float *l = ev->f + (size_t)t * ev->ne;
        double m = 0, v = 0;
        for (int e = 0; e < ev->ne; e++) m += l[e];
        m /= ev->ne;
        for (int e = 0; e < ev->ne; e++) v += (l[e] - m) * (l[e] - m);
        a->sum[ev->layer] += sqrt(v / ev->ne);
        a->cnt[ev->layer]++;
    }
}

static void fit_opts(vm_fit_opts *o) {
    vm_fit_opts_default(o);
    o->kind = "vglr-mf"; o->n_layers = 1; o->layers[0] = 4;
    o->epochs = 3; o->batch = 6; o->lr = 0.1f; o->val_frac = 0.25f; o->seed = 3; o->progress = 2;
    o->beta = 1e-4f; o->prior_sd = 0.0f;   // a weak, wide prior: 18 items cannot outweigh the full
                                           // ELBO (beta 1), and the unit prior leaves much to learn
    o->system = "Answer with a letter.";   // shorter prompts keep the test fast
}

int main(void) {
    test_split();
    test_schedule_adamw();
    const char *sh = test_shared_dir();
    char src[512], tk[512], data[512], dense[128], moe[128], moe2[128], ad1[128], ad2[128], ck[128];
    snprintf(src, sizeof src, "%s/models/stories260K.bin", sh);
    snprintf(tk, sizeof tk, "%s/models/tok512.bin", sh);
    snprintf(data, sizeof data, "%s/data/mcqa/openbookqa/train.jsonl", sh);
    if (!mkdtemp(dir)) { CHECK(0, "mkdtemp"); return TEST_SUMMARY(); }
    snprintf(dense, sizeof dense, "%s/d.gguf", dir); snprintf(moe, sizeof moe, "%s/moe.gguf", dir);
    snprintf(moe2, sizeof moe2, "%s/moe2.gguf", dir); snprintf(ad1, sizeof ad1, "%s/a1.gguf", dir);
    snprintf(ad2, sizeof ad2, "%s/a2.gguf", dir); snprintf(ck, sizeof ck, "%s/a2.ckpt", dir);
    vm_upcycle_opts uo = { .n_expert = 4, .n_expert_used = 2, .noise = 0.05f, .router_std = VM_UPCYCLE_ROUTER_STD, .seed = 1 };
    CHECK(vm_convert_llama2c(src, tk, dense, VM_TYPE_F32, NULL) == 0, "convert: %s", vm_errmsg());
    CHECK(vm_upcycle(dense, moe, &uo) == 0, "upcycle: %s", vm_errmsg());
    uo.seed = 2;
    CHECK(vm_upcycle(dense, moe2, &uo) == 0, "upcycle 2: %s", vm_errmsg());
    vm_dataset ds;
    vm_dataset_opts dop; vm_dataset_opts_default(&dop); dop.limit = 24;
    CHECK(vm_dataset_load(&ds, data, &dop) == 0, "data: %s", vm_errmsg());
    vm_model *m = vm_model_load(moe);
    vm_tokenizer *tok = m ? vm_tokenizer_from_gguf(m->gguf) : NULL;
    if (!m || !tok) { CHECK(0, "load: %s", vm_errmsg()); return TEST_SUMMARY(); }

    // routing stability: no noise -> Jaccard 1; gamma 0.01 -> in [0, 1]
    {
        vm_task t; vm_task_init(&t, tok, VM_TASK_LETTER, VM_CHAT_NONE, 0);
        t.system = "Answer with a letter.";
        vm_task_input in[2];
        CHECK(vm_task_build(&t, &ds.items[0], &in[0]) == 0 && vm_task_build(&t, &ds.items[1], &in[1]) == 0, "build");
        double j0[8], j1[8];
        CHECK(vm_fit_layer_stability(m, in, 2, 0.0f, 1, j0) == 0, "stability: %s", vm_errmsg());
        CHECK(vm_fit_layer_stability(m, in, 2, 0.01f, 1, j1) == 0, "stability");
        for (int il = 0; il < 5; il++) {
            CHECK_NEAR(j0[il], 1.0, 1e-12, "clean vs clean");
            CHECK(j1[il] >= 0 && j1[il] <= 1, "jaccard %g", j1[il]);
        }
        printf("jaccard at gamma 0.01: %.4f %.4f %.4f %.4f %.4f\n", j1[0], j1[1], j1[2], j1[3], j1[4]);
        vm_task_input_free(&in[0]); vm_task_input_free(&in[1]);
    }

    // the prior's scale: vm_fit_logit_scale (W_r times the traced router input) against the mean
    // per-token SD of the logits the deterministic router itself reports ("ffn_moe_logits")
    {
        vm_task t; vm_task_init(&t, tok, VM_TASK_LETTER, VM_CHAT_NONE, 0);
        t.system = "Answer with a letter.";
        vm_task_input in[3];
        for (int i = 0; i < 3; i++) CHECK(vm_task_build(&t, &ds.items[i], &in[i]) == 0, "build");
        const int layers[2] = { 1, 4 };
        float sd[2];
        CHECK(vm_fit_logit_scale(m, in, 3, layers, 2, sd) == 0, "logit scale: %s", vm_errmsg());
        sd_acc a = { 0 };
        vm_ctx *c = vm_ctx_init(m, 0, 0);
        vm_ctx_set_trace(c, sd_trace, &a);
        for (int i = 0; i < 3; i++) { vm_ctx_reset(c); vm_ctx_eval(c, in[i].seq[0].tokens, in[i].seq[0].n, NULL); }
        vm_ctx_free(c);
        for (int k = 0; k < 2; k++)
            CHECK(fabs(sd[k] - a.sum[layers[k]] / a.cnt[layers[k]]) <= 1e-5 * sd[k], "sigma_p of layer %d: %g vs %g", layers[k], sd[k], a.sum[layers[k]] / a.cnt[layers[k]]);
        printf("router-logit SD: layer 1 %.5f, layer 4 %.5f\n", sd[0], sd[1]);
        for (int i = 0; i < 3; i++) vm_task_input_free(&in[i]);
    }

    // kinds without parameters are refused
    vm_fit_opts o;
    fit_opts(&o); o.kind = "mcdropout";
    CHECK(vm_fit_run(m, tok, &ds, &o, ad1, NULL) < 0 && strstr(vm_errmsg(), "no trainable parameters"), "mcdropout: %s", vm_errmsg());

    // the uninterrupted fit
    vm_fit_stats st;
    fit_opts(&o);
    CHECK(vm_fit_run(m, tok, &ds, &o, ad1, &st) == 0, "fit: %s", vm_errmsg());
    printf("fit: %d train / %d val, %lld steps, train ce %.4f -> %.4f, val nll %.4f -> %.4f (best epoch %d), %.0f tok/s\n",
           st.n_train, st.n_val, (long long)st.steps, st.train_ce_first, st.train_ce_last, st.val_nll_init,
           st.val_nll_best, st.best_epoch, st.tokens_per_s);
    CHECK(st.n_train == 18 && st.n_val == 6, "split sizes");
    CHECK(st.train_ce_last < st.train_ce_first, "training loss decreases");
    CHECK(st.val_nll_best < st.val_nll_init, "held-out NLL lowers");

    // adapter round trip: a fresh model + adapter gives the fitted model's logits
    {
        vm_model *m2 = vm_model_load(moe);
        CHECK(m2 && vm_adapter_apply(m2, ad1) == 0, "apply: %s", vm_errmsg());
        const int32_t toks[6] = { 1, 400, 300, 200, 100, 50 };
        vm_ctx *c1 = vm_ctx_init(m, 0, 8), *c2 = vm_ctx_init(m2, 0, 8);
        vm_ctx_set_seed(c1, 9); vm_ctx_set_seed(c2, 9);
        CHECK(c1 && c2 && vm_ctx_eval(c1, toks, 6, NULL) == 0 && vm_ctx_eval(c2, toks, 6, NULL) == 0, "eval");
        CHECK(!memcmp(vm_ctx_last_logits(c1), vm_ctx_last_logits(c2), (size_t)vm_model_n_vocab(m) * sizeof(float)), "same logits");
        CHECK(!strcmp(m2->routers[4]->ops->name, "vglr-mf") && !strcmp(m2->routers[3]->ops->name, "deterministic"), "routers installed");
        vm_ctx_free(c1); vm_ctx_free(c2); vm_model_free(m2);
        vm_model *m3 = vm_model_load(moe2), *m4 = vm_model_load(dense);
        CHECK(m3 && vm_adapter_apply(m3, ad1) < 0 && strstr(vm_errmsg(), "another model"), "other router weights refused: %s", vm_errmsg());
        CHECK(m3 && !strcmp(m3->routers[4]->ops->name, "deterministic"), "a refused adapter leaves the model unchanged");
        CHECK(m4 && vm_adapter_apply(m4, ad1) < 0 && strstr(vm_errmsg(), "another model"), "dense model refused: %s", vm_errmsg());
        vm_model_free(m3); vm_model_free(m4);
    }

    // divergence: an error by default; with keep_best_on_diverge, an adapter of the best parameters
    // so far (here the initial head: no epoch ended) and the step reported
    {
        vm_model *ma = vm_model_load(moe), *mb = vm_model_load(moe);
        fit_opts(&o); o.lr = 1e30f; o.ckpt_path = ck;
        remove(ad2);
        CHECK(ma && vm_fit_run(ma, tok, &ds, &o, ad2, &st) < 0 && strstr(vm_errmsg(), "diverged"), "divergence is an error: %s", vm_errmsg());
        CHECK(access(ad2, F_OK) != 0, "no adapter from a diverged fit");
        remove(ck);
        fit_opts(&o); o.lr = 1e30f; o.ckpt_path = ck; o.keep_best_on_diverge = 1;
        CHECK(mb && vm_fit_run(mb, tok, &ds, &o, ad2, &st) == 0, "keep best on divergence: %s", vm_errmsg());
        CHECK(st.diverged_step > 0 && st.best_epoch == 0 && access(ad2, F_OK) == 0,
              "diverged at step %lld, best epoch %d, adapter written", (long long)st.diverged_step, st.best_epoch);
        remove(ad2); remove(ck);
        vm_model_free(ma); vm_model_free(mb);
    }

    // stopped after 2 steps, then resumed: the same adapter bytes
    {
        vm_model *ma = vm_model_load(moe), *mb = vm_model_load(moe);
        fit_opts(&o); o.stop_after = 2; o.ckpt_path = ck;
        CHECK(ma && vm_fit_run(ma, tok, &ds, &o, ad2, &st) == 0 && st.interrupted && st.steps == 2, "interrupted fit: %s", vm_errmsg());
        CHECK(access(ck, F_OK) == 0 && access(ad2, F_OK) != 0, "checkpoint and no adapter yet");
        fit_opts(&o); o.resume = 1; o.ckpt_path = ck;
        CHECK(mb && vm_fit_run(mb, tok, &ds, &o, ad2, &st) == 0 && st.resumed && !st.interrupted, "resumed fit: %s", vm_errmsg());
        size_t n1 = 0, n2 = 0;
        unsigned char *b1 = slurp(ad1, &n1), *b2 = slurp(ad2, &n2);
        CHECK(b1 && b2 && n1 == n2 && !memcmp(b1, b2, n1), "resumed adapter == uninterrupted adapter (%zu vs %zu bytes)", n1, n2);
        CHECK(access(ck, F_OK) != 0, "checkpoint removed after completion");
        free(b1); free(b2);
        vm_model_free(ma); vm_model_free(mb);
    }
    vm_dataset_free(&ds);
    vm_tokenizer_free(tok); vm_model_free(m);
    unlink(dense); unlink(moe); unlink(moe2); unlink(ad1); unlink(ad2); rmdir(dir);
    return TEST_SUMMARY();
}

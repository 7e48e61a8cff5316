// vmoer train MODEL.gguf --text FILE [--val FILE] -o OUT.gguf [options]
// Full-parameter language-model training (train/lm.h).
#include "cli/cli.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "train/lm.h"
#include "util/err.h"
#include "util/fileio.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *CMD = "train";

static void usage(void) {
    printf("usage: vmoer train MODEL.gguf --text FILE -o OUT.gguf [options]\n\n"
           "Trains every weight of a small llama-style model (dense or MoE: token embeddings, attention,\n"
           "experts, routers, norms) on plain text: next-token cross-entropy + a load-balancing loss per\n"
           "MoE layer, AdamW with warm-up and cosine decay. Writes the parameters with the best validation\n"
           "loss. Weights must be f32 (start from `vmoer upcycle`, convert-llama2c or convert-hf --type f32).\n"
           "Documents are separated by blank lines; each starts with BOS.\n\n"
           "options:\n"
           "  --text FILE          training text (repeatable)\n"
           "  --val FILE           validation text (default: the last --val-frac of the documents)\n"
           "  --val-frac F         (default 0.05)\n"
           "  --steps N            optimiser steps (default 200)\n"
           "  --seq N              tokens per window (default 128)\n"
           "  --batch N            windows per step (default 8)\n"
           "  --lr LR              peak learning rate (default 1e-3), 5%% warm-up, cosine decay to 0\n"
           "  --warmup F           warm-up fraction of the steps (default 0.05)\n"
           "  --wd WD              weight decay on matrices and embeddings (default 0.01)\n"
           "  --clip C             global gradient-norm clip (default 1; 0 = off)\n"
           "  --lb W               load-balancing loss weight (default 0.01)\n"
           "  --router-lr-mult M   the routers (ffn_gate_inp) learn at M times --lr (default 1): their\n"
           "                       gradient arrives only through the gate values, and is weak\n"
           "  --teacher T.gguf     distil from this model (same vocabulary): the CE term becomes\n"
           "                       (1-A) CE(next token) + A CE(teacher's next-token distribution)\n"
           "  --kd A               weight A of the teacher's distribution (default 0.5 with --teacher)\n"
           "  --eval-every N       validation every N steps (default 50)\n"
           "  --eval-windows N     validation windows of --seq tokens (default 32)\n"
           "  --from-scratch       re-initialise every weight before training\n"
           "  --seed S             (default 0)\n"
           "  --resume             continue from the checkpoint (default OUT.gguf.ckpt)\n"
           "  --ckpt PATH          checkpoint file\n"
           "  --ckpt-every N       also checkpoint every N steps\n"
           "  --stop-after N       stop after N steps in total, leaving a checkpoint (testing)\n"
           "  --quiet              no progress output\n"
           "  --threads N          worker threads\n"
           "  -o, --output FILE    model to write (required)\n"
           "  -h, --help           this text\n");
}

// Reads and tokenises the texts: the documents of all files in order.
static int64_t load_texts(const vm_tokenizer *tok, const char **paths, int n, int32_t **out, int *n_docs) {
    int32_t *all = NULL;
    int64_t total = 0;
    *n_docs = 0;
    for (int i = 0; i < n; i++) {
        size_t len;
        char *text = vm_read_file(paths[i], &len);
        if (!text) return -1;
        int32_t *ids;
        int nd;
        const int64_t k = vm_lm_tokenize_docs(tok, text, len, 0, -1, &nd, &ids);
        free(text);
        if (k < 0) { free(all); return vm_err_prefix("%s", paths[i]); }
        if (k == 0) { free(ids); free(all); return vm_err("%s: no text", paths[i]); }
        int32_t *na = realloc(all, (size_t)(total + k) * sizeof *na);
        if (!na) { free(ids); free(all); return vm_err("out of memory"); }
        all = na;
        memcpy(all + total, ids, (size_t)k * sizeof *ids);
        total += k;
        *n_docs += nd;
        free(ids);
    }
    *out = all;
    return total;
}

int cmd_train(int argc, char **argv) {
    const char *path = NULL, *out = NULL, *val_path = NULL, *teacher_path = NULL;
    double kd = -1;
    const char *texts[64];
    int n_texts = 0;
    vm_lm_opts o;
    vm_lm_opts_default(&o);
    long lv;
    double dv;
    uint64_t uv;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(); return 0; }
#define VAL() if (!(v = cli_value(CMD, argc, argv, &i))) return 1
        else if (!strcmp(a, "--text")) {
            VAL();
            if (n_texts == 64) return cli_fail(CMD, "--text: at most 64 files");
            texts[n_texts++] = v;
        }
        else if (!strcmp(a, "--val")) { VAL(); val_path = v; }
        else if (!strcmp(a, "--val-frac")) { VAL(); if (cli_float(CMD, a, v, 0.001, 0.9, &dv)) return 1; o.val_frac = (float)dv; }
        else if (!strcmp(a, "--steps")) { VAL(); if (cli_long(CMD, a, v, 1, INT_MAX, &lv)) return 1; o.steps = lv; }
        else if (!strcmp(a, "--seq")) { VAL(); if (cli_long(CMD, a, v, 2, 1 << 16, &lv)) return 1; o.seq = (int)lv; }
        else if (!strcmp(a, "--batch")) { VAL(); if (cli_long(CMD, a, v, 1, 1 << 16, &lv)) return 1; o.batch = (int)lv; }
        else if (!strcmp(a, "--lr")) { VAL(); if (cli_float(CMD, a, v, 1e-12, 10, &dv)) return 1; o.lr = (float)dv; }
        else if (!strcmp(a, "--warmup")) { VAL(); if (cli_float(CMD, a, v, 0, 1, &dv)) return 1; o.warmup_frac = (float)dv; }
        else if (!strcmp(a, "--wd")) { VAL(); if (cli_float(CMD, a, v, 0, 10, &dv)) return 1; o.wd = (float)dv; }
        else if (!strcmp(a, "--clip")) { VAL(); if (cli_float(CMD, a, v, 0, 1e6, &dv)) return 1; o.clip = (float)dv; }
        else if (!strcmp(a, "--lb")) { VAL(); if (cli_float(CMD, a, v, 0, 1e3, &dv)) return 1; o.lb_weight = (float)dv; }
        else if (!strcmp(a, "--router-lr-mult")) { VAL(); if (cli_float(CMD, a, v, 1e-6, 1e6, &dv)) return 1; o.router_lr_mult = (float)dv; }
        else if (!strcmp(a, "--teacher")) { VAL(); teacher_path = v; }
        else if (!strcmp(a, "--kd")) { VAL(); if (cli_float(CMD, a, v, 0, 1, &kd)) return 1; }
        else if (!strcmp(a, "--eval-every")) { VAL(); if (cli_long(CMD, a, v, 0, INT_MAX, &lv)) return 1; o.eval_every = (int)lv; }
        else if (!strcmp(a, "--eval-windows")) { VAL(); if (cli_long(CMD, a, v, 1, 1 << 20, &lv)) return 1; o.eval_windows = (int)lv; }
        else if (!strcmp(a, "--from-scratch")) o.from_scratch = 1;
        else if (!strcmp(a, "--seed")) { VAL(); if (cli_u64(CMD, a, v, &uv)) return 1; o.seed = uv; }
        else if (!strcmp(a, "--resume")) o.resume = 1;
        else if (!strcmp(a, "--ckpt")) { VAL(); o.ckpt_path = v; }
        else if (!strcmp(a, "--ckpt-every")) { VAL(); if (cli_long(CMD, a, v, 1, INT_MAX, &lv)) return 1; o.ckpt_every = (int)lv; }
        else if (!strcmp(a, "--stop-after")) { VAL(); if (cli_long(CMD, a, v, 1, LONG_MAX, &lv)) return 1; o.stop_after = lv; }
        else if (!strcmp(a, "--quiet")) o.progress = 2;
        else if (!strcmp(a, "--threads")) { VAL(); if (cli_threads(CMD, v)) return 1; }
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) { VAL(); out = v; }
#undef VAL
        else if (a[0] == '-' && a[1]) return cli_fail(CMD, "unknown option '%s' (see --help)", a);
        else {
            if (path) return cli_fail(CMD, "unexpected argument '%s' (see --help)", a);
            path = a;
        }
    }
    if (!path) return cli_fail(CMD, "expected MODEL.gguf (see --help)");
    if (!n_texts) return cli_fail(CMD, "--text FILE is required");
    if (!out) return cli_fail(CMD, "-o OUT.gguf is required");
    char ckpt_buf[4096];
    snprintf(ckpt_buf, sizeof ckpt_buf, "%s.ckpt", out);
    if (cli_output(CMD, out) || cli_output(CMD, o.ckpt_path ? o.ckpt_path : ckpt_buf)) return 1;
    if (kd >= 0 && !teacher_path) return cli_fail(CMD, "--kd needs --teacher");

    int rc = 1;
    vm_lm *lm = NULL;
    vm_tokenizer *tok = NULL;
    vm_model *teacher = NULL;
    int32_t *train = NULL, *val = NULL;
    if (!(lm = vm_lm_load(path)) || !(tok = vm_tokenizer_from_gguf(vm_lm_model(lm)->gguf))) { cli_fail(CMD, NULL); goto done; }
    if (teacher_path && (!(teacher = vm_model_load(teacher_path)) ||
                         vm_lm_set_teacher(lm, teacher, kd >= 0 ? (float)kd : 0.5f))) {
        cli_fail(CMD, NULL);
        goto done;
    }
    int n_docs = 0, n_val_docs = 0;
    int64_t n_train = load_texts(tok, texts, n_texts, &train, &n_docs), n_val = 0;
    if (n_train < 0) { cli_fail(CMD, NULL); goto done; }
    if (val_path) {
        n_val = load_texts(tok, &val_path, 1, &val, &n_val_docs);
        if (n_val < 0) { cli_fail(CMD, NULL); goto done; }
    } else {
        // hold out the last documents: find where the last val_frac of the documents start (BOS)
        const int32_t bos = vm_tokenizer_bos(tok);
        if (bos < 0) { cli_fail(CMD, "the vocabulary has no BOS to find documents by: give --val FILE"); goto done; }
        int want = (int)(n_docs * o.val_frac + 0.5);
        if (want < 1) want = 1;
        if (want >= n_docs) { cli_fail(CMD, "%d documents are too few to hold out %d for validation (use --val)", n_docs, want); goto done; }
        int64_t cut = n_train;
        for (int seen = 0; cut > 0 && seen < want; ) if (train[--cut] == bos) seen++;
        n_val = n_train - cut;
        if (!(val = vm_malloc((size_t)n_val * sizeof *val))) { cli_fail(CMD, NULL); goto done; }
        memcpy(val, train + cut, (size_t)n_val * sizeof *val);
        n_train = cut;
        n_val_docs = want; n_docs -= want;
    }
    if (o.from_scratch) vm_lm_init_random(lm, o.seed);
    if (o.progress != 2)
        fprintf(stderr, "train: %d training documents (%lld tokens), %d validation documents (%lld tokens)\n",
                n_docs, (long long)n_train, n_val_docs, (long long)n_val);
    vm_lm_stats st;
    if (vm_lm_train(lm, train, n_train, val, n_val, &o, out, &st)) { cli_fail(CMD, NULL); goto done; }
    if (st.interrupted) {
        printf("stopped after %lld/%lld steps; continue with --resume\n", (long long)st.steps, (long long)o.steps);
    } else {
        printf("wrote %s: %lld parameters, %lld steps (%lld tokens), best step %lld\n", out, (long long)st.n_params,
               (long long)st.steps, (long long)st.tokens, (long long)st.best_step);
        printf("val loss %.4f -> %.4f (ppl %.2f -> %.2f); train %.4f -> %.4f; load balance %.3f; %.0f tok/s\n",
               st.val_init, st.val_best, exp(st.val_init), exp(st.val_best), st.train_first, st.train_last, st.lb_last,
               st.tokens_per_s);
    }
    rc = 0;
done:
    free(train); free(val);
    vm_tokenizer_free(tok);
    vm_lm_free(lm);
    vm_model_free(teacher);
    return rc;
}

// vmoer fit MODEL.gguf --data TRAIN --router KIND [options] -o ADAPTER.gguf
// Trains Bayesian (or MAP/ensemble) routers of some MoE layers on an MCQA training set and writes
// an adapter (train/fit.h, train/adapter.h).
#include "cli/cli.h"
#include "data/dataset.h"
#include "data/task.h"
#include "model/model.h"
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"
#include "train/fit.h"
#include "util/dist.h"
#include "util/err.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *CMD = "fit";

static void usage(void) {
    char kinds[256];
    vm_router_kind_list(VM_ROUTER_TRAINABLE, kinds, sizeof kinds);
    printf("usage: vmoer fit MODEL.gguf --data TRAIN --router KIND -o ADAPTER.gguf [options]\n\n"
           "Fits the routers of some MoE layers on a multiple-choice training set and writes an adapter.\n"
           "Objective per item, in ELBO form (docs/method.md §4): answer cross-entropy + beta * the sum over\n"
           "the Bayesian layers and the item's tokens of the regulariser (vglr: KL(q || prior); vtsr: the\n"
           "log-normal prior of T, (log T - log T0)^2 / 2); beta 1 is the ELBO itself. Keeps the parameters\n"
           "with the best validation NLL (the initial ones included).\n"
           "Scale-aware prior: sigma_p of each layer = the mean over tokens of the SD over the experts of the\n"
           "frozen router's logits, measured on the first 64 training prompts; vglr's prior is\n"
           "N(l_det, sigma_p^2 I), vtsr starts at and is pulled towards T0 = sigma_p sqrt(6)/pi (its Gumbel\n"
           "noise then has the prior's SD). Both are stored in the adapter.\n\n"
           "options:\n"
           "  --data PATH          training items (OBQA/ARC/SciQ/MedMCQA JSONL, MMLU CSV, generic JSONL)\n"
           "  --format NAME        data format (default: detect)\n"
           "  --limit N            use only the first N items of the file\n"
           "  --router KIND        %s (the kinds with parameters)\n"
           "  --layers SPEC        e.g. 27-31 or 3,5,7, or 'auto' (least stable under embedding noise);\n"
           "                       default: the last 5 MoE layers\n"
           "  --beta B             regulariser weight (default: the kind's, vglr 1 = the ELBO, vtsr 0.01)\n"
           "  --prior-sd X         sigma_p: 'auto' (measured per layer, default), a value > 0, or 0 for the\n"
           "                       scale-blind prior N(l_det, I) and T0 = 1 of the first specification\n"
           "  --samples S          inference samples stored in the adapter (default 35)\n"
           "  --hidden H           head width (default n_embd/4)\n"
           "  --members M          ensemble members (default 5)\n"
           "  --swag-rank K        swag: deviation columns of the low-rank covariance = snapshots (default 20)\n"
           "  --swag-every C       swag: SGD steps between snapshots of the collection phase (default: a\n"
           "                       tenth of an epoch, at least 1; the phase runs K * C steps)\n"
           "  --swag-lr LR         swag: the phase's constant plain-SGD learning rate (default --lr / the RMS\n"
           "                       of the first batch's router gradient: steps the size of AdamW's)\n"
           "  --swag-scale X       swag: covariance multiplier of the sampler (default 1; 0 = the SWA mean)\n"
           "  --map-from A.gguf    swag: skip the MAP phase and collect from this finished map adapter (fitted on\n"
           "                       the same data, layers, seed and MAP options: the same result, half the time)\n"
           "  --lora-rank R        also train a LoRA on attention Q/K/V (stage-1 task adaptation; default 0 = off)\n"
           "  --lora-alpha A       LoRA scale alpha/R (default R: scale 1)\n"
           "  --lora-layers SPEC   LoRA layers, e.g. 0-4 (default: the routers' layers)\n"
           "  --epochs E           (default 3)\n"
           "  --lr LR              peak learning rate, AdamW, 5%% warm-up, cosine decay (default 1e-3)\n"
           "  --wd WD              weight decay on 2-D head weights (default 0.01)\n"
           "  --batch B            effective batch, gradients accumulated (default 16)\n"
           "  --seed S             (default 0)\n"
           "  --val-frac F         validation fraction split off the training items (default 0.1)\n"
           "  --patience P         epochs without validation improvement before stopping (default 2)\n"
           "  --score MODE         letter (the paper's prompt), loglik (lm-eval-harness), loglik-raw (plain\n"
           "                       context, e.g. story cloze) or pmi (loglik-raw minus the choice's\n"
           "                       log-likelihood after BOS alone) (default letter)\n"
           "  --chat-template T    template name, 'auto' (from the model) or 'none' (default auto)\n"
           "  --resume             continue from the checkpoint (default ADAPTER.gguf.ckpt)\n"
           "  --ckpt PATH          checkpoint file\n"
           "  --ckpt-every N       also checkpoint every N steps\n"
           "  --stop-after N       stop after N steps in total, leaving a checkpoint (testing)\n"
           "  --no-cache           recompute the frozen lower layers every step (benchmark)\n"
           "  --quiet              no progress output\n"
           "  --threads N          worker threads\n"
           "  -o, --output FILE    adapter to write (required)\n"
           "  -h, --help           this text\n\n"
           "Data-parallel: `mpirun -np N vmoer fit ...` (a build with MPI, see vmoer --version) splits the\n"
           "items over N processes and writes the same adapter, byte for byte, as one process; rank 0 writes\n"
           "the checkpoint and the adapter, --resume may use another N; every rank must see the same model\n"
           "and data (checked). mpirun binds a rank to one core: more threads per rank need --threads T and\n"
           "mpirun --map-by slot:PE=T (docs/mpi.md).\n", kinds);
}

// The library's error; under mpirun prefixed with the rank that met it (every rank prints its own).
static int fail(void) {
    if (vm_dist_size() <= 1) return cli_fail(CMD, NULL);
    const char *msg = vm_errmsg();
    if (!strncmp(msg, "fit: ", 5)) msg += 5;
    return cli_fail(CMD, "rank %d of %d: %s", vm_dist_rank(), vm_dist_size(), msg);
}

// "27-31", "3,5,7", "2-3,6": ascending distinct layers.
static int parse_layers(const char *s, int *out, int max) {
    int n = 0;
    const char *p = s;
    while (*p) {
        char *e;
        long a = strtol(p, &e, 10), b = a;
        if (e == p || a < 0 || a > 100000) return -1;
        p = e;
        if (*p == '-') {
            b = strtol(p + 1, &e, 10);
            if (e == p + 1 || b < a || b > 100000) return -1;
            p = e;
        }
        for (long x = a; x <= b; x++) { if (n >= max) return -1; out[n++] = (int)x; }
        if (*p == ',') p++;
        else if (*p) return -1;
    }
    return n;
}

int cmd_fit(int argc, char **argv) {
    const char *path = NULL, *data = NULL, *out = NULL, *fmt = NULL, *chat = "auto", *layers = NULL, *lora_layers = NULL;
    vm_fit_opts o;
    vm_fit_opts_default(&o);
    o.kind = NULL;
    o.distributed = 1;   // one fit over the ranks of an mpirun job (one process without one)
    const int rank0 = vm_dist_rank() == 0;   // the others print nothing but errors
    long lv;
    double dv;
    uint64_t uv;
    size_t limit = 0;
    const char *swag_opt = NULL;   // the last --swag-* flag given
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(); return 0; }
#define VAL() if (!(v = cli_value(CMD, argc, argv, &i))) return 1
        else if (!strcmp(a, "--data")) { VAL(); data = v; }
        else if (!strcmp(a, "--format")) { VAL(); fmt = v; }
        else if (!strcmp(a, "--limit")) { VAL(); if (cli_long(CMD, a, v, 1, INT_MAX, &lv)) return 1; limit = (size_t)lv; }
        else if (!strcmp(a, "--router")) { VAL(); o.kind = v; }
        else if (!strcmp(a, "--layers")) { VAL(); layers = v; }
        else if (!strcmp(a, "--beta")) { VAL(); if (cli_float(CMD, a, v, 0, 1e6, &dv)) return 1; o.beta = (float)dv; }
        else if (!strcmp(a, "--prior-sd")) {
            VAL();
            if (!strcmp(v, "auto")) o.prior_sd = -1.0f;
            else if (cli_float(CMD, a, v, 0, 1e6, &dv)) return 1;
            else o.prior_sd = (float)dv;
        }
        else if (!strcmp(a, "--samples")) { VAL(); if (cli_long(CMD, a, v, 1, 100000, &lv)) return 1; o.samples = (int)lv; }
        else if (!strcmp(a, "--hidden")) { VAL(); if (cli_long(CMD, a, v, 1, 1 << 20, &lv)) return 1; o.hidden = (int)lv; }
        else if (!strcmp(a, "--members")) { VAL(); if (cli_long(CMD, a, v, 1, 1000, &lv)) return 1; o.members = (int)lv; }
        else if (!strcmp(a, "--swag-rank")) { VAL(); if (cli_long(CMD, a, v, 2, 256, &lv)) return 1; o.swag_rank = (int)lv; swag_opt = a; }
        else if (!strcmp(a, "--swag-every")) { VAL(); if (cli_long(CMD, a, v, 1, 1000000, &lv)) return 1; o.swag_every = (int)lv; swag_opt = a; }
        else if (!strcmp(a, "--swag-lr")) { VAL(); if (cli_float(CMD, a, v, 1e-12, 1e3, &dv)) return 1; o.swag_lr = (float)dv; swag_opt = a; }
        else if (!strcmp(a, "--swag-scale")) { VAL(); if (cli_float(CMD, a, v, 0, 1e6, &dv)) return 1; o.swag_scale = (float)dv; swag_opt = a; }
        else if (!strcmp(a, "--map-from")) { VAL(); o.map_from = v; swag_opt = a; }
        else if (!strcmp(a, "--lora-rank")) { VAL(); if (cli_long(CMD, a, v, 1, 64, &lv)) return 1; o.lora_rank = (int)lv; }
        else if (!strcmp(a, "--lora-alpha")) { VAL(); if (cli_float(CMD, a, v, 1e-6, 1e6, &dv)) return 1; o.lora_alpha = (float)dv; }
        else if (!strcmp(a, "--lora-layers")) { VAL(); lora_layers = v; }
        else if (!strcmp(a, "--epochs")) { VAL(); if (cli_long(CMD, a, v, 1, 100000, &lv)) return 1; o.epochs = (int)lv; }
        else if (!strcmp(a, "--lr")) { VAL(); if (cli_float(CMD, a, v, 1e-12, 10, &dv)) return 1; o.lr = (float)dv; }
        else if (!strcmp(a, "--wd")) { VAL(); if (cli_float(CMD, a, v, 0, 10, &dv)) return 1; o.wd = (float)dv; }
        else if (!strcmp(a, "--batch")) { VAL(); if (cli_long(CMD, a, v, 1, 1 << 20, &lv)) return 1; o.batch = (int)lv; }
        else if (!strcmp(a, "--seed")) { VAL(); if (cli_u64(CMD, a, v, &uv)) return 1; o.seed = uv; }
        else if (!strcmp(a, "--val-frac")) { VAL(); if (cli_float(CMD, a, v, 0, 0.9, &dv)) return 1; o.val_frac = (float)dv; }
        else if (!strcmp(a, "--patience")) { VAL(); if (cli_long(CMD, a, v, 1, 100000, &lv)) return 1; o.patience = (int)lv; }
        else if (!strcmp(a, "--score")) { VAL(); if (vm_task_mode_parse(v, &o.mode)) return cli_fail(CMD, NULL); }
        else if (!strcmp(a, "--chat-template")) { VAL(); chat = v; }
        else if (!strcmp(a, "--resume")) o.resume = 1;
        else if (!strcmp(a, "--ckpt")) { VAL(); o.ckpt_path = v; }
        else if (!strcmp(a, "--ckpt-every")) { VAL(); if (cli_long(CMD, a, v, 1, INT_MAX, &lv)) return 1; o.ckpt_every = (int)lv; }
        else if (!strcmp(a, "--stop-after")) { VAL(); if (cli_long(CMD, a, v, 1, LONG_MAX, &lv)) return 1; o.stop_after = lv; }
        else if (!strcmp(a, "--no-cache")) o.no_cache = 1;
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
    if (!data) return cli_fail(CMD, "--data TRAIN is required");
    if (!o.kind) {
        char kinds[256];
        return cli_fail(CMD, "--router KIND is required (%s)", vm_router_kind_list(VM_ROUTER_TRAINABLE, kinds, sizeof kinds));
    }
    if (!out) return cli_fail(CMD, "-o ADAPTER.gguf is required");
    const vm_router_ops *kops = vm_router_kind_ops(o.kind);
    if (swag_opt && kops && !kops->collect) return cli_fail(CMD, "%s applies to --router swag only", swag_opt);
    if (o.map_from && o.resume) return cli_fail(CMD, "--map-from runs no MAP loop: nothing to --resume");
    char ckpt_buf[4096];   // the checkpoint is written during the fit: check it now, not after it
    snprintf(ckpt_buf, sizeof ckpt_buf, "%s.ckpt", out);
    if (cli_output(CMD, out) || cli_output(CMD, o.ckpt_path ? o.ckpt_path : ckpt_buf)) return 1;
    if (layers) {
        if (!strcmp(layers, "auto")) o.layers_auto = 1;
        else if ((o.n_layers = parse_layers(layers, o.layers, VM_ADAPTER_MAX_LAYERS)) <= 0)
            return cli_fail(CMD, "--layers: expected e.g. 27-31, 3,5,7 or auto, got '%s'", layers);
    }
    if (lora_layers) {
        if (!o.lora_rank) return cli_fail(CMD, "--lora-layers needs --lora-rank");
        if ((o.n_lora = parse_layers(lora_layers, o.lora_layers, VM_ADAPTER_MAX_LAYERS)) <= 0)
            return cli_fail(CMD, "--lora-layers: expected e.g. 0-4 or 1,3, got '%s'", lora_layers);
    }
    vm_dataset_opts dop;
    vm_dataset_opts_default(&dop);
    dop.limit = limit;
    if (fmt && vm_mcq_format_parse(fmt, &dop.format)) return cli_fail(CMD, NULL);

    int rc = 1;
    vm_model *m = NULL;
    vm_tokenizer *tok = NULL;
    vm_dataset ds;
    memset(&ds, 0, sizeof ds);
    char note[256] = "";
    if (!(m = vm_model_load(path)) || !(tok = vm_tokenizer_from_gguf(m->gguf))) { fail(); goto done; }
    if ((o.tmpl = vm_chat_pick_gguf(m->gguf, strcmp(chat, "auto") ? chat : NULL, note, sizeof note)) < 0) { fail(); goto done; }
    if (note[0] && o.progress != 2 && rank0) fprintf(stderr, "fit: %s\n", note);
    if (vm_dataset_load(&ds, data, &dop)) { fail(); goto done; }
    vm_fit_stats st;
    if (vm_fit_run(m, tok, &ds, &o, out, &st)) { fail(); goto done; }
    if (!rank0) {
    } else if (st.interrupted) {
        printf("stopped after %lld/%lld steps; continue with --resume\n", (long long)st.steps, (long long)st.total_steps);
    } else {
        printf("wrote %s: %s on %d layers (", out, o.kind, st.n_layers);
        for (int i = 0; i < st.n_layers; i++) printf("%s%d", i ? "," : "", st.layers[i]);
        if (o.lora_rank) printf(") + LoRA rank %d on Q/K/V (", o.lora_rank);
        if (o.lora_rank) for (int i = 0, n = 0; i < m->hp.n_layer; i++) if (m->loras && m->loras[i]) printf("%s%d", n++ ? "," : "", i);
        printf("), %lld steps, %d epochs, best epoch %d\n", (long long)st.steps, st.epochs_run, st.best_epoch);
        if (o.map_from) {   // no MAP loop ran: say where its result came from instead of "ce 0 -> 0"
            printf("MAP phase from %s", o.map_from);
            if (st.n_val > 0) printf(": val nll %.4f, val acc %.3f", st.val_nll_init, st.val_acc_init);
            printf("\n");
        } else {
        printf("train ce %.4f -> %.4f; ", st.train_ce_first, st.train_ce_last);
        if (st.n_val > 0)
            printf("val nll %.4f -> %.4f, val acc %.3f -> %.3f", st.val_nll_init, st.val_nll_best, st.val_acc_init,
                   st.val_acc_best);
        else   // nothing to measure: not "nan -> inf"
            printf("no validation items (--val-frac 0): the adapter is the last epoch's");
        printf("; %.0f tok/s\n", st.tokens_per_s);
        }
        if (st.swag_snapshots) {
            printf("%s: %d snapshots, one every %d SGD steps at lr %g", o.kind, st.swag_snapshots, st.swag_every,
                   (double)st.swag_lr);
            if (st.n_val > 0) printf("; val nll %.4f, val acc %.3f (sampled)", st.swag_val_nll, st.swag_val_acc);
            printf("\n");
        }
        if (o.layers_auto) {
            printf("layer jaccard (gamma %.3g):", (double)o.auto_gamma);
            for (int il = 0; il < m->hp.n_layer && il < VM_ADAPTER_MAX_LAYERS; il++)
                if (st.jaccard[il] == st.jaccard[il]) printf(" %d:%.4f", il, st.jaccard[il]);
            printf("\n");
        }
    }
    rc = 0;
done:
    vm_dataset_free(&ds);
    vm_tokenizer_free(tok);
    vm_model_free(m);
    return rc;
}

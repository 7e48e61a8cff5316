// The public API's composite calls (include/vmoer.h): loading a model with an adapter, fitting and
// evaluating from a data file, and the *_default_params() of every options struct. Each is the
// library's own pipeline (adapter.c, fit.c, eval.c, gen.c) behind a plain struct of options, so a
// C program does what `vmoer fit` / `vmoer eval` do without the internal headers. This folder sits
// on top of the library (below cli only): nothing inside the library calls it.
#include "vmoer.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "data/task.h"
#include "eval/eval.h"
#include "gen/gen.h"
#include "model/model.h"
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"
#include "train/adapter.h"
#include "train/fit.h"
#include "util/err.h"

// ---------------------------------------------------------------- defaults

vm_model_params vm_model_default_params(void) { return (vm_model_params){ .adapter = NULL, .samples = 0 }; }

vm_router_opts vm_router_default_params(void) {
    vm_router_opts o;
    vm_router_opts_default(&o);
    return o;
}

vm_gen_params vm_gen_default_params(void) {
    vm_gen_params p;
    vm_gen_params_default(&p);
    return p;
}

const char *vm_unc_name(int u) { return vm_gen_unc_name(u); }

// Taken from vm_fit_opts_default so that the CLI and the library can never disagree on a default.
vm_fit_params vm_fit_default_params(void) {
    vm_fit_opts o;
    vm_fit_opts_default(&o);
    return (vm_fit_params){ .kind = o.kind, .score = vm_task_mode_name(o.mode), .epochs = o.epochs,
                            .batch = o.batch, .patience = o.patience, .lr = o.lr, .val_frac = o.val_frac,
                            .beta = o.beta, .seed = o.seed };
}

vm_eval_params vm_eval_default_params(void) {
    return (vm_eval_params){ .score = vm_task_mode_name(VM_TASK_LETTER), .passes = VM_EVAL_PASSES, .bins = 10 };
}

// ---------------------------------------------------------------- threads

int vm_set_threads(int n) {
    if (n < 1 || n > 1024) return vm_err("threads: %d not in 1..1024", n);
    omp_set_num_threads(n);
    return 0;
}

// ---------------------------------------------------------------- models

vm_model *vm_model_load_params(const char *path, const vm_model_params *p) {
    const vm_model_params def = vm_model_default_params();
    if (!p) p = &def;
    if (!path) { vm_err("model: no path given"); return NULL; }
    if (p->samples < 0) { vm_err("model: bad sample count %d", p->samples); return NULL; }
    vm_model *m = vm_model_load(path);
    if (m && p->adapter && vm_adapter_apply_ex(m, p->adapter, p->samples, NULL)) {
        vm_model_free(m);
        return NULL;
    }
    return m;
}

// ---------------------------------------------------------------- shared by fit and evaluate

// What fit and evaluate both need before scoring anything: the tokenizer, the chat template and the
// items, with the same choices `vmoer fit` and `vmoer eval` make for the same options.
typedef struct task_data {
    vm_tokenizer *tok;
    int tmpl;
    vm_task_mode mode;
    vm_dataset ds;
} task_data;

static void task_data_free(task_data *d) {
    vm_tokenizer_free(d->tok);
    vm_dataset_free(&d->ds);
    memset(d, 0, sizeof *d);
}

static int task_data_load(task_data *d, const vm_model *m, const char *data_path, const char *score,
                          const char *chat_template, const char *format, long limit) {
    memset(d, 0, sizeof *d);
    if (!m) return vm_err("no model given");
    if (!data_path) return vm_err("no data file given");
    if (limit < 0) return vm_err("bad item limit %ld", limit);
    if (vm_task_mode_parse(score ? score : "letter", &d->mode)) return -1;
    vm_dataset_opts dop;
    vm_dataset_opts_default(&dop);
    dop.limit = (size_t)limit;
    if (format && vm_mcq_format_parse(format, &dop.format))
        return vm_err("unknown dataset format '%s'", format);
    if (!(d->tok = vm_tokenizer_from_gguf(vm_model_gguf(m)))) return -1;
    if ((d->tmpl = vm_chat_pick_gguf(vm_model_gguf(m), chat_template, NULL, 0)) < 0) { task_data_free(d); return -1; }
    if (vm_dataset_load(&d->ds, data_path, &dop)) { task_data_free(d); return -1; }
    return 0;
}

// ---------------------------------------------------------------- fit

int vm_fit(vm_model *m, const char *data_path, const char *out_path, const vm_fit_params *p, vm_fit_result *r) {
    const vm_fit_params def = vm_fit_default_params();
    if (!p) p = &def;
    if (r) memset(r, 0, sizeof *r);
    if (!out_path) return vm_err("fit: no output path given");
    if (p->n_layers < 0 || p->n_layers > VM_ADAPTER_MAX_LAYERS || (p->n_layers && !p->layers))
        return vm_err("fit: bad layer list (%d layers)", p->n_layers);
    if (p->samples < 0 || p->hidden < 0 || p->members < 0 || p->lora_rank < 0)
        return vm_err("fit: negative samples, hidden, members or lora rank");
    vm_fit_opts o;
    vm_fit_opts_default(&o);
    o.kind = p->kind ? p->kind : o.kind;
    o.n_layers = p->n_layers;
    if (p->n_layers) memcpy(o.layers, p->layers, (size_t)p->n_layers * sizeof(int));
    o.epochs = p->epochs; o.batch = p->batch; o.patience = p->patience;
    o.lr = p->lr; o.val_frac = p->val_frac; o.beta = p->beta;
    o.samples = p->samples; o.hidden = p->hidden; o.members = p->members;
    o.seed = p->seed; o.lora_rank = p->lora_rank;
    o.progress = p->verbose ? 0 : 2;
    task_data d;
    if (task_data_load(&d, m, data_path, p->score, p->chat_template, p->format, p->limit))
        return vm_err_prefix("fit");
    o.mode = d.mode;
    o.tmpl = d.tmpl;
    vm_fit_stats st;
    const int rc = vm_fit_run(m, d.tok, &d.ds, &o, out_path, &st);
    task_data_free(&d);
    if (rc) return -1;
    if (r) *r = (vm_fit_result){ .n_train = st.n_train, .n_val = st.n_val, .n_layers = st.n_layers,
                                 .epochs_run = st.epochs_run, .best_epoch = st.best_epoch, .steps = st.steps,
                                 .val_nll_init = st.val_nll_init, .val_nll_best = st.val_nll_best,
                                 .val_acc_init = st.val_acc_init, .val_acc_best = st.val_acc_best,
                                 .seconds = st.seconds };
    return 0;
}

// ---------------------------------------------------------------- evaluate

struct vm_evaluation {
    vm_dataset ds;         // the items' ids are borrowed by set
    vm_eval_set set;
    vm_eval_metrics metrics;
};

// The headline numbers of `vmoer eval`'s metrics.json for the in-distribution set
// (vm_eval_set_headline), and the mean of each uncertainty score over the items that have it.
static int eval_metrics(const vm_eval_set *s, int bins, vm_eval_metrics *out) {
    if (vm_eval_set_headline(s, bins, &out->acc, &out->nll, &out->brier, &out->ece)) return -1;
    for (int u = 0; u < VM_EVAL_UNC_COUNT; u++) {
        double sum = 0.0;
        int cnt = 0;
        for (int i = 0; i < s->n; i++) if (isfinite(s->items[i].unc[u])) { sum += s->items[i].unc[u]; cnt++; }
        out->unc_mean[u] = cnt ? sum / cnt : NAN;
    }
    return 0;
}

vm_evaluation *vm_evaluate(vm_model *m, const char *data_path, const vm_eval_params *p) {
    const vm_eval_params def = vm_eval_default_params();
    if (!p) p = &def;
    if (p->passes < 0 || p->bins < 1 || p->bins > 1000) {
        vm_err("evaluate: bad passes %d or bins %d (1..1000)", p->passes, p->bins);
        return NULL;
    }
    task_data d;
    if (task_data_load(&d, m, data_path, p->score, p->chat_template, p->format, p->limit)) {
        vm_err_prefix("evaluate");
        return NULL;
    }
    vm_evaluation *e = vm_calloc(1, sizeof *e);
    vm_task task;
    vm_task_init(&task, d.tok, d.mode, d.tmpl, vm_model_n_ctx_train(m));
    vm_eval_opts eo = { .passes = p->passes, .seed = p->seed };
    if (!e || vm_eval_run(m, &task, &d.ds, "id", &eo, &e->set)) goto fail;
    e->ds = d.ds;
    memset(&d.ds, 0, sizeof d.ds);
    e->metrics.n = e->set.n;
    e->metrics.n_skipped = e->set.n_skipped;
    e->metrics.seconds = e->set.seconds;
    if (eval_metrics(&e->set, p->bins, &e->metrics)) goto fail;
    task_data_free(&d);
    return e;
fail:
    vm_err_prefix("evaluate");
    task_data_free(&d);
    vm_evaluation_free(e);
    return NULL;
}

void vm_evaluation_free(vm_evaluation *e) {
    if (!e) return;
    vm_eval_set_free(&e->set);
    vm_dataset_free(&e->ds);
    free(e);
}

int vm_evaluation_metrics(const vm_evaluation *e, vm_eval_metrics *out) {
    if (!e || !out) return vm_err("evaluation: no evaluation or output given");
    *out = e->metrics;
    return 0;
}

int vm_evaluation_n_items(const vm_evaluation *e) {
    return e ? e->set.n : vm_err("evaluation: no evaluation given");
}

int vm_evaluation_item(const vm_evaluation *e, int i, int *answer, int *pred, int *n_choices, double *unc) {
    if (!e) return vm_err("evaluation: no evaluation given");
    if (i < 0 || i >= e->set.n) return vm_err("evaluation: item %d out of range (%d items)", i, e->set.n);
    const vm_eval_item *it = &e->set.items[i];
    if (answer) *answer = it->answer;
    if (pred) *pred = it->pred;
    if (n_choices) *n_choices = it->n_choices;
    if (unc) memcpy(unc, it->unc, sizeof it->unc);
    return 0;
}

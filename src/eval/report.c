// The whole evaluation as one library call (vmoer.h vm_eval_report): the composition `vmoer eval`
// runs (sets, scoring, temperature-scaling set, stability, cost, the output folder), kept below the
// CLI so that the C API and Python get the same metrics.json as the command line.
#include "data/dataset.h"
#include "data/task.h"
#include "eval/eval.h"
#include "model/model.h"
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"
#include "util/dist.h"
#include "util/err.h"
#include "util/fileio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_OOD 16
static const double default_grid[] = { 0, 0.001, 0.002, 0.005, 0.007, 0.01, 0.02, 0.05 };

vm_eval_report_params vm_eval_report_default_params(void) {
    return (vm_eval_report_params){ .score = "letter", .bins = 10, .boot = 1000, .n_noise = -1,
                                    .stability_limit = -1, .time_items = 50 };
}

// A set: NAME=PATH[@SUBJECT] (named) or PATH[@SUBJECT], its path resolved.
typedef struct set_arg { char *name, *path, *subject; } set_arg;

static int exists(const char *p) { struct stat st; return stat(p, &st) == 0; }

// A data argument: an existing path, or a folder name under $VMOER_SHARED/data/mcqa (test, else dev,
// else validation split).
static char *resolve_data(const char *arg) {
    if (exists(arg)) return vm_strdup(arg);
    const char *sh = getenv("VMOER_SHARED");
    if (!sh) sh = "../shared";
    static const char *const files[] = { "test.jsonl", "dev.jsonl", "validation.jsonl" };
    char buf[4096];
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(buf, sizeof buf, "%s/data/mcqa/%s/%s", sh, arg, files[i]);
        if (exists(buf)) return vm_strdup(buf);
    }
    vm_err("data '%s': no such file, and no %s/data/mcqa/%s/{test,dev,validation}.jsonl", arg, sh, arg);
    return NULL;
}

static int parse_set(const char *what, const char *v, int named, set_arg *out) {
    memset(out, 0, sizeof *out);
    if (!v) return vm_err("%s: no set given", what);
    char *s = vm_strdup(v);
    if (!s) return -1;
    char *path = s;
    if (named) {
        char *eq = strchr(s, '=');
        if (!eq || eq == s || !eq[1]) { free(s); return vm_err("%s expects NAME=PATH, got '%s'", what, v); }
        *eq = 0;
        path = eq + 1;
        out->name = vm_strdup(s);
    }
    char *at = strrchr(path, '@');
    if (at && at[1]) { *at = 0; out->subject = vm_strdup(at + 1); }
    out->path = resolve_data(path);
    free(s);
    return out->path ? 0 : -1;
}

static void set_free(set_arg *a) { free(a->name); free(a->path); free(a->subject); }

static int load_set(const set_arg *a, long limit, vm_mcq_format fmt, vm_dataset *ds) {
    vm_dataset_opts o;
    vm_dataset_opts_default(&o);
    o.format = fmt;
    o.limit = (size_t)limit;
    o.subject = a->subject;
    return vm_dataset_load(ds, a->path, &o);
}

// Everything one evaluation holds, freed in one place.
typedef struct report {
    const vm_eval_report_params *p;
    int n_ood, n_sets, n_gamma;
    const double *grid;
    set_arg id_arg, val_arg, oods[MAX_OOD];
    vm_dataset ds_id, ds_val, ds_ood[MAX_OOD];
    vm_eval_set sets[1 + MAX_OOD], val;
    vm_stability st;
    vm_cost cost;
    vm_tokenizer *tok;
    vm_task_mode mode;
    vm_mcq_format fmt;
} report;

static void report_free(report *r) {
    for (int i = 0; i < r->n_sets; i++) vm_eval_set_free(&r->sets[i]);
    vm_eval_set_free(&r->val);
    vm_stability_free(&r->st);
    vm_dataset_free(&r->ds_id);
    vm_dataset_free(&r->ds_val);
    for (int i = 0; i < r->n_ood; i++) { vm_dataset_free(&r->ds_ood[i]); set_free(&r->oods[i]); }
    set_free(&r->id_arg);
    set_free(&r->val_arg);
    vm_tokenizer_free(r->tok);
}

// The parameters and the sets' names, before anything is loaded or scored.
static int report_check(report *r, const vm_model *m, const char *data, const char *outdir) {
    const vm_eval_report_params *p = r->p;
    if (!m) return vm_err("no model given");
    if (!data) return vm_err("no data set given");
    if (!outdir) return vm_err("no output folder given");
    if (vm_output_dir_check(outdir, vm_eval_output_names)) return -1;
    if (p->n_ood < 0 || p->n_ood > MAX_OOD || (p->n_ood && !p->ood))
        return vm_err("bad OOD set list (%d sets; at most %d)", p->n_ood, MAX_OOD);
    if (p->limit < 0 || p->passes < 0 || p->bins < 1 || p->bins > 1000 || p->boot < 0 || p->time_items < 1)
        return vm_err("bad limit %ld, passes %d, bins %d (1..1000), boot %d or time items %d", p->limit,
                      p->passes, p->bins, p->boot, p->time_items);
    if (p->n_noise > 0 && !p->noise_grid) return vm_err("a noise grid of %d levels given without its values", p->n_noise);
    for (int i = 0; i < p->n_noise; i++)
        if (!(p->noise_grid[i] >= 0.0) || p->noise_grid[i] > 10.0)
            return vm_err("noise level %g out of [0, 10]", p->noise_grid[i]);
    if (vm_task_mode_parse(p->score ? p->score : "letter", &r->mode)) return -1;
    r->fmt = VM_MCQ_FORMAT_AUTO;
    if (p->format && vm_mcq_format_parse(p->format, &r->fmt)) return -1;
    if (p->n_noise < 0) { r->grid = default_grid; r->n_gamma = (int)(sizeof default_grid / sizeof *default_grid); }
    else { r->grid = p->noise_grid; r->n_gamma = p->n_noise; }
    return 0;
}

static int report_load(report *r) {
    const vm_eval_report_params *p = r->p;
    if (p->val && parse_set("--val", p->val, 0, &r->val_arg)) return -1;
    if (p->val && !strcmp(r->val_arg.path, r->id_arg.path))   // temperature is never fitted on the test set
        return vm_err("--val %s is the evaluation set itself; give a validation split", r->val_arg.path);
    for (int i = 0; i < p->n_ood; i++) {
        r->n_ood = i + 1;
        if (parse_set("--ood", p->ood[i], 1, &r->oods[i])) return -1;
        if (!strcmp(r->oods[i].name, "id")) return vm_err("--ood: the name 'id' is reserved");
        for (int j = 0; j < i; j++)
            if (!strcmp(r->oods[i].name, r->oods[j].name)) return vm_err("--ood: name '%s' given twice", r->oods[i].name);
    }
    if (load_set(&r->id_arg, p->limit, r->fmt, &r->ds_id)) return -1;
    if (p->val && load_set(&r->val_arg, p->limit, r->fmt, &r->ds_val)) return -1;
    for (int i = 0; i < r->n_ood; i++)
        if (load_set(&r->oods[i], p->limit, r->fmt, &r->ds_ood[i])) return -1;
    return 0;
}

// Scores every set with the model's routers, then stability and cost.
static int report_run(report *r, vm_model *m, const vm_task *task, const vm_eval_opts *eo) {
    const vm_eval_report_params *p = r->p;
    if (vm_eval_run(m, task, &r->ds_id, "id", eo, &r->sets[0])) return -1;
    r->n_sets = 1;
    if (p->verbose)
        fprintf(stderr, "vmoer eval: id: %d items (%d skipped) in %.1f s\n", r->sets[0].n, r->sets[0].n_skipped,
                r->sets[0].seconds);
    for (int i = 0; i < r->n_ood; i++) {
        vm_eval_set *s = &r->sets[1 + i];
        if (vm_eval_run(m, task, &r->ds_ood[i], r->oods[i].name, eo, s)) return -1;
        r->n_sets++;
        if (p->verbose) fprintf(stderr, "vmoer eval: %s: %d items (%d skipped) in %.1f s\n", r->oods[i].name, s->n, s->n_skipped, s->seconds);
    }
    if (p->val) {
        if (vm_eval_run(m, task, &r->ds_val, "val", eo, &r->val)) return -1;
        if (p->verbose) fprintf(stderr, "vmoer eval: val: %d items in %.1f s\n", r->val.n, r->val.seconds);
    }
    if (r->n_gamma > 0) {
        vm_dataset sub = r->ds_id;
        if (p->stability_limit > 0 && (size_t)p->stability_limit < sub.n) sub.n = (size_t)p->stability_limit;
        if (vm_stability_run_dist(m, task, &sub, r->n_gamma, r->grid, p->seed, p->distributed, &r->st)) return -1;
        if (p->verbose) fprintf(stderr, "vmoer eval: stability over %lld tokens, L_bar %.4g\n", r->st.n_tokens, r->st.L_bar);
    }
    // cost: attention span averaged over every scored token of the in-distribution prompts
    double num = 0, den = 0;
    for (int i = 0; i < r->sets[0].n; i++) {
        const double T = r->sets[0].items[i].n_tokens;
        num += T * (T + 1) / 2;
        den += T;
    }
    if (vm_cost_flops(m, den > 0 ? num / den : 1, &r->cost)) return -1;
    // the timed passes run on the rank that writes them alone, undisturbed by the others' on its node
    if ((!p->distributed || vm_dist_rank() == 0) && vm_cost_time(m, task, &r->ds_id, p->time_items, &r->cost))
        return -1;
    r->cost.passes = eo->passes;
    return 0;
}

int vm_eval_report(vm_model *m, const char *data, const char *outdir, const vm_eval_report_params *p) {
    const vm_eval_report_params def = vm_eval_report_default_params();
    report r;
    memset(&r, 0, sizeof r);
    r.p = p ? p : &def;
    p = r.p;
    int rc = -1;
    if (report_check(&r, m, data, outdir)) goto done;
    if (vm_model_n_expert(m) == 0) { vm_err("%s is a dense model (no MoE layer to route)", p->model_label ? p->model_label : "the model"); goto done; }
    if (parse_set("--data", data, 0, &r.id_arg) || report_load(&r)) goto done;
    char kind[64];
    snprintf(kind, sizeof kind, "%s", vm_eval_model_router(m) ? vm_eval_model_router(m) : "deterministic");
    if (!(r.tok = vm_tokenizer_from_gguf(vm_model_gguf(m)))) goto done;
    char note[256] = "";
    const char *tmpl_name = p->chat_template && strcmp(p->chat_template, "auto") ? p->chat_template : NULL;
    const int tmpl = vm_chat_pick_gguf(vm_model_gguf(m), tmpl_name, note, sizeof note);
    if (tmpl < 0) goto done;
    if (note[0] && p->verbose) fprintf(stderr, "vmoer eval: %s\n", note);
    vm_task task;
    vm_task_init(&task, r.tok, r.mode, tmpl, m->hp.n_ctx_train);
    const int sampled = vm_eval_kind_sampled(kind) || !strcmp(kind, "mixed");
    const vm_eval_opts eo = { .passes = sampled ? (p->passes ? p->passes : VM_EVAL_PASSES) : 1, .seed = p->seed,
                              .distributed = p->distributed };
    if (p->verbose)
        fprintf(stderr, "vmoer eval: router %s, %s scoring, template %s, %d pass(es) per question\n", kind,
                vm_task_mode_name(r.mode), vm_chat_name(tmpl), eo.passes);
    if (report_run(&r, m, &task, &eo)) goto done;
    const vm_eval_write_opts wo = { .outdir = outdir, .model_path = p->model_label, .adapter_path = p->adapter_label,
                                    .data_path = r.id_arg.path, .router = kind, .score = vm_task_mode_name(r.mode),
                                    .val_path = p->val ? r.val_arg.path : NULL, .bins = p->bins, .boot = p->boot,
                                    .seed = p->seed, .passes = eo.passes, .distributed = p->distributed };
    if (vm_eval_write(&wo, r.n_sets, r.sets, p->val ? &r.val : NULL, r.n_gamma > 0 ? &r.st : NULL, &r.cost)) goto done;
    if (p->verbose) fprintf(stderr, "vmoer eval: wrote %s/{questions.jsonl,metrics.json,report.html,...}\n", outdir);
    rc = 0;
done:
    if (rc) vm_err_prefix("eval");
    report_free(&r);
    return rc;
}

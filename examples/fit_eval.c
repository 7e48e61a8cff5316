// Fit a VGLR adapter on the last MoE layer of a model, evaluate the model before and after, and
// load the adapter back as a user of the written file would; with OUTDIR, the whole evaluation
// `vmoer eval` runs (metrics.json, CSVs, report.html) of the reloaded model. Uses only <vmoer.h>.
//   fit_eval MODEL.gguf TRAIN.jsonl TEST.jsonl OUT_ADAPTER.gguf [OUTDIR]
#include <math.h>
#include <stdio.h>
#include <vmoer.h>

static int report(const char *what, vm_model *m, const char *test, vm_eval_metrics *out) {
    vm_eval_params ep = vm_eval_default_params();
    ep.limit = 24;
    ep.score = "pmi";   // the cloze task: which continuation is likelier after the context than alone
    vm_evaluation *e = vm_evaluate(m, test, &ep);
    if (!e || vm_evaluation_metrics(e, out)) { vm_evaluation_free(e); return -1; }
    printf("%-9s %d items: acc %.3f  nll %.4f  ece %.4f  entropy %.4f  ilv %.4f\n", what, out->n, out->acc,
           out->nll, out->ece, out->unc_mean[VM_EVAL_UNC_ENTROPY], out->unc_mean[VM_EVAL_UNC_ILV]);
    vm_evaluation_free(e);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: %s MODEL.gguf TRAIN.jsonl TEST.jsonl OUT.gguf [OUTDIR]\n", argv[0]); return 2; }
    vm_model *m = vm_model_load(argv[1]);
    int last = -1;
    for (int il = 0; m && il < vm_model_n_layer(m); il++) if (vm_model_is_moe_layer(m, il)) last = il;
    vm_eval_metrics base, fitted, loaded;
    if (!m || last < 0 || report("pretrained", m, argv[3], &base)) goto fail;

    vm_fit_params fp = vm_fit_default_params();
    fp.kind = "vglr-mf";
    fp.layers = &last;
    fp.n_layers = 1;
    fp.limit = 48;
    fp.score = "pmi";
    fp.epochs = 1;
    fp.batch = 8;
    fp.lr = 1e-2f;
    fp.seed = 1;
    vm_fit_result fr;
    if (vm_fit(m, argv[2], argv[4], &fp, &fr)) goto fail;
    printf("fit: layer %d, %d train / %d validation items, %lld steps, val nll %.4f -> %.4f\n", last,
           fr.n_train, fr.n_val, fr.steps, fr.val_nll_init, fr.val_nll_best);
    if (report("fitted", m, argv[3], &fitted)) goto fail;
    vm_model_free(m);

    vm_model_params mp = vm_model_default_params();
    mp.adapter = argv[4];
    if (!(m = vm_model_load_params(argv[1], &mp)) || report("reloaded", m, argv[3], &loaded)) goto fail;
    if (argc > 5) {   // as `vmoer eval MODEL --adapter OUT.gguf --data TEST --limit 24 --score pmi -o OUTDIR`
        vm_eval_report_params rp = vm_eval_report_default_params();
        rp.limit = 24;
        rp.score = "pmi";
        rp.n_noise = 0;   // no stability runs: quick
        rp.model_label = argv[1];
        rp.adapter_label = argv[4];
        if (vm_eval_report(m, argv[3], argv[5], &rp)) goto fail;
        printf("report: %s/metrics.json\n", argv[5]);
    }
    vm_model_free(m);
    // The adapter is the fitted routers: reloaded, the model scores the items exactly as before.
    // VGLR has an ILV read-out, the pretrained router none.
    const int ok = loaded.nll == fitted.nll && loaded.acc == fitted.acc && isfinite(fitted.unc_mean[VM_EVAL_UNC_ILV]) &&
                   isnan(base.unc_mean[VM_EVAL_UNC_ILV]);
    printf("%s\n", ok ? "ok" : "MISMATCH");
    return ok ? 0 : 1;
fail:
    fprintf(stderr, "fit_eval: %s\n", vm_errmsg());
    vm_model_free(m);
    return 1;
}

// A router kind written outside the library: "sharpen" divides the pretrained router's logits by a
// temperature tau before the layer's gate convention, a one-parameter knob on how peaked routing is.
// It implements the public vm_router_ops (a forward is all inference needs) and is set on every MoE
// layer with vm_model_set_router. With tau = 1 it must reproduce the pretrained router bit for bit;
// with tau = 0.5 the model's logits must change. Uses only <vmoer.h>.
//   custom_router MODEL.gguf
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vmoer.h>

typedef struct { vm_router r; float tau; } sharpen;   // the base struct first: free() gets it back

static int sharpen_forward(vm_router *r, const vm_router_layer *L, const float *u, int T,
                           vm_router_out *out, vm_rng *rng) {
    (void)rng;   // deterministic: draws nothing
    const float tau = ((sharpen *)r)->tau;
    const int N = L->n_expert, K = L->n_expert_used;
    vm_router_logits(L, u, T, out->logits);   // W_r u, whatever W_r's storage type
    for (int t = 0; t < T; t++) {
        float *l = out->logits + (size_t)t * N;
        for (int e = 0; e < N; e++) l[e] /= tau;
        vm_gate_from_logits(L, l, out->probs + (size_t)t * N, out->sel + (size_t)t * K, out->gates + (size_t)t * K);
        if (out->unc) {   // the read-outs this kind declares; NaN for the others
            float *u_t = out->unc + (size_t)t * VM_UNC_COUNT;
            for (int k = 0; k < VM_UNC_COUNT; k++) u_t[k] = NAN;
            u_t[VM_UNC_GATE_ENTROPY] = vm_gate_entropy(out->probs + (size_t)t * N, N);
            u_t[VM_UNC_TEMPERATURE] = tau;
        }
    }
    return 0;
}

static void sharpen_free(vm_router *r) { free(r); }

static const vm_router_ops sharpen_ops = {
    .name = "sharpen",
    .unc = VM_UNC_BIT(VM_UNC_GATE_ENTROPY) | VM_UNC_BIT(VM_UNC_TEMPERATURE),
    .forward = sharpen_forward,
    .free = sharpen_free,
};

static vm_router *sharpen_new(float tau) {
    sharpen *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->r.ops = &sharpen_ops;
    s->tau = tau;
    return &s->r;
}

// Every MoE layer gets a sharpen router with this tau; then the logits of the prompt.
static int logits_with(vm_model *m, float tau, const int32_t *ids, int n, float *logits) {
    for (int il = 0; il < vm_model_n_layer(m); il++)
        if (vm_model_is_moe_layer(m, il) && vm_model_set_router(m, il, sharpen_new(tau))) return -1;
    vm_ctx *c = vm_ctx_init(m, 0, 64);
    const int rc = c ? vm_ctx_eval(c, ids, n, logits) : -1;
    vm_ctx_free(c);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s MODEL.gguf\n", argv[0]); return 2; }
    vm_model *m = vm_model_load(argv[1]);
    if (!m) { fprintf(stderr, "custom_router: %s\n", vm_errmsg()); return 1; }
    const int32_t ids[] = { 1, 403, 407, 261, 378, 300, 290 };
    const int n = (int)(sizeof ids / sizeof ids[0]), V = vm_model_n_vocab(m);
    float *ref = malloc(sizeof(float) * n * V), *one = malloc(sizeof(float) * n * V), *half = malloc(sizeof(float) * n * V);
    vm_ctx *c = vm_ctx_init(m, 0, 64);   // the pretrained routers first
    int rc = !ref || !one || !half || !c || vm_ctx_eval(c, ids, n, ref);
    vm_ctx_free(c);
    rc = rc || logits_with(m, 1.0f, ids, n, one) || logits_with(m, 0.5f, ids, n, half);
    if (rc) { fprintf(stderr, "custom_router: %s\n", vm_errmsg()); return 1; }
    const int same = !memcmp(ref, one, sizeof(float) * n * V), moved = !!memcmp(ref, half, sizeof(float) * n * V);
    double d = 0;
    for (int i = 0; i < n * V; i++) {
        const double e = ref[i] > half[i] ? ref[i] - half[i] : half[i] - ref[i];
        if (e > d) d = e;
    }
    printf("sharpen tau=1: %s the pretrained router; tau=0.5: logits move by up to %.4f\n",
           same ? "reproduces" : "DIFFERS FROM", d);
    free(ref); free(one); free(half);
    vm_model_free(m);
    return same && moved ? 0 : 1;
}

// The backward pass: every backward kernel against central finite differences of its forward
// kernel, then the whole network (model/train.h) on the golden random-weight models of
// tests/golden/model: training forward == inference logits, forward from a cached hidden state
// == full forward, dL/dh and router-parameter gradients against finite differences for a dense
// model, stacked and per-expert MoE layouts, f16 weights, K = N and every gate convention.
// Tree batches (train.h vm_tree, built by data/task.c): the logits at every scored row and the
// inference prefix equal those of each sequence run alone (bit for bit, every architecture of the
// fixtures, MLA included), finite differences through the tree (shared rows included), and the
// tree's gradients equal the sums of its sequences' gradients.
//
// Errors are reported as the normalised error ||g - g_fd|| / max(||g||, ||g_fd||). The forward
// runs in f32, so a finite difference of step eps carries rounding noise of about
// u * |L| / eps (u = 6e-8) plus a truncation error O(eps^2 f'''); the tolerances below are set
// from those two terms with a margin of about 10 over what is measured (printed).
#include "test.h"
#include "kernels/ops.h"
#include "model/model.h"
#include "model/train.h"
#include "data/task.h"
#include "router/router.h"
#include "train/lm.h"
#include "gguf/gguf.h"
#include "util/err.h"
#include "util/rng.h"

#include <string.h>
#include <unistd.h>

static vm_rng rng;

static void fill(float *x, size_t n, float sd) { for (size_t i = 0; i < n; i++) x[i] = sd * vm_rng_normal(&rng); }

static double dot_d(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

// Central differences of loss() over x[0..n) against the analytic gradient ga; returns the
// normalised error. The step actually taken is measured in float (x+eps is rounded).
typedef double (*loss_fn)(void *ud);
static double fd_nerr(float *x, size_t n, const float *ga, loss_fn loss, void *ud, float eps) {
    double num = 0, na = 0, nf = 0;
    for (size_t i = 0; i < n; i++) {
        const float save = x[i], xp = save + eps, xm = save - eps;
        x[i] = xp; const double lp = loss(ud);
        x[i] = xm; const double lm = loss(ud);
        x[i] = save;
        const double g = (lp - lm) / ((double)xp - xm);
        num += (ga[i] - g) * (ga[i] - g); na += (double)ga[i] * ga[i]; nf += g * g;
    }
    const double den = na > nf ? na : nf;
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

// ---------------------------------------------------------------- kernels

// Every kernel check uses L = sum R * out with a fixed random R, so dout = R.
typedef struct {
    int B, C, OC, n_head, n_head_kv, hd, n_rot, neox, n_past;
    float *inp, *w, *bias, *out, *R, *inp2, *inp3;
    int32_t *pos;
    vm_tensor t;
} kcase;

static double loss_matmul(void *ud) {
    kcase *k = ud;
    vm_matmul_forward(k->out, k->inp, &k->t, k->bias, k->B);
    return dot_d(k->out, k->R, (size_t)k->B * k->OC);
}

static void test_matmul_backward(void) {
    enum { B = 4, C = 64, OC = 12 };
    float inp[B * C], w[OC * C], bias[OC], out[B * OC], R[B * OC], dinp[B * C], dw[OC * C], db[OC];
    fill(inp, B * C, 1); fill(w, OC * C, 0.3f); fill(bias, OC, 1); fill(R, B * OC, 1);
    kcase k = { .B = B, .C = C, .OC = OC, .inp = inp, .w = w, .bias = bias, .out = out, .R = R };
    // f32, f16, bf16 weights: the forward is smooth in inp (rows are widened, not quantised).
    // L is linear in inp: no truncation error, so a large step leaves only f32 noise.
    static uint16_t wh[OC * C];
    const vm_type types[] = { VM_TYPE_F32, VM_TYPE_F16, VM_TYPE_BF16 };
    for (int ti = 0; ti < 3; ti++) {
        const void *data = w;
        if (types[ti] != VM_TYPE_F32) {
            for (int i = 0; i < OC * C; i++) wh[i] = types[ti] == VM_TYPE_F16 ? vm_fp32_to_fp16(w[i]) : vm_fp32_to_bf16(w[i]);
            data = wh;
        }
        vm_tensor_init(&k.t, "w", types[ti], 2, (int64_t[]){C, OC}, data);
        memset(dinp, 0, sizeof dinp);
        vm_matmul_backward(dinp, R, &k.t, B);
        double e = fd_nerr(inp, B * C, dinp, loss_matmul, &k, 0.25f);
        printf("matmul_backward %-4s dinp  nerr %.2e\n", vm_type_name(types[ti]), e);
        CHECK(e < 1e-5, "matmul %s dinp nerr %g", vm_type_name(types[ti]), e);
    }
    // quantised weights: their dot quantises the activations, so the forward is piecewise
    // constant in inp; the backward is dout . dequant(W), checked against that in double
    static unsigned char q[OC * C * 2];
    static float wd[OC * C];
    const vm_type qt[] = { VM_TYPE_Q8_0, VM_TYPE_Q4_0 };
    for (int ti = 0; ti < 2; ti++) {
        const size_t rs = vm_type_row_size(qt[ti], C);
        for (int o = 0; o < OC; o++) {
            vm_quant_row(qt[ti], w + o * C, q + o * rs, C);
            vm_dequant_row(qt[ti], q + o * rs, wd + o * C, C);
        }
        vm_tensor_init(&k.t, "wq", qt[ti], 2, (int64_t[]){C, OC}, q);
        memset(dinp, 0, sizeof dinp);
        vm_matmul_backward(dinp, R, &k.t, B);
        double num = 0, den = 0;
        for (int b = 0; b < B; b++)
            for (int c = 0; c < C; c++) {
                double s = 0;
                for (int o = 0; o < OC; o++) s += (double)R[b * OC + o] * wd[o * C + c];
                num += (dinp[b * C + c] - s) * (dinp[b * C + c] - s); den += s * s;
            }
        CHECK(sqrt(num / den) < 1e-6, "matmul %s dinp vs dequantised reference: %g", vm_type_name(qt[ti]), sqrt(num / den));
    }
    // accumulation: a second call adds the same again
    vm_tensor_init(&k.t, "w", VM_TYPE_F32, 2, (int64_t[]){C, OC}, w);
    memset(dinp, 0, sizeof dinp);
    vm_matmul_backward(dinp, R, &k.t, B);
    float once = dinp[7];
    vm_matmul_backward(dinp, R, &k.t, B);
    CHECK(fabsf(dinp[7] - 2 * once) <= 1e-6f * fabsf(once), "matmul_backward accumulates");
    // dW and dbias of a trainable f32 weight
    memset(dw, 0, sizeof dw); memset(db, 0, sizeof db);
    vm_matmul_backward_weight(dw, db, R, inp, B, C, OC);
    double e = fd_nerr(w, OC * C, dw, loss_matmul, &k, 0.25f);
    double eb = fd_nerr(bias, OC, db, loss_matmul, &k, 0.25f);
    printf("matmul_backward_weight dw nerr %.2e  dbias nerr %.2e\n", e, eb);
    CHECK(e < 1e-5 && eb < 1e-5, "matmul dW nerr %g dbias %g", e, eb);
}

static double loss_rmsnorm(void *ud) {
    kcase *k = ud;
    vm_rmsnorm_forward(k->out, k->inp, k->w, k->B, k->C, 1e-5f);
    return dot_d(k->out, k->R, (size_t)k->B * k->C);
}

static void test_rmsnorm_backward(void) {
    enum { B = 3, C = 40 };
    float inp[B * C], w[C], out[B * C], R[B * C], dinp[B * C] = {0}, dw[C] = {0};
    fill(inp, B * C, 1); fill(w, C, 1); fill(R, B * C, 1);
    for (int i = 0; i < C; i++) inp[i] *= 1e-3f;   // a row of small values: eps matters there
    kcase k = { .B = B, .C = C, .inp = inp, .w = w, .out = out, .R = R };
    vm_rmsnorm_backward(dinp, dw, R, inp, w, B, C, 1e-5f);
    // row 0 has |x| ~ 1e-3: a relative step
    double e0 = fd_nerr(inp, C, dinp, loss_rmsnorm, &k, 1e-6f);
    double e = fd_nerr(inp + C, (B - 1) * C, dinp + C, loss_rmsnorm, &k, 1e-3f);
    double ew = fd_nerr(w, C, dw, loss_rmsnorm, &k, 1e-2f);
    printf("rmsnorm_backward dinp nerr %.2e (small row %.2e)  dweight nerr %.2e\n", e, e0, ew);
    CHECK(e < 1e-3 && e0 < 1e-2 && ew < 1e-4, "rmsnorm nerr %g small row %g dweight %g", e, e0, ew);
}

static double loss_rope(void *ud) {
    kcase *k = ud;
    const size_t n = (size_t)k->B * k->n_head * k->hd;
    memcpy(k->out, k->inp, n * sizeof(float));
    vm_rope_forward(k->out, k->pos, k->B, k->n_head, k->hd, k->n_rot, 10000.0f, 0.5f, k->neox);
    return dot_d(k->out, k->R, n);
}

static void test_rope_backward(void) {
    enum { B = 3, H = 2, HD = 8, N = B * H * HD };
    float inp[N], out[N], R[N], d[N];
    int32_t pos[B] = { 0, 7, 1234 };
    fill(inp, N, 1); fill(R, N, 1);
    for (int neox = 0; neox <= 1; neox++)
        for (int n_rot = 6; n_rot <= HD; n_rot += 2) {   // partial and full rotation
            kcase k = { .B = B, .n_head = H, .hd = HD, .n_rot = n_rot, .neox = neox, .inp = inp, .out = out, .R = R, .pos = pos };
            memcpy(d, R, sizeof d);
            vm_rope_backward(d, pos, B, H, HD, n_rot, 10000.0f, 0.5f, neox);
            double e = fd_nerr(inp, N, d, loss_rope, &k, 0.25f);   // linear: any step
            // orthogonal: backward undoes the forward
            memcpy(d, inp, sizeof d);
            vm_rope_forward(d, pos, B, H, HD, n_rot, 10000.0f, 0.5f, neox);
            vm_rope_backward(d, pos, B, H, HD, n_rot, 10000.0f, 0.5f, neox);
            double rt = 0;
            for (int i = 0; i < N; i++) rt = fmax(rt, fabs(d[i] - inp[i]));
            printf("rope_backward neox %d n_rot %d nerr %.2e  round trip %.1e\n", neox, n_rot, e, rt);
            CHECK(e < 1e-5 && rt < 1e-5, "rope neox %d n_rot %d nerr %g round trip %g", neox, n_rot, e, rt);
        }
}

static double loss_softmax(void *ud) {
    kcase *k = ud;
    vm_softmax_forward(k->out, k->inp, k->C);
    return dot_d(k->out, k->R, (size_t)k->C);
}

static double loss_swiglu(void *ud) {
    kcase *k = ud;
    vm_swiglu_forward(k->out, k->inp, k->inp2, k->C);
    return dot_d(k->out, k->R, (size_t)k->C);
}

static void test_softmax_swiglu_backward(void) {
    enum { C = 37 };
    float inp[C], inp2[C], out[C], R[C], d[C] = {0}, d2[C] = {0};
    fill(inp, C, 2); fill(inp2, C, 1); fill(R, C, 1);
    kcase k = { .C = C, .inp = inp, .inp2 = inp2, .out = out, .R = R };
    vm_softmax_forward(out, inp, C);
    vm_softmax_backward(d, R, out, C);
    double e = fd_nerr(inp, C, d, loss_softmax, &k, 1e-2f);
    printf("softmax_backward nerr %.2e\n", e);
    CHECK(e < 1e-3, "softmax nerr %g", e);
    memset(d, 0, sizeof d);
    vm_swiglu_backward(d, d2, R, inp, inp2, C);
    e = fd_nerr(inp, C, d, loss_swiglu, &k, 1e-2f);
    double e2 = fd_nerr(inp2, C, d2, loss_swiglu, &k, 0.25f);   // linear in up
    printf("swiglu_backward dgate nerr %.2e  dup nerr %.2e\n", e, e2);
    CHECK(e < 1e-3 && e2 < 1e-5, "swiglu dgate nerr %g dup %g", e, e2);
}

static double loss_attention(void *ud) {
    kcase *k = ud;
    vm_attention_forward(k->out, k->inp, k->inp2, k->inp3, k->n_past, k->B, k->n_head, k->n_head_kv, k->hd,
                         1.0f / sqrtf((float)k->hd));
    return dot_d(k->out, k->R, (size_t)k->B * k->n_head * k->hd);
}

static void test_attention_backward(void) {
    enum { NP = 3, B = 4, H = 4, HK = 2, HD = 8, NQ = B * H * HD, NKV = (NP + B) * HK * HD };
    float q[NQ], kc[NKV], vc[NKV], out[NQ], R[NQ], dq[NQ] = {0}, dk[NKV] = {0}, dv[NKV] = {0};
    fill(q, NQ, 1); fill(kc, NKV, 1); fill(vc, NKV, 1); fill(R, NQ, 1);
    kcase k = { .B = B, .n_head = H, .n_head_kv = HK, .hd = HD, .n_past = NP, .inp = q, .inp2 = kc, .inp3 = vc, .out = out, .R = R };
    vm_attention_backward(dq, dk, dv, R, q, kc, vc, NP, B, H, HK, HD, 1.0f / sqrtf((float)HD));
    double eq = fd_nerr(q, NQ, dq, loss_attention, &k, 1e-2f);
    double ek = fd_nerr(kc, NKV, dk, loss_attention, &k, 1e-2f);
    double ev = fd_nerr(vc, NKV, dv, loss_attention, &k, 0.25f);   // linear in v
    printf("attention_backward (n_past %d, GQA %d/%d) dq %.2e dk %.2e dv %.2e\n", NP, H, HK, eq, ek, ev);
    CHECK(eq < 1e-3 && ek < 1e-3 && ev < 1e-5, "attention nerr dq %g dk %g dv %g", eq, ek, ev);
}

// ---------------------------------------------------------------- a test router kind

// logits = s * (W_r u) + b with trainable b (N) and s (1), then the layer's gate convention.
// Regulariser: sum b^2 (per token, so its token mean is the same). It records the selected sets
// of a reference forward and flags any later forward whose sets differ (a flipped selection).
typedef struct {
    float *z; size_t cap;           // (T,N) W_r u of the last forward
    uint64_t ref[256]; int n_ref;   // selected sets per token (bit masks) of the reference forward
    int record, changed;
} aff_state;

static int aff_forward(vm_router *r, const vm_router_layer *L, const float *u, int T, vm_router_out *out, vm_rng *rg) {
    aff_state *st = r->state;
    const int N = L->n_expert, K = L->n_expert_used;
    if ((size_t)T * N > st->cap) {
        free(st->z);
        st->cap = (size_t)T * N;
        st->z = malloc(st->cap * sizeof(float));
    }
    vm_router_logits(L, u, T, st->z);
    const float *b = r->params[0].w, s = r->params[1].w[0];
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < N; i++) out->logits[t * N + i] = s * st->z[t * N + i] + b[i];
        vm_gate_from_logits(L, out->logits + t * N, out->probs + t * N, out->sel + t * K, out->gates + t * K);
        uint64_t mask = 0;
        for (int k = 0; k < K; k++) mask |= 1ull << out->sel[t * K + k];
        if (st->record && t < 256) { st->ref[t] = mask; st->n_ref = t + 1; }
        else if (!st->record && t < st->n_ref && st->ref[t] != mask) st->changed = 1;
    }
    return 0;
}

static int aff_backward(vm_router *r, const vm_router_layer *L, const float *u, int T,
                        const vm_router_out *out, const float *dgates, float *du, float reg_weight) {
    aff_state *st = r->state;
    const int N = L->n_expert, K = L->n_expert_used;
    const float ws = L->weights_scale, s = r->params[1].w[0];
    float *dz = calloc((size_t)T * N, sizeof(float));
    for (int t = 0; t < T; t++) {
        const float *p = out->probs + t * N, *g = out->gates + t * K, *dg = dgates + t * K;
        const int32_t *sel = out->sel + t * K;
        double dl[64] = {0}, dp[64] = {0};
        float dpf[64], dlf[64] = {0};
        double S = 0, wdg = 0;
        for (int k = 0; k < K; k++) S += p[sel[k]];
        switch (L->conv) {
        case VM_GATE_SOFTMAX_SELECTED:   // w = softmax over the selected logits, gates = ws w
            for (int k = 0; k < K; k++) wdg += (double)g[k] / ws * dg[k];
            for (int k = 0; k < K; k++) dl[sel[k]] = ws * (g[k] / ws) * (dg[k] - wdg);
            break;
        case VM_GATE_SOFTMAX_ALL:
        case VM_GATE_SIGMOID:            // gates = ws p_sel
            for (int k = 0; k < K; k++) dp[sel[k]] = ws * dg[k];
            break;
        case VM_GATE_SOFTMAX_ALL_NORM:
        case VM_GATE_SIGMOID_NORM:       // gates = ws p_sel / S
            for (int k = 0; k < K; k++) wdg += (double)dg[k] * p[sel[k]];
            for (int k = 0; k < K; k++) dp[sel[k]] = ws * (dg[k] / S - wdg / (S * S));
            break;
        }
        if (L->conv == VM_GATE_SOFTMAX_ALL || L->conv == VM_GATE_SOFTMAX_ALL_NORM) {
            for (int i = 0; i < N; i++) dpf[i] = (float)dp[i];
            vm_softmax_backward(dlf, dpf, p, N);
            for (int i = 0; i < N; i++) dl[i] = dlf[i];
        } else if (L->conv == VM_GATE_SIGMOID || L->conv == VM_GATE_SIGMOID_NORM) {
            for (int i = 0; i < N; i++) dl[i] = dp[i] * p[i] * (1 - p[i]);
        }
        for (int i = 0; i < N; i++) {
            r->params[0].g[i] += (float)dl[i];
            r->params[1].g[0] += (float)(dl[i] * st->z[t * N + i]);
            dz[t * N + i] = (float)(s * dl[i]);
        }
    }
    vm_matmul_backward(du, dz, L->w_gate, T);
    for (int i = 0; i < N; i++) r->params[0].g[i] += reg_weight * 2 * r->params[0].w[i];
    free(dz);
    return 0;
}

static double aff_reg(const vm_router *r) {
    double s = 0;
    for (int i = 0; i < r->params[0].ne[0]; i++) s += (double)r->params[0].w[i] * r->params[0].w[i];
    return s;
}

static void aff_free(vm_router *r) {
    aff_state *st = r->state;
    free(st->z); free(st);
    for (int i = 0; i < r->n_params; i++) { free(r->params[i].w); free(r->params[i].g); }
    free(r->params);
    free(r);
}

static const vm_router_ops aff_ops = { .name = "test-affine", .forward = aff_forward, .free = aff_free,
                                       .backward = aff_backward, .reg = aff_reg };

static vm_router *aff_new(int N) {
    vm_router *r = calloc(1, sizeof *r);
    r->ops = &aff_ops;
    r->state = calloc(1, sizeof(aff_state));
    r->training = 1;
    r->n_params = 2;
    r->params = calloc(2, sizeof *r->params);
    snprintf(r->params[0].name, sizeof r->params[0].name, "aff.b");
    r->params[0].n_dims = 1; r->params[0].ne[0] = N; r->params[0].ne[1] = 1;
    snprintf(r->params[1].name, sizeof r->params[1].name, "aff.s");
    r->params[1].n_dims = 1; r->params[1].ne[0] = 1; r->params[1].ne[1] = 1;
    for (int i = 0; i < 2; i++) {
        r->params[i].w = calloc((size_t)r->params[i].ne[0], sizeof(float));
        r->params[i].g = calloc((size_t)r->params[i].ne[0], sizeof(float));
    }
    for (int i = 0; i < N; i++) r->params[0].w[i] = 0.3f * vm_rng_normal(&rng);
    r->params[1].w[0] = 1.3f;
    return r;
}

// A wrapper around any router kind that records and compares selected sets like the test kind
// does, so the same checks run through the library's own kinds (their backward included).
typedef struct { vm_router *inner; aff_state st; } spy_state;

static int spy_forward(vm_router *r, const vm_router_layer *L, const float *u, int T, vm_router_out *out, vm_rng *rg) {
    spy_state *sp = r->state;
    sp->inner->training = r->training;
    if (sp->inner->ops->forward(sp->inner, L, u, T, out, rg)) return -1;
    const int K = L->n_expert_used;
    for (int t = 0; t < T && t < 256; t++) {
        uint64_t mask = 0;
        for (int k = 0; k < K; k++) mask |= 1ull << out->sel[t * K + k];
        if (sp->st.record) { sp->st.ref[t] = mask; sp->st.n_ref = t + 1; }
        else if (t < sp->st.n_ref && sp->st.ref[t] != mask) sp->st.changed = 1;
    }
    return 0;
}
static int spy_backward(vm_router *r, const vm_router_layer *L, const float *u, int T,
                        const vm_router_out *out, const float *dgates, float *du, float reg_weight) {
    vm_router *in = ((spy_state *)r->state)->inner;
    return in->ops->backward(in, L, u, T, out, dgates, du, reg_weight);
}
static double spy_reg(const vm_router *r) {
    const vm_router *in = ((const spy_state *)r->state)->inner;
    return in->ops->reg ? in->ops->reg(in) : 0.0;
}
static void spy_free(vm_router *r) {
    spy_state *sp = r->state;
    vm_router_free(sp->inner);
    free(sp);
    free(r);
}
static const vm_router_ops spy_ops = { .name = "test-spy", .forward = spy_forward, .free = spy_free,
                                       .backward = spy_backward, .reg = spy_reg };

static vm_router *spy_new(vm_router *inner) {
    vm_router *r = calloc(1, sizeof *r);
    spy_state *sp = calloc(1, sizeof *sp);
    sp->inner = inner;
    r->ops = &spy_ops;
    r->state = sp;
    r->training = 1;
    r->n_params = inner->n_params;
    r->params = inner->params;
    return r;
}

static aff_state *watch_state(vm_router *r) {
    if (!r) return NULL;
    if (r->ops == &aff_ops) return r->state;
    if (r->ops == &spy_ops) return &((spy_state *)r->state)->st;
    return NULL;
}

static void aff_record(vm_model *m, int rec) {
    for (int l = 0; l < m->hp.n_layer; l++) {
        aff_state *st = watch_state(m->routers[l]);
        if (!st) continue;
        st->record = rec;
        if (rec) st->changed = 0;
    }
}

// 1 when a forward since the last call selected a different set somewhere than the reference.
static int aff_changed(vm_model *m) {
    int c = 0;
    for (int l = 0; l < m->hp.n_layer; l++) {
        aff_state *st = watch_state(m->routers[l]);
        if (!st) continue;
        c |= st->changed;
        st->changed = 0;
    }
    return c;
}

// ---------------------------------------------------------------- whole network

#define GOLD "tests/golden/model/"
enum { T = 8, NOUT = 2 };

typedef struct {
    vm_model *m;
    vm_tctx *tc;
    float *h, *logits, *dlogits;       // h (n_rows, D); logits, dlogits (n_out, V)
    int n_rows;                        // the sequence's tokens, or the tree's rows
    const vm_tree *tree;               // NULL: one sequence
    const int32_t *out, *target;       // (n_out) positions (tree: rows) scored, and their targets
    int n_out;
    float reg_weight;
    int fails;      // forwards that failed
} net;

// L = sum over the n_out positions of cross-entropy + reg_weight * sum_layers reg; dlogits filled.
static double net_loss(void *ud) {
    net *n = ud;
    const int V = n->m->hp.n_vocab;
    if (n->tree ? vm_tctx_forward_tree(n->tc, n->h, n->tree, n->out, n->n_out, n->logits, NULL)
                : vm_tctx_forward(n->tc, n->h, n->n_rows, n->out, n->n_out, n->logits, NULL)) { n->fails++; return NAN; }
    double L = 0;
    for (int i = 0; i < n->n_out; i++) {
        const float *lg = n->logits + (size_t)i * V;
        double mx = lg[0], s = 0;
        for (int v = 1; v < V; v++) mx = fmax(mx, lg[v]);
        for (int v = 0; v < V; v++) s += exp(lg[v] - mx);
        L += mx + log(s) - lg[n->target[i]];
        for (int v = 0; v < V; v++) n->dlogits[(size_t)i * V + v] = (float)(exp(lg[v] - mx) / s - (v == n->target[i]));
    }
    return L + n->reg_weight * vm_tctx_reg(n->tc);
}

// Central differences that skip (and count) coordinates whose perturbation flips a selection.
static int n_fd_checked, n_fd_skipped;   // over the whole run

static double fd_net(net *n, float *x, size_t cnt, const float *ga, float eps, int *skipped) {
    double num = 0, na = 0, nf = 0;
    *skipped = 0;
    for (size_t i = 0; i < cnt; i++) {
        // A step that flips a selection is redone 10 times smaller, then skipped. The smaller
        // step has 10 times the f32 noise, so its error counts 1/10 (errors in units of the
        // noise of the nominal step).
        double g = NAN, wt = 1;
        for (float e = eps; e >= eps * 0.05f && isnan(g); e *= 0.1f) {
            const float save = x[i], xp = save + e, xm = save - e;
            x[i] = xp; const double lp = net_loss(n); int flip = aff_changed(n->m);
            x[i] = xm; const double lm = net_loss(n); flip |= aff_changed(n->m);
            x[i] = save;
            if (!flip) { g = (lp - lm) / ((double)xp - xm); wt = e / eps; }
        }
        if (isnan(g)) { (*skipped)++; n_fd_skipped++; continue; }
        n_fd_checked++;
        num += (ga[i] - g) * (ga[i] - g) * wt * wt; na += (double)ga[i] * ga[i]; nf += g * g;
    }
    // The network's f32 forward leaves ~1e-7 of noise in L, ~1e-5 in a finite difference with
    // eps 1e-2 (measured: up to 4e-5 on single coordinates). A floor of 5e-2 on the norm turns
    // the 2e-3 tolerance into an allowance of 1e-4 for tiny gradients; a wrong formula errs by
    // the size of the gradient itself (1e-3 .. 1 here), far above that.
    double den = na > nf ? na : nf;
    if (den < 2.5e-3) den = 2.5e-3;
    return sqrt(num / den);
}

static vm_model *load(const char *path) {
    vm_model *m = vm_model_load(path);
    CHECK(m != NULL, "load %s: %s", path, vm_errmsg());
    return m;
}

static void random_tokens(int32_t *tok, int n, int V) { for (int i = 0; i < n; i++) tok[i] = (int32_t)(vm_rng_u64(&rng) % (uint64_t)V); }

// (a) training forward == inference; (d) forward from a cached hidden state above l0 == full.
static void test_forward_equal(const char *name) {
    char path[256];
    snprintf(path, sizeof path, GOLD "%s.gguf", name);
    vm_model *m = load(path);
    if (!m) return;
    const int V = m->hp.n_vocab, D = m->hp.n_embd;
    int32_t tok[T], pos[T];
    random_tokens(tok, T, V);
    for (int t = 0; t < T; t++) pos[t] = t;
    float *ref = calloc((size_t)T * V, sizeof(float)), *lg = calloc((size_t)T * V, sizeof(float));
    float *h = calloc((size_t)T * D, sizeof(float));
    vm_ctx *c = vm_ctx_init(m, T, T);
    CHECK(c && vm_ctx_eval(c, tok, T, ref) == 0, "%s: eval: %s", name, vm_errmsg());
    for (int l0 = 0; l0 < m->hp.n_layer; l0++) {
        vm_tctx *tc = vm_tctx_init(m, l0, T);
        CHECK(tc != NULL, "%s: tctx: %s", name, vm_errmsg());
        if (!tc) break;
        CHECK(vm_model_hidden(m, tok, T, l0, h) == 0, "%s: hidden: %s", name, vm_errmsg());
        CHECK(vm_tctx_forward(tc, h, T, pos, T, lg, NULL) == 0, "%s: tctx forward: %s", name, vm_errmsg());
        double d = 0;
        for (size_t i = 0; i < (size_t)T * V; i++) d = fmax(d, fabs(lg[i] - ref[i]));
        printf("%-12s l0 %d  training vs inference logits max|diff| %.2g%s\n", name, l0, d,
               memcmp(lg, ref, (size_t)T * V * sizeof(float)) == 0 ? " (bit-exact)" : "");
        CHECK(d <= 1e-6, "%s l0 %d: training forward differs from inference by %g", name, l0, d);
        // a few positions only, in any order
        int32_t op[3] = { T - 1, 2, T - 1 };
        CHECK(vm_tctx_forward(tc, h, T, op, 3, lg, NULL) == 0, "%s: forward at 3 positions", name);
        int same = 1;
        for (int i = 0; i < 3; i++) same &= memcmp(lg + (size_t)i * V, ref + (size_t)op[i] * V, V * sizeof(float)) == 0;
        CHECK(same, "%s l0 %d: logits at chosen positions differ from the full forward", name, l0);
        vm_tctx_free(tc);
    }
    vm_ctx_free(c);
    free(ref); free(lg); free(h);
    vm_model_free(m);
}

// ---------------------------------------------------------------- tree batches (train.h vm_tree)

// A multiple-choice-shaped tree over random tokens, built by data/task.c from a hand-made pmi
// input: a context root of NC tokens with NCH children (continuations of 1, 2, 3 tokens: the
// 1-token one is scored at the context's last row only), then a second root [first context token]
// with the same continuations; 2 NCH sequences sharing two prefixes.
enum { NC = 6, NCH = 3 };

static int tree_item(vm_task_input *in, int V) {
    memset(in, 0, sizeof *in);
    in->mode = VM_TASK_PMI; in->n_choices = NCH; in->n_seq = 2 * NCH; in->answer = 1;
    int32_t ctx[NC];
    random_tokens(ctx, NC, V);
    for (int c = 0; c < NCH; c++) {
        const int k = 1 + c;
        vm_task_seq *q = &in->seq[c], *u = &in->seq[NCH + c];
        q->tokens = malloc((size_t)(NC + k) * sizeof(int32_t));
        u->tokens = malloc((size_t)(1 + k) * sizeof(int32_t));
        memcpy(q->tokens, ctx, sizeof ctx);
        random_tokens(q->tokens + NC, k, V);
        q->n = NC + k; q->n_ctx = NC;
        u->tokens[0] = ctx[0];
        memcpy(u->tokens + 1, q->tokens + NC, (size_t)k * sizeof(int32_t));
        u->n = 1 + k; u->n_ctx = 1;
    }
    return vm_task_tree_build(in);
}

// rows (q->n) of sequence s in the tree (child segments are in sequence order, task.h)
static void seq_rows(const vm_task_input *in, int s, int32_t *rows) {
    const vm_task_tree *t = &in->tree;
    int child = -1;
    for (int g = 0, j = -1; g < t->view.n_seg && j < s; g++) if (t->view.parent[g] >= 0 && ++j == s) child = g;
    const int root = t->view.parent[child], nc = in->seq[s].n_ctx;
    for (int i = 0; i < in->seq[s].n; i++)
        rows[i] = i < nc ? t->view.seg_off[root] + i : t->view.seg_off[child] + i - nc;
}

// (b) dL/dh and (c) router-parameter gradients by finite differences, layers [l0, L); with tr, over
// the tree's rows at its scored rows (so a shared row's gradient comes from several sequences).
// eps_h, eps_p: the steps for dL/dh and for the router parameters.
static void check_grads_on(const char *label, vm_model *m, int l0, int use_aff, const vm_task_input *tr,
                           float eps_h, float eps_p) {
    const int V = m->hp.n_vocab, D = m->hp.n_embd;
    // use_aff: 0 keep the routers, 1 the test kind, 2 the library's deterministic router (wrapped)
    for (int l = 0; l < m->hp.n_layer; l++)
        if (m->layers[l].is_moe && use_aff)
        {
            vm_router *r = use_aff == 1 ? aff_new(m->hp.n_expert) : spy_new(vm_router_deterministic());
            // sigmoid scores of large logits crowd near 1 and the selection then flips under
            // any step: smaller logits keep the FD well posed
            const vm_gate_conv cv = m->layers[l].rl.conv;
            if (use_aff == 1 && (cv == VM_GATE_SIGMOID || cv == VM_GATE_SIGMOID_NORM)) r->params[1].w[0] = 0.4f;
            vm_model_set_router(m, l, r);
        }
    int32_t out_pos[NOUT] = { T - 4, T - 2 }, target[NOUT];
    net n = { .m = m, .reg_weight = use_aff == 1 ? 0.05f : 0.0f, .out = out_pos, .target = target, .n_out = NOUT, .n_rows = T };
    if (tr) {
        n.tree = &tr->tree.view; n.n_rows = tr->tree.view.n_rows;
        n.out = tr->tree.out_row; n.target = tr->tree.out_tgt; n.n_out = tr->tree.n_out;
    }
    const int R = n.n_rows;
    n.tc = vm_tctx_init(m, l0, R);
    CHECK(n.tc != NULL, "%s: tctx: %s", label, vm_errmsg());
    if (!n.tc) return;
    n.h = calloc((size_t)R * D, sizeof(float));
    n.logits = calloc((size_t)n.n_out * V, sizeof(float));
    n.dlogits = calloc((size_t)n.n_out * V, sizeof(float));
    if (tr) {
        CHECK(vm_model_hidden_tree(m, tr->tree.tok, n.tree, l0, n.h, NULL) == 0, "%s: hidden: %s", label, vm_errmsg());
    } else {
        int32_t tok[T];
        random_tokens(tok, T, V);
        random_tokens(target, NOUT, V);
        CHECK(vm_model_hidden(m, tok, T, l0, n.h) == 0, "%s: hidden: %s", label, vm_errmsg());
    }
    aff_record(m, 1);
    const double L0 = net_loss(&n);
    aff_record(m, 0);
    float *dh = calloc((size_t)R * D, sizeof(float));
    for (int l = 0; l < m->hp.n_layer; l++)
        if (m->routers[l]) for (int p = 0; p < m->routers[l]->n_params; p++)
            memset(m->routers[l]->params[p].g, 0, (size_t)m->routers[l]->params[p].ne[0] * m->routers[l]->params[p].ne[1] * sizeof(float));
    CHECK(isfinite(L0) && vm_tctx_backward(n.tc, n.dlogits, n.reg_weight, dh) == 0, "%s: backward: %s", label, vm_errmsg());
    // dL/dh: |h| ~ 1 (embeddings) or a few (deeper); eps 1e-2 keeps truncation ~1e-5 and noise
    // ~ u*|L|/eps ~ 1e-5 relative (where the curvature is larger the caller passes a smaller step)
    int skipped;
    double e = fd_net(&n, n.h, (size_t)R * D, dh, eps_h, &skipped);
    printf("%-26s l0 %d  dL/dh nerr %.2e (%d of %d coordinates skipped: selection flipped at every step)\n", label, l0, e, skipped, R * D);
    CHECK(e < 2e-3, "%s: dL/dh nerr %g", label, e);
    CHECK(skipped <= R * D / 4, "%s: %d of %d coordinates flipped a selection", label, skipped, R * D);
    if (!tr) {   // rows above every output position get no gradient (causal)
        double tail = 0;
        for (int i = (T - 1) * D; i < T * D; i++) tail += fabs(dh[i]);
        CHECK(tail == 0, "%s: gradient after the last output position", label);
    } else {     // a continuation's last row is only a target: no gradient; the shared rows have one
        const vm_task_tree *t = &tr->tree;
        double last = 0, shared = 0;
        for (int g = 0; g < t->view.n_seg; g++) {
            const float *row = dh + (size_t)(t->view.seg_off[g + 1] - 1) * D;
            double *acc = t->view.parent[g] >= 0 ? &last : &shared;
            for (int d = 0; d < D; d++) *acc += fabs(row[d]);
        }
        CHECK(last == 0 && shared > 0, "%s: tree rows' gradients: children's last rows %g, roots' last rows %g", label, last, shared);
    }
    // router parameters of every trained MoE layer
    for (int l = l0; l < m->hp.n_layer && use_aff == 1; l++) {
        if (!m->layers[l].is_moe) continue;
        vm_router *r = m->routers[l];
        for (int p = 0; p < r->n_params; p++) {
            const size_t cnt = (size_t)(r->params[p].ne[0] * r->params[p].ne[1]);
            float *ga = malloc(cnt * sizeof(float));
            memcpy(ga, r->params[p].g, cnt * sizeof(float));
            double ep = fd_net(&n, r->params[p].w, cnt, ga, eps_p, &skipped);
            printf("%-26s layer %d %-6s nerr %.2e (%d skipped)\n", label, l, r->params[p].name, ep, skipped);
            CHECK(ep < 2e-3, "%s layer %d %s: nerr %g, %d skipped", label, l, r->params[p].name, ep, skipped);
            free(ga);
        }
    }
    CHECK(n.fails == 0, "%s: %d forwards failed: %s", label, n.fails, vm_errmsg());
    free(dh); free(n.h); free(n.logits); free(n.dlogits);
    vm_tctx_free(n.tc);
}

static void check_grads(const char *label, vm_model *m, int l0, int use_aff) { check_grads_on(label, m, l0, use_aff, NULL, 1e-2f, 1e-2f); }

// (a) tree logits at every scored row == the logits of each sequence run alone (vm_tctx_forward
// from vm_model_hidden), and the inference prefix over the tree == each sequence's, for l0 = 0
// and the last layer. Returns the largest difference seen (0: bit-identical everywhere).
static double tree_forward_equal(const char *path) {
    vm_model *m = load(path);
    if (!m) return INFINITY;
    const int V = m->hp.n_vocab, D = m->hp.n_embd, L = m->hp.n_layer;
    vm_task_input in;
    CHECK(tree_item(&in, V) == 0, "%s: tree: %s", path, vm_errmsg());
    const vm_task_tree *t = &in.tree;
    const int R = t->view.n_rows;
    float *hr = calloc((size_t)R * D, sizeof(float)), *hs = calloc((size_t)R * D, sizeof(float));
    float *lt = calloc((size_t)t->n_out * V, sizeof(float)), *ls = calloc((size_t)R * V, sizeof(float));
    double dmax = 0, hmax = 0;
    for (int l0 = 0; l0 < L; l0 += L - 1 > 0 ? L - 1 : 1) {
        vm_tctx *tc = vm_tctx_init(m, l0, R);
        int ok = tc && vm_model_hidden_tree(m, t->tok, &t->view, l0, hr, NULL) == 0 &&
                 vm_tctx_forward_tree(tc, hr, &t->view, t->out_row, t->n_out, lt, NULL) == 0;
        CHECK(ok, "%s l0 %d: tree forward: %s", path, l0, vm_errmsg());
        for (int s = 0; ok && s < in.n_seq; s++) {
            const vm_task_seq *q = &in.seq[s];
            int32_t rows[NC + 4], pos[NC + 4], tgt[NC + 4];
            seq_rows(&in, s, rows);
            const int k = vm_task_positions(&in, s, pos, tgt);
            ok = vm_model_hidden(m, q->tokens, q->n, l0, hs) == 0 && vm_tctx_forward(tc, hs, q->n, pos, k, ls, NULL) == 0;
            CHECK(ok, "%s: sequence %d: %s", path, s, vm_errmsg());
            for (int i = 0; ok && i < q->n; i++)
                for (int d = 0; d < D; d++) hmax = fmax(hmax, fabs(hs[(size_t)i * D + d] - hr[(size_t)rows[i] * D + d]));
            for (size_t i = 0; ok && i < (size_t)k * V; i++) dmax = fmax(dmax, fabs(ls[i] - lt[(size_t)t->out0[s] * V + i]));
        }
        vm_tctx_free(tc);
    }
    printf("%-40s tree vs sequences: logits max|diff| %.2g, h at l0 %.2g%s\n", path, dmax, hmax,
           dmax == 0 && hmax == 0 ? " (bit-identical)" : "");
    CHECK(dmax <= 1e-5 && hmax <= 1e-5, "%s: tree logits differ by %g, hidden states by %g", path, dmax, hmax);
    free(hr); free(hs); free(lt); free(ls);
    vm_task_input_free(&in);
    vm_model_free(m);
    return fmax(dmax, hmax);
}

// A net over the tree of a fresh tree_item in `in` at l0 = 0: its context, buffers and hidden
// states (the embeddings); reg_weight 0 (the tree counts a shared row's regulariser once, its
// sequences once each).
static net tree_net(vm_model *m, vm_task_input *in, const char *label) {
    const int V = m->hp.n_vocab, D = m->hp.n_embd;
    CHECK(tree_item(in, V) == 0, "%s: tree: %s", label, vm_errmsg());
    const vm_task_tree *t = &in->tree;
    const int R = t->view.n_rows;
    net n = { .m = m, .tree = &t->view, .n_rows = R, .out = t->out_row, .target = t->out_tgt, .n_out = t->n_out };
    n.tc = vm_tctx_init(m, 0, R);
    n.h = calloc((size_t)R * D, sizeof(float));
    n.logits = calloc((size_t)R * V, sizeof(float));
    n.dlogits = calloc((size_t)R * V, sizeof(float));
    CHECK(n.tc && vm_model_hidden_tree(m, t->tok, n.tree, 0, n.h, NULL) == 0, "%s: setup: %s", label, vm_errmsg());
    return n;
}

static void net_free(net *n) {
    free(n->h); free(n->logits); free(n->dlogits);
    vm_tctx_free(n->tc);
}

// Each sequence of the tree input alone (vm_tctx_forward on n's context), from the tree's
// hidden-state rows n->h, scored at the same targets, then its backward (reg_weight 0): parameter
// gradients accumulate; each sequence's dh (d1: room for its rows) is added into ds at its rows when
// ds is non-NULL.
static void run_sequences(const net *n, const vm_task_input *in, float *ds, float *d1, const char *label) {
    const int D = n->m->hp.n_embd;
    for (int s = 0; s < in->n_seq; s++) {
        const vm_task_seq *q = &in->seq[s];
        int32_t rows[NC + 4], pos[NC + 4], tgt[NC + 4];
        seq_rows(in, s, rows);
        const int k = vm_task_positions(in, s, pos, tgt);
        net ns = *n;
        ns.tree = NULL; ns.n_rows = q->n; ns.out = pos; ns.target = tgt; ns.n_out = k;
        ns.h = calloc((size_t)q->n * D, sizeof(float));
        for (int i = 0; i < q->n; i++) memcpy(ns.h + (size_t)i * D, n->h + (size_t)rows[i] * D, (size_t)D * sizeof(float));
        CHECK(isfinite(net_loss(&ns)) && vm_tctx_backward(n->tc, ns.dlogits, 0.0f, ds ? d1 : NULL) == 0, "%s: sequence %d: %s", label, s, vm_errmsg());
        for (int i = 0; ds && i < q->n; i++)
            for (int d = 0; d < D; d++) ds[(size_t)rows[i] * D + d] += d1[(size_t)i * D + d];
        free(ns.h);
    }
}

// (c) With routers whose forward is deterministic, the tree's gradients (dh per row, router
// parameters) equal the sums of the gradients of its sequences run alone: a row shared by
// several sequences receives the sum of theirs. Only the summation order differs.
static void tree_grad_sum(const char *label, vm_model *m, int use_aff) {
    const int D = m->hp.n_embd;
    for (int l = 0; l < m->hp.n_layer; l++)
        if (m->layers[l].is_moe)
            vm_model_set_router(m, l, use_aff ? aff_new(m->hp.n_expert) : spy_new(vm_router_deterministic()));
    vm_task_input in;
    net n = tree_net(m, &in, label);
    const int R = in.tree.view.n_rows;
    float *dt = calloc((size_t)R * D, sizeof(float)), *ds = calloc((size_t)R * D, sizeof(float)), *d1 = calloc((size_t)R * D, sizeof(float));
    size_t np = 0;
    for (int l = 0; l < m->hp.n_layer; l++)
        if (m->routers[l]) for (int p = 0; p < m->routers[l]->n_params; p++) np += (size_t)(m->routers[l]->params[p].ne[0] * m->routers[l]->params[p].ne[1]);
    float *gt = calloc(np + 1, sizeof(float));
    // the tree: forward, backward, then the parameter gradients moved out (zeroed for the sum)
    CHECK(isfinite(net_loss(&n)) && vm_tctx_backward(n.tc, n.dlogits, 0.0f, dt) == 0, "%s: tree backward: %s", label, vm_errmsg());
    size_t o = 0;
    for (int l = 0; l < m->hp.n_layer; l++)
        if (m->routers[l]) for (int p = 0; p < m->routers[l]->n_params; p++) {
            vm_param *pr = &m->routers[l]->params[p];
            const size_t cnt = (size_t)(pr->ne[0] * pr->ne[1]);
            memcpy(gt + o, pr->g, cnt * sizeof(float)); memset(pr->g, 0, cnt * sizeof(float)); o += cnt;
        }
    run_sequences(&n, &in, ds, d1, label);
    double eh = 0, nh = 0, ep = 0, npm = 0;
    for (size_t i = 0; i < (size_t)R * D; i++) { eh = fmax(eh, fabs(dt[i] - ds[i])); nh = fmax(nh, fabs(ds[i])); }
    o = 0;
    for (int l = 0; l < m->hp.n_layer; l++)
        if (m->routers[l]) for (int p = 0; p < m->routers[l]->n_params; p++) {
            const vm_param *pr = &m->routers[l]->params[p];
            for (size_t i = 0; i < (size_t)(pr->ne[0] * pr->ne[1]); i++, o++) { ep = fmax(ep, fabs(gt[o] - pr->g[i])); npm = fmax(npm, fabs(pr->g[i])); }
        }
    printf("%-26s tree vs sum of sequences: dh max|diff| %.2g of %.2g, router params %.2g of %.2g\n", label, eh, nh, ep, npm);
    CHECK(nh > 0 && eh <= 1e-5 * nh, "%s: dh of the tree differs from the sum by %g (max %g)", label, eh, nh);
    CHECK(!use_aff || (npm > 0 && ep <= 1e-5 * npm), "%s: router gradients differ by %g (max %g)", label, ep, npm);
    CHECK(n.fails == 0, "%s: %d forwards failed: %s", label, n.fails, vm_errmsg());
    free(dt); free(ds); free(d1); free(gt);
    net_free(&n);
    vm_task_input_free(&in);
}

// (c) for the weight gradients of `vmoer train` (vm_tctx_set_grads): the tree's equal the sums
// of its sequences' (deterministic routers, W_r trained; no load-balancing term, which is per batch).
static void tree_weight_grads(const char *path) {
    vm_lm *lm = vm_lm_load(path);
    CHECK(lm != NULL, "%s: %s", path, vm_errmsg());
    if (!lm) return;
    vm_model *m = vm_lm_model(lm);
    vm_task_input in;
    net n = tree_net(m, &in, path);
    CHECK(n.tc && vm_tctx_set_grads(n.tc, vm_lm_grads(lm)) == 0, "%s: weight gradients: %s", path, vm_errmsg());
    int64_t total = 0, cnt;
    float *w, *g;
    const char *name;
    for (int i = 0; vm_lm_param(lm, i, &name, &w, &g, &cnt) == 0; i++) { memset(g, 0, (size_t)cnt * sizeof(float)); total += cnt; }
    float *gt = calloc((size_t)total, sizeof(float));
    CHECK(isfinite(net_loss(&n)) && vm_tctx_backward(n.tc, n.dlogits, 0.0f, NULL) == 0, "%s: tree backward: %s", path, vm_errmsg());
    int64_t o = 0;
    for (int i = 0; vm_lm_param(lm, i, &name, &w, &g, &cnt) == 0; i++, o += cnt) {
        memcpy(gt + o, g, (size_t)cnt * sizeof(float));
        memset(g, 0, (size_t)cnt * sizeof(float));
    }
    run_sequences(&n, &in, NULL, NULL, path);
    double e = 0, mx = 0;
    o = 0;
    for (int i = 0; vm_lm_param(lm, i, &name, &w, &g, &cnt) == 0; i++)
        for (int64_t j = 0; j < cnt; j++, o++) { e = fmax(e, fabs(gt[o] - g[j])); mx = fmax(mx, fabs(g[j])); }
    printf("%-40s tree vs sum of sequences: weight gradients max|diff| %.2g of %.2g\n", path, e, mx);
    CHECK(mx > 0 && e <= 1e-5 * mx, "%s: weight gradients of the tree differ from the sum by %g (max %g)", path, e, mx);
    free(gt);
    net_free(&n);
    vm_task_input_free(&in);
    vm_lm_free(lm);
}

static void test_tree(void) {
    // (a) every architecture family of the fixtures: llama dense, MoE (stacked, per-expert, f16,
    // tied), granitemoe (µP scales, shared expert), qwen2moe (QKV biases, gated shared expert),
    // qwen3moe (Q/K norms), olmoe, deepseek, deepseek2 (MLA, V2 and V3 gating, legacy kv_b)
    const char *models[] = { GOLD "dense.gguf", GOLD "moe_stacked.gguf", GOLD "moe_split.gguf", GOLD "moe_f16.gguf",
                             GOLD "tied.gguf", "tests/golden/archs/granitemoe.gguf", "tests/golden/archs/granitemoeshared.gguf",
                             "tests/golden/archs/qwen2moe.gguf", "tests/golden/archs/qwen3moe.gguf",
                             "tests/golden/archs/olmoe.gguf", "tests/golden/archs/deepseek.gguf",
                             "tests/golden/deepseek2/v2.gguf", "tests/golden/deepseek2/v3.gguf",
                             "tests/golden/deepseek2/v2_legacy.gguf" };
    double worst = 0;
    for (size_t i = 0; i < sizeof models / sizeof *models; i++) worst = fmax(worst, tree_forward_equal(models[i]));
    printf("tree forward: largest difference from the sequences run alone %.2g over %zu models\n", worst, sizeof models / sizeof *models);
    // (b) finite differences through the tree, shared rows included
    // Steps: qwen2moe's dL/dh is large, up to 13, and so is its curvature: the O(eps^2) truncation
    // is 5.5e-3 at eps 2e-2, 1.4e-3 at 1e-2, 3.7e-4 at 5e-3, 1.8e-4 at 2.5e-3, so it takes 5e-3. The
    // tree's loss sums 12 scored rows, 6 times the f32 noise of the 2-row loss above: the scalar
    // aff.s then errs by 1.7e-3 at eps 1e-2 and 8e-3 at 2.5e-3 (noise) but 3e-4 at 2e-2.
    const char *fd[][2] = { { GOLD "moe_stacked.gguf", "tree moe_stacked" }, { "tests/golden/archs/qwen2moe.gguf", "tree qwen2moe" },
                            { "tests/golden/deepseek2/v2.gguf", "tree deepseek2 v2" } };
    const float eps_h[] = { 1e-2f, 5e-3f, 1e-2f };
    for (int i = 0; i < 3; i++) {
        vm_model *m = load(fd[i][0]);
        if (!m) continue;
        vm_task_input in;
        CHECK(tree_item(&in, m->hp.n_vocab) == 0, "tree: %s", vm_errmsg());
        check_grads_on(fd[i][1], m, 0, 1, &in, eps_h[i], 2e-2f);
        vm_task_input_free(&in);
        vm_model_free(m);
    }
    vm_model *m = load(GOLD "dense.gguf");   // no router: dh through attention and FFN only
    if (m) {
        vm_task_input in;
        CHECK(tree_item(&in, m->hp.n_vocab) == 0, "tree: %s", vm_errmsg());
        check_grads_on("tree dense", m, 0, 0, &in, 1e-2f, 2e-2f);
        vm_task_input_free(&in);
        vm_model_free(m);
    }
    // (c) tree gradient == sum over its sequences
    const char *sums[][2] = { { GOLD "dense.gguf", "dense" }, { GOLD "moe_stacked.gguf", "moe_stacked" },
                              { "tests/golden/archs/qwen2moe.gguf", "qwen2moe" }, { "tests/golden/deepseek2/v2.gguf", "deepseek2 v2" } };
    for (int i = 0; i < 4; i++)
        for (int aff = 0; aff < (i ? 2 : 1); aff++) {   // the dense model has no router
            if (!(m = load(sums[i][0]))) continue;
            char label[64];
            snprintf(label, sizeof label, "%s %s", sums[i][1], aff ? "affine" : "deterministic");
            tree_grad_sum(label, m, aff);
            vm_model_free(m);
        }
    tree_weight_grads(GOLD "dense.gguf");
    tree_weight_grads(GOLD "moe_stacked.gguf");
}

// A copy of a golden model with another expert_used_count (K = N).
static int write_variant(const char *src, const char *dst, int K) {
    vm_gguf *g = vm_gguf_open(src);
    if (!g) return -1;
    vm_gguf_writer *w = vm_gguf_writer_init();
    vm_gguf_copy_kv(w, g);
    vm_gguf_set_u32(w, "llama.expert_used_count", (uint32_t)K);
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const vm_gguf_tensor_info *ti = &g->tensors[i];
        vm_gguf_add_tensor(w, ti->name, ti->t.type, ti->t.n_dims, ti->t.ne, ti->t.data, ti->nbytes);
    }
    int rc = vm_gguf_write(w, dst);
    vm_gguf_writer_free(w);
    vm_gguf_free(g);
    return rc;
}

static void test_grads(void) {
    vm_model *m = load(GOLD "dense.gguf");
    if (m) { check_grads("dense", m, 0, 0); check_grads("dense", m, 1, 0); vm_model_free(m); }
    const char *moes[] = { "moe_stacked", "moe_split", "moe_f16" };
    for (int i = 0; i < 3; i++) {
        char path[256];
        snprintf(path, sizeof path, GOLD "%s.gguf", moes[i]);
        if (!(m = load(path))) continue;
        check_grads(moes[i], m, 0, 1);
        vm_model_free(m);
    }
    // the library's deterministic router: its backward carries the gates' dependence on u
    if ((m = load(GOLD "moe_stacked.gguf"))) {
        if (m->routers[0] && m->routers[0]->ops->backward) check_grads("moe_stacked deterministic", m, 0, 2);
        else printf("deterministic router has no backward: skipped\n");
        vm_model_free(m);
    }
    // l0 > 0 on the 3-layer model: only the layers above get gradients
    if ((m = load(GOLD "moe_split.gguf"))) { check_grads("moe_split", m, 1, 1); vm_model_free(m); }
    // every gate convention through the same network (weights_scale != 1 on two of them)
    const vm_gate_conv convs[] = { VM_GATE_SOFTMAX_ALL, VM_GATE_SOFTMAX_ALL_NORM, VM_GATE_SIGMOID, VM_GATE_SIGMOID_NORM };
    const char *cname[] = { "softmax_all", "softmax_all_norm", "sigmoid", "sigmoid_norm" };
    for (int c = 0; c < 4; c++) {
        if (!(m = load(GOLD "moe_stacked.gguf"))) continue;
        for (int l = 0; l < m->hp.n_layer; l++) { m->layers[l].rl.conv = convs[c]; m->layers[l].rl.weights_scale = c % 2 ? 1.5f : 1.0f; }
        char label[64];
        snprintf(label, sizeof label, "moe_stacked %s", cname[c]);
        check_grads(label, m, 0, 1);
        vm_model_free(m);
    }
    // K = N: every expert is used, the selection cannot flip (as a set)
    char dir[] = "/tmp/vmoer_bw_XXXXXX", path[64];
    if (mkdtemp(dir)) {
        snprintf(path, sizeof path, "%s/kn.gguf", dir);
        CHECK(write_variant(GOLD "moe_stacked.gguf", path, 4) == 0, "write K=N model: %s", vm_errmsg());
        if ((m = load(path))) {
            CHECK(m->hp.n_expert_used == m->hp.n_expert, "K = N model");
            check_grads("moe_stacked K=N", m, 0, 1);
            vm_model_free(m);
        }
        unlink(path);
        rmdir(dir);
    }
}

static void test_errors(void) {
    vm_model *m = load(GOLD "moe_stacked.gguf");
    if (!m) return;
    CHECK(vm_tctx_init(m, 2, 8) == NULL && strstr(vm_errmsg(), "out of range"), "l0 = n_layer: %s", vm_errmsg());
    CHECK(vm_tctx_init(m, 0, 0) == NULL, "T_max 0");
    vm_tctx *tc = vm_tctx_init(m, 0, 4);
    float h[8 * 32] = {0}, lg[2 * 96], dl[2 * 96] = {0};
    CHECK(vm_tctx_backward(tc, dl, 0, NULL) == -1 && strstr(vm_errmsg(), "without a successful forward"), "backward first: %s", vm_errmsg());
    CHECK(vm_tctx_forward(tc, h, 5, (int32_t[]){0}, 1, lg, NULL) == -1, "T > T_max accepted");
    CHECK(vm_tctx_forward(tc, h, 4, (int32_t[]){4}, 1, lg, NULL) == -1 && strstr(vm_errmsg(), "position"), "out_pos out of range: %s", vm_errmsg());
    CHECK(vm_model_hidden(m, (int32_t[]){1, 96}, 2, 0, h) == -1 && strstr(vm_errmsg(), "token id"), "hidden token range: %s", vm_errmsg());
    CHECK(vm_model_hidden(m, (int32_t[]){1, 2}, 2, 3, h) == -1, "hidden l0 > n_layer");
    // l0 = n_layer: the final residual stream (no block run) is allowed for vm_model_hidden
    CHECK(vm_model_hidden(m, (int32_t[]){1, 2}, 2, 2, h) == 0, "hidden at l0 = n_layer: %s", vm_errmsg());
    // malformed trees: one line naming what is wrong
    const int32_t pos[4] = { 0, 1, 2, 2 }, off[3] = { 0, 2, 4 }, par[2] = { -1, 0 }, bad_par[2] = { -1, 1 };
    vm_tree t = { .n_rows = 4, .n_seg = 2, .pos = pos, .seg_off = off, .parent = par };
    CHECK(vm_tctx_forward_tree(tc, h, &t, (int32_t[]){3}, 1, lg, NULL) == -1 && strstr(vm_errmsg(), "position 2, expected 3"), "tree positions: %s", vm_errmsg());
    t.parent = bad_par;
    CHECK(vm_tctx_forward_tree(tc, h, &t, (int32_t[]){3}, 1, lg, NULL) == -1 && strstr(vm_errmsg(), "parent 1"), "tree parent: %s", vm_errmsg());
    t.parent = par; t.pos = (const int32_t[]){ 0, 1, 2, 3 };
    CHECK(vm_tctx_forward_tree(tc, h, &t, (int32_t[]){4}, 1, lg, NULL) == -1 && strstr(vm_errmsg(), "position"), "tree out row: %s", vm_errmsg());
    CHECK(vm_tctx_forward_tree(tc, h, &t, (int32_t[]){3}, 1, lg, NULL) == 0, "a good tree: %s", vm_errmsg());
    t.n_rows = 5;
    CHECK(vm_tctx_forward_tree(tc, h, &t, (int32_t[]){3}, 1, lg, NULL) == -1 && strstr(vm_errmsg(), "rows"), "tree rows > T_max: %s", vm_errmsg());
    vm_tctx_free(tc);
    vm_model_free(m);
}

int main(void) {
    vm_rng_seed(&rng, 12345);
    test_matmul_backward();
    test_rmsnorm_backward();
    test_rope_backward();
    test_softmax_swiglu_backward();
    test_attention_backward();
    const char *names[] = { "dense", "moe_stacked", "moe_split", "moe_f16", "tied" };
    for (int i = 0; i < 5; i++) test_forward_equal(names[i]);
    test_grads();
    test_tree();
    test_errors();
    printf("finite differences: %d coordinates checked, %d skipped (selection flipped)\n", n_fd_checked, n_fd_skipped);
    CHECK(n_fd_skipped * 20 < n_fd_checked, "%d of %d coordinates skipped", n_fd_skipped, n_fd_checked + n_fd_skipped);
    return TEST_SUMMARY();
}

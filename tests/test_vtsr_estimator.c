// VTSR's gradient estimator (docs/method.md §3.2) is unbiased for the gradient of the EXPECTED loss.
//
// A one-token layer (D 4, N 4, K 2, Mixtral's softmax over the selected logits). The loss of a draw
// is f = sum_j c[sel_j] g_j + d[set] + rw (log T - log T0)^2 / 2: gate-weighted expert values, a term
// that depends on WHICH experts were drawn only, and the router's regulariser. The expected loss
// E(theta) is enumerated exactly in this file over the 12 ordered draws with their Plackett-Luce
// probabilities, written from the definitions (T(u), z = l_det / T, sequential draws without
// replacement from softmax(z), gates = softmax of z over the drawn pair) -- none of the router's
// code -- and differentiated by central differences in double. The router's own estimate, pathwise
// through the gates plus (f - b) d log P(draw) via r->sf_coef, averaged over many draws must match
// it within 4 standard errors for every parameter and for u; the pathwise term alone (sf_coef 0,
// the first specification's estimator) must not.
#include "test.h"
#include "router/router.h"
#include "util/err.h"
#include "util/rng.h"

#include <string.h>

enum { D = 4, N = 4, K = 2, H = 3 };

static const float W_r[N * D] = { 0.9f, -0.4f, 0.2f, 0.5f,  -0.3f, 0.8f, 0.1f, -0.6f,
                                  0.4f, 0.3f, -0.7f, 0.2f,   0.1f, -0.2f, 0.6f, 0.7f };
static const double c_val[N] = { 1.0, -0.5, 0.3, 2.0 };    // expert "outputs" seen through the loss
static const double d_set[N] = { 0.8, 0.0, -0.4, 0.0 };    // + d[e] for each drawn expert e (selection only)
static const float rw = 0.3f, baseline = 0.7f;

// ---- the exact expected loss, from the definitions

typedef struct theta { double W1[H * D], b1[H], w2[H], b2, u[D]; double t0; } theta;

static double temperature(const theta *p) {
    double o = p->b2;
    for (int j = 0; j < H; j++) {
        double a = p->b1[j];
        for (int k = 0; k < D; k++) a += p->W1[j * D + k] * p->u[k];
        o += p->w2[j] * (a > 0 ? a : 0);
    }
    return (o > 20 ? o : log1p(exp(o))) + 1e-6;
}

static double expected_loss(const theta *p) {
    const double T = temperature(p);
    double z[N], mx = -1e300;
    for (int e = 0; e < N; e++) {
        double l = 0;
        for (int k = 0; k < D; k++) l += W_r[e * D + k] * p->u[k];
        z[e] = l / T;
        if (z[e] > mx) mx = z[e];
    }
    double w[N], W = 0;
    for (int e = 0; e < N; e++) { w[e] = exp(z[e] - mx); W += w[e]; }
    double E = 0;
    for (int a = 0; a < N; a++)
        for (int b = 0; b < N; b++) {
            if (a == b) continue;
            const double P = w[a] / W * w[b] / (W - w[a]);   // draw a, then b from the rest
            const double ga = w[a] / (w[a] + w[b]), gb = w[b] / (w[a] + w[b]);
            E += P * (c_val[a] * ga + c_val[b] * gb + d_set[a] + d_set[b]);
        }
    const double lr = log(T) - log(p->t0);
    return E + rw * 0.5 * lr * lr;
}

// ---- the router

static vm_tensor wt;
static vm_router_layer layer(void) {
    const int64_t ne[2] = { D, N };
    vm_tensor_init(&wt, "ffn_gate_inp", VM_TYPE_F32, 2, ne, W_r);
    return (vm_router_layer){ .layer = 0, .n_embd = D, .n_expert = N, .n_expert_used = K,
                              .conv = VM_GATE_SOFTMAX_SELECTED, .w_gate = &wt, .weights_scale = 1.0f };
}

static void to_theta(const vm_router *r, const float *u, theta *p) {
    for (int i = 0; i < H * D; i++) p->W1[i] = r->params[0].w[i];
    for (int j = 0; j < H; j++) { p->b1[j] = r->params[1].w[j]; p->w2[j] = r->params[2].w[j]; }
    p->b2 = r->params[3].w[0];
    p->t0 = r->params[4].w[0];
    for (int k = 0; k < D; k++) p->u[k] = u[k];
}

// The coordinates checked: every parameter of the head and every u element.
typedef struct coord { const char *name; double *(*at)(theta *); int idx; } coord;
static double *at_W1(theta *p) { return p->W1; }
static double *at_b1(theta *p) { return p->b1; }
static double *at_w2(theta *p) { return p->w2; }
static double *at_b2(theta *p) { return &p->b2; }
static double *at_u(theta *p) { return p->u; }

static double fd(const theta *p0, const coord *c) {
    const double h = 1e-5;
    theta p = *p0;
    double *x = c->at(&p) + c->idx;
    const double keep = *x;
    *x = keep + h;
    const double ep = expected_loss(&p);
    *x = keep - h;
    const double em = expected_loss(&p);
    return (ep - em) / (2 * h);
}

// Mean and standard error of the estimator over M draws, for every coordinate: mean[i], se[i].
static void estimate(vm_router *r, const vm_router_layer *L, const float *u, int use_sf, int M,
                     double *mean, double *se, int nc) {
    double s1[64] = {0}, s2[64] = {0};
    float logits[N], probs[N], gates[K], unc[VM_UNC_COUNT], du[D];
    int32_t sel[K];
    vm_router_out out = { logits, probs, sel, gates, unc };
    r->training = 1;
    for (int m = 0; m < M; m++) {
        vm_rng g;
        vm_rng_seed2(&g, 2026, (uint64_t)m);
        r->ops->forward(r, L, u, 1, &out, &g);
        double f = 0;
        float dg[K];
        for (int j = 0; j < K; j++) { f += c_val[sel[j]] * gates[j] + d_set[sel[j]]; dg[j] = (float)c_val[sel[j]]; }
        r->sf_coef = use_sf ? (float)(f - baseline) : 0.0f;
        for (int i = 0; i < r->n_params; i++) memset(r->params[i].g, 0, sizeof(float) * (size_t)(r->params[i].ne[0] * r->params[i].ne[1]));
        memset(du, 0, sizeof du);
        r->ops->backward(r, L, u, 1, &out, dg, du, rw);
        double v[64];
        int k = 0;
        for (int i = 0; i < H * D; i++) v[k++] = r->params[0].g[i];
        for (int j = 0; j < H; j++) v[k++] = r->params[1].g[j];
        for (int j = 0; j < H; j++) v[k++] = r->params[2].g[j];
        v[k++] = r->params[3].g[0];
        for (int i = 0; i < D; i++) v[k++] = du[i];
        for (int i = 0; i < nc; i++) { s1[i] += v[i]; s2[i] += v[i] * v[i]; }
    }
    for (int i = 0; i < nc; i++) {
        mean[i] = s1[i] / M;
        se[i] = sqrt(fmax(0.0, s2[i] / M - mean[i] * mean[i]) / (M - 1));
    }
}

int main(void) {
    vm_router_layer L = layer();
    vm_router_opts o;
    vm_router_opts_default(&o);
    o.hidden = H; o.seed = 4; o.prior_sd = 0.6f;   // T0 = 0.6 sqrt(6)/pi = 0.468
    vm_router *r = vm_router_create("vtsr", &L, &o);
    CHECK(r && r->n_params == 5, "vtsr: %s", r ? "" : vm_errmsg());
    if (!r) return TEST_SUMMARY();
    // a head away from its initialisation, so T depends on u through every parameter
    vm_rng g;
    vm_rng_seed(&g, 9);
    for (int j = 0; j < H; j++) { r->params[2].w[j] = 0.6f * vm_rng_normal(&g); r->params[1].w[j] += 0.3f; }
    const float u[D] = { 0.7f, -1.1f, 0.4f, 0.9f };

    theta p;
    to_theta(r, u, &p);
    coord cs[64];
    int nc = 0;
    for (int i = 0; i < H * D; i++) cs[nc++] = (coord){ "W_1", at_W1, i };
    for (int j = 0; j < H; j++) cs[nc++] = (coord){ "b_1", at_b1, j };
    for (int j = 0; j < H; j++) cs[nc++] = (coord){ "w_2", at_w2, j };
    cs[nc++] = (coord){ "b_2", at_b2, 0 };
    for (int i = 0; i < D; i++) cs[nc++] = (coord){ "u", at_u, i };
    double want[64];
    for (int i = 0; i < nc; i++) want[i] = fd(&p, &cs[i]);
    printf("T(u) = %.4f, T0 = %.4f, E[loss] = %.6f\n", temperature(&p), p.t0, expected_loss(&p));

    const int M = 400000;
    double mean[64], se[64];
    estimate(r, &L, u, 1, M, mean, se, nc);
    int bad = 0, checked = 0;
    double worst = 0;
    for (int i = 0; i < nc; i++) {
        const double z = fabs(mean[i] - want[i]) / (se[i] + 1e-9);
        if (fabs(want[i]) < 1e-9 && se[i] < 1e-12) continue;   // a ReLU-dead coordinate: both zero
        checked++;
        worst = fmax(worst, z);
        if (z > 4.0 && fabs(mean[i] - want[i]) > 1e-4) {
            bad++;
            fprintf(stderr, "  %s[%d]: estimator %.6f +- %.6f, d E/d theta %.6f\n", cs[i].name, cs[i].idx, mean[i], se[i], want[i]);
        }
    }
    printf("score function + pathwise: %d coordinates, worst |mean - FD| = %.2f standard errors (M = %d)\n", checked, worst, M);
    CHECK(checked >= 10 && bad == 0, "%d of %d coordinates off the expected-loss gradient", bad, checked);

    // the pathwise term alone misses the selection's share: it fails the same comparison
    estimate(r, &L, u, 0, M / 4, mean, se, nc);
    int off = 0;
    for (int i = 0; i < nc; i++)
        off += fabs(mean[i] - want[i]) > 4.0 * (se[i] + 1e-9) && fabs(mean[i] - want[i]) > 1e-4;
    printf("pathwise only: %d of %d coordinates off by more than 4 standard errors\n", off, nc);
    CHECK(off >= 3, "the pathwise-only estimator should be visibly biased here (%d coordinates off)", off);

    vm_router_free(r);
    return TEST_SUMMARY();
}

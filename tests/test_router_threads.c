// The sampled routers' inference paths run tokens in parallel with per-token streams: results must
// not depend on the thread count nor on how the tokens are batched into calls... (same stream
// base: one call). Also the vectorised maths of router_vec.h against libm and known moments, and
// the VGLR-fc inference mean p_bar against an independent Monte-Carlo estimate built here from
// the published fill rule (L[i][j] = v[i(i+1)/2 + j], L_ii = exp(v_ii)).
#include "test.h"
#include "router/router.h"
#include "router/router_vec.h"
#include "util/rng.h"

#include <omp.h>
#include <stdint.h>
#include <string.h>

typedef struct outs { float *lo, *pr, *ga, *un; int32_t *se; } outs;

static void outs_init(outs *o, int T, int N, int K) {
    o->lo = calloc((size_t)T * N, sizeof(float)); o->pr = calloc((size_t)T * N, sizeof(float));
    o->ga = calloc((size_t)T * K, sizeof(float)); o->un = calloc((size_t)T * VM_UNC_COUNT, sizeof(float));
    o->se = calloc((size_t)T * K, sizeof(int32_t));
}
static void outs_free(outs *o) { free(o->lo); free(o->pr); free(o->ga); free(o->un); free(o->se); }
static int outs_same(const outs *a, const outs *b, int T, int N, int K) {
    return !memcmp(a->lo, b->lo, sizeof(float) * T * N) && !memcmp(a->pr, b->pr, sizeof(float) * T * N) &&
           !memcmp(a->ga, b->ga, sizeof(float) * T * K) && !memcmp(a->se, b->se, sizeof(int32_t) * T * K) &&
           !memcmp(a->un, b->un, sizeof(float) * T * VM_UNC_COUNT);
}

static void test_thread_independence(void) {
    const int D = 64, N = 12, K = 3, T = 37;
    float *w = malloc(sizeof(float) * N * D), *u = malloc(sizeof(float) * T * D);
    vm_rng g;
    vm_rng_seed(&g, 3);
    for (int i = 0; i < N * D; i++) w[i] = 0.3f * vm_rng_normal(&g);
    for (int i = 0; i < T * D; i++) u[i] = vm_rng_normal(&g);
    vm_tensor wt;
    vm_tensor_init(&wt, "w", VM_TYPE_F32, 2, (int64_t[]){ D, N }, w);
    const vm_gate_conv convs[] = { VM_GATE_SOFTMAX_SELECTED, VM_GATE_SIGMOID_NORM };
    const char *const *kinds = vm_router_kind_names();   // every kind of the registry
    const int max_thr = omp_get_max_threads();
    for (int ci = 0; ci < 2; ci++)
        for (int ki = 0; kinds[ki]; ki++) {
            const vm_router_layer L = { .layer = 2, .n_embd = D, .n_expert = N, .n_expert_used = K,
                                        .conv = convs[ci], .w_gate = &wt, .weights_scale = 1.0f };
            vm_router_opts o;
            vm_router_opts_default(&o);
            o.samples = 9; o.dropout = 0.2f; o.hidden = 16;
            vm_router *r = vm_router_create(kinds[ki], &L, &o);
            if (!r) { CHECK(0, "create %s", kinds[ki]); continue; }
            for (int p = 0; p < r->n_params; p++)   // a posterior wide enough to matter
                for (int64_t e = 0; e < r->params[p].ne[0] * r->params[p].ne[1]; e++)
                    r->params[p].w[e] += 0.3f * vm_rng_normal(&g);
            for (int p = 0; p < r->n_params; p++)   // constants that are variances stay >= 0 (swag)
                for (int64_t e = 0; r->params[p].frozen == 2 && e < r->params[p].ne[0] * r->params[p].ne[1]; e++)
                    r->params[p].w[e] = fabsf(r->params[p].w[e]);
            outs a, b;
            outs_init(&a, T, N, K); outs_init(&b, T, N, K);
            vm_router_out oa = { a.lo, a.pr, a.se, a.ga, a.un }, ob = { b.lo, b.pr, b.se, b.ga, b.un };
            vm_rng ra, rb;
            vm_rng_seed(&ra, 11); vm_rng_seed(&rb, 11);
            omp_set_num_threads(1);
            int rc = r->ops->forward(r, &L, u, T, &oa, &ra);
            const double reg1 = r->ops->reg(r);
            omp_set_num_threads(3);   // more threads than tokens per thread evenly divide
            rc |= r->ops->forward(r, &L, u, T, &ob, &rb);
            const double reg3 = r->ops->reg(r);
            omp_set_num_threads(max_thr);
            CHECK(rc == 0, "%s forward", kinds[ki]);
            CHECK(outs_same(&a, &b, T, N, K), "%s (conv %d): 1 and 3 threads differ", kinds[ki], ci);
            CHECK(reg1 == reg3, "%s: reg differs with the thread count", kinds[ki]);
            CHECK(vm_rng_u64(&ra) == vm_rng_u64(&rb), "%s: caller stream advanced differently", kinds[ki]);
            // and the caller's stream moves by exactly one draw per call of a stochastic kind, none of another
            vm_rng rc1;
            vm_rng_seed(&rc1, 11);
            if (r->ops->flags & VM_ROUTER_STOCHASTIC) vm_rng_u64(&rc1);   // the one draw the call should take
            vm_rng_seed(&ra, 11);
            r->ops->forward(r, &L, u, T, &oa, &ra);
            CHECK(vm_rng_u64(&ra) == vm_rng_u64(&rc1), "%s: not one draw (stochastic) or none of the caller's stream", kinds[ki]);
            outs_free(&a); outs_free(&b);
            vm_router_free(r);
        }
    free(w); free(u);
}

static void test_vec_math(void) {
    double me = 0.0, ml = 0.0;
    float xs[64], ys[64];
    for (float x0 = -87.0f; x0 < 88.0f; x0 += 0.37f * 64) {
        for (int i = 0; i < 64; i++) xs[i] = x0 + 0.37f * i;
        #pragma omp simd
        for (int i = 0; i < 64; i++) ys[i] = vm_vec_exp(xs[i]);
        for (int i = 0; i < 64; i++)
            if (xs[i] <= 88.0f) { const double r = fabs(ys[i] / exp(xs[i]) - 1.0); if (r > me) me = r; }
    }
    for (float x = 1e-30f; x <= 3.0f; x *= 1.001f) {
        const double e = fabs(vm_vec_log(x) - log(x)) / (1.0 + fabs(log(x)));
        if (e > ml) ml = e;
    }
    CHECK(me < 5e-7, "vm_vec_exp relative error %g", me);
    CHECK(ml < 5e-7, "vm_vec_log error %g", ml);
    CHECK(vm_vec_exp(-1000.0f) < 1e-37f && vm_vec_exp(-1000.0f) >= 0.0f, "exp clamps below");
    CHECK(vm_vec_sqrt(0.0f) == 0.0f && fabs(vm_vec_sqrt(2.0f) - sqrt(2.0)) < 1e-6, "vm_vec_sqrt");
    // normals: moments and a tail probability, within ~5 standard errors
    const int n = 1 << 20;
    float *z = malloc(sizeof(float) * n), *sc = malloc(sizeof(float) * n);
    vm_rng g;
    vm_rng_seed(&g, 5);
    vm_vec_normals(&g, z, sc, n);
    double m1 = 0, m2 = 0, m4 = 0, c = 0;
    long tail = 0;
    for (int i = 0; i < n; i++) { m1 += z[i]; m2 += (double)z[i] * z[i]; m4 += pow(z[i], 4); tail += z[i] > 1.0f; }
    for (int i = 0; i < n / 2; i++) c += (double)z[i] * z[n / 2 + i];   // the cos and sin halves
    m1 /= n; m2 /= n; m4 /= n; c /= n / 2;
    CHECK(fabs(m1) < 5.0 / sqrt(n), "normal mean %g", m1);
    CHECK(fabs(m2 - 1.0) < 5.0 * sqrt(2.0 / n), "normal variance %g", m2);
    CHECK(fabs(m4 - 3.0) < 5.0 * sqrt(96.0 / n), "normal 4th moment %g", m4);
    CHECK(fabs(c) < 5.0 / sqrt(n / 2), "cos/sin halves correlated %g", c);
    CHECK(fabs((double)tail / n - 0.158655254) < 5.0 * sqrt(0.1587 * 0.8413 / n), "P(z > 1) %g", (double)tail / n);
    // Gumbel(0,1): mean = Euler's gamma, variance pi^2/6
    vm_vec_gumbels(&g, z, sc, n);
    m1 = 0; m2 = 0;
    for (int i = 0; i < n; i++) m1 += z[i];
    m1 /= n;
    for (int i = 0; i < n; i++) m2 += (z[i] - m1) * (z[i] - m1);
    m2 /= n;
    CHECK(fabs(m1 - 0.5772156649) < 5.0 * sqrt(1.6449 / n), "gumbel mean %g", m1);
    CHECK(fabs(m2 - 1.644934067) < 5.0 * sqrt(8.0 / n), "gumbel variance %g", m2);
    free(z); free(sc);
}

// VGLR-fc inference: p_bar (S samples, many tokens with the same u averaged) against an
// independent Monte-Carlo mean of softmax(mu + L eps) with L built here; and logits = mu.
static void test_vglr_pbar(void) {
    const int D = 8, N = 5, K = 2, T = 400, S = 50, H = 3;
    float w[N * D], u1[D];
    vm_rng g;
    vm_rng_seed(&g, 17);
    for (int i = 0; i < N * D; i++) w[i] = 0.4f * vm_rng_normal(&g);
    for (int d = 0; d < D; d++) u1[d] = vm_rng_normal(&g);
    vm_tensor wt;
    vm_tensor_init(&wt, "w", VM_TYPE_F32, 2, (int64_t[]){ D, N }, w);
    const vm_router_layer L = { .layer = 0, .n_embd = D, .n_expert = N, .n_expert_used = K,
                                .conv = VM_GATE_SOFTMAX_SELECTED, .w_gate = &wt, .weights_scale = 1.0f };
    vm_router_opts o;
    vm_router_opts_default(&o);
    o.samples = S; o.hidden = H;
    vm_router *r = vm_router_create("vglr-fc", &L, &o);
    if (!r) { CHECK(0, "create"); return; }
    for (int p = 0; p < 3; p++)
        for (int64_t e = 0; e < r->params[p].ne[0] * r->params[p].ne[1]; e++)
            r->params[p].w[e] += 0.8f * vm_rng_normal(&g);
    // independent: h, mu, v, L
    double h[H], mu[N], v[N * (N + 1) / 2], Lm[N][N];
    memset(Lm, 0, sizeof Lm);
    for (int j = 0; j < H; j++) {
        double a = 0.0;
        for (int d = 0; d < D; d++) a += (double)r->params[0].w[j * D + d] * u1[d];
        h[j] = a > 0 ? a : 0;
    }
    for (int i = 0; i < N; i++) {
        double l = 0.0;
        for (int d = 0; d < D; d++) l += (double)w[i * D + d] * u1[d];
        for (int j = 0; j < H; j++) l += (double)r->params[1].w[i * H + j] * h[j];
        mu[i] = l;
    }
    for (int p = 0; p < N * (N + 1) / 2; p++) {
        v[p] = 0.0;
        for (int j = 0; j < H; j++) v[p] += (double)r->params[2].w[p * H + j] * h[j];
    }
    for (int i = 0; i < N; i++)
        for (int j = 0; j <= i; j++) Lm[i][j] = i == j ? exp(v[i * (i + 1) / 2 + j]) : v[i * (i + 1) / 2 + j];
    // reference mean and per-sample variance of softmax(mu + L eps)
    const int M = 200000;
    double ref[N], ref2[N];
    for (int i = 0; i < N; i++) ref[i] = ref2[i] = 0.0;
    vm_rng gr;
    vm_rng_seed(&gr, 99);
    for (int m = 0; m < M; m++) {
        double e[N], l[N], mx = -1e300, sum = 0.0;
        for (int i = 0; i < N; i++) e[i] = vm_rng_normal(&gr);
        for (int i = 0; i < N; i++) {
            l[i] = mu[i];
            for (int j = 0; j <= i; j++) l[i] += Lm[i][j] * e[j];
            if (l[i] > mx) mx = l[i];
        }
        for (int i = 0; i < N; i++) { l[i] = exp(l[i] - mx); sum += l[i]; }
        for (int i = 0; i < N; i++) { ref[i] += l[i] / sum; ref2[i] += (l[i] / sum) * (l[i] / sum); }
    }
    float *u = malloc(sizeof(float) * T * D);
    for (int t = 0; t < T; t++) memcpy(u + (size_t)t * D, u1, sizeof u1);
    outs a;
    outs_init(&a, T, N, K);
    vm_router_out oa = { a.lo, a.pr, a.se, a.ga, NULL };
    CHECK(r->ops->forward(r, &L, u, T, &oa, &g) == 0, "vglr-fc inference");
    int bad = 0;
    for (int i = 0; i < N; i++) {
        double pb = 0.0;
        for (int t = 0; t < T; t++) pb += a.pr[(size_t)t * N + i];
        pb /= T;
        const double mean = ref[i] / M, var = ref2[i] / M - mean * mean;
        const double se = sqrt(var / ((double)T * S) + var / M);
        if (fabs(pb - mean) > 5.0 * se + 1e-6) { bad++; fprintf(stderr, "  p_bar[%d] %.5f vs %.5f (se %.2g)\n", i, pb, mean, se); }
        if (fabs(a.lo[i] - mu[i]) > 1e-4 * (1.0 + fabs(mu[i]))) bad++;
    }
    CHECK(bad == 0, "vglr-fc inference p_bar / logits off the independent estimate (%d)", bad);
    outs_free(&a);
    free(u);
    vm_router_free(r);
}

int main(void) {
    test_thread_independence();
    test_vec_math();
    test_vglr_pbar();
    return TEST_SUMMARY();
}

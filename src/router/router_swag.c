// SWAG router (SWA-Gaussian, Maddox et al. 2019; docs/method.md §3.4): a Gaussian posterior over the
// router weights W_r of the layer, fitted from the trajectory of SGD around the MAP router.
//   "swag.w_r" ne = [D, N]       trainable; during `vmoer fit` the SGD iterate (MAP, then the
//                                collection phase), afterwards the SWA mean W_bar
//   "swag.var" ne = [D, N]       frozen: the diagonal variance sigma^2 of each weight (>= 0)
//   "swag.dev" ne = [D*N, k]     frozen: k deviation columns Dev_j = W_j - W_bar_j, each an (N, D)
//                                matrix laid out like W_r (k = opts.swag_rank)
// Posterior: W ~ N(W_bar, scale (diag(sigma^2)/2 + Dev Dev^T / (2(k-1)))), i.e. the sampler
//   W = W_bar + sqrt(scale) (1/sqrt2 sigma .* z1 + 1/sqrt(2(k-1)) Dev z2),  z1 ~ N(0, I_DN), z2 ~ N(0, I_k).
// Training forward (r->training): the deterministic router on swag.w_r (like map): SWAG's SGD trains
// the plain network. collect/finish (router.h) turn the iterates fit hands over into the moments.
// Inference: S samples, averaged in probability space, top-K once (one model pass, like VGLR). The
// per-token predictive p_bar = E_W[convention(W u)] depends only on the distribution of l = W u, a
// Gaussian with mean W_bar u and covariance scale (diag(sum_d sigma_{id}^2 u_d^2)/2 + G G^T/(2(k-1)))
// where G = [Dev_1 u .. Dev_k u] (N, k). So each token draws its S logit vectors straight from it,
//   l_c = W_bar u + sqrt(scale/2) sd .* e1_c + sqrt(scale/(2(k-1))) G e2_c,  sd_i = sqrt(sum_d sigma_{id}^2 u_d^2),
// N + k normals per sample instead of D N: exact in distribution for every token (the "local
// reparameterisation"; tokens draw independently, which the per-token predictive does not see).
// Outputs: logits = W_bar u, probs = p_bar; selection and gates from p_bar (vm_gate_from_probs).
// Read-outs: gate entropy of p_bar; disagreement = fraction of samples whose own top-K set differs
// from the final one; prob_var = sum_i (1/S) sum_c (p_{c,i} - p_bar_i)^2 (VM_UNC_PROB_VAR).
// Random stream (inference): one vm_rng_u64 of the caller's stream gives `base`; token t draws from
// vm_rng_seed2(base, t) (N + k) * Sp normals (Sp = S rounded up to 8, vm_vec_normals), rows e1_0..
// e1_{N-1}, then e2_0..e2_{k-1}, each Sp long; columns c >= S are drawn but unused. Tokens run in
// parallel; the result does not depend on the thread count.
#include "router/router_swag.h"
#include "router/router_impl.h"
#include "router/router_vec.h"
#include "kernels/ops.h"

#include <omp.h>
#include <stdlib.h>

enum { W_R = 0, VAR = 1, DEV = 2 };

static int64_t numel(const vm_param *p) { return p->ne[0] * (p->n_dims > 1 ? p->ne[1] : 1); }

typedef struct swag_state {
    int S, k;
    float scale;
    vm_swag_moments mom;             // while fit collects (mom.n > 0), else empty
    float *mu; size_t mu_cap;        // (T,N) W_bar u
    float *sd; size_t sd_cap;        // (T,N) sqrt(sum_d sigma^2 u_d^2)
    float *g; size_t g_cap;          // (T,k N) Dev_j u, row-major per token: g[j N + i] = (Dev_j u)_i
    float *u2; size_t u2_cap;        // (T,D) u^2
} swag_state;

// ---------------------------------------------------------------- the moment collector

int vm_swag_moments_init(vm_swag_moments *m, int64_t n, int k) {
    memset(m, 0, sizeof *m);
    if (n <= 0 || k < 1) return vm_err("swag: moments of %lld parameters, %d columns", (long long)n, k);
    size_t nk;
    if (vm_size_mul((size_t)n, (size_t)k, &nk)) return vm_err("swag: %lld x %d deviations overflow", (long long)n, k);
    m->n = n; m->k = k;
    m->mean = vm_calloc((size_t)n, sizeof(double));
    m->sq = vm_calloc((size_t)n, sizeof(double));
    m->dev = vm_calloc(nk, sizeof(float));
    if (!m->mean || !m->sq || !m->dev) { vm_swag_moments_free(m); return -1; }
    return 0;
}

void vm_swag_moments_free(vm_swag_moments *m) {
    free(m->mean); free(m->sq); free(m->dev);
    memset(m, 0, sizeof *m);
}

void vm_swag_moments_add(vm_swag_moments *m, const float *theta) {
    const double a = (double)m->count / (double)(m->count + 1), b = 1.0 / (double)(m->count + 1);
    float *col = m->dev + (size_t)(m->count % m->k) * (size_t)m->n;
    for (int64_t i = 0; i < m->n; i++) {
        const double x = theta[i];
        m->mean[i] = a * m->mean[i] + b * x;
        m->sq[i] = a * m->sq[i] + b * x * x;
        col[i] = (float)(x - m->mean[i]);
    }
    m->count++;
}

int vm_swag_moments_get(const vm_swag_moments *m, float *mean, float *var, float *dev) {
    for (int64_t i = 0; i < m->n; i++) {
        const double v = m->sq[i] - m->mean[i] * m->mean[i];   // may round below 0 for a constant weight
        mean[i] = (float)m->mean[i];
        var[i] = v > 0.0 ? (float)v : 0.0f;
    }
    const int filled = m->count < m->k ? (int)m->count : m->k;
    const int64_t oldest = m->count - filled;
    for (int j = 0; j < m->k; j++) {
        float *out = dev + (size_t)j * (size_t)m->n;
        if (j < filled) memcpy(out, m->dev + (size_t)((oldest + j) % m->k) * (size_t)m->n, (size_t)m->n * sizeof(float));
        else memset(out, 0, (size_t)m->n * sizeof(float));
    }
    return filled;
}

// ---------------------------------------------------------------- sampling

// The token-level Gaussian of the logits for T tokens: mu (T,N) = u W_bar^T, sd (T,N) =
// sqrt(u^2 (sigma^2)^T), g (T,kN) = u Dev^T with Dev read as a (kN, D) matrix (its k columns stacked).
static void token_gaussian(const vm_router *r, const vm_router_layer *L, int k, const float *u, int T,
                           float *u2, float *mu, float *sd, float *g) {
    const int D = L->n_embd, N = L->n_expert;
    vm_rt_matmul(mu, u, r->params[W_R].w, T, D, N);
    for (size_t i = 0; i < (size_t)T * D; i++) u2[i] = u[i] * u[i];
    vm_rt_matmul(sd, u2, r->params[VAR].w, T, D, N);
    for (size_t i = 0; i < (size_t)T * N; i++) sd[i] = sd[i] > 0.0f ? sqrtf(sd[i]) : 0.0f;
    vm_rt_matmul(g, u, r->params[DEV].w, T, D, k * N);
}

// One token's samples as the columns of Z (N,Sp): Z[i][c] = mu_i + a sd_i e1[i][c] + b sum_j g[jN+i] e2[j][c]
// (a = sqrt(scale/2), b = sqrt(scale/(2(k-1)))). E: (N+k)*Sp floats of normals, scratch as many.
static void token_samples(int N, int k, int Sp, float scale, const float *mu, const float *sd, const float *g,
                          vm_rng *rng, float *E, float *scratch, float *Z) {
    const float a = sqrtf(0.5f * scale), b = sqrtf(scale / (2.0f * (float)(k - 1)));
    vm_vec_normals(rng, E, scratch, (N + k) * Sp);
    for (int i = 0; i < N; i++) {
        float *zi = Z + (size_t)i * Sp;
        const float *e1 = E + (size_t)i * Sp, m = mu[i], s = a * sd[i];
        #pragma omp simd
        for (int c = 0; c < Sp; c++) zi[c] = m + s * e1[c];
        for (int j = 0; j < k; j++) {
            const float gj = b * g[(size_t)j * N + i], *e2 = E + (size_t)(N + j) * Sp;
            if (gj == 0.0f) continue;   // a column never collected
            #pragma omp simd
            for (int c = 0; c < Sp; c++) zi[c] += gj * e2[c];
        }
    }
}

// P (N,Sp) = the convention's probabilities of each column of Z; mx, den: Sp floats of scratch.
static void column_probs(const vm_router_layer *L, int N, int Sp, const float *Z, float *P, float *mx, float *den) {
    if (L->conv == VM_GATE_SIGMOID || L->conv == VM_GATE_SIGMOID_NORM) {
        for (int i = 0; i < N; i++) {
            const float *zi = Z + (size_t)i * Sp;
            float *pi = P + (size_t)i * Sp;
            #pragma omp simd
            for (int c = 0; c < Sp; c++) pi[c] = 1.0f / (1.0f + vm_vec_exp(-zi[c]));
        }
        return;
    }
    for (int c = 0; c < Sp; c++) { mx[c] = Z[c]; den[c] = 0.0f; }
    for (int i = 1; i < N; i++) {
        const float *zi = Z + (size_t)i * Sp;
        #pragma omp simd
        for (int c = 0; c < Sp; c++) mx[c] = vm_vec_sel(zi[c] > mx[c], zi[c], mx[c]);
    }
    for (int i = 0; i < N; i++) {
        const float *zi = Z + (size_t)i * Sp;
        float *pi = P + (size_t)i * Sp;
        #pragma omp simd
        for (int c = 0; c < Sp; c++) { pi[c] = vm_vec_exp(zi[c] - mx[c]); den[c] += pi[c]; }
    }
    for (int i = 0; i < N; i++) {
        float *pi = P + (size_t)i * Sp;
        #pragma omp simd
        for (int c = 0; c < Sp; c++) pi[c] /= den[c];
    }
}

// Floats of one thread's scratch (Sp = S rounded up to 8).
static size_t infer_ws_floats(int N, int k, int Sp) {
    return 2 * (size_t)(N + k) * Sp + 2 * (size_t)N * Sp + 2 * (size_t)Sp + (size_t)N;
}

// Fraction of the S columns of Z whose own top-K set differs from sel.
static float disagreement(const vm_router_layer *L, const float *Z, int Sp, int S, const int32_t *sel, float *col) {
    const int N = L->n_expert, K = L->n_expert_used;
    int differ = 0;
    for (int c = 0; c < S; c++) {
        int32_t ss[K];
        for (int i = 0; i < N; i++) col[i] = Z[(size_t)i * Sp + c];
        vm_gate_select(L, col, ss);
        differ += !vm_rt_same_set(ss, sel, K);
    }
    return (float)differ / (float)S;
}

static void infer_token(const swag_state *s, const vm_router_layer *L, int t, vm_rng *g, float *ws,
                        vm_router_out *out) {
    const int N = L->n_expert, K = L->n_expert_used, k = s->k, S = s->S, Sp = (S + 7) & ~7;
    float *E = ws, *scratch = E + (size_t)(N + k) * Sp, *Z = scratch + (size_t)(N + k) * Sp;
    float *P = Z + (size_t)N * Sp, *mx = P + (size_t)N * Sp, *den = mx + Sp, *col = den + Sp;
    const float *mu = s->mu + (size_t)t * N;
    float *lo = out->logits + (size_t)t * N, *po = out->probs + (size_t)t * N;
    int32_t *sel = out->sel + (size_t)t * K;
    token_samples(N, k, Sp, s->scale, mu, s->sd + (size_t)t * N, s->g + (size_t)t * k * N, g, E, scratch, Z);
    column_probs(L, N, Sp, Z, P, mx, den);
    double pvar = 0.0;
    for (int i = 0; i < N; i++) {
        const float *pi = P + (size_t)i * Sp;
        double acc = 0.0, acc2 = 0.0;
        for (int c = 0; c < S; c++) { acc += pi[c]; acc2 += (double)pi[c] * pi[c]; }
        const double m = acc / S, v = acc2 / S - m * m;
        pvar += v > 0.0 ? v : 0.0;
        po[i] = (float)m;
        lo[i] = mu[i];
    }
    vm_gate_from_probs(L, po, sel, out->gates + (size_t)t * K);
    if (!out->unc) return;
    vm_rt_unc(out->unc, t, NAN, vm_gate_entropy(po, N), NAN, disagreement(L, Z, Sp, S, sel, col));
    out->unc[(size_t)t * VM_UNC_COUNT + VM_UNC_PROB_VAR] = (float)pvar;
}

// The training forward: the deterministic router on the current iterate.
static int train_forward(vm_router *r, const vm_router_layer *L, const float *u, int T, vm_router_out *out) {
    const int N = L->n_expert, K = L->n_expert_used;
    vm_rt_matmul(out->logits, u, r->params[W_R].w, T, L->n_embd, N);
    for (int t = 0; t < T; t++) {
        vm_gate_from_logits(L, out->logits + (size_t)t * N, out->probs + (size_t)t * N,
                            out->sel + (size_t)t * K, out->gates + (size_t)t * K);
        vm_rt_unc(out->unc, t, NAN, vm_gate_entropy(out->probs + (size_t)t * N, N), NAN, NAN);
    }
    return 0;
}

static int swag_forward(vm_router *r, const vm_router_layer *L, const float *u, int T,
                        vm_router_out *out, vm_rng *rng) {
    swag_state *s = r->state;
    if (vm_rt_check_out(L, out, "swag")) return -1;
    // a stream is required in both modes, as of every STOCHASTIC kind (the training forward draws none)
    if (!rng) return vm_err("router swag: needs a random stream (layer %d)", L->layer);
    if (r->training) return train_forward(r, L, u, T, out);
    const int D = L->n_embd, N = L->n_expert, k = s->k;
    if (!(s->mu = vm_rt_grow(s->mu, &s->mu_cap, (size_t)T * N * sizeof(float))) ||
        !(s->sd = vm_rt_grow(s->sd, &s->sd_cap, (size_t)T * N * sizeof(float))) ||
        !(s->g = vm_rt_grow(s->g, &s->g_cap, (size_t)T * k * N * sizeof(float))) ||
        !(s->u2 = vm_rt_grow(s->u2, &s->u2_cap, (size_t)T * D * sizeof(float)))) return -1;
    token_gaussian(r, L, k, u, T, s->u2, s->mu, s->sd, s->g);
    const uint64_t base = vm_rng_u64(rng);
    const size_t wsn = infer_ws_floats(N, k, (s->S + 7) & ~7);
    int failed = 0;
    #pragma omp parallel if (T > 1 && omp_get_max_threads() > 1)
    {
        float *ws = malloc(wsn * sizeof(float));
        if (!ws) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for schedule(static)
        for (int t = 0; t < T; t++) {
            if (!ws) continue;
            vm_rng g;
            vm_rng_seed2(&g, base, (uint64_t)t);
            infer_token(s, L, t, &g, ws, out);
        }
        free(ws);
    }
    if (failed) return vm_err("router swag: out of memory for the sampling scratch (layer %d)", L->layer);
    return 0;
}

int vm_swag_token_logits(const vm_router *r, const vm_router_layer *L, const float *u, int S, vm_rng *g,
                         float *out) {
    if (!r || r->ops != &vm_router_ops_swag) return vm_err("swag: not a swag router");
    const swag_state *s = r->state;
    const int D = L->n_embd, N = L->n_expert, k = s->k, Sp = (S + 7) & ~7;
    float *buf = vm_malloc(((size_t)D + 2 * (size_t)N + (size_t)k * N + 2 * (size_t)(N + k) * Sp +
                            (size_t)N * Sp) * sizeof(float));
    if (!buf) return -1;
    float *u2 = buf, *mu = u2 + D, *sd = mu + N, *gm = sd + N, *E = gm + (size_t)k * N;
    float *scratch = E + (size_t)(N + k) * Sp, *Z = scratch + (size_t)(N + k) * Sp;
    token_gaussian(r, L, k, u, 1, u2, mu, sd, gm);
    token_samples(N, k, Sp, s->scale, mu, sd, gm, g, E, scratch, Z);
    for (int c = 0; c < S; c++)
        for (int i = 0; i < N; i++) out[(size_t)c * N + i] = Z[(size_t)i * Sp + c];
    free(buf);
    return 0;
}

// ---------------------------------------------------------------- training, collection, loading

// Recomputes the logits from u on the iterate, then dW += dl u^T, du += W^T dl (as map).
static int swag_backward(vm_router *r, const vm_router_layer *L, const float *u, int T,
                         const vm_router_out *out, const float *dgates, float *du, float reg_weight) {
    (void)out; (void)reg_weight;
    return vm_rt_linear_backward(L, &r->params[W_R], u, T, dgates, du);
}

static double swag_reg(const vm_router *r) { (void)r; return 0.0; }

static int swag_collect(vm_router *r) {
    swag_state *s = r->state;
    const vm_param *w = &r->params[W_R];
    if (!s->mom.n && vm_swag_moments_init(&s->mom, numel(w), s->k)) return -1;
    vm_swag_moments_add(&s->mom, w->w);
    return 0;
}

// W_bar into swag.w_r, sigma^2 into swag.var, the last k deviations into swag.dev.
static int swag_finish(vm_router *r) {
    swag_state *s = r->state;
    if (!s->mom.count) return vm_err("router swag: no snapshots collected");
    vm_swag_moments_get(&s->mom, r->params[W_R].w, r->params[VAR].w, r->params[DEV].w);
    vm_swag_moments_free(&s->mom);
    return 0;
}

static int swag_check(const vm_router *r) {
    const vm_param *v = &r->params[VAR];
    const int64_t n = numel(v);
    for (int64_t i = 0; i < n; i++)
        if (!(v->w[i] >= 0.0f)) return vm_err("%s[%lld] = %g: a variance cannot be negative", v->name, (long long)i, (double)v->w[i]);
    return 0;
}

static void swag_free(vm_router *r) {
    if (!r) return;
    swag_state *s = r->state;
    if (s) { vm_swag_moments_free(&s->mom); free(s->mu); free(s->sd); free(s->g); free(s->u2); }
    vm_rt_free(r);
}

// W_bar u, u^2 (D), the variance's product, k deviation products, and per sample and expert the
// diagonal term and k low-rank multiply-adds.
static double swag_flops(const vm_router *r, const vm_router_layer *L) {
    const swag_state *s = r->state;
    const double D = L->n_embd, N = L->n_expert, k = s->k;
    return 2.0 * D * N * (k + 2.0) + D + s->S * N * (2.0 + 2.0 * k);
}

const vm_router_ops vm_router_ops_swag = {
    .name = "swag", .flags = VM_ROUTER_TRAINABLE | VM_ROUTER_STOCHASTIC,
    .unc = VM_UNC_BIT(VM_UNC_GATE_ENTROPY) | VM_UNC_BIT(VM_UNC_DISAGREEMENT) | VM_UNC_BIT(VM_UNC_PROB_VAR),
    .flops = swag_flops, .forward = swag_forward, .free = swag_free, .backward = swag_backward, .reg = swag_reg,
    .collect = swag_collect, .finish = swag_finish, .check = swag_check };

// Fresh: W_bar = W_r (the pretrained router, so fit's MAP phase starts there as map's does), no spread.
vm_router *vm_router_create_swag(const vm_router_layer *L, const vm_router_opts *o) {
    vm_router *r = vm_rt_alloc(&vm_router_ops_swag, sizeof(swag_state), 3);
    if (!r) return NULL;
    swag_state *s = r->state;
    const int D = L->n_embd, N = L->n_expert;
    s->S = o->samples; s->k = o->swag_rank; s->scale = o->swag_scale;
    float *w = vm_rt_w_gate_f32(L);
    if (!w || vm_rt_param(&r->params[W_R], "swag.w_r", D, N) || vm_rt_param(&r->params[VAR], "swag.var", D, N) ||
        vm_rt_param(&r->params[DEV], "swag.dev", (int64_t)D * N, s->k)) { free(w); swag_free(r); return NULL; }
    memcpy(r->params[W_R].w, w, (size_t)D * N * sizeof(float));
    free(w);
    r->params[VAR].frozen = 2;   // constants of the posterior: required in an adapter
    r->params[DEV].frozen = 2;
    return r;
}

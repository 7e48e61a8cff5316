// VTSR, the Variational Temperature Sampling Router (docs/method.md §3.2):
//   a = W_1 u + b_1, h = ReLU(a)       W_1 (H,D) "vtsr.w_1" ne = [D, H]; b_1 (H) "vtsr.b_1"
//   o = w_2 . h + b_2                  w_2 (H)   "vtsr.w_2";             b_2 (1) "vtsr.b_2"
//   T(u) = softplus(o) + 1e-6, z = l_det / T, l_det = W_r u (frozen)
// Selection: Gumbel-top-K, i.e. the convention's selection rule on z + g with g i.i.d. Gumbel(0,1)
// (for softmax archs without selection bias: top-K of z + g = K draws without replacement from
// softmax(z), a Plackett-Luce draw), in training and at inference alike. Gates: the base convention
// on z at the selected set (vm_gate_at).
// Gradient: pathwise through the gates, plus -- where the selection is a Plackett-Luce draw (no
// selection bias, no group-limited routing: the softmax and sigmoid conventions rank z + g itself)
// -- the score-function term r->sf_coef * d log P(sel | z) / d z, with
//   log P(s_1..s_K | z) = sum_k [z_{s_k} - log sum_{j not in s_1..s_{k-1}} exp z_j],
// so that E[pathwise + (loss - baseline) d log P] is the gradient of the EXPECTED loss
// (docs/method.md §3.2; test_vtsr_estimator.c checks it by Monte Carlo). dz reaches T and l_det.
// T0: the initial temperature and the centre of its prior, T0 = sigma_p sqrt(6)/pi (Gumbel noise
// T0 g on the logits then has the SD sigma_p of VGLR's prior), kept as the frozen parameter
// "vtsr.t0"; opts.prior_sd <= 0 gives the scale-blind T0 = 1.
// Init: W_1, b_1 as torch.nn.Linear's default (U(-1/sqrt(D), 1/sqrt(D))); w_2 = 0 and
// b_2 = softplus^-1(T0 - 1e-6), so that T(u) = T0 for EVERY u at initialisation.
// Regulariser: a log-normal prior on T around T0, reg_t = (log T(u_t) - log T0)^2 / 2 (finite
// optimum at T0, unlike the -log T of the first specification, which fell without bound as T
// grew); reg() = its sum over the tokens of the last forward.
// Outputs: logits = z (the scaled logits the gates come from), probs = convention(z).
// Read-outs: temperature T, gate entropy H(softmax(z)) (the distribution the draws come from).
// Random stream: one vm_rng_u64 of the caller's stream gives `base`; token t draws its N Gumbels
// (expert 0..N-1; N rounded up to even) from its own stream vm_rng_seed2(base, t) by
// vm_vec_gumbels (router_vec.h). Tokens run in parallel: same result for any thread count.
#include "router/router_impl.h"
#include "router/router_vec.h"
#include "kernels/ops.h"

#include <omp.h>
#include <stdlib.h>

#define VTSR_T_MIN 1e-6f

typedef struct vtsr_state {
    int H, T;
    double reg_sum;
    float *h; size_t h_cap;          // (T,H) trunk output
    float *o; size_t o_cap;          // (T) softplus input
    float *temp; size_t temp_cap;    // (T) T(u)
    float *z; size_t z_cap;          // (T,N) scaled logits
    int32_t *sel; size_t sel_cap;    // (T,K)
} vtsr_state;

enum { W_1 = 0, B_1 = 1, W_2 = 2, B_2 = 3, T0 = 4 };

static int vtsr_forward(vm_router *r, const vm_router_layer *L, const float *u, int T,
                        vm_router_out *out, vm_rng *rng) {
    vtsr_state *s = r->state;
    if (vm_rt_check_out(L, out, "vtsr")) return -1;
    if (!rng) return vm_err("router vtsr: needs a random stream (layer %d)", L->layer);
    const int D = L->n_embd, N = L->n_expert, K = L->n_expert_used, H = s->H;
    s->T = 0; s->reg_sum = 0.0;
    if (!(s->h = vm_rt_grow(s->h, &s->h_cap, (size_t)T * H * sizeof(float))) ||
        !(s->o = vm_rt_grow(s->o, &s->o_cap, (size_t)T * sizeof(float))) ||
        !(s->temp = vm_rt_grow(s->temp, &s->temp_cap, (size_t)T * sizeof(float))) ||
        !(s->z = vm_rt_grow(s->z, &s->z_cap, (size_t)T * N * sizeof(float))) ||
        !(s->sel = vm_rt_grow(s->sel, &s->sel_cap, (size_t)T * K * sizeof(int32_t)))) return -1;
    const float *b1 = r->params[B_1].w, *w2 = r->params[W_2].w, b2 = r->params[B_2].w[0];
    vm_router_logits(L, u, T, out->logits);   // l_det, replaced by z below
    vm_rt_matmul(s->h, u, r->params[W_1].w, T, D, H);   // (T,H), bias and ReLU below
    // tokens in parallel, token t drawing from its own stream (base, t): thread-count independent
    const uint64_t base = vm_rng_u64(rng);
    const int Np = (N + 1) & ~1;
    #pragma omp parallel if (T > 1 && omp_get_max_threads() > 1)
    {
        float gum[Np], scr[Np], zg[N], sm[N];
        #pragma omp for schedule(static)
        for (int t = 0; t < T; t++) {
            float *h = s->h + (size_t)t * H, *z = out->logits + (size_t)t * N;
            int32_t *sel = out->sel + (size_t)t * K;
            float o = b2;
            for (int j = 0; j < H; j++) {
                h[j] += b1[j];
                if (!(h[j] > 0.0f)) h[j] = 0.0f;
                o += w2[j] * h[j];
            }
            const float temp = vm_rt_softplus(o) + VTSR_T_MIN;
            vm_rng g;
            vm_rng_seed2(&g, base, (uint64_t)t);
            vm_vec_gumbels(&g, gum, scr, Np);
            for (int i = 0; i < N; i++) { z[i] /= temp; zg[i] = z[i] + gum[i]; }
            vm_gate_select(L, zg, sel);
            vm_gate_at(L, z, sel, out->gates + (size_t)t * K);
            vm_gate_probs(L, z, out->probs + (size_t)t * N);
            s->o[t] = o;
            s->temp[t] = temp;
            memcpy(s->z + (size_t)t * N, z, (size_t)N * sizeof(float));
            memcpy(s->sel + (size_t)t * K, sel, (size_t)K * sizeof(int32_t));
            if (out->unc) {
                vm_softmax_forward(sm, z, N);
                vm_rt_unc(out->unc, t, NAN, vm_gate_entropy(sm, N), temp, NAN);
            }
        }
    }
    const double lt0 = log((double)r->params[T0].w[0]);
    for (int t = 0; t < T; t++) {   // in token order
        const double d = log((double)s->temp[t]) - lt0;
        s->reg_sum += 0.5 * d * d;
    }
    s->T = T;
    return 0;
}

// Whether the selection is a Plackett-Luce draw from softmax(z) (top-K of z + g): the selection rule
// ranks z + g itself (softmax and sigmoid are monotone) with no selection bias and no groups.
static int plackett_luce(const vm_router_layer *L) {
    return !L->sel_bias && !(L->n_group > 1 && L->topk_group > 0 && L->topk_group < L->n_group);
}

// dz (N) += coef * d log P(sel_1..sel_K | z) / dz for a Plackett-Luce draw.
static void pl_score(const float *z, const int32_t *sel, int N, int K, float coef, float *dz) {
    unsigned char gone[N];
    double mx = z[0];
    for (int i = 0; i < N; i++) { gone[i] = 0; if (z[i] > mx) mx = z[i]; }
    for (int k = 0; k < K; k++) {
        // step k: z_{s_k} - log sum over the experts not yet drawn
        double sum = 0.0;
        for (int i = 0; i < N; i++) if (!gone[i]) sum += exp(z[i] - mx);
        for (int i = 0; i < N; i++) if (!gone[i]) dz[i] -= (float)(coef * exp(z[i] - mx) / sum);
        dz[sel[k]] += coef;
        gone[sel[k]] = 1;
    }
}

static int vtsr_backward(vm_router *r, const vm_router_layer *L, const float *u, int T,
                         const vm_router_out *out, const float *dgates, float *du, float reg_weight) {
    (void)out;
    vtsr_state *s = r->state;
    if (T != s->T) return vm_err("router vtsr: backward for %d tokens after a forward of %d (layer %d)",
                                 T, s->T, L->layer);
    const int D = L->n_embd, N = L->n_expert, K = L->n_expert_used, H = s->H;
    const double c = reg_weight, lt0 = log((double)r->params[T0].w[0]);
    const float sf = plackett_luce(L) ? r->sf_coef : 0.0f;
    vm_param *W1 = &r->params[W_1], *b1 = &r->params[B_1], *w2 = &r->params[W_2], *b2 = &r->params[B_2];
    float *dl = vm_calloc((size_t)T * N, sizeof(float)), *da = vm_malloc((size_t)T * H * sizeof(float));
    float dz[N];
    int rc = -1;
    if (!dl || !da) goto done;
    for (int t = 0; t < T; t++) {
        const float *z = s->z + (size_t)t * N, *h = s->h + (size_t)t * H;
        const int32_t *sel = s->sel + (size_t)t * K;
        float *dat = da + (size_t)t * H;
        const float temp = s->temp[t];
        for (int i = 0; i < N; i++) dz[i] = 0.0f;
        vm_gate_backward(L, z, sel, dgates + (size_t)t * K, dz);
        if (sf != 0.0f) pl_score(z, sel, N, K, sf, dz);
        // z = l_det / T: dl_det = dz / T, dT = -sum dz_i l_det_i / T^2 = -sum dz_i z_i / T
        double dT = 0.0;
        for (int i = 0; i < N; i++) { dl[(size_t)t * N + i] = dz[i] / temp; dT -= (double)dz[i] * z[i]; }
        dT = dT / temp + c * (log((double)temp) - lt0) / temp;     // reg: c (log T - log T0)^2 / 2
        const float dout = (float)(dT * vm_rt_sigmoid(s->o[t]));   // softplus' = sigmoid
        b2->g[0] += dout;
        for (int j = 0; j < H; j++) {
            w2->g[j] += dout * h[j];
            dat[j] = h[j] > 0.0f ? dout * w2->w[j] : 0.0f;
            b1->g[j] += dat[j];
        }
    }
    vm_rt_matmul_backward(W1->g, du, W1->w, u, da, T, D, H);
    rc = vm_router_logits_backward(L, dl, T, du);
done:
    free(dl); free(da);
    return rc;
}

static double vtsr_reg(const vm_router *r) {
    const vtsr_state *s = r->state;
    return s->T > 0 ? s->reg_sum : 0.0;
}

static void vtsr_free(vm_router *r) {
    if (!r) return;
    vtsr_state *s = r->state;
    if (s) { free(s->h); free(s->o); free(s->temp); free(s->z); free(s->sel); }
    vm_rt_free(r);
}

static double vtsr_flops(const vm_router *r, const vm_router_layer *L) {   // W_r u, W_1 u, w_2 . h
    const double D = L->n_embd, H = ((const vtsr_state *)r->state)->H;
    return 2.0 * D * L->n_expert + 2.0 * D * H + 2.0 * H;
}

const vm_router_ops vm_router_ops_vtsr = {
    .name = "vtsr", .flags = VM_ROUTER_TRAINABLE | VM_ROUTER_STOCHASTIC | VM_ROUTER_SAMPLED_SELECTION,
    .unc = VM_UNC_BIT(VM_UNC_GATE_ENTROPY) | VM_UNC_BIT(VM_UNC_TEMPERATURE), .flops = vtsr_flops,
    .forward = vtsr_forward, .free = vtsr_free, .backward = vtsr_backward, .reg = vtsr_reg };

vm_router *vm_router_create_vtsr(const vm_router_layer *L, const vm_router_opts *o) {
    vm_router *r = vm_rt_alloc(&vm_router_ops_vtsr, sizeof(vtsr_state), 5);
    if (!r) return NULL;
    vtsr_state *s = r->state;
    const int D = L->n_embd;
    const int H = s->H = o->hidden > 0 ? o->hidden : (D / 4 > 0 ? D / 4 : 1);
    if (vm_rt_param(&r->params[W_1], "vtsr.w_1", D, H) || vm_rt_param(&r->params[B_1], "vtsr.b_1", H, 1) ||
        vm_rt_param(&r->params[W_2], "vtsr.w_2", H, 1) || vm_rt_param(&r->params[B_2], "vtsr.b_2", 1, 1) ||
        vm_rt_param(&r->params[T0], "vtsr.t0", 1, 1)) {
        vtsr_free(r);
        return NULL;
    }
    vm_rng g;
    const float bound = 1.0f / sqrtf((float)D);
    vm_rt_init_rng(&g, o->seed, L->layer, W_1);
    for (size_t i = 0; i < (size_t)H * D; i++) r->params[W_1].w[i] = bound * (float)(2.0 * vm_rng_uniform(&g) - 1.0);
    vm_rt_init_rng(&g, o->seed, L->layer, B_1);
    for (int j = 0; j < H; j++) r->params[B_1].w[j] = bound * (float)(2.0 * vm_rng_uniform(&g) - 1.0);
    // T0 = sigma_p sqrt(6)/pi, or 1 without a scale; b_2 = softplus^-1(T0 - 1e-6) (w_2 stays 0)
    const double t0 = o->prior_sd > 0.0f ? o->prior_sd * sqrt(6.0) / M_PI : 1.0;
    r->params[T0].w[0] = (float)t0;
    r->params[T0].frozen = 1;
    const double x = t0 - VTSR_T_MIN;
    r->params[B_2].w[0] = (float)(x > 20.0 ? x : log(expm1(x)));
    return r;
}

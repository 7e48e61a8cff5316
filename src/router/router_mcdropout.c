// MC-dropout router baseline (method.md §3.3): S router-only samples l_s = W_r (u .* m_s) / (1 - p)
// with m_s ~ Bernoulli(1 - p)^D (inverted dropout), mean logits l_bar = mean_s l_s, then the base
// convention's top-K and gates from l_bar. Same in training and inference; no parameters.
// Because the router is linear, l_bar = W_r (u .* m_bar) with m_bar = mean_s m_s / (1 - p), and
// l_s = (l_det - sum_{d dropped} u_d W_r[:,d]) / (1 - p): only the ~pD dropped columns matter per
// sample, and l_bar needs only how often each input was dropped (one pass over the dropped columns
// per token; the samples' own logits are formed only for the disagreement read-out). Tokens run in
// parallel. With p = 0 l_bar == l_det bit for bit.
// Outputs: logits = l_bar, probs = convention(l_bar). Read-outs: gate entropy of probs,
// disagreement = fraction of the S samples whose own top-K set differs from the final one.
// Random stream: one vm_rng_u64 of the caller's stream gives `base`; token t draws from its own
// stream vm_rng_seed2(base, t) (tokens run in parallel: same result for any thread count): per
// sample s = 0..S-1 the dropped inputs in increasing order, each as one uniform u in (0, 1] giving
// the gap floor(log(u) / log(1-p)) to the next (Bernoulli(p) per input, drawn as geometric gaps),
// until the next drop would lie past D. Uniforms: 24 bits, two per u64 (high then low), made in
// blocks of 256 for a vectorised log (router_vec.h); the blocks run on across the samples of a
// token (u >= 2^-24 drops a tail of probability 6e-8 per gap). No draws when p = 0.
#include "router/router_impl.h"
#include "router/router_vec.h"

#include <omp.h>
#include <stdlib.h>

typedef struct mcd_state {
    float p;
    int S, T;
    float *wt;                       // (D,N) W_r transposed, f32: the column of input d is wt[d]
    float *mbar; size_t mbar_cap;    // (T,D) mean mask / (1-p), for backward
    float *lbar; size_t lbar_cap;    // (T,N) mean logits
    int32_t *sel; size_t sel_cap;    // (T,K)
} mcd_state;

// The next gap of token stream g: refilled GAPS at a time (two per u64, 24-bit uniforms u in
// (0, 1], gap = floor(log(u) / log(1 - p)), capped at 1e9), vectorised.
enum { GAPS = 256 };
typedef struct gap_src { vm_rng g; float inv_lp; int next; int32_t gap[GAPS]; float u[GAPS]; } gap_src;

static int32_t next_gap(gap_src *q) {
    if (q->next == GAPS) {
        for (int k = 0; k < GAPS; k += 2) {
            const uint64_t x = vm_rng_u64(&q->g);
            q->u[k] = (float)((x >> 40) + 1) * 0x1.0p-24f;
            q->u[k + 1] = (float)((x & 0xffffff) + 1) * 0x1.0p-24f;
        }
        const float inv_lp = q->inv_lp;
        #pragma omp simd
        for (int k = 0; k < GAPS; k++) {
            const float gf = vm_vec_log(q->u[k]) * inv_lp;
            q->gap[k] = (int32_t)vm_vec_sel(gf > 1e9f, 1e9f, gf);
        }
        q->next = 0;
    }
    return q->gap[q->next++];
}

// One token: S samples as sparse corrections of l_det, l_bar, selection, gates, read-outs.
// ws: N (acc) + N (sum) + N (a sample) floats; ndrop: D ints; ssel: S*K when out->unc.
static void mcd_token(const mcd_state *s, const vm_router_layer *L, const float *ut, int t, gap_src *q,
                      float *ws, int *ndrop, int32_t *ssel, vm_router_out *out) {
    const int D = L->n_embd, N = L->n_expert, K = L->n_expert_used, S = s->S;
    const double keep = 1.0 - s->p;
    float *acc = ws, *sum = ws + N, *ls = ws + 2 * N;
    float *l = out->logits + (size_t)t * N;
    int32_t *sel = out->sel + (size_t)t * K;
    for (int i = 0; i < N; i++) sum[i] = 0.0f;
    for (int d = 0; d < D; d++) ndrop[d] = 0;
    for (int smp = 0; smp < S; smp++) {
        for (int i = 0; i < N; i++) acc[i] = 0.0f;
        // the dropped inputs as gaps of a geometric distribution: ~pD draws instead of D
        for (int d = -1; s->p > 0.0f;) {
            const int32_t gap = next_gap(q);
            if (gap >= D - 1 - d) break;
            d += 1 + gap;
            ndrop[d]++;
            if (!out->unc) continue;   // the sample's own logits serve the disagreement read-out only
            const float ud = ut[d], *col = s->wt + (size_t)d * N;
            #pragma omp simd
            for (int i = 0; i < N; i++) acc[i] -= ud * col[i];
        }
        if (out->unc) {
            for (int i = 0; i < N; i++) ls[i] = (float)((l[i] + acc[i]) / keep);
            vm_gate_select(L, ls, ssel + (size_t)smp * K);
        }
    }
    // sum over the samples of their corrections: each dropped input once, weighted by its count
    // (fewer products than sample by sample, and the same bits whether read-outs are wanted or not)
    for (int d = 0; d < D; d++) {
        if (!ndrop[d]) continue;
        const float f = -(float)ndrop[d] * ut[d], *col = s->wt + (size_t)d * N;
        #pragma omp simd
        for (int i = 0; i < N; i++) sum[i] += f * col[i];
    }
    for (int i = 0; i < N; i++) l[i] = (float)(((double)S * l[i] + sum[i]) / ((double)S * keep));
    float *mb = s->mbar + (size_t)t * D;
    for (int d = 0; d < D; d++) mb[d] = (float)((double)(S - ndrop[d]) / ((double)S * keep));
    vm_gate_from_logits(L, l, out->probs + (size_t)t * N, sel, out->gates + (size_t)t * K);
    memcpy(s->lbar + (size_t)t * N, l, (size_t)N * sizeof(float));
    memcpy(s->sel + (size_t)t * K, sel, (size_t)K * sizeof(int32_t));
    if (out->unc) {
        int differ = 0;
        for (int smp = 0; smp < S; smp++) differ += !vm_rt_same_set(ssel + (size_t)smp * K, sel, K);
        vm_rt_unc(out->unc, t, NAN, vm_gate_entropy(out->probs + (size_t)t * N, N), NAN, (float)differ / S);
    }
}

static int mcd_forward(vm_router *r, const vm_router_layer *L, const float *u, int T,
                       vm_router_out *out, vm_rng *rng) {
    mcd_state *s = r->state;
    if (vm_rt_check_out(L, out, "mcdropout")) return -1;
    if (!rng) return vm_err("router mcdropout: needs a random stream (layer %d)", L->layer);
    const int D = L->n_embd, N = L->n_expert, K = L->n_expert_used;
    if (!(s->mbar = vm_rt_grow(s->mbar, &s->mbar_cap, (size_t)T * D * sizeof(float))) ||
        !(s->lbar = vm_rt_grow(s->lbar, &s->lbar_cap, (size_t)T * N * sizeof(float))) ||
        !(s->sel = vm_rt_grow(s->sel, &s->sel_cap, (size_t)T * K * sizeof(int32_t)))) return -1;
    s->T = T;
    vm_router_logits(L, u, T, out->logits);   // l_det, replaced by l_bar below
    // tokens in parallel, token t drawing from its own stream (base, t): thread-count independent
    const uint64_t base = vm_rng_u64(rng);
    const float inv_lp = s->p > 0.0f ? (float)(1.0 / log1p(-(double)s->p)) : 0.0f;
    int failed = 0;
    #pragma omp parallel if (T > 1 && omp_get_max_threads() > 1)
    {
        gap_src *q = malloc(sizeof *q);
        float *ws = malloc(sizeof(float) * 3 * (size_t)N);
        int *ndrop = malloc(sizeof(int) * (size_t)D);
        int32_t *ssel = out->unc ? malloc(sizeof(int32_t) * (size_t)s->S * (size_t)K) : NULL;
        const int ok = q && ws && ndrop && (ssel || !out->unc);
        if (!ok) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for schedule(static)
        for (int t = 0; t < T; t++) {
            if (!ok) continue;
            vm_rng_seed2(&q->g, base, (uint64_t)t);
            q->inv_lp = inv_lp;
            q->next = GAPS;
            mcd_token(s, L, u + (size_t)t * D, t, q, ws, ndrop, ssel, out);
        }
        free(q); free(ws); free(ndrop); free(ssel);
    }
    if (failed) { s->T = 0; return vm_err("router mcdropout: out of memory (layer %d)", L->layer); }
    return 0;
}

// l_bar = W_r (u .* m_bar): du += m_bar .* (W_r^T dl)
static int mcd_backward(vm_router *r, const vm_router_layer *L, const float *u, int T,
                        const vm_router_out *out, const float *dgates, float *du, float reg_weight) {
    (void)u; (void)out; (void)reg_weight;
    mcd_state *s = r->state;
    if (T != s->T) return vm_err("router mcdropout: backward for %d tokens after a forward of %d (layer %d)",
                                 T, s->T, L->layer);
    const int D = L->n_embd, N = L->n_expert, K = L->n_expert_used;
    float *dl = vm_calloc((size_t)T * N, sizeof(float)), *dv = vm_calloc((size_t)T * D, sizeof(float));
    int rc = -1;
    if (!dl || !dv) goto done;
    for (int t = 0; t < T; t++)
        vm_gate_backward(L, s->lbar + (size_t)t * N, s->sel + (size_t)t * K, dgates + (size_t)t * K,
                         dl + (size_t)t * N);
    if (vm_router_logits_backward(L, dl, T, dv)) goto done;
    for (size_t i = 0; i < (size_t)T * D; i++) du[i] += s->mbar[i] * dv[i];
    rc = 0;
done:
    free(dl); free(dv);
    return rc;
}

static double mcd_reg(const vm_router *r) { (void)r; return 0.0; }

static void mcd_free(vm_router *r) {
    if (!r) return;
    mcd_state *s = r->state;
    if (s) { free(s->wt); free(s->mbar); free(s->lbar); free(s->sel); }
    vm_rt_free(r);
}

// W_r u once, then per sample only the dropped inputs' columns are subtracted: p D N expected
// multiply-adds per sample.
static double mcd_flops(const vm_router *r, const vm_router_layer *L) {
    const mcd_state *s = r->state;
    const double DN = (double)L->n_embd * L->n_expert;
    return 2.0 * DN + s->S * 2.0 * s->p * DN;
}

const vm_router_ops vm_router_ops_mcdropout = {
    .name = "mcdropout", .flags = VM_ROUTER_STOCHASTIC,
    .unc = VM_UNC_BIT(VM_UNC_GATE_ENTROPY) | VM_UNC_BIT(VM_UNC_DISAGREEMENT),
    .flops = mcd_flops,
    .forward = mcd_forward, .free = mcd_free, .backward = mcd_backward, .reg = mcd_reg };

vm_router *vm_router_create_mcdropout(const vm_router_layer *L, const vm_router_opts *o) {
    vm_router *r = vm_rt_alloc(&vm_router_ops_mcdropout, sizeof(mcd_state), 0);
    if (!r) return NULL;
    mcd_state *s = r->state;
    s->p = o->dropout;
    s->S = o->samples;
    const int D = L->n_embd, N = L->n_expert;
    float *w = vm_rt_w_gate_f32(L);   // (N,D)
    s->wt = vm_malloc((size_t)D * N * sizeof(float));
    if (!w || !s->wt) { free(w); mcd_free(r); return NULL; }
    for (int i = 0; i < N; i++)
        for (int d = 0; d < D; d++) s->wt[(size_t)d * N + i] = w[(size_t)i * D + d];
    free(w);
    return r;
}

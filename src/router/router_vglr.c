// VGLR, the Variational Gaussian Logit Router (method.md §3.1), mean-field ("vglr-mf") and
// full-covariance ("vglr-fc") in one file: they share the trunk, the mean head and the sampling.
//   h = ReLU(W_t u)                       W_t (H,D), no bias     "vglr.w_t"  ne = [D, H]
//   dmu = W_mu h                          W_mu (N,H)             "vglr.w_mu" ne = [H, N]
//   fc: v = W_L h (P = N(N+1)/2),         W_L (P,H)              "vglr.w_L"  ne = [H, P]
//       M lower triangular filled row-major from v (M[i][j], j <= i, is v[i(i+1)/2 + j]),
//       M_ii = exp(v_ii), L = sigma_p M, Sigma = L L^T
//   mf: s = W_s h, sigma = sigma_p exp(s/2)  W_s (N,H)           "vglr.w_s"  ne = [H, N]
//   q(l|u) = N(mu, Sigma), mu = l_det + dmu, l_det = W_r u (frozen); prior N(l_det, sigma_p^2 I).
//   sigma_p: the layer's router-logit scale (vm_router_opts.prior_sd, docs/method.md §3.1), kept
//   as the frozen 1-element parameter "vglr.prior_sd" so an adapter carries its own prior.
//   Parameterising the covariance relative to sigma_p makes q = prior at v = s = 0 whatever the
//   scale of the base router's logits.
// Init: W_t Kaiming-uniform as torch.nn.Linear's default (U(-1/sqrt(D), 1/sqrt(D))), W_mu = 0,
// W_L / W_s ~ N(0, 1e-3^2): q is the prior up to O(1e-3) and mu == l_det exactly.
// Training (r->training): one reparameterised sample l = mu + L eps; gates = the base convention
// on l (vm_gate_from_logits). Outputs: logits = the sample, probs = convention(sample).
// Inference: S samples l_s = mu + L eps_s of the N-dim logits only (the trunk runs once per token);
// p_bar = mean_s convention(l_s) (softmax, or sigmoid for sigmoid archs); selection and gates from
// p_bar by the base convention (vm_gate_from_probs). Outputs: logits = mu, probs = p_bar.
// Read-outs: ILV = tr(Sigma) (= ||L||_F^2, mf: sum sigma^2), gate entropy of probs (p_bar at
// inference), disagreement = fraction of the S samples whose own top-K set differs from the final
// one (NaN in training).
// KL per token (prior N(l_det, sigma_p^2 I)): fc 1/2[tr(M M^T) + dmu.dmu / sigma_p^2 - N - 2 sum log M_ii];
// mf 1/2 sum(exp(s) + dmu^2 / sigma_p^2 - 1 - s). reg() = its sum over the tokens of the last forward.
// Random stream: training: per token in order, N normals eps_0..eps_{N-1} from the caller's stream.
// Inference: one vm_rng_u64 of the caller's stream gives `base`; token t draws from its own stream
// vm_rng_seed2(base, t) (tokens run in parallel: same result for any thread count) N * Sp normals
// (Sp = S rounded up to 8; vm_vec_normals' Box-Muller), eps_{i,c} expert-major (i = 0..N-1,
// c = 0..Sp-1); sample c < S is l_c = mu + L eps_{.,c}, columns c >= S are drawn but unused.
// The S samples are one (N,Sp) block per token, exp/log vectorised (router_vec.h).
#include "router/router_impl.h"
#include "router/router_vec.h"

#include <omp.h>
#include <stdlib.h>

typedef struct vglr_state {
    int fc;                          // 1 full covariance, 0 mean-field
    int H, P, S;                     // hidden width, covariance head width (P fc, N mf), samples
    int T, trained;                  // tokens of the last forward; 1 when it was a training forward
    double kl_sum;                   // sum over the tokens of the last forward
    // caches of the last training forward (T rows each)
    float *h; size_t h_cap;          // (T,H) trunk output
    float *dmu; size_t dmu_cap;      // (T,N)
    float *v; size_t v_cap;          // (T,P) covariance head output (v fc, s mf)
    float *eps; size_t eps_cap;      // (T,N)
    float *l; size_t l_cap;          // (T,N) sampled logits
    int32_t *sel; size_t sel_cap;    // (T,K)
    double *klt; size_t klt_cap;     // (T) per-token KL at inference (summed in token order)
} vglr_state;

enum { W_T = 0, W_MU = 1, W_COV = 2, PRIOR_SD = 3 };

static float prior_sd(const vm_router *r) { return r->params[PRIOR_SD].w[0]; }

// L (N,N) row-major, zero above the diagonal, from v.
static void fill_L(const float *v, int N, float *Lm) {
    int idx = 0;
    for (int i = 0; i < N; i++) {
        for (int j = 0; j <= i; j++, idx++) Lm[i * N + j] = j == i ? expf(v[idx]) : v[idx];
        for (int j = i + 1; j < N; j++) Lm[i * N + j] = 0.0f;
    }
}

// KL of one token and tr(Sigma) (the ILV read-out). Lm is M (fc), sp = sigma_p.
static double token_kl(const vglr_state *s, int N, const float *dmu, const float *v, const float *Lm,
                       float sp, double *ilv) {
    double tr = 0.0, mm = 0.0, extra = 0.0;
    const double sp2 = (double)sp * sp;
    for (int i = 0; i < N; i++) mm += (double)dmu[i] * dmu[i];
    mm /= sp2;
    if (s->fc) {
        for (int i = 0; i < N; i++)
            for (int j = 0; j <= i; j++) tr += (double)Lm[i * N + j] * Lm[i * N + j];
        for (int i = 0; i < N; i++) extra += 2.0 * v[i * (i + 1) / 2 + i];   // 2 log L_ii
    } else {
        for (int i = 0; i < N; i++) { tr += exp((double)v[i]); extra += v[i]; }   // log(sigma^2/sigma_p^2) = s
    }
    *ilv = tr * sp2;   // tr(Sigma) = sigma_p^2 tr(M M^T) (mf: sigma_p^2 sum exp(s))
    return 0.5 * (tr + mm - N - extra);
}

// The direction-free read-out: |log(tr Sigma / (N sigma_p^2))|, 0 at the prior, growing as the posterior
// narrows (in distribution, where the data pinned the routing down) or widens.
static float ilv_dev(double ilv, int N, float sp) {
    return (float)fabs(log(ilv / ((double)N * sp * sp)));
}

// l (N) = mu + sigma_p M eps (fc) or mu + sigma .* eps (mf)
static void sample_logits(const vglr_state *s, int N, const float *mu, const float *Lm, const float *v,
                          const float *eps, float sp, float *l) {
    for (int i = 0; i < N; i++) {
        float acc = 0.0f;
        if (s->fc) for (int j = 0; j <= i; j++) acc += Lm[i * N + j] * eps[j];
        else acc = expf(0.5f * v[i]) * eps[i];
        l[i] = mu[i] + sp * acc;
    }
}

// Floats of one thread's scratch for inference tokens (Sp = S rounded up to 8).
static size_t infer_ws_floats(int N, int Sp) {
    return (size_t)N * N + 3 * (size_t)N * Sp + 2 * (size_t)Sp + 2 * (size_t)N;
}

// One token at inference: S samples of the logits as the columns of Z (N,Sp), p_bar, selection,
// gates and read-outs; returns the token's KL. g is the token's own stream.
static double infer_token(const vglr_state *s, const vm_router_layer *L, int t, const float *dm,
                          const float *v, float sp, vm_rng *g, float *ws, vm_router_out *out) {
    const int N = L->n_expert, K = L->n_expert_used, S = s->S, Sp = (S + 7) & ~7;
    const int sigm = L->conv == VM_GATE_SIGMOID || L->conv == VM_GATE_SIGMOID_NORM;
    float *Lm = ws, *E = Lm + (size_t)N * N, *Z = E + (size_t)N * Sp, *P = Z + (size_t)N * Sp;
    float *mx = P + (size_t)N * Sp, *den = mx + Sp, *mu = den + Sp, *col = mu + N;
    float *lo = out->logits + (size_t)t * N, *po = out->probs + (size_t)t * N;
    int32_t *sel = out->sel + (size_t)t * K;
    if (s->fc) fill_L(v, N, Lm);
    for (int i = 0; i < N; i++) mu[i] = lo[i] + dm[i];
    double ilv;
    const double kl = token_kl(s, N, dm, v, Lm, sp, &ilv);
    vm_vec_normals(g, E, P, N * Sp);   // eps (N,Sp), expert-major; columns >= S are padding
    // Z (N,Sp) = mu + L E: one sample per column, vectorised along the samples
    for (int i = 0; i < N; i++) {
        float *zi = Z + (size_t)i * Sp;
        const float m = mu[i];
        if (s->fc) {
            const float *Li = Lm + (size_t)i * N;
            #pragma omp simd
            for (int c = 0; c < Sp; c++) zi[c] = m;
            for (int j = 0; j <= i; j++) {
                const float lij = sp * Li[j], *ej = E + (size_t)j * Sp;
                #pragma omp simd
                for (int c = 0; c < Sp; c++) zi[c] += lij * ej[c];
            }
        } else {
            const float sd = sp * expf(0.5f * v[i]), *ei = E + (size_t)i * Sp;
            #pragma omp simd
            for (int c = 0; c < Sp; c++) zi[c] = m + sd * ei[c];
        }
    }
    // each column's probabilities by the convention; p_bar = their mean over the S real columns
    if (!sigm) {
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
        #pragma omp simd
        for (int c = 0; c < Sp; c++) den[c] = 1.0f / den[c];
    } else {
        for (int i = 0; i < N; i++) {
            const float *zi = Z + (size_t)i * Sp;
            float *pi = P + (size_t)i * Sp;
            #pragma omp simd
            for (int c = 0; c < Sp; c++) pi[c] = 1.0f / (1.0f + vm_vec_exp(-zi[c]));
        }
        for (int c = 0; c < Sp; c++) den[c] = 1.0f;
    }
    for (int i = 0; i < N; i++) {
        const float *pi = P + (size_t)i * Sp;
        float acc = 0.0f;
        #pragma omp simd reduction(+:acc)
        for (int c = 0; c < S; c++) acc += pi[c] * den[c];
        po[i] = acc / (float)S;
        lo[i] = mu[i];
    }
    vm_gate_from_probs(L, po, sel, out->gates + (size_t)t * K);
    if (!out->unc) return kl;
    // disagreement: a sample keeps the final set iff each selected logit beats each other one; where
    // the selection ranks the logits themselves (softmax, no bias, no groups) that is a min/max test,
    // else (and on ties or NaN) the sample's own selection is computed
    const int fast = !sigm && !L->sel_bias && !(L->n_group > 1);
    unsigned char in[N];
    memset(in, 0, (size_t)N);
    for (int k = 0; k < K; k++) in[sel[k]] = 1;
    int differ = 0;
    for (int c = 0; c < S; c++) {
        int same = -1;
        if (fast) {
            float mn = INFINITY, mo = -INFINITY;
            int nan = 0;
            for (int i = 0; i < N; i++) {
                const float z = Z[(size_t)i * Sp + c];
                nan |= z != z;
                if (in[i]) mn = z < mn ? z : mn;
                else mo = z > mo ? z : mo;
            }
            if (!nan) same = mn > mo ? 1 : mn < mo ? 0 : -1;
        }
        if (same < 0) {
            int32_t ss[K];
            for (int i = 0; i < N; i++) col[i] = Z[(size_t)i * Sp + c];
            vm_gate_select(L, col, ss);
            same = vm_rt_same_set(ss, sel, K);
        }
        differ += !same;
    }
    vm_rt_unc(out->unc, t, (float)ilv, vm_gate_entropy(po, N), NAN, (float)differ / S);
    out->unc[(size_t)t * VM_UNC_COUNT + VM_UNC_ILV_DEV] = ilv_dev(ilv, N, sp);
    return kl;
}

static int vglr_forward(vm_router *r, const vm_router_layer *L, const float *u, int T,
                        vm_router_out *out, vm_rng *rng) {
    vglr_state *s = r->state;
    const char *name = r->ops->name;
    if (vm_rt_check_out(L, out, name)) return -1;
    if (!rng) return vm_err("router %s: needs a random stream (layer %d)", name, L->layer);
    const int D = L->n_embd, N = L->n_expert, K = L->n_expert_used, H = s->H, P = s->P, S = s->S;
    const int train = r->training != 0;
    const float sp = prior_sd(r);
    s->T = 0; s->trained = 0; s->kl_sum = 0.0;
    // the heads run batched over the T tokens (the caches double as scratch at inference)
    if (!(s->h = vm_rt_grow(s->h, &s->h_cap, (size_t)T * H * sizeof(float))) ||
        !(s->dmu = vm_rt_grow(s->dmu, &s->dmu_cap, (size_t)T * N * sizeof(float))) ||
        !(s->v = vm_rt_grow(s->v, &s->v_cap, (size_t)T * P * sizeof(float))) ||
        !(s->klt = vm_rt_grow(s->klt, &s->klt_cap, (size_t)T * sizeof(double))) ||
        (train && (!(s->eps = vm_rt_grow(s->eps, &s->eps_cap, (size_t)T * N * sizeof(float))) ||
                   !(s->l = vm_rt_grow(s->l, &s->l_cap, (size_t)T * N * sizeof(float))) ||
                   !(s->sel = vm_rt_grow(s->sel, &s->sel_cap, (size_t)T * K * sizeof(int32_t)))))) return -1;
    vm_rt_matmul(s->h, u, r->params[W_T].w, T, D, H);                 // (T,H)
    for (size_t i = 0; i < (size_t)T * H; i++) if (!(s->h[i] > 0.0f)) s->h[i] = 0.0f;
    vm_rt_matmul(s->dmu, s->h, r->params[W_MU].w, T, H, N);           // (T,N)
    vm_rt_matmul(s->v, s->h, r->params[W_COV].w, T, H, P);            // (T,P)
    vm_router_logits(L, u, T, out->logits);   // l_det, replaced per token below
    if (train) {
        float *Lm = vm_malloc((size_t)N * N * sizeof(float));
        if (!Lm) return -1;
        float mu[N], eps[N];
        for (int t = 0; t < T; t++) {
            float *lo = out->logits + (size_t)t * N, *po = out->probs + (size_t)t * N;
            int32_t *sel = out->sel + (size_t)t * K;
            const float *dm = s->dmu + (size_t)t * N, *v = s->v + (size_t)t * P;
            if (s->fc) fill_L(v, N, Lm);
            for (int i = 0; i < N; i++) mu[i] = lo[i] + dm[i];
            double ilv;
            s->kl_sum += token_kl(s, N, dm, v, Lm, sp, &ilv);
            for (int i = 0; i < N; i++) eps[i] = vm_rng_normal(rng);
            sample_logits(s, N, mu, Lm, v, eps, sp, lo);
            vm_gate_from_logits(L, lo, po, sel, out->gates + (size_t)t * K);
            memcpy(s->eps + (size_t)t * N, eps, sizeof eps);
            memcpy(s->l + (size_t)t * N, lo, (size_t)N * sizeof(float));
            memcpy(s->sel + (size_t)t * K, sel, (size_t)K * sizeof(int32_t));
            vm_rt_unc(out->unc, t, (float)ilv, vm_gate_entropy(po, N), NAN, NAN);
            if (out->unc) out->unc[(size_t)t * VM_UNC_COUNT + VM_UNC_ILV_DEV] = ilv_dev(ilv, N, sp);
        }
        free(Lm);
        s->T = T;
        s->trained = 1;
        return 0;
    }
    // inference: tokens in parallel, token t drawing from its own stream (base, t), base being one
    // draw of the caller's stream: the result does not depend on the thread count
    const uint64_t base = vm_rng_u64(rng);
    const size_t wsn = infer_ws_floats(N, (S + 7) & ~7);
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
            s->klt[t] = infer_token(s, L, t, s->dmu + (size_t)t * N, s->v + (size_t)t * P, sp, &g, ws, out);
        }
        free(ws);
    }
    if (failed) return vm_err("router %s: out of memory for the sampling scratch (layer %d)", name, L->layer);
    for (int t = 0; t < T; t++) s->kl_sum += s->klt[t];   // in token order
    s->T = T;
    return 0;
}

static int vglr_backward(vm_router *r, const vm_router_layer *L, const float *u, int T,
                         const vm_router_out *out, const float *dgates, float *du, float reg_weight) {
    (void)out;
    vglr_state *s = r->state;
    const char *name = r->ops->name;
    if (!s->trained || T != s->T)
        return vm_err("router %s: backward needs a training-mode forward of the same %d tokens (layer %d)",
                      name, T, L->layer);
    const int D = L->n_embd, N = L->n_expert, K = L->n_expert_used, H = s->H, P = s->P;
    const float c = reg_weight;   // d(reg_weight * sum_t KL_t)/d KL_t
    const float sp = prior_sd(r), isp2 = 1.0f / (sp * sp);
    vm_param *Wt = &r->params[W_T], *Wmu = &r->params[W_MU], *Wc = &r->params[W_COV];
    float *dl_all = vm_calloc((size_t)T * N, sizeof(float)), *dm_all = vm_malloc((size_t)T * N * sizeof(float));
    float *dv_all = vm_malloc((size_t)T * P * sizeof(float)), *dh = vm_calloc((size_t)T * H, sizeof(float));
    float *Lm = vm_malloc((size_t)N * N * sizeof(float));
    int rc = -1;
    if (!dl_all || !dm_all || !dv_all || !dh || !Lm) goto done;
    for (int t = 0; t < T; t++) {
        const float *v = s->v + (size_t)t * P, *eps = s->eps + (size_t)t * N, *dmu = s->dmu + (size_t)t * N;
        float *dl = dl_all + (size_t)t * N, *dm = dm_all + (size_t)t * N, *dv = dv_all + (size_t)t * P;
        vm_gate_backward(L, s->l + (size_t)t * N, s->sel + (size_t)t * K, dgates + (size_t)t * K, dl);
        // l = l_det + dmu + noise: dl reaches l_det (-> u through W_r, below) and dmu unchanged
        for (int i = 0; i < N; i++) dm[i] = dl[i] + c * dmu[i] * isp2;
        if (s->fc) {
            fill_L(v, N, Lm);
            int idx = 0;
            for (int i = 0; i < N; i++)
                for (int j = 0; j <= i; j++, idx++) {
                    const float Mij = Lm[i * N + j];
                    const float dM = dl[i] * sp * eps[j] + c * Mij;   // sample path + KL's 1/2 M_ij^2
                    dv[idx] = j == i ? dM * Mij - c : dM;             // M_ii = exp(v_ii); KL's -v_ii
                }
        } else {
            for (int i = 0; i < N; i++) {
                const float sig = sp * expf(0.5f * v[i]);
                dv[i] = dl[i] * eps[i] * 0.5f * sig + c * 0.5f * (expf(v[i]) - 1.0f);
            }
        }
    }
    vm_rt_matmul_backward(Wmu->g, dh, Wmu->w, s->h, dm_all, T, H, N);
    vm_rt_matmul_backward(Wc->g, dh, Wc->w, s->h, dv_all, T, H, P);
    for (size_t i = 0; i < (size_t)T * H; i++) if (!(s->h[i] > 0.0f)) dh[i] = 0.0f;   // ReLU
    vm_rt_matmul_backward(Wt->g, du, Wt->w, u, dh, T, D, H);
    rc = vm_router_logits_backward(L, dl_all, T, du);
done:
    free(dl_all); free(dm_all); free(dv_all); free(dh); free(Lm);
    return rc;
}

static double vglr_reg(const vm_router *r) {
    const vglr_state *s = r->state;
    return s->T > 0 ? s->kl_sum : 0.0;
}

static void vglr_free(vm_router *r) {
    if (!r) return;
    vglr_state *s = r->state;
    if (s) { free(s->h); free(s->dmu); free(s->v); free(s->eps); free(s->l); free(s->sel); free(s->klt); }
    vm_rt_free(r);
}

// W_r u, the trunk (H x D), the mean head (N x H), the covariance head (P x H), and per sample
// L eps (fc: N(N+1)/2 multiply-adds) or sigma .* eps (mf: N), plus the sample's N-way shift.
static double vglr_flops(const vm_router *r, const vm_router_layer *L) {
    const vglr_state *s = r->state;
    const double D = L->n_embd, N = L->n_expert, H = s->H, P = s->P;
    return 2.0 * D * N + 2.0 * D * H + 2.0 * H * N + 2.0 * H * P + s->S * (s->fc ? N * (N + 1) : 2.0 * N);
}

#define VGLR_UNC (VM_UNC_BIT(VM_UNC_ILV) | VM_UNC_BIT(VM_UNC_GATE_ENTROPY) | VM_UNC_BIT(VM_UNC_DISAGREEMENT) | \
                  VM_UNC_BIT(VM_UNC_ILV_DEV))
const vm_router_ops vm_router_ops_vglr_mf = {
    .name = "vglr-mf", .flags = VM_ROUTER_TRAINABLE | VM_ROUTER_STOCHASTIC, .unc = VGLR_UNC, .flops = vglr_flops,
    .forward = vglr_forward, .free = vglr_free, .backward = vglr_backward, .reg = vglr_reg };
const vm_router_ops vm_router_ops_vglr_fc = {
    .name = "vglr-fc", .flags = VM_ROUTER_TRAINABLE | VM_ROUTER_STOCHASTIC, .unc = VGLR_UNC, .flops = vglr_flops,
    .forward = vglr_forward, .free = vglr_free, .backward = vglr_backward, .reg = vglr_reg };

static vm_router *vglr_create(const vm_router_layer *L, const vm_router_opts *o, int fc) {
    vm_router *r = vm_rt_alloc(fc ? &vm_router_ops_vglr_fc : &vm_router_ops_vglr_mf, sizeof(vglr_state), 4);
    if (!r) return NULL;
    vglr_state *s = r->state;
    const int D = L->n_embd, N = L->n_expert;
    s->fc = fc;
    s->H = o->hidden > 0 ? o->hidden : (D / 4 > 0 ? D / 4 : 1);
    s->P = fc ? N * (N + 1) / 2 : N;
    s->S = o->samples;
    if (vm_rt_param(&r->params[W_T], "vglr.w_t", D, s->H) ||
        vm_rt_param(&r->params[W_MU], "vglr.w_mu", s->H, N) ||
        vm_rt_param(&r->params[W_COV], fc ? "vglr.w_L" : "vglr.w_s", s->H, s->P) ||
        vm_rt_param(&r->params[PRIOR_SD], "vglr.prior_sd", 1, 1)) { vglr_free(r); return NULL; }
    r->params[PRIOR_SD].w[0] = o->prior_sd > 0.0f ? o->prior_sd : 1.0f;
    r->params[PRIOR_SD].frozen = 1;
    vm_rng g;
    const float bound = 1.0f / sqrtf((float)D);
    vm_rt_init_rng(&g, o->seed, L->layer, W_T);
    for (size_t i = 0; i < (size_t)s->H * D; i++) r->params[W_T].w[i] = bound * (float)(2.0 * vm_rng_uniform(&g) - 1.0);
    vm_rt_init_rng(&g, o->seed, L->layer, W_COV);
    for (size_t i = 0; i < (size_t)s->P * s->H; i++) r->params[W_COV].w[i] = 1e-3f * vm_rng_normal(&g);
    return r;   // W_mu stays 0
}

vm_router *vm_router_create_vglr_mf(const vm_router_layer *L, const vm_router_opts *o) { return vglr_create(L, o, 0); }
vm_router *vm_router_create_vglr_fc(const vm_router_layer *L, const vm_router_opts *o) { return vglr_create(L, o, 1); }

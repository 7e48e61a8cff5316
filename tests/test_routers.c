// The router family (method.md §3): gradient checks by central finite differences for every kind,
// the initialisation properties (KL = 0, posterior mean = l_det, T = 1, routing = deterministic),
// seeding, the read-outs, and the VGLR sample moments against an independently built L L^T.
#include "test.h"
#include "router/router.h"
#include "util/err.h"
#include "util/rng.h"
#include "quant/quant.h"

#include <string.h>

enum { MAXT = 64 };

typedef struct layer_fix {
    vm_router_layer L;
    vm_tensor w;
    float *wd;          // (N,D) W_r
    float bias[32];
} layer_fix;

static void fix_init(layer_fix *f, int D, int N, int K, vm_gate_conv conv, float wstd, uint64_t seed) {
    memset(f, 0, sizeof *f);
    f->wd = malloc((size_t)N * D * sizeof(float));
    vm_rng g;
    vm_rng_seed(&g, seed);
    for (int i = 0; i < N * D; i++) f->wd[i] = wstd * vm_rng_normal(&g);
    const int64_t ne[2] = { D, N };
    vm_tensor_init(&f->w, "ffn_gate_inp", VM_TYPE_F32, 2, ne, f->wd);
    f->L = (vm_router_layer){ .layer = 3, .n_embd = D, .n_expert = N, .n_expert_used = K, .conv = conv,
                              .w_gate = &f->w, .weights_scale = 1.0f };
    if (conv == VM_GATE_SIGMOID || conv == VM_GATE_SIGMOID_NORM) {
        for (int i = 0; i < N && i < 32; i++) f->bias[i] = 0.05f * vm_rng_normal(&g);
        f->L.sel_bias = f->bias;
    }
}
static void fix_free(layer_fix *f) { free(f->wd); }

typedef struct outbuf {
    float logits[MAXT * 32], probs[MAXT * 32], gates[MAXT * 32], unc[MAXT * VM_UNC_COUNT];
    int32_t sel[MAXT * 32];
    vm_router_out o;
} outbuf;
static void ob_init(outbuf *b) {
    memset(b, 0, sizeof *b);
    b->o = (vm_router_out){ b->logits, b->probs, b->sel, b->gates, b->unc };
}

static void randn(float *x, int n, float sd, vm_rng *g) { for (int i = 0; i < n; i++) x[i] = sd * vm_rng_normal(g); }

static const char *conv_name(vm_gate_conv c) {
    static const char *n[] = { "softmax-selected", "softmax-all", "softmax-all-norm", "sigmoid-norm", "sigmoid" };
    return n[c];
}

// loss = sum_t sum_j c[t, sel_tj] gates_tj + rw * reg, forward with the noise stream replayed from
// `seed`. c is attached to the expert, not the slot, so (as in the model, which sums gate * expert
// output) the loss does not depend on the order of the selected set, only on the set.
static int loss_at(vm_router *r, const vm_router_layer *L, const float *u, int T, const float *c,
                   float rw, uint64_t seed, outbuf *b, double *loss) {
    vm_rng g;
    vm_rng_seed(&g, seed);
    if (r->ops->forward(r, L, u, T, &b->o, &g)) return -1;
    double s = 0.0;
    const int K = L->n_expert_used, N = L->n_expert;
    for (int t = 0; t < T; t++)
        for (int j = 0; j < K; j++) s += (double)c[t * N + b->sel[t * K + j]] * b->gates[t * K + j];
    *loss = s + rw * r->ops->reg(r);
    return 0;
}

static int same_sets(const int32_t *a, const int32_t *b, int T, int K) {
    for (int t = 0; t < T; t++)
        for (int i = 0; i < K; i++) {
            int found = 0;
            for (int j = 0; j < K; j++) found |= a[t * K + i] == b[t * K + j];
            if (!found) return 0;
        }
    return 1;
}

// Central differences of every parameter element and every u element against backward.
static void fd_check(const char *kind, layer_fix *f, vm_router *r, int T, float rw, uint64_t seed) {
    const vm_router_layer *L = &f->L;
    const int D = L->n_embd, K = L->n_expert_used;
    char what[160];
    const int N = L->n_expert;
    float u[MAXT * 16], c[MAXT * 32], du[MAXT * 16], dg[MAXT * 32];
    vm_rng g;
    vm_rng_seed(&g, seed * 7 + 1);
    randn(u, T * D, 1.0f, &g);
    randn(c, T * N, 1.0f, &g);
    static outbuf base, pb;
    ob_init(&base); ob_init(&pb);
    double l0;
    r->training = 1;
    CHECK(loss_at(r, L, u, T, c, rw, seed, &base, &l0) == 0, "%s forward: %s", kind, vm_errmsg());
    for (int i = 0; i < r->n_params; i++) memset(r->params[i].g, 0, (size_t)(r->params[i].ne[0] * r->params[i].ne[1]) * sizeof(float));
    memset(du, 0, sizeof du);
    for (int t = 0; t < T; t++)
        for (int j = 0; j < K; j++) dg[t * K + j] = c[t * N + base.sel[t * K + j]];
    CHECK(r->ops->backward(r, L, u, T, &base.o, dg, du, rw) == 0, "%s backward: %s", kind, vm_errmsg());
    const float h = 1e-3f;
    int flips = 0, bad = 0, n = 0;
    double worst = 0.0;
    // params then u (index -1)
    for (int pi = -1; pi < r->n_params; pi++) {
        if (pi >= 0 && r->params[pi].frozen) continue;   // constants: no gradient by design
        float *x = pi < 0 ? u : r->params[pi].w;
        const float *an = pi < 0 ? du : r->params[pi].g;
        const int64_t cnt = pi < 0 ? (int64_t)T * D : r->params[pi].ne[0] * r->params[pi].ne[1];
        for (int64_t e = 0; e < cnt; e++) {
            const float keep = x[e];
            double lp, lm;
            x[e] = keep + h;
            loss_at(r, L, u, T, c, rw, seed, &pb, &lp);
            flips += !same_sets(pb.sel, base.sel, T, K);
            x[e] = keep - h;
            loss_at(r, L, u, T, c, rw, seed, &pb, &lm);
            flips += !same_sets(pb.sel, base.sel, T, K);
            x[e] = keep;
            const double fd = (lp - lm) / (2.0 * h), a = an[e];
            const double err = fabs(fd - a), tol = 2e-3 + 1e-2 * fabs(a);
            if (err > tol) {
                if (bad < 3) fprintf(stderr, "  %s %s[%lld]: fd %.6g analytic %.6g\n", kind,
                                     pi < 0 ? "u" : r->params[pi].name, (long long)e, fd, a);
                bad++;
            }
            if (err - tol > worst) worst = err - tol;
            n++;
        }
    }
    snprintf(what, sizeof what, "%s %s K=%d/%d: %d of %d gradients off", kind, conv_name(L->conv), K,
             L->n_expert, bad, n);
    CHECK(bad == 0, "%s", what);
    CHECK(flips == 0, "%s %s K=%d: %d perturbations flipped the selection", kind, conv_name(L->conv), K, flips);
}

// Parameters moved away from the (degenerate) initialisation so every path carries gradient.
static void scramble_sd(vm_router *r, uint64_t seed, float sdv) {
    vm_rng g;
    vm_rng_seed(&g, seed);
    for (int i = 0; i < r->n_params; i++) {
        vm_param *p = &r->params[i];
        if (p->frozen) continue;
        const int64_t n = p->ne[0] * p->ne[1];
        const float sd = strstr(p->name, "w_t") || strstr(p->name, "w_1") || strstr(p->name, "w_r") ? 0.0f : sdv;
        for (int64_t e = 0; e < n; e++) p->w[e] += sd * vm_rng_normal(&g);
    }
}

static void scramble(vm_router *r, uint64_t seed) { scramble_sd(r, seed, 0.4f); }

// A fresh swag router has no posterior spread (its variance and deviations, constants an adapter must
// carry, are 0 until fit collects them), so it would route exactly as map: give those constants
// values (the variance non-negative) wherever a test needs the sampling to matter.
static void spread(vm_router *r, uint64_t seed, float sd) {
    vm_rng g;
    vm_rng_seed(&g, seed);
    for (int i = 0; i < r->n_params; i++) {
        vm_param *p = &r->params[i];
        if (p->frozen != 2) continue;
        for (int64_t e = 0; e < p->ne[0] * p->ne[1]; e++) p->w[e] = fabsf(sd * vm_rng_normal(&g));
    }
}

static void test_gradients(void) {
    const vm_gate_conv all[] = { VM_GATE_SOFTMAX_SELECTED, VM_GATE_SOFTMAX_ALL, VM_GATE_SOFTMAX_ALL_NORM,
                                 VM_GATE_SIGMOID_NORM, VM_GATE_SIGMOID };
    const char *const *kinds = vm_router_kind_names();   // every registered kind
    const int D = 8, N = 5, T = 3;
    for (int ki = 0; kinds[ki]; ki++) {
        // the learned stochastic kinds under every gate convention, the others under two
        const unsigned fl = vm_router_kind_ops(kinds[ki])->flags;
        const int every_conv = (fl & VM_ROUTER_TRAINABLE) && (fl & VM_ROUTER_STOCHASTIC);
        for (int ci = 0; ci < 5; ci++) {
            if (!every_conv && ci >= 2) continue;
            for (int kk = 0; kk < 2; kk++) {
                const int K = kk ? N : 2;
                layer_fix f;
                fix_init(&f, D, N, K, all[ci], 0.6f, 100 + ci * 10 + kk);
                f.L.weights_scale = ci == 1 ? 1.5f : 1.0f;
                vm_router_opts o;
                vm_router_opts_default(&o);
                o.hidden = 3; o.members = 3; o.samples = 4; o.dropout = 0.2f; o.seed = 5;
                vm_router *r = vm_router_create(kinds[ki], &f.L, &o);
                CHECK(r != NULL, "create %s: %s", kinds[ki], vm_errmsg());
                if (r) {
                    scramble(r, 17 + ki);
                    fd_check(kinds[ki], &f, r, T, 0.7f, 1000 + ki * 31 + ci * 7 + kk);
                }
                vm_router_free(r);
                fix_free(&f);
            }
        }
    }
}

// The path through a quantised W_r (du += W_r^T dl dequantises rows): det and vglr-fc on F16.
static void test_f16_gate(void) {
    const int D = 8, N = 5;
    for (int ki = 0; ki < 2; ki++) {
        layer_fix f;
        fix_init(&f, D, N, 2, VM_GATE_SOFTMAX_ALL, 0.6f, 404);
        uint16_t h16[8 * 5];
        for (int i = 0; i < N * D; i++) h16[i] = vm_fp32_to_fp16(f.wd[i]);
        const int64_t ne[2] = { D, N };
        vm_tensor_init(&f.w, "ffn_gate_inp", VM_TYPE_F16, 2, ne, h16);
        vm_router_opts o;
        vm_router_opts_default(&o);
        o.hidden = 2;
        vm_router *r = vm_router_create(ki ? "vglr-fc" : "deterministic", &f.L, &o);
        CHECK(r != NULL, "create on f16 W_r: %s", vm_errmsg());
        if (r) { scramble(r, 5); fd_check(ki ? "vglr-fc/f16" : "deterministic/f16", &f, r, 3, 0.3f, 77); }
        vm_router_free(r);
        fix_free(&f);
    }
}

// Well-separated logits: token t ranks the experts by a permutation of gap * (0..N-1), so any
// N(0,1) or Gumbel perturbation flips an order with probability < 1e-6.
static void separated(layer_fix *f, int D, int N, int K, float gap, float *u, int T) {
    fix_init(f, D, N, K, VM_GATE_SOFTMAX_SELECTED, 0.0f, 1);
    for (int i = 0; i < N; i++) {
        f->wd[(size_t)i * D + 0] = gap * (float)i;
        f->wd[(size_t)i * D + 1] = gap * (float)((i * 5 + 1) % N);   // a second permutation (N = 6)
    }
    vm_rng g;
    vm_rng_seed(&g, 77);
    for (int t = 0; t < T; t++) {
        for (int d = 0; d < D; d++) u[t * D + d] = 0.3f * vm_rng_normal(&g);
        u[t * D + 0] = (t & 1) ? 0.0f : 1.0f;
        u[t * D + 1] = (t & 1) ? 1.0f : 0.0f;
    }
}

// "Routing equals the deterministic router" at initialisation: for a deterministic kind (map,
// ensemble without noise, mcdropout with p = 0) identical selection and gates. For a sampled kind
// (vglr-*, vtsr, temp-sample) the selection is a random variable, so it means: where the
// deterministic logits are well separated (consecutive gaps >= 15 logits, far beyond the
// unit-scale noise of the prior / the Gumbel draws), every token's selected SET equals the
// deterministic router's, for every seed tried and in training and inference mode alike. (The
// gates of sampled kinds differ: they come from a sample or from p_bar.)
static void test_init_equals_det(void) {
    const int D = 12, N = 6, K = 2, T = 16;
    float u[T * D];
    layer_fix f;
    separated(&f, D, N, K, 15.0f, u, T);
    static outbuf det, ob;
    ob_init(&det);
    vm_router *d = vm_router_deterministic();
    CHECK(d->ops->forward(d, &f.L, u, T, &det.o, NULL) == 0, "det forward");
    // every kind of the registry (a new kind is tested without editing this): at initialisation each
    // keeps the pretrained selection on well-separated logits (swag: fresh, no spread yet)
    const char *const *kinds = vm_router_kind_names();
    for (int ki = 0; kinds[ki]; ki++) {
        vm_router *r = vm_router_create(kinds[ki], &f.L, NULL);
        for (int mode = 0; mode < 2 && r; mode++) {
            r->training = mode;
            int ok = 1;
            double dis = 0.0;
            for (uint64_t seed = 1; seed <= 5; seed++) {
                vm_rng g;
                vm_rng_seed(&g, seed);
                ob_init(&ob);
                CHECK(r->ops->forward(r, &f.L, u, T, &ob.o, &g) == 0, "%s forward", kinds[ki]);
                ok &= same_sets(ob.sel, det.sel, T, K);
                for (int t = 0; t < T; t++) if (!isnan(ob.unc[t * VM_UNC_COUNT + VM_UNC_DISAGREEMENT])) dis += ob.unc[t * VM_UNC_COUNT + VM_UNC_DISAGREEMENT];
            }
            CHECK(ok, "%s (training %d): selection differs from deterministic at init", kinds[ki], mode);
            // (mcdropout drops input features, so its samples may disagree among themselves even here;
            // the selection above still matches)
            if (strcmp(kinds[ki], "mcdropout"))
                CHECK(dis == 0.0, "%s: samples disagree on separated logits (%g)", kinds[ki], dis);
        }
        vm_router_free(r);
    }
    vm_router_free(d);
    fix_free(&f);
}

static void test_kl_and_mean_at_init(void) {
    const int D = 32, N = 8, K = 2, T = 20;
    layer_fix f;
    fix_init(&f, D, N, K, VM_GATE_SOFTMAX_SELECTED, 0.3f, 9);
    float u[T * D];
    vm_rng g;
    vm_rng_seed(&g, 4);
    randn(u, T * D, 1.0f, &g);
    static outbuf det, ob;
    ob_init(&det);
    vm_router *d = vm_router_deterministic();
    d->ops->forward(d, &f.L, u, T, &det.o, NULL);
    for (int fc = 0; fc < 2; fc++) {
        vm_router *r = vm_router_create(fc ? "vglr-fc" : "vglr-mf", &f.L, NULL);
        CHECK(r && r->n_params == 4 && r->params[3].frozen && r->params[3].w[0] == 1.0f, "vglr create");
        if (!r) continue;
        CHECK(fabs(r->beta - 1.0f) < 1e-9, "vglr default beta %g (the ELBO)", (double)r->beta);
        for (int mode = 0; mode < 2; mode++) {
            r->training = mode;
            ob_init(&ob);
            vm_rng_seed(&g, 5);
            CHECK(r->ops->forward(r, &f.L, u, T, &ob.o, &g) == 0, "vglr forward");
            const double kl = r->ops->reg(r);
            // v = W_L h ~ N(0, 1e-6 |h|^2) per entry, KL ~ sum of v^2 = O(P * 1e-6 * |h|^2 / H) per token
            CHECK(kl >= 0.0 && kl < 2e-4 * T, "%s KL at init %.3g (want T * O(P * 1e-6))", r->ops->name, kl);
            if (!mode) CHECK(memcmp(ob.logits, det.logits, sizeof(float) * T * N) == 0,
                             "%s posterior mean != l_det at init", r->ops->name);
            for (int t = 0; t < T; t++)
                CHECK_NEAR(ob.unc[t * VM_UNC_COUNT + VM_UNC_ILV], N, 0.05, "ILV at init ~ tr(I) = N");
        }
        // with the covariance head exactly 0, q is exactly the prior: KL == 0
        memset(r->params[2].w, 0, sizeof(float) * (size_t)(r->params[2].ne[0] * r->params[2].ne[1]));
        r->training = 1;
        vm_rng_seed(&g, 5);
        r->ops->forward(r, &f.L, u, T, &ob.o, &g);
        CHECK(fabs(r->ops->reg(r)) < 1e-12, "%s KL with W_cov = 0: %g", r->ops->name, r->ops->reg(r));
        vm_router_free(r);
    }
    // scale-aware prior: q = N(l_det, sigma_p^2 I) at init, so ILV = N sigma_p^2 and the KL ~ 0
    for (int fc = 0; fc < 2; fc++) {
        vm_router_opts o;
        vm_router_opts_default(&o);
        o.prior_sd = 0.25f;
        vm_router *r = vm_router_create(fc ? "vglr-fc" : "vglr-mf", &f.L, &o);
        if (!r) { CHECK(0, "create"); continue; }
        ob_init(&ob);
        vm_rng_seed(&g, 5);
        CHECK(r->ops->forward(r, &f.L, u, T, &ob.o, &g) == 0, "vglr forward");
        for (int t = 0; t < T; t++)
            CHECK_NEAR(ob.unc[t * VM_UNC_COUNT + VM_UNC_ILV], N * 0.0625, 0.05 * N * 0.0625, "ILV at init ~ N sigma_p^2");
        CHECK(r->ops->reg(r) >= 0.0 && r->ops->reg(r) < 2e-4 * T, "%s KL at init with sigma_p 0.25: %g", r->ops->name, r->ops->reg(r));
        // the training sample's spread: l - l_det = sigma_p M eps with M ~ I, so SD ~ 0.25
        r->training = 1;
        double ss = 0.0;
        for (int rep = 0; rep < 50; rep++) {
            ob_init(&ob);
            r->ops->forward(r, &f.L, u, T, &ob.o, &g);
            for (int i = 0; i < T * N; i++) ss += (double)(ob.logits[i] - det.logits[i]) * (ob.logits[i] - det.logits[i]);
        }
        CHECK_NEAR(sqrt(ss / (50.0 * T * N)), 0.25, 0.02, "vglr sample SD = sigma_p");
        vm_router_free(r);
    }
    // VTSR: T = T0 = 1 (scale-blind) for every token, reg = (log T - log T0)^2 / 2 = 0
    vm_router *r = vm_router_create("vtsr", &f.L, NULL);
    CHECK(r && r->n_params == 5 && r->params[4].frozen && fabs(r->beta - 0.01f) < 1e-9, "vtsr create");
    if (r) {
        ob_init(&ob);
        vm_rng_seed(&g, 5);
        CHECK(r->ops->forward(r, &f.L, u, T, &ob.o, &g) == 0, "vtsr forward");
        double worst = 0.0;
        for (int t = 0; t < T; t++) worst = fmax(worst, fabs(ob.unc[t * VM_UNC_COUNT + VM_UNC_TEMPERATURE] - 1.0));
        CHECK(worst < 1e-4, "VTSR T at init off 1 by %g", worst);
        CHECK(fabs(r->ops->reg(r)) < 1e-6, "VTSR prior term at init %g", r->ops->reg(r));
        // z = l_det / T: the output logits are the deterministic ones scaled by ~1
        CHECK_NEAR(ob.logits[5], det.logits[5], 1e-4 * (1 + fabs(det.logits[5])), "vtsr z = l_det at init");
    }
    vm_router_free(r);
    {   // with a logit scale: T0 = sigma_p sqrt(6)/pi
        vm_router_opts o;
        vm_router_opts_default(&o);
        o.prior_sd = 0.5f;
        r = vm_router_create("vtsr", &f.L, &o);
        ob_init(&ob);
        CHECK(r && r->ops->forward(r, &f.L, u, T, &ob.o, &g) == 0, "vtsr forward");
        for (int t = 0; r && t < T; t++)
            CHECK_NEAR(ob.unc[t * VM_UNC_COUNT + VM_UNC_TEMPERATURE], 0.5 * sqrt(6.0) / M_PI, 1e-5, "VTSR T0 from sigma_p");
        vm_router_free(r);
    }
    vm_router_free(d);
    fix_free(&f);
}

static void test_seeds(void) {
    const int D = 16, N = 6, K = 2, T = 12;
    layer_fix f;
    fix_init(&f, D, N, K, VM_GATE_SOFTMAX_ALL, 0.05f, 21);   // near-uniform routing: noise decides
    float u[T * D];
    vm_rng g;
    vm_rng_seed(&g, 8);
    randn(u, T * D, 1.0f, &g);
    const char *const *kinds = vm_router_kind_names();   // every kind of the registry
    static outbuf a, b, c;
    for (int ki = 0; kinds[ki]; ki++)
        for (int mode = 0; mode < 2; mode++) {
            const vm_router_ops *ops = vm_router_kind_ops(kinds[ki]);
            vm_router_opts o;
            vm_router_opts_default(&o);
            o.dropout = 0.3f;
            vm_router *r = vm_router_create(kinds[ki], &f.L, &o);
            if (!r) { CHECK(0, "create %s", kinds[ki]); continue; }
            if (ops->unc & VM_UNC_BIT(VM_UNC_ILV)) scramble(r, 3);   // vglr: a posterior wide enough to matter
            spread(r, 4, 0.5f);                       // (swag's: from none)
            r->training = mode;
            vm_rng ga, gb, gc;
            vm_rng_seed(&ga, 42); vm_rng_seed(&gb, 42); vm_rng_seed(&gc, 43);
            ob_init(&a); ob_init(&b); ob_init(&c);
            r->ops->forward(r, &f.L, u, T, &a.o, &ga);
            r->ops->forward(r, &f.L, u, T, &b.o, &gb);
            r->ops->forward(r, &f.L, u, T, &c.o, &gc);
            CHECK(!memcmp(a.logits, b.logits, sizeof a.logits) && !memcmp(a.probs, b.probs, sizeof a.probs) &&
                  !memcmp(a.sel, b.sel, sizeof a.sel) && !memcmp(a.gates, b.gates, sizeof a.gates),
                  "%s (training %d): same seed, different output", kinds[ki], mode);
            const int differs = memcmp(a.sel, c.sel, sizeof a.sel) || memcmp(a.gates, c.gates, sizeof a.gates) ||
                                memcmp(a.probs, c.probs, sizeof a.probs);
            // inference draws for the kinds that declare it; in training, the stochastic kinds draw except
            // those with a collection phase (swag: SGD's deterministic iterate), and ensemble draws the
            // member it updates although its inference is deterministic
            const int stoch = (ops->flags & VM_ROUTER_STOCHASTIC) != 0;
            const int sampled = mode ? (stoch && !ops->collect) || !strcmp(kinds[ki], "ensemble") : stoch;
            if (sampled)
                CHECK(differs, "%s (training %d): seeds 42 and 43 gave the same output", kinds[ki], mode);
            vm_router_free(r);
        }
    fix_free(&f);
}

// ILV and the sample moments against L built here, independently, from the published fill rule:
// L[i][j] (j <= i) = v[i(i+1)/2 + j], L_ii = exp(v_ii).
static void test_vglr_moments(void) {
    const int D = 8, N = 4, K = 2, T = 40000;
    layer_fix f;
    fix_init(&f, D, N, K, VM_GATE_SOFTMAX_SELECTED, 0.5f, 31);
    float u1[D];
    vm_rng g;
    vm_rng_seed(&g, 12);
    randn(u1, D, 3.0f, &g);
    float *u = malloc((size_t)T * D * sizeof(float)), *lo = malloc((size_t)T * N * sizeof(float)),
          *pr = malloc((size_t)T * N * sizeof(float)), *ga = malloc((size_t)T * K * sizeof(float)),
          *un = malloc((size_t)T * VM_UNC_COUNT * sizeof(float));
    int32_t *se = malloc((size_t)T * K * sizeof(int32_t));
    for (int t = 0; t < T; t++) memcpy(u + (size_t)t * D, u1, sizeof u1);
    for (int fc = 0; fc < 2; fc++) {
        vm_router_opts o;
        vm_router_opts_default(&o);
        o.hidden = 3;
        vm_router *r = vm_router_create(fc ? "vglr-fc" : "vglr-mf", &f.L, &o);
        if (!r) { CHECK(0, "create"); continue; }
        scramble_sd(r, 99, 2.0f);
        const int H = 3, P = fc ? N * (N + 1) / 2 : N;
        // independent: h, dmu, v, L, Sigma
        double h[3], mu[4], v[10], Lm[4][4] = {{0}}, Sig[4][4] = {{0}}, ilv = 0.0;
        for (int j = 0; j < H; j++) {
            double a = 0.0;
            for (int d = 0; d < D; d++) a += (double)r->params[0].w[j * D + d] * u1[d];
            h[j] = a > 0 ? a : 0;
        }
        for (int i = 0; i < N; i++) {
            double l = 0.0, m = 0.0;
            for (int d = 0; d < D; d++) l += (double)f.wd[i * D + d] * u1[d];
            for (int j = 0; j < H; j++) m += (double)r->params[1].w[i * H + j] * h[j];
            mu[i] = l + m;
        }
        for (int p = 0; p < P; p++) {
            v[p] = 0.0;
            for (int j = 0; j < H; j++) v[p] += (double)r->params[2].w[p * H + j] * h[j];
        }
        if (fc) {
            for (int i = 0; i < N; i++)
                for (int j = 0; j <= i; j++) Lm[i][j] = i == j ? exp(v[i * (i + 1) / 2 + j]) : v[i * (i + 1) / 2 + j];
            for (int i = 0; i < N; i++)
                for (int j = 0; j < N; j++)
                    for (int k = 0; k < N; k++) Sig[i][j] += Lm[i][k] * Lm[j][k];
        } else {
            for (int i = 0; i < N; i++) Sig[i][i] = exp(v[i]);
        }
        for (int i = 0; i < N; i++) ilv += Sig[i][i];
        vm_router_out out = { lo, pr, se, ga, un };
        r->training = 1;
        vm_rng_seed(&g, 2024);
        CHECK(r->ops->forward(r, &f.L, u, T, &out, &g) == 0, "moments forward");
        CHECK_NEAR(un[VM_UNC_ILV], ilv, 1e-4 * ilv, fc ? "ILV = ||L||_F^2" : "ILV = sum sigma^2");
        double m[4] = {0}, C[4][4] = {{0}};
        for (int t = 0; t < T; t++) for (int i = 0; i < N; i++) m[i] += lo[(size_t)t * N + i];
        for (int i = 0; i < N; i++) m[i] /= T;
        for (int t = 0; t < T; t++)
            for (int i = 0; i < N; i++)
                for (int j = 0; j < N; j++)
                    C[i][j] += (lo[(size_t)t * N + i] - m[i]) * (lo[(size_t)t * N + j] - m[j]);
        int bad = 0;
        for (int i = 0; i < N; i++) {
            if (fabs(m[i] - mu[i]) > 5.0 * sqrt(Sig[i][i] / T) + 1e-5) bad++;
            for (int j = 0; j < N; j++) {
                C[i][j] /= T - 1;
                const double sd = sqrt((Sig[i][i] * Sig[j][j] + Sig[i][j] * Sig[i][j]) / T);
                if (fabs(C[i][j] - Sig[i][j]) > 5.0 * sd + 1e-5) {
                    fprintf(stderr, "  cov[%d][%d] %.5g vs %.5g\n", i, j, C[i][j], Sig[i][j]);
                    bad++;
                }
            }
        }
        CHECK(bad == 0, "%s: sample mean/covariance off mu / L L^T (%d entries)", r->ops->name, bad);
        if (fc) {   // power: the same v filled column-major must be rejected by these moments
            double La[4][4] = {{0}}, Sa[4][4] = {{0}};
            for (int j = 0; j < N; j++)
                for (int i = j; i < N; i++) {
                    const int idx = j * N - j * (j - 1) / 2 + (i - j);
                    La[i][j] = i == j ? exp(v[idx]) : v[idx];
                }
            for (int i = 0; i < N; i++)
                for (int j = 0; j < N; j++)
                    for (int k = 0; k < N; k++) Sa[i][j] += La[i][k] * La[j][k];
            int rejected = 0;
            for (int i = 0; i < N; i++)
                for (int j = 0; j < N; j++)
                    rejected += fabs(C[i][j] - Sa[i][j]) > 5.0 * sqrt((Sa[i][i] * Sa[j][j] + Sa[i][j] * Sa[i][j]) / T) + 1e-5;
            CHECK(rejected > 0, "column-major fill not distinguishable by the moments test");
        }
        vm_router_free(r);
    }
    free(u); free(lo); free(pr); free(ga); free(un); free(se);
    fix_free(&f);
}

// Inverted dropout is unbiased: the mean over many tokens of l_bar is l_det, within its
// standard error sqrt(p/(1-p) sum_d W_id^2 u_d^2 / (S T)); a wrong drop rate or scaling shows.
static void test_mcdropout_unbiased(void) {
    const int D = 16, N = 4, K = 2, T = 2000;
    layer_fix f;
    fix_init(&f, D, N, K, VM_GATE_SOFTMAX_SELECTED, 0.5f, 8);
    float u1[D];
    vm_rng g;
    vm_rng_seed(&g, 6);
    randn(u1, D, 1.0f, &g);
    float *u = malloc(sizeof(float) * T * D), *lo = malloc(sizeof(float) * T * N), *pr = malloc(sizeof(float) * T * N),
          *ga = malloc(sizeof(float) * T * K), *un = malloc(sizeof(float) * T * VM_UNC_COUNT);
    int32_t *se = malloc(sizeof(int32_t) * T * K);
    for (int t = 0; t < T; t++) memcpy(u + (size_t)t * D, u1, sizeof u1);
    vm_router_opts o;
    vm_router_opts_default(&o);
    o.dropout = 0.3f;
    vm_router *r = vm_router_create("mcdropout", &f.L, &o);
    vm_router_out out = { lo, pr, se, ga, un };
    CHECK(r && r->ops->forward(r, &f.L, u, T, &out, &g) == 0, "mcdropout forward");
    int bad = 0;
    double dis = 0.0;
    for (int t = 0; t < T; t++) dis += un[t * VM_UNC_COUNT + VM_UNC_DISAGREEMENT];
    for (int i = 0; i < N; i++) {
        double ld = 0.0, v = 0.0, m = 0.0;
        for (int d = 0; d < D; d++) {
            ld += (double)f.wd[i * D + d] * u1[d];
            v += (double)f.wd[i * D + d] * f.wd[i * D + d] * u1[d] * u1[d];
        }
        for (int t = 0; t < T; t++) m += lo[(size_t)t * N + i];
        m /= T;
        const double se_ = sqrt(0.3 / 0.7 * v / (35.0 * T));
        if (fabs(m - ld) > 5 * se_) { bad++; fprintf(stderr, "  mean l_bar %g vs l_det %g (se %g)\n", m, ld, se_); }
        // and the per-token spread of l_bar matches the same variance / S
        double s2 = 0.0;
        for (int t = 0; t < T; t++) s2 += (lo[(size_t)t * N + i] - m) * (lo[(size_t)t * N + i] - m);
        s2 /= T - 1;
        const double want = 0.3 / 0.7 * v / 35.0;
        if (fabs(s2 / want - 1.0) > 0.2) { bad++; fprintf(stderr, "  var l_bar %g vs %g\n", s2, want); }
    }
    CHECK(bad == 0, "mcdropout l_bar moments off (%d)", bad);
    CHECK(dis > 0.0, "mcdropout p=0.3: no sample ever disagreed");
    vm_router_free(r);
    free(u); free(lo); free(pr); free(ga); free(un); free(se);
    fix_free(&f);
}

static void test_baseline_identities(void) {
    const int D = 16, N = 6, T = 10;
    for (int K = 2; K <= N; K += N - 2)
        for (int ci = 0; ci < 2; ci++) {
            layer_fix f;
            fix_init(&f, D, N, K, ci ? VM_GATE_SOFTMAX_ALL : VM_GATE_SOFTMAX_SELECTED, 0.5f, 50 + K);
            float u[T * D];
            vm_rng g;
            vm_rng_seed(&g, 1);
            randn(u, T * D, 1.0f, &g);
            static outbuf det, a, b;
            ob_init(&det);
            vm_router *d = vm_router_deterministic();
            d->ops->forward(d, &f.L, u, T, &det.o, NULL);
            vm_router_opts o;
            vm_router_opts_default(&o);
            o.dropout = 0.0f;
            vm_router *mc = vm_router_create("mcdropout", &f.L, &o);
            ob_init(&a);
            vm_rng_seed(&g, 3);
            CHECK(mc && mc->ops->forward(mc, &f.L, u, T, &a.o, &g) == 0, "mcdropout forward");
            CHECK(!memcmp(a.logits, det.logits, sizeof(float) * T * N) && !memcmp(a.sel, det.sel, sizeof(int32_t) * T * K) &&
                  !memcmp(a.gates, det.gates, sizeof(float) * T * K) && !memcmp(a.probs, det.probs, sizeof(float) * T * N),
                  "mcdropout p=0 != deterministic (K %d)", K);
            CHECK(a.unc[VM_UNC_DISAGREEMENT] == 0.0f, "mcdropout p=0 disagreement");
            vm_router_free(mc);
            // MAP at init == det; ensemble M=1 without noise == MAP
            vm_router *map = vm_router_create("map", &f.L, NULL);
            ob_init(&a);
            CHECK(map && map->ops->forward(map, &f.L, u, T, &a.o, NULL) == 0, "map forward");
            CHECK(!memcmp(a.logits, det.logits, sizeof(float) * T * N) && !memcmp(a.sel, det.sel, sizeof(int32_t) * T * K) &&
                  !memcmp(a.gates, det.gates, sizeof(float) * T * K), "map at init != deterministic (K %d)", K);
            CHECK(map && map->n_params == 1 && !strcmp(map->params[0].name, "map.w_r"), "map param name");
            vm_router_free(map);
            o.members = 1; o.member_noise = 0.0f;
            vm_router *ens = vm_router_create("ensemble", &f.L, &o);
            for (int mode = 0; mode < 2 && ens; mode++) {
                ens->training = mode;
                ob_init(&b);
                vm_rng_seed(&g, 3);
                CHECK(ens->ops->forward(ens, &f.L, u, T, &b.o, &g) == 0, "ensemble forward");
                CHECK(!memcmp(b.logits, det.logits, sizeof(float) * T * N) && !memcmp(b.sel, det.sel, sizeof(int32_t) * T * K),
                      "ensemble M=1 (training %d) != MAP (K %d)", mode, K);
                double worst = 0.0;
                for (int i = 0; i < T * K; i++) worst = fmax(worst, fabs(b.gates[i] - det.gates[i]));
                CHECK(worst < 1e-6, "ensemble M=1 gates off MAP by %g", worst);
            }
            vm_router_free(ens);
            // members differ with noise, and each is named
            o.members = 3; o.member_noise = 0.1f;
            ens = vm_router_create("ensemble", &f.L, &o);
            CHECK(ens && ens->n_params == 3 && !strcmp(ens->params[2].name, "ensemble.w_r.2") &&
                  memcmp(ens->params[0].w, ens->params[1].w, sizeof(float) * N * D), "ensemble members");
            vm_router_free(ens);
            vm_router_free(d);
            fix_free(&f);
        }
}

// vm_gate_at on the convention's own selection gives vm_gate_from_logits's gates; the det
// router reports the gate entropy of its probabilities.
static void test_gate_helpers(void) {
    const int D = 8, N = 7;
    for (int ci = 0; ci < 5; ci++)
        for (int K = 1; K <= N; K += 3) {
            layer_fix f;
            fix_init(&f, D, N, K, (vm_gate_conv)ci, 1.0f, 60 + ci);
            f.L.weights_scale = 2.5f;
            vm_rng g;
            vm_rng_seed(&g, ci);
            float l[N], p[N], ga[N], gb[N];
            int32_t sa[N], sb[N];
            randn(l, N, 2.0f, &g);
            vm_gate_from_logits(&f.L, l, p, sa, ga);
            vm_gate_select(&f.L, l, sb);
            CHECK(!memcmp(sa, sb, sizeof(int32_t) * K), "vm_gate_select == vm_gate_from_logits's (%s K %d)", conv_name(ci), K);
            vm_gate_at(&f.L, l, sa, gb);
            double worst = 0.0;
            for (int j = 0; j < K; j++) worst = fmax(worst, fabs(ga[j] - gb[j]));
            CHECK(worst < 1e-6, "vm_gate_at off vm_gate_from_logits by %g (%s K %d)", worst, conv_name(ci), K);
            fix_free(&f);
        }
    float p[4] = { 0.5f, 0.25f, 0.25f, 0.0f };
    CHECK_NEAR(vm_gate_entropy(p, 4), 1.0397207708, 1e-6, "entropy of (1/2,1/4,1/4,0)");
}

static void test_registry(void) {
    const char *const *names = vm_router_kind_names();
    const char *want[] = { "deterministic", "map", "temp-sample", "mcdropout", "ensemble", "vglr-mf", "vglr-fc", "vtsr",
                           "swag" };
    int n = 0;
    while (names[n]) n++;
    CHECK(n == 9, "9 kinds, got %d", n);
    for (int i = 0; i < 9 && i < n; i++) CHECK(!strcmp(names[i], want[i]), "kind %d is %s", i, names[i]);
    CHECK(vm_router_kind_beta("vglr-fc") == 1.0f && vm_router_kind_beta("vtsr") == 0.01f &&
          vm_router_kind_beta("map") == 0.0f && vm_router_kind_beta("swag") == 0.0f && vm_router_kind_beta("nope") == 0.0f,
          "default betas: the ELBO's, VTSR's; none for the kinds without a regulariser");
    layer_fix f;
    fix_init(&f, 8, 4, 2, VM_GATE_SOFTMAX_SELECTED, 1.0f, 1);
    vm_err_clear();
    CHECK(vm_router_create("nope", &f.L, NULL) == NULL && strstr(vm_errmsg(), "nope"), "unknown kind refused");
    vm_router_opts o;
    vm_router_opts_default(&o);
    o.samples = 0;
    CHECK(vm_router_create("vglr-fc", &f.L, &o) == NULL, "samples 0 refused");
    vm_router_opts_default(&o);
    o.dropout = 1.0f;
    CHECK(vm_router_create("mcdropout", &f.L, &o) == NULL, "dropout 1 refused");
    f.L.n_expert_used = 5;
    CHECK(vm_router_create("map", &f.L, NULL) == NULL, "K > N refused");
    f.L.n_expert_used = 2;
    vm_router_layer bad = f.L;
    bad.w_gate = NULL;
    CHECK(vm_router_create("vtsr", &bad, NULL) == NULL, "missing W_r refused");
    // the sampled kinds need a stream; backward needs a training forward (vglr)
    vm_router *r = vm_router_create("vglr-fc", &f.L, NULL);
    static outbuf ob;
    ob_init(&ob);
    float u[8] = { 1, 2, 3, 4, 5, 6, 7, 8 }, du[8] = { 0 }, dg[2] = { 1, 1 };
    CHECK(r && r->ops->forward(r, &f.L, u, 1, &ob.o, NULL) == -1, "vglr without a stream refused");
    vm_rng g;
    vm_rng_seed(&g, 1);
    CHECK(r && r->ops->forward(r, &f.L, u, 1, &ob.o, &g) == 0, "vglr inference forward");
    CHECK(r && r->ops->backward(r, &f.L, u, 1, &ob.o, dg, du, 0.0f) == -1, "vglr backward after inference refused");
    vm_router_free(r);
    fix_free(&f);
}

// What each kind declares in its ops is what it does: the read-outs marked in `unc` are finite for
// every token (in inference and training forwards) and the others stay NaN; STOCHASTIC kinds need a
// stream and their output changes with it, the others do not; TRAINABLE kinds have parameters;
// FLOPs are at least those of W_r u and grow with S where the kind samples inside the router.
static void test_declarations(void) {
    const int D = 16, N = 6, K = 2, T = 5;
    layer_fix f;
    fix_init(&f, D, N, K, VM_GATE_SOFTMAX_SELECTED, 0.4f, 31);
    float u[T * D];
    vm_rng g;
    vm_rng_seed(&g, 3);
    randn(u, T * D, 1.0f, &g);
    static outbuf a, b;
    for (const char *const *k = vm_router_kind_names(); *k; k++) {
        const vm_router_ops *ops = vm_router_kind_ops(*k);
        CHECK(ops && !strcmp(ops->name, *k), "registry entry %s", *k);
        vm_router_opts o;
        vm_router_opts_default(&o);
        o.samples = 8; o.dropout = 0.3f; o.members = 3;
        vm_router *r = vm_router_create(*k, &f.L, &o);
        if (!r) { CHECK(0, "create %s: %s", *k, vm_errmsg()); continue; }
        CHECK(r->ops == ops, "%s: created router has the registry's ops", *k);
        int trainable = 0;
        for (int i = 0; i < r->n_params; i++) trainable |= !r->params[i].frozen;
        CHECK(!!(ops->flags & VM_ROUTER_TRAINABLE) == trainable, "%s: TRAINABLE flag vs parameters", *k);
        const int stoch = (ops->flags & VM_ROUTER_STOCHASTIC) != 0;
        if (stoch) { scramble(r, 11); spread(r, 12, 0.3f); }
        for (int mode = 0; mode < 2; mode++) {
            if (mode && !trainable) break;
            r->training = mode;
            ob_init(&a); ob_init(&b);
            for (int i = 0; i < T * VM_UNC_COUNT; i++) a.unc[i] = b.unc[i] = NAN;
            vm_rng ga, gb;
            vm_rng_seed(&ga, 1); vm_rng_seed(&gb, 2);
            CHECK(r->ops->forward(r, &f.L, u, T, &a.o, &ga) == 0, "%s forward: %s", *k, vm_errmsg());
            CHECK(r->ops->forward(r, &f.L, u, T, &b.o, &gb) == 0, "%s forward", *k);
            if (stoch) CHECK(r->ops->forward(r, &f.L, u, T, &b.o, NULL) == -1, "%s without a stream refused", *k);
            const int differs = memcmp(a.probs, b.probs, sizeof a.probs) || memcmp(a.sel, b.sel, sizeof a.sel) ||
                                memcmp(a.logits, b.logits, sizeof a.logits);
            // (training forwards may sample, e.g. the ensemble's member; STOCHASTIC is about inference)
            if (!stoch && !mode) CHECK(!differs, "%s: not STOCHASTIC but depends on the stream", *k);
            else if (!mode) CHECK(differs, "%s: STOCHASTIC but the stream changes nothing", *k);
            for (int u_ = 0; u_ < VM_UNC_COUNT; u_++) {
                // disagreement and prob_var are inference-only read-outs of the kinds that draw S samples
                if (mode && (u_ == VM_UNC_DISAGREEMENT || u_ == VM_UNC_PROB_VAR)) continue;
                int fin = 0;
                for (int t = 0; t < T; t++) fin += isfinite(a.unc[t * VM_UNC_COUNT + u_]) != 0;
                const int declared = (ops->unc & VM_UNC_BIT(u_)) != 0;
                CHECK(fin == (declared ? T : 0), "%s (training %d): read-out %d declared %d, finite on %d of %d tokens",
                      *k, mode, u_, declared, fin, T);
            }
        }
        const double fl = vm_router_flops(r, &f.L), det = 2.0 * D * N;
        CHECK(fl >= det && isfinite(fl), "%s: FLOPs %g below W_r u (%g)", *k, fl, det);
        if (!strncmp(*k, "vglr", 4) || !strcmp(*k, "mcdropout") || !strcmp(*k, "swag")) {   // S samples inside the router
            vm_router_opts o2 = o;
            o2.samples = 64;
            vm_router *r2 = vm_router_create(*k, &f.L, &o2);
            CHECK(r2 && vm_router_flops(r2, &f.L) > fl, "%s: FLOPs grow with S", *k);
            vm_router_free(r2);
        }
        vm_router_free(r);
    }
    CHECK(vm_router_kind_ops("nope") == NULL && vm_router_flops(NULL, &f.L) == 2.0 * D * N, "unknown kind, NULL router");
    fix_free(&f);
}

int main(void) {
    test_registry();
    test_declarations();
    test_gate_helpers();
    test_gradients();
    test_f16_gate();
    test_init_equals_det();
    test_kl_and_mean_at_init();
    test_seeds();
    test_vglr_moments();
    test_baseline_identities();
    test_mcdropout_unbiased();
    return TEST_SUMMARY();
}

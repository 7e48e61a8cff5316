// Kernels against naive double-precision references written here, and the router's gate
// conventions (method.md §2) on hand-computed cases.
#include "test.h"
#include "kernels/exp_neg.h"
#include "kernels/ops.h"
#include "router/router.h"
#include "util/rng.h"

#include <omp.h>
#include <string.h>

static vm_rng rng;

static void fill(float *x, size_t n, float sd) { for (size_t i = 0; i < n; i++) x[i] = sd * vm_rng_normal(&rng); }

// ||a - b|| / ||b||
static double nerr(const float *a, const double *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) { num += (a[i] - b[i]) * (a[i] - b[i]); den += b[i] * b[i]; }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void ref_matmul(double *out, const float *inp, const float *w, const float *bias, int B, int C, int OC) {
    for (int b = 0; b < B; b++)
        for (int o = 0; o < OC; o++) {
            double s = bias ? bias[o] : 0.0;
            for (int c = 0; c < C; c++) s += (double)inp[b * C + c] * w[o * C + c];
            out[b * OC + o] = s;
        }
}

static void test_matmul(void) {
    enum { B = 5, C = 64, OC = 19 };
    float inp[B * C], w[OC * C], bias[OC], out[B * OC];
    double ref[B * OC];
    fill(inp, B * C, 1); fill(w, OC * C, 1); fill(bias, OC, 1);
    vm_tensor t;
    vm_tensor_init(&t, "w", VM_TYPE_F32, 2, (int64_t[]){C, OC}, w);
    vm_matmul_forward(out, inp, &t, bias, B);
    ref_matmul(ref, inp, w, bias, B, C, OC);
    CHECK(nerr(out, ref, B * OC) < 1e-6, "matmul f32 err %g", nerr(out, ref, B * OC));
    vm_matmul_forward(out, inp, &t, NULL, B);
    ref_matmul(ref, inp, w, NULL, B, C, OC);
    CHECK(nerr(out, ref, B * OC) < 1e-6, "matmul f32 no bias err %g", nerr(out, ref, B * OC));

    // F16 weights: reference from the rounded values; also a batch row equals a lone token
    uint16_t wh[OC * C];
    float wr[OC * C];
    for (int i = 0; i < OC * C; i++) { wh[i] = vm_fp32_to_fp16(w[i]); wr[i] = vm_fp16_to_fp32(wh[i]); }
    vm_tensor_init(&t, "wh", VM_TYPE_F16, 2, (int64_t[]){C, OC}, wh);
    vm_matmul_forward(out, inp, &t, bias, B);
    ref_matmul(ref, inp, wr, bias, B, C, OC);
    CHECK(nerr(out, ref, B * OC) < 1e-6, "matmul f16 err %g", nerr(out, ref, B * OC));
    float one[OC];
    vm_matmul_forward(one, inp + 3 * C, &t, bias, 1);
    CHECK(memcmp(one, out + 3 * OC, sizeof one) == 0, "matmul: batch row differs from a lone token");
}

static void test_rmsnorm(void) {
    enum { B = 3, C = 48 };
    float x[B * C], w[C], out[B * C];
    double ref[B * C];
    fill(x, B * C, 3); fill(w, C, 1);
    vm_rmsnorm_forward(out, x, w, B, C, 1e-5f);
    for (int b = 0; b < B; b++) {
        double ss = 0;
        for (int i = 0; i < C; i++) ss += (double)x[b * C + i] * x[b * C + i];
        double r = 1.0 / sqrt(ss / C + 1e-5);
        for (int i = 0; i < C; i++) ref[b * C + i] = x[b * C + i] * r * w[i];
    }
    CHECK(nerr(out, ref, B * C) < 1e-6, "rmsnorm err %g", nerr(out, ref, B * C));
    // in place is allowed (out == inp)
    float y[B * C];
    memcpy(y, x, sizeof y);
    vm_rmsnorm_forward(y, y, w, B, C, 1e-5f);
    CHECK(memcmp(y, out, sizeof y) == 0, "rmsnorm in place differs");
}

// Reference rotation written from the definition: rotate the pair (a, b) by theta_i.
static void ref_rope(double *x, const int32_t *pos, int B, int H, int hd, int n_rot, double base,
                     double fs, int neox) {
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < n_rot / 2; i++) {
                double th = pos[b] * fs * pow(base, -2.0 * i / n_rot);
                int i0 = neox ? i : 2 * i, i1 = neox ? i + n_rot / 2 : 2 * i + 1;
                double *v = x + ((size_t)b * H + h) * hd;
                double a = v[i0], c = v[i1];
                v[i0] = a * cos(th) - c * sin(th);
                v[i1] = a * sin(th) + c * cos(th);
            }
}

static void test_rope(void) {
    enum { B = 4, H = 3, HD = 16, N = B * H * HD };
    int32_t pos[B] = {0, 1, 7, 1000};
    for (int neox = 0; neox <= 1; neox++)
        for (int n_rot = 8; n_rot <= HD; n_rot += 8) {
            float x[N];
            double ref[N];
            fill(x, N, 1);
            for (int i = 0; i < N; i++) ref[i] = x[i];
            vm_rope_forward(x, pos, B, H, HD, n_rot, 10000.0f, 0.5f, neox);
            ref_rope(ref, pos, B, H, HD, n_rot, 10000.0, 0.5, neox);
            CHECK(nerr(x, ref, N) < 1e-6, "rope neox=%d n_rot=%d err %g", neox, n_rot, nerr(x, ref, N));
        }
    // hand case: head_dim 4, pos 1, base 100: pair 0 turns by 1 rad, pair 1 by 0.1 rad
    float v[4] = {1, 0, 1, 0};
    int32_t p1 = 1;
    vm_rope_forward(v, &p1, 1, 1, 4, 4, 100.0f, 1.0f, 0);
    CHECK_NEAR(v[0], cos(1.0), 1e-6, "rope normal v0"); CHECK_NEAR(v[1], sin(1.0), 1e-6, "rope normal v1");
    CHECK_NEAR(v[2], cos(0.1), 1e-6, "rope normal v2"); CHECK_NEAR(v[3], sin(0.1), 1e-6, "rope normal v3");
    float w[4] = {1, 1, 0, 0};   // neox pairs (0,2) and (1,3)
    vm_rope_forward(w, &p1, 1, 1, 4, 4, 100.0f, 1.0f, 1);
    CHECK_NEAR(w[0], cos(1.0), 1e-6, "rope neox w0"); CHECK_NEAR(w[2], sin(1.0), 1e-6, "rope neox w2");
    CHECK_NEAR(w[1], cos(0.1), 1e-6, "rope neox w1"); CHECK_NEAR(w[3], sin(0.1), 1e-6, "rope neox w3");
    // the cos/sin table gives the floats of the direct computation (float)cos(pos scale base^(-2i/n_rot)),
    // bit for bit, inside it and past it (positions >= 4096 and negative ones are computed)
    const float bases[] = {10000.0f, 500000.0f, 100.0f}, scales[] = {1.0f, 0.25f, 0.5f};
    const int rots[] = {8, 64, 6};
    const int32_t ps[] = {0, 1, 2, 17, 255, 1000, 4095, 4096, 5000, 100000, -3};
    int bad = 0;
    for (int c = 0; c < 3; c++) {
        vm_rope_cs rc;
        vm_rope_cs_init(&rc, rots[c], bases[c], scales[c]);
        for (size_t k = 0; k < sizeof ps / sizeof *ps; k++) {
            float buf[64];
            const float *cs = vm_rope_cs_row(&rc, ps[k], buf);
            for (int i = 0; i < rots[c] / 2; i++) {
                const double p = (double)ps[k] * scales[c], theta = p * pow((double)bases[c], -2.0 * i / rots[c]);
                const float cf = (float)cos(theta), sf = (float)sin(theta);
                bad += memcmp(&cf, cs + 2 * i, sizeof cf) != 0 || memcmp(&sf, cs + 2 * i + 1, sizeof sf) != 0;
            }
        }
    }
    CHECK(bad == 0, "rope cos/sin table: %d values differ from the direct computation", bad);
}

static void test_softmax_swiglu(void) {
    float x[6] = {1000, 999, -5, 0, 1000, 2}, out[6];
    vm_softmax_forward(out, x, 6);
    double ref[6], s = 0;
    for (int i = 0; i < 6; i++) s += exp(x[i] - 1000.0);
    for (int i = 0; i < 6; i++) ref[i] = exp(x[i] - 1000.0) / s;
    CHECK(nerr(out, ref, 6) < 1e-6, "softmax err %g", nerr(out, ref, 6));
    CHECK(out[0] == out[4], "softmax: equal inputs, unequal outputs");

    float g[5] = {-3, -0.5f, 0, 0.7f, 20}, u[5] = {1, 2, 3, -1, 0.5f}, o[5];
    vm_swiglu_forward(o, g, u, 5);
    for (int i = 0; i < 5; i++) ref[i] = g[i] / (1.0 + exp(-(double)g[i])) * u[i];
    CHECK(nerr(o, ref, 5) < 1e-6, "swiglu err %g", nerr(o, ref, 5));
}

static void ref_attention(double *out, const float *q, const float *kc, const float *vc, int n_past,
                          int B, int H, int HK, int hd, double scale) {
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            int hk = h / (H / HK), n = n_past + b + 1;
            double sc[n], mx = -1e300, sum = 0;
            for (int t = 0; t < n; t++) {
                double s = 0;
                for (int d = 0; d < hd; d++) s += (double)q[(b * H + h) * hd + d] * kc[(t * HK + hk) * hd + d];
                sc[t] = s * scale;
                if (sc[t] > mx) mx = sc[t];
            }
            for (int t = 0; t < n; t++) { sc[t] = exp(sc[t] - mx); sum += sc[t]; }
            for (int d = 0; d < hd; d++) {
                double o = 0;
                for (int t = 0; t < n; t++) o += sc[t] / sum * vc[(t * HK + hk) * hd + d];
                out[(b * H + h) * hd + d] = o;
            }
        }
}

static void test_attention(void) {
    enum { NP = 3, B = 4, H = 4, HD = 8, CTX = 10 };
    for (int HK = 1; HK <= H; HK *= 2) {   // MQA, GQA, MHA
        float q[B * H * HD], kc[CTX * H * HD], vc[CTX * H * HD], out[B * H * HD];
        double ref[B * H * HD];
        fill(q, B * H * HD, 1); fill(kc, CTX * HK * HD, 1); fill(vc, CTX * HK * HD, 1);
        float scale = 1.0f / sqrtf(HD);
        vm_attention_forward(out, q, kc, vc, NP, B, H, HK, HD, scale);
        ref_attention(ref, q, kc, vc, NP, B, H, HK, HD, scale);
        CHECK(nerr(out, ref, B * H * HD) < 1e-6, "attention n_head_kv=%d err %g", HK, nerr(out, ref, B * H * HD));
        // the last query alone (n_past = NP+B-1) gives the same bits as inside the batch
        float one[H * HD];
        vm_attention_forward(one, q + (B - 1) * H * HD, kc, vc, NP + B - 1, 1, H, HK, HD, scale);
        CHECK(memcmp(one, out + (B - 1) * H * HD, sizeof one) == 0, "attention: decode row differs from batch row");
    }
    // causality: the first query of a fresh cache sees only itself -> output = v[0]
    float q1[HD], k1[2 * HD], v1[2 * HD], o1[HD];
    fill(q1, HD, 1); fill(k1, 2 * HD, 1); fill(v1, 2 * HD, 1);
    vm_attention_forward(o1, q1, k1, v1, 0, 1, 1, 1, HD, 1.0f);
    for (int d = 0; d < HD; d++) CHECK_NEAR(o1[d], v1[d], 1e-7, "attention first position = v0");
}

// Same bits with 1 and 2 threads, sizes above the kernels' parallel thresholds.
static void test_threads(void) {
    enum { B = 8, C = 256, OC = 300, H = 8, HK = 2, HD = 32, NP = 100, CTX = NP + B };
    static float inp[B * C], w[OC * C], o1[B * OC], o2[B * OC];
    static float q[B * H * HD], kc[CTX * HK * HD], vc[CTX * HK * HD], a1[B * H * HD], a2[B * H * HD];
    static float r1[B * C], r2[B * C], rw[C];
    int32_t pos[B];
    fill(inp, B * C, 1); fill(w, OC * C, 1); fill(q, B * H * HD, 1); fill(kc, CTX * HK * HD, 1);
    fill(vc, CTX * HK * HD, 1); fill(rw, C, 1);
    for (int b = 0; b < B; b++) pos[b] = NP + b;
    vm_tensor t;
    vm_tensor_init(&t, "w", VM_TYPE_F32, 2, (int64_t[]){C, OC}, w);
    int saved = omp_get_max_threads();
    for (int nt = 1; nt <= 2; nt++) {
        omp_set_num_threads(nt);
        float *o = nt == 1 ? o1 : o2, *a = nt == 1 ? a1 : a2, *r = nt == 1 ? r1 : r2;
        vm_matmul_forward(o, inp, &t, NULL, B);
        vm_attention_forward(a, q, kc, vc, NP, B, H, HK, HD, 0.2f);
        memcpy(r, inp, sizeof r1);
        vm_rope_forward(r, pos, B, C / HD, HD, HD, 10000.0f, 1.0f, 0);
        vm_rmsnorm_forward(r, r, rw, B, C, 1e-6f);
    }
    omp_set_num_threads(saved);
    CHECK(memcmp(o1, o2, sizeof o1) == 0, "matmul differs between 1 and 2 threads");
    CHECK(memcmp(a1, a2, sizeof a1) == 0, "attention differs between 1 and 2 threads");
    CHECK(memcmp(r1, r2, sizeof r1) == 0, "rope/rmsnorm differ between 1 and 2 threads");
}

// ---- router conventions on hand-computed cases ----
static vm_router_layer layer(vm_gate_conv conv, int N, int K) {
    vm_router_layer L;
    memset(&L, 0, sizeof L);
    L.n_expert = N; L.n_expert_used = K; L.conv = conv; L.weights_scale = 1.0f;
    return L;
}

static void test_router(void) {
    // logits l = (1, 3, 2, 0): top-2 = {1, 2}
    const float l[4] = {1, 3, 2, 0};
    double Z = exp(1) + exp(3) + exp(2) + exp(0);
    float probs[4], gates[2];
    int32_t sel[2];

    vm_router_layer L = layer(VM_GATE_SOFTMAX_SELECTED, 4, 2);
    vm_gate_from_logits(&L, l, probs, sel, gates);
    CHECK(sel[0] == 1 && sel[1] == 2, "softmax_selected sel %d %d", sel[0], sel[1]);
    CHECK_NEAR(probs[0], exp(1) / Z, 1e-7, "softmax_selected probs[0]");
    CHECK_NEAR(gates[0], exp(3) / (exp(3) + exp(2)), 1e-7, "softmax_selected gate 0");
    CHECK_NEAR(gates[1], exp(2) / (exp(3) + exp(2)), 1e-7, "softmax_selected gate 1");

    L = layer(VM_GATE_SOFTMAX_ALL, 4, 2);
    vm_gate_from_logits(&L, l, probs, sel, gates);
    CHECK(sel[0] == 1 && sel[1] == 2, "softmax_all sel");
    CHECK_NEAR(gates[0], exp(3) / Z, 1e-7, "softmax_all gate 0");
    CHECK_NEAR(gates[1], exp(2) / Z, 1e-7, "softmax_all gate 1");

    L = layer(VM_GATE_SOFTMAX_ALL_NORM, 4, 2);
    L.weights_scale = 2.5f;
    vm_gate_from_logits(&L, l, probs, sel, gates);
    CHECK_NEAR(gates[0], 2.5 * exp(3) / (exp(3) + exp(2)), 1e-6, "softmax_all_norm gate 0 (x2.5)");
    CHECK_NEAR(gates[1], 2.5 * exp(2) / (exp(3) + exp(2)), 1e-6, "softmax_all_norm gate 1 (x2.5)");

    // sigmoid with a selection bias that moves expert 3 into the set; gates ignore the bias
    const float bias[4] = {0, 0, 0, 0.9f};
    double s1 = 1 / (1 + exp(-3.0)), s3 = 1 / (1 + exp(-0.0));
    L = layer(VM_GATE_SIGMOID_NORM, 4, 2);
    L.sel_bias = bias;
    vm_gate_from_logits(&L, l, probs, sel, gates);
    CHECK(sel[0] == 3 && sel[1] == 1, "sigmoid_norm sel %d %d", sel[0], sel[1]);   // 0.5+0.9 > 0.95
    CHECK_NEAR(probs[2], 1 / (1 + exp(-2.0)), 1e-7, "sigmoid probs[2]");
    CHECK_NEAR(gates[0], s3 / (s1 + s3), 1e-7, "sigmoid_norm gate 0");
    CHECK_NEAR(gates[1], s1 / (s1 + s3), 1e-7, "sigmoid_norm gate 1");
    L.conv = VM_GATE_SIGMOID;
    vm_gate_from_logits(&L, l, probs, sel, gates);
    CHECK_NEAR(gates[0], s3, 1e-7, "sigmoid gate 0");
    CHECK_NEAR(gates[1], s1, 1e-7, "sigmoid gate 1");

    // ties: lower index first
    const float tie[5] = {0, 2, 1, 2, 2};
    int32_t sel3[3];
    float g3[3], p5[5];
    L = layer(VM_GATE_SOFTMAX_SELECTED, 5, 3);
    vm_gate_from_logits(&L, tie, p5, sel3, g3);
    CHECK(sel3[0] == 1 && sel3[1] == 3 && sel3[2] == 4, "ties sel %d %d %d", sel3[0], sel3[1], sel3[2]);
    CHECK_NEAR(g3[0], 1.0 / 3, 1e-7, "tie gates equal");

    // from given probabilities (posterior means): renormalising vs not
    const float pm[4] = {0.1f, 0.4f, 0.3f, 0.2f};
    L = layer(VM_GATE_SOFTMAX_SELECTED, 4, 2);
    vm_gate_from_probs(&L, pm, sel, gates);
    CHECK(sel[0] == 1 && sel[1] == 2, "from_probs sel");
    CHECK_NEAR(gates[0], 0.4 / 0.7, 1e-7, "from_probs renorm gate 0");
    L.conv = VM_GATE_SOFTMAX_ALL;
    vm_gate_from_probs(&L, pm, sel, gates);
    CHECK_NEAR(gates[0], 0.4, 1e-7, "from_probs plain gate 0");
    CHECK_NEAR(gates[1], 0.3, 1e-7, "from_probs plain gate 1");

    // group-limited: 8 experts in 4 groups of 2, keep 2 groups, top-2
    // group scores (sum of the group's two): g0 .9+.1=1.0, g1 .8+.7=1.5, g2 .6+.6=1.2, g3 .95+0=.95
    const float pg[8] = {0.9f, 0.1f, 0.8f, 0.7f, 0.6f, 0.6f, 0.95f, 0.0f};
    L = layer(VM_GATE_SIGMOID_NORM, 8, 2);
    L.n_group = 4; L.topk_group = 2;
    vm_gate_from_probs(&L, pg, sel, gates);
    CHECK(sel[0] == 2 && sel[1] == 3, "group-limited sel %d %d", sel[0], sel[1]);
    CHECK_NEAR(gates[0], 0.8 / 1.5, 1e-6, "group-limited gate 0");

    // router logits and the deterministic router end to end: W_r = rows e_i scaled
    float W[4 * 3] = {1, 0, 0,  0, 1, 0,  0, 0, 1,  1, 1, 1};
    vm_tensor wt;
    vm_tensor_init(&wt, "ffn_gate_inp", VM_TYPE_F32, 2, (int64_t[]){3, 4}, W);
    L = layer(VM_GATE_SOFTMAX_SELECTED, 4, 2);
    L.n_embd = 3; L.w_gate = &wt;
    float u[2 * 3] = {1, 2, 3,  -1, 0, 0.5f}, lg[8], pr[8], gt[4];
    int32_t sl[4];
    vm_router *r = vm_router_deterministic();
    vm_router_out ro = { .logits = lg, .probs = pr, .sel = sl, .gates = gt };
    CHECK(r && r->ops->forward(r, &L, u, 2, &ro, NULL) == 0, "deterministic forward");
    CHECK(lg[3] == 6.0f && lg[4] == -1.0f && lg[7] == -0.5f, "router logits %g %g %g", lg[3], lg[4], lg[7]);
    CHECK(sl[0] == 3 && sl[1] == 2 && sl[2] == 2 && sl[3] == 1, "router sel %d %d %d %d", sl[0], sl[1], sl[2], sl[3]);
    CHECK_NEAR(gt[0], exp(6) / (exp(6) + exp(3)), 1e-6, "router gate");
    vm_router_out bad = { .logits = NULL, .probs = pr, .sel = sl, .gates = gt };
    CHECK(r->ops->forward(r, &L, u, 2, &bad, NULL) == -1, "missing buffer rejected");
    vm_router_free(r);
}

// The attention/SwiGLU exponential (kernels/exp_neg.h): within 2 ulp (2.4e-7 relative) of exp on
// [-86.5, 0], exactly 1 at 0, 0 below -86.5 and at -inf, NaN for NaN; and the logistic built on it.
static void test_exp_neg(void) {
    double worst = 0;
    for (int i = 0; i <= 2000000; i++) {
        const float x = -86.5f * (float)i / 2000000.0f;
        const double e = exp((double)x);
        worst = fmax(worst, fabs(vm_exp_neg(x) - e) / e);
    }
    printf("exp_neg: worst relative error %.3g on [-86.5, 0]\n", worst);
    CHECK(worst < 2.4e-7, "exp_neg relative error %g", worst);
    CHECK(vm_exp_neg(0.0f) == 1.0f && vm_exp_neg(-0.0f) == 1.0f, "exp_neg(0) != 1");
    CHECK(vm_exp_neg(-86.6f) == 0.0f && vm_exp_neg(-1e30f) == 0.0f && vm_exp_neg(-INFINITY) == 0.0f, "exp_neg flush");
    CHECK(isnan(vm_exp_neg(NAN)), "exp_neg(NaN)");
    double ws = 0;
    for (int i = -4000; i <= 4000; i++) {
        const float g = (float)i / 100.0f;
        const double t = 1.0 / (1.0 + exp(-(double)g));
        ws = fmax(ws, fabs(vm_sigmoid(g) - t) / t);
    }
    CHECK(ws < 5e-7, "sigmoid relative error %g", ws);
    CHECK(vm_sigmoid(0.0f) == 0.5f && vm_sigmoid(-200.0f) == 0.0f && vm_sigmoid(200.0f) == 1.0f, "sigmoid limits");
}

int main(void) {
    vm_rng_seed(&rng, 1234);
    test_matmul();
    test_rmsnorm();
    test_rope();
    test_softmax_swiglu();
    test_attention();
    test_exp_neg();
    test_threads();
    test_router();
    return TEST_SUMMARY();
}

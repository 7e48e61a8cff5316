// Router building blocks shared by every kind (logits, gate conventions of method.md §2, top-K)
// and the registry of kinds: each kind lives in router_<kind>.c.
#include "router/router.h"
#include "kernels/ops.h"

#include <math.h>
#include <stdlib.h>

void vm_router_free(vm_router *r) {
    if (!r) return;
    if (r->ops && r->ops->free) r->ops->free(r);
    else free(r);
}

// logits (T,N) = u (T,D) W_r^T
void vm_router_logits(const vm_router_layer *L, const float *u, int T, float *logits) {
    vm_matmul_forward(logits, u, L->w_gate, NULL, T);
}

// Renormalising conventions divide the gates by their sum over the selected set.
static int conv_renormalises(vm_gate_conv c) {
    return c == VM_GATE_SOFTMAX_SELECTED || c == VM_GATE_SOFTMAX_ALL_NORM || c == VM_GATE_SIGMOID_NORM;
}

// Top-k of score[0..n) among those with allowed[i] (allowed may be NULL), best first; ties go to the
// lower index. NaN never beats a number but still fills a slot if nothing else is left.
static void topk(const float *score, const unsigned char *allowed, int n, int k, int32_t *out) {
    unsigned char taken[n > 0 ? n : 1];
    for (int i = 0; i < n; i++) taken[i] = allowed ? !allowed[i] : 0;
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int i = 0; i < n; i++) {
            if (taken[i]) continue;
            if (best < 0 || score[i] > score[best] || (isnan(score[best]) && !isnan(score[i]))) best = i;
        }
        if (best < 0) {   // fewer allowed than k: fall back to any not yet chosen (ascending index)
            for (int i = 0; i < n && best < 0; i++) {
                int dup = 0;
                for (int m = 0; m < j; m++) dup |= out[m] == i;
                if (!dup) best = i;
            }
        }
        out[j] = best;
        if (best >= 0) taken[best] = 1;
    }
}

// Selection on probs (+ selection bias), with optional group-limited routing: experts form n_group
// equal groups scored by the sum of their two best selection scores; only the topk_group best
// groups compete (as llama.cpp's build_moe_ffn and DeepSeek-V3's reference).
static void select_experts(const vm_router_layer *L, const float *probs, int32_t *sel) {
    const int N = L->n_expert, K = L->n_expert_used;
    float s[N];
    for (int i = 0; i < N; i++) s[i] = probs[i] + (L->sel_bias ? L->sel_bias[i] : 0.0f);
    if (L->n_group > 1 && L->topk_group > 0 && L->topk_group < L->n_group && N % L->n_group == 0) {
        const int G = L->n_group, per = N / G;
        float gscore[G];
        for (int g = 0; g < G; g++) {
            int32_t two[2];
            const int m = per < 2 ? per : 2;
            topk(s + g * per, NULL, per, m, two);
            gscore[g] = 0.0f;
            for (int j = 0; j < m; j++) gscore[g] += s[g * per + two[j]];
        }
        int32_t gsel[G];
        topk(gscore, NULL, G, L->topk_group, gsel);
        unsigned char allowed[N];
        for (int i = 0; i < N; i++) allowed[i] = 0;
        for (int j = 0; j < L->topk_group; j++)
            for (int i = 0; i < per; i++) allowed[gsel[j] * per + i] = 1;
        topk(s, allowed, N, K, sel);
    } else {
        topk(s, NULL, N, K, sel);
    }
}

void vm_gate_from_probs(const vm_router_layer *L, const float *probs, int32_t *sel, float *gates) {
    const int K = L->n_expert_used;
    if (L->n_expert <= 0 || K <= 0 || K > L->n_expert) return;
    select_experts(L, probs, sel);
    double sum = 0.0;
    for (int j = 0; j < K; j++) sum += probs[sel[j]];
    const int norm = conv_renormalises(L->conv) && sum > 0.0;
    for (int j = 0; j < K; j++)
        gates[j] = (float)(norm ? probs[sel[j]] / sum : probs[sel[j]]) * L->weights_scale;
}

void vm_gate_from_logits(const vm_router_layer *L, const float *logits, float *probs,
                         int32_t *sel, float *gates) {
    const int N = L->n_expert, K = L->n_expert_used;
    if (N <= 0 || K <= 0 || K > N) return;
    if (L->conv == VM_GATE_SIGMOID || L->conv == VM_GATE_SIGMOID_NORM) {
        for (int i = 0; i < N; i++) probs[i] = 1.0f / (1.0f + expf(-logits[i]));
    } else {
        vm_softmax_forward(probs, logits, N);
    }
    vm_gate_from_probs(L, probs, sel, gates);
    if (L->conv == VM_GATE_SOFTMAX_SELECTED) {
        // straight from the selected logits: exact even where the full softmax underflows
        float mx = logits[sel[0]];
        for (int j = 1; j < K; j++) if (logits[sel[j]] > mx) mx = logits[sel[j]];
        double sum = 0.0;
        for (int j = 0; j < K; j++) sum += exp((double)logits[sel[j]] - mx);
        for (int j = 0; j < K; j++)
            gates[j] = (float)(exp((double)logits[sel[j]] - mx) / sum) * L->weights_scale;
    }
}

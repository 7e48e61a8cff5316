// Router building blocks shared by every kind (logits, gate conventions of method.md §2, top-K)
// and the registry of kinds: each kind lives in router_<kind>.c.
#include "router/router.h"
#include "router/router_impl.h"
#include "kernels/ops.h"
#include "quant/quant.h"
#include "util/err.h"

#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

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
static int groups_on(const vm_router_layer *L) {
    return L->n_group > 1 && L->topk_group > 0 && L->topk_group < L->n_group && L->n_expert % L->n_group == 0;
}

static void select_experts(const vm_router_layer *L, const float *probs, int32_t *sel) {
    const int N = L->n_expert, K = L->n_expert_used;
    float s[N];
    for (int i = 0; i < N; i++) s[i] = probs[i] + (L->sel_bias ? L->sel_bias[i] : 0.0f);
    if (groups_on(L)) {
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

// ---------------------------------------------------------------------------------------------
// Shared pieces of the router family.

static int conv_sigmoid(vm_gate_conv c) { return c == VM_GATE_SIGMOID || c == VM_GATE_SIGMOID_NORM; }

void vm_gate_probs(const vm_router_layer *L, const float *logits, float *probs) {
    const int N = L->n_expert;
    if (conv_sigmoid(L->conv)) for (int i = 0; i < N; i++) probs[i] = vm_rt_sigmoid(logits[i]);
    else vm_softmax_forward(probs, logits, N);
}

void vm_gate_select(const vm_router_layer *L, const float *logits, int32_t *sel) {
    const int N = L->n_expert, K = L->n_expert_used;
    if (N <= 0 || K <= 0 || K > N) return;
    if (!conv_sigmoid(L->conv) && !L->sel_bias && !groups_on(L)) {
        // softmax is monotone: rank the logits themselves, which never underflow into ties
        topk(logits, NULL, N, K, sel);
        return;
    }
    float p[N];
    vm_gate_probs(L, logits, p);
    select_experts(L, p, sel);
}

// Per-convention gate maths in double, shared by vm_gate_at and vm_gate_backward.
// a[j] = the convention's un-scaled gate of sel[j]; for the softmax-all convention also the full
// softmax normaliser; for sigmoids p[j] = sigmoid(l[sel[j]]).
void vm_gate_at(const vm_router_layer *L, const float *logits, const int32_t *sel, float *gates) {
    const int N = L->n_expert, K = L->n_expert_used;
    if (N <= 0 || K <= 0 || K > N) return;
    const double scale = L->weights_scale;
    switch (L->conv) {
    case VM_GATE_SOFTMAX_SELECTED:
    case VM_GATE_SOFTMAX_ALL_NORM: {   // p_i / sum_S p_j of a full softmax == softmax over S
        double mx = logits[sel[0]], sum = 0.0;
        for (int j = 1; j < K; j++) if (logits[sel[j]] > mx) mx = logits[sel[j]];
        for (int j = 0; j < K; j++) sum += exp(logits[sel[j]] - mx);
        for (int j = 0; j < K; j++) gates[j] = (float)(exp(logits[sel[j]] - mx) / sum * scale);
        break;
    }
    case VM_GATE_SOFTMAX_ALL: {
        double mx = logits[0], sum = 0.0;
        for (int i = 1; i < N; i++) if (logits[i] > mx) mx = logits[i];
        for (int i = 0; i < N; i++) sum += exp(logits[i] - mx);
        for (int j = 0; j < K; j++) gates[j] = (float)(exp(logits[sel[j]] - mx) / sum * scale);
        break;
    }
    case VM_GATE_SIGMOID_NORM: {
        double sum = 0.0;
        for (int j = 0; j < K; j++) sum += 1.0 / (1.0 + exp(-(double)logits[sel[j]]));
        for (int j = 0; j < K; j++) {
            const double p = 1.0 / (1.0 + exp(-(double)logits[sel[j]]));
            gates[j] = (float)((sum > 0.0 ? p / sum : p) * scale);
        }
        break;
    }
    case VM_GATE_SIGMOID:
        for (int j = 0; j < K; j++) gates[j] = (float)(scale / (1.0 + exp(-(double)logits[sel[j]])));
        break;
    }
}

void vm_gate_backward(const vm_router_layer *L, const float *logits, const int32_t *sel,
                      const float *dgates, float *dlogits) {
    const int N = L->n_expert, K = L->n_expert_used;
    if (N <= 0 || K <= 0 || K > N) return;
    const double scale = L->weights_scale;
    switch (L->conv) {
    case VM_GATE_SOFTMAX_SELECTED:
    case VM_GATE_SOFTMAX_ALL_NORM: {
        // a = softmax over S: dl_{s_j} = scale * a_j (dg_j - sum_k a_k dg_k)
        double a[K], mx = logits[sel[0]], sum = 0.0, dot = 0.0;
        for (int j = 1; j < K; j++) if (logits[sel[j]] > mx) mx = logits[sel[j]];
        for (int j = 0; j < K; j++) { a[j] = exp(logits[sel[j]] - mx); sum += a[j]; }
        for (int j = 0; j < K; j++) { a[j] /= sum; dot += a[j] * dgates[j]; }
        for (int j = 0; j < K; j++) dlogits[sel[j]] += (float)(scale * a[j] * (dgates[j] - dot));
        break;
    }
    case VM_GATE_SOFTMAX_ALL: {
        // p = softmax over all N, dL/dp_{s_j} = scale dg_j: dl_i = p_i (dp_i - sum_k p_k dp_k)
        double mx = logits[0], sum = 0.0, dot = 0.0;
        for (int i = 1; i < N; i++) if (logits[i] > mx) mx = logits[i];
        for (int i = 0; i < N; i++) sum += exp(logits[i] - mx);
        double dp[N];
        for (int i = 0; i < N; i++) dp[i] = 0.0;
        for (int j = 0; j < K; j++) dp[sel[j]] += scale * dgates[j];
        for (int j = 0; j < K; j++) dot += exp(logits[sel[j]] - mx) / sum * scale * dgates[j];
        for (int i = 0; i < N; i++) dlogits[i] += (float)(exp(logits[i] - mx) / sum * (dp[i] - dot));
        break;
    }
    case VM_GATE_SIGMOID_NORM: {
        // w_j = scale p_j / P, P = sum_S p: dp_j = scale (dg_j - sum_k dg_k p_k / P) / P
        double p[K], P = 0.0, dot = 0.0;
        for (int j = 0; j < K; j++) { p[j] = 1.0 / (1.0 + exp(-(double)logits[sel[j]])); P += p[j]; }
        if (!(P > 0.0)) break;
        for (int j = 0; j < K; j++) dot += dgates[j] * p[j];
        for (int j = 0; j < K; j++) {
            const double dp = scale * (dgates[j] - dot / P) / P;
            dlogits[sel[j]] += (float)(dp * p[j] * (1.0 - p[j]));
        }
        break;
    }
    case VM_GATE_SIGMOID:
        for (int j = 0; j < K; j++) {
            const double p = 1.0 / (1.0 + exp(-(double)logits[sel[j]]));
            dlogits[sel[j]] += (float)(scale * dgates[j] * p * (1.0 - p));
        }
        break;
    }
}

int vm_router_logits_backward(const vm_router_layer *L, const float *dlogits, int T, float *du) {
    const vm_tensor *w = L->w_gate;
    const int64_t D = w->ne[0], N = w->ne[1];
    float *row = w->type == VM_TYPE_F32 ? NULL : vm_malloc((size_t)D * sizeof(float));
    if (w->type != VM_TYPE_F32 && !row) return -1;
    for (int64_t i = 0; i < N; i++) {
        const void *src = (const char *)w->data + (size_t)i * w->nb[1];
        const float *wr = (const float *)src;
        if (row) { vm_dequant_row(w->type, src, row, D); wr = row; }
        for (int t = 0; t < T; t++) {
            const float g = dlogits[(size_t)t * N + i];
            if (g == 0.0f) continue;
            float *d = du + (size_t)t * D;
            for (int64_t c = 0; c < D; c++) d[c] += g * wr[c];
        }
    }
    free(row);
    return 0;
}

float vm_gate_entropy(const float *p, int n) {
    double sum = 0.0, h = 0.0;
    for (int i = 0; i < n; i++) if (p[i] > 0.0f) sum += p[i];
    if (!(sum > 0.0)) return 0.0f;
    for (int i = 0; i < n; i++)
        if (p[i] > 0.0f) { const double q = p[i] / sum; h -= q * log(q); }
    return (float)h;
}

// ---- internal helpers (router_impl.h) ----

vm_router *vm_rt_alloc(const vm_router_ops *ops, size_t state_size, int n_params) {
    vm_router *r = vm_calloc(1, sizeof *r);
    if (!r) return NULL;
    r->ops = ops;
    if (state_size && !(r->state = vm_calloc(1, state_size))) { free(r); return NULL; }
    if (n_params > 0) {
        if (!(r->params = vm_calloc((size_t)n_params, sizeof *r->params))) { free(r->state); free(r); return NULL; }
        r->n_params = n_params;
    }
    return r;
}

int vm_rt_param(vm_param *p, const char *name, int64_t ne0, int64_t ne1) {
    snprintf(p->name, sizeof p->name, "%s", name);
    p->n_dims = ne1 > 1 ? 2 : 1;
    p->ne[0] = ne0; p->ne[1] = ne1;
    size_t n;
    if (vm_size_mul((size_t)ne0, (size_t)ne1, &n)) return -1;
    p->w = vm_calloc(n ? n : 1, sizeof(float));
    p->g = vm_calloc(n ? n : 1, sizeof(float));
    return p->w && p->g ? 0 : -1;
}

void vm_rt_free(vm_router *r) {
    if (!r) return;
    for (int i = 0; i < r->n_params; i++) { free(r->params[i].w); free(r->params[i].g); }
    free(r->params);
    free(r->state);
    free(r);
}

void *vm_rt_grow(void *old, size_t *cap, size_t n) {
    if (old && n <= *cap) return old;
    free(old);
    *cap = 0;
    void *p = vm_malloc(n ? n : 1);
    if (p) *cap = n;
    return p;
}

int vm_rt_check_out(const vm_router_layer *L, const vm_router_out *out, const char *kind) {
    if (!out || !out->logits || !out->probs || !out->sel || !out->gates)
        return vm_err("router %s: missing output buffer (layer %d)", kind, L->layer);
    return 0;
}

void vm_rt_matmul(float *out, const float *inp, const float *W, int B, int C, int M) {
    vm_tensor t;
    const int64_t ne[2] = { C, M };
    vm_tensor_init(&t, "router.head", VM_TYPE_F32, 2, ne, W);
    vm_matmul_forward(out, inp, &t, NULL, B);
}

void vm_rt_matmul_backward(float *dW, float *dinp, const float *W, const float *inp, const float *dout,
                           int B, int C, int M) {
    vm_matmul_backward_weight(dW, NULL, dout, inp, B, C, M);
    if (dinp) {
        vm_tensor t;
        const int64_t ne[2] = { C, M };
        vm_tensor_init(&t, "router.head", VM_TYPE_F32, 2, ne, W);
        vm_matmul_backward(dinp, dout, &t, B);
    }
}

int vm_rt_linear_backward(const vm_router_layer *L, vm_param *P, const float *u, int T, const float *dgates,
                          float *du) {
    const int D = L->n_embd, N = L->n_expert, K = L->n_expert_used;
    float *l = vm_malloc((size_t)T * N * sizeof(float));
    if (!l) return -1;
    vm_rt_matmul(l, u, P->w, T, D, N);
    float p[N], g[K], dl[N];
    int32_t sel[K];
    for (int t = 0; t < T; t++) {
        const float *lt = l + (size_t)t * N;
        vm_gate_from_logits(L, lt, p, sel, g);
        for (int i = 0; i < N; i++) dl[i] = 0.0f;
        vm_gate_backward(L, lt, sel, dgates + (size_t)t * K, dl);
        vm_rt_matvec_backward(P->g, du + (size_t)t * D, P->w, u + (size_t)t * D, dl, N, D);
    }
    free(l);
    return 0;
}

float *vm_rt_w_gate_f32(const vm_router_layer *L) {
    const vm_tensor *w = L->w_gate;
    const int64_t D = w->ne[0], N = w->ne[1];
    float *out = vm_malloc((size_t)(N * D) * sizeof(float));
    if (!out) return NULL;
    for (int64_t i = 0; i < N; i++)
        vm_dequant_row(w->type, (const char *)w->data + (size_t)i * w->nb[1], out + (size_t)i * D, D);
    return out;
}

// ---- registry ----

typedef struct kind_entry {
    const vm_router_ops *ops;   // name, flags, read-outs, FLOPs
    vm_router *(*create)(const vm_router_layer *L, const vm_router_opts *o);
    float beta;   // default regulariser weight (method.md §4)
} kind_entry;

// A new kind: its file router_<kind>.c (ops + create) and one line here.
static const kind_entry kinds[] = {
    { &vm_router_ops_deterministic, vm_router_create_deterministic, 0.0f },
    { &vm_router_ops_map,           vm_router_create_map,           0.0f },
    { &vm_router_ops_temp_sample,   vm_router_create_temp_sample,   0.0f },
    { &vm_router_ops_mcdropout,     vm_router_create_mcdropout,     0.0f },
    { &vm_router_ops_ensemble,      vm_router_create_ensemble,      0.0f },
    { &vm_router_ops_vglr_mf,       vm_router_create_vglr_mf,       1.0f },
    { &vm_router_ops_vglr_fc,       vm_router_create_vglr_fc,       1.0f },
    { &vm_router_ops_vtsr,          vm_router_create_vtsr,          0.01f },
    { &vm_router_ops_swag,          vm_router_create_swag,          0.0f },
};
#define N_KINDS ((int)(sizeof kinds / sizeof kinds[0]))

// Names are taken from the ops, so the list and the kinds can never disagree.
static const char *const *kind_names_init(void) {
    static const char *names[N_KINDS + 1];
    for (int i = 0; i < N_KINDS; i++) names[i] = kinds[i].ops->name;
    names[N_KINDS] = NULL;
    return names;
}

const char *const *vm_router_kind_names(void) {
    static const char *const *names;
    if (!names) names = kind_names_init();   // idempotent: concurrent first calls write the same values
    return names;
}

const vm_router_ops *vm_router_kind_ops(const char *kind) {
    if (!kind) return NULL;
    for (int i = 0; i < N_KINDS; i++) if (!strcmp(kinds[i].ops->name, kind)) return kinds[i].ops;
    return NULL;
}

const char *vm_router_kind_list(unsigned need, char *buf, size_t n) {
    size_t used = 0;
    if (n) buf[0] = 0;
    for (int i = 0; i < N_KINDS && n; i++) {
        if ((kinds[i].ops->flags & need) != need) continue;
        const int w = snprintf(buf + used, n - used, "%s%s", used ? ", " : "", kinds[i].ops->name);
        if (w < 0 || (size_t)w >= n - used) break;
        used += (size_t)w;
    }
    return buf;
}

float vm_router_kind_beta(const char *kind) {
    for (int i = 0; kind && i < N_KINDS; i++) if (!strcmp(kinds[i].ops->name, kind)) return kinds[i].beta;
    return 0.0f;
}

double vm_router_flops(const vm_router *r, const vm_router_layer *L) {
    if (r && r->ops && r->ops->flops) return r->ops->flops(r, L);
    return 2.0 * L->n_embd * L->n_expert;   // W_r u
}

void vm_router_opts_default(vm_router_opts *o) {
    *o = (vm_router_opts){ .samples = 35, .temp = 0.3f, .dropout = 0.05f, .members = 5,
                           .member_noise = 0.1f, .hidden = 0, .beta = -1.0f, .prior_sd = 0.0f, .seed = 0,
                           .swag_rank = 20, .swag_scale = 1.0f };
}

vm_router *vm_router_create(const char *kind, const vm_router_layer *L, const vm_router_opts *o) {
    vm_router_opts def;
    if (!o) { vm_router_opts_default(&def); o = &def; }
    if (!kind) { vm_err("router: no kind given"); return NULL; }
    const kind_entry *k = NULL;
    for (int i = 0; i < N_KINDS; i++) if (!strcmp(kinds[i].ops->name, kind)) k = &kinds[i];
    if (!k) { vm_err("router: unknown kind '%s' (see vmoer fit --help for the list)", kind); return NULL; }
    if (!L) { vm_err("router %s: no layer description", kind); return NULL; }
    const int D = L->n_embd, N = L->n_expert, K = L->n_expert_used;
    if (D <= 0 || N <= 0 || K <= 0 || K > N) {
        vm_err("router %s: bad shape D=%d N=%d K=%d (layer %d)", kind, D, N, K, L->layer);
        return NULL;
    }
    const vm_tensor *w = L->w_gate;
    const vm_type_traits *tt = w ? vm_type_get(w->type) : NULL;
    if (!w || !w->data || w->ne[0] != D || w->ne[1] != N || !tt || !tt->compute || D % tt->blck_size) {
        vm_err("router %s: W_r missing or not a [%d, %d] tensor of a supported type (layer %d)", kind, D, N, L->layer);
        return NULL;
    }
    if (o->samples < 1 || o->samples > 100000 || !(o->temp > 0.0f) || !isfinite(o->temp) ||
        !(o->dropout >= 0.0f && o->dropout < 1.0f) || o->members < 1 || o->members > 1000 ||
        !(o->member_noise >= 0.0f) || !isfinite(o->member_noise) || o->hidden < 0 ||
        !isfinite(o->beta) || !isfinite(o->prior_sd) || o->prior_sd > 1e6f ||
        o->swag_rank < 2 || o->swag_rank > 256 || !(o->swag_scale >= 0.0f && o->swag_scale <= 1e6f)) {
        vm_err("router %s: bad options (samples %d, temp %g, dropout %g, members %d, member noise %g, "
               "hidden %d, beta %g, prior sd %g, swag rank %d, swag scale %g)", kind, o->samples, (double)o->temp,
               (double)o->dropout, o->members, (double)o->member_noise, o->hidden, (double)o->beta,
               (double)o->prior_sd, o->swag_rank, (double)o->swag_scale);
        return NULL;
    }
    vm_router *r = k->create(L, o);
    if (!r) { vm_err_prefix("router %s (layer %d)", kind, L->layer); return NULL; }
    r->beta = o->beta >= 0.0f ? o->beta : k->beta;
    if (k->beta == 0.0f) r->beta = 0.0f;   // nothing to weigh
    return r;
}

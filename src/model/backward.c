// Training forward and backward through layers [l0, L) of the frozen network (model/train.h).
// The forward is the inference block (vm_block_forward) pointed at per-layer slices of one
// allocation, so nothing is recomputed and nothing is written twice; the backward walks the
// blocks in reverse with the backward kernels of kernels/ops.h.
#include "model/train.h"
#include "model/model_internal.h"
#include "model/attn_mla.h"
#include "model/lora.h"
#include "kernels/ops.h"
#include "util/err.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// What one block keeps for its backward (row counts for T = T_max; rows = T*K slots for MoE).
typedef struct vm_tlayer {
    float *x_in, *x_mid;        // (T,D) residual entering the block, and after attention
    float *xb_att, *xb_ffn;     // (T,D) the two normalised inputs (xb_ffn = router input u)
    float *q, *k, *v, *att;     // (T,qd), (T,kvd), (T,kvd), (T,qd); q and k after rope
    float *hb, *hb2, *ye;       // (rows,F), (rows,F), (rows,D) (ye: MoE only)
    float *r_logits, *r_probs, *r_gates;   // (T,N), (T,N), (T,K)
    float *r_unc;                          // (T,VM_UNC_COUNT) router read-outs
    int32_t *r_sel, *slot_tk, *e_off;      // (T,K), (rows), (N+1)
    float *q_pre, *k_pre;       // (T,qd), (T,kvd) Q/K projections before their RMSNorm (hp.qk_norm)
    float *sh_hb, *sh_hb2;      // (T,Fs) shared expert gate pre-activation and up projection
    float *sh_y, *sh_g;         // (T,D) its output before the gate, (T) the gate
} vm_tlayer;

struct vm_tctx {
    const vm_model *m;
    int l0, T_max;
    int T, n_out, have_fwd;     // the last forward
    void *arena;
    vm_tlayer *ly;              // n_layer - l0 of them
    float *x_final;             // (T,D) output of the last block
    float *xf, *xfn;            // (T,D) final rows at out_pos, and after output_norm
    int32_t *pos, *out_pos;     // (T), (T) row positions, rows the head ran at
    int32_t *seg_off, *seg_par; // (T+1), (T) the last forward's tree (one root segment for a sequence)
    vm_tree tree;               // view of pos / seg_off / seg_par
    float *tree_kv;             // attention gather scratch (tree.c), forward and backward
    // forward scratch
    float *ao, *xe, *hs;        // (T,D), (T,D), (rows,F)
    // backward scratch
    float *dx, *dxb, *du;       // (T,D)
    float *dq, *datt;           // (T,qd)
    float *dk, *dv;             // (T,kvd)
    float *dhs, *dhb, *dhb2;    // (T,F): one expert's rows at a time
    float *dye, *dxe;           // (T,D)
    float *dgates;              // (T,K)
    float *dxs;                 // (T,D) dL/d(branch output) = residual_scale * dx (µP)
    float *dq2, *dk2;           // (T,qd), (T,kvd) gradients before the Q/K norm
    float *mla, *mla_bwd;       // deepseek2 attention scratch: forward, backward (attn_mla.h)
    float *dlogits;             // (T,N) router logit gradients (weight-gradient mode)
    float *lbp;                 // (N) one token's softmax for the load-balancing loss
    const vm_model_grads *g;    // weight gradients (vm_tctx_set_grads), or NULL
};

// Two-pass carving of one allocation (llm.c style): the first pass (base NULL) sums the sizes.
typedef struct { char *base; size_t off; int overflow; } carver;

static void *carve(carver *cv, size_t n, size_t elem) {
    size_t bytes;
    if (vm_size_mul(n ? n : 1, elem, &bytes) || vm_size_add(bytes, 63, &bytes)) { cv->overflow = 1; return NULL; }
    bytes &= ~(size_t)63;
    void *p = cv->base ? cv->base + cv->off : NULL;
    if (vm_size_add(cv->off, bytes, &cv->off)) cv->overflow = 1;
    return p;
}

static void layout(vm_tctx *c, carver *cv) {
    const vm_hparams *hp = &c->m->hp;
    const size_t T = (size_t)c->T_max, D = (size_t)hp->n_embd, Fs = (size_t)hp->n_ff_shexp;
    size_t F = (size_t)(hp->n_ff > hp->n_ff_exp ? hp->n_ff : hp->n_ff_exp);
    if (Fs > F) F = Fs;   // the shared expert uses the same scratch
    const size_t qd = (size_t)hp->n_head * hp->head_dim, kvd = (size_t)hp->n_head_kv * hp->head_dim;
    const size_t N = (size_t)(hp->n_expert > 0 ? hp->n_expert : 1);
    const size_t K = (size_t)(hp->n_expert_used > 0 ? hp->n_expert_used : 1);
    const size_t f4 = sizeof(float), i4 = sizeof(int32_t);
    size_t rows_max = T;
    for (int il = c->l0; il < hp->n_layer; il++) {
        vm_tlayer *l = &c->ly[il - c->l0];
        const int moe = c->m->layers[il].is_moe;
        const size_t rows = moe ? T * K : T;
        if (rows > rows_max) rows_max = rows;
        l->x_in = carve(cv, T * D, f4);     l->x_mid = carve(cv, T * D, f4);
        l->xb_att = carve(cv, T * D, f4);   l->xb_ffn = carve(cv, T * D, f4);
        l->q = carve(cv, T * qd, f4);       l->att = carve(cv, T * qd, f4);
        l->k = carve(cv, T * kvd, f4);      l->v = carve(cv, T * kvd, f4);
        l->hb = carve(cv, rows * F, f4);    l->hb2 = carve(cv, rows * F, f4);
        if (moe) {
            l->ye = carve(cv, rows * D, f4);
            l->r_logits = carve(cv, T * N, f4);  l->r_probs = carve(cv, T * N, f4);
            l->r_gates = carve(cv, T * K, f4);   l->r_sel = carve(cv, T * K, i4);
            l->r_unc = carve(cv, T * VM_UNC_COUNT, f4);
            l->slot_tk = carve(cv, rows, i4);    l->e_off = carve(cv, N + 1, i4);
        }
        if (hp->qk_norm) { l->q_pre = carve(cv, T * qd, f4); l->k_pre = carve(cv, T * kvd, f4); }
        if (c->m->layers[il].has_shexp) {
            l->sh_hb = carve(cv, T * Fs, f4);  l->sh_hb2 = carve(cv, T * Fs, f4);
            l->sh_y = carve(cv, T * D, f4);    l->sh_g = carve(cv, T, f4);
        }
    }
    c->x_final = carve(cv, T * D, f4);
    c->xf = carve(cv, T * D, f4);   c->xfn = carve(cv, T * D, f4);
    c->pos = carve(cv, T, i4);      c->out_pos = carve(cv, T, i4);
    c->seg_off = carve(cv, T + 1, i4); c->seg_par = carve(cv, T, i4);
    c->tree_kv = carve(cv, vm_tree_attn_scratch((int)T, kvd), f4);
    c->ao = carve(cv, T * D, f4);   c->xe = carve(cv, T * D, f4);
    c->hs = carve(cv, rows_max * F, f4);
    c->dx = carve(cv, T * D, f4);   c->dxb = carve(cv, T * D, f4);   c->du = carve(cv, T * D, f4);
    c->dq = carve(cv, T * qd, f4);  c->datt = carve(cv, T * qd, f4);
    c->dk = carve(cv, T * kvd, f4); c->dv = carve(cv, T * kvd, f4);
    c->dhs = carve(cv, T * F, f4);  c->dhb = carve(cv, T * F, f4);   c->dhb2 = carve(cv, T * F, f4);
    c->dye = carve(cv, T * D, f4);  c->dxe = carve(cv, T * D, f4);
    c->dgates = carve(cv, T * K, f4);
    c->dxs = carve(cv, T * D, f4);
    c->dlogits = carve(cv, T * N, f4);
    c->lbp = carve(cv, N, f4);
    if (hp->qk_norm) { c->dq2 = carve(cv, T * qd, f4); c->dk2 = carve(cv, T * kvd, f4); }
    if (c->m->mla) {
        c->mla = carve(cv, T * vm_mla_scratch(c->m), f4);
        c->mla_bwd = carve(cv, T * vm_mla_backward_scratch(c->m), f4);
    }
}

vm_tctx *vm_tctx_init(const vm_model *m, int l0, int T_max) {
    if (!m) { vm_err("tctx: no model"); return NULL; }
    if (l0 < 0 || l0 >= m->hp.n_layer) { vm_err("tctx: lowest trained layer %d out of range [0, %d)", l0, m->hp.n_layer); return NULL; }
    if (T_max <= 0) { vm_err("tctx: T_max %d must be positive", T_max); return NULL; }
    vm_tctx *c = vm_calloc(1, sizeof *c);
    if (!c) return NULL;
    c->m = m; c->l0 = l0; c->T_max = T_max;
    c->ly = vm_calloc((size_t)(m->hp.n_layer - l0), sizeof *c->ly);
    if (!c->ly) goto fail;
    carver cv = { 0 };
    layout(c, &cv);
    if (cv.overflow) { vm_err("tctx: activation size overflows"); goto fail; }
    c->arena = vm_malloc(cv.off);
    if (!c->arena) goto fail;
    cv = (carver){ .base = c->arena };
    layout(c, &cv);
    c->tree = (vm_tree){ .pos = c->pos, .seg_off = c->seg_off, .parent = c->seg_par };
    return c;
fail:
    vm_err_prefix("tctx (l0 %d, T_max %d)", l0, T_max);
    vm_tctx_free(c);
    return NULL;
}

void vm_tctx_free(vm_tctx *c) {
    if (!c) return;
    free(c->arena);
    free(c->ly);
    free(c);
}

int vm_tctx_l0(const vm_tctx *c) { return c ? c->l0 : -1; }

static int have_moe_layer(const vm_tctx *c, int il) {
    return c && c->have_fwd && il >= c->l0 && il < c->m->hp.n_layer && c->m->layers[il].is_moe;
}

const float *vm_tctx_router_unc(const vm_tctx *c, int il) { return have_moe_layer(c, il) ? c->ly[il - c->l0].r_unc : NULL; }
const float *vm_tctx_router_input(const vm_tctx *c, int il) { return have_moe_layer(c, il) ? c->ly[il - c->l0].xb_ffn : NULL; }

// ---------------------------------------------------------------- forward

// Layers [l0, L) over the c->tree.n_rows rows of c->tree (set by the caller), then the head at
// out_rows (checked by the caller).
static int forward_rows(vm_tctx *c, const float *h, const int32_t *out_rows, int n_out, float *logits,
                        vm_rng *rng) {
    const vm_model *m = c->m;
    const vm_hparams *hp = &m->hp;
    const int D = hp->n_embd, L = hp->n_layer, T = c->tree.n_rows;
    memcpy(c->ly[0].x_in, h, (size_t)T * D * sizeof(float));
    for (int il = c->l0; il < L; il++) {
        vm_tlayer *l = &c->ly[il - c->l0];
        float *x_out = il + 1 < L ? c->ly[il + 1 - c->l0].x_in : c->x_final;
        const vm_block_io io = { .x_in = l->x_in, .x_mid = l->x_mid, .x_out = x_out,
                                 .xb_att = l->xb_att, .q = l->q, .kc = l->k, .vc = l->v,
                                 .att = l->att, .ao = c->ao, .xb_ffn = l->xb_ffn, .hb = l->hb,
                                 .hb2 = l->hb2, .hs = c->hs, .r_logits = l->r_logits,
                                 .r_probs = l->r_probs, .r_gates = l->r_gates, .r_sel = l->r_sel,
                                 .r_unc = l->r_unc,
                                 .xe = c->xe, .ye = l->ye, .slot_tk = l->slot_tk, .e_off = l->e_off,
                                 .keep = 1, .pos = c->pos, .n_past = 0, .tree = &c->tree, .tree_kv = c->tree_kv,
                                 .q_pre = l->q_pre, .k_pre = l->k_pre, .sh_hb = l->sh_hb,
                                 .sh_hb2 = l->sh_hb2, .sh_hs = c->hs, .sh_y = l->sh_y, .sh_g = l->sh_g,
                                 .mla = c->mla };
        if (vm_block_forward(m, il, &io, T, rng)) return vm_err_prefix("tctx forward");
    }
    // the head only at the wanted rows: rmsnorm and matmul are per row, so these equal the
    // inference logits of the same positions
    for (int i = 0; i < n_out; i++)
        memcpy(c->xf + (size_t)i * D, c->x_final + (size_t)out_rows[i] * D, (size_t)D * sizeof(float));
    vm_rmsnorm_forward(c->xfn, c->xf, m->output_norm, n_out, D, hp->norm_eps);
    vm_matmul_forward(logits, c->xfn, &m->output, NULL, n_out);
    vm_model_scale_logits(m, logits, n_out);
    memcpy(c->out_pos, out_rows, (size_t)n_out * sizeof(int32_t));
    c->T = T; c->n_out = n_out; c->have_fwd = 1;
    return 0;
}

static int check_out(const vm_tctx *c, const int32_t *out_rows, int n_out, int T) {
    if (n_out <= 0 || n_out > c->T_max) return vm_err("tctx: %d output positions, expected 1..%d", n_out, c->T_max);
    for (int i = 0; i < n_out; i++)
        if (out_rows[i] < 0 || out_rows[i] >= T)
            return vm_err("tctx: output position %d out of range [0, %d)", out_rows[i], T);
    return 0;
}

int vm_tctx_forward(vm_tctx *c, const float *h, int T, const int32_t *out_pos, int n_out,
                    float *logits, vm_rng *rng) {
    if (!c || !h || !logits || (n_out > 0 && !out_pos)) return vm_err("tctx: forward without context, input or output");
    if (T <= 0 || T > c->T_max) return vm_err("tctx: %d tokens, expected 1..%d", T, c->T_max);
    if (check_out(c, out_pos, n_out, T)) return -1;
    c->have_fwd = 0;
    // one sequence = a tree of one root segment (its attention is the plain causal kernel call)
    for (int t = 0; t < T; t++) c->pos[t] = t;
    c->seg_off[0] = 0; c->seg_off[1] = T; c->seg_par[0] = -1;
    c->tree.n_rows = T; c->tree.n_seg = 1;
    return forward_rows(c, h, out_pos, n_out, logits, rng);
}

int vm_tctx_forward_tree(vm_tctx *c, const float *h, const vm_tree *t, const int32_t *out_rows,
                         int n_out, float *logits, vm_rng *rng) {
    if (!c || !h || !t || !logits || (n_out > 0 && !out_rows)) return vm_err("tctx: tree forward without context, input, tree or output");
    if (vm_tree_check(t, c->T_max)) return vm_err_prefix("tctx");
    if (check_out(c, out_rows, n_out, t->n_rows)) return -1;
    c->have_fwd = 0;
    memcpy(c->pos, t->pos, (size_t)t->n_rows * sizeof(int32_t));
    memcpy(c->seg_off, t->seg_off, (size_t)(t->n_seg + 1) * sizeof(int32_t));
    memcpy(c->seg_par, t->parent, (size_t)t->n_seg * sizeof(int32_t));
    c->tree.n_rows = t->n_rows; c->tree.n_seg = t->n_seg;
    return forward_rows(c, h, out_rows, n_out, logits, rng);
}

// ---------------------------------------------------------------- backward

// The shared expert's part of the FFN: given dout (T,D) = dL/d(ffn output), adds dL/du to c->du.
static void shexp_backward(vm_tctx *c, int il, const float *dout) {
    const vm_layer *ly = &c->m->layers[il];
    const vm_tlayer *l = &c->ly[il - c->l0];
    const int T = c->T, D = c->m->hp.n_embd, Fs = c->m->hp.n_ff_shexp;
    // out_t = g_t y_t: dy_t = g_t dout_t; dg_t = <dout_t, y_t>; g = sigmoid(w . u): dz = dg g (1 - g)
    for (int t = 0; t < T; t++) {
        const float *go = dout + (size_t)t * D, *y = l->sh_y + (size_t)t * D;
        float *dy = c->dye + (size_t)t * D;
        const float g = l->sh_g[t];
        double dg = 0.0;
        for (int d = 0; d < D; d++) { dg += (double)go[d] * y[d]; dy[d] = g * go[d]; }
        if (ly->ffn_gate_inp_shexp) {
            const float dz = (float)(dg * g * (1.0 - g));
            float *du = c->du + (size_t)t * D;
            for (int d = 0; d < D; d++) du[d] += dz * ly->ffn_gate_inp_shexp[d];
        }
    }
    memset(c->dhs, 0, (size_t)T * Fs * sizeof(float));
    vm_matmul_backward(c->dhs, c->dye, &ly->ffn_down_shexp, T);
    memset(c->dhb, 0, (size_t)T * Fs * sizeof(float));
    memset(c->dhb2, 0, (size_t)T * Fs * sizeof(float));
    vm_swiglu_backward(c->dhb, c->dhb2, c->dhs, l->sh_hb, l->sh_hb2, T * Fs);
    vm_matmul_backward(c->du, c->dhb, &ly->ffn_gate_shexp, T);
    vm_matmul_backward(c->du, c->dhb2, &ly->ffn_up_shexp, T);
}

// One token's softmax over all N logits into p (the load-balancing loss's P, whatever the gate
// convention of the layer; vm_tctx_set_grads admits softmax conventions only).
static void softmax_row(const float *l, int N, float *p) {
    float mx = l[0];
    for (int e = 1; e < N; e++) if (l[e] > mx) mx = l[e];
    double s = 0.0;
    for (int e = 0; e < N; e++) { p[e] = expf(l[e] - mx); s += p[e]; }
    for (int e = 0; e < N; e++) p[e] = (float)(p[e] / s);
}

// W_r trained directly (deterministic router, logits = W_r u): dlogits from the gates and the
// load-balancing loss, then dW_r (N,D) += dlogits^T u and du += dlogits W_r.
static void wr_backward(vm_tctx *c, int il, float *dwr) {
    const vm_router_layer *L = &c->m->layers[il].rl;
    const vm_tlayer *l = &c->ly[il - c->l0];
    const int T = c->T, D = c->m->hp.n_embd, N = L->n_expert, K = L->n_expert_used;
    const double lbw = c->g->lb_weight;
    memset(c->dlogits, 0, (size_t)T * N * sizeof(float));
    for (int t = 0; t < T; t++) {
        const float *lt = l->r_logits + (size_t)t * N;
        float *dl = c->dlogits + (size_t)t * N;
        vm_gate_backward(L, lt, l->r_sel + (size_t)t * K, c->dgates + (size_t)t * K, dl);
        if (lbw == 0.0) continue;
        // lb = lbw N sum_e f_e (1/T) sum_t p_te: dlb/dp_te = lbw N f_e / T, then the softmax Jacobian
        softmax_row(lt, N, c->lbp);
        double s = 0.0;
        for (int e = 0; e < N; e++) s += c->lbp[e] * ((l->e_off[e + 1] - l->e_off[e]) / (double)(T * K));
        for (int e = 0; e < N; e++) {
            const double fe = (l->e_off[e + 1] - l->e_off[e]) / (double)(T * K);
            dl[e] += (float)(lbw * N / T * c->lbp[e] * (fe - s));
        }
    }
    vm_matmul_backward_weight(dwr, NULL, c->dlogits, l->xb_ffn, T, D, N);
    vm_router_logits_backward(L, c->dlogits, T, c->du);
}

// dout (T,D) = dL/d(FFN output) (c->dx times the residual scale); adds dL/dx_mid's FFN part to c->dx.
static int moe_backward(vm_tctx *c, int il, float reg_weight, const float *dout) {
    const vm_model *m = c->m;
    const vm_layer *ly = &m->layers[il];
    const vm_router_layer *L = &ly->rl;
    const vm_tlayer *l = &c->ly[il - c->l0];
    const int T = c->T, D = m->hp.n_embd, F = m->hp.n_ff_exp, N = L->n_expert, K = L->n_expert_used;
    const vm_layer_grads *lg = c->g ? &c->g->layers[il] : NULL;
    memset(c->du, 0, (size_t)T * D * sizeof(float));
    memset(c->dgates, 0, (size_t)T * K * sizeof(float));
    for (int e = 0; e < N; e++) {
        const int off = l->e_off[e], n = l->e_off[e + 1] - off;
        if (n == 0) continue;
        const int32_t *tk = l->slot_tk + off;
        // ffn_out[t] = sum_k gate[t,k] y[slot(t,k)]: dgate = <dout, y>, dy = gate * dout
        for (int j = 0; j < n; j++) {
            const float *go = dout + (size_t)(tk[j] / K) * D, *y = l->ye + (size_t)(off + j) * D;
            const float g = l->r_gates[tk[j]];
            float *dy = c->dye + (size_t)j * D;
            double s = 0.0;
            for (int d = 0; d < D; d++) { s += (double)go[d] * y[d]; dy[d] = g * go[d]; }
            c->dgates[tk[j]] = (float)s;
        }
        memset(c->dhs, 0, (size_t)n * F * sizeof(float));
        vm_matmul_backward(c->dhs, c->dye, &ly->exp_down[e], n);
        if (lg && lg->exp_down && lg->exp_down[e]) {   // the forward's silu(hb)*hb2 was scratch
            vm_swiglu_forward(c->hs, l->hb + (size_t)off * F, l->hb2 + (size_t)off * F, n * F);
            vm_matmul_backward_weight(lg->exp_down[e], NULL, c->dye, c->hs, n, F, D);
        }
        memset(c->dhb, 0, (size_t)n * F * sizeof(float));
        memset(c->dhb2, 0, (size_t)n * F * sizeof(float));
        vm_swiglu_backward(c->dhb, c->dhb2, c->dhs, l->hb + (size_t)off * F, l->hb2 + (size_t)off * F, n * F);
        if (lg && ((lg->exp_gate && lg->exp_gate[e]) || (lg->exp_up && lg->exp_up[e]))) {
            for (int j = 0; j < n; j++)   // the expert's input rows, as the forward gathered them
                memcpy(c->xe + (size_t)j * D, l->xb_ffn + (size_t)(tk[j] / K) * D, (size_t)D * sizeof(float));
            if (lg->exp_gate && lg->exp_gate[e]) vm_matmul_backward_weight(lg->exp_gate[e], NULL, c->dhb, c->xe, n, D, F);
            if (lg->exp_up && lg->exp_up[e]) vm_matmul_backward_weight(lg->exp_up[e], NULL, c->dhb2, c->xe, n, D, F);
        }
        memset(c->dxe, 0, (size_t)n * D * sizeof(float));
        vm_matmul_backward(c->dxe, c->dhb, &ly->exp_gate[e], n);
        vm_matmul_backward(c->dxe, c->dhb2, &ly->exp_up[e], n);
        for (int j = 0; j < n; j++) {
            float *du = c->du + (size_t)(tk[j] / K) * D;
            const float *dxe = c->dxe + (size_t)j * D;
            for (int d = 0; d < D; d++) du[d] += dxe[d];
        }
    }
    if (ly->has_shexp) shexp_backward(c, il, dout);
    vm_router *r = m->routers[il];
    if (lg && lg->gate_inp) {
        wr_backward(c, il, lg->gate_inp);
    } else if (r && r->ops && r->ops->backward) {
        const vm_router_out ro = { .logits = l->r_logits, .probs = l->r_probs, .sel = l->r_sel, .gates = l->r_gates };
        if (r->ops->backward(r, L, l->xb_ffn, T, &ro, c->dgates, c->du, reg_weight))
            return vm_err_prefix("tctx backward: layer %d router '%s'", il, r->ops->name);
    }
    vm_rmsnorm_backward(c->dx, lg ? lg->ffn_norm : NULL, c->du, l->x_mid, ly->ffn_norm, T, D, m->hp.norm_eps);
    return 0;
}

static void dense_backward(vm_tctx *c, int il, const float *dout) {
    const vm_model *m = c->m;
    const vm_layer *ly = &m->layers[il];
    const vm_tlayer *l = &c->ly[il - c->l0];
    const int T = c->T, D = m->hp.n_embd, F = m->hp.n_ff;
    const vm_layer_grads *lg = c->g ? &c->g->layers[il] : NULL;
    memset(c->dhs, 0, (size_t)T * F * sizeof(float));
    vm_matmul_backward(c->dhs, dout, &ly->ffn_down, T);
    if (lg && lg->ffn_down) {   // silu(hb)*hb2 was forward scratch
        vm_swiglu_forward(c->hs, l->hb, l->hb2, T * F);
        vm_matmul_backward_weight(lg->ffn_down, NULL, dout, c->hs, T, F, D);
    }
    memset(c->dhb, 0, (size_t)T * F * sizeof(float));
    memset(c->dhb2, 0, (size_t)T * F * sizeof(float));
    vm_swiglu_backward(c->dhb, c->dhb2, c->dhs, l->hb, l->hb2, T * F);
    if (lg && lg->ffn_gate) vm_matmul_backward_weight(lg->ffn_gate, NULL, c->dhb, l->xb_ffn, T, D, F);
    if (lg && lg->ffn_up) vm_matmul_backward_weight(lg->ffn_up, NULL, c->dhb2, l->xb_ffn, T, D, F);
    memset(c->du, 0, (size_t)T * D * sizeof(float));
    vm_matmul_backward(c->du, c->dhb, &ly->ffn_gate, T);
    vm_matmul_backward(c->du, c->dhb2, &ly->ffn_up, T);
    vm_rmsnorm_backward(c->dx, lg ? lg->ffn_norm : NULL, c->du, l->x_mid, ly->ffn_norm, T, D, m->hp.norm_eps);
}

// dL/dx_mid in c->dx, dout = dL/d(attention output) (c->dx times the residual scale); adds the
// attention branch, leaving dL/dx_in.
static void attn_backward(vm_tctx *c, int il, const float *dout) {
    const vm_model *m = c->m;
    const vm_hparams *hp = &m->hp;
    const vm_layer *ly = &m->layers[il];
    const vm_tlayer *l = &c->ly[il - c->l0];
    const int T = c->T, D = hp->n_embd, hd = hp->head_dim;
    const size_t qd = (size_t)hp->n_head * hd, kvd = (size_t)hp->n_head_kv * hd;
    if (m->mla) {   // deepseek2: multi-head latent attention (attn_mla.c)
        memset(c->dxb, 0, (size_t)T * D * sizeof(float));
        vm_mla_backward(m, il, dout, l->xb_att, l->q, l->k, &c->tree, c->tree_kv, c->dxb, c->mla_bwd);
        vm_rmsnorm_backward(c->dx, NULL, c->dxb, l->x_in, ly->attn_norm, T, D, hp->norm_eps);
        return;
    }
    const vm_layer_grads *lg = c->g ? &c->g->layers[il] : NULL;
    memset(c->datt, 0, (size_t)T * qd * sizeof(float));
    vm_matmul_backward(c->datt, dout, &ly->wo, T);
    if (lg && lg->wo) vm_matmul_backward_weight(lg->wo, NULL, dout, l->att, T, (int)qd, D);
    memset(c->dq, 0, (size_t)T * qd * sizeof(float));
    memset(c->dk, 0, (size_t)T * kvd * sizeof(float));
    memset(c->dv, 0, (size_t)T * kvd * sizeof(float));
    // per segment over its ancestors' rows and its own (tree.c); shared rows' dk, dv add up
    vm_tree_attention_backward(&c->tree, c->dq, c->dk, c->dv, c->datt, l->q, l->k, l->v, hp->n_head,
                               hp->n_head_kv, hd, vm_model_kq_scale(hp), c->tree_kv);
    vm_rope_backward(c->dq, c->pos, T, hp->n_head, hd, hp->n_rot, hp->rope_freq_base, hp->rope_freq_scale, hp->rope_neox);
    vm_rope_backward(c->dk, c->pos, T, hp->n_head_kv, hd, hp->n_rot, hp->rope_freq_base, hp->rope_freq_scale, hp->rope_neox);
    const float *dqp = c->dq, *dkp = c->dk;   // gradients of the projections (biases pass them on)
    if (hp->qk_norm) {
        memset(c->dq2, 0, (size_t)T * qd * sizeof(float));
        memset(c->dk2, 0, (size_t)T * kvd * sizeof(float));
        if (hp->qk_norm == 1) {   // per head
            vm_rmsnorm_backward(c->dq2, NULL, c->dq, l->q_pre, ly->attn_q_norm, T * hp->n_head, hd, hp->norm_eps);
            vm_rmsnorm_backward(c->dk2, NULL, c->dk, l->k_pre, ly->attn_k_norm, T * hp->n_head_kv, hd, hp->norm_eps);
        } else {                  // whole projection
            vm_rmsnorm_backward(c->dq2, NULL, c->dq, l->q_pre, ly->attn_q_norm, T, (int)qd, hp->norm_eps);
            vm_rmsnorm_backward(c->dk2, NULL, c->dk, l->k_pre, ly->attn_k_norm, T, (int)kvd, hp->norm_eps);
        }
        dqp = c->dq2; dkp = c->dk2;
    }
    if (lg && lg->wq) vm_matmul_backward_weight(lg->wq, NULL, dqp, l->xb_att, T, D, (int)qd);
    if (lg && lg->wk) vm_matmul_backward_weight(lg->wk, NULL, dkp, l->xb_att, T, D, (int)kvd);
    if (lg && lg->wv) vm_matmul_backward_weight(lg->wv, NULL, c->dv, l->xb_att, T, D, (int)kvd);
    memset(c->dxb, 0, (size_t)T * D * sizeof(float));
    vm_lora *lo = m->loras ? m->loras[il] : NULL;
    if (lo) {
        vm_lora_backward(lo, VM_LORA_Q, l->xb_att, dqp, T, c->dxb);
        vm_lora_backward(lo, VM_LORA_K, l->xb_att, dkp, T, c->dxb);
        vm_lora_backward(lo, VM_LORA_V, l->xb_att, c->dv, T, c->dxb);
    }
    vm_matmul_backward(c->dxb, dqp, &ly->wq, T);
    vm_matmul_backward(c->dxb, dkp, &ly->wk, T);
    vm_matmul_backward(c->dxb, c->dv, &ly->wv, T);
    vm_rmsnorm_backward(c->dx, lg ? lg->attn_norm : NULL, c->dxb, l->x_in, ly->attn_norm, T, D, hp->norm_eps);
}

// x_out = x_in + residual_scale * branch: the branch's output gradient is c->dx scaled (µP).
static const float *branch_grad(vm_tctx *c) {
    const float rs = c->m->hp.f_residual_scale;
    if (rs == 1.0f) return c->dx;
    const size_t n = (size_t)c->T * c->m->hp.n_embd;
    for (size_t i = 0; i < n; i++) c->dxs[i] = rs * c->dx[i];
    return c->dxs;
}

int vm_tctx_backward(vm_tctx *c, const float *dlogits, float reg_weight, float *dh) {
    if (!c || !dlogits) return vm_err("tctx: backward without context or dlogits");
    if (!c->have_fwd) return vm_err("tctx: backward without a successful forward");
    const vm_model *m = c->m;
    const vm_hparams *hp = &m->hp;
    const int T = c->T, D = hp->n_embd;
    // head: logits = W_out . rmsnorm(x_final[out_pos])
    memset(c->dx, 0, (size_t)T * D * sizeof(float));
    memset(c->dxb, 0, (size_t)c->n_out * D * sizeof(float));
    vm_matmul_backward(c->dxb, dlogits, &m->output, c->n_out);
    if (hp->f_logit_scale != 1.0f)   // logits = W x / logit_scale
        for (size_t i = 0; i < (size_t)c->n_out * D; i++) c->dxb[i] /= hp->f_logit_scale;
    const vm_model_grads *mg = c->g;
    if (mg && mg->output)   // set_grads refused logit scales, so logits = W_out xfn exactly
        vm_matmul_backward_weight(mg->output, NULL, dlogits, c->xfn, c->n_out, D, hp->n_vocab);
    memset(c->du, 0, (size_t)c->n_out * D * sizeof(float));
    vm_rmsnorm_backward(c->du, mg ? mg->output_norm : NULL, c->dxb, c->xf, m->output_norm, c->n_out, D, hp->norm_eps);
    for (int i = 0; i < c->n_out; i++) {
        float *dx = c->dx + (size_t)c->out_pos[i] * D;
        const float *g = c->du + (size_t)i * D;
        for (int d = 0; d < D; d++) dx[d] += g[d];
    }
    // blocks in reverse; the residual stream passes dx through unchanged, branches add to it
    for (int il = hp->n_layer - 1; il >= c->l0; il--) {
        if (m->layers[il].is_moe) {
            if (moe_backward(c, il, reg_weight, branch_grad(c))) return -1;
        } else {
            dense_backward(c, il, branch_grad(c));
        }
        attn_backward(c, il, branch_grad(c));
    }
    if (dh) memcpy(dh, c->dx, (size_t)T * D * sizeof(float));
    return 0;
}

double vm_tctx_reg(const vm_tctx *c) {
    if (!c) return 0.0;
    double s = 0.0;
    for (int il = c->l0; il < c->m->hp.n_layer; il++) {
        const vm_router *r = c->m->routers[il];
        if (c->m->layers[il].is_moe && r && r->ops && r->ops->reg) s += r->ops->reg(r);
    }
    return s;
}

static int f32_weight(const vm_tensor *t, const float *g, const char *what, int il) {
    if (!g || t->type == VM_TYPE_F32) return 0;
    return vm_err("tctx: layer %d %s is %s; weight gradients need f32 weights", il, what, vm_type_name(t->type));
}

int vm_tctx_set_grads(vm_tctx *c, const vm_model_grads *g) {
    if (!c) return vm_err("tctx: no context");
    if (!g) { c->g = NULL; return 0; }
    const vm_model *m = c->m;
    const vm_hparams *hp = &m->hp;
    if (!g->layers) return vm_err("tctx: weight gradients without per-layer buffers");
    if (m->mla || hp->qk_norm || hp->f_residual_scale != 1.0f || hp->f_logit_scale != 1.0f ||
        hp->f_embedding_scale != 1.0f || hp->f_attention_scale != 0.0f)
        return vm_err("tctx: weight gradients are implemented for llama-style blocks (architecture '%s' "
                      "has MLA, Q/K norms or µP scales)", hp->arch_name);
    if (g->output && m->output.type != VM_TYPE_F32) return vm_err("tctx: output weights are %s; weight gradients need f32", vm_type_name(m->output.type));
    for (int il = c->l0; il < hp->n_layer; il++) {
        const vm_layer *ly = &m->layers[il];
        const vm_layer_grads *lg = &g->layers[il];
        if (ly->bq || ly->bk || ly->bv || ly->has_shexp)
            return vm_err("tctx: layer %d has Q/K/V biases or a shared expert: no weight gradients for them yet", il);
        if (f32_weight(&ly->wq, lg->wq, "attn_q", il) || f32_weight(&ly->wk, lg->wk, "attn_k", il) ||
            f32_weight(&ly->wv, lg->wv, "attn_v", il) || f32_weight(&ly->wo, lg->wo, "attn_output", il))
            return -1;
        if (!ly->is_moe) {
            if (f32_weight(&ly->ffn_gate, lg->ffn_gate, "ffn_gate", il) || f32_weight(&ly->ffn_up, lg->ffn_up, "ffn_up", il) ||
                f32_weight(&ly->ffn_down, lg->ffn_down, "ffn_down", il))
                return -1;
            continue;
        }
        for (int e = 0; e < hp->n_expert; e++)
            if (f32_weight(&ly->exp_gate[e], lg->exp_gate ? lg->exp_gate[e] : NULL, "ffn_gate_exps", il) ||
                f32_weight(&ly->exp_up[e], lg->exp_up ? lg->exp_up[e] : NULL, "ffn_up_exps", il) ||
                f32_weight(&ly->exp_down[e], lg->exp_down ? lg->exp_down[e] : NULL, "ffn_down_exps", il))
                return -1;
        if (lg->gate_inp) {
            const vm_router *r = m->routers[il];
            if (f32_weight(&ly->ffn_gate_inp, lg->gate_inp, "ffn_gate_inp", il)) return -1;
            if (!r || !r->ops || strcmp(r->ops->name, "deterministic"))
                return vm_err("tctx: layer %d: training W_r needs the deterministic router (found '%s')", il,
                              r && r->ops ? r->ops->name : "none");
            if (ly->rl.conv != VM_GATE_SOFTMAX_SELECTED && ly->rl.conv != VM_GATE_SOFTMAX_ALL &&
                ly->rl.conv != VM_GATE_SOFTMAX_ALL_NORM)
                return vm_err("tctx: layer %d: training W_r with sigmoid gates is not supported", il);
        }
    }
    c->g = g;
    return 0;
}

double vm_tctx_lb_loss(const vm_tctx *c) {
    if (!c || !c->have_fwd || !c->g) return 0.0;
    const vm_model *m = c->m;
    double total = 0.0;
    for (int il = c->l0; il < m->hp.n_layer; il++) {
        if (!m->layers[il].is_moe || !c->g->layers[il].gate_inp) continue;
        const vm_tlayer *l = &c->ly[il - c->l0];
        const int T = c->T, N = m->hp.n_expert, K = m->hp.n_expert_used;
        double lb = 0.0;   // sum_t sum_e f_e p_te, then / T
        for (int t = 0; t < T; t++) {
            softmax_row(l->r_logits + (size_t)t * N, N, c->lbp);
            for (int e = 0; e < N; e++) lb += (l->e_off[e + 1] - l->e_off[e]) / (double)(T * K) * c->lbp[e];
        }
        total += N * lb / T;
    }
    return total;
}

// Multi-head latent attention, absorbed form (see attn_mla.h for the layout and why).
#include "model/attn_mla.h"
#include "kernels/ops.h"
#include "util/err.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void vm_mla_free(vm_mla *a) {
    if (!a) return;
    free(a->views);
    free(a->layers);
    free(a);
}

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

size_t vm_mla_scratch(const vm_model *m) {
    const vm_mla *a = m ? m->mla : NULL;
    if (!a) return 0;
    const size_t H = (size_t)a->n_head, kvl = (size_t)a->kv_lora;
    return (size_t)a->q_lora                                  // q LoRA latent
         + H * (size_t)(a->nope + a->rope)                    // raw queries
         + H * (size_t)a->v_dim                               // per-head values, input of wo
         + max_sz((size_t)a->nope, kvl)                       // one head's gathered input
         + max_sz(kvl, (size_t)a->v_dim);                     // and its output
}

// ggml_rope_yarn_corr_dims: the pair indices where the blend between interpolated and
// extrapolated angles starts and ends.
static float corr_dim(int n_rot, int n_ctx_orig, float rotations, float base) {
    return (float)n_rot * logf((float)n_ctx_orig / (rotations * 2.0f * (float)M_PI)) / (2.0f * logf(base));
}

void vm_mla_yarn_corr(int n_rot, int n_ctx_orig, float freq_base, float beta_fast, float beta_slow,
                      float *lo, float *hi) {
    const float start = floorf(corr_dim(n_rot, n_ctx_orig, beta_fast, freq_base));
    const float end = ceilf(corr_dim(n_rot, n_ctx_orig, beta_slow, freq_base));
    *lo = start > 0.0f ? start : 0.0f;
    *hi = end < (float)(n_rot - 1) ? end : (float)(n_rot - 1);
}

// In place on B rows at x + b*stride, nh vectors of a->rope values each (h*hstride apart):
// pairs (2i, 2i+1) rotated by theta_i = pos * base^(-2i/rope), YaRN-blended between
// freq_scale * theta (interpolated) and theta (extrapolated) by the ramp, times rope_mscale.
// dir -1 rotates by -theta: the backward (the rotation is orthogonal; the scale is symmetric).
static void mla_rope(const vm_mla *a, float *x, int B, size_t stride, int nh, size_t hstride,
                     const int32_t *pos, int dir) {
    const int half = a->rope / 2;
    for (int b = 0; b < B; b++) {
        for (int i = 0; i < half; i++) {
            const double extrap = (double)pos[b] * pow((double)a->freq_base, -2.0 * i / a->rope);
            double theta = extrap * a->freq_scale;
            if (a->ext_factor != 0.0f) {
                double y = (i - a->corr_lo) / fmax(0.001, (double)a->corr_hi - a->corr_lo);
                const double mix = (1.0 - fmin(1.0, fmax(0.0, y))) * a->ext_factor;
                theta = theta * (1.0 - mix) + extrap * mix;
            }
            const float c = (float)(cos(theta) * a->rope_mscale), s = (float)(dir * sin(theta) * a->rope_mscale);
            for (int h = 0; h < nh; h++) {
                float *v = x + (size_t)b * stride + (size_t)h * hstride + 2 * i;
                const float v0 = v[0], v1 = v[1];
                v[0] = v0 * c - v1 * s;
                v[1] = v0 * s + v1 * c;
            }
        }
    }
}

// dst[b*dstride + j] = src[b*sstride + j], j < n, b < B
static void copy_rows(float *dst, size_t dstride, const float *src, size_t sstride, int B, int n) {
    for (int b = 0; b < B; b++)
        memcpy(dst + (size_t)b * dstride, src + (size_t)b * sstride, (size_t)n * sizeof(float));
}

int vm_mla_forward(const vm_model *m, int il, const vm_block_io *io, int B) {
    const vm_mla *a = m->mla;
    if (!a || !io->mla) return vm_err("model: layer %d: multi-head latent attention without its scratch", il);
    const vm_layer *ly = &m->layers[il];
    const vm_mla_layer *L = &a->layers[il];
    const int H = a->n_head, nope = a->nope, rope = a->rope, kvl = a->kv_lora, vd = a->v_dim;
    const int qhd = nope + rope, row = kvl + rope;   // raw query head, cache row / absorbed query head
    float *s = io->mla;
    float *qa = s;   s += (size_t)B * a->q_lora;
    float *qr = s;   s += (size_t)B * H * qhd;            // (B, H, nope+rope)
    float *av = s;   s += (size_t)B * H * vd;             // (B, H*vd)
    float *gin = s;  s += (size_t)B * max_sz((size_t)nope, (size_t)kvl);
    float *gout = s;
    // the latent and the rope key go straight into the cache: (B, kvl + rope)
    float *knew = io->kc + (size_t)io->n_past * row;
    vm_matmul_forward(knew, io->xb_att, &L->wkv_a, NULL, B);
    for (int b = 0; b < B; b++)
        vm_rmsnorm_forward(knew + (size_t)b * row, knew + (size_t)b * row, L->kv_a_norm, 1, kvl, VM_MLA_LATENT_NORM_EPS);
    mla_rope(a, knew + kvl, B, (size_t)row, 1, 0, io->pos, 1);
    // queries (B, H, nope+rope), rope on each head's last `rope` values
    if (a->q_lora) {
        vm_matmul_forward(qa, io->xb_att, &L->wq_a, NULL, B);
        vm_rmsnorm_forward(qa, qa, L->q_a_norm, B, a->q_lora, VM_MLA_LATENT_NORM_EPS);
        vm_matmul_forward(qr, qa, &L->wq_b, NULL, B);
    } else {
        vm_matmul_forward(qr, io->xb_att, &ly->wq, NULL, B);
    }
    mla_rope(a, qr + nope, B, (size_t)H * qhd, H, (size_t)qhd, io->pos, 1);
    // absorbed queries io->q (B, H, kvl+rope) = [W_kb_h^T q_nope_h ; q_pe_h]
    for (int h = 0; h < H; h++) {
        copy_rows(gin, (size_t)nope, qr + (size_t)h * qhd, (size_t)H * qhd, B, nope);
        if (a->kb_fused) {   // rows of attn_kv_b: (nope, kvl), q_abs = q_nope . W
            memset(gout, 0, (size_t)B * kvl * sizeof(float));
            vm_matmul_backward(gout, gin, &L->k_b[h], B);
        } else {             // attn_k_b: (kvl, nope), q_abs = W q_nope
            vm_matmul_forward(gout, gin, &L->k_b[h], NULL, B);
        }
        copy_rows(io->q + (size_t)h * row, (size_t)H * row, gout, (size_t)kvl, B, kvl);
        copy_rows(io->q + (size_t)h * row + kvl, (size_t)H * row, qr + (size_t)h * qhd + nope, (size_t)H * qhd, B, rope);
    }
    // multi-query attention over the cache rows; each head's first kvl outputs are its latent
    // (the last `rope` are the weighted rope keys, unused)
    if (io->tree) vm_tree_attention_forward(io->tree, io->att, io->q, io->kc, io->kc, H, 1, row, a->kq_scale, io->tree_kv);
    else vm_attention_forward(io->att, io->q, io->kc, io->kc, io->n_past, B, H, 1, row, a->kq_scale);
    for (int h = 0; h < H; h++) {
        copy_rows(gin, (size_t)kvl, io->att + (size_t)h * row, (size_t)H * row, B, kvl);
        vm_matmul_forward(gout, gin, &L->v_b[h], NULL, B);   // (B, vd)
        copy_rows(av + (size_t)h * vd, (size_t)H * vd, gout, (size_t)vd, B, vd);
    }
    vm_matmul_forward(io->ao, av, &ly->wo, NULL, B);
    return 0;
}

size_t vm_mla_backward_scratch(const vm_model *m) {
    const vm_mla *a = m ? m->mla : NULL;
    if (!a) return 0;
    const size_t H = (size_t)a->n_head, row = (size_t)(a->kv_lora + a->rope);
    const size_t g = max_sz(max_sz((size_t)a->nope, (size_t)a->kv_lora), (size_t)a->v_dim);
    return H * (size_t)a->v_dim + 2 * H * row + 4 * row + H * (size_t)(a->nope + a->rope)
         + 3 * (size_t)a->q_lora + 2 * g;
}

// The forward reversed. Per token (shapes per row): ao = wo av; av_h = W_vb_h lat_h; lat = the
// first kvl outputs of MQA(q, K, V = K) over cache rows K = [norm(c) ; rope(k_pe)]; q_h =
// [W_kb_h^T q_nope_h ; rope(q_pe_h)]; [c ; k_pe] = wkv_a xb; q = wq xb or wq_b norm(wq_a xb).
// The pre-norm latents (c and the q LoRA) are recomputed from xb rather than kept.
void vm_mla_backward(const vm_model *m, int il, const float *dao, const float *xb, const float *q,
                     const float *kc, const vm_tree *tree, float *tree_kv, float *dxb, float *scratch) {
    const int T = tree->n_rows;
    const int32_t *pos = tree->pos;
    const vm_mla *a = m->mla;
    const vm_layer *ly = &m->layers[il];
    const vm_mla_layer *L = &a->layers[il];
    const int H = a->n_head, nope = a->nope, rope = a->rope, kvl = a->kv_lora, vd = a->v_dim;
    const int qhd = nope + rope, row = kvl + rope, ql = a->q_lora;
    const size_t g = max_sz(max_sz((size_t)nope, (size_t)kvl), (size_t)vd);
    float *s = scratch;
    float *dav = s;   s += (size_t)T * H * vd;       // (T, H*vd)
    float *datt = s;  s += (size_t)T * H * row;      // (T, H*row)
    float *dq = s;    s += (size_t)T * H * row;      // (T, H*row) absorbed queries
    float *dk = s;    s += (size_t)T * row;          // (T, row) cache rows as keys
    float *dv = s;    s += (size_t)T * row;          // and as values
    float *craw = s;  s += (size_t)T * row;          // wkv_a xb (pre-norm latent, unroped k_pe)
    float *dkv = s;   s += (size_t)T * row;          // its gradient
    float *dqr = s;   s += (size_t)T * H * qhd;      // raw queries' gradient
    float *qa = s;    s += (size_t)T * ql;
    float *dqan = s;  s += (size_t)T * ql;
    float *dqa = s;   s += (size_t)T * ql;
    float *gin = s;   s += (size_t)T * g;
    float *gout = s;
    // wo, then W_vb per head: datt_h[:kvl] = dav_h W_vb_h (rope outputs get no gradient)
    memset(dav, 0, (size_t)T * H * vd * sizeof(float));
    vm_matmul_backward(dav, dao, &ly->wo, T);
    memset(datt, 0, (size_t)T * H * row * sizeof(float));
    for (int h = 0; h < H; h++) {
        copy_rows(gin, (size_t)vd, dav + (size_t)h * vd, (size_t)H * vd, T, vd);
        memset(gout, 0, (size_t)T * kvl * sizeof(float));
        vm_matmul_backward(gout, gin, &L->v_b[h], T);
        copy_rows(datt + (size_t)h * row, (size_t)H * row, gout, (size_t)kvl, T, kvl);
    }
    memset(dq, 0, (size_t)T * H * row * sizeof(float));
    memset(dk, 0, (size_t)T * row * sizeof(float));
    memset(dv, 0, (size_t)T * row * sizeof(float));
    vm_tree_attention_backward(tree, dq, dk, dv, datt, q, kc, kc, H, 1, row, a->kq_scale, tree_kv);
    // cache rows: keys and values are the same numbers
    for (size_t i = 0; i < (size_t)T * row; i++) dk[i] += dv[i];
    // [c ; k_pe] = wkv_a xb: the latent through its norm, k_pe through the inverse rotation
    vm_matmul_forward(craw, xb, &L->wkv_a, NULL, T);
    memset(dkv, 0, (size_t)T * row * sizeof(float));
    for (int t = 0; t < T; t++) {
        vm_rmsnorm_backward(dkv + (size_t)t * row, NULL, dk + (size_t)t * row, craw + (size_t)t * row,
                            L->kv_a_norm, 1, kvl, VM_MLA_LATENT_NORM_EPS);
        memcpy(dkv + (size_t)t * row + kvl, dk + (size_t)t * row + kvl, (size_t)rope * sizeof(float));
    }
    mla_rope(a, dkv + kvl, T, (size_t)row, 1, 0, pos, -1);
    vm_matmul_backward(dxb, dkv, &L->wkv_a, T);
    // queries: dq_nope_h from the absorbed part, dq_pe_h from the rope part
    for (int h = 0; h < H; h++) {
        copy_rows(gin, (size_t)kvl, dq + (size_t)h * row, (size_t)H * row, T, kvl);
        if (a->kb_fused) {   // forward gout = gin . W with W (nope, kvl): dq_nope = dq_abs W^T
            vm_matmul_forward(gout, gin, &L->k_b[h], NULL, T);
        } else {             // forward gout = W gin with W (kvl, nope): dq_nope = dq_abs W
            memset(gout, 0, (size_t)T * nope * sizeof(float));
            vm_matmul_backward(gout, gin, &L->k_b[h], T);
        }
        copy_rows(dqr + (size_t)h * qhd, (size_t)H * qhd, gout, (size_t)nope, T, nope);
        copy_rows(dqr + (size_t)h * qhd + nope, (size_t)H * qhd, dq + (size_t)h * row + kvl, (size_t)H * row, T, rope);
    }
    mla_rope(a, dqr + nope, T, (size_t)H * qhd, H, (size_t)qhd, pos, -1);
    if (ql) {
        vm_matmul_forward(qa, xb, &L->wq_a, NULL, T);
        memset(dqan, 0, (size_t)T * ql * sizeof(float));
        vm_matmul_backward(dqan, dqr, &L->wq_b, T);
        memset(dqa, 0, (size_t)T * ql * sizeof(float));
        vm_rmsnorm_backward(dqa, NULL, dqan, qa, L->q_a_norm, T, ql, VM_MLA_LATENT_NORM_EPS);
        vm_matmul_backward(dxb, dqa, &L->wq_a, T);
    } else {
        vm_matmul_backward(dxb, dqr, &ly->wq, T);
    }
}

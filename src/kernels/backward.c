// Backward kernels: one per forward op of kernels/ops.h, llm.c style (gradients d<thing>,
// accumulated +=). Weights of the network are frozen, so the matmul backward only needs dinp;
// dW exists for the few trainable f32 matrices (router heads, LoRA). Sums that reduce over a row
// or a sequence run in double: the gradient checks compare against finite differences, and these
// reductions are where f32 loses the digits.
#include "kernels/ops.h"
#include "kernels/exp_neg.h"
#include "kernels/simd.h"
#include "quant/quant.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

// y += a x. The pointers never alias (distinct buffers), which the compiler cannot prove: without
// restrict and the simd pragma gcc -O2 leaves these loops, the bulk of a training step, scalar.
static inline void axpy(float *restrict y, float a, const float *restrict x, int64_t n) {
    #pragma omp simd
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

// Rows of W widened per tile: dinp rows are revisited once per tile instead of once per row of W.
#define MM_TILE 16

// Rows o0 .. o0 + n of W as f32: in place for F32 (contiguous), else widened into tile.
static const float *tile_rows(const vm_simd_kernels *K, vm_type type, const char *base, size_t row, int64_t o0, int n,
                              int64_t C, float *tile) {
    if (type == VM_TYPE_F32) return (const float *)(base + (size_t)o0 * row);
    for (int j = 0; j < n; j++) K->dequant_row(type, base + (size_t)(o0 + j) * row, tile + (size_t)j * C, C);
    return tile;
}

// dinp (B,C) += dout (B,OC) . W, a tile of W's rows at a time, each token's row of dinp updated
// once per tile in registers (the level's axpy_rows). Threads own disjoint token rows (no write
// races); each thread widens the rows of W itself (n_threads passes of dequantisation, small next to
// the B*OC*C multiply-adds), and only when one of its tokens has a nonzero gradient in the tile: a
// letter-scored fit back-propagates a handful of vocabulary rows, not the whole output matrix.
void vm_matmul_backward(float *dinp, const float *dout, const vm_tensor *w, int B) {
    const int64_t C = w->ne[0], OC = w->ne[1];
    const size_t row = w->nb[1];
    const char *base = (const char *)w->data;
    const vm_type type = w->type;
    const vm_simd_kernels *K = vm_simd_kernels_get(vm_simd_get());
    #pragma omp parallel if ((int64_t)B * OC * C > 65536 && B > 1)
    {
        float *tile = type == VM_TYPE_F32 ? NULL : malloc((size_t)MM_TILE * (size_t)C * sizeof(float));
        const int nt = omp_get_num_threads(), id = omp_get_thread_num();
        const int b0 = (int)((int64_t)B * id / nt), b1 = (int)((int64_t)B * (id + 1) / nt);
        if (type == VM_TYPE_F32 || tile) {
            for (int64_t o0 = 0; o0 < OC; o0 += MM_TILE) {
                const int n = (int)(OC - o0 < MM_TILE ? OC - o0 : MM_TILE);
                const float *wt = NULL;   // the tile's rows as f32, once a token needs them
                for (int b = b0; b < b1; b++) {
                    const float *go = dout + (size_t)b * OC + o0;
                    if (K->axpy_rows2 && b + 1 < b1) {   // two tokens at once (same bits)
                        const float *go1 = go + OC;
                        int any = 0;
                        for (int j = 0; j < n; j++) any |= go[j] != 0.0f || go1[j] != 0.0f;
                        if (any) {
                            if (!wt) wt = tile_rows(K, type, base, row, o0, n, C, tile);
                            K->axpy_rows2(dinp + (size_t)b * C, dinp + (size_t)(b + 1) * C, go, go1, wt, (size_t)C, n, C);
                        }
                        b++;
                        continue;
                    }
                    int idx[MM_TILE], m = 0;
                    for (int j = 0; j < n; j++)
                        if (go[j] != 0.0f) idx[m++] = j;
                    if (!m) continue;
                    if (!wt) wt = tile_rows(K, type, base, row, o0, n, C, tile);
                    K->axpy_rows(dinp + (size_t)b * C, go, wt, (size_t)C, idx, m, C);
                }
            }
        }
        free(tile);
    }
}

void vm_matmul_backward_weight(float *dw, float *dbias, const float *dout, const float *inp,
                               int B, int C, int OC) {
    #pragma omp parallel for schedule(static) if ((int64_t)B * OC * C > 65536)
    for (int o = 0; o < OC; o++) {
        float *dr = dw + (size_t)o * C;
        double db = 0.0;
        for (int b = 0; b < B; b++) {
            const float g = dout[(size_t)b * OC + o];
            db += g;
            if (g == 0.0f) continue;
            axpy(dr, g, inp + (size_t)b * C, C);
        }
        if (dbias) dbias[o] += (float)db;
    }
}

// y_i = x_i r w_i with r = (mean x^2 + eps)^(-1/2), dr/dx_j = -r^3 x_j / C:
// dx_j = r w_j dy_j - x_j r^3 / C * sum_i dy_i w_i x_i.
void vm_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                         const float *weight, int B, int C, float eps) {
    for (int b = 0; b < B; b++) {
        const float *x = inp + (size_t)b * C, *dy = dout + (size_t)b * C;
        float *dx = dinp + (size_t)b * C;
        double ss = 0.0, dot = 0.0;
        for (int i = 0; i < C; i++) { ss += (double)x[i] * x[i]; dot += (double)dy[i] * weight[i] * x[i]; }
        const double r = 1.0 / sqrt(ss / C + eps);
        const double c2 = dot * r * r * r / C;
        for (int i = 0; i < C; i++) dx[i] += (float)(r * weight[i] * dy[i] - c2 * x[i]);
        if (dweight)
            for (int i = 0; i < C; i++) dweight[i] += (float)(dy[i] * x[i] * r);
    }
}

// Forward: (a, d) -> (a c - d s, a s + d c). Backward is the transpose: (a, d) -> (a c + d s, -a s + d c).
void vm_rope_backward(float *dx, const int32_t *pos, int B, int n_head, int head_dim, int n_rot,
                      float freq_base, float freq_scale, int neox) {
    const int half = n_rot / 2;
    vm_rope_cs rc;   // the same cos/sin as the forward, bit for bit
    vm_rope_cs_init(&rc, n_rot, freq_base, freq_scale);
    for (int b = 0; b < B; b++) {
        float buf[2 * (half > 0 ? half : 1)];
        const float *cs = vm_rope_cs_row(&rc, pos[b], buf);
        for (int i = 0; i < half; i++) {
            const float c = cs[2 * i], s = cs[2 * i + 1];
            const int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
            for (int h = 0; h < n_head; h++) {
                float *v = dx + ((size_t)b * n_head + h) * head_dim;
                const float a = v[i0], d = v[i1];
                v[i0] = a * c + d * s;
                v[i1] = -a * s + d * c;
            }
        }
    }
}

void vm_softmax_backward(float *dinp, const float *dout, const float *out, int n) {
    double dot = 0.0;
    for (int i = 0; i < n; i++) dot += (double)out[i] * dout[i];
    for (int i = 0; i < n; i++) dinp[i] += (float)(out[i] * (dout[i] - dot));
}

// silu(g) = g s(g) with s the logistic; silu'(g) = s(g) (1 + g (1 - s(g))).
// One rounding per statement (no contraction whatever the compiler's default): the AVX2 level's
// swiglu_backward (simd_avx2.c) takes the same steps, so the bits are the same at every level.
void vm_swiglu_backward_scalar(float *dgate, float *dup, const float *dout, const float *gate,
                               const float *up, int n) {
    for (int i = 0; i < n; i++) {
        const float g = gate[i], sg = vm_sigmoid(g);
        const float c = 1.0f - sg, gc = g * c, f = 1.0f + gc;   // silu'(g) / sg
        const float du = dout[i] * up[i], a = du * sg, dg = a * f;
        const float dg2 = dout[i] * g, b = dg2 * sg;
        dgate[i] += dg;
        dup[i] += b;
    }
}

void vm_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                        const float *up, int n) {
    vm_simd_kernels_get(vm_simd_get())->swiglu_backward(dgate, dup, dout, gate, up, n);
}

// Per query (b, h): p = softmax(scale q.k_t) over t <= n_past+b, out = sum_t p_t v_t.
// dv_t += p_t dout; dp_t = dout.v_t; ds_t = p_t (dp_t - sum p dp); dq += scale ds_t k_t;
// dk_t += scale ds_t q. Threads own whole KV heads, so dk/dv rows never race.
// The portable level (scores, probabilities and their products in double); simd_avx2_attn.c has
// the vectorised one (float, the same polynomial exp as the forward).
void vm_attention_backward_scalar(float *dq, float *dk, float *dv, const float *dout, const float *q,
                                  const float *kc, const float *vc, int n_past, int B, int n_head,
                                  int n_head_kv, int hd, float scale) {
    const int group = n_head / n_head_kv, n_tot = n_past + B;
    const size_t q_stride = (size_t)n_head * hd, kv_stride = (size_t)n_head_kv * hd;
    #pragma omp parallel if (n_head_kv > 1 && (int64_t)n_tot * B * n_head * hd > 32768)
    {
        double *p = malloc((size_t)(n_tot > 0 ? n_tot : 1) * 2 * sizeof(double)), *dp = p + n_tot;
        #pragma omp for schedule(static)
        for (int hk = 0; hk < n_head_kv; hk++) {
            if (!p) continue;
            for (int h = hk * group; h < (hk + 1) * group; h++)
                for (int b = 0; b < B; b++) {
                    const float *qv = q + (size_t)b * q_stride + (size_t)h * hd;
                    const float *go = dout + (size_t)b * q_stride + (size_t)h * hd;
                    float *gq = dq + (size_t)b * q_stride + (size_t)h * hd;
                    const int n_kv = n_past + b + 1;
                    double mx = -INFINITY, sum = 0.0;
                    for (int t = 0; t < n_kv; t++) {
                        const float *k = kc + (size_t)t * kv_stride + (size_t)hk * hd;
                        double s = 0.0;
                        for (int d = 0; d < hd; d++) s += (double)qv[d] * k[d];
                        p[t] = s * scale;
                        if (p[t] > mx) mx = p[t];
                    }
                    for (int t = 0; t < n_kv; t++) { p[t] = exp(p[t] - mx); sum += p[t]; }
                    double pdp = 0.0;
                    for (int t = 0; t < n_kv; t++) {
                        p[t] /= sum;
                        const float *v = vc + (size_t)t * kv_stride + (size_t)hk * hd;
                        float *gv = dv + (size_t)t * kv_stride + (size_t)hk * hd;
                        double s = 0.0;
                        for (int d = 0; d < hd; d++) { s += (double)go[d] * v[d]; gv[d] += (float)(p[t] * go[d]); }
                        dp[t] = s;
                        pdp += p[t] * s;
                    }
                    for (int t = 0; t < n_kv; t++) {
                        const float ds = (float)(p[t] * (dp[t] - pdp) * scale);
                        if (ds == 0.0f) continue;
                        const float *k = kc + (size_t)t * kv_stride + (size_t)hk * hd;
                        float *gk = dk + (size_t)t * kv_stride + (size_t)hk * hd;
                        for (int d = 0; d < hd; d++) { gq[d] += ds * k[d]; gk[d] += ds * qv[d]; }
                    }
                }
        }
        free(p);
    }
}

void vm_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                           const float *kc, const float *vc, int n_past, int B, int n_head,
                           int n_head_kv, int hd, float scale) {
    vm_simd_kernels_get(vm_simd_get())->attention_backward(dq, dk, dv, dout, q, kc, vc, n_past, B, n_head,
                                                           n_head_kv, hd, scale);
}

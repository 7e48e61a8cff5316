// Element-wise and per-row kernels: rmsnorm, rotary position embedding, softmax, SwiGLU.
#include "kernels/ops.h"
#include "kernels/exp_neg.h"
#include "kernels/simd.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static void rmsnorm_row(float *o, const float *x, const float *weight, int C, float eps) {
    double ss = 0.0;   // double: rows of thousands of squares lose digits in f32
    for (int i = 0; i < C; i++) ss += (double)x[i] * x[i];
    const float scale = (float)(1.0 / sqrt(ss / C + eps));
    for (int i = 0; i < C; i++) o[i] = x[i] * scale * weight[i];
}

// Blocks of 8 rows through the level's rmsnorm8 when it has one (the same bits as rmsnorm_row).
void vm_rmsnorm_forward(float *out, const float *inp, const float *weight, int B, int C, float eps) {
    const vm_simd_kernels *K = vm_simd_kernels_get(vm_simd_get());
    const int G = K->rmsnorm8 ? 8 : 1, n = (B + G - 1) / G;
    #pragma omp parallel for schedule(static) if ((int64_t)B * C > 65536)
    for (int g = 0; g < n; g++) {
        const int b0 = g * G, nb = B - b0 < G ? B - b0 : G;
        if (nb == 8) {
            K->rmsnorm8(out + (size_t)b0 * C, inp + (size_t)b0 * C, weight, C, eps);
        } else {
            for (int b = b0; b < b0 + nb; b++) rmsnorm_row(out + (size_t)b * C, inp + (size_t)b * C, weight, C, eps);
        }
    }
}

// theta_i = pos * freq_scale * base^(-2i/n_rot), i in [0, n_rot/2). Angles in double: positions in
// the thousands times f32 rounding would cost digits in cos/sin.
static double rope_freq(int i, int n_rot, float freq_base) { return pow((double)freq_base, -2.0 * i / n_rot); }

// (float) cos and sin of pair i's angle at position pos: the one place they are computed
// (tabulated or not), so the table holds exactly the floats a direct computation gives.
static inline void rope_cs(int32_t pos, float freq_scale, double fr, float *cs) {
    const double p = (double)pos * freq_scale, theta = p * fr;
    cs[0] = (float)cos(theta);
    cs[1] = (float)sin(theta);
}

// Every rope call of a pass (each layer, Q and K, the backward again) needs the same cos/sin per
// (position, pair): a process-wide table per (base, scale, n_rot) for positions [0, ROPE_TABLE_POS),
// built once under a mutex, published with a release store and never freed (reachable from
// rope_tables). Other positions, or no memory, compute them directly: the same bits either way.
enum { ROPE_TABLE_POS = 4096 };
typedef struct rope_table {
    float base, scale;
    int n_rot;
    float *cs;   // [ROPE_TABLE_POS][n_rot / 2][2]
    struct rope_table *next;
} rope_table;
static rope_table *rope_tables;
static pthread_mutex_t rope_mu = PTHREAD_MUTEX_INITIALIZER;

static const rope_table *rope_find(const rope_table *t, float base, float scale, int n_rot) {
    for (; t; t = t->next)
        if (t->n_rot == n_rot && !memcmp(&t->base, &base, sizeof base) && !memcmp(&t->scale, &scale, sizeof scale))
            return t;
    return NULL;
}

static const rope_table *rope_table_get(const vm_rope_cs *r) {
    const rope_table *t = rope_find(__atomic_load_n(&rope_tables, __ATOMIC_ACQUIRE), r->base, r->scale, r->n_rot);
    if (t || r->half > VM_ROPE_MAX_HALF) return t;
    pthread_mutex_lock(&rope_mu);
    t = rope_find(rope_tables, r->base, r->scale, r->n_rot);
    rope_table *nt = t ? NULL : malloc(sizeof *nt);
    float *cs = nt ? malloc((size_t)ROPE_TABLE_POS * r->half * 2 * sizeof(float)) : NULL;
    if (cs) {
        for (int p = 0; p < ROPE_TABLE_POS; p++)
            for (int i = 0; i < r->half; i++) rope_cs(p, r->scale, r->fr[i], cs + ((size_t)p * r->half + i) * 2);
        *nt = (rope_table){r->base, r->scale, r->n_rot, cs, rope_tables};
        __atomic_store_n(&rope_tables, nt, __ATOMIC_RELEASE);
        t = nt;
    } else {
        free(nt);
    }
    pthread_mutex_unlock(&rope_mu);
    return t;
}

void vm_rope_cs_init(vm_rope_cs *r, int n_rot, float freq_base, float freq_scale) {
    r->base = freq_base;
    r->scale = freq_scale;
    r->n_rot = n_rot;
    r->half = n_rot / 2;
    const int nf = r->half < VM_ROPE_MAX_HALF ? r->half : VM_ROPE_MAX_HALF;
    for (int i = 0; i < nf; i++) r->fr[i] = rope_freq(i, n_rot, freq_base);   // once per call, not per token
    r->tab = r->half > 0 ? rope_table_get(r) : NULL;
}

const float *vm_rope_cs_row(const vm_rope_cs *r, int32_t pos, float *buf) {
    const rope_table *t = r->tab;
    if (t && pos >= 0 && pos < ROPE_TABLE_POS) return t->cs + (size_t)pos * r->half * 2;
    for (int i = 0; i < r->half; i++)
        rope_cs(pos, r->scale, i < VM_ROPE_MAX_HALF ? r->fr[i] : rope_freq(i, r->n_rot, r->base), buf + 2 * i);
    return buf;
}

void vm_rope_forward(float *x, const int32_t *pos, int B, int n_head, int head_dim, int n_rot,
                     float freq_base, float freq_scale, int neox) {
    const int half = n_rot / 2;
    vm_rope_cs rc;
    vm_rope_cs_init(&rc, n_rot, freq_base, freq_scale);
    #pragma omp parallel for schedule(static) if ((int64_t)B * n_head * head_dim > 65536)
    for (int b = 0; b < B; b++) {
        float buf[2 * (half > 0 ? half : 1)];
        const float *cs = vm_rope_cs_row(&rc, pos[b], buf);
        for (int i = 0; i < half; i++) {
            const float c = cs[2 * i], s = cs[2 * i + 1];
            // normal: pair (2i, 2i+1); neox: pair (i, i + n_rot/2)
            const int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
            for (int h = 0; h < n_head; h++) {
                float *v = x + ((size_t)b * n_head + h) * head_dim;
                const float a = v[i0], d = v[i1];
                v[i0] = a * c - d * s;
                v[i1] = a * s + d * c;
            }
        }
    }
}

void vm_softmax_forward(float *out, const float *inp, int n) {
    if (n <= 0) return;
    float mx = inp[0];
    for (int i = 1; i < n; i++) if (inp[i] > mx) mx = inp[i];
    double sum = 0.0;
    for (int i = 0; i < n; i++) { out[i] = expf(inp[i] - mx); sum += out[i]; }
    const float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++) out[i] *= inv;
}

// silu(g) up = (g sigmoid(g)) up with kernels/exp_neg.h's logistic: the same bits at every level
// (the AVX2 level's is simd_avx2.c swiglu). out may be gate.
void vm_swiglu_scalar(float *out, const float *gate, const float *up, int n) {
    for (int i = 0; i < n; i++) {
        const float g = gate[i], s = vm_sigmoid(g), gs = g * s;
        out[i] = gs * up[i];
    }
}

void vm_swiglu_forward(float *out, const float *gate, const float *up, int n) {
    vm_simd_kernels_get(vm_simd_get())->swiglu(out, gate, up, n);
}

// Element-wise and per-row kernels: rmsnorm, rotary position embedding, softmax, SwiGLU.
#include "kernels/ops.h"
#include "kernels/exp_neg.h"
#include "kernels/simd.h"

#include <math.h>

void vm_rmsnorm_forward(float *out, const float *inp, const float *weight, int B, int C, float eps) {
    #pragma omp parallel for schedule(static) if ((int64_t)B * C > 65536)
    for (int b = 0; b < B; b++) {
        const float *x = inp + (size_t)b * C;
        float *o = out + (size_t)b * C;
        double ss = 0.0;   // double: rows of thousands of squares lose digits in f32
        for (int i = 0; i < C; i++) ss += (double)x[i] * x[i];
        const float scale = (float)(1.0 / sqrt(ss / C + eps));
        for (int i = 0; i < C; i++) o[i] = x[i] * scale * weight[i];
    }
}

// theta_i = pos * freq_scale * base^(-2i/n_rot), i in [0, n_rot/2). Angles in double: positions in
// the thousands times f32 rounding would cost digits in cos/sin.
void vm_rope_forward(float *x, const int32_t *pos, int B, int n_head, int head_dim, int n_rot,
                     float freq_base, float freq_scale, int neox) {
    const int half = n_rot / 2;
    double fr[VM_ROPE_MAX_HALF];   // base^(-2i/n_rot) once per call, not once per token: the same bits
    const int nf = half < VM_ROPE_MAX_HALF ? half : VM_ROPE_MAX_HALF;
    for (int i = 0; i < nf; i++) fr[i] = pow((double)freq_base, -2.0 * i / n_rot);
    #pragma omp parallel for schedule(static) if ((int64_t)B * n_head * head_dim > 65536)
    for (int b = 0; b < B; b++) {
        const double p = (double)pos[b] * freq_scale;
        for (int i = 0; i < half; i++) {
            const double theta = p * (i < nf ? fr[i] : pow((double)freq_base, -2.0 * i / n_rot));
            const float c = (float)cos(theta), s = (float)sin(theta);
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

#include "model/lora.h"
#include "model/model.h"
#include "util/err.h"
#include "util/rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static const char *const proj_name[VM_LORA_COUNT] = { "q", "k", "v" };

vm_lora *vm_lora_create(const vm_model *m, int layer, int rank, float alpha, uint64_t seed) {
    if (!m || layer < 0 || layer >= m->hp.n_layer) { vm_err("lora: layer %d out of range", layer); return NULL; }
    if (m->mla) { vm_err("lora: architecture '%s' has latent attention (MLA), no Q/K/V projections", m->hp.arch_name); return NULL; }
    if (rank < 1 || rank > VM_LORA_MAX_RANK) { vm_err("lora: rank %d out of range 1..%d", rank, VM_LORA_MAX_RANK); return NULL; }
    if (!(alpha > 0)) { vm_err("lora: alpha %g must be positive", (double)alpha); return NULL; }
    const int D = m->hp.n_embd;
    const int out[VM_LORA_COUNT] = { m->hp.n_head * m->hp.head_dim, m->hp.n_head_kv * m->hp.head_dim,
                                     m->hp.n_head_kv * m->hp.head_dim };
    vm_lora *l = vm_calloc(1, sizeof *l);
    if (!l) return NULL;
    l->rank = rank; l->alpha = alpha; l->scale = alpha / rank;
    vm_rng r;
    vm_rng_seed2(&r, seed, 0x6c6f7261ull + (uint64_t)layer);   // "lora"
    for (int j = 0; j < VM_LORA_COUNT; j++) {
        vm_param *a = &l->p[2 * j], *b = &l->p[2 * j + 1];
        snprintf(a->name, sizeof a->name, "lora.%s.a", proj_name[j]);
        snprintf(b->name, sizeof b->name, "lora.%s.b", proj_name[j]);
        a->n_dims = b->n_dims = 2;
        a->ne[0] = D; a->ne[1] = rank;
        b->ne[0] = rank; b->ne[1] = out[j];
        a->w = vm_calloc((size_t)D * rank, sizeof(float)); a->g = vm_calloc((size_t)D * rank, sizeof(float));
        b->w = vm_calloc((size_t)rank * out[j], sizeof(float)); b->g = vm_calloc((size_t)rank * out[j], sizeof(float));
        if (!a->w || !a->g || !b->w || !b->g) { vm_lora_free(l); return NULL; }
        const float sd = 1.0f / sqrtf((float)D);
        for (int64_t i = 0; i < (int64_t)D * rank; i++) a->w[i] = sd * vm_rng_normal(&r);
    }
    return l;
}

void vm_lora_free(vm_lora *l) {
    if (!l) return;
    for (int i = 0; i < 2 * VM_LORA_COUNT; i++) { free(l->p[i].w); free(l->p[i].g); }
    free(l);
}

int vm_model_set_lora(vm_model *m, int layer, vm_lora *l) {
    if (!m || layer < 0 || layer >= m->hp.n_layer) { vm_lora_free(l); return vm_err("model: layer %d out of range", layer); }
    if (l && l->p[0].ne[0] != m->hp.n_embd) { vm_lora_free(l); return vm_err("model: LoRA of another width (layer %d)", layer); }
    if (!m->loras) {
        if (!l) return 0;
        if (!(m->loras = vm_calloc((size_t)m->hp.n_layer, sizeof *m->loras))) { vm_lora_free(l); return -1; }
    }
    vm_lora_free(m->loras[layer]);
    m->loras[layer] = l;
    return 0;
}

const vm_lora *vm_model_lora(const vm_model *m, int layer) {
    return m && m->loras && layer >= 0 && layer < m->hp.n_layer ? m->loras[layer] : NULL;
}

// t (r) = A x for one token; out += scale * B t.
void vm_lora_forward(const vm_lora *l, int j, const float *x, int B, float *out) {
    const vm_param *a = &l->p[2 * j], *b = &l->p[2 * j + 1];
    const int D = (int)a->ne[0], r = l->rank, O = (int)b->ne[1];
    for (int t = 0; t < B; t++) {
        const float *xt = x + (size_t)t * D;
        float u[VM_LORA_MAX_RANK];
        for (int k = 0; k < r; k++) {
            const float *ar = a->w + (size_t)k * D;
            double s = 0.0;
            for (int d = 0; d < D; d++) s += (double)ar[d] * xt[d];
            u[k] = (float)(s * l->scale);
        }
        float *ot = out + (size_t)t * O;
        for (int o = 0; o < O; o++) {
            const float *br = b->w + (size_t)o * r;
            float s = 0.0f;
            for (int k = 0; k < r; k++) s += br[k] * u[k];
            ot[o] += s;
        }
    }
}

// y = B (scale A x): dB += dy (scale A x)^T; du = B^T dy; dA += scale du x^T; dx += scale A^T du.
void vm_lora_backward(vm_lora *l, int j, const float *x, const float *dout, int B, float *dx) {
    vm_param *a = &l->p[2 * j], *b = &l->p[2 * j + 1];
    const int D = (int)a->ne[0], r = l->rank, O = (int)b->ne[1];
    for (int t = 0; t < B; t++) {
        const float *xt = x + (size_t)t * D, *dy = dout + (size_t)t * O;
        float u[VM_LORA_MAX_RANK], du[VM_LORA_MAX_RANK];
        for (int k = 0; k < r; k++) {
            const float *ar = a->w + (size_t)k * D;
            double s = 0.0;
            for (int d = 0; d < D; d++) s += (double)ar[d] * xt[d];
            u[k] = (float)(s * l->scale);
            du[k] = 0.0f;
        }
        for (int o = 0; o < O; o++) {
            const float g = dy[o];
            if (g == 0.0f) continue;
            float *gb = b->g + (size_t)o * r;
            const float *br = b->w + (size_t)o * r;
            for (int k = 0; k < r; k++) { gb[k] += g * u[k]; du[k] += g * br[k]; }
        }
        float *dxt = dx + (size_t)t * D;
        for (int k = 0; k < r; k++) {
            const float s = du[k] * l->scale;
            if (s == 0.0f) continue;
            float *ga = a->g + (size_t)k * D;
            const float *ar = a->w + (size_t)k * D;
            for (int d = 0; d < D; d++) { ga[d] += s * xt[d]; dxt[d] += s * ar[d]; }
        }
    }
}

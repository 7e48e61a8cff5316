// AdamW with warm-up + cosine schedule (see optim.h).
#include "train/optim.h"
#include "util/err.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int64_t vm_param_numel(const vm_param *p) { return p->ne[0] * (p->n_dims > 1 ? p->ne[1] : 1); }

int vm_adamw_init(vm_adamw *o, vm_param **p, const unsigned char *decay, int n, float wd) {
    memset(o, 0, sizeof *o);
    o->beta1 = 0.9f; o->beta2 = 0.999f; o->eps = 1e-8f; o->wd = wd; o->n = n;
    if (n <= 0) return vm_err("adamw: no parameters to train");
    o->p = vm_calloc((size_t)n, sizeof *o->p);
    o->decay = vm_calloc((size_t)n, 1);
    o->m = vm_calloc((size_t)n, sizeof *o->m);
    o->v = vm_calloc((size_t)n, sizeof *o->v);
    o->lr_mult = vm_calloc((size_t)n, sizeof *o->lr_mult);
    if (!o->p || !o->decay || !o->m || !o->v || !o->lr_mult) { vm_adamw_free(o); return -1; }
    for (int i = 0; i < n; i++) {
        o->lr_mult[i] = 1.0f;
        o->p[i] = p[i];
        o->decay[i] = decay ? decay[i] : 0;
        const size_t k = (size_t)vm_param_numel(p[i]);
        if (!(o->m[i] = vm_calloc(k ? k : 1, sizeof(float))) || !(o->v[i] = vm_calloc(k ? k : 1, sizeof(float)))) {
            vm_adamw_free(o); return -1;
        }
    }
    return 0;
}

void vm_adamw_free(vm_adamw *o) {
    if (!o) return;
    for (int i = 0; i < o->n; i++) { if (o->m) free(o->m[i]); if (o->v) free(o->v[i]); }
    free(o->p); free(o->decay); free(o->m); free(o->v); free(o->lr_mult);
    memset(o, 0, sizeof *o);
}

void vm_adamw_step(vm_adamw *o, float lr) {
    o->step++;
    const double bc1 = 1.0 - pow(o->beta1, (double)o->step), bc2 = 1.0 - pow(o->beta2, (double)o->step);
    for (int i = 0; i < o->n; i++) {
        vm_param *p = o->p[i];
        const int64_t k = vm_param_numel(p);
        float *m = o->m[i], *v = o->v[i];
        const float wd = o->decay[i] ? o->wd : 0.0f, lri = lr * o->lr_mult[i];
        for (int64_t j = 0; j < k; j++) {
            const float g = p->g[j];
            m[j] = o->beta1 * m[j] + (1.0f - o->beta1) * g;
            v[j] = o->beta2 * v[j] + (1.0f - o->beta2) * g * g;
            const double mh = m[j] / bc1, vh = v[j] / bc2;
            p->w[j] -= lri * (float)(mh / (sqrt(vh) + o->eps) + wd * p->w[j]);
            p->g[j] = 0.0f;
        }
    }
}

float vm_lr_schedule(float lr_max, int64_t s, int64_t total, float warmup_frac) {
    if (total <= 0) return lr_max;
    int64_t warm = (int64_t)llround(warmup_frac * (double)total);
    if (warm < 1) warm = 1;
    if (s < warm) return lr_max * (float)(s + 1) / (float)warm;
    if (total <= warm) return lr_max;
    const double t = (double)(s - warm) / (double)(total - warm);
    return (float)(lr_max * 0.5 * (1.0 + cos(M_PI * (t < 1 ? t : 1))));
}

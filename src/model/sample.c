// Sampling: p_i = softmax(l_i / T); top-k keeps the k most probable ids, top-p the smallest
// most-probable prefix whose mass reaches p (both with ties broken towards the lower id);
// then one draw u ~ U[0,1) walks the kept ids in that order.
#include "model/sample.h"
#include "util/err.h"

#include <math.h>
#include <stdlib.h>

int vm_sampler_init(vm_sampler *s, float temp, int top_k, float top_p, uint64_t seed) {
    *s = (vm_sampler){0};
    if (!(temp >= 0) || !isfinite(temp)) return vm_err("sampler: temperature must be finite and >= 0");
    if (top_k < 0) return vm_err("sampler: top-k must be >= 0");
    if (!(top_p > 0 && top_p <= 1)) return vm_err("sampler: top-p must be in (0, 1]");
    s->temp = temp; s->top_k = top_k; s->top_p = top_p;
    vm_rng_seed(&s->rng, seed);
    return 0;
}

void vm_sampler_free(vm_sampler *s) {
    free(s->prob); free(s->idx);
    s->prob = NULL; s->idx = NULL; s->cap = 0;
}

int32_t vm_sample_argmax(const float *logits, int n) {
    if (!logits || n < 0) return vm_err("sample: no logits given (n = %d)", n);
    int32_t best = -1;
    for (int i = 0; i < n; i++)
        if (!isnan(logits[i]) && (best < 0 || logits[i] > logits[best])) best = i;
    return best;
}

// thread-local: qsort has no context argument in C11, and `vmoer serve` samples in several threads
static _Thread_local const float *cmp_prob;
static int cmp_desc(const void *a, const void *b) {
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    if (cmp_prob[i] != cmp_prob[j]) return cmp_prob[i] > cmp_prob[j] ? -1 : 1;
    return (i > j) - (i < j);
}

int32_t vm_sampler_sample(vm_sampler *s, const float *logits, int n) {
    if (n < 1) { vm_err("sampler: empty logits"); return -1; }
    int32_t best = vm_sample_argmax(logits, n);
    if (best < 0 || !isfinite(logits[best])) { vm_err("sampler: no finite logit"); return -1; }
    if (s->temp == 0 || s->top_k == 1) return best;
    if (n > s->cap) {
        float *p = realloc(s->prob, sizeof *p * (size_t)n);
        if (p) s->prob = p;
        int32_t *ix = realloc(s->idx, sizeof *ix * (size_t)n);
        if (ix) s->idx = ix;
        if (!p || !ix) { vm_err("sampler: out of memory"); return -1; }
        s->cap = n;
    }
    // softmax(l / T) in double for the normaliser; NaN and -inf get probability 0
    double sum = 0, mx = logits[best];
    for (int i = 0; i < n; i++) {
        double e = isnan(logits[i]) ? 0 : exp(((double)logits[i] - mx) / s->temp);
        s->prob[i] = (float)e;
        sum += e;
        s->idx[i] = i;
    }
    int m = n;
    if (s->top_k > 0 || s->top_p < 1) {
        cmp_prob = s->prob;
        qsort(s->idx, (size_t)n, sizeof *s->idx, cmp_desc);
        if (s->top_k > 0 && s->top_k < m) m = s->top_k;
        if (s->top_p < 1) {
            double kept = 0, mass = 0;
            for (int i = 0; i < m; i++) kept += s->prob[s->idx[i]];
            for (int i = 0; i < m; i++) {
                mass += s->prob[s->idx[i]];
                if (mass >= s->top_p * kept) { m = i + 1; break; }
            }
        }
        sum = 0;
        for (int i = 0; i < m; i++) sum += s->prob[s->idx[i]];
    }
    double u = vm_rng_uniform(&s->rng) * sum, c = 0;
    for (int i = 0; i < m; i++) {
        c += s->prob[s->idx[i]];
        if (u < c) return s->idx[i];
    }
    return s->idx[m - 1];   // rounding: u landed on the upper edge
}

// Next-token sampling from a logits row: greedy (temp 0) or temperature sampling with optional
// top-k / top-p (nucleus) truncation, drawing from an explicit vm_rng so runs are reproducible.
#pragma once
#include <stdint.h>
#include "util/rng.h"
#include "vmoer.h"   // the public declarations of some of these (exported from libvmoer.so)

typedef struct vm_sampler {
    float temp;        // 0: greedy
    int top_k;         // 0: off
    float top_p;       // 1: off
    vm_rng rng;
    float *prob;       // scratch (cap)
    int32_t *idx;      // scratch (cap)
    int cap;
} vm_sampler;

// Returns 0, or -1 for a negative/non-finite temp, top_k < 0 or top_p outside (0, 1].
int vm_sampler_init(vm_sampler *s, float temp, int top_k, float top_p, uint64_t seed);
void vm_sampler_free(vm_sampler *s);
// argmax; ties go to the lowest id. NaN logits are never chosen (-1 if all are NaN or n < 1).
int32_t vm_sample_argmax(const float *logits, int n);
// One token id, or -1 with an error (out of memory, n < 1, no finite logit).
int32_t vm_sampler_sample(vm_sampler *s, const float *logits, int n);

// AdamW over a list of router parameters (vm_param: w and g), with linear warm-up and cosine decay.
// Decoupled weight decay (Loshchilov & Hutter 2019): w -= lr * (adam step + wd * w), applied only to
// parameters whose decay flag is set (2-D head weights; never biases, scales or W_r copies, which
// would be pulled towards zero instead of towards the pretrained router).
#pragma once
#include <stdint.h>
#include "router/router.h"

typedef struct vm_adamw {
    int n;                     // parameters
    vm_param **p;              // (n) borrowed
    unsigned char *decay;      // (n) 1: apply weight decay
    float *lr_mult;            // (n) learning-rate multiplier of each parameter (1 after init)
    float **m, **v;            // (n) first and second moments, same sizes as p[i]->w
    int64_t step;              // optimiser steps taken (bias correction)
    float beta1, beta2, eps, wd;
} vm_adamw;

// Adam defaults beta1 0.9, beta2 0.999, eps 1e-8; wd as given.
int vm_adamw_init(vm_adamw *o, vm_param **p, const unsigned char *decay, int n, float wd);
void vm_adamw_free(vm_adamw *o);
// One update with learning rate lr from the accumulated gradients; zeroes the gradients.
void vm_adamw_step(vm_adamw *o, float lr);
// Elements of parameter i.
int64_t vm_param_numel(const vm_param *p);

// Learning rate at step s (0-based) of total: linear warm-up over warm = max(1, round(frac*total))
// steps to lr_max ((s+1)/warm * lr_max), then cosine from lr_max down to 0 at step total.
float vm_lr_schedule(float lr_max, int64_t s, int64_t total, float warmup_frac);

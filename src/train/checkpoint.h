// Fit checkpoints: a GGUF (general.type = "vmoer-fit-checkpoint") holding the trained parameters,
// the AdamW moments and step, the best parameters so far and the loop counters. The random streams
// are counter-based (fit.h), so (seed, step) is the whole random state. Written atomically
// (temp + fsync + rename by the GGUF writer), so a kill leaves the previous checkpoint intact.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include "train/optim.h"

typedef struct vm_ckpt_state {
    uint64_t fingerprint;      // options + model + data identity; a resume must match
    int64_t step;              // optimiser steps done
    int epochs_run, best_epoch, bad, stopped;
    double best_val, best_acc, val_init, acc_init;
    double ep_ce, ep_obj;      // running sums of the current epoch
    int64_t ep_n;
    double ce_first, ce_last;  // mean train CE of the first and the latest finished epoch
} vm_ckpt_state;

// best (n_best floats): the kept parameters, concatenated in o->p order.
int vm_ckpt_write(const char *path, const vm_ckpt_state *s, const vm_adamw *o, const float *best, size_t n_best);
// Reads into s, o (its parameters' w, m, v and step; o must be initialised over the same
// parameters) and best. A different fingerprint -> error naming the mismatch.
int vm_ckpt_read(const char *path, vm_ckpt_state *s, vm_adamw *o, float *best, size_t n_best);

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

// What the run that reads a checkpoint knows its counters must agree with. A checkpoint is a file
// anyone can edit: every value is checked before it indexes anything or steers the run.
typedef struct vm_ckpt_expect {
    int64_t total_steps;       // optimiser steps of the whole run
    // fit (fit.h): > 0. One AdamW step per batch, so adam_step == step; epochs end every
    // steps_per_epoch steps, where the running sums restart, validation runs and early stopping may
    // stop the run; ep_n counts the examples of the current epoch (full batches: the short batch is
    // an epoch's last). 0: `vmoer train` (lm.h): no epochs, best_epoch is the best step.
    int64_t steps_per_epoch;
    int batch, n_train, n_val, patience;   // fit only
} vm_ckpt_expect;

// best (n_best floats): the kept parameters, concatenated in o->p order.
int vm_ckpt_write(const char *path, const vm_ckpt_state *s, const vm_adamw *o, const float *best, size_t n_best);
// Reads into s, o (its parameters' w, m, v and step; o must be initialised over the same
// parameters) and best. A different fingerprint -> error naming the mismatch. Every counter must be
// in range and consistent with the others and with e (fit: epochs_run = step / steps_per_epoch,
// ep_n = (step % steps_per_epoch) * batch, bad = epochs_run - best_epoch <= patience, stopped =
// bad >= patience, ...), parameters, moments and best finite, second moments >= 0, validation
// numbers in range (NaN exactly when there are no validation items); otherwise one line
// "checkpoint P: corrupt: what". s, o and best may be partly overwritten on failure.
int vm_ckpt_read(const char *path, vm_ckpt_state *s, vm_adamw *o, float *best, size_t n_best,
                 const vm_ckpt_expect *e);

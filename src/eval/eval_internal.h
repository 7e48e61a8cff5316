// Helpers shared by eval.c, stability.c, cost.c and eval_write.c (not part of the interface).
#pragma once
#include "eval/eval.h"

// 1 when MoE layer il's router read-outs enter a question's scores: the layers whose router is not
// the deterministic one (the replaced, e.g. Bayesian, layers), or every MoE layer when none is.
int vm_eval_readout_layer(const vm_model *m, int il);

double vm_eval_now(void);   // monotonic seconds
// One seed from (seed, stream), for vm_ctx_set_seed / vm_ctx_set_embd_noise.
uint64_t vm_eval_stream_seed(uint64_t seed, uint64_t stream);

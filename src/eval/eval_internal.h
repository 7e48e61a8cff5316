// Helpers shared by eval.c, stability.c, cost.c and eval_write.c (not part of the interface).
#pragma once
#include "eval/eval.h"

// Wraps every MoE layer's router in a probe that keeps the read-outs of its latest forward
// (idempotent), and unwraps them again. The model's routers are otherwise untouched.
int vm_eval_probe_install(vm_model *m);
void vm_eval_probe_remove(vm_model *m);
// The router inside a probe (r itself when it is not one).
const vm_router *vm_eval_router_inner(const vm_router *r);

double vm_eval_now(void);   // monotonic seconds
// One seed from (seed, stream), for vm_ctx_set_seed / vm_ctx_set_embd_noise.
uint64_t vm_eval_stream_seed(uint64_t seed, uint64_t stream);

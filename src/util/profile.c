// Per-op profile counters (profile.h).
#include "util/profile.h"
#include "util/progress.h"

#include <string.h>

static int on;
static vm_prof acc;
static int open_op = -1;

static const char *const names[VM_PROF_COUNT] = {
    "embedding", "rmsnorm", "attn q/k/v", "rope", "attention", "attn output", "router",
    "expert gather", "expert gate+up", "swiglu", "expert down", "expert scatter", "dense ffn",
    "output", "act quantise", "residual",
};

void vm_prof_enable(int v) { on = v; }
int vm_prof_enabled(void) { return on; }
void vm_prof_reset(void) { memset(&acc, 0, sizeof acc); open_op = -1; }
void vm_prof_get(vm_prof *out) { *out = acc; }
const char *vm_prof_name(vm_prof_op op) { return (unsigned)op < VM_PROF_COUNT ? names[op] : "?"; }

vm_prof_t vm_prof_begin(vm_prof_op op) {
    vm_prof_t t = { 0.0, 0.0, -1 };
    if (!on) return t;
    t.op = (int)op;
    t.aq0 = acc.sec[VM_PROF_ACT_QUANT];
    open_op = (int)op;
    t.t0 = vm_now_s();
    return t;
}

void vm_prof_end(vm_prof_t t) {
    if (t.op < 0) return;
    const double dt = vm_now_s() - t.t0 - (acc.sec[VM_PROF_ACT_QUANT] - t.aq0);
    acc.sec[t.op] += dt;
    acc.calls[t.op]++;
    open_op = -1;
}

void vm_prof_matmul(double flops, double wbytes) {
    if (!on || open_op < 0) return;
    acc.flops[open_op] += flops;
    acc.wbytes[open_op] += wbytes;
}

void vm_prof_act_quant(double sec) {
    if (!on) return;
    acc.sec[VM_PROF_ACT_QUANT] += sec;
    acc.calls[VM_PROF_ACT_QUANT]++;
}

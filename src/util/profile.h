// Per-op profile of the forward pass (vmoer bench --profile): wall time by op kind, with the
// matrix products' multiply-adds and the weight bytes they read. Off unless vm_prof_enable(1);
// then every timed section costs two clock reads. Timing happens on the thread that runs the
// forward pass (kernels parallelise inside a section), so the counters need no locking.
#pragma once
#include <stdint.h>

typedef enum vm_prof_op {
    VM_PROF_EMBED,        // token embeddings
    VM_PROF_NORM,         // RMSNorms
    VM_PROF_ATTN_QKV,     // Q, K, V projections
    VM_PROF_ROPE,         // rotary embeddings (and Q/K norms)
    VM_PROF_ATTENTION,    // scores, softmax, values
    VM_PROF_ATTN_OUT,     // output projection
    VM_PROF_ROUTER,       // the router kind's forward (logits, selection, gates)
    VM_PROF_GATHER,       // tokens gathered per expert
    VM_PROF_EXP_GATE_UP,  // expert gate and up products
    VM_PROF_SWIGLU,       // SiLU(gate) * up
    VM_PROF_EXP_DOWN,     // expert down products
    VM_PROF_SCATTER,      // gated expert outputs summed back per token
    VM_PROF_FFN,          // dense FFN and shared experts (products and SwiGLU)
    VM_PROF_OUTPUT,       // output norm and logits
    VM_PROF_ACT_QUANT,    // int8 activations of the quantised products (quantise + pack)
    VM_PROF_RESIDUAL,     // residual adds
    VM_PROF_COUNT
} vm_prof_op;

typedef struct vm_prof {
    double sec[VM_PROF_COUNT];
    double flops[VM_PROF_COUNT];      // 2 x multiply-adds of the matrix products
    double wbytes[VM_PROF_COUNT];     // weight bytes the products read
    int64_t calls[VM_PROF_COUNT];
} vm_prof;

void vm_prof_enable(int on);
int vm_prof_enabled(void);
void vm_prof_reset(void);
void vm_prof_get(vm_prof *out);
const char *vm_prof_name(vm_prof_op op);

// t = vm_prof_begin(op); ...; vm_prof_end(t): the section's time goes to op, less the activation
// quantisation timed inside it (which goes to VM_PROF_ACT_QUANT). Sections do not nest otherwise.
typedef struct vm_prof_t { double t0, aq0; int op; } vm_prof_t;
vm_prof_t vm_prof_begin(vm_prof_op op);
void vm_prof_end(vm_prof_t t);
// Inside a product: its multiply-adds and weight bytes, charged to the open section's op; and the
// activation quantisation time.
void vm_prof_matmul(double flops, double wbytes);
void vm_prof_act_quant(double sec);

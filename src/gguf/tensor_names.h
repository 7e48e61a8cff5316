// The GGUF tensor names of llama.cpp's layout, written once: the model loaders, the converters and
// the generators build every name from this table instead of spelling format strings, so a name can
// only be wrong in one place. A block's tensor is "blk.<layer>.<stem>.<suffix>", a per-expert one
// (the older Mixtral layout) "blk.<layer>.<stem>.<expert>.<suffix>", a global one "<stem>.<suffix>";
// the suffix is "weight" or "bias".
#pragma once
#include <stddef.h>

typedef enum vm_tn {
    VM_TN_TOKEN_EMBD,
    VM_TN_OUTPUT_NORM,
    VM_TN_OUTPUT,
    VM_TN_ROPE_FREQS,
    VM_TN_ATTN_NORM,
    VM_TN_ATTN_Q,
    VM_TN_ATTN_K,
    VM_TN_ATTN_V,
    VM_TN_ATTN_OUTPUT,
    VM_TN_ATTN_Q_NORM,
    VM_TN_ATTN_K_NORM,
    VM_TN_ATTN_Q_A,
    VM_TN_ATTN_Q_A_NORM,
    VM_TN_ATTN_Q_B,
    VM_TN_ATTN_KV_A_MQA,
    VM_TN_ATTN_KV_A_NORM,
    VM_TN_ATTN_KV_B,
    VM_TN_ATTN_K_B,
    VM_TN_ATTN_V_B,
    VM_TN_FFN_NORM,
    VM_TN_FFN_GATE,
    VM_TN_FFN_UP,
    VM_TN_FFN_DOWN,
    VM_TN_FFN_GATE_INP,
    VM_TN_EXP_PROBS_B,
    VM_TN_FFN_GATE_EXPS,
    VM_TN_FFN_UP_EXPS,
    VM_TN_FFN_DOWN_EXPS,
    VM_TN_FFN_GATE_SHEXP,
    VM_TN_FFN_UP_SHEXP,
    VM_TN_FFN_DOWN_SHEXP,
    VM_TN_FFN_GATE_INP_SHEXP,
    VM_TN_COUNT
} vm_tn_id;

const char *vm_tn_stem(vm_tn_id t);   // "attn_q", ...; "?" out of range
// The name into buf (n bytes, cut if too small); returns buf. il < 0: a global tensor.
const char *vm_tn(char *buf, size_t n, vm_tn_id t, int il, const char *suffix);
// Per-expert: "blk.<il>.<stem>.<e>.<suffix>".
const char *vm_tn_exp(char *buf, size_t n, vm_tn_id t, int il, int e, const char *suffix);
// "blk.<il>.<rest>": a block's tensor whose stem is not a GGUF one (an adapter's router parameters).
const char *vm_tn_blk(char *buf, size_t n, int il, const char *rest);
// The reverse, for code that reads names (info, upcycle, quantize's per-layer rules): *il = N for a
// "blk.<N>." name (digits only, N < 2^31) and -1 otherwise; returns the id whose stem the name has
// next ("blk.<N>.<stem>." or "<stem>.") with *rest after that dot (the suffix, or "<e>.<suffix>" in
// the per-expert layout), or -1 with *rest after "blk.<N>." (the whole name for a global one).
int vm_tn_parse(const char *name, int *il, const char **rest);

// The GGUF tensor-name table (gguf/tensor_names.h).
#include "gguf/tensor_names.h"

#include <limits.h>
#include <string.h>

#include <stdio.h>

static const char *const stems[VM_TN_COUNT] = {
    [VM_TN_TOKEN_EMBD] = "token_embd",
    [VM_TN_OUTPUT_NORM] = "output_norm",
    [VM_TN_OUTPUT] = "output",
    [VM_TN_ROPE_FREQS] = "rope_freqs",
    [VM_TN_ATTN_NORM] = "attn_norm",
    [VM_TN_ATTN_Q] = "attn_q",
    [VM_TN_ATTN_K] = "attn_k",
    [VM_TN_ATTN_V] = "attn_v",
    [VM_TN_ATTN_OUTPUT] = "attn_output",
    [VM_TN_ATTN_Q_NORM] = "attn_q_norm",
    [VM_TN_ATTN_K_NORM] = "attn_k_norm",
    [VM_TN_ATTN_Q_A] = "attn_q_a",
    [VM_TN_ATTN_Q_A_NORM] = "attn_q_a_norm",
    [VM_TN_ATTN_Q_B] = "attn_q_b",
    [VM_TN_ATTN_KV_A_MQA] = "attn_kv_a_mqa",
    [VM_TN_ATTN_KV_A_NORM] = "attn_kv_a_norm",
    [VM_TN_ATTN_KV_B] = "attn_kv_b",
    [VM_TN_ATTN_K_B] = "attn_k_b",
    [VM_TN_ATTN_V_B] = "attn_v_b",
    [VM_TN_FFN_NORM] = "ffn_norm",
    [VM_TN_FFN_GATE] = "ffn_gate",
    [VM_TN_FFN_UP] = "ffn_up",
    [VM_TN_FFN_DOWN] = "ffn_down",
    [VM_TN_FFN_GATE_INP] = "ffn_gate_inp",
    [VM_TN_EXP_PROBS_B] = "exp_probs_b",
    [VM_TN_FFN_GATE_EXPS] = "ffn_gate_exps",
    [VM_TN_FFN_UP_EXPS] = "ffn_up_exps",
    [VM_TN_FFN_DOWN_EXPS] = "ffn_down_exps",
    [VM_TN_FFN_GATE_SHEXP] = "ffn_gate_shexp",
    [VM_TN_FFN_UP_SHEXP] = "ffn_up_shexp",
    [VM_TN_FFN_DOWN_SHEXP] = "ffn_down_shexp",
    [VM_TN_FFN_GATE_INP_SHEXP] = "ffn_gate_inp_shexp",
};

const char *vm_tn_stem(vm_tn_id t) { return (int)t >= 0 && t < VM_TN_COUNT ? stems[t] : "?"; }

const char *vm_tn(char *buf, size_t n, vm_tn_id t, int il, const char *suffix) {
    if (il < 0) snprintf(buf, n, "%s.%s", vm_tn_stem(t), suffix);
    else snprintf(buf, n, "blk.%d.%s.%s", il, vm_tn_stem(t), suffix);
    return buf;
}

const char *vm_tn_exp(char *buf, size_t n, vm_tn_id t, int il, int e, const char *suffix) {
    snprintf(buf, n, "blk.%d.%s.%d.%s", il, vm_tn_stem(t), e, suffix);
    return buf;
}

const char *vm_tn_blk(char *buf, size_t n, int il, const char *rest) {
    snprintf(buf, n, "blk.%d.%s", il, rest);
    return buf;
}

int vm_tn_parse(const char *name, int *il, const char **rest) {
    const char *p = name;
    *il = -1;
    if (!strncmp(p, "blk.", 4) && p[4] >= '0' && p[4] <= '9') {   // strict digits: no sign, space or "+"
        long v = 0;
        const char *q = p + 4;
        while (*q >= '0' && *q <= '9' && v <= INT_MAX) v = v * 10 + (*q++ - '0');
        if (*q == '.' && v <= INT_MAX) { *il = (int)v; p = q + 1; }
    }
    *rest = p;
    for (int t = 0; t < VM_TN_COUNT; t++) {   // the stem must end at a dot: attn_q is not attn_q_a
        const size_t n = strlen(stems[t]);
        if (!strncmp(p, stems[t], n) && p[n] == '.') { *rest = p + n + 1; return t; }
    }
    return -1;
}

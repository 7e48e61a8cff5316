// Type table: ggml's type ids with their block geometry (ggml.c type_traits, ggml-common.h blocks).
#include <string.h>
#include <strings.h>

#include "quant/quant.h"
#include "util/err.h"

// Ids 4, 5 (q4_2, q4_3), 31..33 (q4_0_4x4 ...) and 36..38 (iq4_nl_4x4 ...) were removed from ggml;
// they stay holes so a file using them is rejected rather than misread.
static const vm_type_traits traits_[VM_TYPE_COUNT] = {
    [VM_TYPE_F32]     = {"f32",     1,   4,   1},
    [VM_TYPE_F16]     = {"f16",     1,   2,   1},
    [VM_TYPE_Q4_0]    = {"q4_0",    32,  18,  1},  // fp16 d + 16 nibble bytes
    [VM_TYPE_Q4_1]    = {"q4_1",    32,  20,  0},  // fp16 d, m + 16
    [VM_TYPE_Q5_0]    = {"q5_0",    32,  22,  0},  // fp16 d + 4 qh + 16
    [VM_TYPE_Q5_1]    = {"q5_1",    32,  24,  0},  // fp16 d, m + 4 qh + 16
    [VM_TYPE_Q8_0]    = {"q8_0",    32,  34,  1},  // fp16 d + 32 int8
    [VM_TYPE_Q8_1]    = {"q8_1",    32,  36,  0},  // fp16 d, s + 32 int8
    [VM_TYPE_Q2_K]    = {"q2_K",    256, 84,  0},  // 16 scales + 64 qs + fp16 d, dmin
    [VM_TYPE_Q3_K]    = {"q3_K",    256, 110, 0},  // 32 hmask + 64 qs + 12 scales + fp16 d
    [VM_TYPE_Q4_K]    = {"q4_K",    256, 144, 1},  // fp16 d, dmin + 12 scales + 128 qs
    [VM_TYPE_Q5_K]    = {"q5_K",    256, 176, 1},  // fp16 d, dmin + 12 scales + 32 qh + 128 qs
    [VM_TYPE_Q6_K]    = {"q6_K",    256, 210, 1},  // 128 ql + 64 qh + 16 int8 scales + fp16 d
    [VM_TYPE_Q8_K]    = {"q8_K",    256, 292, 0},  // f32 d + 256 int8 + 16 int16 bsums
    [VM_TYPE_IQ2_XXS] = {"iq2_xxs", 256, 66,  0},
    [VM_TYPE_IQ2_XS]  = {"iq2_xs",  256, 74,  0},
    [VM_TYPE_IQ3_XXS] = {"iq3_xxs", 256, 98,  0},
    [VM_TYPE_IQ1_S]   = {"iq1_s",   256, 50,  0},
    [VM_TYPE_IQ4_NL]  = {"iq4_nl",  32,  18,  0},
    [VM_TYPE_IQ3_S]   = {"iq3_s",   256, 110, 0},
    [VM_TYPE_IQ2_S]   = {"iq2_s",   256, 82,  0},
    [VM_TYPE_IQ4_XS]  = {"iq4_xs",  256, 136, 0},
    [VM_TYPE_I8]      = {"i8",      1,   1,   0},
    [VM_TYPE_I16]     = {"i16",     1,   2,   0},
    [VM_TYPE_I32]     = {"i32",     1,   4,   0},
    [VM_TYPE_I64]     = {"i64",     1,   8,   0},
    [VM_TYPE_F64]     = {"f64",     1,   8,   0},
    [VM_TYPE_IQ1_M]   = {"iq1_m",   256, 56,  0},
    [VM_TYPE_BF16]    = {"bf16",    1,   2,   1},
    [VM_TYPE_TQ1_0]   = {"tq1_0",   256, 54,  0},
    [VM_TYPE_TQ2_0]   = {"tq2_0",   256, 66,  0},
    [VM_TYPE_MXFP4]   = {"mxfp4",   32,  17,  0},  // e8m0 exponent + 16 nibble bytes
};

const vm_type_traits *vm_type_get(int type) {
    if (type < 0 || type >= VM_TYPE_COUNT || !traits_[type].name) return NULL;
    return &traits_[type];
}

const char *vm_type_name(int type) {
    const vm_type_traits *t = vm_type_get(type);
    return t ? t->name : "?";
}

int vm_type_from_name(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < VM_TYPE_COUNT; i++)
        if (traits_[i].name && strcasecmp(traits_[i].name, name) == 0) return i;
    return -1;
}

size_t vm_type_row_size(vm_type type, int64_t n) {
    const vm_type_traits *t = vm_type_get((int)type);
    if (!t || n < 0 || n % t->blck_size != 0) return 0;
    uint64_t nblocks = (uint64_t)(n / t->blck_size);
    // 0 doubles as the error value, so an overflowing size is reported as 0 too
    if (nblocks != 0 && t->type_size > SIZE_MAX / nblocks) return 0;
    return (size_t)nblocks * t->type_size;
}

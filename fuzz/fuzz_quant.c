// libFuzzer target: the row quantisers and dequantisers (quant/quant.h) on arbitrary float32
// rows (NaN, Inf, subnormals, huge values) and arbitrary quantised blocks. Quantising must either
// fail with an error or write a block that dequantises to finite values; dequantising any bytes
// or dot with any bytes must not crash (NaN/Inf outputs are fine: an fp16 scale can hold them).
//   byte 0: type selector; the rest: row values (float32 LE) or raw blocks.
#include "fuzz_common.h"
#include "quant/quant.h"
#include "util/err.h"

#include <math.h>

static const vm_type types_[] = {VM_TYPE_F16, VM_TYPE_BF16, VM_TYPE_Q8_0, VM_TYPE_Q4_0,
                                 VM_TYPE_Q4_K, VM_TYPE_Q5_K, VM_TYPE_Q6_K};
#define N_TYPES (int)(sizeof types_ / sizeof types_[0])

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    vm_type type = types_[data[0] % N_TYPES];
    data++; size--;
    int64_t blk = vm_type_get((int)type)->blck_size;
    // a row of whole blocks from the input floats (zero-padded), at most 4 super-blocks
    int64_t n = ((int64_t)(size / 4) + blk - 1) / blk * blk;
    if (n == 0) n = blk;
    if (n > 4 * 256) n = 4 * 256 / blk * blk;
    float *x = calloc((size_t)n, sizeof *x), *y = calloc((size_t)n, sizeof *y);
    size_t rs = vm_type_row_size(type, n);
    uint8_t *q = calloc(rs ? rs : 1, 1);
    FUZZ_ASSERT(x && y && q && rs > 0);
    memcpy(x, data, size < (size_t)n * 4 ? size : (size_t)n * 4);

    int finite = 1;
    for (int64_t i = 0; i < n; i++) finite &= isfinite(x[i]) != 0;
    int rc = vm_quant_row(type, x, q, n);
    FUZZ_ASSERT(rc == 0 || rc == -1);
    if (rc == 0) {
        vm_dequant_row(type, q, y, n);
        // finite inputs within fp16 range give finite outputs for the block formats
        int small = 1;
        for (int64_t i = 0; i < n; i++) small &= fabsf(x[i]) < 60000.0f;
        if (finite && small && type != VM_TYPE_F16 && type != VM_TYPE_BF16)
            for (int64_t i = 0; i < n; i++) FUZZ_ASSERT(isfinite(y[i]));
    } else {
        FUZZ_ASSERT(vm_errmsg()[0]);
    }
    // the input bytes as quantised blocks
    memset(q, 0, rs);
    memcpy(q, data, size < rs ? size : rs);
    vm_dequant_row(type, q, y, n);
    volatile float dot = vm_vec_dot(type, q, x, n);
    (void)dot;
    free(x); free(y); free(q);
    vm_err_clear();
    return 0;
}

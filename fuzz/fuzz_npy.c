// libFuzzer target: the .npy reader (util/npy.h) on arbitrary bytes, through a temp file since it
// reads from a path. A successful read must describe exactly the data it returns, and a file the
// writer makes from that result must read back identically.
#include "fuzz_common.h"
#include "util/err.h"
#include "util/npy.h"

static volatile float npy_sink_;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[300], path2[300];
    fuzz_tmp_path(path, sizeof path, "npy");
    if (fuzz_write_file(path, data, size)) return 0;
    float *x = NULL;
    int ndim = -1;
    int64_t shape[4] = {0};
    if (vm_npy_read_f32(path, &x, &ndim, shape) == 0) {
        FUZZ_ASSERT(ndim >= 0 && ndim <= 4);
        size_t count = 1;
        for (int i = 0; i < ndim; i++) { FUZZ_ASSERT(shape[i] >= 0); count *= (size_t)shape[i]; }
        FUZZ_ASSERT(count <= size / 4);   // data bytes come from the file
        for (size_t i = 0; i < count; i++) npy_sink_ += x[i];   // every element readable (ASan)
        {   // also 0-d arrays: shape ()
            fuzz_tmp_path(path2, sizeof path2, "npy2");
            if (vm_npy_write_f32(path2, x, ndim, shape) == 0) {
                float *y = NULL; int nd2; int64_t sh2[4];
                FUZZ_ASSERT(vm_npy_read_f32(path2, &y, &nd2, sh2) == 0);
                FUZZ_ASSERT(nd2 == ndim && !memcmp(sh2, shape, (size_t)ndim * sizeof *shape));
                FUZZ_ASSERT(count == 0 || !memcmp(x, y, count * sizeof *x));
                free(y);
            }
            remove(path2);
        }
    } else {
        FUZZ_ASSERT(vm_errmsg()[0]);
    }
    free(x);
    remove(path);
    vm_err_clear();
    return 0;
}

// libFuzzer target: the safetensors reader. First byte picks the entry point:
//   0: vm_st_open_mem on the rest (the parser alone)
//   1: the rest written as <tmp>/model.safetensors, vm_st_open_dir (mmap path, empty files)
//   2: a sharded folder: parts separated by FUZZ_SEP are model.safetensors.index.json, then
//      s1.safetensors, s2.safetensors, ... (the seeds' index names those), vm_st_open_dir
// Whatever opens is checked against the promises of safetensors.h: sorted unique names, sizes
// equal to shape x dtype, data inside its file, and F32/F16/BF16 tensors convert to floats.
#include "fuzz_common.h"
#include "convert/safetensors.h"
#include "util/err.h"

static volatile float st_sink_;

static void st_walk(const vm_st *s, const uint8_t *buf, size_t size) {
    FUZZ_ASSERT(s->n >= 0 && (s->n == 0 || s->t));
    for (int i = 0; i < s->n; i++) {
        const vm_st_tensor *t = &s->t[i];
        FUZZ_ASSERT(t->name && t->name[0]);
        if (i) FUZZ_ASSERT(strcmp(s->t[i - 1].name, t->name) < 0);
        FUZZ_ASSERT(vm_st_find(s, t->name) == t);
        FUZZ_ASSERT(t->n_dims >= 0 && t->n_dims <= VM_ST_MAX_DIMS);
        FUZZ_ASSERT(t->file >= 0 && t->file < s->n_files);
        int64_t ne = vm_st_nelements(t);
        FUZZ_ASSERT(ne >= 0 && (size_t)ne * vm_st_dtype_size(t->dtype) == t->nbytes);
        const uint8_t *d = t->data;
        if (buf) FUZZ_ASSERT(d >= buf + 8 && (size_t)(d - buf) + t->nbytes <= size);
        if (t->nbytes) st_sink_ += (float)(d[0] ^ d[t->nbytes - 1]);   // ASan: inside the mapping
        FUZZ_ASSERT(strcmp(vm_st_dtype_name(t->dtype), "?"));
        if (t->dtype == VM_ST_F32 || t->dtype == VM_ST_F16 || t->dtype == VM_ST_BF16) {
            float *f = malloc((size_t)ne * sizeof *f + 1);
            FUZZ_ASSERT(f);
            FUZZ_ASSERT(vm_st_read_f32(t, f) == 0);
            if (ne) st_sink_ += f[0] + f[ne - 1];
            free(f);
        } else {
            float x;
            FUZZ_ASSERT(vm_st_read_f32(t, &x) == -1 && vm_errmsg()[0]);
        }
    }
    FUZZ_ASSERT(vm_st_find(s, "no.such.tensor") == NULL);
}

static void st_clear_dir(const char *dir) {
    static const char *const names[] = {"model.safetensors", "model.safetensors.index.json",
                                        "s1.safetensors", "s2.safetensors", "s3.safetensors"};
    char p[512];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) { fuzz_join(p, sizeof p, dir, names[i]); remove(p); }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int mode = data[0] % 3;
    data++; size--;
    vm_st *s = NULL;
    if (mode == 0) {
        s = vm_st_open_mem(data, size, "fuzz.safetensors");
        if (s) st_walk(s, data, size);
    } else {
        char dir[300], p[512];
        if (fuzz_tmp_dir(dir, sizeof dir, "st")) return 0;
        st_clear_dir(dir);
        if (mode == 1) {
            fuzz_join(p, sizeof p, dir, "model.safetensors");
            if (fuzz_write_file(p, data, size)) return 0;
        } else {
            const uint8_t *part[4];
            size_t len[4];
            int n = fuzz_split(data, size, part, len, 4);
            for (int i = 0; i < n; i++) {
                char name[32];
                if (i == 0) snprintf(name, sizeof name, "model.safetensors.index.json");
                else snprintf(name, sizeof name, "s%d.safetensors", i);
                fuzz_join(p, sizeof p, dir, name);
                if (fuzz_write_file(p, part[i], len[i])) return 0;
            }
        }
        s = vm_st_open_dir(dir);
        if (s) st_walk(s, NULL, 0);
        st_clear_dir(dir);
    }
    if (!s) FUZZ_ASSERT(vm_errmsg()[0]);
    vm_st_free(s);
    vm_err_clear();
    return 0;
}

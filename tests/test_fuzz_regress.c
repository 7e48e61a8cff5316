// Replays every input the fuzzers ever crashed on (tests/data/fuzz/<target>_*.bin) and every seed
// of the committed corpora (fuzz/corpus/<target>/) through the fuzz targets' own code, built here
// with the normal compiler (and ASan+UBSan in the SAN build): no clang or libFuzzer needed. A
// target's invariant violation aborts with "FUZZ_ASSERT failed" after the "replay <file>" line.
#include "test.h"

#include <dirent.h>
#include <string.h>

#define LLVMFuzzerTestOneInput fuzz_gguf_one
#include "../fuzz/fuzz_gguf.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_dataset_one
#include "../fuzz/fuzz_dataset.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_tokenizer_one
#define LLVMFuzzerInitialize fuzz_tokenizer_init
#include "../fuzz/fuzz_tokenizer.c"
#undef LLVMFuzzerTestOneInput
#undef LLVMFuzzerInitialize
#define LLVMFuzzerTestOneInput fuzz_llama2c_one
#include "../fuzz/fuzz_llama2c.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_npy_one
#include "../fuzz/fuzz_npy.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_metrics_one
#include "../fuzz/fuzz_metrics.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_quant_one
#include "../fuzz/fuzz_quant.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_safetensors_one
#include "../fuzz/fuzz_safetensors.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_convert_hf_one
#include "../fuzz/fuzz_convert_hf.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_bpe_one
#define LLVMFuzzerInitialize fuzz_bpe_init
#include "../fuzz/fuzz_bpe.c"
#undef LLVMFuzzerTestOneInput
#undef LLVMFuzzerInitialize
#define LLVMFuzzerTestOneInput fuzz_hf_json_one
#include "../fuzz/fuzz_hf_json.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_chat_one
#include "../fuzz/fuzz_chat.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_checkpoint_one
#include "../fuzz/fuzz_checkpoint.c"
#undef LLVMFuzzerTestOneInput

typedef struct target { const char *name; int (*one)(const uint8_t *, size_t); } target;

static const target targets_[] = {
    {"gguf", fuzz_gguf_one}, {"dataset", fuzz_dataset_one}, {"tokenizer", fuzz_tokenizer_one},
    {"llama2c", fuzz_llama2c_one}, {"npy", fuzz_npy_one}, {"metrics", fuzz_metrics_one},
    {"quant", fuzz_quant_one}, {"safetensors", fuzz_safetensors_one}, {"convert_hf", fuzz_convert_hf_one},
    {"bpe", fuzz_bpe_one}, {"hf_json", fuzz_hf_json_one}, {"chat", fuzz_chat_one},
    {"checkpoint", fuzz_checkpoint_one},
};

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    uint8_t *buf = NULL;
    size_t cap = 0, len = 0, r;
    do {
        if (len == cap) {
            uint8_t *p = realloc(buf, cap = cap ? 2 * cap : 4096);
            if (!p) { free(buf); fclose(f); return NULL; }
            buf = p;
        }
        r = fread(buf + len, 1, cap - len, f);
        len += r;
    } while (r > 0);
    fclose(f);
    *n = len;
    return buf;
}

static int replay(const target *t, const char *path) {
    size_t n;
    uint8_t *buf = slurp(path, &n);
    CHECK(buf != NULL, "cannot read %s", path);
    if (!buf) return 0;
    fprintf(stderr, "replay %s\n", path);
    int rc = t->one(buf, n);   // aborts on an invariant violation; ASan/UBSan report on their own
    CHECK(rc == 0, "%s: fuzz target returned %d", path, rc);
    free(buf);
    return 1;
}

// Every regular file in dir whose name starts with prefix; returns how many were replayed.
static int replay_dir(const target *t, const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || strncmp(e->d_name, prefix, strlen(prefix))) continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        count += replay(t, path);
    }
    closedir(d);
    return count;
}

// Found by fuzz_llama2c: Q8_0 of a NaN weight converted NaN to int8 (undefined behaviour, which
// gcc's UBSan does not check by default, so it is tested directly): non-finite rows must fail.
static void test_quant_non_finite(void) {
    static const vm_type block_types[] = {VM_TYPE_Q8_0, VM_TYPE_Q4_0, VM_TYPE_Q4_K, VM_TYPE_Q5_K, VM_TYPE_Q6_K};
    const float bad[3] = {NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof block_types / sizeof block_types[0]; i++)
        for (int b = 0; b < 3; b++) {
            float x[256] = {0};
            uint8_t q[512];
            x[17] = bad[b];
            vm_err_clear();
            CHECK(vm_quant_row(block_types[i], x, q, 256) == -1 && strstr(vm_errmsg(), "non-finite"),
                  "%s: quantising %g: %s", vm_type_name(block_types[i]), bad[b], vm_errmsg());
        }
}

// Found by fuzz_hf_json: one huge id in a tiny tokenizer.json made the reader allocate 2^28
// entries (libFuzzer's malloc limit reports it; gcc's build would only be slow), so the limit
// itself is tested: a too sparse vocabulary is refused before any allocation.
static void test_hf_json_sparse(void) {
    char path[300];
    fuzz_tmp_path(path, sizeof path, "sparse_tokenizer.json");
    static const char j[] = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":268435455},\"merges\":[]},"
                            "\"pre_tokenizer\":{\"type\":\"ByteLevel\"}}";
    CHECK(fuzz_write_file(path, (const uint8_t *)j, sizeof j - 1) == 0, "cannot write %s", path);
    vm_hf_vocab h;
    vm_err_clear();
    CHECK(vm_hf_vocab_read(path, &h) == -1 && strstr(vm_errmsg(), "too sparse"), "sparse ids: %s", vm_errmsg());
    remove(path);
}

int main(void) {
    test_quant_non_finite();
    test_hf_json_sparse();
    int argc = 0;
    char **argv = NULL;
    fuzz_tokenizer_init(&argc, &argv);
    fuzz_bpe_init(&argc, &argv);
    int crashes = 0;
    for (size_t i = 0; i < sizeof targets_ / sizeof targets_[0]; i++) {
        const target *t = &targets_[i];
        char dir[256], prefix[64];
        snprintf(dir, sizeof dir, "fuzz/corpus/%s", t->name);
        int seeds = replay_dir(t, dir, "");
        CHECK(seeds > 0, "no seeds in %s (run from the repository root)", dir);
        snprintf(prefix, sizeof prefix, "%s_", t->name);
        int c = replay_dir(t, "tests/data/fuzz", prefix);
        crashes += c;
        printf("%-11s %3d seeds, %d former crashes replayed\n", t->name, seeds, c);
    }
    CHECK(crashes >= 1, "no former crash inputs found in tests/data/fuzz");
    return TEST_SUMMARY();
}

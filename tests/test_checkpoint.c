// Fit/train checkpoints against tampering (train/checkpoint.h): every field of a valid checkpoint
// set to an out-of-range, inconsistent, NaN, infinite or negative value must be refused with one
// line "checkpoint P: corrupt: ...", never read into a run; every single-byte change of a real
// checkpoint must either be refused or read back as a valid state (the fuzz target's invariants).
// The fixture run is fuzz/fuzz_checkpoint.c's. `test_checkpoint --seeds DIR` writes that target's
// seed corpus (fuzz/make_corpus.sh).
#include "test.h"

#define LLVMFuzzerTestOneInput fuzz_checkpoint_one
#include "../fuzz/fuzz_checkpoint.c"
#undef LLVMFuzzerTestOneInput

#include <stdint.h>

enum { N_INTS = 7, N_F64 = 8, N_TENSORS = 7 };
static const char *const int_keys[N_INTS] = { "ckpt.step", "ckpt.adam_step", "ckpt.epochs_run", "ckpt.best_epoch",
                                              "ckpt.bad", "ckpt.stopped", "ckpt.ep_n" };
static const char *const f64_names[N_F64] = { "best_val", "best_acc", "val_init", "acc_init", "ep_ce", "ep_obj",
                                              "ce_first", "ce_last" };
static const char *const tensor_names[N_TENSORS] = { "p.0.w", "p.0.m", "p.0.v", "p.1.w", "p.1.m", "p.1.v", "best" };
static const int tensor_len[N_TENSORS] = { 3, 3, 3, 4, 4, 4, CKPT_FIX_NBEST };

// Every value a checkpoint file holds, so that any of them can be set to anything.
typedef struct raw_ckpt {
    unsigned sel;                // the fixture run that reads it (fuzz_checkpoint.c)
    int64_t ints[N_INTS];
    double f64[N_F64];
    float t[N_TENSORS][CKPT_FIX_NBEST];
} raw_ckpt;

// The file format of vm_ckpt_write, restated (checked byte for byte against it in test_format).
static int raw_write(const char *path, const raw_ckpt *r) {
    vm_gguf_writer *w = vm_gguf_writer_init();
    vm_gguf_set_str(w, "general.type", "vmoer-fit-checkpoint");
    vm_gguf_set_u64(w, "ckpt.fingerprint", CKPT_FIX_FINGERPRINT);
    for (int k = 0; k < N_INTS; k++) vm_gguf_set_i64(w, int_keys[k], r->ints[k]);
    vm_gguf_set_arr(w, "ckpt.f64", VM_GGUF_TYPE_FLOAT64, r->f64, N_F64);
    int rc = 0;
    for (int k = 0; k < N_TENSORS && !rc; k++) {
        const int64_t ne[1] = { tensor_len[k] };
        rc = vm_gguf_add_tensor(w, tensor_names[k], VM_TYPE_F32, 1, ne, r->t[k], (size_t)tensor_len[k] * sizeof(float));
    }
    if (!rc) rc = vm_gguf_write(w, path);
    vm_gguf_writer_free(w);
    return rc;
}

// Valid checkpoints of the fixture's runs: a fit with validation after its first epoch, one
// without validation inside its first epoch, an early-stopped fit, and a `vmoer train` run.
static raw_ckpt valid_ckpt(int which) {
    raw_ckpt r;
    memset(&r, 0, sizeof r);
    static const struct { unsigned sel; int64_t ints[N_INTS]; double f64[N_F64]; } v[4] = {
        { 1, { 4, 4, 1, 1, 0, 0, 4 }, { 0.6, 0.5, 0.7, 0.5, 2.5, 2.6, 0.8, 0.8 } },
        { 0, { 2, 2, 0, 0, 0, 0, 8 }, { INFINITY, NAN, NAN, NAN, 5.0, 5.1, 0, 0 } },
        { 1, { 6, 6, 2, 0, 2, 1, 0 }, { 0.7, 0.5, 0.7, 0.5, 0, 0, 0.9, 0.85 } },
        { 2, { 3, 3, 0, 2, 0, 0, 0 }, { 1.2, 0, 1.5, 0, 0, 0, 2.0, 1.8 } },
    };
    r.sel = v[which].sel;
    memcpy(r.ints, v[which].ints, sizeof r.ints);
    memcpy(r.f64, v[which].f64, sizeof r.f64);
    for (int k = 0; k < N_TENSORS; k++)
        for (int j = 0; j < tensor_len[k]; j++)   // second moments (p.*.v) positive, the rest of both signs
            r.t[k][j] = (k == 2 || k == 5) ? 0.01f * (float)(j + 1) : 0.1f * (float)(j + 1) * (j % 2 ? -1.0f : 1.0f);
    return r;
}

// Reads r back through the fixture run; 0 ok, -1 refused (message checked by the caller).
static int read_back(const raw_ckpt *r, const char *path, vm_ckpt_state *s) {
    ckpt_fix f;
    if (ckpt_fix_init(&f, r->sel)) return -2;
    memset(s, 0, sizeof *s);
    s->fingerprint = CKPT_FIX_FINGERPRINT;
    vm_err_clear();
    int rc = vm_ckpt_read(path, s, &f.opt, f.best, CKPT_FIX_NBEST, &f.ex);
    if (rc == 0) ckpt_fix_assert_valid(&f, s);
    ckpt_fix_free(&f);
    return rc;
}

// r must be refused with one line naming the file, "corrupt" and (when given) the field.
static void expect_corrupt(const raw_ckpt *r, const char *path, const char *what, const char *field) {
    vm_ckpt_state s;
    CHECK(raw_write(path, r) == 0, "write: %s", vm_errmsg());
    const int rc = read_back(r, path, &s);
    const char *msg = vm_errmsg();
    CHECK(rc == -1 && strstr(msg, "corrupt") && strstr(msg, path) && !strchr(msg, '\n') && (!field || strstr(msg, field)),
          "%s: rc %d, message '%s'", what, rc, msg);
}

static int same_double(double a, double b) { return (isnan(a) && isnan(b)) || a == b; }

// Valid checkpoints read back as written; the test's writer makes the real writer's bytes.
static void test_valid(const char *dir) {
    char path[400], path2[400];
    snprintf(path, sizeof path, "%s/valid.ckpt", dir);
    snprintf(path2, sizeof path2, "%s/real.ckpt", dir);
    for (int which = 0; which < 4; which++) {
        raw_ckpt r = valid_ckpt(which);
        vm_ckpt_state s;
        CHECK(raw_write(path, &r) == 0 && read_back(&r, path, &s) == 0, "valid checkpoint %d refused: %s", which, vm_errmsg());
        CHECK(s.step == r.ints[0] && s.epochs_run == r.ints[2] && s.best_epoch == r.ints[3] && s.bad == r.ints[4] &&
              s.stopped == r.ints[5] && s.ep_n == r.ints[6], "valid checkpoint %d: counters differ", which);
        const double got[N_F64] = { s.best_val, s.best_acc, s.val_init, s.acc_init, s.ep_ce, s.ep_obj, s.ce_first, s.ce_last };
        for (int k = 0; k < N_F64; k++) CHECK(same_double(got[k], r.f64[k]), "valid checkpoint %d: %s differs", which, f64_names[k]);
        // the same state through vm_ckpt_write: byte-identical file
        ckpt_fix f;
        CHECK(ckpt_fix_init(&f, r.sel) == 0, "fixture");
        memcpy(f.w0, r.t[0], sizeof f.w0); memcpy(f.opt.m[0], r.t[1], sizeof f.w0); memcpy(f.opt.v[0], r.t[2], sizeof f.w0);
        memcpy(f.w1, r.t[3], sizeof f.w1); memcpy(f.opt.m[1], r.t[4], sizeof f.w1); memcpy(f.opt.v[1], r.t[5], sizeof f.w1);
        f.opt.step = r.ints[1];
        vm_ckpt_state ws = s;
        ws.fingerprint = CKPT_FIX_FINGERPRINT;
        CHECK(vm_ckpt_write(path2, &ws, &f.opt, r.t[6], CKPT_FIX_NBEST) == 0, "vm_ckpt_write: %s", vm_errmsg());
        ckpt_fix_free(&f);
        vm_mmap a, b;
        CHECK(vm_mmap_open(&a, path) == 0 && vm_mmap_open(&b, path2) == 0 && a.size == b.size &&
              !memcmp(a.data, b.data, a.size), "checkpoint %d: the test's writer and vm_ckpt_write differ", which);
        vm_mmap_close(&a); vm_mmap_close(&b);
    }
}

// Every counter: out of range, or off by one from what the other counters say.
static void test_counters(const char *dir) {
    char path[400], what[200];
    snprintf(path, sizeof path, "%s/int.ckpt", dir);
    for (int which = 0; which < 4; which++) {
        const raw_ckpt base = valid_ckpt(which);
        for (int k = 0; k < N_INTS; k++) {
            const int64_t v = base.ints[k];
            int64_t bad[] = { -1, INT64_MIN, INT64_MAX, (int64_t)1 << 62, (int64_t)1 << 31, v + 1, v - 1 };
            int n_bad = sizeof bad / sizeof *bad;
            if (which == 3 && k == 3) n_bad -= 2;   // train's best step: any step up to the current one is valid
            for (int i = 0; i < n_bad; i++) {
                if (bad[i] == v) continue;
                raw_ckpt r = base;
                r.ints[k] = bad[i];
                snprintf(what, sizeof what, "checkpoint %d, %s = %lld", which, int_keys[k], (long long)bad[i]);
                // a range error names the field; a consistency error may name the field it disagrees with
                expect_corrupt(&r, path, what, i < 5 ? int_keys[k] : "ckpt.");
            }
        }
    }
}

// Every running number: NaN, infinite, negative, or beyond its range.
static void test_numbers(const char *dir) {
    char path[400], what[200];
    snprintf(path, sizeof path, "%s/f64.ckpt", dir);
    for (int which = 0; which < 4; which++) {
        const raw_ckpt base = valid_ckpt(which);
        for (int k = 0; k < N_F64; k++) {
            double bad[] = { NAN, INFINITY, -INFINITY, -1.0, 1e300, 1.5 };
            for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
                if (same_double(bad[i], base.f64[k])) continue;
                if (k == 5 && (bad[i] == -1.0 || bad[i] == 1.5)) continue;   // ep_obj: the objective may be negative
                if (which == 1 && (k == 6 || k == 7) && isnan(bad[i])) continue;   // no epoch finished: not set yet
                if (which == 3 && (k == 1 || k == 3 || k == 4 || k == 5)) continue;  // unused by `vmoer train`
                if (bad[i] == 1.5 && k != 1 && k != 3) continue;   // only accuracies have an upper bound of 1
                if (which == 3 && bad[i] == 1.5) continue;
                raw_ckpt r = base;
                r.f64[k] = bad[i];
                snprintf(what, sizeof what, "checkpoint %d, %s = %g", which, f64_names[k], bad[i]);
                expect_corrupt(&r, path, what, f64_names[k]);
            }
        }
        if (base.ints[6] > 0) continue;
        raw_ckpt r = base;   // sums of an epoch with no example yet
        r.f64[4] = 1.0;
        if (which != 3) expect_corrupt(&r, path, "ep_ce without examples", "ep_ce");
    }
    raw_ckpt r = valid_ckpt(0);   // the best validation NLL above the initial one
    r.f64[0] = r.f64[2] + 0.1;
    expect_corrupt(&r, path, "best_val > val_init", "best_val");
}

// Parameters, moments and the kept best: NaN or infinite anywhere, a negative second moment.
static void test_tensors(const char *dir) {
    char path[400], what[200];
    snprintf(path, sizeof path, "%s/tensor.ckpt", dir);
    for (int which = 0; which < 4; which++)
        for (int k = 0; k < N_TENSORS; k++) {
            const float bad[] = { NAN, INFINITY, -INFINITY, -1e-3f };
            for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
                if (bad[i] == -1e-3f && k != 2 && k != 5) continue;   // only second moments must be >= 0
                raw_ckpt r = valid_ckpt(which);
                r.t[k][tensor_len[k] - 1] = bad[i];
                snprintf(what, sizeof what, "checkpoint %d, %s[last] = %g", which, tensor_names[k], (double)bad[i]);
                expect_corrupt(&r, path, what, tensor_names[k]);
            }
        }
}

static uint8_t *file_bytes(const char *path, size_t *n) {
    vm_mmap m;
    if (vm_mmap_open(&m, path)) return NULL;
    uint8_t *b = malloc(m.size + 1);
    if (b) memcpy(b + 1, m.data, m.size);
    *n = m.size + 1;
    vm_mmap_close(&m);
    return b;
}

// The reproducer (8 bytes 0xff over ckpt.step's value), then every single-byte change of a
// real checkpoint through the fuzz target: refused with one line, or read as a valid state.
static void test_bytes(const char *dir) {
    char path[400];
    snprintf(path, sizeof path, "%s/bytes.ckpt", dir);
    raw_ckpt r = valid_ckpt(0);
    CHECK(raw_write(path, &r) == 0, "write: %s", vm_errmsg());
    size_t n = 0;
    uint8_t *b = file_bytes(path, &n);
    CHECK(b != NULL, "cannot read %s", path);
    if (!b) return;
    b[0] = (uint8_t)r.sel;
    uint8_t *key = memmem(b + 1, n - 1, "ckpt.step", 9);
    CHECK(key != NULL, "ckpt.step not found");
    if (key) {
        uint8_t *m = malloc(n);
        memcpy(m, b, n);
        memset(key - b + m + 9 + 4, 0xff, 8);   // key, then its u32 type, then the value
        CHECK(fuzz_write_file(path, m + 1, n - 1) == 0, "write");
        ckpt_fix f;
        vm_ckpt_state s = { .fingerprint = CKPT_FIX_FINGERPRINT };
        CHECK(ckpt_fix_init(&f, r.sel) == 0, "fixture");
        CHECK(vm_ckpt_read(path, &s, &f.opt, f.best, CKPT_FIX_NBEST, &f.ex) == -1 &&
              strstr(vm_errmsg(), "corrupt: ckpt.step = -1"), "step -1: %s", vm_errmsg());
        ckpt_fix_free(&f);
        free(m);
    }
    int runs = 0;
    for (size_t i = 1; i < n; i++) {
        const uint8_t orig = b[i], vals[4] = { 0x00, 0xff, (uint8_t)(orig ^ 0x01), (uint8_t)(orig ^ 0x80) };
        for (int k = 0; k < 4; k++) {
            if (vals[k] == orig) continue;
            b[i] = vals[k];
            fuzz_checkpoint_one(b, n);   // aborts on an invariant violation
            runs++;
        }
        b[i] = orig;
    }
    CHECK(runs > 1000, "only %d single-byte mutations", runs);
    free(b);
}

// The fuzz target's seeds: the selector byte, then a valid checkpoint of that run.
static int write_seeds(const char *out) {
    char path[400], seed[400];
    snprintf(path, sizeof path, "%s/.tmp.ckpt", out);
    for (int which = 0; which < 4; which++) {
        raw_ckpt r = valid_ckpt(which);
        size_t n = 0;
        uint8_t *b = raw_write(path, &r) == 0 ? file_bytes(path, &n) : NULL;
        if (!b) { fprintf(stderr, "seeds: %s\n", vm_errmsg()); return 1; }
        b[0] = (uint8_t)r.sel;
        static const char *const names[4] = { "fit_val", "fit_noval", "fit_stopped", "train" };
        snprintf(seed, sizeof seed, "%s/%s", out, names[which]);
        if (fuzz_write_file(seed, b, n)) { free(b); return 1; }
        free(b);
    }
    remove(path);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--seeds")) return write_seeds(argv[2]);
    char dir[300];
    if (fuzz_tmp_dir(dir, sizeof dir, "ckpt_test")) { fprintf(stderr, "no temp folder\n"); return 1; }
    test_valid(dir);
    test_counters(dir);
    test_numbers(dir);
    test_tensors(dir);
    test_bytes(dir);
    static const char *const files[] = { "valid.ckpt", "real.ckpt", "int.ckpt", "f64.ckpt", "tensor.ckpt", "bytes.ckpt" };
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char p[400];
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        remove(p);
    }
    rmdir(dir);
    return TEST_SUMMARY();
}

// GGUF reader/writer: hand-built files (bytes laid out from the spec, ggml/docs/gguf.md, not by our
// writer), hostile variants of them, a writer round trip, and the real vocabulary files in shared/.
#include "test.h"

#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "quant/tensor.h"
#include "util/err.h"

// ---- byte builder ----

typedef struct bb { uint8_t *p; size_t n, cap; } bb;

static void bb_put(bb *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    if (n) memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void bb_u8(bb *b, uint8_t v) { bb_put(b, &v, 1); }
static void bb_u32(bb *b, uint32_t v) { bb_put(b, &v, 4); }
static void bb_u64(bb *b, uint64_t v) { bb_put(b, &v, 8); }
static void bb_str(bb *b, const char *s) { bb_u64(b, strlen(s)); bb_put(b, s, strlen(s)); }
static void bb_zeros(bb *b, size_t n) { while (n--) bb_u8(b, 0); }
static void bb_align(bb *b, size_t a) { bb_zeros(b, (a - b->n % a) % a); }
static void bb_free(bb *b) { free(b->p); memset(b, 0, sizeof *b); }

// kv helpers: key, type, value
static void kv_u32(bb *b, const char *k, uint32_t v) { bb_str(b, k); bb_u32(b, 4); bb_u32(b, v); }
static void kv_str(bb *b, const char *k, const char *v) { bb_str(b, k); bb_u32(b, 8); bb_str(b, v); }

typedef struct tspec { const char *name; uint32_t n_dims; int64_t ne[4]; uint32_t type; uint64_t offset; } tspec;

// Header + kv bytes + tensor infos + aligned data section of data_bytes (a byte pattern).
static void emit(bb *b, uint32_t version, uint64_t n_t, uint64_t n_kv, const bb *kvs, const tspec *ts, int nts,
                 size_t align, size_t data_bytes) {
    bb_put(b, "GGUF", 4);
    bb_u32(b, version);
    bb_u64(b, n_t);
    bb_u64(b, n_kv);
    bb_put(b, kvs->p, kvs->n);
    for (int i = 0; i < nts; i++) {
        bb_str(b, ts[i].name);
        bb_u32(b, ts[i].n_dims);
        for (uint32_t d = 0; d < ts[i].n_dims && d < 8; d++) bb_u64(b, d < 4 ? (uint64_t)ts[i].ne[d] : 1);
        bb_u32(b, ts[i].type);
        bb_u64(b, ts[i].offset);
    }
    bb_align(b, align);
    for (size_t i = 0; i < data_bytes; i++) bb_u8(b, (uint8_t)(i * 7 + 1));
}

// The reference valid file: 2 kvs, "a" f32 [8,2] at 0 (64 B), "b" f16 [16] at 64 (32 B): 96 data bytes,
// the last tensor ending exactly at the end of the file (so every shorter prefix is invalid).
static const tspec base_ts[2] = {
    {"a", 2, {8, 2, 1, 1}, 0, 0},
    {"b", 1, {16, 1, 1, 1}, 1, 64},
};

static void base_kvs(bb *k) {
    kv_str(k, "general.architecture", "llama");
    kv_u32(k, "llama.block_count", 7);
}

static void make_base(bb *b) {
    bb k = {0};
    base_kvs(&k);
    emit(b, 3, 2, 2, &k, base_ts, 2, 32, 96);
    bb_free(&k);
}

static int has(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

// Expects open_mem to fail with a one-line message naming the buffer and containing `what`.
static void expect_fail_(const bb *b, const char *what, const char *label, int line) {
    vm_err_clear();
    vm_gguf *g = vm_gguf_open_mem(b->p, b->n, "hostile.gguf");
    const char *m = vm_errmsg();
    CHECK(g == NULL, "line %d %s: opened", line, label);
    CHECK(strncmp(m, "hostile.gguf: ", 14) == 0 && !strchr(m, '\n'), "line %d %s: message '%s'", line, label, m);
    CHECK(has(m, what), "line %d %s: message '%s' lacks '%s'", line, label, m, what);
    vm_gguf_free(g);
}
#define expect_fail(b, what, label) expect_fail_((b), (what), (label), __LINE__)

// Builds base variant with custom kvs (count nkv) and tensors.
static void expect_fail_kv(const bb *k, uint64_t nkv, const char *what, const char *label) {
    bb b = {0};
    emit(&b, 3, 2, nkv, k, base_ts, 2, 32, 96);
    expect_fail(&b, what, label);
    bb_free(&b);
}

static void expect_fail_ts(const tspec *ts, int nts, size_t data, const char *what, const char *label) {
    bb k = {0}, b = {0};
    base_kvs(&k);
    emit(&b, 3, (uint64_t)nts, 2, &k, ts, nts, 32, data);
    expect_fail(&b, what, label);
    bb_free(&k); bb_free(&b);
}

static void test_valid(void) {
    bb b = {0};
    make_base(&b);
    vm_gguf *g = vm_gguf_open_mem(b.p, b.n, "base.gguf");
    CHECK(g != NULL, "base file: %s", vm_errmsg());
    if (!g) { bb_free(&b); return; }
    CHECK(g->version == 3 && g->n_kv == 2 && g->n_tensors == 2, "header");
    CHECK(g->alignment == 32 && g->data_offset % 32 == 0 && g->data_offset + 96 == b.n, "data offset %zu", g->data_offset);
    const vm_gguf_tensor_info *a = vm_gguf_find_tensor(g, "a"), *bt = vm_gguf_find_tensor(g, "b");
    CHECK(a && bt && !vm_gguf_find_tensor(g, "c"), "find tensors");
    if (a && bt) {
        CHECK(a->t.data == b.p + g->data_offset && bt->t.data == b.p + g->data_offset + 64, "zero-copy pointers");
        CHECK(a->nbytes == 64 && bt->nbytes == 32, "nbytes %zu %zu", a->nbytes, bt->nbytes);
        CHECK(a->t.ne[0] == 8 && a->t.ne[1] == 2 && a->t.n_dims == 2 && a->t.nb[1] == 32, "a shape");
        CHECK(bt->t.type == VM_TYPE_F16 && bt->t.n_dims == 1 && strcmp(bt->t.name, "b") == 0, "b type/name");
    }
    int64_t v = 0;
    CHECK(vm_gguf_get_i64(g, "llama.block_count", &v) == 0 && v == 7, "get_i64");
    CHECK(vm_gguf_get_i64(g, "nope", &v) == 1 && v == 7, "absent leaves out untouched");
    char *s = NULL;
    CHECK(vm_gguf_get_str(g, "general.architecture", &s) == 0 && s && strcmp(s, "llama") == 0, "get_str");
    free(s);
    CHECK(vm_gguf_get_str(g, "llama.block_count", &s) == -1 && has(vm_errmsg(), "llama.block_count"), "str of u32");
    CHECK(vm_gguf_find_key(g, "llama.block_count") == 1 && vm_gguf_find_key(g, "x") == -1, "find_key");
    vm_gguf_free(g);

    // version 2 has the same layout and is accepted
    b.p[4] = 2;
    g = vm_gguf_open_mem(b.p, b.n, "v2.gguf");
    CHECK(g && g->version == 2, "v2 accepted: %s", vm_errmsg());
    vm_gguf_free(g);
    bb_free(&b);

    // a 63-byte name is the longest allowed
    char n63[64];
    memset(n63, 'x', 63); n63[63] = 0;
    tspec ts[2] = {base_ts[0], base_ts[1]};
    ts[1].name = n63;
    bb k = {0};
    base_kvs(&k);
    emit(&b, 3, 2, 2, &k, ts, 2, 32, 96);
    g = vm_gguf_open_mem(b.p, b.n, "n63.gguf");
    CHECK(g && vm_gguf_find_tensor(g, n63), "63-byte name accepted: %s", vm_errmsg());
    vm_gguf_free(g);
    bb_free(&b); bb_free(&k);

    // general.alignment 64 moves the data section and is honoured for offsets
    kv_u32(&k, "general.alignment", 64);
    ts[1] = base_ts[1];
    ts[1].offset = 64;
    emit(&b, 3, 2, 1, &k, ts, 2, 64, 96);
    g = vm_gguf_open_mem(b.p, b.n, "a64.gguf");
    CHECK(g && g->alignment == 64 && g->data_offset % 64 == 0, "alignment 64: %s", vm_errmsg());
    vm_gguf_free(g);
    bb_free(&b); bb_free(&k);

    // zero tensors, zero kvs: just a header
    emit(&b, 3, 0, 0, &k, NULL, 0, 1, 0);
    g = vm_gguf_open_mem(b.p, b.n, "empty.gguf");
    CHECK(g && g->n_kv == 0 && g->n_tensors == 0, "header-only file: %s", vm_errmsg());
    CHECK(g && !vm_gguf_find_tensor(g, "a") && vm_gguf_find_key(g, "a") == -1, "lookups on empty file");
    vm_gguf_free(g);
    bb_free(&b);
}

static void test_getters(void) {
    bb k = {0}, b = {0};
    bb_str(&k, "u8"); bb_u32(&k, 0); bb_u8(&k, 200);
    bb_str(&k, "i8"); bb_u32(&k, 1); bb_u8(&k, 0xff);                       // -1
    bb_str(&k, "i16"); bb_u32(&k, 3); bb_u8(&k, 0x00); bb_u8(&k, 0x80);     // -32768
    bb_str(&k, "i32neg"); bb_u32(&k, 5); bb_u32(&k, (uint32_t)-5);
    bb_str(&k, "u64big"); bb_u32(&k, 10); bb_u64(&k, UINT64_MAX);
    bb_str(&k, "i64big"); bb_u32(&k, 11); bb_u64(&k, (uint64_t)1 << 40);
    bb_str(&k, "f64"); bb_u32(&k, 12); double d = 0.125; bb_put(&k, &d, 8);
    bb_str(&k, "f64huge"); bb_u32(&k, 12); d = 1e300; bb_put(&k, &d, 8);
    bb_str(&k, "f32"); bb_u32(&k, 6); float f = 1e4f; bb_put(&k, &f, 4);
    bb_str(&k, "bool"); bb_u32(&k, 7); bb_u8(&k, 1);
    bb_str(&k, "arr"); bb_u32(&k, 9); bb_u32(&k, 3); bb_u64(&k, 3);        // i16 array
    bb_u8(&k, 0xff); bb_u8(&k, 0xff); bb_u8(&k, 2); bb_u8(&k, 0); bb_u8(&k, 0); bb_u8(&k, 0x80);
    bb_str(&k, "sarr"); bb_u32(&k, 9); bb_u32(&k, 8); bb_u64(&k, 2); bb_str(&k, "hi"); bb_str(&k, "");
    emit(&b, 3, 0, 12, &k, NULL, 0, 32, 0);
    vm_gguf *g = vm_gguf_open_mem(b.p, b.n, "get.gguf");
    CHECK(g != NULL, "getter file: %s", vm_errmsg());
    if (g) {
        int64_t v; uint32_t u; float x; int bo;
        CHECK(vm_gguf_get_i64(g, "u8", &v) == 0 && v == 200, "u8 -> i64");
        CHECK(vm_gguf_get_i64(g, "i8", &v) == 0 && v == -1, "i8 -> i64");
        CHECK(vm_gguf_get_i64(g, "i16", &v) == 0 && v == -32768, "i16 -> i64");
        CHECK(vm_gguf_get_u32(g, "i32neg", &u) == -1, "negative -> u32 rejected");
        CHECK(vm_gguf_get_i64(g, "u64big", &v) == -1 && has(vm_errmsg(), "u64big"), "u64 max -> i64 rejected");
        CHECK(vm_gguf_get_u32(g, "i64big", &u) == -1, "2^40 -> u32 rejected");
        CHECK(vm_gguf_get_i64(g, "i64big", &v) == 0 && v == (int64_t)1 << 40, "i64");
        CHECK(vm_gguf_get_u32(g, "u8", &u) == 0 && u == 200, "u8 -> u32");
        CHECK(vm_gguf_get_f32(g, "f64", &x) == 0 && x == 0.125f, "f64 -> f32");
        CHECK(vm_gguf_get_f32(g, "f64huge", &x) == -1, "1e300 -> f32 rejected");
        CHECK(vm_gguf_get_f32(g, "f32", &x) == 0 && x == 1e4f, "f32");
        CHECK(vm_gguf_get_f32(g, "i8", &x) == 0 && x == -1.0f, "int -> f32");
        CHECK(vm_gguf_get_i64(g, "f32", &v) == -1, "f32 -> i64 rejected");
        CHECK(vm_gguf_get_bool(g, "bool", &bo) == 0 && bo == 1, "bool");
        CHECK(vm_gguf_get_bool(g, "u8", &bo) == -1, "200 -> bool rejected");
        CHECK(vm_gguf_get_i64(g, "arr", &v) == -1 && has(vm_errmsg(), "array"), "array -> i64 rejected");
        vm_gguf_type t; uint64_t n; const void *p;
        CHECK(vm_gguf_get_arr(g, "arr", &t, &n, &p) == 0 && t == VM_GGUF_TYPE_INT16 && n == 3, "get_arr");
        const vm_gguf_kv *kv = vm_gguf_get_kv(g, "arr");
        CHECK(kv && vm_gguf_arr_num(kv, 0) == -1 && vm_gguf_arr_num(kv, 1) == 2 && vm_gguf_arr_num(kv, 2) == -32768,
              "arr_num");
        CHECK(kv && isnan(vm_gguf_arr_num(kv, 3)), "arr_num out of range is NaN");
        CHECK(vm_gguf_get_arr(g, "u8", &t, &n, &p) == -1, "scalar -> arr rejected");
        kv = vm_gguf_get_kv(g, "sarr");
        CHECK(kv && kv->n == 2 && kv->strs[0].n == 2 && memcmp(kv->strs[0].s, "hi", 2) == 0 && kv->strs[1].n == 0,
              "string array");
        CHECK(vm_gguf_get_arr(g, "sarr", &t, &n, &p) == 0 && t == VM_GGUF_TYPE_STRING && n == 2, "get_arr strings");
        CHECK(strcmp(vm_gguf_type_name(VM_GGUF_TYPE_FLOAT64), "f64") == 0 && strcmp(vm_gguf_type_name(99), "?") == 0,
              "type names");
    }
    vm_gguf_free(g);
    bb_free(&k); bb_free(&b);
}

static void test_hostile_header(void) {
    bb b = {0}, k = {0};
    make_base(&b);
    memcpy(b.p, "GGUX", 4);
    expect_fail(&b, "magic", "bad magic");
    memcpy(b.p, "GGUF", 4);
    uint32_t versions[] = {0, 1, 4, 0x03000000u, 0xffffffffu};
    for (size_t i = 0; i < sizeof versions / sizeof *versions; i++) {
        memcpy(b.p + 4, &versions[i], 4);
        expect_fail(&b, "version", "bad version");
    }
    bb_free(&b);

    // every strict prefix of a valid file is rejected (and never read past)
    make_base(&b);
    int bad = 0;
    for (size_t n = 0; n < b.n; n++) {
        uint8_t *copy = malloc(n ? n : 1);   // exact-size heap copy: ASan catches any overread
        memcpy(copy, b.p, n);
        vm_err_clear();
        vm_gguf *g = vm_gguf_open_mem(copy, n, "hostile.gguf");
        if (g || strncmp(vm_errmsg(), "hostile.gguf: ", 14) != 0) {
            bad++;
            if (bad < 4) fprintf(stderr, "prefix %zu: %s\n", n, g ? "opened" : vm_errmsg());
        }
        vm_gguf_free(g);
        free(copy);
    }
    CHECK(bad == 0, "%d of %zu truncated prefixes were not rejected", bad, b.n);
    bb_free(&b);

    // huge counts are refused before any allocation
    base_kvs(&k);
    uint64_t huge[] = {(uint64_t)1 << 62, UINT64_MAX, 1000};
    for (size_t i = 0; i < 3; i++) {
        emit(&b, 3, huge[i], 2, &k, base_ts, 2, 32, 96);
        expect_fail(&b, "tensor count", "huge n_tensors");
        bb_free(&b);
        emit(&b, 3, 2, huge[i], &k, base_ts, 2, 32, 96);
        expect_fail(&b, "metadata count", "huge n_kv");
        bb_free(&b);
    }
    bb_free(&k);
}

static void test_hostile_kv(void) {
    bb k = {0};
    // array counts and string lengths beyond the file
    bb_str(&k, "big"); bb_u32(&k, 9); bb_u32(&k, 4); bb_u64(&k, (uint64_t)1 << 61);
    expect_fail_kv(&k, 1, "2^30 limit", "huge u32 array"); bb_free(&k);
    bb_str(&k, "big"); bb_u32(&k, 9); bb_u32(&k, 12); bb_u64(&k, UINT64_MAX);
    expect_fail_kv(&k, 1, "2^30 limit", "huge f64 array"); bb_free(&k);
    bb_str(&k, "big"); bb_u32(&k, 9); bb_u32(&k, 8); bb_u64(&k, (uint64_t)1 << 60);
    expect_fail_kv(&k, 1, "2^30 limit", "huge string array"); bb_free(&k);
    bb_str(&k, "big"); bb_u32(&k, 9); bb_u32(&k, 6); bb_u64(&k, 1000);
    expect_fail_kv(&k, 1, "1000 values of type f32 cannot fit", "f32 array beyond the file"); bb_free(&k);
    bb_str(&k, "big"); bb_u32(&k, 9); bb_u32(&k, 8); bb_u64(&k, 1000);
    expect_fail_kv(&k, 1, "1000 strings cannot fit", "string array beyond the file"); bb_free(&k);
    bb_str(&k, "big"); bb_u32(&k, 8); bb_u64(&k, (uint64_t)1 << 63);
    expect_fail_kv(&k, 1, "1 GiB limit", "huge string length"); bb_free(&k);
    bb_u64(&k, UINT64_MAX);
    expect_fail_kv(&k, 1, "exceeds", "huge key length"); bb_free(&k);
    bb_str(&k, "big"); bb_u32(&k, 9); bb_u32(&k, 8); bb_u64(&k, 2); bb_str(&k, "ok"); bb_u64(&k, 1000);
    expect_fail_kv(&k, 1, "exceeds", "second string too long"); bb_free(&k);
    // duplicates, types, values
    kv_u32(&k, "x", 1); kv_u32(&k, "y", 2); kv_u32(&k, "x", 3);
    expect_fail_kv(&k, 3, "duplicate key 'x'", "duplicate key"); bb_free(&k);
    bb_str(&k, ""); bb_u32(&k, 4); bb_u32(&k, 1);
    expect_fail_kv(&k, 1, "empty", "empty key"); bb_free(&k);
    bb_str(&k, "t"); bb_u32(&k, 13); bb_u32(&k, 1);
    expect_fail_kv(&k, 1, "unknown value type 13", "unknown value type"); bb_free(&k);
    bb_str(&k, "t"); bb_u32(&k, 0x80000000u); bb_u32(&k, 1);
    expect_fail_kv(&k, 1, "unknown value type", "negative value type"); bb_free(&k);
    bb_str(&k, "t"); bb_u32(&k, 9); bb_u32(&k, 13); bb_u64(&k, 1); bb_u32(&k, 0);
    expect_fail_kv(&k, 1, "unknown array element type", "unknown array type"); bb_free(&k);
    bb_str(&k, "t"); bb_u32(&k, 9); bb_u32(&k, 9); bb_u64(&k, 1); bb_u32(&k, 4); bb_u64(&k, 1); bb_u32(&k, 0);
    expect_fail_kv(&k, 1, "nested", "nested array"); bb_free(&k);
    bb_str(&k, "t"); bb_u32(&k, 7); bb_u8(&k, 2);
    expect_fail_kv(&k, 1, "bool value 2", "bool 2"); bb_free(&k);
    bb_str(&k, "t"); bb_u32(&k, 9); bb_u32(&k, 7); bb_u64(&k, 3); bb_u8(&k, 0); bb_u8(&k, 1); bb_u8(&k, 0x80);
    expect_fail_kv(&k, 1, "bool value 128", "bool array"); bb_free(&k);
    // alignment: wrong type, zero, not a power of two
    bb_str(&k, "general.alignment"); bb_u32(&k, 10); bb_u64(&k, 32);
    expect_fail_kv(&k, 1, "must be u32", "alignment u64"); bb_free(&k);
    kv_u32(&k, "general.alignment", 0);
    expect_fail_kv(&k, 1, "power of two", "alignment 0"); bb_free(&k);
    kv_u32(&k, "general.alignment", 48);
    expect_fail_kv(&k, 1, "power of two", "alignment 48"); bb_free(&k);
}

static void test_hostile_tensors(void) {
    tspec ts[2] = {base_ts[0], base_ts[1]};
    char n64[65];
    memset(n64, 'y', 64); n64[64] = 0;
    ts[1].name = n64;
    expect_fail_ts(ts, 2, 96, "limit is 63", "64-byte name");
    ts[1] = base_ts[1]; ts[1].name = "a";
    expect_fail_ts(ts, 2, 96, "duplicate tensor name 'a'", "duplicate tensor");
    ts[1] = base_ts[1]; ts[1].name = "";
    expect_fail_ts(ts, 2, 96, "empty name", "empty tensor name");
    ts[1] = base_ts[1]; ts[1].n_dims = 0;
    expect_fail_ts(ts, 2, 96, "n_dims 0", "n_dims 0");
    ts[1] = base_ts[1]; ts[1].n_dims = 5;
    expect_fail_ts(ts, 2, 96, "n_dims 5", "n_dims 5");
    ts[1] = base_ts[1]; ts[1].ne[0] = -16;
    expect_fail_ts(ts, 2, 96, "negative", "negative ne");
    ts[1] = base_ts[1]; ts[1].n_dims = 3; ts[1].ne[0] = 16; ts[1].ne[1] = (int64_t)1 << 31; ts[1].ne[2] = (int64_t)1 << 31;
    expect_fail_ts(ts, 2, 96, "2^63", "overflowing ne");
    ts[1] = base_ts[1]; ts[1].n_dims = 2; ts[1].ne[1] = (int64_t)1 << 40;
    expect_fail_ts(ts, 2, 96, "outside", "huge tensor beyond the file");
    uint32_t bad_types[] = {4, 31, 40, 1000, 0xffffffffu};
    for (size_t i = 0; i < sizeof bad_types / sizeof *bad_types; i++) {
        ts[1] = base_ts[1]; ts[1].type = bad_types[i];
        expect_fail_ts(ts, 2, 96, "unknown tensor type", "unknown tensor type");
    }
    ts[1] = base_ts[1]; ts[1].type = VM_TYPE_Q8_0;   // 16 elements: not a 32-block multiple
    expect_fail_ts(ts, 2, 96, "block size", "ne[0] not a block multiple");
    ts[1] = base_ts[1]; ts[1].offset = 72;
    expect_fail_ts(ts, 2, 120, "offset 72 not aligned to 32", "misaligned offset");
    ts[1] = base_ts[1]; ts[1].offset = 4096;
    expect_fail_ts(ts, 2, 96, "outside", "offset beyond the end");
    ts[1] = base_ts[1]; ts[1].offset = UINT64_MAX - 31;
    expect_fail_ts(ts, 2, 96, "outside", "offset near 2^64");
    ts[1] = base_ts[1]; ts[1].offset = 32;   // [32, 64) inside a's [0, 64)
    expect_fail_ts(ts, 2, 96, "overlap", "overlapping tensors");
    ts[1] = base_ts[1]; ts[1].offset = 0;
    expect_fail_ts(ts, 2, 96, "overlap", "tensors at the same offset");
    // three tensors: the overlap is between the first and the last in file order
    tspec t3[3] = {{"p", 1, {64, 1, 1, 1}, 0, 0}, {"q", 1, {8, 1, 1, 1}, 0, 256}, {"r", 1, {8, 1, 1, 1}, 0, 224}};
    expect_fail_ts(t3, 3, 288, "overlap", "overlap behind a gap");
    // zero-sized tensors own no bytes and may share an offset
    tspec tz[2] = {{"z", 2, {8, 0, 1, 1}, 0, 0}, {"w", 1, {8, 1, 1, 1}, 0, 0}};
    bb k = {0}, b = {0};
    emit(&b, 3, 2, 0, &k, tz, 2, 32, 32);
    vm_gguf *g = vm_gguf_open_mem(b.p, b.n, "zero.gguf");
    CHECK(g && g->tensors[0].nbytes == 0, "zero-element tensor accepted: %s", vm_errmsg());
    vm_gguf_free(g);
    bb_free(&b);
    // data section start beyond the end of the file
    emit(&b, 3, 2, 0, &k, base_ts, 2, 1, 0);
    expect_fail(&b, "hostile.gguf", "no data section");
    bb_free(&b);
}

// Every byte of a valid file set to a few values: the reader must either refuse cleanly or return a
// file whose tensors all lie inside the buffer (ASan checks the reads in the sanitizer build).
static void mutate_all(const uint8_t *src, size_t n, size_t upto, const char *label) {
    uint8_t *buf = malloc(n);
    int bad = 0, opened = 0, tried = 0;
    for (size_t i = 0; i < upto && i < n; i++) {
        uint8_t vals[4] = {0x00, 0xff, (uint8_t)(src[i] ^ 0x01), (uint8_t)(src[i] ^ 0x80)};
        for (int v = 0; v < 4; v++) {
            if (vals[v] == src[i]) continue;
            memcpy(buf, src, n);
            buf[i] = vals[v];
            tried++;
            vm_err_clear();
            vm_gguf *g = vm_gguf_open_mem(buf, n, "hostile.gguf");
            if (!g) {
                const char *m = vm_errmsg();
                if (strncmp(m, "hostile.gguf: ", 14) != 0 || strchr(m, '\n')) bad++;
                continue;
            }
            opened++;
            for (int64_t t = 0; t < g->n_tensors; t++) {
                const uint8_t *d = g->tensors[t].t.data;
                if (d < buf || d > buf + n || g->tensors[t].nbytes > (size_t)(buf + n - d)) bad++;
            }
            for (int64_t k = 0; k < g->n_kv; k++) {
                const vm_gguf_kv *kv = &g->kv[k];
                if (kv->arr_type == VM_GGUF_TYPE_STRING)
                    for (uint64_t j = 0; j < kv->n; j++)
                        if ((const uint8_t *)kv->strs[j].s < buf || kv->strs[j].n > (size_t)(buf + n - (const uint8_t *)kv->strs[j].s)) bad++;
            }
            vm_gguf_free(g);
        }
    }
    CHECK(bad == 0, "%s: %d bad outcomes in %d mutations", label, bad, tried);
    CHECK(opened > 0 && opened < tried, "%s: %d of %d mutants opened (some bytes are free data)", label, opened, tried);
    free(buf);
}

static void test_mutations(void) {
    bb b = {0};
    make_base(&b);
    mutate_all(b.p, b.n, b.n, "base file");
    bb_free(&b);
    vm_mmap m;
    if (vm_mmap_open(&m, "tests/data/gguf/tiny_moe.gguf") == 0) {
        mutate_all(m.data, m.size, 1600, "tiny_moe metadata");   // header, kvs, infos
        vm_mmap_close(&m);
    } else CHECK(0, "tiny_moe fixture: %s", vm_errmsg());
}

static void test_tensor_views(void) {
    vm_tensor t;
    int64_t ne[3] = {64, 3, 4};
    static uint8_t buf[816];
    vm_tensor_init(&t, "w", VM_TYPE_Q8_0, 3, ne, buf);
    CHECK(t.nb[0] == 34 && t.nb[1] == 68 && t.nb[2] == 204 && t.nb[3] == 816, "q8_0 strides %zu %zu %zu %zu",
          t.nb[0], t.nb[1], t.nb[2], t.nb[3]);
    CHECK(t.ne[3] == 1 && vm_tensor_nelements(&t) == 768 && vm_tensor_nbytes(&t) == 816, "q8_0 sizes");
    vm_tensor s = vm_tensor_slice2(&t, 2);
    CHECK(s.data == buf + 408 && s.ne[2] == 1 && s.n_dims == 2 && vm_tensor_nbytes(&s) == 204 &&
          vm_tensor_nelements(&s) == 192, "slice2");
    s = vm_tensor_slice2(&t, 4);
    CHECK(s.data == NULL && has(vm_errmsg(), "out of range"), "slice2 out of range");
    int64_t ne1[1] = {10};
    vm_tensor_init(&t, "v", VM_TYPE_F32, 1, ne1, buf);
    CHECK(t.ne[1] == 1 && t.nb[1] == 40 && vm_tensor_nbytes(&t) == 40 && vm_tensor_nelements(&t) == 10, "f32 vector");
    int64_t nek[2] = {512, 2};
    vm_tensor_init(&t, "k", VM_TYPE_Q4_K, 2, nek, buf);
    CHECK(t.nb[1] == 288 && vm_tensor_nbytes(&t) == 576, "q4_K rows");
}

// ---- writer round trip ----

static char tmpdir_[256];

static const char *tmp_path(const char *name) {
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", tmpdir_, name);
    return p;
}

static size_t gguf_esize(vm_gguf_type t) {
    static const size_t s[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return s[t];
}

static void test_roundtrip(void) {
    vm_gguf_writer *w = vm_gguf_writer_init();
    // every scalar type, in a known order
    uint8_t u8 = 250; int8_t i8 = -7; uint16_t u16 = 65000; int16_t i16 = -30000;
    uint32_t u32 = 4000000000u; int32_t i32 = -2000000000; float f32 = -1.5e-7f; uint8_t bo = 1;
    uint64_t u64 = UINT64_MAX - 5; int64_t i64 = INT64_MIN + 3; double f64 = 3.141592653589793;
    vm_gguf_set_val(w, "s.u8", VM_GGUF_TYPE_UINT8, &u8);
    vm_gguf_set_val(w, "s.i8", VM_GGUF_TYPE_INT8, &i8);
    vm_gguf_set_val(w, "s.u16", VM_GGUF_TYPE_UINT16, &u16);
    vm_gguf_set_val(w, "s.i16", VM_GGUF_TYPE_INT16, &i16);
    vm_gguf_set_u32(w, "s.u32", u32);
    vm_gguf_set_i32(w, "s.i32", i32);
    vm_gguf_set_f32(w, "s.f32", f32);
    vm_gguf_set_bool(w, "s.bool", bo);
    vm_gguf_set_str(w, "s.str", "h\xc3\xa9llo w\xc3\xb6rld");
    vm_gguf_set_u64(w, "s.u64", u64);
    vm_gguf_set_i64(w, "s.i64", i64);
    vm_gguf_set_f64(w, "s.f64", f64);
    // arrays of each numeric type: bytes 0..(8n-1) pattern (bool: alternating 0/1)
    uint8_t pat[8 * 5];
    for (size_t i = 0; i < sizeof pat; i++) pat[i] = (uint8_t)(i * 37 + 11);
    uint8_t bools[5] = {1, 0, 1, 1, 0};
    const char *arr_keys[VM_GGUF_TYPE_COUNT] = {"a.u8", "a.i8", "a.u16", "a.i16", "a.u32", "a.i32", "a.f32",
                                                "a.bool", NULL, NULL, "a.u64", "a.i64", "a.f64"};
    for (int t = 0; t < VM_GGUF_TYPE_COUNT; t++)
        if (arr_keys[t]) vm_gguf_set_arr(w, arr_keys[t], (vm_gguf_type)t, t == VM_GGUF_TYPE_BOOL ? bools : pat, 5);
    vm_gguf_set_arr(w, "a.empty", VM_GGUF_TYPE_INT32, NULL, 0);
    const char *strs[4] = {"<s>", "", "\xe2\x96\x81the", "a b\tc"};
    vm_gguf_set_arr_str(w, "a.str", strs, 4);
    vm_gguf_set_u32(w, "s.u32", u32 - 1);   // replaces in place, keeps position
    // tensors of several types, sizes chosen so several need padding
    float f[96]; uint16_t h[40]; uint8_t q8[34 * 3], q4k[144 * 2]; int32_t iv[7];
    for (int i = 0; i < 96; i++) f[i] = (float)i * 0.25f - 3.0f;
    for (int i = 0; i < 40; i++) h[i] = (uint16_t)(i * 1031);
    for (size_t i = 0; i < sizeof q8; i++) q8[i] = (uint8_t)(i * 13);
    for (size_t i = 0; i < sizeof q4k; i++) q4k[i] = (uint8_t)(i * 29 + 3);
    for (int i = 0; i < 7; i++) iv[i] = -i * 100000;
    int64_t ne_f[3] = {4, 8, 3}, ne_h[2] = {40, 1}, ne_q8[2] = {32, 3}, ne_q4k[2] = {256, 2}, ne_i[1] = {7};
    CHECK(vm_gguf_add_tensor(w, "t.f32", VM_TYPE_F32, 3, ne_f, f, sizeof f) == 0, "add f32: %s", vm_errmsg());
    CHECK(vm_gguf_add_tensor(w, "t.f16", VM_TYPE_F16, 2, ne_h, h, sizeof h) == 0, "add f16: %s", vm_errmsg());
    CHECK(vm_gguf_add_tensor(w, "t.q8_0", VM_TYPE_Q8_0, 2, ne_q8, q8, sizeof q8) == 0, "add q8_0: %s", vm_errmsg());
    CHECK(vm_gguf_add_tensor(w, "t.q4_K", VM_TYPE_Q4_K, 2, ne_q4k, q4k, sizeof q4k) == 0, "add q4_K: %s", vm_errmsg());
    CHECK(vm_gguf_add_tensor(w, "t.i32", VM_TYPE_I32, 1, ne_i, iv, sizeof iv) == 0, "add i32: %s", vm_errmsg());
    // refusals
    CHECK(vm_gguf_add_tensor(w, "t.f32", VM_TYPE_F32, 1, ne_i, iv, 28) == -1 && has(vm_errmsg(), "duplicate"), "dup");
    CHECK(vm_gguf_add_tensor(w, "t.x", VM_TYPE_F32, 1, ne_i, iv, 27) == -1 && has(vm_errmsg(), "need 28"), "size");
    CHECK(vm_gguf_add_tensor(w, "t.x", VM_TYPE_Q8_0, 1, ne_i, iv, 28) == -1 && has(vm_errmsg(), "block"), "block");
    CHECK(vm_gguf_add_tensor(w, "t.x", VM_TYPE_F32, 5, ne_i, iv, 28) == -1, "n_dims 5");
    CHECK(vm_gguf_add_tensor(w, "t.x", (vm_type)4, 1, ne_i, iv, 28) == -1, "unknown type");
    char n64[65]; memset(n64, 'n', 64); n64[64] = 0;
    CHECK(vm_gguf_add_tensor(w, n64, VM_TYPE_F32, 1, ne_i, iv, 28) == -1 && has(vm_errmsg(), "limit"), "long name");

    const char *path = tmp_path("rt.gguf");
    CHECK(vm_gguf_write(w, path) == 0, "write: %s", vm_errmsg());
    vm_gguf *g = vm_gguf_open(path);
    CHECK(g != NULL, "reopen: %s", vm_errmsg());
    if (g) {
        const char *order[] = {"s.u8", "s.i8", "s.u16", "s.i16", "s.u32", "s.i32", "s.f32", "s.bool", "s.str",
                               "s.u64", "s.i64", "s.f64", "a.u8", "a.i8", "a.u16", "a.i16", "a.u32", "a.i32",
                               "a.f32", "a.bool", "a.u64", "a.i64", "a.f64", "a.empty", "a.str"};
        int nord = (int)(sizeof order / sizeof *order);
        CHECK(g->n_kv == nord, "n_kv %lld", (long long)g->n_kv);
        for (int i = 0; i < nord && i < g->n_kv; i++)
            CHECK(strcmp(g->kv[i].key, order[i]) == 0, "kv %d is '%s', expected '%s'", i, g->kv[i].key, order[i]);
        // scalars bit-exact
        const void *want[] = {&u8, &i8, &u16, &i16, NULL, &i32, &f32, &bo, NULL, &u64, &i64, &f64};
        vm_gguf_type wt[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12};
        for (int i = 0; i < 12 && i < g->n_kv; i++) {
            CHECK(g->kv[i].type == wt[i] && g->kv[i].n == 1, "scalar %d type %d", i, g->kv[i].type);
            if (want[i]) CHECK(memcmp(g->kv[i].data, want[i], gguf_esize(wt[i])) == 0, "scalar %d value", i);
        }
        uint32_t ru; CHECK(vm_gguf_get_u32(g, "s.u32", &ru) == 0 && ru == u32 - 1, "replaced u32");
        char *s = NULL;
        CHECK(vm_gguf_get_str(g, "s.str", &s) == 0 && s && strcmp(s, "h\xc3\xa9llo w\xc3\xb6rld") == 0, "utf-8 string");
        free(s);
        for (int t = 0; t < VM_GGUF_TYPE_COUNT; t++) {
            if (!arr_keys[t]) continue;
            const vm_gguf_kv *kv = vm_gguf_get_kv(g, arr_keys[t]);
            CHECK(kv && kv->type == VM_GGUF_TYPE_ARRAY && kv->arr_type == (vm_gguf_type)t && kv->n == 5, "%s", arr_keys[t]);
            if (kv) CHECK(memcmp(kv->data, t == VM_GGUF_TYPE_BOOL ? bools : pat, 5 * gguf_esize(t)) == 0, "%s bytes", arr_keys[t]);
        }
        const vm_gguf_kv *kv = vm_gguf_get_kv(g, "a.empty");
        CHECK(kv && kv->type == VM_GGUF_TYPE_ARRAY && kv->arr_type == VM_GGUF_TYPE_INT32 && kv->n == 0, "empty array");
        kv = vm_gguf_get_kv(g, "a.str");
        CHECK(kv && kv->arr_type == VM_GGUF_TYPE_STRING && kv->n == 4, "string array");
        for (int i = 0; kv && i < 4; i++)
            CHECK(kv->strs[i].n == strlen(strs[i]) && memcmp(kv->strs[i].s, strs[i], strlen(strs[i])) == 0, "str %d", i);
        // tensors: order, shapes, aligned offsets, bytes
        const char *tn[5] = {"t.f32", "t.f16", "t.q8_0", "t.q4_K", "t.i32"};
        const void *td[5] = {f, h, q8, q4k, iv};
        size_t tb[5] = {sizeof f, sizeof h, sizeof q8, sizeof q4k, sizeof iv};
        CHECK(g->n_tensors == 5, "n_tensors");
        uint64_t off = 0;
        for (int i = 0; i < 5 && i < g->n_tensors; i++) {
            const vm_gguf_tensor_info *ti = &g->tensors[i];
            CHECK(strcmp(ti->name, tn[i]) == 0 && ti->nbytes == tb[i], "tensor %d name/size", i);
            CHECK(ti->offset == off, "tensor %d offset %llu, packed %llu", i, (unsigned long long)ti->offset,
                  (unsigned long long)off);
            CHECK(memcmp(ti->t.data, td[i], tb[i]) == 0, "tensor %d bytes", i);
            off += (tb[i] + 31) / 32 * 32;
        }
        const vm_gguf_tensor_info *ti = vm_gguf_find_tensor(g, "t.f32");
        CHECK(ti && ti->t.n_dims == 3 && ti->t.ne[0] == 4 && ti->t.ne[1] == 8 && ti->t.ne[2] == 3, "3-d shape");
        CHECK(g->data_offset % 32 == 0 && g->data_offset + off == g->size, "file ends after padded data (%zu + %llu vs %zu)",
              g->data_offset, (unsigned long long)off, g->size);

        // copy_kv round trip with general.alignment 64: offsets follow the new alignment
        vm_gguf_writer *w2 = vm_gguf_writer_init();
        vm_gguf_copy_kv(w2, g);
        vm_gguf_set_u32(w2, "general.alignment", 64);
        for (int i = 0; i < 5; i++)
            vm_gguf_add_tensor(w2, g->tensors[i].name, g->tensors[i].t.type, g->tensors[i].t.n_dims,
                               g->tensors[i].t.ne, g->tensors[i].t.data, g->tensors[i].nbytes);
        CHECK(vm_gguf_write(w2, tmp_path("rt2.gguf")) == 0, "write copy: %s", vm_errmsg());
        vm_gguf_writer_free(w2);
        vm_gguf *g2 = vm_gguf_open(tmp_path("rt2.gguf"));
        CHECK(g2 && g2->alignment == 64 && g2->n_kv == g->n_kv + 1, "copy reopened: %s", vm_errmsg());
        for (int64_t i = 0; g2 && i < g->n_kv; i++) {
            const vm_gguf_kv *a = &g->kv[i], *b = &g2->kv[i];
            int same = strcmp(a->key, b->key) == 0 && a->type == b->type && a->arr_type == b->arr_type && a->n == b->n;
            if (same && a->arr_type == VM_GGUF_TYPE_STRING)
                for (uint64_t j = 0; j < a->n; j++)
                    same = same && a->strs[j].n == b->strs[j].n && memcmp(a->strs[j].s, b->strs[j].s, a->strs[j].n) == 0;
            else if (same)
                same = memcmp(a->data, b->data, a->n * gguf_esize(a->arr_type)) == 0;
            CHECK(same, "copied kv %lld '%s'", (long long)i, a->key);
        }
        for (int64_t i = 0; g2 && i < g2->n_tensors; i++)
            CHECK(g2->tensors[i].offset % 64 == 0 &&
                  memcmp(g2->tensors[i].t.data, g->tensors[i].t.data, g->tensors[i].nbytes) == 0, "copied tensor %lld", (long long)i);
        CHECK(g2 && g2->data_offset % 64 == 0, "data section aligned to 64");
        vm_gguf_free(g2);
    }
    vm_gguf_free(g);
    vm_gguf_writer_free(w);

    // a failing setter makes write fail with its message, and nothing is left behind
    w = vm_gguf_writer_init();
    vm_gguf_set_arr(w, "bad", VM_GGUF_TYPE_STRING, pat, 1);
    CHECK(vm_gguf_write(w, tmp_path("bad.gguf")) == -1 && has(vm_errmsg(), "bad"), "failed setter: %s", vm_errmsg());
    CHECK(access(tmp_path("bad.gguf"), F_OK) != 0, "no file written");
    vm_gguf_writer_free(w);
    w = vm_gguf_writer_init();
    vm_gguf_set_u32(w, "general.alignment", 24);
    CHECK(vm_gguf_write(w, tmp_path("bad.gguf")) == -1 && has(vm_errmsg(), "power of two"), "bad alignment write");
    vm_gguf_writer_free(w);
    w = vm_gguf_writer_init();
    CHECK(vm_gguf_write(w, tmp_path("empty.gguf")) == 0, "empty writer");
    vm_gguf_writer_free(w);
    g = vm_gguf_open(tmp_path("empty.gguf"));
    CHECK(g && g->n_kv == 0 && g->n_tensors == 0, "empty reopened");
    vm_gguf_free(g);
    unlink(tmp_path("rt.gguf")); unlink(tmp_path("rt2.gguf")); unlink(tmp_path("empty.gguf"));
}

// ---- the real vocabulary files ----

static void test_vocabs(void) {
    // vocabulary sizes of the original models (their published configs)
    static const struct { const char *name; uint64_t n_vocab; const char *model; int merges; } v[] = {
        {"llama-spm", 32000, "llama", 0},   {"phi-3", 32064, "llama", 0},
        {"gpt-2", 50257, "gpt2", 1},        {"gpt-neox", 50432, "gpt2", 1},
        {"mpt", 50432, "gpt2", 1},          {"falcon", 65024, "gpt2", 1},
        {"starcoder", 49152, "gpt2", 1},    {"refact", 49216, "gpt2", 1},
        {"deepseek-llm", 102400, "gpt2", 1}, {"deepseek-coder", 32256, "gpt2", 1},
    };
    char path[512];
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        snprintf(path, sizeof path, "%s/tokenizers/ggml-vocab-%s.gguf", test_shared_dir(), v[i].name);
        vm_gguf *g = vm_gguf_open(path);
        CHECK(g != NULL, "%s: %s", v[i].name, vm_errmsg());
        if (!g) continue;
        vm_gguf_type t; uint64_t n = 0, nt = 0; const void *p;
        CHECK(vm_gguf_get_arr(g, "tokenizer.ggml.tokens", &t, &n, &p) == 0 && t == VM_GGUF_TYPE_STRING &&
              n == v[i].n_vocab, "%s: %llu tokens", v[i].name, (unsigned long long)n);
        CHECK(vm_gguf_get_arr(g, "tokenizer.ggml.token_type", &t, &nt, &p) == 0 && nt == n, "%s token types", v[i].name);
        char *m = NULL;
        CHECK(vm_gguf_get_str(g, "tokenizer.ggml.model", &m) == 0 && m && strcmp(m, v[i].model) == 0, "%s model", v[i].name);
        free(m);
        uint64_t nm = 0;
        int rm = vm_gguf_get_arr(g, "tokenizer.ggml.merges", &t, &nm, &p);
        CHECK(v[i].merges ? (rm == 0 && nm > 1000) : rm == 1, "%s merges", v[i].name);
        if (!v[i].merges)
            CHECK(vm_gguf_get_arr(g, "tokenizer.ggml.scores", &t, &nm, &p) == 0 && t == VM_GGUF_TYPE_FLOAT32 && nm == n,
                  "%s scores", v[i].name);
        uint32_t bos, eos;
        CHECK(vm_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &bos) == 0 && bos < n &&
              vm_gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &eos) == 0 && eos < n, "%s bos/eos", v[i].name);
        CHECK(g->n_tensors == 0, "%s has no tensors", v[i].name);
        const vm_gguf_kv *kv = vm_gguf_get_kv(g, "tokenizer.ggml.tokens");
        if (kv && !strcmp(v[i].name, "llama-spm"))
            CHECK(kv->strs[1].n == 3 && !memcmp(kv->strs[1].s, "<s>", 3) && kv->strs[2].n == 4 &&
                  !memcmp(kv->strs[2].s, "</s>", 4), "llama tokens 1, 2");
        if (kv && !strcmp(v[i].name, "gpt-2"))
            CHECK(kv->strs[50256].n == 13 && !memcmp(kv->strs[50256].s, "<|endoftext|>", 13), "gpt-2 token 50256");
        vm_gguf_free(g);
    }
    CHECK(vm_gguf_open("/nonexistent/x.gguf") == NULL && has(vm_errmsg(), "/nonexistent/x.gguf"), "missing file");
}

// tests/data/gguf/tiny_moe.gguf was written by tests/reference/make_gguf_fixtures.py from the spec with
// ggml's packing rules; our writer, given the same metadata and tensors, must produce the same bytes.
static void test_fixture_bytes(void) {
    const char *fx = "tests/data/gguf/tiny_moe.gguf";
    vm_gguf *g = vm_gguf_open(fx);
    CHECK(g != NULL, "fixture: %s", vm_errmsg());
    if (!g) return;
    CHECK(g->n_kv == 20 && g->n_tensors == 9, "fixture counts");
    uint32_t ne = 0; float eps = 0; int bos = 0;
    CHECK(vm_gguf_get_u32(g, "llama.expert_count", &ne) == 0 && ne == 4, "expert_count");
    CHECK(vm_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &eps) == 0 && eps == 1e-5f, "eps");
    CHECK(vm_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &bos) == 0 && bos == 1, "add_bos");
    const vm_gguf_tensor_info *ti = vm_gguf_find_tensor(g, "blk.1.ffn_gate_exps.weight");
    CHECK(ti && ti->t.type == VM_TYPE_Q8_0 && ti->t.ne[2] == 4 && ti->nbytes == 8704, "stacked experts");
    if (ti) {
        // data pattern of the generator: tensor index 6, byte i = (6*31 + 7i) & 255
        const uint8_t *p = ti->t.data;
        int okp = 1;
        for (size_t i = 0; i < ti->nbytes; i++) okp &= p[i] == (uint8_t)((6 * 31 + 7 * i) & 0xff);
        CHECK(okp, "stacked expert bytes");
        vm_tensor e2 = vm_tensor_slice2(&ti->t, 2);
        CHECK(e2.data == p + 2 * 2176 && vm_tensor_nbytes(&e2) == 2176, "expert 2 view");
    }
    vm_gguf_writer *w = vm_gguf_writer_init();
    vm_gguf_copy_kv(w, g);
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const vm_gguf_tensor_info *t = &g->tensors[i];
        vm_gguf_add_tensor(w, t->name, t->t.type, t->t.n_dims, t->t.ne, t->t.data, t->nbytes);
    }
    const char *out = tmp_path("tiny_rewrite.gguf");
    CHECK(vm_gguf_write(w, out) == 0, "rewrite: %s", vm_errmsg());
    vm_gguf_writer_free(w);
    vm_mmap m;
    CHECK(vm_mmap_open(&m, out) == 0, "map rewrite");
    CHECK(m.size == g->size && memcmp(m.data, g->base, g->size) == 0, "writer output is byte-identical to the "
          "spec-built fixture (%zu vs %zu bytes)", m.size, g->size);
    vm_mmap_close(&m);
    unlink(out);
    vm_gguf_free(g);
}

// The tensor-name table: llama.cpp's names, globally, per block and per expert.
static void test_tensor_names(void) {
    char b[96];
    CHECK(!strcmp(vm_tn(b, sizeof b, VM_TN_TOKEN_EMBD, -1, "weight"), "token_embd.weight"), "%s", b);
    CHECK(!strcmp(vm_tn(b, sizeof b, VM_TN_ATTN_Q, 3, "bias"), "blk.3.attn_q.bias"), "%s", b);
    CHECK(!strcmp(vm_tn(b, sizeof b, VM_TN_FFN_GATE_INP_SHEXP, 12, "weight"), "blk.12.ffn_gate_inp_shexp.weight"), "%s", b);
    CHECK(!strcmp(vm_tn_exp(b, sizeof b, VM_TN_FFN_DOWN, 0, 7, "weight"), "blk.0.ffn_down.7.weight"), "%s", b);
    CHECK(!strcmp(vm_tn_blk(b, sizeof b, 4, "vglr.w_t"), "blk.4.vglr.w_t"), "%s", b);
    CHECK(!strcmp(vm_tn_stem(VM_TN_ATTN_KV_A_MQA), "attn_kv_a_mqa") && !strcmp(vm_tn_stem(VM_TN_COUNT), "?"), "stems");
    for (int t = 0; t < VM_TN_COUNT; t++) CHECK(strcmp(vm_tn_stem((vm_tn_id)t), "?") != 0, "stem %d missing", t);
    char small[8];
    CHECK(!strcmp(vm_tn(small, sizeof small, VM_TN_ATTN_Q, 3, "weight"), "blk.3.a"), "cut, not overrun: %s", small);
    // the reverse: every stem round-trips, per block, globally and per expert
    for (int t = 0; t < VM_TN_COUNT; t++) {
        int il;
        const char *rest;
        CHECK(vm_tn_parse(vm_tn(b, sizeof b, (vm_tn_id)t, 17, "weight"), &il, &rest) == t && il == 17 &&
              !strcmp(rest, "weight"), "parse %s: layer %d rest %s", b, il, rest);
        CHECK(vm_tn_parse(vm_tn(b, sizeof b, (vm_tn_id)t, -1, "bias"), &il, &rest) == t && il == -1 &&
              !strcmp(rest, "bias"), "parse global %s", b);
        CHECK(vm_tn_parse(vm_tn_exp(b, sizeof b, (vm_tn_id)t, 2, 5, "weight"), &il, &rest) == t && il == 2 &&
              !strcmp(rest, "5.weight"), "parse per-expert %s", b);
    }
    // prefixes of longer stems are not matches; names that are not ours say so
    static const struct { const char *name; int id, il; const char *rest; } pc[] = {
        { "blk.0.attn_q_a.weight", VM_TN_ATTN_Q_A, 0, "weight" },
        { "blk.3.ffn_gate_inp.weight", VM_TN_FFN_GATE_INP, 3, "weight" },
        { "output_norm.weight", VM_TN_OUTPUT_NORM, -1, "weight" },
        { "blk.4.vglr.w_t", -1, 4, "vglr.w_t" },
        { "blk.+3.attn_q.weight", -1, -1, "blk.+3.attn_q.weight" },
        { "blk. 3.attn_q.weight", -1, -1, "blk. 3.attn_q.weight" },
        { "blk.-1.attn_q.weight", -1, -1, "blk.-1.attn_q.weight" },
        { "blk.99999999999.attn_q.weight", -1, -1, "blk.99999999999.attn_q.weight" },
        { "blk.3attn_q.weight", -1, -1, "blk.3attn_q.weight" },
        { "blk.3.attn_qx.weight", -1, 3, "attn_qx.weight" },
        { "attn_q", -1, -1, "attn_q" },
        { "", -1, -1, "" },
    };
    for (size_t i = 0; i < sizeof pc / sizeof pc[0]; i++) {
        int il;
        const char *rest;
        const int id = vm_tn_parse(pc[i].name, &il, &rest);
        CHECK(id == pc[i].id && il == pc[i].il && !strcmp(rest, pc[i].rest), "parse '%s': id %d layer %d rest '%s'",
              pc[i].name, id, il, rest);
    }
}

// vm_gguf_sample_checksum (ranks of `mpirun vmoer fit` compare it): the header and each tensor's 17
// windows of 64 bytes count, bytes between the windows of a large tensor do not (a sample).
static uint64_t sum_of(const bb *b) {
    vm_gguf *g = vm_gguf_open_mem(b->p, b->n, "sum.gguf");
    CHECK(g != NULL, "sum.gguf: %s", vm_errmsg());
    const uint64_t h = g ? vm_gguf_sample_checksum(g) : 0;
    vm_gguf_free(g);
    return h;
}

static void test_sample_checksum(void) {
    // "a" f32 [512, 4] (8192 B: windows at (8192 - 64) k / 16, the first at 0, the second at 508),
    // "b" f16 [16] (32 B: hashed whole)
    const tspec ts[2] = { {"a", 2, {512, 4, 1, 1}, 0, 0}, {"b", 1, {16, 1, 1, 1}, 1, 8192} };
    bb k = {0}, b = {0};
    base_kvs(&k);
    emit(&b, 3, 2, 2, &k, ts, 2, 32, 8192 + 32);
    const size_t data = b.n - 8192 - 32;
    const uint64_t h0 = sum_of(&b);
    CHECK(h0 != 0 && sum_of(&b) == h0, "checksum is stable");
    const struct { size_t off; int counts; const char *what; } cases[] = {
        { data, 1, "a's first byte" }, { data + 8191, 1, "a's last byte" }, { data + 508, 1, "a's second window" },
        { data + 8192 + 17, 1, "a byte of the small tensor b" }, { 66, 1, "a header byte (the architecture string)" },
        { data + 100, 0, "a byte of a between its windows" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        b.p[cases[i].off] ^= 0x40;
        const uint64_t h = sum_of(&b);
        b.p[cases[i].off] ^= 0x40;
        CHECK((h != h0) == cases[i].counts, "%s %s the checksum", cases[i].what, cases[i].counts ? "must change" : "is outside");
    }
    bb_free(&k); bb_free(&b);
}

int main(void) {
    test_tensor_names();
    test_sample_checksum();
    snprintf(tmpdir_, sizeof tmpdir_, "/tmp/vmoer-gguf-XXXXXX");
    if (!mkdtemp(tmpdir_)) { perror("mkdtemp"); return 1; }
    test_valid();
    test_getters();
    test_hostile_header();
    test_hostile_kv();
    test_hostile_tensors();
    test_mutations();
    test_tensor_views();
    test_roundtrip();
    test_vocabs();
    test_fixture_bytes();
    rmdir(tmpdir_);
    return TEST_SUMMARY();
}

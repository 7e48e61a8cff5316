// GGUF writer: metadata in insertion order, tensor infos in the order added, then the data section
// (aligned start, every tensor padded to the alignment, as ggml writes it). Written atomically.
#include "gguf/gguf.h"
#include "util/err.h"
#include "util/testhook.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct wkv {
    char *key;
    vm_gguf_type type, arr_type;   // arr_type = element type (= type for scalars)
    uint64_t n;
    uint8_t *data;                 // numeric values, n * element size bytes
    char **strs;                   // string values (may hold NUL bytes: lengths in lens)
    uint64_t *lens;
} wkv;

typedef struct wtensor {
    char name[VM_GGUF_MAX_NAME];
    vm_type type;
    int n_dims;
    int64_t ne[VM_GGUF_MAX_DIMS];
    const void *data;
    size_t nbytes;
} wtensor;

struct vm_gguf_writer {
    wkv *kv;
    int64_t n_kv, cap_kv;
    wtensor *t;
    int64_t n_t, cap_t;
    char err[512];   // first failure of a void setter, reported by write
};

static size_t elem_size(vm_gguf_type t) {
    switch (t) {
    case VM_GGUF_TYPE_UINT8: case VM_GGUF_TYPE_INT8: case VM_GGUF_TYPE_BOOL: return 1;
    case VM_GGUF_TYPE_UINT16: case VM_GGUF_TYPE_INT16: return 2;
    case VM_GGUF_TYPE_UINT32: case VM_GGUF_TYPE_INT32: case VM_GGUF_TYPE_FLOAT32: return 4;
    case VM_GGUF_TYPE_UINT64: case VM_GGUF_TYPE_INT64: case VM_GGUF_TYPE_FLOAT64: return 8;
    default: return 0;   // string, array, unknown
    }
}

vm_gguf_writer *vm_gguf_writer_init(void) {
    return vm_calloc(1, sizeof(vm_gguf_writer));
}

static void kv_clear(wkv *kv) {
    free(kv->data);
    for (uint64_t i = 0; kv->strs && i < kv->n; i++) free(kv->strs[i]);
    free(kv->strs);
    free(kv->lens);
    kv->data = NULL; kv->strs = NULL; kv->lens = NULL;
}

void vm_gguf_writer_free(vm_gguf_writer *w) {
    if (!w) return;
    for (int64_t i = 0; i < w->n_kv; i++) {
        kv_clear(&w->kv[i]);
        free(w->kv[i].key);
    }
    free(w->kv);
    free(w->t);
    free(w);
}

// Records the first failure; write() reports it.
static void fail(vm_gguf_writer *w) {
    if (!w->err[0]) snprintf(w->err, sizeof w->err, "%s", vm_errmsg());
}

// The entry for key, emptied, in place (replacing keeps the original position) or appended.
static wkv *kv_slot(vm_gguf_writer *w, const char *key) {
    if (!key || !key[0]) { vm_err("gguf writer: empty key"); return NULL; }
    for (int64_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kv[i].key, key) == 0) { kv_clear(&w->kv[i]); return &w->kv[i]; }
    if (w->n_kv == w->cap_kv) {
        int64_t cap = w->cap_kv ? 2 * w->cap_kv : 16;
        wkv *nk = realloc(w->kv, (size_t)cap * sizeof *nk);
        if (!nk) { vm_err("gguf writer: out of memory"); return NULL; }
        w->kv = nk; w->cap_kv = cap;
    }
    wkv *kv = &w->kv[w->n_kv];
    memset(kv, 0, sizeof *kv);
    kv->key = vm_strdup(key);
    if (!kv->key) return NULL;
    w->n_kv++;
    return kv;
}

// A failed value leaves the key with no value: drop it so the writer stays consistent.
static void kv_drop(vm_gguf_writer *w, wkv *kv) {
    kv_clear(kv);
    free(kv->key);
    int64_t i = kv - w->kv;
    memmove(&w->kv[i], &w->kv[i + 1], (size_t)(w->n_kv - i - 1) * sizeof *kv);
    w->n_kv--;
}

static void set_numeric(vm_gguf_writer *w, const char *key, vm_gguf_type type, int is_arr, const void *data,
                        uint64_t n) {
    if (!w) return;
    size_t es = elem_size(type), nb;
    if (es == 0) {
        vm_err("gguf writer: key '%s': %s is not a numeric type", key ? key : "?", vm_gguf_type_name(type));
        fail(w); return;
    }
    if (n > SIZE_MAX / es || (n > 0 && !data)) {
        vm_err("gguf writer: key '%s': bad array (%llu values)", key ? key : "?", (unsigned long long)n);
        fail(w); return;
    }
    nb = (size_t)n * es;
    if (type == VM_GGUF_TYPE_BOOL)
        for (uint64_t i = 0; i < n; i++)
            if (((const uint8_t *)data)[i] > 1) {
                vm_err("gguf writer: key '%s': bool value %u is not 0 or 1", key, ((const uint8_t *)data)[i]);
                fail(w); return;
            }
    wkv *kv = kv_slot(w, key);
    if (!kv) { fail(w); return; }
    kv->type = is_arr ? VM_GGUF_TYPE_ARRAY : type;
    kv->arr_type = type;
    kv->n = n;
    kv->data = vm_malloc(nb);
    if (!kv->data) { kv_drop(w, kv); fail(w); return; }
    if (nb) memcpy(kv->data, data, nb);
}

static void set_strings(vm_gguf_writer *w, const char *key, int is_arr, const char *const *strs,
                        const uint64_t *lens, uint64_t n) {
    if (!w) return;
    if (n > 0 && !strs) { vm_err("gguf writer: key '%s': NULL string array", key ? key : "?"); fail(w); return; }
    wkv *kv = kv_slot(w, key);
    if (!kv) { fail(w); return; }
    kv->type = is_arr ? VM_GGUF_TYPE_ARRAY : VM_GGUF_TYPE_STRING;
    kv->arr_type = VM_GGUF_TYPE_STRING;
    kv->n = 0;
    kv->strs = vm_calloc((size_t)n, sizeof *kv->strs);
    kv->lens = vm_calloc((size_t)n, sizeof *kv->lens);
    if (!kv->strs || !kv->lens) { kv_drop(w, kv); fail(w); return; }
    for (uint64_t i = 0; i < n; i++) {
        const char *s = strs[i] ? strs[i] : "";
        uint64_t len = lens ? lens[i] : strlen(s);
        kv->strs[i] = vm_malloc((size_t)len + 1);
        kv->n = i + 1;   // so a failure frees what was copied
        if (!kv->strs[i]) { kv_drop(w, kv); fail(w); return; }
        memcpy(kv->strs[i], s, (size_t)len);
        kv->strs[i][len] = 0;
        kv->lens[i] = len;
    }
    kv->n = n;
}

void vm_gguf_set_val(vm_gguf_writer *w, const char *key, vm_gguf_type type, const void *val) {
    set_numeric(w, key, type, 0, val, 1);
}
void vm_gguf_set_u32(vm_gguf_writer *w, const char *key, uint32_t v) { set_numeric(w, key, VM_GGUF_TYPE_UINT32, 0, &v, 1); }
void vm_gguf_set_i32(vm_gguf_writer *w, const char *key, int32_t v) { set_numeric(w, key, VM_GGUF_TYPE_INT32, 0, &v, 1); }
void vm_gguf_set_u64(vm_gguf_writer *w, const char *key, uint64_t v) { set_numeric(w, key, VM_GGUF_TYPE_UINT64, 0, &v, 1); }
void vm_gguf_set_i64(vm_gguf_writer *w, const char *key, int64_t v) { set_numeric(w, key, VM_GGUF_TYPE_INT64, 0, &v, 1); }
void vm_gguf_set_f32(vm_gguf_writer *w, const char *key, float v) { set_numeric(w, key, VM_GGUF_TYPE_FLOAT32, 0, &v, 1); }
void vm_gguf_set_f64(vm_gguf_writer *w, const char *key, double v) { set_numeric(w, key, VM_GGUF_TYPE_FLOAT64, 0, &v, 1); }
void vm_gguf_set_bool(vm_gguf_writer *w, const char *key, int v) {
    uint8_t b = v ? 1 : 0;
    set_numeric(w, key, VM_GGUF_TYPE_BOOL, 0, &b, 1);
}
void vm_gguf_set_str(vm_gguf_writer *w, const char *key, const char *v) {
    set_strings(w, key, 0, &v, NULL, 1);
}
void vm_gguf_set_arr(vm_gguf_writer *w, const char *key, vm_gguf_type type, const void *data, uint64_t n) {
    set_numeric(w, key, type, 1, data, n);
}
void vm_gguf_set_arr_str(vm_gguf_writer *w, const char *key, const char *const *strs, uint64_t n) {
    set_strings(w, key, 1, strs, NULL, n);
}

void vm_gguf_copy_kv(vm_gguf_writer *w, const vm_gguf *g) {
    if (!w || !g) return;
    for (int64_t i = 0; i < g->n_kv; i++) {
        const vm_gguf_kv *kv = &g->kv[i];
        int is_arr = kv->type == VM_GGUF_TYPE_ARRAY;
        if (kv->arr_type == VM_GGUF_TYPE_STRING) {
            const char **s = vm_calloc((size_t)kv->n, sizeof *s);
            uint64_t *l = vm_calloc((size_t)kv->n, sizeof *l);
            if (!s || !l) { free(s); free(l); fail(w); return; }
            for (uint64_t j = 0; j < kv->n; j++) { s[j] = kv->strs[j].s; l[j] = kv->strs[j].n; }
            set_strings(w, kv->key, is_arr, s, l, kv->n);
            free(s); free(l);
        } else {
            set_numeric(w, kv->key, kv->arr_type, is_arr, kv->data, kv->n);
        }
    }
}

int vm_gguf_add_tensor(vm_gguf_writer *w, const char *name, vm_type type, int n_dims,
                       const int64_t *ne, const void *data, size_t nbytes) {
    if (!w) return vm_err("gguf writer: NULL writer");
    if (!name || !name[0]) return vm_err("gguf writer: empty tensor name");
    size_t len = strlen(name);
    if (len >= VM_GGUF_MAX_NAME)
        return vm_err("gguf writer: tensor name '%s' is %zu bytes, the limit is %d", name, len, VM_GGUF_MAX_NAME - 1);
    for (int64_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0) return vm_err("gguf writer: duplicate tensor name '%s'", name);
    if (n_dims < 1 || n_dims > VM_GGUF_MAX_DIMS || !ne)
        return vm_err("gguf writer: tensor '%s': n_dims %d is not in 1..%d", name, n_dims, VM_GGUF_MAX_DIMS);
    const vm_type_traits *tr = vm_type_get((int)type);
    if (!tr) return vm_err("gguf writer: tensor '%s': unknown type %d", name, (int)type);
    wtensor t = {0};
    memcpy(t.name, name, len + 1);
    t.type = type; t.n_dims = n_dims; t.data = data; t.nbytes = nbytes;
    size_t expect = 1;
    int zero = 0;
    for (int d = 0; d < VM_GGUF_MAX_DIMS; d++) {
        t.ne[d] = d < n_dims ? ne[d] : 1;
        if (t.ne[d] < 0) return vm_err("gguf writer: tensor '%s': dimension %d is negative", name, d);
        if (t.ne[d] == 0) zero = 1;
    }
    if (t.ne[0] % tr->blck_size != 0)
        return vm_err("gguf writer: tensor '%s': row of %lld elements is not a multiple of the %s block size %lld",
                      name, (long long)t.ne[0], tr->name, (long long)tr->blck_size);
    if (zero) expect = 0;
    else {
        expect = vm_type_row_size(type, t.ne[0]);
        for (int d = 1; d < VM_GGUF_MAX_DIMS; d++)
            if (expect == 0 || vm_size_mul(expect, (size_t)t.ne[d], &expect))
                return vm_err("gguf writer: tensor '%s': size overflows", name);
    }
    if (nbytes != expect)
        return vm_err("gguf writer: tensor '%s': %zu bytes given, shape and type %s need %zu", name, nbytes,
                      tr->name, expect);
    if (nbytes > 0 && !data) return vm_err("gguf writer: tensor '%s': NULL data", name);
    if (w->n_t == w->cap_t) {
        int64_t cap = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *nt = realloc(w->t, (size_t)cap * sizeof *nt);
        if (!nt) return vm_err("gguf writer: out of memory");
        w->t = nt; w->cap_t = cap;
    }
    w->t[w->n_t++] = t;
    return 0;
}

// ---- serialisation ----

static void put(FILE *f, const void *p, size_t n) { if (n) fwrite(p, 1, n, f); }
static void put_u32(FILE *f, uint32_t v) { put(f, &v, 4); }
static void put_u64(FILE *f, uint64_t v) { put(f, &v, 8); }
static void put_str(FILE *f, const char *s, uint64_t n) { put_u64(f, n); put(f, s, (size_t)n); }
static void put_zeros(FILE *f, size_t n) {
    static const uint8_t z[64];
    while (n > 0) { size_t k = n < sizeof z ? n : sizeof z; put(f, z, k); n -= k; }
}
static size_t pad_to(size_t x, size_t a) { return (a - x % a) % a; }

static int writer_alignment(const vm_gguf_writer *w, size_t *align) {
    *align = VM_GGUF_DEFAULT_ALIGNMENT;
    for (int64_t i = 0; i < w->n_kv; i++) {
        const wkv *kv = &w->kv[i];
        if (strcmp(kv->key, "general.alignment") != 0) continue;
        if (kv->type != VM_GGUF_TYPE_UINT32)
            return vm_err("gguf writer: general.alignment must be u32, not %s", vm_gguf_type_name(kv->type));
        uint32_t a;
        memcpy(&a, kv->data, 4);
        if (a == 0 || (a & (a - 1)) != 0)
            return vm_err("gguf writer: general.alignment %u is not a power of two", a);
        *align = a;
    }
    return 0;
}

int vm_gguf_write(vm_gguf_writer *w, const char *path) {
    if (!w) return vm_err("gguf writer: NULL writer");
    if (w->err[0]) return vm_err("%s: not written: an earlier setter failed: %s", path, w->err);
    size_t align;
    if (writer_alignment(w, &align)) return vm_err_prefix("%s", path);
    // offsets: each tensor starts aligned, relative to the data section
    uint64_t *offs = vm_calloc((size_t)w->n_t, sizeof *offs);
    if (!offs) return -1;
    size_t cur = 0;
    for (int64_t i = 0; i < w->n_t; i++) {
        offs[i] = cur;
        size_t padded;
        if (vm_size_add(w->t[i].nbytes, pad_to(w->t[i].nbytes, align), &padded) ||
            vm_size_add(cur, padded, &cur)) { free(offs); return vm_err_prefix("%s", path); }
    }

    vm_afile af;
    if (vm_afile_open(&af, path)) { free(offs); return -1; }
    FILE *f = af.f;
    put(f, VM_GGUF_MAGIC, 4);
    put_u32(f, VM_GGUF_VERSION);
    put_u64(f, (uint64_t)w->n_t);
    put_u64(f, (uint64_t)w->n_kv);
    size_t pos = 24;
    for (int64_t i = 0; i < w->n_kv; i++) {
        const wkv *kv = &w->kv[i];
        put_str(f, kv->key, strlen(kv->key));
        put_u32(f, (uint32_t)kv->type);
        pos += 8 + strlen(kv->key) + 4;
        if (kv->type == VM_GGUF_TYPE_ARRAY) {
            put_u32(f, (uint32_t)kv->arr_type);
            put_u64(f, kv->n);
            pos += 12;
        }
        if (kv->arr_type == VM_GGUF_TYPE_STRING) {
            for (uint64_t j = 0; j < kv->n; j++) { put_str(f, kv->strs[j], kv->lens[j]); pos += 8 + (size_t)kv->lens[j]; }
        } else {
            size_t nb = (size_t)kv->n * elem_size(kv->arr_type);
            put(f, kv->data, nb);
            pos += nb;
        }
    }
    for (int64_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        put_str(f, t->name, strlen(t->name));
        put_u32(f, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) put_u64(f, (uint64_t)t->ne[d]);
        put_u32(f, (uint32_t)t->type);
        put_u64(f, offs[i]);
        pos += 8 + strlen(t->name) + 4 + 8 * (size_t)t->n_dims + 4 + 8;
    }
    put_zeros(f, pad_to(pos, align));
    for (int64_t i = 0; i < w->n_t; i++) {
        if (i == w->n_t / 2) vm_test_kill_point("gguf-write");   // tests: a kill mid-write
        put(f, w->t[i].data, w->t[i].nbytes);
        put_zeros(f, pad_to(w->t[i].nbytes, align));
    }
    free(offs);
    if (ferror(f)) {   // errno is still the failing write's (a full disk: ENOSPC)
        const int e = errno;
        vm_afile_abort(&af);
        return vm_err("%s: write failed: %s", path, strerror(e));
    }
    return vm_afile_commit(&af);
}

// GGUF reader: parses header, metadata and tensor infos of a mapped file without copying data.
// Every length and count is checked against the bytes left before it is used or allocated, so a
// hostile file can only produce an error, never an out-of-bounds read or a huge allocation.
#include "gguf/gguf.h"
#include "util/err.h"
#include "util/hash.h"

#include <stdlib.h>
#include <string.h>

// Smallest possible encodings, used to bound counts before allocating:
// kv = key length (8) + 1 key byte + value type (4) + 1 value byte;
// tensor info = name length (8) + 1 name byte + n_dims (4) + ne[0] (8) + type (4) + offset (8).
#define KV_MIN_BYTES 14
#define TENSOR_INFO_MIN_BYTES 33
// ggml's own caps (gguf.cpp): no real file comes near them, hostile ones are cut short.
#define MAX_STRING_BYTES ((uint64_t)1 << 30)
#define MAX_ARRAY_ELEMENTS ((uint64_t)1 << 30)

static const size_t value_size_[VM_GGUF_TYPE_COUNT] = {
    [VM_GGUF_TYPE_UINT8] = 1, [VM_GGUF_TYPE_INT8] = 1, [VM_GGUF_TYPE_UINT16] = 2, [VM_GGUF_TYPE_INT16] = 2,
    [VM_GGUF_TYPE_UINT32] = 4, [VM_GGUF_TYPE_INT32] = 4, [VM_GGUF_TYPE_FLOAT32] = 4, [VM_GGUF_TYPE_BOOL] = 1,
    [VM_GGUF_TYPE_STRING] = 0, [VM_GGUF_TYPE_ARRAY] = 0, [VM_GGUF_TYPE_UINT64] = 8, [VM_GGUF_TYPE_INT64] = 8,
    [VM_GGUF_TYPE_FLOAT64] = 8,
};

static const char *const type_names_[VM_GGUF_TYPE_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "arr", "u64", "i64", "f64",
};

const char *vm_gguf_type_name(vm_gguf_type t) {
    return ((unsigned)t < VM_GGUF_TYPE_COUNT) ? type_names_[t] : "?";
}

// ---- bounded little-endian cursor over the mapping ----

typedef struct rd {
    const uint8_t *p;
    size_t size, pos;
    const char *path;
} rd;

static size_t rd_left(const rd *r) { return r->size - r->pos; }

static int rd_need(rd *r, size_t n, const char *what) {
    if (n > rd_left(r))
        return vm_err("%s: truncated: %s needs %zu bytes at offset %zu but %zu are left",
                      r->path, what, n, r->pos, rd_left(r));
    return 0;
}

static int rd_u32(rd *r, uint32_t *v, const char *what) {
    if (rd_need(r, 4, what)) return -1;
    memcpy(v, r->p + r->pos, 4);
    r->pos += 4;
    return 0;
}

static int rd_u64(rd *r, uint64_t *v, const char *what) {
    if (rd_need(r, 8, what)) return -1;
    memcpy(v, r->p + r->pos, 8);
    r->pos += 8;
    return 0;
}

// A length-prefixed string left in place (not NUL-terminated).
static int rd_str(rd *r, vm_gguf_str *s, const char *what) {
    uint64_t n;
    if (rd_u64(r, &n, what)) return -1;
    if (n > MAX_STRING_BYTES)
        return vm_err("%s: %s: length %llu at offset %zu exceeds the 1 GiB limit",
                      r->path, what, (unsigned long long)n, r->pos - 8);
    if (n > rd_left(r))
        return vm_err("%s: %s: length %llu at offset %zu exceeds the %zu bytes left",
                      r->path, what, (unsigned long long)n, r->pos - 8, rd_left(r));
    s->s = (const char *)r->p + r->pos;
    s->n = n;
    r->pos += (size_t)n;
    return 0;
}

// ---- sorted name indices (duplicate detection and O(log n) lookup) ----

typedef struct name_idx { const char *name; int64_t idx; } name_idx;

static int cmp_name_idx(const void *a, const void *b) {
    const name_idx *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->idx > y->idx) - (x->idx < y->idx);
}

// Sorts n names into out (indices); returns the first duplicate pair in *dup_a/*dup_b, or -1s.
static int sort_names(const char *const *names, size_t stride, int64_t n, int64_t *out,
                      int64_t *dup_a, int64_t *dup_b) {
    *dup_a = *dup_b = -1;
    name_idx *tmp = vm_calloc((size_t)n, sizeof *tmp);
    if (!tmp) return -1;
    for (int64_t i = 0; i < n; i++) {
        tmp[i].name = *(const char *const *)((const char *)names + (size_t)i * stride);
        tmp[i].idx = i;
    }
    qsort(tmp, (size_t)n, sizeof *tmp, cmp_name_idx);
    for (int64_t i = 0; i < n; i++) {
        out[i] = tmp[i].idx;
        if (i > 0 && *dup_a < 0 && strcmp(tmp[i - 1].name, tmp[i].name) == 0) {
            *dup_a = tmp[i - 1].idx;
            *dup_b = tmp[i].idx;
        }
    }
    free(tmp);
    return 0;
}

// ---- metadata ----

static int read_kv(rd *r, vm_gguf_kv *kv, int64_t i) {
    char what[96];
    vm_gguf_str key;
    snprintf(what, sizeof what, "key %lld", (long long)i);
    if (rd_str(r, &key, what)) return -1;
    if (key.n == 0) return vm_err("%s: key %lld is empty (offset %zu)", r->path, (long long)i, r->pos - 8);
    if (memchr(key.s, 0, (size_t)key.n))
        return vm_err("%s: key %lld contains a NUL byte (offset %zu)", r->path, (long long)i, r->pos - (size_t)key.n);
    kv->key = vm_malloc((size_t)key.n + 1);
    if (!kv->key) return -1;
    memcpy(kv->key, key.s, (size_t)key.n);
    kv->key[key.n] = 0;

    snprintf(what, sizeof what, "value type of key '%.60s'", kv->key);
    uint32_t type;
    if (rd_u32(r, &type, what)) return -1;
    kv->n = 1;
    vm_gguf_type elem;
    if (type == VM_GGUF_TYPE_ARRAY) {
        uint32_t at;
        uint64_t n;
        snprintf(what, sizeof what, "array header of key '%.60s'", kv->key);
        if (rd_u32(r, &at, what) || rd_u64(r, &n, what)) return -1;
        if (at == VM_GGUF_TYPE_ARRAY)
            return vm_err("%s: key '%s': nested arrays are not supported (offset %zu)", r->path, kv->key, r->pos - 12);
        if (at >= VM_GGUF_TYPE_COUNT)
            return vm_err("%s: key '%s': unknown array element type %u (offset %zu)", r->path, kv->key, at, r->pos - 12);
        if (n > MAX_ARRAY_ELEMENTS)
            return vm_err("%s: key '%s': array of %llu elements exceeds the 2^30 limit (offset %zu)", r->path,
                          kv->key, (unsigned long long)n, r->pos - 8);
        kv->type = VM_GGUF_TYPE_ARRAY;
        kv->arr_type = (vm_gguf_type)at;
        kv->n = n;
        elem = (vm_gguf_type)at;
    } else {
        if (type >= VM_GGUF_TYPE_COUNT)
            return vm_err("%s: key '%s': unknown value type %u (offset %zu)", r->path, kv->key, type, r->pos - 4);
        kv->type = (vm_gguf_type)type;
        kv->arr_type = (vm_gguf_type)type;   // scalars: element type = value type
        elem = (vm_gguf_type)type;
    }

    snprintf(what, sizeof what, "value of key '%.60s'", kv->key);
    kv->data = r->p + r->pos;
    if (elem == VM_GGUF_TYPE_STRING) {
        // every string costs at least its 8-byte length: bound n before allocating
        if (kv->n > rd_left(r) / 8)
            return vm_err("%s: key '%s': %llu strings cannot fit in the %zu bytes left (offset %zu)",
                          r->path, kv->key, (unsigned long long)kv->n, rd_left(r), r->pos);
        kv->strs = vm_calloc((size_t)kv->n, sizeof *kv->strs);
        if (!kv->strs) return -1;
        for (uint64_t j = 0; j < kv->n; j++)
            if (rd_str(r, &kv->strs[j], what)) return -1;
        return 0;
    }
    size_t esz = value_size_[elem];
    if (kv->n > rd_left(r) / esz)
        return vm_err("%s: key '%s': %llu values of type %s cannot fit in the %zu bytes left (offset %zu)",
                      r->path, kv->key, (unsigned long long)kv->n, vm_gguf_type_name(elem), rd_left(r), r->pos);
    if (elem == VM_GGUF_TYPE_BOOL) {
        for (uint64_t j = 0; j < kv->n; j++) {
            uint8_t b = r->p[r->pos + j];
            if (b > 1)
                return vm_err("%s: key '%s': bool value %u is not 0 or 1 (offset %zu)",
                              r->path, kv->key, b, r->pos + (size_t)j);
        }
    }
    r->pos += (size_t)kv->n * esz;
    return 0;
}

// ---- tensor infos ----

static int read_tensor_info(rd *r, vm_gguf_tensor_info *ti, int64_t i) {
    char what[96];
    vm_gguf_str name;
    snprintf(what, sizeof what, "name of tensor %lld", (long long)i);
    if (rd_str(r, &name, what)) return -1;
    size_t name_at = r->pos - (size_t)name.n;
    if (name.n == 0) return vm_err("%s: tensor %lld has an empty name (offset %zu)", r->path, (long long)i, name_at);
    if (name.n >= VM_GGUF_MAX_NAME)
        return vm_err("%s: tensor %lld: name '%.40s...' is %llu bytes, the limit is %d (offset %zu)", r->path,
                      (long long)i, name.s, (unsigned long long)name.n, VM_GGUF_MAX_NAME - 1, name_at);
    if (memchr(name.s, 0, (size_t)name.n))
        return vm_err("%s: tensor %lld: name contains a NUL byte (offset %zu)", r->path, (long long)i, name_at);
    memcpy(ti->name, name.s, (size_t)name.n);
    ti->name[name.n] = 0;

    snprintf(what, sizeof what, "shape of tensor '%s'", ti->name);
    uint32_t n_dims;
    if (rd_u32(r, &n_dims, what)) return -1;
    if (n_dims < 1 || n_dims > VM_GGUF_MAX_DIMS)
        return vm_err("%s: tensor '%s': n_dims %u is not in 1..%d (offset %zu)", r->path, ti->name, n_dims,
                      VM_GGUF_MAX_DIMS, r->pos - 4);
    int64_t ne[VM_GGUF_MAX_DIMS] = {1, 1, 1, 1};
    for (uint32_t d = 0; d < n_dims; d++) {
        uint64_t v;
        if (rd_u64(r, &v, what)) return -1;
        if (v > (uint64_t)INT64_MAX)
            return vm_err("%s: tensor '%s': dimension %u has negative size %lld (offset %zu)", r->path, ti->name, d,
                          (long long)(int64_t)v, r->pos - 8);
        ne[d] = (int64_t)v;
    }
    // element count must be representable (a zero dimension makes it trivially so)
    int64_t nel = 1;
    int zero = ne[0] == 0 || ne[1] == 0 || ne[2] == 0 || ne[3] == 0;
    for (int d = 0; d < VM_GGUF_MAX_DIMS && !zero; d++) {
        if (nel > INT64_MAX / ne[d])
            return vm_err("%s: tensor '%s': shape (%lld, %lld, %lld, %lld) has more than 2^63 elements",
                          r->path, ti->name, (long long)ne[0], (long long)ne[1], (long long)ne[2], (long long)ne[3]);
        nel *= ne[d];
    }

    snprintf(what, sizeof what, "type of tensor '%s'", ti->name);
    uint32_t type;
    if (rd_u32(r, &type, what)) return -1;
    const vm_type_traits *tr = vm_type_get((int)(type > 0x7fffffffu ? -1 : (int)type));
    if (!tr)
        return vm_err("%s: tensor '%s': unknown tensor type %u (offset %zu)", r->path, ti->name, type, r->pos - 4);
    if (ne[0] % tr->blck_size != 0)
        return vm_err("%s: tensor '%s': row of %lld elements is not a multiple of the %s block size %lld",
                      r->path, ti->name, (long long)ne[0], tr->name, (long long)tr->blck_size);
    // bytes = rows * row bytes, overflow-checked
    size_t nbytes = 0;
    if (!zero) {
        size_t row = vm_type_row_size((vm_type)type, ne[0]);
        uint64_t rows = (uint64_t)(nel / ne[0]);
        if (row == 0 || (rows != 0 && row > SIZE_MAX / rows))
            return vm_err("%s: tensor '%s': size in bytes overflows", r->path, ti->name);
        nbytes = row * (size_t)rows;
    }
    snprintf(what, sizeof what, "offset of tensor '%s'", ti->name);
    if (rd_u64(r, &ti->offset, what)) return -1;
    ti->nbytes = nbytes;
    vm_tensor_init(&ti->t, ti->name, (vm_type)type, (int)n_dims, ne, NULL);
    return 0;
}

typedef struct off_idx { uint64_t off; size_t nbytes; int64_t idx; } off_idx;

static int cmp_off_idx(const void *a, const void *b) {
    const off_idx *x = a, *y = b;
    if (x->off != y->off) return x->off < y->off ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

// Offsets aligned, ranges inside the data section, and no two tensors sharing a byte.
static int check_tensor_data(vm_gguf *g) {
    size_t avail = g->size - g->data_offset;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        vm_gguf_tensor_info *ti = &g->tensors[i];
        if (ti->offset % g->alignment != 0)
            return vm_err("%s: tensor '%s': offset %llu not aligned to %zu", g->path, ti->name,
                          (unsigned long long)ti->offset, g->alignment);
        if (ti->offset > avail || ti->nbytes > avail - (size_t)ti->offset)
            return vm_err("%s: tensor '%s': data [%llu, +%zu) lies outside the %zu-byte data section", g->path,
                          ti->name, (unsigned long long)ti->offset, ti->nbytes, avail);
        ti->t.data = g->base + g->data_offset + ti->offset;
    }
    if (g->n_tensors < 2) return 0;
    off_idx *o = vm_calloc((size_t)g->n_tensors, sizeof *o);
    if (!o) return -1;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        o[i].off = g->tensors[i].offset;
        o[i].nbytes = g->tensors[i].nbytes;
        o[i].idx = i;
    }
    qsort(o, (size_t)g->n_tensors, sizeof *o, cmp_off_idx);
    // empty tensors own no bytes; compare each non-empty one with the furthest end so far
    int64_t prev = -1;
    int rc = 0;
    for (int64_t k = 0; k < g->n_tensors && rc == 0; k++) {
        if (o[k].nbytes == 0) continue;
        if (prev >= 0 && o[prev].off + o[prev].nbytes > o[k].off)
            rc = vm_err("%s: tensors '%s' [%llu, +%zu) and '%s' [%llu, +%zu) overlap", g->path,
                        g->tensors[o[prev].idx].name, (unsigned long long)o[prev].off, o[prev].nbytes,
                        g->tensors[o[k].idx].name, (unsigned long long)o[k].off, o[k].nbytes);
        if (prev < 0 || o[k].off + o[k].nbytes > o[prev].off + o[prev].nbytes) prev = k;
    }
    free(o);
    return rc;
}

static int parse(vm_gguf *g) {
    rd r = {g->base, g->size, 0, g->path};
    if (g->size < 4 || memcmp(g->base, VM_GGUF_MAGIC, 4) != 0) {
        char m[5] = {0};
        for (size_t i = 0; i < 4 && i < g->size; i++)
            m[i] = (g->base[i] >= 32 && g->base[i] < 127) ? (char)g->base[i] : '?';
        return vm_err("%s: not a GGUF file (magic '%s', expected 'GGUF')", g->path, m);
    }
    r.pos = 4;
    if (rd_u32(&r, &g->version, "version")) return -1;
    if ((g->version & 0xffffu) == 0 && g->version != 0)
        return vm_err("%s: version %#x looks byte-swapped: big-endian GGUF is not supported", g->path, g->version);
    if (g->version < 2 || g->version > VM_GGUF_VERSION)
        return vm_err("%s: unsupported GGUF version %u (this reader handles 2 and 3)", g->path, g->version);
    uint64_t nt, nkv;
    if (rd_u64(&r, &nt, "tensor count") || rd_u64(&r, &nkv, "metadata count")) return -1;
    // counts bound by the bytes that could hold them, before anything is allocated
    size_t left = rd_left(&r);
    if (nt > left / TENSOR_INFO_MIN_BYTES)
        return vm_err("%s: tensor count %llu cannot fit in the %zu bytes left (offset 8)", g->path,
                      (unsigned long long)nt, left);
    left -= (size_t)nt * TENSOR_INFO_MIN_BYTES;
    if (nkv > left / KV_MIN_BYTES)
        return vm_err("%s: metadata count %llu cannot fit in the %zu bytes left (offset 16)", g->path,
                      (unsigned long long)nkv, left);
    g->kv = vm_calloc((size_t)nkv, sizeof *g->kv);
    g->kv_sorted = vm_calloc((size_t)nkv, sizeof *g->kv_sorted);
    g->tensors = vm_calloc((size_t)nt, sizeof *g->tensors);
    g->tensor_sorted = vm_calloc((size_t)nt, sizeof *g->tensor_sorted);
    if (!g->kv || !g->kv_sorted || !g->tensors || !g->tensor_sorted) return -1;

    for (uint64_t i = 0; i < nkv; i++) {
        g->n_kv = (int64_t)i + 1;   // so free() sees the partially read entry
        if (read_kv(&r, &g->kv[i], (int64_t)i)) return -1;
    }
    g->n_kv = (int64_t)nkv;
    int64_t da, db;
    if (sort_names((const char *const *)&g->kv[0].key, sizeof *g->kv, g->n_kv, g->kv_sorted, &da, &db)) return -1;
    if (da >= 0) return vm_err("%s: duplicate key '%s' (entries %lld and %lld)", g->path, g->kv[da].key,
                               (long long)da, (long long)db);

    g->alignment = VM_GGUF_DEFAULT_ALIGNMENT;
    const vm_gguf_kv *al = vm_gguf_get_kv(g, "general.alignment");
    if (al) {
        if (al->type != VM_GGUF_TYPE_UINT32)
            return vm_err("%s: general.alignment must be u32, not %s", g->path, vm_gguf_type_name(al->type));
        uint32_t a;
        memcpy(&a, al->data, 4);
        if (a == 0 || (a & (a - 1)) != 0)
            return vm_err("%s: general.alignment %u is not a power of two", g->path, a);
        g->alignment = a;
    }

    for (uint64_t i = 0; i < nt; i++)
        if (read_tensor_info(&r, &g->tensors[i], (int64_t)i)) return -1;
    g->n_tensors = (int64_t)nt;
    // names live in the fixed arrays; point a temporary pointer table at them for sorting
    if (nt > 0) {
        const char **names = vm_calloc((size_t)nt, sizeof *names);
        if (!names) return -1;
        for (uint64_t i = 0; i < nt; i++) names[i] = g->tensors[i].name;
        int rc = sort_names(names, sizeof *names, g->n_tensors, g->tensor_sorted, &da, &db);
        free(names);
        if (rc) return -1;
        if (da >= 0) return vm_err("%s: duplicate tensor name '%s' (tensors %lld and %lld)", g->path,
                                   g->tensors[da].name, (long long)da, (long long)db);
    }

    // the data section starts at the next multiple of the alignment
    size_t pad = (g->alignment - r.pos % g->alignment) % g->alignment;
    if (nt > 0 && pad > rd_left(&r))
        return vm_err("%s: truncated: data section would start at offset %zu, past the end (%zu bytes)",
                      g->path, r.pos + pad, g->size);
    g->data_offset = pad > rd_left(&r) ? g->size : r.pos + pad;
    return check_tensor_data(g);
}

static vm_gguf *open_common(vm_gguf *g) {
    if (parse(g) != 0) {
        // keep the message: free() must not clobber it (it does not record errors)
        vm_gguf_free(g);
        return NULL;
    }
    return g;
}

vm_gguf *vm_gguf_open_mem(const void *buf, size_t size, const char *name) {
    vm_gguf *g = vm_calloc(1, sizeof *g);
    if (!g) return NULL;
    g->path = vm_strdup(name ? name : "<memory>");
    if (!g->path) { free(g); return NULL; }
    g->base = buf;
    g->size = buf ? size : 0;
    return open_common(g);
}

vm_gguf *vm_gguf_open(const char *path) {
    if (!path) { vm_err("gguf: no path given"); return NULL; }
    vm_gguf *g = vm_calloc(1, sizeof *g);
    if (!g) return NULL;
    g->path = vm_strdup(path);
    if (!g->path) { free(g); return NULL; }
    if (vm_mmap_open(&g->map, path) != 0) { free(g->path); free(g); return NULL; }
    g->base = g->map.data;
    g->size = g->map.size;
    return open_common(g);
}

void vm_gguf_free(vm_gguf *g) {
    if (!g) return;
    for (int64_t i = 0; g->kv && i < g->n_kv; i++) {
        free(g->kv[i].key);
        free(g->kv[i].strs);
    }
    free(g->kv);
    free(g->kv_sorted);
    free(g->tensors);
    free(g->tensor_sorted);
    vm_mmap_close(&g->map);
    free(g->path);
    free(g);
}

// ---- lookup ----

int64_t vm_gguf_find_key(const vm_gguf *g, const char *key) {
    if (!g || !key || !g->kv_sorted) return -1;
    int64_t lo = 0, hi = g->n_kv;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(g->kv[g->kv_sorted[mid]].key, key);
        if (c == 0) return g->kv_sorted[mid];
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return -1;
}

const vm_gguf_kv *vm_gguf_get_kv(const vm_gguf *g, const char *key) {
    int64_t i = vm_gguf_find_key(g, key);
    return i < 0 ? NULL : &g->kv[i];
}

const vm_gguf_tensor_info *vm_gguf_find_tensor(const vm_gguf *g, const char *name) {
    if (!g || !name || !g->tensor_sorted) return NULL;
    int64_t lo = 0, hi = g->n_tensors;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        const vm_gguf_tensor_info *ti = &g->tensors[g->tensor_sorted[mid]];
        int c = strcmp(ti->name, name);
        if (c == 0) return ti;
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return NULL;
}

uint64_t vm_gguf_sample_checksum(const vm_gguf *g) {
    const uint64_t size = g->size;
    uint64_t h = vm_fnv1a(VM_FNV1A_INIT, &size, sizeof size);
    h = vm_fnv1a(h, g->base, g->data_offset < g->size ? g->data_offset : g->size);
    enum { WIN = 64, N_WIN = 17 };
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const vm_gguf_tensor_info *ti = &g->tensors[i];
        const uint8_t *p = g->base + g->data_offset + ti->offset;   // inside the file (checked at open)
        if (ti->nbytes <= (size_t)WIN * N_WIN) { h = vm_fnv1a(h, p, ti->nbytes); continue; }
        for (uint64_t k = 0; k < N_WIN; k++)   // window k starts k/16 of the way to the last WIN bytes
            h = vm_fnv1a(h, p + (uint64_t)(ti->nbytes - WIN) * k / (N_WIN - 1), WIN);
    }
    return h;
}

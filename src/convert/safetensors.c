// safetensors reader: see safetensors.h for the format and what is validated.
#include "convert/safetensors.h"
#include "quant/quant.h"
#include "util/err.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const struct { const char *name; size_t size; } dtypes[VM_ST_DTYPE_COUNT] = {
    [VM_ST_F64] = {"F64", 8}, [VM_ST_F32] = {"F32", 4}, [VM_ST_F16] = {"F16", 2},
    [VM_ST_BF16] = {"BF16", 2}, [VM_ST_I64] = {"I64", 8}, [VM_ST_I32] = {"I32", 4},
    [VM_ST_I16] = {"I16", 2}, [VM_ST_I8] = {"I8", 1}, [VM_ST_U64] = {"U64", 8},
    [VM_ST_U32] = {"U32", 4}, [VM_ST_U16] = {"U16", 2}, [VM_ST_U8] = {"U8", 1},
    [VM_ST_BOOL] = {"BOOL", 1}, [VM_ST_F8_E4M3] = {"F8_E4M3", 1}, [VM_ST_F8_E5M2] = {"F8_E5M2", 1},
};

const char *vm_st_dtype_name(vm_st_dtype d) { return (unsigned)d < VM_ST_DTYPE_COUNT ? dtypes[d].name : "?"; }
size_t vm_st_dtype_size(vm_st_dtype d) { return (unsigned)d < VM_ST_DTYPE_COUNT ? dtypes[d].size : 0; }

int64_t vm_st_nelements(const vm_st_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->n_dims; i++) n *= t->shape[i];
    return n;
}

void vm_st_free(vm_st *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) free(s->t[i].name);
    free(s->t);
    for (int i = 0; i < s->n_files; i++) {
        if (s->maps) vm_mmap_close(&s->maps[i]);
        if (s->paths) free(s->paths[i]);
    }
    free(s->maps);
    free(s->paths);
    free(s);
}

// One parsed entry before it joins the checkpoint: begin/end are relative to the buffer.
typedef struct st_entry { vm_st_tensor t; size_t begin, end; } st_entry;

static int cmp_entry_off(const void *a, const void *b) {
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static int st_parse_entry(const char *fname, const char *key, json_t *v, size_t data_size, st_entry *e) {
    if (!json_is_object(v)) return vm_err("%s: tensor '%s': header entry is not an object", fname, key);
    json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"),
           *jo = json_object_get(v, "data_offsets");
    if (!json_is_string(jd)) return vm_err("%s: tensor '%s': missing string 'dtype'", fname, key);
    if (!json_is_array(js)) return vm_err("%s: tensor '%s': missing array 'shape'", fname, key);
    if (!json_is_array(jo) || json_array_size(jo) != 2)
        return vm_err("%s: tensor '%s': 'data_offsets' must be [begin, end]", fname, key);
    const char *ds = json_string_value(jd);
    int d = -1;
    for (int i = 0; i < VM_ST_DTYPE_COUNT; i++)
        if (!strcmp(ds, dtypes[i].name)) d = i;
    if (d < 0) return vm_err("%s: tensor '%s': unknown dtype '%s'", fname, key, ds);
    e->t.dtype = (vm_st_dtype)d;
    size_t nd = json_array_size(js);
    if (nd > VM_ST_MAX_DIMS) return vm_err("%s: tensor '%s': %zu dimensions (at most %d)", fname, key, nd, VM_ST_MAX_DIMS);
    e->t.n_dims = (int)nd;
    size_t nbytes = dtypes[d].size;
    for (size_t i = 0; i < nd; i++) {
        json_t *x = json_array_get(js, i);
        if (!json_is_integer(x) || json_integer_value(x) < 0)
            return vm_err("%s: tensor '%s': shape[%zu] is not a non-negative integer", fname, key, i);
        e->t.shape[i] = (int64_t)json_integer_value(x);
        if (vm_size_mul(nbytes, (size_t)e->t.shape[i], &nbytes))
            return vm_err("%s: tensor '%s': shape overflows", fname, key);
    }
    json_t *b = json_array_get(jo, 0), *en = json_array_get(jo, 1);
    if (!json_is_integer(b) || !json_is_integer(en) || json_integer_value(b) < 0 || json_integer_value(en) < 0)
        return vm_err("%s: tensor '%s': data_offsets are not non-negative integers", fname, key);
    e->begin = (size_t)json_integer_value(b);
    e->end = (size_t)json_integer_value(en);
    if (e->end < e->begin) return vm_err("%s: tensor '%s': data_offsets end %zu < begin %zu", fname, key, e->end, e->begin);
    if (e->end > data_size)
        return vm_err("%s: tensor '%s': data_offsets [%zu, %zu] beyond the %zu data bytes", fname, key, e->begin, e->end, data_size);
    if (e->end - e->begin != nbytes)
        return vm_err("%s: tensor '%s': %zu bytes at data_offsets, but %s shape needs %zu", fname, key,
                      e->end - e->begin, ds, nbytes);
    e->t.nbytes = nbytes;
    return 0;
}

// Parses one file's bytes and appends its tensors to s (names not yet checked across files).
static int st_parse(vm_st *s, const uint8_t *buf, size_t size, const char *fname, int file) {
    if (size < 8) return vm_err("%s: %zu bytes, too small for a safetensors header", fname, size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | buf[i];
    if (hlen > size - 8) return vm_err("%s: header length %llu exceeds the file (%zu bytes)", fname, (unsigned long long)hlen, size);
    if (hlen > VM_ST_MAX_HEADER) return vm_err("%s: header length %llu exceeds the %zu-byte limit", fname, (unsigned long long)hlen, VM_ST_MAX_HEADER);
    if (hlen < 2 || buf[8] != '{') return vm_err("%s: header does not start with '{'", fname);
    const uint8_t *data = buf + 8 + hlen;
    size_t data_size = size - 8 - (size_t)hlen;
    json_error_t jerr;
    json_t *root = json_loadb((const char *)buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) return vm_err("%s: header is not valid JSON: %s (byte %d)", fname, jerr.text, jerr.position);
    int rc = -1;
    st_entry *ents = NULL;
    size_t n = 0;
    if (!json_is_object(root)) { vm_err("%s: header is not a JSON object", fname); goto done; }
    ents = vm_calloc(json_object_size(root) + 1, sizeof *ents);
    if (!ents) goto done;
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (!strcmp(key, "__metadata__")) continue;   // free-form string map; not needed
        if (!*key) { vm_err("%s: empty tensor name", fname); goto done; }
        st_entry *e = &ents[n];
        if (st_parse_entry(fname, key, v, data_size, e)) goto done;
        if (!(e->t.name = vm_strdup(key))) goto done;
        n++;
    }
    // the tensors must tile the buffer: each begins where the previous ended
    qsort(ents, n, sizeof *ents, cmp_entry_off);
    size_t cur = 0;
    for (size_t i = 0; i < n; i++) {
        if (ents[i].begin < cur) { vm_err("%s: tensor '%s' overlaps the previous tensor (offset %zu < %zu)", fname, ents[i].t.name, ents[i].begin, cur); goto done; }
        if (ents[i].begin > cur) { vm_err("%s: %zu unindexed bytes before tensor '%s' (offset %zu)", fname, ents[i].begin - cur, ents[i].t.name, cur); goto done; }
        cur = ents[i].end;
    }
    if (cur != data_size) { vm_err("%s: %zu trailing bytes after the last tensor", fname, data_size - cur); goto done; }
    vm_st_tensor *nt = realloc(s->t, sizeof *nt * ((size_t)s->n + n + 1));
    if (!nt) { vm_err("out of memory"); goto done; }
    s->t = nt;
    for (size_t i = 0; i < n; i++) {
        ents[i].t.data = data + ents[i].begin;
        ents[i].t.file = file;
        s->t[s->n++] = ents[i].t;
        ents[i].t.name = NULL;   // moved
    }
    rc = 0;
done:
    if (ents) for (size_t i = 0; i < n; i++) free(ents[i].t.name);
    free(ents);
    json_decref(root);
    return rc;
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp(((const vm_st_tensor *)a)->name, ((const vm_st_tensor *)b)->name);
}

// Sorts by name and rejects a name present twice (in two shards).
static int st_finish(vm_st *s) {
    if (s->n) qsort(s->t, (size_t)s->n, sizeof *s->t, cmp_tensor_name);
    for (int i = 1; i < s->n; i++)
        if (!strcmp(s->t[i - 1].name, s->t[i].name))
            return vm_err("tensor '%s' appears in both %s and %s", s->t[i].name,
                          s->paths[s->t[i - 1].file], s->paths[s->t[i].file]);
    return 0;
}

static vm_st *st_new(int n_files) {
    vm_st *s = vm_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->maps = vm_calloc((size_t)n_files, sizeof *s->maps);
    s->paths = vm_calloc((size_t)n_files, sizeof *s->paths);
    if (!s->maps || !s->paths) { vm_st_free(s); return NULL; }
    return s;
}

vm_st *vm_st_open_mem(const void *buf, size_t size, const char *name) {
    vm_st *s = st_new(1);
    if (!s) return NULL;
    s->n_files = 1;
    if (!(s->paths[0] = vm_strdup(name ? name : "<memory>")) ||
        st_parse(s, buf, size, s->paths[0], 0) || st_finish(s)) { vm_st_free(s); return NULL; }
    return s;
}

// Maps file i of s (the map is owned by s from then on).
static int st_add_file(vm_st *s, const char *path) {
    int i = s->n_files;
    if (!(s->paths[i] = vm_strdup(path))) return -1;
    s->n_files++;
    if (vm_mmap_open(&s->maps[i], path)) return -1;
    return st_parse(s, s->maps[i].data, s->maps[i].size, path, i);
}

vm_st *vm_st_open_file(const char *path) {
    vm_st *s = st_new(1);
    if (!s) return NULL;
    if (st_add_file(s, path) || st_finish(s)) { vm_st_free(s); return NULL; }
    return s;
}

const vm_st_tensor *vm_st_find(const vm_st *s, const char *name) {
    int lo = 0, hi = s->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(s->t[mid].name, name);
        if (!c) return &s->t[mid];
        if (c < 0) lo = mid + 1; else hi = mid - 1;
    }
    return NULL;
}

static char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = vm_malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

// A shard name from an index must stay inside the folder.
static int safe_shard_name(const char *f) {
    return *f && !strchr(f, '/') && !strchr(f, '\\') && strcmp(f, ".") && strcmp(f, "..");
}

static vm_st *st_open_index(const char *dir, const char *ipath) {
    size_t len;
    char *text = vm_read_file(ipath, &len);
    if (!text) return NULL;
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    free(text);
    if (!root) { vm_err("%s: not valid JSON: %s (line %d)", ipath, jerr.text, jerr.line); return NULL; }
    vm_st *s = NULL;
    const char **files = NULL;
    int nf = 0;
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(wm)) { vm_err("%s: no \"weight_map\" object", ipath); goto fail; }
    if (json_object_size(wm) == 0) { vm_err("%s: \"weight_map\" is empty", ipath); goto fail; }
    files = vm_calloc(json_object_size(wm), sizeof *files);
    if (!files) goto fail;
    const char *key;
    json_t *v;
    json_object_foreach(wm, key, v) {   // distinct shard names, in first-seen order
        if (!json_is_string(v)) { vm_err("%s: weight_map['%s'] is not a file name", ipath, key); goto fail; }
        const char *f = json_string_value(v);
        if (!safe_shard_name(f)) { vm_err("%s: weight_map['%s'] = '%s' is not a plain file name in the folder", ipath, key, f); goto fail; }
        int seen = 0;
        for (int i = 0; i < nf && !seen; i++) seen = !strcmp(files[i], f);
        if (!seen) {
            if (nf == VM_ST_MAX_FILES) { vm_err("%s: more than %d shard files", ipath, VM_ST_MAX_FILES); goto fail; }
            files[nf++] = f;
        }
    }
    if (!(s = st_new(nf))) goto fail;
    for (int i = 0; i < nf; i++) {
        char *p = path_join(dir, files[i]);
        if (!p) goto fail;
        int rc = st_add_file(s, p);
        free(p);
        if (rc) goto fail;
    }
    if (st_finish(s)) goto fail;
    // the map and the shards must agree exactly: every mapped tensor in its shard, nothing extra
    json_object_foreach(wm, key, v) {
        const vm_st_tensor *t = vm_st_find(s, key);
        const char *f = json_string_value(v);
        if (!t) { vm_err("%s: tensor '%s' is mapped to %s but not found there", ipath, key, f); goto fail; }
        const char *tf = strrchr(s->paths[t->file], '/');
        if (strcmp(tf ? tf + 1 : s->paths[t->file], f)) {
            vm_err("%s: tensor '%s' is mapped to %s but stored in %s", ipath, key, f, s->paths[t->file]);
            goto fail;
        }
    }
    for (int i = 0; i < s->n; i++)
        if (!json_object_get(wm, s->t[i].name)) {
            vm_err("%s: tensor '%s' in %s is missing from the weight_map", ipath, s->t[i].name, s->paths[s->t[i].file]);
            goto fail;
        }
    free(files);
    json_decref(root);
    return s;
fail:
    vm_st_free(s);
    free(files);
    json_decref(root);
    return NULL;
}

vm_st *vm_st_open_dir(const char *dir) {
    char *ipath = path_join(dir, "model.safetensors.index.json");
    if (!ipath) return NULL;
    vm_st *s = NULL;
    if (file_exists(ipath)) {
        s = st_open_index(dir, ipath);
    } else {
        char *p = path_join(dir, "model.safetensors");
        if (p && !file_exists(p)) vm_err("%s: neither model.safetensors.index.json nor model.safetensors found", dir);
        else if (p) s = vm_st_open_file(p);
        free(p);
    }
    free(ipath);
    return s;
}

int vm_st_read_f32(const vm_st_tensor *t, float *dst) {
    int64_t n = vm_st_nelements(t);
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case VM_ST_F32: memcpy(dst, p, (size_t)n * 4); return 0;
    case VM_ST_F16:
    case VM_ST_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = (uint16_t)(p[2 * i] | p[2 * i + 1] << 8);
            dst[i] = t->dtype == VM_ST_F16 ? vm_fp16_to_fp32(h) : vm_bf16_to_fp32(h);
        }
        return 0;
    default:
        return vm_err("tensor '%s' has dtype %s (supported: F32, F16, BF16)", t->name, vm_st_dtype_name(t->dtype));
    }
}

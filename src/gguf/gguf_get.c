// Typed metadata getters: any integer width is accepted when the value fits the requested type.
#include "gguf/gguf.h"
#include "util/err.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// Values in the mapping are unaligned: always memcpy.
#define DEF_LOAD(T) static T load_##T(const void *p) { T v; memcpy(&v, p, sizeof v); return v; }
DEF_LOAD(uint8_t) DEF_LOAD(int8_t) DEF_LOAD(uint16_t) DEF_LOAD(int16_t) DEF_LOAD(uint32_t)
DEF_LOAD(int32_t) DEF_LOAD(uint64_t) DEF_LOAD(int64_t) DEF_LOAD(float) DEF_LOAD(double)
#define LOAD(T, p) load_##T(p)

static int is_int_type(vm_gguf_type t) {
    switch (t) {
    case VM_GGUF_TYPE_UINT8: case VM_GGUF_TYPE_INT8: case VM_GGUF_TYPE_UINT16: case VM_GGUF_TYPE_INT16:
    case VM_GGUF_TYPE_UINT32: case VM_GGUF_TYPE_INT32: case VM_GGUF_TYPE_UINT64: case VM_GGUF_TYPE_INT64:
    case VM_GGUF_TYPE_BOOL:
        return 1;
    default:
        return 0;
    }
}

// Integer element at p as int64; *big set when a u64 exceeds INT64_MAX.
static int64_t load_int(vm_gguf_type t, const uint8_t *p, int *big) {
    *big = 0;
    switch (t) {
    case VM_GGUF_TYPE_UINT8: case VM_GGUF_TYPE_BOOL: return LOAD(uint8_t, p);
    case VM_GGUF_TYPE_INT8: return LOAD(int8_t, p);
    case VM_GGUF_TYPE_UINT16: return LOAD(uint16_t, p);
    case VM_GGUF_TYPE_INT16: return LOAD(int16_t, p);
    case VM_GGUF_TYPE_UINT32: return LOAD(uint32_t, p);
    case VM_GGUF_TYPE_INT32: return LOAD(int32_t, p);
    case VM_GGUF_TYPE_INT64: return LOAD(int64_t, p);
    case VM_GGUF_TYPE_UINT64: {
        uint64_t u = LOAD(uint64_t, p);
        if (u > (uint64_t)INT64_MAX) { *big = 1; return INT64_MAX; }
        return (int64_t)u;
    }
    default: return 0;
    }
}

static int wrong_type(const vm_gguf *g, const vm_gguf_kv *kv, const char *want) {
    if (kv->type == VM_GGUF_TYPE_ARRAY)
        return vm_err("%s: key '%s': expected %s, found an array of %s", g->path, kv->key, want,
                      vm_gguf_type_name(kv->arr_type));
    return vm_err("%s: key '%s': expected %s, found %s", g->path, kv->key, want, vm_gguf_type_name(kv->type));
}

int vm_gguf_get_i64(const vm_gguf *g, const char *key, int64_t *out) {
    const vm_gguf_kv *kv = vm_gguf_get_kv(g, key);
    if (!kv) return 1;
    if (kv->type == VM_GGUF_TYPE_ARRAY || !is_int_type(kv->type)) return wrong_type(g, kv, "an integer");
    int big;
    int64_t v = load_int(kv->type, kv->data, &big);
    if (big)
        return vm_err("%s: key '%s': value %llu does not fit in int64", g->path, key,
                      (unsigned long long)LOAD(uint64_t, kv->data));
    *out = v;
    return 0;
}

int vm_gguf_get_u32(const vm_gguf *g, const char *key, uint32_t *out) {
    const vm_gguf_kv *kv = vm_gguf_get_kv(g, key);
    if (!kv) return 1;
    int64_t v;
    if (vm_gguf_get_i64(g, key, &v) != 0) return -1;
    if (v < 0 || v > (int64_t)UINT32_MAX)
        return vm_err("%s: key '%s': value %lld does not fit in u32", g->path, key, (long long)v);
    *out = (uint32_t)v;
    return 0;
}

int vm_gguf_get_f32(const vm_gguf *g, const char *key, float *out) {
    const vm_gguf_kv *kv = vm_gguf_get_kv(g, key);
    if (!kv) return 1;
    if (kv->type == VM_GGUF_TYPE_FLOAT32) { *out = LOAD(float, kv->data); return 0; }
    if (kv->type == VM_GGUF_TYPE_FLOAT64) {
        double d = LOAD(double, kv->data);
        if (isfinite(d) && fabs(d) > FLT_MAX)
            return vm_err("%s: key '%s': value %g does not fit in f32", g->path, key, d);
        *out = (float)d;
        return 0;
    }
    if (kv->type == VM_GGUF_TYPE_ARRAY || !is_int_type(kv->type)) return wrong_type(g, kv, "a number");
    if (kv->type == VM_GGUF_TYPE_UINT64) { *out = (float)LOAD(uint64_t, kv->data); return 0; }
    int big;
    *out = (float)load_int(kv->type, kv->data, &big);
    return 0;
}

int vm_gguf_get_bool(const vm_gguf *g, const char *key, int *out) {
    const vm_gguf_kv *kv = vm_gguf_get_kv(g, key);
    if (!kv) return 1;
    if (kv->type == VM_GGUF_TYPE_ARRAY || !is_int_type(kv->type)) return wrong_type(g, kv, "a bool");
    int big;
    int64_t v = load_int(kv->type, kv->data, &big);
    if (big || (v != 0 && v != 1))
        return vm_err("%s: key '%s': integer value is not 0 or 1, cannot be a bool", g->path, key);
    *out = (int)v;
    return 0;
}

int vm_gguf_get_str(const vm_gguf *g, const char *key, char **out) {
    const vm_gguf_kv *kv = vm_gguf_get_kv(g, key);
    if (!kv) return 1;
    if (kv->type != VM_GGUF_TYPE_STRING) return wrong_type(g, kv, "a string");
    const vm_gguf_str *s = &kv->strs[0];
    char *p = vm_malloc((size_t)s->n + 1);
    if (!p) return -1;
    memcpy(p, s->s, (size_t)s->n);
    p[s->n] = 0;
    *out = p;
    return 0;
}

int vm_gguf_get_arr(const vm_gguf *g, const char *key, vm_gguf_type *type, uint64_t *n, const void **data) {
    const vm_gguf_kv *kv = vm_gguf_get_kv(g, key);
    if (!kv) return 1;
    if (kv->type != VM_GGUF_TYPE_ARRAY) return wrong_type(g, kv, "an array");
    if (type) *type = kv->arr_type;
    if (n) *n = kv->n;
    if (data) *data = kv->data;
    return 0;
}

double vm_gguf_arr_num(const vm_gguf_kv *kv, uint64_t i) {
    if (!kv || i >= kv->n) return NAN;
    const uint8_t *p = kv->data;
    switch (kv->arr_type) {
    case VM_GGUF_TYPE_UINT8: case VM_GGUF_TYPE_BOOL: return LOAD(uint8_t, p + i);
    case VM_GGUF_TYPE_INT8: return LOAD(int8_t, p + i);
    case VM_GGUF_TYPE_UINT16: return LOAD(uint16_t, p + 2 * i);
    case VM_GGUF_TYPE_INT16: return LOAD(int16_t, p + 2 * i);
    case VM_GGUF_TYPE_UINT32: return LOAD(uint32_t, p + 4 * i);
    case VM_GGUF_TYPE_INT32: return LOAD(int32_t, p + 4 * i);
    case VM_GGUF_TYPE_FLOAT32: return LOAD(float, p + 4 * i);
    case VM_GGUF_TYPE_UINT64: return (double)LOAD(uint64_t, p + 8 * i);
    case VM_GGUF_TYPE_INT64: return (double)LOAD(int64_t, p + 8 * i);
    case VM_GGUF_TYPE_FLOAT64: return LOAD(double, p + 8 * i);
    default: return NAN;   // strings
    }
}

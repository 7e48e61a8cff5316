#include "util/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char err_buf[1024];

int vm_err(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_buf, sizeof err_buf, fmt, ap);
    va_end(ap);
    return -1;
}

int vm_err_prefix(const char *fmt, ...) {
    char pre[512], old[sizeof err_buf];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, err_buf, sizeof old);
    // Manual join: the prefix plus the old message may not fit, and truncation is fine here.
    size_t np = strlen(pre), no = strlen(old), cap = sizeof err_buf - 1;
    if (np > cap) np = cap;
    memcpy(err_buf, pre, np);
    size_t k = np;
    for (const char *sep = ": "; *sep && k < cap; sep++) err_buf[k++] = *sep;
    if (no > cap - k) no = cap - k;
    memcpy(err_buf + k, old, no);
    err_buf[k + no] = 0;
    return -1;
}

const char *vm_errmsg(void) { return err_buf[0] ? err_buf : "unknown error"; }
void vm_err_clear(void) { err_buf[0] = 0; }

int vm_size_mul(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return vm_err("size overflow (%zu * %zu)", a, b);
    *out = a * b;
    return 0;
}

int vm_size_add(size_t a, size_t b, size_t *out) {
    if (b > SIZE_MAX - a) return vm_err("size overflow (%zu + %zu)", a, b);
    *out = a + b;
    return 0;
}

void *vm_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) vm_err("out of memory allocating %zu bytes", n);
    return p;
}

void *vm_calloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) vm_err("out of memory allocating %zu x %zu bytes", n, size);
    return p;
}

char *vm_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = vm_malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

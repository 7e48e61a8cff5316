#include "util/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char err_buf[1024];

// Length of the well-formed UTF-8 character at s (n > 0 bytes left), 0 when there is none.
static size_t utf8_len(const unsigned char *s, size_t n) {
    const unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf;   // the second byte's range (RFC 3629 table)
    if (c >= 0xc2 && c <= 0xdf) len = 2;
    else if (c >= 0xe0 && c <= 0xef) { len = 3; if (c == 0xe0) lo = 0xa0; if (c == 0xed) hi = 0x9f; }
    else if (c >= 0xf0 && c <= 0xf4) { len = 4; if (c == 0xf0) lo = 0x90; if (c == 0xf4) hi = 0x8f; }
    else return 0;
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++) if (s[i] < 0x80 || s[i] > 0xbf) return 0;
    return len;
}

size_t vm_escape(char *dst, size_t cap, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_len(u + i, n - i);
        // C0 controls and DEL; C1 controls (U+0080..U+009F: 0xc2 0x80..0x9f), which some terminals
        // take as escape sequences; bytes that are not UTF-8
        const int esc = l == 0 || u[i] < 0x20 || u[i] == 0x7f || (l == 2 && u[i] == 0xc2 && u[i + 1] < 0xa0);
        if (esc) {
            if (l == 0) l = 1;
            if (k + 4 * l + 1 > cap) break;
            for (size_t j = 0; j < l; j++) k += (size_t)snprintf(dst + k, 5, "\\x%02x", u[i + j]);
        } else {
            if (k + l + 1 > cap) break;
            memcpy(dst + k, s + i, l);
            k += l;
        }
        i += l;
    }
    dst[k] = 0;
    return k;
}

void vm_fput_escaped(FILE *f, const char *s, size_t n) {
    char buf[1024];
    for (size_t i = 0; i < n;) {   // chunks of whole characters (a character is at most 4 bytes)
        size_t m = n - i < 200 ? n - i : 200;
        while (m < n - i && m > 0 && ((unsigned char)s[i + m] & 0xc0) == 0x80) m--;
        if (m == 0) m = 1;
        vm_escape(buf, sizeof buf, s + i, m);
        fputs(buf, f);
        i += m;
    }
}

int vm_err(const char *fmt, ...) {
    char raw[sizeof err_buf];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    vm_escape(err_buf, sizeof err_buf, raw, strlen(raw));
    return -1;
}

int vm_err_prefix(const char *fmt, ...) {
    char raw[512], pre[512], old[sizeof err_buf];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    vm_escape(pre, sizeof pre, raw, strlen(raw));
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

int vm_err_prefix_file(const char *what, const char *path) {
    char esc[512];   // messages hold the escaped path
    const size_t n = vm_escape(esc, sizeof esc, path, strlen(path));
    if (n && !strncmp(err_buf, esc, n) && err_buf[n] == ':' && err_buf[n + 1] == ' ')
        memmove(err_buf, err_buf + n + 2, strlen(err_buf + n + 2) + 1);
    return vm_err_prefix("%s %s", what, path);
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

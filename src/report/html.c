#include "report/html.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void vm_sbuf_init(vm_sbuf *b) { memset(b, 0, sizeof *b); }

void vm_sbuf_free(vm_sbuf *b) {
    free(b->s);
    memset(b, 0, sizeof *b);
}

// Makes room for n more bytes plus the terminator; 0 or -1 (sets oom).
static int reserve(vm_sbuf *b, size_t n) {
    if (b->oom) return -1;
    if (n > (size_t)-1 / 2 - b->len) { b->oom = 1; return -1; }
    size_t need = b->len + n + 1;
    if (need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap *= 2;
    char *s = realloc(b->s, cap);
    if (!s) { b->oom = 1; return -1; }
    b->s = s;
    b->cap = cap;
    return 0;
}

void vm_sbuf_putn(vm_sbuf *b, const char *s, size_t n) {
    if (!s || reserve(b, n) != 0) return;
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

void vm_sbuf_puts(vm_sbuf *b, const char *s) {
    if (s) vm_sbuf_putn(b, s, strlen(s));
}

void vm_sbuf_printf(vm_sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || reserve(b, (size_t)n) != 0) { b->oom = 1; return; }
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

int vm_sbuf_ok(const vm_sbuf *b) {
    return b->oom ? vm_err("report: out of memory building the document") : 0;
}

const char *vm_sbuf_str(const vm_sbuf *b) { return b->s ? b->s : ""; }

// Decodes one UTF-8 sequence at s (NUL-terminated). Returns its length in bytes (>= 1) and the code
// point in *cp, or -1 in *cp for an invalid sequence (then the length is 1: skip one byte).
static int utf8_next(const unsigned char *s, long *cp) {
    unsigned c = s[0];
    if (c < 0x80) { *cp = c; return 1; }
    int len;
    unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte (rules out overlongs/surrogates)
    long v;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; v = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3; v = c & 0x0F;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4; v = c & 0x07;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else { *cp = -1; return 1; }
    for (int k = 1; k < len; k++) {
        unsigned d = s[k];
        unsigned dlo = k == 1 ? lo : 0x80, dhi = k == 1 ? hi : 0xBF;
        if (d < dlo || d > dhi) { *cp = -1; return 1; }  // also stops at the NUL terminator
        v = (v << 6) | (d & 0x3F);
    }
    *cp = v;
    return len;
}

// Code points that must not reach the document as they are.
static int is_bad_cp(long cp) {
    return cp < 0 || (cp < 0x20 && cp != '\t' && cp != '\n') || (cp >= 0x7F && cp <= 0x9F) ||
           (cp >= 0xFDD0 && cp <= 0xFDEF) || (cp & 0xFFFE) == 0xFFFE;
}

int vm_utf8_chars(const char *text) {
    if (!text) return 0;
    int n = 0;
    const unsigned char *s = (const unsigned char *)text;
    while (*s) {
        long cp;
        s += utf8_next(s, &cp);
        if (cp == '\r') continue;  // dropped by the escaper (newline normalisation)
        n++;
    }
    return n;
}

void vm_sbuf_escape(vm_sbuf *b, const char *text, int max_chars) {
    if (!text) return;
    int total = max_chars > 0 ? vm_utf8_chars(text) : 0;
    int keep = max_chars > 0 && total > max_chars ? max_chars - 1 : -1;  // -1: no truncation
    const unsigned char *s = (const unsigned char *)text;
    int n = 0;
    while (*s) {
        long cp;
        int len = utf8_next(s, &cp);
        if (cp == '\r') { s += len; continue; }
        if (keep >= 0 && n == keep) { vm_sbuf_puts(b, "\xE2\x80\xA6"); return; }
        switch (cp) {
        case '&': vm_sbuf_puts(b, "&amp;"); break;
        case '<': vm_sbuf_puts(b, "&lt;"); break;
        case '>': vm_sbuf_puts(b, "&gt;"); break;
        case '"': vm_sbuf_puts(b, "&quot;"); break;
        case '\'': vm_sbuf_puts(b, "&#39;"); break;
        default:
            if (is_bad_cp(cp)) vm_sbuf_puts(b, "\xEF\xBF\xBD");
            else vm_sbuf_putn(b, (const char *)s, (size_t)len);
        }
        s += len;
        n++;
    }
}

// A growable string buffer and the one escaping routine every piece of report text goes through.
// Appends never fail loudly: an allocation failure sets a sticky flag that vm_sbuf_ok() reports once
// at the end, so rendering code can append freely and check a single time.
#pragma once
#include <stddef.h>

#include "util/err.h"

typedef struct vm_sbuf {
    char *s;     // NUL-terminated (NULL until the first append)
    size_t len, cap;
    int oom;     // an append failed; the content is incomplete
} vm_sbuf;

void vm_sbuf_init(vm_sbuf *b);
void vm_sbuf_free(vm_sbuf *b);
void vm_sbuf_puts(vm_sbuf *b, const char *s);
void vm_sbuf_putn(vm_sbuf *b, const char *s, size_t n);
void vm_sbuf_printf(vm_sbuf *b, const char *fmt, ...) VM_PRINTF(2, 3);
// 0, or -1 with vm_err() when an append failed.
int vm_sbuf_ok(const vm_sbuf *b);
const char *vm_sbuf_str(const vm_sbuf *b);  // "" when empty

// Appends text escaped for HTML/SVG element content and quoted attribute values alike:
// & < > " ' become entities; invalid UTF-8, C0/C1 controls (except tab/newline) and DEL become
// U+FFFD. NULL appends nothing. max_chars > 0 truncates to that many code points, ending in "…".
void vm_sbuf_escape(vm_sbuf *b, const char *text, int max_chars);

// Number of code points vm_sbuf_escape would emit before truncation (for width estimates).
int vm_utf8_chars(const char *text);

// Error reporting: a failing function records one line (what and where) and returns -1 or NULL;
// the CLI prints it as "vmoer: <line>" and exits non-zero. Messages are thread-local. They quote
// text from files (keys, names, architecture strings), so they are stored escaped (vm_escape):
// a message is always one line of printable text, whatever a file holds.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "vmoer.h"   // the public declarations of some of these (exported from libvmoer.so)

#if defined(__GNUC__)
#define VM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define VM_PRINTF(a, b)
#endif

// Records the message and returns -1, so `return vm_err("...")` reads naturally.
int vm_err(const char *fmt, ...) VM_PRINTF(1, 2);
// Prefixes the current message with "<prefix>: " (adds context on the way up).
int vm_err_prefix(const char *fmt, ...) VM_PRINTF(1, 2);
// "<what> <path>: <message>", dropping a "<path>: " the message already starts with (readers and
// writers name their file themselves): one mention of the file, not two.
int vm_err_prefix_file(const char *what, const char *path);
const char *vm_errmsg(void);
void vm_err_clear(void);

// Copies n bytes of s into dst (cap > 0 bytes, always NUL-terminated, cut before a character that
// does not fit) with every control character (C0, DEL, C1) and every byte that is not part of
// well-formed UTF-8 written as \xHH, so that text from a file printed to a terminal cannot move the
// cursor, recolour, retitle or split a line. Escaped text passes through unchanged. Returns the
// length written.
size_t vm_escape(char *dst, size_t cap, const char *s, size_t n);
// fputs of vm_escape(s) (any length).
void vm_fput_escaped(FILE *f, const char *s, size_t n);

// Overflow-checked size arithmetic: return 0 on success, -1 (with an error) on overflow.
int vm_size_mul(size_t a, size_t b, size_t *out);
int vm_size_add(size_t a, size_t b, size_t *out);

// malloc/calloc that record an error on failure (never abort).
void *vm_malloc(size_t n);
void *vm_calloc(size_t n, size_t size);
char *vm_strdup(const char *s);

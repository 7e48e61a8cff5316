// FNV-1a 64: the identity hashes of adapters (base-model checksum) and of resumable runs (fit and
// train checkpoint fingerprints). Start from VM_FNV1A_INIT and chain calls.
#pragma once
#include <stddef.h>
#include <stdint.h>

#define VM_FNV1A_INIT 14695981039346656037ull

static inline uint64_t vm_fnv1a(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) { h ^= b[i]; h *= 1099511628211ull; }
    return h;
}

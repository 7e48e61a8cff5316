// Shared bits of the libFuzzer targets: invariant checks that crash (so libFuzzer saves the input),
// and temp files for readers that only take a path.
#pragma once
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

// An invariant of a successful call; a violation is a bug, reported as a crash with its input.
#ifndef FUZZ_ASSERT
#define FUZZ_ASSERT(cond) do { if (!(cond)) { \
    fprintf(stderr, "FUZZ_ASSERT failed %s:%d: %s\n", __FILE__, __LINE__, #cond); abort(); } } while (0)
#endif

// A per-process temp file name (libFuzzer -jobs/-workers run several processes side by side).
static inline void fuzz_tmp_path(char *buf, size_t size, const char *tag) {
    const char *dir = getenv("TMPDIR");
    snprintf(buf, size, "%s/vmoer_fuzz_%s_%d", dir && *dir ? dir : "/tmp", tag, (int)getpid());
}

// Writes n bytes to path; 0 ok (a failure here is the environment, not the code under test).
static inline int fuzz_write_file(const char *path, const uint8_t *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = n ? fwrite(data, 1, n, f) : 0;
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

// Multi-file inputs: parts separated by FUZZ_SEP (a line no JSON or seed text contains; libFuzzer
// learns it from the comparisons). Returns the number of parts (at most max; the last part keeps
// any further separators).
#define FUZZ_SEP "\n=====\n"
static inline int fuzz_split(const uint8_t *data, size_t size, const uint8_t **part, size_t *len, int max) {
    const size_t k = sizeof FUZZ_SEP - 1;
    int n = 0;
    while (n < max - 1) {
        const uint8_t *s = memmem(data, size, FUZZ_SEP, k);
        if (!s) break;
        part[n] = data; len[n] = (size_t)(s - data); n++;
        size -= (size_t)(s - data) + k; data = s + k;
    }
    part[n] = data; len[n] = size;
    return n + 1;
}

// A per-process temp folder (created if needed) and a file path inside it.
static inline int fuzz_tmp_dir(char *buf, size_t size, const char *tag) {
    fuzz_tmp_path(buf, size, tag);
    return (mkdir(buf, 0700) == 0 || errno == EEXIST) ? 0 : -1;
}
static inline void fuzz_join(char *buf, size_t size, const char *dir, const char *name) {
    snprintf(buf, size, "%s/%s", dir, name);
}

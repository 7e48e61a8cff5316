// Shared bits of the libFuzzer targets: invariant checks that crash (so libFuzzer saves the input),
// and temp files for readers that only take a path.
#pragma once
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

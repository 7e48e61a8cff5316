// Minimal test harness: CHECK counts, TEST_SUMMARY prints the line tests/run.sh adds up.
#pragma once
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int test_passed_, test_failed_;

#define CHECK(cond, ...) do { \
    if (cond) { test_passed_++; } \
    else { test_failed_++; fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
           fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

#define CHECK_NEAR(a, b, tol, what) do { double a_ = (a), b_ = (b); \
    CHECK(fabs(a_ - b_) <= (tol), "%s: %.9g vs %.9g (tol %g)", (what), a_, b_, (double)(tol)); } while (0)

// Path of the shared data folder: $VMOER_SHARED or ../shared relative to the repo root.
static inline const char *test_shared_dir(void) {
    const char *s = getenv("VMOER_SHARED");
    return s ? s : "../shared";
}

#define TEST_SUMMARY() (printf("%d passed, %d failed\n", test_passed_, test_failed_), test_failed_ ? 1 : 0)

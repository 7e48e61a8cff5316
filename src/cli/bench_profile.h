// `vmoer bench MODEL --profile` (bench_profile.c): per-op time of prompt processing and decode.
#pragma once
#include <stdint.h>
#include <stdio.h>

// For each thread count: a prompt of n_prompt random tokens in chunks of `batch`, then n_gen decoded
// tokens, each timed with the profile on (after one warm-up prompt); a table per phase (and JSON).
int bench_profile(const char *path, const int32_t *thr, int n_thr, int batch, int n_prompt, int n_gen, FILE *js);
// Streaming read bandwidth in GB/s with the current OpenMP thread count.
double bench_stream_gb_s(void);

// `vmoer bench --attention` (bench_attn.c): the attention kernels against frozen copies of the
// ones they replaced, in the same run.
#pragma once
#include <stdint.h>
#include <stdio.h>

// For each thread count and head shape (hd 8: the bundled stories model; hd 64 / 128: Granite-like):
// the forward over a prompt of n_prompt tokens in chunks of `batch` and the backward over the whole
// prompt at once (as a fit), old and new timed in turns; ms per call and the old/new ratios.
int bench_attention(const int32_t *thr, int n_thr, int batch, int n_prompt, FILE *js);

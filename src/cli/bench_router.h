// Router benchmarks of `vmoer bench` (bench_router.c): the router kinds alone on Granite-3B-like
// shapes, a random-weight Granite-3B-shaped MoE GGUF generator, and the deterministic-vs-Bayesian
// prompt-processing comparison on a model (wall time, analytic FLOPs, peak resident memory).
#pragma once
#include <stdint.h>
#include <stdio.h>

// µs per token per layer of every router kind (inference forward), for each thread count.
int bench_routers(const int32_t *thr, int n_thr, int T, int S, int reps, FILE *js);
// Writes a random-weight `llama`-arch MoE GGUF with Granite-3B-like shapes (D 1536, 40 experts,
// top-8, n_ff_exp 512, heads 24/8, tied embeddings) and `type` (Q8_0 or Q4_0) matrices.
int bench_gen_granite(const char *path, const char *type, int n_layer, int n_vocab, int n_expert);
// Prompt processing with the deterministic router everywhere vs `kind` (S samples) on the last
// n_bayes MoE layers, in one process with interleaved repeats (ABBA order); prints the wall-time
// ratio, the analytic matrix-product FLOPs ratio and peak RSS (VmHWM) against the file size.
int bench_router_ab(const char *path, const char *kind, int n_bayes, int S, int threads, int batch,
                    int n_prompt, int reps, FILE *js);
// Fit throughput per router kind (`vmoer bench MODEL --fit`): for each thread count, the full-model
// deterministic inference forward rate (the reference), then for each trainable kind in the comma
// list `kinds` (NULL: every kind with parameters) training tokens/s (forward + backward + AdamW every
// `batch` sequences) on the last n_bayes MoE layers over n_seq random sequences of T tokens, with the
// hidden states entering the lowest fitted layer cached and recomputed, best of `reps` epochs.
int bench_fit(const char *path, const char *kinds, const int32_t *thr, int n_thr, int n_bayes, int S,
              int T, int n_seq, int batch, int reps, FILE *js);

// `vmoer train`: full-parameter language-model training of small llama-style (dense or MoE)
// transformers on plain text — token embeddings, attention, experts, routers W_r and norms all
// learn; next-token cross-entropy plus a load-balancing auxiliary loss per MoE layer.
//
// The model is read into heap memory (not mapped), so its f32 tensors are the trainable
// parameters in place: the forward is the inference block (model/train.h), the backward adds
// weight gradients (vm_tctx_set_grads). Every tensor must be f32 (convert with --type f32).
//
// Data: text files split into documents at blank lines ("\n\n" — TinyStories' story separator);
// each document is BOS + its tokens, and the documents are concatenated into one stream. A step
// takes `batch` windows of seq+1 tokens at positions drawn from the counter-based stream
// (seed, step), so (seed, step) is the whole random state and --resume is bit-exact.
// Validation: the last val_frac of the documents (or a separate file), scored on consecutive
// non-overlapping windows; the parameters with the best validation loss are what is written.
// Loss per step = mean next-token CE over batch*seq predictions + lb_weight * mean over the
// windows of sum_layers lb (model/train.h). AdamW (weight decay on matrices and embeddings, not
// on norms), linear warm-up then cosine decay to 0, global gradient-norm clipping.
#pragma once
#include <stdint.h>
#include "model/model.h"
#include "model/train.h"
#include "tokenizer/tokenizer.h"

typedef struct vm_lm_opts {
    int64_t steps;           // optimiser steps (default 200)
    int seq;                 // tokens per window (default 128)
    int batch;               // windows per step (default 8)
    float lr;                // peak learning rate (default 1e-3)
    float wd;                // decoupled weight decay (default 0.01)
    float warmup_frac;       // default 0.05
    float clip;              // global gradient-norm clip (default 1; 0 = off)
    float lb_weight;         // load-balancing loss weight (default 0.01)
    float router_lr_mult;    // the routers' W_r (ffn_gate_inp) learn at lr times this (default 1)
    float val_frac;          // documents held out for validation when no val text (default 0.05)
    int eval_every;          // steps between validation runs (default 50; 0 = only at the end)
    int eval_windows;        // validation windows (default 32)
    uint64_t seed;
    int from_scratch;        // re-initialise every weight (normal 0.02, norms 1) before training
    const char *ckpt_path;   // NULL: "<out>.ckpt"
    int ckpt_every;          // also checkpoint every N steps (0: at validation points only)
    int resume;
    int64_t stop_after;      // stop (checkpoint kept) after this many steps in total (tests)
    int progress;            // -1: bar when stderr is a tty, else a line per validation; 0 lines; 2 quiet
} vm_lm_opts;

typedef struct vm_lm_stats {
    int64_t n_train_tokens, n_val_tokens, n_params, steps, tokens;
    int n_docs_train, n_docs_val, resumed, interrupted;
    double val_init, val_best, train_first, train_last, lb_last;  // losses (nats / token)
    int64_t best_step;
    double seconds, tokens_per_s;
} vm_lm_stats;

void vm_lm_opts_default(vm_lm_opts *o);

// A model in writable memory with a gradient buffer per tensor.
typedef struct vm_lm vm_lm;
vm_lm *vm_lm_load(const char *path);
void vm_lm_free(vm_lm *lm);
vm_model *vm_lm_model(vm_lm *lm);
// Number of trainable parameters (every tensor's elements).
int64_t vm_lm_n_params(const vm_lm *lm);
// Normal(0, std) matrices (std 0.02, residual-output projections 0.02/sqrt(2 n_layer)), norms 1.
void vm_lm_init_random(vm_lm *lm, uint64_t seed);

// Loss of `batch` windows tokens (batch, seq+1) — predicting tokens[b][1..seq] from [0..seq-1]:
// returns the mean CE in *ce and the mean load-balancing loss in *lb (before lb_weight); when grad
// is nonzero, adds d(ce + lb_weight * lb)/dparams to the gradient buffers. 0 or -1.
int vm_lm_loss(vm_lm *lm, const int32_t *tokens, int batch, int seq, float lb_weight, int grad,
               double *ce, double *lb);
// Distillation (Hinton et al. 2015, temperature 1): with a teacher set, the training objective's
// cross-entropy term becomes (1 - alpha) CE(next token) + alpha CE(softmax(teacher logits)) per
// prediction; vm_lm_loss still reports the hard-label CE in *ce (validation never uses the
// teacher) and the soft-target CE in vm_lm_kd_last. The teacher (same vocabulary; any
// architecture the inference path runs) is borrowed and must outlive lm. NULL removes it.
int vm_lm_set_teacher(vm_lm *lm, const vm_model *teacher, float alpha);
double vm_lm_kd_last(const vm_lm *lm);
// Parameter i (in file order): name, values, gradient, element count; i out of range -> -1.
int vm_lm_param(vm_lm *lm, int i, const char **name, float **w, float **g, int64_t *n);
// The weight-gradient buffers (the parameters' g) as vm_tctx_set_grads takes them, for a training
// context of one's own (e.g. a tree batch); the token embeddings' gradient is vm_lm_loss's (from dh).
const vm_model_grads *vm_lm_grads(const vm_lm *lm);

// Documents of a text, tokenised (BOS before each) and concatenated: *out (malloc'd), count
// returned (-1 on error). first_doc/n_docs select a range of documents (n_docs < 0: to the end);
// *total_docs gets the number of documents in the text.
int64_t vm_lm_tokenize_docs(const vm_tokenizer *tok, const char *text, size_t len, int first_doc,
                            int n_docs, int *total_docs, int32_t **out);

// The whole run on token streams; writes the best-validation model to out_path (GGUF, the source
// file's metadata plus vmoer.train.* keys). st may be NULL.
int vm_lm_train(vm_lm *lm, const int32_t *train, int64_t n_train, const int32_t *val, int64_t n_val,
                const vm_lm_opts *o, const char *out_path, vm_lm_stats *st);

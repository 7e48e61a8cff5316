// Multiple-choice QA as model inputs and scores (method.md §5.1), shared by `fit` and `eval`.
//
// Two scoring modes:
//   VM_TASK_LETTER (the paper's): system message VM_TASK_SYSTEM + user message
//     "Question: {q}\nChoices:\nA. {a}\nB. {b}\n...\nAnswer:" rendered with the model's chat template,
//     generation prompt added. Choices are always lettered A, B, C, .. in file order (files that label
//     them "1".."4" are shown as A..D). Template "none" (raw text) = system + "\n\n" + user.
//     Answer distribution = softmax over the logits of the letter tokens at the last prompt position.
//     Letter token ids (SPM and BPE alike, found per item): tokenise prompt + sep + letter for each
//     letter, where sep is "" when the rendered prompt ends in whitespace (chat templates'
//     "assistant\n") and " " otherwise (raw "Answer:" is followed by " A"). Past the tokens all of
//     them share with the tokenised prompt and with each other (e.g. a lone SPM "▁" in a small
//     vocabulary such as tok512), the next token is the letter's; the shared tokens are appended to
//     the scored sequence, so the letter logits are read at the position where the letters differ
//     (P(" A") = P(shared) P(A | shared), and the shared factor cancels in the letter softmax).
//     SPM then gives e.g. "▁A", byte-level BPE "ĠA" (or "A" after a newline). When two letters
//     still share a token (tok512 merges " B" into "▁B" but splits " A" into "▁" "A"), the other
//     separator is tried ("Answer:A"); if that fails too the item is an error.
//     Two letters mapping to one id is an error (the item cannot be scored).
//   VM_TASK_LOGLIK (lm-evaluation-harness log-likelihood scoring): context = "Question: {q}\nAnswer:"
//     (harness ARC format; rendered as one user message with the template when it is not "none",
//     no system message), continuation_c = " {choice_c}". As the harness: whole = tok(ctx + cont),
//     ctx_enc = tok(ctx), continuation tokens = whole[len(ctx_enc):], and the sequence run is
//     ctx_enc + continuation (the harness's context_enc + continuation_enc). So every choice's
//     sequence starts with exactly ctx_enc, even where the tokenizer merges across the boundary and
//     whole[:len(ctx_enc)] differs from ctx_enc (then the model reads the context as tokenised
//     alone; before 2026-12, vmoer ran whole itself). ll_c = sum of log-probs of the continuation
//     tokens; acc = argmax ll_c, acc_norm = argmax ll_c / bytes(continuation_c).
//     Answer distribution = softmax_c(ll_c) (what NLL/ECE and the fit loss use).
//   VM_TASK_LOGLIK_RAW ("loglik-raw", plain-text continuation, e.g. story cloze data/cloze/README.md):
//     context = the question text itself, no "Question:"/"Answer:" wrapper and no chat template (the
//     template is ignored, parse_special = 0); continuation_c = " {choice_c}"; then exactly as
//     VM_TASK_LOGLIK (ctx_enc = tok(BOS + ctx), continuation = tok(BOS + ctx + cont)[len(ctx_enc):],
//     sequence = ctx_enc + continuation). Answer distribution = softmax_c(ll_c).
//   VM_TASK_PMI ("pmi", lm-eval "acc_pmi"-style, domain-conditional PMI of Holtzman et al. 2021):
//     the loglik-raw sequences seq[0..n) plus one unconditional sequence per choice, seq[n + c] =
//     [BOS] + the continuation tokens of seq[c] (the SAME token ids, so only the context differs;
//     unconditional context = BOS alone; needs a vocabulary that adds BOS). score_c = ll(cont_c | BOS +
//     question) - ll(cont_c | BOS). Answer distribution = softmax_c(score_c), and that is what NLL/ECE
//     and the fit loss use (gradients reach both terms: d score_c/d ll_{n+c} = -1).
//     acc_norm (pred_norm) divides score_c by the continuation bytes.
// Tokenisation: BOS as the vocabulary says (add_bos = 1), parse_special = 1 for templated text (role
// markers become their tokens), 0 for raw text.
//
// The tree of an item (vm_task_tree, built with the input): its sequences as ONE batch of rows for
// vm_tctx_forward_tree (model/train.h), every shared prefix stored once. Loglik modes: a root
// segment for the context (ctx_enc: BOS + context tokens) whose children are the C continuations;
// pmi adds a second root [BOS] whose children are the C continuations again (same ids, positions
// from 1). Letter mode: one segment, the prompt. A child's rows continue its root's positions, so
// each sequence's log-likelihood is the one of running it alone; the context is run once instead
// of C times. A sequence whose prefix matches no root gets a root of its own. Segments are laid out
// sequence by sequence (its root when new, then its continuation), so the child segments are in
// sequence order.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include "data/dataset.h"
#include "model/train.h"
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"

typedef struct vm_ctx vm_ctx;
typedef struct vm_model vm_model;

#define VM_TASK_SYSTEM "You are a multiple-choice quiz answer generator. Respond with ONLY the letter " \
                       "of the correct option, for example, 'A', 'B', 'C', or 'D'."

typedef enum vm_task_mode {
    VM_TASK_LETTER = 0, VM_TASK_LOGLIK = 1, VM_TASK_LOGLIK_RAW = 2, VM_TASK_PMI = 3
} vm_task_mode;

// Sequences of one item: pmi runs two per choice.
#define VM_TASK_MAX_SEQ (2 * VM_MCQ_MAX_CHOICES)

const char *vm_task_mode_name(vm_task_mode m);            // "letter", "loglik", "loglik-raw", "pmi"
int vm_task_mode_parse(const char *s, vm_task_mode *out); // 0, or -1 with an error
// 1 for the modes that score choice continuations (loglik, loglik-raw, pmi): one sequence per choice
// (pmi: two), scored positions = the continuation tokens (vm_task_positions).
int vm_task_is_loglik(vm_task_mode m);

typedef struct vm_task {
    const vm_tokenizer *tok;   // borrowed
    vm_task_mode mode;
    int tmpl;                  // chat template id (vm_chat_pick_gguf); VM_CHAT_NONE = raw text
    const char *system;        // letter mode system message; NULL = VM_TASK_SYSTEM
    int max_tokens;            // longest sequence accepted (0 = no limit); longer -> build error
    vm_chat_opts chat;         // bos/eos texts for templates (filled by vm_task_init from tok)
} vm_task;

// Fills t (no allocation; tok must outlive t).
void vm_task_init(vm_task *t, const vm_tokenizer *tok, vm_task_mode mode, int tmpl, int max_tokens);

// One token sequence to run: letter mode has one (the prompt); loglik one per choice.
typedef struct vm_task_seq {
    int32_t *tokens;           // (n) BOS included when the vocabulary adds one
    int n;
    int n_ctx;                 // loglik: tokens [n_ctx, n) are the continuation; letter: n
    size_t cont_bytes;         // loglik: byte length of the continuation text (acc_norm)
} vm_task_seq;

// Sequences of an item as one tree batch (see the top of this file). Every array is in `mem`.
typedef struct vm_task_tree {
    vm_tree view;              // n_rows, n_seg, pos (n_rows), seg_off (n_seg+1), parent (n_seg)
    int32_t *tok;              // (n_rows) token id of each row (for vm_model_hidden_tree)
    int32_t *seg;              // (n_rows) segment of each row
    int n_out;                 // scored rows of all sequences
    int32_t *out_row;          // (n_out) rows whose logits score the sequences: sequence by sequence,
                               // each in vm_task_positions order (a root's last row appears once per
                               // child sequence scored from it)
    int32_t *out_tgt;          // (n_out) the token scored at each (vm_task_positions' targets)
    int out0[VM_TASK_MAX_SEQ + 1];   // sequence s: out_row[out0[s] .. out0[s+1])
    int ctx_row;               // last row of the context root (sequence 0's root): the last context
                               // token (loglik) or prompt token (letter), where read-outs are taken
    void *mem;
} vm_task_tree;

typedef struct vm_task_input {
    vm_task_mode mode;
    int n_choices, answer;     // answer: 0-based (from the item)
    int n_seq;                 // letter: 1; loglik, loglik-raw: n_choices; pmi: 2 n_choices
    vm_task_seq seq[VM_TASK_MAX_SEQ];   // pmi: [0, n) conditional, [n, 2n) unconditional
    int32_t letter_ids[VM_MCQ_MAX_CHOICES];   // letter mode: token id of letter c (else -1)
    char *text;                // rendered prompt (letter) or context (loglik), for display
    vm_task_tree tree;         // the sequences as one tree batch (vm_task_tree_build)
} vm_task_input;

// Builds one item's inputs, its tree included. 0, or -1 with "task: item <id>: what is wrong" (too
// long, letters collide).
int vm_task_build(const vm_task *t, const vm_mcq_item *it, vm_task_input *in);
void vm_task_input_free(vm_task_input *in);   // the tree too
// (Re)builds in->tree from in's sequences (vm_task_build calls it; for inputs assembled by hand).
// 0 or -1 (out of memory, a sequence without scored positions).
int vm_task_tree_build(vm_task_input *in);

// Logit positions a sequence is scored at and the token scored there (the training targets):
// letter: 1 position (n-1), target = letter_ids[answer]; loglik: n - n_ctx positions n_ctx-1 .. n-2,
// targets tokens[n_ctx .. n). pos/tgt need room for seq->n entries. Returns the count.
int vm_task_positions(const vm_task_input *in, int s, int32_t *pos, int32_t *tgt);

// ---- scores from logits (no model needed) ----
// Letter mode: probs (n_choices) = softmax of the letter logits in row (V). Returns the
// log-softmax at the answer (minus the answer cross-entropy). When dlogits (V) is non-NULL it
// receives += scale * d(-log p_answer)/d row (the fit loss gradient; zero off the letter ids).
double vm_task_letter_probs(const vm_task_input *in, const float *row, double *probs,
                            float *dlogits, float scale);
// Loglik mode: sum of log-softmax(logits[i])[tgt[i]] over the sequence's scored positions, logits
// (n - n_ctx, V) in vm_task_positions order. dlogits (same shape) non-NULL: += scale * d ll / d logits.
double vm_task_seq_loglik(const vm_task_input *in, int s, const float *logits, int V,
                          float *dlogits, float scale);
// The per-sequence log-likelihoods ll (n_seq) from the logits (tree.n_out, V) of a tree forward at
// in->tree.out_row (sequence s at rows out0[s].. of logits).
void vm_task_tree_loglik(const vm_task_input *in, const float *logits, int V, double *ll);
// The same, also keeping each scored row's log-partition lz (tree.n_out) for vm_task_seq_dlogits.
void vm_task_tree_loglik_lz(const vm_task_input *in, const float *logits, int V, double *ll, double *lz);
// dlogits += scale * d ll_s / d logits for sequence s, from the lz its loglik computed (the same
// values as vm_task_seq_loglik's gradient, without summing the partition function again: a fit's
// row costs two exp passes over the vocabulary instead of three).
void vm_task_seq_dlogits(const vm_task_input *in, int s, const float *logits, int V, const double *lz,
                         float *dlogits, float scale);
// Per-choice scores (n_choices) from the per-sequence log-likelihoods ll_seq (n_seq):
// loglik / loglik-raw: score_c = ll_c; pmi: score_c = ll_c - ll_{n+c}.
void vm_task_choice_scores(const vm_task_input *in, const double *ll_seq, double *score);
// d(-log p_answer)/d ll_seq[s] given probs = softmax(scores): the weight of sequence s's loglik
// gradient in the fit loss (p_c - 1[c = answer], negated for pmi's unconditional sequences).
double vm_task_seq_coef(const vm_task_input *in, int s, const double *probs);
// softmax of ll (n) into probs; returns -log probs[answer] (the choice cross-entropy).
double vm_task_choice_softmax(const double *ll, int n, int answer, double *probs);

// ---- scoring with a model ----
typedef struct vm_task_result {
    int n_choices, answer;
    double probs[VM_MCQ_MAX_CHOICES];   // answer distribution
    double ll[VM_MCQ_MAX_CHOICES];      // loglik(-raw): summed log-likelihoods; pmi: the pmi scores;
                                        // letter: letter log-softmax
    int pred;                           // argmax probs (lowest index on ties) -> acc
    int pred_norm;                      // loglik: argmax ll/cont_bytes -> acc_norm; letter: = pred
    double nll;                         // -log max(probs[answer], 1e-12)
} vm_task_result;

// r from the per-sequence log-likelihoods ll_seq (n_seq) of a loglik-family input, or (letter) from
// the logits row (V) at the last prompt token: scores, probabilities, predictions, nll.
void vm_task_result_loglik(const vm_task_input *in, const double *ll_seq, vm_task_result *r);
void vm_task_result_letter(const vm_task_input *in, const float *row, vm_task_result *r);

// Scoring an item with a model (vm_task_score) runs the model, so it lives above it: eval/task_score.h.

// Multiple-choice QA datasets loaded into memory from their official file formats.
//
// Formats (name strings for vm_mcq_format_parse in parentheses):
//   OpenBookQA JSONL ("obqa"), ARC JSONL ("arc"): {id, question:{stem, choices:[{text,label}]}, answerKey};
//     answerKey must equal one label; ARC has 3, 4 or 5 choices labelled "A".. or "1"..
//   SciQ JSONL ("sciq"): {question, distractor1..3, correct_answer, support}; the four options are
//     shuffled per item with a stream of vm_rng seeded by (opts.seed, line number), so the answer
//     position is uniform, reproducible for a seed, and independent of limit/filter/shuffle.
//   MedMCQA JSONL ("medmcqa"): {id, question, opa..opd, cop, subject_name}; cop is 1-BASED (1 = opa):
//     the official dev file holds only 1..4, and every explanation that starts "Ans. a/b/c/d" agrees
//     with cop 1/2/3/4. (The Hugging Face copy is 0-based; it is not this format.)
//   MMLU CSV ("mmlu"): no header; question,A,B,C,D,answer-letter; RFC 4180 quoting (embedded commas,
//     doubled quotes, CR/LF inside quotes kept verbatim); LF or CRLF record ends; last one optional.
//     The subject is the file name without "_dev/_val/_test.csv".
//   Generic JSONL ("jsonl"): {question, choices:[str | {text,label}], answer, id?, labels?, subject?,
//     support?}; answer is a 0-based integer index or a label string; labels default to "A", "B", ..
// Blank lines are skipped; a UTF-8 BOM at the start of a file is ignored.
//
// A malformed record (bad JSON, missing field, answer not among labels, fewer than 2 or more than 8
// choices, empty question/choice text, invalid UTF-8 or NUL, too long) stops loading with
// "path:line: what is wrong"; with opts.skip_bad it is counted in n_bad instead and the first
// VM_DATASET_MAX_BAD_MSGS messages are kept. A load that ends with no items is an error.
#pragma once
#include <stddef.h>
#include <stdint.h>

#define VM_MCQ_MIN_CHOICES 2
#define VM_MCQ_MAX_CHOICES 8
#define VM_MCQ_MAX_RECORD (1u << 20)          // bytes in one JSONL line / CSV record
#define VM_DATASET_MAX_FILE ((size_t)1 << 30)  // bytes in one file
#define VM_DATASET_MAX_BAD_MSGS 4

typedef enum vm_mcq_format {
    VM_MCQ_FORMAT_AUTO = 0,   // detect from the path and the first record
    VM_MCQ_FORMAT_OBQA,
    VM_MCQ_FORMAT_ARC,
    VM_MCQ_FORMAT_SCIQ,
    VM_MCQ_FORMAT_MEDMCQA,
    VM_MCQ_FORMAT_MMLU,
    VM_MCQ_FORMAT_JSONL,
} vm_mcq_format;

typedef struct vm_mcq_item {
    char *id;          // from the file, else "<dataset name>:<line>"
    char *question;
    int n_choices;     // VM_MCQ_MIN_CHOICES..VM_MCQ_MAX_CHOICES
    char *choices[VM_MCQ_MAX_CHOICES];
    char *labels[VM_MCQ_MAX_CHOICES];   // as in the file ("A".."E", "1".."4"); "A".. when the file has none
    int answer;        // 0-based index into choices
    char *subject;     // NULL when the format has none
    char *support;     // NULL when absent or empty (SciQ support paragraph)
    int line;          // 1-based line in its file where the record starts
} vm_mcq_item;

typedef struct vm_dataset_opts {
    vm_mcq_format format;   // VM_MCQ_FORMAT_AUTO to detect
    size_t limit;           // keep at most this many items (0 = all); applied after filter and shuffle
    int shuffle;            // shuffle item order (seeded)
    uint64_t seed;          // for shuffle and for SciQ choice order
    const char *subject;    // keep only items with this exact subject (NULL = all)
    int skip_bad;           // count malformed records instead of failing
} vm_dataset_opts;

typedef struct vm_dataset {
    vm_mcq_item *items;     // (n)
    size_t n;
    char *name;             // "<parent folder>/<file stem>", e.g. "arc-easy/test", "mmlu/test" for a folder
    vm_mcq_format format;
    size_t n_bad;           // malformed records skipped (skip_bad)
    char *bad_msgs[VM_DATASET_MAX_BAD_MSGS];   // first n_bad (at most 4) messages, "path:line: ..."
} vm_dataset;

void vm_dataset_opts_default(vm_dataset_opts *o);   // all zero: auto format, everything, seed 0

// Loads a file, or every *.csv / *.jsonl file of a folder in name order (one format for all; MMLU
// split folders). opts may be NULL. On failure ds is left empty and the error names path:line.
int vm_dataset_load(vm_dataset *ds, const char *path, const vm_dataset_opts *opts);
// Same from memory; `path` is only used for messages, names and format detection.
int vm_dataset_load_buf(vm_dataset *ds, const char *path, const char *buf, size_t len,
                        const vm_dataset_opts *opts);
void vm_dataset_free(vm_dataset *ds);
// FNV-1a 64 over what every item says (question, choices, labels, answer, subject, support, in
// order; not ids or line numbers): two files give the same value only when a fit sees the same
// items. Resumable fits put it in their checkpoint fingerprint.
uint64_t vm_dataset_fingerprint(const vm_dataset *ds);

const char *vm_mcq_format_name(vm_mcq_format f);          // "obqa", .., "auto"
int vm_mcq_format_parse(const char *name, vm_mcq_format *out);   // 0 ok, -1 unknown name
// Detects from the path (".csv" -> mmlu, "openbookqa"/"obqa" in the path for the shared ARC schema)
// and the keys of the first non-blank line. Returns VM_MCQ_FORMAT_AUTO (and an error) when unsure.
vm_mcq_format vm_mcq_format_detect(const char *path, const char *buf, size_t len);

// Index of the first byte that is not part of valid UTF-8 (overlong, surrogate, > U+10FFFF, truncated)
// or is NUL; n when all n bytes are valid.
size_t vm_dataset_utf8_check(const char *s, size_t n);

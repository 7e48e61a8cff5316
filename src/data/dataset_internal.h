// Shared pieces of the dataset readers (dataset.c, dataset_jsonl.c, dataset_csv.c). Not public.
#pragma once
#include "data/dataset.h"
#include "util/rng.h"

typedef struct vm_dsi_loader {
    vm_dataset *ds;               // items are appended here
    const vm_dataset_opts *o;
    const char *path;             // the file, for messages
    char *fname;                  // "<parent>/<stem>" of the file, for generated ids
    char *fsubject;               // MMLU: subject from the file name
    vm_mcq_format fmt;            // resolved (never AUTO)
    size_t cap;                   // allocated items
} vm_dsi_loader;

// A record starting at `line` failed with the current vm_err message: prefixes "path:line: ".
// Returns 0 when skip_bad counted it (carry on), -1 when loading must stop.
int vm_dsi_bad(vm_dsi_loader *L, int line);
// Moves a finished item into the dataset (the item is consumed, also on failure).
int vm_dsi_push(vm_dsi_loader *L, vm_mcq_item *it);
void vm_dsi_item_free(vm_mcq_item *it);
// Copies n bytes into a NUL-terminated string after checking UTF-8 (and, unless allow_empty,
// that it is not empty or all whitespace). `what` names the field in the message.
int vm_dsi_text(char **dst, const char *s, size_t n, const char *what, int allow_empty);
// Fills in missing id ("<fname>:<line>") and default labels ("A", "B", ..).
int vm_dsi_defaults(vm_dsi_loader *L, vm_mcq_item *it);
// Uniform integer in [0, n) without modulo bias.
uint64_t vm_dsi_below(vm_rng *r, uint64_t n);

int vm_dsi_load_jsonl(vm_dsi_loader *L, const char *buf, size_t len);
int vm_dsi_load_csv(vm_dsi_loader *L, const char *buf, size_t len);
vm_mcq_format vm_dsi_detect_jsonl(const char *path, const char *buf, size_t len);

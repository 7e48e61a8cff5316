// JSON-lines dataset formats: OpenBookQA / ARC, SciQ, MedMCQA and the generic
// {question, choices, answer} form. One record per line; see dataset.h for the schemas.
#include "data/dataset_internal.h"
#include "util/err.h"
#include "util/rng.h"

#include <ctype.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LABEL 32   // bytes; real labels are one character

static int parse_line(const char *s, size_t n, json_t **out) {
    size_t bad = vm_dataset_utf8_check(s, n);
    if (bad < n) return vm_err("%s at byte %zu", s[bad] ? "invalid UTF-8" : "NUL byte", bad + 1);
    json_error_t je;
    json_t *j = json_loadb(s, n, JSON_REJECT_DUPLICATES, &je);
    if (!j) return vm_err("bad JSON: %s (column %d)", je.text, je.column);
    if (!json_is_object(j)) { json_decref(j); return vm_err("record is not a JSON object"); }
    *out = j;
    return 0;
}

// Required string field `key` of obj; `what` names it in messages.
static int get_text(json_t *obj, const char *key, const char *what, char **dst, int allow_empty) {
    json_t *v = json_object_get(obj, key);
    if (!v) return vm_err("missing field \"%s\"", what);
    if (!json_is_string(v)) return vm_err("field \"%s\" is not a string", what);
    return vm_dsi_text(dst, json_string_value(v), json_string_length(v), what, allow_empty);
}

// Optional string field: absent, null or empty leaves *dst NULL.
static int opt_text(json_t *obj, const char *key, char **dst) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) return vm_err("field \"%s\" is not a string", key);
    if (json_string_length(v) == 0) return 0;
    return vm_dsi_text(dst, json_string_value(v), json_string_length(v), key, 1);
}

// Optional id: a string or an integer.
static int opt_id(json_t *obj, vm_mcq_item *it) {
    json_t *v = json_object_get(obj, "id");
    if (v && json_is_integer(v)) {
        char b[32];
        snprintf(b, sizeof b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return (it->id = vm_strdup(b)) ? 0 : -1;
    }
    return opt_text(obj, "id", &it->id);
}

static int get_label(json_t *v, const char *what, char **dst) {
    if (!json_is_string(v)) return vm_err("%s is not a string", what);
    if (json_string_length(v) > MAX_LABEL) return vm_err("%s is longer than %d bytes", what, MAX_LABEL);
    return vm_dsi_text(dst, json_string_value(v), json_string_length(v), what, 0);
}

// choices: [{text, label}] (label required unless strings_ok) or, with strings_ok, plain strings.
static int parse_choices(json_t *arr, const char *what, int strings_ok, vm_mcq_item *it) {
    if (!arr) return vm_err("missing field \"%s\"", what);
    if (!json_is_array(arr)) return vm_err("field \"%s\" is not an array", what);
    size_t n = json_array_size(arr);
    if (n < VM_MCQ_MIN_CHOICES || n > VM_MCQ_MAX_CHOICES)
        return vm_err("%zu choices (need %d..%d)", n, VM_MCQ_MIN_CHOICES, VM_MCQ_MAX_CHOICES);
    it->n_choices = (int)n;
    for (size_t i = 0; i < n; i++) {
        json_t *c = json_array_get(arr, i);
        char w[64];
        snprintf(w, sizeof w, "%s[%zu]", what, i);
        if (strings_ok && json_is_string(c)) {
            if (vm_dsi_text(&it->choices[i], json_string_value(c), json_string_length(c), w, 0)) return -1;
            continue;
        }
        if (!json_is_object(c)) return vm_err("%s is not an object%s", w, strings_ok ? " or a string" : "");
        snprintf(w, sizeof w, "%s[%zu].text", what, i);
        if (get_text(c, "text", w, &it->choices[i], 0)) return -1;
        json_t *lab = json_object_get(c, "label");
        snprintf(w, sizeof w, "%s[%zu].label", what, i);
        if (!lab && !strings_ok) return vm_err("missing field \"%s\"", w);
        if (lab && get_label(lab, w, &it->labels[i])) return -1;
    }
    return 0;
}

static int label_index(const vm_mcq_item *it, const char *key, const char *what) {
    for (int i = 0; i < it->n_choices; i++)
        if (strcmp(it->labels[i], key) == 0) return i;
    char list[VM_MCQ_MAX_CHOICES * (MAX_LABEL + 1) + 1] = "";
    for (int i = 0; i < it->n_choices; i++) {
        if (i) strcat(list, " ");
        strcat(list, it->labels[i]);
    }
    return vm_err("%s \"%.40s\" is not among the labels (%s)", what, key, list);
}

// Default ids/labels, then reject repeated labels (an answer key could not tell them apart).
static int finish_labels(vm_dsi_loader *L, vm_mcq_item *it) {
    if (vm_dsi_defaults(L, it)) return -1;
    for (int i = 0; i < it->n_choices; i++)
        for (int k = 0; k < i; k++)
            if (strcmp(it->labels[i], it->labels[k]) == 0)
                return vm_err("label \"%s\" appears twice", it->labels[i]);
    return 0;
}

static int parse_arc(vm_dsi_loader *L, json_t *j, vm_mcq_item *it) {
    json_t *q = json_object_get(j, "question");
    if (!q) return vm_err("missing field \"question\"");
    if (!json_is_object(q)) return vm_err("field \"question\" is not an object");
    if (opt_id(j, it) || get_text(q, "stem", "question.stem", &it->question, 0)) return -1;
    if (parse_choices(json_object_get(q, "choices"), "question.choices", 0, it)) return -1;
    if (finish_labels(L, it)) return -1;
    char *key = NULL;
    if (get_text(j, "answerKey", "answerKey", &key, 0)) return -1;
    it->answer = label_index(it, key, "answerKey");
    free(key);
    return it->answer < 0 ? -1 : 0;
}

static int parse_sciq(vm_dsi_loader *L, json_t *j, vm_mcq_item *it) {
    static const char *keys[4] = { "distractor1", "distractor2", "distractor3", "correct_answer" };
    char *src[4] = { 0 };
    int rc = get_text(j, "question", "question", &it->question, 0);
    for (int i = 0; rc == 0 && i < 4; i++) rc = get_text(j, keys[i], keys[i], &src[i], 0);
    if (rc == 0) rc = opt_text(j, "support", &it->support);
    if (rc != 0) { for (int i = 0; i < 4; i++) free(src[i]); return -1; }
    // The file always lists the answer last; a per-line stream makes its position uniform and
    // reproducible whatever else (limit, filter, skipped lines) happens to the dataset.
    int perm[4] = { 0, 1, 2, 3 };
    vm_rng r;
    vm_rng_seed2(&r, L->o->seed, (uint64_t)it->line);
    for (int i = 3; i > 0; i--) {
        int k = (int)vm_dsi_below(&r, (uint64_t)i + 1), t = perm[i];
        perm[i] = perm[k]; perm[k] = t;
    }
    it->n_choices = 4;
    for (int i = 0; i < 4; i++) {
        it->choices[i] = src[perm[i]];
        if (perm[i] == 3) it->answer = i;
    }
    return finish_labels(L, it);
}

static int parse_medmcqa(vm_dsi_loader *L, json_t *j, vm_mcq_item *it) {
    static const char *keys[4] = { "opa", "opb", "opc", "opd" };
    if (opt_id(j, it) || get_text(j, "question", "question", &it->question, 0)) return -1;
    for (int i = 0; i < 4; i++)
        if (get_text(j, keys[i], keys[i], &it->choices[i], 0)) return -1;
    it->n_choices = 4;
    if (opt_text(j, "subject_name", &it->subject)) return -1;
    json_t *cop = json_object_get(j, "cop");
    if (!cop) return vm_err("missing field \"cop\"");
    if (!json_is_integer(cop) || json_integer_value(cop) < 1 || json_integer_value(cop) > 4)
        return vm_err("field \"cop\" must be an integer 1..4 (1 = opa)");
    it->answer = (int)json_integer_value(cop) - 1;
    return finish_labels(L, it);
}

static int parse_generic(vm_dsi_loader *L, json_t *j, vm_mcq_item *it) {
    if (opt_id(j, it) || get_text(j, "question", "question", &it->question, 0)) return -1;
    if (parse_choices(json_object_get(j, "choices"), "choices", 1, it)) return -1;
    json_t *labs = json_object_get(j, "labels");
    if (labs && !json_is_null(labs)) {
        if (!json_is_array(labs) || json_array_size(labs) != (size_t)it->n_choices)
            return vm_err("field \"labels\" is not an array of %d strings", it->n_choices);
        for (int i = 0; i < it->n_choices; i++) {
            char w[32];
            snprintf(w, sizeof w, "labels[%d]", i);
            if (it->labels[i]) return vm_err("%s: choice %d already has a label", w, i);
            if (get_label(json_array_get(labs, (size_t)i), w, &it->labels[i])) return -1;
        }
    }
    if (opt_text(j, "subject", &it->subject) || opt_text(j, "support", &it->support)) return -1;
    if (finish_labels(L, it)) return -1;
    json_t *a = json_object_get(j, "answer");
    if (!a) return vm_err("missing field \"answer\"");
    if (json_is_integer(a)) {
        json_int_t k = json_integer_value(a);
        if (k < 0 || k >= it->n_choices)
            return vm_err("answer index %" JSON_INTEGER_FORMAT " is out of range 0..%d", k, it->n_choices - 1);
        it->answer = (int)k;
        return 0;
    }
    if (!json_is_string(a)) return vm_err("field \"answer\" must be a 0-based index or a label");
    it->answer = label_index(it, json_string_value(a), "answer");
    return it->answer < 0 ? -1 : 0;
}

static int parse_record(vm_dsi_loader *L, json_t *j, vm_mcq_item *it) {
    switch (L->fmt) {
    case VM_MCQ_FORMAT_OBQA:
    case VM_MCQ_FORMAT_ARC: return parse_arc(L, j, it);
    case VM_MCQ_FORMAT_SCIQ: return parse_sciq(L, j, it);
    case VM_MCQ_FORMAT_MEDMCQA: return parse_medmcqa(L, j, it);
    case VM_MCQ_FORMAT_JSONL: return parse_generic(L, j, it);
    default: return vm_err("format %s is not JSON lines", vm_mcq_format_name(L->fmt));
    }
}

// Next line of buf from *pos (without "\n" or "\r\n"); 0 at the end.
static int next_line(const char *buf, size_t len, size_t *pos, const char **s, size_t *n) {
    if (*pos >= len) return 0;
    *s = buf + *pos;
    const char *nl = memchr(*s, '\n', len - *pos);
    *n = nl ? (size_t)(nl - *s) : len - *pos;
    *pos += *n + (nl ? 1 : 0);
    if (*n && (*s)[*n - 1] == '\r') (*n)--;
    return 1;
}

static int blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isspace((unsigned char)s[i])) return 0;
    return 1;
}

int vm_dsi_load_jsonl(vm_dsi_loader *L, const char *buf, size_t len) {
    size_t pos = 0, n;
    const char *s;
    int line = 0;
    while (next_line(buf, len, &pos, &s, &n)) {
        if (line == INT_MAX - 1) return vm_err("%s: more than %d lines", L->path, INT_MAX - 1);
        line++;
        if (blank(s, n)) continue;
        vm_mcq_item it = { .line = line };
        json_t *j = NULL;
        int rc;
        if (n > VM_MCQ_MAX_RECORD) rc = vm_err("line of %zu bytes is longer than the %u-byte limit", n,
                                               (unsigned)VM_MCQ_MAX_RECORD);
        else rc = parse_line(s, n, &j);
        if (rc == 0) rc = parse_record(L, j, &it);
        json_decref(j);
        if (rc != 0) {
            vm_dsi_item_free(&it);
            if (vm_dsi_bad(L, line) != 0) return -1;
            continue;
        }
        if (vm_dsi_push(L, &it) != 0) return -1;
    }
    return 0;
}

vm_mcq_format vm_dsi_detect_jsonl(const char *path, const char *buf, size_t len) {
    size_t pos = 0, n;
    const char *s;
    int line = 0, tried = 0;
    char first_err[256] = "";
    while (tried < 16 && next_line(buf, len, &pos, &s, &n)) {
        line++;
        if (blank(s, n)) continue;
        tried++;
        json_t *j = NULL;
        vm_mcq_format f = VM_MCQ_FORMAT_AUTO;
        if (n <= VM_MCQ_MAX_RECORD && parse_line(s, n, &j) == 0) {
            json_t *q = json_object_get(j, "question");
            if (json_is_object(q) && json_object_get(q, "stem")) {
                // OpenBookQA and ARC share one schema; only the path tells them apart.
                int obqa = strstr(path, "openbookqa") || strstr(path, "OpenBookQA") || strstr(path, "obqa");
                f = obqa ? VM_MCQ_FORMAT_OBQA : VM_MCQ_FORMAT_ARC;
            } else if (json_object_get(j, "distractor1") && json_object_get(j, "correct_answer")) {
                f = VM_MCQ_FORMAT_SCIQ;
            } else if (json_object_get(j, "opa") && json_object_get(j, "cop")) {
                f = VM_MCQ_FORMAT_MEDMCQA;
            } else if (json_is_string(q) && json_object_get(j, "choices")) {
                f = VM_MCQ_FORMAT_JSONL;
            } else {
                vm_err("no known dataset keys");
            }
        } else if (n > VM_MCQ_MAX_RECORD) {
            vm_err("line of %zu bytes is too long", n);
        }
        json_decref(j);
        if (f != VM_MCQ_FORMAT_AUTO) return f;
        if (!first_err[0]) snprintf(first_err, sizeof first_err, "line %d: %s", line, vm_errmsg());
    }
    if (!tried) vm_err("%s: cannot detect the dataset format of an empty file", path);
    else vm_err("%s: cannot detect the dataset format (%s); give it explicitly (--format obqa, arc, sciq, "
                "medmcqa, mmlu or jsonl)", path, first_err);
    return VM_MCQ_FORMAT_AUTO;
}

// MMLU CSV: no header, records "question,A,B,C,D,answer-letter". Fields follow RFC 4180: a field
// that starts with a quote runs to the next lone quote, "" inside it is one quote, and commas,
// CR and LF inside it are text. Records end at LF or CRLF; the last record needs no line end.
#include "data/dataset_internal.h"
#include "util/err.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define MMLU_FIELDS 6
#define MAX_FIELDS 64   // counted beyond this, not stored

typedef struct csv_rec {
    char *buf;                      // unescaped field bytes, back to back
    size_t len, cap;
    size_t off[MAX_FIELDS], flen[MAX_FIELDS];
    int nf;                         // fields seen (may exceed MAX_FIELDS)
} csv_rec;

static int rec_put(csv_rec *r, const char *s, size_t n) {
    if (n == 0) return 0;   // empty fields: r->buf may still be NULL (NULL + 0 is undefined)
    if (r->len + n > VM_MCQ_MAX_RECORD)
        return vm_err("record is longer than the %u-byte limit", (unsigned)VM_MCQ_MAX_RECORD);
    if (r->len + n > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + n) cap *= 2;   // bounded by VM_MCQ_MAX_RECORD above
        char *p = realloc(r->buf, cap);
        if (!p) return vm_err("out of memory for a %zu-byte record", cap);
        r->buf = p; r->cap = cap;
    }
    memcpy(r->buf + r->len, s, n);
    r->len += n;
    return 0;
}

static void rec_end_field(csv_rec *r, size_t start) {
    if (r->nf < MAX_FIELDS) { r->off[r->nf] = start; r->flen[r->nf] = r->len - start; }
    r->nf++;
}

// Parses one record from *pos, counting newlines into *line. On error the position is left where
// the problem is; the caller resynchronises at the next line end.
static int csv_record(const char *buf, size_t len, size_t *pos, int *line, csv_rec *r) {
    size_t p = *pos;
    r->len = 0; r->nf = 0;
    for (;;) {
        size_t start = r->len;
        if (p < len && buf[p] == '"') {
            int open_line = *line;
            p++;
            for (;;) {
                if (p >= len) { *pos = p; return vm_err("quoted field opened on line %d is not closed", open_line); }
                // Copy the run up to the next quote in one go.
                const char *q = memchr(buf + p, '"', len - p);
                size_t run = q ? (size_t)(q - (buf + p)) : len - p;
                for (size_t i = 0; i < run; i++) if (buf[p + i] == '\n') (*line)++;
                if (rec_put(r, buf + p, run)) { *pos = p + run; return -1; }
                p += run;
                if (p >= len) continue;
                if (p + 1 < len && buf[p + 1] == '"') { if (rec_put(r, "\"", 1)) { *pos = p; return -1; } p += 2; continue; }
                p++;   // closing quote
                break;
            }
            rec_end_field(r, start);
            if (p >= len) { *pos = p; return 0; }
            if (buf[p] == ',') { p++; continue; }
            if (buf[p] == '\n') { *pos = p + 1; (*line)++; return 0; }
            if (buf[p] == '\r' && (p + 1 == len || buf[p + 1] == '\n')) {
                *pos = p + 1 < len ? p + 2 : p + 1;
                if (p + 1 < len) (*line)++;
                return 0;
            }
            *pos = p;
            return vm_err("unexpected character after the closing quote of field %d", r->nf);
        }
        size_t e = p;
        while (e < len && buf[e] != ',' && buf[e] != '\n') e++;
        size_t n = e - p;
        if ((e == len || buf[e] == '\n') && n && buf[e - 1] == '\r') n--;   // CRLF record end
        if (rec_put(r, buf + p, n)) { *pos = p; return -1; }
        rec_end_field(r, start);
        if (e >= len) { *pos = e; return 0; }
        if (buf[e] == '\n') { *pos = e + 1; (*line)++; return 0; }
        p = e + 1;   // comma
    }
}

static int mmlu_item(vm_dsi_loader *L, const csv_rec *r, vm_mcq_item *it) {
    if (r->nf != MMLU_FIELDS) return vm_err("expected %d fields, got %d", MMLU_FIELDS, r->nf);
    static const char *what[MMLU_FIELDS] = { "question", "choice A", "choice B", "choice C", "choice D", "answer" };
    const char *f[MMLU_FIELDS];
    const char *base = r->buf ? r->buf : "";   // a record of empty fields allocates nothing
    for (int i = 0; i < MMLU_FIELDS; i++) f[i] = base + r->off[i];
    const char *ans = f[5];
    size_t alen = r->flen[5];
    if (alen != 1 || ans[0] < 'A' || ans[0] > 'D')
        return vm_err("answer \"%.*s\" is not one of A, B, C, D", (int)(alen < 40 ? alen : 40), ans);
    if (vm_dsi_text(&it->question, f[0], r->flen[0], what[0], 0)) return -1;
    for (int i = 0; i < 4; i++)
        if (vm_dsi_text(&it->choices[i], f[1 + i], r->flen[1 + i], what[1 + i], 0)) return -1;
    it->n_choices = 4;
    it->answer = ans[0] - 'A';
    if (L->fsubject && L->fsubject[0] && !(it->subject = vm_strdup(L->fsubject))) return -1;
    return vm_dsi_defaults(L, it);
}

int vm_dsi_load_csv(vm_dsi_loader *L, const char *buf, size_t len) {
    csv_rec r = { 0 };
    size_t pos = 0;
    int line = 1, rc = 0;
    while (pos < len) {
        if (line >= INT_MAX - 1) { rc = vm_err("%s: more than %d lines", L->path, INT_MAX - 2); break; }
        // Blank lines between records carry no item.
        if (buf[pos] == '\n') { pos++; line++; continue; }
        if (buf[pos] == '\r' && (pos + 1 == len || buf[pos + 1] == '\n')) {
            pos += pos + 1 < len ? 2 : 1; line++; continue;
        }
        int start = line;
        vm_mcq_item it = { .line = start };
        int e = csv_record(buf, len, &pos, &line, &r);
        if (e == 0) e = mmlu_item(L, &r, &it);
        else {
            // Resynchronise after the next line end.
            const char *nl = pos < len ? memchr(buf + pos, '\n', len - pos) : NULL;
            pos = nl ? (size_t)(nl - buf) + 1 : len;
            if (nl) line++;
        }
        if (e != 0) {
            vm_dsi_item_free(&it);
            if (vm_dsi_bad(L, start) != 0) { rc = -1; break; }
            continue;
        }
        if (vm_dsi_push(L, &it) != 0) { rc = -1; break; }
    }
    free(r.buf);
    return rc;
}

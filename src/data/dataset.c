// Multiple-choice datasets: loading driver (files, folders, format detection) and the steps after
// parsing (subject filter, seeded shuffle, limit). The record parsers live in dataset_jsonl.c and
// dataset_csv.c.
#include "data/dataset_internal.h"
#include "util/err.h"
#include "util/fileio.h"
#include "util/hash.h"
#include "util/rng.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

static const char *format_names[] = { "auto", "obqa", "arc", "sciq", "medmcqa", "mmlu", "jsonl" };

const char *vm_mcq_format_name(vm_mcq_format f) {
    if ((unsigned)f >= sizeof format_names / sizeof format_names[0]) return "?";
    return format_names[f];
}

int vm_mcq_format_parse(const char *name, vm_mcq_format *out) {
    for (size_t i = 0; i < sizeof format_names / sizeof format_names[0]; i++)
        if (name && strcmp(name, format_names[i]) == 0) { *out = (vm_mcq_format)i; return 0; }
    return vm_err("unknown dataset format \"%s\" (auto, obqa, arc, sciq, medmcqa, mmlu, jsonl)",
                  name ? name : "(null)");
}

void vm_dataset_opts_default(vm_dataset_opts *o) { memset(o, 0, sizeof *o); }

size_t vm_dataset_utf8_check(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = u[i];
        if (c == 0) return i;   // C strings cannot carry NUL, so it is never a valid text byte here
        if (c < 0x80) { i++; continue; }
        size_t len; uint32_t cp, min;
        if ((c & 0xE0) == 0xC0)      { len = 2; cp = c & 0x1F; min = 0x80; }
        else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; min = 0x800; }
        else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; min = 0x10000; }
        else return i;
        if (n - i < len) return i;
        for (size_t k = 1; k < len; k++) {
            if ((u[i + k] & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (u[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += len;
    }
    return n;
}

uint64_t vm_dsi_below(vm_rng *r, uint64_t n) {
    // Reject the low (2^64 mod n) values so every residue is equally likely.
    uint64_t thresh = (0 - n) % n, x;
    do x = vm_rng_u64(r); while (x < thresh);
    return x % n;
}

int vm_dsi_text(char **dst, const char *s, size_t n, const char *what, int allow_empty) {
    size_t bad = vm_dataset_utf8_check(s, n);
    if (bad < n)
        return vm_err("%s: %s at byte %zu", what, s[bad] ? "invalid UTF-8" : "NUL byte", bad + 1);
    if (!allow_empty) {
        size_t i = 0;
        while (i < n && isspace((unsigned char)s[i])) i++;
        if (i == n) return vm_err("%s: empty text", what);
    }
    char *p = vm_malloc(n + 1);
    if (!p) return -1;
    memcpy(p, s, n);
    p[n] = 0;
    *dst = p;
    return 0;
}

void vm_dsi_item_free(vm_mcq_item *it) {
    free(it->id); free(it->question); free(it->subject); free(it->support);
    for (int i = 0; i < VM_MCQ_MAX_CHOICES; i++) { free(it->choices[i]); free(it->labels[i]); }
    memset(it, 0, sizeof *it);
}

int vm_dsi_defaults(vm_dsi_loader *L, vm_mcq_item *it) {
    if (!it->id) {
        size_t n = strlen(L->fname) + 24;
        if (!(it->id = vm_malloc(n))) return -1;
        snprintf(it->id, n, "%s:%d", L->fname, it->line);
    }
    for (int i = 0; i < it->n_choices; i++) {
        if (it->labels[i]) continue;
        char lab[2] = { (char)('A' + i), 0 };
        if (!(it->labels[i] = vm_strdup(lab))) return -1;
    }
    return 0;
}

int vm_dsi_push(vm_dsi_loader *L, vm_mcq_item *it) {
    vm_dataset *ds = L->ds;
    if (ds->n == L->cap) {
        size_t cap = L->cap ? L->cap * 2 : 256, bytes;
        if (vm_size_mul(cap, sizeof *ds->items, &bytes) != 0) { vm_dsi_item_free(it); return -1; }
        vm_mcq_item *p = realloc(ds->items, bytes);
        if (!p) { vm_dsi_item_free(it); return vm_err("out of memory for %zu items", cap); }
        ds->items = p; L->cap = cap;
    }
    ds->items[ds->n++] = *it;
    memset(it, 0, sizeof *it);
    return 0;
}

int vm_dsi_bad(vm_dsi_loader *L, int line) {
    vm_err_prefix("%s:%d", L->path, line);
    if (!L->o->skip_bad) return -1;
    vm_dataset *ds = L->ds;
    if (ds->n_bad < VM_DATASET_MAX_BAD_MSGS) {
        ds->bad_msgs[ds->n_bad] = vm_strdup(vm_errmsg());
        if (!ds->bad_msgs[ds->n_bad]) return -1;
    }
    ds->n_bad++;
    vm_err_clear();
    return 0;
}

void vm_dataset_free(vm_dataset *ds) {
    if (!ds) return;
    for (size_t i = 0; i < ds->n; i++) vm_dsi_item_free(&ds->items[i]);
    free(ds->items);
    free(ds->name);
    for (int i = 0; i < VM_DATASET_MAX_BAD_MSGS; i++) free(ds->bad_msgs[i]);
    memset(ds, 0, sizeof *ds);
}

// A string with its length (and NULL distinct from ""), so field boundaries cannot shift.
static uint64_t fnv_str(uint64_t h, const char *s) {
    const int64_t n = s ? (int64_t)strlen(s) : -1;
    h = vm_fnv1a(h, &n, sizeof n);
    return s ? vm_fnv1a(h, s, (size_t)n) : h;
}

uint64_t vm_dataset_fingerprint(const vm_dataset *ds) {
    uint64_t h = VM_FNV1A_INIT;
    const uint64_t n = ds ? ds->n : 0;
    h = vm_fnv1a(h, &n, sizeof n);
    for (size_t i = 0; i < n; i++) {
        const vm_mcq_item *it = &ds->items[i];
        const int32_t head[2] = { it->n_choices, it->answer };
        h = vm_fnv1a(h, head, sizeof head);
        h = fnv_str(h, it->question);
        for (int c = 0; c < it->n_choices && c < VM_MCQ_MAX_CHOICES; c++) h = fnv_str(fnv_str(h, it->choices[c]), it->labels[c]);
        h = fnv_str(fnv_str(h, it->subject), it->support);
    }
    return h;
}

// "<parent>/<stem>" of a path, ignoring trailing slashes and a .jsonl/.json/.csv extension.
static char *path_name(const char *path, char **subject) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    size_t b = n;
    while (b > 0 && path[b - 1] != '/') b--;
    size_t e = n;
    static const char *exts[] = { ".jsonl", ".json", ".csv" };
    for (int i = 0; i < 3; i++) {
        size_t k = strlen(exts[i]);
        if (e - b > k && strncasecmp(path + e - k, exts[i], k) == 0) { e -= k; break; }
    }
    size_t pe = b;
    while (pe > 0 && path[pe - 1] == '/') pe--;
    size_t pb = pe;
    while (pb > 0 && path[pb - 1] != '/') pb--;
    if (pe - pb == 1 && path[pb] == '.') pb = pe;   // "./x" names as "x"
    size_t len = (pe - pb) + 1 + (e - b) + 1;
    char *name = vm_malloc(len);
    if (!name) return NULL;
    if (pe > pb) snprintf(name, len, "%.*s/%.*s", (int)(pe - pb), path + pb, (int)(e - b), path + b);
    else snprintf(name, len, "%.*s", (int)(e - b), path + b);
    if (subject) {
        // MMLU files are "<subject>_<split>.csv".
        size_t se = e;
        static const char *splits[] = { "_dev", "_val", "_test" };
        for (int i = 0; i < 3; i++) {
            size_t k = strlen(splits[i]);
            if (se - b > k && strncmp(path + se - k, splits[i], k) == 0) { se -= k; break; }
        }
        *subject = vm_malloc(se - b + 1);
        if (!*subject) { free(name); return NULL; }
        memcpy(*subject, path + b, se - b);
        (*subject)[se - b] = 0;
    }
    return name;
}

static int ends_with_ci(const char *s, const char *suf) {
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && strcasecmp(s + n - k, suf) == 0;
}

vm_mcq_format vm_mcq_format_detect(const char *path, const char *buf, size_t len) {
    if (path && ends_with_ci(path, ".csv")) return VM_MCQ_FORMAT_MMLU;
    return vm_dsi_detect_jsonl(path ? path : "", buf, len);
}

// Parses one file's bytes into L->ds (appending).
static int load_one(vm_dataset *ds, const char *path, const char *buf, size_t len,
                    const vm_dataset_opts *o, vm_mcq_format *fmt_io) {
    if (len > VM_DATASET_MAX_FILE)
        return vm_err("%s: file of %zu bytes is larger than the %zu-byte limit", path, len,
                      VM_DATASET_MAX_FILE);
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) { buf += 3; len -= 3; }
    vm_mcq_format fmt = o->format;
    if (fmt == VM_MCQ_FORMAT_AUTO) {
        fmt = vm_mcq_format_detect(path, buf, len);
        if (fmt == VM_MCQ_FORMAT_AUTO) return -1;
        if (*fmt_io != VM_MCQ_FORMAT_AUTO && *fmt_io != fmt)
            return vm_err("%s: format %s differs from %s of the files before it", path,
                          vm_mcq_format_name(fmt), vm_mcq_format_name(*fmt_io));
    }
    if ((unsigned)fmt > VM_MCQ_FORMAT_JSONL) return vm_err("%s: invalid format %d", path, (int)fmt);
    *fmt_io = fmt;
    vm_dsi_loader L = { .ds = ds, .o = o, .path = path, .fmt = fmt, .cap = ds->n };
    // ds->items may hold earlier files' items with capacity exactly ds->n at worst; push grows it.
    L.fname = path_name(path, fmt == VM_MCQ_FORMAT_MMLU ? &L.fsubject : NULL);
    if (!L.fname) return -1;
    int rc = fmt == VM_MCQ_FORMAT_MMLU ? vm_dsi_load_csv(&L, buf, len) : vm_dsi_load_jsonl(&L, buf, len);
    free(L.fname); free(L.fsubject);
    return rc;
}

// Subject filter, then seeded shuffle, then limit.
static int finish(vm_dataset *ds, const char *path, const vm_dataset_opts *o) {
    if (o->subject) {
        size_t k = 0;
        for (size_t i = 0; i < ds->n; i++) {
            vm_mcq_item *it = &ds->items[i];
            if (it->subject && strcmp(it->subject, o->subject) == 0) ds->items[k++] = *it;
            else vm_dsi_item_free(it);
        }
        size_t had = ds->n;
        ds->n = k;
        if (k == 0 && had > 0) return vm_err("%s: no items with subject \"%s\"", path, o->subject);
    }
    if (ds->n == 0) {
        if (ds->n_bad) return vm_err("%s: no valid items (%zu malformed; first: %s)", path, ds->n_bad,
                                     ds->bad_msgs[0]);
        return vm_err("%s: no items", path);
    }
    if (o->shuffle) {
        vm_rng r;
        vm_rng_seed2(&r, o->seed, 0x73687566666c65ULL);   // "shuffle": apart from SciQ's per-line streams
        for (size_t i = ds->n - 1; i > 0; i--) {
            size_t j = (size_t)vm_dsi_below(&r, (uint64_t)i + 1);
            vm_mcq_item t = ds->items[i]; ds->items[i] = ds->items[j]; ds->items[j] = t;
        }
    }
    if (o->limit && o->limit < ds->n) {
        for (size_t i = o->limit; i < ds->n; i++) vm_dsi_item_free(&ds->items[i]);
        ds->n = o->limit;
    }
    return 0;
}

int vm_dataset_load_buf(vm_dataset *ds, const char *path, const char *buf, size_t len,
                        const vm_dataset_opts *opts) {
    vm_dataset_opts def;
    if (!opts) { vm_dataset_opts_default(&def); opts = &def; }
    memset(ds, 0, sizeof *ds);
    if (!path) path = "(buffer)";
    vm_mcq_format fmt = VM_MCQ_FORMAT_AUTO;
    if (!(ds->name = path_name(path, NULL))) return -1;
    if (load_one(ds, path, buf ? buf : "", buf ? len : 0, opts, &fmt) != 0 || finish(ds, path, opts) != 0) {
        vm_dataset_free(ds);
        return -1;
    }
    ds->format = fmt;
    return 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int load_file(vm_dataset *ds, const char *path, const vm_dataset_opts *o, vm_mcq_format *fmt) {
    vm_mmap m;
    if (vm_mmap_open(&m, path) != 0) return -1;
    int rc = load_one(ds, path, m.data ? (const char *)m.data : "", m.size, o, fmt);
    vm_mmap_close(&m);
    return rc;
}

static int load_dir(vm_dataset *ds, const char *path, const vm_dataset_opts *o, vm_mcq_format *fmt) {
    DIR *d = opendir(path);
    if (!d) return vm_err("%s: %s", path, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || !(ends_with_ci(e->d_name, ".csv") || ends_with_ci(e->d_name, ".jsonl")))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **p = cap < ((size_t)1 << 20) ? realloc(names, cap * sizeof *names) : NULL;
            if (!p) { rc = vm_err("%s: too many files", path); break; }
            names = p;
        }
        size_t len = strlen(path) + strlen(e->d_name) + 2;
        if (!(names[n] = vm_malloc(len))) { rc = -1; break; }
        snprintf(names[n], len, "%s/%s", path, e->d_name);
        n++;
    }
    closedir(d);
    if (rc == 0 && n == 0) rc = vm_err("%s: no .csv or .jsonl files in this folder", path);
    if (rc == 0) qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; rc == 0 && i < n; i++) rc = load_file(ds, names[i], o, fmt);
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return rc;
}

int vm_dataset_load(vm_dataset *ds, const char *path, const vm_dataset_opts *opts) {
    vm_dataset_opts def;
    if (!opts) { vm_dataset_opts_default(&def); opts = &def; }
    memset(ds, 0, sizeof *ds);
    if (!path || !*path) return vm_err("dataset: empty path");
    struct stat st;
    if (stat(path, &st) != 0) return vm_err("%s: %s", path, strerror(errno));
    vm_mcq_format fmt = VM_MCQ_FORMAT_AUTO;
    if (!(ds->name = path_name(path, NULL))) return -1;
    int rc = S_ISDIR(st.st_mode) ? load_dir(ds, path, opts, &fmt) : load_file(ds, path, opts, &fmt);
    if (rc != 0 || finish(ds, path, opts) != 0) { vm_dataset_free(ds); return -1; }
    ds->format = fmt;
    return 0;
}

// Multiple-choice dataset readers: every real file in ../shared/data/mcqa against counts and items
// decoded by Python's json/csv (tests/reference/dataset_golden.py -> tests/golden/dataset/spot.json),
// SciQ shuffle, filters, and hostile fixtures in tests/data/dataset/.
#include "test.h"
#include "data/dataset.h"
#include "util/err.h"
#include "util/fileio.h"
#include "util/rng.h"

#include <jansson.h>
#include <stdint.h>
#include <string.h>

#define FIX "tests/data/dataset/"

static char *shared_path(const char *rel) {
    static char buf[8][1024];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, sizeof buf[0], "%s/%s", test_shared_dir(), rel);
    return b;
}

// Independent row count for JSONL: lines with a non-space byte.
static long count_nonblank_lines(const char *path) {
    size_t len;
    char *s = vm_read_file(path, &len);
    if (!s) return -1;
    long n = 0;
    int any = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '\n') { n += any; any = 0; }
        else if (s[i] != ' ' && s[i] != '\r' && s[i] != '\t') any = 1;
    }
    free(s);
    return n;
}

static int str_eq_json(const char *s, json_t *v) {
    if (json_is_null(v) || !v) return s == NULL;
    return s && json_is_string(v) && strcmp(s, json_string_value(v)) == 0;
}

static int cmp_cstr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void check_spot(const vm_dataset *ds, json_t *spot, const char *path) {
    size_t i;
    json_t *g;
    json_array_foreach(spot, i, g) {
        size_t k = (size_t)json_integer_value(json_object_get(g, "index"));
        if (k >= ds->n) { CHECK(0, "%s: index %zu beyond %zu", path, k, ds->n); continue; }
        const vm_mcq_item *it = &ds->items[k];
        CHECK(str_eq_json(it->question, json_object_get(g, "question")), "%s[%zu] question: %s", path, k, it->question);
        CHECK(str_eq_json(it->id, json_object_get(g, "id")), "%s[%zu] id %s", path, k, it->id);
        CHECK(it->line == json_integer_value(json_object_get(g, "line")), "%s[%zu] line %d", path, k, it->line);
        json_t *subj = json_object_get(g, "subject");
        if (subj) CHECK(str_eq_json(it->subject, subj), "%s[%zu] subject %s", path, k, it->subject);
        json_t *set = json_object_get(g, "choice_set");
        if (set) {   // SciQ: order is ours; the set, the answer text and support are the file's
            CHECK(it->n_choices == 4, "%s[%zu] sciq n_choices %d", path, k, it->n_choices);
            char *sorted[VM_MCQ_MAX_CHOICES];
            memcpy(sorted, it->choices, sizeof sorted);
            qsort(sorted, (size_t)it->n_choices, sizeof sorted[0], cmp_cstr);
            for (int c = 0; c < it->n_choices && c < 4; c++)
                CHECK(str_eq_json(sorted[c], json_array_get(set, (size_t)c)), "%s[%zu] choice set %d", path, k, c);
            CHECK(str_eq_json(it->choices[it->answer], json_object_get(g, "correct")), "%s[%zu] correct", path, k);
            CHECK(str_eq_json(it->support, json_object_get(g, "support")), "%s[%zu] support", path, k);
            continue;
        }
        json_t *ch = json_object_get(g, "choices"), *lab = json_object_get(g, "labels");
        CHECK(it->n_choices == (int)json_array_size(ch), "%s[%zu] n_choices %d", path, k, it->n_choices);
        for (int c = 0; c < it->n_choices && c < (int)json_array_size(ch); c++) {
            CHECK(str_eq_json(it->choices[c], json_array_get(ch, (size_t)c)), "%s[%zu] choice %d: %s", path, k, c, it->choices[c]);
            CHECK(str_eq_json(it->labels[c], json_array_get(lab, (size_t)c)), "%s[%zu] label %d", path, k, c);
        }
        CHECK(it->answer == json_integer_value(json_object_get(g, "answer")), "%s[%zu] answer %d", path, k, it->answer);
    }
}

// Every real file: count equals the golden count (and the non-blank line count for JSONL), the
// detected format is right, and the golden items match field by field.
static void test_real_files(void) {
    json_error_t je;
    json_t *gold = json_load_file("tests/golden/dataset/spot.json", 0, &je);
    CHECK(gold != NULL, "spot.json: %s", je.text);
    if (!gold) return;
    size_t i;
    json_t *e;
    int files = 0;
    json_array_foreach(json_object_get(gold, "files"), i, e) {
        const char *rel = json_string_value(json_object_get(e, "path"));
        const char *path = shared_path(rel);
        vm_dataset ds;
        int rc = vm_dataset_load(&ds, path, NULL);
        CHECK(rc == 0, "%s: %s", path, vm_errmsg());
        if (rc != 0) continue;
        files++;
        long n = (long)json_integer_value(json_object_get(e, "n"));
        CHECK((long)ds.n == n, "%s: %zu items, golden %ld", rel, ds.n, n);
        CHECK(strcmp(vm_mcq_format_name(ds.format), json_string_value(json_object_get(e, "format"))) == 0,
              "%s: detected %s", rel, vm_mcq_format_name(ds.format));
        CHECK(ds.n_bad == 0, "%s: %zu bad", rel, ds.n_bad);
        if (strstr(rel, ".jsonl")) CHECK(count_nonblank_lines(path) == (long)ds.n, "%s: line count", rel);
        json_t *spot = json_object_get(e, "spot");
        if (spot) check_spot(&ds, spot, rel);
        for (size_t k = 0; k < ds.n; k++) {   // invariants on every item
            const vm_mcq_item *it = &ds.items[k];
            if (!(it->n_choices >= 2 && it->n_choices <= 8 && it->answer >= 0 && it->answer < it->n_choices &&
                  it->id && it->question && it->choices[it->n_choices - 1] && it->labels[it->n_choices - 1])) {
                CHECK(0, "%s[%zu]: invalid item", rel, k);
                break;
            }
        }
        vm_dataset_free(&ds);
    }
    CHECK(files == 184, "%d files loaded", files);
    json_decref(gold);

    // The row counts documented in shared/README.md, written out independently of the golden file.
    static const struct { const char *rel; size_t n; } doc[] = {
        { "data/mcqa/openbookqa/train.jsonl", 4957 }, { "data/mcqa/openbookqa/test.jsonl", 500 },
        { "data/mcqa/arc-challenge/train.jsonl", 1119 }, { "data/mcqa/arc-challenge/dev.jsonl", 299 },
        { "data/mcqa/arc-challenge/test.jsonl", 1172 }, { "data/mcqa/arc-easy/train.jsonl", 2251 },
        { "data/mcqa/arc-easy/dev.jsonl", 570 }, { "data/mcqa/arc-easy/test.jsonl", 2376 },
        { "data/mcqa/sciq/validation.jsonl", 1000 }, { "data/mcqa/medmcqa/dev.jsonl", 4183 },
        { "data/mcqa/mmlu/dev", 5 * 57 },   // MMLU dev is 5 few-shot items for each of 57 subjects
    };
    for (size_t d = 0; d < sizeof doc / sizeof doc[0]; d++) {
        vm_dataset ds;
        int rc = vm_dataset_load(&ds, shared_path(doc[d].rel), NULL);
        CHECK(rc == 0 && ds.n == doc[d].n, "%s: rc %d n %zu want %zu", doc[d].rel, rc, ds.n, doc[d].n);
        vm_dataset_free(&ds);
    }
}

static void test_sciq_shuffle(void) {
    const char *path = shared_path("data/mcqa/sciq/validation.jsonl");
    vm_dataset_opts o;
    vm_dataset_opts_default(&o);
    vm_dataset a, b, c, d;
    o.seed = 1;
    CHECK(vm_dataset_load(&a, path, &o) == 0, "%s", vm_errmsg());
    CHECK(vm_dataset_load(&b, path, &o) == 0, "%s", vm_errmsg());
    o.seed = 2;
    CHECK(vm_dataset_load(&c, path, &o) == 0, "%s", vm_errmsg());
    o.seed = 1; o.limit = 10;
    CHECK(vm_dataset_load(&d, path, &o) == 0, "%s", vm_errmsg());
    if (a.n != 1000 || b.n != 1000 || c.n != 1000 || d.n != 10) { CHECK(0, "sciq loads"); return; }
    int same = 1, differ = 0, hist[4] = { 0 }, hist2[4] = { 0 };
    for (size_t i = 0; i < a.n; i++) {
        for (int k = 0; k < 4; k++) {
            same &= strcmp(a.items[i].choices[k], b.items[i].choices[k]) == 0;
            if (i < 10) same &= strcmp(a.items[i].choices[k], d.items[i].choices[k]) == 0;
        }
        same &= a.items[i].answer == b.items[i].answer;
        differ += a.items[i].answer != c.items[i].answer;
        hist[a.items[i].answer]++;
        hist2[c.items[i].answer]++;
    }
    CHECK(same, "same seed gives the same choice order (also with limit)");
    CHECK(differ > 600, "seed 2 moves answers: %d of 1000 differ (expect ~750)", differ);
    // Uniform: expected 250 each, sd ~13.7; 200..300 is over 3.6 sd.
    for (int k = 0; k < 4; k++) {
        CHECK(hist[k] > 200 && hist[k] < 300, "seed 1: answer at %c %d times", 'A' + k, hist[k]);
        CHECK(hist2[k] > 200 && hist2[k] < 300, "seed 2: answer at %c %d times", 'A' + k, hist2[k]);
    }
    CHECK(strcmp(a.items[0].labels[3], "D") == 0 && a.items[0].support == NULL, "labels A..D, empty support NULL");
    CHECK(a.items[2].support && strncmp(a.items[2].support, "A frameshift mutation", 21) == 0, "support kept");
    vm_dataset_free(&a); vm_dataset_free(&b); vm_dataset_free(&c); vm_dataset_free(&d);
}

static void test_filter_limit_shuffle(void) {
    vm_dataset_opts o;
    vm_dataset_opts_default(&o);
    vm_dataset ds;
    o.subject = "Anatomy";
    CHECK(vm_dataset_load(&ds, shared_path("data/mcqa/medmcqa/dev.jsonl"), &o) == 0, "%s", vm_errmsg());
    CHECK(ds.n == 234, "medmcqa Anatomy %zu (golden 234)", ds.n);
    int all = 1;
    for (size_t i = 0; i < ds.n; i++) all &= strcmp(ds.items[i].subject, "Anatomy") == 0;
    CHECK(all, "every item is Anatomy");
    vm_dataset_free(&ds);
    o.subject = "Astrology";
    CHECK(vm_dataset_load(&ds, shared_path("data/mcqa/medmcqa/dev.jsonl"), &o) != 0 &&
          strstr(vm_errmsg(), "no items with subject \"Astrology\""), "unknown subject: %s", vm_errmsg());
    o.subject = "anatomy";   // MMLU: subject from the file name, across a split folder
    CHECK(vm_dataset_load(&ds, shared_path("data/mcqa/mmlu/test"), &o) == 0, "%s", vm_errmsg());
    CHECK(ds.n == 135 && strcmp(ds.name, "mmlu/test") == 0, "mmlu test anatomy %zu name %s", ds.n, ds.name);
    CHECK(ds.n && strncmp(ds.items[0].id, "test/anatomy_test:", 18) == 0, "id %s", ds.n ? ds.items[0].id : "");
    vm_dataset_free(&ds);

    // limit keeps the first items; shuffle is a seeded permutation; limit applies after shuffle.
    const char *path = shared_path("data/mcqa/arc-easy/dev.jsonl");
    vm_dataset full, lim, s1, s2, s3, sl;
    vm_dataset_opts_default(&o);
    CHECK(vm_dataset_load(&full, path, &o) == 0, "%s", vm_errmsg());
    o.limit = 10;
    CHECK(vm_dataset_load(&lim, path, &o) == 0 && lim.n == 10, "limit 10: %zu", lim.n);
    o.limit = 0; o.shuffle = 1; o.seed = 5;
    CHECK(vm_dataset_load(&s1, path, &o) == 0, "%s", vm_errmsg());
    CHECK(vm_dataset_load(&s2, path, &o) == 0, "%s", vm_errmsg());
    o.limit = 7;
    CHECK(vm_dataset_load(&sl, path, &o) == 0 && sl.n == 7, "shuffle+limit");
    o.limit = 0; o.seed = 6;
    CHECK(vm_dataset_load(&s3, path, &o) == 0, "%s", vm_errmsg());
    int ok = full.n == 570 && s1.n == 570 && s2.n == 570 && s3.n == 570 && lim.n == 10 && sl.n == 7;
    CHECK(ok, "sizes");
    if (ok) {
        int pref = 1, same = 1, moved = 0, moved3 = 0;
        for (size_t i = 0; i < 10; i++) pref &= strcmp(full.items[i].id, lim.items[i].id) == 0;
        for (size_t i = 0; i < 570; i++) {
            same &= strcmp(s1.items[i].id, s2.items[i].id) == 0;
            moved += strcmp(s1.items[i].id, full.items[i].id) != 0;
            moved3 += strcmp(s1.items[i].id, s3.items[i].id) != 0;
        }
        for (size_t i = 0; i < 7; i++) same &= strcmp(s1.items[i].id, sl.items[i].id) == 0;
        CHECK(pref, "limit = prefix");
        CHECK(same, "shuffle reproducible for a seed (and limit = prefix of the shuffle)");
        CHECK(moved > 500 && moved3 > 500, "shuffle moves items: %d, other seed %d", moved, moved3);
        // Permutation: the multiset of ids is unchanged (ids are unique in the file).
        char **x = malloc(570 * sizeof *x), **y = malloc(570 * sizeof *y);
        for (size_t i = 0; i < 570; i++) { x[i] = full.items[i].id; y[i] = s1.items[i].id; }
        qsort(x, 570, sizeof *x, cmp_cstr); qsort(y, 570, sizeof *y, cmp_cstr);
        int perm = 1;
        for (size_t i = 0; i < 570; i++) perm &= strcmp(x[i], y[i]) == 0 && (i == 0 || strcmp(x[i - 1], x[i]) != 0);
        CHECK(perm, "shuffle is a permutation");
        free(x); free(y);
    }
    vm_dataset_free(&full); vm_dataset_free(&lim); vm_dataset_free(&s1); vm_dataset_free(&s2);
    vm_dataset_free(&s3); vm_dataset_free(&sl);
}

static void test_good_fixtures(void) {
    vm_dataset ds;
    CHECK(vm_dataset_load(&ds, FIX "good_generic.jsonl", NULL) == 0, "%s", vm_errmsg());
    CHECK(ds.format == VM_MCQ_FORMAT_JSONL && ds.n == 4, "generic: format %d n %zu", ds.format, ds.n);
    if (ds.n == 4) {
        vm_mcq_item *a = &ds.items[0], *b = &ds.items[1], *c = &ds.items[2], *d = &ds.items[3];
        CHECK(strcmp(a->id, "7") == 0 && a->line == 1 && a->n_choices == 3 && a->answer == 1 &&
              strcmp(a->labels[2], "C") == 0 && strcmp(a->subject, "math") == 0 && !a->support, "item 1 (BOM, int id)");
        CHECK(strcmp(b->id, "dataset/good_generic:4") == 0 && b->line == 4 && b->answer == 1 &&
              strcmp(b->labels[0], "x") == 0 && strcmp(b->support, "because") == 0, "item 2 (after blank lines, CRLF) id %s line %d", b->id, b->line);
        CHECK(strcmp(c->question, "Caf\xc3\xa9 \xc3\xa9\xf0\x9f\x98\x80?") == 0 && strcmp(c->choices[1], "\xf0\x9f\x98\x80") == 0 &&
              strcmp(c->choices[2], "a,b") == 0 && strcmp(c->labels[2], "3") == 0 && c->answer == 2 && !c->support, "item 3 (UTF-8, escapes, labels)");
        CHECK(d->n_choices == 8 && d->answer == 7 && strcmp(d->labels[7], "H") == 0, "item 4 (8 choices, no final newline)");
    }
    vm_dataset_free(&ds);

    CHECK(vm_dataset_load(&ds, FIX "good_mmlu_dev.csv", NULL) == 0, "%s", vm_errmsg());
    CHECK(ds.format == VM_MCQ_FORMAT_MMLU && ds.n == 4, "mmlu fixture: n %zu", ds.n);
    if (ds.n == 4) {
        vm_mcq_item *a = &ds.items[0], *b = &ds.items[1], *c = &ds.items[2], *d = &ds.items[3];
        CHECK(strcmp(a->question, "plain question") == 0 && strcmp(a->choices[3], "d") == 0 && a->answer == 0 &&
              strcmp(a->subject, "good_mmlu") == 0 && strcmp(a->id, "dataset/good_mmlu_dev:1") == 0, "record 1 (CRLF): [%s] [%s]", a->question, a->choices[3]);
        CHECK(strcmp(b->question, "quoted, with comma") == 0 && strcmp(b->choices[0], "say \"hi\"") == 0 &&
              strcmp(b->choices[1], "multi\nline") == 0 && strcmp(b->choices[2], "crlf\r\ninside") == 0 &&
              b->answer == 1 && b->line == 2, "record 2 (quotes, commas, newlines)");
        CHECK(strcmp(c->question, "\xc3\xa9t\xc3\xa9?") == 0 && c->line == 6 && c->answer == 2, "record 3 after a blank line: line %d", c->line);
        CHECK(strcmp(d->question, "last, no newline") == 0 && strcmp(d->choices[3], "4") == 0 && d->answer == 3 && d->line == 7, "record 4 (no final newline)");
    }
    vm_dataset_free(&ds);
}

// Loads with and without skip_bad: without, the message must contain `msg`; with, n and n_bad.
static void expect_bad(const char *file, const char *fmt, const char *msg, size_t n_ok, size_t n_bad, const char *msg2) {
    vm_dataset_opts o;
    vm_dataset_opts_default(&o);
    if (fmt) CHECK(vm_mcq_format_parse(fmt, &o.format) == 0, "format %s", fmt);
    vm_dataset ds;
    int rc = vm_dataset_load(&ds, file, &o);
    CHECK(rc != 0 && strstr(vm_errmsg(), msg) != NULL, "%s: want \"%s\", got rc %d \"%s\"", file, msg, rc, vm_errmsg());
    CHECK(ds.items == NULL && ds.n == 0, "%s: failed load leaves ds empty", file);
    if (rc == 0) vm_dataset_free(&ds);
    o.skip_bad = 1;
    rc = vm_dataset_load(&ds, file, &o);
    if (n_ok == 0) {   // nothing valid: still an error, naming the malformed count when there were some
        CHECK(rc != 0 && (n_bad == 0 || strstr(vm_errmsg(), "no valid items")), "%s skip_bad: all bad: %s", file, vm_errmsg());
        if (rc == 0) vm_dataset_free(&ds);
        return;
    }
    CHECK(rc == 0 && ds.n == n_ok && ds.n_bad == n_bad, "%s skip_bad: rc %d n %zu n_bad %zu (%s)", file, rc, ds.n, ds.n_bad, vm_errmsg());
    if (rc == 0) {
        CHECK(ds.bad_msgs[0] && strstr(ds.bad_msgs[0], msg), "%s: first kept message %s", file, ds.bad_msgs[0]);
        if (msg2) CHECK(n_bad > 1 && ds.bad_msgs[1] && strstr(ds.bad_msgs[1], msg2), "%s: second message %s", file, ds.bad_msgs[1]);
        vm_dataset_free(&ds);
    }
}

static void test_bad_fixtures(void) {
    expect_bad(FIX "bad_json.jsonl", NULL, FIX "bad_json.jsonl:3: bad JSON: ", 3, 1, NULL);
    expect_bad(FIX "missing_field.jsonl", NULL, FIX "missing_field.jsonl:2: missing field \"answerKey\"", 1, 1, NULL);
    expect_bad(FIX "answer_not_label.jsonl", NULL,
               FIX "answer_not_label.jsonl:1: answerKey \"E\" is not among the labels (A B C D)", 0, 1, NULL);
    expect_bad(FIX "choice_count.jsonl", NULL, FIX "choice_count.jsonl:2: 9 choices (need 2..8)", 2, 2,
               FIX "choice_count.jsonl:3: 1 choices (need 2..8)");
    expect_bad(FIX "empty_text.jsonl", NULL, FIX "empty_text.jsonl:1: question.choices[1].text: empty text", 0, 1, NULL);
    expect_bad(FIX "invalid_utf8.jsonl", NULL, FIX "invalid_utf8.jsonl:2: invalid UTF-8 at byte 19", 1, 4,
               FIX "invalid_utf8.jsonl:3: invalid UTF-8 at byte 24");
    expect_bad(FIX "nul.jsonl", "jsonl", FIX "nul.jsonl:1: bad JSON: ", 0, 3, NULL);
    expect_bad(FIX "medmcqa_bad.jsonl", NULL, FIX "medmcqa_bad.jsonl:1: field \"cop\" must be an integer 1..4", 1, 5,
               FIX "medmcqa_bad.jsonl:2: field \"cop\"");
    expect_bad(FIX "sciq_bad.jsonl", NULL, FIX "sciq_bad.jsonl:2: missing field \"distractor3\"", 1, 2,
               FIX "sciq_bad.jsonl:3: correct_answer: empty text");
    expect_bad(FIX "misc_bad.jsonl", "jsonl", FIX "misc_bad.jsonl:1: record is not a JSON object", 0, 6,
               FIX "misc_bad.jsonl:2: bad JSON: duplicate object key");
    expect_bad(FIX "bad_unterminated_dev.csv", NULL, FIX "bad_unterminated_dev.csv:2: expected 6 fields, got 5", 1, 2,
               FIX "bad_unterminated_dev.csv:3: quoted field opened on line 3 is not closed");
    expect_bad(FIX "bad_mmlu_dev.csv", NULL, FIX "bad_mmlu_dev.csv:2: answer \"E\" is not one of A, B, C, D", 2, 5,
               FIX "bad_mmlu_dev.csv:3: expected 6 fields, got 7");
    expect_bad(FIX "unknown.jsonl", NULL, FIX "unknown.jsonl: cannot detect the dataset format", 0, 0, NULL);
    expect_bad(FIX "empty.jsonl", NULL, "empty file", 0, 0, NULL);
    expect_bad(FIX "empty.jsonl", "jsonl", FIX "empty.jsonl: no items", 0, 0, NULL);

    // All messages of a skip_bad run, in order, for the MMLU fixture.
    vm_dataset_opts o;
    vm_dataset_opts_default(&o);
    o.skip_bad = 1;
    vm_dataset ds;
    if (vm_dataset_load(&ds, FIX "bad_mmlu_dev.csv", &o) == 0) {
        CHECK(ds.bad_msgs[2] && strstr(ds.bad_msgs[2], "bad_mmlu_dev.csv:4: unexpected character after the closing quote of field 2"), "%s", ds.bad_msgs[2]);
        CHECK(ds.bad_msgs[3] && strstr(ds.bad_msgs[3], "bad_mmlu_dev.csv:6: choice B: empty text"), "%s", ds.bad_msgs[3]);
        CHECK(ds.n == 2 && ds.items[1].line == 8 && strcmp(ds.items[1].question, "q7") == 0, "resync after errors: line %d", ds.n == 2 ? ds.items[1].line : -1);
        vm_dataset_free(&ds);
    }
    CHECK(vm_dataset_load(&ds, FIX "misc_bad.jsonl", &o) != 0, "misc all bad");

    // Formats given explicitly.
    vm_dataset_opts_default(&o);
    CHECK(vm_mcq_format_parse("obqa", &o.format) == 0, "parse obqa");
    CHECK(vm_dataset_load(&ds, shared_path("data/mcqa/arc-easy/dev.jsonl"), &o) == 0 && ds.format == VM_MCQ_FORMAT_OBQA, "arc file as obqa");
    vm_dataset_free(&ds);
    o.format = VM_MCQ_FORMAT_SCIQ;
    CHECK(vm_dataset_load(&ds, shared_path("data/mcqa/arc-easy/dev.jsonl"), &o) != 0 &&
          strstr(vm_errmsg(), "dev.jsonl:1: field \"question\" is not a string"), "arc as sciq: %s", vm_errmsg());
    o.format = VM_MCQ_FORMAT_JSONL;
    CHECK(vm_dataset_load(&ds, FIX "good_mmlu_dev.csv", &o) != 0 && strstr(vm_errmsg(), "good_mmlu_dev.csv:1: bad JSON"), "csv as jsonl: %s", vm_errmsg());
    o.format = VM_MCQ_FORMAT_MMLU;
    CHECK(vm_dataset_load(&ds, FIX "good_generic.jsonl", &o) != 0 && strstr(vm_errmsg(), "good_generic.jsonl:1: expected 6 fields"), "jsonl as mmlu: %s", vm_errmsg());
    vm_mcq_format f;
    CHECK(vm_mcq_format_parse("MMLU", &f) != 0 && strstr(vm_errmsg(), "unknown dataset format"), "bad format name");
    for (int k = VM_MCQ_FORMAT_AUTO; k <= VM_MCQ_FORMAT_JSONL; k++)
        CHECK(vm_mcq_format_parse(vm_mcq_format_name((vm_mcq_format)k), &f) == 0 && (int)f == k, "name round trip %d", k);
    // A folder of mixed formats, a missing file.
    CHECK(vm_dataset_load(&ds, "tests/data/dataset", NULL) != 0, "mixed folder fails: %s", vm_errmsg());
    CHECK(vm_dataset_load(&ds, FIX "nope.jsonl", NULL) != 0 && strstr(vm_errmsg(), "nope.jsonl"), "missing file");
}

static void test_utf8(void) {
    static const struct { const char *s; size_t n, bad; } t[] = {
        { "abc", 3, 3 }, { "\xc3\xa9", 2, 2 }, { "\xe2\x82\xac", 3, 3 }, { "\xf4\x8f\xbf\xbf", 4, 4 },
        { "\xc3", 1, 0 }, { "a\xc0\x80", 3, 1 }, { "\xe0\x80\x80", 3, 0 }, { "\xed\xa0\x80", 3, 0 },
        { "\xf4\x90\x80\x80", 4, 0 }, { "\xf8\x88\x80\x80\x80", 5, 0 }, { "ab\x80", 3, 2 }, { "a\0b", 3, 1 },
        { "\xe2\x82", 2, 0 }, { "\xe2\x28\xa1", 3, 0 },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        CHECK(vm_dataset_utf8_check(t[i].s, t[i].n) == t[i].bad, "utf8 case %zu: %zu", i, vm_dataset_utf8_check(t[i].s, t[i].n));
}

// Sizes and nesting built at run time, then random damage to real records: never a crash, and a
// successful load always holds valid items.
static void check_invariants(const vm_dataset *ds, const char *what) {
    for (size_t k = 0; k < ds->n; k++) {
        const vm_mcq_item *it = &ds->items[k];
        if (!(it->n_choices >= 2 && it->n_choices <= 8 && it->answer >= 0 && it->answer < it->n_choices && it->id && it->question)) {
            CHECK(0, "%s: bad item %zu", what, k);
            return;
        }
    }
}

static void test_hostile_runtime(void) {
    vm_dataset ds;
    size_t big = VM_MCQ_MAX_RECORD + 100;
    char *s = malloc(big + 100);
    int n = snprintf(s, 100, "{\"question\": \"");
    memset(s + n, 'x', big);
    strcpy(s + n + big, "\", \"choices\": [\"a\", \"b\"], \"answer\": 0}\n");
    vm_dataset_opts o;
    vm_dataset_opts_default(&o);
    o.format = VM_MCQ_FORMAT_JSONL;
    CHECK(vm_dataset_load_buf(&ds, "long.jsonl", s, strlen(s), &o) != 0 &&
          strstr(vm_errmsg(), "long.jsonl:1: line of"), "long line: %s", vm_errmsg());
    size_t depth = 100000;
    for (size_t i = 0; i < depth; i++) s[i] = '[';
    for (size_t i = 0; i < depth; i++) s[depth + i] = ']';
    CHECK(vm_dataset_load_buf(&ds, "deep.jsonl", s, 2 * depth, &o) != 0 && strstr(vm_errmsg(), "deep.jsonl:1: bad JSON"), "deep nesting: %s", vm_errmsg());
    // One CSV record over the size limit inside a quoted field.
    s[0] = '"';
    memset(s + 1, 'y', big);
    o.format = VM_MCQ_FORMAT_MMLU;
    CHECK(vm_dataset_load_buf(&ds, "big.csv", s, big + 1, &o) != 0 && strstr(vm_errmsg(), "big.csv:1: record is longer"), "big csv: %s", vm_errmsg());
    free(s);

    static const char *files[] = { "data/mcqa/openbookqa/test.jsonl", "data/mcqa/sciq/validation.jsonl",
                                   "data/mcqa/medmcqa/dev.jsonl", "data/mcqa/mmlu/dev/global_facts_dev.csv",
                                   "data/mcqa/mmlu/dev/college_mathematics_dev.csv", "data/mcqa/arc-easy/train.jsonl" };
    vm_rng r;
    vm_rng_seed(&r, 42);
    int loads = 0, oks = 0;
    for (size_t fi = 0; fi < sizeof files / sizeof files[0]; fi++) {
        size_t len;
        char *orig = vm_read_file(shared_path(files[fi]), &len);
        if (!orig) { CHECK(0, "%s", vm_errmsg()); continue; }
        if (len > 6000) len = 6000;
        char *buf = malloc(len);
        for (int rep = 0; rep < 150; rep++) {
            memcpy(buf, orig, len);
            size_t cut = len;
            int kind = rep % 3;
            if (kind == 0) cut = (size_t)(vm_rng_u64(&r) % (len + 1));   // truncation
            int flips = kind == 1 ? 1 + (int)(vm_rng_u64(&r) % 8) : 0;
            for (int f = 0; f < flips; f++) buf[vm_rng_u64(&r) % len] = (char)vm_rng_u64(&r);
            if (kind == 2) {   // splice syntax characters
                static const char sp[] = "\"\n,{}[]\\\r\0";
                for (int f = 0; f < 4; f++) buf[vm_rng_u64(&r) % len] = sp[vm_rng_u64(&r) % (sizeof sp - 1)];
            }
            vm_dataset_opts_default(&o);
            o.skip_bad = rep & 1;
            o.shuffle = (rep >> 1) & 1;
            o.limit = rep % 5;
            o.subject = rep % 7 == 0 ? "Physiology" : NULL;
            int rc = vm_dataset_load_buf(&ds, files[fi], buf, cut, &o);
            loads++;
            if (rc == 0) {
                oks++;
                CHECK(ds.n > 0, "ok load has items");
                check_invariants(&ds, files[fi]);
                vm_dataset_free(&ds);
            } else {
                CHECK(strstr(vm_errmsg(), files[fi]) != NULL, "message names the file: %s", vm_errmsg());
            }
        }
        free(buf);
        free(orig);
    }
    printf("damaged inputs: %d loads, %d succeeded\n", loads, oks);
}

int main(void) {
    test_utf8();
    test_good_fixtures();
    test_bad_fixtures();
    test_real_files();
    test_sciq_shuffle();
    test_filter_limit_shuffle();
    test_hostile_runtime();
    return TEST_SUMMARY();
}

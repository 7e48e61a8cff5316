// The story-cloze task data (data/cloze/, built by scripts/make_cloze.py): every file loads with
// the generic JSONL dataset reader and has the promised shape, the splits share no story, the
// in-distribution text is real TinyStories text and the OOD text is not, every prompt fits the
// stories260K context, and the real stories260K model does the task (log-likelihood accuracy).
//
// VMOER_CLOZE_EVAL_N=<n> (default 60; 10 under sanitizers) sets how many items per set are scored.
#include "convert/convert.h"
#include "data/dataset.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "util/err.h"
#include "util/fileio.h"

#include <ctype.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "test.h"

#define CLOZE_DIR "data/cloze/"
#define MAX_PROMPT_TOKENS 300   // passage + " " + choice, BOS included (the model's context is 512)

typedef struct cloze_set {
    const char *file;
    size_t n;          // expected item count
    int in_dist;       // 1: TinyStories splits, 0: OOD
    const char *source;// shared/data/text file the text must be found in verbatim (NULL: detokenised)
} cloze_set;

static const cloze_set SETS[] = {
    { "train", 2000, 1, "tinystories-valid.txt" },
    { "validation", 300, 1, "tinystories-valid.txt" },
    { "test", 500, 1, "tinystories-valid.txt" },
    { "ood-tinyshakespeare", 500, 0, "tinyshakespeare.txt" },
    { "ood-wikitext2", 500, 0, NULL },   // WikiText's tokenised spacing was undone by the script
};
#define N_SETS (int)(sizeof SETS / sizeof SETS[0])

// ---------------------------------------------------------------- exact text search

// A text with every run of white space turned into one space, so a passage whose sentences came
// from two paragraphs (joined with one space by the script) is found as well.
static char *squeeze(const char *s, size_t n, size_t *out_n) {
    char *o = malloc(n + 1);
    size_t k = 0;
    int sp = 0;
    for (size_t i = 0; o && i < n; i++) {
        if (isspace((unsigned char)s[i])) { sp = 1; continue; }
        if (sp && k) o[k++] = ' ';
        sp = 0;
        o[k++] = s[i];
    }
    if (o) o[k] = 0;
    *out_n = k;
    return o;
}

#define KEY_LEN 20   // bytes hashed per needle: the shortest choice is 20 characters

static uint64_t key_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < KEY_LEN; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

typedef struct needle { uint64_t h; const char *s; size_t n; int *found; } needle;

static int needle_cmp(const void *a, const void *b) {
    uint64_t x = ((const needle *)a)->h, y = ((const needle *)b)->h;
    return x < y ? -1 : x > y;
}

// Sets *found for every needle that occurs in hay: needles sorted by the hash of their first
// KEY_LEN bytes, one pass over hay looking each window's hash up. O(|hay| log n + hits).
static void find_all(const char *hay, size_t hn, needle *nd, size_t n) {
    qsort(nd, n, sizeof *nd, needle_cmp);
    for (size_t p = 0; p + KEY_LEN <= hn; p++) {
        uint64_t h = key_hash(hay + p);
        size_t lo = 0, hi = n;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (nd[mid].h < h) lo = mid + 1; else hi = mid;
        }
        for (size_t i = lo; i < n && nd[i].h == h; i++)
            if (!*nd[i].found && nd[i].n <= hn - p && memcmp(hay + p, nd[i].s, nd[i].n) == 0) *nd[i].found = 1;
    }
}

static char *load_text(const char *name, size_t *n) {
    char path[512];
    snprintf(path, sizeof path, "%s/data/text/%s", test_shared_dir(), name);
    size_t len = 0;
    char *raw = vm_read_file(path, &len);
    if (!raw) return NULL;
    char *s = squeeze(raw, len, n);
    free(raw);
    return s;
}

// Counts the items of ds whose question or any choice is (want_found=1) missing from / (0) present
// in the text; reports the first offender.
static size_t count_text(const vm_dataset *ds, const char *text, size_t tn, int want_found, const char *what) {
    size_t n = 0;
    for (size_t i = 0; i < ds->n; i++) n += 1 + (size_t)ds->items[i].n_choices;
    needle *nd = calloc(n, sizeof *nd);
    int *found = calloc(n, sizeof *found);
    if (!nd || !found) { free(nd); free(found); return ds->n; }
    size_t k = 0;
    for (size_t i = 0; i < ds->n; i++) {
        const vm_mcq_item *it = &ds->items[i];
        for (int c = -1; c < it->n_choices; c++) {
            const char *s = c < 0 ? it->question : it->choices[c];
            size_t sn = strlen(s);
            if (sn < KEY_LEN) {   // too short for the hash (a rare two-word passage): plain search
                found[k] = strstr(text, s) != NULL;
                nd[k] = (needle){ 0, "", SIZE_MAX, &found[k] };   // never matches below
            } else {
                nd[k] = (needle){ key_hash(s), s, sn, &found[k] };
            }
            k++;
        }
    }
    find_all(text, tn, nd, n);
    size_t bad = 0;
    k = 0;
    for (size_t i = 0; i < ds->n; i++) {
        int item_bad = 0;
        for (int c = -1; c < ds->items[i].n_choices; c++, k++)
            if (found[k] != want_found) item_bad = 1;
        if (item_bad && bad++ == 0)
            fprintf(stderr, "%s: %s: item %s: text %s\n", ds->name, what, ds->items[i].id,
                    want_found ? "not found in its source" : "found in TinyStories");
    }
    free(nd);
    free(found);
    return bad;
}

// ---------------------------------------------------------------- shape checks

static int is_prefix(const char *a, const char *b) { return strncmp(a, b, strlen(a)) == 0; }

static void check_shape(const cloze_set *cs, const vm_dataset *ds) {
    CHECK(ds->n == cs->n, "%s: %zu items, expected %zu", cs->file, ds->n, cs->n);
    size_t slot[4] = { 0 }, bad_choices = 0, dup_choice = 0, longest = 0, empty = 0;
    for (size_t i = 0; i < ds->n; i++) {
        const vm_mcq_item *it = &ds->items[i];
        if (it->n_choices != 4) { bad_choices++; continue; }
        slot[it->answer]++;
        int lg = 0;
        for (int c = 0; c < 4; c++) {
            if (!it->choices[c][0]) empty++;
            if (strlen(it->choices[c]) > strlen(it->choices[lg])) lg = c;
            for (int d = 0; d < c; d++) dup_choice += strcmp(it->choices[c], it->choices[d]) == 0;
        }
        longest += lg == it->answer;
    }
    CHECK(bad_choices == 0, "%s: %zu items without exactly 4 choices", cs->file, bad_choices);
    CHECK(dup_choice == 0 && empty == 0, "%s: %zu repeated, %zu empty choices", cs->file, dup_choice, empty);
    for (int a = 0; a < 4; a++)
        CHECK(slot[a] >= ds->n / 5 && slot[a] <= ds->n * 3 / 10, "%s: answer %c in %zu of %zu items",
              cs->file, 'A' + a, slot[a], ds->n);
    // Lengths are matched: "pick the longest choice" must be near chance (25 %).
    double acc_long = ds->n ? (double)longest / (double)ds->n : 1;
    CHECK(acc_long < 0.32, "%s: picking the longest choice is right %.3f of the time", cs->file, acc_long);
    printf("%-20s %4zu items, answers A..D %zu/%zu/%zu/%zu, longest-choice baseline %.3f\n", cs->file,
           ds->n, slot[0], slot[1], slot[2], slot[3], acc_long);
}

typedef struct qref { const char *q, *id; int set; } qref;

static int qref_cmp(const void *a, const void *b) {
    return strcmp(((const qref *)a)->q, ((const qref *)b)->q);
}

// No passage of one in-distribution split equals or extends a passage of another (every passage
// starts with its story's first sentences, so this is "no story in two splits"); no passage twice.
// In sorted order every string between a and a longer string it prefixes also starts with it, so
// walking forward from each passage while the prefix holds finds every such pair.
static void check_disjoint(vm_dataset *ds) {
    size_t n = 0, k = 0, cross = 0, dup = 0;
    for (int a = 0; a < N_SETS; a++) if (SETS[a].in_dist) n += ds[a].n;
    qref *r = calloc(n ? n : 1, sizeof *r);
    CHECK(r != NULL, "out of memory");
    if (!r) return;
    for (int a = 0; a < N_SETS; a++)
        for (size_t i = 0; SETS[a].in_dist && i < ds[a].n; i++)
            r[k++] = (qref){ ds[a].items[i].question, ds[a].items[i].id, a };
    qsort(r, n, sizeof *r, qref_cmp);
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n && is_prefix(r[i].q, r[j].q); j++) {
            if (r[j].set == r[i].set) { dup += strcmp(r[i].q, r[j].q) == 0; continue; }
            if (cross++ == 0) fprintf(stderr, "shared story: %s / %s\n", r[i].id, r[j].id);
        }
    free(r);
    CHECK(cross == 0, "%zu passage pairs shared between splits", cross);
    CHECK(dup == 0, "%zu repeated passages within a split", dup);
}

// ---------------------------------------------------------------- scoring with stories260K

// lm-eval's loglikelihood: context tokens = tokenize(BOS + question), whole = tokenize(BOS +
// question + " " + choice); the choice's tokens are whole[n_context:], scored by the model's
// log-softmax at the previous position and summed.
static int score_choice(vm_ctx *c, const vm_tokenizer *t, const char *q, const char *ch, int32_t *tok,
                        float *logits, double *ll, int *n_tok) {
    size_t ql = strlen(q), cl = strlen(ch);
    char *s = malloc(ql + cl + 2);
    if (!s) return -1;
    // With an empty question the choice follows BOS directly: the tokenizer's own leading space
    // then gives the same " choice" pieces as after a question.
    size_t sl = ql ? ql + 1 + cl : cl;
    memcpy(s, q, ql);
    if (ql) s[ql] = ' ';
    memcpy(s + (ql ? ql + 1 : 0), ch, cl + 1);
    int nq = vm_tokenize(t, q, ql, 1, 0, tok, 512);
    int n = vm_tokenize(t, s, sl, 1, 0, tok, 512);
    free(s);
    if (nq < 1 || n <= nq || n > 512) return -1;
    vm_ctx_reset(c);
    if (vm_ctx_eval(c, tok, n, logits) != 0) return -1;
    int V = vm_tokenizer_n_vocab(t);
    double sum = 0;
    for (int i = nq; i < n; i++) {
        const float *row = logits + (size_t)(i - 1) * V;
        float mx = row[0];
        for (int v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
        double z = 0;
        for (int v = 0; v < V; v++) z += exp((double)(row[v] - mx));
        sum += (double)(row[tok[i]] - mx) - log(z);
    }
    *ll = sum;
    *n_tok = n;
    return 0;
}

// acc: argmax of the summed log-likelihood; acc_norm: per byte of " " + choice (lm-eval);
// acc_pmi: ll(choice | passage) - ll(choice | BOS), how much the passage itself raised the choice
// (domain-conditional PMI, Holtzman et al. 2021), which removes the choices' own fluency.
typedef struct acc_res { double acc, acc_norm, acc_pmi, mean_p; int n, max_tokens; } acc_res;

static int score_set(vm_ctx *c, const vm_tokenizer *t, const vm_dataset *ds, size_t limit, acc_res *r) {
    int32_t *tok = malloc(512 * sizeof *tok);
    float *logits = malloc((size_t)512 * (size_t)vm_tokenizer_n_vocab(t) * sizeof *logits);
    int rc = tok && logits ? 0 : -1, right = 0, right_norm = 0, right_pmi = 0;
    double sum_p = 0;
    *r = (acc_res){ 0 };
    for (size_t i = 0; rc == 0 && i < ds->n && i < limit; i++) {
        const vm_mcq_item *it = &ds->items[i];
        double ll[VM_MCQ_MAX_CHOICES], best = -INFINITY, best_n = -INFINITY, best_p = -INFINITY;
        double mx = -INFINITY, z = 0, ll0 = 0;
        int arg = 0, arg_n = 0, arg_p = 0;
        for (int k = 0; rc == 0 && k < it->n_choices; k++) {
            int n = 0, n0 = 0;
            rc = score_choice(c, t, it->question, it->choices[k], tok, logits, &ll[k], &n);
            // The choice after BOS alone: an empty question is scored as the choice's own text.
            if (rc == 0) rc = score_choice(c, t, "", it->choices[k], tok, logits, &ll0, &n0);
            if (n > r->max_tokens) r->max_tokens = n;
            double ln = ll[k] / (double)(strlen(it->choices[k]) + 1);   // per byte of " " + choice
            if (ll[k] > best) { best = ll[k]; arg = k; }
            if (ln > best_n) { best_n = ln; arg_n = k; }
            if (ll[k] - ll0 > best_p) { best_p = ll[k] - ll0; arg_p = k; }
            if (ll[k] > mx) mx = ll[k];
        }
        if (rc) break;
        for (int k = 0; k < it->n_choices; k++) z += exp(ll[k] - mx);
        sum_p += exp(ll[it->answer] - mx) / z;
        right += arg == it->answer;
        right_norm += arg_n == it->answer;
        right_pmi += arg_p == it->answer;
        r->n++;
    }
    if (r->n) {
        r->acc = (double)right / r->n;
        r->acc_norm = (double)right_norm / r->n;
        r->acc_pmi = (double)right_pmi / r->n;
        r->mean_p = sum_p / r->n;
    }
    free(tok);
    free(logits);
    return rc;
}

// Longest prompt (BOS + question + " " + choice) of the first `limit` items, in tokens.
static int max_prompt_tokens(const vm_tokenizer *t, const vm_dataset *ds, size_t limit) {
    int mx = 0;
    int32_t *tok = malloc(1024 * sizeof *tok);
    char *s = malloc(VM_MCQ_MAX_RECORD);
    if (!tok || !s) { free(tok); free(s); return INT32_MAX; }
    for (size_t i = 0; i < ds->n && i < limit; i++) {
        const vm_mcq_item *it = &ds->items[i];
        for (int k = 0; k < it->n_choices; k++) {
            int len = snprintf(s, VM_MCQ_MAX_RECORD, "%s %s", it->question, it->choices[k]);
            int n = vm_tokenize(t, s, (size_t)len, 1, 0, tok, 1024);
            if (n < 0 || n > 1024) n = INT32_MAX;
            if (n > mx) mx = n;
        }
    }
    free(tok);
    free(s);
    return mx;
}

int main(void) {
    vm_dataset ds[N_SETS];
    memset(ds, 0, sizeof ds);
    vm_dataset_opts o;
    vm_dataset_opts_default(&o);
    o.format = VM_MCQ_FORMAT_JSONL;
    int all_loaded = 1;
    for (int i = 0; i < N_SETS; i++) {
        char path[256];
        snprintf(path, sizeof path, CLOZE_DIR "%s.jsonl", SETS[i].file);
        int rc = vm_dataset_load(&ds[i], path, &o);
        CHECK(rc == 0, "load %s: %s", path, vm_errmsg());
        if (rc) { all_loaded = 0; continue; }
        check_shape(&SETS[i], &ds[i]);
    }
    if (all_loaded) check_disjoint(ds);

    // Provenance: in-distribution (and Shakespeare) text occurs verbatim in its source file; no OOD
    // question or choice occurs in TinyStories.
    size_t ts_n = 0, sh_n = 0;
    char *ts = load_text("tinystories-valid.txt", &ts_n), *sh = load_text("tinyshakespeare.txt", &sh_n);
    CHECK(ts && sh, "read shared text: %s", vm_errmsg());
    for (int i = 0; ts && sh && i < N_SETS; i++) {
        if (!ds[i].n) continue;
        if (SETS[i].in_dist) {
            size_t bad = count_text(&ds[i], ts, ts_n, 1, "provenance");
            CHECK(bad == 0, "%s: %zu items with text not in tinystories-valid.txt", SETS[i].file, bad);
        } else {
            size_t bad = count_text(&ds[i], ts, ts_n, 0, "ood");
            CHECK(bad == 0, "%s: %zu items with text from TinyStories", SETS[i].file, bad);
            if (SETS[i].source) {
                bad = count_text(&ds[i], sh, sh_n, 1, "provenance");
                CHECK(bad == 0, "%s: %zu items with text not in %s", SETS[i].file, bad, SETS[i].source);
            }
        }
    }
    free(ts);
    free(sh);

    // The real model: every prompt fits, and it does the task.
    char dir[] = "/tmp/vmoer_cloze_XXXXXX", gguf[300] = "", model[256], tok[256];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(gguf, sizeof gguf, "%s/stories260K.gguf", dir);
    snprintf(model, sizeof model, "%s/models/stories260K.bin", test_shared_dir());
    snprintf(tok, sizeof tok, "%s/models/tok512.bin", test_shared_dir());
    // One thread: a 260K-parameter model gives a thread too little work per step, and on a busy
    // machine OpenMP barriers then cost more than the arithmetic (measured: 8 s vs 110 s).
    omp_set_num_threads(1);
    int conv = vm_convert_llama2c(model, tok, gguf, VM_TYPE_F32, NULL);
    CHECK(conv == 0, "convert: %s", vm_errmsg());
    vm_model *m = conv == 0 ? vm_model_load(gguf) : NULL;
    vm_tokenizer *t = m ? vm_tokenizer_from_gguf(vm_model_gguf(m)) : NULL;
    vm_ctx *c = m ? vm_ctx_init(m, 512, 512) : NULL;
    if (conv == 0) CHECK(m && t && c, "model: %s", vm_errmsg());
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_UNDEFINED__)
    size_t limit = 10, tok_limit = 40;    // exercise the code; the data checks run in the -O2 build
#else
    size_t limit = 60, tok_limit = SIZE_MAX;
#endif
    const char *env = getenv("VMOER_CLOZE_EVAL_N");
    if (env && atol(env) > 0) limit = (size_t)atol(env);
    for (int i = 0; c && t && i < N_SETS; i++) {
        if (!ds[i].n) continue;
        int mt = max_prompt_tokens(t, &ds[i], tok_limit);
        CHECK(mt <= MAX_PROMPT_TOKENS, "%s: a prompt of %d tokens", SETS[i].file, mt);
        if (!strcmp(SETS[i].file, "train")) {   // not scored: training data
            printf("%-20s max prompt %d tokens\n", SETS[i].file, mt);
            continue;
        }
        acc_res r;
        int rc = score_set(c, t, &ds[i], limit, &r);
        CHECK(rc == 0, "%s: scoring failed: %s", SETS[i].file, vm_errmsg());
        printf("%-20s max prompt %d tokens; stories260K on %d items: acc %.3f acc_norm %.3f "
               "acc_pmi %.3f mean p(true) %.3f\n", SETS[i].file, mt, r.n, r.acc, r.acc_norm, r.acc_pmi,
               r.mean_p);
        // The in-distribution task is doable: above chance (0.25), clearly so once the choices' own
        // fluency is taken out. Items and model are fixed, so these are regression bounds, set below
        // the measured first-60 values (acc 0.35 / 0.48, acc_pmi 0.58 / 0.77: data/cloze/README.md).
        if (SETS[i].in_dist && r.n >= 40) {
            CHECK(r.acc >= 0.30, "%s: accuracy %.3f", SETS[i].file, r.acc);
            CHECK(r.acc_pmi >= 0.50, "%s: PMI accuracy %.3f", SETS[i].file, r.acc_pmi);
        }
    }
    vm_ctx_free(c);
    vm_tokenizer_free(t);
    vm_model_free(m);
    if (gguf[0]) unlink(gguf);
    rmdir(dir);
    for (int i = 0; i < N_SETS; i++) vm_dataset_free(&ds[i]);
    return TEST_SUMMARY();
}

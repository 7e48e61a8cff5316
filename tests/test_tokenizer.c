// SentencePiece-style tokenizer: a hand-checked toy vocabulary, llama.cpp's published test
// vectors for real vocabularies (llama-spm, phi-3), llama2.c's tok512 against golden ids from
// tests/reference/tokenizer_tok512.py, pieces/detokenization, bad input and long inputs.
#include "test.h"

#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"
#include "util/err.h"
#include "util/fileio.h"

#define U2581 "\xe2\x96\x81"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Tokenizes into a fresh buffer; returns the count (or -1), ids in *out (caller frees).
// One call suffices: a token covers at least one byte of the escaped text (<= 3n + 3 bytes).
static int tok_all(const vm_tokenizer *t, const char *s, size_t n, int bos, int special, int32_t **out) {
    int cap = (int)(3 * n + 8);
    *out = malloc(sizeof **out * (size_t)cap);
    int cnt = vm_tokenize(t, s, n, bos, special, *out, cap);
    return cnt <= cap ? cnt : -1;
}

static int ids_eq(const vm_tokenizer *t, const char *s, size_t n, int bos, int special, const int32_t *want, int nw) {
    int32_t *got;
    int cnt = tok_all(t, s, n, bos, special, &got);
    int ok = cnt == nw && (nw == 0 || !memcmp(got, want, sizeof *got * (size_t)nw));
    if (!ok) {
        fprintf(stderr, "  text '%.*s': got", (int)(n < 60 ? n : 60), s);
        for (int i = 0; i < cnt && i < 40; i++) fprintf(stderr, " %d", got[i]);
        fprintf(stderr, "  want");
        for (int i = 0; i < nw && i < 40; i++) fprintf(stderr, " %d", want[i]);
        fputc('\n', stderr);
    }
    free(got);
    return ok;
}
#define EXPECT(t, s, bos, sp, ...) do { const int32_t w_[] = {__VA_ARGS__}; \
    CHECK(ids_eq(t, s, strlen(s), bos, sp, w_, (int)(sizeof w_ / sizeof *w_)), "tokens of '%s'", s); } while (0)

// ---- toy vocabulary: every expectation below is worked out by hand ----

enum { T_SP = 259, T_A, T_B, T_C, T_AB, T_BC, T_SPA, T_ABC, T_SEP, T_SPAB, T_SEP2 };
#define BYTE(b) (3 + (b))

static vm_tokenizer *toy(int add_space_prefix) {
    static char bytes[256][7];
    const char *texts[270];
    float scores[270] = {0};
    int32_t types[270];
    texts[0] = "<unk>"; types[0] = VM_TOKEN_TYPE_UNKNOWN;
    texts[1] = "<s>"; types[1] = VM_TOKEN_TYPE_CONTROL;
    texts[2] = "</s>"; types[2] = VM_TOKEN_TYPE_CONTROL;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        texts[3 + b] = bytes[b];
        types[3 + b] = VM_TOKEN_TYPE_BYTE;
    }
    const char *rest[] = {U2581, "a", "b", "c", "ab", "bc", U2581 "a", "abc", "<sep>", U2581 "ab", "<sep><sep>"};
    const float rs[] = {-1, -2, -3, -4, -5, -5, -6, -7, 0, -8, 0};
    for (int i = 0; i < 11; i++) {
        texts[T_SP + i] = rest[i];
        scores[T_SP + i] = rs[i];
        types[T_SP + i] = VM_TOKEN_TYPE_NORMAL;
    }
    types[T_SEP] = types[T_SEP2] = VM_TOKEN_TYPE_USER_DEFINED;
    vm_tok_vocab v = {.kind = VM_TOK_SPM, .n_tokens = 270, .texts = texts, .scores = scores, .types = types,
                      .bos = 1, .eos = 2, .unk = 0, .pad = -1, .add_bos = 1, .add_space_prefix = add_space_prefix};
    return vm_tokenizer_from_vocab(&v);
}

static void test_toy(void) {
    vm_tokenizer *t = toy(1);
    CHECK(t != NULL, "toy vocabulary: %s", vm_errmsg());
    if (!t) return;
    // ab and bc tie at -5: the leftmost (ab) merges first, then abc; bc first would give ▁a|bc
    EXPECT(t, "abc", 0, 0, T_SP, T_ABC);
    EXPECT(t, "bca", 0, 0, T_SP, T_BC, T_A);
    EXPECT(t, "a", 0, 0, T_SPA);
    EXPECT(t, " a", 0, 0, T_SP, T_SPA);            // ▁▁a: ▁▁ is no token, ▁a is
    EXPECT(t, "a b", 0, 0, T_SPA, T_SP, T_B);
    EXPECT(t, "a", 1, 0, 1, T_SPA);
    // byte fallback; invalid UTF-8 splits by lead byte and falls back to bytes
    EXPECT(t, "\xc3\xa9", 0, 0, T_SP, BYTE(0xC3), BYTE(0xA9));
    EXPECT(t, "\xff", 0, 0, T_SP, BYTE(0xFF));
    EXPECT(t, "a\xe2\x96", 0, 0, T_SPA, BYTE(0xE2), BYTE(0x96));
    EXPECT(t, "\xe2 a", 0, 0, T_SP, BYTE(0xE2), BYTE(0xE2), BYTE(0x96), BYTE(0x81), T_A);
    // special tokens: control only with parse_special, user-defined always; the text after a
    // special token gets the space prefix again
    EXPECT(t, "a<s>b", 0, 1, T_SPA, 1, T_SP, T_B);
    EXPECT(t, "a<s>b", 0, 0, T_SPA, BYTE('<'), BYTE('s'), BYTE('>'), T_B);
    EXPECT(t, "a<sep>b", 0, 0, T_SPA, T_SEP, T_SP, T_B);
    EXPECT(t, "<sep><sep><sep>", 0, 0, T_SEP2, T_SEP);   // longest special first
    EXPECT(t, "<s>", 1, 1, 1, 1);
    EXPECT(t, "<unk>", 0, 1, 0);
    // empty text: nothing, or just BOS
    CHECK(vm_tokenize(t, "", 0, 0, 0, NULL, 0) == 0, "empty text");
    int32_t one[4] = {-7, -7, -7, -7};
    CHECK(vm_tokenize(t, "", 0, 0, 0, one, 4) == 0 && one[0] == -7, "empty text into a buffer");
    CHECK(vm_tokenize(t, "", 0, 1, 0, one, 4) == 1 && one[0] == 1, "empty text with BOS");
    // truncated output: full count returned, only max written
    CHECK(vm_tokenize(t, "abc", 3, 0, 0, one, 1) == 2 && one[0] == T_SP && one[1] == -7, "truncated output");
    CHECK(vm_tokenize(t, NULL, 3, 0, 0, one, 1) == -1, "NULL text rejected");
    CHECK(vm_tokenize(t, "a", 1, 0, 0, NULL, 4) == -1, "NULL output rejected");

    // pieces
    char buf[32];
    CHECK(vm_token_to_piece(t, T_SPA, buf, sizeof buf) == 2 && !memcmp(buf, " a", 2), "piece of ▁a");
    CHECK(vm_token_to_piece(t, BYTE('A'), buf, sizeof buf) == 1 && buf[0] == 'A', "piece of <0x41>");
    CHECK(vm_token_to_piece(t, 1, buf, sizeof buf) == 0, "control piece is empty");
    CHECK(vm_token_to_piece_ex(t, 1, buf, sizeof buf, 1) == 3 && !memcmp(buf, "<s>", 3), "control piece on request");
    CHECK(vm_token_to_piece(t, T_SEP, buf, sizeof buf) == 5 && !memcmp(buf, "<sep>", 5), "user-defined piece");
    CHECK(vm_token_to_piece(t, T_SPAB, buf, 2) == 3 && !memcmp(buf, " a", 2), "piece truncated to size");
    CHECK(vm_token_to_piece(t, -1, buf, sizeof buf) == -1 && vm_token_to_piece(t, 270, buf, sizeof buf) == -1,
          "piece of bad id");
    int32_t d[] = {T_SPA, T_SP, T_B, 1, T_SEP};
    CHECK(vm_detokenize(t, d, 5, buf, sizeof buf, 0) == 8 && !strcmp(buf, "a b<sep>"), "detokenize: '%s'", buf);
    CHECK(vm_detokenize(t, d, 5, buf, 4, 0) == 8 && !strcmp(buf, "a b"), "detokenize truncated: '%s'", buf);
    CHECK(vm_detokenize(t, d, 5, buf, sizeof buf, 1) == 11 && !strcmp(buf, "a b<s><sep>"), "detokenize special");

    CHECK(vm_tokenizer_n_vocab(t) == 270 && vm_tokenizer_bos(t) == 1 && vm_tokenizer_eos(t) == 2 &&
          vm_tokenizer_unk(t) == 0 && vm_tokenizer_pad(t) == -1 && vm_tokenizer_add_bos(t), "accessors");
    CHECK(vm_tokenizer_find(t, U2581 "a", 4) == T_SPA && vm_tokenizer_find(t, "zz", 2) == -1, "find");
    CHECK(vm_tokenizer_type(t, 1) == VM_TOKEN_TYPE_CONTROL && vm_tokenizer_score(t, T_C) == -4.0f, "type, score");
    CHECK(!strcmp(vm_tokenizer_text(t, T_SEP), "<sep>") && vm_tokenizer_text(t, 999) == NULL, "text");
    vm_tokenizer_free(t);

    t = toy(0);   // no space prefix
    if (t) {
        EXPECT(t, "abc", 0, 0, T_ABC);
        EXPECT(t, "a<s>a", 0, 1, T_A, 1, T_A);
        int32_t d2[] = {T_SPA, T_A};
        CHECK(vm_detokenize(t, d2, 2, buf, sizeof buf, 0) == 3 && !strcmp(buf, " aa"), "no prefix: keeps space");
        vm_tokenizer_free(t);
    }

    // degenerate vocabularies: duplicates map to the last id, empty texts get a stand-in, bad ids fail
    const char *dup[] = {"x", "", "x"};
    vm_tok_vocab v = {.kind = VM_TOK_SPM, .n_tokens = 3, .texts = dup, .bos = -1, .eos = -1, .unk = -1, .pad = -1};
    t = vm_tokenizer_from_vocab(&v);
    CHECK(t && vm_tokenizer_find(t, "x", 1) == 2 && !strcmp(vm_tokenizer_text(t, 1), "[EMPTY_1]"), "duplicates, empty");
    if (t) {   // no byte tokens and no <unk>: a clean error, no crash
        CHECK(vm_tokenize(t, "y", 1, 1, 0, NULL, 0) == -1, "unencodable byte without <unk>: error");
        vm_tokenizer_free(t);
    }
    v.bos = 3;
    CHECK(vm_tokenizer_from_vocab(&v) == NULL, "bos out of range rejected");
    v.n_tokens = 0;
    CHECK(vm_tokenizer_from_vocab(&v) == NULL, "empty vocabulary rejected");
}

// ---- ggml vocab-test vectors: inputs separated by "\n__ggml_vocab_test__\n", one output line each ----

typedef struct vcase { const char *s; size_t n; int32_t *ids; int nids; } vcase;

static int read_vectors(const char *inp, const char *out, char **raw_inp, char **raw_out, vcase **cases) {
    size_t ni, no;
    *raw_inp = vm_read_file(inp, &ni);
    *raw_out = vm_read_file(out, &no);
    *cases = NULL;
    if (!*raw_inp || !*raw_out) return -1;
    static const char sep[] = "\n__ggml_vocab_test__\n";
    const size_t sl = sizeof sep - 1;
    int n = 0, cap = 0;
    vcase *c = NULL;
    for (size_t pos = 0; pos < ni;) {   // as llama.cpp's test-tokenizer-0 reads them
        const char *nx = memmem(*raw_inp + pos, ni - pos, sep, sl);
        size_t end = nx ? (size_t)(nx - *raw_inp) : ni;
        if (n == cap) c = realloc(c, sizeof *c * (size_t)(cap = cap ? cap * 2 : 64));
        c[n++] = (vcase){*raw_inp + pos, end - pos, NULL, 0};
        pos = nx ? end + sl : ni;
    }
    int k = 0;
    for (char *line = *raw_out, *e; line < *raw_out + no && k <= n; line = e + 1, k++) {
        e = strchr(line, '\n');
        if (!e) e = *raw_out + no;
        *e = 0;
        if (k == n) { k++; break; }
        c[k].ids = malloc(sizeof(int32_t) * (strlen(line) / 2 + 1));
        for (char *p = line, *q;; p = q) {
            long v = strtol(p, &q, 10);
            if (q == p) break;
            c[k].ids[c[k].nids++] = (int32_t)v;
        }
    }
    *cases = c;
    return k == n ? n : -1;
}

static void run_vectors(const vm_tokenizer *t, const char *inp, const char *out, const char *name) {
    char *ri, *ro;
    vcase *c;
    int n = read_vectors(inp, out, &ri, &ro, &c);
    CHECK(n > 0, "%s: reading %s / %s", name, inp, out);
    int bad = 0, bad_rt = 0;
    for (int i = 0; i < n; i++) {
        if (!ids_eq(t, c[i].s, c[i].n, 0, 0, c[i].ids, c[i].nids)) bad++;
        // the pieces concatenate back to the text (valid UTF-8, no special-token texts)
        int32_t *ids;
        int m = tok_all(t, c[i].s, c[i].n, 0, 0, &ids);
        char *back = malloc(c[i].n * 2 + 16);
        int bl = vm_detokenize(t, ids, m, back, (int)c[i].n * 2 + 16, 0);
        if (bl != (int)c[i].n || memcmp(back, c[i].s, c[i].n)) bad_rt++;
        free(back);
        free(ids);
    }
    CHECK(n > 0 && bad == 0, "%s: %d of %d vectors differ", name, bad, n);
    CHECK(n > 0 && bad_rt == 0, "%s: %d of %d do not detokenize back", name, bad_rt, n);
    printf("%s: %d vectors, %d mismatches\n", name, n, bad);
    for (int i = 0; c && i < n; i++) free(c[i].ids);
    free(c);
    free(ri);
    free(ro);
}

static vm_tokenizer *load_vocab(const char *file) {
    char path[512];
    snprintf(path, sizeof path, "%s/tokenizers/%s", test_shared_dir(), file);
    vm_gguf *g = vm_gguf_open(path);
    CHECK(g != NULL, "open %s: %s", path, vm_errmsg());
    if (!g) return NULL;
    vm_tokenizer *t = vm_tokenizer_from_gguf(g);
    CHECK(t != NULL, "tokenizer of %s: %s", path, vm_errmsg());
    vm_gguf_free(g);   // the tokenizer keeps its own copy of the vocabulary
    return t;
}

static void test_gguf_vectors(void) {
    const char *names[] = {"ggml-vocab-llama-spm.gguf", "ggml-vocab-phi-3.gguf"};
    for (int k = 0; k < 2; k++) {
        vm_tokenizer *t = load_vocab(names[k]);
        if (!t) continue;
        char inp[512], out[512];
        snprintf(inp, sizeof inp, "%s/tokenizers/%s.inp", test_shared_dir(), names[k]);
        snprintf(out, sizeof out, "%s/tokenizers/%s.out", test_shared_dir(), names[k]);
        run_vectors(t, inp, out, names[k]);
        CHECK(vm_tokenizer_kind(t) == VM_TOK_SPM && vm_tokenizer_add_bos(t) && vm_tokenizer_bos(t) == 1, "%s: header", names[k]);
        if (k == 0) {
            EXPECT(t, "Hello world", 1, 0, 1, 15043, 3186);
            EXPECT(t, "<s>Hello", 0, 1, 1, 15043);             // prefix again after a special token
            EXPECT(t, "Hello</s>", 0, 1, 15043, 2);
            char piece[16];
            CHECK(vm_token_to_piece(t, 15043, piece, sizeof piece) == 6 && !memcmp(piece, " Hello", 6), "piece 15043");
            CHECK(vm_token_to_piece(t, 13, piece, sizeof piece) == 1 && piece[0] == '\n', "piece <0x0A>");
        } else {
            CHECK(vm_tokenizer_eos(t) == 32000 && vm_tokenizer_pad(t) == 32000, "phi-3 eos/pad ids");
            // phi-3 special tokens swallow the whitespace after them (llama.cpp's RSTRIP)
            EXPECT(t, "<|user|>\nHello<|end|>", 0, 1, 32010, 15043, 32007);
            // </s> is USER_DEFINED in this file: split out even without parse_special
            EXPECT(t, "Hi</s>", 0, 0, 6324, 2);
        }
        vm_tokenizer_free(t);
    }
    // a BPE vocabulary dispatches to the byte-level BPE tokenizer (tested in depth in test_bpe.c)
    char path[512];
    snprintf(path, sizeof path, "%s/tokenizers/ggml-vocab-gpt-2.gguf", test_shared_dir());
    vm_gguf *g = vm_gguf_open(path);
    CHECK(g != NULL, "open gpt-2 vocab: %s", vm_errmsg());
    if (g) {
        vm_tokenizer *t = vm_tokenizer_from_gguf(g);
        CHECK(t && vm_tokenizer_kind(t) == VM_TOK_BPE, "gpt2 loads as BPE: %s", vm_errmsg());
        if (t) vm_tokenizer_free(t);
        vm_gguf_free(g);
    }
}

// ---- llama2.c tok512.bin, converted in memory the way the GGUF converter does ----

static void test_tok512(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/models/tok512.bin", test_shared_dir());
    size_t n;
    char *raw = vm_read_file(path, &n);
    CHECK(raw != NULL, "read %s", path);
    if (!raw) return;
    enum { V = 512 };
    char *texts[V];
    float scores[V];
    int32_t types[V];
    size_t off = 4;
    int ok = 1;
    for (int i = 0; i < V && ok; i++) {
        int32_t len;
        if (off + 8 > n) { ok = 0; break; }
        memcpy(&scores[i], raw + off, 4);
        memcpy(&len, raw + off + 4, 4);
        off += 8;
        if (len < 0 || off + (size_t)len > n) { ok = 0; break; }
        // spaces -> U+2581 (at most 3 bytes each)
        char *s = texts[i] = malloc((size_t)len * 3 + 1), *p = s;
        for (int j = 0; j < len; j++) {
            if (raw[off + j] == ' ') { memcpy(p, U2581, 3); p += 3; }
            else *p++ = raw[off + j];
        }
        *p = 0;
        off += (size_t)len;
        types[i] = i == 0 ? VM_TOKEN_TYPE_UNKNOWN : i <= 2 ? VM_TOKEN_TYPE_CONTROL
                 : i < 259 ? VM_TOKEN_TYPE_BYTE : VM_TOKEN_TYPE_NORMAL;
    }
    CHECK(ok, "parse tok512.bin");
    if (!ok) { free(raw); return; }
    strcpy(texts[1], "<s>");
    strcpy(texts[2], "</s>");
    vm_tok_vocab v = {.kind = VM_TOK_SPM, .n_tokens = V, .texts = (const char *const *)texts, .scores = scores,
                      .types = types, .bos = 1, .eos = 2, .unk = 0, .pad = -1, .add_bos = 1, .add_space_prefix = 1};
    vm_tokenizer *t = vm_tokenizer_from_vocab(&v);
    CHECK(t != NULL, "tok512 vocabulary: %s", vm_errmsg());
    if (t) {
        run_vectors(t, "tests/golden/tokenizer/tok512.inp", "tests/golden/tokenizer/tok512.out", "tok512");
        EXPECT(t, "Once upon a time", 1, 0, 1, 403, 407, 261, 378);
        vm_tokenizer_free(t);
    }
    for (int i = 0; i < V; i++) free(texts[i]);
    free(raw);
}

// ---- long inputs: no quadratic blowup, no crash on garbage ----

static void time_one(const vm_tokenizer *t, const char *what, const char *s, size_t n, int check_roundtrip) {
    double t0 = now_s();
    int32_t *ids;
    int m = tok_all(t, s, n, 1, 1, &ids);
    double dt = now_s() - t0;
    printf("%-28s %8zu bytes -> %7d tokens in %.3f s\n", what, n, m, dt);
    CHECK(m > 0, "%s: tokenize failed: %s", what, vm_errmsg());
    // Times are printed for information only: tests are never timed (benchmarks measure speed).
    if (check_roundtrip && m > 0) {
        char *back = malloc(n + 16);
        int bl = vm_detokenize(t, ids + 1, m - 1, back, (int)n + 16, 0);
        CHECK(bl == (int)n && !memcmp(back, s, n), "%s: detokenizes back", what);
        free(back);
    }
    free(ids);
}

static void test_long(void) {
    vm_tokenizer *t = load_vocab("ggml-vocab-llama-spm.gguf");
    if (!t) return;
    char path[512];
    snprintf(path, sizeof path, "%s/data/text/tinyshakespeare.txt", test_shared_dir());
    size_t n;
    char *text = vm_read_file(path, &n);
    CHECK(text != NULL, "read %s", path);
    if (text) time_one(t, "tinyshakespeare", text, n, 1);
    free(text);
    const size_t M = 1 << 20;
    char *s = malloc(M);
    memset(s, 'a', M);
    time_one(t, "1 MB of 'a'", s, M, 1);
    memset(s, ' ', M);
    time_one(t, "1 MB of spaces", s, M, 1);
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < M; i++) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; s[i] = (char)(x >> 24); }
    time_one(t, "1 MB of random bytes", s, M, 0);
    free(s);
    vm_tokenizer_free(t);
}


// ---- metadata handling of vm_tokenizer_from_gguf, on small files made with the GGUF writer ----

typedef struct wopt { const char *model; int tokens, bad_scores, no_prefix, bos; } wopt;

static vm_tokenizer *from_written(const wopt *o, const char *path) {
    vm_gguf_writer *w = vm_gguf_writer_init();
    if (!w) return NULL;
    const char *toks[] = {"<unk>", "<s>", "</s>", U2581 "a", "a"};
    const float sc[] = {0, 0, 0, -1, -2};
    const int32_t ty[] = {2, 3, 3, 1, 1};
    if (o->model) vm_gguf_set_str(w, "tokenizer.ggml.model", o->model);
    if (o->tokens) vm_gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, 5);
    vm_gguf_set_arr(w, "tokenizer.ggml.scores", VM_GGUF_TYPE_FLOAT32, sc, o->bad_scores ? 4 : 5);
    vm_gguf_set_arr(w, "tokenizer.ggml.token_type", VM_GGUF_TYPE_INT32, ty, 5);
    if (o->no_prefix) vm_gguf_set_bool(w, "tokenizer.ggml.add_space_prefix", 0);
    if (o->bos) vm_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)o->bos);
    vm_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", 0);
    int rc = vm_gguf_write(w, path);
    vm_gguf_writer_free(w);
    CHECK(rc == 0, "write %s: %s", path, vm_errmsg());
    vm_gguf *g = rc ? NULL : vm_gguf_open(path);
    CHECK(rc || g, "reopen %s: %s", path, vm_errmsg());
    vm_err_clear();
    vm_tokenizer *t = g ? vm_tokenizer_from_gguf(g) : NULL;
    vm_gguf_free(g);
    remove(path);
    return t;
}

static void test_gguf_keys(void) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/vmoer-test-tok-%d.gguf", (int)getpid());
    vm_tokenizer *t = from_written(&(wopt){"llama", 1, 0, 1, 7}, path);
    CHECK(t != NULL, "small vocabulary: %s", vm_errmsg());
    if (t) {
        EXPECT(t, "a", 1, 0, 4);   // no space prefix, add_bos_token false
        CHECK(vm_tokenizer_bos(t) == 1 && !vm_tokenizer_add_bos(t) && !vm_tokenizer_add_space_prefix(t),
              "bos id out of range falls back to 1; flags read");
        vm_tokenizer_free(t);
    }
    t = from_written(&(wopt){"llama", 1, 0, 0, 0}, path);
    if (t) { EXPECT(t, "a", 0, 0, 3); vm_tokenizer_free(t); }   // default: space prefix
    CHECK(from_written(&(wopt){"llama", 0, 0, 0, 0}, path) == NULL && strstr(vm_errmsg(), "tokenizer.ggml.tokens"),
          "missing tokens: %s", vm_errmsg());
    CHECK(from_written(&(wopt){"t5", 1, 0, 0, 0}, path) == NULL && strstr(vm_errmsg(), "'t5'"),
          "unknown model: %s", vm_errmsg());
    CHECK(from_written(&(wopt){NULL, 1, 0, 0, 0}, path) == NULL && strstr(vm_errmsg(), "tokenizer.ggml.model"),
          "no model key: %s", vm_errmsg());
    CHECK(from_written(&(wopt){"llama", 1, 1, 0, 0}, path) == NULL && strstr(vm_errmsg(), "scores"),
          "short scores: %s", vm_errmsg());
}

// ---- random strings full of special-token texts, broken UTF-8 and spaces: no crash, ids valid ----

static void test_random(void) {
    vm_tokenizer *t = load_vocab("ggml-vocab-phi-3.gguf");
    if (!t) return;
    static const char *parts[] = {"<s>", "</s>", "<|end|>", "<|user|>", "<unk>", " ", "  ", "\n", "\t", "a",
                                  "Hello", "\xe2", "\x96", "\x81", "\xc3\xa9", "\xf0\x9f", "<|", "|>", "<"};
    const int np = (int)(sizeof parts / sizeof *parts);
    uint64_t x = 0x9E3779B97F4A7C15ull;
    int bad = 0;
    char s[512];
    int32_t ids[2048];
    for (int it = 0; it < 3000; it++) {
        size_t n = 0;
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        int k = (int)(x % 24);
        for (int j = 0; j < k; j++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            const char *p = parts[x % (uint64_t)np];
            memcpy(s + n, p, strlen(p));
            n += strlen(p);
        }
        for (int sp = 0; sp < 2; sp++) {
            int m = vm_tokenize(t, s, n, it & 1, sp, ids, 2048);
            if (m < 0 || m > 2048) { bad++; continue; }
            for (int i = 0; i < m; i++) if (ids[i] < 0 || ids[i] >= vm_tokenizer_n_vocab(t)) { bad++; break; }
        }
    }
    CHECK(bad == 0, "random strings: %d bad results", bad);
    vm_tokenizer_free(t);
}

int main(void) {
    test_toy();
    test_gguf_vectors();
    test_gguf_keys();
    test_random();
    test_tok512();
    test_long();
    return TEST_SUMMARY();
}

// Byte-level BPE: GPT-2's byte map, a hand-checked toy vocabulary, llama.cpp's published test
// vectors for every BPE vocabulary in ../shared/tokenizers (expected ids come from the original
// Hugging Face tokenizers), Hugging Face tokenizer.json import (qwen2 vectors through Qwen3's
// tokenizer.json, OLMo's against the gpt-neox GGUF, DeepSeek-V3 round trips), GGUF key export,
// unknown pre-tokenizers, broken UTF-8 and long inputs.
#include "test.h"

#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"
#include "util/err.h"
#include "util/fileio.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Tokenizes into a fresh buffer (a token covers at least one byte); ids in *out (caller frees).
static int tok_all(const vm_tokenizer *t, const char *s, size_t n, int bos, int special, int32_t **out) {
    int cap = (int)(n + 8);
    *out = malloc(sizeof **out * (size_t)cap);
    int cnt = vm_tokenize(t, s, n, bos, special, *out, cap);
    return cnt <= cap ? cnt : -1;
}

static void print_ids(const char *what, const int32_t *v, int n) {
    fprintf(stderr, " %s", what);
    for (int i = 0; i < n && i < 48; i++) fprintf(stderr, " %d", v[i]);
    if (n > 48) fprintf(stderr, " ...(%d)", n);
}

static int ids_eq(const vm_tokenizer *t, const char *s, size_t n, int bos, int special, const int32_t *want, int nw) {
    int32_t *got;
    int cnt = tok_all(t, s, n, bos, special, &got);
    int ok = cnt == nw && (nw == 0 || !memcmp(got, want, sizeof *got * (size_t)nw));
    if (!ok) {
        fprintf(stderr, "  input '%.*s' (%zu bytes):", (int)(n < 80 ? n : 80), s, n);
        print_ids("got", got, cnt);
        print_ids(" want", want, nw);
        if (cnt < 0) fprintf(stderr, " (%s)", vm_errmsg());
        fputc('\n', stderr);
    }
    free(got);
    return ok;
}
#define EXPECT(t, s, bos, sp, ...) do { const int32_t w_[] = {__VA_ARGS__}; \
    CHECK(ids_eq(t, s, strlen(s), bos, sp, w_, (int)(sizeof w_ / sizeof *w_)), "tokens of '%s'", s); } while (0)

static int roundtrip(const vm_tokenizer *t, const char *s, size_t n) {
    int32_t *ids;
    int m = tok_all(t, s, n, 0, 0, &ids);
    char *back = malloc(n + 16);
    int bl = m < 0 ? -1 : vm_detokenize(t, ids, m, back, (int)n + 16, 0);
    int ok = bl == (int)n && !memcmp(back, s, n);
    if (!ok) fprintf(stderr, "  round trip of '%.*s': got '%.*s'\n", (int)(n < 80 ? n : 80), s, bl > 0 ? (bl < 80 ? bl : 80) : 0, back);
    free(back);
    free(ids);
    return ok;
}

// ---- GPT-2's byte map ----

int vm_bpe_byte_encode(uint8_t b, char out[2]);   // src/tokenizer/bpe.c (private)
int vm_bpe_byte_decode(const char *s, size_t n, size_t *adv);

static void test_byte_map(void) {
    char e[2];
    CHECK(vm_bpe_byte_encode(' ', e) == 2 && !memcmp(e, "\xc4\xa0", 2), "space -> U+0120 (Ġ)");
    CHECK(vm_bpe_byte_encode('\n', e) == 2 && !memcmp(e, "\xc4\x8a", 2), "newline -> U+010A (Ċ)");
    CHECK(vm_bpe_byte_encode('A', e) == 1 && e[0] == 'A', "A -> A");
    CHECK(vm_bpe_byte_encode(0xAD, e) == 2 && !memcmp(e, "\xc5\x83", 2), "0xAD -> U+0143");
    CHECK(vm_bpe_byte_encode(0xE9, e) == 2 && !memcmp(e, "\xc3\xa9", 2), "0xE9 -> U+00E9");
    int bad = 0, seen[512] = {0};
    for (int b = 0; b < 256; b++) {
        int n = vm_bpe_byte_encode((uint8_t)b, e);
        size_t adv;
        if (vm_bpe_byte_decode(e, (size_t)n, &adv) != b || adv != (size_t)n) bad++;
        unsigned cp = n == 1 ? (uint8_t)e[0] : (((uint8_t)e[0] & 0x1Fu) << 6) | ((uint8_t)e[1] & 0x3Fu);
        if (cp >= 512 || seen[cp]++) bad++;
    }
    CHECK(bad == 0, "256 bytes map to distinct characters and back (%d bad)", bad);
    size_t adv;
    CHECK(vm_bpe_byte_decode("\xe4\xb8\x80", 3, &adv) == -1 && adv == 3, "U+4E00 is no stand-in");
    CHECK(vm_bpe_byte_decode(" ", 1, &adv) == -1, "a raw space is no stand-in");
}

// ---- toy vocabulary, worked out by hand ----

static void test_toy(void) {
    // byte stand-ins for a b c, space (Ġ) and the merges below; <sep> is user-defined
    const char *texts[] = {"a", "b", "c", "\xc4\xa0", "ab", "bc", "\xc4\xa0" "a", "abc", "<sep>", "<|eos|>", "\xc4\xa0" "ab"};
    const int32_t types[] = {1, 1, 1, 1, 1, 1, 1, 1, 4, 3, 1};
    // ranks: "b c" (0) beats "a b" (1): "abc" -> a|bc, then "a bc" is no merge -> a bc
    const char *merges[] = {"b c", "a b", "\xc4\xa0 a", "\xc4\xa0" "a b", "ab c"};
    vm_tok_vocab v = {.kind = VM_TOK_BPE, .n_tokens = 11, .texts = texts, .types = types, .bos = 9, .eos = 9,
                      .unk = -1, .pad = -1, .pre = "gpt-2", .merges = merges, .n_merges = 5};
    vm_tokenizer *t = vm_tokenizer_from_vocab(&v);
    CHECK(t != NULL, "toy BPE: %s", vm_errmsg());
    if (!t) return;
    EXPECT(t, "abc", 0, 0, 0, 5);            // bc first (rank 0); "a bc" is not a merge
    EXPECT(t, "ab", 0, 0, 4);
    EXPECT(t, " ab", 0, 0, 3, 4);            // a b (1) before Ġ a (2); "Ġ ab" is no merge
    EXPECT(t, " a", 0, 0, 6);
    EXPECT(t, " abc", 0, 0, 6, 5);           // b c (0) first, then Ġ a (2); Ġa bc is no merge
    EXPECT(t, "a b", 0, 0, 0, 3, 1);         // the GPT-2 regex keeps " b" apart from "a"
    EXPECT(t, "a<sep>b", 0, 0, 0, 8, 1);     // user-defined: split out always
    EXPECT(t, "a<|eos|>", 0, 1, 0, 9);       // control: with parse_special
    EXPECT(t, "a<|eos|>", 1, 1, 0, 9);       // add_bos is off for gpt-2 (llama.cpp default)
    EXPECT(t, "d", 0, 0);                    // no token and no <unk>: dropped, as Hugging Face
    CHECK(vm_tokenizer_kind(t) == VM_TOK_BPE && !vm_tokenizer_add_bos(t) && !vm_tokenizer_add_space_prefix(t), "toy flags");
    char buf[32];
    CHECK(vm_token_to_piece(t, 10, buf, sizeof buf) == 3 && !memcmp(buf, " ab", 3), "piece of Ġab");
    CHECK(vm_token_to_piece(t, 8, buf, sizeof buf) == 5 && !memcmp(buf, "<sep>", 5), "user-defined piece is raw");
    CHECK(vm_token_to_piece(t, 9, buf, sizeof buf) == 0, "control piece is empty");
    const int32_t d[] = {10, 3, 0, 8};   // Ġab Ġ a <sep>
    CHECK(vm_detokenize(t, d, 4, buf, sizeof buf, 0) == 10 && !strcmp(buf, " ab a<sep>"), "detokenize: '%s'", buf);
    vm_tokenizer_free(t);

    // ignore_merges: a piece that is a whole token stays one even when no merge path leads there
    const char *m2[] = {"b c"};
    v.merges = m2;
    v.n_merges = 1;
    t = vm_tokenizer_from_vocab(&v);
    if (t) { EXPECT(t, "abc", 0, 0, 0, 5); vm_tokenizer_free(t); }
    v.ignore_merges = 1;
    t = vm_tokenizer_from_vocab(&v);
    if (t) { EXPECT(t, "abc", 0, 0, 7); vm_tokenizer_free(t); }
    v.ignore_merges = 0;
    v.pre = "llama-bpe";   // the family turns it on (llama.cpp)
    t = vm_tokenizer_from_vocab(&v);
    if (t) { EXPECT(t, "abc", 1, 0, 7); vm_tokenizer_free(t); }
    v.add_bos = 1;         // from a vocabulary in memory, add_bos is the caller's
    t = vm_tokenizer_from_vocab(&v);
    if (t) { EXPECT(t, "abc", 1, 0, 9, 7); vm_tokenizer_free(t); }
    v.add_bos = 0;

    v.pre = "no-such-family";
    vm_err_clear();
    CHECK(vm_tokenizer_from_vocab(&v) == NULL && strstr(vm_errmsg(), "'no-such-family'"),
          "unknown pre-tokenizer named: %s", vm_errmsg());
    v.pre = NULL;   // absent = llama.cpp's "default"
    t = vm_tokenizer_from_vocab(&v);
    CHECK(t != NULL, "default pre-tokenizer: %s", vm_errmsg());
    vm_tokenizer_free(t);
    const char *bad_merge[] = {"abc"};
    v.merges = bad_merge;
    CHECK(vm_tokenizer_from_vocab(&v) == NULL && strstr(vm_errmsg(), "merge 0"), "merge without a space: %s", vm_errmsg());
}

// ---- ggml vocab-test vectors ----

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
    for (size_t pos = 0; pos < ni;) {
        const char *nx = memmem(*raw_inp + pos, ni - pos, sep, sl);
        size_t end = nx ? (size_t)(nx - *raw_inp) : ni;
        if (n == cap) c = realloc(c, sizeof *c * (size_t)(cap = cap ? cap * 2 : 64));
        c[n++] = (vcase){*raw_inp + pos, end - pos, NULL, 0};
        pos = nx ? end + sl : ni;
    }
    int k = 0;
    for (char *line = *raw_out, *e; line < *raw_out + no && k < n; line = e + 1, k++) {
        e = strchr(line, '\n');
        if (!e) e = *raw_out + no;
        *e = 0;
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

// Runs the vectors of `vec` (a ggml-vocab-<name>.gguf basename) through t; returns mismatches.
static int run_vectors(const vm_tokenizer *t, const char *vec, const char *label) {
    char inp[512], out[512], *ri, *ro;
    snprintf(inp, sizeof inp, "%s/tokenizers/%s.inp", test_shared_dir(), vec);
    snprintf(out, sizeof out, "%s/tokenizers/%s.out", test_shared_dir(), vec);
    vcase *c;
    int n = read_vectors(inp, out, &ri, &ro, &c);
    CHECK(n > 0, "%s: reading %s / %s", label, inp, out);
    int bad = 0, bad_rt = 0;
    for (int i = 0; i < n; i++) {
        if (!ids_eq(t, c[i].s, c[i].n, 0, 0, c[i].ids, c[i].nids)) bad++;
        if (!roundtrip(t, c[i].s, c[i].n)) bad_rt++;
    }
    CHECK(n > 0 && bad == 0, "%s: %d of %d vectors differ", label, bad, n);
    CHECK(n > 0 && bad_rt == 0, "%s: %d of %d do not detokenize back", label, bad_rt, n);
    printf("%-32s %d vectors, %d mismatches, %d round-trip failures\n", label, n, bad, bad_rt);
    for (int i = 0; c && i < n; i++) free(c[i].ids);
    free(c);
    free(ri);
    free(ro);
    return bad;
}

static vm_tokenizer *load_vocab(const char *file) {
    char path[512];
    snprintf(path, sizeof path, "%s/tokenizers/%s", test_shared_dir(), file);
    vm_gguf *g = vm_gguf_open(path);
    CHECK(g != NULL, "open %s: %s", path, vm_errmsg());
    if (!g) return NULL;
    vm_tokenizer *t = vm_tokenizer_from_gguf(g);
    CHECK(t != NULL, "tokenizer of %s: %s", path, vm_errmsg());
    vm_gguf_free(g);
    return t;
}

static void test_gguf_vectors(void) {
    const char *names[] = {"gpt-2", "mpt", "falcon", "starcoder", "refact", "deepseek-llm", "deepseek-coder"};
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
        char file[128];
        snprintf(file, sizeof file, "ggml-vocab-%s.gguf", names[k]);
        double t0 = now_s();
        vm_tokenizer *t = load_vocab(file);
        double dt = now_s() - t0;
        if (!t) continue;
        printf("%-32s loaded in %.3f s (%d tokens)\n", file, dt, vm_tokenizer_n_vocab(t));
        CHECK(vm_tokenizer_kind(t) == VM_TOK_BPE, "%s is BPE", file);
        run_vectors(t, file, file);
        vm_tokenizer_free(t);
    }
    // gpt-neox has no vectors of its own; its vocabulary and merges are MPT's. Its file has no
    // tokenizer.ggml.pre, which means llama.cpp's "default" pre-tokenizer (not GPT-NeoX's own
    // GPT-2 regex: 13 of the MPT vectors differ then, as in llama.cpp). With pre = "olmo" (what
    // convert_hf_to_gguf writes for OLMo/OLMoE) every MPT vector passes.
    vm_tokenizer *t = load_vocab("ggml-vocab-gpt-neox.gguf");
    if (t) {
        EXPECT(t, "3333", 0, 0, 20084, 20);   // default: digit runs, then runs of three digits
        vm_tokenizer_free(t);
    }
    char src[512], dst[128];
    snprintf(src, sizeof src, "%s/tokenizers/ggml-vocab-gpt-neox.gguf", test_shared_dir());
    snprintf(dst, sizeof dst, "/tmp/vmoer-test-bpe-neox-%d.gguf", (int)getpid());
    vm_gguf *g = vm_gguf_open(src);
    vm_gguf_writer *w = vm_gguf_writer_init();
    if (g && w) {
        vm_gguf_copy_kv(w, g);
        vm_gguf_set_str(w, "tokenizer.ggml.pre", "olmo");
        CHECK(vm_gguf_write(w, dst) == 0, "write %s: %s", dst, vm_errmsg());
        vm_gguf *g2 = vm_gguf_open(dst);
        t = g2 ? vm_tokenizer_from_gguf(g2) : NULL;
        CHECK(t != NULL, "gpt-neox with pre olmo: %s", vm_errmsg());
        if (t) run_vectors(t, "ggml-vocab-mpt.gguf", "gpt-neox (pre olmo) / mpt vectors");
        vm_tokenizer_free(t);
        // an unknown name fails, naming it
        vm_gguf_set_str(w, "tokenizer.ggml.pre", "frobnicator-7");
        CHECK(vm_gguf_write(w, dst) == 0, "write %s: %s", dst, vm_errmsg());
        vm_gguf_free(g2);
        g2 = vm_gguf_open(dst);
        vm_err_clear();
        CHECK(g2 && vm_tokenizer_from_gguf(g2) == NULL && strstr(vm_errmsg(), "'frobnicator-7'") &&
              strstr(vm_errmsg(), "pre-tokenizer"), "unknown pre-tokenizer: %s", vm_errmsg());
        vm_gguf_free(g2);
        remove(dst);
    }
    vm_gguf_writer_free(w);
    vm_gguf_free(g);
    // header facts
    t = load_vocab("ggml-vocab-deepseek-llm.gguf");
    if (t) {
        CHECK(vm_tokenizer_bos(t) == 100000 && vm_tokenizer_eos(t) == 100001 && vm_tokenizer_add_bos(t), "deepseek-llm bos/eos/add_bos");
        EXPECT(t, "Hello world", 1, 0, 100000, 17464, 1843);
        vm_tokenizer_free(t);
    }
    t = load_vocab("ggml-vocab-gpt-2.gguf");
    if (t) {
        CHECK(vm_tokenizer_bos(t) == 50256 && !vm_tokenizer_add_bos(t), "gpt-2 bos, no add_bos");
        EXPECT(t, "Hello world", 1, 0, 15496, 995);
        EXPECT(t, "Hello<|endoftext|>", 0, 1, 15496, 50256);
        EXPECT(t, "<|endoftext|>", 0, 0, 27, 91, 437, 1659, 5239, 91, 29);   // plain text without parse_special
        char p[16];
        CHECK(vm_token_to_piece(t, 995, p, sizeof p) == 6 && !memcmp(p, " world", 6), "piece 995");
        vm_tokenizer_free(t);
    }
}

// ---- Hugging Face tokenizer.json ----

static vm_tokenizer *load_json(const char *file, double *dt) {
    char path[512];
    snprintf(path, sizeof path, "%s/tokenizers/%s", test_shared_dir(), file);
    double t0 = now_s();
    vm_tokenizer *t = vm_tokenizer_from_hf_json(path);
    *dt = now_s() - t0;
    CHECK(t != NULL, "%s: %s", path, vm_errmsg());
    if (t) printf("%-32s loaded in %.3f s (%d tokens)\n", file, *dt, vm_tokenizer_n_vocab(t));
    return t;
}

static const char *const known[] = {
    "Hello world", " Hello World!", "I'm sure it's 3.14159 (roughly) -- isn't it?\n\n\tcode();",
    "\xe6\x88\x91\xe6\x83\xb3\xe5\x9c\xa8" "apple\xe5\xb7\xa5\xe4\xbd\x9c" "1314151\xe5\xa4\xa9\xef\xbd\x9e",
    "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 \xf0\x9f\xa6\x99 caf\xc3\xa9   \r\n  end  ",
    // broken UTF-8 (bytes C0, C1, F5..FF have no stand-in token in these vocabularies)
    "\x80\xbf broken \xc3 utf-8 \xed\xa0\x80 \xf0\x9f\xa6",
};

static void test_hf_json(void) {
    double dt;
    // Qwen3's tokenizer.json carries the Qwen2 vocabulary: llama.cpp's qwen2 vectors apply
    // read once: the tokenizer and the GGUF export below share it (a 151k-token JSON)
    char qpath[512];
    snprintf(qpath, sizeof qpath, "%s/tokenizers/qwen3.tokenizer.json", test_shared_dir());
    vm_hf_vocab h;
    double t0 = now_s();
    int hr = vm_hf_vocab_read(qpath, &h);
    vm_tokenizer *q = hr ? NULL : vm_tokenizer_from_vocab(&h.v);
    dt = now_s() - t0;
    CHECK(q != NULL, "%s: %s", qpath, vm_errmsg());
    if (q) printf("%-32s loaded in %.3f s (%d tokens)\n", "qwen3.tokenizer.json", dt, vm_tokenizer_n_vocab(q));
    if (q) {
        printf("qwen3 load took %.2f s (information only; tests are never timed)\n", dt);
        run_vectors(q, "ggml-vocab-qwen2.gguf", "qwen3.tokenizer.json / qwen2 vectors");
        CHECK(vm_tokenizer_find(q, "<|im_start|>", 12) == 151644 && vm_tokenizer_type(q, 151644) == VM_TOKEN_TYPE_CONTROL,
              "qwen <|im_start|> is CONTROL 151644");
        CHECK(vm_tokenizer_type(q, 151668) == VM_TOKEN_TYPE_USER_DEFINED, "qwen </think> is USER_DEFINED");
        CHECK(vm_tokenizer_eos(q) == 151643, "qwen eos <|endoftext|>: %d", vm_tokenizer_eos(q));
        EXPECT(q, "<|im_start|>user\nHi<|im_end|>", 0, 1, 151644, 872, 198, 13048, 151645);
        EXPECT(q, "a</think>b", 0, 0, 64, 151668, 65);   // user-defined: split out without parse_special
        for (size_t i = 0; i < sizeof known / sizeof *known; i++)
            CHECK(roundtrip(q, known[i], strlen(known[i])), "qwen round trip %zu", i);

        // the same vocabulary through GGUF keys: identical ids
        char dst[128];
        snprintf(dst, sizeof dst, "/tmp/vmoer-test-bpe-qwen-%d.gguf", (int)getpid());
        CHECK(!strcmp(h.pre, "qwen2") && h.v.n_merges == 151387, "qwen pre family %s, %d merges", h.pre, h.v.n_merges);
        vm_gguf_writer *w = vm_gguf_writer_init();
        CHECK(vm_tok_vocab_to_gguf(&h.v, w) == 0 && vm_gguf_write(w, dst) == 0, "qwen -> GGUF: %s", vm_errmsg());
        vm_gguf_writer_free(w);
        vm_gguf *g = vm_gguf_open(dst);
        vm_tokenizer *q2 = g ? vm_tokenizer_from_gguf(g) : NULL;
        CHECK(q2 != NULL, "qwen GGUF reopened: %s", vm_errmsg());
        if (q2) {
            run_vectors(q2, "ggml-vocab-qwen2.gguf", "qwen3 json -> GGUF / qwen2 vectors");
            CHECK(vm_tokenizer_n_vocab(q2) == vm_tokenizer_n_vocab(q) && vm_tokenizer_eos(q2) == vm_tokenizer_eos(q), "GGUF header");
            char *pre = NULL;
            CHECK(vm_gguf_get_str(g, "tokenizer.ggml.pre", &pre) == 0 && !strcmp(pre, "qwen2"), "pre key: %s", pre ? pre : "-");
            free(pre);
        }
        vm_tokenizer_free(q2);
        vm_gguf_free(g);
        remove(dst);
        vm_tokenizer_free(q);
    }
    if (!hr) vm_hf_vocab_free(&h);

    // OLMo's tokenizer.json is GPT-NeoX-20B's vocabulary: same texts and types as the GGUF,
    // and (GPT-2 regex) the MPT vectors pass
    vm_tokenizer *o = load_json("olmo-gpt-neox-dolma-v1_5.tokenizer.json", &dt);
    vm_tokenizer *x = load_vocab("ggml-vocab-gpt-neox.gguf");
    if (o && x) {
        int n = vm_tokenizer_n_vocab(o), nx = vm_tokenizer_n_vocab(x), diff = 0, tdiff = 0;
        for (int i = 0; i < n && i < nx; i++) {
            if (strcmp(vm_tokenizer_text(o, i), vm_tokenizer_text(x, i))) diff++;
            else if (vm_tokenizer_type(o, i) != vm_tokenizer_type(x, i)) tdiff++;
        }
        printf("olmo json vs gpt-neox GGUF: %d vs %d tokens, %d texts and %d types differ\n", n, nx, diff, tdiff);
        // OLMo's file adds three PII placeholders (ids 0, 50277-50279) and moves <|endoftext|>
        CHECK(n <= nx && diff == 4 && tdiff == 0, "olmo vs gpt-neox: %d texts, %d types differ", diff, tdiff);
        run_vectors(o, "ggml-vocab-mpt.gguf", "olmo json / mpt vectors");
        for (size_t i = 0; i < sizeof known / sizeof *known; i++)
            CHECK(roundtrip(o, known[i], strlen(known[i])), "olmo round trip %zu", i);
    }
    vm_tokenizer_free(o);
    vm_tokenizer_free(x);

    // DeepSeek-V3: its own pre-tokenizer family; round trips and a few structural facts
    vm_tokenizer *d = load_json("deepseek-v3.tokenizer.json", &dt);
    if (d) {
        for (size_t i = 0; i < sizeof known / sizeof *known; i++)
            CHECK(roundtrip(d, known[i], strlen(known[i])), "deepseek-v3 round trip %zu", i);
        int32_t hello = vm_tokenizer_find(d, "Hello", 5), world = vm_tokenizer_find(d, "\xc4\xa0world", 7);
        CHECK(hello >= 0 && world >= 0, "deepseek-v3 has Hello / Ġworld");
        EXPECT(d, "Hello world", 0, 0, hello, world);
        CHECK(vm_tokenizer_bos(d) == 0 && vm_tokenizer_eos(d) == 1, "deepseek-v3 bos 0 / eos 1: %d %d", vm_tokenizer_bos(d), vm_tokenizer_eos(d));
        // digits in groups of three, CJK runs apart from Latin letters
        int32_t *ids;
        int m = tok_all(d, "1234567", 7, 0, 0, &ids);
        char p[16];
        CHECK(m == 3 && vm_token_to_piece(d, ids[0], p, sizeof p) == 3 && !memcmp(p, "123", 3), "digits 123|456|7 (%d)", m);
        free(ids);
        vm_tokenizer_free(d);
    }

    // refusals, each naming what is wrong
    char bad[128];
    snprintf(bad, sizeof bad, "/tmp/vmoer-test-bpe-%d.json", (int)getpid());
    static const struct { const char *json, *want; } cases[] = {
        {"{\"model\": {\"type\": \"Unigram\"}}", "Unigram"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
         " \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"x+\"}, \"behavior\": \"Isolated\"}}",
         "split:x+"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
         " \"pre_tokenizer\": {\"type\": \"Whitespace\"}}", "Whitespace"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [3]},"
         " \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}", "merges[0]"},
        {"{\"model\": ", "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        FILE *f = fopen(bad, "w");
        if (!f) continue;
        fputs(cases[i].json, f);
        fclose(f);
        vm_err_clear();
        vm_tokenizer *t = vm_tokenizer_from_hf_json(bad);
        CHECK(t == NULL && strstr(vm_errmsg(), cases[i].want), "bad tokenizer.json %zu: %s", i, vm_errmsg());
        vm_tokenizer_free(t);
    }
    // a minimal valid one: [a, b] pair merges, GPT-2 byte level
    FILE *f = fopen(bad, "w");
    if (f) {
        fputs("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2},"
              " \"merges\": [[\"a\", \"b\"]]}, \"added_tokens\": [{\"id\": 4, \"content\": \"<x>\", \"special\": true}],"
              " \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"use_regex\": true}}", f);
        fclose(f);
        vm_tokenizer *t = vm_tokenizer_from_hf_json(bad);
        CHECK(t != NULL, "minimal tokenizer.json: %s", vm_errmsg());
        if (t) {
            EXPECT(t, "abab<x>", 0, 1, 2, 2, 4);
            CHECK(vm_tokenizer_n_vocab(t) == 5 && vm_tokenizer_type(t, 3) == VM_TOKEN_TYPE_UNUSED &&
                  !strcmp(vm_tokenizer_text(t, 3), "[PAD3]"), "hole -> [PAD3] UNUSED");
            vm_tokenizer_free(t);
        }
    }
    remove(bad);
}

// ---- broken input, special-token soup and long inputs ----

static void test_robust(void) {
    vm_tokenizer *t = load_vocab("ggml-vocab-deepseek-llm.gguf");
    if (!t) return;
    static const char *parts[] = {"<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>", " ", "  ", "\n", "\t",
                                  "a", "Hello", "\xe2", "\x96", "\x81", "\xc3\xa9", "\xf0\x9f", "123", "\xe4\xb8\x80", "'s", "<|", "|>"};
    const int np = (int)(sizeof parts / sizeof *parts);
    uint64_t x = 0x9E3779B97F4A7C15ull;
    int bad = 0, bad_rt = 0;
    char s[512];
    int32_t ids[1024];
    for (int it = 0; it < 2000; it++) {
        size_t n = 0;
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        int k = (int)(x % 20);
        for (int j = 0; j < k; j++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            const char *p = parts[x % (uint64_t)np];
            memcpy(s + n, p, strlen(p));
            n += strlen(p);
        }
        int m = vm_tokenize(t, s, n, it & 1, it & 2, ids, 1024);
        if (m < 0 || m > 1024) { bad++; continue; }
        for (int i = 0; i < m; i++) if (ids[i] < 0 || ids[i] >= vm_tokenizer_n_vocab(t)) { bad++; break; }
        if (!(it & 2) && !roundtrip(t, s, n)) bad_rt++;   // lossless, even for broken UTF-8
    }
    CHECK(bad == 0, "random strings: %d bad results", bad);
    CHECK(bad_rt == 0, "random strings: %d do not come back", bad_rt);

    char path[512];
    snprintf(path, sizeof path, "%s/data/text/tinyshakespeare.txt", test_shared_dir());
    size_t n;
    char *text = vm_read_file(path, &n);
    CHECK(text != NULL, "read %s", path);
    const size_t M = 1 << 18;   // enough to show no quadratic blowup, fast under ASan too
    char *big = malloc(M);
    for (int k = 0; k < 4; k++) {
        const char *what = k == 0 ? "tinyshakespeare" : k == 1 ? "256 KB of 'a'" : k == 2 ? "256 KB of spaces" : "256 KB of random bytes";
        const char *src = text;
        size_t len = n;
        if (k > 0) {
            src = big;
            len = M;
            if (k == 1) memset(big, 'a', M);
            if (k == 2) memset(big, ' ', M);
            if (k == 3) for (size_t i = 0; i < M; i++) {   // bytes without a stand-in token left out
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                uint8_t b = (uint8_t)(x >> 24);
                big[i] = (char)(b == 0xC0 || b == 0xC1 || b >= 0xF5 ? 0x80 : b);
            }
        }
        if (!src) continue;
        double t0 = now_s();
        int32_t *v;
        int m = tok_all(t, src, len, 0, 0, &v);
        double dt = now_s() - t0;
        printf("%-28s %8zu bytes -> %7d tokens in %.3f s\n", what, len, m, dt);
        CHECK(m > 0, "%s: %d tokens in %.2f s (%s)", what, m, dt, vm_errmsg());
        char *back = malloc(len + 16);
        CHECK(m > 0 && vm_detokenize(t, v, m, back, (int)len + 16, 0) == (int)len && !memcmp(back, src, len), "%s: comes back", what);
        free(back);
        free(v);
    }
    free(big);
    free(text);
    vm_tokenizer_free(t);
}

int main(void) {
    test_byte_map();
    test_toy();
    test_gguf_vectors();
    test_hf_json();
    test_robust();
    return TEST_SUMMARY();
}

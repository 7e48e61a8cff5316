// Pre-tokenizers of byte-level BPE vocabularies: the text is cut into pieces by a list of
// regular expressions applied one after the other, each to every piece the previous ones left,
// keeping both the matches and the text between them (Hugging Face's Split with "Isolated"
// behaviour, llama.cpp's unicode_regex_split). BPE merges never cross a piece boundary.
// The patterns are the families' published tokenizer.json regexes, run by PCRE2 in UTF mode
// with Unicode properties (\p{L}, \s, ... by the Unicode tables, not ASCII).
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/tok_impl.h"

#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

// GPT-2's own pattern; its last alternative (\s+) catches a lone whitespace before a non-space.
#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
// Llama 3 (digits in groups of up to three) and Qwen2 (single digits): case-insensitive
// contractions, a letter run may take one leading non-letter/non-digit, newlines stay together.
#define RE_LLAMA3 "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}" \
                  "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN2 "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}" \
                 "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
// DeepSeek LLM's letter class, verbatim from its tokenizer.json (cased letters of many scripts).
#define DS_LETTERS "A-Za-z\\x{b5}\\x{c0}-\\x{d6}\\x{d8}-\\x{f6}\\x{f8}-\\x{1ba}\\x{1bc}-\\x{1bf}" \
    "\\x{1c4}-\\x{293}\\x{295}-\\x{2af}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37b}-\\x{37d}\\x{37f}" \
    "\\x{386}\\x{388}-\\x{38a}\\x{38c}\\x{38e}-\\x{3a1}\\x{3a3}-\\x{3f5}\\x{3f7}-\\x{481}" \
    "\\x{48a}-\\x{52f}\\x{531}-\\x{556}\\x{10a0}-\\x{10c5}\\x{13a0}-\\x{13f5}\\x{13f8}-\\x{13fd}" \
    "\\x{1c90}-\\x{1cba}\\x{1cbd}-\\x{1cbf}\\x{1d00}-\\x{1d2b}\\x{1d6b}-\\x{1d77}\\x{1d79}-\\x{1d9a}" \
    "\\x{1e00}-\\x{1f15}\\x{1f18}-\\x{1f1d}\\x{1f20}-\\x{1f45}\\x{1f48}-\\x{1f4d}\\x{1f50}-\\x{1f57}" \
    "\\x{1f59}\\x{1f5b}\\x{1f5d}\\x{1f5f}-\\x{1f7d}\\x{1f80}-\\x{1fb4}\\x{1fb6}-\\x{1fbc}\\x{1fbe}" \
    "\\x{1fc2}-\\x{1fc4}\\x{1fc6}-\\x{1fcc}\\x{1fd0}-\\x{1fd3}\\x{1fd6}-\\x{1fdb}\\x{1fe0}-\\x{1fec}" \
    "\\x{1ff2}-\\x{1ff4}\\x{1ff6}-\\x{1ffc}\\x{2102}\\x{2107}\\x{210a}-\\x{2113}\\x{2115}" \
    "\\x{2119}-\\x{211d}\\x{2124}\\x{2126}\\x{2128}\\x{212a}-\\x{212d}\\x{212f}-\\x{2134}\\x{2139}" \
    "\\x{213c}-\\x{213f}\\x{2145}-\\x{2149}\\x{214e}\\x{2183}\\x{2184}\\x{2c00}-\\x{2c7b}" \
    "\\x{2c7e}-\\x{2ce4}\\x{2ceb}-\\x{2cee}\\x{2cf2}\\x{2cf3}\\x{a640}-\\x{a66d}\\x{a680}-\\x{a69b}" \
    "\\x{a722}-\\x{a76f}\\x{a771}-\\x{a787}\\x{a78b}-\\x{a78e}\\x{ab70}-\\x{abbf}\\x{fb00}-\\x{fb06}" \
    "\\x{fb13}-\\x{fb17}\\x{ff21}-\\x{ff3a}\\x{ff41}-\\x{ff5a}\\x{10400}-\\x{1044f}\\x{104b0}-\\x{104d3}" \
    "\\x{104d8}-\\x{104fb}\\x{10c80}-\\x{10cb2}\\x{10cc0}-\\x{10cf2}\\x{118a0}-\\x{118df}" \
    "\\x{1e900}-\\x{1e943}"
// CJK ideographs (U+4E00..U+9FA5), U+0800..U+4E00, Hangul syllables and jamo (U+AC00..U+D7FF)
#define DS_CJK "[\\x{4e00}-\\x{9fa5}\\x{800}-\\x{4e00}\\x{ac00}-\\x{d7ff}]+"

typedef struct family {
    const char *name;          // canonical tokenizer.ggml.pre
    const char *aliases;       // other names, '|'-separated (with leading and trailing '|')
    int ignore_merges, add_bos;
    const char *re[6];         // applied in order; NULL-terminated
} family;

static const family families[] = {
    // llama.cpp's fallback for files without tokenizer.ggml.pre: punctuation runs, GPT-2, digits
    {"default", "||", 0, 0, {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"}},
    {"gpt-2", "|phi-2|mpt|olmo|gpt-neox|jais|jina-es|jina-de|jina-v2-es|jina-v2-de|exaone4|", 0, 0, {RE_GPT2}},
    {"llama-bpe", "|llama3|llama-v3|falcon3|falcon-h1|pixtral|dbrx|smaug-bpe|", 1, 1, {RE_LLAMA3}},
    {"qwen2", "|deepseek-r1-qwen|stablelm2|megrez|", 0, 0, {RE_QWEN2}},
    {"chatglm-bpe", "|glm4|", 0, 0, {RE_LLAMA3}},
    {"deepseek-llm", "||", 0, 0, {"[\\r\\n]", "\\s?[" DS_LETTERS "]+",
        "\\s?[!-/:-~\\x{ff01}-\\x{ff0f}\\x{ff1a}-\\x{ff5e}\\x{2018}-\\x{201f}\\x{3000}-\\x{3002}]+",
        "\\s+$", DS_CJK, "\\p{N}+"}},
    {"deepseek-coder", "||", 0, 0, {"[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", DS_CJK, "\\p{N}"}},
    {"deepseek-v3", "||", 0, 0, {"\\p{N}{1,3}", "[\\x{4e00}-\\x{9fa5}\\x{3040}-\\x{309f}\\x{30a0}-\\x{30ff}]+",
        "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+"
        "| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    // Falcon: punctuation runs (Unicode P and ASCII punctuation), GPT-2, then runs of three digits
    {"falcon", "||", 0, 0, {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]"}},
    // StarCoder, Refact, Command-R: every digit alone, then GPT-2
    {"starcoder", "|refact|command-r|smollm|codeshell|exaone|minerva-7b|", 0, 0, {"\\p{N}", RE_GPT2}},
};

#define N_FAMILIES (sizeof families / sizeof *families)
#define MAX_RE 6

struct vm_pretok {
    const family *fam;
    int n_re;
    pcre2_code *re[MAX_RE];
};

static const family *find_family(const char *name) {
    if (!name || !*name) return &families[0];
    size_t n = strlen(name);
    for (size_t i = 0; i < N_FAMILIES; i++) {
        if (!strcmp(families[i].name, name)) return &families[i];
        for (const char *a = strchr(families[i].aliases, '|'); a && a[1]; a = strchr(a + 1, '|'))
            if (!strncmp(a + 1, name, n) && a[1 + n] == '|') return &families[i];
    }
    return NULL;
}

int vm_pretok_known(const char *name) { return find_family(name) != NULL; }
int vm_pretok_default_add_bos(const char *name) { const family *f = find_family(name); return f && f->add_bos; }

vm_pretok *vm_pretok_init(const char *name) {
    const family *f = find_family(name);
    if (!f) {
        vm_err("tokenizer: unknown pre-tokenizer '%s' (tokenizer.ggml.pre; known: default, gpt-2, "
               "llama-bpe, qwen2, deepseek-llm, deepseek-coder, deepseek-v3, falcon, mpt, starcoder, "
               "refact, gpt-neox, olmo, command-r, phi-2, ...)", name);
        return NULL;
    }
    vm_pretok *p = vm_calloc(1, sizeof *p);
    if (!p) return NULL;
    p->fam = f;
    for (int k = 0; k < MAX_RE && f->re[k]; k++) {
        int ec;
        PCRE2_SIZE eo;
        p->re[k] = pcre2_compile((PCRE2_SPTR)f->re[k], PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
        if (!p->re[k]) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(ec, msg, sizeof msg);
            vm_err("tokenizer: pre-tokenizer '%s' pattern %d does not compile at %zu: %s", f->name, k,
                   (size_t)eo, (const char *)msg);
            vm_pretok_free(p);
            return NULL;
        }
        pcre2_jit_compile(p->re[k], PCRE2_JIT_COMPLETE);   // optional: the interpreter is the fallback
        p->n_re = k + 1;
    }
    return p;
}

void vm_pretok_free(vm_pretok *p) {
    if (!p) return;
    for (int k = 0; k < p->n_re; k++) pcre2_code_free(p->re[k]);
    free(p);
}

const char *vm_pretok_name(const vm_pretok *p) { return p ? p->fam->name : NULL; }
int vm_pretok_ignore_merges(const vm_pretok *p) { return p && p->fam->ignore_merges; }
int vm_pretok_add_bos(const vm_pretok *p) { return p && p->fam->add_bos; }

static int span_push(vm_tok_spans *s, size_t off, size_t len, int raw) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        vm_tok_span *v = realloc(s->v, cap * sizeof *v);
        if (!v) return vm_err("tokenizer: out of memory (%zu pieces)", cap);
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = (vm_tok_span){off, len, raw};
    return 0;
}

// Length of the well-formed UTF-8 sequence at s (shortest form, no surrogates, <= U+10FFFF),
// 0 when it is not one.
static size_t utf8_valid(const uint8_t *s, size_t n) {
    uint8_t c = s[0];
    if (c < 0x80) return 1;
    size_t k = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
    if (!k || k > n || c > 0xF4) return 0;
    for (size_t i = 1; i < k; i++) if ((s[i] & 0xC0) != 0x80) return 0;
    if (c == 0xE0 && s[1] < 0xA0) return 0;   // overlong
    if (c == 0xED && s[1] >= 0xA0) return 0;  // surrogate
    if (c == 0xF0 && s[1] < 0x90) return 0;   // overlong
    if (c == 0xF4 && s[1] >= 0x90) return 0;  // > U+10FFFF
    return k;
}

// Cuts one valid-UTF-8 span by pattern re: matches and the gaps between them become pieces.
static int split_one(const pcre2_code *re, pcre2_match_data *md, const char *text, vm_tok_span sp,
                     vm_tok_spans *out) {
    PCRE2_SPTR subj = (PCRE2_SPTR)(text + sp.off);
    size_t pos = 0, last = 0;
    while (pos < sp.len) {
        int rc = pcre2_match(re, subj, sp.len, pos, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return vm_err("tokenizer: pre-tokenizer match failed: %s", (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t s = ov[0], e = ov[1];
        if (e == s) {   // empty match: no piece; step over one character
            pos = s + 1;
            while (pos < sp.len && (subj[pos] & 0xC0) == 0x80) pos++;
            continue;
        }
        if (s > last && span_push(out, sp.off + last, s - last, 0)) return -1;
        if (span_push(out, sp.off + s, e - s, 0)) return -1;
        last = pos = e;
    }
    if (last < sp.len && span_push(out, sp.off + last, sp.len - last, 0)) return -1;
    return 0;
}

int vm_pretok_split(const vm_pretok *p, const char *text, size_t len, vm_tok_spans *out) {
    vm_tok_spans a = {0}, b = {0};
    pcre2_match_data *md = NULL;
    int rc = -1;
    // Bytes that are not well-formed UTF-8 become one-byte raw pieces: the regexes never see
    // them and byte-level BPE still encodes them, so tokenizing stays lossless.
    size_t run = 0;
    for (size_t i = 0; i < len;) {
        size_t k = utf8_valid((const uint8_t *)text + i, len - i);
        if (k) { i += k; continue; }
        if (i > run && span_push(&a, run, i - run, 0)) goto done;
        if (span_push(&a, i, 1, 1)) goto done;
        run = ++i;
    }
    if (len > run && span_push(&a, run, len - run, 0)) goto done;

    if (p->n_re) {
        md = pcre2_match_data_create(4, NULL);
        if (!md) { vm_err("tokenizer: out of memory (match data)"); goto done; }
    }
    for (int k = 0; k < p->n_re; k++) {
        b.n = 0;
        for (size_t i = 0; i < a.n; i++) {
            if (a.v[i].raw) { if (span_push(&b, a.v[i].off, a.v[i].len, 1)) goto done; continue; }
            if (split_one(p->re[k], md, text, a.v[i], &b)) goto done;
        }
        vm_tok_spans t = a; a = b; b = t;
    }
    for (size_t i = 0; i < a.n; i++)
        if (span_push(out, a.v[i].off, a.v[i].len, a.v[i].raw)) goto done;
    rc = 0;
done:
    pcre2_match_data_free(md);
    free(a.v);
    free(b.v);
    return rc;
}

// ---- Hugging Face pre_tokenizer -> family ----

// Regex text in one spelling: non-ASCII characters as \x{h}, CR/LF/TAB as \r \n \t, so a
// tokenizer.json pattern (often with literal characters) compares equal to ours.
static char *re_normal(const char *s) {
    size_t n = strlen(s);
    char *o = vm_malloc(n * 12 + 1), *p = o;
    if (!o) return NULL;
    for (size_t i = 0; i < n;) {
        uint8_t c = (uint8_t)s[i];
        if (c == '\r' || c == '\n' || c == '\t') { *p++ = '\\'; *p++ = c == '\r' ? 'r' : c == '\n' ? 'n' : 't'; i++; continue; }
        if (c < 0x80) { *p++ = (char)c; i++; continue; }
        size_t k = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        uint32_t cp = k == 1 ? c : (uint32_t)(c & (0x7F >> k));
        for (size_t j = 1; j < k && i + j < n; j++) cp = (cp << 6) | ((uint8_t)s[i + j] & 0x3Fu);
        p += sprintf(p, "\\x{%x}", (unsigned)cp);
        i += k;
    }
    *p = 0;
    return o;
}

static int re_equal(const char *ours, const char *theirs) {
    char *a = re_normal(ours), *b = re_normal(theirs);
    int eq = a && b && !strcmp(a, b);
    free(a);
    free(b);
    return eq;
}

const char *vm_pretok_from_hf(const char *const *steps, int n) {
    // steps spelled by hf_json.c: "bytelevel:1" (with GPT-2's regex) / "bytelevel:0",
    // "digits:1" (each digit alone) / "digits:0", "punct", "split:<regex>"
    static const struct { const char *fam; int n; const char *s[4]; } fixed[] = {
        {"gpt-2", 1, {"bytelevel:1"}},
        {"starcoder", 2, {"digits:1", "bytelevel:1"}},
        {"falcon", 4, {"punct", "bytelevel:1", "digits:0", "split:[0-9][0-9][0-9]"}},
    };
    for (size_t f = 0; f < sizeof fixed / sizeof *fixed; f++) {
        if (fixed[f].n != n) continue;
        int ok = 1;
        for (int i = 0; i < n && ok; i++) ok = !strcmp(steps[i], fixed[f].s[i]);
        if (ok) return fixed[f].fam;
    }
    // otherwise: the family's regexes as Splits, then a ByteLevel without regex
    if (n < 2 || strcmp(steps[n - 1], "bytelevel:0")) return NULL;
    for (size_t f = 0; f < N_FAMILIES; f++) {
        const family *fa = &families[f];
        int k = 0;
        while (k < MAX_RE && fa->re[k]) k++;
        if (k != n - 1) continue;
        int ok = 1;
        for (int i = 0; i < k && ok; i++)
            ok = !strncmp(steps[i], "split:", 6) && re_equal(fa->re[i], steps[i] + 6);
        if (ok) return fa->name;
    }
    return NULL;
}

// llama2.c (karpathy/llama2.c, legacy "version 0" export) -> GGUF llama.
// Layout (all little-endian): int32 dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
// seq_len; then fp32 token_embedding (vocab,dim), rms_att (L,dim), wq (L,dim,dim),
// wk (L,kv_dim,dim), wv (L,kv_dim,dim), wo (L,dim,dim), rms_ffn (L,dim), w1 (L,hidden,dim),
// w2 (L,dim,hidden), w3 (L,hidden,dim), rms_final (dim), freq_cis_real/imag (seq_len,head_size/2)
// each, and wcls (vocab,dim) only when vocab_size < 0 (shared classifier otherwise).
// Matrices are (out, in) row-major, which is exactly ggml's ne = [in, out]: no transposition.
// llama2.c's RoPE rotates adjacent pairs (2i, 2i+1) with theta = pos * 10000^(-2i/head_size),
// ggml's "normal" mode used by arch llama: the Q/K rows need no permutation.
#include "convert/convert.h"
#include "gguf/gguf.h"
#include "util/err.h"
#include "util/fileio.h"

#include <stdlib.h>
#include <string.h>

typedef struct l2c_config { int dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len, shared; } l2c_config;

// Number of fp32 values the header promises, overflow-checked.
static int l2c_expected_floats(const l2c_config *c, size_t *out) {
    size_t L = (size_t)c->n_layers, d = (size_t)c->dim, h = (size_t)c->hidden, v = (size_t)c->vocab;
    size_t kv = d / (size_t)c->n_heads * (size_t)c->n_kv_heads, hs = d / (size_t)c->n_heads;
    size_t parts[12][3] = {
        {v, d, 1}, {L, d, 1}, {L, d, d}, {L, kv, d}, {L, kv, d}, {L, d, d}, {L, d, 1},
        {L, h, d}, {L, d, h}, {L, h, d}, {d, 1, 1}, {(size_t)c->seq_len, hs, 1},  // 2 x (seq, hs/2)
    };
    size_t total = 0, p;
    for (int i = 0; i < 12; i++) {
        if (vm_size_mul(parts[i][0], parts[i][1], &p) || vm_size_mul(p, parts[i][2], &p) ||
            vm_size_add(total, p, &total)) return -1;
    }
    if (!c->shared && (vm_size_mul(v, d, &p) || vm_size_add(total, p, &total))) return -1;
    *out = total;
    return 0;
}

static int l2c_read_config(const char *path, const vm_mmap *m, l2c_config *c) {
    if (m->size < 7 * sizeof(int32_t)) return vm_err("%s: too small for a llama2.c header (%zu bytes)", path, m->size);
    int32_t h[7];
    memcpy(h, m->data, sizeof h);
    if ((uint32_t)h[0] == 0x616b3432u)
        return vm_err("%s: llama2.c version 1/2 export (magic 'ak42') is not supported; export with version 0", path);
    c->dim = h[0]; c->hidden = h[1]; c->n_layers = h[2]; c->n_heads = h[3]; c->n_kv_heads = h[4];
    c->shared = h[5] > 0;
    c->vocab = h[5] == INT32_MIN ? 0 : abs(h[5]);
    c->seq_len = h[6];
    if (c->dim < 1 || c->dim > (1 << 16)) return vm_err("%s: bad dim %d in header", path, c->dim);
    if (c->hidden < 1 || c->hidden > (1 << 18)) return vm_err("%s: bad hidden_dim %d in header", path, c->hidden);
    if (c->n_layers < 1 || c->n_layers > 1024) return vm_err("%s: bad n_layers %d in header", path, c->n_layers);
    if (c->n_heads < 1 || c->n_heads > c->dim || c->dim % c->n_heads)
        return vm_err("%s: n_heads %d does not divide dim %d", path, c->n_heads, c->dim);
    if ((c->dim / c->n_heads) % 2) return vm_err("%s: odd head size %d (RoPE needs pairs)", path, c->dim / c->n_heads);
    if (c->n_kv_heads < 1 || c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads)
        return vm_err("%s: n_kv_heads %d does not divide n_heads %d", path, c->n_kv_heads, c->n_heads);
    if (c->vocab < 1 || c->vocab > (1 << 24)) return vm_err("%s: bad vocab_size %d in header", path, h[5]);
    if (c->seq_len < 1 || c->seq_len > (1 << 24)) return vm_err("%s: bad seq_len %d in header", path, c->seq_len);
    size_t nf, bytes;
    if (l2c_expected_floats(c, &nf) || vm_size_mul(nf, 4, &bytes) || vm_size_add(bytes, 28, &bytes))
        return vm_err("%s: header sizes overflow", path);
    if (bytes != m->size)
        return vm_err("%s: size %zu bytes, header (dim %d, hidden %d, layers %d, vocab %d, seq %d) implies %zu",
                      path, m->size, c->dim, c->hidden, c->n_layers, h[5], c->seq_len, bytes);
    return 0;
}

// Tokenizer: int32 max_token_length, then per token float32 score, int32 len, len bytes.
typedef struct l2c_vocab { char **text; float *score; int32_t *type; int n; } l2c_vocab;

static void l2c_vocab_free(l2c_vocab *v) {
    if (v->text) for (int i = 0; i < v->n; i++) free(v->text[i]);
    free(v->text); free(v->score); free(v->type);
    memset(v, 0, sizeof *v);
}

static int is_byte_token(const char *s) {
    return strlen(s) == 6 && !strncmp(s, "<0x", 3) && s[5] == '>' &&
           strchr("0123456789ABCDEFabcdef", s[3]) && strchr("0123456789ABCDEFabcdef", s[4]);
}

// The exporter wrote sentencepiece's U+2581 as ' ' and BOS/EOS as "\n<s>\n" / "\n</s>\n": undo it.
static char *l2c_token_text(const char *b, size_t len) {
    if (len == 5 && !memcmp(b, "\n<s>\n", 5)) return vm_strdup("<s>");
    if (len == 6 && !memcmp(b, "\n</s>\n", 6)) return vm_strdup("</s>");
    size_t spaces = 0;
    for (size_t i = 0; i < len; i++) spaces += b[i] == ' ';
    char *s = vm_malloc(len + 2 * spaces + 1), *p = s;
    if (!s) return NULL;
    for (size_t i = 0; i < len; i++) {
        if (b[i] == ' ') { *p++ = (char)0xE2; *p++ = (char)0x96; *p++ = (char)0x81; }
        else *p++ = b[i];
    }
    *p = 0;
    return s;
}

static int l2c_read_vocab(const char *path, int n_vocab, l2c_vocab *v) {
    memset(v, 0, sizeof *v);
    size_t len;
    char *buf = vm_read_file(path, &len);
    if (!buf) return -1;
    int rc = -1;
    v->text = vm_calloc((size_t)n_vocab, sizeof *v->text);
    v->score = vm_calloc((size_t)n_vocab, sizeof *v->score);
    v->type = vm_calloc((size_t)n_vocab, sizeof *v->type);
    if (!v->text || !v->score || !v->type) goto done;
    v->n = n_vocab;
    if (len < 4) { vm_err("%s: too small for a llama2.c tokenizer", path); goto done; }
    int32_t max_len;
    memcpy(&max_len, buf, 4);
    if (max_len < 1 || max_len > (1 << 16)) { vm_err("%s: bad max_token_length %d", path, max_len); goto done; }
    size_t off = 4;
    for (int i = 0; i < n_vocab; i++) {
        int32_t n;
        if (len - off < 8) { vm_err("%s: ends at token %d of %d (model vocab)", path, i, n_vocab); goto done; }
        memcpy(&v->score[i], buf + off, 4);
        memcpy(&n, buf + off + 4, 4);
        off += 8;
        if (n < 0 || n > max_len || (size_t)n > len - off) {
            vm_err("%s: token %d: bad length %d (offset %zu)", path, i, n, off - 4);
            goto done;
        }
        if (memchr(buf + off, 0, (size_t)n)) { vm_err("%s: token %d contains a NUL byte", path, i); goto done; }
        if (!(v->text[i] = l2c_token_text(buf + off, (size_t)n))) goto done;
        off += (size_t)n;
        v->type[i] = i == 0 ? 2 : (i == 1 || i == 2) ? 3 : is_byte_token(v->text[i]) ? 6 : 1;
    }
    if (off != len) { vm_err("%s: %zu trailing bytes after %d tokens (vocab size mismatch?)", path, len - off, n_vocab); goto done; }
    rc = 0;
done:
    free(buf);
    if (rc) l2c_vocab_free(v);
    return rc;
}

// Converted tensor buffers live until the writer has written them.
typedef struct l2c_bufs { void **p; int n, cap; } l2c_bufs;

static void *l2c_keep(l2c_bufs *b, void *p) {
    if (!p) return NULL;
    if (b->n == b->cap) {
        int cap = b->cap ? 2 * b->cap : 64;
        void **np = realloc(b->p, sizeof *np * (size_t)cap);
        if (!np) { free(p); vm_err("out of memory"); return NULL; }
        b->p = np; b->cap = cap;
    }
    return b->p[b->n++] = p;
}

// Adds a (rows, cols) fp32 matrix as ne = [cols, rows] in `type` (F32 borrows the mapping).
static int l2c_add(vm_gguf_writer *w, l2c_bufs *bufs, const char *name, vm_type type,
                   const float *src, int64_t cols, int64_t rows) {
    int64_t ne[2] = {cols, rows};
    int nd = rows == 1 ? 1 : 2;
    if (type != VM_TYPE_F32 && vm_type_row_size(type, cols) == 0) type = VM_TYPE_F16;  // rows not whole blocks
    size_t row = type == VM_TYPE_F32 ? (size_t)cols * 4 : vm_type_row_size(type, cols), nbytes;
    if (row == 0 || vm_size_mul(row, (size_t)rows, &nbytes)) return vm_err("%s: bad size", name);
    // what is written must be finite, or the model would not load (f16/q8_0 can overflow to Inf)
    if (vm_type_check_finite(VM_TYPE_F32, src, cols * rows, name)) return -1;
    if (type == VM_TYPE_F32) return vm_gguf_add_tensor(w, name, type, nd, ne, src, nbytes);
    uint8_t *dst = l2c_keep(bufs, vm_malloc(nbytes));
    if (!dst) return -1;
    for (int64_t r = 0; r < rows; r++) {
        const float *s = src + r * cols;
        uint8_t *d = dst + (size_t)r * row;
        if (type == VM_TYPE_F16) {
            for (int64_t i = 0; i < cols; i++) {
                uint16_t hv = vm_fp32_to_fp16(s[i]);
                memcpy(d + 2 * i, &hv, 2);
            }
        } else if (vm_quant_row(type, s, d, cols)) {
            return vm_err("%s: cannot quantise to %s", name, vm_type_name(type));
        }
    }
    if (vm_type_check_finite(type, dst, cols * rows, name)) return -1;
    return vm_gguf_add_tensor(w, name, type, nd, ne, dst, nbytes);
}

static const char *l2c_basename(const char *path, char *buf, size_t size) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    snprintf(buf, size, "%s", b);
    char *dot = strrchr(buf, '.');
    if (dot && dot != buf) *dot = 0;
    return buf;
}

int vm_convert_llama2c(const char *model_path, const char *tok_path, const char *out_path,
                       vm_type type, const char *name) {
    if (type != VM_TYPE_F32 && type != VM_TYPE_F16 && type != VM_TYPE_Q8_0)
        return vm_err("output type %s not supported (f32, f16, q8_0)", vm_type_name(type));
    vm_mmap m;
    if (vm_mmap_open(&m, model_path)) return -1;
    l2c_config c = {0};
    l2c_vocab v = {0};
    l2c_bufs bufs = {0};
    vm_gguf_writer *w = NULL;
    int rc = -1;
    if (l2c_read_config(model_path, &m, &c) || l2c_read_vocab(tok_path, c.vocab, &v)) goto done;
    if (!(w = vm_gguf_writer_init())) { vm_err("out of memory"); goto done; }

    char nbuf[256];
    // ggml's llama_ftype: ALL_F32 = 0, MOSTLY_F16 = 1, MOSTLY_Q8_0 = 7
    uint32_t ftype = type == VM_TYPE_F32 ? 0 : type == VM_TYPE_F16 ? 1 : 7;
    int hs = c.dim / c.n_heads;
    vm_gguf_set_str(w, "general.architecture", "llama");
    vm_gguf_set_str(w, "general.name", name ? name : l2c_basename(model_path, nbuf, sizeof nbuf));
    vm_gguf_set_u32(w, "general.file_type", ftype);
    vm_gguf_set_u32(w, "llama.context_length", (uint32_t)c.seq_len);
    vm_gguf_set_u32(w, "llama.embedding_length", (uint32_t)c.dim);
    vm_gguf_set_u32(w, "llama.block_count", (uint32_t)c.n_layers);
    vm_gguf_set_u32(w, "llama.feed_forward_length", (uint32_t)c.hidden);
    vm_gguf_set_u32(w, "llama.attention.head_count", (uint32_t)c.n_heads);
    vm_gguf_set_u32(w, "llama.attention.head_count_kv", (uint32_t)c.n_kv_heads);
    vm_gguf_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);   // run.c's rmsnorm
    vm_gguf_set_f32(w, "llama.rope.freq_base", 10000.0f);
    vm_gguf_set_u32(w, "llama.rope.dimension_count", (uint32_t)hs);
    vm_gguf_set_u32(w, "llama.vocab_size", (uint32_t)c.vocab);
    vm_gguf_set_str(w, "tokenizer.ggml.model", "llama");
    vm_gguf_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v.text, (uint64_t)v.n);
    vm_gguf_set_arr(w, "tokenizer.ggml.scores", VM_GGUF_TYPE_FLOAT32, v.score, (uint64_t)v.n);
    vm_gguf_set_arr(w, "tokenizer.ggml.token_type", VM_GGUF_TYPE_INT32, v.type, (uint64_t)v.n);
    vm_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    vm_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    vm_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    vm_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", 1);
    vm_gguf_set_bool(w, "tokenizer.ggml.add_eos_token", 0);

    const float *p = (const float *)((const uint8_t *)m.data + 28);
    int64_t L = c.n_layers, d = c.dim, h = c.hidden, kv = (int64_t)hs * c.n_kv_heads, V = c.vocab;
    const float *tok = p; p += V * d;
    const float *rms_att = p; p += L * d;
    const float *wq = p; p += L * d * d;
    const float *wk = p; p += L * kv * d;
    const float *wv = p; p += L * kv * d;
    const float *wo = p; p += L * d * d;
    const float *rms_ffn = p; p += L * d;
    const float *w1 = p; p += L * h * d;
    const float *w2 = p; p += L * d * h;
    const float *w3 = p; p += L * h * d;
    const float *rms_final = p; p += d;
    p += (int64_t)c.seq_len * hs;   // freq_cis_real + freq_cis_imag, recomputed by the runtime
    const float *wcls = c.shared ? NULL : p;

    char gn[VM_GGUF_MAX_NAME];
    if (l2c_add(w, &bufs, vm_tn(gn, sizeof gn, VM_TN_TOKEN_EMBD, -1, "weight"), type, tok, d, V) ||
        l2c_add(w, &bufs, vm_tn(gn, sizeof gn, VM_TN_OUTPUT_NORM, -1, "weight"), VM_TYPE_F32, rms_final, d, 1) ||
        (wcls && l2c_add(w, &bufs, vm_tn(gn, sizeof gn, VM_TN_OUTPUT, -1, "weight"), type, wcls, d, V))) goto done;
    for (int64_t l = 0; l < L; l++) {
        char nm[VM_GGUF_MAX_NAME];
#define ADD(id, t, src, cols, rows) \
        vm_tn(nm, sizeof nm, id, (int)l, "weight"); \
        if (l2c_add(w, &bufs, nm, t, src, cols, rows)) goto done;
        ADD(VM_TN_ATTN_NORM, VM_TYPE_F32, rms_att + l * d, d, 1);
        ADD(VM_TN_ATTN_Q, type, wq + l * d * d, d, d);
        ADD(VM_TN_ATTN_K, type, wk + l * kv * d, d, kv);
        ADD(VM_TN_ATTN_V, type, wv + l * kv * d, d, kv);
        ADD(VM_TN_ATTN_OUTPUT, type, wo + l * d * d, d, d);
        ADD(VM_TN_FFN_NORM, VM_TYPE_F32, rms_ffn + l * d, d, 1);
        ADD(VM_TN_FFN_GATE, type, w1 + l * h * d, d, h);
        ADD(VM_TN_FFN_DOWN, type, w2 + l * d * h, h, d);
        ADD(VM_TN_FFN_UP, type, w3 + l * h * d, d, h);
#undef ADD
    }
    rc = vm_gguf_write(w, out_path);
done:
    if (w) vm_gguf_writer_free(w);
    for (int i = 0; i < bufs.n; i++) free(bufs.p[i]);
    free(bufs.p);
    l2c_vocab_free(&v);
    vm_mmap_close(&m);
    return rc;
}

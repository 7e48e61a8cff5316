// A Granite-3B-shaped random MoE model written as GGUF (`vmoer bench --gen`): the benchmark's
// subject when no real model of that size is at hand. llama architecture, D 1536, 24 heads of 64
// (8 KV), experts of 512, top-8; random weights U(-a, a) with sd 1/sqrt(fan-in), drawn per row from
// seeded streams so the file's bytes depend on neither the machine nor the thread count; a
// placeholder SentencePiece vocabulary so other engines (llama.cpp) load the file too.
#include "convert/convert.h"
#include "gguf/gguf.h"
#include "quant/quant.h"
#include "util/err.h"
#include "util/rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { G_D = 1536, G_F = 512, G_K = 8, G_NH = 24, G_NKV = 8, G_HD = 64, G_VARIANTS = 2 };

// rows x cols (cols contiguous) of U(-a, a), a = sqrt(3) sd, quantised to `type`; rows in parallel,
// each from its own stream, so the bytes do not depend on the thread count.
static void *rand_matrix(vm_type type, int64_t rows, int64_t cols, float sd, uint64_t seed, size_t *nbytes) {
    const size_t rs = vm_type_row_size(type, cols);
    *nbytes = rs * (size_t)rows;
    char *buf = malloc(*nbytes);
    if (!buf) return NULL;
    const float a = sqrtf(3.0f) * sd;
    int failed = 0;
    #pragma omp parallel
    {
        float *row = malloc(sizeof(float) * (size_t)cols);
        if (!row) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            if (!row) continue;
            vm_rng g;
            vm_rng_seed2(&g, seed, (uint64_t)r);
            for (int64_t c = 0; c < cols; c++) row[c] = a * (float)(2.0 * vm_rng_uniform(&g) - 1.0);
            if (type == VM_TYPE_F32) memcpy(buf + (size_t)r * rs, row, rs);
            else vm_quant_row(type, row, buf + (size_t)r * rs, cols);
        }
        free(row);
    }
    if (failed) { free(buf); return NULL; }
    return buf;
}

// A SentencePiece-style vocabulary of placeholder pieces (<unk>, <s>, </s>, the 256 byte tokens when
// they fit, then "t<id>"), so that other engines (llama.cpp) load the file too; prompts are token ids.
static int gen_vocab(vm_gguf_writer *w, int n_vocab) {
    char **text = calloc((size_t)n_vocab, sizeof *text);
    float *score = calloc((size_t)n_vocab, sizeof *score);
    int32_t *type = calloc((size_t)n_vocab, sizeof *type);
    int rc = !text || !score || !type;
    for (int i = 0; i < n_vocab && !rc; i++) {
        char buf[32];
        const int bytes = n_vocab >= 259 && i >= 3 && i < 259;
        if (i < 3) snprintf(buf, sizeof buf, "%s", i == 0 ? "<unk>" : i == 1 ? "<s>" : "</s>");
        else if (bytes) snprintf(buf, sizeof buf, "<0x%02X>", i - 3);
        else snprintf(buf, sizeof buf, "t%d", i);
        type[i] = i == 0 ? 2 : i < 3 ? 3 : bytes ? 6 : 1;   // unknown, control, byte, normal
        score[i] = bytes || i < 3 ? 0.0f : -(float)i;
        if (!(text[i] = strdup(buf))) rc = 1;
    }
    if (!rc) {
        vm_gguf_set_str(w, "tokenizer.ggml.model", "llama");
        vm_gguf_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)text, (uint64_t)n_vocab);
        vm_gguf_set_arr(w, "tokenizer.ggml.scores", VM_GGUF_TYPE_FLOAT32, score, (uint64_t)n_vocab);
        vm_gguf_set_arr(w, "tokenizer.ggml.token_type", VM_GGUF_TYPE_INT32, type, (uint64_t)n_vocab);
        vm_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
        vm_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
        vm_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    }
    for (int i = 0; text && i < n_vocab; i++) free(text[i]);
    free(text); free(score); free(type);
    return rc;
}

int vm_synth_granite(const char *path, vm_type type, int n_layer, int n_vocab, int n_expert) {
    if (!path || n_layer < 1 || n_vocab < 3 || n_expert < 1)
        return vm_err("synth: bad shape (%d layers, vocab %d, %d experts)", n_layer, n_vocab, n_expert);
    const int64_t D = G_D, F = G_F, N = n_expert, QD = G_NH * G_HD, KVD = G_NKV * G_HD, V = n_vocab;
    vm_gguf_writer *w = vm_gguf_writer_init();
    if (!w) return -1;
    // the big matrices come in G_VARIANTS random variants that the layers take in turn (the file
    // still holds every layer's own copy, read from its own place); routers differ per layer
    enum { M_Q, M_K, M_V, M_O, M_GATE, M_UP, M_DOWN, M_COUNT };
    const int64_t rows[M_COUNT] = { QD, KVD, KVD, D, F * N, F * N, D * N };
    const int64_t cols[M_COUNT] = { D, D, D, QD, D, D, F };
    void *mat[M_COUNT][G_VARIANTS] = { { 0 } };
    size_t mbytes[M_COUNT][G_VARIANTS] = { { 0 } };
    size_t eb = 0, rb = 0;
    float *ones = malloc(sizeof(float) * (size_t)D);
    float *routers = rand_matrix(VM_TYPE_F32, N * n_layer, D, 1.0f / sqrtf((float)D), 77, &rb);
    void *embd = rand_matrix(type, V, D, 1.0f, 1000, &eb);
    int rc = 0;
    if (!ones || !routers || !embd) { rc = vm_err("synth: out of memory"); goto done; }
    for (int64_t i = 0; i < D; i++) ones[i] = 1.0f;
    for (int mi = 0; mi < M_COUNT && !rc; mi++)
        for (int v = 0; v < G_VARIANTS && !rc; v++)
            if (!(mat[mi][v] = rand_matrix(type, rows[mi], cols[mi], 1.0f / sqrtf((float)cols[mi]),
                                           (uint64_t)(100 * mi + v + 1), &mbytes[mi][v])))
                rc = vm_err("synth: out of memory");
    if (rc) goto done;
    vm_gguf_set_str(w, "general.architecture", "llama");
    vm_gguf_set_str(w, "general.name", "granite-3b-shaped random MoE (vmoer bench)");
    vm_gguf_set_u32(w, "llama.context_length", 4096);
    vm_gguf_set_u32(w, "llama.embedding_length", (uint32_t)D);
    vm_gguf_set_u32(w, "llama.block_count", (uint32_t)n_layer);
    vm_gguf_set_u32(w, "llama.feed_forward_length", (uint32_t)F);
    vm_gguf_set_u32(w, "llama.expert_feed_forward_length", (uint32_t)F);
    vm_gguf_set_u32(w, "llama.attention.head_count", G_NH);
    vm_gguf_set_u32(w, "llama.attention.head_count_kv", G_NKV);
    vm_gguf_set_u32(w, "llama.expert_count", (uint32_t)N);
    vm_gguf_set_u32(w, "llama.expert_used_count", (uint32_t)(N < G_K ? N : G_K));
    vm_gguf_set_u32(w, "llama.rope.dimension_count", G_HD);
    vm_gguf_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-6f);
    vm_gguf_set_f32(w, "llama.rope.freq_base", 10000.0f);
    if (gen_vocab(w, n_vocab)) { rc = vm_err("synth: out of memory"); goto done; }
    const size_t nb_d = sizeof(float) * (size_t)D;
    char name[96];
    vm_gguf_add_tensor(w, vm_tn(name, sizeof name, VM_TN_TOKEN_EMBD, -1, "weight"), type, 2, (int64_t[]){ D, V }, embd, eb);   // tied output
    vm_gguf_add_tensor(w, vm_tn(name, sizeof name, VM_TN_OUTPUT_NORM, -1, "weight"), VM_TYPE_F32, 1, (int64_t[]){ D }, ones, nb_d);
    for (int il = 0; il < n_layer; il++) {
        const int v = il % G_VARIANTS;
#define ADD(id, nd, ne, data, nbytes) do { vm_tn(name, sizeof name, id, il, "weight"); \
        if (vm_gguf_add_tensor(w, name, type_of, nd, ne, data, nbytes)) rc = 1; } while (0)
        vm_type type_of = VM_TYPE_F32;
        ADD(VM_TN_ATTN_NORM, 1, ((int64_t[]){ D }), ones, nb_d);
        ADD(VM_TN_FFN_NORM, 1, ((int64_t[]){ D }), ones, nb_d);
        ADD(VM_TN_FFN_GATE_INP, 2, ((int64_t[]){ D, N }), routers + (size_t)il * N * D, nb_d * (size_t)N);
        type_of = type;
        ADD(VM_TN_ATTN_Q, 2, ((int64_t[]){ D, QD }), mat[M_Q][v], mbytes[M_Q][v]);
        ADD(VM_TN_ATTN_K, 2, ((int64_t[]){ D, KVD }), mat[M_K][v], mbytes[M_K][v]);
        ADD(VM_TN_ATTN_V, 2, ((int64_t[]){ D, KVD }), mat[M_V][v], mbytes[M_V][v]);
        ADD(VM_TN_ATTN_OUTPUT, 2, ((int64_t[]){ QD, D }), mat[M_O][v], mbytes[M_O][v]);
        ADD(VM_TN_FFN_GATE_EXPS, 3, ((int64_t[]){ D, F, N }), mat[M_GATE][v], mbytes[M_GATE][v]);
        ADD(VM_TN_FFN_UP_EXPS, 3, ((int64_t[]){ D, F, N }), mat[M_UP][v], mbytes[M_UP][v]);
        ADD(VM_TN_FFN_DOWN_EXPS, 3, ((int64_t[]){ F, D, N }), mat[M_DOWN][v], mbytes[M_DOWN][v]);
#undef ADD
    }
    if (!rc && vm_gguf_write(w, path)) rc = -1;
    else if (rc == 1) rc = vm_err("synth: a tensor could not be added");
done:
    vm_gguf_writer_free(w);
    for (int mi = 0; mi < M_COUNT; mi++) for (int v = 0; v < G_VARIANTS; v++) free(mat[mi][v]);
    free(ones); free(routers); free(embd);
    return rc;
}


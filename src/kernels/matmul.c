// Matrix multiply over typed weights: out (B,OC) = inp (B,C) . W^T (+ bias).
// The output rows are cut into blocks of a few dozen weight rows; threads take whole blocks, and
// the level's kernel (simd_*.c) sweeps all B tokens over a block in register tiles, so each weight
// is read from memory once per call and from cache once per tile of tokens. Every output element
// is one dot product computed by one thread with operations that do not depend on its tile, so the
// result does not depend on the thread count nor on B (a token alone or in a batch: same bits).
// F16/BF16 rows are widened to f32 once per block; quantised weights meet int8 activations,
// quantised once per call (vm_act_quant_row); batches of quantised weights use the level's packed
// layout (vm_simd_gemm) when it has one.
#include "kernels/ops.h"
#include "kernels/simd.h"
#include "quant/quant.h"
#include "util/profile.h"
#include "util/progress.h"

#include <omp.h>
#include <stdlib.h>

// Tokens from which a batch takes the level's packed path (K->gemm): it computes 8 tokens at a
// time, so fewer than 8 leave lanes idle; below 5 the single-token tiles are as fast.
enum { GEMM_MIN_B = 5 };

// Rows per block: a multiple of 8 that gives each thread several blocks, at most 64.
static int row_block(int64_t OC, int n_threads) {
    int64_t rb = (OC + 4 * (int64_t)n_threads - 1) / (4 * (int64_t)n_threads);
    rb = (rb + 7) / 8 * 8;
    return (int)(rb < 8 ? 8 : rb > 64 ? 64 : rb);
}

// Fallback when a scratch buffer cannot be had: the type's own f32-activation dot, element by element.
static void matmul_plain(float *out, const float *inp, const vm_tensor *w, int B) {
    const int64_t C = w->ne[0], OC = w->ne[1];
    for (int64_t o = 0; o < OC; o++)
        for (int b = 0; b < B; b++)
            out[(size_t)b * (size_t)OC + (size_t)o] =
                vm_vec_dot(w->type, (const char *)w->data + (size_t)o * w->nb[1], inp + (size_t)b * (size_t)C, C);
}

typedef struct mm_job {
    const vm_simd_kernels *K;
    float *out;
    const float *inp;
    const char *base, *xq;   // weight rows; int8 activations (quantised types)
    const void *xp;          // the activations packed for K->gemm (batches), or NULL
    size_t row, arow;
    vm_type type;
    int64_t C, OC;
    int B, rb;
} mm_job;

// Row blocks [ib0, ib1) of the job; wbuf (rb * C floats) for F16/BF16 rows.
static void mm_blocks(const mm_job *j, int64_t ib0, int64_t ib1, float *wbuf) {
    for (int64_t ib = ib0; ib < ib1; ib++) {
        const int64_t o0 = ib * j->rb;
        const int R = (int)(j->OC - o0 < j->rb ? j->OC - o0 : j->rb);
        const char *wr = j->base + (size_t)o0 * j->row;
        float *ob = j->out + o0;
        const size_t ldo = (size_t)j->OC, C = (size_t)j->C;
        if (j->type == VM_TYPE_F32) {
            j->K->f32_rows(ob, ldo, (const float *)wr, j->row / sizeof(float), j->inp, C, R, j->B, j->C);
        } else if (j->type == VM_TYPE_F16 || j->type == VM_TYPE_BF16) {
            for (int r = 0; r < R; r++)
                j->K->dequant_row(j->type, wr + (size_t)r * j->row, wbuf + (size_t)r * C, j->C);
            j->K->f32_rows(ob, ldo, wbuf, C, j->inp, C, R, j->B, j->C);
        } else if (j->xp) {
            j->K->gemm->rows(j->type, ob, ldo, wr, j->row, j->xp, R, j->B, j->C);
        } else {
            j->K->act_rows(j->type, ob, ldo, wr, j->row, j->xq, j->arow, R, j->B, j->C);
        }
    }
}

void vm_matmul_forward(float *out, const float *inp, const vm_tensor *w, const float *bias, int B) {
    const int64_t C = w->ne[0], OC = w->ne[1];
    if (B <= 0 || OC <= 0) return;
    const vm_type type = w->type;
    const int widen = type == VM_TYPE_F16 || type == VM_TYPE_BF16;
    // below ~10 us of work a fork/join costs more than it saves (and nothing parallel is entered)
    const int parallel = OC * (int64_t)B * C > (1 << 17) && omp_get_max_threads() > 1;
    mm_job j = { vm_simd_kernels_get(vm_simd_get()), out, inp, (const char *)w->data, NULL, NULL, w->nb[1],
                 vm_act_row_size(type, C), type, C, OC, B, 0 };
    j.rb = row_block(OC, parallel ? omp_get_max_threads() : 1);
    const int prof = vm_prof_enabled();
    const double t_aq = prof ? vm_now_s() : 0.0;
    if (prof) vm_prof_matmul(2.0 * (double)C * (double)OC * B, (double)OC * (double)w->nb[1]);
    const int64_t n_blk = (OC + j.rb - 1) / j.rb;

    // quantised weights: int8 activations (B rows), computed once and shared by the threads;
    // small ones on the stack (decode calls this for every matrix of every token)
    char stack_xq[4096] __attribute__((aligned(32)));
    char *xq = NULL;
    if (type != VM_TYPE_F32 && !widen) {
        if (j.arow == 0) { matmul_plain(out, inp, w, B); goto add_bias; }
        xq = (size_t)B * j.arow <= sizeof stack_xq ? stack_xq : malloc((size_t)B * j.arow);
        if (!xq) { matmul_plain(out, inp, w, B); goto add_bias; }
        if (parallel && B > 1) {
            #pragma omp parallel for schedule(static)
            for (int b = 0; b < B; b++) j.K->act_quant(type, inp + (size_t)b * (size_t)C, xq + (size_t)b * j.arow, C);
        } else {
            for (int b = 0; b < B; b++) j.K->act_quant(type, inp + (size_t)b * (size_t)C, xq + (size_t)b * j.arow, C);
        }
        j.xq = xq;
    }
    // batches: the level's packed layout (tokens in vector lanes), built once and shared
    void *xp = NULL;
    const size_t psz = xq && B >= GEMM_MIN_B && j.K->gemm ? j.K->gemm->pack_size(type, B, C) : 0;
    if (psz && (xp = aligned_alloc(64, (psz + 63) / 64 * 64))) {
        // groups of gs tokens, independent of one another
        const int gs = j.K->gemm->group, G = (B + gs - 1) / gs;
        const size_t gb = j.K->gemm->pack_size(type, gs, C);
        #pragma omp parallel for schedule(static) if (parallel && G > 1)
        for (int g = 0; g < G; g++)
            j.K->gemm->pack(type, xq + (size_t)g * gs * j.arow, j.arow, B - gs * g < gs ? B - gs * g : gs, C, (char *)xp + (size_t)g * gb);
        j.xp = xp;
    }

    if (prof) vm_prof_act_quant(vm_now_s() - t_aq);
    int failed = 0;
    if (!parallel) {
        float *wbuf = widen ? malloc((size_t)j.rb * (size_t)C * sizeof(float)) : NULL;
        if (widen && !wbuf) failed = 1;
        else mm_blocks(&j, 0, n_blk, wbuf);
        free(wbuf);
    } else {
        #pragma omp parallel
        {
            float *wbuf = widen ? malloc((size_t)j.rb * (size_t)C * sizeof(float)) : NULL;
            if (widen && !wbuf) {
                #pragma omp atomic write
                failed = 1;
            }
            #pragma omp for schedule(static)
            for (int64_t ib = 0; ib < n_blk; ib++)
                if (!widen || wbuf) mm_blocks(&j, ib, ib + 1, wbuf);
            free(wbuf);
        }
    }
    if (xq != stack_xq) free(xq);
    free(xp);
    if (failed) matmul_plain(out, inp, w, B);   // out of memory for the widened rows
add_bias:
    if (bias)
        for (int b = 0; b < B; b++)
            for (int64_t o = 0; o < OC; o++) out[(size_t)b * (size_t)OC + (size_t)o] += bias[o];
}

// SIMD levels against the portable level, and the int8-activation dots against independent sums.
// Error bounds (documented here, checked below):
// - f32 / f16 / bf16 weights: both levels are float sums over C terms in different orders, each
//   within (C/8 + 8) u sum|w x| of the exact value (u = 2^-24: 8-lane partial sums of C/8 terms,
//   then a 3-level reduction and the tail); we check |a - b| <= 2 (C/8 + 8) u sum|w x|.
// - quantised weights: every level must give the SAME BITS (exact integer block sums, same float
//   steps). Against the exact dot of the dequantised weights with the unquantised activations the
//   int8 activations add at most sum_i |w_i| d_i / 2 (d_i = the scale of x_i's block = blockmax/127,
//   rounding to nearest), plus float rounding, bounded by 1e-5 sum|w x| + 1e-5 sum|w| d.
// - against the exact dot of the dequantised weights with the DEQUANTISED activations (d q), the
//   int8 path is exact up to float rounding: |err| <= 1e-5 sum|w xhat| (checks the bit unpacking).
// - attention: normalised by max |v| (per output): 1e-5; its backward: 1e-4 of each gradient's
//   largest magnitude against the portable double kernel.
// - SwiGLU forward and backward: the same bits at every level.
// Plus, for every level: same bits for a token alone or in a batch (every attention row against
// its decode), and with 1 or 2 threads.
#include "test.h"
#include "kernels/ops.h"
#include "kernels/simd.h"
#include "quant/tensor.h"
#include "quant/quant.h"
#include "util/rng.h"

#include <omp.h>
#include <string.h>

static vm_rng rng;
static void fill(float *x, size_t n, float s) {
    for (size_t i = 0; i < n; i++) x[i] = s * vm_rng_normal(&rng);
}

static const vm_type qtypes[] = {VM_TYPE_Q8_0, VM_TYPE_Q4_0, VM_TYPE_Q4_K, VM_TYPE_Q5_K, VM_TYPE_Q6_K};
static const vm_type ftypes[] = {VM_TYPE_F32, VM_TYPE_F16, VM_TYPE_BF16};

// A random (C, OC) weight tensor of `type` (data malloc'd) and its dequantised f32 copy.
static void make_weights(vm_tensor *t, float **deq, vm_type type, int64_t C, int64_t OC) {
    float *src = malloc((size_t)(C * OC) * sizeof(float));
    fill(src, (size_t)(C * OC), 0.5f);
    // a few outliers so block scales differ a lot
    for (int64_t i = 0; i < C * OC; i += 97) src[i] *= 8.0f;
    const size_t row = vm_type_row_size(type, C);
    void *data = malloc(row * (size_t)OC);
    *deq = malloc((size_t)(C * OC) * sizeof(float));
    for (int64_t o = 0; o < OC; o++) {
        vm_quant_row(type, src + o * C, (char *)data + o * row, C);
        vm_dequant_row(type, (char *)data + o * row, *deq + o * C, C);
    }
    free(src);
    vm_tensor_init(t, "w", type, 2, (int64_t[]){C, OC}, data);
}

static int run_level(vm_simd_level l, float *out, const float *inp, const vm_tensor *w, const float *bias, int B) {
    if (vm_simd_set(l)) return -1;
    vm_matmul_forward(out, inp, w, bias, B);
    return 0;
}

// Every level vs scalar for one type and shape; invariances within each level.
static void check_matmul(vm_type type, int64_t C, int64_t OC, int B) {
    vm_tensor w;
    float *deq;
    make_weights(&w, &deq, type, C, OC);
    float *inp = malloc((size_t)B * C * sizeof(float)), *bias = malloc((size_t)OC * sizeof(float));
    fill(inp, (size_t)B * C, 1.0f);
    fill(bias, (size_t)OC, 0.1f);
    const size_t n = (size_t)B * OC;
    float *ref = malloc(n * sizeof(float)), *out = malloc(n * sizeof(float)), *one = malloc((size_t)OC * sizeof(float));
    run_level(VM_SIMD_SCALAR, ref, inp, &w, bias, B);
    const int quant = vm_act_block(type) != 0;
    char what[96];
    for (int l = 0; l < VM_SIMD_COUNT; l++) {
        if (!vm_simd_supported((vm_simd_level)l)) continue;
        snprintf(what, sizeof what, "%s %s C=%lld OC=%lld B=%d", vm_simd_name((vm_simd_level)l),
                 vm_type_name(type), (long long)C, (long long)OC, B);
        omp_set_num_threads(2);
        run_level((vm_simd_level)l, out, inp, &w, bias, B);
        if (quant) {
            CHECK(memcmp(out, ref, n * sizeof(float)) == 0, "%s: bits differ from the scalar level", what);
        } else {
            double worst = 0;
            for (int b = 0; b < B; b++)
                for (int64_t o = 0; o < OC; o++) {
                    double mag = 0;
                    for (int64_t i = 0; i < C; i++) mag += fabs((double)deq[o * C + i] * inp[b * C + i]);
                    const double e = fabs((double)out[b * OC + o] - ref[b * OC + o]) / (mag + 1e-30);
                    if (e > worst) worst = e;
                }
            const double bound = 2.0 * ((double)C / 8 + 8) * 0x1p-24;
            CHECK(worst <= bound, "%s: normalised error %g > %g", what, worst, bound);
        }
        // a token alone gives the bits it gets in the batch; one thread gives the bits of two
        for (int b = 0; b < B; b += (B > 3 ? B / 3 : 1)) {
            vm_matmul_forward(one, inp + (size_t)b * C, &w, bias, 1);
            CHECK(memcmp(one, out + (size_t)b * OC, (size_t)OC * sizeof(float)) == 0, "%s: token %d alone differs", what, b);
        }
        omp_set_num_threads(1);
        float *o1 = malloc(n * sizeof(float));
        vm_matmul_forward(o1, inp, &w, bias, B);
        CHECK(memcmp(o1, out, n * sizeof(float)) == 0, "%s: 1 thread differs from 2", what);
        free(o1);
    }
    vm_simd_set(vm_simd_detect());
    free(ref); free(out); free(one); free(inp); free(bias); free(deq); free((void *)w.data);
}

// The int8 path against exact (double) sums of the dequantised weights: bounded by the activation
// quantisation error, and exact up to float rounding once the activations are dequantised too.
static void check_act_dot(vm_type type, int64_t C) {
    vm_tensor w;
    float *deq;
    make_weights(&w, &deq, type, C, 4);
    float *x = malloc((size_t)C * sizeof(float)), *xhat = malloc((size_t)C * sizeof(float)), *dx = malloc((size_t)C * sizeof(float));
    void *xq = malloc(vm_act_row_size(type, C));
    const int bs = vm_act_block(type);
    for (int rep = 0; rep < 4; rep++) {
        fill(x, (size_t)C, rep == 3 ? 100.0f : 1.0f);
        CHECK(vm_act_quant_row(type, x, xq, C) == 0, "act_quant_row %s", vm_type_name(type));
        for (int64_t i = 0; i < C; i++) {   // dequantised activations and block scales
            const int64_t blk = i / bs;
            const float d = bs == 32 ? ((vm_q8a32 *)xq)[blk].d : ((vm_q8a256 *)xq)[blk].d;
            const int8_t q = bs == 32 ? ((vm_q8a32 *)xq)[blk].qs[i % 32] : ((vm_q8a256 *)xq)[blk].qs[i % 256];
            xhat[i] = d * q;
            dx[i] = d;
        }
        if (bs == 256) {   // the 16-element sums
            int bad = 0;
            for (int64_t blk = 0; blk < C / 256; blk++)
                for (int g = 0; g < 16; g++) {
                    int s = 0;
                    for (int l = 0; l < 16; l++) s += ((vm_q8a256 *)xq)[blk].qs[16 * g + l];
                    bad += s != ((vm_q8a256 *)xq)[blk].bsums[g];
                }
            CHECK(bad == 0, "%s: %d wrong bsums", vm_type_name(type), bad);
        }
        for (int o = 0; o < 4; o++) {
            const float *wr = deq + o * C;
            double exact = 0, exact_hat = 0, mag = 0, mag_hat = 0, qbound = 0;
            for (int64_t i = 0; i < C; i++) {
                exact += (double)wr[i] * x[i];
                exact_hat += (double)wr[i] * xhat[i];
                mag += fabs((double)wr[i] * x[i]);
                mag_hat += fabs((double)wr[i] * xhat[i]);
                qbound += fabs((double)wr[i]) * dx[i] / 2;
            }
            const float got = vm_vec_dot_act(type, (const char *)w.data + o * w.nb[1], xq, C);
            CHECK(fabs(got - exact_hat) <= 1e-5 * mag_hat + 1e-30, "%s C=%lld: int8 dot %.9g vs dequantised %.9g",
                  vm_type_name(type), (long long)C, got, exact_hat);
            CHECK(fabs(got - exact) <= qbound * (1 + 1e-5) + 1e-5 * mag, "%s C=%lld: int8 dot %.9g vs exact %.9g beyond bound %g",
                  vm_type_name(type), (long long)C, got, exact, qbound);
            if (rep == 0 && o == 0)
                printf("%-5s C=%-5lld int8-activation error %.3g of sum|wx| (bound %.3g)\n", vm_type_name(type),
                       (long long)C, fabs(got - exact) / mag, qbound / mag);
        }
    }
    // a non-finite activation makes the result NaN, not silently finite
    x[1] = NAN;
    vm_act_quant_row(type, x, xq, C);
    CHECK(isnan(vm_vec_dot_act(type, w.data, xq, C)), "%s: NaN activation lost", vm_type_name(type));
    x[1] = INFINITY;
    vm_act_quant_row(type, x, xq, C);
    CHECK(!isfinite(vm_vec_dot_act(type, w.data, xq, C)), "%s: inf activation lost", vm_type_name(type));
    CHECK(vm_act_quant_row(type, x, xq, C + 1) == -1, "%s: bad n accepted", vm_type_name(type));
    free(x); free(xhat); free(dx); free(xq); free(deq); free((void *)w.data);
}

// Level l's kernel table, NULL when it is not compiled in or this CPU lacks it.
static const vm_simd_kernels *level_kernels(int l) {
    return vm_simd_supported((vm_simd_level)l) ? vm_simd_kernels_get((vm_simd_level)l) : NULL;
}

// Every level's activation quantisation writes the bytes of vm_act_quant_row (the SIMD code has a
// fast path for ordinary blocks and a general one): random rows at several scales, exact rounding
// ties, zero blocks, a denormal maximum (its reciprocal overflows), huge values, inf and NaN.
static void check_act_quant(vm_type type) {
    enum { C = 1024 };
    const size_t bytes = vm_act_row_size(type, C);
    float *x = malloc(C * sizeof(float));
    char *ref = malloc(bytes), *got = malloc(bytes);
    for (int rep = 0; rep < 8; rep++) {
        fill(x, C, rep == 1 ? 1e-3f : rep == 2 ? 1e30f : 1.0f);
        if (rep == 3)   // ties: block maximum 127, values k + 0.5 quantise with id = 1 exactly
            for (int i = 0; i < C; i++) x[i] = i % 32 == 0 ? 127.0f : (float)(i % 61 - 30) + 0.5f;
        if (rep == 4) for (int i = 0; i < 256; i++) x[i] = 0.0f;
        if (rep == 5) for (int i = 0; i < 256; i++) x[i] = (i % 3 ? 1 : -1) * 0x1p-149f * (float)(i % 4);
        if (rep == 6) { x[3] = INFINITY; x[300] = -INFINITY; x[700] = 0x1.fffffep127f; }
        if (rep == 7) { x[5] = NAN; x[600] = -NAN; }
        memset(ref, 0x55, bytes);
        CHECK(vm_act_quant_row(type, x, ref, C) == 0, "act_quant_row %s", vm_type_name(type));
        for (int l = 1; l < VM_SIMD_COUNT; l++) {
            const vm_simd_kernels *K = level_kernels(l);
            if (!K) continue;
            memset(got, 0x55, bytes);
            K->act_quant(type, x, got, C);
            CHECK(memcmp(ref, got, bytes) == 0, "%s %s act_quant case %d: bytes differ from vm_act_quant_row",
                  vm_simd_name((vm_simd_level)l), vm_type_name(type), rep);
        }
    }
    free(x); free(ref); free(got);
}

// Every level's dequant_row writes the floats of vm_dequant_row, for every compute type (random
// blocks with outliers; row lengths with and without a vector tail for F16/BF16).
static void check_dequant(void) {
    const vm_type types[] = {VM_TYPE_F16, VM_TYPE_BF16, VM_TYPE_Q8_0, VM_TYPE_Q4_0, VM_TYPE_Q4_K, VM_TYPE_Q5_K, VM_TYPE_Q6_K};
    for (size_t k = 0; k < sizeof types / sizeof *types; k++) {
        const int64_t C = types[k] == VM_TYPE_F16 || types[k] == VM_TYPE_BF16 ? 1037 : 1024;
        vm_tensor w;
        float *deq;
        make_weights(&w, &deq, types[k], C, 3);
        float *ref = malloc((size_t)C * sizeof(float)), *got = malloc((size_t)C * sizeof(float));
        for (int r = 0; r < 3; r++) {
            const char *row = (const char *)w.data + (size_t)r * w.nb[1];
            vm_dequant_row(types[k], row, ref, C);
            for (int l = 1; l < VM_SIMD_COUNT; l++) {
                const vm_simd_kernels *K = level_kernels(l);
                if (!K) continue;
                memset(got, 0x55, (size_t)C * sizeof(float));
                K->dequant_row(types[k], row, got, C);
                CHECK(memcmp(ref, got, (size_t)C * sizeof(float)) == 0, "%s %s dequant_row row %d differs from vm_dequant_row",
                      vm_simd_name((vm_simd_level)l), vm_type_name(types[k]), r);
            }
        }
        free(ref); free(got); free(deq); free((void *)w.data);
    }
}

// Every level's axpy_rows gives the scalar level's bits (row lists with gaps, lengths with and
// without vector tails, accumulation into a nonzero row).
static void check_axpy_rows(void) {
    const int64_t Cs[] = {7, 32, 45, 1536};
    for (size_t ci = 0; ci < sizeof Cs / sizeof *Cs; ci++) {
        const int64_t C = Cs[ci];
        enum { NR = 16 };
        float *wt = malloc((size_t)NR * C * sizeof(float)), g[NR], *ref = malloc(C * sizeof(float)), *got = malloc(C * sizeof(float));
        fill(wt, (size_t)NR * C, 1.0f);
        fill(g, NR, 1.0f);
        int idx[NR], m = 0;
        for (int j = 0; j < NR; j++)
            if (j % 3 != 1) idx[m++] = j;
        fill(ref, (size_t)C, 1.0f);
        memcpy(got, ref, C * sizeof(float));
        vm_simd_kernels_get(VM_SIMD_SCALAR)->axpy_rows(ref, g, wt, (size_t)C, idx, m, C);
        for (int l = 1; l < VM_SIMD_COUNT; l++) {
            const vm_simd_kernels *K = level_kernels(l);
            if (!K) continue;
            float *o = malloc(C * sizeof(float));
            memcpy(o, got, C * sizeof(float));
            K->axpy_rows(o, g, wt, (size_t)C, idx, m, C);
            CHECK(memcmp(o, ref, C * sizeof(float)) == 0, "%s axpy_rows C=%lld differs from the scalar level",
                  vm_simd_name((vm_simd_level)l), (long long)C);
            free(o);
        }
        // and the scalar level is one rounded multiply-add per listed row, in order
        int bad = 0;
        for (int64_t c = 0; c < C; c++) {
            float s = got[c];
            for (int k = 0; k < m; k++) {
                const float t = g[idx[k]] * wt[(size_t)idx[k] * C + c];
                s += t;
            }
            bad += memcmp(&s, &ref[c], sizeof s) != 0;
        }
        CHECK(bad == 0, "scalar axpy_rows C=%lld: %d elements differ from sequential axpys", (long long)C, bad);
        free(wt); free(ref); free(got);
    }
}

// The f32 kernels of every level above AVX2 give the AVX2 level's bits (the reference of the
// f32 tiles: the same products, accumulation association and horizontal-sum tree for every
// element), on random shapes: C with and without a tail of 8 or 16, odd token counts, row counts
// past a multiple of the tiles, strides wider than the rows. And their axpy_rows the scalar
// level's, for lengths around the vector widths and random row lists.
static void check_f32_levels(void) {
    const vm_simd_kernels *A = level_kernels(VM_SIMD_AVX2);
    if (!A) return;
    vm_rng r2;
    vm_rng_seed(&r2, 11);
    const int64_t Cs[] = {1, 7, 8, 9, 15, 16, 17, 24, 31, 33, 63, 64, 65, 96, 97, 128, 129, 200, 301};
    int n_cases = 0, bad = 0;
    for (int it = 0; it < 400; it++) {
        const int64_t C = Cs[it % (sizeof Cs / sizeof *Cs)];
        const int R = 1 + (int)((uint32_t)vm_rng_u64(&r2) % 70), B = 1 + (int)((uint32_t)vm_rng_u64(&r2) % 20);
        const size_t ldw = (size_t)C + (uint32_t)vm_rng_u64(&r2) % 5, ldx = (size_t)C + (uint32_t)vm_rng_u64(&r2) % 5;
        const size_t ldo = (size_t)R + (uint32_t)vm_rng_u64(&r2) % 4;
        float *w = malloc((size_t)R * ldw * sizeof(float)), *x = malloc((size_t)B * ldx * sizeof(float));
        float *ref = malloc((size_t)B * ldo * sizeof(float)), *got = malloc((size_t)B * ldo * sizeof(float));
        fill(w, (size_t)R * ldw, 1.0f);
        fill(x, (size_t)B * ldx, 1.0f);
        memset(ref, 0x55, (size_t)B * ldo * sizeof(float));
        A->f32_rows(ref, ldo, w, ldw, x, ldx, R, B, C);
        for (int l = VM_SIMD_AVX2 + 1; l < VM_SIMD_COUNT; l++) {
            const vm_simd_kernels *K = level_kernels(l);
            if (!K) continue;
            memset(got, 0x55, (size_t)B * ldo * sizeof(float));   // untouched gaps must match too
            K->f32_rows(got, ldo, w, ldw, x, ldx, R, B, C);
            n_cases++;
            if (memcmp(got, ref, (size_t)B * ldo * sizeof(float))) {
                if (bad++ < 5) printf("%s f32_rows C=%lld R=%d B=%d: bits differ from avx2\n", vm_simd_name((vm_simd_level)l), (long long)C, R, B);
            }
        }
        free(w); free(x); free(ref); free(got);
    }
    CHECK(bad == 0, "f32_rows: %d of %d cases differ from the avx2 level's bits", bad, n_cases);
    bad = n_cases = 0;
    for (int it = 0; it < 200; it++) {
        const int64_t C = Cs[it % (sizeof Cs / sizeof *Cs)] + (it / 19) * 16;
        enum { NR = 16 };
        const size_t ldw = (size_t)C + (uint32_t)vm_rng_u64(&r2) % 3;
        float *wt = malloc(NR * ldw * sizeof(float)), g[NR], *d0 = malloc((size_t)C * sizeof(float));
        float *ref = malloc((size_t)C * sizeof(float)), *got = malloc((size_t)C * sizeof(float));
        fill(wt, NR * ldw, 1.0f);
        fill(g, NR, 1.0f);
        fill(d0, (size_t)C, 1.0f);
        int idx[NR], m = 0;
        for (int j = 0; j < NR; j++)
            if ((uint32_t)vm_rng_u64(&r2) % 4) idx[m++] = j;
        memcpy(ref, d0, (size_t)C * sizeof(float));
        vm_simd_kernels_get(VM_SIMD_SCALAR)->axpy_rows(ref, g, wt, ldw, idx, m, C);
        for (int l = 1; l < VM_SIMD_COUNT; l++) {
            const vm_simd_kernels *K = level_kernels(l);
            if (!K) continue;
            memcpy(got, d0, (size_t)C * sizeof(float));
            K->axpy_rows(got, g, wt, ldw, idx, m, C);
            n_cases++;
            bad += memcmp(got, ref, (size_t)C * sizeof(float)) != 0;
        }
        free(wt); free(d0); free(ref); free(got);
    }
    CHECK(bad == 0, "axpy_rows: %d of %d cases differ from the scalar level's bits", bad, n_cases);
    // axpy_rows2: two tokens, each with the bits of the scalar axpy_rows over its rows with g != 0
    // (zeros, -0 and rows zero for both tokens in the gradients)
    bad = n_cases = 0;
    for (int it = 0; it < 200; it++) {
        const int64_t C = Cs[it % (sizeof Cs / sizeof *Cs)] + (it / 19) * 16;
        enum { NR = 16 };
        const int n = 1 + (int)((uint32_t)vm_rng_u64(&r2) % NR);
        const size_t ldw = (size_t)C + (uint32_t)vm_rng_u64(&r2) % 3;
        float *wt = malloc(NR * ldw * sizeof(float)), g[2][NR], *d0 = malloc(2 * (size_t)C * sizeof(float));
        float *ref = malloc(2 * (size_t)C * sizeof(float)), *got = malloc(2 * (size_t)C * sizeof(float));
        fill(wt, NR * ldw, 1.0f);
        fill(g[0], 2 * NR, 1.0f);
        for (int j = 0; j < 2 * NR; j++) {
            const uint32_t u = (uint32_t)vm_rng_u64(&r2) % 8;
            if (u == 0) g[j / NR][j % NR] = 0.0f;
            if (u == 1) g[j / NR][j % NR] = -0.0f;
            if (u == 2) g[0][j % NR] = g[1][j % NR] = 0.0f;
        }
        fill(d0, 2 * (size_t)C, 1.0f);
        memcpy(ref, d0, 2 * (size_t)C * sizeof(float));
        for (int t = 0; t < 2; t++) {
            int idx[NR], m = 0;
            for (int j = 0; j < n; j++)
                if (g[t][j] != 0.0f) idx[m++] = j;
            vm_simd_kernels_get(VM_SIMD_SCALAR)->axpy_rows(ref + t * C, g[t], wt, ldw, idx, m, C);
        }
        for (int l = 1; l < VM_SIMD_COUNT; l++) {
            const vm_simd_kernels *K = level_kernels(l);
            if (!K || !K->axpy_rows2) continue;
            memcpy(got, d0, 2 * (size_t)C * sizeof(float));
            K->axpy_rows2(got, got + C, g[0], g[1], wt, ldw, n, C);
            n_cases++;
            bad += memcmp(got, ref, 2 * (size_t)C * sizeof(float)) != 0;
        }
        free(wt); free(d0); free(ref); free(got);
    }
    CHECK(bad == 0, "axpy_rows2: %d of %d cases differ from the scalar level's bits", bad, n_cases);
    printf("f32_rows / axpy_rows: %d cases, every level bit-identical to avx2 / scalar\n", n_cases);
}

// The attention kernels of every level above AVX2 give the AVX2 level's bits, forward and
// backward (heads of 8: the forward pairs the heads of a KV group in 512-bit registers, the
// backward two blocks of 8 queries): contexts across the 64-key chunks, 1 to 150 queries (every
// block remainder, paired and lone blocks), groups of 1, 2 and 4 heads, 1 and 2 threads.
static void check_attention_levels(void) {
    const vm_simd_kernels *A = level_kernels(VM_SIMD_AVX2);
    if (!A) return;
    const int cases[][4] = {   // n_past, B, n_head, n_head_kv
        {0, 1, 8, 4}, {0, 2, 8, 4}, {0, 9, 8, 4}, {5, 17, 8, 4}, {63, 3, 8, 4}, {64, 66, 8, 4}, {130, 25, 8, 4},
        {0, 150, 8, 4}, {7, 31, 4, 1}, {70, 19, 8, 2}, {0, 13, 8, 8}, {3, 10, 6, 3}, {200, 1, 8, 4},
        {0, 12, 8, 4}, {9, 16, 8, 4}, {0, 20, 2, 1}, {60, 23, 8, 4}, {1, 27, 4, 2}, {0, 35, 8, 4}, {100, 44, 8, 4}};
    int bad = 0, n = 0;
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const int n_past = cases[c][0], B = cases[c][1], H = cases[c][2], HK = cases[c][3], HD = 8;
        const size_t qn = (size_t)B * H * HD, kvn = (size_t)(n_past + B) * HK * HD;
        float *q = malloc(qn * sizeof(float)), *kc = malloc(kvn * sizeof(float)), *vc = malloc(kvn * sizeof(float));
        float *ref = malloc(qn * sizeof(float)), *got = malloc(qn * sizeof(float));
        fill(q, qn, 1.0f); fill(kc, kvn, 1.0f); fill(vc, kvn, 1.0f);
        for (size_t i = 0; i < kvn; i += 7) kc[i] *= 6.0f;
        const float scale = 1.0f / sqrtf((float)HD);
        A->attention(ref, q, kc, vc, n_past, B, H, HK, HD, scale);
        // backward: gradients accumulated onto random ones, dq dk dv in one buffer
        float *go = malloc(qn * sizeof(float)), *g0 = malloc((qn + 2 * kvn) * sizeof(float));
        float *gref = malloc((qn + 2 * kvn) * sizeof(float)), *ggot = malloc((qn + 2 * kvn) * sizeof(float));
        fill(go, qn, 1.0f);
        fill(g0, qn + 2 * kvn, 0.1f);
        memcpy(gref, g0, (qn + 2 * kvn) * sizeof(float));
        A->attention_backward(gref, gref + qn, gref + qn + kvn, go, q, kc, vc, n_past, B, H, HK, HD, scale);
        for (int l = VM_SIMD_AVX2 + 1; l < VM_SIMD_COUNT; l++) {
            const vm_simd_kernels *K = level_kernels(l);
            if (!K) continue;
            for (int th = 1; th <= 2; th++) {
                omp_set_num_threads(th);
                memset(got, 0x55, qn * sizeof(float));
                K->attention(got, q, kc, vc, n_past, B, H, HK, HD, scale);
                memcpy(ggot, g0, (qn + 2 * kvn) * sizeof(float));
                K->attention_backward(ggot, ggot + qn, ggot + qn + kvn, go, q, kc, vc, n_past, B, H, HK, HD, scale);
                n += 2;
                if (memcmp(got, ref, qn * sizeof(float)) && bad++ < 5)
                    printf("%s attention n_past=%d B=%d H=%d/%d, %d threads: bits differ from avx2\n",
                           vm_simd_name((vm_simd_level)l), n_past, B, H, HK, th);
                if (memcmp(ggot, gref, (qn + 2 * kvn) * sizeof(float)) && bad++ < 5)
                    printf("%s attention backward n_past=%d B=%d H=%d/%d, %d threads: bits differ from avx2\n",
                           vm_simd_name((vm_simd_level)l), n_past, B, H, HK, th);
            }
        }
        free(q); free(kc); free(vc); free(ref); free(got); free(go); free(g0); free(gref); free(ggot);
    }
    CHECK(bad == 0, "attention: %d of %d cases differ from the avx2 level's bits", bad, n);
}

// vm_rmsnorm_forward gives the same bits at every level (8 rows in the lanes or one at a time):
// row counts around the blocks of 8, C with and without a tail of 8 and 16, in place.
static void check_rmsnorm_levels(void) {
    const int Bs[] = {1, 7, 8, 9, 16, 23, 40}, Cs[] = {1, 5, 8, 16, 17, 64, 97, 300};
    int bad = 0, n = 0;
    for (size_t bi = 0; bi < sizeof Bs / sizeof *Bs; bi++)
        for (size_t ci = 0; ci < sizeof Cs / sizeof *Cs; ci++) {
            const int B = Bs[bi], C = Cs[ci];
            float *x = malloc((size_t)B * C * sizeof(float)), *w = malloc((size_t)C * sizeof(float));
            float *ref = malloc((size_t)B * C * sizeof(float)), *got = malloc((size_t)B * C * sizeof(float));
            fill(x, (size_t)B * C, 3.0f);
            fill(w, (size_t)C, 1.0f);
            vm_simd_set(VM_SIMD_SCALAR);
            vm_rmsnorm_forward(ref, x, w, B, C, 1e-5f);
            for (int l = 1; l < VM_SIMD_COUNT; l++) {
                if (vm_simd_set((vm_simd_level)l)) continue;
                vm_rmsnorm_forward(got, x, w, B, C, 1e-5f);
                n++;
                bad += memcmp(got, ref, (size_t)B * C * sizeof(float)) != 0;
                memcpy(got, x, (size_t)B * C * sizeof(float));
                vm_rmsnorm_forward(got, got, w, B, C, 1e-5f);
                n++;
                bad += memcmp(got, ref, (size_t)B * C * sizeof(float)) != 0;
            }
            free(x); free(w); free(ref); free(got);
        }
    vm_simd_set(vm_simd_detect());
    CHECK(bad == 0, "rmsnorm: %d of %d cases differ from the portable level's bits", bad, n);
}

// Non-finite activations reach the outputs of quantised matmuls at every level (not rounded away).
static void check_nan(vm_type type) {
    enum { C = 512, OC = 8 };
    vm_tensor w;
    float *deq, x[C], out[OC];
    make_weights(&w, &deq, type, C, OC);
    fill(x, C, 1.0f);
    for (int l = 0; l < VM_SIMD_COUNT; l++) {
        if (vm_simd_set((vm_simd_level)l)) continue;
        x[300] = NAN;
        vm_matmul_forward(out, x, &w, NULL, 1);
        int n = 0;
        for (int o = 0; o < OC; o++) n += isnan(out[o]);
        CHECK(n == OC, "%s %s: %d of %d outputs NaN for a NaN input", vm_simd_name((vm_simd_level)l), vm_type_name(type), n, OC);
        x[300] = -INFINITY;
        vm_matmul_forward(out, x, &w, NULL, 1);
        n = 0;
        for (int o = 0; o < OC; o++) n += !isfinite(out[o]);
        CHECK(n == OC, "%s %s: %d of %d outputs non-finite for an inf input", vm_simd_name((vm_simd_level)l), vm_type_name(type), n, OC);
    }
    vm_simd_set(vm_simd_detect());
    free(deq); free((void *)w.data);
}

static void check_attention(int n_past, int B, int H, int HK, int HD) {
    const int ctx = n_past + B;
    const size_t qn = (size_t)B * H * HD, kvn = (size_t)ctx * HK * HD;
    float *q = malloc(qn * sizeof(float)), *kc = malloc(kvn * sizeof(float)), *vc = malloc(kvn * sizeof(float));
    float *ref = malloc(qn * sizeof(float)), *out = malloc(qn * sizeof(float)), *o1 = malloc(qn * sizeof(float));
    fill(q, qn, 1.0f); fill(kc, kvn, 1.0f); fill(vc, kvn, 1.0f);
    for (size_t i = 0; i < kvn; i += 7) kc[i] *= 6.0f;   // peaky scores: the running maximum moves
    const float scale = 1.0f / sqrtf((float)HD);
    vm_simd_set(VM_SIMD_SCALAR);
    vm_attention_forward(ref, q, kc, vc, n_past, B, H, HK, HD, scale);
    for (int l = 1; l < VM_SIMD_COUNT; l++) {
        if (vm_simd_set((vm_simd_level)l)) continue;
        omp_set_num_threads(2);
        vm_attention_forward(out, q, kc, vc, n_past, B, H, HK, HD, scale);
        double worst = 0;
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                for (int d = 0; d < HD; d++) {
                    double mag = 0;   // outputs are convex combinations of v: normalise by max |v|
                    for (int t = 0; t <= n_past + b; t++) mag = fmax(mag, fabs(vc[(size_t)t * HK * HD + (size_t)(h / (H / HK)) * HD + d]));
                    const size_t i = ((size_t)b * H + h) * HD + d;
                    worst = fmax(worst, fabs((double)out[i] - ref[i]) / (mag + 1e-30));
                }
        CHECK(worst <= 1e-5, "%s attention n_past=%d B=%d H=%d/%d hd=%d: normalised error %g", vm_simd_name((vm_simd_level)l),
              n_past, B, H, HK, HD, worst);
        // each query alone (decode) gives its batch bits; one thread gives two threads' bits
        const size_t row = (size_t)H * HD;
        int same = 1;
        for (int b = 0; b < B; b++) {
            vm_attention_forward(o1, q + b * row, kc, vc, n_past + b, 1, H, HK, HD, scale);
            same &= memcmp(o1, out + b * row, row * sizeof(float)) == 0;
        }
        CHECK(same, "%s attention n_past=%d B=%d hd=%d: a decode row differs", vm_simd_name((vm_simd_level)l), n_past, B, HD);
        omp_set_num_threads(1);
        vm_attention_forward(o1, q, kc, vc, n_past, B, H, HK, HD, scale);
        CHECK(memcmp(o1, out, qn * sizeof(float)) == 0, "%s attention: 1 thread differs from 2", vm_simd_name((vm_simd_level)l));
    }
    vm_simd_set(vm_simd_detect());
    free(q); free(kc); free(vc); free(ref); free(out); free(o1);
}

// The backward of every level against the portable one (double sums): dq, dk, dv within 1e-4 of
// each gradient's largest magnitude (float sums over up to n_kv terms against double ones), and
// the same bits with 1 and 2 threads.
static void check_attention_backward(int n_past, int B, int H, int HK, int HD) {
    const int ctx = n_past + B;
    const size_t qn = (size_t)B * H * HD, kvn = (size_t)ctx * HK * HD, n = 2 * qn + 2 * kvn;
    float *q = malloc(qn * sizeof(float)), *go = malloc(qn * sizeof(float)), *kc = malloc(kvn * sizeof(float)),
          *vc = malloc(kvn * sizeof(float)), *ref = calloc(n, sizeof(float)), *g = malloc(n * sizeof(float)),
          *g1 = malloc(n * sizeof(float));
    fill(q, qn, 1.0f); fill(go, qn, 1.0f); fill(kc, kvn, 1.0f); fill(vc, kvn, 1.0f);
    for (size_t i = 0; i < kvn; i += 7) kc[i] *= 6.0f;
    const float scale = 1.0f / sqrtf((float)HD);
    // g = [dq (qn) | dk (kvn) | dv (kvn) | unused]
    vm_attention_backward_scalar(ref, ref + qn, ref + qn + kvn, go, q, kc, vc, n_past, B, H, HK, HD, scale);
    for (int l = 1; l < VM_SIMD_COUNT; l++) {
        const vm_simd_kernels *K = vm_simd_kernels_get((vm_simd_level)l);
        if (!vm_simd_supported((vm_simd_level)l) || !K) continue;
        omp_set_num_threads(2);
        memset(g, 0, n * sizeof(float));
        K->attention_backward(g, g + qn, g + qn + kvn, go, q, kc, vc, n_past, B, H, HK, HD, scale);
        const size_t off[3] = {0, qn, qn + kvn}, len[3] = {qn, kvn, kvn};
        for (int w = 0; w < 3; w++) {
            double mag = 0, err = 0;
            for (size_t i = 0; i < len[w]; i++) {
                mag = fmax(mag, fabs(ref[off[w] + i]));
                err = fmax(err, fabs((double)g[off[w] + i] - ref[off[w] + i]));
            }
            CHECK(err <= 1e-4 * mag, "%s attention backward n_past=%d B=%d H=%d/%d hd=%d: d%c error %g of %g",
                  vm_simd_name((vm_simd_level)l), n_past, B, H, HK, HD, "qkv"[w], err, mag);
        }
        omp_set_num_threads(1);
        memset(g1, 0, n * sizeof(float));
        K->attention_backward(g1, g1 + qn, g1 + qn + kvn, go, q, kc, vc, n_past, B, H, HK, HD, scale);
        CHECK(memcmp(g, g1, n * sizeof(float)) == 0, "%s attention backward: 1 thread differs from 2", vm_simd_name((vm_simd_level)l));
    }
    free(q); free(go); free(kc); free(vc); free(ref); free(g); free(g1);
}

// SwiGLU forward and backward: the same bits at every level (one logistic, kernels/exp_neg.h), over
// gates from -120 to 120 (exp flushed to 0, both signs of zero) and a tail of n % 8.
static void check_swiglu(void) {
    enum { N = 203 };
    float g[N], u[N], go[N], ref[3][N], out[3][N];
    fill(g, N, 4.0f); fill(u, N, 1.0f); fill(go, N, 1.0f);
    g[0] = 0.0f; g[1] = -0.0f; g[2] = -120.0f; g[3] = 120.0f; g[4] = -86.0f; g[5] = -87.0f;
    const vm_simd_kernels *S = vm_simd_kernels_get(VM_SIMD_SCALAR);
    memset(ref, 0, sizeof ref);
    S->swiglu(ref[0], g, u, N);
    S->swiglu_backward(ref[1], ref[2], go, g, u, N);
    for (int l = 1; l < VM_SIMD_COUNT; l++) {
        const vm_simd_kernels *K = vm_simd_kernels_get((vm_simd_level)l);
        if (!vm_simd_supported((vm_simd_level)l) || !K) continue;
        memset(out, 0, sizeof out);
        K->swiglu(out[0], g, u, N);
        K->swiglu_backward(out[1], out[2], go, g, u, N);
        CHECK(memcmp(out, ref, sizeof ref) == 0, "%s swiglu: bits differ from the portable level", vm_simd_name((vm_simd_level)l));
    }
}

int main(void) {
    vm_rng_seed(&rng, 7);
    const int saved = omp_get_max_threads();
    printf("simd levels on this CPU:");
    for (int l = 0; l < VM_SIMD_COUNT; l++)
        if (vm_simd_supported((vm_simd_level)l)) printf(" %s", vm_simd_name((vm_simd_level)l));
    printf(" (default %s)\n", vm_simd_name(vm_simd_get()));
    CHECK(vm_simd_set(VM_SIMD_COUNT) == -1, "bad level accepted");
    CHECK(vm_simd_kernels_get(VM_SIMD_SCALAR) != NULL, "scalar table");

    // f32/f16/bf16: tails (C % 8), odd row counts, every token-tile remainder
    const int64_t fC[] = {8, 37, 64, 300};
    const int64_t fOC[] = {1, 13, 70};
    const int fB[] = {1, 2, 3, 5, 7};
    for (size_t t = 0; t < sizeof ftypes / sizeof *ftypes; t++)
        for (size_t i = 0; i < 4; i++)
            for (size_t j = 0; j < 3; j++)
                for (size_t k = 0; k < 5; k++) check_matmul(ftypes[t], fC[i], fOC[j], fB[k]);
    check_matmul(VM_TYPE_F32, 1536, 200, 9);   // above the parallel threshold, several row blocks
    // quantised types
    for (size_t t = 0; t < sizeof qtypes / sizeof *qtypes; t++) {
        const int64_t C = vm_act_block(qtypes[t]) == 32 ? 96 : 512;
        for (int B = 1; B <= 6; B++) check_matmul(qtypes[t], C, 19, B);
        check_matmul(qtypes[t], 1024, 150, 9);
        // batches through the packed path: whole and partial token groups, pairs of groups and a
        // lone one, row tiles of 4 and the 1-row remainder, several passes of 32 groups
        for (int B = 8; B <= 17; B += 3) check_matmul(qtypes[t], C, 23, B);
        check_matmul(qtypes[t], 1024, 70, 64);
        check_matmul(qtypes[t], C, 9, 300);
        if (t == 0) check_matmul(qtypes[t], C, 5, 600);   // more than 32 groups of 16: two passes
        check_act_dot(qtypes[t], 256);
        check_act_dot(qtypes[t], 2048);
        check_act_quant(qtypes[t]);
        check_nan(qtypes[t]);
    }
    check_dequant();
    check_axpy_rows();
    check_f32_levels();
    check_attention_levels();
    check_rmsnorm_levels();
    // attention: head dims with and without a vector tail, GQA, contexts across chunk boundaries
    check_attention(0, 5, 4, 4, 8);
    check_attention(70, 19, 8, 4, 8);   // hd 8: blocks of 8 queries in lanes across chunks, 2- and 3-query tails
    check_attention(0, 130, 2, 1, 8);
    check_attention(62, 10, 2, 2, 8);
    check_swiglu();
    check_attention_backward(0, 5, 4, 4, 8);
    check_attention_backward(70, 19, 8, 4, 8);
    check_attention_backward(60, 9, 8, 2, 32);
    check_attention_backward(130, 3, 4, 1, 12);
    check_attention_backward(40, 17, 8, 4, 64);
    check_attention_backward(10, 6, 4, 2, 128);
    check_attention(60, 9, 8, 2, 32);
    check_attention(130, 3, 4, 1, 12);
    check_attention(200, 17, 8, 4, 64);
    omp_set_num_threads(saved);
    return TEST_SUMMARY();
}

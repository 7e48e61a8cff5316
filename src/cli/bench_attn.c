// `vmoer bench --attention`: the attention kernels of the current SIMD level against frozen copies
// of the code they replaced (the AVX2 forward of commit 5074944, key-by-key libm expf; the
// backward: the portable double kernel, which every level ran then), timed in turns in one run so
// a busy machine slows both sides of a ratio alike.
#include "cli/bench_attn.h"
#include "kernels/ops.h"
#include "kernels/simd.h"
#include "util/progress.h"
#include "util/rng.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef VM_SIMD_X86
// ---- the AVX2 forward before the polynomial exp (frozen copy, for the ratio) ----------------------
#ifdef __clang__
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif
#include <immintrin.h>

#include "kernels/simd_avx2_util.h"

enum { OLD_CHUNK = 64 };   // keys scored before one softmax rescale; chunks start at absolute positions

AI float old_dot_hd(const float *a, const float *b, int n) {
    __m256 acc = _mm256_setzero_ps();
    int d = 0;
    for (; d + 8 <= n; d += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + d), _mm256_loadu_ps(b + d), acc);
    float s = hsum_ps(acc);
    for (; d < n; d++) s += a[d] * b[d];
    return s;
}

// lane j = the sum of the 8 lanes of v[j], added in hsum_ps's order ((l0+l4)+(l2+l6)) +
// ((l1+l5)+(l3+l7)), so a score is the same float whether its key was scored alone or with 7 others
AI __m256 old_hsum8x8_ps(const __m256 v[8]) {
    __m256 x[4];
    #pragma GCC unroll 4
    for (int j = 0; j < 4; j++)   // halves added: v[j]'s 4 sums low, v[j+4]'s high
        x[j] = _mm256_add_ps(_mm256_permute2f128_ps(v[j], v[j + 4], 0x20), _mm256_permute2f128_ps(v[j], v[j + 4], 0x31));
    const __m256 a = _mm256_add_ps(_mm256_unpacklo_ps(x[0], x[1]), _mm256_unpackhi_ps(x[0], x[1]));
    const __m256 b = _mm256_add_ps(_mm256_unpacklo_ps(x[2], x[3]), _mm256_unpackhi_ps(x[2], x[3]));
    return _mm256_add_ps(_mm256_shuffle_ps(a, b, 0x44), _mm256_shuffle_ps(a, b, 0xee));
}

// One query head over n_kv cached positions, a chunk of keys at a time: the chunk's scores (8 keys
// per pass over q, each one's sum as old_dot_hd's), their maximum, one rescale of what was accumulated
// when the maximum grows, then o += e_j v_j with slices of o in registers. The float operations of
// every output element are those of a key-by-key update (same bits as before this layout), and
// every query takes them whatever its batch.
static void old_attend_one(float *o, const float *qv, const float *kc, const float *vc, size_t kv_stride,
                       int n_kv, int hd, float scale) {
    float s[OLD_CHUNK] __attribute__((aligned(32)));
    float mx = -INFINITY, sum = 0.0f;
    const int hv = hd & ~7;   // the vector part of a head
    for (int d = 0; d < hd; d++) o[d] = 0.0f;
    for (int t0 = 0; t0 < n_kv; t0 += OLD_CHUNK) {
        const int n = n_kv - t0 < OLD_CHUNK ? n_kv - t0 : OLD_CHUNK;
        const float *k0 = kc + (size_t)t0 * kv_stride, *v0 = vc + (size_t)t0 * kv_stride;
        int j = 0;
        for (; j + 8 <= n; j += 8) {
            __m256 acc[8];
            #pragma GCC unroll 8
            for (int u = 0; u < 8; u++) acc[u] = _mm256_setzero_ps();
            for (int d = 0; d < hv; d += 8) {
                const __m256 q8 = _mm256_loadu_ps(qv + d);
                #pragma GCC unroll 8
                for (int u = 0; u < 8; u++) acc[u] = _mm256_fmadd_ps(q8, _mm256_loadu_ps(k0 + (size_t)(j + u) * kv_stride + d), acc[u]);
            }
            float sc[8];
            _mm256_storeu_ps(sc, old_hsum8x8_ps(acc));
            for (int u = 0; u < 8; u++) {   // head tails in old_dot_hd's order
                for (int d = hv; d < hd; d++) sc[u] += qv[d] * k0[(size_t)(j + u) * kv_stride + d];
                s[j + u] = sc[u] * scale;
            }
        }
        for (; j < n; j++) s[j] = old_dot_hd(qv, k0 + (size_t)j * kv_stride, hd) * scale;
        float cmax = -INFINITY;
        for (j = 0; j < n; j++) cmax = s[j] > cmax ? s[j] : cmax;
        float r = 1.0f;
        if (cmax > mx) { r = expf(mx - cmax); sum *= r; mx = cmax; }
        for (j = 0; j < n; j++) {
            s[j] = expf(s[j] - mx);
            sum += s[j];
        }
        // o = o r + sum_j e_j v_j, 32 (then 8) floats of o at a time in registers: per element the
        // multiply-adds of one key after another, as a key-by-key update would do them
        int d0 = 0;
        for (; d0 + 32 <= hd; d0 += 32) {
            __m256 ov[4];
            #pragma GCC unroll 4
            for (int u = 0; u < 4; u++) ov[u] = _mm256_mul_ps(_mm256_set1_ps(r), _mm256_loadu_ps(o + d0 + 8 * u));
            for (j = 0; j < n; j++) {
                const __m256 e = _mm256_set1_ps(s[j]);
                const float *v = v0 + (size_t)j * kv_stride + d0;
                #pragma GCC unroll 4
                for (int u = 0; u < 4; u++) ov[u] = _mm256_fmadd_ps(e, _mm256_loadu_ps(v + 8 * u), ov[u]);
            }
            #pragma GCC unroll 4
            for (int u = 0; u < 4; u++) _mm256_storeu_ps(o + d0 + 8 * u, ov[u]);
        }
        for (; d0 + 8 <= hd; d0 += 8) {
            __m256 ov = _mm256_mul_ps(_mm256_set1_ps(r), _mm256_loadu_ps(o + d0));
            for (j = 0; j < n; j++) ov = _mm256_fmadd_ps(_mm256_set1_ps(s[j]), _mm256_loadu_ps(v0 + (size_t)j * kv_stride + d0), ov);
            _mm256_storeu_ps(o + d0, ov);
        }
        for (; d0 < hd; d0++) {   // tails: product, then sum
            float a = r * o[d0];
            for (j = 0; j < n; j++) {
                const float b = s[j] * v0[(size_t)j * kv_stride + d0];
                a += b;
            }
            o[d0] = a;
        }
    }
    const __m256 inv = _mm256_set1_ps(1.0f / sum);
    int d = 0;
    for (; d + 8 <= hd; d += 8) _mm256_storeu_ps(o + d, _mm256_mul_ps(inv, _mm256_loadu_ps(o + d)));
    for (; d < hd; d++) o[d] *= 1.0f / sum;
}

static void old_attention(float *out, const float *q, const float *kc, const float *vc, int n_past, int B,
                      int n_head, int n_head_kv, int hd, float scale) {
    const int group = n_head / n_head_kv;
    const size_t q_stride = (size_t)n_head * hd, kv_stride = (size_t)n_head_kv * hd;
    const int64_t n_items = (int64_t)B * n_head;
    #pragma omp parallel for schedule(static) if (n_items > 1 && (int64_t)(n_past + B) * n_items * hd > 32768)
    for (int64_t it = 0; it < n_items; it++) {
        const int b = (int)(it / n_head), h = (int)(it % n_head), hk = h / group;
        old_attend_one(out + (size_t)b * q_stride + (size_t)h * hd, q + (size_t)b * q_stride + (size_t)h * hd,
                   kc + (size_t)hk * hd, vc + (size_t)hk * hd, kv_stride, n_past + b + 1, hd, scale);
    }
}


#ifdef __clang__
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

typedef struct ajob {
    int kind;   // 0 old forward, 1 new forward, 2 old backward, 3 new backward
    const float *q, *kc, *vc, *go;
    float *out, *dq, *dk, *dv;
    int n_prompt, batch, n_head, n_head_kv, hd;
} ajob;

static void ajob_run(const ajob *j) {
    const float scale = 1.0f / sqrtf((float)j->hd);
    const size_t qd = (size_t)j->n_head * j->hd;
    if (j->kind <= 1) {   // the prompt in chunks, each over the cache so far
        for (int t0 = 0; t0 < j->n_prompt; t0 += j->batch) {
            const int B = j->n_prompt - t0 < j->batch ? j->n_prompt - t0 : j->batch;
#ifdef VM_SIMD_X86
            if (j->kind == 0 && vm_simd_get() != VM_SIMD_SCALAR)
                old_attention(j->out + t0 * qd, j->q + t0 * qd, j->kc, j->vc, t0, B, j->n_head, j->n_head_kv, j->hd, scale);
            else
#endif
            if (j->kind == 0)
                vm_attention_scalar(j->out + t0 * qd, j->q + t0 * qd, j->kc, j->vc, t0, B, j->n_head, j->n_head_kv, j->hd, scale);
            else
                vm_attention_forward(j->out + t0 * qd, j->q + t0 * qd, j->kc, j->vc, t0, B, j->n_head, j->n_head_kv, j->hd, scale);
        }
    } else if (j->kind == 2) {
        vm_attention_backward_scalar(j->dq, j->dk, j->dv, j->go, j->q, j->kc, j->vc, 0, j->n_prompt, j->n_head,
                                     j->n_head_kv, j->hd, scale);
    } else {
        vm_attention_backward(j->dq, j->dk, j->dv, j->go, j->q, j->kc, j->vc, 0, j->n_prompt, j->n_head, j->n_head_kv,
                              j->hd, scale);
    }
}

// With one thread the clock is the process CPU time (time descheduled does not count).
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Seconds per call of each job: calls batched to ~20 ms, 5 rounds in turns, the best kept.
static void time_ajobs(const ajob *j, int n, double *best) {
    double (*now)(void) = omp_get_max_threads() == 1 ? cpu_now : vm_now_s;
    int reps[4];
    for (int k = 0; k < n; k++) {
        ajob_run(&j[k]);
        int r = 1;
        for (;;) {
            const double t0 = now();
            for (int i = 0; i < r; i++) ajob_run(&j[k]);
            const double t = now() - t0;
            if (t > 0.02 || r > (1 << 16)) { best[k] = t / r; break; }
            r *= 2;
        }
        reps[k] = r;
    }
    for (int round = 0; round < 5; round++)
        for (int k = 0; k < n; k++) {
            const double t0 = now();
            for (int i = 0; i < reps[k]; i++) ajob_run(&j[k]);
            const double t = (now() - t0) / reps[k];
            if (t < best[k]) best[k] = t;
        }
}

int bench_attention(const int32_t *thr, int n_thr, int batch, int n_prompt, FILE *js) {
    static const struct { const char *name; int n_head, n_head_kv, hd; } sh[] = {
        {"stories", 8, 4, 8}, {"granite", 24, 8, 64}, {"hd128", 32, 8, 128}};
    const int ns = (int)(sizeof sh / sizeof *sh);
    printf("attention: simd %s, prompt %d tokens: forward in chunks of %d (old: %s), backward over the whole\n"
           "prompt (old: the portable double kernel); ms per call, best of 5 interleaved rounds\n",
           vm_simd_name(vm_simd_get()), n_prompt, batch,
           vm_simd_get() == VM_SIMD_SCALAR ? "the portable kernel with libm expf" : "the AVX2 kernel with libm expf");
    printf("%-8s %3s %5s %3s | %9s %9s %6s | %9s %9s %6s\n", "shape", "hd", "heads", "thr", "fwd old", "fwd new",
           "ratio", "bwd old", "bwd new", "ratio");
    if (js) fprintf(js, "{\"simd\": \"%s\", \"n_prompt\": %d, \"batch\": %d, \"results\": [", vm_simd_name(vm_simd_get()),
                    n_prompt, batch);
    vm_rng r;
    vm_rng_seed(&r, 5);
    int rc = 0, first = 1;
    for (int is = 0; is < ns && !rc; is++) {
        const size_t qn = (size_t)n_prompt * sh[is].n_head * sh[is].hd, kvn = (size_t)n_prompt * sh[is].n_head_kv * sh[is].hd;
        float *buf = malloc((4 * qn + 4 * kvn) * sizeof(float));
        if (!buf) { fprintf(stderr, "vmoer bench: out of memory\n"); rc = 1; break; }
        float *q = buf, *go = q + qn, *out = go + qn, *dq = out + qn, *kc = dq + qn, *vc = kc + kvn, *dk = vc + kvn,
              *dv = dk + kvn;
        for (size_t i = 0; i < 2 * qn; i++) buf[i] = vm_rng_normal(&r);
        for (size_t i = 0; i < 2 * kvn; i++) kc[i] = 2.0f * vm_rng_normal(&r);   // peaky: the maximum moves
        memset(dq, 0, qn * sizeof(float));
        memset(dk, 0, 2 * kvn * sizeof(float));
        for (int it = 0; it < n_thr; it++) {
            omp_set_num_threads(thr[it]);
            ajob j[4];
            for (int k = 0; k < 4; k++)
                j[k] = (ajob){k, q, kc, vc, go, out, dq, dk, dv, n_prompt, batch, sh[is].n_head, sh[is].n_head_kv, sh[is].hd};
            double s[4];
            time_ajobs(j, 4, s);
            printf("%-8s %3d %2d/%-2d %3d | %9.3f %9.3f %6.2f | %9.3f %9.3f %6.2f\n", sh[is].name, sh[is].hd,
                   sh[is].n_head, sh[is].n_head_kv, thr[it], s[0] * 1e3, s[1] * 1e3, s[0] / s[1], s[2] * 1e3, s[3] * 1e3,
                   s[2] / s[3]);
            if (js)
                fprintf(js, "%s\n  {\"shape\": \"%s\", \"hd\": %d, \"n_head\": %d, \"n_head_kv\": %d, \"threads\": %d, "
                            "\"fwd_old_ms\": %.4f, \"fwd_new_ms\": %.4f, \"fwd_speedup\": %.3f, \"bwd_old_ms\": %.4f, "
                            "\"bwd_new_ms\": %.4f, \"bwd_speedup\": %.3f}",
                        first ? "" : ",", sh[is].name, sh[is].hd, sh[is].n_head, sh[is].n_head_kv, thr[it], s[0] * 1e3,
                        s[1] * 1e3, s[0] / s[1], s[2] * 1e3, s[3] * 1e3, s[2] / s[3]);
            first = 0;
        }
        free(buf);
    }
    if (js) fprintf(js, "\n]}\n");
    return rc;
}

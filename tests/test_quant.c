// Tensor types: traits table, fp16/bf16 conversions (exhaustive), dequantisation and dot products
// against golden files from tests/reference/quant_ref.py, reference quantisers and round trips.
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "quant/quant.h"
#include "util/err.h"
#include "util/fileio.h"
#include "util/npy.h"
#include "util/rng.h"
#include "test.h"

#define GOLD "tests/golden/quant/"

static uint32_t fbits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

// ---- traits --------------------------------------------------------------------------------------

static void test_traits(void) {
    // ggml-common.h block sizes (bytes) and elements per block
    static const struct { int id; const char *name; int64_t blck; size_t size; int compute; } want[] = {
        {0, "f32", 1, 4, 1}, {1, "f16", 1, 2, 1}, {2, "q4_0", 32, 18, 1}, {3, "q4_1", 32, 20, 0},
        {6, "q5_0", 32, 22, 0}, {7, "q5_1", 32, 24, 0}, {8, "q8_0", 32, 34, 1}, {9, "q8_1", 32, 36, 0},
        {10, "q2_K", 256, 84, 0}, {11, "q3_K", 256, 110, 0}, {12, "q4_K", 256, 144, 1},
        {13, "q5_K", 256, 176, 1}, {14, "q6_K", 256, 210, 1}, {15, "q8_K", 256, 292, 0},
        {16, "iq2_xxs", 256, 66, 0}, {17, "iq2_xs", 256, 74, 0}, {18, "iq3_xxs", 256, 98, 0},
        {19, "iq1_s", 256, 50, 0}, {20, "iq4_nl", 32, 18, 0}, {21, "iq3_s", 256, 110, 0},
        {22, "iq2_s", 256, 82, 0}, {23, "iq4_xs", 256, 136, 0}, {24, "i8", 1, 1, 0}, {25, "i16", 1, 2, 0},
        {26, "i32", 1, 4, 0}, {27, "i64", 1, 8, 0}, {28, "f64", 1, 8, 0}, {29, "iq1_m", 256, 56, 0},
        {30, "bf16", 1, 2, 1}, {34, "tq1_0", 256, 54, 0}, {35, "tq2_0", 256, 66, 0}, {39, "mxfp4", 32, 17, 0},
    };
    int known[VM_TYPE_COUNT] = {0};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const vm_type_traits *t = vm_type_get(want[i].id);
        known[want[i].id] = 1;
        CHECK(t != NULL, "type %d missing", want[i].id);
        if (!t) continue;
        CHECK(strcmp(t->name, want[i].name) == 0, "type %d name %s", want[i].id, t->name);
        CHECK(t->blck_size == want[i].blck && t->type_size == want[i].size, "type %s geometry %lld/%zu",
              want[i].name, (long long)t->blck_size, t->type_size);
        CHECK(t->compute == want[i].compute, "type %s compute %d", want[i].name, t->compute);
        CHECK(vm_type_from_name(want[i].name) == want[i].id, "from_name %s", want[i].name);
    }
    for (int id = -3; id < VM_TYPE_COUNT + 5; id++)
        if (id < 0 || id >= VM_TYPE_COUNT || !known[id]) {
            CHECK(vm_type_get(id) == NULL, "id %d should be unknown", id);
            CHECK(strcmp(vm_type_name(id), "?") == 0, "name of unknown id %d", id);
        }
    CHECK(vm_type_get(1000000) == NULL && vm_type_get(-2147483647 - 1) == NULL, "far ids");
    CHECK(vm_type_from_name("Q4_k") == VM_TYPE_Q4_K && vm_type_from_name("BF16") == VM_TYPE_BF16, "case-insensitive");
    CHECK(vm_type_from_name("q4_2") == -1 && vm_type_from_name("") == -1 && vm_type_from_name(NULL) == -1, "unknown names");

    CHECK(vm_type_row_size(VM_TYPE_Q4_K, 512) == 288, "q4_K 512");
    CHECK(vm_type_row_size(VM_TYPE_Q8_0, 4096) == 128 * 34, "q8_0 4096");
    CHECK(vm_type_row_size(VM_TYPE_F32, 7) == 28, "f32 7");
    CHECK(vm_type_row_size(VM_TYPE_BF16, 3) == 6, "bf16 3");
    CHECK(vm_type_row_size(VM_TYPE_Q4_0, 33) == 0, "q4_0 33 not a multiple");
    CHECK(vm_type_row_size(VM_TYPE_Q6_K, -256) == 0, "negative n");
    CHECK(vm_type_row_size((vm_type)4, 32) == 0, "hole type");
    CHECK(vm_type_row_size(VM_TYPE_F64, INT64_MAX - 7) == 0, "overflow f64");
    CHECK(vm_type_row_size(VM_TYPE_F32, (int64_t)1 << 62) == 0, "overflow f32 (2^64 bytes)");
    CHECK(vm_type_row_size(VM_TYPE_Q6_K, (INT64_MAX / 256) * 256) == (size_t)(INT64_MAX / 256) * 210, "large q6_K fits");
    CHECK(vm_type_row_size(VM_TYPE_I8, INT64_MAX) == (size_t)INT64_MAX, "large i8 fits");
}

// ---- fp16 / bf16 ---------------------------------------------------------------------------------

// binary16 value from its definition (independent of the bit manipulation in half.c)
static double fp16_def(uint16_t h) {
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
    return s ? -v : v;
}

static void test_fp16(void) {
    // every pattern: golden hash from numpy, and the definition
    uint64_t hash = 0xcbf29ce484222325ull;
    int bad_def = 0, bad_rt = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = vm_fp16_to_fp32((uint16_t)h);
        uint32_t u = isnan(f) ? 0x7fc00000u : fbits(f);
        for (int k = 0; k < 4; k++) hash = (hash ^ ((u >> (8 * k)) & 0xff)) * 0x100000001b3ull;
        double want = fp16_def((uint16_t)h);
        if (isnan(want) ? !isnan(f) : (f != want || !signbit(f) != !signbit(want))) bad_def++;
        if (!isnan(want) && vm_fp32_to_fp16(f) != h) bad_rt++;
    }
    CHECK(bad_def == 0, "%d fp16 -> fp32 differ from the definition", bad_def);
    CHECK(bad_rt == 0, "%d fp16 -> fp32 -> fp16 round trips fail", bad_rt);
    char *txt = vm_read_file(GOLD "f16_table.txt", NULL);
    CHECK(txt != NULL, "read f16_table.txt: %s", vm_errmsg());
    if (txt) {
        unsigned long long want = strtoull(txt, NULL, 16);
        CHECK(hash == want, "fp16 table hash %016llx vs numpy %016llx", (unsigned long long)hash, want);
        free(txt);
    }

    // rounding at every boundary: the midpoint between neighbours goes to the even one, one float
    // ulp either side to the nearer one (65504's upper neighbour counts as 65536, i.e. inf)
    int bad_mid = 0;
    for (uint32_t h = 0; h < 0x7c00; h++)
        for (int s = 0; s < 2; s++) {
            uint16_t lo = (uint16_t)(h | (s << 15)), hi = (uint16_t)((h + 1) | (s << 15));
            double a = fp16_def(lo), b = h + 1 == 0x7c00 ? (s ? -65536.0 : 65536.0) : fp16_def(hi);
            float mid = (float)((a + b) / 2);  // exact: 12 significant bits
            uint16_t even = (lo & 1) ? hi : lo;
            if (vm_fp32_to_fp16(mid) != even) bad_mid++;
            if (vm_fp32_to_fp16(nextafterf(mid, (float)a)) != lo) bad_mid++;
            if (vm_fp32_to_fp16(nextafterf(mid, (float)b)) != hi) bad_mid++;
        }
    CHECK(bad_mid == 0, "%d fp32 -> fp16 rounding-boundary cases wrong", bad_mid);

    float *src; int nd; int64_t shape[4]; size_t len;
    CHECK(vm_npy_read_f32(GOLD "f16_src.npy", &src, &nd, shape) == 0, "f16_src: %s", vm_errmsg());
    uint16_t *want = (uint16_t *)vm_read_file(GOLD "f16_from_f32.bin", &len);
    if (src && want && len == (size_t)shape[0] * 2) {
        int bad = 0;
        for (int64_t i = 0; i < shape[0]; i++)
            if (vm_fp32_to_fp16(src[i]) != want[i]) {
                if (bad++ < 5) fprintf(stderr, "  f16(%.9g) = %04x, numpy %04x\n", src[i], vm_fp32_to_fp16(src[i]), want[i]);
            }
        CHECK(bad == 0, "%d of %lld fp32 -> fp16 differ from numpy", bad, (long long)shape[0]);
    } else CHECK(0, "f16 golden sizes");
    free(src); free(want);

    uint16_t hn = vm_fp32_to_fp16(NAN), hnn = vm_fp32_to_fp16(-NAN);
    CHECK((hn & 0x7c00) == 0x7c00 && (hn & 0x3ff) && !(hn & 0x8000), "NaN -> fp16 %04x", hn);
    CHECK((hnn & 0x8000) && (hnn & 0x3ff), "-NaN -> fp16 %04x", hnn);
    float snan; uint32_t sb = 0x7f800001u; memcpy(&snan, &sb, 4);
    CHECK((vm_fp32_to_fp16(snan) & 0x7fff) > 0x7c00, "signalling NaN with low payload stays NaN");
    CHECK(vm_fp32_to_fp16(INFINITY) == 0x7c00 && vm_fp32_to_fp16(-INFINITY) == 0xfc00, "inf");
    CHECK(vm_fp32_to_fp16(-0.0f) == 0x8000, "-0");
}

static void test_bf16(void) {
    int bad_rt = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = vm_bf16_to_fp32((uint16_t)h);
        if (fbits(f) != h << 16) bad_rt++;
        if (!isnan(f) && vm_fp32_to_bf16(f) != h) bad_rt++;
    }
    CHECK(bad_rt == 0, "%d bf16 round trips fail", bad_rt);
    float *src; int nd; int64_t shape[4]; size_t len;
    CHECK(vm_npy_read_f32(GOLD "bf16_src.npy", &src, &nd, shape) == 0, "bf16_src: %s", vm_errmsg());
    uint16_t *want = (uint16_t *)vm_read_file(GOLD "bf16_from_f32.bin", &len);
    if (src && want && len == (size_t)shape[0] * 2) {
        int bad = 0;
        for (int64_t i = 0; i < shape[0]; i++)
            if (vm_fp32_to_bf16(src[i]) != want[i] && bad++ < 5)
                fprintf(stderr, "  bf16(%08x) = %04x, ref %04x\n", fbits(src[i]), vm_fp32_to_bf16(src[i]), want[i]);
        CHECK(bad == 0, "%d of %lld fp32 -> bf16 differ from the reference", bad, (long long)shape[0]);
    } else CHECK(0, "bf16 golden sizes");
    free(src); free(want);
    float snan; uint32_t sb = 0x7f800001u; memcpy(&snan, &sb, 4);
    uint16_t q = vm_fp32_to_bf16(snan);
    CHECK((q & 0x7f80) == 0x7f80 && (q & 0x40), "signalling NaN -> quiet bf16 NaN, got %04x", q);
    CHECK(vm_fp32_to_bf16(-NAN) & 0x8000, "NaN sign kept");
    CHECK(vm_fp32_to_bf16(3.4028235e38f) == 0x7f80, "FLT_MAX rounds to inf");
}

// ---- golden dequantisation and dot products --------------------------------------------------------

static const vm_type compute_types[] = {VM_TYPE_F32, VM_TYPE_F16, VM_TYPE_BF16, VM_TYPE_Q8_0,
                                        VM_TYPE_Q4_0, VM_TYPE_Q4_K, VM_TYPE_Q5_K, VM_TYPE_Q6_K};
#define NCOMPUTE (int)(sizeof compute_types / sizeof compute_types[0])

static void test_golden(void) {
    char path[256];
    float *x = NULL; int nd; int64_t xs[4];
    CHECK(vm_npy_read_f32(GOLD "x.npy", &x, &nd, xs) == 0, "x.npy: %s", vm_errmsg());
    if (!x) return;
    for (int t = 0; t < NCOMPUTE; t++) {
        vm_type type = compute_types[t];
        const char *name = vm_type_name(type);
        float *want = NULL, *dots = NULL; int64_t ws[4], ds[4]; size_t len = 0;
        snprintf(path, sizeof path, GOLD "%s.npy", name);
        int ok = vm_npy_read_f32(path, &want, &nd, ws) == 0 && nd == 2 && ws[1] == xs[0];
        snprintf(path, sizeof path, GOLD "%s_dot.npy", name);
        ok = ok && vm_npy_read_f32(path, &dots, &nd, ds) == 0 && ds[0] == ws[0];
        snprintf(path, sizeof path, GOLD "%s.bin", name);
        uint8_t *raw = ok ? (uint8_t *)vm_read_file(path, &len) : NULL;
        int64_t R = ok ? ws[0] : 0, N = ok ? ws[1] : 0;
        size_t rs = vm_type_row_size(type, N);
        CHECK(ok && raw && len == rs * (size_t)R, "%s golden files (%s)", name, vm_errmsg());
        if (!(ok && raw && len == rs * (size_t)R)) { free(want); free(dots); free(raw); continue; }
        float *y = malloc((size_t)N * sizeof *y);
        uint8_t *shifted = malloc(rs + 1);  // rows at an odd address must work too
        int bad = 0; double worst = 0;
        for (int64_t r = 0; r < R; r++) {
            const uint8_t *row = raw + rs * r;
            vm_dequant_row(type, row, y, N);
            for (int64_t i = 0; i < N; i++)
                if (fbits(y[i]) != fbits(want[r * N + i]) && bad++ < 3)
                    fprintf(stderr, "  %s row %lld [%lld]: %.9g vs golden %.9g\n", name, (long long)r, (long long)i, y[i], want[r * N + i]);
            memcpy(shifted + 1, row, rs);
            vm_dequant_row(type, shifted + 1, y, N);
            if (memcmp(y, want + r * N, (size_t)N * 4) != 0) bad++;
            double dot = vm_vec_dot(type, shifted + 1, x, N);
            double e = fabs(dot - dots[2 * r]) / dots[2 * r + 1];
            if (e > worst) worst = e;
        }
        CHECK(bad == 0, "%s: %d dequantised values differ from golden (bit-exact expected)", name, bad);
        CHECK(worst <= 1e-6, "%s: vec_dot normalised error %.3g > 1e-6", name, worst);
        printf("golden %-5s dequant exact, vec_dot max normalised error %.2e\n", name, worst);
        free(y); free(shifted); free(want); free(dots); free(raw);
    }
    free(x);
}

// vec_dot on long random rows against a float64 dot of the dequantised row
static void test_dot_long(void) {
    vm_rng rng; vm_rng_seed(&rng, 7);
    int64_t n = 256 * 16;
    float *src = malloc(n * 4), *x = malloc(n * 4), *y = malloc(n * 4);
    uint8_t *q = malloc(vm_type_row_size(VM_TYPE_F32, n));
    for (int64_t i = 0; i < n; i++) { src[i] = vm_rng_normal(&rng) + 0.3f; x[i] = vm_rng_normal(&rng); }
    for (int t = 0; t < NCOMPUTE; t++) {
        vm_type type = compute_types[t];
        CHECK(vm_quant_row(type, src, q, n) == 0, "quant %s", vm_type_name(type));
        vm_dequant_row(type, q, y, n);
        double ref = 0, abs = 0;
        for (int64_t i = 0; i < n; i++) { ref += (double)y[i] * x[i]; abs += fabs((double)y[i] * x[i]); }
        double e = fabs(vm_vec_dot(type, q, x, n) - ref) / abs;
        CHECK(e <= 1e-6, "%s n=%lld: normalised dot error %.3g", vm_type_name(type), (long long)n, e);
    }
    free(src); free(x); free(y); free(q);
}

// ---- quantisers ----------------------------------------------------------------------------------

static void test_quant_golden(void) {
    const vm_type types[2] = {VM_TYPE_Q8_0, VM_TYPE_Q4_0};
    for (int t = 0; t < 2; t++) {
        char path[256]; float *src = NULL; int nd; int64_t s[4]; size_t len = 0;
        snprintf(path, sizeof path, GOLD "%s_qsrc.npy", vm_type_name(types[t]));
        CHECK(vm_npy_read_f32(path, &src, &nd, s) == 0, "%s: %s", path, vm_errmsg());
        snprintf(path, sizeof path, GOLD "%s_q.bin", vm_type_name(types[t]));
        uint8_t *want = (uint8_t *)vm_read_file(path, &len);
        if (!src || !want) { free(src); free(want); continue; }
        int64_t n = s[0] * s[1];
        size_t rs = vm_type_row_size(types[t], n);
        CHECK(len == rs, "%s size", path);
        uint8_t *got = malloc(rs);
        CHECK(vm_quant_row(types[t], src, got, n) == 0, "quant");
        size_t nbad = 0, first = 0;
        for (size_t i = 0; i < rs && len == rs; i++) if (got[i] != want[i]) { if (!nbad++) first = i; }
        CHECK(nbad == 0, "%s quantiser: %zu bytes differ from ggml's rule (first at %zu)", vm_type_name(types[t]), nbad, first);
        free(src); free(want); free(got);
    }
}

// Per-element error bounds of each quantiser. K-quants: half a sub-block step d*sc (read back from
// the block via dequantising a unit probe would be circular, so the step is recomputed from bytes).
static float h16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return vm_fp16_to_fp32(v); }

static void kscale(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) { *sc = s[j] & 63; *m = s[j + 4] & 63; }
    else { *sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4); *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4); }
}

// Returns the worst (error / allowed) over the row, and the rms error relative to rms(x).
static double check_bounds(vm_type type, const float *x, const uint8_t *q, const float *y, int64_t n, double *rel_rms) {
    double worst = 0, se = 0, sx = 0;
    for (int64_t i = 0; i < n; i++) {
        double err = fabs((double)x[i] - y[i]), allow;
        se += err * err; sx += (double)x[i] * x[i];
        int64_t blk = i / vm_type_get(type)->blck_size, j = i % vm_type_get(type)->blck_size;
        const uint8_t *b = q + blk * vm_type_get(type)->type_size;
        const float *xb = x + blk * vm_type_get(type)->blck_size;
        switch (type) {
        case VM_TYPE_F16:  allow = fabs(x[i]) * 0x1p-11 + 0x1p-25; break;
        case VM_TYPE_BF16: allow = fabs(x[i]) * 0x1p-8 + 0x1p-134; break;
        case VM_TYPE_Q8_0: {
            double amax = 0; for (int k = 0; k < 32; k++) amax = fmax(amax, fabsf(xb[k]));
            double d = (float)(amax / 127), dh = h16(b);
            // half a step, plus the stored-fp16-vs-exact scale difference times |q| <= 127
            allow = 0.5 * d + 127 * fabs(d - dh) + 1e-6 * amax;
            break; }
        case VM_TYPE_Q4_0: {
            double amax = 0, mx = 0; for (int k = 0; k < 32; k++) if (amax < fabsf(xb[k])) { amax = fabsf(xb[k]); mx = xb[k]; }
            double d = (float)(mx / -8), dh = h16(b);
            // x/d in [-8, 8]; above 7.5 it is clamped to 7 (error up to |d|), else half a step
            int clamped = d != 0 && x[i] / d > 7.5;
            allow = (clamped ? 1.0 : 0.5) * fabs(d) + 8 * fabs(d - dh) + 1e-6 * amax;
            break; }
        case VM_TYPE_Q4_K: case VM_TYPE_Q5_K: {
            int sc, m; kscale(b + 4, (int)(j / 32), &sc, &m);
            allow = 0.5 * h16(b) * sc * (1 + 1e-5) + 1e-6 * fabs(h16(b + 2) * m);
            if (sc == 0) allow += h16(b + 2);  // constant sub-block: the min grid alone, within dmin
            break; }
        case VM_TYPE_Q6_K:
            allow = 0.5 * h16(b + 208) * ((const int8_t *)(b + 192))[j / 16] * (1 + 1e-5); break;
        default: allow = 0;
        }
        double r = err / (allow > 0 ? allow : 1e-30);
        if (err == 0) r = 0;
        if (r > worst) worst = r;
    }
    *rel_rms = sx > 0 ? sqrt(se / sx) : sqrt(se);
    return worst;
}

static void test_round_trips(void) {
    vm_rng rng; vm_rng_seed(&rng, 42);
    const int64_t n = 256 * 32;
    float *x = malloc(n * 4), *y = malloc(n * 4);
    uint8_t *q = malloc(n * 4);
    // expected rms error / rms(x) on N(0,1)-like data with varying block scales
    const double max_rel[NCOMPUTE] = {0, 3e-4, 3e-3, 0.01, 0.1, 0.1, 0.05, 0.03};
    const char *shapes[] = {"normal", "normal+offset", "uniform-positive", "outliers"};
    for (int shape = 0; shape < 4; shape++) {
        for (int64_t i = 0; i < n; i++) {
            float s = ldexpf(1, (int)(i / 256) % 9 - 4);  // block scales 2^-4 .. 2^4
            float v = vm_rng_normal(&rng);
            if (shape == 1) v += 1.5f;
            if (shape == 2) v = (float)vm_rng_uniform(&rng) * 3;
            if (shape == 3 && i % 97 == 0) v *= 40;
            x[i] = v * s;
        }
        for (int t = 0; t < NCOMPUTE; t++) {
            vm_type type = compute_types[t];
            CHECK(vm_quant_row(type, x, q, n) == 0, "quant %s", vm_type_name(type));
            vm_dequant_row(type, q, y, n);
            double rel;
            double w = type == VM_TYPE_F32 ? (memcmp(x, y, n * 4) != 0) : check_bounds(type, x, q, y, n, &rel);
            if (type == VM_TYPE_F32) rel = 0;
            CHECK(w <= 1.0, "%s %s: error is %.3f times its bound", vm_type_name(type), shapes[shape], w);
            if (shape != 3) CHECK(rel <= max_rel[t], "%s %s: relative rms error %.3g > %.3g", vm_type_name(type), shapes[shape], rel, max_rel[t]);
            if (shape == 0) printf("round trip %-5s %s: rel rms %.2e, worst err/bound %.3f\n", vm_type_name(type), shapes[shape], rel, w);
        }
    }
    // degenerate rows: zeros give zeros; a constant row is kept within its bound
    for (int t = 0; t < NCOMPUTE; t++) {
        vm_type type = compute_types[t];
        for (int64_t i = 0; i < n; i++) x[i] = 0;
        vm_quant_row(type, x, q, n);
        vm_dequant_row(type, q, y, n);
        int nz = 0; for (int64_t i = 0; i < n; i++) nz += y[i] != 0;
        CHECK(nz == 0, "%s: zero row dequantises to %d non-zeros", vm_type_name(type), nz);
        for (int64_t i = 0; i < n; i++) x[i] = -0.75f;
        vm_quant_row(type, x, q, n);
        vm_dequant_row(type, q, y, n);
        double rel, w = type == VM_TYPE_F32 ? 0 : check_bounds(type, x, q, y, n, &rel);
        CHECK(w <= 1.0, "%s constant row: %.3f times the bound", vm_type_name(type), w);
    }
    free(x); free(y); free(q);
}

static void test_errors(void) {
    float y[64], x[64] = {0};
    uint8_t buf[512] = {0};
    vm_err_clear();
    vm_dequant_row(VM_TYPE_Q4_1, buf, y, 32);
    CHECK(isnan(y[0]) && vm_errmsg()[0], "dequant of a non-compute type: NaN and an error");
    vm_err_clear();
    CHECK(isnan(vm_vec_dot(VM_TYPE_Q8_0, buf, x, 48)), "vec_dot with n not a block multiple");
    CHECK(vm_errmsg()[0] != 0, "error recorded");
    CHECK(isnan(vm_vec_dot((vm_type)5, buf, x, 32)), "vec_dot on a hole id");
    CHECK(vm_quant_row(VM_TYPE_IQ2_XXS, x, buf, 256) == -1, "no iq2_xxs quantiser");
    CHECK(vm_quant_row(VM_TYPE_Q8_0, x, buf, 31) == -1, "quant n not a block multiple");
    CHECK(vm_quant_row((vm_type)77, x, buf, 32) == -1, "quant unknown id");
    CHECK(vm_vec_dot(VM_TYPE_Q4_K, buf, x, 0) == 0, "empty row dots to 0");
}

// vm_type_find_nonfinite: the exact first position of a NaN/Inf (value types: every lane of the
// 8-byte words and the tail after them; block types: a bad d or dmin scale gives the block's first
// element), none for the largest finite values, subnormals and -0, and for integer quants.
static void test_nonfinite(void) {
    enum { N = 3 * 4096 + 77 };   // crosses the scan's chunks and leaves a tail of values
    static const vm_type vt[] = { VM_TYPE_F32, VM_TYPE_F16, VM_TYPE_BF16 };
    static const uint32_t bad_bits[3][3] = { { 0x7fc00000u, 0x7f800000u, 0xff800000u },   // NaN, +Inf, -Inf
                                             { 0x7e00, 0x7c00, 0xfc00 }, { 0x7fc0, 0x7f80, 0xff80 } };
    static const uint32_t edge_bits[3][4] = { { 0x7f7fffffu, 0x00000001u, 0x80000000u, 0xff7fffffu },   // max, subnormal, -0, -max
                                              { 0x7bff, 0x0001, 0x8000, 0xfbff }, { 0x7f7f, 0x0001, 0x8000, 0xff7f } };
    static uint8_t buf[4 * N];
    for (int k = 0; k < 3; k++) {
        const size_t w = k ? 2 : 4;
        for (size_t i = 0; i < N; i++) { const uint32_t e = edge_bits[k][i % 4]; memcpy(buf + w * i, &e, w); }
        CHECK(vm_type_find_nonfinite(vt[k], buf, N) == -1, "%s: finite values reported", vm_type_name(vt[k]));
        const int64_t at[] = { 0, 1, 2, 3, 5, 4095, 4096, 8191, N - 78, N - 1 };
        for (size_t a = 0; a < sizeof at / sizeof *at; a++)
            for (int b = 0; b < 3; b++) {
                uint8_t save[4];
                memcpy(save, buf + w * (size_t)at[a], w);
                memcpy(buf + w * (size_t)at[a], &bad_bits[k][b], w);
                const int64_t got = vm_type_find_nonfinite(vt[k], buf, N);
                CHECK(got == at[a], "%s: bad value 0x%x at %lld found at %lld", vm_type_name(vt[k]), bad_bits[k][b],
                      (long long)at[a], (long long)got);
                memcpy(buf + w * (size_t)at[a], save, w);
            }
    }
    // blocks: scales at their offsets; the quants (int8 / nibbles) may hold any bytes
    static const struct { vm_type t; int bytes, per, d, dmin; } bt[] = {
        { VM_TYPE_Q8_0, 34, 32, 0, -1 }, { VM_TYPE_Q4_0, 18, 32, 0, -1 }, { VM_TYPE_Q4_K, 144, 256, 0, 2 },
        { VM_TYPE_Q5_K, 176, 256, 0, 2 }, { VM_TYPE_Q6_K, 210, 256, 208, -1 } };
    for (size_t k = 0; k < sizeof bt / sizeof *bt; k++) {
        const int nb = 4100;   // blocks: more than one chunk
        uint8_t *q = malloc((size_t)nb * bt[k].bytes);
        for (size_t i = 0; i < (size_t)nb * bt[k].bytes; i++) q[i] = 0xff;   // quants all ones
        for (int b = 0; b < nb; b++) {
            const uint16_t one = 0x3c00;
            memcpy(q + (size_t)b * bt[k].bytes + bt[k].d, &one, 2);
            if (bt[k].dmin >= 0) memcpy(q + (size_t)b * bt[k].bytes + bt[k].dmin, &one, 2);
        }
        const int64_t n = (int64_t)nb * bt[k].per;
        CHECK(vm_type_find_nonfinite(bt[k].t, q, n) == -1, "%s: finite blocks reported", vm_type_name(bt[k].t));
        const int blocks[] = { 0, 1, 4095, 4096, nb - 1 };
        for (size_t a = 0; a < sizeof blocks / sizeof *blocks; a++)
            for (int which = 0; which < 2; which++) {
                const int off = which ? bt[k].dmin : bt[k].d;
                if (off < 0) continue;
                uint8_t *p = q + (size_t)blocks[a] * bt[k].bytes + off;
                const uint16_t nan = 0x7e00, one = 0x3c00;
                memcpy(p, &nan, 2);
                const int64_t got = vm_type_find_nonfinite(bt[k].t, q, n);
                CHECK(got == (int64_t)blocks[a] * bt[k].per, "%s: bad %s in block %d found at %lld",
                      vm_type_name(bt[k].t), which ? "dmin" : "d", blocks[a], (long long)got);
                memcpy(p, &one, 2);
            }
        free(q);
    }
    CHECK(vm_type_find_nonfinite(VM_TYPE_I32, buf, 4) == -1, "integer types have no check");
}

int main(void) {
    test_nonfinite();
    test_traits();
    test_fp16();
    test_bf16();
    test_golden();
    test_dot_long();
    test_quant_golden();
    test_round_trips();
    test_errors();
    return TEST_SUMMARY();
}

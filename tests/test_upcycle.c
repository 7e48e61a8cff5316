// Upcycling (library API) on the real stories260K model: with noise 0 the MoE computes the dense
// function (any routing mixes identical experts), experts are bit-identical copies, noise changes
// the logits, the noise/router scales match their definitions and results are reproducible by seed.
#include "convert/convert.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "util/err.h"
#include "util/fileio.h"
#include "util/npy.h"
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];

static const char *tmp(const char *name) {
    static char buf[8][512];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, 512, "%s/%s", dir, name);
    return b;
}

// Logits (n, n_vocab) of every position; NULL on failure.
static float *all_logits(const char *path, const int32_t *ids, int n, int *n_vocab) {
    vm_model *m = vm_model_load(path);
    if (!m) { fprintf(stderr, "load %s: %s\n", path, vm_errmsg()); return NULL; }
    *n_vocab = m->hp.n_vocab;
    float *out = calloc((size_t)n * (size_t)m->hp.n_vocab, sizeof *out);
    vm_ctx *c = vm_ctx_init(m, n, n);
    if (!c || !out || vm_ctx_eval(c, ids, n, out)) { fprintf(stderr, "eval %s: %s\n", path, vm_errmsg()); free(out); out = NULL; }
    if (c) vm_ctx_free(c);
    vm_model_free(m);
    return out;
}

static double max_abs_diff(const float *a, const float *b, size_t n) {
    double d = 0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

static int files_equal(const char *a, const char *b) {
    vm_mmap x, y;
    if (vm_mmap_open(&x, a)) return -1;
    if (vm_mmap_open(&y, b)) { vm_mmap_close(&x); return -1; }
    int eq = x.size == y.size && !memcmp(x.data, y.data, x.size);
    vm_mmap_close(&x); vm_mmap_close(&y);
    return eq;
}

// Neuron partition (convert.h): with every expert selected at equal gates the MoE is the dense
// model; each dense neuron sits in exactly one expert (gate/up rows copied, down column times K),
// the core in every expert (down column as is), padding neurons are silent; the groups are more
// alike (gate-row cosine) than the neurons overall; refusals.
static void check_partition(const char *dense, const int32_t *ids, int n) {
    // own buffers: tmp()'s ring of 8 also holds main's names
    char pa[512], pb[512], pc[512], pc2[512], pd[512], px[512];
    snprintf(pa, sizeof pa, "%s/pa.gguf", dir); snprintf(pb, sizeof pb, "%s/pb.gguf", dir);
    snprintf(pc, sizeof pc, "%s/pc.gguf", dir); snprintf(pc2, sizeof pc2, "%s/pc2.gguf", dir);
    snprintf(pd, sizeof pd, "%s/pd.gguf", dir); snprintf(px, sizeof px, "%s/px.gguf", dir);
    vm_upcycle_opts all4 = { .n_expert = 4, .n_expert_used = 4, .router_std = 0, .seed = 5 };
    vm_upcycle_opts all8 = { .n_expert = 8, .n_expert_used = 8, .router_std = 0, .seed = 5 };
    vm_upcycle_opts top2 = { .n_expert = 8, .n_expert_used = 2, .router_std = 0.02f, .seed = 5 };
    vm_upcycle_partition_opts none = {0}, core = { .n_core = 40 }, gain = { .n_core = 40, .router_gain = 1 };
    vm_upcycle_partition_opts wide = { .n_core = 40, .n_ff_exp = 70 };   // 57 + 13 new neurons per expert
    CHECK(vm_upcycle_partition(dense, pa, &all4, &none) == 0, "partition 4/4: %s", vm_errmsg());
    CHECK(vm_upcycle_partition(dense, pb, &all8, &wide) == 0, "partition 8/8 core 40 width 70: %s", vm_errmsg());
    CHECK(vm_upcycle_partition(dense, pc, &top2, &core) == 0, "partition 8/2 core 40: %s", vm_errmsg());
    CHECK(vm_upcycle_partition(dense, pc2, &top2, &core) == 0 && files_equal(pc, pc2) == 1, "same seed, same bytes");
    top2.seed = 6;
    CHECK(vm_upcycle_partition(dense, pd, &top2, &gain) == 0 && files_equal(pc, pd) == 0, "another seed, another file");
    int V = 0, Va = 0, Vb = 0;
    float *ld = all_logits(dense, ids, n, &V), *la = all_logits(pa, ids, n, &Va), *lb = all_logits(pb, ids, n, &Vb);
    CHECK(ld && la && lb && Va == V && Vb == V, "logits");
    if (ld && la && lb) {
        const double da = max_abs_diff(ld, la, (size_t)n * V), db = max_abs_diff(ld, lb, (size_t)n * V);
        printf("partition, all experts at equal gates: max |dense - moe| = %.3g (4 groups), %.3g (8 groups + core 40 + 17 new)\n", da, db);
        CHECK(da <= 1e-4 && db <= 1e-4, "all experts at gates 1/N must compute the dense model: %g %g", da, db);
    }
    free(ld); free(la); free(lb);

    vm_gguf *gd = vm_gguf_open(dense), *gc = vm_gguf_open(pc);
    CHECK(gd && gc, "open: %s", vm_errmsg());
    if (gd && gc) {
        const int D = 64, F = 172, C = 40, N = 8, Fe = C + (F - C + N - 1) / N;   // 57: 17 per group, 4 padding
        int64_t fe = 0;
        CHECK(vm_gguf_get_i64(gc, "llama.expert_feed_forward_length", &fe) == 0 && fe == Fe, "expert width %lld", (long long)fe);
        int placed_ok = 1, core_ok = 1, pad_ok = 1, imp_ok = 1, n_pad = 0;
        double within = 0, overall = 0;
        int n_within = 0, n_overall = 0;
        for (int l = 0; l < 5; l++) {
            char nm[64];
            const float *w[3], *e[3];
            static const char *dn[3] = {"ffn_gate", "ffn_up", "ffn_down"}, *en[3] = {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"};
            int shapes = 1;
            for (int k = 0; k < 3; k++) {
                snprintf(nm, sizeof nm, "blk.%d.%s.weight", l, dn[k]);
                const vm_gguf_tensor_info *a = vm_gguf_find_tensor(gd, nm);
                snprintf(nm, sizeof nm, "blk.%d.%s.weight", l, en[k]);
                const vm_gguf_tensor_info *b = vm_gguf_find_tensor(gc, nm);
                shapes &= a && b && b->t.type == VM_TYPE_F32 && b->t.ne[2] == N && b->t.ne[0] == (k < 2 ? D : Fe);
                w[k] = a ? a->t.data : NULL; e[k] = b ? b->t.data : NULL;
            }
            CHECK(shapes, "layer %d: expert shapes", l);
            if (!shapes) continue;
            int seen[172] = {0}, in_core[172] = {0}, group[172], core_at[40];
            for (int x = 0; x < N; x++)
                for (int j = 0; j < Fe; j++) {
                    const float *g = e[0] + ((size_t)x * Fe + j) * D, *u = e[1] + ((size_t)x * Fe + j) * D;
                    int i = 0;
                    while (i < F && memcmp(g, w[0] + (size_t)i * D, (size_t)D * 4)) i++;
                    if (i == F) {   // padding: a zero down column
                        n_pad++;
                        for (int d = 0; d < D; d++) pad_ok &= e[2][((size_t)x * D + d) * Fe + j] == 0.0f;
                        continue;
                    }
                    placed_ok &= !memcmp(u, w[1] + (size_t)i * D, (size_t)D * 4);
                    const float sc = j < C ? 1.0f : 2.0f;
                    for (int d = 0; d < D; d++) placed_ok &= e[2][((size_t)x * D + d) * Fe + j] == sc * w[2][(size_t)d * F + i];
                    if (j >= C) { seen[i]++; group[i] = x; }
                    else if (x == 0) { core_at[j] = i; in_core[i] = 1; }   // slot j: one neuron in every expert
                    else core_ok &= core_at[j] == i;
                }
            double imp[172], min_core = INFINITY, max_rest = 0;
            for (int i = 0; i < F; i++) {
                double g2 = 0, u2 = 0, d2 = 0;
                for (int d = 0; d < D; d++) {
                    g2 += (double)w[0][i * D + d] * w[0][i * D + d]; u2 += (double)w[1][i * D + d] * w[1][i * D + d];
                    d2 += (double)w[2][(size_t)d * F + i] * w[2][(size_t)d * F + i];
                }
                imp[i] = sqrt(g2 * u2 * d2);
                if (in_core[i]) { if (imp[i] < min_core) min_core = imp[i]; core_ok &= seen[i] == 0; }
                else { if (imp[i] > max_rest) max_rest = imp[i]; placed_ok &= seen[i] == 1; }
            }
            imp_ok &= min_core >= max_rest;
            for (int i = 0; i < F; i++)   // gate-row cosine: pairs in one group vs all pairs of grouped neurons
                for (int k = i + 1; k < F; k++) {
                    if (in_core[i] || in_core[k]) continue;
                    double dot = 0, a2 = 0, b2 = 0;
                    for (int d = 0; d < D; d++) {
                        dot += (double)w[0][i * D + d] * w[0][k * D + d];
                        a2 += (double)w[0][i * D + d] * w[0][i * D + d]; b2 += (double)w[0][k * D + d] * w[0][k * D + d];
                    }
                    const double cs = dot / sqrt(a2 * b2);
                    overall += cs; n_overall++;
                    if (group[i] == group[k]) { within += cs; n_within++; }
                }
        }
        CHECK(placed_ok, "every grouped neuron in exactly one expert, rows copied, down column times K");
        CHECK(core_ok, "the core in every expert's first C slots, down column as is, in no group");
        CHECK(pad_ok && n_pad == 5 * 4, "padding neurons: %d, zero down columns %d", n_pad, pad_ok);
        CHECK(imp_ok, "the core holds the neurons of largest |gate| |up| |down|");
        printf("partition: mean gate-row cosine within groups %.3f, over all grouped pairs %.3f\n", within / n_within,
               overall / n_overall);
        CHECK(within / n_within > overall / n_overall + 0.05, "clustering: within %g vs overall %g", within / n_within,
              overall / n_overall);
    }
    if (gd) vm_gguf_free(gd);
    if (gc) vm_gguf_free(gc);
    // refusals
    vm_upcycle_opts noisy = top2;
    noisy.noise = 0.1f;
    CHECK(vm_upcycle_partition(dense, px, &noisy, &core) != 0 && strstr(vm_errmsg(), "noise"), "noise: %s", vm_errmsg());
    vm_upcycle_partition_opts narrow = { .n_core = 40, .n_ff_exp = 56 };
    CHECK(vm_upcycle_partition(dense, px, &top2, &narrow) != 0 && strstr(vm_errmsg(), "width"), "width 56: %s", vm_errmsg());
    vm_upcycle_partition_opts big = { .n_core = 173 };
    CHECK(vm_upcycle_partition(dense, px, &top2, &big) != 0 && strstr(vm_errmsg(), "core"), "core > F: %s", vm_errmsg());
    CHECK(access(px, F_OK) != 0, "no output on failure");
    const char *made[] = {pa, pb, pc, pc2, pd, px};
    for (size_t i = 0; i < sizeof made / sizeof *made; i++) remove(made[i]);
}

int main(void) {
    const char *td = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/vmoer_upcycle_XXXXXX", td && *td ? td : "/tmp");
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    char bin[512], tokf[512];
    snprintf(bin, sizeof bin, "%s/models/stories260K.bin", test_shared_dir());
    snprintf(tokf, sizeof tokf, "%s/models/tok512.bin", test_shared_dir());
    const char *dense = tmp("dense.gguf"), *dq8 = tmp("dense_q8.gguf"), *moe0 = tmp("moe0.gguf"),
               *moe5 = tmp("moe5.gguf"), *moe5b = tmp("moe5b.gguf"), *moe5c = tmp("moe5c.gguf"),
               *moeq = tmp("moeq.gguf"), *bad = tmp("bad.gguf");
    CHECK(vm_convert_llama2c(bin, tokf, dense, VM_TYPE_F32, NULL) == 0, "convert: %s", vm_errmsg());
    CHECK(vm_convert_llama2c(bin, tokf, dq8, VM_TYPE_Q8_0, NULL) == 0, "convert q8_0: %s", vm_errmsg());
    vm_upcycle_opts o0 = {4, 2, 0.0f, VM_UPCYCLE_ROUTER_STD, 7}, o5 = {4, 2, 0.05f, VM_UPCYCLE_ROUTER_STD, 7};
    CHECK(vm_upcycle(dense, moe0, &o0) == 0, "upcycle noise 0: %s", vm_errmsg());
    CHECK(vm_upcycle(dense, moe5, &o5) == 0, "upcycle noise 0.05: %s", vm_errmsg());
    CHECK(vm_upcycle(dense, moe5b, &o5) == 0, "upcycle again: %s", vm_errmsg());
    vm_upcycle_opts o5c = o5;
    o5c.seed = 8;
    CHECK(vm_upcycle(dense, moe5c, &o5c) == 0, "upcycle seed 8: %s", vm_errmsg());
    CHECK(files_equal(moe5, moe5b) == 1, "same seed must give the same file");
    CHECK(files_equal(moe5, moe5c) == 0, "another seed must give another file");

    // refusals
    CHECK(vm_upcycle(moe0, bad, &o0) != 0 && strstr(vm_errmsg(), "already a MoE"), "MoE input: %s", vm_errmsg());
    vm_upcycle_opts ok = {2, 3, 0, 0.02f, 0};
    CHECK(vm_upcycle(dense, bad, &ok) != 0 && !strchr(vm_errmsg(), '\n'), "top-k > N: %s", vm_errmsg());
    CHECK(access(bad, F_OK) != 0, "no output on failure");

    // the structure: stacked experts, router, keys; expert copies bit-identical at noise 0
    vm_gguf *gd = vm_gguf_open(dense), *g0 = vm_gguf_open(moe0), *g5 = vm_gguf_open(moe5);
    CHECK(gd && g0 && g5, "open: %s", vm_errmsg());
    if (gd && g0 && g5) {
        int64_t ne = 0, nu = 0;
        CHECK(vm_gguf_get_i64(g0, "llama.expert_count", &ne) == 0 && ne == 4, "expert_count %lld", (long long)ne);
        CHECK(vm_gguf_get_i64(g0, "llama.expert_used_count", &nu) == 0 && nu == 2, "expert_used_count %lld", (long long)nu);
        CHECK(g0->n_tensors == gd->n_tensors + 5 /* layers */, "tensor count %lld", (long long)g0->n_tensors);
        CHECK(vm_gguf_find_tensor(g0, "blk.0.ffn_gate.weight") == NULL, "dense FFN removed");
        static const char *dn[3] = {"ffn_gate", "ffn_up", "ffn_down"}, *en[3] = {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"};
        int identical = 1, shapes = 1;
        double noise_ss = 0, dense_ss = 0, cnt = 0, rss = 0, rcnt = 0;
        for (int l = 0; l < 5; l++) {
            char nm[64];
            for (int k = 0; k < 3; k++) {
                snprintf(nm, sizeof nm, "blk.%d.%s.weight", l, dn[k]);
                const vm_gguf_tensor_info *d = vm_gguf_find_tensor(gd, nm);
                snprintf(nm, sizeof nm, "blk.%d.%s.weight", l, en[k]);
                const vm_gguf_tensor_info *e0 = vm_gguf_find_tensor(g0, nm), *e5 = vm_gguf_find_tensor(g5, nm);
                if (!d || !e0 || !e5) { shapes = 0; continue; }
                shapes &= e0->t.n_dims == 3 && e0->t.ne[0] == d->t.ne[0] && e0->t.ne[1] == d->t.ne[1] && e0->t.ne[2] == 4;
                shapes &= e0->t.type == VM_TYPE_F32 && e5->t.type == VM_TYPE_F32;
                for (int x = 0; x < 4; x++) {
                    vm_tensor s0 = vm_tensor_slice2(&e0->t, x), s5 = vm_tensor_slice2(&e5->t, x);
                    identical &= !memcmp(s0.data, d->t.data, d->nbytes);
                    const float *a = d->t.data, *b = s5.data;
                    for (size_t i = 0; i < d->nbytes / 4; i++) {
                        noise_ss += ((double)b[i] - a[i]) * ((double)b[i] - a[i]);
                        dense_ss += (double)a[i] * a[i];
                        cnt++;
                    }
                }
            }
            snprintf(nm, sizeof nm, "blk.%d.ffn_gate_inp.weight", l);
            const vm_gguf_tensor_info *r = vm_gguf_find_tensor(g5, nm);
            if (!r || r->t.type != VM_TYPE_F32 || r->t.ne[0] != 64 || r->t.ne[1] != 4) { shapes = 0; continue; }
            for (int64_t i = 0; i < 64 * 4; i++) { double v = ((const float *)r->t.data)[i]; rss += v * v; rcnt++; }
        }
        CHECK(shapes, "stacked expert / router tensors of the expected shapes and types");
        CHECK(identical, "noise 0: every expert is a bit-identical copy of the dense matrix");
        // relative noise: per matrix std = 0.05 rms(W), so overall ratio ~ 0.05 (5 x 3 x 4 x ~11k draws)
        double rel = sqrt(noise_ss / dense_ss);
        CHECK(fabs(rel - 0.05) < 0.0025, "relative noise rms %.5f, want 0.05", rel);
        CHECK(fabs(sqrt(rss / rcnt) - 0.02) < 0.003, "router std %.5f, want 0.02", sqrt(rss / rcnt));
    }
    if (gd) vm_gguf_free(gd);
    if (g0) vm_gguf_free(g0);
    if (g5) vm_gguf_free(g5);

    // a q8_0 source keeps its types (rows of 172 are not whole q8_0 blocks: those are f16)
    o5.n_expert = 3;
    CHECK(vm_upcycle(dq8, moeq, &o5) == 0, "upcycle q8_0: %s", vm_errmsg());
    vm_gguf *gq = vm_gguf_open(moeq);
    if (gq) {
        const vm_gguf_tensor_info *a = vm_gguf_find_tensor(gq, "blk.2.ffn_up_exps.weight"),
                                  *b = vm_gguf_find_tensor(gq, "blk.2.ffn_down_exps.weight");
        CHECK(a && a->t.type == VM_TYPE_Q8_0 && b && b->t.type == VM_TYPE_F16, "q8_0 source keeps q8_0 / f16");
        vm_gguf_free(gq);
    } else CHECK(0, "open q8_0 MoE: %s", vm_errmsg());

    // the function: noise 0 reproduces the dense logits, noise 0.05 moves them
    vm_gguf *gt = vm_gguf_open(dense);
    vm_tokenizer *tok = gt ? vm_tokenizer_from_gguf(gt) : NULL;
    int32_t ids[64];
    const char *prompt = "Once upon a time, there was a little girl named Lily. She loved to play";
    int n = tok ? vm_tokenize(tok, prompt, strlen(prompt), 1, 0, ids, 64) : -1;
    CHECK(n > 10 && n <= 64, "tokenize: %d %s", n, vm_errmsg());
    if (tok) vm_tokenizer_free(tok);
    if (gt) vm_gguf_free(gt);
    if (n > 10 && n <= 64) {
        int V = 0, V0 = 0, V5 = 0;
        float *ld = all_logits(dense, ids, n, &V), *l0 = all_logits(moe0, ids, n, &V0), *l5 = all_logits(moe5, ids, n, &V5);
        CHECK(ld && l0 && l5 && V == 512 && V0 == V && V5 == V, "logits of the three models");
        if (ld && l0 && l5) {
            double d0 = max_abs_diff(ld, l0, (size_t)n * V), d5 = max_abs_diff(ld, l5, (size_t)n * V);
            printf("max |dense - moe(noise 0)| = %.3g, max |dense - moe(noise 0.05)| = %.3g over %d positions\n", d0, d5, n);
            CHECK(d0 <= 1e-5, "noise 0: logits differ from dense by %g", d0);
            CHECK(d5 > 1e-3, "noise 0.05: logits differ from dense by only %g", d5);
        }
        free(ld); free(l0); free(l5);
    }

    if (n > 10 && n <= 64) check_partition(dense, ids, n);

    // the converted dense model against the independent numpy forward of llama2.c
    // (tests/reference/stories_logits.py -> tests/golden/stories/logits_once.npy)
    {
        int32_t gids[5] = {1, 403, 407, 261, 378};
        float *gold = NULL;
        int nd = 0, V = 0;
        int64_t sh[4] = {0};
        CHECK(vm_npy_read_f32("tests/golden/stories/logits_once.npy", &gold, &nd, sh) == 0 && nd == 2 &&
              sh[0] == 5 && sh[1] == 512, "golden: %s", vm_errmsg());
        float *ld = gold ? all_logits(dense, gids, 5, &V) : NULL;
        if (ld && V == 512) {
            double d = max_abs_diff(ld, gold, 5 * 512);
            printf("max |vmoer - numpy reference| = %.3g (logits)\n", d);
            CHECK(d < 1e-4, "converted stories260K vs numpy reference: max diff %g", d);
        } else CHECK(0, "dense logits for the golden ids");
        free(ld); free(gold);
    }

    const char *all[] = {dense, dq8, moe0, moe5, moe5b, moe5c, moeq, bad};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) remove(all[i]);
    rmdir(dir);
    return TEST_SUMMARY();
}

// Dense llama GGUF -> Mixtral-layout MoE (sparse upcycling). Every tensor and key is kept; the
// dense blk.N.ffn_{gate,up,down}.weight become stacked experts
//   ffn_gate_exps / ffn_up_exps [n_embd, n_ff, N], ffn_down_exps [n_ff, n_embd, N]
// plus a router ffn_gate_inp [n_embd, N] (F32). The noise and seeding rules are in convert.h.
// Copied tensors are borrowed from the input mapping; only the expert stacks are allocated.
#include "convert/convert.h"
#include "gguf/gguf.h"
#include "gguf/tensor_names.h"
#include "util/err.h"
#include "util/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const vm_tn_id ffn_dense[3] = {VM_TN_FFN_GATE, VM_TN_FFN_UP, VM_TN_FFN_DOWN};
static const vm_tn_id ffn_exps[3] = {VM_TN_FFN_GATE_EXPS, VM_TN_FFN_UP_EXPS, VM_TN_FFN_DOWN_EXPS};

static uint64_t up_stream(int layer, int which, int expert) {
    return ((uint64_t)(uint32_t)layer << 32) | ((uint64_t)which << 24) | (uint64_t)(uint32_t)expert;
}

// Builds the N-expert stack of one dense matrix into *out (malloc'd). *type in: source type;
// out: the stored type.
static int up_stack(const vm_gguf_tensor_info *ti, int layer, int which, const vm_upcycle_opts *o,
                    vm_type *type, void **out, size_t *out_bytes) {
    const vm_tensor *t = &ti->t;
    int64_t cols = t->ne[0], rows = t->ne[1], N = o->n_expert;
    size_t total;
    *out = NULL;
    if (o->noise == 0.0f) {   // exact copies, any type
        *type = t->type;
        if (vm_size_mul(ti->nbytes, (size_t)N, &total)) return vm_err("%s: expert stack too large", ti->name);
        uint8_t *dst = vm_malloc(total);
        if (!dst) return -1;
        for (int64_t e = 0; e < N; e++) memcpy(dst + (size_t)e * ti->nbytes, t->data, ti->nbytes);
        *out = dst; *out_bytes = total;
        return 0;
    }
    const vm_type_traits *tr = vm_type_get(t->type);
    if (!tr || !tr->compute) return vm_err("%s: cannot dequantise type %s to add noise", ti->name, vm_type_name(t->type));
    size_t nel;
    if (vm_size_mul((size_t)cols, (size_t)rows, &nel)) return vm_err("%s: too large", ti->name);
    float *w = vm_malloc(nel * sizeof *w), *row = vm_malloc((size_t)cols * sizeof *row);
    if (!w || !row) { free(w); free(row); return -1; }
    double ss = 0;
    for (int64_t r = 0; r < rows; r++) {
        vm_dequant_row(t->type, (const uint8_t *)t->data + (size_t)r * t->nb[1], w + r * cols, cols);
        for (int64_t i = 0; i < cols; i++) ss += (double)w[r * cols + i] * w[r * cols + i];
    }
    float sd = o->noise * (float)sqrt(ss / (double)nel);
    // Keep the source type if it has a quantiser, else F32 (probe on the first row).
    vm_type st = t->type;
    size_t row_bytes = vm_type_row_size(st, cols);
    uint8_t *probe = row_bytes ? vm_malloc(row_bytes) : NULL;
    if (!probe || st == VM_TYPE_F32 || vm_quant_row(st, w, probe, cols)) { st = VM_TYPE_F32; row_bytes = (size_t)cols * 4; }
    free(probe);
    vm_err_clear();
    size_t mat;
    uint8_t *dst = NULL;
    if (vm_size_mul(row_bytes, (size_t)rows, &mat) || vm_size_mul(mat, (size_t)N, &total)) {
        vm_err("%s: expert stack too large", ti->name);
    } else if ((dst = vm_malloc(total))) {
        for (int64_t e = 0; e < N; e++) {
            vm_rng rng;
            vm_rng_seed2(&rng, o->seed, up_stream(layer, which, (int)e));
            for (int64_t r = 0; r < rows; r++) {
                for (int64_t i = 0; i < cols; i++) row[i] = w[r * cols + i] + sd * vm_rng_normal(&rng);
                uint8_t *d = dst + (size_t)e * mat + (size_t)r * row_bytes;
                if (st == VM_TYPE_F32) memcpy(d, row, row_bytes);
                else vm_quant_row(st, row, d, cols);
            }
        }
    }
    free(w); free(row);
    if (!dst) return -1;
    if (vm_type_check_finite(st, dst, (int64_t)(total / row_bytes) * cols, ti->name)) { free(dst); return -1; }   // noise can overflow
    *type = st; *out = dst; *out_bytes = total;
    return 0;
}

// ---------------------------------------------------------------- neuron partition
// MoEfication (Zhang et al. 2022), parameter-clustering split: the F neurons of the dense SwiGLU
// (row i of gate and up, column i of down) are divided into N groups of Fe = ceil(F/N) by balanced
// spherical k-means on the directions of their gate rows. Neurons whose gate rows point the same
// way have correlated pre-activations, so they tend to fire together, and a token's active neurons
// gather in few experts: top-K keeps them, a random choice of K experts mostly does not.

typedef struct pair_sim { double sim; int i, e; } pair_sim;

static int by_sim_desc(const void *a, const void *b) {   // ties by (neuron, expert): deterministic
    const pair_sim *x = a, *y = b;
    if (x->sim != y->sim) return x->sim > y->sim ? -1 : 1;
    if (x->i != y->i) return x->i < y->i ? -1 : 1;
    return (x->e > y->e) - (x->e < y->e);
}

// Balanced assignment of F unit vectors f (F,D) to N centroids c (N,D), at most cap each: the
// most similar (neuron, centroid) pairs first. assign (F) gets the group of every neuron.
static void assign_balanced(const float *f, const float *c, int F, int N, int D, int cap, pair_sim *ps,
                            int *fill, int *assign) {
    for (int i = 0; i < F; i++)
        for (int e = 0; e < N; e++) {
            double s = 0;
            for (int d = 0; d < D; d++) s += (double)f[(size_t)i * D + d] * c[(size_t)e * D + d];
            ps[(size_t)i * N + e] = (pair_sim){ s, i, e };
        }
    qsort(ps, (size_t)F * N, sizeof *ps, by_sim_desc);
    for (int e = 0; e < N; e++) fill[e] = 0;
    for (int i = 0; i < F; i++) assign[i] = -1;
    for (size_t k = 0; k < (size_t)F * N; k++) {
        const pair_sim *p = &ps[k];
        if (assign[p->i] >= 0 || fill[p->e] >= cap) continue;
        assign[p->i] = p->e;
        fill[p->e]++;
    }
}

// groups (N, Fe): the neurons of each expert in increasing index order, -1 = padding.
static int cluster_neurons(const float *gate, int F, int D, int N, int Fe, uint64_t seed, int layer, int *groups) {
    float *f = vm_malloc((size_t)F * D * sizeof *f), *c = vm_calloc((size_t)N * D, sizeof *c);
    pair_sim *ps = vm_malloc((size_t)F * N * sizeof *ps);
    int *fill = vm_malloc((size_t)N * sizeof *fill), *assign = vm_malloc((size_t)F * sizeof *assign);
    int *prev = vm_malloc((size_t)F * sizeof *prev);
    int rc = -1;
    if (!f || !c || !ps || !fill || !assign || !prev) goto done;
    for (int i = 0; i < F; i++) {   // unit directions (a zero row stays zero)
        double q = 0;
        for (int d = 0; d < D; d++) q += (double)gate[(size_t)i * D + d] * gate[(size_t)i * D + d];
        const double inv = q > 0 ? 1.0 / sqrt(q) : 0.0;
        for (int d = 0; d < D; d++) f[(size_t)i * D + d] = (float)(gate[(size_t)i * D + d] * inv);
    }
    // k-means++ seeding on 1 - cosine, from the stream (seed, layer, 4)
    vm_rng rng;
    vm_rng_seed2(&rng, seed, up_stream(layer, 4, 0));
    double *dist = (double *)ps;   // F doubles fit in the pair buffer (N >= 1)
    int first = (int)(vm_rng_u64(&rng) % (uint64_t)F);
    memcpy(c, f + (size_t)first * D, (size_t)D * sizeof *c);
    for (int e = 1; e < N; e++) {
        double tot = 0;
        for (int i = 0; i < F; i++) {
            double best = INFINITY;
            for (int k = 0; k < e; k++) {
                double s = 0;
                for (int d = 0; d < D; d++) s += (double)f[(size_t)i * D + d] * c[(size_t)k * D + d];
                if (1.0 - s < best) best = 1.0 - s;
            }
            dist[i] = best > 0 ? best * best : 0;
            tot += dist[i];
        }
        int pick = F - 1;
        double r = vm_rng_uniform(&rng) * tot;
        for (int i = 0; i < F; i++) { r -= dist[i]; if (r < 0) { pick = i; break; } }
        memcpy(c + (size_t)e * D, f + (size_t)pick * D, (size_t)D * sizeof *c);
    }
    for (int it = 0; it < 50; it++) {
        assign_balanced(f, c, F, N, D, Fe, ps, fill, assign);
        if (it > 0 && !memcmp(prev, assign, (size_t)F * sizeof *assign)) break;
        memcpy(prev, assign, (size_t)F * sizeof *assign);
        memset(c, 0, (size_t)N * D * sizeof *c);
        for (int i = 0; i < F; i++)
            for (int d = 0; d < D; d++) c[(size_t)assign[i] * D + d] += f[(size_t)i * D + d];
        for (int e = 0; e < N; e++) {
            double q = 0;
            for (int d = 0; d < D; d++) q += (double)c[(size_t)e * D + d] * c[(size_t)e * D + d];
            const double inv = q > 0 ? 1.0 / sqrt(q) : 0.0;
            for (int d = 0; d < D; d++) c[(size_t)e * D + d] = (float)(c[(size_t)e * D + d] * inv);
        }
    }
    for (int e = 0; e < N; e++) fill[e] = 0;
    for (int k = 0; k < N * Fe; k++) groups[k] = -1;
    for (int i = 0; i < F; i++) groups[(size_t)assign[i] * Fe + fill[assign[i]]++] = i;
    rc = 0;
done:
    free(f); free(c); free(ps); free(fill); free(assign); free(prev);
    return rc;
}

// The three expert stacks (F32) and the router of one layer by neuron partition. ti: gate, up,
// down of the dense FFN. Expert e holds the neurons groups[e]: gate/up rows copied, down columns
// times K, so that K experts with the uniform gates 1/K of a fresh router add exactly their
// neurons' share of the dense output (and all N at gates 1/K... with K = N: the dense FFN itself).
// Padding neurons (F not a multiple of N) get N(0, rms^2) gate/up rows and a zero down column:
// silent at first, trainable. Router row e = router_gain * the mean gate row of its neurons (its
// logit is then proportional to the mean gate pre-activation of the expert's neurons), plus the
// usual N(0, router_std^2).
static int by_imp_desc(const void *a, const void *b) {   // (importance, index) pairs
    const double *x = a, *y = b;
    if (x[0] != y[0]) return x[0] > y[0] ? -1 : 1;
    return (x[1] > y[1]) - (x[1] < y[1]);
}

static int up_partition(const vm_gguf_tensor_info *const ti[3], int layer, const vm_upcycle_opts *o,
                        const vm_upcycle_partition_opts *po, int Fe, float *out[3], float *router) {
    const int D = (int)ti[0]->t.ne[0], F = (int)ti[0]->t.ne[1], N = o->n_expert, K = o->n_expert_used;
    const int C = po->n_core, Fg = Fe - C;   // core slots, group slots per expert
    float *w[3] = {0}, *sub = NULL;
    int *slot = vm_malloc((size_t)N * Fe * sizeof *slot), *groups = vm_malloc((size_t)N * (Fg > 0 ? Fg : 1) * sizeof *groups);
    int *rest = vm_malloc((size_t)F * sizeof *rest), *core_idx = vm_malloc((size_t)F * sizeof *core_idx), rc = -1;
    double *imp = vm_malloc((size_t)F * 2 * sizeof *imp);
    if (!slot || !groups || !rest || !core_idx || !imp) goto done;
    for (int k = 0; k < 3; k++) {   // gate, up (F,D); down (D,F)
        const vm_tensor *t = &ti[k]->t;
        const vm_type_traits *tr = vm_type_get(t->type);
        if (!tr || !tr->compute) { vm_err("%s: cannot dequantise type %s", ti[k]->name, vm_type_name(t->type)); goto done; }
        if (!(w[k] = vm_malloc((size_t)F * D * sizeof(float)))) goto done;
        for (int64_t r = 0; r < t->ne[1]; r++)
            vm_dequant_row(t->type, (const uint8_t *)t->data + (size_t)r * t->nb[1], w[k] + r * t->ne[0], t->ne[0]);
    }
    // The core: the C neurons of largest weight scale |gate_i| |up_i| |down_i|, in every expert.
    for (int i = 0; i < F; i++) {
        double g2 = 0, u2 = 0, d2 = 0;
        for (int d = 0; d < D; d++) {
            g2 += (double)w[0][(size_t)i * D + d] * w[0][(size_t)i * D + d];
            u2 += (double)w[1][(size_t)i * D + d] * w[1][(size_t)i * D + d];
            d2 += (double)w[2][(size_t)d * F + i] * w[2][(size_t)d * F + i];
        }
        imp[2 * i] = sqrt(g2 * u2 * d2);
        imp[2 * i + 1] = i;
    }
    qsort(imp, (size_t)F, 2 * sizeof *imp, by_imp_desc);
    for (int i = 0; i < F; i++) core_idx[i] = 0;   // flags first, then the core's indices
    for (int c = 0; c < C; c++) core_idx[(int)imp[2 * c + 1]] = 1;
    int nc = 0, nr = 0;
    for (int i = 0; i < F; i++) {   // core_idx[nc] with nc <= i: only flags already read are overwritten
        if (core_idx[i]) core_idx[nc++] = i;
        else rest[nr++] = i;
    }
    if (Fg > 0) {
        if (!(sub = vm_malloc((size_t)nr * D * sizeof *sub))) goto done;
        for (int j = 0; j < nr; j++) memcpy(sub + (size_t)j * D, w[0] + (size_t)rest[j] * D, (size_t)D * sizeof *sub);
        if (cluster_neurons(sub, nr, D, N, Fg, o->seed, layer, groups)) goto done;
    }
    for (int e = 0; e < N; e++)
        for (int j = 0; j < Fe; j++) {
            const int gi = j < C ? -2 : groups[(size_t)e * Fg + (j - C)];
            slot[(size_t)e * Fe + j] = j < C ? core_idx[j] : gi >= 0 ? rest[gi] : -1;
        }
    for (int k = 0; k < 2; k++) {   // padding rows: the matrix's own scale
        double ss = 0;
        for (size_t j = 0; j < (size_t)F * D; j++) ss += (double)w[k][j] * w[k][j];
        const float sd = (float)sqrt(ss / ((double)F * D));
        for (int e = 0; e < N; e++) {
            vm_rng rng;
            vm_rng_seed2(&rng, o->seed, up_stream(layer, k + 1, e));
            for (int j = 0; j < Fe; j++) {
                float *row = out[k] + ((size_t)e * Fe + j) * D;
                const int i = slot[(size_t)e * Fe + j];
                for (int d = 0; d < D; d++) row[d] = i >= 0 ? w[k][(size_t)i * D + d] : sd * vm_rng_normal(&rng);
            }
        }
    }
    for (int e = 0; e < N; e++)     // down: [Fe, D] per expert, row d = output dim
        for (int d = 0; d < D; d++)
            for (int j = 0; j < Fe; j++) {
                const int i = slot[(size_t)e * Fe + j];
                const float sc = j < C ? 1.0f : (float)K;   // the gates of the K experts sum to 1
                out[2][((size_t)e * D + d) * Fe + j] = i >= 0 ? sc * w[2][(size_t)d * F + i] : 0.0f;
            }
    vm_rng rng;
    vm_rng_seed2(&rng, o->seed, up_stream(layer, 0, 0));
    for (int e = 0; e < N; e++) {
        int n = 0;
        double mean[D];
        for (int d = 0; d < D; d++) mean[d] = 0;
        for (int j = C; j < Fe; j++) {
            const int i = slot[(size_t)e * Fe + j];
            if (i < 0) continue;
            n++;
            for (int d = 0; d < D; d++) mean[d] += w[0][(size_t)i * D + d];
        }
        for (int d = 0; d < D; d++)
            router[(size_t)e * D + d] = (float)(n ? po->router_gain * mean[d] / n : 0.0) + o->router_std * vm_rng_normal(&rng);
    }
    rc = 0;
done:
    for (int k = 0; k < 3; k++) free(w[k]);
    free(sub); free(slot); free(groups); free(rest); free(core_idx); free(imp);
    return rc;
}

static int upcycle(const char *in_path, const char *out_path, const vm_upcycle_opts *o,
                   const vm_upcycle_partition_opts *po) {
    if (o->n_expert < 1 || o->n_expert > 1024) return vm_err("upcycle: expert count %d out of [1, 1024]", o->n_expert);
    if (o->n_expert_used < 1 || o->n_expert_used > o->n_expert)
        return vm_err("upcycle: top-k %d out of [1, %d]", o->n_expert_used, o->n_expert);
    if (!(o->noise >= 0 && isfinite(o->noise))) return vm_err("upcycle: noise must be finite and >= 0");
    if (!(o->router_std >= 0 && isfinite(o->router_std))) return vm_err("upcycle: router std must be finite and >= 0");
    if (po && !isfinite(po->router_gain)) return vm_err("upcycle: router gain must be finite");
    if (po && o->noise != 0.0f) return vm_err("upcycle: partition and noise exclude each other");
    vm_gguf *g = vm_gguf_open(in_path);
    if (!g) return -1;
    vm_gguf_writer *w = NULL;
    void **bufs = NULL;
    int nbufs = 0, rc = -1;
    char *arch = NULL;
    int64_t n_layer = 0, n_exp = 0;
    if (vm_gguf_get_str(g, "general.architecture", &arch) != 0 || strcmp(arch, "llama")) {
        vm_err("%s: architecture '%s' is not llama (only dense llama models can be upcycled)", in_path, arch ? arch : "?");
        goto done;
    }
    if (vm_gguf_get_i64(g, "llama.expert_count", &n_exp) < 0) goto done;
    if (n_exp > 0) { vm_err("%s: already a MoE (llama.expert_count = %lld)", in_path, (long long)n_exp); goto done; }
    if (vm_gguf_get_i64(g, "llama.block_count", &n_layer) != 0 || n_layer < 1 || n_layer > 4096) {
        vm_err("%s: missing or bad llama.block_count", in_path);
        goto done;
    }
    for (int64_t i = 0; i < g->n_tensors; i++)
        if (strstr(g->tensors[i].name, "ffn_gate_inp") || strstr(g->tensors[i].name, "_exps")) {
            vm_err("%s: already a MoE (tensor %s)", in_path, g->tensors[i].name);
            goto done;
        }
    for (int64_t i = 0; i < g->n_tensors; i++) {   // the upcycled model would not load
        char what[VM_GGUF_MAX_NAME + 16];
        snprintf(what, sizeof what, "tensor %s", g->tensors[i].name);
        const vm_tensor *t = &g->tensors[i].t;
        if (vm_type_check_finite(t->type, t->data, vm_tensor_nelements(t), what)) { vm_err_prefix("%s", in_path); goto done; }
    }
    if (!(w = vm_gguf_writer_init()) || !(bufs = vm_calloc((size_t)n_layer * 4, sizeof *bufs))) goto done;
    vm_gguf_copy_kv(w, g);
    vm_gguf_set_u32(w, "llama.expert_count", (uint32_t)o->n_expert);
    vm_gguf_set_u32(w, "llama.expert_used_count", (uint32_t)o->n_expert_used);

    // Everything but the dense FFN matrices is borrowed as is.
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const vm_gguf_tensor_info *ti = &g->tensors[i];
        int l, skip = 0;
        const char *rest;
        const int id = vm_tn_parse(ti->name, &l, &rest);
        if (l >= 0 && !strcmp(rest, "weight"))
            for (int k = 0; k < 3; k++) skip |= id == (int)ffn_dense[k];
        if (!skip && vm_gguf_add_tensor(w, ti->name, ti->t.type, ti->t.n_dims, ti->t.ne, ti->t.data, ti->nbytes)) goto done;
    }
    for (int l = 0; l < (int)n_layer; l++) {
        char nm[VM_GGUF_MAX_NAME];
        const vm_gguf_tensor_info *ti[3];
        for (int k = 0; k < 3; k++) {
            vm_tn(nm, sizeof nm, ffn_dense[k], l, "weight");
            if (!(ti[k] = vm_gguf_find_tensor(g, nm)) || ti[k]->t.n_dims != 2) {
                vm_err("%s: missing or non-matrix dense tensor %s", in_path, nm);
                goto done;
            }
        }
        int64_t n_embd = ti[0]->t.ne[0], n_ff = ti[0]->t.ne[1];
        if (ti[1]->t.ne[0] != n_embd || ti[1]->t.ne[1] != n_ff || ti[2]->t.ne[0] != n_ff || ti[2]->t.ne[1] != n_embd) {
            vm_err("%s: block %d: FFN shapes disagree", in_path, l);
            goto done;
        }
        if (po) {
            if (po->n_core < 0 || po->n_core > n_ff) { vm_err("upcycle: core of %d neurons out of [0, %lld]", po->n_core, (long long)n_ff); goto done; }
            const int need = po->n_core + (int)((n_ff - po->n_core + o->n_expert - 1) / o->n_expert);
            if (po->n_ff_exp && po->n_ff_exp < need) {
                vm_err("upcycle: expert width %d is below the %d neurons a core of %d and %d groups need", po->n_ff_exp,
                       need, po->n_core, o->n_expert);
                goto done;
            }
            const int Fe = po->n_ff_exp ? po->n_ff_exp : need;
            const size_t per = (size_t)n_embd * (size_t)Fe * (size_t)o->n_expert;
            float *st[3];
            for (int k = 0; k < 3; k++)
                if (!(bufs[nbufs++] = st[k] = vm_malloc(per * sizeof(float)))) goto done;
            float *r = vm_malloc((size_t)n_embd * (size_t)o->n_expert * sizeof *r);
            if (!(bufs[nbufs++] = r)) goto done;
            if (up_partition(ti, l, o, po, Fe, st, r)) goto done;
            if (l == 0) vm_gguf_set_u32(w, "llama.expert_feed_forward_length", (uint32_t)Fe);
            for (int k = 0; k < 3; k++) {
                int64_t ne[3] = {k < 2 ? n_embd : Fe, k < 2 ? Fe : n_embd, o->n_expert};
                vm_tn(nm, sizeof nm, ffn_exps[k], l, "weight");
                if (vm_gguf_add_tensor(w, nm, VM_TYPE_F32, 3, ne, st[k], per * sizeof(float))) goto done;
            }
            int64_t ne[2] = {n_embd, o->n_expert};
            vm_tn(nm, sizeof nm, VM_TN_FFN_GATE_INP, l, "weight");
            if (vm_gguf_add_tensor(w, nm, VM_TYPE_F32, 2, ne, r, (size_t)n_embd * (size_t)o->n_expert * sizeof *r)) goto done;
            continue;
        }
        for (int k = 0; k < 3; k++) {
            vm_type type = VM_TYPE_F32;
            size_t nbytes = 0;
            if (up_stack(ti[k], l, k + 1, o, &type, &bufs[nbufs], &nbytes)) goto done;
            nbufs++;
            int64_t ne[3] = {ti[k]->t.ne[0], ti[k]->t.ne[1], o->n_expert};
            vm_tn(nm, sizeof nm, ffn_exps[k], l, "weight");
            if (vm_gguf_add_tensor(w, nm, type, 3, ne, bufs[nbufs - 1], nbytes)) goto done;
        }
        float *r = vm_malloc((size_t)n_embd * (size_t)o->n_expert * sizeof *r);
        if (!(bufs[nbufs++] = r)) goto done;
        vm_rng rng;
        vm_rng_seed2(&rng, o->seed, up_stream(l, 0, 0));
        for (int64_t i = 0; i < n_embd * o->n_expert; i++) r[i] = o->router_std * vm_rng_normal(&rng);
        int64_t ne[2] = {n_embd, o->n_expert};
        vm_tn(nm, sizeof nm, VM_TN_FFN_GATE_INP, l, "weight");
        if (vm_gguf_add_tensor(w, nm, VM_TYPE_F32, 2, ne, r, (size_t)n_embd * (size_t)o->n_expert * sizeof *r)) goto done;
    }
    rc = vm_gguf_write(w, out_path);
done:
    if (w) vm_gguf_writer_free(w);
    for (int i = 0; i < nbufs; i++) free(bufs[i]);
    free(bufs);
    free(arch);
    vm_gguf_free(g);
    return rc;
}

int vm_upcycle(const char *in_path, const char *out_path, const vm_upcycle_opts *o) {
    if (!in_path || !out_path || !o) return vm_err("upcycle: no input, output or options given");
    return upcycle(in_path, out_path, o, NULL);
}

int vm_upcycle_partition(const char *in_path, const char *out_path, const vm_upcycle_opts *o,
                         const vm_upcycle_partition_opts *p) {
    if (!p) return vm_err("upcycle: no partition options");
    return upcycle(in_path, out_path, o, p);
}

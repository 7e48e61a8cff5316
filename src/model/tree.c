// Attention over a tree batch (train.h vm_tree) through the causal kernels of kernels/ops.h,
// without kernel changes: for each segment, the keys and values of its ancestors' rows and then
// its own rows are laid out contiguously (gathered into scratch unless they already are), and the
// kernel runs the segment's queries with n_past = its ancestors' row count. The kernel then sees
// exactly the keys and values of the sequence the segment ends, in the same order from index 0,
// so each output is bit for bit the one of that sequence run alone (the kernels' results do not
// depend on the batching). The backward scatters the gathered rows' dK/dV back with +=, so a
// shared row's gradient is the sum over every segment that attended to it.
#include "model/model_internal.h"
#include "kernels/ops.h"
#include "util/err.h"

#include <string.h>

int vm_tree_check(const vm_tree *t, int max_rows) {
    if (!t || !t->pos || !t->seg_off || !t->parent) return vm_err("tree: missing arrays");
    if (t->n_rows <= 0 || t->n_rows > max_rows) return vm_err("tree: %d rows, expected 1..%d", t->n_rows, max_rows);
    if (t->n_seg <= 0 || t->n_seg > t->n_rows) return vm_err("tree: %d segments for %d rows", t->n_seg, t->n_rows);
    if (t->seg_off[0] != 0 || t->seg_off[t->n_seg] != t->n_rows)
        return vm_err("tree: segments cover rows [%d, %d), expected [0, %d)", t->seg_off[0], t->seg_off[t->n_seg], t->n_rows);
    for (int s = 0; s < t->n_seg; s++) {
        const int r0 = t->seg_off[s], r1 = t->seg_off[s + 1], p = t->parent[s];
        if (r1 <= r0 || r1 > t->n_rows) return vm_err("tree: segment %d is empty or out of order", s);
        if (p < -1 || p >= s) return vm_err("tree: segment %d has parent %d (expected -1 or an earlier segment)", s, p);
        const int32_t first = p < 0 ? 0 : t->pos[t->seg_off[p + 1] - 1] + 1;
        for (int r = r0; r < r1; r++)
            if (t->pos[r] != first + (r - r0))
                return vm_err("tree: row %d (segment %d) at position %d, expected %d", r, s, t->pos[r], first + (r - r0));
    }
    return 0;
}

// Rows attended to by segment s before its own: the count, and in *a0 the first row when the
// ancestors' rows and s's own form one contiguous range [*a0, seg_off[s+1]) (else *a0 = -1).
static int ancestors(const vm_tree *t, int s, int *a0) {
    int n = 0, start = t->seg_off[s];
    *a0 = start;
    for (int a = t->parent[s]; a >= 0; a = t->parent[a]) {
        n += t->seg_off[a + 1] - t->seg_off[a];
        if (*a0 >= 0 && t->seg_off[a + 1] == start) start = t->seg_off[a];
        else *a0 = -1;
        if (*a0 >= 0) *a0 = start;
    }
    return n;
}

// dst (n_anc + own rows, w) = [ancestors' rows root first ; segment s's rows] of src (rows, w).
static void gather(const vm_tree *t, int s, int n_anc, float *dst, const float *src, size_t w) {
    int end = n_anc;   // filled from the back: the parent's rows just before s's, the root's first
    for (int a = t->parent[s]; a >= 0; a = t->parent[a]) {
        const int n = t->seg_off[a + 1] - t->seg_off[a];
        end -= n;
        memcpy(dst + (size_t)end * w, src + (size_t)t->seg_off[a] * w, (size_t)n * w * sizeof(float));
    }
    const int own = t->seg_off[s + 1] - t->seg_off[s];
    memcpy(dst + (size_t)n_anc * w, src + (size_t)t->seg_off[s] * w, (size_t)own * w * sizeof(float));
}

// src rows of the gathered layout added back: dst (rows, w) += at the rows gather() read.
static void scatter_add(const vm_tree *t, int s, int n_anc, float *dst, const float *src, size_t w) {
    int end = n_anc;
    for (int a = t->parent[s]; a >= 0; a = t->parent[a]) {
        const int n = t->seg_off[a + 1] - t->seg_off[a];
        end -= n;
        float *d = dst + (size_t)t->seg_off[a] * w;
        const float *g = src + (size_t)end * w;
        for (size_t i = 0; i < (size_t)n * w; i++) d[i] += g[i];
    }
    const int own = t->seg_off[s + 1] - t->seg_off[s];
    float *d = dst + (size_t)t->seg_off[s] * w;
    const float *g = src + (size_t)n_anc * w;
    for (size_t i = 0; i < (size_t)own * w; i++) d[i] += g[i];
}

size_t vm_tree_attn_scratch(int T, size_t kvd) { return 4 * (size_t)T * kvd; }

// out, q (T, n_head*hd); kc, vc (T, n_head_kv*hd) the rows' keys (after rope) and values (vc may
// be kc: MLA reads its values from the key rows). scratch: vm_tree_attn_scratch floats.
void vm_tree_attention_forward(const vm_tree *t, float *out, const float *q, const float *kc,
                               const float *vc, int n_head, int n_head_kv, int hd, float scale,
                               float *scratch) {
    const size_t qd = (size_t)n_head * hd, kvd = (size_t)n_head_kv * hd;
    float *gk = scratch, *gv = vc == kc ? gk : scratch + (size_t)t->n_rows * kvd;
    for (int s = 0; s < t->n_seg; s++) {
        const int r0 = t->seg_off[s], own = t->seg_off[s + 1] - r0;
        int a0;
        const int n_anc = ancestors(t, s, &a0);
        const float *k = kc + (size_t)(a0 >= 0 ? a0 : 0) * kvd, *v = vc + (size_t)(a0 >= 0 ? a0 : 0) * kvd;
        if (a0 < 0) {
            gather(t, s, n_anc, gk, kc, kvd);
            if (gv != gk) gather(t, s, n_anc, gv, vc, kvd);
            k = gk; v = gv;
        }
        vm_attention_forward(out + (size_t)r0 * qd, q + (size_t)r0 * qd, k, v, n_anc, own, n_head, n_head_kv, hd, scale);
    }
}

static int zero_row(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) if (x[i] != 0.0f) return 0;
    return 1;
}

// Backward of vm_tree_attention_forward (same arguments): dq (T, n_head*hd) += ..., dk, dv
// (T, n_head_kv*hd) += ... (dv may not alias dk even when vc is kc).
// A query whose output gradient is zero adds exactly zero to every gradient, so each segment's
// call is trimmed to its rows [lo, hi) from the first to the last such row with a nonzero one
// (the rows before lo stay in as keys and values): in the top layer only the scored rows carry a
// gradient, so a context's rows there cost nothing but its last.
void vm_tree_attention_backward(const vm_tree *t, float *dq, float *dk, float *dv, const float *dout,
                                const float *q, const float *kc, const float *vc, int n_head,
                                int n_head_kv, int hd, float scale, float *scratch) {
    const size_t qd = (size_t)n_head * hd, kvd = (size_t)n_head_kv * hd, T = (size_t)t->n_rows;
    float *gk = scratch, *gv = vc == kc ? gk : scratch + T * kvd;
    float *gdk = scratch + 2 * T * kvd, *gdv = scratch + 3 * T * kvd;
    for (int s = 0; s < t->n_seg; s++) {
        const int r0 = t->seg_off[s];
        int lo = 0, hi = t->seg_off[s + 1] - r0;
        while (lo < hi && zero_row(dout + (size_t)(r0 + lo) * qd, qd)) lo++;
        while (hi > lo && zero_row(dout + (size_t)(r0 + hi - 1) * qd, qd)) hi--;
        if (lo == hi) continue;
        int a0;
        const int n_anc = ancestors(t, s, &a0);
        const size_t qo = (size_t)(r0 + lo) * qd;   // the first query row run
        if (a0 >= 0) {   // contiguous: the kernel accumulates into the rows themselves
            vm_attention_backward(dq + qo, dk + (size_t)a0 * kvd, dv + (size_t)a0 * kvd, dout + qo, q + qo,
                                  kc + (size_t)a0 * kvd, vc + (size_t)a0 * kvd, n_anc + lo, hi - lo,
                                  n_head, n_head_kv, hd, scale);
            continue;
        }
        const size_t n = (size_t)(n_anc + t->seg_off[s + 1] - r0) * kvd;
        gather(t, s, n_anc, gk, kc, kvd);
        if (gv != gk) gather(t, s, n_anc, gv, vc, kvd);
        memset(gdk, 0, n * sizeof(float));
        memset(gdv, 0, n * sizeof(float));
        vm_attention_backward(dq + qo, gdk, gdv, dout + qo, q + qo, gk, gv, n_anc + lo, hi - lo,
                              n_head, n_head_kv, hd, scale);
        scatter_add(t, s, n_anc, dk, gdk, kvd);
        scatter_add(t, s, n_anc, dv, gdv, kvd);
    }
}

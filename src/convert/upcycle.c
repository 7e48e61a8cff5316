// Dense llama GGUF -> Mixtral-layout MoE (sparse upcycling). Every tensor and key is kept; the
// dense blk.N.ffn_{gate,up,down}.weight become stacked experts
//   ffn_gate_exps / ffn_up_exps [n_embd, n_ff, N], ffn_down_exps [n_ff, n_embd, N]
// plus a router ffn_gate_inp [n_embd, N] (F32). The noise and seeding rules are in convert.h.
// Copied tensors are borrowed from the input mapping; only the expert stacks are allocated.
#include "convert/convert.h"
#include "gguf/gguf.h"
#include "util/err.h"
#include "util/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const ffn_dense[3] = {"ffn_gate", "ffn_up", "ffn_down"};
static const char *const ffn_exps[3] = {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"};

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

int vm_upcycle(const char *in_path, const char *out_path, const vm_upcycle_opts *o) {
    if (o->n_expert < 1 || o->n_expert > 1024) return vm_err("upcycle: expert count %d out of [1, 1024]", o->n_expert);
    if (o->n_expert_used < 1 || o->n_expert_used > o->n_expert)
        return vm_err("upcycle: top-k %d out of [1, %d]", o->n_expert_used, o->n_expert);
    if (!(o->noise >= 0 && isfinite(o->noise))) return vm_err("upcycle: noise must be finite and >= 0");
    if (!(o->router_std >= 0 && isfinite(o->router_std))) return vm_err("upcycle: router std must be finite and >= 0");
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
        char rest[VM_GGUF_MAX_NAME];
        if (sscanf(ti->name, "blk.%d.%63s", &l, rest) == 2)
            for (int k = 0; k < 3; k++) {
                char want[VM_GGUF_MAX_NAME];
                snprintf(want, sizeof want, "%s.weight", ffn_dense[k]);
                skip |= !strcmp(rest, want);
            }
        if (!skip && vm_gguf_add_tensor(w, ti->name, ti->t.type, ti->t.n_dims, ti->t.ne, ti->t.data, ti->nbytes)) goto done;
    }
    for (int l = 0; l < (int)n_layer; l++) {
        char nm[VM_GGUF_MAX_NAME];
        const vm_gguf_tensor_info *ti[3];
        for (int k = 0; k < 3; k++) {
            snprintf(nm, sizeof nm, "blk.%d.%s.weight", l, ffn_dense[k]);
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
        for (int k = 0; k < 3; k++) {
            vm_type type = VM_TYPE_F32;
            size_t nbytes = 0;
            if (up_stack(ti[k], l, k + 1, o, &type, &bufs[nbufs], &nbytes)) goto done;
            nbufs++;
            int64_t ne[3] = {ti[k]->t.ne[0], ti[k]->t.ne[1], o->n_expert};
            snprintf(nm, sizeof nm, "blk.%d.%s.weight", l, ffn_exps[k]);
            if (vm_gguf_add_tensor(w, nm, type, 3, ne, bufs[nbufs - 1], nbytes)) goto done;
        }
        float *r = vm_malloc((size_t)n_embd * (size_t)o->n_expert * sizeof *r);
        if (!(bufs[nbufs++] = r)) goto done;
        vm_rng rng;
        vm_rng_seed2(&rng, o->seed, up_stream(l, 0, 0));
        for (int64_t i = 0; i < n_embd * o->n_expert; i++) r[i] = o->router_std * vm_rng_normal(&rng);
        int64_t ne[2] = {n_embd, o->n_expert};
        snprintf(nm, sizeof nm, "blk.%d.ffn_gate_inp.weight", l);
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

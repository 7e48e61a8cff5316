// vmoer quantize: the mix rules (which tensor gets which type), the fallbacks for row lengths, and
// each type's quantisation error against the bounds llama.cpp publishes for its own quantisers
// (tests/test-quantize-fns.cpp there: synthetic data 0.1 + 2 cos(i), 4096 values; "total error"
// sqrt(sum d^2) / n < 0.002 for these types, dot-product error |q - exact| / n < 0.02 with the
// second vector quantised as the engine does: here vmoer's int8 activations, vm_vec_dot_act).
#include "convert/convert.h"
#include "quant/quant.h"
#include "test.h"

#include <string.h>

static vm_type pick(const char *mix, int n_layer, int n_expert, int tied, const char *name, int64_t ne0,
                    int i_attn_v, int n_attn_v, int i_ffn_down) {
    vm_quantize_opts o;
    CHECK(vm_quantize_parse(mix, &o) == 0, "parse %s", mix);
    vm_quantize_ctx c = {n_layer, n_expert, tied, n_attn_v, i_attn_v, i_ffn_down};
    return vm_quantize_choose(&o, &c, name, ne0);
}

static void test_rules(void) {
    vm_quantize_opts o;
    CHECK(vm_quantize_parse("Q4_K_M", &o) == 0 && o.base == VM_TYPE_Q4_K && o.mix && o.ftype == 15, "q4_K_M");
    CHECK(vm_quantize_parse("q8_0", &o) == 0 && o.base == VM_TYPE_Q8_0 && !o.mix && o.ftype == 7, "q8_0");
    CHECK(vm_quantize_parse("q3_K", &o) == -1, "unknown type refused");
    // kept: 1-D, norms, routers, non-weights
    CHECK(vm_quantize_keeps("blk.0.attn_norm.weight", 1), "norm");
    CHECK(vm_quantize_keeps("blk.0.ffn_gate_inp.weight", 2), "router");
    CHECK(vm_quantize_keeps("blk.0.attn_q.bias", 2), "bias");
    CHECK(!vm_quantize_keeps("blk.0.ffn_up_exps.weight", 3), "experts quantised");
    // 32 layers, 40 experts (Granite-shaped): more bits on layers 0-3, 28-31, and 6, 9, ..., 27
    const int more[] = {0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31};
    for (int il = 0; il < 32; il++) {
        int m = 0;
        for (size_t k = 0; k < sizeof more / sizeof *more; k++) m |= more[k] == il;
        char name[64];
        snprintf(name, sizeof name, "blk.%d.ffn_down_exps.weight", il);
        CHECK(pick("q4_K_M", 32, 40, 1, name, 512, 0, 32, 0) == (m ? VM_TYPE_Q6_K : VM_TYPE_Q4_K), "%s", name);
        snprintf(name, sizeof name, "blk.%d.attn_v.weight", il);
        CHECK(pick("q5_K_M", 32, 40, 1, name, 1536, il, 32, 0) == (m ? VM_TYPE_Q6_K : VM_TYPE_Q5_K), "%s", name);
        snprintf(name, sizeof name, "blk.%d.attn_q.weight", il);
        CHECK(pick("q4_K_M", 32, 40, 1, name, 1536, 0, 32, 0) == VM_TYPE_Q4_K, "%s", name);
    }
    CHECK(pick("q4_K_M", 32, 40, 1, "token_embd.weight", 1536, 0, 32, 0) == VM_TYPE_Q6_K, "tied output");
    CHECK(pick("q4_K_M", 32, 40, 0, "token_embd.weight", 1536, 0, 32, 0) == VM_TYPE_Q4_K, "untied embd");
    CHECK(pick("q4_K_M", 32, 40, 0, "output.weight", 1536, 0, 32, 0) == VM_TYPE_Q6_K, "output");
    CHECK(pick("q4_0", 32, 40, 0, "output.weight", 1536, 0, 32, 0) == VM_TYPE_Q4_0, "plain types are pure");
    // Mixtral-8x: attn_v/attn_k Q8_0, attn_output Q5_K (Q4_K_M only)
    CHECK(pick("q4_K_M", 32, 8, 0, "blk.5.attn_v.weight", 4096, 5, 32, 0) == VM_TYPE_Q8_0, "8x attn_v");
    CHECK(pick("q4_K_M", 32, 8, 0, "blk.5.attn_k.weight", 4096, 0, 32, 0) == VM_TYPE_Q8_0, "8x attn_k");
    CHECK(pick("q4_K_M", 32, 8, 0, "blk.5.attn_output.weight", 4096, 0, 32, 0) == VM_TYPE_Q5_K, "8x attn_output");
    CHECK(pick("q5_K_M", 32, 8, 0, "blk.5.attn_output.weight", 4096, 0, 32, 0) == VM_TYPE_Q5_K, "q5_K_M base");
    // dense models count ffn_down tensors in file order
    CHECK(pick("q4_K_M", 16, 0, 0, "blk.7.ffn_down.weight", 4096, 0, 16, 1) == VM_TYPE_Q6_K, "dense counter");
    CHECK(pick("q4_K_M", 16, 0, 0, "blk.7.ffn_down.weight", 4096, 0, 16, 3) == VM_TYPE_Q4_K, "dense counter 3");
    // row lengths: K-quants -> Q8_0 when 32 divides the row, else F16; Q8_0/Q4_0 -> F16
    CHECK(pick("q4_K", 2, 0, 0, "blk.0.attn_q.weight", 64, 0, 2, 0) == VM_TYPE_Q8_0, "64 -> q8_0");
    CHECK(pick("q6_K", 2, 0, 0, "blk.0.ffn_down.weight", 172, 0, 2, 0) == VM_TYPE_F16, "172 -> f16");
    CHECK(pick("q4_0", 2, 0, 0, "blk.0.ffn_down.weight", 172, 0, 2, 0) == VM_TYPE_F16, "q4_0 172 -> f16");
    CHECK(pick("q4_K_M", 2, 0, 1, "token_embd.weight", 288, 0, 2, 0) == VM_TYPE_Q8_0, "output 288 -> q8_0");
}

// llama.cpp's generate_data
static void gen(float offset, int n, float *dst, float amp) {
    for (int i = 0; i < n; i++) dst[i] = 0.1f + amp * cosf((float)i + offset);
}

static void test_error_bounds(void) {
    enum { N = 32 * 128 };
    static float x[N], y[N], back[N];
    static uint8_t q[N * 2];
    static char xq[N * 2];
    gen(0.0f, N, x, 2.0f);
    gen(1.0f, N, y, 2.0f);
    double exact = 0;
    for (int i = 0; i < N; i++) exact += (double)x[i] * y[i];
    const vm_type types[] = {VM_TYPE_Q8_0, VM_TYPE_Q4_0, VM_TYPE_Q4_K, VM_TYPE_Q5_K, VM_TYPE_Q6_K};
    for (size_t k = 0; k < sizeof types / sizeof *types; k++) {
        const vm_type t = types[k];
        CHECK(vm_quant_row(t, x, q, N) == 0, "%s quant", vm_type_name(t));
        vm_dequant_row(t, q, back, N);
        double ss = 0;
        for (int i = 0; i < N; i++) ss += ((double)x[i] - back[i]) * ((double)x[i] - back[i]);
        const double total = sqrt(ss) / N;
        CHECK(total < 0.002, "%s total quantisation error %.6f >= 0.002 (llama.cpp's bound)", vm_type_name(t), total);
        CHECK(vm_act_quant_row(t, y, xq, N) == 0, "act quant");
        const double dot = vm_vec_dot_act(t, q, xq, N), err = fabs(dot - exact) / N;
        CHECK(err < 0.02, "%s dot product error %.6f >= 0.02 (llama.cpp's bound)", vm_type_name(t), err);
        printf("%-5s total error %.6f (bound 0.002), dot error %.6f (bound 0.02)\n", vm_type_name(t), total, err);
    }
}

int main(void) {
    test_rules();
    test_error_bounds();
    return TEST_SUMMARY();
}

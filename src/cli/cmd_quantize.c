// vmoer quantize IN.gguf OUT.gguf TYPE: F32/F16/BF16 weights to a quantised type or a llama.cpp mix.
#include "cli/cli.h"
#include "convert/convert.h"

#include <stdio.h>
#include <string.h>

static const char *CMD = "quantize";

static void usage(void) {
    printf("usage: vmoer quantize IN.gguf OUT.gguf TYPE [options]\n\n"
           "Quantises the weight matrices of an F32/F16/BF16 GGUF. TYPE:\n"
           "  q8_0, q4_0, q4_K, q5_K, q6_K   every weight matrix in that type\n"
           "  q4_K_M, q5_K_M                 llama.cpp's mixes: Q4_K / Q5_K, with Q6_K for the output\n"
           "                                 matrix and for attn_v / ffn_down on the first and last eighth\n"
           "                                 of the layers and every third layer between (8-expert models:\n"
           "                                 attn_v / attn_k Q8_0)\n"
           "  f32, f16                       widen the weight matrices (any input vmoer computes,\n"
           "                                 quantised ones too: the same weights, without int8 activations)\n"
           "Norms, 1-D tensors and routers (ffn_gate_inp, F32) keep their precision. A row length the\n"
           "type's block does not divide (256 for K-quants, 32 otherwise) falls back to Q8_0 for a\n"
           "K-quant when it is a multiple of 32, else to F16. The output is written atomically.\n\n"
           "options:\n"
           "  -v, --verbose     one line per tensor: input and output type\n"
           "  --threads N       worker threads\n"
           "  -h, --help        this text\n");
}

int cmd_quantize(int argc, char **argv) {
    const char *pos[3] = {0};
    int npos = 0, verbose = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(); return 0; }
        else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) verbose = 1;
        else if (!strcmp(a, "--threads")) {
            if (!(v = cli_value(CMD, argc, argv, &i)) || cli_threads(CMD, v)) return 1;
        } else if (a[0] == '-' && a[1]) {
            return cli_fail(CMD, "unknown option '%s' (see --help)", a);
        } else {
            if (npos == 3) return cli_fail(CMD, "unexpected argument '%s' (see --help)", a);
            pos[npos++] = a;
        }
    }
    if (npos != 3) return cli_fail(CMD, "expected IN.gguf OUT.gguf TYPE (see --help)");
    vm_quantize_opts o;
    if (vm_quantize_parse(pos[2], &o)) return cli_fail(CMD, NULL);
    if (vm_quantize_file(pos[0], pos[1], &o, verbose ? stdout : NULL)) return cli_fail(CMD, NULL);
    if (!verbose) printf("wrote %s (%s)\n", pos[1], pos[2]);
    return 0;
}

// vmoer upcycle IN.gguf OUT.gguf --experts N --top-k K [--noise SIGMA] [--seed S] [--router-std R]
#include "cli/cli.h"
#include "convert/convert.h"

#include <stdio.h>
#include <string.h>

static const char *CMD = "upcycle";

static void usage(void) {
    printf("usage: vmoer upcycle IN.gguf OUT.gguf --experts N --top-k K [options]\n\n"
           "Turns a dense llama GGUF into a Mixtral-layout MoE: every FFN becomes N experts\n"
           "(stacked ffn_{gate,up,down}_exps) and a router ffn_gate_inp is added; all else is copied.\n\n"
           "options:\n"
           "  --experts N       number of experts (1..1024, required)\n"
           "  --top-k K         experts used per token (1..N, required)\n"
           "  --noise SIGMA     expert e = W + SIGMA * rms(W) * N(0,1) noise (default 0: exact copies,\n"
           "                    the MoE then computes the dense model)\n"
           "  --router-std R    router weights ~ N(0, R^2) (default %g)\n"
           "  --partition       neuron partition (MoEfication) instead of copies: the dense FFN's F\n"
           "                    neurons (but a --core) are split into N groups of ceil((F-C)/N) by\n"
           "                    balanced k-means on their gate rows (neurons that fire together share\n"
           "                    an expert); group down columns are scaled by K, so K experts at gates\n"
           "                    1/K add their neurons' dense output (K = N: the dense FFN); F32\n"
           "  --core C          with --partition: the C neurons of largest |gate_i| |up_i| |down_i| are\n"
           "                    copied into every expert (down as is); the rest are partitioned\n"
           "  --expert-width W  with --partition: experts of W neurons; slots beyond the dense\n"
           "                    neurons are new ones, N(0, rms^2) gate/up rows and a zero down column\n"
           "  --router-gain G   with --partition: router row e += G * mean gate row of expert e\n"
           "                    (default 0)\n"
           "  --seed S          seed of the noise and router streams (default 0)\n"
           "  --threads N       worker threads\n"
           "  -h, --help        this text\n", (double)VM_UPCYCLE_ROUTER_STD);
}

int cmd_upcycle(int argc, char **argv) {
    const char *pos[2] = {0};
    int npos = 0;
    long n_exp = 0, top_k = 0;
    double noise = 0, rstd = VM_UPCYCLE_ROUTER_STD, gain = 0;
    int partition = 0;
    long core = 0, width = 0;
    uint64_t seed = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(); return 0; }
        else if (!strcmp(a, "--experts")) {
            if (!(v = cli_value(CMD, argc, argv, &i)) || cli_long(CMD, a, v, 1, 1024, &n_exp)) return 1;
        } else if (!strcmp(a, "--top-k")) {
            if (!(v = cli_value(CMD, argc, argv, &i)) || cli_long(CMD, a, v, 1, 1024, &top_k)) return 1;
        } else if (!strcmp(a, "--noise")) {
            if (!(v = cli_value(CMD, argc, argv, &i)) || cli_float(CMD, a, v, 0, 1e3, &noise)) return 1;
        } else if (!strcmp(a, "--router-std")) {
            if (!(v = cli_value(CMD, argc, argv, &i)) || cli_float(CMD, a, v, 0, 1e3, &rstd)) return 1;
        } else if (!strcmp(a, "--partition")) {
            partition = 1;
        } else if (!strcmp(a, "--core")) {
            if (!(v = cli_value(CMD, argc, argv, &i)) || cli_long(CMD, a, v, 0, 1 << 24, &core)) return 1;
        } else if (!strcmp(a, "--expert-width")) {
            if (!(v = cli_value(CMD, argc, argv, &i)) || cli_long(CMD, a, v, 1, 1 << 24, &width)) return 1;
        } else if (!strcmp(a, "--router-gain")) {
            if (!(v = cli_value(CMD, argc, argv, &i)) || cli_float(CMD, a, v, -1e3, 1e3, &gain)) return 1;
        } else if (!strcmp(a, "--seed")) {
            if (!(v = cli_value(CMD, argc, argv, &i)) || cli_u64(CMD, a, v, &seed)) return 1;
        } else if (!strcmp(a, "--threads")) {
            if (!(v = cli_value(CMD, argc, argv, &i)) || cli_threads(CMD, v)) return 1;
        } else if (a[0] == '-' && a[1]) {
            return cli_fail(CMD, "unknown option '%s' (see --help)", a);
        } else {
            if (npos == 2) return cli_fail(CMD, "unexpected argument '%s' (see --help)", a);
            pos[npos++] = a;
        }
    }
    if (npos != 2) return cli_fail(CMD, "expected IN.gguf OUT.gguf (see --help)");
    if (!n_exp) return cli_fail(CMD, "--experts N is required");
    if (!top_k) return cli_fail(CMD, "--top-k K is required");
    if (top_k > n_exp) return cli_fail(CMD, "--top-k %ld exceeds --experts %ld", top_k, n_exp);
    if (cli_output(CMD, pos[1])) return 1;
    if (gain != 0 && !partition) return cli_fail(CMD, "--router-gain needs --partition");
    vm_upcycle_opts o = {(int)n_exp, (int)top_k, (float)noise, (float)rstd, seed};
    if ((core || width) && !partition) return cli_fail(CMD, "--core and --expert-width need --partition");
    vm_upcycle_partition_opts po = {(float)gain, (int)core, (int)width};
    if (partition ? vm_upcycle_partition(pos[0], pos[1], &o, &po) : vm_upcycle(pos[0], pos[1], &o))
        return cli_fail(CMD, NULL);
    return 0;
}

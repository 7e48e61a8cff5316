// vmoer: Bayesian routing for Mixture-of-Experts language models.
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/dist.h"
#include "util/err.h"
#include "vmoer.h"

typedef struct cli_cmd {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} cli_cmd;

static const cli_cmd commands[] = {
    {"info", cmd_info, "describe a GGUF model: architecture, dimensions, experts, tensors, tokenizer"},
    {"tokenize", cmd_tokenize, "print the token ids of a text"},
    {"run", cmd_run, "generate text from a prompt"},
    {"logits", cmd_logits, "write the logits of every position as a .npy file"},
    {"trace", cmd_trace, "write routing traces (logits, probabilities, experts, gates) as JSONL"},
    {"convert-llama2c", cmd_convert_llama2c, "convert a llama2.c model + tokenizer to GGUF"},
    {"convert-hf", cmd_convert_hf, "convert a Hugging Face checkpoint (config.json + safetensors) to GGUF"},
    {"upcycle", cmd_upcycle, "turn a dense GGUF model into a Mixtral-layout MoE"},
    {"quantize", cmd_quantize, "quantise an F32/F16/BF16 GGUF to Q8_0, Q4_0, Q4_K, Q5_K, Q6_K, Q4_K_M or Q5_K_M"},
    {"train", cmd_train, "train every weight of a small (MoE) model on plain text (load-balancing loss)"},
    {"experts", cmd_experts, "does routing matter? loss with the router vs random routing, logit spread, loads"},
    {"fit", cmd_fit, "fit Bayesian routers of some MoE layers on a multiple-choice set; writes an adapter"},
    {"eval", cmd_eval, "evaluate calibration, OOD detection, routing stability and cost on an MCQA set"},
    {"compare", cmd_compare, "put several eval output folders side by side (tables and overlaid figures)"},
    {"demo", cmd_demo, "the whole VMoER experiment on story cloze: MAP, baselines, VGLR/VTSR, table + report"},
    {"serve", cmd_serve, "OpenAI-compatible HTTP server whose answers carry routing uncertainty (and routing)"},
    {"bench", cmd_bench, "throughput: prompt processing and decode tokens/s, kernels vs BLAS"},
};

static void usage(FILE *f) {
    fprintf(f, "vmoer %s - calibrated uncertainty for Mixture-of-Experts models via Bayesian routing\n\n"
               "usage: vmoer <command> [options]   (vmoer <command> --help for details)\n\ncommands:\n",
            vmoer_version());
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-16s %s\n", commands[i].name, commands[i].summary);
}

// libgomp spins up to GOMP_SPINCOUNT times (default 300000, ~1 ms) before sleeping at the end of
// every parallel region. vmoer runs many small regions; when the cores are busy with other work the
// spinning thread holds the core its straggling peer needs: a 2-thread training step measured 20x
// slower than 1 thread (22.7 s vs 1.1 s). A short spin keeps the quiet-machine speed (2-thread
// kernels within 5 % of the default) and nearly all of the passive policy's behaviour under load
// (1.7 s vs 1.5 s passive, 3.8 s default, with two CPU hogs). libgomp reads the variables when it
// loads, before main, so they are set here and the program re-executed once; a user's own
// OMP_WAIT_POLICY or GOMP_SPINCOUNT is kept as it is.
static void omp_short_spin(char **argv) {
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT") || getenv("VMOER_NO_REEXEC")) return;
    setenv("GOMP_SPINCOUNT", "20000", 1);
    setenv("VMOER_NO_REEXEC", "1", 1);
    execv("/proc/self/exe", argv);   // returns only on failure: carry on with the default policy
}

int main(int argc, char **argv) {
    omp_short_spin(argv);
    if (argc < 2) { usage(stderr); return 2; }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) { usage(stdout); return 0; }
    if (!strcmp(argv[1], "--version")) {
        const char *mpi = vm_dist_library();
        printf("vmoer %s (MPI: %s)\n", vmoer_version(), mpi ? mpi : "not built in; make MPI=1");
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(argv[1], commands[i].name)) {
            // Under mpirun every rank runs the command; one process otherwise (util/dist.h).
            if (vm_dist_init(&argc, &argv)) { fprintf(stderr, "vmoer: %s\n", vm_errmsg()); return 1; }
            const int rc = commands[i].fn(argc - 1, argv + 1);
            // A failed rank leaves without MPI_Finalize: mpirun then ends the others (which may be
            // waiting for it in a collective) and exits non-zero naming it.
            if (rc == 0) vm_dist_finalize();
            return rc;
        }
    fprintf(stderr, "vmoer: unknown command '%s' (see vmoer --help)\n", argv[1]);
    return 2;
}

// vmoer convert-hf DIR OUT.gguf [--type f32|f16|bf16|q8_0] [--no-tokenizer] [--allow-unused] [--name NAME]
#include "cli/cli.h"
#include "convert/hf.h"

#include <stdio.h>
#include <string.h>

static const char *CMD = "convert-hf";

static void usage(void) {
    printf("usage: vmoer convert-hf DIR OUT.gguf [options]\n\n"
           "Converts a Hugging Face checkpoint folder (config.json, model.safetensors or sharded\n"
           "model-*.safetensors + model.safetensors.index.json, tokenizer.json) to GGUF.\n"
           "Architectures: Llama/Mistral/Mixtral (llama), GraniteMoe, Qwen2Moe, Qwen3Moe, Olmoe,\n"
           "Deepseek, DeepseekV2/V3 (per-expert or fused expert tensors).\n\n"
           "options:\n"
           "  --type T         f32 (default), f16, bf16 or q8_0 for the weight matrices (norms, biases\n"
           "                   and routers stay f32; q8_0 rows that are not whole blocks become f16)\n"
           "  --no-tokenizer   write the weights only (required when DIR has no tokenizer.json)\n"
           "  --allow-unused   drop checkpoint tensors the mapping does not use (default: error)\n"
           "  --name NAME      general.name (default: config _name_or_path, else the folder name)\n"
           "  --threads N      worker threads\n"
           "  -h, --help       this text\n");
}

int cmd_convert_hf(int argc, char **argv) {
    const char *pos[2] = {0};
    int npos = 0;
    vm_convert_hf_opts o = {.type = VM_TYPE_F32};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(); return 0; }
        else if (!strcmp(a, "--type")) {
            if (!(v = cli_value(CMD, argc, argv, &i))) return 1;
            if (!strcmp(v, "f32")) o.type = VM_TYPE_F32;
            else if (!strcmp(v, "f16")) o.type = VM_TYPE_F16;
            else if (!strcmp(v, "bf16")) o.type = VM_TYPE_BF16;
            else if (!strcmp(v, "q8_0")) o.type = VM_TYPE_Q8_0;
            else return cli_fail(CMD, "--type expects f32, f16, bf16 or q8_0, got '%s'", v);
        } else if (!strcmp(a, "--no-tokenizer")) {
            o.no_tokenizer = 1;
        } else if (!strcmp(a, "--allow-unused")) {
            o.allow_unused = 1;
        } else if (!strcmp(a, "--name")) {
            if (!(o.name = cli_value(CMD, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--threads")) {
            if (!(v = cli_value(CMD, argc, argv, &i)) || cli_threads(CMD, v)) return 1;
        } else if (a[0] == '-' && a[1]) {
            return cli_fail(CMD, "unknown option '%s' (see --help)", a);
        } else {
            if (npos == 2) return cli_fail(CMD, "unexpected argument '%s' (see --help)", a);
            pos[npos++] = a;
        }
    }
    if (npos != 2) return cli_fail(CMD, "expected DIR OUT.gguf (see --help)");
    if (cli_output(CMD, pos[1])) return 1;
    if (vm_convert_hf(pos[0], pos[1], &o)) return cli_fail(CMD, NULL);
    return 0;
}

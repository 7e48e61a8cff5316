// vmoer convert-llama2c MODEL.bin TOKENIZER.bin OUT.gguf [--type f32|f16|q8_0] [--name NAME]
#include "cli/cli.h"
#include "convert/convert.h"

#include <stdio.h>
#include <string.h>

static const char *CMD = "convert-llama2c";

static void usage(void) {
    printf("usage: vmoer convert-llama2c MODEL.bin TOKENIZER.bin OUT.gguf [options]\n\n"
           "Converts a llama2.c checkpoint (legacy version-0 export) and its tokenizer.bin to a llama GGUF.\n\n"
           "options:\n"
           "  --type T       f32 (default), f16 or q8_0 for the weight matrices (norms stay f32;\n"
           "                 matrices whose rows are not whole q8_0 blocks are stored as f16)\n"
           "  --name NAME    general.name (default: the model file name without extension)\n"
           "  --threads N    worker threads\n"
           "  -h, --help     this text\n");
}

int cmd_convert_llama2c(int argc, char **argv) {
    const char *pos[3] = {0}, *name = NULL;
    int npos = 0;
    vm_type type = VM_TYPE_F32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(); return 0; }
        else if (!strcmp(a, "--type")) {
            if (!(v = cli_value(CMD, argc, argv, &i))) return 1;
            if (!strcmp(v, "f32")) type = VM_TYPE_F32;
            else if (!strcmp(v, "f16")) type = VM_TYPE_F16;
            else if (!strcmp(v, "q8_0")) type = VM_TYPE_Q8_0;
            else return cli_fail(CMD, "--type expects f32, f16 or q8_0, got '%s'", v);
        } else if (!strcmp(a, "--name")) {
            if (!(name = cli_value(CMD, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--threads")) {
            if (!(v = cli_value(CMD, argc, argv, &i)) || cli_threads(CMD, v)) return 1;
        } else if (a[0] == '-' && a[1]) {
            return cli_fail(CMD, "unknown option '%s' (see --help)", a);
        } else {
            if (npos == 3) return cli_fail(CMD, "unexpected argument '%s' (see --help)", a);
            pos[npos++] = a;
        }
    }
    if (npos != 3) return cli_fail(CMD, "expected MODEL.bin TOKENIZER.bin OUT.gguf (see --help)");
    if (cli_output(CMD, pos[2])) return 1;
    if (vm_convert_llama2c(pos[0], pos[1], pos[2], type, name)) return cli_fail(CMD, NULL);
    return 0;
}

// vmoer tokenize: token ids of a text under a GGUF file's vocabulary (weights not needed).
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"
#include "util/err.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: vmoer tokenize MODEL.gguf [options] [--] TEXT\n"
            "Prints the token ids of TEXT, space separated, on one line.\n\n"
            "options:\n"
            "  --bos                 prepend BOS (when the vocabulary asks for it)\n"
            "  --no-parse-special    treat special-token texts such as <s> as plain text\n"
            "  --threads N           worker threads (accepted for uniformity; tokenizing is serial)\n"
            "  --help                this text\n"
            "  --                    end of options (TEXT may then start with '-')\n");
}

int cmd_tokenize(int argc, char **argv) {
    const char *cmd = "tokenize";
    const char *model = NULL, *text = NULL;
    int bos = 0, parse_special = 1, opts = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (opts && a[0] == '-' && a[1]) {
            if (!strcmp(a, "--")) opts = 0;
            else if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
            else if (!strcmp(a, "--bos")) bos = 1;
            else if (!strcmp(a, "--no-parse-special")) parse_special = 0;
            else if (!strcmp(a, "--threads")) {
                const char *v = cli_value(cmd, argc, argv, &i);
                if (!v || cli_threads(cmd, v)) return 1;
            } else return cli_fail(cmd, "unknown option '%s' (see vmoer tokenize --help)", a);
            continue;
        }
        if (!model) model = a;
        else if (!text) text = a;
        else return cli_fail(cmd, "unexpected argument '%s' (quote TEXT as one argument)", a);
    }
    if (!model) return cli_fail(cmd, "missing MODEL.gguf (see vmoer tokenize --help)");
    if (!text) return cli_fail(cmd, "missing TEXT (see vmoer tokenize --help)");

    vm_gguf *g = vm_gguf_open(model);
    if (!g) return cli_fail(cmd, NULL);
    vm_tokenizer *t = vm_tokenizer_from_gguf(g);
    vm_gguf_free(g);
    if (!t) return cli_fail(cmd, NULL);

    size_t len = strlen(text);
    int cap = (int)(len < (size_t)1 << 28 ? 3 * len + 8 : 0);   // a token covers >= 1 escaped byte
    int32_t *ids = cap ? malloc(sizeof *ids * (size_t)cap) : NULL;
    int n = ids ? vm_tokenize(t, text, len, bos, parse_special, ids, cap) : -1;
    int rc = 0;
    if (!ids) rc = cli_fail(cmd, "text too long or out of memory");
    else if (n < 0 || n > cap) rc = cli_fail(cmd, n < 0 ? NULL : "internal error: token count");
    else {
        for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
        putchar('\n');
        if (fflush(stdout)) rc = cli_fail(cmd, "cannot write the output");
    }
    free(ids);
    vm_tokenizer_free(t);
    return rc;
}

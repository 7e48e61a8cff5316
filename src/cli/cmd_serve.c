// vmoer serve MODEL.gguf [--adapter A.gguf] [--host H] [--port N] [--parallel P] ...
// The OpenAI-compatible HTTP server with uncertainty read-outs (src/serve/, docs/serve.md).
#include "cli/cli.h"
#include "serve/serve.h"
#include "tokenizer/chat.h"
#include "data/task.h"
#include "util/err.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *CMD = "serve";

static void usage(void) {
    printf("usage: vmoer serve MODEL.gguf [options]\n\n"
           "Serves the model over HTTP with the OpenAI API: POST /v1/completions, POST /v1/chat/completions,\n"
           "GET /v1/models, GET /health, and POST /v1/vmoer/choices (multiple choice, scored as vmoer eval).\n"
           "Every answer carries a \"vmoer\" object with per-token uncertainty read-outs and their summary;\n"
           "\"vmoer\": {\"return_routing\": true} in a request adds the routing of every token (docs/serve.md).\n"
           "SIGTERM or SIGINT: stop accepting, finish the requests in flight, exit 0.\n\n"
           "options:\n"
           "  --adapter A.gguf         routers fitted by vmoer fit (each slot loads its own copy)\n"
           "  --host H                 address to listen on (default 127.0.0.1: this machine only)\n"
           "  --port N                 TCP port (default 8080; 0 = any free port, printed on stderr)\n"
           "  --parallel P             requests decoded at the same time, each in its own context (default 1)\n"
           "  --queue N                requests waiting for a slot before 503 + Retry-After (default 64)\n"
           "  --threads N              kernel threads in total, split between the slots (default: the cores)\n"
           "  --ctx N                  context length of each slot (default: the model's)\n"
           "  --max-tokens N           largest max_tokens a request may ask for (default 1024)\n"
           "  --max-body BYTES         largest request body (default 1048576; larger: 413)\n"
           "  --max-routing-tokens N   most tokens (prompt + max_tokens) a request may ask routing for (default 4096)\n"
           "  --api-key KEY            require Authorization: Bearer KEY (default: $VMOER_API_KEY, else none)\n"
           "  --chat-template T        auto (the model's; default), none (the messages' text as it is) or a name:\n"
           "                           %s. Without one, chat requests get a 400 saying so\n"
           "  --score MODE             /v1/vmoer/choices default scoring: letter, loglik, loglik-raw, pmi (default letter)\n"
           "  --model-name NAME        the model id clients see (default: the file name without .gguf)\n"
           "  --token-delay-ms N       sleep N ms after each generated token (tests and demos of queueing,\n"
           "                           disconnects and draining with a model too fast to watch; default 0)\n"
           "  --quiet                  no line per request on stderr\n"
           "  -h, --help               this text\n", vm_chat_names());
}

int cmd_serve(int argc, char **argv) {
    vm_serve_opts o;
    vm_serve_opts_default(&o);
    o.api_key = getenv("VMOER_API_KEY");
    if (o.api_key && !*o.api_key) o.api_key = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        long x;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(); return 0; }
#define LONG_OPT(flag, lo, hi, dst) \
        else if (!strcmp(a, flag)) { \
            if (!(v = cli_value(CMD, argc, argv, &i)) || cli_long(CMD, a, v, lo, hi, &x)) return 1; \
            dst = x; }
        LONG_OPT("--port", 0, 65535, o.port)
        LONG_OPT("--parallel", 1, 256, o.parallel)
        LONG_OPT("--queue", 0, 100000, o.queue)
        LONG_OPT("--threads", 1, 1024, o.threads)
        LONG_OPT("--ctx", 1, 1 << 24, o.n_ctx)
        LONG_OPT("--max-tokens", 1, 1 << 24, o.max_tokens)
        LONG_OPT("--max-body", 64, 1L << 30, o.max_body)
        LONG_OPT("--max-routing-tokens", 1, INT_MAX, o.max_routing_tokens)
        LONG_OPT("--token-delay-ms", 0, 60000, o.token_delay_ms)
#undef LONG_OPT
        else if (!strcmp(a, "--adapter")) { if (!(o.adapter_path = cli_value(CMD, argc, argv, &i))) return 1; }
        else if (!strcmp(a, "--host")) { if (!(o.host = cli_value(CMD, argc, argv, &i))) return 1; }
        else if (!strcmp(a, "--model-name")) { if (!(o.model_name = cli_value(CMD, argc, argv, &i))) return 1; }
        else if (!strcmp(a, "--api-key")) {
            if (!(o.api_key = cli_value(CMD, argc, argv, &i))) return 1;
            if (!*o.api_key) return cli_fail(CMD, "--api-key: empty key");
        } else if (!strcmp(a, "--chat-template")) {
            if (!(o.chat_template = cli_value(CMD, argc, argv, &i))) return 1;
            if (strcmp(o.chat_template, "auto") && vm_chat_template_from_name(o.chat_template) < 0)
                return cli_fail(CMD, "--chat-template: unknown template '%s' (known: auto, %s)", o.chat_template, vm_chat_names());
        } else if (!strcmp(a, "--score")) {
            vm_task_mode m;
            if (!(o.score = cli_value(CMD, argc, argv, &i))) return 1;
            if (vm_task_mode_parse(o.score, &m)) return cli_fail(CMD, "--score: expected letter, loglik, loglik-raw or pmi, got '%s'", o.score);
        } else if (!strcmp(a, "--quiet")) {
            o.quiet = 1;
        } else if (a[0] == '-' && a[1]) {
            return cli_fail(CMD, "unknown option '%s' (see --help)", a);
        } else {
            if (o.model_path) return cli_fail(CMD, "unexpected argument '%s' (see --help)", a);
            o.model_path = a;
        }
    }
    if (!o.model_path) return cli_fail(CMD, "expected MODEL.gguf (see --help)");
    return vm_serve_run(&o) ? cli_fail(CMD, NULL) : 0;
}

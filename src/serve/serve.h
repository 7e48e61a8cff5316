// `vmoer serve`: an OpenAI-compatible HTTP server (libmicrohttpd) whose answers carry the routers'
// uncertainty (issue 17) and, on request, the routing itself (issue 22). docs/serve.md describes
// the endpoints and fields; this header is what the command-line front end calls.
#pragma once
#include <stddef.h>

typedef struct vm_serve_opts {
    const char *model_path;
    const char *adapter_path;      // NULL: the model's own routers
    const char *host;              // default "127.0.0.1"
    int port;                      // 0: any free port (printed)
    int parallel;                  // P slots decoding at once (default 1)
    int queue;                     // requests waiting for a slot before 503 (default 64)
    int threads;                   // kernel threads in total, shared by the slots (0: the cores)
    int n_ctx;                     // context per slot (0: the model's)
    int max_tokens;                // cap on a request's max_tokens (default 1024)
    size_t max_body;               // request body bytes (default 1 MiB)
    const char *api_key;           // NULL: no check
    const char *chat_template;     // NULL or "auto": the model's; or a name (chat.h), "none" included
    const char *score;             // /v1/vmoer/choices default scoring mode (default "letter")
    int max_routing_tokens;        // most tokens a request may ask routing for (prompt + max_tokens)
    const char *model_name;        // id in /v1/models (default: the file name without .gguf)
    int token_delay_ms;            // testing aid: sleep after each generated token
    int quiet;                     // no per-request log lines
} vm_serve_opts;

void vm_serve_opts_default(vm_serve_opts *o);
// Loads the slots, listens, and serves until SIGTERM or SIGINT; then stops accepting, finishes
// every request in flight, and returns 0. -1 with an error when it cannot start.
int vm_serve_run(const vm_serve_opts *o);

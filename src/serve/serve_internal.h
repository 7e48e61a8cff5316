// Internals of `vmoer serve`: the server, its slots and the jobs that travel from an HTTP
// connection thread (parse, validate, enqueue, send) to a slot thread (run the model).
//
// Threads: libmicrohttpd runs one thread per connection (MHD_USE_THREAD_PER_CONNECTION), which
// may block while its request waits for a slot, so a slow model never stalls other connections;
// P slot threads each own a vm_model (the same file mapped again: the weights are one page cache)
// with its own adapter routers, context and read-out collector (gen.h). One mutex guards the queue
// and every job's state; each job has its own condition variable for the thread that sends it.
#pragma once
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>

#include "data/task.h"
#include "gen/gen.h"
#include "serve/serve.h"

#define SRV_MAX_STOP 4           // stop strings per request (OpenAI's limit)

typedef enum srv_kind { SRV_COMPLETION = 0, SRV_CHAT, SRV_CHOICES } srv_kind;

// One request's work and its output. Owned jointly (refs) by the connection and the slot.
typedef struct srv_job {
    // ---- the request, fixed once parsed ----
    srv_kind kind;
    int stream, include_usage;
    char id[48];
    long long created;
    int32_t *prompt;
    int n_prompt;
    vm_gen_params gp;
    char *stop[SRV_MAX_STOP];
    int n_stop;
    int logprobs;                // completions: -1 off, else top count; chat: 0/1
    int top_logprobs;            // chat: top count
    int routing;                 // return_routing
    int r_layers[512], n_rl;     // its layers (MoE layers; no model has more)
    int r_json;                  // "format": "json" (else base64)
    vm_task_input task;          // choices: the item's sequences
    char *choice_text[VM_MCQ_MAX_CHOICES];
    int passes;
    // ---- shared state (server mutex) ----
    int refs;
    int cancelled;               // the client went away: stop at the next token
    int done;                    // the slot has finished (out holds everything)
    int status;                  // HTTP status of a non-streamed answer
    char *out;                   // SSE bytes so far (stream) or the whole body
    size_t out_len, out_cap, out_sent;
    pthread_cond_t cond;
    // ---- for the log line ----
    int slot, n_gen;
    const char *finish;
} srv_job;

typedef struct srv_slot {
    struct srv *s;
    int idx;
    vm_model *m;
    vm_gen *g;
    pthread_t th;
    int started;
} srv_slot;

typedef struct srv {
    vm_serve_opts o;
    char model_id[128];
    const vm_tokenizer *tok;     // slot 0's; the tokenizer is thread-safe
    const vm_model *m0;          // slot 0's model: hyper-parameters for validation (read only)
    int chat_tmpl;               // -1: no chat template applies (chat_err says why)
    char chat_err[512];
    int n_ctx;
    int n_slots;
    srv_slot *slots;
    struct MHD_Daemon *d;
    pthread_mutex_t mu;
    pthread_cond_t work;         // a job was queued (or the server stops)
    pthread_cond_t idle;         // a request finished (drain waits for none left)
    srv_job **q;                 // FIFO ring of queued jobs
    int q_head, q_len;
    int busy;                    // slots running a job
    int active;                  // HTTP requests in progress
    int draining, stopping;
    long long n_requests, n_cancelled, n_rejected;
    long long next_id;
    json_t *info;                // vm_gen_info_json of slot 0 (router, read-out layers, scores)
} srv;

// slots.c
int srv_slots_start(srv *s);
void srv_slots_stop(srv *s);
// Queues j (taking a reference); -1 when the queue is full or the server drains.
int srv_enqueue(srv *s, srv_job *j);
void srv_job_release(srv *s, srv_job *j);   // under s->mu
// Appends bytes to j->out and wakes the sender (takes s->mu).
int srv_job_emit(srv *s, srv_job *j, const char *bytes, size_t n);

// request.c: a parsed request (status 0) or an OpenAI-style error (status 4xx, message, param).
typedef struct srv_err { int status; char type[40], code[48], param[48], msg[400]; } srv_err;
srv_job *srv_parse(srv *s, srv_kind kind, const char *body, size_t len, srv_err *e);
void srv_job_free(srv_job *j);

// response.c
json_t *srv_error_json(const srv_err *e);
char *srv_models_json(const srv *s);
char *srv_health_json(srv *s);      // takes s->mu
// The whole job on slot sl (gen/choices), writing its answer into j->out.
void srv_run_job(srv *s, srv_slot *sl, srv_job *j);

// The HTTP side of `vmoer serve` on libmicrohttpd: one thread per connection, request bodies
// gathered here, routes, API key, OpenAI-style errors, server-sent events, and the drain on
// SIGTERM. Generation itself runs on the slots (slots.c, response.c).
//
// A connection's thread waits while its request is queued or decoding, and looks at the socket
// every 100 ms: a client that closed it cancels its request, which frees the slot at the next
// token (or skips the request if it was still queued).
#include "serve/serve_internal.h"
#include "gen/gen_json.h"
#include "util/err.h"

#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <omp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

void vm_serve_opts_default(vm_serve_opts *o) {
    *o = (vm_serve_opts){ .host = "127.0.0.1", .port = 8080, .parallel = 1, .queue = 64, .max_tokens = 1024,
                          .max_body = 1u << 20, .score = "letter", .max_routing_tokens = 4096 };
}

typedef struct conn_req {
    char *body;
    size_t len, cap;
    int too_big;
    srv_job *job;                // the request's job (a reference, released when the request ends)
    int status;
    char method[8], path[64];
    struct timespec t0;
} conn_req;

typedef struct stream_ctx { srv *s; srv_job *j; int fd; } stream_ctx;

// ---------------------------------------------------------------- helpers

// The client closed its end (EOF or an error on the socket; pipelined bytes are not a close).
static int peer_gone(int fd) {
    struct pollfd p = { fd, POLLIN | POLLRDHUP, 0 };
    if (fd < 0 || poll(&p, 1, 0) <= 0) return 0;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) return 1;
    char c;
    return recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

static int conn_fd(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

static void wait_a_little(srv *s, srv_job *j) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 100 * 1000000L;
    if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
    pthread_cond_timedwait(&j->cond, &s->mu, &ts);
}

// Sends body (malloc'd, taken) with status; an extra header when name is not NULL.
static enum MHD_Result send_body(srv *s, struct MHD_Connection *c, conn_req *r, int status, char *body,
                                 const char *ctype, const char *name, const char *value) {
    if (!body) return MHD_NO;
    struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!resp) { free(body); return MHD_NO; }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (name) MHD_add_response_header(resp, name, value);
    if (s->draining) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    r->status = status;
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result send_error(srv *s, struct MHD_Connection *c, conn_req *r, int status, const char *type,
                                  const char *code, const char *hname, const char *hvalue, const char *fmt, ...)
    VM_PRINTF(9, 10);
static enum MHD_Result send_error(srv *s, struct MHD_Connection *c, conn_req *r, int status, const char *type,
                                  const char *code, const char *hname, const char *hvalue, const char *fmt, ...) {
    srv_err e = { .status = status };
    snprintf(e.type, sizeof e.type, "%s", type);
    snprintf(e.code, sizeof e.code, "%s", code ? code : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.msg, sizeof e.msg, fmt, ap);
    va_end(ap);
    json_t *j = srv_error_json(&e);
    char *b = vm_json_dump(j);
    json_decref(j);
    return send_body(s, c, r, status, b, "application/json", hname, hvalue);
}

static enum MHD_Result send_parse_error(srv *s, struct MHD_Connection *c, conn_req *r, const srv_err *e) {
    json_t *j = srv_error_json(e);
    char *b = vm_json_dump(j);
    json_decref(j);
    return send_body(s, c, r, e->status, b, "application/json", NULL, NULL);
}

// "Authorization: Bearer KEY", compared in constant time.
static int key_ok(const char *hdr, const char *key) {
    if (!hdr || strncmp(hdr, "Bearer ", 7)) return 0;
    const char *k = hdr + 7;
    const size_t a = strlen(k), b = strlen(key);
    unsigned d = a != b;
    for (size_t i = 0; i < b; i++) d |= (unsigned char)(i < a ? k[i] : 0) ^ (unsigned char)key[i];
    return d == 0;
}

// ---------------------------------------------------------------- streaming

static ssize_t sse_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    stream_ctx *sc = cls;
    srv *s = sc->s;
    srv_job *j = sc->j;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        if (j->out_sent < j->out_len) {
            size_t n = j->out_len - j->out_sent;
            if (n > max) n = max;
            memcpy(buf, j->out + j->out_sent, n);
            j->out_sent += n;
            if (j->out_sent == j->out_len) j->out_sent = j->out_len = 0;   // the buffer starts over
            pthread_mutex_unlock(&s->mu);
            return (ssize_t)n;
        }
        if (j->done) { pthread_mutex_unlock(&s->mu); return MHD_CONTENT_READER_END_OF_STREAM; }
        wait_a_little(s, j);
        if (j->out_sent == j->out_len && !j->done && peer_gone(sc->fd)) {
            j->cancelled = 1;
            pthread_mutex_unlock(&s->mu);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
}

static void sse_free(void *cls) {
    stream_ctx *sc = cls;
    pthread_mutex_lock(&sc->s->mu);
    if (!sc->j->done) sc->j->cancelled = 1;   // the connection ended before the answer did
    srv_job_release(sc->s, sc->j);
    pthread_mutex_unlock(&sc->s->mu);
    free(sc);
}

// ---------------------------------------------------------------- generation requests

static enum MHD_Result post_job(srv *s, struct MHD_Connection *c, conn_req *r, srv_kind kind) {
    srv_err e;
    srv_job *j = srv_parse(s, kind, r->body ? r->body : "", r->len, &e);
    if (!j) return send_parse_error(s, c, r, &e);
    if (srv_enqueue(s, j)) {
        srv_job_free(j);
        return send_error(s, c, r, 503, "server_error", "server_busy", MHD_HTTP_HEADER_RETRY_AFTER, "1",
                          s->draining ? "the server is shutting down" :
                          "the server is busy (%d requests decoding, %d queued): retry later", s->n_slots, s->o.queue);
    }
    r->job = j;   // the connection's reference (srv_parse gave one; the queue took another)
    const int fd = conn_fd(c);
    if (j->stream) {
        stream_ctx *sc = malloc(sizeof *sc);
        struct MHD_Response *resp = sc ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, sse_reader, sc, sse_free) : NULL;
        if (!resp) {
            free(sc);
            pthread_mutex_lock(&s->mu);
            j->cancelled = 1;
            pthread_mutex_unlock(&s->mu);
            return MHD_NO;
        }
        pthread_mutex_lock(&s->mu);
        j->refs++;   // the response's
        pthread_mutex_unlock(&s->mu);
        *sc = (stream_ctx){ s, j, fd };
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        r->status = 200;
        enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
        MHD_destroy_response(resp);
        return ret;
    }
    pthread_mutex_lock(&s->mu);
    while (!j->done) {
        wait_a_little(s, j);
        if (!j->done && peer_gone(fd)) {   // nobody to answer: stop the work and close
            j->cancelled = 1;
            pthread_mutex_unlock(&s->mu);
            r->status = 499;
            return MHD_NO;
        }
    }
    char *body = j->out;
    const int status = j->status ? j->status : 500;
    j->out = NULL;
    j->out_len = j->out_cap = 0;
    pthread_mutex_unlock(&s->mu);
    if (!body) return send_error(s, c, r, 500, "server_error", NULL, NULL, NULL, "the answer could not be written");
    return send_body(s, c, r, status, body, "application/json", NULL, NULL);
}

// ---------------------------------------------------------------- routes

typedef struct route { const char *path, *method; int kind; } route;
enum { R_HEALTH = -2, R_MODELS = -1 };
static const route routes[] = {
    { "/health", "GET", R_HEALTH }, { "/v1/models", "GET", R_MODELS },
    { "/v1/completions", "POST", SRV_COMPLETION }, { "/v1/chat/completions", "POST", SRV_CHAT },
    { "/v1/vmoer/choices", "POST", SRV_CHOICES },
};

static enum MHD_Result dispatch(srv *s, struct MHD_Connection *c, const char *url, const char *method, conn_req *r) {
    const route *rt = NULL;
    for (size_t i = 0; i < sizeof routes / sizeof *routes; i++) if (!strcmp(url, routes[i].path)) rt = &routes[i];
    if (!rt) return send_error(s, c, r, 404, "invalid_request_error", "not_found", NULL, NULL, "unknown endpoint %s %s", method, url);
    if (strcmp(method, rt->method))
        return send_error(s, c, r, 405, "invalid_request_error", "method_not_allowed", MHD_HTTP_HEADER_ALLOW, rt->method,
                          "%s expects %s, not %s", url, rt->method, method);
    if (rt->kind != R_HEALTH && s->o.api_key &&
        !key_ok(MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION), s->o.api_key))
        return send_error(s, c, r, 401, "invalid_request_error", "invalid_api_key", MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer",
                          "missing or incorrect API key: send Authorization: Bearer KEY");
    if (rt->kind == R_HEALTH) return send_body(s, c, r, 200, srv_health_json(s), "application/json", NULL, NULL);
    if (rt->kind == R_MODELS) return send_body(s, c, r, 200, srv_models_json(s), "application/json", NULL, NULL);
    if (r->too_big)
        return send_error(s, c, r, 413, "invalid_request_error", "request_too_large", NULL, NULL,
                          "the request body exceeds the limit of %zu bytes (--max-body)", s->o.max_body);
    return post_job(s, c, r, (srv_kind)rt->kind);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    srv *s = cls;
    conn_req *r = *con_cls;
    if (!r) {   // headers only: set up, refuse a declared oversized body before reading it
        if (!(r = calloc(1, sizeof *r))) return MHD_NO;
        *con_cls = r;
        snprintf(r->method, sizeof r->method, "%s", method);
        snprintf(r->path, sizeof r->path, "%s", url);
        clock_gettime(CLOCK_MONOTONIC, &r->t0);
        pthread_mutex_lock(&s->mu);
        s->active++;
        pthread_mutex_unlock(&s->mu);
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > s->o.max_body)
            return send_error(s, c, r, 413, "invalid_request_error", "request_too_large", NULL, NULL,
                              "the request body of %s bytes exceeds the limit of %zu bytes (--max-body)", cl, s->o.max_body);
        return MHD_YES;
    }
    if (*upload_size) {   // body bytes: kept up to the limit, the rest only counted
        if (!r->too_big && r->len + *upload_size > s->o.max_body) { r->too_big = 1; free(r->body); r->body = NULL; r->len = 0; }
        if (!r->too_big) {
            if (r->len + *upload_size + 1 > r->cap) {
                size_t cap = r->cap ? r->cap : 4096;
                while (cap < r->len + *upload_size + 1) cap *= 2;
                char *p = realloc(r->body, cap);
                if (!p) return MHD_NO;
                r->body = p; r->cap = cap;
            }
            memcpy(r->body + r->len, upload, *upload_size);
            r->len += *upload_size;
            r->body[r->len] = 0;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (s->draining && strcmp(url, "/health"))
        return send_error(s, c, r, 503, "server_error", "shutting_down", MHD_HTTP_HEADER_RETRY_AFTER, "1", "the server is shutting down");
    return dispatch(s, c, url, method, r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)c;
    srv *s = cls;
    conn_req *r = *con_cls;
    if (!r) return;
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    const double ms = (t1.tv_sec - r->t0.tv_sec) * 1e3 + (t1.tv_nsec - r->t0.tv_nsec) / 1e6;
    pthread_mutex_lock(&s->mu);
    if (!s->o.quiet) {
        char what[160] = "";
        if (r->job && r->job->done)
            snprintf(what, sizeof what, " slot %d, prompt %d + %d tokens, %s", r->job->slot, r->job->n_prompt, r->job->n_gen,
                     r->job->finish ? r->job->finish : "?");
        fprintf(stderr, "vmoer serve: %s %s %d%s, %.1f ms%s\n", r->method, r->path, r->status, what, ms,
                toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection closed early)");
    }
    if (r->job) {
        if (!r->job->done) r->job->cancelled = 1;
        srv_job_release(s, r->job);
    }
    s->active--;
    pthread_cond_broadcast(&s->idle);
    pthread_mutex_unlock(&s->mu);
    free(r->body);
    free(r);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    srv *s = cls;
    if (s->o.quiet) return;
    fputs("vmoer serve: libmicrohttpd: ", stderr);
    vfprintf(stderr, fmt, ap);
}

// ---------------------------------------------------------------- the server

// The chat template: --chat-template NAME, or the model's own; "none" only when asked for by name.
static void pick_chat(srv *s) {
    char note[256];
    const char *name = s->o.chat_template && strcmp(s->o.chat_template, "auto") ? s->o.chat_template : NULL;
    s->chat_tmpl = vm_chat_pick_gguf(s->m0->gguf, name, note, sizeof note);
    if (s->chat_tmpl < 0)
        snprintf(s->chat_err, sizeof s->chat_err, "no chat template applies: %s", vm_errmsg());
    else if (!name && note[0]) {
        s->chat_tmpl = -1;
        snprintf(s->chat_err, sizeof s->chat_err, "this model has no chat template (tokenizer.chat_template): start the "
                 "server with --chat-template NAME (none: the messages' text as it is; known: %s)", vm_chat_names());
    }
}

static void model_name(srv *s) {
    if (s->o.model_name) { snprintf(s->model_id, sizeof s->model_id, "%s", s->o.model_name); return; }
    const char *b = strrchr(s->o.model_path, '/');
    snprintf(s->model_id, sizeof s->model_id, "%s", b ? b + 1 : s->o.model_path);
    size_t n = strlen(s->model_id);
    if (n > 5 && !strcmp(s->model_id + n - 5, ".gguf")) s->model_id[n - 5] = 0;
}

static struct MHD_Daemon *listen_on(srv *s, int *port) {
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV }, *ai = NULL;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", s->o.port);
    int e = getaddrinfo(s->o.host, ps, &hints, &ai);
    if (e) { vm_err("serve: --host %s: %s", s->o.host, gai_strerror(e)); return NULL; }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    const unsigned limit = (unsigned)(s->n_slots + s->o.queue + 64);   // + idle keep-alive and health checks
    struct MHD_Daemon *d = MHD_start_daemon(flags, (uint16_t)s->o.port, NULL, NULL, on_request, s,
                                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,   // first: it covers the others
                                            MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                                            MHD_OPTION_CONNECTION_LIMIT, limit,
                                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
                                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                                            MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!d) { vm_err("serve: cannot listen on %s:%d (%s)", s->o.host, s->o.port, errno ? strerror(errno) : "address in use?"); return NULL; }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    *port = di ? di->port : s->o.port;
    return d;
}

int vm_serve_run(const vm_serve_opts *o) {
    srv *s = vm_calloc(1, sizeof *s);
    if (!s) return -1;
    s->o = *o;
    if (s->o.parallel < 1) s->o.parallel = 1;
    if (s->o.threads < 1) s->o.threads = omp_get_num_procs();
    if (!s->o.host) s->o.host = "127.0.0.1";
    if (!s->o.score) s->o.score = "letter";
    s->n_slots = s->o.parallel;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work, NULL);
    pthread_cond_init(&s->idle, NULL);
    model_name(s);
    // every thread started from here on inherits the mask: only this one takes the signals
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    signal(SIGPIPE, SIG_IGN);
    int rc = -1, port = 0, forced = 0, lfd = -1;
    if (srv_slots_start(s)) goto done;
    pick_chat(s);
    s->info = vm_gen_info_json(s->slots[0].g);
    if (!(s->d = listen_on(s, &port))) goto done;
    const int per = s->o.threads / s->n_slots;
    fprintf(stderr, "vmoer serve: listening on http://%s%s%s:%d (model %s%s%s, %d slot%s x %d kernel thread%s, queue %d)\n",
            strchr(s->o.host, ':') ? "[" : "", s->o.host, strchr(s->o.host, ':') ? "]" : "", port, s->model_id,
            s->o.adapter_path ? ", adapter " : "", s->o.adapter_path ? s->o.adapter_path : "", s->n_slots,
            s->n_slots == 1 ? "" : "s", per > 1 ? per : 1, per > 1 ? "s" : "", s->o.queue);
    if (s->chat_tmpl < 0 && !s->o.quiet) fprintf(stderr, "vmoer serve: note: /v1/chat/completions answers 400: %s\n", s->chat_err);
    for (;;) {
        const struct timespec tick = { 0, 100 * 1000000L };
        const int sig = sigtimedwait(&set, NULL, &tick);
        pthread_mutex_lock(&s->mu);
        if (sig > 0 && s->draining) forced = 1;
        if (sig > 0 && !s->draining) {
            s->draining = 1;
            fprintf(stderr, "vmoer serve: %s: finishing %d request%s in flight, then exiting\n", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                    s->active, s->active == 1 ? "" : "s");
        }
        const int idle = s->draining && s->active == 0;
        pthread_mutex_unlock(&s->mu);
        if (sig > 0 && !forced && lfd < 0) {
            // no new connections: a quiesced socket still queues them (they would hang until the
            // end), so it is shut down, which refuses them; it is closed after MHD_stop_daemon
            lfd = (int)MHD_quiesce_daemon(s->d);
            if (lfd >= 0) shutdown(lfd, SHUT_RDWR);
        }
        if (idle || forced) break;
    }
    rc = forced ? vm_err("serve: a second signal while draining: stopped without finishing") : 0;
done:
    if (s->d) MHD_stop_daemon(s->d);   // closes idle connections
    if (lfd >= 0) close(lfd);          // libmicrohttpd leaves a quiesced socket to its caller
    srv_slots_stop(s);
    json_decref(s->info);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_cond_destroy(&s->work);
    pthread_cond_destroy(&s->idle);
    pthread_mutex_destroy(&s->mu);
    free(s);
    return rc;
}

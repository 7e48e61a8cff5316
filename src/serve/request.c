// Request bodies to jobs: every field is type-checked and range-checked here, in the connection's
// thread, so that a malformed request costs no slot and gets a 4xx naming the field. Unknown fields
// are refused (as OpenAI does: "Unrecognized request argument"), so a client never believes an
// option it sent was honoured.
#include "serve/serve_internal.h"
#include "data/dataset.h"
#include "util/err.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int fail(srv_err *e, const char *param, const char *code, const char *fmt, ...) VM_PRINTF(4, 5);
static int fail(srv_err *e, const char *param, const char *code, const char *fmt, ...) {
    e->status = 400;
    snprintf(e->type, sizeof e->type, "invalid_request_error");
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    snprintf(e->code, sizeof e->code, "%s", code ? code : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

// The fields each endpoint knows; anything else is refused.
static const char *const common_keys[] = {
    "model", "max_tokens", "temperature", "top_p", "top_k", "seed", "stop", "stream", "stream_options",
    "logprobs", "n", "user", "presence_penalty", "frequency_penalty", "logit_bias", "vmoer", NULL };
static const char *const completion_keys[] = { "prompt", "echo", "best_of", "suffix", NULL };
static const char *const chat_keys[] = { "messages", "max_completion_tokens", "top_logprobs", "response_format", NULL };
static const char *const choices_keys[] = { "model", "question", "choices", "score", "passes", "seed", "user", NULL };

static int known(const char *k, const char *const *list) {
    for (; list && *list; list++) if (!strcmp(k, *list)) return 1;
    return 0;
}

static int check_keys(const json_t *o, const char *const *a, const char *const *b, const char *where, srv_err *e) {
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)o, k, v) {
        if (known(k, a) || known(k, b)) continue;
        return fail(e, k, "unknown_parameter", "Unrecognized request argument supplied%s%s: %s", where ? " in " : "",
                    where ? where : "", k);
    }
    return 0;
}

// Present and not null.
static json_t *field(const json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    return v && !json_is_null(v) ? v : NULL;
}

static int get_int(const json_t *o, const char *k, long long lo, long long hi, long long *out, srv_err *e) {
    json_t *v = field(o, k);
    if (!v) return 0;
    if (!json_is_integer(v)) return fail(e, k, "invalid_type", "%s: expected an integer", k);
    long long x = json_integer_value(v);
    if (x < lo || x > hi) return fail(e, k, "invalid_value", "%s: %lld is outside [%lld, %lld]", k, x, lo, hi);
    *out = x;
    return 0;
}

static int get_num(const json_t *o, const char *k, double lo, double hi, double *out, srv_err *e) {
    json_t *v = field(o, k);
    if (!v) return 0;
    if (!json_is_number(v)) return fail(e, k, "invalid_type", "%s: expected a number", k);
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) return fail(e, k, "invalid_value", "%s: %g is outside [%g, %g]", k, x, lo, hi);
    *out = x;
    return 0;
}

static int get_bool(const json_t *o, const char *k, int *out, srv_err *e) {
    json_t *v = field(o, k);
    if (!v) return 0;
    if (!json_is_boolean(v)) return fail(e, k, "invalid_type", "%s: expected true or false", k);
    *out = json_is_true(v);
    return 0;
}

static const char *get_str(const json_t *o, const char *k, srv_err *e, int *err) {
    json_t *v = field(o, k);
    if (!v) return NULL;
    if (!json_is_string(v)) { *err = fail(e, k, "invalid_type", "%s: expected a string", k); return NULL; }
    return json_string_value(v);
}

// Options OpenAI has that vmoer accepts only at their neutral value.
static int neutral_only(const json_t *o, srv_err *e) {
    double pp = 0, fp = 0;
    if (get_num(o, "presence_penalty", -2, 2, &pp, e) || get_num(o, "frequency_penalty", -2, 2, &fp, e)) return -1;
    if (pp != 0 || fp != 0)
        return fail(e, pp != 0 ? "presence_penalty" : "frequency_penalty", "unsupported_value",
                    "presence/frequency penalties are not supported (only 0)");
    long long n = 1;
    if (get_int(o, "n", 1, 128, &n, e)) return -1;
    if (n != 1) return fail(e, "n", "unsupported_value", "n: only one choice per request is supported (n = 1)");
    json_t *lb = field(o, "logit_bias");
    if (lb && (!json_is_object(lb) || json_object_size(lb)))
        return fail(e, "logit_bias", "unsupported_value", "logit_bias is not supported (only {})");
    int err = 0;
    get_str(o, "user", e, &err);
    get_str(o, "model", e, &err);
    return err;
}

static int parse_stop(const json_t *o, srv_job *j, srv_err *e) {
    json_t *v = field(o, "stop");
    if (!v) return 0;
    if (json_is_string(v)) {
        if (!json_string_length(v)) return fail(e, "stop", "invalid_value", "stop: empty string");
        return (j->stop[j->n_stop++] = vm_strdup(json_string_value(v))) ? 0 : fail(e, "stop", NULL, "out of memory");
    }
    if (!json_is_array(v) || json_array_size(v) > SRV_MAX_STOP)
        return fail(e, "stop", "invalid_type", "stop: expected a string or an array of at most %d strings", SRV_MAX_STOP);
    size_t i;
    json_t *s;
    json_array_foreach(v, i, s) {
        if (!json_is_string(s) || !json_string_length(s)) return fail(e, "stop", "invalid_type", "stop[%zu]: expected a non-empty string", i);
        if (!(j->stop[j->n_stop++] = vm_strdup(json_string_value(s)))) return fail(e, "stop", NULL, "out of memory");
    }
    return 0;
}

// "vmoer": {"return_routing", "layers", "format", "abstain": {"score", "threshold"}}
static int parse_vmoer(srv *s, const json_t *o, srv_job *j, srv_err *e) {
    json_t *v = field(o, "vmoer");
    if (!v) return 0;
    if (!json_is_object(v)) return fail(e, "vmoer", "invalid_type", "vmoer: expected an object");
    static const char *const keys[] = { "return_routing", "layers", "format", "abstain", NULL };
    if (check_keys(v, keys, NULL, "vmoer", e) || get_bool(v, "return_routing", &j->routing, e)) return -1;
    const vm_model *m = s->m0;
    json_t *L = field(v, "layers");
    if (L && !j->routing) return fail(e, "vmoer.layers", "invalid_value", "vmoer.layers needs vmoer.return_routing: true");
    if (L) {
        if (!json_is_array(L) || !json_array_size(L) || json_array_size(L) > (size_t)m->hp.n_layer ||
            json_array_size(L) > sizeof j->r_layers / sizeof *j->r_layers)
            return fail(e, "vmoer.layers", "invalid_type", "vmoer.layers: expected a non-empty array of MoE layer indices");
        size_t i;
        json_t *x;
        json_array_foreach(L, i, x) {
            long long l = json_is_integer(x) ? json_integer_value(x) : -1;
            if (l < 0 || l >= m->hp.n_layer || !m->layers[l].is_moe)
                return fail(e, "vmoer.layers", "invalid_value", "vmoer.layers[%zu]: not a MoE layer of this model", i);
            if (j->n_rl && l <= j->r_layers[j->n_rl - 1])
                return fail(e, "vmoer.layers", "invalid_value", "vmoer.layers: expected ascending, distinct layers");
            j->r_layers[j->n_rl++] = (int)l;
        }
    } else if (j->routing) {
        for (int l = 0; l < m->hp.n_layer && j->n_rl < (int)(sizeof j->r_layers / sizeof *j->r_layers); l++)
            if (m->layers[l].is_moe) j->r_layers[j->n_rl++] = l;
    }
    int err = 0;
    const char *f = get_str(v, "format", e, &err);
    if (err) return -1;
    if (f && strcmp(f, "base64") && strcmp(f, "json"))
        return fail(e, "vmoer.format", "invalid_value", "vmoer.format: expected \"base64\" or \"json\"");
    j->r_json = f && !strcmp(f, "json");
    json_t *a = field(v, "abstain");
    if (a) {
        static const char *const akeys[] = { "score", "threshold", NULL };
        if (!json_is_object(a)) return fail(e, "vmoer.abstain", "invalid_type", "vmoer.abstain: expected {\"score\", \"threshold\"}");
        if (check_keys(a, akeys, NULL, "vmoer.abstain", e)) return -1;
        const char *sc = get_str(a, "score", e, &err);
        if (err) return -1;
        int id = vm_gen_score_parse(sc ? sc : "entropy");
        if (id < 0) return fail(e, "vmoer.abstain.score", "invalid_value", "vmoer.abstain.score: unknown score '%s' (known: %s)", sc, vm_gen_score_names());
        json_t *t = field(a, "threshold");
        if (!t || !json_is_number(t)) return fail(e, "vmoer.abstain.threshold", "invalid_type", "vmoer.abstain.threshold: expected a number");
        j->gp.abstain_score = id;
        j->gp.abstain_threshold = json_number_value(t);
    }
    return 0;
}

// Sampling and length options shared by completions and chat.
static int parse_common(srv *s, const json_t *o, srv_job *j, srv_err *e) {
    long long x;
    double d;
    if (neutral_only(o, e) || parse_stop(o, j, e) || get_bool(o, "stream", &j->stream, e)) return -1;
    x = j->gp.max_tokens;
    if (get_int(o, "max_tokens", 0, s->o.max_tokens, &x, e)) return -1;
    if (j->kind == SRV_CHAT && get_int(o, "max_completion_tokens", 0, s->o.max_tokens, &x, e)) return -1;
    j->gp.max_tokens = (int)x;
    d = 1.0;
    if (get_num(o, "temperature", 0, 2, &d, e)) return -1;
    j->gp.temp = (float)d;
    d = 1.0;
    if (get_num(o, "top_p", 0, 1, &d, e)) return -1;
    if (d <= 0) return fail(e, "top_p", "invalid_value", "top_p: must be above 0");
    j->gp.top_p = (float)d;
    x = 0;
    if (get_int(o, "top_k", 0, INT_MAX, &x, e)) return -1;
    j->gp.top_k = (int)x;
    x = 0;
    if (get_int(o, "seed", LLONG_MIN, LLONG_MAX, &x, e)) return -1;
    j->gp.seed = (uint64_t)x;
    json_t *so = field(o, "stream_options");
    if (so) {
        static const char *const keys[] = { "include_usage", NULL };
        if (!j->stream) return fail(e, "stream_options", "invalid_value", "stream_options: only allowed with stream: true");
        if (!json_is_object(so)) return fail(e, "stream_options", "invalid_type", "stream_options: expected an object");
        if (check_keys(so, keys, NULL, "stream_options", e) || get_bool(so, "include_usage", &j->include_usage, e)) return -1;
    }
    return parse_vmoer(s, o, j, e);
}

static int tokenize(srv *s, const char *text, int special, srv_job *j, srv_err *e, const char *param) {
    int n = vm_tokenize_alloc(s->tok, text, strlen(text), 1, special, &j->prompt);
    if (n < 0) return fail(e, param, NULL, "%s: %s", param, vm_errmsg());
    j->n_prompt = n;
    return 0;
}

// prompt: a string, [string], [ids] or [[ids]] (one prompt per request).
static int parse_prompt(srv *s, const json_t *o, srv_job *j, srv_err *e) {
    json_t *p = field(o, "prompt");
    if (!p) return fail(e, "prompt", "missing_required_parameter", "prompt: required");
    if (json_is_array(p) && json_array_size(p) == 1 && !json_is_integer(json_array_get(p, 0))) p = json_array_get(p, 0);
    if (json_is_string(p)) return tokenize(s, json_string_value(p), 0, j, e, "prompt");
    if (!json_is_array(p)) return fail(e, "prompt", "invalid_type", "prompt: expected a string or an array of token ids");
    const size_t n = json_array_size(p);
    if (n > (size_t)s->n_ctx) { j->n_prompt = n > INT_MAX ? INT_MAX : (int)n; return 0; }   // refused below: too long
    if (!(j->prompt = vm_malloc((n ? n : 1) * sizeof *j->prompt))) return fail(e, "prompt", NULL, "out of memory");
    size_t i;
    json_t *x;
    json_array_foreach(p, i, x) {
        long long id = json_is_integer(x) ? json_integer_value(x) : -1;
        if (id < 0 || id >= s->m0->hp.n_vocab)
            return fail(e, "prompt", "invalid_value", "prompt[%zu]: expected a token id in [0, %d)", i, s->m0->hp.n_vocab);
        j->prompt[i] = (int32_t)id;
    }
    j->n_prompt = (int)n;
    if (n == 0) return fail(e, "prompt", "invalid_value", "prompt: no tokens");
    return 0;
}

static int parse_completion(srv *s, const json_t *o, srv_job *j, srv_err *e) {
    if (check_keys(o, common_keys, completion_keys, NULL, e) || parse_common(s, o, j, e)) return -1;
    int echo = 0;
    long long lp = -1, best = 1;
    if (get_bool(o, "echo", &echo, e) || get_int(o, "best_of", 1, 1, &best, e)) return -1;
    if (echo) return fail(e, "echo", "unsupported_value", "echo is not supported");
    if (field(o, "suffix")) return fail(e, "suffix", "unsupported_value", "suffix is not supported");
    if (get_int(o, "logprobs", 0, VM_GEN_MAX_TOP, &lp, e)) return -1;
    j->logprobs = (int)lp;
    j->gp.n_top = lp > 0 ? (int)lp : 0;
    return parse_prompt(s, o, j, e);
}

// A message's content: a string, or an array of {"type": "text", "text": ...} parts joined.
static char *message_text(const json_t *c, size_t i, srv_err *e) {
    if (!c) return vm_strdup("");
    if (json_is_string(c)) return vm_strdup(json_string_value(c));
    if (!json_is_array(c)) { fail(e, "messages", "invalid_type", "messages[%zu].content: expected a string or an array of text parts", i); return NULL; }
    size_t len = 0, k;
    json_t *part;
    json_array_foreach(c, k, part) {
        const char *t = json_string_value(json_object_get(part, "type")), *x = json_string_value(json_object_get(part, "text"));
        if (!t || strcmp(t, "text") || !x) {
            fail(e, "messages", "invalid_value", "messages[%zu].content[%zu]: only {\"type\": \"text\", \"text\": ...} parts are supported", i, k);
            return NULL;
        }
        len += strlen(x);
    }
    char *out = vm_malloc(len + 1);
    if (!out) return NULL;
    out[0] = 0;
    json_array_foreach(c, k, part) strcat(out, json_string_value(json_object_get(part, "text")));
    return out;
}

static int parse_chat(srv *s, const json_t *o, srv_job *j, srv_err *e) {
    if (check_keys(o, common_keys, chat_keys, NULL, e) || parse_common(s, o, j, e)) return -1;
    j->logprobs = 0;   // chat: a boolean (completions: a count, -1 = off)
    if (get_bool(o, "logprobs", &j->logprobs, e)) return -1;
    long long top = 0;
    if (get_int(o, "top_logprobs", 0, VM_GEN_MAX_TOP, &top, e)) return -1;
    if (top && !j->logprobs) return fail(e, "top_logprobs", "invalid_value", "top_logprobs needs logprobs: true");
    j->top_logprobs = (int)top;
    j->gp.n_top = (int)top;
    json_t *rf = field(o, "response_format");
    if (rf && (!json_is_object(rf) || !json_is_string(json_object_get(rf, "type")) ||
               strcmp(json_string_value(json_object_get(rf, "type")), "text")))
        return fail(e, "response_format", "unsupported_value", "response_format: only {\"type\": \"text\"} is supported");
    json_t *msgs = field(o, "messages");
    if (!msgs || !json_is_array(msgs) || !json_array_size(msgs))
        return fail(e, "messages", msgs ? "invalid_type" : "missing_required_parameter", "messages: expected a non-empty array");
    if (s->chat_tmpl < 0) { fail(e, "messages", "no_chat_template", "%s", s->chat_err); return -1; }
    const size_t n = json_array_size(msgs);
    vm_chat_msg *cm = vm_calloc(n, sizeof *cm);
    char **texts = vm_calloc(n, sizeof *texts);
    int rc = cm && texts ? 0 : fail(e, "messages", NULL, "out of memory");
    size_t i;
    json_t *m;
    static const char *const mkeys[] = { "role", "content", "name", NULL };
    json_array_foreach(msgs, i, m) {
        if (rc) break;
        if (!json_is_object(m)) { rc = fail(e, "messages", "invalid_type", "messages[%zu]: expected an object", i); break; }
        char where[32];
        snprintf(where, sizeof where, "messages[%zu]", i);
        if ((rc = check_keys(m, mkeys, NULL, where, e))) break;
        const char *role = json_string_value(json_object_get(m, "role"));
        if (!role || (strcmp(role, "system") && strcmp(role, "developer") && strcmp(role, "user") && strcmp(role, "assistant"))) {
            rc = fail(e, "messages", "invalid_value", "messages[%zu].role: expected system, developer, user or assistant", i);
            break;
        }
        if (!(texts[i] = message_text(field(m, "content"), i, e))) { rc = -1; if (!e->status) fail(e, "messages", NULL, "out of memory"); break; }
        cm[i].role = !strcmp(role, "developer") ? "system" : role;   // OpenAI's newer name for it
        cm[i].content = texts[i];
    }
    char *text = NULL;
    if (!rc && !(text = vm_gen_chat_render(s->m0, s->tok, s->chat_tmpl, cm, (int)n)))
        rc = fail(e, "messages", "invalid_value", "messages: %s", vm_errmsg());
    // role markers of a real template become their tokens; the raw "none" rendering stays text
    if (!rc) rc = tokenize(s, text, s->chat_tmpl != VM_CHAT_NONE, j, e, "messages");
    j->gp.end_at_control = 1;
    free(text);
    for (i = 0; texts && i < n; i++) free(texts[i]);
    free(texts);
    free(cm);
    return rc;
}

static int parse_choices(srv *s, const json_t *o, srv_job *j, srv_err *e) {
    if (check_keys(o, choices_keys, NULL, NULL, e)) return -1;
    int err = 0;
    const char *q = get_str(o, "question", e, &err), *mode_name = get_str(o, "score", e, &err);
    get_str(o, "user", e, &err);
    get_str(o, "model", e, &err);
    if (err) return -1;
    if (!q || !*q) return fail(e, "question", "missing_required_parameter", "question: expected a non-empty string");
    vm_task_mode mode;
    if (vm_task_mode_parse(mode_name ? mode_name : s->o.score, &mode))
        return fail(e, "score", "invalid_value", "score: expected letter, loglik, loglik-raw or pmi");
    long long passes = 1, seed = 0;
    if (get_int(o, "passes", 1, 16, &passes, e) || get_int(o, "seed", LLONG_MIN, LLONG_MAX, &seed, e)) return -1;
    j->passes = (int)passes;
    j->gp.seed = (uint64_t)seed;
    json_t *c = field(o, "choices");
    if (!c || !json_is_array(c) || json_array_size(c) < VM_MCQ_MIN_CHOICES || json_array_size(c) > VM_MCQ_MAX_CHOICES)
        return fail(e, "choices", "invalid_type", "choices: expected an array of %d to %d strings", VM_MCQ_MIN_CHOICES, VM_MCQ_MAX_CHOICES);
    vm_mcq_item it = { .id = "request", .question = (char *)q, .n_choices = (int)json_array_size(c) };
    static char *const letters[VM_MCQ_MAX_CHOICES] = { "A", "B", "C", "D", "E", "F", "G", "H" };
    for (int k = 0; k < it.n_choices; k++) {
        json_t *x = json_array_get(c, (size_t)k);
        if (!json_is_string(x) || !json_string_length(x)) return fail(e, "choices", "invalid_type", "choices[%d]: expected a non-empty string", k);
        if (!(j->choice_text[k] = vm_strdup(json_string_value(x)))) return fail(e, "choices", NULL, "out of memory");
        it.choices[k] = j->choice_text[k];
        it.labels[k] = letters[k];
    }
    vm_task t;
    vm_task_init(&t, s->tok, mode, s->chat_tmpl >= 0 ? s->chat_tmpl : VM_CHAT_NONE, s->n_ctx);
    if (vm_task_build(&t, &it, &j->task)) return fail(e, "choices", "invalid_value", "%s", vm_errmsg());
    return 0;
}

srv_job *srv_parse(srv *s, srv_kind kind, const char *body, size_t len, srv_err *e) {
    memset(e, 0, sizeof *e);
    size_t bad = vm_dataset_utf8_check(body, len);
    if (bad < len) {
        fail(e, NULL, "invalid_encoding", "the request body is not valid UTF-8 (byte %zu)", bad + 1);
        return NULL;
    }
    json_error_t je;
    json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!o) { fail(e, NULL, "invalid_json", "the request body is not valid JSON: %s (line %d, column %d)", je.text, je.line, je.column); return NULL; }
    srv_job *j = NULL;
    if (!json_is_object(o)) { fail(e, NULL, "invalid_json", "the request body must be a JSON object"); goto out; }
    if (!(j = vm_calloc(1, sizeof *j))) { fail(e, NULL, NULL, "out of memory"); goto out; }
    j->kind = kind;
    j->logprobs = -1;
    vm_gen_params_default(&j->gp);
    j->gp.max_tokens = kind == SRV_CHAT ? s->o.max_tokens : 16;   // OpenAI: 16 for completions, "up to the context" for chat
    j->passes = 1;
    pthread_cond_init(&j->cond, NULL);
    int rc = kind == SRV_COMPLETION ? parse_completion(s, o, j, e) : kind == SRV_CHAT ? parse_chat(s, o, j, e)
                                                                                      : parse_choices(s, o, j, e);
    if (!rc && kind != SRV_CHOICES) {
        if (j->n_prompt == 0 || j->n_prompt > s->n_ctx)
            rc = fail(e, kind == SRV_CHAT ? "messages" : "prompt", "context_length_exceeded",
                      j->n_prompt ? "This model's maximum context length is %d tokens; the prompt has %d tokens"
                                  : "the prompt is empty and the vocabulary adds no BOS token (%d, %d)", s->n_ctx, j->n_prompt);
        long long want = (long long)j->n_prompt + j->gp.max_tokens;
        if (want > s->n_ctx) want = s->n_ctx;   // generation never passes the context
        if (!rc && j->routing && want > s->o.max_routing_tokens)
            rc = fail(e, "vmoer.return_routing", "routing_limit_exceeded",
                      "vmoer.return_routing: up to %lld tokens (the prompt's %d + max_tokens %d, within the context) exceed "
                      "this server's limit of %d routing tokens per request (--max-routing-tokens)", want, j->n_prompt,
                      j->gp.max_tokens, s->o.max_routing_tokens);
        j->gp.eval_last = j->routing;
    }
    if (rc) { srv_job_free(j); j = NULL; goto out; }
    pthread_mutex_lock(&s->mu);
    const long long id = ++s->next_id;
    pthread_mutex_unlock(&s->mu);
    snprintf(j->id, sizeof j->id, "%s-%lld", kind == SRV_COMPLETION ? "cmpl" : kind == SRV_CHAT ? "chatcmpl" : "mc", id);
    j->created = (long long)time(NULL);
    j->refs = 1;
out:
    json_decref(o);
    return j;
}

void srv_job_free(srv_job *j) {
    if (!j) return;
    free(j->prompt);
    for (int i = 0; i < j->n_stop; i++) free(j->stop[i]);
    for (int k = 0; k < VM_MCQ_MAX_CHOICES; k++) free(j->choice_text[k]);
    vm_task_input_free(&j->task);
    free(j->out);
    pthread_cond_destroy(&j->cond);
    free(j);
}

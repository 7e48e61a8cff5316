// Running a job on a slot and writing its answer in OpenAI's formats, with the `vmoer` object
// (per-token read-outs, the answer's summary, the routing when asked) on each choice and on each
// streamed chunk. docs/serve.md describes every field.
#include "serve/serve_internal.h"
#include "serve/text.h"
#include "eval/task_score.h"
#include "gen/gen_json.h"
#include "util/err.h"
#include "util/rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

json_t *srv_error_json(const srv_err *e) {
    json_t *o = json_object(), *x = json_object();
    json_object_set_new(x, "message", json_string(e->msg));
    json_object_set_new(x, "type", json_string(e->type[0] ? e->type : "invalid_request_error"));
    json_object_set_new(x, "param", e->param[0] ? json_string(e->param) : json_null());
    json_object_set_new(x, "code", e->code[0] ? json_string(e->code) : json_null());
    json_object_set_new(o, "error", x);
    return o;
}

// {"error": ...} of a failure inside the model run (500), from the pending vm_errmsg().
static json_t *internal_error_json(void) {
    srv_err e = { .status = 500 };
    snprintf(e.type, sizeof e.type, "server_error");
    snprintf(e.msg, sizeof e.msg, "%s", vm_errmsg());
    return srv_error_json(&e);
}

static char *dump_free(json_t *o) {
    char *s = vm_json_dump(o);
    json_decref(o);
    return s;
}

char *srv_models_json(const srv *s) {
    json_t *o = json_object(), *data = json_array(), *m = json_object(), *v = json_deep_copy(s->info);
    json_object_set_new(m, "id", json_string(s->model_id));
    json_object_set_new(m, "object", json_string("model"));
    json_object_set_new(m, "created", json_integer(0));
    json_object_set_new(m, "owned_by", json_string("vmoer"));
    json_object_set_new(v, "n_ctx", json_integer(s->n_ctx));
    json_object_set_new(v, "adapter", s->o.adapter_path ? json_string(s->o.adapter_path) : json_null());
    json_object_set_new(v, "chat_template", s->chat_tmpl >= 0 ? json_string(vm_chat_name(s->chat_tmpl)) : json_null());
    json_object_set_new(m, "vmoer", v);
    json_array_append_new(data, m);
    json_object_set_new(o, "object", json_string("list"));
    json_object_set_new(o, "data", data);
    return dump_free(o);
}

char *srv_health_json(srv *s) {
    json_t *o = json_object();
    pthread_mutex_lock(&s->mu);
    json_object_set_new(o, "status", json_string(s->draining ? "draining" : "ok"));
    json_object_set_new(o, "model", json_string(s->model_id));
    json_object_set_new(o, "slots", json_integer(s->n_slots));
    json_object_set_new(o, "slots_busy", json_integer(s->busy));
    json_object_set_new(o, "queued", json_integer(s->q_len));
    json_object_set_new(o, "queue_limit", json_integer(s->o.queue));
    json_object_set_new(o, "requests", json_integer(s->n_requests));
    json_object_set_new(o, "cancelled", json_integer(s->n_cancelled));
    json_object_set_new(o, "rejected", json_integer(s->n_rejected));
    pthread_mutex_unlock(&s->mu);
    return dump_free(o);
}

// ---------------------------------------------------------------- routing (issue 22)

static char *base64(const unsigned char *p, size_t n) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *o = vm_malloc(4 * ((n + 2) / 3) + 1), *w = o;
    if (!o) return NULL;
    for (size_t i = 0; i < n; i += 3) {
        const unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        *w++ = tab[v >> 18 & 63]; *w++ = tab[v >> 12 & 63];
        *w++ = i + 1 < n ? tab[v >> 6 & 63] : '=';
        *w++ = i + 2 < n ? tab[v & 63] : '=';
    }
    *w = 0;
    return o;
}

// n 32-bit values (float or int32) as {"dtype", "shape", "data": base64 of little-endian bytes},
// or as nested lists (as_json) of the given shape; float NaN is null there.
static json_t *array_json(const void *vals, int is_float, const int *shape, int nd, int as_json) {
    size_t n = 1;
    for (int d = 0; d < nd; d++) n *= (size_t)shape[d];
    const uint32_t *u = vals;
    if (as_json) {
        // innermost lists first: level d groups shape[d] items of level d + 1
        json_t *flat = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(flat, is_float ? vm_json_f32(((const float *)vals)[i])
                                                 : json_integer(((const int32_t *)vals)[i]));
        for (int d = nd - 1; d > 0; d--) {
            json_t *up = json_array();
            const size_t w = (size_t)shape[d], cnt = json_array_size(flat) / (w ? w : 1);
            for (size_t g = 0; g < cnt; g++) {
                json_t *grp = json_array();
                for (size_t k = 0; k < w; k++) json_array_append(grp, json_array_get(flat, g * w + k));
                json_array_append_new(up, grp);
            }
            json_decref(flat);
            flat = up;
        }
        return flat;
    }
    unsigned char *b = vm_malloc(4 * n + 1);
    if (!b) return json_null();
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 4; k++) b[4 * i + (size_t)k] = (unsigned char)(u[i] >> (8 * k));
    char *s64 = base64(b, 4 * n);
    free(b);
    json_t *o = json_object(), *sh = json_array();
    for (int d = 0; d < nd; d++) json_array_append_new(sh, json_integer(shape[d]));
    json_object_set_new(o, "dtype", json_string(is_float ? "float32" : "int32"));
    json_object_set_new(o, "shape", sh);
    json_object_set_new(o, "data", s64 ? json_string(s64) : json_null());
    free(s64);
    return o;
}

// Rows [from, to) of the capture: {"start", "n_tokens", "layers", "n_expert", "top_k", "ids",
// "experts", "gates", "probs", "logits", and each read-out some captured layer's kind writes}.
static json_t *routing_json(const vm_model *m, const vm_gen_routing *R, int from, int to, int as_json) {
    const int T = to - from, L = R->n_layers;
    json_t *o = json_object(), *layers = json_array();
    for (int i = 0; i < L; i++) json_array_append_new(layers, json_integer(R->layers[i]));
    json_object_set_new(o, "start", json_integer(from));
    json_object_set_new(o, "n_tokens", json_integer(T));
    json_object_set_new(o, "layers", layers);
    json_object_set_new(o, "n_expert", json_integer(R->N));
    json_object_set_new(o, "top_k", json_integer(R->K));
    json_object_set_new(o, "format", json_string(as_json ? "json" : "base64"));
    const size_t row = (size_t)from * (size_t)L;
    int sh1[1] = {T}, shK[3] = {T, L, R->K}, shN[3] = {T, L, R->N}, sh2[2] = {T, L};
    json_object_set_new(o, "ids", array_json(R->ids + from, 0, sh1, 1, as_json));
    json_object_set_new(o, "experts", array_json(R->experts + row * (size_t)R->K, 0, shK, 3, as_json));
    json_object_set_new(o, "gates", array_json(R->gates + row * (size_t)R->K, 1, shK, 3, as_json));
    json_object_set_new(o, "probs", array_json(R->probs + row * (size_t)R->N, 1, shN, 3, as_json));
    json_object_set_new(o, "logits", array_json(R->logits + row * (size_t)R->N, 1, shN, 3, as_json));
    unsigned declared = 0;
    for (int i = 0; i < L; i++) {
        const vm_router *r = m->routers[R->layers[i]];
        if (r && r->ops) declared |= r->ops->unc;
    }
    float *col = vm_malloc(sizeof(float) * ((size_t)T * (size_t)L + 1));
    for (int u = 0; col && u < VM_UNC_COUNT; u++) {
        if (!(declared & VM_UNC_BIT(u))) continue;
        for (size_t k = 0; k < (size_t)T * (size_t)L; k++) col[k] = R->unc[(row + k) * VM_UNC_COUNT + (size_t)u];
        json_object_set_new(o, vm_gen_unc_name(u), array_json(col, 1, sh2, 2, as_json));
    }
    free(col);
    return o;
}

// ---------------------------------------------------------------- generation jobs

typedef struct gen_run {
    srv *s;
    srv_slot *sl;
    srv_job *j;
    vm_gen *g;
    srv_text text;
    int role_sent, rows_sent;
    size_t offset;               // completions' text_offset of the next token
    // whole answers (not streamed): gathered per token
    json_t *lp;                  // chat: logprobs.content; completions: the legacy logprobs object
    json_t *tokens;              // vmoer.tokens
} gen_run;

static int cancelled(srv *s, srv_job *j) {
    pthread_mutex_lock(&s->mu);
    const int c = j->cancelled;
    pthread_mutex_unlock(&s->mu);
    return c;
}

static json_t *bytes_json(const char *p, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_integer((unsigned char)p[i]));
    return a;
}

// Chat logprobs entry of a token: {"token", "logprob", "bytes", "top_logprobs": [...]}.
static json_t *chat_lp_entry(const vm_tokenizer *tok, int32_t id, float lp, const vm_gen_tok *t, int top) {
    char buf[256];
    int n = vm_token_to_piece(tok, id, buf, sizeof buf);
    if (n < 0 || n > (int)sizeof buf) n = 0;
    json_t *o = json_object();
    json_object_set_new(o, "token", vm_json_piece(tok, id));
    json_object_set_new(o, "logprob", vm_json_f32(lp));
    json_object_set_new(o, "bytes", bytes_json(buf, n));
    if (top) {
        json_t *a = json_array();
        for (int k = 0; k < t->n_top; k++) json_array_append_new(a, chat_lp_entry(tok, t->top_id[k], t->top_lp[k], t, 0));
        json_object_set_new(o, "top_logprobs", a);
    }
    return o;
}

static json_t *legacy_lp_new(void) {
    json_t *o = json_object();
    json_object_set_new(o, "tokens", json_array());
    json_object_set_new(o, "token_logprobs", json_array());
    json_object_set_new(o, "top_logprobs", json_array());
    json_object_set_new(o, "text_offset", json_array());
    return o;
}

// Appends one token to a completions (legacy) logprobs object.
static void legacy_lp_add(json_t *o, const vm_tokenizer *tok, const vm_gen_tok *t, size_t offset, int top) {
    json_array_append_new(json_object_get(o, "tokens"), vm_json_piece(tok, t->id));
    json_array_append_new(json_object_get(o, "token_logprobs"), vm_json_f32(t->logprob));
    json_t *tops = json_object();
    for (int k = 0; k < t->n_top && top > 0; k++) {
        json_t *p = vm_json_piece(tok, t->top_id[k]);
        const char *key = json_string_value(p);
        if (key && !json_object_get(tops, key)) json_object_set_new(tops, key, vm_json_f32(t->top_lp[k]));
        json_decref(p);
    }
    json_array_append_new(json_object_get(o, "top_logprobs"), top > 0 ? tops : json_null());
    if (top <= 0) json_decref(tops);
    json_array_append_new(json_object_get(o, "text_offset"), json_integer((json_int_t)offset));
}

static json_t *usage_json(int n_prompt, int n_gen) {
    json_t *u = json_object();
    json_object_set_new(u, "prompt_tokens", json_integer(n_prompt));
    json_object_set_new(u, "completion_tokens", json_integer(n_gen));
    json_object_set_new(u, "total_tokens", json_integer(n_prompt + n_gen));
    return u;
}

// The envelope of an answer or a chunk: {"id", "object", "created", "model", "choices": [choice]}.
static json_t *envelope(const gen_run *r, json_t *choice) {
    const srv_job *j = r->j;
    const int chat = j->kind == SRV_CHAT;
    json_t *o = json_object(), *cs = json_array();
    json_object_set_new(o, "id", json_string(j->id));
    json_object_set_new(o, "object", json_string(chat ? (j->stream ? "chat.completion.chunk" : "chat.completion") : "text_completion"));
    json_object_set_new(o, "created", json_integer(j->created));
    json_object_set_new(o, "model", json_string(r->s->model_id));
    if (choice) json_array_append_new(cs, choice);
    json_object_set_new(o, "choices", cs);
    return o;
}

// A choice holding the text segment: chat {"index", "delta"|"message", "logprobs", "finish_reason"},
// completions {"text", "index", "logprobs", "finish_reason"}.
static json_t *choice_json(gen_run *r, const char *seg, size_t seg_len, json_t *lp, const char *finish) {
    json_t *c = json_object();
    if (r->j->kind == SRV_CHAT) {
        json_object_set_new(c, "index", json_integer(0));
        json_t *d = json_object();
        if (!r->role_sent || !r->j->stream) { json_object_set_new(d, "role", json_string("assistant")); r->role_sent = 1; }
        if (seg_len || !r->j->stream || json_object_size(d)) json_object_set_new(d, "content", json_stringn(seg, seg_len));
        json_object_set_new(c, r->j->stream ? "delta" : "message", d);
        json_t *l = NULL;
        if (lp) { l = json_object(); json_object_set_new(l, "content", lp); }
        json_object_set_new(c, "logprobs", l ? l : json_null());
    } else {
        json_object_set_new(c, "text", json_stringn(seg, seg_len));
        json_object_set_new(c, "index", json_integer(0));
        json_object_set_new(c, "logprobs", lp ? lp : json_null());
    }
    json_object_set_new(c, "finish_reason", finish ? json_string(finish) : json_null());
    return c;
}

static int emit_json(gen_run *r, json_t *o) {
    char *s = dump_free(o);
    if (!s) return vm_err("serve: JSON encoding failed");
    const size_t n = strlen(s);
    char *ev = vm_malloc(n + 9);
    if (!ev) { free(s); return -1; }
    memcpy(ev, "data: ", 6);
    memcpy(ev + 6, s, n);
    memcpy(ev + 6 + n, "\n\n", 3);
    free(s);
    const int rc = srv_job_emit(r->s, r->j, ev, n + 8);
    free(ev);
    return rc;
}

// New routing rows (stream) into the vmoer object v.
static void add_routing_rows(gen_run *r, json_t *v, int all) {
    if (!r->j->routing) return;
    vm_gen_routing R;
    vm_gen_routing_view(r->g, &R);
    const int from = all ? 0 : r->rows_sent;
    if (R.n_pos > from || all) json_object_set_new(v, "routing", routing_json(r->sl->m, &R, from, R.n_pos, r->j->r_json));
    r->rows_sent = R.n_pos;
}

static int on_token(void *ud, const vm_gen_tok *t) {
    gen_run *r = ud;
    srv_job *j = r->j;
    if (cancelled(r->s, j)) return 1;
    char buf[256];
    int n = vm_token_to_piece(r->s->tok, t->id, buf, sizeof buf);
    const char *seg;
    size_t seg_len;
    if (n < 0 || n > (int)sizeof buf) n = 0;   // pieces are short; a longer one would be a broken vocabulary
    if (srv_text_add(&r->text, buf, (size_t)n, j->stop, j->n_stop, &seg, &seg_len)) return -1;
    json_t *rec = vm_gen_tok_json(r->g, r->s->tok, t, 1), *lp = NULL;
    const int want_lp = j->kind == SRV_CHAT ? j->logprobs : j->logprobs >= 0;
    if (want_lp) {
        if (j->kind == SRV_CHAT) lp = chat_lp_entry(r->s->tok, t->id, t->logprob, t, 1);
        else { lp = j->stream ? legacy_lp_new() : json_incref(r->lp); legacy_lp_add(lp, r->s->tok, t, r->offset, j->logprobs); }
    }
    r->offset += (size_t)n;
    if (j->stream) {
        json_t *lps = NULL;
        if (lp && j->kind == SRV_CHAT) { lps = json_array(); json_array_append_new(lps, lp); }
        json_t *c = choice_json(r, seg, seg_len, j->kind == SRV_CHAT ? lps : lp, NULL), *v = json_object(), *ts = json_array();
        json_array_append_new(ts, rec);
        json_object_set_new(v, "tokens", ts);
        add_routing_rows(r, v, 0);
        json_object_set_new(c, "vmoer", v);
        if (emit_json(r, envelope(r, c))) return -1;
    } else {
        json_array_append_new(r->tokens, rec);
        if (lp && j->kind == SRV_CHAT) json_array_append_new(r->lp, lp);
        else if (lp) json_decref(lp);
    }
    if (r->s->o.token_delay_ms > 0) {
        struct timespec ts = { r->s->o.token_delay_ms / 1000, (long)(r->s->o.token_delay_ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
    }
    return r->text.stopped ? 1 : 0;
}

// The answer's vmoer object: read-out layers and scores, summary, abstention, (routing).
static json_t *vmoer_final(gen_run *r, const vm_gen_result *res) {
    json_t *v = json_deep_copy(r->s->info);
    if (!r->j->stream) json_object_set(v, "tokens", r->tokens);
    json_object_set_new(v, "summary", vm_gen_summary_json(r->g, &res->summary));
    if (res->finish == VM_GEN_UNCERTAIN) {
        json_t *a = json_object();
        json_object_set_new(a, "score", json_string(vm_gen_score_name(r->j->gp.abstain_score)));
        json_object_set_new(a, "threshold", json_real(r->j->gp.abstain_threshold));
        json_object_set_new(a, "token", vm_gen_tok_json(r->g, r->s->tok, &res->withheld, 1));
        json_object_set_new(v, "abstained", a);
    }
    add_routing_rows(r, v, !r->j->stream);
    return v;
}

static void run_generation(srv *s, srv_slot *sl, srv_job *j) {
    gen_run r = { .s = s, .sl = sl, .j = j, .g = sl->g };
    r.tokens = json_array();
    r.lp = j->kind == SRV_CHAT ? json_array() : legacy_lp_new();
    vm_gen_result res;
    int rc = vm_gen_capture(sl->g, j->r_layers, j->routing ? j->n_rl : 0, j->n_prompt + j->gp.max_tokens + 1);
    if (!rc) rc = vm_gen_run(sl->g, j->prompt, j->n_prompt, &j->gp, on_token, &r, &res);
    j->n_gen = rc ? 0 : res.n_gen;
    const char *seg = "";
    size_t seg_len = 0;
    if (!rc) rc = srv_text_finish(&r.text, &seg, &seg_len);
    const int gone = cancelled(s, j);
    j->finish = rc ? "error" : gone ? "cancelled" : vm_gen_finish_name(res.finish);
    if (gone) goto out;
    if (rc) {
        json_t *ej = internal_error_json();
        if (j->stream) emit_json(&r, ej);
        else { char *b = dump_free(ej); j->status = 500; if (b) srv_job_emit(s, j, b, strlen(b)); free(b); }
        if (j->stream) srv_job_emit(s, j, "data: [DONE]\n\n", 14);
        goto out;
    }
    const int want_lp = j->kind == SRV_CHAT ? j->logprobs : j->logprobs >= 0;
    if (j->stream) {
        json_t *c = choice_json(&r, seg, seg_len, NULL, j->finish);
        json_object_set_new(c, "vmoer", vmoer_final(&r, &res));
        emit_json(&r, envelope(&r, c));
        if (j->include_usage) {
            json_t *u = envelope(&r, NULL);
            json_object_set_new(u, "usage", usage_json(j->n_prompt, res.n_gen));
            emit_json(&r, u);
        }
        srv_job_emit(s, j, "data: [DONE]\n\n", 14);
    } else {
        const char *text = r.text.out ? r.text.out : "";
        json_t *c = choice_json(&r, text, r.text.out_len, want_lp ? json_incref(r.lp) : NULL, j->finish);
        json_object_set_new(c, "vmoer", vmoer_final(&r, &res));
        json_t *o = envelope(&r, c);
        json_object_set_new(o, "usage", usage_json(j->n_prompt, res.n_gen));
        char *b = dump_free(o);
        j->status = b ? 200 : 500;
        if (b) srv_job_emit(s, j, b, strlen(b));
        free(b);
    }
out:
    json_decref(r.tokens);
    json_decref(r.lp);
    srv_text_free(&r.text);
}

// ---------------------------------------------------------------- multiple choice

static double entropy(const double *p, int n) {
    double h = 0.0;
    for (int i = 0; i < n; i++) if (p[i] > 0.0) h -= p[i] * log(p[i]);
    return h;
}

// As `vmoer eval` scores an item: each pass scores every sequence (vm_task_score) with its own
// stream for the sampled routers; probabilities are averaged over passes; the routers' read-outs
// are those at the last context token, averaged over the read-out layers, sequences and passes.
static void run_choices(srv *s, srv_slot *sl, srv_job *j) {
    const vm_task_input *in = &j->task;
    const int C = in->n_choices, P = j->passes;
    double pbar[VM_MCQ_MAX_CHOICES] = {0}, sbar[VM_MCQ_MAX_CHOICES] = {0}, hsum = 0, unc[VM_UNC_COUNT] = {0};
    int ucnt[VM_UNC_COUNT] = {0}, rc = 0;
    for (int q = 0; q < P && !rc; q++) {
        vm_rng g;
        vm_rng_seed2(&g, j->gp.seed, (uint64_t)q);
        vm_ctx_set_seed(vm_gen_ctx(sl->g), vm_rng_u64(&g));
        vm_gen_target(sl->g, in->seq[0].n_ctx - 1, in->mode == VM_TASK_PMI ? in->n_choices : in->n_seq);
        vm_task_result tr;
        if ((rc = vm_task_score(sl->m, vm_gen_ctx(sl->g), in, &tr))) break;
        double m[VM_UNC_COUNT];
        vm_gen_target_mean(sl->g, m);
        for (int u = 0; u < VM_UNC_COUNT; u++) if (isfinite(m[u])) { unc[u] += m[u]; ucnt[u]++; }
        for (int k = 0; k < C; k++) { pbar[k] += tr.probs[k] / P; sbar[k] += tr.ll[k] / P; }
        hsum += entropy(tr.probs, C);
    }
    vm_gen_target(sl->g, -1, 0);
    json_t *o;
    if (rc) {
        o = internal_error_json();
        j->status = 500;
        j->finish = "error";
    } else {
        int pred = 0;
        for (int k = 1; k < C; k++) if (pbar[k] > pbar[pred]) pred = k;
        o = json_object();
        json_t *cs = json_array(), *v = json_deep_copy(s->info);
        for (int k = 0; k < C; k++) {
            json_t *c = json_object();
            json_object_set_new(c, "index", json_integer(k));
            json_object_set_new(c, "text", json_string(j->choice_text[k]));
            json_object_set_new(c, "prob", json_real(pbar[k]));
            json_object_set_new(c, "score", json_real(sbar[k]));
            json_array_append_new(cs, c);
        }
        const double H = entropy(pbar, C);
        json_object_set_new(v, "passes", json_integer(P));
        json_object_set_new(v, "entropy", json_real(H));
        json_object_set_new(v, "neg_maxprob", json_real(-pbar[pred]));
        json_object_set_new(v, "mi", P > 1 ? json_real(fmax(0.0, H - hsum / P)) : json_null());
        for (int u = 0; u < VM_UNC_COUNT; u++)
            if (ucnt[u]) json_object_set_new(v, vm_gen_unc_name(u), json_real(unc[u] / ucnt[u]));
        json_object_set_new(o, "id", json_string(j->id));
        json_object_set_new(o, "object", json_string("vmoer.choices"));
        json_object_set_new(o, "created", json_integer(j->created));
        json_object_set_new(o, "model", json_string(s->model_id));
        json_object_set_new(o, "score", json_string(vm_task_mode_name(in->mode)));
        json_object_set_new(o, "choices", cs);
        json_object_set_new(o, "prediction", json_integer(pred));
        json_object_set_new(o, "vmoer", v);
        j->status = 200;
        j->finish = "scored";
    }
    char *b = dump_free(o);
    if (b) srv_job_emit(s, j, b, strlen(b));
    else j->status = 500;
    free(b);
}

void srv_run_job(srv *s, srv_slot *sl, srv_job *j) {
    if (j->kind == SRV_CHOICES) run_choices(s, sl, j);
    else run_generation(s, sl, j);
}

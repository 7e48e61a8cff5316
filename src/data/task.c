// MCQA items -> token sequences and answer distributions (see task.h for the two modes).
#include "data/task.h"
#include "util/err.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const mode_names[] = { "letter", "loglik", "loglik-raw", "pmi" };

const char *vm_task_mode_name(vm_task_mode m) {
    return (int)m >= 0 && (int)m < (int)(sizeof mode_names / sizeof *mode_names) ? mode_names[m] : "letter";
}

int vm_task_mode_parse(const char *s, vm_task_mode *out) {
    for (int m = 0; s && m < (int)(sizeof mode_names / sizeof *mode_names); m++)
        if (!strcmp(s, mode_names[m])) { *out = (vm_task_mode)m; return 0; }
    return vm_err("task: unknown scoring mode '%s' (letter, loglik, loglik-raw, pmi)", s ? s : "(null)");
}

int vm_task_is_loglik(vm_task_mode m) { return m == VM_TASK_LOGLIK || m == VM_TASK_LOGLIK_RAW || m == VM_TASK_PMI; }

void vm_task_init(vm_task *t, const vm_tokenizer *tok, vm_task_mode mode, int tmpl, int max_tokens) {
    memset(t, 0, sizeof *t);
    t->tok = tok; t->mode = mode; t->tmpl = tmpl; t->max_tokens = max_tokens;
    int32_t b = vm_tokenizer_bos(tok), e = vm_tokenizer_eos(tok);
    t->chat.bos = b >= 0 ? vm_tokenizer_text(tok, b) : NULL;
    t->chat.eos = e >= 0 ? vm_tokenizer_text(tok, e) : NULL;
}

// ---- text building ----

typedef struct sbuf { char *s; size_t n, cap; int bad; } sbuf;

static void sb_add(sbuf *b, const char *s, size_t n) {
    if (b->bad) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2;
        char *p = realloc(b->s, cap);
        if (!p) { b->bad = 1; return; }
        b->s = p; b->cap = cap;
    }
    memcpy(b->s + b->n, s, n); b->n += n; b->s[b->n] = 0;
}
static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

// Renders the messages with the template; "none" joins system and user with a blank line.
static char *render(const vm_task *t, const char *system, const char *user) {
    if (t->tmpl == VM_CHAT_NONE) {
        sbuf b = {0};
        if (system) { sb_str(&b, system); sb_str(&b, "\n\n"); }
        sb_str(&b, user);
        if (b.bad || !b.s) { free(b.s); vm_err("task: out of memory"); return NULL; }
        return b.s;
    }
    vm_chat_msg msgs[2]; int n = 0;
    if (system) msgs[n++] = (vm_chat_msg){ "system", system };
    msgs[n++] = (vm_chat_msg){ "user", user };
    char *out = NULL;
    if (vm_chat_render_ex(t->tmpl, msgs, n, 1, &t->chat, &out) < 0) return NULL;
    return out;
}

// Tokenises into a malloc'd array; returns the count or -1. special: role markers become tokens.
static int tokenize_ex(const vm_task *t, const char *text, size_t len, int special, int32_t **out) {
    int cap = (int)(len < 1000000 ? len : 1000000) + 8;
    int32_t *ids = vm_malloc((size_t)cap * sizeof *ids);
    if (!ids) return -1;
    int n = vm_tokenize(t->tok, text, len, 1, special, ids, cap);
    if (n > cap) {
        free(ids); cap = n;
        if (!(ids = vm_malloc((size_t)cap * sizeof *ids))) return -1;
        n = vm_tokenize(t->tok, text, len, 1, special, ids, cap);
    }
    if (n < 0) { free(ids); return -1; }
    *out = ids;
    return n;
}

static int tokenize(const vm_task *t, const char *text, size_t len, int32_t **out) {
    return tokenize_ex(t, text, len, t->tmpl != VM_CHAT_NONE, out);
}

void vm_task_input_free(vm_task_input *in) {
    if (!in) return;
    for (int s = 0; s < in->n_seq; s++) free(in->seq[s].tokens);
    free(in->text);
    free(in->tree.mem);
    memset(in, 0, sizeof *in);
}

static int too_long(const vm_task *t, const vm_mcq_item *it, int n) {
    if (t->max_tokens > 0 && n > t->max_tokens)
        return vm_err("task: item %s: %d tokens, longer than the limit %d", it->id, n, t->max_tokens);
    return 0;
}

// Letter ids with one separator between the prompt and the letter (see task.h); 0, or -1 with the
// reason (letters colliding) and in/s unchanged.
static int letter_ids(const vm_task *t, const vm_mcq_item *it, const char *p, size_t plen, const char *sep,
                      vm_task_input *in, vm_task_seq *s) {
    char *probe = vm_malloc(plen + 3);
    int32_t *ids[VM_MCQ_MAX_CHOICES] = {0};
    int nid[VM_MCQ_MAX_CHOICES], rc = 0, base = s->n;
    if (!probe) return -1;
    for (int c = 0; c < in->n_choices && !rc; c++) {
        snprintf(probe, plen + 3, "%s%s%c", p, sep, 'A' + c);
        if ((nid[c] = tokenize(t, probe, strlen(probe), &ids[c])) < 0) { rc = vm_err_prefix("task: item %s", it->id); break; }
        int i = 0;
        while (i < nid[c] && i < s->n && ids[c][i] == s->tokens[i]) i++;
        if (i < base) base = i;
    }
    int cp = 0;
    if (!rc) {
        for (;; cp++) {   // tokens shared by every letter's continuation
            int same = base + cp < nid[0];
            for (int c = 1; c < in->n_choices && same; c++) same = base + cp < nid[c] && ids[c][base + cp] == ids[0][base + cp];
            if (!same) break;
        }
        for (int c = 0; c < in->n_choices && !rc; c++) {
            if (base + cp >= nid[c]) { rc = vm_err("task: item %s: letter %c adds no token of its own", it->id, 'A' + c); break; }
            in->letter_ids[c] = ids[c][base + cp];
            for (int d = 0; d < c; d++)
                if (in->letter_ids[d] == in->letter_ids[c])
                    rc = vm_err("task: item %s: letters %c and %c share token %d", it->id, 'A' + d, 'A' + c, in->letter_ids[c]);
        }
    }
    if (!rc && (base != s->n || cp > 0)) {   // the scored sequence: what every letter shares
        int32_t *seq = vm_malloc((size_t)(base + cp) * sizeof *seq);
        if (!seq) rc = -1;
        else {
            memcpy(seq, ids[0], (size_t)(base + cp) * sizeof *seq);
            free(s->tokens); s->tokens = seq; s->n = s->n_ctx = base + cp;
            if (s->n == 0) rc = vm_err("task: item %s: empty prompt", it->id);
            else rc = too_long(t, it, s->n);
        }
    }
    for (int c = 0; c < in->n_choices; c++) free(ids[c]);
    free(probe);
    return rc;
}

static int build_letter(const vm_task *t, const vm_mcq_item *it, vm_task_input *in) {
    sbuf u = {0};
    sb_str(&u, "Question: "); sb_str(&u, it->question); sb_str(&u, "\nChoices:\n");
    for (int c = 0; c < it->n_choices; c++) {
        char head[4] = { (char)('A' + c), '.', ' ', 0 };
        sb_str(&u, head); sb_str(&u, it->choices[c]); sb_str(&u, "\n");
    }
    sb_str(&u, "Answer:");
    if (u.bad) { free(u.s); return vm_err("task: out of memory"); }
    char *p = render(t, t->system ? t->system : VM_TASK_SYSTEM, u.s);
    free(u.s);
    if (!p) return vm_err_prefix("task: item %s", it->id);
    in->text = p;
    size_t plen = strlen(p);
    vm_task_seq *s = &in->seq[0];
    in->n_seq = 1;
    if ((s->n = tokenize(t, p, plen, &s->tokens)) < 0) return vm_err_prefix("task: item %s", it->id);
    s->n_ctx = s->n;
    if (s->n == 0) return vm_err("task: item %s: empty prompt", it->id);
    if (too_long(t, it, s->n)) return -1;
    // letter ids: tokenise prompt + sep + letter for every letter; past the part all of them share
    // with the prompt (base) and with each other (cp, e.g. SPM's lone "▁"), the next token is the
    // letter's; the shared tokens are appended to the scored sequence. The natural separator first,
    // then the other one when letters collide (tok512 merges " B" but splits " A" into "▁" "A").
    const int ws = plen && isspace((unsigned char)p[plen - 1]);
    if (letter_ids(t, it, p, plen, ws ? "" : " ", in, s) == 0) return 0;
    if (letter_ids(t, it, p, plen, ws ? " " : "", in, s) == 0) { vm_err_clear(); return 0; }
    return -1;
}

// Loglik family. loglik: harness context "Question: {q}\nAnswer:" (templated when a template is set);
// loglik-raw and pmi: the question itself as plain text (no wrapper, no template, parse_special 0).
// pmi adds one unconditional sequence per choice: [BOS] + that choice's continuation tokens.
static int build_loglik(const vm_task *t, const vm_mcq_item *it, vm_task_input *in) {
    const int raw = t->mode != VM_TASK_LOGLIK;
    char *ctx = NULL;
    if (raw) {
        ctx = vm_strdup(it->question);
    } else {
        sbuf u = {0};
        sb_str(&u, "Question: "); sb_str(&u, it->question); sb_str(&u, "\nAnswer:");
        if (u.bad) { free(u.s); return vm_err("task: out of memory"); }
        ctx = render(t, NULL, u.s);
        free(u.s);
    }
    if (!ctx) return vm_err_prefix("task: item %s", it->id);
    in->text = ctx;
    const int special = raw ? 0 : t->tmpl != VM_CHAT_NONE;
    int32_t *cids = NULL;
    int nc = tokenize_ex(t, ctx, strlen(ctx), special, &cids);
    if (nc < 0) return vm_err_prefix("task: item %s", it->id);
    if (nc == 0) { free(cids); return vm_err("task: item %s: empty context (and no BOS)", it->id); }
    const int32_t bos = vm_tokenizer_bos(t->tok);
    if (t->mode == VM_TASK_PMI && (bos < 0 || cids[0] != bos)) {
        free(cids);
        return vm_err("task: item %s: pmi scoring needs a vocabulary that adds a BOS token", it->id);
    }
    for (int c = 0; c < in->n_choices; c++) {
        sbuf w = {0};
        sb_str(&w, ctx); sb_str(&w, " "); sb_str(&w, it->choices[c]);
        if (w.bad) { free(w.s); free(cids); return vm_err("task: out of memory"); }
        vm_task_seq *s = &in->seq[c];
        in->n_seq = c + 1;
        s->n = tokenize_ex(t, w.s, w.n, special, &s->tokens);
        free(w.s);
        if (s->n < 0) { s->n = 0; free(cids); return vm_err_prefix("task: item %s", it->id); }
        s->n_ctx = nc < s->n ? nc : s->n;
        s->cont_bytes = 1 + strlen(it->choices[c]);
        if (s->n_ctx >= s->n) { free(cids); return vm_err("task: item %s: choice %c adds no token", it->id, 'A' + c); }
        // the harness's sequence: ctx_enc + whole[len(ctx_enc):] (whole's own first tokens differ
        // where the tokenizer merges across the boundary); every choice then shares ctx_enc exactly
        memcpy(s->tokens, cids, (size_t)nc * sizeof(int32_t));
        if (too_long(t, it, s->n)) { free(cids); return -1; }
    }
    free(cids);
    if (t->mode != VM_TASK_PMI) return 0;
    const int n = in->n_choices;
    for (int c = 0; c < n; c++) {   // unconditional: the same continuation tokens after BOS alone
        const vm_task_seq *q = &in->seq[c];
        vm_task_seq *u = &in->seq[n + c];
        const int k = q->n - q->n_ctx;
        if (!(u->tokens = vm_malloc((size_t)(k + 1) * sizeof(int32_t)))) return -1;
        in->n_seq = n + c + 1;
        u->tokens[0] = bos;
        memcpy(u->tokens + 1, q->tokens + q->n_ctx, (size_t)k * sizeof(int32_t));
        u->n = k + 1; u->n_ctx = 1; u->cont_bytes = q->cont_bytes;
    }
    return 0;
}

int vm_task_build(const vm_task *t, const vm_mcq_item *it, vm_task_input *in) {
    memset(in, 0, sizeof *in);
    in->mode = t->mode;
    in->n_choices = it->n_choices;
    in->answer = it->answer;
    for (int c = 0; c < VM_MCQ_MAX_CHOICES; c++) in->letter_ids[c] = -1;
    if (it->n_choices < VM_MCQ_MIN_CHOICES || it->n_choices > VM_MCQ_MAX_CHOICES || it->answer < 0 ||
        it->answer >= it->n_choices)
        return vm_err("task: item %s: bad choice count or answer", it->id);
    int rc = vm_task_is_loglik(t->mode) ? build_loglik(t, it, in) : build_letter(t, it, in);
    if (rc == 0 && vm_task_tree_build(in)) rc = vm_err_prefix("task: item %s", it->id);
    if (rc < 0) vm_task_input_free(in);
    return rc;
}

// ---- the tree ----

// Root segment of t (among segments [0, n_seg)) whose rows are exactly tokens[0, p), or -1.
static int find_root(const vm_task_tree *t, const int32_t *tokens, int p) {
    for (int g = 0; g < t->view.n_seg; g++) {
        const int r0 = t->view.seg_off[g], n = t->view.seg_off[g + 1] - r0;
        if (t->view.parent[g] < 0 && n == p && !memcmp(t->tok + r0, tokens, (size_t)p * sizeof(int32_t))) return g;
    }
    return -1;
}

// Appends segment rows tokens[a, b) at positions a.. with the given parent; returns its index.
static int add_segment(vm_task_tree *t, const int32_t *tokens, int a, int b, int parent) {
    int32_t *seg_off = (int32_t *)t->view.seg_off, *par = (int32_t *)t->view.parent, *pos = (int32_t *)t->view.pos;
    const int g = t->view.n_seg++, r0 = t->view.n_rows;
    for (int i = a; i < b; i++) {
        t->tok[r0 + i - a] = tokens[i];
        pos[r0 + i - a] = i;
        t->seg[r0 + i - a] = g;
    }
    par[g] = parent;
    t->view.n_rows += b - a;
    seg_off[g + 1] = t->view.n_rows;
    return g;
}

int vm_task_tree_build(vm_task_input *in) {
    vm_task_tree *t = &in->tree;
    free(t->mem);
    memset(t, 0, sizeof *t);
    if (in->n_seq < 1 || in->n_seq > VM_TASK_MAX_SEQ) return vm_err("task tree: %d sequences", in->n_seq);
    size_t R = 0;
    for (int s = 0; s < in->n_seq; s++) R += (size_t)in->seq[s].n;
    const size_t S = 2 * (size_t)in->n_seq;
    // tok, pos, seg (R each), out_row, out_tgt (at most R each), seg_off (S+1), parent (S)
    int32_t *mem = vm_malloc((5 * R + 2 * S + 1) * sizeof(int32_t));
    if (!mem) return -1;
    t->mem = mem;
    t->tok = mem; t->view.pos = mem + R; t->seg = mem + 2 * R;
    t->out_row = mem + 3 * R; t->out_tgt = mem + 4 * R;
    t->view.seg_off = mem + 5 * R; t->view.parent = mem + 5 * R + S + 1;
    ((int32_t *)t->view.seg_off)[0] = 0;
    for (int s = 0; s < in->n_seq; s++) {
        const vm_task_seq *q = &in->seq[s];
        // the prefix shared with other sequences: the context (loglik); the whole prompt (letter)
        const int p = in->mode == VM_TASK_LETTER ? q->n : q->n_ctx;
        if (p < 1 || p > q->n) return vm_err("task tree: sequence %d has prefix %d of %d tokens", s, p, q->n);
        int root = find_root(t, q->tokens, p);
        if (root < 0) root = add_segment(t, q->tokens, 0, p, -1);
        const int r_root = t->view.seg_off[root];
        const int r_child = q->n > p ? t->view.n_rows : -1;
        if (q->n > p) add_segment(t, q->tokens, p, q->n, root);
        t->out0[s] = t->n_out;
        // positions scored (room: the earlier sequences' n and this one's cover it), then their rows
        int32_t *out = t->out_row + t->n_out;
        const int k = vm_task_positions(in, s, out, t->out_tgt + t->n_out);
        if (k < 1) return vm_err("task tree: sequence %d has no scored position", s);
        for (int i = 0; i < k; i++) out[i] = out[i] < p ? r_root + out[i] : r_child + out[i] - p;
        t->n_out += k;
        if (s == 0) t->ctx_row = r_root + p - 1;
    }
    t->out0[in->n_seq] = t->n_out;
    return vm_tree_check(&t->view, t->view.n_rows);
}

int vm_task_positions(const vm_task_input *in, int s, int32_t *pos, int32_t *tgt) {
    const vm_task_seq *q = &in->seq[s];
    if (in->mode == VM_TASK_LETTER) {
        pos[0] = q->n - 1; tgt[0] = in->letter_ids[in->answer];
        return 1;
    }
    int k = 0;
    for (int i = q->n_ctx; i < q->n; i++, k++) { pos[k] = i - 1; tgt[k] = q->tokens[i]; }
    return k;
}

// ---- scores ----

double vm_task_letter_probs(const vm_task_input *in, const float *row, double *probs,
                            float *dlogits, float scale) {
    const int n = in->n_choices;
    double mx = -INFINITY, z = 0, p[VM_MCQ_MAX_CHOICES];
    for (int c = 0; c < n; c++) if (row[in->letter_ids[c]] > mx) mx = row[in->letter_ids[c]];
    for (int c = 0; c < n; c++) { p[c] = exp(row[in->letter_ids[c]] - mx); z += p[c]; }
    for (int c = 0; c < n; c++) { p[c] /= z; if (probs) probs[c] = p[c]; }
    // d(-log p_y)/dl_c = p_c - 1[c = y]
    if (dlogits)
        for (int c = 0; c < n; c++) dlogits[in->letter_ids[c]] += scale * (float)(p[c] - (c == in->answer));
    return row[in->letter_ids[in->answer]] - mx - log(z);
}

// log sum_v exp(r_v), shifted by the row's maximum
static double row_lz(const float *r, int V) {
    double mx = -INFINITY, z = 0;
    for (int v = 0; v < V; v++) if (r[v] > mx) mx = r[v];
    for (int v = 0; v < V; v++) z += exp(r[v] - mx);
    return mx + log(z);
}

// d log p_t / d r_v = 1[v = t] - softmax_v, times scale, added to d
static void row_dlogits(const float *r, int V, double lz, int t, float *d, float scale) {
    for (int v = 0; v < V; v++) d[v] -= scale * (float)exp(r[v] - lz);
    d[t] += scale;
}

// Sequence s's loglik; lz (its scored rows) non-NULL receives each row's log-partition.
static double seq_loglik(const vm_task_input *in, int s, const float *logits, int V, double *lz_out,
                         float *dlogits, float scale) {
    const vm_task_seq *q = &in->seq[s];
    double ll = 0;
    for (int i = q->n_ctx, k = 0; i < q->n; i++, k++) {
        const float *r = logits + (size_t)k * V;
        const double lz = row_lz(r, V);
        if (lz_out) lz_out[k] = lz;
        ll += r[q->tokens[i]] - lz;
        if (dlogits) row_dlogits(r, V, lz, q->tokens[i], dlogits + (size_t)k * V, scale);
    }
    return ll;
}

double vm_task_seq_loglik(const vm_task_input *in, int s, const float *logits, int V,
                          float *dlogits, float scale) {
    return seq_loglik(in, s, logits, V, NULL, dlogits, scale);
}

void vm_task_tree_loglik(const vm_task_input *in, const float *logits, int V, double *ll) {
    vm_task_tree_loglik_lz(in, logits, V, ll, NULL);
}

void vm_task_tree_loglik_lz(const vm_task_input *in, const float *logits, int V, double *ll, double *lz) {
    for (int s = 0; s < in->n_seq; s++)
        ll[s] = seq_loglik(in, s, logits + (size_t)in->tree.out0[s] * V, V, lz ? lz + in->tree.out0[s] : NULL, NULL, 0);
}

void vm_task_seq_dlogits(const vm_task_input *in, int s, const float *logits, int V, const double *lz,
                         float *dlogits, float scale) {
    const vm_task_seq *q = &in->seq[s];
    for (int i = q->n_ctx, k = 0; i < q->n; i++, k++)
        row_dlogits(logits + (size_t)k * V, V, lz[k], q->tokens[i], dlogits + (size_t)k * V, scale);
}

double vm_task_choice_softmax(const double *ll, int n, int answer, double *probs) {
    double mx = -INFINITY, z = 0;
    for (int c = 0; c < n; c++) if (ll[c] > mx) mx = ll[c];
    for (int c = 0; c < n; c++) z += exp(ll[c] - mx);
    for (int c = 0; c < n; c++) probs[c] = exp(ll[c] - mx) / z;
    return -(ll[answer] - mx - log(z));
}

void vm_task_choice_scores(const vm_task_input *in, const double *ll_seq, double *score) {
    const int n = in->n_choices, pmi = in->mode == VM_TASK_PMI;
    for (int c = 0; c < n; c++) score[c] = pmi ? ll_seq[c] - ll_seq[n + c] : ll_seq[c];
}

double vm_task_seq_coef(const vm_task_input *in, int s, const double *probs) {
    const int n = in->n_choices, c = s < n ? s : s - n;
    // d(-log p_y)/d score_c = p_c - 1[c = y]; pmi's unconditional term enters the score negated
    const double g = probs[c] - (c == in->answer);
    return s < n ? g : -g;
}

static int argmax_d(const double *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++) if (x[i] > x[b]) b = i;
    return b;
}

static void result_init(const vm_task_input *in, vm_task_result *r) {
    memset(r, 0, sizeof *r);
    r->n_choices = in->n_choices; r->answer = in->answer;
}

static void result_nll(const vm_task_input *in, vm_task_result *r) {
    const double py = r->probs[in->answer];
    r->nll = -log(py > 1e-12 ? py : 1e-12);
}

void vm_task_result_letter(const vm_task_input *in, const float *row, vm_task_result *r) {
    const int n = in->n_choices;
    result_init(in, r);
    vm_task_letter_probs(in, row, r->probs, NULL, 0);
    for (int k = 0; k < n; k++) r->ll[k] = log(r->probs[k] > 0 ? r->probs[k] : 1e-300);
    r->pred = r->pred_norm = argmax_d(r->probs, n);
    result_nll(in, r);
}

void vm_task_result_loglik(const vm_task_input *in, const double *ll_seq, vm_task_result *r) {
    const int n = in->n_choices;
    double norm[VM_MCQ_MAX_CHOICES];
    result_init(in, r);
    vm_task_choice_scores(in, ll_seq, r->ll);
    for (int k = 0; k < n; k++) norm[k] = r->ll[k] / (double)(in->seq[k].cont_bytes ? in->seq[k].cont_bytes : 1);
    vm_task_choice_softmax(r->ll, n, in->answer, r->probs);
    r->pred = argmax_d(r->ll, n);
    r->pred_norm = argmax_d(norm, n);
    result_nll(in, r);
}

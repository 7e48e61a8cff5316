// MCQA task building and scoring (data/task.h) on real OBQA/ARC items with the stories260K
// tokenizer (converted into a temp dir): prompt text, letter-id discovery, loglik spans, the
// scoring maths against finite differences, and model scoring against logits computed here.
#include "test.h"
#include "convert/convert.h"
#include "data/dataset.h"
#include "data/task.h"
#include "eval/task_score.h"
#include "model/model.h"
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"
#include "util/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[] = "/tmp/vmoer_task_XXXXXX";

static int detok(const vm_tokenizer *tok, const int32_t *ids, int n, char *buf, int size) {
    const int skip = n > 0 && ids[0] == vm_tokenizer_bos(tok);   // the SPM space prefix goes with the first text piece
    return vm_detokenize(tok, ids + skip, n - skip, buf, size, 0);
}

// The tree of an input (task.h): rebuilding each sequence from its segments' rows gives its tokens
// and positions back, its scored rows hold its targets, every shared prefix is stored once.
static void check_tree(const vm_task_input *in, const char *what) {
    const vm_task_tree *t = &in->tree;
    CHECK(vm_tree_check(&t->view, t->view.n_rows) == 0, "%s: tree well formed: %s", what, vm_errmsg());
    int roots = 0, rows_seq = 0;
    for (int g = 0; g < t->view.n_seg; g++) roots += t->view.parent[g] < 0;
    for (int s = 0; s < in->n_seq; s++) rows_seq += in->seq[s].n;
    if (in->mode == VM_TASK_LETTER) {
        CHECK(t->view.n_seg == 1 && t->view.n_rows == in->seq[0].n && t->n_out == 1 && t->out_row[0] == in->seq[0].n - 1 &&
              t->out_tgt[0] == in->letter_ids[in->answer] && t->ctx_row == in->seq[0].n - 1, "%s: letter tree", what);
        return;
    }
    const int n = in->n_choices, pmi = in->mode == VM_TASK_PMI, nc = in->seq[0].n_ctx;
    int cont = 0;
    for (int c = 0; c < n; c++) cont += in->seq[c].n - in->seq[c].n_ctx;
    // the context once, each continuation once per root it hangs from (pmi: twice)
    CHECK(roots == 1 + pmi && t->view.n_seg == roots + (1 + pmi) * n, "%s: %d roots, %d segments", what, roots, t->view.n_seg);
    CHECK(t->view.n_rows == nc + pmi + (1 + pmi) * cont && t->view.n_rows < rows_seq, "%s: %d rows (sequences: %d)", what, t->view.n_rows, rows_seq);
    CHECK(t->ctx_row == nc - 1 && t->view.pos[t->ctx_row] == nc - 1 && t->view.parent[t->seg[t->ctx_row]] < 0, "%s: context row", what);
    int32_t pos[4096], tgt[4096];
    for (int s = 0; s < in->n_seq; s++) {
        const vm_task_seq *q = &in->seq[s];
        const int k = vm_task_positions(in, s, pos, tgt);
        int ok = k == t->out0[s + 1] - t->out0[s];
        // the child segment holding the continuation (the children are in sequence order) and its root
        int child = -1;
        for (int g = 0, j = -1; g < t->view.n_seg && j < s; g++) if (t->view.parent[g] >= 0 && ++j == s) child = g;
        const int root = child >= 0 ? t->view.parent[child] : -1;
        ok = ok && child >= 0 && root >= 0 && t->view.seg_off[root + 1] - t->view.seg_off[root] == q->n_ctx &&
             t->view.seg_off[child + 1] - t->view.seg_off[child] == q->n - q->n_ctx;
        for (int i = 0; ok && i < q->n; i++) {
            const int r = i < q->n_ctx ? t->view.seg_off[root] + i : t->view.seg_off[child] + i - q->n_ctx;
            ok = t->tok[r] == q->tokens[i] && t->view.pos[r] == i;
        }
        for (int i = 0; ok && i < k; i++) {
            const int r = t->out_row[t->out0[s] + i];
            ok = t->out_tgt[t->out0[s] + i] == tgt[i] && t->view.pos[r] == pos[i] &&
                 (t->seg[r] == child || (t->seg[r] == root && r == t->view.seg_off[root + 1] - 1));
        }
        CHECK(ok, "%s: sequence %d rebuilt from the tree", what, s);
    }
}

// A toy SentencePiece vocabulary with the piece "a▁" (best score): it merges across the space
// between context and continuation, so tok(ctx + " " + choice) does not start with tok(ctx).
static void check_boundary_merge(void) {
#define U2581 "\xe2\x96\x81"
    // no byte tokens: the texts below use only a, b and spaces
    const char *texts[] = { "<unk>", "<s>", "</s>", U2581, "a", "b", ("a" U2581) };
    const float scores[] = { 0, 0, 0, -3, -4, -5, -1 };
    const int32_t types[] = { VM_TOKEN_TYPE_UNKNOWN, VM_TOKEN_TYPE_CONTROL, VM_TOKEN_TYPE_CONTROL, VM_TOKEN_TYPE_NORMAL,
                              VM_TOKEN_TYPE_NORMAL, VM_TOKEN_TYPE_NORMAL, VM_TOKEN_TYPE_NORMAL };
    enum { SP = 3, A = 4, B = 5, ASP = 6 };
    vm_tok_vocab v = { .kind = VM_TOK_SPM, .n_tokens = 7, .texts = texts, .scores = scores, .types = types,
                       .bos = 1, .eos = 2, .unk = 0, .pad = -1, .add_bos = 1, .add_space_prefix = 1 };
    vm_tokenizer *tok = vm_tokenizer_from_vocab(&v);
    CHECK(tok != NULL, "toy vocabulary: %s", vm_errmsg());
    if (!tok) return;
    char q[] = "a a", c0[] = "b", c1[] = "a", id[] = "merge";
    vm_mcq_item it = { .id = id, .question = q, .n_choices = 2, .choices = { c0, c1 }, .answer = 0 };
    vm_task t;
    vm_task_init(&t, tok, VM_TASK_PMI, VM_CHAT_NONE, 0);
    vm_task_input in;
    CHECK(vm_task_build(&t, &it, &in) == 0, "build: %s", vm_errmsg());
    // "▁a▁a" -> ▁ a▁ a; "▁a▁a▁b" -> ▁ a▁ a▁ b: whole[:4] = ▁ a▁ a▁ differs from ctx_enc = ▁ a▁ a
    int32_t w[16];
    const int nw = vm_tokenize(tok, "a a b", 5, 1, 0, w, 16);
    CHECK(nw == 5 && w[3] == ASP && w[4] == B, "the toy merges across the boundary (%d tokens)", nw);
    const int32_t want0[] = { 1, SP, ASP, A, B };   // ctx_enc + whole[len(ctx_enc):]
    CHECK(in.n_seq == 4 && in.seq[0].n == 5 && in.seq[0].n_ctx == 4 && !memcmp(in.seq[0].tokens, want0, sizeof want0),
          "sequence = ctx_enc + continuation");
    CHECK(in.seq[2].n == 2 && in.seq[2].tokens[0] == 1 && in.seq[2].tokens[1] == B, "pmi: BOS + the same continuation");
    check_tree(&in, "boundary merge");
    vm_task_input_free(&in);
    vm_tokenizer_free(tok);
#undef U2581
}

static void check_letter(const vm_task *t, const vm_mcq_item *it, int tmpl) {
    vm_task_input in;
    int rc = vm_task_build(t, it, &in);
    CHECK(rc == 0, "build letter %s (%s): %s", it->id, vm_chat_name(tmpl), vm_errmsg());
    if (rc) return;
    // the user message as method.md §5.1 writes it, built here independently
    char user[8192]; int k = snprintf(user, sizeof user, "Question: %s\nChoices:\n", it->question);
    for (int c = 0; c < it->n_choices; c++) k += snprintf(user + k, sizeof user - k, "%c. %s\n", 'A' + c, it->choices[c]);
    snprintf(user + k, sizeof user - k, "Answer:");
    char want[16384];
    if (tmpl == VM_CHAT_NONE) snprintf(want, sizeof want, "%s\n\n%s", VM_TASK_SYSTEM, user);
    else snprintf(want, sizeof want, "<|im_start|>system\n%s<|im_end|>\n<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n", VM_TASK_SYSTEM, user);
    CHECK(!strcmp(in.text, want), "prompt text of %s (%s):\n%s\n--- want ---\n%s", it->id, vm_chat_name(tmpl), in.text, want);
    CHECK(in.n_seq == 1 && in.n_choices == it->n_choices && in.answer == it->answer, "shape");
    // the scored sequence + letter c decodes to the prompt followed by (" " or "") and the letter
    char buf[20000];
    int32_t *ids = malloc((size_t)(in.seq[0].n + 1) * sizeof *ids);
    memcpy(ids, in.seq[0].tokens, (size_t)in.seq[0].n * sizeof *ids);
    for (int c = 0; c < in.n_choices; c++) {
        ids[in.seq[0].n] = in.letter_ids[c];
        int n = detok(t->tok, ids, in.seq[0].n + 1, buf, sizeof buf);
        // the prompt part, then the letter with or without a space
        const size_t wl = strlen(want);
        const char *tail = buf + (n >= (int)wl ? wl : 0);
        const int okp = n >= (int)wl && !strncmp(buf, want, wl);
        const int okl = (tail[0] == 'A' + c && !tail[1]) || (tail[0] == ' ' && tail[1] == 'A' + c && !tail[2]);
        size_t dpos = 0;
        while (dpos < wl && buf[dpos] == want[dpos]) dpos++;
        CHECK(okp && okl, "%s letter %c: decoded prompt differs at byte %zu [%.20s] vs [%.20s], tail [%s]", it->id,
              'A' + c, dpos, buf + dpos, want + dpos, tail);
        for (int d = 0; d < c; d++) CHECK(in.letter_ids[c] != in.letter_ids[d], "letters %d %d distinct", c, d);
    }
    free(ids);
    int32_t pos[4096], tgt[4096];
    CHECK(vm_task_positions(&in, 0, pos, tgt) == 1 && pos[0] == in.seq[0].n - 1 && tgt[0] == in.letter_ids[in.answer], "letter target");
    check_tree(&in, it->id);
    vm_task_input_free(&in);
}

static void check_loglik(const vm_task *t, const vm_mcq_item *it) {
    vm_task_input in;
    int rc = vm_task_build(t, it, &in);
    CHECK(rc == 0, "build loglik %s: %s", it->id, vm_errmsg());
    if (rc) return;
    char ctx[8192];
    snprintf(ctx, sizeof ctx, "Question: %s\nAnswer:", it->question);
    CHECK(!strcmp(in.text, ctx), "loglik context %s", in.text);
    int32_t cids[4096];
    const int nc = vm_tokenize(t->tok, ctx, strlen(ctx), 1, 0, cids, 4096);
    CHECK(in.n_seq == it->n_choices, "one sequence per choice");
    for (int c = 0; c < in.n_seq; c++) {
        const vm_task_seq *s = &in.seq[c];
        char whole[16400];
        snprintf(whole, sizeof whole, "%s %s", ctx, it->choices[c]);
        int32_t w[4096];
        const int nw = vm_tokenize(t->tok, whole, strlen(whole), 1, 0, w, 4096);
        // the harness's sequence: tok(ctx) + tok(ctx + cont)[len(tok(ctx)):]
        CHECK(s->n == nw && !memcmp(s->tokens, cids, (size_t)nc * sizeof *w) &&
              !memcmp(s->tokens + nc, w + nc, (size_t)(nw - nc) * sizeof *w), "choice %d = ctx_enc + continuation", c);
        CHECK(s->n_ctx == nc, "n_ctx %d = len(tok(ctx)) %d", s->n_ctx, nc);
        CHECK(s->cont_bytes == 1 + strlen(it->choices[c]), "continuation bytes");
        int32_t pos[4096], tgt[4096];
        const int k = vm_task_positions(&in, c, pos, tgt);
        CHECK(k == s->n - s->n_ctx && k > 0 && pos[0] == s->n_ctx - 1 && tgt[k - 1] == s->tokens[s->n - 1], "loglik span of choice %d", c);
    }
    check_tree(&in, it->id);
    vm_task_input_free(&in);
    // pmi (raw text): the second root, [BOS], with the same continuations
    vm_task tp;
    vm_task_init(&tp, t->tok, VM_TASK_PMI, VM_CHAT_NONE, 0);
    if (vm_task_build(&tp, it, &in) == 0) { check_tree(&in, it->id); vm_task_input_free(&in); }
    else CHECK(0, "build pmi %s: %s", it->id, vm_errmsg());
}

// scoring maths: letter softmax and its gradient; loglik sums and gradient (finite differences)
static void check_math(void) {
    vm_task_input in = { .mode = VM_TASK_LETTER, .n_choices = 3, .answer = 1 };
    in.letter_ids[0] = 2; in.letter_ids[1] = 5; in.letter_ids[2] = 7;
    float row[10] = { 0.3f, -1, 0.5f, 2, 0, 1.25f, 9, -0.75f, 3, 4 }, d[10] = {0};
    double p[3];
    const double lp = vm_task_letter_probs(&in, row, p, d, 1.0f);
    const double z = exp(0.5) + exp(1.25) + exp(-0.75);
    CHECK_NEAR(p[0], exp(0.5) / z, 1e-12, "letter p0");
    CHECK_NEAR(lp, 1.25 - log(z), 1e-12, "letter log p_answer");
    for (int v = 0; v < 10; v++) {   // d(-log p_y)/d row_v by central differences
        float r2[10]; memcpy(r2, row, sizeof row);
        double q[3];
        r2[v] = row[v] + 1e-3f; const double a = -vm_task_letter_probs(&in, r2, q, NULL, 0);
        r2[v] = row[v] - 1e-3f; const double b = -vm_task_letter_probs(&in, r2, q, NULL, 0);
        CHECK_NEAR(d[v], (a - b) / 2e-3, 1e-3, "letter gradient");
    }
    int32_t toks[4] = { 1, 3, 0, 2 };
    vm_task_input li = { .mode = VM_TASK_LOGLIK, .n_choices = 2, .answer = 0, .n_seq = 1 };
    li.seq[0] = (vm_task_seq){ .tokens = toks, .n = 4, .n_ctx = 2 };
    float lg[2 * 4] = { 0.1f, 0.2f, -0.3f, 1.0f,   2.0f, 0.0f, 0.5f, -1.0f }, dl[8] = {0};
    const double ll = vm_task_seq_loglik(&li, 0, lg, 4, dl, 0.5f);
    double want = 0;
    for (int k = 0; k < 2; k++) {
        double zz = 0;
        for (int v = 0; v < 4; v++) zz += exp(lg[k * 4 + v]);
        want += lg[k * 4 + toks[2 + k]] - log(zz);
    }
    CHECK_NEAR(ll, want, 1e-9, "loglik sum");
    for (int i = 0; i < 8; i++) {
        float l2[8]; memcpy(l2, lg, sizeof lg);
        l2[i] = lg[i] + 1e-3f; const double a = vm_task_seq_loglik(&li, 0, l2, 4, NULL, 0);
        l2[i] = lg[i] - 1e-3f; const double b = vm_task_seq_loglik(&li, 0, l2, 4, NULL, 0);
        CHECK_NEAR(dl[i], 0.5 * (a - b) / 2e-3, 1e-3, "loglik gradient");
    }
    double lls[3] = { -3, -1, -2 }, pr[3];
    const double ce = vm_task_choice_softmax(lls, 3, 2, pr);
    CHECK_NEAR(ce, 2 + log(exp(-3) + exp(-1) + exp(-2)), 1e-12, "choice cross-entropy");
}

// vm_task_score against logits computed here from a full-sequence evaluation
static void check_score(const vm_model *m, const vm_task *tl, const vm_task *tg, const vm_mcq_item *it) {
    vm_ctx *c = vm_ctx_init(m, 0, 64);
    const int V = vm_model_n_vocab(m);
    vm_task_input in;
    vm_task_result r;
    if (!c) { CHECK(0, "ctx"); return; }
    if (vm_task_build(tl, it, &in) == 0) {
        CHECK(vm_task_score(m, c, &in, &r) == 0, "score letter: %s", vm_errmsg());
        float *lg = malloc((size_t)in.seq[0].n * V * sizeof(float));
        vm_ctx_reset(c);
        vm_ctx_eval(c, in.seq[0].tokens, in.seq[0].n, lg);
        const float *row = lg + (size_t)(in.seq[0].n - 1) * V;
        double z = 0, mx = -1e30;
        for (int k = 0; k < in.n_choices; k++) if (row[in.letter_ids[k]] > mx) mx = row[in.letter_ids[k]];
        for (int k = 0; k < in.n_choices; k++) z += exp(row[in.letter_ids[k]] - mx);
        double s = 0;
        for (int k = 0; k < in.n_choices; k++) { CHECK_NEAR(r.probs[k], exp(row[in.letter_ids[k]] - mx) / z, 1e-6, "letter prob"); s += r.probs[k]; }
        CHECK_NEAR(s, 1, 1e-9, "probs sum");
        CHECK_NEAR(r.nll, -log(r.probs[in.answer]), 1e-9, "nll");
        free(lg);
        vm_task_input_free(&in);
    } else CHECK(0, "build: %s", vm_errmsg());
    if (vm_task_build(tg, it, &in) == 0) {
        CHECK(vm_task_score(m, c, &in, &r) == 0, "score loglik: %s", vm_errmsg());
        int best = 0, bestn = 0;
        double bl = -1e300, bn = -1e300;
        for (int k = 0; k < in.n_seq; k++) {
            const vm_task_seq *q = &in.seq[k];
            float *lg = malloc((size_t)q->n * V * sizeof(float));
            vm_ctx_reset(c);
            vm_ctx_eval(c, q->tokens, q->n, lg);
            double ll = 0;
            for (int i = q->n_ctx; i < q->n; i++) {
                const float *row = lg + (size_t)(i - 1) * V;
                double zz = 0, mx = -1e30;
                for (int v = 0; v < V; v++) if (row[v] > mx) mx = row[v];
                for (int v = 0; v < V; v++) zz += exp(row[v] - mx);
                ll += row[q->tokens[i]] - mx - log(zz);
            }
            CHECK_NEAR(r.ll[k], ll, 1e-4, "choice log-likelihood");
            if (ll > bl) { bl = ll; best = k; }
            if (ll / q->cont_bytes > bn) { bn = ll / q->cont_bytes; bestn = k; }
            free(lg);
        }
        CHECK(r.pred == best && r.pred_norm == bestn, "acc / acc_norm predictions %d %d vs %d %d", r.pred, r.pred_norm, best, bestn);
        vm_task_input_free(&in);
    } else CHECK(0, "build: %s", vm_errmsg());
    vm_ctx_free(c);
}

int main(void) {
    char model[128], src[512], tk[512], path[512];
    const char *sh = test_shared_dir();
    snprintf(src, sizeof src, "%s/models/stories260K.bin", sh);
    snprintf(tk, sizeof tk, "%s/models/tok512.bin", sh);
    if (!mkdtemp(dir)) { CHECK(0, "mkdtemp"); return TEST_SUMMARY(); }
    snprintf(model, sizeof model, "%s/s.gguf", dir);
    CHECK(vm_convert_llama2c(src, tk, model, VM_TYPE_F32, NULL) == 0, "convert: %s", vm_errmsg());
    vm_model *m = vm_model_load(model);
    vm_tokenizer *tok = m ? vm_tokenizer_from_gguf(m->gguf) : NULL;
    CHECK(m && tok, "load: %s", vm_errmsg());
    if (!tok) return TEST_SUMMARY();
    vm_dataset obqa, arc;
    vm_dataset_opts o; vm_dataset_opts_default(&o); o.limit = 6;
    snprintf(path, sizeof path, "%s/data/mcqa/openbookqa/train.jsonl", sh);
    CHECK(vm_dataset_load(&obqa, path, &o) == 0, "obqa: %s", vm_errmsg());
    o.limit = 0;
    snprintf(path, sizeof path, "%s/data/mcqa/arc-challenge/dev.jsonl", sh);
    CHECK(vm_dataset_load(&arc, path, &o) == 0, "arc: %s", vm_errmsg());
    // ARC items with 3 and 5 choices besides a 4-choice one
    const vm_mcq_item *odd[3] = {0};
    for (size_t i = 0; i < arc.n; i++) {
        const int n = arc.items[i].n_choices;
        if (n == 3 && !odd[0]) odd[0] = &arc.items[i];
        if (n == 5 && !odd[1]) odd[1] = &arc.items[i];
        if (n == 4 && !odd[2]) odd[2] = &arc.items[i];
    }
    vm_task tn, tc, tg;
    vm_task_init(&tn, tok, VM_TASK_LETTER, VM_CHAT_NONE, 0);
    vm_task_init(&tc, tok, VM_TASK_LETTER, VM_CHAT_CHATML, 0);
    vm_task_init(&tg, tok, VM_TASK_LOGLIK, VM_CHAT_NONE, 0);
    for (size_t i = 0; i < obqa.n; i++) { check_letter(&tn, &obqa.items[i], VM_CHAT_NONE); check_letter(&tc, &obqa.items[i], VM_CHAT_CHATML); check_loglik(&tg, &obqa.items[i]); }
    for (int i = 0; i < 3; i++) if (odd[i]) { check_letter(&tn, odd[i], VM_CHAT_NONE); check_loglik(&tg, odd[i]); }
    CHECK(odd[0] || odd[1], "ARC dev has 3- or 5-choice items");
    // a limit shorter than the prompt is an error naming the item
    vm_task tshort; vm_task_init(&tshort, tok, VM_TASK_LETTER, VM_CHAT_NONE, 10);
    vm_task_input in;
    CHECK(vm_task_build(&tshort, &obqa.items[0], &in) < 0 && strstr(vm_errmsg(), obqa.items[0].id), "too long: %s", vm_errmsg());
    vm_task_mode md;
    CHECK(vm_task_mode_parse("loglik", &md) == 0 && md == VM_TASK_LOGLIK && vm_task_mode_parse("x", &md) < 0, "mode names");
    check_math();
    check_boundary_merge();
    check_score(m, &tn, &tg, &obqa.items[1]);
    vm_dataset_free(&obqa); vm_dataset_free(&arc);
    vm_tokenizer_free(tok); vm_model_free(m);
    unlink(model); rmdir(dir);
    return TEST_SUMMARY();
}

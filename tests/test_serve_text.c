// The pieces of `vmoer serve` and the generation read-outs that need no HTTP: the answer text as
// tokens arrive (stop strings across tokens, UTF-8 split across tokens, invalid bytes), float32
// JSON that reads back exactly, and a token record (probability, entropy, top log-probabilities)
// against a direct computation on the bundled model.
#include "test.h"
#include "gen/gen.h"
#include "gen/gen_json.h"
#include "serve/text.h"
#include "util/rng.h"

#include <string.h>

// Feeds pieces; returns the concatenated segments (static buffer).
static const char *feed(const char *const *pieces, int n, char *const *stop, int n_stop, int *stopped) {
    static char out[256];
    out[0] = 0;
    srv_text t = {0};
    const char *seg;
    size_t len;
    for (int i = 0; i < n && !t.stopped; i++) {
        if (srv_text_add(&t, pieces[i], strlen(pieces[i]), stop, n_stop, &seg, &len)) break;
        strncat(out, seg, len);
    }
    if (!srv_text_finish(&t, &seg, &len)) strncat(out, seg, len);
    *stopped = t.stopped;
    CHECK(!strcmp(out, t.out ? t.out : ""), "segments '%s' = the whole text '%s'", out, t.out ? t.out : "");
    srv_text_free(&t);
    return out;
}

static void test_text(void) {
    int st;
    char *stop[] = { "\n\n", "END" };
    const char *a[] = { "Once", " upon", " a\n", "\ntime" };
    CHECK(!strcmp(feed(a, 4, stop, 2, &st), "Once upon a") && st, "stop across tokens: '%s'", feed(a, 4, stop, 2, &st));
    const char *b[] = { "the E", "N", "D of it" };
    CHECK(!strcmp(feed(b, 3, stop, 2, &st), "the ") && st, "held-back prefix then stop");
    const char *c[] = { "E", "N", "d" };
    CHECK(!strcmp(feed(c, 3, stop, 2, &st), "ENd") && !st, "a prefix that did not become a stop string is given out");
    const char *d[] = { "x\xE2", "\x82", "\xAC!" };   // a euro sign split over three tokens
    CHECK(!strcmp(feed(d, 3, NULL, 0, &st), "x\xE2\x82\xAC!"), "UTF-8 across tokens");
    const char *e[] = { "a\xFF", "b", "\xE2\x82" };   // an invalid byte, then a truncated character at the end
    CHECK(!strcmp(feed(e, 3, NULL, 0, &st), "a\xEF\xBF\xBD" "b\xEF\xBF\xBD\xEF\xBF\xBD"), "invalid bytes become U+FFFD");
    // what is given out after each token never ends inside a character
    srv_text t = {0};
    const char *seg;
    size_t len;
    srv_text_add(&t, "\xF0\x9F", 2, NULL, 0, &seg, &len);
    CHECK(len == 0, "half an emoji is held back");
    srv_text_add(&t, "\x98\x80", 2, NULL, 0, &seg, &len);
    CHECK(len == 4 && !memcmp(seg, "\xF0\x9F\x98\x80", 4), "and given out whole");
    srv_text_free(&t);
}

static void test_f32_json(void) {
    vm_rng g;
    vm_rng_seed(&g, 3);
    int bad = 0;
    for (int i = 0; i < 20000; i++) {
        union { uint32_t u; float f; } x = { (uint32_t)vm_rng_u64(&g) };
        if (!isfinite(x.f)) continue;
        json_t *j = vm_json_f32(x.f), *a = json_array();
        json_array_append_new(a, j);
        char *s = vm_json_dump(a);
        json_t *back = json_loads(s, 0, NULL);
        float y = (float)json_number_value(json_array_get(back, 0));
        bad += memcmp(&y, &x.f, 4) != 0 || strlen(s) > 2 + 16;
        free(s);
        json_decref(a);
        json_decref(back);
    }
    CHECK(bad == 0, "%d float32 values did not read back exactly (or took more than 9 digits)", bad);
    json_t *n = vm_json_f32(NAN);
    CHECK(json_is_null(n), "NaN is null");
    json_t *a = json_pack("[o]", vm_json_f32(0.1f));
    char *s = vm_json_dump(a);
    CHECK(!strcmp(s, "[0.1]"), "shortest digits: %s", s);
    free(s);
    json_decref(a);
}

static void test_record(void) {
    vm_model *m = vm_model_load("data/models/stories-moe.gguf");
    vm_tokenizer *tok = m ? vm_tokenizer_from_gguf(m->gguf) : NULL;
    vm_gen *g = tok ? vm_gen_new(m, tok, 64) : NULL;
    CHECK(g != NULL, "generator on the bundled model");
    if (!g) return;
    const int32_t ids[] = { 1, 403, 407 };
    const int V = m->hp.n_vocab;
    static float lg[3 * 512];
    CHECK(V <= 512 && vm_gen_eval(g, ids, 3, lg) == 0, "eval");
    vm_gen_tok t;
    vm_gen_record(g, lg + 2 * V, 2, 261, 5, &t);
    double mx = -1e30, z = 0, h = 0;
    for (int i = 0; i < V; i++) if (lg[2 * V + i] > mx) mx = lg[2 * V + i];
    for (int i = 0; i < V; i++) z += exp(lg[2 * V + i] - mx);
    for (int i = 0; i < V; i++) { double p = exp(lg[2 * V + i] - mx) / z; if (p > 0) h -= p * log(p); }
    CHECK_NEAR(t.prob, exp(lg[2 * V + 261] - mx) / z, 1e-6, "prob");
    CHECK_NEAR(t.score[VM_GS_NLL], -log(exp(lg[2 * V + 261] - mx) / z), 1e-5, "nll");
    CHECK_NEAR(t.score[VM_GS_ENTROPY], h, 1e-5, "entropy");
    CHECK(t.n_top == 5, "top 5");
    for (int k = 1; k < t.n_top; k++) CHECK(t.top_lp[k] <= t.top_lp[k - 1], "top log-probabilities descend");
    int beats = 0;
    for (int i = 0; i < V; i++) {
        int in_top = 0;
        for (int k = 0; k < 5; k++) in_top |= t.top_id[k] == i;
        beats += !in_top && lg[2 * V + i] > lg[2 * V + t.top_id[4]];
    }
    CHECK(beats == 0, "%d tokens outside the top 5 beat it", beats);
    CHECK(isfinite(t.score[VM_GS_GATE_ENTROPY]) && isnan(t.score[VM_GS_ILV]), "the deterministic router: gate entropy, no ILV");
    CHECK((vm_gen_available(g) & (1u << VM_GS_ILV)) == 0, "ILV not available without an adapter");
    vm_gen_summary s = {0};
    vm_gen_summary_add(&s, &t);
    t.score[VM_GS_ENTROPY] = 0.5f;
    vm_gen_summary_add(&s, &t);
    CHECK(s.n == 2 && s.cnt[VM_GS_ILV] == 0 && fabs(s.max[VM_GS_ENTROPY] - fmax(h, 0.5)) < 1e-5, "summary");
    vm_gen_free(g);
    vm_tokenizer_free(tok);
    vm_model_free(m);
}

int main(void) {
    test_text();
    test_f32_json();
    test_record();
    return TEST_SUMMARY();
}

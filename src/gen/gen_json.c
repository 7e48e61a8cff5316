// JSON of the generation read-outs (gen_json.h).
#include "gen/gen_json.h"
#include "data/dataset.h"
#include "util/err.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

json_t *vm_json_f32(float x) {
    if (!isfinite(x)) return json_null();
    // the fewest significant digits that read back as the same float32 (at most 9 are needed)
    char buf[32];
    for (int p = 6; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)x);
        if (strtof(buf, NULL) == x || p == 9) break;
    }
    return json_real(strtod(buf, NULL));
}

char *vm_json_dump(const json_t *j) {
    // %.9g of a double parsed from <= 9 digits prints those digits again
    return json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
}

char *vm_utf8_repair(const char *s, size_t n, size_t *out_len) {
    char *o = vm_malloc(3 * n + 1);   // each bad byte becomes 3 bytes at most
    if (!o) return NULL;
    size_t k = 0, i = 0;
    while (i < n) {
        size_t ok = vm_dataset_utf8_check(s + i, n - i);
        memcpy(o + k, s + i, ok);
        k += ok; i += ok;
        if (i < n) { memcpy(o + k, "\xEF\xBF\xBD", 3); k += 3; i++; }   // NUL included: not a text byte
    }
    o[k] = 0;
    if (out_len) *out_len = k;
    return o;
}

json_t *vm_json_piece(const vm_tokenizer *tok, int32_t id) {
    char buf[256];
    int n = vm_token_to_piece(tok, id, buf, sizeof buf);
    if (n == 0 && vm_tokenizer_type(tok, id) == VM_TOKEN_TYPE_CONTROL) {
        const char *t = vm_tokenizer_text(tok, id);
        return json_string(t ? t : "");
    }
    char *big = NULL;
    const char *p = buf;
    if (n > (int)sizeof buf) {
        if (!(big = malloc((size_t)n)) || vm_token_to_piece(tok, id, big, n) != n) { free(big); return json_null(); }
        p = big;
    }
    json_t *j = json_null();
    if (n >= 0) {
        size_t len;
        char *r = vm_utf8_repair(p, (size_t)n, &len);
        if (r) { json_decref(j); j = json_stringn(r, len); free(r); }
    }
    free(big);
    return j ? j : json_null();
}

json_t *vm_gen_tok_json(const vm_gen *g, const vm_tokenizer *tok, const vm_gen_tok *t, int layers) {
    json_t *o = json_object();
    const unsigned av = vm_gen_available(g);
    json_object_set_new(o, "token", json_integer(t->id));
    json_object_set_new(o, "text", t->id >= 0 ? vm_json_piece(tok, t->id) : json_null());
    json_object_set_new(o, "prob", vm_json_f32(t->prob));
    for (int s = 0; s < VM_GS_COUNT; s++)
        if (av & (1u << s)) json_object_set_new(o, vm_gen_score_name(s), vm_json_f32(t->score[s]));
    const int *ro;
    const int n_ro = vm_gen_readout_layers(g, &ro);
    if (layers && n_ro > 0 && t->unc) {
        json_t *L = json_object();
        for (int s = 0; s < VM_GS_COUNT; s++) {
            const int u = vm_gen_score_unc(s);
            if (u < 0 || !(av & (1u << s))) continue;
            json_t *a = json_array();
            for (int i = 0; i < n_ro; i++) json_array_append_new(a, vm_json_f32(t->unc[(size_t)ro[i] * VM_UNC_COUNT + u]));
            json_object_set_new(L, vm_gen_score_name(s), a);
        }
        json_object_set_new(o, "layers", L);
    }
    return o;
}

json_t *vm_gen_summary_json(const vm_gen *g, const vm_gen_summary *s) {
    json_t *o = json_object();
    const unsigned av = vm_gen_available(g);
    json_object_set_new(o, "n_tokens", json_integer(s->n));
    for (int k = 0; k < VM_GS_COUNT; k++) {
        if (!(av & (1u << k))) continue;
        json_t *v = json_object();
        json_object_set_new(v, "mean", s->cnt[k] ? vm_json_f32((float)(s->sum[k] / s->cnt[k])) : json_null());
        json_object_set_new(v, "max", s->cnt[k] ? vm_json_f32((float)s->max[k]) : json_null());
        json_object_set_new(o, vm_gen_score_name(k), v);
    }
    return o;
}

json_t *vm_gen_info_json(const vm_gen *g) {
    const vm_model *m = vm_gen_model(g);
    const int *ro;
    const int n_ro = vm_gen_readout_layers(g, &ro);
    const char *kind = NULL;
    json_t *o = json_object(), *L = json_array(), *S = json_array();
    for (int i = 0; i < n_ro; i++) {
        const vm_router *r = m->routers[ro[i]];
        const char *k = r && r->ops ? r->ops->name : "?";
        kind = !kind || !strcmp(kind, k) ? k : "mixed";
        json_array_append_new(L, json_integer(ro[i]));
    }
    for (int s = 0; s < VM_GS_COUNT; s++)
        if (vm_gen_available(g) & (1u << s)) json_array_append_new(S, json_string(vm_gen_score_name(s)));
    json_object_set_new(o, "router", kind ? json_string(kind) : json_null());
    json_object_set_new(o, "readout_layers", L);
    json_object_set_new(o, "scores", S);
    return o;
}

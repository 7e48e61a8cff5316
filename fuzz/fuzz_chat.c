// libFuzzer target: chat templates. Input: byte 0 = flags (bit 0 add_generation_prompt, bit 1
// custom bos/eos/default system), then NUL-separated strings: a template string (detected, picked,
// searched for a default system message), [bos, eos, default_system when bit 1; "" = NULL], then
// role, content, role, content, ... (at most 64 messages; a missing last content is NULL).
// Every template renders the conversation; checked: the result's length, an error on failure,
// the "none" template's plain concatenation, and for the append-only families (chatml, granite,
// deepseek) that a conversation's rendering starts with the rendering of its prefix.
#include "fuzz_common.h"
#include "tokenizer/chat.h"
#include "util/err.h"

#define CHAT_MAX_MSG 64

// Next NUL-terminated string of [*p, end), or NULL when none is left; the last one may be
// unterminated, so it is copied.
static const char *chat_next(const char **p, const char *end, char **own) {
    if (*p >= end) return NULL;
    const char *s = *p;
    const char *z = memchr(s, 0, (size_t)(end - s));
    if (z) { *p = z + 1; return s; }
    size_t n = (size_t)(end - s);
    *own = malloc(n + 1);
    FUZZ_ASSERT(*own);
    memcpy(*own, s, n);
    (*own)[n] = 0;
    *p = end;
    return *own;
}

static void chat_check_detect(const char *tmpl) {
    int id = vm_chat_detect(tmpl);
    FUZZ_ASSERT(id >= -1 && id < VM_CHAT_COUNT);
    FUZZ_ASSERT(vm_chat_detect(tmpl) == id);
    char note[128];
    vm_err_clear();
    int p = vm_chat_pick(NULL, tmpl, note, sizeof note);
    FUZZ_ASSERT(p == (id >= 0 ? id : -1));
    if (p < 0) FUZZ_ASSERT(vm_errmsg()[0]);
    FUZZ_ASSERT(note[0] == 0);
    vm_err_clear();
    int byname = vm_chat_template_from_name(tmpl);
    FUZZ_ASSERT(byname >= -1 && byname < VM_CHAT_COUNT);
    if (byname >= 0) FUZZ_ASSERT(byname == id && !strcmp(vm_chat_name(byname), vm_chat_name(id)));
    else FUZZ_ASSERT(vm_errmsg()[0]);
    vm_err_clear();
    char *sys = vm_chat_default_system(tmpl);
    if (sys) FUZZ_ASSERT(strlen(sys) <= strlen(tmpl));
    free(sys);
}

static int chat_render(int tmpl, const vm_chat_msg *m, int n, int gen, const vm_chat_opts *o, char **out) {
    vm_err_clear();
    int r = vm_chat_render_ex(tmpl, m, n, gen, o, out);
    if (r < 0) {
        FUZZ_ASSERT(r == -1 && *out == NULL && vm_errmsg()[0]);
    } else {
        FUZZ_ASSERT(*out && strlen(*out) == (size_t)r);
    }
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int gen = data[0] & 1, custom = (data[0] >> 1) & 1;
    const char *p = (const char *)data + 1, *end = (const char *)data + size;
    char *own = NULL;   // at most one unterminated string: the last one
    const char *tmpl = chat_next(&p, end, &own);
    if (tmpl) chat_check_detect(tmpl);

    vm_chat_opts opts = {0};
    if (custom) {
        const char *f[3] = {0};
        for (int i = 0; i < 3; i++) f[i] = chat_next(&p, end, &own);
        opts.bos = f[0] && *f[0] ? f[0] : NULL;
        opts.eos = f[1] && *f[1] ? f[1] : NULL;
        opts.default_system = f[2] && *f[2] ? f[2] : NULL;
    }
    vm_chat_msg m[CHAT_MAX_MSG];
    int n = 0;
    const char *role;
    while (n < CHAT_MAX_MSG && (role = chat_next(&p, end, &own))) {
        m[n].role = role;
        m[n].content = chat_next(&p, end, &own);
        n++;
    }

    for (int t = 0; t < VM_CHAT_COUNT; t++) {
        char *out = NULL;
        int r = chat_render(t, m, n, gen, custom ? &opts : NULL, &out);
        if (r >= 0 && t == VM_CHAT_NONE && !opts.default_system) {
            size_t o = 0;
            for (int i = 0; i < n; i++) {
                size_t k = m[i].content ? strlen(m[i].content) : 0;
                FUZZ_ASSERT(o + k <= (size_t)r && (!k || !memcmp(out + o, m[i].content, k)));
                o += k;
            }
            FUZZ_ASSERT(o == (size_t)r);
        }
        // (a default system message is added to an empty prefix but not to a conversation that
        // starts with a system message: then the prefix may differ)
        int same_sys = n > 1 || !opts.default_system;
        if (r >= 0 && n > 0 && same_sys && (t == VM_CHAT_CHATML || t == VM_CHAT_GRANITE || t == VM_CHAT_DEEPSEEK) && !gen) {
            char *pre = NULL;
            int rp = chat_render(t, m, n - 1, 0, custom ? &opts : NULL, &pre);
            FUZZ_ASSERT(rp >= 0 && rp <= r && !memcmp(out, pre, (size_t)rp));
            free(pre);
        }
        free(out);
    }
    // out-of-range ids and bad arguments fail cleanly
    char *out = (char *)1;
    FUZZ_ASSERT(vm_chat_render(VM_CHAT_COUNT, m, n, gen, &out) == -1 && out == NULL);
    FUZZ_ASSERT(vm_chat_render(-1, m, n, gen, &out) == -1 && out == NULL);
    FUZZ_ASSERT(!strcmp(vm_chat_name(VM_CHAT_COUNT), "?"));
    free(own);
    vm_err_clear();
    return 0;
}

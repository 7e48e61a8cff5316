// Chat templates rendered in C. Each renderer follows the Jinja template its model family publishes
// in tokenizer_config.json (named above each one); recognition looks for markers that only that
// family's templates contain. See chat.h for the list and the BOS convention.
#include "tokenizer/chat.h"
#include "util/err.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---- names ----

static const char *const NAMES[VM_CHAT_COUNT] = {
    [VM_CHAT_NONE] = "none",           [VM_CHAT_LLAMA2] = "llama2",
    [VM_CHAT_MISTRAL_LEGACY] = "mistral-legacy", [VM_CHAT_MISTRAL_V1] = "mistral-v1",
    [VM_CHAT_MISTRAL_V3] = "mistral-v3", [VM_CHAT_CHATML] = "chatml",
    [VM_CHAT_QWEN3] = "qwen3",         [VM_CHAT_QWEN3_NOTHINK] = "qwen3-nothink",
    [VM_CHAT_GRANITE] = "granite",     [VM_CHAT_DEEPSEEK] = "deepseek",
    [VM_CHAT_DEEPSEEK3] = "deepseek3", [VM_CHAT_TULU] = "tulu",
};

static const struct { const char *name; int id; } ALIASES[] = {
    {"mistral", VM_CHAT_MISTRAL_V1}, {"qwen", VM_CHAT_CHATML}, {"qwen2", VM_CHAT_CHATML},
    {"deepseek2", VM_CHAT_DEEPSEEK}, {"olmoe", VM_CHAT_TULU},
};

const char *vm_chat_names(void) {
    return "none, llama2, mistral-legacy, mistral-v1 (mistral), mistral-v3, chatml (qwen, qwen2), "
           "qwen3, qwen3-nothink, granite, deepseek (deepseek2), deepseek3, tulu (olmoe)";
}

const char *vm_chat_name(int tmpl) {
    return tmpl >= 0 && tmpl < VM_CHAT_COUNT ? NAMES[tmpl] : "?";
}

static int name_lookup(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < VM_CHAT_COUNT; i++)
        if (!strcmp(name, NAMES[i])) return i;
    for (size_t i = 0; i < sizeof ALIASES / sizeof ALIASES[0]; i++)
        if (!strcmp(name, ALIASES[i].name)) return ALIASES[i].id;
    return -1;
}

int vm_chat_template_from_name(const char *name) {
    int id = name_lookup(name);
    if (id < 0) return vm_err("chat: unknown template '%s' (known: %s)", name ? name : "(null)", vm_chat_names());
    return id;
}

// ---- recognition ----

static int has(const char *s, const char *needle) { return strstr(s, needle) != NULL; }

// Tulu/OLMoE vs Zephyr: both write '<|user|>\n' + content, Tulu ends the user turn with '\n',
// Zephyr with eos_token. Look at the expression that follows the first <|user|>.
static int user_turn_ends_with_eos(const char *t) {
    const char *u = strstr(t, "<|user|>");
    if (!u) return 0;
    const char *end = strstr(u, "}}");
    const char *e = strstr(u, "eos_token");
    return e && (!end || e < end);
}

int vm_chat_detect(const char *t) {
    if (!t || !*t) return -1;
    int id = name_lookup(t);        // a GGUF (or a user) may store a template's name instead
    if (id >= 0) return id;

    if (has(t, "<|im_start|>")) {
        // Phi-4 (<|im_sep|>) and SmolVLM (<end_of_utterance>) reuse the marker but are not ChatML
        if (has(t, "<|im_sep|>") || has(t, "<end_of_utterance>")) return -1;
        // Qwen3: the <think> handling of assistant turns (enable_thinking switch)
        if (has(t, "<think>") && has(t, "</think>") && has(t, "last_query_index")) return VM_CHAT_QWEN3;
        return VM_CHAT_CHATML;
    }
    if (has(t, "<|start_of_role|>") && has(t, "<|end_of_role|>")) return VM_CHAT_GRANITE;
    if (has(t, "<\xEF\xBD\x9CUser\xEF\xBD\x9C>") && has(t, "<\xEF\xBD\x9C" "Assistant\xEF\xBD\x9C>"))
        return VM_CHAT_DEEPSEEK3;   // <｜User｜> <｜Assistant｜> (fullwidth bars)
    if (has(t, "'Assistant: ' + message['content'] + eos_token") ||
        (has(t, "'User: ' + message['content']") && has(t, "'Assistant:'") && has(t, "eos_token")))
        return VM_CHAT_DEEPSEEK;
    if (has(t, "[INST]")) {
        // Mistral v7 ([SYSTEM_PROMPT]) and the Tekken variants are other formats: not handled
        if (has(t, "[SYSTEM_PROMPT]") || has(t, "\"[INST]\"")) return -1;
        if (has(t, "<<SYS>>")) return VM_CHAT_LLAMA2;
        if (has(t, "' [INST] ' + system_message")) return VM_CHAT_MISTRAL_V1;
        if (has(t, "[AVAILABLE_TOOLS]") || has(t, "\"[INST] \" + system_message") ||
            (has(t, "'[INST] ' + system_message") && has(t, "loop.last")))
            return VM_CHAT_MISTRAL_V3;
        if (has(t, "system_message")) return -1;   // some other system-aware [INST] variant
        return VM_CHAT_MISTRAL_LEGACY;
    }
    if (has(t, "<|user|>") && has(t, "<|assistant|>")) {
        // Phi-3 (<|end|>), Falcon-3 (</s>), GLM ([gMASK]) and Zephyr share the role markers
        if (has(t, "<|end|>") || has(t, "</s>") || has(t, "[gMASK]") || user_turn_ends_with_eos(t)) return -1;
        return VM_CHAT_TULU;
    }
    return -1;
}

// ---- output buffer ----

typedef struct sbuf { char *p; size_t n, cap; int oom; } sbuf;

static void put_n(sbuf *b, const char *s, size_t n) {
    if (b->oom || n == 0) return;
    if (n > SIZE_MAX / 2 - b->n - 1) { b->oom = 1; return; }
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) { b->oom = 1; return; }
        b->p = q; b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void put(sbuf *b, const char *s) { put_n(b, s, strlen(s)); }

// Python's str.strip() / lstrip() / rstrip() over ASCII whitespace (chars), or over '\n' only.
static const char *WS = " \t\n\v\f\r";
static int in_set(char c, const char *set) { return c && strchr(set, c) != NULL; }
static void put_stripped(sbuf *b, const char *s, int left, int right, const char *set) {
    size_t i = 0, j = strlen(s);
    if (left) while (i < j && in_set(s[i], set)) i++;
    if (right) while (j > i && in_set(s[j - 1], set)) j--;
    put_n(b, s + i, j - i);
}

// ---- renderers (m: the messages, contents never NULL here) ----

typedef struct chat_in {
    const vm_chat_msg *m;
    int n, gen;
    const char *bos, *eos;
} chat_in;

static int is_role(const vm_chat_msg *m, const char *r) { return !strcmp(m->role, r); }

static int bad_role(int tmpl, const char *role) {
    return vm_err("chat: role '%s' is not supported by template %s (system, user, assistant)", role, vm_chat_name(tmpl));
}

// [INST] families: an optional system message first, then user/assistant alternating from user
// (the templates raise an exception otherwise).
static int check_alternation(int tmpl, const chat_in *c) {
    int first = c->n > 0 && is_role(&c->m[0], "system");
    for (int i = first; i < c->n; i++) {
        const char *want = (i - first) % 2 == 0 ? "user" : "assistant";
        if (!is_role(&c->m[i], want)) {
            if (!is_role(&c->m[i], "user") && !is_role(&c->m[i], "assistant") && !is_role(&c->m[i], "system"))
                return bad_role(tmpl, c->m[i].role);
            return vm_err("chat: template %s needs an optional system message first, then user and assistant "
                          "turns alternating from user (message %d is '%s')", vm_chat_name(tmpl), i, c->m[i].role);
        }
    }
    return 0;
}

static int render_none(const chat_in *c, sbuf *b) {
    for (int i = 0; i < c->n; i++) put(b, c->m[i].content);
    return 0;
}

// Llama-2-chat (meta-llama/Llama-2-7b-chat-hf tokenizer_config.json; HF blog "Llama 2 is here",
// section "How to prompt Llama 2"): the system block is prefixed to the first user text, each user
// turn is bos + "[INST] " + text.strip() + " [/INST]", each answer " " + text.strip() + " " + eos.
static int render_llama2(const chat_in *c, sbuf *b) {
    if (check_alternation(VM_CHAT_LLAMA2, c)) return -1;
    int sys = c->n > 0 && is_role(&c->m[0], "system");
    for (int i = sys; i < c->n; i++) {
        const char *txt = c->m[i].content;
        if (is_role(&c->m[i], "user")) {
            if (i > sys) put(b, c->bos);       // the first BOS is the tokenizer's
            put(b, "[INST] ");
            if (i == sys && sys) {
                // strip() applies to the combined "<<SYS>>\n" + S + "\n<</SYS>>\n\n" + U
                sbuf t = {0};
                put(&t, "<<SYS>>\n"); put(&t, c->m[0].content); put(&t, "\n<</SYS>>\n\n"); put(&t, txt);
                if (t.oom) { free(t.p); b->oom = 1; return 0; }
                put_stripped(b, t.p ? t.p : "", 1, 1, WS);
                free(t.p);
            } else {
                put_stripped(b, txt, 1, 1, WS);
            }
            put(b, " [/INST]");
        } else {
            put(b, " "); put_stripped(b, txt, 1, 1, WS); put(b, " "); put(b, c->eos);
        }
    }
    return 0;
}

// Mixtral-8x7B-Instruct-v0.1 / Mistral-7B-Instruct-v0.1 as first released (Dec 2023):
// "[INST] " + U + " [/INST]", answers U + eos, no system role. The later official template of the
// same models (mistral-v1) puts a system message before the first user text with "\n\n"; so here.
static int render_mistral_legacy(const chat_in *c, sbuf *b) {
    if (check_alternation(VM_CHAT_MISTRAL_LEGACY, c)) return -1;
    int sys = c->n > 0 && is_role(&c->m[0], "system");
    for (int i = sys; i < c->n; i++) {
        if (is_role(&c->m[i], "user")) {
            put(b, "[INST] ");
            if (i == sys && sys) { put(b, c->m[0].content); put(b, "\n\n"); }
            put(b, c->m[i].content);
            put(b, " [/INST]");
        } else {
            put(b, c->m[i].content); put(b, c->eos);
        }
    }
    return 0;
}

// Mistral "v1" (mistralai/Mixtral-8x7B-Instruct-v0.1 tokenizer_config.json since 2024; Mistral
// cookbook, concept-deep-dive/tokenization/templates.md): " [INST] " + [S + "\n\n" on the first
// user turn] + U + " [/INST]", answers " " + A + eos. No generation prompt: [/INST] is the cue.
// Mistral "v3" (Mixtral-8x22B-Instruct-v0.1, Mistral-7B-Instruct-v0.3): "[INST] " + [S + "\n\n" on
// the LAST message when it is a user turn] + U + "[/INST]", answers " " + A.strip() + eos.
static int render_mistral(int tmpl, const chat_in *c, sbuf *b) {
    if (check_alternation(tmpl, c)) return -1;
    int v1 = tmpl == VM_CHAT_MISTRAL_V1;
    int sys = c->n > 0 && is_role(&c->m[0], "system");
    for (int i = sys; i < c->n; i++) {
        if (is_role(&c->m[i], "user")) {
            put(b, v1 ? " [INST] " : "[INST] ");
            int with_sys = sys && (v1 ? i == sys : i == c->n - 1);
            if (with_sys) { put(b, c->m[0].content); put(b, "\n\n"); }
            put(b, c->m[i].content);
            put(b, v1 ? " [/INST]" : "[/INST]");
        } else {
            put(b, " ");
            if (v1) put(b, c->m[i].content);
            else put_stripped(b, c->m[i].content, 1, 1, WS);
            put(b, c->eos);
        }
    }
    return 0;
}

// ChatML (Qwen/Qwen1.5-MoE-A2.7B-Chat, Qwen2 tokenizer_config.json): every message
// "<|im_start|>" + role + "\n" + C + "<|im_end|>\n"; generation prompt "<|im_start|>assistant\n".
static int render_chatml(const chat_in *c, sbuf *b) {
    for (int i = 0; i < c->n; i++) {
        if (!c->m[i].role[0] || strchr(c->m[i].role, '\n')) return bad_role(VM_CHAT_CHATML, c->m[i].role);
        put(b, "<|im_start|>"); put(b, c->m[i].role); put(b, "\n");
        put(b, c->m[i].content); put(b, "<|im_end|>\n");
    }
    if (c->gen) put(b, "<|im_start|>assistant\n");
    return 0;
}

static int starts_with(const char *s, const char *p) { return !strncmp(s, p, strlen(p)); }
static int ends_with(const char *s, const char *p) {
    size_t n = strlen(s), k = strlen(p);
    return n >= k && !memcmp(s + n - k, p, k);
}

// Qwen3 (Qwen/Qwen3-30B-A3B tokenizer_config.json): ChatML, except assistant turns. Their text is
// split at "</think>": the answer is what follows the last "</think>" (leading '\n' removed), the
// reasoning what precedes the first one (after its last "<think>", '\n' trimmed). Assistant turns
// after the last real user query (tool responses do not count) keep the reasoning block when they
// are the last message or have reasoning; earlier ones keep only the answer. The generation
// prompt is "<|im_start|>assistant\n", plus "<think>\n\n</think>\n\n" when enable_thinking=false
// (the model card's non-thinking mode: qwen3-nothink).
static int render_qwen3(int tmpl, const chat_in *c, sbuf *b) {
    int last_query = c->n - 1;
    for (int i = c->n - 1; i >= 0; i--) {
        const char *t = c->m[i].content;
        if (is_role(&c->m[i], "user") && !(starts_with(t, "<tool_response>") && ends_with(t, "</tool_response>"))) {
            last_query = i;
            break;
        }
    }
    for (int i = 0; i < c->n; i++) {
        const vm_chat_msg *m = &c->m[i];
        if (!is_role(m, "assistant")) {
            if (!is_role(m, "system") && !is_role(m, "user")) return bad_role(tmpl, m->role);
            put(b, "<|im_start|>"); put(b, m->role); put(b, "\n"); put(b, m->content); put(b, "<|im_end|>\n");
            continue;
        }
        const char *answer = m->content, *reason = "";
        size_t reason_len = 0;
        const char *first_end = strstr(m->content, "</think>");
        if (first_end) {
            const char *p = first_end, *q;
            while ((q = strstr(p + 1, "</think>"))) p = q;
            answer = p + strlen("</think>");
            while (*answer == '\n') answer++;
            // reasoning: before the first </think>, right-trim '\n', after the last <think>, left-trim '\n'
            const char *r0 = m->content, *r1 = first_end;
            while (r1 > r0 && r1[-1] == '\n') r1--;
            for (const char *s = r0; (s = strstr(s, "<think>")) && s < r1; s++) r0 = s + strlen("<think>");
            if (r0 > r1) r0 = r1;
            while (r0 < r1 && *r0 == '\n') r0++;
            reason = r0; reason_len = (size_t)(r1 - r0);
        }
        put(b, "<|im_start|>assistant\n");
        if (i > last_query && (i == c->n - 1 || reason_len > 0)) {
            // reasoning_content.strip('\n'): already trimmed on both sides
            put(b, "<think>\n"); put_n(b, reason, reason_len); put(b, "\n</think>\n\n");
            put_stripped(b, answer, 1, 0, "\n");
        } else {
            put(b, answer);
        }
        put(b, "<|im_end|>\n");
    }
    if (c->gen) {
        put(b, "<|im_start|>assistant\n");
        if (tmpl == VM_CHAT_QWEN3_NOTHINK) put(b, "<think>\n\n</think>\n\n");
    }
    return 0;
}

// Granite 3.x (ibm-granite/granite-3.1-3b-a800m-instruct tokenizer_config.json): every message
// "<|start_of_role|>" + role + "<|end_of_role|>" + C + "<|end_of_text|>\n"; after the last message
// the generation prompt "<|start_of_role|>assistant<|end_of_role|>" (no newline).
static int render_granite(const chat_in *c, sbuf *b) {
    for (int i = 0; i < c->n; i++) {
        const vm_chat_msg *m = &c->m[i];
        if (!is_role(m, "system") && !is_role(m, "user") && !is_role(m, "assistant")) return bad_role(VM_CHAT_GRANITE, m->role);
        put(b, "<|start_of_role|>"); put(b, m->role); put(b, "<|end_of_role|>");
        put(b, m->content); put(b, "<|end_of_text|>\n");
    }
    if (c->gen && c->n > 0) put(b, "<|start_of_role|>assistant<|end_of_role|>");   // emitted inside the loop
    return 0;
}

// deepseek-llm-7b-chat / deepseek-moe-16b-chat / DeepSeek-V2(-Lite)-Chat tokenizer_config.json:
// system C + "\n\n", user "User: " + C + "\n\n", assistant "Assistant: " + C + eos,
// generation prompt "Assistant:" (no space: the model writes it).
static int render_deepseek(const chat_in *c, sbuf *b) {
    for (int i = 0; i < c->n; i++) {
        const vm_chat_msg *m = &c->m[i];
        if (is_role(m, "system")) { put(b, m->content); put(b, "\n\n"); }
        else if (is_role(m, "user")) { put(b, "User: "); put(b, m->content); put(b, "\n\n"); }
        else if (is_role(m, "assistant")) { put(b, "Assistant: "); put(b, m->content); put(b, c->eos); }
        else return bad_role(VM_CHAT_DEEPSEEK, m->role);
    }
    if (c->gen) put(b, "Assistant:");
    return 0;
}

// DeepSeek-V3 / V2.5 tokenizer_config.json: bos + the system messages joined by "\n\n" (no separator
// after them), then "<｜User｜>" + U and "<｜Assistant｜>" + A + "<｜end▁of▁sentence｜>" (a literal in
// the template); generation prompt "<｜Assistant｜>".
#define DS_USER "<\xEF\xBD\x9CUser\xEF\xBD\x9C>"
#define DS_ASSISTANT "<\xEF\xBD\x9C" "Assistant\xEF\xBD\x9C>"
#define DS_EOS "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>"
#define DS_BOS "<\xEF\xBD\x9C" "begin\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>"
static int render_deepseek3(const chat_in *c, sbuf *b) {
    int n_sys = 0;
    for (int i = 0; i < c->n; i++) {
        const vm_chat_msg *m = &c->m[i];
        if (!is_role(m, "system") && !is_role(m, "user") && !is_role(m, "assistant")) return bad_role(VM_CHAT_DEEPSEEK3, m->role);
        if (is_role(m, "system")) { if (n_sys++) put(b, "\n\n"); put(b, m->content); }
    }
    for (int i = 0; i < c->n; i++) {
        const vm_chat_msg *m = &c->m[i];
        if (is_role(m, "user")) { put(b, DS_USER); put(b, m->content); }
        else if (is_role(m, "assistant")) { put(b, DS_ASSISTANT); put(b, m->content); put(b, DS_EOS); }
    }
    if (c->gen) put(b, DS_ASSISTANT);
    return 0;
}

// Tulu / OLMoE-1B-7B-0924-Instruct tokenizer_config.json (allenai open-instruct "tulu" template):
// "<|system|>\n" + S + "\n", "<|user|>\n" + U + "\n", "<|assistant|>\n" + A + eos (+ "\n" unless it is
// the last message); after the last message the generation prompt "<|assistant|>\n".
static int render_tulu(const chat_in *c, sbuf *b) {
    for (int i = 0; i < c->n; i++) {
        const vm_chat_msg *m = &c->m[i];
        if (is_role(m, "system")) { put(b, "<|system|>\n"); put(b, m->content); put(b, "\n"); }
        else if (is_role(m, "user")) { put(b, "<|user|>\n"); put(b, m->content); put(b, "\n"); }
        else if (is_role(m, "assistant")) {
            put(b, "<|assistant|>\n"); put(b, m->content); put(b, c->eos);
            if (i < c->n - 1) put(b, "\n");
        } else return bad_role(VM_CHAT_TULU, m->role);
    }
    if (c->gen && c->n > 0) put(b, "<|assistant|>\n");   // emitted inside the loop
    return 0;
}

// ---- entry points ----

static const char *default_eos(int tmpl) {
    switch (tmpl) {
    case VM_CHAT_DEEPSEEK: case VM_CHAT_DEEPSEEK3: return DS_EOS;
    case VM_CHAT_TULU: return "<|endoftext|>";       // OLMoE's eos_token
    default: return "</s>";                           // Llama 2 / Mistral SentencePiece
    }
}
static const char *default_bos(int tmpl) {
    return tmpl == VM_CHAT_DEEPSEEK || tmpl == VM_CHAT_DEEPSEEK3 ? DS_BOS : "<s>";
}

int vm_chat_render_ex(int tmpl, const vm_chat_msg *msgs, int n, int add_generation_prompt,
                      const vm_chat_opts *opts, char **out) {
    if (!out) return vm_err("chat: NULL output (vm_chat_render)");
    *out = NULL;
    if (tmpl < 0 || tmpl >= VM_CHAT_COUNT) return vm_err("chat: template id %d out of range (vm_chat_render)", tmpl);
    if (n < 0 || (n > 0 && !msgs) || n > INT_MAX - 1) return vm_err("chat: bad message list (n = %d)", n);
    for (int i = 0; i < n; i++)
        if (!msgs[i].role) return vm_err("chat: message %d has no role", i);

    // a working copy: NULL contents become "", and the default system message goes first
    const char *dsys = opts ? opts->default_system : NULL;
    int add_sys = dsys && (n == 0 || strcmp(msgs[0].role, "system"));
    int nm = n + add_sys;
    vm_chat_msg *m = vm_malloc(sizeof *m * (size_t)(nm > 0 ? nm : 1));
    if (!m) return -1;
    if (add_sys) m[0] = (vm_chat_msg){"system", dsys};
    for (int i = 0; i < n; i++) {
        m[add_sys + i] = msgs[i];
        if (!m[add_sys + i].content) m[add_sys + i].content = "";
    }
    chat_in c = {m, nm, add_generation_prompt != 0,
                 opts && opts->bos ? opts->bos : default_bos(tmpl),
                 opts && opts->eos ? opts->eos : default_eos(tmpl)};

    sbuf b = {0};
    put(&b, "");        // an empty conversation still yields an allocated ""
    if (!b.p && !b.oom) { b.p = malloc(1); if (b.p) b.p[0] = 0; else b.oom = 1; }
    int rc;
    switch (tmpl) {
    case VM_CHAT_NONE: rc = render_none(&c, &b); break;
    case VM_CHAT_LLAMA2: rc = render_llama2(&c, &b); break;
    case VM_CHAT_MISTRAL_LEGACY: rc = render_mistral_legacy(&c, &b); break;
    case VM_CHAT_MISTRAL_V1: case VM_CHAT_MISTRAL_V3: rc = render_mistral(tmpl, &c, &b); break;
    case VM_CHAT_CHATML: rc = render_chatml(&c, &b); break;
    case VM_CHAT_QWEN3: case VM_CHAT_QWEN3_NOTHINK: rc = render_qwen3(tmpl, &c, &b); break;
    case VM_CHAT_GRANITE: rc = render_granite(&c, &b); break;
    case VM_CHAT_DEEPSEEK: rc = render_deepseek(&c, &b); break;
    case VM_CHAT_DEEPSEEK3: rc = render_deepseek3(&c, &b); break;
    case VM_CHAT_TULU: rc = render_tulu(&c, &b); break;
    default: rc = vm_err("chat: template id %d has no renderer", tmpl);
    }
    free(m);
    if (rc == 0 && b.oom) rc = vm_err("chat: out of memory rendering %s", vm_chat_name(tmpl));
    if (rc == 0 && b.n > INT_MAX) rc = vm_err("chat: rendered text longer than INT_MAX bytes");
    if (rc) { free(b.p); return -1; }
    *out = b.p;
    return (int)b.n;
}

int vm_chat_render(int tmpl, const vm_chat_msg *msgs, int n, int add_generation_prompt, char **out) {
    return vm_chat_render_ex(tmpl, msgs, n, add_generation_prompt, NULL, out);
}

// ---- choosing a template for a model ----

int vm_chat_pick(const char *name, const char *gguf_tmpl, char *note, size_t note_size) {
    if (note && note_size) note[0] = 0;
    if (name) return vm_chat_template_from_name(name);
    if (!gguf_tmpl) {
        if (note && note_size)
            snprintf(note, note_size, "the model has no chat template (tokenizer.chat_template): the prompt is used as it is");
        return VM_CHAT_NONE;
    }
    int id = vm_chat_detect(gguf_tmpl);
    if (id < 0) {
        // show the start of the template so the user can tell which family it is
        char head[61];
        size_t k = 0;
        for (const char *s = gguf_tmpl; *s && k < sizeof head - 1; s++) head[k++] = (*s == '\n' || *s == '\r') ? ' ' : *s;
        head[k] = 0;
        return vm_err("chat: the model's chat template is not one vmoer knows (it begins \"%s%s\"); "
                      "choose one with --chat-template NAME (%s)", head, gguf_tmpl[k] ? "..." : "", vm_chat_names());
    }
    return id;
}

int vm_chat_pick_gguf(const vm_gguf *g, const char *name, char *note, size_t note_size) {
    if (note && note_size) note[0] = 0;
    if (name) return vm_chat_pick(name, NULL, note, note_size);
    if (!g) return vm_err("chat: no model (vm_chat_pick_gguf)");
    char *t = NULL;
    int r = vm_gguf_get_str(g, "tokenizer.chat_template", &t);
    if (r < 0) return vm_err_prefix("chat: tokenizer.chat_template");
    int id = vm_chat_pick(NULL, r == 0 ? t : NULL, note, note_size);
    free(t);
    return id;
}

// '<|im_start|>system\n' + LITERAL + '<|im_end|>' inside a quoted Jinja string. "\n" may appear as
// the two characters backslash-n (as in tokenizer_config.json's template source) or a newline.
char *vm_chat_default_system(const char *t) {
    if (!t) return NULL;
    static const char *const heads[] = {"<|im_start|>system\\n", "<|im_start|>system\n"};
    for (int h = 0; h < 2; h++) {
        for (const char *s = strstr(t, heads[h]); s; s = strstr(s + 1, heads[h])) {
            const char *a = s + strlen(heads[h]);
            const char *e = strstr(a, "<|im_end|>");
            if (!e || e == a) continue;
            // a literal only: no quote, brace or concatenation that would make it an expression
            int literal = 1;
            for (const char *p = a; p < e; p++)
                if (*p == '\'' || *p == '"' || *p == '{' || *p == '}' || *p == '+') { literal = 0; break; }
            if (!literal) continue;
            sbuf b = {0};
            for (const char *p = a; p < e; p++) {
                if (p[0] == '\\' && p + 1 < e) {         // Jinja string escapes
                    char c = p[1] == 'n' ? '\n' : p[1] == 't' ? '\t' : p[1];
                    put_n(&b, &c, 1);
                    p++;
                } else {
                    put_n(&b, p, 1);
                }
            }
            if (b.oom) { free(b.p); vm_err("chat: out of memory"); return NULL; }
            return b.p;
        }
    }
    return NULL;
}

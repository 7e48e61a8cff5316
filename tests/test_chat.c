// Chat templates: every family rendered on one conversation (system + user + assistant + user) with
// and without the generation prompt, against strings written from the published formats (source
// named at each); recognition on minimal template strings carrying each family's markers; errors.
#include "test.h"
#include "tokenizer/chat.h"
#include "util/err.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// <｜User｜> <｜Assistant｜> <｜end▁of▁sentence｜> (fullwidth vertical bars, U+2581)
#define U_ "<\xEF\xBD\x9CUser\xEF\xBD\x9C>"
#define A_ "<\xEF\xBD\x9C" "Assistant\xEF\xBD\x9C>"
#define EOS_ "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>"

static const vm_chat_msg CONV[] = {
    {"system", "You are a quiz bot."},
    {"user", "Hello"},
    {"assistant", "Hi there"},
    {"user", "What is 2+2?"},
};

static void check_render(int tmpl, const vm_chat_msg *m, int n, int gen, const vm_chat_opts *o, const char *want, const char *what) {
    char *out = NULL;
    int len = vm_chat_render_ex(tmpl, m, n, gen, o, &out);
    CHECK(len >= 0, "%s: render failed: %s", what, vm_errmsg());
    if (len < 0) return;
    CHECK(out && (size_t)len == strlen(out), "%s: length %d vs strlen", what, len);
    CHECK(out && !strcmp(out, want), "%s:\n  got  [%s]\n  want [%s]", what, out ? out : "(null)", want);
    free(out);
}

// One family: the same expected text with and without the generation prompt appended.
static void family(int tmpl, const char *body, const char *gen_prompt) {
    char what[64], *want = malloc(strlen(body) + strlen(gen_prompt) + 1);
    strcpy(want, body); strcat(want, gen_prompt);
    snprintf(what, sizeof what, "%s gen=1", vm_chat_name(tmpl));
    check_render(tmpl, CONV, 4, 1, NULL, want, what);
    snprintf(what, sizeof what, "%s gen=0", vm_chat_name(tmpl));
    check_render(tmpl, CONV, 4, 0, NULL, body, what);
    free(want);
}

static void test_families(void) {
    // none: the contents as they are
    family(VM_CHAT_NONE, "You are a quiz bot.HelloHi thereWhat is 2+2?", "");

    // Llama 2 chat: Hugging Face blog "Llama 2 is here - get it on Hugging Face", section "How to
    // prompt Llama 2" (multi-turn form), without the leading <s> that the tokenizer adds.
    family(VM_CHAT_LLAMA2,
           "[INST] <<SYS>>\nYou are a quiz bot.\n<</SYS>>\n\nHello [/INST] Hi there </s><s>[INST] What is 2+2? [/INST]", "");

    // Mixtral-8x7B-Instruct-v0.1 model card (first release): "<s> [INST] Instruction [/INST] Model
    // answer</s> [INST] Follow-up instruction [/INST]" as its template wrote it ('[INST] ' + U + ' [/INST]',
    // answer + eos, no spaces between turns); the system text goes first in the first turn.
    family(VM_CHAT_MISTRAL_LEGACY,
           "[INST] You are a quiz bot.\n\nHello [/INST]Hi there</s>[INST] What is 2+2? [/INST]", "");

    // Mistral cookbook (concept-deep-dive/tokenization, "v1"), Mixtral-8x7B-Instruct-v0.1's official
    // template: <s> [INST] S\n\nU [/INST] A</s> [INST] U2 [/INST]
    family(VM_CHAT_MISTRAL_V1,
           " [INST] You are a quiz bot.\n\nHello [/INST] Hi there</s> [INST] What is 2+2? [/INST]", "");

    // Mistral cookbook "v3" (Mixtral-8x22B-Instruct-v0.1, Mistral-7B-Instruct-v0.3):
    // <s>[INST] U[/INST] A</s>[INST] S\n\nU2[/INST] (system on the last user message)
    family(VM_CHAT_MISTRAL_V3,
           "[INST] Hello[/INST] Hi there</s>[INST] You are a quiz bot.\n\nWhat is 2+2?[/INST]", "");

    // ChatML as in the Qwen1.5-MoE-A2.7B-Chat / Qwen2 model cards (apply_chat_template output)
    const char *chatml =
        "<|im_start|>system\nYou are a quiz bot.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
        "<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n";
    family(VM_CHAT_CHATML, chatml, "<|im_start|>assistant\n");
    // Qwen3 model card: same turns; enable_thinking=False adds an empty think block to the prompt
    family(VM_CHAT_QWEN3, chatml, "<|im_start|>assistant\n");
    family(VM_CHAT_QWEN3_NOTHINK, chatml, "<|im_start|>assistant\n<think>\n\n</think>\n\n");

    // Granite 3.x model cards / tokenizer_config.json chat_template
    family(VM_CHAT_GRANITE,
           "<|start_of_role|>system<|end_of_role|>You are a quiz bot.<|end_of_text|>\n"
           "<|start_of_role|>user<|end_of_role|>Hello<|end_of_text|>\n"
           "<|start_of_role|>assistant<|end_of_role|>Hi there<|end_of_text|>\n"
           "<|start_of_role|>user<|end_of_role|>What is 2+2?<|end_of_text|>\n",
           "<|start_of_role|>assistant<|end_of_role|>");

    // deepseek-moe-16b-chat model card: "User: {m0}\n\nAssistant: {m1}<｜end▁of▁sentence｜>User: {m2}\n\nAssistant:"
    // with a system message first as "S\n\n" (deepseek-llm-7b-chat tokenizer_config.json)
    family(VM_CHAT_DEEPSEEK,
           "You are a quiz bot.\n\nUser: Hello\n\nAssistant: Hi there" EOS_ "User: What is 2+2?\n\n", "Assistant:");

    // DeepSeek-V3 tokenizer_config.json: bos + system, <｜User｜>U<｜Assistant｜>A<｜end▁of▁sentence｜>
    family(VM_CHAT_DEEPSEEK3,
           "You are a quiz bot." U_ "Hello" A_ "Hi there" EOS_ U_ "What is 2+2?", A_);

    // Tulu / OLMoE-Instruct (open-instruct tulu template; eos_token of OLMoE = <|endoftext|>)
    family(VM_CHAT_TULU,
           "<|system|>\nYou are a quiz bot.\n<|user|>\nHello\n<|assistant|>\nHi there<|endoftext|>\n"
           "<|user|>\nWhat is 2+2?\n", "<|assistant|>\n");
}

static void test_variants(void) {
    // Llama 2: content.strip() of user and answer texts (Meta's template), system inside the strip
    const vm_chat_msg ws[] = {{"system", "  S  "}, {"user", " U \n"}, {"assistant", "\tA "}};
    check_render(VM_CHAT_LLAMA2, ws, 3, 1, NULL, "[INST] <<SYS>>\n  S  \n<</SYS>>\n\n U [/INST] A </s>", "llama2 strip");
    const vm_chat_msg ws2[] = {{"user", "  U  "}};
    check_render(VM_CHAT_LLAMA2, ws2, 1, 1, NULL, "[INST] U [/INST]", "llama2 strip, no system");
    // Mistral v3 trims the answer, v1 does not
    const vm_chat_msg ua[] = {{"user", "U"}, {"assistant", " A "}};
    check_render(VM_CHAT_MISTRAL_V3, ua, 2, 1, NULL, "[INST] U[/INST] A</s>", "mistral-v3 trim");
    check_render(VM_CHAT_MISTRAL_V1, ua, 2, 1, NULL, " [INST] U [/INST]  A </s>", "mistral-v1 no trim");
    // v3 puts the system text only on a last user message
    const vm_chat_msg sua[] = {{"system", "S"}, {"user", "U"}, {"assistant", "A"}};
    check_render(VM_CHAT_MISTRAL_V3, sua, 3, 1, NULL, "[INST] U[/INST] A</s>", "mistral-v3 system dropped");

    // the evaluation prompt of method.md 5.1 as one system + one user message, Qwen (chatml)
    const vm_chat_msg mc[] = {{"system", "You are a multiple-choice quiz answer generator."},
                              {"user", "Question: q\nChoices:\nA. a\nB. b\nAnswer:"}};
    check_render(VM_CHAT_CHATML, mc, 2, 1, NULL,
                 "<|im_start|>system\nYou are a multiple-choice quiz answer generator.<|im_end|>\n"
                 "<|im_start|>user\nQuestion: q\nChoices:\nA. a\nB. b\nAnswer:<|im_end|>\n<|im_start|>assistant\n",
                 "mcqa chatml");

    // Qwen3: earlier answers lose their reasoning; the last assistant turn (after the last query)
    // gets a think block, empty when it has none
    const vm_chat_msg q3[] = {{"user", "Q1"}, {"assistant", "<think>\nr1\n</think>\n\nA1"}, {"user", "Q2"},
                              {"assistant", "\nA2"}};
    check_render(VM_CHAT_QWEN3, q3, 4, 0, NULL,
                 "<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n<|im_start|>user\nQ2<|im_end|>\n"
                 "<|im_start|>assistant\n<think>\n\n</think>\n\nA2<|im_end|>\n", "qwen3 think rules");
    const vm_chat_msg q3b[] = {{"user", "Q"}, {"assistant", "<think>\n\nmy reasoning\n\n</think>\n\nA"}};
    check_render(VM_CHAT_QWEN3, q3b, 2, 0, NULL,
                 "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n<think>\nmy reasoning\n</think>\n\nA<|im_end|>\n",
                 "qwen3 keeps last reasoning");

    // opts: the model's own bos/eos texts and a default system message
    vm_chat_opts o = {"<B>", "<E>", NULL};
    check_render(VM_CHAT_LLAMA2, CONV + 1, 3, 1, &o, "[INST] Hello [/INST] Hi there <E><B>[INST] What is 2+2? [/INST]", "llama2 opts");
    check_render(VM_CHAT_TULU, CONV + 1, 3, 1, &o, "<|user|>\nHello\n<|assistant|>\nHi there<E>\n<|user|>\nWhat is 2+2?\n<|assistant|>\n", "tulu eos");
    vm_chat_opts ds = {NULL, NULL, "Default."};
    const vm_chat_msg u[] = {{"user", "Hi"}};
    check_render(VM_CHAT_CHATML, u, 1, 1, &ds,
                 "<|im_start|>system\nDefault.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", "default system");
    check_render(VM_CHAT_CHATML, CONV, 2, 0, &ds,
                 "<|im_start|>system\nYou are a quiz bot.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n", "default system unused");

    // the default system message a Qwen1.5/Qwen2 template carries
    char *d = vm_chat_default_system("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                                     "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}");
    CHECK(d && !strcmp(d, "You are a helpful assistant."), "default system: %s", d ? d : "(null)");
    free(d);
    d = vm_chat_default_system("{{'<|im_start|>system\\n' + message['content'] + '<|im_end|>'}}");
    CHECK(d == NULL, "an expression is not a default system message");
    free(d);
    CHECK(vm_chat_default_system(NULL) == NULL, "NULL template");
}

static void test_detect(void) {
    static const struct { const char *tmpl; int want; } cases[] = {
        // Qwen1.5/Qwen2
        {"{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a "
         "helpful assistant<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
         "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}", VM_CHAT_CHATML},
        // Qwen3
        {"{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}{{- '<|im_start|>' + "
         "message.role + '\\n<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n' }}{%- if enable_thinking is "
         "defined and enable_thinking is false %}", VM_CHAT_QWEN3},
        // Llama 2 chat (Meta)
        {"{% if messages[0]['role'] == 'system' %}{% set system_message = messages[0]['content'] %}{% endif %}{% if loop.index0 == 0 "
         "and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
         "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}", VM_CHAT_LLAMA2},
        // Mixtral-8x7B-Instruct first release
        {"{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
         "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% endif %}{% endfor %}", VM_CHAT_MISTRAL_LEGACY},
        // Mixtral-8x7B-Instruct v1 official
        {"{%- if loop.first and system_message is defined %}{{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}",
         VM_CHAT_MISTRAL_V1},
        // Mixtral-8x22B-Instruct (v3 with tools) and Mistral-7B-v0.3
        {"{%- if tools is not none %}{{- \"[AVAILABLE_TOOLS] [\" }}{%- endif %}{{- \"[INST] \" + message[\"content\"] + \"[/INST]\" }}",
         VM_CHAT_MISTRAL_V3},
        {"{%- if loop.last and system_message is defined %}{{- '[INST] ' + system_message + '\\n\\n' + message['content'] + '[/INST]' }}",
         VM_CHAT_MISTRAL_V3},
        // Granite 3.x
        {"{%- for message in messages %}{{- '<|start_of_role|>' + message['role'] + '<|end_of_role|>' + message['content'] + "
         "'<|end_of_text|>\\n' }}{%- endfor %}", VM_CHAT_GRANITE},
        // deepseek-llm / DeepSeek-MoE / DeepSeek-V2 chat
        {"{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ 'User: ' + message['content'] + '\\n\\n' }}"
         "{% elif message['role'] == 'assistant' %}{{ 'Assistant: ' + message['content'] + eos_token }}{% endif %}{% endfor %}"
         "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}", VM_CHAT_DEEPSEEK},
        // DeepSeek-V3
        {"{{ bos_token }}{{ ns.system_prompt }}{%- if message['role'] == 'user' %}{{'" U_ "' + message['content']}}{%- endif %}"
         "{{'" A_ "' + message['content'] + '" EOS_ "'}}", VM_CHAT_DEEPSEEK3},
        // OLMoE-Instruct / Tulu
        {"{{ bos_token }}{% for message in messages %}{% if message['role'] == 'system' %}{{ '<|system|>\\n' + message['content'] + '\\n' }}"
         "{% elif message['role'] == 'user' %}{{ '<|user|>\\n' + message['content'] + '\\n' }}{% elif message['role'] == 'assistant' %}"
         "{{ '<|assistant|>\\n'  + message['content'] + eos_token }}{% endif %}", VM_CHAT_TULU},
        // names stored in place of a template
        {"chatml", VM_CHAT_CHATML}, {"deepseek2", VM_CHAT_DEEPSEEK}, {"olmoe", VM_CHAT_TULU},
        // not ours: Llama 3, Phi-3, Zephyr, Gemma, Mistral v7, Phi-4, Command-R, nothing
        {"{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}", -1},
        {"{{'<|user|>' + '\\n' + message['content'] + '<|end|>' + '\\n' + '<|assistant|>' + '\\n'}}", -1},
        {"{{ '<|user|>\\n' + message['content'] + eos_token }}{{ '<|assistant|>\\n'  + message['content'] + eos_token }}", -1},
        {"{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}", -1},
        {"{{- '[SYSTEM_PROMPT]' + system_message + '[/SYSTEM_PROMPT]' }}{{- '[INST]' + message['content'] + '[/INST]' }}", -1},
        {"{{'<|im_start|>' + message['role'] + '<|im_sep|>' + message['content'] + '<|im_end|>'}}", -1},
        {"<|START_OF_TURN_TOKEN|><|USER_TOKEN|>", -1},
        {"", -1}, {"hello world", -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int got = vm_chat_detect(cases[i].tmpl);
        CHECK(got == cases[i].want, "detect case %zu: got %s (%d), want %s (%d)", i, vm_chat_name(got), got,
              vm_chat_name(cases[i].want), cases[i].want);
    }
    CHECK(vm_chat_detect(NULL) == -1, "detect NULL");
}

static void test_names_and_pick(void) {
    for (int i = 0; i < VM_CHAT_COUNT; i++) {
        CHECK(vm_chat_template_from_name(vm_chat_name(i)) == i, "name round trip %d", i);
        CHECK(strstr(vm_chat_names(), vm_chat_name(i)) != NULL, "names lists %s", vm_chat_name(i));
    }
    CHECK(vm_chat_template_from_name("mistral") == VM_CHAT_MISTRAL_V1, "alias mistral");
    CHECK(vm_chat_template_from_name("qwen") == VM_CHAT_CHATML, "alias qwen");
    CHECK(!strcmp(vm_chat_name(-1), "?") && !strcmp(vm_chat_name(VM_CHAT_COUNT), "?"), "bad id name");
    vm_err_clear();
    CHECK(vm_chat_template_from_name("jinja") == -1, "unknown name");
    CHECK(strstr(vm_errmsg(), "jinja") && strstr(vm_errmsg(), "granite"), "error names it and lists names: %s", vm_errmsg());
    CHECK(vm_chat_template_from_name(NULL) == -1, "NULL name");

    char note[256];
    const char *qwen = "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>'}}";
    CHECK(vm_chat_pick(NULL, qwen, note, sizeof note) == VM_CHAT_CHATML && !note[0], "pick detects");
    CHECK(vm_chat_pick("granite", qwen, note, sizeof note) == VM_CHAT_GRANITE, "explicit name wins");
    CHECK(vm_chat_pick("none", qwen, note, sizeof note) == VM_CHAT_NONE, "explicit none wins");
    CHECK(vm_chat_pick(NULL, NULL, note, sizeof note) == VM_CHAT_NONE && strstr(note, "no chat template"), "no template -> none + note");
    vm_err_clear();
    CHECK(vm_chat_pick(NULL, "{{ '<|start_header_id|>' }}\n{{ x }}", note, sizeof note) == -1, "unrecognised -> error");
    CHECK(strstr(vm_errmsg(), "not one vmoer knows") && strstr(vm_errmsg(), "<|start_header_id|>") && !strchr(vm_errmsg(), '\n'),
          "error says so on one line: %s", vm_errmsg());
    CHECK(vm_chat_pick(NULL, "x", NULL, 0) == -1, "NULL note ok");
    CHECK(vm_chat_pick("bogus", NULL, note, sizeof note) == -1, "bad explicit name");

    // real vocabularies: Phi-3 carries a template that is not ours; llama-spm has none
    char path[512];
    snprintf(path, sizeof path, "%s/tokenizers/ggml-vocab-phi-3.gguf", test_shared_dir());
    vm_gguf *g = vm_gguf_open(path);
    if (g) {
        vm_err_clear();
        CHECK(vm_chat_pick_gguf(g, NULL, note, sizeof note) == -1, "phi-3 template is not recognised");
        CHECK(strstr(vm_errmsg(), "not one vmoer knows"), "phi-3 message: %s", vm_errmsg());
        CHECK(vm_chat_pick_gguf(g, "chatml", note, sizeof note) == VM_CHAT_CHATML, "phi-3 with an explicit name");
        vm_gguf_free(g);
    } else {
        printf("skip: %s not found\n", path);
    }
    snprintf(path, sizeof path, "%s/tokenizers/ggml-vocab-llama-spm.gguf", test_shared_dir());
    if ((g = vm_gguf_open(path))) {
        CHECK(vm_chat_pick_gguf(g, NULL, note, sizeof note) == VM_CHAT_NONE && note[0], "llama-spm: none with a note");
        vm_gguf_free(g);
    } else {
        printf("skip: %s not found\n", path);
    }
    CHECK(vm_chat_pick_gguf(NULL, NULL, note, sizeof note) == -1, "NULL gguf");

    // GGUFs written here: a Qwen-style template, a Llama-3 one, and a key of the wrong type
    static const struct { const char *tmpl; int want; } gg[] = {
        {"{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>'}}", VM_CHAT_CHATML},
        {"{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>' }}", -1},
        {NULL, -1},
    };
    for (int k = 0; k < 3; k++) {
        char tmp[] = "/tmp/vmoer_test_chat_XXXXXX";
        int fd = mkstemp(tmp);
        if (fd < 0) { CHECK(0, "mkstemp"); continue; }
        close(fd);
        vm_gguf_writer *w = vm_gguf_writer_init();
        if (gg[k].tmpl) vm_gguf_set_str(w, "tokenizer.chat_template", gg[k].tmpl);
        else vm_gguf_set_u32(w, "tokenizer.chat_template", 7);
        CHECK(vm_gguf_write(w, tmp) == 0, "write gguf: %s", vm_errmsg());
        vm_gguf_writer_free(w);
        if ((g = vm_gguf_open(tmp))) {
            vm_err_clear();
            int id = vm_chat_pick_gguf(g, NULL, note, sizeof note);
            CHECK(id == gg[k].want, "gguf case %d: %d (%s)", k, id, vm_errmsg());
            if (id < 0) CHECK(strstr(vm_errmsg(), "chat") != NULL, "gguf case %d names the problem: %s", k, vm_errmsg());
            vm_gguf_free(g);
        } else {
            CHECK(0, "open written gguf: %s", vm_errmsg());
        }
        remove(tmp);
    }
}

static void test_edges(void) {
    char *out = (char *)1;
    // NULL and empty contents render as empty text
    const vm_chat_msg nul[] = {{"system", NULL}, {"user", ""}};
    check_render(VM_CHAT_CHATML, nul, 2, 1, NULL,
                 "<|im_start|>system\n<|im_end|>\n<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n", "NULL/empty chatml");
    for (int t = 0; t < VM_CHAT_COUNT; t++) {
        int n = vm_chat_render(t, nul, 2, 1, &out);
        CHECK(n >= 0 && out, "NULL/empty content renders in %s: %s", vm_chat_name(t), vm_errmsg());
        free(out);
        n = vm_chat_render(t, NULL, 0, 1, &out);     // no messages
        CHECK(n >= 0 && out && (size_t)n == strlen(out), "empty conversation in %s", vm_chat_name(t));
        free(out);
    }
    check_render(VM_CHAT_NONE, nul, 2, 1, NULL, "", "none of empties");

    // errors
    const vm_chat_msg norole[] = {{NULL, "x"}};
    CHECK(vm_chat_render(VM_CHAT_CHATML, norole, 1, 1, &out) == -1 && out == NULL, "NULL role");
    CHECK(vm_chat_render(VM_CHAT_CHATML, NULL, 2, 1, &out) == -1, "NULL list with n > 0");
    CHECK(vm_chat_render(VM_CHAT_CHATML, CONV, -1, 1, &out) == -1, "n < 0");
    CHECK(vm_chat_render(VM_CHAT_COUNT, CONV, 1, 1, &out) == -1, "bad id");
    CHECK(vm_chat_render(-1, CONV, 1, 1, &out) == -1, "negative id");
    CHECK(vm_chat_render(VM_CHAT_CHATML, CONV, 1, 1, NULL) == -1, "NULL out");
    const vm_chat_msg tool[] = {{"tool", "x"}};
    CHECK(vm_chat_render(VM_CHAT_GRANITE, tool, 1, 1, &out) == -1 && strstr(vm_errmsg(), "tool"), "granite: bad role");
    CHECK(vm_chat_render(VM_CHAT_DEEPSEEK, tool, 1, 1, &out) == -1, "deepseek: bad role");
    check_render(VM_CHAT_CHATML, tool, 1, 0, NULL, "<|im_start|>tool\nx<|im_end|>\n", "chatml passes any role");
    const vm_chat_msg uu[] = {{"user", "a"}, {"user", "b"}};
    const vm_chat_msg au[] = {{"assistant", "a"}, {"user", "b"}};
    const vm_chat_msg sus[] = {{"system", "s"}, {"user", "b"}, {"system", "t"}};
    for (int t = VM_CHAT_LLAMA2; t <= VM_CHAT_MISTRAL_V3; t++) {
        CHECK(vm_chat_render(t, uu, 2, 1, &out) == -1 && strstr(vm_errmsg(), "alternating"), "%s: user user", vm_chat_name(t));
        CHECK(vm_chat_render(t, au, 2, 1, &out) == -1, "%s: starts with assistant", vm_chat_name(t));
        CHECK(vm_chat_render(t, sus, 3, 1, &out) == -1, "%s: second system", vm_chat_name(t));
    }

    // very long content: 4 MiB of text survives intact
    size_t big = (size_t)4 << 20;
    char *txt = malloc(big + 1);
    for (size_t i = 0; i < big; i++) txt[i] = (char)('a' + i % 26);
    txt[big] = 0;
    const vm_chat_msg lm[] = {{"system", txt}, {"user", txt}};
    for (int t = 0; t < VM_CHAT_COUNT; t++) {
        int n = vm_chat_render(t, lm, 2, 1, &out);
        CHECK(n > 0 && (size_t)n >= 2 * big && (size_t)n < 2 * big + 200, "%s long: %d", vm_chat_name(t), n);
        CHECK(n > 0 && strstr(out, txt) != NULL, "%s long: content intact", vm_chat_name(t));
        free(out);
    }
    free(txt);
}

int main(void) {
    test_families();
    test_variants();
    test_detect();
    test_names_and_pick();
    test_edges();
    return TEST_SUMMARY();
}

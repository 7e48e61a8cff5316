// Chat templates: built-in C renderers for the chat formats of the model families vmoer runs
// (no Jinja engine), recognised from the GGUF's tokenizer.chat_template by distinctive markers.
//
// Families (name -> format; the source each follows is named in chat.c):
//   none            the message contents concatenated as they are (one user message = its text)
//   llama2          Llama-2-chat: [INST] <<SYS>>\nS\n<</SYS>>\n\nU [/INST] A </s><s>[INST] U2 [/INST]
//   mistral-legacy  first Mixtral-8x7B / Mistral-7B-v0.1 template: [INST] U [/INST]A</s>[INST] U2 [/INST]
//                   (no system role: a system message is folded into the first turn as "S\n\nU")
//   mistral-v1      (alias "mistral") Mixtral-8x7B-Instruct-v0.1 / Mistral-7B v0.2 official template:
//                    [INST] S\n\nU [/INST] A</s> [INST] U2 [/INST]
//   mistral-v3      Mixtral-8x22B-Instruct-v0.1 / Mistral-7B v0.3: [INST] U[/INST] A</s>[INST] S\n\nU2[/INST]
//                   (system folded into the LAST user turn, assistant text trimmed)
//   chatml          (alias "qwen") Qwen1.5/Qwen2 and other ChatML: <|im_start|>role\nC<|im_end|>\n
//   qwen3           Qwen3 (thinking mode, the template's default): ChatML + Qwen3's <think> rules
//   qwen3-nothink   Qwen3 with enable_thinking=false: generation prompt ends "<think>\n\n</think>\n\n"
//                   (never detected; ask for it by name, e.g. to score an answer letter directly)
//   granite         Granite 3.x: <|start_of_role|>role<|end_of_role|>C<|end_of_text|>\n
//   deepseek        (alias "deepseek2") deepseek-llm / DeepSeek-MoE / DeepSeek-V2(-Lite)-Chat:
//                   S\n\nUser: U\n\nAssistant: A<eos>User: U2\n\nAssistant:
//   deepseek3       DeepSeek-V2.5 / V3: S<｜User｜>U<｜Assistant｜>A<｜end▁of▁sentence｜><｜User｜>U2<｜Assistant｜>
//   tulu            (alias "olmoe") OLMoE-Instruct / Tulu: <|system|>\nS\n<|user|>\nU\n<|assistant|>\nA<eos>\n
//
// BOS: a rendered text NEVER begins with BOS, for every family. The tokenizer adds it when the
// vocabulary says so (vm_tokenize(add_bos=1) follows tokenizer.ggml.add_bos_token), which is what the
// templates' leading {{ bos_token }} stands for; families whose templates have no BOS (chatml, qwen3,
// granite) rely on vocabularies that do not add one. BOS/EOS texts INSIDE the history (llama2's
// "</s><s>", mistral's "</s>", deepseek's and tulu's eos_token after an assistant turn) are written as
// text: tokenize rendered text with parse_special=1 so that they, and the role markers, become
// their special tokens.
//
// Not reproduced: default system messages that a template inserts when the conversation has none
// (Qwen1.5/2 "You are a helpful assistant"; Granite 3.1's dated one) unless the caller passes
// vm_chat_opts.default_system (vm_chat_default_system() extracts a literal one from a template);
// tool calls and other roles beyond system/user/assistant (chatml passes any role through).
#pragma once
#include <stddef.h>
#include "gguf/gguf.h"

typedef enum vm_chat_tmpl {
    VM_CHAT_NONE = 0,
    VM_CHAT_LLAMA2,
    VM_CHAT_MISTRAL_LEGACY,
    VM_CHAT_MISTRAL_V1,
    VM_CHAT_MISTRAL_V3,
    VM_CHAT_CHATML,
    VM_CHAT_QWEN3,
    VM_CHAT_QWEN3_NOTHINK,
    VM_CHAT_GRANITE,
    VM_CHAT_DEEPSEEK,
    VM_CHAT_DEEPSEEK3,
    VM_CHAT_TULU,
    VM_CHAT_COUNT
} vm_chat_tmpl;

typedef struct vm_chat_msg { const char *role, *content; } vm_chat_msg;

// Texts the template's bos_token / eos_token stand for (the model's tokens: vm_tokenizer_text of
// vm_tokenizer_bos/eos), and a system message used when the conversation starts without one.
// NULL fields (or a NULL opts) mean the family's usual token text and no default system message.
typedef struct vm_chat_opts {
    const char *bos, *eos;
    const char *default_system;
} vm_chat_opts;

// Template id recognised from a GGUF tokenizer.chat_template string (or a template name), or -1 when
// not recognised (no error recorded: the caller decides how to say so).
int vm_chat_detect(const char *tmpl);
// Template id for a name (aliases accepted), or -1 with an error listing the names.
int vm_chat_template_from_name(const char *name);
// Canonical name of an id ("?" when out of range).
const char *vm_chat_name(int tmpl);
// The canonical names, comma-separated, for messages and --help.
const char *vm_chat_names(void);

// Renders n messages (roles "system", "user", "assistant"); add_generation_prompt appends the
// assistant turn header. *out is malloc'd and NUL-terminated. NULL content = empty text. Returns the
// length, or -1 with an error (bad role, roles out of the order the template requires, bad id).
int vm_chat_render(int tmpl, const vm_chat_msg *msgs, int n, int add_generation_prompt, char **out);
int vm_chat_render_ex(int tmpl, const vm_chat_msg *msgs, int n, int add_generation_prompt,
                      const vm_chat_opts *opts, char **out);

// Picks the template for a model: an explicit name (not NULL) wins ("none" included); otherwise the
// GGUF template string gguf_tmpl is detected. A template that is not recognised -> -1 with an error
// saying so (never replaced by another); no template at all (gguf_tmpl NULL) -> VM_CHAT_NONE and a
// one-line note in note[note_size] (note is "" otherwise; note may be NULL).
int vm_chat_pick(const char *name, const char *gguf_tmpl, char *note, size_t note_size);
// Same with the template read from the GGUF key tokenizer.chat_template.
int vm_chat_pick_gguf(const vm_gguf *g, const char *name, char *note, size_t note_size);

// The literal system message a ChatML template inserts when the conversation has none
// ('<|im_start|>system\n...<|im_end|>' inside the template, as Qwen1.5/Qwen2), malloc'd; NULL when
// the template has none (or it is not a plain literal).
char *vm_chat_default_system(const char *gguf_tmpl);

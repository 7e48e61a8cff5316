// JSON of the generation read-outs (gen.h), shared by `vmoer run --jsonl`, `vmoer logits
// --uncertainty` and `vmoer serve`, so every interface spells the fields the same way.
//
// A token record:  {"token": id, "text": piece, "prob": p, "nll", "entropy", <router scores>,
//                   "layers": {"<score>": [one value per read-out layer]}}
// Router scores appear only when available with the model's routers (vm_gen_available); a value
// that is not finite is null. Floats are float32 written with the fewest digits that read back
// to the same float32.
// A summary:       {"n_tokens": n, "<score>": {"mean": m, "max": x}, ...} over the emitted tokens.
#pragma once
#include <jansson.h>
#include "gen/gen.h"

// The float32 x as a JSON real (shortest round-trip digits), or null when not finite.
json_t *vm_json_f32(float x);
// Dumps with the precision vm_json_f32 relies on; malloc'd, NULL on failure.
char *vm_json_dump(const json_t *j);
// Text of a token: its piece with invalid UTF-8 (a lone byte token) replaced by U+FFFD; control
// tokens (empty piece) by their vocabulary text.
json_t *vm_json_piece(const vm_tokenizer *tok, int32_t id);
// layers: 1 adds "layers", the read-outs of every read-out layer.
json_t *vm_gen_tok_json(const vm_gen *g, const vm_tokenizer *tok, const vm_gen_tok *t, int layers);
json_t *vm_gen_summary_json(const vm_gen *g, const vm_gen_summary *s);
// {"router": kind or "mixed", "readout_layers": [..], "scores": [available score names]}
json_t *vm_gen_info_json(const vm_gen *g);
// The UTF-8 text of n bytes with every invalid sequence replaced by U+FFFD (malloc'd, NUL-terminated).
char *vm_utf8_repair(const char *s, size_t n, size_t *out_len);

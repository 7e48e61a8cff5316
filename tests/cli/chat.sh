#!/bin/sh
# vmoer run --chat-template: the prompt rendered as one user message (built-in names, auto = the
# model's template, none = the raw prompt as before); an unknown name is a one-line error.
# Run from the repository root; $VMOER is the binary, $VMOER_SHARED the shared data folder.
VMOER=${VMOER:-build/vmoer}
SHARED=${VMOER_SHARED:-../shared}
T=$(mktemp -d "${TMPDIR:-/tmp}/vmoer_chat.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
ntok() { sed -n 's/^vmoer run: prompt \([0-9]*\) tokens.*/\1/p' "$1"; }

M=$T/s.gguf
"$VMOER" convert-llama2c "$SHARED/models/stories260K.bin" "$SHARED/models/tok512.bin" "$M" 2>"$T/e" && ok || bad "convert: $(cat "$T/e")"
P="Once upon a time"

# --help documents the option and its default
"$VMOER" run --help >"$T/h" 2>&1
grep -q -- "--chat-template" "$T/h" && grep -q "default none" "$T/h" && grep -q "granite" "$T/h" && ok || bad "--help"

# unknown name: exit 1, one line on stderr naming it and listing the names, nothing generated
"$VMOER" run "$M" -p "$P" --chat-template jinja -n 3 >"$T/o" 2>"$T/e"; rc=$?
if [ $rc -eq 1 ] && [ "$(wc -l <"$T/e")" -eq 1 ] && grep -q "^vmoer run: .*'jinja'.*chatml.*deepseek3" "$T/e" && [ ! -s "$T/o" ]; then ok
else bad "unknown name: exit $rc: $(cat "$T/e")"; fi
"$VMOER" run "$M" -p "$P" --chat-template >"$T/o" 2>"$T/e"; rc=$?
[ $rc -eq 1 ] && [ "$(wc -l <"$T/e")" -eq 1 ] && ok || bad "missing value: exit $rc"

# default = none = today's raw prompt
"$VMOER" run "$M" -p "$P" --temp 0 -n 12 >"$T/raw" 2>"$T/raw.e" || bad "raw run"
"$VMOER" run "$M" -p "$P" --temp 0 -n 12 --chat-template none >"$T/none" 2>"$T/none.e" || bad "none run"
cmp -s "$T/raw" "$T/none" && [ "$(ntok "$T/raw.e")" = "$(ntok "$T/none.e")" ] && ok || bad "none differs from the default"
head -c 16 "$T/raw" | grep -q "^$P" && ok || bad "raw output starts with the prompt"

# auto on a model without a template: the raw prompt, and a note saying why
"$VMOER" run "$M" -p "$P" --temp 0 -n 12 --chat-template auto >"$T/auto" 2>"$T/auto.e" || bad "auto run: $(cat "$T/auto.e")"
cmp -s "$T/raw" "$T/auto" && ok || bad "auto without a template differs from raw"
grep -q "note: .*no chat template" "$T/auto.e" && ok || bad "auto: no note: $(cat "$T/auto.e")"

# named templates: the printed prompt is the rendered one, and more tokens are evaluated
"$VMOER" run "$M" -p "$P" --temp 0 -n 4 --chat-template llama2 >"$T/l2" 2>"$T/l2.e" || bad "llama2 run: $(cat "$T/l2.e")"
head -c 32 "$T/l2" | grep -q "^\[INST\] $P \[/INST\]" && ok || bad "llama2 prompt: $(head -c 60 "$T/l2")"
[ "$(ntok "$T/l2.e")" -gt "$(ntok "$T/raw.e")" ] && ok || bad "llama2 prompt should have more tokens"
"$VMOER" run "$M" -p "$P" --temp 0 -n 4 --chat-template chatml >"$T/cm" 2>"$T/cm.e" || bad "chatml run: $(cat "$T/cm.e")"
printf '<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n' "$P" >"$T/cm.want"
head -c "$(wc -c <"$T/cm.want")" "$T/cm" | cmp -s - "$T/cm.want" && ok || bad "chatml prompt: $(head -c 80 "$T/cm")"
"$VMOER" run "$M" -p "$P" --temp 0 -n 4 --chat-template olmoe >"$T/tu" 2>"$T/tu.e" || bad "olmoe alias run"
printf '<|user|>\n%s\n<|assistant|>\n' "$P" >"$T/tu.want"
head -c "$(wc -c <"$T/tu.want")" "$T/tu" | cmp -s - "$T/tu.want" && ok || bad "olmoe prompt: $(head -c 80 "$T/tu")"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

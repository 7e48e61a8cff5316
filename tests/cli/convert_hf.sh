#!/bin/sh
# vmoer convert-hf end to end: the reference HF checkpoints of tests/golden/hf (written by
# tests/reference/hf_ref.py) convert, and `vmoer logits` on the result reproduces the reference
# logits (<= 1e-4); option and input errors exit 1 with one line.
VMOER=${VMOER:-build/vmoer}
GOLD=tests/golden/hf
IDS=1,17,42,5,63,0,29
pass=0; fail=0
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

# floats of a float32 .npy, one a line (header: 6 magic+version bytes, u16 length at offset 8)
npy_floats() {
    hl=$(od -A n -j 8 -N 2 -t u2 "$1" | tr -d ' ')
    od -A n -v -j $((10 + hl)) -t f4 "$1" | tr -s ' ' '\n' | sed '/^$/d'
}

# same_logits REF.npy GOT.npy: max |diff| <= 1e-4 over the same number of values
same_logits() {
    npy_floats "$1" >"$tmp/a"; npy_floats "$2" >"$tmp/b"
    [ -s "$tmp/a" ] && [ "$(wc -l <"$tmp/a")" -eq "$(wc -l <"$tmp/b")" ] &&
        paste "$tmp/a" "$tmp/b" | awk '{d = $1 - $2; if (d < 0) d = -d; if (d > m) m = d} END {exit !(m <= 1e-4)}'
}

# refuse PATTERN ARGS...: exit 1, one stderr line matching PATTERN, no output file
refuse() {
    pat=$1; shift
    "$VMOER" convert-hf "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?
    if [ $rc -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q -- "$pat" "$tmp/err" && [ ! -e "$tmp/bad.gguf" ]; then ok
    else bad "convert-hf $* -> exit $rc, stderr: $(cat "$tmp/err")"; fi
}

for m in llama:llama mixtral_sharded:mixtral mixtral_fused:mixtral; do
    dir=${m%%:*}; ref=${m##*:}
    if "$VMOER" convert-hf "$GOLD/$dir" "$tmp/$dir.gguf" --no-tokenizer 2>"$tmp/err" &&
       "$VMOER" logits "$tmp/$dir.gguf" --ids $IDS -o "$tmp/$dir.npy" 2>>"$tmp/err" &&
       same_logits "$GOLD/$ref.logits.npy" "$tmp/$dir.npy"; then ok
    else bad "$dir: convert + logits differ from the reference ($(cat "$tmp/err"))"; fi
done
"$VMOER" convert-hf --type q8_0 --name tiny --no-tokenizer "$GOLD/llama" "$tmp/q8.gguf" 2>"$tmp/err" &&
    "$VMOER" info "$tmp/q8.gguf" >"$tmp/info" 2>&1 && grep -q "q8_0" "$tmp/info" && grep -q "tiny" "$tmp/info" && ok ||
    bad "q8_0 conversion / info: $(cat "$tmp/err")"
"$VMOER" convert-hf --help | grep -q "usage: vmoer convert-hf" && ok || bad "--help"

refuse "no tokenizer.json" "$GOLD/llama" "$tmp/bad.gguf"
refuse "--type expects" "$GOLD/llama" "$tmp/bad.gguf" --type q4_0
refuse "unknown option" "$GOLD/llama" "$tmp/bad.gguf" --bogus
refuse "expected DIR OUT.gguf" "$GOLD/llama"
refuse "config.json" "$tmp/nowhere" "$tmp/bad.gguf" --no-tokenizer

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

#!/bin/sh
# deepseek2 end to end through the CLI (fixtures of tests/reference/deepseek2_ref.py): `vmoer info`
# names the architecture, `vmoer logits` reproduces the reference logits (<= 1e-4) for the V2-style
# model in both attention layouts and the V3-style model, and convert-hf of the reference's
# DeepseekV3ForCausalLM checkpoint + logits reproduces its logits. The fixtures have no tokenizer,
# so prompts are given as ids.
VMOER=${VMOER:-build/vmoer}
GOLD=tests/golden/deepseek2
pass=0; fail=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vmoer_ds2.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

# floats of a float32 .npy, one a line (header length: u16 at offset 8)
npy_floats() {
    hl=$(od -A n -j 8 -N 2 -t u2 "$1" | tr -d ' ')
    od -A n -v -j $((10 + hl)) -t f4 "$1" | tr -s ' ' '\n' | sed '/^$/d'
}
same_logits() {
    npy_floats "$1" >"$tmp/a"; npy_floats "$2" >"$tmp/b"
    [ -s "$tmp/a" ] && [ "$(wc -l <"$tmp/a")" -eq "$(wc -l <"$tmp/b")" ] &&
        paste "$tmp/a" "$tmp/b" | awk '{d = $1 - $2; if (d < 0) d = -d; if (d > m) m = d} END {exit !(m <= 1e-4)}'
}

# file:golden:ids (the ids are the reference's tokens of that golden)
for m in v2:v2:49,38,36,20,43,30,6,58,17,40 v2_legacy:v2:49,38,36,20,43,30,6,58,17,40 \
         v3:v3:46,27,50,8,62,4,2,15,12,54; do
    name=${m%%:*}; rest=${m#*:}; gold=${rest%%:*}; ids=${rest#*:}; f=$GOLD/$name.gguf
    "$VMOER" info "$f" >"$tmp/info" 2>&1 && grep -q "^architecture: *deepseek2\$" "$tmp/info" && ok ||
        bad "$name: info does not name deepseek2: $(head -3 "$tmp/info")"
    "$VMOER" logits "$f" --ids "$ids" -o "$tmp/$name.npy" 2>"$tmp/err" && same_logits "$GOLD/$gold.logits.npy" "$tmp/$name.npy" && ok ||
        bad "$name: logits differ from the reference ($(cat "$tmp/err"))"
    # a wrong token sequence must not match (the comparison can fail)
    "$VMOER" logits "$f" --ids 1,2,3,4,5,6,7,8,9,10 -o "$tmp/w.npy" 2>"$tmp/err" && ! same_logits "$GOLD/$gold.logits.npy" "$tmp/w.npy" && ok ||
        bad "$name: other tokens gave the reference logits"
done

if "$VMOER" convert-hf "$GOLD/hf_v3" "$tmp/hf_v3.gguf" --no-tokenizer 2>"$tmp/err" &&
   "$VMOER" info "$tmp/hf_v3.gguf" | grep -q "^architecture: *deepseek2\$" &&
   "$VMOER" logits "$tmp/hf_v3.gguf" --ids 13,5,9,13,9,8,1,7,15,21 -o "$tmp/hf.npy" 2>>"$tmp/err" &&
   same_logits "$GOLD/hf_v3.logits.npy" "$tmp/hf.npy"; then ok
else bad "convert-hf hf_v3: $(cat "$tmp/err")"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

#!/bin/sh
# The MoE families end to end through the CLI (fixtures of tests/reference/archs_ref.py):
# `vmoer info` names the architecture, `vmoer logits` reproduces the reference logits, greedy
# `vmoer run` generates, `vmoer trace` writes one line per token and MoE layer (deepseek's dense
# leading block has none), and convert-hf + logits round-trips qwen2moe and olmoe.
VMOER=${VMOER:-build/vmoer}
GOLD=tests/golden/archs
IDS=1,17,42,5,47,0,29,11,8
pass=0; fail=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vmoer_archs.XXXXXX") || exit 1
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

for m in granitemoe:granitemoe granitemoeshared:granitemoe qwen2moe:qwen2moe qwen3moe:qwen3moe \
         olmoe:olmoe olmoe_norm:olmoe deepseek:deepseek; do
    name=${m%%:*}; arch=${m##*:}; f=$GOLD/$name.gguf
    "$VMOER" info "$f" >"$tmp/info" 2>&1 && grep -q "^architecture: *$arch\$" "$tmp/info" && ok ||
        bad "$name: info does not name $arch: $(head -3 "$tmp/info")"
    "$VMOER" logits "$f" --ids $IDS -o "$tmp/$name.npy" 2>"$tmp/err" && same_logits "$GOLD/$name.logits.npy" "$tmp/$name.npy" && ok ||
        bad "$name: logits differ from the reference ($(cat "$tmp/err"))"
    "$VMOER" run "$f" -p "once upon a time" -n 4 --temp 0 >"$tmp/run" 2>"$tmp/err" && grep -q "^once upon a time" "$tmp/run" && ok ||
        bad "$name: run: $(cat "$tmp/err")"
    if "$VMOER" trace "$f" -p "the girl" -o "$tmp/t.jsonl" 2>"$tmp/err"; then
        # one line per token and MoE layer: layers 0, 1 (olmoe_norm: 0; deepseek: 1, 2)
        first=0; moe=2; [ "$name" = olmoe_norm ] && moe=1; [ "$name" = deepseek ] && first=1
        n=$(wc -l <"$tmp/t.jsonl"); np=$(grep -c "\"layer\":$first," "$tmp/t.jsonl")
        if [ "$np" -ge 3 ] && [ "$n" -eq $((np * moe)) ] && ! { [ "$name" = deepseek ] && grep -q '"layer":0,' "$tmp/t.jsonl"; }; then ok
        else bad "$name: trace has $n lines for $np tokens and $moe MoE layers"; fi
    else bad "$name: trace: $(cat "$tmp/err")"; fi
done

# HF checkpoints -> GGUF -> the reference logits
for name in qwen2moe olmoe; do
    if "$VMOER" convert-hf "$GOLD/hf_$name" "$tmp/hf_$name.gguf" --no-tokenizer 2>"$tmp/err" &&
       "$VMOER" info "$tmp/hf_$name.gguf" | grep -q "^architecture: *$name\$" &&
       "$VMOER" logits "$tmp/hf_$name.gguf" --ids $IDS -o "$tmp/hf_$name.npy" 2>>"$tmp/err" &&
       same_logits "$GOLD/$name.logits.npy" "$tmp/hf_$name.npy"; then ok
    else bad "convert-hf $name: $(cat "$tmp/err")"; fi
done

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

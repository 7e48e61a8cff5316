#!/bin/sh
# vmoer info on hostile GGUF files: each must exit 1 with one line "vmoer info: <file>: <problem>"
# on stderr, nothing on stdout, and no crash or sanitizer report. Fixtures come from
# tests/reference/make_gguf_fixtures.py; more are cut in a temp dir here (truncations, garbage).
VMOER=${VMOER:-build/vmoer}
SHARED=${VMOER_SHARED:-../shared}
D=tests/data/gguf
pass=0; fail=0
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

# expect_reject FILE WORDS: exit 1, single stderr line naming the file and containing WORDS, empty stdout.
expect_reject() {
    f=$1; want=$2
    "$VMOER" info "$f" >"$tmp/out" 2>"$tmp/err"; rc=$?
    lines=$(wc -l <"$tmp/err" | tr -d ' ')
    first=$(head -n 1 "$tmp/err")
    if [ "$rc" -ne 1 ]; then bad "$f: exit $rc, expected 1"; cat "$tmp/err" | head -5; return; fi
    if [ "$lines" -ne 1 ]; then bad "$f: $lines stderr lines"; head -5 "$tmp/err"; return; fi
    case "$first" in "vmoer info: $f: "*"$want"*) ok ;; *) bad "$f: message '$first' (want '$want')"; return ;; esac
    if [ -s "$tmp/out" ]; then bad "$f: wrote to stdout"; else ok; fi
    if grep -q -e "Sanitizer" -e "runtime error" "$tmp/err"; then bad "$f: sanitizer report"; else ok; fi
}

expect_reject "$D/bad_magic.gguf" "magic 'GGUX'"
expect_reject "$D/bad_version.gguf" "version 4"
expect_reject "$D/truncated.gguf" "cannot fit"
expect_reject "$D/huge_n_kv.gguf" "metadata count"
expect_reject "$D/huge_n_tensors.gguf" "tensor count"
expect_reject "$D/huge_array.gguf" "2^30 limit"
expect_reject "$D/huge_string.gguf" "exceeds"
expect_reject "$D/dup_key.gguf" "duplicate key 'llama.block_count'"
expect_reject "$D/dup_tensor.gguf" "duplicate tensor name 'a'"
expect_reject "$D/long_name.gguf" "limit is 63"
expect_reject "$D/ndims0.gguf" "n_dims 0"
expect_reject "$D/ndims5.gguf" "n_dims 5"
expect_reject "$D/negative_ne.gguf" "negative size"
expect_reject "$D/unknown_type.gguf" "unknown tensor type 41"
expect_reject "$D/unknown_value_type.gguf" "unknown value type 13"
expect_reject "$D/nested_array.gguf" "nested arrays"
expect_reject "$D/not_block_multiple.gguf" "block size 32"
expect_reject "$D/misaligned.gguf" "offset 72 not aligned to 32"
expect_reject "$D/out_of_range.gguf" "outside"
expect_reject "$D/overlap.gguf" "overlap"
expect_reject "$D/bad_alignment.gguf" "not a power of two"
expect_reject "$D/bool_2.gguf" "bool value 2"

# cut in the temp dir: truncations of the valid model at several points, an empty file, text, a folder
for n in 0 3 7 20 100 700 1599 1600 2000 34879; do
    dd if="$D/tiny_moe.gguf" of="$tmp/cut$n.gguf" bs=1 count=$n 2>/dev/null
    expect_reject "$tmp/cut$n.gguf" ""
done
printf 'hello, this is not a model\n' >"$tmp/text.gguf"
expect_reject "$tmp/text.gguf" "not a GGUF file"
printf 'GGUF\003\000\000\000' >"$tmp/header_only.gguf"
expect_reject "$tmp/header_only.gguf" "truncated"
expect_reject "$tmp/missing.gguf" "No such file"
expect_reject "$tmp" "not a regular file"

# the valid model and a vocabulary-only file are described
if "$VMOER" info "$D/tiny_moe.gguf" >"$tmp/out" 2>"$tmp/err"; then ok; else bad "tiny_moe: exit $?"; cat "$tmp/err"; fi
for want in "architecture:    llama" "MoE layers:      1 of 2" "tensors:         9, 33280 bytes, 20960 parameters" \
            "expert_count                       4" "q8_0          2 tensors          10880 bytes" "chat template:   yes" \
            "bos 1 '<s>'"; do
    if grep -q -F "$want" "$tmp/out"; then ok; else bad "tiny_moe text lacks '$want'"; fi
done
if "$VMOER" info --json "$D/tiny_moe.gguf" >"$tmp/out" 2>"$tmp/err"; then ok; else bad "tiny_moe --json: exit $?"; fi
if [ "$(wc -l <"$tmp/out" | tr -d ' ')" -eq 1 ]; then ok; else bad "--json is not one line"; fi
for want in '"architecture":"llama"' '"n_moe_layers":1' '"n_params":20960' '"expert_used_count":2' \
            '"q8_0":{"n":2,"bytes":10880}' '"n_vocab":8' '"chat_template":true'; do
    if grep -q -F "$want" "$tmp/out"; then ok; else bad "tiny_moe json lacks $want"; fi
done
if [ -f "$SHARED/tokenizers/ggml-vocab-gpt-2.gguf" ]; then
    "$VMOER" info "$SHARED/tokenizers/ggml-vocab-gpt-2.gguf" >"$tmp/out" 2>&1
    if grep -q -F "tokenizer:       gpt2 (pre gpt-2), 50257 tokens" "$tmp/out" && grep -q "MoE layers:      0 of 12" "$tmp/out"
    then ok; else bad "gpt-2 vocab info"; cat "$tmp/out"; fi
fi

# usage errors
"$VMOER" info --help >"$tmp/out" 2>&1 && grep -q "usage: vmoer info" "$tmp/out" && ok || bad "--help"
"$VMOER" info >"$tmp/out" 2>"$tmp/err"; [ $? -eq 1 ] && grep -q "^vmoer info: no file" "$tmp/err" && ok || bad "no file"
"$VMOER" info --bogus "$D/tiny_moe.gguf" >"$tmp/out" 2>"$tmp/err"; [ $? -eq 1 ] && grep -q "unknown option" "$tmp/err" && ok || bad "bad option"
"$VMOER" info --threads 0 "$D/tiny_moe.gguf" >"$tmp/out" 2>"$tmp/err"; [ $? -eq 1 ] && grep -q "threads" "$tmp/err" && ok || bad "--threads 0"
"$VMOER" info --threads 2 "$D/tiny_moe.gguf" >/dev/null 2>&1 && ok || bad "--threads 2"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

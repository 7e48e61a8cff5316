#!/bin/sh
# vmoer tokenize on the byte-level BPE vocabularies: for each one, the first single-line inputs
# of llama.cpp's published vectors (../shared/tokenizers/ggml-vocab-*.gguf.inp/.out, ids of the
# original Hugging Face tokenizers), plus BOS and special-token handling.
VMOER=${VMOER:-build/vmoer}
SHARED=${VMOER_SHARED:-../shared}
TOK="$SHARED/tokenizers"
pass=0; fail=0
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

expect() {
    want=$1; shift
    got=$("$VMOER" tokenize "$@" 2>"$tmp/err"); rc=$?
    if [ $rc -eq 0 ] && [ "$got" = "$want" ]; then ok; else bad "tokenize $* -> '$got' (exit $rc: $(cat "$tmp/err")), want '$want'"; fi
}

for name in gpt-2 mpt falcon starcoder refact deepseek-llm deepseek-coder; do
    vocab="$TOK/ggml-vocab-$name.gguf"
    [ -f "$vocab" ] || { bad "$vocab missing"; continue; }
    # entry k (0-based) of the .inp becomes $tmp/in.k when it is one non-empty line
    rm -f "$tmp"/in.*
    awk -v dir="$tmp" '
        $0 == "__ggml_vocab_test__" { if (lines == 1 && text != "") { f = dir "/in." k; printf "%s", text > f; close(f) }
                                      k++; lines = 0; text = ""; next }
        { lines++; text = $0 }' "$vocab.inp"
    n=0
    for f in $(ls "$tmp"/in.* | sort -t. -k2 -n); do
        k=${f##*.}
        want=$(sed -n "$((k + 1))p" "$vocab.out" | sed 's/^ *//; s/ *$//')
        expect "$want" "$vocab" -- "$(cat "$f")"
        n=$((n + 1))
        [ $n -ge 8 ] && break
    done
    [ $n -ge 4 ] || bad "$name: only $n single-line vectors found"
done

GPT2="$TOK/ggml-vocab-gpt-2.gguf"
DSL="$TOK/ggml-vocab-deepseek-llm.gguf"
expect "15496 995" "$GPT2" "Hello world"
expect "15496 995" --bos "$GPT2" "Hello world"              # GPT-2 adds no BOS
expect "100000 17464 1843" --bos "$DSL" "Hello world"        # DeepSeek asks for one
expect "15496 50256" "$GPT2" "Hello<|endoftext|>"
expect "15496 27 91 437 1659 5239 91 29" --no-parse-special "$GPT2" "Hello<|endoftext|>"
expect "" "$GPT2" ""
# the gpt-neox file has no tokenizer.ggml.pre: llama.cpp's "default" pre-tokenizer
expect "20084 20" "$TOK/ggml-vocab-gpt-neox.gguf" "3333"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

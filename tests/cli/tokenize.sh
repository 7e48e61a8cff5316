#!/bin/sh
# vmoer tokenize on the llama-spm vocabulary: expected ids are llama.cpp's published vectors
# (../shared/tokenizers/ggml-vocab-llama-spm.gguf.out) plus BOS/special-token/option handling.
VMOER=${VMOER:-build/vmoer}
SHARED=${VMOER_SHARED:-../shared}
VOCAB="$SHARED/tokenizers/ggml-vocab-llama-spm.gguf"
pass=0; fail=0
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

# expect OUTPUT ARGS...: stdout must equal OUTPUT and the exit status 0
expect() {
    want=$1; shift
    got=$("$VMOER" tokenize "$@" 2>"$tmp/err"); rc=$?
    if [ $rc -eq 0 ] && [ "$got" = "$want" ]; then ok; else bad "tokenize $* -> '$got' (exit $rc), want '$want'"; fi
}
# refuse PATTERN ARGS...: exit 1, nothing on stdout, one stderr line matching PATTERN
refuse() {
    pat=$1; shift
    "$VMOER" tokenize "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?
    if [ $rc -eq 1 ] && [ ! -s "$tmp/out" ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q -- "$pat" "$tmp/err"; then ok
    else bad "tokenize $* -> exit $rc, stderr: $(cat "$tmp/err")"; fi
}

expect "15043 3186" "$VOCAB" "Hello world"
expect "29871 15043 2787 29991" "$VOCAB" " Hello World!"
expect "525 3152" "$VOCAB" "' era"
expect "29871 445 338 29871 243 162 169 156 29889 8223" "$VOCAB" " this is 🦙.cpp"
expect "268 15043 13 1678 15043" "$VOCAB" "    Hello
    Hello"
expect "1 15043 3186" --bos "$VOCAB" "Hello world"
expect "1 15043 3186" "$VOCAB" --bos --threads 2 "Hello world"
expect "" "$VOCAB" ""
# special tokens: parsed by default, text after them gets the space prefix again
expect "1 15043" "$VOCAB" "<s>Hello"
expect "15043 2" "$VOCAB" "Hello</s>"
expect "529 29879 29958 10994" --no-parse-special "$VOCAB" "<s>Hello"   # ▁< s > Hello
# '--' ends the options: TEXT may start with '-'
expect "1192 27737" "$VOCAB" -- "--bos"          # ▁-- bos
expect "1 448 29896" --bos "$VOCAB" -- "-1"       # <s> ▁- 1
expect "921 1192 27737" "$VOCAB" -- "x --bos"

# llama2.c's tok512 converted to GGUF: ids as tests/golden/tokenizer/tok512.out (run.c's encoder)
if "$VMOER" convert-llama2c "$SHARED/models/stories260K.bin" "$SHARED/models/tok512.bin" "$tmp/s.gguf" >/dev/null 2>&1; then
    ok
    expect "403 407 261 378 432 383 286 261 376 298 315 421 395 317 426" "$tmp/s.gguf" \
        "Once upon a time, there was a little girl named Lily."
    expect "1 403 407 261 378" --bos "$tmp/s.gguf" "Once upon a time"
else
    bad "convert-llama2c of stories260K failed"
fi

# errors: one line, exit 1
expect "15496 995" "$SHARED/tokenizers/ggml-vocab-gpt-2.gguf" "Hello world"
refuse "nonexistent" "$tmp/nonexistent.gguf" "Hello"
refuse "unknown option" "$VOCAB" --frobnicate "Hello"
refuse "missing TEXT" "$VOCAB"
refuse "missing MODEL" 
refuse "threads" --threads 0 "$VOCAB" "Hello"
refuse "unexpected argument" "$VOCAB" "a" "b"
printf 'not a gguf file' >"$tmp/junk.gguf"
refuse "junk.gguf" "$tmp/junk.gguf" "Hello"
"$VMOER" tokenize --help >"$tmp/out" 2>&1 && grep -q "usage: vmoer tokenize" "$tmp/out" && ok || bad "--help"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

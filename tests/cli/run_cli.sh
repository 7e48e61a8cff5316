#!/bin/sh
# The model-running commands' contract: --help, flag errors, sampling reproducibility by seed,
# thread-count invariance of greedy output, -n and context limits, atomic outputs.
# Run from the repository root; $VMOER is the binary, $VMOER_SHARED the shared data folder.
VMOER=${VMOER:-build/vmoer}
SHARED=${VMOER_SHARED:-../shared}
T=$(mktemp -d "${TMPDIR:-/tmp}/vmoer_runcli.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
fails_one_line() {
    d=$1; shift
    "$@" >"$T/o" 2>"$T/e"; rc=$?
    n=$(wc -l <"$T/e")
    if [ $rc -eq 1 ] && [ "$n" -eq 1 ] && grep -q "^vmoer $2: " "$T/e"; then ok
    else bad "$d: exit $rc, $n stderr lines: $(head -c 300 "$T/e")"; fi
}

M=$T/s.gguf
"$VMOER" convert-llama2c "$SHARED/models/stories260K.bin" "$SHARED/models/tok512.bin" "$M" 2>"$T/e" && ok || bad "convert: $(cat "$T/e")"
"$VMOER" upcycle "$M" "$T/moe.gguf" --experts 4 --top-k 2 --noise 0.02 2>"$T/e" && ok || bad "upcycle: $(cat "$T/e")"

# --help: usage on stdout, exit 0, nothing on stderr
for c in run logits trace convert-llama2c upcycle; do
    "$VMOER" $c --help >"$T/h" 2>"$T/e"; rc=$?
    if [ $rc -eq 0 ] && grep -q "^usage: vmoer $c" "$T/h" && [ ! -s "$T/e" ]; then ok; else bad "$c --help (exit $rc)"; fi
done

# flag errors: unknown flag, missing value, bad number, missing required argument
for c in run logits trace convert-llama2c upcycle; do
    fails_one_line "$c unknown flag" "$VMOER" $c --no-such-flag
    fails_one_line "$c --threads without value" "$VMOER" $c "$M" --threads
    fails_one_line "$c --threads 0" "$VMOER" $c "$M" --threads 0
done
fails_one_line "run without -p" "$VMOER" run "$M"
fails_one_line "run --temp -1" "$VMOER" run "$M" -p x --temp -1
fails_one_line "run --top-p 2" "$VMOER" run "$M" -p x --top-p 2
fails_one_line "run --seed x" "$VMOER" run "$M" -p x --seed x
fails_one_line "run two models" "$VMOER" run "$M" "$M" -p x
fails_one_line "logits without -o" "$VMOER" logits "$M" -p x
fails_one_line "logits -p and --ids" "$VMOER" logits "$M" -p x --ids 1 -o "$T/x.npy"
fails_one_line "logits bad ids" "$VMOER" logits "$M" --ids 1,x -o "$T/x.npy"
fails_one_line "logits into a missing folder" "$VMOER" logits "$M" --ids 1 -o "$T/no/such/x.npy"
fails_one_line "trace without -o" "$VMOER" trace "$T/moe.gguf" -p x
fails_one_line "upcycle without --experts" "$VMOER" upcycle "$M" "$T/x.gguf" --top-k 1
fails_one_line "upcycle --experts 0" "$VMOER" upcycle "$M" "$T/x.gguf" --experts 0 --top-k 1
fails_one_line "upcycle --noise -1" "$VMOER" upcycle "$M" "$T/x.gguf" --experts 2 --top-k 1 --noise -1
fails_one_line "convert --type q4_0" "$VMOER" convert-llama2c a b c --type q4_0
[ ! -e "$T/x.npy" ] && [ ! -e "$T/x.gguf" ] && ok || bad "a failed command left an output file"

# greedy output does not depend on the thread count
"$VMOER" run "$M" -p "Lily and Ben" --temp 0 -n 40 --threads 1 >"$T/g1" 2>/dev/null
"$VMOER" run "$M" -p "Lily and Ben" --temp 0 -n 40 --threads 3 >"$T/g3" 2>/dev/null
cmp -s "$T/g1" "$T/g3" && [ -s "$T/g1" ] && ok || bad "greedy output differs between 1 and 3 threads"
"$VMOER" logits "$T/moe.gguf" -p "Lily and Ben" -o "$T/l1.npy" --threads 1 2>/dev/null
"$VMOER" logits "$T/moe.gguf" -p "Lily and Ben" -o "$T/l3.npy" --threads 3 2>/dev/null
cmp -s "$T/l1.npy" "$T/l3.npy" && ok || bad "MoE logits differ between 1 and 3 threads"

# sampling: same seed -> same text; different seeds -> (almost surely) different text
"$VMOER" run "$M" -p "Once" --temp 1 --seed 11 -n 40 >"$T/s1" 2>/dev/null
"$VMOER" run "$M" -p "Once" --temp 1 --seed 11 -n 40 >"$T/s2" 2>/dev/null
"$VMOER" run "$M" -p "Once" --temp 1 --seed 12 -n 40 >"$T/s3" 2>/dev/null
cmp -s "$T/s1" "$T/s2" && ok || bad "same seed, different text"
cmp -s "$T/s1" "$T/s3" && bad "seeds 11 and 12 gave the same 40 tokens" || ok
# top-k 1 is greedy whatever the temperature
"$VMOER" run "$M" -p "Lily and Ben" --temp 5 --top-k 1 -n 40 >"$T/k1" 2>/dev/null
cmp -s "$T/g1" "$T/k1" && ok || bad "--top-k 1 should equal greedy"
"$VMOER" run "$M" -p "Once" --temp 0.7 --top-p 0.9 --top-k 40 --seed 1 -n 20 >/dev/null 2>"$T/e" && ok || bad "top-k/top-p run: $(cat "$T/e")"

# -n 0 prints just the prompt; the context (512) bounds generation
out=$("$VMOER" run "$M" -p "Once upon" -n 0 2>/dev/null)
[ "$out" = "Once upon" ] && ok || bad "-n 0 printed '$out'"
"$VMOER" run "$M" -p "Once" --temp 1 --seed 5 -n 5000 >/dev/null 2>"$T/e" && ok || bad "long run: $(cat "$T/e")"
gen=$(sed -n 's/.*generated \([0-9]*\) tokens.*/\1/p' "$T/e")
[ -n "$gen" ] && [ "$gen" -le 511 ] && ok || bad "generated '$gen' tokens past a 512 context"
# logits of more tokens than the context fail cleanly
ids=1; i=0; while [ $i -lt 520 ]; do ids="$ids,300"; i=$((i + 1)); done
fails_one_line "logits beyond the context" "$VMOER" logits "$M" --ids "$ids" -o "$T/x.npy"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

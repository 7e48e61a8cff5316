#!/bin/sh
# valgrind memcheck on a small end-to-end run: convert stories260K (f32, q8_0), greedy run of 20 tokens, logits,
# tokenize, upcycle to a MoE, trace it and sample from it (2 OpenMP threads), and info on hostile
# GGUF files. Each step must report zero memcheck errors and zero "definitely"/"indirectly lost"
# bytes (valgrind exits 99 otherwise). Takes ~20 s, so only for the optimised build dir
# ($BUILD = build) or with VMOER_SLOW_TESTS=1 (ASan builds cannot run under valgrind).
# Missing valgrind is a failure (Debian package: valgrind). Run from the repository root.
BUILD=${BUILD:-build}
VMOER=${VMOER:-$BUILD/vmoer}
SHARED=${VMOER_SHARED:-../shared}
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
finish() { echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]; exit $?; }

if [ "$BUILD" != build ] && [ "${VMOER_SLOW_TESTS:-0}" != 1 ]; then
    echo "valgrind: skipped for BUILD=$BUILD (runs for BUILD=build or VMOER_SLOW_TESTS=1)"
    finish
fi
command -v valgrind >/dev/null 2>&1 || { bad "valgrind not installed (Debian package: valgrind)"; finish; }
# vmoer re-executes itself to set GOMP_SPINCOUNT when no OpenMP wait setting is given
# (src/cli/main.c); valgrind does not follow an exec, so set it here and memcheck sees the real run
GOMP_SPINCOUNT=${GOMP_SPINCOUNT:-20000}; export GOMP_SPINCOUNT
T=$(mktemp -d "${TMPDIR:-/tmp}/vmoer_vg.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT

# vg WANT_RC DESC CMD...: the command's own exit status must be WANT_RC, valgrind's verdict clean
vg() {
    want=$1; d=$2; shift 2
    valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect \
        --show-leak-kinds=definite,indirect "$@" >"$T/out" 2>"$T/err"
    rc=$?
    if [ $rc -eq 99 ]; then bad "$d: valgrind errors:"; head -30 "$T/err"
    elif [ $rc -ne "$want" ]; then bad "$d: exit $rc (want $want): $(head -c 300 "$T/err")"
    else ok; fi
}

M=$T/s.gguf
export OMP_NUM_THREADS=1
vg 0 "convert" "$VMOER" convert-llama2c "$SHARED/models/stories260K.bin" "$SHARED/models/tok512.bin" "$M"
vg 0 "convert q8_0" "$VMOER" convert-llama2c "$SHARED/models/stories260K.bin" "$SHARED/models/tok512.bin" "$T/q8.gguf" --type q8_0
vg 0 "run 20 tokens" "$VMOER" run "$M" -p "Once upon a time" --temp 0 -n 20
case "$(cat "$T/out")" in "Once upon a time, there was a little girl"*) ok;; *) bad "run output: $(cat "$T/out")";; esac
vg 0 "logits" "$VMOER" logits "$M" -p "Once upon" -o "$T/l.npy"
vg 0 "tokenize" "$VMOER" tokenize "$M" "Hello world"
vg 0 "upcycle" "$VMOER" upcycle "$M" "$T/moe.gguf" --experts 4 --top-k 2 --noise 0.05 --seed 3
export OMP_NUM_THREADS=2
vg 0 "trace (2 threads)" "$VMOER" trace "$T/moe.gguf" -p "Once upon a time" -o "$T/t.jsonl"
[ -s "$T/t.jsonl" ] && ok || bad "trace wrote nothing"
vg 0 "sampled run of the MoE (2 threads)" "$VMOER" run "$T/moe.gguf" -p "Once" -n 5 --temp 0.8 --seed 1
export OMP_NUM_THREADS=1
for f in truncated huge_array out_of_range; do
    vg 1 "info hostile $f.gguf" "$VMOER" info "tests/data/gguf/$f.gguf"
done
vg 1 "run on a missing file" "$VMOER" run "$T/nope.gguf" -p x -n 1
finish

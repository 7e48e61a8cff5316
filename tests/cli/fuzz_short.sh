#!/bin/sh
# Short libFuzzer run of every fuzz/fuzz_<name>.c target (seed corpus fuzz/corpus/<name>/): builds
# them with clang (fuzz/fuzz.mk, into $FUZZ_BUILD, default build-fuzzer/) and runs each for
# $FUZZ_SECONDS (default 60 when $CI is set, else 10). A target passes when it runs its time
# without a crash, leak, timeout or sanitizer report; a crash input is kept in $FUZZ_BUILD/crashes/.
# Only for the optimised build dir ($BUILD = build) or with VMOER_SLOW_TESTS=1: the SAN suite and
# helpers' build dirs skip it. Missing clang or its fuzzer runtime is a failure, not a skip.
# Run from the repository root.
BUILD=${BUILD:-build}
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
finish() { echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]; exit $?; }

if [ "$BUILD" != build ] && [ "${VMOER_SLOW_TESTS:-0}" != 1 ]; then
    echo "fuzz_short: skipped for BUILD=$BUILD (runs for BUILD=build or VMOER_SLOW_TESTS=1)"
    finish
fi
if [ -n "${CI:-}" ]; then SECS=${FUZZ_SECONDS:-60}; else SECS=${FUZZ_SECONDS:-10}; fi
FUZZ_CC=${FUZZ_CC:-clang}
FUZZ_BUILD=${FUZZ_BUILD:-build-fuzzer}
JOBS=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}
export VMOER_SHARED=${VMOER_SHARED:-../shared}
export OMP_NUM_THREADS=1   # the fuzzers are single-threaded; libFuzzer forks no workers here
PKG="clang and libclang-rt-14-dev (Debian 12; libclang-rt-dev pulls the default version)"
T=$(mktemp -d "${TMPDIR:-/tmp}/vmoer_fuzz.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT

if ! command -v "$FUZZ_CC" >/dev/null 2>&1; then bad "no $FUZZ_CC: install $PKG"; finish; fi
printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { return 0; }\n' >"$T/probe.c"
if ! "$FUZZ_CC" -fsanitize=fuzzer,address,undefined "$T/probe.c" -o "$T/probe" >"$T/probe.log" 2>&1; then
    bad "$FUZZ_CC cannot link -fsanitize=fuzzer: install $PKG ($(head -c 200 "$T/probe.log"))"; finish
fi
ok
if ! make -s -f fuzz/fuzz.mk -j"$JOBS" FUZZ_CC="$FUZZ_CC" FUZZ_BUILD="$FUZZ_BUILD" >"$T/build.log" 2>&1; then
    bad "building the fuzzers failed:"; tail -20 "$T/build.log"; finish
fi
ok

# run_one NAME: one target for SECS seconds on a scratch copy of its corpus
run_one() {
    n=$1; mkdir -p "$T/$n.corpus" "$T/$n.art"
    "$FUZZ_BUILD/fuzz_$n" "$T/$n.corpus" "fuzz/corpus/$n" -max_total_time="$SECS" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$T/$n.art/" >"$T/$n.log" 2>&1
    echo $? >"$T/$n.rc"
}

names=""
for f in fuzz/fuzz_*.c; do n=${f#fuzz/fuzz_}; names="$names ${n%.c}"; done
# JOBS targets at a time: they are single-threaded
running=0
for n in $names; do
    run_one "$n" &
    running=$((running + 1))
    if [ "$running" -ge "$JOBS" ]; then wait; running=0; fi
done
wait

mkdir -p "$FUZZ_BUILD/crashes"
for n in $names; do
    rc=$(cat "$T/$n.rc" 2>/dev/null || echo 99)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$T/$n.log")
    cov=$(grep -E '^#[0-9]+' "$T/$n.log" | tail -1 | sed -n 's/.* cov: \([0-9]*\) ft: \([0-9]*\).*/cov \1 ft \2/p')
    art=$(ls "$T/$n.art" 2>/dev/null | head -1)
    if [ "$rc" -eq 0 ] && [ -z "$art" ]; then
        ok; echo "ok   fuzz_$n: ${execs:-?} runs in ${SECS}s, $cov"
    else
        if [ -n "$art" ]; then cp "$T/$n.art/$art" "$FUZZ_BUILD/crashes/${n}_$art"; fi
        bad "fuzz_$n: exit $rc, ${execs:-?} runs; input kept as $FUZZ_BUILD/crashes/${n}_$art"
        grep -E "ERROR|SUMMARY|runtime error|FUZZ_ASSERT" "$T/$n.log" | head -5
    fi
done
finish

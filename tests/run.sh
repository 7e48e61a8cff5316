#!/bin/sh
# Runs the compiled test binaries and tests/cli/*.sh scripts from the repository root.
#   sh tests/run.sh              every test
#   sh tests/run.sh NAME ...     the tests whose file name contains a NAME (test_fit, fit, install.sh)
#   sh tests/run.sh --fast       the fast tier: the tests listed in tests/fast.txt (make check-fast)
# Each prints a closing "N passed, N failed" line; this adds them up and prints the total.
# A test that exits non-zero without its summary line counts as one failure, and so does a NAME
# that matches no test (a typo must not pass as "0 failed").
BUILD=${BUILD:-build}
export VMOER="$BUILD/vmoer" BUILD
names=""
if [ "$1" = "--fast" ]; then
    shift
    names=$(sed 's/#.*//' tests/fast.txt)
fi
names="$names $*"
total_p=0; total_f=0; log=$(mktemp); trap 'rm -f "$log"' EXIT
# wanted FILE: 1 when no names were given or FILE's name contains one of them
wanted() {
    [ -z "$(echo $names)" ] && return 0
    for n in $names; do case "${1##*/}" in *"$n"*) return 0;; esac; done
    return 1
}
for n in $names; do
    found=0
    for t in "$BUILD"/tests/test_* tests/cli/*.sh; do case "${t##*/}" in *.d|*.o) ;; *"$n"*) found=1;; esac; done
    [ $found -eq 1 ] || { echo "FAIL no test matches '$n'"; total_f=$((total_f + 1)); }
done
for t in "$BUILD"/tests/test_* tests/cli/*.sh; do
    [ -f "$t" ] || continue
    case "$t" in *.d|*.o) continue;; esac
    wanted "$t" || continue
    start=$(date +%s)
    case "$t" in *.sh) sh "$t" >"$log" 2>&1;; *) "$t" >"$log" 2>&1;; esac
    rc=$?
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
    p=$(echo "$line" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed.*/\1/p')
    f=$(echo "$line" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed.*/\2/p')
    [ -n "$p" ] || { p=0; f=0; }
    if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    dt=$(( $(date +%s) - start ))
    if [ "$f" -ne 0 ]; then
        echo "FAIL $t ($p passed, $f failed, ${dt}s, exit $rc)"; sed 's/^/    /' "$log" | tail -40
    else
        echo "ok   $t ($p passed, ${dt}s)"
    fi
    total_p=$((total_p + p)); total_f=$((total_f + f))
done
echo "$total_p passed, $total_f failed"
[ "$total_f" -eq 0 ]

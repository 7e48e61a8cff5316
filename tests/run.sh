#!/bin/sh
# Runs every compiled test binary and every tests/cli/*.sh script from the repository root.
# Each prints a closing "N passed, N failed" line; this adds them up and prints the total.
# A test that exits non-zero without its summary line counts as one failure.
BUILD=${BUILD:-build}
export VMOER="$BUILD/vmoer" BUILD
total_p=0; total_f=0; log=$(mktemp); trap 'rm -f "$log"' EXIT
for t in "$BUILD"/tests/test_* tests/cli/*.sh; do
    [ -f "$t" ] || continue
    case "$t" in *.d|*.o) continue;; esac
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

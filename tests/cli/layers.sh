#!/bin/sh
# scripts/check_layers.sh (make check-layers): passes on this tree, and fails -- naming the file,
# the header and the two floors -- on copies with one include against src/LAYERS: upwards, within a
# floor, into a folder on no floor; and for a folder on no floor.
p=0; f=0
ok() { p=$((p + 1)); }
bad() { f=$((f + 1)); echo "FAIL: $1"; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
if sh scripts/check_layers.sh >"$T/out" 2>&1; then ok; else bad "this tree: $(cat "$T/out")"; fi
[ ! -s "$T/out" ] && ok || bad "silent when all holds: $(cat "$T/out")"
# fresh copies of src/ (LAYERS included), one wrong include each
copy() { rm -rf "$T/c"; mkdir "$T/c"; cp -r src "$T/c/src"; }
# expect_fail WHAT PATTERN: the check on the copy fails and says PATTERN
expect_fail() {
    if sh scripts/check_layers.sh "$T/c" >"$T/out" 2>&1; then bad "$1 accepted"; else ok; fi
    grep -q "$2" "$T/out" && ok || bad "$1 message: $(cat "$T/out")"
}
copy; sed -i '1i #include "eval/eval.h"' "$T/c/src/util/err.c"
expect_fail "util including eval" '^src/util/err.c:1: includes eval/eval.h: util (floor 1) may not include eval'
copy; sed -i '1i #include "model/model.h"' "$T/c/src/router/router.h"
expect_fail "router including model (a header)" '^src/router/router.h:1: includes model/model.h: router'
copy; sed -i '1i #  include "report/report.h"' "$T/c/src/quant/half.c"
expect_fail "an include within one floor" 'quant/half.c:1: includes report/report.h: quant (floor 2) may not include report (floor 2)'
copy; sed -i '1i #include "nowhere/x.h"' "$T/c/src/model/model.c"
expect_fail "a folder that is on no floor" 'includes nowhere/x.h: src/nowhere/ is on no floor'
copy; mkdir "$T/c/src/extra"; echo '#include "util/err.h"' >"$T/c/src/extra/x.c"
expect_fail "a new folder left out of LAYERS" '^src/extra/: on no floor'
# the same include downwards is fine, and so is the public header anywhere
copy; sed -i '1i #include "util/err.h"' "$T/c/src/eval/eval.c"; sed -i '1i #include "vmoer.h"' "$T/c/src/util/rng.c"
if sh scripts/check_layers.sh "$T/c" >"$T/out" 2>&1; then ok; else bad "a downward include refused: $(cat "$T/out")"; fi
# README's layer line is src/LAYERS read top down, and its tree names every folder of src/
want=$(sed 's/#.*//' src/LAYERS | awk 'NF { line = $1; for (i = 2; i <= NF; i++) line = line ", " $i; l[++n] = line }
    END { s = l[n]; for (i = n - 1; i >= 1; i--) s = s " → " l[i]; print s }')
got=$(sed -n '/^Dependencies point one way/,/^$/p' README.md | tr '\n' ' ' | sed 's/.*other): //; s/\. *$//; s/  */ /g')
[ "$got" = "$want" ] && ok || bad "README layer line '$got', src/LAYERS says '$want'"
for d in src/*/; do grep -q "^${d%/}/ " README.md && ok || bad "README tree lacks ${d%/}/"; done
# make check-layers is this script
make -s check-layers >"$T/out" 2>&1 && ok || bad "make check-layers: $(cat "$T/out")"
echo "$p passed, $f failed"
[ "$f" -eq 0 ]

#!/bin/sh
# Checks every #include "dir/file.h" of src/ against the floors of src/LAYERS (bottom first): a file
# of src/D/ may include its own folder and folders on lower floors only. Prints one line per
# include that goes against the order (or per folder on no floor) and exits 1; silent and 0 when
# all hold. ROOT (default: this checkout) lets a test run it on a copy with a wrong include.
#   sh scripts/check_layers.sh [ROOT]
ROOT=${1:-$(dirname "$0")/..}
[ -f "$ROOT/src/LAYERS" ] || { echo "check-layers: no $ROOT/src/LAYERS"; exit 2; }
# one "folder floor" line per folder, floor 1 at the bottom
floors=$(sed 's/#.*//' "$ROOT/src/LAYERS" | awk 'NF { n++; for (i = 1; i <= NF; i++) print $i, n }')
bad=0
for d in "$ROOT"/src/*/; do
    d=${d%/}; d=${d##*/}
    echo "$floors" | grep -q "^$d " || { echo "src/$d/: on no floor of src/LAYERS"; bad=1; }
done
# file:line:included-folder for every quoted include of a folder, then judged by the floors
out=$(cd "$ROOT" && grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"[A-Za-z0-9_]*/' src/*/*.c src/*/*.h 2>/dev/null |
    sed 's|^\(src/\([^/]*\)/[^:]*:[0-9]*\):[^"]*"\([^/]*\)/\([^"]*\)".*|\1 \2 \3 \3/\4|' |
    echo "$floors
--
$(cat)" | awk '
        /^--$/ { files = 1; next }
        !files { floor[$1] = $2; next }
        {
            where = $1; from = $2; to = $3; hdr = $4
            if (from == to) next
            if (!(to in floor)) { printf "%s: includes %s: src/%s/ is on no floor\n", where, hdr, to; next }
            if (!(from in floor)) next   # reported above
            if (floor[to] >= floor[from])
                printf "%s: includes %s: %s (floor %d) may not include %s (floor %d)\n", where, hdr, from, floor[from], to, floor[to]
        }')
if [ -n "$out" ]; then echo "$out"; bad=1; fi
[ $bad -eq 0 ] || echo "check-layers: includes against src/LAYERS (see above)"
exit $bad

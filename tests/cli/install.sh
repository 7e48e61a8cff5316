#!/bin/sh
# `make install PREFIX=<temp>`, then examples/ built against the INSTALLED copy with nothing but
# `pkg-config --cflags --libs vmoer` and run on the bundled model: the header, the shared library
# (soname, exported symbols = the header's VMOER_API functions), vmoer.pc and the binary.
# Sanitizer builds skip it: their library needs -fsanitize at every link, which vmoer.pc does not
# carry (the optimised suite runs it).
BUILD=${BUILD:-build}
MODEL=data/models/stories-moe.gguf
p=0; f=0
ok() { p=$((p + 1)); }
bad() { f=$((f + 1)); echo "FAIL: $1"; }
case "$BUILD" in *san*) echo "skipped: sanitizer build ($BUILD)"; echo "0 passed, 0 failed"; exit 0;; esac
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
P="$T/prefix"
# a make of its own, not the jobserver of the `make test` that may have started this script
if env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s BUILD="$BUILD" PREFIX="$P" install >"$T/out" 2>&1; then ok; else bad "make install: $(tail -5 "$T/out")"; fi
for x in include/vmoer.h lib/libvmoer.a lib/libvmoer.so lib/pkgconfig/vmoer.pc bin/vmoer; do
    [ -e "$P/$x" ] && ok || bad "not installed: $x"
done
ver=$(sed -n 's/^#define VMOER_VERSION "\(.*\)"/\1/p' include/vmoer.h)
soname=$(readelf -d "$P/lib/libvmoer.so" 2>/dev/null | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
[ "$soname" = "libvmoer.so.${ver%%.*}" ] && ok || bad "soname '$soname' for version $ver"
[ -e "$P/lib/$soname" ] && ok || bad "no $soname link"
# exactly the public functions are exported (OpenMP's named critical sections aside)
grep -v '^#define' include/vmoer.h | grep -o 'VMOER_API[^(]*(' | sed 's/($//; s/.*[ *]//' | sort >"$T/api"
nm -D --defined-only "$P/lib/libvmoer.so" | awk '{print $3}' | grep -v '^\.gomp_critical' | sort >"$T/sym"
if cmp -s "$T/api" "$T/sym" && [ -s "$T/api" ]; then ok; else bad "exported symbols differ from the header's VMOER_API: $(diff "$T/api" "$T/sym" | head -8 | tr '\n' ' ')"; fi
export PKG_CONFIG_PATH="$P/lib/pkgconfig"
[ "$(pkg-config --modversion vmoer 2>&1)" = "$ver" ] && ok || bad "pkg-config --modversion: $(pkg-config --modversion vmoer 2>&1)"
"$P/bin/vmoer" --version | grep -q "$ver" && ok || bad "installed vmoer --version"
# the installed header stands alone in C99 (pedantic) and in C++
printf '#include <vmoer.h>\nint main(void) { return vmoer_version() ? 0 : 1; }\n' >"$T/h.c"
cc -std=c99 -pedantic -Wall -Wextra -Werror -fsyntax-only $(pkg-config --cflags vmoer) "$T/h.c" >"$T/cc" 2>&1 && ok || bad "header as C99: $(head -3 "$T/cc")"
if command -v c++ >/dev/null 2>&1; then
    c++ -x c++ -std=c++11 -Wall -Wextra -Werror -fsyntax-only $(pkg-config --cflags vmoer) "$T/h.c" >"$T/cc" 2>&1 && ok || bad "header as C++: $(head -3 "$T/cc")"
fi
# build every example against the installed copy only (no -I of this tree), warnings as errors
for src in examples/*.c; do
    name=$(basename "$src" .c)
    # shellcheck disable=SC2046
    if cc -std=c11 -Wall -Wextra -Werror "$src" -o "$T/$name" $(pkg-config --cflags --libs vmoer) >"$T/cc" 2>&1; then ok
    else bad "build $name: $(head -5 "$T/cc")"; fi
done
export LD_LIBRARY_PATH="$P/lib"
ldd "$T/generate" 2>/dev/null | grep -q "libvmoer.so.${ver%%.*} => $P/lib/" && ok || bad "generate does not load the installed libvmoer.so"
if "$T/generate" "$MODEL" "" "Once upon a time" >"$T/gen" 2>&1; then ok; else bad "generate: $(tail -3 "$T/gen")"; fi
grep -q "^12 tokens, finish: length" "$T/gen" && ok || bad "generate output: $(tail -3 "$T/gen")"
grep -q "gate_entropy [0-9]" "$T/gen" && ok || bad "generate: no per-token gate entropy"
if "$T/custom_router" "$MODEL" >"$T/cr" 2>&1; then ok; else bad "custom_router: $(cat "$T/cr")"; fi
grep -q "tau=1: reproduces the pretrained router" "$T/cr" && ok || bad "custom_router output: $(cat "$T/cr")"
if "$T/fit_eval" "$MODEL" data/cloze/train.jsonl data/cloze/test.jsonl "$T/a.gguf" "$T/rep" >"$T/fe" 2>&1; then ok; else bad "fit_eval: $(tail -5 "$T/fe")"; fi
grep -q "^ok$" "$T/fe" && ok || bad "fit_eval output: $(cat "$T/fe")"
# its vm_eval_report folder is `vmoer eval`'s with the same options (questions.jsonl byte for byte)
"$P/bin/vmoer" eval "$MODEL" --adapter "$T/a.gguf" --data data/cloze/test.jsonl --limit 24 --score pmi \
    --noise-grid none -o "$T/rep-cli" 2>/dev/null
cmp -s "$T/rep/questions.jsonl" "$T/rep-cli/questions.jsonl" && [ -s "$T/rep/report.html" ] && ok || bad "fit_eval's report differs from vmoer eval's"
# the adapter the library wrote is one the CLI accepts
"$P/bin/vmoer" info "$T/a.gguf" >/dev/null 2>&1 && ok || bad "vmoer info on the example's adapter"
# the Python package from the installed copy: PYTHONPATH the prefix's site folder, no VMOER_LIB, no
# LD_LIBRARY_PATH: it finds the prefix's libvmoer.so.0 by the path make install wrote into it
PYDIR="$P/lib/python3/dist-packages"; ROOT=$(pwd)
[ -f "$PYDIR/vmoer/__init__.py" ] && [ -f "$PYDIR/vmoer/_install.py" ] && ok || bad "python package not installed in $PYDIR"
PY=""
for c in ${PYTHON:-} python3 /usr/bin/python3; do
    command -v "$c" >/dev/null 2>&1 && "$c" -c 'import numpy' >/dev/null 2>&1 && { PY=$c; break; }
done
if [ -n "$PY" ]; then
    (cd "$T" && env -u VMOER_LIB -u LD_LIBRARY_PATH PYTHONPATH="$PYDIR" "$PY" -c '
import sys, vmoer
assert vmoer.__file__.startswith(sys.argv[1]), vmoer.__file__
assert vmoer._lib.LIB_PATH == sys.argv[3] + "/libvmoer.so.0", vmoer._lib.LIB_PATH
with vmoer.Model(sys.argv[2]) as m:
    print(vmoer.version(), m.logits(m.tokenize("Once upon a time")).shape)
' "$PYDIR" "$ROOT/$MODEL" "$P/lib") >"$T/py" 2>&1 && ok || bad "python import from the installed copy: $(tail -3 "$T/py")"
    grep -q "^$ver (" "$T/py" && ok || bad "python output: $(cat "$T/py")"
else
    echo "note: no python3 with numpy: the installed Python package is not imported"
fi
echo "$p passed, $f failed"
[ "$f" -eq 0 ]

#!/bin/sh
# The Python package (python/vmoer, ctypes over libvmoer.so): tests/python/test_*.py with unittest,
# against $BUILD/libvmoer.so and $BUILD/vmoer (bit-for-bit comparisons with the CLI).
# Skips, with a message, when no python3 with NumPy is found (install-deps.sh --tests installs
# Debian's python3-numpy) and in sanitizer builds (their library cannot be loaded into an
# uninstrumented python3 without preloading the sanitizer runtime).
BUILD=${BUILD:-build}
case "$BUILD" in *san*) echo "skipped: sanitizer build ($BUILD)"; echo "0 passed, 0 failed"; exit 0;; esac
PY=""
for c in ${PYTHON:-} python3 /usr/bin/python3; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import numpy' >/dev/null 2>&1; then PY=$c; break; fi
done
if [ -z "$PY" ]; then
    echo "skipped: no python3 with numpy (sh scripts/install-deps.sh --tests installs python3-numpy)"
    echo "0 passed, 0 failed"; exit 0
fi
export VMOER_LIB="$BUILD/libvmoer.so" VMOER_CLI="$BUILD/vmoer" PYTHONPATH=python PYTHONDONTWRITEBYTECODE=1
log=$(mktemp); trap 'rm -f "$log"' EXIT
"$PY" -m unittest discover -s tests/python -p 'test_*.py' -v >"$log" 2>&1
rc=$?
cat "$log"
# unittest's "Ran N tests" and "FAILED (failures=F, errors=E)" as the runner's summary line
n=$(sed -n 's/^Ran \([0-9]*\) tests\{0,1\}.*/\1/p' "$log" | tail -1)
f=$(grep '^FAILED (' "$log" | tail -1 | grep -o '\(failures\|errors\)=[0-9]*' | awk -F= '{s += $2} END {print s + 0}')
[ -n "$n" ] || { n=0; f=1; }
[ $rc -ne 0 ] && [ "$f" -eq 0 ] && f=1
echo "$((n - f)) passed, $f failed"
[ $rc -eq 0 ]

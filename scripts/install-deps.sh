#!/bin/sh
# Installs the Debian/Ubuntu packages vmoer builds and tests with, only those that are missing.
set -e
# build: compiler, JSON, regexes, HTTP server (vmoer serve). tests: clang + libFuzzer runtime + LLVM
# OpenMP (fuzzing), valgrind, chromium (the HTML report is loaded in a headless browser), curl and
# Node.js (the server is tested with curl and the official `openai` npm client), python3 (JSON
# checks of the demo's table.json), python3-numpy (python/vmoer and its tests) and Open MPI (mpirun
# tests of fit/eval/demo across ranks; the build takes it in when pkg-config finds it); with --tests also
# llama.cpp's CPU binaries from npm (node-llama-cpp, scripts/llamacpp.sh), the reference engine of
# the quantize round trip.
PKGS="build-essential pkg-config libjansson-dev libpcre2-dev libmicrohttpd-dev"
TESTS=0
[ "${1:-}" = "--tests" ] && TESTS=1
[ $TESTS = 1 ] && PKGS="$PKGS clang libclang-rt-14-dev libomp-dev valgrind chromium curl python3 python3-numpy libopenmpi-dev openmpi-bin"
missing=""
for p in $PKGS; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
# a Node.js installed some other way (e.g. with its own npm) is kept as it is
[ $TESTS = 1 ] && ! command -v npm >/dev/null 2>&1 && missing="$missing nodejs npm"
if [ -n "$missing" ]; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO=sudo
    echo "installing:$missing" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi
# The `openai` npm package is a test-only dependency: installed into a cache folder outside the
# repository (tests/cli/serve_openai.sh reads the same path), never vendored. The version is pinned
# (4.x runs on the Node.js 18 of Debian 12; later majors need Node.js 22).
if [ $TESTS = 1 ]; then
    dir=${VMOER_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vmoer-tests/node}
    if [ ! -f "$dir/node_modules/openai/package.json" ]; then
        echo "installing: openai (npm) into $dir" >&2
        mkdir -p "$dir"
        npm install --prefix "$dir" --no-audit --no-fund --silent openai@4.95.0 >&2
    fi
fi
# llama.cpp (npm node-llama-cpp) in a cache folder: tests/cli/quantize.sh skips its round trip, with a
# message, when this could not be installed (no npm, Node.js older than 20, no registry)
if [ $TESTS = 1 ]; then
    sh "$(dirname "$0")/llamacpp.sh" >/dev/null || echo "install-deps: llama.cpp reference not installed (the quantize round trip will skip it)" >&2
fi
exit 0

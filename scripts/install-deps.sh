#!/bin/sh
# Installs the Debian/Ubuntu packages vmoer builds and tests with, only those that are missing.
set -e
# build: compiler, JSON, regexes. tests: clang + libFuzzer runtime + LLVM OpenMP (fuzzing), valgrind,
# chromium (the HTML report is loaded in a headless browser); with --tests also node-llama-cpp from npm
# (scripts/llamacpp.sh), when node and npm are there.
PKGS="build-essential pkg-config libjansson-dev libpcre2-dev"
[ "${1:-}" = "--tests" ] && PKGS="$PKGS clang libclang-rt-14-dev libomp-dev valgrind chromium"
missing=""
for p in $PKGS; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO=sudo
    echo "installing:$missing" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi
# tests: llama.cpp's CPU binaries (npm node-llama-cpp) in a cache folder, the reference engine of the
# quantize round trip (tests/cli/quantize.sh skips that part, with a message, when this fails)
if [ "${1:-}" = "--tests" ]; then
    sh "$(dirname "$0")/llamacpp.sh" >/dev/null || echo "install-deps: llama.cpp reference not installed (the quantize round trip will skip it)" >&2
fi
exit 0

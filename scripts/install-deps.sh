#!/bin/sh
# Installs the Debian/Ubuntu packages vmoer builds and tests with, only those that are missing.
set -e
# build: compiler, JSON, regexes. tests: clang + libFuzzer runtime + LLVM OpenMP (fuzzing), valgrind,
# chromium (the HTML report is loaded in a headless browser).
PKGS="build-essential pkg-config libjansson-dev libpcre2-dev"
[ "${1:-}" = "--tests" ] && PKGS="$PKGS clang libclang-rt-14-dev libomp-dev valgrind chromium"
missing=""
for p in $PKGS; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "installing:$missing" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing

#!/bin/sh
# llama.cpp as a reference engine, for benchmarks (bench/vs_llamacpp.sh) and the quantize round trip
# (tests/cli/quantize.sh) only: the prebuilt CPU binaries of the npm package node-llama-cpp, installed
# into a cache folder outside the repository (nothing vendored, nothing linked into vmoer).
#   sh scripts/llamacpp.sh          installs if missing; prints the folder (VMOER_LLAMACPP_DIR)
# Exit 1 with a message on stderr when node/npm are missing or the install fails.
set -e
VERSION=3.22.1
DIR=${VMOER_LLAMACPP_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vmoer/node-llama-cpp-$VERSION}
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || { echo "llamacpp.sh: node/npm not installed" >&2; exit 1; }
major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
[ "$major" -ge 20 ] || { echo "llamacpp.sh: node-llama-cpp $VERSION needs Node.js >= 20 (found $(node --version))" >&2; exit 1; }
if [ -f "$DIR/node_modules/node-llama-cpp/package.json" ] && [ -d "$DIR/node_modules/@node-llama-cpp/linux-x64" ]; then
    echo "$DIR"; exit 0
fi
[ "$(uname -sm)" = "Linux x86_64" ] || { echo "llamacpp.sh: only the linux-x64 binaries are set up" >&2; exit 1; }
mkdir -p "$DIR"
[ -f "$DIR/package.json" ] || echo '{"name": "vmoer-llamacpp-reference", "private": true}' >"$DIR/package.json"
# only the linux-x64 CPU binaries (--omit=optional skips the CUDA/Vulkan ones); no install scripts:
# the package's postinstall would look for a GPU build or compile llama.cpp, neither wanted here
if ! (cd "$DIR" && NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install --no-audit --no-fund --ignore-scripts \
        --omit=optional "node-llama-cpp@$VERSION" "@node-llama-cpp/linux-x64@$VERSION" >"$DIR/npm.log" 2>&1); then
    echo "llamacpp.sh: npm install failed: $(tail -1 "$DIR/npm.log")" >&2; exit 1
fi
echo "$DIR"

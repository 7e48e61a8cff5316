#!/bin/sh
# Builds the BLAS-linked bench binary and runs both bench modes, writing JSON next to the tables.
# Usage (repository root): sh bench/run.sh [MODEL.gguf] [THREADS_LIST] [OUT_DIR]
#   kernel mode on MODEL's shapes (Granite-3B-like shapes without a model); model mode with MODEL.
# Numbers from a busy machine are noise: run it alone. Needs libopenblas-dev for the BLAS column
# (without it the plain build/vmoer runs and the BLAS columns stay 0).
set -e
BUILD=${BUILD:-build}
MODEL=${1:-}
THREADS=${2:-1,$(nproc)}
OUT=${3:-bench/results}
mkdir -p "$OUT"
make BUILD="$BUILD" -j"$(nproc)" >/dev/null
BIN="$BUILD/vmoer"
if make -f bench/Makefile BUILD="$BUILD" >/dev/null 2>&1; then BIN="$BUILD/vmoer-blas"; fi
echo "== kernels ($BIN)"
"$BIN" bench --kernels $MODEL --threads "$THREADS" --batch 64 --json "$OUT/kernels.json"
if [ -n "$MODEL" ]; then
    echo "== model"
    "$BIN" bench "$MODEL" --threads "$THREADS" --batch 1,16,64 --n-prompt 256 --n-gen 64 --json "$OUT/model.json"
fi

#!/bin/sh
# Issue 7's router targets on a Granite-3B-shaped random-weight MoE (D 1536, 40 experts, top-8,
# n_ff_exp 512, 32 layers, heads 24/8, vocab 49155): prompt processing with the deterministic router
# vs KIND (S = 35) on the last 5 MoE layers, same process, interleaved repeats; the wall-time,
# CPU-time and matrix-product FLOPs ratios and peak RSS vs the file size; then the routers alone.
# Usage (repository root): sh bench/router_ab.sh [KIND] [THREADS] [TYPE] [OUT_DIR]
#   KIND vglr-fc, TYPE q8_0 (3.5 GB file) or q4_0 (1.9 GB), in $TMPDIR, deleted afterwards.
# Run it on a quiet machine: the comparison interleaves its sides, but a loaded machine still adds
# noise (the CPU-time ratio is the steadier one then). The weights are mlock'ed (needs root or a
# large enough `ulimit -l`), else page-ins from a reclaimed page cache would dominate.
set -e
BUILD=${BUILD:-build}
KIND=${1:-vglr-fc}
THREADS=${2:-1}
TYPE=${3:-q8_0}
OUT=${4:-bench/results}
mkdir -p "$OUT"
make BUILD="$BUILD" -j"$(nproc)" >/dev/null
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT; trap 'exit 1' INT TERM   # a signal ends the run (the EXIT trap cleans up)
M="$DIR/granite3b-shaped-$TYPE.gguf"
"$BUILD/vmoer" bench --gen-granite "$M" --type "$TYPE"
"$BUILD/vmoer" bench "$M" --ab "$KIND" --bayes-layers 5 --samples 35 --threads "$THREADS" \
    --batch 128 --n-prompt 128 --reps 6 --json "$OUT/router_ab_${KIND}_t$THREADS.json"
rm -f "$M"
"$BUILD/vmoer" bench --routers --threads "1,$(nproc)" --batch 64 --samples 35 --json "$OUT/routers.json"

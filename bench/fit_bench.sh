#!/bin/sh
# Fit throughput (issue 4 and issue 7): `vmoer bench --fit` (training tokens/s, forward + backward +
# AdamW, per trainable router kind and thread count, with and without the hidden-state cache, as
# ratios to the full-model deterministic inference forward of the same run) on
#   1. an upcycled stories260K MoE (5 layers, D 64, 4 experts, top-2), fitting the top 2 layers;
#   2. a random-weight Granite-3B-shaped MoE cut to 4 layers (D 1536, 40 experts, top-8, q8_0),
#      fitting the top 2 layers;
# then a whole `vmoer fit` run (real OBQA items, validation included) with and without the cache.
# Not a test: prints tables and writes JSON. Numbers from a busy machine are noise: run it alone.
# usage (repository root): sh bench/fit_bench.sh [BUILD_DIR] [THREADS_LIST] [OUT_DIR]
set -e
B=${1:-build}; THREADS=${2:-1,$(nproc)}; OUT=${3:-bench/results}
SH=${VMOER_SHARED:-../shared}; V="$B/vmoer"
mkdir -p "$OUT"
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT; trap 'exit 1' INT TERM   # a signal ends the run (the EXIT trap cleans up)
"$V" convert-llama2c "$SH/models/stories260K.bin" "$SH/models/tok512.bin" "$T/d.gguf" >/dev/null
"$V" upcycle "$T/d.gguf" "$T/moe.gguf" --experts 4 --top-k 2 --noise 0.05 >/dev/null
echo "== upcycled stories260K"
"$V" bench "$T/moe.gguf" --fit --bayes-layers 2 --threads "$THREADS" --items 32 --n-prompt 128 --batch 8 \
    --reps 3 --json "$OUT/fit_stories260K_moe.json"
echo "== Granite-3B-shaped, 4 layers"
"$V" bench --gen-granite "$T/g4.gguf" --layers 4 >/dev/null
"$V" bench "$T/g4.gguf" --fit --bayes-layers 2 --threads "$THREADS" --items 8 --n-prompt 64 --batch 4 \
    --reps 2 --json "$OUT/fit_granite4.json"
rm -f "$T/g4.gguf"
echo "== vmoer fit end to end (vglr-mf, layers 3-4, 48 OBQA items, 1 epoch)"
run() {
    "$V" fit "$T/moe.gguf" --data "$SH/data/mcqa/openbookqa/train.jsonl" --limit 48 --router vglr-mf \
        --layers 3-4 --epochs 1 --batch 8 --quiet -o "$T/a.gguf" "$@" | sed -n 's/.* \([0-9.]*\) tok\/s$/\1/p'
}
c=$(run); n=$(run --no-cache)
echo "fit tokens/s: cache $c, no cache $n, ratio $(echo "$c $n" | awk '{ printf "%.2f", ($2 > 0 ? $1 / $2 : 0) }')"

#!/bin/sh
# Fit throughput (training tokens/s through the trained layers) with and without the hidden-state
# cache, on an upcycled stories260K MoE fitting the top 2 of 5 layers. Not a test: prints numbers.
# usage: sh bench/fit_bench.sh [BUILD_DIR] [ITEMS]
B=${1:-build}; N=${2:-48}; SH=${VMOER_SHARED:-../shared}; V="$B/vmoer"
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
"$V" convert-llama2c "$SH/models/stories260K.bin" "$SH/models/tok512.bin" "$T/d.gguf" >/dev/null || exit 1
"$V" upcycle "$T/d.gguf" "$T/moe.gguf" --experts 4 --top-k 2 --noise 0.05 >/dev/null || exit 1
run() {
    "$V" fit "$T/moe.gguf" --data "$SH/data/mcqa/openbookqa/train.jsonl" --limit "$N" --router vglr-mf \
        --layers 3-4 --epochs 1 --batch 8 --quiet -o "$T/a.gguf" "$@" | sed -n 's/.* \([0-9.]*\) tok\/s$/\1/p'
}
c=$(run); n=$(run --no-cache)
echo "fit tokens/s: cache $c, no cache $n, ratio $(echo "$c $n" | awk '{ printf "%.2f", ($2 > 0 ? $1 / $2 : 0) }')"

#!/bin/sh
# Rebuilds the bundled model data/models/stories-moe.gguf (issue 6): the real stories260K
# (karpathy/tinyllamas, llama2.c format) upcycled to 8 experts, top-2, each expert a noisy copy of
# the dense FFN (noise 0.3 * rms) and a fresh router, then every weight trained by `vmoer train` on
# the stories of the cloze *training* split (data/cloze/train-stories.txt; validation on the cloze
# validation stories; the cloze test stories are never seen). Deterministic for a given seed: the
# kernels' results do not depend on the thread count. About 5 minutes; one thread, the fastest for a model this small (OpenMP across 2 threads costs more than it gains at n_embd 64).
# Usage (repository root): sh scripts/make_model.sh [OUT.gguf]
set -e
SH=${VMOER_SHARED:-../shared}
OUT=${1:-data/models/stories-moe.gguf}
V=${VMOER:-build/vmoer}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
mkdir -p "$(dirname "$OUT")"
"$V" convert-llama2c "$SH/models/stories260K.bin" "$SH/models/tok512.bin" "$T/dense.gguf"
"$V" upcycle "$T/dense.gguf" "$T/moe.gguf" --experts 8 --top-k 2 --noise 0.3 --seed 6
"$V" train "$T/moe.gguf" --text data/cloze/train-stories.txt --val data/cloze/validation-stories.txt \
    --steps 300 --seq 256 --batch 8 --lr 3e-4 --lb 0.01 --eval-every 25 --seed 6 --threads 1 -o "$OUT"

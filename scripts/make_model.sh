#!/bin/sh
# Rebuilds the bundled model data/models/stories-moe.gguf (issue 14; docs/model.md says why each
# step is there and what else was measured):
#  1. the real stories260K (karpathy/tinyllamas, llama2.c format) as an F32 GGUF: the dense teacher;
#  2. neuron-partition upcycling (MoEfication): in every layer the 86 neurons of largest
#     |gate| |up| |down| (half of the 172) stay in every expert as a shared core, the other 86 are
#     split by balanced k-means on their gate rows into 8 groups of 11, one per expert; top-2;
#     experts of 97 neurons (active FFN 194 per token, the old model's 344);
#  3. every weight trained by `vmoer train` on the stories of the cloze *training* split
#     (data/cloze/train-stories.txt; the validation stories pick the best step; the test stories
#     are never seen), distilled from the dense model (--kd: the targets are its next-token
#     distributions), routers at 10x the learning rate, load-balancing weight 0.01.
# Deterministic: the kernels' results do not depend on the thread count, and every random draw
# comes from a seeded stream.
# One thread: the fastest for a model this small (OpenMP across 2 threads costs more than it gains
# at n_embd 64), and it leaves the other core free.
# Usage (repository root): sh scripts/make_model.sh [OUT.gguf [SEED]]
# SEED (default 6, the bundled model's) seeds the k-means split and the training stream: other seeds
# give other instances of the same recipe (README: the demo's verdicts across model instances).
set -e
SH=${VMOER_SHARED:-../shared}
OUT=${1:-data/models/stories-moe.gguf}
SEED=${2:-6}
V=${VMOER:-build/vmoer}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
mkdir -p "$(dirname "$OUT")"
"$V" convert-llama2c "$SH/models/stories260K.bin" "$SH/models/tok512.bin" "$T/dense.gguf"
"$V" upcycle "$T/dense.gguf" "$T/moe.gguf" --experts 8 --top-k 2 --partition --core 86 --seed "$SEED"
"$V" train "$T/moe.gguf" --text data/cloze/train-stories.txt --val data/cloze/validation-stories.txt \
    --teacher "$T/dense.gguf" --kd 0.8 --steps 2000 --seq 256 --batch 8 --lr 1e-3 --router-lr-mult 10 --lb 0.01 \
    --eval-every 100 --seed "$SEED" --threads 1 -o "$OUT"

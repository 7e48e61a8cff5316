#!/bin/sh
# The numbers docs/model.md reports for the bundled model (issue 14), measured in one run:
#  1. forward speed: `vmoer bench --threads 1 --batch 64 --n-prompt 256 --n-gen 16` of the reference
#     model and the new one, interleaved ROUNDS times (best of each), and their prompt tok/s ratio;
#  2. specialisation: `vmoer experts` on the whole cloze validation text (loss with the router vs
#     random routing, logit SD, K-th gap, loads, expert difference) for both;
#  3. the story-cloze task, PMI scoring, on the test items (`vmoer eval --score pmi`): accuracy with
#     its 95 % Wilson interval for the dense stories260K, the reference and the new model; and the
#     validation loss of each (the dense one through its exact-copies upcycle, which computes it).
# Usage (repository root): sh scripts/model_report.sh REFERENCE.gguf [NEW.gguf] [OUTDIR]
#   NEW defaults to data/models/stories-moe.gguf, OUTDIR to out/model-report.
set -e
SH=${VMOER_SHARED:-../shared}
V=${VMOER:-build/vmoer}
REF=${1:?usage: sh scripts/model_report.sh REFERENCE.gguf [NEW.gguf] [OUTDIR]}
NEW=${2:-data/models/stories-moe.gguf}
OUT=${3:-out/model-report}
ROUNDS=${ROUNDS:-5}
mkdir -p "$OUT"
"$V" convert-llama2c "$SH/models/stories260K.bin" "$SH/models/tok512.bin" "$OUT/dense.gguf" >/dev/null
"$V" upcycle "$OUT/dense.gguf" "$OUT/dense-copies.gguf" --experts 2 --top-k 1 >/dev/null

best() {   # best prompt tok/s of the bench lines in a file
    awk '$1 == 1 && $2 == 64 { if ($3 > b) b = $3 } END { print b }' "$1"
}
: >"$OUT/bench-ref.txt"; : >"$OUT/bench-new.txt"
for r in $(seq "$ROUNDS"); do
    "$V" bench "$REF" --threads 1 --batch 64 --n-prompt 256 --n-gen 16 | tail -1 >>"$OUT/bench-ref.txt"
    "$V" bench "$NEW" --threads 1 --batch 64 --n-prompt 256 --n-gen 16 | tail -1 >>"$OUT/bench-new.txt"
done
br=$(best "$OUT/bench-ref.txt"); bn=$(best "$OUT/bench-new.txt")
echo "bench prompt tok/s (best of $ROUNDS, interleaved): reference $br, new $bn, ratio $(awk -v a="$bn" -v b="$br" 'BEGIN{printf "%.3f", a / b}')"

for m in ref:"$REF" new:"$NEW" dense:"$OUT/dense-copies.gguf"; do
    "$V" experts "${m#*:}" --text data/cloze/validation-stories.txt --tokens 0 --threads 1 --json "$OUT/experts-${m%%:*}.json" \
        >"$OUT/experts-${m%%:*}.txt"
    echo "experts ${m%%:*}: $(sed -n 's/^loss_router *//p' "$OUT/experts-${m%%:*}.txt") | random $(sed -n 's/^loss_random_routing *//p' "$OUT/experts-${m%%:*}.txt")"
done

for m in dense:"$OUT/dense-copies.gguf" ref:"$REF" new:"$NEW"; do
    "$V" eval "${m#*:}" --data data/cloze/test.jsonl --score pmi --noise-grid none --boot 0 --threads 1 \
        -o "$OUT/eval-${m%%:*}" >/dev/null 2>&1
    python3 - "$OUT/eval-${m%%:*}/metrics.json" "${m%%:*}" <<'PY'
import json, math, sys
r = json.load(open(sys.argv[1]))["results"]["deterministic"]
n, p, z = r["n"], r["acc"], 1.959964
c = (p + z * z / (2 * n)) / (1 + z * z / n)
h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
print("cloze test (PMI) %-5s n %d acc %.3f [%.3f, %.3f] nll %.3f ece %.3f" % (sys.argv[2], n, p, c - h, c + h, r["nll"], r["ece"]))
PY
done

#!/bin/sh
# Ranks x threads on this machine (issue 19, part B): eval items/s and fit tokens/s at
# 1 rank x 1 thread, 1 x 2 and 2 x 1 (mpirun -np 2 ... --threads 1), printed as ratios to the 1 x 1
# run of the same script; then the cost model of docs/mpi.md for OpenBookQA-size fits on 1, 8 and 64
# nodes (bench/mpi_cost_model.sh).
#   eval: `vmoer eval` of the bundled model (data/models/stories-moe.gguf) with fresh VGLR-fc routers
#         (S = 35) on ARC-Easy test (2,376 items); items/s = items / the set's scoring time in
#         metrics.json (rank 0's: scoring and, with 2 ranks, the gather, after which the set is whole);
#         also the whole command's wall time (model load, MPI start-up, cost timing, writing).
#   fit:  `vmoer fit` vglr-mf, 300 OpenBookQA train items, 1 epoch, batch 8; the tok/s it prints
#         (rank 0's: the job's training rows per second of training; under mpirun the data-parallel
#         fit of docs/mpi.md, each rank its share of every batch).
# Best of REPS runs each. Not a test. Numbers from a busy machine are noise (2 shared cores here):
# run it alone. mpirun runs with --bind-to none (the cores are shared with other work).
# usage (repository root): sh bench/mpi_scaling.sh [BUILD_DIR] [REPS]
set -e
B=${1:-build}; REPS=${2:-3}
V="$B/vmoer"
SH=${VMOER_SHARED:-../shared}
M=data/models/stories-moe.gguf
if "$V" --version | grep -q "MPI: not built in"; then echo "$V is built without MPI"; exit 1; fi
MPI="mpirun --oversubscribe --bind-to none"
[ "$(id -u)" -eq 0 ] && MPI="$MPI --allow-run-as-root"
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT; trap 'exit 1' INT TERM

# run_cfg RANKS THREADS CMD...: the command plain (1 rank) or under mpirun
run_cfg() {
    r=$1; t=$2; shift 2
    if [ "$r" -eq 1 ]; then "$V" "$@" --threads "$t"; else $MPI -np "$r" "$V" "$@" --threads "$t"; fi
}

eval_once() {   # prints: items/s wall_s
    rm -rf "$T/e"
    s0=$(date +%s.%N)
    run_cfg "$1" "$2" eval "$M" --data "$SH/data/mcqa/arc-easy/test.jsonl" --router vglr-fc --noise-grid none \
        --time-items 1 --boot 0 -o "$T/e" 2>"$T/err" >/dev/null
    s1=$(date +%s.%N)
    python3 - "$T/e/metrics.json" "$(echo "$s1 $s0" | awk '{ print $1 - $2 }')" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
n = sum('"set":"id"' in l for l in open(sys.argv[1].replace("metrics.json", "questions.jsonl")))
print("%.1f %.2f" % (n / j["config"]["sets"]["id"]["seconds"], float(sys.argv[2])))
PY
}

fit_once() {   # prints: tok/s (rank 0's line)
    run_cfg "$1" "$2" fit "$M" --data "$SH/data/mcqa/openbookqa/train.jsonl" --limit 300 --router vglr-mf \
        --epochs 1 --batch 8 --quiet -o "$T/a.gguf" 2>/dev/null | sed -n 's/.* \([0-9.]*\) tok\/s$/\1/p' | head -1
}

best() { sort -g -r | head -1; }

echo "== mpi_scaling: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-14s %12s %9s %12s %9s %12s %9s\n' "ranks x thr" "eval items/s" "ratio" "eval wall s" "ratio" "fit tok/s" "ratio"
base_e=""; base_w=""; base_f=""
for cfg in "1 1" "1 2" "2 1"; do
    set -- $cfg
    : >"$T/ev"; : >"$T/fv"
    i=0
    while [ $i -lt "$REPS" ]; do
        eval_once "$1" "$2" >>"$T/ev"
        fit_once "$1" "$2" >>"$T/fv"
        i=$((i + 1))
    done
    e=$(cut -d' ' -f1 "$T/ev" | best); w=$(cut -d' ' -f2 "$T/ev" | sort -g | head -1); f=$(best <"$T/fv")
    [ -z "$base_e" ] && { base_e=$e; base_w=$w; base_f=$f; }
    printf '%-14s %12s %9s %12s %9s %12s %9s\n' "$1 x $2" "$e" "$(echo "$e $base_e" | awk '{ printf "%.2f", $1 / $2 }')" \
        "$w" "$(echo "$base_w $w" | awk '{ printf "%.2f", $1 / $2 }')" "$f" "$(echo "$f $base_f" | awk '{ printf "%.2f", $1 / $2 }')"
done
echo "(ratios: throughput against 1 x 1; for wall time 1 x 1's time over this one's, > 1 is faster)"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
sh "$(dirname "$0")/mpi_cost_model.sh"

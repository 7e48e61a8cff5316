#!/bin/sh
# `mpirun -np N vmoer fit` (docs/mpi.md) writes the adapter of a plain `vmoer fit`, byte for byte:
# at N = 1, 2 and 3 (21 items, 16 training: shards of 8/8 and 6/5/5, batches of 4 split unevenly
# across the ranks), for swag (its collection phase is distributed the same way), a LoRA, an
# ensemble on 4 items at N = 3 (empty shards) and --layers auto (its ranking split too);
# a checkpoint written at N = 2 resumes at N = 3 to the same adapter; a rank killed mid-fit (rank
# 1 after a step, rank 0 half-way through a checkpoint, rank 2 in its cache build: VMOER_TEST_KILL
# set for one rank of an MPMD mpirun) ends the job (non-zero, within a bounded time, naming the
# rank) and --resume finishes it to the same adapter; ranks given different model files (one byte changed) or different options are refused
# before any work, naming the rank; only rank 0 writes files and prints.
# Skipped (0 failed) when the binary has no MPI or mpirun is missing. When build-nompi/vmoer (make
# MPI=0) exists, its plain fit must give the same bytes too.
VMOER=${VMOER:-build/vmoer}
M=data/models/stories-moe.gguf
p=0; f=0
ok() { p=$((p + 1)); }
bad() { f=$((f + 1)); echo "FAIL: $1"; }
if "$VMOER" --version | grep -q "MPI: not built in"; then echo "skipped: $VMOER has no MPI"; echo "0 passed, 0 failed"; exit 0; fi
command -v mpirun >/dev/null 2>&1 || { echo "skipped: no mpirun"; echo "0 passed, 0 failed"; exit 0; }
MPI="mpirun --oversubscribe"   # 3 ranks on a 2-core machine
[ "$(id -u)" -eq 0 ] && MPI="$MPI --allow-run-as-root"
# waiting ranks sleep instead of spinning (2 cores shared by up to 3 ranks); changes no result
OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}; export OMP_WAIT_POLICY
T=$(mktemp -d "${TMPDIR:-/tmp}/vmoer_mpi.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT

set -- fit "$M" --data data/cloze/train.jsonl --limit 21 --router vglr-mf --layers 3-4 --epochs 2 --batch 4 \
    --val-frac 0.25 --lr 3e-2 --seed 11 --threads 1 --score loglik-raw --chat-template none --quiet
"$VMOER" "$@" -o "$T/ref.gguf" >"$T/ref.out" 2>"$T/err" && [ -s "$T/ref.gguf" ] && ok || bad "plain fit: $(cat "$T/err")"
for n in 1 2 3; do
    $MPI -np $n "$VMOER" "$@" -o "$T/n$n.gguf" >"$T/out" 2>"$T/err" || bad "mpirun -np $n: $(cat "$T/err")"
    cmp -s "$T/n$n.gguf" "$T/ref.gguf" && ok || bad "mpirun -np $n: the adapter differs from the plain fit's"
    # rank 0 alone prints: its summary (the same numbers as the plain fit's but tok/s) once
    strip() { sed -e 's/^wrote [^:]*://' -e 's/; [0-9]* tok\/s//' "$1"; }
    strip "$T/out" >"$T/o1"; strip "$T/ref.out" >"$T/o2"
    cmp -s "$T/o1" "$T/o2" && ok || bad "mpirun -np $n: the summary differs from the plain fit's: $(cat "$T/out")"
done
[ ! -e "$T/n2.gguf.ckpt" ] && ok || bad "the checkpoint is left after a finished fit"
# the one-process build (make MPI=0) fits the same bytes; built only when asked (a full build is
# longer than this test): make MPI=0 BUILD=build-nompi build-nompi/vmoer, or VMOER_NOMPI=path
NOMPI=${VMOER_NOMPI:-build-nompi/vmoer}
if [ -x "$NOMPI" ]; then
    "$NOMPI" --version | grep -q "MPI: not built in" && ok || bad "$NOMPI is built with MPI"
    "$NOMPI" "$@" -o "$T/nompi.gguf" >/dev/null 2>"$T/err" || bad "MPI=0 build: $(cat "$T/err")"
    cmp -s "$T/nompi.gguf" "$T/ref.gguf" && ok || bad "the MPI=0 build's adapter differs from the MPI build's"
else
    echo "note: no $NOMPI: the MPI=0 build is not compared here (make MPI=0 BUILD=build-nompi build-nompi/vmoer)"
fi

# swag: the MAP loop and the SGD collection phase both sum the batch across ranks
S="fit $M --data data/cloze/train.jsonl --limit 13 --router swag --layers 3-4 --swag-rank 3 --swag-every 1 --epochs 1 \
--batch 4 --seed 7 --threads 1 --score loglik-raw --chat-template none --quiet"
"$VMOER" $S -o "$T/swag.gguf" >/dev/null 2>"$T/err" || bad "plain swag fit: $(cat "$T/err")"
$MPI -np 2 "$VMOER" $S -o "$T/swag2.gguf" >/dev/null 2>"$T/err" || bad "mpirun -np 2 swag: $(cat "$T/err")"
cmp -s "$T/swag2.gguf" "$T/swag.gguf" && ok || bad "swag: mpirun -np 2 differs from the plain fit"

# letter mode with a LoRA (its gradients travel with the routers'); 4 items at N = 3: ranks with no
# validation item and one training item, an ensemble (member draws) scored by pmi
L="fit $M --data data/cloze/train.jsonl --limit 11 --router vglr-fc --layers 3-4 --lora-rank 2 --epochs 1 --batch 4 \
--seed 5 --threads 1 --chat-template none --quiet"
E="fit $M --data data/cloze/train.jsonl --limit 4 --router ensemble --layers 2-4 --epochs 2 --batch 3 --val-frac 0.25 \
--seed 5 --threads 1 --score pmi --chat-template none --quiet"
"$VMOER" $L -o "$T/l.gguf" >/dev/null 2>"$T/err" || bad "plain LoRA fit: $(cat "$T/err")"
$MPI -np 2 "$VMOER" $L -o "$T/l2.gguf" >/dev/null 2>"$T/err" || bad "mpirun -np 2 LoRA: $(cat "$T/err")"
cmp -s "$T/l2.gguf" "$T/l.gguf" && ok || bad "letter mode + LoRA: mpirun -np 2 differs from the plain fit"
"$VMOER" $E -o "$T/e.gguf" >/dev/null 2>"$T/err" || bad "plain ensemble fit: $(cat "$T/err")"
$MPI -np 3 "$VMOER" $E -o "$T/e3.gguf" >/dev/null 2>"$T/err" || bad "mpirun -np 3 ensemble: $(cat "$T/err")"
cmp -s "$T/e3.gguf" "$T/e.gguf" && ok || bad "ensemble, 4 items: mpirun -np 3 differs from the plain fit"

# --layers auto: the stability ranking's prompts split over the ranks (jaccard printed to 4 digits)
U="fit $M --data data/cloze/train.jsonl --limit 21 --router vglr-mf --layers auto --epochs 1 --batch 4 --seed 11 \
--threads 1 --score pmi --chat-template none --quiet"
"$VMOER" $U -o "$T/u.gguf" >"$T/u.out" 2>"$T/err" || bad "plain --layers auto fit: $(cat "$T/err")"
$MPI -np 3 "$VMOER" $U -o "$T/u3.gguf" >"$T/out" 2>"$T/err" || bad "mpirun -np 3 --layers auto: $(cat "$T/err")"
grep jaccard "$T/u.out" >"$T/u.j"
cmp -s "$T/u3.gguf" "$T/u.gguf" && [ -s "$T/u.j" ] && grep jaccard "$T/out" | cmp -s - "$T/u.j" && ok ||
    bad "--layers auto: mpirun -np 3 differs from the plain fit (adapter or jaccard: $(grep jaccard "$T/out"))"

# resume with another N: 3 of the 8 steps at N = 2 (checkpoint), the rest at N = 3
$MPI -np 2 "$VMOER" "$@" -o "$T/r.gguf" --stop-after 3 >/dev/null 2>"$T/err" || bad "N=2 --stop-after 3: $(cat "$T/err")"
[ -s "$T/r.gguf.ckpt" ] && [ ! -e "$T/r.gguf" ] && ok || bad "N=2 --stop-after 3: no checkpoint, or an adapter"
$MPI -np 3 "$VMOER" "$@" -o "$T/r.gguf" --resume >/dev/null 2>"$T/err" || bad "N=3 --resume: $(cat "$T/err")"
cmp -s "$T/r.gguf" "$T/ref.gguf" && ok || bad "a fit resumed at N=3 from N=2's checkpoint differs from the plain fit"

# a rank killed after its 5th step (before that step's checkpoint): mpirun fails naming it, the
# last complete checkpoint is left, --resume (at N = 2 again) finishes to the same adapter
rm -f "$T/k.gguf"*
timeout 120 $MPI -np 1 "$VMOER" "$@" -o "$T/k.gguf" --ckpt-every 1 : \
    -np 1 env VMOER_TEST_KILL=fit-step:5 "$VMOER" "$@" -o "$T/k.gguf" --ckpt-every 1 >"$T/out" 2>&1
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] && ok || bad "a killed rank: mpirun exit $rc (0: not noticed, 124: hung)"
grep -q "rank 1" "$T/out" && ok || bad "a killed rank: mpirun's message does not name rank 1: $(cat "$T/out")"
[ -s "$T/k.gguf.ckpt" ] && [ ! -e "$T/k.gguf" ] && ok || bad "a killed rank: no checkpoint left, or an adapter"
$MPI -np 2 "$VMOER" "$@" -o "$T/k.gguf" --resume >/dev/null 2>"$T/err" || bad "resume after a killed rank: $(cat "$T/err")"
cmp -s "$T/k.gguf" "$T/ref.gguf" && ok || bad "resume after a killed rank: the adapter differs from the plain fit"

# rank 0, the writer, killed half-way through its 4th checkpoint (the 3rd stays, and a temporary
# file), then resumed at N = 3; rank 2 killed while building its cache (no checkpoint yet)
rm -f "$T/k.gguf"*
timeout 120 $MPI -np 1 env VMOER_TEST_KILL=gguf-write:4 "$VMOER" "$@" -o "$T/k.gguf" --ckpt-every 1 : \
    -np 1 "$VMOER" "$@" -o "$T/k.gguf" --ckpt-every 1 >"$T/out" 2>&1
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "rank 0" "$T/out" && ok || bad "rank 0 killed in a checkpoint write: exit $rc, $(cat "$T/out")"
[ -s "$T/k.gguf.ckpt" ] && [ ! -e "$T/k.gguf" ] && ok || bad "rank 0 killed in a checkpoint write: no checkpoint left, or an adapter"
$MPI -np 3 "$VMOER" "$@" -o "$T/k.gguf" --resume >/dev/null 2>"$T/err" || bad "resume at N=3 after rank 0 was killed: $(cat "$T/err")"
cmp -s "$T/k.gguf" "$T/ref.gguf" && ok || bad "resume at N=3 after rank 0 was killed: the adapter differs from the plain fit"
rm -f "$T/k.gguf"*
timeout 120 $MPI -np 2 "$VMOER" "$@" -o "$T/k.gguf" : -np 1 env VMOER_TEST_KILL=fit-cache:2 "$VMOER" "$@" -o "$T/k.gguf" \
    >"$T/out" 2>&1
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "rank 2" "$T/out" && ok || bad "rank 2 killed in its cache build: exit $rc, $(cat "$T/out")"
[ ! -e "$T/k.gguf" ] && ok || bad "rank 2 killed in its cache build: an adapter was written"
$MPI -np 2 "$VMOER" "$@" -o "$T/k.gguf" --resume >/dev/null 2>"$T/err" || bad "a fit after rank 2 was killed: $(cat "$T/err")"
cmp -s "$T/k.gguf" "$T/ref.gguf" && ok || bad "a fit after rank 2 was killed: the adapter differs from the plain fit"

# ranks with different model files: a copy with one byte of the first tensor's data changed
# (inside the sampled checksum's windows) is refused before any work, naming rank 1
cp "$M" "$T/bad.gguf"
# the data section starts at file_bytes - tensor_bytes (the bundled model's tensors are packed, the
# first at offset 0): its first byte is the first tensor's
J=$("$VMOER" info --json "$M")
off=$(( $(echo "$J" | sed -n 's/.*"file_bytes":\([0-9]*\).*/\1/p') - $(echo "$J" | sed -n 's/.*"tensor_bytes":\([0-9]*\).*/\1/p') ))
b=$(od -An -tu1 -j "$off" -N1 "$M" | tr -d ' ')
printf "$(printf '\\%03o' $(( (b + 1) % 256 )))" | dd of="$T/bad.gguf" bs=1 seek="$off" conv=notrunc 2>/dev/null
cmp -s "$M" "$T/bad.gguf" && bad "the copy was not changed"
shift 2   # "fit MODEL"
timeout 120 $MPI -np 1 "$VMOER" fit "$M" "$@" -o "$T/m.gguf" : -np 1 "$VMOER" fit "$T/bad.gguf" "$@" -o "$T/m.gguf" >"$T/out" 2>&1
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] && ok || bad "different model files: mpirun exit $rc"
grep -q "model file.*differs across ranks: rank 1" "$T/out" && ok || bad "different model files: no message naming rank 1: $(cat "$T/out")"
[ ! -e "$T/m.gguf" ] && [ ! -e "$T/m.gguf.ckpt" ] && ok || bad "different model files: a file was written"
# different options (rank 1 another seed): refused by the options' fingerprint
timeout 120 $MPI -np 1 "$VMOER" fit "$M" "$@" -o "$T/m.gguf" : -np 1 "$VMOER" fit "$M" "$@" --seed 12 -o "$T/m.gguf" >"$T/out" 2>&1
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "options.*differs across ranks: rank 1" "$T/out" && ok ||
    bad "different options: exit $rc, $(cat "$T/out")"
echo "$p passed, $f failed"
[ "$f" -eq 0 ]

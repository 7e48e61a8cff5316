#!/bin/sh
# vmoer fit end to end on a tiny upcycled stories260K MoE: a short fit writes an adapter that
# run/logits/trace accept, changes the logits, and is refused by another model; option errors.
VMOER=${VMOER:-build/vmoer}
SH=${VMOER_SHARED:-../shared}
p=0; f=0
ok() { p=$((p + 1)); }
bad() { f=$((f + 1)); echo "FAIL: $1"; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
"$VMOER" convert-llama2c "$SH/models/stories260K.bin" "$SH/models/tok512.bin" "$T/d.gguf" >/dev/null 2>&1 || bad convert
"$VMOER" upcycle "$T/d.gguf" "$T/moe.gguf" --experts 4 --top-k 2 --noise 0.05 >/dev/null 2>&1 || bad upcycle
"$VMOER" upcycle "$T/d.gguf" "$T/moe2.gguf" --experts 4 --top-k 2 --noise 0.05 --seed 9 >/dev/null 2>&1 || bad upcycle2
if "$VMOER" fit "$T/moe.gguf" --data "$SH/data/mcqa/arc-easy/train.jsonl" --limit 8 --router vtsr --layers 4 \
    --epochs 1 --batch 4 --val-frac 0.25 --quiet -o "$T/a.gguf" >"$T/out" 2>&1; then ok; else bad "fit"; cat "$T/out"; fi
grep -q "^wrote $T/a.gguf: vtsr on 1 layers (4)" "$T/out" && ok || bad "fit summary: $(cat "$T/out")"
"$VMOER" info "$T/a.gguf" >"$T/info" 2>&1 && ok || bad "info on the adapter"
"$VMOER" logits "$T/moe.gguf" -p "Once upon a time" -o "$T/l0.npy" >/dev/null 2>&1 || bad logits
"$VMOER" logits "$T/moe.gguf" -p "Once upon a time" --adapter "$T/a.gguf" -o "$T/l1.npy" >/dev/null 2>&1 && ok || bad "logits --adapter"
cmp -s "$T/l0.npy" "$T/l1.npy" && bad "the adapter changes nothing" || ok
"$VMOER" run "$T/moe.gguf" -p "Once upon a time" -n 4 --adapter "$T/a.gguf" >/dev/null 2>&1 && ok || bad "run --adapter"
"$VMOER" trace "$T/moe.gguf" -p "Once" --adapter "$T/a.gguf" -o "$T/t.jsonl" >/dev/null 2>&1 && ok || bad "trace --adapter"
"$VMOER" logits "$T/moe2.gguf" -p "Once" --adapter "$T/a.gguf" -o "$T/l2.npy" >"$T/err" 2>&1 && bad "mismatched adapter accepted" || ok
grep -q "fitted for another model" "$T/err" && ok || bad "refusal message: $(cat "$T/err")"
"$VMOER" fit "$T/moe.gguf" --data "$SH/data/mcqa/arc-easy/train.jsonl" --router deterministic -o "$T/x.gguf" >"$T/err" 2>&1 && bad "deterministic accepted" || ok
grep -q "no trainable parameters" "$T/err" && ok || bad "kind message: $(cat "$T/err")"
grep -q "^vmoer fit: router kind 'deterministic'" "$T/err" && ok || bad "command named once, then the message: $(cat "$T/err")"
"$VMOER" fit "$T/moe.gguf" --data "$SH/data/mcqa/arc-easy/train.jsonl" --router map --layers 9 -o "$T/x.gguf" >"$T/err" 2>&1 && bad "layer 9 accepted" || ok
"$VMOER" fit "$T/moe.gguf" --data "$SH/data/mcqa/arc-easy/train.jsonl" --router map --layers 3-x -o "$T/x.gguf" >/dev/null 2>&1 && bad "bad --layers accepted" || ok
"$VMOER" fit --help | grep -q -- "--resume" && ok || bad help
# stage-1 LoRA on Q/K/V trained with the router: stored in the adapter, applied by logits
if "$VMOER" fit "$T/moe.gguf" --data "$SH/data/mcqa/arc-easy/train.jsonl" --limit 8 --router vtsr --layers 4 --lora-rank 2 \
    --lora-layers 2-4 --epochs 1 --batch 4 --val-frac 0.25 --quiet -o "$T/lora.gguf" >"$T/out" 2>&1; then ok; else bad "fit --lora-rank"; cat "$T/out"; fi
grep -q "+ LoRA rank 2 on Q/K/V (2,3,4)" "$T/out" && ok || bad "LoRA summary: $(cat "$T/out")"
grep -a -q "blk.2.lora.q.a" "$T/lora.gguf" && grep -a -q "vmoer.lora.rank" "$T/lora.gguf" && ok || bad "LoRA tensors in the adapter"
"$VMOER" logits "$T/moe.gguf" -p "Once upon a time" --adapter "$T/lora.gguf" -o "$T/l3.npy" >/dev/null 2>&1 && ok || bad "logits with a LoRA adapter"
"$VMOER" fit "$T/moe.gguf" --data "$SH/data/mcqa/arc-easy/train.jsonl" --router map --lora-layers 1 -o "$T/x.gguf" >"$T/err" 2>&1 && bad "--lora-layers without rank accepted" || ok
grep -q "needs --lora-rank" "$T/err" && ok || bad "lora message: $(cat "$T/err")"
# swag: MAP phase, then the collection phase (4 snapshots, one every 2 steps); the adapter carries
# the posterior and routes logits; bad --swag-* values and --swag-* on another kind are refused in one line
if "$VMOER" fit "$T/moe.gguf" --data "$SH/data/mcqa/arc-easy/train.jsonl" --limit 8 --router swag --layers 4 \
    --epochs 1 --batch 4 --val-frac 0.25 --swag-rank 4 --swag-every 2 --quiet -o "$T/swag.gguf" >"$T/out" 2>&1; then ok; else bad "fit swag"; cat "$T/out"; fi
grep -q "^wrote $T/swag.gguf: swag on 1 layers (4)" "$T/out" && ok || bad "swag summary: $(cat "$T/out")"
grep -qE "^swag: 4 snapshots, one every 2 SGD steps at lr [0-9.e+-]+; val nll [0-9.]+, val acc [0-9.]+ \(sampled\)$" "$T/out" && ok || bad "swag line: $(cat "$T/out")"
grep -a -q "blk.4.swag.dev" "$T/swag.gguf" && grep -a -q "vmoer.router.swag_rank" "$T/swag.gguf" && ok || bad "swag tensors and keys in the adapter"
"$VMOER" logits "$T/moe.gguf" -p "Once upon a time" --adapter "$T/swag.gguf" -o "$T/l4.npy" >/dev/null 2>&1 && ok || bad "logits with a swag adapter"
for o in "--swag-rank 1" "--swag-rank 257" "--swag-rank x" "--swag-every 0" "--swag-every -3" "--swag-every 2.5"; do
    "$VMOER" fit "$T/moe.gguf" --data "$SH/data/mcqa/arc-easy/train.jsonl" --router swag $o -o "$T/x.gguf" >/dev/null 2>"$T/err"
    rc=$?
    flag=${o%% *}
    [ $rc -ne 0 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q -- "^vmoer fit: $flag expects an integer" "$T/err" && ok || bad "$o: exit $rc: $(cat "$T/err")"
done
"$VMOER" fit "$T/moe.gguf" --data "$SH/data/mcqa/arc-easy/train.jsonl" --router map --swag-rank 4 -o "$T/x.gguf" >/dev/null 2>"$T/err" && bad "--swag-rank with map accepted" || ok
grep -q -- "^vmoer fit: --swag-rank applies to --router swag only$" "$T/err" && ok || bad "swag option on map: $(cat "$T/err")"
"$VMOER" fit --help | grep -q -- "--swag-every" && "$VMOER" fit --help | grep -qE -- "--router KIND .*swag" && ok || bad "fit --help: swag"
# --map-from: swag's first phase is a map fit; collecting from the finished map adapter gives the
# same adapter bytes as the whole swag fit (settings under which the MAP loop improves on its start,
# so the kept parameters are not the initial head); wrong adapters and combinations are refused
C="data/models/stories-moe.gguf --data data/cloze/train.jsonl --limit 200 --layers 0-1 --epochs 2 --batch 8 --lr 1e-3 --seed 3 --threads 1 --score pmi --chat-template none"
S="--swag-rank 4 --swag-every 3"
"$VMOER" fit $C --router map -o "$T/mf-map.gguf" >"$T/out" 2>&1 && ok || bad "map fit for --map-from: $(cat "$T/out")"
grep -q "best epoch [12]$" "$T/out" && ok || bad "the map fit did not improve on its start (the check below would be trivial): $(cat "$T/out")"
"$VMOER" fit $C $S --router swag -o "$T/mf-swag.gguf" >/dev/null 2>&1 && ok || bad "swag fit"
"$VMOER" fit $C $S --router swag --map-from "$T/mf-map.gguf" -o "$T/mf-swag2.gguf" >"$T/out" 2>&1 && ok || bad "swag --map-from: $(cat "$T/out")"
cmp -s "$T/mf-swag.gguf" "$T/mf-swag2.gguf" && ok || bad "swag --map-from differs from the whole swag fit"
grep -q "^MAP phase from $T/mf-map.gguf: val nll" "$T/out" && ok || bad "--map-from summary: $(cat "$T/out")"
"$VMOER" fit $C --router vglr-mf --map-from "$T/mf-map.gguf" -o "$T/x.gguf" >/dev/null 2>"$T/err" && bad "--map-from with vglr-mf accepted" || ok
grep -q -- "^vmoer fit: --map-from applies to --router swag only$" "$T/err" && ok || bad "--map-from on vglr-mf: $(cat "$T/err")"
"$VMOER" fit $C $S --router swag --map-from "$T/mf-swag.gguf" -o "$T/x.gguf" >/dev/null 2>"$T/err" && bad "a swag adapter as --map-from accepted" || ok
grep -q "is a 'swag' adapter, not map" "$T/err" && ok || bad "--map-from of a swag adapter: $(cat "$T/err")"
C1=$(echo "$C" | sed 's/--layers 0-1/--layers 1-2/')
"$VMOER" fit $C1 $S --router swag --map-from "$T/mf-map.gguf" -o "$T/x.gguf" >/dev/null 2>"$T/err" && bad "--map-from of other layers accepted" || ok
grep -q "covers other layers than the fit's" "$T/err" && ok || bad "--map-from layers: $(cat "$T/err")"
"$VMOER" fit $C $S --router swag --map-from "$T/missing.gguf" -o "$T/x.gguf" >/dev/null 2>"$T/err" && bad "missing --map-from accepted" || ok
[ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "missing.gguf" "$T/err" && ok || bad "missing --map-from: $(cat "$T/err")"
"$VMOER" fit $C $S --router swag --map-from "$T/mf-map.gguf" --resume -o "$T/x.gguf" >/dev/null 2>"$T/err" && bad "--map-from --resume accepted" || ok
[ ! -e "$T/x.gguf" ] && ok || bad "a refused fit wrote an adapter"
"$VMOER" eval --help | grep -qE -- "--router KIND .*swag" && ok || bad "eval --help: swag"
# numerical guard: lr 10 makes VGLR-fc's covariance overflow at step 2; the fit stops with one line,
# writes no adapter and keeps the checkpoint of step 1 (the last good state)
"$VMOER" fit "$T/moe.gguf" --data "$SH/data/mcqa/openbookqa/train.jsonl" --limit 24 --router vglr-fc --layers 3-4 \
    --lr 10 --epochs 2 --batch 4 --ckpt-every 1 --quiet --threads 1 -o "$T/div.gguf" >"$T/out" 2>"$T/err"
rc=$?
[ $rc -eq 1 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "diverged at step 2" "$T/err" && grep -q "keeps the last good state" "$T/err" \
    && ok || bad "diverging fit: exit $rc: $(cat "$T/err")"
[ ! -e "$T/div.gguf" ] && [ -s "$T/div.gguf.ckpt" ] && ok || bad "diverging fit: adapter written or checkpoint lost: $(ls "$T")"
echo "$p passed, $f failed"
[ "$f" -eq 0 ]

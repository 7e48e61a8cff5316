#!/bin/sh
# Interrupted fits lose nothing: `vmoer fit` is killed with SIGKILL at several points (random delays
# from a fixed list, so the test is repeatable in intent), then `--resume` finishes it; the adapter must
# be byte-identical to an uninterrupted run with the same seed and thread count, and no partial
# adapter may ever exist under the final name.
VMOER=${VMOER:-build/vmoer}
SH=${VMOER_SHARED:-../shared}
T=$(mktemp -d "${TMPDIR:-/tmp}/vmoer_kill.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
p=0; f=0
ok() { p=$((p + 1)); }
bad() { f=$((f + 1)); echo "FAIL: $1"; }
"$VMOER" convert-llama2c "$SH/models/stories260K.bin" "$SH/models/tok512.bin" "$T/d.gguf" >/dev/null 2>&1 || bad convert
"$VMOER" upcycle "$T/d.gguf" "$T/moe.gguf" --experts 4 --top-k 2 --noise 0.05 >/dev/null 2>&1 || bad upcycle
set -- fit "$T/moe.gguf" --data "$SH/data/mcqa/openbookqa/train.jsonl" --limit 40 --router vglr-mf \
    --layers 3-4 --epochs 3 --batch 4 --seed 5 --threads 1 --ckpt-every 1 --quiet
start=$(date +%s.%N)
"$VMOER" "$@" -o "$T/ref.gguf" >/dev/null 2>"$T/err" && [ -s "$T/ref.gguf" ] && ok || bad "uninterrupted fit: $(cat "$T/err")"
dur=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
# kill points as fractions of the uninterrupted run time (early, middle, late)
interrupted=0
for frac in 0.15 0.4 0.65 0.9; do
    rm -f "$T/k.gguf" "$T/k.gguf.ckpt"
    "$VMOER" "$@" -o "$T/k.gguf" >/dev/null 2>&1 &   # $! is vmoer itself, not a subshell
    pid=$!
    sleep "$(awk -v d="$dur" -v f="$frac" 'BEGIN { print d * f }')"
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    kill -0 "$pid" 2>/dev/null && bad "kill at $frac: process still alive"
    [ -e "$T/k.gguf" ] || interrupted=$((interrupted + 1))
    if [ -e "$T/k.gguf" ] && ! cmp -s "$T/k.gguf" "$T/ref.gguf"; then bad "kill at $frac: a partial adapter under the final name"; fi
    "$VMOER" "$@" -o "$T/k.gguf" --resume >/dev/null 2>"$T/err" || bad "resume after kill at $frac: $(cat "$T/err")"
    cmp -s "$T/k.gguf" "$T/ref.gguf" && ok || bad "kill at $frac: resumed adapter differs from the uninterrupted one"
done
# the kills must really have cut runs short (else --resume was never exercised)
[ "$interrupted" -ge 2 ] && ok || bad "only $interrupted of 4 kills interrupted a run"
echo "$p passed, $f failed"
[ "$f" -eq 0 ]

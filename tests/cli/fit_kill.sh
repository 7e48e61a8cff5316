#!/bin/sh
# Interrupted fits lose nothing: `vmoer fit` is killed with SIGKILL at several points (random delays
# from a fixed list, so the test is repeatable in intent), then `--resume` finishes it; the adapter must
# be byte-identical to an uninterrupted run with the same seed and thread count, and no partial
# adapter may ever exist under the final name. Letter mode (OBQA) and pmi-scored story cloze (tree
# batches).
VMOER=${VMOER:-build/vmoer}
SH=${VMOER_SHARED:-../shared}
T=$(mktemp -d "${TMPDIR:-/tmp}/vmoer_kill.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
p=0; f=0
ok() { p=$((p + 1)); }
bad() { f=$((f + 1)); echo "FAIL: $1"; }
"$VMOER" convert-llama2c "$SH/models/stories260K.bin" "$SH/models/tok512.bin" "$T/d.gguf" >/dev/null 2>&1 || bad convert
"$VMOER" upcycle "$T/d.gguf" "$T/moe.gguf" --experts 4 --top-k 2 --noise 0.05 >/dev/null 2>&1 || bad upcycle
# kill_case NAME FRACTIONS ARGS...: an uninterrupted fit, then one killed at each fraction of its
# run time and resumed
kill_case() {
    name=$1 fracs=$2; shift 2
    set -- fit "$T/moe.gguf" "$@" --seed 5 --threads 1 --ckpt-every 1 --quiet
    start=$(date +%s.%N)
    "$VMOER" "$@" -o "$T/ref.gguf" >/dev/null 2>"$T/err" && [ -s "$T/ref.gguf" ] && ok || bad "$name: uninterrupted fit: $(cat "$T/err")"
    dur=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
    interrupted=0 n_kill=0
    for frac in $fracs; do
        n_kill=$((n_kill + 1))
        rm -f "$T/k.gguf" "$T/k.gguf.ckpt"
        "$VMOER" "$@" -o "$T/k.gguf" >/dev/null 2>&1 &   # $! is vmoer itself, not a subshell
        pid=$!
        sleep "$(awk -v d="$dur" -v f="$frac" 'BEGIN { print d * f }')"
        kill -9 "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        kill -0 "$pid" 2>/dev/null && bad "$name: kill at $frac: process still alive"
        [ -e "$T/k.gguf" ] || interrupted=$((interrupted + 1))
        if [ -e "$T/k.gguf" ] && ! cmp -s "$T/k.gguf" "$T/ref.gguf"; then bad "$name: kill at $frac: a partial adapter under the final name"; fi
        "$VMOER" "$@" -o "$T/k.gguf" --resume >/dev/null 2>"$T/err" || bad "$name: resume after kill at $frac: $(cat "$T/err")"
        cmp -s "$T/k.gguf" "$T/ref.gguf" && ok || bad "$name: kill at $frac: resumed adapter differs from the uninterrupted one"
    done
    # the kills must really have cut runs short (else --resume was never exercised)
    [ "$interrupted" -ge $((n_kill / 2)) ] && ok || bad "$name: only $interrupted of $n_kill kills interrupted a run"
}
# kill points as fractions of the uninterrupted run time (early, middle, late)
kill_case letter "0.15 0.4 0.65 0.9" --data "$SH/data/mcqa/openbookqa/train.jsonl" --limit 40 --router vglr-mf \
    --layers 3-4 --epochs 3 --batch 4
# story cloze scored by pmi: every item one tree (context once, two roots) forward and backward
kill_case pmi "0.3 0.7" --data data/cloze/train.jsonl --limit 24 --score pmi --router vglr-mf \
    --layers 3-4 --epochs 2 --batch 4
echo "$p passed, $f failed"
[ "$f" -eq 0 ]

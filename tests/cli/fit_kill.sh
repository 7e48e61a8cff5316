#!/bin/sh
# Interrupted fits lose nothing: `vmoer fit` kills itself with SIGKILL at points named in advance
# (VMOER_TEST_KILL, src/util/testhook.h: during the hidden-state cache build, right after an
# optimiser step and before its checkpoint (mid-run and after the last step), half-way through
# writing a checkpoint and half-way through writing the adapter), then `--resume` finishes it. Each resumed adapter must be
# byte-identical to an uninterrupted run with the same seed and thread count, no partial adapter
# may ever exist under the final name, and the run must have moved its routers: the adapter differs
# from the initial head (read from a step-1 checkpoint, whose "best" tensor still holds it) and its
# best epoch is not 0, so byte identity is not the trivial identity of two untrained heads.
# The kills happen at fixed steps, not at fractions of a measured run time: the outcome does not
# depend on the machine's speed.
VMOER=${VMOER:-build/vmoer}
M=data/models/stories-moe.gguf
T=$(mktemp -d "${TMPDIR:-/tmp}/vmoer_kill.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
p=0; f=0
ok() { p=$((p + 1)); }
bad() { f=$((f + 1)); echo "FAIL: $1"; }
# 24 items, a quarter for validation: 18 training items, 5 steps per epoch, 3 epochs = 15 steps,
# a checkpoint after every step (15 GGUF writes) and then the adapter (the 16th); settings under
# which the bundled model's fit improves after epoch 1 and runs all 3 epochs (no early stop)
set -- fit "$M" --data data/cloze/train.jsonl --limit 24 --router vglr-mf --layers 3-4 --epochs 3 --batch 4 \
    --val-frac 0.25 --lr 3e-2 --seed 11 --threads 1 --ckpt-every 1 --score loglik-raw --chat-template none --quiet
"$VMOER" "$@" -o "$T/ref.gguf" >"$T/out" 2>"$T/err" && [ -s "$T/ref.gguf" ] && ok || bad "uninterrupted fit: $(cat "$T/err")"

# the routers moved: a best epoch after the first, and adapter bytes unlike the initial head's
best=$(sed -n 's/.*best epoch \([0-9]*\).*/\1/p' "$T/out")
[ -n "$best" ] && [ "$best" -ge 1 ] && ok || bad "the reference fit kept its initial head (best epoch '$best'): $(cat "$T/out")"
K=$("$VMOER" info --json "$T/ref.gguf" | sed -n 's/.*"tensor_bytes":\([0-9]*\).*/\1/p')   # the adapter's tensor data
# step 1 ends no epoch, so the checkpoint's last tensor, "best" (the parameters in the adapter's
# order; each a multiple of the 32-byte alignment, so no padding), still holds the initial head
"$VMOER" "$@" -o "$T/init.gguf" --stop-after 1 >/dev/null 2>"$T/err" || bad "--stop-after 1: $(cat "$T/err")"
[ "${K:-0}" -gt 0 ] && tail -c "$K" "$T/init.gguf.ckpt" >"$T/head" && ok || bad "no tensor bytes in the adapter"
tail -c "$K" "$T/ref.gguf" | cmp -s - "$T/head" && bad "the adapter equals the initial head" || ok

# kill_resume POINT:N WHY FIT-ARGS...: the run must die of SIGKILL at POINT's N-th pass, leave no
# adapter under the final name (a cut write: its temporary file only), and resume to the reference
kill_resume() {
    point=$1; why=$2; shift 2
    rm -f "$T/k.gguf" "$T/k.gguf.ckpt" "$T"/k.gguf*.tmp.*
    VMOER_TEST_KILL=$point "$VMOER" "$@" -o "$T/k.gguf" >/dev/null 2>&1
    rc=$?
    [ $rc -eq 137 ] && ok || bad "kill at $point ($why): exit $rc, expected 137 (SIGKILL)"
    [ ! -e "$T/k.gguf" ] && ok || bad "kill at $point ($why): an adapter exists under the final name"
    case $point in gguf-write:*)
        ls "$T"/k.gguf*.tmp.* >/dev/null 2>&1 && ok || bad "kill at $point: no half-written temporary file";;
    esac
    "$VMOER" "$@" -o "$T/k.gguf" --resume >/dev/null 2>"$T/err" || bad "resume after a kill at $point ($why): $(cat "$T/err")"
    cmp -s "$T/k.gguf" "$T/ref.gguf" && ok || bad "kill at $point ($why): the resumed adapter differs from the uninterrupted one"
}
kill_resume fit-cache:5 "during the cache build, no checkpoint yet" "$@"
kill_resume fit-step:8 "mid-run, step 7's checkpoint left" "$@"
kill_resume fit-step:15 "after the last step, before its checkpoint" "$@"
kill_resume gguf-write:4 "half-way through step 4's checkpoint" "$@"
kill_resume gguf-write:16 "half-way through the adapter, every checkpoint written" "$@"
echo "$p passed, $f failed"
[ "$f" -eq 0 ]

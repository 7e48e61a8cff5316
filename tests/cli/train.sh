#!/bin/sh
# vmoer train end to end on an upcycled stories260K MoE and a slice of the cloze stories: a short run
# lowers the validation loss and writes a model the other commands load; an interrupted run resumed
# with --resume writes the same bytes as an uninterrupted one; bad inputs get one line and exit 1.
VMOER=${VMOER:-build/vmoer}
SH=${VMOER_SHARED:-../shared}
p=0; f=0
ok() { p=$((p + 1)); }
bad() { f=$((f + 1)); echo "FAIL: $1"; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
"$VMOER" convert-llama2c "$SH/models/stories260K.bin" "$SH/models/tok512.bin" "$T/d.gguf" >/dev/null 2>&1 || bad convert
"$VMOER" upcycle "$T/d.gguf" "$T/moe.gguf" --experts 4 --top-k 2 --noise 0.2 >/dev/null 2>&1 || bad upcycle
# 60 stories to train on, 10 to validate on (blank-line separated, as the files are)
awk 'BEGIN{RS="";ORS="\n\n"} NR<=60' data/cloze/train-stories.txt >"$T/tr.txt"
awk 'BEGIN{RS="";ORS="\n\n"} NR<=10' data/cloze/validation-stories.txt >"$T/va.txt"
A="--text $T/tr.txt --val $T/va.txt --steps 24 --seq 64 --batch 4 --lr 3e-4 --eval-every 12 --eval-windows 8 --threads 1 --seed 3"
if "$VMOER" train "$T/moe.gguf" $A -o "$T/a.gguf" >"$T/out" 2>"$T/err"; then ok; else bad "train: $(cat "$T/err")"; fi
grep -q "^wrote $T/a.gguf: .* parameters, 24 steps" "$T/out" && ok || bad "summary: $(cat "$T/out")"
v0=$(sed -n 's/^val loss \([0-9.]*\) -> \([0-9.]*\).*/\1/p' "$T/out"); v1=$(sed -n 's/^val loss \([0-9.]*\) -> \([0-9.]*\).*/\2/p' "$T/out")
awk -v a="$v0" -v b="$v1" 'BEGIN{exit !(b < a)}' && ok || bad "validation loss did not fall: $v0 -> $v1"
grep -q "step 12/24" "$T/err" && ok || bad "no per-validation line: $(cat "$T/err")"
"$VMOER" run "$T/a.gguf" -p "Once upon a time" -n 8 --temp 0 >/dev/null 2>&1 && ok || bad "run on the trained model"
grep -a -q "vmoer.train.steps" "$T/a.gguf" && ok || bad "train keys in the output"
# kill-free interruption: stop after 5 steps, resume, compare bytes with the uninterrupted run
"$VMOER" train "$T/moe.gguf" $A -o "$T/b.gguf" --stop-after 13 --quiet >"$T/out2" 2>&1
grep -q "stopped after 13/24 steps" "$T/out2" && [ -s "$T/b.gguf.ckpt" ] && [ ! -e "$T/b.gguf" ] && ok || bad "stop-after: $(cat "$T/out2")"
"$VMOER" train "$T/moe.gguf" $A -o "$T/b.gguf" --resume --quiet >"$T/out3" 2>&1 && ok || bad "resume: $(cat "$T/out3")"
cmp -s "$T/a.gguf" "$T/b.gguf" && ok || bad "resumed run differs from the uninterrupted one"
[ ! -e "$T/b.gguf.ckpt" ] && ok || bad "checkpoint left after a finished run"
# a resume with other options is refused
"$VMOER" train "$T/moe.gguf" $A -o "$T/c.gguf" --stop-after 2 --quiet >/dev/null 2>&1
"$VMOER" train "$T/moe.gguf" $A --lr 1e-3 -o "$T/c.gguf" --resume --quiet >/dev/null 2>"$T/err" && bad "mismatched resume accepted" || ok
grep -q "other options" "$T/err" && ok || bad "mismatch message: $(cat "$T/err")"
# from scratch: the loss starts near ln(512) = 6.24
"$VMOER" train "$T/moe.gguf" --text "$T/tr.txt" --val "$T/va.txt" --steps 2 --seq 32 --batch 2 --eval-windows 2 --from-scratch --quiet --threads 1 -o "$T/s.gguf" >"$T/out" 2>&1
v0=$(sed -n 's/^val loss \([0-9.]*\) -> .*/\1/p' "$T/out")
awk -v a="$v0" 'BEGIN{exit !(a > 5.9 && a < 6.6)}' && ok || bad "from-scratch initial loss $v0: $(cat "$T/out")"
# distillation from the dense model and a faster router: the run works, the file says so, and a
# teacher changes the result (the soft targets enter the gradient)
"$VMOER" train "$T/moe.gguf" $A --teacher "$T/d.gguf" --kd 0.5 --router-lr-mult 5 --quiet -o "$T/k.gguf" >"$T/out" 2>&1 && ok || bad "kd: $(cat "$T/out")"
grep -a -q "vmoer.train.kd" "$T/k.gguf" && grep -a -q "vmoer.train.router_lr_mult" "$T/k.gguf" && ok || bad "kd keys"
cmp -s "$T/a.gguf" "$T/k.gguf" && bad "distillation changed nothing" || ok
# bad inputs: one line, exit 1, nothing written
chk() {   # name expected-text command...
    n=$1; e=$2; shift 2
    "$@" >"$T/o" 2>"$T/e"; rc=$?
    [ $rc -eq 1 ] && [ "$(wc -l <"$T/e")" -eq 1 ] && grep -q -- "$e" "$T/e" && ok || bad "$n: exit $rc: $(cat "$T/e")"
}
chk "no text" "--text FILE is required" "$VMOER" train "$T/moe.gguf" -o "$T/x.gguf"
chk "missing text" "nope.txt" "$VMOER" train "$T/moe.gguf" --text "$T/nope.txt" -o "$T/x.gguf"
chk "bad steps" "--steps" "$VMOER" train "$T/moe.gguf" --text "$T/tr.txt" --steps 0 -o "$T/x.gguf"
chk "kd without teacher" "--kd needs --teacher" "$VMOER" train "$T/moe.gguf" --text "$T/tr.txt" --kd 0.5 -o "$T/x.gguf"
chk "bad kd" "--kd" "$VMOER" train "$T/moe.gguf" --text "$T/tr.txt" --teacher "$T/d.gguf" --kd 1.5 -o "$T/x.gguf"
chk "missing teacher" "nope.gguf" "$VMOER" train "$T/moe.gguf" --text "$T/tr.txt" --teacher "$T/nope.gguf" -o "$T/x.gguf"
chk "bad router lr" "--router-lr-mult" "$VMOER" train "$T/moe.gguf" --text "$T/tr.txt" --router-lr-mult 0 -o "$T/x.gguf"
"$VMOER" convert-llama2c "$SH/models/stories260K.bin" "$SH/models/tok512.bin" "$T/q.gguf" >/dev/null 2>&1
"$VMOER" upcycle "$T/q.gguf" "$T/q8.gguf" --experts 2 --top-k 1 >/dev/null 2>&1
printf 'one story only\n' >"$T/one.txt"
chk "too few documents" "too few" "$VMOER" train "$T/moe.gguf" --text "$T/one.txt" -o "$T/x.gguf"
chk "not a gguf" "magic" "$VMOER" train "$T/tr.txt" --text "$T/tr.txt" -o "$T/x.gguf"
[ ! -e "$T/x.gguf" ] && ok || bad "a failed run wrote its output"
"$VMOER" train --help | grep -q -- "--from-scratch" && ok || bad help
echo "$p passed, $f failed"
[ "$f" -eq 0 ]

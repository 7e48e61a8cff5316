#!/bin/sh
# The hostile-user reproducers of reliability round 2 (docs/reliability.md), each through the CLI:
# a tampered checkpoint, --resume with other data of the same size, NaN/Inf weights in a model and
# in an adapter, a FIFO as model or data, terminal escapes in a model's architecture string, a
# CSV-breaking --ood name, and the smaller ones (adapter layer list of the wrong type, sample count
# above INT_MAX, a file named twice in one message, `--val-frac 0` printing nan). Each must give
# one stderr line naming what and where and exit 1 (or, for the CSV, quoted fields). Files are
# made by vmoer itself and patched at offsets found with grep -b (no other tools needed).
VMOER=${VMOER:-build/vmoer}
M=data/models/stories-moe.gguf
D=data/cloze
T=$(mktemp -d "${TMPDIR:-/tmp}/vmoer_repro.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
p=0; f=0
ok() { p=$((p + 1)); }
bad() { f=$((f + 1)); echo "FAIL: $1"; }

# one_line NAME PATTERN: the last command exited 1 with one stderr line ($T/err) matching PATTERN
one_line() {
    if [ "$rc" -eq 1 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q -- "$2" "$T/err"; then ok
    else bad "$1: exit $rc, stderr: $(head -c 400 "$T/err")"; fi
}
# offset FILE STRING: byte offset of the first occurrence of STRING in FILE
offset() { grep -obUa -- "$2" "$1" | head -1 | cut -d: -f1; }
# poke FILE OFFSET OCTAL-ESCAPES: overwrite bytes in place
poke() { printf "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc 2>/dev/null; }

FIT="fit $M --router map --lr 3e-2 --layers 3-4 --epochs 2 --batch 4 --score loglik-raw --chat-template none --val-frac 0 --quiet --threads 1"

# ---- 1. a checkpoint whose ckpt.step is -1 (8 bytes 0xff over its value): was a heap overflow
"$VMOER" $FIT --data "$D/train.jsonl" --limit 12 --stop-after 2 -o "$T/x.gguf" >/dev/null 2>"$T/err" || bad "fit --stop-after: $(cat "$T/err")"
o=$(offset "$T/x.gguf.ckpt" ckpt.step)
poke "$T/x.gguf.ckpt" $((o + 9 + 4)) '\377\377\377\377\377\377\377\377'   # key, u32 type, value
"$VMOER" $FIT --data "$D/train.jsonl" --limit 12 --resume -o "$T/x.gguf" >/dev/null 2>"$T/err"; rc=$?
one_line "resume from ckpt.step -1" "checkpoint .*x.gguf.ckpt: corrupt: ckpt.step = -1 is outside \[1, 6\]"
[ ! -e "$T/x.gguf" ] && ok || bad "an adapter was written from a corrupt checkpoint"
# ... and ckpt.stopped = 1 in the middle of an epoch (accepted before, then a different adapter)
"$VMOER" $FIT --data "$D/train.jsonl" --limit 12 --stop-after 2 -o "$T/x.gguf" >/dev/null 2>&1
o=$(offset "$T/x.gguf.ckpt" ckpt.stopped)
poke "$T/x.gguf.ckpt" $((o + 12 + 4)) '\001'
"$VMOER" $FIT --data "$D/train.jsonl" --limit 12 --resume -o "$T/x.gguf" >/dev/null 2>"$T/err"; rc=$?
one_line "resume with ckpt.stopped 1" "corrupt: ckpt.stopped = 1, expected 0"

# ---- 3. --resume with another file of the same size
head -n 12 "$D/train.jsonl" >"$T/a.jsonl"; sed -n 13,24p "$D/train.jsonl" >"$T/b.jsonl"
"$VMOER" $FIT --data "$T/a.jsonl" --stop-after 2 -o "$T/y.gguf" >/dev/null 2>&1
"$VMOER" $FIT --data "$T/b.jsonl" --resume -o "$T/y.gguf" >/dev/null 2>"$T/err"; rc=$?
one_line "resume with other items of the same count" "written by a fit with other options, data or model"
"$VMOER" $FIT --data "$T/a.jsonl" --resume -o "$T/y.gguf" >/dev/null 2>"$T/err" && [ -s "$T/y.gguf" ] && ok ||
    bad "resume with the same data: $(cat "$T/err")"

# ---- 5. NaN / Inf weights: in the model (a float in the middle of the data), in an adapter (its last float)
data_at=$("$VMOER" info "$M" | sed -n 's/.*data at \([0-9]*\).*/\1/p')
cp "$M" "$T/nan.gguf"; poke "$T/nan.gguf" $((data_at + 400000)) '\000\000\300\177'   # f32 NaN
"$VMOER" run "$T/nan.gguf" -p "Once" -n 2 >/dev/null 2>"$T/err"; rc=$?
one_line "model with a NaN weight" "tensor 'blk.0.ffn_gate_exps.weight' holds a non-finite f32 value (NaN or Inf) at element 5088"
cp "$T/y.gguf" "$T/inf.gguf"; poke "$T/inf.gguf" $(($(wc -c <"$T/y.gguf") - 4)) '\000\000\200\377'   # -Inf
EVAL="eval $M --data $D/test.jsonl --limit 4 --score loglik-raw --chat-template none --noise-grid none --boot 10 --time-items 1"
"$VMOER" $EVAL --adapter "$T/inf.gguf" -o "$T/ev_inf" >/dev/null 2>"$T/err"; rc=$?
one_line "adapter with an Inf weight" "adapter .*inf.gguf: tensor blk.4.map.w_r holds a non-finite f32 value"
[ ! -e "$T/ev_inf" ] && ok || bad "eval left an output folder for an adapter it refused"

# ---- 6. a FIFO as model or data: refused before it is opened (it used to block forever)
mkfifo "$T/f.gguf" "$T/f.jsonl"
timeout 20 "$VMOER" info "$T/f.gguf" >/dev/null 2>"$T/err"; rc=$?
one_line "info FIFO" "f.gguf: not a regular file (a FIFO)"
timeout 20 "$VMOER" run "$T/f.gguf" -p hi >/dev/null 2>"$T/err"; rc=$?
one_line "run FIFO" "not a regular file (a FIFO)"
timeout 20 "$VMOER" $FIT --data "$T/f.jsonl" -o "$T/z.gguf" >/dev/null 2>"$T/err"; rc=$?
one_line "fit --data FIFO" "f.jsonl: not a regular file (a FIFO)"

# ---- 7. terminal escapes in the architecture string: printed escaped (info and errors)
cp "$M" "$T/esc.gguf"
o=$(offset "$T/esc.gguf" general.architecture)
poke "$T/esc.gguf" $((o + 20 + 4 + 8)) '\033[31m'   # "llama" -> ESC [ 3 1 m (same length)
"$VMOER" info "$T/esc.gguf" >"$T/out" 2>&1
grep -q 'architecture: *\\x1b\[31m$' "$T/out" && ! grep -q "$(printf '\033')" "$T/out" && ok || bad "info printed the escape raw: $(cat -v "$T/out" | head -3)"
"$VMOER" run "$T/esc.gguf" -p hi >/dev/null 2>"$T/err"; rc=$?
one_line "error quoting the architecture" "architecture '\\\\x1b\[31m' is not supported"
grep -q "$(printf '\033')" "$T/err" && bad "the error printed the escape raw" || ok

# ---- 8. a CSV-breaking --ood name: quoted per RFC 4180 in ood.csv and metrics.csv
"$VMOER" $EVAL --router map --ood 'a,b"c='"$D/ood-wikitext2.jsonl" -o "$T/ev_csv" >/dev/null 2>"$T/err" || bad "eval with a quoted name: $(cat "$T/err")"
grep -q '^map,"a,b""c",entropy,' "$T/ev_csv/ood.csv" && grep -q '^map,"a,b""c",auroc_entropy,' "$T/ev_csv/metrics.csv" && ok ||
    bad "ood name not quoted: $(sed -n 2p "$T/ev_csv/ood.csv")"

# ---- 9. smaller ones
# an adapter whose layer list is f32, not integers (said "must be ascending and distinct")
cp "$T/y.gguf" "$T/lf.gguf"
o=$(offset "$T/lf.gguf" vmoer.router.layers)
poke "$T/lf.gguf" $((o + 19 + 4)) '\006'   # element type u32 (4) -> f32 (6)
"$VMOER" $EVAL --adapter "$T/lf.gguf" -o "$T/ev_lf" >/dev/null 2>"$T/err"; rc=$?
one_line "adapter layers of type f32" "vmoer.router.layers must be an array of integer layer indices (is f32)"
# an adapter with 2^31 samples (was shown as -2147483648)
cp "$T/y.gguf" "$T/s.gguf"
o=$(offset "$T/s.gguf" vmoer.router.samples)
poke "$T/s.gguf" $((o + 20 + 4)) '\000\000\000\200'
"$VMOER" $EVAL --adapter "$T/s.gguf" -o "$T/ev_s" >/dev/null 2>"$T/err"; rc=$?
one_line "adapter samples 2^31" "vmoer.router.samples = 2147483648 is out of range"
# a key of the wrong type: the file named once ("model: F: key", not "F: model: F: key")
cp "$M" "$T/key.gguf"
o=$(offset "$T/key.gguf" llama.block_count)
poke "$T/key.gguf" $((o + 17)) '\006'   # u32 -> f32
"$VMOER" run "$T/key.gguf" -p hi >/dev/null 2>"$T/err"; rc=$?
one_line "wrong key type" "key 'llama.block_count': expected an integer"
[ "$(grep -o "key.gguf" "$T/err" | wc -l)" -eq 1 ] && ok || bad "file named more than once: $(cat "$T/err")"
# a checkpoint that is not one: named once
"$VMOER" $FIT --data "$T/a.jsonl" --resume --ckpt "$T/esc.gguf" -o "$T/w.gguf" >/dev/null 2>"$T/err"; rc=$?
one_line "--ckpt a model" "checkpoint .*esc.gguf: not a fit checkpoint"
[ "$(grep -o "esc.gguf" "$T/err" | wc -l)" -eq 1 ] && ok || bad "checkpoint named more than once: $(cat "$T/err")"
# --val-frac 0: no "nan -> inf" in the summary
"$VMOER" $FIT --data "$T/a.jsonl" -o "$T/v.gguf" >"$T/out" 2>"$T/err" && ! grep -q "nan\|inf" "$T/out" &&
    grep -q "no validation items" "$T/out" && ok || bad "--val-frac 0 summary: $(cat "$T/out" "$T/err")"
# eval names a --format it has
printf '{"foo": 1}\n' >"$T/odd.jsonl"
"$VMOER" $EVAL --router map --data "$T/odd.jsonl" -o "$T/ev_odd" >/dev/null 2>"$T/err"; rc=$?
one_line "undetectable format" "give it explicitly (--format"
"$VMOER" eval --help | grep -q -- "--format NAME" && ok || bad "eval --help has no --format"
"$VMOER" $EVAL --router map --format sciq -o "$T/ev_fmt" >/dev/null 2>"$T/err"; rc=$?
one_line "eval --format sciq on cloze data" "test.jsonl:1"

echo "$p passed, $f failed"
[ "$f" -eq 0 ]

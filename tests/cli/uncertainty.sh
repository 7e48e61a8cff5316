#!/bin/sh
# Generation read-outs on the command line (issue 17): `vmoer run --uncertainty` (a line per token,
# --jsonl), --abstain, and the same fields from `vmoer logits --uncertainty` and `vmoer trace`:
# for the same tokens the three report the same numbers.
. tests/cli/lib/serve.sh

fit_vglr "$T/vglr.gguf" && ok || bad "fit: $(cat "$T/fit.out")"

# a line per token: header, 6 token lines, text, summary
"$VMOER" run "$MODEL" -p "Once upon a time" -n 6 --temp 0 --uncertainty >"$T/h.txt" 2>"$T/e" && ok || bad "run --uncertainty: $(cat "$T/e")"
head -1 "$T/h.txt" | grep -qE '^ +# +token +prob +nll +entropy +gate_entropy$' && ok || bad "header: $(head -1 "$T/h.txt")"
[ "$(grep -cE '^ +[0-9]+  "' "$T/h.txt")" -eq 6 ] && ok || bad "6 token lines: $(cat "$T/h.txt")"
grep -q '^text: Once upon a time' "$T/h.txt" && grep -q '^summary over 6 tokens (mean / max): nll' "$T/h.txt" && ok || bad "text and summary"
"$VMOER" run "$MODEL" -p "Once upon a time" -n 3 --temp 0 --uncertainty --adapter "$T/vglr.gguf" >"$T/hv.txt" 2>/dev/null
grep -qE 'ILV \[L3 [0-9.e-]+ L4 [0-9.e-]+\]$' "$T/hv.txt" && ok || bad "per-layer ILV: $(cat "$T/hv.txt")"

# JSON lines: the records, then the summary; abstention
"$VMOER" run "$MODEL" -p "Once upon a time" -n 6 --temp 0 --jsonl --adapter "$T/vglr.gguf" >"$T/r.jsonl" 2>/dev/null && ok || bad "run --jsonl"
[ "$(wc -l <"$T/r.jsonl")" -eq 7 ] && ok || bad "7 JSON lines: $(cat "$T/r.jsonl")"
head -1 "$T/r.jsonl" | grep -q '^{"index":0,"token":[0-9]*,"text":"[^"]*","prob":[0-9.e-]*,"nll":.*"ilv":[0-9.e-]*,.*"layers":{.*"ilv":\[[0-9.e-]*,[0-9.e-]*\]' && ok \
    || bad "record: $(head -1 "$T/r.jsonl")"
tail -1 "$T/r.jsonl" | grep -q '"summary":{"n_tokens":6,.*"finish_reason":"length","info":{"router":"vglr-mf","readout_layers":\[3,4\]' && ok \
    || bad "summary line: $(tail -1 "$T/r.jsonl")"
"$VMOER" run "$MODEL" -p "Once upon a time" -n 20 --temp 0 --abstain 1.5 >"$T/a.txt" 2>/dev/null && ok || bad "run --abstain"
grep -q '\[uncertain: entropy [0-9.]* > 1.5 before token [0-9]*\]$' "$T/a.txt" && ok || bad "abstain marker: $(cat "$T/a.txt")"
"$VMOER" run "$MODEL" -p "Once upon a time" -n 20 --temp 0 --jsonl --abstain 0.01 --abstain-score nll >"$T/a.jsonl" 2>/dev/null
tail -1 "$T/a.jsonl" | grep -q '"finish_reason":"uncertain",.*"abstained":{"score":"nll","threshold":0.01' && ok || bad "abstain JSON: $(tail -1 "$T/a.jsonl")"

# logits --uncertainty on the prompt + the generated ids (no adapter: one batch = token by token)
"$VMOER" run "$MODEL" -p "Once upon a time" -n 6 --temp 0 --jsonl >"$T/d.jsonl" 2>/dev/null
gen=$(head -6 "$T/d.jsonl" | sed 's/.*"token":\([0-9]*\),.*/\1/' | tr '\n' ',' | sed 's/,$//')
"$VMOER" logits "$MODEL" --ids "1,403,407,261,378,$gen" -o "$T/l.npy" --uncertainty "$T/l.jsonl" 2>"$T/e" && ok || bad "logits --uncertainty: $(cat "$T/e")"
[ "$(wc -l <"$T/l.jsonl")" -eq 11 ] && ok || bad "one line per position"
i=0; same=0
while [ $i -lt 6 ]; do
    a=$(sed -n "$((i + 1))p" "$T/d.jsonl" | sed 's/^{"index":[0-9]*,//')
    b=$(sed -n "$((i + 5))p" "$T/l.jsonl" | sed 's/^{"pos":[0-9]*,"input":[0-9]*,//')
    [ "$a" = "$b" ] && same=$((same + 1))
    i=$((i + 1))
done
[ $same -eq 6 ] && ok || bad "$same of 6 logits records equal run's: $(sed -n 5p "$T/l.jsonl") vs $(head -1 "$T/d.jsonl")"
tail -1 "$T/l.jsonl" | grep -q '"token":null,.*"entropy":[0-9]' && ok || bad "last position: $(tail -1 "$T/l.jsonl")"

# trace: read-outs per line, only those the layer's kind writes
"$VMOER" trace "$MODEL" -p "Once" --adapter "$T/vglr.gguf" -o "$T/t.jsonl" 2>"$T/e" && ok || bad "trace: $(cat "$T/e")"
grep '"layer":4,' "$T/t.jsonl" | head -1 | grep -q '"unc":{"ilv":[0-9.e-]*,"gate_entropy":[0-9.e-]*,"disagreement":[0-9.e-]*,"ilv_dev":[0-9.e-]*}}$' && ok \
    || bad "trace VGLR line: $(grep '"layer":4,' "$T/t.jsonl" | head -1)"
grep '"layer":0,' "$T/t.jsonl" | head -1 | grep -q '"unc":{"gate_entropy":[0-9.e-]*}}$' && ok || bad "trace deterministic line"
# run --jsonl's per-layer ILV of a token = trace's ILV at the position that predicted it
ilv_run=$(sed -n 1p "$T/r.jsonl" | sed 's/.*"layers":{.*"ilv":\[\([^]]*\)\].*/\1/')
"$VMOER" trace "$MODEL" -p "Once upon a time" --adapter "$T/vglr.gguf" -o "$T/t2.jsonl" 2>/dev/null
ilv3=$(grep '"pos":4,.*"layer":3,' "$T/t2.jsonl" | sed 's/.*"ilv":\([0-9.e-]*\),.*/\1/')
ilv4=$(grep '"pos":4,.*"layer":4,' "$T/t2.jsonl" | sed 's/.*"ilv":\([0-9.e-]*\),.*/\1/')
node -e 'const [a, b, c] = process.argv.slice(1); const r = a.split(",").map(Number);
         process.exit(Math.fround(r[0]) === Math.fround(+b) && Math.fround(r[1]) === Math.fround(+c) ? 0 : 1)' "$ilv_run" "$ilv3" "$ilv4" \
    && ok || bad "ILV of run ($ilv_run) vs trace ($ilv3, $ilv4)"

# errors: one line, non-zero exit
one_line_fail() {
    what=$1; shift
    "$VMOER" "$@" >"$T/o" 2>"$T/e" && { bad "$what accepted"; return; }
    [ "$(wc -l <"$T/e")" -eq 1 ] && grep -q "^vmoer $1: " "$T/e" && ok || bad "$what: $(cat "$T/e")"
}
one_line_fail "--abstain-score bogus" run "$MODEL" -p x --abstain 1 --abstain-score bogus
one_line_fail "--abstain x" run "$MODEL" -p x --abstain x
one_line_fail "trace --decode-from 0" trace "$MODEL" --ids 1,2 --decode-from 0 -o "$T/x.jsonl"
one_line_fail "trace -p and --ids" trace "$MODEL" -p x --ids 1 -o "$T/x.jsonl"
one_line_fail "trace bad id" trace "$MODEL" --ids 1,9999 -o "$T/x.jsonl"
one_line_fail "logits --uncertainty into a missing folder" logits "$MODEL" --ids 1,2 -o "$T/x.npy" --uncertainty "$T/no/u.jsonl"
one_line_fail "logits .npy into a missing folder" logits "$MODEL" --ids 1,2 -o "$T/no/x.npy" --uncertainty "$T/u.jsonl"
[ ! -e "$T/x.npy" ] && [ ! -e "$T/u.jsonl" ] && ok || bad "a failed logits left a file: $(ls "$T")"

finish

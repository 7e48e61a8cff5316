#!/bin/sh
# vmoer bench's router modes: --routers (every kind timed, table + JSON), --gen-granite (a 1-layer,
# small-vocab Granite-shaped model that loads with the expected shapes) and --ab (deterministic vs a
# Bayesian router: ratios and peak RSS printed, JSON well formed), and their refusals. Timing values
# are only checked to be positive: no timed tests.
VMOER=${VMOER:-build/vmoer}
SHARED=${VMOER_SHARED:-../shared}
pass=0; fail=0
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

"$VMOER" bench --routers --threads 1 --batch 2 --reps 1 --samples 4 --json "$T/r.json" >"$T/out" 2>"$T/e" && ok || bad "routers: $(cat "$T/e")"
[ "$(grep -cE '^ +1 +(1536|2048) +(40|64) +8( +[0-9]+\.[0-9]+){9}$' "$T/out")" -eq 2 ] && ok || bad "routers table: $(cat "$T/out")"
[ "$(grep -cE '^  \{"threads": 1, "D": [0-9]+, "N": [0-9]+, "K": 8, "kind": "[a-z-]+", "us_per_token": [0-9]+\.[0-9]+\}' "$T/r.json")" -eq 18 ] && ok || bad "routers json: $(cat "$T/r.json")"
grep -q '"kind": "swag"' "$T/r.json" && ok || bad "swag timed: $(cat "$T/r.json")"
grep -q '"us_per_token": 0\.0000' "$T/r.json" && bad "zero time: $(cat "$T/r.json")" || ok

G="$T/g.gguf"
"$VMOER" bench --gen-granite "$G" --type q4_0 --layers 1 --vocab 64 >"$T/out" 2>"$T/e" && ok || bad "gen: $(cat "$T/e")"
grep -q "wrote $G: 1 layers, vocab 64, q4_0" "$T/out" && ok || bad "gen output: $(cat "$T/out")"
"$VMOER" info "$G" >"$T/info" 2>"$T/e" && ok || bad "info: $(cat "$T/e")"
grep -qE '^ +expert_count +40$' "$T/info" && grep -qE '^MoE layers: +1 of 1$' "$T/info" && grep -qE '^ +q4_0 +8 tensors' "$T/info" && ok || bad "info content: $(cat "$T/info")"
if "$VMOER" bench "$G" --ab vglr-fc --bayes-layers 5 --samples 35 --threads 1 --batch 4 --n-prompt 4 --reps 2 \
       --json "$T/ab.json" >"$T/out" 2>"$T/e"; then ok; else bad "ab: $(cat "$T/e")"; fi
grep -q '1 layers (1 MoE routed by vglr-fc, S = 35), D 1536, N 40, K 8' "$T/out" && ok || bad "ab head: $(cat "$T/out")"
grep -qE '^wall time: vglr-fc / deterministic = [0-9]+\.[0-9]+ \(median\)' "$T/out" && ok || bad "ab wall: $(cat "$T/out")"
grep -qE '^matrix-product FLOPs: .* vglr-fc adds [0-9.e+]+: \+[0-9]+\.[0-9]+ % extra$' "$T/out" && ok || bad "ab flops: $(cat "$T/out")"
grep -qE '^peak RSS \(VmHWM\) [0-9.]+ GB, file [0-9.]+ GB' "$T/out" && ok || bad "ab rss: $(cat "$T/out")"
grep -qE '^\{"mode": "router-ab", .*"flops_ratio": 1\.[0-9]+, .*"file_bytes": [1-9][0-9]+\}$' "$T/ab.json" && ok || bad "ab json: $(cat "$T/ab.json")"

# the FLOPs of the 1-layer model by hand: per token 2 D (24*64) + 2*2 D 512 + 2 (24*64) D + 2 D 40 +
# 8 * 6 D 512, attention 4 (24*64) n(n+1)/2 over n = 4, the head 2 D 64 once; vglr-fc adds
# 2 H D + 2 H 40 + 2 H 820 + 35*40*41 per token, H = 384
awk 'BEGIN { D = 1536; n = 4; H = 384;
  tok = 2*D*1536 + 4*D*512 + 2*1536*D + 2*D*40 + 8*6*D*512;
  base = tok*n + 4*1536*n*(n+1)/2 + 2*D*64; extra = (2*H*D + 2*H*40 + 2*H*820 + 35*40*41)*n;
  printf "%.6f\n", 1 + extra/base }' >"$T/want"
got=$(sed -n 's/.*"flops_ratio": \([0-9.]*\),.*/\1/p' "$T/ab.json")
[ "$got" = "$(cat "$T/want")" ] && ok || bad "flops ratio $got, by hand $(cat "$T/want")"

refuse() {
    "$VMOER" bench "$@" >"$T/out" 2>"$T/e"; rc=$?
    if [ $rc -eq 1 ] && [ "$(wc -l <"$T/e")" -eq 1 ] && grep -q '^vmoer bench: ' "$T/e"; then ok; else bad "bench $* -> exit $rc: $(cat "$T/e")"; fi
}
refuse --gen-granite "$T/x.gguf" --type q6_K
refuse --gen-granite "$T/x.gguf" --layers 0
refuse "$G" --ab nosuchkind --n-prompt 2 --reps 1
refuse --ab vglr-fc
refuse --routers --samples 0
M="$T/st.gguf"
"$VMOER" convert-llama2c "$SHARED/models/stories260K.bin" "$SHARED/models/tok512.bin" "$M" 2>"$T/e" && ok || bad "convert: $(cat "$T/e")"
refuse "$M" --ab vglr-fc --n-prompt 2 --reps 1
[ -e "$T/x.gguf" ] && bad "refused generator left a file" || ok

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

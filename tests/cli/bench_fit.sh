#!/bin/sh
# vmoer bench --fit: fit tokens/s per router kind, with and without the hidden-state cache, on a
# tiny upcycled stories260K MoE: one table row and one JSON record per (threads, kind), positive
# rates, ratios consistent with the rates; the default kind list is every kind with parameters;
# a kind without parameters and misplaced options are refused with one line.
VMOER=${VMOER:-build/vmoer}
SH=${VMOER_SHARED:-../shared}
p=0; f=0
ok() { p=$((p + 1)); }
bad() { f=$((f + 1)); echo "FAIL: $1"; }
OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}; export OMP_WAIT_POLICY
T=$(mktemp -d "${TMPDIR:-/tmp}/vmoer_bfit.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
"$VMOER" convert-llama2c "$SH/models/stories260K.bin" "$SH/models/tok512.bin" "$T/d.gguf" >/dev/null 2>&1 || bad convert
"$VMOER" upcycle "$T/d.gguf" "$T/moe.gguf" --experts 4 --top-k 2 --noise 0.05 >/dev/null 2>&1 || bad upcycle

Q="--items 3 --n-prompt 12 --batch 2 --reps 1"
"$VMOER" bench "$T/moe.gguf" --fit --kinds map,vtsr --bayes-layers 2 --threads 1,2 $Q --json "$T/f.json" >"$T/out" 2>"$T/err" \
    && ok || bad "bench --fit: $(cat "$T/err")"
grep -q 'fit of layers 3\.\.4 (2), 3 sequences of 12 tokens, batch 2' "$T/out" && ok || bad "header: $(head -1 "$T/out")"
[ "$(grep -cE '^ +[12] cache build \(layers 0\.\.2\): [0-9.]+ tok/s$' "$T/out")" -eq 2 ] && ok || bad "cache build lines: $(cat "$T/out")"
[ "$(grep -cE '^ +[12] (map|vtsr) +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+$' "$T/out")" -eq 4 ] && ok || bad "table: $(cat "$T/out")"
[ "$(grep -cE '^  \{"threads": [12], "kind": "(map|vtsr)", "fwd_tok_s": [0-9]+\.[0-9]+, ' "$T/f.json")" -eq 4 ] && ok || bad "json: $(cat "$T/f.json")"
head -1 "$T/f.json" | grep -q '^{"mode": "fit", .*"fit_layers": 2, "l0": 3, "n_seq": 3, "n_tokens": 12, .*"runs": \[$' && ok || bad "json head: $(head -1 "$T/f.json")"
tail -1 "$T/f.json" | grep -q '^\]}$' && ok || bad "json tail"
grep -qE ': 0(\.0+)?[,}]' "$T/f.json" && bad "zero rate: $(cat "$T/f.json")" || ok
# cache_speedup = fit_tok_s_cache / fit_tok_s_nocache and fit_cache_vs_fwd = fit_tok_s_cache / fwd_tok_s
awk -F'[:,]' '/"kind"/ { for (i = 1; i < NF; i++) v[$i] = $(i + 1);
    c = v[" \"fit_tok_s_cache\""]; n = v[" \"fit_tok_s_nocache\""]; r = v[" \"fwd_tok_s\""];
    if ((c / n) / v[" \"cache_speedup\""] > 1.001 || (c / n) / v[" \"cache_speedup\""] < 0.999) bad++;
    if ((c / r) / v[" \"fit_cache_vs_fwd\""] > 1.001 || (c / r) / v[" \"fit_cache_vs_fwd\""] < 0.999) bad++; n_ok++ }
    END { exit !(n_ok == 4 && bad == 0) }' "$T/f.json" && ok || bad "ratios inconsistent with the rates: $(cat "$T/f.json")"

# default kinds: every kind with trainable parameters, in the library's order
"$VMOER" bench "$T/moe.gguf" --fit --bayes-layers 1 --threads 1 $Q >"$T/out" 2>"$T/err" && ok || bad "default kinds: $(cat "$T/err")"
[ "$(grep -E '^ +1 [a-z-]+ +[0-9]' "$T/out" | awk '{ printf "%s ", $2 }')" = "map ensemble vglr-mf vglr-fc vtsr swag " ] \
    && ok || bad "default kind list: $(cat "$T/out")"

refuse() {
    "$VMOER" bench "$@" >"$T/out" 2>"$T/e"; rc=$?
    if [ $rc -eq 1 ] && [ "$(wc -l <"$T/e")" -eq 1 ] && grep -q '^vmoer bench: ' "$T/e"; then ok; else bad "bench $* -> exit $rc: $(cat "$T/e")"; fi
}
refuse "$T/moe.gguf" --fit --kinds deterministic $Q
refuse "$T/moe.gguf" --fit --kinds vglr-mf,nonsense $Q
refuse "$T/moe.gguf" --kinds map $Q
refuse --fit --kernels
refuse "$T/d.gguf" --fit $Q
refuse "$T/moe.gguf" --fit --n-prompt 100000
echo "$p passed, $f failed"
[ "$f" -eq 0 ]

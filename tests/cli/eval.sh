#!/bin/sh
# vmoer eval / compare end to end on an upcycled stories260K MoE: OpenBookQA test in-distribution,
# ARC-Easy and MedMCQA (Medicine) as OOD sets, temperature scaling on OpenBookQA train; a
# deterministic and a sampled (vglr-mf) run; every output written; metrics.json re-derived from
# questions.jsonl by `test_eval --check` (and a tampered copy caught); stability Jaccard 1 at gamma 0
# and falling; report.html and the compare report load in headless Chromium without console
# messages; one-line failures. VMOER_EVAL_SHOT=FILE.png keeps a screenshot of the eval report;
# VMOER_SKIP_BROWSER=1 skips the browser checks.
VMOER=${VMOER:-build/vmoer}
BUILD=${BUILD:-build}
SHARED=${VMOER_SHARED:-../shared}
export VMOER_SHARED="$SHARED"
CHECKER="$BUILD/tests/test_eval"
T=$(mktemp -d "${TMPDIR:-/tmp}/vmoer_eval.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
fails_one_line() {
    d=$1; shift
    "$@" >"$T/o" 2>"$T/e"; rc=$?
    n=$(wc -l <"$T/e")
    if [ $rc -eq 1 ] && [ "$n" -eq 1 ] && grep -q "^vmoer $2: " "$T/e"; then ok
    else bad "$d: exit $rc, $n stderr lines: $(head -c 300 "$T/e")"; fi
}
D=$SHARED/data/mcqa

"$VMOER" convert-llama2c "$SHARED/models/stories260K.bin" "$SHARED/models/tok512.bin" "$T/st.gguf" 2>"$T/e" &&
"$VMOER" upcycle "$T/st.gguf" "$T/moe.gguf" --experts 8 --top-k 2 --noise 0.05 --seed 3 2>>"$T/e"
if [ -s "$T/moe.gguf" ]; then ok; else bad "convert/upcycle: $(cat "$T/e")"; echo "$pass passed, $fail failed"; exit 1; fi

# 1. deterministic run, nested output folder created
OUT=$T/runs/det
if "$VMOER" eval "$T/moe.gguf" --data "$D/openbookqa/test.jsonl" --ood "arc-easy=$D/arc-easy/test.jsonl" \
     --ood "medmcqa=$D/medmcqa/dev.jsonl@Medicine" --val "$D/openbookqa/train.jsonl" --limit 12 \
     --stability-limit 5 --boot 100 --time-items 3 --threads 1 -o "$OUT" 2>"$T/e1"; then ok; else bad "eval: $(cat "$T/e1")"; fi
for f in questions.jsonl metrics.json metrics.csv reliability.csv risk_coverage.csv roc.csv ood.csv stability.csv curves.json report.html; do
    [ -s "$OUT/$f" ] && ok || bad "missing $f"
done
[ -z "$(ls "$OUT" | grep '\.tmp\.')" ] && ok || bad "temporary files left: $(ls "$OUT")"
# 12 questions per set: id, arc-easy, medmcqa (val is not written)
[ "$(grep -c '"set":"id"' "$OUT/questions.jsonl")" -eq 12 ] && ok || bad "id rows"
[ "$(grep -c '"set":"arc-easy"' "$OUT/questions.jsonl")" -eq 12 ] && ok || bad "arc-easy rows"
[ "$(grep -c '"set":"medmcqa"' "$OUT/questions.jsonl")" -eq 12 ] && ok || bad "medmcqa rows"
grep -q '"deterministic+ts"' "$OUT/metrics.json" && ok || bad "no temperature-scaled method"
for k in acc acc_norm nll brier ece ece_ci mce ece_adaptive ece_signed ece_classwise aurc auroc aupr fpr95 jaccard_mean flops_per_token_method time_ratio_per_pass params_extra conventions skipped; do
    grep -q "\"$k\"" "$OUT/metrics.json" && ok || bad "metrics.json has no '$k'"
done
# metrics agree with an independent recomputation from the per-question file; stability checked there too
if "$CHECKER" --check "$OUT" >"$T/c1" 2>&1; then ok; else bad "check: $(tail -5 "$T/c1")"; fi
# the checker can fail: a tampered ECE is caught
mkdir -p "$T/tampered" && cp "$OUT"/* "$T/tampered/"
sed 's/"ece": \([0-9.]*\)/"ece": 0.987654/' "$OUT/metrics.json" >"$T/tampered/metrics.json"
if "$CHECKER" --check "$T/tampered" >"$T/c2" 2>&1; then bad "tampered metrics.json passed the check"; else ok; fi

# 2. a sampled router: passes, MI and the router read-outs; stability Jaccard exactly 1 at gamma 0
OUT2=$T/runs/vglr
if "$VMOER" eval "$T/moe.gguf" --router vglr-mf --samples 4 --passes 3 --data "$D/openbookqa/test.jsonl" \
     --ood "arc-easy=$D/arc-easy/test.jsonl" --limit 6 --noise-grid 0,0.002,0.01,0.05 --boot 50 --time-items 3 \
     --threads 1 -o "$OUT2" 2>"$T/e2"; then ok; else bad "eval vglr-mf: $(cat "$T/e2")"; fi
grep -q '"mi":{"auroc"\|"mi": {' "$OUT2/metrics.json" && ok || bad "no MI score for a sampled router"
grep -q '"ilv"' "$OUT2/metrics.json" && ok || bad "no ILV score"
grep -q '"passes": 3' "$OUT2/metrics.json" && ok || bad "passes not recorded"
if "$CHECKER" --check "$OUT2" >"$T/c3" 2>&1; then ok; else bad "check vglr: $(tail -5 "$T/c3")"; fi

# 2b. an adapter from `vmoer fit` (two layers): the trained kind is named, its parameters counted
if "$VMOER" fit "$T/moe.gguf" --data "$D/openbookqa/train.jsonl" --limit 10 --router vglr-mf --epochs 1 \
     --samples 4 --batch 8 --layers 3,4 --threads 1 -o "$T/A.gguf" >"$T/fit.log" 2>&1; then ok; else bad "fit: $(tail -3 "$T/fit.log")"; fi
OUT3=$T/runs/adapter
if "$VMOER" eval "$T/moe.gguf" --adapter "$T/A.gguf" --data "$D/openbookqa/test.jsonl" --limit 4 --passes 2 \
     --noise-grid 0,0.01,0.05 --boot 20 --time-items 2 --threads 1 -o "$OUT3" 2>"$T/e4"; then ok; else bad "eval --adapter: $(cat "$T/e4")"; fi
grep -q '"router": "vglr-mf"' "$OUT3/metrics.json" && ok || bad "adapter router not named vglr-mf"
grep -q '"params_extra": [1-9]' "$OUT3/metrics.json" && ok || bad "adapter parameters not counted"
if "$CHECKER" --check "$OUT3" >"$T/c4" 2>&1; then ok; else bad "check adapter: $(tail -5 "$T/c4")"; fi

# 3. compare
if "$VMOER" compare "$OUT" "$OUT2" -o "$T/cmp.html" 2>"$T/e3" && grep -q '<svg' "$T/cmp.html" && grep -q 'det' "$T/cmp.html"; then ok
else bad "compare: $(cat "$T/e3")"; fi

# 4. one-line failures
fails_one_line "no --data" "$VMOER" eval "$T/moe.gguf" -o "$T/x"
fails_one_line "bad --ood" "$VMOER" eval "$T/moe.gguf" --data "$D/openbookqa/test.jsonl" --ood nothing -o "$T/x"
fails_one_line "unknown router" "$VMOER" eval "$T/moe.gguf" --data "$D/openbookqa/test.jsonl" --router nope -o "$T/x"
fails_one_line "missing data" "$VMOER" eval "$T/moe.gguf" --data "$T/none.jsonl" -o "$T/x"
fails_one_line "dense model" "$VMOER" eval "$T/st.gguf" --data "$D/openbookqa/test.jsonl" --limit 2 -o "$T/x"
fails_one_line "val = test" "$VMOER" eval "$T/moe.gguf" --data "$D/openbookqa/test.jsonl" --val "$D/openbookqa/test.jsonl" --limit 2 --noise-grid none --threads 1 -o "$T/x"
fails_one_line "bad grid" "$VMOER" eval "$T/moe.gguf" --data "$D/openbookqa/test.jsonl" --noise-grid 0,x -o "$T/x"
fails_one_line "compare without runs" "$VMOER" compare -o "$T/y.html"
fails_one_line "compare of a non-run" "$VMOER" compare "$T" -o "$T/y.html"

# 5. headless Chromium: both reports load without console messages, every <svg> in the DOM
if [ "${VMOER_SKIP_BROWSER:-0}" = 1 ]; then echo "browser checks skipped (VMOER_SKIP_BROWSER=1)"
else
    CHROME=$(command -v chromium || command -v chromium-browser || true)
    if [ -z "$CHROME" ]; then bad "chromium not found (apt-get install -y chromium, or VMOER_SKIP_BROWSER=1)"
    else
        chrome() {
            prof="$T/profile.$1"; shift
            mkdir -p "$prof"
            timeout 120 "$CHROME" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
                --disable-background-networking --disable-component-update --disable-sync \
                --user-data-dir="$prof" --enable-logging=stderr --v=0 "$@" 2>"$T/cerr"
        }
        console() { grep -E ':CONSOLE[(:]' "$T/cerr"; }
        printf '<!DOCTYPE html><html><head><meta charset="utf-8"><title>x</title></head><body><script>console.error("probe-error");</script></body></html>\n' >"$T/bad.html"
        chrome bad --dump-dom "file://$T/bad.html" >/dev/null
        if console | grep -q probe-error; then ok; else bad "console messages are not detected"; fi
        for page in "$OUT/report.html" "$T/cmp.html"; do
            chrome dom --dump-dom "file://$page" >"$T/dom.html"; rc=$?
            if [ $rc -eq 0 ] && grep -q '</html>' "$T/dom.html"; then ok; else bad "chromium exit $rc on $page"; fi
            if [ -z "$(console)" ]; then ok; else bad "console messages on $page: $(console | head -3)"; fi
            nf=$(grep -o '<svg ' "$page" | wc -l); nd=$(grep -o '<svg ' "$T/dom.html" | wc -l)
            if [ "$nf" -ge 5 ] && [ "$nf" -eq "$nd" ]; then ok; else bad "$page: $nf <svg> in the file, $nd in the DOM"; fi
        done
        chrome shot --hide-scrollbars --window-size=1400,4200 --screenshot="$T/shot.png" "file://$OUT/report.html" >/dev/null
        if [ -s "$T/shot.png" ] && [ "$(wc -c <"$T/shot.png")" -gt 50000 ]; then ok; else bad "no usable screenshot"; fi
        if [ -n "${VMOER_EVAL_SHOT:-}" ] && [ -s "$T/shot.png" ]; then cp "$T/shot.png" "$VMOER_EVAL_SHOT"; fi
    fi
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

#!/bin/sh
# vmoer experts end to end: on exact copies (noise 0) random routing costs nothing and the experts
# do not differ; on a noisy MoE the JSON holds every read-out, the same seed gives the same bytes
# whatever --threads, another seed moves only the random-routing loss; bad inputs get one line.
VMOER=${VMOER:-build/vmoer}
SH=${VMOER_SHARED:-../shared}
p=0; f=0
ok() { p=$((p + 1)); }
bad() { f=$((f + 1)); echo "FAIL: $1"; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
"$VMOER" convert-llama2c "$SH/models/stories260K.bin" "$SH/models/tok512.bin" "$T/d.gguf" >/dev/null 2>&1 || bad convert
"$VMOER" upcycle "$T/d.gguf" "$T/c.gguf" --experts 4 --top-k 2 --router-std 0.3 >/dev/null 2>&1 || bad "upcycle copies"
"$VMOER" upcycle "$T/d.gguf" "$T/n.gguf" --experts 4 --top-k 2 --noise 0.5 --router-std 0.3 --seed 2 >/dev/null 2>&1 || bad "upcycle noisy"
awk 'BEGIN{RS="";ORS="\n\n"} NR<=8' data/cloze/validation-stories.txt >"$T/v.txt"
A="--text $T/v.txt --tokens 1024 --seq 128 --diff-tokens 64"
# exact copies: the two losses agree, expert_diff is 0
"$VMOER" experts "$T/c.gguf" $A --json "$T/c.json" >"$T/out" 2>"$T/err" && ok || bad "copies: $(cat "$T/err")"
grep -q "^loss_router" "$T/out" && grep -q "^loss_random_routing" "$T/out" && ok || bad "summary: $(cat "$T/out")"
python3 - "$T/c.json" <<'PY' && ok || bad "copies json: $(cat "$T/c.json")"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["n_tokens"] == 1024 and j["seq"] == 128 and j["n_expert"] == 4 and j["n_expert_used"] == 2
assert abs(j["loss_random_routing"] - j["loss_router"]) < 2e-5, j
assert j["expert_diff"]["mean"] == 0.0 and j["expert_diff"]["n_tokens"] == 64
assert j["layers"] == [0, 1, 2, 3, 4] and len(j["load"]["per_layer"]) == 5
assert len(j["random_routing_cost_per_layer"]) == 5 and max(abs(c) for c in j["random_routing_cost_per_layer"]) < 2e-5
for row in j["load"]["per_layer"]:
    assert len(row) == 4 and abs(sum(row) - 1) < 1e-9
assert j["load"]["min"] == min(min(r) for r in j["load"]["per_layer"])
PY
# noisy experts: routing matters, the experts differ; deterministic whatever the thread count
"$VMOER" experts "$T/n.gguf" $A --json "$T/n1.json" --threads 1 >/dev/null 2>"$T/err" && ok || bad "noisy: $(cat "$T/err")"
"$VMOER" experts "$T/n.gguf" $A --json "$T/n2.json" --threads 2 >/dev/null 2>&1 && cmp -s "$T/n1.json" "$T/n2.json" && ok || bad "threads change the result"
"$VMOER" experts "$T/n.gguf" $A --json "$T/n3.json" --seed 5 >/dev/null 2>&1 || bad "seed 5"
python3 - "$T/n1.json" "$T/n3.json" <<'PY' && ok || bad "noisy json: $(cat "$T/n1.json")"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert a["loss_random_routing"] - a["loss_router"] > 0.05, a
assert abs(a["random_routing_cost"] - (a["loss_random_routing"] - a["loss_router"])) < 1e-7
assert len(a["random_routing_cost_per_layer"]) == 5 and max(a["random_routing_cost_per_layer"]) > 0, a
assert a["expert_diff"]["mean"] > 0.3 and a["router_logit_sd"]["mean"] > 0 and a["logit_gap"]["mean"] > 0
assert b["loss_router"] == a["loss_router"] and b["loss_random_routing"] != a["loss_random_routing"]
assert b["seed"] == 5 and a["seed"] == 0
PY
# bad inputs: one line, exit 1, no JSON written
chk() {   # name expected-text command...
    n=$1; e=$2; shift 2
    "$@" >"$T/o" 2>"$T/e"; rc=$?
    [ $rc -eq 1 ] && [ "$(wc -l <"$T/e")" -eq 1 ] && grep -q -- "$e" "$T/e" && ok || bad "$n: exit $rc: $(cat "$T/e")"
}
chk "no text" "--text FILE is required" "$VMOER" experts "$T/n.gguf"
chk "no model" "expected MODEL.gguf" "$VMOER" experts --text "$T/v.txt"
chk "missing text" "nope.txt" "$VMOER" experts "$T/n.gguf" --text "$T/nope.txt" --json "$T/x.json"
chk "dense model" "dense model" "$VMOER" experts "$T/d.gguf" --text "$T/v.txt" --json "$T/x.json"
chk "bad tokens" "--tokens" "$VMOER" experts "$T/n.gguf" --text "$T/v.txt" --tokens -3
chk "bad seq" "--seq" "$VMOER" experts "$T/n.gguf" --text "$T/v.txt" --seq 0
chk "seq beyond context" "context" "$VMOER" experts "$T/n.gguf" --text "$T/v.txt" --seq 4096
printf 'Tiny.\n' >"$T/short.txt"
chk "too short" "no window" "$VMOER" experts "$T/n.gguf" --text "$T/short.txt"
chk "unknown option" "unknown option" "$VMOER" experts "$T/n.gguf" --text "$T/v.txt" --frobnicate
chk "not a gguf" "magic" "$VMOER" experts "$T/v.txt" --text "$T/v.txt"
[ ! -e "$T/x.json" ] && ok || bad "a failed run wrote its JSON"
"$VMOER" experts --help | grep -q -- "loss_random_routing" && ok || bad help
"$VMOER" --help | grep -q "^  experts" && ok || bad "not listed in vmoer --help"
echo "$p passed, $f failed"
[ "$f" -eq 0 ]

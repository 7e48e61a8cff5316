#!/bin/sh
# vmoer demo end to end at --quick size on a tiny upcycled stories260K MoE: it runs, prints the table
# and the verdict, writes its files; the same seed gives byte-identical table.md and table.json, also
# with another thread count; bad input gives one line on stderr and a non-zero exit.
VMOER=${VMOER:-build/vmoer}
SH=${VMOER_SHARED:-../shared}
p=0; f=0
ok() { p=$((p + 1)); }
bad() { f=$((f + 1)); echo "FAIL: $1"; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
"$VMOER" convert-llama2c "$SH/models/stories260K.bin" "$SH/models/tok512.bin" "$T/d.gguf" >/dev/null 2>&1 || bad convert
"$VMOER" upcycle "$T/d.gguf" "$T/moe.gguf" --experts 4 --top-k 2 --noise 0.05 --router-std 0.3 >/dev/null 2>&1 || bad upcycle

# A small cloze folder of short made-up items (the pipeline and its determinism do not need the real,
# long passages; sanitizer builds would take minutes on them). The real files are used further down.
. tests/cli/lib/cloze.sh
tiny_cloze "$T/cloze"

# two runs, same seed, different thread counts
Q="--quick --data $T/cloze --train 8 --test 6 --ood 4 --val 4 --stability 2 --samples 2 --boot 20"
if "$VMOER" demo $Q --model "$T/moe.gguf" -o "$T/a" --seed 3 --threads 2 >"$T/a.out" 2>"$T/a.err"; then ok
else bad "demo run a: $(tail -3 "$T/a.err")"; fi
if "$VMOER" demo $Q --model "$T/moe.gguf" -o "$T/b" --seed 3 --threads 1 --quiet >"$T/b.out" 2>"$T/b.err"; then ok
else bad "demo run b: $(tail -3 "$T/b.err")"; fi
cmp -s "$T/a/table.md" "$T/b/table.md" && ok || bad "table.md differs between two runs with the same seed"
cmp -s "$T/a/table.json" "$T/b/table.json" && ok || bad "table.json differs between two runs with the same seed"
[ -s "$T/a/table.md" ] && head -c "$(wc -c <"$T/a/table.md")" "$T/a.out" | cmp -s - "$T/a/table.md" && ok \
    || bad "stdout does not start with table.md"
for x in report.html timing.json table.json adapters/map-s0.gguf adapters/vglr-fc-s1.gguf adapters/vtsr-s0-b1.gguf; do
    [ -s "$T/a/$x" ] && ok || bad "missing $x"
done
ls "$T/a/adapters" | grep -q ckpt && bad "checkpoint left behind" || ok
ls "$T" | grep -q '\.tmp\.' && bad "a temporary output folder left behind" || ok
# 7 methods, raw and temperature-scaled, in the main tables; every OOD table lists the raw ones
n=$(grep -c -E '^\| (deterministic|map|temp-sample|mcdropout|vglr-mf|vglr-fc|vtsr)(\+ts)? \| [0-9]' "$T/a/table.md")
[ "$n" -eq 28 ] && ok || bad "expected 14 rows in the calibration tables + 7 x 2 OOD rows, got $n"
grep -q '^Better than deterministic: ' "$T/a.out" && grep -q '^Worse than deterministic: ' "$T/a.out" && ok \
    || bad "verdict lines missing"
grep -q "^The paper's claims on this model" "$T/a/table.md" && ok || bad "claims section missing"
grep -q '^Wall time ' "$T/a.out" && ok || bad "wall time line missing"
grep -q 'Wall time\|seconds' "$T/a/table.md" && bad "times in the reproducible table" || ok
grep -q 'ETA' "$T/a.err" && ok || bad "progress lines: $(head -3 "$T/a.err")"
[ ! -s "$T/b.err" ] && ok || bad "--quiet printed: $(head -3 "$T/b.err")"
# table.json: the keys the issue asks for
python3 - "$T/a/table.json" >"$T/j" 2>&1 <<'PY' && ok || bad "table.json keys: $(cat "$T/j")"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["format"] == "vmoer-demo-2"
assert j["n_test"] == 6 and j["n_ood"] == {"tinyshakespeare": 4, "wikitext2": 4}, (j["n_test"], j["n_ood"])
assert j["seeds"] == [3, 4] and isinstance(j["layers"], list) and j["layers"]
names = [m["name"] for m in j["methods"]]
assert names[:2] == ["deterministic", "deterministic+ts"] and "vglr-mf" in names and "vtsr+ts" in names, names
for m in j["methods"]:
    assert isinstance(m["flops_ratio"], float) and m["flops_ratio"] >= 1.0
    assert m["improved_on_init"] is None if not m["fitted"] else isinstance(m["improved_on_init"], bool)
    for k in ("ece", "nll", "acc", "jaccard"):
        s = m[k]
        assert set(("mean", "ci", "diff_ci")) <= set(s) and len(s["ci"]) == 2 and len(s["diff_ci"]) == 2, (m["name"], k)
    for ood in ("tinyshakespeare", "wikitext2"):
        a = m["auroc"][ood]["neg_maxprob"]
        assert len(a["ci"]) == 2 and len(a["diff_ci"]) == 2
    if m["kind"].startswith("vglr"):
        assert "ilv" in m["auroc"]["tinyshakespeare"] and "ilv_dev" in m["auroc"]["wikitext2"]
        assert m["flops_ratio"] <= 1.01, m["flops_ratio"]   # one pass: S samples inside the router
assert set(j["beta"]) == {"vglr-mf", "vglr-fc", "vtsr"}
md = j["model"]   # issue 14: the model's specialisation beside the results
for k in ("loss_router", "loss_random_routing", "random_routing_cost"):
    assert isinstance(md[k], float), k
assert abs(md["random_routing_cost"] - (md["loss_random_routing"] - md["loss_router"])) < 1e-6
assert md["n_tokens"] > 0 and md["n_expert"] >= 2
assert len(md["load"]["per_layer"]) == len(md["layers"]) and abs(sum(md["load"]["per_layer"][0]) - 1) < 1e-6
assert md["router_logit_sd"]["mean"] > 0 and md["expert_diff"]["mean"] >= 0
PY
grep -q '<svg' "$T/a/report.html" && grep -q 'Verdict' "$T/a/report.html" && ok || bad "report.html content"
grep -q '### Verdict' "$T/a/report.html" && bad "raw markdown heading in report.html" || ok
# a second run replaces the folder as a whole
"$VMOER" demo $Q --model "$T/moe.gguf" -o "$T/a" --seed 5 --threads 2 --quiet >/dev/null 2>"$T/e" && ok || bad "rerun: $(cat "$T/e")"
grep -q '"seeds": \[' "$T/a/table.json" && python3 -c "import json,sys; assert json.load(open(sys.argv[1]))['seeds']==[5,6]" "$T/a/table.json" \
    && ok || bad "the rerun's table"
# ... and leaves nothing of the old set behind (it held a sub-folder, adapters/)
[ -z "$(ls -d "$T"/a.tmp.* "$T"/a.old.* 2>/dev/null)" ] && ok || bad "leftovers of the replaced folder: $(ls -d "$T"/a.tmp.* "$T"/a.old.* 2>/dev/null | tr "\n" " ")"
ls "$T/a/adapters/" | grep -q 'gguf$' && ok || bad "the new set's adapters"

# the cloze scoring modes through `vmoer fit` and `vmoer eval` (--score pmi / loglik-raw)
"$VMOER" fit "$T/moe.gguf" --data data/cloze/train.jsonl --limit 8 --router vglr-mf --layers 4 --epochs 1 --batch 4 \
    --val-frac 0.25 --score pmi --quiet --threads 1 -o "$T/p.gguf" >"$T/o" 2>&1 && [ -s "$T/p.gguf" ] && ok || bad "fit --score pmi: $(cat "$T/o")"
"$VMOER" eval "$T/moe.gguf" --adapter "$T/p.gguf" --data data/cloze/test.jsonl --limit 4 --score loglik-raw --passes 2 \
    --noise-grid none --boot 0 --time-items 1 --threads 1 -o "$T/ev" >"$T/o" 2>&1 && grep -q '"score": "loglik-raw"' "$T/ev/metrics.json" \
    && ok || bad "eval --score loglik-raw: $(tail -2 "$T/o")"

# errors: one line, non-zero exit
one_line_fail() {   # $1 = what, rest = arguments
    what=$1; shift
    if "$VMOER" demo "$@" >"$T/o" 2>"$T/e"; then bad "$what accepted"; return; fi
    [ "$(wc -l <"$T/e")" -eq 1 ] && grep -q '^vmoer demo: ' "$T/e" && ok || bad "$what: not one line: $(cat "$T/e")"
}
one_line_fail "unknown option" --bogus
one_line_fail "--train 0" --train 0
one_line_fail "--seeds 0" --seeds 0
one_line_fail "bad beta grid" --beta 0.1,x
one_line_fail "letter scoring" --score letter
one_line_fail "bad seed" --seed x
one_line_fail "missing model" --quick --quiet --model "$T/none.gguf" -o "$T/c"
grep -q "none.gguf" "$T/e" && ok || bad "missing model not named: $(cat "$T/e")"
one_line_fail "dense model" --quick --quiet --model "$T/d.gguf" -o "$T/c"
grep -q "dense" "$T/e" && ok || bad "dense model message: $(cat "$T/e")"
one_line_fail "missing data" --quick --quiet --model "$T/moe.gguf" --data "$T/nodata" -o "$T/c"
# scripts/demo_instances.py: the two seeds' runs side by side, every row, the marks from the intervals
if python3 scripts/demo_instances.py "$T/a" "$T/b" --names "s5,s3" >"$T/inst" 2>"$T/e"; then ok; else bad "demo_instances: $(cat "$T/e")"; fi
[ "$(grep -c '^| ' "$T/inst")" -eq 22 ] && head -1 "$T/inst" | grep -q '| s5 | s3 |' && ok || bad "demo_instances table: $(head -3 "$T/inst")"
python3 - "$T/inst" "$T/a/table.json" <<'PY' && ok || bad "demo_instances cell differs from table.json"
import json, sys
row = [l for l in open(sys.argv[1]) if l.startswith("| NLL, map |")][0].split("|")[2].strip()
m = {x["name"]: x for x in json.load(open(sys.argv[2]))["methods"]}["map"]["nll"]
lo, hi = m["diff_ci"]
want = f"{m['diff']:+.3f} [{lo:+.3f}, {hi:+.3f}] " + ("=" if lo <= 0 <= hi else ("+" if m["diff"] < 0 else "-"))
sys.exit(0 if row == want else 1)
PY
python3 scripts/demo_instances.py "$T/a" "$T/none" >/dev/null 2>"$T/e" && bad "demo_instances on a missing folder" || \
    { grep -q "none/table.json" "$T/e" && ok || bad "demo_instances message: $(cat "$T/e")"; }
"$VMOER" demo --help >"$T/h" 2>&1 && grep -q -- "--quick" "$T/h" && grep -q "stories-moe.gguf" "$T/h" && ok || bad help
echo "$p passed, $f failed"
[ "$f" -eq 0 ]

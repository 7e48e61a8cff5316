#!/bin/sh
# `mpirun -np N vmoer eval|demo` gives the outputs of one process: eval (a sampled router with two
# passes, an OOD set, a validation set, stability on an odd number of prompts so the ranks' blocks
# differ in size) plain vs -np 1 vs -np 2, every file compared byte for byte; demo at its smallest
# size plain vs -np 2 (table.md, table.json, every adapter); ranks with different models refused,
# naming the rank. Skipped (0 failed) without MPI in the build or without mpirun.
#
# What is not compared byte for byte, and why: wall-clock times differ between any two runs, one
# process or many. eval: metrics.json's "seconds" of each set and its cost timings (sec_pass_base,
# sec_pass_method, time_ratio_per_pass, time_ratio_per_question) are dropped before comparing, and
# so are the two time-ratio cells of report.html's cost table; every other byte of both files is
# compared. demo: timing.json and report.html (fit and evaluation times) are not compared.
VMOER=${VMOER:-build/vmoer}
SHARED=${VMOER_SHARED:-../shared}
D=$SHARED/data/mcqa
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
if "$VMOER" --version | grep -q "MPI: not built in"; then
    echo "skipped: $VMOER is built without MPI"; echo "0 passed, 0 failed"; exit 0
fi
if ! command -v mpirun >/dev/null 2>&1; then echo "skipped: no mpirun"; echo "0 passed, 0 failed"; exit 0; fi
T=$(mktemp -d "${TMPDIR:-/tmp}/vmoer_mpi.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
MPI="mpirun --oversubscribe"
[ "$(id -u)" -eq 0 ] && MPI="$MPI --allow-run-as-root"
# the ranks' private folders (demo) go here too, so nothing is left in /tmp
export TMPDIR="$T"

"$VMOER" convert-llama2c "$SHARED/models/stories260K.bin" "$SHARED/models/tok512.bin" "$T/st.gguf" >/dev/null 2>"$T/e" &&
"$VMOER" upcycle "$T/st.gguf" "$T/moe.gguf" --experts 8 --top-k 2 --noise 0.05 --seed 3 >/dev/null 2>>"$T/e" &&
"$VMOER" upcycle "$T/st.gguf" "$T/other.gguf" --experts 8 --top-k 2 --noise 0.05 --seed 4 >/dev/null 2>>"$T/e"
if [ -s "$T/moe.gguf" ] && [ -s "$T/other.gguf" ]; then ok; else bad "convert/upcycle: $(cat "$T/e")"; echo "$pass passed, $fail failed"; exit 1; fi

# strip_times KIND FILE: the file without its wall-clock fields (see the header)
strip_times() {
    python3 - "$1" "$2" <<'PY'
import json, re, sys
kind, path = sys.argv[1], sys.argv[2]
if kind == "metrics":
    j = json.load(open(path))
    def drop(o):
        if isinstance(o, dict):
            for k in ("seconds", "sec_pass_base", "sec_pass_method", "time_ratio_per_pass", "time_ratio_per_question"):
                o.pop(k, None)
            for v in o.values(): drop(v)
        elif isinstance(o, list):
            for v in o: drop(v)
    drop(j)
    sys.stdout.write(json.dumps(j, indent=1))
else:   # report.html: in the cost table only, the last two cells of a row (time ratio per pass, per question)
    t = open(path).read()
    a = t.find("<th>time ratio/pass</th>")
    b = t.find("</table>", a)
    if a < 0 or b < 0: sys.exit("no cost table in " + path)
    cells = r'<td class="num">[^<]*</td><td class="num">[^<]*</td></tr>'
    sys.stdout.write(t[:a] + re.sub(cells, "<td>t</td><td>t</td></tr>", t[a:b]) + t[b:])
PY
}

# same_eval A B WHAT: every file of eval folder B equals A's (times aside)
same_eval() {
    [ "$(ls "$1")" = "$(ls "$2")" ] && ok || bad "$3: different files: $(ls "$1" | tr '\n' ' ') vs $(ls "$2" | tr '\n' ' ')"
    for f in questions.jsonl metrics.csv reliability.csv risk_coverage.csv roc.csv ood.csv stability.csv curves.json; do
        cmp -s "$1/$f" "$2/$f" && ok || bad "$3: $f differs"
    done
    # the timing fields exist (so dropping them is not a no-op) and nothing else differs
    grep -q '"time_ratio_per_pass"' "$2/metrics.json" && ok || bad "$3: metrics.json has no time_ratio_per_pass"
    strip_times metrics "$1/metrics.json" >"$T/m1"; strip_times metrics "$2/metrics.json" >"$T/m2"
    [ -s "$T/m1" ] && cmp -s "$T/m1" "$T/m2" && ok || bad "$3: metrics.json differs beyond its timings: $(diff "$T/m1" "$T/m2" | head -4)"
    strip_times report "$1/report.html" >"$T/r1"; strip_times report "$2/report.html" >"$T/r2"
    [ -s "$T/r1" ] && cmp -s "$T/r1" "$T/r2" && ok || bad "$3: report.html differs beyond its time ratios: $(diff "$T/r1" "$T/r2" | head -4)"
}

# 1. eval: plain, -np 1, -np 2
A="$T/moe.gguf --data $D/openbookqa/test.jsonl --ood arc-easy=$D/arc-easy/test.jsonl --val $D/openbookqa/train.jsonl
   --limit 13 --stability-limit 7 --noise-grid 0,0.01,0.05 --boot 50 --time-items 2 --threads 1 --router vglr-mf --samples 3 --passes 2"
if "$VMOER" eval $A -o "$T/plain" 2>"$T/e0"; then ok; else bad "plain eval: $(tail -2 "$T/e0")"; fi
if $MPI -np 1 "$VMOER" eval $A -o "$T/np1" >"$T/o1" 2>"$T/e1"; then ok; else bad "mpirun -np 1 eval: $(tail -3 "$T/e1")"; fi
if $MPI -np 2 "$VMOER" eval $A -o "$T/np2" >"$T/o2" 2>"$T/e2"; then ok; else bad "mpirun -np 2 eval: $(tail -3 "$T/e2")"; fi
[ "$(grep -c '^vmoer eval: wrote ' "$T/e2")" -eq 1 ] && ok || bad "eval -np 2: $(grep -c '^vmoer eval: wrote ' "$T/e2") 'wrote' lines (rank 0 alone prints)"
same_eval "$T/plain" "$T/np1" "eval -np 1"
same_eval "$T/plain" "$T/np2" "eval -np 2"
# one rank wrote: no second output folder or temporary folder beside it
[ -z "$(ls "$T" | grep '\.tmp\.')" ] && ok || bad "temporary folders left: $(ls "$T")"

# items too long for the context in both ranks' blocks: the same items skipped and counted
python3 - "$D/openbookqa/test.jsonl" "$T/long.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])][:9]
for i in (2, 7):
    rows[i]["question"]["stem"] = " ".join([rows[i]["question"]["stem"]] * (6000 // len(rows[i]["question"]["stem"])))
open(sys.argv[2], "w").write("".join(json.dumps(r) + "\n" for r in rows))
PY
L="$T/moe.gguf --data $T/long.jsonl --noise-grid 0.01 --boot 20 --time-items 2 --threads 1"
"$VMOER" eval $L -o "$T/lp" 2>"$T/el1" >/dev/null || bad "plain eval with long items: $(tail -2 "$T/el1")"
$MPI -np 2 "$VMOER" eval $L -o "$T/l2" >/dev/null 2>"$T/el2" || bad "mpirun -np 2 eval with long items: $(tail -3 "$T/el2")"
grep -q "id: 7 items (2 skipped)" "$T/el2" && ok || bad "eval -np 2 with long items: $(grep 'id:' "$T/el2")"
cmp -s "$T/lp/questions.jsonl" "$T/l2/questions.jsonl" && cmp -s "$T/lp/stability.csv" "$T/l2/stability.csv" && ok \
    || bad "eval -np 2 with skipped items: questions.jsonl or stability.csv differs"
strip_times metrics "$T/lp/metrics.json" >"$T/m1"; strip_times metrics "$T/l2/metrics.json" >"$T/m2"
cmp -s "$T/m1" "$T/m2" && ok || bad "eval -np 2 with skipped items: metrics.json differs: $(diff "$T/m1" "$T/m2" | head -4)"

# 2. ranks with different models are refused, naming the rank; nothing written
B="--data $D/openbookqa/test.jsonl --limit 4 --noise-grid none --boot 0 --time-items 1 --threads 1 -o $T/mixed"
$MPI -np 1 "$VMOER" eval "$T/moe.gguf" $B : -np 1 "$VMOER" eval "$T/other.gguf" $B >"$T/o3" 2>"$T/e3"
rc=$?
[ $rc -ne 0 ] && ok || bad "different models on two ranks: exit 0"
grep -q "the model differs across ranks: rank 1 has" "$T/e3" && ok || bad "refusal message: $(grep vmoer "$T/e3" | head -2)"
[ ! -e "$T/mixed" ] && ok || bad "a refused run wrote $T/mixed"

# 3. demo at its smallest size: plain vs -np 2
. tests/cli/lib/cloze.sh
tiny_cloze "$T/cloze"
"$VMOER" upcycle "$T/st.gguf" "$T/moe4.gguf" --experts 4 --top-k 2 --noise 0.05 --router-std 0.3 >/dev/null 2>&1 || bad "upcycle (demo model)"
Q="--quick --data $T/cloze --train 8 --test 6 --ood 4 --val 4 --stability 2 --samples 2 --boot 20 --model $T/moe4.gguf --seed 3 --threads 1"
if "$VMOER" demo $Q -o "$T/da" >"$T/da.out" 2>"$T/da.err"; then ok; else bad "plain demo: $(tail -2 "$T/da.err")"; fi
if $MPI -np 2 "$VMOER" demo $Q -o "$T/db" >"$T/db.out" 2>"$T/db.err"; then ok; else bad "mpirun -np 2 demo: $(tail -3 "$T/db.err")"; fi
[ "$(cd "$T/da" && find . | sort)" = "$(cd "$T/db" 2>/dev/null && find . | sort)" ] && ok || bad "demo -np 2: different files"
n=0
for f in table.md table.json $(cd "$T/da" && ls adapters/*.gguf); do
    n=$((n + 1))
    cmp -s "$T/da/$f" "$T/db/$f" && ok || bad "demo -np 2: $f differs"
done
[ $n -ge 10 ] && ok || bad "demo: only $n files compared"
# a rank with another model is refused before any job runs
"$VMOER" upcycle "$T/st.gguf" "$T/moe4b.gguf" --experts 4 --top-k 2 --noise 0.05 --router-std 0.3 --seed 9 >/dev/null 2>&1 || bad "upcycle (second demo model)"
Q2="--quick --data $T/cloze --train 8 --test 6 --ood 4 --val 4 --stability 2 --samples 2 --boot 20 --seed 3 --threads 1 -o $T/dc"
$MPI -np 1 "$VMOER" demo $Q2 --model "$T/moe4.gguf" : -np 1 "$VMOER" demo $Q2 --model "$T/moe4b.gguf" >"$T/o4" 2>"$T/e4"
rc=$?
[ $rc -ne 0 ] && grep -q "demo: the model differs across ranks: rank 1 has" "$T/e4" && ok \
    || bad "demo with two models: exit $rc, $(grep vmoer "$T/e4" | head -2)"
[ ! -e "$T/dc" ] && ok || bad "a refused demo wrote $T/dc"
# the table printed once (rank 0), and the other rank's private folder removed
[ "$(grep -c '^Better than deterministic: ' "$T/db.out")" -eq 1 ] && ok || bad "demo -np 2 printed the verdict $(grep -c '^Better than deterministic: ' "$T/db.out") times"
[ -z "$(ls "$T" | grep vmoer-demo-rank)" ] && ok || bad "a rank's private folder left: $(ls "$T")"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

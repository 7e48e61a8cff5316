# Helpers for the `vmoer serve` tests (sourced, not run: tests/run.sh runs tests/cli/*.sh only).
# Every server is started on a free loopback port (--port 0: the kernel picks one, the server
# prints it) and killed on exit by the trap that serve_cleanup installs. Loops that wait are bounded.
VMOER=${VMOER:-build/vmoer}
SH=${VMOER_SHARED:-../shared}
MODEL=data/models/stories-moe.gguf
p=0; f=0
ok() { p=$((p + 1)); }
bad() { f=$((f + 1)); echo "FAIL: $1"; }
T=$(mktemp -d "${TMPDIR:-/tmp}/vmoer_serve.XXXXXX") || exit 1
PIDS=""
serve_cleanup() {
    for pid in $PIDS; do kill "$pid" 2>/dev/null; done
    for pid in $PIDS; do wait "$pid" 2>/dev/null; done
    rm -rf "$T"
}
trap serve_cleanup EXIT
trap 'exit 1' INT TERM

# start NAME ARGS...: starts `vmoer serve ARGS --port 0` in the background, logs to $T/NAME.log;
# sets URL and SPID. Returns non-zero when it did not come up within 120 s (sanitizer builds load slowly).
start() {
    name=$1; shift
    : >"$T/$name.log"   # exists before the background job opens it
    "$VMOER" serve "$@" --port 0 >"$T/$name.out" 2>"$T/$name.log" &
    SPID=$!
    PIDS="$PIDS $SPID"
    i=0
    while [ $i -lt 1200 ]; do
        port=$(sed -n 's/^vmoer serve: listening on http:\/\/127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$T/$name.log")
        if [ -n "$port" ]; then URL="http://127.0.0.1:$port"; return 0; fi
        kill -0 "$SPID" 2>/dev/null || break
        sleep 0.1; i=$((i + 1))
    done
    echo "server $name did not start: $(cat "$T/$name.log")"
    return 1
}

# finish: stops every server still running with SIGTERM (each must drain and exit 0, with no
# sanitizer report in its log), prints the summary line and exits with the result.
finish() {
    for pid in $PIDS; do
        kill -0 "$pid" 2>/dev/null || continue
        kill -TERM "$pid"; wait "$pid"; rc=$?
        [ $rc -eq 0 ] && ok || bad "a server exited with status $rc after SIGTERM"
    done
    PIDS=""
    if grep -l -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$T"/*.log >/dev/null 2>&1; then
        bad "sanitizer report: $(grep -h -A5 -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$T"/*.log | head -30)"
    else ok; fi
    echo "$p passed, $f failed"
    [ "$f" -eq 0 ]
    exit
}

# post PATH BODY OUT: POST with curl; prints the HTTP status.
post() { curl -s -o "$3" -w '%{http_code}' -H 'Content-Type: application/json' --data-binary "$2" "$URL$1"; }

# A tiny VGLR-mf adapter on the bundled model (a few steps: the read-outs exist whatever it learnt).
fit_vglr() {
    "$VMOER" fit "$MODEL" --data data/cloze/train.jsonl --limit 8 --router vglr-mf --layers 3-4 --epochs 1 --batch 4 \
        --val-frac 0.25 --score pmi --quiet --threads 1 -o "$1" >"$T/fit.out" 2>&1
}

# node with the test-only `openai` package (scripts/install-deps.sh --tests puts it there)
NODE_CACHE=${VMOER_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vmoer-tests/node}
export NODE_PATH="$NODE_CACHE/node_modules${NODE_PATH:+:$NODE_PATH}"

# js FILE ARGS...: runs a node script that prints "ok" or "FAIL: ..." per check; counted here
# (a script that fails without saying why counts as one failure).
js() {
    node "$@" >"$T/js.out" 2>&1
    rc=$?
    n_ok=$(grep -c '^ok' "$T/js.out")
    n_bad=$(grep -c '^FAIL' "$T/js.out")
    [ $rc -ne 0 ] && [ "$n_bad" -eq 0 ] && n_bad=1
    p=$((p + n_ok)); f=$((f + n_bad))
    [ "$n_bad" -eq 0 ] || { echo "FAIL: node $* (exit $rc):"; grep -v '^ok' "$T/js.out" | head -20; }
}

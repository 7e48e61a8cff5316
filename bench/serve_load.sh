#!/bin/sh
# Load on `vmoer serve`: requests/s, generated tokens/s and p50/p99 latency with 1, 4 and 16
# concurrent clients (curl loops), each sending greedy completions of TOKENS tokens.
#   sh bench/serve_load.sh [MODEL.gguf] [serve options, e.g. --adapter A.gguf --parallel 2]
# Environment: REQS (requests per level, default 64), TOKENS (max_tokens, default 32),
# CLIENTS (default "1 4 16"). Bounded: REQS requests per level, then the server is stopped.
# The server listens on a free loopback port and is always killed (trap).
VMOER=${VMOER:-build/vmoer}
MODEL=${1:-data/models/stories-moe.gguf}
[ $# -gt 0 ] && shift
REQS=${REQS:-64}
TOKENS=${TOKENS:-32}
CLIENTS=${CLIENTS:-1 4 16}
T=$(mktemp -d "${TMPDIR:-/tmp}/vmoer_load.XXXXXX") || exit 1
SPID=""
trap '[ -n "$SPID" ] && kill "$SPID" 2>/dev/null; wait 2>/dev/null; rm -rf "$T"' EXIT
trap 'exit 1' INT TERM

: >"$T/log"   # exists before the background job opens it
"$VMOER" serve "$MODEL" --port 0 --quiet "$@" 2>"$T/log" &
SPID=$!
i=0
while [ $i -lt 600 ] && ! grep -q 'listening on' "$T/log"; do
    kill -0 "$SPID" 2>/dev/null || { cat "$T/log"; exit 1; }
    sleep 0.1; i=$((i + 1))
done
URL=$(sed -n 's/^vmoer serve: listening on \(http:[^ ]*\) .*/\1/p' "$T/log")
[ -n "$URL" ] || { echo "the server did not start: $(cat "$T/log")"; exit 1; }
sed -n 's/^vmoer serve: listening on [^ ]* //p' "$T/log"
BODY="{\"prompt\":\"Once upon a time\",\"max_tokens\":$TOKENS,\"temperature\":0}"
curl -s -o /dev/null -H 'Content-Type: application/json' -d "$BODY" "$URL/v1/completions"   # warm-up

now() { date +%s.%N; }
printf '%8s %8s %10s %10s %12s %12s\n' clients requests "req/s" "tok/s" "p50 ms" "p99 ms"
for c in $CLIENTS; do
    per=$(( (REQS + c - 1) / c ))
    rm -f "$T"/lat.*
    t0=$(now)
    k=0; pids=""
    while [ $k -lt "$c" ]; do
        ( j=0; while [ $j -lt $per ]; do
              curl -s -o /dev/null -w '%{http_code} %{time_total}\n' -H 'Content-Type: application/json' -d "$BODY" "$URL/v1/completions"
              j=$((j + 1))
          done >"$T/lat.$k" ) &
        pids="$pids $!"
        k=$((k + 1))
    done
    wait $pids
    t1=$(now)
    cat "$T"/lat.* | awk -v t0="$t0" -v t1="$t1" -v c="$c" -v tok="$TOKENS" '
        $1 != 200 { bad++ } $1 == 200 { n++; lat[n] = $2 * 1000 }
        END {
            if (bad) { printf "%d requests failed\n", bad; exit 1 }
            # insertion sort: at most a few hundred values
            for (i = 2; i <= n; i++) { v = lat[i]; j = i - 1; while (j > 0 && lat[j] > v) { lat[j + 1] = lat[j]; j-- } lat[j + 1] = v }
            p50 = lat[int((n - 1) * 0.50) + 1]; p99 = lat[int((n - 1) * 0.99) + 1]; w = t1 - t0
            printf "%8d %8d %10.1f %10.0f %12.1f %12.1f\n", c, n, n / w, n * tok / w, p50, p99
        }' || exit 1
done

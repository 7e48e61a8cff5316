#!/bin/sh
# vmoer serve's behaviour under load and at the edges, with curl: 16 concurrent clients (streamed
# and not, completions and chat, greedy and seeded sampling, a VGLR adapter whose routers sample)
# each get exactly the bytes the same request gets alone; a full queue answers 503 + Retry-After;
# clients that disconnect (mid-stream, while waiting, while queued) free their slot; SIGTERM
# finishes the requests in flight and exits 0. --token-delay-ms slows generation down so these
# states last long enough to be reached; every wait is a bounded poll, nothing asserts timing.
. tests/cli/lib/serve.sh

# health_is FIELD VALUE: polls /health (up to 60 s) until "FIELD":VALUE
health_is() {
    i=0
    while [ $i -lt 600 ]; do
        curl -s "$URL/health" 2>/dev/null | grep -q "\"$1\":$2[,}]" && return 0
        sleep 0.1; i=$((i + 1))
    done
    echo "health never had $1 = $2: $(curl -s "$URL/health")"
    return 1
}
# strip the per-request id and time from an answer (JSON or SSE)
norm() { sed -E 's/"id":"[a-z]+-[0-9]+",//g; s/"created":[0-9]+,//g' "$1"; }

fit_vglr "$T/vglr.gguf" && ok || bad "fit: $(cat "$T/fit.out")"
start main "$MODEL" --adapter "$T/vglr.gguf" --chat-template none --parallel 2 --queue 32 --quiet || exit 1

# ---- 16 concurrent clients, each answer equal to the same request alone
prompts="Once upon a time|Lily and Ben|The cat sat|One day, a little girl|Tom had a red ball|The sun was hot|Mom said|A big dog"
i=0
while [ $i -lt 16 ]; do
    pr=$(echo "$prompts" | cut -d'|' -f$((i % 8 + 1)))
    n=$((8 + i % 5 * 4))
    case $((i % 4)) in
        0) path=/v1/completions; body="{\"prompt\":\"$pr\",\"max_tokens\":$n,\"temperature\":0}";;
        1) path=/v1/completions; body="{\"prompt\":\"$pr\",\"max_tokens\":$n,\"temperature\":0,\"stream\":true,\"logprobs\":2}";;
        2) path=/v1/chat/completions; body="{\"messages\":[{\"role\":\"user\",\"content\":\"$pr\"}],\"max_tokens\":$n,\"temperature\":0,\"stream\":true,\"vmoer\":{\"return_routing\":true}}";;
        *) path=/v1/chat/completions; body="{\"messages\":[{\"role\":\"user\",\"content\":\"$pr\"}],\"max_tokens\":$n,\"temperature\":0.9,\"seed\":$i,\"logprobs\":true,\"top_logprobs\":2}";;
    esac
    echo "$path" >"$T/path$i"; echo "$body" >"$T/body$i"
    i=$((i + 1))
done
i=0; cpids=""
while [ $i -lt 16 ]; do
    curl -s -o "$T/conc$i" -w '%{http_code}' -H 'Content-Type: application/json' --data-binary @"$T/body$i" "$URL$(cat "$T/path$i")" >"$T/code$i" &
    cpids="$cpids $!"
    i=$((i + 1))
done
wait $cpids   # the clients only: a bare `wait` would wait for the servers too
i=0; same=0; codes=0
while [ $i -lt 16 ]; do
    post "$(cat "$T/path$i")" "$(cat "$T/body$i")" "$T/alone$i" >/dev/null
    [ "$(cat "$T/code$i")" = 200 ] && codes=$((codes + 1))
    norm "$T/conc$i" >"$T/a"; norm "$T/alone$i" >"$T/b"
    if [ -s "$T/a" ] && cmp -s "$T/a" "$T/b"; then same=$((same + 1)); else echo "request $i differs: $(head -c 200 "$T/a") vs $(head -c 200 "$T/b")"; fi
    i=$((i + 1))
done
[ $codes -eq 16 ] && ok || bad "$codes of 16 concurrent requests answered 200"
[ $same -eq 16 ] && ok || bad "$same of 16 concurrent answers equal the same request alone"
grep -c '"finish_reason"' "$T/conc1" >/dev/null && grep -q '^data: \[DONE\]' "$T/conc1" && ok || bad "a concurrent stream is complete"
health_is requests 32 && ok || bad "32 requests counted"

# ---- a full queue: 1 slot + 1 waiting, the third request gets 503 with Retry-After
start queue "$MODEL" --parallel 1 --queue 1 --token-delay-ms 50 --quiet || exit 1
post /v1/completions '{"prompt":"Once","max_tokens":40}' "$T/q1" >"$T/q1.code" &
c1=$!
health_is slots_busy 1 && ok || bad "first request running"
post /v1/completions '{"prompt":"Once","max_tokens":4}' "$T/q2" >"$T/q2.code" &
c2=$!
health_is queued 1 && ok || bad "second request queued"
s=$(curl -s -o "$T/q3" -D "$T/q3.hdr" -w '%{http_code}' -H 'Content-Type: application/json' --data '{"prompt":"Once","max_tokens":4}' "$URL/v1/completions")
[ "$s" = 503 ] && grep -qi '^retry-after: 1' "$T/q3.hdr" && grep -q '"code":"server_busy"' "$T/q3" && ok || bad "full queue: $s $(cat "$T/q3.hdr" "$T/q3")"
wait $c1 $c2
[ "$(cat "$T/q1.code")" = 200 ] && [ "$(cat "$T/q2.code")" = 200 ] && ok || bad "the running and the queued request were answered"
health_is rejected 1 && ok || bad "rejected counter"

# ---- disconnects free the slot: mid-stream, while decoding a non-streamed answer, while queued
start dis "$MODEL" --parallel 1 --token-delay-ms 50 || exit 1
curl -s -N --max-time 1 -H 'Content-Type: application/json' --data '{"prompt":"Once","max_tokens":400,"stream":true}' "$URL/v1/completions" >"$T/d1" 2>/dev/null
grep -q '^data: {' "$T/d1" && ok || bad "the stream started before the client left"
health_is cancelled 1 && health_is slots_busy 0 && ok || bad "mid-stream disconnect did not free the slot"
curl -s --max-time 1 -H 'Content-Type: application/json' --data '{"prompt":"Once","max_tokens":400}' "$URL/v1/completions" >/dev/null 2>&1
health_is cancelled 2 && health_is slots_busy 0 && ok || bad "a non-streamed request's disconnect did not free the slot"
post /v1/completions '{"prompt":"Once","max_tokens":30}' "$T/d3" >/dev/null &
c1=$!
health_is slots_busy 1 || bad "long request not running"
curl -s --max-time 1 -H 'Content-Type: application/json' --data '{"prompt":"Once","max_tokens":400}' "$URL/v1/completions" >/dev/null 2>&1
wait $c1
health_is cancelled 3 && health_is slots_busy 0 && ok || bad "a queued request whose client left was run"
n=$(grep -c 'client gone' "$T/dis.log")
[ "$n" -eq 3 ] && grep -q 'client gone while queued' "$T/dis.log" && ok || bad "$n log lines say the client left: $(cat "$T/dis.log")"
! grep 'client gone: stopped after 400 tokens' "$T/dis.log" && ok || bad "a cancelled request ran to the end: $(cat "$T/dis.log")"
s=$(post /v1/completions '{"prompt":"Once","max_tokens":3}' "$T/d4")
[ "$s" = 200 ] && ok || bad "served after the disconnects: $s"

# ---- SIGTERM: the running and the queued request finish, new connections are refused, exit 0
start drain "$MODEL" --parallel 1 --token-delay-ms 50 || exit 1
post /v1/completions '{"prompt":"Once","max_tokens":20,"temperature":0}' "$T/t1" >"$T/t1.code" &
c1=$!
health_is slots_busy 1 || bad "drain: first request not running"
curl -s -N -H 'Content-Type: application/json' --data '{"prompt":"Once","max_tokens":20,"temperature":0,"stream":true}' "$URL/v1/completions" >"$T/t2" &
c2=$!
health_is queued 1 || bad "drain: second request not queued"
kill -TERM "$SPID"
i=0; while [ $i -lt 100 ] && ! grep -q 'SIGTERM' "$T/drain.log"; do sleep 0.1; i=$((i + 1)); done
curl -s --max-time 5 "$URL/health" >"$T/t3" 2>/dev/null; rc=$?
{ [ $rc -ne 0 ] || grep -q shutting "$T/t3"; } && ok || bad "a new request during the drain was served: $(cat "$T/t3")"
wait "$SPID"; rc=$?
[ $rc -eq 0 ] && ok || bad "exit status $rc after SIGTERM"
wait $c1 $c2
grep -q '"finish_reason":"length"' "$T/t1" && grep -q '"completion_tokens":20' "$T/t1" && ok || bad "in-flight answer cut: $(head -c 300 "$T/t1")"
tail -c 20 "$T/t2" | grep -q '\[DONE\]' && [ "$(grep -c '"vmoer":{"tokens"' "$T/t2")" -eq 20 ] && ok || bad "queued stream cut: $(tail -c 300 "$T/t2")"
grep -q 'SIGTERM: finishing 2 requests in flight' "$T/drain.log" && ok || bad "drain log: $(cat "$T/drain.log")"

finish

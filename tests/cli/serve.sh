#!/bin/sh
# vmoer serve with curl: the endpoints and their fields (completion, chat, streaming, logprobs, the
# vmoer read-outs and their agreement with `vmoer run --jsonl`, abstention, stop strings, multiple
# choice), the chat template rule, the API key, and the list of malformed requests: each gets a
# 4xx with an OpenAI-style error and the server keeps serving. Bad flags: one line, non-zero exit.
. tests/cli/lib/serve.sh
CHECK=tests/cli/lib/serve_check.js

fit_vglr "$T/vglr.gguf" && ok || bad "fit: $(cat "$T/fit.out")"
start main "$MODEL" --adapter "$T/vglr.gguf" --chat-template none --parallel 2 --max-tokens 64 --max-body 4096 || exit 1

curl -s "$URL/health" >"$T/h.json" && grep -q '"status":"ok"' "$T/h.json" && grep -q '"slots":2' "$T/h.json" && ok || bad "health: $(cat "$T/h.json")"
curl -s "$URL/v1/models" >"$T/m.json" && grep -q '"id":"stories-moe"' "$T/m.json" && grep -q '"router":"vglr-mf","readout_layers":\[3,4\]' "$T/m.json" \
    && ok || bad "models: $(cat "$T/m.json")"

# completion: fields, and the same read-outs as `vmoer run --jsonl` (same model, adapter, prompt, seed)
s=$(post /v1/completions '{"model":"stories-moe","prompt":"Once upon a time","max_tokens":8,"temperature":0}' "$T/c.json")
[ "$s" = 200 ] && ok || bad "completion: $s $(cat "$T/c.json")"
"$VMOER" run "$MODEL" --adapter "$T/vglr.gguf" -p "Once upon a time" -n 8 --temp 0 --jsonl >"$T/run.jsonl" 2>/dev/null || bad "run --jsonl"
js $CHECK completion "$T/c.json" "$T/run.jsonl"

# streaming: the deltas and per-chunk records add up to the whole answer
post /v1/completions '{"prompt":"Once upon a time","max_tokens":8,"temperature":0,"stream":true}' "$T/cs.sse" >/dev/null
js $CHECK stream-equals "$T/cs.sse" "$T/c.json"

# chat (template none: the messages' text), non-streamed and streamed, with logprobs
s=$(post /v1/chat/completions '{"messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":6,"temperature":0,"logprobs":true,"top_logprobs":3}' "$T/ch.json")
[ "$s" = 200 ] && ok || bad "chat: $s $(cat "$T/ch.json")"
post /v1/chat/completions '{"messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":6,"temperature":0,"logprobs":true,"top_logprobs":3,"stream":true,"stream_options":{"include_usage":true}}' "$T/chs.sse" >/dev/null
js $CHECK chat "$T/ch.json" "$T/chs.sse"
# completions' logprobs (the legacy format)
post /v1/completions '{"prompt":"Lily and Ben","max_tokens":5,"temperature":0,"logprobs":2}' "$T/lp.json" >/dev/null
js $CHECK legacy-logprobs "$T/lp.json"
# a token-id prompt equals the same text
"$VMOER" tokenize "$MODEL" --bos "Once upon a time" >"$T/ids" 2>/dev/null
ids=$(tr ' ' ',' <"$T/ids" | tr -d '\n')
post /v1/completions "{\"prompt\":[$ids],\"max_tokens\":8,\"temperature\":0}" "$T/cid.json" >/dev/null
js $CHECK same-text "$T/cid.json" "$T/c.json"

# abstention: entropy above 0 at the first token stops before it, with the marker
post /v1/completions '{"prompt":"Once upon a time","max_tokens":8,"temperature":0,"vmoer":{"abstain":{"score":"entropy","threshold":0}}}' "$T/ab.json" >/dev/null
js $CHECK abstain "$T/ab.json"
# stop strings end the text before them, streamed or not
post /v1/completions '{"prompt":"Once upon a time","max_tokens":8,"temperature":0,"stop":[" was"]}' "$T/st.json" >/dev/null
post /v1/completions '{"prompt":"Once upon a time","max_tokens":8,"temperature":0,"stop":[" was"],"stream":true}' "$T/sts.sse" >/dev/null
js $CHECK stop "$T/st.json" "$T/sts.sse" "$T/c.json"
# sampling: a seed reproduces, another seed (almost surely) does not
post /v1/completions '{"prompt":"Once","max_tokens":24,"temperature":1,"seed":7}' "$T/s7a.json" >/dev/null
post /v1/completions '{"prompt":"Once","max_tokens":24,"temperature":1,"seed":7}' "$T/s7b.json" >/dev/null
post /v1/completions '{"prompt":"Once","max_tokens":24,"temperature":1,"seed":8}' "$T/s8.json" >/dev/null
js $CHECK seeds "$T/s7a.json" "$T/s7b.json" "$T/s8.json"

# multiple choice: probabilities over the choices and the read-outs, as eval scores an item
s=$(post /v1/vmoer/choices '{"question":"Once upon a time, a little cat found a red ball.","choices":["The cat was very happy.","The car drove to the moon."],"score":"pmi"}' "$T/mc.json")
[ "$s" = 200 ] && ok || bad "choices: $s $(cat "$T/mc.json")"
s=$(post /v1/vmoer/choices '{"question":"Is the sky blue?","choices":["yes","no","maybe"],"passes":2,"seed":3}' "$T/mc2.json")
[ "$s" = 200 ] && ok || bad "choices letter: $s $(cat "$T/mc2.json")"
js $CHECK choices "$T/mc.json" "$T/mc2.json"

# malformed requests: a 4xx with {"error": {"message", "type", "param", "code"}}, and the server goes on
bad_req() {   # $1 want status, $2 what, $3 path, $4 body
    s=$(post "$3" "$4" "$T/e.json")
    if [ "$s" = "$1" ] && grep -q '^{"error":{"message":"[^"]' "$T/e.json"; then ok; else bad "$2: status $s, body $(head -c 300 "$T/e.json")"; fi
}
C=/v1/completions; CH=/v1/chat/completions
bad_req 400 "bad JSON" $C '{"prompt": "x",'
bad_req 400 "not an object" $C '["x"]'
bad_req 400 "empty body" $C ''
bad_req 400 "max_tokens a string" $C '{"prompt":"x","max_tokens":"ten"}'
bad_req 400 "max_tokens over the cap" $C '{"prompt":"x","max_tokens":65}'
bad_req 400 "negative max_tokens" $C '{"prompt":"x","max_tokens":-1}'
bad_req 400 "temperature a string" $C '{"prompt":"x","temperature":"hot"}'
bad_req 400 "temperature 3" $C '{"prompt":"x","temperature":3}'
bad_req 400 "stream a string" $C '{"prompt":"x","stream":"yes"}'
bad_req 400 "prompt a number" $C '{"prompt":5}'
bad_req 400 "no prompt" $C '{"max_tokens":3}'
bad_req 400 "token id out of range" $C '{"prompt":[1,99999]}'
bad_req 400 "unknown field" $C '{"prompt":"x","frobnicate":1}'
bad_req 400 "unknown vmoer field" $C '{"prompt":"x","vmoer":{"return_routes":true}}'
bad_req 400 "n = 2" $C '{"prompt":"x","n":2}'
bad_req 400 "stop not a string" $C '{"prompt":"x","stop":[1]}'
bad_req 400 "five stop strings" $C '{"prompt":"x","stop":["a","b","c","d","e"]}'
bad_req 400 "stream_options without stream" $C '{"prompt":"x","stream_options":{"include_usage":true}}'
bad_req 400 "abstain with an unknown score" $C '{"prompt":"x","vmoer":{"abstain":{"score":"bogus","threshold":1}}}'
bad_req 400 "duplicate key" $C '{"prompt":"x","prompt":"y"}'
long=1; i=0; while [ $i -lt 600 ]; do long="$long,300"; i=$((i + 1)); done
bad_req 400 "prompt longer than the context" $C "{\"prompt\":[$long]}"
grep -q 'context_length_exceeded' "$T/e.json" && grep -q 'the prompt has 601 tokens' "$T/e.json" && ok || bad "context error: $(cat "$T/e.json")"
bad_req 413 "body over --max-body" $C "{\"prompt\":\"$(head -c 5000 /dev/zero | tr '\0' a)\"}"
printf '{"prompt":"\377\376"}' >"$T/bad-utf8"
s=$(curl -s -o "$T/e.json" -w '%{http_code}' --data-binary @"$T/bad-utf8" "$URL$C")
[ "$s" = 400 ] && grep -q 'not valid UTF-8' "$T/e.json" && ok || bad "invalid UTF-8: $s $(cat "$T/e.json")"
bad_req 400 "messages missing" $CH '{"max_tokens":3}'
bad_req 400 "messages empty" $CH '{"messages":[]}'
bad_req 400 "bad role" $CH '{"messages":[{"role":"wizard","content":"x"}]}'
bad_req 400 "content a number" $CH '{"messages":[{"role":"user","content":5}]}'
bad_req 400 "an image part" $CH '{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}'
bad_req 400 "top_logprobs without logprobs" $CH '{"messages":[{"role":"user","content":"x"}],"top_logprobs":2}'
bad_req 400 "tools" $CH '{"messages":[{"role":"user","content":"x"}],"tools":[]}'
bad_req 400 "one choice" /v1/vmoer/choices '{"question":"q","choices":["a"]}'
bad_req 400 "unknown score mode" /v1/vmoer/choices '{"question":"q","choices":["a","b"],"score":"vibes"}'
s=$(curl -s -o "$T/e.json" -w '%{http_code}' "$URL/v1/nothing")
[ "$s" = 404 ] && grep -q '"code":"not_found"' "$T/e.json" && ok || bad "unknown path: $s"
s=$(curl -s -o "$T/e.json" -w '%{http_code}' -D "$T/hdr" "$URL/v1/completions")
[ "$s" = 405 ] && grep -qi '^allow: POST' "$T/hdr" && ok || bad "GET on a POST endpoint: $s $(cat "$T/hdr")"
curl -s "$URL/health" | grep -q '"status":"ok"' && ok || bad "the server stopped serving after the malformed requests"
kill -0 "$SPID" 2>/dev/null && ok || bad "the server died"

# no chat template (the bundled model has none): a clear 400, completions still work
start notmpl "$MODEL" --quiet || exit 1
bad_req 400 "chat without a template" $CH '{"messages":[{"role":"user","content":"Once"}]}'
grep -q 'no_chat_template' "$T/e.json" && grep -q -- '--chat-template' "$T/e.json" && ok || bad "template message: $(cat "$T/e.json")"
s=$(post /v1/completions '{"prompt":"Once","max_tokens":2}' "$T/x.json")
[ "$s" = 200 ] && ok || bad "completion without a template: $s"

# --api-key: 401 without or with a wrong key, 200 with it; /health stays open
start key "$MODEL" --api-key s3cret --quiet || exit 1
s=$(post /v1/completions '{"prompt":"Once","max_tokens":2}' "$T/x.json")
[ "$s" = 401 ] && grep -q '"code":"invalid_api_key"' "$T/x.json" && ok || bad "no key: $s $(cat "$T/x.json")"
s=$(curl -s -o "$T/x.json" -w '%{http_code}' -H 'Authorization: Bearer wrong' "$URL/v1/models")
[ "$s" = 401 ] && ok || bad "wrong key: $s"
s=$(curl -s -o "$T/x.json" -w '%{http_code}' -H 'Authorization: Bearer s3cret' "$URL/v1/models")
[ "$s" = 200 ] && ok || bad "right key: $s"
s=$(curl -s -o "$T/x.json" -w '%{http_code}' "$URL/health")
[ "$s" = 200 ] && ok || bad "health behind a key: $s"

# bad flags: one line on stderr, non-zero exit, no server
one_line_fail() {
    what=$1; shift
    "$VMOER" serve "$@" >"$T/o" 2>"$T/e" && { bad "$what accepted"; return; }
    [ "$(wc -l <"$T/e")" -eq 1 ] && grep -q '^vmoer serve: ' "$T/e" && ok || bad "$what: $(cat "$T/e")"
}
one_line_fail "no model"
one_line_fail "unknown flag" "$MODEL" --bogus
one_line_fail "--port 70000" "$MODEL" --port 70000
one_line_fail "--parallel 0" "$MODEL" --parallel 0
one_line_fail "--parallel x" "$MODEL" --parallel x
one_line_fail "--chat-template bogus" "$MODEL" --chat-template bogus
one_line_fail "--score vibes" "$MODEL" --score vibes
one_line_fail "missing model file" "$T/none.gguf" --port 0
one_line_fail "adapter of another model" "$MODEL" --adapter "$MODEL" --port 0
one_line_fail "--host not an address" "$MODEL" --host no.such.host.invalid --port 0
"$VMOER" serve --help | grep -q -- '--max-routing-tokens' && ok || bad "serve --help"

finish

#!/bin/sh
# Routing over the API (issue 22): "vmoer": {"return_routing": true} returns, for every token of the
# prompt and the answer and each chosen MoE layer, the experts, gates, router probabilities and
# logits and the routers' read-outs (ILV for the VGLR layers) - bit for bit what `vmoer trace`
# writes for the same ids (--decode-from: the answer's tokens one call each, as generation ran
# them; the VGLR routers sample per call), streamed or not, base64 or JSON lists. Off by default;
# --max-routing-tokens caps it with a 400 that names the limit.
. tests/cli/lib/serve.sh
CHECK=tests/cli/lib/routing_check.js

fit_vglr "$T/vglr.gguf" && ok || bad "fit: $(cat "$T/fit.out")"
start main "$MODEL" --adapter "$T/vglr.gguf" --chat-template none --max-routing-tokens 64 || exit 1

# trace_of ANSWER [SEED]: `vmoer trace` of the answer's routed ids into ANSWER.trace (the request's
# seed is also the routers' stream)
trace_of() {
    set -- "$1" "${2:-0}" $(node $CHECK ids "$1")
    "$VMOER" trace "$MODEL" --adapter "$T/vglr.gguf" --ids "$3" --decode-from "$4" --seed "$2" -o "$1.trace" 2>"$T/trace.err" \
        || bad "trace of $1: $(cat "$T/trace.err")"
}

s=$(post /v1/completions '{"prompt":"Once upon a time","max_tokens":6,"temperature":0,"vmoer":{"return_routing":true}}' "$T/c.json")
[ "$s" = 200 ] && ok || bad "completion with routing: $s $(head -c 300 "$T/c.json")"
trace_of "$T/c.json"
js $CHECK trace "$T/c.json" "$T/c.json.trace"
grep -q '"routing":{"start":0,"n_tokens":11,"layers":\[0,1,2,3,4\],"n_expert":8,"top_k":2,"format":"base64","ids":{"dtype":"int32","shape":\[11\]' "$T/c.json" \
    && ok || bad "routing header: every token (5 prompt + 6 answer), every MoE layer"

post /v1/completions '{"prompt":"Once upon a time","max_tokens":6,"temperature":0,"stream":true,"vmoer":{"return_routing":true}}' "$T/cs.sse" >/dev/null
js $CHECK trace "$T/cs.sse" "$T/c.json.trace"
js $CHECK same "$T/cs.sse" "$T/c.json"

post /v1/completions '{"prompt":"Once upon a time","max_tokens":6,"temperature":0,"vmoer":{"return_routing":true,"format":"json"}}' "$T/cj.json" >/dev/null
js $CHECK same "$T/cj.json" "$T/c.json"
grep -q '"experts":\[\[\[' "$T/cj.json" && ok || bad "format json: nested lists"

# chat, streamed, a subset of layers
post /v1/chat/completions '{"messages":[{"role":"user","content":"Lily and Ben"}],"max_tokens":5,"temperature":0,"stream":true,"stream_options":{"include_usage":true},"vmoer":{"return_routing":true,"layers":[1,4]}}' "$T/ch.sse" >/dev/null
trace_of "$T/ch.sse"
js $CHECK trace "$T/ch.sse" "$T/ch.sse.trace"
grep -q '"layers":\[1,4\]' "$T/ch.sse" && ! grep -q '"layers":\[0' "$T/ch.sse" && ok || bad "only the chosen layers"

# sampled answer with a seed: still what trace gives for its ids
post /v1/completions '{"prompt":"Tom had","max_tokens":8,"temperature":1,"seed":5,"vmoer":{"return_routing":true}}' "$T/s.json" >/dev/null
trace_of "$T/s.json" 5
js $CHECK trace "$T/s.json" "$T/s.json.trace"

# off by default; the cap; bad layers
post /v1/completions '{"prompt":"Once upon a time","max_tokens":6}' "$T/n.json" >/dev/null
grep -q '"routing"' "$T/n.json" && bad "routing returned without asking" || ok
s=$(post /v1/completions '{"prompt":"Once upon a time","max_tokens":60,"vmoer":{"return_routing":true}}' "$T/e.json")
[ "$s" = 400 ] && grep -q 'limit of 64 routing tokens' "$T/e.json" && grep -q '"code":"routing_limit_exceeded"' "$T/e.json" \
    && ok || bad "over the cap: $s $(cat "$T/e.json")"
s=$(post /v1/completions '{"prompt":"x","vmoer":{"return_routing":true,"layers":[7]}}' "$T/e.json")
[ "$s" = 400 ] && grep -q 'not a MoE layer' "$T/e.json" && ok || bad "layer 7: $s $(cat "$T/e.json")"
s=$(post /v1/completions '{"prompt":"x","vmoer":{"return_routing":true,"layers":[4,1]}}' "$T/e.json")
[ "$s" = 400 ] && ok || bad "unsorted layers: $s"
s=$(post /v1/completions '{"prompt":"x","vmoer":{"return_routing":true,"format":"npy"}}' "$T/e.json")
[ "$s" = 400 ] && ok || bad "unknown format: $s"
s=$(post /v1/completions '{"prompt":"x","vmoer":{"layers":[1]}}' "$T/e.json")
[ "$s" = 400 ] && ok || bad "layers without return_routing: $s"

# the prompt's routing alone: max_tokens 0
s=$(post /v1/completions '{"prompt":"Once upon a time","max_tokens":0,"vmoer":{"return_routing":true}}' "$T/z.json")
[ "$s" = 200 ] && grep -q '"n_tokens":5,' "$T/z.json" && ok || bad "max_tokens 0: $s $(head -c 300 "$T/z.json")"

finish

#!/bin/sh
# vmoer serve with the official `openai` npm client (a test-only dependency installed by
# scripts/install-deps.sh --tests): models, completions and chat, streamed and not, logprobs, the
# vmoer fields as the client hands them over, 16 concurrent clients equal alone, typed errors, the
# API key, and a client that aborts mid-stream (tests/cli/lib/openai_client.js).
. tests/cli/lib/serve.sh

if [ ! -f "$NODE_CACHE/node_modules/openai/package.json" ]; then
    bad "the openai npm package is missing: run sh scripts/install-deps.sh --tests"
    echo "$p passed, $f failed"; exit 1
fi
fit_vglr "$T/vglr.gguf" && ok || bad "fit: $(cat "$T/fit.out")"
start main "$MODEL" --adapter "$T/vglr.gguf" --chat-template none --parallel 2 --api-key k3y --quiet || exit 1
MAIN=$URL
start slow "$MODEL" --parallel 1 --token-delay-ms 50 --quiet || exit 1
js tests/cli/lib/openai_client.js "$MAIN" "$URL" k3y

finish

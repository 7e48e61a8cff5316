#!/bin/sh
# vmoer quantize end to end on a small Granite-shaped model (2 layers, 4 experts, rows of 512 and
# 1536, F16): every type and mix writes a file vmoer loads, with the tensor types of the mix rules;
# llama.cpp (node-llama-cpp, test-only, scripts/llamacpp.sh) loads every output and its logits agree
# with vmoer's within the gap activation rounding makes (tests/reference/logit_gap.mjs states the
# bound); rows no block divides fall back as documented; bad input fails with one line.
VMOER=${VMOER:-build/vmoer}
SHARED=${VMOER_SHARED:-../shared}
IDS=1,17,42,5,63,100,200,300,7,400
pass=0; fail=0
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

M="$T/f16.gguf"
"$VMOER" bench --gen-granite "$M" --layers 2 --vocab 512 --experts 4 --type f16 >/dev/null 2>"$T/e" && ok || bad "gen: $(cat "$T/e")"

# type of tensor NAME in a `quantize -v` listing
ty() { awk -v n="$2" '$1 == n {print $4}' "$1"; }

LC=""
if LC=$(sh scripts/llamacpp.sh 2>"$T/lce"); then :; else
    echo "skipping the llama.cpp round trip: $(cat "$T/lce")"; LC=""
fi

for t in q8_0 q4_0 q4_K q5_K q6_K q4_K_M q5_K_M; do
    Q="$T/$t.gguf"
    if "$VMOER" quantize "$M" "$Q" "$t" -v >"$T/$t.log" 2>"$T/e"; then ok; else bad "quantize $t: $(cat "$T/e")"; continue; fi
    base=$(echo "$t" | sed 's/_M$//')
    # kept: norms and routers in F32; the base type on the first layer's attn_q
    [ "$(ty "$T/$t.log" blk.0.ffn_gate_inp.weight)" = f32 ] && [ "$(ty "$T/$t.log" blk.1.attn_norm.weight)" = f32 ] && ok || bad "$t: router/norm not kept"
    [ "$(ty "$T/$t.log" blk.0.attn_q.weight)" = "$base" ] && ok || bad "$t: attn_q is $(ty "$T/$t.log" blk.0.attn_q.weight)"
    case $t in *_M)   # 2 layers: layer 1 is a "more bits" layer; the tied output matrix Q6_K
        [ "$(ty "$T/$t.log" blk.1.attn_v.weight)" = q6_K ] && [ "$(ty "$T/$t.log" blk.0.attn_v.weight)" = "$base" ] &&
            [ "$(ty "$T/$t.log" blk.1.ffn_down_exps.weight)" = q6_K ] && [ "$(ty "$T/$t.log" token_embd.weight)" = q6_K ] &&
            ok || bad "$t mix: $(cat "$T/$t.log")";;
    *) [ "$(ty "$T/$t.log" token_embd.weight)" = "$base" ] && ok || bad "$t: not pure";;
    esac
    "$VMOER" logits "$Q" --ids $IDS -o "$T/$t.npy" 2>"$T/e" && ok || bad "logits $t: $(cat "$T/e")"
    if [ -n "$LC" ]; then
        # the same weights widened to F32: vmoer's logits without int8 activations
        "$VMOER" quantize "$Q" "$T/w.gguf" f32 >/dev/null 2>"$T/e" && "$VMOER" logits "$T/w.gguf" --ids $IDS -o "$T/w.npy" 2>"$T/e" && ok || bad "widen $t: $(cat "$T/e")"
        if VMOER_LLAMACPP_DIR="$LC" node tests/reference/llamacpp_logits.mjs "$Q" $IDS "$T/lc.txt" 2>"$T/e"; then ok
        else bad "llama.cpp does not load the $t output: $(tail -3 "$T/e")"; continue; fi
        node tests/reference/logit_gap.mjs "$T/$t.npy" "$T/w.npy" "$T/lc.txt" >"$T/gap" && ok || bad "$t: $(cat "$T/gap")"
        echo "$t: $(cat "$T/gap")"
    fi
done

# rows of 64 and 172 elements (stories260K): K-quants fall back to Q8_0 (64) and F16 (172)
S="$T/st.gguf"
"$VMOER" convert-llama2c "$SHARED/models/stories260K.bin" "$SHARED/models/tok512.bin" "$S" 2>"$T/e" && ok || bad "convert: $(cat "$T/e")"
"$VMOER" quantize "$S" "$T/st4k.gguf" q4_K -v >"$T/st.log" 2>"$T/e" && ok || bad "quantize stories q4_K: $(cat "$T/e")"
[ "$(ty "$T/st.log" blk.0.attn_q.weight)" = q8_0 ] && [ "$(ty "$T/st.log" blk.0.ffn_down.weight)" = f16 ] && ok || bad "fallbacks: $(cat "$T/st.log")"
"$VMOER" logits "$T/st4k.gguf" --ids 1,2,3 -o "$T/st.npy" 2>"$T/e" && ok || bad "logits fallback file: $(cat "$T/e")"

# failures: one line, exit 1, nothing written
refuse() {
    pat=$1; shift
    "$VMOER" quantize "$@" >"$T/out" 2>"$T/e"; rc=$?
    if [ $rc -eq 1 ] && [ "$(wc -l <"$T/e")" -eq 1 ] && grep -q "^vmoer quantize: .*$pat" "$T/e" && [ ! -e "$T/bad.gguf" ]; then ok
    else bad "quantize $* -> exit $rc: $(cat "$T/e")"; fi
}
refuse "expected IN.gguf OUT.gguf TYPE"
refuse "expected IN.gguf" "$M" "$T/bad.gguf"
refuse "unknown type 'q3_K'" "$M" "$T/bad.gguf" q3_K
refuse "input type q8_0" "$T/q8_0.gguf" "$T/bad.gguf" q4_K
refuse "" "$T/missing.gguf" "$T/bad.gguf" q8_0
refuse "unknown option" "$M" "$T/bad.gguf" q8_0 --frobnicate
refuse "" "$M" "$T/no/such/dir/bad.gguf" q8_0
"$VMOER" quantize --help | grep -q '^usage: vmoer quantize' && ok || bad "help"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

#!/bin/sh
# vmoer against llama.cpp's CPU backend (the prebuilt binaries of npm's node-llama-cpp, installed
# into a cache folder by scripts/llamacpp.sh: benchmark-only, like OpenBLAS) on the same GGUF files:
# random-weight Granite-3B-shaped MoEs (vmoer bench --gen-granite) in Q8_0, Q4_0 and Q4_K_M
# (the last from an F16 file through vmoer quantize). Prompt processing: N_PROMPT random tokens in
# one batch; decode: N_GEN tokens one at a time. The engines alternate within every round (so load
# on a shared machine slows both alike) and the best of the rounds is kept for each.
# Usage (repository root): sh bench/vs_llamacpp.sh [options]
#   --layers N       layers of the generated models (default 32; the files are kept in --dir)
#   --threads LIST   thread counts (default 1,2)
#   --types LIST     q8_0,q4_0,q4_K_M (default all three)
#   --rounds N       rounds (default 3)
#   --n-prompt N     prompt tokens (default 256); --n-gen N decoded tokens (default 32)
#   --dir DIR        where the models go (default ${TMPDIR:-/tmp}/vmoer-vs-llamacpp)
#   --out FILE       also write the table as Markdown (and FILE.json)
# Targets (issue 20): prompt >= 2.0x and decode >= 1.5x llama.cpp for every type and thread count.
set -e
LAYERS=32; THREADS=1,2; TYPES=q8_0,q4_0,q4_K_M; ROUNDS=3; NP=256; NG=32
DIR=${TMPDIR:-/tmp}/vmoer-vs-llamacpp; OUT=""
while [ $# -gt 0 ]; do
    case $1 in
    --layers) LAYERS=$2; shift 2;; --threads) THREADS=$2; shift 2;; --types) TYPES=$2; shift 2;;
    --rounds) ROUNDS=$2; shift 2;; --n-prompt) NP=$2; shift 2;; --n-gen) NG=$2; shift 2;;
    --dir) DIR=$2; shift 2;; --out) OUT=$2; shift 2;;
    -h|--help) sed -n '2,17p' "$0"; exit 0;;
    *) echo "vs_llamacpp.sh: unknown option $1" >&2; exit 1;;
    esac
done
BUILD=${BUILD:-build}
make BUILD="$BUILD" -j"$(nproc)" >/dev/null
VMOER="$BUILD/vmoer"
LC=$(sh scripts/llamacpp.sh) || { echo "vs_llamacpp.sh: llama.cpp reference unavailable" >&2; exit 1; }
mkdir -p "$DIR"

model() {   # path of the model of type $1, generated when missing
    f="$DIR/granite-$LAYERS-$1.gguf"
    if [ ! -f "$f" ]; then
        case $1 in
        q8_0|q4_0) "$VMOER" bench --gen-granite "$f" --layers "$LAYERS" --type "$1" >&2;;
        *) "$VMOER" bench --gen-granite "$DIR/f16.gguf" --layers "$LAYERS" --type f16 >&2
           "$VMOER" quantize "$DIR/f16.gguf" "$f" "$1" >&2
           rm -f "$DIR/f16.gguf";;
        esac
    fi
    echo "$f"
}

R=$(mktemp); trap 'rm -f "$R"' EXIT
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for round in $(seq 1 "$ROUNDS"); do
    for ty in $(echo "$TYPES" | tr ',' ' '); do
        M=$(model "$ty")
        for t in $(echo "$THREADS" | tr ',' ' '); do
            "$VMOER" bench "$M" --threads "$t" --batch "$NP" --n-prompt "$NP" --n-gen "$NG" --reps 1 --json "$R.v" >/dev/null
            v=$(sed -n 's/.*"pp_tok_s": \([0-9.]*\), "decode_tok_s": \([0-9.]*\).*/\1 \2/p' "$R.v")
            l=$(VMOER_LLAMACPP_DIR="$LC" node bench/llamacpp_bench.mjs "$M" "$t" "$NP" "$NG" |
                sed -n 's/.*"pp_tok_s":\([0-9.]*\),"decode_tok_s":\([0-9.]*\).*/\1 \2/p')
            echo "$ty $t $v $l" >>"$R"
            echo "round $round $ty threads $t: vmoer pp/decode $v, llama.cpp $l" >&2
        done
    done
done
rm -f "$R.v"
# best of the rounds per (type, threads), engine by engine
awk -v layers="$LAYERS" -v np="$NP" -v ng="$NG" -v out="$OUT" '
{ k = $1 " " $2; if (!(k in vp) || $3 > vp[k]) vp[k] = $3; if (!(k in vd) || $4 > vd[k]) vd[k] = $4;
  if (!(k in lp) || $5 > lp[k]) lp[k] = $5; if (!(k in ld) || $6 > ld[k]) ld[k] = $6; if (!(k in seen)) { seen[k] = 1; order[n++] = k } }
END {
  h = sprintf("Granite-3B-shaped MoE, %d layers, prompt %d in one batch, %d decoded tokens (tok/s, best of the rounds)\n\n", layers, np, ng)
  h = h "| type | threads | vmoer pp / decode | llama.cpp pp / decode | ratio pp / decode | targets 2.0 / 1.5 |\n|---|---|---|---|---|---|\n"
  js = "["
  for (i = 0; i < n; i++) {
    k = order[i]; split(k, a, " ")
    rp = vp[k] / lp[k]; rd = vd[k] / ld[k]
    h = h sprintf("| %s | %s | %.1f / %.1f | %.1f / %.1f | %.2f / %.2f | %s / %s |\n", a[1], a[2], vp[k], vd[k], lp[k], ld[k],
                  rp, rd, rp >= 2.0 ? "met" : "missed", rd >= 1.5 ? "met" : "missed")
    js = js sprintf("%s{\"type\": \"%s\", \"threads\": %s, \"vmoer_pp\": %.3f, \"vmoer_decode\": %.3f, \"llamacpp_pp\": %.3f, \"llamacpp_decode\": %.3f, \"ratio_pp\": %.4f, \"ratio_decode\": %.4f}",
                    i ? ", " : "", a[1], a[2], vp[k], vd[k], lp[k], ld[k], rp, rd)
  }
  printf "%s", h
  if (out != "") { printf "%s", h > out; print js "]" > (out ".json") }
}' "$R"

#!/bin/sh
# Re-creates the seed corpora fuzz/corpus/<target>/ from the repository's test fixtures and a few
# records of the shared data (../shared, or $VMOER_SHARED). Run from the repository root; the
# result is committed, so the fuzzers need neither this script nor ../shared.
set -e
SHARED=${VMOER_SHARED:-../shared}
C=fuzz/corpus
rm -rf "$C"; mkdir -p "$C/gguf" "$C/dataset" "$C/tokenizer" "$C/llama2c" "$C/npy" "$C/metrics" "$C/quant"

# gguf: every hostile fixture and the valid tiny MoE model (with tokenizer and chat template)
cp tests/data/gguf/*.gguf "$C/gguf/"

# dataset: 1 selector byte (format in bits 0-2; see fuzz_dataset.c) + file bytes
seed() { printf "\\$(printf %03o "$2")" >"$C/dataset/$1"; cat >>"$C/dataset/$1"; }
M=$SHARED/data/mcqa
head -n 2 "$M/openbookqa/test.jsonl"   | seed obqa 1
head -n 2 "$M/arc-challenge/dev.jsonl" | seed arc 2
head -n 2 "$M/sciq/validation.jsonl"   | seed sciq 3
head -n 2 "$M/medmcqa/dev.jsonl"       | seed medmcqa 4
head -n 3 "$M/mmlu/dev/abstract_algebra_dev.csv" | seed mmlu 5
head -n 3 "$M/mmlu/dev/abstract_algebra_dev.csv" | seed mmlu_shuffle_subject $((128 + 8 + 5))
head -n 2 "$M/arc-easy/dev.jsonl"      | seed auto_arc $((1 * 8))
head -n 2 "$M/sciq/validation.jsonl"   | seed auto_sciq_skipbad $((64 + 2 * 8))
for f in tests/data/dataset/*.jsonl tests/data/dataset/*.csv; do
    b=$(basename "$f"); case "$b" in *.csv) sel=5;; *) sel=$((64 + 6));; esac
    seed "fixture_${b%.*}" $sel <"$f"
done

# tokenizer: 1 flag byte (see fuzz_tokenizer.c) + each test input of the llama-spm and phi-3 vectors
i=0
for v in llama-spm phi-3; do
    flag=0; [ "$v" = phi-3 ] && flag=8
    awk -v dir="$C/tokenizer" -v v="$v" -v flag="$flag" '
        function out() { f = sprintf("%s/%s_%03d", dir, v, n++); printf "%c%s", flag, cur > f; close(f); cur = ""; first = 1 }
        BEGIN { first = 1 }
        $0 == "__ggml_vocab_test__" { out(); next }
        { cur = first ? $0 : cur "\n" $0; first = 0 }' "$SHARED/tokenizers/ggml-vocab-$v.gguf.inp"
done
printf '\003<s>Hello</s> <unk>\n' >"$C/tokenizer/special_parse"
printf '\006\xff\xfe\xe2\x96\x81\xf0\x9f\x98\x80 x' >"$C/tokenizer/bytes"

# llama2c: 1 type byte + u32 model length + model + tokenizer.bin (see fuzz_llama2c.c); small
# consistent models (shared and separate classifier, a q8_0-sized one) and the real tok512.bin
/usr/bin/python3 - "$C/llama2c" "$SHARED/models/tok512.bin" <<'PY'
import struct, sys
out, tok512 = sys.argv[1], open(sys.argv[2], 'rb').read()
def model(dim, hidden, L, heads, kv, vocab, seq):
    hs, kvd, V = dim // heads, dim // heads * kv, abs(vocab)
    n = V*dim + L*dim + L*dim*dim + 2*L*kvd*dim + L*dim*dim + L*dim + 3*L*hidden*dim + dim + seq*hs
    n += V*dim if vocab < 0 else 0
    w = [((i * 2654435761) % 1000 - 500) / 5000.0 for i in range(n)]
    return struct.pack('<7i', dim, hidden, L, heads, kv, vocab, seq) + struct.pack('<%df' % n, *w)
def tok(pieces):
    b = struct.pack('<i', max(len(p) for p in pieces))
    for i, p in enumerate(pieces): b += struct.pack('<fi', -float(i), len(p)) + p
    return b
small = tok([b'<unk>', b'\n<s>\n', b'\n</s>\n', b' a', b'<0x41>'])
seeds = {
    'tiny_f32': (0, model(4, 8, 1, 2, 1, 5, 2), small),
    'tiny_unshared_f16': (1, model(4, 8, 2, 2, 2, -5, 3), small),
    'q8_0_dim32': (2, model(32, 32, 1, 4, 2, 5, 2), small),
    'tok512_real': (0, model(4, 4, 1, 2, 1, 512, 1), tok512),
}
for name, (t, m, k) in seeds.items():
    open('%s/%s' % (out, name), 'wb').write(bytes([t]) + struct.pack('<I', len(m)) + m + k)
PY

# npy: files as numpy writes them (v1.0 and v2.0 headers, 0-d to 4-d) and near misses
/usr/bin/python3 - "$C/npy" <<'PY'
import numpy as np, io, sys
out = sys.argv[1]
def save(name, a, version=None):
    b = io.BytesIO()
    if version: np.lib.format.write_array(b, a, version=version)
    else: np.save(b, a)
    open('%s/%s' % (out, name), 'wb').write(b.getvalue())
save('f4_2d', np.arange(6, dtype='<f4').reshape(2, 3))
save('f4_1d', np.array([1.5, -2, np.inf, np.nan], dtype='<f4'))
save('f4_0d', np.array(3.25, dtype='<f4'))
save('f4_4d', np.ones((1, 2, 1, 2), dtype='<f4'))
save('f4_empty', np.zeros((0, 3), dtype='<f4'))
save('f4_v2', np.arange(3, dtype='<f4'), version=(2, 0))
save('f8_wrong_dtype', np.arange(3, dtype='<f8'))
save('f4_fortran', np.asfortranarray(np.arange(6, dtype='<f4').reshape(2, 3)))
PY

# metrics: header (n-1, C-1, M-1, mode) + values + labels (see fuzz_metrics.c)
/usr/bin/python3 - "$C/metrics" <<'PY'
import struct, sys
out = sys.argv[1]
def w(name, b): open('%s/%s' % (out, name), 'wb').write(bytes(b))
# 4 examples, 3 classes, 10 bins, byte values: rows summing to 255, labels in range
w('valid_bytes', [3, 2, 9, 0] + [200, 50, 5, 10, 240, 5, 85, 85, 85, 0, 0, 255] + [0, 1, 2, 2])
# raw float32 values with NaN, Inf, negative and > 1; labels out of range
vals = [0.5, float('nan'), float('inf'), -0.25, 1.5, 0.0, 1.0, 1e-30]
w('raw_specials', [7, 0, 4, 3] + list(struct.pack('<8f', *vals)) + [0, 255, 1, 128, 7, 0, 0, 3])
# ties everywhere: every row equal, a single class, one bin
w('ties', [15, 0, 0, 4] + [128] * 16 + [0] * 16)
PY

# quant: 1 type byte + float32 row (see fuzz_quant.c): a smooth row per type, and special values
/usr/bin/python3 - "$C/quant" <<'PY'
import math, struct, sys
out = sys.argv[1]
row = [math.sin(i * 0.37) * (1 + i % 7) for i in range(256)]
for t in range(7):
    open('%s/row_%d' % (out, t), 'wb').write(bytes([t]) + struct.pack('<256f', *row))
sp = [0.0, -0.0, 1e-40, -1e-45, 65504.0, 70000.0, 3e38, -3e38, float('inf'), float('nan')] * 4
open('%s/specials_q4_k' % out, 'wb').write(bytes([4]) + struct.pack('<40f', *sp))
PY

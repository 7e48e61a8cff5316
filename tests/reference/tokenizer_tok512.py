#!/usr/bin/python3
"""Golden token ids for the llama2.c tokenizer ../shared/models/tok512.bin.

Reference behaviour: the encoder of karpathy/llama2.c run.c (written here from its published
description, not from vmoer): a dummy-prefix space token when the text is non-empty, one
symbol per UTF-8 code point (a code point that is not a vocabulary piece becomes its bytes,
id = byte + 3), then repeatedly merge the adjacent pair whose concatenated text is a piece with
the highest score, leftmost on ties, until no pair merges. No BOS/EOS.

Writes tests/golden/tokenizer/tok512.inp / .out in the ggml vocab-test format (entries
separated by a line "__ggml_vocab_test__", one line of space-separated ids per entry).
Run once from the repository root: /usr/bin/python3 tests/reference/tokenizer_tok512.py
"""
import os
import struct

shared = os.environ.get("VMOER_SHARED", "../shared")
raw = open(os.path.join(shared, "models", "tok512.bin"), "rb").read()
max_len, = struct.unpack_from("<i", raw, 0)
pieces, scores = [], []
off = 4
while off < len(raw):
    score, n = struct.unpack_from("<fi", raw, off)
    off += 8
    pieces.append(raw[off:off + n])
    scores.append(score)
    off += n
assert len(pieces) == 512
lookup = {}
for i, p in enumerate(pieces):
    lookup.setdefault(p, i)   # llama2.c sorts and binary-searches; the pieces are unique


def encode(text: bytes):
    ids = []
    if text:
        ids.append(lookup[b" "])
    i = 0
    while i < len(text):
        j = i + 1
        while j < len(text) and (text[j] & 0xC0) == 0x80 and j - i < 4:
            j += 1
        cp = text[i:j]
        if cp in lookup:
            ids.append(lookup[cp])
        else:
            ids.extend(b + 3 for b in cp)
        i = j
    while True:
        best, best_id, best_i = -1e10, -1, -1
        for k in range(len(ids) - 1):
            m = pieces[ids[k]] + pieces[ids[k + 1]]
            if m in lookup and scores[lookup[m]] > best:
                best, best_id, best_i = scores[lookup[m]], lookup[m], k
        if best_i < 0:
            return ids
        ids[best_i:best_i + 2] = [best_id]


cases = [
    "Once upon a time",
    "Once upon a time, there was a little girl named Lily.",
    " leading space",
    "two  spaces and a trailing space ",
    "Hello\nWorld\n\n",
    "tab\there",
    "caf\u00e9 \u2603 \u65e5\u672c \U0001F600",
    "Lily's dog said: \"Wow!\" 123 + 4567 = 4690.",
    "a",
    " ",
    "",
]
with open(os.path.join(shared, "data", "text", "tinystories-valid.txt"), encoding="utf-8") as f:
    lines = [l.rstrip("\n") for l in f if l.strip()]
cases += lines[:12]
cases.append(" ".join(lines[20:60]))   # a long paragraph

os.makedirs("tests/golden/tokenizer", exist_ok=True)
with open("tests/golden/tokenizer/tok512.inp", "wb") as fi, \
        open("tests/golden/tokenizer/tok512.out", "w") as fo:
    for c in cases:
        b = c.encode("utf-8")
        fi.write(b + b"\n__ggml_vocab_test__\n")
        fo.write(" " + " ".join(str(i) for i in encode(b)) + "\n")
print("wrote", len(cases), "cases")

#!/usr/bin/python3
"""Golden logits of stories260K (llama2.c format) from an independent numpy forward pass.

Written from the llama2.c definition (karpathy/llama2.c run.c: rmsnorm eps 1e-5, RoPE on adjacent
pairs with theta = pos * 10000^(-(i % head_size)/head_size), grouped-query attention, SwiGLU FFN,
shared classifier when vocab_size > 0), in float64. Not derived from vmoer's code.

usage: /usr/bin/python3 tests/reference/stories_logits.py [../shared]
writes tests/golden/stories/logits_once.npy: float32 [5, 512], the logits after each of the ids
1 403 407 261 378 (BOS + "Once upon a time" in tok512) and ids.txt with those ids.
"""
import os
import sys
import numpy as np

shared = sys.argv[1] if len(sys.argv) > 1 else "../shared"
raw = open(os.path.join(shared, "models", "stories260K.bin"), "rb").read()
dim, hidden, L, nh, nkv, vocab, seq = np.frombuffer(raw[:28], dtype="<i4")
shared_cls = vocab > 0
vocab = abs(vocab)
hs = dim // nh
kvd = hs * nkv
w = np.frombuffer(raw[28:], dtype="<f4").astype(np.float64)
off = 0


def take(*shape):
    global off
    n = int(np.prod(shape))
    a = w[off:off + n].reshape(shape)
    off += n
    return a


emb = take(vocab, dim)
rms_att = take(L, dim)
wq = take(L, dim, dim)
wk = take(L, kvd, dim)
wv = take(L, kvd, dim)
wo = take(L, dim, dim)
rms_ffn = take(L, dim)
w1 = take(L, hidden, dim)
w2 = take(L, dim, hidden)
w3 = take(L, hidden, dim)
rms_final = take(dim)
take(seq, hs // 2)
take(seq, hs // 2)
wcls = emb if shared_cls else take(vocab, dim)
assert off == len(w), (off, len(w))


def rmsnorm(x, g):
    return x / np.sqrt(np.mean(x * x) + 1e-5) * g


def rope(v, pos):
    out = v.copy()
    for i in range(0, len(v), 2):
        theta = pos * 10000.0 ** (-((i % hs) / hs))
        c, s = np.cos(theta), np.sin(theta)
        out[i] = v[i] * c - v[i + 1] * s
        out[i + 1] = v[i] * s + v[i + 1] * c
    return out


ids = [1, 403, 407, 261, 378]
kc = np.zeros((L, len(ids), kvd))
vc = np.zeros((L, len(ids), kvd))
rows = []
for pos, tok in enumerate(ids):
    x = emb[tok].copy()
    for l in range(L):
        xb = rmsnorm(x, rms_att[l])
        q, k, v = rope(wq[l] @ xb, pos), rope(wk[l] @ xb, pos), wv[l] @ xb
        kc[l, pos], vc[l, pos] = k, v
        att = np.zeros(dim)
        for h in range(nh):
            g = h // (nh // nkv)
            qh = q[h * hs:(h + 1) * hs]
            ks = kc[l, :pos + 1, g * hs:(g + 1) * hs]
            sc = ks @ qh / np.sqrt(hs)
            p = np.exp(sc - sc.max())
            p /= p.sum()
            att[h * hs:(h + 1) * hs] = p @ vc[l, :pos + 1, g * hs:(g + 1) * hs]
        x = x + wo[l] @ att
        xb = rmsnorm(x, rms_ffn[l])
        a, b = w1[l] @ xb, w3[l] @ xb
        x = x + w2[l] @ (a / (1 + np.exp(-a)) * b)
    rows.append(wcls @ rmsnorm(x, rms_final))

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "stories")
os.makedirs(out, exist_ok=True)
np.save(os.path.join(out, "logits_once.npy"), np.array(rows, dtype=np.float32))
with open(os.path.join(out, "ids.txt"), "w") as f:
    f.write(" ".join(map(str, ids)) + "\n")
print("argmax per position:", [int(np.argmax(r)) for r in rows])

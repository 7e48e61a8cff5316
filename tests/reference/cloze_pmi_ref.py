#!/usr/bin/python3
"""Golden story-cloze scores (plain log-likelihood and PMI) of stories260K for a few test items.

Independent of vmoer's C code, written from published definitions:
- tokenizer: the llama2.c encoder (karpathy/llama2.c run.c): a dummy-prefix space when the text is
  non-empty, one symbol per UTF-8 code point (unknown ones as bytes, id = byte + 3), then merge the
  adjacent pair whose concatenation is a piece with the highest score (leftmost on ties); BOS = 1;
- model: the llama2.c forward (rmsnorm eps 1e-5, RoPE on adjacent pairs with
  theta = pos * 10000^(-(i % head_size)/head_size), grouped-query attention, SwiGLU, shared
  classifier), float64, whole sequence at once with a causal mask;
- scoring (data/cloze/README.md, lm-eval loglikelihood): context = BOS + question, whole =
  BOS + question + " " + choice, continuation = whole[len(context):], the sequence run is
  context + continuation (lm-eval's context_enc + continuation_enc: the context as tokenised alone,
  even where whole's first tokens differ), ll = sum of log-softmax of the continuation tokens;
  PMI = ll(cont | BOS + question) - ll(cont | BOS), the SAME continuation ids after BOS alone.

usage (repo root): /usr/bin/python3 tests/reference/cloze_pmi_ref.py [../shared]
writes tests/golden/cloze/pmi.json: per item its id, context ids, per choice the whole ids, the ids
run (context + continuation), n_ctx, ll_cond, ll_uncond and pmi, and the softmax answer
distributions of both modes.
"""
import json
import os
import struct
import sys

import numpy as np

shared = sys.argv[1] if len(sys.argv) > 1 else "../shared"
N_ITEMS = 3

# ---------------------------------------------------------------- tokenizer
raw = open(os.path.join(shared, "models", "tok512.bin"), "rb").read()
pieces, scores = [], []
off = 4
while off < len(raw):
    sc, n = struct.unpack_from("<fi", raw, off)
    off += 8
    pieces.append(raw[off:off + n])
    scores.append(sc)
    off += n
index = {}
for i, p in enumerate(pieces):
    index.setdefault(p, i)


def encode(text):
    b = text.encode("utf-8")
    ids = [index[b" "]] if b else []
    i = 0
    while i < len(b):
        j = i + 1
        while j < len(b) and (b[j] & 0xC0) == 0x80:
            j += 1
        cp = b[i:j]
        ids += [index[cp]] if cp in index else [x + 3 for x in cp]
        i = j
    while True:
        best, at = None, -1
        for k in range(len(ids) - 1):
            m = pieces[ids[k]] + pieces[ids[k + 1]]
            if m in index and (best is None or scores[index[m]] > scores[best]):
                best, at = index[m], k
        if at < 0:
            return [1] + ids        # BOS first
        ids[at:at + 2] = [best]


# ---------------------------------------------------------------- model
raw = open(os.path.join(shared, "models", "stories260K.bin"), "rb").read()
dim, hidden, L, nh, nkv, vocab, seq_len = struct.unpack_from("<7i", raw, 0)
hs, shared_cls, vocab = dim // nh, vocab > 0, abs(vocab)
kvd = hs * nkv
w = np.frombuffer(raw[28:], dtype="<f4").astype(np.float64)
pos_w = [0]


def take(*shape):
    n = int(np.prod(shape))
    a = w[pos_w[0]:pos_w[0] + n].reshape(shape)
    pos_w[0] += n
    return a


emb = take(vocab, dim)
rms_att = take(L, dim)
wq, wk, wv, wo = take(L, dim, dim), take(L, kvd, dim), take(L, kvd, dim), take(L, dim, dim)
rms_ffn = take(L, dim)
w1, w2, w3 = take(L, hidden, dim), take(L, dim, hidden), take(L, hidden, dim)
rms_final = take(dim)
take(seq_len, hs // 2)
take(seq_len, hs // 2)
wcls = emb if shared_cls else take(vocab, dim)


def rmsnorm(x, g):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + 1e-5) * g


def rope(x, T):  # x (T, heads*hs): rotate adjacent pairs
    i = np.arange(0, x.shape[1], 2)
    theta = np.arange(T)[:, None] * 10000.0 ** (-((i % hs) / hs))[None, :]
    c, s = np.cos(theta), np.sin(theta)
    out = x.copy()
    out[:, 0::2] = x[:, 0::2] * c - x[:, 1::2] * s
    out[:, 1::2] = x[:, 0::2] * s + x[:, 1::2] * c
    return out


def log_probs(ids):  # (T, vocab) log-softmax of the next-token logits at every position
    T = len(ids)
    x = emb[ids].copy()
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for l in range(L):
        xb = rmsnorm(x, rms_att[l])
        q, k, v = rope(xb @ wq[l].T, T), rope(xb @ wk[l].T, T), xb @ wv[l].T
        att = np.zeros((T, dim))
        for h in range(nh):
            g = h // (nh // nkv)
            sc = q[:, h * hs:(h + 1) * hs] @ k[:, g * hs:(g + 1) * hs].T / np.sqrt(hs) + mask
            p = np.exp(sc - sc.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            att[:, h * hs:(h + 1) * hs] = p @ v[:, g * hs:(g + 1) * hs]
        x = x + att @ wo[l].T
        xb = rmsnorm(x, rms_ffn[l])
        a, b = xb @ w1[l].T, xb @ w3[l].T
        x = x + (a / (1 + np.exp(-a)) * b) @ w2[l].T
    z = rmsnorm(x, rms_final) @ wcls.T
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def cont_ll(ids, n_ctx):
    lp = log_probs(ids)
    return float(sum(lp[i - 1, ids[i]] for i in range(n_ctx, len(ids))))


def softmax(v):
    e = np.exp(np.array(v) - max(v))
    return list(e / e.sum())


items = []
with open("data/cloze/test.jsonl", encoding="utf-8") as f:
    for line in f:
        if len(items) == N_ITEMS:
            break
        it = json.loads(line)
        ctx = encode(it["question"])
        rec = {"id": it["id"], "answer": it["answer"], "context": ctx, "choices": []}
        for ch in it["choices"]:
            whole = encode(it["question"] + " " + ch)
            cont = whole[len(ctx):]
            lc = cont_ll(ctx + cont, len(ctx))
            lu = cont_ll([1] + cont, 1)
            rec["choices"].append({"whole": whole, "ids": ctx + cont, "n_ctx": len(ctx), "ll_cond": lc,
                                   "ll_uncond": lu, "pmi": lc - lu})
        rec["probs_loglik"] = softmax([c["ll_cond"] for c in rec["choices"]])
        rec["probs_pmi"] = softmax([c["pmi"] for c in rec["choices"]])
        items.append(rec)
        print(it["id"], "pmi", [round(c["pmi"], 4) for c in rec["choices"]], "answer", it["answer"])

os.makedirs("tests/golden/cloze", exist_ok=True)
with open("tests/golden/cloze/pmi.json", "w") as f:
    json.dump({"source": "tests/reference/cloze_pmi_ref.py", "items": items}, f, indent=1)
    f.write("\n")

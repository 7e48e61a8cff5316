#!/usr/bin/python3
"""Independent reference for the llama / Mixtral forward pass (tests/test_model.c).

Written from the published definitions, not from vmoer's C code:
  - Meta's original Llama model.py: RMSNorm, rotary embedding on adjacent pairs (x[2i], x[2i+1])
    rotated by pos * base^(-2i/d) (= GGUF/ggml "normal" rope mode for llama), grouped-query
    attention (kv head = q head // n_rep), causal softmax(q k^T / sqrt(d)), SwiGLU FFN w2(silu(w1 x) * w3 x);
  - Mixtral's sparse MoE block (HF modeling_mixtral.py): softmax over all N router logits, top-K,
    renormalise the K weights, weighted sum of the selected experts' SwiGLU outputs;
  - linear rope scaling (position interpolation): positions divided by the factor;
  - GGUF v3 layout from ggml's docs/gguf.md (a minimal writer below).
All maths in float64 from the float32 (or float16-rounded) weights that the GGUF file stores.

Writes tests/golden/model/<name>.gguf, <name>.tokens.npy (float32 ids), <name>.logits.npy (T, V)
and, for moe_stacked, <name>.topk.npy (n_layer, T, K) = selected experts, best first.
Run once from the repository root: /usr/bin/python3 tests/reference/llama_ref.py
"""
import os
import struct
import sys

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "model")
ALIGN = 32

# ---------------------------------------------------------------- minimal GGUF writer (spec)
GGUF_U32, GGUF_I32, GGUF_F32, GGUF_STR = 4, 5, 6, 8
GGML_F32, GGML_F16 = 0, 1


def gguf_str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def gguf_write(path, kvs, tensors):
    """kvs: list of (key, type, value); tensors: list of (name, numpy array, ggml type).
    A numpy array of shape (..., n1, n0) is stored with ne = [n0, n1, ...] (ne[0] contiguous)."""
    out = bytearray(b"GGUF")
    out += struct.pack("<IQQ", 3, len(tensors), len(kvs))
    for key, typ, val in kvs:
        out += gguf_str(key) + struct.pack("<I", typ)
        if typ == GGUF_U32:
            out += struct.pack("<I", val)
        elif typ == GGUF_I32:
            out += struct.pack("<i", val)
        elif typ == GGUF_F32:
            out += struct.pack("<f", val)
        elif typ == GGUF_STR:
            out += gguf_str(val)
        else:
            raise ValueError(typ)
    blobs, offset = [], 0
    for name, arr, typ in tensors:
        data = arr.astype(np.float32 if typ == GGML_F32 else np.float16).tobytes()
        ne = list(reversed(arr.shape))
        out += gguf_str(name) + struct.pack("<I", len(ne)) + struct.pack("<%dQ" % len(ne), *ne)
        out += struct.pack("<IQ", typ, offset)
        pad = (-len(data)) % ALIGN
        blobs.append(data + b"\0" * pad)
        offset += len(data) + pad
    out += b"\0" * ((-len(out)) % ALIGN)
    for b in blobs:
        out += b
    with open(path, "wb") as f:
        f.write(out)


# ---------------------------------------------------------------- reference forward (float64)
def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rotary(x, pos, base, scale):
    """x (T, H, d): rotate adjacent pairs (x[2i], x[2i+1]) as complex numbers by pos*scale*base^(-2i/d)."""
    d = x.shape[-1]
    freqs = 1.0 / base ** (np.arange(0, d, 2) / d)            # (d/2)
    ang = np.outer(pos * scale, freqs)                          # (T, d/2)
    xc = x[..., 0::2] + 1j * x[..., 1::2]
    xc = xc * np.exp(1j * ang)[:, None, :]
    out = np.empty_like(x)
    out[..., 0::2], out[..., 1::2] = xc.real, xc.imag
    return out


def silu(x):
    return x / (1.0 + np.exp(-x))


def forward(cfg, W, tokens):
    """Returns logits (T, V) and, for MoE, the selected experts per layer (L, T, K)."""
    T, D, H, Hkv, hd = len(tokens), cfg["dim"], cfg["n_head"], cfg["n_head_kv"], cfg["head_dim"]
    eps, rep = cfg["eps"], cfg["n_head"] // cfg["n_head_kv"]
    pos = np.arange(T, dtype=np.float64)
    h = W["token_embd"][tokens]
    topk_all = []
    mask = np.triu(np.full((T, T), -np.inf), k=1)
    for l in range(cfg["n_layer"]):
        p = "blk.%d." % l
        x = rmsnorm(h, W[p + "attn_norm"], eps)
        q = (x @ W[p + "attn_q"].T).reshape(T, H, hd)
        k = (x @ W[p + "attn_k"].T).reshape(T, Hkv, hd)
        v = (x @ W[p + "attn_v"].T).reshape(T, Hkv, hd)
        q = rotary(q, pos, cfg["rope_base"], 1.0 / cfg["rope_factor"])
        k = rotary(k, pos, cfg["rope_base"], 1.0 / cfg["rope_factor"])
        k = np.repeat(k, rep, axis=1)                           # kv head of q head j = j // rep
        v = np.repeat(v, rep, axis=1)
        att = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + mask
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        o = np.einsum("hts,shd->thd", att, v).reshape(T, H * hd)
        h = h + o @ W[p + "attn_output"].T
        x = rmsnorm(h, W[p + "ffn_norm"], eps)
        if cfg["n_expert"] == 0:
            f = (silu(x @ W[p + "ffn_gate"].T) * (x @ W[p + "ffn_up"].T)) @ W[p + "ffn_down"].T
        else:
            N, K = cfg["n_expert"], cfg["n_expert_used"]
            logits = x @ W[p + "ffn_gate_inp"].T                # (T, N)
            probs = np.exp(logits - logits.max(-1, keepdims=True))
            probs /= probs.sum(-1, keepdims=True)
            sel = np.argsort(-probs, axis=-1, kind="stable")[:, :K]
            for t in range(T):   # the reference must not sit on a near tie (float32 vs float64)
                srt = np.sort(probs[t])[::-1]
                if srt[K - 1] - srt[K] < 1e-4:
                    raise RuntimeError("near tie in routing (layer %d token %d): change the seed" % (l, t))
            f = np.zeros_like(x)
            for t in range(T):
                w = probs[t, sel[t]] / probs[t, sel[t]].sum()
                for j, e in enumerate(sel[t]):
                    g, u, d = W[p + "exp_gate"][e], W[p + "exp_up"][e], W[p + "exp_down"][e]
                    f[t] += w[j] * ((silu(g @ x[t]) * (u @ x[t])) @ d.T)
            topk_all.append(sel)
        h = h + f
    h = rmsnorm(h, W["output_norm"], eps)
    out_w = W["output"] if "output" in W else W["token_embd"]
    return h @ out_w.T, (np.array(topk_all) if topk_all else None)


# ---------------------------------------------------------------- random models
def make(name, seed, *, n_layer=2, dim=32, n_head=4, n_head_kv=2, head_dim=None, n_ff=64, vocab=96,
         n_expert=0, n_expert_used=0, experts="stacked", f16=False, tied=False, rope_base=10000.0,
         rope_factor=1.0, n_tokens=12, eps=1e-5):
    rng = np.random.default_rng(seed)
    hd = head_dim or dim // n_head
    cfg = dict(dim=dim, n_head=n_head, n_head_kv=n_head_kv, head_dim=hd, n_layer=n_layer, eps=eps,
               n_expert=n_expert, n_expert_used=n_expert_used, rope_base=rope_base, rope_factor=rope_factor)
    mtype = GGML_F16 if f16 else GGML_F32

    def rnd(*shape, sd=1.0, mean=0.0):
        a = (mean + rng.standard_normal(shape) * sd).astype(np.float32)
        # the reference computes with exactly what the file stores
        return (a.astype(np.float16) if f16 else a).astype(np.float64)

    W, tensors = {}, []

    def add(key, gname, arr, typ=None):
        W[key] = arr
        tensors.append((gname, arr, mtype if typ is None else typ))

    add("token_embd", "token_embd.weight", rnd(vocab, dim))
    add("output_norm", "output_norm.weight", rnd(dim, sd=0.1, mean=1.0))
    if not tied:
        add("output", "output.weight", rnd(vocab, dim, sd=dim ** -0.5))
    for l in range(n_layer):
        p = "blk.%d." % l
        add(p + "attn_norm", p + "attn_norm.weight", rnd(dim, sd=0.1, mean=1.0))
        add(p + "attn_q", p + "attn_q.weight", rnd(n_head * hd, dim, sd=dim ** -0.5))
        add(p + "attn_k", p + "attn_k.weight", rnd(n_head_kv * hd, dim, sd=dim ** -0.5))
        add(p + "attn_v", p + "attn_v.weight", rnd(n_head_kv * hd, dim, sd=dim ** -0.5))
        add(p + "attn_output", p + "attn_output.weight", rnd(dim, n_head * hd, sd=(n_head * hd) ** -0.5))
        add(p + "ffn_norm", p + "ffn_norm.weight", rnd(dim, sd=0.1, mean=1.0))
        if n_expert == 0:
            add(p + "ffn_gate", p + "ffn_gate.weight", rnd(n_ff, dim, sd=dim ** -0.5))
            add(p + "ffn_up", p + "ffn_up.weight", rnd(n_ff, dim, sd=dim ** -0.5))
            add(p + "ffn_down", p + "ffn_down.weight", rnd(dim, n_ff, sd=n_ff ** -0.5))
            continue
        add(p + "ffn_gate_inp", p + "ffn_gate_inp.weight", rnd(n_expert, dim, sd=2 * dim ** -0.5), GGML_F32)
        g = rnd(n_expert, n_ff, dim, sd=dim ** -0.5)
        u = rnd(n_expert, n_ff, dim, sd=dim ** -0.5)
        d = rnd(n_expert, dim, n_ff, sd=n_ff ** -0.5)
        W[p + "exp_gate"], W[p + "exp_up"], W[p + "exp_down"] = g, u, d
        if experts == "stacked":   # ne [dim, n_ff, N] and [n_ff, dim, N]
            tensors += [(p + "ffn_gate_exps.weight", g, mtype), (p + "ffn_up_exps.weight", u, mtype),
                        (p + "ffn_down_exps.weight", d, mtype)]
        else:                      # older per-expert layout
            for e in range(n_expert):
                tensors += [(p + "ffn_gate.%d.weight" % e, g[e], mtype), (p + "ffn_down.%d.weight" % e, d[e], mtype),
                            (p + "ffn_up.%d.weight" % e, u[e], mtype)]
    kvs = [("general.architecture", GGUF_STR, "llama"), ("general.name", GGUF_STR, "vmoer-ref-" + name),
           ("llama.context_length", GGUF_U32, 64), ("llama.embedding_length", GGUF_U32, dim),
           ("llama.block_count", GGUF_U32, n_layer), ("llama.feed_forward_length", GGUF_U32, n_ff),
           ("llama.attention.head_count", GGUF_U32, n_head), ("llama.attention.head_count_kv", GGUF_U32, n_head_kv),
           ("llama.attention.layer_norm_rms_epsilon", GGUF_F32, eps), ("llama.rope.freq_base", GGUF_F32, rope_base),
           ("llama.rope.dimension_count", GGUF_U32, hd)]
    if head_dim:
        kvs += [("llama.attention.key_length", GGUF_U32, hd), ("llama.attention.value_length", GGUF_U32, hd)]
    if n_expert:
        kvs += [("llama.expert_count", GGUF_U32, n_expert), ("llama.expert_used_count", GGUF_U32, n_expert_used)]
    if rope_factor != 1.0:
        kvs += [("llama.rope.scaling.type", GGUF_STR, "linear"), ("llama.rope.scaling.factor", GGUF_F32, rope_factor)]
    tokens = rng.integers(0, vocab, n_tokens)
    logits, topk = forward(cfg, W, tokens)
    base = os.path.join(OUT, name)
    gguf_write(base + ".gguf", kvs, tensors)
    np.save(base + ".tokens.npy", tokens.astype(np.float32))
    np.save(base + ".logits.npy", logits.astype(np.float32))
    if topk is not None and name == "moe_stacked":
        np.save(base + ".topk.npy", topk.astype(np.float32))
    print("%-12s tokens %d  logits |max| %.3f" % (name, n_tokens, np.abs(logits).max()))


def main():
    os.makedirs(OUT, exist_ok=True)
    make("dense", 1, n_layer=2, n_ff=64)
    make("moe_stacked", 2, n_layer=2, n_ff=32, n_expert=4, n_expert_used=2)
    make("moe_split", 3, n_layer=3, n_head_kv=1, n_ff=32, n_expert=4, n_expert_used=2, experts="split")
    make("moe_f16", 4, n_layer=2, head_dim=16, n_ff=32, n_expert=4, n_expert_used=2, f16=True)
    make("tied", 5, n_layer=2, n_head_kv=1, tied=True, rope_base=1e6, rope_factor=2.0)


if __name__ == "__main__":
    sys.exit(main())

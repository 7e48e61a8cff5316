#!/usr/bin/python3
"""Independent reference for `vmoer convert-hf` (tests/test_convert_hf.c).

Writes random-weight Hugging Face checkpoints (config.json + safetensors) and the logits the HF
model definitions give for a token sequence. Written from the published definitions, not from
vmoer's C code:
  - safetensors format (huggingface/safetensors README): u64 little-endian header size N, N bytes
    of JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}} padded with
    spaces, then the tensors' bytes, contiguous, offsets relative to the end of the header;
    sharded checkpoints: model.safetensors.index.json {"metadata": ..., "weight_map": {name: file}};
  - transformers' modeling_llama.py: RMSNorm x / sqrt(mean(x^2) + eps) * w; rotary embedding in
    the rotate-half form q*cos + rotate_half(q)*sin with emb = cat(freqs, freqs),
    inv_freq = 1 / theta^(arange(0, d, 2) / d) (linear scaling: inv_freq / factor); grouped-query
    attention (kv head = q head // n_rep), causal softmax(q k^T / sqrt(d)); MLP
    down(silu(gate(x)) * up(x)); lm_head or tied embeddings;
  - modeling_mixtral.py: router logits gate(x), softmax over all experts, top-K, the K weights
    renormalised to sum 1, weighted sum of the selected experts' w2(silu(w1 x) * w3 x).
    transformers v5 stores the experts fused: gate_up_proj [E, 2F, D] (gate rows first) and
    down_proj [E, D, F], block named `mlp`.
All maths in float64 from the exact values stored (BF16/F16 tensors: the rounded values).

Outputs (tests/golden/hf/, < 1 MB):
  llama/            single model.safetensors, F32, GQA, untied lm_head, linear rope scaling,
                    plus a rotary_emb.inv_freq buffer (must be skipped by the converter)
  mixtral_sharded/  two shards + index, BF16/F16/F32 mixed, per-expert tensors, tied embeddings
  mixtral_fused/    the same weights, one file, transformers-v5 fused expert layout
  tokens.npy (float32 ids), llama.logits.npy, mixtral.logits.npy (T, V) float32
Run once from the repository root: /usr/bin/python3 tests/reference/hf_ref.py
"""
import json
import os
import struct

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "hf")
TOKENS = np.array([1, 17, 42, 5, 63, 0, 29], dtype=np.int64)


# ---------------------------------------------------------------- storage formats
def to_bf16_bits(a):
    """float32 -> bfloat16 bit patterns, round to nearest even."""
    b = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    b = (b + 0x7FFF + ((b >> 16) & 1)) >> 16
    return b.astype(np.uint16)


def from_bf16_bits(b):
    return (b.astype(np.uint32) << 16).view(np.float32)


def stored(a, dtype):
    """The float32 values a tensor has after being stored as dtype."""
    if dtype == "F32":
        return a.astype(np.float32)
    if dtype == "F16":
        return a.astype(np.float16).astype(np.float32)
    return from_bf16_bits(to_bf16_bits(a))


def tensor_bytes(a, dtype):
    if dtype == "F32":
        return a.astype("<f4").tobytes()
    if dtype == "F16":
        return a.astype("<f2").tobytes()
    return to_bf16_bits(a).astype("<u2").tobytes()


def write_safetensors(path, tensors):
    """tensors: list of (name, float32 array, dtype)."""
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, a, dt in tensors:
        b = tensor_bytes(a, dt)
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((-len(h)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def write_config(d, cfg):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)


# ---------------------------------------------------------------- HF forward (float64)
def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)


def rope(x, cfg):
    """x (T, H, d), HF LlamaRotaryEmbedding + apply_rotary_pos_emb."""
    d = x.shape[-1]
    inv = 1.0 / cfg["rope_theta"] ** (np.arange(0, d, 2, dtype=np.float64) / d)
    rs = cfg.get("rope_scaling")
    if rs and rs.get("rope_type", rs.get("type")) == "linear":
        inv = inv / rs["factor"]
    freqs = np.outer(np.arange(x.shape[0], dtype=np.float64), inv)
    emb = np.concatenate([freqs, freqs], axis=-1)
    return x * np.cos(emb)[:, None, :] + rotate_half(x) * np.sin(emb)[:, None, :]


def silu(x):
    return x / (1 + np.exp(-x))


def forward(W, cfg, tokens):
    D, H, KV = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd, eps, T = D // H, cfg["rms_norm_eps"], len(tokens)
    g = lambda n: W[n].astype(np.float64)
    x = g("model.embed_tokens.weight")[tokens]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    stats = []
    for l in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % l
        h = rmsnorm(x, g(p + "input_layernorm.weight"), eps)
        q = (h @ g(p + "self_attn.q_proj.weight").T).reshape(T, H, hd)
        k = (h @ g(p + "self_attn.k_proj.weight").T).reshape(T, KV, hd)
        v = (h @ g(p + "self_attn.v_proj.weight").T).reshape(T, KV, hd)
        q, k = rope(q, cfg), rope(k, cfg)
        att = np.zeros((T, H, hd))
        for i in range(H):
            j = i // (H // KV)
            s = q[:, i, :] @ k[:, j, :].T / np.sqrt(hd) + mask
            s = np.exp(s - s.max(axis=-1, keepdims=True))
            att[:, i, :] = (s / s.sum(axis=-1, keepdims=True)) @ v[:, j, :]
        x = x + att.reshape(T, H * hd) @ g(p + "self_attn.o_proj.weight").T
        h = rmsnorm(x, g(p + "post_attention_layernorm.weight"), eps)
        if "num_local_experts" not in cfg:
            m = p + "mlp."
            y = (silu(h @ g(m + "gate_proj.weight").T) * (h @ g(m + "up_proj.weight").T)) @ g(m + "down_proj.weight").T
        else:
            m = p + "block_sparse_moe."
            E, K = cfg["num_local_experts"], cfg["num_experts_per_tok"]
            lg = h @ g(m + "gate.weight").T
            pr = np.exp(lg - lg.max(axis=-1, keepdims=True))
            pr /= pr.sum(axis=-1, keepdims=True)
            y = np.zeros_like(h)
            for t in range(T):
                order = np.argsort(-pr[t], kind="stable")
                stats.append(pr[t, order[K - 1]] - pr[t, order[K]])   # top-K margin
                sel = order[:K]
                wts = pr[t, sel] / pr[t, sel].sum()
                for e, wgt in zip(sel, wts):
                    ep = m + "experts.%d." % e
                    a = silu(g(ep + "w1.weight") @ h[t]) * (g(ep + "w3.weight") @ h[t])
                    y[t] += wgt * (g(ep + "w2.weight") @ a)
        x = x + y
    x = rmsnorm(x, g("model.norm.weight"), eps)
    head = g("model.embed_tokens.weight") if cfg.get("tie_word_embeddings") else g("lm_head.weight")
    return x @ head.T, (min(stats) if stats else None)


# ---------------------------------------------------------------- fixtures
def rand(rng, *shape, scale=0.15):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def norm_w(rng, n):
    return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)


def llama_fixture():
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 64,
           "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 128,
           "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "rope_scaling": {"type": "linear", "factor": 2.0},
           "tie_word_embeddings": False, "hidden_act": "silu", "torch_dtype": "float32"}
    rng = np.random.default_rng(1234)
    D, F, V, H, KV = 32, 48, 64, 4, 2
    hd = D // H
    T = [("model.embed_tokens.weight", rand(rng, V, D, scale=0.5), "F32")]
    for l in range(2):
        p = "model.layers.%d." % l
        T += [(p + "input_layernorm.weight", norm_w(rng, D), "F32"),
              (p + "self_attn.q_proj.weight", rand(rng, H * hd, D, scale=0.3), "F32"),
              (p + "self_attn.k_proj.weight", rand(rng, KV * hd, D, scale=0.3), "F32"),
              (p + "self_attn.v_proj.weight", rand(rng, KV * hd, D), "F32"),
              (p + "self_attn.o_proj.weight", rand(rng, D, H * hd), "F32"),
              (p + "self_attn.rotary_emb.inv_freq",
               (1.0 / 10000.0 ** (np.arange(0, hd, 2) / hd)).astype(np.float32), "F32"),
              (p + "post_attention_layernorm.weight", norm_w(rng, D), "F32"),
              (p + "mlp.gate_proj.weight", rand(rng, F, D), "F32"),
              (p + "mlp.up_proj.weight", rand(rng, F, D), "F32"),
              (p + "mlp.down_proj.weight", rand(rng, D, F), "F32")]
    T += [("model.norm.weight", norm_w(rng, D), "F32"), ("lm_head.weight", rand(rng, V, D, scale=0.5), "F32")]
    d = os.path.join(OUT, "llama")
    write_config(d, cfg)
    write_safetensors(os.path.join(d, "model.safetensors"), T)
    W = {n: stored(a, dt) for n, a, dt in T}
    logits, _ = forward(W, cfg, TOKENS)
    return logits


def mixtral_fixture():
    cfg = {"architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "vocab_size": 64,
           "hidden_size": 32, "intermediate_size": 32, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256,
           "rms_norm_eps": 1e-5, "rope_theta": 1000000.0, "num_local_experts": 4,
           "num_experts_per_tok": 2, "tie_word_embeddings": True, "hidden_act": "silu",
           "router_aux_loss_coef": 0.02, "torch_dtype": "bfloat16"}
    D, F, V, H, KV, E = 32, 32, 64, 4, 2, 4
    hd = D // H
    for seed in range(100, 200):   # a seed whose top-2 choices are not near ties
        rng = np.random.default_rng(seed)
        T = [("model.embed_tokens.weight", rand(rng, V, D, scale=0.5), "BF16")]
        for l in range(2):
            p = "model.layers.%d." % l
            T += [(p + "input_layernorm.weight", norm_w(rng, D), "F32"),
                  (p + "self_attn.q_proj.weight", rand(rng, H * hd, D, scale=0.3), "BF16"),
                  (p + "self_attn.k_proj.weight", rand(rng, KV * hd, D, scale=0.3), "BF16"),
                  (p + "self_attn.v_proj.weight", rand(rng, KV * hd, D), "F16"),
                  (p + "self_attn.o_proj.weight", rand(rng, D, H * hd), "F16"),
                  (p + "post_attention_layernorm.weight", norm_w(rng, D), "BF16"),
                  (p + "block_sparse_moe.gate.weight", rand(rng, E, D, scale=0.5), "F32")]
            for e in range(E):
                ep = p + "block_sparse_moe.experts.%d." % e
                T += [(ep + "w1.weight", rand(rng, F, D), "F16"),
                      (ep + "w2.weight", rand(rng, D, F), "BF16"),
                      (ep + "w3.weight", rand(rng, F, D), "F16")]
        T += [("model.norm.weight", norm_w(rng, D), "F32")]
        W = {n: stored(a, dt) for n, a, dt in T}
        logits, margin = forward(W, cfg, TOKENS)
        if margin > 2e-3:
            break
    print("mixtral seed %d, smallest top-2 margin %.4f" % (seed, margin))
    # sharded: layer 0 and the embeddings in shard 1, the rest in shard 2
    d = os.path.join(OUT, "mixtral_sharded")
    write_config(d, cfg)
    shards = [("model-00001-of-00002.safetensors", [t for t in T if not t[0].startswith(("model.layers.1.", "model.norm"))]),
              ("model-00002-of-00002.safetensors", [t for t in T if t[0].startswith(("model.layers.1.", "model.norm"))])]
    wmap = {}
    for fn, ts in shards:
        write_safetensors(os.path.join(d, fn), ts)
        wmap.update({n: fn for n, _, _ in ts})
    total = sum(len(tensor_bytes(a, dt)) for _, a, dt in T)
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(wmap.items()))}, f, indent=2)
    # fused (transformers v5): same values, F32, experts as [E, 2F, D] + [E, D, F] under `mlp`
    F32 = []
    for l in range(2):
        p = "model.layers.%d." % l
        gu = np.stack([np.concatenate([W[p + "block_sparse_moe.experts.%d.w1.weight" % e],
                                       W[p + "block_sparse_moe.experts.%d.w3.weight" % e]]) for e in range(E)])
        dn = np.stack([W[p + "block_sparse_moe.experts.%d.w2.weight" % e] for e in range(E)])
        F32 += [(p + "mlp.experts.gate_up_proj", gu, "F32"), (p + "mlp.experts.down_proj", dn, "F32"),
                (p + "mlp.gate.weight", W[p + "block_sparse_moe.gate.weight"], "F32")]
    for n, a, _ in T:
        if ".block_sparse_moe." not in n:
            F32.append((n, W[n], "F32"))
    d = os.path.join(OUT, "mixtral_fused")
    write_config(d, cfg)
    write_safetensors(os.path.join(d, "model.safetensors"), F32)
    return logits


def main():
    os.makedirs(OUT, exist_ok=True)
    np.save(os.path.join(OUT, "tokens.npy"), TOKENS.astype(np.float32))
    np.save(os.path.join(OUT, "llama.logits.npy"), llama_fixture().astype(np.float32))
    np.save(os.path.join(OUT, "mixtral.logits.npy"), mixtral_fixture().astype(np.float32))


if __name__ == "__main__":
    main()

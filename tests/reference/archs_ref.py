#!/usr/bin/python3
"""Independent reference for the MoE families granitemoe, qwen2moe, qwen3moe, olmoe, deepseek
(tests/test_archs.c, tests/cli/archs.sh).

Written from the published model definitions, not from vmoer's C code. Hugging Face transformers'
modeling files are the documentation:
  - common (modeling_llama.py): RMSNorm x / sqrt(mean(x^2) + eps) * w; rotary embedding in the
    rotate-half form q*cos + rotate_half(q)*sin, emb = cat(freqs, freqs), inv_freq =
    1 / theta^(arange(0, d, 2) / d); grouped-query attention (kv head = q head // n_rep), causal
    softmax(q k^T * scale); SwiGLU experts down(silu(gate x) * up x);
  - modeling_granitemoe.py / modeling_granitemoeshared.py: embeddings * embedding_multiplier;
    attention scale = attention_multiplier; residual + branch * residual_multiplier (both
    branches); router GraniteMoeTopKGating: top-K of the logits, softmax over those K; experts
    input_linear [E, 2F, D] (first F rows gate, next F up), output_linear [E, D, F]; shared_mlp
    input_linear [2Fs, D], output_linear [D, Fs], added to the routed output; logits / logits_scaling;
  - modeling_qwen2_moe.py: q/k/v projections with bias; router softmax over all experts, top-K,
    no renormalisation unless norm_topk_prob; shared_expert MLP times
    sigmoid(shared_expert_gate(x)) ([1, D] linear) added to the routed output;
  - modeling_qwen3_moe.py: q_norm / k_norm RMSNorm over head_dim on each head before RoPE;
    head_dim from the config; router as qwen2 (norm_topk_prob), no shared expert;
  - modeling_olmoe.py: q_norm RMSNorm over the whole q projection (hidden_size), k_norm over the
    whole k projection (kv heads * head_dim), before RoPE; router softmax, top-K, norm_topk_prob;
  - DeepSeek-MoE's modeling_deepseek.py (remote code): layers < first_k_dense_replace are dense
    DeepseekMLP(intermediate_size); MoE layers: MoEGate softmax scores, top-K, normalised only
    with norm_topk_prob; shared_experts = DeepseekMLP(moe_intermediate_size * n_shared_experts),
    added without a gate.
GGUF files are written as llama.cpp's convert_hf_to_gguf.py lays them out (names, keys of
llama-arch.cpp): Q/K rows permuted from rotate-half to ggml's adjacent-pair layout only for the
"normal"-RoPE families (granitemoe, deepseek; llama.cpp's LlamaModel.permute), untouched for
the NeoX ones (qwen2moe, qwen3moe, olmoe); experts stacked as ffn_{gate,up,down}_exps; the qwen2
shared gate as a 1-D ffn_gate_inp_shexp; deepseek's shared experts as one ffn_*_shexp FFN.
All maths in float64 from the float32 values stored.

Outputs (tests/golden/archs/): <name>.gguf, <name>.logits.npy (T, V) float32, tokens.npy, and
hf_<name>/ (config.json + model.safetensors) for the convert-hf round trip.
Run once from the repository root: /usr/bin/python3 tests/reference/archs_ref.py
"""
import json
import os
import struct

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "archs")
TOKENS = np.array([1, 17, 42, 5, 47, 0, 29, 11, 8], dtype=np.int64)
V = 48

# ---------------------------------------------------------------- file formats
KV_U32, KV_I32, KV_F32, KV_BOOL, KV_STR, KV_ARR = 4, 5, 6, 7, 8, 9


def gguf_write(path, kvs, tensors):
    """GGUF v3 (ggml docs/gguf.md). kvs: (key, type, value); tensors: (name, float array) stored
    F32; a numpy shape (..., n1, n0) is written as ne = [n0, n1, ...]."""
    s = lambda t: struct.pack("<Q", len(t.encode())) + t.encode()
    out = bytearray(b"GGUF") + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    enc = {KV_U32: lambda v: struct.pack("<I", v), KV_I32: lambda v: struct.pack("<i", v),
           KV_F32: lambda v: struct.pack("<f", v), KV_BOOL: lambda v: struct.pack("<B", 1 if v else 0), KV_STR: s}
    for key, typ, val in kvs:
        out += s(key) + struct.pack("<I", typ)
        if typ == KV_ARR:   # (element type, values)
            out += struct.pack("<IQ", val[0], len(val[1])) + b"".join(enc[val[0]](v) for v in val[1])
        else:
            out += enc[typ](val)
    blobs, off = [], 0
    for name, a in tensors:
        data = np.ascontiguousarray(a, dtype="<f4").tobytes()
        ne = list(reversed(a.shape))
        out += s(name) + struct.pack("<I", len(ne)) + struct.pack("<%dQ" % len(ne), *ne) + struct.pack("<IQ", 0, off)
        data += b"\0" * ((-len(data)) % 32)
        blobs.append(data)
        off += len(data)
    out += b"\0" * ((-len(out)) % 32)
    with open(path, "wb") as f:
        f.write(bytes(out) + b"".join(blobs))


def safetensors_write(path, tensors):
    """huggingface/safetensors: u64 header size, JSON header, contiguous F32 data."""
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, a in tensors:
        b = np.ascontiguousarray(a, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((-len(h)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


# ---------------------------------------------------------------- HF forward (float64)
def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)


def rope(x, theta):
    d = x.shape[-1]
    inv = 1.0 / theta ** (np.arange(0, d, 2, dtype=np.float64) / d)
    freqs = np.outer(np.arange(x.shape[0], dtype=np.float64), inv)
    emb = np.concatenate([freqs, freqs], axis=-1)
    return x * np.cos(emb)[:, None, :] + rotate_half(x) * np.sin(emb)[:, None, :]


def silu(x):
    return x / (1 + np.exp(-x))


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def mlp(W, P, x):
    return (silu(x @ W[P + "gate_proj.weight"].T) * (x @ W[P + "up_proj.weight"].T)) @ W[P + "down_proj.weight"].T


def attention(W, p, x, cfg, kind):
    T, D, H, KV = x.shape[0], cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd, eps = cfg.get("head_dim", D // H), cfg["rms_norm_eps"]
    a = p + "self_attn."
    q, k, v = (x @ W[a + n + "_proj.weight"].T for n in "qkv")
    if kind == "qwen2moe":
        q, k, v = q + W[a + "q_proj.bias"], k + W[a + "k_proj.bias"], v + W[a + "v_proj.bias"]
    if kind == "olmoe":   # whole projections
        q, k = rmsnorm(q, W[a + "q_norm.weight"], eps), rmsnorm(k, W[a + "k_norm.weight"], eps)
    q, k, v = q.reshape(T, H, hd), k.reshape(T, KV, hd), v.reshape(T, KV, hd)
    if kind == "qwen3moe":   # per head
        q, k = rmsnorm(q, W[a + "q_norm.weight"], eps), rmsnorm(k, W[a + "k_norm.weight"], eps)
    q, k = rope(q, cfg["rope_theta"]), rope(k, cfg["rope_theta"])
    scale = cfg["attention_multiplier"] if kind == "granitemoe" else hd ** -0.5
    mask = np.triu(np.full((T, T), -np.inf), 1)
    o = np.zeros((T, H, hd))
    for i in range(H):
        j = i // (H // KV)
        o[:, i, :] = softmax(q[:, i, :] @ k[:, j, :].T * scale + mask) @ v[:, j, :]
    return o.reshape(T, H * hd) @ W[a + "o_proj.weight"].T


def moe(W, p, x, cfg, kind, margins):
    """The sparse block; margins collects each token's gap between the K-th and (K+1)-th
    routing probability (the reference must not sit on a near tie)."""
    K = cfg["num_experts_per_tok"]
    y = np.zeros_like(x)
    if kind == "granitemoe":
        B = p + "block_sparse_moe."
        lg = x @ W[B + "router.layer.weight"].T
        gu, dn = W[B + "input_linear.weight"], W[B + "output_linear.weight"]
        F = gu.shape[1] // 2
        for t in range(x.shape[0]):
            order = np.argsort(-lg[t], kind="stable")
            pr = softmax(lg[t])
            margins.append(pr[order[K - 1]] - pr[order[K]])
            sel = order[:K]
            g = softmax(lg[t, sel])
            for e, w in zip(sel, g):
                h = gu[e] @ x[t]
                y[t] += w * (dn[e] @ (silu(h[:F]) * h[F:]))
        if "shared_intermediate_size" in cfg:
            S = p + "shared_mlp."
            h = x @ W[S + "input_linear.weight"].T
            Fs = h.shape[1] // 2
            y += (silu(h[:, :Fs]) * h[:, Fs:]) @ W[S + "output_linear.weight"].T
        return y
    B = p + "mlp."
    pr = softmax(x @ W[B + "gate.weight"].T)
    for t in range(x.shape[0]):
        order = np.argsort(-pr[t], kind="stable")
        margins.append(pr[t, order[K - 1]] - pr[t, order[K]])
        sel = order[:K]
        g = pr[t, sel]
        if cfg.get("norm_topk_prob"):
            g = g / g.sum()
        for e, w in zip(sel, g):
            y[t] += w * mlp(W, B + "experts.%d." % e, x[t:t + 1])[0]
    if kind == "qwen2moe":
        y += 1 / (1 + np.exp(-(x @ W[B + "shared_expert_gate.weight"].T))) * mlp(W, B + "shared_expert.", x)
    if kind == "deepseek" and cfg.get("n_shared_experts"):
        y += mlp(W, B + "shared_experts.", x)
    return y


def forward(W, cfg, kind, tokens):
    eps = cfg["rms_norm_eps"]
    rm = cfg.get("residual_multiplier", 1.0) if kind == "granitemoe" else 1.0
    x = W["model.embed_tokens.weight"][tokens] * (cfg.get("embedding_multiplier", 1.0) if kind == "granitemoe" else 1.0)
    margins = []
    for l in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % l
        x = x + rm * attention(W, p, rmsnorm(x, W[p + "input_layernorm.weight"], eps), cfg, kind)
        h = rmsnorm(x, W[p + "post_attention_layernorm.weight"], eps)
        if kind == "deepseek" and l < cfg["first_k_dense_replace"]:
            x = x + mlp(W, p + "mlp.", h)
        else:
            x = x + rm * moe(W, p, h, cfg, kind, margins)
    x = rmsnorm(x, W["model.norm.weight"], eps)
    head = W["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else W["lm_head.weight"]
    logits = x @ head.T
    if kind == "granitemoe":
        logits = logits / cfg["logits_scaling"]
    return logits, min(margins)


# ---------------------------------------------------------------- random HF checkpoints
def make_weights(rng, cfg, kind):
    D, H, KV = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim", D // H)
    E = cfg.get("num_local_experts", cfg.get("num_experts", cfg.get("n_routed_experts")))
    F = cfg.get("moe_intermediate_size", cfg["intermediate_size"])
    r = lambda *s, sc=0.2: rng.standard_normal(s) * sc
    nw = lambda n: 1.0 + 0.1 * rng.standard_normal(n)
    W = {"model.embed_tokens.weight": r(V, D, sc=0.6), "model.norm.weight": nw(D)}
    if not cfg.get("tie_word_embeddings"):
        W["lm_head.weight"] = r(V, D, sc=0.3)
    for l in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % l
        a = p + "self_attn."
        W[p + "input_layernorm.weight"], W[p + "post_attention_layernorm.weight"] = nw(D), nw(D)
        W[a + "q_proj.weight"], W[a + "k_proj.weight"] = r(H * hd, D, sc=0.3), r(KV * hd, D, sc=0.3)
        W[a + "v_proj.weight"], W[a + "o_proj.weight"] = r(KV * hd, D), r(D, H * hd)
        if kind == "qwen2moe":
            W[a + "q_proj.bias"], W[a + "k_proj.bias"], W[a + "v_proj.bias"] = r(H * hd, sc=0.5), r(KV * hd, sc=0.5), r(KV * hd, sc=0.5)
        if kind == "qwen3moe":
            W[a + "q_norm.weight"], W[a + "k_norm.weight"] = nw(hd), nw(hd)
        if kind == "olmoe":
            W[a + "q_norm.weight"], W[a + "k_norm.weight"] = nw(H * hd), nw(KV * hd)
        if kind == "granitemoe":
            B = p + "block_sparse_moe."
            W[B + "router.layer.weight"] = r(E, D, sc=0.6)
            W[B + "input_linear.weight"], W[B + "output_linear.weight"] = r(E, 2 * F, D), r(E, D, F)
            if "shared_intermediate_size" in cfg:
                Fs = cfg["shared_intermediate_size"]
                W[p + "shared_mlp.input_linear.weight"], W[p + "shared_mlp.output_linear.weight"] = r(2 * Fs, D), r(D, Fs)
            continue
        B = p + "mlp."
        if kind == "deepseek" and l < cfg["first_k_dense_replace"]:
            Fd = cfg["intermediate_size"]
            W[B + "gate_proj.weight"], W[B + "up_proj.weight"], W[B + "down_proj.weight"] = r(Fd, D), r(Fd, D), r(D, Fd)
            continue
        W[B + "gate.weight"] = r(E, D, sc=0.6)
        for e in range(E):
            P = B + "experts.%d." % e
            W[P + "gate_proj.weight"], W[P + "up_proj.weight"], W[P + "down_proj.weight"] = r(F, D), r(F, D), r(D, F)
        shared = {"qwen2moe": ("shared_expert.", cfg.get("shared_expert_intermediate_size", 0)),
                  "deepseek": ("shared_experts.", cfg.get("n_shared_experts", 0) * F)}.get(kind)
        if shared and shared[1]:
            P, Fs = B + shared[0], shared[1]
            W[P + "gate_proj.weight"], W[P + "up_proj.weight"], W[P + "down_proj.weight"] = r(Fs, D), r(Fs, D), r(D, Fs)
        if kind == "qwen2moe":
            W[B + "shared_expert_gate.weight"] = r(1, D, sc=0.5)
    # the values the files store
    return {n: a.astype(np.float32).astype(np.float64) for n, a in W.items()}


# ---------------------------------------------------------------- llama.cpp GGUF layout
def permute(w, n_head):
    """rotate-half rows -> ggml adjacent pairs (llama.cpp convert_hf_to_gguf.py LlamaModel.permute):
    per head, new row 2i + j = old row j*hd/2 + i."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def to_gguf(W, cfg, kind, gguf_arch):
    D, H, KV = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim", D // H)
    L = cfg["num_hidden_layers"]
    E = cfg.get("num_local_experts", cfg.get("num_experts", cfg.get("n_routed_experts")))
    F = cfg.get("moe_intermediate_size", cfg["intermediate_size"])
    normal_rope = kind in ("granitemoe", "deepseek")
    A = gguf_arch
    kv = [("general.architecture", KV_STR, A), ("general.name", KV_STR, "vmoer-ref-" + kind),
          (A + ".context_length", KV_U32, 64), (A + ".embedding_length", KV_U32, D),
          (A + ".block_count", KV_U32, L), (A + ".feed_forward_length", KV_U32, cfg["intermediate_size"]),
          (A + ".attention.head_count", KV_U32, H), (A + ".attention.head_count_kv", KV_U32, KV),
          (A + ".rope.freq_base", KV_F32, cfg["rope_theta"]), (A + ".rope.dimension_count", KV_U32, hd),
          (A + ".attention.layer_norm_rms_epsilon", KV_F32, cfg["rms_norm_eps"]),
          (A + ".expert_count", KV_U32, E), (A + ".expert_used_count", KV_U32, cfg["num_experts_per_tok"])]
    if "head_dim" in cfg:
        kv += [(A + ".attention.key_length", KV_U32, hd), (A + ".attention.value_length", KV_U32, hd)]
    if kind in ("qwen2moe", "qwen3moe", "deepseek"):
        kv += [(A + ".expert_feed_forward_length", KV_U32, F)]
    if kind == "qwen2moe":
        kv += [(A + ".expert_shared_feed_forward_length", KV_U32, cfg["shared_expert_intermediate_size"])]
    if kind in ("qwen2moe", "qwen3moe", "olmoe", "deepseek") and "norm_topk_prob" in cfg:
        kv += [(A + ".expert_weights_norm", KV_BOOL, cfg["norm_topk_prob"])]
    if kind == "deepseek":
        kv += [(A + ".leading_dense_block_count", KV_U32, cfg["first_k_dense_replace"]),
               (A + ".expert_shared_count", KV_U32, cfg["n_shared_experts"]),
               (A + ".expert_weights_scale", KV_F32, 1.0)]
    if kind == "granitemoe":
        kv += [(A + ".embedding_scale", KV_F32, cfg["embedding_multiplier"]),
               (A + ".residual_scale", KV_F32, cfg["residual_multiplier"]),
               (A + ".attention.scale", KV_F32, cfg["attention_multiplier"]),
               (A + ".logit_scale", KV_F32, cfg["logits_scaling"])]
        if "shared_intermediate_size" in cfg:
            kv += [(A + ".expert_shared_feed_forward_length", KV_U32, cfg["shared_intermediate_size"])]
    T = [("token_embd.weight", W["model.embed_tokens.weight"]), ("output_norm.weight", W["model.norm.weight"])]
    if not cfg.get("tie_word_embeddings"):
        T.append(("output.weight", W["lm_head.weight"]))
    for l in range(L):
        p, b = "model.layers.%d." % l, "blk.%d." % l
        a = p + "self_attn."
        q, k = W[a + "q_proj.weight"], W[a + "k_proj.weight"]
        if normal_rope:
            q, k = permute(q, H), permute(k, KV)
        T += [(b + "attn_norm.weight", W[p + "input_layernorm.weight"]), (b + "attn_q.weight", q),
              (b + "attn_k.weight", k), (b + "attn_v.weight", W[a + "v_proj.weight"]),
              (b + "attn_output.weight", W[a + "o_proj.weight"]),
              (b + "ffn_norm.weight", W[p + "post_attention_layernorm.weight"])]
        for n in ("q", "k", "v"):
            if a + n + "_proj.bias" in W:
                T.append((b + "attn_%s.bias" % n, W[a + n + "_proj.bias"]))
        for n in ("q", "k"):
            if a + n + "_norm.weight" in W:
                T.append((b + "attn_%s_norm.weight" % n, W[a + n + "_norm.weight"]))
        if kind == "granitemoe":
            B = p + "block_sparse_moe."
            gu = W[B + "input_linear.weight"]
            T += [(b + "ffn_gate_inp.weight", W[B + "router.layer.weight"]),
                  (b + "ffn_gate_exps.weight", gu[:, :F]), (b + "ffn_up_exps.weight", gu[:, F:]),
                  (b + "ffn_down_exps.weight", W[B + "output_linear.weight"])]
            if "shared_intermediate_size" in cfg:
                Fs = cfg["shared_intermediate_size"]
                sg = W[p + "shared_mlp.input_linear.weight"]
                T += [(b + "ffn_gate_shexp.weight", sg[:Fs]), (b + "ffn_up_shexp.weight", sg[Fs:]),
                      (b + "ffn_down_shexp.weight", W[p + "shared_mlp.output_linear.weight"])]
            continue
        B = p + "mlp."
        if kind == "deepseek" and l < cfg["first_k_dense_replace"]:
            T += [(b + "ffn_%s.weight" % n, W[B + n + "_proj.weight"]) for n in ("gate", "up", "down")]
            continue
        T.append((b + "ffn_gate_inp.weight", W[B + "gate.weight"]))
        for n in ("gate", "up", "down"):
            T.append((b + "ffn_%s_exps.weight" % n, np.stack([W[B + "experts.%d.%s_proj.weight" % (e, n)] for e in range(E)])))
        sh = {"qwen2moe": "shared_expert.", "deepseek": "shared_experts."}.get(kind)
        if sh and B + sh + "gate_proj.weight" in W:
            T += [(b + "ffn_%s_shexp.weight" % n, W[B + sh + n + "_proj.weight"]) for n in ("gate", "up", "down")]
        if kind == "qwen2moe":
            T.append((b + "ffn_gate_inp_shexp.weight", W[B + "shared_expert_gate.weight"].reshape(D)))
    return kv, T


# A SentencePiece-style vocabulary of V pieces so that `vmoer run/trace -p TEXT` work on the
# fixtures (the weights do not depend on it): <unk> <s> </s>, the space piece, letters, words.
PIECES = ["<unk>", "<s>", "</s>", "\u2581"] + list("abcdefghijklmnopqrstuvwxyz") + \
    ["\u2581" + w for w in ("the", "a", "once", "upon", "time", "there", "was", "little", "girl",
                           "named", "lily", "she", "big", "red", "ball", "day", "saw", "it")]
assert len(PIECES) == V
TOKENIZER = [("tokenizer.ggml.model", KV_STR, "llama"), ("tokenizer.ggml.tokens", KV_ARR, (KV_STR, PIECES)),
             ("tokenizer.ggml.scores", KV_ARR, (KV_F32, [0.0] * 3 + [-float(i) for i in range(1, V - 2)])),
             ("tokenizer.ggml.token_type", KV_ARR, (KV_I32, [2, 3, 3] + [1] * (V - 3))),
             ("tokenizer.ggml.bos_token_id", KV_U32, 1), ("tokenizer.ggml.eos_token_id", KV_U32, 2)]

# ---------------------------------------------------------------- the fixtures
BASE = {"vocab_size": V, "hidden_size": 32, "num_attention_heads": 4, "num_key_value_heads": 2,
        "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "num_hidden_layers": 2, "num_experts_per_tok": 2, "hidden_act": "silu", "torch_dtype": "float32"}

FIXTURES = [
    # name, kind, gguf arch, config additions, write the HF checkpoint
    ("granitemoe", "granitemoe", "granitemoe",
     {"architectures": ["GraniteMoeForCausalLM"], "model_type": "granitemoe", "intermediate_size": 16,
      "num_local_experts": 4, "tie_word_embeddings": True, "embedding_multiplier": 3.0,
      "attention_multiplier": 0.2, "residual_multiplier": 0.5, "logits_scaling": 4.0}, False),
    ("granitemoeshared", "granitemoe", "granitemoe",
     {"architectures": ["GraniteMoeSharedForCausalLM"], "model_type": "granitemoeshared", "intermediate_size": 16,
      "num_local_experts": 4, "shared_intermediate_size": 24, "tie_word_embeddings": False,
      "embedding_multiplier": 2.0, "attention_multiplier": 0.25, "residual_multiplier": 0.7,
      "logits_scaling": 2.5}, True),
    ("qwen2moe", "qwen2moe", "qwen2moe",
     {"architectures": ["Qwen2MoeForCausalLM"], "model_type": "qwen2_moe", "intermediate_size": 40,
      "moe_intermediate_size": 16, "shared_expert_intermediate_size": 24, "num_experts": 4,
      "norm_topk_prob": False, "decoder_sparse_step": 1, "mlp_only_layers": [],
      "tie_word_embeddings": False}, True),
    ("qwen3moe", "qwen3moe", "qwen3moe",
     {"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "intermediate_size": 40,
      "moe_intermediate_size": 16, "num_experts": 4, "head_dim": 16, "norm_topk_prob": True,
      "decoder_sparse_step": 1, "mlp_only_layers": [], "rope_theta": 1000000.0,
      "tie_word_embeddings": False}, True),
    ("olmoe", "olmoe", "olmoe",
     {"architectures": ["OlmoeForCausalLM"], "model_type": "olmoe", "intermediate_size": 16,
      "num_experts": 4, "norm_topk_prob": False, "clip_qkv": None, "tie_word_embeddings": False}, True),
    ("olmoe_norm", "olmoe", "olmoe",   # expert_weights_norm: softmax over all, renormalised
     {"architectures": ["OlmoeForCausalLM"], "model_type": "olmoe", "intermediate_size": 16,
      "num_experts": 4, "num_experts_per_tok": 3, "norm_topk_prob": True, "num_key_value_heads": 4,
      "tie_word_embeddings": False, "num_hidden_layers": 1}, False),
    ("deepseek", "deepseek", "deepseek",
     {"architectures": ["DeepseekForCausalLM"], "model_type": "deepseek", "intermediate_size": 40,
      "moe_intermediate_size": 16, "n_routed_experts": 4, "n_shared_experts": 2,
      "first_k_dense_replace": 1, "moe_layer_freq": 1, "norm_topk_prob": False,
      "scoring_func": "softmax", "num_hidden_layers": 3, "tie_word_embeddings": False}, True),
]


def main():
    os.makedirs(OUT, exist_ok=True)
    np.save(os.path.join(OUT, "tokens.npy"), TOKENS.astype(np.float32))
    for name, kind, arch, extra, hf in FIXTURES:
        cfg = dict(BASE, **extra)
        for seed in range(1, 200):   # a seed whose top-K choices are not near ties
            W = make_weights(np.random.default_rng(1000 * len(name) + seed), cfg, kind)
            logits, margin = forward(W, cfg, kind, TOKENS)
            if margin > 2e-3:
                break
        kv, T = to_gguf(W, cfg, kind, arch)
        gguf_write(os.path.join(OUT, name + ".gguf"), kv + TOKENIZER, T)
        np.save(os.path.join(OUT, name + ".logits.npy"), logits.astype(np.float32))
        if hf:
            d = os.path.join(OUT, "hf_" + name)
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, "config.json"), "w") as f:
                json.dump(cfg, f, indent=1)
            safetensors_write(os.path.join(d, "model.safetensors"), sorted(W.items()))
        print("%-17s seed %3d  top-K margin %.4f  logits |max| %.2f" % (name, seed, margin, np.abs(logits).max()))


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Independent reference for the deepseek2 forward pass (tests/test_deepseek2.c).

Written from the published model definitions, not from vmoer's C code:
  - DeepSeek-V2's modeling_deepseek.py (Hugging Face remote code / transformers' deepseek_v2):
    multi-head latent attention: q = q_proj(x) or q_b_proj(rmsnorm(q_a_proj(x))), split per head
    into (q_nope, q_pe); kv_a_proj_with_mqa(x) = (compressed_kv, k_pe); kv_b_proj(rmsnorm(compressed_kv))
    = per head (k_nope, v); these two latent norms are built with the RMSNorm default eps 1e-6, never
    with rms_norm_eps (which the block and final norms use); RoPE on q_pe / k_pe only, after the interleaved->halves permutation
    (view(d/2, 2).transpose) and rotate_half; YaRN rotary embedding (frequency blend with the
    linear ramp between yarn_find_correction_range(beta_fast, beta_slow), cos/sin times
    yarn_get_mscale(factor, mscale) / yarn_get_mscale(factor, mscale_all_dim)) and the softmax
    scale q_head_dim^-0.5 * yarn_get_mscale(factor, mscale_all_dim)^2;
  - the MoE gate of DeepSeek-V2 (softmax scores, greedy top-k, weights times routed_scaling_factor
    unless norm_topk_prob) and DeepSeek-V3 (sigmoid scores, e_score_correction_bias for the choice
    only, group-limited top-k with group score = sum of the two best biased scores, weights from the
    unbiased scores, renormalised, times routed_scaling_factor); shared experts = one SwiGLU MLP of
    n_shared_experts * moe_intermediate_size always added; the first first_k_dense_replace layers dense;
  - GGUF v3 layout from ggml's docs/gguf.md with the tensor names, shapes and keys llama.cpp uses for
    `deepseek2` (current converters: attn_kv_b split into attn_k_b (per head, transposed) and
    attn_v_b, head_count_kv 1, key_length_mla / value_length_mla; legacy files: attn_kv_b).
All maths in float64 from the float32 weights the GGUF stores.

Writes tests/golden/deepseek2/<name>.gguf, <name>.tokens.npy (float32 ids), <name>.logits.npy (T, V) and
<name>.topk.npy (MoE layers, T, K); and hf_v3/ (config.json + model.safetensors: a DeepseekV3ForCausalLM
checkpoint in the Hugging Face layout, per-expert tensors) with hf_v3.tokens.npy / hf_v3.logits.npy for
the convert-hf round trip; hf_v2/ likewise, a DeepseekV2ForCausalLM checkpoint (softmax greedy gate)
whose rms_norm_eps is 0.05, so the latent norms' fixed 1e-6 shows in its logits.
Run once from the repository root: /usr/bin/python3 tests/reference/deepseek2_ref.py (every file is
written again byte for byte; numpy 1.24).
"""
import json
import math
import os
import struct
import sys

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "deepseek2")
ALIGN = 32

# ---------------------------------------------------------------- minimal GGUF writer (spec)
GGUF_U32, GGUF_F32, GGUF_BOOL, GGUF_STR = 4, 6, 7, 8
GGML_F32 = 0


def gguf_str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def gguf_write(path, kvs, tensors):
    """kvs: list of (key, type, value); tensors: list of (name, numpy array).
    A numpy array of shape (..., n1, n0) is stored as f32 with ne = [n0, n1, ...] (ne[0] contiguous)."""
    out = bytearray(b"GGUF")
    out += struct.pack("<IQQ", 3, len(tensors), len(kvs))
    for key, typ, val in kvs:
        out += gguf_str(key) + struct.pack("<I", typ)
        if typ == GGUF_U32:
            out += struct.pack("<I", val)
        elif typ == GGUF_F32:
            out += struct.pack("<f", val)
        elif typ == GGUF_BOOL:
            out += struct.pack("<B", 1 if val else 0)
        elif typ == GGUF_STR:
            out += gguf_str(val)
        else:
            raise ValueError(typ)
    blobs, offset = [], 0
    for name, arr in tensors:
        data = np.ascontiguousarray(arr, dtype=np.float32).tobytes()
        ne = list(reversed(arr.shape))
        out += gguf_str(name) + struct.pack("<I", len(ne)) + struct.pack("<%dQ" % len(ne), *ne)
        out += struct.pack("<IQ", GGML_F32, offset)
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


def silu(x):
    return x / (1.0 + np.exp(-x))


def mlp(x, g, u, d):
    """DeepseekV2MLP: down(silu(gate(x)) * up(x)); g, u (F, D), d (D, F)."""
    return (silu(x @ g.T) * (x @ u.T)) @ d.T


def yarn_get_mscale(scale, mscale):
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def yarn_correction_dim(n_rot, dim, base, max_pos):
    return (dim * math.log(max_pos / (n_rot * 2 * math.pi))) / (2 * math.log(base))


def rotary_cos_sin(cfg, T):
    """cos, sin (T, rope_dim) in the rotate_half layout (emb = cat(freqs, freqs))."""
    d, base, rs = cfg["rope"], cfg["rope_base"], cfg["rope_scaling"]
    freq_extra = 1.0 / base ** (np.arange(0, d, 2) / d)
    mscale = 1.0
    if rs is None:
        inv_freq = freq_extra
    else:
        f = rs["factor"]
        freq_inter = 1.0 / (f * base ** (np.arange(0, d, 2) / d))
        low = max(math.floor(yarn_correction_dim(rs["beta_fast"], d, base, rs["original_max_position_embeddings"])), 0)
        high = min(math.ceil(yarn_correction_dim(rs["beta_slow"], d, base, rs["original_max_position_embeddings"])), d - 1)
        if low == high:
            high += 0.001
        ramp = np.clip((np.arange(d // 2) - low) / (high - low), 0.0, 1.0)
        mask = 1.0 - ramp
        inv_freq = freq_inter * (1.0 - mask) + freq_extra * mask
        mscale = yarn_get_mscale(f, rs["mscale"]) / yarn_get_mscale(f, rs["mscale_all_dim"])
    freqs = np.outer(np.arange(T, dtype=np.float64), inv_freq)
    emb = np.concatenate([freqs, freqs], axis=-1)
    return np.cos(emb) * mscale, np.sin(emb) * mscale


def rotate_half(x):
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)


def apply_rope(x, cos, sin):
    """x (T, H, d): DeepSeek's interleaved rope = de-interleave (view(d/2,2).transpose) then rotate_half."""
    T, H, d = x.shape
    x = x.reshape(T, H, d // 2, 2).transpose(0, 1, 3, 2).reshape(T, H, d)
    return x * cos[:, None, :] + rotate_half(x) * sin[:, None, :]


LATENT_EPS = 1e-6   # q_a_layernorm / kv_a_layernorm: the RMSNorm default, whatever rms_norm_eps says


def attention(cfg, W, p, x):
    T, H = x.shape[0], cfg["n_head"]
    nope, rope, vd, kvl = cfg["nope"], cfg["rope"], cfg["vd"], cfg["kvl"]
    qhd = nope + rope
    if cfg["q_lora"]:
        q = rmsnorm(x @ W[p + "q_a"].T, W[p + "q_a_norm"], LATENT_EPS) @ W[p + "q_b"].T
    else:
        q = x @ W[p + "q"].T
    q = q.reshape(T, H, qhd)
    q_nope, q_pe = q[..., :nope], q[..., nope:]
    ckv = x @ W[p + "kv_a"].T                                      # (T, kvl + rope)
    c, k_pe = ckv[:, :kvl], ckv[:, kvl:].reshape(T, 1, rope)
    kv = (rmsnorm(c, W[p + "kv_a_norm"], LATENT_EPS) @ W[p + "kv_b"].T).reshape(T, H, nope + vd)
    k_nope, v = kv[..., :nope], kv[..., nope:]
    cos, sin = rotary_cos_sin(cfg, T)
    q_pe, k_pe = apply_rope(q_pe, cos, sin), apply_rope(k_pe, cos, sin)
    qs = np.concatenate([q_nope, q_pe], axis=-1)
    ks = np.concatenate([k_nope, np.repeat(k_pe, H, axis=1)], axis=-1)
    scale = qhd ** -0.5
    rs = cfg["rope_scaling"]
    if rs is not None and rs["mscale_all_dim"]:
        m = yarn_get_mscale(rs["factor"], rs["mscale_all_dim"])
        scale = scale * m * m
    att = np.einsum("thd,shd->hts", qs, ks) * scale + np.triu(np.full((T, T), -np.inf), k=1)
    att = np.exp(att - att.max(-1, keepdims=True))
    att /= att.sum(-1, keepdims=True)
    o = np.einsum("hts,shd->thd", att, v).reshape(T, H * vd)
    return o @ W[p + "o"].T


def moe(cfg, W, p, x, layer):
    T, N, K = x.shape[0], cfg["n_expert"], cfg["n_expert_used"]
    logits = x @ W[p + "gate"].T                                   # (T, N)
    if cfg["scoring"] == "softmax":
        scores = np.exp(logits - logits.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
    else:
        scores = 1.0 / (1.0 + np.exp(-logits))
    choice = scores + W[p + "bias"] if p + "bias" in W else scores.copy()
    G, TG = cfg["n_group"], cfg["topk_group"]
    if G > 1:   # noaux_tc: groups scored by their two best choice scores; the others masked (-inf)
        per = N // G
        gs = np.sort(choice.reshape(T, G, per), axis=-1)[..., ::-1][..., :2].sum(-1)     # (T, G)
        gsel = np.argsort(-gs, axis=-1, kind="stable")[:, :TG]
        allowed = np.zeros((T, N), dtype=bool)
        for t in range(T):
            for g in gsel[t]:
                allowed[t, g * per:(g + 1) * per] = True
        for t in range(T):   # no near ties between groups
            s = np.sort(gs[t])[::-1]
            if s[TG - 1] - s[TG] < 1e-4:
                raise RuntimeError("near tie in group choice (layer %d token %d): change the seed" % (layer, t))
        choice = np.where(allowed, choice, -np.inf)
    sel = np.argsort(-choice, axis=-1, kind="stable")[:, :K]
    for t in range(T):   # the reference must not sit on a near tie (float32 vs float64)
        s = np.sort(choice[t])[::-1]
        if s[K - 1] - s[K] < 1e-4:
            raise RuntimeError("near tie in routing (layer %d token %d): change the seed" % (layer, t))
    out = np.zeros_like(x)
    for t in range(T):
        w = scores[t, sel[t]]
        if cfg["norm_topk"]:
            w = w / (w.sum() + 1e-20)
            if cfg["scale_after_norm"]:       # V3: always scaled
                w = w * cfg["routed_scale"]
        else:
            w = w * cfg["routed_scale"]
        for j, e in enumerate(sel[t]):
            out[t] += w[j] * mlp(x[t], W[p + "exp_gate"][e], W[p + "exp_up"][e], W[p + "exp_down"][e])
    if cfg["n_shared"]:
        out += mlp(x, W[p + "sh_gate"], W[p + "sh_up"], W[p + "sh_down"])
    return out, sel


def forward(cfg, W, tokens):
    eps = cfg["eps"]
    h = W["token_embd"][tokens]
    sels = []
    for l in range(cfg["n_layer"]):
        p = "blk.%d." % l
        h = h + attention(cfg, W, p, rmsnorm(h, W[p + "attn_norm"], eps))
        x = rmsnorm(h, W[p + "ffn_norm"], eps)
        if l < cfg["n_dense"]:
            h = h + mlp(x, W[p + "ffn_gate"], W[p + "ffn_up"], W[p + "ffn_down"])
        else:
            f, sel = moe(cfg, W, p, x, l)
            sels.append(sel)
            h = h + f
    h = rmsnorm(h, W["output_norm"], eps)
    return h @ W["output"].T, np.array(sels)


# ---------------------------------------------------------------- random models
def make(name, seed, *, dim=32, n_head=4, q_lora=0, kvl=16, nope=8, rope=8, vd=12, n_layer=3, n_dense=1,
         n_ff=32, n_expert=8, n_expert_used=2, n_ff_exp=12, n_shared=2, vocab=64, scoring="softmax",
         norm_topk=False, scale_after_norm=False, routed_scale=1.0, n_group=1, topk_group=1, bias=False,
         rope_scaling=None, layouts=("mla",), n_tokens=10, eps=1e-6, rope_base=10000.0):
    rng = np.random.default_rng(seed)
    cfg = dict(dim=dim, n_head=n_head, q_lora=q_lora, kvl=kvl, nope=nope, rope=rope, vd=vd, n_layer=n_layer,
               n_dense=n_dense, n_expert=n_expert, n_expert_used=n_expert_used, n_shared=n_shared, eps=eps,
               scoring=scoring, norm_topk=norm_topk, scale_after_norm=scale_after_norm, routed_scale=routed_scale,
               n_group=n_group, topk_group=topk_group, rope_scaling=rope_scaling, rope_base=rope_base)

    def rnd(*shape, sd=1.0, mean=0.0):
        return (mean + rng.standard_normal(shape) * sd).astype(np.float32).astype(np.float64)

    W = {}
    W["token_embd"] = rnd(vocab, dim)
    W["output_norm"] = rnd(dim, sd=0.1, mean=1.0)
    W["output"] = rnd(vocab, dim, sd=dim ** -0.5)
    H, qhd, F = n_head, nope + rope, n_ff_exp
    for l in range(n_layer):
        p = "blk.%d." % l
        W[p + "attn_norm"] = rnd(dim, sd=0.1, mean=1.0)
        if q_lora:
            W[p + "q_a"] = rnd(q_lora, dim, sd=dim ** -0.5)
            W[p + "q_a_norm"] = rnd(q_lora, sd=0.1, mean=1.0)
            W[p + "q_b"] = rnd(H * qhd, q_lora, sd=q_lora ** -0.5)
        else:
            W[p + "q"] = rnd(H * qhd, dim, sd=dim ** -0.5)
        W[p + "kv_a"] = rnd(kvl + rope, dim, sd=dim ** -0.5)
        W[p + "kv_a_norm"] = rnd(kvl, sd=0.1, mean=1.0)
        W[p + "kv_b"] = rnd(H * (nope + vd), kvl, sd=kvl ** -0.5)
        W[p + "o"] = rnd(dim, H * vd, sd=(H * vd) ** -0.5)
        W[p + "ffn_norm"] = rnd(dim, sd=0.1, mean=1.0)
        if l < n_dense:
            W[p + "ffn_gate"] = rnd(n_ff, dim, sd=dim ** -0.5)
            W[p + "ffn_up"] = rnd(n_ff, dim, sd=dim ** -0.5)
            W[p + "ffn_down"] = rnd(dim, n_ff, sd=n_ff ** -0.5)
            continue
        W[p + "gate"] = rnd(n_expert, dim, sd=2 * dim ** -0.5)
        if bias:
            W[p + "bias"] = rnd(n_expert, sd=0.05)
        W[p + "exp_gate"] = rnd(n_expert, F, dim, sd=dim ** -0.5)
        W[p + "exp_up"] = rnd(n_expert, F, dim, sd=dim ** -0.5)
        W[p + "exp_down"] = rnd(n_expert, dim, F, sd=F ** -0.5)
        if n_shared:
            W[p + "sh_gate"] = rnd(n_shared * F, dim, sd=dim ** -0.5)
            W[p + "sh_up"] = rnd(n_shared * F, dim, sd=dim ** -0.5)
            W[p + "sh_down"] = rnd(dim, n_shared * F, sd=(n_shared * F) ** -0.5)

    tokens = rng.integers(0, vocab, n_tokens)
    logits, sels = forward(cfg, W, tokens)

    for layout in layouts:
        A = "deepseek2."
        mla = layout == "mla"
        kvs = [("general.architecture", GGUF_STR, "deepseek2"), ("general.name", GGUF_STR, "vmoer-ref-" + name),
               (A + "vocab_size", GGUF_U32, vocab), (A + "context_length", GGUF_U32, 64),
               (A + "embedding_length", GGUF_U32, dim), (A + "block_count", GGUF_U32, n_layer),
               (A + "feed_forward_length", GGUF_U32, n_ff), (A + "attention.head_count", GGUF_U32, H),
               (A + "attention.head_count_kv", GGUF_U32, 1 if mla else H),
               (A + "rope.freq_base", GGUF_F32, rope_base), (A + "attention.layer_norm_rms_epsilon", GGUF_F32, eps),
               (A + "expert_used_count", GGUF_U32, n_expert_used), (A + "expert_count", GGUF_U32, n_expert),
               (A + "leading_dense_block_count", GGUF_U32, n_dense), (A + "attention.kv_lora_rank", GGUF_U32, kvl),
               (A + "attention.key_length", GGUF_U32, kvl + rope if mla else qhd),
               (A + "attention.value_length", GGUF_U32, kvl if mla else vd),
               (A + "expert_feed_forward_length", GGUF_U32, F), (A + "expert_shared_count", GGUF_U32, n_shared),
               (A + "expert_weights_scale", GGUF_F32, routed_scale), (A + "expert_weights_norm", GGUF_BOOL, norm_topk),
               (A + "expert_gating_func", GGUF_U32, 1 if scoring == "softmax" else 2),
               (A + "rope.dimension_count", GGUF_U32, rope)]
        if mla:
            kvs += [(A + "attention.key_length_mla", GGUF_U32, qhd), (A + "attention.value_length_mla", GGUF_U32, vd)]
        if q_lora:
            kvs += [(A + "attention.q_lora_rank", GGUF_U32, q_lora)]
        if n_group > 1:
            kvs += [(A + "expert_group_count", GGUF_U32, n_group), (A + "expert_group_used_count", GGUF_U32, topk_group)]
        if rope_scaling is not None:
            kvs += [(A + "rope.scaling.type", GGUF_STR, "yarn"), (A + "rope.scaling.factor", GGUF_F32, rope_scaling["factor"]),
                    (A + "rope.scaling.original_context_length", GGUF_U32, rope_scaling["original_max_position_embeddings"]),
                    (A + "rope.scaling.yarn_log_multiplier", GGUF_F32, 0.1 * rope_scaling["mscale_all_dim"])]
        T = [("token_embd.weight", W["token_embd"]), ("output_norm.weight", W["output_norm"]),
             ("output.weight", W["output"])]
        for l in range(n_layer):
            p = "blk.%d." % l
            T += [(p + "attn_norm.weight", W[p + "attn_norm"])]
            if q_lora:
                T += [(p + "attn_q_a.weight", W[p + "q_a"]), (p + "attn_q_a_norm.weight", W[p + "q_a_norm"]),
                      (p + "attn_q_b.weight", W[p + "q_b"])]
            else:
                T += [(p + "attn_q.weight", W[p + "q"])]
            T += [(p + "attn_kv_a_mqa.weight", W[p + "kv_a"]), (p + "attn_kv_a_norm.weight", W[p + "kv_a_norm"])]
            if mla:   # kv_b (H*(nope+vd), kvl) -> k_b (H, kvl, nope) (per head transposed), v_b (H, vd, kvl)
                kvb = W[p + "kv_b"].reshape(H, nope + vd, kvl)
                T += [(p + "attn_k_b.weight", kvb[:, :nope, :].transpose(0, 2, 1)),
                      (p + "attn_v_b.weight", kvb[:, nope:, :])]
            else:
                T += [(p + "attn_kv_b.weight", W[p + "kv_b"])]
            T += [(p + "attn_output.weight", W[p + "o"]), (p + "ffn_norm.weight", W[p + "ffn_norm"])]
            if l < n_dense:
                T += [(p + "ffn_gate.weight", W[p + "ffn_gate"]), (p + "ffn_up.weight", W[p + "ffn_up"]),
                      (p + "ffn_down.weight", W[p + "ffn_down"])]
                continue
            T += [(p + "ffn_gate_inp.weight", W[p + "gate"])]
            if bias:
                T += [(p + "exp_probs_b.bias", W[p + "bias"])]
            T += [(p + "ffn_gate_exps.weight", W[p + "exp_gate"]), (p + "ffn_up_exps.weight", W[p + "exp_up"]),
                  (p + "ffn_down_exps.weight", W[p + "exp_down"])]
            if n_shared:
                T += [(p + "ffn_gate_shexp.weight", W[p + "sh_gate"]), (p + "ffn_up_shexp.weight", W[p + "sh_up"]),
                      (p + "ffn_down_shexp.weight", W[p + "sh_down"])]
        fname = name if layout == "mla" else name + "_" + layout
        gguf_write(os.path.join(OUT, fname + ".gguf"), kvs, T)
    base = os.path.join(OUT, name)
    np.save(base + ".tokens.npy", tokens.astype(np.float32))
    np.save(base + ".logits.npy", logits.astype(np.float32))
    np.save(base + ".topk.npy", sels.astype(np.float32))
    print("%-6s tokens %d  logits |max| %.3f  layouts %s" % (name, n_tokens, np.abs(logits).max(), ",".join(layouts)))


def write_safetensors(path, tensors):
    """tensors: list of (name, float64 array) stored as F32 (safetensors spec: u64 header length, JSON header)."""
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, a in tensors:
        b = np.ascontiguousarray(a, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((-len(h)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def hf_fixture(v2=False):
    """A tiny DeepSeek-V3 checkpoint in the HF layout (modeling_deepseek.py parameter names); with v2 a
    DeepSeek-V2 one (softmax greedy gate, no selection bias, V2-Lite's YaRN) with rms_norm_eps 0.05."""
    D, H, ql, kvl, nope, rope, vd, V, F, N, nff = 16, 2, 12, 8, 4, 4, 6, 32, 8, 4, 24
    name = "hf_v2" if v2 else "hf_v3"
    ms = 0.707 if v2 else 1.0
    rs = dict(type="yarn", factor=40.0, original_max_position_embeddings=4096, beta_fast=32, beta_slow=1,
              mscale=ms, mscale_all_dim=ms)
    hf = {"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "vocab_size": V,
          "hidden_size": D, "intermediate_size": nff, "moe_intermediate_size": F, "num_hidden_layers": 2,
          "num_attention_heads": H, "num_key_value_heads": H, "n_shared_experts": 1, "n_routed_experts": N,
          "routed_scaling_factor": 2.5, "kv_lora_rank": kvl, "q_lora_rank": ql, "qk_rope_head_dim": rope,
          "v_head_dim": vd, "qk_nope_head_dim": nope, "topk_method": "noaux_tc", "n_group": 2, "topk_group": 1,
          "num_experts_per_tok": 2, "first_k_dense_replace": 1, "norm_topk_prob": True, "scoring_func": "sigmoid",
          "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "rope_scaling": rs, "max_position_embeddings": 64,
          "tie_word_embeddings": False, "hidden_act": "silu", "torch_dtype": "float32"}
    cfg = dict(dim=D, n_head=H, q_lora=ql, kvl=kvl, nope=nope, rope=rope, vd=vd, n_layer=2, n_dense=1,
               n_expert=N, n_expert_used=2, n_shared=1, eps=1e-6, scoring="sigmoid", norm_topk=True,
               scale_after_norm=True, routed_scale=2.5, n_group=2, topk_group=1, rope_scaling=rs, rope_base=10000.0)
    if v2:
        for k in ("n_group", "topk_group", "scoring_func"):
            del hf[k]
        hf.update(architectures=["DeepseekV2ForCausalLM"], model_type="deepseek_v2", topk_method="greedy",
                  routed_scaling_factor=1.5, norm_topk_prob=False, rms_norm_eps=0.05)
        cfg.update(eps=0.05, scoring="softmax", norm_topk=False, scale_after_norm=False, routed_scale=1.5,
                   n_group=1, topk_group=1)
    rng = np.random.default_rng(17 if v2 else 13)

    def rnd(*shape, sd=1.0, mean=0.0):
        return (mean + rng.standard_normal(shape) * sd).astype(np.float32).astype(np.float64)

    W, T = {}, []

    def add(key, hname, a):
        W[key] = a
        T.append((hname, a))

    add("token_embd", "model.embed_tokens.weight", rnd(V, D))
    for l in range(2):
        p, P = "blk.%d." % l, "model.layers.%d." % l
        add(p + "attn_norm", P + "input_layernorm.weight", rnd(D, sd=0.1, mean=1.0))
        add(p + "q_a", P + "self_attn.q_a_proj.weight", rnd(ql, D, sd=D ** -0.5))
        add(p + "q_a_norm", P + "self_attn.q_a_layernorm.weight", rnd(ql, sd=0.1, mean=1.0))
        add(p + "q_b", P + "self_attn.q_b_proj.weight", rnd(H * (nope + rope), ql, sd=ql ** -0.5))
        add(p + "kv_a", P + "self_attn.kv_a_proj_with_mqa.weight", rnd(kvl + rope, D, sd=D ** -0.5))
        add(p + "kv_a_norm", P + "self_attn.kv_a_layernorm.weight", rnd(kvl, sd=0.1, mean=1.0))
        add(p + "kv_b", P + "self_attn.kv_b_proj.weight", rnd(H * (nope + vd), kvl, sd=kvl ** -0.5))
        add(p + "o", P + "self_attn.o_proj.weight", rnd(D, H * vd, sd=(H * vd) ** -0.5))
        add(p + "ffn_norm", P + "post_attention_layernorm.weight", rnd(D, sd=0.1, mean=1.0))
        if l == 0:
            add(p + "ffn_gate", P + "mlp.gate_proj.weight", rnd(nff, D, sd=D ** -0.5))
            add(p + "ffn_up", P + "mlp.up_proj.weight", rnd(nff, D, sd=D ** -0.5))
            add(p + "ffn_down", P + "mlp.down_proj.weight", rnd(D, nff, sd=nff ** -0.5))
            continue
        add(p + "gate", P + "mlp.gate.weight", rnd(N, D, sd=2 * D ** -0.5))
        if not v2:
            add(p + "bias", P + "mlp.gate.e_score_correction_bias", rnd(N, sd=0.05))
        W[p + "exp_gate"], W[p + "exp_up"], W[p + "exp_down"] = rnd(N, F, D, sd=D ** -0.5), rnd(N, F, D, sd=D ** -0.5), rnd(N, D, F, sd=F ** -0.5)
        for e in range(N):
            T += [(P + "mlp.experts.%d.gate_proj.weight" % e, W[p + "exp_gate"][e]),
                  (P + "mlp.experts.%d.up_proj.weight" % e, W[p + "exp_up"][e]),
                  (P + "mlp.experts.%d.down_proj.weight" % e, W[p + "exp_down"][e])]
        add(p + "sh_gate", P + "mlp.shared_experts.gate_proj.weight", rnd(F, D, sd=D ** -0.5))
        add(p + "sh_up", P + "mlp.shared_experts.up_proj.weight", rnd(F, D, sd=D ** -0.5))
        add(p + "sh_down", P + "mlp.shared_experts.down_proj.weight", rnd(D, F, sd=F ** -0.5))
    add("output_norm", "model.norm.weight", rnd(D, sd=0.1, mean=1.0))
    add("output", "lm_head.weight", rnd(V, D, sd=D ** -0.5))
    tokens = rng.integers(0, V, 10)
    logits, _ = forward(cfg, W, tokens)
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(hf, f, indent=2)
    write_safetensors(os.path.join(d, "model.safetensors"), T)
    np.save(os.path.join(OUT, name + ".tokens.npy"), tokens.astype(np.float32))
    np.save(os.path.join(OUT, name + ".logits.npy"), logits.astype(np.float32))
    print("%s  tokens %d  logits |max| %.3f  (HF checkpoint)" % (name, len(tokens), np.abs(logits).max()))


def main():
    os.makedirs(OUT, exist_ok=True)
    # V2 style (DeepSeek-V2-Lite shape: no q LoRA): softmax gates, no renormalisation, x scale,
    # YaRN with mscale == mscale_all_dim = 0.707; also written in the legacy attn_kv_b layout
    yarn2 = dict(factor=40.0, original_max_position_embeddings=4096, beta_fast=32, beta_slow=1,
                 mscale=0.707, mscale_all_dim=0.707)
    make("v2", 11, q_lora=0, scoring="softmax", norm_topk=False, routed_scale=1.5, n_shared=2,
         rope_scaling=yarn2, layouts=("mla", "legacy"))
    # V3 style: q LoRA, sigmoid scores, selection bias, 4 groups of 2 with 2 groups kept, top-3,
    # renormalised then x 2.5, one shared expert, YaRN with mscale == mscale_all_dim = 1
    yarn3 = dict(factor=40.0, original_max_position_embeddings=4096, beta_fast=32, beta_slow=1,
                 mscale=1.0, mscale_all_dim=1.0)
    make("v3", 12, q_lora=24, kvl=16, nope=8, rope=8, vd=12, scoring="sigmoid", norm_topk=True,
         scale_after_norm=True, routed_scale=2.5, n_group=4, topk_group=2, n_expert_used=3, bias=True,
         n_shared=1, rope_scaling=yarn3)
    hf_fixture()
    hf_fixture(v2=True)


if __name__ == "__main__":
    sys.exit(main())

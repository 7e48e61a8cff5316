#!/usr/bin/python3
"""Writes the GGUF fixtures in tests/data/gguf/ from the published format (ggml/docs/gguf.md),
independently of vmoer's writer: a tiny valid MoE-layout model and hostile variants of it.

Layout (little-endian): "GGUF", u32 version, u64 n_tensors, u64 n_kv, n_kv x (string key, u32 type,
value), n_tensors x (string name, u32 n_dims, n_dims x u64 ne, u32 ggml type, u64 offset), zero padding
to general.alignment (default 32), then the tensor data; ggml pads every tensor to the alignment.
Strings are u64 length + bytes; arrays are u32 element type + u64 count + elements.

Run once from the repository root: /usr/bin/python3 tests/reference/make_gguf_fixtures.py
"""
import os
import struct

OUT = os.path.join(os.path.dirname(__file__), "..", "data", "gguf")

U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<B",
       U64: "<Q", I64: "<q", F64: "<d"}
# ggml types used here: id -> (block size, bytes per block)
GGML = {0: (1, 4), 1: (1, 2), 8: (32, 34)}


def gstr(s):
    b = s.encode("utf-8") if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def kv(key, typ, val, arr_type=None):
    out = gstr(key) + struct.pack("<I", typ)
    if typ == ARR:
        out += struct.pack("<IQ", arr_type, len(val))
        for v in val:
            out += gstr(v) if arr_type == STR else struct.pack(FMT[arr_type], v)
    elif typ == STR:
        out += gstr(val)
    else:
        out += struct.pack(FMT[typ], val)
    return out


def pad(n, a):
    return (a - n % a) % a


def nbytes(typ, ne):
    blk, size = GGML[typ]
    n = 1
    for d in ne:
        n *= d
    return n // blk * size


def tensor_data(typ, ne, seed):
    n = nbytes(typ, ne)
    return bytes((seed * 31 + i * 7) & 0xFF for i in range(n))


def build(kvs, tensors, version=3, align=32, n_kv=None, n_tensors=None, offsets=None, raw_infos=None):
    """tensors: list of (name, ggml type, ne list); offsets follow ggml's packing unless given."""
    head = b"GGUF" + struct.pack("<IQQ", version, len(tensors) if n_tensors is None else n_tensors,
                                 len(kvs) if n_kv is None else n_kv)
    body = b"".join(kvs)
    infos, data, off = b"", b"", 0
    for i, (name, typ, ne) in enumerate(tensors):
        o = off if offsets is None else offsets[i]
        infos += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<q", d) for d in ne)
        infos += struct.pack("<IQ", typ, o)
        blob = tensor_data(typ, ne, i)
        data += blob + b"\0" * pad(len(blob), align)
        off += len(blob) + pad(len(blob), align)
    if raw_infos is not None:
        infos = raw_infos
    meta = head + body + infos
    return meta + b"\0" * pad(len(meta), align) + data


def tiny_moe():
    """2-block llama-style model, block 1 MoE with 4 experts (stacked), vocab of 8 tokens."""
    toks = ["<unk>", "<s>", "</s>", "\u2581a", "\u2581b", "c", "d", "e"]
    kvs = [
        kv("general.architecture", STR, "llama"),
        kv("general.name", STR, "tiny-moe"),
        kv("llama.context_length", U32, 64),
        kv("llama.embedding_length", U32, 32),
        kv("llama.block_count", U32, 2),
        kv("llama.feed_forward_length", U32, 64),
        kv("llama.attention.head_count", U32, 4),
        kv("llama.attention.head_count_kv", U32, 2),
        kv("llama.rope.freq_base", F32, 10000.0),
        kv("llama.attention.layer_norm_rms_epsilon", F32, 1e-5),
        kv("llama.expert_count", U32, 4),
        kv("llama.expert_used_count", U32, 2),
        kv("tokenizer.ggml.model", STR, "llama"),
        kv("tokenizer.ggml.tokens", ARR, toks, STR),
        kv("tokenizer.ggml.scores", ARR, [0.0, 0.0, 0.0, -1.0, -2.0, -3.0, -4.0, -5.0], F32),
        kv("tokenizer.ggml.token_type", ARR, [2, 3, 3, 1, 1, 1, 1, 1], I32),
        kv("tokenizer.ggml.bos_token_id", U32, 1),
        kv("tokenizer.ggml.eos_token_id", U32, 2),
        kv("tokenizer.ggml.add_bos_token", BOOL, 1),
        kv("tokenizer.chat_template", STR, "{{ messages }}"),
    ]
    E, F, V = 32, 64, 8
    tensors = [
        ("token_embd.weight", 0, [E, V]),
        ("blk.0.attn_norm.weight", 0, [E]),
        ("blk.0.ffn_gate.weight", 1, [E, F]),
        ("blk.0.ffn_down.weight", 8, [F, E]),
        ("blk.1.attn_norm.weight", 0, [E]),
        ("blk.1.ffn_gate_inp.weight", 0, [E, 4]),
        ("blk.1.ffn_gate_exps.weight", 8, [E, F, 4]),
        ("blk.1.ffn_down_exps.weight", 1, [F, E, 4]),
        ("output_norm.weight", 0, [E]),
    ]
    return kvs, tensors


def main():
    os.makedirs(OUT, exist_ok=True)
    kvs, tensors = tiny_moe()
    files = {"tiny_moe.gguf": build(kvs, tensors)}
    small_kvs = [kv("general.architecture", STR, "llama"), kv("llama.block_count", U32, 1)]
    small_t = [("a", 0, [8, 2]), ("b", 1, [16])]
    good = build(small_kvs, small_t)
    files["bad_magic.gguf"] = b"GGUX" + good[4:]
    files["bad_version.gguf"] = good[:4] + struct.pack("<I", 4) + good[8:]
    files["truncated.gguf"] = good[:40]
    files["huge_n_kv.gguf"] = build(small_kvs, small_t, n_kv=1 << 62)
    files["huge_n_tensors.gguf"] = build(small_kvs, small_t, n_tensors=(1 << 64) - 1)
    files["huge_array.gguf"] = build([gstr("x") + struct.pack("<IIQ", ARR, U32, 1 << 61)], [])
    files["huge_string.gguf"] = build([gstr("x") + struct.pack("<IQ", STR, 1 << 63)], [])
    files["dup_key.gguf"] = build(small_kvs + [kv("llama.block_count", U32, 2)], small_t)
    files["dup_tensor.gguf"] = build(small_kvs, [("a", 0, [8, 2]), ("a", 1, [16])])
    files["long_name.gguf"] = build(small_kvs, [("n" * 64, 0, [8, 2]), ("b", 1, [16])])
    files["ndims5.gguf"] = build(small_kvs, [("a", 0, [8, 2, 1, 1, 1]), ("b", 1, [16])])
    files["ndims0.gguf"] = build(small_kvs, [("a", 0, []), ("b", 1, [16])])
    files["negative_ne.gguf"] = build(small_kvs, [("a", 0, [8, -2]), ("b", 1, [16])], offsets=[0, 64])
    files["unknown_type.gguf"] = build(small_kvs, [("a", 0, [8, 2]), ("b", 1, [16])],
                                       raw_infos=gstr("a") + struct.pack("<IqqIQ", 2, 8, 2, 41, 0))
    files["unknown_value_type.gguf"] = build([gstr("x") + struct.pack("<II", 13, 0)], small_t)
    files["nested_array.gguf"] = build([gstr("x") + struct.pack("<IIQ", ARR, ARR, 1)], small_t)
    files["not_block_multiple.gguf"] = build(small_kvs, [("q", 8, [16, 2])],
                                             raw_infos=gstr("q") + struct.pack("<IqqIQ", 2, 16, 2, 8, 0))
    files["misaligned.gguf"] = build(small_kvs, small_t, offsets=[0, 72])
    files["out_of_range.gguf"] = build(small_kvs, small_t, offsets=[0, 1 << 40])
    files["overlap.gguf"] = build(small_kvs, small_t, offsets=[0, 32])
    files["bad_alignment.gguf"] = build(small_kvs + [kv("general.alignment", U32, 48)], small_t)
    files["bool_2.gguf"] = build(small_kvs + [kv("flag", BOOL, 2)], small_t)
    for name, blob in files.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(blob)
    print("wrote %d files to %s" % (len(files), OUT))


if __name__ == "__main__":
    main()

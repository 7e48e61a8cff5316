#!/bin/sh
# Re-creates the seed corpora fuzz/corpus/<target>/ from the repository's test fixtures and a few
# records of the shared data (../shared, or $VMOER_SHARED). Run from the repository root; the
# result is committed, so the fuzzers need neither this script nor ../shared.
set -e
SHARED=${VMOER_SHARED:-../shared}
C=fuzz/corpus
rm -rf "$C"; mkdir -p "$C/gguf" "$C/dataset" "$C/tokenizer" "$C/llama2c" "$C/npy" "$C/metrics" "$C/quant" \
         "$C/safetensors" "$C/convert_hf" "$C/bpe" "$C/hf_json" "$C/chat" "$C/checkpoint"

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

# ---- round 2: safetensors, convert_hf, bpe, hf_json, chat (FUZZ_SEP = "\n=====\n", see fuzz_common.h)

# bpe: 1 flag byte (see fuzz_bpe.c) + each test input of the gpt-2 and deepseek-llm vectors
for v in gpt-2 deepseek-llm; do
    flag=0; [ "$v" = deepseek-llm ] && flag=8
    awk -v dir="$C/bpe" -v v="$v" -v flag="$flag" '
        function out() { f = sprintf("%s/%s_%03d", dir, v, n++); printf "%c%s", flag, cur > f; close(f); cur = ""; first = 1 }
        BEGIN { first = 1 }
        $0 == "__ggml_vocab_test__" { out(); next }
        { cur = first ? $0 : cur "\n" $0; first = 0 }' "$SHARED/tokenizers/ggml-vocab-$v.gguf.inp"
done
printf '\003<|endoftext|>Hello<|endoftext|> x' >"$C/bpe/special_parse_gpt2"
printf '\013<\xef\xbd\x9cbegin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>Hi 123456 \xe4\xbd\xa0\xe5\xa5\xbd' >"$C/bpe/special_parse_deepseek"
printf '\006\xff\xfe\xc3\x28 \xf0\x9f\x98\x80 x' >"$C/bpe/bytes"

# chat: flags byte + NUL-separated template, [bos, eos, system,] role, content, ... (see fuzz_chat.c)
/usr/bin/python3 - "$C/chat" <<'PY'
import sys
out = sys.argv[1]
tmpls = {
    'chatml': "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
    'qwen2_default_system': "{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}",
    'qwen3': "{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}<|im_start|>{{ '<think>' }}{{ '</think>' }}",
    'llama2': "{% if messages[0]['role'] == 'system' %}{% set system_message = '<<SYS>>\\n' + messages[0]['content'] | trim + '\\n<</SYS>>\\n\\n' %}{% endif %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}",
    'mistral_v1': "{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content'] %}{{ ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}",
    'mistral_v3': "{%- if loop.last and system_message is defined %}{{- '[INST] ' + system_message + '\\n\\n' + message['content'] + '[/INST]' }}",
    'mistral_legacy': "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% else %}{{ message['content'] + eos_token}}{% endif %}{% endfor %}",
    'granite': "{%- for message in messages %}{{- '<|start_of_role|>' + message['role'] + '<|end_of_role|>' + message['content'] + '<|end_of_text|>\\n' }}{%- endfor %}",
    'deepseek': "{% for message in messages %}{% if message['role'] == 'user' %}{{ 'User: ' + message['content'] + '\\n\\n' }}{% elif message['role'] == 'assistant' %}{{ 'Assistant: ' + message['content'] + eos_token }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}",
    'deepseek3': "{{'<\uff5cUser\uff5c>' + message['content']}}{{'<\uff5cAssistant\uff5c>' + message['content'] + '<\uff5cend\u2581of\u2581sentence\uff5c>'}}",
    'tulu': "{% for message in messages %}{% if message['role'] == 'system' %}{{ '<|system|>\\n' + message['content'] + '\\n' }}{% elif message['role'] == 'user' %}{{ '<|user|>\\n' + message['content'] + '\\n' }}{% else %}{{ '<|assistant|>\\n'  + message['content'] + eos_token }}{% endif %}{% endfor %}",
    'zephyr': "{% for message in messages %}{% if message['role'] == 'user' %}{{ '<|user|>\\n' + message['content'] + eos_token }}{% endif %}<|assistant|>{% endfor %}",
    'phi4': "<|im_start|>user<|im_sep|>",
    'name': "mistral",
}
convo = ['system', 'Be brief.', 'user', 'What is 2+2?', 'assistant', '<think>\nadd\n</think>\n\n4', 'user', 'And 3+3?']
for name, t in tmpls.items():
    b = bytes([0]) + t.encode() + b'\0' + b'\0'.join(s.encode() for s in convo)
    open('%s/%s' % (out, name), 'wb').write(b)
# generation prompt, custom bos/eos/default system, odd roles, a missing last content
open('%s/gen_custom' % out, 'wb').write(bytes([3]) + b'<|im_start|>\0<s>\0</s>\0You are kind.\0user\0hi\0assistant\0hello\0user\0ok')
open('%s/odd_roles' % out, 'wb').write(bytes([1]) + b'[INST]\0tool\0x\0user\0\0user\0a\nb\0assistant')
PY

# hf_json: small real-shaped tokenizer.json files (first 300 ids of the real vocabularies, their
# merges, renumbered added tokens, the real pre_tokenizer/decoder), a tokenizer_config.json, a text
/usr/bin/python3 - "$C/hf_json" "$SHARED/tokenizers" <<'PY'
import json, sys
out, tok = sys.argv[1], sys.argv[2]
SEP = b'\n=====\n'
texts = {'qwen3': 'Hello world! <|im_start|>user\n123 \u4f60\u597d', 'deepseek-v3': 'Hi 12345 \u4f60\u597d <\uff5cbegin\u2581of\u2581sentence\uff5c>',
         'olmo-gpt-neox-dolma-v1_5': "It's 3.14 <|padding|>  x"}
for name, text in texts.items():
    j = json.load(open('%s/%s.tokenizer.json' % (tok, name)))
    m = j['model']
    keep = {k: v for k, v in m['vocab'].items() if v < 300}
    merges = []
    for mg in m['merges']:
        a, b = mg if isinstance(mg, list) else mg.split(' ', 1)
        if a in keep and b in keep and a + b in keep: merges.append(mg)
        if len(merges) >= 150: break
    m['vocab'], m['merges'] = keep, merges
    added = [a for a in j['added_tokens'] if a['id'] >= 300][:6]
    for i, a in enumerate(added): a['id'] = 300 + i
    j['added_tokens'] = [a for a in j['added_tokens'] if a['id'] < 300][:6] + added
    body = json.dumps(j, ensure_ascii=False).encode()
    specials = [a['content'] for a in j['added_tokens']]
    cfg = {'add_bos_token': name == 'deepseek-v3', 'bos_token': {'content': specials[0]}, 'eos_token': specials[-1],
           'pad_token': None, 'unk_token': None}
    open('%s/%s' % (out, name), 'wb').write(body)
    open('%s/%s_cfg_text' % (out, name), 'wb').write(body + SEP + json.dumps(cfg).encode() + SEP + text.encode())
# merges as [a, b] pairs, ids with holes, a vocabulary without a pre_tokenizer match
small = {'model': {'type': 'BPE', 'vocab': {'a': 0, 'b': 1, 'ab': 2, '\u0120': 5}, 'merges': [['a', 'b']], 'ignore_merges': True},
         'pre_tokenizer': {'type': 'ByteLevel', 'add_prefix_space': False, 'use_regex': True},
         'decoder': {'type': 'ByteLevel'}, 'added_tokens': [{'id': 7, 'content': '<|x|>', 'special': False}]}
open('%s/small_pairs' % out, 'wb').write(json.dumps(small).encode() + SEP + SEP + b'ab abab <|x|>')
small['pre_tokenizer'] = {'type': 'Sequence', 'pretokenizers': [{'type': 'Digits', 'individual_digits': True}, {'type': 'ByteLevel'}]}
open('%s/small_starcoder' % out, 'wb').write(json.dumps(small).encode())
PY

# safetensors: 1 mode byte (0 memory, 1 file, 2 sharded folder; see fuzz_safetensors.c) + files
# convert_hf: 1 type byte + config.json, model.safetensors[, tokenizer.json] (see fuzz_convert_hf.c)
/usr/bin/python3 - "$C" <<'PY'
import json, struct, sys
import numpy as np
C = sys.argv[1]
SEP = b'\n=====\n'

def st(tensors, meta=None):
    # tensors: name -> numpy array (dtype kept) or (dtype string, shape, raw bytes)
    hdr, data = {}, b''
    if meta is not None: hdr['__metadata__'] = meta
    for name, a in tensors.items():
        if isinstance(a, tuple): dt, shape, raw = a
        else:
            dt = {'float32': 'F32', 'float16': 'F16', 'int64': 'I64', 'int32': 'I32', 'uint8': 'U8', 'bool': 'BOOL', 'float64': 'F64'}[str(a.dtype)]
            shape, raw = list(a.shape), a.astype(a.dtype.newbyteorder('<')).tobytes()
        hdr[name] = {'dtype': dt, 'shape': shape, 'data_offsets': [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(hdr, separators=(',', ':')).encode()
    h += b' ' * (-len(h) % 8)
    return struct.pack('<Q', len(h)) + h + data

def bf16(a):
    return ('BF16', list(a.shape), (np.asarray(a, '<f4').view('<u4') >> 16).astype('<u2').tobytes())

rng = np.random.default_rng(0)
r = lambda *s: (rng.standard_normal(s) * 0.1).astype('<f4')
w = lambda name, b: open('%s/%s' % (C, name), 'wb').write(b)

mixed = st({'a.f32': r(2, 3), 'b.f16': r(4).astype('<f2'), 'c.bf16': bf16(r(2, 2)), 'd.i64': np.arange(3, dtype='<i8'),
            'e.u8': np.arange(5, dtype='u1'), 'f.bool': np.array([True, False]), 'g.scalar': np.array(1.5, dtype='<f4'),
            'h.empty': np.zeros((0, 4), dtype='<f4'), 'i.f64': np.ones(2, dtype='<f8'),
            'j.f8': ('F8_E4M3', [2], b'\x38\x40')}, meta={'format': 'pt'})
w('safetensors/mixed_mem', b'\0' + mixed)
w('safetensors/mixed_file', b'\1' + mixed)
w('safetensors/empty_mem', b'\0' + st({}))
w('safetensors/empty_file', b'\1')
s1, s2 = st({'x.weight': r(2, 2), 'y.weight': r(3)}), st({'z.weight': r(1, 4).astype('<f2')})
idx = json.dumps({'metadata': {'total_size': 0}, 'weight_map': {'x.weight': 's1.safetensors', 'y.weight': 's1.safetensors',
                  'z.weight': 's2.safetensors'}}).encode()
w('safetensors/sharded', b'\2' + idx + SEP + s1 + SEP + s2)

# tiny checkpoints of every architecture convert-hf maps (shapes as src/convert/hf.h describes)
V, D, F, L, H, KV, E = 16, 4, 8, 1, 2, 1, 2
hd = D // H
base = {'vocab_size': V, 'hidden_size': D, 'intermediate_size': F, 'num_hidden_layers': L, 'num_attention_heads': H,
        'num_key_value_heads': KV, 'max_position_embeddings': 16, 'rms_norm_eps': 1e-5, 'rope_theta': 10000.0}
def attn(p, t, bias=False, qn=None):
    t[p + 'input_layernorm.weight'] = r(D); t[p + 'post_attention_layernorm.weight'] = r(D)
    t[p + 'self_attn.q_proj.weight'] = r(H * hd, D); t[p + 'self_attn.k_proj.weight'] = r(KV * hd, D)
    t[p + 'self_attn.v_proj.weight'] = r(KV * hd, D); t[p + 'self_attn.o_proj.weight'] = r(D, H * hd)
    if bias:
        t[p + 'self_attn.q_proj.bias'] = r(H * hd); t[p + 'self_attn.k_proj.bias'] = r(KV * hd); t[p + 'self_attn.v_proj.bias'] = r(KV * hd)
    if qn: t[p + 'self_attn.q_norm.weight'] = r(qn[0]); t[p + 'self_attn.k_norm.weight'] = r(qn[1])
def mlp(p, t, f):
    t[p + 'gate_proj.weight'] = r(f, D); t[p + 'up_proj.weight'] = r(f, D); t[p + 'down_proj.weight'] = r(D, f)
def experts(p, t, f, names=('gate_proj', 'up_proj', 'down_proj')):
    for e in range(E):
        t['%s.experts.%d.%s.weight' % (p, e, names[0])] = r(f, D); t['%s.experts.%d.%s.weight' % (p, e, names[1])] = r(f, D)
        t['%s.experts.%d.%s.weight' % (p, e, names[2])] = r(D, f)
def top(t, tie=False):
    t['model.embed_tokens.weight'] = r(V, D); t['model.norm.weight'] = r(D)
    if not tie: t['lm_head.weight'] = r(V, D)

models = {}
t = {}; top(t); attn('model.layers.0.', t); mlp('model.layers.0.mlp.', t, F)
models['llama'] = (dict(base, architectures=['LlamaForCausalLM']), t)
t = {}; top(t); attn('model.layers.0.', t); t['model.layers.0.block_sparse_moe.gate.weight'] = r(E, D)
experts('model.layers.0.block_sparse_moe', t, F, ('w1', 'w3', 'w2'))
models['mixtral'] = (dict(base, architectures=['MixtralForCausalLM'], num_local_experts=E, num_experts_per_tok=1), t)
t = {}; top(t, tie=True); attn('model.layers.0.', t); t['model.layers.0.mlp.gate.weight'] = r(E, D)
t['model.layers.0.mlp.experts.gate_up_proj'] = r(E, 2 * F, D); t['model.layers.0.mlp.experts.down_proj'] = r(E, D, F)
models['mixtral_fused_tied'] = (dict(base, architectures=['MixtralForCausalLM'], num_local_experts=E, num_experts_per_tok=2, tie_word_embeddings=True), t)
t = {}; top(t); attn('model.layers.0.', t, bias=True); t['model.layers.0.mlp.gate.weight'] = r(E, D)
experts('model.layers.0.mlp', t, 4); mlp('model.layers.0.mlp.shared_expert.', t, F); t['model.layers.0.mlp.shared_expert_gate.weight'] = r(1, D)
models['qwen2moe'] = (dict(base, architectures=['Qwen2MoeForCausalLM'], num_experts=E, num_experts_per_tok=1, moe_intermediate_size=4,
                           shared_expert_intermediate_size=F, norm_topk_prob=False), t)
t = {}; top(t); attn('model.layers.0.', t, qn=(hd, hd)); t['model.layers.0.mlp.gate.weight'] = r(E, D); experts('model.layers.0.mlp', t, 4)
models['qwen3moe'] = (dict(base, architectures=['Qwen3MoeForCausalLM'], num_experts=E, num_experts_per_tok=1, moe_intermediate_size=4,
                           head_dim=hd, norm_topk_prob=True, rope_scaling={'rope_type': 'linear', 'factor': 2.0}), t)
t = {}; top(t); attn('model.layers.0.', t, qn=(H * hd, KV * hd)); t['model.layers.0.mlp.gate.weight'] = r(E, D); experts('model.layers.0.mlp', t, F)
models['olmoe'] = (dict(base, architectures=['OlmoeForCausalLM'], num_experts=E, num_experts_per_tok=1), t)
t = {}; top(t); attn('model.layers.0.', t); P = 'model.layers.0.block_sparse_moe.'
t[P + 'router.layer.weight'] = r(E, D); t[P + 'input_linear.weight'] = r(E, 2 * F, D); t[P + 'output_linear.weight'] = r(E, D, F)
t['model.layers.0.shared_mlp.input_linear.weight'] = r(2 * 4, D); t['model.layers.0.shared_mlp.output_linear.weight'] = r(D, 4)
models['granitemoe'] = (dict(base, architectures=['GraniteMoeSharedForCausalLM'], num_local_experts=E, num_experts_per_tok=1,
                             shared_intermediate_size=4, attention_multiplier=0.5, embedding_multiplier=2.0, residual_multiplier=0.9, logits_scaling=4.0), t)
t = {}; top(t); attn('model.layers.0.', t); mlp('model.layers.0.mlp.', t, F); attn('model.layers.1.', t)
t['model.layers.1.mlp.gate.weight'] = r(E, D); experts('model.layers.1.mlp', t, 4); mlp('model.layers.1.mlp.shared_experts.', t, 4)
models['deepseek'] = (dict(base, architectures=['DeepseekForCausalLM'], num_hidden_layers=2, n_routed_experts=E, num_experts_per_tok=1,
                           moe_intermediate_size=4, n_shared_experts=1, first_k_dense_replace=1), t)
nope, rope, vd, kvl = 2, 2, 2, 4
t = {}; top(t); p = 'model.layers.0.'
t[p + 'input_layernorm.weight'] = r(D); t[p + 'post_attention_layernorm.weight'] = r(D)
t[p + 'self_attn.q_proj.weight'] = r(H * (nope + rope), D); t[p + 'self_attn.kv_a_proj_with_mqa.weight'] = r(kvl + rope, D)
t[p + 'self_attn.kv_a_layernorm.weight'] = r(kvl); t[p + 'self_attn.o_proj.weight'] = r(D, H * vd)
t[p + 'self_attn.kv_b_proj.weight'] = r(H * (nope + vd), kvl)
t[p + 'mlp.gate.weight'] = r(E, D); t[p + 'mlp.gate.e_score_correction_bias'] = r(E); experts('model.layers.0.mlp', t, 4)
t['model.layers.1.embed_tokens.weight'] = r(V, D)   # an MTP layer past num_hidden_layers: skipped
models['deepseek2'] = (dict(base, architectures=['DeepseekV3ForCausalLM'], n_routed_experts=E, num_experts_per_tok=1, moe_intermediate_size=4,
                            q_lora_rank=None, kv_lora_rank=kvl, qk_nope_head_dim=nope, qk_rope_head_dim=rope, v_head_dim=vd,
                            scoring_func='sigmoid', n_group=1, topk_group=1, routed_scaling_factor=2.5, num_nextn_predict_layers=1,
                            rope_scaling={'type': 'yarn', 'factor': 4.0, 'mscale_all_dim': 1.0, 'original_max_position_embeddings': 8}), t)

# a 16-token byte-level BPE tokenizer.json for the tokenizer path
bytes_ = ['H', 'e', 'l', 'o', '\u0120', 'w', 'r', 'd', 'He', 'll', 'Hell', 'Hello', '\u0120w', '\u0120wo']
tj = {'model': {'type': 'BPE', 'vocab': {s: i for i, s in enumerate(bytes_)},
                'merges': ['H e', 'l l', 'He ll', 'Hell o', '\u0120 w', '\u0120w o']},
      'pre_tokenizer': {'type': 'ByteLevel', 'add_prefix_space': False, 'use_regex': True}, 'decoder': {'type': 'ByteLevel'},
      'added_tokens': [{'id': 14, 'content': '<|endoftext|>', 'special': True}]}
for i, (name, (cfg, t)) in enumerate(models.items()):
    if name in ('llama', 'qwen3moe', 'deepseek2'):   # BF16 and F16 checkpoints too
        conv = (lambda a: bf16(a)) if name != 'qwen3moe' else (lambda a: a.astype('<f2'))
        t = {k: conv(v) for k, v in t.items()}
    body = json.dumps(cfg).encode() + SEP + st(t)
    if name in ('llama', 'mixtral'): body += SEP + json.dumps(tj).encode()
    w('convert_hf/%s' % name, bytes([i % 4 | (4 if name == 'deepseek' else 0)]) + body)
PY

# ---- round 3: checkpoint (selector byte + a valid checkpoint of the fixture run, see fuzz_checkpoint.c),
# written by the test that checks them (needs `make`: ${BUILD:-build}/tests/test_checkpoint)
mkdir -p "$C/checkpoint"
"${BUILD:-build}/tests/test_checkpoint" --seeds "$C/checkpoint"

// llama.cpp's CPU speed on a GGUF, measured as vmoer bench measures itself: a prompt of n_prompt
// random token ids evaluated in one batch (only the last position's logits sampled), then n_gen
// tokens decoded one at a time (each one's logits computed and sampled greedily). Through
// node-llama-cpp's prebuilt binaries (benchmark-only, installed by scripts/llamacpp.sh).
// usage: VMOER_LLAMACPP_DIR=DIR node llamacpp_bench.mjs MODEL.gguf THREADS N_PROMPT N_GEN
// prints one JSON line: {"pp_tok_s": ..., "decode_tok_s": ..., "system": "..."}
import {join} from "node:path";
import {pathToFileURL} from "node:url";

const dir = process.env.VMOER_LLAMACPP_DIR;
const {getLlama} = await import(pathToFileURL(join(dir, "node_modules/node-llama-cpp/dist/index.js")).href);
const [model_path, threads_arg, np_arg, ng_arg] = process.argv.slice(2);
const threads = Number(threads_arg), n_prompt = Number(np_arg), n_gen = Number(ng_arg);
const llama = await getLlama({gpu: false, build: "never", logLevel: "error", maxThreads: threads});
const model = await llama.loadModel({modelPath: model_path});
const n_vocab = model.fileInfo.metadata.tokenizer.ggml.tokens.length;
const ctx = await model.createContext({contextSize: n_prompt + n_gen + 16, batchSize: n_prompt, threads});
const seq = ctx.getSequence();
let seed = 1;   // the same kind of prompt as vmoer bench: uniform random ids
const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
const tokens = Array.from({length: n_prompt}, () => Math.floor(rnd() * n_vocab));
const last = (t) => [t, {generateNext: {token: true}}];
// warm-up (maps the weights in), then the timed prompt
await seq.controlledEvaluate([...tokens.slice(0, n_prompt - 1), last(tokens[n_prompt - 1])]);
await seq.clearHistory();
let t0 = performance.now();
const res = await seq.controlledEvaluate([...tokens.slice(0, n_prompt - 1), last(tokens[n_prompt - 1])]);
const pp = n_prompt / ((performance.now() - t0) / 1000);
let next = res[res.length - 1].next.token;
t0 = performance.now();
for (let i = 0; i < n_gen; i++) {
    const r = await seq.controlledEvaluate([last(next)]);
    next = r[0].next.token;
}
const dec = n_gen / ((performance.now() - t0) / 1000);
console.log(JSON.stringify({pp_tok_s: pp, decode_tok_s: dec, system: llama.systemInfo}));
await ctx.dispose();
await model.dispose();

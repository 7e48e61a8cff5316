// llama.cpp's logits for a GGUF, through node-llama-cpp (test-only reference, like OpenBLAS for the
// kernels; scripts/llamacpp.sh installs it into a cache folder, never vendored).
// usage: VMOER_LLAMACPP_DIR=DIR node llamacpp_logits.mjs MODEL.gguf ID,ID,... OUT.txt
// Writes one line per position: the logits of every vocabulary entry, in token-id order.
import {writeFileSync} from "node:fs";
import {join} from "node:path";
import {pathToFileURL} from "node:url";

const dir = process.env.VMOER_LLAMACPP_DIR;
const {getLlama} = await import(pathToFileURL(join(dir, "node_modules/node-llama-cpp/dist/index.js")).href);
const [model_path, ids_arg, out_path] = process.argv.slice(2);
const ids = ids_arg.split(",").map(Number);
const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const model = await llama.loadModel({modelPath: model_path});
const ctx = await model.createContext({contextSize: 256, batchSize: 256, threads: 1});
const res = await ctx.getSequence().controlledEvaluate(ids.map((t) => [t, {generateNext: {logits: true}}]));
const n_vocab = model.fileInfo.metadata.tokenizer.ggml.tokens.length;
const lines = res.map((r) => {
    const row = new Array(n_vocab).fill(NaN);
    for (const [tok, v] of r.next.logits) row[tok] = v;
    return row.join(" ");
});
writeFileSync(out_path, lines.join("\n") + "\n");
await ctx.dispose();
await model.dispose();

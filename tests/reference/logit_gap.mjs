// Agreement of llama.cpp's logits with vmoer's on the same quantised file, measured against the gap
// that activation rounding alone makes. Both engines quantise activations to 8 bits per block (their
// grids differ in small ways: llama.cpp stores Q8_0 activation scales as fp16, vmoer as f32), so
// each deviates from the exact-activation logits by some e; two independent roundings of that size
// differ by about sqrt(2) e. Criterion, over all positions and vocabulary entries, with
// e = vmoer(int8 activations) - vmoer(the same weights widened to F32, exact activations):
//   rms(llama - vmoer) <= 1.5 rms(e)   (sqrt(2) and a margin)
//   max|llama - vmoer| <= 2 max|e|     (a maximum over thousands of values fluctuates more)
// Measured on the test model: rms ratios 1.06-1.20, max ratios 0.90-1.35.
// usage: node logit_gap.mjs VMOER.npy VMOER_F32ACT.npy LLAMA.txt   (exit 1 when it fails)
import {readFileSync} from "node:fs";

function npy(path) {
    const b = readFileSync(path), hl = b.readUInt16LE(8);
    return new Float32Array(b.buffer.slice(b.byteOffset + 10 + hl, b.byteOffset + b.length));
}
function gap(x, y) {
    let m = 0, s = 0;
    for (let i = 0; i < x.length; i++) { const d = Math.abs(x[i] - y[i]); m = Math.max(m, d); s += d * d; }
    return {max: m, rms: Math.sqrt(s / x.length)};
}
const [vq, vf, lt] = process.argv.slice(2);
const a = npy(vq), f = npy(vf), c = readFileSync(lt, "utf8").trim().split(/\s+/).map(Number);
if (a.length !== c.length || a.length !== f.length || c.some((v) => !Number.isFinite(v))) {
    console.log(`logit counts or values differ: vmoer ${a.length}, widened ${f.length}, llama.cpp ${c.length}`);
    process.exit(1);
}
const eng = gap(a, c), act = gap(a, f);
const ok = eng.rms <= 1.5 * act.rms && eng.max <= 2.0 * act.max;
console.log(`llama.cpp vs vmoer: rms ${eng.rms.toFixed(4)} max ${eng.max.toFixed(4)}; activation rounding: ` +
            `rms ${act.rms.toFixed(4)} max ${act.max.toFixed(4)}; ratio rms ${(eng.rms / act.rms).toFixed(2)} ` +
            `max ${(eng.max / act.max).toFixed(2)} (bounds 1.5, 2) ${ok ? "ok" : "FAILED"}`);
process.exit(ok ? 0 : 1);

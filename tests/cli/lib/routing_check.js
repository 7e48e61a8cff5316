// Routing returned by `vmoer serve` (issue 22) against `vmoer trace`, for tests/cli/serve_routing.sh.
//   node routing_check.js ids ANSWER            prints "ID,ID,.. N_PROMPT" (the routed tokens)
//   node routing_check.js trace ANSWER TRACE    checks every number bit for bit against the trace
//   node routing_check.js same A B              the routing of two answers decodes to the same bits
// ANSWER is a JSON answer or a server-sent-event stream (its chunks' rows are joined by "start").
'use strict';
const fs = require('fs');
const [mode, ...files] = process.argv.slice(2);
const check = (cond, what) => console.log(cond ? 'ok' : `FAIL: ${mode}: ${what}`);

function answers(f) {
    const text = fs.readFileSync(f, 'utf8');
    if (!text.startsWith('data: ')) return [JSON.parse(text)];
    return text.split('\n\n').filter((e) => e.startsWith('data: {')).map((e) => JSON.parse(e.slice(6)));
}

// An array field as a flat list of 32-bit patterns (uint32) plus its shape.
function decode(a, dtype) {
    if (a && typeof a === 'object' && !Array.isArray(a)) {
        const b = Buffer.from(a.data, 'base64');
        const u = new Uint32Array(b.buffer, b.byteOffset, b.length / 4);
        return { bits: Array.from(u), shape: a.shape, dtype: a.dtype };
    }
    const flat = a.flat(Infinity), shape = [];
    for (let x = a; Array.isArray(x); x = x[0]) shape.push(x.length);
    const f32 = new Float32Array(1), i32 = new Int32Array(f32.buffer), u32 = new Uint32Array(f32.buffer);
    const bits = flat.map((v) => {
        if (dtype === 'int32') { i32[0] = v; return u32[0]; }
        f32[0] = v === null ? NaN : v;
        return u32[0];
    });
    return { bits, shape, dtype };
}

const FIELDS = { ids: 'int32', experts: 'int32', gates: 'float32', probs: 'float32', logits: 'float32' };
const UNC = ['ilv', 'gate_entropy', 'temperature', 'disagreement', 'ilv_dev'];

// Every routing object of an answer, joined into rows: {layers, rows: [{ids, experts, ...}]}.
function routing(f) {
    const parts = answers(f).flatMap((a) => a.choices.map((c) => c.vmoer && c.vmoer.routing).filter(Boolean));
    if (!parts.length) throw new Error(`${f}: no routing`);
    let next = 0;
    const out = { layers: parts[0].layers, K: parts[0].top_k, N: parts[0].n_expert, fields: {}, n: 0, contiguous: true };
    for (const p of parts) {
        if (p.start !== next) out.contiguous = false;
        next = p.start + p.n_tokens;
        for (const [k, dt] of Object.entries(FIELDS).concat(UNC.filter((u) => u in p).map((u) => [u, 'float32']))) {
            const d = decode(p[k], dt);
            (out.fields[k] = out.fields[k] || []).push(...d.bits);
        }
        out.n = next;
    }
    return out;
}

const u32 = (x, isInt) => {
    const b = new ArrayBuffer(4);
    if (isInt) new Int32Array(b)[0] = x; else new Float32Array(b)[0] = x === null ? NaN : x;
    return new Uint32Array(b)[0];
};

const modes = {
    ids([f]) {
        const r = routing(f);
        const a = answers(f), usage = a.map((x) => x.usage).filter(Boolean)[0];
        process.stdout.write(`${r.fields.ids.join(',')} ${usage ? usage.prompt_tokens : ''}\n`);
    },
    trace([f, tf]) {
        const r = routing(f), L = r.layers.length;
        const lines = fs.readFileSync(tf, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
        check(r.contiguous, 'rows are contiguous (start offsets)');
        const byKey = new Map(lines.map((l) => [`${l.pos}/${l.layer}`, l]));
        let bad = 0, n = 0;
        for (let t = 0; t < r.n; t++) {
            for (let li = 0; li < L; li++) {
                const l = byKey.get(`${t}/${r.layers[li]}`);
                if (!l) { bad++; continue; }
                const cmp = (field, vals, width, isInt) => {
                    for (let k = 0; k < width; k++) {
                        n++;
                        if (r.fields[field][(t * L + li) * width + k] !== u32(vals[k], isInt)) bad++;
                    }
                };
                cmp('experts', l.experts, r.K, true);
                cmp('gates', l.gates, r.K, false);
                cmp('probs', l.probs, r.N, false);
                cmp('logits', l.logits, r.N, false);
                for (const u of UNC) if (r.fields[u]) { n++; if (r.fields[u][t * L + li] !== u32(u in l.unc ? l.unc[u] : NaN, false)) bad++; }
            }
            n++;
            if (r.fields.ids[t] !== u32(lines.find((l) => l.pos === t).token, true)) bad++;
        }
        check(bad === 0 && n > 0, `${bad} of ${n} values differ from vmoer trace`);
        check(r.n * L === lines.filter((l) => r.layers.includes(l.layer)).length, `rows ${r.n} x ${L} layers vs the trace's lines`);
        check(r.fields.ilv !== undefined, 'ILV returned for the Bayesian layers');
    },
    same([a, b]) {
        const x = routing(a), y = routing(b);
        check(JSON.stringify(x.fields) === JSON.stringify(y.fields) && x.n === y.n, 'the same bits');
    },
};
try { modes[mode](files); } catch (e) { console.log(`FAIL: ${mode}: ${e.stack}`); }

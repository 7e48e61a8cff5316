// Assertions on `vmoer serve` answers for tests/cli/serve*.sh: node serve_check.js CASE FILES...
// Prints "ok" per passed check and "FAIL: ..." per failed one (lib/serve.sh counts them).
'use strict';
const fs = require('fs');

const [kase, ...files] = process.argv.slice(2);
const check = (cond, what) => console.log(cond ? 'ok' : `FAIL: ${kase}: ${what}`);
const json = (f) => JSON.parse(fs.readFileSync(f, 'utf8'));
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

// Server-sent events: the JSON of every "data:" line before [DONE]; done = whether [DONE] came last.
function sse(f) {
    const events = fs.readFileSync(f, 'utf8').split('\n\n').filter((e) => e.trim());
    const out = [];
    let done = false;
    for (const e of events) {
        if (!e.startsWith('data: ')) throw new Error(`not an SSE event: ${e.slice(0, 80)}`);
        const d = e.slice(6);
        if (d === '[DONE]') { done = true; continue; }
        out.push(JSON.parse(d));
    }
    return { chunks: out, done };
}

function streamed(f) {
    const { chunks, done } = sse(f);
    const cs = chunks.filter((c) => c.choices.length);
    const text = cs.map((c) => c.choices[0].text ?? c.choices[0].delta.content ?? '').join('');
    const tokens = cs.flatMap((c) => c.choices[0].vmoer.tokens || []);
    const last = cs[cs.length - 1].choices[0];
    return { chunks, cs, done, text, tokens, last };
}

const cases = {
    completion([cf, runf]) {
        const c = json(cf), ch = c.choices[0], v = ch.vmoer;
        check(c.object === 'text_completion' && c.model === 'stories-moe' && /^cmpl-/.test(c.id), 'envelope');
        check(ch.finish_reason === 'length' && c.usage.completion_tokens === 8 && c.usage.prompt_tokens === 5, 'finish and usage');
        check(v.tokens.length === 8 && v.summary.n_tokens === 8, 'one record per token');
        check(v.router === 'vglr-mf' && same(v.readout_layers, [3, 4]), 'router and read-out layers');
        check(v.tokens.every((t) => t.ilv > 0 && t.layers.ilv.length === 2 && t.entropy >= 0 && t.prob > 0), 'ILV per token and layer');
        check(v.tokens.map((t) => t.text).join('') === ch.text, 'the records spell the text');
        const lines = fs.readFileSync(runf, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
        const run = lines.slice(0, -1).map(({ index, ...rest }) => rest);
        check(same(run, v.tokens), 'the same records as vmoer run --jsonl');
        check(same(lines[lines.length - 1].summary, v.summary), 'the same summary as vmoer run --jsonl');
        check(ch.logprobs === null, 'no logprobs unless asked');
    },
    'stream-equals'([sf, jf]) {
        const s = streamed(sf), j = json(jf).choices[0];
        check(s.done, 'ends with [DONE]');
        check(s.text === j.text, `streamed text '${s.text}' vs '${j.text}'`);
        check(same(s.tokens, j.vmoer.tokens), 'streamed records = whole records');
        check(s.last.finish_reason === j.finish_reason && same(s.last.vmoer.summary, j.vmoer.summary), 'final chunk');
        check(s.cs.slice(0, -1).every((c) => c.choices[0].finish_reason === null && c.choices[0].vmoer.tokens.length === 1),
              'one token per chunk, the vmoer object on each');
    },
    chat([jf, sf]) {
        const c = json(jf), ch = c.choices[0], lp = ch.logprobs.content, toks = ch.vmoer.tokens;
        check(c.object === 'chat.completion' && ch.message.role === 'assistant' && ch.message.content.length > 0, 'message');
        check(lp.length === toks.length && toks.length === c.usage.completion_tokens, 'a logprob per token');
        check(lp.every((e, i) => Math.abs(e.logprob + toks[i].nll) < 1e-6 && e.token === toks[i].text), 'logprob = -nll');
        check(lp.every((e) => e.top_logprobs.length === 3 && e.top_logprobs[0].token === e.token), 'greedy: the chosen token is the top one');
        check(lp.every((e) => Buffer.from(e.bytes).toString('utf8') === e.token), 'bytes');
        const s = streamed(sf);
        check(s.done && s.text === ch.message.content, 'streamed content');
        check(s.cs[0].choices[0].delta.role === 'assistant', 'role in the first delta');
        check(same(s.cs.flatMap((x) => (x.choices[0].logprobs ? x.choices[0].logprobs.content : [])), lp), 'streamed logprobs');
        const u = s.chunks[s.chunks.length - 1];
        check(u.choices.length === 0 && u.usage.total_tokens === c.usage.total_tokens, 'usage chunk');
        check(s.chunks.every((x) => x.object === 'chat.completion.chunk' && x.id === s.chunks[0].id), 'chunk envelope');
    },
    'legacy-logprobs'([f]) {
        const ch = json(f).choices[0], l = ch.logprobs;
        check(l.tokens.length === 5 && l.token_logprobs.length === 5 && l.top_logprobs.length === 5, 'lengths');
        check(l.tokens.join('') === ch.text, 'tokens spell the text');
        check(l.top_logprobs.every((o) => Object.keys(o).length >= 1 && Object.keys(o).length <= 2), 'top 2');
        check(l.text_offset.every((x, i) => i === 0 || x > l.text_offset[i - 1]), 'offsets grow');
    },
    'same-text'([a, b]) {
        check(json(a).choices[0].text === json(b).choices[0].text, 'token-id prompt = text prompt');
    },
    abstain([f]) {
        const c = json(f), ch = c.choices[0];
        check(ch.finish_reason === 'uncertain' && ch.text === '' && c.usage.completion_tokens === 0, 'stopped before the first token');
        check(ch.vmoer.abstained.score === 'entropy' && ch.vmoer.abstained.threshold === 0 && ch.vmoer.abstained.token.entropy > 0, 'marker');
    },
    stop([jf, sf, full]) {
        const j = json(jf).choices[0], s = streamed(sf), t = json(full).choices[0].text;
        check(!j.text.includes(' was') && t.startsWith(j.text + ' was'), `text '${j.text}' ends before the stop string`);
        check(j.finish_reason === 'stop' && s.last.finish_reason === 'stop', 'finish_reason stop');
        check(s.text === j.text, 'streamed text held back the stop string');
    },
    seeds([a, b, c]) {
        const ta = json(a).choices[0].text, tb = json(b).choices[0].text, tc = json(c).choices[0].text;
        check(ta === tb, 'same seed, same text');
        check(ta !== tc, 'another seed, another text');
    },
    choices([a, b]) {
        for (const [f, score, passes] of [[a, 'pmi', 1], [b, 'letter', 2]]) {
            const c = json(f), p = c.choices.map((x) => x.prob);
            check(c.object === 'vmoer.choices' && c.score === score, `${score}: envelope`);
            check(Math.abs(p.reduce((x, y) => x + y, 0) - 1) < 1e-9, `${score}: probabilities sum to 1`);
            check(p[c.prediction] === Math.max(...p), `${score}: prediction = argmax`);
            const v = c.vmoer;
            check(v.passes === passes && v.entropy >= 0 && v.ilv > 0 && v.gate_entropy > 0, `${score}: read-outs`);
            check(passes > 1 ? v.mi >= 0 : v.mi === null, `${score}: mi only with several passes`);
        }
    },
};

if (!cases[kase]) { console.log(`FAIL: unknown case ${kase}`); process.exit(1); }
try { cases[kase](files); } catch (e) { console.log(`FAIL: ${kase}: ${e.stack}`); }

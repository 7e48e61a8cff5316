// The official `openai` npm client against `vmoer serve` (tests/cli/serve_openai.sh):
//   node openai_client.js URL SLOW_URL KEY
// URL: a server with --api-key KEY, --chat-template none, 2 slots; SLOW_URL: one slot with
// --token-delay-ms, for a client that leaves mid-stream. Prints "ok" / "FAIL: ..." per check.
'use strict';
const OpenAI = require('openai');

const [url, slowUrl, key] = process.argv.slice(2);
const check = (cond, what) => console.log(cond ? 'ok' : `FAIL: ${what}`);
const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: key, maxRetries: 0, timeout: 300000 });
const slow = new OpenAI({ baseURL: `${slowUrl}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 300000 });
const strip = ({ id, created, ...rest }) => rest;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
    const models = await client.models.list();
    check(models.data.length === 1 && models.data[0].id === 'stories-moe' && models.data[0].vmoer.router === 'vglr-mf', 'models.list');

    const c = await client.completions.create({ model: 'stories-moe', prompt: 'Once upon a time', max_tokens: 8, temperature: 0, logprobs: 1 });
    const ch = c.choices[0];
    check(ch.text.length > 0 && ch.finish_reason === 'length' && c.usage.completion_tokens === 8, 'completions.create');
    check(ch.vmoer.tokens.length === 8 && ch.vmoer.tokens.every((t) => t.ilv > 0) && ch.vmoer.summary.ilv.max > 0, 'vmoer fields on the choice');
    check(ch.logprobs.tokens.join('') === ch.text && ch.logprobs.token_logprobs.length === 8, 'logprobs');

    let text = '', recs = 0, summary = null;
    const cs = await client.completions.create({ model: 'stories-moe', prompt: 'Once upon a time', max_tokens: 8, temperature: 0, stream: true });
    for await (const chunk of cs) {
        text += chunk.choices[0].text;
        recs += (chunk.choices[0].vmoer.tokens || []).length;
        if (chunk.choices[0].finish_reason) summary = chunk.choices[0].vmoer.summary;
    }
    check(text === ch.text && recs === 8, 'streamed completion = whole completion');
    check(summary && JSON.stringify(summary) === JSON.stringify(ch.vmoer.summary), 'summary on the last chunk');

    const msg = [{ role: 'system', content: 'A story.' }, { role: 'user', content: 'Lily and Ben' }];
    const chat = await client.chat.completions.create({ model: 'stories-moe', messages: msg, max_tokens: 6, temperature: 0, logprobs: true, top_logprobs: 2 });
    const m = chat.choices[0];
    check(m.message.role === 'assistant' && m.message.content.length > 0, 'chat.completions.create');
    check(m.logprobs.content.length === chat.usage.completion_tokens && m.logprobs.content.every((e) => e.top_logprobs.length === 2), 'chat logprobs');
    check(m.vmoer.tokens.length === chat.usage.completion_tokens, 'vmoer on the chat choice');
    let content = '';
    const chs = await client.chat.completions.create({ model: 'stories-moe', messages: msg, max_tokens: 6, temperature: 0, stream: true });
    for await (const chunk of chs) content += chunk.choices[0]?.delta?.content || '';
    check(content === m.message.content, 'streamed chat = whole chat');

    // 16 concurrent clients, streamed and not: each answer equals the same request alone
    const reqs = Array.from({ length: 16 }, (_, i) => ({
        model: 'stories-moe', messages: [{ role: 'user', content: ['Once upon a time', 'The dog', 'Tom and Sue', 'A little bird'][i % 4] }],
        max_tokens: 6 + (i % 3) * 5, temperature: i % 2 ? 0 : 0.8, seed: i, stream: i % 4 === 3,
    }));
    const run = async (r) => {
        if (!r.stream) return JSON.stringify(strip(await client.chat.completions.create(r)));
        const parts = [];
        for await (const chunk of await client.chat.completions.create(r)) parts.push(JSON.stringify(strip(chunk)));
        return parts.join('\n');
    };
    const together = await Promise.all(reqs.map(run));
    const alone = [];
    for (const r of reqs) alone.push(await run(r));
    const same = together.filter((x, i) => x === alone[i]).length;
    check(same === 16, `${same} of 16 concurrent answers equal the request alone`);

    // errors come back as the client's typed errors, and the server keeps serving
    const expectError = async (status, what, p) => {
        try { await p; check(false, `${what}: accepted`); } catch (e) {
            check(e instanceof OpenAI.APIError && e.status === status && typeof e.message === 'string' && e.message.length > 0,
                  `${what}: ${e.status} ${e.message}`);
        }
    };
    await expectError(400, 'max_tokens a string', client.completions.create({ model: 'x', prompt: 'x', max_tokens: 'ten' }));
    await expectError(400, 'unknown field', client.chat.completions.create({ model: 'x', messages: msg, frobnicate: 1 }));
    await expectError(400, 'n = 3', client.chat.completions.create({ model: 'x', messages: msg, n: 3 }));
    await expectError(401, 'wrong key', new OpenAI({ baseURL: `${url}/v1`, apiKey: 'nope', maxRetries: 0 }).models.list());
    const again = await client.completions.create({ model: 'x', prompt: 'Once', max_tokens: 2 });
    check(again.choices[0].text.length > 0, 'served after the errors');

    // a client that leaves mid-stream frees its slot
    const st = await slow.completions.create({ model: 'x', prompt: 'Once', max_tokens: 400, stream: true });
    let n = 0;
    for await (const chunk of st) { if (chunk.choices[0].text !== undefined && ++n === 2) break; }   // break aborts the request
    let h = null;
    for (let i = 0; i < 600; i++) {
        h = await (await fetch(`${slowUrl}/health`)).json();
        if (h.cancelled === 1 && h.slots_busy === 0) break;
        await sleep(100);
    }
    check(h.cancelled === 1 && h.slots_busy === 0, `mid-stream abort frees the slot: ${JSON.stringify(h)}`);
}

main().catch((e) => { console.log(`FAIL: ${e.stack}`); process.exit(1); });

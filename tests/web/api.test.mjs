// The OpenAI API in the browser, in real headless Chromium (issues 35 and 36): requests made
// with the JS API (`completions.create`, `chat.completions.create`) run by the library's
// serving core in the worker, the code `tide serve` runs. Replies equal native greedy text;
// stop strings, log-probabilities, usage and refusals are the server's; two tabs sharing one
// model on WebGPU (SwiftShader) have their requests decoded in shared steps (continuous
// batching) with replies equal to each run alone; a repeated prompt reuses its slot's K/V
// (the prefix cache); a JSON schema's reply keeps to it (the grammar engine of `tide serve`);
// tool calls forced by name or `required` equal `tide serve`'s, whole and streamed, on a tiny
// model with Qwen2.5's template. scripts/test-pages.sh sets TIDE_BIN, CHROMIUM, TOOL_MODEL.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const { TIDE_BIN, CHROMIUM, TOOL_MODEL } = process.env;
const REPO = path.resolve(import.meta.dirname, '../..');
const FLAGS = ['--no-sandbox', '--enable-unsafe-webgpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];
const MODEL = path.join(REPO, 'models/tide-k4');
const PROMPTS = ['Once upon a time', 'In the beginning God created'];
const N = 8;

let ctx;
let tmp;
let server;

function native(prompt, n = N) {
  return JSON.parse(execFileSync(TIDE_BIN, ['generate', '--backend', 'cpu', '--model', MODEL,
    '--temperature', '0', '--json', '--max-tokens', String(n), prompt], { encoding: 'utf8' }));
}

before(async () => {
  assert.ok(TIDE_BIN && CHROMIUM && TOOL_MODEL, 'run through scripts/test-pages.sh');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tide-api-'));
  server = spawn(TIDE_BIN, ['serve', '--no-api', '--port', '0', '--web', path.join(REPO, 'web'), '--model', MODEL, '--model', TOOL_MODEL],
    { stdio: ['ignore', 'pipe', 'inherit'] });
  server.base = await new Promise((resolve, reject) => {
    server.stdout.on('data', (d) => {
      const m = String(d).match(/http:\/\/[^/]+:\d+\//);
      if (m) resolve(m[0]);
    });
    server.on('exit', (c) => reject(new Error(`tide serve exited with ${c}`)));
  });
  ctx = await chromium.launchPersistentContext(path.join(tmp, 'profile'), {
    executablePath: CHROMIUM, headless: true, args: FLAGS,
  });
});

after(async () => {
  await ctx?.close();
  server?.kill('SIGKILL');
  fs.rmSync(tmp, { recursive: true, force: true });
});

async function pageWith(options) {
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.log(`[page error] ${e.message}`));
  await page.goto(server.base + 'tide.js');
  const info = await page.evaluate(async (o) => {
    const t = await import('/tide.js');
    window.model = await t.load('tide-k4', o);
    return window.model.info;
  }, options);
  return { page, info };
}

// A request in the page: {value} (a whole reply, or a stream's chunks) or {error: {message,
// status, code}}.
const create = (page, kind, req) => page.evaluate(async ([k, r]) => {
  const api = k === 'chat' ? window.model.chat.completions : window.model.completions;
  try {
    const v = await api.create(r);
    if (!r.stream) return { value: v };
    const chunks = [];
    for await (const c of v) chunks.push(c);
    return { value: chunks };
  } catch (e) {
    return { error: { message: e.message, status: e.status, code: e.code } };
  }
}, [kind, req]);

test('the API in one tab (CPU kernels): native greedy text, stop strings, logprobs, usage, refusals, the prefix cache, JSON schema output', async () => {
  const { page, info } = await pageWith({ backend: 'cpu' });
  assert.equal(info.backend, 'cpu');
  const want = native(PROMPTS[0]);
  const r = (await create(page, 'text', { prompt: PROMPTS[0], max_tokens: N, temperature: 0 })).value;
  assert.equal(r.object, 'text_completion');
  assert.equal(r.choices[0].text, want.text);
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.deepEqual([r.usage.prompt_tokens, r.usage.completion_tokens], [want.prompt_tokens.length, N]);
  // The same prompt again: its slot holds it, all but the last token reused.
  const again = (await create(page, 'text', { prompt: PROMPTS[0], max_tokens: N, temperature: 0 })).value;
  assert.equal(again.choices[0].text, want.text);
  assert.equal(again.usage.prompt_tokens_details.cached_tokens, want.prompt_tokens.length - 1);
  // A stop string from the reply's middle cuts it there.
  const stop = want.text.slice(4, 7);
  const cut = (await create(page, 'text', { prompt: PROMPTS[0], max_tokens: N, temperature: 0, stop: [stop] })).value;
  assert.equal(cut.choices[0].text, want.text.slice(0, want.text.indexOf(stop)));
  assert.equal(cut.choices[0].finish_reason, 'stop');
  // Log-probabilities: one entry per token, each with 2 alternatives, none above 0.
  const lp = (await create(page, 'text', { prompt: PROMPTS[0], max_tokens: 4, temperature: 0, logprobs: 2 })).value;
  const l = lp.choices[0].logprobs;
  assert.equal(l.tokens.join(''), lp.choices[0].text);
  assert.ok(l.token_logprobs.every((p) => p <= 0) && l.top_logprobs.every((t) => Object.keys(t).length === 2), JSON.stringify(l));
  // A streamed chat: the role first, content chunks, the finish, then usage.
  const chunks = (await create(page, 'chat', { messages: [{ role: 'user', content: 'Hello' }], max_tokens: 4,
    temperature: 0, stream: true, stream_options: { include_usage: true } })).value;
  assert.equal(chunks[0].choices[0].delta.role, 'assistant');
  assert.equal(chunks.at(-2).choices[0].finish_reason, 'length');
  assert.equal(chunks.at(-1).usage.completion_tokens, 4);
  assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk'));
  // Refusals carry the server's status, message and code.
  const bad = await create(page, 'text', { prompt: 'x', max_tokens: 1, n: 2 });
  assert.equal(bad.error.status, 400);
  assert.match(bad.error.message, /'n' must be/);
  const role = await create(page, 'chat', { messages: [{ role: 'wizard', content: 'hi' }] });
  assert.equal(role.error.status, 400);
  const long = await create(page, 'text', { prompt: 'word '.repeat(400), max_tokens: 4 });
  assert.equal(long.error.code, 'context_length_exceeded');
  const other = await create(page, 'text', { model: 'no-such-model', prompt: 'x' });
  assert.equal(other.error.status, 404);
  // Structured output by the same grammar engine: the reply parses and keeps to the schema.
  const schema = { type: 'object', properties: { name: { type: 'string', maxLength: 10 },
    n: { type: 'integer', minimum: 0, maximum: 50 }, tags: { type: 'array', items: { enum: ['a', 'b'] }, maxItems: 2 } },
  required: ['name', 'n', 'tags'], additionalProperties: false };
  const jr = await create(page, 'chat', { messages: [{ role: 'user', content: 'JSON please' }], max_tokens: 100,
    temperature: 0, response_format: { type: 'json_schema', json_schema: { name: 'x', schema } } });
  assert.equal(jr.error, undefined, JSON.stringify(jr.error));
  const js = jr.value;
  assert.equal(js.choices[0].finish_reason, 'stop');
  const obj = JSON.parse(js.choices[0].message.content);
  assert.deepEqual(Object.keys(obj).sort(), ['n', 'name', 'tags']);
  assert.ok(Number.isInteger(obj.n) && obj.n >= 0 && obj.n <= 50 && obj.name.length <= 10, JSON.stringify(obj));
  assert.ok(obj.tags.length <= 2 && obj.tags.every((t) => t === 'a' || t === 'b'), JSON.stringify(obj));
  const unsupported = await create(page, 'chat', { messages: [{ role: 'user', content: 'x' }], max_tokens: 4,
    response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'array', uniqueItems: true } } } });
  assert.equal(unsupported.error.status, 400);
  assert.match(unsupported.error.message, /uniqueItems/);
  // generate() still runs after the API (the scheduler's slot is taken over and forgotten).
  const g = await page.evaluate((p) => window.model.complete(p, { maxTokens: 8, temperature: 0 }), PROMPTS[0]);
  assert.deepEqual(g.tokens, want.tokens);
  const after = (await create(page, 'text', { prompt: PROMPTS[0], max_tokens: N, temperature: 0 })).value;
  assert.equal(after.choices[0].text, want.text);
  await page.close();
});

test('two tabs on one WebGPU engine: their requests share decode steps, each reply equal to running alone', async () => {
  // warm: true, since the model is in the store from the test before ('auto' warms only
  // for a download).
  const a = await pageWith({ backend: 'webgpu', share: true, warm: true });
  const b = await pageWith({ backend: 'webgpu', share: true, warm: true });
  assert.equal(a.info.backend, 'webgpu');
  assert.equal(a.info.slots, 4);
  assert.equal(b.info.shared.role, 'follower');
  // The leader sized the model (a card: config.json whole, the backbone's and memory's
  // headers by Range) against the adapter before its download.
  const fit = a.info.load.gpu_fit;
  assert.ok(fit && fit.ctx_len === a.info.ctx_len && fit.weight_bytes > 0, JSON.stringify(a.info.load));
  assert.equal(fit.kv_bytes % (2 * a.info.layers * a.info.ctx_len * 4 * 4), 0, 'K/V of 4 slots');
  // Its kernels were compiled while the weights came (the answers below are still native's).
  assert.ok(a.info.load.warm?.pipelines > 10, JSON.stringify(a.info.load.warm));
  // The safetensors header, and the memory's tables (3.9 MB), which a memory model's loader
  // reads: about a third of the 12.4 MB file.
  assert.ok(fit.header_bytes > 3.9e6 && fit.header_bytes < a.info.load.bytes / 2, JSON.stringify(fit));
  const want = PROMPTS.map((p) => native(p, 24));
  const stream = (page, prompt) => create(page, 'text', { prompt, max_tokens: 24, temperature: 0, stream: true });
  const [ra, rb] = await Promise.all([stream(a.page, PROMPTS[0]), stream(b.page, PROMPTS[1])]);
  const text = (r) => r.value.map((c) => c.choices[0].text).join('');
  assert.equal(text(ra), want[0].text, 'leader tab');
  assert.equal(text(rb), want[1].text, 'follower tab');
  const stats = await b.page.evaluate(() => window.model.apiStats());
  assert.ok(stats.shared_steps > 0, `no step was shared: ${JSON.stringify(stats)}`);
  assert.equal(stats.requests_completed, 2);
  // A follower's cancel (its stream left early) frees the engine for the next request.
  const left = await b.page.evaluate(async () => {
    const s = await window.model.completions.create({ prompt: 'The king', max_tokens: 200, temperature: 0, stream: true });
    let n = 0;
    for await (const c of s) { // eslint-disable-line no-unused-vars
      if (++n === 3) break;
    }
    return n;
  });
  assert.equal(left, 3);
  const next = (await create(a.page, 'text', { prompt: PROMPTS[1], max_tokens: 24, temperature: 0 })).value;
  assert.equal(next.choices[0].text, want[1].text);
  await a.page.close();
  await b.page.close();
});

test('tool calls in the page: a named and a required choice give the calls `tide serve` gives for the same request, whole and streamed; a tool reply is answered', async () => {
  // Qwen2.5's template and vocabulary on a tiny random model (scripts/make_tool_models.py).
  const api = spawn(TIDE_BIN, ['serve', '--port', '0', '--backend', 'cpu', '--model', TOOL_MODEL], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const base = await new Promise((resolve, reject) => {
      api.stdout.on('data', (d) => {
        const m = String(d).match(/http:\/\/[^/]+:\d+\//);
        if (m) resolve(m[0]);
      });
      api.on('exit', (c) => reject(new Error(`tide serve exited with ${c}`)));
    });
    const weather = { type: 'object', properties: { city: { type: 'string', enum: ['Paris', 'Oslo', 'Lima'] }, days: { type: 'integer', minimum: 1, maximum: 7 } }, required: ['city', 'days'], additionalProperties: false };
    const tools = [
      { type: 'function', function: { name: 'get_weather', description: 'The forecast.', parameters: weather } },
      { type: 'function', function: { name: 'set_alarm', parameters: { type: 'object', properties: { on: { type: 'boolean' } }, required: ['on'], additionalProperties: false } } },
    ];
    const messages = [{ role: 'user', content: 'What will the weather be in Paris?' }];
    const named = { messages, tools, tool_choice: { type: 'function', function: { name: 'get_weather' } }, temperature: 0, max_tokens: 128 };
    const required = { messages, tools, tool_choice: 'required', temperature: 0, max_tokens: 128 };
    const serverSays = async (req) => (await (await fetch(base + 'v1/chat/completions', {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: path.basename(TOOL_MODEL, '.gguf'), ...req }),
    })).json()).choices[0];
    const page = await ctx.newPage();
    await page.goto(server.base + 'tide.js');
    await page.evaluate(async (m) => {
      const t = await import('/tide.js');
      window.model = await t.load(m, { backend: 'cpu' });
    }, path.basename(TOOL_MODEL, '.gguf'));
    const calls = (msg) => msg.tool_calls.map((c) => [c.type, c.function.name, JSON.parse(c.function.arguments)]);
    for (const req of [named, required]) {
      const want = await serverSays(req);
      assert.equal(want.finish_reason, 'tool_calls', JSON.stringify(want));
      const whole = (await create(page, 'chat', req)).value.choices[0];
      assert.equal(whole.finish_reason, 'tool_calls');
      assert.equal(whole.message.content, null);
      assert.deepEqual(calls(whole.message), calls(want.message));
      const [[, name, args]] = calls(whole.message);
      if (name === 'get_weather') {
        assert.ok(['Paris', 'Oslo', 'Lima'].includes(args.city) && Number.isInteger(args.days) && args.days >= 1 && args.days <= 7, JSON.stringify(args));
      }
      // Streamed: the calls' deltas put back together are the same calls.
      const chunks = (await create(page, 'chat', { ...req, stream: true })).value;
      const got = {};
      let finish = null;
      for (const c of chunks) {
        const ch = c.choices[0];
        if (!ch) continue;
        finish = ch.finish_reason ?? finish;
        for (const d of ch.delta.tool_calls ?? []) {
          got[d.index] ??= { type: d.type, name: '', arguments: '' };
          if (d.function?.name) got[d.index].name += d.function.name;
          if (d.function?.arguments) got[d.index].arguments += d.function.arguments;
        }
      }
      assert.equal(finish, 'tool_calls');
      assert.deepEqual(Object.values(got).map((c) => [c.type, c.name, JSON.parse(c.arguments)]), calls(want.message));
    }
    // The next turn: the assistant's call and the tool's reply, answered as the server does.
    const call = (await create(page, 'chat', named)).value.choices[0].message;
    const next = { messages: [...messages, call, { role: 'tool', tool_call_id: call.tool_calls[0].id, content: '{"temperature": 21}' }], tools, temperature: 0, max_tokens: 8 };
    const answer = (await create(page, 'chat', next)).value.choices[0];
    assert.equal(answer.message.content, (await serverSays(next)).message.content);
    await page.close();
  } finally {
    api.kill('SIGKILL');
  }
});

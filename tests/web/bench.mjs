// Browser against native on the same device, in one run (scripts/bench-web.sh sets the env):
// the page's WebGPU (SwiftShader in headless Chromium) against native wgpu pointed at the
// SwiftShader Vulkan driver that Chromium ships, and the wasm CPU reference against the native
// one. Both sides report through the same generation loop (tide generate --json and the page's
// complete(), one Rust `Run`), so the rates mean the same thing. Prints a table and writes one
// JSON line per measurement to $OUT.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const { TIDE_BIN, SMOLLM2, CHROMIUM, SWIFTSHADER_ICD, OUT } = process.env;
const REPEATS = 3;
const DECODE_TOKENS = 64;
const SHORT = 'Once upon a time';
// ~64 tokens: long enough for the prefill kernels (prompts up to 8 tokens run token by token).
const LONG = 'The history of the city begins with a small market by the river, where farmers and traders met ' +
  'each week to sell grain, wool and fish. Over the centuries the market grew into a town with walls, ' +
  'a cathedral and a bridge of stone';

const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
const rows = [];
function record(r) {
  rows.push({ date: new Date().toISOString().slice(0, 10), ...r });
  console.error(JSON.stringify(r));
}

function nativeRun(model, backend, prompt, maxTokens, env = {}) {
  const args = ['generate', '--temperature', '0', '--json', '--max-tokens', String(maxTokens), '--backend', backend];
  if (model) args.push('--model', model);
  const t0 = performance.now();
  const out = execFileSync(TIDE_BIN, [...args, prompt], { encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 64 << 20 });
  return { ...JSON.parse(out), wall_s: (performance.now() - t0) / 1000 };
}

async function serve(models) {
  const repo = path.resolve(import.meta.dirname, '../..');
  const args = ['serve', '--no-api', '--port', '0', '--web', path.join(repo, 'web')];
  for (const m of models) args.push('--model', m);
  const p = spawn(TIDE_BIN, args, { stdio: ['ignore', 'pipe', 'ignore'] });
  const url = await new Promise((resolve) => p.stdout.on('data', (d) => {
    const m = String(d).match(/http:\/\/\S+\//);
    if (m) resolve(m[0]);
  }));
  return { p, url };
}

async function browserSide(base, name, label, backend) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tide-bench-'));
  const ctx = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM, headless: true,
    args: ['--no-sandbox', '--enable-unsafe-webgpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  });
  const page = ctx.pages()[0] ?? await ctx.newPage();
  const q = `?model=${encodeURIComponent(name)}${backend === 'cpu' ? '&backend=cpu' : ''}`;
  const gen = (p, n) => page.evaluate(([p, n]) => window.tide.complete(p, { maxTokens: n, temperature: 0 }), [p, n]);
  const first = async (phase) => {
    const t0 = performance.now();
    await page.goto(base + q);
    const info = await page.evaluate(() => window.tide.ready);
    const g = await gen(SHORT, 1);
    record({ side: 'browser', model: label, backend, phase, load_s: info.load.seconds,
      downloaded_bytes: info.load.downloaded_bytes, ttft_s: g.time_to_first_token_s,
      page_to_first_token_s: (performance.now() - t0) / 1000, adapter: info.adapter });
    return info;
  };
  await first('cold');
  await first('cached');
  const dec = [];
  const pre = [];
  for (let i = 0; i < REPEATS; i++) {
    dec.push((await gen(SHORT, DECODE_TOKENS)).decode_tokens_per_s);
    if (backend !== 'cpu') {
      const g = await gen(LONG, 1);
      pre.push(g.prefill_tokens_per_s);
      if (i === 0) console.error(`prefill prompt: ${g.prompt_tokens.length} tokens`);
    }
  }
  record({ side: 'browser', model: label, backend, phase: 'warm', decode_tok_s: median(dec),
    prefill_tok_s: pre.length ? median(pre) : null, runs: REPEATS });
  await ctx.close();
  fs.rmSync(dir, { recursive: true, force: true });
}

function nativeSide(model, label, backend) {
  const env = backend === 'gpu' ? { VK_ICD_FILENAMES: SWIFTSHADER_ICD } : {};
  const cold = nativeRun(model, backend, SHORT, 1, env);
  record({ side: 'native', model: label, backend: backend === 'gpu' ? 'swiftshader-vulkan' : 'cpu', phase: 'first run',
    process_to_first_token_s: cold.wall_s, ttft_s: cold.time_to_first_token_s, adapter: cold.adapter });
  const dec = [];
  const pre = [];
  for (let i = 0; i < REPEATS; i++) {
    dec.push(nativeRun(model, backend, SHORT, DECODE_TOKENS, env).decode_tokens_per_s);
    if (backend === 'gpu') pre.push(nativeRun(model, backend, LONG, 1, env).prefill_tokens_per_s);
  }
  record({ side: 'native', model: label, backend: backend === 'gpu' ? 'swiftshader-vulkan' : 'cpu', phase: 'warm',
    decode_tok_s: median(dec), prefill_tok_s: pre.length ? median(pre) : null, runs: REPEATS });
}

const repo = path.resolve(import.meta.dirname, '../..');
const { p, url } = await serve([path.join(repo, 'models/tide-k4'), SMOLLM2]);
try {
  const smol = path.basename(SMOLLM2, '.gguf');
  for (const [name, label, model] of [['tide-k4', 'tide-k4', null], [smol, 'SmolLM2-135M Q4_1', SMOLLM2]]) {
    nativeSide(model, label, 'gpu');
    await browserSide(url, name, label, 'gpu');
  }
  nativeSide(null, 'tide-k4', 'cpu');
  await browserSide(url, 'tide-k4', 'tide-k4', 'cpu');
} finally {
  p.kill();
}
fs.writeFileSync(OUT, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');

const find = (side, model, backend, phase) => rows.find((r) => r.side === side && r.model === model && r.backend === backend && r.phase === phase);
console.log('| model | browser decode tok/s | native decode tok/s | ratio | browser prefill tok/s | native prefill tok/s | ratio |');
console.log('|---|---|---|---|---|---|---|');
for (const m of ['tide-k4', 'SmolLM2-135M Q4_1']) {
  const b = find('browser', m, 'gpu', 'warm');
  const n = find('native', m, 'swiftshader-vulkan', 'warm');
  console.log(`| ${m} | ${b.decode_tok_s.toFixed(1)} | ${n.decode_tok_s.toFixed(1)} | ${(b.decode_tok_s / n.decode_tok_s).toFixed(2)} | ` +
    `${b.prefill_tok_s.toFixed(1)} | ${n.prefill_tok_s.toFixed(1)} | ${(b.prefill_tok_s / n.prefill_tok_s).toFixed(2)} |`);
}
const bc = find('browser', 'tide-k4', 'cpu', 'warm');
const nc = find('native', 'tide-k4', 'cpu', 'warm');
console.log(`\nCPU reference, tide-k4 decode: wasm ${bc.decode_tok_s.toFixed(1)} tok/s, native ${nc.decode_tok_s.toFixed(1)} tok/s, ratio ${(bc.decode_tok_s / nc.decode_tok_s).toFixed(2)}`);

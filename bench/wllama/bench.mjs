// The wasm CPU path against wllama 3.8.1 (llama.cpp compiled to wasm) in one headless Chromium
// session (issue 34), twice: both single-threaded (pages not cross-origin isolated: wllama runs
// its single-thread build, tide's page the single-threaded build), then both threaded (pages
// served with COOP/COEP: wllama's multi-thread build with n_threads = the cores, tide's
// threaded build with a worker per core). tide's page runs the fast CPU kernels (simd128,
// `backend=cpu`: the choice the page makes itself on a software WebGPU adapter). Chromium is
// launched without WebGPU, so neither side can take a GPU path.
//
// Per model: decode of 64 tokens after a short prompt, and prefill of a ~64-token prompt, median
// of REPEATS after a warm-up run, each side as it reports itself (tide's complete() rates;
// wllama's llama-server timings). scripts/bench-wllama.sh sets the env; writes one JSON line per
// measurement to $OUT and prints a table.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const { TIDE_BIN, CHROMIUM, OUT, MODELS } = process.env;
const CORES = os.cpus().length;
const REPEATS = 3;
const DECODE_TOKENS = 64;
const SHORT = 'Once upon a time';
const LONG = 'The history of the city begins with a small market by the river, where farmers and traders met ' +
  'each week to sell grain, wool and fish. Over the centuries the market grew into a town with walls, ' +
  'a cathedral and a bridge of stone';
const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
const here = import.meta.dirname;
const repo = path.resolve(here, '../..');
const models = MODELS.split(',');
const rows = [];
function record(r) {
  rows.push({ date: new Date().toISOString().slice(0, 10), ...r });
  console.error(JSON.stringify(r));
}

// wllama's side: its ESM build and wasm from node_modules, the model files, and a page that
// exposes load() and complete().
const PAGE = `<!doctype html><script type="module">
import { Wllama } from '/wllama/esm/index.js';
let w;
window.load = async (url, threads) => {
  w = new Wllama({ default: '/wllama/esm/wasm/wllama.wasm' }, { suppressNativeLog: true });
  const t0 = performance.now();
  await w.loadModelFromUrl(url, { n_ctx: 512, n_threads: threads, n_gpu_layers: 0, useCache: false });
  return { load_s: (performance.now() - t0) / 1000, isolated: self.crossOriginIsolated };
};
window.complete = async (prompt, n) => {
  const r = await w.createCompletion({ prompt, max_tokens: n, temperature: 0, cache_prompt: false });
  return { text: r.choices[0].text, timings: r.timings };
};
</script>`;
const TYPES = { '.js': 'text/javascript', '.wasm': 'application/wasm', '.html': 'text/html' };
// With `isolate`, every response carries COOP/COEP (as tide serve's do): the page is
// cross-origin isolated, and wllama may start its threads.
function fileServer(isolate) {
  return http.createServer((req, res) => {
    const u = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    const iso = isolate ? { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'credentialless' } : {};
    let file = null;
    if (u === '/wl.html') {
      res.writeHead(200, { 'content-type': 'text/html', ...iso });
      return res.end(PAGE);
    } else if (u.startsWith('/wllama/')) {
      file = path.join(here, 'node_modules/@wllama/wllama', u.slice('/wllama/'.length));
    } else if (u.startsWith('/models/')) {
      file = models.find((m) => path.basename(m) === u.slice('/models/'.length));
    }
    if (!file || !fs.existsSync(file) || file.includes('..')) {
      res.writeHead(404);
      return res.end();
    }
    res.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream',
      'content-length': fs.statSync(file).size, ...iso });
    fs.createReadStream(file).pipe(res);
  });
}
const wlBase = {};
const fileServers = [];
for (const iso of [false, true]) {
  const srv = fileServer(iso);
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  wlBase[iso] = `http://127.0.0.1:${srv.address().port}`;
  fileServers.push(srv);
}

// tide's side: `tide serve` with the same files, without and with isolation.
const tideBase = {};
const tides = [];
for (const iso of [false, true]) {
  const args = ['serve', '--no-api', '--port', '0', '--web', path.join(repo, 'web')];
  if (!iso) args.push('--no-isolation');
  for (const m of models) args.push('--model', m);
  const t = spawn(TIDE_BIN, args, { stdio: ['ignore', 'pipe', 'ignore'] });
  tideBase[iso] = await new Promise((resolve) => t.stdout.on('data', (d) => {
    const m = String(d).match(/http:\/\/\S+\//);
    if (m) resolve(m[0]);
  }));
  tides.push(t);
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tide-wllama-'));
const ctx = await chromium.launchPersistentContext(dir, {
  executablePath: CHROMIUM, headless: true,
  args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run', '--disable-quic'],
});
try {
  for (const iso of [false, true]) for (const m of models) {
    const label = path.basename(m, '.gguf');
    const threads = iso ? CORES : 1;
    // wllama
    const wp = await ctx.newPage();
    await wp.goto(`${wlBase[iso]}/wl.html`);
    await wp.waitForFunction(() => window.load);
    const loaded = await wp.evaluate(([u, n]) => window.load(u, n), [`${wlBase[iso]}/models/${path.basename(m)}`, threads]);
    const wgen = (p, n) => wp.evaluate(([p, n]) => window.complete(p, n), [p, n]);
    await wgen(SHORT, 8);
    const wd = [];
    const wpf = [];
    let wtext = '';
    for (let i = 0; i < REPEATS; i++) {
      const d = await wgen(SHORT, DECODE_TOKENS);
      wd.push(d.timings.predicted_per_second);
      wtext = d.text;
      wpf.push((await wgen(LONG, 1)).timings.prompt_per_second);
    }
    record({ side: 'wllama 3.8.1', model: label, threads, isolated: loaded.isolated, load_s: loaded.load_s,
      decode_tok_s: median(wd), prefill_tok_s: median(wpf), runs: REPEATS, text: wtext });
    await wp.close();
    // tide
    const tp = await ctx.newPage();
    await tp.goto(`${tideBase[iso]}?model=${encodeURIComponent(label)}&backend=cpu`);
    const info = await tp.evaluate(() => window.tide.ready);
    const tgen = (p, n) => tp.evaluate(([p, n]) => window.tide.complete(p, { maxTokens: n, temperature: 0 }), [p, n]);
    await tgen(SHORT, 8);
    const td = [];
    const tpf = [];
    let ttext = '';
    for (let i = 0; i < REPEATS; i++) {
      const d = await tgen(SHORT, DECODE_TOKENS);
      td.push(d.decode_tokens_per_s);
      ttext = d.text;
      const g = await tgen(LONG, 1);
      tpf.push(g.prefill_tokens_per_s);
      if (i === 0) console.error(`prefill prompt: ${g.prompt_tokens.length} tokens`);
    }
    record({ side: 'tide', model: label, threads: info.cpu_threads, isolated: info.cross_origin_isolated,
      adapter: info.adapter, load_s: info.load.seconds,
      wasm_heap_mb: info.load.wasm_heap_bytes ? info.load.wasm_heap_bytes / 1e6 : null,
      decode_tok_s: median(td), prefill_tok_s: median(tpf), runs: REPEATS, text: ttext });
    await tp.close();
  }
} finally {
  await ctx.close();
  tides.forEach((t) => t.kill());
  fileServers.forEach((f) => f.close());
  fs.rmSync(dir, { recursive: true, force: true });
}
fs.writeFileSync(OUT, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
console.log('| model | threads | tide decode | wllama decode | ratio | tide prefill | wllama prefill | ratio |');
console.log('|---|---:|---:|---:|---:|---:|---:|---:|');
for (const iso of [false, true]) for (const m of models) {
  const label = path.basename(m, '.gguf');
  const t = rows.find((r) => r.side === 'tide' && r.model === label && r.isolated === iso);
  const w = rows.find((r) => r.side !== 'tide' && r.model === label && r.isolated === iso);
  console.log(`| ${label} | ${t.threads} / ${w.threads} | ${t.decode_tok_s.toFixed(1)} | ${w.decode_tok_s.toFixed(1)} | ${(t.decode_tok_s / w.decode_tok_s).toFixed(2)}x | ` +
    `${t.prefill_tok_s.toFixed(1)} | ${w.prefill_tok_s.toFixed(1)} | ${(t.prefill_tok_s / w.prefill_tok_s).toFixed(2)}x |`);
}

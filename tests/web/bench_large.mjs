// The browser at real sizes (issue 35; scripts/bench-web-large.sh sets the env): each model in
// $MODELS (GGUF paths) served by `tide serve` and loaded by the JS API in headless Chromium on
// WebGPU (SwiftShader: `backend: 'webgpu'`), twice: cold (an empty profile: downloaded into
// the browser's store, shaders compiled for the first time) and again after a reload (read from
// the store, Chromium's shader cache warm). Records the load's seconds (and the download's),
// the wasm heap's peak against the file, whether the weights were read through from the store,
// the largest tensors split across bindings, and the first token's time; one JSON line each to
// $OUT. Then a resume: the server killed at half the first file, restarted, the load resumed.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const { TIDE_BIN, CHROMIUM, MODELS, OUT } = process.env;
const REPO = path.resolve(import.meta.dirname, '../..');
const FLAGS = ['--no-sandbox', '--enable-unsafe-webgpu', '--disable-background-networking', '--no-first-run', '--disable-quic'];
const rows = [];
const record = (r) => {
  rows.push({ date: new Date().toISOString().slice(0, 10), ...r });
  console.error(JSON.stringify(r));
};

function serve(args, port = 0) {
  const proc = spawn(TIDE_BIN, ['serve', '--no-api', '--port', String(port), '--web', path.join(REPO, 'web'), ...args],
    { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    proc.stdout.on('data', (d) => {
      const m = String(d).match(/http:\/\/[^/]+:(\d+)\//);
      if (m) resolve({ proc, base: m[0], port: Number(m[1]) });
    });
    proc.on('exit', (c) => reject(new Error(`tide serve exited with ${c}`)));
  });
}

const loadAndRun = (page, name, events) => page.evaluate(async ([n, ev]) => {
  const t = await import('/tide.js');
  const t0 = performance.now();
  window.progress = [];
  try {
    const m = await t.load(n, { backend: 'webgpu', onProgress: ev ? (p) => window.progress.push(p) : undefined });
    const loadS = (performance.now() - t0) / 1000;
    const r = await m.complete('Hello', { maxTokens: 2, temperature: 0 });
    const info = m.info;
    m.close();
    return { info, loadS, r };
  } catch (e) {
    return { error: e.message };
  }
}, [name, events]);

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tide-large-'));
try {
  for (const file of MODELS.split(',')) {
    const name = path.basename(file, '.gguf');
    const bytes = fs.statSync(file).size;
    const s = await serve(['--model', file]);
    const ctx = await chromium.launchPersistentContext(path.join(tmp, name), { executablePath: CHROMIUM, headless: true, args: FLAGS });
    const page = await ctx.newPage();
    await page.goto(s.base + 'tide.js');
    for (const phase of ['cold', 'cached']) {
      if (phase === 'cached') await page.reload();
      const r = await loadAndRun(page, name, false);
      if (r.error) {
        record({ model: name, file_bytes: bytes, phase, error: r.error });
        continue;
      }
      const l = r.info.load;
      record({
        model: name, file_bytes: bytes, phase, adapter: r.info.adapter,
        load_s: r.loadS, fetch_s: l.fetch_seconds, downloaded_bytes: l.downloaded_bytes,
        read_through: l.files.every((f) => f.read_through),
        wasm_heap_bytes: l.wasm_heap_bytes, heap_x_file: l.wasm_heap_bytes / bytes,
        heap_at_start_bytes: l.wasm_heap_at_start_bytes, heap_fetched_bytes: l.wasm_heap_fetched_bytes,
        max_binding: r.info.gpu?.max_storage_buffer_binding_size, max_buffer: r.info.gpu?.max_buffer_size,
        first_token_s: r.r.time_to_first_token_s, decode_tok_s: r.r.decode_tokens_per_s,
        tokens: r.r.tokens,
      });
    }
    await ctx.close();
    s.proc.kill('SIGKILL');
  }

  // Resume: the first model, the server killed once half of it has come, then restarted.
  const file = MODELS.split(',')[0];
  const name = path.basename(file, '.gguf');
  const bytes = fs.statSync(file).size;
  const s1 = await serve(['--model', file, '--throttle-files', '20000000']);
  const ctx = await chromium.launchPersistentContext(path.join(tmp, 'resume'), { executablePath: CHROMIUM, headless: true, args: FLAGS });
  const page = await ctx.newPage();
  await page.goto(s1.base + 'tide.js');
  const first = loadAndRun(page, name, true);
  await page.waitForFunction((half) => (window.progress || []).some((p) => p.phase === 'download' && p.fileLoaded > half),
    bytes / 2, { timeout: 600000, polling: 200 });
  s1.proc.kill('SIGKILL');
  const cut = await first;
  const s2 = await serve(['--model', file], s1.port);
  await page.reload();
  const t0 = Date.now();
  const r = await loadAndRun(page, name, false);
  const f = r.info?.load.files[0];
  record({
    model: name, file_bytes: bytes, phase: 'resume', cut_error: cut.error, error: r.error,
    resumed_from: f?.resumed_from, downloaded_bytes: f?.downloaded, verified: f?.verified,
    load_s: (Date.now() - t0) / 1000,
  });
  await ctx.close();
  s2.proc.kill('SIGKILL');
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}
fs.writeFileSync(OUT, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
console.log('| model | file | phase | load s | download s | wasm heap | heap / file | first token s |');
console.log('|---|---:|---|---:|---:|---:|---:|---:|');
for (const r of rows.filter((x) => x.phase !== 'resume' && !x.error)) {
  console.log(`| ${r.model} | ${(r.file_bytes / 1e6).toFixed(0)} MB | ${r.phase} | ${r.load_s.toFixed(1)} | ${r.fetch_s.toFixed(1)} | ` +
    `${(r.wasm_heap_bytes / 1e6).toFixed(1)} MB | ${r.heap_x_file.toFixed(3)}x | ${r.first_token_s.toFixed(1)} |`);
}

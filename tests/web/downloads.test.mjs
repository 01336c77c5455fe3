// Downloads that survive, in real headless Chromium against `tide serve` (issue 35): a download
// cut by the server's death resumes after a restart without fetching again what it had; a
// stored copy that rotted is found by its sha256 and fetched again; a download whose sha256 is
// not models.json's is refused and deleted; no room in the site's storage is said with the
// numbers and the model still loads; the model manager lists and deletes stored files; split
// GGUFs load by name and by any part's URL (all parts fetched); a model too big for wasm's
// memory on the CPU kernels is refused before any download, and one whose context outgrows the
// WebGPU adapter's bindings before its weights come down (only its header is read); two tabs share one loaded model
// (`share: true`). scripts/test-pages.sh sets TIDE_BIN, SMOLLM2, CHROMIUM.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const { TIDE_BIN, SMOLLM2, CHROMIUM } = process.env;
const REPO = path.resolve(import.meta.dirname, '../..');
const SMOL = path.basename(SMOLLM2 || '', '.gguf');
const FLAGS = ['--no-sandbox', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run', '--disable-quic'];

let ctx;
let tmp;
const servers = [];

// A `tide serve` of `args` (files only), on `port` (0: any); resolves to {proc, base, port}.
function serve(args, { port = 0, env = {} } = {}) {
  const proc = spawn(TIDE_BIN, ['serve', '--no-api', '--port', String(port), '--web', path.join(REPO, 'web'), ...args],
    { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } });
  servers.push(proc);
  return new Promise((resolve, reject) => {
    proc.stdout.on('data', (d) => {
      const m = String(d).match(/http:\/\/[^/]+:(\d+)\//);
      if (m) resolve({ proc, base: m[0], port: Number(m[1]) });
    });
    proc.on('exit', (c) => reject(new Error(`tide serve exited with ${c}`)));
  });
}

function native(args) {
  return JSON.parse(execFileSync(TIDE_BIN, args, { encoding: 'utf8', maxBuffer: 64 << 20 }));
}

// A page of the server's origin (its tide.js, shown as text) to drive the JS API from.
async function apiPage(base) {
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.log(`[page error] ${e.message}`));
  await page.goto(base + 'tide.js');
  return page;
}

// load(model, {backend: 'cpu'}) in the page: {info} or {error}; progress events and warnings
// collect in window.events and window.warnings.
const loadIn = (page, model) => page.evaluate(async (m) => {
  const t = await import('/tide.js');
  window.events = [];
  window.warnings = [];
  try {
    window.model?.close();
    window.model = await t.load(m, { backend: 'cpu', onProgress: (p) => window.events.push(p), onWarning: (w) => window.warnings.push(w) });
    return { info: window.model.info };
  } catch (e) {
    return { error: e.message };
  }
}, model);

const manager = (page, action, arg) => page.evaluate(async ([a, x]) => {
  const { models } = await import('/tide.js');
  return models[a](x);
}, [action, arg]);

before(async () => {
  assert.ok(TIDE_BIN && SMOLLM2 && CHROMIUM, 'run through scripts/test-pages.sh');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tide-downloads-'));
  ctx = await chromium.launchPersistentContext(path.join(tmp, 'profile'), {
    executablePath: CHROMIUM, headless: true, args: FLAGS,
  });
});

after(async () => {
  await ctx?.close();
  for (const s of servers) s.kill('SIGKILL');
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('a download cut by the server dying resumes after a restart, fetching only the rest; progress gives rate and time left', async () => {
  const bytes = fs.statSync(SMOLLM2).size;
  // 6 MB/s: the first third of the file takes ~5 s, time enough to cut it there.
  const s1 = await serve(['--model', SMOLLM2, '--throttle-files', '6000000']);
  const page = await apiPage(s1.base);
  await page.evaluate(() => { window.events = []; });
  const loading = loadIn(page, SMOL);
  await page.waitForFunction(() => (window.events || []).some((e) => e.phase === 'download' && e.fileLoaded > 30e6),
    null, { timeout: 60000, polling: 100 });
  s1.proc.kill('SIGKILL');
  const cut = await loading;
  assert.match(cut.error || '', /download failed after \d+ of \d+ bytes.*load again to resume/, JSON.stringify(cut));
  const events = await page.evaluate(() => window.events);
  const last = events.filter((e) => e.phase === 'download').at(-1);
  assert.equal(last.file, path.basename(SMOLLM2));
  assert.equal(last.fileTotal, bytes);
  assert.ok(last.rate > 2e6 && last.rate < 9e6, `rate ${last.rate} B/s at a 6 MB/s link`);
  assert.ok(last.etaSeconds > 0 && last.etaSeconds < 60, `time left ${last.etaSeconds} s`);

  // The same origin again (same port), the page reloaded: the download resumes from what was kept.
  const s2 = await serve(['--model', SMOLLM2], { port: s1.port });
  const stored = (await manager(page, 'list')).find((e) => e.file === path.basename(SMOLLM2));
  assert.ok(stored && !stored.complete && stored.stored_bytes >= 30e6, JSON.stringify(stored));
  const gets = [];
  const onReq = (r) => r.url().includes('/models/') && r.method() === 'GET' && gets.push(r.headers().range || 'whole');
  ctx.on('request', onReq);
  await page.reload();
  const r = await loadIn(page, SMOL);
  ctx.off('request', onReq);
  assert.equal(r.error, undefined, r.error);
  const f = r.info.load.files[0];
  assert.ok(f.resumed_from >= stored.stored_bytes - (8 << 20) && f.resumed_from <= stored.stored_bytes,
    `resumed at ${f.resumed_from}, ${stored.stored_bytes} were kept`);
  assert.equal(f.downloaded, bytes - f.resumed_from);
  assert.deepEqual(gets, [`bytes=${f.resumed_from}-`], 'one request, for the rest of the file only');
  // Checked against models.json's sha256 (the server hashed the file on disk).
  assert.equal(f.verified, true);
  assert.equal(f.sha256, execFileSync('sha256sum', [SMOLLM2], { encoding: 'utf8' }).slice(0, 64));
  const want = native(['generate', '--backend', 'cpu', '--model', SMOLLM2, '--temperature', '0', '--json', '--max-tokens', '8', 'Once upon a time']);
  const got = await page.evaluate(() => window.model.complete('Once upon a time', { maxTokens: 8, temperature: 0 }));
  assert.deepEqual(got.tokens, want.tokens);
  // Now whole and stored: the next load reads it from the store, downloading nothing.
  const again = await loadIn(page, SMOL);
  assert.equal(again.info.load.downloaded_bytes, 0);
  assert.equal(again.info.load.files[0].cached, true);
  await page.close();
  s2.proc.kill('SIGKILL');
});

test('a stored copy that rotted is found by its sha256, deleted and fetched again; a download that is not what models.json says is refused and deleted', async () => {
  const model = path.join(tmp, 'tide-k4');
  fs.cpSync(path.join(REPO, 'models/tide-k4'), model, { recursive: true });
  const s = await serve(['--model', model]);
  const page = await apiPage(s.base);
  const first = await loadIn(page, 'tide-k4');
  assert.equal(first.error, undefined, first.error);
  const weights = first.info.load.files.find((f) => f.name === 'model.safetensors');
  assert.ok(weights.verified && weights.stored, JSON.stringify(weights));
  // Flip one byte of the stored copy, in the page's own storage (the model closed first: it
  // holds its weights file open to read it through).
  const rec = (await manager(page, 'list')).find((e) => e.file === 'model.safetensors');
  await page.evaluate(() => window.model.close());
  await page.evaluate(async (key) => {
    const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle('tide-models-v2');
    const fh = await dir.getFileHandle(key);
    const byte = new Uint8Array(await (await fh.getFile()).slice(100000, 100001).arrayBuffer());
    const w = await fh.createWritable({ keepExistingData: true });
    await w.write({ type: 'write', position: 100000, data: new Uint8Array([byte[0] ^ 0xff]) });
    await w.close();
  }, rec.key);
  const second = await loadIn(page, 'tide-k4');
  assert.equal(second.error, undefined, second.error);
  const w2 = second.info.load.files.find((f) => f.name === 'model.safetensors');
  assert.equal(w2.cached, false);
  assert.equal(w2.downloaded, weights.bytes);
  assert.match(second.info.load.warnings.join('\n'), /model\.safetensors: the stored copy is corrupt \(sha256 [0-9a-f]{64}, expected [0-9a-f]{64}\)/);
  const want = native(['generate', '--backend', 'cpu', '--model', model, '--temperature', '0', '--json', '--max-tokens', '8', 'Once upon a time']);
  const got = await page.evaluate(() => window.model.complete('Once upon a time', { maxTokens: 8, temperature: 0 }));
  assert.deepEqual(got.tokens, want.tokens);
  // The file changes on disk under the server, same size: its models.json hash is the old one.
  await manager(page, 'clear');
  const p = path.join(model, 'model.safetensors');
  const buf = fs.readFileSync(p);
  buf[buf.length - 7] ^= 0xff;
  fs.writeFileSync(p, buf);
  const bad = await loadIn(page, 'tide-k4');
  assert.match(bad.error || '', /model\.safetensors: the download's sha256 is [0-9a-f]{64}, but models\.json gives [0-9a-f]{64}: the file is corrupt, and was deleted/);
  const left = await manager(page, 'list');
  assert.ok(!left.some((e) => e.file === 'model.safetensors'), JSON.stringify(left));
  await page.close();
  s.proc.kill('SIGKILL');
});

test('no room in the site storage: the numbers are said, the model still loads, nothing partial is kept', async () => {
  const s = await serve(['--model', SMOLLM2]);
  const page = await apiPage(s.base);
  await manager(page, 'clear');
  const cdp = await ctx.newCDPSession(page);
  const origin = new URL(s.base).origin;
  await cdp.send('Storage.overrideQuotaForOrigin', { origin, quotaSize: 20e6 });
  try {
    const r = await loadIn(page, SMOL);
    assert.equal(r.error, undefined, r.error);
    const mbs = (fs.statSync(SMOLLM2).size / 1e6).toFixed(1);
    // The browser's estimate does not see CDP's quota (it says 10 GB free), so the check before
    // the download passes and the storage refuses a write midway: said with what it took.
    const m = r.info.load.warnings.join('\n').match(
      new RegExp(`${SMOL.replace(/\./g, '\\.')}\\.gguf: ${mbs} MB to store, but this site's storage took (\\d+\\.\\d) MB of it and refused more`));
    assert.ok(m && Number(m[1]) <= 20, r.info.load.warnings.join('\n'));
    assert.equal(r.info.load.files[0].stored, false);
    assert.equal(r.info.load.files[0].verified, true);
    assert.deepEqual(await manager(page, 'list'), []);
    const got = await page.evaluate(() => window.model.complete('Hi', { maxTokens: 2, temperature: 0 }));
    assert.equal(got.tokens.length, 2);
  } finally {
    await cdp.send('Storage.overrideQuotaForOrigin', { origin });
  }
  await page.close();
  s.proc.kill('SIGKILL');
});

test('the model manager lists stored files with sizes and hashes, deletes one model, and clears all', async () => {
  const s = await serve(['--model', path.join(REPO, 'models/tide-k4'), '--model', path.join(REPO, 'tests/fixtures/split/tiny.q4_k_m-00001-of-00002.gguf')]);
  const page = await apiPage(s.base);
  await manager(page, 'clear');
  const fetched = {};
  for (const m of ['tide-k4', 'tiny.q4_k_m']) {
    const r = await loadIn(page, m);
    assert.equal(r.error, undefined, r.error);
    fetched[m] = r.info.load.files.map((f) => f.name);
  }
  const listed = await page.evaluate(async () => (await import('/tide.js')).listModels());
  const list = await manager(page, 'list');
  assert.equal(list.length, fetched['tide-k4'].length + fetched['tiny.q4_k_m'].length, JSON.stringify(list));
  for (const m of listed) {
    for (const name of fetched[m.name]) {
      const f = m.files.find((x) => x.url.endsWith(`/${name}`));
      const e = list.find((x) => x.model === m.name && x.file === name);
      assert.ok(e, `${m.name}/${name} stored: ${JSON.stringify(list)}`);
      assert.equal(e.complete, true);
      assert.equal(e.bytes, f.bytes);
      assert.equal(e.stored_bytes, f.bytes);
      assert.equal(e.sha256, f.sha256);
    }
  }
  const n = list.filter((e) => e.model === 'tiny.q4_k_m').length;
  assert.equal(n, 2, 'both parts of the split model');
  // The loaded model holds its files open (read through): they are not deleted under it.
  assert.equal(await manager(page, 'delete', 'tiny.q4_k_m'), 0);
  assert.equal((await manager(page, 'list')).length, list.length);
  await page.evaluate(() => window.model.close());
  assert.equal(await manager(page, 'delete', 'tiny.q4_k_m'), 2);
  const after1 = await manager(page, 'list');
  assert.ok(after1.length > 0 && after1.every((e) => e.model === 'tide-k4'), JSON.stringify(after1));
  await manager(page, 'clear');
  assert.deepEqual(await manager(page, 'list'), []);
  await page.close();
  s.proc.kill('SIGKILL');
});

test('a split GGUF loads by name and by any part URL, with native greedy tokens', async () => {
  const first = path.join(REPO, 'tests/fixtures/split/tiny.q4_k_m-00001-of-00002.gguf');
  const s = await serve(['--model', first]);
  const page = await apiPage(s.base);
  const want = native(['generate', '--backend', 'cpu', '--model', first, '--temperature', '0', '--json', '--max-tokens', '8', 'Hello']);
  for (const m of ['tiny.q4_k_m', '/models/tiny.q4_k_m/tiny.q4_k_m-00002-of-00002.gguf']) {
    const r = await loadIn(page, m);
    assert.equal(r.error, undefined, `${m}: ${r.error}`);
    assert.deepEqual(r.info.load.files.map((f) => f.name), ['tiny.q4_k_m-00001-of-00002.gguf', 'tiny.q4_k_m-00002-of-00002.gguf']);
    const got = await page.evaluate(() => window.model.complete('Hello', { maxTokens: 8, temperature: 0 }));
    assert.deepEqual(got.tokens, want.tokens, m);
  }
  await page.close();
  s.proc.kill('SIGKILL');
});

test('a model too big for the CPU kernels in wasm is refused before any download, with the numbers', async () => {
  // A sparse 4.5 GB file: served and hashed like any, never fetched.
  const big = path.join(tmp, 'huge.gguf');
  fs.closeSync(fs.openSync(big, 'w'));
  fs.truncateSync(big, 4.5e9);
  const s = await serve(['--model', big]);
  const page = await apiPage(s.base);
  const gets = [];
  const onReq = (r) => r.url().includes('/models/') && r.method() === 'GET' && gets.push(r.url());
  ctx.on('request', onReq);
  const r = await loadIn(page, 'huge'); // backend 'cpu'
  ctx.off('request', onReq);
  assert.match(r.error || '', /the model's files are 4\.50 GB, more than the 4\.03 GB the CPU kernels in wasm can hold \(wasm memory ends at 4\.29 GB\): nothing was downloaded/, JSON.stringify(r));
  assert.deepEqual(gets, []);
  assert.deepEqual(await manager(page, 'list'), []);
  await page.close();
  s.proc.kill('SIGKILL');
});

test('a model whose context cannot fit the WebGPU adapter is refused before its download, from its header read by Range, with the numbers; one that fits is sized and its kernels compiled during the download, and neither runs from the store', async () => {
  // This test alone needs WebGPU (SwiftShader here).
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: [...FLAGS, '--enable-unsafe-webgpu'] });
  const s = await serve(['--model', SMOLLM2]);
  try {
    const page = await browser.newPage();
    await page.goto(s.base + 'tide.js');
    const maxBind = await page.evaluate(async () => (await navigator.gpu.requestAdapter()).limits.maxStorageBufferBindingSize);
    // SmolLM2's K/V per position and layer: 3 heads x 64 x 4 bytes, for each slot. With one
    // slot SwiftShader's 1 GiB bindings hold any context the library allows (2^20), so two.
    const slots = 2;
    const longest = Math.floor(maxBind / (768 * slots));
    assert.ok(longest < 2 ** 20, `this adapter's bindings (${maxBind} bytes) hold any context the library allows`);
    const requests = [];
    page.on('request', (r) => r.url().includes('/models/') && r.method() === 'GET' && requests.push(r.headers().range || 'whole'));
    let got = 0;
    page.on('response', async (r) => {
      if (r.url().includes('/models/') && r.request().method() === 'GET') got += (await r.body().catch(() => Buffer.alloc(0))).length;
    });
    const r = await page.evaluate(async ([m, ctxLen]) => {
      const t = await import('/tide.js');
      try {
        await t.load(m, { backend: 'webgpu', ctxLen, slots: 2 });
        return {};
      } catch (e) {
        return { error: e.message };
      }
    }, [SMOL, longest + 1]);
    const mib = Math.floor(maxBind / 2 ** 20);
    assert.match(r.error || '', new RegExp(`does not fit this GPU adapter, so nothing was downloaded: .*context ${longest + 1} x ${slots} slots is too long for this adapter's ${mib} MiB storage bindings.*at most ${longest} here\\) or fewer slots`), JSON.stringify(r));
    // Only the header, by Range: SmolLM2's is 1.79 MB of its 98 MB.
    assert.ok(requests.length > 0 && requests.every((h) => h.startsWith('bytes=')), JSON.stringify(requests));
    assert.ok(got > 1e6 && got < 4e6, `read ${got} bytes`);
    assert.deepEqual(await page.evaluate(async () => (await import('/tide.js')).models.list()), []);
    // A context that fits: sized before the download and, by default ('auto', the weights
    // being downloaded), its kernels compiled during it; loaded again from the store, neither
    // runs (nothing to download).
    const loadInfo = () => page.evaluate(async (m) => {
      const t = await import('/tide.js');
      window.model?.close();
      window.model = await t.load(m, { backend: 'webgpu', ctxLen: 64 });
      return window.model.info.load;
    }, SMOL);
    const first = await loadInfo();
    assert.equal(first.gpu_fit?.ctx_len, 64, JSON.stringify(first.gpu_fit));
    assert.equal(first.gpu_fit.kv_bytes, 30 * 2 * 64 * 768);
    assert.ok(first.warm?.pipelines > 10, JSON.stringify(first.warm));
    const again = await loadInfo();
    assert.equal(again.downloaded_bytes, 0);
    assert.equal(again.gpu_fit, null);
    assert.equal(again.warm, null);
  } finally {
    await browser.close();
    s.proc.kill('SIGKILL');
  }
});

test('two tabs share one loaded model: one download, one engine, answers equal to running alone; the other tab takes over when the first closes', async () => {
  const model = path.join(REPO, 'models/tide-k4');
  const s = await serve(['--model', model]);
  const gets = [];
  const onReq = (r) => r.url().includes('/models/') && r.method() === 'GET' && gets.push(r.url());
  ctx.on('request', onReq);
  const [a, b] = [await apiPage(s.base), await apiPage(s.base)];
  const loadShared = (page) => page.evaluate(async () => {
    const t = await import('/tide.js');
    window.model = await t.load('tide-k4', { backend: 'cpu', share: true });
    return window.model.info;
  });
  const ia = await loadShared(a);
  const fetched = [...gets];
  const ib = await loadShared(b);
  assert.equal(ia.shared.role, 'leader');
  assert.equal(ib.shared.role, 'follower');
  assert.equal(ib.model, ia.model);
  assert.deepEqual(gets, fetched, 'the second tab downloaded nothing');
  assert.equal(new Set(gets).size, gets.length, 'each file fetched once');
  const want = native(['generate', '--backend', 'cpu', '--model', model, '--temperature', '0', '--json', '--max-tokens', '8', 'Once upon a time']);
  const complete = (page) => page.evaluate(() => window.model.complete('Once upon a time', { maxTokens: 8, temperature: 0 }));
  const [ra, rb] = await Promise.all([complete(a), complete(b)]);
  assert.deepEqual(ra.tokens, want.tokens);
  assert.deepEqual(rb.tokens, want.tokens);
  // Streamed pieces, and a cancel, reach the follower's generation.
  const streamed = await b.evaluate(async () => {
    const ac = new AbortController();
    const out = [];
    const it = window.model.generate('Once upon a time', { maxTokens: 1000, temperature: 0, signal: ac.signal });
    for await (const p of it) {
      out.push(p);
      if (out.length === 2) ac.abort();
    }
    return { pieces: out.length, stop: (await it.done).stop };
  });
  assert.equal(streamed.stop, 'cancelled');
  assert.ok(streamed.pieces >= 2 && streamed.pieces < 1000, JSON.stringify(streamed));
  // The leader's tab closes: the other tab leads, loading the model from the store.
  gets.length = 0;
  await a.close();
  await b.waitForFunction(() => window.model.info.shared.role === 'leader', null, { timeout: 60000 });
  const rb2 = await complete(b);
  assert.deepEqual(rb2.tokens, want.tokens);
  assert.deepEqual(gets, [], 'the new leader read the model from the store');
  ctx.off('request', onReq);
  await b.close();
  s.proc.kill('SIGKILL');
});

test('a cut download of a file that then changes on the server starts over: two versions are never spliced', async () => {
  const model = path.join(tmp, 'tide-k4-changing');
  fs.cpSync(path.join(REPO, 'models/tide-k4'), model, { recursive: true });
  const weights = path.join(model, 'model.safetensors');
  const s1 = await serve(['--model', model, '--throttle-files', '2000000']);
  const page = await apiPage(s1.base);
  const loading = loadIn(page, 'tide-k4-changing');
  await page.waitForFunction(() => (window.events || []).some((e) => e.file === 'model.safetensors' && e.fileLoaded > 4e6),
    null, { timeout: 60000, polling: 100 });
  s1.proc.kill('SIGKILL');
  assert.match((await loading).error || '', /download failed/);
  // The file changes under the server (same size, a new modification time: a new ETag).
  const buf = fs.readFileSync(weights);
  buf[buf.length - 5] ^= 0x01;
  fs.writeFileSync(weights, buf);
  const s2 = await serve(['--model', model], { port: s1.port });
  await page.reload();
  const r = await loadIn(page, 'tide-k4-changing');
  assert.equal(r.error, undefined, r.error);
  const f = r.info.load.files.find((x) => x.name === 'model.safetensors');
  assert.equal(f.resumed_from, 0, 'the old version\'s bytes were not reused');
  assert.equal(f.downloaded, buf.length);
  assert.equal(f.sha256, execFileSync('sha256sum', [weights], { encoding: 'utf8' }).slice(0, 64));
  const stored = (await manager(page, 'list')).filter((e) => e.file === 'model.safetensors');
  assert.equal(stored.length, 1, `the older partial copy was dropped: ${JSON.stringify(stored)}`);
  assert.equal(stored[0].complete, true);
  await page.close();
  s2.proc.kill('SIGKILL');
});

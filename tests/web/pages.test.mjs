// The pages in web/ in real headless Chromium (Debian's, through playwright-core), against
// `tide serve`: the browser's greedy tokens and router weights must equal what the native
// `tide` prints for the same model; errors must show on the page; without WebGPU the page must
// still generate (CPU reference in wasm); a reload must not download the model again.
// scripts/test-pages.sh builds what this needs and sets: TIDE_BIN, SMOLLM2 (a GGUF path),
// CHROMIUM, SHOTS (a folder for screenshots).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const { TIDE_BIN, SMOLLM2, CHROMIUM, SHOTS } = process.env;
const PROMPTS = ['The history of the city', 'Once upon a time', 'The capital of France is'];
const TOKENS = 32;
const FLAGS = ['--no-sandbox', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run', '--disable-quic'];

let server;
let base;
let browser;
let tmp;
let stream;

// Native runs are on the GPU (lavapipe here) unless a test names a backend: the pages run on
// WebGPU (SwiftShader), so both sides run the same kernels.
function native(args) {
  const all = args.includes('--backend') ? args : [args[0], '--backend', 'gpu', ...args.slice(1)];
  const out = execFileSync(TIDE_BIN, all, { encoding: 'utf8', maxBuffer: 64 << 20 });
  return JSON.parse(out);
}

async function launch(webgpu) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tide-pw-'));
  return chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1100, height: 900 },
    args: webgpu ? ['--enable-unsafe-webgpu', ...FLAGS] : FLAGS,
  });
}

// Pages ask for WebGPU unless the URL names a backend (or `auto` is set): SwiftShader is a
// software (fallback) adapter, which the page's own choice leaves for the CPU kernels.
async function open(ctx, url, { auto = false } = {}) {
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.log(`[page error] ${e.message}`));
  page.on('console', (m) => m.type() === 'error' && console.log(`[console] ${m.text()}`));
  const pinned = auto || url.includes('backend=') || !url.includes('?') ? url : `${url}&backend=webgpu`;
  await page.goto(base + pinned);
  return page;
}

// Resolves to the model's info, or to {error} when the page failed to load one.
const ready = (page) => page.evaluate(() => window.tide.ready.then((i) => i, (e) => ({ error: e.message })));

async function shot(page, name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, name), fullPage: true });
}

before(async () => {
  assert.ok(TIDE_BIN && SMOLLM2 && CHROMIUM && SHOTS, 'run through scripts/test-pages.sh');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tide-pages-'));
  // A GGUF cut off in its tensor data: the download is whole, the file is not.
  const trunc = path.join(tmp, 'truncated.gguf');
  const fd = fs.openSync(SMOLLM2, 'r');
  const head = Buffer.alloc(4 << 20);
  fs.readSync(fd, head, 0, head.length, 0);
  fs.closeSync(fd);
  fs.writeFileSync(trunc, head);
  // The default model with its memory in a separate file (what `tide compress` writes), to
  // stream that file's rows rather than download it.
  stream = path.join(tmp, 'tide-k4-stream');
  execFileSync(TIDE_BIN, ['compress', '--bits', '4', '--out', stream], { stdio: 'ignore' });
  const repo = path.resolve(import.meta.dirname, '../..');
  server = spawn(TIDE_BIN, ['serve', '--no-api', '--port', '0', '--web', path.join(repo, 'web'),
    '--model', path.join(repo, 'models/tide-k4'), '--model', SMOLLM2, '--model', trunc,
    '--model', stream, '--model', path.join(repo, 'models/smollm2-tide')],
  { stdio: ['ignore', 'pipe', 'inherit'] });
  base = await new Promise((resolve, reject) => {
    server.stdout.on('data', (d) => {
      const m = String(d).match(/http:\/\/\S+\//);
      if (m) resolve(m[0]);
    });
    server.on('exit', (c) => reject(new Error(`tide serve exited with ${c}`)));
  });
  browser = await launch(true);
});

after(async () => {
  await browser?.close();
  server?.kill();
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('default model: 32 greedy tokens equal native for 3 prompts; a reload downloads nothing', async () => {
  const gets = [];
  browser.on('request', (r) => r.url().includes('/models/') && r.method() === 'GET' && gets.push(r.url()));
  const page = await open(browser, '?model=tide-k4');
  const info = await ready(page);
  assert.equal(info.error, undefined, info.error);
  assert.equal(info.backend, 'webgpu');
  assert.ok(gets.length >= 3, `the first load fetched the model files: ${gets}`);
  // models/tide-k4 also holds memory-f16.safetensors (train/'s f16 tables), not a model file.
  assert.ok(!gets.some((u) => u.endsWith('/memory-f16.safetensors')), `${gets}`);
  for (const prompt of PROMPTS) {
    const want = native(['generate', '--temperature', '0', '--json', '--max-tokens', String(TOKENS), prompt]);
    const got = await page.evaluate(([p, n]) => window.tide.complete(p, { maxTokens: n, temperature: 0 }), [prompt, TOKENS]);
    assert.deepEqual(got.prompt_tokens, want.prompt_tokens, prompt);
    assert.deepEqual(got.tokens, want.tokens, `greedy tokens after "${prompt}"`);
    assert.equal(got.text, want.text);
  }
  // An AbortSignal stops a generation after its first piece.
  const cut = await page.evaluate(async () => {
    const ac = new AbortController();
    const it = window.tide.generate('Once upon a time', { maxTokens: 200, temperature: 0, signal: ac.signal });
    let pieces = 0;
    for await (const _ of it) { pieces++; ac.abort(); }
    return { pieces, result: await it.done };
  });
  assert.equal(cut.result.stop, 'cancelled');
  assert.ok(cut.result.tokens.length < 10, `stopped early: ${cut.result.tokens.length} tokens`);
  // The demo's own controls: type, generate, see the text stream in.
  await page.fill('#prompt', PROMPTS[0]);
  await page.fill('#temperature', '0');
  await page.fill('#maxTokens', '12');
  await page.click('#go');
  await page.waitForFunction(() => document.querySelector('#stats').textContent.includes('stop:'), null, { timeout: 120000 });
  // The page shows the prompt, then what native greedy decoding gives for 12 tokens.
  const want12 = native(['generate', '--temperature', '0', '--json', '--max-tokens', '12', PROMPTS[0]]);
  assert.equal(await page.textContent('#output'), PROMPTS[0] + want12.text);
  await shot(page, 'demo.png');

  gets.length = 0;
  await page.reload();
  const again = await ready(page);
  assert.equal(again.error, undefined, again.error);
  assert.deepEqual(gets, [], 'a reload must read the model from the browser cache');
  assert.equal(again.load.downloaded_bytes, 0);
  await page.close();
});

// About 200 tokens of plain English with a few rare words, for the inspection page's layout.
const LONG_TEXT = 'The old harbour town woke slowly that morning. Fishermen dragged their nets across the ' +
  'wet stones while gulls argued over the scraps. In the market, a woman sold bread, cheese and ' +
  'small jars of honey from the hills, and children ran between the stalls shouting at each other. ' +
  'Nobody noticed the stranger who stepped off the ferry with a violin case and a map of Reykjavik. ' +
  'He asked the baker for directions to the lighthouse, then walked along the river until the ' +
  'houses gave way to fields of barley. At noon he sat under a chestnut tree, opened the case and ' +
  'took out not a violin but a sextant, polished and heavy. He measured the sun twice, wrote a ' +
  'number in his notebook, and smiled. By evening the whole town knew his name, though none of ' +
  'them could say where he had come from or why he had stayed.';

test("README's JS quick start runs as written and gives native's greedy text", async () => {
  const readme = fs.readFileSync(path.resolve(import.meta.dirname, '../../README.md'), 'utf8');
  const block = readme.match(/```js\n([\s\S]*?)```/);
  assert.ok(block, 'README.md has a js block');
  // Its static import, made dynamic so that the block runs inside page.evaluate.
  const body = block[1].replace(/^import \{([^}]*)\} from '\.\/tide\.js';$/m,
    "const {$1} = await import('/tide.js');");
  assert.notEqual(body, block[1], 'the block imports from ./tide.js');
  const page = await open(browser, '?model=tide-k4');
  const text = await page.evaluate(`(async () => { ${body}\n model.close(); return text; })()`);
  const want = native(['generate', '--temperature', '0', '--json', '--max-tokens', '16', 'In the beginning']);
  assert.equal(text, want.text);
  await page.close();
});

test('inspection page: router weights equal native tide inspect --json within 1e-3; legends, axis titles, NULL, frequency marks', async () => {
  const text = 'The zebra and the aardvark met a quokka by the river in Ljubljana.';
  const want = native(['inspect', '--json', text]);
  const page = await open(browser, 'inspect.html?model=tide-k4');
  await page.waitForFunction(() => window.tide.lastInspection || window.tide.error, null, { timeout: 300000 });
  const got = await page.evaluate(() => window.tide.lastInspection);
  assert.ok(got, 'the page inspected its text');
  assert.deepEqual(got.tokens, want.tokens);
  assert.deepEqual(got.pieces, want.pieces);
  assert.equal(got.k, want.k);
  let worst = 0;
  want.weights.forEach((t, i) => t.forEach((s, l) => s.forEach((w, j) => {
    worst = Math.max(worst, Math.abs(w - got.weights[i][l][j]));
  })));
  assert.ok(worst <= 1e-3, `largest router weight difference ${worst}`);
  const lo = Number(await page.textContent('.legend-min'));
  const hi = Number(await page.textContent('.legend-max'));
  assert.ok(hi - lo > 0.01 && hi <= 1, `the colour scale spans the data: ${lo}..${hi}`);
  // The exports: JSON in `tide inspect --json`'s shape, and a PNG.
  const [json] = await Promise.all([page.waitForEvent('download'), page.click('#json')]);
  const exported = JSON.parse(fs.readFileSync(await json.path(), 'utf8'));
  assert.deepEqual(Object.keys(exported).sort(), Object.keys(want).sort());
  assert.deepEqual(exported.weights, got.weights);
  const [png] = await Promise.all([page.waitForEvent('download'), page.click('#png')]);
  assert.deepEqual([...fs.readFileSync(await png.path()).subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47]);

  // What a reader who never read the paper needs: what NULL is, axis titles, a legend for
  // every colour, values on hover.
  assert.ok(await page.isVisible('#nullNote'));
  assert.match(await page.textContent('#nullNote'), /NULL is the router's “no memory” slot: its vector is zero/);
  assert.equal(await page.textContent('#xTitle'), 'layer');
  assert.equal(await page.textContent('#yTitle'), 'token (position, text)');
  assert.ok(await page.isVisible('#xTitle') && await page.isVisible('#yTitle'));
  assert.equal(await page.locator('#layerNums span').count(), want.layers);
  const texts = (sel) => page.$$eval(sel, (els) => els.map((e) => e.textContent.trim()));
  assert.deepEqual(await texts('#layers .axis-title'), ['layer', 'mean router weight']);
  assert.deepEqual(await texts('#deciles .axis-title'), ['training-frequency decile (0 = rarest)', 'mean NULL weight']);
  const slots = [...Array.from({ length: want.k }, (_, j) => `block ${j}`), 'NULL'];
  assert.deepEqual(await texts('#layersLegend .entry'), slots, 'the layer chart has a legend entry per slot');
  assert.equal(await page.locator('#layers .bar').count(), want.layers);
  assert.equal(await page.locator('#decileLegend .entry').count(), 1);
  // A bar's hover shows its values in the tip.
  await page.hover('#layers .bar >> nth=1');
  assert.ok(await page.isVisible('#tip'));
  const barTip = await page.textContent('#tip');
  assert.match(barTip, /^layer 1, mean over \d+ tokens/);
  for (const name of slots) assert.match(barTip, new RegExp(`${name}\\s+0\\.\\d{4}`), barTip);
  await page.hover('#deciles .bar >> nth=0');
  assert.match(await page.textContent('#tip'), /^decile 0: (mean NULL weight 0\.\d{4}|no token of this text)/);

  // Training frequency: the model has counts, so the page gets each token's count and its
  // vocabulary-wide decile (native's); the decile chart groups the tokens by those.
  assert.deepEqual(got.token_counts, want.token_counts);
  assert.deepEqual(got.token_deciles, want.token_deciles);
  assert.ok(await page.isVisible('#mark'));
  assert.ok(!(await page.isVisible('#markNote')));
  assert.match(await page.textContent('#decileCaption'), /whole vocabulary/);
  const decileNs = async () => (await texts('#deciles > text:not(.axis-title)')).filter((x) => x.startsWith('n=')).map((x) => Number(x.slice(2)));
  const perDecile = (dec) => Array.from({ length: 10 }, (_, d) => dec.filter((x) => x === d).length);
  assert.deepEqual(await decileNs(), perDecile(want.token_deciles));
  const LABEL = 190, CELL = 18;
  // The heatmap's canvas, scrolled into the window (the bar hovers scrolled to the charts).
  const heatBox = async () => {
    await page.evaluate(() => window.scrollTo(0, document.querySelector('#scroller').getBoundingClientRect().top + window.scrollY - 8));
    return page.locator('#heat').boundingBox();
  };
  // A cell's hover: every slot's weight, and the token's training count and decile.
  let box = await heatBox();
  await page.mouse.move(box.x + LABEL + 1.5 * CELL, box.y + 2.5 * CELL);
  let tip = await page.textContent('#tip');
  const seen = (d, t) => `seen ${d.token_counts[t]} time${d.token_counts[t] === 1 ? '' : 's'} in training, decile ${d.token_deciles[t]}`;
  assert.ok(tip.startsWith('token 2 ') && tip.includes('layer 1'), tip);
  assert.ok(tip.includes(seen(want, 2)), tip);
  assert.match(tip, /NULL\s+0\.\d{4}/);
  await shot(page, 'inspect.png');

  // About 200 tokens. tide-k4 splits the short text's rare words into common pieces; this text
  // has tokens of deciles 0 to 2 for the marking.
  const wantLong = native(['inspect', '--json', LONG_TEXT]);
  assert.ok(wantLong.tokens.length >= 150, `${wantLong.tokens.length} tokens`);
  await page.fill('#text', LONG_TEXT);
  await page.click('#inspect');
  await page.waitForFunction((len) => window.tide.lastInspection.tokens.length === len && !document.querySelector('#status').dataset.busy,
    wantLong.tokens.length, { timeout: 300000 });
  const long = await page.evaluate(() => window.tide.lastInspection);
  assert.deepEqual(long.token_deciles, wantLong.token_deciles);
  assert.deepEqual(await decileNs(), perDecile(wantLong.token_deciles));
  box = await heatBox();
  await page.mouse.move(box.x + LABEL + 3.5 * CELL, box.y + 6.5 * CELL);
  assert.ok((await page.textContent('#tip')).includes(seen(wantLong, 6)));
  await shot(page, 'inspect-200-tokens.png');

  // Marking tokens by frequency: each choice marks the rows of its deciles (a strip in the
  // decile's colour at the label's left edge), and switching changes them.
  const rare = wantLong.token_deciles.indexOf(0);
  const common = wantLong.token_deciles.findIndex((d, t) => t > rare && d > 2);
  assert.ok(rare >= 0 && common > rare, `deciles ${wantLong.token_deciles}`);
  await page.$eval('#scroller', (s, top) => { s.scrollTop = top; }, (rare - 3) * CELL);
  await page.waitForFunction((f) => Number(document.querySelector('#heat').dataset.first) === f, rare - 3);
  const upTo = (u) => wantLong.token_deciles.flatMap((d, t) => (d <= u ? [t] : [])).join(',');
  const marked = () => page.$eval('#heat', (c) => c.dataset.marked);
  // The colour at a row's marker strip (the canvas's device pixels).
  const strip = (t) => page.$eval('#heat', (c, [row, cell]) => {
    const dpr = c.width / c.clientWidth;
    const y = Math.round((row - Number(c.dataset.first) + 0.5) * cell * dpr);
    return [...c.getContext('2d').getImageData(Math.round(3 * dpr), y, 1, 1).data.slice(0, 3)];
  }, [t, CELL]);
  let before = null;
  for (const [mode, upto] of [['none', -1], ['rare10', 0], ['rare30', 2], ['decile', 9]]) {
    await page.selectOption('#mark', mode);
    const m = await marked();
    assert.equal(m, upTo(upto), `marked rows for "${mode}"`);
    if (before !== null) assert.notEqual(m, before, `switching to "${mode}" changes the marked rows`);
    before = m;
    assert.equal(await page.isVisible('#markLegend'), upto >= 0);
    if (upto >= 0) assert.equal(await page.locator('#markLegend .entry').count(), upto + 1);
    assert.deepEqual(await strip(rare), upto >= 0 ? [142, 1, 82] : [255, 255, 255], `token ${rare}'s marker for "${mode}"`);
    if (upto < 9) assert.deepEqual(await strip(common), [255, 255, 255], `token ${common} unmarked for "${mode}"`);
  }
  await page.selectOption('#mark', 'rare10');
  // The rare token's hover gives its training count; the column header stays at the top.
  box = await heatBox();
  const head = await page.locator('#heatHead').boundingBox();
  const scroller = await page.locator('#scroller').boundingBox();
  assert.ok(Math.abs(head.y - scroller.y) <= 2, `the header stays at the top: ${head.y} vs ${scroller.y}`);
  await page.mouse.move(box.x + LABEL + 2.5 * CELL, box.y + (rare - (rare - 3) + 0.5) * CELL);
  tip = await page.textContent('#tip');
  assert.ok(tip.startsWith(`token ${rare} `) && tip.includes(seen(wantLong, rare)) && tip.includes('decile 0'), tip);
  await page.locator('#scroller').screenshot({ path: path.join(SHOTS, 'inspect-200-tokens-scrolled.png') });

  // SmolLM2-135M's shape (30 layers, K = 4) with the 200 tokens: shown from an inspection
  // object (the page's tide.showInspection), the heatmap fits the page without sideways
  // scrolling, every layer is numbered and charted.
  const layers = 30;
  await page.evaluate(([d, layers]) => {
    let seed = 1;
    const rnd = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
    const weights = d.tokens.map((_, t) => Array.from({ length: layers }, (_, l) => {
      const e = Array.from({ length: d.k + 1 }, (_, j) => Math.exp(2 * rnd() + (j === d.k ? (d.token_deciles[t] - 4) / 3 + l / 15 : 0)));
      const sum = e.reduce((a, x) => a + x, 0);
      return e.map((x) => x / sum);
    }));
    window.tide.showInspection({ ...d, model: 'SmolLM2-135M-like (synthetic weights)', layers, weights });
  }, [wantLong, layers]);
  assert.equal(await page.locator('#layerNums span').count(), layers);
  assert.equal(await page.locator('#layers .bar').count(), layers);
  const fit = await page.$eval('#scroller', (s) => [s.scrollWidth, s.clientWidth]);
  assert.ok(fit[0] <= fit[1], `30 layers fit without sideways scrolling: ${fit}`);
  box = await heatBox();
  await page.mouse.move(box.x + LABEL + 20.5 * CELL, box.y + 3.5 * CELL);
  assert.match(await page.textContent('#tip'), /^token 3 .*, layer 20\n/);
  await shot(page, 'inspect-30-layers.png');
  await page.close();
});

test('SmolLM2 GGUF: 32 greedy tokens equal native; the weights go to the GPU without the file in the wasm heap', async () => {
  const name = path.basename(SMOLLM2, '.gguf');
  const page = await open(browser, `?model=${name}`);
  const info = await ready(page);
  assert.equal(info.error, undefined, info.error);
  // The file is read through from the browser's store a slab at a time: the wasm heap's peak
  // is what the module, the parsed header and tokenizer and the slabs need, well under the
  // file (it was 1.22x when the file sat in the heap).
  const l = info.load;
  const heap = l.wasm_heap_bytes / l.bytes;
  console.log(`wasm heap ${l.wasm_heap_bytes} B for ${l.bytes} B of model files (${heap.toFixed(2)}x); ` +
    `${l.wasm_heap_at_start_bytes} B at the start, ${l.wasm_heap_fetched_bytes} B once fetched`);
  assert.equal(l.files[0].read_through, true);
  assert.ok(heap < 0.5, `wasm heap ${l.wasm_heap_bytes} B for ${l.bytes} B of files`);
  // One prompt (each costs ~35 s of SwiftShader here): the default model runs all three.
  for (const prompt of PROMPTS.slice(2)) {
    const want = native(['generate', '--model', SMOLLM2, '--temperature', '0', '--json', '--max-tokens', String(TOKENS), prompt]);
    const got = await page.evaluate(([p, n]) => window.tide.complete(p, { maxTokens: n, temperature: 0 }), [prompt, TOKENS]);
    assert.deepEqual(got.tokens, want.tokens, `greedy tokens after "${prompt}"`);
  }
  const chat = await page.evaluate(() => window.tide.chat.completions.create({
    messages: [{ role: 'user', content: 'Say hello.' }], max_tokens: 8, temperature: 0 }));
  assert.equal(chat.object, 'chat.completion');
  assert.ok(chat.choices[0].message.content.length > 0 && chat.usage.completion_tokens > 0, JSON.stringify(chat));
  await page.close();
});

test('errors show on the page, which survives: bad URL, truncated model, over-long prompt', async () => {
  const bad = await open(browser, '?model=/models/nothing-here/model.gguf');
  const r = await ready(bad);
  assert.match(r.error, /nothing-here.*404/);
  assert.ok(await bad.isVisible('#error'));
  assert.match(await bad.textContent('#error'), /404/);
  assert.ok(await bad.isVisible('#model'), 'the page is not blank: the picker is there');
  await shot(bad, 'error-bad-url.png');
  await bad.close();

  const trunc = await open(browser, '?model=truncated');
  const t = await ready(trunc);
  assert.match(t.error, /truncated/i);
  assert.ok(await trunc.isVisible('#error'));
  await trunc.close();

  const page = await open(browser, '?model=tide-k4');
  assert.equal((await ready(page)).error, undefined);
  await page.fill('#prompt', 'the city and the river '.repeat(80));
  await page.click('#go');
  await page.waitForSelector('#error:not([hidden])');
  assert.match(await page.textContent('#error'), /context holds/);
  // Still usable: a short prompt generates.
  const ok = await page.evaluate(() => window.tide.complete('Once upon a time', { maxTokens: 4, temperature: 0 }));
  assert.equal(ok.tokens.length, 4);

  // A lost GPU device: the next generation reports it, the page offers a reload, and the
  // reloaded page generates again.
  assert.equal(await page.evaluate(() => window.tide.model.loseDevice()), true);
  await page.fill('#prompt', 'Once upon a time');
  await page.click('#go');
  await page.waitForFunction(() => /device lost/i.test(document.querySelector('#error').textContent), null, { timeout: 60000 });
  await shot(page, 'error-device-lost.png');
  await Promise.all([page.waitForNavigation(), page.click('#error button')]);
  assert.equal((await ready(page)).error, undefined);
  const again = await page.evaluate(() => window.tide.complete('Once upon a time', { maxTokens: 4, temperature: 0 }));
  assert.deepEqual(again.tokens, ok.tokens);
  await page.close();

  // A model folder given by URL (not by its models.json name): config.json, weights and
  // tokenizer by their usual names, the optional files skipped when absent.
  const dir = await open(browser, `?model=${encodeURIComponent(base + 'models/tide-k4/')}`);
  const d = await ready(dir);
  assert.equal(d.error, undefined, d.error);
  assert.equal(d.k, 4);
  const same = await dir.evaluate(() => window.tide.complete('Once upon a time', { maxTokens: 4, temperature: 0 }));
  assert.deepEqual(same.tokens, ok.tokens);
  await dir.close();
});

test('on a software WebGPU adapter (SwiftShader) the page picks the CPU kernels itself, says why, and generates native CPU tokens', async () => {
  const want = native(['generate', '--backend', 'cpu', '--temperature', '0', '--json', '--max-tokens', '8', PROMPTS[1]]);
  const page = await open(browser, '?model=tide-k4', { auto: true });
  const info = await ready(page);
  assert.equal(info.error, undefined, info.error);
  assert.equal(info.backend, 'cpu');
  // tide serve's pages are cross-origin isolated: the threaded build, a worker per core.
  assert.equal(info.cross_origin_isolated, true);
  assert.ok(info.cpu_threads >= Math.min(2, os.cpus().length), `${info.cpu_threads} threads`);
  assert.equal(info.adapter, `cpu (simd128 kernels, ${info.cpu_threads} thread${info.cpu_threads > 1 ? 's' : ''})`);
  assert.ok(await page.isVisible('#notice'));
  assert.match(await page.textContent('#notice'), /software/);
  const got = await page.evaluate((p) => window.tide.complete(p, { maxTokens: 8, temperature: 0 }), PROMPTS[1]);
  assert.deepEqual(got.tokens, want.tokens);
  await page.close();
});

test('a page that is not cross-origin isolated runs the single-threaded build, says so, and generates the same tokens', async () => {
  const want = native(['generate', '--backend', 'cpu', '--temperature', '0', '--json', '--max-tokens', '8', PROMPTS[1]]);
  const repo = path.resolve(import.meta.dirname, '../..');
  const plain = spawn(TIDE_BIN, ['serve', '--no-api', '--no-isolation', '--port', '0', '--web', path.join(repo, 'web'),
    '--model', path.join(repo, 'models/tide-k4')], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const url = await new Promise((resolve) => plain.stdout.on('data', (d) => {
      const m = String(d).match(/http:\/\/\S+\//);
      if (m) resolve(m[0]);
    }));
    const page = await browser.newPage();
    await page.goto(url + '?model=tide-k4&backend=cpu');
    const info = await ready(page);
    assert.equal(info.error, undefined, info.error);
    assert.equal(info.cross_origin_isolated, false);
    assert.equal(info.cpu_threads, 1);
    assert.equal(info.adapter, 'cpu (simd128 kernels, 1 thread)');
    const got = await page.evaluate((p) => window.tide.complete(p, { maxTokens: 8, temperature: 0 }), PROMPTS[1]);
    assert.deepEqual(got.tokens, want.tokens);
    await page.close();
  } finally {
    plain.kill();
  }
});

test('without WebGPU the page runs the CPU kernels in wasm, says so, and generates the same tokens', async () => {
  const want = native(['generate', '--backend', 'cpu', '--temperature', '0', '--json', '--max-tokens', '8', PROMPTS[1]]);
  const ctx = await launch(false);
  try {
    const page = await open(ctx, '?model=tide-k4', { auto: true });
    const info = await ready(page);
    assert.equal(info.error, undefined, info.error);
    assert.equal(info.backend, 'cpu');
    assert.ok(await page.isVisible('#notice'));
    assert.match(await page.textContent('#notice'), /no WebGPU/);
    const got = await page.evaluate((p) => window.tide.complete(p, { maxTokens: 8, temperature: 0 }), PROMPTS[1]);
    assert.deepEqual(got.tokens, want.tokens);
    await shot(page, 'demo-no-webgpu.png');
  } finally {
    await ctx.close();
  }
});

test('memory streamed with Range requests: native tokens and router weights, only the rows read are fetched, counters on both pages', async () => {
  const size = fs.statSync(path.join(stream, 'memory.safetensors')).size;
  const k = 4;
  const memReqs = [];
  browser.on('request', (r) => r.url().endsWith('/memory.safetensors') && memReqs.push(r.headers().range));
  // A fixed 64 KB gap: the measured one can read through most of these small tables.
  const page = await open(browser, '?model=tide-k4-stream&memory=stream&memoryGapKb=64');
  const info = await ready(page);
  assert.equal(info.error, undefined, info.error);
  assert.equal(info.k, k);
  assert.deepEqual(info.memory_link, { round_trip_s: null, bytes_per_s: null, gap_bytes: 65536 });
  assert.match(info.memory_streamed, /\/models\/tide-k4-stream\/memory\.safetensors$/);
  for (const prompt of PROMPTS.slice(0, 2)) {
    const want = native(['generate', '--model', stream, '--temperature', '0', '--json', '--max-tokens', String(TOKENS), prompt]);
    const before = await page.evaluate(() => window.tide.memoryStats());
    const got = await page.evaluate(([p, n]) => window.tide.complete(p, { maxTokens: n, temperature: 0 }), [prompt, TOKENS]);
    assert.deepEqual(got.tokens, want.tokens, `greedy tokens after "${prompt}"`);
    assert.equal(got.text, want.text);
    // Every token fed (the prompt and all generated but the last) read its K rows.
    const m = got.memory;
    const fed = got.prompt_tokens.length + got.tokens.length - 1;
    assert.equal(m.streamed, true);
    assert.equal(m.rows_requested - before.rows_requested, k * fed);
    assert.equal(m.hits + m.misses, m.rows_requested);
    assert.ok(m.misses > before.misses, 'new tokens were fetched');
  }
  const m = await page.evaluate(() => window.tide.memoryStats());
  console.log(`streamed memory: ${m.misses} rows fetched in ${m.bytes_fetched} bytes of ${size}, ${m.hits} hits`);
  assert.ok(m.bytes_fetched > 0 && m.bytes_fetched < size / 4,
    `fetched ${m.bytes_fetched} of the ${size}-byte memory file`);
  assert.ok(memReqs.length > 0 && memReqs.every((r) => /^bytes=\d+-\d+$/.test(r ?? '')),
    `every request for the memory file is a Range request: ${memReqs.slice(0, 5)}`);
  // The demo shows the counters.
  await page.fill('#prompt', PROMPTS[2]);
  await page.fill('#temperature', '0');
  await page.fill('#maxTokens', '6');
  // The counters update live, with each piece, not only at the end.
  await page.evaluate(() => {
    window.memoryUpdates = 0;
    new MutationObserver(() => window.memoryUpdates++).observe(document.querySelector('#memory'),
      { childList: true, characterData: true, subtree: true });
  });
  await page.click('#go');
  await page.waitForFunction(() => document.querySelector('#stats').textContent.includes('stop:'), null, { timeout: 120000 });
  assert.match(await page.textContent('#memory'),
    /memory rows: \d+ read, \d+ from the cache, \d+ fetched \(.* over HTTP = \d+\.\d% of the [\d.]+ [kM]B memory file\)/);
  assert.ok(await page.evaluate(() => window.memoryUpdates) >= 3, 'the memory line updated with the pieces');
  assert.match(await page.textContent('#status'), /memory rows streamed/);
  await shot(page, 'memory-streamed.png');
  await page.close();
  // The inspection page, streamed too: native's router weights, and the counters.
  const text = 'The zebra and the aardvark met a quokka by the river in Ljubljana.';
  const wantW = native(['inspect', '--model', stream, '--json', text]);
  const insp = await open(browser, 'inspect.html?model=tide-k4-stream&memory=stream');
  await insp.waitForFunction(() => document.querySelector('#memory').textContent || window.tide.error, null, { timeout: 300000 });
  const gotW = await insp.evaluate(() => window.tide.lastInspection);
  assert.ok(gotW, 'the page inspected its text');
  // Without memoryGapKb the gap comes from the link, measured at load.
  const link = (await ready(insp)).memory_link;
  assert.ok(link.round_trip_s > 0 && link.bytes_per_s > 0, JSON.stringify(link));
  assert.ok(link.gap_bytes >= 4096 && link.gap_bytes <= 2 << 20, JSON.stringify(link));
  console.log(`measured link to tide serve: ${JSON.stringify(link)}`);
  assert.deepEqual(gotW.tokens, wantW.tokens);
  let worst = 0;
  wantW.weights.forEach((t, i) => t.forEach((sl, l) => sl.forEach((w, j) => {
    worst = Math.max(worst, Math.abs(w - gotW.weights[i][l][j]));
  })));
  assert.ok(worst <= 1e-3, `largest router weight difference ${worst}`);
  assert.match(await insp.textContent('#memory'), /memory rows: \d+ read, .* over HTTP/);
  await shot(insp, 'inspect-streamed.png');
  await insp.close();
  // A model without a separate memory file cannot stream one: said on the page.
  const bad = await open(browser, '?model=tide-k4&memory=stream');
  const e = await ready(bad);
  assert.match(e.error ?? '', /no memory\.safetensors to stream/);
  await bad.close();
});

test('the SmolLM2 memory model (models/smollm2-tide): rows streamed by Range by default, greedy tokens equal native, counters live, 30 layers inspected like native', async () => {
  const want = native(['generate', '--model', 'models/smollm2-tide', '--temperature', '0',
    '--max-tokens', '16', '--json', PROMPTS[2]]);
  const page = await open(browser, '?model=smollm2-tide');
  const info = await ready(page);
  assert.ok(!info.error, info.error);
  assert.equal(info.k, 4);
  assert.equal(info.layers, 30);
  assert.ok(info.memory_streamed, 'the memory is streamed, not downloaded');
  const gguf = fs.statSync(SMOLLM2).size;
  assert.ok(info.load.bytes < gguf + (1 << 20), `loaded ${info.load.bytes} bytes: the backbone and the card only`);
  assert.ok(info.memory_file_bytes > 1e6, 'the page knows the memory file\'s size');
  await page.fill('#prompt', PROMPTS[2]);
  await page.fill('#temperature', '0');
  await page.fill('#maxTokens', '16');
  await page.click('#go');
  await page.waitForFunction(() => document.querySelector('#stats').textContent.includes('stop:'), null, { timeout: 600000 });
  const got = await page.evaluate(() => window.tide.complete('The capital of France is', { maxTokens: 16, temperature: 0 }));
  assert.deepEqual(got.tokens, want.tokens, 'greedy tokens equal native tide generate');
  assert.match(await page.textContent('#memory'), /memory rows: .* over HTTP = \d+\.\d% of the [\d.]+ MB memory file/);
  await shot(page, 'smollm2-tide-demo.png');
  await page.close();
  // The page inspects its default text on load.
  const text = 'The zebra and the aardvark met a quokka by the river in Ljubljana.';
  const wantW = native(['inspect', '--model', 'models/smollm2-tide', '--json', text]);
  const insp = await open(browser, 'inspect.html?model=smollm2-tide');
  await insp.waitForFunction(() => window.tide.lastInspection || window.tide.error, null, { timeout: 600000 });
  const gotW = await insp.evaluate(() => window.tide.lastInspection);
  assert.equal(gotW.layers, 30);
  assert.deepEqual(gotW.tokens, wantW.tokens);
  let worst = 0;
  gotW.weights.forEach((t, i) => t.forEach((l, j) => l.forEach((x, s) => {
    worst = Math.max(worst, Math.abs(x - wantW.weights[i][j][s]));
  })));
  assert.ok(worst < 1e-3, `router weights within 1e-3 of native (${worst})`);
  assert.deepEqual(gotW.token_deciles, wantW.token_deciles);
  await shot(insp, 'smollm2-tide-inspect.png');
  await insp.close();
});

test('a download cut short is resumed with a Range request and the model still matches native', async () => {
  const want = native(['generate', '--temperature', '0', '--json', '--max-tokens', '8', PROMPTS[1]]);
  const ctx = await launch(true); // a fresh profile: nothing cached
  try {
    const ranges = [];
    let cut = false;
    await ctx.route('**/models/tide-k4/model.safetensors', async (route) => {
      const req = route.request();
      const range = req.headers().range;
      if (range) ranges.push(range);
      if (req.method() === 'GET' && !range && !cut) {
        // The first GET ends halfway: the body is shorter than the file.
        cut = true;
        const res = await route.fetch();
        const body = await res.body();
        await route.fulfill({ status: 200, headers: { 'content-type': 'application/octet-stream' }, body: body.subarray(0, body.length >> 1) });
      } else {
        await route.continue();
      }
    });
    // The CPU reference: the download path is the same, and no kernels need compiling.
    const page = await open(ctx, '?model=tide-k4&backend=cpu');
    const info = await ready(page);
    assert.equal(info.error, undefined, info.error);
    assert.ok(cut, 'the first download was cut');
    assert.equal(ranges.length, 1, `one resume request: ${ranges}`);
    assert.match(ranges[0], /^bytes=\d+-$/);
    const got = await page.evaluate((p) => window.tide.complete(p, { maxTokens: 8, temperature: 0 }), PROMPTS[1]);
    assert.deepEqual(got.tokens, want.tokens);
  } finally {
    await ctx.close();
  }
});

// A proxy in front of `tide serve` whose first GET of `file` sends half the body under the
// whole file's Content-Length, then resets the connection: a network error in the middle of a
// read, which the page sees as a rejected read() rather than a short body.
async function resettingProxy(file) {
  const target = new URL(base);
  const seen = { cutAt: 0, ranges: [] };
  const srv = http.createServer((req, res) => {
    const mine = req.url.split('?')[0].endsWith(file);
    if (mine && req.headers.range) seen.ranges.push(req.headers.range);
    const cut = mine && req.method === 'GET' && !req.headers.range && !seen.cutAt;
    const up = http.request({ host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers }, (ur) => {
      res.writeHead(ur.statusCode, ur.headers);
      if (!cut) return ur.pipe(res);
      const half = Number(ur.headers['content-length']) >> 1;
      let sent = 0;
      ur.on('data', (chunk) => {
        if (sent >= half) return;
        const part = chunk.subarray(0, half - sent);
        sent += part.length;
        if (sent < half) return res.write(part);
        seen.cutAt = sent;
        res.write(part, () => { res.socket.destroy(); ur.destroy(); });
      });
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return { srv, seen, url: `http://127.0.0.1:${srv.address().port}/` };
}

test('a connection reset in the middle of a download is resumed with a Range request and the model still matches native', async () => {
  const want = native(['generate', '--temperature', '0', '--json', '--max-tokens', '8', PROMPTS[2]]);
  const proxy = await resettingProxy('/models/tide-k4/model.safetensors');
  const ctx = await launch(true); // a fresh profile: nothing cached
  try {
    const page = await ctx.newPage();
    page.on('console', (m) => m.type() === 'error' && console.log(`[console] ${m.text()}`));
    await page.goto(proxy.url + '?model=tide-k4&backend=cpu');
    const info = await ready(page);
    assert.equal(info.error, undefined, info.error);
    assert.ok(proxy.seen.cutAt > 0, 'the first download was reset');
    assert.equal(proxy.seen.ranges.length, 1, `one resume request: ${proxy.seen.ranges}`);
    const from = Number(proxy.seen.ranges[0].match(/^bytes=(\d+)-$/)?.[1]);
    assert.ok(from > 0 && from <= proxy.seen.cutAt, `resumed from ${proxy.seen.ranges[0]}, cut at ${proxy.seen.cutAt}`);
    const got = await page.evaluate((p) => window.tide.complete(p, { maxTokens: 8, temperature: 0 }), PROMPTS[2]);
    assert.deepEqual(got.tokens, want.tokens);
  } finally {
    await ctx.close();
    proxy.srv.close();
  }
});

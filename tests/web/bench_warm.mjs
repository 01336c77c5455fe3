// Time to first token in the browser with the kernels compiled while the weights download
// (load option `warm`, the default) against compiled after it (`warm: false`), in one run, for
// a prompt of a chat's length (the one-token and the prompt kernels):
// WebGPU on SwiftShader in headless Chromium, each model loaded cold (a fresh profile: the
// files downloaded) and then cached (from the browser's store), over loopback as it is and
// through scripts/delay_proxy.py capped at MBPS MB/s with a 20 ms round trip (a download
// long enough to hide compiles behind). scripts/bench-web-warm.sh sets the env. One JSON
// line per load to $OUT, and a table.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const { TIDE_BIN, SMOLLM2, CHROMIUM, OUT } = process.env;
const MBPS = Number(process.env.MBPS || 20);
const repo = path.resolve(import.meta.dirname, '../..');
const rows = [];
// SHORT=1: a 4-token prompt instead, which runs token by token (one-token kernels only).
const PROMPT = process.env.SHORT === '1' ? 'Once upon a time'
  : 'The history of the city begins with a small market by the river, where farmers and traders met ' +
    'each week to sell grain, wool and fish.';

function start(cmd, args, ready) {
  const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    p.stdout.on('data', (d) => {
      const m = ready(String(d));
      if (m) resolve({ p, m });
    });
    p.on('exit', (c) => reject(new Error(`${cmd} exited with ${c}`)));
  });
}

async function oneModel(base, name, label, link) {
  for (const warm of [false, true]) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tide-bench-warm-'));
    const ctx = await chromium.launchPersistentContext(dir, {
      executablePath: CHROMIUM, headless: true,
      args: ['--no-sandbox', '--enable-unsafe-webgpu', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
    });
    const page = ctx.pages()[0] ?? await ctx.newPage();
    await page.goto(base + 'tide.js');
    for (const phase of ['cold', 'cached']) {
      const t0 = performance.now();
      const r = await page.evaluate(async ([m, w, PROMPT]) => {
        const t = await import('/tide.js');
        window.model?.close();
        window.model = await t.load(m, { backend: 'webgpu', warm: w });
        // A prompt longer than 8 tokens, as a chat's is: it runs the prompt (batch) kernels,
        // which `warm` compiles with the one-token ones and the other path at the first prompt.
        const g = await window.model.complete(PROMPT, { maxTokens: 1, temperature: 0 });
        return { load: window.model.info.load, ttft: g.time_to_first_token_s };
      }, [name, warm, PROMPT]);
      const row = {
        date: new Date().toISOString().slice(0, 10), model: label, link, warm, phase, prompt: PROMPT,
        fetch_s: r.load.fetch_seconds, load_s: r.load.seconds, ttft_s: r.ttft,
        load_to_first_token_s: r.load.seconds + r.ttft, page_s: (performance.now() - t0) / 1000,
        downloaded_bytes: r.load.downloaded_bytes, warm_info: r.load.warm,
      };
      rows.push(row);
      console.error(JSON.stringify(row));
    }
    await ctx.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const smol = path.basename(SMOLLM2, '.gguf');
const { p: server, m } = await start(TIDE_BIN, ['serve', '--no-api', '--port', '0', '--web', path.join(repo, 'web'),
  '--model', path.join(repo, 'models/tide-k4'), '--model', SMOLLM2], (s) => s.match(/http:\/\/[^/]+:(\d+)\//));
const port = Number(m[1]);
const proxyPort = port + 1;
const { p: proxy } = await start('python3', [path.join(repo, 'scripts/delay_proxy.py'), String(proxyPort), String(port), '10', String(MBPS)],
  (s) => s.includes('ready'));
try {
  for (const [base, link] of [[m[0], 'loopback'], [`http://127.0.0.1:${proxyPort}/`, `${MBPS} MB/s, 20 ms`]]) {
    for (const [name, label] of [['tide-k4', 'tide-k4'], [smol, 'SmolLM2-135M Q4_1']]) {
      await oneModel(base, name, label, link);
    }
  }
} finally {
  server.kill();
  proxy.kill();
}
fs.writeFileSync(OUT, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
const f = (v) => v.toFixed(1);
console.log('| model | link | load | warm: load + first token | after: load + first token | ratio |');
console.log('|---|---|---|---|---|---|');
for (const r of rows.filter((x) => x.warm)) {
  const o = rows.find((x) => !x.warm && x.model === r.model && x.link === r.link && x.phase === r.phase);
  console.log(`| ${r.model} | ${r.link} | ${r.phase} | ${f(r.load_s)} + ${f(r.ttft_s)} = ${f(r.load_to_first_token_s)} s | ` +
    `${f(o.load_s)} + ${f(o.ttft_s)} = ${f(o.load_to_first_token_s)} s | ${(o.load_to_first_token_s / r.load_to_first_token_s).toFixed(2)}x |`);
}

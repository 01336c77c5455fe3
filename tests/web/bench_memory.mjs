// The memory model in the browser against its backbone alone, in one run
// (scripts/bench-smollm2-tide.sh sets the env): both served by one `tide serve`, the memory's
// rows streamed by HTTP Range through the row cache as the demo does. The two pages take turns,
// ROUNDS times: load (from the browser cache after the first round), time to first token, and
// greedy decode tok/s of the same prompt; then the rows and bytes fetched per token after the
// warm-up. One JSON line per measurement goes to $OUT; a summary goes to stdout.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const { TIDE_BIN, CHROMIUM, MEMORY_MODEL, BACKBONE, OUT } = process.env;
const ROUNDS = Number(process.env.ROUNDS || 3);
const DECODE_TOKENS = Number(process.env.DECODE_TOKENS || 64);
const PROMPT = process.env.PROMPT || 'The King James Bible and the works of Shakespeare and Milton are';

const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
const rows = [];
function record(r) {
  rows.push({ date: new Date().toISOString().slice(0, 10), ...r });
  console.error(JSON.stringify(r));
}

async function serve(models) {
  const repo = path.resolve(import.meta.dirname, '../..');
  const args = ['serve', '--no-api', '--port', '0', '--web', path.join(repo, 'web')];
  for (const m of models) args.push('--model', m);
  const p = spawn(TIDE_BIN, args, { stdio: ['ignore', 'pipe', 'inherit'], cwd: repo });
  const url = await new Promise((resolve, reject) => {
    p.on('exit', (c) => reject(new Error(`tide serve exited with ${c}`)));
    p.stdout.on('data', (d) => {
      const m = String(d).match(/http:\/\/\S+\//);
      if (m) resolve(m[0]);
    });
  });
  return { p, url };
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tide-bench-memory-'));
const ctx = await chromium.launchPersistentContext(dir, {
  executablePath: CHROMIUM, headless: true,
  args: ['--no-sandbox', '--enable-unsafe-webgpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
});
const memName = path.basename(MEMORY_MODEL);
const bbName = path.basename(BACKBONE, '.gguf');
const { p, url } = await serve([MEMORY_MODEL, BACKBONE]);
try {
  const page = ctx.pages()[0] ?? await ctx.newPage();
  const run = async (name, label, round) => {
    const t0 = performance.now();
    await page.goto(`${url}?model=${encodeURIComponent(name)}`);
    const info = await page.evaluate(() => window.tide.ready);
    const first = await page.evaluate((pr) => window.tide.complete(pr, { maxTokens: 1, temperature: 0 }), PROMPT);
    const pageToFirst = (performance.now() - t0) / 1000;
    const g = await page.evaluate(([pr, n]) => window.tide.complete(pr, { maxTokens: n, temperature: 0 }), [PROMPT, DECODE_TOKENS]);
    // After that warm-up, a second text: rows and bytes per token of a warmed cache.
    const before = await page.evaluate(() => window.tide.memoryStats());
    const g2 = await page.evaluate(([pr, n]) => window.tide.complete(pr, { maxTokens: n, temperature: 0 }),
      ['In the beginning God created the heaven and the earth. And the earth was', DECODE_TOKENS]);
    const after = await page.evaluate(() => window.tide.memoryStats());
    const tokens = g2.prompt_tokens.length + g2.tokens.length;
    record({
      side: 'browser', model: label, round, adapter: info.adapter, memory_streamed: !!info.memory_streamed,
      load_s: info.load.seconds, downloaded_bytes: info.load.downloaded_bytes,
      ttft_s: first.time_to_first_token_s, page_to_first_token_s: pageToFirst,
      decode_tok_s: g.decode_tokens_per_s, tokens: g.tokens,
      warmed_bytes_per_token: after ? (after.bytes_fetched - before.bytes_fetched) / tokens : null,
      warmed_rows_fetched_per_token: after ? (after.misses - before.misses) / tokens : null,
      memory: after, memory_file_bytes: info.memory_file_bytes ?? null,
    });
  };
  for (let round = 1; round <= ROUNDS; round++) {
    await run(bbName, 'backbone', round);
    await run(memName, 'memory', round);
  }
} finally {
  p.kill();
  await ctx.close();
  fs.rmSync(dir, { recursive: true, force: true });
}
fs.writeFileSync(OUT, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');

const of = (label, key) => rows.filter((r) => r.model === label).map((r) => r[key]);
const same = rows.filter((r) => r.model === 'memory').every((r, i) =>
  JSON.stringify(r.tokens) === JSON.stringify(rows.filter((x) => x.model === 'memory')[0].tokens) && i >= 0);
const dm = median(of('memory', 'decode_tok_s'));
const db = median(of('backbone', 'decode_tok_s'));
console.log(`browser decode: backbone ${db.toFixed(2)} tok/s, with memory ${dm.toFixed(2)} tok/s ` +
  `(${((db / dm - 1) * 100).toFixed(1)}% slower, medians of ${ROUNDS})`);
console.log(`browser time to first token (page load included, cached files): backbone ` +
  `${median(of('backbone', 'page_to_first_token_s')).toFixed(2)} s, with memory ` +
  `${median(of('memory', 'page_to_first_token_s')).toFixed(2)} s`);
console.log(`warmed: ${median(of('memory', 'warmed_bytes_per_token')).toFixed(0)} bytes fetched per token; ` +
  `greedy tokens the same every round: ${same}`);

// The npm package (target/npm/tide-gpu, made by scripts/build-web.sh through
// scripts/npm-package.sh): `npm pack` accepts it; installed from the tarball into a fresh app,
// a page imports it by its name (an import map to node_modules, as an app without a bundler
// does) and gives native's greedy tokens, on the threaded build (the page is cross-origin
// isolated); tsc --noEmit accepts a typed use of the whole API (tests/web/typed/example.ts)
// against the package's declarations and refuses wrong uses (typed/wrong.ts) with the error
// each line names. scripts/test-pages.sh sets TIDE_BIN and CHROMIUM.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const { TIDE_BIN, CHROMIUM } = process.env;
const REPO = path.resolve(import.meta.dirname, '../..');
const TSC = path.join(import.meta.dirname, 'node_modules/typescript/bin/tsc');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tide-npm-'));
const app = path.join(tmp, 'app');
let server;
let ctx;

after(async () => {
  await ctx?.close();
  server?.kill('SIGKILL');
  fs.rmSync(tmp, { recursive: true, force: true });
});

const run = (cmd, args, cwd) => execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

test('npm pack takes the package folder; installed by name, it loads a model in a page and gives native tokens', async () => {
  assert.ok(TIDE_BIN && CHROMIUM, 'run through scripts/test-pages.sh');
  const pkg = path.join(REPO, 'target/npm/tide-gpu');
  const meta = JSON.parse(fs.readFileSync(path.join(pkg, 'package.json'), 'utf8'));
  assert.equal(meta.name, 'tide-gpu');
  assert.deepEqual(meta.exports['.'], { types: './tide.d.ts', default: './tide.js' });
  const tgz = run('npm', ['pack', '--pack-destination', tmp, pkg], REPO).trim().split('\n').pop();
  const listing = run('tar', ['tzf', path.join(tmp, tgz)], tmp);
  for (const f of ['tide.js', 'tide.d.ts', 'worker.js', 'downloads.js', 'shared.js', 'pkg/tide_gpu_bg.wasm', 'pkg-threads/tide_gpu_bg.wasm']) {
    assert.ok(listing.includes(`package/${f}\n`), `${f} in the tarball`);
  }
  fs.mkdirSync(app);
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'an-app', private: true, type: 'module' }));
  run('npm', ['install', '--no-audit', '--no-fund', '--ignore-scripts', path.join(tmp, tgz)], app);
  fs.writeFileSync(path.join(app, 'index.html'), `<!doctype html>
<script type="importmap">{"imports": {"tide-gpu": "/node_modules/tide-gpu/tide.js"}}</script>
<script type="module">import * as tide from 'tide-gpu'; window.tideApi = tide;</script>`);

  const model = path.join(REPO, 'models/tide-k4');
  server = spawn(TIDE_BIN, ['serve', '--no-api', '--port', '0', '--web', app, '--model', model],
    { stdio: ['ignore', 'pipe', 'inherit'] });
  const base = await new Promise((resolve, reject) => {
    server.stdout.on('data', (d) => {
      const m = String(d).match(/http:\/\/\S+\//);
      if (m) resolve(m[0]);
    });
    server.on('exit', (c) => reject(new Error(`tide serve exited with ${c}`)));
  });
  ctx = await chromium.launchPersistentContext(path.join(tmp, 'profile'), {
    executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-background-networking', '--no-first-run'],
  });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.log(`[page error] ${e.message}`));
  await page.goto(base);
  await page.waitForFunction(() => window.tideApi);
  const r = await page.evaluate(async () => {
    const m = await window.tideApi.load('tide-k4', { backend: 'cpu' });
    const out = await m.complete('Once upon a time', { maxTokens: 8, temperature: 0 });
    const info = m.info;
    m.close();
    return { out, info };
  });
  const want = JSON.parse(run(TIDE_BIN, ['generate', '--backend', 'cpu', '--model', model, '--temperature', '0',
    '--json', '--max-tokens', '8', 'Once upon a time'], REPO));
  assert.deepEqual(r.out.tokens, want.tokens);
  assert.equal(r.info.cross_origin_isolated, true);
  assert.ok(r.info.cpu_threads >= Math.min(2, os.cpus().length), `the threaded build: ${r.info.adapter}`);
});

// tsc's diagnostics as [file line, code] pairs.
function tsc(files) {
  fs.writeFileSync(path.join(app, 'tsconfig.json'), JSON.stringify({
    ...JSON.parse(fs.readFileSync(path.join(import.meta.dirname, 'typed/tsconfig.json'), 'utf8')), files,
  }));
  for (const f of files) fs.copyFileSync(path.join(import.meta.dirname, 'typed', f), path.join(app, f));
  const r = spawnSync(process.execPath, [TSC, '-p', path.join(app, 'tsconfig.json')], { cwd: app, encoding: 'utf8' });
  const errors = [...r.stdout.matchAll(/^(\S+)\((\d+),\d+\): error (TS\d+)/gm)].map((m) => [Number(m[2]), m[3]]);
  return { status: r.status, errors, out: r.stdout + r.stderr };
}

test('tsc --noEmit accepts a typed use of the whole API against the package declarations, and refuses wrong uses', () => {
  assert.ok(fs.existsSync(path.join(app, 'node_modules/tide-gpu/tide.d.ts')), 'the package is installed (the test above)');
  const ok = tsc(['example.ts']);
  assert.equal(ok.status, 0, ok.out);
  const bad = tsc(['wrong.ts']);
  const want = fs.readFileSync(path.join(import.meta.dirname, 'typed/wrong.ts'), 'utf8').split('\n')
    .map((l, i) => [i + 1, l.match(/\/\/ (TS\d+):/)?.[1]]).filter(([, c]) => c);
  assert.ok(want.length >= 6);
  assert.notEqual(bad.status, 0);
  assert.deepEqual(bad.errors, want, bad.out);
});

// The worker that owns the model: it downloads (or reads from the browser's cache) the model
// files, opens the wasm session (WebGPU, or the CPU reference without it) and runs generation
// and inspection, so the page stays responsive. tide.js is its only caller; messages are
// {id, op, ...} in and {id, ok, value | error} or {id, event, ...} out.
import init, { openSession } from './pkg/tide_gpu.js';

const CACHE_DIR = 'tide-model-cache-v1';
const RETRIES = 3;

let session = null;
let cancelled = new Set();

const post = (m) => self.postMessage(m);

// ---- model files: fetch with progress, resume on a cut, cache in OPFS --------------------

async function cacheDir() {
  try {
    const root = await navigator.storage.getDirectory();
    return await root.getDirectoryHandle(CACHE_DIR, { create: true });
  } catch {
    return null; // no OPFS (private mode, old browser): download every time
  }
}

async function cacheName(url, bytes, tag) {
  const key = new TextEncoder().encode(`${new URL(url, self.location.href).href}|${bytes}|${tag}`);
  const h = new Uint8Array(await crypto.subtle.digest('SHA-256', key));
  return Array.from(h.slice(0, 16), (b) => b.toString(16).padStart(2, '0')).join('');
}

// A cached file counts only if its marker (written after the whole file) names its size.
async function readCached(dir, name, bytes) {
  if (!dir) return null;
  try {
    const mark = await (await (await dir.getFileHandle(name + '.ok')).getFile()).text();
    if (Number(mark) !== bytes) return null;
    const f = await (await dir.getFileHandle(name)).getFile();
    if (f.size !== bytes) return null;
    return new Uint8Array(await f.arrayBuffer());
  } catch {
    return null;
  }
}

async function writeCached(dir, name, data) {
  if (!dir) return;
  try {
    await dir.removeEntry(name + '.ok').catch(() => {});
    const w = await (await dir.getFileHandle(name, { create: true })).createWritable();
    await w.write(data);
    await w.close();
    const m = await (await dir.getFileHandle(name + '.ok', { create: true })).createWritable();
    await m.write(String(data.length));
    await m.close();
  } catch (e) {
    console.warn(`tide: could not cache ${name}: ${e}`); // quota: still works, uncached
  }
}

// Download `url` whole: a response shorter than its length is resumed with a Range request,
// up to RETRIES times; a file that still comes up short is an error and is never cached.
async function download(url, onBytes) {
  let res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status} ${res.statusText}`.trim());
  const total = Number(res.headers.get('content-length'));
  if (!Number.isFinite(total) || total <= 0) {
    const buf = new Uint8Array(await res.arrayBuffer());
    onBytes(buf.length, buf.length);
    return buf;
  }
  const out = new Uint8Array(total);
  let got = 0;
  for (let attempt = 0; ; attempt++) {
    try {
      const reader = res.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (got + value.length > total) throw new Error(`${url}: more bytes than its length ${total}`);
        out.set(value, got);
        got += value.length;
        onBytes(got, total);
      }
    } catch (e) {
      if (attempt >= RETRIES) throw new Error(`${url}: download failed after ${got} of ${total} bytes: ${e.message}`);
    }
    if (got === total) return out;
    if (attempt >= RETRIES) throw new Error(`${url}: truncated download: ${got} of ${total} bytes after ${RETRIES} retries`);
    res = await fetch(url, { headers: { Range: `bytes=${got}-` } });
    if (res.status !== 206) throw new Error(`${url}: could not resume the download (HTTP ${res.status})`);
  }
}

async function fetchFile(dir, file, progress) {
  const head = await fetch(file.url, { method: 'HEAD' });
  if (!head.ok) throw new Error(`${file.url}: HTTP ${head.status} ${head.statusText}`.trim());
  const bytes = Number(head.headers.get('content-length'));
  const tag = head.headers.get('etag') || head.headers.get('last-modified') || '';
  const name = await cacheName(file.url, bytes, tag);
  const hit = await readCached(dir, name, bytes);
  if (hit) {
    progress('cache', hit.length, hit.length);
    return { data: hit, cached: true };
  }
  const data = await download(file.url, (loaded, total) => progress('download', loaded, total));
  if (data.length !== bytes && bytes > 0) {
    throw new Error(`${file.url}: got ${data.length} bytes, HEAD said ${bytes}`);
  }
  await writeCached(dir, name, data);
  return { data, cached: false };
}

// ---- operations -------------------------------------------------------------------------

const ops = {
  async load({ model, files, backend, ctxLen }, id) {
    const t0 = performance.now();
    await init();
    const dir = await cacheDir();
    const total = files.reduce((s, f) => s + (f.bytes || 0), 0);
    let before = 0;
    const pairs = [];
    let downloaded = 0;
    for (const f of files) {
      const progress = (phase, loaded) =>
        post({ id, event: 'progress', phase, file: f.name, loaded: before + loaded, total });
      let r;
      try {
        r = await fetchFile(dir, f, progress);
      } catch (e) {
        if (f.optional) continue;
        throw e;
      }
      if (!r.cached) downloaded += r.data.length;
      pairs.push([f.name, r.data]);
      before += r.data.length;
    }
    const tFetched = performance.now();
    post({ id, event: 'progress', phase: 'open', loaded: before, total });
    const hasGpu = !!(self.navigator && self.navigator.gpu);
    const chosen = backend || (hasGpu ? 'auto' : 'cpu');
    session?.free?.();
    session = null;
    session = await openSession(model, pairs, chosen, ctxLen || 0);
    pairs.length = 0; // the wasm heap has the bytes now; drop the JS copies
    const info = JSON.parse(session.info());
    // wgpu leaves the adapter's name empty on the web; the browser's adapter info has it.
    if (info.gpu && !info.gpu.name && hasGpu) {
      const a = (await self.navigator.gpu.requestAdapter())?.info;
      info.gpu.name = [a?.vendor, a?.architecture, a?.description].filter(Boolean).join(' ') || 'WebGPU adapter';
      info.adapter = info.gpu.name + info.adapter;
    }
    if (info.backend === 'cpu' && chosen !== 'cpu') {
      // The native hint (Vulkan drivers, --backend) means nothing here: say it for the page.
      console.warn(`tide: ${info.note}`);
      info.note = 'This browser offers no WebGPU adapter: the model runs on the CPU reference compiled to wasm, much slower than on a GPU.';
    } else if (!hasGpu) {
      info.note = 'This browser has no WebGPU: the model runs on the CPU reference compiled to wasm, much slower than on a GPU.';
    }
    info.load = {
      seconds: (performance.now() - t0) / 1000,
      fetch_seconds: (tFetched - t0) / 1000,
      bytes: before,
      downloaded_bytes: downloaded,
    };
    post({ id, event: 'progress', phase: 'ready', loaded: before, total });
    return info;
  },

  async generate({ prompt, options }, id) {
    if (!session) throw new Error('no model loaded');
    session.start(prompt, JSON.stringify(options || {}));
    for (;;) {
      if (cancelled.delete(id)) {
        session.cancel();
        break;
      }
      const piece = await session.step();
      if (piece === undefined) break;
      if (piece) post({ id, event: 'piece', text: piece });
    }
    return JSON.parse(session.result());
  },

  async chatPrompt({ messages }) {
    if (!session) throw new Error('no model loaded');
    return session.chatPrompt(JSON.stringify(messages));
  },

  // Testing aid: destroy the GPU device (see Session.loseDevice).
  async loseDevice() {
    if (!session) throw new Error('no model loaded');
    return session.loseDevice();
  },

  async inspect({ text }) {
    if (!session) throw new Error('no model loaded');
    return JSON.parse(await session.inspect(text));
  },
};

// Operations run one at a time, in order; a cancel is handled at once.
let queue = Promise.resolve();
self.onmessage = (ev) => {
  const { id, op } = ev.data;
  if (op === 'cancel') {
    cancelled.add(ev.data.target);
    return;
  }
  queue = queue.then(async () => {
    try {
      if (!ops[op]) throw new Error(`unknown operation ${op}`);
      post({ id, ok: true, value: await ops[op](ev.data, id) });
    } catch (e) {
      post({ id, ok: false, error: String(e && e.message ? e.message : e) });
    }
  });
};

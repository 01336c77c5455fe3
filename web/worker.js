// The worker that owns the model: it downloads (or reads from the browser's cache) the model
// files, opens the wasm session (WebGPU, or the CPU reference without it) and runs generation
// and inspection, so the page stays responsive. tide.js is its only caller; messages are
// {id, op, ...} in and {id, ok, value | error} or {id, event, ...} out.
// The threaded build (web/pkg-threads: shared wasm memory, a worker pool for the CPU kernels)
// where the page is cross-origin isolated, which shared memory needs; the single-threaded
// build otherwise, or where the threaded one is missing or fails to start.
// Loaded at the first operation, not at the top level: a module worker that awaits at its top
// level takes its first messages before it has a handler.
const ISOLATED = self.crossOriginIsolated === true && typeof SharedArrayBuffer === 'function';
let pkg = null;
let started = null; // {wasm, threads}: init and the thread pool, once

async function start() {
  if (!started) {
    const threaded = ISOLATED ? await import('./pkg-threads/tide_gpu.js').catch(() => null) : null;
    pkg = threaded ?? await import('./pkg/tide_gpu.js');
    const wasm = await pkg.default();
    let threads = 1;
    if (pkg.initThreadPool) {
      threads = Math.max(1, Math.min(navigator.hardwareConcurrency || 1, 16));
      await pkg.initThreadPool(threads);
    }
    started = { wasm, threads };
  }
  return started;
}

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
// It is read in chunks straight into the wasm heap.
async function readCached(dir, name, bytes, fileName, progress) {
  if (!dir) return null;
  let buf = null;
  try {
    const mark = await (await (await dir.getFileHandle(name + '.ok')).getFile()).text();
    if (Number(mark) !== bytes) return null;
    const f = await (await dir.getFileHandle(name)).getFile();
    if (f.size !== bytes) return null;
    buf = new pkg.FileBuffer(fileName, bytes);
    const reader = f.stream().getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buf.write(buf.filled(), value);
      progress('cache', buf.filled(), bytes);
    }
    if (buf.filled() === bytes) return buf;
  } catch (e) {
    console.warn(`tide: cached ${fileName} unreadable, downloading it again: ${e}`);
  }
  buf?.free();
  return null;
}

// Where a download's bytes go besides the wasm heap: the cache file, written as they come;
// its marker is written only once the whole file is there.
async function cacheWriter(dir, name) {
  if (!dir) return null;
  try {
    await dir.removeEntry(name + '.ok').catch(() => {});
    return await (await dir.getFileHandle(name, { create: true })).createWritable();
  } catch (e) {
    console.warn(`tide: not caching ${name}: ${e}`);
    return null;
  }
}

async function finishCache(dir, name, w, bytes) {
  try {
    await w.close();
    const m = await (await dir.getFileHandle(name + '.ok', { create: true })).createWritable();
    await m.write(String(bytes));
    await m.close();
  } catch (e) {
    console.warn(`tide: could not cache ${name}: ${e}`); // quota: still works, uncached
  }
}

// Download `url` (`total` bytes) into a FileBuffer, chunk by chunk: a response shorter than the
// file is resumed with a Range request, up to RETRIES times; a file that still comes up short is
// an error, and its cache file never gets a marker.
async function download(url, fileName, total, sink, onBytes) {
  const buf = new pkg.FileBuffer(fileName, total);
  try {
    let res = await fetch(url);
    if (!res.ok) throw new Error(`${url}: HTTP ${res.status} ${res.statusText}`.trim());
    for (let attempt = 0; ; attempt++) {
      try {
        const reader = res.body.getReader();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          if (buf.filled() + value.length > total) throw new Error(`more bytes than its length ${total}`);
          buf.write(buf.filled(), value);
          if (sink) await sink.write(value);
          onBytes(buf.filled(), total);
        }
      } catch (e) {
        if (attempt >= RETRIES) throw new Error(`${url}: download failed after ${buf.filled()} of ${total} bytes: ${e.message}`);
      }
      if (buf.filled() === total) return buf;
      if (attempt >= RETRIES) throw new Error(`${url}: truncated download: ${buf.filled()} of ${total} bytes after ${RETRIES} retries`);
      res = await fetch(url, { headers: { Range: `bytes=${buf.filled()}-` } });
      const range = res.headers.get('content-range') || '';
      if (res.status !== 206 || !range.startsWith(`bytes ${buf.filled()}-`)) {
        throw new Error(`${url}: could not resume the download (HTTP ${res.status} ${range})`);
      }
    }
  } catch (e) {
    buf.free();
    throw e;
  }
}

async function fetchFile(dir, file, progress) {
  const head = await fetch(file.url, { method: 'HEAD' });
  if (!head.ok) throw new Error(`${file.url}: HTTP ${head.status} ${head.statusText}`.trim());
  const bytes = Number(head.headers.get('content-length'));
  if (!Number.isFinite(bytes) || bytes <= 0) throw new Error(`${file.url}: the server gives no length`);
  const tag = head.headers.get('etag') || head.headers.get('last-modified') || '';
  const name = await cacheName(file.url, bytes, tag);
  const hit = await readCached(dir, name, bytes, file.name, progress);
  if (hit) return { buf: hit, cached: true };
  const sink = await cacheWriter(dir, name);
  let buf;
  try {
    buf = await download(file.url, file.name, bytes, sink, (loaded, total) => progress('download', loaded, total));
  } catch (e) {
    await sink?.abort().catch(() => {});
    throw e;
  }
  if (sink) await finishCache(dir, name, sink, bytes);
  return { buf, cached: false };
}

// ---- operations -------------------------------------------------------------------------

const ops = {
  async load({ model, files, backend, ctxLen, memoryUrl, memoryCacheMb, memoryGapKb }, id) {
    const t0 = performance.now();
    const { wasm, threads } = await start();
    const dir = await cacheDir();
    const total = files.reduce((s, f) => s + (f.bytes || 0), 0);
    let before = 0;
    const set = new pkg.FileSet();
    let downloaded = 0;
    try {
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
        const n = r.buf.filled();
        if (!r.cached) downloaded += n;
        set.add(r.buf); // moves the buffer into the set
        before += n;
      }
    } catch (e) {
      set.free();
      throw e;
    }
    const tFetched = performance.now();
    post({ id, event: 'progress', phase: 'open', loaded: before, total });
    const hasGpu = !!(self.navigator && self.navigator.gpu);
    const chosen = backend || (hasGpu ? 'auto' : 'cpu');
    session?.free?.();
    session = null;
    // consumes the set
    session = await pkg.openSession(model, set, chosen, ctxLen || 0, memoryUrl || '',
      typeof memoryCacheMb === 'number' ? memoryCacheMb : -1,
      Number.isInteger(memoryGapKb) && memoryGapKb >= 0 ? memoryGapKb : -1);
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
      info.note = /software renderer/.test(info.note || '')
        ? 'The only WebGPU adapter here is a software renderer (no GPU): the model runs on the CPU kernels compiled to wasm, which are faster there. Add backend=webgpu to the address to use the adapter anyway.'
        : 'This browser offers no WebGPU adapter: the model runs on the CPU kernels compiled to wasm, slower than on a GPU.';
    } else if (!hasGpu) {
      info.note = 'This browser has no WebGPU: the model runs on the CPU kernels compiled to wasm, slower than on a GPU.';
    }
    info.load = {
      seconds: (performance.now() - t0) / 1000,
      fetch_seconds: (tFetched - t0) / 1000,
      bytes: before,
      downloaded_bytes: downloaded,
      // The wasm heap only grows, so its size now is its peak: the files' bytes sat in it once,
      // and the GPU path then dropped them.
      wasm_heap_bytes: wasm.memory.buffer.byteLength,
    };
    // Whether the page could share memory with workers, and the CPU kernels' threads there.
    info.cross_origin_isolated = ISOLATED;
    info.cpu_threads = threads;
    post({ id, event: 'progress', phase: 'ready', loaded: before, total });
    return info;
  },

  async generate({ prompt, options }, id) {
    if (!session) throw new Error('no model loaded');
    await session.start(prompt, JSON.stringify(options || {}));
    for (;;) {
      if (cancelled.delete(id)) {
        session.cancel();
        break;
      }
      const piece = await session.step();
      if (piece === undefined) break;
      // The memory counters ride with each piece, so the page can show them live.
      if (!piece) continue;
      let memory = null;
      try {
        memory = JSON.parse(session.memoryStats());
      } catch { /* counters are a nicety: never fail a generation over them */ }
      post({ id, event: 'piece', text: piece, memory });
    }
    return JSON.parse(session.result());
  },

  async memoryStats() {
    if (!session) throw new Error('no model loaded');
    return JSON.parse(session.memoryStats());
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

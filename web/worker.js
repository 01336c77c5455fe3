import { openStore, fetchFile, listStored, removeStored, storedWhole } from './downloads.js';

// The worker that owns the model: it downloads (or reads from the browser's storage, OPFS:
// downloads.js) the model files, opens the wasm session (WebGPU, or the CPU kernels without
// it) and runs generation and inspection, so the page stays responsive. tide.js is its only caller; messages are
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

let session = null;
let cancelled = new Set();

const post = (m) => self.postMessage(m);

// A stored file as the wasm session reads it (FileSet.addStored): at offsets, through its
// synchronous access handle, which it closes when the model is dropped.
function storedFile(h) {
  return {
    size: h.getSize(),
    readAt(at, len) {
      const b = new Uint8Array(len);
      let n = 0;
      while (n < len) {
        const k = h.read(b.subarray(n), { at: at + n });
        if (k <= 0) break;
        n += k;
      }
      if (n !== len) throw new Error(`read ${n} of ${len} bytes at ${at}`);
      return b;
    },
    close() {
      try { h.close(); } catch { /* closed with the worker */ }
    },
  };
}

// wasm32's memory ends at 4 GiB; the module, the tokenizer and the working buffers need some.
const WASM_MEMORY = 4 * 2 ** 30;
const WASM_HEADROOM = 256 * 2 ** 20;

// The WebGPU adapter the model will run on, or null when it will run on the CPU kernels
// (which compute on the whole file in the wasm heap): asked for, or no WebGPU, or (auto) only
// a software adapter.
async function gpuAdapterFor(backend) {
  if (backend === 'cpu' || backend === 'reference') return null;
  if (!self.navigator?.gpu) return null;
  const a = await self.navigator.gpu.requestAdapter().catch(() => null);
  if (!a) return null;
  if (isSoftware(a) && backend !== 'webgpu' && backend !== 'gpu') return null;
  return a;
}

// A software adapter (SwiftShader): wgpu keeps weights in textures there
// (GpuOptions::weight_textures), and `auto` takes the CPU kernels instead.
const isSoftware = (a) => a.info?.isFallbackAdapter === true || a.isFallbackAdapter === true;

const isWeights = (name) => /\.(gguf|safetensors)$/.test(name);

// Bytes [at, at + n) of `url` by HTTP Range; from a server that sends the whole file instead,
// only those bytes are read off the stream.
async function readRange(url, at, n) {
  const r = await fetch(url, { headers: { Range: `bytes=${at}-${at + n - 1}` } });
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status} ${r.statusText}`.trim());
  if (r.status === 206) {
    const b = new Uint8Array(await r.arrayBuffer());
    if (b.length !== n) throw new Error(`${url}: asked ${n} bytes at ${at}, got ${b.length}`);
    return b;
  }
  const out = new Uint8Array(n);
  const reader = r.body.getReader();
  let pos = 0;
  let got = 0;
  while (got < n) {
    const { done, value } = await reader.read();
    if (done) break;
    const a = Math.max(at - pos, 0);
    const b = Math.min(value.length, at + n - pos);
    if (b > a) {
      out.set(value.subarray(a, b), got);
      got += b - a;
    }
    pos += value.length;
  }
  reader.cancel().catch(() => {});
  if (got !== n) throw new Error(`${url}: asked ${n} bytes at ${at}, the file ended first`);
  return out;
}

// A model that cannot be sized from its headers (it reads many weights to load): not checked.
class Unsized extends Error {}

// Before the weights come down: build the model from their headers (read by Range) and the
// small files already fetched (in `pf`), and size it against the adapter's limits (`slots`
// as openSession gets them). Throws the library's refusal when it does not fit; a header that
// is not a model's is refused too. Returns what the model takes, and what the check read.
async function preflight(pf, weights, adapter, { ctxLen, slots, memoryUrl }) {
  const t0 = performance.now();
  let read = 0;
  const sizeOf = async (f) => {
    if (f.bytes) return f.bytes;
    const h = await fetch(f.url, { method: 'HEAD' });
    const n = Number(h.headers.get('content-length'));
    if (h.ok && n > 0) return n;
    // An optional file (a folder's memory.safetensors) that is not there: the load skips it.
    if (f.optional) return null;
    throw new Error(`${f.url}: no length (HTTP ${h.status})`);
  };
  for (const f of weights) {
    const size = await sizeOf(f);
    if (size === null) continue;
    // 64 KiB holds a safetensors header's length; a GGUF's vocabulary grows it to megabytes.
    let prefix = await readRange(f.url, 0, Math.min(size, 1 << 16));
    for (let more; (more = pkg.Preflight.headerNeed(f.name, prefix, size)) > 0;) {
      const next = new Uint8Array(more);
      next.set(prefix);
      next.set(await readRange(f.url, prefix.length, more - prefix.length), prefix.length);
      prefix = next;
    }
    read += prefix.length;
    pf.addHeader(f.name, prefix, size);
  }
  const l = adapter.limits;
  const limits = JSON.stringify({
    maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
    maxBufferSize: l.maxBufferSize,
    maxTextureDimension2D: l.maxTextureDimension2D,
  });
  for (let round = 0; round < 4; round++) {
    const r = JSON.parse(pf.check(ctxLen || 0, slots, limits, isSoftware(adapter), !!memoryUrl));
    if (r.fits) return { ...r.fits, ctx_len: r.ctx_len, header_bytes: read, seconds: (performance.now() - t0) / 1000 };
    if (r.unsized) throw new Unsized(r.unsized);
    for (const [name, a, b] of r.needs) {
      const f = weights.find((w) => w.name === name);
      pf.addRange(name, a, await readRange(f.url, a, b - a));
      read += b - a;
    }
  }
  throw new Error('the model kept asking for more of its weights to be sized');
}

// Refuse, before any download, a model whose files cannot fit where they must go: on the CPU
// kernels (`onCpu`), the whole model in wasm's 4 GiB. (On WebGPU the weights are read through
// from the browser's store a slab at a time and fit whatever their size.)
function checkFits(files, onCpu) {
  const total = files.reduce((s, f) => s + (f.bytes || 0), 0);
  if (total > WASM_MEMORY - WASM_HEADROOM && onCpu) {
    const gb = (n) => `${(n / 1e9).toFixed(2)} GB`;
    throw new Error(`the model's files are ${gb(total)}, more than the ${gb(WASM_MEMORY - WASM_HEADROOM)} the CPU kernels in wasm can hold (wasm memory ends at ${gb(WASM_MEMORY)}): nothing was downloaded; run it on WebGPU, or take a smaller quantisation`);
  }
}

// A macrotask turn without setTimeout's clamp: the worker's pending messages run first.
const turn = new MessageChannel();
const nextTask = () => new Promise((resolve) => {
  turn.port1.onmessage = () => resolve();
  turn.port2.postMessage(0);
});

// ---- operations -------------------------------------------------------------------------

const ops = {
  async load({ model, files, backend, ctxLen, memoryUrl, memoryCacheMb, memoryGapKb, slots: asked, warm: warmAsked = 'auto' }, id) {
    const slots = Number.isInteger(asked) && asked >= 1 ? Math.min(asked, 64) : 1;
    const t0 = performance.now();
    const { wasm, threads } = await start();
    // The model loaded before goes first: its GPU memory, and its hold on stored files. API
    // requests still open on it fail (they would never be pumped).
    for (const mid of apiCalls.values()) post({ id: mid, ok: false, error: 'the model was replaced by another load', status: 503 });
    apiCalls.clear();
    session?.free?.();
    session = null;
    const dir = await openStore();
    // The adapter the model will run on (null: the CPU kernels). On WebGPU the model is sized
    // against it from its headers before the weights come down (`preflight`); the small
    // files come first, for it to build the model with.
    const adapter = await gpuAdapterFor(backend);
    checkFits(files, !adapter);
    let pf = adapter ? new pkg.Preflight(model) : null;
    let fit = null;
    const hasGpu = !!(self.navigator && self.navigator.gpu);
    const chosen = backend || (hasGpu ? 'auto' : 'cpu');
    // The device opened and the kernels compiled while the weights download (`warm`).
    let warming = null;
    let tWarm = 0;
    files = [...files.filter((f) => !isWeights(f.name)), ...files.filter((f) => isWeights(f.name))];
    const stored = []; // stored files handed to the session, closed if the load fails
    const heapAtStart = wasm.memory.buffer.byteLength;
    const total = files.reduce((s, f) => s + (f.bytes || 0), 0);
    let before = 0;
    const set = new pkg.FileSet();
    let downloaded = 0;
    const warnings = [];
    const loaded = [];
    const warn = (m) => {
      console.warn(`tide: ${m}`);
      warnings.push(m);
      post({ id, event: 'warning', message: m });
    };
    try {
      for (const f of files) {
        if (pf && isWeights(f.name)) {
          const weights = files.filter((w) => isWeights(w.name));
          // With every weights file whole in the store there is no download to spare: no
          // check (opening the model checks the same), unless warm: true asks for the kernels.
          let stored = !!dir;
          for (const w of weights) if (stored && !(await storedWhole(dir, w))) stored = false;
          if (!stored || warmAsked === true) {
            try {
              post({ id, event: 'progress', phase: 'check', file: f.name, loaded: before, total });
              fit = await preflight(pf, weights, adapter, { ctxLen, slots, memoryUrl });
              // 'auto': only when weights will come over the network, long enough to hide
              // compiles behind; from the store they arrive in about a second, and compiling
              // beside them only competed for the cores (docs/benchmarks.md).
              if (warmAsked === true || (warmAsked === 'auto' && !stored)) {
                const t = performance.now();
                // Not awaited: it runs beside the download.
                warming = pf.warm(chosen).then((w) => {
                  tWarm = (performance.now() - t) / 1000;
                  return w;
                }, (e) => {
                  warn(`the kernels could not be compiled during the download: ${e.message}`);
                  return null;
                });
              }
            } catch (e) {
              // A refusal, or a file that is no model's, stops the load here; a network
              // failure only skips the check (the download will say what is wrong).
              if (!(e instanceof TypeError || e instanceof Unsized)) throw e;
              warn(`the model could not be sized before its download: ${e.message}`);
            }
          }
          pf.free();
          pf = null;
        }
        const progress = (phase, n, fileTotal, { rate, eta_s }) => post({
          id, event: 'progress', phase, file: f.name, loaded: before + n, total,
          file_loaded: n, file_total: fileTotal, rate, eta_s,
        });
        let r;
        // Weights files are read through from the store (never whole in the heap) where they
        // are stored; the rest (config, tokenizer) go into the heap.
        const readThrough = /\.(gguf|safetensors)$/.test(f.name);
        const makeSink = (n, inHeap) => (inHeap ? new pkg.FileBuffer(f.name, n) : new pkg.HashSink(f.name, n));
        try {
          r = await fetchFile(dir, f, { model, makeSink, progress, warn, readThrough });
        } catch (e) {
          if (f.optional) continue;
          throw e;
        }
        const n = r.sink.filled();
        downloaded += r.downloaded;
        loaded.push({ name: f.name, bytes: n, cached: r.cached, downloaded: r.downloaded,
          resumed_from: r.resumed_from, sha256: r.sha256, verified: !!f.sha256, stored: r.stored,
          read_through: !!r.handle });
        if (pf && !r.handle && !isWeights(f.name)) pf.addFile(f.name, r.sink);
        if (r.handle) {
          const sf = storedFile(r.handle);
          stored.push(sf);
          set.addStored(f.name, sf);
          r.sink.free();
        } else {
          set.add(r.sink); // moves the buffer into the set
        }
        before += n;
      }
    } catch (e) {
      pf?.free();
      warming?.then((w) => w?.free());
      set.free();
      stored.forEach((f) => f.close());
      throw e;
    }
    const tFetched = performance.now();
    const heapFetched = wasm.memory.buffer.byteLength;
    post({ id, event: 'progress', phase: 'open', loaded: before, total });
    // Waiting here is waiting for compiles the download did not cover.
    const tWait = performance.now();
    const warmed = warming ? await warming : null;
    const warmWait = (performance.now() - tWait) / 1000;
    const warmPipelines = warmed?.pipelines ?? 0;
    try {
      // consumes the set; the stored files are closed when the session drops them
      session = await pkg.openSession(model, set, chosen, ctxLen || 0, memoryUrl || '',
        typeof memoryCacheMb === 'number' ? memoryCacheMb : -1,
        Number.isInteger(memoryGapKb) && memoryGapKb >= 0 ? memoryGapKb : -1,
        slots, warmed ?? undefined);
    } catch (e) {
      stored.forEach((f) => f.close());
      throw e;
    }
    const info = JSON.parse(session.info());
    // wgpu leaves the adapter's name empty on the web; the browser's adapter info has it.
    if (info.gpu && !info.gpu.name && hasGpu) {
      const a = (adapter ?? await self.navigator.gpu.requestAdapter())?.info;
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
      // Per file: from the store or downloaded, resumed from which byte, its sha256 and whether
      // models.json's was there to check it against.
      files: loaded,
      warnings,
      // The wasm heap only grows, so its size now is its peak: on the GPU, stored weights
      // files pass through it a slab at a time; otherwise the files' bytes sat in it once.
      wasm_heap_bytes: wasm.memory.buffer.byteLength,
      // The heap when the load began and once the files were in (before the model opened).
      wasm_heap_at_start_bytes: heapAtStart,
      wasm_heap_fetched_bytes: heapFetched,
      // What the model takes on this adapter, sized from its headers before the download
      // (null on the CPU kernels, or when the check could not run).
      gpu_fit: fit,
      // The kernels created while the weights downloaded: how many, how long creating them
      // took here, and how long the load then waited for that (null when it did not run).
      // Chromium may compile them later in its GPU process: that time is not in these.
      warm: warming ? { pipelines: warmPipelines, seconds: tWarm, wait_seconds: warmWait } : null,
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
      // A step on the CPU kernels settles without leaving the microtask queue: let a cancel
      // message in between steps.
      await nextTask();
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

  // The model manager: the files kept in the browser's storage ({action: "list" | "delete" |
  // "clear", model?, url?}).
  async models({ action, model, url }) {
    const dir = await openStore();
    if (action === 'list') return listStored(dir);
    if (action === 'delete') {
      if (model === undefined && url === undefined) throw new Error('models.delete: give a model name or a file URL');
      return removeStored(dir, { model, url });
    }
    if (action === 'clear') return removeStored(dir, {});
    throw new Error(`models: unknown action ${action}`);
  },

  async apiStats() {
    if (!session) throw new Error('no model loaded');
    return JSON.parse(session.apiStats());
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

// ---- the OpenAI API: the library's serving core ----------------------------------------
// A request ({kind: "chat" | "text", body: the JSON a client would POST}) is checked and queued
// by the session at once, even while another runs; the scheduler then runs in rounds (a
// prompt chunk, one decode step shared by every running request: continuous batching) in the
// operation queue until no request is left. Replies come shaped by the library as `tide
// serve` sends them: stream chunks as events, then the call's value (a whole reply, or null).
const apiCalls = new Map(); // the session's request id -> the call's message id
let pumping = false;

function apiSubmit({ kind, body }, id) {
  if (!session) throw new Error('no model loaded');
  const r = JSON.parse(session.apiSubmit(kind, body));
  if (r.error) {
    post({ id, ok: false, error: r.error.error.message, status: r.status, body: r.error });
    return;
  }
  apiCalls.set(r.id, id);
  if (!pumping) {
    pumping = true;
    queue = queue.then(apiPump);
  }
}

async function apiPump() {
  try {
    for (;;) {
      // Let submissions and cancels in between rounds (a round on the CPU kernels settles
      // without leaving the microtask queue).
      await nextTask();
      for (const [rid, mid] of apiCalls) {
        if (cancelled.delete(mid)) {
          session.apiCancel(rid);
          apiCalls.delete(rid);
          post({ id: mid, ok: false, error: 'cancelled', status: 499 });
        }
      }
      const r = JSON.parse(await session.apiPump());
      for (const o of r.outputs) {
        const mid = apiCalls.get(o.id);
        if (mid === undefined) continue;
        if (o.chunks) post({ id: mid, event: 'chunks', chunks: o.chunks });
        if (!o.end) continue;
        apiCalls.delete(o.id);
        if (o.error) post({ id: mid, ok: false, error: o.error.error.message, status: o.status, body: o.error });
        else post({ id: mid, ok: true, value: o.reply ?? null });
      }
      if (!r.busy) break;
    }
  } catch (e) {
    // The session failed under the scheduler: every request still open fails with it.
    for (const mid of apiCalls.values()) post({ id: mid, ok: false, error: String(e && e.message ? e.message : e), status: 500 });
    apiCalls.clear();
  } finally {
    pumping = false;
  }
}

// Operations run one at a time, in order; a cancel is handled at once, and so is an API
// request's submission (its rounds run in the queue).
let queue = Promise.resolve();
self.onmessage = (ev) => {
  const { id, op } = ev.data;
  if (op === 'cancel') {
    cancelled.add(ev.data.target);
    return;
  }
  if (op === 'api') {
    try {
      apiSubmit(ev.data, id);
    } catch (e) {
      post({ id, ok: false, error: String(e && e.message ? e.message : e) });
    }
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

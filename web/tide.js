import { sharedEngine, callError } from './shared.js';

// tide.js: run tide-gpu models in the browser. The model lives in a dedicated Worker
// (worker.js) that runs the WGSL kernels on WebGPU, or the CPU reference compiled to wasm where
// WebGPU is missing. web/README.md documents this API.

/** The models a `tide serve` offers: [{name, files: [{url, bytes, sha256}], memory?}]. */
export async function listModels(base = '/') {
  const res = await fetch(new URL('models.json', new URL(base, location.href)));
  if (!res.ok) throw new Error(`models.json: HTTP ${res.status}`);
  return res.json();
}

// Which files make a model, from what the caller gave: a name that models.json lists, a .gguf
// URL, or a model folder's URL (config.json, model.safetensors, tokenizer.json, and the
// optional memory.safetensors and tokenizer_config.json).
const MODEL_FILE = /^(config\.json|tokenizer\.json|tokenizer_config\.json|.*\.safetensors|.*\.gguf)$/;

// The weights a folder's loader reads, as natively: model.safetensors, else the shards that
// model.safetensors.index.json names, else every .safetensors (an unindexed set of shards);
// and memory.safetensors beside them. Other .safetensors files (e.g. the f16 tables that
// train/ keeps beside a TIDE model) are not part of the model.
async function weightFiles(files, all) {
  const st = (f) => f.name.endsWith('.safetensors');
  let keep = null;
  if (files.some((f) => f.name === 'model.safetensors')) {
    keep = new Set(['model.safetensors']);
  } else {
    const index = all.find((f) => f.name === 'model.safetensors.index.json');
    if (index) {
      const r = await fetch(index.url);
      if (!r.ok) throw new Error(`${index.url}: HTTP ${r.status}`);
      const map = (await r.json()).weight_map;
      if (!map || typeof map !== 'object') throw new Error(`${index.url}: missing weight_map`);
      keep = new Set(Object.values(map));
    }
  }
  if (!keep) return files;
  keep.add('memory.safetensors');
  return files.filter((f) => !st(f) || keep.has(f.name));
}

async function resolveFiles(model) {
  let listed = [];
  try {
    listed = await listModels();
  } catch {
    // not served by `tide serve`: URLs still work
  }
  const entry = listed.find((m) => m.name === model || `/models/${m.name}/` === model || `/models/${m.name}` === model);
  if (entry) {
    // Only what the loader reads: a folder may hold other files (training logs, READMEs).
    const all = entry.files.map((f) => ({ ...f, name: f.url.split('/').pop() }));
    return { name: entry.name, files: await weightFiles(all.filter((f) => MODEL_FILE.test(f.name)), all),
      memory: entry.memory };
  }
  const url = new URL(model, location.href);
  if (url.pathname.endsWith('.gguf')) {
    // A split GGUF (NAME-00002-of-00003.gguf, llama.cpp's names): every part, from any one.
    const base = url.pathname.split('/').pop();
    const split = base.match(/^(.+)-(\d{5,})-of-(\d{5,})\.gguf$/);
    const count = split ? Number(split[3]) : 1;
    if (split && count >= 1 && Number(split[2]) >= 1 && Number(split[2]) <= count) {
      const width = split[3].length;
      const files = [];
      for (let i = 1; i <= count; i++) {
        const name = `${split[1]}-${String(i).padStart(width, '0')}-of-${split[3]}.gguf`;
        files.push({ url: new URL(name, url).href, name, bytes: 0 });
      }
      return { name: model, files };
    }
    return { name: model, files: [{ url: url.href, name: base, bytes: 0 }] };
  }
  const dir = url.href.endsWith('/') ? url.href : url.href + '/';
  const file = (name, optional = false) => ({ url: dir + name, name, bytes: 0, optional });
  return {
    name: model,
    files: [file('config.json'), file('model.safetensors'), file('tokenizer.json'),
      file('tokenizer_config.json', true), file('memory.safetensors', true)],
  };
}

class Worker_ {
  constructor() {
    this.w = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
    this.next = 1;
    this.calls = new Map();
    this.w.onmessage = (ev) => {
      const m = ev.data;
      const c = this.calls.get(m.id);
      if (!c) return;
      if (m.event) {
        c.onEvent?.(m);
        return;
      }
      this.calls.delete(m.id);
      if (m.ok) c.resolve(m.value);
      else c.reject(callError(m));
    };
    // A worker that dies (wasm trap, out of memory) fails every call still waiting.
    this.w.onerror = (ev) => {
      ev.preventDefault?.();
      const err = new Error(`the model worker failed: ${ev.message || 'unknown error'}`);
      for (const c of this.calls.values()) c.reject(err);
      this.calls.clear();
      this.dead = err;
    };
  }

  call(op, args = {}, onEvent) {
    if (this.dead) return { id: 0, done: Promise.reject(this.dead) };
    const id = this.next++;
    const p = new Promise((resolve, reject) => this.calls.set(id, { resolve, reject, onEvent }));
    this.w.postMessage({ id, op, ...args });
    return { id, done: p };
  }

  cancel(target) {
    this.w.postMessage({ op: 'cancel', target });
  }

  terminate() {
    this.w.terminate();
  }
}

// One short-lived worker for a call outside a loaded model (the model manager): it starts no
// wasm, only reads the browser's storage.
async function oneCall(op, args) {
  const w = new Worker_();
  try {
    return await w.call(op, args).done;
  } finally {
    w.terminate();
  }
}

/**
 * The model files kept in this site's browser storage (OPFS), which `load` reads instead of
 * downloading them again (after checking their sha256) and where a cut download resumes.
 * list(): [{model, file, url, bytes, stored_bytes, complete, sha256, updated}];
 * delete(name | {model} | {url}): removes a model's files (or one file), resolves to how many
 * were removed: the files of a loaded model are held open and stay until it is closed;
 * clear(): removes them all (as many as are not in use).
 */
export const models = {
  list: () => oneCall('models', { action: 'list' }),
  delete: (what) => oneCall('models', typeof what === 'string'
    ? { action: 'delete', model: what } : { action: 'delete', model: what?.model, url: what?.url }),
  clear: () => oneCall('models', { action: 'clear' }),
};

/** A model loaded in its worker. */
export class TideModel {
  constructor(worker, info) {
    this.worker = worker;
    /** model, backend ("webgpu" | "cpu"), adapter, gpu {f16, limits}, note, k, layers, load {...} */
    this.info = info;
    /** OpenAI's chat.completions.create and completions.create, run by the serving core. */
    this.chat = { completions: { create: (req) => this.#apiCreate('chat', req) } };
    this.completions = { create: (req) => this.#apiCreate('text', req) };
  }

  /**
   * Generate after `prompt`: an async iterator of text pieces. Options: maxTokens, temperature,
   * topK, topP, repeatPenalty, seed, signal (an AbortSignal that stops it), onMemory (called
   * with the memory counters, as memoryStats() gives them, after each piece of a memory model).
   * After the loop, `iterator.result` holds what `complete` returns.
   */
  generate(prompt, options = {}) {
    const { signal, onMemory, ...opts } = options;
    const pieces = [];
    let wake = null;
    let finished = false;
    let failure = null;
    const { id, done } = this.worker.call('generate', { prompt, options: opts }, (m) => {
      if (m.event === 'piece') {
        pieces.push(m.text);
        if (m.memory) onMemory?.(m.memory);
        wake?.();
      }
    });
    const iter = {
      result: null,
      [Symbol.asyncIterator]() {
        return this;
      },
      async next() {
        for (;;) {
          if (pieces.length) return { value: pieces.shift(), done: false };
          if (failure) throw failure;
          if (finished) return { value: undefined, done: true };
          await new Promise((r) => (wake = r));
        }
      },
      async return() {
        this.worker?.cancel(id);
        return { value: undefined, done: true };
      },
    };
    iter.worker = this.worker;
    done.then((r) => { iter.result = r; finished = true; wake?.(); },
      (e) => { failure = e; finished = true; wake?.(); });
    if (signal) {
      if (signal.aborted) this.worker.cancel(id);
      else signal.addEventListener('abort', () => this.worker.cancel(id), { once: true });
    }
    iter.done = done;
    return iter;
  }

  /** The whole generation: the object `tide generate --json` prints. */
  async complete(prompt, options = {}) {
    const it = this.generate(prompt, options);
    for await (const _ of it); // eslint-disable-line no-unused-vars
    return it.done;
  }

  /**
   * The memory rows' counters: {rows_requested, hits, misses, bytes_fetched, resident_bytes,
   * cache_tokens, streamed}, or null for a model without memory.
   */
  memoryStats() {
    return this.worker.call('memoryStats').done;
  }

  /**
   * The serving core's counters for this model's API requests: {requests_completed, steps,
   * shared_steps (decode steps several requests shared), prefix_hits, prompt_tokens,
   * cached_tokens, generated_tokens, slots}.
   */
  apiStats() {
    return this.worker.call('apiStats').done;
  }

  /** Router weights of `text`: the object `tide inspect --json` prints. */
  inspect(text) {
    return this.worker.call('inspect', { text }).done;
  }

  // An OpenAI API request run by the library's serving core in the worker (the code `tide
  // serve` runs): checked there, batched with the other requests on this model, its reply or
  // stream chunks shaped there. `model` defaults to this one; `signal` stops it.
  #apiCreate(kind, req) {
    const { signal, ...fields } = req ?? {};
    const body = JSON.stringify({ model: this.info.model, ...fields });
    const chunks = [];
    let waiting = []; // resolvers of the next() calls waiting for a chunk or the end
    const wake = () => {
      const w = waiting;
      waiting = [];
      w.forEach((r) => r());
    };
    const wait = () => new Promise((r) => waiting.push(r));
    let finished = false;
    let failure = null;
    const { id, done } = this.worker.call('api', { kind, body }, (m) => {
      if (m.event === 'chunks') {
        chunks.push(...m.chunks);
        wake();
      }
    });
    const worker = this.worker;
    const abort = () => worker.cancel(id);
    if (signal) {
      if (signal.aborted) abort();
      else signal.addEventListener('abort', abort, { once: true });
    }
    const settled = () => signal?.removeEventListener('abort', abort);
    done.then(settled, settled);
    if (!fields.stream) return done;
    done.then(() => { finished = true; wake(); }, (e) => { failure = e; finished = true; wake(); });
    // A stream: the create() promise settles with its first chunk (or its refusal), as the
    // openai client's does with the response's headers.
    const iter = {
      [Symbol.asyncIterator]() {
        return this;
      },
      async next() {
        for (;;) {
          if (chunks.length) return { value: chunks.shift(), done: false };
          if (failure) throw failure;
          if (finished) return { value: undefined, done: true };
          await wait();
        }
      },
      async return() {
        if (!finished) worker.cancel(id);
        return { value: undefined, done: true };
      },
    };
    return (async () => {
      while (!chunks.length && !finished) await wait();
      if (failure && !chunks.length) throw failure;
      return iter;
    })();
  }

  /** Testing aid: destroy the GPU device as a lost GPU would; later calls fail with the loss. */
  loseDevice() {
    return this.worker.call('loseDevice').done;
  }

  /** Stop the worker and free the model. */
  close() {
    this.worker.terminate();
  }
}

/**
 * Load a model: a name listed by `tide serve` (models.json), a .gguf URL (any part of a split
 * GGUF) or a model folder URL. Files come from the browser's storage when a whole copy is there
 * (`models`), else are downloaded into it, resuming a cut download; each is checked against
 * models.json's sha256 before use. Options: onProgress({phase, loaded, total, file, fileLoaded,
 * fileTotal, rate, etaSeconds}) with phase "check" | "download" | "cache" | "open" | "ready" (loaded and
 * total over all files, rate in bytes/s); onWarning(message): what did not stop the load (no room
 * to store a file, a corrupt stored copy fetched again), also in info.load.warnings; backend "auto" | "gpu" | "cpu"; ctxLen (default: the model's, at most 2048; longer is
 * allowed and info.ctx_note says so);
 * memory "download" (a folder's memory.safetensors is fetched whole, like the other files) or
 * "stream" (it stays on the server and each step fetches the rows it reads with Range
 * requests); the default is what models.json says for the model (`tide serve` streams a memory
 * model on a fetched backbone), else "download"; memoryCacheMb, the memory row cache in MB (default, as
 * natively: 10% of the tables, at most 256 MB; streamed rows' raised to hold a whole context's
 * tokens); memoryGapKb, rows of a step closer than this share a request (at most 65536;
 * default: what the link carries in one round trip, measured at load); share: true makes the
 * model one engine for every tab of this origin that loads it with the same options (shared.js:
 * the first tab's worker holds it, the others call it; info.shared.role says which); slots,
 * the requests `chat.completions.create` and `completions.create` decode together on WebGPU
 * (continuous batching; default 4 with share, else 1; info.slots says how many the engine has);
 * warm, on WebGPU whether the device opens and the model's kernels compile (from its files'
 * headers) while the weights download: "auto" (the default: when a weights file is not stored),
 * true or false (info.load.warm says what it did).
 */
export async function load(model, { onProgress, onWarning, backend, ctxLen, memory, memoryCacheMb, memoryGapKb, share = false, slots, warm = 'auto' } = {}) {
  // Requests decoded together on WebGPU (each its own K/V cache of ctxLen positions): several
  // where tabs share the model, else one. The CPU kernels hold one sequence.
  slots ??= share ? 4 : 1;
  const resolved = await resolveFiles(model);
  let { name, files } = resolved;
  // A memory model on a fetched backbone streams its rows unless told otherwise (models.json).
  memory ??= resolved.memory;
  let memoryUrl = '';
  let memoryBytes = 0;
  if (memory === 'stream') {
    const m = files.find((f) => f.name === 'memory.safetensors');
    if (!m) throw new Error(`${model}: no memory.safetensors to stream`);
    memoryUrl = new URL(m.url, location.href).href;
    memoryBytes = m.bytes || 0;
    files = files.filter((f) => f !== m);
  } else if (memory !== undefined && memory !== 'download') {
    throw new Error(`memory: expected "download" or "stream", not ${JSON.stringify(memory)}`);
  }
  // Load in `worker`: the model's info.
  const loadIn = async (worker) => {
    const info = await worker.call('load', { model: name, files, backend, ctxLen, memoryUrl, memoryCacheMb, memoryGapKb, slots, warm },
      (m) => {
        if (m.event === 'warning') onWarning?.(m.message);
        if (m.event !== 'progress') return;
        const { phase, loaded, total, file, file_loaded, file_total, rate, eta_s } = m;
        onProgress?.({ phase, loaded, total, file, fileLoaded: file_loaded, fileTotal: file_total, rate, etaSeconds: eta_s });
      }).done;
    // The streamed file's size: the page shows what share of it has been fetched.
    if (memoryUrl) info.memory_file_bytes = memoryBytes;
    return info;
  };
  if (share && typeof navigator.locks?.request === 'function' && typeof BroadcastChannel === 'function') {
    // The same model with the same options is one engine for every tab (shared.js).
    const key = JSON.stringify([name, backend ?? 'auto', ctxLen ?? 0, memory ?? '', memoryCacheMb ?? -1, memoryGapKb ?? -1, slots]);
    const t = await sharedEngine(key, () => new Worker_(), loadIn);
    return new TideModel(t, t.info);
  }
  const worker = new Worker_();
  try {
    return new TideModel(worker, await loadIn(worker));
  } catch (e) {
    worker.terminate();
    throw e;
  }
}

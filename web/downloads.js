// Model files kept in the browser's origin-private file system (OPFS), so that a download
// survives a dropped connection, a reload or a restarted server: worker.js calls this. It runs
// in a dedicated worker, the only place with synchronous access handles, whose writes land in
// the file at once: a page killed mid-download keeps every byte it wrote.
//
// A file is stored under a key made of its URL, size and validator (ETag): KEY holds the bytes,
// KEY.json the record {url, file, model, bytes, sha256, etag, complete, updated}. A stored file
// is used as whole only when its record says complete and its sha256, taken again as it is
// read, is the one expected (models.json's, else the one taken when it was stored).

const DIR = 'tide-models-v2';
const OLD_DIRS = ['tide-model-cache-v1']; // an earlier layout: whole files only, no records
const RETRIES = 3;
const FLUSH_BYTES = 8 << 20;
const READ_CHUNK = 4 << 20;

const mb = (n) => `${(n / 1e6).toFixed(1)} MB`;

/** The store's folder, or null where the browser has no OPFS (private windows, old browsers). */
export async function openStore() {
  try {
    const root = await navigator.storage.getDirectory();
    for (const d of OLD_DIRS) await root.removeEntry(d, { recursive: true }).catch(() => {});
    return await root.getDirectoryHandle(DIR, { create: true });
  } catch {
    return null;
  }
}

async function keyOf(url, bytes, tag) {
  const key = new TextEncoder().encode(`${new URL(url, self.location.href).href}|${bytes}|${tag}`);
  const h = new Uint8Array(await crypto.subtle.digest('SHA-256', key));
  return Array.from(h.slice(0, 16), (b) => b.toString(16).padStart(2, '0')).join('');
}

async function readRecord(dir, key) {
  try {
    return JSON.parse(await (await (await dir.getFileHandle(`${key}.json`)).getFile()).text());
  } catch {
    return null;
  }
}

/**
 * Whether the store holds the whole of `file` ({url, bytes?}) as the server has it now (its
 * size and ETag, as fetchFile keys it); false without a store or on any doubt.
 */
export async function storedWhole(dir, file) {
  if (!dir) return false;
  try {
    const head = await fetch(file.url, { method: 'HEAD' });
    const bytes = Number(head.headers.get('content-length'));
    if (!head.ok || !(bytes > 0)) return false;
    const tag = head.headers.get('etag') || head.headers.get('last-modified') || '';
    return !!(await readRecord(dir, await keyOf(file.url, bytes, tag)))?.complete;
  } catch {
    return false;
  }
}

async function writeRecord(dir, key, rec) {
  const w = await (await dir.getFileHandle(`${key}.json`, { create: true })).createWritable();
  await w.write(JSON.stringify({ ...rec, updated: Date.now() }));
  await w.close(); // replaces the record at once: never half written
}

// Whether the bytes are gone: a file open elsewhere (a loaded model, a download in another
// tab) cannot be removed, and then its record stays too.
async function removeEntry(dir, key) {
  try {
    await dir.removeEntry(key);
  } catch (e) {
    if (e.name !== 'NotFoundError') return false;
  }
  await dir.removeEntry(`${key}.json`).catch(() => {});
  return true;
}

/** Every stored file: [{key, url, file, model, bytes, stored_bytes, complete, sha256, updated}]. */
export async function listStored(dir) {
  if (!dir) return [];
  const out = [];
  for await (const [name] of dir.entries()) {
    if (!name.endsWith('.json')) continue;
    const key = name.slice(0, -5);
    const rec = await readRecord(dir, key);
    if (!rec) continue;
    let stored = 0;
    try {
      stored = (await (await dir.getFileHandle(key)).getFile()).size;
    } catch { /* a record whose bytes are gone: listed, 0 bytes stored */ }
    out.push({ key, ...rec, stored_bytes: stored });
  }
  return out.sort((a, b) => (a.model || '').localeCompare(b.model || '') || a.file.localeCompare(b.file));
}

/** Delete the stored files that `match` says ({model}, {url}, {key}, or {} for all); how many. */
export async function removeStored(dir, match = {}) {
  let n = 0;
  for (const e of await listStored(dir)) {
    const hit = (match.model === undefined || e.model === match.model)
      && (match.url === undefined || e.url === new URL(match.url, self.location.href).href)
      && (match.key === undefined || e.key === match.key);
    if (hit && await removeEntry(dir, e.key)) n++;
  }
  // Bytes left without a record (a page killed before its first record): nothing can use them.
  const keys = new Set((await listStored(dir)).map((e) => e.key));
  if (match.model === undefined && match.url === undefined && match.key === undefined) {
    for await (const [name] of dir.entries()) {
      if (!name.endsWith('.json') && !keys.has(name)) await dir.removeEntry(name).catch(() => {});
    }
  }
  return n;
}

// Bytes per second over the last few seconds, and the time left at that rate.
class Meter {
  constructor(total, done) {
    this.total = total;
    this.samples = [[performance.now(), done]];
  }

  at(done) {
    const now = performance.now();
    this.samples.push([now, done]);
    while (this.samples.length > 2 && now - this.samples[0][0] > 3000) this.samples.shift();
    const [t0, d0] = this.samples[0];
    const rate = now > t0 ? ((done - d0) * 1000) / (now - t0) : 0;
    return { rate, eta_s: rate > 0 ? (this.total - done) / rate : null };
  }
}

// A stored file's bytes into `sink`, in order; false when its size is not `bytes`.
async function readStored(dir, key, bytes, sink, progress) {
  const f = await (await dir.getFileHandle(key)).getFile();
  if (f.size !== bytes) return false;
  const reader = f.stream().getReader();
  const meter = new Meter(bytes, 0);
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    sink.write(sink.filled(), value);
    progress(sink.filled(), meter.at(sink.filled()));
  }
  return sink.filled() === bytes;
}

// The first `n` bytes of a partial file (an open access handle) into `sink`.
function readPartial(handle, n, sink, progress) {
  const meter = new Meter(n, 0);
  const buf = new Uint8Array(Math.min(READ_CHUNK, n));
  while (sink.filled() < n) {
    const at = sink.filled();
    const want = Math.min(buf.length, n - at);
    const got = handle.read(want === buf.length ? buf : buf.subarray(0, want), { at });
    if (got <= 0) break;
    sink.write(at, buf.subarray(0, got));
    progress(sink.filled(), meter.at(sink.filled()));
  }
  return sink.filled();
}

/**
 * One model file: from the store when a whole, intact copy is there; else downloaded, resumed
 * where a partial copy ends, written to the store as it comes and checked before use.
 * `file`: {url, name, bytes?, sha256?} (models.json gives both); `makeSink(bytes)`: where the
 * bytes go ({write(offset, chunk), filled(), rewind(), sha256(), free()}: a wasm FileBuffer);
 * `progress(phase, loaded, total, {rate, eta_s})` with phase "cache" | "download";
 * `warn(message)`: what went wrong without stopping the load (no room to store, a corrupt copy).
 * `makeSink(bytes, inHeap)` gives a FileBuffer when `inHeap`, else a HashSink (the sha256
 * alone). With `readThrough`, a file that is (or gets) stored is not kept in the heap: it is
 * hashed on its way, and its store file comes back open (`handle`, a synchronous access handle)
 * for the model to read at offsets.
 * Returns {sink, handle, cached, downloaded, resumed_from, sha256, stored}.
 */
export async function fetchFile(dir, file, { model, makeSink, progress, warn, readThrough = false }) {
  const head = await fetch(file.url, { method: 'HEAD' });
  if (!head.ok) throw new Error(`${file.url}: HTTP ${head.status} ${head.statusText}`.trim());
  const bytes = Number(head.headers.get('content-length'));
  if (!Number.isFinite(bytes) || bytes <= 0) throw new Error(`${file.url}: the server gives no length`);
  if (file.bytes && file.bytes !== bytes) {
    throw new Error(`${file.url}: the server sends ${bytes} bytes, but models.json says ${file.bytes}`);
  }
  const tag = head.headers.get('etag') || head.headers.get('last-modified') || '';
  const url = new URL(file.url, self.location.href).href;
  const key = dir ? await keyOf(url, bytes, tag) : null;
  let rec = dir ? await readRecord(dir, key) : null;

  let store = dir;
  if (rec?.complete) {
    const r = await fromStore(dir, key, bytes, file, rec, { makeSink, progress, warn, readThrough });
    if (r === UNREADABLE) store = null; // the copy is kept as it is; this load goes without
    else if (r) return r;
    rec = null;
  }

  let handle = null;
  let sink = null;
  let keep = false;
  try {
    let have = 0;
    if (store) ({ handle, have } = await openForWrite(dir, key, url, bytes, rec, file, { model, tag, warn }));
    const inHeap = !(readThrough && handle);
    sink = makeSink(bytes, inHeap);
    if (have > 0) readPartial(handle, have, sink, (n, m) => progress('cache', n, bytes, m));
    handle?.truncate(sink.filled());
    let r;
    try {
      r = await download(url, file, bytes, sink, handle, dir, key, { model, tag, progress, warn, inHeap });
    } catch (e) {
      if (!(e instanceof NoRoom)) throw e;
      // The store filled up midway and the bytes went to the store alone: fetch the file
      // again into the heap, without a copy.
      handle = null;
      sink.free();
      sink = null;
      sink = makeSink(bytes, true);
      r = await download(url, file, bytes, sink, null, dir, key, { model, tag, progress, warn, inHeap: true });
    }
    keep = readThrough && r.stored;
    return { ...r, handle: keep ? handle : null };
  } catch (e) {
    sink?.free();
    throw e;
  } finally {
    if (!keep) {
      try {
        handle?.flush();
        handle?.close();
      } catch { /* already closed */ }
    }
  }
}

// The storage refused a write midway while the file's bytes went nowhere else.
class NoRoom extends Error {}

// A whole stored copy, checked by its sha256 as it is read: into a FileBuffer, or (with
// `readThrough`) through a HashSink, its file then opened for reading at offsets. null when the
// copy is corrupt (deleted, with a warning) or cannot be read.
async function fromStore(dir, key, bytes, file, rec, { makeSink, progress, warn, readThrough }) {
  const want = file.sha256 || rec.sha256;
  let sink = makeSink(bytes, !readThrough);
  try {
    const whole = await readStored(dir, key, bytes, sink, (n, m) => progress('cache', n, bytes, m));
    if (whole && sink.sha256() === want) {
      let handle = null;
      if (readThrough) {
        try {
          handle = await (await dir.getFileHandle(key)).createSyncAccessHandle();
        } catch (e) {
          // Held by another tab's model: this one reads the copy into its heap instead.
          warn(`${file.name}: the stored copy is in use elsewhere (${e.message}): reading it into memory`);
          sink.free();
          sink = null;
          sink = makeSink(bytes, true);
          const again = await readStored(dir, key, bytes, sink, (n, m) => progress('cache', n, bytes, m));
          if (!again || sink.sha256() !== want) {
            throw new Error('it changed while it was read');
          }
        }
      }
      return { sink, handle, cached: true, downloaded: 0, resumed_from: 0, sha256: want, stored: true };
    }
    warn(`${file.name}: the stored copy is corrupt (${whole ? `sha256 ${sink.sha256()}, expected ${want}` : 'wrong size'}): deleted, downloading it again`);
    await removeEntry(dir, key);
    sink.free();
    return null;
  } catch (e) {
    // Unreadable now (e.g. held by a closing tab): not proof that it is bad, so it is kept
    // untouched, and this load downloads the file into memory.
    warn(`${file.name}: the stored copy is unreadable (${e.message}): downloading it again, without a copy`);
    sink?.free();
    return UNREADABLE;
  }
}

const UNREADABLE = {};

const WITHOUT_COPY = 'downloading it without keeping a copy; delete stored models (models.delete) or give the site more room';

// The store's file for writing and how many bytes of a cut download it holds; a null handle
// (and a warning) where it cannot be kept: no room, or another tab writing it.
async function openForWrite(dir, key, url, bytes, rec, file, { model, tag, warn }) {
  let handle = null;
  try {
    // Older copies of this URL (another size or version) are of no more use.
    for (const e of await listStored(dir)) if (e.url === url && e.key !== key) await removeEntry(dir, e.key);
    handle = await (await dir.getFileHandle(key, { create: true })).createSyncAccessHandle();
    const have = rec && !rec.complete ? Math.min(handle.getSize(), bytes) : 0;
    const need = bytes - have;
    const { quota, usage } = await navigator.storage.estimate();
    if (Number.isFinite(quota) && need > quota - usage) {
      warn(`${file.name}: ${mb(need)} to store, ${mb(Math.max(0, quota - usage))} free in this site's storage (quota ${mb(quota)}, ${mb(usage)} used): ${WITHOUT_COPY}`);
      handle.close();
      await removeEntry(dir, key);
      return { handle: null, have: 0 };
    }
    await writeRecord(dir, key, { url, file: file.name, model, bytes, sha256: file.sha256 || null, etag: tag, complete: false });
    return { handle, have };
  } catch (e) {
    try { handle?.close(); } catch { /* closed */ }
    warn(`${file.name}: not kept in the browser's storage (${e.message})`);
    return { handle: null, have: 0 };
  }
}

// Fetch the rest of the file into `sink` (and the store's file), resuming with Range requests
// after a cut, up to RETRIES times in a row; then check its sha256.
// `inHeap`: whether `sink` keeps the bytes (a FileBuffer) or only hashes them.
async function download(url, file, bytes, sink, handle, dir, key, { model, tag, progress, warn, inHeap }) {
  let resumedFrom = sink.filled();
  const meter = new Meter(bytes, resumedFrom);
  let flushed = resumedFrom;
  const request = async () => {
    const at = sink.filled();
    // If-Range: a file that changed since its validator was taken comes back whole (200),
    // never spliced onto the old one's first bytes.
    const headers = { Range: `bytes=${at}-` };
    if (tag.startsWith('"')) headers['If-Range'] = tag;
    const res = await fetch(url, at > 0 ? { headers } : undefined);
    const range = res.headers.get('content-range') || '';
    if (at > 0 && res.status === 200) {
      // The server ignores ranges, or the file changed: take the whole file again.
      sink.rewind();
      handle?.truncate(0);
      resumedFrom = 0;
      flushed = 0;
    } else if (at > 0 && !(res.status === 206 && range.startsWith(`bytes ${at}-`) && range.endsWith(`/${bytes}`))) {
      throw new Error(`${url}: could not resume the download at byte ${at} (HTTP ${res.status} ${range})`);
    } else if (!res.ok) {
      throw new Error(`${url}: HTTP ${res.status} ${res.statusText}`.trim());
    }
    return res;
  };
  let lastError = null;
  for (let attempt = 0; sink.filled() < bytes; attempt++) {
    if (attempt > RETRIES) {
      const kept = handle ? ': what came is kept, load again to resume' : '';
      const why = lastError ? ` (${lastError.message})` : ': the response ended early';
      throw new Error(`${url}: download failed after ${sink.filled()} of ${bytes} bytes${why}${kept}`);
    }
    if (attempt > 0) await new Promise((r) => setTimeout(r, 250 * attempt));
    const before = sink.filled();
    let reader = null;
    try {
      reader = (await request()).body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        const at = sink.filled();
        if (at + value.length > bytes) throw new Error(`more bytes than its length ${bytes}`);
        sink.write(at, value);
        if (handle) {
          handle.write(value, { at });
          if (at + value.length - flushed >= FLUSH_BYTES) {
            handle.flush();
            flushed = at + value.length;
          }
        }
        progress('download', sink.filled(), bytes, meter.at(sink.filled()));
      }
    } catch (e) {
      lastError = e;
      reader?.cancel().catch(() => {}); // the connection goes with it
      if (e.name === 'QuotaExceededError' && handle) {
        // The store filled up mid-download (the browser's estimate did not foresee it): go on
        // without it.
        let kept = 0;
        try { kept = handle.getSize(); } catch { /* closed */ }
        handle.close();
        handle = null;
        await removeEntry(dir, key);
        warn(`${file.name}: ${mb(bytes)} to store, but this site's storage took ${mb(kept)} of it and refused more (its quota is full): ${WITHOUT_COPY}`);
        if (!inHeap) throw new NoRoom();
        attempt--; // not the link's fault
      }
    }
    if (sink.filled() > before) attempt = 0; // progress made: the next cut gets its retries too
  }
  const sha256 = sink.sha256();
  if (file.sha256 && sha256 !== file.sha256) {
    if (handle) {
      handle.close();
      await removeEntry(dir, key);
    }
    throw new Error(`${url}: the download's sha256 is ${sha256}, but models.json gives ${file.sha256}: the file is corrupt, and was deleted; load again to download it anew`);
  }
  if (handle) {
    handle.flush();
    await writeRecord(dir, key, { url, file: file.name, model, bytes, sha256, etag: tag, complete: true });
  }
  return { sink, cached: false, downloaded: bytes - resumedFrom, resumed_from: resumedFrom, sha256, stored: !!handle };
}

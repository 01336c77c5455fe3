// One loaded model for every tab of an origin that loads the same one with `share: true`
// (tide.js). The first tab to take the model's Web Lock is its leader: its worker loads the
// model; the other tabs are followers and send their calls to it over a BroadcastChannel, so
// the model is downloaded once and held once (one GPU copy). Calls from all tabs run in the
// leader's worker one after another (not yet batched together). When the leader's tab closes,
// its lock passes to a follower, which loads the model itself (from the browser's store: no
// download) and leads from then on; calls that were waiting on the old leader fail and say so.

// What the leader runs for others: the model's calls, never load or device tests.
/**
 * A failed call's Error: for an API request, `status` (the HTTP status `tide serve` would
 * answer) and `error` (OpenAI's error object: message, type, code), as the openai client's.
 */
export function callError(m) {
  const e = new Error(m.error);
  if (m.status !== undefined) e.status = m.status;
  if (m.body?.error) {
    e.error = m.body.error;
    e.code = m.body.error.code ?? null;
  }
  return e;
}

const SHARED_OPS = new Set(['generate', 'memoryStats', 'chatPrompt', 'inspect', 'api', 'apiStats']);

/**
 * A worker-like transport ({call, cancel, terminate}) for the model `key` names, leading or
 * following. `startLocal()` makes a local worker (tide.js's Worker_); `loadLocal(worker)`
 * loads the model in it and resolves to its info.
 */
export async function sharedEngine(key, startLocal, loadLocal) {
  const name = `tide-engine:${key}`;
  const t = new SharedTransport(name, startLocal, loadLocal);
  await t.start();
  return t;
}

class SharedTransport {
  constructor(name, startLocal, loadLocal) {
    this.name = name;
    this.startLocal = startLocal;
    this.loadLocal = loadLocal;
    this.me = crypto.randomUUID();
    this.ch = new BroadcastChannel(name);
    this.local = null; // the worker, when leading
    this.pending = new Map(); // rid -> {resolve, reject, onEvent}, calls sent to the leader
    this.served = new Map(); // `${tab}:${rid}` -> local call id, calls run for followers
    this.next = 1;
    this.info = null;
    this.closed = false;
    this.abort = new AbortController();
    this.ch.onmessage = (ev) => this.#onMessage(ev.data);
  }

  // Lead if the lock is free, else follow (and queue for the lock, to lead when it frees).
  async start() {
    let release;
    this.held = new Promise((r) => (release = r));
    this.release = release;
    const got = await new Promise((resolve, reject) => {
      navigator.locks.request(this.name, { ifAvailable: true }, async (lock) => {
        resolve(!!lock);
        if (lock) await this.held;
      }).catch(reject);
    });
    if (got) {
      await this.#lead();
      return;
    }
    // Next in line: when the leader's tab goes (or its load fails), this one leads.
    const led = new Promise((resolve, reject) => {
      navigator.locks.request(this.name, { signal: this.abort.signal }, async () => {
        if (this.closed) return;
        this.#dropPending();
        try {
          await this.#lead();
          resolve();
        } catch (e) {
          this.dead = e;
          reject(e);
          return;
        }
        await this.held;
      }).catch(() => { /* aborted at close */ });
    });
    led.catch(() => {}); // a failure after following is this.dead's to tell
    const info = await Promise.race([this.#askInfo(), led.then(() => null)]);
    if (info && !this.local) {
      this.info = info;
      this.info.shared = { role: 'follower' };
    }
  }

  // Calls sent to a leader that is gone: they fail and say so (the new leader never saw them).
  #dropPending() {
    const gone = new Error('the tab that ran the shared model closed during this call: try it again');
    for (const p of this.pending.values()) p.reject(gone);
    this.pending.clear();
  }

  async #lead() {
    const w = this.startLocal();
    // This tab's own calls while the model loads wait for it (`call`).
    let ready;
    this.loading = new Promise((r) => (ready = r));
    try {
      const info = await this.loadLocal(w);
      this.local = w;
      if (this.info) Object.assign(this.info, info); else this.info = info;
      this.info.shared = { role: 'leader' };
    } catch (e) {
      w.terminate();
      this.release();
      this.dead = e;
      throw e;
    } finally {
      this.loading = null;
      ready();
    }
    // Announced to every tab: followers of the old leader drop what they sent it.
    this.ch.postMessage({ type: 'leader', info: this.#plainInfo() });
  }

  #plainInfo() {
    const { shared, ...rest } = this.info; // eslint-disable-line no-unused-vars
    return rest;
  }

  // The leader's info; the leader may still be loading: it announces itself when ready.
  #askInfo() {
    return new Promise((resolve) => {
      this.onInfo = resolve;
      this.ch.postMessage({ type: 'hello', from: this.me });
    });
  }

  #onMessage(m) {
    if (this.local) return this.#serve(m);
    const mine = m.type === 'welcome' && m.to === this.me;
    if ((mine || m.type === 'leader') && this.onInfo) {
      const r = this.onInfo;
      this.onInfo = null;
      r(m.info);
      return;
    }
    if (m.type === 'leader') {
      // A new leader: whatever was sent to the old one will not be answered.
      this.#dropPending();
      return;
    }
    if (m.to !== this.me) return;
    const p = this.pending.get(m.rid);
    if (!p) return;
    if (m.type === 'event') p.onEvent?.(m.event);
    if (m.type === 'result') {
      this.pending.delete(m.rid);
      if (m.ok) p.resolve(m.value); else p.reject(callError(m));
    }
  }

  // Leading: answer a follower's hello, run its calls, pass its cancels on.
  #serve(m) {
    if (m.type === 'hello') {
      this.ch.postMessage({ type: 'welcome', to: m.from, info: this.#plainInfo() });
    } else if (m.type === 'call') {
      const reply = (r) => this.ch.postMessage({ to: m.from, rid: m.rid, ...r });
      if (!SHARED_OPS.has(m.op)) {
        reply({ type: 'result', ok: false, error: `${m.op} is not shared between tabs` });
        return;
      }
      const { id, done } = this.local.call(m.op, m.args, (event) => reply({ type: 'event', event }));
      const k = `${m.from}:${m.rid}`;
      this.served.set(k, id);
      done.then((value) => reply({ type: 'result', ok: true, value }),
        (e) => reply({ type: 'result', ok: false, error: e.message, status: e.status,
          body: e.error ? { error: e.error } : undefined }))
        .finally(() => this.served.delete(k));
    } else if (m.type === 'cancel') {
      const id = this.served.get(`${m.from}:${m.rid}`);
      if (id !== undefined) this.local.cancel(id);
    }
  }

  get dead() {
    return this._dead ?? this.local?.dead;
  }

  set dead(e) {
    this._dead = e;
  }

  call(op, args = {}, onEvent) {
    if (this.dead) return { id: 0, done: Promise.reject(this.dead) };
    if (this.local) return this.local.call(op, args, onEvent);
    if (this.loading) {
      // Taking over: the call runs here once the model is loaded (a cancel meanwhile is lost).
      const done = this.loading.then(() => this.call(op, args, onEvent).done);
      return { id: 0, done };
    }
    const rid = this.next++;
    const done = new Promise((resolve, reject) => this.pending.set(rid, { resolve, reject, onEvent }));
    this.ch.postMessage({ type: 'call', from: this.me, rid, op, args });
    return { id: rid, done };
  }

  cancel(target) {
    if (this.local) this.local.cancel(target);
    else this.ch.postMessage({ type: 'cancel', from: this.me, rid: target });
  }

  terminate() {
    this.closed = true;
    this.abort.abort();
    this.local?.terminate();
    this.ch.close();
    this.release();
  }
}

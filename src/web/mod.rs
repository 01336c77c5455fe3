//! The browser's entry points (wasm-bindgen), called by web/worker.js: open a model from the
//! files the worker fetched, generate token by token, read router weights. Everything below is
//! the same library code the native CLI runs; this file only converts at the JS boundary.
use std::cell::RefCell;
use std::rc::Rc;

use js_sys::Promise;
use serde_json::{json, Value};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

// The threaded build's `initThreadPool(n)`: the page starts n workers over the shared wasm
// memory before opening a session; the fast CPU backend's rayon pool runs on them.
#[cfg(feature = "threads")]
pub use wasm_bindgen_rayon::init_thread_pool;

use crate::engine::{Backend, Engine};
use crate::error::{Error, Result};
use crate::generate::Run;
use crate::inspect::{inspect, tokens_to_inspect};
use crate::memory::fetch::{open_memory_fetch, FetchOptions, Fetcher};
use crate::memory::store::RowStore;
use crate::memory::MemoryRows;
use crate::model::tokenizer::TokenizerInfo;
use crate::model::{Model, ModelFiles};
use crate::options::Options;
use crate::sample::{Sampler, SamplerConfig};
use crate::session::{self, RowSource};

/// Panics go to the console (the worker reports the failed call) rather than vanishing.
#[wasm_bindgen(start)]
fn start() {
    std::panic::set_hook(Box::new(|p| {
        web_sys::console::error_1(&p.to_string().into())
    }));
}

mod api;
mod files;
mod preflight;
pub use files::{FileBuffer, FileSet, HashSink, StoredFile};
pub use preflight::Preflight;

fn js_err(e: Error) -> JsValue {
    JsError::new(&e.to_string()).into()
}

/// What a session keeps of the model once the engine holds the weights: the GPU engine has
/// them in device memory, so the wasm heap drops its copy.
struct Inner {
    name: String,
    tok: TokenizerInfo,
    engine: Engine,
    ctx_len: usize,
    k: usize,
    token_counts: Option<Vec<u64>>,
    info: Value,
    run: Option<(Run, Sampler)>,
    /// The memory's row store (shared with the engine's): its counters, and where rows
    /// streamed from the server are fetched into before each step.
    rows: Option<RowStore>,
    /// A streamed memory's fetcher, which brings a step's rows before it runs.
    fetcher: Option<Fetcher>,
    /// The serving core, once the API has had a request.
    core: Option<api::Core>,
}

/// One loaded model and its engine. Calls are serialised by the worker; one that arrives while
/// another is still running is refused rather than interleaved.
#[wasm_bindgen]
pub struct Session {
    inner: Rc<RefCell<Inner>>,
    /// API requests waiting and their events (borrowed briefly, never across an await).
    book: Rc<RefCell<api::Book>>,
    name: String,
    ctx_len: usize,
}

fn busy() -> JsValue {
    JsError::new("the model is busy with another call").into()
}

/// Open a model from its files: one GGUF file, or a model folder's files (config.json,
/// *.safetensors, tokenizer.json, ...). `backend` is "auto" (WebGPU, else the CPU reference),
/// "gpu" or "cpu"; `ctx_len` 0 takes the default (crate::session decides it, the cache and the
/// gap as natively). `memory_url`, when not empty, is a memory file left on the server: its
/// rows are streamed with Range requests as steps need them. The row cache holds
/// `memory_cache_mb` MB (negative: the default); rows of a step closer than `memory_gap_kb`
/// share a request (negative: measured from the link at load). `slots` requests are decoded
/// together by the API (`apiSubmit`), each in its own K/V cache (the CPU engines hold one).
// Plain values across the JS boundary, one per option the worker passes.
#[allow(clippy::too_many_arguments)]
#[wasm_bindgen(js_name = openSession)]
pub async fn open_session(
    source: String,
    files: FileSet,
    backend: String,
    ctx_len: usize,
    memory_url: String,
    memory_cache_mb: f64,
    memory_gap_kb: i32,
    slots: usize,
    warm: Option<GpuWarm>,
) -> std::result::Result<Session, JsValue> {
    let asked = Asked {
        slots,
        ctx: (ctx_len > 0).then_some(ctx_len),
        cache_mb: (memory_cache_mb >= 0.0).then_some(memory_cache_mb),
        gap_kb: usize::try_from(memory_gap_kb).ok(),
    };
    let warm = warm.and_then(|w| w.0);
    open(source, files, &backend, &memory_url, asked, warm)
        .await
        .map_err(js_err)
}

/// A GPU device with a model's kernels compiled on it, made while the weights download
/// (`Preflight::warm`), for `openSession` to open the model on.
#[wasm_bindgen]
pub struct GpuWarm(Option<crate::engine::Warmed>);

#[wasm_bindgen]
impl GpuWarm {
    /// Pipelines compiled on it.
    #[wasm_bindgen(getter)]
    pub fn pipelines(&self) -> usize {
        self.0.as_ref().map_or(0, |w| w.pipelines_compiled())
    }
}

/// The library's options for a session of `model` as the page asks for it (`ctx`, `slots`),
/// its device asking for buffers as large as the model needs: what `openSession` opens with,
/// and what `Preflight` sizes the model and warms the device with.
fn session_options(model: &Model, ctx: Option<usize>, slots: usize) -> Result<Options> {
    let mut opts = session::options(model, ctx)?;
    opts.decoder.slots = slots.clamp(1, 64);
    opts.gpu.needed_buffer = Some(crate::engine::largest_buffer(model, &opts.decoder));
    Ok(opts)
}

fn parse_backend(b: &str) -> Result<Backend> {
    Ok(match b {
        "auto" => Backend::Auto,
        "gpu" | "webgpu" => Backend::Gpu,
        "cpu" => Backend::Cpu,
        "reference" => Backend::Reference,
        b => {
            return Err(Error::Input(format!(
                "backend {b:?}: expected auto, webgpu, cpu or reference"
            )))
        }
    })
}

/// What the page asked for (None: the session's default).
struct Asked {
    /// K/V cache slots: requests the API decodes together (on WebGPU); 1..=64 taken.
    slots: usize,
    ctx: Option<usize>,
    cache_mb: Option<f64>,
    gap_kb: Option<usize>,
}

async fn open(
    source: String,
    files: FileSet,
    backend: &str,
    memory_url: &str,
    asked: Asked,
    warm: Option<crate::engine::Warmed>,
) -> Result<Session> {
    let fetch = FetchOptions {
        max_gap_bytes: session::gap_bytes(asked.gap_kb)?,
        ..FetchOptions::default()
    };
    let backend = parse_backend(backend)?;
    if files.is_empty() {
        return Err(Error::Input(format!("{source}: no model files given")));
    }
    let parts = ModelFiles {
        source: source.clone(),
        files: files.into_blobs()?,
    };
    // The GPU engine keeps the weights in device memory; the heap copy goes with `model`.
    // A memory model's card may leave its memory file out: its rows stream from memory_url.
    let mut model = parts.load_with(!memory_url.is_empty())?;
    let opts = session_options(&model, asked.ctx, asked.slots)?;
    let ctx = opts.decoder.ctx_len;
    let (mut link, mut fetcher) = (None, None);
    let mut rows_from = RowSource::Local;
    let mut remote_rows = None;
    if !memory_url.is_empty() {
        let (r, f) = open_memory_fetch(&model.config, memory_url, &fetch).await?;
        model.memory = Some(r.memory);
        if let Some(tc) = r.token_counts {
            model.token_counts = Some(tc);
        }
        (fetcher, link, remote_rows) = (Some(f), Some(r.link), Some(r.rows));
        rows_from = RowSource::Remote;
    }
    let mut stores = MemoryRows::local(&model);
    if remote_rows.is_some() {
        stores.tide = remote_rows;
    }
    session::size_row_caches(&stores, ctx, rows_from, asked.cache_mb)?;
    let rows = stores.tide.clone();
    let (engine, note) = Engine::open_warm(&model, &stores, backend, &opts, warm).await?;
    let k = model.memory.as_ref().map_or(0, |m| m.k);
    let info = json!({
        "model": source,
        "backend": match engine { Engine::Gpu(_) => "webgpu", Engine::Cpu(_) => "cpu" },
        "adapter": engine.describe(),
        "gpu": match &engine {
            Engine::Gpu(g) => json!({
                "name": g.ctx.info.name,
                "f16": g.ctx.f16,
                "subgroups": g.ctx.subgroup_size.is_some(),
                "weights_in": if g.ctx.weight_textures { "textures" } else { "buffers" },
                "max_storage_buffer_binding_size": g.ctx.limits.max_storage_buffer_binding_size,
                "max_buffer_size": g.ctx.limits.max_buffer_size,
                "max_storage_buffers_per_shader_stage": g.ctx.limits.max_storage_buffers_per_shader_stage,
            }),
            Engine::Cpu(_) => Value::Null,
        },
        "note": note,
        "ctx_note": session::ctx_note(model.config.ctx_len, ctx),
        "k": k,
        "layers": model.config.n_layers,
        "vocab": model.config.vocab,
        "ctx_len": opts.decoder.ctx_len,
        "slots": engine.slots(),
        "chat_template": model.tokenizer.chat_template.is_some(),
        "token_counts": model.token_counts.is_some(),
        "memory_streamed": (!memory_url.is_empty()).then_some(memory_url),
        "memory_cache_tokens": rows.as_ref().map(|r| r.cache_tokens()),
        // The link measured at attach and the read-through gap chosen from it.
        "memory_link": link,
    });
    let inner = Inner {
        name: source,
        tok: model.tokenizer.clone(),
        ctx_len: opts.decoder.ctx_len,
        k,
        token_counts: model.token_counts.clone(),
        engine,
        info,
        run: None,
        rows,
        fetcher,
        core: None,
    };
    Ok(Session {
        name: inner.name.clone(),
        ctx_len: inner.ctx_len,
        inner: Rc::new(RefCell::new(inner)),
        book: Rc::default(),
    })
}

fn sampler_from(o: &Value) -> Result<Sampler> {
    let d = SamplerConfig::sampling();
    let f = |k: &str, d: f32| o.get(k).and_then(Value::as_f64).map_or(d, |x| x as f32);
    let u = |k: &str, d: u64| o.get(k).and_then(Value::as_u64).unwrap_or(d);
    let cfg = SamplerConfig {
        temperature: f("temperature", d.temperature),
        top_k: u("topK", d.top_k as u64) as usize,
        top_p: f("topP", d.top_p),
        repeat_penalty: f("repeatPenalty", d.repeat_penalty),
        seed: u("seed", d.seed),
        ..d
    };
    cfg.validate()?;
    Ok(Sampler::new(cfg))
}

#[wasm_bindgen]
impl Session {
    /// JSON: model, backend, adapter, gpu {f16, limits...}, note (why the CPU), k, layers, ...
    pub fn info(&self) -> std::result::Result<String, JsValue> {
        let i = self.inner.try_borrow().map_err(|_| busy())?;
        Ok(i.info.to_string())
    }

    /// Start generating after `prompt` with `options` (JSON: maxTokens, temperature, topK,
    /// topP, repeatPenalty, seed). Resolves to the prompt's token count once the prompt is
    /// submitted (its streamed memory rows fetched first).
    #[allow(clippy::await_holding_refcell_ref)]
    pub fn start(&self, prompt: String, options: String) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let mut g = inner.try_borrow_mut().map_err(|_| busy())?;
            let i = &mut *g;
            let o: Value = serde_json::from_str(&options)
                .map_err(|e| js_err(Error::Input(format!("generate options: {e}"))))?;
            let sampler = sampler_from(&o).map_err(js_err)?;
            let max_tokens = o.get("maxTokens").and_then(Value::as_u64).unwrap_or(128) as usize;
            let ids = i.tok.encode(&prompt, true).map_err(js_err)?;
            i.leave_api_slots()?;
            if ids.len() < i.ctx_len {
                i.prefetch(&ids).await.map_err(js_err)?;
            }
            let ctx = i.ctx_len;
            let run = Run::start(&mut i.engine, &ids, max_tokens, ctx).map_err(js_err)?;
            i.run = Some((run, sampler));
            Ok(JsValue::from_f64(ids.len() as f64))
        })
    }

    /// One token: resolves to its text ("" while a character is incomplete), or undefined
    /// once the generation has stopped.
    // The borrow is held across the await on purpose: a second call meanwhile gets "busy".
    #[allow(clippy::await_holding_refcell_ref)]
    pub fn step(&self) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let mut g = inner.try_borrow_mut().map_err(|_| busy())?;
            let i = &mut *g;
            let Some((run, sampler)) = i.run.as_mut() else {
                return Err(js_err(Error::Input("no generation started".into())));
            };
            let piece = run.choose(&mut i.engine, &i.tok, sampler).await;
            let next = run.chosen();
            let fed = async {
                if let Some(t) = next {
                    if let (Some(rows), Some(f)) = (&i.rows, &i.fetcher) {
                        f.prefetch(rows, &[t]).await?;
                    }
                }
                run.feed_chosen(&mut i.engine)
            };
            match (piece, fed.await) {
                (Ok(Some(piece)), Ok(())) => Ok(JsValue::from_str(&piece)),
                (Ok(None), Ok(())) => Ok(JsValue::UNDEFINED),
                (Err(e), _) | (_, Err(e)) => {
                    if let Some((run, _)) = i.run.as_mut() {
                        run.cancel();
                    }
                    Err(js_err(e))
                }
            }
        })
    }

    /// An OpenAI API request (`kind` "chat" or "text", `body` its JSON, as POSTed to
    /// /v1/chat/completions or /v1/completions): {"id"} once queued for `apiPump`, or
    /// {"status", "error"} as `tide serve` would refuse it. Never waits for a running call.
    #[wasm_bindgen(js_name = apiSubmit)]
    pub fn api_submit(&self, kind: &str, body: &str) -> std::result::Result<String, JsValue> {
        let mut b = self.book.try_borrow_mut().map_err(|_| busy())?;
        Ok(b.submit(kind, body, &self.name, self.ctx_len).to_string())
    }

    /// Stop API request `id` (it leaves its slot at the next round).
    #[wasm_bindgen(js_name = apiCancel)]
    pub fn api_cancel(&self, id: u32) -> std::result::Result<(), JsValue> {
        self.book.try_borrow_mut().map_err(|_| busy())?.cancel(id);
        Ok(())
    }

    /// Admit the waiting requests that fit and run one round of the scheduler (a prompt chunk
    /// and one shared decode step). Resolves to {"outputs": [{id, chunks?, reply?, error?,
    /// status?, end}], "busy"}: busy while requests remain.
    #[allow(clippy::await_holding_refcell_ref)]
    #[wasm_bindgen(js_name = apiPump)]
    pub fn api_pump(&self) -> Promise {
        let (inner, book) = (self.inner.clone(), self.book.clone());
        future_to_promise(async move {
            let mut g = inner.try_borrow_mut().map_err(|_| busy())?;
            let i = &mut *g;
            // A generation started with `start` ends: the scheduler takes the slots.
            i.run = None;
            let slots = i.engine.slots();
            let core = i
                .core
                .get_or_insert_with(|| api::Core::new(i.ctx_len, slots));
            while core.sched.has_room(&i.engine) {
                let Some(job) = book.try_borrow_mut().map_err(|_| busy())?.next_job() else {
                    break;
                };
                core.sched.admit(job, &i.tok, &i.engine);
            }
            if core.sched.busy() {
                let rows = api::Rows {
                    store: i.rows.as_ref(),
                    fetcher: i.fetcher.as_ref(),
                };
                if let Err(e) = core.sched.round(&mut i.engine, &i.tok, &rows).await {
                    // A lost device: every request running fails with it.
                    core.sched
                        .fail_all(503, &format!("the GPU device was lost: {e}"));
                }
            }
            core.sched.drain();
            let mut b = book.try_borrow_mut().map_err(|_| busy())?;
            let outputs = b.outputs();
            let more = core.sched.busy() || b.has_waiting() || b.open() > 0;
            Ok(JsValue::from_str(
                &json!({"outputs": outputs, "busy": more}).to_string(),
            ))
        })
    }

    /// The serving core's counters as JSON: {requests_completed, steps, shared_steps (steps
    /// that several requests shared), prefix_hits, prompt_tokens, cached_tokens,
    /// generated_tokens, slots}.
    #[wasm_bindgen(js_name = apiStats)]
    pub fn api_stats(&self) -> std::result::Result<String, JsValue> {
        let i = self.inner.try_borrow().map_err(|_| busy())?;
        let slots = i.engine.slots();
        Ok(match &i.core {
            Some(c) => c.stats(slots),
            None => api::Core::new(i.ctx_len, slots).stats(slots),
        }
        .to_string())
    }

    /// The memory row store's counters as JSON ({rows_requested, hits, misses,
    /// bytes_fetched, resident_bytes, cache_tokens, streamed}), or null for a model without
    /// memory.
    #[wasm_bindgen(js_name = memoryStats)]
    pub fn memory_stats(&self) -> std::result::Result<String, JsValue> {
        let i = self.inner.try_borrow().map_err(|_| busy())?;
        Ok(i.memory_json().to_string())
    }

    /// Stop the generation in progress (its result then says "cancelled").
    pub fn cancel(&self) -> std::result::Result<(), JsValue> {
        let mut i = self.inner.try_borrow_mut().map_err(|_| busy())?;
        if let Some((run, _)) = i.run.as_mut() {
            run.cancel();
        }
        Ok(())
    }

    /// The finished generation as JSON, the object `tide generate --json` prints.
    pub fn result(&self) -> std::result::Result<String, JsValue> {
        let mut g = self.inner.try_borrow_mut().map_err(|_| busy())?;
        let adapter = g.engine.describe();
        let memory = g.memory_json();
        let Some((run, sampler)) = g.run.as_mut() else {
            return Err(js_err(Error::Input("no generation started".into())));
        };
        let mut v =
            serde_json::to_value(run.result()).map_err(|e| js_err(Error::Gpu(e.to_string())))?;
        v["adapter"] = Value::String(adapter);
        v["memory"] = memory;
        v["sampler"] = serde_json::to_value(&sampler.cfg).unwrap_or(Value::Null);
        Ok(v.to_string())
    }

    /// Destroy the GPU device, as a driver reset or a lost GPU would (tests and diagnostics:
    /// the next call reports the loss, and the page offers to reload the model).
    #[wasm_bindgen(js_name = loseDevice)]
    pub fn lose_device(&self) -> std::result::Result<bool, JsValue> {
        let i = self.inner.try_borrow().map_err(|_| busy())?;
        Ok(i.engine.lose_device())
    }

    /// The prompt for a conversation (JSON list of {role, content}) in the model's template.
    #[wasm_bindgen(js_name = chatPrompt)]
    pub fn chat_prompt(&self, messages: &str) -> std::result::Result<String, JsValue> {
        let i = self.inner.try_borrow().map_err(|_| busy())?;
        let v: Value = serde_json::from_str(messages)
            .map_err(|e| js_err(Error::Input(format!("messages: {e}"))))?;
        let mut msgs = Vec::new();
        for (n, m) in v.as_array().into_iter().flatten().enumerate() {
            let field = |k: &str| {
                m.get(k)
                    .and_then(Value::as_str)
                    .map(String::from)
                    .ok_or_else(|| js_err(Error::Input(format!("messages[{n}]: no string {k:?}"))))
            };
            msgs.push((field("role")?, field("content")?));
        }
        if msgs.is_empty() {
            return Err(js_err(Error::Input(
                "messages: expected a non-empty list".into(),
            )));
        }
        i.tok.chat_prompt(&msgs).map_err(js_err)
    }

    /// Router weights of `text`: the object `tide inspect --json` prints, as JSON.
    #[allow(clippy::await_holding_refcell_ref)]
    pub fn inspect(&self, text: String) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let mut g = inner.try_borrow_mut().map_err(|_| busy())?;
            let i = &mut *g;
            i.leave_api_slots()?;
            let ids = tokens_to_inspect(&i.tok, i.k, &i.name, &text).map_err(js_err)?;
            if ids.len() <= i.ctx_len {
                i.prefetch(&ids).await.map_err(js_err)?;
            }
            let r = inspect(&mut i.engine, &i.tok, &i.name, &ids, i.ctx_len)
                .await
                .map_err(js_err)?;
            let r = r.with_counts(i.token_counts.as_deref());
            let v = serde_json::to_value(&r).map_err(|e| js_err(Error::Gpu(e.to_string())))?;
            Ok(JsValue::from_str(&v.to_string()))
        })
    }
}

impl Inner {
    /// Before slot 0 is used outside the scheduler (`start`, `inspect`): refused while API
    /// requests run; the scheduler forgets what the slot held.
    fn leave_api_slots(&mut self) -> std::result::Result<(), JsValue> {
        self.run = None;
        if let Some(c) = self.core.as_mut() {
            if c.sched.busy() {
                return Err(js_err(Error::Input(
                    "API requests are running on this model; wait for them to finish".into(),
                )));
            }
            c.sched.slots_changed();
        }
        Ok(())
    }

    /// Fetch the streamed memory rows of `tokens` the cache lacks.
    async fn prefetch(&self, tokens: &[u32]) -> Result<()> {
        match (&self.rows, &self.fetcher) {
            (Some(rows), Some(f)) => f.prefetch(rows, tokens).await,
            _ => Ok(()),
        }
    }

    fn memory_json(&self) -> Value {
        match &self.rows {
            Some(r) => {
                let mut v = serde_json::to_value(r.stats()).unwrap_or(Value::Null);
                v["cache_tokens"] = json!(r.cache_tokens());
                v["streamed"] = json!(self.fetcher.is_some());
                v
            }
            None => Value::Null,
        }
    }
}

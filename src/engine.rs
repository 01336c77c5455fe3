//! One interface over the two backends: the wgpu decoder and the CPU reference.
use std::sync::Arc;

use crate::cpu::{CpuModel, CpuSession};
use crate::decoder::GpuDecoder;
use crate::error::{Error, Result};
use crate::fastcpu::dot::Path;
use crate::fastcpu::{fallbacks, FastCpu};
use crate::gpu::{GpuContext, GpuOptions};
use crate::memory::MemoryRows;
use crate::model::Model;
use crate::options::Options;
use crate::sample::{recent_distinct, Sampler};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A hardware GPU if one opens; else (no adapter, or only a software one: lavapipe,
    /// llvmpipe, SwiftShader, WARP) the fast CPU backend, with a note saying why.
    Auto,
    /// Any GPU adapter, software ones included.
    Gpu,
    /// The fast CPU backend (src/fastcpu/).
    Cpu,
    /// The CPU reference (src/cpu/): plain f32, the oracle.
    Reference,
}

/// The most candidates `top_candidates_async` gives (the GPU's top-k kernel's largest k).
pub const MAX_CANDIDATES: usize = crate::decoder::MAX_TOP_K;

pub enum Engine {
    Gpu(Box<GpuDecoder>),
    Cpu(Box<CpuSession>),
}

/// The largest buffer `model` needs on the GPU with `dec`'s sizes: a weight tensor as the GPU
/// holds it (repacked words, padded to whole rows of a weight texture; a layer's fused
/// matrices), the logits of a full prefill batch, the KV cache of all layers (were it one
/// buffer) or one layer's for every slot. The browser asks its device for limits this large
/// (`GpuOptions::needed_buffer`), where the adapter allows.
pub fn largest_buffer(model: &Model, dec: &crate::options::DecoderOptions) -> u64 {
    let c = &model.config;
    let on_gpu = |w: &crate::model::Weight| {
        let words =
            w.rows() as u64 * w.cols() as u64 / 32 * crate::gpu::gpu_words(w.dtype()).0 as u64;
        let row = (crate::gpu::TEX_WIDTH * 4) as u64;
        (words + 8).div_ceil(row) * row * 4
    };
    let all_kv = c.n_layers as u64 * dec.ctx_len as u64 * c.kv_dim() as u64 * 4;
    model
        .matrices()
        .chain([&model.token_embd])
        .map(on_gpu)
        .max()
        .unwrap_or(0)
        .max(c.vocab as u64 * dec.max_batch as u64 * 4)
        .max(all_kv)
        .max(gpu_needs(model, dec).largest_binding)
}

/// One weight binding the decoder makes (`weight_bindings`).
struct WeightBinding {
    name: String,
    /// Split by rows across bindings (the embedding and LM head).
    split: bool,
    /// Bytes that must sit in one binding: the whole matrix, or one row of a split one.
    unit: u64,
    /// Its bytes in all.
    total: u64,
}

/// Each weight binding the decoder makes, as the GPU holds it (repacked words): each layer's
/// fused matrices, then the embedding and (when not tied) the LM head.
fn weight_bindings(model: &Model) -> Vec<WeightBinding> {
    use crate::model::{DType, Weight};
    let row_bytes =
        |w: &Weight, dt: DType| (w.cols() / 32 * crate::gpu::gpu_words(dt).0 * 4) as u64;
    let mut out = Vec::new();
    for (li, l) in model.layers.iter().enumerate() {
        let fused: [(&str, &[&Weight]); 4] = [
            ("qkv", &[&l.wq, &l.wk, &l.wv]),
            ("attn_output", &[&l.wo]),
            ("ffn_gate_up", &[&l.w_gate, &l.w_up]),
            ("ffn_down", &[&l.w_down]),
        ];
        for (name, parts) in fused {
            // Parts of different types are uploaded as f32 (decoder/weights.rs).
            let same = parts.iter().all(|p| p.dtype() == parts[0].dtype());
            let bytes: u64 = parts
                .iter()
                .map(|p| row_bytes(p, if same { p.dtype() } else { DType::F32 }) * p.rows() as u64)
                .sum();
            out.push(WeightBinding {
                name: format!("blk.{li}.{name}"),
                split: false,
                unit: bytes,
                total: bytes,
            });
        }
    }
    let head = model.lm_head();
    let tied = head.info.name == model.token_embd.info.name;
    for w in std::iter::once(&model.token_embd).chain((!tied).then_some(head)) {
        let row = row_bytes(w, w.dtype());
        out.push(WeightBinding {
            name: w.info.name.clone(),
            split: true,
            unit: row,
            total: row * w.rows() as u64,
        });
    }
    out
}

/// The sizes of `bindings` and the K/V cache with `dec`'s sizes; a split tensor's binding is
/// one piece of at most `piece` bytes when given, else the whole tensor.
fn tally(
    model: &Model,
    dec: &crate::options::DecoderOptions,
    bindings: &[WeightBinding],
    piece: Option<u64>,
) -> GpuNeeds {
    let c = &model.config;
    let kv_layer = dec.ctx_len as u64 * dec.slots as u64 * c.kv_dim() as u64 * 4;
    let bound = |b: &WeightBinding| match (b.split, piece) {
        (true, Some(p)) => b.total.min(p / b.unit * b.unit),
        _ => b.total,
    };
    GpuNeeds {
        weight_bytes: bindings.iter().map(|b| b.total).sum(),
        kv_bytes: c.n_layers as u64 * 2 * kv_layer,
        largest_binding: bindings.iter().map(bound).max().unwrap_or(0).max(kv_layer),
    }
}

/// What `model` takes on the GPU with `dec`'s sizes, whatever the adapter (`gpu_fit` checks
/// it against one); a split tensor counts as one binding here.
pub fn gpu_needs(model: &Model, dec: &crate::options::DecoderOptions) -> GpuNeeds {
    tally(model, dec, &weight_bindings(model), None)
}

/// A GPU device with a model's kernels compiled on it before the weights were there
/// (`Engine::warm`), for `Engine::open_warm`.
pub struct Warmed(crate::decoder::Warm);

impl Warmed {
    /// Pipelines compiled on it.
    pub fn pipelines_compiled(&self) -> usize {
        self.0.pipelines_compiled()
    }
}

/// What a model takes on the GPU with a decoder's sizes (`gpu_fit`), for the front end to
/// show and to put in a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct GpuNeeds {
    /// The matrices and embeddings as the GPU holds them (repacked words, whole rows).
    pub weight_bytes: u64,
    /// The K/V cache of every layer and slot.
    pub kv_bytes: u64,
    /// The largest binding: a layer's fused matrix, a piece of the embedding, or one layer's
    /// K/V cache.
    pub largest_binding: u64,
}

/// Check `model` with `dec`'s sizes against a GPU adapter's `limits` before anything is
/// uploaded (the browser does it from the files' headers, before the download), as the
/// decoder will bind it: each layer's matrices whole in one binding (Q|K|V and gate|up fused,
/// as f32 where their types differ), the embedding and LM head split by rows so that one row
/// must fit (`textures`: the adapter keeps weights in textures, as CPU adapters do), and the
/// context within one binding (`decoder::check_context`). The error names what does not fit
/// and both sizes. Not checked here (the decoder refuses them at open): Engram's convolution
/// history and LIMe's layer history, bound whole, and resident TIDE tables. WebGPU does not
/// tell how much memory an adapter has, so the total is reported, not checked.
pub fn gpu_fit(
    model: &Model,
    dec: &crate::options::DecoderOptions,
    limits: &wgpu::Limits,
    textures: bool,
) -> Result<GpuNeeds> {
    crate::decoder::check_context(
        &model.config,
        dec,
        limits.max_storage_buffer_binding_size as usize,
    )?;
    let piece = crate::gpu::weight_piece_bytes(limits, textures) as u64;
    let bindings = weight_bindings(model);
    if let Some(b) = bindings.iter().find(|b| b.unit > piece) {
        let what = match b.split {
            true => "split by rows, one row takes",
            false => "bound whole, it takes",
        };
        return Err(Error::Gpu(format!(
            "{}: {what} {} bytes on the GPU, more than this adapter's largest storage \
             binding of {piece} bytes",
            b.name, b.unit
        )));
    }
    Ok(tally(model, dec, &bindings, Some(piece)))
}

impl Engine {
    /// Open `backend` for `model`, its memories' rows read through `rows`
    /// (`MemoryRows::local(model)` for its own tables). With `Backend::Auto` a GPU adapter is
    /// tried first and the fast CPU backend taken when none opens or the one that opens is a
    /// software renderer. The second value says why the CPU was chosen, and which of the
    /// model's matrices the fast CPU kernels leave to the reference's, for the front end to
    /// show.
    pub async fn open(
        model: &Model,
        rows: &MemoryRows,
        backend: Backend,
        opts: &Options,
    ) -> Result<(Engine, Option<String>)> {
        Self::open_warm(model, rows, backend, opts, None).await
    }

    /// The GPU device that `open` with `backend` would take, with `model`'s kernels compiled
    /// on it before its weights are there (`decoder::warm`; `model` may be built from its
    /// files' headers). None when `backend` will not run on a GPU: the CPU asked for, or
    /// `Auto` finding no hardware adapter (`open` then says why).
    pub async fn warm(
        model: &Model,
        rows: &MemoryRows,
        backend: Backend,
        opts: &Options,
    ) -> Result<Option<Warmed>> {
        let g = match backend {
            Backend::Reference | Backend::Cpu => return Ok(None),
            Backend::Gpu => GpuOptions {
                allow_software_gl: true,
                ..opts.gpu.clone()
            },
            Backend::Auto => GpuOptions {
                hardware_only: true,
                ..opts.gpu.clone()
            },
        };
        let Ok(ctx) = GpuContext::new(&g).await else {
            return Ok(None);
        };
        crate::decoder::warm(ctx, model, rows, opts.decoder.clone()).map(|w| Some(Warmed(w)))
    }

    /// `open`, on the device `warm` prepared (its compiled kernels kept) when there is one.
    pub async fn open_warm(
        model: &Model,
        rows: &MemoryRows,
        backend: Backend,
        opts: &Options,
        warm: Option<Warmed>,
    ) -> Result<(Engine, Option<String>)> {
        if let (Some(Warmed(w)), Backend::Gpu | Backend::Auto) = (warm, backend) {
            let d = GpuDecoder::from_warm(w, model, rows, opts.decoder.clone())?;
            return Ok((Engine::Gpu(Box::new(d)), None));
        }
        let ctx_len = opts.decoder.ctx_len;
        let reference = || {
            model.make_resident();
            let m = CpuModel::with_rows(model, rows.clone());
            Engine::Cpu(Box::new(Arc::new(m).session(ctx_len)))
        };
        // The fast CPU backend, and its note: why it runs (`why`) and its fallbacks.
        let cpu = |why: Option<String>| -> Result<(Engine, Option<String>)> {
            let path = match opts.cpu.portable {
                true => Path::Portable,
                false => Path::best(),
            };
            let f = Arc::new(FastCpu::new(path, opts.cpu.threads)?);
            model.make_resident();
            let m = Arc::new(CpuModel::with_rows(model, rows.clone()));
            let e = Engine::Cpu(Box::new(f.session(&m, ctx_len)));
            let notes: Vec<String> = why.into_iter().chain(fallbacks(model)).collect();
            Ok((e, (!notes.is_empty()).then(|| notes.join("; "))))
        };
        let gpu = |ctx| -> Result<Engine> {
            let d = GpuDecoder::with_rows(ctx, model, rows, opts.decoder.clone())?;
            Ok(Engine::Gpu(Box::new(d)))
        };
        match backend {
            Backend::Reference => Ok((reference(), None)),
            Backend::Cpu => cpu(None),
            Backend::Gpu => {
                // Asked for by name: any adapter will do, software OpenGL included.
                let g = GpuOptions {
                    allow_software_gl: true,
                    ..opts.gpu.clone()
                };
                Ok((gpu(GpuContext::new(&g).await?)?, None))
            }
            Backend::Auto => {
                // Software adapters are passed over before a device opens (hardware_only).
                let g = GpuOptions {
                    hardware_only: true,
                    ..opts.gpu.clone()
                };
                match GpuContext::new(&g).await {
                    Ok(ctx) => Ok((gpu(ctx)?, None)),
                    Err(e) => cpu(Some(format!("{e}; running the fast CPU backend instead"))),
                }
            }
        }
    }

    /// `open`, blocking (native front ends).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(
        model: &Model,
        rows: &MemoryRows,
        backend: Backend,
        opts: &Options,
    ) -> Result<(Engine, Option<String>)> {
        pollster::block_on(Self::open(model, rows, backend, opts))
    }

    /// Whether the engine's GPU device was lost (never for the CPU reference).
    pub fn is_lost(&self) -> bool {
        matches!(self, Engine::Gpu(g) if g.ctx.is_lost())
    }

    /// Destroy the GPU device (fault injection: `GpuContext::lose`); false for the CPU
    /// reference, which has none.
    pub fn lose_device(&self) -> bool {
        match self {
            Engine::Gpu(g) => {
                g.ctx.lose();
                true
            }
            Engine::Cpu(_) => false,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Engine::Gpu(g) => g.ctx.describe(),
            Engine::Cpu(c) => c.describe(),
        }
    }

    /// Compile every kernel's own (fastest) form now, where a quick start deferred some:
    /// benchmarks call it before timing.
    pub fn finish_compiles(&mut self) -> Result<()> {
        match self {
            Engine::Gpu(g) => g.finish_compiles(),
            Engine::Cpu(_) => Ok(()),
        }
    }

    pub fn reset(&mut self) {
        match self {
            Engine::Gpu(g) => g.reset(),
            Engine::Cpu(c) => c.reset(),
        }
    }

    /// The current sequence keeps its first `n` tokens: a request whose prompt starts with
    /// them feeds only the rest (the serving core's prefix cache). `n` 0 is `reset`.
    pub fn truncate(&mut self, n: usize) -> Result<()> {
        match self {
            Engine::Gpu(g) => g.truncate(n),
            Engine::Cpu(c) => c.truncate(n),
        }
    }

    pub fn pos(&self) -> usize {
        match self {
            Engine::Gpu(g) => g.pos(),
            Engine::Cpu(c) => c.pos,
        }
    }

    pub fn feed(&mut self, tokens: &[u32]) -> Result<()> {
        match self {
            Engine::Gpu(g) => g.feed(tokens),
            Engine::Cpu(c) => c.feed(tokens).map(|_| ()),
        }
    }

    /// Logits after the last token fed.
    pub async fn logits_async(&mut self) -> Result<Vec<f32>> {
        match self {
            Engine::Gpu(g) => g.logits_async().await,
            Engine::Cpu(c) => {
                if c.pos == 0 {
                    return Err(Error::Input("no logits yet: feed tokens first".into()));
                }
                Ok(c.logits.clone())
            }
        }
    }

    /// Most tokens one step of several sequences takes (`step_seqs` splits more into steps of
    /// this many; each step reads the weights once). The CPU reference: 1.
    pub fn seq_group(&self) -> usize {
        match self {
            Engine::Gpu(g) => g.seq_group(),
            Engine::Cpu(_) => 1,
        }
    }

    /// Sequences the engine holds at once, each in its own K/V cache slot (the CPU
    /// reference: one).
    pub fn slots(&self) -> usize {
        match self {
            Engine::Gpu(g) => g.slots(),
            Engine::Cpu(_) => 1,
        }
    }

    /// The slot that `feed`, `reset`, `pos` and the readouts work on from now on.
    pub fn use_slot(&mut self, slot: usize) -> Result<()> {
        match self {
            Engine::Gpu(g) => g.use_slot(slot),
            Engine::Cpu(_) if slot == 0 => Ok(()),
            Engine::Cpu(_) => Err(Error::Input(format!(
                "slot {slot} does not exist: the CPU reference holds one sequence"
            ))),
        }
    }

    /// Feed each `(slot, token)` as the next token of that slot's sequence and return each
    /// one's logits: on the GPU the tokens share steps (continuous batching).
    pub async fn step_seqs_async(&mut self, toks: &[(usize, u32)]) -> Result<Vec<Vec<f32>>> {
        if let Engine::Gpu(g) = self {
            return g.step_seqs_async(toks).await;
        }
        // The CPU reference gives every wanted token its logits.
        let all = vec![true; toks.len()];
        Ok(self
            .step_seqs_some_async(toks, &all)
            .await?
            .into_iter()
            .flatten()
            .collect())
    }

    /// `step_seqs_async` with logits only for the tokens `want` marks (None for the others).
    pub async fn step_seqs_some_async(
        &mut self,
        toks: &[(usize, u32)],
        want: &[bool],
    ) -> Result<Vec<Option<Vec<f32>>>> {
        match self {
            Engine::Gpu(g) => g.step_seqs_some_async(toks, want).await,
            Engine::Cpu(c) => {
                if toks.is_empty() || want.len() != toks.len() {
                    return Err(Error::Input(format!(
                        "{} tokens to process with {} flags for which want logits",
                        toks.len(),
                        want.len()
                    )));
                }
                if let Some(&(slot, _)) = toks.iter().find(|&&(s, _)| s != 0) {
                    return Err(Error::Input(format!(
                        "slot {slot} does not exist: the CPU reference holds one sequence"
                    )));
                }
                let mut out = Vec::with_capacity(toks.len());
                for (&(_, t), &w) in toks.iter().zip(want) {
                    c.feed(&[t])?;
                    out.push(w.then(|| c.logits.clone()));
                }
                Ok(out)
            }
        }
    }

    /// Decoder layers of the loaded model.
    pub fn layers(&self) -> usize {
        match self {
            Engine::Gpu(g) => g.config.n_layers,
            Engine::Cpu(c) => c.n_layers(),
        }
    }

    /// Logits per token (the vocabulary the model scores).
    pub fn vocab(&self) -> usize {
        match self {
            Engine::Gpu(g) => g.config.vocab,
            Engine::Cpu(c) => c.m.config.vocab,
        }
    }

    /// Memory blocks of the loaded model (0: plain backbone).
    pub fn memory_k(&self) -> usize {
        match self {
            Engine::Gpu(g) => g.memory_k(),
            Engine::Cpu(c) => c.memory_k(),
        }
    }

    /// Run `tokens` from the current position and return every position's logits [n, vocab]
    /// and router weights [n][layer][K+1] (empty for K = 0).
    pub async fn feed_all_async(&mut self, tokens: &[u32]) -> Result<(Vec<f32>, Vec<f32>)> {
        match self {
            Engine::Gpu(g) => {
                let mut logits = Vec::new();
                let mut router = Vec::new();
                for chunk in tokens.chunks(g.opts.max_batch) {
                    logits.extend(g.feed_all_async(chunk).await?);
                    router.extend(g.router_weights_async().await?);
                }
                Ok((logits, router))
            }
            Engine::Cpu(c) => {
                c.keep_all = true;
                c.all_logits.clear();
                c.router.clear();
                let r = c.feed(tokens).map(|_| ());
                c.keep_all = false;
                r?;
                Ok((
                    std::mem::take(&mut c.all_logits),
                    std::mem::take(&mut c.router),
                ))
            }
        }
    }

    /// Run `tokens` from the current position and return each one's last hidden state after
    /// the output norm [n, dim]: what the LM head reads, and what llama.cpp's embeddings pool.
    pub async fn feed_hidden_async(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        match self {
            Engine::Gpu(g) => g.feed_hidden_async(tokens).await,
            Engine::Cpu(c) => {
                c.hidden = Some(Vec::new());
                let r = c.feed(tokens).map(|_| ());
                let h = c.hidden.take().unwrap_or_default();
                r.map(|()| h)
            }
        }
    }

    /// Switch one layer's memory injection off or on (layer-wise ablation).
    pub fn set_layer_memory(&mut self, layer: usize, on: bool) -> Result<()> {
        match self {
            Engine::Gpu(g) => g.set_layer_memory(layer, on),
            Engine::Cpu(c) => {
                if c.memory_k() == 0 || layer >= c.memory_off.len() {
                    return Err(Error::Input(format!(
                        "layer {layer} has no memory injection"
                    )));
                }
                c.memory_off[layer] = !on;
                Ok(())
            }
        }
    }

    /// Choose the next token; `history` is every token so far (for the repetition penalty).
    pub async fn next_token_async(
        &mut self,
        sampler: &mut Sampler,
        history: &[u32],
    ) -> Result<u32> {
        Ok(self.choose_next(sampler, history, false).await?.0)
    }

    /// `next_token_async` choosing on the host from all the logits, which it also returns
    /// (log-probabilities need them): one readback of every logit instead of the GPU's top-k.
    pub async fn next_token_and_logits_async(
        &mut self,
        sampler: &mut Sampler,
        history: &[u32],
    ) -> Result<(u32, Vec<f32>)> {
        let (t, logits) = self.choose_next(sampler, history, true).await?;
        Ok((t, logits.unwrap_or_default()))
    }

    /// On the GPU, the `k` (at most MAX_TOP_K) most likely next tokens with their logits after
    /// the sampler's repetition penalty, best first: a few bytes read back instead of every
    /// logit. None on the CPU engines, whose logits are in memory already.
    pub async fn top_candidates_async(
        &mut self,
        k: usize,
        sampler: &Sampler,
        history: &[u32],
    ) -> Result<Option<Vec<(u32, f32)>>> {
        let Engine::Gpu(g) = self else {
            return Ok(None);
        };
        let pen = sampler.cfg.repeat_penalty;
        let recent = if pen != 1.0 {
            recent_distinct(history, sampler.cfg.repeat_last_n)
        } else {
            vec![]
        };
        let k = k.clamp(1, crate::decoder::MAX_TOP_K);
        Ok(Some(g.top_k_async(k, pen, &recent).await?))
    }

    /// The next token, and with `keep_logits` the logits (before the penalty) it was chosen
    /// from: the GPU's top-k when it can give the candidates and no logits are wanted, else
    /// every logit read back.
    async fn choose_next(
        &mut self,
        sampler: &mut Sampler,
        history: &[u32],
        keep_logits: bool,
    ) -> Result<(u32, Option<Vec<f32>>)> {
        match (self, sampler.candidates_needed()) {
            (Engine::Gpu(g), Some(k)) if !keep_logits && k <= crate::decoder::MAX_TOP_K => {
                let pen = sampler.cfg.repeat_penalty;
                let recent = if pen != 1.0 {
                    recent_distinct(history, sampler.cfg.repeat_last_n)
                } else {
                    vec![]
                };
                let cands = g.top_k_async(k, pen, &recent).await?;
                if cands.is_empty() {
                    return Err(Error::Gpu("the model produced no finite logit".into()));
                }
                Ok((sampler.pick(&cands), None))
            }
            (e, _) => {
                let l = e.logits_async().await?;
                let t = sampler.choose_from_logits(&l, history)?;
                Ok((t, keep_logits.then_some(l)))
            }
        }
    }
}

/// Blocking forms for native front ends: the async core under pollster.
#[cfg(not(target_arch = "wasm32"))]
impl Engine {
    /// See `logits_async`.
    pub fn logits(&mut self) -> Result<Vec<f32>> {
        pollster::block_on(self.logits_async())
    }

    /// See `step_seqs_async`.
    pub fn step_seqs(&mut self, toks: &[(usize, u32)]) -> Result<Vec<Vec<f32>>> {
        pollster::block_on(self.step_seqs_async(toks))
    }

    /// Build the kernels of every step size `step_seqs` can run, by running each once
    /// (`GpuDecoder::warm_seq_steps`); slot 0 starts over.
    pub fn warm_seq_steps(&mut self) -> Result<()> {
        match self {
            Engine::Gpu(g) => g.warm_seq_steps(),
            Engine::Cpu(_) => Ok(()),
        }
    }

    /// See `feed_all_async`.
    pub fn feed_all(&mut self, tokens: &[u32]) -> Result<(Vec<f32>, Vec<f32>)> {
        pollster::block_on(self.feed_all_async(tokens))
    }

    /// See `next_token_async`.
    pub fn next_token(&mut self, sampler: &mut Sampler, history: &[u32]) -> Result<u32> {
        pollster::block_on(self.next_token_async(sampler, history))
    }
}

//! The per-token / per-prompt schedule on the GPU: which kernels run, in what order, in one
//! submission. Everything is allocated and every pipeline and bind group built at load time
//! (but the top-k kernel of each K and the all-position LM head, built on first use); a step
//! writes 16 bytes of parameters and 4 bytes of token id, submits once and reads back the
//! sampled token (or the K best logits for stochastic sampling).
//!
//! Where things are:
//! - this file: the decoder's state, its buffers and the pipeline cache;
//! - pipelines.rs: the pipeline cache (kernel variants by key, layouts, compiles);
//! - plan.rs: ops (a kernel variant per step kind + bind groups), the encode loop, submission;
//! - weights.rs: the model's weights uploaded to the GPU (GpuWeights), before the schedule;
//! - graph.rs: the per-layer graph of kernels, built once from the model over those weights;
//! - cpu_adapter.rs: what CPU-backed adapters get instead (texture mirrors, uniform rebinding);
//! - tide.rs: TIDE memory: rows streamed in, the gather op, the router, the memory switch;
//! - readout.rs: readback (async), top-k, full and all-position logits, profiling;
//! - slots.rs: the K/V cache slots and each sequence's position;
//! - seqs.rs: steps that take the next token of several sequences;
//! - specs.rs: the kernels as data, shared with the kernel tests;
//! - quick_start.rs: quick-to-compile twins first, the fast forms once a run is long.
mod cpu_adapter;
mod engram;
mod graph;
mod pipelines;
mod plan;
mod quick_start;
mod readout;
mod seqs;
mod slots;
pub mod specs;
mod tide;
mod weights;

use std::collections::HashMap;

use wgpu::util::DeviceExt;

use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::memory::MemoryRows;
use crate::model::{Config, Model};
pub use crate::options::{DecoderOptions, KernelSet, PrefillTile, RouterPlacement};
use pipelines::Pipelines;
pub use plan::MAX_SEQS;
use plan::{Kind, Op, Step, Variant};
pub use readout::MAX_TOP_K;
use readout::{Heads, MAX_PEN};
use slots::Slots;
use specs::Spec;
use tide::GpuMemory;

/// The activations and step buffers every op reads or writes.
#[derive(Clone)]
struct Buffers {
    step: wgpu::Buffer,
    ids: wgpu::Buffer,
    h: wgpu::Buffer,
    q: wgpu::Buffer,
    att: wgpu::Buffer,
    act: wgpu::Buffer,
    scores: wgpu::Buffer,
    logits: wgpu::Buffer,
    pen: wgpu::Buffer,
    sv: wgpu::Buffer,
    si: wgpu::Buffer,
    out: wgpu::Buffer,
    readback: wgpu::Buffer,
}

pub struct GpuDecoder {
    pub ctx: GpuContext,
    pub config: Config,
    pub opts: DecoderOptions,
    /// Every kernel variant of the schedule and its pipeline.
    pipes: Pipelines,
    ops: Vec<Op>,
    buf: Buffers,
    /// What reads results back: the top-k ops, the all-position and several-sequence heads.
    heads: Heads,
    _keep: Vec<wgpu::Buffer>,
    /// The weights the schedule binds (the LM head also serves `all_logits`).
    weights: Option<weights::GpuWeights>,
    pub weight_bytes: usize,
    /// The K/V cache is a pair of textures per layer (CPU adapters, where slots x context fit
    /// the adapter's texture height), else buffers.
    pub kv_in_textures: bool,
    /// Tensors larger than one storage binding, uploaded as this many row chunks.
    pub split_tensors: Vec<(String, usize)>,
    pending: Option<wgpu::CommandEncoder>,
    cur: Step,
    memory: Option<GpuMemory>,
    engram: Option<engram::GpuEngram>,
    /// Per-kernel wall time when profiling (each dispatch submitted and waited for alone).
    pub profile: Option<HashMap<String, (u32, f64)>>,
    /// The K/V cache slots: each sequence's position, the current slot.
    slots: Slots,
    /// Steps run so far: (single tokens, batches).
    pub steps: (usize, usize),
}

fn storage(ctx: &GpuContext, label: &str, bytes: usize, extra: wgpu::BufferUsages) -> wgpu::Buffer {
    ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes.max(16) as u64,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC
            | extra,
        mapped_at_creation: false,
    })
}

fn f32_buffer(ctx: &GpuContext, label: &str, data: &[f32]) -> wgpu::Buffer {
    ctx.device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::cast_slice(data),
            // Norm gammas are also read as uniforms (matvec_rows), and copied out for the
            // host's final norm of embeddings (feed_hidden_async).
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::UNIFORM
                | wgpu::BufferUsages::COPY_SRC,
        })
}

/// A device with the kernels of a model's decoder compiled, made before the weights are there
/// (`warm`), for `GpuDecoder::from_warm`.
pub struct Warm {
    ctx: GpuContext,
    pipes: Pipelines,
}

impl Warm {
    /// Pipelines it compiled.
    pub fn pipelines_compiled(&self) -> usize {
        self.pipes.compiled_count
    }
}

/// Compile on `ctx` the kernels that `model`'s decoder with `opts` runs for one token and for
/// a prompt, without its weights: `model` may come from its files' headers
/// (model::header), since the decoder is laid out on placeholders (`GpuContext::dry`). In
/// the browser this runs while the weights download, so that compiling (seconds per kernel
/// on a software adapter) overlaps it.
pub fn warm(
    mut ctx: GpuContext,
    model: &Model,
    rows: &MemoryRows,
    opts: DecoderOptions,
) -> Result<Warm> {
    ctx.dry = true;
    let mut d = GpuDecoder::with_rows(ctx, model, rows, opts)?;
    d.compile_for(Kind::Token)?;
    d.compile_for(Kind::Batch(2))?;
    d.ctx.take_error()?;
    let GpuDecoder { mut ctx, pipes, .. } = d;
    ctx.dry = false;
    Ok(Warm { ctx, pipes })
}

/// Refuse a context that this adapter's bindings cannot hold: one token's attention scores
/// [heads, ctx], one layer's K (or V) for every slot [slots x ctx, kv_dim] and the logits
/// [vocab] are each bound whole. `max_bind`: the adapter's largest storage binding in bytes.
pub fn check_context(c: &Config, opts: &DecoderOptions, max_bind: usize) -> Result<()> {
    let kv = opts.slots.saturating_mul(c.kv_dim() * 4);
    let per_pos = (c.n_heads * 4).max(kv);
    let need = opts.ctx_len.saturating_mul(per_pos);
    let what = match kv >= c.n_heads * 4 {
        true => "one layer's K/V cache",
        false => "one token's attention scores",
    };
    if need > max_bind {
        let (each, fewer) = match opts.slots {
            1 => (String::new(), ""),
            n => (format!(" x {n} slots"), " or fewer slots"),
        };
        return Err(Error::Gpu(format!(
            "context {}{each} is too long for this adapter's {} MiB storage bindings: {what} \
             would be bound whole at {} MiB; use a shorter context (at most \
             {} here){fewer}",
            opts.ctx_len,
            max_bind >> 20,
            need >> 20,
            max_bind / per_pos.max(1)
        )));
    }
    if c.vocab * 4 > max_bind {
        return Err(Error::Gpu(format!(
            "a vocabulary of {} tokens needs a {} MiB logits binding, more than this adapter's \
             {} MiB storage bindings",
            c.vocab,
            (c.vocab * 4) >> 20,
            max_bind >> 20
        )));
    }
    Ok(())
}

fn res(b: &wgpu::Buffer) -> wgpu::BindingResource<'_> {
    b.as_entire_binding()
}

impl GpuDecoder {
    /// The decoder of `model`, its memories read through row stores over its own tables (no
    /// caches).
    pub fn new(ctx: GpuContext, model: &Model, opts: DecoderOptions) -> Result<GpuDecoder> {
        GpuDecoder::with_rows(ctx, model, &MemoryRows::local(model), opts)
    }

    /// The decoder of `model`, its memories' rows read through `rows` (shared with whoever
    /// made them: the front end sizes their caches and reads their counters).
    pub fn with_rows(
        ctx: GpuContext,
        model: &Model,
        rows: &MemoryRows,
        opts: DecoderOptions,
    ) -> Result<GpuDecoder> {
        Self::assemble(ctx, Pipelines::new(opts.quick_start), model, rows, opts)
    }

    /// `with_rows` on the device and with the kernels `warm` prepared: kernels of the same
    /// model and options are already compiled; any other compiles as usual.
    pub fn from_warm(
        warm: Warm,
        model: &Model,
        rows: &MemoryRows,
        opts: DecoderOptions,
    ) -> Result<GpuDecoder> {
        Self::assemble(warm.ctx, warm.pipes, model, rows, opts)
    }

    fn assemble(
        ctx: GpuContext,
        pipes: Pipelines,
        model: &Model,
        rows: &MemoryRows,
        opts: DecoderOptions,
    ) -> Result<GpuDecoder> {
        let c = model.config.clone();
        if opts.ctx_len == 0 || opts.max_batch == 0 {
            return Err(Error::Input(
                "context length and batch size must be positive".into(),
            ));
        }
        let h_ = c.n_heads;
        // The scores scratch is [batch * H, ctx]; shrink the batch until it fits one binding.
        let max_bind = ctx.limits.max_storage_buffer_binding_size as usize;
        let mut max_batch = opts.max_batch;
        while max_batch > 1 && max_batch * h_ * opts.ctx_len * 4 > max_bind {
            max_batch /= 2;
        }
        // TIDE's decoded rows are [batch, K, d] f32, held for the whole step: with many
        // blocks they would outweigh the rest of the activations, so memory models prefill
        // in smaller batches (K = 24 at d = 576: 64 tokens, 3.5 MB, instead of 7.1 MB).
        if let Some(m) = &model.memory {
            let row_bytes = m.k * c.dim * 4;
            while max_batch > 8 && max_batch.saturating_mul(row_bytes) > opts.memory_rows_budget {
                max_batch /= 2;
            }
        }
        if opts.slots == 0 {
            return Err(Error::Input(
                "the decoder needs at least one sequence slot".into(),
            ));
        }
        check_context(&c, &opts, max_bind)?;
        let kv_rows = opts.ctx_len.saturating_mul(opts.slots);
        let opts = DecoderOptions { max_batch, ..opts };
        // Several sequences' tokens share a step in groups of at most this many: on CPU
        // adapters each matmul binds their x rows as one uniform.
        let widest = c.dim.max(c.q_dim()).max(c.ffn_dim);
        let max_uniform = ctx.limits.max_uniform_buffer_binding_size as usize;
        let seq_group = opts
            .slots
            .min(plan::MAX_SEQS)
            .min(max_batch)
            .min(max_uniform / (widest * 4))
            .max(1);
        // The readback also carries every layer's router weights of a batch.
        let mem_k = model.memory.as_ref().map_or(0, |m| m.k);
        let (d, qd, f) = (c.dim, c.q_dim(), c.ffn_dim);
        let mb = max_batch;
        let u = wgpu::BufferUsages::empty();
        // h, att and act also feed matvec_rows as uniforms.
        let x = wgpu::BufferUsages::UNIFORM;
        let buf = Buffers {
            step: ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("step"),
                size: std::mem::size_of::<Step>() as u64,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            ids: storage(&ctx, "ids", mb * 4, u),
            h: storage(&ctx, "h", mb * d * 4, x),
            q: storage(&ctx, "q", mb * qd * 4, u),
            att: storage(&ctx, "att", mb * qd * 4, x),
            act: storage(&ctx, "act", mb * f * 4, x),
            scores: storage(&ctx, "scores", mb * h_ * opts.ctx_len * 4, u),
            logits: storage(&ctx, "logits", c.vocab * 4, u),
            pen: storage(&ctx, "pen", MAX_PEN * 4, u),
            sv: storage(&ctx, "topk-v", 256 * MAX_TOP_K * 4, u),
            si: storage(&ctx, "topk-i", 256 * MAX_TOP_K * 4, u),
            out: storage(&ctx, "topk-out", MAX_TOP_K * 8, u),
            readback: ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback"),
                size: (c.vocab * 4)
                    .max(MAX_TOP_K * 8)
                    .max(c.n_layers * mb * (mem_k + 1) * 4) as u64,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
        };
        let mut dec = GpuDecoder {
            ctx,
            config: c.clone(),
            opts: opts.clone(),
            pipes,
            ops: Vec::new(),
            buf,
            heads: Heads::default(),
            _keep: Vec::new(),
            weights: None,
            weight_bytes: 0,
            kv_in_textures: false,
            split_tensors: Vec::new(),
            pending: None,
            cur: Step::default(),
            memory: None,
            engram: None,
            profile: None,
            slots: Slots::new(opts.slots, seq_group),
            steps: (0, 0),
        };
        let kv_bytes = c.n_layers * 2 * kv_rows * c.kv_dim() * 4;
        match dec.build(model, rows) {
            Ok(()) => Ok(dec),
            Err(e) if e.to_string().to_lowercase().contains("out of memory") => {
                Err(Error::Gpu(format!(
                    "out of GPU memory: the model's weights and a K/V cache of {} slot(s) x {} \
                     positions ({:.0} MB) do not fit this adapter ({e}); use a shorter --ctx, \
                     fewer --parallel slots or a smaller model",
                    opts.slots,
                    opts.ctx_len,
                    kv_bytes as f64 / 1e6
                )))
            }
            Err(e) => Err(e),
        }
    }

    /// Position of the current slot's sequence (tokens fed so far).
    pub fn pos(&self) -> usize {
        self.slots.pos()
    }

    /// Build the schedule for `model` and compile its kernels.
    fn build(&mut self, model: &Model, rows: &MemoryRows) -> Result<()> {
        self.build_schedule(model, rows)?;
        if self.slots.group >= 2 {
            // Now, so that its kernels compile with the rest rather than at the first step
            // that several sequences share.
            self.build_seq_head()?;
        }
        // In the browser a pipeline is compiled when it is created (SwiftShader: seconds
        // each), so only the one-token kernels are built now; a batch's are built before the
        // first batch (`compile_for`). Natively all are built at once on every core.
        #[cfg(target_arch = "wasm32")]
        self.compile_for(Kind::Token)?;
        #[cfg(not(target_arch = "wasm32"))]
        self.pipes.compile_pending(&self.ctx)?;
        // Allocation failures raised outside an error scope surface here.
        self.ctx.take_error()
    }

    /// Compile the kernels that a step of this kind dispatches and that have no pipeline yet.
    fn compile_for(&mut self, kind: Kind) -> Result<()> {
        if self.pipes.has_deferred() && self.steps.0 >= quick_start::UPGRADE_AFTER_STEPS {
            self.pipes.compile_deferred(&self.ctx)?;
        }
        let mut todo: Vec<usize> = self
            .ops
            .iter()
            .filter(|o| o.runs(kind))
            .map(|o| o.variant(kind).kernel)
            .filter(|&k| !self.pipes.compiled(k))
            .collect();
        todo.sort_unstable();
        todo.dedup();
        if todo.is_empty() {
            return Ok(());
        }
        self.pipes.compile(&self.ctx, todo)
    }

    /// Pipelines compiled on this decoder's device so far, those of the `warm` it came from
    /// included.
    pub fn pipelines_compiled(&self) -> usize {
        self.pipes.compiled_count
    }

    /// Compile every kernel's own form now (benchmarks call this before timing a decode).
    pub fn finish_compiles(&mut self) -> Result<()> {
        self.pipes.compile_deferred(&self.ctx)
    }

    /// Kernel `k`'s pipeline (a step's kernels are compiled before it is encoded).
    fn pipeline(&self, k: usize) -> &wgpu::ComputePipeline {
        self.pipes.pipeline(k)
    }

    fn variant(&mut self, spec: &Spec) -> Result<Variant> {
        Ok(self.pipes.variant(&self.ctx, spec))
    }

    /// Every kernel variant this decoder built, as the WGSL that runs: (file name made from
    /// its key, label, source). For `tide kernels --dump`.
    pub fn kernel_sources(&self) -> Result<Vec<(String, String, String)>> {
        self.pipes.sources(&self.ctx)
    }
}

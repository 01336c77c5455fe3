use std::collections::HashMap;

use wgpu::util::DeviceExt;

use super::specs::{self, Epilogue, Matmul, Spec};
use crate::error::{Error, Result};
use crate::gpu::{repack, Binding, Defines, GpuContext, GpuTensor, Kernel, Storage};
use crate::memory::{gather_raw_rows, TideMemory};
use crate::model::{Config, Model, RopeLayout, Weight};

/// Most candidates the GPU top-k returns.
pub const MAX_TOP_K: usize = 64;
const MAX_PEN: usize = 256;

#[derive(Debug, Clone)]
pub struct DecoderOptions {
    /// KV-cache length (positions).
    pub ctx_len: usize,
    /// Most tokens per prefill batch.
    pub max_batch: usize,
    /// Which kernel family runs (TIDE_WORKGROUPS=big|many overrides it).
    pub kernels: KernelSet,
}

/// The two kernel families: GPUs want many small workgroups; CPU-backed adapters (lavapipe,
/// SwiftShader) pay per workgroup, per barrier and per storage load, and get kernels where
/// lanes own whole rows and read through textures and uniforms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KernelSet {
    /// By the adapter's type.
    #[default]
    Auto,
    Gpu,
    CpuAdapter,
}

impl Default for DecoderOptions {
    fn default() -> Self {
        DecoderOptions {
            ctx_len: 2048,
            max_batch: 128,
            kernels: KernelSet::Auto,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
struct Step {
    pos0: u32,
    n_tok: u32,
    n_pen: u32,
    penalty: f32,
}

/// A kernel variant ready to dispatch: pipeline index and workgroup counts.
#[derive(Clone, Copy)]
struct Variant {
    kernel: usize,
    x: u32,
    tokens_per_y: u32,
}

impl Variant {
    fn y(&self, n_tok: u32) -> u32 {
        specs::y_groups(self.tokens_per_y, n_tok)
    }
}

/// One dispatch of the schedule: its variants for one token (decode) and for a batch.
struct Op {
    decode: Variant,
    prefill: Variant,
    bind: wgpu::BindGroup,
    /// The batch variant's own bind group, where its binding layout differs from decode's.
    bind_prefill: Option<wgpu::BindGroup>,
    /// Left out of the step (a router whose layer's memory is switched off).
    skip: bool,
    /// Left out of single-token steps (a router fused into the decode matvecs).
    batch_only: bool,
    /// Buffer rows copied into textures before this op (CPU adapters: see RowCopy).
    copies: Vec<RowCopy>,
}

/// Rows of a buffer mirrored into an rgba32uint texture (row r of the texture = row r of the
/// buffer) right before the op that reads them: the K/V cache rows a batch appended, or a
/// batch's activations. CPU adapters fetch texels as one gather, where storage loads walk the
/// lanes; the buffers stay the source of truth.
struct RowCopy {
    buf: wgpu::Buffer,
    tex: wgpu::Texture,
    row_bytes: u32,
    /// Rows pos0.. (the cache) rather than 0.. (the batch).
    at_pos: bool,
    /// Which steps need the copy: batches only (one token goes through uniforms), single
    /// tokens only, or every step.
    when: CopyWhen,
    /// A fixed row count (the K memory rows of one token) instead of the batch's n.
    fixed_rows: Option<u32>,
}

#[derive(Clone, Copy, PartialEq)]
enum CopyWhen {
    Always,
    Batch,
    Token,
}

impl RowCopy {
    fn wanted(&self, n: u32) -> bool {
        match self.when {
            CopyWhen::Always => true,
            CopyWhen::Batch => n > 1,
            CopyWhen::Token => n == 1,
        }
    }

    fn encode(&self, enc: &mut wgpu::CommandEncoder, pos0: u32, n: u32) {
        if !self.wanted(n) {
            return;
        }
        let n = self.fixed_rows.unwrap_or(n);
        let row = self.row_bytes;
        let first = if self.at_pos { pos0 } else { 0 };
        // Rows go in one copy where the row pitch meets the copy alignment, else one by one.
        let (per, count) = if n == 1 || row % wgpu::COPY_BYTES_PER_ROW_ALIGNMENT == 0 {
            (n, 1)
        } else {
            (1, n)
        };
        for i in 0..count {
            let p = first + i * per;
            enc.copy_buffer_to_texture(
                wgpu::TexelCopyBufferInfo {
                    buffer: &self.buf,
                    layout: wgpu::TexelCopyBufferLayout {
                        offset: p as u64 * row as u64,
                        bytes_per_row: (per > 1).then_some(row),
                        rows_per_image: None,
                    },
                },
                wgpu::TexelCopyTextureInfo {
                    texture: &self.tex,
                    mip_level: 0,
                    origin: wgpu::Origin3d { x: 0, y: p, z: 0 },
                    aspect: wgpu::TextureAspect::All,
                },
                wgpu::Extent3d {
                    width: row / 16,
                    height: per,
                    depth_or_array_layers: 1,
                },
            );
        }
    }
}

impl Op {
    /// Whether a step of n_tok tokens dispatches this op.
    fn runs(&self, n_tok: u32) -> bool {
        !(self.skip || (self.batch_only && n_tok == 1))
    }

    fn variant(&self, n_tok: u32) -> Variant {
        if n_tok > 1 {
            self.prefill
        } else {
            self.decode
        }
    }

    fn bind_group(&self, n_tok: u32) -> &wgpu::BindGroup {
        match &self.bind_prefill {
            Some(b) if n_tok > 1 => b,
            _ => &self.bind,
        }
    }
}

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

/// TIDE memory on the GPU side: the tables stay with the host (memory-mapped file); each step
/// streams the K stored rows of its tokens into `raw`, one gather op turns them into `rows`
/// ([n_tok, K, d], read by every layer), and each layer's router weights land in its own
/// `alpha` buffer (a named hook: `router_weights` reads it), written by the router op, or in a
/// fused single-token step (CPU adapters) by the down projection that takes their softmax.
struct GpuMemory {
    host: TideMemory,
    raw: wgpu::Buffer,
    rows: wgpu::Buffer,
    /// `rows` of one token as a texture (CPU adapters), copied in before the first layer
    /// that reads it (`rows_tex_copied` once that op exists).
    rows_tex: Option<wgpu::Texture>,
    rows_tex_copied: bool,
    alpha: Vec<Option<wgpu::Buffer>>,
    /// Per layer: index of its router op in the schedule.
    router_op: Vec<Option<usize>>,
    /// CPU adapters: single tokens take the router inside the gate/up matvec and its softmax
    /// in the down projection's memory epilogue (Spec::with_router, memory_in_texture).
    fused: bool,
    /// Per layer, when fused: the router logits (+ the layer's memory switch).
    logits: Vec<Option<wgpu::Buffer>>,
    staging: Vec<u8>,
    words: Vec<u32>,
}

/// A layer's memory injection as the down projection binds it.
struct Routed {
    k: usize,
    rows: wgpu::Buffer,
    alpha: wgpu::Buffer,
    /// Fused (GpuMemory::fused): W_r's texture view and the logits buffer.
    fused: Option<(wgpu::TextureView, wgpu::Buffer)>,
}

/// LM head over every token of a batch (perplexity): ops and their output.
struct AllLogits {
    ops: Vec<Op>,
    logits: wgpu::Buffer,
    readback: wgpu::Buffer,
}

pub struct GpuDecoder {
    pub ctx: GpuContext,
    pub config: Config,
    pub opts: DecoderOptions,
    kernels: Vec<Kernel>,
    kernel_index: HashMap<(String, String, Defines), usize>,
    layouts: HashMap<Vec<(u32, u8)>, wgpu::BindGroupLayout>,
    ops: Vec<Op>,
    buf: Buffers,
    /// top-k kernels by K, with their bind groups (penalty op is shared).
    topk: HashMap<usize, (usize, wgpu::BindGroup)>,
    penalize: Option<(usize, wgpu::BindGroup)>,
    _keep: Vec<wgpu::Buffer>,
    _weights: Vec<GpuTensor>,
    pub weight_bytes: usize,
    /// Tensors larger than one storage binding, uploaded as this many row chunks.
    pub split_tensors: Vec<(String, usize)>,
    pending: Option<wgpu::CommandEncoder>,
    cur: Step,
    memory: Option<GpuMemory>,
    all_logits: Option<AllLogits>,
    /// The final norm and LM head, kept for building `all_logits` on demand.
    head: Option<(usize, wgpu::Buffer)>,
    /// Per-kernel wall time when profiling (each dispatch submitted and waited for alone).
    pub profile: Option<HashMap<String, (u32, f64)>>,
    pub pos: usize,
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
            // Norm gammas are also read as uniforms (matvec_rows).
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::UNIFORM,
        })
}

/// Upload row-concatenated parts; if their types differ, as f32.
fn upload_fused(ctx: &GpuContext, name: &str, parts: &[&Weight]) -> Result<GpuTensor> {
    if parts.iter().all(|p| p.dtype() == parts[0].dtype()) {
        return GpuTensor::upload(ctx, name, parts);
    }
    let owned: Vec<Weight> = parts.iter().map(|p| p.to_f32_weight()).collect();
    let refs: Vec<&Weight> = owned.iter().collect();
    GpuTensor::upload(ctx, name, &refs)
}

fn single(t: &GpuTensor) -> Result<wgpu::BindingResource<'_>> {
    if t.chunks.len() != 1 {
        return Err(Error::Gpu(format!(
            "{}: {} bytes exceed one storage binding on this adapter; only the embedding and LM head may be split",
            t.name,
            t.bytes()
        )));
    }
    Ok(t.chunks[0].storage.resource())
}

impl GpuDecoder {
    pub fn new(ctx: GpuContext, model: &Model, opts: DecoderOptions) -> Result<GpuDecoder> {
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
        if h_ * opts.ctx_len * 4 > max_bind || opts.ctx_len * c.kv_dim() * 4 > max_bind {
            return Err(Error::Gpu(format!(
                "context {} is too long for this adapter's {} MiB storage bindings; use a shorter --ctx",
                opts.ctx_len,
                max_bind >> 20
            )));
        }
        let opts = DecoderOptions { max_batch, ..opts };
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
                size: 16,
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
            kernels: Vec::new(),
            kernel_index: HashMap::new(),
            layouts: HashMap::new(),
            ops: Vec::new(),
            buf,
            topk: HashMap::new(),
            penalize: None,
            _keep: Vec::new(),
            _weights: Vec::new(),
            weight_bytes: 0,
            split_tensors: Vec::new(),
            pending: None,
            cur: Step::default(),
            memory: None,
            all_logits: None,
            head: None,
            profile: None,
            pos: 0,
        };
        dec.build_schedule(model)?;
        Ok(dec)
    }
}

fn binding_code(b: Binding) -> u8 {
    match b {
        Binding::Uniform => 0,
        Binding::Read => 1,
        Binding::ReadWrite => 2,
        Binding::Texture => 3,
    }
}

impl GpuDecoder {
    /// Compile (or reuse) a kernel variant; returns its index.
    fn kernel(
        &mut self,
        name: &str,
        entry: &str,
        defs: Defines,
        bindings: &[(u32, Binding)],
    ) -> Result<usize> {
        let key = (name.to_string(), entry.to_string(), defs.clone());
        if let Some(&i) = self.kernel_index.get(&key) {
            return Ok(i);
        }
        let lkey: Vec<(u32, u8)> = bindings
            .iter()
            .map(|&(b, k)| (b, binding_code(k)))
            .collect();
        let layout = self
            .layouts
            .entry(lkey)
            .or_insert_with(|| Kernel::layout_for(&self.ctx.device, bindings))
            .clone();
        let k = Kernel::build(&self.ctx.device, name, entry, &defs, &layout, bindings)?;
        self.kernels.push(k);
        self.kernel_index.insert(key, self.kernels.len() - 1);
        Ok(self.kernels.len() - 1)
    }

    fn variant(&mut self, spec: &Spec) -> Result<Variant> {
        let kernel = self.kernel(spec.shader, spec.entry, spec.defs.clone(), &spec.bindings)?;
        Ok(Variant {
            kernel,
            x: spec.x,
            tokens_per_y: spec.tokens_per_y,
        })
    }

    /// Add an op whose decode and prefill variants share one binding layout.
    fn push_op(
        &mut self,
        decode: &Spec,
        prefill: &Spec,
        buffers: &[wgpu::BindingResource<'_>],
    ) -> Result<()> {
        let decode = self.variant(decode)?;
        let prefill = self.variant(prefill)?;
        let bind = self.kernels[decode.kernel].bind(&self.ctx.device, buffers);
        self.ops.push(Op {
            decode,
            prefill,
            bind,
            bind_prefill: None,
            skip: false,
            batch_only: false,
            copies: Vec::new(),
        });
        Ok(())
    }

    /// A matmul op. `x_tex`: a texture of max_batch rows that can mirror the x buffer
    /// (binding 2) for batches on CPU adapters. `fused`: the layer's TIDE router rides in this
    /// op's decode kernel (gate/up: `buffers` end with W_r's texture and the logits buffer;
    /// down: with the logits buffer), see GpuMemory::fused.
    fn push_matmul(
        &mut self,
        m: Matmul,
        buffers: &[wgpu::BindingResource<'_>],
        x_tex: Option<&wgpu::Texture>,
        fused: bool,
    ) -> Result<()> {
        let big = self.few_big_workgroups();
        // Both CPU-adapter variants bind a row of x (decode) or gamma (batches) as a uniform.
        let x_bytes = (m.cols * 4) as u64;
        let cpu_kernels = big && x_bytes <= self.ctx.limits.max_uniform_buffer_binding_size;
        if fused && !cpu_kernels {
            return Err(Error::Gpu(format!(
                "internal: the fused TIDE router needs the CPU-adapter kernels ({:?})",
                m.epi
            )));
        }
        let x_tex = x_tex.filter(|_| cpu_kernels && m.epi != Epilogue::Store);
        let prefill = self.weight_reader(if m.epi == Epilogue::Store {
            m.decode_tuned(big)
        } else if x_tex.is_some() {
            m.prefill().x_in_texture()
        } else {
            m.prefill()
        });
        if !cpu_kernels {
            let decode = self.weight_reader(m.decode_tuned(big));
            return self.push_op(&decode, &prefill, buffers);
        }
        // CPU adapters: one token through matvec_rows, x and gamma bound as uniforms of one
        // row (the token of a decode step is row 0); batches keep the storage bindings.
        // TIDE, fused: gate/up also computes the router logits; down takes their softmax and
        // reads the token's memory rows from a texture (which `fused` guarantees).
        let mut rows_spec = m.decode_rows();
        let mut mem_tex = None;
        if fused {
            match (m.epi, &self.memory) {
                (Epilogue::SwiGlu { .. }, Some(mem)) => {
                    rows_spec = rows_spec.with_router(mem.host.k)
                }
                (Epilogue::ResidualMemory { .. }, Some(mem)) if mem.rows_tex.is_some() => {
                    rows_spec = rows_spec.memory_in_texture();
                    mem_tex = mem.rows_tex.clone().map(|t| (t, mem.rows.clone()));
                }
                _ => {
                    return Err(Error::Gpu(format!(
                        "internal: nothing to fuse the TIDE router into ({:?})",
                        m.epi
                    )))
                }
            }
        }
        let decode = self.variant(&self.weight_reader(rows_spec))?;
        let prefill = self.variant(&prefill)?;
        let mut sized: Vec<wgpu::BindingResource<'_>> = buffers
            .iter()
            .enumerate()
            .map(|(i, r)| match r {
                wgpu::BindingResource::Buffer(b) if i == 2 || (i == 3 && m.norm.is_some()) => {
                    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: b.buffer,
                        offset: 0,
                        size: wgpu::BufferSize::new(x_bytes),
                    })
                }
                r => r.clone(),
            })
            .collect();
        // Batches bind x and gamma as sized here but memory and alpha as storage.
        let sized_batch = sized.clone();
        let mut copies = Vec::new();
        let mem_view = mem_tex
            .as_ref()
            .map(|(t, _)| t.create_view(&Default::default()));
        if let (Some((tex, rows)), Some(view)) = (&mem_tex, &mem_view) {
            // `buffers` is in binding order: the memory rows (binding 5) become the texture.
            let slot = m.bindings().iter().position(|x| x.0 == 5).unwrap();
            sized[slot] = wgpu::BindingResource::TextureView(view);
            let mem = self.memory.as_mut().unwrap();
            if !mem.rows_tex_copied {
                mem.rows_tex_copied = true;
                copies.push(RowCopy {
                    buf: rows.clone(),
                    tex: tex.clone(),
                    row_bytes: (m.rows * 4) as u32,
                    at_pos: false,
                    when: CopyWhen::Token,
                    fixed_rows: Some(mem.host.k as u32),
                });
            }
        }
        let bind = self.kernels[decode.kernel].bind(&self.ctx.device, &sized);
        let bind_prefill = match (x_tex, &buffers[2]) {
            (Some(tex), wgpu::BindingResource::Buffer(x)) => {
                // Batches: x rows from the texture (copied in first), gamma as a uniform.
                let view = tex.create_view(&Default::default());
                let mut b = sized_batch;
                b[2] = wgpu::BindingResource::TextureView(&view);
                copies.push(RowCopy {
                    buf: x.buffer.clone(),
                    tex: tex.clone(),
                    row_bytes: x_bytes as u32,
                    at_pos: false,
                    when: CopyWhen::Batch,
                    fixed_rows: None,
                });
                self.kernels[prefill.kernel].bind(&self.ctx.device, &b)
            }
            _ => self.kernels[prefill.kernel].bind(&self.ctx.device, buffers),
        };
        self.ops.push(Op {
            decode,
            prefill,
            bind,
            bind_prefill: Some(bind_prefill),
            skip: false,
            batch_only: false,
            copies,
        });
        Ok(())
    }

    /// Attention over one layer's K/V cache. On CPU adapters decode reads the cache through
    /// texture mirrors (see RowCopy) where the adapter's texture size allows.
    fn push_attention(&mut self, kc: &wgpu::Buffer, vc: &wgpu::Buffer) -> Result<()> {
        let c = &self.config;
        let (hd, nh, nkv, ctx_len) = (c.head_dim, c.n_heads, c.n_kv_heads, self.opts.ctx_len);
        let kvd = c.kv_dim();
        let buf = self.buf.clone();
        let at = specs::attention(hd, nh, nkv, ctx_len);
        let atp = specs::attention_prefill(hd, nh, nkv, ctx_len);
        let buffers = [
            res(&buf.step),
            res(&buf.q),
            res(kc),
            res(vc),
            res(&buf.scores),
            res(&buf.att),
        ];
        let (Some(kt), Some(vt)) = (
            self.row_texture("k-cache-tex", kvd, ctx_len),
            self.row_texture("v-cache-tex", kvd, ctx_len),
        ) else {
            return self.push_op(&at, &atp, &buffers);
        };
        let (kv_view, vv_view) = (
            kt.create_view(&Default::default()),
            vt.create_view(&Default::default()),
        );
        let decode = self.variant(&specs::attention_heads(hd, nh, nkv, ctx_len))?;
        let prefill =
            self.variant(&specs::kv_in_textures(atp).with_subgroups(self.ctx.subgroup_size))?;
        let mut tex_buffers = buffers.clone();
        tex_buffers[2] = wgpu::BindingResource::TextureView(&kv_view);
        tex_buffers[3] = wgpu::BindingResource::TextureView(&vv_view);
        let bind = self.kernels[decode.kernel].bind(&self.ctx.device, &tex_buffers);
        self.ops.push(Op {
            decode,
            prefill,
            bind,
            bind_prefill: None,
            skip: false,
            batch_only: false,
            copies: [(kc, kt), (vc, vt)]
                .into_iter()
                .map(|(b, t)| RowCopy {
                    buf: b.clone(),
                    tex: t,
                    row_bytes: (kvd * 4) as u32,
                    at_pos: true,
                    when: CopyWhen::Always,
                    fixed_rows: None,
                })
                .collect(),
        });
        Ok(())
    }

    /// A kernel that reads weight tensors, as this context stores them: every GpuTensor is
    /// uploaded to textures when `ctx.weight_textures` says so, to buffers otherwise.
    fn weight_reader(&self, s: Spec) -> Spec {
        s.weights_in_texture_if(self.ctx.weight_textures)
            .with_subgroups(self.ctx.subgroup_size)
    }

    /// A row-mirror texture (see RowCopy), on CPU adapters where it fits.
    fn row_texture(&self, label: &str, cols: usize, rows: usize) -> Option<wgpu::Texture> {
        if self.few_big_workgroups() {
            crate::gpu::row_texture(&self.ctx, label, cols, rows)
        } else {
            None
        }
    }

    /// CPU-backed adapters (lavapipe, SwiftShader) pay per workgroup; GPUs want many.
    /// TIDE_WORKGROUPS=big|many overrides.
    fn few_big_workgroups(&self) -> bool {
        match (
            std::env::var("TIDE_WORKGROUPS").as_deref(),
            self.opts.kernels,
        ) {
            (Ok("big"), _) => true,
            (Ok("many"), _) => false,
            (_, KernelSet::CpuAdapter) => true,
            (_, KernelSet::Gpu) => false,
            (_, KernelSet::Auto) => self.ctx.info.device_type == wgpu::DeviceType::Cpu,
        }
    }

    fn build_schedule(&mut self, model: &Model) -> Result<()> {
        let c = self.config.clone();
        let buf = self.buf.clone();
        let ctx_len = self.opts.ctx_len;
        let (qd, kvd, f) = (c.q_dim(), c.kv_dim(), c.ffn_dim);
        let rope = f32_buffer(&self.ctx, "rope", &c.rope_table(ctx_len));
        let embd = GpuTensor::upload(&self.ctx, "token_embd", &[&model.token_embd])?;
        // Embedding lookup, one op per chunk of the table.
        for ch in &embd.chunks {
            let s = self.weight_reader(specs::embed(embd.dtype, c.dim, ch.row0, ch.rows));
            self.push_op(
                &s,
                &s,
                &[
                    res(&buf.step),
                    ch.storage.resource(),
                    res(&buf.ids),
                    res(&buf.h),
                ],
            )?;
        }
        if let Some(m) = &model.memory {
            self.setup_memory(m)?;
        }
        let mut weight_bytes = embd.bytes();
        let mut keep = vec![rope.clone()];
        let mut weights = Vec::new();
        let eps = Some(c.eps);
        // Texture mirrors of the batch activations that feed matmuls (CPU adapters).
        let mb = self.opts.max_batch;
        let (h_tex, att_tex, act_tex) = (
            self.row_texture("h-tex", c.dim, mb),
            self.row_texture("att-tex", qd, mb),
            self.row_texture("act-tex", f, mb),
        );
        for (li, l) in model.layers.iter().enumerate() {
            let attn_norm = f32_buffer(&self.ctx, "attn_norm", &l.attn_norm.to_f32());
            let ffn_norm = f32_buffer(&self.ctx, "ffn_norm", &l.ffn_norm.to_f32());
            let kc = storage(
                &self.ctx,
                "k-cache",
                ctx_len * kvd * 4,
                wgpu::BufferUsages::empty(),
            );
            let vc = storage(
                &self.ctx,
                "v-cache",
                ctx_len * kvd * 4,
                wgpu::BufferUsages::empty(),
            );
            let qkv = upload_fused(&self.ctx, &format!("blk.{li}.qkv"), &[&l.wq, &l.wk, &l.wv])?;
            let wo = GpuTensor::upload(&self.ctx, &format!("blk.{li}.attn_output"), &[&l.wo])?;
            let gu = upload_fused(
                &self.ctx,
                &format!("blk.{li}.ffn_gate_up"),
                &[&l.w_gate, &l.w_up],
            )?;
            let down = GpuTensor::upload(&self.ctx, &format!("blk.{li}.ffn_down"), &[&l.w_down])?;
            let mm = |w: &GpuTensor, epi, norm| Matmul {
                epi,
                norm,
                dtype: w.dtype,
                cols: w.cols,
                rows: w.rows,
                row0: 0,
            };
            let qkv_epi = Epilogue::Qkv {
                qd,
                kvd,
                head_dim: c.head_dim,
                rope_half: c.rope_layout == RopeLayout::RotateHalf,
            };
            self.push_matmul(
                mm(&qkv, qkv_epi, eps),
                &[
                    res(&buf.step),
                    single(&qkv)?,
                    res(&buf.h),
                    res(&attn_norm),
                    res(&buf.q),
                    res(&kc),
                    res(&vc),
                    res(&rope),
                ],
                h_tex.as_ref(),
                false,
            )?;
            self.push_attention(&kc, &vc)?;
            self.push_matmul(
                mm(&wo, Epilogue::Residual, None),
                &[res(&buf.step), single(&wo)?, res(&buf.att), res(&buf.h)],
                att_tex.as_ref(),
                false,
            )?;
            // The router reads h~ like gate/up: it can run first, or ride inside gate/up.
            let routed = self.push_router(li, &ffn_norm)?;
            let fused = routed.as_ref().and_then(|r| r.fused.as_ref());
            let mut gu_buffers = vec![
                res(&buf.step),
                single(&gu)?,
                res(&buf.h),
                res(&ffn_norm),
                res(&buf.act),
            ];
            if let Some((wr, logits)) = fused {
                gu_buffers.extend([wgpu::BindingResource::TextureView(wr), res(logits)]);
            }
            self.push_matmul(
                mm(&gu, Epilogue::SwiGlu { ffn: f }, eps),
                &gu_buffers,
                h_tex.as_ref(),
                fused.is_some(),
            )?;
            match &routed {
                Some(r) => {
                    let mut b = vec![
                        res(&buf.step),
                        single(&down)?,
                        res(&buf.act),
                        res(&buf.h),
                        res(&r.rows),
                        res(&r.alpha),
                    ];
                    if let Some((_, logits)) = fused {
                        b.push(res(logits));
                    }
                    self.push_matmul(
                        mm(&down, Epilogue::ResidualMemory { k: r.k }, None),
                        &b,
                        act_tex.as_ref(),
                        fused.is_some(),
                    )?;
                }
                None => self.push_matmul(
                    mm(&down, Epilogue::Residual, None),
                    &[res(&buf.step), single(&down)?, res(&buf.act), res(&buf.h)],
                    act_tex.as_ref(),
                    false,
                )?,
            }
            weight_bytes += qkv.bytes() + wo.bytes() + gu.bytes() + down.bytes();
            keep.extend([attn_norm, ffn_norm, kc, vc]);
            weights.extend([qkv, wo, gu, down]);
        }
        // Final norm + LM head on the last token of the batch, one op per chunk.
        let out_norm = f32_buffer(&self.ctx, "output_norm", &model.output_norm.to_f32());
        let head_t = match &model.lm_head {
            Some(w) => Some(GpuTensor::upload(&self.ctx, "output", &[w])?),
            None => None,
        };
        let head = head_t.as_ref().unwrap_or(&embd);
        if let Some(h) = &head_t {
            weight_bytes += h.bytes();
        }
        for ch in &head.chunks {
            let m = Matmul {
                epi: Epilogue::Store,
                norm: eps,
                dtype: head.dtype,
                cols: head.cols,
                rows: ch.rows,
                row0: ch.row0,
            };
            self.push_matmul(
                m,
                &[
                    res(&buf.step),
                    ch.storage.resource(),
                    res(&buf.h),
                    res(&out_norm),
                    res(&buf.logits),
                ],
                None,
                false,
            )?;
        }
        let ps = specs::penalize(c.vocab, MAX_PEN);
        let pk = self.variant(&ps)?;
        let pbind = self.kernels[pk.kernel].bind(
            &self.ctx.device,
            &[res(&buf.step), res(&buf.logits), res(&buf.pen)],
        );
        self.penalize = Some((pk.kernel, pbind));
        let head_index = weights.len();
        let has_head = head_t.is_some();
        weights.extend(head_t);
        weights.push(embd);
        self.head = Some((
            if has_head {
                head_index
            } else {
                weights.len() - 1
            },
            out_norm.clone(),
        ));
        keep.push(out_norm);
        self.split_tensors = weights
            .iter()
            .filter(|w| w.chunks.len() > 1)
            .map(|w| (w.name.clone(), w.chunks.len()))
            .collect();
        self.weight_bytes = weight_bytes;
        self._keep = keep;
        self._weights = weights;
        Ok(())
    }
}

impl GpuDecoder {
    /// Buffers and the gather op of TIDE memory (the op runs right after the embedding).
    fn setup_memory(&mut self, m: &TideMemory) -> Result<()> {
        let c = self.config.clone();
        let (d, k, mb) = (c.dim, m.k, self.opts.max_batch);
        let dtype = m.tables[0].dtype();
        let row_words = d / 32 * crate::gpu::gpu_words(dtype).0;
        let u = wgpu::BufferUsages::empty();
        let raw = storage(&self.ctx, "memory-raw-rows", mb * k * row_words * 4, u);
        let rows = storage(&self.ctx, "memory-rows", mb * k * d * 4, u);
        let gammas: Vec<f32> = m.gammas.iter().flatten().copied().collect();
        let gamma = f32_buffer(&self.ctx, "memory-gamma", &gammas);
        let alpha = m
            .routers
            .iter()
            .map(|r| {
                r.as_ref().map(|_| {
                    storage(
                        &self.ctx,
                        "router-alpha",
                        mb * (k + 1) * 4,
                        wgpu::BufferUsages::empty(),
                    )
                })
            })
            .collect();
        let s = if self.few_big_workgroups() {
            specs::memory_rows_by_lane(dtype, d, k, m.eps, m.normalized)
        } else {
            specs::memory_rows(dtype, d, k, m.eps, m.normalized)
        };
        let step = self.buf.step.clone();
        self.push_op(&s, &s, &[res(&step), res(&raw), res(&gamma), res(&rows)])?;
        self._keep.push(gamma);
        // The fused router (CPU adapters) needs the CPU-adapter matvecs of gate/up and down (x
        // a uniform), the logits as a uniform, W_r as a texture and the token's rows in a
        // texture for the decode epilogue.
        let ubo = self.ctx.limits.max_uniform_buffer_binding_size as usize;
        let max_tex = self.ctx.limits.max_texture_dimension_2d as usize;
        let fusable = d % 4 == 0
            && 4 * d.max(c.ffn_dim).max(k + 2) <= ubo
            && k < max_tex
            && std::env::var("TIDE_ROUTER").as_deref() != Ok("separate");
        let rows_tex = if fusable {
            self.row_texture("memory-rows-tex", d, k)
        } else {
            None
        };
        let fused = rows_tex.is_some();
        let n_layers = c.n_layers;
        self.memory = Some(GpuMemory {
            host: m.clone(),
            raw,
            rows,
            rows_tex,
            rows_tex_copied: false,
            alpha,
            router_op: vec![None; n_layers],
            fused,
            logits: vec![None; n_layers],
            staging: Vec::new(),
            words: Vec::new(),
        });
        Ok(())
    }

    /// Layer `li`'s router op, when the layer has memory. Where the router is fused (CPU
    /// adapters), the op runs for batches only and single tokens get W_r's texture and the
    /// logits buffer for the gate/up and down matvecs.
    fn push_router(&mut self, li: usize, ffn_norm: &wgpu::Buffer) -> Result<Option<Routed>> {
        let Some(mem) = &self.memory else {
            return Ok(None);
        };
        let (Some(wr_host), Some(alpha)) = (&mem.host.routers[li], &mem.alpha[li]) else {
            return Ok(None);
        };
        let (d, k) = (self.config.dim, mem.host.k);
        // W_r's texture stays alive through its view (bind groups hold the view).
        let wr_tex = if mem.fused {
            let t = crate::gpu::matrix_texture(&self.ctx, "router-tex", d, wr_host);
            Some(t.ok_or_else(|| {
                Error::Gpu(format!("blk.{li} router: W_r does not fit a texture"))
            })?)
        } else {
            None
        };
        let fused = wr_tex.map(|t| {
            // logits of the K blocks and NULL, then the layer's memory switch (on).
            let mut init = vec![0f32; (k + 2).div_ceil(4) * 4];
            init[k + 1] = 1.0;
            let logits = self
                .ctx
                .device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("router-logits"),
                    contents: bytemuck::cast_slice(&init),
                    usage: wgpu::BufferUsages::STORAGE
                        | wgpu::BufferUsages::UNIFORM
                        | wgpu::BufferUsages::COPY_DST,
                });
            (t.create_view(&Default::default()), logits)
        });
        let routed = Routed {
            k,
            rows: mem.rows.clone(),
            alpha: alpha.clone(),
            fused,
        };
        let wr = f32_buffer(&self.ctx, "router", wr_host);
        let alpha = alpha.clone();
        let s = specs::router(d, k, self.config.eps);
        let (h, step) = (self.buf.h.clone(), self.buf.step.clone());
        self.push_op(
            &s,
            &s,
            &[res(&step), res(&wr), res(&h), res(ffn_norm), res(&alpha)],
        )?;
        self._keep.push(wr);
        let i = self.ops.len() - 1;
        self.ops[i].batch_only = routed.fused.is_some();
        let mem = self.memory.as_mut().unwrap();
        mem.router_op[li] = Some(i);
        mem.logits[li] = routed.fused.as_ref().map(|f| f.1.clone());
        Ok(Some(routed))
    }

    /// Stream the stored memory rows of `tokens` to the GPU for this step.
    fn upload_memory_rows(&mut self, tokens: &[u32]) {
        if let Some(m) = &mut self.memory {
            gather_raw_rows(&m.host, tokens, &mut m.staging);
            m.words.clear();
            repack(m.host.tables[0].dtype(), &m.staging, &mut m.words);
            self.ctx
                .queue
                .write_buffer(&m.raw, 0, bytemuck::cast_slice(&m.words));
        }
    }

    /// Switch layer `l`'s memory injection off or on (ablation): its router is skipped and its
    /// weights held at zero, so the fused term adds exactly nothing.
    pub fn set_layer_memory(&mut self, l: usize, on: bool) -> Result<()> {
        self.flush();
        let Some(mem) = &self.memory else {
            return Err(Error::Input("the model has no memory to switch".into()));
        };
        let (Some(op), Some(alpha)) = (
            mem.router_op.get(l).copied().flatten(),
            mem.alpha.get(l).cloned().flatten(),
        ) else {
            return Err(Error::Input(format!("layer {l} has no memory injection")));
        };
        if !on {
            let zeros = vec![0u8; alpha.size() as usize];
            self.ctx.queue.write_buffer(&alpha, 0, &zeros);
        }
        // Fused single tokens: the switch slot after the logits scales the softmax.
        if let Some(logits) = mem.logits.get(l).cloned().flatten() {
            let k = mem.host.k;
            let switch = if on { 1f32 } else { 0.0 };
            self.ctx
                .queue
                .write_buffer(&logits, (k as u64 + 1) * 4, bytemuck::bytes_of(&switch));
        }
        self.ops[op].skip = !on;
        Ok(())
    }

    /// Whether single tokens take the TIDE router inside the decode matvecs (see
    /// GpuMemory::fused); for tests.
    #[doc(hidden)]
    pub fn router_fused(&self) -> bool {
        self.memory.as_ref().is_some_and(|m| m.fused)
    }

    /// Memory blocks of the model (0 for a plain backbone).
    pub fn memory_k(&self) -> usize {
        self.memory.as_ref().map_or(0, |m| m.host.k)
    }

    /// Router weights of the last batch fed, read from the per-layer hooks:
    /// [token][layer][K+1] (slot K = NULL; a layer without memory reads NULL = 1).
    pub fn router_weights(&mut self) -> Result<Vec<f32>> {
        let Some(mem) = &self.memory else {
            return Ok(Vec::new());
        };
        let (n, k1, layers) = (self.cur.n_tok as usize, mem.host.k + 1, mem.alpha.len());
        let per = n * k1 * 4;
        let mut enc = match self.pending.take() {
            Some(e) => e,
            None => self.ctx.device.create_command_encoder(&Default::default()),
        };
        for (l, a) in mem.alpha.iter().enumerate() {
            if let Some(a) = a {
                enc.copy_buffer_to_buffer(a, 0, &self.buf.readback, (l * per) as u64, per as u64);
            }
        }
        let present: Vec<bool> = mem.alpha.iter().map(|a| a.is_some()).collect();
        let bytes = self.read_back(enc, layers * per)?;
        self.pending = Some(self.ctx.device.create_command_encoder(&Default::default()));
        let v: &[f32] = bytemuck::cast_slice(&bytes);
        let mut out = vec![0f32; n * layers * k1];
        for t in 0..n {
            for l in 0..layers {
                let o = &mut out[(t * layers + l) * k1..(t * layers + l + 1) * k1];
                if present[l] {
                    o.copy_from_slice(&v[l * n * k1 + t * k1..l * n * k1 + (t + 1) * k1]);
                } else {
                    o[k1 - 1] = 1.0;
                }
            }
        }
        Ok(out)
    }

    /// Run `tokens` and return every position's logits, [n, vocab] (perplexity).
    pub fn feed_all(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        if self.all_logits.is_none() {
            self.build_all_logits()?;
        }
        let v = self.config.vocab;
        let mut out = Vec::with_capacity(tokens.len() * v);
        for chunk in tokens.chunks(self.opts.max_batch) {
            self.feed(chunk)?;
            let mut enc = self.take_encoder()?;
            let n = chunk.len();
            let al = self.all_logits.as_ref().unwrap();
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                for op in &al.ops {
                    self.encode_op(&mut pass, op, n as u32);
                }
            }
            let bytes = n * v * 4;
            enc.copy_buffer_to_buffer(&al.logits, 0, &al.readback, 0, bytes as u64);
            self.ctx.queue.submit([enc.finish()]);
            let slice = al.readback.slice(..bytes as u64);
            slice.map_async(wgpu::MapMode::Read, |_| {});
            self.ctx.wait()?;
            out.extend_from_slice(bytemuck::cast_slice(
                &slice
                    .get_mapped_range()
                    .map_err(|e| Error::Gpu(format!("logits readback failed: {e}")))?,
            ));
            al.readback.unmap();
            self.pending = Some(self.ctx.device.create_command_encoder(&Default::default()));
        }
        Ok(out)
    }

    fn build_all_logits(&mut self) -> Result<()> {
        let (hi, out_norm) = self.head.clone().expect("schedule built");
        let (v, mb) = (self.config.vocab, self.opts.max_batch);
        let bytes = mb * v * 4;
        let max_bind = self.ctx.limits.max_storage_buffer_binding_size as usize;
        if bytes > max_bind {
            return Err(Error::Gpu(format!(
                "all-position logits of {mb} tokens x {v} need {bytes} bytes, over one binding"
            )));
        }
        let logits = storage(&self.ctx, "logits-all", bytes, wgpu::BufferUsages::empty());
        let readback = self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("logits-all-readback"),
            size: bytes as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let chunks: Vec<(Storage, usize, usize, crate::model::DType, usize)> = {
            let head = &self._weights[hi];
            head.chunks
                .iter()
                .map(|ch| (ch.storage.clone(), ch.row0, ch.rows, head.dtype, head.cols))
                .collect()
        };
        let n_ops = self.ops.len();
        for (buffer, row0, rows, dtype, cols) in chunks {
            let m = Matmul {
                epi: Epilogue::StoreAll { stride: v },
                norm: Some(self.config.eps),
                dtype,
                cols,
                rows,
                row0,
            };
            let p = self.weight_reader(m.prefill());
            let (step, h) = (self.buf.step.clone(), self.buf.h.clone());
            self.push_op(
                &p,
                &p,
                &[
                    res(&step),
                    buffer.resource(),
                    res(&h),
                    res(&out_norm),
                    res(&logits),
                ],
            )?;
        }
        let ops = self.ops.split_off(n_ops);
        self.all_logits = Some(AllLogits {
            ops,
            logits,
            readback,
        });
        Ok(())
    }

    pub fn reset(&mut self) {
        self.pending = None;
        self.pos = 0;
    }

    fn flush(&mut self) {
        if let Some(enc) = self.pending.take() {
            self.ctx.queue.submit([enc.finish()]);
        }
    }

    /// Run `tokens` at the current position. Work is encoded, not submitted: the next call
    /// (another feed, `logits`, `top_k`) submits it together with its own commands.
    pub fn feed(&mut self, tokens: &[u32]) -> Result<()> {
        if tokens.is_empty() {
            return Err(Error::Input("no tokens to process".into()));
        }
        if self.pos + tokens.len() > self.opts.ctx_len {
            return Err(Error::Input(format!(
                "context full: {} + {} tokens exceed the context of {}",
                self.pos,
                tokens.len(),
                self.opts.ctx_len
            )));
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= self.config.vocab) {
            return Err(Error::Input(format!(
                "token id {bad} is out of range (vocab {})",
                self.config.vocab
            )));
        }
        for chunk in tokens.chunks(self.opts.max_batch) {
            self.flush();
            let n = chunk.len() as u32;
            self.cur = Step {
                pos0: self.pos as u32,
                n_tok: n,
                n_pen: 0,
                penalty: 1.0,
            };
            self.ctx
                .queue
                .write_buffer(&self.buf.step, 0, bytemuck::bytes_of(&self.cur));
            self.ctx
                .queue
                .write_buffer(&self.buf.ids, 0, bytemuck::cast_slice(chunk));
            self.upload_memory_rows(chunk);
            if self.profile.is_some() {
                self.profile_chunk(n)?;
                self.pending = Some(self.ctx.device.create_command_encoder(&Default::default()));
                self.pos += chunk.len();
                continue;
            }
            let mut enc = self.ctx.device.create_command_encoder(&Default::default());
            // One compute pass, broken only where rows are copied to textures (RowCopy).
            let mut rest = &self.ops[..];
            while !rest.is_empty() {
                for c in &rest[0].copies {
                    c.encode(&mut enc, self.cur.pos0, n);
                }
                let end = 1 + rest[1..]
                    .iter()
                    .position(|o| o.copies.iter().any(|c| c.wanted(n)))
                    .unwrap_or(rest.len() - 1);
                let mut pass = enc.begin_compute_pass(&Default::default());
                for op in &rest[..end] {
                    self.encode_op(&mut pass, op, n);
                }
                drop(pass);
                rest = &rest[end..];
            }
            self.pending = Some(enc);
            self.pos += chunk.len();
        }
        Ok(())
    }

    /// Record one op of the schedule for a batch of n tokens.
    fn encode_op(&self, pass: &mut wgpu::ComputePass<'_>, op: &Op, n: u32) {
        if !op.runs(n) {
            return;
        }
        let v = op.variant(n);
        pass.set_pipeline(&self.kernels[v.kernel].pipeline);
        pass.set_bind_group(0, op.bind_group(n), &[]);
        pass.dispatch_workgroups(v.x, v.y(n), 1);
    }

    /// Run the ops of one batch, each in its own pass between GPU timestamps (adapter time,
    /// not wall time: submission latency is left out). For `tide bench --profile`.
    fn profile_chunk(&mut self, n: u32) -> Result<()> {
        if !self.ctx.timestamps {
            return Err(Error::Gpu(
                "this adapter has no timestamp queries; --profile needs them".into(),
            ));
        }
        let dev = &self.ctx.device;
        let count = (self.ops.len() * 2) as u32;
        let qs = dev.create_query_set(&wgpu::QuerySetDescriptor {
            label: None,
            ty: wgpu::QueryType::Timestamp,
            count,
        });
        let size = count as u64 * 8;
        let resolve = dev.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let read = dev.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = dev.create_command_encoder(&Default::default());
        for (i, op) in self.ops.iter().enumerate() {
            for c in &op.copies {
                c.encode(&mut enc, self.cur.pos0, n);
            }
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &qs,
                    beginning_of_pass_write_index: Some(2 * i as u32),
                    end_of_pass_write_index: Some(2 * i as u32 + 1),
                }),
            });
            self.encode_op(&mut pass, op, n);
        }
        enc.resolve_query_set(&qs, 0..count, &resolve, 0);
        enc.copy_buffer_to_buffer(&resolve, 0, &read, 0, size);
        self.ctx.queue.submit([enc.finish()]);
        let slice = read.slice(..);
        slice.map_async(wgpu::MapMode::Read, |_| {});
        self.ctx.wait()?;
        let ticks: Vec<u64> = bytemuck::cast_slice(
            &slice
                .get_mapped_range()
                .map_err(|e| Error::Gpu(format!("timestamp readback failed: {e}")))?,
        )
        .to_vec();
        let period = self.ctx.queue.get_timestamp_period() as f64 * 1e-9;
        for (i, op) in self.ops.iter().enumerate().filter(|(_, op)| op.runs(n)) {
            let k = op.variant(n).kernel;
            let dt = ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * period;
            let e = self
                .profile
                .as_mut()
                .unwrap()
                .entry(self.kernels[k].label.clone())
                .or_insert((0, 0.0));
            e.0 += 1;
            e.1 += dt;
        }
        Ok(())
    }

    fn read_back(&mut self, enc: wgpu::CommandEncoder, bytes: usize) -> Result<Vec<u8>> {
        let scope = self
            .ctx
            .device
            .push_error_scope(wgpu::ErrorFilter::Validation);
        let oom = self
            .ctx
            .device
            .push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        self.ctx.queue.submit([enc.finish()]);
        let slice = self.buf.readback.slice(..bytes as u64);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.ctx.wait()?;
        if let Some(e) = pollster::block_on(oom.pop()) {
            return Err(Error::Gpu(format!("out of memory: {e}")));
        }
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("{e}")));
        }
        rx.recv()
            .map_err(|_| Error::Gpu("readback never completed".into()))?
            .map_err(|e| Error::Gpu(format!("readback failed: {e}")))?;
        let v = slice
            .get_mapped_range()
            .map_err(|e| Error::Gpu(format!("readback failed: {e}")))?
            .to_vec();
        self.buf.readback.unmap();
        Ok(v)
    }

    fn take_encoder(&mut self) -> Result<wgpu::CommandEncoder> {
        self.pending
            .take()
            .ok_or_else(|| Error::Input("no logits yet: feed tokens first".into()))
    }

    /// The full logits of the last token fed (tests, full-distribution sampling).
    pub fn logits(&mut self) -> Result<Vec<f32>> {
        let mut enc = self.take_encoder()?;
        let n = self.config.vocab * 4;
        enc.copy_buffer_to_buffer(&self.buf.logits, 0, &self.buf.readback, 0, n as u64);
        let bytes = self.read_back(enc, n)?;
        // Keep the logits addressable for a following top_k on the same step.
        self.pending = Some(self.ctx.device.create_command_encoder(&Default::default()));
        Ok(bytemuck::cast_slice(&bytes).to_vec())
    }

    /// The k best (id, logit) of the last token fed, best first, after the repetition penalty
    /// over `recent` (distinct ids). k = 1 is greedy. One submission, k * 8 bytes read back.
    pub fn top_k(&mut self, k: usize, penalty: f32, recent: &[u32]) -> Result<Vec<(u32, f32)>> {
        if k == 0 || k > MAX_TOP_K {
            return Err(Error::Input(format!(
                "top-k on the GPU takes 1..={MAX_TOP_K} candidates, got {k}"
            )));
        }
        let mut enc = self.take_encoder()?;
        let kernel = match self.topk.get(&k) {
            Some(&(i, _)) => i,
            None => {
                let v = self.variant(&specs::top_k(k, self.config.vocab))?;
                let bind = self.kernels[v.kernel].bind(
                    &self.ctx.device,
                    &[
                        res(&self.buf.step),
                        res(&self.buf.logits),
                        res(&self.buf.pen),
                        res(&self.buf.sv),
                        res(&self.buf.si),
                        res(&self.buf.out),
                    ],
                );
                self.topk.insert(k, (v.kernel, bind));
                v.kernel
            }
        };
        let n_pen = if penalty != 1.0 {
            recent.len().min(MAX_PEN)
        } else {
            0
        };
        self.cur.n_pen = n_pen as u32;
        self.cur.penalty = penalty;
        self.ctx
            .queue
            .write_buffer(&self.buf.step, 0, bytemuck::bytes_of(&self.cur));
        if n_pen > 0 {
            let ids = &recent[recent.len() - n_pen..];
            self.ctx
                .queue
                .write_buffer(&self.buf.pen, 0, bytemuck::cast_slice(ids));
        }
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            if n_pen > 0 {
                let (pk, pb) = self.penalize.as_ref().unwrap();
                pass.set_pipeline(&self.kernels[*pk].pipeline);
                pass.set_bind_group(0, pb, &[]);
                pass.dispatch_workgroups((n_pen as u32).div_ceil(64), 1, 1);
            }
            let (_, bind) = &self.topk[&k];
            pass.set_pipeline(&self.kernels[kernel].pipeline);
            pass.set_bind_group(0, bind, &[]);
            pass.dispatch_workgroups(1, 1, 1);
        }
        enc.copy_buffer_to_buffer(&self.buf.out, 0, &self.buf.readback, 0, (k * 8) as u64);
        let bytes = self.read_back(enc, k * 8)?;
        let w: &[u32] = bytemuck::cast_slice(&bytes);
        let out: Vec<(u32, f32)> = (0..k).map(|j| (w[j], f32::from_bits(w[k + j]))).collect();
        if out[0].0 as usize >= self.config.vocab {
            return Err(Error::Gpu(
                "the model produced no finite logit (NaN or -inf everywhere)".into(),
            ));
        }
        Ok(out
            .into_iter()
            .filter(|(i, _)| (*i as usize) < self.config.vocab)
            .collect())
    }
}

fn res(b: &wgpu::Buffer) -> wgpu::BindingResource<'_> {
    b.as_entire_binding()
}

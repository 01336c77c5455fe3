//! What CPU-backed adapters (lavapipe, SwiftShader) get instead of the GPU kernels: they pay
//! per workgroup, per barrier and per storage load, and fetch a texel as one gather where
//! storage loads walk the lanes. So one token goes through matvec_rows with x and gamma bound
//! as uniforms of one row, batches read x rows from texture mirrors of the activations
//! (RowCopy keeps the mirrors current), and the K/V cache is a pair of textures that the QKV
//! matmul writes and attention reads.
use super::plan::{rebind, Kind, Named, Op, Variant};
use super::specs::{self, Epilogue, Matmul, Spec};
use super::tide::FUSED_ONLY;
use super::{GpuDecoder, KernelSet};
use crate::error::{Error, Result};

/// Rows of a buffer mirrored into an rgba32uint texture (row r of the texture = row r of the
/// buffer) right before the op that reads them: the K/V cache rows a batch appended, or a
/// batch's activations. The buffers stay the source of truth.
pub(super) struct RowCopy {
    pub buf: wgpu::Buffer,
    pub tex: wgpu::Texture,
    pub row_bytes: u32,
    /// Which steps need the copy.
    pub when: CopyWhen,
    /// A fixed row count (the K memory rows of one token) instead of the batch's n.
    pub fixed_rows: Option<u32>,
}

/// Batches only (one token goes through uniforms), or single tokens only.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum CopyWhen {
    Batch,
    Token,
}

impl RowCopy {
    /// Several sequences' tokens read x and gamma as uniforms and memory rows as storage: no
    /// copy.
    pub fn wanted(&self, kind: Kind) -> bool {
        matches!(
            (self.when, kind),
            (CopyWhen::Batch, Kind::Batch(_)) | (CopyWhen::Token, Kind::Token)
        )
    }

    pub fn encode(&self, enc: &mut wgpu::CommandEncoder, kind: Kind) {
        if !self.wanted(kind) {
            return;
        }
        let n = self.fixed_rows.unwrap_or(kind.n());
        let row = self.row_bytes;
        // Rows go in one copy where the row pitch meets the copy alignment, else one by one.
        let (per, count) = if n == 1 || row % wgpu::COPY_BYTES_PER_ROW_ALIGNMENT == 0 {
            (n, 1)
        } else {
            (1, n)
        };
        for i in 0..count {
            let p = i * per;
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

/// A buffer binding cut to its first `bytes` (a uniform of one row, or of a few).
pub(super) fn first_bytes<'a>(
    r: &wgpu::BindingResource<'a>,
    bytes: u64,
) -> wgpu::BindingResource<'a> {
    match r {
        wgpu::BindingResource::Buffer(b) => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: b.buffer,
            offset: 0,
            size: wgpu::BufferSize::new(bytes),
        }),
        r => r.clone(),
    }
}

/// The bindings without those only the fused single-token kernels have.
fn unfused<'a>(v: &Named<'a>) -> Named<'a> {
    v.iter()
        .filter(|(n, _)| !FUSED_ONLY.contains(n))
        .cloned()
        .collect()
}

impl GpuDecoder {
    /// CPU-backed adapters pay per workgroup; GPUs want many (DecoderOptions::kernels).
    pub(super) fn few_big_workgroups(&self) -> bool {
        match self.opts.kernels {
            KernelSet::CpuAdapter => true,
            KernelSet::Gpu => false,
            KernelSet::Auto => self.ctx.info.device_type == wgpu::DeviceType::Cpu,
        }
    }

    /// A row-mirror texture (see RowCopy), on CPU adapters where it fits.
    pub(super) fn row_texture(
        &self,
        label: &str,
        cols: usize,
        rows: usize,
    ) -> Option<wgpu::Texture> {
        if self.few_big_workgroups() {
            crate::gpu::row_texture(&self.ctx, label, cols, rows, false)
        } else {
            None
        }
    }

    /// The matmul op on a CPU adapter: one token through matvec_rows (x and gamma bound as
    /// uniforms of one row; the token of a decode step is row 0), batches through `prefill`
    /// (x from `x_tex` when given). TIDE, fused: gate/up also computes the router logits;
    /// down takes their softmax and reads the token's memory rows from a texture.
    pub(super) fn push_matmul_cpu_adapter(
        &mut self,
        m: Matmul,
        named: Named<'_>,
        prefill: Spec,
        x_tex: Option<&wgpu::Texture>,
        fused: bool,
    ) -> Result<()> {
        let x_bytes = (m.cols * 4) as u64;
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
        // x and gamma as one row; batches keep memory and alpha as storage and leave out
        // what only the fused single-token kernels bind.
        let mut sized = named.clone();
        for (n, r) in sized.iter_mut() {
            if *n == "X" || *n == "G" {
                *r = first_bytes(r, x_bytes);
            }
        }
        let mut copies = Vec::new();
        let mem_view = mem_tex
            .as_ref()
            .map(|(t, _)| t.create_view(&Default::default()));
        let mut dec_named = sized.clone();
        if let (Some((tex, rows)), Some(view)) = (&mem_tex, &mem_view) {
            rebind(
                &mut dec_named,
                "MEM",
                wgpu::BindingResource::TextureView(view),
            )?;
            let mem = self.memory.as_mut().unwrap();
            if !mem.rows_tex_copied {
                mem.rows_tex_copied = true;
                copies.push(RowCopy {
                    buf: rows.clone(),
                    tex: tex.clone(),
                    row_bytes: (m.rows * 4) as u32,
                    when: CopyWhen::Token,
                    fixed_rows: Some(mem.host.k as u32),
                });
            }
        }
        let bind = self.bind(decode.kernel, &dec_named)?;
        let x_view = x_tex.map(|t| t.create_view(&Default::default()));
        let bind_prefill = match (x_tex, &x_view) {
            (Some(tex), Some(view)) => {
                // Batches: x rows from the texture (copied in first), gamma as a uniform.
                let Some((_, wgpu::BindingResource::Buffer(x))) =
                    named.iter().find(|(n, _)| *n == "X")
                else {
                    return Err(Error::Gpu("internal: matmul x is not a buffer".into()));
                };
                copies.push(RowCopy {
                    buf: x.buffer.clone(),
                    tex: tex.clone(),
                    row_bytes: x_bytes as u32,
                    when: CopyWhen::Batch,
                    fixed_rows: None,
                });
                let mut b = unfused(&sized);
                rebind(&mut b, "X", wgpu::BindingResource::TextureView(view))?;
                self.bind(prefill.kernel, &b)?
            }
            _ => self.bind(prefill.kernel, &unfused(&named))?,
        };
        let mut op = Op::new(decode, prefill, bind);
        op.bind_prefill = Some(bind_prefill);
        op.copies = copies;
        // Several sequences' tokens: the `tokens` form for each count, x as a uniform of
        // `seq_group` rows, the plain epilogues (the router runs as its own op there).
        let g = self.slots.group;
        if g >= 2 {
            let seqs = self.tokens_forms(&m, prefill)?;
            let mut b = unfused(&sized);
            if let Some((_, x)) = named.iter().find(|(n, _)| *n == "X") {
                rebind(&mut b, "X", first_bytes(x, x_bytes * g as u64))?;
            }
            op.bind_seqs = Some(self.bind(seqs[2].kernel, &b)?);
            op.seqs = seqs;
        }
        self.ops.push(op);
        Ok(())
    }

    /// A matmul's forms for several sequences' tokens on a CPU adapter, indexed by the token
    /// count (Op::seqs): matvec_rows' `tokens` form for 2..=seq_group (`batch` fills 0 and 1,
    /// which such steps never have).
    pub(super) fn tokens_forms(&mut self, m: &Matmul, batch: Variant) -> Result<Vec<Variant>> {
        let mut forms = vec![batch; 2];
        for n in 2..=self.slots.group {
            forms.push(self.variant(&self.weight_reader(m.decode_rows_tokens(n)))?);
        }
        Ok(forms)
    }

    /// One layer's K/V cache: on CPU adapters, where the adapter's texture size allows, a
    /// pair of textures (written by the QKV matmul, read by attention); else buffers.
    pub(super) fn kv_cache(&self) -> KvCache {
        // Every slot's positions, slot after slot.
        let (kvd, rows) = (self.config.kv_dim(), self.opts.ctx_len * self.opts.slots);
        let tex = |label| {
            self.few_big_workgroups()
                .then(|| crate::gpu::row_texture(&self.ctx, label, kvd, rows, true))
                .flatten()
        };
        if let (Some(k), Some(v)) = (tex("k-cache"), tex("v-cache")) {
            return KvCache::Textures(
                k.create_view(&Default::default()),
                v.create_view(&Default::default()),
            );
        }
        let none = wgpu::BufferUsages::empty();
        let buffer = |label| super::storage(&self.ctx, label, rows * kvd * 4, none);
        KvCache::Buffers(buffer("k-cache"), buffer("v-cache"))
    }

    /// Attention on a CPU adapter over the K/V textures: one token through a lane per query
    /// head, batches through the prefill kernel (with subgroups sharing K/V fetches where
    /// they apply).
    pub(super) fn push_attention_textures(&mut self, named: &Named<'_>) -> Result<()> {
        let c = &self.config;
        let (hd, nh, nkv, ctx_len) = (c.head_dim, c.n_heads, c.n_kv_heads, self.opts.ctx_len);
        let decode = self.variant(&specs::attention_heads(hd, nh, nkv, ctx_len))?;
        let atp = specs::attention_prefill(hd, nh, nkv, ctx_len);
        let prefill =
            self.variant(&specs::kv_in_textures(atp).with_subgroups(self.ctx.subgroup_size))?;
        let bind = self.bind(decode.kernel, named)?;
        self.ops.push(Op::new(decode, prefill, bind));
        // Several sequences' tokens: the decode kernel with a workgroup row per token.
        let mut each = specs::attention_heads(hd, nh, nkv, ctx_len);
        each.tokens_per_y = 1;
        let each = self.variant(&each)?;
        self.set_seqs_variant(each);
        Ok(())
    }
}

/// One layer's K/V cache [slots x ctx, kv_dim] f32.
pub(super) enum KvCache {
    Buffers(wgpu::Buffer, wgpu::Buffer),
    /// CPU adapters: rgba32uint textures (texel (j, p) = floats 4j..4j+3 of position p),
    /// q and k in slot order (specs::slot_order).
    Textures(wgpu::TextureView, wgpu::TextureView),
}

impl KvCache {
    pub fn in_textures(&self) -> bool {
        matches!(self, KvCache::Textures(..))
    }

    pub fn bindings(&self) -> [wgpu::BindingResource<'_>; 2] {
        match self {
            KvCache::Buffers(k, v) => [k.as_entire_binding(), v.as_entire_binding()],
            KvCache::Textures(k, v) => [
                wgpu::BindingResource::TextureView(k),
                wgpu::BindingResource::TextureView(v),
            ],
        }
    }
}

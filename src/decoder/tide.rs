//! TIDE on the GPU: the path of a memory row after the host has it (src/memory/ says where
//! rows come from), the gather op, each layer's router, and the memory switch used by
//! ablation. The memory term itself is the down projection's epilogue (graph.rs).
//!
//! One step: the host copies the stored rows of the step's tokens into `raw`
//! (`upload_memory_rows`); the gather op (first after the embedding) decodes and
//! RMS-normalises them into `rows` ([n_tok, K, d], read by every layer); each layer's router
//! writes its weights to its own `alpha` buffer (a named hook `router_weights` reads).
use wgpu::util::DeviceExt;

use super::plan::Named;
use super::specs;
use super::{f32_buffer, res, storage, GpuDecoder, RouterPlacement};
use crate::error::{Error, Result};
use crate::memory::store::RowStore;
use crate::memory::TideMemory;

/// Bindings only the fused single-token kernels have (W_r's texture and the logits out of
/// gate/up, the logits into down): batches bind without them.
pub(super) const FUSED_ONLY: [&str; 3] = ["WR", "RL", "LOGITS"];

pub(super) struct GpuMemory {
    pub host: TideMemory,
    /// Where the step's stored rows come from (and its counters).
    pub store: RowStore,
    raw: wgpu::Buffer,
    pub rows: wgpu::Buffer,
    /// `rows` of one token as a texture (CPU adapters), copied in before the first layer
    /// that reads it (`rows_tex_copied` once that op exists).
    pub rows_tex: Option<wgpu::Texture>,
    pub rows_tex_copied: bool,
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
    /// DecoderOptions::memory_resident: all tables, [K, V, row words], copied from on the GPU.
    resident: Option<wgpu::Buffer>,
    /// Bytes of one stored row as the GPU holds it (repacked words).
    row_gpu_bytes: u64,
}

/// A layer's memory injection as the down projection binds it.
pub(super) struct Routed {
    pub k: usize,
    pub rows: wgpu::Buffer,
    pub alpha: wgpu::Buffer,
    /// Fused (GpuMemory::fused): W_r's texture view and the logits buffer.
    pub fused: Option<(wgpu::TextureView, wgpu::Buffer)>,
}

impl GpuDecoder {
    /// Buffers and the gather op of TIDE memory (the op runs right after the embedding).
    pub(super) fn setup_memory(&mut self, m: &TideMemory, store: RowStore) -> Result<()> {
        let c = self.config.clone();
        let (d, k, mb) = (c.dim, m.k, self.opts.max_batch);
        let dtype = m.tables[0].dtype();
        // The stored row: E_k[v], d wide, or with SVD A_k[v], the factor's width.
        let width = m.tables[0].cols();
        let row_words = width / 32 * crate::gpu::gpu_words(dtype).0;
        let u = wgpu::BufferUsages::empty();
        let raw = storage(&self.ctx, "memory-raw-rows", mb * k * row_words * 4, u);
        let rows = storage(&self.ctx, "memory-rows", mb * k * d * 4, u);
        let gammas: Vec<f32> = m.gammas.iter().flatten().copied().collect();
        let gamma = f32_buffer(&self.ctx, "memory-gamma", &gammas);
        let alpha = m
            .routers
            .iter()
            .map(|r| {
                r.as_ref()
                    .map(|_| storage(&self.ctx, "router-alpha", mb * (k + 1) * 4, u))
            })
            .collect();
        let s = if let Some(svd) = &m.svd {
            specs::memory_rows_svd(dtype, d, (svd.width, svd.basis_f16), k, m.eps, m.normalized)
        } else if self.few_big_workgroups() {
            specs::memory_rows_by_lane(dtype, d, k, m.eps, m.normalized)
        } else {
            specs::memory_rows(dtype, d, k, m.eps, m.normalized)
        };
        let step = self.buf.step.clone();
        let mut named: Named = vec![
            ("step", res(&step)),
            ("W", res(&raw)),
            ("GAMMA", res(&gamma)),
            ("MEM", res(&rows)),
        ];
        // B_k of every block, resident: [K, width, d], f32 or f16 as the file stores it.
        let basis = m.svd.as_ref().map(|svd| {
            let all: Vec<f32> = svd.basis.iter().flatten().copied().collect();
            if svd.basis_f16 {
                let half: Vec<half::f16> = all.iter().map(|&x| half::f16::from_f32(x)).collect();
                self.ctx
                    .device
                    .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                        label: Some("memory-svd-basis-f16"),
                        contents: bytemuck::cast_slice(&half),
                        usage: wgpu::BufferUsages::STORAGE,
                    })
            } else {
                f32_buffer(&self.ctx, "memory-svd-basis", &all)
            }
        });
        if let Some(b) = &basis {
            named.push(("BASIS", res(b)));
        }
        self.push_op(&s, &s, &named)?;
        self._keep.push(gamma);
        self._keep.extend(basis);
        // The fused router (CPU adapters) needs the CPU-adapter matvecs of gate/up and down (x
        // a uniform), the logits as a uniform, W_r as a texture and the token's rows in a
        // texture for the decode epilogue.
        let ubo = self.ctx.limits.max_uniform_buffer_binding_size as usize;
        let max_tex = self.ctx.limits.max_texture_dimension_2d as usize;
        let fusable = d % 4 == 0
            && 4 * d.max(c.ffn_dim).max(k + 2) <= ubo
            && k < max_tex
            && self.opts.router == RouterPlacement::Auto;
        let rows_tex = if fusable {
            self.row_texture("memory-rows-tex", d, k)
        } else {
            None
        };
        let fused = rows_tex.is_some();
        let n_layers = c.n_layers;
        let row_gpu_bytes = (row_words * 4) as u64;
        let resident = if self.opts.memory_resident {
            Some(self.upload_resident_tables(m, &store, row_gpu_bytes)?)
        } else {
            None
        };
        self.memory = Some(GpuMemory {
            host: m.clone(),
            store,
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
            resident,
            row_gpu_bytes,
        });
        Ok(())
    }

    /// Every table in one buffer, [K, V, row words], read from the row store's source in
    /// pieces (not through its cache, which a one-time copy would only churn).
    fn upload_resident_tables(
        &self,
        m: &TideMemory,
        store: &RowStore,
        row_gpu: u64,
    ) -> Result<wgpu::Buffer> {
        let v = self.config.vocab;
        let size = m.k as u64 * v as u64 * row_gpu;
        let max = self.ctx.limits.max_buffer_size;
        if size > max {
            return Err(Error::Gpu(format!(
                "{}: resident memory tables need {} MB, more than the adapter's largest buffer \
                 ({} MB): stream them instead",
                m.source,
                size >> 20,
                max >> 20
            )));
        }
        let buf = self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("memory-resident-tables"),
            // A dry decoder (`GpuContext::dry`) binds a placeholder and writes nothing.
            size: if self.ctx.dry { 16 } else { size },
            usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        if self.ctx.dry {
            return Ok(buf);
        }
        let rb = store.token_bytes() / m.k;
        let dtype = m.tables[0].dtype();
        let (mut bytes, mut words) = (Vec::new(), Vec::new());
        const PIECE: usize = 4096;
        for k in 0..m.k {
            for v0 in (0..v).step_by(PIECE) {
                let ids: Vec<u32> = (v0 as u32..(v0 + PIECE).min(v) as u32).collect();
                bytes.resize(ids.len() * rb, 0);
                store.source().read_rows(k, &ids, &mut bytes)?;
                words.clear();
                crate::gpu::repack(dtype, &bytes, &mut words);
                let at = (k as u64 * v as u64 + v0 as u64) * row_gpu;
                self.ctx
                    .queue
                    .write_buffer(&buf, at, bytemuck::cast_slice(&words));
            }
            // Let each table's upload go before the next is read.
            self.ctx.queue.submit([]);
        }
        store.set_resident(size);
        Ok(buf)
    }

    /// Layer `li`'s router op, when the layer has memory. Where the router is fused (CPU
    /// adapters), the op runs for batches only and single tokens get W_r's texture and the
    /// logits buffer for the gate/up and down matvecs.
    pub(super) fn push_router(
        &mut self,
        li: usize,
        ffn_norm: &wgpu::Buffer,
    ) -> Result<Option<Routed>> {
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
        let named: Named = vec![
            ("step", res(&step)),
            ("WR", res(&wr)),
            ("X", res(&h)),
            ("G", res(ffn_norm)),
            ("A", res(&alpha)),
        ];
        self.push_op(&s, &s, &named)?;
        self._keep.push(wr);
        let i = self.ops.len() - 1;
        self.ops[i].batch_only = routed.fused.is_some();
        let mem = self.memory.as_mut().unwrap();
        mem.router_op[li] = Some(i);
        mem.logits[li] = routed.fused.as_ref().map(|f| f.1.clone());
        Ok(Some(routed))
    }

    /// Stream the stored memory rows of `tokens` to the GPU for this step; with resident
    /// tables, record their copies into `enc` instead.
    pub(super) fn upload_memory_rows(
        &mut self,
        tokens: &[u32],
        enc: &mut wgpu::CommandEncoder,
    ) -> Result<()> {
        if let Some(m) = &mut self.memory {
            if let Some(all) = &m.resident {
                let (k, v, rb) = (m.host.k as u64, self.config.vocab as u64, m.row_gpu_bytes);
                for (i, &t) in tokens.iter().enumerate() {
                    for b in 0..k {
                        let src = (b * v + t as u64) * rb;
                        enc.copy_buffer_to_buffer(all, src, &m.raw, (i as u64 * k + b) * rb, rb);
                    }
                }
                m.store.count_resident(tokens.len());
                return Ok(());
            }
            m.store.gather(tokens, &mut m.staging)?;
            m.words.clear();
            crate::gpu::repack(m.host.tables[0].dtype(), &m.staging, &mut m.words);
            self.ctx
                .queue
                .write_buffer(&m.raw, 0, bytemuck::cast_slice(&m.words));
        }
        Ok(())
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
    pub async fn router_weights_async(&mut self) -> Result<Vec<f32>> {
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
        let bytes = self.read_back(enc, layers * per).await?;
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
}

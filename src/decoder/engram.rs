//! Engram on the GPU (model/engram.rs has the maths and the host hashing). Per step the host
//! hashes each token's 2- and 3-gram from the compressed ids it keeps per slot and position
//! (only the last two are read) and streams the hashed rows through the row stores into
//! `raw`; at each Engram layer, before its attention, two ops of engram.wgsl run: `gate` (one
//! workgroup per token decodes the rows, projects k | v and gates v) and `conv`. The
//! convolution's input is kept per slot and position (`conv`), so decode computes each token's
//! row once and reads the three before it.
use super::plan::Named;
use super::{res, specs, storage, GpuDecoder};
use crate::error::{Error, Result};
use crate::memory::store::RowStore;
use crate::model::engram::{Engram, KERNEL};

pub(super) struct GpuEngram {
    host: Engram,
    /// Per Engram layer, the row store of each (order, head) table.
    stores: Vec<Vec<RowStore>>,
    /// Per Engram layer: the step's stored rows [max batch, tables, row words].
    raw: Vec<wgpu::Buffer>,
    /// Per Engram layer: RMSNorm_c(v~) of every slot and position [slots x ctx, dim].
    conv: Vec<wgpu::Buffer>,
    /// v~ of the step's tokens (scratch shared by the layers).
    vt: wgpu::Buffer,
    /// Per slot: the compressed id at each position (the hash reads the last two).
    ids: Vec<Vec<u64>>,
    staging: Vec<u8>,
    rows: Vec<u8>,
    idx: Vec<Vec<u32>>,
    words: Vec<u32>,
}

impl GpuDecoder {
    /// Engram's buffers (the ops come per layer with `push_engram`).
    pub(super) fn setup_engram(&mut self, e: &Engram, stores: Vec<Vec<RowStore>>) -> Result<()> {
        let (d, mb) = (self.config.dim, self.opts.max_batch);
        let wg = specs::engram_gate_workgroup_bytes(d, e.d_mem());
        let max = self.ctx.limits.max_compute_workgroup_storage_size as usize;
        if wg > max {
            return Err(Error::Gpu(format!(
                "{}: Engram's gate needs {wg} bytes of workgroup memory (width {d}, rows of {} \
                 values), more than this adapter's {max}",
                e.source,
                e.d_mem()
            )));
        }
        let rows = self.opts.slots * self.opts.ctx_len;
        let u = wgpu::BufferUsages::empty();
        let row_words = e.head_dim / 32 * crate::gpu::gpu_words(e.dtype).0;
        let per_tok = e.tables_per_layer() * row_words * 4;
        let raw = (0..e.layers.len())
            .map(|_| storage(&self.ctx, "engram-raw-rows", mb * per_tok, u))
            .collect();
        let conv = (0..e.layers.len())
            .map(|_| storage(&self.ctx, "engram-conv-history", rows * d * 4, u))
            .collect();
        self.engram = Some(GpuEngram {
            host: e.clone(),
            stores,
            raw,
            conv,
            vt: storage(&self.ctx, "engram-v", mb * d * 4, u),
            ids: vec![vec![0; self.opts.ctx_len]; self.opts.slots],
            staging: Vec::new(),
            rows: Vec::new(),
            idx: Vec::new(),
            words: Vec::new(),
        });
        Ok(())
    }

    /// Layer `li`'s Engram ops, when it has Engram: they add Y to h before the attention.
    pub(super) fn push_engram(&mut self, li: usize, keep: &mut Vec<wgpu::Buffer>) -> Result<()> {
        let Some(g) = &self.engram else {
            return Ok(());
        };
        let Some(ei) = g.host.index_of(li) else {
            return Ok(());
        };
        let el = g.host.layers[ei].clone();
        let vt = g.vt.clone();
        let (raw, conv) = (g.raw[ei].clone(), g.conv[ei].clone());
        let (d, dm, dtype) = (self.config.dim, g.host.d_mem(), g.host.dtype);
        let eps = self.config.eps;
        let step = self.buf.step.clone();
        let h = self.buf.h.clone();
        let w: Vec<f32> = el.key.iter().chain(&el.value).copied().collect();
        let b: Vec<f32> = el.key_bias.iter().chain(&el.value_bias).copied().collect();
        let w = super::f32_buffer(&self.ctx, "engram-kv-weight", &w);
        let b = super::f32_buffer(&self.ctx, "engram-kv-bias", &b);
        let norms: Vec<f32> = [&el.norm_h, &el.norm_k, &el.norm_c]
            .into_iter()
            .flatten()
            .copied()
            .collect();
        let norms = super::f32_buffer(&self.ctx, "engram-norms", &norms);
        let gs = specs::engram_gate(dtype, d, dm, eps);
        let named: Named = vec![
            ("step", res(&step)),
            ("W", res(&raw)),
            ("P", res(&w)),
            ("B", res(&b)),
            ("H", res(&h)),
            ("NORMS", res(&norms)),
            ("VT", res(&vt)),
            ("CONV", res(&conv)),
        ];
        self.push_op(&gs, &gs, &named)?;
        debug_assert_eq!(el.conv.len(), d * KERNEL);
        let taps = super::f32_buffer(&self.ctx, "engram-taps", &el.conv);
        let cs = specs::engram_conv(d);
        let named: Named = vec![
            ("step", res(&step)),
            ("H", res(&h)),
            ("VT", res(&vt)),
            ("CONV", res(&conv)),
            ("TAPS", res(&taps)),
        ];
        self.push_op(&cs, &cs, &named)?;
        keep.extend([w, b, norms, taps]);
        Ok(())
    }

    /// Hash the step's tokens — (slot, position, token id) each — and stream their Engram
    /// rows to the GPU through the row stores.
    pub(super) fn upload_engram_rows(&mut self, toks: &[(usize, usize, u32)]) -> Result<()> {
        let Some(g) = &mut self.engram else {
            return Ok(());
        };
        let e = &g.host;
        for &(slot, pos, t) in toks {
            g.ids[slot][pos] = e.compressed(t);
        }
        let tables = e.tables_per_layer();
        let rb = e.row_bytes();
        let mut hashed = Vec::with_capacity(tables);
        for (ei, el) in e.layers.iter().enumerate() {
            g.idx.resize(tables, Vec::new());
            g.idx.iter_mut().for_each(|v| v.clear());
            for &(slot, pos, _) in toks {
                hashed.clear();
                e.hash_at(el, &g.ids[slot], pos, &mut hashed);
                for (v, &r) in g.idx.iter_mut().zip(&hashed) {
                    v.push(r);
                }
            }
            // [n_tok, tables, row bytes], gathered table by table.
            g.staging.resize(toks.len() * tables * rb, 0);
            for (j, (store, idx)) in g.stores[ei].iter().zip(&g.idx).enumerate() {
                store.gather(idx, &mut g.rows)?;
                for (t, row) in g.rows.chunks_exact(rb).enumerate() {
                    let at = (t * tables + j) * rb;
                    g.staging[at..at + rb].copy_from_slice(row);
                }
            }
            g.words.clear();
            crate::gpu::repack(e.dtype, &g.staging, &mut g.words);
            self.ctx
                .queue
                .write_buffer(&g.raw[ei], 0, bytemuck::cast_slice(&g.words));
        }
        Ok(())
    }
}

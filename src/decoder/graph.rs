//! The per-layer graph, built once from the model: embedding, then per layer the fused
//! QKV, RoPE and cache append, attention, output projection with residual, (TIDE router,)
//! gate/up with SwiGLU, and the down projection with residual (and memory term); the final
//! norm and LM head last, over the weights weights.rs uploaded. Which kernel family and bindings each op gets on CPU
//! adapters is cpu_adapter.rs's business; TIDE's extra ops are tide.rs's.
use super::cpu_adapter::KvCache;
use super::plan::Named;
use super::specs::{self, Epilogue, Matmul, Spec};
use super::weights::{GpuWeights, LayerWeights};
use super::{res, GpuDecoder};
use crate::error::{Error, Result};
use crate::gpu::GpuTensor;
use crate::memory::MemoryRows;
use crate::model::{Model, RopeLayout};

/// The one binding of a tensor that must not be split across bindings.
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
    /// A kernel that reads weight tensors, as this context stores them: every GpuTensor is
    /// uploaded to textures when `ctx.weight_textures` says so, to buffers otherwise.
    pub(super) fn weight_reader(&self, s: Spec) -> Spec {
        s.weights_in_texture_if(self.ctx.weight_textures)
            .with_subgroups(self.ctx.subgroup_size)
    }

    /// A matmul op. `x_tex`: a texture of max_batch rows that can mirror the x buffer for
    /// batches on CPU adapters. `fused`: the layer's TIDE router rides in this op's decode
    /// kernel (gate/up: `named` has W_r's texture WR and the logits RL; down: the logits
    /// LOGITS), see tide::GpuMemory::fused.
    pub(super) fn push_matmul(
        &mut self,
        m: Matmul,
        named: Named<'_>,
        x_tex: Option<&wgpu::Texture>,
        fused: bool,
    ) -> Result<()> {
        let big = self.few_big_workgroups();
        // Both CPU-adapter variants bind a row of x (decode) or gamma (batches) as a uniform.
        let cpu_kernels =
            big && (m.cols * 4) as u64 <= self.ctx.limits.max_uniform_buffer_binding_size;
        if fused && !cpu_kernels {
            return Err(Error::Gpu(format!(
                "internal: the fused TIDE router needs the CPU-adapter kernels ({:?})",
                m.epi
            )));
        }
        let x_tex = x_tex.filter(|_| cpu_kernels && m.epi != Epilogue::Store);
        let tile = self.opts.prefill_tile;
        let prefill = self.weight_reader(if m.epi == Epilogue::Store {
            m.decode_tuned(big)
        } else if x_tex.is_some() {
            m.prefill_tiled(tile).x_in_texture()
        } else {
            m.prefill_tiled(tile)
        });
        if cpu_kernels {
            return self.push_matmul_cpu_adapter(m, named, prefill, x_tex, fused);
        }
        let decode = self.weight_reader(m.decode_tuned(big));
        self.push_op(&decode, &prefill, &named)
    }

    /// Attention over one layer's K/V cache (textures on CPU adapters: cpu_adapter.rs).
    fn push_attention(&mut self, kv: &KvCache) -> Result<()> {
        let c = &self.config;
        let (hd, nh, nkv, ctx_len) = (c.head_dim, c.n_heads, c.n_kv_heads, self.opts.ctx_len);
        let buf = self.buf.clone();
        let [kc, vc] = kv.bindings();
        let named: Named = vec![
            ("step", res(&buf.step)),
            ("Q", res(&buf.q)),
            ("KC", kc),
            ("VC", vc),
            ("S", res(&buf.scores)),
            ("O", res(&buf.att)),
        ];
        if kv.in_textures() {
            return self.push_attention_textures(&named);
        }
        let at = specs::attention(hd, nh, nkv, ctx_len);
        let atp = specs::attention_prefill(hd, nh, nkv, ctx_len);
        self.push_op(&at, &atp, &named)?;
        // Several sequences' tokens: the decode kernel, a workgroup row per token (the batch
        // kernel assumes one sequence).
        let each = self.variant(&at)?;
        self.set_seqs_variant(each);
        Ok(())
    }

    /// The last op serves every several-sequence step with `v` (one workgroup row per token).
    pub(super) fn set_seqs_variant(&mut self, v: super::plan::Variant) {
        let g = self.slots.group;
        if g >= 2 {
            if let Some(op) = self.ops.last_mut() {
                op.seqs = vec![v; g + 1];
            }
        }
    }

    /// The whole schedule: weights uploaded (weights.rs), then the embedding, every layer's
    /// ops, the LM head and the sampling ops.
    pub(super) fn build_schedule(&mut self, model: &Model, rows: &MemoryRows) -> Result<()> {
        // The K/V caches first, checked at once: a context too long for the adapter fails
        // here as an error, before the weights' host-side buffers need memory (on a CPU
        // adapter under a memory cap, a failed host allocation there would abort instead).
        let kvs: Vec<KvCache> = (0..self.config.n_layers).map(|_| self.kv_cache()).collect();
        self.ctx.take_error()?;
        let w = GpuWeights::upload(&self.ctx, model, self.opts.ctx_len)?;
        self.push_embed(&w.embd)?;
        if let Some(m) = &model.memory {
            let store = rows.tide_for(m)?.clone();
            self.setup_memory(m, store)?;
        }
        if let Some(e) = &model.engram {
            let stores = (0..e.layers.len())
                .map(|ei| rows.engram_for(e, ei).map(<[_]>::to_vec))
                .collect::<Result<_>>()?;
            self.setup_engram(e, stores)?;
        }
        let scratch = self.layer_scratch(model, w.lime);
        let mut keep = Vec::new();
        for ((li, lw), kv) in w.layers.iter().enumerate().zip(kvs) {
            // Engram adds to h before the attention reads it.
            self.push_engram(li, &mut keep)?;
            self.push_layer(li, lw, kv, &w.rope, &scratch, &mut keep)?;
        }
        self.push_head(&w)?;
        self.build_sampling()?;
        keep.extend(scratch.qkv_raw);
        keep.extend(scratch.lime_hist);
        self._keep.extend(keep);
        self.weight_bytes = w.bytes();
        self.split_tensors = w.split_tensors();
        self.weights = Some(w);
        Ok(())
    }

    /// Embedding lookup, one op per chunk of the table.
    fn push_embed(&mut self, embd: &GpuTensor) -> Result<()> {
        let (buf, dim) = (self.buf.clone(), self.config.dim);
        for ch in &embd.chunks {
            let s = self.weight_reader(specs::embed(embd.dtype, dim, ch.row0, ch.rows));
            let named: Named = vec![
                ("step", res(&buf.step)),
                ("W", ch.storage.resource()),
                ("IDS", res(&buf.ids)),
                ("H", res(&buf.h)),
            ];
            self.push_op(&s, &s, &named)?;
        }
        Ok(())
    }

    /// The buffers and textures every layer's ops share.
    fn layer_scratch(&self, model: &Model, lime: bool) -> Scratch {
        let c = &self.config;
        let (qd, kvd, mb) = (c.q_dim(), c.kv_dim(), self.opts.max_batch);
        let none = wgpu::BufferUsages::empty();
        let raw = lime || model.layers.iter().any(|l| l.qk_norm.is_some());
        Scratch {
            h_tex: self.row_texture("h-tex", c.dim, mb),
            att_tex: self.row_texture("att-tex", qd, mb),
            act_tex: self.row_texture("act-tex", c.ffn_dim, mb),
            qkv_raw: raw
                .then(|| super::storage(&self.ctx, "qkv-raw", mb * (qd + 2 * kvd) * 4, none)),
            lime_hist: lime.then(|| {
                super::storage(&self.ctx, "lime-hist", c.n_layers * mb * 2 * kvd * 4, none)
            }),
        }
    }

    /// One layer: QKV (+ RoPE and the cache write), attention, output projection, the FFN
    /// with TIDE's router and memory term where the model has them.
    fn push_layer(
        &mut self,
        li: usize,
        lw: &LayerWeights,
        kv: KvCache,
        rope: &wgpu::Buffer,
        scratch: &Scratch,
        keep: &mut Vec<wgpu::Buffer>,
    ) -> Result<()> {
        self.kv_in_textures = kv.in_textures();
        self.push_qkv(li, lw, rope, scratch, &kv)?;
        self.push_attention(&kv)?;
        let buf = self.buf.clone();
        self.push_matmul(
            matmul_of(&lw.wo, Epilogue::Residual, None),
            vec![
                ("step", res(&buf.step)),
                ("W", single(&lw.wo)?),
                ("X", res(&buf.att)),
                ("Y", res(&buf.h)),
            ],
            scratch.att_tex.as_ref(),
            false,
        )?;
        self.push_ffn(li, lw, scratch)?;
        if let KvCache::Buffers(kc, vc) = kv {
            keep.extend([kc, vc]);
        }
        Ok(())
    }

    /// RMSNorm + QKV (+ biases) + RoPE + K/V append in one kernel; with q/k norms or LIMe,
    /// raw QKV, then the per-head norm or LIMe's mix, then RoPE and the cache write.
    fn push_qkv(
        &mut self,
        li: usize,
        lw: &LayerWeights,
        rope: &wgpu::Buffer,
        scratch: &Scratch,
        kv: &KvCache,
    ) -> Result<()> {
        let c = self.config.clone();
        let buf = self.buf.clone();
        let [kc, vc] = kv.bindings();
        let rope_half = c.rope_layout == RopeLayout::RotateHalf;
        // This layer's raw heads need a second kernel (q/k norms, LIMe's mix).
        let needs_raw = lw.qk_norm.is_some() || lw.lime_mix.is_some();
        let raw = scratch.qkv_raw.as_ref().filter(|_| needs_raw);
        let epi = Epilogue::Qkv {
            qd: c.q_dim(),
            kvd: c.kv_dim(),
            head_dim: c.head_dim,
            rope_half,
            kv_tex: kv.in_textures(),
            bias: lw.qkv_bias.is_some(),
            raw: raw.is_some(),
        };
        let mut named: Named = vec![
            ("step", res(&buf.step)),
            ("W", single(&lw.qkv)?),
            ("X", res(&buf.h)),
            ("G", res(&lw.attn_norm)),
        ];
        match raw {
            Some(raw) => named.push(("Y", res(raw))),
            None => named.extend([
                ("Y", res(&buf.q)),
                ("KC", kc.clone()),
                ("VC", vc.clone()),
                ("ROPE", res(rope)),
            ]),
        }
        if let Some(b) = &lw.qkv_bias {
            named.push(("QB", res(b)));
        }
        let m = matmul_of(&lw.qkv, epi, Some(c.eps));
        self.push_matmul(m, named, scratch.h_tex.as_ref(), false)?;
        let Some(raw) = raw else {
            return Ok(());
        };
        // The kernels that write q and the cache from the raw heads bind these.
        let finish: Named = vec![
            ("step", res(&buf.step)),
            ("RAW", res(raw)),
            ("Q", res(&buf.q)),
            ("KC", kc.clone()),
            ("VC", vc.clone()),
            ("ROPE", res(rope)),
        ];
        if let Some([qn, kn]) = &lw.qk_norm {
            let (hd, nh, nkv) = (c.head_dim, c.n_heads, c.n_kv_heads);
            let hn = specs::head_norm(hd, nh, nkv, c.eps, rope_half, kv.in_textures());
            let mut named = finish.clone();
            named.extend([("QN", res(qn)), ("KN", res(kn))]);
            self.push_op(&hn, &hn, &named)?;
        }
        if let (Some(hist), Some(mix)) = (&scratch.lime_hist, &lw.lime_mix) {
            let r = c.n_kv_heads;
            let lm = specs::lime_mix(c.head_dim, c.n_heads, r, li, self.opts.max_batch);
            let named: Named = vec![
                ("step", res(&buf.step)),
                ("RAW", res(raw)),
                ("HIST", res(hist)),
                ("MIX", res(mix)),
            ];
            self.push_op(&lm, &lm, &named)?;
            let rc = specs::rope_cache(c.head_dim, c.n_heads, r, rope_half, kv.in_textures());
            self.push_op(&rc, &rc, &finish)?;
        }
        Ok(())
    }

    /// TIDE's router (on its own, or riding in gate/up), RMSNorm + gate/up + SwiGLU, then the
    /// down projection with the residual (and the memory term).
    fn push_ffn(&mut self, li: usize, lw: &LayerWeights, scratch: &Scratch) -> Result<()> {
        let buf = self.buf.clone();
        // The router reads h~ like gate/up: it can run first, or ride inside gate/up.
        let routed = self.push_router(li, &lw.ffn_norm)?;
        let fused = routed.as_ref().and_then(|r| r.fused.as_ref());
        let mut gu_named: Named = vec![
            ("step", res(&buf.step)),
            ("W", single(&lw.gate_up)?),
            ("X", res(&buf.h)),
            ("G", res(&lw.ffn_norm)),
            ("Y", res(&buf.act)),
        ];
        if let Some((wr, logits)) = fused {
            gu_named.extend([
                ("WR", wgpu::BindingResource::TextureView(wr)),
                ("RL", res(logits)),
            ]);
        }
        let swiglu = Epilogue::SwiGlu {
            ffn: self.config.ffn_dim,
        };
        let m = matmul_of(&lw.gate_up, swiglu, Some(self.config.eps));
        self.push_matmul(m, gu_named, scratch.h_tex.as_ref(), fused.is_some())?;
        let mut down_named: Named = vec![
            ("step", res(&buf.step)),
            ("W", single(&lw.down)?),
            ("X", res(&buf.act)),
            ("Y", res(&buf.h)),
        ];
        let epi = match &routed {
            Some(r) => {
                down_named.extend([("MEM", res(&r.rows)), ("ALPHA", res(&r.alpha))]);
                if let Some((_, logits)) = fused {
                    down_named.push(("LOGITS", res(logits)));
                }
                Epilogue::ResidualMemory { k: r.k }
            }
            None => Epilogue::Residual,
        };
        let m = matmul_of(&lw.down, epi, None);
        self.push_matmul(m, down_named, scratch.act_tex.as_ref(), fused.is_some())
    }

    /// Final norm + LM head on the last token of the batch, one op per chunk of the head.
    fn push_head(&mut self, w: &GpuWeights) -> Result<()> {
        let buf = self.buf.clone();
        let head = w.lm_head();
        let first_head_op = self.ops.len();
        for ch in &head.chunks {
            let m = Matmul {
                epi: Epilogue::Store,
                norm: Some(self.config.eps),
                dtype: head.dtype,
                cols: head.cols,
                rows: ch.rows,
                row0: ch.row0,
            };
            let named: Named = vec![
                ("step", res(&buf.step)),
                ("W", ch.storage.resource()),
                ("X", res(&buf.h)),
                ("G", res(&w.out_norm)),
                ("Y", res(&buf.logits)),
            ];
            self.push_matmul(m, named, None, false)?;
        }
        // Several sequences' steps run their own head over every token (seqs.rs).
        for op in &mut self.ops[first_head_op..] {
            op.last_only = true;
        }
        Ok(())
    }
}

/// Buffers and textures the layers' ops share.
struct Scratch {
    /// Texture mirrors of the batch activations that feed matmuls (CPU adapters).
    h_tex: Option<wgpu::Texture>,
    att_tex: Option<wgpu::Texture>,
    act_tex: Option<wgpu::Texture>,
    /// Qwen3 and LIMe: raw q | k | v of a batch, before the per-head norm
    /// (`specs::head_norm`) or LIMe's mix (`specs::lime_mix`).
    qkv_raw: Option<wgpu::Buffer>,
    /// LIMe: every layer's raw k | v of the batch's tokens [layers, batch, 2, KVD].
    lime_hist: Option<wgpu::Buffer>,
}

/// The matmul of weight `w` with epilogue `epi` (and RMSNorm with eps `norm`).
fn matmul_of(w: &GpuTensor, epi: Epilogue, norm: Option<f32>) -> Matmul {
    Matmul {
        epi,
        norm,
        dtype: w.dtype,
        cols: w.cols,
        rows: w.rows,
        row0: 0,
    }
}

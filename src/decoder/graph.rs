//! The per-layer graph, built once from the model: embedding, then per layer the fused
//! QKV, RoPE and cache append, attention, output projection with residual, (TIDE router,)
//! gate/up with SwiGLU, and the down projection with residual (and memory term); the final
//! norm and LM head last. Weights are uploaded here. Which kernel family and bindings each op gets on CPU
//! adapters is cpu_adapter.rs's business; TIDE's extra ops are tide.rs's.
use super::cpu_adapter::KvCache;
use super::plan::Named;
use super::specs::{self, Epilogue, Matmul, Spec};
use super::{f32_buffer, res, GpuDecoder};
use crate::error::{Error, Result};
use crate::gpu::GpuTensor;
use crate::model::{Model, RopeLayout, Weight};

/// Upload row-concatenated parts; if their types differ, as f32.
fn upload_fused(ctx: &crate::gpu::GpuContext, name: &str, parts: &[&Weight]) -> Result<GpuTensor> {
    if parts.iter().all(|p| p.dtype() == parts[0].dtype()) {
        return GpuTensor::upload(ctx, name, parts);
    }
    let owned: Vec<Weight> = parts.iter().map(|p| p.to_f32_weight()).collect();
    let refs: Vec<&Weight> = owned.iter().collect();
    GpuTensor::upload(ctx, name, &refs)
}

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
        let g = self.seq_group;
        if g >= 2 {
            if let Some(op) = self.ops.last_mut() {
                op.seqs = vec![v; g + 1];
            }
        }
    }

    pub(super) fn build_schedule(&mut self, model: &Model) -> Result<()> {
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
                &vec![
                    ("step", res(&buf.step)),
                    ("W", ch.storage.resource()),
                    ("IDS", res(&buf.ids)),
                    ("H", res(&buf.h)),
                ],
            )?;
        }
        if let Some(m) = &model.memory {
            self.setup_memory(m)?;
        }
        if let Some(e) = &model.engram {
            self.setup_engram(e)?;
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
        // Qwen3 and LIMe: raw q | k | v of a batch, before the per-head norm
        // (`specs::head_norm`) or LIMe's mix (`specs::lime_mix`).
        let lime = model.layers.iter().any(|l| l.lime_mix.is_some());
        let qkv_raw = model
            .layers
            .iter()
            .any(|l| l.qk_norm.is_some() || lime)
            .then(|| {
                super::storage(
                    &self.ctx,
                    "qkv-raw",
                    mb * (qd + 2 * kvd) * 4,
                    wgpu::BufferUsages::empty(),
                )
            });
        // LIMe: every layer's raw k | v of the batch's tokens [layers, batch, 2, KVD].
        let lime_hist = lime.then(|| {
            super::storage(
                &self.ctx,
                "lime-hist",
                c.n_layers * mb * 2 * kvd * 4,
                wgpu::BufferUsages::empty(),
            )
        });
        for (li, l) in model.layers.iter().enumerate() {
            // Engram adds to h before the attention reads it.
            self.push_engram(li, &mut keep)?;
            let attn_norm = f32_buffer(&self.ctx, "attn_norm", &l.attn_norm.to_f32());
            let ffn_norm = f32_buffer(&self.ctx, "ffn_norm", &l.ffn_norm.to_f32());
            let kv = self.kv_cache();
            self.kv_in_textures = kv.in_textures();
            let [kc, vc] = kv.bindings();
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
            let rope_half = c.rope_layout == RopeLayout::RotateHalf;
            let qkv_epi = Epilogue::Qkv {
                qd,
                kvd,
                head_dim: c.head_dim,
                rope_half,
                kv_tex: kv.in_textures(),
                bias: l.qkv_bias.is_some(),
                raw: l.qk_norm.is_some() || lime,
            };
            let bias = l.qkv_bias.as_ref().map(|b| {
                let v: Vec<f32> = b.iter().flat_map(|w| w.to_f32()).collect();
                f32_buffer(&self.ctx, "qkv_bias", &v)
            });
            let qk_norm = l.qk_norm.as_ref().map(|[q, k]| {
                [
                    f32_buffer(&self.ctx, "q_norm", &q.to_f32()),
                    f32_buffer(&self.ctx, "k_norm", &k.to_f32()),
                ]
            });
            let mut qkv_named: Named = vec![
                ("step", res(&buf.step)),
                ("W", single(&qkv)?),
                ("X", res(&buf.h)),
                ("G", res(&attn_norm)),
            ];
            match &qkv_raw {
                Some(raw) if qk_norm.is_some() || lime => qkv_named.push(("Y", res(raw))),
                _ => qkv_named.extend([
                    ("Y", res(&buf.q)),
                    ("KC", kc.clone()),
                    ("VC", vc.clone()),
                    ("ROPE", res(&rope)),
                ]),
            }
            if let Some(b) = &bias {
                qkv_named.push(("QB", res(b)));
            }
            self.push_matmul(mm(&qkv, qkv_epi, eps), qkv_named, h_tex.as_ref(), false)?;
            if let (Some([qn, kn]), Some(raw)) = (&qk_norm, &qkv_raw) {
                let hn = specs::head_norm(
                    c.head_dim,
                    c.n_heads,
                    c.n_kv_heads,
                    c.eps,
                    rope_half,
                    kv.in_textures(),
                );
                self.push_op(
                    &hn,
                    &hn,
                    &vec![
                        ("step", res(&buf.step)),
                        ("RAW", res(raw)),
                        ("QN", res(qn)),
                        ("KN", res(kn)),
                        ("Q", res(&buf.q)),
                        ("KC", kc.clone()),
                        ("VC", vc.clone()),
                        ("ROPE", res(&rope)),
                    ],
                )?;
            }
            if let (Some(hist), Some(raw)) = (&lime_hist, &qkv_raw) {
                // Layer 0 mixes nothing: the identity keeps its raw heads (and stores them).
                let r = c.n_kv_heads;
                let mix = match &l.lime_mix {
                    Some(w) => w.to_f32(),
                    None => (0..r * r)
                        .map(|i| f32::from(u8::from(i / r == i % r)))
                        .collect(),
                };
                let mix = f32_buffer(&self.ctx, "lime-mix", &mix);
                let lm = specs::lime_mix(c.head_dim, c.n_heads, r, li, mb);
                let named: Named = vec![
                    ("step", res(&buf.step)),
                    ("RAW", res(raw)),
                    ("HIST", res(hist)),
                    ("MIX", res(&mix)),
                ];
                self.push_op(&lm, &lm, &named)?;
                let rc = specs::rope_cache(c.head_dim, c.n_heads, r, rope_half, kv.in_textures());
                self.push_op(
                    &rc,
                    &rc,
                    &vec![
                        ("step", res(&buf.step)),
                        ("RAW", res(raw)),
                        ("Q", res(&buf.q)),
                        ("KC", kc),
                        ("VC", vc),
                        ("ROPE", res(&rope)),
                    ],
                )?;
                keep.push(mix);
            }
            keep.extend(bias);
            keep.extend(qk_norm.into_iter().flatten());
            self.push_attention(&kv)?;
            self.push_matmul(
                mm(&wo, Epilogue::Residual, None),
                vec![
                    ("step", res(&buf.step)),
                    ("W", single(&wo)?),
                    ("X", res(&buf.att)),
                    ("Y", res(&buf.h)),
                ],
                att_tex.as_ref(),
                false,
            )?;
            // The router reads h~ like gate/up: it can run first, or ride inside gate/up.
            let routed = self.push_router(li, &ffn_norm)?;
            let fused = routed.as_ref().and_then(|r| r.fused.as_ref());
            let mut gu_named: Named = vec![
                ("step", res(&buf.step)),
                ("W", single(&gu)?),
                ("X", res(&buf.h)),
                ("G", res(&ffn_norm)),
                ("Y", res(&buf.act)),
            ];
            if let Some((wr, logits)) = fused {
                gu_named.extend([
                    ("WR", wgpu::BindingResource::TextureView(wr)),
                    ("RL", res(logits)),
                ]);
            }
            self.push_matmul(
                mm(&gu, Epilogue::SwiGlu { ffn: f }, eps),
                gu_named,
                h_tex.as_ref(),
                fused.is_some(),
            )?;
            let mut down_named: Named = vec![
                ("step", res(&buf.step)),
                ("W", single(&down)?),
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
            self.push_matmul(
                mm(&down, epi, None),
                down_named,
                act_tex.as_ref(),
                fused.is_some(),
            )?;
            weight_bytes += qkv.bytes() + wo.bytes() + gu.bytes() + down.bytes();
            keep.extend([attn_norm, ffn_norm]);
            if let KvCache::Buffers(kc, vc) = kv {
                keep.extend([kc, vc]);
            }
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
        let first_head_op = self.ops.len();
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
                vec![
                    ("step", res(&buf.step)),
                    ("W", ch.storage.resource()),
                    ("X", res(&buf.h)),
                    ("G", res(&out_norm)),
                    ("Y", res(&buf.logits)),
                ],
                None,
                false,
            )?;
        }
        // Several sequences' steps run their own head over every token (seqs.rs).
        for op in &mut self.ops[first_head_op..] {
            op.last_only = true;
        }
        keep.extend(qkv_raw);
        keep.extend(lime_hist);
        self.build_sampling()?;
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

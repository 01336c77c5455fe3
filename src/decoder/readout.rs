//! Getting results out: the readback (async: it awaits map_async, so the browser never blocks;
//! native callers use the blocking wrappers), greedy / top-k selection with the repetition
//! penalty on the GPU, the full logits, every position's logits (perplexity), and per-kernel
//! profiling.
use std::collections::HashMap;

use super::cpu_adapter::first_bytes;
use super::plan::{Kind, Named, Op};
use super::specs::{self, Epilogue, Matmul};
use super::{res, storage, GpuDecoder};
use crate::error::{Error, Result};
use crate::gpu::Storage;

/// Most candidates the GPU top-k returns.
pub const MAX_TOP_K: usize = 64;
/// Most recent ids the GPU repetition penalty takes.
pub(super) const MAX_PEN: usize = 256;

/// An LM head over every token of a step (a batch's positions for perplexity, or several
/// sequences' tokens): its ops and their output [tokens, vocab].
pub(super) struct TokenHead {
    pub ops: Vec<Op>,
    pub logits: wgpu::Buffer,
    pub readback: wgpu::Buffer,
}

/// The readout's ops beyond the schedule: each built once, the top-k ones per K on first use.
#[derive(Default)]
pub(super) struct Heads {
    /// Top-k kernels by K, with their bind groups (the penalty op is shared).
    pub topk: HashMap<usize, (usize, wgpu::BindGroup)>,
    pub penalize: Option<(usize, wgpu::BindGroup)>,
    /// The LM head over every position of a batch (`tide eval`), built on first use.
    pub all_logits: Option<TokenHead>,
    /// The LM head over several sequences' tokens of one step (seqs.rs).
    pub seq_head: Option<TokenHead>,
    /// The output norm's weights on the host, and a readback buffer of a batch's residual
    /// (`feed_hidden_async`): read back and made at the first embedding.
    pub hidden: Option<(Vec<f32>, wgpu::Buffer)>,
}

impl GpuDecoder {
    /// The repetition-penalty op (top-k ops are built on first use, per K).
    pub(super) fn build_sampling(&mut self) -> Result<()> {
        let ps = specs::penalize(self.config.vocab, MAX_PEN);
        let pk = self.variant(&ps)?;
        let buf = self.buf.clone();
        let pbind = self.bind(
            pk.kernel,
            &vec![
                ("step", res(&buf.step)),
                ("L", res(&buf.logits)),
                ("PEN", res(&buf.pen)),
            ],
        )?;
        self.heads.penalize = Some((pk.kernel, pbind));
        Ok(())
    }

    /// Submit `enc`, then read the first `bytes` of `buf` (a MAP_READ buffer `enc` copied
    /// into). Errors raised meanwhile (validation, out of memory) come back as errors.
    pub(super) async fn read_buffer(
        &self,
        enc: wgpu::CommandEncoder,
        buf: &wgpu::Buffer,
        bytes: usize,
    ) -> Result<Vec<u8>> {
        let dev = &self.ctx.device;
        let scope = dev.push_error_scope(wgpu::ErrorFilter::Validation);
        let oom = dev.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        self.ctx.queue.submit([enc.finish()]);
        let slice = buf.slice(..bytes as u64);
        let (tx, rx) = futures_channel::oneshot::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        let drove = self.ctx.drive();
        let oom = oom.pop().await;
        let invalid = scope.pop().await;
        let mapped = match drove {
            // The map cannot complete if the device stopped making progress.
            Ok(()) => rx.await.ok(),
            Err(_) => None,
        };
        // Read and unmap on every path where the map went through, so the buffer stays usable.
        let data = match &mapped {
            Some(Ok(())) => {
                let v = slice.get_mapped_range().map(|r| r.to_vec());
                buf.unmap();
                Some(v)
            }
            _ => None,
        };
        drove?;
        if let Some(e) = oom {
            return Err(Error::Gpu(format!("out of memory: {e}")));
        }
        if let Some(e) = invalid {
            return Err(Error::Gpu(format!("{e}")));
        }
        match (mapped, data) {
            (Some(Ok(())), Some(Ok(v))) => Ok(v),
            (Some(Ok(())), Some(Err(e))) => Err(Error::Gpu(format!("readback failed: {e}"))),
            (Some(Err(e)), _) => Err(Error::Gpu(format!("readback failed: {e}"))),
            _ => Err(Error::Gpu("readback never completed".into())),
        }
    }

    /// `read_buffer` on the shared readback buffer.
    pub(super) async fn read_back(
        &self,
        enc: wgpu::CommandEncoder,
        bytes: usize,
    ) -> Result<Vec<u8>> {
        self.read_buffer(enc, &self.buf.readback, bytes).await
    }

    /// The full logits of the last token fed (tests, full-distribution sampling).
    pub async fn logits_async(&mut self) -> Result<Vec<f32>> {
        let mut enc = self.take_encoder()?;
        let n = self.config.vocab * 4;
        enc.copy_buffer_to_buffer(&self.buf.logits, 0, &self.buf.readback, 0, n as u64);
        let bytes = self.read_back(enc, n).await?;
        // Keep the logits addressable for a following top_k on the same step.
        self.pending = Some(self.ctx.device.create_command_encoder(&Default::default()));
        Ok(bytemuck::cast_slice(&bytes).to_vec())
    }

    /// The k best (id, logit) of the last token fed, best first, after the repetition penalty
    /// over `recent` (distinct ids). k = 1 is greedy. One submission, k * 8 bytes read back.
    pub async fn top_k_async(
        &mut self,
        k: usize,
        penalty: f32,
        recent: &[u32],
    ) -> Result<Vec<(u32, f32)>> {
        if k == 0 || k > MAX_TOP_K {
            return Err(Error::Input(format!(
                "top-k on the GPU takes 1..={MAX_TOP_K} candidates, got {k}"
            )));
        }
        let mut enc = self.take_encoder()?;
        if !self.heads.topk.contains_key(&k) {
            let v = self.variant(&specs::top_k(k, self.config.vocab))?;
            let buf = self.buf.clone();
            let bind = self.bind(
                v.kernel,
                &vec![
                    ("step", res(&buf.step)),
                    ("L", res(&buf.logits)),
                    ("PEN", res(&buf.pen)),
                    ("SV", res(&buf.sv)),
                    ("SI", res(&buf.si)),
                    ("OUT", res(&buf.out)),
                ],
            )?;
            // Compiled before it is recorded, so a failed compile is retried, not dispatched.
            self.pipes.compile_pending(&self.ctx)?;
            self.heads.topk.insert(k, (v.kernel, bind));
        }
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
                let (pk, pb) = self.heads.penalize.as_ref().unwrap();
                pass.set_pipeline(self.pipeline(*pk));
                pass.set_bind_group(0, pb, &[]);
                pass.dispatch_workgroups((n_pen as u32).div_ceil(64), 1, 1);
            }
            let (kernel, bind) = &self.heads.topk[&k];
            pass.set_pipeline(self.pipeline(*kernel));
            pass.set_bind_group(0, bind, &[]);
            pass.dispatch_workgroups(1, 1, 1);
        }
        enc.copy_buffer_to_buffer(&self.buf.out, 0, &self.buf.readback, 0, (k * 8) as u64);
        let bytes = self.read_back(enc, k * 8).await?;
        // The logits stay addressable (a grammar may allow none of the k: it reads them all).
        // With a penalty they hold the penalised values.
        self.pending = Some(self.ctx.device.create_command_encoder(&Default::default()));
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

    /// Run `tokens` and return every position's logits, [n, vocab] (perplexity).
    pub async fn feed_all_async(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        if self.heads.all_logits.is_none() {
            self.build_all_logits()?;
        }
        let v = self.config.vocab;
        let mut out = Vec::with_capacity(tokens.len() * v);
        for chunk in tokens.chunks(self.opts.max_batch) {
            self.feed_in(chunk, self.opts.max_batch)?;
            let mut enc = self.take_encoder()?;
            let n = chunk.len();
            let al = self.heads.all_logits.as_ref().unwrap();
            self.encode_ops(&mut enc, &al.ops, Kind::of(n as u32));
            let bytes = n * v * 4;
            enc.copy_buffer_to_buffer(&al.logits, 0, &al.readback, 0, bytes as u64);
            let got = self.read_buffer(enc, &al.readback, bytes).await?;
            out.extend_from_slice(bytemuck::cast_slice(&got));
            self.pending = Some(self.ctx.device.create_command_encoder(&Default::default()));
        }
        Ok(out)
    }

    /// Run `tokens` from the current position and return each one's last hidden state after
    /// the output norm, [n, dim] (what the LM head reads: embeddings). The residual of each
    /// batch is read back and normalised here, with the output norm's weights read back once.
    pub async fn feed_hidden_async(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        let d = self.config.dim;
        if self.heads.hidden.is_none() {
            let w = self.weights.as_ref().expect("schedule built");
            let rb = self.map_read_buffer("output-norm-readback", d * 4);
            let mut enc = self.ctx.device.create_command_encoder(&Default::default());
            enc.copy_buffer_to_buffer(&w.out_norm, 0, &rb, 0, (d * 4) as u64);
            self.flush();
            let got = self.read_buffer(enc, &rb, d * 4).await?;
            let gamma = bytemuck::cast_slice::<u8, f32>(&got).to_vec();
            let rb = self.map_read_buffer("hidden-readback", self.opts.max_batch * d * 4);
            self.heads.hidden = Some((gamma, rb));
        }
        let (gamma, rb) = self.heads.hidden.clone().expect("made above");
        let mut out = Vec::with_capacity(tokens.len() * d);
        for chunk in tokens.chunks(self.opts.max_batch) {
            self.feed_in(chunk, self.opts.max_batch)?;
            let mut enc = self.take_encoder()?;
            let bytes = chunk.len() * d * 4;
            enc.copy_buffer_to_buffer(&self.buf.h, 0, &rb, 0, bytes as u64);
            let got = self.read_buffer(enc, &rb, bytes).await?;
            for h in bytemuck::cast_slice::<u8, f32>(&got).chunks_exact(d) {
                let ms = h.iter().map(|x| x * x).sum::<f32>() / d as f32;
                let r = 1.0 / (ms + self.config.eps).sqrt();
                out.extend(h.iter().zip(&gamma).map(|(x, g)| x * r * g));
            }
            self.pending = Some(self.ctx.device.create_command_encoder(&Default::default()));
        }
        Ok(out)
    }

    fn map_read_buffer(&self, label: &str, bytes: usize) -> wgpu::Buffer {
        self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(16) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    fn build_all_logits(&mut self) -> Result<()> {
        let head = self.build_token_head(self.opts.max_batch, "logits-all", false)?;
        self.heads.all_logits = Some(head);
        Ok(())
    }

    /// An LM head over up to `tokens` tokens: one op per chunk of the head (the batch
    /// matmul), and with `seqs` the several-sequence forms too (on CPU adapters matvec_rows'
    /// `tokens` form per token count, x of `seq_group` tokens as one uniform).
    pub(super) fn build_token_head(
        &mut self,
        tokens: usize,
        label: &str,
        seqs: bool,
    ) -> Result<TokenHead> {
        let w = self.weights.as_ref().expect("schedule built");
        let out_norm = w.out_norm.clone();
        let v = self.config.vocab;
        let bytes = tokens * v * 4;
        let max_bind = self.ctx.limits.max_storage_buffer_binding_size as usize;
        if bytes > max_bind {
            return Err(Error::Gpu(format!(
                "the logits of {tokens} tokens x {v} need {bytes} bytes, over one binding"
            )));
        }
        let logits = storage(&self.ctx, label, bytes, wgpu::BufferUsages::empty());
        let readback = self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(&format!("{label}-readback")),
            size: bytes as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let chunks: Vec<(Storage, Matmul)> = {
            let head = w.lm_head();
            head.chunks
                .iter()
                .map(|ch| {
                    let m = Matmul {
                        epi: Epilogue::StoreAll { stride: v },
                        norm: Some(self.config.eps),
                        dtype: head.dtype,
                        cols: head.cols,
                        rows: ch.rows,
                        row0: ch.row0,
                    };
                    (ch.storage.clone(), m)
                })
                .collect()
        };
        let n_ops = self.ops.len();
        let pushed = self.push_token_head_ops(chunks, &out_norm, &logits, seqs);
        // On failure, no half-built op may stay in the step's schedule.
        let ops = self.ops.split_off(n_ops);
        pushed?;
        self.pipes.compile_pending(&self.ctx)?;
        Ok(TokenHead {
            ops,
            logits,
            readback,
        })
    }

    /// The ops of `build_token_head`, appended to `self.ops`.
    fn push_token_head_ops(
        &mut self,
        chunks: Vec<(Storage, Matmul)>,
        out_norm: &wgpu::Buffer,
        logits: &wgpu::Buffer,
        seqs: bool,
    ) -> Result<()> {
        let g = self.slots.group;
        let x_bytes = |m: &Matmul| (m.cols * 4) as u64;
        let uniform_x = seqs
            && self.few_big_workgroups()
            && x_bytes(&chunks[0].1) * g as u64 <= self.ctx.limits.max_uniform_buffer_binding_size;
        for (buffer, m) in chunks {
            let batch = self.weight_reader(m.prefill_tiled(self.opts.prefill_tile));
            let (step, h) = (self.buf.step.clone(), self.buf.h.clone());
            let named: Named = vec![
                ("step", res(&step)),
                ("W", buffer.resource()),
                ("X", res(&h)),
                ("G", res(out_norm)),
                ("Y", res(logits)),
            ];
            self.push_op(&batch, &batch, &named)?;
            if !uniform_x {
                continue; // the batch matmul serves every step
            }
            let pushed = self.ops.last().expect("pushed").prefill;
            let forms = self.tokens_forms(&m, pushed)?;
            let named: Named = vec![
                ("step", res(&step)),
                ("W", buffer.resource()),
                ("X", first_bytes(&res(&h), x_bytes(&m) * g as u64)),
                ("G", first_bytes(&res(out_norm), x_bytes(&m))),
                ("Y", res(logits)),
            ];
            let bind = self.bind(forms[2].kernel, &named)?;
            let op = self.ops.last_mut().expect("pushed");
            op.seqs = forms;
            op.bind_seqs = Some(bind);
        }
        Ok(())
    }

    /// Run the ops of one batch, each in its own pass between GPU timestamps (adapter time,
    /// not wall time: submission latency is left out). For `tide bench --profile`.
    #[cfg(not(target_arch = "wasm32"))]
    pub(super) fn profile_chunk(&mut self, n: u32) -> Result<()> {
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
                c.encode(&mut enc, Kind::of(n));
            }
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &qs,
                    beginning_of_pass_write_index: Some(2 * i as u32),
                    end_of_pass_write_index: Some(2 * i as u32 + 1),
                }),
            });
            self.encode_op(&mut pass, op, Kind::of(n));
        }
        enc.resolve_query_set(&qs, 0..count, &resolve, 0);
        enc.copy_buffer_to_buffer(&resolve, 0, &read, 0, size);
        let bytes = pollster::block_on(self.read_buffer(enc, &read, size as usize))?;
        let ticks: &[u64] = bytemuck::cast_slice(&bytes);
        let period = self.ctx.queue.get_timestamp_period() as f64 * 1e-9;
        for (i, op) in self
            .ops
            .iter()
            .enumerate()
            .filter(|(_, op)| op.runs(Kind::of(n)))
        {
            let k = op.variant(Kind::of(n)).kernel;
            let dt = ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * period;
            let e = self
                .profile
                .as_mut()
                .unwrap()
                .entry(self.pipes.slot(k).label.clone())
                .or_insert((0, 0.0));
            e.0 += 1;
            e.1 += dt;
        }
        Ok(())
    }
}

/// Blocking forms of the readouts, for native callers (the engine's edge and tests).
#[cfg(not(target_arch = "wasm32"))]
impl GpuDecoder {
    /// See `logits_async`.
    pub fn logits(&mut self) -> Result<Vec<f32>> {
        pollster::block_on(self.logits_async())
    }

    /// See `top_k_async`.
    pub fn top_k(&mut self, k: usize, penalty: f32, recent: &[u32]) -> Result<Vec<(u32, f32)>> {
        pollster::block_on(self.top_k_async(k, penalty, recent))
    }

    /// See `feed_all_async`.
    pub fn feed_all(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        pollster::block_on(self.feed_all_async(tokens))
    }

    /// See `router_weights_async`.
    pub fn router_weights(&mut self) -> Result<Vec<f32>> {
        pollster::block_on(self.router_weights_async())
    }
}

/// How long each kernel takes to get ready on this adapter: its first dispatch (which on
/// lavapipe includes the LLVM compile that pipeline creation leaves for later) and a second
/// one, each submitted alone and waited for. The dispatches run on the decoder's own buffers,
/// so the decoder's state is garbage afterwards: for `tide kernels --compile-times` only.
#[cfg(not(target_arch = "wasm32"))]
impl GpuDecoder {
    pub fn first_dispatch_times(mut self) -> Result<Vec<(String, u32, f64, f64)>> {
        self.build_all_logits()?;
        let n_batch = self.opts.max_batch.min(8) as u32;
        self.cur = super::plan::Step {
            pos0: 0,
            n_tok: n_batch,
            n_pen: 0,
            penalty: 1.0,
            ..Default::default()
        };
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        let ops: Vec<&Op> = self
            .ops
            .iter()
            .chain(
                self.heads
                    .all_logits
                    .as_ref()
                    .map_or(&[][..], |a| &a.ops[..]),
            )
            .collect();
        for n in [1u32, n_batch] {
            let step = super::plan::Step {
                n_tok: n,
                ..self.cur
            };
            self.ctx
                .queue
                .write_buffer(&self.buf.step, 0, bytemuck::bytes_of(&step));
            for op in &ops {
                let k = op.variant(Kind::of(n)).kernel;
                if !op.runs(Kind::of(n)) || !seen.insert(k) {
                    continue;
                }
                let mut times = [0f64; 2];
                for t in &mut times {
                    let start = std::time::Instant::now();
                    let mut enc = self.ctx.device.create_command_encoder(&Default::default());
                    self.encode_ops(&mut enc, std::slice::from_ref(*op), Kind::of(n));
                    self.ctx.queue.submit([enc.finish()]);
                    self.ctx.wait()?;
                    *t = start.elapsed().as_secs_f64();
                }
                out.push((self.pipes.slot(k).label.clone(), n, times[0], times[1]));
            }
        }
        Ok(out)
    }
}

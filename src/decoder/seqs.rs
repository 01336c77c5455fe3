//! Continuous batching: the K/V cache holds `DecoderOptions::slots` sequences, slot after slot,
//! and one step can take the next token of several of them. Such a step runs every layer
//! once for all its tokens (each weight read once: matvec_rows' `tokens` form on CPU
//! adapters, the batch matmul elsewhere), places each token by its own position and slot
//! (Step::tok, read by the QKV epilogue and attention), and ends in an LM head over every
//! token. Prompts still go through `feed` in their own slot (`use_slot`).
use super::plan::{Kind, Named, Op, Step};
use super::specs::{Epilogue, Matmul};
use super::{res, storage, GpuDecoder};
use crate::error::{Error, Result};
use crate::gpu::Storage;

/// The LM head over every token of a several-sequence step, and its output.
pub(super) struct SeqHead {
    ops: Vec<Op>,
    logits: wgpu::Buffer,
    readback: wgpu::Buffer,
}

impl GpuDecoder {
    /// Sequences the decoder holds (`DecoderOptions::slots`).
    pub fn slots(&self) -> usize {
        self.slot_pos.len()
    }

    /// Most tokens one several-sequence step takes; more are split into steps of this many.
    pub fn seq_group(&self) -> usize {
        self.seq_group
    }

    /// The slot `feed`, `reset` and the readouts work on from now on (each keeps its position).
    pub fn use_slot(&mut self, slot: usize) -> Result<()> {
        if slot >= self.slots() {
            return Err(Error::Input(format!(
                "slot {slot} does not exist: the decoder holds {} sequence(s)",
                self.slots()
            )));
        }
        // Work already recorded belongs to the current slot: run it first.
        self.flush();
        self.slot_pos[self.slot] = self.pos;
        self.slot = slot;
        self.pos = self.slot_pos[slot];
        Ok(())
    }

    /// Position of `slot`'s sequence (tokens fed so far).
    pub fn slot_pos(&self, slot: usize) -> usize {
        if slot == self.slot {
            self.pos
        } else {
            self.slot_pos.get(slot).copied().unwrap_or(0)
        }
    }

    /// Feed `toks[i].1` as the next token of the sequence in slot `toks[i].0` (distinct slots)
    /// and return each one's logits, in order. The tokens share steps of up to `seq_group`;
    /// the current slot stays as it was.
    pub async fn step_seqs_async(&mut self, toks: &[(usize, u32)]) -> Result<Vec<Vec<f32>>> {
        self.check_seqs(toks)?;
        let back = self.slot;
        let mut out = Vec::with_capacity(toks.len());
        for group in toks.chunks(self.seq_group) {
            if let [(slot, t)] = group {
                // One token: the decode kernels.
                self.use_slot(*slot)?;
                self.feed_in(&[*t], 1)?;
                out.push(self.logits_async().await?);
                continue;
            }
            out.extend(self.step_group(group).await?);
        }
        self.use_slot(back)?;
        Ok(out)
    }

    fn check_seqs(&self, toks: &[(usize, u32)]) -> Result<()> {
        if toks.is_empty() {
            return Err(Error::Input("no tokens to process".into()));
        }
        for (i, &(slot, t)) in toks.iter().enumerate() {
            if slot >= self.slots() {
                return Err(Error::Input(format!(
                    "slot {slot} does not exist: the decoder holds {} sequence(s)",
                    self.slots()
                )));
            }
            if toks[..i].iter().any(|&(s, _)| s == slot) {
                return Err(Error::Input(format!(
                    "slot {slot} is given two tokens in one step"
                )));
            }
            if t as usize >= self.config.vocab {
                return Err(Error::Input(format!(
                    "token id {t} is out of range (vocab {})",
                    self.config.vocab
                )));
            }
            if self.slot_pos(slot) >= self.opts.ctx_len {
                return Err(Error::Input(format!(
                    "context full: slot {slot} holds all {} positions",
                    self.opts.ctx_len
                )));
            }
        }
        Ok(())
    }

    /// One step of 2..=seq_group tokens, each of its own slot.
    async fn step_group(&mut self, group: &[(usize, u32)]) -> Result<Vec<Vec<f32>>> {
        if self.seq_head.is_none() {
            self.build_seq_head()?;
        }
        self.flush();
        self.slot_pos[self.slot] = self.pos;
        let n = group.len() as u32;
        let kind = Kind::Seqs(n);
        self.compile_for(kind)?;
        self.steps.1 += 1;
        let ctx_len = self.opts.ctx_len;
        let mut step = Step {
            n_tok: n,
            penalty: 1.0,
            seqs: 1,
            ..Default::default()
        };
        for (i, &(slot, _)) in group.iter().enumerate() {
            step.tok[i] = [self.slot_pos[slot] as u32, (slot * ctx_len) as u32, 0, 0];
        }
        self.cur = step;
        let ids: Vec<u32> = group.iter().map(|&(_, t)| t).collect();
        self.ctx
            .queue
            .write_buffer(&self.buf.step, 0, bytemuck::bytes_of(&self.cur));
        self.ctx
            .queue
            .write_buffer(&self.buf.ids, 0, bytemuck::cast_slice(&ids));
        let mut enc = self.ctx.device.create_command_encoder(&Default::default());
        self.upload_memory_rows(&ids, &mut enc)?;
        self.encode_ops(&mut enc, &self.ops, kind);
        let head = self.seq_head.as_ref().expect("built above");
        self.encode_ops(&mut enc, &head.ops, kind);
        let v = self.config.vocab;
        let bytes = n as usize * v * 4;
        enc.copy_buffer_to_buffer(&head.logits, 0, &head.readback, 0, bytes as u64);
        let got = self.read_buffer(enc, &head.readback, bytes).await?;
        // Keep an encoder pending, as after any readout.
        self.pending = Some(self.ctx.device.create_command_encoder(&Default::default()));
        for &(slot, _) in group {
            self.slot_pos[slot] += 1;
        }
        self.pos = self.slot_pos[self.slot];
        let all: &[f32] = bytemuck::cast_slice(&got);
        Ok(all.chunks(v).map(|r| r.to_vec()).collect())
    }

    /// The LM head over every token of a several-sequence step: one op per chunk of the head,
    /// on CPU adapters matvec_rows' `tokens` form per token count.
    pub(super) fn build_seq_head(&mut self) -> Result<()> {
        let (hi, out_norm) = self.head.clone().expect("schedule built");
        let (v, g) = (self.config.vocab, self.seq_group);
        let bytes = g * v * 4;
        let logits = storage(&self.ctx, "logits-seqs", bytes, wgpu::BufferUsages::empty());
        let readback = self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("logits-seqs-readback"),
            size: bytes as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let chunks: Vec<(Storage, Matmul)> = {
            let head = &self._weights[hi];
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
        let pushed = self.push_seq_head_ops(chunks, &out_norm, &logits);
        // On failure, no half-built op may stay in the step's schedule.
        let ops = self.ops.split_off(n_ops);
        pushed?;
        self.compile_pending()?;
        self.seq_head = Some(SeqHead {
            ops,
            logits,
            readback,
        });
        Ok(())
    }

    fn push_seq_head_ops(
        &mut self,
        chunks: Vec<(Storage, Matmul)>,
        out_norm: &wgpu::Buffer,
        logits: &wgpu::Buffer,
    ) -> Result<()> {
        let g = self.seq_group;
        let x_bytes = |m: &Matmul| (m.cols * 4) as u64;
        let uniform_x = self.few_big_workgroups()
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
                continue; // the batch matmul serves, as for any several-sequence step
            }
            // CPU adapters: x of g tokens and gamma as uniforms, each weight read once.
            let mut seqs = vec![self.ops.last().expect("pushed").prefill; 2];
            for n in 2..=g {
                seqs.push(self.variant(&self.weight_reader(m.decode_rows_tokens(n)))?);
            }
            let named: Named = vec![
                ("step", res(&step)),
                ("W", buffer.resource()),
                ("X", sized(&h, x_bytes(&m) * g as u64)),
                ("G", sized(out_norm, x_bytes(&m))),
                ("Y", res(logits)),
            ];
            let bind = self.bind(seqs[2].kernel, &named)?;
            let op = self.ops.last_mut().expect("pushed");
            op.seqs = seqs;
            op.bind_seqs = Some(bind);
        }
        Ok(())
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl GpuDecoder {
    /// See `step_seqs_async`.
    pub fn step_seqs(&mut self, toks: &[(usize, u32)]) -> Result<Vec<Vec<f32>>> {
        pollster::block_on(self.step_seqs_async(toks))
    }
}

/// The first `bytes` of `b`, as one binding (a uniform of a few rows).
fn sized(b: &wgpu::Buffer, bytes: u64) -> wgpu::BindingResource<'_> {
    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
        buffer: b,
        offset: 0,
        size: wgpu::BufferSize::new(bytes),
    })
}

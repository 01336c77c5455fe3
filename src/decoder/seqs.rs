//! Continuous batching: the K/V cache holds `DecoderOptions::slots` sequences, slot after slot,
//! and one step can take the next tokens of several of them. Such a step runs every layer
//! once for all its tokens (each weight read once: matvec_rows' `tokens` form on CPU
//! adapters, the batch matmul elsewhere), places each token by its own position and slot
//! (Step::tok, read by the QKV epilogue and attention), and ends in an LM head over every
//! token. A prompt goes through `feed` in its own slot (`use_slot`), or a few of its tokens at a
//! time ride in the shared steps.
use super::plan::{Kind, Step};
use super::GpuDecoder;
use crate::error::{Error, Result};

impl GpuDecoder {
    /// Sequences the decoder holds (`DecoderOptions::slots`).
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Most tokens one several-sequence step takes; more are split into steps of this many.
    pub fn seq_group(&self) -> usize {
        self.slots.group
    }

    /// The slot `feed`, `reset` and the readouts work on from now on (each keeps its position).
    pub fn use_slot(&mut self, slot: usize) -> Result<()> {
        self.check_slot(slot)?;
        // Work already recorded belongs to the current slot: run it first.
        self.flush();
        self.slots.set_current(slot)
    }

    /// Position of `slot`'s sequence (tokens fed so far).
    pub fn slot_pos(&self, slot: usize) -> usize {
        self.slots.pos_of(slot)
    }

    /// Feed `toks[i].1` as the next token of the sequence in slot `toks[i].0` and return each
    /// one's logits, in order. A slot may come more than once: its tokens go in at successive
    /// positions, in the order given (a prompt's tokens riding along with other sequences'
    /// next tokens; each sees the ones before it, as their K/V are written before attention
    /// reads them). The tokens share steps of up to `seq_group`; the current slot stays as it
    /// was.
    pub async fn step_seqs_async(&mut self, toks: &[(usize, u32)]) -> Result<Vec<Vec<f32>>> {
        let out = self
            .step_seqs_some_async(toks, &vec![true; toks.len()])
            .await?;
        let missing = || Error::Gpu("a step returned no logits for a token".into());
        out.into_iter().map(|l| l.ok_or_else(missing)).collect()
    }

    /// `step_seqs_async` with logits only for the tokens `want` marks (None for the others:
    /// a prompt's tokens before its last), so that the LM head and the readback of a step
    /// cover those alone.
    pub async fn step_seqs_some_async(
        &mut self,
        toks: &[(usize, u32)],
        want: &[bool],
    ) -> Result<Vec<Option<Vec<f32>>>> {
        if want.len() != toks.len() {
            return Err(Error::Input(format!(
                "{} tokens but {} flags for which want logits",
                toks.len(),
                want.len()
            )));
        }
        let pos = self.check_seqs(toks)?;
        let back = self.slots.current();
        let mut out = Vec::with_capacity(toks.len());
        let g = self.slots.group;
        for ((group, want), pos) in toks.chunks(g).zip(want.chunks(g)).zip(pos.chunks(g)) {
            if let [(slot, t)] = group {
                // One token: the decode kernels.
                self.use_slot(*slot)?;
                self.feed_in(&[*t], 1)?;
                out.push(match want[0] {
                    true => Some(self.logits_async().await?),
                    false => None,
                });
                continue;
            }
            out.extend(self.step_group(group, want, pos).await?);
        }
        self.use_slot(back)?;
        Ok(out)
    }

    fn check_slot(&self, slot: usize) -> Result<()> {
        if slot >= self.slots() {
            return Err(Error::Input(format!(
                "slot {slot} does not exist: the decoder holds {} sequence(s)",
                self.slots()
            )));
        }
        Ok(())
    }

    /// Check a call's tokens; returns each one's position (its slot's, after the slot's tokens
    /// earlier in the list).
    fn check_seqs(&self, toks: &[(usize, u32)]) -> Result<Vec<usize>> {
        if toks.is_empty() {
            return Err(Error::Input("no tokens to process".into()));
        }
        let mut pos = Vec::with_capacity(toks.len());
        for (i, &(slot, t)) in toks.iter().enumerate() {
            self.check_slot(slot)?;
            self.check_ids(&[t])?;
            let at = self.slot_pos(slot) + toks[..i].iter().filter(|&&(s, _)| s == slot).count();
            if at >= self.opts.ctx_len {
                return Err(Error::Input(format!(
                    "context full: slot {slot} holds {} positions, and {} token(s) of it are given \
                     for {} position(s) left",
                    self.opts.ctx_len,
                    toks.iter().filter(|&&(s, _)| s == slot).count(),
                    self.opts.ctx_len.saturating_sub(self.slot_pos(slot)),
                )));
            }
            pos.push(at);
        }
        Ok(pos)
    }

    /// One step of 2..=seq_group tokens at positions `pos` (`check_seqs`'); logits for those
    /// `want` marks.
    async fn step_group(
        &mut self,
        group: &[(usize, u32)],
        want: &[bool],
        pos: &[usize],
    ) -> Result<Vec<Option<Vec<f32>>>> {
        self.flush();
        let n = group.len();
        let kind = Kind::Seqs(n as u32);
        self.compile_for(kind)?;
        self.steps.1 += 1;
        let ctx_len = self.opts.ctx_len;
        // The wanted tokens go first, so that the LM head runs over the step's first rows
        // only. The order is otherwise free: each token carries its position and slot, and
        // every K/V of the step is written before attention reads any.
        let order: Vec<usize> = (0..n)
            .filter(|&i| want[i])
            .chain((0..n).filter(|&i| !want[i]))
            .collect();
        let wanted = want.iter().filter(|&&w| w).count();
        let mut step = Step {
            n_tok: n as u32,
            penalty: 1.0,
            seqs: 1,
            ..Default::default()
        };
        for (j, &i) in order.iter().enumerate() {
            step.tok[j] = [pos[i] as u32, (group[i].0 * ctx_len) as u32, 0, 0];
        }
        self.cur = step;
        let ids: Vec<u32> = order.iter().map(|&i| group[i].1).collect();
        self.ctx
            .queue
            .write_buffer(&self.buf.step, 0, bytemuck::bytes_of(&self.cur));
        self.ctx
            .queue
            .write_buffer(&self.buf.ids, 0, bytemuck::cast_slice(&ids));
        let mut enc = self.ctx.device.create_command_encoder(&Default::default());
        self.upload_memory_rows(&ids, &mut enc)?;
        if self.engram.is_some() {
            let toks: Vec<_> = (order.iter())
                .map(|&i| (group[i].0, pos[i], group[i].1))
                .collect();
            self.upload_engram_rows(&toks)?;
        }
        self.encode_ops(&mut enc, &self.ops, kind);
        for &(slot, _) in group {
            self.slots.advance_slot(slot, 1);
        }
        let mut out = vec![None; n];
        if wanted == 0 {
            // Nothing to read: the step goes with the next submission.
            self.pending = Some(enc);
            return Ok(out);
        }
        // Built with the schedule whenever steps can hold several sequences.
        let head = self.heads.seq_head.as_ref().expect("seq_group >= 2");
        // The head's multi-token form (CPU adapters) exists from two tokens up; the batch
        // matmul (elsewhere) covers the step's tokens.
        let rows = wanted.max(2);
        let head_kind = match head.ops.iter().all(|o| o.seqs.len() > rows) {
            true => Kind::Seqs(rows as u32),
            false => kind,
        };
        self.encode_ops(&mut enc, &head.ops, head_kind);
        let v = self.config.vocab;
        let bytes = wanted * v * 4;
        enc.copy_buffer_to_buffer(&head.logits, 0, &head.readback, 0, bytes as u64);
        let got = self.read_buffer(enc, &head.readback, bytes).await?;
        // Keep an encoder pending, as after any readout.
        self.pending = Some(self.ctx.device.create_command_encoder(&Default::default()));
        let all: &[f32] = bytemuck::cast_slice(&got);
        for (&i, row) in order.iter().zip(all.chunks(v)) {
            out[i] = Some(row.to_vec());
        }
        Ok(out)
    }

    /// The LM head over every token of a several-sequence step.
    pub(super) fn build_seq_head(&mut self) -> Result<()> {
        let head = self.build_token_head(self.slots.group, "logits-seqs", true)?;
        self.heads.seq_head = Some(head);
        Ok(())
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl GpuDecoder {
    /// See `step_seqs_async`.
    pub fn step_seqs(&mut self, toks: &[(usize, u32)]) -> Result<Vec<Vec<f32>>> {
        pollster::block_on(self.step_seqs_async(toks))
    }

    /// See `step_seqs_some_async`.
    pub fn step_seqs_some(
        &mut self,
        toks: &[(usize, u32)],
        want: &[bool],
    ) -> Result<Vec<Option<Vec<f32>>>> {
        pollster::block_on(self.step_seqs_some_async(toks, want))
    }

    /// Run one step of every several-sequence size (2..=seq_group) in slot 0 and forget it,
    /// so that each size's kernels are built now rather than in the middle of a server's
    /// streams: drivers such as lavapipe compile a pipeline at its first dispatch, which on a
    /// CPU takes seconds. Slot 0 starts over afterwards; the other slots are untouched.
    pub fn warm_seq_steps(&mut self) -> Result<()> {
        let back = self.slots.current();
        for n in 2..=self.slots.group.min(self.opts.ctx_len) {
            self.use_slot(0)?;
            self.reset();
            self.step_seqs(&vec![(0, 0); n])?;
        }
        self.use_slot(0)?;
        self.reset();
        self.use_slot(back)
    }
}

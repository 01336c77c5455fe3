//! The plan: ops (a kernel variant for one token and one for a batch, with their bind
//! groups), how a step of n tokens encodes them into one command encoder, and the one
//! submission. Resources are bound by name (`Named`), checked against each kernel's slots.
use super::cpu_adapter::RowCopy;
use super::specs::{self, Spec};
use super::GpuDecoder;
use crate::error::{Error, Result};

/// Most tokens of one step that each continue their own sequence (common.wgsl's MAX_SEQS).
pub const MAX_SEQS: usize = 16;

/// The uniform every kernel reads at binding 0 (common.wgsl's Step).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
pub(super) struct Step {
    pub pos0: u32,
    pub n_tok: u32,
    pub n_pen: u32,
    pub penalty: f32,
    /// K/V cache row of position 0 of the step's sequence (its slot x the context).
    pub kv0: u32,
    /// 1: each token continues its own sequence, placed by `tok`.
    pub seqs: u32,
    pub pad: [u32; 2],
    /// Per token when `seqs`: [position, K/V row of its sequence's position 0, 0, 0].
    pub tok: [[u32; 4]; MAX_SEQS],
}

/// What a step runs: one token of the current sequence (decode), a batch of its tokens
/// (prefill), or the next token of each of several sequences (continuous batching).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Kind {
    Token,
    Batch(u32),
    Seqs(u32),
}

impl Kind {
    /// A step of `n` tokens of one sequence.
    pub fn of(n: u32) -> Kind {
        if n > 1 {
            Kind::Batch(n)
        } else {
            Kind::Token
        }
    }

    pub fn n(self) -> u32 {
        match self {
            Kind::Token => 1,
            Kind::Batch(n) | Kind::Seqs(n) => n,
        }
    }
}

/// A kernel variant ready to dispatch: pipeline index and workgroup counts.
#[derive(Clone, Copy)]
pub(super) struct Variant {
    pub kernel: usize,
    pub x: u32,
    pub tokens_per_y: u32,
}

impl Variant {
    fn y(&self, n_tok: u32) -> u32 {
        specs::y_groups(self.tokens_per_y, n_tok)
    }
}

/// Resources by binding name (the names of the kernel's spec and shader).
pub(super) type Named<'a> = Vec<(&'static str, wgpu::BindingResource<'a>)>;

/// Replace the resource bound as `name` (it must be there).
pub(super) fn rebind<'a>(
    named: &mut Named<'a>,
    name: &str,
    r: wgpu::BindingResource<'a>,
) -> Result<()> {
    let e = named
        .iter_mut()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| Error::Gpu(format!("internal: no binding {name} to replace")))?;
    e.1 = r;
    Ok(())
}

/// One dispatch of the schedule: its variants for one token (decode), for a batch, and for
/// the tokens of several sequences.
pub(super) struct Op {
    pub decode: Variant,
    pub prefill: Variant,
    /// By token count n (index n), for a step of several sequences' tokens; where absent,
    /// the batch variant serves (it reads positions per token too).
    pub seqs: Vec<Variant>,
    pub bind: wgpu::BindGroup,
    /// The batch variant's own bind group, where its binding layout differs from decode's.
    pub bind_prefill: Option<wgpu::BindGroup>,
    /// The several-sequence variants' bind group, where it differs from the batch's.
    pub bind_seqs: Option<wgpu::BindGroup>,
    /// Left out of the step (a router whose layer's memory is switched off).
    pub skip: bool,
    /// Left out of single-token steps (a router fused into the decode matvecs).
    pub batch_only: bool,
    /// Left out of several-sequence steps (the LM head of the last token only: those steps
    /// run their own head over every token).
    pub last_only: bool,
    /// Buffer rows copied into textures before this op (CPU adapters: see RowCopy).
    pub copies: Vec<RowCopy>,
}

impl Op {
    pub fn new(decode: Variant, prefill: Variant, bind: wgpu::BindGroup) -> Op {
        Op {
            decode,
            prefill,
            seqs: Vec::new(),
            bind,
            bind_prefill: None,
            bind_seqs: None,
            skip: false,
            batch_only: false,
            last_only: false,
            copies: Vec::new(),
        }
    }

    /// Whether a step of this kind dispatches this op.
    pub fn runs(&self, kind: Kind) -> bool {
        !(self.skip
            || (self.batch_only && kind == Kind::Token)
            || (self.last_only && matches!(kind, Kind::Seqs(_))))
    }

    pub fn variant(&self, kind: Kind) -> Variant {
        match kind {
            Kind::Token => self.decode,
            Kind::Batch(_) => self.prefill,
            Kind::Seqs(n) => self.seqs.get(n as usize).copied().unwrap_or(self.prefill),
        }
    }

    fn bind_group(&self, kind: Kind) -> &wgpu::BindGroup {
        match (kind, &self.bind_prefill, &self.bind_seqs) {
            (Kind::Token, _, _) => &self.bind,
            (Kind::Seqs(_), _, Some(b)) => b,
            (_, Some(b), _) => b,
            _ => &self.bind,
        }
    }
}

impl GpuDecoder {
    /// A bind group for kernel `k` from named resources.
    pub(super) fn bind(&self, k: usize, named: &Named<'_>) -> Result<wgpu::BindGroup> {
        let s = self.pipes.slot(k);
        crate::gpu::bind_named(&self.ctx.device, &s.label, &s.layout, &s.bindings, named)
    }

    /// Add an op whose decode and prefill variants share one binding layout.
    pub(super) fn push_op(
        &mut self,
        decode: &Spec,
        prefill: &Spec,
        named: &Named<'_>,
    ) -> Result<()> {
        let decode = self.variant(decode)?;
        let prefill = self.variant(prefill)?;
        let bind = self.bind(decode.kernel, named)?;
        self.ops.push(Op::new(decode, prefill, bind));
        Ok(())
    }

    /// Start the current slot's sequence over.
    pub fn reset(&mut self) {
        self.pending = None;
        self.slots.reset_current();
    }

    /// The current slot keeps its first `n` tokens (a prompt's prefix reused).
    pub fn truncate(&mut self, n: usize) -> Result<()> {
        // Submitted, not dropped: the last feed's commands write K/V that stays.
        self.flush();
        self.slots.truncate_current(n)
    }

    pub(super) fn flush(&mut self) {
        if let Some(enc) = self.pending.take() {
            self.ctx.queue.submit([enc.finish()]);
        }
    }

    pub(super) fn take_encoder(&mut self) -> Result<wgpu::CommandEncoder> {
        self.pending
            .take()
            .ok_or_else(|| Error::Input("no logits yet: feed tokens first".into()))
    }

    /// Run `tokens` at the current position. Work is encoded, not submitted: the next call
    /// (another feed, `logits`, `top_k`) submits it together with its own commands.
    pub fn feed(&mut self, tokens: &[u32]) -> Result<()> {
        let batch = if tokens.len() <= self.opts.token_by_token_upto {
            1
        } else {
            self.opts.max_batch
        };
        self.feed_in(tokens, batch)
    }

    /// `feed` in steps of at most `batch` tokens (all-position readouts need one batch).
    pub(super) fn feed_in(&mut self, tokens: &[u32], batch: usize) -> Result<()> {
        if tokens.is_empty() {
            return Err(Error::Input("no tokens to process".into()));
        }
        if self.slots.pos() + tokens.len() > self.opts.ctx_len {
            return Err(Error::Input(format!(
                "context full: {} + {} tokens exceed the context of {}",
                self.slots.pos(),
                tokens.len(),
                self.opts.ctx_len
            )));
        }
        self.check_ids(tokens)?;
        for chunk in tokens.chunks(batch) {
            self.flush();
            let n = chunk.len() as u32;
            self.compile_for(Kind::of(n))?;
            if n == 1 {
                self.steps.0 += 1;
            } else {
                self.steps.1 += 1;
            }
            self.cur = Step {
                pos0: self.slots.pos() as u32,
                n_tok: n,
                n_pen: 0,
                penalty: 1.0,
                kv0: (self.slots.current() * self.opts.ctx_len) as u32,
                ..Default::default()
            };
            self.ctx
                .queue
                .write_buffer(&self.buf.step, 0, bytemuck::bytes_of(&self.cur));
            self.ctx
                .queue
                .write_buffer(&self.buf.ids, 0, bytemuck::cast_slice(chunk));
            let mut enc = self.ctx.device.create_command_encoder(&Default::default());
            self.upload_memory_rows(chunk, &mut enc)?;
            if self.engram.is_some() {
                let (slot, p0) = (self.slots.current(), self.slots.pos());
                let toks: Vec<_> = (chunk.iter().enumerate())
                    .map(|(i, &t)| (slot, p0 + i, t))
                    .collect();
                self.upload_engram_rows(&toks)?;
            }
            #[cfg(not(target_arch = "wasm32"))]
            if self.profile.is_some() {
                self.ctx.queue.submit([enc.finish()]);
                self.profile_chunk(n)?;
                self.pending = Some(self.ctx.device.create_command_encoder(&Default::default()));
                self.slots.advance(chunk.len());
                continue;
            }
            self.encode_ops(&mut enc, &self.ops, Kind::of(n));
            self.pending = Some(enc);
            self.slots.advance(chunk.len());
        }
        Ok(())
    }

    /// Every id within the vocabulary.
    pub(super) fn check_ids(&self, ids: &[u32]) -> Result<()> {
        match ids.iter().find(|&&t| t as usize >= self.config.vocab) {
            Some(&bad) => Err(Error::Input(format!(
                "token id {bad} is out of range (vocab {})",
                self.config.vocab
            ))),
            None => Ok(()),
        }
    }

    /// Encode `ops` for a step of this kind: one compute pass, broken only where rows are
    /// copied to textures (RowCopy).
    pub(super) fn encode_ops(&self, enc: &mut wgpu::CommandEncoder, ops: &[Op], kind: Kind) {
        let mut rest = ops;
        while !rest.is_empty() {
            for c in &rest[0].copies {
                c.encode(enc, kind);
            }
            let end = 1 + rest[1..]
                .iter()
                .position(|o| o.copies.iter().any(|c| c.wanted(kind)))
                .unwrap_or(rest.len() - 1);
            let mut pass = enc.begin_compute_pass(&Default::default());
            for op in &rest[..end] {
                self.encode_op(&mut pass, op, kind);
            }
            drop(pass);
            rest = &rest[end..];
        }
    }

    /// Record one op of the schedule for a step of this kind.
    pub(super) fn encode_op(&self, pass: &mut wgpu::ComputePass<'_>, op: &Op, kind: Kind) {
        if !op.runs(kind) {
            return;
        }
        let v = op.variant(kind);
        pass.set_pipeline(self.pipeline(v.kernel));
        pass.set_bind_group(0, op.bind_group(kind), &[]);
        pass.dispatch_workgroups(v.x, v.y(kind.n()), 1);
    }
}

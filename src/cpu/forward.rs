use std::sync::Arc;

use super::ops::{attention, head_rmsnorm, matvec, matvec_weight, rmsnorm, rope, silu};
use crate::error::{Error, Result};
use crate::memory::store::RowStore;
use crate::memory::{block_rows, MemoryRows, TideMemory};
use crate::model::engram::{Engram, EngramLayer, DILATION, KERNEL, REACH};
use crate::model::{Config, Model, Weight};

pub(crate) struct CpuLayer {
    pub(crate) attn_norm: Vec<f32>,
    pub(crate) wq: Weight,
    pub(crate) wk: Weight,
    pub(crate) wv: Weight,
    pub(crate) wo: Weight,
    pub(crate) ffn_norm: Vec<f32>,
    pub(crate) w_gate: Weight,
    pub(crate) w_up: Weight,
    pub(crate) w_down: Weight,
    pub(crate) qkv_bias: Option<[Vec<f32>; 3]>,
    pub(crate) qk_norm: Option<[Vec<f32>; 2]>,
    /// LIMe's S^l [R, (l+1) R] (layers >= 1).
    pub(crate) lime_mix: Option<Vec<f32>>,
}

/// The reference model: matrices stay in their stored type (rows are dequantised as each
/// product needs them), vectors are f32.
pub struct CpuModel {
    pub config: Config,
    pub(crate) embd: Weight,
    pub(crate) lm_head: Option<Weight>,
    pub(crate) out_norm: Vec<f32>,
    pub(crate) layers: Vec<CpuLayer>,
    /// Tables stay in their stored form; rows are decoded when a token needs them.
    pub(crate) memory: Option<TideMemory>,
    pub(crate) engram: Option<Engram>,
    /// The row stores the memories' rows are read through.
    pub(crate) rows: MemoryRows,
}

impl CpuModel {
    /// The model with row stores over its own tables (no caches).
    pub fn new(m: &Model) -> CpuModel {
        CpuModel::with_rows(m, MemoryRows::local(m))
    }

    /// The model reading its memories' rows through `rows` (shared with whoever made them:
    /// the front end sizes their caches and reads their counters).
    pub fn with_rows(m: &Model, rows: MemoryRows) -> CpuModel {
        let layers = m
            .layers
            .iter()
            .map(|l| CpuLayer {
                attn_norm: l.attn_norm.to_f32(),
                wq: l.wq.clone(),
                wk: l.wk.clone(),
                wv: l.wv.clone(),
                wo: l.wo.clone(),
                ffn_norm: l.ffn_norm.to_f32(),
                w_gate: l.w_gate.clone(),
                w_up: l.w_up.clone(),
                w_down: l.w_down.clone(),
                qkv_bias: l.qkv_bias.as_ref().map(|b| b.clone().map(|w| w.to_f32())),
                qk_norm: l.qk_norm.as_ref().map(|n| n.clone().map(|w| w.to_f32())),
                lime_mix: l.lime_mix.as_ref().map(|w| w.to_f32()),
            })
            .collect();
        CpuModel {
            config: m.config.clone(),
            embd: m.token_embd.clone(),
            lm_head: m.lm_head.clone(),
            out_norm: m.output_norm.to_f32(),
            layers,
            memory: m.memory.clone(),
            engram: m.engram.clone(),
            rows,
        }
    }

    pub fn session(self: &Arc<Self>, ctx: usize) -> CpuSession {
        let c = &self.config;
        CpuSession {
            m: self.clone(),
            ctx,
            rope: c.rope_table(ctx),
            k: vec![vec![0.0; ctx * c.kv_dim()]; c.n_layers],
            v: vec![vec![0.0; ctx * c.kv_dim()]; c.n_layers],
            pos: 0,
            logits: vec![0.0; c.vocab],
            keep_all: false,
            all_logits: Vec::new(),
            router: Vec::new(),
            post_attn: None,
            hidden: None,
            memory_off: vec![false; c.n_layers],
            engram_ids: vec![0; ctx],
            engram_conv: self
                .engram
                .as_ref()
                .map_or(Vec::new(), |e| vec![vec![0.0; ctx * c.dim]; e.layers.len()]),
            forward: None,
        }
    }
}

/// Another forward pass over a session's state (the fast CPU backend, src/fastcpu/): from the
/// session's position it reads the model and writes the K/V caches, the logits (all of them
/// with `keep_all`), the router weights and `post_attn` as the reference's `feed` does.
pub trait Forward: Send + Sync {
    /// Run `tokens` (already checked: some, within the context, in the vocabulary).
    fn feed(&self, s: &mut CpuSession, tokens: &[u32]) -> Result<()>;
    /// What runs, for the front end ("cpu (AVX2, 2 threads)").
    fn describe(&self) -> String;
}

/// One sequence's state: KV cache and position.
pub struct CpuSession {
    pub(crate) m: Arc<CpuModel>,
    pub(crate) ctx: usize,
    pub(crate) rope: Vec<f32>,
    pub(crate) k: Vec<Vec<f32>>,
    pub(crate) v: Vec<Vec<f32>>,
    pub pos: usize,
    pub logits: Vec<f32>,
    /// Keep every position's logits in `all_logits` (perplexity), not only the last.
    pub keep_all: bool,
    pub all_logits: Vec<f32>,
    /// Router weights of every token fed since `reset`: [token][layer][K+1]
    /// (a layer without memory reads NULL = 1).
    pub router: Vec<f32>,
    /// When Some, every layer's normalised post-attention state n = RMSNorm_ffn(h~) (the FFN's
    /// and the router's input) is appended: [token][layer][dim].
    pub post_attn: Option<Vec<f32>>,
    /// When Some, every token's last hidden state after the output norm (what the LM head
    /// reads; llama.cpp's embeddings) is appended: [token][dim].
    pub hidden: Option<Vec<f32>>,
    /// Layers whose memory injection is switched off (ablation).
    pub memory_off: Vec<bool>,
    /// Engram: the compressed id at every position, and per Engram layer the convolution's
    /// input RMSNorm_c(v~) at every position [ctx, dim].
    pub(crate) engram_ids: Vec<u64>,
    pub(crate) engram_conv: Vec<Vec<f32>>,
    /// The forward pass `feed` runs instead of the reference's own (None: the reference).
    forward: Option<Arc<dyn Forward>>,
}

impl CpuSession {
    /// Memory blocks of the model (0 for a plain backbone).
    pub fn memory_k(&self) -> usize {
        self.m.memory.as_ref().map_or(0, |m| m.k)
    }

    pub fn n_layers(&self) -> usize {
        self.m.config.n_layers
    }

    /// The session with `f` running its forward passes instead of the reference.
    pub fn with_forward(mut self, f: Arc<dyn Forward>) -> CpuSession {
        self.forward = Some(f);
        self
    }

    /// Whether another forward than the reference's runs its passes.
    pub fn has_forward(&self) -> bool {
        self.forward.is_some()
    }

    /// What runs its forward passes.
    pub fn describe(&self) -> String {
        match &self.forward {
            Some(f) => f.describe(),
            None => "cpu (reference)".into(),
        }
    }

    pub fn reset(&mut self) {
        self.pos = 0;
        self.all_logits.clear();
        self.router.clear();
    }

    /// Keep the first `n` tokens fed (their K/V stay; the next token goes to position `n`).
    pub fn truncate(&mut self, n: usize) -> Result<()> {
        if n > self.pos {
            return Err(Error::Input(format!(
                "the sequence holds {} tokens; it cannot keep {n}",
                self.pos
            )));
        }
        self.pos = n;
        self.all_logits.clear();
        self.router.clear();
        Ok(())
    }

    /// `tokens` fit after what was fed (some, within the context, ids in the vocabulary).
    fn check_tokens(&self, tokens: &[u32]) -> Result<()> {
        let vocab = self.m.config.vocab;
        if tokens.is_empty() {
            return Err(Error::Input("no tokens to process".into()));
        }
        if self.pos + tokens.len() > self.ctx {
            return Err(Error::Input(format!(
                "context full: {} + {} tokens exceed the context of {}",
                self.pos,
                tokens.len(),
                self.ctx
            )));
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::Input(format!(
                "token id {bad} is out of range (vocab {vocab})"
            )));
        }
        Ok(())
    }

    /// Run `tokens` through the model at the current position; logits are those of the last one.
    pub fn feed(&mut self, tokens: &[u32]) -> Result<&[f32]> {
        let c = self.m.config.clone();
        let m = self.m.clone();
        self.check_tokens(tokens)?;
        if let Some(f) = self.forward.clone() {
            f.feed(self, tokens)?;
            return Ok(&self.logits);
        }
        let (d, kvd, hd) = (c.dim, c.kv_dim(), c.head_dim);
        let group = c.n_heads / c.n_kv_heads;
        let mut h = vec![0f32; d];
        let mut a = vec![0f32; d];
        let mut q = vec![0f32; c.q_dim()];
        let mut att = vec![0f32; c.q_dim()];
        let mut tmp = vec![0f32; d];
        let mut g = vec![0f32; c.ffn_dim];
        let mut u = vec![0f32; c.ffn_dim];
        let mut scores = vec![0f32; self.ctx];
        let k = m.memory.as_ref().map_or(0, |mm| mm.k);
        let mut mem = vec![0f32; k * d];
        let mut alpha = vec![0f32; k + 1];
        // LIMe: every layer's raw (pre-RoPE) K and V of the current token, layer after layer.
        let lime = m.layers.iter().any(|l| l.lime_mix.is_some());
        let (mut raw_k, mut raw_v) = match lime {
            true => (vec![0f32; c.n_layers * kvd], vec![0f32; c.n_layers * kvd]),
            false => (Vec::new(), Vec::new()),
        };
        for (i, &tok) in tokens.iter().enumerate() {
            let pos = self.pos;
            // The token's K block rows, read once (through the row store, as the GPU reads
            // them: its counters then mean the same on both backends) for every layer.
            if let Some(mm) = &m.memory {
                let on = |li: usize| mm.routers[li].is_some() && !self.memory_off[li];
                if (0..m.layers.len()).any(on) {
                    let rows = m.rows.tide_for(mm)?;
                    block_rows(mm, rows, tok, &mut mem)?;
                }
            }
            m.embd.row_f32(tok as usize, &mut h);
            if let Some(e) = &m.engram {
                self.engram_ids[pos] = e.compressed(tok);
            }
            for (li, l) in m.layers.iter().enumerate() {
                if let Some(e) = &m.engram {
                    if let Some(ei) = e.index_of(li) {
                        let conv = &mut self.engram_conv[ei];
                        let stores = m.rows.engram_for(e, ei)?;
                        engram_add(
                            e,
                            (&e.layers[ei], stores),
                            &self.engram_ids,
                            conv,
                            pos,
                            &mut h,
                            c.eps,
                        )?;
                    }
                }
                rmsnorm(&mut a, &h, &l.attn_norm, c.eps);
                matvec_weight(&mut q, &l.wq, &a);
                let kc = &mut self.k[li][pos * kvd..(pos + 1) * kvd];
                matvec_weight(kc, &l.wk, &a);
                matvec_weight(&mut self.v[li][pos * kvd..(pos + 1) * kvd], &l.wv, &a);
                let mut kr = self.k[li][pos * kvd..(pos + 1) * kvd].to_vec();
                if let Some([bq, bk, bv]) = &l.qkv_bias {
                    let vc = &mut self.v[li][pos * kvd..(pos + 1) * kvd];
                    for (x, b) in [(&mut q[..], bq), (&mut kr[..], bk), (vc, bv)] {
                        x.iter_mut().zip(b).for_each(|(x, b)| *x += b);
                    }
                }
                if let Some([gq, gk]) = &l.qk_norm {
                    head_rmsnorm(&mut q, gq, c.eps);
                    head_rmsnorm(&mut kr, gk, c.eps);
                }
                if lime {
                    let vc = &mut self.v[li][pos * kvd..(pos + 1) * kvd];
                    raw_k[li * kvd..(li + 1) * kvd].copy_from_slice(&kr);
                    raw_v[li * kvd..(li + 1) * kvd].copy_from_slice(vc);
                    if let Some(s) = &l.lime_mix {
                        let seen = (li + 1) * kvd;
                        lime_mix(s, &raw_k[..seen], &mut kr, hd);
                        lime_mix(s, &raw_v[..seen], vc, hd);
                    }
                }
                rope(&c, &self.rope, &mut q, pos);
                rope(&c, &self.rope, &mut kr, pos);
                self.k[li][pos * kvd..(pos + 1) * kvd].copy_from_slice(&kr);
                for head in 0..c.n_heads {
                    let kvh = head / group;
                    attention(
                        &q[head * hd..(head + 1) * hd],
                        &self.k[li],
                        &self.v[li],
                        kvd,
                        kvh * hd,
                        pos + 1,
                        &mut scores,
                        &mut att[head * hd..(head + 1) * hd],
                    );
                }
                matvec_weight(&mut tmp, &l.wo, &att);
                for (x, t) in h.iter_mut().zip(&tmp) {
                    *x += t;
                }
                rmsnorm(&mut a, &h, &l.ffn_norm, c.eps);
                if let Some(p) = &mut self.post_attn {
                    p.extend_from_slice(&a);
                }
                matvec_weight(&mut g, &l.w_gate, &a);
                matvec_weight(&mut u, &l.w_up, &a);
                for (gv, uv) in g.iter_mut().zip(&u) {
                    *gv = silu(*gv) * uv;
                }
                matvec_weight(&mut tmp, &l.w_down, &g);
                for (x, t) in h.iter_mut().zip(&tmp) {
                    *x += t;
                }
                if let Some(mm) = &m.memory {
                    alpha.fill(0.0);
                    alpha[k] = 1.0;
                    if let (Some(wr), false) = (&mm.routers[li], self.memory_off[li]) {
                        matvec(&mut alpha, wr, &a);
                        softmax(&mut alpha);
                        for (kk, row) in mem.chunks_exact(d).enumerate() {
                            for (x, r) in h.iter_mut().zip(row) {
                                *x += alpha[kk] * r;
                            }
                        }
                    }
                    self.router.extend_from_slice(&alpha);
                }
            }
            self.pos += 1;
            if let Some(hid) = &mut self.hidden {
                rmsnorm(&mut a, &h, &m.out_norm, c.eps);
                hid.extend_from_slice(&a);
            }
            // The LM head: for the last token only, or for every token with keep_all.
            if self.keep_all || i + 1 == tokens.len() {
                rmsnorm(&mut a, &h, &m.out_norm, c.eps);
                let head = m.lm_head.as_ref().unwrap_or(&m.embd);
                matvec_weight(&mut self.logits, head, &a);
                if self.keep_all {
                    self.all_logits.extend_from_slice(&self.logits);
                }
            }
        }
        Ok(&self.logits)
    }
}

/// Engram at one layer for the token at `pos` (train/engram.py): gather e_t through the row
/// stores, k and v, the scalar gate, store RMSNorm_c(v~) in `conv_in` at `pos`, and add
/// v~ + SiLU(conv) to the residual `h`.
pub(crate) fn engram_add(
    e: &Engram,
    (el, stores): (&EngramLayer, &[RowStore]),
    ids: &[u64],
    conv_in: &mut [f32],
    pos: usize,
    h: &mut [f32],
    eps: f32,
) -> Result<()> {
    let d = h.len();
    let mut rows = Vec::new();
    e.hash_at(el, ids, pos, &mut rows);
    let (hd, mut mem) = (e.head_dim, vec![0f32; e.d_mem()]);
    let mut raw = Vec::new();
    for ((store, &r), o) in stores.iter().zip(&rows).zip(mem.chunks_exact_mut(hd)) {
        store.gather(&[r], &mut raw)?;
        crate::model::dtype::dequantize(e.dtype, &raw, o);
    }
    let (mut k, mut v) = (vec![0f32; d], vec![0f32; d]);
    matvec(&mut k, &el.key, &mem);
    matvec(&mut v, &el.value, &mem);
    k.iter_mut().zip(&el.key_bias).for_each(|(x, b)| *x += b);
    v.iter_mut().zip(&el.value_bias).for_each(|(x, b)| *x += b);
    let (mut nh, mut nk) = (vec![0f32; d], vec![0f32; d]);
    rmsnorm(&mut nh, h, &el.norm_h, eps);
    rmsnorm(&mut nk, &k, &el.norm_k, eps);
    let dot = nh.iter().zip(&nk).map(|(a, b)| a * b).sum::<f32>() / (d as f32).sqrt();
    let g = 1.0 / (1.0 + (-(dot.abs().max(1e-6).sqrt() * sign0(dot))).exp());
    v.iter_mut().for_each(|x| *x *= g);
    rmsnorm(&mut conv_in[pos * d..(pos + 1) * d], &v, &el.norm_c, eps);
    for (ch, (x, vt)) in h.iter_mut().zip(&v).enumerate() {
        let mut acc = 0.0;
        for i in 0..KERNEL {
            // Tap i reads position pos - REACH + DILATION i; before the start it reads zero.
            if let Some(p) = (pos + DILATION * i).checked_sub(REACH) {
                acc += el.conv[ch * KERNEL + i] * conv_in[p * d + ch];
            }
        }
        *x += vt + silu(acc);
    }
    Ok(())
}

/// sign(x), 0 at 0 (torch.sign).
fn sign0(x: f32) -> f32 {
    if x == 0.0 {
        0.0
    } else {
        x.signum()
    }
}

/// LIMe: out head r = sum_j s[r, j] raw head j, over the heads (of `hd` values) of `raw`, the
/// raw K (or V) of layers 0..=l, layer-major.
pub(crate) fn lime_mix(s: &[f32], raw: &[f32], out: &mut [f32], hd: usize) {
    let n = raw.len() / hd;
    for (r, o) in out.chunks_exact_mut(hd).enumerate() {
        o.fill(0.0);
        for (j, src) in raw.chunks_exact(hd).enumerate() {
            let w = s[r * n + j];
            o.iter_mut().zip(src).for_each(|(o, x)| *o += w * x);
        }
    }
}

pub(crate) fn softmax(x: &mut [f32]) {
    let mx = x.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - mx).exp();
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}

use std::sync::Arc;

use super::ops::{attention, matvec, rmsnorm, rope, silu};
use crate::error::{Error, Result};
use crate::model::{Config, Model};

struct CpuLayer {
    attn_norm: Vec<f32>,
    wq: Vec<f32>,
    wk: Vec<f32>,
    wv: Vec<f32>,
    wo: Vec<f32>,
    ffn_norm: Vec<f32>,
    w_gate: Vec<f32>,
    w_up: Vec<f32>,
    w_down: Vec<f32>,
}

/// All weights dequantised to f32.
pub struct CpuModel {
    pub config: Config,
    embd: Vec<f32>,
    lm_head: Option<Vec<f32>>,
    out_norm: Vec<f32>,
    layers: Vec<CpuLayer>,
}

impl CpuModel {
    pub fn new(m: &Model) -> CpuModel {
        let layers = m
            .layers
            .iter()
            .map(|l| CpuLayer {
                attn_norm: l.attn_norm.to_f32(),
                wq: l.wq.to_f32(),
                wk: l.wk.to_f32(),
                wv: l.wv.to_f32(),
                wo: l.wo.to_f32(),
                ffn_norm: l.ffn_norm.to_f32(),
                w_gate: l.w_gate.to_f32(),
                w_up: l.w_up.to_f32(),
                w_down: l.w_down.to_f32(),
            })
            .collect();
        CpuModel {
            config: m.config.clone(),
            embd: m.token_embd.to_f32(),
            lm_head: m.lm_head.as_ref().map(|w| w.to_f32()),
            out_norm: m.output_norm.to_f32(),
            layers,
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
        }
    }
}

/// One sequence's state: KV cache and position.
pub struct CpuSession {
    m: Arc<CpuModel>,
    ctx: usize,
    rope: Vec<f32>,
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    pub pos: usize,
    pub logits: Vec<f32>,
}

impl CpuSession {
    pub fn reset(&mut self) {
        self.pos = 0;
    }

    /// Run `tokens` through the model at the current position; logits are those of the last one.
    pub fn feed(&mut self, tokens: &[u32]) -> Result<&[f32]> {
        let c = self.m.config.clone();
        let m = self.m.clone();
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
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= c.vocab) {
            return Err(Error::Input(format!(
                "token id {bad} is out of range (vocab {})",
                c.vocab
            )));
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
        for &tok in tokens {
            let pos = self.pos;
            h.copy_from_slice(&m.embd[tok as usize * d..(tok as usize + 1) * d]);
            for (li, l) in m.layers.iter().enumerate() {
                rmsnorm(&mut a, &h, &l.attn_norm, c.eps);
                matvec(&mut q, &l.wq, &a);
                let kc = &mut self.k[li][pos * kvd..(pos + 1) * kvd];
                matvec(kc, &l.wk, &a);
                matvec(&mut self.v[li][pos * kvd..(pos + 1) * kvd], &l.wv, &a);
                let mut kr = self.k[li][pos * kvd..(pos + 1) * kvd].to_vec();
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
                matvec(&mut tmp, &l.wo, &att);
                for (x, t) in h.iter_mut().zip(&tmp) {
                    *x += t;
                }
                rmsnorm(&mut a, &h, &l.ffn_norm, c.eps);
                matvec(&mut g, &l.w_gate, &a);
                matvec(&mut u, &l.w_up, &a);
                for (gv, uv) in g.iter_mut().zip(&u) {
                    *gv = silu(*gv) * uv;
                }
                matvec(&mut tmp, &l.w_down, &g);
                for (x, t) in h.iter_mut().zip(&tmp) {
                    *x += t;
                }
            }
            self.pos += 1;
        }
        rmsnorm(&mut a, &h, &m.out_norm, c.eps);
        let head = m.lm_head.as_deref().unwrap_or(&m.embd);
        matvec(&mut self.logits, head, &a);
        Ok(&self.logits)
    }
}

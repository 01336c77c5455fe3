//! The whole forward pass on the fast kernels, a batch of tokens at a time: each layer runs
//! for every token of the batch before the next layer, so that prefill reads each weight once
//! per batch (decode is a batch of one). It works on the reference's session (`CpuSession`:
//! its K/V caches, logits, router weights) and the reference's prepared model, and computes
//! what the reference's `feed` computes in the same order of operations; only the matrix
//! products differ (8-bit activations, `matvec.rs`) and attention's sums (8 lanes).
use std::sync::Arc;

use super::attention::attend;
use super::dot::{supports, Path};
use super::matvec::{matmul, matmuls};
use super::q8::{quantize_rows, Q8Vec};
use crate::cpu::ops::{head_rmsnorm, matvec, rmsnorm, rope, silu};
use crate::cpu::{engram_add, lime_mix, softmax, CpuModel, CpuSession, Forward};
use crate::error::{Error, Result};
use crate::memory::block_rows;

/// Most tokens one pass takes: bounds the activations ([batch, ffn] f32) a pass holds.
pub const MAX_BATCH: usize = 64;

/// Most threads a pool may be asked for (starting 100,000 threads hangs the machine).
pub const MAX_THREADS: usize = 1024;

/// The fast CPU backend's forward pass: the kernels' path and the threads it runs on.
pub struct FastCpu {
    path: Path,
    /// None: rayon's global pool (on wasm32 without threads, the calling thread).
    pool: Option<rayon::ThreadPool>,
}

impl FastCpu {
    /// The forward on `path` with `threads` threads (0: one per core). Where threads cannot
    /// be started (wasm32 without them) it runs on the calling thread.
    pub fn new(path: Path, threads: usize) -> Result<FastCpu> {
        if !path.available() {
            return Err(Error::Input(format!(
                "this CPU cannot run the {path:?} kernels"
            )));
        }
        if threads > MAX_THREADS {
            return Err(Error::Input(format!(
                "{threads} CPU threads asked for: at most {MAX_THREADS} (0: one per core)"
            )));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("tide-cpu-{i}"))
            .build()
            .ok();
        Ok(FastCpu { path, pool })
    }

    pub fn path(&self) -> Path {
        self.path
    }

    pub fn threads(&self) -> usize {
        match &self.pool {
            Some(p) => p.current_num_threads(),
            None => rayon::current_num_threads(),
        }
    }

    /// A session of `m` whose passes run here.
    pub fn session(self: &Arc<Self>, m: &Arc<CpuModel>, ctx: usize) -> CpuSession {
        m.session(ctx).with_forward(self.clone())
    }

    fn batch(&self, s: &mut CpuSession, toks: &[u32]) -> Result<()> {
        let m = s.m.clone();
        let c = &m.config;
        let (n, d, kvd, hd) = (toks.len(), c.dim, c.kv_dim(), c.head_dim);
        let (qd, fd, nl) = (c.q_dim(), c.ffn_dim, c.n_layers);
        let pos0 = s.pos;
        let path = self.path;
        let mut h = vec![0f32; n * d];
        for (i, &t) in toks.iter().enumerate() {
            m.embd.row_f32(t as usize, &mut h[i * d..(i + 1) * d]);
            if let Some(e) = &m.engram {
                s.engram_ids[pos0 + i] = e.compressed(t);
            }
        }
        // TIDE: every token's K block rows, read once for all layers.
        let k = m.memory.as_ref().map_or(0, |mm| mm.k);
        let mut mem = vec![0f32; n * k * d];
        if let Some(mm) = &m.memory {
            let on = |li: usize| mm.routers[li].is_some() && !s.memory_off[li];
            if (0..nl).any(on) {
                let rows = m.rows.tide_for(mm)?;
                for (&t, out) in toks.iter().zip(mem.chunks_exact_mut(k * d)) {
                    block_rows(mm, rows, t, out)?;
                }
            }
        }
        let mut router = vec![0f32; if k > 0 { n * nl * (k + 1) } else { 0 }];
        let mut post = vec![0f32; if s.post_attn.is_some() { n * nl * d } else { 0 }];
        let (mut a, mut tmp) = (vec![0f32; n * d], vec![0f32; n * d]);
        let (mut q, mut att) = (vec![0f32; n * qd], vec![0f32; n * qd]);
        let (mut kn, mut vn) = (vec![0f32; n * kvd], vec![0f32; n * kvd]);
        let (mut g, mut u) = (vec![0f32; n * fd], vec![0f32; n * fd]);
        let mut xs = Vec::<Q8Vec>::new();
        let mut scratch: [Vec<f32>; 3] = Default::default();
        let lime = m.layers.iter().any(|l| l.lime_mix.is_some());
        // LIMe: every token's raw (pre-RoPE) K and V of every layer, [token][layer][kv].
        let raw_len = if lime { n * nl * kvd } else { 0 };
        let (mut raw_k, mut raw_v) = (vec![0f32; raw_len], vec![0f32; raw_len]);
        for (li, l) in m.layers.iter().enumerate() {
            if let Some(e) = &m.engram {
                if let Some(ei) = e.index_of(li) {
                    let stores = m.rows.engram_for(e, ei)?;
                    for (i, hi) in h.chunks_exact_mut(d).enumerate() {
                        let layer = (&e.layers[ei], stores);
                        let conv = &mut s.engram_conv[ei];
                        engram_add(e, layer, &s.engram_ids, conv, pos0 + i, hi, c.eps)?;
                    }
                }
            }
            norm_rows(&mut a, &h, &l.attn_norm, c.eps);
            quantize_rows(&a, d, &mut xs);
            let [s0, s1, s2] = &mut scratch;
            let outs: &mut [&mut [f32]] = &mut [&mut q, &mut kn, &mut vn];
            matmuls(path, outs, &[&l.wq, &l.wk, &l.wv], &xs, &mut [s0, s1, s2])?;
            for i in 0..n {
                let pos = pos0 + i;
                let qi = &mut q[i * qd..(i + 1) * qd];
                let ki = &mut kn[i * kvd..(i + 1) * kvd];
                let vi = &mut vn[i * kvd..(i + 1) * kvd];
                if let Some([bq, bk, bv]) = &l.qkv_bias {
                    for (x, b) in [(&mut qi[..], bq), (&mut ki[..], bk), (&mut vi[..], bv)] {
                        x.iter_mut().zip(b).for_each(|(x, b)| *x += b);
                    }
                }
                if let Some([gq, gk]) = &l.qk_norm {
                    head_rmsnorm(qi, gq, c.eps);
                    head_rmsnorm(ki, gk, c.eps);
                }
                if lime {
                    let base = i * nl * kvd;
                    raw_k[base + li * kvd..base + (li + 1) * kvd].copy_from_slice(ki);
                    raw_v[base + li * kvd..base + (li + 1) * kvd].copy_from_slice(vi);
                    if let Some(mix) = &l.lime_mix {
                        let seen = base..base + (li + 1) * kvd;
                        lime_mix(mix, &raw_k[seen.clone()], ki, hd);
                        lime_mix(mix, &raw_v[seen], vi, hd);
                    }
                }
                rope(c, &s.rope, qi, pos);
                rope(c, &s.rope, ki, pos);
                s.k[li][pos * kvd..(pos + 1) * kvd].copy_from_slice(ki);
                s.v[li][pos * kvd..(pos + 1) * kvd].copy_from_slice(vi);
            }
            attend(c, &q, &s.k[li], &s.v[li], pos0, &mut att);
            quantize_rows(&att, qd, &mut xs);
            matmul(path, &mut tmp, &l.wo, &xs, &mut scratch[0])?;
            add(&mut h, &tmp);
            norm_rows(&mut a, &h, &l.ffn_norm, c.eps);
            if !post.is_empty() {
                for (i, ai) in a.chunks_exact(d).enumerate() {
                    post[(i * nl + li) * d..(i * nl + li + 1) * d].copy_from_slice(ai);
                }
            }
            quantize_rows(&a, d, &mut xs);
            let [s0, s1, _] = &mut scratch;
            let outs: &mut [&mut [f32]] = &mut [&mut g, &mut u];
            matmuls(path, outs, &[&l.w_gate, &l.w_up], &xs, &mut [s0, s1])?;
            g.iter_mut().zip(&u).for_each(|(g, u)| *g = silu(*g) * u);
            quantize_rows(&g, fd, &mut xs);
            matmul(path, &mut tmp, &l.w_down, &xs, &mut scratch[0])?;
            add(&mut h, &tmp);
            if let Some(mm) = &m.memory {
                for i in 0..n {
                    let alpha = &mut router[(i * nl + li) * (k + 1)..(i * nl + li + 1) * (k + 1)];
                    alpha[k] = 1.0;
                    if let (Some(wr), false) = (&mm.routers[li], s.memory_off[li]) {
                        matvec(alpha, wr, &a[i * d..(i + 1) * d]);
                        softmax(alpha);
                        let hi = &mut h[i * d..(i + 1) * d];
                        for (kk, row) in mem[i * k * d..(i + 1) * k * d].chunks_exact(d).enumerate()
                        {
                            hi.iter_mut()
                                .zip(row)
                                .for_each(|(x, r)| *x += alpha[kk] * r);
                        }
                    }
                }
            }
        }
        s.pos += n;
        s.router.extend_from_slice(&router);
        if let Some(p) = &mut s.post_attn {
            p.extend_from_slice(&post);
        }
        if let Some(hid) = &mut s.hidden {
            norm_rows(&mut a, &h, &m.out_norm, c.eps);
            hid.extend_from_slice(&a[..n * d]);
        }
        // The LM head: for the last token only, or for every token with keep_all.
        let first = if s.keep_all { 0 } else { n - 1 };
        let head = m.lm_head.as_ref().unwrap_or(&m.embd);
        norm_rows(&mut a[first * d..], &h[first * d..], &m.out_norm, c.eps);
        quantize_rows(&a[first * d..], d, &mut xs);
        let mut logits = vec![0f32; (n - first) * c.vocab];
        matmul(path, &mut logits, head, &xs, &mut scratch[0])?;
        if s.keep_all {
            s.all_logits.extend_from_slice(&logits);
        }
        let last = logits.len() - c.vocab;
        s.logits.copy_from_slice(&logits[last..]);
        Ok(())
    }
}

impl Forward for FastCpu {
    fn feed(&self, s: &mut CpuSession, tokens: &[u32]) -> Result<()> {
        let mut run = move || {
            tokens
                .chunks(MAX_BATCH)
                .try_for_each(|chunk| self.batch(s, chunk))
        };
        match &self.pool {
            Some(p) => p.install(run),
            // The global pool (the browser's workers): the pass runs on one of its threads, so
            // that a parallel region starts at once on the calling worker and waits for the
            // others by stealing, not by sleeping; from outside the pool every region would
            // cost two wake-ups across threads. Without threads `scope` runs it in place.
            None => rayon::scope(|_| run()),
        }
    }

    fn describe(&self) -> String {
        let path = self.path.name();
        let t = self.threads();
        format!(
            "cpu ({path} kernels, {t} thread{})",
            if t == 1 { "" } else { "s" }
        )
    }
}

/// The model's matrices whose type the fast kernels lack, grouped by type: each runs on the
/// reference's kernel (rows dequantised to f32), and the front end says so.
pub fn fallbacks(m: &crate::model::Model) -> Vec<String> {
    let mut by_type: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for w in m.matrices().filter(|w| !supports(w.dtype())) {
        by_type
            .entry(w.dtype().name())
            .or_default()
            .push(&w.info.name);
    }
    by_type
        .into_iter()
        .map(|(t, names)| {
            let more = if names.len() > 1 { format!(" and {} more", names.len() - 1) } else { String::new() };
            format!(
                "{} {t} matrices ({}{more}) run on the reference's f32 kernel: the fast CPU kernels do not read {t}",
                names.len(),
                names[0]
            )
        })
        .collect()
}

/// RMSNorm of every row of `x` (rows of g.len()) into `out`.
fn norm_rows(out: &mut [f32], x: &[f32], g: &[f32], eps: f32) {
    let d = g.len();
    for (o, x) in out.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
        rmsnorm(o, x, g, eps);
    }
}

fn add(h: &mut [f32], x: &[f32]) {
    h.iter_mut().zip(x).for_each(|(h, x)| *h += x);
}

//! Causal attention over the f32 K/V cache for a batch of queries, every (token, head) pair a
//! task for the thread pool. The same maths as the reference's `attention`; the scores' dot
//! products run in 8 lanes (`cpu::ops::dot`) rather than one running sum.
use rayon::prelude::*;

use crate::cpu::ops::dot;
use crate::cpu::softmax;
use crate::model::Config;

/// att[i] = attention of query q[i] (the token at position pos0 + i) over positions
/// 0..=pos0 + i of the caches `k` and `v` ([pos][kv_dim]); q and att are [n][q_dim].
pub fn attend(c: &Config, q: &[f32], k: &[f32], v: &[f32], pos0: usize, att: &mut [f32]) {
    let (hd, kvd) = (c.head_dim, c.kv_dim());
    let group = c.n_heads / c.n_kv_heads;
    let scale = 1.0 / (hd as f32).sqrt();
    let one = |(j, out): (usize, &mut [f32])| {
        let (i, head) = (j / c.n_heads, j % c.n_heads);
        let off = (head / group) * hd;
        let qh = &q[j * hd..(j + 1) * hd];
        let n_pos = pos0 + i + 1;
        let mut s: Vec<f32> = (0..n_pos)
            .map(|p| dot(qh, &k[p * kvd + off..p * kvd + off + hd]) * scale)
            .collect();
        softmax(&mut s);
        out.fill(0.0);
        for (p, &w) in s.iter().enumerate() {
            let vp = &v[p * kvd + off..p * kvd + off + hd];
            out.iter_mut().zip(vp).for_each(|(o, &x)| *o += w * x);
        }
    };
    // Threads only where the work pays for waking them.
    let heads = att.len() / hd;
    let work = heads * (pos0 + heads / c.n_heads) * hd;
    if work < WORTH_THREADS {
        att.chunks_mut(hd).enumerate().for_each(one);
    } else {
        att.par_chunks_mut(hd).enumerate().for_each(one);
    }
}

/// Multiply-adds (queries x heads x positions x head width) below which attention runs on the
/// calling thread: waking a native rayon thread costs a few microseconds (natively, SmolLM2's
/// decode measured ~15% slower with a threshold of 2^18), a browser worker's far more.
const WORTH_THREADS: usize = if cfg!(target_arch = "wasm32") {
    1 << 17
} else {
    1 << 12
};

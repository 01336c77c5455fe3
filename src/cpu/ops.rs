//! The reference's building blocks, plain f32 loops. Kernel tests compare each WGSL kernel
//! with these.
use crate::model::Config;

pub fn rmsnorm(out: &mut [f32], x: &[f32], g: &[f32], eps: f32) {
    let ss: f32 = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let inv = 1.0 / (ss + eps).sqrt();
    for ((o, &v), &w) in out.iter_mut().zip(x).zip(g) {
        *o = v * inv * w;
    }
}

/// RMSNorm of every `g.len()`-wide head of `x`, in place (Qwen3's q/k norm).
pub fn head_rmsnorm(x: &mut [f32], g: &[f32], eps: f32) {
    for h in x.chunks_exact_mut(g.len()) {
        let v = h.to_vec();
        rmsnorm(h, &v, g, eps);
    }
}

/// out[r] = sum_c w[r, c] * x[c]; rows split over threads when the matrix is large.
pub fn matvec(out: &mut [f32], w: &[f32], x: &[f32]) {
    let cols = x.len();
    let rows_fn = |out: &mut [f32], w: &[f32]| {
        for (o, row) in out.iter_mut().zip(w.chunks_exact(cols)) {
            *o = row.iter().zip(x).map(|(a, b)| a * b).sum();
        }
    };
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if threads < 2 || out.len() * cols < 1 << 20 {
        return rows_fn(out, w);
    }
    let per = out.len().div_ceil(threads);
    std::thread::scope(|s| {
        for (o, wc) in out.chunks_mut(per).zip(w.chunks(per * cols)) {
            s.spawn(move || rows_fn(o, wc));
        }
    });
}

pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// RoPE in place on every head of `x` at position `pos`; `table` is Config::rope_table.
pub fn rope(c: &Config, table: &[f32], x: &mut [f32], pos: usize) {
    let half = c.head_dim / 2;
    for head in x.chunks_exact_mut(c.head_dim) {
        for i in 0..half {
            let (a, b) = c.rope_pair(i);
            let cs = table[(pos * half + i) * 2];
            let sn = table[(pos * half + i) * 2 + 1];
            let (x0, x1) = (head[a], head[b]);
            head[a] = x0 * cs - x1 * sn;
            head[b] = x0 * sn + x1 * cs;
        }
    }
}

/// One query head over positions 0..n_pos of a KV cache laid out [pos][kv_dim]; the head's
/// slice starts at `off`. `scores` is scratch of at least n_pos.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    kv_dim: usize,
    off: usize,
    n_pos: usize,
    scores: &mut [f32],
    out: &mut [f32],
) {
    let hd = q.len();
    let scale = 1.0 / (hd as f32).sqrt();
    let s = &mut scores[..n_pos];
    for (p, sp) in s.iter_mut().enumerate() {
        let kp = &k[p * kv_dim + off..p * kv_dim + off + hd];
        *sp = q.iter().zip(kp).map(|(x, y)| x * y).sum::<f32>() * scale;
    }
    let mx = s.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for sp in s.iter_mut() {
        *sp = (*sp - mx).exp();
        sum += *sp;
    }
    out.fill(0.0);
    for (p, &sp) in s.iter().enumerate() {
        let vp = &v[p * kv_dim + off..p * kv_dim + off + hd];
        for (o, &vv) in out.iter_mut().zip(vp) {
            *o += sp / sum * vv;
        }
    }
}

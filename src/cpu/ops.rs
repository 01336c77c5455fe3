//! The reference's building blocks, plain f32 loops. Kernel tests compare each WGSL kernel
//! with these.
use crate::model::{Config, Weight};

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
    par_rows(out, cols, &|r0, out: &mut [f32]| {
        let w = &w[r0 * cols..(r0 + out.len()) * cols];
        for (o, row) in out.iter_mut().zip(w.chunks_exact(cols)) {
            *o = dot(row, x);
        }
    });
}

/// `matvec` over a weight in its stored type: each row is dequantised into a scratch row just
/// before its dot product, so the reference holds no f32 copy of the model (SmolLM2's would be
/// 540 MB). Bit-identical to `matvec` over `w.to_f32()`.
pub fn matvec_weight(out: &mut [f32], w: &Weight, x: &[f32]) {
    let cols = x.len();
    debug_assert_eq!((w.rows(), w.cols()), (out.len(), cols));
    par_rows(out, cols, &|r0, out: &mut [f32]| {
        let mut row = vec![0f32; cols];
        for (i, o) in out.iter_mut().enumerate() {
            w.row_f32(r0 + i, &mut row);
            *o = dot(&row, x);
        }
    });
}

/// Eight running sums (lane i takes elements i, i + 8, ...), added up at the end: a fixed order
/// the compiler can keep in one vector register, where one running sum is a chain of dependent
/// adds (3-4x slower).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (x, y) in a8.zip(b8) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Runs `rows(first_row, out_part)` over `out` split across the cores when the matrix
/// (out.len() x cols) is large enough to pay for the threads.
pub fn par_rows(out: &mut [f32], cols: usize, rows: &(dyn Fn(usize, &mut [f32]) + Sync)) {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if threads < 2 || out.len() * cols < 1 << 20 {
        return rows(0, out);
    }
    let per = out.len().div_ceil(threads);
    std::thread::scope(|s| {
        for (i, o) in out.chunks_mut(per).enumerate() {
            s.spawn(move || rows(i * per, o));
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

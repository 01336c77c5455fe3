//! Activations quantised for the integer dot products: per block of 32 values d = max|x| / 127
//! and q = round(x / d) (llama.cpp's Q8_0 rule), with each block's sum of q kept for the
//! formats whose values carry an offset (Q4_0's -8, Q4_1's min).
use crate::model::dtype::QK;

/// A vector in 8-bit blocks: `qs` holds the values, `d` each block's scale, `sums` each
/// block's sum of q; `f` the vector as given (the float types' products read it, and the
/// reference's kernels where a type has no fast one).
#[derive(Debug, Clone, Default)]
pub struct Q8Vec {
    pub d: Vec<f32>,
    pub qs: Vec<i8>,
    pub sums: Vec<i32>,
    /// d times sums, for the mins' terms.
    pub ds: Vec<f32>,
    pub f: Vec<f32>,
}

impl Q8Vec {
    /// `x` quantised. A length that is not a multiple of 32 gives no blocks (no block format's
    /// rows are that long): only `f`.
    pub fn quantize(x: &[f32]) -> Q8Vec {
        let mut v = Q8Vec::default();
        v.set(x);
        v
    }

    /// Quantise `x` into this vector, reusing its buffers.
    pub fn set(&mut self, x: &[f32]) {
        self.f.clear();
        self.f.extend_from_slice(x);
        self.d.clear();
        self.sums.clear();
        self.ds.clear();
        if x.len() % QK != 0 {
            self.qs.clear();
            return;
        }
        let n = x.len() / QK;
        self.qs.resize(x.len(), 0);
        for (b, q) in x.chunks_exact(QK).zip(self.qs.chunks_exact_mut(QK)) {
            let amax = b.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
            let mut sum = 0i32;
            for (o, v) in q.iter_mut().zip(b) {
                *o = (v * inv).round() as i8;
                sum += *o as i32;
            }
            self.d.push(d);
            self.sums.push(sum);
            self.ds.push(d * sum as f32);
        }
        debug_assert_eq!(self.d.len(), n);
    }

    pub fn blocks(&self) -> usize {
        self.d.len()
    }
}

/// `x`, n rows of `cols` values, quantised row by row into `out` (its buffers reused).
pub fn quantize_rows(x: &[f32], cols: usize, out: &mut Vec<Q8Vec>) {
    let n = x.len() / cols;
    out.resize_with(n, Q8Vec::default);
    for (row, q) in x.chunks_exact(cols).zip(out.iter_mut()) {
        q.set(row);
    }
}

//! Activations quantised for the integer dot products: per block of 32 values d = max|x| / 127
//! and q = round(x / d) (llama.cpp's Q8_0 rule), with each block's sum of q kept for the
//! formats whose values carry an offset (Q4_0's -8, Q4_1's min).
use crate::model::dtype::QK;

/// A vector in 8-bit blocks: `qs` holds the values, `d` each block's scale, `sums` each
/// block's sum of q.
#[derive(Debug, Clone, Default)]
pub struct Q8Vec {
    pub d: Vec<f32>,
    pub qs: Vec<i8>,
    pub sums: Vec<i32>,
}

impl Q8Vec {
    /// `x` quantised; its length must be a multiple of 32 (every block format's rows are).
    pub fn quantize(x: &[f32]) -> Q8Vec {
        let mut v = Q8Vec::default();
        v.set(x);
        v
    }

    /// Quantise `x` into this vector, reusing its buffers.
    pub fn set(&mut self, x: &[f32]) {
        debug_assert_eq!(x.len() % QK, 0);
        let n = x.len() / QK;
        self.d.clear();
        self.sums.clear();
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
        }
        debug_assert_eq!(self.d.len(), n);
    }

    pub fn blocks(&self) -> usize {
        self.d.len()
    }
}

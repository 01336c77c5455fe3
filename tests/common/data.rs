//! Test data that native and browser kernel tests share: random weights in every format with
//! their CPU dequantisation, the CPU matmul, seeded numbers and the comparison with a tolerance.
#![allow(dead_code)]
use half::{bf16, f16};
use tide_gpu::cpu::ops;
use tide_gpu::decoder::specs::{Epilogue, Matmul, Spec};
use tide_gpu::gpu::harness::Data;
use tide_gpu::gpu::repack;
use tide_gpu::model::dtype::{dequantize, DType};

pub const ALL: [DType; 6] = [
    DType::F32,
    DType::F16,
    DType::BF16,
    DType::Q8_0,
    DType::Q4_0,
    DType::Q4_1,
];

/// splitmix64: deterministic data without a dependency.
pub struct Rng(pub u64);
impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }
    /// uniform in [-1, 1)
    pub fn f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.f32() * scale).collect()
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// Largest |gpu - cpu| / max(1, |cpu|) (absolute for small values, relative for large ones)
/// and where it occurs; panics with context above `tol`.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) -> f32 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = (0.0f32, 0usize);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let d = (g - w).abs() / w.abs().max(1.0);
        assert!(!g.is_nan(), "{what}: NaN at {i}");
        if d > worst.0 {
            worst = (d, i);
        }
    }
    assert!(
        worst.0 <= tol,
        "{what}: max |gpu - cpu| / max(1, |cpu|) = {} at {} (gpu {}, cpu {}), tolerance {tol}",
        worst.0,
        worst.1,
        got[worst.1],
        want[worst.1]
    );
    worst.0
}

pub fn step(pos0: u32, n_tok: u32, n_pen: u32, penalty: f32) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend(pos0.to_le_bytes());
    v.extend(n_tok.to_le_bytes());
    v.extend(n_pen.to_le_bytes());
    v.extend(penalty.to_le_bytes());
    v
}

/// Random file-format bytes for a [rows, cols] tensor of `dtype` (quant blocks get random
/// nibbles/bytes and small random f16 scales), and the same tensor dequantised by the CPU.
pub fn random_weight(rng: &mut Rng, dtype: DType, rows: usize, cols: usize) -> (Vec<u8>, Vec<f32>) {
    let n = rows * cols;
    let mut bytes = Vec::new();
    match dtype {
        DType::F32 => rng
            .vec(n, 0.5)
            .iter()
            .for_each(|v| bytes.extend(v.to_le_bytes())),
        DType::F16 => rng
            .vec(n, 0.5)
            .iter()
            .for_each(|v| bytes.extend(f16::from_f32(*v).to_le_bytes())),
        DType::BF16 => rng
            .vec(n, 0.5)
            .iter()
            .for_each(|v| bytes.extend(bf16::from_f32(*v).to_le_bytes())),
        DType::Q8_0 | DType::Q4_0 | DType::Q4_1 => {
            for _ in 0..n / 32 {
                bytes.extend(f16::from_f32(rng.f32() * 0.05).to_le_bytes());
                if dtype == DType::Q4_1 {
                    bytes.extend(f16::from_f32(rng.f32() * 0.2).to_le_bytes());
                }
                let q = if dtype == DType::Q8_0 { 32 } else { 16 };
                bytes.extend(rng.bytes(q));
            }
        }
    }
    let mut deq = vec![0.0; n];
    dequantize(dtype, &bytes, &mut deq);
    (bytes, deq)
}

pub fn words(dtype: DType, bytes: &[u8]) -> Vec<u32> {
    let mut w = Vec::new();
    repack(dtype, bytes, &mut w);
    w
}

pub fn as_f32(v: &[u32]) -> Vec<f32> {
    v.iter().map(|&x| f32::from_bits(x)).collect()
}

/// CPU: y[t] = W x[t] (x optionally RMS-normalised with gamma).
pub fn cpu_matmul(
    w: &[f32],
    rows: usize,
    cols: usize,
    x: &[f32],
    gamma: Option<&[f32]>,
    eps: f32,
) -> Vec<Vec<f32>> {
    x.chunks(cols)
        .map(|xt| {
            let mut a = xt.to_vec();
            if let Some(g) = gamma {
                ops::rmsnorm(&mut a, xt, g, eps);
            }
            let mut y = vec![0.0; rows];
            ops::matvec(&mut y, w, &a);
            y
        })
        .collect()
}

/// One matmul test: the op, its weights and inputs, and the CPU reference's answer.
pub struct MatmulCase {
    pub m: Matmul,
    pub n_tok: u32,
    wb: Vec<u8>,
    x: Vec<f32>,
    /// The bindings after x: h0 (residual), or gamma and the output (SwiGLU).
    tail: Vec<Data>,
    pub want: Vec<f32>,
}

impl MatmulCase {
    /// h += W x for `n_tok` tokens of random data.
    pub fn residual(rng: &mut Rng, dtype: DType, rows: usize, cols: usize, n_tok: u32) -> Self {
        let (wb, wf) = random_weight(rng, dtype, rows, cols);
        let x = rng.vec(n_tok as usize * cols, 1.0);
        let h0 = rng.vec(n_tok as usize * rows, 1.0);
        let want = cpu_matmul(&wf, rows, cols, &x, None, 0.0)
            .concat()
            .iter()
            .zip(&h0)
            .map(|(y, h)| y + h)
            .collect();
        let m = Matmul {
            epi: Epilogue::Residual,
            norm: None,
            dtype,
            cols,
            rows,
            row0: 0,
        };
        MatmulCase {
            m,
            n_tok,
            wb,
            x,
            tail: vec![Data::F32(h0)],
            want,
        }
    }

    /// RMSNorm(x) * gamma, then gate and up (2 * ffn rows) and SwiGLU.
    pub fn swiglu(rng: &mut Rng, dtype: DType, ffn: usize, cols: usize, n_tok: u32) -> Self {
        let (wb, wf) = random_weight(rng, dtype, 2 * ffn, cols);
        let x = rng.vec(n_tok as usize * cols, 1.0);
        let g = rng.vec(cols, 1.0);
        let want = cpu_matmul(&wf, 2 * ffn, cols, &x, Some(&g), 1e-5)
            .iter()
            .flat_map(|y| (0..ffn).map(move |j| ops::silu(y[j]) * y[ffn + j]))
            .collect();
        let m = Matmul {
            epi: Epilogue::SwiGlu { ffn },
            norm: Some(1e-5),
            dtype,
            cols,
            rows: 2 * ffn,
            row0: 0,
        };
        let out = Data::F32(vec![0.0; n_tok as usize * ffn]);
        MatmulCase {
            m,
            n_tok,
            wb,
            x,
            tail: vec![Data::F32(g), out],
            want,
        }
    }

    /// Every binding's data as spec `s` reads it.
    pub fn data(&self, s: &Spec) -> Vec<Data> {
        let mut d = vec![
            Data::Bytes(step(0, self.n_tok, 0, 1.0)),
            Data::U32(words(self.m.dtype, &self.wb)),
            super::x_data(s, &self.x, self.m.cols),
        ];
        d.extend(self.tail.iter().cloned());
        d
    }
}

/// The embedding lookup's test: rows [row0, row0 + rows) of a table in `dtype`, ids inside and
/// outside that chunk; rows for ids outside it must stay as they were (-7).
pub struct EmbedCase {
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    pub row0: usize,
    pub ids: Vec<u32>,
    wb: Vec<u8>,
    wf: Vec<f32>,
}

impl EmbedCase {
    pub fn new(rng: &mut Rng, dtype: DType) -> Self {
        let (rows, cols, row0) = (29usize, 96usize, 100usize);
        let (wb, wf) = random_weight(rng, dtype, rows, cols);
        EmbedCase {
            dtype,
            rows,
            cols,
            row0,
            ids: vec![100, 128, 113, 99, 129],
            wb,
            wf,
        }
    }

    pub fn data(&self) -> Vec<Data> {
        vec![
            Data::Bytes(step(0, self.ids.len() as u32, 0, 1.0)),
            Data::U32(words(self.dtype, &self.wb)),
            Data::U32(self.ids.clone()),
            Data::F32(vec![-7.0; self.ids.len() * self.cols]),
        ]
    }

    /// The lookup's output against the CPU's dequantised rows (exact but for f32 rounding).
    pub fn check(&self, out: &[f32]) {
        let (cols, dtype) = (self.cols, self.dtype);
        for (t, &id) in self.ids.iter().enumerate() {
            let got = &out[t * cols..(t + 1) * cols];
            if (self.row0..self.row0 + self.rows).contains(&(id as usize)) {
                let r = id as usize - self.row0;
                assert_close(
                    &format!("embed {dtype:?} id {id}"),
                    got,
                    &self.wf[r * cols..(r + 1) * cols],
                    1e-6,
                );
            } else {
                assert!(
                    got.iter().all(|&v| v == -7.0),
                    "embed {dtype:?}: wrote a row for id {id} outside the chunk"
                );
            }
        }
    }
}

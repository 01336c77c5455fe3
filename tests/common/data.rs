//! Test data that native and browser kernel tests share: random weights in every format with
//! their CPU dequantisation, the CPU matmul, seeded numbers and the comparison with a tolerance.
#![allow(dead_code)]
use half::{bf16, f16};
use tide_gpu::cpu::ops;
use tide_gpu::decoder::specs::{self, Epilogue, Matmul, Spec};
use tide_gpu::gpu::harness::Data;
use tide_gpu::gpu::repack;
use tide_gpu::model::dtype::{dequantize, DType};
use tide_gpu::model::{Config, RopeLayout};
use tide_gpu::sample;

pub const ALL: [DType; 11] = [
    DType::F32,
    DType::F16,
    DType::BF16,
    DType::Q8_0,
    DType::Q4_0,
    DType::Q4_1,
    DType::Q5_0,
    DType::Q5_1,
    DType::Q4_K,
    DType::Q5_K,
    DType::Q6_K,
];

/// `cols` rounded up to whole blocks of `dtype` (256 for the K-quants), so that every type runs
/// through the same test shapes.
pub fn cols_for(dtype: DType, cols: usize) -> usize {
    cols.next_multiple_of(dtype.block_elems())
}

/// Gate and up (2 * ffn rows over `cols`) after RMSNorm (eps 1e-5), SwiGLU epilogue.
pub fn swiglu_matmul(dtype: DType, ffn: usize, cols: usize) -> Matmul {
    Matmul {
        epi: Epilogue::SwiGlu { ffn },
        norm: Some(1e-5),
        dtype,
        cols,
        rows: 2 * ffn,
        row0: 0,
    }
}

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

/// Most tokens of a step that continue their own sequences (common.wgsl's MAX_SEQS).
pub const MAX_SEQS: usize = 16;

/// The Step uniform (common.wgsl) of one sequence whose position 0 is K/V row 0.
pub fn step(pos0: u32, n_tok: u32, n_pen: u32, penalty: f32) -> Vec<u8> {
    step_in_slot(pos0, n_tok, n_pen, penalty, 0)
}

/// The Step uniform of one sequence whose position 0 is K/V cache row `kv0`.
pub fn step_in_slot(pos0: u32, n_tok: u32, n_pen: u32, penalty: f32, kv0: u32) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend(pos0.to_le_bytes());
    v.extend(n_tok.to_le_bytes());
    v.extend(n_pen.to_le_bytes());
    v.extend(penalty.to_le_bytes());
    for w in [kv0, 0, 0, 0] {
        v.extend(w.to_le_bytes());
    }
    v.resize(32 + MAX_SEQS * 16, 0);
    v
}

/// The Step uniform of tokens that each continue their own sequence: (position, K/V row of
/// that sequence's position 0) per token.
pub fn step_seqs(toks: &[(u32, u32)]) -> Vec<u8> {
    assert!(toks.len() <= MAX_SEQS);
    let mut v = Vec::new();
    for w in [0, toks.len() as u32, 0, 0, 0, 1, 0, 0] {
        v.extend(w.to_le_bytes());
    }
    for &(pos, row0) in toks {
        for w in [pos, row0, 0, 0] {
            v.extend(w.to_le_bytes());
        }
    }
    v.resize(32 + MAX_SEQS * 16, 0);
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
        DType::Q4_K | DType::Q5_K | DType::Q6_K => {
            // Random codes and packed 6-bit scales (every bit pattern is a valid block), with
            // small random f16 d (and dmin) put in: |values| stay below ~1.
            for _ in 0..n / 256 {
                let mut blk = rng.bytes(dtype.block_bytes());
                let d = f16::from_f32(rng.f32() * 1e-3).to_le_bytes();
                if dtype == DType::Q6_K {
                    blk[208..210].copy_from_slice(&d);
                } else {
                    blk[..2].copy_from_slice(&d);
                    blk[2..4].copy_from_slice(&f16::from_f32(rng.f32() * 0.01).to_le_bytes());
                }
                bytes.extend(blk);
            }
        }
        _ => {
            // Scale, [min], [32 high bits], quants.
            for _ in 0..n / 32 {
                bytes.extend(f16::from_f32(rng.f32() * 0.05).to_le_bytes());
                if matches!(dtype, DType::Q4_1 | DType::Q5_1) {
                    bytes.extend(f16::from_f32(rng.f32() * 0.2).to_le_bytes());
                }
                let q = match dtype {
                    DType::Q8_0 => 32,
                    DType::Q5_0 | DType::Q5_1 => 20,
                    _ => 16,
                };
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
    /// `cols` is rounded up to whole blocks of `dtype` (`cols_for`).
    pub fn residual(rng: &mut Rng, dtype: DType, rows: usize, cols: usize, n_tok: u32) -> Self {
        let cols = cols_for(dtype, cols);
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
        let cols = cols_for(dtype, cols);
        let (wb, wf) = random_weight(rng, dtype, 2 * ffn, cols);
        let x = rng.vec(n_tok as usize * cols, 1.0);
        let g = rng.vec(cols, 1.0);
        let want = cpu_matmul(&wf, 2 * ffn, cols, &x, Some(&g), 1e-5)
            .iter()
            .flat_map(|y| (0..ffn).map(move |j| ops::silu(y[j]) * y[ffn + j]))
            .collect();
        let m = swiglu_matmul(dtype, ffn, cols);
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
        let (rows, cols, row0) = (29usize, cols_for(dtype, 96), 100usize);
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

/// softmax of a slice (f64 sums).
pub fn softmax(l: &[f32]) -> Vec<f32> {
    let mx = l.iter().fold(f32::MIN, |a, &b| a.max(b)) as f64;
    let e: Vec<f64> = l.iter().map(|&v| (v as f64 - mx).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.iter().map(|v| (v / sum) as f32).collect()
}

/// The QKV matmul's test: q out, k and v appended to the cache at pos0 + t, RoPE on q and k in
/// `layout`; Q4_1 weights, 3 query heads and 1 KV head of 16, a cache of 16 positions in
/// buffers or (`kv_tex`, CPU adapters) in storage textures, q and k then in slot order.
pub struct QkvCase {
    pub c: Config,
    pub kv_tex: bool,
    pub m: Matmul,
    pub n_tok: u32,
    pub pos0: u32,
    pub ctx_len: usize,
    /// Per token: (position, cache row); and whether each token continues its own sequence
    /// (Step::tok) rather than one sequence from pos0.
    places: Vec<(u32, u32)>,
    seqs: bool,
    /// Rows of the K/V cache (slots x ctx_len).
    cache_rows: usize,
    wb: Vec<u8>,
    x: Vec<f32>,
    g: Vec<f32>,
    table: Vec<f32>,
    /// q | k | v biases (Qwen2), bound at 8.
    bias: Option<Vec<f32>>,
    /// Per-head q and k norm gammas (Qwen3): the matmul stores raw rows, head_norm finishes.
    qk_norm: Option<[Vec<f32>; 2]>,
    /// Per token: the raw q | k | v rows (bias added).
    pub raw: Vec<Vec<f32>>,
    /// Per token: q and k (normed and) roped, v.
    want: Vec<[Vec<f32>; 3]>,
}

impl QkvCase {
    pub fn new(rng: &mut Rng, layout: RopeLayout, n_tok: u32, pos0: u32, kv_tex: bool) -> Self {
        Self::with(rng, layout, n_tok, pos0, kv_tex, false, false)
    }

    /// With q/k/v biases (`bias`) and/or per-head q/k norms (`qk_norm`: the matmul is the
    /// raw QKV and `head_norm_spec` does the rest).
    pub fn with(
        rng: &mut Rng,
        layout: RopeLayout,
        n_tok: u32,
        pos0: u32,
        kv_tex: bool,
        bias: bool,
        qk_norm: bool,
    ) -> Self {
        let places: Vec<(u32, u32)> = (0..n_tok).map(|t| (pos0 + t, pos0 + t)).collect();
        Self::placed(rng, layout, kv_tex, bias, qk_norm, places, false, 1)
    }

    /// Tokens that each continue their own sequence: (slot, position) per token, in a cache
    /// of `slots` sequences of 16 positions.
    pub fn seqs(
        rng: &mut Rng,
        layout: RopeLayout,
        kv_tex: bool,
        qk_norm: bool,
        toks: &[(u32, u32)],
        slots: usize,
    ) -> Self {
        let places = toks.iter().map(|&(s, p)| (p, s * 16 + p)).collect();
        Self::placed(rng, layout, kv_tex, false, qk_norm, places, true, slots)
    }

    #[allow(clippy::too_many_arguments)]
    fn placed(
        rng: &mut Rng,
        layout: RopeLayout,
        kv_tex: bool,
        bias: bool,
        qk_norm: bool,
        places: Vec<(u32, u32)>,
        seqs: bool,
        slots: usize,
    ) -> Self {
        let n_tok = places.len() as u32;
        let pos0 = places[0].0;
        let c = Config {
            vocab: 10,
            dim: 96,
            n_layers: 1,
            n_heads: 3,
            n_kv_heads: 1,
            head_dim: 16,
            ffn_dim: 32,
            rope_theta: 10000.0,
            eps: 1e-5,
            ctx_len: 32,
            rope_layout: layout,
            rope_freq_factors: None,
        };
        let (qd, kvd, ctx_len) = (c.q_dim(), c.kv_dim(), 16usize);
        let rows = qd + 2 * kvd;
        let dtype = DType::Q4_1;
        let (wb, wf) = random_weight(rng, dtype, rows, c.dim);
        let x = rng.vec(n_tok as usize * c.dim, 1.0);
        let g = rng.vec(c.dim, 1.0);
        let table = c.rope_table(ctx_len);
        let m = Matmul {
            epi: Epilogue::Qkv {
                qd,
                kvd,
                head_dim: c.head_dim,
                rope_half: layout == RopeLayout::RotateHalf,
                kv_tex,
                bias,
                raw: qk_norm,
            },
            norm: Some(c.eps),
            dtype,
            cols: c.dim,
            rows,
            row0: 0,
        };
        let bias = bias.then(|| rng.vec(rows, 1.0));
        let qk_norm = qk_norm.then(|| [rng.vec(c.head_dim, 1.0), rng.vec(c.head_dim, 1.0)]);
        let mut raw = cpu_matmul(&wf, rows, c.dim, &x, Some(&g), c.eps);
        if let Some(b) = &bias {
            for y in raw.iter_mut() {
                y.iter_mut().zip(b).for_each(|(y, b)| *y += b);
            }
        }
        let want = raw
            .iter()
            .enumerate()
            .map(|(t, y)| {
                let pos = places[t].0 as usize;
                let mut q = y[..qd].to_vec();
                let mut k = y[qd..qd + kvd].to_vec();
                if let Some([gq, gk]) = &qk_norm {
                    ops::head_rmsnorm(&mut q, gq, c.eps);
                    ops::head_rmsnorm(&mut k, gk, c.eps);
                }
                ops::rope(&c, &table, &mut q, pos);
                ops::rope(&c, &table, &mut k, pos);
                [q, k, y[qd + kvd..].to_vec()]
            })
            .collect();
        QkvCase {
            c,
            kv_tex,
            m,
            n_tok,
            pos0,
            ctx_len,
            places,
            seqs,
            cache_rows: ctx_len * slots,
            wb,
            x,
            g,
            table,
            bias,
            qk_norm,
            raw,
            want,
        }
    }

    pub fn data(&self, s: &Spec) -> Vec<Data> {
        let qd = self.c.q_dim();
        let mut d = vec![
            Data::Bytes(self.step()),
            Data::U32(words(self.m.dtype, &self.wb)),
            super::x_data(s, &self.x, self.c.dim),
            Data::F32(self.g.clone()),
        ];
        if self.qk_norm.is_some() {
            d.push(Data::F32(vec![0.0; self.n_tok as usize * self.m.rows]));
        } else {
            d.extend([
                Data::F32(vec![0.0; self.n_tok as usize * qd]),
                self.cache_data(),
                self.cache_data(),
                Data::F32(self.table.clone()),
            ]);
        }
        d.extend(self.bias.iter().map(|b| Data::F32(b.clone())));
        d
    }

    /// The per-head norm and RoPE kernel that follows a raw QKV matmul (`with(.., qk_norm)`).
    pub fn head_norm_spec(&self) -> Spec {
        let c = &self.c;
        specs::head_norm(
            c.head_dim,
            c.n_heads,
            c.n_kv_heads,
            c.eps,
            c.rope_layout == RopeLayout::RotateHalf,
            self.kv_tex,
        )
    }

    /// head_norm's inputs: the raw rows `raw` (what the matmul stored), gammas, empty outputs.
    pub fn head_norm_data(&self, raw: &[f32]) -> Vec<Data> {
        let [gq, gk] = self.qk_norm.clone().expect("a case with qk_norm");
        vec![
            Data::Bytes(self.step()),
            Data::F32(raw.to_vec()),
            Data::F32(gq),
            Data::F32(gk),
            Data::F32(vec![0.0; self.n_tok as usize * self.c.q_dim()]),
            self.cache_data(),
            self.cache_data(),
            Data::F32(self.table.clone()),
        ]
    }

    /// The Step uniform: one sequence from pos0 in slot 0, or a token per sequence.
    fn step(&self) -> Vec<u8> {
        if self.seqs {
            let toks: Vec<(u32, u32)> = self.places.iter().map(|&(p, r)| (p, r - p)).collect();
            step_seqs(&toks)
        } else {
            step(self.pos0, self.n_tok, 0, 1.0)
        }
    }

    /// An empty K or V cache: a buffer, or texture rows.
    fn cache_data(&self) -> Data {
        let zeros = vec![0.0; self.cache_rows * self.c.kv_dim()];
        if self.kv_tex {
            super::texture_rows(&zeros, self.c.kv_dim())
        } else {
            Data::F32(zeros)
        }
    }

    /// The expected q or k of one token as the kernel stores it: in slot order per head
    /// when the cache is in textures.
    fn stored(&self, v: &[f32]) -> Vec<f32> {
        if !self.kv_tex {
            return v.to_vec();
        }
        let hd = self.c.head_dim;
        let order = specs::slot_order(hd, self.c.rope_layout == RopeLayout::RotateHalf);
        v.chunks(hd)
            .flat_map(|head| order.iter().map(|&i| head[i]).collect::<Vec<_>>())
            .collect()
    }

    /// q, and k and v at their cache positions, of every token (tolerance 2e-4).
    pub fn check(&self, s: &Spec, out: &[Vec<f32>]) {
        let (qd, kvd) = (self.c.q_dim(), self.c.kv_dim());
        let layout = self.c.rope_layout;
        // A cache row's stride: kvd floats, or a texture row.
        let stride = if self.kv_tex {
            tide_gpu::gpu::TEX_WIDTH * 4
        } else {
            kvd
        };
        for (t, [q, k, v]) in self.want.iter().enumerate() {
            let pos = self.places[t].1 as usize;
            let what = format!(
                "qkv {} {layout:?} kv_tex={} T={} t={t} (position, row) {:?}",
                s.shader, self.kv_tex, self.n_tok, self.places[t]
            );
            let (q, k) = (self.stored(q), self.stored(k));
            assert_close(
                &format!("{what} q"),
                &out[0][t * qd..(t + 1) * qd],
                &q,
                2e-4,
            );
            let row = pos * stride..pos * stride + kvd;
            assert_close(&format!("{what} k"), &out[1][row.clone()], &k, 2e-4);
            assert_close(&format!("{what} v"), &out[2][row], v, 2e-4);
        }
    }
}

/// Causal GQA attention's test: 6 query heads over 2 KV heads of `hd` (or `with_heads`), a cache of 80 positions
/// filled with random K/V, `n_tok` queries from `pos0`.
pub struct AttentionCase {
    pub hd: usize,
    pub nh: usize,
    pub nkv: usize,
    pub ctx_len: usize,
    pub n_tok: u32,
    pub pos0: u32,
    /// K/V cache row of position 0 of the one sequence (its slot), or None when each token
    /// continues its own sequence (`places`).
    kv0: Option<u32>,
    /// Per token: (position, K/V cache row of its sequence's position 0).
    places: Vec<(u32, u32)>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    want: Vec<f32>,
}

impl AttentionCase {
    pub fn new(rng: &mut Rng, hd: usize, n_tok: u32, pos0: u32) -> Self {
        Self::with_heads(rng, hd, 6, 2, n_tok, pos0)
    }

    /// `nh` query heads over `nkv` KV heads.
    pub fn with_heads(
        rng: &mut Rng,
        hd: usize,
        nh: usize,
        nkv: usize,
        n_tok: u32,
        pos0: u32,
    ) -> Self {
        Self::in_slot(rng, hd, nh, nkv, n_tok, pos0, 1, 0)
    }

    /// One sequence in slot `slot` of a cache of `slots` sequences of 80 positions each.
    #[allow(clippy::too_many_arguments)]
    pub fn in_slot(
        rng: &mut Rng,
        hd: usize,
        nh: usize,
        nkv: usize,
        n_tok: u32,
        pos0: u32,
        slots: u32,
        slot: u32,
    ) -> Self {
        let places = (0..n_tok).map(|t| (pos0 + t, slot * 80)).collect();
        Self::build(rng, hd, nh, nkv, slots, places, Some(slot * 80))
    }

    /// Each token continues its own sequence: `toks` holds (slot, position) per token, in a
    /// cache of `slots` sequences of 80 positions each.
    pub fn seqs(rng: &mut Rng, hd: usize, slots: u32, toks: &[(u32, u32)]) -> Self {
        let places = toks.iter().map(|&(s, p)| (p, s * 80)).collect();
        Self::build(rng, hd, 6, 2, slots, places, None)
    }

    fn build(
        rng: &mut Rng,
        hd: usize,
        nh: usize,
        nkv: usize,
        slots: u32,
        places: Vec<(u32, u32)>,
        kv0: Option<u32>,
    ) -> Self {
        let ctx_len = 80usize;
        let n_tok = places.len() as u32;
        let (qd, kvd) = (nh * hd, nkv * hd);
        let rows = ctx_len * slots as usize;
        let q = rng.vec(n_tok as usize * qd, 1.0);
        let k = rng.vec(rows * kvd, 1.0);
        let v = rng.vec(rows * kvd, 1.0);
        let mut want = vec![0.0; n_tok as usize * qd];
        let mut scratch = vec![0.0; ctx_len];
        for (t, &(pos, row0)) in places.iter().enumerate() {
            let at = row0 as usize * kvd;
            let (ks, vs) = (&k[at..at + ctx_len * kvd], &v[at..at + ctx_len * kvd]);
            for h in 0..nh {
                let o = t * qd + h * hd;
                ops::attention(
                    &q[o..o + hd],
                    ks,
                    vs,
                    kvd,
                    (h / (nh / nkv)) * hd,
                    pos as usize + 1,
                    &mut scratch,
                    &mut want[o..o + hd],
                );
            }
        }
        AttentionCase {
            hd,
            nh,
            nkv,
            ctx_len,
            n_tok,
            pos0: places[0].0,
            kv0,
            places,
            q,
            k,
            v,
            want,
        }
    }

    /// Several sequences' tokens: the decode kernels with a workgroup row per token.
    pub fn seqs_specs(&self) -> [Spec; 2] {
        let (hd, nh, nkv, ctx_len) = (self.hd, self.nh, self.nkv, self.ctx_len);
        let mut heads = specs::attention_heads(hd, nh, nkv, ctx_len);
        heads.tokens_per_y = 1;
        [specs::attention(hd, nh, nkv, ctx_len), heads]
    }

    /// The GPU kernel (K/V in buffers) and the CPU-adapter one (K/V in textures: row p of the
    /// cache is texture row p): for one token `attention` and `attention_heads`, for a batch
    /// the prefill kernel in both forms.
    pub fn specs(&self) -> [Spec; 2] {
        let (hd, nh, nkv, ctx_len) = (self.hd, self.nh, self.nkv, self.ctx_len);
        if self.n_tok == 1 {
            [
                specs::attention(hd, nh, nkv, ctx_len),
                specs::attention_heads(hd, nh, nkv, ctx_len),
            ]
        } else {
            let p = specs::attention_prefill(hd, nh, nkv, ctx_len);
            [p.clone(), specs::kv_in_textures(p)]
        }
    }

    pub fn data(&self, s: &Spec) -> Vec<Data> {
        let kvd = self.nkv * self.hd;
        let kv = |c: &[f32]| {
            if s.texture_at(2) {
                super::texture_rows(c, kvd)
            } else {
                Data::F32(c.to_vec())
            }
        };
        let n = self.n_tok as usize;
        let step = match self.kv0 {
            Some(kv0) => step_in_slot(self.pos0, self.n_tok, 0, 1.0, kv0),
            None => step_seqs(&self.places),
        };
        vec![
            Data::Bytes(step),
            Data::F32(self.q.clone()),
            kv(&self.k),
            kv(&self.v),
            Data::F32(vec![0.0; n * self.nh * self.ctx_len]),
            Data::F32(vec![0.0; n * self.nh * self.hd]),
        ]
    }

    /// The output O (binding 5, the second ReadWrite) against the CPU's (tolerance 1e-4).
    pub fn check(&self, s: &Spec, out: &[Vec<f32>]) {
        assert_close(
            &format!(
                "attention {} (K/V in {}{}) hd={} T={} pos0={} kv0={:?} places={:?}",
                s.entry,
                if s.texture_at(2) {
                    "textures"
                } else {
                    "buffers"
                },
                if s.defs.0.contains_key("SGKV") {
                    ", subgroups"
                } else {
                    ""
                },
                self.hd,
                self.n_tok,
                self.pos0,
                self.kv0,
                self.places
            ),
            &out[1],
            &self.want,
            1e-4,
        );
    }
}

/// The router kernel's test: softmax over K blocks and NULL of W_r RMSNorm(h) per token.
pub struct RouterCase {
    pub cols: usize,
    pub k: usize,
    pub n_tok: u32,
    h: Vec<f32>,
    g: Vec<f32>,
    wr: Vec<f32>,
    want: Vec<f32>,
}

impl RouterCase {
    pub fn new(rng: &mut Rng, cols: usize, k: usize, n_tok: u32) -> Self {
        let h = rng.vec(n_tok as usize * cols, 1.0);
        let g = rng.vec(cols, 1.0);
        let wr = rng.vec((k + 1) * cols, 0.5);
        let want = cpu_matmul(&wr, k + 1, cols, &h, Some(&g), 1e-5)
            .iter()
            .flat_map(|l| softmax(l))
            .collect();
        RouterCase {
            cols,
            k,
            n_tok,
            h,
            g,
            wr,
            want,
        }
    }

    pub fn spec(&self) -> Spec {
        specs::router(self.cols, self.k, 1e-5)
    }

    pub fn data(&self) -> Vec<Data> {
        vec![
            Data::Bytes(step(0, self.n_tok, 0, 1.0)),
            Data::F32(self.wr.clone()),
            Data::F32(self.h.clone()),
            Data::F32(self.g.clone()),
            Data::F32(vec![0.0; self.n_tok as usize * (self.k + 1)]),
        ]
    }

    /// The router weights against the CPU's softmax (tolerance 1e-5).
    pub fn check(&self, out: &[f32]) {
        assert_close("router", out, &self.want, 1e-5);
    }
}

/// TIDE memory rows' test: 3 tokens x K = 5 rows of 96 in `dtype`, decoded, RMS-normalised and
/// scaled by the block's gamma, or just decoded when the tables are stored `normalized`. The
/// SVD form stores A_k rows of `width` values and rebuilds each row as A_k[v] B_k first.
pub struct MemoryRowsCase {
    pub dtype: DType,
    pub normalized: bool,
    pub cols: usize,
    pub k: usize,
    pub n_tok: u32,
    pub eps: f32,
    /// SVD: the stored width and the K bases [K, width, cols].
    svd: Option<(usize, Vec<f32>)>,
    /// The bases are bound as f16 (their values above are f16's).
    basis_f16: bool,
    wb: Vec<u8>,
    gamma: Vec<f32>,
    want: Vec<f32>,
}

impl MemoryRowsCase {
    pub fn new(rng: &mut Rng, dtype: DType, normalized: bool) -> Self {
        Self::build(rng, dtype, normalized, None, false)
    }

    /// Stored A_k rows `width` wide (a multiple of 32) and bases whose last rows are zero, as
    /// `tide compress` pads a rank to whole blocks; `basis_f16`: the bases in f16, as `tide
    /// compress` writes them by default.
    pub fn svd(
        rng: &mut Rng,
        dtype: DType,
        normalized: bool,
        width: usize,
        basis_f16: bool,
    ) -> Self {
        Self::build(rng, dtype, normalized, Some(width), basis_f16)
    }

    fn build(
        rng: &mut Rng,
        dtype: DType,
        normalized: bool,
        width: Option<usize>,
        basis_f16: bool,
    ) -> Self {
        let (cols, k, n_tok, eps) = (96usize, 5usize, 3u32, 1e-5f32);
        let n = n_tok as usize * k;
        let w = width.unwrap_or(cols);
        let (wb, wf) = random_weight(rng, dtype, n, w);
        let gamma = rng.vec(k * cols, 1.0);
        let svd = width.map(|w| {
            let mut b = rng.vec(k * w * cols, 0.3);
            // The padding rows beyond the rank (here the last 7 of each block) are zero.
            for blk in b.chunks_mut(w * cols) {
                blk[(w - 7) * cols..].fill(0.0);
            }
            if basis_f16 {
                b.iter_mut()
                    .for_each(|x| *x = half::f16::from_f32(*x).to_f32());
            }
            (w, b)
        });
        // The decoded rows, rebuilt through B_k in f64 for the SVD form.
        let rows: Vec<Vec<f64>> = wf
            .chunks(w)
            .enumerate()
            .map(|(row, a)| match &svd {
                None => a.iter().map(|x| *x as f64).collect(),
                Some((w, b)) => {
                    let bk = &b[(row % k) * w * cols..(row % k + 1) * w * cols];
                    (0..cols)
                        .map(|j| (0..*w).map(|i| a[i] as f64 * bk[i * cols + j] as f64).sum())
                        .collect()
                }
            })
            .collect();
        let want: Vec<f32> = rows
            .iter()
            .enumerate()
            .flat_map(|(row, v)| {
                let ms = v.iter().map(|x| x * x).sum::<f64>() / cols as f64;
                let r = 1.0 / (ms + eps as f64).sqrt();
                let g = &gamma[(row % k) * cols..(row % k + 1) * cols];
                v.iter()
                    .zip(g)
                    .map(|(x, g)| {
                        if normalized {
                            *x as f32
                        } else {
                            (x * r) as f32 * g
                        }
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        MemoryRowsCase {
            dtype,
            normalized,
            cols,
            k,
            n_tok,
            eps,
            svd,
            basis_f16,
            wb,
            gamma,
            want,
        }
    }

    /// Both kernels: a workgroup per row (GPUs), a lane per row (CPU adapters); the SVD form
    /// has one kernel for every adapter.
    pub fn specs(&self) -> Vec<Spec> {
        let (d, c, k, e, n) = (self.dtype, self.cols, self.k, self.eps, self.normalized);
        match &self.svd {
            Some((w, _)) => vec![specs::memory_rows_svd(d, c, (*w, self.basis_f16), k, e, n)],
            None => vec![
                specs::memory_rows(d, c, k, e, n),
                specs::memory_rows_by_lane(d, c, k, e, n),
            ],
        }
    }

    pub fn data(&self) -> Vec<Data> {
        let mut v = vec![
            Data::Bytes(step(0, self.n_tok, 0, 1.0)),
            Data::U32(words(self.dtype, &self.wb)),
            Data::F32(self.gamma.clone()),
            Data::F32(vec![0.0; self.n_tok as usize * self.k * self.cols]),
        ];
        if let Some((_, b)) = &self.svd {
            v.push(if self.basis_f16 {
                let h: Vec<half::f16> = b.iter().map(|&x| half::f16::from_f32(x)).collect();
                Data::Bytes(bytemuck::cast_slice(&h).to_vec())
            } else {
                Data::F32(b.clone())
            });
        }
        v
    }

    /// The rows against the CPU's (tolerance 1e-5; 1e-4 for the SVD form, whose rows are
    /// sums of `width` products in f32).
    pub fn check(&self, s: &Spec, out: &[f32]) {
        let name = format!(
            "memory rows {} {:?} normalized={} f16 basis={}",
            s.entry, self.dtype, self.normalized, self.basis_f16
        );
        let tol = if self.svd.is_some() { 1e-4 } else { 1e-5 };
        assert_close(&name, out, &self.want, tol);
    }
}

/// Top-k and repetition penalty over random logits of a 5003-token vocabulary, with a tie at
/// the top (ids 17 and 4000: the lower id first) and a NaN (id 99, never chosen).
pub struct SampleCase {
    pub vocab: usize,
    logits: Vec<f32>,
    pub pen_ids: Vec<u32>,
    pub penalty: f32,
}

impl SampleCase {
    pub fn new(rng: &mut Rng) -> Self {
        let vocab = 5003;
        let mut logits = rng.vec(vocab, 10.0);
        logits[17] = 50.0;
        logits[4000] = 50.0; // tie with 17: lower id first
        logits[99] = f32::NAN; // never chosen
        SampleCase {
            vocab,
            logits,
            pen_ids: vec![17, 5, 250, 4999],
            penalty: 1.3,
        }
    }

    pub fn top_k_spec(&self, k: usize) -> Spec {
        specs::top_k(k, self.vocab)
    }

    pub fn top_k_data(&self, k: usize) -> Vec<Data> {
        vec![
            Data::Bytes(step(0, 1, 0, 1.0)),
            Data::F32(self.logits.clone()),
            Data::U32(vec![0]),
            Data::F32(vec![0.0; 256 * k]),
            Data::U32(vec![0; 256 * k]),
            Data::U32(vec![0; 2 * k]),
        ]
    }

    /// OUT (the fourth ReadWrite binding's words: k ids, then k values' bits) equals a CPU sort
    /// (value desc, id asc on ties), exactly.
    pub fn check_top_k(&self, k: usize, out: &[u32]) {
        let got: Vec<(u32, f32)> = (0..k)
            .map(|j| (out[j], f32::from_bits(out[k + j])))
            .collect();
        let want = sample::top_k_of(&self.logits, k);
        assert_eq!(got, want, "top-{k}");
    }

    pub fn penalty_spec(&self) -> Spec {
        specs::penalize(self.vocab, self.pen_ids.len())
    }

    pub fn penalty_data(&self) -> Vec<Data> {
        vec![
            Data::Bytes(step(0, 1, self.pen_ids.len() as u32, self.penalty)),
            Data::F32(self.logits.clone()),
            Data::U32(self.pen_ids.clone()),
        ]
    }

    /// Penalised logits equal the CPU's exactly: positive ones divided, negative multiplied,
    /// other ids untouched (NaN stays NaN).
    pub fn check_penalty(&self, got: &[f32]) {
        let mut want = self.logits.clone();
        sample::apply_repeat_penalty(&mut want, &self.pen_ids, self.penalty);
        for i in 0..self.vocab {
            assert!(
                got[i] == want[i] || (got[i].is_nan() && want[i].is_nan()),
                "penalty at {i}: {} vs {}",
                got[i],
                want[i]
            );
        }
    }
}

/// LIMe's mix (lime.wgsl) at layer 2 of a batch of 3 tokens, 6 query heads over 3 KV heads of
/// 16: each token's k and v heads in the raw QKV rows become MIX [3, 9] times the raw heads of
/// layers 0..=2 (layers 0 and 1 from HIST), q is left alone, and the raw heads go to HIST for
/// later layers; expected values by the formula of docs/format.md.
pub struct LimeCase {
    pub n_tok: u32,
    raw: Vec<f32>,
    hist: Vec<f32>,
    mix: Vec<f32>,
    want_raw: Vec<f32>,
    want_hist: Vec<f32>,
}

const LIME: (usize, usize, usize, usize, usize) = (16, 6, 3, 2, 4); // hd, heads, R, layer, batch

impl LimeCase {
    pub fn new(rng: &mut Rng) -> Self {
        let (hd, nh, r, layer, mb) = LIME;
        let n_tok = 3usize;
        let (qd, kvd) = (nh * hd, r * hd);
        let rows = qd + 2 * kvd;
        let raw = rng.vec(n_tok * rows, 1.0);
        let hist = rng.vec(3 * mb * 2 * kvd, 1.0);
        let mix = rng.vec(r * (layer + 1) * r, 1.0);
        let at = |l: usize, t: usize, kv: usize, head: usize, d: usize| {
            ((l * mb + t) * 2 + kv) * kvd + head * hd + d
        };
        let (mut want_raw, mut want_hist) = (raw.clone(), hist.clone());
        for t in 0..n_tok {
            for kv in 0..2 {
                let own = |head: usize, d: usize| raw[t * rows + qd + kv * kvd + head * hd + d];
                for head in 0..r {
                    for d in 0..hd {
                        want_hist[at(layer, t, kv, head, d)] = own(head, d);
                        let mut acc = 0.0;
                        for j in 0..(layer + 1) * r {
                            let (l, q) = (j / r, j % r);
                            let x = if l == layer {
                                own(q, d)
                            } else {
                                hist[at(l, t, kv, q, d)]
                            };
                            acc += mix[head * (layer + 1) * r + j] * x;
                        }
                        want_raw[t * rows + qd + kv * kvd + head * hd + d] = acc;
                    }
                }
            }
        }
        LimeCase {
            n_tok: n_tok as u32,
            raw,
            hist,
            mix,
            want_raw,
            want_hist,
        }
    }

    pub fn spec(&self) -> Spec {
        let (hd, nh, r, layer, mb) = LIME;
        specs::lime_mix(hd, nh, r, layer, mb)
    }

    pub fn data(&self) -> Vec<Data> {
        vec![
            Data::Bytes(step(0, self.n_tok, 0, 1.0)),
            Data::F32(self.raw.clone()),
            Data::F32(self.hist.clone()),
            Data::F32(self.mix.clone()),
        ]
    }

    /// RAW (mixed k and v, q untouched; 1e-5) and HIST (the raw heads, exact).
    pub fn check(&self, out: &[Vec<f32>]) {
        assert_close(
            "lime: mixed k and v (q untouched)",
            &out[0],
            &self.want_raw,
            1e-5,
        );
        assert_close(
            "lime: raw heads kept for later layers",
            &out[1],
            &self.want_hist,
            0.0,
        );
    }
}

/// Engram's kernels (engram.wgsl) for three tokens of three sequences at their own positions
/// and slots (two of them close enough to the start that some convolution taps fall before
/// it): the gate (4-bit stored rows decoded, k | v projected, v~ and the history row at each
/// token's position) and the convolution with the residual add, each from inputs computed here.
pub struct EngramCase {
    pub toks: Vec<(u32, u32)>,
    wb: Vec<u8>,
    w: Vec<f32>,
    b: Vec<f32>,
    h: Vec<f32>,
    norms: Vec<f32>,
    vt: Vec<f32>,
    conv_before: Vec<f32>,
    conv_after: Vec<f32>,
    taps: Vec<f32>,
    h_after: Vec<f32>,
}

const ENGRAM: (usize, usize, usize, f32) = (48, 128, 64, 1e-5); // dim, d_mem, ctx, eps

impl EngramCase {
    pub fn new(rng: &mut Rng) -> Self {
        let (d, dm, ctx, eps) = ENGRAM;
        let toks = vec![(2u32, 0u32), (12, ctx as u32), (9, 2 * ctx as u32)];
        let n = toks.len();
        // Each token's rows: 4 tables of 32 values, stored Q4_1, token-major.
        let (wb, e) = random_weight(rng, DType::Q4_1, n * dm / 32, 32);
        let w = rng.vec(2 * d * dm, 0.2);
        let b = rng.vec(2 * d, 0.5);
        let mut kv = vec![0f32; n * 2 * d];
        for t in 0..n {
            for o in 0..2 * d {
                let row = &w[o * dm..(o + 1) * dm];
                let x = &e[t * dm..(t + 1) * dm];
                kv[t * 2 * d + o] = row.iter().zip(x).map(|(a, b)| a * b).sum::<f32>() + b[o];
            }
        }
        let h = rng.vec(n * d, 1.0);
        let norms: Vec<f32> = (0..3 * d).map(|_| 0.5 + rng.f32().abs()).collect();
        let rms = |x: &[f32]| 1.0 / (x.iter().map(|v| v * v).sum::<f32>() / d as f32 + eps).sqrt();
        let conv_before = rng.vec(3 * ctx * d, 1.0);
        let (mut vt, mut conv_after) = (vec![0f32; n * d], conv_before.clone());
        for (t, &(pos, row0)) in toks.iter().enumerate() {
            let (ht, k) = (&h[t * d..(t + 1) * d], &kv[t * 2 * d..t * 2 * d + d]);
            let (rh, rk) = (rms(ht), rms(k));
            let dot: f32 = (0..d)
                .map(|c| ht[c] * rh * norms[c] * k[c] * rk * norms[d + c])
                .sum::<f32>()
                / (d as f32).sqrt();
            let sign = if dot == 0.0 { 0.0 } else { dot.signum() };
            let g = 1.0 / (1.0 + (-(dot.abs().max(1e-6).sqrt() * sign)).exp());
            for c in 0..d {
                vt[t * d + c] = g * kv[t * 2 * d + d + c];
            }
            let rv = rms(&vt[t * d..(t + 1) * d]);
            let at = (row0 + pos) as usize * d;
            for c in 0..d {
                conv_after[at + c] = vt[t * d + c] * rv * norms[2 * d + c];
            }
        }
        let taps = rng.vec(d * 4, 0.7);
        let mut h_after = h.clone();
        for (t, &(pos, row0)) in toks.iter().enumerate() {
            for c in 0..d {
                let mut acc = 0.0;
                for i in 0..4 {
                    // Tap i reads position pos - 9 + 3 i, zero before the start.
                    if pos as usize + 3 * i >= 9 {
                        let p = row0 as usize + pos as usize + 3 * i - 9;
                        acc += taps[c * 4 + i] * conv_after[p * d + c];
                    }
                }
                h_after[t * d + c] += vt[t * d + c] + acc / (1.0 + (-acc).exp());
            }
        }
        EngramCase {
            toks,
            wb,
            w,
            b,
            h,
            norms,
            vt,
            conv_before,
            conv_after,
            taps,
            h_after,
        }
    }

    /// The two kernels: gate, conv.
    pub fn specs(&self) -> [Spec; 2] {
        let (d, dm, _, eps) = ENGRAM;
        [
            specs::engram_gate(DType::Q4_1, d, dm, eps),
            specs::engram_conv(d),
        ]
    }

    pub fn data(&self, s: &Spec) -> Vec<Data> {
        let st = Data::Bytes(step_seqs(&self.toks));
        let n = self.toks.len();
        let (d, _, _, _) = ENGRAM;
        match s.entry {
            "gate" => vec![
                st,
                Data::U32(words(DType::Q4_1, &self.wb)),
                Data::F32(self.w.clone()),
                Data::F32(self.b.clone()),
                Data::F32(self.h.clone()),
                Data::F32(self.norms.clone()),
                Data::F32(vec![0.0; n * d]),
                Data::F32(self.conv_before.clone()),
            ],
            _ => vec![
                st,
                Data::F32(self.h.clone()),
                Data::F32(self.vt.clone()),
                Data::F32(self.conv_after.clone()),
                Data::F32(self.taps.clone()),
            ],
        }
    }

    /// Outputs against the formulas: v~ (1e-5) and the history rows (1e-5, the others
    /// untouched), h after the add (1e-5).
    pub fn check(&self, s: &Spec, out: &[Vec<f32>]) {
        match s.entry {
            "gate" => {
                assert_close("engram: gated v", &out[0], &self.vt, 1e-5);
                assert_close("engram: history rows", &out[1], &self.conv_after, 1e-5)
            }
            _ => assert_close("engram: h + Y", &out[0], &self.h_after, 1e-5),
        };
    }
}

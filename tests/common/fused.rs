//! Cases of the fused kernels that native and browser tests share: TIDE's FFN-down epilogue
//! (residual + memory), the router logits riding in the SwiGLU matvec, and the LM head's store
//! with its RMSNorm. Each holds its inputs and the CPU's answer.
use super::data::{cpu_matmul, random_weight, softmax, step, swiglu_matmul, words, Rng};
use super::{assert_close, texture_rows, x_data};
use tide_gpu::cpu::ops;
use tide_gpu::decoder::specs::{Epilogue, Matmul, Spec};
use tide_gpu::gpu::harness::Data;
use tide_gpu::model::dtype::DType;

/// h += W x + sum_k alpha_k M_k[row] for `n_tok` tokens: Q4_1, 44 rows of 96, K = 5.
pub struct ResidualMemoryCase {
    pub m: Matmul,
    pub n_tok: u32,
    wb: Vec<u8>,
    x: Vec<f32>,
    h0: Vec<f32>,
    mem: Vec<f32>,
    /// Router logits per token (K + 1 each) and their softmax, the router's weights.
    logits: Vec<f32>,
    alpha: Vec<f32>,
    ys: Vec<Vec<f32>>,
}

impl ResidualMemoryCase {
    pub fn new(rng: &mut Rng, n_tok: u32) -> Self {
        let (rows, cols, k) = (44usize, 96usize, 5usize);
        let dtype = DType::Q4_1;
        let n = n_tok as usize;
        let (wb, wf) = random_weight(rng, dtype, rows, cols);
        let x = rng.vec(n * cols, 1.0);
        let h0 = rng.vec(n * rows, 1.0);
        let mem = rng.vec(n * k * rows, 1.0);
        let logits = rng.vec(n * (k + 1), 3.0);
        let alpha = logits.chunks(k + 1).flat_map(softmax).collect();
        let m = Matmul {
            epi: Epilogue::ResidualMemory { k },
            norm: None,
            dtype,
            cols,
            rows,
            row0: 0,
        };
        let ys = cpu_matmul(&wf, rows, cols, &x, None, 0.0);
        ResidualMemoryCase {
            m,
            n_tok,
            wb,
            x,
            h0,
            mem,
            logits,
            alpha,
            ys,
        }
    }

    fn k(&self) -> usize {
        match self.m.epi {
            Epilogue::ResidualMemory { k } => k,
            _ => unreachable!(),
        }
    }

    /// What h becomes; `switch` 0 is the layer's memory switched off.
    fn want(&self, switch: f32) -> Vec<f32> {
        let (rows, k) = (self.m.rows, self.k());
        (0..self.n_tok as usize * rows)
            .map(|i| {
                let (t, r) = (i / rows, i % rows);
                let mt: f32 = (0..k)
                    .map(|j| self.alpha[t * (k + 1) + j] * self.mem[(t * k + j) * rows + r])
                    .sum();
                self.h0[i] + self.ys[t][r] + switch * mt
            })
            .collect()
    }

    /// Bindings of the batch and GPU forms (router weights already taken).
    pub fn data(&self, s: &Spec) -> Vec<Data> {
        vec![
            Data::Bytes(step(0, self.n_tok, 0, 1.0)),
            Data::U32(words(self.m.dtype, &self.wb)),
            x_data(s, &self.x, self.m.cols),
            Data::F32(self.h0.clone()),
            Data::F32(self.mem.clone()),
            Data::F32(self.alpha.clone()),
        ]
    }

    pub fn check(&self, s: &Spec, out: &[f32]) {
        let name = format!("residual+memory {} T={}", s.shader, self.n_tok);
        assert_close(&name, out, &self.want(1.0), 2e-4);
    }

    /// CPU adapters, one token: memory rows from a texture, the router's softmax taken from its
    /// logits in the epilogue (slot K + 1 switches the layer on or off), alpha written out.
    pub fn texture_spec(&self, block_loop: bool) -> Spec {
        assert_eq!(self.n_tok, 1);
        self.m
            .decode_rows()
            .memory_in_texture()
            .block_loop(block_loop)
    }

    pub fn texture_data(&self, switch: f32) -> Vec<Data> {
        let k = self.k();
        let mut l = self.logits.clone();
        l.push(switch);
        l.resize((k + 2).div_ceil(4) * 4, 0.0);
        vec![
            Data::Bytes(step(0, 1, 0, 1.0)),
            Data::U32(words(self.m.dtype, &self.wb)),
            Data::F32(self.x.clone()),
            Data::F32(self.h0.clone()),
            texture_rows(&self.mem, self.m.rows),
            Data::F32(vec![-1.0; k + 1]),
            Data::F32(l),
        ]
    }

    /// h (out[0]) and the router weights written out (out[1]).
    pub fn check_texture(&self, what: &str, switch: f32, out: &[Vec<f32>]) {
        let name = format!("residual+memory, textures, {what}, switch {switch}");
        assert_close(&name, &out[0], &self.want(switch), 2e-4);
        let a: Vec<f32> = self.alpha.iter().map(|a| a * switch).collect();
        assert_close(&format!("{name}: alpha"), &out[1], &a, 1e-5);
    }
}

/// TIDE router logits riding in the SwiGLU matvec of CPU adapters: W_r RMSNorm(x) (gamma
/// applied) for K + 1 rows next to the SwiGLU output; FFN 45 over 128 columns.
pub struct SwigluRouterCase {
    pub m: Matmul,
    pub k: usize,
    wb: Vec<u8>,
    x: Vec<f32>,
    g: Vec<f32>,
    wr: Vec<f32>,
    want: Vec<f32>,
    logits: Vec<f32>,
}

impl SwigluRouterCase {
    pub fn new(rng: &mut Rng, dtype: DType, k: usize) -> Self {
        let (ffn, cols) = (45usize, 128usize);
        let (wb, wf) = random_weight(rng, dtype, 2 * ffn, cols);
        let x = rng.vec(cols, 1.0);
        let g = rng.vec(cols, 1.0);
        let wr = rng.vec((k + 1) * cols, 0.5);
        let m = swiglu_matmul(dtype, ffn, cols);
        let y = &cpu_matmul(&wf, 2 * ffn, cols, &x, Some(&g), 1e-5)[0];
        let want = (0..ffn).map(|j| ops::silu(y[j]) * y[ffn + j]).collect();
        let logits = cpu_matmul(&wr, k + 1, cols, &x, Some(&g), 1e-5).remove(0);
        SwigluRouterCase {
            m,
            k,
            wb,
            x,
            g,
            wr,
            want,
            logits,
        }
    }

    pub fn spec(&self, block_loop: bool) -> Spec {
        self.m
            .decode_rows()
            .with_router(self.k)
            .block_loop(block_loop)
    }

    pub fn data(&self) -> Vec<Data> {
        vec![
            Data::Bytes(step(0, 1, 0, 1.0)),
            Data::U32(words(self.m.dtype, &self.wb)),
            Data::F32(self.x.clone()),
            Data::F32(self.g.clone()),
            Data::F32(vec![0.0; self.m.rows / 2]),
            texture_rows(&self.wr, self.m.cols),
            Data::F32(vec![0.0; self.k + 1]),
        ]
    }

    /// The SwiGLU output (out[0], 2e-4) and the router logits (out[1], 1e-4).
    pub fn check(&self, what: &str, out: &[Vec<f32>]) {
        let (dtype, k) = (self.m.dtype, self.k);
        assert_close(
            &format!("swiglu+router {dtype:?} K={k} {what}"),
            &out[0],
            &self.want,
            2e-4,
        );
        assert_close(
            &format!("router logits K={k} {what}"),
            &out[1],
            &self.logits,
            1e-4,
        );
    }
}

/// The LM head: the store epilogue with fused RMSNorm, last token only, into a chunk at ROW0
/// (75 rows of `cols_for(dtype, 160)`, 3 tokens, ROW0 5).
pub struct StoreCase {
    pub m: Matmul,
    pub n_tok: u32,
    wb: Vec<u8>,
    x: Vec<f32>,
    g: Vec<f32>,
    want: Vec<f32>,
}

impl StoreCase {
    pub fn new(rng: &mut Rng, dtype: DType) -> Self {
        let (rows, cols, row0, n_tok) = (75usize, super::data::cols_for(dtype, 160), 5, 3u32);
        let (wb, wf) = random_weight(rng, dtype, rows, cols);
        let x = rng.vec(n_tok as usize * cols, 2.0);
        let g = rng.vec(cols, 1.0);
        let m = Matmul {
            epi: Epilogue::Store,
            norm: Some(1e-5),
            dtype,
            cols,
            rows,
            row0,
        };
        let want = cpu_matmul(&wf, rows, cols, &x, Some(&g), 1e-5)
            .pop()
            .unwrap();
        StoreCase {
            m,
            n_tok,
            wb,
            x,
            g,
            want,
        }
    }

    /// The batch's kernel (all tokens in), or the one-token kernel of CPU adapters fed the
    /// last token alone.
    pub fn specs(&self) -> [(Spec, u32); 2] {
        [(self.m.prefill(), self.n_tok), (self.m.decode_rows(), 1)]
    }

    pub fn data(&self, n_tok: u32) -> Vec<Data> {
        let cols = self.m.cols;
        let x = self.x[(self.n_tok - n_tok) as usize * cols..].to_vec();
        vec![
            Data::Bytes(step(0, n_tok, 0, 1.0)),
            Data::U32(words(self.m.dtype, &self.wb)),
            Data::F32(x),
            Data::F32(self.g.clone()),
            Data::F32(vec![0.0; self.m.row0 + self.m.rows]),
        ]
    }

    /// The chunk at ROW0 against the CPU (2e-4), and nothing written below it.
    pub fn check(&self, s: &Spec, out: &[f32]) {
        let (row0, what) = (
            self.m.row0,
            format!("store {} {:?}", s.shader, self.m.dtype),
        );
        assert_close(&what, &out[row0..row0 + self.m.rows], &self.want, 2e-4);
        assert!(
            out[..row0].iter().all(|&v| v == 0.0),
            "{what} wrote below ROW0"
        );
    }
}

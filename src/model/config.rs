//! Hyper-parameters of a LLaMA-family decoder, whatever file they came from.

/// How RoPE pairs the elements of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeLayout {
    /// (2i, 2i+1): llama.cpp/GGUF, whose converter permutes Wq/Wk rows to this layout.
    Adjacent,
    /// (i, i + head_dim/2): Hugging Face "rotate half".
    RotateHalf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub vocab: usize,
    pub dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub ffn_dim: usize,
    pub rope_theta: f32,
    pub eps: f32,
    /// The context length the model was trained for.
    pub ctx_len: usize,
    pub rope_layout: RopeLayout,
    /// Per-pair divisors of the RoPE frequencies (Llama 3.1's `rope_freqs`, or one linear
    /// scaling factor repeated); None: unscaled.
    pub rope_freq_factors: Option<Vec<f32>>,
}

impl Config {
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// Reject hyper-parameters no kernel can run, before anything is allocated from them.
    pub fn validate(&self, file: &str) -> crate::Result<()> {
        let bad = |m: String| Err(crate::error::format_err(file, m));
        if self.n_layers == 0 || self.n_layers > 1024 {
            return bad(format!(
                "layer count {} out of range 1..=1024",
                self.n_layers
            ));
        }
        if self.vocab == 0
            || self.dim == 0
            || self.ffn_dim == 0
            || self.n_heads == 0
            || self.n_kv_heads == 0
        {
            return bad("vocab, width, FFN width and head counts must be non-zero".into());
        }
        if self.dim > 1 << 16 || self.ffn_dim > 1 << 18 || self.vocab > 1 << 22 {
            return bad(format!(
                "implausible sizes: width {}, FFN {}, vocab {}",
                self.dim, self.ffn_dim, self.vocab
            ));
        }
        if self.n_heads % self.n_kv_heads != 0 {
            return bad(format!(
                "{} query heads is not a multiple of {} KV heads",
                self.n_heads, self.n_kv_heads
            ));
        }
        if self.head_dim % 4 != 0 || self.head_dim > 512 {
            return bad(format!(
                "head dim {} must be a multiple of 4 and at most 512",
                self.head_dim
            ));
        }
        // Written so that NaN fails too.
        let eps_ok = self.eps > 0.0 && self.eps < 1.0;
        let theta_ok = self.rope_theta > 0.0;
        if !(eps_ok && theta_ok) {
            return bad(format!(
                "bad eps {} or rope theta {}",
                self.eps, self.rope_theta
            ));
        }
        if let Some(f) = &self.rope_freq_factors {
            if f.len() != self.head_dim / 2 || f.iter().any(|&x| !(x > 0.0 && x.is_finite())) {
                return bad(format!(
                    "RoPE frequency factors: {} values, expected {} positive ones (head dim / 2)",
                    f.len(),
                    self.head_dim / 2
                ));
            }
        }
        Ok(())
    }
}

impl Config {
    /// cos/sin of every (position, pair) for positions 0..n_pos: [n_pos][head_dim/2][2].
    /// Computed once in f64 so that the CPU reference and the GPU kernels share exact angles.
    pub fn rope_table(&self, n_pos: usize) -> Vec<f32> {
        let half = self.head_dim / 2;
        let mut t = Vec::with_capacity(n_pos * half * 2);
        for p in 0..n_pos {
            for i in 0..half {
                let mut freq =
                    (self.rope_theta as f64).powf(-2.0 * i as f64 / self.head_dim as f64);
                if let Some(f) = &self.rope_freq_factors {
                    freq /= f[i] as f64;
                }
                let a = p as f64 * freq;
                t.push(a.cos() as f32);
                t.push(a.sin() as f32);
            }
        }
        t
    }

    /// Index pairs (a, b) rotated together by RoPE pair i within a head.
    pub fn rope_pair(&self, i: usize) -> (usize, usize) {
        match self.rope_layout {
            RopeLayout::Adjacent => (2 * i, 2 * i + 1),
            RopeLayout::RotateHalf => (i, i + self.head_dim / 2),
        }
    }
}

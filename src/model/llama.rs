//! The LLaMA weight set and its shape checks against the config. The loaders (gguf.rs,
//! safetensors.rs, embedded.rs) bind a file's tensors to it.
use super::config::Config;
use super::tensor::Weight;
use super::tokenizer::TokenizerInfo;
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct Layer {
    pub attn_norm: Weight,
    pub wq: Weight,
    pub wk: Weight,
    pub wv: Weight,
    pub wo: Weight,
    pub ffn_norm: Weight,
    pub w_gate: Weight,
    pub w_up: Weight,
    pub w_down: Weight,
    /// Biases of q, k and v (Qwen2).
    pub qkv_bias: Option<[Weight; 3]>,
    /// Per-head RMSNorm weights of q and k, head_dim each (Qwen3).
    pub qk_norm: Option<[Weight; 2]>,
    /// LIMe (layers >= 1): S^l [R, (l+1) R] mixing the raw (pre-RoPE) K and V heads of layers
    /// 0..=l of the same token into this layer's (docs/format.md).
    pub lime_mix: Option<Weight>,
}

#[derive(Debug, Clone)]
pub struct Model {
    /// File name, for messages.
    pub source: String,
    pub config: Config,
    pub token_embd: Weight,
    pub output_norm: Weight,
    /// None when the LM head is tied to the token embedding.
    pub lm_head: Option<Weight>,
    pub layers: Vec<Layer>,
    pub tokenizer: TokenizerInfo,
    /// TIDE memory tables and routers; None for a plain (K = 0) model.
    pub memory: Option<super::tide::TideMemory>,
    /// Engram's hashed n-gram memory (model/engram.rs); None without it.
    pub engram: Option<super::engram::Engram>,
    /// How often each id occurs in the training corpus (frequency deciles in `tide eval`).
    pub token_counts: Option<Vec<u64>>,
}

impl Layer {
    /// The layer's seven matrices: q, k, v, o, gate, up, down.
    pub fn matrices(&self) -> [&Weight; 7] {
        [
            &self.wq,
            &self.wk,
            &self.wv,
            &self.wo,
            &self.w_gate,
            &self.w_up,
            &self.w_down,
        ]
    }
}

impl Model {
    pub fn lm_head(&self) -> &Weight {
        self.lm_head.as_ref().unwrap_or(&self.token_embd)
    }

    /// Every matrix one token's forward multiplies by: each layer's seven, then the LM head.
    pub fn matrices(&self) -> impl Iterator<Item = &Weight> {
        let layers = self.layers.iter().flat_map(|l| l.matrices());
        layers.chain([self.lm_head()])
    }

    /// Read every read-through file behind the model whole (`Blob::bytes`), here, on the
    /// calling thread: the CPU engines compute on the weights where they lie, from many
    /// threads, and a read-through file (the browser's stored copy) may only be read from the
    /// thread that opened it. Nothing to do for files in memory or mapped.
    pub fn make_resident(&self) {
        let tables = self.memory.iter().flat_map(|m| m.tables.iter());
        let engram = self
            .engram
            .iter()
            .flat_map(|e| e.layers.iter().flat_map(|l| l.tables.iter()));
        // Every tensor a layer may hold: a split file's part may hold only some kinds.
        let small = self.layers.iter().flat_map(|l| {
            let bias = l.qkv_bias.iter().flatten();
            let norm = l.qk_norm.iter().flatten();
            [&l.attn_norm, &l.ffn_norm]
                .into_iter()
                .chain(bias)
                .chain(norm)
                .chain(l.lime_mix.iter())
        });
        for w in self
            .matrices()
            .chain([&self.token_embd, &self.output_norm])
            .chain(small)
            .chain(tables)
            .chain(engram)
        {
            w.blob.bytes();
        }
    }

    /// Check every tensor's shape against the config.
    pub(crate) fn validate(&self) -> Result<()> {
        let c = &self.config;
        c.validate(&self.source)?;
        let check = |w: &Weight, shape: &[usize]| -> Result<()> {
            if w.info.shape != shape {
                return Err(Error::Shape {
                    file: self.source.clone(),
                    tensor: w.info.name.clone(),
                    expected: shape.to_vec(),
                    got: w.info.shape.clone(),
                });
            }
            Ok(())
        };
        check(&self.token_embd, &[c.vocab, c.dim])?;
        check(&self.output_norm, &[c.dim])?;
        if let Some(h) = &self.lm_head {
            check(h, &[c.vocab, c.dim])?;
        }
        for (i, l) in self.layers.iter().enumerate() {
            if let Some(w) = &l.lime_mix {
                check(w, &[c.n_kv_heads, (i + 1) * c.n_kv_heads])?;
            }
            check(&l.attn_norm, &[c.dim])?;
            check(&l.ffn_norm, &[c.dim])?;
            check(&l.wq, &[c.q_dim(), c.dim])?;
            check(&l.wk, &[c.kv_dim(), c.dim])?;
            check(&l.wv, &[c.kv_dim(), c.dim])?;
            check(&l.wo, &[c.dim, c.q_dim()])?;
            check(&l.w_gate, &[c.ffn_dim, c.dim])?;
            check(&l.w_up, &[c.ffn_dim, c.dim])?;
            check(&l.w_down, &[c.dim, c.ffn_dim])?;
            if let Some([q, k, v]) = &l.qkv_bias {
                check(q, &[c.q_dim()])?;
                check(k, &[c.kv_dim()])?;
                check(v, &[c.kv_dim()])?;
            }
            if let Some(n) = &l.qk_norm {
                for w in n {
                    check(w, &[c.head_dim])?;
                }
            }
        }
        Ok(())
    }
}

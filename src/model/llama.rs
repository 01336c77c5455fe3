//! The LLaMA weight set, bound to tensors of a file and checked against the config.
use super::blob::Blob;
use super::config::Config;
use super::dtype::DType;
use super::gguf::GgufFile;
use super::tensor::TensorInfo;
use super::tokenizer::TokenizerInfo;
use crate::error::{Error, Result};

/// A tensor view: metadata plus the blob that holds its bytes.
#[derive(Debug, Clone)]
pub struct Weight {
    pub info: TensorInfo,
    pub blob: Blob,
}

impl Weight {
    pub fn bytes(&self) -> &[u8] {
        &self.blob.bytes()[self.info.start..self.info.end]
    }
    pub fn dtype(&self) -> DType {
        self.info.dtype
    }
    pub fn rows(&self) -> usize {
        self.info.rows()
    }
    pub fn cols(&self) -> usize {
        self.info.row_len()
    }
    /// Row `r` dequantised to f32.
    pub fn row_f32(&self, r: usize, out: &mut [f32]) {
        let rb = self.dtype().row_bytes(self.cols()).unwrap();
        super::dtype::dequantize(self.dtype(), &self.bytes()[r * rb..(r + 1) * rb], out);
    }
    /// The whole tensor dequantised to f32, row-major.
    pub fn to_f32(&self) -> Vec<f32> {
        let mut v = vec![0f32; self.rows() * self.cols()];
        super::dtype::dequantize(self.dtype(), self.bytes(), &mut v);
        v
    }
}

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
    pub memory: Option<crate::memory::TideMemory>,
    /// How often each id occurs in the training corpus (frequency deciles in `tide eval`).
    pub token_counts: Option<Vec<u64>>,
}

impl Model {
    pub fn lm_head(&self) -> &Weight {
        self.lm_head.as_ref().unwrap_or(&self.token_embd)
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
        for l in &self.layers {
            check(&l.attn_norm, &[c.dim])?;
            check(&l.ffn_norm, &[c.dim])?;
            check(&l.wq, &[c.q_dim(), c.dim])?;
            check(&l.wk, &[c.kv_dim(), c.dim])?;
            check(&l.wv, &[c.kv_dim(), c.dim])?;
            check(&l.wo, &[c.dim, c.q_dim()])?;
            check(&l.w_gate, &[c.ffn_dim, c.dim])?;
            check(&l.w_up, &[c.ffn_dim, c.dim])?;
            check(&l.w_down, &[c.dim, c.ffn_dim])?;
        }
        Ok(())
    }

    /// Bind a parsed GGUF file (architecture "llama") to a model.
    pub fn from_gguf(g: GgufFile) -> Result<Model> {
        let file = g.name.clone();
        let fmt = |m: String| crate::error::format_err(&file, m);
        let arch = g
            .get("general.architecture")
            .and_then(|v| v.as_str())
            .ok_or_else(|| fmt("missing general.architecture".into()))?
            .to_string();
        if arch != "llama" {
            return Err(fmt(format!(
                "architecture '{arch}' is not supported (only 'llama')"
            )));
        }
        let u = |k: &str| -> Result<usize> {
            g.get(&format!("{arch}.{k}"))
                .and_then(|v| v.as_u64())
                .map(|v| v as usize)
                .ok_or_else(|| fmt(format!("missing or non-integer metadata {arch}.{k}")))
        };
        let f = |k: &str, default: f64| -> f64 {
            g.get(&format!("{arch}.{k}"))
                .and_then(|v| v.as_f64())
                .unwrap_or(default)
        };
        let find = |name: &str| -> Option<Weight> {
            g.tensors.iter().find(|t| t.name == name).map(|t| Weight {
                info: t.clone(),
                blob: g.blob.clone(),
            })
        };
        let need = |name: &str| -> Result<Weight> {
            find(name).ok_or_else(|| Error::MissingTensor {
                file: file.clone(),
                tensor: name.to_string(),
            })
        };
        let dim = u("embedding_length")?;
        let n_heads = u("attention.head_count")?;
        let n_kv_heads = u("attention.head_count_kv").unwrap_or(n_heads);
        let token_embd = need("token_embd.weight")?;
        let vocab = g
            .get(&format!("{arch}.vocab_size"))
            .and_then(|v| v.as_u64())
            .map(|v| v as usize)
            .unwrap_or(token_embd.rows());
        let head_dim = match g
            .get(&format!("{arch}.attention.key_length"))
            .and_then(|v| v.as_u64())
        {
            Some(v) => v as usize,
            None if n_heads > 0 => dim / n_heads,
            None => 0,
        };
        let config = Config {
            vocab,
            dim,
            n_layers: u("block_count")?,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn_dim: u("feed_forward_length")?,
            rope_theta: f("rope.freq_base", 10000.0) as f32,
            eps: f("attention.layer_norm_rms_epsilon", 1e-5) as f32,
            ctx_len: u("context_length").unwrap_or(2048),
            rope_layout: super::config::RopeLayout::Adjacent,
        };
        config.validate(&file)?;
        let mut layers = Vec::with_capacity(config.n_layers);
        for i in 0..config.n_layers {
            let t = |s: &str| need(&format!("blk.{i}.{s}.weight"));
            layers.push(Layer {
                attn_norm: t("attn_norm")?,
                wq: t("attn_q")?,
                wk: t("attn_k")?,
                wv: t("attn_v")?,
                wo: t("attn_output")?,
                ffn_norm: t("ffn_norm")?,
                w_gate: t("ffn_gate")?,
                w_up: t("ffn_up")?,
                w_down: t("ffn_down")?,
            });
        }
        let tokenizer = TokenizerInfo::from_gguf(&g)?;
        let set = tide_set_of_gguf(&g);
        let memory = crate::memory::TideMemory::from_set(&file, &set, &config)?;
        let model = Model {
            source: file.clone(),
            config,
            output_norm: need("output_norm.weight")?,
            lm_head: find("output.weight"),
            token_embd,
            layers,
            tokenizer,
            memory,
            token_counts: None,
        };
        model.validate()?;
        Ok(model)
    }
}

/// TIDE tensors and `tide.*` metadata of a GGUF file (memory rows in native GGUF types).
fn tide_set_of_gguf(g: &GgufFile) -> super::safetensors::TensorSet {
    let mut set = super::safetensors::TensorSet::default();
    for t in g.tensors.iter().filter(|t| t.name.starts_with("tide.")) {
        set.weights.insert(
            t.name.clone(),
            Weight {
                info: t.clone(),
                blob: g.blob.clone(),
            },
        );
    }
    for (k, v) in g.metadata.iter().filter(|(k, _)| k.starts_with("tide.")) {
        let s = v
            .as_str()
            .map(String::from)
            .or_else(|| v.as_u64().map(|x| x.to_string()))
            .or_else(|| v.as_f64().map(|x| x.to_string()))
            .or_else(|| v.as_bool().map(|x| x.to_string()));
        if let Some(s) = s {
            set.meta.insert(k.clone(), s);
        }
    }
    set
}

impl Weight {
    /// The same tensor re-encoded as f32 (for fusing parts stored in different types).
    pub fn to_f32_weight(&self) -> Weight {
        let data: Vec<u8> = self.to_f32().iter().flat_map(|v| v.to_le_bytes()).collect();
        let n = data.len();
        Weight {
            info: TensorInfo {
                name: self.info.name.clone(),
                dtype: DType::F32,
                shape: self.info.shape.clone(),
                start: 0,
                end: n,
            },
            blob: Blob::from_vec(data),
        }
    }
}

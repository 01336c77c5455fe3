//! Hugging Face LLaMA checkpoints: config.json + one or more .safetensors files (+ tokenizer.json).
use super::blob::Blob;
use super::config::{Config, RopeLayout};
use super::dtype::DType;
use super::llama::{Layer, Model};
use super::tensor::{RawTensor, TensorInfo, TensorSet, Weight};
use super::tokenizer::TokenizerInfo;
use crate::error::{format_err, Error, Result};

/// Largest header accepted (the `safetensors` crate's own bound).
pub const MAX_HEADER: u64 = 100_000_000;

/// A safetensors header: where the data starts and every tensor's entry, parsed and checked
/// by the `safetensors` crate (offsets contiguous, each size what its shape and type take).
/// The one parser of these headers: the local loader (`index_file`) and the remote memory
/// reader (memory/remote.rs, which fetches the header by Range) both use it.
pub struct Header {
    pub data_start: u64,
    pub meta: safetensors::tensor::Metadata,
}

/// The header's length from a file's first 8 bytes, checked against the file's size.
pub fn header_len(name: &str, first8: &[u8], file_len: u64) -> Result<u64> {
    let n = first8
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
        .ok_or_else(|| format_err(name, "not a valid safetensors file: shorter than 8 bytes"))?;
    if !(2..=MAX_HEADER).contains(&n) {
        return Err(format_err(
            name,
            format!("not a valid safetensors file: header length {n}"),
        ));
    }
    if 8 + n > file_len {
        return Err(format_err(
            name,
            format!("truncated: a header of {n} bytes but the file has {file_len}"),
        ));
    }
    Ok(n)
}

/// Parse the header (the bytes after the first 8) of a file of `file_len` bytes. Data past
/// the end of the file is refused naming the first tensor it cuts; bytes after the last
/// tensor's data too, when `exact` (a whole local file).
pub fn parse_header(name: &str, header: &[u8], file_len: u64, exact: bool) -> Result<Header> {
    let meta: safetensors::tensor::Metadata = serde_json::from_slice(header)
        .map_err(|e| format_err(name, format!("not a valid safetensors file: {e}")))?;
    let data_start = 8 + header.len() as u64;
    let have = file_len.saturating_sub(data_start);
    let need = meta.data_len() as u64;
    if need > have {
        let mut cut: Vec<(usize, String)> = meta
            .tensors()
            .into_iter()
            .filter(|(_, t)| t.data_offsets.1 as u64 > have)
            .map(|(n, t)| (t.data_offsets.0, n))
            .collect();
        cut.sort();
        let first = cut.first().map_or("?", |(_, n)| n.as_str()).to_string();
        let end = meta.info(&first).map_or(need, |t| t.data_offsets.1 as u64);
        return Err(format_err(
            name,
            format!(
                "truncated: tensor '{first}' needs bytes up to {} but the file has {file_len}",
                data_start + end
            ),
        ));
    }
    if exact && need < have {
        return Err(format_err(
            name,
            format!(
                "not a valid safetensors file: {} bytes after the last tensor's data",
                have - need
            ),
        ));
    }
    Ok(Header { data_start, meta })
}

/// Add a tensor to a set: the float types the runtime computes with as a `Weight`, the
/// others (integer counts, ...) as a `RawTensor`. `start..end` are absolute in `blob`.
pub fn insert_tensor(
    out: &mut TensorSet,
    tname: String,
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    (start, end): (usize, usize),
    blob: Blob,
) {
    let dtype = match dtype {
        safetensors::Dtype::F32 => DType::F32,
        safetensors::Dtype::F16 => DType::F16,
        safetensors::Dtype::BF16 => DType::BF16,
        other => {
            let dtype = format!("{other:?}");
            let raw = RawTensor {
                dtype,
                shape,
                start,
                end,
                blob,
            };
            out.raw.insert(tname, raw);
            return;
        }
    };
    let info = TensorInfo {
        name: tname.clone(),
        dtype,
        shape,
        start,
        end,
    };
    out.weights.insert(tname, Weight { info, blob });
}

/// Index the tensors of one .safetensors file (header checked by the `safetensors` crate, data
/// range against the file's size).
pub fn index_file(name: &str, blob: &Blob, out: &mut TensorSet) -> Result<()> {
    // The header alone: a read-through file (the browser's stored copy) is not read whole.
    let len = blob.len() as u64;
    let n = header_len(name, &blob.read(0..blob.len().min(8)), len)? as usize;
    let h = parse_header(name, &blob.read(8..8 + n), len, true)?;
    if let Some(m) = h.meta.metadata() {
        out.meta
            .extend(m.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let data_start = h.data_start as usize;
    for (tname, t) in h.meta.tensors() {
        // Two files of one model holding the same tensor (a stray .safetensors among the
        // shards, a memory file beside a model that has its memory inline): refuse rather
        // than let one silently replace the other.
        if out.weights.contains_key(&tname) || out.raw.contains_key(&tname) {
            let other = out
                .origin
                .get(&tname)
                .map_or("another file", String::as_str);
            return Err(format_err(
                name,
                format!("tensor '{tname}' is also in {other}: one model file too many?"),
            ));
        }
        out.origin.insert(tname.clone(), name.to_string());
        let (s, e) = t.data_offsets;
        let range = (data_start + s, data_start + e);
        insert_tensor(out, tname, t.dtype, t.shape.clone(), range, blob.clone());
    }
    Ok(())
}

/// Training-corpus token counts (tide.token_counts, integer [vocab]), when present.
pub fn token_counts(file: &str, set: &TensorSet, vocab: usize) -> Result<Option<Vec<u64>>> {
    let name = "tide.token_counts";
    let Some(r) = set.raw.get(name) else {
        return Ok(None);
    };
    if r.shape != [vocab] {
        return Err(Error::Shape {
            file: file.into(),
            tensor: name.into(),
            expected: vec![vocab],
            got: r.shape.clone(),
        });
    }
    Ok(Some(non_negative_ints(file, name, r)?))
}

/// An integer tensor (I64, U64, I32 or U32) as u64; a negative value is refused by name.
pub(crate) fn non_negative_ints(file: &str, name: &str, r: &RawTensor) -> Result<Vec<u64>> {
    let b = r.bytes();
    let v: Vec<i128> = match r.dtype.as_str() {
        "I64" => b
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as i128)
            .collect(),
        "U64" => b
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()) as i128)
            .collect(),
        "I32" => b
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i128)
            .collect(),
        "U32" => b
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()) as i128)
            .collect(),
        other => {
            return Err(Error::UnsupportedType {
                file: file.into(),
                tensor: name.into(),
                ty: other.into(),
            })
        }
    };
    if v.iter().any(|&x| x < 0) {
        return Err(format_err(file, format!("'{name}' holds a negative value")));
    }
    Ok(v.into_iter().map(|x| x as u64).collect())
}

fn cfg_usize(cfg: &serde_json::Value, key: &str, file: &str) -> Result<usize> {
    cfg.get(key)
        .and_then(|v| v.as_u64())
        .map(|v| v as usize)
        .ok_or_else(|| format_err(file, format!("missing or non-integer '{key}'")))
}

/// Read a LLaMA config.json into our Config (rotate-half RoPE, as Hugging Face computes it).
pub fn config_from_json(file: &str, cfg: &serde_json::Value) -> Result<Config> {
    if let Some(mt) = cfg.get("model_type").and_then(|v| v.as_str()) {
        if !super::arch::HF_MODEL_TYPES.contains(&mt) {
            return Err(format_err(
                file,
                format!(
                    "model_type '{mt}' is not supported (supported: {})",
                    super::arch::HF_MODEL_TYPES.join(", ")
                ),
            ));
        }
    }
    let dim = cfg_usize(cfg, "hidden_size", file)?;
    let n_heads = cfg_usize(cfg, "num_attention_heads", file)?;
    let n_kv_heads = cfg_usize(cfg, "num_key_value_heads", file).unwrap_or(n_heads);
    let head_dim = match cfg.get("head_dim").and_then(|v| v.as_u64()) {
        Some(h) => h as usize,
        None => dim.checked_div(n_heads).unwrap_or(0),
    };
    let c = Config {
        vocab: cfg_usize(cfg, "vocab_size", file)?,
        dim,
        n_layers: cfg_usize(cfg, "num_hidden_layers", file)?,
        n_heads,
        n_kv_heads,
        head_dim,
        ffn_dim: cfg_usize(cfg, "intermediate_size", file)?,
        rope_theta: cfg
            .get("rope_theta")
            .and_then(|v| v.as_f64())
            .unwrap_or(10000.0) as f32,
        eps: cfg
            .get("rms_norm_eps")
            .and_then(|v| v.as_f64())
            .unwrap_or(1e-5) as f32,
        ctx_len: cfg_usize(cfg, "max_position_embeddings", file).unwrap_or(2048),
        rope_layout: RopeLayout::RotateHalf,
        rope_freq_factors: hf_rope_scaling(file, cfg, head_dim)?,
    };
    c.validate(file)?;
    Ok(c)
}

/// config.json's `rope_scaling` as RoPE frequency divisors: `llama3` (Llama 3.1) or `linear`.
fn hf_rope_scaling(
    file: &str,
    cfg: &serde_json::Value,
    head_dim: usize,
) -> Result<Option<Vec<f32>>> {
    let Some(rs) = cfg.get("rope_scaling").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let kind = rs
        .get("rope_type")
        .or_else(|| rs.get("type"))
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let num = |k: &str| -> Result<f64> {
        rs.get(k)
            .and_then(|v| v.as_f64())
            .filter(|v| *v > 0.0)
            .ok_or_else(|| format_err(file, format!("rope_scaling.{k} missing or not positive")))
    };
    let theta = cfg
        .get("rope_theta")
        .and_then(|v| v.as_f64())
        .unwrap_or(10000.0);
    match kind {
        "llama3" => Ok(Some(super::arch::llama3_freq_factors(
            head_dim,
            theta,
            num("factor")?,
            num("low_freq_factor")?,
            num("high_freq_factor")?,
            num("original_max_position_embeddings")?,
        ))),
        "linear" => Ok(Some(vec![num("factor")? as f32; head_dim / 2])),
        "default" => Ok(None),
        other => Err(format_err(
            file,
            format!("rope_scaling type '{other}' is not supported (llama3 and linear are)"),
        )),
    }
}

/// Bind HF tensor names to a model.
pub fn model_from_tensors(
    source: &str,
    config: Config,
    set: TensorSet,
    tied: bool,
    lime: bool,
    engram: Option<&serde_json::Value>,
    tokenizer: TokenizerInfo,
) -> Result<Model> {
    let memory = super::tide::TideMemory::from_set(source, &set, &config)?;
    let engram = super::engram::Engram::from_set(source, &set, &config, engram)?;
    let token_counts = token_counts(source, &set, config.vocab)?;
    let mut tensors = set.weights;
    // Qwen2's q/k/v biases and Qwen3's q/k norms: taken in every layer when layer 0 has them.
    let has_bias = tensors.contains_key("model.layers.0.self_attn.q_proj.bias");
    let has_qk_norm = tensors.contains_key("model.layers.0.self_attn.q_norm.weight");
    // LIMe's mixes come with "lime": true in config.json, never alone: loaded as a plain LLaMA
    // such a model would give wrong logits without a word.
    if !lime && tensors.keys().any(|k| k.ends_with(".self_attn.lime_mix")) {
        return Err(format_err(
            source,
            "LIMe tensors (self_attn.lime_mix) without \"lime\": true in config.json",
        ));
    }
    let mut need = |name: &str| -> Result<Weight> {
        tensors.remove(name).ok_or_else(|| Error::MissingTensor {
            file: source.to_string(),
            tensor: name.to_string(),
        })
    };
    let token_embd = need("model.embed_tokens.weight")?;
    let output_norm = need("model.norm.weight")?;
    let mut layers = Vec::with_capacity(config.n_layers);
    for i in 0..config.n_layers {
        let p = format!("model.layers.{i}");
        layers.push(Layer {
            attn_norm: need(&format!("{p}.input_layernorm.weight"))?,
            wq: need(&format!("{p}.self_attn.q_proj.weight"))?,
            wk: need(&format!("{p}.self_attn.k_proj.weight"))?,
            wv: need(&format!("{p}.self_attn.v_proj.weight"))?,
            wo: need(&format!("{p}.self_attn.o_proj.weight"))?,
            ffn_norm: need(&format!("{p}.post_attention_layernorm.weight"))?,
            w_gate: need(&format!("{p}.mlp.gate_proj.weight"))?,
            w_up: need(&format!("{p}.mlp.up_proj.weight"))?,
            w_down: need(&format!("{p}.mlp.down_proj.weight"))?,
            qkv_bias: match has_bias {
                true => {
                    let mut b = |s: &str| need(&format!("{p}.self_attn.{s}_proj.bias"));
                    Some([b("q")?, b("k")?, b("v")?])
                }
                false => None,
            },
            qk_norm: match has_qk_norm {
                true => Some([
                    need(&format!("{p}.self_attn.q_norm.weight"))?,
                    need(&format!("{p}.self_attn.k_norm.weight"))?,
                ]),
                false => None,
            },
            lime_mix: match lime && i > 0 {
                true => Some(need(&format!("{p}.self_attn.lime_mix"))?),
                false => None,
            },
        });
    }
    let lm_head = match tensors.remove("lm_head.weight") {
        Some(w) => Some(w),
        None if tied => None,
        None => {
            return Err(Error::MissingTensor {
                file: source.to_string(),
                tensor: "lm_head.weight".into(),
            })
        }
    };
    let m = Model {
        source: source.to_string(),
        config,
        token_embd,
        output_norm,
        lm_head,
        layers,
        tokenizer,
        memory,
        engram,
        token_counts,
    };
    m.validate()?;
    Ok(m)
}

/// A Hugging Face model from its parts (files of a directory, or bytes compiled in): config.json,
/// the indexed tensors, tokenizer.json and tokenizer_config.json.
pub fn model_from_parts(
    source: &str,
    cfg_name: &str,
    cfg: &serde_json::Value,
    set: TensorSet,
    tokenizer_json: Option<(&str, &[u8])>,
    tokenizer_config: Option<&str>,
) -> Result<Model> {
    let config = config_from_json(cfg_name, cfg)?;
    let mut tok = TokenizerInfo::none();
    if let Some((name, bytes)) = tokenizer_json {
        tok.tokenizer = Some(TokenizerInfo::from_json(name, bytes)?);
    }
    let id = |k: &str| cfg.get(k).and_then(|v| v.as_u64()).map(|v| v as u32);
    tok.bos = id("bos_token_id");
    tok.eos = match cfg.get("eos_token_id") {
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_u64().map(|x| x as u32))
            .collect(),
        _ => id("eos_token_id").into_iter().collect(),
    };
    if let Some(Ok(j)) = tokenizer_config.map(serde_json::from_str::<serde_json::Value>) {
        tok.add_bos = j
            .get("add_bos_token")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        tok.chat_template = j
            .get("chat_template")
            .and_then(|v| v.as_str())
            .map(String::from);
    }
    let tied = cfg
        .get("tie_word_embeddings")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let lime = cfg.get("lime").and_then(|v| v.as_bool()).unwrap_or(false);
    model_from_tensors(source, config, set, tied, lime, cfg.get("engram"), tok)
}

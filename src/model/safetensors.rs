//! Hugging Face LLaMA checkpoints: config.json + one or more .safetensors files (+ tokenizer.json).
use super::blob::Blob;
use super::config::{Config, RopeLayout};
use super::dtype::DType;
use super::llama::{Layer, Model};
use super::tensor::{RawTensor, TensorInfo, TensorSet, Weight};
use super::tokenizer::TokenizerInfo;
use crate::error::{format_err, Error, Result};

/// Index the tensors of one .safetensors file (header checked by the `safetensors` crate, data
/// range against the file's size).
pub fn index_file(name: &str, blob: &Blob, out: &mut TensorSet) -> Result<()> {
    let bytes = blob.bytes();
    let (header_len, meta) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| {
        truncated_tensor(bytes).map_or_else(
            || format_err(name, format!("not a valid safetensors file: {e}")),
            |msg| format_err(name, msg),
        )
    })?;
    let data_start = 8 + header_len;
    if let Some(m) = meta.metadata() {
        out.meta
            .extend(m.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    for (tname, t) in meta.tensors() {
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
        if data_start + e > bytes.len() {
            return Err(format_err(
                name,
                format!(
                    "truncated: tensor '{tname}' needs bytes up to {} but the file has {}",
                    data_start + e,
                    bytes.len()
                ),
            ));
        }
        let dtype = match t.dtype {
            safetensors::Dtype::F32 => DType::F32,
            safetensors::Dtype::F16 => DType::F16,
            safetensors::Dtype::BF16 => DType::BF16,
            other => {
                out.raw.insert(
                    tname,
                    RawTensor {
                        dtype: format!("{other:?}"),
                        shape: t.shape.clone(),
                        start: data_start + s,
                        end: data_start + e,
                        blob: blob.clone(),
                    },
                );
                continue;
            }
        };
        let info = TensorInfo {
            name: tname.clone(),
            dtype,
            shape: t.shape.clone(),
            start: data_start + s,
            end: data_start + e,
        };
        out.weights.insert(
            tname,
            Weight {
                info,
                blob: blob.clone(),
            },
        );
    }
    Ok(())
}

/// For a file the safetensors crate refused: the first tensor whose data runs past the end.
fn truncated_tensor(bytes: &[u8]) -> Option<String> {
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?) as usize;
    let header: serde_json::Value =
        serde_json::from_slice(bytes.get(8..8usize.checked_add(n)?)?).ok()?;
    let have = bytes.len() - 8 - n;
    header.as_object()?.iter().find_map(|(tname, t)| {
        let end = t.get("data_offsets")?.get(1)?.as_u64()? as usize;
        (end > have).then(|| {
            format!("truncated: tensor '{tname}' needs {end} data bytes but the file holds {have}")
        })
    })
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

//! What sets each supported GGUF `general.architecture` (and Hugging Face `model_type`) apart
//! from plain LLaMA: a few declarative traits that the loaders read. The decoder has one code
//! path; a trait only switches on an optional tensor or a RoPE layout.
use super::config::RopeLayout;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arch {
    pub name: &'static str,
    /// RoPE pairing as the file stores q and k (llama.cpp's converter permutes LLaMA's rows to
    /// adjacent pairs; Qwen files keep Hugging Face's rotate-half).
    pub rope: RopeLayout,
    /// Biases on the q, k and v projections (`attn_{q,k,v}.bias`).
    pub qkv_bias: bool,
    /// Per-head RMSNorm of q and k before RoPE (`attn_{q,k}_norm.weight`).
    pub qk_norm: bool,
}

const fn arch(name: &'static str, rope: RopeLayout, qkv_bias: bool, qk_norm: bool) -> Arch {
    Arch {
        name,
        rope,
        qkv_bias,
        qk_norm,
    }
}

/// Every GGUF architecture tide runs. Llama 3.x, Mistral and TinyLlama files say `llama`.
pub const GGUF_ARCHS: &[Arch] = &[
    arch("llama", RopeLayout::Adjacent, false, false),
    arch("qwen2", RopeLayout::RotateHalf, true, false),
    arch("qwen3", RopeLayout::RotateHalf, false, true),
];

/// Hugging Face config.json `model_type`s that load (rotate-half RoPE throughout; the optional
/// bias and q/k-norm tensors are taken where the checkpoint has them).
pub const HF_MODEL_TYPES: &[&str] = &["llama", "mistral", "smollm", "tide", "qwen2", "qwen3"];

/// The entry of `table` called `name`, or an error message listing the supported ones.
pub fn find(table: &[Arch], name: &str) -> std::result::Result<Arch, String> {
    table
        .iter()
        .find(|a| a.name == name)
        .copied()
        .ok_or_else(|| {
            let names: Vec<&str> = table.iter().map(|a| a.name).collect();
            format!(
                "architecture '{name}' is not supported (supported: {})",
                names.join(", ")
            )
        })
}

/// Llama 3.1's RoPE frequency scaling as per-pair divisors of the frequency (what llama.cpp's
/// converter stores as `rope_freqs.weight`): long wavelengths are slowed by `factor`, short
/// ones kept, and the band between blended smoothly.
pub fn llama3_freq_factors(
    head_dim: usize,
    theta: f64,
    factor: f64,
    low_freq_factor: f64,
    high_freq_factor: f64,
    original_ctx: f64,
) -> Vec<f32> {
    let low_wavelen = original_ctx / low_freq_factor;
    let high_wavelen = original_ctx / high_freq_factor;
    (0..head_dim / 2)
        .map(|i| {
            let freq = theta.powf(-2.0 * i as f64 / head_dim as f64);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                factor as f32
            } else {
                let smooth = (original_ctx / wavelen - low_freq_factor)
                    / (high_freq_factor - low_freq_factor);
                (1.0 / ((1.0 - smooth) / factor + smooth)) as f32
            }
        })
        .collect()
}

use std::io::Write;

use anyhow::Result;
use clap::Args;
use tide_gpu::generate::generate;
use tide_gpu::sample::{
    DEFAULT_REPEAT_PENALTY, DEFAULT_SEED, DEFAULT_TEMPERATURE, DEFAULT_TOP_K, DEFAULT_TOP_P,
};
use tide_gpu::{Sampler, SamplerConfig};

use super::common::ModelArgs;

// Sampling defaults to llama.cpp's settings with a fixed seed, so a run repeats exactly.
#[derive(Args, Clone)]
pub struct SamplingArgs {
    /// Softmax temperature; 0 = greedy (always the most likely token).
    #[arg(long, default_value_t = DEFAULT_TEMPERATURE)]
    pub temperature: f32,
    /// Keep the K most likely tokens (0 = all). 1..=64 are selected on the GPU; 0 or more
    /// than 64 read every logit back to the host each token (vocab x 4 bytes, slower).
    #[arg(long, default_value_t = DEFAULT_TOP_K)]
    pub top_k: usize,
    /// Nucleus: keep the most likely tokens whose probabilities (after the temperature) reach
    /// P; 1 = no cut.
    #[arg(long, default_value_t = DEFAULT_TOP_P)]
    pub top_p: f32,
    /// llama.cpp's rule over the last 64 tokens: a positive logit is divided by R, a negative
    /// one multiplied; 1 = off.
    #[arg(long, default_value_t = DEFAULT_REPEAT_PENALTY)]
    pub repeat_penalty: f32,
    /// Random seed (fixed by default: the same command gives the same text).
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub seed: u64,
}

impl SamplingArgs {
    pub fn sampler(&self) -> Result<Sampler> {
        let cfg = SamplerConfig {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            repeat_penalty: self.repeat_penalty,
            seed: self.seed,
            ..SamplerConfig::sampling()
        };
        cfg.validate()?;
        Ok(Sampler::new(cfg))
    }
}

#[derive(Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
    /// Print one JSON object at the end instead of streaming text.
    #[arg(long)]
    pub json: bool,
    pub prompt: String,
}

pub fn run(a: GenerateArgs) -> Result<()> {
    let mut sampler = a.sampling.sampler()?;
    let m = a.model.load()?;
    let ids = m.tokenizer.encode(&a.prompt, true)?;
    if ids.is_empty() {
        anyhow::bail!("the prompt is empty: nothing to continue");
    }
    let ctx = a.model.ctx_len(&m)?;
    let mut engine = a.model.engine(&m)?;
    let adapter = engine.describe();
    let mut out = std::io::stdout();
    let json = a.json;
    if !json {
        print!("{}", a.prompt);
        out.flush().ok();
    }
    let g = generate(
        &mut engine,
        &m.tokenizer,
        &ids,
        a.max_tokens,
        &mut sampler,
        ctx,
        |s| {
            if !json {
                print!("{s}");
                out.flush().ok();
            }
        },
    )?;
    if json {
        let mut v = serde_json::to_value(&g)?;
        v["adapter"] = serde_json::Value::String(adapter);
        v["sampler"] = serde_json::to_value(&sampler.cfg)?;
        v["memory"] = super::common::memory_json(&m);
        if m.engram.is_some() {
            v["engram_rows"] = super::common::engram_json(&m);
        }
        println!("{}", serde_json::to_string(&v)?);
    } else {
        println!();
        eprintln!(
            "[{} prompt tokens, {:.1} tok/s prefill; {} generated, {:.1} tok/s decode; stop: {}]",
            g.prompt_tokens.len(),
            g.prefill_tokens_per_s,
            g.tokens.len(),
            g.decode_tokens_per_s,
            g.stop
        );
    }
    Ok(())
}

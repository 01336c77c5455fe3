use std::io::Write;

use anyhow::Result;
use clap::Args;
use tide_gpu::generate::generate;
use tide_gpu::{Sampler, SamplerConfig};

use super::common::ModelArgs;

#[derive(Args, Clone)]
pub struct SamplingArgs {
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Keep the K most likely tokens (0 = all).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    #[arg(long, default_value_t = 0)]
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
            ..Default::default()
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

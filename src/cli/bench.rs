use std::time::Instant;

use anyhow::Result;
use clap::Args;
use tide_gpu::{Engine, Sampler, SamplerConfig};

use super::common::ModelArgs;

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt length for the prefill figure (pp).
    #[arg(long, default_value_t = 128)]
    pub prompt_len: usize,
    /// Tokens generated for the decode figure (tg).
    #[arg(long, default_value_t = 128)]
    pub gen: usize,
    /// Repetitions; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    #[arg(long)]
    pub json: bool,
    /// Time each kernel alone (GPU only; slower, for finding hot spots).
    #[arg(long)]
    pub profile: bool,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn run(a: BenchArgs) -> Result<()> {
    let m = a.model.load()?;
    let ctx = a.model.ctx_len(&m)?;
    if a.prompt_len == 0 || a.gen == 0 || a.prompt_len + a.gen > ctx {
        anyhow::bail!(
            "--prompt-len ({}) and --gen ({}) must be positive and fit the context ({ctx})",
            a.prompt_len,
            a.gen
        );
    }
    let mut e = a.model.engine(&m)?;
    if a.profile {
        if let Engine::Gpu(g) = &mut e {
            g.profile = Some(Default::default());
        }
    }
    // Deterministic pseudo-random prompt over the vocabulary.
    let v = m.config.vocab as u64;
    let prompt: Vec<u32> = (0..a.prompt_len as u64)
        .map(|i| ((i * 2654435761 + 17) % v) as u32)
        .collect();
    let mut sampler = Sampler::new(SamplerConfig::default());
    let run_once = |e: &mut Engine, sampler: &mut Sampler| -> Result<(f64, f64)> {
        e.reset();
        let t0 = Instant::now();
        e.feed(&prompt)?;
        let mut tok = e.next_token(sampler, &prompt)?;
        let pp = a.prompt_len as f64 / t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        for _ in 0..a.gen {
            e.feed(&[tok])?;
            tok = e.next_token(sampler, &[])?;
        }
        Ok((pp, a.gen as f64 / t1.elapsed().as_secs_f64()))
    };
    run_once(&mut e, &mut sampler)?; // warm-up: pipelines, caches
    let mut pps = vec![];
    let mut tgs = vec![];
    for _ in 0..a.reps.max(1) {
        let (pp, tg) = run_once(&mut e, &mut sampler)?;
        pps.push(pp);
        tgs.push(tg);
    }
    let (pp, tg) = (median(pps), median(tgs));
    let (bw, dispatch_us) = match &e {
        Engine::Gpu(g) => (
            Some(tide_gpu::gpu::probe::copy_bandwidth(&g.ctx, 64 << 20, 3)?),
            Some(tide_gpu::gpu::probe::dispatch_cost_us(&g.ctx, 200)?),
        ),
        Engine::Cpu(_) => (None, None),
    };
    let weight_bytes = match &e {
        Engine::Gpu(g) => g.weight_bytes,
        Engine::Cpu(_) => 0,
    };
    let out = serde_json::json!({
        "model": a.model.name(),
        "adapter": e.describe(),
        "prompt_len": a.prompt_len,
        "gen": a.gen,
        "prefill_tokens_per_s": pp,
        "decode_tokens_per_s": tg,
        "weight_bytes_per_token": weight_bytes,
        "decode_weight_gb_per_s": weight_bytes as f64 * tg / 1e9,
        "copy_bandwidth_gb_per_s": bw,
        "roofline_fraction": bw.map(|b| weight_bytes as f64 * tg / 1e9 / b),
        "dispatch_us": dispatch_us,
    });
    if let Engine::Gpu(g) = &e {
        if let Some(p) = &g.profile {
            let mut rows: Vec<_> = p.iter().collect();
            rows.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
            eprintln!(
                "{:>10} {:>8} {:>10}  kernel",
                "total ms", "calls", "us/call"
            );
            for (k, (n, t)) in rows {
                eprintln!(
                    "{:>10.1} {:>8} {:>10.1}  {k}",
                    t * 1e3,
                    n,
                    t * 1e6 / *n as f64
                );
            }
        }
    }
    if a.json {
        println!("{}", serde_json::to_string(&out)?);
    } else {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(())
}

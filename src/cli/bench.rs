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
    /// Decode cost of TIDE memory: add random 4-bit memory with each of these K (e.g. 8,24) to
    /// the model's backbone and time decode against K = 0, alternating rounds in one process.
    #[arg(long, value_delimiter = ',')]
    pub memory_overhead: Vec<usize>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn run(a: BenchArgs) -> Result<()> {
    if !a.memory_overhead.is_empty() {
        return memory_overhead(&a);
    }
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
            Some(tide_gpu::gpu::probe::copy_bandwidth(
                &g.ctx,
                // Well past any last-level cache (50 MB on an H100), within one binding.
                (g.ctx.limits.max_storage_buffer_binding_size as usize).min(256 << 20),
                // A real GPU copies 256 MiB in well under a millisecond: enough repetitions in one
                // submission to hide its latency. A CPU adapter needs few.
                if g.ctx.info.device_type == wgpu::DeviceType::Cpu {
                    3
                } else {
                    50
                },
            )?),
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

/// Decode tokens/s of the backbone alone and with K random memory blocks for each K, measured
/// in alternating rounds so drift on a noisy machine hits every variant alike.
fn memory_overhead(a: &BenchArgs) -> Result<()> {
    let base = a.model.load()?;
    let mut ks = vec![0];
    ks.extend(a.memory_overhead.iter().copied().filter(|&k| k > 0));
    let ctx = a.model.ctx_len(&base)?.min(a.gen + 8);
    let mut engines = Vec::new();
    for &k in &ks {
        let mut m = base.clone();
        m.memory = tide_gpu::model::synthetic::random_memory(&m.config, k)?;
        let mut margs = a.model.clone();
        margs.ctx = Some(ctx);
        engines.push(margs.engine(&m)?);
    }
    let mut sampler = Sampler::new(SamplerConfig::default());
    let mut decode = |e: &mut Engine| -> Result<f64> {
        e.reset();
        e.feed(&[1])?;
        let mut tok = e.next_token(&mut sampler, &[])?;
        let t = Instant::now();
        for _ in 0..a.gen {
            e.feed(&[tok])?;
            tok = e.next_token(&mut sampler, &[])?;
        }
        Ok(a.gen as f64 / t.elapsed().as_secs_f64())
    };
    for e in engines.iter_mut() {
        decode(e)?; // warm-up
    }
    let mut rates = vec![Vec::new(); ks.len()];
    for round in 0..a.reps.max(1) {
        for (i, e) in engines.iter_mut().enumerate() {
            rates[i].push(decode(e)?);
        }
        eprintln!("round {}/{} done", round + 1, a.reps.max(1));
    }
    let med: Vec<f64> = rates.into_iter().map(median).collect();
    let rows: Vec<serde_json::Value> = ks
        .iter()
        .zip(&med)
        .map(|(&k, &r)| {
            serde_json::json!({"k": k, "decode_tokens_per_s": r, "overhead": med[0] / r - 1.0})
        })
        .collect();
    let out = serde_json::json!({
        "model": a.model.name(), "adapter": engines[0].describe(), "gen": a.gen,
        "rounds": a.reps.max(1), "memory_overhead": rows,
    });
    if a.json {
        println!("{}", serde_json::to_string(&out)?);
    } else {
        for r in &rows {
            println!(
                "K = {:>2}: {:>7.2} tok/s decode, {:+.1}% time per token vs K = 0",
                r["k"],
                r["decode_tokens_per_s"].as_f64().unwrap_or(0.0),
                r["overhead"].as_f64().unwrap_or(0.0) * 100.0
            );
        }
    }
    Ok(())
}

use std::time::Instant;

use anyhow::Result;
use clap::Args;
use tide_gpu::{Engine, Sampler, SamplerConfig};

use super::common::{Loaded, ModelArgs};

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
    /// the model's backbone and time decode against K = 0, the variants taking turns token by
    /// token in one process.
    #[arg(long, value_delimiter = ',')]
    pub memory_overhead: Vec<usize>,
    /// With TIDE memory: time decode of the backbone alone against the memory streamed without
    /// a cache, through the (warmed) row cache and resident on the GPU, taking turns.
    #[arg(long)]
    pub memory_paths: bool,
    /// With --memory-paths: also these (e.g. SVD) tables, streamed through the cache.
    #[arg(long)]
    pub svd_memory: Option<std::path::PathBuf>,
    /// The row cache's hit rate over this text's tokens, per cache size (no model runs).
    #[arg(long)]
    pub cache_sweep: Option<std::path::PathBuf>,
    /// Cache sizes for --cache-sweep, as shares of the tables.
    #[arg(long, value_delimiter = ',', default_value = "0.01,0.02,0.05,0.1,0.2")]
    pub cache_shares: Vec<f64>,
    /// LIMe's decode cost: the model's backbone against the same with random LIMe mixes in
    /// every layer (K|V mixed across layers), taking turns token by token.
    #[arg(long)]
    pub lime_overhead: bool,
    /// Continuous batching: decode this many sequences together (e.g. 1,2,4,8), each after
    /// its own --prompt-len prompt, --gen steps each, and report the aggregate tokens/s.
    #[arg(long, value_delimiter = ',')]
    pub seqs: Vec<usize>,
    /// Trained model directories to decode side by side (the first is the baseline): tok/s,
    /// overhead, GPU buffers and host tables of each (docs/results.md).
    #[arg(long, value_delimiter = ',')]
    pub variants: Vec<std::path::PathBuf>,
}

/// This process's peak resident memory so far, in MB (Linux: VmHWM; None elsewhere).
pub fn peak_rss_mb() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024.0 / 1e6)
}

/// The model and an engine for a run of --prompt-len + --gen (+ `extra`) positions, which
/// must fit the context.
pub(super) fn load_for(a: &BenchArgs, extra: usize) -> Result<(Loaded, Engine)> {
    let m = a.model.load()?;
    let ctx = a.model.ctx_len(&m)?;
    if a.prompt_len == 0 || a.gen == 0 || a.prompt_len + a.gen + extra > ctx {
        anyhow::bail!(
            "--prompt-len ({}) and --gen ({}) must be positive and fit the context ({ctx})",
            a.prompt_len,
            a.gen
        );
    }
    let e = a.model.engine(&m)?;
    Ok((m, e))
}

pub(super) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Variant i's cost over variant 0's, paired round by round (a round's variants took turns on
/// the same machine): the median ratio - 1, and the lowest and highest.
fn paired_overhead(rates: &[Vec<f64>], i: usize) -> (f64, f64, f64) {
    let mut r: Vec<f64> = rates[i]
        .iter()
        .zip(&rates[0])
        .map(|(ri, r0)| r0 / ri - 1.0)
        .collect();
    r.sort_by(|a, b| a.total_cmp(b));
    (median(r.clone()), r[0], r[r.len() - 1])
}

pub fn run(a: BenchArgs) -> Result<()> {
    if !a.memory_overhead.is_empty() || a.lime_overhead {
        return memory_overhead(&a);
    }
    if a.memory_paths {
        return super::bench_memory::memory_paths(&a);
    }
    if let Some(data) = &a.cache_sweep {
        return super::bench_memory::cache_sweep(&a, data);
    }
    if !a.seqs.is_empty() {
        return super::bench_seqs::run(a);
    }
    if !a.variants.is_empty() {
        return super::bench_variants::run(&a);
    }
    let (m, mut e) = load_for(&a, 0)?;
    e.finish_compiles()?;
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
    // Per-token speed ratio of prefill to decode within each repetition (the two run back
    // to back, so a slow spell of the machine moves both): steadier than the medians' ratio.
    let mut ratios: Vec<f64> = pps.iter().zip(&tgs).map(|(p, t)| p / t).collect();
    ratios.sort_by(f64::total_cmp);
    let (ratio_lo, ratio_hi) = (ratios[0], ratios[ratios.len() - 1]);
    let ratio = median(ratios);
    let (pp, tg) = (median(pps), median(tgs));
    // Before the bandwidth probe, whose 256 MiB buffers would be counted otherwise.
    let peak_rss = peak_rss_mb();
    let gpu_memory = match &e {
        Engine::Gpu(g) => g.ctx.allocated_bytes(),
        Engine::Cpu(_) => None,
    };
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
        Engine::Cpu(_) => (Some(host_copy_bandwidth(256 << 20, 3)), None),
    };
    let (weight_bytes, prefill_batch) = match &e {
        Engine::Gpu(g) => (g.weight_bytes, Some(g.opts.max_batch)),
        // The matrices a decoded token reads (norms and memory rows aside, as on the GPU).
        Engine::Cpu(c) => {
            let batch = c
                .has_forward()
                .then_some(tide_gpu::fastcpu::forward::MAX_BATCH);
            (matrix_bytes(&m), batch)
        }
    };
    let out = serde_json::json!({
        "model": a.model.name(),
        "adapter": e.describe(),
        "prompt_len": a.prompt_len,
        "prefill_batch": prefill_batch,
        "gen": a.gen,
        "prefill_tokens_per_s": pp,
        "decode_tokens_per_s": tg,
        "prefill_over_decode": ratio,
        "prefill_over_decode_min": ratio_lo,
        "prefill_over_decode_max": ratio_hi,
        "weight_bytes_per_token": weight_bytes,
        "decode_weight_gb_per_s": weight_bytes as f64 * tg / 1e9,
        "copy_bandwidth_gb_per_s": bw,
        "roofline_fraction": bw.map(|b| weight_bytes as f64 * tg / 1e9 / b),
        "dispatch_us": dispatch_us,
        "peak_rss_mb": peak_rss,
        "gpu_memory_bytes": gpu_memory.map(|(b, t)| serde_json::json!({
            "buffers": b, "textures": t, "total": b + t,
        })),
        "memory": super::common::memory_json(&m),
    });
    let mut out = out;
    if let Engine::Gpu(g) = &e {
        if let Some(p) = &g.profile {
            let mut rows: Vec<_> = p.iter().collect();
            rows.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
            out["profile"] = rows
                .iter()
                .map(|(k, (n, t))| serde_json::json!({"kernel": k, "calls": n, "total_s": t}))
                .collect();
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

/// One variant of a race against variant 0.
pub(super) struct RaceStats {
    /// Decode tokens/s over all counted rounds.
    pub tokens_per_s: f64,
    /// Time per token over variant 0's, minus 1, over all rounds.
    pub overhead: f64,
    /// The same per round: median, lowest, highest.
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

/// `race`'s seconds as speeds and overheads against variant 0.
pub(super) fn race_stats(secs: &[Vec<f64>], gen: usize) -> Vec<RaceStats> {
    let rates: Vec<Vec<f64>> = secs
        .iter()
        .map(|r| r.iter().map(|s| gen as f64 / s).collect())
        .collect();
    let total: Vec<f64> = secs.iter().map(|r| r.iter().sum()).collect();
    (0..secs.len())
        .map(|i| {
            let (median, min, max) = paired_overhead(&rates, i);
            RaceStats {
                tokens_per_s: (secs[i].len() * gen) as f64 / total[i],
                overhead: total[i] / total[0] - 1.0,
                median,
                min,
                max,
            }
        })
        .collect()
}

/// Seconds each engine spent decoding `gen` tokens in each of `rounds` rounds, the engines
/// taking turns token by token (who goes first rotates): every variant decodes its next token
/// within a fraction of a second of the others, so the bursts of a shared machine hit all of
/// them alike. A first round warms up and is not counted.
pub(super) fn race(engines: &mut [Engine], gen: usize, rounds: usize) -> Result<Vec<Vec<f64>>> {
    let mut sampler = Sampler::new(SamplerConfig::default());
    let n = engines.len();
    let mut secs = vec![vec![0f64; rounds]; n];
    let mut tok = vec![0u32; n];
    for round in 0..=rounds {
        for (i, e) in engines.iter_mut().enumerate() {
            e.reset();
            e.feed(&[1])?;
            tok[i] = e.next_token(&mut sampler, &[])?;
        }
        for step in 0..gen {
            for j in 0..n {
                let i = (j + step) % n;
                let t = Instant::now();
                engines[i].feed(&[tok[i]])?;
                tok[i] = engines[i].next_token(&mut sampler, &[])?;
                if round > 0 {
                    secs[i][round - 1] += t.elapsed().as_secs_f64();
                }
            }
        }
        if round > 0 {
            eprintln!("round {round}/{rounds} done");
        }
    }
    Ok(secs)
}

/// Decode tokens/s of the backbone alone and with K random memory blocks for each K, all in one
/// process, the variants taking turns token by token.
fn memory_overhead(a: &BenchArgs) -> Result<()> {
    if a.gen == 0 {
        anyhow::bail!("--gen must be positive");
    }
    let base = a.model.load()?;
    // (K, LIMe): the backbone first, then each K, then LIMe.
    let mut variants = vec![(0, false)];
    variants.extend(
        a.memory_overhead
            .iter()
            .filter(|&&k| k > 0)
            .map(|&k| (k, false)),
    );
    if a.lime_overhead {
        variants.push((0, true));
    }
    let ctx = a.model.ctx_len(&base)?.min(a.gen + 8);
    let mut engines = Vec::new();
    for &(k, lime) in &variants {
        let mut m = base.model.clone();
        m.memory = tide_gpu::model::synthetic::random_memory(&m.config, k)?;
        if lime {
            tide_gpu::model::synthetic::random_lime(&mut m);
        }
        let mut margs = a.model.clone();
        margs.ctx = Some(ctx);
        let mut e = margs.engine(&Loaded::new(m))?;
        e.finish_compiles()?;
        engines.push(e);
    }
    let rounds = a.reps.max(1);
    let secs = race(&mut engines, a.gen, rounds)?;
    let rows: Vec<serde_json::Value> = variants
        .iter()
        .zip(race_stats(&secs, a.gen))
        .map(|(&(k, lime), r)| {
            serde_json::json!({
                "k": k, "lime": lime, "decode_tokens_per_s": r.tokens_per_s, "overhead": r.overhead,
                "round_overhead_median": r.median, "round_overhead_min": r.min,
                "round_overhead_max": r.max,
            })
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
            let pct = |key: &str| r[key].as_f64().unwrap_or(0.0) * 100.0;
            let what = match r["lime"].as_bool() {
                Some(true) => "LIMe  ".to_string(),
                _ => format!("K = {:>2}", r["k"]),
            };
            println!(
                "{what}: {:>7.2} tok/s decode, {:+.1}% time per token vs the backbone \
                 (rounds: median {:+.1}%, {:+.1}% .. {:+.1}%)",
                r["decode_tokens_per_s"].as_f64().unwrap_or(0.0),
                pct("overhead"),
                pct("round_overhead_median"),
                pct("round_overhead_min"),
                pct("round_overhead_max"),
            );
        }
    }
    Ok(())
}

/// Bytes of the matrices one token's forward reads: every layer's seven and the LM head.
fn matrix_bytes(m: &tide_gpu::Model) -> usize {
    m.matrices().map(|w| w.bytes().len()).sum()
}

/// Read+write bandwidth of host memory in GB/s (bytes read + bytes written per second): a
/// copy of `bytes`, split among the cores, best of `reps`. The CPU backend's roofline, as the
/// copy kernel's is the GPU's.
fn host_copy_bandwidth(bytes: usize, reps: usize) -> f64 {
    let src = vec![1u8; bytes];
    let mut dst = vec![0u8; bytes];
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = bytes.div_ceil(threads);
    let mut best = f64::INFINITY;
    for _ in 0..reps.max(1) {
        let t = std::time::Instant::now();
        std::thread::scope(|s| {
            for (d, c) in dst.chunks_mut(per).zip(src.chunks(per)) {
                s.spawn(move || d.copy_from_slice(c));
            }
        });
        best = best.min(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(&dst);
    2.0 * bytes as f64 / best / 1e9
}

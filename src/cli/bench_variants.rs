//! `tide bench --variants A,B,...`: trained models of one family (the first is the baseline)
//! decoding side by side in one process, taking turns token by token (`race`), with each
//! one's GPU memory and the memory tables it keeps on the host (mapped, streamed through its
//! row caches). For docs/results.md's table of TIDE, Engram and LIMe against the baseline.
use anyhow::{bail, Result};
use tide_gpu::Engine;

use super::bench::{race, race_stats, BenchArgs};
use super::common::Loaded;

/// Bytes of the memory tables stored on the host (TIDE's and Engram's), and the bytes their
/// row caches hold now.
fn host_tables(m: &Loaded) -> (u64, u64) {
    let mut stored = m.rows.engram_table_bytes();
    let mut cached = m.rows.engram_stats().resident_bytes;
    if let Some(store) = &m.rows.tide {
        stored += store.table_bytes();
        cached += store.stats().resident_bytes;
    }
    (stored, cached)
}

pub fn run(a: &BenchArgs) -> Result<()> {
    if a.gen == 0 {
        bail!("--gen must be positive");
    }
    let mut models = Vec::new();
    for p in &a.variants {
        let mut margs = a.model.clone();
        margs.model = Some(p.clone());
        models.push((margs.clone(), margs.load()?));
    }
    let mut ctx = usize::MAX;
    for (margs, m) in &models {
        ctx = ctx.min(margs.ctx_len(m)?);
    }
    if ctx < 16 {
        bail!("--variants: a context of {ctx} positions is too short to decode in");
    }
    let gen = a.gen.min(ctx - 8);
    let mut engines = Vec::new();
    for (margs, m) in &models {
        let mut margs = margs.clone();
        margs.ctx = Some(ctx);
        let mut e = margs.engine(m)?;
        e.finish_compiles()?;
        engines.push(e);
    }
    // Buffers and textures, as wgpu-hal counts each engine's device's allocations.
    let gpu = |e: &Engine| match e {
        Engine::Gpu(g) => g.ctx.allocated_bytes().map(|(b, t)| b + t),
        Engine::Cpu(_) => None,
    };
    let secs = race(&mut engines, gen, a.reps.max(1))?;
    // All read after the race, so that buffers made on first use count in each.
    let base_gpu = gpu(&engines[0]);
    let rows: Vec<serde_json::Value> = a
        .variants
        .iter()
        .zip(race_stats(&secs, gen))
        .zip(models.iter().zip(&engines))
        .map(|((p, r), ((_, m), e))| {
            let (stored, cached) = host_tables(m);
            let g = gpu(e);
            serde_json::json!({
                "model": p.display().to_string(), "decode_tokens_per_s": r.tokens_per_s,
                "overhead_vs_first": r.overhead, "round_overhead_median": r.median,
                "round_overhead_min": r.min, "round_overhead_max": r.max,
                "gpu_bytes": g, "extra_gpu_bytes": g.zip(base_gpu).map(|(x, b)| x as i64 - b as i64),
                "host_table_bytes": stored, "host_cache_bytes": cached,
                "memory": super::common::memory_json(m),
                "engram_rows": super::common::engram_json(m),
            })
        })
        .collect();
    let out = serde_json::json!({
        "adapter": engines[0].describe(), "gen": gen, "ctx": ctx, "rounds": a.reps.max(1),
        "variants": rows,
    });
    if a.json {
        println!("{}", serde_json::to_string(&out)?);
    } else {
        for r in &rows {
            let mb = |k: &str| r[k].as_f64().unwrap_or(0.0) / 1e6;
            println!(
                "{:<28} {:>7.2} tok/s  {:+6.1}% vs the first  GPU {:>6.2} MB ({:+.2})  \
                 host tables {:.2} MB (cache {:.2} MB)",
                r["model"].as_str().unwrap_or(""),
                r["decode_tokens_per_s"].as_f64().unwrap_or(0.0),
                r["overhead_vs_first"].as_f64().unwrap_or(0.0) * 100.0,
                mb("gpu_bytes"),
                mb("extra_gpu_bytes"),
                mb("host_table_bytes"),
                mb("host_cache_bytes"),
            );
        }
    }
    Ok(())
}

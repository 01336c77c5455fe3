//! `tide bench` for TIDE memory tables: decode speed of the row paths side by side
//! (`--memory-paths`), and the row cache's hit rate against its size (`--cache-sweep`).
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use tide_gpu::memory::store::by_frequency;

use super::bench::{race, race_stats, BenchArgs};
use super::common::Loaded;

/// `m` with row stores of its own: `cache_bytes` of cache for TIDE's, warmed from the token
/// counts when `warm`.
fn variant(m: &Loaded, cache_bytes: usize, warm: bool) -> Result<Loaded> {
    let v = Loaded {
        model: m.model.clone(),
        rows: m.rows.detached(),
    };
    if let Some(store) = &v.rows.tide {
        store.set_cache_bytes(cache_bytes);
        if let (true, Some(c)) = (warm, &m.token_counts) {
            store.warm(&by_frequency(c), 8192, &mut |_| {})?;
        }
    }
    Ok(v)
}

/// Decode tok/s of the backbone (K = 0) against the model's memory streamed without a cache,
/// through the row cache (warmed), resident on the GPU, and `--svd-memory`'s tables streamed,
/// in one process, taking turns token by token.
pub fn memory_paths(a: &BenchArgs) -> Result<()> {
    let base = a.model.load()?;
    if base.memory.is_none() {
        bail!("--memory-paths needs a model with TIDE memory (or --memory FILE)");
    }
    let Some(rows) = &base.rows.tide else {
        bail!("--memory-paths: the model's memory has no row store");
    };
    let ctx = a.model.ctx_len(&base)?;
    let cache = a
        .model
        .cache_bytes(rows.table_bytes(), rows.token_bytes(), ctx)?;
    let mut labels = vec!["backbone (K = 0)".to_string()];
    let mut models = vec![{
        let mut m = base.model.clone();
        m.memory = None;
        Loaded::new(m)
    }];
    labels.push("streamed, no cache".into());
    models.push(variant(&base, 0, false)?);
    labels.push(format!(
        "streamed, {:.1} MB cache, warmed",
        cache as f64 / 1e6
    ));
    models.push(variant(&base, cache, true)?);
    labels.push("resident on the GPU".into());
    models.push(variant(&base, 0, false)?);
    if let Some(p) = &a.svd_memory {
        let mut m = base.model.clone();
        tide_gpu::model::attach_memory(&mut m, p)?;
        let m = Loaded::new(m);
        labels.push(format!(
            "SVD tables ({}), {:.1} MB cache, warmed",
            p.display(),
            cache as f64 / 1e6
        ));
        models.push(variant(&m, cache, true)?);
    }
    let ctx = a.model.ctx_len(&base)?.min(a.gen + 8);
    let mut engines = Vec::new();
    for (i, m) in models.iter().enumerate() {
        let mut margs = a.model.clone();
        margs.ctx = Some(ctx);
        margs.memory_resident = i == 3;
        let mut e = margs.engine(m)?;
        e.finish_compiles()?;
        engines.push(e);
    }
    for m in &models {
        if let Some(store) = &m.rows.tide {
            store.reset_stats();
        }
    }
    let rounds = a.reps.max(1);
    let secs = race(&mut engines, a.gen, rounds)?;
    let rows: Vec<serde_json::Value> = labels
        .iter()
        .zip(race_stats(&secs, a.gen))
        .zip(&models)
        .map(|((l, r), m)| {
            serde_json::json!({
                "variant": l, "decode_tokens_per_s": r.tokens_per_s,
                "overhead_vs_backbone": r.overhead, "round_overhead_median": r.median,
                "round_overhead_min": r.min, "round_overhead_max": r.max,
                "memory": super::common::memory_json(m),
            })
        })
        .collect();
    let out = serde_json::json!({
        "model": a.model.name(), "adapter": engines[0].describe(), "gen": a.gen,
        "rounds": rounds, "memory_paths": rows,
    });
    if a.json {
        println!("{}", serde_json::to_string(&out)?);
    } else {
        for r in &rows {
            println!(
                "{:<60} {:>7.2} tok/s  {:+.1}% vs K = 0",
                r["variant"].as_str().unwrap_or(""),
                r["decode_tokens_per_s"].as_f64().unwrap_or(0.0),
                r["overhead_vs_backbone"].as_f64().unwrap_or(0.0) * 100.0
            );
        }
    }
    Ok(())
}

/// The row cache over the tokens of a text, one token per step as decoding reads them: hit
/// rate and bytes fetched per token for each cache size (a share of the tables), cold and
/// warmed from the token counts. Only the row store runs (no model), so the figures are the
/// cache's alone.
pub fn cache_sweep(a: &BenchArgs, data: &Path) -> Result<()> {
    let m = a.model.load()?;
    let Some(store) = &m.rows.tide else {
        bail!("--cache-sweep needs a model with TIDE memory (or --memory FILE)");
    };
    let text =
        std::fs::read_to_string(data).with_context(|| format!("reading {}", data.display()))?;
    let ids = m.tokenizer.encode(&text, false)?;
    if ids.is_empty() {
        bail!("{}: no tokens", data.display());
    }
    let tables = store.table_bytes();
    let mut rows = Vec::new();
    let mut out = Vec::new();
    for &share in &a.cache_shares {
        if !(0.0..=1.0).contains(&share) {
            bail!("--cache-shares: {share} is not a share of the tables in 0..=1");
        }
        for warm in [false, true] {
            if warm && m.token_counts.is_none() {
                continue;
            }
            let v = variant(&m, (share * tables as f64) as usize, warm)?;
            let Some(store) = &v.rows.tide else {
                bail!("--cache-sweep: the model's memory has no row store");
            };
            let t = Instant::now();
            for id in &ids {
                store.gather(std::slice::from_ref(id), &mut out)?;
            }
            let s = store.stats();
            let r = serde_json::json!({
                "cache_share": share,
                "cache_mb": share * tables as f64 / 1e6,
                "warmed": warm,
                "tokens": ids.len(),
                "hit_rate": s.hits as f64 / s.rows_requested.max(1) as f64,
                "bytes_fetched_per_token": s.bytes_fetched as f64 / ids.len() as f64,
                "seconds": t.elapsed().as_secs_f64(),
                "memory": s,
            });
            eprintln!(
                "cache {:>5.1}% of the tables ({:>7.1} MB), {:<6}: hit rate {:>6.2}%, {:>8.0} bytes fetched per token",
                share * 100.0,
                share * tables as f64 / 1e6,
                if warm { "warmed" } else { "cold" },
                r["hit_rate"].as_f64().unwrap_or(0.0) * 100.0,
                r["bytes_fetched_per_token"].as_f64().unwrap_or(0.0)
            );
            rows.push(r);
        }
    }
    let j = serde_json::json!({
        "model": a.model.name(), "data": data.display().to_string(),
        "table_bytes": tables, "cache_sweep": rows,
    });
    if a.json {
        println!("{}", serde_json::to_string(&j)?);
    }
    Ok(())
}

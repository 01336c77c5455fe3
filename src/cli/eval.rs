//! `tide eval` (perplexity and cross-entropy by token-frequency decile) and `tide ablate`
//! (perplexity with each layer's memory injection removed in turn).
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tide_gpu::eval::{evaluate, EvalResult, DECILES};
use tide_gpu::Engine;

use super::common::Loaded;

use super::common::ModelArgs;

#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Text file to evaluate on.
    #[arg(long)]
    pub data: PathBuf,
    /// Training-corpus token counts (JSON array, or one integer per line), when the model
    /// does not carry tide.token_counts.
    #[arg(long)]
    pub counts: Option<PathBuf>,
    /// Tokens per independent window (default: the model's context, at most 512).
    #[arg(long)]
    pub window: Option<usize>,
    /// Evaluate only the first N tokens of the data.
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// Evaluate only N windows, evenly spaced over the data (a faster, still representative
    /// sample of a long file).
    #[arg(long)]
    pub windows: Option<usize>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

struct Prepared {
    model: Loaded,
    engine: Engine,
    ids: Vec<u32>,
    counts: Option<Vec<u64>>,
    window: usize,
    max_windows: Option<usize>,
}

fn prepare(a: &EvalArgs) -> Result<Prepared> {
    let model = a.model.load()?;
    let text = std::fs::read_to_string(&a.data)
        .with_context(|| format!("reading --data {}", a.data.display()))?;
    let mut ids = model.tokenizer.encode(&text, false)?;
    if let Some(n) = a.max_tokens {
        ids.truncate(n);
    }
    if ids.len() < 2 {
        bail!(
            "--data {}: fewer than 2 tokens to evaluate",
            a.data.display()
        );
    }
    let counts = match &a.counts {
        Some(p) => Some(read_counts(p, model.config.vocab)?),
        None => model.token_counts.clone(),
    };
    let window = a.window.unwrap_or(model.config.ctx_len.min(512));
    if window < 2 {
        bail!("--window must be at least 2, got {window}");
    }
    let mut margs = a.model.clone();
    margs.ctx = Some(window);
    let engine = margs.engine(&model)?;
    Ok(Prepared {
        model,
        engine,
        ids,
        counts,
        window,
        max_windows: a.windows,
    })
}

fn read_counts(p: &PathBuf, vocab: usize) -> Result<Vec<u64>> {
    let text =
        std::fs::read_to_string(p).with_context(|| format!("reading --counts {}", p.display()))?;
    let v: Vec<u64> = if text.trim_start().starts_with('[') {
        serde_json::from_str(&text)
            .with_context(|| format!("--counts {}: not a JSON array of counts", p.display()))?
    } else {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, l)| {
                l.trim().parse::<u64>().with_context(|| {
                    format!(
                        "--counts {}: line {} is not a count: '{l}'",
                        p.display(),
                        i + 1
                    )
                })
            })
            .collect::<Result<_>>()?
    };
    if v.len() != vocab {
        bail!(
            "--counts {}: {} counts, but the model's vocabulary has {vocab} ids",
            p.display(),
            v.len()
        );
    }
    Ok(v)
}

fn bar(label: &str, total: usize) -> ProgressBar {
    let pb = ProgressBar::new(total as u64);
    pb.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} windows, eta {eta}")
            .unwrap()
            .progress_chars("=> "),
    );
    pb.set_prefix(label.to_string());
    pb
}

fn run_eval(p: &mut Prepared, label: &str) -> Result<EvalResult> {
    let all = (p.ids.len() - 1).div_ceil(p.window);
    let total = p.max_windows.map_or(all, |n| n.min(all));
    let pb = bar(label, total);
    let r = evaluate(
        &mut p.engine,
        &p.ids,
        p.window,
        p.max_windows,
        p.counts.as_deref(),
        p.model.config.n_layers,
        |done, _| pb.set_position(done as u64),
    )?;
    pb.finish_and_clear();
    Ok(r)
}

/// A horizontal bar of `v` against `max`, `width` cells wide.
fn hbar(v: f64, max: f64, width: usize) -> String {
    let n = if max > 0.0 && v.is_finite() {
        ((v / max) * width as f64).round() as usize
    } else {
        0
    };
    "█".repeat(n.min(width))
}

pub fn run(a: EvalArgs) -> Result<()> {
    let mut p = prepare(&a)?;
    let r = run_eval(&mut p, "eval")?;
    if a.json {
        let mut j = serde_json::to_value(&r)?;
        j["model"] = a.model.name().into();
        j["data"] = a.data.display().to_string().into();
        j["k"] = p.engine.memory_k().into();
        j["window"] = p.window.into();
        j["windows"] = p.max_windows.into();
        j["memory"] = super::common::memory_json(&p.model);
        if p.model.engram.is_some() {
            j["engram_rows"] = super::common::engram_json(&p.model);
        }
        println!("{}", serde_json::to_string(&j)?);
        return Ok(());
    }
    println!(
        "{}: {} tokens, cross-entropy {:.4} nats, perplexity {:.3}",
        a.data.display(),
        r.tokens,
        r.ce,
        r.ppl
    );
    match (&r.ce_by_decile, &r.count_by_decile) {
        (Some(ce), Some(n)) => {
            let max = ce
                .iter()
                .cloned()
                .filter(|x| x.is_finite())
                .fold(0.0, f64::max);
            println!("\ncross-entropy by token-frequency decile (targets; 1 = rarest):");
            for d in 0..DECILES {
                let null = r
                    .null_by_decile
                    .as_ref()
                    .map(|v| format!("  NULL {:.3}", v[d]))
                    .unwrap_or_default();
                println!(
                    "  {:>2}  {:>7.3}  {:<30} {:>7} targets{null}",
                    d + 1,
                    ce[d],
                    hbar(ce[d], max, 30),
                    n[d]
                );
            }
        }
        _ => println!("(no token counts: pass --counts for the per-decile table)"),
    }
    if let Some(l) = &r.null_by_layer {
        println!("\nmean NULL weight by layer:");
        for (i, v) in l.iter().enumerate() {
            println!("  layer {i:>2}  {v:.3}  {}", hbar(*v, 1.0, 30));
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct AblateArgs {
    #[command(flatten)]
    pub eval: EvalArgs,
}

pub fn ablate(a: AblateArgs) -> Result<()> {
    let a = a.eval;
    let mut p = prepare(&a)?;
    let n_layers = p.model.config.n_layers;
    if p.engine.memory_k() == 0 {
        bail!("{}: the model has no TIDE memory to ablate", a.model.name());
    }
    let full = run_eval(&mut p, "all layers")?;
    let mut rows = Vec::new();
    for l in 0..n_layers {
        p.engine.set_layer_memory(l, false)?;
        let r = run_eval(&mut p, &format!("without layer {l}"))?;
        p.engine.set_layer_memory(l, true)?;
        rows.push(r);
    }
    if a.json {
        let layers: Vec<serde_json::Value> = rows
            .iter()
            .enumerate()
            .map(|(l, r)| {
                serde_json::json!({
                    "layer": l, "ppl": r.ppl, "ce": r.ce,
                    "ppl_change": r.ppl / full.ppl - 1.0,
                    "ce_by_decile": r.ce_by_decile,
                })
            })
            .collect();
        let j = serde_json::json!({
            "model": a.model.name(), "data": a.data.display().to_string(),
            "tokens": full.tokens, "ppl": full.ppl, "ce": full.ce,
            "ce_by_decile": full.ce_by_decile, "layers": layers,
        });
        println!("{}", serde_json::to_string(&j)?);
        return Ok(());
    }
    println!(
        "{}: {} tokens; perplexity with every layer's memory: {:.3}\n",
        a.data.display(),
        full.tokens,
        full.ppl
    );
    println!("  memory removed at   perplexity   change");
    let max = rows
        .iter()
        .map(|r| r.ppl / full.ppl - 1.0)
        .fold(0.0, f64::max);
    for (l, r) in rows.iter().enumerate() {
        let ch = r.ppl / full.ppl - 1.0;
        println!(
            "  layer {l:>2}          {:>10.3}  {:>+7.2}%  {}",
            r.ppl,
            ch * 100.0,
            hbar(ch, max, 30)
        );
    }
    Ok(())
}

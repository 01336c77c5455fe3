//! `tide bench --seqs 1,2,4,8`: what continuous batching buys. For each count c, c sequences
//! are prefilled in their own K/V cache slots, then decoded together for --gen steps (each
//! step one `step_seqs` of c tokens, greedy on the host from every logit); the figure is the
//! aggregate tokens/s and its ratio to one sequence, all counts taking turns in each round.
use std::time::Instant;

use anyhow::Result;

use super::bench::{load_for, median, BenchArgs};

pub fn run(mut a: BenchArgs) -> Result<()> {
    let most = *a.seqs.iter().max().expect("--seqs is not empty");
    if a.seqs.contains(&0) || most > 64 {
        anyhow::bail!("--seqs: each count must be in 1..=64");
    }
    a.model.slots = most;
    let (m, mut e) = load_for(&a, 1)?;
    e.finish_compiles()?;
    if e.slots() < most {
        anyhow::bail!("--seqs needs the GPU backend (the CPU reference holds one sequence)");
    }
    let v = m.config.vocab as u64;
    // A deterministic pseudo-random prompt per slot.
    let prompt = |s: usize| -> Vec<u32> {
        (0..a.prompt_len as u64)
            .map(|i| ((i * 2654435761 + 17 + s as u64 * 7919) % v) as u32)
            .collect()
    };
    let argmax = |l: &[f32]| {
        l.iter()
            .enumerate()
            .max_by(|x, y| x.1.total_cmp(y.1))
            .map_or(0, |(i, _)| i as u32)
    };
    // One round of c sequences: seconds for the decode steps.
    let mut decode = |c: usize| -> Result<f64> {
        let mut next = Vec::with_capacity(c);
        for s in 0..c {
            e.use_slot(s)?;
            e.reset();
            e.feed(&prompt(s))?;
            next.push(argmax(&e.logits()?));
        }
        let t0 = Instant::now();
        for _ in 0..a.gen {
            let toks: Vec<(usize, u32)> = next.iter().copied().enumerate().collect();
            let out = e.step_seqs(&toks)?;
            next = out.iter().map(|l| argmax(l)).collect();
        }
        Ok(t0.elapsed().as_secs_f64())
    };
    for &c in &a.seqs {
        decode(c)?; // warm-up: each count's kernels
    }
    let mut secs: Vec<Vec<f64>> = vec![Vec::new(); a.seqs.len()];
    for r in 0..a.reps.max(1) {
        eprintln!("[bench] round {} of {}", r + 1, a.reps.max(1));
        for (i, &c) in a.seqs.iter().enumerate() {
            secs[i].push(decode(c)?);
        }
    }
    let rate = |i: usize, s: f64| (a.seqs[i] * a.gen) as f64 / s;
    let one = a.seqs.iter().position(|&c| c == 1);
    let rows: Vec<serde_json::Value> = a
        .seqs
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let rates: Vec<f64> = secs[i].iter().map(|&s| rate(i, s)).collect();
            // Per round against one sequence in the same round: a slow spell moves both.
            let ratios: Option<Vec<f64>> = one.map(|o| {
                (0..secs[i].len())
                    .map(|r| rate(i, secs[i][r]) / rate(o, secs[o][r]))
                    .collect()
            });
            serde_json::json!({
                "seqs": c,
                "tokens_per_s": median(rates.clone()),
                "tokens_per_s_rounds": rates,
                "over_one_seq": ratios.clone().map(median),
                "over_one_seq_rounds": ratios,
            })
        })
        .collect();
    let out = serde_json::json!({
        "model": a.model.name(),
        "adapter": e.describe(),
        "prompt_len": a.prompt_len,
        "gen": a.gen,
        "rounds": a.reps.max(1),
        "seq_group": match &e { tide_gpu::Engine::Gpu(g) => g.seq_group(), _ => 1 },
        "rows": rows,
    });
    if a.json {
        println!("{}", serde_json::to_string(&out)?);
    } else {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(())
}

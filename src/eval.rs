//! Held-out evaluation: perplexity, cross-entropy by token-frequency decile, and the mean
//! NULL weight of the router by decile (docs/format.md gives the definitions; train/evaluate.py
//! computes the same in PyTorch).
use serde::Serialize;

use crate::engine::Engine;
use crate::error::{Error, Result};

pub use crate::frequency::{deciles, DECILES};

#[derive(Debug, Clone, Serialize)]
pub struct EvalResult {
    /// Predicted positions.
    pub tokens: usize,
    /// Mean cross-entropy in nats.
    pub ce: f64,
    pub ppl: f64,
    /// Mean cross-entropy of targets in each frequency decile, rarest first (None: no counts).
    pub ce_by_decile: Option<Vec<f64>>,
    pub count_by_decile: Option<Vec<usize>>,
    /// Mean NULL weight (over layers) at positions whose input token is in each decile.
    pub null_by_decile: Option<Vec<f64>>,
    /// Mean NULL weight per layer over all positions.
    pub null_by_layer: Option<Vec<f64>>,
}

/// Evaluate `ids` in consecutive windows of `window` tokens (the last one shorter), each an
/// independent sequence from position 0; with `max_windows`, only that many of them, evenly
/// spaced over the data. `progress(done, total)` is called after each window.
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    engine: &mut Engine,
    ids: &[u32],
    window: usize,
    max_windows: Option<usize>,
    counts: Option<&[u64]>,
    n_layers: usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<EvalResult> {
    if ids.len() < 2 {
        return Err(Error::Input(
            "evaluation needs at least 2 tokens of data".into(),
        ));
    }
    if window < 2 {
        return Err(Error::Input(
            "the evaluation window must be at least 2 tokens".into(),
        ));
    }
    let dec = counts.map(deciles);
    let k1 = engine.memory_k() + 1;
    let mut ce_sum = [0f64; DECILES];
    let mut ce_n = [0usize; DECILES];
    let mut null_sum = [0f64; DECILES];
    let mut null_n = [0usize; DECILES];
    let mut layer_null = vec![0f64; n_layers];
    let (mut total, mut n) = (0f64, 0usize);
    let mut starts: Vec<usize> = (0..ids.len() - 1).step_by(window).collect();
    if let Some(n) = max_windows.filter(|&n| n > 0 && n < starts.len()) {
        starts = (0..n).map(|i| starts[i * starts.len() / n]).collect();
    }
    for (wi, &s) in starts.iter().enumerate() {
        let w = &ids[s..(s + window + 1).min(ids.len())];
        if w.len() < 2 {
            break;
        }
        engine.reset();
        let (logits, router) = engine.feed_all(&w[..w.len() - 1])?;
        let vocab = logits.len() / (w.len() - 1);
        for (t, row) in logits.chunks_exact(vocab).enumerate() {
            let target = w[t + 1] as usize;
            let mx = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
            let lse = mx + row.iter().map(|&x| (x as f64 - mx).exp()).sum::<f64>().ln();
            let ce = lse - row[target] as f64;
            if !ce.is_finite() {
                return Err(Error::Gpu(format!(
                    "non-finite logits at window {wi}, position {t}"
                )));
            }
            total += ce;
            n += 1;
            if let Some(d) = &dec {
                let dt = d[target] as usize;
                ce_sum[dt] += ce;
                ce_n[dt] += 1;
            }
            if k1 > 1 {
                let a = &router[t * n_layers * k1..(t + 1) * n_layers * k1];
                let mut mean = 0.0;
                for (l, slot) in a.chunks_exact(k1).enumerate() {
                    mean += slot[k1 - 1] as f64;
                    layer_null[l] += slot[k1 - 1] as f64;
                }
                if let Some(d) = &dec {
                    let di = d[w[t] as usize] as usize;
                    null_sum[di] += mean / n_layers as f64;
                    null_n[di] += 1;
                }
            }
        }
        progress(wi + 1, starts.len());
    }
    let mean = |s: &[f64], c: &[usize]| -> Vec<f64> {
        s.iter()
            .zip(c)
            .map(|(a, &b)| if b > 0 { a / b as f64 } else { f64::NAN })
            .collect()
    };
    let ce = total / n as f64;
    Ok(EvalResult {
        tokens: n,
        ce,
        ppl: ce.exp(),
        ce_by_decile: dec.as_ref().map(|_| mean(&ce_sum, &ce_n)),
        count_by_decile: dec.as_ref().map(|_| ce_n.to_vec()),
        null_by_decile: (dec.is_some() && k1 > 1).then(|| mean(&null_sum, &null_n)),
        null_by_layer: (k1 > 1).then(|| layer_null.iter().map(|x| x / n as f64).collect()),
    })
}

//! A variant model (tests/fixtures/tiny_lime, tiny_engram: train/golden.py) against PyTorch's
//! logits at every position, on the CPU reference and the GPU decoder.
use std::sync::Arc;

use super::{assert_close, gpu, json_ids, json_rows};
use tide_gpu::cpu::CpuModel;
use tide_gpu::decoder::{DecoderOptions, GpuDecoder, KernelSet};
use tide_gpu::Model;

/// The CPU reference fed each golden sequence at once and token by token.
pub fn cpu_matches(m: &Model, golden: &serde_json::Value, tol: f32, what: &str) {
    let cm = Arc::new(CpuModel::new(m));
    let v = m.config.vocab;
    for case in golden["seqs"].as_array().unwrap() {
        let ids = json_ids(&case["ids"]);
        let want: Vec<f32> = json_rows(&case["logits"]).concat();
        let mut s = cm.session(64);
        s.keep_all = true;
        s.feed(&ids).unwrap();
        assert_close(&format!("{what}, all at once"), &s.all_logits, &want, tol);
        let mut s = cm.session(64);
        for (t, &id) in ids.iter().enumerate() {
            let l = s.feed(&[id]).unwrap();
            let w = &want[t * v..(t + 1) * v];
            assert_close(&format!("{what}, token {t}"), l, w, tol);
        }
    }
}

/// Largest logit difference at the last position of the first golden sequence when `m` (the
/// model without its variant) runs it: the variant must matter.
pub fn off_without(m: &Model, golden: &serde_json::Value) -> f32 {
    let ids = json_ids(&golden["seqs"][0]["ids"]);
    let mut s = Arc::new(CpuModel::new(m)).session(64);
    let l = s.feed(&ids).unwrap().to_vec();
    let want = &json_rows(&golden["seqs"][0]["logits"])[ids.len() - 1];
    l.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max)
}

/// The GPU decoder in both kernel families on the first golden sequence: its first `batch`
/// tokens as one batch (every position's logits) and the rest as a second, token by token,
/// and two slots sharing steps after slot 0 was fed `ahead` tokens and slot 1 one.
pub fn gpu_matches(m: &Model, golden: &serde_json::Value, batch: usize, ahead: usize, tol: f32) {
    let case = &golden["seqs"][0];
    let ids = json_ids(&case["ids"]);
    let want: Vec<Vec<f32>> = json_rows(&case["logits"]);
    for ks in [KernelSet::CpuAdapter, KernelSet::Gpu] {
        let opts = DecoderOptions {
            ctx_len: 64,
            slots: 2,
            max_batch: 16,
            kernels: ks,
            token_by_token_upto: 0,
            ..Default::default()
        };
        let mut dec = GpuDecoder::new(gpu(), m, opts).unwrap();
        let all = dec.feed_all(&ids[..batch]).unwrap();
        let what = format!("GPU batch ({ks:?})");
        assert_close(&what, &all, &want[..batch].concat(), tol);
        if batch < ids.len() {
            dec.feed(&ids[batch..]).unwrap();
            let l = dec.logits().unwrap();
            let what = format!("GPU second batch ({ks:?})");
            assert_close(&what, &l, &want[ids.len() - 1], tol);
        }
        dec.reset();
        for (t, &id) in ids.iter().enumerate() {
            dec.feed(&[id]).unwrap();
            let l = dec.logits().unwrap();
            assert_close(&format!("GPU token {t} ({ks:?})"), &l, &want[t], tol);
        }
        for (slot, n) in [(0, ahead), (1, 1)] {
            dec.use_slot(slot).unwrap();
            dec.reset();
            dec.feed(&ids[..n]).unwrap();
        }
        let mut pos = [ahead, 1];
        while pos[0] < ids.len() {
            let out = dec
                .step_seqs(&[(0, ids[pos[0]]), (1, ids[pos[1]])])
                .unwrap();
            for s in 0..2 {
                let what = format!("GPU slot {s} at {} ({ks:?})", pos[s]);
                assert_close(&what, &out[s], &want[pos[s]], tol);
                pos[s] += 1;
            }
        }
    }
}

/// A committed model's golden case (train/golden.py `committed`: the 32 largest logits of every
/// position and the router weights): the worst relative logit difference at those ids, and the
/// largest router weight difference (0 for a model without router weights).
pub fn top_diffs(
    m: &Model,
    case: &serde_json::Value,
    logits: &[f32],
    router: &[f32],
) -> (f64, f64) {
    let f = |v: &serde_json::Value| v.as_f64().unwrap();
    let v = m.config.vocab;
    let mut worst = 0f64;
    for (t, top) in case["top"].as_array().unwrap().iter().enumerate() {
        for (id, want) in json_ids(&top["ids"])
            .iter()
            .zip(top["logits"].as_array().unwrap())
        {
            let got = logits[t * v + *id as usize] as f64;
            worst = worst.max((got - f(want)).abs() / f(want).abs().max(1.0));
        }
    }
    if case["router"].is_null() {
        return (worst, 0.0);
    }
    let want: Vec<f64> = case["router"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t.as_array().unwrap().iter())
        .flat_map(|l| l.as_array().unwrap().iter().map(f))
        .collect();
    assert_eq!(want.len(), router.len(), "router weights' length");
    let r = want
        .iter()
        .zip(router)
        .map(|(a, b)| (a - *b as f64).abs())
        .fold(0.0, f64::max);
    (worst, r)
}

/// A committed model's golden cases run on the CPU reference (when `cpu`) and the GPU decoder
/// (`kernels`, or the adapter's default): per case and backend, (text, backend, worst relative
/// logit difference at the top-32 ids, largest router weight difference). The tokenizer must
/// give the ids the Python `tokenizers` run gave.
pub fn committed_diffs(
    m: &Model,
    golden: &serde_json::Value,
    kernels: Option<KernelSet>,
    cpu: bool,
) -> Vec<(String, &'static str, f64, f64)> {
    let cm = Arc::new(CpuModel::new(m));
    let mut opts = DecoderOptions {
        ctx_len: 64,
        max_batch: 64,
        // The prefill kernels, however short the batch.
        token_by_token_upto: 0,
        ..Default::default()
    };
    if let Some(k) = kernels {
        opts.kernels = k;
    }
    let mut dec = GpuDecoder::new(gpu(), m, opts).unwrap();
    let mut out = Vec::new();
    for case in golden["seqs"].as_array().unwrap() {
        let seq = json_ids(&case["ids"]);
        let text = case["text"].as_str().unwrap().to_string();
        assert_eq!(
            m.tokenizer.encode(&text, true).unwrap(),
            seq,
            "ids of {text:?}"
        );
        if cpu {
            let mut s = cm.session(64);
            s.keep_all = true;
            s.feed(&seq).unwrap();
            let (l, r) = top_diffs(m, case, &s.all_logits, &s.router);
            out.push((text.clone(), "cpu", l, r));
        }
        dec.reset();
        let logits = dec.feed_all(&seq).unwrap();
        let router = dec.router_weights().unwrap();
        let (l, r) = top_diffs(m, case, &logits, &router);
        out.push((text, "gpu", l, r));
    }
    out
}

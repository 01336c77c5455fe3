//! The GGUF architectures beyond plain LLaMA (Llama 3.1 RoPE scaling, Mistral-style GQA, Qwen2's
//! q/k/v biases, Qwen3's per-head q/k norm), each as a tiny random model written by gguf-py,
//! against llama.cpp's logits at every position of a 16-token sequence and its greedy tokens
//! (tests/fixtures/arch/, made by scripts/arch_reference.py with llama-cpp-python).
mod common;

use std::sync::Arc;

use common::{assert_close, gpu, repo};
use tide_gpu::cpu::CpuModel;
use tide_gpu::decoder::{DecoderOptions, GpuDecoder, KernelSet};
use tide_gpu::model::{self, Model, RopeLayout};

const CASES: [&str; 4] = ["llama3", "mistral", "qwen2", "qwen3"];

/// llama.cpp computes in f32 in another summation order, and its logits are written with 5
/// decimals (+-5e-6). Measured on lavapipe: the CPU reference and both kernel families are
/// within 1.0e-5 of them (relative to max(1, |logit|)).
const TOL: f32 = 5e-5;

struct Reference {
    tokens: Vec<u32>,
    logits: Vec<Vec<f32>>,
    greedy: Vec<u32>,
}

fn case(name: &str) -> (Model, Reference) {
    let dir = repo().join("tests/fixtures/arch");
    let m = model::load(&dir.join(format!("{name}.gguf"))).unwrap();
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap())
            .unwrap();
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    let logits = j["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect();
    let r = Reference {
        tokens: ids(&j["tokens"]),
        logits,
        greedy: ids(&j["greedy"]),
    };
    (m, r)
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

#[test]
fn architectures_load_with_their_traits() {
    let traits = |name: &str| {
        let (m, _) = case(name);
        let l = &m.layers[0];
        (
            m.config.rope_layout,
            l.qkv_bias.is_some(),
            l.qk_norm.is_some(),
            m.config.rope_freq_factors.is_some(),
            m.lm_head.is_some(),
        )
    };
    use RopeLayout::*;
    assert_eq!(traits("llama3"), (Adjacent, false, false, true, false));
    assert_eq!(traits("mistral"), (Adjacent, false, false, false, true));
    assert_eq!(traits("qwen2"), (RotateHalf, true, false, false, true));
    assert_eq!(traits("qwen3"), (RotateHalf, false, true, false, false));
}

/// The CPU reference, one token at a time, at every position; then llama.cpp's greedy tokens.
#[test]
fn cpu_reference_matches_llama_cpp_per_architecture() {
    for name in CASES {
        let (m, r) = case(name);
        let cpu = Arc::new(CpuModel::new(&m));
        let mut s = cpu.session(64);
        let mut worst = 0f32;
        for (t, &id) in r.tokens.iter().enumerate() {
            let got = s.feed(&[id]).unwrap().to_vec();
            let w = assert_close(&format!("{name} cpu pos {t}"), &got, &r.logits[t], TOL);
            worst = worst.max(w);
        }
        eprintln!("{name}: cpu reference within {worst:.1e} of llama.cpp");
        let mut greedy = vec![];
        let mut next = argmax(&s.logits);
        for _ in 0..r.greedy.len() {
            greedy.push(next);
            next = argmax(s.feed(&[next]).unwrap());
        }
        assert_eq!(greedy, r.greedy, "{name}: cpu greedy tokens");
    }
}

/// Both kernel families: decode at every position, one prefill batch, and greedy decoding.
#[test]
fn gpu_matches_llama_cpp_per_architecture() {
    for name in CASES {
        let (m, r) = case(name);
        for ks in [KernelSet::CpuAdapter, KernelSet::Gpu] {
            let tag = format!("{name} gpu ({ks:?} kernels)");
            let opts = DecoderOptions {
                ctx_len: 64,
                max_batch: 16,
                kernels: ks,
                token_by_token_upto: 0,
                ..Default::default()
            };
            let mut d = GpuDecoder::new(gpu(), &m, opts).unwrap();
            let mut worst = 0f32;
            for (t, &id) in r.tokens.iter().enumerate() {
                d.feed(&[id]).unwrap();
                let got = d.logits().unwrap();
                let w = assert_close(&format!("{tag} pos {t}"), &got, &r.logits[t], TOL);
                worst = worst.max(w);
            }
            eprintln!("{tag}: decode within {worst:.1e} of llama.cpp");
            d.reset();
            d.feed(&r.tokens).unwrap();
            let got = d.logits().unwrap();
            assert_close(
                &format!("{tag} prefill"),
                &got,
                r.logits.last().unwrap(),
                TOL,
            );
            let mut greedy = vec![];
            let mut next = argmax(&got);
            for _ in 0..r.greedy.len() {
                greedy.push(next);
                d.feed(&[next]).unwrap();
                next = argmax(&d.logits().unwrap());
            }
            assert_eq!(greedy, r.greedy, "{tag}: greedy tokens");
        }
    }
}

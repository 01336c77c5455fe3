//! TIDE memory end to end: the CPU reference and the GPU decoder against golden logits and
//! router weights from the PyTorch model (train/golden.py, an independent implementation), in
//! every stored form of the tables; the NULL slot and K = 0 reproduce the plain backbone.
mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::{assert_close, gpu, repo};
use tide_gpu::cpu::CpuModel;
use tide_gpu::decoder::{DecoderOptions, GpuDecoder};
use tide_gpu::model::{attach_memory, load, Model};

fn dir() -> PathBuf {
    repo().join("tests/fixtures/tiny_tide")
}

fn golden() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("golden.json")).unwrap()).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    match v {
        serde_json::Value::Array(a) => a.iter().flat_map(floats).collect(),
        x => vec![x.as_f64().unwrap() as f32],
    }
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// The fixture with its inline 4-bit memory, or with a separate memory file attached.
fn variant(name: &str) -> Model {
    let mut m = load(&dir()).unwrap();
    match name {
        "model.safetensors" => {}
        "backbone" => m.memory = None,
        file => attach_memory(&mut m, &dir().join(file)).unwrap(),
    }
    m
}

const VARIANTS: [&str; 4] = [
    "model.safetensors",
    "memory_q8_0.safetensors",
    "memory_f16_normalized.safetensors",
    "backbone",
];

/// (all-position logits, router weights [t][l][K+1]) from the CPU reference.
fn cpu_run(m: &Model, seq: &[u32]) -> (Vec<f32>, Vec<f32>) {
    let cm = Arc::new(CpuModel::new(m));
    let mut s = cm.session(64);
    s.keep_all = true;
    s.feed(seq).unwrap();
    (s.all_logits.clone(), s.router.clone())
}

#[test]
fn cpu_reference_matches_pytorch_in_every_table_form() {
    let g = golden();
    for v in VARIANTS {
        let m = variant(v);
        for case in g["seqs"][v].as_array().unwrap() {
            let seq = ids(&case["ids"]);
            let (logits, router) = cpu_run(&m, &seq);
            assert_close(&format!("{v} logits"), &logits, &floats(&case["logits"]), 1e-4);
            if v != "backbone" {
                assert_close(&format!("{v} router"), &router, &floats(&case["router"]), 1e-5);
            } else {
                assert!(router.is_empty());
            }
        }
    }
}

#[test]
fn gpu_matches_pytorch_batched_and_token_by_token() {
    let g = golden();
    for v in VARIANTS {
        let m = variant(v);
        let mut dec = GpuDecoder::new(
            gpu(),
            &m,
            DecoderOptions {
                ctx_len: 64,
                max_batch: 16,
            },
        )
        .unwrap();
        for case in g["seqs"][v].as_array().unwrap() {
            let seq = ids(&case["ids"]);
            let want = floats(&case["logits"]);
            dec.reset();
            let logits = dec.feed_all(&seq).unwrap();
            assert_close(&format!("{v} GPU batch logits"), &logits, &want, 2e-4);
            if v != "backbone" {
                let r = dec.router_weights().unwrap();
                assert_close(&format!("{v} GPU router"), &r, &floats(&case["router"]), 2e-5);
            }
            // Decode path (matvec kernels), one token per step.
            dec.reset();
            let vocab = m.config.vocab;
            for (t, &tok) in seq.iter().enumerate() {
                dec.feed(&[tok]).unwrap();
                let l = dec.logits().unwrap();
                assert_close(
                    &format!("{v} GPU decode logits at {t}"),
                    &l,
                    &want[t * vocab..(t + 1) * vocab],
                    2e-4,
                );
            }
        }
    }
}

/// The GPU computes the K memory rows once per token and every layer reads them; the CPU
/// reference recomputes them inside each layer. Both must agree on a long random sequence.
#[test]
fn memory_once_per_token_equals_per_layer() {
    let m = variant("model.safetensors");
    let mut rng = common::Rng(3);
    let seq: Vec<u32> = (0..40)
        .map(|_| (rng.next_u64() % m.config.vocab as u64) as u32)
        .collect();
    let (want, want_r) = cpu_run(&m, &seq);
    let mut dec = GpuDecoder::new(
        gpu(),
        &m,
        DecoderOptions {
            ctx_len: 64,
            max_batch: 64,
        },
    )
    .unwrap();
    let got = dec.feed_all(&seq).unwrap();
    assert_close("logits", &got, &want, 2e-4);
    assert_close("router", &dec.router_weights().unwrap(), &want_r, 2e-5);
}

/// A router whose NULL logit dominates switches the memory off: the output equals the plain
/// backbone's (the memory term is below f32 rounding), on the CPU and the GPU.
#[test]
fn huge_null_logit_reproduces_the_backbone() {
    let seq = ids(&golden()["seqs"]["backbone"][0]["ids"]);
    let mut m = variant("model.safetensors");
    let (c, k) = (m.config.clone(), m.memory.as_ref().unwrap().k);
    // Direction u_l = mean of the layer's normalised post-attention states over the sequence:
    // NULL row = M u_l, block rows = 0, so NULL beats every block by M (u_l . n) >> 100.
    let cm = Arc::new(CpuModel::new(&m));
    let mut s = cm.session(64);
    s.post_attn = Some(Vec::new());
    s.feed(&seq).unwrap();
    let n = s.post_attn.take().unwrap();
    let d = c.dim;
    let mem = m.memory.as_mut().unwrap();
    for l in 0..c.n_layers {
        let mut u = vec![0f32; d];
        for t in 0..seq.len() {
            let row = &n[(t * c.n_layers + l) * d..(t * c.n_layers + l + 1) * d];
            for (a, b) in u.iter_mut().zip(row) {
                *a += b;
            }
        }
        let min_dot = (0..seq.len())
            .map(|t| {
                let row = &n[(t * c.n_layers + l) * d..(t * c.n_layers + l + 1) * d];
                row.iter().zip(&u).map(|(a, b)| a * b).sum::<f32>()
            })
            .fold(f32::INFINITY, f32::min);
        assert!(min_dot > 0.0, "precondition: u . n > 0 for every token (layer {l})");
        let scale = 200.0 / min_dot;
        let mut w = vec![0f32; (k + 1) * d];
        for (i, x) in u.iter().enumerate() {
            w[k * d + i] = x * scale;
        }
        mem.routers[l] = Some(w);
    }
    let mut plain = m.clone();
    plain.memory = None;
    let (tide, router) = cpu_run(&m, &seq);
    let (base, _) = cpu_run(&plain, &seq);
    assert!(router.chunks(k + 1).all(|a| a[k] == 1.0), "NULL weight is 1");
    assert_eq!(tide, base, "CPU: huge NULL logit gives the backbone's logits exactly");
    let opts = DecoderOptions {
        ctx_len: 64,
        max_batch: 16,
    };
    let gt = GpuDecoder::new(gpu(), &m, opts.clone())
        .unwrap()
        .feed_all(&seq)
        .unwrap();
    let gb = GpuDecoder::new(gpu(), &plain, opts)
        .unwrap()
        .feed_all(&seq)
        .unwrap();
    assert_eq!(gt, gb, "GPU: huge NULL logit gives the backbone's logits exactly");
}

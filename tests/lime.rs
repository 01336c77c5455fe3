//! LIMe (v2): a small random LIMe model exported by `train/golden.py lime`
//! (3 layers, random mixes S^l of earlier layers' raw K|V) against PyTorch's logits at every
//! position, fed at once and token by token (decode keeps only the current token's raw K|V of
//! each layer), on the CPU reference and the GPU decoder; mixes without the config's "lime"
//! flag, or the flag without the mixes, are refused by the loader.
mod common;

use std::sync::Arc;

use common::{assert_close, gpu, repo};
use tide_gpu::cpu::CpuModel;
use tide_gpu::decoder::{DecoderOptions, GpuDecoder, KernelSet};
use tide_gpu::model;

fn dir() -> std::path::PathBuf {
    repo().join("tests/fixtures/tiny_lime")
}

/// PyTorch computes in float64 here; the CPU reference in f32 over f32 weights.
const TOL: f32 = 2e-5;

#[test]
fn cpu_reference_matches_pytorch() {
    let m = model::load(&dir()).unwrap();
    assert!(m.layers[0].lime_mix.is_none());
    assert_eq!(
        m.layers[2].lime_mix.as_ref().unwrap().info.shape,
        vec![2, 6]
    );
    let g: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("golden.json")).unwrap()).unwrap();
    let cm = Arc::new(CpuModel::new(&m));
    let v = m.config.vocab;
    for case in g["seqs"].as_array().unwrap() {
        let ids = common::json_ids(&case["ids"]);
        let want: Vec<f32> = common::json_rows(&case["logits"]).concat();
        let mut s = cm.session(64);
        s.keep_all = true;
        s.feed(&ids).unwrap();
        assert_close("LIMe, all at once", &s.all_logits, &want, TOL);
        let mut s = cm.session(64);
        for (t, &id) in ids.iter().enumerate() {
            let l = s.feed(&[id]).unwrap();
            assert_close(
                &format!("LIMe, token {t}"),
                l,
                &want[t * v..(t + 1) * v],
                TOL,
            );
        }
    }
    // The mixes matter: without them (the plain backbone) the logits are far off.
    let mut plain = m.clone();
    for l in &mut plain.layers {
        l.lime_mix = None;
    }
    let ids = common::json_ids(&g["seqs"][0]["ids"]);
    let mut s = Arc::new(CpuModel::new(&plain)).session(64);
    let l = s.feed(&ids).unwrap().to_vec();
    let want = &common::json_rows(&g["seqs"][0]["logits"])[ids.len() - 1];
    let off = l
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(off > 0.1, "the backbone alone is within {off} of LIMe");
}

/// The GPU decoder (raw QKV matmul, lime.wgsl's mix, then RoPE and the cache write) in both
/// kernel families: a batch, token by token, and two sequences sharing steps in their own
/// slots (continuous batching), against PyTorch.
#[test]
fn gpu_matches_pytorch() {
    let m = model::load(&dir()).unwrap();
    let g: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("golden.json")).unwrap()).unwrap();
    let case = &g["seqs"][0];
    let ids = common::json_ids(&case["ids"]);
    let want: Vec<Vec<f32>> = common::json_rows(&case["logits"]);
    for ks in [KernelSet::CpuAdapter, KernelSet::Gpu] {
        let opts = DecoderOptions {
            ctx_len: 64,
            slots: 2,
            max_batch: 16,
            kernels: ks,
            token_by_token_upto: 0,
            ..Default::default()
        };
        let mut dec = GpuDecoder::new(gpu(), &m, opts).unwrap();
        let all = dec.feed_all(&ids).unwrap();
        assert_close(
            &format!("LIMe GPU batch ({ks:?})"),
            &all,
            &want.concat(),
            2e-4,
        );
        dec.reset();
        for (t, &id) in ids.iter().enumerate() {
            dec.feed(&[id]).unwrap();
            let l = dec.logits().unwrap();
            assert_close(&format!("LIMe GPU token {t} ({ks:?})"), &l, &want[t], 2e-4);
        }
        // Slot 0 three tokens ahead of slot 1, then both step together.
        for (slot, n) in [(0, 4usize), (1, 1)] {
            dec.use_slot(slot).unwrap();
            dec.reset();
            dec.feed(&ids[..n]).unwrap();
        }
        let mut pos = [4usize, 1];
        while pos[0] < ids.len() {
            let out = dec
                .step_seqs(&[(0, ids[pos[0]]), (1, ids[pos[1]])])
                .unwrap();
            for s in 0..2 {
                let what = format!("LIMe GPU slot {s} at {} ({ks:?})", pos[s]);
                assert_close(&what, &out[s], &want[pos[s]], 2e-4);
                pos[s] += 1;
            }
        }
    }
}

#[test]
fn lime_flag_and_tensors_go_together() {
    let tmp = std::env::temp_dir().join(format!("tide_lime_{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::copy(
        dir().join("model.safetensors"),
        tmp.join("model.safetensors"),
    )
    .unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("config.json")).unwrap()).unwrap();
    // The mixes without the flag: refused, not run as a plain LLaMA.
    cfg["lime"] = serde_json::Value::Bool(false);
    std::fs::write(tmp.join("config.json"), cfg.to_string()).unwrap();
    let e = model::load(&tmp).err().unwrap().to_string();
    assert!(
        e.contains("lime_mix") && e.contains("\"lime\": true"),
        "{e}"
    );
    // The flag over a backbone without mixes: the missing tensor is named.
    let tiny = repo().join("tests/fixtures/tiny_tide");
    std::fs::copy(
        tiny.join("model.safetensors"),
        tmp.join("model.safetensors"),
    )
    .unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tiny.join("config.json")).unwrap()).unwrap();
    cfg["lime"] = serde_json::Value::Bool(true);
    std::fs::write(tmp.join("config.json"), cfg.to_string()).unwrap();
    let e = model::load(&tmp).err().unwrap().to_string();
    std::fs::remove_dir_all(&tmp).ok();
    assert!(e.contains("model.layers.1.self_attn.lime_mix"), "{e}");
}

//! LIMe (v2): a small random LIMe model exported by `train/golden.py lime`
//! (3 layers, random mixes S^l of earlier layers' raw K|V) against PyTorch's logits at every
//! position, fed at once and token by token (decode keeps only the current token's raw K|V of
//! each layer), on the CPU reference and the GPU decoder; mixes without the config's "lime"
//! flag, or the flag without the mixes, are refused by the loader; TIDE memory and LIMe in one
//! model (`train/golden.py tide_lime`).
mod common;

use common::repo;
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
    common::golden::cpu_matches(&m, &g, TOL, "LIMe");
    // The mixes matter: without them (the plain backbone) the logits are far off.
    let mut plain = m.clone();
    for l in &mut plain.layers {
        l.lime_mix = None;
    }
    let off = common::golden::off_without(&plain, &g);
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
    // Slot 0 three tokens ahead of slot 1.
    let n = g["seqs"][0]["ids"].as_array().unwrap().len();
    common::golden::gpu_matches(&m, &g, n, 4, 2e-4);
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

/// TIDE and LIMe in one model (`train/golden.py tide_lime`: K = 3 memory with random routers
/// and random mixes): the CPU reference and the GPU decoder against PyTorch, with the memory
/// mattering as much as the mixes.
#[test]
fn tide_and_lime_together_match_pytorch() {
    let d = repo().join("tests/fixtures/tiny_tide_lime");
    let m = model::load(&d).unwrap();
    assert_eq!(m.memory.as_ref().map(|x| x.k), Some(3));
    assert!(m.layers[1].lime_mix.is_some());
    let g: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("golden.json")).unwrap()).unwrap();
    // 4-bit memory rows as stored; PyTorch read the same dequantised values.
    common::golden::cpu_matches(&m, &g, 1e-4, "TIDE + LIMe");
    common::golden::gpu_matches(&m, &g, 12, 4, 3e-4);
    let mut no_memory = m.clone();
    no_memory.memory = None;
    let off = common::golden::off_without(&no_memory, &g);
    assert!(off > 0.1, "without its memory the model is within {off}");
    let mut no_mix = m.clone();
    no_mix.layers.iter_mut().for_each(|l| l.lime_mix = None);
    let off = common::golden::off_without(&no_mix, &g);
    assert!(off > 0.1, "without its mixes the model is within {off}");
}

//! models/smollm2-tide, the shipped memory on SmolLM2-135M's fetched GGUF backbone, against
//! PyTorch (train/golden.py memory: the backbone's dequantised weights and the shipped rows as
//! stored, decoded by numpy, run in float64): logits at the top-32 ids of every position and the
//! router weights of three texts, on the CPU reference and the GPU decoder (both kernel
//! families), and `tide eval`'s perplexity and CE / NULL by decile on the held-out sample.
mod common;

use std::path::PathBuf;
use std::process::Command;

use common::golden::committed_diffs;
use common::{repo, smollm2};
use tide_gpu::decoder::KernelSet;
use tide_gpu::model::Model;

fn dir() -> PathBuf {
    repo().join("models/smollm2-tide")
}

fn model() -> Model {
    let card = tide_gpu::model::read_card(&dir()).unwrap().unwrap();
    tide_gpu::model::load_card_dir(&dir(), &card, &smollm2()).unwrap()
}

fn golden() -> serde_json::Value {
    let p = repo().join("tests/fixtures/smollm2-tide_golden.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn f(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap()
}

/// Tolerances: the CPU reference and the kernels compute in f32 what PyTorch computes in f64,
/// in other orders; measured on lavapipe: logits within 4e-6 of their size (or of 1), router
/// weights within 3e-7. The bounds leave room for other adapters and summation orders.
const CPU_LOGITS: f64 = 1e-4;
const GPU_LOGITS: f64 = 1e-4;
const ROUTER: f64 = 1e-5;

#[test]
fn smollm2_tide_matches_pytorch_on_cpu_and_gpu() {
    let m = model();
    assert_eq!(m.memory.as_ref().map(|m| m.k), Some(4));
    let g = golden();
    // Both kernel families run on any adapter; the CPU reference once.
    for (kernels, cpu) in [(KernelSet::CpuAdapter, true), (KernelSet::Gpu, false)] {
        for (text, backend, l, r) in committed_diffs(&m, &g, Some(kernels), cpu) {
            eprintln!("{backend} {kernels:?} {text:?}: logits {l:.2e}, router {r:.2e}");
            let tol = if backend == "cpu" {
                CPU_LOGITS
            } else {
                GPU_LOGITS
            };
            assert!(
                l < tol && r < ROUTER,
                "{backend} {kernels:?} {text:?}: logits {l}, router {r}"
            );
        }
    }
}

#[test]
fn smollm2_tide_eval_matches_pytorch() {
    let g = &golden()["eval"];
    let data = repo().join(g["data"].as_str().unwrap());
    // PyTorch evaluated the windows `tide eval --windows N` picks (evenly spaced).
    let windows = g["windows"].as_u64().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_tide"))
        // On the GPU (lavapipe here; auto would take the fast CPU backend, whose 8-bit
        // activations move the perplexity by 0.3%, beyond this comparison's 0.2%).
        .args([
            "eval",
            "--backend",
            "gpu",
            "--model",
            &dir().display().to_string(),
            "--json",
        ])
        .args(["--data", &data.display().to_string()])
        .args([
            "--window",
            &g["window"].to_string(),
            "--windows",
            &windows.to_string(),
        ])
        .current_dir(repo())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && !err.contains("panicked"), "{err}");
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["tokens"], g["tokens"], "predicted positions");
    let close = |what: &str, got: f64, want: f64, rel: f64| {
        assert!(
            (got - want).abs() <= rel * want.abs().max(1.0),
            "{what}: tide {got} vs PyTorch {want}"
        );
    };
    close("ppl", f(&j["ppl"]), f(&g["ppl"]), 2e-3);
    assert_eq!(
        j["count_by_decile"], g["count_by_decile"],
        "decile membership"
    );
    for d in 0..10 {
        close(
            &format!("ce decile {d}"),
            f(&j["ce_by_decile"][d]),
            f(&g["ce_by_decile"][d]),
            3e-3,
        );
        close(
            &format!("NULL decile {d}"),
            f(&j["null_by_decile"][d]),
            f(&g["null_by_decile"][d]),
            2e-3,
        );
    }
}

//! The committed models (models/tide-k0, models/tide-k4 and issue 16's variants: LIMe, ...)
//! against golden outputs of the PyTorch model they were trained as (train/golden.py), through
//! the library and the `tide` command: logits, router weights, `tide eval` (perplexity,
//! cross-entropy and NULL weight by frequency decile), `tide ablate` and `tide inspect`.
mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use common::golden::committed_diffs;
use common::repo;
use tide_gpu::cpu::CpuModel;
use tide_gpu::model::{load, Model};

const MODELS: [&str; 6] = [
    "tide-k0",
    "tide-k4",
    "tide-lime",
    "tide-engram",
    "tide-k0-wide",
    "tide-k4-deep",
];

fn model_dir(name: &str) -> PathBuf {
    repo().join("models").join(name)
}

fn golden(name: &str) -> serde_json::Value {
    let p = repo().join(format!("tests/fixtures/{name}_golden.json"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn f(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap()
}

#[test]
fn committed_models_match_pytorch_on_cpu_and_gpu() {
    for name in MODELS {
        let m = load(&model_dir(name)).unwrap();
        for (text, backend, worst, d) in committed_diffs(&m, &golden(name), None, true) {
            assert!(
                worst < 2e-3,
                "{name} {backend} {text:?}: logits differ from PyTorch by {worst}"
            );
            assert!(
                d < 1e-4,
                "{name} {backend} {text:?}: router weights differ by {d}"
            );
        }
    }
}

#[test]
fn embedded_default_is_models_tide_k4() {
    let e = tide_gpu::model::embedded::default_model().unwrap();
    let d = load(&model_dir("tide-k4")).unwrap();
    assert_eq!(e.memory.as_ref().map(|m| m.k), Some(4));
    let seq = e.tokenizer.encode("To be, or not to be", true).unwrap();
    let run = |m: &Model| {
        let mut s = Arc::new(CpuModel::new(m)).session(32);
        s.feed(&seq).unwrap().to_vec()
    };
    assert_eq!(run(&e), run(&d), "the binary's model is the committed one");
}

fn tide(args: &[&str]) -> serde_json::Value {
    let o = Command::new(env!("CARGO_BIN_EXE_tide"))
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && !err.contains("panicked"),
        "tide {args:?}: {err}"
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn close(what: &str, got: f64, want: f64, rel: f64) {
    assert!(
        (got - want).abs() <= rel * want.abs().max(1.0),
        "{what}: tide {got} vs PyTorch {want}"
    );
}

#[test]
fn eval_matches_pytorch_evaluation() {
    for name in MODELS {
        let g = &golden(name)["eval"];
        let dir = model_dir(name).display().to_string();
        let data = repo()
            .join(g["data"].as_str().unwrap())
            .display()
            .to_string();
        let j = tide(&["eval", "--model", &dir, "--data", &data, "--json"]);
        assert_eq!(j["tokens"], g["tokens"], "{name}: predicted positions");
        close(&format!("{name} ppl"), f(&j["ppl"]), f(&g["ppl"]), 1e-3);
        let (a, b) = (&j["ce_by_decile"], &g["ce_by_decile"]);
        assert_eq!(a.as_array().unwrap().len(), 10);
        assert_eq!(
            j["count_by_decile"], g["count_by_decile"],
            "{name}: decile membership"
        );
        for d in 0..10 {
            close(&format!("{name} ce decile {d}"), f(&a[d]), f(&b[d]), 2e-3);
        }
        if !g["null_by_decile"].is_null() {
            for d in 0..10 {
                close(
                    &format!("{name} NULL decile {d}"),
                    f(&j["null_by_decile"][d]),
                    f(&g["null_by_decile"][d]),
                    1e-3,
                );
            }
        } else {
            assert!(j["null_by_decile"].is_null());
        }
    }
}

#[test]
fn ablate_matches_pytorch_layer_by_layer() {
    let g = &golden("tide-k4")["eval"];
    let dir = model_dir("tide-k4").display().to_string();
    let data = repo()
        .join(g["data"].as_str().unwrap())
        .display()
        .to_string();
    let n = g["ablate_tokens"].to_string();
    let j = tide(&[
        "ablate",
        "--model",
        &dir,
        "--data",
        &data,
        "--max-tokens",
        &n,
        "--json",
    ]);
    close("ppl", f(&j["ppl"]), f(&g["ablate_ppl_all"]), 1e-3);
    let layers = j["layers"].as_array().unwrap();
    assert_eq!(layers.len(), g["ablate_ppl"].as_array().unwrap().len());
    for (l, row) in layers.iter().enumerate() {
        close(
            &format!("layer {l}"),
            f(&row["ppl"]),
            f(&g["ablate_ppl"][l]),
            1e-3,
        );
    }
}

#[test]
fn inspect_json_on_gpu_equals_the_cpu_reference() {
    let text = "In the beginning was the Word";
    let gpu_j = tide(&["inspect", "--json", text]);
    let cpu_j = tide(&["inspect", "--json", "--backend", "cpu", text]);
    assert_eq!(gpu_j["k"], 4);
    assert_eq!(gpu_j["tokens"], cpu_j["tokens"]);
    let toks = gpu_j["tokens"].as_array().unwrap().len();
    let pieces: Vec<String> = gpu_j["pieces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    assert_eq!(pieces.concat(), text, "pieces spell the text");
    let w = gpu_j["weights"].as_array().unwrap();
    assert_eq!(w.len(), toks);
    for (t, tw) in w.iter().enumerate() {
        let layers = tw.as_array().unwrap();
        assert_eq!(layers.len(), 6);
        for (l, slots) in layers.iter().enumerate() {
            let s = slots.as_array().unwrap();
            assert_eq!(s.len(), 5, "K + 1 slots");
            let sum: f64 = s.iter().map(f).sum();
            assert!((sum - 1.0).abs() < 1e-5, "softmax sums to 1 at {t},{l}");
            for (k, x) in s.iter().enumerate() {
                let c = f(&cpu_j["weights"][t][l][k]);
                assert!((f(x) - c).abs() < 1e-4, "GPU vs CPU at {t},{l},{k}");
            }
        }
    }
}

#[test]
fn generate_runs_the_embedded_model_without_model_argument() {
    let j = tide(&[
        "generate",
        "--max-tokens",
        "8",
        "--json",
        "In the beginning",
    ]);
    let n = j["tokens"].as_array().map_or(0, |a| a.len());
    assert!((1..=8).contains(&n), "{j}");
    assert!(
        j["text"].as_str().is_some_and(|t| !t.trim().is_empty()),
        "{j}"
    );
}
